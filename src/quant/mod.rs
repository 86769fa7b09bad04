//! Quantization passes: they rewrite the graph; ops know nothing about them.

pub mod config;

use crate::api::{Dataset, Hooks, Metric, Model, Outcome};
use crate::error::{Error, Result};
use config::QuantConfig;

/// DefaultQuantization: statistics, FakeQuantize insertion, bias correction, weight compression.
pub fn default_quantization(
    _model: &Model,
    _config: &QuantConfig,
    _data: &dyn Dataset,
    _hooks: &mut Hooks,
) -> Result<Outcome> {
    Err(Error::unsupported("default quantization is being built"))
}

/// AccuracyAwareQuantization.
pub fn accuracy_aware(
    _model: &Model,
    _config: &QuantConfig,
    _calib: &dyn Dataset,
    _eval: &dyn Dataset,
    _metric: &mut dyn Metric,
    _hooks: &mut Hooks,
) -> Result<Outcome> {
    Err(Error::unsupported("accuracy-aware quantization is being built"))
}
