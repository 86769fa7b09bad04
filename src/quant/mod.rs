//! Quantization passes: they rewrite the graph; ops know nothing about them.
//!
//! DefaultQuantization = [SmoothQuant for transformers] → quantizer placement by hardware config
//! → one statistics pass → FakeQuantize ranges, int8 weights → bias correction.

pub mod accuracy_aware;
pub mod bias_correction;
pub mod config;
pub mod cpu_plugin;
pub mod data_free;
pub mod detect;
pub mod hw_config;
pub mod isa;
pub mod minmax;
pub mod placement;
mod prepare;
pub mod saturation;
pub mod smooth_quant;
pub mod stats;

pub use prepare::prepare;

use crate::data::{Dataset, Metric};

use crate::hooks::{Hooks, LogLevel, Stage};

use crate::model::Model;

use crate::backend::{Backend, Executable};
use crate::engine::Plan;
use crate::error::Result;
use crate::graph::{Graph, NodeId, Outlet, XmlElement};
use crate::report::{Outcome, Report};
use crate::tensor::Tensor;
use bias_correction::BiasSite;
use config::{QuantConfig, SaturationFix};
use minmax::QuantizedWeight;
use ndarray::ArrayD;
use placement::Setup;
use stats::Request;
use std::collections::{HashMap, HashSet};
use std::time::Instant;

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
    /// `g` (an INT8 graph from this quantization) ready to run as the target computes it:
    /// compiled by OpenVINO, or emulated by the built-in engine (`emulate`: the CPU plugin's
    /// arithmetic, see [`cpu_plugin`]).
    pub(crate) fn judge(&self, mut g: Graph, emulate: bool) -> Result<Executable> {
        match &self.verdicts {
            Backend::Builtin => {
                if emulate {
                    cpu_plugin::emulate_for(&mut g, self.isa.arithmetic);
                }
                Ok(Executable::builtin(Plan::new(&g)?, &[]))
            }
            // The FP32 weights the quantizers replaced: not serialized and parsed again.
            ov => ov.compile(&g.without_dead_nodes(), &[], self.config.threads),
        }
    }

    /// Writes the quantized graph, leaving the ops in `reverted` in floating point (their
    /// activation quantizers, weights and bias corrections are not applied).
    pub fn materialize(&self, reverted: &HashSet<NodeId>) -> Result<Graph> {
        let mut g = self.quantizers_applied(reverted, self.config.compress_weights)?;
        for (site, shift) in &self.bias_shifts {
            if reverted.contains(&site.op) {
                continue;
            }
            bias_correction::apply_shift(&mut g, site, shift)?;
        }
        record_rt_info(&mut g, &self.config, reverted.len());
        g.remove_dead_nodes();
        Ok(g)
    }

    /// The FP graph with the activation and weight quantizers of every op not in `reverted`,
    /// without bias corrections. Original node ids stay valid (dead nodes are kept).
    fn quantizers_applied(&self, reverted: &HashSet<NodeId>, compress: bool) -> Result<Graph> {
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
    fn weights_applied(&self) -> Graph {
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

fn constant_value(plan: &Plan, o: Outlet) -> Option<Tensor> {
    plan.constant_value(o).map(|t| (**t).clone())
}

/// The per-channel mean of a bias site's op output (before the bias), from statistics taken
/// there or after the bias Add (`after_bias`).
fn site_output_means(col: &stats::Collected, site: &BiasSite, after_bias: bool) -> Option<Vec<f64>> {
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

/// The backend that judges INT8 models: OpenVINO when it is the backend and computes the
/// target's int8 arithmetic on this machine; else the built-in engine, with the reason.
fn verdict_backend(backend: &Backend, target: &isa::AssumedIsa, config: &QuantConfig) -> Result<Backend, String> {
    if !backend.is_openvino() {
        return Ok(Backend::Builtin);
    }
    if target.isa == "none" {
        return Err(format!(
            "target device {:?} is not this CPU: INT8 verdicts come from the built-in engine, not from OpenVINO's CPU plugin",
            config.target_device
        ));
    }
    let here = isa::resolve_here(config::TargetIsa::Auto, config::TargetDevice::CPU);
    if here.arithmetic != target.arithmetic {
        return Err(format!(
            "the target's int8 arithmetic ({}) is not this CPU's ({}, {}): INT8 verdicts come from the built-in \
             engine emulating the target, not from OpenVINO here",
            target.isa, here.isa, here.reason
        ));
    }
    Ok(backend.clone())
}

/// The saturation fix for a target without VNNI: measures the layers whose 8-bit weights can
/// saturate, gives 7-bit weights to those `saturation_fix: auto` picks, and records the choice in
/// the report. Returns the mean saturation error per output channel of the layers that keep
/// 8-bit weights (by weight index), for bias correction.
fn fix_saturation(
    q: &mut Quantized,
    data: &dyn Dataset,
    n: usize,
    fp_outputs: Option<&[Vec<Tensor>]>,
    hooks: &mut Hooks,
) -> Result<HashMap<usize, Vec<f64>>> {
    let mode = q.config.saturation_fix;
    let mode_name = serde_json::to_value(mode).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
    // `auto` and `per_layer` decide per layer; `auto` also judges the layers left saturating.
    let per_layer = matches!(mode, SaturationFix::Auto | SaturationFix::PerLayer);
    let mut means = HashMap::new();
    let mut measured = vec![];
    if q.isa.arithmetic == isa::Int8Arithmetic::PairSaturating {
        let cands = saturation::candidates(q);
        if !cands.is_empty() {
            let t = Instant::now();
            let m = saturation::measure(q, &cands, data, n, hooks)?;
            q.report.inferences += n.clamp(1, saturation::SAMPLES);
            for (i, choice) in &m.choices {
                if per_layer && choice.seven_bit {
                    saturation::set_half_range(q, *i, true)?;
                }
            }
            means = m.mean_saturation;
            measured = m.choices.into_iter().map(|(_, c)| c).collect();
            q.report.timings.push(("saturation_fix".into(), t.elapsed().as_secs_f64()));
        }
    }
    let mut groups = vec![];
    let saturating_target = q.isa.arithmetic == isa::Int8Arithmetic::PairSaturating;
    if per_layer && q.isa.isa != "none" && !saturating_target {
        // Exact sums (VNNI): a 7-bit first layer costs one bit of one layer and nothing can
        // saturate. Judged by the output on every model tried (seven fixtures, an 800x608
        // detector), 8 bits never won beyond the noise, and the check took a quarter of the
        // detector's time: POT's and NNCF's first-layer fix, unmeasured.
        for i in 0..q.setup.weights.len() {
            if q.setup.weights[i].first && q.setup.weights[i].spec.symmetric {
                saturation::set_half_range(q, i, true)?;
            }
        }
    }
    if per_layer && saturating_target {
        let t = Instant::now();
        let firsts: Vec<usize> = (0..q.setup.weights.len()).filter(|&i| q.setup.weights[i].first).collect();
        let left_8bit: Vec<usize> = match mode {
            SaturationFix::Auto => {
                saturation::candidates(q).into_iter().filter(|&i| !q.setup.weights[i].first).collect()
            }
            _ => vec![],
        };
        groups = saturation::check_groups(
            q,
            &[
                ("first layers", firsts, saturation::Lean::SevenBit),
                (saturation::SATURATING_GROUP, left_8bit, saturation::Lean::Neither),
            ],
            fp_outputs,
            data,
            n,
            hooks,
        )?;
        for c in &groups {
            hooks.log(
                LogLevel::Info,
                &format!(
                    "{} ({}): output SQNR {:.2} dB with 8-bit, {:.2} dB with 7-bit weights; {}-bit kept",
                    c.group,
                    c.layers.len(),
                    c.output_sqnr_db_8bit,
                    c.output_sqnr_db_7bit,
                    if c.seven_bit { 7 } else { 8 }
                ),
            );
        }
        q.report.timings.push(("saturation_fix_output_check".into(), t.elapsed().as_secs_f64()));
    }
    // Bias correction corrects the mean saturation of layers left in 8 bits.
    means.retain(|i, _| !q.setup.weights[*i].half_range);
    let g = &q.fp_graph;
    let seven: Vec<String> =
        q.setup.weights.iter().filter(|w| w.half_range).map(|w| g.nodes[w.op].name.clone()).collect();
    let saturating: Vec<String> = if q.isa.arithmetic == isa::Int8Arithmetic::PairSaturating {
        saturation::candidates(q).into_iter().map(|i| g.nodes[q.setup.weights[i].op].name.clone()).collect()
    } else {
        vec![]
    };
    hooks.log(
        LogLevel::Info,
        &format!(
            "saturation fix {}: {} layer(s) with 7-bit weights, {} left with 8-bit weights that can saturate",
            mode_name,
            seven.len(),
            saturating.len()
        ),
    );
    q.report.int8_arithmetic = Some(crate::report::Int8ArithmeticReport {
        target_isa: q.isa.isa.clone(),
        reason: q.isa.reason.clone(),
        saturation_fix: mode_name,
        seven_bit_layers: seven,
        measured,
        output_checks: groups,
        saturating_layers: saturating,
    });
    Ok(means)
}

/// DefaultQuantization: statistics, FakeQuantize insertion, bias correction, weight compression.
pub fn default_quantization(
    model: &Model,
    config: &QuantConfig,
    data: &dyn Dataset,
    hooks: &mut Hooks,
) -> Result<Outcome> {
    let q = if config.data_free_ranges {
        data_free::prepare_data_free(model, config, data, hooks)?
    } else {
        prepare(model, config, data, hooks)?
    };
    let t = Instant::now();
    let graph = q.materialize(&HashSet::new())?;
    let mut report = q.report;
    report.timings.push(("write_graph".into(), t.elapsed().as_secs_f64()));
    measure_latency(&q.backend, q.latency, model.graph(), &graph, false, data, config, &mut report, hooks)?;
    Ok(Outcome { model: Model::from_graph(graph), report, accuracy_reached: true })
}

/// With the OpenVINO backend: FP32 and INT8 latency in the runtime on this CPU (what `probe`
/// measured already, the rest measured now), into the report, with a warning when INT8 is not
/// faster here. `int8` is the final model; `reverted`: it is not the model the probe timed.
#[allow(clippy::too_many_arguments)]
pub(crate) fn measure_latency(
    backend: &Backend,
    probe: LatencyProbe,
    fp: &Graph,
    int8: &Graph,
    reverted: bool,
    data: &dyn Dataset,
    config: &QuantConfig,
    report: &mut Report,
    hooks: &mut Hooks,
) -> Result<()> {
    if !backend.is_openvino() || data.is_empty() {
        return Ok(());
    }
    if fp.is_stateful() {
        // A stateful model (an LLM's KV cache) has no one latency: it is a prompt's prefill and
        // then a step per token, each depending on the lengths. One window's time would mislead.
        hooks.log(
            LogLevel::Info,
            "latency not measured: a stateful model's time depends on prompt and generation lengths",
        );
        return Ok(());
    }
    let t = Instant::now();
    let int8_known = probe.int8_ms.filter(|_| !reverted);
    let (fp32_ms, int8_ms) = match (probe.fp32_ms, int8_known) {
        (Some(f), Some(i)) => (f, i),
        (fp32_known, int8_known) => {
            // What is missing, compiled side by side (OpenVINO's compile is mostly serial).
            let sample = data.get(0).map_err(|e| stats::with_sample(e, "calibration", 0))?;
            let fp_exec = match (fp32_known, probe.fp32) {
                (Some(_), _) => None,
                (None, Some(e)) => Some(e),
                (None, None) => Some(backend.compile_for_latency(fp, config.threads)?),
            };
            let int8_exec =
                int8_known.is_none().then(|| backend.compile_for_latency(int8, config.threads)).transpose()?;
            let execs: Vec<&Executable> = fp_exec.iter().chain(&int8_exec).collect();
            crate::backend::warm_side_by_side(&execs, &sample)?;
            let time = |known: Option<f64>, exec: &Option<Executable>| match (known, exec) {
                (Some(v), _) => Ok(Some(v)),
                (None, Some(e)) => e.latency_ms(&sample),
                (None, None) => Ok(None),
            };
            let (Some(f), Some(i)) = (time(fp32_known, &fp_exec)?, time(int8_known, &int8_exec)?) else {
                return Ok(());
            };
            (f, i)
        }
    };
    let speedup = fp32_ms / int8_ms.max(1e-9);
    hooks.log(
        LogLevel::Info,
        &format!("latency in OpenVINO here: FP32 {fp32_ms:.3} ms, INT8 {int8_ms:.3} ms ({speedup:.2}x)"),
    );
    if speedup <= 1.0 {
        let w = format!(
            "INT8 is not faster than FP32 on this CPU ({int8_ms:.3} ms against {fp32_ms:.3} ms per inference in \
             OpenVINO {}); the INT8 model saves memory here, not time",
            backend.describe().trim_start_matches("openvino ")
        );
        hooks.log(LogLevel::Warning, &w);
        report.warnings.push(w);
    }
    report.latency = Some(crate::report::LatencyReport { fp32_ms, int8_ms, speedup, threads: config.threads });
    report.timings.push(("latency".into(), t.elapsed().as_secs_f64()));
    Ok(())
}

/// AccuracyAwareQuantization.
pub fn accuracy_aware(
    model: &Model,
    config: &QuantConfig,
    calib: &dyn Dataset,
    eval: &dyn Dataset,
    metric: &mut dyn Metric,
    hooks: &mut Hooks,
) -> Result<Outcome> {
    accuracy_aware::run(model, config, calib, eval, metric, hooks)
}

/// Where a bias site's mean output is measured: before the bias Add (built-in engine), or after
/// it (OpenVINO fuses the Add into its layer and never hands over the value before it).
#[derive(Clone, Copy)]
struct SiteOutlets {
    after_bias: bool,
}

impl SiteOutlets {
    fn of(&self, s: &BiasSite) -> Outlet {
        Outlet::new(if self.after_bias { s.add } else { s.op }, 0)
    }
}

/// Full bias correction (`use_fast_bias: false`), as NNCF's BiasCorrection does it: the model
/// with quantized weights and FP32 activations, layer after layer, each layer's mean output
/// per channel measured with the layers before it already corrected
/// ([`bias_correction::full_shifts`]), on [`full_correction_samples`] calibration samples.
/// What it corrects is the weights' rounding error and how it travels; the activation
/// quantizers stay out. (With them in, every mean matched FP32's to 1e-4 in OpenVINO and the
/// models got worse: their clipping shrinks large outputs, a gain error whose mean a bias can
/// only move onto the samples it does not touch — mtcnn_onet's two-class head 37.0 → 32.3 dB,
/// mobilenet_v2 17.3 → 11.8 dB.) The mean that a CPU without VNNI's saturation takes off
/// is left alone for the same reason: it is the clipping of large sums (correcting it cost
/// ppocr_cls 1.3 dB without VNNI).
fn full_bias_correction(
    q: &mut Quantized,
    sites: &[(usize, BiasSite)],
    col: &stats::Collected,
    outlets: SiteOutlets,
    data: &dyn Dataset,
    n: usize,
    hooks: &mut Hooks,
) -> Result<()> {
    let fp = &q.fp_graph;
    let qg = q.weights_applied();
    // Layer after layer needs the built-in engine (OpenVINO runs a compiled model whole):
    // OpenVINO is only the fallback for models with ops the engine lacks.
    let plan = match Plan::new(&qg) {
        Ok(p) => p,
        Err(e) if q.backend.is_openvino() => {
            hooks.log(LogLevel::Info, &format!("bias correction on the whole model in OpenVINO: {e}"));
            return full_bias_correction_compiled(q, sites, col, outlets, qg, data, n, hooks);
        }
        Err(e) => return Err(e),
    };
    // The emulation renumbers nodes and may put ops between a layer and its bias: each site is
    // found again by its Add's name, and measured at the Add's input.
    let mut position = vec![0; qg.nodes.len()];
    for (k, &id) in qg.topo_order()?.iter().enumerate() {
        position[id] = k;
    }
    let mut found: Vec<(usize, &BiasSite, Outlet)> = vec![];
    for (_, s) in sites {
        let Some(add) = qg.find_node(&fp.nodes[s.add].name) else { continue };
        let Some(&pre_bias) = qg.nodes[add].inputs.get(1 - s.bias_input) else { continue };
        found.push((position[pre_bias.node], s, pre_bias));
    }
    found.sort_by_key(|f| f.0);
    let mut full: Vec<bias_correction::FullSite> = found
        .iter()
        .map(|(_, s, o)| bias_correction::FullSite { pre_bias: *o, axis: s.out_axis, fp_means: vec![] })
        .collect();
    let schedule = bias_correction::Schedule::new(&plan, &full)?;
    let nb = schedule.samples(&qg, full_correction_samples(n));
    let site_list: Vec<&BiasSite> = found.iter().map(|(_, s, _)| *s).collect();
    let fp_means = fp_site_means(q, &site_list, col, outlets, data, nb, hooks)?;
    for (f, (_, s, _)) in full.iter_mut().zip(&found) {
        let mut means = fp_means.get(&(outlets.of(s), s.out_axis)).cloned().unwrap_or_default();
        // Measured after the bias: the value before it is that minus the (per-channel) bias.
        if outlets.after_bias && means.len() == s.bias.len() {
            means.iter_mut().zip(s.bias.iter()).for_each(|(m, b)| *m -= *b as f64);
        }
        f.fp_means = means;
    }
    let samples: Vec<crate::data::Sample> = (0..nb).map(|i| data.get(i)).collect::<Result<_>>()?;
    let biases: Vec<&ArrayD<f32>> = found.iter().map(|(_, s, _)| &s.bias).collect();
    let total = full.len();
    let shifts = bias_correction::full_shifts(&plan, &schedule, &full, &biases, &samples, FULL_THRESHOLD, &mut |k| {
        hooks.progress(Stage::BiasCorrection, k, total)
    })?;
    q.report.inferences += nb;
    for ((_, s, _), shift) in found.iter().zip(shifts) {
        if let Some(shift) = shift {
            q.bias_shifts.push(((*s).clone(), shift));
        }
    }
    Ok(())
}

/// The FP32 mean output per channel of `sites` over the first `nb` samples: the statistics
/// pass's (`col`) where it measured them on exactly those samples, else measured now, so that
/// FP32 and INT8 means always come from the same samples.
fn fp_site_means(
    q: &mut Quantized,
    sites: &[&BiasSite],
    col: &stats::Collected,
    outlets: SiteOutlets,
    data: &dyn Dataset,
    nb: usize,
    hooks: &mut Hooks,
) -> Result<HashMap<(Outlet, isize), Vec<f64>>> {
    let keys: Vec<(Outlet, isize)> = sites.iter().map(|s| (outlets.of(s), s.out_axis)).collect();
    if col.samples == nb && keys.iter().all(|k| col.channel_means.contains_key(k)) {
        return Ok(keys.into_iter().map(|k| (k, col.channel_means[&k].clone())).collect());
    }
    let mut reqs: HashMap<Outlet, Vec<Request>> = HashMap::new();
    for &(o, axis) in &keys {
        reqs.entry(o).or_default().push(Request::ChannelMean { axis });
    }
    let fp = &q.fp_graph;
    let fp_col =
        stats::collect_on(&q.backend, fp, None, q.config.threads, data, nb, &reqs, hooks, Stage::BiasCorrection)?;
    q.report.inferences += nb;
    Ok(fp_col.channel_means)
}

/// Calibration samples full bias correction measures on: NNCF's fifth of the statistics
/// subset, but never fewer than 60 (or all there are). Measured (CPU int8 arithmetic vnni and
/// avx2, ovcheck): 60 of 300 samples is within the noise of all 300, at a fifth of the time.
pub(super) fn full_correction_samples(n: usize) -> usize {
    (n / 5).max(n.min(60))
}

/// NNCF's BiasCorrection threshold: a shift may change a bias by up to this many times its value.
const FULL_THRESHOLD: f64 = 1000.0;

/// Full bias correction in OpenVINO, for models the built-in engine cannot run: every layer
/// measured at once in the compiled model (quantized weights, FP32 activations), so an
/// upstream layer's error is corrected again by the layers it reaches (less exact than layer
/// after layer).
#[allow(clippy::too_many_arguments)]
fn full_bias_correction_compiled(
    q: &mut Quantized,
    sites: &[(usize, BiasSite)],
    col: &stats::Collected,
    outlets: SiteOutlets,
    qg: Graph,
    data: &dyn Dataset,
    n: usize,
    hooks: &mut Hooks,
) -> Result<()> {
    let mut qreqs: HashMap<Outlet, Vec<Request>> = HashMap::new();
    for (_, s) in sites {
        qreqs.entry(outlets.of(s)).or_default().push(Request::ChannelMean { axis: s.out_axis });
    }
    let qcol =
        stats::collect_on(&q.backend, &qg, None, q.config.threads, data, n, &qreqs, hooks, Stage::BiasCorrection)?;
    q.report.inferences += n;
    let site_list: Vec<&BiasSite> = sites.iter().map(|(_, s)| s).collect();
    let fp_means = fp_site_means(q, &site_list, col, outlets, data, n, hooks)?;
    for (_, site) in sites {
        let key = (outlets.of(site), site.out_axis);
        if let (Some(f), Some(m)) = (fp_means.get(&key), qcol.channel_means.get(&key)) {
            let shift: Vec<f64> = f.iter().zip(m).map(|(a, b)| a - b).collect();
            if let Some(s) = bias_correction::accept(&site.bias, &shift, FULL_THRESHOLD) {
                q.bias_shifts.push((site.clone(), s));
            }
        }
    }
    Ok(())
}
