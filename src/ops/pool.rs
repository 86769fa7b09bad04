//! Pooling: MaxPool (opset1, opset8 with dilations/indices/axis, opset14 with `ceil_torch`),
//! AvgPool (opset1, opset14), AdaptiveAvgPool/AdaptiveMaxPool (opset8). 1-D/2-D/3-D spatial, run
//! as 3-D with leading unit axes, parallel over (batch, channel) planes.

use super::conv::{f32_view, from_f32, same_pads, slice_of, to3, AutoPad, Axis, WindowAttrs};
use super::op::{BuildCtx, Op, Registry};
use crate::error::{Error, Result};
use crate::tensor::{ElementType, Tensor};
use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;

pub fn register(r: &mut Registry) {
    r.add("MaxPool", &["opset1", "opset8", "opset14"], build_max_pool);
    r.add("AvgPool", &["opset1", "opset14"], build_avg_pool);
    r.add("AdaptiveAvgPool", &["opset8"], build_adaptive_avg);
    r.add("AdaptiveMaxPool", &["opset8"], build_adaptive_max);
}

/// How the output size is rounded (`rounding_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rounding {
    Floor,
    Ceil,
    /// PyTorch's ceil_mode: like Ceil, but no window may start in the end padding.
    CeilTorch,
}

#[derive(Clone, Debug)]
struct PoolAttrs {
    window: WindowAttrs,
    kernel: Vec<usize>,
    rounding: Rounding,
}

impl PoolAttrs {
    fn parse(ctx: &BuildCtx, with_dilations: bool) -> Result<Self> {
        let mut window = WindowAttrs::parse(ctx, with_dilations && ctx.attr("dilations").is_some())?;
        let kernel = ctx.attr_usize_list("kernel")?;
        if kernel.contains(&0) {
            return Err(ctx.err("kernel sizes must be positive"));
        }
        if window.pads_begin.iter().chain(&window.pads_end).any(|&p| p < 0) {
            return Err(ctx.err("pooling pads must not be negative"));
        }
        if window.dilations.len() != kernel.len() {
            window.dilations = vec![1; kernel.len()];
        }
        let r = ctx.attr_str_or("rounding_type", "floor").trim().to_ascii_lowercase();
        let rounding = match r.as_str() {
            "floor" => Rounding::Floor,
            "ceil" => Rounding::Ceil,
            "ceil_torch" if ctx.node.version == "opset14" => Rounding::CeilTorch,
            _ => return Err(ctx.err(format!("rounding_type '{r}' is not supported by {}", ctx.node.version))),
        };
        Ok(PoolAttrs { window, kernel, rounding })
    }

    /// Resolves the window against the input's spatial sizes.
    fn axes(&self, input: &[usize]) -> Result<(Vec<Axis>, Vec<i64>)> {
        let n = input.len();
        self.window.check(n)?;
        if self.kernel.len() != n {
            return Err(Error::mismatch(format!("kernel {:?} does not match {n} spatial dimensions", self.kernel)));
        }
        let mut axes = Vec::with_capacity(n);
        let mut pads_end = Vec::with_capacity(n);
        for (i, &size) in input.iter().enumerate() {
            let (s, dl, k) = (self.window.strides[i], self.window.dilations[i], self.kernel[i]);
            let keff = (k - 1) * dl + 1;
            let (pb, pe) = match self.window.auto_pad {
                AutoPad::Explicit => self.window.pad(i),
                AutoPad::Valid => (0, 0),
                AutoPad::SameUpper => same_pads(size, keff, s, false),
                AutoPad::SameLower => same_pads(size, keff, s, true),
            };
            let padded = size as i64 + pb + pe;
            let span = padded - keff as i64;
            if span < 0 {
                return Err(Error::mismatch(format!(
                    "kernel {k} (dilated {keff}) is larger than the padded input {padded} on spatial axis {i}"
                )));
            }
            let s64 = s as i64;
            let output = match self.rounding {
                Rounding::Floor => span / s64 + 1,
                Rounding::Ceil => (span + s64 - 1) / s64 + 1,
                Rounding::CeilTorch => {
                    let q = (span + s64 - 1) / s64;
                    if q * s64 < size as i64 + pb {
                        q + 1
                    } else {
                        q
                    }
                }
            };
            axes.push(Axis { input: size, output: output as usize, kernel: k, stride: s, dilation: dl, pad_begin: pb });
            pads_end.push(pe);
        }
        Ok((axes, pads_end))
    }
}

