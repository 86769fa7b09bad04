//! Ranges → FakeQuantize parameters (NNCF's arithmetic), FQ insertion and int8 weights.

use super::config::{Estimator, RangeEstimator};
use super::hw_config::QSpec;
use super::stats::{aggregate, SampleScalars};
use crate::error::{Error, Result};
use crate::graph::{Attrs, Graph, NodeId, Outlet, PartialShape, PortInfo};
use crate::tensor::{ElementType, Tensor};
use ndarray::{ArrayD, Axis, Dimension, IxDyn};

/// Range of one activation tensor from per-sample statistics.
pub fn activation_range(stats: &[SampleScalars], symmetric: bool, est: Option<&RangeEstimator>) -> Result<(f64, f64)> {
    let default_min = Estimator { kind: Some("min".into()), aggregator: Some("mean".into()), ..Default::default() };
    let default_max = Estimator {
        kind: Some(if symmetric { "abs_max" } else { "max" }.into()),
        aggregator: Some("mean".into()),
        ..Default::default()
    };
    // What the user's estimator leaves out comes from the default (POT's presets do the same).
    let fill = |user: Option<&Estimator>, d: Estimator| match user {
        Some(u) => Estimator {
            kind: u.kind.clone().or(d.kind),
            aggregator: u.aggregator.clone().or(d.aggregator),
            ..u.clone()
        },
        None => d,
    };
    let min_e = fill(est.and_then(|e| e.min.as_ref()), default_min);
    let max_e = fill(est.and_then(|e| e.max.as_ref()), default_max);
    let pick = |e: &Estimator, is_min: bool| -> Result<f64> {
        let prob = e.outlier_prob.unwrap_or(1e-4);
        let kind = e.kind.clone().unwrap_or_else(|| if is_min { "min".into() } else { "max".into() });
        let per: Vec<f64> = stats
            .iter()
            .map(|s| {
                let q = |abs: bool, at: f64| {
                    s.quantiles
                        .iter()
                        .find(|x| (x.0 - at).abs() < 1e-12)
                        .map(|x| if abs { x.2 } else { x.1 })
                        .unwrap_or(if abs {
                            s.abs_max
                        } else if is_min {
                            s.min
                        } else {
                            s.max
                        })
                };
                match kind.as_str() {
                    "min" => Ok(s.min),
                    "max" => Ok(s.max),
                    "abs_max" => Ok(if is_min { -s.abs_max } else { s.abs_max }),
                    "quantile" => Ok(q(false, if is_min { prob } else { 1.0 - prob })),
                    "abs_quantile" => {
                        let v = q(true, 1.0 - prob);
                        Ok(if is_min { -v } else { v })
                    }
                    other => Err(Error::invalid(format!("unknown range estimator type '{other}'"))),
                }
            })
            .collect::<Result<_>>()?;
        aggregate(&per, e.aggregator.as_deref().unwrap_or("mean"), prob)
    };
    Ok((pick(&min_e, true)?, pick(&max_e, false)?))
}

/// Quantiles the estimators need, so statistics collect them.
pub fn needed_quantiles(est: Option<&RangeEstimator>) -> Vec<f64> {
    let mut q = vec![];
    if let Some(e) = est {
        for (x, is_min) in [(&e.min, true), (&e.max, false)] {
            if let Some(x) = x {
                let p = x.outlier_prob.unwrap_or(1e-4);
                match x.kind.as_deref() {
                    Some("quantile") => q.push(if is_min { p } else { 1.0 - p }),
                    Some("abs_quantile") => q.push(1.0 - p),
                    _ => {}
                }
            }
        }
    }
    q
}

/// FakeQuantize limits of one activation quantizer; per channel when `shape` is not scalar.
#[derive(Clone, Debug, PartialEq)]
pub struct ActRange {
    pub low: Vec<f32>,
    pub high: Vec<f32>,
    pub levels: usize,
    /// Shape of the limit constants ([] per tensor, [1,C,1,1] per channel).
    pub shape: Vec<usize>,
}

