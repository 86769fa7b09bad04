//! The Rust API that the C ABI and the CLI wrap: models, datasets, metrics, sessions, reports.

use crate::engine::Plan;
use crate::error::{Error, Result};
use crate::graph::{Graph, PartialShape};
use crate::quant::config::QuantConfig;
use crate::tensor::{ElementType, Tensor};
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;

/// Name, element type and (partial) shape of a model input or output.
#[derive(Clone, Debug, PartialEq)]
pub struct PortDesc {
    pub name: String,
    pub element_type: ElementType,
    pub shape: PartialShape,
}

/// An OpenVINO model (IR graph plus weights). Cheap to clone: constants are shared.
#[derive(Clone, Debug)]
pub struct Model {
    graph: Arc<Graph>,
}

impl Model {
    pub fn from_graph(graph: Graph) -> Self {
        Model { graph: Arc::new(graph) }
    }
    /// Reads `xml` and its weights (`bin`, default: `xml` with `.bin`).
    pub fn read(xml: &Path, bin: Option<&Path>) -> Result<Model> {
        Ok(Self::from_graph(crate::ir::read_model(xml, bin)?))
    }
    /// Reads from memory, as `ov_core_read_model_from_memory_buffer` takes a model.
    pub fn from_memory(xml: &[u8], weights: &[u8]) -> Result<Model> {
        Ok(Self::from_graph(crate::ir::read_model_from_memory(xml, weights)?))
    }
    /// Writes IR v11 atomically (both files appear complete or not at all).
    pub fn save(&self, xml: &Path, bin: Option<&Path>) -> Result<()> {
        crate::ir::write_model(&self.graph, xml, bin)
    }
    /// Serializes to IR text and weights in memory.
    pub fn to_memory(&self) -> Result<(String, Vec<u8>)> {
        crate::ir::serialize(&self.graph)
    }
    pub fn graph(&self) -> &Graph {
        &self.graph
    }
    pub fn name(&self) -> &str {
        &self.graph.name
    }
    pub fn inputs(&self) -> Vec<PortDesc> {
        self.graph
            .parameters()
            .into_iter()
            .map(|p| {
                let info = &self.graph.nodes[p].outputs[0];
                PortDesc {
                    name: self.graph.parameter_name(p).to_string(),
                    element_type: info.element_type,
                    shape: info.shape.clone(),
                }
            })
            .collect()
    }
    pub fn outputs(&self) -> Vec<PortDesc> {
        self.graph
            .results()
            .into_iter()
            .map(|r| {
                let n = &self.graph.nodes[r];
                let src = n.inputs[0];
                let info = self.graph.outlet_info(src);
                let name = info.names.first().cloned().unwrap_or_else(|| self.graph.nodes[src.node].name.clone());
                PortDesc { name, element_type: info.element_type, shape: info.shape.clone() }
            })
            .collect()
    }
    /// A plan for running this model with the built-in engine.
    pub fn plan(&self) -> Result<Plan> {
        Plan::new(&self.graph)
    }
    /// The model rewritten to compute what OpenVINO's CPU plugin computes for it where that
    /// differs from FakeQuantize semantics ([`crate::quant::cpu_plugin`]), and the names of the
    /// FakeQuantize nodes that changed. For judging an INT8 IR in the built-in engine as the
    /// runtime will run it; not for saving.
    pub fn emulating_cpu_plugin(&self) -> (Model, Vec<String>) {
        let (m, e) = self.emulating_cpu(crate::quant::isa::Int8Arithmetic::Exact);
        (m, e.unrounded)
    }

    /// [`Model::emulating_cpu_plugin`] on a CPU with the given int8 arithmetic: without VNNI,
    /// int8 convolutions and MatMuls also saturate their 16-bit pair sums as the plugin's kernels
    /// do ([`crate::quant::isa`]).
    pub fn emulating_cpu(
        &self,
        arithmetic: crate::quant::isa::Int8Arithmetic,
    ) -> (Model, crate::quant::cpu_plugin::Emulation) {
        let mut g = (*self.graph).clone();
        let e = crate::quant::cpu_plugin::emulate_for(&mut g, arithmetic);
        (Model::from_graph(g), e)
    }
}

/// One sample: a tensor per model input, by input name.
pub type Sample = Vec<(String, Tensor)>;

/// A source of samples. `get` may be called from any thread (the C wrapper serializes calls).
pub trait Dataset: Send + Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Sample `index` (0 ≤ index < len). Tensors carry the model's batch dim (usually 1).
    fn get(&self, index: usize) -> Result<Sample>;
}

/// Samples held in memory.
#[derive(Clone, Debug, Default)]
pub struct InMemoryDataset {
    pub samples: Vec<Sample>,
}

