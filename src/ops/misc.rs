//! Ops that fit no other family: Interpolate, TopK, ScaledDotProductAttention, NonZero, CumSum.

use super::attrs::norm_axis;
use super::op::{BuildCtx, Op, Registry};
use super::shape::{broadcast_numpy, pad_zeros, strides, take, take_maps};
use crate::dispatch_tensor;
use crate::error::{Error, Result};
use crate::tensor::{ElementType, Tensor};
use ndarray::{ArrayView2, ArrayViewMut2};
use rayon::prelude::*;

pub fn register(r: &mut Registry) {
    r.add("Interpolate", &["opset1", "opset4", "opset11"], build_interpolate);
    r.add("TopK", &["opset1", "opset3", "opset11"], build_topk);
    r.add("ScaledDotProductAttention", &["opset13"], build_sdpa);
    r.add("NonZero", &["opset3"], build_non_zero);
    r.add("CumSum", &["opset3"], build_cumsum);
}

fn input<'a>(inputs: &[&'a Tensor], k: usize, op: &str) -> Result<&'a Tensor> {
    inputs.get(k).copied().ok_or_else(|| Error::invalid(format!("{op}: missing input {k}")))
}

fn f32_tensor(shape: &[usize], v: Vec<f32>) -> Result<Tensor> {
    Tensor::f32_from_vec(shape, v)
}

// ---------------------------------------------------------------------------------------------
// Interpolate

