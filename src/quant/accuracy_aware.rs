//! AccuracyAwareQuantization: default quantization, then revert the quantized layer groups that
//! hurt most until the metric is within `maximal_drop` of FP32.
//!
//! Ranking is cheap: FP32 outputs are computed once and cached; each candidate group is scored
//! on the samples that degrade most, candidates in parallel: by the output error it leaves
//! (default), or by the metric there ([`Ranking::Metric`]).

use super::config::{DropType, Preset, QuantConfig, Ranking, SaturationFix};
use super::frontier::FrontierRun;
use super::judge::emulates_cpu_plugin;
use super::quantized::Quantized;
use crate::backend::Executable;
use crate::data::{Dataset, Metric, Sample};
use crate::error::{Error, Result};
use crate::graph::{Graph, NodeId};
use crate::hooks::{Hooks, LogLevel, Stage};
use crate::model::Model;
use crate::report::{AccuracyReport, Outcome, RevertedLayer};
use crate::tensor::Tensor;
use std::collections::HashSet;
use std::time::Instant;

/// Runs `exec` on `indices` of `data` in parallel; outputs in index order, progress as `stage`.
pub(crate) fn infer(
    exec: &Executable,
    data: &dyn Dataset,
    indices: &[usize],
    hooks: &mut Hooks,
    stage: Option<Stage>,
) -> Result<Vec<Vec<Tensor>>> {
    exec.run_many(data, indices, "evaluation", &mut |done| match stage {
        Some(st) => hooks.progress(st, done, indices.len()),
        None => Ok(()),
    })
}

fn evaluate(metric: &mut dyn Metric, outs: &[Vec<Tensor>]) -> Result<(f64, Option<Vec<f64>>)> {
    metric.reset();
    for (i, o) in outs.iter().enumerate() {
        metric.update(i, o)?;
    }
    let v = metric.value()?;
    if !v.is_finite() {
        return Err(Error::Callback(format!("the metric returned {v}")));
    }
    Ok((v, metric.per_sample()))
}

fn finite(v: f64) -> Result<f64> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(Error::Callback(format!("the metric returned {v}")))
    }
}

/// Squared error of outputs normalized by the FP32 output energy, summed over outputs.
fn nmse(fp: &[Tensor], q: &[Tensor]) -> f64 {
    fp.iter()
        .zip(q)
        .map(|(a, b)| {
            let (a, b) = (a.to_f64_vec(), b.to_f64_vec());
            let num: f64 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
            let den: f64 = a.iter().map(|x| x * x).sum::<f64>().max(1e-12);
            num / den
        })
        .sum()
}

/// Metric, outputs and per-sample metric values of one evaluation.
type Evaluated = (f64, Vec<Vec<Tensor>>, Option<Vec<f64>>);

struct Ctx<'a> {
    q: &'a Quantized,
    eval: &'a dyn Dataset,
    fp_outs: Vec<Vec<Tensor>>,
    all: Vec<usize>,
    baseline: f64,
    higher_is_better: bool,
    config: &'a QuantConfig,
    inferences: usize,
    /// Per ranking: the share of the model's ops each candidate ran again, on average.
    ranking_share: Vec<f64>,
}

impl Ctx<'_> {
    fn drop_of(&self, m: f64) -> f64 {
        drop_from(self.baseline, self.higher_is_better, self.config.accuracy_aware.drop_type, m)
    }

    fn metric_of(
        &mut self,
        reverted: &HashSet<NodeId>,
        metric: &mut dyn Metric,
        hooks: &mut Hooks,
    ) -> Result<Evaluated> {
        self.inferences += self.all.len();
        evaluate_quantized(self.q, self.eval, &self.all, reverted, metric, hooks)
    }
}

/// How far `m` falls short of `baseline`, absolute or relative.
fn drop_from(baseline: f64, higher_is_better: bool, drop_type: DropType, m: f64) -> f64 {
    let d = if higher_is_better { baseline - m } else { m - baseline };
    match drop_type {
        DropType::Absolute => d,
        DropType::Relative => d / baseline.abs().max(1e-12),
    }
}

