//! DefaultQuantization up to (not including) writing the graph, as a list of named steps:
//! SmoothQuant planned → quantizers placed → one statistics pass → activation ranges → int8
//! weights → the saturation fix for the target CPU → bias correction → the report.

use super::bias_correction::{self, BiasSite};
use super::bias_correction::{FastBiasMeasures, SiteInputs, SiteOutlets};
use super::config::{ModelType, QuantConfig, SaturationFix};
use super::hw_config::HwConfig;
use super::placement::{self, Setup};
use super::quantized::{LatencyProbe, Quantized};
use super::stats::{self, Request};
use super::{detect, isa, judge, minmax, saturation, smooth_quant};
use crate::backend::{Backend, Executable};
use crate::data::Dataset;
use crate::engine::Plan;
use crate::error::{Error, Result};
use crate::graph::{Graph, NodeId, Outlet};
use crate::hooks::{Hooks, LogLevel, Stage};
use crate::model::Model;
use crate::report::{FqInfo, Report};
use crate::tensor::Tensor;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

/// Decides a DefaultQuantization of `model` on the calibration `data`: where the quantizers go,
/// their ranges, the int8 weights and the bias corrections. Nothing is written yet.
pub fn prepare(model: &Model, config: &QuantConfig, data: &dyn Dataset, hooks: &mut Hooks) -> Result<Quantized> {
    prepare_from(model, config, data, None, hooks)
}

