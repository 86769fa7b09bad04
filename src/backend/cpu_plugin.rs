//! How OpenVINO's CPU plugin runs a quantized IR where that differs from the IR's FakeQuantize
//! semantics, as a graph rewrite: accuracy-aware quantization judges candidates by what the
//! runtime will compute, not by the simulation.
//!
//! One difference matters, and it is measurable (ppocr_cls: 660 of 4608 codes of a residual
//! block one step off, the Conv@40-reverted model 0.945 in OpenVINO vs 0.935 simulated): when the
//! plugin fuses `Convolution → bias → FakeQuantize → Add(residual) → FakeQuantize` into one int8
//! convolution with a sum post-op, the first FakeQuantize is applied *without rounding*
//! (`Convolution::setPostOps`: `do_rounding = false` for a leading FakeQuantize followed by a sum
//! and another FakeQuantize). It then only clamps to its range. [`emulate`] replaces such
//! FakeQuantize nodes by `Clamp`, choosing the Add input the plugin's
//! `FuseConvolutionSumAndConvolutionSumActivation` would merge.

use crate::graph::{Attrs, Graph, NodeId, Outlet};
use crate::ops::int8::pair_can_saturate;
use crate::tensor::{ElementType, Tensor};
use ndarray::IxDyn;
use serde::Serialize;
use std::collections::{HashMap, HashSet};

type Consumers = HashMap<Outlet, Vec<(NodeId, usize)>>;

fn consumer_count(consumers: &Consumers, node: NodeId) -> usize {
    consumers.get(&Outlet::new(node, 0)).map_or(0, |c| c.len())
}

/// Weights the CPU plugin runs in int8: compressed integer constants or a FakeQuantize on the way.
fn int8_weights(g: &Graph, node: NodeId, konst: &[bool]) -> bool {
    let n = &g.nodes[node];
    if !konst[node] {
        return false;
    }
    if n.op_type == "FakeQuantize" {
        return true;
    }
    if n.is_const() {
        return matches!(n.const_type, Some(ElementType::I8 | ElementType::U8 | ElementType::I4 | ElementType::U4));
    }
    n.inputs.iter().any(|i| int8_weights(g, i.node, konst))
}

/// Scalar value of a constant input.
fn scalar(g: &Graph, o: Outlet) -> Option<f32> {
    let t = g.nodes[o.node].value.as_ref()?;
    let v = t.to_f32();
    let first = *v.iter().next()?;
    v.iter().all(|&x| x == first).then_some(first)
}

/// Unary ops the plugin fuses into a convolution as eltwise post-ops.
const UNARY_POST_OPS: &[&str] = &[
    "Relu", "ReLU", "Clamp", "HSwish", "HSigmoid", "Sigmoid", "Tanh", "Elu", "Gelu", "Swish", "Mish", "SoftPlus",
    "Exp", "Abs", "Sqrt",
];

/// One input of a residual Add as the plugin sees it after fusing each convolution with the
/// ops that follow it.
struct Branch {
    /// The output is a convolution node the sum can be merged into.
    suitable: bool,
    /// The fused chain ends in a FakeQuantize (int8/uint8 output).
    quantized: bool,
    /// The leading post-op, when it is a FakeQuantize with equal input and output ranges:
    /// `(node, low, high)`.
    leading_fq: Option<(NodeId, f32, f32)>,
}

