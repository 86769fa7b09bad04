//! What a bias correction computes, fast or full: the sites (a quantized layer and its bias Add),
//! the layer's output on a mean input, the accepted shifts, and the layer-after-layer schedule.

use crate::engine::Plan;
use crate::error::Result;
use crate::graph::{Graph, NodeId, Outlet};
use crate::ops::{self, BuildCtx};
use crate::quant::stats::Collected;
use crate::tensor::Tensor;
use ndarray::{ArrayD, IxDyn};

/// The bias of a weighted op: its only consumer is `Add(op, const)`.
#[derive(Clone, Debug)]
pub struct BiasSite {
    pub op: NodeId,
    pub add: NodeId,
    /// Which Add input holds the bias.
    pub bias_input: usize,
    pub bias: ArrayD<f32>,
    /// Output channel axis of the op (1 for conv, last for MatMul).
    pub out_axis: isize,
    /// Activation input port of the op and its channel axis.
    pub act_input: usize,
    pub in_axis: isize,
}

/// Whether NNCF corrects the bias of `op`: Convolution and MatMul in fast mode; full mode also
/// depthwise GroupConvolution (groups == input channels > 1) and ConvolutionBackpropData.
pub fn corrects(graph: &Graph, op: NodeId, fast: bool) -> bool {
    let n = &graph.nodes[op];
    match n.op_type.as_str() {
        "Convolution" | "MatMul" => true,
        _ if fast => false,
        "ConvolutionBackpropData" => true,
        "GroupConvolution" => {
            let dim = |k: usize, axis: usize| n.input_ports.get(k).and_then(|p| p.shape.dims()?.get(axis)?.as_static());
            matches!((dim(0, 1), dim(1, 0)), (Some(c), Some(g)) if c == g && c > 1)
        }
        _ => false,
    }
}

/// Finds the bias Add of `op`, when there is one.
pub fn find_bias(
    graph: &Graph,
    consumers: &std::collections::HashMap<Outlet, Vec<(NodeId, usize)>>,
    op: NodeId,
    const_value: &dyn Fn(Outlet) -> Option<Tensor>,
) -> Option<BiasSite> {
    let n = &graph.nodes[op];
    let cons = consumers.get(&Outlet::new(op, 0))?;
    if cons.len() != 1 {
        return None;
    }
    let (add, k) = cons[0];
    let a = &graph.nodes[add];
    if a.op_type != "Add" || a.inputs.len() != 2 {
        return None;
    }
    let bias_input = 1 - k;
    let bias = const_value(a.inputs[bias_input])?;
    let bias = match bias {
        Tensor::F32(b) => b,
        _ => return None,
    };
    let (out_axis, in_axis) = match n.op_type.as_str() {
        "Convolution" | "GroupConvolution" | "ConvolutionBackpropData" | "GroupConvolutionBackpropData" => (1, 1),
        "MatMul" => (-1, -1),
        _ => return None,
    };
    // The bias must be per output channel (all other dims 1).
    let ones = bias.shape().iter().filter(|&&d| d != 1).count() <= 1;
    if !ones {
        return None;
    }
    Some(BiasSite { op, add, bias_input, bias, out_axis, act_input: 0, in_axis })
}

/// A tensor of `shape` whose every slice along `axis` holds the channel's mean.
pub fn mean_blob(shape: &[usize], axis: isize, means: &[f64]) -> Option<ArrayD<f32>> {
    let r = shape.len() as isize;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r || shape[a as usize] != means.len() {
        return None;
    }
    let a = a as usize;
    let mut blob = ArrayD::<f32>::zeros(IxDyn(shape));
    for (idx, v) in blob.indexed_iter_mut() {
        *v = means[idx[a]] as f32;
    }
    Some(blob)
}

/// Runs one op of `graph` on explicit inputs (used on the mean input with quantized weights).
pub fn eval_op(graph: &Graph, op: NodeId, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
    let node = &graph.nodes[op];
    let ctx = BuildCtx {
        node,
        id: op,
        graph,
        const_inputs: inputs.iter().enumerate().map(|(k, t)| if k == 0 { None } else { Some(*t) }).collect(),
    };
    ops::build(&ctx)?.eval(inputs)
}

