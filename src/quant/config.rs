//! Quantization settings, read by serde from POT-style JSON (or built in code).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    #[default]
    #[serde(alias = "DefaultQuantization", alias = "default")]
    Default,
    #[serde(alias = "AccuracyAwareQuantization", alias = "accuracy_aware")]
    AccuracyAware,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// Symmetric weights and activations.
    #[default]
    Performance,
    /// Symmetric weights, asymmetric activations.
    Mixed,
    /// Asymmetric weights and activations (POT's `accuracy`; where the target device runs
    /// asymmetric weights: CPU, GPU, ANY).
    Accuracy,
}

/// POT's `mode` of a quantizer block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuantMode {
    Symmetric,
    Asymmetric,
}

/// POT's `granularity` of a quantizer block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    #[serde(alias = "per_channel")]
    Perchannel,
    #[serde(alias = "per_tensor")]
    Pertensor,
}

/// POT's `weights` block: how weights are quantized. Unset fields take the preset's and the
/// device's choice (8 bits, per output channel, symmetric but for the `accuracy` preset).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct WeightOptions {
    pub mode: Option<QuantMode>,
    pub granularity: Option<Granularity>,
    /// 2..=8: OpenVINO's int8 kernels take at most 8-bit weights.
    pub bits: Option<u32>,
    /// The integer grid, as POT reads it: `levels = |level_low| + |level_high| + 1`.
    pub level_low: Option<i64>,
    pub level_high: Option<i64>,
}