/// [`prepare`], reading the statistics of `prior` (a quantization of the same model on the same
/// `data`) when they answer everything this one asks for; the model runs only when they do not.
/// Nothing is compiled for the latency figure then: the caller compares, it does not deploy.
pub(crate) fn prepare_from(
    model: &Model,
    config: &QuantConfig,
    data: &dyn Dataset,
    prior: Option<&Quantized>,
    hooks: &mut Hooks,
) -> Result<Quantized> {
    config.validate()?;
    // shuffle_data: every pass below takes the first samples of this view, a random subset.
    let shuffled;
    let data: &dyn Dataset = if config.shuffle_data {
        shuffled = crate::data::Shuffled::new(data, config.seed);
        hooks.log(LogLevel::Info, &format!("shuffle_data: a random subset of the samples (seed {})", config.seed));
        &shuffled
    } else {
        data
    };
    let t_total = Instant::now();
    let (config, detected) = with_model_type(config, model.graph(), hooks);
    let config = &config;
    let mut report = new_report(config, detected);
    let n = subset_size(config, data, &mut report)?;
    for note in config.scheme_notes() {
        hooks.log(LogLevel::Warning, &note);
        report.warnings.push(note);
    }
    let t = Instant::now();
    let fp_graph = unquantized(model)?;
    let fp_plan = Plan::new(&fp_graph)?;
    let mut smoothing = Smoothing::plan(&fp_graph, &fp_plan, config)?;
    let mut setup = place_quantizers(&fp_graph, &fp_plan, &smoothing.graph, config, hooks, &mut report)?;
    let sites = bias_sites(&smoothing.graph, &fp_plan, &setup, config);
    report.timings.push(("placement".into(), t.elapsed().as_secs_f64()));

    let backend = Backend::open(config.backend, &config.openvino)?;
    report.backend = backend.describe();
    hooks.log(LogLevel::Info, &format!("inference backend: {}", report.backend));
    // OpenVINO fuses a bias Add into its convolution or MatMul and would have to split them to
    // hand over the output before the bias: there, the mean is measured after the bias and the
    // (constant) bias subtracted.
    let outlets = SiteOutlets { after_bias: !backend.hands_over_pre_bias_values() };

    let t = Instant::now();
    let output_outlets: Vec<Outlet> = fp_graph.results().iter().map(|&r| fp_graph.nodes[r].inputs[0]).collect();
    let requests = statistics_requests(&smoothing, &setup, &sites, outlets, &output_outlets, config, n);
    let reusable = prior.map(|q| &q.statistics).filter(|s| s.covers(n, &requests));
    let (statistics, fp32_deployed) = match reusable {
        Some(s) => {
            hooks.log(
                LogLevel::Info,
                "statistics: those of the previous quantization (the same samples, no more asked)",
            );
            (Arc::clone(s), None)
        }
        None => {
            let pass = stats::Pass { data, n, requests: &requests, stage: Stage::Statistics };
            let (col, fp32_deployed) =
                statistics_beside_fp32_compile(&backend, model, &fp_graph, fp_plan, config, pass, hooks)?;
            let fp32_deployed = fp32_deployed.unwrap_or_else(|msg| {
                hooks.log(LogLevel::Warning, &msg);
                report.warnings.push(msg);
                None
            });
            report.inferences += n;
            (Arc::new(stats::Statistics::new(n, requests, col)), fp32_deployed)
        }
    };
    let col = &*statistics.collected;
    report.timings.push(("statistics".into(), t.elapsed().as_secs_f64()));

    let t = Instant::now();
    smoothing.apply(&fp_graph, col, config, hooks)?;
    let graph = &smoothing.graph;
    let plan = Plan::new(graph)?;
    let mut act_ranges = activation_ranges(graph, &setup, &smoothing, col, config)?;
    leave_overflowing_unquantized(graph, &mut setup, &mut act_ranges, hooks, &mut report);
    report.timings.push(("ranges".into(), t.elapsed().as_secs_f64()));
    let t = Instant::now();
    let weights = quantize_weights(graph, &plan, &setup, config)?;
    let fbc_inputs = fast_bias_inputs(graph, &sites, &smoothing, col);
    report.timings.push(("weights".into(), t.elapsed().as_secs_f64()));

    let assumed = isa::resolve_here(config.target_isa, config.target_device);
    hooks.log(LogLevel::Info, &format!("int8 arithmetic of the target CPU: {} ({})", assumed.isa, assumed.reason));
    let (verdicts, why) = judge::verdicts(&backend, &assumed, config);
    if let Some(why) = why {
        hooks.log(LogLevel::Warning, &why);
        report.warnings.push(why);
    }
    report.judge = judge::describe(&verdicts, &assumed);
    let mut quantized = Quantized {
        backend,
        verdicts,
        fp_graph: smoothing.graph,
        setup,
        act_ranges,
        weights,
        bias_shifts: vec![],
        config: config.clone(),
        isa: assumed,
        report,
        latency: LatencyProbe { fp32: fp32_deployed, ..Default::default() },
        statistics: Arc::clone(&statistics),
    };
    let fp_outputs = kept_outputs(col, &output_outlets);
    let saturation_means = saturation::fix(&mut quantized, data, n, fp_outputs.as_deref(), hooks)?;
    let fast = FastBiasMeasures { inputs: &fbc_inputs, col, outlets, saturation: &saturation_means };
    bias_correction::correct(&mut quantized, &sites, &fast, col, data, n, hooks)?;
    record_quantizers(&mut quantized);
    let t = Instant::now();
    match super::quantizer_facts::layer_facts(&quantized, data, n) {
        Ok(facts) => quantized.report.layers = facts,
        Err(why) => hooks.log(LogLevel::Info, &why),
    }
    quantized.report.timings.push(("layer_facts".into(), t.elapsed().as_secs_f64()));
    quantized.report.timings.push(("total".into(), t_total.elapsed().as_secs_f64()));
    Ok(quantized)
}

/// The one statistics pass; with OpenVINO, the FP32 model compiled as deployed (for the
/// report's latency figure) beside the statistics graph: OpenVINO's compile is mostly serial,
/// and a core would idle. A failed FP32 compile is a warning (only the figure needs it).
fn statistics_beside_fp32_compile(
    backend: &Backend,
    model: &Model,
    fp_graph: &Graph,
    fp_plan: Plan,
    config: &QuantConfig,
    pass: stats::Pass,
    hooks: &mut Hooks,
) -> Result<(stats::Collected, std::result::Result<Option<Executable>, String>)> {
    let (col, deployed) = std::thread::scope(|s| {
        let deployed = backend
            .times_as_deployed()
            .then(|| s.spawn(|| fp32_as_deployed(backend, model, pass.data, config.threads)));
        let col = stats::collect_on(backend, fp_graph, Some(fp_plan), config.threads, pass, hooks);
        let deployed = deployed.map(|h| h.join().unwrap_or_else(|_| Err(Error::internal("a compile thread panicked"))));
        (col, deployed)
    });
    let deployed = deployed
        .transpose()
        .map_err(|e| format!("the FP32 model did not compile in OpenVINO for the latency figure: {e}"));
    Ok((col?, deployed))
}

