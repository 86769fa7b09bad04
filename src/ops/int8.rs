//! `Int8PairSaturation` (engine-internal, version `ovpot`): what a CPU without VNNI adds to an
//! int8 convolution or MatMul that exact arithmetic does not. Such CPUs add each pair of u8×s8
//! products of adjacent input channels in 16 bits with saturation (`pmaddubsw`), so
//! `y = Σ_pairs sat16(u0·w0 + u1·w1)` where exact arithmetic gives `Σ_pairs (u0·w0 + u1·w1)`.
//!
//! Inputs: `y` (the exact f32 result), `x` (the activation the layer reads, on a FakeQuantize
//! grid), the weight codes (i8) and the weight scale per output channel. Attributes: `kind`
//! (`conv`, `group_conv` or `matmul`), the activation grid `act_low`, `act_high`, `levels`, and
//! the layer's own window attributes (or `transpose_b`). Output: `y` plus, per output element,
//! `step · scale[oc] · Σ_pairs (sat16(p) − p)`. Only weight pairs of one sign whose magnitudes
//! add up to more than 32767/255 can saturate (u ≥ 0); they are listed once when the op is built,
//! so the correction costs little where few pairs can saturate and nothing where none can.

use super::conv::{to3, WindowAttrs};
use super::op::{BuildCtx, Op, Registry};
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use ndarray::ArrayD;

pub fn register(r: &mut Registry) {
    r.add("Int8PairSaturation", &["ovpot"], build);
}

/// Largest u8 activation level.
const U_MAX: i32 = 255;

/// Whether a pair of weight codes can saturate a 16-bit pair sum with u8 activations.
pub fn pair_can_saturate(w0: i32, w1: i32) -> bool {
    w0 * w1 > 0 && U_MAX * (w0.abs() + w1.abs()) > i16::MAX as i32
}

/// A weight pair that can saturate: kernel tap (flattened spatial index), first input channel
/// of the pair (global), and the two codes.
#[derive(Clone, Copy, Debug)]
struct Pair {
    tap: usize,
    channel: usize,
    w0: i32,
    w1: i32,
}

#[derive(Debug)]
enum Kind {
    /// Weights `[OC, C, k...]` or grouped `[G, OC/G, C/G, k...]`.
    Conv { window: WindowAttrs, kernel: Vec<usize> },
    /// Weights normalized to `[N, K]`.
    MatMul,
}

#[derive(Debug)]
struct PairSaturation {
    kind: Kind,
    act_low: f32,
    step: f32,
    levels: i32,
    /// Per output channel: its scale and the pairs that can saturate.
    channels: Vec<(f32, Vec<Pair>)>,
}