#[derive(Debug, Clone, Copy, PartialEq)]
enum InterpMode {
    Nearest,
    Linear,
    LinearOnnx,
    Cubic,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum CoordMode {
    HalfPixel,
    PytorchHalfPixel,
    Asymmetric,
    TfHalfPixelForNn,
    AlignCorners,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum NearestMode {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
    Simple,
}

/// Which inputs carry the target: opset1 (sizes + `axes` attribute), opset4 (sizes, scales,
/// axes), opset11 (sizes or scales, axes).
#[derive(Debug, Clone, PartialEq)]
enum InterpInputs {
    V1 { axes: Vec<i64> },
    V4,
    V11,
}

#[derive(Debug)]
struct Interpolate {
    mode: InterpMode,
    coord: CoordMode,
    nearest: NearestMode,
    use_scales: bool,
    /// The reference implementation's widened triangle filter for downscaling `linear` mode.
    /// Builders leave it off: OpenVINO's CPU plugin (2026.4) ignores the `antialias` attribute
    /// and its outputs are what this engine must match.
    antialias: bool,
    cube_coeff: f32,
    pads_begin: Vec<i64>,
    pads_end: Vec<i64>,
    inputs: InterpInputs,
}

fn build_interpolate(ctx: &BuildCtx) -> Result<Box<dyn Op>> {
    let mode_s = ctx.attr_req("mode")?.to_ascii_lowercase();
    let pads_begin = ctx.attr_i64_list_or("pads_begin", vec![])?;
    let pads_end = ctx.attr_i64_list_or("pads_end", vec![])?;
    // Validated, then ignored like the CPU plugin does (see `Interpolate::antialias`).
    ctx.attr_bool_or("antialias", false)?;
    let antialias = false;
    if ctx.node.version == "opset1" {
        // OpenVINO runs Interpolate-1 as Interpolate-4 with these attributes.
        let rank = ctx.input_info(0).and_then(|p| p.shape.rank());
        let axes = ctx.attr_i64_list("axes")?;
        let mode = match mode_s.as_str() {
            "nearest" => InterpMode::Nearest,
            "linear" if rank == Some(5) => InterpMode::Linear,
            "linear" | "linear_onnx" => InterpMode::LinearOnnx,
            "cubic" => InterpMode::Cubic,
            m => return Err(ctx.err(format!("interpolation mode '{m}' is not supported"))),
        };
        let align = ctx.attr_bool_or("align_corners", false)?;
        let no_pads = pads_begin.iter().chain(&pads_end).all(|&p| p == 0);
        let spatial_hw = rank == Some(4) && {
            let mut a = axes.clone();
            a.sort();
            a == [2, 3]
        };
        let coord = if align {
            CoordMode::AlignCorners
        } else if matches!(mode, InterpMode::Linear | InterpMode::LinearOnnx) && no_pads && !spatial_hw {
            CoordMode::HalfPixel
        } else {
            CoordMode::Asymmetric
        };
        return Ok(Box::new(Interpolate {
            mode,
            coord,
            nearest: NearestMode::Simple,
            use_scales: false,
            antialias,
            cube_coeff: -0.75,
            pads_begin,
            pads_end,
            inputs: InterpInputs::V1 { axes },
        }));
    }
    let mode = match mode_s.as_str() {
        "nearest" => InterpMode::Nearest,
        "linear" => InterpMode::Linear,
        "linear_onnx" => InterpMode::LinearOnnx,
        "cubic" => InterpMode::Cubic,
        m => return Err(ctx.err(format!("interpolation mode '{m}' is not supported"))),
    };
    let coord = match ctx.attr_str_or("coordinate_transformation_mode", "half_pixel").to_ascii_lowercase().as_str() {
        "half_pixel" => CoordMode::HalfPixel,
        "pytorch_half_pixel" => CoordMode::PytorchHalfPixel,
        "asymmetric" => CoordMode::Asymmetric,
        "tf_half_pixel_for_nn" => CoordMode::TfHalfPixelForNn,
        "align_corners" => CoordMode::AlignCorners,
        m => return Err(ctx.err(format!("coordinate_transformation_mode '{m}' is not supported"))),
    };
    let nearest = match ctx.attr_str_or("nearest_mode", "round_prefer_floor").to_ascii_lowercase().as_str() {
        "round_prefer_floor" => NearestMode::RoundPreferFloor,
        "round_prefer_ceil" => NearestMode::RoundPreferCeil,
        "floor" => NearestMode::Floor,
        "ceil" => NearestMode::Ceil,
        "simple" => NearestMode::Simple,
        m => return Err(ctx.err(format!("nearest_mode '{m}' is not supported"))),
    };
    let use_scales = match ctx.attr_req("shape_calculation_mode")?.to_ascii_lowercase().as_str() {
        "sizes" => false,
        "scales" => true,
        m => return Err(ctx.err(format!("shape_calculation_mode '{m}' is not supported"))),
    };
    Ok(Box::new(Interpolate {
        mode,
        coord,
        nearest,
        use_scales,
        antialias,
        cube_coeff: ctx.attr_f64_or("cube_coeff", -0.75)? as f32,
        pads_begin,
        pads_end,
        inputs: if ctx.node.version == "opset4" { InterpInputs::V4 } else { InterpInputs::V11 },
    }))
}

/// Per-axis scale factors.
type Scales = Vec<f32>;

impl Interpolate {
    /// Source coordinate of output coordinate `x` (f32 like OpenVINO's reference).
    fn source_coord(&self, x: f32, scale: f32, out_len: f32, in_len: f32) -> f32 {
        if scale == 1.0 || out_len == in_len {
            return x;
        }
        match self.coord {
            CoordMode::HalfPixel => (x + 0.5) / scale - 0.5,
            CoordMode::PytorchHalfPixel => {
                if out_len > 1.0 {
                    (x + 0.5) / scale - 0.5
                } else {
                    0.0
                }
            }
            CoordMode::Asymmetric => x / scale,
            CoordMode::TfHalfPixelForNn => (x + 0.5) / scale,
            CoordMode::AlignCorners => {
                if out_len == 1.0 {
                    0.0
                } else {
                    x * (in_len - 1.0) / (out_len - 1.0)
                }
            }
        }
    }

    fn nearest_pixel(&self, c: f32, downsample: bool) -> i64 {
        match self.nearest {
            NearestMode::RoundPreferFloor => {
                if c == (c as i64) as f32 + 0.5 {
                    c.floor() as i64
                } else {
                    c.round() as i64
                }
            }
            NearestMode::RoundPreferCeil => c.round() as i64,
            NearestMode::Floor => c.floor() as i64,
            NearestMode::Ceil => c.ceil() as i64,
            NearestMode::Simple => {
                if downsample {
                    c.ceil() as i64
                } else {
                    c as i64
                }
            }
        }
    }

    /// (axes, output sizes, scales) for the interpolated axes of a padded input of `shape`.
    fn targets(&self, inputs: &[&Tensor], shape: &[usize]) -> Result<(Vec<usize>, Vec<usize>, Vec<f32>)> {
        let rank = shape.len();
        let (axes_raw, sizes, scales): (Option<Vec<i64>>, Option<Vec<i64>>, Option<Scales>) = match &self.inputs {
            InterpInputs::V1 { axes } => {
                (Some(axes.clone()), Some(input(inputs, 1, "Interpolate")?.to_i64_vec()), None)
            }
            InterpInputs::V4 => {
                let axes = inputs.get(3).map(|t| t.to_i64_vec());
                if self.use_scales {
                    let s = input(inputs, 2, "Interpolate")?.to_f64_vec().iter().map(|&v| v as f32).collect();
                    (axes, None, Some(s))
                } else {
                    (axes, Some(input(inputs, 1, "Interpolate")?.to_i64_vec()), None)
                }
            }
            InterpInputs::V11 => {
                let axes = inputs.get(2).map(|t| t.to_i64_vec());
                let t = input(inputs, 1, "Interpolate")?;
                if self.use_scales {
                    (axes, None, Some(t.to_f64_vec().iter().map(|&v| v as f32).collect()))
                } else {
                    (axes, Some(t.to_i64_vec()), None)
                }
            }
        };
        let axes: Vec<usize> = match axes_raw {
            Some(a) => a.iter().map(|&x| norm_axis(x, rank)).collect::<Result<_>>()?,
            None => (0..rank).collect(),
        };
        let n = axes.len();
        let (outs, scl) = match (sizes, scales) {
            (Some(s), _) => {
                if s.len() != n {
                    return Err(Error::mismatch(format!("Interpolate: {} sizes for axes {axes:?}", s.len())));
                }
                let outs: Vec<usize> = s
                    .iter()
                    .map(|&v| usize::try_from(v).map_err(|_| Error::invalid(format!("Interpolate: size {v}"))))
                    .collect::<Result<_>>()?;
                let scl = outs.iter().zip(&axes).map(|(&o, &a)| o as f32 / shape[a] as f32).collect();
                (outs, scl)
            }
            (None, Some(s)) => {
                if s.len() != n {
                    return Err(Error::mismatch(format!("Interpolate: {} scales for axes {axes:?}", s.len())));
                }
                // A small epsilon keeps e.g. 3 * (1/3) from flooring to 0.
                let outs = s
                    .iter()
                    .zip(&axes)
                    .map(|(&k, &a)| (shape[a] as f32 * k + 1e-5).floor().max(0.0) as usize)
                    .collect();
                (outs, s)
            }
            (None, None) => return Err(Error::internal("Interpolate without sizes or scales")),
        };
        Ok((axes, outs, scl))
    }

    /// Weighted source taps of every output coordinate along one axis (float modes).
    fn taps(&self, in_len: usize, out_len: usize, scale: f32, antialias: bool) -> Vec<Vec<(usize, f32)>> {
        let (inl, outl) = (in_len as f32, out_len as f32);
        let last = in_len as i64 - 1;
        (0..out_len)
            .map(|o| {
                let c = self.source_coord(o as f32, scale, outl, inl);
                match self.mode {
                    InterpMode::LinearOnnx => {
                        let c = c.clamp(0.0, inl - 1.0);
                        let i1 = (c as i64).min(last);
                        let i2 = (i1 + 1).min(last);
                        if i1 == i2 {
                            vec![(i1 as usize, 1.0)]
                        } else {
                            let d = c - i1 as f32;
                            vec![(i1 as usize, 1.0 - d), (i2 as usize, d)]
                        }
                    }
                    InterpMode::Cubic => {
                        let base = c.floor();
                        let s = c - base;
                        let a = self.cube_coeff;
                        let coeff = [
                            ((a * (s + 1.0) - 5.0 * a) * (s + 1.0) + 8.0 * a) * (s + 1.0) - 4.0 * a,
                            ((a + 2.0) * s - (a + 3.0)) * s * s + 1.0,
                            ((a + 2.0) * (1.0 - s) - (a + 3.0)) * (1.0 - s) * (1.0 - s) + 1.0,
                            ((a * (2.0 - s) - 5.0 * a) * (2.0 - s) + 8.0 * a) * (2.0 - s) - 4.0 * a,
                        ];
                        (0..4).map(|k| (((base as i64) + k as i64 - 1).clamp(0, last) as usize, coeff[k])).collect()
                    }
                    // Triangle filter, widened by 1/scale when antialiasing a downscale.
                    _ => {
                        let a = if antialias { scale } else { 1.0 };
                        let r = if scale > 1.0 { 2 } else { (2.0 / a).ceil() as i64 };
                        let center = c.round() as i64;
                        let mut t: Vec<(usize, f32)> = (center - r..=center + r)
                            .filter(|&k| (0..=last).contains(&k))
                            .map(|k| (k as usize, (1.0 - (a * (c - k as f32)).abs()).max(0.0)))
                            .filter(|&(_, w)| w > 0.0)
                            .collect();
                        let sum: f32 = t.iter().map(|x| x.1).sum();
                        if sum > 0.0 {
                            t.iter_mut().for_each(|x| x.1 /= sum);
                        }
                        t
                    }
                }
            })
            .collect()
    }
}

/// Applies per-output-coordinate taps along `axis` of a row-major f32 buffer.
fn apply_taps(data: &[f32], shape: &[usize], axis: usize, taps: &[Vec<(usize, f32)>]) -> (Vec<f32>, Vec<usize>) {
    let outer: usize = shape[..axis].iter().product();
    let n_in = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let n_out = taps.len();
    let mut out = vec![0f32; outer * n_out * inner];
    for o in 0..outer {
        let src = &data[o * n_in * inner..(o + 1) * n_in * inner];
        for (j, t) in taps.iter().enumerate() {
            let dst = &mut out[(o * n_out + j) * inner..(o * n_out + j + 1) * inner];
            for &(k, w) in t {
                let row = &src[k * inner..(k + 1) * inner];
                dst.iter_mut().zip(row).for_each(|(d, &s)| *d += w * s);
            }
        }
    }
    let mut new_shape = shape.to_vec();
    new_shape[axis] = n_out;
    (out, new_shape)
}

impl Op for Interpolate {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let x0 = input(inputs, 0, "Interpolate")?;
        let rank = x0.rank();
        let padded;
        let x = if self.pads_begin.iter().chain(&self.pads_end).any(|&p| p != 0) {
            let mut pb = self.pads_begin.clone();
            let mut pe = self.pads_end.clone();
            pb.resize(rank, 0);
            pe.resize(rank, 0);
            padded = pad_zeros(x0, &pb, &pe)?;
            &padded
        } else {
            x0
        };
        let shape = x.shape().to_vec();
        let (axes, outs, scales) = self.targets(inputs, &shape)?;
        let mut all_scale = vec![1f32; rank];
        let mut out_shape = shape.clone();
        for (i, &a) in axes.iter().enumerate() {
            all_scale[a] = scales[i];
            out_shape[a] = outs[i];
        }
        if self.mode == InterpMode::Nearest {
            let st = strides(&shape);
            let maps: Vec<Vec<usize>> = (0..rank)
                .map(|d| {
                    (0..out_shape[d])
                        .map(|o| {
                            let c = self.source_coord(o as f32, all_scale[d], out_shape[d] as f32, shape[d] as f32);
                            let p = self.nearest_pixel(c, all_scale[d] < 1.0).clamp(0, shape[d] as i64 - 1);
                            p.max(0) as usize * st[d]
                        })
                        .collect()
                })
                .collect();
            return Ok(vec![take_maps(x, &maps, &out_shape, None)?]);
        }
        let antialias = self.antialias && scales.iter().any(|&s| s < 1.0);
        let mut data: Vec<f32> = x.to_f32().iter().copied().collect();
        let mut cur = shape.clone();
        for (i, &a) in axes.iter().enumerate() {
            if outs[i] == shape[a] && (self.mode != InterpMode::Linear || !antialias || scales[i] == 1.0) {
                continue;
            }
            if shape[a] == 0 {
                return Err(Error::mismatch(format!("Interpolate: empty axis {a} in {shape:?}")));
            }
            let taps = self.taps(shape[a], outs[i], scales[i], antialias);
            let (d, s) = apply_taps(&data, &cur, a, &taps);
            data = d;
            cur = s;
        }
        Ok(vec![f32_tensor(&cur, data)?.convert(x.element_type())?])
    }
}

// ---------------------------------------------------------------------------------------------
// TopK

#[derive(Debug, Clone, Copy, PartialEq)]
enum TopKSort {
    Value,
    Index,
    None,
}

#[derive(Debug)]
struct TopK {
    axis: i64,
    max: bool,
    sort: TopKSort,
    index_type: ElementType,
}

fn build_topk(ctx: &BuildCtx) -> Result<Box<dyn Op>> {
    let max = match ctx.attr_req("mode")?.to_ascii_lowercase().as_str() {
        "max" => true,
        "min" => false,
        m => return Err(ctx.err(format!("TopK mode '{m}' is not max or min"))),
    };
    let sort = match ctx.attr_str_or("sort", "none").to_ascii_lowercase().as_str() {
        "value" => TopKSort::Value,
        "index" => TopKSort::Index,
        "none" => TopKSort::None,
        s => return Err(ctx.err(format!("TopK sort '{s}' is not value, index or none"))),
    };
    let index_type =
        if ctx.attr("index_element_type").is_some() { ctx.attr_type("index_element_type")? } else { ElementType::I32 };
    if !matches!(index_type, ElementType::I32 | ElementType::I64) {
        return Err(ctx.err(format!("index_element_type {index_type} is not i32 or i64")));
    }
    Ok(Box::new(TopK { axis: ctx.attr_i64("axis")?, max, sort, index_type }))
}

/// Flat source positions of the top k along `axis` for every lane (row-major output order).
fn topk_positions<T: PartialOrd + Copy>(
    v: &[T],
    shape: &[usize],
    axis: usize,
    k: usize,
    max: bool,
    sort: TopKSort,
) -> Vec<(usize, usize)> {
    let outer: usize = shape[..axis].iter().product();
    let n = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let mut out = vec![(0usize, 0usize); outer * k * inner];
    let mut lane: Vec<usize> = Vec::with_capacity(n);
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| v[(o * n + j) * inner + i];
            lane.clear();
            lane.extend(0..n);
            // Ties keep the lower index first; NaN compares as equal.
            lane.sort_by(|&a, &b| {
                let ord = at(a).partial_cmp(&at(b)).unwrap_or(std::cmp::Ordering::Equal);
                let ord = if max { ord.reverse() } else { ord };
                ord.then(a.cmp(&b))
            });
            lane.truncate(k);
            if sort == TopKSort::Index {
                lane.sort_unstable();
            }
            for (r, &j) in lane.iter().enumerate() {
                out[(o * k + r) * inner + i] = ((o * n + j) * inner + i, j);
            }
        }
    }
    out
}

