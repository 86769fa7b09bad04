//! Where quantizers go: activation quantizers on the inputs of quantizable ops (moved up through
//! quantize-agnostic ops to the producing op, shared by every consumer that needs them, unified
//! at Concat) and weight quantizers on the constant inputs of weighted ops.

use super::config::{IgnoredScope, ModelType, Preset, QuantConfig};
use super::hw_config::{HwConfig, QSpec, Role};
use crate::error::{Error, Result};
use crate::graph::{Graph, NodeId, Outlet};
use crate::report::IgnoredInfo;
use crate::tensor::ElementType;
use std::collections::{BTreeMap, HashMap};

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
    /// A first layer: no quantized weighted op computes before it (where POT's and NNCF's
    /// `first_layer` saturation fix applies).
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

/// The ignored scope's patterns, anchored: a pattern matches whole layer names.
pub fn ignored_patterns(scope: &IgnoredScope) -> Result<Vec<regex::Regex>> {
    scope
        .patterns
        .iter()
        .map(|p| {
            regex::Regex::new(&format!("^(?:{p})$")).map_err(|e| Error::invalid(format!("ignored pattern '{p}': {e}")))
        })
        .collect()
}

/// Names and patterns of the ignored scope that match no layer: usually a typo, and otherwise
/// silent. Unparsable patterns are left to [`ignored_patterns`] to report.
pub fn unmatched_ignored(graph: &Graph, scope: &IgnoredScope) -> Vec<String> {
    let mut out = vec![];
    for n in &scope.names {
        if !graph.nodes.iter().any(|x| &x.name == n) {
            out.push(format!("ignored scope: no layer is named '{n}'"));
        }
    }
    for p in &scope.patterns {
        let Ok(re) = regex::Regex::new(&format!("^(?:{p})$")) else { continue };
        if !graph.nodes.iter().any(|x| re.is_match(&x.name)) {
            out.push(format!("ignored scope: pattern '{p}' matches no layer"));
        }
    }
    out
}

/// Whether a node matches the user's ignored scope; returns the reason.
pub fn ignored_reason(graph: &Graph, id: NodeId, scope: &IgnoredScope, regexes: &[regex::Regex]) -> Option<String> {
    let n = &graph.nodes[id];
    if scope.names.iter().any(|s| s == &n.name) {
        return Some("ignored scope: name".into());
    }
    if let Some(r) = regexes.iter().find(|r| r.is_match(&n.name)) {
        return Some(format!("ignored scope: pattern '{}'", r.as_str()));
    }
    for t in &scope.types {
        if t.op_type == n.op_type {
            let attrs_match = t.attributes.iter().all(|(k, v)| {
                let want = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                n.attrs.get(k).is_some_and(|have| {
                    have.replace(' ', "") == want.replace(' ', "").trim_matches(['[', ']']) || have == want
                })
            });
            if attrs_match {
                return Some(format!("ignored scope: type {}", t.op_type));
            }
        }
    }
    None
}

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
    consumers: HashMap<Outlet, Vec<(NodeId, usize)>>,
    hw: &'a HwConfig,
}