/// `model` compiled by `backend` as an application deploys it, ready for the first sample.
fn fp32_as_deployed(backend: &Backend, model: &Model, data: &dyn Dataset, threads: usize) -> Result<Executable> {
    let exec = backend.compile_for_latency(model.graph(), threads)?;
    let sample = data.get(0).map_err(|e| e.with_sample("calibration", 0))?;
    crate::backend::warm_side_by_side(&[&exec], &sample)?;
    Ok(exec)
}

/// The configuration with the model type filled in when the user left it out and the graph is
/// a transformer; the log and report say why.
fn with_model_type(config: &QuantConfig, graph: &Graph, hooks: &mut Hooks) -> (QuantConfig, Option<String>) {
    let mut config = config.clone();
    if config.model_type.is_some() {
        return (config, None);
    }
    let why = detect::transformer(graph);
    if let Some(why) = &why {
        config.model_type = Some(ModelType::Transformer);
        let msg = format!("model type: transformer, detected ({why}); `model_type: general` turns this off");
        hooks.log(LogLevel::Info, &msg);
    }
    (config, why)
}

fn new_report(config: &QuantConfig, model_type_detected: Option<String>) -> Report {
    Report {
        algorithm: format!("{:?}", config.algorithm),
        preset: format!("{:?}", config.effective_preset()).to_lowercase(),
        target_device: format!("{:?}", config.target_device),
        model_type: config.model_type.map(|m| format!("{m:?}").to_lowercase()),
        model_type_detected,
        ..Default::default()
    }
}

/// How many calibration samples the statistics use; a smaller dataset than asked is a warning.
fn subset_size(config: &QuantConfig, data: &dyn Dataset, report: &mut Report) -> Result<usize> {
    let len = data.len();
    if len == 0 {
        return Err(Error::invalid("the calibration dataset is empty"));
    }
    let n = config.stat_subset_size.min(len);
    if n < config.stat_subset_size {
        report.warnings.push(format!("dataset has {len} samples; using {n} instead of {}", config.stat_subset_size));
    }
    report.samples_used = n;
    Ok(n)
}

/// The model's graph, refused when it is already quantized.
fn unquantized(model: &Model) -> Result<Graph> {
    let g = model.graph();
    if let Some(fq) = g.nodes.iter().find(|n| n.op_type == "FakeQuantize") {
        return Err(Error::invalid(format!("the model is already quantized ({} found)", fq.describe())));
    }
    Ok(g.clone())
}

/// SmoothQuant (transformers): which MatMuls are smoothed is decided before statistics, the
/// scales after. Smoothing does not change any value downstream of the MatMuls, and the smoothed
/// activation x/s is derived from per-channel statistics of x, so one statistics pass over the
/// FP32 model serves both SmoothQuant and the quantizer ranges.
struct Smoothing {
    candidates: Option<smooth_quant::Candidates>,
    /// The graph quantizers are placed in: the FP32 graph with the smoothing Multiplies (scales
    /// of one until [`Smoothing::apply`]).
    graph: Graph,
    /// Smoothing Multiply → (the activation it smooths, its scale).
    nodes: BTreeMap<NodeId, (Outlet, Vec<f32>)>,
}

