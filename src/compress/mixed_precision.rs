//! Which ratio-defining weights take the primary (4-bit) precision when `ratio < 1`: NNCF's
//! sensitivity criteria. Data-free, a weight's sensitivity is the inverse of its int8 error; with
//! calibration data it is that error weighed by what its inputs carry (NNCF's
//! `mixed_precision.py`): the Hessian trace estimate times the error's Frobenius norm, or a
//! statistic of the activations over the inverse error. Embeddings count as least sensitive.

use super::activations::{InputStats, SiteStatistics};
use super::select::{self, WeightKind, WeightSite};
use super::{lowering, CompressOptions, SensitivityMetric, WeightStore};
use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::hooks::{Hooks, Stage};

/// The metric `options` ask for, NNCF's default when none: the maximum activation variance with
/// data.
pub(crate) fn metric(options: &CompressOptions, with_data: bool) -> SensitivityMetric {
    options.sensitivity_metric.unwrap_or(if with_data {
        SensitivityMetric::MaxActivationVariance
    } else {
        SensitivityMetric::WeightQuantizationError
    })
}

/// Assigns the backup precision to the most sensitive ratio-defining weights when `ratio < 1`.
/// `inputs`: the sites' input statistics (data-aware metrics).
pub(crate) fn assign(
    graph: &Graph,
    sites: &mut [WeightSite],
    options: &CompressOptions,
    store: &mut dyn WeightStore,
    inputs: Option<&SiteStatistics>,
    hooks: &mut Hooks,
) -> Result<()> {
    if options.effective_ratio() >= 1.0 {
        return Ok(());
    }
    let metric = metric(options, inputs.is_some());
    if metric.is_data_aware() && inputs.is_none() {
        return Err(Error::invalid(format!("sensitivity metric {} needs calibration data (a dataset)", metric.name())));
    }
    let defining: Vec<usize> = (0..sites.len()).filter(|&i| sites[i].ratio_defining).collect();
    let mut scores = Vec::with_capacity(defining.len());
    for (k, &i) in defining.iter().enumerate() {
        hooks.progress(Stage::MixedPrecision, k, defining.len())?;
        let site = &sites[i];
        if metric.is_data_aware() && site.kind == WeightKind::Embedding {
            // No activations to weigh an embedding by: NNCF gives it the lowest sensitivity.
            scores.push((i, 0.0));
            continue;
        }
        let raw = store.read(&graph.nodes[site.constant])?;
        let layout = site.layout(None).expect("ratio-defining weights have a layout");
        let error = lowering::int8_error(&raw, site.element_type, layout)?;
        let score = match (metric, inputs) {
            (SensitivityMetric::WeightQuantizationError, _) | (_, None) => select::inverse_error(site, error.max_mean),
            (m, Some(stats)) => {
                let s = stats.for_site(i).ok_or_else(|| {
                    Error::unsupported(format!(
                        "{}: data-aware mixed precision needs the layer's input statistics (a MatMul reading \
                         an activation)",
                        graph.nodes[site.op].describe()
                    ))
                })?;
                match m {
                    SensitivityMetric::HessianInputActivation => error.frobenius * hessian_trace(s),
                    _ => select::inverse_error(site, error.max_mean) * activation_statistic(m, s),
                }
            }
        };
        scores.push((i, score));
    }
    hooks.progress(Stage::MixedPrecision, defining.len(), defining.len())?;
    select::apply_ratio(sites, &scores, options);
    Ok(())
}

/// NNCF's HAWQ estimate: twice the mean over samples of each sample's mean x².
fn hessian_trace(s: &InputStats) -> f64 {
    mean(&s.mean_square) * 2.0
}

fn activation_statistic(metric: SensitivityMetric, s: &InputStats) -> f64 {
    match metric {
        SensitivityMetric::MeanActivationVariance => mean(&s.mean_variance),
        SensitivityMetric::MaxActivationVariance => mean(&s.max_variance),
        SensitivityMetric::MeanActivationMagnitude => mean(&s.mean_magnitude),
        SensitivityMetric::HessianInputActivation => hessian_trace(s),
        SensitivityMetric::WeightQuantizationError => 1.0,
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}
