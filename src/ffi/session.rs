//! Sessions: configuration, callbacks, runs, reports.
//!
//! A run works on a helper thread while the calling thread serves every C callback (data,
//! metric, progress, log) over a channel: callbacks thus always run on the caller's thread, one
//! at a time, whatever threads the quantizer uses, and no C pointer crosses a thread.

use super::boundary::{
    c_string, ffi_call, ffi_free, free_handle, in_private_pool, into_handle, out_ptr, panic_message, serving, try_mut,
    try_ref, try_str, InUse, Serving, Use,
};
use super::dataset::ovpot_dataset_t;
use super::metric::{ovpot_metric_t, MetricKind};
use super::model::ovpot_model_t;
use super::types::{ovpot_log_level_e, ovpot_stage_e, ovpot_status_e};
use crate::api::{Analysis, AnalysisOptions, Dataset, LogLevel, Metric, Outcome, Sample, Session, Stage};
use crate::error::{Error, Result};
use crate::quant::config::{applied_params, check_param_keys, QuantConfig};
use crate::tensor::Tensor;
use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::mpsc::{channel, sync_channel, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::time::Duration;

/// Reports progress of `stage`: `done` of `total` steps. Return 0 to go on, non-zero to cancel
/// (the run then ends with OVPOT_CANCELLED).
/// Calls back into ovpot from here work, except on the handles the run is using: the running
/// session and its metric refuse every call, its datasets may be read but not changed or freed
/// (those calls fail at once with OVPOT_INVALID_ARGUMENT; a free leaves the handle as it is).
pub type ovpot_progress_callback_t =
    Option<extern "C" fn(user_data: *mut c_void, stage: ovpot_stage_e, done: usize, total: usize) -> c_int>;
/// Receives a log message (valid during the call only).
/// Calls back into ovpot from here work, except on the handles the run is using: the running
/// session and its metric refuse every call, its datasets may be read but not changed or freed
/// (those calls fail at once with OVPOT_INVALID_ARGUMENT; a free leaves the handle as it is).
pub type ovpot_log_callback_t =
    Option<extern "C" fn(user_data: *mut c_void, level: ovpot_log_level_e, message: *const c_char)>;

type ProgressCb = extern "C" fn(*mut c_void, ovpot_stage_e, usize, usize) -> c_int;
type LogCb = extern "C" fn(*mut c_void, ovpot_log_level_e, *const c_char);

/// A quantization session over one model. Not for concurrent use; distinct sessions may run
/// concurrently on distinct threads. Free with `ovpot_session_free`.
pub struct ovpot_session_t {
    session: Session,
    output_names: Vec<String>,
    progress: Option<(ProgressCb, *mut c_void)>,
    log: Option<(LogCb, *mut c_void, LogLevel)>,
    report: Option<CString>,
    /// The last analysis: JSON and HTML.
    analysis: Option<(CString, CString)>,
    /// The text last returned by `ovpot_session_config_json` or `ovpot_session_judge_name`
    /// (valid until the next call on the session; they take a const session).
    text: std::sync::Mutex<Option<CString>>,
    /// Settings of a POT-format config that cannot change the result (unknown keys, values
    /// ovpot cannot honour): logged as warnings at every run and added to its report.
    config_warnings: Vec<String>,
}

/// Creates a session on `model` (which the session copies; the model may be freed afterwards).
/// `config_json` (may be NULL for POT's defaults) is a POT configuration
/// (`{"compression": {"algorithms": [...]}}`) or ovpot's flat JSON: an object with any subset of
/// the keys `ovpot_session_config_json` returns (`preset`, `target_device`, `target_isa`,
/// `stat_subset_size`, `ignored`, `weights`, `range_estimator`, `accuracy_aware: {...}`, ...),
/// each with the value shown there.
/// Settings are never dropped silently: in ovpot's flat JSON an unknown key, at the top or
/// inside any block (`accuracy_aware`, `weights`, `ignored` and each of its `types`,
/// `range_estimator.activations.max`, ...), fails with OVPOT_INVALID_ARGUMENT naming its full
/// dotted key (e.g. `'range_estimator.activations.max.tpye'`) and listing the keys known there,
/// as `ovpot_session_set_option` refuses unknown keys. A POT
/// configuration keeps POT's behaviour: a key it does not know or a value ovpot cannot honour is
/// named in a warning, sent to the log callback (level WARNING) at every run and listed in the
/// run's report (`warnings`).
#[no_mangle]
pub extern "C" fn ovpot_session_create(
    model: *const ovpot_model_t,
    config_json: *const c_char,
    session: *mut *mut ovpot_session_t,
) -> ovpot_status_e {
    ffi_call("ovpot_session_create", || {
        let out = out_ptr(session, "session", std::ptr::null_mut())?;
        let m = try_ref(model, "model")?;
        let (config, config_warnings) = match super::boundary::opt_str(config_json, "config_json")? {
            Some(text) => QuantConfig::from_json_strict(text)?,
            None => (QuantConfig::default(), vec![]),
        };
        let s = Session::new(&m.model, config)?;
        *out = into_handle(ovpot_session_t {
            session: s,
            output_names: m.output_names(),
            progress: None,
            log: None,
            report: None,
            text: Default::default(),
            analysis: None,
            config_warnings,
        });
        Ok(())
    })
}

/// Sets one POT parameter from its JSON text, e.g. ("stat_subset_size", "100"),
/// ("preset", "\"mixed\""), ("ignored", "{\"scope\": [\"fc1\"]}"), ("maximal_drop", "0.005").
/// Accuracy-aware runs also take ("ranking", "\"metric\"") and ("emulate_cpu_plugin", "false")
/// (judge candidates by FakeQuantize semantics instead of as OpenVINO's CPU plugin runs them).
/// An unknown key, or an unknown key inside the value of `ignored` or `range_estimator`, fails
/// with OVPOT_INVALID_ARGUMENT naming it (`'ignored.scoep'`) and listing the keys known there.
/// The configuration is validated; on failure it is left unchanged.
#[no_mangle]
pub extern "C" fn ovpot_session_set_option(
    session: *mut ovpot_session_t,
    key: *const c_char,
    json_value: *const c_char,
) -> ovpot_status_e {
    ffi_call("ovpot_session_set_option", || {
        let s = try_mut(session, "session")?;
        let key = try_str(key, "key")?;
        let text = try_str(json_value, "json_value")?;
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| Error::parse("option", format!("'{key}': {e}")))?;
        set_param(s, key, value)
    })
}