/// Walks back from `x` over the ops the plugin would have fused into a convolution.
fn branch(g: &Graph, x: NodeId, consumers: &Consumers, konst: &[bool]) -> Branch {
    let none = Branch { suitable: false, quantized: false, leading_fq: None };
    let mut chain = vec![];
    let mut cur = x;
    loop {
        let n = &g.nodes[cur];
        if matches!(n.op_type.as_str(), "Convolution" | "GroupConvolution") {
            break;
        }
        let fusable = match n.op_type.as_str() {
            "FakeQuantize" => n.inputs.len() == 5 && n.inputs[1..].iter().all(|i| konst[i.node]),
            "Add" | "Multiply" => n.inputs.len() == 2 && konst[n.inputs[1].node] && per_channel(g, n.inputs[1]),
            t => UNARY_POST_OPS.contains(&t),
        };
        if !fusable || n.inputs.is_empty() {
            return none;
        }
        chain.push(cur);
        cur = n.inputs[0].node;
        if consumer_count(consumers, cur) != 1 {
            return none;
        }
    }
    let conv = &g.nodes[cur];
    let int8 = conv.inputs.len() >= 2
        && g.nodes[conv.inputs[0].node].op_type == "FakeQuantize"
        && int8_weights(g, conv.inputs[1].node, konst);
    // Post-ops in execution order; an Add right after the convolution becomes its bias.
    chain.reverse();
    if chain.first().is_some_and(|&n| g.nodes[n].op_type == "Add") {
        chain.remove(0);
    }
    let quantized = g.nodes[x].op_type == "FakeQuantize";
    let leading_fq = chain.first().and_then(|&fq| {
        let n = &g.nodes[fq];
        if n.op_type != "FakeQuantize" {
            return None;
        }
        let [il, ih, ol, oh] = [1, 2, 3, 4].map(|k| scalar(g, n.inputs[k]));
        let (il, ih, ol, oh) = (il?, ih?, ol?, oh?);
        (il == ol && ih == oh && il < ih).then_some((fq, il, ih))
    });
    // A floating-point convolution takes the sum only when nothing else is fused into it.
    let suitable = if int8 { true } else { chain.is_empty() };
    Branch { suitable, quantized, leading_fq }
}

/// A bias the plugin folds into the convolution: one value per channel (dim 1) or a scalar.
fn per_channel(g: &Graph, o: Outlet) -> bool {
    match g.outlet_info(o).shape.to_static() {
        Some(s) => s.iter().enumerate().all(|(d, &n)| n == 1 || d == 1),
        None => false,
    }
}

/// Nodes `node` depends on.
fn ancestors(g: &Graph, node: NodeId) -> HashSet<NodeId> {
    let mut seen = HashSet::new();
    let mut stack = vec![node];
    while let Some(n) = stack.pop() {
        for i in &g.nodes[n].inputs {
            if seen.insert(i.node) {
                stack.push(i.node);
            }
        }
    }
    seen
}

