//! Per-layer quantization analysis ([`crate::analysis`]): one quantization, then named steps —
//! the model's outputs in FP32 and fully quantized, each layer group quantized alone and
//! reverted alone (candidates run from the values they share with a base run, [`FrontierRun`]),
//! the activation ranges against the values seen, the weights' error per channel, and the
//! smallest ignored scope reaching a target, checked by quantizing with it.

use super::config::QuantConfig;
use super::frontier::FrontierRun;
use super::judge::emulates_cpu_plugin;
use super::quantized::Quantized;
use super::quantizer_facts::{activation_ranges, weight_errors};
use crate::analysis::{is_int8_kernel, sqnr_db, Analysis, LayerAnalysis, RuntimeNode, RuntimeProfile, Suggestion};
use crate::backend::Backend;
use crate::data::{Dataset, Sample};
use crate::engine::{NoObserver, Plan};
use crate::error::{Error, Result};
use crate::graph::{Graph, NodeId};
use crate::hooks::{Hooks, LogLevel, Stage};
use crate::model::Model;
use crate::tensor::Tensor;
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};
use std::time::Instant;

/// What to analyse beyond the quantization settings.
#[derive(Clone, Debug)]
pub struct AnalysisOptions {
    /// Evaluation samples every SQNR is measured on (the first ones of the evaluation data);
    /// `None`: [`auto_samples`] of the model's output size.
    pub samples: Option<usize>,
    /// The output SQNR (dB) the suggested ignored scope must reach; `None`: the fully
    /// quantized model's SQNR + 3 dB (half its output noise).
    pub target_sqnr_db: Option<f64>,
    /// Largest ignored scope tried, in groups.
    pub max_ignored: usize,
}

impl Default for AnalysisOptions {
    fn default() -> Self {
        AnalysisOptions { samples: None, target_sqnr_db: None, max_ignored: 32 }
    }
}