impl Smoothing {
    fn plan(fp_graph: &Graph, fp_plan: &Plan, config: &QuantConfig) -> Result<Smoothing> {
        let candidates = if config.model_type == Some(ModelType::Transformer) && config.smooth_quant_alpha >= 0.0 {
            let is_const = fp_graph.constant_outlets()?;
            let regexes: Vec<regex::Regex> =
                config.ignored.patterns.iter().filter_map(|p| regex::Regex::new(&format!("^(?:{p})$")).ok()).collect();
            let skip = |id: NodeId| placement::ignored_reason(fp_graph, id, &config.ignored, &regexes).is_some();
            let wv = |o: Outlet| fp_plan.constant_value(o).cloned();
            let c = smooth_quant::candidates(fp_graph, &is_const, &skip, &wv);
            (!c.groups.is_empty()).then_some(c)
        } else {
            None
        };
        let mut graph = fp_graph.clone();
        let mut nodes = BTreeMap::new();
        if let Some(c) = &candidates {
            // Placeholder scales: node ids depend only on the candidates.
            let ones: Vec<Vec<f32>> = c
                .groups
                .values()
                .map(|v| vec![1.0; v[0].1.shape()[smooth_quant::input_channel_axis(fp_graph, v[0].0, 2)]])
                .collect();
            nodes = smooth_quant::apply_scales(&mut graph, c, &ones)?;
        }
        Ok(Smoothing { candidates, graph, nodes })
    }

    /// Where an outlet of the smoothed graph is measured in the FP32 graph.
    fn measured(&self, o: Outlet) -> Outlet {
        self.nodes.get(&o.node).map_or(o, |(src, _)| *src)
    }

    /// The real scales, from the statistics: the same nodes as the placeholder pass.
    fn apply(
        &mut self,
        fp_graph: &Graph,
        col: &stats::Collected,
        config: &QuantConfig,
        hooks: &mut Hooks,
    ) -> Result<()> {
        let Some(c) = &self.candidates else { return Ok(()) };
        let scales = smooth_quant::compute_scales(fp_graph, c, &col.channel_abs_max, config.smooth_quant_alpha as f32);
        self.graph = fp_graph.clone();
        self.nodes = smooth_quant::apply_scales(&mut self.graph, c, &scales)?;
        hooks.log(LogLevel::Info, &format!("SmoothQuant: {} activation(s) smoothed", self.nodes.len()));
        Ok(())
    }
}

/// Quantizers placed by the hardware config; ops whose weights cannot be int8 are planned again
/// as ignored, so their activations stay in floating point too.
fn place_quantizers(
    fp_graph: &Graph,
    fp_plan: &Plan,
    graph: &Graph,
    config: &QuantConfig,
    hooks: &mut Hooks,
    report: &mut Report,
) -> Result<Setup> {
    let hw = HwConfig::new(config.target_device, config.model_type);
    let mut setup = placement::plan_quantizers(graph, &hw, config)?;
    let unfit = weights_unfit_for_int8(fp_graph, fp_plan, graph, &setup);
    if !unfit.is_empty() {
        let mut c = config.clone();
        c.ignored.names.extend(unfit.iter().map(|(name, _)| name.clone()));
        setup = placement::plan_quantizers(graph, &hw, &c)?;
        for info in setup.ignored.iter_mut() {
            if let Some((_, why)) = unfit.iter().find(|(name, _)| *name == info.name) {
                info.reason = why.clone();
                let msg = format!("{} {} left in floating point: {why}", info.op_type, info.name);
                hooks.log(LogLevel::Warning, &msg);
                report.warnings.push(msg);
            }
        }
    }
    hooks.log(
        LogLevel::Info,
        &format!(
            "{} activation quantizer(s), {} weight quantizer(s) on {} op(s)",
            setup.activations.len(),
            setup.weights.len(),
            setup.quantized_ops.len()
        ),
    );
    Ok(setup)
}

/// The largest weight magnitude OpenVINO can dequantize: beyond FP16's range its CPU plugin
/// cannot build the int8 layer (weights of 1e36, say, from bit rot, give "DequantizationMultiply
/// contains empty child edge"), and no trained model has such weights.
const MAX_QUANTIZABLE_WEIGHT: f32 = 65504.0;