impl ActRange {
    pub fn tensors(&self) -> crate::error::Result<(Tensor, Tensor)> {
        Ok((
            Tensor::f32_from_vec(&self.shape, self.low.clone())?,
            Tensor::f32_from_vec(&self.shape, self.high.clone())?,
        ))
    }
}

/// Per-channel activation limits from per-channel minima/maxima (NNCF MINMAX estimator).
pub fn activation_fq_per_channel(min: &[f32], max: &[f32], spec: &QSpec, rank: usize, axis: usize) -> ActRange {
    let levels = spec.levels();
    let mut shape = vec![1usize; rank.max(axis + 1)];
    shape[axis] = min.len();
    let (mut low, mut high) = (vec![], vec![]);
    if spec.symmetric {
        let absmax: Vec<f64> = min.iter().zip(max).map(|(a, b)| (a.abs()).max(b.abs()) as f64).collect();
        let all = absmax.iter().cloned().fold(0.0f64, f64::max);
        let floor = (all * 0.01).max(8e-5);
        let signed = min.iter().any(|&x| x < 0.0);
        for m in absmax {
            let h = m.max(floor);
            high.push(h as f32);
            low.push(if signed { (-h * levels as f64 / (levels as f64 - 2.0)) as f32 } else { 0.0 });
        }
    } else {
        for (&mn, &mx) in min.iter().zip(max) {
            let (l, h, _) = activation_fq(mn as f64, mx as f64, spec);
            low.push(l);
            high.push(h);
        }
    }
    ActRange { low, high, levels, shape }
}

/// POT's `clipping_value` on an activation quantizer's final limits (after the range is made
/// symmetric or moved for the zero point, as POT clips): the high limit from above, the low one
/// from below.
pub fn clip_limits(low: f32, high: f32, est: Option<&RangeEstimator>) -> (f32, f32) {
    let Some(e) = est else { return (low, high) };
    let high2 = e.max.as_ref().map_or(high, |m| m.clip(high as f64, false) as f32);
    let low2 = e.min.as_ref().map_or(low, |m| m.clip(low as f64, true) as f32);
    // A clip that empties the range (a max clipped below the min) leaves the range as it was.
    if low2 < high2 {
        (low2, high2)
    } else {
        (low, high)
    }
}

/// FakeQuantize limits for an activation: (input_low, input_high, levels).
pub fn activation_fq(min: f64, max: f64, spec: &QSpec) -> (f32, f32, usize) {
    let levels = spec.levels();
    if spec.symmetric {
        let high = max.abs().max(8e-5);
        let low = if min < 0.0 { -high * levels as f64 / (levels as f64 - 2.0) } else { 0.0 };
        (low as f32, high as f32, levels)
    } else {
        // Widen tiny ranges, include zero, then move one border so zero is exactly on the grid.
        let range = max - min;
        let corr = if range > 8e-4 { 0.0 } else { 8e-4 };
        let lo = (min - corr).min(0.0);
        let hi = (max + corr).max(0.0);
        let (lo, hi) = tune_range(lo, hi, spec.bits);
        (lo as f32, hi as f32, levels)
    }
}

fn tune_range(left: f64, right: f64, bits: u32) -> (f64, f64) {
    tune_range_steps(left, right, ((1u64 << bits) - 1) as f64)
}

/// POT's `tune_range` on a grid of `level_high + 1` levels.
fn tune_range_steps(left: f64, right: f64, level_high: f64) -> (f64, f64) {
    let s = level_high / (right - left);
    let qval = (-left * s).round_ties_even();
    let ra = if qval < level_high { qval / (qval - level_high) * right } else { left };
    let rb = if qval > 0.0 { (qval - level_high) / qval * left } else { right };
    let range_a = right - ra;
    let range_b = rb - left;
    if range_a > range_b {
        (ra, right)
    } else {
        (left, rb)
    }
}