impl Dataset for InMemoryDataset {
    fn len(&self) -> usize {
        self.samples.len()
    }
    fn get(&self, index: usize) -> Result<Sample> {
        self.samples
            .get(index)
            .cloned()
            .ok_or_else(|| Error::invalid(format!("sample {index} out of range (len {})", self.samples.len())))
    }
}

/// A user metric over model outputs. Higher is better unless `higher_is_better` says otherwise.
pub trait Metric: Send {
    fn reset(&mut self);
    /// Accumulates the outputs (model order) of sample `index`.
    fn update(&mut self, index: usize, outputs: &[Tensor]) -> Result<()>;
    /// The metric over everything since `reset`.
    fn value(&mut self) -> Result<f64>;
    fn higher_is_better(&self) -> bool {
        true
    }
    /// Per-sample values of the last `update` calls in index order, when the metric has them
    /// (used to rank layers); `None` means rank by output error.
    fn per_sample(&mut self) -> Option<Vec<f64>> {
        None
    }
}

/// Top-1 accuracy of output `output` against integer labels.
#[derive(Clone, Debug)]
pub struct Top1Accuracy {
    pub labels: Vec<i64>,
    pub output: usize,
    hits: Vec<(usize, f64)>,
}

impl Top1Accuracy {
    pub fn new(labels: Vec<i64>, output: usize) -> Self {
        Top1Accuracy { labels, output, hits: vec![] }
    }
}

/// Index of the largest value (first on ties), over the last axis flattened.
pub fn argmax(t: &Tensor) -> usize {
    let v = t.to_f64_vec();
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

impl Metric for Top1Accuracy {
    fn reset(&mut self) {
        self.hits.clear();
    }
    fn update(&mut self, index: usize, outputs: &[Tensor]) -> Result<()> {
        let out = outputs.get(self.output).ok_or_else(|| {
            Error::invalid(format!("metric output {} but the model has {}", self.output, outputs.len()))
        })?;
        let label = *self
            .labels
            .get(index)
            .ok_or_else(|| Error::invalid(format!("no label for sample {index} ({} labels)", self.labels.len())))?;
        let hit = (argmax(out) as i64 == label) as u8 as f64;
        self.hits.push((index, hit));
        Ok(())
    }
    fn value(&mut self) -> Result<f64> {
        if self.hits.is_empty() {
            return Err(Error::invalid("accuracy of zero samples"));
        }
        Ok(self.hits.iter().map(|h| h.1).sum::<f64>() / self.hits.len() as f64)
    }
    fn per_sample(&mut self) -> Option<Vec<f64>> {
        let mut h = self.hits.clone();
        h.sort_by_key(|x| x.0);
        Some(h.into_iter().map(|x| x.1).collect())
    }
}

/// Long-running stages reported to progress callbacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(C)]
pub enum Stage {
    Statistics = 0,
    BiasCorrection = 1,
    Evaluation = 2,
    Ranking = 3,
    AccuracyAware = 4,
    SmoothQuant = 5,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Statistics => "statistics",
            Stage::BiasCorrection => "bias correction",
            Stage::Evaluation => "evaluation",
            Stage::Ranking => "ranking",
            Stage::AccuracyAware => "accuracy-aware",
            Stage::SmoothQuant => "smooth quant",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[repr(C)]
pub enum LogLevel {
    Error = 0,
    Warning = 1,
    Info = 2,
    Debug = 3,
}

/// Progress: return false to cancel. Called on the thread that runs the session.
pub type ProgressFn = dyn FnMut(Stage, usize, usize) -> bool + Send;
/// Log sink. Called on the thread that runs the session.
pub type LogFn = dyn FnMut(LogLevel, &str) + Send;

/// Hooks a session reports through.
#[derive(Default)]
pub struct Hooks {
    pub progress: Option<Box<ProgressFn>>,
    pub log: Option<Box<LogFn>>,
    pub log_level: Option<LogLevel>,
}

impl Hooks {
    /// Reports progress; an error when the user cancels.
    pub fn progress(&mut self, stage: Stage, done: usize, total: usize) -> Result<()> {
        if let Some(p) = self.progress.as_mut() {
            if !p(stage, done, total) {
                return Err(Error::Cancelled(format!("cancelled during {} at {done}/{total}", stage.name())));
            }
        }
        Ok(())
    }
    pub fn log(&mut self, level: LogLevel, msg: &str) {
        if level <= self.log_level.unwrap_or(LogLevel::Info) {
            if let Some(l) = self.log.as_mut() {
                l(level, msg);
            }
        }
    }
}

/// What a quantization run did; serialized to JSON for the C API and the CLI.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub algorithm: String,
    /// The inference backend: "builtin", or "openvino <version>".
    pub backend: String,
    pub preset: String,
    pub target_device: String,
    pub model_type: Option<String>,
    /// Why the model was taken for a transformer when the configuration did not say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_type_detected: Option<String>,
    pub samples_used: usize,
    /// FakeQuantize inserted: one entry per FQ.
    pub fake_quantize: Vec<FqInfo>,
    /// Layers that got int8 weights/inputs.
    pub quantized_layers: Vec<String>,
    /// Layers left in floating point and why.
    pub ignored: Vec<IgnoredInfo>,
    /// Seconds per stage.
    pub timings: Vec<(String, f64)>,
    pub inferences: usize,
    pub accuracy: Option<AccuracyReport>,
    /// The int8 arithmetic assumed for the target CPU and what it decided.
    pub int8_arithmetic: Option<Int8ArithmeticReport>,
    /// FP32 and INT8 latency as OpenVINO measures them on this CPU (OpenVINO backend only).
    pub latency: Option<LatencyReport>,
    pub warnings: Vec<String>,
}

/// One inference at a time, in OpenVINO on the CPU that ran the quantization.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LatencyReport {
    /// Median milliseconds per inference.
    pub fp32_ms: f64,
    pub int8_ms: f64,
    /// fp32_ms / int8_ms: above 1 when INT8 pays here.
    pub speedup: f64,
    /// Threads OpenVINO used (0: all cores).
    pub threads: usize,
}