impl Op for TopK {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let x = input(inputs, 0, "TopK")?;
        let k_raw =
            *input(inputs, 1, "TopK")?.to_i64_vec().first().ok_or_else(|| Error::invalid("TopK: k is empty"))?;
        let shape = x.shape().to_vec();
        let axis = norm_axis(self.axis, shape.len())?;
        let k = usize::try_from(k_raw).map_err(|_| Error::invalid(format!("TopK: k = {k_raw}")))?.min(shape[axis]);
        let pos = dispatch_tensor!(x, a => {
            let owned: Vec<_> = a.iter().copied().collect();
            topk_positions(&owned, &shape, axis, k, self.max, self.sort)
        });
        let mut out_shape = shape.clone();
        out_shape[axis] = k;
        let flat: Vec<usize> = pos.iter().map(|p| p.0).collect();
        let values = take(x, &flat, &out_shape, None)?;
        let idx: Vec<f64> = pos.iter().map(|p| p.1 as f64).collect();
        let indices = Tensor::from_f64_vec(self.index_type, &out_shape, idx)?;
        Ok(vec![values, indices])
    }
}

// ---------------------------------------------------------------------------------------------
// ScaledDotProductAttention

#[derive(Debug)]
struct Sdpa {
    causal: bool,
}

fn build_sdpa(ctx: &BuildCtx) -> Result<Box<dyn Op>> {
    Ok(Box::new(Sdpa { causal: ctx.attr_bool_or("causal", false)? }))
}

