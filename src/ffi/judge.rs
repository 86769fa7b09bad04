//! Running and evaluating models as a judge computes them: exactly (the built-in engine), as the
//! target CPU computes (the built-in engine emulating OpenVINO's CPU plugin), or in OpenVINO; by
//! default as the session's accuracy-aware quantization judged its candidates.

use super::boundary::{
    c_string, ffi_call, into_handle, off_busy_pool, out_ptr, private_pool, serving, try_mut, try_ref,
};
use super::dataset::ovpot_dataset_t;
use super::metric::{ovpot_metric_t, MetricKind};
use super::model::ovpot_model_t;
use super::session::ovpot_session_t;
use super::tensors::{ovpot_outputs_t, ovpot_sample_t};
use super::types::ovpot_status_e;
use crate::api::{Judge, Judged, Sample};
use crate::engine::NoObserver;
use crate::error::{Error, Result};
use crate::quant::config::QuantConfig;
use crate::tensor::Tensor;
use std::ffi::c_char;

/// Who computes a model's outputs when ovpot runs or evaluates it. Passed to functions as a
/// plain `uint32_t` holding one of these values.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ovpot_judge_e {
    /// What the session's accuracy-aware quantization judges candidates with (the report's
    /// `judge`): OpenVINO's CPU plugin when the session's backend is OpenVINO and this CPU has
    /// the target's int8 arithmetic, else the built-in engine emulating the target CPU (or,
    /// with `emulate_cpu_plugin` false, computing exactly).
    OVPOT_JUDGE_DEFAULT = 0,
    /// IR semantics exactly, in the built-in engine (what `ovpot_model_infer` and
    /// `ovpot_metric_evaluate` compute).
    OVPOT_JUDGE_EXACT = 1,
    /// As OpenVINO's CPU plugin computes on the target CPU of the session (`target_isa`; without
    /// VNNI: 16-bit saturating pair sums), emulated by the built-in engine on any machine.
    OVPOT_JUDGE_TARGET = 2,
    /// OpenVINO's CPU plugin on this machine, loaded as the session's backend settings say
    /// (`ovpot_session_set_backend`'s library or core, else `$OVPOT_OPENVINO_LIB`, ...).
    OVPOT_JUDGE_OPENVINO = 3,
}

/// Runs `model` on one sample as `judge` (an `ovpot_judge_e` value) computes it with the
/// settings of `session` (its target ISA and device, backend, OpenVINO library). Free the result
/// with `ovpot_outputs_free`. Each call compiles the model for the judge; to score many samples
/// use `ovpot_session_evaluate`.
#[no_mangle]
pub extern "C" fn ovpot_session_infer(
    session: *const ovpot_session_t,
    model: *const ovpot_model_t,
    sample: *const ovpot_sample_t,
    judge: u32,
    outputs: *mut *mut ovpot_outputs_t,
) -> ovpot_status_e {
    ffi_call("ovpot_session_infer", || {
        let out = out_ptr(outputs, "outputs", std::ptr::null_mut())?;
        let s = try_ref(session, "session")?;
        let m = try_ref(model, "model")?;
        let sample = try_ref(sample, "sample")?;
        let config = &s.settings().config;
        // From inside a run's callback the shared pool may be waiting for this thread.
        let results = off_busy_pool(|| {
            judged(judge, config)?
                .compile(m.model.graph().clone(), config.threads)?
                .run(&sample.inputs, &mut NoObserver)
        })??;
        *out = into_handle(ovpot_outputs_t::new(&m.output_names(), &results)?);
        Ok(())
    })
}

/// Evaluates `metric` for `model` on every sample of `dataset` (reset, update per sample,
/// value), the outputs computed as `judge` (an `ovpot_judge_e` value) computes them with the
/// settings of `session`; the metric's callbacks run on the calling thread. A metric made by
/// `ovpot_metric_create_model_evaluator` is handed the model instead. With OVPOT_JUDGE_DEFAULT
/// this gives the values accuracy-aware quantization of this session works with.
#[no_mangle]
pub extern "C" fn ovpot_session_evaluate(
    session: *const ovpot_session_t,
    metric: *mut ovpot_metric_t,
    model: *const ovpot_model_t,
    dataset: *const ovpot_dataset_t,
    judge: u32,
    value: *mut f64,
) -> ovpot_status_e {
    ffi_call("ovpot_session_evaluate", || {
        let out = out_ptr(value, "value", f64::NAN)?;
        let s = try_ref(session, "session")?;
        let metric = try_mut(metric, "metric")?;
        let m = try_ref(model, "model")?;
        let d = try_ref(dataset, "dataset")?;
        let config = &s.settings().config;
        let exec = off_busy_pool(|| judged(judge, config)?.compile(m.model.graph().clone(), config.threads))??;
        *out = evaluate(metric, m, d, |sample| exec.run(sample, &mut NoObserver))?;
        Ok(())
    })
}

