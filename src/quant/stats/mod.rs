//! Statistics over calibration samples, gathered in one engine pass with the observer hook.
//! Samples run in parallel in fixed chunks whose partial results are combined in chunk order,
//! so the numbers are the same at any thread count. Memory is bounded by the estimators: a few
//! scalars per sample and point, one accumulator per channel.

use crate::data::Dataset;

use crate::backend::{Backend, Executable};
use crate::engine::{NoObserver, Plan};
use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::graph::Outlet;
use crate::hooks::{Hooks, Stage};
use crate::tensor::Tensor;
use rayon::prelude::*;
use std::collections::HashMap;

/// Samples per chunk; chunks are the unit of parallel work and of deterministic reduction.
const CHUNK: usize = 4;

mod inplace;
mod summary;

pub(crate) use summary::sorted_quantile;
pub use summary::{targets, ChannelRange, Collected, Request, SampleScalars};
use summary::{Partial, Requested};

/// A statistics pass's results with what it measured: a later quantization of the same model on
/// the same samples that asks for no more (an ignored scope tried by the analysis) reads them
/// instead of running the model again.
pub struct Statistics {
    n: usize,
    requests: HashMap<Outlet, Vec<Request>>,
    pub collected: std::sync::Arc<Collected>,
}

impl Statistics {
    pub fn new(n: usize, requests: HashMap<Outlet, Vec<Request>>, collected: Collected) -> Statistics {
        Statistics { n, requests, collected: std::sync::Arc::new(collected) }
    }

    /// Whether these statistics answer `requests` on the first `n` samples.
    pub fn covers(&self, n: usize, requests: &HashMap<Outlet, Vec<Request>>) -> bool {
        n == self.n
            && requests
                .iter()
                .all(|(o, wanted)| self.requests.get(o).is_some_and(|had| wanted.iter().all(|r| had.contains(r))))
    }
}

/// One statistics pass: the first `n` samples of `data`, what to collect where, and the stage
/// its progress is reported as.
pub struct Pass<'a> {
    pub data: &'a dyn Dataset,
    pub n: usize,
    pub requests: &'a HashMap<Outlet, Vec<Request>>,
    pub stage: Stage,
}

/// Collects `pass` on `graph` where `backend` runs: a backend that observes inner tensors sees
/// them as it computes them (reusing `plan` when given); another runs the graph with the
/// reductions appended ([`inplace`]).
pub fn collect_on(
    backend: &Backend,
    graph: &Graph,
    plan: Option<Plan>,
    threads: usize,
    pass: Pass,
    hooks: &mut Hooks,
) -> Result<Collected> {
    let Pass { data, n, requests, stage } = pass;
    if backend.observes_inner_tensors() {
        let plan = match plan {
            Some(p) => p,
            None => Plan::new(graph)?,
        };
        let exec = backend.compile_plan(plan, &targets(requests), threads)?;
        return collect(&exec, data, n, requests, hooks, stage);
    }
    drop(plan);
    let red = inplace::Reductions::new(graph, requests)?;
    let exec = backend.compile(&red.graph, &red.targets, threads)?;
    run_samples(&exec, Some(&red), data, n, requests, hooks, stage)
}

/// Runs `exec` (compiled with [`targets`] of `requests`) on the first `n` samples and collects
/// the requested statistics.
pub fn collect(
    exec: &Executable,
    data: &dyn Dataset,
    n: usize,
    requests: &HashMap<Outlet, Vec<Request>>,
    hooks: &mut Hooks,
    stage: Stage,
) -> Result<Collected> {
    run_samples(exec, None, data, n, requests, hooks, stage)
}