impl Ctx<'_> {
    fn outlet_is_float_activation(&self, o: Outlet) -> bool {
        !self.is_const[o.node] && is_float(self.graph.outlet_info(o).element_type)
    }

    /// The data input of `o`'s producer when that producer is a quantize-agnostic op with one
    /// output and otherwise constant inputs (a quantizer after it can move before it).
    fn agnostic_input(&self, o: Outlet) -> Option<Outlet> {
        let p = &self.graph.nodes[o.node];
        // Extra outputs (MaxPool's indices) must be unused.
        let extra_used = (1..p.outputs.len()).any(|k| self.consumers.contains_key(&Outlet::new(o.node, k)));
        if self.hw.role(&p.op_type) != Some(Role::Agnostic) || o.port != 0 || extra_used || p.inputs.is_empty() {
            return None;
        }
        let data = p.inputs[0];
        let rest_const = p.inputs[1..].iter().all(|i| self.is_const[i.node]);
        (rest_const && self.outlet_is_float_activation(data)).then_some(data)
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
    let ctx = Ctx { graph, is_const: graph.constant_outlets()?, consumers: graph.consumers(), hw };
    let order = graph.topo_order()?;
    let transformer = config.model_type == Some(ModelType::Transformer);
    let act_spec = hw.activation_spec(config.effective_preset());
    let weight_spec = hw.weight_spec(&config.weights, config.weights_symmetric());
    let sym_spec = QSpec { symmetric: true, ..act_spec };
    let mut setup = Setup::default();
    // (edge, spec, target, unified group)
    let mut act_edges: Vec<RawEdge> = vec![];
    let mut unified_groups = 0usize;
    let mut weighted_quantized = vec![false; graph.nodes.len()];

    for &id in &order {
        let n = &graph.nodes[id];
        let Some(role) = hw.role(&n.op_type) else { continue };
        if matches!(role, Role::Agnostic | Role::Unified) || ctx.is_const[id] {
            continue;
        }
        if let Some(reason) = ignored_reason(graph, id, &config.ignored, &regexes) {
            setup.ignored.push(IgnoredInfo { name: n.name.clone(), op_type: n.op_type.clone(), reason });
            continue;
        }
        let mut acts: Vec<usize> = vec![];
        let mut weight: Option<usize> = None;
        let mut spec = act_spec;
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
                        setup.ignored.push(IgnoredInfo {
                            name: n.name.clone(),
                            op_type: n.op_type.clone(),
                            reason: "pattern: softmax → MatMul".into(),
                        });
                        continue;
                    }
                    if transformer {
                        spec = sym_spec;
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
                    acts =
                        (0..n.inputs.len().min(3)).filter(|&k| ctx.outlet_is_float_activation(n.inputs[k])).collect();
                    spec = sym_spec;
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
        if acts.is_empty() && weight.is_none() {
            continue;
        }
        setup.quantized_ops.push(id);
        for k in acts {
            let src = n.inputs[k];
            // Concat feeding this input: quantize each Concat input with one shared range.
            let p = &graph.nodes[src.node];
            let single = ctx.consumers.get(&src).map_or(0, |c| c.len()) == 1;
            if hw.role(&p.op_type) == Some(Role::Unified)
                && single
                && p.inputs.iter().all(|&o| ctx.outlet_is_float_activation(o))
            {
                let g = unified_groups;
                unified_groups += 1;
                for i in 0..p.inputs.len() {
                    act_edges.push(((src.node, i), spec, id, Some(g)));
                }
            } else {
                act_edges.push(((id, k), spec, id, None));
            }
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
                spec: weight_spec,
            });
            if n.op_type != "Gather" {
                weighted_quantized[id] = true;
            }
        }
    }

    // Group edges by the tensor they quantize, then move each group up through agnostic ops
    // whose output is consumed only by that group, until nothing moves.
    let mut by_source: BTreeMap<Outlet, ActPoint> = BTreeMap::new();
    for ((consumer, input), spec, target, unified) in act_edges {
        let source = graph.nodes[consumer].inputs[input];
        merge_edge(&mut by_source, source, (consumer, input), spec, &[target], unified);
    }
    loop {
        let mut moved = false;
        let points: Vec<ActPoint> = std::mem::take(&mut by_source).into_values().collect();
        for p in points {
            let total = ctx.consumers.get(&p.source).map_or(0, |c| c.len());
            let up = (p.edges.len() == total && p.unified.is_none()).then(|| ctx.agnostic_input(p.source)).flatten();
            match up {
                Some(data) => {
                    moved = true;
                    merge_edge(&mut by_source, data, (p.source.node, 0), p.spec, &p.targets, None);
                }
                None => {
                    let src = p.source;
                    for e in p.edges.clone() {
                        merge_edge(&mut by_source, src, e, p.spec, &p.targets, p.unified);
                    }
                }
            }
        }
        if !moved {
            break;
        }
    }
    setup.activations = by_source.into_values().collect();
    for a in &mut setup.activations {
        a.edges.sort();
        a.targets.sort();
    }

    // Saturation fix as asked: the first weighted layers (no quantized weighted op before them),
    // or all. `auto` is decided per layer from calibration data (quant::saturation).
    use super::config::SaturationFix;
    let mut has_before = vec![false; graph.nodes.len()];
    for &id in &order {
        let n = &graph.nodes[id];
        has_before[id] = n.inputs.iter().any(|o| has_before[o.node] || weighted_quantized[o.node]);
    }
    let apply_fix =
        hw.uses_saturation_fix() && matches!(config.saturation_fix, SaturationFix::FirstLayer | SaturationFix::All);
    let all = config.saturation_fix == SaturationFix::All;
    for w in &mut setup.weights {
        w.first = weighted_quantized[w.op] && !has_before[w.op];
        // Depthwise convolutions multiply one channel at a time: they cannot saturate, and
        // NNCF's overflow fix leaves them alone too.
        let depthwise = graph.nodes[w.op].op_type == "GroupConvolution" && is_depthwise(graph, w.op);
        // POT's and NNCF's fix halves symmetric weight grids; asymmetric weights keep theirs.
        if apply_fix && w.spec.symmetric && weighted_quantized[w.op] && (w.first || (all && !depthwise)) {
            w.half_range = true;
        }
    }
    let _ = Preset::Performance;
    Ok(setup)
}