/// Rewrites `graph` so that it computes what OpenVINO's CPU plugin computes (see the module
/// docs); returns the names of the FakeQuantize nodes that became `Clamp`.
pub fn emulate(graph: &mut Graph) -> Vec<String> {
    let consumers = graph.consumers();
    // A graph that does not sort has nothing to emulate (the engine will report it).
    let Ok(konst) = graph.constant_outlets() else { return vec![] };
    let mut rewrites: Vec<(NodeId, f32, f32)> = vec![];
    for add in 0..graph.nodes.len() {
        let n = &graph.nodes[add];
        if n.op_type != "Add" || n.inputs.len() != 2 {
            continue;
        }
        let (a, b) = (n.inputs[0], n.inputs[1]);
        if konst[a.node] || konst[b.node] {
            continue;
        }
        // No broadcasting: the sum post-op adds a tensor of the output's shape.
        let (sa, sb) = (graph.outlet_info(a).shape.to_static(), graph.outlet_info(b).shape.to_static());
        if sa.is_none() || sa != sb {
            continue;
        }
        // The Add's result must go on to be quantized: the leading FakeQuantize keeps its
        // rounding unless another FakeQuantize is fused after the sum.
        // (An activation right after the Add is fused with the sum.)
        let only_consumer = |node: NodeId| match consumers.get(&Outlet::new(node, 0)).map(|c| c.as_slice()) {
            Some([(c, _)]) => Some(*c),
            _ => None,
        };
        let Some(mut next) = only_consumer(add) else { continue };
        if UNARY_POST_OPS.contains(&graph.nodes[next].op_type.as_str()) {
            match only_consumer(next) {
                Some(c) => next = c,
                None => continue,
            }
        }
        if graph.nodes[next].op_type != "FakeQuantize" {
            continue;
        }
        let ba = branch(graph, a.node, &consumers, &konst);
        let bb = branch(graph, b.node, &consumers, &konst);
        let single = |o: Outlet| consumer_count(&consumers, o.node) == 1;
        // FuseConvolutionSumAndConvolutionSumActivation's choice of the convolution that
        // takes the sum; the other input is the peer.
        let (merged, peer, mb) = match (ba.suitable, bb.suitable) {
            (true, true) => {
                let first = if ba.quantized || bb.quantized { bb.quantized && single(a) } else { true };
                if first && single(a) {
                    (a, b, ba)
                } else {
                    (b, a, bb)
                }
            }
            (true, false) => (a, b, ba),
            (false, true) => (b, a, bb),
            (false, false) => continue,
        };
        if !single(merged) {
            continue;
        }
        let Some((fq, lo, hi)) = mb.leading_fq else { continue };
        // The sum is computed in place over the peer's buffer: every other reader of the
        // peer must run before the Add.
        let before = ancestors(graph, add);
        let others_first =
            consumers.get(&peer).is_none_or(|cs| cs.iter().all(|&(c, _)| c == add || before.contains(&c)));
        if others_first {
            rewrites.push((fq, lo, hi));
        }
    }
    let mut names = Vec::with_capacity(rewrites.len());
    for (fq, lo, hi) in rewrites {
        let node = &mut graph.nodes[fq];
        node.op_type = "Clamp".into();
        node.version = "opset1".into();
        node.attrs = Attrs::from_pairs(&[("min", &lo.to_string()), ("max", &hi.to_string())]);
        node.inputs.truncate(1);
        node.input_ports.truncate(1);
        names.push(node.name.clone());
    }
    if !names.is_empty() {
        graph.remove_dead_nodes();
    }
    names
}

/// How a CPU adds int8 products.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Int8Arithmetic {
    /// Exact 32-bit sums (VNNI, AMX; and every non-x86 target).
    Exact,
    /// Pairs of u8×s8 products added in 16 bits with saturation (x86 without VNNI).
    PairSaturating,
}

/// What [`emulate_for`] changed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Emulation {
    /// FakeQuantize nodes before a fused residual sum that clamp without rounding.
    pub unrounded: Vec<String>,
    /// Int8 layers whose 16-bit pair sums can saturate on the target (no-VNNI arithmetic).
    pub saturating: Vec<String>,
}

/// Rewrites `graph` to compute what OpenVINO's CPU plugin computes on a CPU with the given int8
/// arithmetic: the residual-sum rule of [`emulate`], then, for CPUs without VNNI, the 16-bit
/// pair saturation of int8 convolutions and MatMuls ([`crate::ops::int8`]).
pub fn emulate_for(graph: &mut Graph, arithmetic: Int8Arithmetic) -> Emulation {
    let unrounded = emulate(graph);
    let saturating = match arithmetic {
        Int8Arithmetic::Exact => vec![],
        Int8Arithmetic::PairSaturating => emulate_pair_saturation(graph),
    };
    Emulation { unrounded, saturating }
}

/// Ops that pass activation values through unchanged (a FakeQuantize before them still
/// describes their output's grid).
const VALUE_PRESERVING: &[&str] = &[
    "Reshape",
    "Squeeze",
    "Unsqueeze",
    "Transpose",
    "MaxPool",
    "Pad",
    "StridedSlice",
    "Slice",
    "Split",
    "VariadicSplit",
    "Gather",
    "Concat",
    "DepthToSpace",
    "SpaceToDepth",
    "ShuffleChannels",
    "Broadcast",
    "Tile",
];

