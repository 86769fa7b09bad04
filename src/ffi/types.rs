//! The C API's plain types: version constants, status codes, element types, stages and log
//! levels, with their conversions from and to the Rust API's.

use crate::api::{LogLevel, Stage};
use crate::error::{Error, Result};
use crate::tensor::ElementType;

/// Version of the C ABI. Raised on any incompatible change; compare with `ovpot_abi_version()`
/// at run time to detect a header/library mismatch.
pub const OVPOT_ABI_VERSION: u32 = 1;
/// Library version, major part.
pub const OVPOT_VERSION_MAJOR: u32 = 0;
/// Library version, minor part.
pub const OVPOT_VERSION_MINOR: u32 = 1;
/// Library version, patch part.
pub const OVPOT_VERSION_PATCH: u32 = 0;

/// Result of every fallible ovpot call. On anything but `OVPOT_OK`, `ovpot_last_error()` gives a
/// message naming the function and the cause (file, layer, input, sample index).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ovpot_status_e {
    /// Success.
    OVPOT_OK = 0,
    /// A NULL pointer, a bad value, an index out of range, invalid UTF-8.
    OVPOT_INVALID_ARGUMENT = 1,
    /// A model, configuration or data file could not be parsed.
    OVPOT_PARSE_ERROR = 2,
    /// An operation, element type or setting ovpot does not support.
    OVPOT_UNSUPPORTED = 3,
    /// Shape or element type mismatch (inputs, byte sizes, outputs).
    OVPOT_MISMATCH = 4,
    /// A user callback returned a failure; the message names the callback and the sample index.
    OVPOT_CALLBACK_FAILED = 5,
    /// The progress callback asked to stop.
    OVPOT_CANCELLED = 6,
    /// Accuracy-aware quantization ended above the allowed drop; the best model found is still
    /// returned.
    OVPOT_ACCURACY_NOT_REACHED = 7,
    /// A file could not be read or written.
    OVPOT_IO_ERROR = 8,
    /// A bug in ovpot (including a caught panic); the message says where.
    OVPOT_INTERNAL = 9,
}

/// Element types, as OpenVINO names them (values are ovpot's own, not OpenVINO's
/// `ov_element_type_e`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ovpot_element_type_e {
    /// 32-bit float.
    OVPOT_ELEMENT_TYPE_F32 = 0,
    /// 16-bit IEEE half float.
    OVPOT_ELEMENT_TYPE_F16 = 1,
    /// 16-bit brain float.
    OVPOT_ELEMENT_TYPE_BF16 = 2,
    /// 64-bit float.
    OVPOT_ELEMENT_TYPE_F64 = 3,
    /// 4-bit signed integer (packed two per byte; model ports only).
    OVPOT_ELEMENT_TYPE_I4 = 4,
    /// 4-bit unsigned integer (packed two per byte; model ports only).
    OVPOT_ELEMENT_TYPE_U4 = 5,
    /// 8-bit signed integer.
    OVPOT_ELEMENT_TYPE_I8 = 6,
    /// 8-bit unsigned integer.
    OVPOT_ELEMENT_TYPE_U8 = 7,
    /// 16-bit signed integer.
    OVPOT_ELEMENT_TYPE_I16 = 8,
    /// 16-bit unsigned integer.
    OVPOT_ELEMENT_TYPE_U16 = 9,
    /// 32-bit signed integer.
    OVPOT_ELEMENT_TYPE_I32 = 10,
    /// 32-bit unsigned integer.
    OVPOT_ELEMENT_TYPE_U32 = 11,
    /// 64-bit signed integer.
    OVPOT_ELEMENT_TYPE_I64 = 12,
    /// 64-bit unsigned integer.
    OVPOT_ELEMENT_TYPE_U64 = 13,
    /// Boolean, one byte per element (0 or 1).
    OVPOT_ELEMENT_TYPE_BOOLEAN = 14,
    /// Decided at run time (model ports only).
    OVPOT_ELEMENT_TYPE_DYNAMIC = 15,
}

impl ovpot_element_type_e {
    pub(crate) fn from_rust(et: ElementType) -> Self {
        use ovpot_element_type_e::*;
        match et {
            ElementType::F32 => OVPOT_ELEMENT_TYPE_F32,
            ElementType::F16 => OVPOT_ELEMENT_TYPE_F16,
            ElementType::BF16 => OVPOT_ELEMENT_TYPE_BF16,
            ElementType::F64 => OVPOT_ELEMENT_TYPE_F64,
            ElementType::I4 => OVPOT_ELEMENT_TYPE_I4,
            ElementType::U4 => OVPOT_ELEMENT_TYPE_U4,
            ElementType::I8 => OVPOT_ELEMENT_TYPE_I8,
            ElementType::U8 => OVPOT_ELEMENT_TYPE_U8,
            ElementType::I16 => OVPOT_ELEMENT_TYPE_I16,
            ElementType::U16 => OVPOT_ELEMENT_TYPE_U16,
            ElementType::I32 => OVPOT_ELEMENT_TYPE_I32,
            ElementType::U32 => OVPOT_ELEMENT_TYPE_U32,
            ElementType::I64 => OVPOT_ELEMENT_TYPE_I64,
            ElementType::U64 => OVPOT_ELEMENT_TYPE_U64,
            ElementType::Boolean => OVPOT_ELEMENT_TYPE_BOOLEAN,
            ElementType::Dynamic => OVPOT_ELEMENT_TYPE_DYNAMIC,
        }
    }

