//! Plan-time fusion: a Convolution or GroupConvolution followed by its bias `Add` (a constant
//! with one value per output channel) and optionally a `Clamp`/`Relu` runs as one op that adds
//! and clamps while it writes its output (`Op::with_epilogue`), saving two passes over memory.
//! The graph is untouched; a run falls back to the separate ops whenever an observer or a target
//! needs one of the values the fusion never materializes.

use crate::graph::{Graph, NodeId, Outlet};
use crate::ops::{Epilogue, Op};
use crate::tensor::{ElementType, Tensor};
use std::collections::HashMap;
use std::sync::Arc;

/// A node run together with the nodes after it.
pub(super) struct Fused {
    pub op: Box<dyn Op>,
    /// Outlets the fused op never computes.
    pub hidden: Vec<Outlet>,
    /// Nodes whose work the fused op does.
    pub absorbed: Vec<NodeId>,
    /// The outlet the fused op's output stands for.
    pub result: Outlet,
}

/// Finds the fusable chains; indexed by the head node.
pub(super) fn find(
    graph: &Graph,
    ops: &[Option<Box<dyn Op>>],
    folded: &[Option<Vec<Arc<Tensor>>>],
) -> Vec<Option<Fused>> {
    let mut readers: HashMap<Outlet, Vec<NodeId>> = HashMap::new();
    for (id, node) in graph.nodes.iter().enumerate() {
        for &o in &node.inputs {
            readers.entry(o).or_default().push(id);
        }
    }
    let only_reader = |o: Outlet| match readers.get(&o).map(|r| r.as_slice()) {
        Some(&[r]) => Some(r),
        _ => None,
    };
    let is_f32 =
        |id: NodeId| graph.nodes[id].outputs.len() == 1 && graph.nodes[id].outputs[0].element_type == ElementType::F32;
    let mut fused: Vec<Option<Fused>> = (0..graph.nodes.len()).map(|_| None).collect();
    for (head, node) in graph.nodes.iter().enumerate() {
        if !matches!(node.op_type.as_str(), "Convolution" | "GroupConvolution")
            || !is_f32(head)
            || folded[head].is_some()
        {
            continue;
        }
        let Some(op) = ops[head].as_ref() else { continue };
        let Some(dims) = node.outputs[0].shape.dims() else { continue };
        let Some(channels) = dims.get(1).and_then(|d| d.as_static()) else { continue };
        let conv_out = Outlet::new(head, 0);
        let Some(add) = only_reader(conv_out) else { continue };
        let add_node = &graph.nodes[add];
        if add_node.op_type != "Add" || add_node.inputs.len() != 2 || !is_f32(add) {
            continue;
        }
        let Some(other) = add_node.inputs.iter().copied().find(|&o| o != conv_out) else { continue };
        let Some(bias) = folded[other.node].as_ref().map(|v| &v[other.port]) else { continue };
        let Some(bias) = per_channel(bias, dims.len(), channels) else { continue };
        let mut epilogue = Epilogue { bias: Some(bias), clamp: None };
        let mut hidden = vec![conv_out];
        let mut absorbed = vec![add];
        let mut result = Outlet::new(add, 0);
        if let Some(act) = only_reader(result) {
            if let Some(range) = clamp_range(graph, act).filter(|_| is_f32(act)) {
                epilogue.clamp = Some(range);
                hidden.push(result);
                absorbed.push(act);
                result = Outlet::new(act, 0);
            }
        }
        if let Some(op) = op.with_epilogue(&epilogue) {
            fused[head] = Some(Fused { op, hidden, absorbed, result });
        }
    }
    fused
}

/// The bias as one value per channel (axis 1 of a rank-`rank` output), when it is that.
fn per_channel(bias: &Tensor, rank: usize, channels: usize) -> Option<Vec<f32>> {
    let Tensor::F32(b) = bias else { return None };
    let shape = b.shape();
    if shape.len() > rank || rank < 2 {
        return None;
    }
    let lead = rank - shape.len();
    for (k, &d) in shape.iter().enumerate() {
        let axis = lead + k;
        if d != 1 && !(axis == 1 && d == channels) {
            return None;
        }
    }
    let values: Vec<f32> = b.iter().copied().collect();
    match values.len() {
        1 => Some(vec![values[0]; channels]),
        n if n == channels => Some(values),
        _ => None,
    }
}

/// (lo, hi) of a Clamp or Relu node.
fn clamp_range(graph: &Graph, id: NodeId) -> Option<(f32, f32)> {
    let node = &graph.nodes[id];
    match node.op_type.as_str() {
        "Relu" | "ReLU" => Some((0.0, f32::INFINITY)),
        "Clamp" => {
            let lo: f64 = node.attrs.get("min")?.trim().parse().ok()?;
            let hi: f64 = node.attrs.get("max")?.trim().parse().ok()?;
            Some((lo as f32, hi as f32))
        }
        _ => None,
    }
}