/// Integer weights: codes, scales and zero points broadcastable to the weight.
pub struct QuantizedWeight {
    /// `q − ⌊levels/2⌋` for grid index `q` in `0..levels`: −127..127 for the default 255 levels.
    pub codes: ArrayD<i8>,
    pub scale: ArrayD<f32>,
    /// In code units, shaped like `scale`; `None` when zero (symmetric weights on an odd grid).
    pub zero_point: Option<ArrayD<f32>>,
    /// FakeQuantize equivalent (limits shaped like `scale`) for the uncompressed form.
    pub fq_low: ArrayD<f32>,
    pub fq_high: ArrayD<f32>,
    pub fq_levels: usize,
}

impl QuantizedWeight {
    /// The weight values the quantized model computes with.
    pub fn dequantized(&self) -> ArrayD<f32> {
        let c = self.codes.mapv(|x| x as f32);
        match &self.zero_point {
            Some(zp) => &(&c - zp) * &self.scale,
            None => &c * &self.scale,
        }
    }
}

/// How one weight tensor is quantized.
#[derive(Clone, Copy, Debug)]
pub struct WeightScheme<'a> {
    /// Bits, mode, levels and granularity (per-tensor when `per_channel` is false).
    pub spec: QSpec,
    /// Axes that index output channels when per channel.
    pub channel_axes: &'a [usize],
    /// Saturation fix: a 7-bit grid on the 8-bit one (symmetric weights).
    pub half_range: bool,
    /// POT's weight range estimator (`None`: abs-max, or min/max when asymmetric).
    pub estimator: Option<&'a RangeEstimator>,
}

/// One statistic per channel of `w` (the whole tensor when `axes` is empty): a fold over each
/// channel's values. Channel axes are contiguous in practice (conv output channels,
/// GroupConvolution's group and channel axes, a MatMul row or column), so the weights are
/// `[outer, channels, inner]` and each channel's values are runs of `inner`.
fn per_channel_fold(w: &ArrayD<f32>, axes: &[usize], init: f32, fold: impl Fn(f32, f32) -> f32) -> ArrayD<f32> {
    let shape = w.shape();
    let mut stat_shape = vec![1usize; shape.len()];
    for &a in axes {
        stat_shape[a] = shape[a];
    }
    let mut out = ArrayD::<f32>::from_elem(IxDyn(&stat_shape), init);
    let mut axes: Vec<usize> = axes.to_vec();
    axes.sort_unstable();
    axes.dedup();
    let contiguous = axes.windows(2).all(|p| p[1] == p[0] + 1);
    match (w.as_slice(), out.as_slice_mut(), contiguous) {
        (Some(data), Some(m), true) => {
            let (first, last) = (axes.first().copied().unwrap_or(0), axes.last().copied().unwrap_or(0));
            let channels = m.len();
            let inner: usize = if axes.is_empty() { data.len() } else { shape[last + 1..].iter().product() };
            let outer: usize = if axes.is_empty() { 1 } else { shape[..first].iter().product() };
            for o in 0..outer {
                for (c, mc) in m.iter_mut().enumerate() {
                    let start = (o * channels + c) * inner;
                    *mc = data[start..start + inner].iter().fold(*mc, |a, &v| fold(a, v));
                }
            }
        }
        _ => {
            for (idx, &v) in w.indexed_iter() {
                let mut si = idx.slice().to_vec();
                for (k, s) in si.iter_mut().enumerate() {
                    if stat_shape[k] == 1 {
                        *s = 0;
                    }
                }
                let m = &mut out[IxDyn(&si)];
                *m = fold(*m, v);
            }
        }
    }
    out
}

