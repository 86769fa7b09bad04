//! What data-aware weight compression reads of the calibration data: per MatMul input, per sample,
//! the mean over every axis but the hidden one (NNCF's `mean_values`), the activation's shape
//! (`shape_values`), and the scalars the data-aware mixed-precision criteria rank layers by.
//! Inputs read by several MatMuls (q, k and v projections) are collected once.

use crate::backend::Backend;
use crate::data::Dataset;
use crate::engine::Observer;
use crate::error::{Error, Result};
use crate::graph::{Graph, Outlet};
use crate::hooks::{Hooks, Stage};
use crate::tensor::Tensor;
use std::collections::HashMap;

/// One MatMul input over the calibration samples.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InputStats {
    /// The hidden (input channel) axis, counted from the front.
    pub channel_axis: usize,
    /// Per sample: the mean over every axis but the hidden one.
    pub means: Vec<Vec<f32>>,
    /// Per sample: the activation's shape.
    pub shapes: Vec<Vec<usize>>,
    /// Per sample: mean of x² over the tensor (NNCF's Hessian trace estimate, before its × 2).
    pub mean_square: Vec<f64>,
    /// Per sample: the variance over the token axis (−2), averaged over the rest.
    pub mean_variance: Vec<f64>,
    /// Per sample: the variance over the token axis (−2), its maximum over the rest.
    pub max_variance: Vec<f64>,
    /// Per sample: max |x| over the token axis (−2), averaged over the rest.
    pub mean_magnitude: Vec<f64>,
}

impl InputStats {
    fn new(channel_axis: usize) -> Self {
        InputStats { channel_axis, ..Default::default() }
    }

    pub fn samples(&self) -> usize {
        self.means.len()
    }

    pub fn hidden(&self) -> usize {
        self.means.first().map_or(0, |m| m.len())
    }

    /// NNCF's `process_stats`: the largest |mean| of each channel over every sample, and the sample
    /// means the search scores on (`[channel][sample]`): all when there are at most `subset`, else
    /// every `n / subset`-th sample by descending token count.
    pub fn magnitudes_and_subset(&self, subset: usize) -> (Vec<f32>, Vec<Vec<f32>>) {
        let n = self.samples();
        let h = self.hidden();
        let mut magnitude = vec![0f32; h];
        for m in &self.means {
            for (a, &v) in magnitude.iter_mut().zip(m) {
                *a = a.max(v.abs());
            }
        }
        let chosen: Vec<usize> = if n > subset && subset > 0 {
            let tokens: Vec<usize> = self
                .shapes
                .iter()
                .map(|shape| {
                    shape.iter().enumerate().filter(|&(k, _)| k != self.channel_axis).map(|(_, &d)| d).product()
                })
                .collect();
            let mut order: Vec<usize> = (0..n).collect();
            // Stable, as Python's sorted.
            order.sort_by_key(|&i| std::cmp::Reverse(tokens[i]));
            order.into_iter().step_by(n / subset).collect()
        } else {
            (0..n).collect()
        };
        let x = (0..h).map(|c| chosen.iter().map(|&i| self.means[i][c]).collect()).collect();
        (magnitude, x)
    }

    /// Appends `other`'s samples after these.
    fn append(&mut self, other: InputStats) {
        self.means.extend(other.means);
        self.shapes.extend(other.shapes);
        self.mean_square.extend(other.mean_square);
        self.mean_variance.extend(other.mean_variance);
        self.max_variance.extend(other.max_variance);
        self.mean_magnitude.extend(other.mean_magnitude);
    }

    /// Adds one sample's activation.
    fn add(&mut self, x: &Tensor) -> Result<()> {
        let shape = x.shape().to_vec();
        let rank = shape.len();
        if rank < 2 || self.channel_axis >= rank {
            return Err(Error::unsupported(format!(
                "data-aware weight compression needs MatMul inputs of rank 2 or more, got shape {shape:?}"
            )));
        }
        let values = x.to_f32();
        let data = values.as_slice().map(|s| s.to_vec()).unwrap_or_else(|| values.iter().copied().collect());
        self.means.push(channel_means(&data, &shape, self.channel_axis));
        let n = data.len().max(1) as f64;
        self.mean_square.push(data.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / n);
        let (mean_var, max_var, mean_mag) = token_axis_scalars(&data, &shape);
        self.mean_variance.push(mean_var);
        self.max_variance.push(max_var);
        self.mean_magnitude.push(mean_mag);
        self.shapes.push(shape);
        Ok(())
    }
}

