//! Weight-only compression from C: a compressor holds the options and callbacks, compresses a
//! model handle into a new one or a model file into another (streamed), and keeps the last report.

use super::boundary::{
    c_string, ffi_call, ffi_free, free_handle, into_handle, off_busy_pool, opt_str, out_ptr, try_mut, try_ref, try_str,
    InUse, Use,
};
use super::dataset::ovpot_dataset_t;
use super::model::ovpot_model_t;
use super::session::{ovpot_log_callback_t, ovpot_progress_callback_t};
use super::types::{ovpot_log_level_e, ovpot_stage_e, ovpot_status_e};
use crate::backend::{Backend, BackendKind, OpenVinoOptions};
use crate::compress::{compress_file_with, compress_graph_with, Calibration, CompressOptions, CompressReport};
use crate::data::InMemoryDataset;
use crate::error::{Error, Result};
use crate::hooks::{Hooks, LogLevel};
use crate::model::Model;
use std::ffi::{c_char, c_int, c_void, CString};
use std::path::Path;

type ProgressCb = extern "C" fn(*mut c_void, ovpot_stage_e, usize, usize) -> c_int;
type LogCb = extern "C" fn(*mut c_void, ovpot_log_level_e, *const c_char);

/// Options and callbacks for weight-only compression (NNCF's `compress_weights`). Not for
/// concurrent use; distinct compressors may run on distinct threads. Free with
/// `ovpot_compressor_free`.
pub struct ovpot_compressor_t {
    options: CompressOptions,
    progress: Option<(ProgressCb, *mut c_void)>,
    log: Option<(LogCb, *mut c_void, LogLevel)>,
    report: Option<CString>,
    /// Calibration samples copied by `ovpot_compressor_set_calibration`.
    calibration: Option<InMemoryDataset>,
    backend: BackendKind,
    openvino: OpenVinoOptions,
}

impl ovpot_compressor_t {
    /// The calibration data and the backend that runs the model on it, when data was given.
    fn calibration(&self) -> Result<Option<(InMemoryDataset, Backend)>> {
        match &self.calibration {
            Some(d) => Ok(Some((d.clone(), Backend::open(self.backend, &self.openvino)?))),
            None => Ok(None),
        }
    }
}

/// A C callback and its `user_data`, moved into the hooks of a run.
struct CallerCallback<T>(T);

// SAFETY: the hooks are called by the run on the thread that called `ovpot_compressor_compress_*`
// (or, for a call made from inside another run's callback, on a helper thread while that caller
// waits), never concurrently; the header states this contract for the callbacks and user_data.
unsafe impl<T> Send for CallerCallback<T> {}

