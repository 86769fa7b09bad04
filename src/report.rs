//! What a quantization run did: the report (JSON for the C API and the CLI) and the outcome.

use crate::model::Model;
use serde::Serialize;

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
    /// Who computed INT8 outputs where this run judged them (saturation checks, bias correction,
    /// accuracy-aware candidates): the default judge of `ovpot_session_evaluate`.
    pub judge: String,
    /// The int8 arithmetic assumed for the target CPU and what it decided.
    pub int8_arithmetic: Option<Int8ArithmeticReport>,
    /// FP32 and INT8 latency as OpenVINO measures them on this CPU (OpenVINO backend only).
    pub latency: Option<LatencyReport>,
    pub warnings: Vec<String>,
    /// Per quantized layer, in short: the ranges its inputs got against the values the first
    /// calibration samples gave them, and its weights' error (`ovpot analyze` says more).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerFacts>,
}

/// One quantized layer's quantizers, in short.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LayerFacts {
    pub layer: String,
    pub inputs: Vec<InputRange>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights: Option<WeightFacts>,
}

/// An activation quantizer's range against the values seen on the first calibration samples.
#[derive(Clone, Debug, Default, Serialize)]
pub struct InputRange {
    /// The tensor quantized: `producer:port`.
    pub tensor: String,
    pub range_low: f32,
    pub range_high: f32,
    pub seen_min: f32,
    pub seen_max: f32,
    /// Share of the values seen outside the range.
    pub clipped_share: f64,
}

/// A quantized weight's grid and error.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WeightFacts {
    /// 8, or 7 where the saturation fix halved the range.
    pub bits: u32,
    /// SQNR (dB) of the quantized weight: its worst output channel and the mean over channels.
    pub min_sqnr_db: f64,
    pub mean_sqnr_db: f64,
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
    pub measured: Vec<LayerChoice>,
    /// Groups whose choice the model's output decided (auto mode on CPU targets): the first layers.
    pub output_checks: Vec<GroupChoice>,
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
    /// The allowed drop: the config key `maximal_drop` (POT's name; `--max-drop` on the command
    /// line, `ovpot_session_set_max_drop` in C).
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

/// One layer's measurement.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerChoice {
    pub layer: String,
    /// Mean squared output error with 8-bit weights on the saturating CPU.
    pub error_8bit: f64,
    /// Mean squared output error with 8-bit weights summed exactly (a VNNI CPU).
    pub error_8bit_exact: f64,
    /// Mean squared output error with 7-bit weights.
    pub error_7bit: f64,
    /// Whether the layer got 7-bit weights.
    pub seven_bit: bool,
}

/// A group of layers whose 7- or 8-bit weights were chosen by the model's output.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GroupChoice {
    /// Which group ("first layers").
    pub group: String,
    pub layers: Vec<String>,
    /// The model's SQNR against FP32 (dB, the mean over its outputs, so that each output counts
    /// whatever its scale) with the group's weights in 8 and in 7 bits, the other layers as
    /// decided before.
    pub output_sqnr_db_8bit: f64,
    pub output_sqnr_db_7bit: f64,
    pub seven_bit: bool,
}