fn run_samples(
    exec: &Executable,
    reductions: Option<&inplace::Reductions>,
    data: &dyn Dataset,
    n: usize,
    requests: &HashMap<Outlet, Vec<Request>>,
    hooks: &mut Hooks,
    stage: Stage,
) -> Result<Collected> {
    if n == 0 {
        return Err(Error::invalid("the calibration dataset is empty"));
    }
    let graph = exec.graph();
    let name = |o: Outlet| {
        let node = &graph.nodes[o.node];
        node.outputs
            .get(o.port)
            .and_then(|p| p.names.first().cloned())
            .unwrap_or_else(|| format!("{}:{}", node.name, o.port))
    };
    let parameters: HashMap<String, Outlet> =
        graph.parameters().into_iter().map(|p| (graph.parameter_name(p).to_string(), Outlet::new(p, 0))).collect();
    let runner = SampleRunner { exec, reductions, data, requests, parameters };
    let chunks: Vec<(usize, usize)> = (0..n).step_by(CHUNK).map(|s| (s, (s + CHUNK).min(n))).collect();
    let wave = (exec.in_flight(rayon::current_num_threads) * 2).max(1);
    let mut total = Partial::default();
    hooks.progress(stage, 0, n)?;
    for wave_chunks in chunks.chunks(wave) {
        let partials: Vec<Result<Partial>> =
            exec.in_flight(|| wave_chunks.par_iter().map(|&(s, e)| runner.run_chunk(s, e, &name)).collect());
        for p in partials {
            total.merge(p?);
        }
        let done = wave_chunks.last().map_or(0, |c| c.1);
        hooks.progress(stage, done, n)?;
    }
    Ok(total.into_collected(n))
}

/// What every chunk of calibration samples runs with: the executable, the reductions appended
/// to its graph (OpenVINO), the samples, the requests, and the graph's inputs by name.
struct SampleRunner<'a> {
    exec: &'a Executable,
    reductions: Option<&'a inplace::Reductions>,
    data: &'a dyn Dataset,
    requests: &'a HashMap<Outlet, Vec<Request>>,
    parameters: HashMap<String, Outlet>,
}

impl SampleRunner<'_> {
    /// The statistics of samples `s..e`; `name` names a tensor in error messages.
    fn run_chunk(&self, s: usize, e: usize, name: &dyn Fn(Outlet) -> String) -> Result<Partial> {
        let (exec, requests) = (self.exec, self.requests);
        let mut part = Partial::default();
        for i in s..e {
            let sample = self.data.get(i).map_err(|e| e.with_sample("calibration", i))?;
            for (nm, t) in &sample {
                if let Some(o) = self.parameters.get(nm) {
                    if let Some(r) = requests.get(o) {
                        part.observe(*o, t, r, i, name).map_err(|e| e.with_sample("calibration", i))?;
                    }
                }
            }
            let tag = |e: Error| match e {
                Error::Mismatch(m) => Error::Mismatch(format!("calibration sample {i}: {m}")),
                Error::InvalidArgument(m) => Error::InvalidArgument(format!("calibration sample {i}: {m}")),
                other => other,
            };
            if let Some(red) = self.reductions {
                let values = exec.run(&sample, &mut NoObserver).map_err(tag)?;
                red.accumulate(&mut part, &values, i, name).map_err(|e| e.with_sample("calibration", i))?;
                continue;
            }
            let mut err: Option<Error> = None;
            let mut obs = Requested {
                requests,
                f: |o: Outlet, t: &Tensor| -> Result<()> {
                    if let Some(r) = requests.get(&o) {
                        if let Err(e) = part.observe(o, t, r, i, name) {
                            err.get_or_insert(e.with_sample("calibration", i));
                        }
                    }
                    Ok(())
                },
            };
            exec.run(&sample, &mut obs).map_err(tag)?;
            if let Some(e) = err {
                return Err(e);
            }
        }
        Ok(part)
    }
}

