"""ctypes declarations of libovpot's C ABI (include/ovpot.h), and the error type its statuses map to."""
from __future__ import annotations

import ctypes as C
import glob
import os

ABI_VERSION = 1

# ovpot_status_e
OK, INVALID_ARGUMENT, PARSE_ERROR, UNSUPPORTED, MISMATCH = 0, 1, 2, 3, 4
CALLBACK_FAILED, CANCELLED, ACCURACY_NOT_REACHED, IO_ERROR, INTERNAL = 5, 6, 7, 8, 9

# ovpot_element_type_e, in header order
ELEMENT_TYPES = ["f32", "f16", "bf16", "f64", "i4", "u4", "i8", "u8", "i16", "u16", "i32", "u32", "i64", "u64",
                 "boolean", "dynamic"]


class OvpotError(RuntimeError):
    """A failed libovpot call: `status` is the C status name (e.g. "INVALID_ARGUMENT"), `code` its
    value, the message is libovpot's `ovpot_last_error()`."""

    def __init__(self, code: int, status: str, message: str):
        super().__init__(message)
        self.code = code
        self.status = status


class AccuracyNotReached(OvpotError):
    """Accuracy control ended above the allowed drop; `model` is the best model found."""

    model = None


def _library_path() -> str:
    override = os.environ.get("OVPOT_LIBRARY")
    if override:
        return override
    here = os.path.dirname(os.path.abspath(__file__))
    for pattern in ("_libovpot*.so", "_libovpot*.pyd", "_libovpot*.dylib", "libovpot.so", "libovpot.dylib"):
        found = sorted(glob.glob(os.path.join(here, pattern)))
        if found:
            return found[0]
    raise ImportError(f"libovpot is not inside the package ({here}); install with `pip install ./python`"
                      " or set OVPOT_LIBRARY to a libovpot.so")


lib = C.CDLL(_library_path())

c_size_p = C.POINTER(C.c_size_t)
PROGRESS = C.CFUNCTYPE(C.c_int, C.c_void_p, C.c_int, C.c_size_t, C.c_size_t)
LOG = C.CFUNCTYPE(None, C.c_void_p, C.c_int, C.c_char_p)
GET_ITEM = C.CFUNCTYPE(C.c_int, C.c_void_p, C.c_size_t, C.c_void_p)
DESTROY = C.CFUNCTYPE(None, C.c_void_p)
METRIC_UPDATE = C.CFUNCTYPE(C.c_int, C.c_void_p, C.c_void_p, C.c_size_t)
METRIC_VALUE = C.CFUNCTYPE(C.c_int, C.c_void_p, C.POINTER(C.c_double))
METRIC_RESET = C.CFUNCTYPE(C.c_int, C.c_void_p)
MODEL_EVALUATE = C.CFUNCTYPE(C.c_int, C.c_void_p, C.c_void_p, C.POINTER(C.c_double))