/// The metric of `q` with `reverted` left in floating point, on the whole evaluation set.
fn evaluate_quantized(
    q: &Quantized,
    eval: &dyn Dataset,
    all: &[usize],
    reverted: &HashSet<NodeId>,
    metric: &mut dyn Metric,
    hooks: &mut Hooks,
) -> Result<Evaluated> {
    let graph = q.materialize(reverted)?;
    let exec = q.judge(graph.clone(), emulates_cpu_plugin(&q.config))?;
    let outs = infer(&exec, eval, all, hooks, Some(Stage::Evaluation))?;
    // A metric that judges models is handed the model as it will be saved.
    if let Some(m) = metric.value_of_model(&graph) {
        return Ok((finite(m?)?, outs, None));
    }
    let (m, per) = evaluate(metric, &outs)?;
    Ok((m, outs, per))
}

/// `model` quantized again with `config` and evaluated on the whole set: another start for the
/// reverts (mixed preset, per-layer saturation fix, tune_hyperparams).
fn quantize_and_evaluate(
    model: &Model,
    config: &QuantConfig,
    calib: &dyn Dataset,
    eval: &dyn Dataset,
    all: &[usize],
    metric: &mut dyn Metric,
    hooks: &mut Hooks,
) -> Result<(Quantized, Evaluated)> {
    let q = super::prepare(model, config, calib, hooks)?;
    let evaluated = evaluate_quantized(&q, eval, all, &HashSet::new(), metric, hooks)?;
    Ok((q, evaluated))
}

/// The graph a candidate is judged by: the quantized model with `reverted` left in floating
/// point, rewritten to compute what OpenVINO's CPU plugin computes when the target is a CPU.
fn eval_graph(q: &Quantized, reverted: &HashSet<NodeId>) -> Result<Graph> {
    let mut g = q.materialize(reverted)?;
    if emulates_cpu_plugin(&q.config) {
        q.verdicts.as_target(&mut g);
    }
    Ok(g)
}

/// Picks the evaluation samples that degrade most (metric per sample first, output error next).
fn ranking_subset(
    fp: &[Vec<Tensor>],
    q: &[Vec<Tensor>],
    fp_per: Option<&[f64]>,
    q_per: Option<&[f64]>,
    k: usize,
    higher: bool,
) -> Vec<usize> {
    let mut idx: Vec<(f64, f64, usize)> = (0..fp.len())
        .map(|i| {
            let md = match (fp_per, q_per) {
                (Some(a), Some(b)) if a.len() == fp.len() && b.len() == fp.len() => {
                    if higher {
                        a[i] - b[i]
                    } else {
                        b[i] - a[i]
                    }
                }
                _ => 0.0,
            };
            (md, nmse(&fp[i], &q[i]), i)
        })
        .collect();
    idx.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.total_cmp(&a.1)).then(a.2.cmp(&b.2)));
    let mut s: Vec<usize> = idx.into_iter().take(k).map(|x| x.2).collect();
    s.sort();
    s
}