/// Numpy broadcast of several batch shapes.
fn broadcast_shapes(shapes: &[&[usize]]) -> Result<Vec<usize>> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![1usize; rank];
    for s in shapes {
        for (i, &d) in s.iter().enumerate() {
            let o = &mut out[rank - s.len() + i];
            if *o == 1 {
                *o = d;
            } else if d != 1 && d != *o {
                return Err(Error::mismatch(format!("shapes {shapes:?} do not broadcast")));
            }
        }
    }
    Ok(out)
}

impl Op for Sdpa {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let q = input(inputs, 0, "ScaledDotProductAttention")?;
        let k = input(inputs, 1, "ScaledDotProductAttention")?;
        let v = input(inputs, 2, "ScaledDotProductAttention")?;
        let (qs, ks, vs) = (q.shape(), k.shape(), v.shape());
        if qs.len() < 2 || ks.len() < 2 || vs.len() < 2 {
            return Err(Error::mismatch("ScaledDotProductAttention: q, k, v need rank >= 2"));
        }
        let (l, e) = (qs[qs.len() - 2], qs[qs.len() - 1]);
        let (s, ek) = (ks[ks.len() - 2], ks[ks.len() - 1]);
        let (sv, ev) = (vs[vs.len() - 2], vs[vs.len() - 1]);
        if ek != e || sv != s {
            return Err(Error::mismatch(format!("ScaledDotProductAttention: q {qs:?}, k {ks:?}, v {vs:?}")));
        }
        // The mask is ignored when causal is set.
        let mask = if self.causal { None } else { inputs.get(3).copied() };
        let mut batch_shapes: Vec<&[usize]> = vec![&qs[..qs.len() - 2], &ks[..ks.len() - 2], &vs[..vs.len() - 2]];
        let mask_batch: Vec<usize>;
        if let Some(m) = mask {
            let ms = m.shape();
            mask_batch = if ms.len() > 2 { ms[..ms.len() - 2].to_vec() } else { vec![] };
            batch_shapes.push(&mask_batch);
        }
        let batch = broadcast_shapes(&batch_shapes)?;
        let nb: usize = batch.iter().product();
        let full = |tail: &[usize]| -> Vec<usize> { batch.iter().chain(tail).copied().collect() };
        let qf = broadcast_numpy(q, &full(&[l, e]))?.to_f32();
        let kf = broadcast_numpy(k, &full(&[s, e]))?.to_f32();
        let vf = broadcast_numpy(v, &full(&[s, ev]))?.to_f32();
        let (qd, kd, vd) = (
            qf.as_slice().ok_or_else(|| Error::internal("q not contiguous"))?,
            kf.as_slice().ok_or_else(|| Error::internal("k not contiguous"))?,
            vf.as_slice().ok_or_else(|| Error::internal("v not contiguous"))?,
        );
        // Additive mask values per (batch, l, s).
        let mask_add: Option<Vec<f32>> = match mask {
            None => None,
            Some(m) => {
                let mb = broadcast_numpy(m, &full(&[l, s]))?;
                Some(match &mb {
                    Tensor::Bool(a) => a.iter().map(|&keep| if keep { 0.0 } else { f32::NEG_INFINITY }).collect(),
                    other => other.to_f32().iter().copied().collect(),
                })
            }
        };
        let scale = match inputs.get(4) {
            Some(t) => {
                *t.to_f32().iter().next().ok_or_else(|| Error::invalid("ScaledDotProductAttention: empty scale"))?
            }
            None => 1.0 / (e as f32).sqrt(),
        };
        let mut out = vec![0f32; nb * l * ev];
        // Per batch×head: scores = Q·Kᵀ, softmax per row, out = P·V; heads in parallel.
        out.par_chunks_mut((l * ev).max(1)).enumerate().for_each(|(b, ob)| {
            let qm = ArrayView2::from_shape((l, e), &qd[b * l * e..(b + 1) * l * e]).expect("q block");
            let km = ArrayView2::from_shape((s, e), &kd[b * s * e..(b + 1) * s * e]).expect("k block");
            let vm = ArrayView2::from_shape((s, ev), &vd[b * s * ev..(b + 1) * s * ev]).expect("v block");
            let mut scores = ndarray::Array2::<f32>::zeros((l, s));
            super::gemm::gemm_f32(qm, km.t(), scores.view_mut(), 0.0);
            let flat = scores.as_slice_mut().expect("a fresh array is contiguous");
            for (i, row) in flat.chunks_mut(s.max(1)).enumerate() {
                let mask_row = mask_add.as_ref().map(|m| &m[(b * l + i) * s..(b * l + i + 1) * s]);
                for (j, sc) in row.iter_mut().enumerate() {
                    let mut dot = *sc * scale;
                    if self.causal && j > i {
                        dot = f32::NEG_INFINITY;
                    }
                    if let Some(m) = mask_row {
                        dot += m[j];
                    }
                    *sc = dot;
                }
                let mx = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                // exp_f32 gives 0 below −87.33: a masked key (score about −3.4e38) costs no
                // libm underflow path.
                row.iter_mut().for_each(|sc| *sc = super::activation::exp_f32(*sc - mx));
                let sum: f32 = row.iter().sum();
                row.iter_mut().for_each(|p| *p /= sum);
            }
            let om = ArrayViewMut2::from_shape((l, ev), ob).expect("out block");
            super::gemm::gemm_f32(scores.view(), vm, om, 0.0);
        });
        Ok(vec![f32_tensor(&full(&[l, ev]), out)?.convert(q.element_type())?])
    }
}

