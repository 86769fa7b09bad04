//! Hardware configs as data: which ops get quantizers on which inputs, with what bits and modes,
//! per target device. Derived from the op tables POT and NNCF ship for CPU/GPU/NPU/GNA.

use super::config::{Granularity, ModelType, Preset, TargetDevice, WeightOptions};

/// How an op takes quantizers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Weighted op: activation inputs and a constant weight input (Conv, MatMul).
    Weighted,
    /// Quantized on all activation inputs, only when every data input is an activation
    /// (eltwise ops; with a constant operand they fuse into the producer as bias/scale).
    Eltwise,
    /// Quantized on its (first) activation input only (pooling, reductions, normalizations).
    ActivationOnly,
    /// Quantization passes through it unchanged (data movement, max).
    Agnostic,
    /// Inputs share one scale (Concat).
    Unified,
    /// A Gather whose table is constant: weights only.
    Embedding,
}

/// Bits and symmetry for one kind of quantizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QSpec {
    pub bits: u32,
    pub symmetric: bool,
    pub per_channel: bool,
    /// Weights: levels 2^bits − 1 with a signed grid symmetric around zero.
    pub narrow_range: bool,
    /// Levels set by POT's `level_low`/`level_high` instead of the bits.
    pub levels_override: Option<usize>,
}

impl QSpec {
    pub fn levels(&self) -> usize {
        if let Some(l) = self.levels_override {
            l
        } else if self.narrow_range {
            (1usize << self.bits) - 1
        } else {
            1usize << self.bits
        }
    }
}

/// A device's quantization rules.
#[derive(Clone, Debug)]
pub struct HwConfig {
    pub device: TargetDevice,
    pub activation_bits: u32,
    pub weight_bits: u32,
    ops: &'static [(&'static str, Role)],
    /// Op types never quantized for this device (beyond the tables).
    excluded: Vec<&'static str>,
}

/// CPU (and ANY, GPU, NPU for 8-bit, which NNCF maps onto CPU) op table.
const CPU_OPS: &[(&str, Role)] = &[
    ("Convolution", Role::Weighted),
    ("GroupConvolution", Role::Weighted),
    ("ConvolutionBackpropData", Role::Weighted),
    ("GroupConvolutionBackpropData", Role::Weighted),
    ("MatMul", Role::Weighted),
    ("Add", Role::Eltwise),
    ("Multiply", Role::Eltwise),
    ("Maximum", Role::Eltwise),
    ("Minimum", Role::Eltwise),
    ("Less", Role::Eltwise),
    ("LessEqual", Role::Eltwise),
    ("Greater", Role::Eltwise),
    ("GreaterEqual", Role::Eltwise),
    ("Equal", Role::Eltwise),
    ("NotEqual", Role::Eltwise),
    ("Divide", Role::Eltwise),
    ("Subtract", Role::Eltwise),
    ("FloorMod", Role::Eltwise),
    ("LogicalAnd", Role::Eltwise),
    ("LogicalOr", Role::Eltwise),
    ("LogicalXor", Role::Eltwise),
    ("Power", Role::ActivationOnly),
    ("AvgPool", Role::ActivationOnly),
    ("NormalizeL2", Role::ActivationOnly),
    ("ReduceL2", Role::ActivationOnly),
    ("ReduceMean", Role::ActivationOnly),
    ("ReduceSum", Role::ActivationOnly),
    ("Interpolate", Role::ActivationOnly),
    ("MVN", Role::ActivationOnly),
    ("GroupNormalization", Role::ActivationOnly),
    ("ScaledDotProductAttention", Role::ActivationOnly),
    ("Concat", Role::Unified),
    ("MaxPool", Role::Agnostic),
    ("ReduceMax", Role::Agnostic),
    ("Reshape", Role::Agnostic),
    ("Squeeze", Role::Agnostic),
    ("Unsqueeze", Role::Agnostic),
    ("Split", Role::Agnostic),
    ("VariadicSplit", Role::Agnostic),
    ("Transpose", Role::Agnostic),
    ("Tile", Role::Agnostic),
    ("StridedSlice", Role::Agnostic),
    ("Slice", Role::Agnostic),
    ("ShuffleChannels", Role::Agnostic),
    ("Broadcast", Role::Agnostic),
    ("Pad", Role::Agnostic),
    ("DepthToSpace", Role::Agnostic),
    ("SpaceToDepth", Role::Agnostic),
    ("ConvertLike", Role::Agnostic),
    ("Gather", Role::Embedding),
];

