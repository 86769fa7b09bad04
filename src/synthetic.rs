//! Synthetic calibration images for data-free quantization (POT's `engine.type: data_free`).
//!
//! Like POT's `SyntheticImageLoader`, each image is an iterated function system (IFS) fractal:
//! 2–7 random affine maps, chosen with probability proportional to how much they keep of the
//! plane (|det|), iterated from the origin; the visited points are drawn as small patches. Such
//! images hold edges, textures and self-similar structure at every scale, so a network's
//! activations spread over ranges close to those of natural images, which random noise does not
//! give (noise drives early layers into a narrow band and later ones nowhere). POT coloured its
//! fractals with a downloaded colourisation network; ovpot colours them without one: each map
//! carries a random colour and a point's colour moves halfway towards the colour of the map that
//! produced it (the "colour IFS" rule), which gives smooth multicoloured gradients. Then, as POT
//! does, random flips, a rotation within ±30°, a background of natural tones (a vertical
//! gradient between two muted colours) and a Gaussian blur of random width. Everything follows
//! from one seed per image, so a dataset is the same on every machine.

/// SplitMix64: small, portable and stable across releases.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// An RGB colour from hue (turns), saturation and value in [0, 1].
fn hsv(h: f64, s: f64, v: f64) -> [f64; 3] {
    let h6 = (h.rem_euclid(1.0)) * 6.0;
    let c = v * s;
    let x = c * (1.0 - ((h6 % 2.0) - 1.0).abs());
    let (r, g, b) = match h6 as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    [(r + m) * 255.0, (g + m) * 255.0, (b + m) * 255.0]
}

struct Ifs {
    maps: Vec<[f64; 6]>,
    /// Cumulative selection probabilities.
    cumulative: Vec<f64>,
    colours: Vec<[f64; 3]>,
}

impl Ifs {
    fn random(rng: &mut Rng) -> Ifs {
        let n = 2 + rng.below(6);
        let maps: Vec<[f64; 6]> = (0..n).map(|_| std::array::from_fn(|_| rng.range(-1.0, 1.0))).collect();
        let weights: Vec<f64> = maps.iter().map(|m| (m[0] * m[3] - m[1] * m[2]).abs() + 1e-3).collect();
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let cumulative = weights
            .iter()
            .map(|w| {
                acc += w / total;
                acc
            })
            .collect();
        let colours = (0..n).map(|_| hsv(rng.unit(), rng.range(0.35, 1.0), rng.range(0.45, 1.0))).collect();
        Ifs { maps, cumulative, colours }
    }

    /// `count` points of the attractor (after a short burn-in) with their colours; `None` when
    /// the orbit diverges.
    fn points(&self, rng: &mut Rng, count: usize) -> Option<Vec<(f64, f64, [f64; 3])>> {
        let (mut x, mut y) = (0.0f64, 0.0f64);
        let mut colour = [128.0; 3];
        let mut out = Vec::with_capacity(count);
        for i in 0..count + 20 {
            let u = rng.unit();
            let k = self.cumulative.iter().position(|&c| u < c).unwrap_or(self.maps.len() - 1);
            let m = &self.maps[k];
            (x, y) = (m[0] * x + m[1] * y + m[4], m[2] * x + m[3] * y + m[5]);
            if !(x.is_finite() && y.is_finite()) || x.abs() > 1e6 || y.abs() > 1e6 {
                return None;
            }
            for (c, t) in colour.iter_mut().zip(self.colours[k]) {
                *c = 0.5 * (*c + t);
            }
            if i >= 20 {
                out.push((x, y, colour));
            }
        }
        Some(out)
    }
}

/// One synthetic RGB image, `height` × `width`, as HWC bytes; the same `seed` gives the same
/// image. Seeds cycle through three families (see the module notes): IFS fractals, "dead
/// leaves" (overlapping random shapes, whose edge and size statistics are those of natural
/// images) and dark strokes on a light ground (text and drawings).
pub fn fractal_image(height: usize, width: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed ^ 0x6F76_706F_745F_6466);
    let (h, w) = (height.max(1), width.max(1));
    let mut img = vec![0.0f64; h * w * 3];
    match seed % 3 {
        0 => fractal(&mut img, h, w, &mut rng),
        1 => dead_leaves(&mut img, h, w, &mut rng),
        _ => strokes(&mut img, h, w, &mut rng),
    }
    blur(&mut img, h, w, rng.range(0.0, 1.5));
    img.iter().map(|v| v.round().clamp(0.0, 255.0) as u8).collect()
}