/// Scores each candidate group on the ranking subset after reverting it: by the metric there
/// when the metric gives per-sample values (NNCF's metric mode), the output error breaking ties;
/// by the output error alone otherwise. Best first.
///
/// Only what a revert changes is run again: the current model runs once per sample up to the
/// values the candidates share with it, and each candidate runs from those values
/// ([`shared_frontier`], [`Plan::run_from`]); results are bit-identical to whole runs.
fn rank<'m>(
    ctx: &mut Ctx,
    reverted: &HashSet<NodeId>,
    candidates: &[Vec<NodeId>],
    subset: &[usize],
    mut metric: Option<&mut (dyn Metric + 'm)>,
    hooks: &mut Hooks,
) -> Result<Vec<usize>> {
    if !ctx.q.verdicts.reruns_from_frontier() {
        return rank_compiled(ctx, reverted, candidates, subset, metric, hooks);
    }
    let base_graph = eval_graph(ctx.q, reverted)?;
    let inputs: Vec<Sample> = subset.iter().map(|&i| ctx.eval.get(i)).collect::<Result<_>>()?;
    let run = FrontierRun::new(&base_graph, &inputs)?;
    let keep_outputs = metric.is_some();
    // (metric on the subset, output error, candidate index)
    let mut scores: Vec<(f64, f64, usize)> = Vec::with_capacity(candidates.len());
    let (q, fp_outs, higher) = (ctx.q, &ctx.fp_outs, ctx.higher_is_better);
    let recomputed = run.run(
        candidates.len(),
        |j| {
            let mut r = reverted.clone();
            r.extend(candidates[j].iter().copied());
            eval_graph(q, &r)
        },
        |_, k, out| Ok((nmse(&fp_outs[subset[k]], &out), keep_outputs.then_some(out))),
        |j, batches| {
            let mut e = 0.0;
            let mut outs = vec![];
            for batch in batches {
                let mut part = 0.0;
                for (err, out) in batch {
                    part += err;
                    outs.extend(out);
                }
                e += part;
            }
            let m = ranking_score(metric.as_deref_mut(), &outs, subset, higher)?;
            scores.push((m, e, j));
            hooks.progress(Stage::Ranking, scores.len(), candidates.len())
        },
    )?;
    ctx.inferences += candidates.len() * subset.len();
    ctx.ranking_share.push(recomputed as f64 / (candidates.len().max(1) * run.base_ops()?) as f64);
    scores.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
    Ok(scores.into_iter().map(|s| s.2).collect())
}

/// [`rank`] where candidates are compiled by the verdict backend (OpenVINO) and run whole.
fn rank_compiled<'m>(
    ctx: &mut Ctx,
    reverted: &HashSet<NodeId>,
    candidates: &[Vec<NodeId>],
    subset: &[usize],
    mut metric: Option<&mut (dyn Metric + 'm)>,
    hooks: &mut Hooks,
) -> Result<Vec<usize>> {
    let mut scores: Vec<(f64, f64, usize)> = Vec::with_capacity(candidates.len());
    for (j, group) in candidates.iter().enumerate() {
        let mut r = reverted.clone();
        r.extend(group.iter().copied());
        let exec = ctx.q.judge(ctx.q.materialize(&r)?, false)?;
        let outs = infer(&exec, ctx.eval, subset, hooks, None)?;
        let e: f64 = outs.iter().zip(subset).map(|(o, &i)| nmse(&ctx.fp_outs[i], o)).sum();
        let m = ranking_score(metric.as_deref_mut(), &outs, subset, ctx.higher_is_better)?;
        scores.push((m, e, j));
        hooks.progress(Stage::Ranking, scores.len(), candidates.len())?;
    }
    ctx.inferences += candidates.len() * subset.len();
    ctx.ranking_share.push(1.0);
    scores.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
    Ok(scores.into_iter().map(|s| s.2).collect())
}

/// POT's `tune_hyperparams` search space (ParamsGridSearchAlgorithm): min/max weight ranges as
/// one option, and the 3×3 activation estimators — min (min of minima, or the 1e-3 / 1e-4
/// quantile) by max (max of maxima, or the 1 − 1e-3 / 1 − 1e-4 quantile), quantiles averaged
/// over samples.
fn tuning_grid(config: &QuantConfig) -> Vec<(String, QuantConfig)> {
    use super::config::{Estimator, RangeEstimator};
    let est = |kind: &str, aggregator: &str, p: Option<f64>| Estimator {
        kind: Some(kind.into()),
        aggregator: Some(aggregator.into()),
        outlier_prob: p,
        ..Default::default()
    };
    let mut out = vec![];
    let mut w = config.clone();
    w.range_estimator.weights = Some(RangeEstimator {
        min: Some(Estimator { kind: Some("min".into()), ..Default::default() }),
        max: Some(Estimator { kind: Some("max".into()), ..Default::default() }),
    });
    out.push(("weights min/max".to_string(), w));
    let mins = [
        ("min", est("min", "min", None)),
        ("q1e-3", est("quantile", "mean", Some(1e-3))),
        ("q1e-4", est("quantile", "mean", Some(1e-4))),
    ];
    let maxs = [
        ("max", est("max", "max", None)),
        ("q1e-3", est("quantile", "mean", Some(1e-3))),
        ("q1e-4", est("quantile", "mean", Some(1e-4))),
    ];
    for (mn_label, mn) in &mins {
        for (mx_label, mx) in &maxs {
            let mut c = config.clone();
            c.range_estimator.activations = Some(RangeEstimator { min: Some(mn.clone()), max: Some(mx.clone()) });
            out.push((format!("activations min {mn_label}, max {mx_label}"), c));
        }
    }
    out
}

