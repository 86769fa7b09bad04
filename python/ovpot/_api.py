"""NNCF's calls over libovpot: quantize, quantize_with_accuracy_control, compress_weights."""
from __future__ import annotations

import ctypes as C
import enum
import json
import os
import sys
import tempfile
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import numpy as np

from . import _capi as capi
from ._capi import OvpotError, check, lib


# --- NNCF's enums (NNCF's own members are accepted too: by value) ---------------------------------

class QuantizationPreset(enum.Enum):
    PERFORMANCE = "performance"
    MIXED = "mixed"


class TargetDevice(enum.Enum):
    ANY = "ANY"
    CPU = "CPU"
    GPU = "GPU"
    NPU = "NPU"
    CPU_SPR = "CPU_SPR"


class ModelType(enum.Enum):
    TRANSFORMER = "transformer"


class DropType(enum.Enum):
    ABSOLUTE = "absolute"
    RELATIVE = "relative"


class CompressWeightsMode(enum.Enum):
    INT8_ASYM = "int8_asym"
    INT8_SYM = "int8_sym"
    INT4_ASYM = "int4_asym"
    INT4_SYM = "int4_sym"
    INT8 = "int8_asym"  # NNCF's deprecated alias


class BackupMode(enum.Enum):
    INT8_ASYM = "int8_asym"
    INT8_SYM = "int8_sym"
    NONE = "none"


class IgnoredScope:
    """Layers left in floating point: exact names, regular expressions over names, op types."""

    def __init__(self, names: Sequence[str] = (), patterns: Sequence[str] = (), types: Sequence[str] = (),
                 validate: bool = True):
        self.names, self.patterns, self.types, self.validate = list(names), list(patterns), list(types), validate


def _value(x: Any) -> Any:
    """An enum member (ours or NNCF's) as its value; strings and None as they are."""
    return getattr(x, "value", x)


def _scope_json(scope: Any) -> Optional[dict]:
    if scope is None:
        return None
    return {
        "names": list(getattr(scope, "names", []) or []),
        "patterns": list(getattr(scope, "patterns", []) or []),
        "types": [{"type": t} for t in (getattr(scope, "types", []) or [])],
    }


class Dataset:
    """NNCF's `Dataset`: an iterable data source and an optional transform to model inputs."""

    def __init__(self, data_source: Iterable, transform_func: Optional[Callable] = None):
        self._source = data_source
        self._transform = transform_func

    def get_data(self, indices: Optional[Sequence[int]] = None) -> Iterable:
        return _select(self._source, indices)

    def get_inference_data(self, indices: Optional[Sequence[int]] = None) -> Iterable:
        for item in _select(self._source, indices):
            yield self._transform(item) if self._transform else item

    def get_length(self) -> Optional[int]:
        return len(self._source) if hasattr(self._source, "__len__") else None


def _select(source: Iterable, indices: Optional[Sequence[int]]) -> Iterable:
    if indices is None:
        yield from source
        return
    wanted = sorted(set(indices))
    k = 0
    for i, item in enumerate(source):
        if k < len(wanted) and i == wanted[k]:
            yield item
            k += 1
        if k == len(wanted):
            return


# --- models ---------------------------------------------------------------------------------------