fn set_param(s: &mut ovpot_session_t, key: &str, value: serde_json::Value) -> Result<()> {
    // One key at a time: the quantizer and weight blocks and base_algorithm come whole through
    // `ovpot_session_new`'s JSON config.
    const BLOCKS: [&str; 3] = ["activations", "weights", "base_algorithm"];
    let known: Vec<&str> = applied_params().filter(|k| !BLOCKS.contains(k)).collect();
    if !known.contains(&key) {
        return Err(Error::invalid(format!("unknown option '{key}' (known: {})", known.join(", "))));
    }
    // Inside a block (`ignored`, `range_estimator`) too: the flat JSON's check, named from `key`.
    check_param_keys(key, &value)?;
    let mut params = serde_json::Map::new();
    params.insert(key.to_string(), value);
    let mut c = s.session.config.clone();
    c.apply_params(&params)?;
    s.session.config = c;
    Ok(())
}

/// Sets the preset: "performance" (symmetric), "mixed" (asymmetric activations) or "accuracy"
/// (asymmetric weights too where the device runs them; on CPU, GPU and ANY it is "mixed", as
/// POT maps it). Weight options (POT's `weights` block: mode, granularity, bits, level_low,
/// level_high, range_estimator) come whole in the `config_json` of `ovpot_session_create`
/// (`{"weights": {...}}`, or POT's `params.weights`).
#[no_mangle]
pub extern "C" fn ovpot_session_set_preset(session: *mut ovpot_session_t, preset: *const c_char) -> ovpot_status_e {
    ffi_call("ovpot_session_set_preset", || {
        let s = try_mut(session, "session")?;
        let v = try_str(preset, "preset")?;
        set_param(s, "preset", v.into())
    })
}

/// Sets the target device: "ANY", "CPU", "CPU_SPR", "GPU", "NPU" or "GNA".
#[no_mangle]
pub extern "C" fn ovpot_session_set_target_device(
    session: *mut ovpot_session_t,
    device: *const c_char,
) -> ovpot_status_e {
    ffi_call("ovpot_session_set_target_device", || {
        let s = try_mut(session, "session")?;
        let v = try_str(device, "device")?;
        set_param(s, "target_device", v.into())
    })
}

/// Sets the int8 arithmetic of the CPU that will run the model (target devices CPU and ANY):
/// "auto" (default: the CPU this process runs on, with VNNI unless `ONEDNN_MAX_CPU_ISA` caps
/// it below), "avx2" (any x86 CPU without VNNI: SSE4.1, AVX2, AVX-512 without VNNI; their int8
/// kernels add pairs of products in 16 bits with saturation) or "vnni" (AVX-VNNI, AVX-512 VNNI,
/// AMX: exact sums). With the default `saturation_fix` ("auto") a no-VNNI target gets 7-bit
/// weights in the layers where saturation would cost more than the lost bit, and accuracy-aware
/// runs judge candidates with that arithmetic. The report's `int8_arithmetic` says what was
/// assumed and why. The same key is accepted by `ovpot_session_set_option("target_isa", ...)`;
/// `saturation_fix` ("auto", "per_layer", "no", "first_layer", "all") is set through that function.
#[no_mangle]
pub extern "C" fn ovpot_session_set_target_isa(session: *mut ovpot_session_t, isa: *const c_char) -> ovpot_status_e {
    ffi_call("ovpot_session_set_target_isa", || {
        let s = try_mut(session, "session")?;
        let v = try_str(isa, "isa")?;
        set_param(s, "target_isa", v.into())
    })
}