/// Analyses quantizing `model` with `config`: statistics on `calib`, every SQNR on the first
/// `options.samples` samples of `eval`.
pub fn analyze(
    model: &Model,
    config: &QuantConfig,
    calib: &dyn Dataset,
    eval: &dyn Dataset,
    options: &AnalysisOptions,
    hooks: &mut Hooks,
) -> Result<Analysis> {
    if eval.is_empty() || options.samples == Some(0) {
        return Err(Error::invalid("the evaluation data is empty: the analysis needs samples to measure on"));
    }
    let mut timings = vec![];
    let t = Instant::now();
    let q = super::prepare(model, config, calib, hooks)?;
    timings.push(("quantization".to_string(), t.elapsed().as_secs_f64()));

    let t = Instant::now();
    let fp = Plan::new(model.graph())?;
    let first = eval.get(0).map_err(|e| e.with_sample("evaluation", 0))?;
    let first_outs = fp.run(&first)?;
    let n = match options.samples {
        Some(n) => n,
        None => auto_samples(first_outs.iter().map(|t| t.len()).sum()),
    }
    .min(eval.len());
    // The suggested scope is chosen on the first `n` samples and checked on more: a scope that
    // only fixes a few samples among them would not hold on the rest.
    let m = check_samples(n, eval.len());
    hooks.log(LogLevel::Info, &format!("output SQNRs on {n} evaluation samples (the suggestion checked on {m})"));
    let all_inputs: Vec<Sample> = std::iter::once(Ok(first))
        .chain((1..m).map(|i| eval.get(i).map_err(|e| e.with_sample("evaluation", i))))
        .collect::<Result<_>>()?;
    let all_fp_outs: Vec<Vec<Tensor>> = std::iter::once(Ok(first_outs))
        .chain(all_inputs[1..].par_iter().map(|s| fp.run(s)).collect::<Vec<_>>())
        .collect::<Result<_>>()?;
    let (inputs, fp_outs) = (&all_inputs[..n], &all_fp_outs[..n]);
    let signal: f64 = fp_outs.iter().map(|o| energy(o)).sum();
    let judge = &Scorer { q: &q, inputs, fp_outs, signal };
    let check = Scorer {
        q: &q,
        inputs: &all_inputs,
        fp_outs: &all_fp_outs,
        signal: all_fp_outs.iter().map(|o| energy(o)).sum(),
    };
    let none = HashSet::new();
    let model_sqnr = sqnr_db(signal, judge.noises(&judged(&q, &none)?)?.iter().sum());
    let checked_sqnr = sqnr_db(check.signal, check.verdict_noises(&q, q.materialize(&none)?)?.iter().sum());
    hooks.log(LogLevel::Info, &format!("output SQNR with every layer quantized: {model_sqnr:.2} dB"));
    timings.push(("fp32 and int8 outputs".to_string(), t.elapsed().as_secs_f64()));

    let groups = q.revert_groups();
    let t = Instant::now();
    let reverted = judge.revert_each(&groups, hooks)?;
    let only = judge.quantize_each(&groups, hooks)?;
    timings.push(("layer by layer".to_string(), t.elapsed().as_secs_f64()));

    let t = Instant::now();
    let ranges = activation_ranges(&q, inputs, true)?;
    let weights = weight_errors(&q);
    timings.push(("ranges and weights".to_string(), t.elapsed().as_secs_f64()));

    let mut layers: Vec<LayerAnalysis> = groups
        .iter()
        .enumerate()
        .map(|(j, group)| {
            let members: HashSet<NodeId> = group.iter().copied().collect();
            LayerAnalysis {
                layers: group.iter().map(|&o| q.fp_graph.nodes[o].name.clone()).collect(),
                op_types: group.iter().map(|&o| q.fp_graph.nodes[o].op_type.clone()).collect(),
                only_this_sqnr_db: only[j],
                reverted_sqnr_db: reverted[j],
                revert_gain_db: reverted[j] - model_sqnr,
                activations: ranges
                    .iter()
                    .filter(|(targets, _)| targets.iter().any(|t| members.contains(t)))
                    .map(|(_, r)| r.clone())
                    .collect(),
                weights: weights.iter().filter(|(op, _)| members.contains(op)).map(|(_, w)| w.clone()).collect(),
                runs_int8: None,
            }
        })
        .collect();
    layers.sort_by(|a, b| b.revert_gain_db.total_cmp(&a.revert_gain_db));

    let t = Instant::now();
    let runtime = runtime_profile(model, &q, &inputs[0], hooks)?;
    if let Some(r) = &runtime {
        // The plugin names a node after its layer, or after the layer and what it fused in
        // ("<MatMul>/DequantizationMultiply").
        let of_layer = |node: &str, layer: &str| {
            node == layer || node.strip_prefix(layer).is_some_and(|rest| rest.starts_with('/'))
        };
        for l in &mut layers {
            let seen: Vec<bool> = r
                .nodes
                .iter()
                .filter(|n| l.layers.iter().any(|layer| of_layer(&n.name, layer)))
                .map(|n| n.int8)
                .collect();
            l.runs_int8 = (!seen.is_empty()).then(|| seen.iter().any(|&b| b));
        }
        timings.push(("runtime profile".to_string(), t.elapsed().as_secs_f64()));
    }

    let t = Instant::now();
    let target = options.target_sqnr_db.unwrap_or(checked_sqnr + 3.0);
    let limits = Target { sqnr_db: target, max_ignored: options.max_ignored };
    let scorers = Scorers { chosen_on: judge, checked_on: &check, checked_sqnr };
    let suggestion = suggest(model, config, calib, scorers, &layers, limits, hooks)?;
    timings.push(("suggested ignored scope".to_string(), t.elapsed().as_secs_f64()));
    Ok(Analysis {
        model: model.graph().name.clone(),
        judge: super::judge::describe(&judge_backend(&q), &q.isa),
        samples: n,
        sqnr_db: model_sqnr,
        layers,
        suggestion,
        runtime,
        timings,
    })
}

/// Output values the automatic sample count aims at: an SQNR is a ratio of sums over output
/// values, and past some ten thousand it settles (mobilenet_v2, 1000 logits a sample: the three
/// most harmful groups and their order were the same on 16, 32 and 128 samples).
const AUTO_OUTPUT_VALUES: usize = 16 * 1024;

/// How many evaluation samples the analysis measures on when not told: enough for
/// [`AUTO_OUTPUT_VALUES`] output values, at least 16 and at most 256 (a two-class classifier
/// gives two values a sample, and its SQNR hangs on the few samples near the boundary).
pub fn auto_samples(output_values_per_sample: usize) -> usize {
    AUTO_OUTPUT_VALUES.div_ceil(output_values_per_sample.max(1)).clamp(16, 256)
}