/// Creates a compressor. `options_json` (NULL for NNCF's defaults: int8_asym per channel) is a
/// JSON object with NNCF's names: `{"mode": "int4_asym", "group_size": 128, "ratio": 0.8,
/// "backup_mode": "int8_asym", "all_layers": false, "ignored": {"names": [...], "patterns":
/// [...], "types": [{"type": "MatMul"}]}, "group_size_fallback": "error",
/// "min_adjusted_group_size": 32}`. Modes: int8_asym, int8_sym, int4_asym, int4_sym; backup
/// modes: int8_asym, int8_sym, none; group size fallbacks (a group size that does not divide a
/// weight's input channels): error, ignore (kept as it is), adjust (the largest power of two that
/// divides them, at least min_adjusted_group_size, else the backup mode). The data-aware keys
/// (4-bit modes; with `ovpot_compressor_set_calibration`): `"awq": true` (also data-free
/// without calibration data), `"scale_estimation": true`, `"gptq": true`, `"subset_size": 128` (samples the
/// statistics use), `"sensitivity_metric"` (weight_quantization_error, hessian_input_activation,
/// mean_activation_variance, max_activation_variance (the default with data),
/// mean_activation_magnitude), `"awq_params": {"subset_size": 32, "percent_to_apply": 0.002,
/// "alpha_min": 0, "alpha_max": 1, "steps": 100}`, `"scale_estimation_params": {"subset_size":
/// 64, "initial_steps": 5, "scale_steps": 5, "weight_penalty": -1}`, `"gptq_params":
/// {"damp_percent": 0.1, "block_size": 128, "subset_size": 128}`, `"statistics_path": "DIR"`
/// (NNCF's name: statistics are kept there and read back by a later run on the same model and
/// samples). Unknown keys (at the top:
/// OVPOT_PARSE_ERROR; inside `ignored`, e.g. `'ignored.nmes'`: OVPOT_INVALID_ARGUMENT) and
/// invalid combinations (a ratio or group size with an 8-bit mode, ratio outside 0..1, a
/// data-aware option with an 8-bit mode) are refused with OVPOT_INVALID_ARGUMENT or
/// OVPOT_PARSE_ERROR, the message naming the key.
#[no_mangle]
pub extern "C" fn ovpot_compressor_create(
    options_json: *const c_char,
    compressor: *mut *mut ovpot_compressor_t,
) -> ovpot_status_e {
    ffi_call("ovpot_compressor_create", || {
        let out = out_ptr(compressor, "compressor", std::ptr::null_mut())?;
        let options = match opt_str(options_json, "options_json")? {
            Some(text) => {
                let options = serde_json::from_str::<CompressOptions>(text)
                    .map_err(|e| Error::parse("options_json", e.to_string()))?;
                // serde refuses unknown keys at the top; the ignored scope's are checked here.
                if let Ok(serde_json::Value::Object(o)) = serde_json::from_str::<serde_json::Value>(text) {
                    for key in ["ignored", "ignored_scope"] {
                        if let Some(v) = o.get(key) {
                            crate::quant::config::check_ignored_keys(v, key)?;
                        }
                    }
                }
                options
            }
            None => CompressOptions::default(),
        };
        options.validate()?;
        *out = into_handle(ovpot_compressor_t {
            options,
            progress: None,
            log: None,
            report: None,
            calibration: None,
            backend: BackendKind::Builtin,
            openvino: OpenVinoOptions::default(),
        });
        Ok(())
    })
}

/// Sets (or with NULL clears) the progress callback: stage OVPOT_STAGE_WEIGHT_COMPRESSION, one
/// step per weight (with the data-aware methods first OVPOT_STAGE_STATISTICS per sample, then
/// OVPOT_STAGE_MIXED_PRECISION, OVPOT_STAGE_AWQ and OVPOT_STAGE_SCALE_ESTIMATION per weight); return non-zero to cancel (the call then fails with OVPOT_CANCELLED and
/// writes nothing).
#[no_mangle]
pub extern "C" fn ovpot_compressor_set_progress_callback(
    compressor: *mut ovpot_compressor_t,
    callback: ovpot_progress_callback_t,
    user_data: *mut c_void,
) -> ovpot_status_e {
    ffi_call("ovpot_compressor_set_progress_callback", || {
        let c = try_mut(compressor, "compressor")?;
        c.progress = callback.map(|cb| (cb, user_data));
        Ok(())
    })
}

/// Sets (or with NULL clears) the log callback; it receives messages of `level` (an
/// `ovpot_log_level_e` value) and more severe, e.g. the table of precisions at the end.
#[no_mangle]
pub extern "C" fn ovpot_compressor_set_log_callback(
    compressor: *mut ovpot_compressor_t,
    callback: ovpot_log_callback_t,
    level: u32,
    user_data: *mut c_void,
) -> ovpot_status_e {
    ffi_call("ovpot_compressor_set_log_callback", || {
        let c = try_mut(compressor, "compressor")?;
        let level = ovpot_log_level_e::to_rust(level)?;
        c.log = callback.map(|cb| (cb, user_data, level));
        Ok(())
    })
}

