//! Scale estimation as NNCF computes it for 4-bit weights (`scale_estimation.py`): per group,
//! the min/max scale is refined to minimise the group's output error on per-sample token means
//! of its input. Candidates are importance-weighted averages of each weight's "ideal" scale
//! `|w| / |q − zp|`, the codes re-derived from the best scale so far (initial steps) or from the
//! min/max scale shrunk by 5 % steps (grid steps); a candidate replaces the best when its error
//! is not larger. The min/max zero point is kept.

use super::activations::SiteStatistics;
use super::awq::magnitudes_and_subset;
use super::lowering::{group_params, quantize, GroupParams, IntFormat};
use super::matrix::{self, WeightMatrix};
use super::select::{WeightKind, WeightSite};
use super::{ScaleEstimationParams, WeightStore};
use crate::error::Result;
use crate::graph::Graph;
use crate::hooks::{Hooks, LogLevel, Stage};
use rayon::prelude::*;
use std::collections::HashMap;

/// Rows handled by one task.
const ROW_BLOCK: usize = 32;

/// Estimated parameters per 4-bit MatMul site with statistics, in the order
/// [`super::lowering::compress_with`] takes them (`[outer, groups, inner]`).
pub(crate) fn estimate(
    graph: &Graph,
    sites: &[WeightSite],
    statistics: &SiteStatistics,
    params: &ScaleEstimationParams,
    store: &mut dyn WeightStore,
    hooks: &mut Hooks,
) -> Result<HashMap<usize, Vec<GroupParams>>> {
    let chosen: Vec<usize> = (0..sites.len())
        .filter(|&i| {
            let s = &sites[i];
            s.kind == WeightKind::MatMul
                && s.config.is_some_and(|c| c.format.bits <= 4)
                && statistics.for_site(i).is_some()
        })
        .collect();
    let mut out = HashMap::new();
    for (k, &i) in chosen.iter().enumerate() {
        hooks.progress(Stage::WeightCompression, k, chosen.len())?;
        let site = &sites[i];
        let config = site.config.expect("filtered on a config");
        let layout = site.layout(None).expect("compressed weights have a layout");
        let raw = store.read(&graph.nodes[site.constant])?;
        let weight = WeightMatrix::read(&raw, site.element_type, layout)?;
        drop(raw);
        let stats = statistics.for_site(i).expect("filtered on statistics");
        let (magnitude, x) = magnitudes_and_subset(stats, params.subset_size);
        let group = config.group_size.unwrap_or(weight.cols);
        let per_row = estimate_weight(&weight, &magnitude, &x, group, config.format, params);
        // Rows are (outer, inner) pairs; the compressor wants [outer, groups, inner].
        let ng = weight.cols / group;
        let mut ordered = vec![GroupParams { scale: 0.0, zero_point: 0.0 }; per_row.len()];
        for (r, p) in per_row.into_iter().enumerate() {
            let (o, inner_i, g) = (r / ng / layout.inner, (r / ng) % layout.inner, r % ng);
            ordered[(o * ng + g) * layout.inner + inner_i] = p;
        }
        out.insert(i, ordered);
    }
    hooks.progress(Stage::WeightCompression, chosen.len(), chosen.len())?;
    hooks.log(LogLevel::Info, &format!("scale estimation: {} weights", out.len()));
    Ok(out)
}

/// The estimated parameters of every (row, group), row-major.
fn estimate_weight(
    w: &WeightMatrix,
    magnitude: &[f32],
    x: &[Vec<f32>],
    group: usize,
    format: IntFormat,
    params: &ScaleEstimationParams,
) -> Vec<GroupParams> {
    let ng = w.cols / group;
    let n = x.first().map_or(0, |v| v.len());
    // Each group's inputs as [group × n], row-major.
    let xs: Vec<Vec<f32>> =
        (0..ng).map(|g| (0..group).flat_map(|c| x[g * group + c].iter().copied()).collect()).collect();
    let blocks: Vec<usize> = (0..w.rows).step_by(ROW_BLOCK).collect();
    let results: Vec<Vec<GroupParams>> = blocks
        .par_iter()
        .map(|&r0| {
            let rows = ROW_BLOCK.min(w.rows - r0);
            let mut params_out = vec![GroupParams { scale: 0.0, zero_point: 0.0 }; rows * ng];
            for g in 0..ng {
                let wg: Vec<f32> =
                    (r0..r0 + rows).flat_map(|r| w.row(r)[g * group..(g + 1) * group].iter().copied()).collect();
                let s = &magnitude[g * group..(g + 1) * group];
                let found = estimate_block(&wg, rows, group, s, &xs[g], n, format, params);
                for (k, p) in found.into_iter().enumerate() {
                    params_out[k * ng + g] = p;
                }
            }
            params_out
        })
        .collect();
    results.into_iter().flatten().collect()
}