/// The activation grid `(low, high, levels)` of the FakeQuantize that `o`'s values come from.
fn activation_grid(g: &Graph, o: Outlet) -> Option<(f32, f32, usize)> {
    let mut cur = o.node;
    for _ in 0..64 {
        let n = &g.nodes[cur];
        if n.op_type == "FakeQuantize" {
            let [il, ih, ol, oh] = [1, 2, 3, 4].map(|k| n.inputs.get(k).and_then(|&i| scalar(g, i)));
            let (il, ih, ol, oh) = (il?, ih?, ol?, oh?);
            let levels: usize = n.attrs.get("levels")?.trim().parse().ok()?;
            return (il == ol && ih == oh && ih > il && levels == 256).then_some((il, ih, levels));
        }
        if !VALUE_PRESERVING.contains(&n.op_type.as_str()) || n.inputs.is_empty() {
            return None;
        }
        if n.op_type == "Concat" {
            // Every input must come from the same grid.
            let grids: Vec<_> = n.inputs.iter().map(|&i| activation_grid(g, i)).collect();
            let first = grids.first().copied().flatten()?;
            return grids.iter().all(|x| *x == Some(first)).then_some(first);
        }
        cur = n.inputs[0].node;
    }
    None
}

/// Int8 weight codes in the weight's own layout and one scale per output channel, from
/// `Const(i8) → Convert → Multiply(scale) [→ Reshape]`.
fn weight_codes(g: &Graph, o: Outlet, channels_of: impl Fn(&[usize]) -> usize) -> Option<(Tensor, Vec<f32>)> {
    let mut n = &g.nodes[o.node];
    let shape = g.outlet_info(o).shape.to_static()?;
    if n.op_type == "Reshape" {
        n = &g.nodes[n.inputs.first()?.node];
    }
    if n.op_type != "Multiply" || n.inputs.len() != 2 {
        return None;
    }
    let (a, b) = (&g.nodes[n.inputs[0].node], &g.nodes[n.inputs[1].node]);
    let (conv, scale) = if a.op_type == "Convert" { (a, b) } else { (b, a) };
    if conv.op_type != "Convert" || !scale.is_const() {
        return None;
    }
    let codes = &g.nodes[conv.inputs.first()?.node];
    let Some(Tensor::I8(c)) = codes.value.as_deref() else { return None };
    let c = c.as_standard_layout().into_owned().into_shape_with_order(IxDyn(&shape)).ok()?;
    let s: Vec<f32> = scale.value.as_ref()?.to_f32().iter().copied().collect();
    let oc = channels_of(&shape);
    let s = match s.len() {
        1 => vec![s[0]; oc],
        l if l == oc => s,
        _ => return None,
    };
    Some((Tensor::I8(c), s))
}

/// How a layer's weights pair up for [`insert_pair_saturation`]: its kind and, for MatMul,
/// `transpose_b`; `None` for layers whose int8 arithmetic is exact (depthwise) or not modelled.
pub fn pair_kind(g: &Graph, op: NodeId) -> Option<(&'static str, bool)> {
    let n = &g.nodes[op];
    if n.inputs.len() != 2 {
        return None;
    }
    let ws = g.outlet_info(n.inputs[1]).shape.to_static()?;
    let flag = |k: &str| n.attrs.get(k).is_some_and(|v| v.trim() == "true");
    match n.op_type.as_str() {
        "Convolution" if ws.len() >= 3 => Some(("conv", false)),
        // Depthwise convolutions multiply one channel at a time: exact.
        "GroupConvolution" if ws.len() >= 4 && ws[2] >= 2 => Some(("group_conv", false)),
        "MatMul" if ws.len() == 2 && !flag("transpose_a") => Some(("matmul", flag("transpose_b"))),
        _ => None,
    }
}

/// Output channels of a weight tensor of `shape` for a layer of `kind`.
fn output_channels(kind: (&str, bool), shape: &[usize]) -> usize {
    match kind {
        ("matmul", true) => shape[0],
        ("matmul", false) => shape[1],
        ("group_conv", _) => shape[0] * shape[1],
        _ => shape[0],
    }
}

