//! Where quantizers go: activation quantizers on the inputs of quantizable ops (moved up through
//! quantize-agnostic ops to the producing op, shared by every consumer that needs them, unified
//! at Concat) and weight quantizers on the constant inputs of weighted ops.

use super::config::{ModelType, QuantConfig};
use super::hw_config::{HwConfig, QSpec, Role};
use crate::error::Result;
use crate::graph::{Graph, NodeId, Outlet};
use crate::report::IgnoredInfo;
use crate::tensor::ElementType;
use std::collections::{BTreeMap, HashMap, HashSet};

/// One activation FakeQuantize: quantizes `source` for the consumer inputs in `edges`.
#[derive(Clone, Debug, PartialEq)]
pub struct ActPoint {
    pub source: Outlet,
    pub edges: Vec<(NodeId, usize)>,
    /// The quantizable ops this quantizer serves.
    pub targets: Vec<NodeId>,
    pub spec: QSpec,
    /// Points with the same id share one range (inputs of one Concat).
    pub unified: Option<usize>,
}

/// One weight quantizer: input `input` of `op` is constant and gets int8 weights.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightPoint {
    pub op: NodeId,
    pub input: usize,
    /// Axes that index output channels (one scale per index combination).
    pub channel_axes: Vec<usize>,
    /// Saturation fix: use half of the int8 range.
    pub half_range: bool,
    /// A first layer, where POT's and NNCF's `first_layer` saturation fix applies: a quantized
    /// Convolution (only that op type, as both peers have it) that some path from a model
    /// input reaches without passing another quantized Convolution (NNCF's breadth-first walk).
    pub first: bool,
    pub spec: QSpec,
}