pub fn run(
    model: &Model,
    config: &QuantConfig,
    calib: &dyn Dataset,
    eval: &dyn Dataset,
    metric: &mut dyn Metric,
    hooks: &mut Hooks,
) -> Result<Outcome> {
    let t0 = Instant::now();
    let aa = config.accuracy_aware.clone();
    if eval.is_empty() {
        return Err(Error::invalid("the evaluation dataset is empty"));
    }
    let mut all: Vec<usize> = (0..eval.len()).collect();
    // The FP32 model runs where the INT8 ones will be judged.
    let verdicts = crate::backend::Backend::open(config.backend, &config.openvino)?;
    let fp_exec = verdicts.compile(model.graph(), &[], config.threads)?;
    let mut fp_outs = infer(&fp_exec, eval, &all, hooks, Some(Stage::Evaluation))?;
    drop(fp_exec);
    // Annotation-free: the evaluation set shrinks to the samples the FP32 model is confident
    // about, labelled with its predictions, and the metric is top-1 against those labels.
    let confident: crate::data::Subset;
    let mut agreement: crate::data::Top1Accuracy;
    let (eval, metric): (&dyn Dataset, &mut dyn Metric) = if aa.annotation_free {
        let (kept, labels) = confident_samples(&fp_outs, &aa, eval.len(), hooks)?;
        fp_outs = kept.iter().map(|&i| std::mem::take(&mut fp_outs[i])).collect();
        all = (0..kept.len()).collect();
        confident = crate::data::Subset::new(eval, kept);
        agreement = crate::data::Top1Accuracy::new(labels, aa.annotation_output);
        (&confident, &mut agreement)
    } else {
        (eval, metric)
    };
    let (fp_metric, fp_per) = match metric.value_of_model(model.graph()) {
        Some(m) => (finite(m?)?, None),
        None => evaluate(metric, &fp_outs)?,
    };
    let baseline = aa.baseline_metric.unwrap_or(fp_metric);
    hooks.log(LogLevel::Info, &format!("FP32 metric: {baseline:.5}"));

    let higher_is_better = metric.higher_is_better();
    let drop = |m: f64| drop_from(baseline, higher_is_better, aa.drop_type, m);
    // Metrics are usually means over samples: 0.945 − 0.940 is 0.0050000000000000044 in f64, and
    // a drop equal to maximal_drop meets it.
    let allowed = aa.maximal_drop + 1e-9 * baseline.abs().max(1.0);
    let none = HashSet::new();
    let q = super::prepare(model, config, calib, hooks)?;
    let (q_metric, q_outs, q_per) = evaluate_quantized(&q, eval, &all, &none, metric, hooks)?;
    let mut inferences = 2 * eval.len();
    hooks.log(
        LogLevel::Info,
        &format!("INT8 metric: {q_metric:.5} (drop {:.5}, allowed {})", drop(q_metric), aa.maximal_drop),
    );
    let mut start = Start { q, metric: q_metric, outs: q_outs, per: q_per };
    let requant = Requant { model, calib, eval, all: &all, config, allowed, drop: &drop };
    inferences += requant.better_starts(&mut start, metric, hooks)?;
    let Start { mut q, metric: q_metric, outs: q_outs, per: q_per } = start;
    log_emulation(&q, hooks)?;
    let mut ctx =
        Ctx { q: &q, eval, fp_outs, all, baseline, higher_is_better, config, inferences, ranking_share: vec![] };
    let mut state = Reverts {
        reverted: HashSet::new(),
        metric: q_metric,
        drop: ctx.drop_of(q_metric),
        report: vec![],
        iterations: 0,
    };
    if state.drop > allowed {
        let subset = ranking_subset_of(&ctx, &q_outs, fp_per.as_deref(), q_per.as_deref(), &aa);
        let by_metric = aa.ranking == Ranking::Metric && fp_per.is_some();
        state = revert_until_reached(&mut ctx, state, &subset, allowed, by_metric, metric, hooks)?;
    }
    let Reverts { reverted, metric: cur_metric, drop: cur_drop, report: reverted_report, iterations } = state;
    let reached = cur_drop <= allowed;
    let graph = q.materialize(&reverted)?;
    let mut report = report_of_returned(&q, &reverted);
    report.accuracy = Some(AccuracyReport {
        baseline,
        default_quantized: q_metric,
        final_metric: cur_metric,
        drop: cur_drop,
        maximal_drop: aa.maximal_drop,
        reached,
        iterations,
        reverted: reverted_report,
        int8_share: int8_share(&q, &reverted),
        ranking_op_share: ctx.ranking_share.clone(),
    });
    report.inferences += ctx.inferences;
    report.timings.push(("accuracy_aware_total".into(), t0.elapsed().as_secs_f64()));
    if !reached {
        report.warnings.push(format!("maximal_drop {} not reached: drop {cur_drop:.5}", aa.maximal_drop));
    }
    let probe = std::mem::take(&mut q.latency);
    let reverted = !reverted.is_empty();
    let timed = super::latency::Timed { fp: model.graph(), int8: &graph, reverted };
    super::latency::measure(&q.backend, probe, timed, calib, config, &mut report, hooks)?;
    Ok(Outcome { model: Model::from_graph(graph), report, accuracy_reached: reached })
}