/// Chooses where quantization's inferences run (statistics, bias correction, saturation checks,
/// accuracy-aware evaluation and ranking): "builtin" (default: ovpot's own engine, no
/// dependency, emulating the target CPU's int8 arithmetic) or "openvino" (OpenVINO's CPU plugin,
/// loaded at run time: the runtime's exact arithmetic on this CPU and its speed; the report then
/// names OpenVINO's version and gives the FP32 and INT8 latency measured here).
///
/// `openvino_lib` (may be NULL) is OpenVINO's C library, a file or a directory holding
/// `libopenvino_c.so*` (the pip wheel's `openvino/libs`); when NULL: `$OVPOT_OPENVINO_LIB`, else
/// the copy already loaded in this process (an application linked with OpenVINO), else the
/// loader's search path. One OpenVINO library per process: a different one later is an error.
/// An application that has its own `ov_core_t` passes it with
/// `ovpot_session_set_openvino_core` instead. Errors only when the session runs.
#[no_mangle]
pub extern "C" fn ovpot_session_set_backend(
    session: *mut ovpot_session_t,
    backend: *const c_char,
    openvino_lib: *const c_char,
) -> ovpot_status_e {
    ffi_call("ovpot_session_set_backend", || {
        let s = try_mut(session, "session")?;
        let v = try_str(backend, "backend")?;
        let lib = if openvino_lib.is_null() { None } else { Some(try_str(openvino_lib, "openvino_lib")?) };
        set_param(s, "backend", v.into())?;
        s.session.config.openvino.library = lib.map(std::path::PathBuf::from);
        Ok(())
    })
}

/// Makes the session run its inferences in the application's own OpenVINO core (an
/// `ov_core_t*` from OpenVINO's C API, passed as `void*` so this header needs no OpenVINO
/// header): its devices and properties stay the application's; ovpot compiles its graphs there
/// for "CPU" with `INFERENCE_PRECISION_HINT=f32`. Sets the backend to "openvino". ovpot never
/// frees the core: it must outlive the session. The core must come from the OpenVINO library
/// loaded in this process (ovpot finds it there; `openvino_lib`, may be NULL, names it otherwise).
#[no_mangle]
pub extern "C" fn ovpot_session_set_openvino_core(
    session: *mut ovpot_session_t,
    ov_core: *mut std::os::raw::c_void,
    openvino_lib: *const c_char,
) -> ovpot_status_e {
    ffi_call("ovpot_session_set_openvino_core", || {
        let s = try_mut(session, "session")?;
        if ov_core.is_null() {
            return Err(Error::invalid("ov_core is NULL"));
        }
        let lib = if openvino_lib.is_null() { None } else { Some(try_str(openvino_lib, "openvino_lib")?) };
        let lib = lib.map(std::path::PathBuf::from);
        // SAFETY: the caller passes a live ov_core_t* of the OpenVINO library in this process
        // that outlives the session (documented above); ovpot never frees it.
        let core = unsafe { crate::backend::openvino::Core::borrowed(ov_core, lib.as_deref()) }?;
        s.session.config.backend = crate::backend::BackendKind::Openvino;
        s.session.config.openvino = crate::backend::OpenVinoOptions {
            library: lib,
            core: Some(crate::backend::CoreHandle(std::sync::Arc::new(core))),
        };
        Ok(())
    })
}

/// Sets how many calibration samples statistics use (POT's `stat_subset_size`; at least 1).
#[no_mangle]
pub extern "C" fn ovpot_session_set_subset_size(session: *mut ovpot_session_t, size: usize) -> ovpot_status_e {
    ffi_call("ovpot_session_set_subset_size", || {
        let s = try_mut(session, "session")?;
        set_param(s, "stat_subset_size", size.into())
    })
}

/// Data-free quantization (with a dataset from `ovpot_dataset_create_synthetic`): activation
/// ranges from the per-sample extremes without the top 1% instead of their mean, where the
/// configuration sets no estimator (synthetic images excite deep layers less evenly than real
/// data).
#[no_mangle]
pub extern "C" fn ovpot_session_set_data_free(session: *mut ovpot_session_t) -> ovpot_status_e {
    ffi_call("ovpot_session_set_data_free", || {
        let s = try_mut(session, "session")?;
        s.session.config.use_data_free_estimators();
        Ok(())
    })
}

/// Accuracy control without labels (POT's `annotation_free`): `enable` non-zero makes
/// `ovpot_session_run_accuracy_aware` judge by top-1 agreement with the FP32 model on the
/// evaluation samples whose FP32 confidence (softmax of output `output_index`, unless its scores
/// are already in [0, 1]) is above `conf_threshold` (POT: 0.6); its `metric` may then be NULL.
#[no_mangle]
pub extern "C" fn ovpot_session_set_annotation_free(
    session: *mut ovpot_session_t,
    enable: c_int,
    conf_threshold: f64,
    output_index: usize,
) -> ovpot_status_e {
    ffi_call("ovpot_session_set_annotation_free", || {
        let s = try_mut(session, "session")?;
        let mut c = s.session.config.clone();
        c.accuracy_aware.annotation_free = enable != 0;
        c.accuracy_aware.annotation_conf_threshold = conf_threshold;
        c.accuracy_aware.annotation_output = output_index;
        c.validate()?;
        s.session.config = c;
        Ok(())
    })
}