/// Whether a weight holds NaN, Inf, and its largest finite |value|, in one parallel pass over
/// the values (no copy when they are contiguous f32).
fn value_scan(v: &Tensor) -> (bool, bool, f32) {
    use rayon::prelude::*;
    let scan = |s: &[f32]| {
        s.iter().fold((false, false, 0.0f32), |(n, i, m), &x| {
            (n || x.is_nan(), i || x.is_infinite(), if x.is_finite() { m.max(x.abs()) } else { m })
        })
    };
    let join = |a: (bool, bool, f32), b: (bool, bool, f32)| (a.0 || b.0, a.1 || b.1, a.2.max(b.2));
    match v {
        Tensor::F32(a) => match a.as_slice() {
            Some(s) => s.par_chunks(1 << 16).map(scan).reduce(|| (false, false, 0.0), join),
            None => scan(&v.to_f32_vec()),
        },
        other => scan(&other.to_f32_vec()),
    }
}

/// Weighted ops whose weights cannot be quantized (NaN, Inf, or beyond
/// [`MAX_QUANTIZABLE_WEIGHT`]), by name, with the reason.
fn weights_unfit_for_int8(fp_graph: &Graph, fp_plan: &Plan, graph: &Graph, setup: &Setup) -> Vec<(String, String)> {
    let mut unfit = vec![];
    for w in &setup.weights {
        let name = &graph.nodes[w.op].name;
        // Weights as in the FP32 graph (SmoothQuant rescales them, but not out of range).
        let Some(op) = fp_graph.nodes.iter().position(|n| &n.name == name) else { continue };
        let Some(&o) = fp_graph.nodes[op].inputs.get(w.input) else { continue };
        let Some(v) = constant_value(fp_plan, o) else { continue };
        let (nan, inf, max) = value_scan(&v);
        let why = if nan {
            Some("its weights hold NaN".to_string())
        } else if inf {
            Some("its weights hold Inf".to_string())
        } else {
            (max > MAX_QUANTIZABLE_WEIGHT).then(|| {
                format!(
                    "its weights reach {max:e}, beyond what an int8 dequantization scale can hold in OpenVINO \
                     (|w| <= {MAX_QUANTIZABLE_WEIGHT}); corrupted weights?"
                )
            })
        };
        if let Some(why) = why {
            unfit.push((name.clone(), why));
        }
    }
    unfit
}

/// The bias of each quantized weighted op that bias correction corrects, by weight index (bias
/// constants are the same in the FP32 and smoothed graphs).
fn bias_sites(graph: &Graph, fp_plan: &Plan, setup: &Setup, config: &QuantConfig) -> Vec<(usize, BiasSite)> {
    if !config.bias_correction {
        return vec![];
    }
    let consumers = graph.consumers();
    let cv = |o: Outlet| constant_value(fp_plan, o);
    let mut sites = vec![];
    for (i, w) in setup.weights.iter().enumerate() {
        if !bias_correction::corrects(graph, w.op, config.use_fast_bias) {
            continue;
        }
        if let Some(mut s) = bias_correction::find_bias(graph, &consumers, w.op, &cv) {
            s.act_input = 1 - w.input.min(1);
            sites.push((i, s));
        }
    }
    sites
}