/// Annotation-free: the evaluation samples the FP32 model is confident about, with its
/// predictions as their labels.
fn confident_samples(
    fp_outs: &[Vec<Tensor>],
    aa: &super::config::AccuracyAwareConfig,
    total: usize,
    hooks: &mut Hooks,
) -> Result<(Vec<usize>, Vec<i64>)> {
    let (kept, labels) =
        crate::data::confident_predictions(fp_outs, aa.annotation_output, aa.annotation_conf_threshold)?;
    if kept.is_empty() {
        return Err(Error::invalid(format!(
            "annotation-free: no evaluation sample has an FP32 confidence above {}; lower \
             annotation_conf_threshold or give more evaluation data",
            aa.annotation_conf_threshold
        )));
    }
    hooks.log(
        LogLevel::Info,
        &format!(
            "annotation-free: {} of {} evaluation samples have an FP32 confidence above {}; the metric is \
             top-1 agreement with FP32 on them",
            kept.len(),
            total,
            aa.annotation_conf_threshold
        ),
    );
    Ok((kept, labels))
}

/// The quantization the reverts start from, and its evaluation.
struct Start {
    q: Quantized,
    metric: f64,
    outs: Vec<Vec<Tensor>>,
    per: Option<Vec<f64>>,
}

/// What quantizing again with other settings needs, to find a better start.
struct Requant<'a> {
    model: &'a Model,
    calib: &'a dyn Dataset,
    eval: &'a dyn Dataset,
    all: &'a [usize],
    /// The settings the run was asked for.
    config: &'a QuantConfig,
    allowed: f64,
    drop: &'a dyn Fn(f64) -> f64,
}