fn hooks(c: &ovpot_compressor_t) -> Hooks {
    let mut hooks = Hooks::default();
    if let Some((cb, user_data)) = c.progress {
        let target = CallerCallback((cb, user_data));
        hooks.progress = Some(Box::new(move |stage, done, total| {
            let CallerCallback((cb, user_data)) = &target;
            cb(*user_data, stage.into(), done, total) == 0
        }));
    }
    if let Some((cb, user_data, level)) = c.log {
        let target = CallerCallback((cb, user_data));
        hooks.log_level = Some(level);
        hooks.log = Some(Box::new(move |level, message: &str| {
            let CallerCallback((cb, user_data)) = &target;
            let text = c_string(message);
            cb(*user_data, level.into(), text.as_ptr());
        }));
    }
    hooks
}

fn keep_report(c: &mut ovpot_compressor_t, report: &CompressReport) -> Result<()> {
    let json = serde_json::to_string_pretty(report).map_err(|e| Error::internal(format!("report to JSON: {e}")))?;
    c.report = Some(c_string(json));
    Ok(())
}

/// Compresses the weights of `model` and returns the compressed model in `*compressed` (free
/// with `ovpot_model_free`); `model` is not changed. Callbacks run on this thread.
#[no_mangle]
pub extern "C" fn ovpot_compressor_compress_model(
    compressor: *mut ovpot_compressor_t,
    model: *const ovpot_model_t,
    compressed: *mut *mut ovpot_model_t,
) -> ovpot_status_e {
    ffi_call("ovpot_compressor_compress_model", || {
        let out = out_ptr(compressed, "compressed", std::ptr::null_mut())?;
        let c = try_mut(compressor, "compressor")?;
        let m = try_ref(model, "model")?;
        let _in_use = InUse::mark(&[
            (c as *const ovpot_compressor_t as usize, Use::Exclusive, "compressor"),
            (m as *const ovpot_model_t as usize, Use::Shared, "model"),
        ])?;
        let mut hooks = hooks(c);
        let options = c.options.clone();
        let graph = m.model.graph();
        let calibration = c.calibration()?;
        let (graph, report) = off_busy_pool(move || {
            let calibration =
                calibration.as_ref().map(|(data, backend)| Calibration { data, backend: backend.clone() });
            compress_graph_with(graph, &options, calibration.as_ref(), &mut hooks)
        })??;
        keep_report(c, &report)?;
        *out = into_handle(ovpot_model_t::new(Model::from_graph(graph)));
        Ok(())
    })
}

/// Compresses the model file `input_xml` (its `.bin` next to it) into `output_xml` (and the
/// `.bin` next to it), streamed: weights are read, compressed and written one tensor at a time,
/// so memory stays near the largest tensor whatever the model's size (with AWQ or calibration
/// data for the data-aware methods the model is held in memory instead). Both output files appear
/// only when complete; on failure or cancel nothing is left and an existing model at
/// `output_xml` is untouched. The output must not be the input. Output paths are treated as by
/// `ovpot_model_save`: symlinks are written through, a directory, device node or FIFO is refused
/// with OVPOT_IO_ERROR, and errors name the paths as given.
#[no_mangle]
pub extern "C" fn ovpot_compressor_compress_file(
    compressor: *mut ovpot_compressor_t,
    input_xml: *const c_char,
    output_xml: *const c_char,
) -> ovpot_status_e {
    ffi_call("ovpot_compressor_compress_file", || {
        let c = try_mut(compressor, "compressor")?;
        let input = Path::new(try_str(input_xml, "input_xml")?);
        let output = Path::new(try_str(output_xml, "output_xml")?);
        let _in_use = InUse::mark(&[(c as *const ovpot_compressor_t as usize, Use::Exclusive, "compressor")])?;
        let mut hooks = hooks(c);
        let options = c.options.clone();
        let calibration = c.calibration()?;
        let report = off_busy_pool(move || {
            let calibration =
                calibration.as_ref().map(|(data, backend)| Calibration { data, backend: backend.clone() });
            compress_file_with(input, output, &options, calibration.as_ref(), &mut hooks)
        })??;
        keep_report(c, &report)
    })
}