vp, vpp, cp = C.c_void_p, C.POINTER(C.c_void_p), C.c_char_p
_SIGNATURES = {
    "ovpot_last_error": ([], cp),
    "ovpot_version": ([], cp),
    "ovpot_abi_version": ([], C.c_uint32),
    "ovpot_status_name": ([C.c_int], cp),
    "ovpot_host_target_isa": ([], cp),
    "ovpot_model_read": ([cp, cp, vpp], C.c_int),
    "ovpot_model_read_from_memory_buffer": ([cp, C.c_size_t, vp, C.c_size_t, vpp], C.c_int),
    "ovpot_model_save": ([vp, cp, cp], C.c_int),
    "ovpot_model_save_to_memory_buffer": ([vp, vpp], C.c_int),
    "ovpot_ir_buffer_xml": ([vp, C.POINTER(cp), c_size_p], C.c_int),
    "ovpot_ir_buffer_weights": ([vp, vpp, c_size_p], C.c_int),
    "ovpot_ir_buffer_free": ([vp], None),
    "ovpot_model_get_friendly_name": ([vp, C.POINTER(cp)], C.c_int),
    "ovpot_model_inputs_size": ([vp, c_size_p], C.c_int),
    "ovpot_model_outputs_size": ([vp, c_size_p], C.c_int),
    "ovpot_model_input_name": ([vp, C.c_size_t, C.POINTER(cp)], C.c_int),
    "ovpot_model_output_name": ([vp, C.c_size_t, C.POINTER(cp)], C.c_int),
    "ovpot_model_input_element_type": ([vp, C.c_size_t, C.POINTER(C.c_int)], C.c_int),
    "ovpot_model_infer": ([vp, vp, vpp], C.c_int),
    "ovpot_model_free": ([vp], None),
    "ovpot_sample_create": ([vp, vpp], C.c_int),
    "ovpot_sample_set_input": ([vp, cp, C.c_uint32, C.POINTER(C.c_int64), C.c_size_t, vp, C.c_size_t], C.c_int),
    "ovpot_sample_set_input_by_index": ([vp, C.c_size_t, C.c_uint32, C.POINTER(C.c_int64), C.c_size_t, vp,
                                         C.c_size_t], C.c_int),
    "ovpot_sample_free": ([vp], None),
    "ovpot_outputs_size": ([vp, c_size_p], C.c_int),
    "ovpot_outputs_name": ([vp, C.c_size_t, C.POINTER(cp)], C.c_int),
    "ovpot_outputs_element_type": ([vp, C.c_size_t, C.POINTER(C.c_int)], C.c_int),
    "ovpot_outputs_shape": ([vp, C.c_size_t, C.POINTER(C.POINTER(C.c_int64)), c_size_p], C.c_int),
    "ovpot_outputs_data": ([vp, C.c_size_t, vpp, c_size_p], C.c_int),
    "ovpot_outputs_free": ([vp], None),
    "ovpot_dataset_create": ([vp, C.c_size_t, GET_ITEM, vp, DESTROY, vpp], C.c_int),
    "ovpot_dataset_free": ([vp], None),
    "ovpot_metric_create": ([METRIC_UPDATE, METRIC_VALUE, METRIC_RESET, C.c_int, vp, DESTROY, vpp], C.c_int),
    "ovpot_metric_create_model_evaluator": ([MODEL_EVALUATE, C.c_int, vp, DESTROY, vpp], C.c_int),
    "ovpot_metric_free": ([vp], None),
    "ovpot_session_create": ([vp, cp, vpp], C.c_int),
    "ovpot_session_set_option": ([vp, cp, cp], C.c_int),
    "ovpot_session_set_backend": ([vp, cp, cp], C.c_int),
    "ovpot_session_set_progress_callback": ([vp, PROGRESS, vp], C.c_int),
    "ovpot_session_set_log_callback": ([vp, LOG, C.c_uint32, vp], C.c_int),
    "ovpot_session_run": ([vp, vp, vpp], C.c_int),
    "ovpot_session_run_accuracy_aware": ([vp, vp, vp, vp, vpp], C.c_int),
    "ovpot_session_report_json": ([vp, C.POINTER(cp)], C.c_int),
    "ovpot_session_analyze": ([vp, vp, vp, C.c_size_t, C.c_double, C.POINTER(cp)], C.c_int),
    "ovpot_session_analysis_html": ([vp, C.POINTER(cp)], C.c_int),
    "ovpot_session_free": ([vp], None),
    "ovpot_compressor_create": ([cp, vpp], C.c_int),
    "ovpot_compressor_set_progress_callback": ([vp, PROGRESS, vp], C.c_int),
    "ovpot_compressor_set_log_callback": ([vp, LOG, C.c_uint32, vp], C.c_int),
    "ovpot_compressor_set_calibration": ([vp, vp], C.c_int),
    "ovpot_compressor_set_backend": ([vp, cp, cp], C.c_int),
    "ovpot_compressor_compress_model": ([vp, vp, vpp], C.c_int),
    "ovpot_compressor_compress_file": ([vp, cp, cp], C.c_int),
    "ovpot_compressor_report_json": ([vp, C.POINTER(cp)], C.c_int),
    "ovpot_compressor_free": ([vp], None),
}

for _name, (_args, _ret) in _SIGNATURES.items():
    _fn = getattr(lib, _name)
    _fn.argtypes = _args
    _fn.restype = _ret

if lib.ovpot_abi_version() != ABI_VERSION:
    raise ImportError(f"libovpot ABI {lib.ovpot_abi_version()} does not match the package's {ABI_VERSION}")


def last_error() -> str:
    msg = lib.ovpot_last_error()
    return msg.decode("utf-8", "replace") if msg else ""


def check(status: int, pending: BaseException | None = None) -> None:
    """Raises for a non-OK status. A Python exception raised inside a callback of the failed call
    (`pending`) is re-raised itself, with libovpot's message as its context."""
    if status == OK:
        return
    name = lib.ovpot_status_name(status).decode()
    err = OvpotError(status, name, last_error())
    if pending is not None:
        raise pending from err
    raise err