/// The target CPU's int8 arithmetic (`target_isa`) and the saturation fix it led to.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Int8ArithmeticReport {
    /// `avx2` (no VNNI: 16-bit saturating pair sums), `vnni` (exact) or `none` (not a CPU target).
    pub target_isa: String,
    /// Why: "asked ..." or "detected: ...".
    pub reason: String,
    /// The `saturation_fix` mode in effect.
    pub saturation_fix: String,
    /// Layers given 7-bit weights.
    pub seven_bit_layers: Vec<String>,
    /// Per layer whose 8-bit weights can saturate: the errors measured both ways (auto mode).
    pub measured: Vec<crate::quant::saturation::LayerChoice>,
    /// Groups whose choice the model's output decided (auto mode on CPU targets): the first layers.
    pub output_checks: Vec<crate::quant::saturation::GroupChoice>,
    /// Layers left with 8-bit weights whose pair sums can saturate on the target.
    pub saturating_layers: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct FqInfo {
    pub name: String,
    /// The op input this FQ feeds (`layer:input`), or the weights of `layer`.
    pub target: String,
    pub kind: String,
    pub levels: usize,
    pub per_channel: bool,
    pub input_low: f32,
    pub input_high: f32,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct IgnoredInfo {
    pub name: String,
    pub op_type: String,
    pub reason: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct AccuracyReport {
    pub baseline: f64,
    pub default_quantized: f64,
    pub final_metric: f64,
    pub drop: f64,
    pub maximal_drop: f64,
    pub reached: bool,
    pub iterations: usize,
    pub reverted: Vec<RevertedLayer>,
    pub int8_share: f64,
    /// Rankings run only what a revert changes: the share of the model's ops a candidate ran
    /// again, averaged over candidates, one value per ranking.
    pub ranking_op_share: Vec<f64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct RevertedLayer {
    pub name: String,
    pub metric_after: f64,
}

/// The result of a session: the quantized model, its report and whether accuracy control
/// reached its target (always true for default quantization).
#[derive(Clone, Debug)]
pub struct Outcome {
    pub model: Model,
    pub report: Report,
    pub accuracy_reached: bool,
}

/// A quantization session over one model.
pub struct Session {
    model: Model,
    pub config: QuantConfig,
    pub hooks: Hooks,
}

impl Session {
    pub fn new(model: &Model, config: QuantConfig) -> Result<Session> {
        config.validate()?;
        Ok(Session { model: model.clone(), config, hooks: Hooks::default() })
    }
    pub fn model(&self) -> &Model {
        &self.model
    }
    /// DefaultQuantization on `calibration`.
    pub fn quantize(&mut self, calibration: &dyn Dataset) -> Result<Outcome> {
        crate::quant::default_quantization(&self.model, &self.config, calibration, &mut self.hooks)
    }
    /// AccuracyAwareQuantization: default quantization, then revert layers until `metric` on
    /// `evaluation` is within `maximal_drop` of FP32.
    pub fn quantize_with_accuracy_control(
        &mut self,
        calibration: &dyn Dataset,
        evaluation: &dyn Dataset,
        metric: &mut dyn Metric,
    ) -> Result<Outcome> {
        crate::quant::accuracy_aware(&self.model, &self.config, calibration, evaluation, metric, &mut self.hooks)
    }
}
