//! AccuracyAwareQuantization: revert the quantized layers that hurt the metric most until the
//! drop is within `maximal_drop`. (Being built.)

use crate::api::{Dataset, Hooks, Metric, Model, Outcome};
use crate::error::{Error, Result};
use super::config::QuantConfig;

pub fn run(
    _model: &Model,
    _config: &QuantConfig,
    _calib: &dyn Dataset,
    _eval: &dyn Dataset,
    _metric: &mut dyn Metric,
    _hooks: &mut Hooks,
) -> Result<Outcome> {
    Err(Error::unsupported("accuracy-aware quantization is being built"))
}