class Model:
    """A model held by libovpot (an `ovpot_model_t`)."""

    def __init__(self, handle: C.c_void_p):
        self._h = handle

    def __del__(self):
        h, self._h = getattr(self, "_h", None), None
        if h and lib is not None:
            lib.ovpot_model_free(h)

    @property
    def handle(self) -> C.c_void_p:
        if not self._h:
            raise ValueError("the model was freed")
        return self._h

    @staticmethod
    def from_memory(xml: bytes, weights: bytes) -> "Model":
        h = C.c_void_p()
        buf = (C.c_uint8 * len(weights)).from_buffer_copy(weights) if weights else None
        check(lib.ovpot_model_read_from_memory_buffer(xml, len(xml), buf, len(weights), C.byref(h)))
        return Model(h)

    def to_memory(self) -> tuple:
        """The IR as (xml bytes, weights bytes)."""
        buf = C.c_void_p()
        check(lib.ovpot_model_save_to_memory_buffer(self.handle, C.byref(buf)))
        try:
            xml, xml_len = C.c_char_p(), C.c_size_t()
            check(lib.ovpot_ir_buffer_xml(buf, C.byref(xml), C.byref(xml_len)))
            data, data_len = C.c_void_p(), C.c_size_t()
            check(lib.ovpot_ir_buffer_weights(buf, C.byref(data), C.byref(data_len)))
            return C.string_at(xml, xml_len.value), C.string_at(data, data_len.value) if data_len.value else b""
        finally:
            lib.ovpot_ir_buffer_free(buf)

    def save(self, xml_path: Union[str, os.PathLike], bin_path: Union[str, os.PathLike, None] = None) -> None:
        """Writes the IR atomically (both files complete, or none)."""
        check(lib.ovpot_model_save(self.handle, os.fsencode(xml_path), os.fsencode(bin_path) if bin_path else None))

    def to_openvino(self):
        """The model as an `openvino.Model`, handed over in memory."""
        import openvino as ov

        xml, weights = self.to_memory()
        tensor = ov.Tensor(np.frombuffer(weights, dtype=np.uint8).copy()) if weights else ov.Tensor(np.zeros(0, np.uint8))
        return ov.Core().read_model(model=xml, weights=tensor)

    def _inputs(self) -> list:
        n = C.c_size_t()
        check(lib.ovpot_model_inputs_size(self.handle, C.byref(n)))
        out = []
        for i in range(n.value):
            name, et = C.c_char_p(), C.c_int()
            check(lib.ovpot_model_input_name(self.handle, i, C.byref(name)))
            check(lib.ovpot_model_input_element_type(self.handle, i, C.byref(et)))
            out.append((name.value.decode(), capi.ELEMENT_TYPES[et.value]))
        return out


def read_model(xml_path: Union[str, os.PathLike], bin_path: Union[str, os.PathLike, None] = None) -> Model:
    """Reads an IR (`.xml`, weights from `bin_path` or the `.bin` next to it)."""
    h = C.c_void_p()
    check(lib.ovpot_model_read(os.fsencode(xml_path), os.fsencode(bin_path) if bin_path else None, C.byref(h)))
    return Model(h)


def _serialize_openvino(ov_model) -> tuple:
    """An openvino.Model's IR bytes. OpenVINO's Python API serializes to `.xml` paths only: a
    memory-backed folder (/dev/shm) where there is one, removed at once; else a temporary folder."""
    import openvino as ov

    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="ovpot-", dir=shm) as d:
        xml, bin_ = os.path.join(d, "m.xml"), os.path.join(d, "m.bin")
        ov.serialize(ov_model, xml, bin_)
        with open(xml, "rb") as fx, open(bin_, "rb") as fb:
            return fx.read(), fb.read()


def _as_model(model: Any) -> tuple:
    """(ovpot Model, whether the caller gave an openvino.Model)."""
    if isinstance(model, Model):
        return model, False
    if isinstance(model, (str, os.PathLike)):
        return read_model(model), False
    if type(model).__module__.startswith("openvino") and hasattr(model, "get_ops"):
        return Model.from_memory(*_serialize_openvino(model)), True
    raise TypeError(f"model: expected an openvino.Model, an ovpot.Model or an IR path, got {type(model).__name__}")


# --- callbacks ------------------------------------------------------------------------------------