impl WeightOptions {
    /// The number of quantization levels, POT's `compute_levels` for weights.
    pub fn levels(&self, symmetric: bool) -> usize {
        let full = 1i64 << self.bits.unwrap_or(8);
        let low = self.level_low.unwrap_or(if symmetric { -full / 2 + 1 } else { -full / 2 });
        let high = self.level_high.unwrap_or(full / 2 - 1);
        (low.abs() + high.abs() + 1) as usize
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[allow(clippy::upper_case_acronyms, non_camel_case_types)]
pub enum TargetDevice {
    #[default]
    #[serde(alias = "any")]
    ANY,
    #[serde(alias = "cpu")]
    CPU,
    #[serde(alias = "CPU_SPR", alias = "cpu_spr")]
    CPU_SPR,
    #[serde(alias = "gpu")]
    GPU,
    #[serde(alias = "VPU", alias = "npu", alias = "vpu")]
    NPU,
    #[serde(alias = "gna", alias = "GNA3", alias = "GNA3.5")]
    GNA,
}

impl TargetDevice {
    /// Whether the device's quantization scheme allows weights with a zero point (GNA's
    /// does not).
    pub fn runs_asymmetric_weights(self) -> bool {
        self != TargetDevice::GNA
    }

    /// Devices served by the CPU plugin's (and GPU's) int8 kernels, which take symmetric
    /// weights only: POT 2023 turns the `accuracy` preset into `mixed` for them.
    pub fn runs_weights_in_float_with_zero_point(self) -> bool {
        matches!(self, TargetDevice::CPU | TargetDevice::CPU_SPR | TargetDevice::GPU | TargetDevice::ANY)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelType {
    Transformer,
    /// Not a transformer, whatever the graph looks like: turns off ovpot's detection (without
    /// `model_type`, a graph with attention is quantized as a transformer).
    General,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SaturationFix {
    /// ovpot's default: on a target without VNNI, 7-bit weights for the layers whose
    /// saturation costs more than the lost weight bit (measured per layer on calibration data,
    /// the first layers and the layers left saturating judged by the model's output); the
    /// first-layer fix on a VNNI target.
    #[default]
    Auto,
    /// `auto` without judging the layers left saturating by the output: each layer by its own
    /// measurement alone (the first layers still by the output).
    PerLayer,
    /// 7-bit weights for the first layer(s) (POT's and NNCF's default).
    #[serde(alias = "first_layer_only")]
    FirstLayer,
    /// 7-bit weights everywhere (NNCF `overflow_fix=enable`).
    #[serde(alias = "enable")]
    All,
    /// 8-bit weights everywhere.
    #[serde(alias = "disable")]
    No,
}

/// The int8 arithmetic of the target CPU (see [`crate::quant::isa`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TargetIsa {
    /// The CPU ovpot runs on (capped by `ONEDNN_MAX_CPU_ISA` like OpenVINO).
    #[default]
    Auto,
    /// Any x86 CPU without VNNI (SSE4.1, AVX2, AVX-512 without VNNI): saturating pair sums.
    #[serde(alias = "AVX2", alias = "sse41", alias = "avx512_core", alias = "no_vnni")]
    Avx2,
    /// AVX-VNNI, AVX-512 VNNI, AMX: exact sums.
    #[serde(alias = "VNNI", alias = "avx512_vnni", alias = "avx_vnni", alias = "amx")]
    Vnni,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DropType {
    #[default]
    Absolute,
    Relative,
}

/// How AccuracyAwareQuantization ranks the groups it may revert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Ranking {
    /// By the output error left after reverting a group (normalized MSE against FP32 on the
    /// ranking subset). Smooth: it does not chase single samples that flip.
    #[default]
    OutputError,
    /// By the metric on the ranking subset after reverting a group (NNCF's metric mode), output
    /// error breaking ties; needs a metric with per-sample values, else output error is used.
    Metric,
}

pub use crate::graph::ignored::{IgnoredOperation, IgnoredScope};

/// One border's estimator: `type` min|max|abs_max|quantile|abs_quantile, an aggregator over
/// samples and the outlier probability for the quantile types.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct Estimator {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub aggregator: Option<String>,
    #[serde(default)]
    pub outlier_prob: Option<f64>,
    /// Per-channel (true) or per-tensor statistics.
    #[serde(default)]
    pub granularity: Option<String>,
    /// POT's `clipping_value`: the max border is at most this, the min border at least this.
    #[serde(default)]
    pub clipping_value: Option<f64>,
}

impl Estimator {
    /// POT's `clip_stat`: a max border clipped from above, a min border from below.
    pub fn clip(&self, v: f64, is_min: bool) -> f64 {
        match self.clipping_value {
            Some(c) if is_min => v.max(c),
            Some(c) => v.min(c),
            None => v,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct RangeEstimator {
    pub min: Option<Estimator>,
    pub max: Option<Estimator>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct RangeEstimators {
    pub activations: Option<RangeEstimator>,
    pub weights: Option<RangeEstimator>,
}

/// AccuracyAwareQuantization parameters, as POT names them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AccuracyAwareConfig {
    pub maximal_drop: f64,
    pub drop_type: DropType,
    pub ranking_subset_size: usize,
    pub max_iter_num: usize,
    pub use_prev_if_drop_increase: bool,
    pub convert_to_mixed_preset: bool,
    pub metric_subset_ratio: f64,
    pub ranking: Ranking,
    /// The FP32 metric when already known (skips one evaluation).
    pub baseline_metric: Option<f64>,
    /// Evaluate candidates as OpenVINO's CPU plugin runs them ([`crate::backend::cpu_plugin`]);
    /// applies when the target device is CPU or ANY.
    pub emulate_cpu_plugin: bool,
    /// POT's `annotation_free`: no labels; the metric is top-1 agreement with the FP32 model's
    /// predictions on the evaluation samples it is confident about (any metric given is not
    /// used).
    pub annotation_free: bool,
    /// POT's `annotation_conf_threshold`: a sample is kept when the FP32 model's top score
    /// (softmax applied when the scores are not already in [0, 1]) is above it.
    pub annotation_conf_threshold: f64,
    /// The model output whose argmax is the class (annotation-free mode).
    pub annotation_output: usize,
    /// POT's `tune_hyperparams`: when the default model misses the drop, try POT's grid of
    /// range-estimator settings and bias-correction kinds before reverting layers.
    pub tune_hyperparams: bool,
}

impl Default for AccuracyAwareConfig {
    fn default() -> Self {
        AccuracyAwareConfig {
            maximal_drop: 0.01,
            drop_type: DropType::Absolute,
            ranking_subset_size: 300,
            max_iter_num: usize::MAX,
            use_prev_if_drop_increase: true,
            convert_to_mixed_preset: false,
            metric_subset_ratio: 0.5,
            ranking: Ranking::OutputError,
            baseline_metric: None,
            emulate_cpu_plugin: true,
            annotation_free: false,
            annotation_conf_threshold: 0.6,
            annotation_output: 0,
            tune_hyperparams: false,
        }
    }
}

/// Everything that steers a quantization run. Defaults are POT's DefaultQuantization defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct QuantConfig {
    pub algorithm: Algorithm,
    /// `None`: performance, or mixed for `model_type: transformer` (as NNCF chooses).
    pub preset: Option<Preset>,
    pub target_device: TargetDevice,
    pub stat_subset_size: usize,
    /// POT's `shuffle_data`: the statistics subset is drawn at random (by `seed`) instead of
    /// being the first `stat_subset_size` samples.
    pub shuffle_data: bool,
    /// POT's `seed` for `shuffle_data` (POT's default: 0); the same seed gives the same subset.
    pub seed: u64,
    pub model_type: Option<ModelType>,
    pub ignored: IgnoredScope,
    /// FastBiasCorrection (true) or full BiasCorrection (false).
    pub use_fast_bias: bool,
    /// Set false to skip bias correction altogether.
    pub bias_correction: bool,
    pub saturation_fix: SaturationFix,
    /// The int8 arithmetic of the CPU the model will run on (CPU and ANY targets).
    pub target_isa: TargetIsa,
    pub range_estimator: RangeEstimators,
    /// POT's `weights` block: mode, granularity, bits, levels.
    pub weights: WeightOptions,
    /// Save weights as int8 constants with a dequantization subgraph (true) or as FP32 with FQ.
    pub compress_weights: bool,
    /// SmoothQuant alpha for MatMul in transformers (NNCF: 0.95); negative disables it.
    pub smooth_quant_alpha: f64,
    /// FastBiasCorrection threshold (POT: 2.0).
    pub bias_correction_threshold: f64,
    /// AccuracyAwareQuantization's settings.
    pub accuracy_aware: AccuracyAwareConfig,
    /// Data-free mode chose the activation range estimators: both data-free candidates are
    /// tried and judged on the synthetic images ([`crate::quant::data_free`]).
    pub data_free_ranges: bool,
    /// Threads for the engine; 0 = all cores.
    pub threads: usize,
    /// Which engine runs statistics, bias correction and accuracy-aware verdicts.
    pub backend: crate::backend::BackendKind,
    /// Where OpenVINO is when `backend` is `openvino` (not part of a config file).
    #[serde(skip)]
    pub openvino: crate::backend::OpenVinoOptions,
}

impl Default for QuantConfig {
    fn default() -> Self {
        QuantConfig {
            algorithm: Algorithm::Default,
            preset: None,
            target_device: TargetDevice::ANY,
            stat_subset_size: 300,
            shuffle_data: false,
            seed: 0,
            model_type: None,
            ignored: IgnoredScope::default(),
            use_fast_bias: true,
            bias_correction: true,
            saturation_fix: SaturationFix::Auto,
            target_isa: TargetIsa::Auto,
            range_estimator: RangeEstimators::default(),
            weights: WeightOptions::default(),
            compress_weights: true,
            smooth_quant_alpha: 0.95,
            bias_correction_threshold: 2.0,
            accuracy_aware: AccuracyAwareConfig::default(),
            data_free_ranges: false,
            threads: 0,
            backend: Default::default(),
            openvino: Default::default(),
        }
    }
}

fn take<T: serde::de::DeserializeOwned>(
    v: &serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Result<Option<T>> {
    match v.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(x) => {
            serde_json::from_value(x.clone()).map(Some).map_err(|e| Error::parse("config", format!("'{key}': {e}")))
        }
    }
}

/// A `maximal_drop` that cannot be met or compared. The setting is POT's `maximal_drop` in every
/// message; the message also names how each door spells it, so the user finds what to type.
pub fn maximal_drop_error(value: f64) -> Error {
    Error::invalid(format!(
        "maximal_drop must be a finite number >= 0, got {value} (the config key 'maximal_drop'; --max-drop on the \
         command line, ovpot_session_set_max_drop in C, max_drop= in Python)"
    ))
}

/// Estimator types and aggregators the statistics implement.
const ESTIMATOR_TYPES: [&str; 5] = ["min", "max", "abs_max", "quantile", "abs_quantile"];
const AGGREGATORS: [&str; 8] =
    ["mean", "min", "max", "median", "mean_no_outliers", "median_no_outliers", "max_no_outliers", "min_no_outliers"];
/// Keys of POT's `activations` / `weights` blocks.
const BLOCK_KEYS: [&str; 6] = ["bits", "mode", "granularity", "level_low", "level_high", "range_estimator"];

fn check_estimator(e: &Estimator, at: &str) -> Result<()> {
    if let Some(k) = e.kind.as_deref().filter(|k| !ESTIMATOR_TYPES.contains(k)) {
        return Err(Error::invalid(format!("'{at}.type' '{k}': expected one of {}", ESTIMATOR_TYPES.join(", "))));
    }
    if let Some(a) = e.aggregator.as_deref().filter(|a| !AGGREGATORS.contains(a)) {
        return Err(Error::invalid(format!("'{at}.aggregator' '{a}': expected one of {}", AGGREGATORS.join(", "))));
    }
    if let Some(c) = e.clipping_value.filter(|c| !c.is_finite()) {
        return Err(Error::invalid(format!("'{at}.clipping_value' {c}: expected a finite number")));
    }
    if let Some(p) = e.outlier_prob.filter(|p| !(0.0..0.5).contains(p)) {
        return Err(Error::invalid(format!("'{at}.outlier_prob' {p}: expected a probability in [0, 0.5)")));
    }
    Ok(())
}

/// POT's DefaultQuantization and AccuracyAwareQuantization params with a plain value: each key
/// once, with its type and where it goes. The keys are the struct's fields, so the list of
/// applied keys ([`applied_params`]) cannot drift from what is applied.
macro_rules! pot_params {
    ($($key:ident: $ty:ty => |$c:ident, $x:ident| $apply:expr;)*) => {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct PotParams {
            $($key: Option<$ty>,)*
        }

        impl PotParams {
            const KEYS: &'static [&'static str] = &[$(stringify!($key)),*];

            /// Reads `p` (other keys are left alone); a wrong value names its key.
            fn read(p: &serde_json::Map<String, serde_json::Value>) -> Result<PotParams> {
                for (k, v) in p.iter().filter(|(k, _)| Self::KEYS.contains(&k.as_str())) {
                    let one = serde_json::Value::Object([(k.clone(), v.clone())].into_iter().collect());
                    serde_json::from_value::<PotParams>(one).map_err(|e| Error::parse("config", format!("'{k}': {e}")))?;
                }
                let known = p.iter().filter(|(k, _)| Self::KEYS.contains(&k.as_str()));
                let all = serde_json::Value::Object(known.map(|(k, v)| (k.clone(), v.clone())).collect());
                serde_json::from_value(all).map_err(|e| Error::parse("config", e.to_string()))
            }

            fn apply_to(self, config: &mut QuantConfig) {
                $(if let Some($x) = self.$key {
                    let $c = &mut *config;
                    $apply;
                })*
            }
        }
    };
}

pot_params! {
    preset: Preset => |c, x| c.preset = Some(x);
    target_device: TargetDevice => |c, x| c.target_device = x;
    target_isa: TargetIsa => |c, x| c.target_isa = x;
    backend: crate::backend::BackendKind => |c, x| c.backend = x;
    stat_subset_size: usize => |c, x| c.stat_subset_size = x;
    shuffle_data: bool => |c, x| c.shuffle_data = x;
    seed: u64 => |c, x| c.seed = x;
    model_type: ModelType => |c, x| c.model_type = Some(x);
    ignored: IgnoredScope => |c, x| c.ignored = x;
    use_fast_bias: bool => |c, x| c.use_fast_bias = x;
    saturation_fix: SaturationFix => |c, x| c.saturation_fix = x;
    threshold: f64 => |c, x| c.bias_correction_threshold = x;
    compress_weights: bool => |c, x| c.compress_weights = x;
    maximal_drop: f64 => |c, x| c.accuracy_aware.maximal_drop = x;
    drop_type: DropType => |c, x| c.accuracy_aware.drop_type = x;
    ranking_subset_size: usize => |c, x| c.accuracy_aware.ranking_subset_size = x;
    max_iter_num: usize => |c, x| c.accuracy_aware.max_iter_num = x;
    use_prev_if_drop_increase: bool => |c, x| c.accuracy_aware.use_prev_if_drop_increase = x;
    convert_to_mixed_preset: bool => |c, x| c.accuracy_aware.convert_to_mixed_preset = x;
    metric_subset_ratio: f64 => |c, x| c.accuracy_aware.metric_subset_ratio = x;
    ranking: Ranking => |c, x| c.accuracy_aware.ranking = x;
    baseline_metric: f64 => |c, x| c.accuracy_aware.baseline_metric = Some(x);
    emulate_cpu_plugin: bool => |c, x| c.accuracy_aware.emulate_cpu_plugin = x;
    annotation_free: bool => |c, x| c.accuracy_aware.annotation_free = x;
    annotation_conf_threshold: f64 => |c, x| c.accuracy_aware.annotation_conf_threshold = x;
    annotation_output: usize => |c, x| c.accuracy_aware.annotation_output = x;
    tune_hyperparams: bool => |c, x| c.accuracy_aware.tune_hyperparams = x;
}

/// POT params read as blocks, after the plain ones (they depend on the preset and device).
const BLOCK_PARAMS: [&str; 4] = ["range_estimator", "activations", "weights", "base_algorithm"];

/// Every POT param [`QuantConfig::apply_params`] honours (DefaultQuantization and
/// AccuracyAwareQuantization params).
pub fn applied_params() -> impl Iterator<Item = &'static str> {
    PotParams::KEYS.iter().copied().chain(BLOCK_PARAMS)
}

/// A key of a JSON config that the place it stands in does not have.
#[derive(Debug, Clone, PartialEq)]
struct UnknownKey {
    /// The full dotted key, list items by index: `range_estimator.activations.max.tpye`.
    path: String,
    /// Where it stands (`""`: at the top).
    place: String,
    /// The keys known there.
    known: Vec<String>,
}

impl UnknownKey {
    fn error(&self, what: &str) -> Error {
        let place = if self.place.is_empty() { String::new() } else { format!(" in '{}'", self.place) };
        Error::invalid(format!("unknown key '{}' in {what} (known{place}: {})", self.path, self.known.join(", ")))
    }
}

/// The value at `known` is the accepted shape: an object lists the keys accepted there (each
/// checked inside), a one-item list the shape of every item; anything else (a scalar, or null
/// for a free-form value) is not looked into.
fn find_unknown_keys(given: &serde_json::Value, known: &serde_json::Value, at: &str, out: &mut Vec<UnknownKey>) {
    use serde_json::Value;
    match (given, known) {
        (Value::Object(given), Value::Object(known)) => {
            for (k, v) in given {
                let path = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
                match known.get(k) {
                    Some(inner) => find_unknown_keys(v, inner, &path, out),
                    None => {
                        out.push(UnknownKey { path, place: at.to_string(), known: known.keys().cloned().collect() })
                    }
                }
            }
        }
        (Value::Array(items), Value::Array(shape)) if shape.len() == 1 => {
            for (i, item) in items.iter().enumerate() {
                find_unknown_keys(item, &shape[0], &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn to_json<T: Serialize>(x: &T) -> serde_json::Value {
    // The config types are plain data with string keys: serializing them cannot fail.
    serde_json::to_value(x).unwrap_or(serde_json::Value::Null)
}

/// The accepted shape of an ignored scope: one op type standing for every item, its free-form
/// `attributes` not looked into, and POT's names for the lists (serde aliases) accepted too.
fn ignored_shape() -> serde_json::Value {
    let scope = IgnoredScope { types: vec![IgnoredOperation::default()], ..Default::default() };
    let mut v = to_json(&scope);
    v["types"][0]["attributes"] = serde_json::Value::Null;
    v["scope"] = v["names"].clone();
    v["operations"] = v["types"].clone();
    v
}

/// The accepted shape of ovpot's `range_estimator` block: both borders of both kinds filled in
/// (they default to null, which would hide the keys inside).
fn range_estimators_shape() -> serde_json::Value {
    let border = RangeEstimator { min: Some(Estimator::default()), max: Some(Estimator::default()) };
    to_json(&RangeEstimators { activations: Some(border.clone()), weights: Some(border) })
}

/// The accepted shape of POT's `range_estimator` object (`preset`, `min`, `max`).
fn pot_range_estimator_shape() -> serde_json::Value {
    let e = to_json(&Estimator::default());
    serde_json::json!({"preset": null, "min": e, "max": e})
}

/// Whether a `range_estimator` value is POT's form (`preset`, `min`, `max`) rather than
/// ovpot's (`activations`, `weights`).
fn is_pot_range_estimator(r: &serde_json::Value) -> bool {
    r.as_object().is_some_and(|o| ["min", "max", "preset"].iter().any(|k| o.contains_key(*k)))
}

/// The keys ovpot's flat JSON accepts: the default config with every block that defaults to
/// null or to an empty list filled in, so that the keys inside those blocks are checked too.
fn flat_shape() -> serde_json::Value {
    let mut v = to_json(&QuantConfig::default());
    v["ignored"] = ignored_shape();
    v["range_estimator"] = range_estimators_shape();
    v
}

/// The unknown keys inside the value of one POT param (`ignored`, `range_estimator`; others
/// have no keys ovpot could miss), named from `key`.
fn unknown_param_keys(key: &str, value: &serde_json::Value) -> Vec<UnknownKey> {
    let shape = match key {
        "ignored" => ignored_shape(),
        "range_estimator" if is_pot_range_estimator(value) => pot_range_estimator_shape(),
        "range_estimator" => range_estimators_shape(),
        _ => return vec![],
    };
    let mut out = vec![];
    let given = serde_json::json!({ key: value });
    find_unknown_keys(&given, &serde_json::json!({ key: shape }), "", &mut out);
    out
}

/// Refuses an unknown key inside the value of one POT param as `ovpot_session_set_option` takes
/// it (`ignored`, `range_estimator`), naming the full dotted key and the keys known there.
pub fn check_param_keys(key: &str, value: &serde_json::Value) -> Result<()> {
    match unknown_param_keys(key, value).first() {
        Some(u) => Err(u.error(&format!("option '{key}'"))),
        None => Ok(()),
    }
}

/// Refuses an unknown key inside an ignored scope given as JSON (weight compression's
/// `ignored`), naming it as `at.key`.
pub fn check_ignored_keys(value: &serde_json::Value, at: &str) -> Result<()> {
    let mut out = vec![];
    find_unknown_keys(value, &ignored_shape(), at, &mut out);
    match out.first() {
        Some(u) => Err(u.error("the options")),
        None => Ok(()),
    }
}

/// POT algorithms that leave the quantization to another algorithm in the list: ovpot skips
/// them with a warning ([`unsupported_algorithm`] says why).
const NO_QUANTIZATION: [&str; 5] = [
    "ActivationChannelAlignment",
    "QuantNoiseEstimator",
    "RangeOptimization",
    "INT4MixedQuantization",
    "WeightSparsity",
];

/// Why ovpot does not run a POT algorithm, for those it knows of.
fn unsupported_algorithm(name: &str) -> Option<&'static str> {
    Some(match name {
        "ActivationChannelAlignment" => {
            "not implemented (it aligns activation channel ranges before TPE's search); quantization runs without it"
        }
        "QuantNoiseEstimator" => "not implemented (an analysis that reports per-layer quantization noise; the model is the same without it)",
        "RangeOptimization" => "not implemented (a derivative-free search over ranges by the metric); the ranges are MinMax's",
        "INT4MixedQuantization" => "not implemented: OpenVINO's CPU plugin runs no 4-bit activations; layers stay 8-bit",
        "WeightSparsity" | "MagnitudeSparsity" | "BaseWeightSparsity" => {
            "not implemented: ovpot does not prune weights; the model is quantized dense"
        }
        "QuantileTuningAlgorithm" => {
            "not implemented (a per-layer quantile search by the metric); AccuracyAwareQuantization with tune_hyperparams searches range estimators"
        }
        "OverflowCorrection" => "not needed: saturation_fix decides per layer (see target_isa)",
        _ => return None,
    })
}

/// A POT parameter that is read nowhere else: None when it cannot change the result at this
/// value, else the warning.
fn unused_param(key: &str, v: &serde_json::Value) -> Option<String> {
    // Knobs that only trade memory or time, or that POT reads only when another key enables them.
    const NO_EFFECT: [&str; 2] = ["inplace_statistics", "dump_intermediate_model"];
    if applied_params().any(|k| k == key) || NO_EFFECT.contains(&key) || v.is_null() {
        return None;
    }
    let off = v == &serde_json::Value::Bool(false);
    let why = match key {
        "use_layerwise_tuning" if off => return None,
        "stat_batch_size" if v.as_u64() == Some(1) => return None,
        "stat_batch_size" => "statistics are collected one sample at a time",
        "use_layerwise_tuning" => "ovpot does not implement it (layer-wise fine-tuning needs gradients)",
        // NNCF's and the command line's spelling of POT's key.
        "max_drop" => "POT's key for the largest allowed metric drop is 'maximal_drop'",
        "metrics" => "the metric is top-1 accuracy of --metric-output; 'baseline_metric' gives a known FP32 value",
        "tuning_scope" | "estimator_tuning_scope" | "outlier_prob_choices" => {
            "it lists TunableQuantization's choices for the TPE search, which ovpot does not run"
        }
        _ => return Some(format!("'{key}' is not a known POT parameter; ignored")),
    };
    Some(format!("'{key}': {v} is ignored: {why}"))
}

fn str_key<'a>(o: &'a serde_json::Map<String, serde_json::Value>, at: &str, key: &str) -> Result<Option<&'a str>> {
    match o.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(Error::parse("config", format!("'{at}.{key}': expected a string, got {other}"))),
    }
}

fn mode_error(at: &str, got: &str) -> Error {
    Error::parse("config", format!("'{at}.mode' '{got}': expected symmetric or asymmetric"))
}

/// Reads `bits`; a value other than the one used is reported. Returns the bits in effect.
fn check_bits(
    o: &serde_json::Map<String, serde_json::Value>,
    at: &str,
    used: u32,
    warn: &mut Vec<String>,
) -> Result<u32> {
    if let Some(b) = take::<u32>(o, "bits").map_err(|e| Error::parse("config", format!("'{at}': {e}")))? {
        if b != used {
            warn.push(format!("'{at}.bits' {b} is ignored: ovpot quantizes {at} to {used} bits for this device"));
        }
    }
    Ok(used)
}

fn check_granularity(
    o: &serde_json::Map<String, serde_json::Value>,
    at: &str,
    used: &str,
    warn: &mut Vec<String>,
) -> Result<()> {
    match str_key(o, at, "granularity")? {
        None => {}
        Some(g) if g == used => {}
        Some(g @ ("pertensor" | "perchannel")) => {
            warn.push(format!("'{at}.granularity' '{g}' is ignored: ovpot quantizes {at} {used}"))
        }
        Some(g) => {
            return Err(Error::parse("config", format!("'{at}.granularity' '{g}': expected pertensor or perchannel")))
        }
    }
    Ok(())
}

/// `level_low` / `level_high`: accepted when they describe the grid in use.
fn check_levels(
    o: &serde_json::Map<String, serde_json::Value>,
    at: &str,
    used: &[(i64, i64)],
    warn: &mut Vec<String>,
) -> Result<()> {
    let low = take::<i64>(o, "level_low").map_err(|e| Error::parse("config", format!("'{at}': {e}")))?;
    let high = take::<i64>(o, "level_high").map_err(|e| Error::parse("config", format!("'{at}': {e}")))?;
    if low.is_none() && high.is_none() {
        return Ok(());
    }
    let fits = used.iter().any(|(l, h)| low.is_none_or(|x| x == *l) && high.is_none_or(|x| x == *h));
    if !fits {
        let (l, h) = used[0];
        warn.push(format!(
            "'{at}.level_low'/'level_high' ({}, {}) are ignored: ovpot uses levels {l}..{h}",
            low.map_or("-".into(), |x| x.to_string()),
            high.map_or("-".into(), |x| x.to_string())
        ));
    }
    Ok(())
}

fn unknown_keys(o: &serde_json::Map<String, serde_json::Value>, at: &str, known: &[&str], warn: &mut Vec<String>) {
    for k in o.keys().filter(|k| !known.contains(&k.as_str())) {
        warn.push(format!("'{at}.{k}' is not a known POT key; ignored"));
    }
}

/// POT's range-estimator presets (range_estimator.py) for one per-tensor activation or
/// per-channel weight border: (min, max) estimator objects.
fn estimator_preset(
    preset: &str,
    symmetric: bool,
    weights: bool,
    at: &str,
) -> Result<(serde_json::Value, serde_json::Value)> {
    use serde_json::json;
    let none = serde_json::Value::Null;
    let q = 1e-4;
    Ok(match (preset, weights, symmetric) {
        ("default", false, true) => {
            (json!({"aggregator": "min", "type": "min"}), json!({"aggregator": "mean", "type": "abs_max"}))
        }
        ("default", false, false) => {
            (json!({"aggregator": "mean", "type": "min"}), json!({"aggregator": "mean", "type": "max"}))
        }
        ("quantile", false, true) => (
            json!({"aggregator": "min", "type": "min"}),
            json!({"aggregator": "mean", "type": "abs_quantile", "outlier_prob": q}),
        ),
        ("quantile", false, false) => (
            json!({"aggregator": "mean", "type": "quantile", "outlier_prob": q}),
            json!({"aggregator": "mean", "type": "quantile", "outlier_prob": q}),
        ),
        ("default", true, true) => (none, json!({"type": "abs_max"})),
        ("quantile", true, true) => (none, json!({"type": "abs_quantile", "outlier_prob": q})),
        ("default", true, false) => (json!({"type": "min"}), json!({"type": "max"})),
        ("quantile", true, false) => {
            (json!({"type": "quantile", "outlier_prob": q}), json!({"type": "quantile", "outlier_prob": q}))
        }
        (other, _, _) => {
            return Err(Error::parse("config", format!("'{at}.preset' '{other}': expected default or quantile")))
        }
    })
}

/// A POT `range_estimator` object: an optional `preset` expanded as POT does for the mode in
/// effect, with the user's `min` / `max` keys laid over it.
fn read_range_estimator(
    r: &serde_json::Value,
    at: &str,
    symmetric: bool,
    granularity: &str,
    warn: &mut Vec<String>,
) -> Result<Option<RangeEstimator>> {
    let r = r.as_object().ok_or_else(|| Error::parse("config", format!("'{at}' is not an object")))?;
    let weights = granularity == "perchannel";
    let (mut min, mut max) = match str_key(r, at, "preset")? {
        Some(p) => estimator_preset(p, symmetric, weights, at)?,
        None => (serde_json::Value::Null, serde_json::Value::Null),
    };
    for (side, base) in [("min", &mut min), ("max", &mut max)] {
        match r.get(side) {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Object(user)) => {
                if !base.is_object() {
                    *base = serde_json::Value::Object(Default::default());
                }
                if let Some(b) = base.as_object_mut() {
                    for (k, v) in user {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
            Some(other) => {
                return Err(Error::parse("config", format!("'{at}.{side}': expected an object, got {other}")))
            }
        }
    }
    unknown_keys(r, at, &["preset", "min", "max"], warn);
    let mut out = RangeEstimator::default();
    for (side, v, slot) in [("min", &min, &mut out.min), ("max", &max, &mut out.max)] {
        if let Some(o) = v.as_object() {
            *slot = Some(read_estimator(o, &format!("{at}.{side}"), granularity, warn)?);
        }
    }
    Ok((out.min.is_some() || out.max.is_some()).then_some(out))
}

fn read_estimator(
    o: &serde_json::Map<String, serde_json::Value>,
    at: &str,
    granularity: &str,
    warn: &mut Vec<String>,
) -> Result<Estimator> {
    let mut e = Estimator {
        kind: str_key(o, at, "type")?.map(str::to_string),
        aggregator: str_key(o, at, "aggregator")?.map(str::to_string),
        outlier_prob: take::<f64>(o, "outlier_prob").map_err(|e| Error::parse("config", format!("'{at}': {e}")))?,
        granularity: str_key(o, at, "granularity")?.map(str::to_string),
        clipping_value: take::<f64>(o, "clipping_value").map_err(|e| Error::parse("config", format!("'{at}': {e}")))?,
    };
    if e.aggregator.as_deref() == Some("hl_estimator") {
        warn.push(format!("'{at}.aggregator' 'hl_estimator' is not implemented; 'mean' is used"));
        e.aggregator = Some("mean".into());
    }
    if let Some(g) = e.granularity.as_deref().filter(|g| *g != granularity) {
        warn.push(format!("'{at}.granularity' '{g}' is ignored: this border is estimated {granularity}"));
    }
    unknown_keys(o, at, &["type", "aggregator", "outlier_prob", "granularity", "clipping_value"], warn);
    check_estimator(&e, at).map_err(|err| Error::parse("config", err.to_string()))?;
    Ok(e)
}

impl QuantConfig {
    /// The preset in effect: the user's, else mixed for transformers, else performance.
    ///
    /// `accuracy` is `mixed` on CPU, GPU and ANY, as POT 2023 maps it: OpenVINO's CPU plugin runs
    /// a convolution or MatMul whose weights carry a zero point in floating point (ppocr_cls with
    /// asymmetric weights: 1 of 54 layers int8, from ovpot or from NNCF alike), so asymmetric
    /// weights there only cost speed. `weights.mode: asymmetric` still asks for them.
    pub fn effective_preset(&self) -> Preset {
        match self.preset {
            Some(Preset::Accuracy) if self.target_device.runs_weights_in_float_with_zero_point() => Preset::Mixed,
            Some(p) => p,
            None if self.model_type == Some(ModelType::Transformer) => Preset::Mixed,
            None => Preset::Performance,
        }
    }

    /// Data-free mode's activation estimators where the config sets none: the per-sample
    /// extremes without the top 1% (`max_no_outliers`) instead of their mean, with the robust
    /// quantiles of [`crate::quant::data_free`] as the other candidate.
    pub fn use_data_free_estimators(&mut self) {
        // Estimators the user chose are kept as they are; otherwise data-free mode picks.
        self.data_free_ranges = self.range_estimator.activations.is_none();
        let e = self.range_estimator.activations.get_or_insert_with(Default::default);
        let min = e.min.get_or_insert_with(Default::default);
        if min.aggregator.is_none() {
            min.aggregator = Some("min_no_outliers".into());
        }
        let max = e.max.get_or_insert_with(Default::default);
        if max.aggregator.is_none() {
            max.aggregator = Some("max_no_outliers".into());
        }
    }

    /// What the quantization does differently from what was asked, for the log and report.
    pub fn scheme_notes(&self) -> Vec<String> {
        let mut out = vec![];
        let device = format!("{:?}", self.target_device);
        if self.preset == Some(Preset::Accuracy) && self.effective_preset() != Preset::Accuracy {
            out.push(format!(
                "preset 'accuracy' is quantized as 'mixed' on {device} (as POT does): OpenVINO's CPU plugin runs layers \
                 with asymmetric weights in floating point; set weights.mode 'asymmetric' to have them anyway"
            ));
        }
        if !self.weights_symmetric() && self.target_device.runs_weights_in_float_with_zero_point() {
            out.push(format!(
                "asymmetric weights on {device}: OpenVINO's CPU plugin runs these layers in floating point (their \
                 activations stay quantized)"
            ));
        }
        out
    }

    /// Reads either ovpot's own flat JSON (the fields of this struct) or a POT config
    /// (`{"model":…, "engine":…, "compression": {"target_device":…, "algorithms": [{"name":…,
    /// "params": {…}}]}}`). Keys ovpot cannot honour are dropped here; use
    /// [`QuantConfig::from_json_with_warnings`] to learn which.
    pub fn from_json(text: &str) -> Result<QuantConfig> {
        Self::from_json_with_warnings(text).map(|(c, _)| c)
    }

    /// Like [`QuantConfig::from_json_with_warnings`], but ovpot's flat JSON must name only
    /// known keys: an unknown key, at the top or inside any block (`accuracy_aware`, `weights`,
    /// `ignored` and each of its `types`, `range_estimator.activations.max`, ...), is refused
    /// with an invalid-argument error naming its full dotted key (`ignored.types[0].tpye`) and
    /// listing the keys known there. POT configs (with a `compression` section) keep POT's
    /// behaviour: unknown keys are warnings.
    pub fn from_json_strict(text: &str) -> Result<(QuantConfig, Vec<String>)> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| Error::parse("config", e.to_string()))?;
        if v.as_object().is_some_and(|o| !o.contains_key("compression")) {
            let mut unknown = vec![];
            find_unknown_keys(&v, &flat_shape(), "", &mut unknown);
            if let Some(u) = unknown.first() {
                return Err(u.error("the config"));
            }
        }
        Self::from_json_with_warnings(text)
    }

    /// [`QuantConfig::from_json`], plus one message per setting that was read but cannot change
    /// the result (a key ovpot does not implement, or a value it cannot honour), naming the key.
    pub fn from_json_with_warnings(text: &str) -> Result<(QuantConfig, Vec<String>)> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| Error::parse("config", e.to_string()))?;
        let obj = v.as_object().ok_or_else(|| Error::parse("config", "the config is not a JSON object"))?;
        let mut warnings = vec![];
        let c = if let Some(comp) = obj.get("compression") {
            Self::from_pot(comp, &mut warnings)?
        } else {
            let c: QuantConfig = serde_json::from_value(v).map_err(|e| Error::parse("config", e.to_string()))?;
            c.validate()?;
            c
        };
        warnings.extend(c.weight_estimator_warnings());
        Ok((c, warnings))
    }

    fn from_pot(comp: &serde_json::Value, warn: &mut Vec<String>) -> Result<QuantConfig> {
        let comp = comp.as_object().ok_or_else(|| Error::parse("config", "'compression' is not an object"))?;
        let mut c = QuantConfig::default();
        if let Some(t) = take::<TargetDevice>(comp, "target_device")? {
            c.target_device = t;
        }
        if let Some(m) = take::<ModelType>(comp, "model_type")? {
            c.model_type = Some(m);
        }
        if let Some(t) = take::<TargetIsa>(comp, "target_isa")? {
            c.target_isa = t;
        }
        if let Some(b) = take::<crate::backend::BackendKind>(comp, "backend")? {
            c.backend = b;
        }
        for k in comp.keys() {
            // Memory and debugging knobs of POT; "inplase" is how POT's own spec spells it.
            let known =
                ["target_device", "target_isa", "backend", "model_type", "algorithms", "dump_intermediate_model"];
            if !known.contains(&k.as_str()) && k != "inplace_statistics" && k != "inplase_statistics" {
                warn.push(format!("'compression.{k}' is not a known POT key; ignored"));
            }
        }
        let algos = comp
            .get("algorithms")
            .and_then(|a| a.as_array())
            .ok_or_else(|| Error::parse("config", "'compression.algorithms' is missing or not a list"))?;
        if algos.is_empty() {
            return Err(Error::parse("config", "'compression.algorithms' is empty"));
        }
        c.apply_algorithms(algos, warn)?;
        Ok(c)
    }

    /// POT runs `compression.algorithms` in order: one quantization algorithm, maybe a bias
    /// correction after a plain MinMaxQuantization, and steps ovpot does not have (named with why).
    fn apply_algorithms(&mut self, algos: &[serde_json::Value], warn: &mut Vec<String>) -> Result<()> {
        let c = self;
        fn name_of(a: &serde_json::Value) -> &str {
            a.get("name").and_then(|n| n.as_str()).unwrap_or("DefaultQuantization")
        }
        let empty = serde_json::Map::new();
        fn params_of<'a>(
            a: &'a serde_json::Value,
            empty: &'a serde_json::Map<String, serde_json::Value>,
        ) -> &'a serde_json::Map<String, serde_json::Value> {
            a.get("params").and_then(|p| p.as_object()).unwrap_or(empty)
        }
        // POT runs the list in order: one quantization algorithm, maybe a bias correction
        // after a plain MinMaxQuantization, and steps ovpot does not have (named with why).
        let mut main: Option<&str> = None;
        for a in algos {
            let name = name_of(a);
            let algorithm = match name {
                "DefaultQuantization" | "MinMaxQuantization" | "TunableQuantization" => Algorithm::Default,
                "AccuracyAwareQuantization" => Algorithm::AccuracyAware,
                "FastBiasCorrection" | "BiasCorrection" => {
                    if main.is_none() {
                        warn.push(format!("'{name}' before any quantization algorithm is ignored"));
                        continue;
                    }
                    c.apply_params_with_warnings(params_of(a, &empty), warn)?;
                    c.bias_correction = true;
                    c.use_fast_bias = name == "FastBiasCorrection";
                    continue;
                }
                other => {
                    if let Some(why) = unsupported_algorithm(other) {
                        if NO_QUANTIZATION.contains(&other) {
                            warn.push(format!("algorithm '{other}' is not run: {why}"));
                            continue;
                        }
                        return Err(Error::unsupported(format!("algorithm '{other}': {why}")));
                    }
                    warn.push(format!("algorithm '{other}' is not a known POT algorithm; ignored"));
                    continue;
                }
            };
            if let Some(first) = main {
                warn.push(format!(
                    "'compression.algorithms': '{name}' after '{first}' is ignored: one quantization runs"
                ));
                continue;
            }
            main = Some(name);
            c.algorithm = algorithm;
            c.apply_params_with_warnings(params_of(a, &empty), warn)?;
            match name {
                // POT's MinMaxQuantization alone corrects no biases (DefaultQuantization is
                // MinMax followed by FastBiasCorrection or BiasCorrection).
                "MinMaxQuantization" => c.bias_correction = false,
                "TunableQuantization" => {
                    c.bias_correction = false;
                    warn.push(
                        "'TunableQuantization' runs as MinMaxQuantization with its params: the 'optimizer' \
                         (TPE) search over its tunable choices is not run"
                            .into(),
                    );
                }
                _ => {}
            }
        }
        if main.is_none() {
            let names: Vec<&str> = algos.iter().map(name_of).collect();
            return Err(Error::unsupported(format!(
                "'compression.algorithms' {names:?} has no quantization algorithm ovpot runs \
                 (DefaultQuantization, MinMaxQuantization, AccuracyAwareQuantization)"
            )));
        }
        Ok(())
    }