/// What the one statistics pass measures, by FP32 outlet: activation ranges, SmoothQuant's
/// channel maxima, bias correction's channel means, and the FP32 outputs the saturation fix's
/// output check compares with.
fn statistics_requests(
    smoothing: &Smoothing,
    setup: &Setup,
    sites: &[(usize, BiasSite)],
    outlets: SiteOutlets,
    output_outlets: &[Outlet],
    config: &QuantConfig,
    n: usize,
) -> HashMap<Outlet, Vec<Request>> {
    let quantiles = minmax::needed_quantiles(config.range_estimator.activations.as_ref());
    let mut reqs: HashMap<Outlet, Vec<Request>> = HashMap::new();
    for p in &setup.activations {
        let r = if smoothing.nodes.contains_key(&p.source.node) {
            Request::SampleChannelMinMax
        } else if p.spec.per_channel {
            Request::ChannelMinMax { axis: 1 }
        } else {
            Request::Scalars { quantiles: quantiles.clone() }
        };
        reqs.entry(smoothing.measured(p.source)).or_default().push(r);
    }
    if let Some(c) = &smoothing.candidates {
        for src in c.groups.keys() {
            reqs.entry(*src).or_default().push(Request::ChannelAbsMax);
        }
    }
    for (wi, s) in sites {
        if config.use_fast_bias {
            let inp = smoothing.measured(smoothing.graph.nodes[s.op].inputs[s.act_input]);
            reqs.entry(inp).or_default().push(Request::ChannelMean { axis: s.in_axis });
            if bias_correction::output_mean_is_linear(&smoothing.graph, s, setup.weights[*wi].input) {
                // Fast bias correction computes it from the input means.
                continue;
            }
        } else if bias_correction::full_correction_samples(n) < n {
            // Full correction measures them itself, on the fewer samples it runs.
            continue;
        }
        reqs.entry(outlets.of(s)).or_default().push(Request::ChannelMean { axis: s.out_axis });
    }
    let checks_output = matches!(config.saturation_fix, SaturationFix::Auto | SaturationFix::PerLayer)
        && isa::resolve_here(config.target_isa, config.target_device).arithmetic == isa::Int8Arithmetic::PairSaturating;
    if checks_output {
        for &o in output_outlets {
            reqs.entry(o).or_default().push(Request::Keep { samples: n.min(saturation::SAMPLES) });
        }
    }
    for v in reqs.values_mut() {
        v.dedup();
    }
    reqs
}

/// The limits of every activation quantizer; unified groups share min-of-mins and max-of-maxes.
fn activation_ranges(
    graph: &Graph,
    setup: &Setup,
    smoothing: &Smoothing,
    col: &stats::Collected,
    config: &QuantConfig,
) -> Result<Vec<minmax::ActRange>> {
    let act_est = config.range_estimator.activations.as_ref();
    let missing =
        |p: &placement::ActPoint| Error::internal(format!("no statistics for '{}'", graph.nodes[p.source.node].name));
    let mut raw: Vec<(f64, f64)> = vec![];
    for p in &setup.activations {
        if p.spec.per_channel {
            raw.push((0.0, 0.0));
            continue;
        }
        if let Some((src, scale)) = smoothing.nodes.get(&p.source.node) {
            // Per-sample range of x/s from per-sample per-channel ranges of x (s > 0).
            let per = col.sample_channel_min_max.get(src).ok_or_else(|| missing(p))?;
            let scalars: Vec<stats::SampleScalars> = per
                .iter()
                .map(|(mn, mx)| {
                    let lo = mn.iter().zip(scale).map(|(v, s)| (v / s) as f64).fold(f64::INFINITY, f64::min);
                    let hi = mx.iter().zip(scale).map(|(v, s)| (v / s) as f64).fold(f64::NEG_INFINITY, f64::max);
                    stats::SampleScalars { min: lo, max: hi, abs_max: lo.abs().max(hi.abs()), quantiles: vec![] }
                })
                .collect();
            raw.push(minmax::activation_range(&scalars, p.spec.symmetric, None)?);
            continue;
        }
        let s = col.scalars.get(&p.source).ok_or_else(|| missing(p))?;
        raw.push(minmax::activation_range(s, p.spec.symmetric, act_est)?);
    }
    let mut unified: HashMap<usize, (f64, f64)> = HashMap::new();
    for (p, r) in setup.activations.iter().zip(&raw) {
        if let Some(g) = p.unified {
            let e = unified.entry(g).or_insert(*r);
            e.0 = e.0.min(r.0);
            e.1 = e.1.max(r.1);
        }
    }
    let mut act_ranges = vec![];
    for (p, r) in setup.activations.iter().zip(&raw) {
        if p.spec.per_channel {
            let (mn, mx) = col.channel_min_max.get(&(p.source, 1)).ok_or_else(|| missing(p))?;
            let rank = graph.outlet_info(p.source).shape.rank().unwrap_or(4);
            let mut r = minmax::activation_fq_per_channel(mn, mx, &p.spec, rank, 1);
            for (lo, hi) in r.low.iter_mut().zip(r.high.iter_mut()) {
                (*lo, *hi) = minmax::clip_limits(*lo, *hi, act_est);
            }
            act_ranges.push(r);
            continue;
        }
        let (mn, mx) = p.unified.and_then(|g| unified.get(&g).copied()).unwrap_or(*r);
        let (lo, hi, levels) = minmax::activation_fq(mn, mx, &p.spec);
        let (lo, hi) = minmax::clip_limits(lo, hi, act_est);
        act_ranges.push(minmax::ActRange { low: vec![lo], high: vec![hi], levels, shape: vec![] });
    }
    Ok(act_ranges)
}

