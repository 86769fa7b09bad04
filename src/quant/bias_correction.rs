//! Bias correction: after weights are quantized, shift each biased layer's bias so its mean
//! output per channel matches FP32 again. Fast mode (default) evaluates the layer alone on its
//! mean input (NNCF's FastBiasCorrection); full mode measures the quantized model's outputs.

use crate::error::Result;
use crate::graph::{Graph, NodeId, Outlet};
use crate::ops::{self, BuildCtx};
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

#[allow(clippy::too_many_arguments)]
/// Bias shift for a site: FP mean output minus the quantized layer's output on the mean input.
/// `None` when the correction would change the bias by more than `threshold` times its value.
pub fn fast_shift(
    graph: &Graph,
    site: &BiasSite,
    in_shape: &[usize],
    in_means: &[f64],
    out_means: &[f64],
    q_weight: &Tensor,
    weight_input: usize,
    threshold: f64,
) -> Result<Option<Vec<f64>>> {
    let Some(blob) = mean_blob(in_shape, site.in_axis, in_means) else { return Ok(None) };
    let blob = Tensor::F32(blob);
    let mut ins: Vec<&Tensor> = vec![&blob; graph.nodes[site.op].inputs.len().min(2)];
    ins[weight_input] = q_weight;
    ins[1 - weight_input] = &blob;
    let out = eval_op(graph, site.op, &ins)?;
    let Some(q) = out.first().and_then(|t| t.as_f32()).and_then(|a| super::minmax::channel_mean(a, site.out_axis))
    else {
        return Ok(None);
    };
    if q.len() != out_means.len() {
        return Ok(None);
    }
    let shift: Vec<f64> = out_means.iter().zip(&q).map(|(f, q)| f - q).collect();
    Ok(accept(&site.bias, &shift, threshold))
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