impl WeightPoint {
    /// How this weight is quantized under `config` (its range estimator).
    pub fn scheme<'a>(&'a self, config: &'a QuantConfig) -> super::minmax::WeightScheme<'a> {
        super::minmax::WeightScheme {
            spec: self.spec,
            channel_axes: &self.channel_axes,
            half_range: self.half_range,
            estimator: config.range_estimator.weights.as_ref(),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Setup {
    pub activations: Vec<ActPoint>,
    pub weights: Vec<WeightPoint>,
    pub ignored: Vec<IgnoredInfo>,
    /// Ops that got at least one quantizer.
    pub quantized_ops: Vec<NodeId>,
}

fn is_float(t: ElementType) -> bool {
    matches!(t, ElementType::F32 | ElementType::F16 | ElementType::BF16 | ElementType::F64)
}

pub use crate::graph::ignored::{ignored_patterns, ignored_reason, unmatched_ignored};

/// Weight channel axes by op type and weight rank.
fn weight_channel_axes(graph: &Graph, op: NodeId, input: usize, rank: usize) -> Vec<usize> {
    let n = &graph.nodes[op];
    if rank <= 1 {
        return vec![];
    }
    match n.op_type.as_str() {
        "Convolution" => vec![0],
        "GroupConvolution" => vec![0, 1],
        "ConvolutionBackpropData" => vec![1],
        "GroupConvolutionBackpropData" => vec![0, 2],
        "MatMul" => {
            let flag = |k: &str| n.attrs.get(k).is_some_and(|v| v.eq_ignore_ascii_case("true"));
            if input == 1 {
                // B is [.., K, N] (or [.., N, K] transposed): channels are N.
                if flag("transpose_b") {
                    vec![rank - 2]
                } else {
                    vec![rank - 1]
                }
            } else if flag("transpose_a") {
                vec![rank - 1]
            } else {
                vec![rank - 2]
            }
        }
        "Gather" => vec![0],
        _ => vec![0],
    }
}

struct Ctx<'a> {
    graph: &'a Graph,
    is_const: Vec<bool>,
    /// Constant, or computed from shapes only (ShapeOf and constants): no activation to quantize.
    /// NNCF drops these subgraphs before placing quantizers too (a dynamic Reshape's target
    /// shape, a detector's anchor grid).
    fixed: Vec<bool>,
    consumers: HashMap<Outlet, Vec<(NodeId, usize)>>,
    hw: &'a HwConfig,
}

impl Ctx<'_> {
    fn outlet_is_float_activation(&self, o: Outlet) -> bool {
        !self.fixed[o.node] && is_float(self.graph.outlet_info(o).element_type)
    }

    /// The data input of `o`'s producer when that producer is a quantize-agnostic op with one
    /// output and otherwise constant inputs (a quantizer after it can move before it).
    fn agnostic_input(&self, o: Outlet) -> Option<Outlet> {
        let p = &self.graph.nodes[o.node];
        // A Split's outputs are all data; other ops' extra outputs (MaxPool's indices) must be unused.
        let split = is_split(&p.op_type);
        let extra_used = !split && (1..p.outputs.len()).any(|k| self.consumers.contains_key(&Outlet::new(o.node, k)));
        // A Gather from a tensor (not a constant table: that is an embedding) moves data only.
        let agnostic = self.hw.role(&p.op_type) == Some(Role::Agnostic)
            || (p.op_type == "Gather" && p.inputs.first().is_some_and(|d| !self.fixed[d.node]));
        if !agnostic || (o.port != 0 && !split) || extra_used || p.inputs.is_empty() {
            return None;
        }
        let data = p.inputs[0];
        let rest_const = p.inputs[1..].iter().all(|i| self.fixed[i.node]);
        (rest_const && self.outlet_is_float_activation(data)).then_some(data)
    }

    /// Where a quantizer on `o` can move to: the agnostic producer's data input, except across a
    /// split. A quantizer stays after a Slice (NNCF's choice too), and after a Split,
    /// VariadicSplit, StridedSlice or Gather whose input branches: each branch keeps its own
    /// range (Q and K cut from one tensor are quantized apart). The outputs of a Split that alone
    /// reads its input move up together, when all are quantized (see [`Coverage::covered`]).
    fn passable_input(&self, o: Outlet) -> Option<Outlet> {
        let data = self.agnostic_input(o)?;
        match self.graph.nodes[o.node].op_type.as_str() {
            "Slice" => None,
            "Split" | "VariadicSplit" | "StridedSlice" | "Gather" if self.value_consumers(data) > 1 => None,
            _ => Some(data),
        }
    }

    /// A Concat of activations only (its inputs can be quantized with one range).
    fn unifiable_concat(&self, id: NodeId) -> bool {
        let n = &self.graph.nodes[id];
        self.hw.role(&n.op_type) == Some(Role::Unified)
            && !self.fixed[id]
            && !n.inputs.is_empty()
            && n.inputs.iter().all(|&o| self.outlet_is_float_activation(o))
    }

    /// Consumers of `o` that read its values (ShapeOf reads only its shape).
    fn value_consumers(&self, o: Outlet) -> usize {
        self.consumers.get(&o).map_or(0, |c| c.iter().filter(|(n, _)| !is_shape_of(self.graph, *n)).count())
    }

    /// Whether `o` comes from a Softmax through data-movement ops (attention scores).
    fn reads_softmax(&self, mut o: Outlet) -> bool {
        for _ in 0..8 {
            let p = &self.graph.nodes[o.node];
            match p.op_type.as_str() {
                "SoftMax" | "Softmax" => return true,
                "Reshape" | "Transpose" | "Squeeze" | "Unsqueeze" if !p.inputs.is_empty() => o = p.inputs[0],
                _ => return false,
            }
        }
        false
    }
}

/// Nodes whose outputs are constant or computed from tensor shapes only.
fn shape_derived(graph: &Graph, order: &[NodeId], is_const: &[bool]) -> Vec<bool> {
    let mut fixed = is_const.to_vec();
    for &id in order {
        let n = &graph.nodes[id];
        if is_shape_of(graph, id) {
            fixed[id] = true;
        } else if !fixed[id] && !n.is_parameter() && !n.is_result() && !n.reads_state() && !n.inputs.is_empty() {
            fixed[id] = n.inputs.iter().all(|o| fixed[o.node]);
        }
    }
    fixed
}

fn is_split(op_type: &str) -> bool {
    matches!(op_type, "Split" | "VariadicSplit")
}

fn is_shape_of(graph: &Graph, id: NodeId) -> bool {
    graph.nodes[id].op_type == "ShapeOf"
}

/// Which tensors every value consumer takes quantized: through its own quantizer, or through
/// agnostic ops a quantizer can move up through (memoized; the graph is acyclic).
struct Coverage<'a> {
    ctx: &'a Ctx<'a>,
    quantized: &'a HashSet<(NodeId, usize)>,
    memo: HashMap<Outlet, bool>,
}