/// A range that overflows f32 (masks of f32::MIN, -inf in the data): that tensor stays in
/// floating point rather than the run failing.
fn leave_overflowing_unquantized(
    graph: &Graph,
    setup: &mut Setup,
    act_ranges: &mut Vec<minmax::ActRange>,
    hooks: &mut Hooks,
    report: &mut Report,
) {
    let overflowing: Vec<usize> = (0..act_ranges.len())
        .filter(|&i| act_ranges[i].low.iter().chain(&act_ranges[i].high).any(|v| !v.is_finite()))
        .collect();
    for &i in overflowing.iter().rev() {
        let p = setup.activations.remove(i);
        act_ranges.remove(i);
        let msg = format!(
            "the activation range of '{}' overflows f32 (values near f32::MAX or infinite in the model or data): \
             left unquantized",
            graph.nodes[p.source.node].name
        );
        hooks.log(LogLevel::Warning, &msg);
        report.warnings.push(msg);
    }
}

/// Every weight quantizer's FP32 weight and its int8 quantization.
fn quantize_weights(
    graph: &Graph,
    plan: &Plan,
    setup: &Setup,
    config: &QuantConfig,
) -> Result<Vec<(minmax::SharedWeight, minmax::QuantizedWeight)>> {
    let mut weights = vec![];
    for w in &setup.weights {
        let o = graph.nodes[w.op].inputs[w.input];
        let v = plan
            .constant_value(o)
            .ok_or_else(|| Error::internal(format!("weights of {} are not constant", graph.nodes[w.op].describe())))?;
        let fp = minmax::SharedWeight::new(v.clone());
        let q = minmax::quantize_weight(&fp, &w.scheme(config))
            .map_err(|e| Error::invalid(format!("{}: {e}", graph.nodes[w.op].describe())))?;
        weights.push((fp, q));
    }
    Ok(weights)
}

fn fast_bias_inputs(
    graph: &Graph,
    sites: &[(usize, BiasSite)],
    smoothing: &Smoothing,
    col: &stats::Collected,
) -> SiteInputs {
    sites
        .iter()
        .map(|(_, site)| {
            let inp = graph.nodes[site.op].inputs[site.act_input];
            let m = smoothing.measured(inp);
            let means = col.channel_means.get(&(m, site.in_axis))?.clone();
            let shape = col.shapes.get(&m)?.clone();
            let means = match smoothing.nodes.get(&inp.node) {
                Some((_, scale)) if scale.len() == means.len() => {
                    means.iter().zip(scale).map(|(v, s)| v / *s as f64).collect()
                }
                _ => means,
            };
            Some((means, shape))
        })
        .collect()
}

/// The FP32 outputs the statistics pass kept for the saturation fix's output check, per sample.
fn kept_outputs(col: &stats::Collected, output_outlets: &[Outlet]) -> Option<Vec<Vec<Tensor>>> {
    let per_output: Option<Vec<&Vec<Tensor>>> = output_outlets.iter().map(|o| col.kept.get(o)).collect();
    per_output.map(|cols| {
        let m = cols.iter().map(|c| c.len()).min().unwrap_or(0);
        (0..m).map(|i| cols.iter().map(|c| c[i].clone()).collect()).collect()
    })
}