/// Adds `Int8PairSaturation(y, x, codes, scale)` for layer `op` (reading activation `x`, with
/// int8 weight `codes` in the weight's layout and one `scale` per output channel); `None` when
/// `x` is not on a FakeQuantize grid or the layer is not modelled. The caller wires the output.
pub fn insert_pair_saturation(
    graph: &mut Graph,
    op: NodeId,
    x: Outlet,
    y: Outlet,
    codes: Tensor,
    scale: Vec<f32>,
) -> Option<NodeId> {
    let kind = pair_kind(graph, op)?;
    let (lo, hi, levels) = activation_grid(graph, x)?;
    let n = &graph.nodes[op];
    let mut attrs = Attrs::from_pairs(&[
        ("kind", kind.0),
        ("act_low", &lo.to_string()),
        ("act_high", &hi.to_string()),
        ("levels", &levels.to_string()),
    ]);
    if kind.0 == "matmul" {
        attrs.0.push(("transpose_b".into(), kind.1.to_string()));
    } else {
        for k in ["strides", "dilations", "pads_begin", "pads_end", "auto_pad"] {
            if let Some(v) = n.attrs.get(k) {
                attrs.0.push((k.into(), v.to_string()));
            }
        }
    }
    let name = n.name.clone();
    let port = graph.outlet_info(y).clone();
    let oc = scale.len();
    let c = graph.add_const(format!("{name}/int8_codes"), codes);
    let s = graph.add_const(format!("{name}/int8_scale"), Tensor::f32_from_vec(&[oc], scale).ok()?);
    Some(graph.add_op(
        format!("{name}/int8_pair_saturation"),
        "Int8PairSaturation",
        "ovpot",
        attrs,
        vec![y, x, Outlet::new(c, 0), Outlet::new(s, 0)],
        vec![crate::graph::PortInfo::new(port.element_type, port.shape.clone())],
    ))
}

/// Inserts an `Int8PairSaturation` after every int8 Convolution, grouped (not depthwise)
/// GroupConvolution and MatMul with constant weights whose weight pairs can saturate; returns
/// their names.
pub fn emulate_pair_saturation(graph: &mut Graph) -> Vec<String> {
    let consumers = graph.consumers();
    let mut names = vec![];
    for id in 0..graph.nodes.len() {
        let Some(kind) = pair_kind(graph, id) else { continue };
        let (x, w) = (graph.nodes[id].inputs[0], graph.nodes[id].inputs[1]);
        let Some((codes, scale)) = weight_codes(graph, w, |s| output_channels(kind, s)) else { continue };
        if !matches!(&codes, Tensor::I8(c) if can_saturate(c, kind)) {
            continue;
        }
        let Some(sat) = insert_pair_saturation(graph, id, x, Outlet::new(id, 0), codes, scale) else { continue };
        for &(cn, k) in consumers.get(&Outlet::new(id, 0)).map(|v| v.as_slice()).unwrap_or(&[]) {
            graph.set_input(cn, k, Outlet::new(sat, 0));
        }
        names.push(graph.nodes[id].name.clone());
    }
    names
}

