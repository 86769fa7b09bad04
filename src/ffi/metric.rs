//! Metrics: from C callbacks, or the built-in top-1 accuracy.

use super::boundary::{ffi_call, ffi_free, free_handle, into_handle, out_ptr, try_slice, try_str};
use super::model::ovpot_model_t;
use super::tensors::ovpot_outputs_t;
use super::types::ovpot_status_e;
use crate::api::{Metric, Top1Accuracy};
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::ffi::{c_char, c_int, c_void};
use std::path::Path;

/// Accumulates the model outputs of sample `index`; `outputs` is valid only during the call.
/// Returns 0 on success, anything else to stop the run with OVPOT_CALLBACK_FAILED.
/// Calls back into ovpot from here work, except on the handles the run is using: the running
/// session and its metric refuse every call, its datasets may be read but not changed or freed
/// (those calls fail at once with OVPOT_INVALID_ARGUMENT; a free leaves the handle as it is).
pub type ovpot_metric_update_callback_t =
    Option<extern "C" fn(user_data: *mut c_void, outputs: *const ovpot_outputs_t, index: usize) -> c_int>;
/// Writes the metric over every sample since the last reset to `*value`; 0 on success.
pub type ovpot_metric_value_callback_t = Option<extern "C" fn(user_data: *mut c_void, value: *mut f64) -> c_int>;
/// Forgets accumulated samples; 0 on success.
pub type ovpot_metric_reset_callback_t = Option<extern "C" fn(user_data: *mut c_void) -> c_int>;

/// Judges a whole candidate model: writes its metric on the user's evaluation data to `*value`
/// (NNCF's `validation_fn(compiled_model, validation_data)`); 0 on success. `model` is valid only
/// during the call (save or serialize it, e.g. with `ovpot_model_save_to_memory_buffer`, to
/// compile it in OpenVINO). Calls back into ovpot from here work, as for the other callbacks.
pub type ovpot_metric_evaluate_model_callback_t =
    Option<extern "C" fn(user_data: *mut c_void, model: *const ovpot_model_t, value: *mut f64) -> c_int>;

/// How a callback metric is fed.
enum Feed {
    /// The outputs ovpot computes, sample by sample.
    Outputs {
        update: extern "C" fn(*mut c_void, *const ovpot_outputs_t, usize) -> c_int,
        value: extern "C" fn(*mut c_void, *mut f64) -> c_int,
    },
    /// Whole candidate models.
    Models(extern "C" fn(*mut c_void, *const ovpot_model_t, *mut f64) -> c_int),
}

/// The C side of a callback metric. Only touched on the thread that called into ovpot.
pub(crate) struct CallbackMetric {
    feed: Feed,
    reset: ovpot_metric_reset_callback_t,
    user_data: *mut c_void,
    destroy: super::dataset::ovpot_destroy_callback_t,
    pub(crate) higher_is_better: bool,
    /// A failed reset, reported by the next update or value (the Rust trait's reset cannot fail).
    reset_failure: Option<c_int>,
}

impl CallbackMetric {
    pub(crate) fn reset(&mut self) {
        if let Some(r) = self.reset {
            let rc = r(self.user_data);
            if rc != 0 {
                self.reset_failure = Some(rc);
            }
        }
    }
    fn check_reset(&mut self) -> Result<()> {
        match self.reset_failure.take() {
            Some(rc) => Err(Error::Callback(format!("metric reset callback returned {rc}"))),
            None => Ok(()),
        }
    }
    /// Whether the metric judges whole models (`ovpot_metric_create_model_evaluator`).
    pub(crate) fn judges_models(&self) -> bool {
        matches!(self.feed, Feed::Models(_))
    }
    pub(crate) fn update(&mut self, index: usize, names: &[String], outputs: &[Tensor]) -> Result<()> {
        self.check_reset()?;
        let Feed::Outputs { update, .. } = self.feed else {
            return Err(Error::internal("a model evaluator was fed outputs"));
        };
        let o = ovpot_outputs_t::new(names, outputs)?;
        let lent = super::boundary::lend(&o);
        let rc = update(self.user_data, &o, index);
        drop(lent);
        if rc != 0 {
            return Err(Error::Callback(format!("metric update callback returned {rc} for sample {index}")));
        }
        Ok(())
    }
    pub(crate) fn value(&mut self) -> Result<f64> {
        self.check_reset()?;
        let Feed::Outputs { value, .. } = self.feed else {
            return Err(Error::internal("a model evaluator was asked for a per-sample value"));
        };
        let mut v = f64::NAN;
        let rc = value(self.user_data, &mut v);
        if rc != 0 {
            return Err(Error::Callback(format!("metric value callback returned {rc}")));
        }
        if !v.is_finite() {
            return Err(Error::Callback(format!("metric value callback gave {v}")));
        }
        Ok(v)
    }
}

impl CallbackMetric {
    /// The evaluator's value of `graph`, handed over as a model handle valid during the call.
    pub(crate) fn value_of_model(&mut self, graph: &crate::graph::Graph) -> Result<f64> {
        let Feed::Models(evaluate) = self.feed else {
            return Err(Error::internal("a per-sample metric was asked to judge a model"));
        };
        let model = ovpot_model_t::new(crate::model::Model::from_graph(graph.clone()));
        let mut v = f64::NAN;
        let lent = super::boundary::lend(&model);
        let rc = evaluate(self.user_data, &model, &mut v);
        drop(lent);
        if rc != 0 {
            return Err(Error::Callback(format!("model evaluation callback returned {rc}")));
        }
        if !v.is_finite() {
            return Err(Error::Callback(format!("model evaluation callback gave {v}")));
        }
        Ok(v)
    }
}

