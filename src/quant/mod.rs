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
pub mod saturation;
pub mod smooth_quant;
pub mod stats;

use crate::data::{Dataset, Metric};

use crate::hooks::{Hooks, LogLevel, Stage};

use crate::model::Model;

use crate::backend::{Backend, Executable};
use crate::engine::Plan;
use crate::error::{Error, Result};
use crate::graph::{Graph, NodeId, Outlet, XmlElement};
use crate::report::{FqInfo, Outcome, Report};
use crate::tensor::Tensor;
use bias_correction::BiasSite;
use config::{ModelType, QuantConfig, SaturationFix};
use hw_config::HwConfig;
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
    pub weights: Vec<(ArrayD<f32>, QuantizedWeight)>,
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
}

fn f32_of(t: &Tensor) -> ArrayD<f32> {
    t.to_f32()
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
            ov => ov.compile(&g, &[], self.config.threads),
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
        for (w, (fp, q)) in self.setup.weights.iter().zip(&self.weights) {
            if !reverted.contains(&w.op) {
                minmax::replace_weight(&mut g, w.op, w.input, fp, q, compress);
            }
        }
        Ok(g)
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

/// Everything up to (not including) writing the graph.
/// The largest weight magnitude OpenVINO can dequantize: beyond FP16's range its CPU plugin
/// cannot build the int8 layer (weights of 1e36, say, from bit rot, give "DequantizationMultiply
/// contains empty child edge"), and no trained model has such weights.
const MAX_QUANTIZABLE_WEIGHT: f32 = 65504.0;

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
        let v = f32_of(&v);
        let why = if v.iter().any(|x| x.is_nan()) {
            Some("its weights hold NaN".to_string())
        } else if v.iter().any(|x| x.is_infinite()) {
            Some("its weights hold Inf".to_string())
        } else {
            let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
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

pub fn prepare(model: &Model, config: &QuantConfig, data: &dyn Dataset, hooks: &mut Hooks) -> Result<Quantized> {
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
    let mut report = Report {
        algorithm: format!("{:?}", config.algorithm),
        preset: format!("{:?}", config.effective_preset()).to_lowercase(),
        target_device: format!("{:?}", config.target_device),
        model_type: config.model_type.map(|m| format!("{m:?}").to_lowercase()),
        model_type_detected: detected,
        ..Default::default()
    };
    let len = data.len();
    if len == 0 {
        return Err(Error::invalid("the calibration dataset is empty"));
    }
    let n = config.stat_subset_size.min(len);
    if n < config.stat_subset_size {
        report.warnings.push(format!("dataset has {len} samples; using {n} instead of {}", config.stat_subset_size));
    }
    report.samples_used = n;
    for note in config.scheme_notes() {
        hooks.log(LogLevel::Warning, &note);
        report.warnings.push(note);
    }
    let fp_graph = model.graph().clone();
    if let Some(fq) = fp_graph.nodes.iter().find(|n| n.op_type == "FakeQuantize") {
        return Err(Error::invalid(format!("the model is already quantized ({} found)", fq.describe())));
    }
    let hw = HwConfig::new(config.target_device, config.model_type);
    let fp_plan = Plan::new(&fp_graph)?;

    // SmoothQuant (transformers): which MatMuls are decided now; the scales come from the one
    // statistics pass below. Smoothing does not change any value downstream of the MatMuls, and
    // the smoothed activation x/s is derived from per-channel statistics of x, so a single pass
    // over the FP32 model serves both SmoothQuant and the quantizer ranges.
    let sq_cands = if config.model_type == Some(ModelType::Transformer) && config.smooth_quant_alpha >= 0.0 {
        let is_const = fp_graph.constant_outlets()?;
        let regexes: Vec<regex::Regex> =
            config.ignored.patterns.iter().filter_map(|p| regex::Regex::new(&format!("^(?:{p})$")).ok()).collect();
        let skip = |id: NodeId| placement::ignored_reason(&fp_graph, id, &config.ignored, &regexes).is_some();
        let wv = |o: Outlet| fp_plan.constant_value(o).map(|t| f32_of(t));
        let c = smooth_quant::candidates(&fp_graph, &is_const, &skip, &wv);
        (!c.groups.is_empty()).then_some(c)
    } else {
        None
    };
    let mut graph = fp_graph.clone();
    let mut sq_nodes = std::collections::BTreeMap::new();
    if let Some(c) = &sq_cands {
        let ones: Vec<Vec<f32>> = c
            .groups
            .values()
            .map(|v| vec![1.0; v[0].1.shape()[smooth_quant::input_channel_axis(&fp_graph, v[0].0, 2)]])
            .collect();
        sq_nodes = smooth_quant::apply_scales(&mut graph, c, &ones)?;
    }
    // Where an outlet of the smoothed graph is measured in the FP32 graph.
    let sq_sources: HashMap<NodeId, Outlet> = sq_nodes.iter().map(|(k, (src, _))| (*k, *src)).collect();
    let measured = |o: Outlet| -> Outlet { sq_sources.get(&o.node).copied().unwrap_or(o) };

    let mut setup = placement::plan_quantizers(&graph, &hw, config)?;
    let unfit = weights_unfit_for_int8(&fp_graph, &fp_plan, &graph, &setup);
    if !unfit.is_empty() {
        // Planned again with those ops ignored, so their activations stay unquantized too.
        let mut c = config.clone();
        c.ignored.names.extend(unfit.iter().map(|(name, _)| name.clone()));
        setup = placement::plan_quantizers(&graph, &hw, &c)?;
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

    // Bias sites of quantized weighted ops (bias constants are the same in both graphs)
    let consumers = graph.consumers();
    let cv = |o: Outlet| constant_value(&fp_plan, o);
    let mut sites: Vec<(usize, BiasSite)> = vec![];
    if config.bias_correction {
        for (i, w) in setup.weights.iter().enumerate() {
            if !bias_correction::corrects(&graph, w.op, config.use_fast_bias) {
                continue;
            }
            if let Some(mut s) = bias_correction::find_bias(&graph, &consumers, w.op, &cv) {
                s.act_input = 1 - w.input.min(1);
                sites.push((i, s));
            }
        }
    }

    let backend = Backend::open(config.backend, &config.openvino)?;
    report.backend = backend.describe();
    hooks.log(LogLevel::Info, &format!("inference backend: {}", report.backend));
    // OpenVINO fuses a bias Add into its convolution or MatMul and would have to split them to
    // hand over the output before the bias: there, the mean is measured after the bias and the
    // (constant) bias subtracted.
    let after_bias = backend.is_openvino();
    let outlets = SiteOutlets { after_bias };
    let site_outlet = |s: &BiasSite| outlets.of(s);

    // Statistics: one pass over the FP32 model
    let t = Instant::now();
    let act_est = config.range_estimator.activations.as_ref();
    let quantiles = minmax::needed_quantiles(act_est);
    let mut reqs: HashMap<Outlet, Vec<Request>> = HashMap::new();
    for p in &setup.activations {
        let r = if sq_nodes.contains_key(&p.source.node) {
            Request::SampleChannelMinMax
        } else if p.spec.per_channel {
            Request::ChannelMinMax { axis: 1 }
        } else {
            Request::Scalars { quantiles: quantiles.clone() }
        };
        reqs.entry(measured(p.source)).or_default().push(r);
    }
    if let Some(c) = &sq_cands {
        for src in c.groups.keys() {
            reqs.entry(*src).or_default().push(Request::ChannelAbsMax);
        }
    }
    for (_, s) in &sites {
        if config.use_fast_bias {
            let inp = measured(graph.nodes[s.op].inputs[s.act_input]);
            reqs.entry(inp).or_default().push(Request::ChannelMean { axis: s.in_axis });
        }
        reqs.entry(site_outlet(s)).or_default().push(Request::ChannelMean { axis: s.out_axis });
    }
    // The saturation fix's output check compares with FP32 outputs: kept from this pass.
    let output_outlets: Vec<Outlet> = fp_graph.results().iter().map(|&r| fp_graph.nodes[r].inputs[0]).collect();
    let checks_output = config.saturation_fix == SaturationFix::Auto
        && isa::resolve_here(config.target_isa, config.target_device).isa != "none";
    if checks_output {
        for &o in &output_outlets {
            reqs.entry(o).or_default().push(Request::Keep { samples: n.min(saturation::SAMPLES) });
        }
    }
    for v in reqs.values_mut() {
        v.dedup();
    }
    let col = stats::collect_on(
        &backend,
        &fp_graph,
        Some(fp_plan),
        config.threads,
        data,
        n,
        &reqs,
        hooks,
        Stage::Statistics,
    )?;
    report.inferences += n;
    report.timings.push(("statistics".into(), t.elapsed().as_secs_f64()));

    // SmoothQuant with the real scales: the same nodes as the placeholder pass.
    if let Some(c) = &sq_cands {
        let scales = smooth_quant::compute_scales(&fp_graph, c, &col.channel_abs_max, config.smooth_quant_alpha as f32);
        graph = fp_graph.clone();
        sq_nodes = smooth_quant::apply_scales(&mut graph, c, &scales)?;
        hooks.log(LogLevel::Info, &format!("SmoothQuant: {} activation(s) smoothed", sq_nodes.len()));
    }
    let plan = Plan::new(&graph)?;

    // Activation ranges (unified groups share min-of-mins / max-of-maxes)
    let mut raw: Vec<(f64, f64)> = vec![];
    let missing =
        |p: &placement::ActPoint| Error::internal(format!("no statistics for '{}'", graph.nodes[p.source.node].name));
    for p in &setup.activations {
        if p.spec.per_channel {
            raw.push((0.0, 0.0));
            continue;
        }
        if let Some((src, scale)) = sq_nodes.get(&p.source.node) {
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

    // A range that overflows f32 (masks of f32::MIN, -inf in the data): that tensor stays in
    // floating point rather than the run failing.
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

    // Weights
    let mut weights = vec![];
    for w in &setup.weights {
        let o = graph.nodes[w.op].inputs[w.input];
        let v = plan
            .constant_value(o)
            .ok_or_else(|| Error::internal(format!("weights of {} are not constant", graph.nodes[w.op].describe())))?;
        let fp = f32_of(v);
        let q = minmax::quantize_weight(&fp, &w.scheme(config))
            .map_err(|e| Error::invalid(format!("{}: {e}", graph.nodes[w.op].describe())))?;
        weights.push((fp, q));
    }
    // FP32 input means per bias site, in the smoothed graph's terms.
    let fbc_inputs: Vec<Option<(Vec<f64>, Vec<usize>)>> = sites
        .iter()
        .map(|(_, site)| {
            let inp = graph.nodes[site.op].inputs[site.act_input];
            let m = measured(inp);
            let means = col.channel_means.get(&(m, site.in_axis))?.clone();
            let shape = col.shapes.get(&m)?.clone();
            let means = match sq_nodes.get(&inp.node) {
                Some((_, scale)) if scale.len() == means.len() => {
                    means.iter().zip(scale).map(|(v, s)| v / *s as f64).collect()
                }
                _ => means,
            };
            Some((means, shape))
        })
        .collect();

    let assumed = isa::resolve_here(config.target_isa, config.target_device);
    hooks.log(LogLevel::Info, &format!("int8 arithmetic of the target CPU: {} ({})", assumed.isa, assumed.reason));
    let verdicts = match verdict_backend(&backend, &assumed, config) {
        Ok(b) => b,
        Err(why) => {
            hooks.log(LogLevel::Warning, &why);
            report.warnings.push(why);
            Backend::Builtin
        }
    };
    let mut quantized = Quantized {
        backend,
        verdicts,
        fp_graph: graph,
        setup,
        act_ranges,
        weights,
        bias_shifts: vec![],
        config: config.clone(),
        isa: assumed,
        report,
    };
    // The FP32 outputs the statistics pass kept for the saturation fix's output check.
    let fp_outputs: Option<Vec<Vec<Tensor>>> = {
        let per_output: Option<Vec<&Vec<Tensor>>> = output_outlets.iter().map(|o| col.kept.get(o)).collect();
        per_output.map(|cols| {
            let m = cols.iter().map(|c| c.len()).min().unwrap_or(0);
            (0..m).map(|i| cols.iter().map(|c| c[i].clone()).collect()).collect()
        })
    };
    let saturation_means = fix_saturation(&mut quantized, data, n, fp_outputs.as_deref(), hooks)?;

    // Bias correction
    if config.bias_correction && !sites.is_empty() {
        let t = Instant::now();
        let g = &quantized.fp_graph;
        if config.use_fast_bias {
            for (k, ((wi, site), inp)) in sites.iter().zip(&fbc_inputs).enumerate() {
                hooks.progress(Stage::BiasCorrection, k, sites.len())?;
                let site_means = site_output_means(&col, site, after_bias);
                let (Some((in_means, shape)), Some(out_means)) = (inp, site_means.as_ref()) else {
                    continue;
                };
                // What the target CPU's saturation takes off the layer's mean output is
                // corrected with the rest.
                let adjusted: Vec<f64>;
                let out_means = match saturation_means.get(wi).filter(|m| m.len() == out_means.len()) {
                    Some(sat) => {
                        adjusted = out_means.iter().zip(sat).map(|(o, s)| o - s).collect();
                        &adjusted
                    }
                    None => out_means,
                };
                let qw = Tensor::F32(quantized.weights[*wi].1.dequantized());
                let w_input = quantized.setup.weights[*wi].input;
                if let Some(shift) = bias_correction::fast_shift(
                    g,
                    site,
                    shape,
                    in_means,
                    out_means,
                    &qw,
                    w_input,
                    config.bias_correction_threshold,
                )? {
                    quantized.bias_shifts.push((site.clone(), shift));
                }
            }
        } else {
            full_bias_correction(&mut quantized, &sites, &col, outlets, data, n, hooks)?;
        }
        hooks.progress(Stage::BiasCorrection, sites.len(), sites.len())?;
        quantized.report.timings.push(("bias_correction".into(), t.elapsed().as_secs_f64()));
    }

    // Report
    let g = &quantized.fp_graph;
    for (p, r) in quantized.setup.activations.iter().zip(&quantized.act_ranges) {
        let lo = r.low.iter().cloned().fold(f32::INFINITY, f32::min);
        let hi = r.high.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let levels = r.levels;
        let targets: Vec<String> = p.targets.iter().map(|&t| g.nodes[t].name.clone()).collect();
        quantized.report.fake_quantize.push(FqInfo {
            name: format!("{}:{}", g.nodes[p.source.node].name, p.source.port),
            target: targets.join(", "),
            kind: if p.spec.symmetric { "activation symmetric".into() } else { "activation asymmetric".into() },
            levels,
            per_channel: p.spec.per_channel,
            input_low: lo,
            input_high: hi,
        });
    }
    for (w, (_, q)) in quantized.setup.weights.iter().zip(&quantized.weights) {
        quantized.report.fake_quantize.push(FqInfo {
            name: format!("{}:weights", g.nodes[w.op].name),
            target: g.nodes[w.op].name.clone(),
            kind: format!(
                "weights int{}{}{}",
                w.spec.bits,
                if w.spec.symmetric { "" } else { " (asymmetric)" },
                if w.half_range { " (half range)" } else { "" }
            ),
            levels: q.fq_levels,
            per_channel: w.spec.per_channel && !w.channel_axes.is_empty(),
            input_low: q.fq_low.iter().cloned().fold(f32::INFINITY, f32::min),
            input_high: q.fq_high.iter().cloned().fold(f32::NEG_INFINITY, f32::max),
        });
    }
    quantized.report.quantized_layers =
        quantized.setup.quantized_ops.iter().map(|&o| g.nodes[o].name.clone()).collect();
    quantized.report.ignored = quantized.setup.ignored.clone();
    quantized.report.timings.push(("total".into(), t_total.elapsed().as_secs_f64()));
    Ok(quantized)
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
    let mut means = HashMap::new();
    let mut measured = vec![];
    if q.isa.arithmetic == isa::Int8Arithmetic::PairSaturating {
        let cands = saturation::candidates(q);
        if !cands.is_empty() {
            let t = Instant::now();
            let m = saturation::measure(q, &cands, data, n, hooks)?;
            q.report.inferences += n.clamp(1, saturation::SAMPLES);
            for (i, choice) in &m.choices {
                if mode == SaturationFix::Auto && choice.seven_bit {
                    saturation::set_half_range(q, *i, true)?;
                }
            }
            means = m.mean_saturation;
            measured = m.choices.into_iter().map(|(_, c)| c).collect();
            q.report.timings.push(("saturation_fix".into(), t.elapsed().as_secs_f64()));
        }
    }
    let mut groups = vec![];
    if mode == SaturationFix::Auto && q.isa.isa != "none" {
        let t = Instant::now();
        let firsts: Vec<usize> = (0..q.setup.weights.len()).filter(|&i| q.setup.weights[i].first).collect();
        groups = saturation::check_groups(q, &[("first layers", firsts)], fp_outputs, data, n, hooks)?;
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
    measure_latency(&q.backend, model.graph(), &graph, data, config, &mut report, hooks)?;
    Ok(Outcome { model: Model::from_graph(graph), report, accuracy_reached: true })
}

/// With the OpenVINO backend: FP32 and INT8 latency in the runtime on this CPU, into the report,
/// with a warning when INT8 is not faster here.
pub(crate) fn measure_latency(
    backend: &Backend,
    fp: &Graph,
    int8: &Graph,
    data: &dyn Dataset,
    config: &QuantConfig,
    report: &mut Report,
    hooks: &mut Hooks,
) -> Result<()> {
    if !backend.is_openvino() || data.is_empty() {
        return Ok(());
    }
    let t = Instant::now();
    let sample = data.get(0).map_err(|e| stats::with_sample(e, "calibration", 0))?;
    let (Some(fp32_ms), Some(int8_ms)) =
        (backend.latency_ms(fp, &sample, config.threads)?, backend.latency_ms(int8, &sample, config.threads)?)
    else {
        return Ok(());
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

/// Full bias correction (`use_fast_bias: false`): the quantized model's per-channel outputs
/// measured on real data as the target CPU computes them, layer after layer as POT does
/// ([`bias_correction::full_shifts`]).
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
    let mut qg = q.quantizers_applied(&HashSet::new(), true)?;
    let whole = qg.clone();
    cpu_plugin::emulate_for(&mut qg, q.isa.arithmetic);
    // Layer after layer needs the built-in engine (OpenVINO runs a compiled model whole); it
    // emulates the target's int8 arithmetic, so OpenVINO is only the fallback for models with
    // ops the engine lacks.
    let plan = match Plan::new(&qg) {
        Ok(p) => p,
        Err(e) if q.verdicts.is_openvino() => {
            hooks.log(LogLevel::Info, &format!("bias correction on the whole model in OpenVINO: {e}"));
            return full_bias_correction_compiled(q, sites, col, outlets, whole, data, n, hooks);
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
    let nb = schedule.samples(&qg, n);
    // FP32 means over exactly the samples the quantized model runs on.
    let fp_col;
    let fp_means = if nb == n {
        &col.channel_means
    } else {
        let mut reqs: HashMap<Outlet, Vec<Request>> = HashMap::new();
        for (_, s, _) in &found {
            reqs.entry(outlets.of(s)).or_default().push(Request::ChannelMean { axis: s.out_axis });
        }
        fp_col =
            stats::collect_on(&q.backend, fp, None, q.config.threads, data, nb, &reqs, hooks, Stage::BiasCorrection)?;
        q.report.inferences += nb;
        &fp_col.channel_means
    };
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

/// NNCF's BiasCorrection threshold: a shift may change a bias by up to this many times its value.
const FULL_THRESHOLD: f64 = 1000.0;

/// Full bias correction in OpenVINO, for models the built-in engine cannot run: every layer
/// measured at once in the compiled model, so an upstream layer's error is corrected again by
/// the layers it reaches (less exact than layer after layer).
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
        stats::collect_on(&q.verdicts, &qg, None, q.config.threads, data, n, &qreqs, hooks, Stage::BiasCorrection)?;
    q.report.inferences += n;
    for (_, site) in sites {
        let key = (outlets.of(site), site.out_axis);
        if let (Some(f), Some(m)) = (col.channel_means.get(&key), qcol.channel_means.get(&key)) {
            let shift: Vec<f64> = f.iter().zip(m).map(|(a, b)| a - b).collect();
            if let Some(s) = bias_correction::accept(&site.bias, &shift, FULL_THRESHOLD) {
                q.bias_shifts.push((site.clone(), s));
            }
        }
    }
    Ok(())
}