    /// Applies POT `params` (DefaultQuantization and AccuracyAwareQuantization names); keys
    /// that cannot be honoured are dropped (see [`QuantConfig::apply_params_with_warnings`]).
    pub fn apply_params(&mut self, p: &serde_json::Map<String, serde_json::Value>) -> Result<()> {
        self.apply_params_with_warnings(p, &mut vec![])
    }

    /// Applies POT `params`, pushing a message naming each key that is read but ignored.
    pub fn apply_params_with_warnings(
        &mut self,
        p: &serde_json::Map<String, serde_json::Value>,
        warn: &mut Vec<String>,
    ) -> Result<()> {
        PotParams::read(p)?.apply_to(self);
        // Keys inside blocks serde reads (POT's own range_estimator form warns as it is read).
        for key in ["ignored", "range_estimator"] {
            if let Some(v) = p.get(key).filter(|v| !(key == "range_estimator" && is_pot_range_estimator(v))) {
                for u in unknown_param_keys(key, v) {
                    warn.push(format!("'{}' is not a known POT key; ignored", u.path));
                }
            }
        }
        if let Some(r) = p.get("range_estimator").filter(|r| !r.is_null()) {
            if is_pot_range_estimator(r) {
                // POT's params-wide estimator: for both borders unless a block has its own.
                let sym = self.activations_symmetric();
                self.range_estimator.activations = read_range_estimator(r, "range_estimator", sym, "pertensor", warn)?;
                let wsym = self.weights_symmetric();
                self.range_estimator.weights = read_range_estimator(r, "range_estimator", wsym, "perchannel", warn)?;
            } else {
                self.range_estimator = serde_json::from_value(r.clone())
                    .map_err(|e| Error::parse("config", format!("'range_estimator': {e}")))?;
            }
        }
        // The two blocks are independent: either may come alone.
        if let Some(a) = p.get("activations").filter(|a| !a.is_null()) {
            self.read_activations(a, warn)?;
        }
        if let Some(w) = p.get("weights").filter(|w| !w.is_null()) {
            self.read_weights(w, warn)?;
        }
        match p.get("base_algorithm") {
            Some(serde_json::Value::Object(base)) => {
                // base_algorithm settings apply to the default quantization inside.
                let inner = base.get("params").and_then(|x| x.as_object()).unwrap_or(base);
                self.apply_params_with_warnings(inner, warn)?;
            }
            Some(serde_json::Value::String(s)) if s == "DefaultQuantization" || s == "MinMaxQuantization" => {}
            Some(other) => warn.push(format!("'base_algorithm' {other} is ignored: DefaultQuantization is used")),
            None => {}
        }
        for (k, v) in p {
            if let Some(w) = unused_param(k, v) {
                warn.push(w);
            }
        }
        self.validate()
    }