/// Means over every axis but `axis`, accumulated in f64.
fn channel_means(data: &[f32], shape: &[usize], axis: usize) -> Vec<f32> {
    let outer: usize = shape[..axis].iter().product();
    let c = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let mut sums = vec![0f64; c];
    for o in 0..outer {
        for (ch, sum) in sums.iter_mut().enumerate() {
            let base = (o * c + ch) * inner;
            *sum += data[base..base + inner].iter().map(|&v| v as f64).sum::<f64>();
        }
    }
    let count = (outer * inner).max(1) as f64;
    sums.into_iter().map(|s| (s / count) as f32).collect()
}

/// Over the token axis (−2): the population variance and the max |x| per position of the other
/// axes; returns (mean variance, max variance, mean max |x|).
fn token_axis_scalars(data: &[f32], shape: &[usize]) -> (f64, f64, f64) {
    let rank = shape.len();
    let outer: usize = shape[..rank - 2].iter().product();
    let t = shape[rank - 2];
    let h = shape[rank - 1];
    let (mut var_sum, mut var_max, mut mag_sum) = (0f64, f64::NEG_INFINITY, 0f64);
    let mut sum = vec![0f64; h];
    let mut sq = vec![0f64; h];
    let mut mag = vec![0f32; h];
    for o in 0..outer {
        sum.iter_mut().for_each(|v| *v = 0.0);
        sq.iter_mut().for_each(|v| *v = 0.0);
        mag.iter_mut().for_each(|v| *v = 0.0);
        for k in 0..t {
            let row = &data[(o * t + k) * h..(o * t + k + 1) * h];
            for (j, &v) in row.iter().enumerate() {
                sum[j] += v as f64;
                sq[j] += v as f64 * v as f64;
                mag[j] = mag[j].max(v.abs());
            }
        }
        for j in 0..h {
            let mean = sum[j] / t.max(1) as f64;
            let var = (sq[j] / t.max(1) as f64 - mean * mean).max(0.0);
            var_sum += var;
            var_max = var_max.max(var);
            mag_sum += mag[j] as f64;
        }
    }
    let count = (outer * h).max(1) as f64;
    (var_sum / count, var_max.max(0.0), mag_sum / count)
}

/// The statistics of the weighted MatMuls' inputs, and which input each weight site reads.
#[derive(Clone, Debug, Default)]
pub struct SiteStatistics {
    /// Site index → its activation input.
    pub by_site: HashMap<usize, Outlet>,
    pub inputs: HashMap<Outlet, InputStats>,
    /// A site's own copy, once a method changed what its input looks like (AWQ's rescaling).
    pub own: HashMap<usize, InputStats>,
}

impl SiteStatistics {
    /// The input statistics of site `i`.
    pub fn for_site(&self, i: usize) -> Option<&InputStats> {
        self.own.get(&i).or_else(|| self.by_site.get(&i).and_then(|o| self.inputs.get(o)))
    }

    /// Site `i`'s own copy of its input statistics, to change without touching the other
    /// readers of the same input.
    pub fn for_site_mut_own(&mut self, i: usize) -> Option<&mut InputStats> {
        if !self.own.contains_key(&i) {
            let shared = self.by_site.get(&i).and_then(|o| self.inputs.get(o))?.clone();
            self.own.insert(i, shared);
        }
        self.own.get_mut(&i)
    }
}

