//! What each quantizer does to its values: an activation quantizer's range against the values
//! the FP32 model gives it (extremes, share clipped, histogram), a weight's error per output
//! channel. The per-layer analysis and the report of every quantization read them.

use super::quantized::Quantized;
use crate::analysis::{sqnr_db, ActivationRange, WeightError, HISTOGRAM_BINS};
use crate::data::{Dataset, Sample};
use crate::engine::Plan;
use crate::error::Result;
use crate::graph::{NodeId, Outlet};
use crate::report::{InputRange, LayerFacts, WeightFacts};
use crate::tensor::Tensor;
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};

/// Per activation quantizer: the ops it serves, and its range against the values the FP
/// graph gives it on `inputs` (two passes: extremes and clipping, then the histogram).
pub(crate) fn activation_ranges(
    q: &Quantized,
    inputs: &[Sample],
    with_histogram: bool,
) -> Result<Vec<(Vec<NodeId>, ActivationRange)>> {
    let plan = Plan::new(&q.fp_graph)?;
    let points = &q.setup.activations;
    let index: HashMap<Outlet, Vec<usize>> = points.iter().enumerate().fold(HashMap::new(), |mut m, (i, p)| {
        m.entry(p.source).or_insert_with(Vec::new).push(i);
        m
    });
    let limits: Vec<(f32, f32)> = q
        .act_ranges
        .iter()
        .map(|r| {
            let low = r.low.iter().copied().fold(f32::INFINITY, f32::min);
            let high = r.high.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            (low, high)
        })
        .collect();
    // Pass 1: extremes and values outside the range, per point.
    let first = |s: &Sample| -> Result<Vec<(f32, f32, u64, u64)>> {
        let mut acc = vec![(f32::INFINITY, f32::NEG_INFINITY, 0u64, 0u64); points.len()];
        let mut watch = |o: Outlet, t: &Tensor| -> Result<()> {
            if let Some(ids) = index.get(&o) {
                let v = t.to_f32();
                for &i in ids {
                    let (lo, hi) = limits[i];
                    let a = &mut acc[i];
                    for &x in v.iter() {
                        a.0 = a.0.min(x);
                        a.1 = a.1.max(x);
                        a.2 += u64::from(x < lo || x > hi);
                    }
                    a.3 += v.len() as u64;
                }
            }
            Ok(())
        };
        run_watching_inputs(&plan, s, &mut watch)?;
        Ok(acc)
    };
    let seen = inputs.par_iter().map(first).try_reduce(
        || vec![(f32::INFINITY, f32::NEG_INFINITY, 0, 0); points.len()],
        |a, b| Ok(a.iter().zip(&b).map(|(x, y)| (x.0.min(y.0), x.1.max(y.1), x.2 + y.2, x.3 + y.3)).collect()),
    )?;
    // Pass 2: the histogram over what was seen.
    let second = |s: &Sample| -> Result<Vec<Vec<u64>>> {
        if !with_histogram {
            return Ok(vec![vec![]; points.len()]);
        }
        let mut bins = vec![vec![0u64; HISTOGRAM_BINS]; points.len()];
        let mut watch = |o: Outlet, t: &Tensor| -> Result<()> {
            if let Some(ids) = index.get(&o) {
                let v = t.to_f32();
                for &i in ids {
                    let (lo, hi) = (seen[i].0, seen[i].1);
                    let width = (hi - lo).max(f32::MIN_POSITIVE);
                    for &x in v.iter() {
                        let b = (((x - lo) / width) * HISTOGRAM_BINS as f32) as usize;
                        bins[i][b.min(HISTOGRAM_BINS - 1)] += 1;
                    }
                }
            }
            Ok(())
        };
        run_watching_inputs(&plan, s, &mut watch)?;
        Ok(bins)
    };
    let bins = if with_histogram { HISTOGRAM_BINS } else { 0 };
    let hist = inputs.par_iter().map(second).try_reduce(
        || vec![vec![0u64; bins]; points.len()],
        |a, b| Ok(a.iter().zip(&b).map(|(x, y)| x.iter().zip(y).map(|(p, q)| p + q).collect()).collect()),
    )?;
    Ok(points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let src = &q.fp_graph.nodes[p.source.node];
            let r = &q.act_ranges[i];
            let range = ActivationRange {
                tensor: format!("{}:{}", src.name, p.source.port),
                seen_min: seen[i].0,
                seen_max: seen[i].1,
                range_low: limits[i].0,
                range_high: limits[i].1,
                levels: r.levels,
                per_channel: r.low.len() > 1,
                clipped_share: seen[i].2 as f64 / seen[i].3.max(1) as f64,
                histogram: hist[i].clone(),
            };
            (p.targets.clone(), range)
        })
        .collect())
}