/// What `judge` (an `ovpot_judge_e` value) is with the settings of `session`, in words (e.g.
/// "builtin engine emulating OpenVINO's CPU plugin on the target CPU (16-bit saturating int8
/// pair sums; target_isa avx2: asked)"); for OVPOT_JUDGE_DEFAULT the same text a run's report
/// gives as `judge`. Valid until the next call on `session`; do not free.
#[no_mangle]
pub extern "C" fn ovpot_session_judge_name(
    session: *const ovpot_session_t,
    judge: u32,
    name: *mut *const c_char,
) -> ovpot_status_e {
    ffi_call("ovpot_session_judge_name", || {
        let out = out_ptr(name, "name", std::ptr::null())?;
        let s = try_ref(session, "session")?;
        let text = c_string(judged(judge, &s.settings().config)?.name);
        *out = s.keep_text(text);
        Ok(())
    })
}

fn judged(judge: u32, config: &QuantConfig) -> Result<Judged> {
    crate::quant::judge::for_settings(Judge::from_raw(judge)?, config)
}

/// Evaluates `metric` for `model` on every sample of `dataset` with the built-in engine (reset,
/// update per sample, value), on the calling thread: IR semantics exactly (OVPOT_JUDGE_EXACT).
/// A metric made by `ovpot_metric_create_model_evaluator` is handed the model instead. To evaluate as accuracy-aware quantization judges, or as the target CPU or OpenVINO compute,
/// use `ovpot_session_evaluate`.
#[no_mangle]
pub extern "C" fn ovpot_metric_evaluate(
    metric: *mut ovpot_metric_t,
    model: *const ovpot_model_t,
    dataset: *const ovpot_dataset_t,
    value: *mut f64,
) -> ovpot_status_e {
    ffi_call("ovpot_metric_evaluate", || {
        let out = out_ptr(value, "value", f64::NAN)?;
        let metric = try_mut(metric, "metric")?;
        let m = try_ref(model, "model")?;
        let d = try_ref(dataset, "dataset")?;
        let plan = m.model.plan()?;
        *out = evaluate(metric, m, d, |sample| plan.run(sample))?;
        Ok(())
    })
}

/// The metric over `dataset`, each sample's outputs from `infer`; C callbacks run on this
/// thread, inference off the shared pool when this thread serves a run's callbacks (that pool
/// may be waiting for it).
fn evaluate(
    metric: &mut ovpot_metric_t,
    m: &ovpot_model_t,
    d: &ovpot_dataset_t,
    infer: impl Fn(&Sample) -> Result<Vec<Tensor>> + Sync,
) -> Result<f64> {
    let _claim = d.claim()?;
    let pool = if serving() { Some(private_pool()?) } else { None };
    let infer = |i: usize| -> Result<Vec<Tensor>> {
        let sample = d.get(i)?;
        match &pool {
            Some(p) => p.install(|| infer(&sample)),
            None => infer(&sample),
        }
        .map_err(|e| sample_error(i, e))
    };
    let names = m.output_names();
    match &mut metric.kind {
        MetricKind::Rust(r) => {
            if let Some(v) = r.value_of_model(m.model.graph()) {
                return v;
            }
            r.reset();
            for i in 0..d.len() {
                r.update(i, &infer(i)?)?;
            }
            r.value()
        }
        MetricKind::Callback(c) => {
            if c.judges_models() {
                return c.value_of_model(m.model.graph());
            }
            c.reset();
            for i in 0..d.len() {
                c.update(i, &names, &infer(i)?)?;
            }
            c.value()
        }
    }
}

fn sample_error(index: usize, e: Error) -> Error {
    let msg = format!("sample {index}: {}", e.message());
    match e {
        Error::Mismatch(_) => Error::mismatch(msg),
        Error::InvalidArgument(_) => Error::invalid(msg),
        Error::Unsupported(_) => Error::unsupported(msg),
        other => other,
    }
}
