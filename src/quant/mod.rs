//! Quantization passes: they rewrite the graph; ops know nothing about them.
//!
//! DefaultQuantization = [SmoothQuant for transformers] → quantizer placement by hardware config
//! → one statistics pass → FakeQuantize ranges, int8 weights → bias correction.

pub mod accuracy_aware;
pub mod analyze;
pub mod bias_correction;
pub mod config;
pub mod data_free;
pub mod detect;
mod frontier;
pub mod hw_config;
pub mod isa;
pub mod judge;
pub mod latency;
pub mod minmax;
pub mod placement;
mod prepare;
pub mod quantized;
mod quantizer_facts;
pub mod saturation;
pub mod smooth_quant;
pub mod stats;

pub use prepare::prepare;
pub(crate) use prepare::prepare_from;
pub use quantized::{LatencyProbe, Quantized};

use crate::data::{Dataset, Metric};
use crate::error::Result;
use crate::hooks::Hooks;
use crate::model::Model;
use crate::report::Outcome;
use config::QuantConfig;
use std::collections::HashSet;
use std::time::Instant;

/// DefaultQuantization: statistics, FakeQuantize insertion, bias correction, weight compression.
pub fn default_quantization(
    model: &Model,
    config: &QuantConfig,
    data: &dyn Dataset,
    hooks: &mut Hooks,
) -> Result<Outcome> {
    let q = if config.data_free_ranges {
        data_free::prepare_data_free(model, config, data, hooks)?
    } else {
        prepare(model, config, data, hooks)?
    };
    let t = Instant::now();
    let graph = q.materialize(&HashSet::new())?;
    let mut report = q.report;
    report.timings.push(("write_graph".into(), t.elapsed().as_secs_f64()));
    let timed = latency::Timed { fp: model.graph(), int8: &graph, reverted: false };
    latency::measure(&q.backend, q.latency, timed, data, config, &mut report, hooks)?;
    Ok(Outcome { model: Model::from_graph(graph), report, accuracy_reached: true })
}

/// AccuracyAwareQuantization.
pub fn accuracy_aware(
    model: &Model,
    config: &QuantConfig,
    calib: &dyn Dataset,
    eval: &dyn Dataset,
    metric: &mut dyn Metric,
    hooks: &mut Hooks,
) -> Result<Outcome> {
    accuracy_aware::run(model, config, calib, eval, metric, hooks)
}
