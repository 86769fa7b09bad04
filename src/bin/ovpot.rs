//! `ovpot`: the command line door onto the library (quantize, infer, evaluate, info, convert).
//!
//! Everything here is argument handling and file I/O; the work happens in `ovpot::Session`,
//! `ovpot::engine::Plan` and `ovpot::data`.

use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ovpot::api::{LogLevel, Metric, Stage, Top1Accuracy};
use ovpot::data::{open_dataset, read_labels, DataOptions, ImageOptions, Layout};
use ovpot::quant::config::{Algorithm, IgnoredOperation, QuantConfig, TargetDevice};
use ovpot::quant::hw_config::{HwConfig, QSpec};
use ovpot::quant::placement::plan_quantizers;
use ovpot::tensor::Tensor;
use ovpot::{Dataset, Model, Session};
use rayon::prelude::*;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// An error for the user: printed as one line `error: ...`.
#[derive(Debug)]
struct CliError(String);

impl From<ovpot::Error> for CliError {
    fn from(e: ovpot::Error) -> Self {
        CliError(e.to_string())
    }
}

type CliResult<T> = Result<T, CliError>;

fn fail<T>(msg: impl Into<String>) -> CliResult<T> {
    Err(CliError(msg.into()))
}

#[derive(Parser, Debug)]
#[command(name = "ovpot", version, about = "OpenVINO post-training quantization (POT) in Rust")]
struct Cli {
    /// Messages shown on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogArg::Info)]
    log_level: LogArg,
    /// No progress bars and no info messages.
    #[arg(long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq, PartialOrd, Ord)]
enum LogArg {
    Error,
    Warning,
    Info,
    Debug,
}

impl LogArg {
    fn level(self) -> LogLevel {
        match self {
            LogArg::Error => LogLevel::Error,
            LogArg::Warning => LogLevel::Warning,
            LogArg::Info => LogLevel::Info,
            LogArg::Debug => LogLevel::Debug,
        }
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Quantize an FP32 IR to INT8 (POT's DefaultQuantization or AccuracyAwareQuantization).
    Quantize(Box<QuantizeArgs>),
    /// Run the model on every sample and write OUT/out<k>.npy per output.
    Infer(InferArgs),
    /// Print the top-1 accuracy of the model on labelled data.
    Evaluate(EvaluateArgs),
    /// Show inputs, outputs, the op histogram, ops the engine lacks and what would be quantized.
    Info(InfoArgs),
    /// Read an IR and write it back (IR v11).
    Convert(ConvertArgs),
}

#[derive(Args, Debug, Clone, Default)]
struct ModelArgs {
    /// Model IR (.xml).
    #[arg(short = 'm', long = "model")]
    model: Option<PathBuf>,
    /// Weights (.bin); default: the .xml path with .bin.
    #[arg(short = 'w', long = "weights")]
    weights: Option<PathBuf>,
}

#[derive(Args, Debug, Clone, Default)]
struct DataArgs {
    /// Data: a folder with <input>.npy per input (samples on axis 0), one .npy per sample, a
    /// single .npy, or a folder of PNG/JPEG images.
    #[arg(long = "data", alias = "data-source")]
    data: Option<PathBuf>,
    /// Image input layout (NCHW or NHWC); default: guessed from the input shape.
    #[arg(long)]
    layout: Option<String>,
    /// Image mean, subtracted before dividing by --scale: one value or one per channel ("123.7,116.3,103.5").
    #[arg(long)]
    mean: Option<String>,
    /// Image scale: value = (pixel - mean) / scale; one value or one per channel.
    #[arg(long)]
    scale: Option<String>,
    /// Feed images as BGR instead of RGB.
    #[arg(long)]
    bgr: bool,
    /// Use at most this many samples.
    #[arg(long)]
    max_samples: Option<usize>,
}

/// What decides where quantizers go (shared by `quantize` and `info`).
#[derive(Args, Debug, Clone, Default)]
struct PlanArgs {
    /// performance (symmetric) or mixed (asymmetric activations).
    #[arg(long)]
    preset: Option<String>,
    /// ANY, CPU, CPU_SPR, GPU, NPU, GNA (default ANY).
    #[arg(long)]
    target_device: Option<String>,
    /// transformer: quantize as a transformer (SmoothQuant, no FQ on some ops); general: not a
    /// transformer. Default: detected (a graph with attention is a transformer).
    #[arg(long)]
    model_type: Option<String>,
    /// The int8 arithmetic of the CPU that will run the model: auto (this CPU, default), avx2
    /// (any x86 CPU without VNNI: pair sums saturate in 16 bits) or vnni (exact sums).
    #[arg(long)]
    target_isa: Option<String>,
    /// 7-bit weights against that saturation: auto (per layer where it pays, default), no,
    /// first_layer (POT's and NNCF's default) or all.
    #[arg(long)]
    saturation_fix: Option<String>,
    /// Layers to keep in floating point: names, `re:<regex>` over names, `type:<OpType>`;
    /// repeat or separate by commas.
    #[arg(long, value_delimiter = ',')]
    ignored_scope: Vec<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Method {
    Default,
    /// POT spells it `accuracy_aware`.
    #[value(name = "accuracy_aware", alias = "accuracy-aware")]
    AccuracyAware,
}

#[derive(Args, Debug)]
struct QuantizeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// A POT JSON config (model, engine and compression sections); options given here override it.
    #[arg(short = 'c', long = "config")]
    config: Option<PathBuf>,
    /// Algorithm.
    #[arg(short = 'q', long = "quantize", value_enum)]
    method: Option<Method>,
    #[command(flatten)]
    plan: PlanArgs,
    /// Samples used for statistics (stat_subset_size).
    #[arg(long)]
    subset_size: Option<usize>,
    /// Accuracy-aware: the largest allowed metric drop (absolute unless the config says relative).
    #[arg(long)]
    max_drop: Option<f64>,
    /// Where to write optimized/<name>.xml, .bin and report.json.
    #[arg(short = 'o', long, default_value = "results")]
    output_dir: PathBuf,
    /// Model name for the written files (default: model.model_name in the config, else the xml name).
    #[arg(short = 'n', long = "name")]
    name: Option<String>,
    /// Keep weights in FP32 behind FakeQuantize instead of int8 constants.
    #[arg(long)]
    keep_uncompressed_weights: bool,
    #[command(flatten)]
    data: DataArgs,
    /// Evaluation data for accuracy-aware quantization (default: --data).
    #[arg(long)]
    eval_data: Option<PathBuf>,
    /// Class labels (.npy, one int per evaluation sample) for top-1 accuracy.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Which model output the metric reads.
    #[arg(long)]
    metric_output: Option<usize>,
    /// Accepted for POT compatibility; only `simplified` (plain data) is available.
    #[arg(long, hide = true)]
    engine: Option<String>,
    /// Where statistics, bias correction and accuracy-aware verdicts run: builtin (default) or
    /// openvino (OpenVINO's CPU plugin, loaded at run time: its exact int8 arithmetic and speed).
    #[arg(long)]
    backend: Option<String>,
    /// OpenVINO's C library (a file, or a directory holding libopenvino_c.so*) for
    /// --backend openvino; default $OVPOT_OPENVINO_LIB, else the loader's search path.
    #[arg(long)]
    openvino_lib: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct InferArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    data: DataArgs,
    /// Where out<k>.npy go.
    #[arg(long, short = 'o')]
    output_dir: PathBuf,
    /// Compute what OpenVINO's CPU plugin computes for an INT8 IR (a FakeQuantize before a fused
    /// residual Add clamps without rounding; without VNNI, int8 pair sums saturate in 16 bits)
    /// instead of FakeQuantize semantics.
    #[arg(long)]
    as_openvino_cpu: bool,
    /// With --as-openvino-cpu: the CPU's int8 arithmetic, auto (this CPU), avx2 (no VNNI) or vnni.
    #[arg(long, default_value = "auto")]
    target_isa: String,
}

#[derive(Args, Debug)]
struct EvaluateArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    data: DataArgs,
    /// Class labels (.npy), one per sample.
    #[arg(long)]
    labels: PathBuf,
    /// Which model output holds the class scores.
    #[arg(long, default_value_t = 0)]
    metric_output: usize,
    /// Compute what OpenVINO's CPU plugin computes for an INT8 IR (a FakeQuantize before a fused
    /// residual Add clamps without rounding; without VNNI, int8 pair sums saturate in 16 bits)
    /// instead of FakeQuantize semantics.
    #[arg(long)]
    as_openvino_cpu: bool,
    /// With --as-openvino-cpu: the CPU's int8 arithmetic, auto (this CPU), avx2 (no VNNI) or vnni.
    #[arg(long, default_value = "auto")]
    target_isa: String,
}

#[derive(Args, Debug)]
struct InfoArgs {
    /// Model IR (.xml).
    #[arg(value_name = "MODEL_XML")]
    xml: Option<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    plan: PlanArgs,
}

#[derive(Args, Debug)]
struct ConvertArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Output IR (.xml); the weights go next to it as .bin.
    #[arg(short = 'o', long = "output")]
    output: PathBuf,
}

/// Messages to stderr at or above the chosen level.
#[derive(Clone, Copy)]
struct Logger {
    level: LogLevel,
}

impl Logger {
    fn log(&self, level: LogLevel, msg: &str) {
        if level <= self.level {
            eprintln!("[{}] {msg}", level_name(level));
        }
    }
    fn info(&self, msg: &str) {
        self.log(LogLevel::Info, msg)
    }
    fn warn(&self, msg: &str) {
        self.log(LogLevel::Warning, msg)
    }
    fn debug(&self, msg: &str) {
        self.log(LogLevel::Debug, msg)
    }
}

fn level_name(l: LogLevel) -> &'static str {
    match l {
        LogLevel::Error => "error",
        LogLevel::Warning => "warning",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
    }
}