class _Run:
    """State shared by the callbacks of one call: the first Python exception raised inside one
    (KeyboardInterrupt included) stops the run and is re-raised when the call returns."""

    def __init__(self, progress: Optional[Callable]):
        self.pending: Optional[BaseException] = None
        self.user_progress = progress
        self.bar = _Bar() if progress is None and sys.stderr.isatty() else None
        self.keep = []  # ctypes callback objects, alive until the call returns

        def on_progress(_ud, stage, done, total):
            try:
                if self.pending is not None:
                    return 1
                if self.user_progress is not None:
                    return 1 if self.user_progress(int(stage), int(done), int(total)) is False else 0
                if self.bar:
                    self.bar.update(int(stage), int(done), int(total))
                return 0
            except BaseException as e:  # noqa: BLE001  (KeyboardInterrupt cancels the run)
                self.pending = e
                return 1

        def on_log(_ud, level, message):
            try:
                if level <= 1:
                    print(f"[ovpot] {message.decode('utf-8', 'replace')}", file=sys.stderr)
            except BaseException as e:  # noqa: BLE001
                self.pending = self.pending or e

        self.progress_cb = capi.PROGRESS(on_progress)
        self.log_cb = capi.LOG(on_log)

    def guard(self, fn: Callable) -> Callable:
        """Wraps a callback body: returns 0, or 1 after keeping the exception."""

        def wrapped(*args):
            if self.pending is not None:
                return 1
            try:
                fn(*args)
                return 0
            except BaseException as e:  # noqa: BLE001
                self.pending = e
                return 1

        return wrapped

    def check(self, status: int) -> None:
        if self.pending is not None and status != capi.OK:
            check(status, self.pending)
        check(status)