/// Every quantizer and quantized layer into the report.
fn record_quantizers(q: &mut Quantized) {
    let g = &q.fp_graph;
    for (p, r) in q.setup.activations.iter().zip(&q.act_ranges) {
        let lo = r.low.iter().cloned().fold(f32::INFINITY, f32::min);
        let hi = r.high.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let targets: Vec<String> = p.targets.iter().map(|&t| g.nodes[t].name.clone()).collect();
        q.report.fake_quantize.push(FqInfo {
            name: format!("{}:{}", g.nodes[p.source.node].name, p.source.port),
            target: targets.join(", "),
            kind: if p.spec.symmetric { "activation symmetric".into() } else { "activation asymmetric".into() },
            levels: r.levels,
            per_channel: p.spec.per_channel,
            input_low: lo,
            input_high: hi,
        });
    }
    for (w, (_, qw)) in q.setup.weights.iter().zip(&q.weights) {
        q.report.fake_quantize.push(FqInfo {
            name: format!("{}:weights", g.nodes[w.op].name),
            target: g.nodes[w.op].name.clone(),
            kind: format!(
                "weights int{}{}{}",
                w.spec.bits,
                if w.spec.symmetric { "" } else { " (asymmetric)" },
                // 7-bit weights against 16-bit pair saturation: the FakeQuantize keeps its 8-bit
                // levels over twice the range, so the codes stay within [-64, 63].
                if w.half_range { " (7-bit: 255 levels over twice the range, codes in [-64, 63])" } else { "" }
            ),
            levels: qw.fq_levels,
            per_channel: w.spec.per_channel && !w.channel_axes.is_empty(),
            input_low: qw.fq_low.iter().cloned().fold(f32::INFINITY, f32::min),
            input_high: qw.fq_high.iter().cloned().fold(f32::NEG_INFINITY, f32::max),
        });
    }
    q.report.quantized_layers = q.setup.quantized_ops.iter().map(|&o| g.nodes[o].name.clone()).collect();
    q.report.ignored = q.setup.ignored.clone();
}

fn constant_value(plan: &Plan, o: Outlet) -> Option<Tensor> {
    plan.constant_value(o).map(|t| (**t).clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::InMemoryDataset;
    use std::collections::HashSet;

    /// A quantization with an ignored scope reading an earlier run's statistics writes the bytes
    /// a quantization that runs the model writes, and does not run it; one asking for more
    /// statistics (another estimator) runs it.
    #[test]
    fn reused_statistics_give_the_same_quantization() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ppocr_cls");
        let model = Model::read(&dir.join("model.xml"), None).unwrap();
        let x = crate::npy::read_npy(&dir.join("calib/x.npy")).unwrap();
        let samples = (0..24)
            .map(|i| {
                let t = crate::map_tensor!(&x, a => a.slice_axis(ndarray::Axis(0), ndarray::Slice::from(i..i + 1)).to_owned());
                vec![("x".to_string(), t)]
            })
            .collect();
        let calib = InMemoryDataset { samples };
        let config = QuantConfig::default();
        let first = prepare(&model, &config, &calib, &mut Hooks::default()).unwrap();
        let mut scoped = config.clone();
        let layer = first.fp_graph.nodes[first.setup.quantized_ops[3]].name.clone();
        scoped.ignored.names.push(layer);
        let ran = prepare(&model, &scoped, &calib, &mut Hooks::default()).unwrap();
        let reused = prepare_from(&model, &scoped, &calib, Some(&first), &mut Hooks::default()).unwrap();
        assert_eq!(ran.report.inferences, first.report.inferences);
        assert!(
            reused.report.inferences < ran.report.inferences,
            "{} inferences reusing, {} running",
            reused.report.inferences,
            ran.report.inferences
        );
        assert!(Arc::ptr_eq(&reused.statistics, &first.statistics));
        let none = HashSet::new();
        let bytes = |q: &Quantized| crate::ir::writer::serialize(&q.materialize(&none).unwrap()).unwrap();
        assert_eq!(bytes(&reused), bytes(&ran));
        assert_ne!(bytes(&reused), bytes(&first), "the ignored layer changed nothing");

        let mut other = scoped.clone();
        other.range_estimator = serde_json::from_value(serde_json::json!({
            "activations": {"max": {"type": "quantile", "outlier_prob": 0.001}}
        }))
        .unwrap();
        let more = prepare_from(&model, &other, &calib, Some(&first), &mut Hooks::default()).unwrap();
        assert!(!Arc::ptr_eq(&more.statistics, &first.statistics));
    }
}
