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
    let min_e = est.and_then(|e| e.min.clone()).unwrap_or(default_min);
    let max_e = est.and_then(|e| e.max.clone()).unwrap_or(default_max);
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
    let level_high = ((1u64 << bits) - 1) as f64;
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

/// Symmetric int8 weights: codes and per-channel scales (broadcastable to the weight).
pub struct QuantizedWeight {
    pub codes: ArrayD<i8>,
    pub scale: ArrayD<f32>,
    /// FakeQuantize equivalent (limits shaped like `scale`) for the uncompressed form.
    pub fq_low: ArrayD<f32>,
    pub fq_high: ArrayD<f32>,
    pub fq_levels: usize,
}

impl QuantizedWeight {
    /// The weight values the quantized model computes with.
    pub fn dequantized(&self) -> ArrayD<f32> {
        let c = self.codes.mapv(|x| x as f32);
        &c * &self.scale
    }
}

/// Quantizes a weight tensor per channel (`channel_axes`) symmetrically; `half_range` uses
/// half of the int8 grid (saturation fix).
pub fn quantize_weight(w: &ArrayD<f32>, channel_axes: &[usize], half_range: bool) -> Result<QuantizedWeight> {
    let shape = w.shape().to_vec();
    let mut scale_shape = vec![1usize; shape.len()];
    for &a in channel_axes {
        if a >= shape.len() {
            return Err(Error::internal(format!("weight channel axis {a} out of rank {}", shape.len())));
        }
        scale_shape[a] = shape[a];
    }
    let mut absmax = ArrayD::<f32>::zeros(IxDyn(&scale_shape));
    // Reduce |w| over every non-channel axis. Channel axes are contiguous in practice (conv
    // output channels, GroupConvolution's group and channel axes, a MatMul row or column): then
    // the weights are [outer, channels, inner] and each channel's values are runs of `inner`.
    let mut axes: Vec<usize> = channel_axes.to_vec();
    axes.sort_unstable();
    axes.dedup();
    let contiguous = axes.windows(2).all(|p| p[1] == p[0] + 1);
    match (w.as_slice(), absmax.as_slice_mut(), contiguous) {
        (Some(data), Some(m), true) => {
            let (first, last) = (axes.first().copied().unwrap_or(0), axes.last().copied().unwrap_or(0));
            let channels = m.len();
            let inner: usize = if axes.is_empty() { data.len() } else { shape[last + 1..].iter().product() };
            let outer: usize = if axes.is_empty() { 1 } else { shape[..first].iter().product() };
            for o in 0..outer {
                for (c, mc) in m.iter_mut().enumerate() {
                    let start = (o * channels + c) * inner;
                    let top = data[start..start + inner].iter().fold(0.0f32, |a, &v| a.max(v.abs()));
                    *mc = mc.max(top);
                }
            }
        }
        _ => {
            for (idx, &v) in w.indexed_iter() {
                let mut si = idx.slice().to_vec();
                for (k, s) in si.iter_mut().enumerate() {
                    if scale_shape[k] == 1 {
                        *s = 0;
                    }
                }
                let m = &mut absmax[IxDyn(&si)];
                if v.abs() > *m {
                    *m = v.abs();
                }
            }
        }
    }
    if w.iter().any(|x| !x.is_finite()) {
        return Err(Error::invalid("weights hold NaN or Inf"));
    }
    let max_all = absmax.iter().cloned().fold(0.0f32, f32::max);
    let floor = (max_all * 0.01).max(8e-5);
    let high = absmax.mapv(|m| m.max(floor));
    // NNCF's weight FakeQuantize: 255 levels over [-h, h], or over [-2h, 2h] for the half range
    // (a 7-bit grid exported on the 8-bit one). The codes are what OpenVINO's
    // CompressQuantizeWeights computes from that FakeQuantize (its reference arithmetic in f32),
    // so ties and rounding land where they land in NNCF's IR.
    let limit = if half_range { high.mapv(|h| 2.0 * h) } else { high.clone() };
    let scale = limit.mapv(|l| (l - -l) / 254.0);
    let mut codes = ArrayD::<i8>::zeros(IxDyn(&shape));
    let lb = limit.broadcast(IxDyn(&shape)).ok_or_else(|| Error::internal("scale does not broadcast"))?;
    ndarray::Zip::from(&mut codes).and(w).and(&lb).for_each(|c, &x, &l| {
        *c = compressed_code(x, -l, l);
    });
    let (fq_low, fq_high, fq_levels) = (limit.mapv(|l| -l), limit, 255);
    if fq_low.iter().chain(fq_high.iter()).chain(scale.iter()).any(|v| !v.is_finite()) {
        return Err(Error::invalid("weights are too large to quantize (values near f32::MAX)"));
    }
    Ok(QuantizedWeight { codes, scale, fq_low, fq_high, fq_levels })
}