fn build(ctx: &BuildCtx) -> Result<Box<dyn Op>> {
    let codes = ctx.const_inputs.get(2).copied().flatten().ok_or_else(|| ctx.err("weight codes must be constant"))?;
    let scale = ctx.const_inputs.get(3).copied().flatten().ok_or_else(|| ctx.err("weight scale must be constant"))?;
    let codes = codes.to_f32();
    let ws = codes.shape().to_vec();
    let scale = scale.to_f32();
    let act_low = ctx.attr_f64("act_low")? as f32;
    let act_high = ctx.attr_f64("act_high")? as f32;
    let levels = ctx.attr_i64_or("levels", 256)?;
    if !(2..=256).contains(&levels) || act_high <= act_low {
        return Err(ctx.err("the activation grid needs 2..=256 levels over a non-empty range"));
    }
    let step = (act_high - act_low) / (levels - 1) as f32;
    let code = |v: f32| v as i32;
    let kind_name = ctx.attr_req("kind")?;
    let (kind, channels) = match kind_name {
        "conv" | "group_conv" => {
            let grouped = kind_name == "group_conv";
            let lead = if grouped { 3 } else { 2 };
            if ws.len() < lead + 1 {
                return Err(ctx.err(format!("weights {ws:?} are not convolution weights")));
            }
            let (groups, cout, cin) = if grouped { (ws[0], ws[1], ws[2]) } else { (1, ws[0], ws[1]) };
            let kernel = ws[lead..].to_vec();
            let taps: usize = kernel.iter().product();
            let flat = codes.as_standard_layout().iter().copied().collect::<Vec<f32>>();
            let scales =
                per_channel(&scale, groups * cout).ok_or_else(|| ctx.err("scale is not per output channel"))?;
            let mut channels = Vec::with_capacity(groups * cout);
            for g in 0..groups {
                for o in 0..cout {
                    let base = (g * cout + o) * cin * taps;
                    let mut pairs = vec![];
                    for c0 in (0..cin.saturating_sub(1)).step_by(2) {
                        for t in 0..taps {
                            let w0 = code(flat[base + c0 * taps + t]);
                            let w1 = code(flat[base + (c0 + 1) * taps + t]);
                            if pair_can_saturate(w0, w1) {
                                pairs.push(Pair { tap: t, channel: g * cin + c0, w0, w1 });
                            }
                        }
                    }
                    channels.push((scales[g * cout + o], pairs));
                }
            }
            (Kind::Conv { window: WindowAttrs::parse(ctx, true)?, kernel }, channels)
        }
        "matmul" => {
            if ws.len() != 2 {
                return Err(ctx.err(format!("MatMul weights {ws:?} are not 2-D")));
            }
            let tb = ctx.attr_bool_or("transpose_b", false)?;
            let (n, k) = if tb { (ws[0], ws[1]) } else { (ws[1], ws[0]) };
            let at = |ni: usize, ki: usize| code(if tb { codes[[ni, ki]] } else { codes[[ki, ni]] });
            let scales = per_channel(&scale, n).ok_or_else(|| ctx.err("scale is not per output channel"))?;
            let mut channels = Vec::with_capacity(n);
            for (ni, &s) in scales.iter().enumerate() {
                let mut pairs = vec![];
                for k0 in (0..k.saturating_sub(1)).step_by(2) {
                    let (w0, w1) = (at(ni, k0), at(ni, k0 + 1));
                    if pair_can_saturate(w0, w1) {
                        pairs.push(Pair { tap: 0, channel: k0, w0, w1 });
                    }
                }
                channels.push((s, pairs));
            }
            (Kind::MatMul, channels)
        }
        other => return Err(ctx.err(format!("unknown kind '{other}'"))),
    };
    Ok(Box::new(PairSaturation { kind, act_low, step, levels: levels as i32, channels }))
}

/// One value per output channel from a scale tensor holding `n` values (or one).
fn per_channel(scale: &ArrayD<f32>, n: usize) -> Option<Vec<f32>> {
    let v: Vec<f32> = scale.iter().copied().collect();
    match v.len() {
        1 => Some(vec![v[0]; n]),
        l if l == n => Some(v),
        _ => None,
    }
}

/// Whether pair `p` can leave the 16-bit range when each channel's level is at most `top[c]`
/// (weights of one sign and levels ≥ 0: the sum's magnitude is at most Σ top·|w|).
#[inline]
fn reachable(top: &[i32], p: &Pair) -> bool {
    top[p.channel] * p.w0.abs() + top[p.channel + 1] * p.w1.abs() > i16::MAX as i32
}

#[inline]
fn saturation_error(u0: i32, u1: i32, p: &Pair) -> i32 {
    let s = u0 * p.w0 + u1 * p.w1;
    s.clamp(i16::MIN as i32, i16::MAX as i32) - s
}

/// `acc[i] += sat16(u0[i]·w0 + u1[i]·w1) − (u0[i]·w0 + u1[i]·w1)` over contiguous levels.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512bw+avx512vl", "x86_64+avx2"))]
fn accumulate(acc: &mut [i32], u0: &[i32], u1: &[i32], w0: i32, w1: i32) {
    for ((a, &x0), &x1) in acc.iter_mut().zip(u0).zip(u1) {
        let s = x0 * w0 + x1 * w1;
        *a += s.clamp(i16::MIN as i32, i16::MAX as i32) - s;
    }
}

