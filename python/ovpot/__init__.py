"""ovpot for Python: NNCF's calls (`quantize`, `quantize_with_accuracy_control`,
`compress_weights`) over libovpot's C ABI, in process, without NNCF.

    import ovpot as nncf      # the same calls and argument names
    quantized = nncf.quantize(ov_model, nncf.Dataset(data, transform))
"""
from ._capi import AccuracyNotReached, OvpotError, lib as _lib
from ._api import (
    BackupMode,
    CompressWeightsMode,
    Dataset,
    DropType,
    IgnoredScope,
    Model,
    ModelType,
    QuantizationPreset,
    TargetDevice,
    analyze,
    compress_weights,
    quantize,
    quantize_with_accuracy_control,
    read_model,
)

__version__ = _lib.ovpot_version().decode()

__all__ = [
    "AccuracyNotReached",
    "BackupMode",
    "CompressWeightsMode",
    "Dataset",
    "DropType",
    "IgnoredScope",
    "Model",
    "ModelType",
    "OvpotError",
    "QuantizationPreset",
    "TargetDevice",
    "analyze",
    "compress_weights",
    "quantize",
    "quantize_with_accuracy_control",
    "read_model",
]