/// For each output position along one axis, the kernel taps `lo..hi` that read inside the input.
fn tap_ranges(a: &Axis) -> Vec<(usize, usize)> {
    (0..a.output)
        .map(|o| {
            let start = (o * a.stride) as i64 - a.pad_begin;
            let d = a.dilation as i64;
            let lo = if start < 0 { ((-start) + d - 1) / d } else { 0 };
            let hi = if start >= a.input as i64 { 0 } else { (a.input as i64 - start + d - 1) / d };
            let hi = (hi as usize).min(a.kernel);
            ((lo as usize).min(hi), hi)
        })
        .collect()
}

/// Splits a tensor shape into (planes = N*C, spatial sizes).
fn planes(shape: &[usize]) -> Result<(usize, Vec<usize>)> {
    if shape.len() < 3 || shape.len() > 5 {
        return Err(Error::mismatch(format!("pooling expects a 3-D to 5-D input, got {shape:?}")));
    }
    Ok((shape[0] * shape[1], shape[2..].to_vec()))
}

fn out_shape(shape: &[usize], axes: &[Axis]) -> Vec<usize> {
    let mut s = shape[..2].to_vec();
    s.extend(axes.iter().map(|a| a.output));
    s
}

// ---------------------------------------------------------------------------------------------
// MaxPool
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct MaxPool {
    attrs: PoolAttrs,
    /// Opset 8+: a second output with the flat index of each maximum.
    with_indices: bool,
    index_type: ElementType,
    axis: i64,
}

fn build_max_pool(ctx: &BuildCtx) -> Result<Box<dyn Op>> {
    let v1 = ctx.node.version == "opset1";
    let attrs = PoolAttrs::parse(ctx, !v1)?;
    let index_type =
        if v1 { ElementType::I64 } else { ctx.attr_type("index_element_type").unwrap_or(ElementType::I64) };
    if !matches!(index_type, ElementType::I32 | ElementType::I64) {
        return Err(ctx.err(format!("index_element_type {index_type} is not i32 or i64")));
    }
    Ok(Box::new(MaxPool { attrs, with_indices: !v1, index_type, axis: ctx.attr_i64_or("axis", 0)? }))
}

/// Max over every window of one plane; `idx` gets the in-plane flat index of each maximum (the
/// first one on ties).
fn max_plane(x: &[f32], ax: &[Axis; 3], ranges: &[Vec<(usize, usize)>; 3], out: &mut [f32], idx: &mut [i64]) {
    let [d, h, w] = ax;
    let mut o = 0;
    for (od, &(d0, d1)) in ranges[0].iter().enumerate() {
        for (oh, &(h0, h1)) in ranges[1].iter().enumerate() {
            for (ow, &(w0, w1)) in ranges[2].iter().enumerate() {
                let mut best = f32::MIN;
                let mut best_i = 0usize;
                for kd in d0..d1 {
                    let id = (d.src(od, kd)) as usize;
                    for kh in h0..h1 {
                        let ih = (h.src(oh, kh)) as usize;
                        let row = (id * h.input + ih) * w.input;
                        for kw in w0..w1 {
                            let i = row + w.src(ow, kw) as usize;
                            if x[i] > best {
                                best = x[i];
                                best_i = i;
                            }
                        }
                    }
                }
                out[o] = best;
                idx[o] = best_i as i64;
                o += 1;
            }
        }
    }
}