impl Coverage<'_> {
    fn covered(&mut self, o: Outlet) -> bool {
        if let Some(&c) = self.memo.get(&o) {
            return c;
        }
        let consumers: Vec<(NodeId, usize)> = self.ctx.consumers.get(&o).cloned().unwrap_or_default();
        let mut any = false;
        let mut all = true;
        for (c, k) in consumers {
            if is_shape_of(self.ctx.graph, c) {
                continue;
            }
            any = true;
            let through = k == 0 && self.ctx.passable_input(Outlet::new(c, 0)) == Some(o) && self.outputs_covered(c);
            let concat = !through && self.ctx.unifiable_concat(c) && self.covered(Outlet::new(c, 0));
            if !(self.quantized.contains(&(c, k)) || through || concat) {
                all = false;
                break;
            }
        }
        self.memo.insert(o, any && all);
        any && all
    }

    /// Whether every used output of `node` is covered: one quantizer above a Split serves all its
    /// branches only when each takes it quantized (a convolution's output split in channel groups
    /// keeps one range, as NNCF places it: the convolution then writes int8 and the split moves
    /// int8 data).
    fn outputs_covered(&mut self, node: NodeId) -> bool {
        let used: Vec<Outlet> = (0..self.ctx.graph.nodes[node].outputs.len())
            .map(|k| Outlet::new(node, k))
            .filter(|&out| self.ctx.value_consumers(out) > 0)
            .collect();
        !used.is_empty() && used.into_iter().all(|out| self.covered(out))
    }
}

/// (consumer, input), spec, quantized op, unified group
type RawEdge = ((NodeId, usize), QSpec, NodeId, Option<usize>);

fn merge_edge(
    map: &mut BTreeMap<Outlet, ActPoint>,
    source: Outlet,
    edge: (NodeId, usize),
    spec: QSpec,
    targets: &[NodeId],
    unified: Option<usize>,
) {
    let e = map.entry(source).or_insert_with(|| ActPoint { source, edges: vec![], targets: vec![], spec, unified });
    if !e.edges.contains(&edge) {
        e.edges.push(edge);
    }
    for t in targets {
        if !e.targets.contains(t) {
            e.targets.push(*t);
        }
    }
    e.spec.symmetric |= spec.symmetric;
    // Per-channel only when every consumer takes it.
    e.spec.per_channel &= spec.per_channel;
    if e.unified.is_none() {
        e.unified = unified;
    }
}

/// A GroupConvolution with one input and one output channel per group.
fn is_depthwise(graph: &Graph, id: NodeId) -> bool {
    let n = &graph.nodes[id];
    n.inputs
        .get(1)
        .and_then(|w| graph.outlet_info(*w).shape.to_static())
        .is_some_and(|s| s.len() >= 3 && s[1] == 1 && s[2] == 1)
}

/// Computes the quantizer setup for a graph.
pub fn plan_quantizers(graph: &Graph, hw: &HwConfig, config: &QuantConfig) -> Result<Setup> {
    let regexes = ignored_patterns(&config.ignored)?;
    let order = graph.topo_order()?;
    let is_const = graph.constant_outlets()?;
    let fixed = shape_derived(graph, &order, &is_const);
    let ctx = Ctx { graph, is_const, fixed, consumers: graph.consumers(), hw };
    let transformer = config.model_type == Some(ModelType::Transformer);
    let patterns = if transformer { crate::graph::patterns::transformer_ignored(graph) } else { Default::default() };
    let act_spec = hw.activation_spec(config.effective_preset());
    let weight_spec = hw.weight_spec(&config.weights, config.weights_symmetric());
    let sym_spec = QSpec { symmetric: true, ..act_spec };
    let planner = Planner { ctx, config, regexes, patterns, transformer, act_spec, sym_spec, weight_spec };
    let (mut setup, act_edges, weighted_quantized) = planner.quantizable_ops(&order);
    setup.activations = place_activations(&planner.ctx, act_edges);
    apply_saturation_fix(&planner.ctx, &order, config, &weighted_quantized, &mut setup.weights);
    Ok(setup)
}