// ---------------------------------------------------------------------------------------------
// NonZero / CumSum

#[derive(Debug)]
struct NonZero {
    out: ElementType,
}

fn build_non_zero(ctx: &BuildCtx) -> Result<Box<dyn Op>> {
    let out = if ctx.attr("output_type").is_some() { ctx.attr_type("output_type")? } else { ElementType::I64 };
    if !matches!(out, ElementType::I32 | ElementType::I64) {
        return Err(ctx.err(format!("output_type {out} is not i32 or i64")));
    }
    Ok(Box::new(NonZero { out }))
}

impl Op for NonZero {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let x = input(inputs, 0, "NonZero")?;
        let shape = x.shape().to_vec();
        let rank = shape.len();
        let st = strides(&shape);
        let nz: Vec<usize> = x.to_f64_vec().iter().enumerate().filter(|(_, &v)| v != 0.0).map(|(i, _)| i).collect();
        let n = nz.len();
        let mut v = vec![0f64; rank * n];
        for (c, &flat) in nz.iter().enumerate() {
            for d in 0..rank {
                v[d * n + c] = ((flat / st[d]) % shape[d]) as f64;
            }
        }
        Ok(vec![Tensor::from_f64_vec(self.out, &[rank, n], v)?])
    }
}

#[derive(Debug)]
struct CumSum {
    exclusive: bool,
    reverse: bool,
}