/// The layer's mean output per channel on its FP32 mean input (a blob of `in_shape` holding each
/// channel's mean), computed with `weight` on weight input `weight_input`.
pub fn output_on_mean(
    graph: &Graph,
    site: &BiasSite,
    in_shape: &[usize],
    in_means: &[f64],
    weight: &Tensor,
    weight_input: usize,
) -> Result<Option<Vec<f64>>> {
    let Some(blob) = mean_blob(in_shape, site.in_axis, in_means) else { return Ok(None) };
    let blob = Tensor::F32(blob);
    let mut ins: Vec<&Tensor> = vec![&blob; graph.nodes[site.op].inputs.len().min(2)];
    ins[weight_input] = weight;
    ins[1 - weight_input] = &blob;
    let out = eval_op(graph, site.op, &ins)?;
    Ok(out.first().and_then(|t| t.as_f32()).and_then(|a| crate::quant::minmax::channel_mean(a, site.out_axis)))
}

/// Whether the FP32 mean output of `site` is its output on the mean input exactly (up to
/// rounding), so the statistics pass need not measure it. A MatMul of the activation by a 2-D
/// constant is linear and position-free (`mean(x·W) = mean(x)·W` over every axis but the last);
/// so is a pointwise convolution (1×1 kernel, stride 1, no padding: every input position is one
/// output position). Other convolutions are not: padding makes border outputs differ from the
/// mean input's, and strides skip positions.
pub fn output_mean_is_linear(graph: &Graph, site: &BiasSite, weight_input: usize) -> bool {
    let n = &graph.nodes[site.op];
    if site.act_input != 0 || weight_input != 1 {
        return false;
    }
    let flag = |k: &str| n.attrs.get(k).is_some_and(|v| v == "true" || v == "1");
    let weight_dims = n.input_ports.get(weight_input).and_then(|p| p.shape.to_static());
    match n.op_type.as_str() {
        "MatMul" => {
            !flag("transpose_a")
                && weight_dims.is_some_and(|d| d.len() == 2)
                && site.in_axis == -1
                && site.out_axis == -1
        }
        "Convolution" => {
            let all = |k: &str, v: &str| n.attrs.get(k).is_none_or(|s| s.split(',').all(|x| x.trim() == v));
            let auto_pad = n.attrs.get("auto_pad").map(|s| s.trim().to_ascii_lowercase());
            let padded = match auto_pad.as_deref() {
                // Same or valid padding of a 1×1 kernel at stride 1 is none.
                Some("same_upper" | "same_lower" | "valid") => false,
                _ => !(all("pads_begin", "0") && all("pads_end", "0")),
            };
            weight_dims.is_some_and(|d| d.len() >= 3 && d[2..].iter().all(|&k| k == 1))
                && n.attrs.get("strides").is_some()
                && all("strides", "1")
                && !padded
                && site.in_axis == 1
                && site.out_axis == 1
        }
        _ => false,
    }
}

/// The shape of one position of a linear site's input: every axis 1 but the channel axis.
pub fn one_position(shape: &[usize], axis: isize) -> Vec<usize> {
    let a = if axis < 0 { axis + shape.len() as isize } else { axis };
    shape.iter().enumerate().map(|(i, &d)| if i as isize == a { d } else { 1 }).collect()
}

/// Bias shift for a site: FP mean output minus the quantized layer's output on the mean input.
/// `None` when the correction would change the bias by more than `threshold` times its value.
pub fn fast_shift(site: &BiasSite, out_means: &[f64], q_means: &[f64], threshold: f64) -> Option<Vec<f64>> {
    if q_means.len() != out_means.len() {
        return None;
    }
    let shift: Vec<f64> = out_means.iter().zip(q_means).map(|(f, q)| f - q).collect();
    accept(&site.bias, &shift, threshold)
}

/// NNCF's magnitude rule: max |shift / bias|, infinite when a bias is zero.
pub fn accept(bias: &ArrayD<f32>, shift: &[f64], threshold: f64) -> Option<Vec<f64>> {
    let b: Vec<f32> = bias.iter().copied().collect();
    if b.len() != shift.len() {
        return None;
    }
    let magnitude = if b.contains(&0.0) {
        f64::INFINITY
    } else {
        b.iter().zip(shift).map(|(&x, s)| (s / x as f64).abs()).fold(0.0, f64::max)
    };
    (magnitude < threshold).then(|| shift.to_vec())
}