/// What [`plan_quantizers`] decides per op with: the graph context, the ignored scope and
/// patterns, and the quantizer specs in force.
struct Planner<'a> {
    ctx: Ctx<'a>,
    config: &'a QuantConfig,
    regexes: Vec<regex::Regex>,
    /// The model type's ignored patterns (transformers only).
    patterns: BTreeMap<NodeId, &'static str>,
    transformer: bool,
    act_spec: QSpec,
    /// The symmetric activation spec (transformer MatMuls without weights, attention's Q and K).
    sym_spec: QSpec,
    weight_spec: QSpec,
}

/// The inputs of one quantizable op that get quantizers.
struct OpInputs {
    /// Activation inputs.
    acts: Vec<usize>,
    /// The constant weight input.
    weight: Option<usize>,
    /// The activation quantizers' spec.
    spec: QSpec,
}

impl Planner<'_> {
    /// The quantizable ops in topological order: the setup's ignored layers, quantized ops and
    /// weight points, the activation edges to quantize, and which ops got quantized weights.
    fn quantizable_ops(&self, order: &[NodeId]) -> (Setup, Vec<RawEdge>, Vec<bool>) {
        let (ctx, graph) = (&self.ctx, self.ctx.graph);
        let mut setup = Setup::default();
        // (edge, spec, target, unified group)
        let mut act_edges: Vec<RawEdge> = vec![];
        let mut weighted_quantized = vec![false; graph.nodes.len()];

        for &id in order {
            let n = &graph.nodes[id];
            let Some(role) = ctx.hw.role(&n.op_type) else { continue };
            if matches!(role, Role::Agnostic | Role::Unified) || ctx.fixed[id] {
                continue;
            }
            let reason = ignored_reason(graph, id, &self.config.ignored, &self.regexes)
                .or_else(|| self.patterns.get(&id).map(|p| crate::graph::patterns::reason(p)));
            if let Some(reason) = reason {
                setup.ignored.push(IgnoredInfo { name: n.name.clone(), op_type: n.op_type.clone(), reason });
                continue;
            }
            let Some(OpInputs { acts, weight, spec }) = self.op_inputs(id, role, &mut setup.ignored) else { continue };
            if acts.is_empty() && weight.is_none() {
                continue;
            }
            setup.quantized_ops.push(id);
            for k in acts {
                act_edges.push(((id, k), spec, id, None));
            }
            if let Some(w) = weight {
                let rank = graph.outlet_info(n.inputs[w]).shape.rank().unwrap_or(0);
                let axes = weight_channel_axes(graph, id, w, rank);
                setup.weights.push(WeightPoint {
                    op: id,
                    input: w,
                    channel_axes: axes,
                    half_range: false,
                    first: false,
                    spec: self.weight_spec,
                });
                if n.op_type != "Gather" {
                    weighted_quantized[id] = true;
                }
            }
        }
        (setup, act_edges, weighted_quantized)
    }

    /// Which inputs of op `id` (of role `role`) get quantizers, with which activation spec; `None`
    /// (recorded in `ignored`) for a MatMul that reads attention scores.
    fn op_inputs(&self, id: NodeId, role: Role, ignored: &mut Vec<IgnoredInfo>) -> Option<OpInputs> {
        let (ctx, graph) = (&self.ctx, self.ctx.graph);
        let n = &graph.nodes[id];
        let mut acts: Vec<usize> = vec![];
        let mut weight: Option<usize> = None;
        let mut spec = self.act_spec;
        match role {
            Role::Weighted => {
                let data_inputs = n.inputs.len().min(2);
                for k in 0..data_inputs {
                    let o = n.inputs[k];
                    if ctx.is_const[o.node] {
                        if weight.is_none() && is_float(graph.outlet_info(o).element_type) {
                            weight = Some(k);
                        }
                    } else if ctx.outlet_is_float_activation(o) {
                        acts.push(k);
                    }
                }
                if n.op_type == "MatMul" && weight.is_none() {
                    if n.inputs.iter().any(|&o| ctx.reads_softmax(o)) {
                        ignored.push(IgnoredInfo {
                            name: n.name.clone(),
                            op_type: n.op_type.clone(),
                            reason: "pattern: softmax → MatMul".into(),
                        });
                        return None;
                    }
                    if self.transformer {
                        spec = self.sym_spec;
                    }
                }
            }
            Role::Eltwise => {
                if n.inputs.len() >= 2 && n.inputs.iter().all(|&o| ctx.outlet_is_float_activation(o)) {
                    acts = (0..n.inputs.len()).collect();
                }
            }
            Role::ActivationOnly => {
                if let Some(&o) = n.inputs.first() {
                    if ctx.outlet_is_float_activation(o) {
                        acts.push(0);
                    }
                }
                if n.op_type == "ScaledDotProductAttention" {
                    // Q and K (NNCF quantizes these two; V stays in floating point).
                    acts =
                        (0..n.inputs.len().min(2)).filter(|&k| ctx.outlet_is_float_activation(n.inputs[k])).collect();
                    spec = self.sym_spec;
                }
            }
            Role::Embedding => {
                let table = n.inputs.first().copied();
                if let Some(t) = table {
                    let info = graph.outlet_info(t);
                    if ctx.is_const[t.node] && is_float(info.element_type) && info.shape.rank() == Some(2) {
                        weight = Some(0);
                    }
                }
            }
            Role::Agnostic | Role::Unified => {}
        }
        if n.op_type == "GroupConvolution" && is_depthwise(graph, id) {
            // Depthwise convolutions take per-channel activations (CPU config q8_a_ch).
            spec.per_channel = true;
        }
        Some(OpInputs { acts, weight, spec })
    }
}