/// Whether progress bars are drawn: stderr is a terminal and not --quiet.
fn bars_visible(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal()
}

fn new_bar(visible: bool, total: usize, label: &str) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{prefix:>16} [{bar:30}] {pos}/{len} {elapsed}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(label.to_string());
    bar
}

/// Progress-bar state behind the session's progress hook: one bar per stage.
struct StageBars {
    visible: bool,
    current: Option<(Stage, ProgressBar)>,
}

impl StageBars {
    fn update(&mut self, stage: Stage, done: usize, total: usize) -> bool {
        let same = matches!(&self.current, Some((s, _)) if *s == stage);
        if !same {
            if let Some((_, bar)) = self.current.take() {
                bar.finish();
            }
            self.current = Some((stage, new_bar(self.visible, total, stage.name())));
        }
        if let Some((_, bar)) = &self.current {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        }
        true
    }
}

impl Drop for StageBars {
    fn drop(&mut self) {
        if let Some((_, bar)) = self.current.take() {
            bar.finish();
        }
    }
}

fn parse_values(s: &str, what: &str) -> CliResult<Vec<f32>> {
    s.trim_matches(|c| c == '[' || c == ']' || c == '(' || c == ')')
        .split([',', ' '])
        .filter(|x| !x.is_empty())
        .map(|x| x.parse::<f32>().map_err(|_| CliError(format!("{what}: '{x}' is not a number"))))
        .collect()
}