/// Whether any pair of adjacent input channels (per output channel and kernel tap) of weight
/// `codes` can saturate, for a layer of `kind` ([`pair_kind`]).
pub fn can_saturate(c: &ndarray::ArrayD<i8>, (kind, transpose_b): (&str, bool)) -> bool {
    let s = c.shape();
    let c = c.as_standard_layout();
    let flat: Vec<i32> = c.iter().map(|&v| v as i32).collect();
    // (outer, channels, inner): pairs run along `channels` with stride `inner`.
    let (outer, channels, inner) = match kind {
        "matmul" if transpose_b => (s[0], s[1], 1),
        "matmul" => (1, s[0], s[1]),
        "group_conv" => (s[0] * s[1], s[2], s[3..].iter().product()),
        _ => (s[0], s[1], s[2..].iter().product()),
    };
    (0..outer).any(|o| {
        (0..channels.saturating_sub(1)).step_by(2).any(|c0| {
            (0..inner).any(|t| {
                let at = |c: usize| flat[(o * channels + c) * inner + t];
                pair_can_saturate(at(c0), at(c0 + 1))
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;
    use crate::tensor::Tensor;

    /// ppocr_cls after accuracy-aware quantization; OpenVINO fuses seven residual sums in it.
    fn ppocr_int8() -> Graph {
        let xml = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ppocr_cls/int8/model.xml");
        Model::read(&xml, None).unwrap().graph().clone()
    }

    const BLOCK: &str = "BatchNormalization@9/fq_output_0";

    fn rewritten(mut g: Graph) -> Vec<String> {
        emulate(&mut g)
    }

    #[test]
    fn residual_quantizers_become_clamps_over_their_range() {
        let mut g = ppocr_int8();
        let fq = g.find_node(BLOCK).unwrap();
        let (lo, hi) = (scalar(&g, g.nodes[fq].inputs[1]).unwrap(), scalar(&g, g.nodes[fq].inputs[2]).unwrap());
        let changed = emulate(&mut g);
        assert_eq!(changed.len(), 7, "{changed:?}");
        let clamp = &g.nodes[g.find_node(BLOCK).unwrap()];
        assert_eq!(clamp.op_type, "Clamp");
        assert_eq!(clamp.inputs.len(), 1);
        let attr = |k: &str| clamp.attrs.get(k).unwrap().parse::<f32>().unwrap();
        assert_eq!((attr("min"), attr("max")), (lo, hi));
        // Idempotent: nothing left to rewrite.
        assert!(emulate(&mut g).is_empty());
    }

    /// Asking for the quantizer's output keeps the convolution's output alive for two readers,
    /// so OpenVINO does not fuse the sum and rounds (seen in the runtime: requesting that output
    /// changes the model's results).
    #[test]
    fn a_second_reader_keeps_the_rounding() {
        let mut g = ppocr_int8();
        let fq = g.find_node(BLOCK).unwrap();
        g.add_op("observer", "Result", "opset1", Attrs::default(), vec![Outlet::new(fq, 0)], vec![]);
        let changed = rewritten(g);
        assert_eq!(changed.len(), 6);
        assert!(!changed.iter().any(|c| c == BLOCK));
    }

    /// A convolution reverted to floating point takes the sum only with nothing fused into it:
    /// its quantizer keeps rounding.
    #[test]
    fn floating_point_weights_keep_the_rounding() {
        let mut g = ppocr_int8();
        let bias_add = g.nodes[g.find_node(BLOCK).unwrap()].inputs[0].node;
        let conv = g.nodes[bias_add].inputs[0].node;
        assert_eq!(g.nodes[conv].op_type, "Convolution");
        let shape = g.outlet_info(g.nodes[conv].inputs[1]).shape.to_static().unwrap();
        let w = g.add_const("fp32 weights", Tensor::from_f32(ndarray::ArrayD::zeros(shape)));
        g.set_input(conv, 1, Outlet::new(w, 0));
        let changed = rewritten(g);
        assert_eq!(changed.len(), 6);
        assert!(!changed.iter().any(|c| c == BLOCK));
    }

    /// Without a quantizer after the sum the plugin keeps the first quantizer's rounding.
    #[test]
    fn no_quantizer_after_the_sum_keeps_the_rounding() {
        let mut g = ppocr_int8();
        let fq = g.find_node(BLOCK).unwrap();
        let consumers = g.consumers();
        let add = consumers[&Outlet::new(fq, 0)][0].0;
        assert_eq!(g.nodes[add].op_type, "Add");
        let after = consumers[&Outlet::new(add, 0)][0].0;
        assert_eq!(g.nodes[after].op_type, "FakeQuantize");
        for &(c, k) in &consumers[&Outlet::new(after, 0)] {
            g.set_input(c, k, Outlet::new(add, 0));
        }
        let changed = rewritten(g);
        assert_eq!(changed.len(), 6);
        assert!(!changed.iter().any(|c| c == BLOCK));
    }
}