/// Gives the compressor calibration data for the data-aware methods (AWQ, scale estimation,
/// GPTQ, data-aware mixed precision): the first `subset_size` samples of `dataset` (the options'
/// `subset_size`, 128 by default, or `gptq_params.subset_size` with GPTQ when larger) are read
/// now, on this thread, and copied, so `dataset` may be
/// freed afterwards. NULL clears them. For an LLM, a sample is one window of tokens with every
/// model input (input_ids, attention_mask, position_ids, beam_idx). Errors of the dataset's
/// callback (OVPOT_CALLBACK_FAILED, OVPOT_MISMATCH for a wrong input) are returned here.
#[no_mangle]
pub extern "C" fn ovpot_compressor_set_calibration(
    compressor: *mut ovpot_compressor_t,
    dataset: *const ovpot_dataset_t,
) -> ovpot_status_e {
    ffi_call("ovpot_compressor_set_calibration", || {
        let c = try_mut(compressor, "compressor")?;
        if dataset.is_null() {
            c.calibration = None;
            return Ok(());
        }
        let d = try_ref(dataset, "dataset")?;
        let _in_use = InUse::mark(&[
            (c as *const ovpot_compressor_t as usize, Use::Exclusive, "compressor"),
            (d as *const ovpot_dataset_t as usize, Use::Shared, "dataset"),
        ])?;
        let n = c.options.samples_read().min(d.len());
        if n == 0 {
            return Err(Error::invalid("the calibration dataset is empty"));
        }
        let samples = (0..n).map(|i| d.get(i).map_err(|e| e.with_sample("calibration", i))).collect::<Result<_>>()?;
        c.calibration = Some(InMemoryDataset { samples });
        Ok(())
    })
}

/// Chooses where the model runs for the statistics of the data-aware methods: "builtin"
/// (default) or "openvino" (OpenVINO's CPU plugin, loaded at run time; `openvino_lib`, may be
/// NULL, as for `ovpot_session_set_backend`). Errors (no OpenVINO) only when a compression with
/// calibration data runs.
#[no_mangle]
pub extern "C" fn ovpot_compressor_set_backend(
    compressor: *mut ovpot_compressor_t,
    backend: *const c_char,
    openvino_lib: *const c_char,
) -> ovpot_status_e {
    ffi_call("ovpot_compressor_set_backend", || {
        let c = try_mut(compressor, "compressor")?;
        let v = try_str(backend, "backend")?;
        let lib = if openvino_lib.is_null() { None } else { Some(try_str(openvino_lib, "openvino_lib")?) };
        c.backend = match v {
            "builtin" => BackendKind::Builtin,
            "openvino" => BackendKind::Openvino,
            other => return Err(Error::invalid(format!("backend '{other}': expected builtin or openvino"))),
        };
        c.openvino = OpenVinoOptions { library: lib.map(std::path::PathBuf::from), core: None };
        Ok(())
    })
}

/// The report of the last successful compression as JSON (per weight: layer, shape, precision,
/// bytes before and after; totals per precision). A failed or cancelled compression leaves the
/// previous report (and the pointer to it) as it was. Valid until the next successful
/// compression or free of `compressor`; before any compression succeeded the call fails with
/// OVPOT_INVALID_ARGUMENT and sets `*json` to NULL.
#[no_mangle]
pub extern "C" fn ovpot_compressor_report_json(
    compressor: *const ovpot_compressor_t,
    json: *mut *const c_char,
) -> ovpot_status_e {
    ffi_call("ovpot_compressor_report_json", || {
        let out = out_ptr(json, "json", std::ptr::null())?;
        let c = try_ref(compressor, "compressor")?;
        let r = c.report.as_ref().ok_or_else(|| Error::invalid("no compression has finished yet"))?;
        *out = r.as_ptr();
        Ok(())
    })
}

/// Frees a compressor (NULL is ignored).
#[no_mangle]
pub extern "C" fn ovpot_compressor_free(compressor: *mut ovpot_compressor_t) {
    ffi_free(|| free_handle(compressor, "compressor"))
}

impl super::boundary::Handle for ovpot_compressor_t {
    const C_NAME: &'static str = "ovpot_compressor_t";
}