/// Writes `bias + shift` as a new constant on the Add.
pub fn apply_shift(graph: &mut Graph, site: &BiasSite, shift: &[f64]) -> Result<()> {
    let mut nb = site.bias.clone();
    for (v, s) in nb.iter_mut().zip(shift) {
        *v += *s as f32;
    }
    let name = format!("{}/bias_corrected", graph.nodes[site.add].name);
    let c = graph.add_const(name, Tensor::F32(nb));
    graph.set_input(site.add, site.bias_input, Outlet::new(c, 0));
    if let Some(p) = graph.nodes[site.add].input_ports.get_mut(site.bias_input) {
        p.element_type = crate::tensor::ElementType::F32;
    }
    Ok(())
}

/// One layer of full bias correction in the quantized graph: the outlet that feeds its bias
/// `Add` (the op's output, or what the emulation put after it) and its FP32 mean output.
pub struct FullSite {
    pub pre_bias: Outlet,
    pub axis: isize,
    pub fp_means: Vec<f64>,
}

/// Which values full bias correction keeps per sample after each layer: the outlets of the
/// nodes computed so far that nodes still to compute read ([`full_shifts`]).
pub struct Schedule {
    /// Per layer, in order: the outlets to keep after it.
    frontiers: Vec<Vec<Outlet>>,
}

impl Schedule {
    /// The schedule for `sites` (in graph order; only their `pre_bias` outlets are read).
    pub fn new(plan: &Plan, sites: &[FullSite]) -> Result<Schedule> {
        let g = plan.graph();
        let konst = g.constant_outlets()?;
        let consumers = g.consumers();
        let mut done: Vec<bool> = (0..g.nodes.len()).map(|i| g.nodes[i].is_parameter()).collect();
        let mut frontiers = Vec::with_capacity(sites.len());
        for s in sites {
            let mut stack = vec![s.pre_bias.node];
            while let Some(id) = stack.pop() {
                if done[id] || konst[id] {
                    continue;
                }
                done[id] = true;
                stack.extend(g.nodes[id].inputs.iter().map(|o| o.node));
            }
            // Every output of a node one of whose outputs is still read, so a partial node is
            // never recomputed from values already dropped.
            let mut frontier = vec![];
            for id in (0..g.nodes.len()).filter(|&i| done[i] && !konst[i]) {
                let outs = g.nodes[id].outputs.len().max(1);
                let read_later = (0..outs)
                    .any(|p| consumers.get(&Outlet::new(id, p)).is_some_and(|cs| cs.iter().any(|&(c, _)| !done[c])));
                if read_later {
                    frontier.extend((0..outs).map(|p| Outlet::new(id, p)));
                }
            }
            frontiers.push(frontier);
        }
        Ok(Schedule { frontiers })
    }

    /// The most bytes one sample's kept values take (4 per element; 1 MiB for a dynamic shape).
    fn peak_bytes(&self, g: &Graph) -> usize {
        let bytes =
            |o: &Outlet| g.outlet_info(*o).shape.to_static().map_or(1 << 20, |s| s.iter().product::<usize>() * 4);
        self.frontiers.iter().map(|f| f.iter().map(bytes).sum::<usize>()).max().unwrap_or(0)
    }

    /// How many samples the values kept for `g` allow within [`FULL_BUDGET`] (at least 32, at
    /// most `n`).
    pub fn samples(&self, g: &Graph, n: usize) -> usize {
        (FULL_BUDGET / self.peak_bytes(g).max(1)).clamp(32.min(n), n.max(1))
    }
}

/// Values kept per sample by full bias correction stay within this many bytes in all.
pub const FULL_BUDGET: usize = 512 << 20;