fn build_cumsum(ctx: &BuildCtx) -> Result<Box<dyn Op>> {
    Ok(Box::new(CumSum {
        exclusive: ctx.attr_bool_or("exclusive", false)?,
        reverse: ctx.attr_bool_or("reverse", false)?,
    }))
}

impl Op for CumSum {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let x = input(inputs, 0, "CumSum")?;
        let shape = x.shape().to_vec();
        let axis = match inputs.get(1) {
            Some(a) => {
                norm_axis(*a.to_i64_vec().first().ok_or_else(|| Error::invalid("CumSum: empty axis"))?, shape.len())?
            }
            None => 0,
        };
        if shape.is_empty() {
            return Ok(vec![x.clone()]);
        }
        let outer: usize = shape[..axis].iter().product();
        let n = shape[axis];
        let inner: usize = shape[axis + 1..].iter().product();
        // Sums in f64: exact for f32 data and for integers below 2^53.
        let v = x.to_f64_vec();
        let mut out = vec![0f64; v.len()];
        for o in 0..outer {
            for i in 0..inner {
                let mut acc = 0f64;
                for step in 0..n {
                    let j = if self.reverse { n - 1 - step } else { step };
                    let at = (o * n + j) * inner + i;
                    if self.exclusive {
                        out[at] = acc;
                        acc += v[at];
                    } else {
                        acc += v[at];
                        out[at] = acc;
                    }
                }
            }
        }
        Ok(vec![Tensor::from_f64_vec(x.element_type(), &shape, out)?])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};

    fn f(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::f32_from_vec(shape, v.to_vec()).unwrap()
    }
    fn i(v: &[i64]) -> Tensor {
        Tensor::i64_from_vec(&[v.len()], v.to_vec()).unwrap()
    }
    fn close(a: &[f64], b: &[f64]) {
        assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
        }
    }
    fn interp(mode: InterpMode, coord: CoordMode, nearest: NearestMode, use_scales: bool) -> Interpolate {
        Interpolate {
            mode,
            coord,
            nearest,
            use_scales,
            antialias: false,
            cube_coeff: -0.75,
            pads_begin: vec![],
            pads_end: vec![],
            inputs: InterpInputs::V11,
        }
    }

    #[test]
    fn interpolate_nearest_modes() {
        let x = f(&[1, 1, 1, 2], &[1., 2.]);
        let op = interp(InterpMode::Nearest, CoordMode::Asymmetric, NearestMode::Floor, false);
        let y = op.eval(&[&x, &i(&[4]), &i(&[3])]).unwrap().remove(0);
        assert_eq!(y.shape(), &[1, 1, 1, 4]);
        close(&y.to_f64_vec(), &[1., 1., 2., 2.]);
        // half_pixel + round_prefer_floor, scales mode: x2 upsample of [1,2,3].
        let x = f(&[3], &[1., 2., 3.]);
        let op = interp(InterpMode::Nearest, CoordMode::HalfPixel, NearestMode::RoundPreferFloor, true);
        let y = op.eval(&[&x, &f(&[1], &[2.0])]).unwrap().remove(0);
        // coords: -0.25, 0.25, 0.75, 1.25, 1.75, 2.25 → 0, 0, 1, 1, 2, 2
        close(&y.to_f64_vec(), &[1., 1., 2., 2., 3., 3.]);
        // Integer data stays integer.
        let xi = Tensor::i64_from_vec(&[2], vec![7, 9]).unwrap();
        let op = interp(InterpMode::Nearest, CoordMode::Asymmetric, NearestMode::Simple, false);
        let y = op.eval(&[&xi, &i(&[4])]).unwrap().remove(0);
        assert_eq!(y, i(&[7, 7, 9, 9]));
    }

    #[test]
    fn interpolate_linear_onnx_and_align_corners() {
        let x = f(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
        let op = interp(InterpMode::LinearOnnx, CoordMode::AlignCorners, NearestMode::Floor, false);
        let y = op.eval(&[&x, &i(&[3, 3]), &i(&[2, 3])]).unwrap().remove(0);
        close(&y.to_f64_vec(), &[1., 1.5, 2., 2., 2.5, 3., 3., 3.5, 4.]);
        let op = interp(InterpMode::LinearOnnx, CoordMode::HalfPixel, NearestMode::Floor, false);
        let x = f(&[2], &[1., 3.]);
        let y = op.eval(&[&x, &i(&[4])]).unwrap().remove(0);
        // coords -0.25→clamped 0, 0.25, 0.75, 1.25→1
        close(&y.to_f64_vec(), &[1., 1.5, 2.5, 3.]);
        // Linear (triangle) gives the same inside, renormalized at the edges.
        let op = interp(InterpMode::Linear, CoordMode::HalfPixel, NearestMode::Floor, false);
        let y = op.eval(&[&x, &i(&[4])]).unwrap().remove(0);
        close(&y.to_f64_vec(), &[1., 1.5, 2.5, 3.]);
    }

    #[test]
    fn interpolate_cubic_matches_hand_values() {
        // Downsampling [0,1,2,3] by 2 asymmetric: coords 0 and 2 hit samples exactly.
        let x = f(&[4], &[0., 1., 2., 3.]);
        let op = interp(InterpMode::Cubic, CoordMode::Asymmetric, NearestMode::Floor, false);
        let y = op.eval(&[&x, &i(&[2])]).unwrap().remove(0);
        close(&y.to_f64_vec(), &[0., 2.]);
        // Midpoint between 1 and 2 of a linear ramp (away from the clamped edge) is 1.5.
        let x = f(&[6], &[0., 1., 2., 3., 4., 5.]);
        let op = interp(InterpMode::Cubic, CoordMode::Asymmetric, NearestMode::Floor, true);
        let y = op.eval(&[&x, &f(&[1], &[2.0])]).unwrap().remove(0);
        assert_eq!(y.shape(), &[12]);
        close(&y.to_f64_vec()[2..5], &[1.0, 1.5, 2.0]);
    }

    #[test]
    fn interpolate_linear_antialias_widens_the_filter() {
        // Only reachable when `antialias` is set directly (builders follow the CPU plugin).
        let x = f(&[8], &[0., 1., 2., 3., 4., 5., 6., 7.]);
        let mut op = interp(InterpMode::Linear, CoordMode::HalfPixel, NearestMode::Floor, true);
        op.antialias = true;
        let y = op.eval(&[&x, &f(&[1], &[0.5])]).unwrap().remove(0);
        // Output 0: source 0.5, taps 0,1,2 with weights .75,.75,.25.
        assert!((y.to_f64_vec()[0] - 1.25 / 1.75).abs() < 1e-6, "{y:?}");
        op.antialias = false;
        let y = op.eval(&[&x, &f(&[1], &[0.5])]).unwrap().remove(0);
        close(&y.to_f64_vec(), &[0.5, 2.5, 4.5, 6.5]);
    }

    #[test]
    fn interpolate_pads_and_v1_inputs() {
        let x = f(&[2], &[1., 2.]);
        let mut op = interp(InterpMode::Nearest, CoordMode::Asymmetric, NearestMode::Simple, false);
        op.pads_begin = vec![1];
        op.pads_end = vec![1];
        op.inputs = InterpInputs::V1 { axes: vec![0] };
        let y = op.eval(&[&x, &i(&[4])]).unwrap().remove(0);
        close(&y.to_f64_vec(), &[0., 1., 2., 0.]);
    }

    #[test]
    fn topk_modes_sorts_and_index_type() {
        let x = f(&[2, 3], &[1., 3., 2., 5., 4., 5.]);
        let op = TopK { axis: -1, max: true, sort: TopKSort::Value, index_type: ElementType::I32 };
        let out = op.eval(&[&x, &i(&[2])]).unwrap();
        close(&out[0].to_f64_vec(), &[3., 2., 5., 5.]);
        assert_eq!(out[1].element_type(), ElementType::I32);
        close(&out[1].to_f64_vec(), &[1., 2., 0., 2.]);
        let op = TopK { axis: 1, max: false, sort: TopKSort::Index, index_type: ElementType::I64 };
        let out = op.eval(&[&x, &i(&[2])]).unwrap();
        close(&out[0].to_f64_vec(), &[1., 2., 5., 4.]);
        close(&out[1].to_f64_vec(), &[0., 2., 0., 1.]);
        // Axis 0 on integers.
        let xi = Tensor::i64_from_vec(&[2, 2], vec![1, 9, 4, 2]).unwrap();
        let op = TopK { axis: 0, max: true, sort: TopKSort::Value, index_type: ElementType::I64 };
        let out = op.eval(&[&xi, &i(&[1])]).unwrap();
        assert_eq!(out[0], Tensor::i64_from_vec(&[1, 2], vec![4, 9]).unwrap());
    }

    #[test]
    fn sdpa_plain_causal_and_masks() {
        // One query attending to two keys with equal scores → mean of values.
        let q = f(&[1, 1, 2], &[0., 0.]);
        let k = f(&[1, 2, 2], &[1., 0., 0., 1.]);
        let v = f(&[1, 2, 1], &[2., 4.]);
        let y = Sdpa { causal: false }.eval(&[&q, &k, &v]).unwrap().remove(0);
        close(&y.to_f64_vec(), &[3.]);
        // Causal with L = S = 2: first row sees only the first value.
        let q = f(&[2, 2], &[0., 0., 0., 0.]);
        let k = f(&[2, 2], &[1., 0., 0., 1.]);
        let v = f(&[2, 1], &[2., 4.]);
        let y = Sdpa { causal: true }.eval(&[&q, &k, &v]).unwrap().remove(0);
        close(&y.to_f64_vec(), &[2., 3.]);
        // Boolean mask hiding the second key.
        let m = Tensor::Bool(ArrayD::from_shape_vec(IxDyn(&[1, 2]), vec![true, false]).unwrap());
        let y = Sdpa { causal: false }.eval(&[&q, &k, &v, &m]).unwrap().remove(0);
        close(&y.to_f64_vec(), &[2., 2.]);
        // Float mask plus explicit scale: scores q·k = [1, 0]·scale 0 → equal, mask adds ln(3) to key 1.
        let q = f(&[1, 2], &[1., 0.]);
        let mf = f(&[1, 2], &[0., 3f32.ln()]);
        let y = Sdpa { causal: false }.eval(&[&q, &k, &v, &mf, &Tensor::scalar_f32(0.0)]).unwrap().remove(0);
        close(&y.to_f64_vec(), &[0.25 * 2. + 0.75 * 4.]);
    }

    #[test]
    fn non_zero_and_cumsum() {
        let x = f(&[2, 2], &[0., 1., 2., 0.]);
        let y = NonZero { out: ElementType::I64 }.eval(&[&x]).unwrap().remove(0);
        assert_eq!(y, Tensor::i64_from_vec(&[2, 2], vec![0, 1, 1, 0]).unwrap());
        let x = f(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        let c = |e: bool, r: bool| CumSum { exclusive: e, reverse: r }.eval(&[&x, &i(&[1])]).unwrap().remove(0);
        close(&c(false, false).to_f64_vec(), &[1., 3., 6., 4., 9., 15.]);
        close(&c(true, false).to_f64_vec(), &[0., 1., 3., 0., 4., 9.]);
        close(&c(false, true).to_f64_vec(), &[6., 5., 3., 15., 11., 6.]);
        close(&c(true, true).to_f64_vec(), &[5., 3., 0., 11., 6., 0.]);
    }
}