/// Sets the largest metric drop accuracy-aware quantization accepts: the config key
/// `maximal_drop` (POT's name, also set with `ovpot_session_set_option("maximal_drop", ...)`),
/// which error messages and the report (`accuracy.maximal_drop`) name. A negative or non-finite
/// value fails with OVPOT_INVALID_ARGUMENT.
#[no_mangle]
pub extern "C" fn ovpot_session_set_max_drop(session: *mut ovpot_session_t, max_drop: f64) -> ovpot_status_e {
    ffi_call("ovpot_session_set_max_drop", || {
        let s = try_mut(session, "session")?;
        let v =
            serde_json::Number::from_f64(max_drop).ok_or_else(|| crate::quant::config::maximal_drop_error(max_drop))?;
        set_param(s, "maximal_drop", serde_json::Value::Number(v))
    })
}

/// The session's configuration as ovpot's flat JSON (valid until the next call on `session`).
#[no_mangle]
pub extern "C" fn ovpot_session_config_json(
    session: *const ovpot_session_t,
    json: *mut *const c_char,
) -> ovpot_status_e {
    ffi_call("ovpot_session_config_json", || {
        let out = out_ptr(json, "json", std::ptr::null())?;
        let s = try_ref(session, "session")?;
        let text = serde_json::to_string_pretty(&s.session.config)
            .map_err(|e| Error::internal(format!("config to JSON: {e}")))?;
        *out = s.keep_text(c_string(text));
        Ok(())
    })
}

/// Sets (or with NULL clears) the progress callback.
#[no_mangle]
pub extern "C" fn ovpot_session_set_progress_callback(
    session: *mut ovpot_session_t,
    callback: ovpot_progress_callback_t,
    user_data: *mut c_void,
) -> ovpot_status_e {
    ffi_call("ovpot_session_set_progress_callback", || {
        let s = try_mut(session, "session")?;
        s.progress = callback.map(|cb| (cb, user_data));
        Ok(())
    })
}

/// Sets (or with NULL clears) the log callback; it receives messages of `level` (an
/// `ovpot_log_level_e` value) and more severe.
#[no_mangle]
pub extern "C" fn ovpot_session_set_log_callback(
    session: *mut ovpot_session_t,
    callback: ovpot_log_callback_t,
    level: u32,
    user_data: *mut c_void,
) -> ovpot_status_e {
    ffi_call("ovpot_session_set_log_callback", || {
        let s = try_mut(session, "session")?;
        let level = ovpot_log_level_e::to_rust(level)?;
        s.log = callback.map(|cb| (cb, user_data, level));
        Ok(())
    })
}

/// Which dataset a sample request is for.
#[derive(Clone, Copy)]
enum Which {
    Calibration,
    Evaluation,
}

/// What the run thread asks the calling thread to do.
enum Request {
    Item { which: Which, index: usize, reply: SyncSender<Result<Sample>> },
    Update { index: usize, outputs: Vec<Tensor>, reply: SyncSender<Result<()>> },
    Value { reply: SyncSender<Result<f64>> },
    ModelValue { graph: crate::graph::Graph, reply: SyncSender<Result<f64>> },
    Reset,
    Progress { stage: Stage, done: usize, total: usize, reply: SyncSender<bool> },
    Log { level: LogLevel, message: String },
}

fn ask<T>(tx: &Sender<Request>, make: impl FnOnce(SyncSender<T>) -> Request) -> Option<T> {
    let (reply_tx, reply_rx) = sync_channel(1);
    tx.send(make(reply_tx)).ok()?;
    reply_rx.recv().ok()
}

fn gone() -> Error {
    Error::internal("the calling thread stopped serving callbacks")
}

/// A C dataset seen from the run thread.
struct ProxyDataset {
    which: Which,
    length: usize,
    tx: Sender<Request>,
}

impl Dataset for ProxyDataset {
    fn len(&self) -> usize {
        self.length
    }
    fn get(&self, index: usize) -> Result<Sample> {
        let which = self.which;
        ask(&self.tx, |reply| Request::Item { which, index, reply }).unwrap_or_else(|| Err(gone()))
    }
}

/// A C metric seen from the run thread.
struct ProxyMetric {
    higher_is_better: bool,
    judges_models: bool,
    tx: Sender<Request>,
}