class _Bar:
    """A one-line progress bar on stderr (when it is a terminal and no progress callback is given)."""

    NAMES = ["statistics", "bias correction", "evaluation", "ranking", "accuracy-aware", "smooth quant",
             "weight compression", "mixed precision", "AWQ", "scale estimation", "GPTQ"]

    def update(self, stage: int, done: int, total: int) -> None:
        name = self.NAMES[stage] if 0 <= stage < len(self.NAMES) else str(stage)
        width = 30
        filled = width * done // max(total, 1)
        sys.stderr.write(f"\r{name:>18} [{'=' * filled}{' ' * (width - filled)}] {done}/{total}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _to_array(x: Any) -> np.ndarray:
    if hasattr(x, "data") and type(x).__module__.startswith("openvino"):
        x = x.data  # ov.Tensor
    return np.ascontiguousarray(np.asarray(x))


_NP_OF = {"f32": np.float32, "f16": np.float16, "f64": np.float64, "i8": np.int8, "u8": np.uint8,
          "i16": np.int16, "u16": np.uint16, "i32": np.int32, "u32": np.uint32, "i64": np.int64,
          "u64": np.uint64, "boolean": np.bool_}


class _SampleSource:
    """Model inputs from an NNCF-style dataset (or any iterable), as a libovpot callback dataset."""

    def __init__(self, model: Model, dataset: Any, limit: Optional[int], run: _Run):
        items = dataset.get_inference_data() if hasattr(dataset, "get_inference_data") else dataset
        self.items = []
        for item in items:
            if limit is not None and len(self.items) >= limit:
                break
            self.items.append(item)
        if not self.items:
            raise ValueError("the dataset is empty")
        self.inputs = model._inputs()
        self.run = run
        self.cb = capi.GET_ITEM(run.guard(self._fill))
        self.h = C.c_void_p()
        check(lib.ovpot_dataset_create(model.handle, len(self.items), self.cb, None, capi.DESTROY(), C.byref(self.h)))

    def _fill(self, _ud, index, sample):
        item = self.items[index]
        if isinstance(item, dict):
            by_index = {i: item[name] for i, (name, _) in enumerate(self.inputs) if name in item}
            unknown = set(item) - {n for n, _ in self.inputs}
            if unknown:
                raise KeyError(f"sample {index}: no model input is named {sorted(unknown)}")
        elif isinstance(item, (tuple, list)):
            by_index = dict(enumerate(item))
        else:
            by_index = {0: item}
        for i, value in by_index.items():
            if i >= len(self.inputs):
                raise IndexError(f"sample {index}: {len(by_index)} inputs given, the model has {len(self.inputs)}")
            a = _to_array(value)
            want = _NP_OF.get(self.inputs[i][1])
            if want is not None and a.dtype != want:
                a = a.astype(want)
            et = capi.ELEMENT_TYPES.index({np.dtype(v): k for k, v in _NP_OF.items()}[a.dtype])
            shape = (C.c_int64 * a.ndim)(*a.shape)
            check(lib.ovpot_sample_set_input_by_index(sample, i, et, shape, a.ndim, a.ctypes.data, a.nbytes))

    def free(self):
        if self.h:
            lib.ovpot_dataset_free(self.h)
            self.h = None


def _openvino_libs() -> Optional[str]:
    try:
        import openvino
    except ImportError:
        return None
    libs = os.path.join(os.path.dirname(openvino.__file__), "libs")
    return libs if os.path.isdir(libs) else None


def _resolved_backend(backend: str, openvino_model: bool) -> str:
    """"auto": OpenVINO's runtime when the model came as an `openvino.Model` (the runtime that
    will run the INT8 model is in this process and judges it), else ovpot's engine."""
    if backend == "auto":
        return "openvino" if openvino_model and _openvino_libs() is not None else "builtin"
    return backend


def _set_backend(setter, handle, backend: str) -> None:
    """`setter(handle, name, library)` (a session's or a compressor's) for a resolved backend."""
    if backend == "openvino":
        libs = _openvino_libs()
        if libs is None:
            raise ValueError("backend='openvino' needs the openvino package")
        check(setter(handle, b"openvino", libs.encode()))
    elif backend != "builtin":
        raise ValueError(f"backend: 'auto', 'builtin' or 'openvino', got {backend!r}")


def _session(model: Model, options: dict, backend: str, run: _Run) -> C.c_void_p:
    s = C.c_void_p()
    check(lib.ovpot_session_create(model.handle, None, C.byref(s)))
    try:
        for key, value in options.items():
            if value is not None:
                check(lib.ovpot_session_set_option(s, key.encode(), json.dumps(value).encode()))
        _set_backend(lib.ovpot_session_set_backend, s, backend)
        check(lib.ovpot_session_set_progress_callback(s, run.progress_cb, None))
        check(lib.ovpot_session_set_log_callback(s, run.log_cb, 1, None))
    except BaseException:
        lib.ovpot_session_free(s)
        raise
    return s


def _common_options(preset, target_device, subset_size, fast_bias_correction, model_type, ignored_scope) -> dict:
    return {
        "preset": _value(preset),
        "target_device": _value(target_device),
        "stat_subset_size": int(subset_size),
        "use_fast_bias": bool(fast_bias_correction),
        "model_type": _value(model_type),
        "ignored": _scope_json(ignored_scope),
    }


def _result(model: Model, as_openvino: bool):
    return model.to_openvino() if as_openvino else model


# --- the calls ------------------------------------------------------------------------------------

def quantize(model, calibration_dataset, mode=None, preset=None, target_device=TargetDevice.ANY,
             subset_size: int = 300, fast_bias_correction: bool = True, model_type=None, ignored_scope=None,
             advanced_parameters=None, *, backend: str = "auto", progress: Optional[Callable] = None):
    """INT8 post-training quantization, as `nncf.quantize` (same arguments, same meanings).

    `model`: an `openvino.Model` (handed over in memory; an `openvino.Model` comes back), an
    `ovpot.Model` or an IR path (an `ovpot.Model` comes back). `calibration_dataset`: an
    `nncf.Dataset`/`ovpot.Dataset`, or any iterable of samples: a numpy array (one input), a tuple
    (inputs in order) or a dict by input name. The first `subset_size` samples are used.
    `backend`: "openvino" (the installed openvino's runtime: exact int8 verdicts for this CPU,
    OpenVINO's speed), "builtin" (ovpot's engine) or "auto" (openvino when `model` is an
    `openvino.Model`, else builtin).
    `progress(stage, done, total)` may return False to cancel; by default a bar is drawn on a
    terminal. Ctrl-C cancels the run cleanly (KeyboardInterrupt is raised)."""
    if mode is not None:
        raise ValueError("mode: only the default integer quantization is available")
    if advanced_parameters is not None:
        raise ValueError("advanced_parameters are not supported; use ovpot's options")
    m, as_ov = _as_model(model)
    run = _Run(progress)
    data = _SampleSource(m, calibration_dataset, int(subset_size), run)
    s = _session(m, _common_options(preset, target_device, subset_size, fast_bias_correction, model_type,
                                    ignored_scope), _resolved_backend(backend, as_ov), run)
    try:
        out = C.c_void_p()
        run.check(lib.ovpot_session_run(s, data.h, C.byref(out)))
        return _result(Model(out), as_ov)
    finally:
        lib.ovpot_session_free(s)
        data.free()


def quantize_with_accuracy_control(model, calibration_dataset, validation_dataset, validation_fn: Callable,
                                   max_drop: float = 0.01, drop_type=DropType.ABSOLUTE, preset=None,
                                   target_device=TargetDevice.ANY, subset_size: int = 300,
                                   fast_bias_correction: bool = True, model_type=None, ignored_scope=None,
                                   advanced_quantization_parameters=None, advanced_accuracy_restorer_parameters=None,
                                   *, backend: str = "auto", progress: Optional[Callable] = None):
    """INT8 with accuracy control, as `nncf.quantize_with_accuracy_control`: layers go back to
    floating point until `validation_fn` is within `max_drop` of the FP32 model.

    `validation_fn(compiled_model, validation_data) -> float` (or `(float, per_sample)`) is called
    as NNCF calls it: with the candidate compiled by OpenVINO on the CPU (f32 inference precision)
    and `validation_dataset.get_data()`. Raises `ovpot.AccuracyNotReached` (its `.model` is the
    best model found) when the drop cannot be met."""
    import openvino as ov

    if advanced_quantization_parameters is not None or advanced_accuracy_restorer_parameters is not None:
        raise ValueError("advanced parameters are not supported; use ovpot's options")
    m, as_ov = _as_model(model)
    run = _Run(progress)
    core = ov.Core()

    def evaluate(_ud, candidate, value):
        # The candidate is valid only during this call: copied out as IR bytes first.
        xml, weights = _borrowed_ir(candidate)
        tensor = ov.Tensor(np.frombuffer(weights, dtype=np.uint8).copy())
        compiled = core.compile_model(core.read_model(model=xml, weights=tensor), "CPU",
                                      {"INFERENCE_PRECISION_HINT": "f32"})
        data = validation_dataset.get_data() if hasattr(validation_dataset, "get_data") else validation_dataset
        result = validation_fn(compiled, data)
        if isinstance(result, tuple):
            result = result[0]
        value[0] = float(result)

    calib = _SampleSource(m, calibration_dataset, int(subset_size), run)
    evaluation = _SampleSource(m, validation_dataset, None, run)
    metric_cb = capi.MODEL_EVALUATE(run.guard(evaluate))
    metric = C.c_void_p()
    check(lib.ovpot_metric_create_model_evaluator(metric_cb, 1, None, capi.DESTROY(), C.byref(metric)))
    options = _common_options(preset, target_device, subset_size, fast_bias_correction, model_type, ignored_scope)
    options.update({"maximal_drop": float(max_drop), "drop_type": _value(drop_type)})
    s = C.c_void_p()
    try:
        s = _session(m, options, _resolved_backend(backend, as_ov), run)
        out = C.c_void_p()
        status = lib.ovpot_session_run_accuracy_aware(s, calib.h, evaluation.h, metric, C.byref(out))
        if status == capi.ACCURACY_NOT_REACHED:
            err = capi.AccuracyNotReached(status, "ACCURACY_NOT_REACHED", capi.last_error())
            err.model = _result(Model(out), as_ov)
            raise err
        run.check(status)
        return _result(Model(out), as_ov)
    finally:
        if s:
            lib.ovpot_session_free(s)
        lib.ovpot_metric_free(metric)
        calib.free()
        evaluation.free()


def _borrowed_ir(handle: int) -> tuple:
    """IR bytes of a model handle owned by libovpot (not freed here)."""
    m = Model.__new__(Model)
    m._h = C.c_void_p(handle)
    try:
        return m.to_memory()
    finally:
        m._h = None


def compress_weights(model, mode=CompressWeightsMode.INT8_ASYM, ratio: Optional[float] = None,
                     group_size: Optional[int] = None, ignored_scope=None, all_layers: Optional[bool] = None,
                     sensitivity_metric=None, awq=None, subset_size=None, scale_estimation=None, gptq=None,
                     lora_correction=None, backup_mode=None, dataset=None, advanced_parameters=None, *,
                     backend: str = "auto", progress: Optional[Callable] = None):
    """Weight-only INT8/INT4 compression, as `nncf.compress_weights` (NNCF's codes, byte for byte).

    With `dataset` (an `nncf.Dataset` or any iterable of model inputs: for an LLM, dicts of
    input_ids, attention_mask, position_ids and beam_idx, one window each) the data-aware methods
    run as NNCF's: `awq`, `scale_estimation`, `gptq` (layer after layer; with
    `scale_estimation` the scales are estimated inside it), and mixed precision (`ratio` < 1)
    ranked by `sensitivity_metric` (default with a dataset: max_activation_variance). `awq`
    without a dataset is NNCF's data-free AWQ. `subset_size` (128) samples are read, or
    `gptq_params.subset_size` (128) for GPTQ when larger.

    From `advanced_parameters` (NNCF's AdvancedCompressionParameters, or any object with these
    attributes) ovpot takes `group_size_fallback_mode` (error, ignore, adjust),
    `min_adjusted_group_size`, `awq_params`, `scale_estimation_params`, `gptq_params` and
    `statistics_path` (a folder keeping the statistics: a later call on the same model and
    samples reads them).

    `backend`: where the statistics run, "builtin" or "openvino" ("auto": OpenVINO when the
    model came as an `openvino.Model`). LoRA correction is not available yet."""
    if lora_correction:
        raise ValueError("lora_correction: not available in ovpot yet (AWQ, scale estimation and GPTQ are)")
    options = {"mode": _value(mode)}
    if ratio is not None:
        options["ratio"] = float(ratio)
    if group_size is not None:
        options["group_size"] = int(group_size)
    if all_layers is not None:
        options["all_layers"] = bool(all_layers)
    if backup_mode is not None:
        options["backup_mode"] = _value(backup_mode)
    if ignored_scope is not None:
        options["ignored"] = _scope_json(ignored_scope)
    fallback = getattr(advanced_parameters, "group_size_fallback_mode", None)
    if fallback is not None:
        options["group_size_fallback"] = _value(fallback)
    min_group = getattr(advanced_parameters, "min_adjusted_group_size", None)
    if min_group is not None:
        options["min_adjusted_group_size"] = int(min_group)
    if awq:
        options["awq"] = True
    if scale_estimation:
        options["scale_estimation"] = True
    if gptq:
        options["gptq"] = True
    if subset_size is not None:
        options["subset_size"] = int(subset_size)
    if sensitivity_metric is not None:
        options["sensitivity_metric"] = _value(sensitivity_metric)
    statistics_path = getattr(advanced_parameters, "statistics_path", None)
    if statistics_path is not None:
        options["statistics_path"] = os.fspath(statistics_path)
    for key, fields in [("awq_params", ("subset_size", "percent_to_apply", "alpha_min", "alpha_max", "steps")),
                        ("scale_estimation_params", ("subset_size", "initial_steps", "scale_steps", "weight_penalty")),
                        ("gptq_params", ("damp_percent", "block_size", "subset_size"))]:
        group = getattr(advanced_parameters, key, None)
        values = {f: getattr(group, f) for f in fields if getattr(group, f, None) is not None}
        if values:
            options[key] = values
    m, as_ov = _as_model(model)
    run = _Run(progress)
    c = C.c_void_p()
    check(lib.ovpot_compressor_create(json.dumps(options).encode(), C.byref(c)))
    try:
        check(lib.ovpot_compressor_set_progress_callback(c, run.progress_cb, None))
        check(lib.ovpot_compressor_set_log_callback(c, run.log_cb, 1, None))
        _set_backend(lib.ovpot_compressor_set_backend, c, _resolved_backend(backend, as_ov))
        if dataset is not None:
            read = options.get("subset_size", 128)
            if gptq:
                read = max(read, options.get("gptq_params", {}).get("subset_size", 128))
            source = _SampleSource(m, dataset, read, run)
            try:
                run.check(lib.ovpot_compressor_set_calibration(c, source.h))
            finally:
                source.free()
        out = C.c_void_p()
        run.check(lib.ovpot_compressor_compress_model(c, m.handle, C.byref(out)))
        return _result(Model(out), as_ov)
    finally:
        lib.ovpot_compressor_free(c)


def analyze(model, calibration_dataset, validation_dataset=None, *, preset=None, target_device=TargetDevice.ANY,
            subset_size: int = 300, samples: Optional[int] = None, target_sqnr: Optional[float] = None, ignored_scope=None,
            model_type=None, target_isa: Optional[str] = None, output_dir: Union[str, os.PathLike, None] = None,
            backend: str = "auto", progress: Optional[Callable] = None) -> dict:
    """Which layers hurt the quantized model's output (`ovpot analyze`): per layer group the output
    SQNR with only it quantized and the gain of leaving it in FP32, activation ranges against the
    values seen, weight errors per channel, and the smallest ignored scope reaching `target_sqnr`
    dB (default: the quantized model's SQNR + 3), checked by quantizing with it on up to four
    times as many samples. Quantization settings as `quantize`; SQNRs on the first `samples`
    samples of `validation_dataset` (default: the calibration data; `samples` None: enough for
    16384 output values, 16 to 256). Returns the analysis as a dict; with `output_dir`, also
    writes analysis.json and analysis.html there."""
    m, as_ov = _as_model(model)
    run = _Run(progress)
    data = _SampleSource(m, calibration_dataset, int(subset_size), run)
    evaluation = None if validation_dataset is None else _SampleSource(m, validation_dataset,
                                                                       256 if samples is None else int(samples), run)
    options = _common_options(preset, target_device, subset_size, True, model_type, ignored_scope)
    if target_isa is not None:
        options["target_isa"] = target_isa
    s = _session(m, options, _resolved_backend(backend, as_ov), run)
    try:
        text = C.c_char_p()
        target = float("nan") if target_sqnr is None else float(target_sqnr)
        run.check(lib.ovpot_session_analyze(s, data.h, None if evaluation is None else evaluation.h, int(samples or 0),
                                            target, C.byref(text)))
        result = json.loads(text.value.decode())
        if output_dir is not None:
            out = os.fspath(output_dir)
            os.makedirs(out, exist_ok=True)
            page = C.c_char_p()
            check(lib.ovpot_session_analysis_html(s, C.byref(page)))
            with open(os.path.join(out, "analysis.json"), "w", encoding="utf-8") as f:
                f.write(text.value.decode() + "\n")
            with open(os.path.join(out, "analysis.html"), "w", encoding="utf-8") as f:
                f.write(page.value.decode())
        return result
    finally:
        lib.ovpot_session_free(s)
        data.free()
        if evaluation is not None:
            evaluation.free()
