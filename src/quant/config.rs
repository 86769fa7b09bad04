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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelType {
    Transformer,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SaturationFix {
    #[default]
    FirstLayer,
    All,
    No,
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

/// An op type to skip, optionally only when its attributes match.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct IgnoredOperation {
    #[serde(rename = "type")]
    pub op_type: String,
    #[serde(default)]
    pub attributes: std::collections::BTreeMap<String, serde_json::Value>,
}

/// Layers kept in floating point: names, regular expressions over names, op types.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct IgnoredScope {
    #[serde(alias = "scope")]
    pub names: Vec<String>,
    pub patterns: Vec<String>,
    #[serde(alias = "operations")]
    pub types: Vec<IgnoredOperation>,
}

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
    pub model_type: Option<ModelType>,
    pub ignored: IgnoredScope,
    /// FastBiasCorrection (true) or full BiasCorrection (false).
    pub use_fast_bias: bool,
    /// Set false to skip bias correction altogether.
    pub bias_correction: bool,
    pub saturation_fix: SaturationFix,
    pub range_estimator: RangeEstimators,
    /// Save weights as int8 constants with a dequantization subgraph (true) or as FP32 with FQ.
    pub compress_weights: bool,
    /// SmoothQuant alpha for MatMul in transformers (NNCF: 0.95); negative disables it.
    pub smooth_quant_alpha: f64,
    /// FastBiasCorrection threshold (POT: 2.0).
    pub bias_correction_threshold: f64,
    /// Share of the subset the full BiasCorrection uses.
    pub accuracy_aware: AccuracyAwareConfig,
    /// Threads for the engine; 0 = all cores.
    pub threads: usize,
}