fn data_options(d: &DataArgs) -> CliResult<DataOptions> {
    let layout = match &d.layout {
        Some(l) => Some(l.parse::<Layout>()?),
        None => None,
    };
    let mean = d.mean.as_deref().map(|s| parse_values(s, "--mean")).transpose()?.unwrap_or_default();
    let scale = d.scale.as_deref().map(|s| parse_values(s, "--scale")).transpose()?.unwrap_or_default();
    Ok(DataOptions { limit: d.max_samples, image: ImageOptions { layout, mean, scale, bgr: d.bgr } })
}

fn read_model(m: &ModelArgs) -> CliResult<Model> {
    let Some(xml) = &m.model else {
        return fail("no model given (-m model.xml)");
    };
    Ok(Model::read(xml, m.weights.as_deref())?)
}

fn open_data(path: Option<&Path>, model: &Model, d: &DataArgs) -> CliResult<Box<dyn Dataset>> {
    let Some(path) = path else {
        return fail("no data given (--data DIR)");
    };
    let ds = open_dataset(path, &model.inputs(), &data_options(d)?)?;
    if ds.is_empty() {
        return fail(format!("{} holds no samples", path.display()));
    }
    Ok(ds)
}

/// Runs the model on every sample in parallel; outputs come back in sample order.
fn run_all(model: &Model, data: &dyn Dataset, visible: bool, label: &str) -> CliResult<Vec<Vec<Tensor>>> {
    let plan = model.plan()?;
    let bar = new_bar(visible, data.len(), label);
    let outs: ovpot::Result<Vec<Vec<Tensor>>> = (0..data.len())
        .into_par_iter()
        .map(|i| {
            let sample = data.get(i).map_err(|e| ovpot::Error::invalid(format!("sample {i}: {e}")))?;
            let out = plan.run(&sample).map_err(|e| ovpot::Error::invalid(format!("sample {i}: {e}")))?;
            bar.inc(1);
            Ok(out)
        })
        .collect();
    bar.finish_and_clear();
    Ok(outs?)
}

/// Concatenates per-sample outputs on axis 0 (rank-0 outputs become one row each).
fn stack(parts: &[&Tensor], what: &str) -> CliResult<Tensor> {
    let Some(first) = parts.first() else {
        return fail(format!("{what}: no samples"));
    };
    let et = first.element_type();
    let tail: Vec<usize> = first.shape().iter().skip(1).copied().collect();
    let mut rows = 0;
    let mut bytes = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let (r, t) = match p.shape() {
            [] => (1, &[][..]),
            s => (s[0], &s[1..]),
        };
        if p.element_type() != et || t != tail.as_slice() {
            return fail(format!(
                "{what}: sample {i} gives {} {:?}, sample 0 gave {et} {:?}; cannot stack",
                p.element_type(),
                p.shape(),
                first.shape()
            ));
        }
        rows += r;
        bytes.extend(p.to_bytes(et)?);
    }
    let mut shape = vec![rows];
    shape.extend(tail);
    Ok(Tensor::from_bytes(et, &shape, &bytes)?)
}