/// Runs `plan` on `sample` with `watch` seeing every value, the model's inputs too (the
/// engine's observer sees only what it computes).
fn run_watching_inputs(
    plan: &Plan,
    sample: &Sample,
    mut watch: &mut dyn FnMut(Outlet, &Tensor) -> Result<()>,
) -> Result<()> {
    for (p, t) in plan.bind_inputs(sample)? {
        watch(Outlet::new(p, 0), &t)?;
    }
    plan.run_observed(sample, &mut watch)?;
    Ok(())
}

/// Per quantized weight: its op and its error per output channel.
pub(crate) fn weight_errors(q: &Quantized) -> Vec<(NodeId, WeightError)> {
    let saturating: HashSet<&str> = q
        .report
        .int8_arithmetic
        .as_ref()
        .map(|a| a.saturating_layers.iter().map(String::as_str).collect())
        .unwrap_or_default();
    q.setup
        .weights
        .iter()
        .zip(&q.weights)
        .map(|(w, (fp, qw))| {
            let deq = qw.dequantized();
            let axes = &w.channel_axes;
            let shape = fp.shape();
            let channels: usize = axes.iter().map(|&a| shape[a]).product::<usize>().max(1);
            let mut energy = vec![0f64; channels];
            let mut error = vec![0f64; channels];
            for ((idx, &x), &y) in fp.indexed_iter().zip(deq.iter()) {
                let c = axes.iter().fold(0usize, |k, &a| k * shape[a] + idx[a]);
                energy[c] += (x as f64).powi(2);
                error[c] += ((x - y) as f64).powi(2);
            }
            let per: Vec<f64> = energy.iter().zip(&error).map(|(&s, &e)| sqnr_db(s, e)).collect();
            let name = q.fp_graph.nodes[w.op].name.clone();
            let err = WeightError {
                bits: if w.half_range { 7 } else { 8 },
                min_sqnr_db: per.iter().copied().fold(f64::INFINITY, f64::min),
                mean_sqnr_db: per.iter().sum::<f64>() / per.len().max(1) as f64,
                channel_sqnr_db: per,
                can_saturate: saturating.contains(name.as_str()),
                layer: name,
            };
            (w.op, err)
        })
        .collect()
}

/// Samples [`layer_facts`] measures ranges on.
const FACT_SAMPLES: usize = 8;

/// The short per-layer section of a quantization's report: per quantized op, its inputs'
/// ranges against the values the first calibration samples gave them, and its weights' error.
/// Empty, with the reason, when the built-in engine cannot run the model.
pub(crate) fn layer_facts(q: &Quantized, data: &dyn Dataset, n: usize) -> Result<Vec<LayerFacts>, String> {
    let inputs: Vec<Sample> = (0..n.min(FACT_SAMPLES))
        .map(|i| data.get(i))
        .collect::<Result<_>>()
        .map_err(|e| format!("per-layer facts: {e}"))?;
    let ranges = activation_ranges(q, &inputs, false).map_err(|e| format!("per-layer facts left out: {e}"))?;
    let weights: HashMap<NodeId, WeightError> = weight_errors(q).into_iter().collect();
    Ok(q.setup
        .quantized_ops
        .iter()
        .map(|&op| LayerFacts {
            layer: q.fp_graph.nodes[op].name.clone(),
            inputs: ranges
                .iter()
                .filter(|(targets, _)| targets.contains(&op))
                .map(|(_, r)| InputRange {
                    tensor: r.tensor.clone(),
                    range_low: r.range_low,
                    range_high: r.range_high,
                    seen_min: r.seen_min,
                    seen_max: r.seen_max,
                    clipped_share: r.clipped_share,
                })
                .collect(),
            weights: weights.get(&op).map(|w| WeightFacts {
                bits: w.bits,
                min_sqnr_db: w.min_sqnr_db,
                mean_sqnr_db: w.mean_sqnr_db,
            }),
        })
        .collect())
}
