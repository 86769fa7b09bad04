//! A quantization decided but not yet written ([`Quantized`]): what every step after the
//! statistics pass reads and refines, and how any subset of it becomes a graph.

use super::bias_correction::shifts::{apply_shift, BiasSite};
use super::config::{self, QuantConfig};
use super::isa;
use super::minmax::{self, QuantizedWeight};
use super::placement::Setup;
use crate::backend::{Backend, Executable};
use crate::error::Result;
use crate::graph::{Graph, NodeId, XmlElement};
use crate::report::Report;
use std::collections::{HashMap, HashSet};

/// A quantization decided but not yet written: the FP graph (after SmoothQuant), where the
/// quantizers go and their values. [`Quantized::materialize`] writes any subset of it, which is
/// how accuracy-aware quantization reverts layers cheaply.
pub struct Quantized {
    pub fp_graph: Graph,
    pub setup: Setup,
    /// Limits per activation point
    pub act_ranges: Vec<minmax::ActRange>,
    /// FP weight and its quantization per weight point
    pub weights: Vec<(minmax::SharedWeight, QuantizedWeight)>,
    pub bias_shifts: Vec<(BiasSite, Vec<f64>)>,
    pub config: QuantConfig,
    /// The int8 arithmetic of the target CPU, which verdicts emulate.
    pub isa: isa::AssumedIsa,
    /// Runs the statistics passes.
    pub backend: Backend,
    /// Judges INT8 models (bias correction, saturation checks, accuracy-aware): OpenVINO when it
    /// computes the target's int8 arithmetic here, else the built-in engine emulating it.
    pub verdicts: Backend,
    pub report: Report,
    /// With the OpenVINO backend: the FP32 model compiled as deployed, and the latencies measured
    /// on the way (the report's "does INT8 pay here").
    pub latency: LatencyProbe,
    /// The statistics every range and correction was computed from.
    pub statistics: std::sync::Arc<super::stats::Statistics>,
}

/// The FP32 model compiled as deployed (OpenVINO, one request at a time) beside the statistics
/// graph, while one core would idle, and the latencies measured so far: the saturation fix's
/// output check times its chosen INT8 candidate (bias corrections, applied after, change no time).
#[derive(Default)]
pub struct LatencyProbe {
    pub fp32: Option<Executable>,
    pub fp32_ms: Option<f64>,
    pub int8_ms: Option<f64>,
}

impl Quantized {
    /// `g` (an INT8 graph from this quantization) ready to run on the verdict backend: as the
    /// target computes it (`emulate`: the CPU plugin's arithmetic where the backend emulates it,
    /// see [`crate::backend::cpu_plugin`]), or as the IR says.
    pub(crate) fn judge(&self, g: Graph, emulate: bool) -> Result<Executable> {
        let verdicts = if emulate { self.verdicts.clone() } else { self.verdicts.without_emulation() };
        verdicts.compile_as_target(g, self.config.threads)
    }

    /// Writes the quantized graph, leaving the ops in `reverted` in floating point (their
    /// activation quantizers, weights and bias corrections are not applied).
    pub fn materialize(&self, reverted: &HashSet<NodeId>) -> Result<Graph> {
        let mut g = self.quantizers_applied(reverted, self.config.compress_weights)?;
        for (site, shift) in &self.bias_shifts {
            if reverted.contains(&site.op) {
                continue;
            }
            apply_shift(&mut g, site, shift)?;
        }
        record_rt_info(&mut g, &self.config, reverted.len());
        g.remove_dead_nodes();
        Ok(g)
    }

