//! SmoothQuant for MatMuls with constant weights (transformers): moves activation outliers into
//! the weights with per-input-channel scales s = max|X|^α / max|W|^(1−α), X' = X/s, W' = W·s.

use crate::error::Result;
use crate::graph::{Attrs, Graph, NodeId, Outlet, PartialShape, PortInfo};
use crate::tensor::{ElementType, Tensor};
use ndarray::{ArrayD, Axis, IxDyn};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// MatMuls to smooth, grouped by the activation they read.
pub struct Candidates {
    pub groups: BTreeMap<Outlet, Vec<(NodeId, Arc<Tensor>)>>,
}

pub fn input_channel_axis(graph: &Graph, op: NodeId, rank: usize) -> usize {
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
    weight_of: &dyn Fn(Outlet) -> Option<Arc<Tensor>>,
) -> Candidates {
    let mut groups: BTreeMap<Outlet, Vec<(NodeId, Arc<Tensor>)>> = BTreeMap::new();
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
        // The folded f32 value, shared with the plan (an LLM's weights are not copied).
        let Some(wv) = weight_of(w).filter(|t| matches!(**t, Tensor::F32(_))) else { continue };
        if wv.shape().len() != 2 {
            continue;
        }
        let channels = wv.shape()[input_channel_axis(graph, id, 2)];
        let act_channels = graph.outlet_info(a).shape.dims().and_then(|d| d.last().copied());
        if act_channels != Some(crate::graph::Dim::Static(channels)) {
            continue;
        }
        // Every MatMul smoothed on one activation must agree on the channel count.
        if groups.get(&a).is_some_and(|g| g[0].1.shape()[input_channel_axis(graph, g[0].0, 2)] != channels) {
            continue;
        }
        groups.entry(a).or_default().push((id, wv));
    }
    Candidates { groups }
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

/// Per-group smoothing scales from the per-channel activation maxima (ones when a group has no
/// statistics, which makes its Multiply a no-op).
pub fn compute_scales(graph: &Graph, c: &Candidates, act_max: &HashMap<Outlet, Vec<f32>>, alpha: f32) -> Vec<Vec<f32>> {
    let mut out = vec![];
    for (src, nodes) in &c.groups {
        let axis0 = input_channel_axis(graph, nodes[0].0, 2);
        let channels = nodes[0].1.shape()[axis0];
        let Some(amax) = act_max.get(src).filter(|a| a.len() == channels) else {
            out.push(vec![1.0; channels]);
            continue;
        };
        let mut best: Option<(Vec<f32>, f32)> = None;
        for (op, w) in nodes {
            let axis = input_channel_axis(graph, *op, 2);
            let Tensor::F32(w) = w.as_ref() else { continue };
            let wmax = channel_abs_max(w, axis);
            let (s, ratio) = scales_and_ratio(amax, &wmax, alpha);
            if best.as_ref().is_none_or(|b| ratio > b.1) {
                best = Some((s, ratio));
            }
        }
        out.push(best.map(|b| b.0).unwrap_or_else(|| vec![1.0; channels]));
    }
    out
}

/// max |w| over each index of `axis` of a rank-2 weight, rows in parallel when contiguous (an
/// LLM's weights are billions of values).
fn channel_abs_max(w: &ArrayD<f32>, axis: usize) -> Vec<f32> {
    use rayon::prelude::*;
    let (Some(data), [rows, cols]) = (w.as_slice(), w.shape()) else {
        return w.axis_iter(Axis(axis)).map(|row| row.iter().fold(0.0f32, |m, x| m.max(x.abs()))).collect();
    };
    let (rows, cols) = (*rows, *cols);
    if cols == 0 {
        return vec![0.0; if axis == 0 { rows } else { 0 }];
    }
    let row_max = |r: &[f32]| r.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    if axis == 0 {
        data.par_chunks(cols).map(row_max).collect()
    } else {
        // Column maxima: each block of rows folds into its own vector, then the blocks merge
        // (max is exact in any order).
        let merge = |mut a: Vec<f32>, b: Vec<f32>| {
            a.iter_mut().zip(b).for_each(|(x, y)| *x = x.max(y));
            a
        };
        data.par_chunks(cols * 64)
            .map(|block| {
                let mut m = vec![0.0f32; cols];
                for row in block.chunks(cols) {
                    m.iter_mut().zip(row).for_each(|(a, x)| *a = a.max(x.abs()));
                }
                m
            })
            .reduce(|| vec![0.0f32; cols], merge)
    }
}

/// `w` (rank 2) times `scale` broadcast along `axis`: each weight multiplied once by its
/// channel's scale, as `w * s` computes it, rows in parallel.
fn scaled_along(w: &ArrayD<f32>, axis: usize, scale: &[f32]) -> Result<ArrayD<f32>> {
    use rayon::prelude::*;
    let internal = |e: ndarray::ShapeError| crate::error::Error::internal(e.to_string());
    let (Some(data), [rows, cols]) = (w.as_slice(), w.shape()) else {
        let mut shape = vec![1usize; 2];
        shape[axis] = scale.len();
        let s = ArrayD::from_shape_vec(IxDyn(&shape), scale.to_vec()).map_err(internal)?;
        return Ok(w * &s);
    };
    let (rows, cols) = (*rows, *cols);
    if scale.len() != [rows, cols][axis] {
        return Err(crate::error::Error::internal(format!(
            "SmoothQuant: {} scales for axis {axis} of a [{rows}, {cols}] weight",
            scale.len()
        )));
    }
    let mut out = vec![0f32; data.len()];
    if cols > 0 {
        out.par_chunks_mut(cols).zip(data.par_chunks(cols)).enumerate().for_each(|(r, (o, x))| {
            if axis == 0 {
                o.iter_mut().zip(x).for_each(|(y, v)| *y = v * scale[r]);
            } else {
                o.iter_mut().zip(x).zip(scale).for_each(|((y, v), s)| *y = v * s);
            }
        });
    }
    ArrayD::from_shape_vec(IxDyn(&[rows, cols]), out).map_err(internal)
}

/// Inserts `Multiply(x, 1/s)` before each group and scales the weights by `s`. Node ids depend
/// only on the candidates, not on the scale values, so a placeholder pass (all ones) has the
/// same structure as the final one. Returns Multiply node → (activation it smooths, scale).
pub fn apply_scales(
    graph: &mut Graph,
    c: &Candidates,
    scales: &[Vec<f32>],
) -> Result<BTreeMap<NodeId, (Outlet, Vec<f32>)>> {
    let consumers = graph.consumers();
    let mut inserted = BTreeMap::new();
    for ((src, nodes), scale) in c.groups.iter().zip(scales) {
        for (op, w) in nodes {
            let axis = input_channel_axis(graph, *op, 2);
            let Tensor::F32(wa) = w.as_ref() else {
                return Err(crate::error::Error::internal("SmoothQuant: a candidate weight is not f32"));
            };
            let name = format!("{}/smooth_quant_weights", graph.nodes[*op].name);
            // Scales of one (the placeholder pass) leave the weight as it is: shared, not copied.
            let cid = if scale.iter().all(|&x| x == 1.0) {
                graph.add_shared_const(name, w.clone())
            } else {
                graph.add_const(name, Tensor::F32(scaled_along(wa, axis, scale)?))
            };
            graph.set_input(*op, 1, Outlet::new(cid, 0));
            if let Some(p) = graph.nodes[*op].input_ports.get_mut(1) {
                p.element_type = ElementType::F32;
            }
        }
        let src = *src;
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
        inserted.insert(mul, (src, scale.clone()));
    }
    Ok(inserted)
}