/// The int8 code OpenVINO's weight compression gives `x` under a 255-level FakeQuantize over
/// `[il, ih]` with output grid [-127, 127]: the reference FakeQuantize formula, then nearbyint.
fn compressed_code(x: f32, il: f32, ih: f32) -> i8 {
    let q = if x <= il.min(ih) {
        -127.0
    } else if x > il.max(ih) {
        127.0
    } else {
        ((x - il) / (ih - il) * 254.0).round_ties_even() / 254.0 * 254.0 + -127.0
    };
    q.round_ties_even().clamp(-127.0, 127.0) as i8
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
/// Multiply(scale)`, or FP32 weights behind a FakeQuantize when `compress` is false.
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
        let s = graph.add_const(format!("{op_name}/weights_scale"), Tensor::F32(q.scale.clone()));
        graph.add_op(
            format!("{op_name}/fq_weights_{input}"),
            "Multiply",
            "opset1",
            Attrs::from_pairs(&[("auto_broadcast", "numpy")]),
            vec![Outlet::new(conv, 0), Outlet::new(s, 0)],
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
        let spec = QSpec { bits: 8, symmetric: true, per_channel: false, narrow_range: false };
        assert_eq!(activation_fq(0.0, 2.0, &spec), (0.0, 2.0, 256));
        let (lo, hi, _) = activation_fq(-1.0, 1.27, &spec);
        assert_eq!(hi, 1.27);
        assert!((lo as f64 - (-1.27 * 256.0 / 254.0)).abs() < 1e-6);
    }

    #[test]
    fn asymmetric_zero_point_is_integer() {
        let spec = QSpec { bits: 8, symmetric: false, per_channel: false, narrow_range: false };
        let (lo, hi, levels) = activation_fq(-0.37, 2.91, &spec);
        let scale = (hi - lo) as f64 / (levels - 1) as f64;
        let zp = -lo as f64 / scale;
        assert!((zp - zp.round()).abs() < 1e-3, "zero point {zp}");
        assert!(lo <= -0.37 && hi >= 2.9);
    }

    #[test]
    fn weights_per_channel() {
        let w = ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![1.0, -0.5, 0.25, 0.0, 0.0, -4.0]).unwrap();
        let q = quantize_weight(&w, &[0], false).unwrap();
        assert_eq!(q.codes.as_slice().unwrap(), &[127, -63, 32, 0, 0, -127]);
        let d = q.dequantized();
        assert!((d[[0, 0]] - 1.0).abs() < 1e-6 && (d[[1, 2]] + 4.0).abs() < 1e-6);
        // Half range: the channel maxima sit on grid ties (±63.5 steps), which OpenVINO's
        // compression rounds to even on its [0, 254] grid: 190.5 → 190 (63), 63.5 → 64 (−63).
        let h = quantize_weight(&w, &[0], true).unwrap();
        assert_eq!(h.codes[[0, 0]], 63);
        assert_eq!(h.codes[[1, 2]], -63);
        assert_eq!((h.fq_low[[0, 0]], h.fq_high[[0, 0]], h.fq_levels), (-2.0, 2.0, 255));
    }
}