    /// The FP graph with the activation and weight quantizers of every op not in `reverted`,
    /// without bias corrections. Original node ids stay valid (dead nodes are kept).
    pub(crate) fn quantizers_applied(&self, reverted: &HashSet<NodeId>, compress: bool) -> Result<Graph> {
        let mut g = self.fp_graph.clone();
        let consumers = g.consumers();
        let mut used_names: HashSet<String> = g.nodes.iter().map(|n| n.name.clone()).collect();
        for (p, r) in self.setup.activations.iter().zip(&self.act_ranges) {
            if p.targets.iter().any(|t| reverted.contains(t)) {
                continue;
            }
            let all = consumers.get(&p.source).map_or(0, |c| c.len()) == p.edges.len();
            let base = if all {
                format!("{}/fq_output_{}", g.nodes[p.source.node].name, p.source.port)
            } else {
                let (c, k) = p.edges[0];
                format!("{}/fq_input_{k}", g.nodes[c].name)
            };
            let mut name = base.clone();
            let mut i = 1;
            while used_names.contains(&name) {
                name = format!("{base}_{i}");
                i += 1;
            }
            used_names.insert(name.clone());
            let (lo, hi) = r.tensors()?;
            minmax::insert_activation_fq(&mut g, p.source, &p.edges, name, lo, hi, r.levels);
        }
        self.apply_weights(&mut g, reverted, compress);
        Ok(g)
    }

    /// The FP32 graph with only the quantized weights (no activation quantizers): what full
    /// bias correction measures.
    pub(crate) fn weights_applied(&self) -> Graph {
        let mut g = self.fp_graph.clone();
        self.apply_weights(&mut g, &HashSet::new(), true);
        g
    }

    fn apply_weights(&self, g: &mut Graph, reverted: &HashSet<NodeId>, compress: bool) {
        for (w, (fp, q)) in self.setup.weights.iter().zip(&self.weights) {
            if !reverted.contains(&w.op) {
                minmax::replace_weight(g, w.op, w.input, fp, q, compress);
            }
        }
    }

    /// Groups of ops that must be reverted together (they share activation quantizers).
    pub fn revert_groups(&self) -> Vec<Vec<NodeId>> {
        let ops = &self.setup.quantized_ops;
        let idx: HashMap<NodeId, usize> = ops.iter().enumerate().map(|(i, &o)| (o, i)).collect();
        let mut parent: Vec<usize> = (0..ops.len()).collect();
        fn find(p: &mut [usize], x: usize) -> usize {
            let mut r = x;
            while p[r] != r {
                r = p[r];
            }
            p[x] = r;
            r
        }
        for a in &self.setup.activations {
            let members: Vec<usize> = a.targets.iter().filter_map(|t| idx.get(t).copied()).collect();
            for w in members.windows(2) {
                let (x, y) = (find(&mut parent, w[0]), find(&mut parent, w[1]));
                if x != y {
                    parent[y] = x;
                }
            }
        }
        let mut groups: std::collections::BTreeMap<usize, Vec<NodeId>> = Default::default();
        for (i, &o) in ops.iter().enumerate() {
            let r = find(&mut parent, i);
            groups.entry(r).or_default().push(o);
        }
        groups.into_values().collect()
    }
}

fn record_rt_info(g: &mut Graph, config: &QuantConfig, reverted: usize) {
    let rt = g.rt_info.get_or_insert_with(|| XmlElement::new("rt_info"));
    rt.children.retain(|c| c.name != "optimization");
    let mut opt = XmlElement::new("optimization");
    opt.children.push(XmlElement::with_value("version", &format!("ovpot {}", env!("CARGO_PKG_VERSION"))));
    let algo = match config.algorithm {
        config::Algorithm::Default => "DefaultQuantization",
        config::Algorithm::AccuracyAware => "AccuracyAwareQuantization",
    };
    opt.children.push(XmlElement::with_value("algorithm", algo));
    let cfg = serde_json::to_string(config).unwrap_or_default();
    opt.children.push(XmlElement::with_value("config", &cfg));
    if reverted > 0 {
        opt.children.push(XmlElement::with_value("reverted_layers", &reverted.to_string()));
    }
    rt.children.push(opt);
}
