//! The Rust API that the C ABI and the CLI wrap: models, datasets, metrics, sessions, reports.
//! Models, datasets and metrics, hooks and reports live below both this API and the quantizer
//! (`model`, `data`, `hooks`, `report`); a session runs the quantizer on them.

pub use crate::analysis::Analysis;
pub use crate::data::{argmax, Dataset, InMemoryDataset, Metric, Sample, Top1Accuracy};
use crate::error::Result;
pub use crate::hooks::{Hooks, LogFn, LogLevel, ProgressFn, Stage};
pub use crate::model::{Model, PortDesc};
pub use crate::quant::analyze::AnalysisOptions;
use crate::quant::config::QuantConfig;
pub use crate::quant::judge::{Judge, Judged};
pub use crate::report::{
    AccuracyReport, FqInfo, IgnoredInfo, Int8ArithmeticReport, LatencyReport, Outcome, Report, RevertedLayer,
};

/// Running a model as OpenVINO's CPU plugin does: the quantizer's emulation, so it lives here.
impl Model {
    /// The model rewritten to compute what OpenVINO's CPU plugin computes for it where that
    /// differs from FakeQuantize semantics ([`crate::backend::cpu_plugin`]), and the names of the
    /// FakeQuantize nodes that changed. For judging an INT8 IR in the built-in engine as the
    /// runtime will run it; not for saving.
    pub fn emulating_cpu_plugin(&self) -> (Model, Vec<String>) {
        let (m, e) = self.emulating_cpu(crate::quant::isa::Int8Arithmetic::Exact);
        (m, e.unrounded)
    }

    /// [`Model::emulating_cpu_plugin`] on a CPU with the given int8 arithmetic: without VNNI,
    /// int8 convolutions and MatMuls also saturate their 16-bit pair sums as the plugin's kernels
    /// do ([`crate::quant::isa`]).
    pub fn emulating_cpu(
        &self,
        arithmetic: crate::quant::isa::Int8Arithmetic,
    ) -> (Model, crate::backend::cpu_plugin::Emulation) {
        let mut g = self.graph().clone();
        let e = crate::backend::cpu_plugin::emulate_for(&mut g, arithmetic);
        (Model::from_graph(g), e)
    }
}

/// A quantization session over one model.
pub struct Session {
    model: Model,
    pub config: QuantConfig,
    pub hooks: Hooks,
}

impl Session {
    pub fn new(model: &Model, config: QuantConfig) -> Result<Session> {
        config.validate()?;
        Ok(Session { model: model.clone(), config, hooks: Hooks::default() })
    }
    pub fn model(&self) -> &Model {
        &self.model
    }
    /// DefaultQuantization on `calibration`.
    pub fn quantize(&mut self, calibration: &dyn Dataset) -> Result<Outcome> {
        crate::quant::default_quantization(&self.model, &self.config, calibration, &mut self.hooks)
    }
    /// AccuracyAwareQuantization: default quantization, then revert layers until `metric` on
    /// `evaluation` is within `maximal_drop` of FP32.
    /// The per-layer analysis of quantizing with this session's settings: statistics on
    /// `calibration`, every output SQNR on the first `options.samples` samples of `evaluation`.
    pub fn analyze(
        &mut self,
        calibration: &dyn Dataset,
        evaluation: &dyn Dataset,
        options: &AnalysisOptions,
    ) -> Result<Analysis> {
        crate::quant::analyze::analyze(&self.model, &self.config, calibration, evaluation, options, &mut self.hooks)
    }
    pub fn quantize_with_accuracy_control(
        &mut self,
        calibration: &dyn Dataset,
        evaluation: &dyn Dataset,
        metric: &mut dyn Metric,
    ) -> Result<Outcome> {
        crate::quant::accuracy_aware(&self.model, &self.config, calibration, evaluation, metric, &mut self.hooks)
    }
}

/// Judging models as a session's settings say ([`Judge`]).
impl Session {
    /// The backend `judge` stands for with this session's settings, and its name.
    pub fn judge(&self, judge: Judge) -> Result<Judged> {
        crate::quant::judge::for_settings(judge, &self.config)
    }

    /// `model`'s outputs for one sample, computed as `judge` computes them.
    pub fn infer(&self, model: &Model, sample: &Sample, judge: Judge) -> Result<Vec<crate::tensor::Tensor>> {
        let exec = self.judge(judge)?.compile(model.graph().clone(), self.config.threads)?;
        exec.run(sample, &mut crate::engine::NoObserver)
    }

    /// `metric` of `model` over every sample of `data`, the outputs computed as `judge` computes
    /// them (reset, update per sample, value); a metric that judges whole models is handed the
    /// model itself.
    pub fn evaluate(&self, model: &Model, data: &dyn Dataset, metric: &mut dyn Metric, judge: Judge) -> Result<f64> {
        if let Some(v) = metric.value_of_model(model.graph()) {
            return v;
        }
        let exec = self.judge(judge)?.compile(model.graph().clone(), self.config.threads)?;
        metric.reset();
        for i in 0..data.len() {
            let outputs =
                exec.run(&data.get(i)?, &mut crate::engine::NoObserver).map_err(|e| e.with_sample("evaluation", i))?;
            metric.update(i, &outputs)?;
        }
        metric.value()
    }
}