/// Each channel's values (see [`per_channel_fold`]), for quantiles.
fn per_channel_values(w: &ArrayD<f32>, axes: &[usize]) -> (Vec<usize>, Vec<Vec<f32>>) {
    let shape = w.shape();
    let mut stat_shape = vec![1usize; shape.len()];
    for &a in axes {
        stat_shape[a] = shape[a];
    }
    let strides: Vec<usize> = (0..stat_shape.len()).map(|k| stat_shape[k + 1..].iter().product()).collect();
    let mut values = vec![vec![]; stat_shape.iter().product()];
    for (idx, &v) in w.indexed_iter() {
        let at: usize =
            idx.slice().iter().enumerate().filter(|(k, _)| stat_shape[*k] > 1).map(|(k, &i)| i * strides[k]).sum();
        values[at].push(v);
    }
    (stat_shape, values)
}

/// numpy's `quantile` (linear interpolation) of `v`, which it sorts.
fn quantile_of(v: &mut [f32], q: f64) -> f32 {
    v.sort_unstable_by(f32::total_cmp);
    super::stats::sorted_quantile(v, q) as f32
}

/// A weight border by POT's estimator `kind` (min, max, abs_max, quantile, abs_quantile), per
/// channel; the min border of the `abs_` kinds is the negated value.
fn weight_border(w: &ArrayD<f32>, axes: &[usize], e: &Estimator, is_min: bool) -> Result<ArrayD<f32>> {
    let kind = e.kind.as_deref().unwrap_or(if is_min { "min" } else { "max" });
    let p = e.outlier_prob.unwrap_or(1e-4);
    let quantile = |abs: bool, q: f64| -> Result<ArrayD<f32>> {
        let (shape, mut values) = per_channel_values(w, axes);
        let v: Vec<f32> = values
            .iter_mut()
            .map(|c| {
                if abs {
                    c.iter_mut().for_each(|x| *x = x.abs());
                }
                quantile_of(c, q)
            })
            .collect();
        ArrayD::from_shape_vec(IxDyn(&shape), v).map_err(|e| Error::internal(e.to_string()))
    };
    let sign = if is_min { -1.0 } else { 1.0 };
    let clip = |v: ArrayD<f32>| v.mapv(|x| e.clip(x as f64, is_min) as f32);
    Ok(clip(match kind {
        "min" => per_channel_fold(w, axes, f32::INFINITY, f32::min),
        "max" => per_channel_fold(w, axes, f32::NEG_INFINITY, f32::max),
        "abs_max" => per_channel_fold(w, axes, 0.0, |a, v| a.max(v.abs())).mapv(|x| sign * x),
        "quantile" => quantile(false, if is_min { p } else { 1.0 - p })?,
        "abs_quantile" => quantile(true, 1.0 - p)?.mapv(|x| sign * x),
        other => return Err(Error::invalid(format!("unknown weight range estimator type '{other}'"))),
    }))
}

/// An FP32 weight as the plan folded it, shared, never copied (an LLM's weights are gigabytes):
/// reads as the `ArrayD<f32>` it holds.
#[derive(Clone, Debug)]
pub struct SharedWeight(std::sync::Arc<crate::tensor::Tensor>);

impl SharedWeight {
    /// Shares an f32 value; other element types are converted once.
    pub fn new(value: std::sync::Arc<crate::tensor::Tensor>) -> SharedWeight {
        match *value {
            crate::tensor::Tensor::F32(_) => SharedWeight(value),
            ref other => SharedWeight(std::sync::Arc::new(crate::tensor::Tensor::F32(other.to_f32()))),
        }
    }
}

impl std::ops::Deref for SharedWeight {
    type Target = ArrayD<f32>;
    fn deref(&self) -> &ArrayD<f32> {
        match &*self.0 {
            crate::tensor::Tensor::F32(a) => a,
            // `new` holds f32 values only.
            _ => unreachable!("SharedWeight holds f32"),
        }
    }
}