impl PairSaturation {
    /// The activation level of each input value (the integer the CPU multiplies).
    fn levels_of(&self, x: &[f32]) -> Vec<i32> {
        let (lo, inv, top) = (self.act_low, 1.0 / self.step, self.levels - 1);
        x.iter().map(|&v| (((v - lo) * inv).round() as i32).clamp(0, top)).collect()
    }

    fn pad_level(&self) -> i32 {
        ((-self.act_low / self.step).round() as i32).clamp(0, self.levels - 1)
    }
}

impl Op for PairSaturation {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let owned = inputs.iter().map(|t| std::sync::Arc::new((*t).clone())).collect();
        self.eval_owned(owned)
    }

    fn eval_owned(&self, mut inputs: Vec<std::sync::Arc<Tensor>>) -> Result<Vec<Tensor>> {
        if inputs.len() < 2 {
            return Err(Error::invalid(format!("expected 4 inputs, got {}", inputs.len())));
        }
        let xt = inputs.swap_remove(1);
        let yt = inputs.swap_remove(0);
        // The exact result is corrected in place when nobody else holds it.
        let mut y = match std::sync::Arc::try_unwrap(yt) {
            Ok(Tensor::F32(a)) if a.is_standard_layout() => a,
            Ok(t) => t.to_f32().as_standard_layout().into_owned(),
            Err(shared) => shared.to_f32().as_standard_layout().into_owned(),
        };
        let xs = xt.shape().to_vec();
        let u = match xt.as_f32().and_then(|a| a.as_slice()) {
            Some(xv) => self.levels_of(xv),
            None => self.levels_of(&xt.to_f32().as_standard_layout().iter().copied().collect::<Vec<f32>>()),
        };
        let ys = y.shape().to_vec();
        let out = y.as_slice_mut().ok_or_else(|| Error::internal("output not contiguous"))?;
        let nout = self.channels.len();
        match &self.kind {
            Kind::MatMul => {
                let k = *xs.last().unwrap_or(&0);
                if ys.last() != Some(&nout) || k == 0 || u.len() / k != out.len() / nout.max(1) {
                    return Err(Error::mismatch(format!("MatMul data {xs:?} and output {ys:?} do not match")));
                }
                // Pairs that cannot reach the limit with the largest levels this input holds are
                // skipped (exactly: their error is zero).
                let mut top = vec![0i32; k];
                for row in u.chunks_exact(k) {
                    top.iter_mut().zip(row).for_each(|(t, &v)| *t = (*t).max(v));
                }
                let live: Vec<(f32, Vec<Pair>)> = self
                    .channels
                    .iter()
                    .map(|(s, pairs)| (*s, pairs.iter().filter(|p| reachable(&top, p)).copied().collect()))
                    .collect();
                for (row, yr) in u.chunks_exact(k).zip(out.chunks_exact_mut(nout)) {
                    for ((scale, pairs), yv) in live.iter().zip(yr.iter_mut()) {
                        let e: i32 =
                            pairs.iter().map(|p| saturation_error(row[p.channel], row[p.channel + 1], p)).sum();
                        if e != 0 {
                            *yv += self.step * scale * e as f32;
                        }
                    }
                }
            }
            Kind::Conv { window, kernel } => {
                if xs.len() < 3 || ys.len() != xs.len() || ys[1] != nout {
                    return Err(Error::mismatch(format!("convolution data {xs:?} and output {ys:?} do not match")));
                }
                let axes = window.conv_axes(&xs[2..], kernel)?;
                let ax = to3(&axes)?;
                let in3 = [ax[0].input, ax[1].input, ax[2].input];
                let out_sp: usize = ax.iter().map(|a| a.output).product();
                if ys[2..].iter().product::<usize>() != out_sp {
                    return Err(Error::mismatch(format!("convolution output {ys:?} does not match its window")));
                }
                let k3 = {
                    let mut k = [1usize; 3];
                    k[3 - kernel.len()..].copy_from_slice(kernel);
                    k
                };
                let plane: usize = in3.iter().product();
                let cin = xs[1];
                let pad = self.pad_level();
                let mut acc = vec![0i32; out_sp];
                for n in 0..xs[0] {
                    let un = &u[n * cin * plane..(n + 1) * cin * plane];
                    // The largest level per input channel (padding included): pairs that cannot
                    // reach the limit with them are skipped (exactly: their error is zero).
                    let top: Vec<i32> =
                        un.chunks_exact(plane.max(1)).map(|c| c.iter().copied().fold(pad, i32::max)).collect();
                    for (oc, (scale, pairs)) in self.channels.iter().enumerate() {
                        if !pairs.iter().any(|p| reachable(&top, p)) {
                            continue;
                        }
                        acc.iter_mut().for_each(|a| *a = 0);
                        for p in pairs.iter().filter(|p| reachable(&top, p)) {
                            let t = [p.tap / (k3[2] * k3[1]), (p.tap / k3[2]) % k3[1], p.tap % k3[2]];
                            let e_pad = saturation_error(pad, pad, p);
                            let (c0, c1) = (&un[p.channel * plane..], &un[(p.channel + 1) * plane..]);
                            let (lo2, hi2) = ax[2].valid_range(t[2]);
                            let mut pos = 0;
                            for o0 in 0..ax[0].output {
                                let i0 = ax[0].src(o0, t[0]);
                                for o1 in 0..ax[1].output {
                                    let i1 = ax[1].src(o1, t[1]);
                                    let row = &mut acc[pos..pos + ax[2].output];
                                    pos += ax[2].output;
                                    let inside = i0 >= 0 && i1 >= 0 && (i0 as usize) < in3[0] && (i1 as usize) < in3[1];
                                    if !inside {
                                        if e_pad != 0 {
                                            row.iter_mut().for_each(|a| *a += e_pad);
                                        }
                                        continue;
                                    }
                                    let base = ((i0 as usize) * in3[1] + i1 as usize) * in3[2];
                                    if e_pad != 0 {
                                        let (head, tail) = row.split_at_mut(hi2);
                                        head[..lo2].iter_mut().chain(tail.iter_mut()).for_each(|a| *a += e_pad);
                                    }
                                    if lo2 < hi2 {
                                        let first = base + ax[2].src(lo2, t[2]) as usize;
                                        let len = hi2 - lo2;
                                        let step = ax[2].stride;
                                        let span = (len - 1) * step + 1;
                                        let (a0, a1) = (&c0[first..first + span], &c1[first..first + span]);
                                        if step == 1 {
                                            accumulate(&mut row[lo2..hi2], a0, a1, p.w0, p.w1);
                                        } else {
                                            for ((a, &v0), &v1) in row[lo2..hi2]
                                                .iter_mut()
                                                .zip(a0.iter().step_by(step))
                                                .zip(a1.iter().step_by(step))
                                            {
                                                *a += saturation_error(v0, v1, p);
                                            }
                                        }
                                    }
                                }
                            }
                        }
                        let yo = &mut out[(n * nout + oc) * out_sp..(n * nout + oc + 1) * out_sp];
                        let f = self.step * scale;
                        for (v, &e) in yo.iter_mut().zip(&acc) {
                            if e != 0 {
                                *v += f * e as f32;
                            }
                        }
                    }
                }
            }
        }
        Ok(vec![Tensor::F32(y)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_pairs_can_saturate() {
        assert!(pair_can_saturate(127, 127));
        assert!(pair_can_saturate(-65, -64));
        assert!(!pair_can_saturate(64, 64)); // 255 · 128 = 32640 fits
        assert!(!pair_can_saturate(127, -127)); // opposite signs never leave i16
        assert!(!pair_can_saturate(127, 0));
    }

    #[test]
    fn error_is_what_saturation_drops() {
        let p = Pair { tap: 0, channel: 0, w0: 127, w1: 127 };
        assert_eq!(saturation_error(255, 255, &p), 32767 - 64770);
        assert_eq!(saturation_error(100, 100, &p), 0);
        let n = Pair { tap: 0, channel: 0, w0: -127, w1: -127 };
        assert_eq!(saturation_error(255, 255, &n), -32768 + 64770);
    }
}
