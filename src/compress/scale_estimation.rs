//! Scale estimation as NNCF computes it for 4-bit weights (`scale_estimation.py`): per group,
//! the min/max scale is refined to minimise the group's output error on per-sample token means
//! of its input. Candidates are importance-weighted averages of each weight's "ideal" scale
//! `|w| / |q − zp|`, the codes re-derived from the best scale so far (initial steps) or from the
//! min/max scale shrunk by 5 % steps (grid steps); a candidate replaces the best when its error
//! is not larger. The min/max zero point is kept.

use super::activations::SiteStatistics;
use super::lowering::{group_params, quantize, GroupParams, IntFormat};
use super::matrix::{self, WeightMatrix};
use super::select::{WeightKind, WeightSite};
use super::{ScaleEstimationParams, WeightStore};
use crate::error::Result;
use crate::graph::Graph;
use crate::hooks::{Hooks, LogLevel, Stage};
use rayon::prelude::*;
use std::collections::HashMap;

/// A weight's mean squared output error per (row, group) on the calibration means: with the
/// min/max scales, and with the estimated ones.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OutputError {
    pub min_max: f64,
    pub estimated: f64,
}

/// Rows handled by one task.
const ROW_BLOCK: usize = 32;

/// Estimated parameters per 4-bit MatMul site with statistics, in the order
/// [`super::lowering::compress_with`] takes them (`[outer, groups, inner]`), and the output
/// error they bought.
pub(crate) fn estimate(
    graph: &Graph,
    sites: &[WeightSite],
    statistics: &SiteStatistics,
    params: &ScaleEstimationParams,
    store: &mut dyn WeightStore,
    hooks: &mut Hooks,
) -> Result<HashMap<usize, (Vec<GroupParams>, OutputError)>> {
    let started = std::time::Instant::now();
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
        hooks.progress(Stage::ScaleEstimation, k, chosen.len())?;
        let site = &sites[i];
        let config = site.config.expect("filtered on a config");
        let layout = site.layout(None).expect("compressed weights have a layout");
        let raw = store.read(&graph.nodes[site.constant])?;
        let weight = WeightMatrix::read(&raw, site.element_type, layout)?;
        drop(raw);
        let stats = statistics.for_site(i).expect("filtered on statistics");
        let (magnitude, x) = stats.magnitudes_and_subset(params.subset_size);
        let group = config.group_size.unwrap_or(weight.cols);
        let (per_row, error) = estimate_weight(&weight, &magnitude, &x, group, config.format, params);
        // Rows are (outer, inner) pairs; the compressor wants [outer, groups, inner].
        let ng = weight.cols / group;
        let mut ordered = vec![GroupParams { scale: 0.0, zero_point: 0.0 }; per_row.len()];
        for (r, p) in per_row.into_iter().enumerate() {
            let (o, inner_i, g) = (r / ng / layout.inner, (r / ng) % layout.inner, r % ng);
            ordered[(o * ng + g) * layout.inner + inner_i] = p;
        }
        out.insert(i, (ordered, error));
    }
    hooks.progress(Stage::ScaleEstimation, chosen.len(), chosen.len())?;
    hooks.log(
        LogLevel::Info,
        &format!("scale estimation: {} weights in {:.2} s", out.len(), started.elapsed().as_secs_f64()),
    );
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
) -> (Vec<GroupParams>, OutputError) {
    let ng = w.cols / group;
    let n = x.first().map_or(0, |v| v.len());
    // Each group's inputs as [group × n], row-major.
    let xs: Vec<Vec<f32>> =
        (0..ng).map(|g| (0..group).flat_map(|c| x[g * group + c].iter().copied()).collect()).collect();
    let blocks: Vec<usize> = (0..w.rows).step_by(ROW_BLOCK).collect();
    let results: Vec<(Vec<GroupParams>, f64, f64)> = blocks
        .par_iter()
        .map(|&r0| {
            let rows = ROW_BLOCK.min(w.rows - r0);
            let mut params_out = vec![GroupParams { scale: 0.0, zero_point: 0.0 }; rows * ng];
            let (mut before, mut after) = (0f64, 0f64);
            for g in 0..ng {
                let wg: Vec<f32> =
                    (r0..r0 + rows).flat_map(|r| w.row(r)[g * group..(g + 1) * group].iter().copied()).collect();
                let s = &magnitude[g * group..(g + 1) * group];
                let (found, b, a) = estimate_block(&wg, rows, group, s, &xs[g], n, format, params);
                before += b;
                after += a;
                for (k, p) in found.into_iter().enumerate() {
                    params_out[k * ng + g] = p;
                }
            }
            (params_out, before, after)
        })
        .collect();
    let count = (w.rows * ng).max(1) as f64;
    let error = OutputError {
        min_max: results.iter().map(|r| r.1).sum::<f64>() / count,
        estimated: results.iter().map(|r| r.2).sum::<f64>() / count,
    };
    (results.into_iter().flat_map(|r| r.0).collect(), error)
}

