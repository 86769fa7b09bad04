//! SmoothQuant for MatMuls with constant weights (transformers): moves activation outliers into
//! the weights with per-input-channel scales s = max|X|^α / max|W|^(1−α), X' = X/s, W' = W·s.

use super::stats::Request;
use crate::error::Result;
use crate::graph::{Attrs, Graph, NodeId, Outlet, PartialShape, PortInfo};
use crate::tensor::{ElementType, Tensor};
use ndarray::{ArrayD, Axis, IxDyn};
use std::collections::{BTreeMap, HashMap};

/// MatMuls to smooth, grouped by the activation they read.
pub struct Candidates {
    pub groups: BTreeMap<Outlet, Vec<(NodeId, ArrayD<f32>)>>,
}

fn input_channel_axis(graph: &Graph, op: NodeId, rank: usize) -> usize {
    let tb = graph.nodes[op].attrs.get("transpose_b").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if tb {
        rank - 1
    } else {
        rank - 2
    }
}

/// Finds MatMul(activation, constant weight) nodes; `weight_of` returns a weight's value.
pub fn candidates(
    graph: &Graph,
    is_const: &[bool],
    skip: &dyn Fn(NodeId) -> bool,
    weight_of: &dyn Fn(Outlet) -> Option<ArrayD<f32>>,
) -> Candidates {
    let mut groups: BTreeMap<Outlet, Vec<(NodeId, ArrayD<f32>)>> = BTreeMap::new();
    for (id, n) in graph.nodes.iter().enumerate() {
        if n.op_type != "MatMul" || n.inputs.len() != 2 || skip(id) {
            continue;
        }
        let (a, w) = (n.inputs[0], n.inputs[1]);
        let ta = n.attrs.get("transpose_a").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if is_const[a.node] || !is_const[w.node] || ta {
            continue;
        }
        if graph.outlet_info(a).element_type != ElementType::F32 {
            continue;
        }
        let Some(wv) = weight_of(w) else { continue };
        if wv.ndim() != 2 {
            continue;
        }
        groups.entry(a).or_default().push((id, wv));
    }
    Candidates { groups }
}

/// Statistics SmoothQuant needs.
pub fn requests(c: &Candidates) -> HashMap<Outlet, Vec<Request>> {
    c.groups.keys().map(|&o| (o, vec![Request::ChannelAbsMax])).collect()
}

fn quantile(v: &[f32], q: f64) -> f32 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let pos = q * (s.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let f = (pos - lo as f64) as f32;
    s[lo] * (1.0 - f) + s[hi] * f
}

fn scales_and_ratio(act: &[f32], w: &[f32], alpha: f32) -> (Vec<f32>, f32) {
    let eps = f32::EPSILON;
    let raw: Vec<f32> =
        act.iter().zip(w).map(|(&a, &b)| a.max(1e-5).powf(alpha) / (b.max(1e-5).powf(1.0 - alpha) + eps)).collect();
    let lo = quantile(&raw, 0.1);
    let s: Vec<f32> = raw.iter().map(|&x| x.clamp(lo, 1e2)).collect();
    let mn = s.iter().cloned().fold(f32::INFINITY, f32::min);
    let mx = s.iter().cloned().fold(0.0f32, f32::max);
    (s, mn / (mx + eps))
}

/// Applies SmoothQuant with the collected per-channel activation maxima. Returns how many
/// activations were smoothed.
pub fn apply(graph: &mut Graph, c: Candidates, act_max: &HashMap<Outlet, Vec<f32>>, alpha: f32) -> Result<usize> {
    let consumers = graph.consumers();
    let mut applied = 0;
    for (src, nodes) in c.groups {
        let Some(amax) = act_max.get(&src) else { continue };
        let mut best: Option<(Vec<f32>, f32)> = None;
        for (op, w) in &nodes {
            let axis = input_channel_axis(graph, *op, 2);
            if w.shape()[axis] != amax.len() {
                best = None;
                break;
            }
            let wmax: Vec<f32> =
                w.axis_iter(Axis(axis)).map(|row| row.iter().fold(0.0f32, |m, x| m.max(x.abs()))).collect();
            let (s, ratio) = scales_and_ratio(amax, &wmax, alpha);
            if best.as_ref().is_none_or(|b| ratio > b.1) {
                best = Some((s, ratio));
            }
        }
        let Some((scale, _)) = best else { continue };
        for (op, w) in &nodes {
            let axis = input_channel_axis(graph, *op, 2);
            let mut shape = vec![1usize; 2];
            shape[axis] = scale.len();
            let s = ArrayD::from_shape_vec(IxDyn(&shape), scale.clone())
                .map_err(|e| crate::error::Error::internal(e.to_string()))?;
            let scaled = w * &s;
            let name = format!("{}/smooth_quant_weights", graph.nodes[*op].name);
            let cid = graph.add_const(name, Tensor::F32(scaled));
            graph.set_input(*op, 1, Outlet::new(cid, 0));
            if let Some(p) = graph.nodes[*op].input_ports.get_mut(1) {
                p.element_type = ElementType::F32;
            }
        }
        let info = graph.outlet_info(src).clone();
        let rank = info.shape.rank().unwrap_or(2).max(1);
        let mut sshape = vec![1usize; rank];
        sshape[rank - 1] = scale.len();
        let inv: Vec<f32> = scale.iter().map(|&x| 1.0 / x).collect();
        let src_name = graph.nodes[src.node].name.clone();
        let name = format!("{src_name}_{}_0/nncf_smooth_quant", src.port);
        let k = graph.add_const(format!("{name}/scale"), Tensor::f32_from_vec(&sshape, inv)?);
        let out = PortInfo::new(ElementType::F32, PartialShape(info.shape.0.clone()));
        let mul = graph.add_op(
            name,
            "Multiply",
            "opset1",
            Attrs::from_pairs(&[("auto_broadcast", "numpy")]),
            vec![src, Outlet::new(k, 0)],
            vec![out],
        );
        let ops: Vec<NodeId> = nodes.iter().map(|n| n.0).collect();
        for &(c, idx) in consumers.get(&src).map(|v| v.as_slice()).unwrap_or(&[]) {
            if ops.contains(&c) && idx == 0 {
                graph.set_input(c, 0, Outlet::new(mul, 0));
            }
        }
        applied += 1;
    }
    Ok(applied)
}
