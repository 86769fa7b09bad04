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
    /// Output SQNR (dB) of a quantization run with this ignored scope.
    pub measured_sqnr_db: f64,
    pub reached: bool,
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
    fn sqnr_of_energies() {
        assert!((sqnr_db(100.0, 1.0) - 20.0).abs() < 1e-12);
        assert_eq!(sqnr_db(1.0, 0.0), 200.0);
        assert_eq!(sqnr_db(0.0, 1.0), -200.0);
    }
}