impl Requant<'_> {
    fn requantize(
        &self,
        config: &QuantConfig,
        metric: &mut dyn Metric,
        hooks: &mut Hooks,
    ) -> Result<(Quantized, Evaluated)> {
        quantize_and_evaluate(self.model, config, self.calib, self.eval, self.all, metric, hooks)
    }

    /// Before reverting layers, other settings POT and ovpot try when the drop is too large
    /// (mixed preset, saturating layers judged one by one, tune_hyperparams); `start` becomes the
    /// best model. Returns the inferences run.
    fn better_starts(&self, start: &mut Start, metric: &mut dyn Metric, hooks: &mut Hooks) -> Result<usize> {
        let drop = self.drop;
        let aa = &self.config.accuracy_aware;
        let mut inferences = 0;
        // POT's convert_to_mixed_preset: before reverting layers of a performance-preset model, try
        // asymmetric activations (the mixed preset) and go on from whichever model drops less.
        if drop(start.metric) > self.allowed
            && aa.convert_to_mixed_preset
            && self.config.effective_preset() == Preset::Performance
        {
            let mixed = QuantConfig { preset: Some(Preset::Mixed), ..self.config.clone() };
            hooks.log(LogLevel::Info, "convert_to_mixed_preset: quantizing again with the mixed preset");
            let (qm, (m, outs, per)) = self.requantize(&mixed, metric, hooks)?;
            inferences += self.eval.len();
            let better = drop(m) <= drop(start.metric);
            hooks.log(
                LogLevel::Info,
                &format!(
                    "mixed preset INT8 metric: {m:.5} (drop {:.5}); going on from the {} preset",
                    drop(m),
                    if better { "mixed" } else { "performance" }
                ),
            );
            if better {
                *start = Start { q: qm, metric: m, outs, per };
            }
        }
        // Without VNNI, `saturation_fix: auto` judges the layers left saturating by the model's
        // output (SQNR); when that gave them 7-bit weights, the metric judges again: the model with
        // each layer decided by its own measurement, and the run goes on from the better one.
        if drop(start.metric) > self.allowed && group_went_7bit(&start.q) {
            let per_layer = QuantConfig { saturation_fix: SaturationFix::PerLayer, ..start.q.config.clone() };
            hooks.log(LogLevel::Info, "saturation fix: quantizing again with the saturating layers judged one by one");
            let (qp, (m, outs, per)) = self.requantize(&per_layer, metric, hooks)?;
            inferences += self.eval.len();
            let better = drop(m) < drop(start.metric);
            hooks.log(
                LogLevel::Info,
                &format!(
                    "saturating layers judged one by one: INT8 metric {m:.5} (drop {:.5}); going on from {}",
                    drop(m),
                    if better { "that model" } else { "the output's choice" }
                ),
            );
            if better {
                *start = Start { q: qp, metric: m, outs, per };
            }
        }
        // POT's tune_hyperparams: before reverting layers, a grid over range-estimator settings,
        // then fast vs full bias correction with the best; the run goes on from the best model.
        if drop(start.metric) > self.allowed && aa.tune_hyperparams {
            let mut best: Option<QuantConfig> = None;
            let grid = tuning_grid(&start.q.config);
            let total = grid.len() + 1;
            for (k, (label, cand)) in grid.into_iter().enumerate() {
                hooks.progress(Stage::Evaluation, k, total)?;
                let (qc, (m, outs, per)) = self.requantize(&cand, metric, hooks)?;
                inferences += self.eval.len();
                hooks.log(LogLevel::Info, &format!("tune_hyperparams: {label} → metric {m:.5} (drop {:.5})", drop(m)));
                if drop(m) < drop(start.metric) {
                    *start = Start { q: qc, metric: m, outs, per };
                    best = Some(cand);
                }
            }
            let base = best.unwrap_or_else(|| start.q.config.clone());
            let flipped = QuantConfig { use_fast_bias: !base.use_fast_bias, ..base };
            let (qc, (m, outs, per)) = self.requantize(&flipped, metric, hooks)?;
            inferences += self.eval.len();
            let what = if flipped.use_fast_bias { "fast" } else { "full" };
            hooks.log(
                LogLevel::Info,
                &format!("tune_hyperparams: {what} bias correction → metric {m:.5} (drop {:.5})", drop(m)),
            );
            if drop(m) < drop(start.metric) {
                *start = Start { q: qc, metric: m, outs, per };
            }
            hooks.log(LogLevel::Info, &format!("tune_hyperparams: going on from metric {:.5}", start.metric));
        }
        Ok(inferences)
    }
}