/// The model as given, or as OpenVINO's CPU plugin runs it (`--as-openvino-cpu`).
fn model_as_run(model: Model, as_openvino_cpu: bool, target_isa: &str, log: &Logger) -> CliResult<Model> {
    if !as_openvino_cpu {
        return Ok(model);
    }
    let isa = ovpot::quant::isa::resolve_here(enum_value(target_isa, "--target-isa")?, TargetDevice::CPU);
    let (m, e) = model.emulating_cpu(isa.arithmetic);
    log.info(&format!(
        "as OpenVINO's CPU plugin on {} ({}): {} FakeQuantize(s) clamp without rounding, {} int8 layer(s) can \
         saturate 16-bit pair sums",
        isa.isa,
        isa.reason,
        e.unrounded.len(),
        e.saturating.len()
    ));
    for name in e.unrounded.iter().chain(&e.saturating) {
        log.debug(&format!("  {name}"));
    }
    Ok(m)
}

fn cmd_infer(a: &InferArgs, log: Logger, visible: bool) -> CliResult<()> {
    let model = model_as_run(read_model(&a.model)?, a.as_openvino_cpu, &a.target_isa, &log)?;
    let data = open_data(a.data.data.as_deref(), &model, &a.data)?;
    let outs = run_all(&model, data.as_ref(), visible, "infer")?;
    std::fs::create_dir_all(&a.output_dir).map_err(|e| ovpot::Error::io(&a.output_dir, e))?;
    let names = model.outputs();
    for (k, desc) in names.iter().enumerate() {
        let parts: Vec<&Tensor> = outs.iter().filter_map(|o| o.get(k)).collect();
        let t = stack(&parts, &format!("output {k} ('{}')", desc.name))?;
        let path = a.output_dir.join(format!("out{k}.npy"));
        ovpot::npy::write_npy(&path, &t)?;
        log.info(&format!("wrote {} ({} {:?}, output '{}')", path.display(), t.element_type(), t.shape(), desc.name));
    }
    Ok(())
}

/// Top-1 accuracy of `outs` against `labels`; (accuracy, hits).
fn top1(outs: &[Vec<Tensor>], labels: &[i64], output: usize) -> CliResult<(f64, usize)> {
    let mut metric = Top1Accuracy::new(labels.to_vec(), output);
    metric.reset();
    for (i, o) in outs.iter().enumerate() {
        metric.update(i, o)?;
    }
    let acc = metric.value()?;
    let hits = metric.per_sample().map(|v| v.iter().filter(|x| **x > 0.5).count()).unwrap_or(0);
    Ok((acc, hits))
}

fn check_labels(labels: &[i64], samples: usize, path: &Path) -> CliResult<()> {
    if labels.len() < samples {
        return fail(format!("labels {}: {} labels for {samples} samples", path.display(), labels.len()));
    }
    Ok(())
}

fn check_metric_output(model: &Model, k: usize) -> CliResult<()> {
    let n = model.outputs().len();
    if k >= n {
        return fail(format!("--metric-output {k}: the model has {n} output(s) (0..{})", n - 1));
    }
    Ok(())
}

fn cmd_evaluate(a: &EvaluateArgs, log: Logger, visible: bool) -> CliResult<()> {
    let model = model_as_run(read_model(&a.model)?, a.as_openvino_cpu, &a.target_isa, &log)?;
    check_metric_output(&model, a.metric_output)?;
    let data = open_data(a.data.data.as_deref(), &model, &a.data)?;
    let labels = read_labels(&a.labels)?;
    check_labels(&labels, data.len(), &a.labels)?;
    let outs = run_all(&model, data.as_ref(), visible, "evaluate")?;
    let (acc, hits) = top1(&outs, &labels, a.metric_output)?;
    println!("top-1 accuracy: {acc:.4} ({hits}/{} samples, output {})", outs.len(), a.metric_output);
    Ok(())
}

/// "8-bit symmetric per channel" and the like.
fn spec_text(q: &QSpec) -> String {
    let mode = if q.symmetric { "symmetric" } else { "asymmetric" };
    let gran = if q.per_channel { " per channel" } else { "" };
    format!("{}-bit {mode}{gran}", q.bits)
}