/// Runs per profile of a model in the runtime.
const PROFILE_RUNS: usize = 20;

/// With the OpenVINO backend: the FP32 and the INT8 model as the runtime runs them on `sample`.
fn runtime_profile(model: &Model, q: &Quantized, sample: &Sample, hooks: &mut Hooks) -> Result<Option<RuntimeProfile>> {
    if !q.backend.times_as_deployed() {
        return Ok(None);
    }
    let threads = q.config.threads;
    let Some(fp32) = q.backend.profile(model.graph(), sample, PROFILE_RUNS, threads)? else { return Ok(None) };
    let int8_graph = q.materialize(&HashSet::new())?;
    let Some(int8) = q.backend.profile(&int8_graph, sample, PROFILE_RUNS, threads)? else { return Ok(None) };
    let fp: HashMap<&str, &crate::backend::openvino::ProfiledNode> =
        fp32.iter().map(|n| (n.name.as_str(), n)).collect();
    let mut nodes: Vec<RuntimeNode> = int8
        .iter()
        .map(|n| RuntimeNode {
            name: n.name.clone(),
            node_type: n.node_type.clone(),
            exec_type: n.exec_type.clone(),
            int8: is_int8_kernel(&n.exec_type),
            int8_us: n.time_us,
            fp32_exec_type: fp.get(n.name.as_str()).map(|f| f.exec_type.clone()),
            fp32_us: fp.get(n.name.as_str()).map(|f| f.time_us),
        })
        .collect();
    nodes.sort_by(|a, b| b.int8_us.total_cmp(&a.int8_us));
    let ms = |v: &[crate::backend::openvino::ProfiledNode]| v.iter().map(|n| n.time_us).sum::<f64>() / 1e3;
    let profile = RuntimeProfile { runtime: q.backend.describe(), fp32_ms: ms(&fp32), int8_ms: ms(&int8), nodes };
    hooks.log(
        LogLevel::Info,
        &format!(
            "{}: {:.3} ms FP32, {:.3} ms INT8 per inference (performance counters); {} of {} nodes run int8 kernels",
            profile.runtime,
            profile.fp32_ms,
            profile.int8_ms,
            profile.nodes.iter().filter(|n| n.int8).count(),
            profile.nodes.len()
        ),
    );
    Ok(Some(profile))
}

/// The built-in engine computing as the target CPU does (where accuracy-aware quantization
/// would judge that way), whatever backend ran the statistics: the analysis runs hundreds of
/// variants from shared values, which only the built-in engine can.
fn judge_backend(q: &Quantized) -> Backend {
    if emulates_cpu_plugin(&q.config) {
        Backend::builtin().emulating(q.isa.arithmetic)
    } else {
        Backend::builtin()
    }
}

/// The quantized graph with `reverted` left in floating point, as the judge computes it.
fn judged(q: &Quantized, reverted: &HashSet<NodeId>) -> Result<Graph> {
    let mut g = q.materialize(reverted)?;
    judge_backend(q).as_target(&mut g);
    Ok(g)
}

/// Summed squares of a sample's outputs.
fn energy(outputs: &[Tensor]) -> f64 {
    outputs.iter().map(|t| t.to_f32().iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>()).sum()
}

/// Summed squared differences of a sample's outputs from FP32's.
fn noise(fp: &[Tensor], q: &[Tensor]) -> f64 {
    fp.iter()
        .zip(q)
        .map(|(a, b)| a.to_f32().iter().zip(b.to_f32().iter()).map(|(&x, &y)| ((x - y) as f64).powi(2)).sum::<f64>())
        .sum()
}

/// Scores variants of a quantization by their output SQNR against the FP32 outputs.
struct Scorer<'a> {
    q: &'a Quantized,
    inputs: &'a [Sample],
    fp_outs: &'a [Vec<Tensor>],
    signal: f64,
}