/// Says how candidates are judged where the built-in engine emulates OpenVINO's CPU plugin.
fn log_emulation(q: &Quantized, hooks: &mut Hooks) -> Result<()> {
    if emulates_cpu_plugin(&q.config) && !q.verdicts.computes_int8_natively() {
        let mut g = q.materialize(&HashSet::new())?;
        let e = q.verdicts.as_target(&mut g);
        if !e.saturating.is_empty() {
            hooks.log(
                LogLevel::Info,
                &format!(
                    "judging candidates with the 16-bit pair saturation of a CPU without VNNI in {} int8 layer(s)",
                    e.saturating.len()
                ),
            );
        }
        let unrounded = e.unrounded;
        if !unrounded.is_empty() {
            hooks.log(
                LogLevel::Info,
                &format!(
                    "judging candidates as OpenVINO's CPU plugin runs them: {} FakeQuantize(s) before a fused \
                     residual Add clamp without rounding ({})",
                    unrounded.len(),
                    unrounded.join(", ")
                ),
            );
        }
    }
    Ok(())
}

/// Where the reverts stand: the ops in floating point, the metric and drop they give.
struct Reverts {
    reverted: HashSet<NodeId>,
    metric: f64,
    drop: f64,
    report: Vec<RevertedLayer>,
    iterations: usize,
}

/// The evaluation samples ranking runs on: those that degrade most.
fn ranking_subset_of(
    ctx: &Ctx,
    q_outs: &[Vec<Tensor>],
    fp_per: Option<&[f64]>,
    q_per: Option<&[f64]>,
    aa: &super::config::AccuracyAwareConfig,
) -> Vec<usize> {
    let k = ((ctx.all.len() as f64 * aa.metric_subset_ratio).ceil() as usize).clamp(1, aa.ranking_subset_size.max(1));
    ranking_subset(&ctx.fp_outs, q_outs, fp_per, q_per, k, ctx.higher_is_better)
}

/// Reverts the groups that hurt most, re-ranking every few reverts, until the drop is allowed,
/// the groups run out or `max_iter_num` is reached.
fn revert_until_reached(
    ctx: &mut Ctx,
    mut st: Reverts,
    subset: &[usize],
    allowed: f64,
    by_metric: bool,
    metric: &mut dyn Metric,
    hooks: &mut Hooks,
) -> Result<Reverts> {
    let aa = &ctx.config.accuracy_aware;
    let q = ctx.q;
    let names = |ops: &[NodeId]| -> String {
        ops.iter().map(|&o| q.fp_graph.nodes[o].name.clone()).collect::<Vec<_>>().join(" + ")
    };
    let mut remaining: Vec<Vec<NodeId>> = q.revert_groups();
    let total_groups = remaining.len();
    let mut ranked: Vec<usize> = vec![];
    let mut since_rank = usize::MAX;
    while st.drop > allowed && !remaining.is_empty() && st.iterations < aa.max_iter_num {
        if since_rank >= 4 || ranked.is_empty() {
            let by_metric = if by_metric { Some(&mut *metric) } else { None };
            ranked = rank(ctx, &st.reverted, &remaining, subset, by_metric, hooks)?;
            if let Some(share) = ctx.ranking_share.last() {
                hooks.log(
                    LogLevel::Debug,
                    &format!(
                        "ranked {} group(s) on {} sample(s), each running {:.0}% of the model's ops",
                        remaining.len(),
                        subset.len(),
                        share * 100.0
                    ),
                );
            }
            since_rank = 0;
        }
        let gi = ranked.remove(0);
        st.iterations += 1;
        let group = remaining[gi].clone();
        let mut trial = st.reverted.clone();
        trial.extend(group.iter().copied());
        let (m, _, _) = ctx.metric_of(&trial, metric, hooks)?;
        let d = ctx.drop_of(m);
        hooks.log(
            LogLevel::Info,
            &format!("iteration {}: reverting {} → metric {m:.5} (drop {d:.5})", st.iterations, names(&group)),
        );
        hooks.progress(Stage::AccuracyAware, st.iterations, total_groups.min(aa.max_iter_num))?;
        // Drop this candidate from the pool either way; indices in `ranked` shift past it.
        remaining.remove(gi);
        for r in &mut ranked {
            if *r > gi {
                *r -= 1;
            }
        }
        if d > st.drop && aa.use_prev_if_drop_increase {
            hooks.log(LogLevel::Info, "the drop grew; keeping the previous model");
            continue;
        }
        st.reverted = trial;
        st.drop = d;
        st.metric = m;
        since_rank += 1;
        st.report.push(RevertedLayer { name: names(&group), metric_after: m });
    }
    Ok(st)
}