/// What `quantize` would do with these options: the placement the quantize path computes
/// (before SmoothQuant, which only rescales transformer MatMul inputs).
fn print_plan(model: &Model, a: &PlanArgs) -> CliResult<()> {
    let mut cfg = QuantConfig::default();
    apply_plan_args(&mut cfg, a)?;
    cfg.validate()?;
    let g = model.graph();
    if cfg.model_type.is_none() {
        if let Some(why) = ovpot::quant::detect::transformer(g) {
            cfg.model_type = Some(ovpot::quant::config::ModelType::Transformer);
            println!("model type: transformer, detected ({why})");
        }
    }
    println!(
        "quantization (device {}, preset {}{}):",
        json_name(&cfg.target_device),
        json_name(&cfg.effective_preset()),
        cfg.model_type.map(|m| format!(", model type {}", json_name(&m))).unwrap_or_default()
    );
    if let Some(fq) = g.nodes.iter().find(|n| n.op_type == "FakeQuantize") {
        println!("  none: the model is already quantized ('{}' is a FakeQuantize)", fq.name);
        return Ok(());
    }
    let hw = HwConfig::new(cfg.target_device, cfg.model_type);
    let setup = plan_quantizers(g, &hw, &cfg)?;
    println!("  quantized ops: {}", setup.quantized_ops.len());
    for &id in &setup.quantized_ops {
        let n = &g.nodes[id];
        let mut what = vec![];
        for p in setup.activations.iter().filter(|p| p.targets.contains(&id)) {
            let src = &g.nodes[p.source.node];
            what.push(format!("activation from '{}' ({})", src.name, spec_text(&p.spec)));
        }
        for w in setup.weights.iter().filter(|w| w.op == id) {
            let half = if w.half_range { ", half range" } else { "" };
            what.push(format!("weights on input {} ({}{half})", w.input, spec_text(&w.spec)));
        }
        println!("    {}  {}: {}", n.name, n.op_type, what.join("; "));
    }
    println!("  ignored ops: {}", setup.ignored.len());
    for i in &setup.ignored {
        println!("    {}  {}: {}", i.name, i.op_type, i.reason);
    }
    let (acts, weights) = (setup.activations.len(), setup.weights.len());
    println!(
        "  FakeQuantize to insert: {} ({acts} on activations, {weights} on weights; weights are stored as int8 \
         constants instead unless --keep-uncompressed-weights)",
        acts + weights
    );
    Ok(())
}

fn cmd_info(a: &InfoArgs) -> CliResult<()> {
    let mut m = a.model.clone();
    if let Some(x) = &a.xml {
        m.model = Some(x.clone());
    }
    let model = read_model(&m)?;
    let g = model.graph();
    println!("model: {} (IR v{}, {} layers)", g.name, g.ir_version, g.nodes.len());
    println!("inputs:");
    for p in model.inputs() {
        println!("  {}  {} {}", p.name, p.element_type, p.shape);
    }
    println!("outputs:");
    for (k, p) in model.outputs().iter().enumerate() {
        println!("  {k}: {}  {} {}", p.name, p.element_type, p.shape);
    }
    let mut hist: std::collections::BTreeMap<(String, String), usize> = Default::default();
    for n in &g.nodes {
        *hist.entry((n.op_type.clone(), n.version.clone())).or_default() += 1;
    }
    println!("ops:");
    for ((t, v), n) in &hist {
        println!("  {t:<24} {v:<8} {n}");
    }
    let missing = ovpot::ops::missing_ops(g);
    if missing.is_empty() {
        println!("engine: every op is supported");
    } else {
        println!("engine: missing ops:");
        for ((t, v), layers) in missing {
            let shown: Vec<&str> = layers.iter().take(3).map(|s| s.as_str()).collect();
            let more = if layers.len() > 3 { format!(" and {} more", layers.len() - 3) } else { String::new() };
            println!("  {t} ({v}) used by '{}'{more}", shown.join("', '"));
        }
    }
    print_plan(&model, &a.plan)
}

fn cmd_convert(a: &ConvertArgs, log: Logger) -> CliResult<()> {
    let model = read_model(&a.model)?;
    if let Some(dir) = a.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| ovpot::Error::io(dir, e))?;
    }
    model.save(&a.output, None)?;
    log.info(&format!("wrote {}", a.output.display()));
    Ok(())
}