impl Op for MaxPool {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let xt = inputs.first().ok_or_else(|| Error::invalid("MaxPool needs a data input"))?;
        let shape = xt.shape().to_vec();
        let (np, spatial) = planes(&shape)?;
        let (axes, _) = self.attrs.axes(&spatial)?;
        let ax = to3(&axes)?;
        let ranges = [tap_ranges(&ax[0]), tap_ranges(&ax[1]), tap_ranges(&ax[2])];
        let x = f32_view(xt, "data")?;
        let xs = slice_of(&x, "data")?;
        let plane_in: usize = spatial.iter().product();
        let plane_out: usize = axes.iter().map(|a| a.output).product();
        let mut out = vec![0.0f32; np * plane_out];
        let mut idx = vec![0i64; np * plane_out];
        if plane_out > 0 {
            out.par_chunks_mut(plane_out).zip(idx.par_chunks_mut(plane_out)).enumerate().for_each(|(p, (o, ix))| {
                max_plane(&xs[p * plane_in..(p + 1) * plane_in], &ax, &ranges, o, ix);
                if self.with_indices {
                    let base = (p * plane_in) as i64;
                    ix.iter_mut().for_each(|v| *v += base);
                }
            });
        }
        let oshape = out_shape(&shape, &axes);
        let values = ArrayD::from_shape_vec(IxDyn(&oshape), out).map_err(|e| Error::internal(e.to_string()))?;
        let mut res = vec![from_f32(values, xt.element_type())?];
        if self.with_indices {
            let axis = super::attrs::norm_axis(self.axis, shape.len())?;
            let modulo: usize = shape[axis..].iter().product();
            if axis != 0 && modulo > 0 {
                idx.iter_mut().for_each(|v| *v %= modulo as i64);
            }
            let t = Tensor::i64_from_vec(&oshape, idx)?;
            res.push(if self.index_type == ElementType::I64 { t } else { t.convert(self.index_type)? });
        }
        Ok(res)
    }
}

// ---------------------------------------------------------------------------------------------
// AvgPool
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct AvgPool {
    attrs: PoolAttrs,
    exclude_pad: bool,
}

fn build_avg_pool(ctx: &BuildCtx) -> Result<Box<dyn Op>> {
    Ok(Box::new(AvgPool { attrs: PoolAttrs::parse(ctx, false)?, exclude_pad: ctx.attr_bool_or("exclude-pad", false)? }))
}

impl Op for AvgPool {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let xt = inputs.first().ok_or_else(|| Error::invalid("AvgPool needs a data input"))?;
        let shape = xt.shape().to_vec();
        let (np, spatial) = planes(&shape)?;
        let (axes, pads_end) = self.attrs.axes(&spatial)?;
        let ax = to3(&axes)?;
        let ranges = [tap_ranges(&ax[0]), tap_ranges(&ax[1]), tap_ranges(&ax[2])];
        // OpenVINO counts the whole kernel when padding takes part in the average and any pad is
        // non-zero; otherwise only the taps inside the input.
        let padded = axes.iter().any(|a| a.pad_begin != 0) || pads_end.iter().any(|&p| p != 0);
        let full_kernel = (!self.exclude_pad && padded).then(|| self.attrs.kernel.iter().product::<usize>() as f32);
        let x = f32_view(xt, "data")?;
        let xs = slice_of(&x, "data")?;
        let plane_in: usize = spatial.iter().product();
        let plane_out: usize = axes.iter().map(|a| a.output).product();
        let mut out = vec![0.0f32; np * plane_out];
        if plane_out > 0 {
            out.par_chunks_mut(plane_out).enumerate().for_each(|(p, o)| {
                let x = &xs[p * plane_in..(p + 1) * plane_in];
                let [d, h, w] = &ax;
                let mut i = 0;
                for (od, &(d0, d1)) in ranges[0].iter().enumerate() {
                    for (oh, &(h0, h1)) in ranges[1].iter().enumerate() {
                        for (ow, &(w0, w1)) in ranges[2].iter().enumerate() {
                            let mut sum = 0.0f32;
                            for kd in d0..d1 {
                                let id = d.src(od, kd) as usize;
                                for kh in h0..h1 {
                                    let row = (id * h.input + h.src(oh, kh) as usize) * w.input;
                                    for kw in w0..w1 {
                                        sum += x[row + w.src(ow, kw) as usize];
                                    }
                                }
                            }
                            let count = full_kernel.unwrap_or(((d1 - d0) * (h1 - h0) * (w1 - w0)) as f32);
                            // A window entirely in the padding averages nothing: NaN, as OpenVINO's CPU plugin.
                            o[i] = sum / count;
                            i += 1;
                        }
                    }
                }
            });
        }
        let oshape = out_shape(&shape, &axes);
        let values = ArrayD::from_shape_vec(IxDyn(&oshape), out).map_err(|e| Error::internal(e.to_string()))?;
        Ok(vec![from_f32(values, xt.element_type())?])
    }
}