/// Quantizes a weight tensor as `scheme` says: symmetric over `[−h, h]` (POT's and NNCF's
/// default, `h` the abs-max per output channel) or asymmetric over `[min, max]` moved so zero
/// is on the grid; the codes are what OpenVINO's weight compression computes from the
/// equivalent FakeQuantize (its reference arithmetic in f32), so ties land where they land in
/// NNCF's IR.
pub fn quantize_weight(w: &ArrayD<f32>, scheme: &WeightScheme) -> Result<QuantizedWeight> {
    let shape = w.shape().to_vec();
    let axes: &[usize] = if scheme.spec.per_channel { scheme.channel_axes } else { &[] };
    if let Some(a) = axes.iter().find(|&&a| a >= shape.len()) {
        return Err(Error::internal(format!("weight channel axis {a} out of rank {}", shape.len())));
    }
    if w.iter().any(|x| !x.is_finite()) {
        return Err(Error::invalid("weights hold NaN or Inf"));
    }
    let levels = scheme.spec.levels();
    let steps = (levels - 1) as f32;
    let est = scheme.estimator;
    let default_max =
        Estimator { kind: Some(if scheme.spec.symmetric { "abs_max" } else { "max" }.into()), ..Default::default() };
    let max_e = est.and_then(|e| e.max.as_ref()).unwrap_or(&default_max);
    let (low, high) = if scheme.spec.symmetric {
        let h = weight_border(w, axes, max_e, false)?;
        // POT's fix for all-zero filters: at least 1% of the largest channel's range.
        let max_all = h.iter().cloned().fold(0.0f32, f32::max);
        let floor = (max_all * 0.01).max(8e-5);
        let h = h.mapv(|m| m.max(floor));
        // The saturation fix: NNCF's weight FakeQuantize over [-2h, 2h], a 7-bit grid exported
        // on the 8-bit one.
        let limit = if scheme.half_range { h.mapv(|h| 2.0 * h) } else { h };
        // An even number of levels (POT's level_low −128): the extra level goes below −h, as
        // for activations, so zero stays on the grid and the codes need no zero point (over
        // [−h, h] zero would fall between two levels, which OpenVINO's CPU plugin runs in
        // floating point and badly: ppocr_cls 11 dB SQNR, mobilenet_v2 −4 dB).
        let below = if levels.is_multiple_of(2) { levels as f32 / (levels as f32 - 2.0) } else { 1.0 };
        (limit.mapv(|l| -l * below), limit)
    } else {
        let default_min = Estimator { kind: Some("min".into()), ..Default::default() };
        let min_e = est.and_then(|e| e.min.as_ref()).unwrap_or(&default_min);
        let lo = weight_border(w, axes, min_e, true)?;
        let hi = weight_border(w, axes, max_e, false)?;
        // POT's asymmetric range: widen tiny ranges, include zero, put zero on the grid.
        let mut low = lo.clone();
        let mut high = hi;
        ndarray::Zip::from(&mut low).and(&mut high).for_each(|l, h| {
            let corr = if (*h - *l) as f64 > 8e-4 { 0.0 } else { 8e-4 };
            let (a, b) = tune_range_steps(((*l as f64) - corr).min(0.0), ((*h as f64) + corr).max(0.0), steps as f64);
            (*l, *h) = (a as f32, b as f32);
        });
        (low, high)
    };
    let code_low = -((levels / 2) as f32);
    let scale = ndarray::Zip::from(&low).and(&high).map_collect(|&l, &h| (h - l) / steps);
    let zero_point = ndarray::Zip::from(&low).and(&scale).map_collect(|&l, &s| (-l / s).round_ties_even() + code_low);
    // Symmetric weights have zero on code 0 by construction.
    let zero_point = (!scheme.spec.symmetric && zero_point.iter().any(|&z| z != 0.0)).then_some(zero_point);
    let mut codes = ArrayD::<i8>::zeros(IxDyn(&shape));
    let lb = low.broadcast(IxDyn(&shape)).ok_or_else(|| Error::internal("weight range does not broadcast"))?;
    let hb = high.broadcast(IxDyn(&shape)).ok_or_else(|| Error::internal("weight range does not broadcast"))?;
    // In parallel: an LLM-size embedding table is millions of codes.
    ndarray::Zip::from(&mut codes).and(w).and(&lb).and(&hb).par_for_each(|c, &x, &il, &ih| {
        *c = compressed_code(x, il, ih, steps, code_low);
    });
    if low.iter().chain(high.iter()).chain(scale.iter()).any(|v| !v.is_finite()) {
        return Err(Error::invalid("weights are too large to quantize (values near f32::MAX)"));
    }
    Ok(QuantizedWeight { codes, scale, zero_point, fq_low: low, fq_high: high, fq_levels: levels })
}