/// Removes `//` and `/* */` comments outside strings (POT's configs carry them).
fn strip_json_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_str = false;
    while let Some(c) = chars.next() {
        if in_str {
            out.push(c);
            if c == '\\' {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            } else if c == '"' {
                in_str = false;
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_str = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut prev = ' ';
                for n in chars.by_ref() {
                    if prev == '*' && n == '/' {
                        break;
                    }
                    if n == '\n' {
                        out.push('\n');
                    }
                    prev = n;
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// What a POT config says besides the algorithm: paths and names.
#[derive(Default, Debug)]
struct PotPaths {
    model: Option<PathBuf>,
    weights: Option<PathBuf>,
    name: Option<String>,
    data: Option<PathBuf>,
    eval_data: Option<PathBuf>,
    labels: Option<PathBuf>,
    metric_output: Option<usize>,
    /// The accuracy-checker engine the config names (its YAML, or "inline"), unsupported here.
    accuracy_checker: Option<String>,
    /// Config keys read but not applied.
    warnings: Vec<String>,
}

impl PotPaths {
    /// The error for a run without data (or labels) whose config relies on an accuracy-checker
    /// engine: says it is unsupported and what to give instead.
    fn engine_hint(&self, algorithm: Algorithm) -> Option<String> {
        let ac = self.accuracy_checker.as_ref()?;
        let give = match algorithm {
            Algorithm::Default => "--data DIR",
            Algorithm::AccuracyAware => "--data DIR and --labels labels.npy (--eval-data DIR for another set)",
        };
        Some(format!(
            "the config's accuracy-checker engine ({ac}) is not supported; give {give}, or set \
             \"engine\": {{\"type\": \"simplified\", \"data_source\": \"DIR\"}} in the config"
        ))
    }
}

/// POT's templates write `"model_type": "None"` for "not a transformer"; that means the key is absent.
fn drop_none_model_type(v: &mut serde_json::Value) {
    fn strip(obj: Option<&mut serde_json::Value>) {
        if let Some(serde_json::Value::Object(m)) = obj {
            if m.get("model_type")
                .is_some_and(|t| t.is_null() || t.as_str().is_some_and(|s| s.eq_ignore_ascii_case("none")))
            {
                m.remove("model_type");
            }
        }
    }
    let Some(comp) = v.get_mut("compression") else {
        return;
    };
    strip(Some(comp));
    if let Some(algos) = comp.get_mut("algorithms").and_then(|a| a.as_array_mut()) {
        for a in algos {
            strip(a.get_mut("params"));
        }
    }
}

/// A path from the config: as given when it exists from the working directory, else relative to
/// the config's folder.
fn config_path(base: &Path, s: &str) -> PathBuf {
    let p = PathBuf::from(s);
    if p.is_absolute() || p.exists() {
        return p;
    }
    let rel = base.join(&p);
    if rel.exists() {
        rel
    } else {
        p
    }
}

fn read_config(path: &Path) -> CliResult<(QuantConfig, PotPaths)> {
    let text = std::fs::read_to_string(path).map_err(|e| ovpot::Error::io(path, e))?;
    let text = strip_json_comments(&text);
    let shown = path.display().to_string();
    let mut v: serde_json::Value = serde_json::from_str(&text).map_err(|e| CliError(format!("config {shown}: {e}")))?;
    drop_none_model_type(&mut v);
    let (cfg, warnings) =
        QuantConfig::from_json_with_warnings(&v.to_string()).map_err(|e| CliError(format!("config {shown}: {e}")))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let s = |sec: &str, key: &str| v.get(sec).and_then(|x| x.get(key)).and_then(|x| x.as_str()).map(str::to_string);
    let p = |sec: &str, key: &str| s(sec, key).map(|x| config_path(base, &x));
    let mut paths = PotPaths {
        model: p("model", "model"),
        weights: p("model", "weights"),
        name: s("model", "model_name"),
        data: p("engine", "data_source"),
        eval_data: p("engine", "eval_data_source"),
        labels: p("engine", "labels"),
        metric_output: v
            .get("engine")
            .and_then(|e| e.get("metric_output"))
            .and_then(|x| x.as_u64())
            .map(|x| x as usize),
        accuracy_checker: None,
        warnings,
    };
    let engine_type = s("engine", "type");
    if let Some(t) = &engine_type {
        if t != "simplified" && t != "accuracy_checker" {
            return fail(format!("config {shown}: engine.type '{t}' is not supported (use 'simplified')"));
        }
    }
    // POT's default engine is the accuracy checker: a YAML (`config`) or inline launchers.
    let has = |k: &str| v.get("engine").and_then(|e| e.get(k)).is_some();
    if engine_type.as_deref() != Some("simplified") {
        paths.accuracy_checker = match s("engine", "config") {
            Some(c) => Some(format!("'{c}'")),
            None if has("launchers") || has("datasets") || engine_type.is_some() => Some("inline".into()),
            None => None,
        };
    }
    Ok((cfg, paths))
}

/// A config value as its JSON spelling (`null` shown as "default").
fn json_name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(serde_json::Value::Null) => "default".to_string(),
        Ok(other) => other.to_string(),
        Err(_) => "?".to_string(),
    }
}

/// Parses a config enum from its JSON spelling, naming the option on failure.
fn enum_value<T: serde::de::DeserializeOwned>(s: &str, option: &str) -> CliResult<T> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| CliError(format!("{option} '{s}' is not a known value")))
}

fn apply_plan_args(cfg: &mut QuantConfig, a: &PlanArgs) -> CliResult<()> {
    if let Some(p) = &a.preset {
        cfg.preset = enum_value(p, "--preset")?;
    }
    if let Some(t) = &a.target_device {
        cfg.target_device = enum_value(t, "--target-device")?;
    }
    if let Some(t) = &a.model_type {
        cfg.model_type = Some(enum_value(t, "--model-type")?);
    }
    if let Some(t) = &a.target_isa {
        cfg.target_isa = enum_value(t, "--target-isa")?;
    }
    if let Some(t) = &a.saturation_fix {
        cfg.saturation_fix = enum_value(t, "--saturation-fix")?;
    }
    for item in a.ignored_scope.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        if let Some(re) = item.strip_prefix("re:") {
            cfg.ignored.patterns.push(re.to_string());
        } else if let Some(t) = item.strip_prefix("type:") {
            cfg.ignored.types.push(IgnoredOperation { op_type: t.to_string(), ..Default::default() });
        } else {
            cfg.ignored.names.push(item.to_string());
        }
    }
    Ok(())
}