// ---------------------------------------------------------------------------------------------
// Adaptive pooling
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct Adaptive {
    max: bool,
    index_type: ElementType,
}

fn build_adaptive_avg(_ctx: &BuildCtx) -> Result<Box<dyn Op>> {
    Ok(Box::new(Adaptive { max: false, index_type: ElementType::I64 }))
}

fn build_adaptive_max(ctx: &BuildCtx) -> Result<Box<dyn Op>> {
    let index_type = ctx.attr_type("index_element_type").unwrap_or(ElementType::I64);
    if !matches!(index_type, ElementType::I32 | ElementType::I64) {
        return Err(ctx.err(format!("index_element_type {index_type} is not i32 or i64")));
    }
    Ok(Box::new(Adaptive { max: true, index_type }))
}

/// Bin `i` of `out` bins over `n` inputs: floor(i·n/out) .. ceil((i+1)·n/out).
fn bin(i: usize, n: usize, out: usize) -> (usize, usize) {
    (i * n / out, ((i + 1) * n).div_ceil(out))
}

impl Op for Adaptive {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let [xt, st] = inputs else {
            return Err(Error::invalid(format!("adaptive pooling expects 2 inputs, got {}", inputs.len())));
        };
        let shape = xt.shape().to_vec();
        let (np, spatial) = planes(&shape)?;
        let sizes = st.to_i64_vec();
        if sizes.len() != spatial.len() || sizes.iter().any(|&s| s <= 0) {
            return Err(Error::mismatch(format!("output sizes {sizes:?} do not fit the input {shape:?}")));
        }
        let mut sp = vec![1usize; 3 - spatial.len()];
        sp.extend(&spatial);
        let mut os = vec![1usize; 3 - spatial.len()];
        os.extend(sizes.iter().map(|&s| s as usize));
        let x = f32_view(xt, "data")?;
        let xs = slice_of(&x, "data")?;
        let plane_in: usize = sp.iter().product();
        let plane_out: usize = os.iter().product();
        let mut out = vec![0.0f32; np * plane_out];
        let mut idx = vec![0i64; if self.max { np * plane_out } else { 0 }];
        let run = |p: usize, o: &mut [f32], mut ix: Option<&mut [i64]>| {
            let x = &xs[p * plane_in..(p + 1) * plane_in];
            let mut i = 0;
            for od in 0..os[0] {
                let (d0, d1) = bin(od, sp[0], os[0]);
                for oh in 0..os[1] {
                    let (h0, h1) = bin(oh, sp[1], os[1]);
                    for ow in 0..os[2] {
                        let (w0, w1) = bin(ow, sp[2], os[2]);
                        let (mut sum, mut best, mut best_i) = (0.0f32, f32::MIN, 0usize);
                        for id in d0..d1 {
                            for ih in h0..h1 {
                                let row = (id * sp[1] + ih) * sp[2];
                                for (k, &v) in x[row + w0..row + w1].iter().enumerate() {
                                    sum += v;
                                    if v > best {
                                        best = v;
                                        best_i = row + w0 + k;
                                    }
                                }
                            }
                        }
                        let count = ((d1 - d0) * (h1 - h0) * (w1 - w0)) as f32;
                        o[i] = if self.max { best } else { sum / count.max(1.0) };
                        if let Some(ix) = ix.as_deref_mut() {
                            ix[i] = best_i as i64;
                        }
                        i += 1;
                    }
                }
            }
        };
        if self.max {
            out.par_chunks_mut(plane_out)
                .zip(idx.par_chunks_mut(plane_out))
                .enumerate()
                .for_each(|(p, (o, ix))| run(p, o, Some(ix)));
        } else {
            out.par_chunks_mut(plane_out).enumerate().for_each(|(p, o)| run(p, o, None));
        }
        let mut oshape = shape[..2].to_vec();
        oshape.extend(sizes.iter().map(|&s| s as usize));
        let values = ArrayD::from_shape_vec(IxDyn(&oshape), out).map_err(|e| Error::internal(e.to_string()))?;
        let mut res = vec![from_f32(values, xt.element_type())?];
        if self.max {
            let t = Tensor::i64_from_vec(&oshape, idx)?;
            res.push(if self.index_type == ElementType::I64 { t } else { t.convert(self.index_type)? });
        }
        Ok(res)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize], v: Vec<f32>) -> Tensor {
        Tensor::f32_from_vec(shape, v).unwrap()
    }

    fn seq(n: usize) -> Vec<f32> {
        (0..n).map(|i| i as f32).collect()
    }

    #[allow(clippy::too_many_arguments)]
    fn attrs(
        k: &[usize],
        s: &[usize],
        d: &[usize],
        pb: &[i64],
        pe: &[i64],
        auto_pad: AutoPad,
        rounding: Rounding,
    ) -> PoolAttrs {
        PoolAttrs {
            window: WindowAttrs {
                strides: s.to_vec(),
                dilations: d.to_vec(),
                pads_begin: pb.to_vec(),
                pads_end: pe.to_vec(),
                auto_pad,
            },
            kernel: k.to_vec(),
            rounding,
        }
    }

    fn maxpool(a: PoolAttrs, axis: i64, x: &Tensor) -> (Tensor, Vec<i64>) {
        let mut r = MaxPool { attrs: a, with_indices: true, index_type: ElementType::I64, axis }.eval(&[x]).unwrap();
        let idx = r.pop().unwrap().to_i64_vec();
        (r.pop().unwrap(), idx)
    }

    #[test]
    fn max_pool_2x2_stride_2_with_indices() {
        let x = t(&[1, 2, 4, 4], seq(32));
        let (y, idx) =
            maxpool(attrs(&[2, 2], &[2, 2], &[1, 1], &[0, 0], &[0, 0], AutoPad::Explicit, Rounding::Floor), 0, &x);
        assert_eq!(y.shape(), &[1, 2, 2, 2]);
        assert_eq!(y.to_f64_vec(), vec![5.0, 7.0, 13.0, 15.0, 21.0, 23.0, 29.0, 31.0]);
        assert_eq!(idx, vec![5, 7, 13, 15, 21, 23, 29, 31]);
        // axis 2: indices count within each spatial plane
        let (_, idx) =
            maxpool(attrs(&[2, 2], &[2, 2], &[1, 1], &[0, 0], &[0, 0], AutoPad::Explicit, Rounding::Floor), 2, &x);
        assert_eq!(idx, vec![5, 7, 13, 15, 5, 7, 13, 15]);
    }

    #[test]
    fn max_pool_rounding_modes() {
        // 1-D input 0..5 (len 5), k2 s2: floor 2, ceil 3; pads 1/1 → padded 7: floor 3, ceil 4,
        // ceil_torch 3 (the 4th window would start in the end padding).
        let x = t(&[1, 1, 5], seq(5));
        let a = |pb: i64, pe: i64, r| attrs(&[2], &[2], &[1], &[pb], &[pe], AutoPad::Explicit, r);
        assert_eq!(maxpool(a(0, 0, Rounding::Floor), 0, &x).0.to_f64_vec(), vec![1.0, 3.0]);
        assert_eq!(maxpool(a(0, 0, Rounding::Ceil), 0, &x).0.to_f64_vec(), vec![1.0, 3.0, 4.0]);
        assert_eq!(maxpool(a(0, 0, Rounding::CeilTorch), 0, &x).0.to_f64_vec(), vec![1.0, 3.0, 4.0]);
        assert_eq!(maxpool(a(1, 1, Rounding::Floor), 0, &x).0.to_f64_vec(), vec![0.0, 2.0, 4.0]);
        assert_eq!(maxpool(a(1, 1, Rounding::Ceil), 0, &x).0.shape(), &[1, 1, 4]);
        assert_eq!(maxpool(a(1, 1, Rounding::CeilTorch), 0, &x).0.to_f64_vec(), vec![0.0, 2.0, 4.0]);
    }

    #[test]
    fn max_pool_dilation_negative_values_and_same_pads() {
        let x = t(&[1, 1, 6], vec![-5.0, -1.0, -7.0, -2.0, -9.0, -3.0]);
        // k2 dilation 2: windows {0,2},{1,3},{2,4},{3,5}
        let (y, idx) = maxpool(attrs(&[2], &[1], &[2], &[0], &[0], AutoPad::Explicit, Rounding::Floor), 0, &x);
        assert_eq!(y.to_f64_vec(), vec![-5.0, -1.0, -7.0, -2.0]);
        assert_eq!(idx, vec![0, 1, 2, 3]);
        // same_upper k3 s2 on 6: out 3, pad total 1 at the end; padding never wins the max.
        let (y, _) = maxpool(attrs(&[3], &[2], &[1], &[], &[], AutoPad::SameUpper, Rounding::Floor), 0, &x);
        assert_eq!(y.to_f64_vec(), vec![-1.0, -2.0, -3.0]);
        let (y, _) = maxpool(attrs(&[3], &[2], &[1], &[], &[], AutoPad::SameLower, Rounding::Floor), 0, &x);
        assert_eq!(y.to_f64_vec(), vec![-1.0, -1.0, -2.0]);
    }

    #[test]
    fn max_pool_3d() {
        let x = t(&[1, 1, 2, 2, 2], seq(8));
        let (y, idx) = maxpool(
            attrs(&[2, 2, 1], &[1, 1, 1], &[1, 1, 1], &[0, 0, 0], &[0, 0, 0], AutoPad::Explicit, Rounding::Floor),
            0,
            &x,
        );
        assert_eq!(y.shape(), &[1, 1, 1, 1, 2]);
        assert_eq!(y.to_f64_vec(), vec![6.0, 7.0]);
        assert_eq!(idx, vec![6, 7]);
    }

    fn avgpool(a: PoolAttrs, exclude_pad: bool, x: &Tensor) -> Vec<f64> {
        AvgPool { attrs: a, exclude_pad }.eval(&[x]).unwrap()[0].to_f64_vec()
    }

    #[test]
    fn avg_pool_padding_modes() {
        let x = t(&[1, 1, 3, 3], vec![1.0; 9]);
        let a = attrs(&[2, 2], &[2, 2], &[1, 1], &[1, 1], &[1, 1], AutoPad::Explicit, Rounding::Floor);
        // windows rows/cols {-1,0},{1,2}: 1, 2, 2, 4 real elements out of 4.
        assert_eq!(avgpool(a.clone(), true, &x), vec![1.0; 4]);
        assert_eq!(avgpool(a, false, &x), vec![0.25, 0.5, 0.5, 1.0]);
        // no padding: the divisor is the taps inside, also with exclude-pad false (ceil window).
        let x = t(&[1, 1, 3], vec![1.0, 2.0, 4.0]);
        let a = attrs(&[2], &[2], &[1], &[0], &[0], AutoPad::Explicit, Rounding::Ceil);
        assert_eq!(avgpool(a, false, &x), vec![1.5, 4.0]);
        let a = attrs(&[2], &[2], &[1], &[1], &[0], AutoPad::Explicit, Rounding::Ceil);
        assert_eq!(avgpool(a.clone(), false, &x), vec![0.5, 3.0]);
        assert_eq!(avgpool(a, true, &x), vec![1.0, 3.0]);
        // Checked against OpenVINO 2026.4 CPU: ceil with pads 1/1 on 0..5 gives a 4th window
        // wholly in the padding: 0 with the full-kernel divisor, NaN when padding is excluded.
        let x = t(&[1, 1, 5], seq(5));
        let a = attrs(&[2], &[2], &[1], &[1], &[1], AutoPad::Explicit, Rounding::Ceil);
        assert_eq!(avgpool(a.clone(), false, &x), vec![0.0, 1.5, 3.5, 0.0]);
        let ex = avgpool(a, true, &x);
        assert_eq!(ex[..3], [0.0, 1.5, 3.5]);
        assert!(ex[3].is_nan());
        // same_upper k3 s2 on 7: pads (1, 1), full-kernel divisor.
        let x = t(&[1, 1, 7], (0..7).map(|v| v as f32 - 3.0).collect());
        let a = attrs(&[3], &[2], &[1], &[], &[], AutoPad::SameUpper, Rounding::Floor);
        let got = avgpool(a, false, &x);
        for (g, w) in got.iter().zip([-5.0 / 3.0, -1.0, 1.0, 5.0 / 3.0]) {
            assert!((g - w).abs() < 1e-6, "{got:?}");
        }
    }

    #[test]
    fn adaptive_pools() {
        let x = t(&[1, 1, 5], vec![1.0, 5.0, 2.0, 4.0, 3.0]);
        let sz = Tensor::i64_from_vec(&[1], vec![3]).unwrap();
        // bins [0,2) [1,4) [3,5)
        let y = Adaptive { max: false, index_type: ElementType::I64 }.eval(&[&x, &sz]).unwrap();
        let got = y[0].to_f64_vec();
        for (g, w) in got.iter().zip([3.0, 11.0 / 3.0, 3.5]) {
            assert!((g - w).abs() < 1e-6, "{got:?}");
        }
        let y = Adaptive { max: true, index_type: ElementType::I32 }.eval(&[&x, &sz]).unwrap();
        assert_eq!(y[0].to_f64_vec(), vec![5.0, 5.0, 4.0]);
        assert_eq!(y[1].element_type(), ElementType::I32);
        assert_eq!(y[1].to_i64_vec(), vec![1, 1, 3]);
    }

    #[test]
    fn pool_errors() {
        let x = t(&[1, 1, 2, 2], seq(4));
        let a = attrs(&[3, 3], &[1, 1], &[1, 1], &[0, 0], &[0, 0], AutoPad::Explicit, Rounding::Floor);
        let e = AvgPool { attrs: a, exclude_pad: true }.eval(&[&x]).unwrap_err();
        assert!(e.to_string().contains("larger"), "{e}");
        let e = AvgPool {
            attrs: attrs(&[2], &[1], &[1], &[0], &[0], AutoPad::Explicit, Rounding::Floor),
            exclude_pad: true,
        }
        .eval(&[&x])
        .unwrap_err();
        assert!(e.to_string().contains("spatial"), "{e}");
    }
}
