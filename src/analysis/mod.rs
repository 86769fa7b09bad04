//! What `ovpot analyze` finds out about a model's quantization, layer by layer: which layers
//! hurt the output and by how much, why (activation ranges and clipping, weight quantization
//! error, saturation on CPUs without VNNI), and the smallest ignored scope that reaches a target,
//! checked by quantizing with it. Serialized to `analysis.json`; [`html::render`] draws the
//! same facts as one self-contained page. Computed by [`crate::quant::analyze`].

pub mod html;

use serde::Serialize;

/// The analysis of one model's quantization.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Analysis {
    /// The model's name.
    pub model: String,
    /// Who computed the INT8 outputs (the session's default judge).
    pub judge: String,
    /// Evaluation samples every SQNR is measured on.
    pub samples: usize,
    /// Output SQNR (dB) of the model with every layer quantized, as `quantize` would return it.
    pub sqnr_db: f64,
    /// One entry per group of layers that are quantized or reverted together (they share an
    /// activation quantizer), the most harmful first (largest `revert_gain_db`).
    pub layers: Vec<LayerAnalysis>,
    /// The smallest ignored scope found that reaches the target, measured by quantizing with it.
    pub suggestion: Option<Suggestion>,
    /// With the OpenVINO backend: what the runtime runs, per node, FP32 against INT8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeProfile>,
    /// Seconds per stage.
    pub timings: Vec<(String, f64)>,
}

/// One group of layers.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LayerAnalysis {
    /// The layers (operation names) of the group.
    pub layers: Vec<String>,
    /// Their operation types.
    pub op_types: Vec<String>,
    /// Output SQNR (dB) with only this group quantized (everything else in floating point).
    pub only_this_sqnr_db: f64,
    /// Output SQNR (dB) with everything quantized but this group.
    pub reverted_sqnr_db: f64,
    /// `reverted_sqnr_db` − the model's `sqnr_db`: what leaving this group in FP32 buys.
    pub revert_gain_db: f64,
    /// The activation quantizers feeding the group.
    pub activations: Vec<ActivationRange>,
    /// The group's quantized weights.
    pub weights: Vec<WeightError>,
    /// With the OpenVINO backend: whether the runtime runs one of the group's layers with an
    /// int8 kernel (None: not profiled, or no node of that name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runs_int8: Option<bool>,
}

/// OpenVINO's CPU plugin running the FP32 and the INT8 model on this CPU, one request at a time,
/// with its performance counters: per executed node, the kernel and the median time.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RuntimeProfile {
    /// "openvino <version>".
    pub runtime: String,
    /// Sums of the nodes' median times (ms).
    pub fp32_ms: f64,
    pub int8_ms: f64,
    /// The INT8 model's nodes, slowest first, with the FP32 node of the same name.
    pub nodes: Vec<RuntimeNode>,
}

/// One node of the INT8 model as the runtime ran it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RuntimeNode {
    pub name: String,
    pub node_type: String,
    /// The kernel that ran it in the INT8 model ("brgconv_avx512_amx_I8").
    pub exec_type: String,
    /// Whether that kernel computes in int8.
    pub int8: bool,
    pub int8_us: f64,
    /// The same node in the FP32 model, when it has one: kernel and time.
    pub fp32_exec_type: Option<String>,
    pub fp32_us: Option<f64>,
}

/// Whether an OpenVINO CPU kernel name says it computes in int8 ("..._I8", "..._u8").
pub fn is_int8_kernel(exec_type: &str) -> bool {
    let e = exec_type.to_ascii_lowercase();
    e.ends_with("_i8") || e.ends_with("_u8")
}

/// One activation quantizer: the values it saw and the range it was given.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ActivationRange {
    /// The tensor quantized: `producer:port`.
    pub tensor: String,
    /// Smallest and largest value seen on the evaluation samples.
    pub seen_min: f32,
    pub seen_max: f32,
    /// The quantizer's range (per-channel ranges: the widest low and high).
    pub range_low: f32,
    pub range_high: f32,
    pub levels: usize,
    pub per_channel: bool,
    /// Share of the values seen outside the range (clipped by the quantizer).
    pub clipped_share: f64,
    /// Counts of the values seen in [`HISTOGRAM_BINS`] equal bins over `[seen_min, seen_max]`.
    pub histogram: Vec<u64>,
}

/// Bins of [`ActivationRange::histogram`].
pub const HISTOGRAM_BINS: usize = 48;

/// One quantized weight: its error per output channel.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WeightError {
    pub layer: String,
    /// 8, or 7 where the saturation fix halved the range.
    pub bits: u32,
    /// SQNR (dB) of the quantized weight, per output channel (one value for per-tensor).
    pub channel_sqnr_db: Vec<f64>,
    /// The worst and the mean of `channel_sqnr_db`.
    pub min_sqnr_db: f64,
    pub mean_sqnr_db: f64,
    /// Whether its 8-bit int8 pair sums can saturate on the target CPU (no VNNI).
    pub can_saturate: bool,
}

/// An ignored scope and what quantizing with it measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Suggestion {
    /// The output SQNR (dB) asked for.
    pub target_sqnr_db: f64,
    /// Layers to leave in floating point (`ignored.scope` / `--ignore`).
    pub ignored: Vec<String>,
    /// Output SQNR (dB) the analysis predicted for it (the quantized model with those reverted).
    pub predicted_sqnr_db: f64,
    /// Output SQNR (dB) of a quantization run with this ignored scope, on `samples` samples.
    pub measured_sqnr_db: f64,
    pub reached: bool,
    /// Evaluation samples the check measured on: those the analysis measured on and more.
    pub samples: usize,
    /// Output SQNR (dB) of the fully quantized model on those samples (what the default target
    /// adds 3 dB to).
    pub quantized_sqnr_db: f64,
    /// Who computed the check's outputs: the verdict backend (OpenVINO where it computes the
    /// target's int8 arithmetic here, else the built-in engine emulating it).
    pub judge: String,
}

/// Output SQNR in dB from the summed signal and noise energies (∞ → 200 dB, for JSON).
pub fn sqnr_db(signal: f64, noise: f64) -> f64 {
    if noise <= 0.0 {
        return 200.0;
    }
    if signal <= 0.0 {
        return -200.0;
    }
    (10.0 * (signal / noise).log10()).clamp(-200.0, 200.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_kernels_by_name() {
        assert!(is_int8_kernel("brgconv_avx512_amx_I8") && is_int8_kernel("jit_avx2_u8"));
        assert!(!is_int8_kernel("brgconv_avx512_FP32") && !is_int8_kernel("undef"));
    }

    #[test]
    fn sqnr_of_energies() {
        assert!((sqnr_db(100.0, 1.0) - 20.0).abs() < 1e-12);
        assert_eq!(sqnr_db(1.0, 0.0), 200.0);
        assert_eq!(sqnr_db(0.0, 1.0), -200.0);
    }
}