/// A vertical gradient between two colours of muted saturation.
fn gradient(img: &mut [f64], h: usize, w: usize, rng: &mut Rng, value: (f64, f64)) {
    let top = hsv(rng.unit(), rng.range(0.05, 0.45), rng.range(value.0, value.1));
    let bottom = hsv(rng.unit(), rng.range(0.05, 0.45), rng.range(value.0, value.1));
    for yy in 0..h {
        let t = yy as f64 / (h.max(2) - 1) as f64;
        for xx in 0..w {
            for c in 0..3 {
                img[(yy * w + xx) * 3 + c] = top[c] * (1.0 - t) + bottom[c] * t;
            }
        }
    }
}

/// Flips and a rotation within ±30° about the centre, as one map of image coordinates.
fn placement(rng: &mut Rng, h: usize, w: usize) -> impl Fn(f64, f64) -> (f64, f64) {
    let (flip_x, flip_y) = (rng.unit() < 0.5, rng.unit() < 0.5);
    let (sin, cos) = rng.range(-30.0, 30.0).to_radians().sin_cos();
    let (cx, cy) = ((w as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0);
    move |x, y| {
        let x = if flip_x { 2.0 * cx - x } else { x };
        let y = if flip_y { 2.0 * cy - y } else { y };
        let (dx, dy) = (x - cx, y - cy);
        (cx + dx * cos - dy * sin, cy + dx * sin + dy * cos)
    }
}

/// An IFS fractal rendered by point density (log scale) and coloured by the maps that made it,
/// over a gradient background; the first of several random systems that covers a fifth of the
/// image (else the one that covers most).
fn fractal(img: &mut [f64], h: usize, w: usize, rng: &mut Rng) {
    gradient(img, h, w, rng, (0.2, 0.9));
    let count = (h * w * 2).clamp(20_000, 200_000);
    let place = placement(rng, h, w);
    let mut best: Option<(usize, Vec<u32>, Vec<[f64; 3]>)> = None;
    for _ in 0..8 {
        let ifs = Ifs::random(rng);
        let Some(points) = ifs.points(rng, count) else { continue };
        // The attractor's central 98% fills the image (a few far points do not shrink it).
        let mut xs: Vec<f64> = points.iter().map(|p| p.0).collect();
        let mut ys: Vec<f64> = points.iter().map(|p| p.1).collect();
        let pct = |v: &mut Vec<f64>| {
            v.sort_unstable_by(f64::total_cmp);
            (v[v.len() / 100], v[v.len() - 1 - v.len() / 100])
        };
        let ((x0, x1), (y0, y1)) = (pct(&mut xs), pct(&mut ys));
        let (sx, sy) = ((x1 - x0).max(1e-9), (y1 - y0).max(1e-9));
        let mut density = vec![0u32; h * w];
        let mut colour = vec![[0.0f64; 3]; h * w];
        for &(x, y, c) in &points {
            let (px, py) = place((x - x0) / sx * (w as f64 - 1.0), (y - y0) / sy * (h as f64 - 1.0));
            let (ix, iy) = (px.round() as i64, py.round() as i64);
            if ix >= 0 && iy >= 0 && (ix as usize) < w && (iy as usize) < h {
                let at = iy as usize * w + ix as usize;
                density[at] += 1;
                for k in 0..3 {
                    colour[at][k] += c[k];
                }
            }
        }
        let covered = density.iter().filter(|&&d| d > 0).count();
        let good = covered * 5 >= h * w;
        if best.as_ref().is_none_or(|(c, _, _)| covered > *c) {
            best = Some((covered, density, colour));
        }
        if good {
            break;
        }
    }
    let Some((_, density, colour)) = best else { return };
    let top = density.iter().copied().max().unwrap_or(1).max(1) as f64;
    for (at, (&d, c)) in density.iter().zip(&colour).enumerate() {
        if d == 0 {
            continue;
        }
        let alpha = ((1.0 + d as f64).ln() / (1.0 + top).ln()).sqrt();
        for k in 0..3 {
            let v = c[k] / d as f64;
            img[at * 3 + k] = img[at * 3 + k] * (1.0 - alpha) + v * alpha;
        }
    }
}

/// "Dead leaves": discs, ellipses and rectangles of random colour and power-law sizes painted
/// over each other until they cover the image.
fn dead_leaves(img: &mut [f64], h: usize, w: usize, rng: &mut Rng) {
    gradient(img, h, w, rng, (0.2, 0.9));
    let side = h.min(w) as f64;
    let shapes = 40 + rng.below(160);
    for _ in 0..shapes {
        // Radius ∝ U^-1/2 between 2% and 40% of the short side.
        let r = (side * 0.02 / rng.range(0.0025, 1.0).sqrt()).min(side * 0.4);
        let (cx, cy) = (rng.range(0.0, w as f64), rng.range(0.0, h as f64));
        let (rx, ry) = (r, r * rng.range(0.4, 1.0));
        let (sin, cos) = rng.range(0.0, std::f64::consts::PI).sin_cos();
        let colour = hsv(rng.unit(), rng.range(0.0, 0.9), rng.range(0.05, 1.0));
        let kind = rng.below(3);
        let reach = rx.max(ry).ceil() as i64 + 1;
        for iy in (cy as i64 - reach).max(0)..(cy as i64 + reach).min(h as i64) {
            for ix in (cx as i64 - reach).max(0)..(cx as i64 + reach).min(w as i64) {
                let (dx, dy) = (ix as f64 - cx, iy as f64 - cy);
                let (u, v) = ((dx * cos + dy * sin) / rx, (-dx * sin + dy * cos) / ry);
                let inside = match kind {
                    0 => u * u + v * v <= 1.0,
                    1 => u.abs() <= 1.0 && v.abs() <= 1.0,
                    _ => u * u + v * v <= 1.0 && u * u + v * v >= 0.35,
                };
                if inside {
                    let at = (iy as usize * w + ix as usize) * 3;
                    img[at..at + 3].copy_from_slice(&colour);
                }
            }
        }
    }
}

/// Dark strokes (random smooth curves, a few pixels thick) on a light ground, like text and
/// line drawings.
fn strokes(img: &mut [f64], h: usize, w: usize, rng: &mut Rng) {
    gradient(img, h, w, rng, (0.75, 1.0));
    let side = h.min(w) as f64;
    let curves = 8 + rng.below(40);
    let place = placement(rng, h, w);
    for _ in 0..curves {
        let colour = hsv(rng.unit(), rng.range(0.0, 0.8), rng.range(0.0, 0.45));
        let thick = rng.range(0.6, (side * 0.04).max(1.2));
        let (mut x, mut y) = (rng.range(0.0, w as f64), rng.range(0.0, h as f64));
        let mut heading = rng.range(0.0, std::f64::consts::TAU);
        let steps = 10 + rng.below((side as usize).max(11));
        for _ in 0..steps {
            heading += rng.range(-0.5, 0.5);
            x += heading.cos();
            y += heading.sin();
            let (px, py) = place(x, y);
            let t = thick.ceil() as i64;
            for oy in -t..=t {
                for ox in -t..=t {
                    let (ix, iy) = (px.round() as i64 + ox, py.round() as i64 + oy);
                    if ((ox * ox + oy * oy) as f64) <= thick * thick
                        && ix >= 0
                        && iy >= 0
                        && (ix as usize) < w
                        && (iy as usize) < h
                    {
                        let at = (iy as usize * w + ix as usize) * 3;
                        img[at..at + 3].copy_from_slice(&colour);
                    }
                }
            }
        }
    }
}

/// Separable Gaussian blur of an HWC RGB image (edges clamped); `sigma` below 0.3 leaves it.
fn blur(img: &mut [f64], h: usize, w: usize, sigma: f64) {
    if sigma < 0.3 {
        return;
    }
    let r = (sigma * 3.0).ceil() as i64;
    let kernel: Vec<f64> = (-r..=r).map(|i| (-((i * i) as f64) / (2.0 * sigma * sigma)).exp()).collect();
    let norm: f64 = kernel.iter().sum();
    let mut tmp = vec![0.0f64; img.len()];
    let clamp = |v: i64, n: usize| v.clamp(0, n as i64 - 1) as usize;
    // Rows, then columns: `at(y, x, k)` is the pixel tap k of (y, x) reads.
    let pass = |src: &[f64], dst: &mut [f64], at: &dyn Fn(usize, usize, i64) -> usize| {
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let s: f64 =
                        kernel.iter().enumerate().map(|(k, kv)| kv * src[at(y, x, k as i64 - r) * 3 + c]).sum();
                    dst[(y * w + x) * 3 + c] = s / norm;
                }
            }
        }
    };
    pass(img, &mut tmp, &|y, x, d| y * w + clamp(x as i64 + d, w));
    pass(&tmp, img, &|y, x, d| clamp(y as i64 + d, h) * w + x);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_deterministic_varied_and_not_flat() {
        let a = fractal_image(48, 64, 7);
        assert_eq!(a.len(), 48 * 64 * 3);
        assert_eq!(a, fractal_image(48, 64, 7), "same seed, same image");
        let b = fractal_image(48, 64, 8);
        assert_ne!(a, b);
        for img in [&a, &b] {
            let mean = img.iter().map(|&v| v as f64).sum::<f64>() / img.len() as f64;
            let var = img.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / img.len() as f64;
            assert!(var.sqrt() > 10.0, "an image with structure, std {}", var.sqrt());
        }
    }
}