/// The code OpenVINO's weight compression gives `x` under a FakeQuantize of `steps + 1` levels
/// over `[il, ih]` with output grid `[code_low, code_low + steps]`: the reference FakeQuantize
/// formula, then nearbyint.
fn compressed_code(x: f32, il: f32, ih: f32, steps: f32, code_low: f32) -> i8 {
    let q = if x <= il.min(ih) {
        code_low
    } else if x > il.max(ih) {
        code_low + steps
    } else {
        ((x - il) / (ih - il) * steps).round_ties_even() / steps * steps + code_low
    };
    q.round_ties_even().clamp(code_low, code_low + steps) as i8
}

fn port_like(graph: &Graph, o: Outlet) -> PortInfo {
    let p = graph.outlet_info(o);
    PortInfo::new(p.element_type, p.shape.clone())
}

/// Inserts `FakeQuantize(source, lo, hi, lo, hi)` and points `edges` at it. Returns the FQ node.
pub fn insert_activation_fq(
    graph: &mut Graph,
    source: Outlet,
    edges: &[(NodeId, usize)],
    name: String,
    low: Tensor,
    high: Tensor,
    levels: usize,
) -> NodeId {
    let il = graph.add_const(format!("{name}/input_low"), low.clone());
    let ih = graph.add_const(format!("{name}/input_high"), high.clone());
    let ol = graph.add_const(format!("{name}/output_low"), low);
    let oh = graph.add_const(format!("{name}/output_high"), high);
    let out = port_like(graph, source);
    let fq = graph.add_op(
        name,
        "FakeQuantize",
        "opset1",
        Attrs::from_pairs(&[("levels", &levels.to_string()), ("auto_broadcast", "numpy")]),
        vec![source, Outlet::new(il, 0), Outlet::new(ih, 0), Outlet::new(ol, 0), Outlet::new(oh, 0)],
        vec![out],
    );
    for &(c, k) in edges {
        graph.set_input(c, k, Outlet::new(fq, 0));
    }
    fq
}

