//! What kind of model this is when the user does not say: a transformer gets NNCF's transformer
//! scheme (SmoothQuant, symmetric attention inputs, ops kept in floating point) without a flag.
//! NNCF and POT need `model_type=transformer`; without it NNCF returns a broken model (minilm_l6:
//! cosine 0.06) and ovpot stopped on the attention mask's f32::MIN.

use crate::graph::{Graph, NodeId, Outlet};
use std::collections::HashMap;

/// Ops an attention block puts between its MatMuls and its Softmax (scaling, masking, head
/// reshapes).
const BETWEEN: [&str; 12] = [
    "Add",
    "Multiply",
    "Divide",
    "Subtract",
    "Select",
    "Reshape",
    "Transpose",
    "Convert",
    "Squeeze",
    "Unsqueeze",
    "Maximum",
    "Minimum",
];

/// How far (in ops) the MatMuls may be from the Softmax.
const REACH: usize = 4;

/// Why the graph is a transformer, or None. Recognised: a ScaledDotProductAttention op, or
/// attention written out: MatMul(activation, activation) → … → Softmax → … → MatMul(·, activation).
pub fn transformer(graph: &Graph) -> Option<String> {
    if let Some(n) = graph.nodes.iter().find(|n| n.op_type == "ScaledDotProductAttention") {
        return Some(format!("ScaledDotProductAttention layer '{}'", n.name));
    }
    let is_const = graph.constant_outlets().ok()?;
    let consumers = graph.consumers();
    let activation_matmul = |id: NodeId| {
        let n = &graph.nodes[id];
        n.op_type == "MatMul" && n.inputs.len() == 2 && n.inputs.iter().all(|o| !is_const[o.node])
    };
    for (id, n) in graph.nodes.iter().enumerate() {
        // Softmax-1, SoftMax-8.
        if !matches!(n.op_type.as_str(), "Softmax" | "SoftMax") {
            continue;
        }
        let Some(&input) = n.inputs.first() else { continue };
        let Some(scores) = upstream(graph, input.node, &activation_matmul) else { continue };
        let Some(context) = downstream(graph, &consumers, id, &activation_matmul) else { continue };
        return Some(format!(
            "attention: MatMul '{}' → {} '{}' → MatMul '{}'",
            graph.nodes[scores].name, n.op_type, n.name, graph.nodes[context].name
        ));
    }
    None
}

/// The first node matching `want` at or above `from`, through [`BETWEEN`] ops.
fn upstream(graph: &Graph, from: NodeId, want: &dyn Fn(NodeId) -> bool) -> Option<NodeId> {
    let mut frontier = vec![from];
    for _ in 0..=REACH {
        let mut next = vec![];
        for id in frontier {
            if want(id) {
                return Some(id);
            }
            if BETWEEN.contains(&graph.nodes[id].op_type.as_str()) {
                next.extend(graph.nodes[id].inputs.iter().map(|o| o.node));
            }
        }
        frontier = next;
    }
    None
}

/// The first node matching `want` below `from`, through [`BETWEEN`] ops.
fn downstream(
    graph: &Graph,
    consumers: &HashMap<Outlet, Vec<(NodeId, usize)>>,
    from: NodeId,
    want: &dyn Fn(NodeId) -> bool,
) -> Option<NodeId> {
    let mut frontier = vec![from];
    for _ in 0..REACH {
        let mut next = vec![];
        for id in frontier {
            for k in 0..graph.nodes[id].outputs.len() {
                for &(c, _) in consumers.get(&Outlet::new(id, k)).map(Vec::as_slice).unwrap_or(&[]) {
                    if want(c) {
                        return Some(c);
                    }
                    if BETWEEN.contains(&graph.nodes[c].op_type.as_str()) {
                        next.push(c);
                    }
                }
            }
        }
        frontier = next;
    }
    None
}