fn apply_overrides(cfg: &mut QuantConfig, a: &QuantizeArgs) -> CliResult<()> {
    if let Some(m) = a.method {
        cfg.algorithm = match m {
            Method::Default => Algorithm::Default,
            Method::AccuracyAware => Algorithm::AccuracyAware,
        };
    }
    apply_plan_args(cfg, &a.plan)?;
    if let Some(n) = a.subset_size {
        cfg.stat_subset_size = n;
    }
    if let Some(d) = a.max_drop {
        cfg.accuracy_aware.maximal_drop = d;
    }
    if a.keep_uncompressed_weights {
        cfg.compress_weights = false;
    }
    if let Some(b) = &a.backend {
        cfg.backend = enum_value(b, "--backend")?;
    }
    if let Some(l) = &a.openvino_lib {
        cfg.openvino.library = Some(l.clone());
    }
    cfg.validate()?;
    Ok(())
}

/// Creates the output folders and proves them writable, so a bad `--output-dir` fails before
/// the (long) quantization instead of after it.
fn prepare_output_dir(dir: &Path) -> CliResult<PathBuf> {
    let opt = dir.join("optimized");
    std::fs::create_dir_all(&opt)
        .map_err(|e| CliError(format!("--output-dir {}: cannot create {}: {e}", dir.display(), opt.display())))?;
    for d in [dir, opt.as_path()] {
        let probe = d.join(format!(".ovpot-write-check-{}", std::process::id()));
        std::fs::write(&probe, b"")
            .map_err(|e| CliError(format!("--output-dir {}: cannot write in {}: {e}", dir.display(), d.display())))?;
        // The probe is empty; failing to remove it does not affect the results.
        let _ = std::fs::remove_file(&probe);
    }
    Ok(opt)
}

/// Ignored-scope names and patterns that match no layer: usually a typo, and otherwise silent.
fn unmatched_scope(model: &Model, cfg: &QuantConfig) -> Vec<String> {
    let g = model.graph();
    let mut out = vec![];
    for n in &cfg.ignored.names {
        if !g.nodes.iter().any(|x| &x.name == n) {
            out.push(format!("ignored scope: no layer is named '{n}'"));
        }
    }
    for p in &cfg.ignored.patterns {
        // Anchored as the placement matches it.
        let Ok(re) = regex::Regex::new(&format!("^(?:{p})$")) else { continue };
        if !g.nodes.iter().any(|x| re.is_match(&x.name)) {
            out.push(format!("ignored scope: pattern '{p}' matches no layer"));
        }
    }
    out
}