    /// Whether activations are quantized symmetrically under the current preset and device.
    fn activations_symmetric(&self) -> bool {
        self.effective_preset() == Preset::Performance || self.target_device == TargetDevice::GNA
    }

    /// Whether weights are quantized symmetrically: the `weights.mode` asked, else symmetric
    /// but for the `accuracy` preset where it stays `accuracy` (NPU; GNA takes symmetric
    /// weights only).
    pub fn weights_symmetric(&self) -> bool {
        match self.weights.mode {
            Some(m) => m == QuantMode::Symmetric,
            None => self.effective_preset() != Preset::Accuracy || !self.target_device.runs_asymmetric_weights(),
        }
    }

    /// POT's `activations` block: bits, mode, granularity, levels and range estimator.
    fn read_activations(&mut self, a: &serde_json::Value, warn: &mut Vec<String>) -> Result<()> {
        let a = a.as_object().ok_or_else(|| Error::parse("config", "'activations' is not an object"))?;
        let device_bits = if self.target_device == TargetDevice::GNA { 16 } else { 8 };
        let bits = check_bits(a, "activations", device_bits, warn)?;
        if let Some(m) = str_key(a, "activations", "mode")? {
            match m {
                // The preset is how ovpot spells the activation mode (weights stay symmetric).
                "symmetric" => {
                    // The accuracy preset's asymmetric weights stay when only activations change.
                    if self.effective_preset() == Preset::Accuracy && self.weights.mode.is_none() {
                        self.weights.mode = Some(QuantMode::Asymmetric);
                    }
                    self.preset = Some(Preset::Performance)
                }
                "asymmetric" if self.target_device == TargetDevice::GNA => warn
                    .push("'activations.mode' 'asymmetric' is ignored: GNA quantizes activations symmetrically".into()),
                "asymmetric" if self.effective_preset() == Preset::Accuracy => {}
                "asymmetric" => self.preset = Some(Preset::Mixed),
                other => return Err(mode_error("activations", other)),
            }
        }
        check_granularity(a, "activations", "pertensor", warn)?;
        // Activations use the full grid: 2^bits levels, signed or unsigned.
        let full = (1i64 << bits.min(62)) - 1;
        check_levels(a, "activations", &[(0, full), (-(full + 1) / 2, full / 2)], warn)?;
        if let Some(r) = a.get("range_estimator") {
            let sym = self.activations_symmetric();
            let at = "activations.range_estimator";
            self.range_estimator.activations = read_range_estimator(r, at, sym, "pertensor", warn)?;
        }
        unknown_keys(a, "activations", &BLOCK_KEYS, warn);
        Ok(())
    }