/// Aggregates per-sample values: mean (default), min, max, median, and the "no outliers"
/// variants that drop values outside the [q, 1−q] quantiles first.
pub fn aggregate(values: &[f64], aggregator: &str, outlier_prob: f64) -> Result<f64> {
    if values.is_empty() {
        return Err(Error::invalid("no statistics to aggregate"));
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let median = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(|a, b| a.total_cmp(b));
        let m = s.len() / 2;
        if s.len().is_multiple_of(2) {
            (s[m - 1] + s[m]) / 2.0
        } else {
            s[m]
        }
    };
    let trimmed = || {
        let mut s = values.to_vec();
        s.sort_by(|a, b| a.total_cmp(b));
        let f: Vec<f32> = s.iter().map(|&x| x as f32).collect();
        let lo = sorted_quantile(&f, outlier_prob);
        let hi = sorted_quantile(&f, 1.0 - outlier_prob);
        let kept: Vec<f64> = s.into_iter().filter(|&x| x >= lo && x <= hi).collect();
        if kept.is_empty() {
            values.to_vec()
        } else {
            kept
        }
    };
    Ok(match aggregator {
        "mean" => mean(values),
        "min" => values.iter().cloned().fold(f64::INFINITY, f64::min),
        "max" => values.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
        "median" => median(values),
        "mean_no_outliers" => mean(&trimmed()),
        "median_no_outliers" => median(&trimmed()),
        // ovpot's own: the 99th (1st) percentile of the per-sample values, the largest (smallest)
        // once POT's 1% of outliers are dropped. Data-free mode uses them: synthetic images
        // excite a network's deep layers less evenly than its own data, and a mean over them
        // falls short of the real ranges (ppocr_cls: 0.4–0.6 of them).
        "max_no_outliers" | "min_no_outliers" => {
            let mut s: Vec<f32> = values.iter().map(|&x| x as f32).collect();
            s.sort_by(|a, b| a.total_cmp(b));
            let q = if aggregator == "max_no_outliers" { 0.99 } else { 0.01 };
            sorted_quantile(&s, q)
        }
        other => return Err(Error::invalid(format!("unknown aggregator '{other}'"))),
    })
}

#[cfg(test)]
mod tests {
    use super::summary::*;
    use super::*;

    #[test]
    fn aggregators() {
        let v = [1.0, 2.0, 3.0, 10.0];
        assert_eq!(aggregate(&v, "mean", 0.0).unwrap(), 4.0);
        assert_eq!(aggregate(&v, "median", 0.0).unwrap(), 2.5);
        assert_eq!(aggregate(&v, "min", 0.0).unwrap(), 1.0);
        assert_eq!(aggregate(&v, "max", 0.0).unwrap(), 10.0);
        assert!(aggregate(&v, "mean_no_outliers", 0.25).unwrap() < 4.0);
        assert!(aggregate(&v, "bogus", 0.0).is_err());
    }

    #[test]
    fn lane_reductions() {
        let v: Vec<f32> = (0..37).map(|i| ((i * 7919) % 101) as f32 - 50.0).collect();
        let (mn, mx) = min_max(&v);
        assert_eq!(
            (mn, mx),
            (v.iter().cloned().fold(f32::INFINITY, f32::min), v.iter().cloned().fold(f32::MIN, f32::max))
        );
        assert_eq!(min_max(&[]), (f32::INFINITY, f32::NEG_INFINITY));
        assert_eq!(sum_f64(&v), v.iter().map(|&x| x as f64).sum::<f64>());
        assert!(all_finite(&v) && min_max_finite(&v).2);
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            for at in [0, 20, 36] {
                let mut w = v.clone();
                w[at] = bad;
                assert!(!all_finite(&w) && !min_max_finite(&w).2, "{bad} at {at}");
            }
        }
    }

    #[test]
    fn scalars_and_quantiles() {
        let data = [-2.0, 0.0, 1.0, 3.0, 4.0];
        let s = scalars_of(&data, min_max(&data), &[0.5]);
        assert_eq!((s.min, s.max, s.abs_max), (-2.0, 4.0, 4.0));
        assert_eq!(s.quantiles[0].1, 1.0);
        assert_eq!(s.quantiles[0].2, 2.0);
    }
}