impl Default for QuantConfig {
    fn default() -> Self {
        QuantConfig {
            algorithm: Algorithm::Default,
            preset: None,
            target_device: TargetDevice::ANY,
            stat_subset_size: 300,
            model_type: None,
            ignored: IgnoredScope::default(),
            use_fast_bias: true,
            bias_correction: true,
            saturation_fix: SaturationFix::FirstLayer,
            range_estimator: RangeEstimators::default(),
            compress_weights: true,
            smooth_quant_alpha: 0.95,
            bias_correction_threshold: 2.0,
            accuracy_aware: AccuracyAwareConfig::default(),
            threads: 0,
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

impl QuantConfig {
    /// The preset in effect: the user's, else mixed for transformers, else performance.
    pub fn effective_preset(&self) -> Preset {
        self.preset.unwrap_or(if self.model_type == Some(ModelType::Transformer) {
            Preset::Mixed
        } else {
            Preset::Performance
        })
    }

    /// Reads either ovpot's own flat JSON (the fields of this struct) or a POT config
    /// (`{"model":…, "engine":…, "compression": {"target_device":…, "algorithms": [{"name":…,
    /// "params": {…}}]}}`); unknown POT keys that do not change the result are accepted.
    pub fn from_json(text: &str) -> Result<QuantConfig> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| Error::parse("config", e.to_string()))?;
        let obj = v.as_object().ok_or_else(|| Error::parse("config", "the config is not a JSON object"))?;
        if let Some(comp) = obj.get("compression") {
            return Self::from_pot(comp);
        }
        let c: QuantConfig = serde_json::from_value(v).map_err(|e| Error::parse("config", e.to_string()))?;
        c.validate()?;
        Ok(c)
    }

    fn from_pot(comp: &serde_json::Value) -> Result<QuantConfig> {
        let comp = comp.as_object().ok_or_else(|| Error::parse("config", "'compression' is not an object"))?;
        let mut c = QuantConfig::default();
        if let Some(t) = take::<TargetDevice>(comp, "target_device")? {
            c.target_device = t;
        }
        if let Some(m) = take::<ModelType>(comp, "model_type")? {
            c.model_type = Some(m);
        }
        let algos = comp
            .get("algorithms")
            .and_then(|a| a.as_array())
            .ok_or_else(|| Error::parse("config", "'compression.algorithms' is missing or not a list"))?;
        let algo = algos.first().ok_or_else(|| Error::parse("config", "'compression.algorithms' is empty"))?;
        let name = algo.get("name").and_then(|n| n.as_str()).unwrap_or("DefaultQuantization");
        c.algorithm = match name {
            "DefaultQuantization" | "MinMaxQuantization" => Algorithm::Default,
            "AccuracyAwareQuantization" => Algorithm::AccuracyAware,
            other => return Err(Error::unsupported(format!("algorithm '{other}'"))),
        };
        let empty = serde_json::Map::new();
        let p = algo.get("params").and_then(|p| p.as_object()).unwrap_or(&empty);
        c.apply_params(p)?;
        Ok(c)
    }

    /// Applies POT `params` (DefaultQuantization and AccuracyAwareQuantization names).
    pub fn apply_params(&mut self, p: &serde_json::Map<String, serde_json::Value>) -> Result<()> {
        if let Some(x) = take(p, "preset")? {
            self.preset = Some(x);
        }
        if let Some(x) = take(p, "target_device")? {
            self.target_device = x;
        }
        if let Some(x) = take(p, "stat_subset_size")? {
            self.stat_subset_size = x;
        }
        if let Some(x) = take(p, "model_type")? {
            self.model_type = Some(x);
        }
        if let Some(x) = take(p, "ignored")? {
            self.ignored = x;
        }
        if let Some(x) = take(p, "use_fast_bias")? {
            self.use_fast_bias = x;
        }
        if let Some(x) = take(p, "saturation_fix")? {
            self.saturation_fix = x;
        }
        if let Some(x) = take::<RangeEstimators>(p, "range_estimator")? {
            self.range_estimator = x;
        }
        if let (Some(a), Some(w)) = (p.get("activations"), p.get("weights")) {
            let get = |v: &serde_json::Value| -> Result<Option<RangeEstimator>> {
                match v.get("range_estimator") {
                    Some(r) => {
                        serde_json::from_value(r.clone()).map(Some).map_err(|e| Error::parse("config", e.to_string()))
                    }
                    None => Ok(None),
                }
            };
            self.range_estimator.activations = get(a)?;
            self.range_estimator.weights = get(w)?;
        }
        if let Some(x) = take(p, "threshold")? {
            self.bias_correction_threshold = x;
        }
        if let Some(x) = take(p, "compress_weights")? {
            self.compress_weights = x;
        }
        let aa = &mut self.accuracy_aware;
        if let Some(x) = take(p, "maximal_drop")? {
            aa.maximal_drop = x;
        }
        if let Some(x) = take(p, "drop_type")? {
            aa.drop_type = x;
        }
        if let Some(x) = take(p, "ranking_subset_size")? {
            aa.ranking_subset_size = x;
        }
        if let Some(x) = take(p, "max_iter_num")? {
            aa.max_iter_num = x;
        }
        if let Some(x) = take(p, "use_prev_if_drop_increase")? {
            aa.use_prev_if_drop_increase = x;
        }
        if let Some(x) = take(p, "convert_to_mixed_preset")? {
            aa.convert_to_mixed_preset = x;
        }
        if let Some(x) = take(p, "metric_subset_ratio")? {
            aa.metric_subset_ratio = x;
        }
        if let Some(x) = take(p, "ranking")? {
            aa.ranking = x;
        }
        if let Some(x) = take(p, "baseline_metric")? {
            aa.baseline_metric = Some(x);
        }
        if let Some(base) = p.get("base_algorithm").and_then(|b| b.as_object()) {
            // base_algorithm settings apply to the default quantization inside.
            let inner = base.get("params").and_then(|x| x.as_object()).unwrap_or(base);
            self.apply_params(inner)?;
        }
        self.validate()
    }

    /// Rejects settings that cannot work, with a message naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.stat_subset_size == 0 {
            return Err(Error::invalid("stat_subset_size must be at least 1"));
        }
        let aa = &self.accuracy_aware;
        if !(aa.maximal_drop.is_finite() && aa.maximal_drop >= 0.0) {
            return Err(Error::invalid("maximal_drop must be a finite number >= 0"));
        }
        if !(aa.metric_subset_ratio > 0.0 && aa.metric_subset_ratio <= 1.0) {
            return Err(Error::invalid("metric_subset_ratio must be in (0, 1]"));
        }
        for p in &self.ignored.patterns {
            regex::Regex::new(p).map_err(|e| Error::invalid(format!("ignored pattern '{p}': {e}")))?;
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
    }

    #[test]
    fn bad_values_are_named() {
        let e = QuantConfig::from_json(r#"{"preset": "fastest"}"#).unwrap_err();
        assert_eq!(e.kind(), "parse");
        assert!(e.to_string().contains("fastest"), "{e}");
        let e = QuantConfig::from_json(r#"{"stat_subset_size": 0}"#).unwrap_err();
        assert!(e.to_string().contains("stat_subset_size") || e.kind() == "parse", "{e}");
    }
}