    /// POT's `weights` block: bits, mode, granularity, levels and range estimator, all
    /// honoured (checked against the device in [`QuantConfig::validate`]).
    fn read_weights(&mut self, w: &serde_json::Value, warn: &mut Vec<String>) -> Result<()> {
        let w = w.as_object().ok_or_else(|| Error::parse("config", "'weights' is not an object"))?;
        let at = |e: Error| Error::parse("config", format!("'weights': {e}"));
        self.weights.bits = take::<u32>(w, "bits").map_err(at)?.or(self.weights.bits);
        if let Some(m) = str_key(w, "weights", "mode")? {
            self.weights.mode = Some(match m {
                "symmetric" => QuantMode::Symmetric,
                "asymmetric" => QuantMode::Asymmetric,
                other => return Err(mode_error("weights", other)),
            });
        }
        if let Some(g) = str_key(w, "weights", "granularity")? {
            self.weights.granularity = Some(match g {
                "perchannel" => Granularity::Perchannel,
                "pertensor" => Granularity::Pertensor,
                other => {
                    return Err(Error::parse(
                        "config",
                        format!("'weights.granularity' '{other}': expected pertensor or perchannel"),
                    ))
                }
            });
        }
        self.weights.level_low = take::<i64>(w, "level_low").map_err(at)?.or(self.weights.level_low);
        self.weights.level_high = take::<i64>(w, "level_high").map_err(at)?.or(self.weights.level_high);
        if let Some(r) = w.get("range_estimator") {
            let sym = self.weights_symmetric();
            self.range_estimator.weights = read_range_estimator(r, "weights.range_estimator", sym, "perchannel", warn)?;
        }
        unknown_keys(w, "weights", &BLOCK_KEYS, warn);
        Ok(())
    }

