//! Bias correction: after weights are quantized, shift each biased layer's bias so its mean
//! output per channel matches FP32 again. Fast mode (default) evaluates the layer alone on its
//! mean input (NNCF's FastBiasCorrection, [`fast`]); full mode measures the quantized model's
//! outputs layer after layer (NNCF's BiasCorrection, [`full`]). [`shifts`] holds the maths both use.

pub mod fast;
pub mod full;
pub mod shifts;

pub use fast::{FastBiasMeasures, SiteInputs};
pub use full::full_correction_samples;
pub use shifts::*;

use crate::data::Dataset;
use crate::error::Result;
use crate::hooks::{Hooks, Stage};
use crate::quant::quantized::Quantized;
use crate::quant::stats::Collected;
use std::time::Instant;

/// The bias correction step: fast or full as the config says, its time in the report.
pub fn correct(
    q: &mut Quantized,
    sites: &[(usize, BiasSite)],
    fast: &FastBiasMeasures,
    col: &Collected,
    data: &dyn Dataset,
    n: usize,
    hooks: &mut Hooks,
) -> Result<()> {
    if !q.config.bias_correction || sites.is_empty() {
        return Ok(());
    }
    let t = Instant::now();
    if q.config.use_fast_bias {
        fast::correct(q, sites, fast, hooks)?;
    } else {
        full::correct(q, sites, col, fast.outlets, data, n, hooks)?;
    }
    hooks.progress(Stage::BiasCorrection, sites.len(), sites.len())?;
    q.report.timings.push(("bias_correction".into(), t.elapsed().as_secs_f64()));
    Ok(())
}