fn cmd_quantize(a: &QuantizeArgs, log: Logger, visible: bool) -> CliResult<()> {
    if let Some(e) = a.engine.as_deref().filter(|e| *e != "simplified") {
        return fail(format!("--engine {e}: only 'simplified' (plain data folders) is available"));
    }
    let (mut cfg, paths) = match &a.config {
        Some(c) => read_config(c)?,
        None => (QuantConfig::default(), PotPaths::default()),
    };
    apply_overrides(&mut cfg, a)?;
    let xml = a.model.model.clone().or(paths.model.clone());
    let weights = a.model.weights.clone().or(paths.weights.clone());
    let model = read_model(&ModelArgs { model: xml.clone(), weights })?;
    let opt_dir = prepare_output_dir(&a.output_dir)?;
    let name = a
        .name
        .clone()
        .or(paths.name.clone())
        .or_else(|| xml.as_ref().and_then(|x| x.file_stem()).map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "model".to_string());
    let data_path = a.data.data.clone().or(paths.data.clone());
    if data_path.is_none() {
        if let Some(hint) = paths.engine_hint(cfg.algorithm) {
            return fail(hint);
        }
    }
    let data = open_data(data_path.as_deref(), &model, &a.data)?;
    if let Some(ac) = &paths.accuracy_checker {
        log.info(&format!("the config's accuracy-checker engine ({ac}) is not used; ovpot reads plain data folders"));
    }
    let mut warnings = paths.warnings.clone();
    warnings.extend(unmatched_scope(&model, &cfg));
    for w in &warnings {
        log.warn(w);
    }
    log.debug(&format!(
        "data: {} sample(s) from {}",
        data.len(),
        data_path.as_deref().unwrap_or(Path::new("")).display()
    ));
    log.debug(&format!("settings: {}", serde_json::to_string(&cfg).unwrap_or_default()));
    log.info(&format!(
        "quantizing '{name}' ({}, preset {}, device {}) on {} samples",
        json_name(&cfg.algorithm),
        json_name(&cfg.effective_preset()),
        json_name(&cfg.target_device),
        data.len().min(cfg.stat_subset_size)
    ));

    let mut session = Session::new(&model, cfg.clone())?;
    // Shared so that log lines print above the bar instead of through it.
    let bars = std::sync::Arc::new(std::sync::Mutex::new(StageBars { visible, current: None }));
    let progress_bars = bars.clone();
    session.hooks.progress = Some(Box::new(move |stage, done, total| match progress_bars.lock() {
        Ok(mut b) => b.update(stage, done, total),
        Err(_) => true,
    }));
    session.hooks.log = Some(Box::new(move |level, msg| match bars.lock() {
        Ok(b) => match &b.current {
            Some((_, bar)) => bar.suspend(|| log.log(level, msg)),
            None => log.log(level, msg),
        },
        Err(_) => log.log(level, msg),
    }));
    session.hooks.log_level = Some(log.level);

    let mut outcome = match cfg.algorithm {
        Algorithm::Default => session.quantize(data.as_ref())?,
        Algorithm::AccuracyAware => {
            let eval_path = a.eval_data.clone().or(paths.eval_data.clone()).or(data_path.clone());
            let Some(labels_path) = a.labels.clone().or(paths.labels.clone()) else {
                return fail(
                    paths
                        .engine_hint(cfg.algorithm)
                        .unwrap_or_else(|| "accuracy-aware quantization needs --labels labels.npy".into()),
                );
            };
            let k = a.metric_output.or(paths.metric_output).unwrap_or(0);
            check_metric_output(&model, k)?;
            let eval = open_data(eval_path.as_deref(), &model, &a.data)?;
            let labels = read_labels(&labels_path)?;
            check_labels(&labels, eval.len(), &labels_path)?;
            let mut metric = Top1Accuracy::new(labels, k);
            session.quantize_with_accuracy_control(data.as_ref(), eval.as_ref(), &mut metric)?
        }
    };
    drop(session);
    outcome.report.warnings.extend(warnings);

    let out_xml = opt_dir.join(format!("{name}.xml"));
    outcome.model.save(&out_xml, None)?;
    let report_path = a.output_dir.join("report.json");
    let report = serde_json::to_string_pretty(&outcome.report).map_err(|e| CliError(format!("report: {e}")))?;
    std::fs::write(&report_path, report + "\n").map_err(|e| ovpot::Error::io(&report_path, e))?;
    log.info(&format!(
        "wrote {} ({} quantizers, {} layers quantized) and {}",
        out_xml.display(),
        outcome.report.fake_quantize.len(),
        outcome.report.quantized_layers.len(),
        report_path.display()
    ));
    if let Some(acc) = &outcome.report.accuracy {
        log.info(&format!(
            "metric: FP32 {:.4}, default INT8 {:.4}, final {:.4} (drop {:.4}, allowed {:.4})",
            acc.baseline, acc.default_quantized, acc.final_metric, acc.drop, acc.maximal_drop
        ));
    }
    if !outcome.accuracy_reached {
        log.warn("the accuracy target was not reached; the model written is the best found");
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = if cli.quiet { LogLevel::Warning.min(cli.log_level.level()) } else { cli.log_level.level() };
    let log = Logger { level };
    let visible = bars_visible(cli.quiet);
    let result = match &cli.command {
        Command::Quantize(a) => cmd_quantize(a, log, visible),
        Command::Infer(a) => cmd_infer(a, log, visible),
        Command::Evaluate(a) => cmd_evaluate(a, log, visible),
        Command::Info(a) => cmd_info(a),
        Command::Convert(a) => cmd_convert(a, log),
    };
    if ovpot::engine::profile::enabled() {
        // OVPOT_PROFILE=1: where the engine spent its time, by op type (summed over threads).
        for (op, secs, calls) in ovpot::engine::profile::report().iter().take(15) {
            eprintln!("profile: {op:<24} {secs:>9.3} s {calls:>9} calls");
        }
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError(msg)) => {
            eprintln!("error: {}", msg.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_are_stripped_outside_strings() {
        let t = "{ /* a */ \"k\": \"x//y\", // tail\n \"j\": 1 /* b\n c */ }";
        let v: serde_json::Value = serde_json::from_str(&strip_json_comments(t)).unwrap();
        assert_eq!(v["k"], "x//y");
        assert_eq!(v["j"], 1);
    }

    #[test]
    fn values_parse() {
        assert_eq!(parse_values("[1, 2.5,3]", "--mean").unwrap(), vec![1.0, 2.5, 3.0]);
        assert!(parse_values("1,x", "--mean").is_err());
    }
}