    /// Weight estimators are honoured with POT's meaning (the statistic named, per channel or
    /// per tensor); what cannot apply to a weight is named.
    fn weight_estimator_warnings(&self) -> Vec<String> {
        let mut out = vec![];
        let Some(w) = &self.range_estimator.weights else {
            return out;
        };
        if w.min.is_some() && self.weights_symmetric() {
            out.push("'weights.range_estimator.min' is ignored: symmetric weights take [-max, max]".into());
        }
        for (side, e) in [("min", &w.min), ("max", &w.max)] {
            if let Some(a) = e.as_ref().and_then(|e| e.aggregator.as_deref()) {
                out.push(format!(
                    "'weights.range_estimator.{side}.aggregator' '{a}' is ignored: a weight is one sample"
                ));
            }
        }
        out
    }

    /// The weight scheme must be one the target device runs.
    fn validate_weights(&self) -> Result<()> {
        let w = &self.weights;
        let device = format!("{:?}", self.target_device);
        if let Some(b) = w.bits.filter(|b| !(2..=8).contains(b)) {
            return Err(Error::invalid(format!(
                "weights.bits {b}: OpenVINO runs quantized weights of 2 to 8 bits (int8 kernels on CPU, GPU and NPU, \
                 GNA's int8 weights); use weight compression (compress-weights) for 4-bit weight-only models"
            )));
        }
        if w.mode == Some(QuantMode::Asymmetric) && !self.target_device.runs_asymmetric_weights() {
            return Err(Error::invalid(format!(
                "weights.mode asymmetric: {device} quantizes weights symmetrically; asymmetric weights are for \
                 CPU, GPU, NPU and ANY"
            )));
        }
        let sym = self.weights_symmetric();
        let levels = w.levels(sym);
        let full = 1usize << w.bits.unwrap_or(8);
        if let (Some(lo), Some(hi)) = (w.level_low, w.level_high) {
            if lo >= hi {
                return Err(Error::invalid(format!("weights.level_low {lo} must be below weights.level_high {hi}")));
            }
        }
        if levels < 3 || levels > full {
            return Err(Error::invalid(format!(
                "weights.level_low/level_high give {levels} levels: expected 3 to {full} for {}-bit weights",
                w.bits.unwrap_or(8)
            )));
        }
        Ok(())
    }