impl Metric for ProxyMetric {
    fn reset(&mut self) {
        let _ = self.tx.send(Request::Reset);
    }
    fn update(&mut self, index: usize, outputs: &[Tensor]) -> Result<()> {
        let outputs = outputs.to_vec();
        ask(&self.tx, |reply| Request::Update { index, outputs, reply }).unwrap_or_else(|| Err(gone()))
    }
    fn value(&mut self) -> Result<f64> {
        ask(&self.tx, |reply| Request::Value { reply }).unwrap_or_else(|| Err(gone()))
    }
    fn higher_is_better(&self) -> bool {
        self.higher_is_better
    }
    fn value_of_model(&mut self, graph: &crate::graph::Graph) -> Option<Result<f64>> {
        if !self.judges_models {
            return None;
        }
        let graph = graph.clone();
        Some(ask(&self.tx, |reply| Request::ModelValue { graph, reply }).unwrap_or_else(|| Err(gone())))
    }
}

/// A dataset for the run thread: the Rust one itself, or a proxy for a C callback dataset.
fn run_dataset<'a>(d: &'a ovpot_dataset_t, which: Which, tx: &Sender<Request>) -> Box<dyn Dataset + 'a> {
    struct Borrowed<'b>(&'b dyn Dataset);
    impl Dataset for Borrowed<'_> {
        fn len(&self) -> usize {
            self.0.len()
        }
        fn get(&self, index: usize) -> Result<Sample> {
            self.0.get(index)
        }
    }
    match d.as_rust() {
        Some(r) => Box::new(Borrowed(r)),
        None => Box::new(ProxyDataset { which, length: d.len(), tx: tx.clone() }),
    }
}

/// Serves one request on the calling thread.
/// The C callbacks of a session, as the serving thread needs them.
struct SessionCallbacks<'a> {
    output_names: &'a [String],
    progress: Option<(ProgressCb, *mut c_void)>,
    log: Option<(LogCb, *mut c_void, LogLevel)>,
}

fn serve(
    req: Request,
    s: &SessionCallbacks<'_>,
    calib: &ovpot_dataset_t,
    eval: Option<&ovpot_dataset_t>,
    metric: &mut Option<&mut super::metric::CallbackMetric>,
) {
    match req {
        Request::Item { which, index, reply } => {
            let d = match which {
                Which::Calibration => Some(calib),
                Which::Evaluation => eval,
            };
            let r = d.map_or_else(|| Err(Error::internal("no evaluation dataset")), |d| d.get(index));
            let _ = reply.send(r);
        }
        Request::Update { index, outputs, reply } => {
            let r = match metric.as_mut() {
                Some(m) => m.update(index, s.output_names, &outputs),
                None => Err(Error::internal("no callback metric")),
            };
            let _ = reply.send(r);
        }
        Request::Value { reply } => {
            let r = match metric.as_mut() {
                Some(m) => m.value(),
                None => Err(Error::internal("no callback metric")),
            };
            let _ = reply.send(r);
        }
        Request::ModelValue { graph, reply } => {
            let r = match metric.as_mut() {
                Some(m) => m.value_of_model(&graph),
                None => Err(Error::internal("no callback metric")),
            };
            let _ = reply.send(r);
        }
        Request::Reset => {
            if let Some(m) = metric.as_mut() {
                m.reset();
            }
        }
        Request::Progress { stage, done, total, reply } => {
            let go_on = match s.progress {
                Some((cb, ud)) => cb(ud, stage.into(), done, total) == 0,
                None => true,
            };
            let _ = reply.send(go_on);
        }
        Request::Log { level, message } => {
            if let Some((cb, ud, _)) = s.log {
                let c = c_string(message);
                cb(ud, level.into(), c.as_ptr());
            }
        }
    }
}

/// The run's handles: a call from inside a callback (or another thread) that would change or
/// free them fails with a clear message instead of pulling them from under the run.
fn run_handles(
    s: &ovpot_session_t,
    calib: &ovpot_dataset_t,
    eval: Option<&ovpot_dataset_t>,
    metric: Option<&ovpot_metric_t>,
) -> Vec<(usize, Use, &'static str)> {
    let mut handles = vec![(s as *const ovpot_session_t as usize, Use::Exclusive, "session")];
    handles.push((calib as *const ovpot_dataset_t as usize, Use::Shared, "calibration"));
    if let Some(e) = eval {
        handles.push((e as *const ovpot_dataset_t as usize, Use::Shared, "evaluation"));
    }
    if let Some(m) = metric {
        handles.push((m as *const ovpot_metric_t as usize, Use::Exclusive, "metric"));
    }
    handles
}