/// Replaces input `input` of `op` by compressed int8 weights: `Const(i8) → Convert(f32) →
/// [Subtract(zero point) →] Multiply(scale)`, or FP32 weights behind a FakeQuantize when `compress` is false.
pub fn replace_weight(
    graph: &mut Graph,
    op: NodeId,
    input: usize,
    fp_weight: &ArrayD<f32>,
    q: &QuantizedWeight,
    compress: bool,
) -> NodeId {
    let op_name = graph.nodes[op].name.clone();
    let shape = fp_weight.shape().to_vec();
    let f32_port = PortInfo::new(ElementType::F32, PartialShape::from_static(&shape));
    let new_out = if compress {
        let c = graph.add_const(format!("{op_name}/weights_int8"), Tensor::I8(q.codes.clone()));
        let conv = graph.add_op(
            format!("{op_name}/weights_int8/convert"),
            "Convert",
            "opset1",
            Attrs::from_pairs(&[("destination_type", "f32")]),
            vec![Outlet::new(c, 0)],
            vec![f32_port.clone()],
        );
        let mut codes = Outlet::new(conv, 0);
        if let Some(zp) = &q.zero_point {
            let z = graph.add_const(format!("{op_name}/weights_zero_point"), Tensor::F32(zp.clone()));
            let sub = graph.add_op(
                format!("{op_name}/weights_int8/subtract"),
                "Subtract",
                "opset1",
                Attrs::from_pairs(&[("auto_broadcast", "numpy")]),
                vec![codes, Outlet::new(z, 0)],
                vec![f32_port.clone()],
            );
            codes = Outlet::new(sub, 0);
        }
        let s = graph.add_const(format!("{op_name}/weights_scale"), Tensor::F32(q.scale.clone()));
        graph.add_op(
            format!("{op_name}/fq_weights_{input}"),
            "Multiply",
            "opset1",
            Attrs::from_pairs(&[("auto_broadcast", "numpy")]),
            vec![codes, Outlet::new(s, 0)],
            vec![f32_port],
        )
    } else {
        let c = graph.add_const(format!("{op_name}/weights"), Tensor::F32(fp_weight.clone()));
        insert_activation_fq(
            graph,
            Outlet::new(c, 0),
            &[],
            format!("{op_name}/fq_weights_{input}"),
            Tensor::F32(q.fq_low.clone()),
            Tensor::F32(q.fq_high.clone()),
            q.fq_levels,
        )
    };
    graph.set_input(op, input, Outlet::new(new_out, 0));
    // The op's recorded input port now carries f32.
    if let Some(p) = graph.nodes[op].input_ports.get_mut(input) {
        p.element_type = ElementType::F32;
    }
    new_out
}