/// The activation quantizers for `act_edges`, one per quantized tensor (edges and targets sorted).
fn place_activations(ctx: &Ctx, act_edges: Vec<RawEdge>) -> Vec<ActPoint> {
    let graph = ctx.graph;
    // Each quantizer moves up through quantize-agnostic ops while every consumer of the tensor
    // above takes it quantized (NNCF's branching rule: a branch left in floating point keeps the
    // quantizers below the branch point); quantizers that end on one tensor become one.
    // A Concat whose output every consumer takes quantized gets its inputs quantized instead,
    // with one shared range (the plugin's int8 Concat needs equal scales), and those quantizers
    // move up in turn (Relu → MaxPool → Concat: on the Relu output, as NNCF places them).
    let quantized: HashSet<(NodeId, usize)> = act_edges.iter().map(|e| e.0).collect();
    let mut coverage = Coverage { ctx, quantized: &quantized, memo: HashMap::new() };
    let mut by_source: BTreeMap<Outlet, ActPoint> = BTreeMap::new();
    let mut concat_groups: HashMap<NodeId, usize> = HashMap::new();
    let mut pending = act_edges;
    pending.reverse();
    while let Some(((consumer, input), spec, target, unified)) = pending.pop() {
        let mut source = graph.nodes[consumer].inputs[input];
        let mut edge = (consumer, input);
        while let Some(up) = ctx.passable_input(source).filter(|&d| coverage.covered(d)) {
            edge = (source.node, 0);
            source = up;
        }
        if source.port == 0 && ctx.unifiable_concat(source.node) && coverage.covered(source) {
            let next = concat_groups.len();
            let group = *concat_groups.entry(source.node).or_insert(next);
            let inputs = graph.nodes[source.node].inputs.len();
            // Pushed in reverse: popped in input order.
            for i in (0..inputs).rev() {
                pending.push(((source.node, i), spec, target, Some(group)));
            }
            continue;
        }
        merge_edge(&mut by_source, source, edge, spec, &[target], unified);
    }
    let mut activations: Vec<ActPoint> = by_source.into_values().collect();
    for a in &mut activations {
        a.edges.sort();
        a.targets.sort();
    }
    activations
}