/// Full bias correction as POT's BiasCorrection does it, layer after layer in graph order: each
/// layer's mean output is measured in the quantized model with the corrections of the layers
/// before it already applied, so an upstream error is corrected once, where it arises, and not
/// again by every layer it reaches. Values run forward from one layer to the next (only those
/// still read are kept), so the model runs once per sample in all.
///
/// `sites` are in graph order; returns each site's shift (FP32 mean minus quantized mean) or
/// `None` where [`accept`] refuses it (`biases` are the sites' current biases). `progress` is
/// called after each layer and may stop the run.
pub fn full_shifts(
    plan: &Plan,
    schedule: &Schedule,
    sites: &[FullSite],
    biases: &[&ArrayD<f32>],
    samples: &[crate::data::Sample],
    threshold: f64,
    progress: &mut dyn FnMut(usize) -> Result<()>,
) -> Result<Vec<Option<Vec<f64>>>> {
    use rayon::prelude::*;
    use std::collections::HashMap;
    use std::sync::Arc;
    if samples.is_empty() {
        return Ok(vec![None; sites.len()]);
    }
    let mut kept: Vec<HashMap<Outlet, Arc<Tensor>>> = samples
        .iter()
        .map(|s| Ok(plan.bind_inputs(s)?.into_iter().map(|(p, t)| (Outlet::new(p, 0), t)).collect()))
        .collect::<Result<_>>()?;
    let mut shifts = Vec::with_capacity(sites.len());
    for (k, (site, frontier)) in sites.iter().zip(&schedule.frontiers).enumerate() {
        let targets: Vec<Outlet> = frontier.iter().copied().filter(|o| !kept[0].contains_key(o)).collect();
        let new: Vec<Vec<Arc<Tensor>>> = kept
            .par_iter()
            .map(|seeds| plan.run_from(seeds, &targets, &mut crate::engine::NoObserver))
            .collect::<Result<_>>()?;
        for (values, fresh) in kept.iter_mut().zip(new) {
            values.extend(targets.iter().copied().zip(fresh));
            values.retain(|o, _| frontier.contains(o));
        }
        let mut sum: Option<Vec<f64>> = None;
        for values in &kept {
            let Some(m) =
                values[&site.pre_bias].as_f32().and_then(|a| crate::quant::minmax::channel_mean(a, site.axis))
            else {
                break;
            };
            match &mut sum {
                Some(s) if s.len() == m.len() => s.iter_mut().zip(&m).for_each(|(a, b)| *a += b),
                Some(_) => {
                    sum = None;
                    break;
                }
                None => sum = Some(m),
            }
        }
        let shift = sum.filter(|s| s.len() == site.fp_means.len()).and_then(|s| {
            let shift: Vec<f64> = site.fp_means.iter().zip(&s).map(|(f, q)| f - q / samples.len() as f64).collect();
            accept(biases[k], &shift, threshold)
        });
        // The layers after this one see its corrected output.
        if let Some(shift) = &shift {
            for values in kept.iter_mut() {
                let t = values.get_mut(&site.pre_bias).expect("kept");
                if let Some(a) = t.as_f32() {
                    *t = Arc::new(Tensor::F32(add_per_channel(a, site.axis, shift)));
                }
            }
        }
        shifts.push(shift);
        progress(k + 1)?;
    }
    Ok(shifts)
}

/// `t` with `shift[c]` added to every value of channel `c` along `axis`.
fn add_per_channel(t: &ArrayD<f32>, axis: isize, shift: &[f64]) -> ArrayD<f32> {
    let a = if axis < 0 { axis + t.ndim() as isize } else { axis } as usize;
    let mut out = t.clone();
    for (mut lane, &s) in out.axis_iter_mut(ndarray::Axis(a)).zip(shift) {
        lane.mapv_inplace(|x| x + s as f32);
    }
    out
}

/// Where a bias site's mean output is measured: before the bias Add (built-in engine), or after
/// it (OpenVINO fuses the Add into its layer and never hands over the value before it).
#[derive(Clone, Copy)]
pub struct SiteOutlets {
    pub after_bias: bool,
}

impl SiteOutlets {
    pub fn of(&self, s: &BiasSite) -> Outlet {
        Outlet::new(if self.after_bias { s.add } else { s.op }, 0)
    }
}