/// Per-channel mean of `t` along `axis` (numpy-style negative axes).
pub fn channel_mean(t: &ArrayD<f32>, axis: isize) -> Option<Vec<f64>> {
    let r = t.ndim() as isize;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r {
        return None;
    }
    let a = a as usize;
    Some(t.axis_iter(Axis(a)).map(|sub| sub.iter().map(|&x| x as f64).sum::<f64>() / sub.len().max(1) as f64).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_activation_ranges() {
        let spec = QSpec { bits: 8, symmetric: true, per_channel: false, narrow_range: false, levels_override: None };
        assert_eq!(activation_fq(0.0, 2.0, &spec), (0.0, 2.0, 256));
        let (lo, hi, _) = activation_fq(-1.0, 1.27, &spec);
        assert_eq!(hi, 1.27);
        assert!((lo as f64 - (-1.27 * 256.0 / 254.0)).abs() < 1e-6);
    }

    #[test]
    fn asymmetric_zero_point_is_integer() {
        let spec = QSpec { bits: 8, symmetric: false, per_channel: false, narrow_range: false, levels_override: None };
        let (lo, hi, levels) = activation_fq(-0.37, 2.91, &spec);
        let scale = (hi - lo) as f64 / (levels - 1) as f64;
        let zp = -lo as f64 / scale;
        assert!((zp - zp.round()).abs() < 1e-3, "zero point {zp}");
        assert!(lo <= -0.37 && hi >= 2.9);
    }

    #[test]
    fn weights_per_channel() {
        let w = ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![1.0, -0.5, 0.25, 0.0, 0.0, -4.0]).unwrap();
        let spec = QSpec { bits: 8, symmetric: true, per_channel: true, narrow_range: true, levels_override: None };
        let scheme = WeightScheme { spec, channel_axes: &[0], half_range: false, estimator: None };
        let q = quantize_weight(&w, &scheme).unwrap();
        assert!(q.zero_point.is_none());
        assert_eq!(q.codes.as_slice().unwrap(), &[127, -63, 32, 0, 0, -127]);
        let d = q.dequantized();
        assert!((d[[0, 0]] - 1.0).abs() < 1e-6 && (d[[1, 2]] + 4.0).abs() < 1e-6);
        // Half range: the channel maxima sit on grid ties (±63.5 steps), which OpenVINO's
        // compression rounds to even on its [0, 254] grid: 190.5 → 190 (63), 63.5 → 64 (−63).
        let h = quantize_weight(&w, &WeightScheme { half_range: true, ..scheme }).unwrap();
        assert_eq!(h.codes[[0, 0]], 63);
        assert_eq!(h.codes[[1, 2]], -63);
        assert_eq!((h.fq_low[[0, 0]], h.fq_high[[0, 0]], h.fq_levels), (-2.0, 2.0, 255));
    }

    #[test]
    fn weights_asymmetric_per_tensor_and_levels() {
        let w = ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![1.0, -0.5, 0.25, 0.0, 0.1, 3.0]).unwrap();
        let spec = QSpec { bits: 8, symmetric: false, per_channel: true, narrow_range: false, levels_override: None };
        let scheme = WeightScheme { spec, channel_axes: &[0], half_range: false, estimator: None };
        let q = quantize_weight(&w, &scheme).unwrap();
        let zp = q.zero_point.as_ref().expect("asymmetric weights carry a zero point");
        // Channel 1 is all non-negative: its range starts at zero, code −128.
        assert_eq!(zp[[1, 0]], -128.0);
        assert_eq!(q.codes[[1, 0]], -128);
        assert_eq!(q.codes[[1, 2]], 127);
        for (d, x) in q.dequantized().iter().zip(w.iter()) {
            assert!((d - x).abs() <= 1.5 / 255.0 * 3.0, "{d} vs {x}");
        }
        // Zero exactly on the grid.
        assert!(zp.iter().all(|z| *z == z.round()));
        // Per tensor: one scale.
        let pt = QSpec { per_channel: false, ..spec };
        let q = quantize_weight(&w, &WeightScheme { spec: pt, ..scheme }).unwrap();
        assert_eq!(q.scale.len(), 1);
        // 4-bit symmetric: codes −7..7.
        let four = QSpec { bits: 4, symmetric: true, per_channel: true, narrow_range: true, levels_override: None };
        let q = quantize_weight(&w, &WeightScheme { spec: four, ..scheme }).unwrap();
        assert_eq!(q.codes.iter().map(|&c| c.abs()).max(), Some(7));
        assert!(q.zero_point.is_none());
        // 256 levels symmetric: codes −128..127 with zero on code 0, the extra level below −h.
        let wide = QSpec { levels_override: Some(256), ..four };
        let q = quantize_weight(&w, &WeightScheme { spec: QSpec { bits: 8, ..wide }, ..scheme }).unwrap();
        assert!(q.zero_point.is_none());
        assert_eq!((q.codes[[1, 2]], q.codes[[0, 0]]), (127, 127));
        assert!((q.dequantized()[[1, 2]] - 3.0).abs() < 1e-5);
        assert!((q.fq_low[[0, 0]] + 128.0 / 127.0).abs() < 1e-6);
    }

    #[test]
    fn weight_quantile_estimator() {
        let mut v: Vec<f32> = (0..1000).map(|i| i as f32 / 1000.0).collect();
        v[999] = 100.0;
        let w = ArrayD::from_shape_vec(IxDyn(&[1, 1000]), v).unwrap();
        let spec = QSpec { bits: 8, symmetric: true, per_channel: true, narrow_range: true, levels_override: None };
        let est = RangeEstimator {
            min: None,
            max: Some(Estimator { kind: Some("abs_quantile".into()), outlier_prob: Some(0.01), ..Default::default() }),
        };
        let scheme = WeightScheme { spec, channel_axes: &[0], half_range: false, estimator: Some(&est) };
        let q = quantize_weight(&w, &scheme).unwrap();
        // numpy.quantile(|w|, 0.99) with linear interpolation: 0.98901.
        assert!((q.fq_high[[0, 0]] - 0.98901).abs() < 1e-4, "{}", q.fq_high[[0, 0]]);
        assert_eq!(q.codes[[0, 999]], 127, "the outlier is clipped");
    }
}