/// Serves callback requests on this thread until the run thread `handle` ends (or every sender
/// is gone), then the requests sent just before the end.
fn serve_until_done(
    rx: &Receiver<Request>,
    handle: &std::thread::ScopedJoinHandle<'_, Result<Ran>>,
    callbacks: &SessionCallbacks<'_>,
    calib: &ovpot_dataset_t,
    eval: Option<&ovpot_dataset_t>,
    metric: &mut Option<&mut super::metric::CallbackMetric>,
) {
    loop {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(req) => serve(req, callbacks, calib, eval, metric),
            Err(RecvTimeoutError::Timeout) if handle.is_finished() => break,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    // Messages sent just before the end (logs).
    while let Ok(req) = rx.try_recv() {
        serve(req, callbacks, calib, eval, metric);
    }
}

/// What a run does.
enum Job {
    /// DefaultQuantization, or accuracy-aware when an evaluation dataset is given.
    Quantize,
    /// The per-layer analysis (on the evaluation dataset, else the calibration one).
    Analyze(AnalysisOptions),
}

/// What a run gave.
enum Ran {
    Quantized(Box<Outcome>),
    Analysed(Box<Analysis>),
}

/// [`run_job`] for a quantization.
fn run_with_callbacks(
    s: &mut ovpot_session_t,
    calib: &ovpot_dataset_t,
    eval: Option<&ovpot_dataset_t>,
    metric: Option<&mut ovpot_metric_t>,
) -> Result<Outcome> {
    match run_job(s, calib, eval, metric, Job::Quantize)? {
        Ran::Quantized(o) => Ok(*o),
        Ran::Analysed(_) => Err(Error::internal("a quantization run gave an analysis")),
    }
}

/// Runs `job` on a helper thread while this thread serves callback requests.
fn run_job(
    s: &mut ovpot_session_t,
    calib: &ovpot_dataset_t,
    eval: Option<&ovpot_dataset_t>,
    metric: Option<&mut ovpot_metric_t>,
    job_kind: Job,
) -> Result<Ran> {
    let handles = run_handles(s, calib, eval, metric.as_deref());
    let _in_use = InUse::mark(&handles)?;
    // Callback datasets serve this thread alone for the whole run.
    let _calib_claim = calib.claim()?;
    let _eval_claim = eval.map(|e| e.claim()).transpose()?;
    log_config_warnings(s);
    // A run started from inside another run's callback keeps off the shared pool, whose threads
    // may be waiting for this thread.
    let nested = serving();
    let _serving = Serving::enter();
    let (tx, rx): (Sender<Request>, Receiver<Request>) = channel();
    let (mut rust_metric, mut c_metric) = match metric {
        Some(m) => match &mut m.kind {
            MetricKind::Rust(r) => (Some(r.as_mut()), None),
            MetricKind::Callback(c) => (None, Some(c)),
        },
        None => (None, None),
    };
    let calib_run = run_dataset(calib, Which::Calibration, &tx);
    let eval_run = eval.map(|e| run_dataset(e, Which::Evaluation, &tx));
    let mut proxy_metric = c_metric.as_ref().map(|c| ProxyMetric {
        higher_is_better: c.higher_is_better,
        judges_models: c.judges_models(),
        tx: tx.clone(),
    });
    let want_progress = s.progress.is_some();
    let log_level = s.log.as_ref().map(|l| l.2);
    let accuracy_aware = eval.is_some() && matches!(job_kind, Job::Quantize);

    let ovpot_session_t { session, output_names, progress, log, .. } = s;
    let callbacks = SessionCallbacks { output_names, progress: *progress, log: *log };
    let progress_tx = tx.clone();
    let log_tx = tx.clone();
    drop(tx);
    if want_progress {
        session.hooks.progress = Some(Box::new(move |stage, done, total| {
            ask(&progress_tx, |reply| Request::Progress { stage, done, total, reply }).unwrap_or(false)
        }));
    }
    if let Some(level) = log_level {
        session.hooks.log_level = Some(level);
        session.hooks.log = Some(Box::new(move |level, message: &str| {
            let _ = log_tx.send(Request::Log { level, message: message.to_string() });
        }));
    }

    let result = std::thread::scope(|scope| {
        // The receiver lives in this closure so that a panic here drops it (unblocking the run
        // thread) before the scope joins.
        let rx = rx;
        let session_ref: &mut Session = session;
        let mut unused_metric = crate::data::Top1Accuracy::new(vec![], 0);
        let job = move || {
            let quantize = || match (eval_run, accuracy_aware) {
                (eval, _) if matches!(job_kind, Job::Analyze(_)) => {
                    let Job::Analyze(options) = &job_kind else { unreachable!("matched above") };
                    let eval: &dyn Dataset = eval.as_deref().unwrap_or(calib_run.as_ref());
                    session_ref.analyze(calib_run.as_ref(), eval, options).map(|a| Ran::Analysed(Box::new(a)))
                }
                (Some(eval), true) => {
                    let metric: &mut dyn Metric = match (rust_metric.take(), proxy_metric.as_mut()) {
                        (Some(m), _) => m,
                        (None, Some(p)) => p,
                        // Annotation-free: the metric comes from the FP32 model's predictions.
                        (None, None) if session_ref.config.accuracy_aware.annotation_free => &mut unused_metric,
                        (None, None) => return Err(Error::internal("no metric")),
                    };
                    session_ref
                        .quantize_with_accuracy_control(calib_run.as_ref(), eval.as_ref(), metric)
                        .map(|o| Ran::Quantized(Box::new(o)))
                }
                _ => session_ref.quantize(calib_run.as_ref()).map(|o| Ran::Quantized(Box::new(o))),
            };
            let r = if nested { in_private_pool(quantize).and_then(|r| r) } else { quantize() };
            // Drops the hooks' senders so the serving loop sees the end.
            session_ref.hooks.progress = None;
            session_ref.hooks.log = None;
            r
        };
        let handle = match std::thread::Builder::new()
            .name("ovpot-session".into())
            .stack_size(16 << 20)
            .spawn_scoped(scope, job)
        {
            Ok(h) => h,
            Err(e) => return Err(Error::internal(format!("cannot start the session thread: {e}"))),
        };
        serve_until_done(&rx, &handle, &callbacks, calib, eval, &mut c_metric);
        match handle.join() {
            Ok(r) => r,
            Err(p) => Err(Error::internal(format!("panic in the session: {}", panic_message(&*p)))),
        }
    });
    // Hooks left behind by a panicking run must not keep their senders.
    session.hooks = Default::default();
    result
}

/// Sends the config's warnings to the log callback (on the calling thread, before the run).
fn log_config_warnings(s: &ovpot_session_t) {
    if let Some((cb, user_data, level)) = s.log {
        if LogLevel::Warning <= level {
            for w in &s.config_warnings {
                let text = c_string(format!("config: {w}"));
                cb(user_data, ovpot_log_level_e::from(LogLevel::Warning), text.as_ptr());
            }
        }
    }
}

/// Keeps the report of a run that produced a model; a failed or cancelled run leaves the last
/// successful run's report in place.
fn finish(s: &mut ovpot_session_t, r: Result<Outcome>, out: &mut *mut ovpot_model_t) -> Result<()> {
    let mut outcome = r?;
    let config_warnings = s.config_warnings.iter().map(|w| format!("config: {w}"));
    outcome.report.warnings.splice(0..0, config_warnings);
    let json =
        serde_json::to_string_pretty(&outcome.report).map_err(|e| Error::internal(format!("report to JSON: {e}")))?;
    s.report = Some(c_string(json));
    *out = into_handle(ovpot_model_t::new(outcome.model));
    if !outcome.accuracy_reached {
        let detail = outcome
            .report
            .accuracy
            .as_ref()
            .map(|a| format!("drop {:.6} > maximal_drop {:.6}", a.drop, a.maximal_drop))
            .unwrap_or_else(|| "the metric drop exceeds maximal_drop".to_string());
        return Err(Error::AccuracyNotReached(format!("{detail}; the best model found is returned")));
    }
    Ok(())
}

/// Runs DefaultQuantization on `calibration` and returns the quantized model in `*quantized`
/// (free with `ovpot_model_free`). Callbacks of the session and the dataset are called on this
/// thread, never concurrently. The report is then available from `ovpot_session_report_json`.
/// Calls made from inside the callbacks may use any other handle, run other sessions and infer
/// (in a pool of their own: the run's threads may be waiting for this one); calls on this
/// session, its metric, or that change or free its datasets fail with OVPOT_INVALID_ARGUMENT.
#[no_mangle]
pub extern "C" fn ovpot_session_run(
    session: *mut ovpot_session_t,
    calibration: *const ovpot_dataset_t,
    quantized: *mut *mut ovpot_model_t,
) -> ovpot_status_e {
    ffi_call("ovpot_session_run", || {
        let out = out_ptr(quantized, "quantized", std::ptr::null_mut())?;
        let s = try_mut(session, "session")?;
        let calib = try_ref(calibration, "calibration")?;
        let r = run_with_callbacks(s, calib, None, None);
        finish(s, r, out)
    })
}

/// Runs AccuracyAwareQuantization: default quantization on `calibration`, then layers are
/// reverted to floating point until `metric` on `evaluation` is within `maximal_drop` of the
/// FP32 model. Returns OVPOT_ACCURACY_NOT_REACHED with the best model found in `*quantized`
/// (still to be freed) when the drop could not be met. `metric` may be NULL after
/// `ovpot_session_set_annotation_free`: the metric is then agreement with the FP32 model.
#[no_mangle]
pub extern "C" fn ovpot_session_run_accuracy_aware(
    session: *mut ovpot_session_t,
    calibration: *const ovpot_dataset_t,
    evaluation: *const ovpot_dataset_t,
    metric: *mut ovpot_metric_t,
    quantized: *mut *mut ovpot_model_t,
) -> ovpot_status_e {
    ffi_call("ovpot_session_run_accuracy_aware", || {
        let out = out_ptr(quantized, "quantized", std::ptr::null_mut())?;
        let s = try_mut(session, "session")?;
        let calib = try_ref(calibration, "calibration")?;
        let eval = try_ref(evaluation, "evaluation")?;
        let metric = match metric.is_null() && s.session.config.accuracy_aware.annotation_free {
            true => None,
            false => Some(try_mut(metric, "metric")?),
        };
        let r = run_with_callbacks(s, calib, Some(eval), metric);
        finish(s, r, out)
    })
}

/// Analyses quantizing with the session's settings, layer by layer (the CLI's `ovpot analyze`):
/// statistics on `calibration`, every output SQNR on the first `samples` samples of `evaluation`
/// (NULL: `calibration`; 0: enough samples for 16384 output values, 16 to 256), as the session's
/// default judge computes; the smallest ignored scope reaching `target_sqnr_db` (NaN: the fully
/// quantized model's SQNR + 3 dB), checked by quantizing with it on up to four times as many
/// samples (at most 512). `*analysis_json` gets the analysis (valid until the next analysis or
/// the free of `session`; do not free); `ovpot_session_analysis_html` the page.
/// Callbacks run as in `ovpot_session_run`; progress reports stage OVPOT_STAGE_RANKING for the
/// per-layer runs.
#[no_mangle]
pub extern "C" fn ovpot_session_analyze(
    session: *mut ovpot_session_t,
    calibration: *const ovpot_dataset_t,
    evaluation: *const ovpot_dataset_t,
    samples: usize,
    target_sqnr_db: f64,
    analysis_json: *mut *const c_char,
) -> ovpot_status_e {
    ffi_call("ovpot_session_analyze", || {
        let out = out_ptr(analysis_json, "analysis_json", std::ptr::null())?;
        let s = try_mut(session, "session")?;
        let calib = try_ref(calibration, "calibration")?;
        let eval = if evaluation.is_null() { None } else { Some(try_ref(evaluation, "evaluation")?) };
        if target_sqnr_db.is_infinite() {
            return Err(Error::invalid(format!("target_sqnr_db must be finite or NaN, got {target_sqnr_db}")));
        }
        let defaults = AnalysisOptions::default();
        let options = AnalysisOptions {
            samples: (samples != 0).then_some(samples),
            target_sqnr_db: (!target_sqnr_db.is_nan()).then_some(target_sqnr_db),
            ..defaults
        };
        let Ran::Analysed(a) = run_job(s, calib, eval, None, Job::Analyze(options))? else {
            return Err(Error::internal("an analysis run gave a quantization"));
        };
        let json = serde_json::to_string_pretty(&a).map_err(|e| Error::internal(format!("analysis to JSON: {e}")))?;
        let html = crate::analysis::html::render(&a);
        let (json, _) = s.analysis.insert((c_string(json), c_string(html)));
        *out = json.as_ptr();
        Ok(())
    })
}

/// The last analysis of `session` (`ovpot_session_analyze`) as one self-contained HTML page
/// (inline SVG, no script, no network). Valid until the next analysis or the free of `session`;
/// do not free. Fails with OVPOT_INVALID_ARGUMENT before any analysis finished.
#[no_mangle]
pub extern "C" fn ovpot_session_analysis_html(
    session: *const ovpot_session_t,
    html: *mut *const c_char,
) -> ovpot_status_e {
    ffi_call("ovpot_session_analysis_html", || {
        let out = out_ptr(html, "html", std::ptr::null())?;
        let s = try_ref(session, "session")?;
        let (_, page) =
            s.analysis.as_ref().ok_or_else(|| Error::invalid("no analysis of this session has finished yet"))?;
        *out = page.as_ptr();
        Ok(())
    })
}

/// The report of the last successful run as JSON (FakeQuantize ranges, quantized and ignored
/// layers, timings, accuracy). A run that returns a model (OVPOT_OK, or
/// OVPOT_ACCURACY_NOT_REACHED with the best model found) replaces it; a failed or cancelled run
/// leaves the previous report (and the pointer to it) as it was. Valid until the next run that
/// returns a model, or the free of `session`. Before any run returned a model the call fails with
/// OVPOT_INVALID_ARGUMENT ("no run of this session has finished yet") and sets `*json` to NULL.
#[no_mangle]
pub extern "C" fn ovpot_session_report_json(
    session: *const ovpot_session_t,
    json: *mut *const c_char,
) -> ovpot_status_e {
    ffi_call("ovpot_session_report_json", || {
        let out = out_ptr(json, "json", std::ptr::null())?;
        let s = try_ref(session, "session")?;
        let r = s.report.as_ref().ok_or_else(|| Error::invalid("no run of this session has finished yet"))?;
        *out = r.as_ptr();
        Ok(())
    })
}

/// Frees a session. NULL is a no-op.
#[no_mangle]
pub extern "C" fn ovpot_session_free(session: *mut ovpot_session_t) {
    ffi_free(|| free_handle(session, "session"))
}

impl ovpot_session_t {
    /// The session's settings (for judging models as it would).
    pub(crate) fn settings(&self) -> &Session {
        &self.session
    }

    /// Keeps `text` until the next call that returns one, and points to it.
    pub(crate) fn keep_text(&self, text: CString) -> *const c_char {
        let mut kept = self.text.lock().unwrap_or_else(|p| p.into_inner());
        kept.insert(text).as_ptr()
    }
}

impl super::boundary::Handle for ovpot_session_t {
    const C_NAME: &'static str = "ovpot_session_t";
}