impl Scorer<'_> {
    /// Each sample's output noise of `graph` (a whole run on the built-in engine).
    fn noises(&self, graph: &Graph) -> Result<Vec<f64>> {
        let plan = Plan::new(graph)?;
        self.inputs.par_iter().zip(self.fp_outs).map(|(s, f)| Ok(noise(f, &plan.run(s)?))).collect()
    }

    /// Each sample's output noise of `graph`, an INT8 graph of `q`, computed by `q`'s verdict
    /// backend as the target computes it: OpenVINO where it computes the target's arithmetic
    /// here (the exact judge), else the built-in engine emulating it.
    fn verdict_noises(&self, q: &Quantized, graph: Graph) -> Result<Vec<f64>> {
        let exec = q.judge(graph, true)?;
        exec.in_flight(|| {
            self.inputs
                .par_iter()
                .zip(self.fp_outs)
                .map(|(s, f)| Ok(noise(f, &exec.run(s, &mut NoObserver)?)))
                .collect()
        })
    }

    /// Output SQNR of each candidate (`ops_reverted(j)` left in FP32), run from `base_reverted`'s
    /// values.
    fn sqnr_of(
        &self,
        base_reverted: &HashSet<NodeId>,
        count: usize,
        reverted_of: impl Fn(usize) -> HashSet<NodeId> + Sync,
        hooks: &mut Hooks,
    ) -> Result<Vec<f64>> {
        let q = self.q;
        let base = judged(q, base_reverted)?;
        let run = FrontierRun::new(&base, self.inputs)?;
        let mut out = vec![f64::NAN; count];
        let mut done = 0;
        run.run(
            count,
            |j| judged(q, &reverted_of(j)),
            |_, k, outputs| Ok(noise(&self.fp_outs[k], &outputs)),
            |j, batches| {
                out[j] = sqnr_db(self.signal, batches.iter().flatten().sum());
                done += 1;
                hooks.progress(Stage::Ranking, done, count)
            },
        )?;
        Ok(out)
    }

    /// Output SQNR with everything quantized but group `j`, for each group.
    fn revert_each(&self, groups: &[Vec<NodeId>], hooks: &mut Hooks) -> Result<Vec<f64>> {
        self.sqnr_of(&HashSet::new(), groups.len(), |j| groups[j].iter().copied().collect(), hooks)
    }

    /// Output SQNR with only group `j` quantized, for each group.
    fn quantize_each(&self, groups: &[Vec<NodeId>], hooks: &mut Hooks) -> Result<Vec<f64>> {
        let all: HashSet<NodeId> = groups.iter().flatten().copied().collect();
        let all_but = |j: usize| {
            let mut r = all.clone();
            groups[j].iter().for_each(|o| {
                r.remove(o);
            });
            r
        };
        self.sqnr_of(&all, groups.len(), all_but, hooks)
    }
}

/// What the suggested ignored scope must reach, and its largest size in groups.
#[derive(Clone, Copy)]
struct Target {
    sqnr_db: f64,
    max_ignored: usize,
}

/// The samples a scope is chosen on, those it is checked on (the first ones and more), and the
/// fully quantized model's SQNR on the latter.
struct Scorers<'a, 'b> {
    chosen_on: &'a Scorer<'b>,
    checked_on: &'a Scorer<'b>,
    checked_sqnr: f64,
}