/// Saturation fix as asked: the first Convolutions (see `WeightPoint::first`), or all.
/// `auto` is decided per layer from calibration data (quant::saturation).
fn apply_saturation_fix(
    ctx: &Ctx,
    order: &[NodeId],
    config: &QuantConfig,
    weighted_quantized: &[bool],
    weights: &mut [WeightPoint],
) {
    use super::config::SaturationFix;
    let (graph, hw) = (ctx.graph, ctx.hw);
    let quantized_conv = |id: NodeId| weighted_quantized[id] && graph.nodes[id].op_type == "Convolution";
    let mut reached = vec![false; graph.nodes.len()];
    for &id in order {
        let n = &graph.nodes[id];
        reached[id] = n.is_parameter() || n.inputs.iter().any(|o| reached[o.node] && !quantized_conv(o.node));
    }
    let apply_fix =
        hw.uses_saturation_fix() && matches!(config.saturation_fix, SaturationFix::FirstLayer | SaturationFix::All);
    let all = config.saturation_fix == SaturationFix::All;
    for w in weights {
        w.first = quantized_conv(w.op) && reached[w.op];
        // Depthwise convolutions multiply one channel at a time: they cannot saturate, and
        // NNCF's overflow fix leaves them alone too.
        let depthwise = graph.nodes[w.op].op_type == "GroupConvolution" && is_depthwise(graph, w.op);
        // POT's and NNCF's fix halves symmetric weight grids; asymmetric weights keep theirs.
        if apply_fix && w.spec.symmetric && weighted_quantized[w.op] && (w.first || (all && !depthwise)) {
            w.half_range = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Attrs, Node, PartialShape, PortInfo};
    use crate::quant::config::TargetDevice;
    use crate::tensor::Tensor;

    fn f32_port(shape: &[usize]) -> PortInfo {
        PortInfo::new(ElementType::F32, PartialShape::from_static(shape))
    }

    struct Builder(Graph);

    impl Builder {
        fn new() -> (Builder, Outlet) {
            let mut g = Graph::default();
            let mut p = Node::new("x", "Parameter", "opset1");
            p.outputs.push(f32_port(&[1, 8, 8]));
            let x = g.add_node(p);
            (Builder(g), Outlet::new(x, 0))
        }
        fn op(&mut self, name: &str, op: &str, inputs: Vec<Outlet>, shape: &[usize]) -> Outlet {
            Outlet::new(self.0.add_op(name, op, "opset1", Attrs::default(), inputs, vec![f32_port(shape)]), 0)
        }
        fn konst(&mut self, name: &str, shape: &[usize]) -> Outlet {
            let n: usize = shape.iter().product();
            Outlet::new(self.0.add_const(name, Tensor::f32_from_vec(shape, vec![0.5; n]).unwrap()), 0)
        }
        fn i64s(&mut self, name: &str, v: &[i64]) -> Outlet {
            Outlet::new(self.0.add_const(name, Tensor::i64_from_vec(&[v.len()], v.to_vec()).unwrap()), 0)
        }
        /// `x[:, :, from..to]` as an opset8 Slice.
        fn slice(&mut self, name: &str, x: Outlet, from: i64, to: i64) -> Outlet {
            let (b, e, s, a) = (
                self.i64s(&format!("{name}/b"), &[from]),
                self.i64s(&format!("{name}/e"), &[to]),
                self.i64s(&format!("{name}/s"), &[1]),
                self.i64s(&format!("{name}/a"), &[2]),
            );
            self.op(name, "Slice", vec![x, b, e, s, a], &[1, 8, (to - from) as usize])
        }
        fn matmul_w(&mut self, name: &str, x: Outlet, k: usize) -> Outlet {
            let w = self.konst(&format!("{name}/w"), &[k, 4]);
            self.op(name, "MatMul", vec![x, w], &[1, 8, 4])
        }
        fn result(&mut self, x: Outlet) {
            let mut r = Node::new(format!("out{}", self.0.nodes.len()), "Result", "opset1");
            r.inputs.push(x);
            r.input_ports.push(self.0.outlet_info(x).clone());
            self.0.add_node(r);
        }
        fn plan(&self) -> Setup {
            let hw = HwConfig::new(TargetDevice::CPU, None);
            plan_quantizers(&self.0, &hw, &QuantConfig::default()).unwrap()
        }
    }

    fn sources(setup: &Setup, g: &Graph) -> Vec<String> {
        let mut s: Vec<String> = setup.activations.iter().map(|a| g.nodes[a.source.node].name.clone()).collect();
        s.sort();
        s
    }

    /// Q and K cut by Slices from one tensor each keep their own range, and V's unquantized branch
    /// keeps them below the branch point.
    #[test]
    fn slices_of_one_tensor_are_quantized_apart() {
        let (mut b, x) = Builder::new();
        let qkv = b.matmul_w("qkv", x, 8);
        let q = b.slice("q", qkv, 0, 2);
        let k = b.slice("k", qkv, 2, 4);
        let v = b.slice("v", qkv, 0, 4);
        let qm = b.matmul_w("qm", q, 2);
        let km = b.matmul_w("km", k, 2);
        let soft = b.op("soft", "SoftMax", vec![v], &[1, 8, 4]);
        for o in [qm, km, soft] {
            b.result(o);
        }
        let setup = b.plan();
        assert_eq!(sources(&setup, &b.0), ["k", "q", "x"]);
    }

    /// A StridedSlice (agnostic) whose input branches keeps each branch's range too.
    #[test]
    fn strided_slices_of_a_branching_tensor_keep_their_ranges() {
        let (mut b, x) = Builder::new();
        let t = b.matmul_w("t", x, 8);
        let s1 = b.op("s1", "StridedSlice", vec![t], &[1, 8, 4]);
        let s2 = b.op("s2", "StridedSlice", vec![t], &[1, 8, 4]);
        let m1 = b.matmul_w("m1", s1, 4);
        let m2 = b.matmul_w("m2", s2, 4);
        b.result(m1);
        b.result(m2);
        assert_eq!(sources(&b.plan(), &b.0), ["s1", "s2", "x"]);
    }

    /// Concat's inputs move up through MaxPool to the Relu outputs (NNCF's placement), sharing one
    /// range; a reshape whose input also feeds an unquantized op keeps its quantizer below.
    #[test]
    fn concat_inputs_move_up_and_branches_stop_at_float_consumers() {
        let (mut b, x) = Builder::new();
        let r1 = b.op("r1", "Relu", vec![x], &[1, 8, 8]);
        let r2 = b.op("r2", "Relu", vec![x], &[1, 8, 8]);
        let p1 = b.op("p1", "MaxPool", vec![r1], &[1, 8, 8]);
        let cat = b.op("cat", "Concat", vec![p1, r2], &[1, 8, 16]);
        let m = b.matmul_w("m", cat, 16);
        b.result(m);
        let shape = b.i64s("shape", &[1, 8, 8]);
        let rs = b.op("rs", "Reshape", vec![r2, shape], &[1, 8, 8]);
        let _ = rs;
        let setup = b.plan();
        // r2 also feeds the Reshape, which feeds nothing quantized: its quantizer stays on the
        // Concat edge, the MaxPool's moves up to r1.
        assert_eq!(sources(&setup, &b.0), ["r1", "r2"]);
        let groups: Vec<Option<usize>> = setup.activations.iter().map(|a| a.unified).collect();
        assert!(groups[0].is_some() && groups[0] == groups[1], "{groups:?}");
    }

    /// A Split whose outputs all feed quantized ops takes one quantizer above it (NNCF's
    /// placement: the producer writes int8); an output left in floating point keeps each quantized
    /// branch's own range.
    #[test]
    fn split_outputs_merge_only_when_all_are_quantized() {
        let (mut b, x) = Builder::new();
        let t = b.matmul_w("t", x, 8);
        let axis = b.i64s("axis", &[2]);
        let lengths = b.i64s("lengths", &[4, 4]);
        let port = f32_port(&[1, 8, 4]);
        let split = b.0.add_op(
            "split",
            "VariadicSplit",
            "opset1",
            Attrs::default(),
            vec![t, axis, lengths],
            vec![port.clone(), port],
        );
        let m1 = b.matmul_w("m1", Outlet::new(split, 0), 4);
        let m2 = b.matmul_w("m2", Outlet::new(split, 1), 4);
        b.result(m1);
        b.result(m2);
        let setup = b.plan();
        assert_eq!(sources(&setup, &b.0), ["t", "x"]);
        let above = setup.activations.iter().find(|a| a.source == t).unwrap();
        assert_eq!(above.edges, [(split, 0)]);
        assert_eq!(above.targets.len(), 2);
        // Output 1 also read by a float op: each quantized branch keeps its own quantizer.
        let r = b.op("relu", "Relu", vec![Outlet::new(split, 1)], &[1, 8, 4]);
        b.result(r);
        assert_eq!(sources(&b.plan(), &b.0), ["split", "split", "x"]);
    }

    /// A Concat read by two quantized ops quantizes its inputs with one range, and those move up.
    #[test]
    fn concat_with_two_quantized_consumers_quantizes_its_inputs() {
        let (mut b, x) = Builder::new();
        let a = b.matmul_w("a", x, 8);
        let r = b.op("r", "Relu", vec![a], &[1, 8, 4]);
        let p = b.op("p", "MaxPool", vec![r], &[1, 8, 4]);
        let c = b.matmul_w("c", x, 8);
        let cat = b.op("cat", "Concat", vec![p, c], &[1, 8, 8]);
        let m1 = b.matmul_w("m1", cat, 8);
        let m2 = b.matmul_w("m2", cat, 8);
        b.result(m1);
        b.result(m2);
        let setup = b.plan();
        assert_eq!(sources(&setup, &b.0), ["c", "r", "x"]);
        let groups: Vec<Option<usize>> =
            setup.activations.iter().filter(|a| a.source.node != x.node).map(|a| a.unified).collect();
        assert!(groups[0].is_some() && groups[0] == groups[1], "{groups:?}");
    }

    /// An operand computed from shapes only (a detector's anchor grid) is no activation: the
    /// Subtract that reads it is not quantized.
    #[test]
    fn shape_derived_operands_are_not_activations() {
        let (mut b, x) = Builder::new();
        let t = b.matmul_w("t", x, 8);
        let shape = b.op("shape", "ShapeOf", vec![x], &[3]);
        let grid = b.op("grid", "Convert", vec![shape], &[3]);
        let sub = b.op("sub", "Subtract", vec![grid, t], &[1, 8, 4]);
        b.result(sub);
        assert_eq!(sources(&b.plan(), &b.0), ["x"]);
    }

    /// A shape read (ShapeOf) is no branch: the quantizer still moves above the reshape.
    #[test]
    fn shape_reads_do_not_block() {
        let (mut b, x) = Builder::new();
        let t = b.matmul_w("t", x, 8);
        let shape = b.i64s("shape", &[1, 8, 8]);
        let rs = b.op("rs", "Reshape", vec![t, shape], &[1, 8, 8]);
        let _ = b.op("sh", "ShapeOf", vec![t], &[3]);
        let m = b.matmul_w("m", rs, 8);
        b.result(m);
        assert_eq!(sources(&b.plan(), &b.0), ["t", "x"]);
        // And a float branch does block.
        let r = b.op("relu", "Relu", vec![t], &[1, 8, 8]);
        b.result(r);
        assert_eq!(sources(&b.plan(), &b.0), ["rs", "x"]);
    }
}