impl Drop for CallbackMetric {
    fn drop(&mut self) {
        if let Some(d) = self.destroy {
            d(self.user_data);
        }
    }
}

pub(crate) enum MetricKind {
    Rust(Box<dyn Metric>),
    Callback(CallbackMetric),
}

/// A metric over model outputs for accuracy-aware quantization. Free with `ovpot_metric_free`.
pub struct ovpot_metric_t {
    pub(crate) kind: MetricKind,
}

/// Creates a metric from callbacks. `update` and `value` are required, `reset` may be NULL.
/// `higher_is_better` is non-zero for accuracy-like metrics, zero for error-like ones. `destroy`
/// (may be NULL) is called with `user_data` when the metric is freed (not when this call fails).
#[no_mangle]
pub extern "C" fn ovpot_metric_create(
    update: ovpot_metric_update_callback_t,
    value: ovpot_metric_value_callback_t,
    reset: ovpot_metric_reset_callback_t,
    higher_is_better: c_int,
    user_data: *mut c_void,
    destroy: super::dataset::ovpot_destroy_callback_t,
    metric: *mut *mut ovpot_metric_t,
) -> ovpot_status_e {
    ffi_call("ovpot_metric_create", || {
        let out = out_ptr(metric, "metric", std::ptr::null_mut())?;
        let update = update.ok_or_else(|| Error::invalid("'update' is NULL"))?;
        let value = value.ok_or_else(|| Error::invalid("'value' is NULL"))?;
        let cb = CallbackMetric {
            feed: Feed::Outputs { update, value },
            reset,
            user_data,
            destroy,
            higher_is_better: higher_is_better != 0,
            reset_failure: None,
        };
        *out = into_handle(ovpot_metric_t { kind: MetricKind::Callback(cb) });
        Ok(())
    })
}

/// Creates a metric that judges whole models, as NNCF's `validation_fn` does: for the FP32
/// model and for each candidate of an accuracy-aware run, `evaluate` receives the model (as it
/// would be saved) and writes its metric. Ranking layers then uses output errors. `destroy`
/// (may be NULL) releases `user_data` when the metric is freed.
#[no_mangle]
pub extern "C" fn ovpot_metric_create_model_evaluator(
    evaluate: ovpot_metric_evaluate_model_callback_t,
    higher_is_better: c_int,
    user_data: *mut c_void,
    destroy: super::dataset::ovpot_destroy_callback_t,
    metric: *mut *mut ovpot_metric_t,
) -> ovpot_status_e {
    ffi_call("ovpot_metric_create_model_evaluator", || {
        let out = out_ptr(metric, "metric", std::ptr::null_mut())?;
        let evaluate = evaluate.ok_or_else(|| Error::invalid("'evaluate' is NULL"))?;
        let cb = CallbackMetric {
            feed: Feed::Models(evaluate),
            reset: None,
            user_data,
            destroy,
            higher_is_better: higher_is_better != 0,
            reset_failure: None,
        };
        *out = into_handle(ovpot_metric_t { kind: MetricKind::Callback(cb) });
        Ok(())
    })
}

/// Creates the built-in top-1 accuracy: the arg-max of output `output_index` compared with
/// `labels[index]` (copied; `count` labels, one per evaluation sample).
#[no_mangle]
pub extern "C" fn ovpot_metric_create_top1_accuracy(
    labels: *const i64,
    count: usize,
    output_index: usize,
    metric: *mut *mut ovpot_metric_t,
) -> ovpot_status_e {
    ffi_call("ovpot_metric_create_top1_accuracy", || {
        let out = out_ptr(metric, "metric", std::ptr::null_mut())?;
        let labels = try_slice(labels, count, "labels")?;
        if labels.is_empty() {
            return Err(Error::invalid("no labels given"));
        }
        let m = Top1Accuracy::new(labels.to_vec(), output_index);
        *out = into_handle(ovpot_metric_t { kind: MetricKind::Rust(Box::new(m)) });
        Ok(())
    })
}

/// Like `ovpot_metric_create_top1_accuracy` with the labels read from a `.npy` file (shape [N]
/// or [N, 1], integer or whole floats).
#[no_mangle]
pub extern "C" fn ovpot_metric_create_top1_accuracy_from_npy(
    labels_path: *const c_char,
    output_index: usize,
    metric: *mut *mut ovpot_metric_t,
) -> ovpot_status_e {
    ffi_call("ovpot_metric_create_top1_accuracy_from_npy", || {
        let out = out_ptr(metric, "metric", std::ptr::null_mut())?;
        let path = try_str(labels_path, "labels_path")?;
        let labels = crate::data::read_labels(Path::new(path))?;
        let m = Top1Accuracy::new(labels, output_index);
        *out = into_handle(ovpot_metric_t { kind: MetricKind::Rust(Box::new(m)) });
        Ok(())
    })
}

/// Frees a metric (calling its destroy callback, if any). NULL is a no-op.
#[no_mangle]
pub extern "C" fn ovpot_metric_free(metric: *mut ovpot_metric_t) {
    ffi_free(|| free_handle(metric, "metric"))
}

impl super::boundary::Handle for ovpot_metric_t {
    const C_NAME: &'static str = "ovpot_metric_t";
}