/// The smallest prefix of the most harmful groups whose revert reaches the target: predicted
/// from the analysed quantization by bisection on the prefix length, then checked by quantizing
/// with it as the ignored scope (from the analysed quantization's statistics) on the check
/// samples; a prefix that falls short there gives way to a longer one, by bisection again.
fn suggest(
    model: &Model,
    config: &QuantConfig,
    calib: &dyn Dataset,
    scorers: Scorers<'_, '_>,
    layers: &[LayerAnalysis],
    target: Target,
    hooks: &mut Hooks,
) -> Result<Option<Suggestion>> {
    let Scorers { chosen_on: judge, checked_on, checked_sqnr } = scorers;
    let q = judge.q;
    if checked_sqnr >= target.sqnr_db {
        hooks.log(
            LogLevel::Info,
            &format!(
                "the fully quantized model reaches the target ({checked_sqnr:.2} dB >= {:.2} dB): nothing to ignore",
                target.sqnr_db
            ),
        );
        return Ok(None);
    }
    let helpful: Vec<&LayerAnalysis> =
        layers.iter().filter(|l| l.revert_gain_db > 0.0).take(target.max_ignored).collect();
    if helpful.is_empty() {
        return Ok(None);
    }
    let by_name: HashMap<&str, NodeId> =
        q.fp_graph.nodes.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();
    let names = |k: usize| -> Vec<String> { helpful[..k].iter().flat_map(|l| l.layers.iter().cloned()).collect() };
    let prefix =
        |k: usize| -> HashSet<NodeId> { names(k).iter().filter_map(|n| by_name.get(n.as_str()).copied()).collect() };
    let none = HashSet::new();
    let mut predicted: HashMap<usize, f64> = HashMap::new();
    let mut predict = |k: usize, hooks: &mut Hooks| -> Result<bool> {
        let s = match predicted.get(&k) {
            Some(&s) => s,
            None => judge.sqnr_of(&none, 1, |_| prefix(k), hooks)?[0],
        };
        predicted.insert(k, s);
        Ok(s >= target.sqnr_db)
    };
    let k = smallest_reaching(0, helpful.len(), &mut |k| predict(k, hooks))?;
    let mut measured: HashMap<usize, f64> = HashMap::new();
    let mut check = |k: usize, hooks: &mut Hooks| -> Result<bool> {
        let s = match measured.get(&k) {
            Some(&s) => s,
            None => {
                let mut with_scope = config.clone();
                with_scope.ignored.names.extend(names(k));
                hooks.log(LogLevel::Info, &format!("checking an ignored scope of {} groups by quantizing with it", k));
                let checked = super::prepare_from(model, &with_scope, calib, Some(q), hooks)?;
                sqnr_db(
                    checked_on.signal,
                    checked_on.verdict_noises(&checked, checked.materialize(&none)?)?.iter().sum(),
                )
            }
        };
        measured.insert(k, s);
        Ok(s >= target.sqnr_db)
    };
    let k = if check(k, hooks)? { k } else { smallest_reaching(k, helpful.len(), &mut |k| check(k, hooks))? };
    // Not reached even with every helpful group: the prefix measured best.
    let k = if measured[&k] >= target.sqnr_db {
        k
    } else {
        measured.iter().max_by(|a, b| a.1.total_cmp(b.1)).map_or(k, |(&k, _)| k)
    };
    let predicted_sqnr = match predicted.get(&k) {
        Some(&s) => s,
        None => judge.sqnr_of(&none, 1, |_| prefix(k), hooks)?[0],
    };
    Ok(Some(Suggestion {
        target_sqnr_db: target.sqnr_db,
        ignored: names(k),
        predicted_sqnr_db: predicted_sqnr,
        measured_sqnr_db: measured[&k],
        reached: measured[&k] >= target.sqnr_db,
        samples: checked_on.inputs.len(),
        quantized_sqnr_db: checked_sqnr,
        judge: super::judge::describe(&q.verdicts, &q.isa),
    }))
}

/// The smallest `k` in `(lo, hi]` for which `reaches(k)`, assuming it holds from some `k` on
/// (`hi` when it does not hold at `hi` either).
fn smallest_reaching(lo: usize, hi: usize, reaches: &mut dyn FnMut(usize) -> Result<bool>) -> Result<usize> {
    if lo >= hi || !reaches(hi)? {
        return Ok(hi.max(lo));
    }
    let (mut lo, mut hi) = (lo, hi);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if reaches(mid)? {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(hi)
}

/// How many evaluation samples a suggested scope is checked on: four times those it was chosen
/// on, at most 512, and never fewer.
fn check_samples(chosen_on: usize, available: usize) -> usize {
    (chosen_on * 4).min(512).max(chosen_on).min(available)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bisection_finds_the_first_prefix_that_reaches() {
        for first in 1..=9 {
            let mut calls = 0;
            let k = smallest_reaching(0, 9, &mut |k| {
                calls += 1;
                Ok(k >= first)
            })
            .unwrap();
            assert_eq!(k, first);
            assert!(calls <= 5, "{calls} calls");
        }
        assert_eq!(smallest_reaching(0, 9, &mut |_| Ok(false)).unwrap(), 9);
        assert_eq!(smallest_reaching(4, 9, &mut |k| Ok(k >= 2)).unwrap(), 5);
        assert_eq!(smallest_reaching(9, 9, &mut |_| Ok(true)).unwrap(), 9);
    }

    #[test]
    fn scopes_are_checked_on_more_samples_than_they_are_chosen_on() {
        assert_eq!(check_samples(128, 200), 200);
        assert_eq!(check_samples(16, 200), 64);
        assert_eq!(check_samples(200, 1000), 512);
        assert_eq!(check_samples(600, 1000), 600);
        assert_eq!(check_samples(8, 8), 8);
    }
}