/// One group of `rows` weight rows (`wg`, `[rows × group]`): the estimated parameters per row.
#[allow(clippy::too_many_arguments)]
pub(super) fn estimate_block(
    wg: &[f32],
    rows: usize,
    group: usize,
    s: &[f32],
    xg: &[f32],
    n: usize,
    format: IntFormat,
    params: &ScaleEstimationParams,
) -> (Vec<GroupParams>, f64, f64) {
    const EPS: f32 = f32::EPSILON;
    let levels = format.levels();
    let minmax: Vec<GroupParams> = (0..rows)
        .map(|r| {
            let row = &wg[r * group..(r + 1) * group];
            let (mn, mx) = row.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
            group_params(format, mn, mx)
        })
        .collect();
    let zero_points: Vec<f32> = minmax.iter().map(|p| p.zero_point).collect();
    let mut work = Work {
        wg,
        rows,
        group,
        xg,
        n,
        levels,
        zero_points: &zero_points,
        penalty: params.weight_penalty as f32,
        fp_out: matrix::matmul(wg, xg, rows, group, n),
        deq: vec![0f32; rows * group],
        targets: vec![0f32; rows * group],
        out: vec![0f32; rows * n],
        scratch: vec![0f32; n.max(group)],
    };
    let first: Vec<f32> = minmax.iter().map(|p| p.scale).collect();
    let mut best = work.errors(&first);
    let before: f64 = best.iter().map(|&e| e as f64).sum();
    // Importance: the input magnitude of each weight, 0 where its code is the zero point,
    // normalised per row.
    let mut importance = vec![0f32; rows * group];
    for r in 0..rows {
        let imp = &mut importance[r * group..(r + 1) * group];
        for ((v, &t), &m) in imp.iter_mut().zip(&work.targets[r * group..(r + 1) * group]).zip(s) {
            *v = if t == 0.0 { 0.0 } else { m };
        }
        let denom = matrix::pairwise_sum(imp) + EPS;
        imp.iter_mut().for_each(|v| *v /= denom);
    }
    let mut result = first.clone();
    let sign: Vec<f32> = minmax.iter().map(|p| p.scale / p.scale.abs()).collect();
    let mut targets = work.targets.clone();
    for i in 0..params.initial_steps {
        let near = near_scales(wg, &targets, &importance, &sign, group, &mut work.scratch);
        work.keep_better(&near, &mut best, &mut result);
        if i + 1 < params.initial_steps {
            work.codes(&result);
            targets.copy_from_slice(&work.targets);
        }
    }
    for k in 0..params.scale_steps {
        let factor = (1.0 - 0.05 * k as f64) as f32;
        let shrunk: Vec<f32> = first.iter().map(|&p| factor * p).collect();
        work.codes(&shrunk);
        targets.copy_from_slice(&work.targets);
        let near = near_scales(wg, &targets, &importance, &sign, group, &mut work.scratch);
        work.keep_better(&near, &mut best, &mut result);
    }
    let after: f64 = best.iter().map(|&e| e as f64).sum();
    ((0..rows).map(|r| GroupParams { scale: result[r], zero_point: zero_points[r] }).collect(), before, after)
}