    /// Reads an element type passed by C as a plain integer (any value may arrive, so the enum
    /// is never taken directly as a parameter).
    pub(crate) fn to_rust(raw: u32, what: &str) -> Result<ElementType> {
        let all = ElementType::ALL.iter().chain([ElementType::Dynamic].iter());
        all.copied()
            .find(|&et| Self::from_rust(et) as u32 == raw)
            .ok_or_else(|| Error::invalid(format!("'{what}': {raw} is not an ovpot_element_type_e value")))
    }
}

/// Long-running stages of a session, reported to the progress callback.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ovpot_stage_e {
    /// Collecting activation statistics on the calibration set.
    OVPOT_STAGE_STATISTICS = 0,
    /// Bias correction.
    OVPOT_STAGE_BIAS_CORRECTION = 1,
    /// Evaluating the metric.
    OVPOT_STAGE_EVALUATION = 2,
    /// Ranking layers by their effect on the metric.
    OVPOT_STAGE_RANKING = 3,
    /// Reverting layers to floating point until the metric is reached.
    OVPOT_STAGE_ACCURACY_AWARE = 4,
    /// SmoothQuant (transformers).
    OVPOT_STAGE_SMOOTH_QUANT = 5,
    /// Weight-only compression (`ovpot_compressor_compress_model` / `_compress_file`): one step per weight.
    OVPOT_STAGE_WEIGHT_COMPRESSION = 6,
    /// Weight compression's mixed precision (`ratio` below 1): one step per ratio-defining weight.
    OVPOT_STAGE_MIXED_PRECISION = 7,
    /// AWQ: one step per scaled weight.
    OVPOT_STAGE_AWQ = 8,
    /// Scale estimation: one step per 4-bit weight.
    OVPOT_STAGE_SCALE_ESTIMATION = 9,
    /// GPTQ: one step per 4-bit MatMul weight, layer after layer.
    OVPOT_STAGE_GPTQ = 10,
}

impl From<Stage> for ovpot_stage_e {
    fn from(s: Stage) -> Self {
        use ovpot_stage_e::*;
        match s {
            Stage::Statistics => OVPOT_STAGE_STATISTICS,
            Stage::BiasCorrection => OVPOT_STAGE_BIAS_CORRECTION,
            Stage::Evaluation => OVPOT_STAGE_EVALUATION,
            Stage::Ranking => OVPOT_STAGE_RANKING,
            Stage::AccuracyAware => OVPOT_STAGE_ACCURACY_AWARE,
            Stage::SmoothQuant => OVPOT_STAGE_SMOOTH_QUANT,
            Stage::WeightCompression => OVPOT_STAGE_WEIGHT_COMPRESSION,
            Stage::MixedPrecision => OVPOT_STAGE_MIXED_PRECISION,
            Stage::Awq => OVPOT_STAGE_AWQ,
            Stage::ScaleEstimation => OVPOT_STAGE_SCALE_ESTIMATION,
            Stage::Gptq => OVPOT_STAGE_GPTQ,
        }
    }
}

/// Severity of a log message; a log callback receives messages at its level and below.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ovpot_log_level_e {
    /// Errors.
    OVPOT_LOG_ERROR = 0,
    /// Warnings.
    OVPOT_LOG_WARNING = 1,
    /// Progress information.
    OVPOT_LOG_INFO = 2,
    /// Details for debugging.
    OVPOT_LOG_DEBUG = 3,
}

impl From<LogLevel> for ovpot_log_level_e {
    fn from(l: LogLevel) -> Self {
        use ovpot_log_level_e::*;
        match l {
            LogLevel::Error => OVPOT_LOG_ERROR,
            LogLevel::Warning => OVPOT_LOG_WARNING,
            LogLevel::Info => OVPOT_LOG_INFO,
            LogLevel::Debug => OVPOT_LOG_DEBUG,
        }
    }
}

impl ovpot_log_level_e {
    pub(crate) fn to_rust(raw: u32) -> Result<LogLevel> {
        Ok(match raw {
            0 => LogLevel::Error,
            1 => LogLevel::Warning,
            2 => LogLevel::Info,
            3 => LogLevel::Debug,
            _ => return Err(Error::invalid(format!("'level': {raw} is not an ovpot_log_level_e value"))),
        })
    }
}