/// One group of `rows` weight rows (`wg`, `[rows × group]`): the estimated parameters per row.
#[allow(clippy::too_many_arguments)]
fn estimate_block(
    wg: &[f32],
    rows: usize,
    group: usize,
    s: &[f32],
    xg: &[f32],
    n: usize,
    format: IntFormat,
    params: &ScaleEstimationParams,
) -> Vec<GroupParams> {
    const EPS: f32 = f32::EPSILON;
    let (low, high) = format.levels();
    let codes_with =
        |row: &[f32], p: GroupParams| -> Vec<f32> { row.iter().map(|&v| quantize(v, p, low, high)).collect() };
    let dequantized =
        |codes: &[f32], p: GroupParams| -> Vec<f32> { codes.iter().map(|&q| (q - p.zero_point) * p.scale).collect() };
    // Min/max parameters, codes and the float output per row.
    let minmax: Vec<GroupParams> = (0..rows)
        .map(|r| {
            let row = &wg[r * group..(r + 1) * group];
            let (mn, mx) = row.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
            group_params(format, mn, mx)
        })
        .collect();
    let fp_out = matrix::matmul(wg, xg, rows, group, n);
    let penalty = params.weight_penalty as f32;
    // The mean squared output error of `deq` (`[rows × group]`) per row, plus the weights' own
    // mean squared error times a positive `weight_penalty`.
    let errors = |deq: &[f32]| -> Vec<f32> {
        let out = matrix::matmul(deq, xg, rows, group, n);
        (0..rows)
            .map(|r| {
                let sq: Vec<f32> = out[r * n..(r + 1) * n]
                    .iter()
                    .zip(&fp_out[r * n..(r + 1) * n])
                    .map(|(&q, &f)| (f - q) * (f - q))
                    .collect();
                let mut e = matrix::mean(&sq);
                if penalty > 0.0 {
                    let wsq: Vec<f32> = deq[r * group..(r + 1) * group]
                        .iter()
                        .zip(&wg[r * group..(r + 1) * group])
                        .map(|(&q, &w)| (q - w) * (q - w))
                        .collect();
                    e += penalty * matrix::mean(&wsq);
                }
                e
            })
            .collect()
    };
    let mut targets: Vec<Vec<f32>> = vec![];
    let mut importance: Vec<Vec<f32>> = vec![];
    let mut first_deq = vec![0f32; rows * group];
    for r in 0..rows {
        let row = &wg[r * group..(r + 1) * group];
        let p = minmax[r];
        let codes = codes_with(row, p);
        first_deq[r * group..(r + 1) * group].copy_from_slice(&dequantized(&codes, p));
        let target: Vec<f32> = codes.iter().map(|&q| q - p.zero_point).collect();
        let imp: Vec<f32> = target.iter().zip(s).map(|(&t, &m)| if t == 0.0 { 0.0 } else { m }).collect();
        let denom = matrix::pairwise_sum(&imp) + EPS;
        importance.push(imp.iter().map(|&v| v / denom).collect());
        targets.push(target);
    }
    let mut best = errors(&first_deq);
    let mut result: Vec<f32> = minmax.iter().map(|p| p.scale).collect();
    let sign: Vec<f32> = minmax.iter().map(|p| p.scale / p.scale.abs()).collect();
    // The importance-weighted ideal scale of each row for these targets.
    let near_scales = |targets: &[Vec<f32>]| -> Vec<f32> {
        (0..rows)
            .map(|r| {
                let row = &wg[r * group..(r + 1) * group];
                let weighted: Vec<f32> = row
                    .iter()
                    .zip(&targets[r])
                    .zip(&importance[r])
                    .map(|((&w, &t), &imp)| {
                        let zero = if t == 0.0 { 0.001 } else { 0.0 };
                        w.abs() / (t.abs() + zero) * imp
                    })
                    .collect();
                matrix::pairwise_sum(&weighted) * sign[r]
            })
            .collect()
    };
    // Tries the per-row scales `near`; keeps each that does not raise the row's error.
    let try_scales = |near: &[f32], best: &mut Vec<f32>, result: &mut Vec<f32>| {
        let mut deq = vec![0f32; rows * group];
        for r in 0..rows {
            let p = GroupParams { scale: near[r], zero_point: minmax[r].zero_point };
            let codes = codes_with(&wg[r * group..(r + 1) * group], p);
            deq[r * group..(r + 1) * group].copy_from_slice(&dequantized(&codes, p));
        }
        let e = errors(&deq);
        for r in 0..rows {
            // NumPy keeps the new candidate on a tie; a candidate whose error is not a number
            // (a group of zeros gives a zero scale) is passed over rather than kept.
            if e[r].is_finite() && near[r].is_finite() && near[r] != 0.0 && e[r] <= best[r] {
                best[r] = e[r];
                result[r] = near[r];
            }
        }
    };
    let targets_for = |scales: &[f32]| -> Vec<Vec<f32>> {
        (0..rows)
            .map(|r| {
                let p = GroupParams { scale: scales[r], zero_point: minmax[r].zero_point };
                codes_with(&wg[r * group..(r + 1) * group], p).into_iter().map(|q| q - p.zero_point).collect()
            })
            .collect()
    };
    for i in 0..params.initial_steps {
        let near = near_scales(&targets);
        try_scales(&near, &mut best, &mut result);
        if i + 1 < params.initial_steps {
            targets = targets_for(&result);
        }
    }
    for k in 0..params.scale_steps {
        let factor = (1.0 - 0.05 * k as f64) as f32;
        let shrunk: Vec<f32> = minmax.iter().map(|p| factor * p.scale).collect();
        let t = targets_for(&shrunk);
        let near = near_scales(&t);
        try_scales(&near, &mut best, &mut result);
    }
    (0..rows).map(|r| GroupParams { scale: result[r], zero_point: minmax[r].zero_point }).collect()
}