/// The report of the model returned: quantizers and layers of reverted groups go.
/// `fake_quantize` lists the activation quantizers, then the weight quantizers, in setup order;
/// an activation quantizer goes when any op it feeds is reverted (as in materialize).
fn report_of_returned(q: &Quantized, reverted: &HashSet<NodeId>) -> crate::report::Report {
    let mut report = q.report.clone();
    report.algorithm = "AccuracyAware".into();
    if !emulates_cpu_plugin(&q.config) {
        report.judge = super::judge::describe(&q.verdicts.without_emulation(), &q.isa);
    }
    let reverted_names: HashSet<&str> = reverted.iter().map(|&o| q.fp_graph.nodes[o].name.as_str()).collect();
    report.layers.retain(|l| !reverted_names.contains(l.layer.as_str()));
    let kept: Vec<bool> = q
        .setup
        .activations
        .iter()
        .map(|p| !p.targets.iter().any(|t| reverted.contains(t)))
        .chain(q.setup.weights.iter().map(|w| !reverted.contains(&w.op)))
        .collect();
    if kept.len() == report.fake_quantize.len() {
        let mut keep = kept.into_iter();
        report.fake_quantize.retain(|_| keep.next().unwrap_or(true));
    }
    let reverted_names: HashSet<&str> = reverted.iter().map(|&o| q.fp_graph.nodes[o].name.as_str()).collect();
    report.quantized_layers.retain(|l| !reverted_names.contains(l.as_str()));
    report
}

/// The share of weighted layers (Gather excluded) left in int8.
fn int8_share(q: &Quantized, reverted: &HashSet<NodeId>) -> f64 {
    let weighted: Vec<NodeId> =
        q.setup.weights.iter().filter(|w| q.fp_graph.nodes[w.op].op_type != "Gather").map(|w| w.op).collect();
    let kept = weighted.iter().filter(|o| !reverted.contains(o)).count();
    if weighted.is_empty() {
        1.0
    } else {
        kept as f64 / weighted.len() as f64
    }
}

/// Whether `saturation_fix: auto`'s output check gave 7-bit weights to the layers the local
/// measure had left saturating.
fn group_went_7bit(q: &Quantized) -> bool {
    q.config.saturation_fix == SaturationFix::Auto
        && q.report.int8_arithmetic.as_ref().is_some_and(|a| {
            a.output_checks.iter().any(|c| c.group == super::saturation::SATURATING_GROUP && c.seven_bit)
        })
}

/// A candidate's metric on `subset`, oriented so that higher is better (0 without a metric:
/// ranking by output error alone).
fn ranking_score(
    metric: Option<&mut (dyn Metric + '_)>,
    outs: &[Vec<Tensor>],
    subset: &[usize],
    higher_is_better: bool,
) -> Result<f64> {
    let Some(m) = metric else { return Ok(0.0) };
    m.reset();
    for (o, &i) in outs.iter().zip(subset) {
        m.update(i, o)?;
    }
    let v = m.value()?;
    Ok(if higher_is_better { v } else { -v })
}