/// The importance-weighted ideal scale `|w| / |q − zp|` of each row (+0.001 where q = zp).
fn near_scales(
    wg: &[f32],
    targets: &[f32],
    importance: &[f32],
    sign: &[f32],
    group: usize,
    scratch: &mut [f32],
) -> Vec<f32> {
    (0..sign.len())
        .map(|r| {
            let range = r * group..(r + 1) * group;
            let weighted = &mut scratch[..group];
            for (((o, &w), &t), &imp) in
                weighted.iter_mut().zip(&wg[range.clone()]).zip(&targets[range.clone()]).zip(&importance[range])
            {
                let zero = if t == 0.0 { 0.001 } else { 0.0 };
                *o = w.abs() / (t.abs() + zero) * imp;
            }
            matrix::pairwise_sum(weighted) * sign[r]
        })
        .collect()
}

/// One block's weights and inputs, and the buffers each trial reuses.
struct Work<'a> {
    wg: &'a [f32],
    rows: usize,
    group: usize,
    xg: &'a [f32],
    n: usize,
    levels: (f32, f32),
    zero_points: &'a [f32],
    penalty: f32,
    fp_out: Vec<f32>,
    deq: Vec<f32>,
    /// Codes minus zero points of the last [`Work::codes`].
    targets: Vec<f32>,
    out: Vec<f32>,
    scratch: Vec<f32>,
}

impl Work<'_> {
    /// Codes (as `targets`) and dequantized weights (as `deq`) for per-row `scales`.
    fn codes(&mut self, scales: &[f32]) {
        let (low, high) = self.levels;
        for (r, &scale) in scales.iter().enumerate().take(self.rows) {
            let p = GroupParams { scale, zero_point: self.zero_points[r] };
            let range = r * self.group..(r + 1) * self.group;
            for ((t, d), &w) in
                self.targets[range.clone()].iter_mut().zip(&mut self.deq[range.clone()]).zip(&self.wg[range])
            {
                let q = quantize(w, p, low, high) - p.zero_point;
                *t = q;
                *d = q * p.scale;
            }
        }
    }

    /// Per row, the mean squared output error of the weights quantized with `scales` (plus the
    /// weights' own error times a positive penalty).
    fn errors(&mut self, scales: &[f32]) -> Vec<f32> {
        self.codes(scales);
        matrix::matmul_into(&self.deq, self.xg, self.rows, self.group, self.n, &mut self.out);
        (0..self.rows)
            .map(|r| {
                let sq = &mut self.scratch[..self.n];
                for ((o, &q), &f) in sq
                    .iter_mut()
                    .zip(&self.out[r * self.n..(r + 1) * self.n])
                    .zip(&self.fp_out[r * self.n..(r + 1) * self.n])
                {
                    *o = (f - q) * (f - q);
                }
                let mut e = matrix::mean(sq);
                if self.penalty > 0.0 {
                    let range = r * self.group..(r + 1) * self.group;
                    let wsq = &mut self.scratch[..self.group];
                    for ((o, &q), &w) in wsq.iter_mut().zip(&self.deq[range.clone()]).zip(&self.wg[range]) {
                        *o = (q - w) * (q - w);
                    }
                    e += self.penalty * matrix::mean(wsq);
                }
                e
            })
            .collect()
    }

    /// Tries the per-row scales `near`: each replaces the best when its error is not larger
    /// (NumPy keeps the new candidate on a tie). A candidate that is not a finite, non-zero scale
    /// (a group of zeros) is passed over.
    fn keep_better(&mut self, near: &[f32], best: &mut [f32], result: &mut [f32]) {
        let e = self.errors(near);
        for r in 0..self.rows {
            if e[r].is_finite() && near[r].is_finite() && near[r] != 0.0 && e[r] <= best[r] {
                best[r] = e[r];
                result[r] = near[r];
            }
        }
    }
}