/// The per-channel mean of a bias site's op output (before the bias), from statistics taken
/// there or after the bias Add (`after_bias`).
pub fn site_output_means(col: &Collected, site: &BiasSite, after_bias: bool) -> Option<Vec<f64>> {
    let at = Outlet::new(if after_bias { site.add } else { site.op }, 0);
    let means = col.channel_means.get(&(at, site.out_axis))?;
    if !after_bias {
        return Some(means.clone());
    }
    let bias: Vec<f64> = site.bias.iter().map(|&b| b as f64).collect();
    match bias.len() {
        1 => Some(means.iter().map(|m| m - bias[0]).collect()),
        n if n == means.len() => Some(means.iter().zip(&bias).map(|(m, b)| m - b).collect()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Attrs, Node, PartialShape, PortInfo};
    use crate::tensor::ElementType;

    fn f32_port(shape: &[usize]) -> PortInfo {
        PortInfo::new(ElementType::F32, PartialShape::from_static(shape))
    }

    /// A graph with one F32 Parameter `x` of `shape`.
    fn with_input(shape: &[usize]) -> (Graph, NodeId) {
        let mut g = Graph::default();
        let mut p = Node::new("x", "Parameter", "opset1");
        p.outputs.push(f32_port(shape));
        let x = g.add_node(p);
        (g, x)
    }

    /// `op`'s output plus the constant `bias` (broadcast to `shape`), and its bias site.
    fn add_bias(g: &mut Graph, op: NodeId, bias: ArrayD<f32>, shape: &[usize], axis: isize) -> BiasSite {
        let b = g.add_const("b", Tensor::F32(bias.clone()));
        let add = g.add_op(
            "add",
            "Add",
            "opset1",
            Attrs::default(),
            vec![Outlet::new(op, 0), Outlet::new(b, 0)],
            vec![f32_port(shape)],
        );
        BiasSite { op, add, bias_input: 1, bias, out_axis: axis, act_input: 0, in_axis: axis }
    }

    /// x [1,5,4] · W [4,3] + b, and the site of its bias.
    fn matmul_with_bias(transpose_a: bool) -> (Graph, BiasSite, ArrayD<f32>) {
        let (mut g, x) = with_input(&[1, 5, 4]);
        let w: Vec<f32> = (0..12).map(|i| (i as f32 * 0.37).sin()).collect();
        let wc = g.add_const("w", Tensor::f32_from_vec(&[4, 3], w.clone()).unwrap());
        let attrs =
            Attrs::from_pairs(&[("transpose_a", if transpose_a { "true" } else { "false" }), ("transpose_b", "false")]);
        let mut mm_in = vec![f32_port(&[1, 5, 4]), f32_port(&[4, 3])];
        let mm = g.add_op(
            "mm",
            "MatMul",
            "opset1",
            attrs,
            vec![Outlet::new(x, 0), Outlet::new(wc, 0)],
            vec![f32_port(&[1, 5, 3])],
        );
        g.nodes[mm].input_ports = std::mem::take(&mut mm_in);
        let bias = ArrayD::from_shape_vec(IxDyn(&[1, 1, 3]), vec![0.1, -0.2, 0.3]).unwrap();
        let site = add_bias(&mut g, mm, bias, &[1, 5, 3], -1);
        (g, site, ArrayD::from_shape_vec(IxDyn(&[4, 3]), w).unwrap())
    }

    #[test]
    fn matmul_mean_output_is_its_output_on_the_mean_input() {
        let (g, site, w) = matmul_with_bias(false);
        assert!(output_mean_is_linear(&g, &site, 1));
        // Two samples of x; the FP32 mean output per channel measured the long way.
        let xs: Vec<ArrayD<f32>> = (0..2)
            .map(|s| ArrayD::from_shape_fn(IxDyn(&[1, 5, 4]), |i| ((i[1] * 4 + i[2] + 7 * s) as f32 * 0.91).cos()))
            .collect();
        let mut measured = [0.0f64; 3];
        let mut in_means = [0.0f64; 4];
        for x in &xs {
            for t in 0..5 {
                for j in 0..3 {
                    let y: f32 = (0..4).map(|k| x[[0, t, k]] * w[[k, j]]).sum();
                    measured[j] += y as f64 / 10.0;
                }
                for k in 0..4 {
                    in_means[k] += x[[0, t, k]] as f64 / 10.0;
                }
            }
        }
        // On one position, as fast bias correction evaluates it.
        let derived = output_on_mean(&g, &site, &[1, 1, 4], &in_means, &Tensor::F32(w), 1).unwrap().unwrap();
        for (m, d) in measured.iter().zip(&derived) {
            assert!((m - d).abs() < 1e-5, "measured {measured:?}, derived {derived:?}");
        }
    }

    #[test]
    fn only_plain_matmuls_skip_measuring_the_output_mean() {
        let (g, site, _) = matmul_with_bias(true);
        assert!(!output_mean_is_linear(&g, &site, 1), "transpose_a moves the channel axis");
        let (g, site, _) = matmul_with_bias(false);
        assert!(!output_mean_is_linear(&g, &site, 0), "weights on input 0");
        let mut conv = g.clone();
        conv.nodes[site.op].op_type = "Convolution".into();
        assert!(!output_mean_is_linear(&conv, &site, 1), "a convolution without strides is not read as one");
    }

    /// x [1,3,4,5] convolved by W [2,3,k,k] at `strides`/`pads`, with its bias site.
    fn conv_with_bias(k: usize, strides: &str, pads: &str) -> (Graph, BiasSite, ArrayD<f32>) {
        let (mut g, x) = with_input(&[1, 3, 4, 5]);
        let w: Vec<f32> = (0..6 * k * k).map(|i| (i as f32 * 0.53).sin()).collect();
        let wc = g.add_const("w", Tensor::f32_from_vec(&[2, 3, k, k], w.clone()).unwrap());
        let attrs = Attrs::from_pairs(&[
            ("strides", strides),
            ("dilations", "1,1"),
            ("pads_begin", pads),
            ("pads_end", pads),
            ("auto_pad", "explicit"),
        ]);
        let conv = g.add_op(
            "conv",
            "Convolution",
            "opset1",
            attrs,
            vec![Outlet::new(x, 0), Outlet::new(wc, 0)],
            vec![f32_port(&[1, 2, 4, 5])],
        );
        g.nodes[conv].input_ports = vec![f32_port(&[1, 3, 4, 5]), f32_port(&[2, 3, k, k])];
        let bias = ArrayD::from_shape_vec(IxDyn(&[1, 2, 1, 1]), vec![0.1, -0.2]).unwrap();
        let site = add_bias(&mut g, conv, bias, &[1, 2, 4, 5], 1);
        (g, site, ArrayD::from_shape_vec(IxDyn(&[2, 3, k, k]), w).unwrap())
    }

    #[test]
    fn pointwise_conv_mean_output_is_its_output_on_the_mean_input() {
        let (g, site, w) = conv_with_bias(1, "1,1", "0,0");
        assert!(output_mean_is_linear(&g, &site, 1));
        let xs: Vec<ArrayD<f32>> = (0..2)
            .map(|s| {
                ArrayD::from_shape_fn(IxDyn(&[1, 3, 4, 5]), |i| {
                    ((i[1] * 20 + i[2] * 5 + i[3] + 11 * s) as f32 * 0.77).cos()
                })
            })
            .collect();
        let mut measured = [0.0f64; 2];
        let mut in_means = [0.0f64; 3];
        for x in &xs {
            let y = eval_op(&g, site.op, &[&Tensor::F32(x.clone()), &Tensor::F32(w.clone())]).unwrap();
            let y = y[0].as_f32().unwrap();
            for (o, m) in measured.iter_mut().enumerate() {
                *m += y.index_axis(ndarray::Axis(1), o).iter().map(|&v| v as f64).sum::<f64>() / 40.0;
            }
            for (c, m) in in_means.iter_mut().enumerate() {
                *m += x.index_axis(ndarray::Axis(1), c).iter().map(|&v| v as f64).sum::<f64>() / 40.0;
            }
        }
        let shape = one_position(&[1, 3, 4, 5], site.in_axis);
        assert_eq!(shape, [1, 3, 1, 1]);
        let derived = output_on_mean(&g, &site, &shape, &in_means, &Tensor::F32(w), 1).unwrap().unwrap();
        for (m, d) in measured.iter().zip(&derived) {
            assert!((m - d).abs() < 1e-5, "measured {measured:?}, derived {derived:?}");
        }
    }

    #[test]
    fn padded_or_strided_or_wide_convs_measure_the_output_mean() {
        let (g, site, _) = conv_with_bias(3, "1,1", "1,1");
        assert!(!output_mean_is_linear(&g, &site, 1), "a 3x3 kernel with padding");
        let (g, site, _) = conv_with_bias(1, "2,2", "0,0");
        assert!(!output_mean_is_linear(&g, &site, 1), "stride 2 skips positions");
        let (g, site, _) = conv_with_bias(1, "1,1", "1,1");
        assert!(!output_mean_is_linear(&g, &site, 1), "padding adds bias-only positions");
        let (mut g, site, _) = conv_with_bias(1, "1,1", "1,1");
        g.nodes[site.op].attrs.set("auto_pad", "same_upper".to_string());
        assert!(output_mean_is_linear(&g, &site, 1), "same padding of a 1x1 kernel is none");
    }
}