/// GNA quantizes only the weighted and a few eltwise ops, with 16-bit activations (POT's GNA
/// config); everything else stays in floating point.
const GNA_OPS: &[(&str, Role)] = &[
    ("Convolution", Role::Weighted),
    ("MatMul", Role::Weighted),
    ("Add", Role::Eltwise),
    ("Multiply", Role::Eltwise),
    ("Subtract", Role::Eltwise),
    ("Concat", Role::Unified),
    ("MaxPool", Role::Agnostic),
    ("Reshape", Role::Agnostic),
    ("Squeeze", Role::Agnostic),
    ("Unsqueeze", Role::Agnostic),
    ("Split", Role::Agnostic),
    ("VariadicSplit", Role::Agnostic),
    ("Transpose", Role::Agnostic),
    ("StridedSlice", Role::Agnostic),
    ("Slice", Role::Agnostic),
];

/// NNCF's list of ops left unquantized for `model_type: transformer`.
const TRANSFORMER_EXCLUDED: &[&str] = &[
    "Add",
    "Power",
    "Squeeze",
    "Subtract",
    "AvgPool",
    "ReduceMean",
    "ReduceL2",
    "ReduceSum",
    "SquaredDifference",
    "MVN",
    "GroupNormalization",
    "BatchNormInference",
    "Divide",
    "Sqrt",
    "Maximum",
    "GreaterEqual",
    "Greater",
    "LessEqual",
    "Less",
    "NotEqual",
    "Equal",
];

impl HwConfig {
    pub fn new(device: TargetDevice, model_type: Option<ModelType>) -> Self {
        let (ops, activation_bits) = match device {
            TargetDevice::GNA => (GNA_OPS, 16),
            _ => (CPU_OPS, 8),
        };
        let mut excluded = vec![];
        if model_type == Some(ModelType::Transformer) {
            excluded.extend_from_slice(TRANSFORMER_EXCLUDED);
            if device != TargetDevice::CPU_SPR {
                excluded.push("Multiply");
            }
        }
        HwConfig { device, activation_bits, weight_bits: 8, ops, excluded }
    }

    pub fn role(&self, op_type: &str) -> Option<Role> {
        let role = self.ops.iter().find(|(t, _)| *t == op_type).map(|(_, r)| *r)?;
        // Excluded ops are barriers, agnostic ones too: in a transformer a quantizer does not
        // move up through a Squeeze (NNCF's placement).
        if self.excluded.contains(&op_type) {
            return None;
        }
        Some(role)
    }

    /// Activation quantizer spec for a preset.
    pub fn activation_spec(&self, preset: Preset) -> QSpec {
        QSpec {
            bits: self.activation_bits,
            symmetric: preset == Preset::Performance || self.device == TargetDevice::GNA,
            per_channel: false,
            narrow_range: false,
            levels_override: None,
        }
    }

    /// Weight quantizer spec: by default symmetric, per output channel, 8 bits on the narrow
    /// range (−127..127); POT's `weights` block changes each of them.
    pub fn weight_spec(&self, options: &WeightOptions, symmetric: bool) -> QSpec {
        let bits = options.bits.unwrap_or(self.weight_bits);
        let levels = options.levels(symmetric);
        let narrow = (1usize << bits) - 1;
        QSpec {
            bits,
            symmetric,
            per_channel: options.granularity != Some(Granularity::Pertensor),
            narrow_range: symmetric,
            levels_override: (levels != if symmetric { narrow } else { narrow + 1 }).then_some(levels),
        }
    }

    /// Whether this device needs the saturation (overflow) fix at all: CPUs without VNNI
    /// saturate int8 dot products; GNA and 16-bit schemes do not.
    pub fn uses_saturation_fix(&self) -> bool {
        self.device != TargetDevice::GNA
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables() {
        let cpu = HwConfig::new(TargetDevice::CPU, None);
        assert_eq!(cpu.role("Convolution"), Some(Role::Weighted));
        assert_eq!(cpu.role("MaxPool"), Some(Role::Agnostic));
        assert_eq!(cpu.role("Relu"), None);
        let tr = HwConfig::new(TargetDevice::CPU, Some(ModelType::Transformer));
        assert_eq!(tr.role("Add"), None);
        assert_eq!(tr.role("Multiply"), None);
        assert_eq!(tr.role("MatMul"), Some(Role::Weighted));
        let spr = HwConfig::new(TargetDevice::CPU_SPR, Some(ModelType::Transformer));
        assert_eq!(spr.role("Multiply"), Some(Role::Eltwise));
        let gna = HwConfig::new(TargetDevice::GNA, None);
        assert_eq!(gna.activation_spec(Preset::Mixed).bits, 16);
        assert_eq!(gna.activation_spec(Preset::Mixed).levels(), 65536);
        assert_eq!(gna.role("GroupConvolution"), None);
        assert_eq!(cpu.weight_spec(&WeightOptions::default(), true).levels(), 255);
        assert_eq!(cpu.weight_spec(&WeightOptions::default(), false).levels(), 256);
        let four = WeightOptions { bits: Some(4), ..Default::default() };
        assert_eq!(cpu.weight_spec(&four, true).levels(), 15);
        let wide = WeightOptions { level_low: Some(-128), level_high: Some(127), ..Default::default() };
        assert_eq!(cpu.weight_spec(&wide, true).levels(), 256);
    }
}