/// Collects [`InputStats`] for `inputs` (outlet, hidden axis) on the first `n` samples of `data`,
/// running `graph` where `backend` runs it. Samples run a few at a time side by side (one per
/// core: an LLM window's products are large enough for one core each, its other ops run on one
/// anyway); each sample's statistics are its own, appended in sample order.
pub fn collect(
    graph: &Graph,
    inputs: &[(Outlet, usize)],
    data: &dyn Dataset,
    n: usize,
    backend: &Backend,
    hooks: &mut Hooks,
) -> Result<HashMap<Outlet, InputStats>> {
    use rayon::prelude::*;
    if n == 0 {
        return Err(Error::invalid("the calibration dataset is empty"));
    }
    let targets: Vec<Outlet> = inputs.iter().map(|&(o, _)| o).collect();
    let exec = backend.compile(graph, &targets, 0)?;
    let fresh =
        || -> HashMap<Outlet, InputStats> { inputs.iter().map(|&(o, axis)| (o, InputStats::new(axis))).collect() };
    let mut stats = fresh();
    let params: HashMap<String, Outlet> =
        graph.parameters().into_iter().map(|p| (graph.parameter_name(p).to_string(), Outlet::new(p, 0))).collect();
    let one = |i: usize| -> Result<HashMap<Outlet, InputStats>> {
        let mut mine = fresh();
        let sample = data.get(i).map_err(|e| e.with_sample("calibration", i))?;
        // A model input read by a MatMul directly is not computed by the engine: seen here.
        for (name, t) in &sample {
            if let Some(s) = params.get(name).and_then(|o| mine.get_mut(o)) {
                s.add(t).map_err(|e| e.with_sample("calibration", i))?;
            }
        }
        let mut observer = Seen { stats: &mut mine, error: None };
        exec.run(&sample, &mut observer).map_err(|e| e.with_sample("calibration", i))?;
        match observer.error {
            Some(e) => Err(e.with_sample("calibration", i)),
            None => Ok(mine),
        }
    };
    let wave = exec.in_flight(rayon::current_num_threads).max(1);
    hooks.progress(Stage::Statistics, 0, n)?;
    let mut done = 0;
    while done < n {
        let end = (done + wave).min(n);
        let parts: Vec<Result<HashMap<Outlet, InputStats>>> =
            exec.in_flight(|| (done..end).into_par_iter().map(one).collect());
        for part in parts {
            for (o, p) in part? {
                stats.get_mut(&o).expect("the same outlets").append(p);
            }
        }
        done = end;
        hooks.progress(Stage::Statistics, done, n)?;
    }
    Ok(stats)
}

/// Adds each wanted tensor to its statistics as the engine computes it.
struct Seen<'a> {
    stats: &'a mut HashMap<Outlet, InputStats>,
    error: Option<Error>,
}

impl Observer for Seen<'_> {
    fn observe(&mut self, outlet: Outlet, value: &Tensor) -> Result<()> {
        if let Some(s) = self.stats.get_mut(&outlet) {
            if let Err(e) = s.add(value) {
                self.error.get_or_insert(e);
            }
        }
        Ok(())
    }

    fn wants(&self, outlet: Outlet) -> bool {
        self.stats.contains_key(&outlet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_sample_reductions_follow_nncf() {
        // [1, 2 tokens, 3 channels]
        let x = Tensor::F32(ndarray::ArrayD::from_shape_vec(vec![1, 2, 3], vec![1., -2., 3., 3., 2., -1.]).unwrap());
        let mut s = InputStats::new(2);
        s.add(&x).unwrap();
        assert_eq!(s.means[0], vec![2.0, 0.0, 1.0]);
        assert_eq!(s.shapes[0], vec![1, 2, 3]);
        assert!((s.mean_square[0] - 28.0 / 6.0).abs() < 1e-12);
        // Variances over the tokens: 1, 4, 4.
        assert!((s.mean_variance[0] - 3.0).abs() < 1e-12);
        assert!((s.max_variance[0] - 4.0).abs() < 1e-12);
        // Max |x| over the tokens: 3, 2, 3.
        assert!((s.mean_magnitude[0] - 8.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn a_vector_input_is_refused() {
        let x = Tensor::F32(ndarray::ArrayD::from_shape_vec(vec![3], vec![1., 2., 3.]).unwrap());
        assert!(InputStats::new(0).add(&x).is_err());
    }
}