    /// Rejects settings that cannot work, with a message naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.stat_subset_size == 0 {
            return Err(Error::invalid("stat_subset_size must be at least 1"));
        }
        let aa = &self.accuracy_aware;
        if !(aa.maximal_drop.is_finite() && aa.maximal_drop >= 0.0) {
            return Err(maximal_drop_error(aa.maximal_drop));
        }
        if !(aa.annotation_conf_threshold.is_finite() && (0.0..1.0).contains(&aa.annotation_conf_threshold)) {
            return Err(Error::invalid("annotation_conf_threshold must be in [0, 1)"));
        }
        if !(aa.metric_subset_ratio > 0.0 && aa.metric_subset_ratio <= 1.0) {
            return Err(Error::invalid("metric_subset_ratio must be in (0, 1]"));
        }
        self.validate_weights()?;
        for p in &self.ignored.patterns {
            regex::Regex::new(p).map_err(|e| Error::invalid(format!("ignored pattern '{p}': {e}")))?;
        }
        let borders = [("activations", &self.range_estimator.activations), ("weights", &self.range_estimator.weights)];
        for (what, r) in borders {
            for (side, e) in r.iter().flat_map(|r| [("min", &r.min), ("max", &r.max)]) {
                if let Some(e) = e {
                    check_estimator(e, &format!("{what}.range_estimator.{side}"))?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pot_default_config() {
        let text = r#"{
            "model": {"model_name": "m", "model": "m.xml", "weights": "m.bin"},
            "engine": {"type": "simplified", "data_source": "./data"},
            "compression": {"target_device": "CPU", "algorithms": [{"name": "DefaultQuantization",
              "params": {"preset": "mixed", "stat_subset_size": 100,
                         "ignored": {"scope": ["conv1"], "operations": [{"type": "Add"}]}}}]}
        }"#;
        let c = QuantConfig::from_json(text).unwrap();
        assert_eq!(c.target_device, TargetDevice::CPU);
        assert_eq!(c.preset, Some(Preset::Mixed));
        assert_eq!(c.stat_subset_size, 100);
        assert_eq!(c.ignored.names, vec!["conv1"]);
        assert_eq!(c.ignored.types[0].op_type, "Add");
    }

    #[test]
    fn pot_accuracy_aware_config() {
        let text = r#"{"compression": {"algorithms": [{"name": "AccuracyAwareQuantization",
            "params": {"preset": "performance", "maximal_drop": 0.005, "drop_type": "relative",
                       "max_iter_num": 5, "stat_subset_size": 300}}]}}"#;
        let c = QuantConfig::from_json(text).unwrap();
        assert_eq!(c.algorithm, Algorithm::AccuracyAware);
        assert_eq!(c.accuracy_aware.maximal_drop, 0.005);
        assert_eq!(c.accuracy_aware.drop_type, DropType::Relative);
        assert_eq!(c.accuracy_aware.max_iter_num, 5);
        assert!(c.accuracy_aware.emulate_cpu_plugin, "on by default");
        let off = text.replace("\"max_iter_num\": 5,", "\"max_iter_num\": 5, \"emulate_cpu_plugin\": false,");
        assert!(!QuantConfig::from_json(&off).unwrap().accuracy_aware.emulate_cpu_plugin);
    }

    #[test]
    fn bad_values_are_named() {
        let e = QuantConfig::from_json(r#"{"preset": "fastest"}"#).unwrap_err();
        assert_eq!(e.kind(), "parse");
        assert!(e.to_string().contains("fastest"), "{e}");
        let e = QuantConfig::from_json(r#"{"stat_subset_size": 0}"#).unwrap_err();
        assert!(e.to_string().contains("stat_subset_size") || e.kind() == "parse", "{e}");
    }

    /// Params of one DefaultQuantization in a POT config; (config, warnings).
    fn pot_params(params: &str) -> Result<(QuantConfig, Vec<String>)> {
        QuantConfig::from_json_with_warnings(&format!(
            r#"{{"compression": {{"algorithms": [{{"name": "DefaultQuantization", "params": {params}}}]}}}}"#
        ))
    }

    fn est(kind: &str, aggregator: Option<&str>, prob: Option<f64>) -> Option<Estimator> {
        Some(Estimator {
            kind: Some(kind.into()),
            aggregator: aggregator.map(Into::into),
            outlier_prob: prob,
            granularity: None,
            clipping_value: None,
        })
    }

    #[test]
    fn activations_and_weights_blocks_are_read_alone() {
        let (c, w) = pot_params(r#"{"activations": {"range_estimator": {"max": {"type": "max"}}}}"#).unwrap();
        assert_eq!(c.range_estimator.activations.as_ref().unwrap().max, est("max", None, None));
        assert_eq!(c.range_estimator.weights, None);
        assert!(w.is_empty(), "{w:?}");
        let (c, w) = pot_params(r#"{"weights": {"range_estimator": {"max": {"type": "abs_max"}}}}"#).unwrap();
        assert_eq!(c.range_estimator.activations, None);
        assert_eq!(c.range_estimator.weights.as_ref().unwrap().max, est("abs_max", None, None));
        assert!(w.is_empty(), "abs_max is what weights use: {w:?}");
    }

    #[test]
    fn range_estimator_presets_expand_as_pot() {
        // Symmetric (performance) per-tensor activations: min of minima, mean abs-quantile.
        let (c, _) = pot_params(r#"{"activations": {"range_estimator": {"preset": "quantile"}}}"#).unwrap();
        let a = c.range_estimator.activations.unwrap();
        assert_eq!(a.min, est("min", Some("min"), None));
        assert_eq!(a.max, est("abs_quantile", Some("mean"), Some(1e-4)));
        // Asymmetric (mixed): quantiles on both borders, the user's keys laid over the preset.
        let (c, _) = pot_params(
            r#"{"preset": "mixed", "activations": {"range_estimator": {"preset": "quantile",
                "max": {"outlier_prob": 0.001}}}}"#,
        )
        .unwrap();
        let a = c.range_estimator.activations.unwrap();
        assert_eq!(a.min, est("quantile", Some("mean"), Some(1e-4)));
        assert_eq!(a.max, est("quantile", Some("mean"), Some(0.001)));
        let (c, _) = pot_params(r#"{"activations": {"range_estimator": {"preset": "default"}}}"#).unwrap();
        assert_eq!(c.range_estimator.activations.unwrap().max, est("abs_max", Some("mean"), None));
        let e = pot_params(r#"{"activations": {"range_estimator": {"preset": "tight"}}}"#).unwrap_err();
        assert!(e.to_string().contains("'activations.range_estimator.preset' 'tight'"), "{e}");
    }

    #[test]
    fn mode_sets_the_activation_scheme() {
        let (c, _) = pot_params(r#"{"preset": "performance", "activations": {"mode": "asymmetric"}}"#).unwrap();
        assert_eq!(c.effective_preset(), Preset::Mixed);
        let (c, _) = pot_params(r#"{"preset": "mixed", "activations": {"mode": "symmetric"}}"#).unwrap();
        assert_eq!(c.effective_preset(), Preset::Performance);
        let (c, w) = pot_params(
            r#"{"weights": {"mode": "symmetric", "granularity": "perchannel", "bits": 8,
            "level_low": -127, "level_high": 127}}"#,
        )
        .unwrap();
        assert_eq!(c.effective_preset(), Preset::Performance);
        assert!(w.is_empty(), "the scheme in use: {w:?}");
        assert!(pot_params(r#"{"activations": {"mode": "sideways"}}"#).is_err());
    }

    #[test]
    fn settings_that_cannot_be_honoured_are_named() {
        let (_, w) = pot_params(
            r#"{"activations": {"bits": 4, "granularity": "perchannel", "level_low": 0, "level_high": 15,
                    "range_estimator": {"max": {"type": "max", "clipping_value": 6, "aggregator": "hl_estimator"}}},
                "weights": {"mode": "asymmetric", "granularity": "pertensor", "bits": 8,
                    "range_estimator": {"max": {"type": "quantile", "outlier_prob": 0.0001, "aggregator": "max"}}},
                "shuffle_data": true, "seed": 7, "stat_batch_size": 4, "mystery": 1}"#,
        )
        .unwrap();
        let all = w.join("\n");
        assert!(!all.contains("shuffle_data"), "shuffle_data is honoured: {all}");
        for key in [
            "'activations.bits' 4",
            "'activations.granularity' 'perchannel'",
            "'activations.level_low'",
            "'activations.range_estimator.max.aggregator' 'hl_estimator'",
            "'weights.range_estimator.max.aggregator' 'max'",
            "'stat_batch_size'",
            "'mystery'",
        ] {
            assert!(all.contains(key), "no warning for {key}:\n{all}");
        }
        // Values that change nothing here stay quiet.
        let (_, w) = pot_params(
            r#"{"shuffle_data": false, "seed": 0, "stat_batch_size": 1, "tune_hyperparams": false,
                "base_algorithm": "DefaultQuantization", "activations": {"bits": 8, "level_low": 0, "level_high": 255}}"#,
        )
        .unwrap();
        assert!(w.is_empty(), "{w:?}");
        // GNA: 16-bit activations are the device's scheme.
        let (_, w) = pot_params(r#"{"target_device": "GNA", "activations": {"bits": 16}}"#).unwrap();
        assert!(w.is_empty(), "{w:?}");
        let e = pot_params(r#"{"activations": {"range_estimator": {"max": {"type": "median"}}}}"#).unwrap_err();
        assert!(e.to_string().contains("'activations.range_estimator.max.type' 'median'"), "{e}");
    }

    #[test]
    fn weight_options_are_honoured() {
        let (c, w) = pot_params(
            r#"{"weights": {"mode": "asymmetric", "granularity": "pertensor", "bits": 7,
                "range_estimator": {"preset": "quantile"}},
                "activations": {"range_estimator": {"max": {"clipping_value": 6}}}}"#,
        )
        .unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.weights.mode, Some(QuantMode::Asymmetric));
        assert_eq!(c.weights.granularity, Some(Granularity::Pertensor));
        assert_eq!(c.weights.bits, Some(7));
        assert!(!c.weights_symmetric());
        assert_eq!(c.weights.levels(false), 128);
        // The quantile preset of asymmetric weights: quantiles on both borders.
        let r = c.range_estimator.weights.unwrap();
        assert_eq!(r.min.unwrap().kind.as_deref(), Some("quantile"));
        assert_eq!(r.max.unwrap().kind.as_deref(), Some("quantile"));
        assert_eq!(c.range_estimator.activations.unwrap().max.unwrap().clipping_value, Some(6.0));
        // Levels as POT counts them.
        let (c, _) = pot_params(r#"{"weights": {"level_low": -128, "level_high": 127}}"#).unwrap();
        assert_eq!(c.weights.levels(c.weights_symmetric()), 256);
        // Bits OpenVINO cannot run as quantized weights, and asymmetric weights on GNA, refused.
        let e = pot_params(r#"{"weights": {"bits": 16}}"#).unwrap_err();
        assert!(e.to_string().contains("weights.bits 16"), "{e}");
        let e = pot_params(r#"{"target_device": "GNA", "weights": {"mode": "asymmetric"}}"#).unwrap_err();
        assert!(e.to_string().contains("GNA"), "{e}");
        let e = pot_params(r#"{"weights": {"level_low": 5, "level_high": 2}}"#).unwrap_err();
        assert!(e.to_string().contains("level_low"), "{e}");
    }

    #[test]
    fn accuracy_preset_is_mixed_where_the_cpu_plugin_runs_it() {
        let (c, _) = pot_params(r#"{"preset": "accuracy"}"#).unwrap();
        assert_eq!(c.preset, Some(Preset::Accuracy));
        assert_eq!(c.effective_preset(), Preset::Mixed, "ANY: as POT 2023 maps it");
        assert!(c.weights_symmetric());
        assert!(c.scheme_notes()[0].contains("'accuracy' is quantized as 'mixed'"), "{:?}", c.scheme_notes());
        let (c, _) = pot_params(r#"{"preset": "accuracy", "target_device": "NPU"}"#).unwrap();
        assert_eq!(c.effective_preset(), Preset::Accuracy);
        assert!(!c.weights_symmetric(), "NPU keeps the accuracy preset's asymmetric weights");
        // Activations made symmetric under the accuracy preset keep its asymmetric weights.
        let (c, _) =
            pot_params(r#"{"preset": "accuracy", "target_device": "NPU", "activations": {"mode": "symmetric"}}"#)
                .unwrap();
        assert_eq!(c.effective_preset(), Preset::Performance);
        assert!(!c.weights_symmetric());
    }

    #[test]
    fn compression_level_keys() {
        let (c, w) = QuantConfig::from_json_with_warnings(
            r#"{"compression": {"target_device": "GPU", "inplase_statistics": true, "dump_intermediate_model": false,
                "bogus": 1, "algorithms": [{"name": "DefaultQuantization"}, {"name": "FastBiasCorrection"}]}}"#,
        )
        .unwrap();
        assert_eq!(c.target_device, TargetDevice::GPU);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("'compression.bogus'"), "{w:?}");
        assert!(c.bias_correction && c.use_fast_bias);
    }

    /// POT's algorithm lists: MinMaxQuantization corrects no bias unless a bias correction
    /// follows; steps ovpot lacks are named; a list with no quantization is refused.
    #[test]
    fn algorithm_lists() {
        let run = |algos: &str| {
            QuantConfig::from_json_with_warnings(&format!(r#"{{"compression": {{"algorithms": {algos}}}}}"#))
        };
        let (c, w) = run(r#"[{"name": "MinMaxQuantization"}]"#).unwrap();
        assert!(!c.bias_correction && w.is_empty(), "{w:?}");
        let (c, _) =
            run(r#"[{"name": "MinMaxQuantization"}, {"name": "BiasCorrection", "params": {"threshold": 10}}]"#)
                .unwrap();
        assert!(c.bias_correction && !c.use_fast_bias && c.bias_correction_threshold == 10.0);
        let (c, w) = run(
            r#"[{"name": "WeightSparsity"}, {"name": "AccuracyAwareQuantization"}, {"name": "DefaultQuantization"}]"#,
        )
        .unwrap();
        assert_eq!(c.algorithm, Algorithm::AccuracyAware);
        assert!(w[0].contains("'WeightSparsity' is not run") && w[1].contains("'DefaultQuantization' after"), "{w:?}");
        let e = run(r#"[{"name": "QuantileTuningAlgorithm"}]"#).unwrap_err().to_string();
        assert!(e.contains("QuantileTuningAlgorithm") && e.contains("tune_hyperparams"), "{e}");
        let e = run(r#"[{"name": "QuantNoiseEstimator"}]"#).unwrap_err().to_string();
        assert!(e.contains("no quantization algorithm"), "{e}");
    }

    /// Every key of a block in ovpot's flat JSON is checked, also in blocks that default to
    /// null (`range_estimator.activations`, its borders) or to an empty list (`ignored.types`):
    /// a typo is refused naming the full dotted key and the keys known where it stands.
    #[test]
    fn a_typo_inside_any_block_of_the_flat_json_is_refused_with_its_full_key() {
        for (config, key, known_there) in [
            (r#"{"presett": "mixed"}"#, "presett", "stat_subset_size"),
            (r#"{"accuracy_aware": {"maximal_dorp": 0.01}}"#, "accuracy_aware.maximal_dorp", "maximal_drop"),
            (r#"{"weights": {"bitz": 7}}"#, "weights.bitz", "level_high"),
            (r#"{"ignored": {"nmes": ["fc1"]}}"#, "ignored.nmes", "patterns"),
            (
                r#"{"ignored": {"types": [{"type": "Add", "atributes": {}}]}}"#,
                "ignored.types[0].atributes",
                "attributes",
            ),
            (
                r#"{"ignored": {"operations": [{"type": "Add"}, {"tpye": "Add"}]}}"#,
                "ignored.operations[1].tpye",
                "type",
            ),
            (r#"{"range_estimator": {"activation": {}}}"#, "range_estimator.activation", "activations"),
            (r#"{"range_estimator": {"activations": {"maxx": {}}}}"#, "range_estimator.activations.maxx", "min"),
            (
                r#"{"range_estimator": {"activations": {"max": {"tpye": "max"}}}}"#,
                "range_estimator.activations.max.tpye",
                "outlier_prob",
            ),
            (
                r#"{"range_estimator": {"weights": {"min": {"type": "min", "aggregater": "mean"}}}}"#,
                "range_estimator.weights.min.aggregater",
                "clipping_value",
            ),
        ] {
            let e = QuantConfig::from_json_strict(config).unwrap_err();
            assert_eq!(e.kind(), "invalid_argument", "{config}: {e}");
            let msg = e.to_string();
            assert!(msg.contains(&format!("unknown key '{key}'")), "{config}: {msg}");
            assert!(msg.contains(known_there), "{config}: the keys known there are listed: {msg}");
        }
    }

    #[test]
    fn every_valid_nested_key_of_the_flat_json_passes() {
        let config = r#"{
            "preset": "mixed", "model_type": null, "weights": {"mode": "symmetric", "bits": 8, "granularity": "perchannel",
                "level_low": -127, "level_high": 127},
            "ignored": {"names": ["a"], "patterns": ["b.*"],
                "types": [{"type": "Add", "attributes": {"auto_broadcast": "numpy", "anything": [1]}}]},
            "range_estimator": {
                "activations": {"min": {"type": "min", "aggregator": "mean"},
                    "max": {"type": "quantile", "aggregator": "mean", "outlier_prob": 0.001, "granularity": null,
                            "clipping_value": 6.0}},
                "weights": {"min": null, "max": {"type": "abs_max"}}},
            "accuracy_aware": {"maximal_drop": 0.02, "baseline_metric": 0.9, "ranking": "metric"}
        }"#;
        let (c, w) = QuantConfig::from_json_strict(config).unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.accuracy_aware.maximal_drop, 0.02);
        assert_eq!(c.range_estimator.activations.unwrap().max.unwrap().clipping_value, Some(6.0));
        // POT's names of the ignored lists, and the config ovpot writes, read back.
        let (c, _) =
            QuantConfig::from_json_strict(r#"{"ignored": {"scope": ["a"], "operations": [{"type": "Add"}]}}"#).unwrap();
        assert_eq!((c.ignored.names.len(), c.ignored.types.len()), (1, 1));
        QuantConfig::from_json_strict(&serde_json::to_string(&c).unwrap()).unwrap();
    }

    /// The shape the flat JSON is checked against leaves a value unchecked only where it is a
    /// scalar or free-form: a new block that defaults to null (an `Option` of a struct) shows up
    /// here and must be filled in by `flat_shape`.
    #[test]
    fn the_flat_shape_leaves_no_block_unchecked() {
        fn nulls(v: &serde_json::Value, at: &str, out: &mut Vec<String>) {
            match v {
                serde_json::Value::Null => out.push(at.to_string()),
                serde_json::Value::Object(o) => {
                    for (k, x) in o {
                        nulls(x, &if at.is_empty() { k.clone() } else { format!("{at}.{k}") }, out)
                    }
                }
                serde_json::Value::Array(a) => a.iter().for_each(|x| nulls(x, &format!("{at}[]"), out)),
                _ => {}
            }
        }
        let mut found = vec![];
        nulls(&flat_shape(), "", &mut found);
        let estimator = ["type", "aggregator", "outlier_prob", "granularity", "clipping_value"];
        let mut expected: Vec<String> = ["preset", "model_type", "accuracy_aware.baseline_metric"]
            .into_iter()
            .map(String::from)
            .chain(["mode", "granularity", "bits", "level_low", "level_high"].map(|k| format!("weights.{k}")))
            .chain(["types[]", "operations[]"].map(|l| format!("ignored.{l}.attributes")))
            .chain(["activations", "weights"].into_iter().flat_map(|kind| {
                ["min", "max"].into_iter().flat_map(move |side| {
                    estimator.into_iter().map(move |k| format!("range_estimator.{kind}.{side}.{k}"))
                })
            }))
            .collect();
        found.sort();
        expected.sort();
        assert_eq!(found, expected);
    }

    /// The finder on made-up shapes: lists are checked item by item, null is free-form.
    #[test]
    fn unknown_keys_are_found_in_lists_and_nested_objects() {
        let shape = serde_json::json!({"a": {"b": null}, "l": [{"x": 0}], "free": null});
        let given = serde_json::json!({"a": {"b": {"anything": 1}, "c": 2}, "l": [{"x": 1}, {"y": 2}],
                                       "free": {"z": 3}, "d": 4});
        let mut out = vec![];
        find_unknown_keys(&given, &shape, "", &mut out);
        let paths: Vec<&str> = out.iter().map(|u| u.path.as_str()).collect();
        assert_eq!(paths, ["a.c", "d", "l[1].y"]);
        assert_eq!(out[0].place, "a");
        assert_eq!(out[0].known, ["b"]);
    }

    /// A POT config keeps POT's behaviour: unknown keys inside its blocks are warnings.
    #[test]
    fn a_typo_inside_a_pot_block_is_a_warning() {
        let (c, w) = pot_params(
            r#"{"ignored": {"scope": ["fc1"], "scoep": ["fc2"]},
                "range_estimator": {"activations": {"max": {"type": "max", "tpye": "min"}}}}"#,
        )
        .unwrap();
        assert_eq!(c.ignored.names, ["fc1"]);
        let all = w.join("\n");
        for key in ["'ignored.scoep' is not a known POT key", "'range_estimator.activations.max.tpye'"] {
            assert!(all.contains(key), "no warning for {key}:\n{all}");
        }
        let (_, w) = pot_params(r#"{"range_estimator": {"preset": "quantile", "max": {"tpye": "max"}}}"#).unwrap();
        assert!(w.iter().any(|m| m.contains("'range_estimator.max.tpye'")), "{w:?}");
    }

    /// `ovpot_session_set_option`'s blocks: the same check as the flat JSON, in both forms of
    /// `range_estimator`.
    #[test]
    fn set_option_blocks_refuse_unknown_keys() {
        let j = |t: &str| serde_json::from_str::<serde_json::Value>(t).unwrap();
        for (key, value, path) in [
            ("ignored", r#"{"scope": ["a"], "patern": []}"#, "ignored.patern"),
            ("ignored", r#"{"types": [{"type": "Add", "atributes": {}}]}"#, "ignored.types[0].atributes"),
            ("range_estimator", r#"{"activations": {"max": {"tpye": "max"}}}"#, "range_estimator.activations.max.tpye"),
            (
                "range_estimator",
                r#"{"preset": "quantile", "max": {"outlier_prop": 0.01}}"#,
                "range_estimator.max.outlier_prop",
            ),
        ] {
            let e = check_param_keys(key, &j(value)).unwrap_err();
            assert_eq!(e.kind(), "invalid_argument");
            assert!(e.to_string().contains(&format!("unknown key '{path}' in option '{key}'")), "{e}");
        }
        for (key, value) in [
            ("ignored", r#"{"scope": ["a"], "operations": [{"type": "Add", "attributes": {"x": 1}}]}"#),
            ("range_estimator", r#"{"preset": "quantile", "max": {"outlier_prob": 0.01}}"#),
            ("range_estimator", r#"{"weights": {"max": {"type": "abs_max"}}}"#),
            ("stat_subset_size", "10"),
        ] {
            check_param_keys(key, &j(value)).unwrap();
        }
        let e = check_ignored_keys(&j(r#"{"nmes": []}"#), "ignored_scope").unwrap_err();
        assert!(e.to_string().contains("'ignored_scope.nmes'"), "{e}");
    }

    /// The setting is `maximal_drop` in every message (the key the config and set_option take);
    /// the error also says how the command line, C and Python spell it. NNCF's `max_drop` in a
    /// POT config is named with the key to use instead.
    #[test]
    fn maximal_drop_is_named_by_its_key() {
        let e = QuantConfig::from_json(r#"{"accuracy_aware": {"maximal_drop": -0.5}}"#).unwrap_err().to_string();
        for part in ["maximal_drop must be a finite number >= 0, got -0.5", "--max-drop", "ovpot_session_set_max_drop"]
        {
            assert!(e.contains(part), "{part}: {e}");
        }
        let (c, w) = pot_params(r#"{"max_drop": 0.005}"#).unwrap();
        assert_eq!(c.accuracy_aware.maximal_drop, 0.01, "not applied");
        assert_eq!(
            w,
            ["'max_drop': 0.005 is ignored: POT's key for the largest allowed metric drop is 'maximal_drop'"]
        );
    }
}
