//! What a statistics pass collects: the requests per tensor, the per-sample reductions
//! ([`Partial`]) and what they add up to ([`Collected`]).

use crate::engine::Observer;
use crate::error::{Error, Result};
use crate::graph::Outlet;
use crate::tensor::Tensor;
use std::collections::{BTreeMap, HashMap};

/// What to collect on one tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// Per-sample min, max, abs-max and the given quantiles (q in [0,1]) of x and |x|.
    Scalars { quantiles: Vec<f64> },
    /// Mean per channel on `axis` (negative counts from the end), averaged over samples.
    ChannelMean { axis: isize },
    /// Max of |x| per channel on the last axis, over everything else and all samples.
    ChannelAbsMax,
    /// Min and max per channel on `axis`, over everything else and all samples.
    ChannelMinMax { axis: isize },
    /// Per-sample min and max per channel on the last axis (kept for every sample).
    SampleChannelMinMax,
    /// Sum of x² over every element and sample.
    SumSquares,
    /// The whole tensor of the first `samples` samples (model outputs reused as a reference).
    Keep { samples: usize },
}

/// Per-sample scalar statistics of one tensor.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SampleScalars {
    pub min: f64,
    pub max: f64,
    pub abs_max: f64,
    /// quantile q → (value of x, value of |x|)
    pub quantiles: Vec<(f64, f64, f64)>,
}

/// Per-channel (min, max).
pub type ChannelRange = (Vec<f32>, Vec<f32>);

/// Everything collected, keyed by outlet.
#[derive(Clone, Debug, Default)]
pub struct Collected {
    pub samples: usize,
    pub scalars: HashMap<Outlet, Vec<SampleScalars>>,
    /// (outlet, axis) → per-channel mean over samples
    pub channel_means: HashMap<(Outlet, isize), Vec<f64>>,
    pub channel_abs_max: HashMap<Outlet, Vec<f32>>,
    pub channel_min_max: HashMap<(Outlet, isize), (Vec<f32>, Vec<f32>)>,
    /// Per sample: (min, max) per channel on the last axis.
    pub sample_channel_min_max: HashMap<Outlet, Vec<ChannelRange>>,
    /// One shape seen per outlet (first sample).
    pub shapes: HashMap<Outlet, Vec<usize>>,
    /// Σ x² over everything seen.
    pub sum_squares: HashMap<Outlet, f64>,
    /// Tensors kept by [`Request::Keep`], in sample order.
    pub kept: HashMap<Outlet, Vec<Tensor>>,
}

#[derive(Default)]
pub(super) struct Partial {
    pub(super) kept: BTreeMap<Outlet, Vec<(usize, Tensor)>>,
    pub(super) sum_squares: BTreeMap<Outlet, f64>,
    pub(super) scalars: BTreeMap<Outlet, Vec<SampleScalars>>,
    pub(super) sums: BTreeMap<(Outlet, isize), (Vec<f64>, usize)>,
    pub(super) absmax: BTreeMap<Outlet, Vec<f32>>,
    pub(super) minmax: BTreeMap<(Outlet, isize), (Vec<f32>, Vec<f32>)>,
    pub(super) sample_minmax: BTreeMap<Outlet, Vec<ChannelRange>>,
    pub(super) shapes: BTreeMap<Outlet, Vec<usize>>,
}

pub(crate) fn sorted_quantile(sorted: &[f32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    // Linear interpolation between closest ranks, as numpy's default.
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let f = pos - lo as f64;
    sorted[lo] as f64 * (1.0 - f) + sorted[hi] as f64 * f
}

/// Lanes for the reductions below: independent accumulators let the compiler vectorize them.
pub(super) const LANES: usize = 8;

/// Min and max, and whether every value is finite (x · 0 is 0 for finite x, NaN for NaN and
/// ±inf), in one pass; (+inf, −inf, true) when empty.
pub(super) fn min_max_finite(data: &[f32]) -> (f32, f32, bool) {
    let (mut mn, mut mx, mut nf) = ([f32::INFINITY; LANES], [f32::NEG_INFINITY; LANES], [0.0f32; LANES]);
    let mut chunks = data.chunks_exact(LANES);
    for c in &mut chunks {
        let c: &[f32; LANES] = c.try_into().expect("chunks_exact yields LANES values");
        for (((lo, hi), z), &x) in mn.iter_mut().zip(mx.iter_mut()).zip(nf.iter_mut()).zip(c) {
            *lo = lo.min(x);
            *hi = hi.max(x);
            *z += x * 0.0;
        }
    }
    let mut finite = nf.iter().all(|&z| z == 0.0);
    for &x in chunks.remainder() {
        mn[0] = mn[0].min(x);
        mx[0] = mx[0].max(x);
        finite &= x.is_finite();
    }
    (mn.iter().fold(f32::INFINITY, |a, &b| a.min(b)), mx.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)), finite)
}

/// Min and max of finite data (+inf, −inf when empty).
pub(super) fn min_max(data: &[f32]) -> (f32, f32) {
    let (mn, mx, _) = min_max_finite(data);
    (mn, mx)
}

/// Whether every value is finite: x · 0 is 0 for finite x and NaN for NaN or ±inf.
pub(super) fn all_finite(data: &[f32]) -> bool {
    let mut acc = [0.0f32; LANES];
    let mut chunks = data.chunks_exact(LANES);
    for c in &mut chunks {
        for k in 0..LANES {
            acc[k] += c[k] * 0.0;
        }
    }
    chunks.remainder().iter().all(|x| x.is_finite()) && acc.iter().all(|&a| a == 0.0)
}

/// Sum in f64 (lane-wise, then the lanes in order: deterministic).
pub(super) fn sum_f64(data: &[f32]) -> f64 {
    let mut acc = [0.0f64; LANES];
    let mut chunks = data.chunks_exact(LANES);
    for c in &mut chunks {
        for k in 0..LANES {
            acc[k] += c[k] as f64;
        }
    }
    acc.iter().sum::<f64>() + chunks.remainder().iter().map(|&x| x as f64).sum::<f64>()
}

pub(super) fn scalars_of(data: &[f32], (mn, mx): (f32, f32), quantiles: &[f64]) -> SampleScalars {
    let mut s =
        SampleScalars { min: mn as f64, max: mx as f64, abs_max: (mn.abs()).max(mx.abs()) as f64, quantiles: vec![] };
    if !quantiles.is_empty() {
        let mut v = data.to_vec();
        v.sort_by(|a, b| a.total_cmp(b));
        let mut a: Vec<f32> = data.iter().map(|x| x.abs()).collect();
        a.sort_by(|x, y| x.total_cmp(y));
        s.quantiles = quantiles.iter().map(|&q| (q, sorted_quantile(&v, q), sorted_quantile(&a, q))).collect();
    }
    s
}

/// An observer that wants only the outlets statistics were requested for, so the engine may
/// fuse away the rest (a convolution's output before its bias and activation).
pub(super) struct Requested<'a, F> {
    pub(super) requests: &'a HashMap<Outlet, Vec<Request>>,
    pub(super) f: F,
}

impl<F: FnMut(Outlet, &Tensor) -> Result<()>> Observer for Requested<'_, F> {
    fn observe(&mut self, outlet: Outlet, value: &Tensor) -> Result<()> {
        (self.f)(outlet, value)
    }
    fn wants(&self, outlet: Outlet) -> bool {
        self.requests.contains_key(&outlet)
    }
}

pub(super) fn channel_view(shape: &[usize], axis: isize) -> Option<(usize, usize, usize)> {
    let r = shape.len() as isize;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r {
        return None;
    }
    let a = a as usize;
    let outer: usize = shape[..a].iter().product();
    let inner: usize = shape[a + 1..].iter().product();
    Some((outer, shape[a], inner))
}

/// Min and max per channel on the last axis (`c` channels, `c` > 0) of one sample.
fn channel_min_max_last(data: &[f32], c: usize) -> ChannelRange {
    let (mut mn, mut mx) = (vec![f32::INFINITY; c], vec![f32::NEG_INFINITY; c]);
    for row in data.chunks_exact(c) {
        for ((lo, hi), &x) in mn.iter_mut().zip(mx.iter_mut()).zip(row) {
            *lo = lo.min(x);
            *hi = hi.max(x);
        }
    }
    (mn, mx)
}

/// Σ x² in f64 (lane-wise, then the lanes in order, then the rest: deterministic).
fn sum_squares(data: &[f32]) -> f64 {
    let mut acc = [0.0f64; LANES];
    let mut chunks = data.chunks_exact(LANES);
    for c in &mut chunks {
        for k in 0..LANES {
            acc[k] += (c[k] as f64) * (c[k] as f64);
        }
    }
    let rest: f64 = chunks.remainder().iter().map(|&x| (x as f64) * (x as f64)).sum();
    acc.iter().sum::<f64>() + rest
}

impl Partial {
    pub(super) fn observe(
        &mut self,
        o: Outlet,
        t: &Tensor,
        reqs: &[Request],
        sample: usize,
        name: &dyn Fn(Outlet) -> String,
    ) -> Result<()> {
        let owned;
        let a = match t.as_f32() {
            Some(a) => a,
            None => {
                owned = t.to_f32();
                &owned
            }
        };
        let data_owned;
        let data: &[f32] = match a.as_slice() {
            Some(s) => s,
            None => {
                data_owned = a.iter().copied().collect::<Vec<f32>>();
                &data_owned
            }
        };
        // One pass gives the finiteness check and, when a request needs them, the min and max.
        let wants_range = reqs.iter().any(|r| matches!(r, Request::Scalars { .. }));
        let (mn, mx, finite) =
            if wants_range { min_max_finite(data) } else { (f32::INFINITY, f32::NEG_INFINITY, all_finite(data)) };
        if !finite {
            return Err(Error::invalid(format!("calibration sample {sample}: tensor '{}' holds NaN or Inf", name(o))));
        }
        self.shapes.entry(o).or_insert_with(|| a.shape().to_vec());
        for r in reqs {
            match r {
                Request::Keep { samples } => {
                    if sample < *samples {
                        self.kept.entry(o).or_default().push((sample, t.clone()));
                    }
                }
                Request::Scalars { quantiles } => {
                    self.scalars.entry(o).or_default().push(scalars_of(data, (mn, mx), quantiles));
                }
                Request::ChannelMean { axis } => self.add_channel_mean(o, data, a.shape(), *axis, name)?,
                Request::ChannelMinMax { axis } => self.add_channel_min_max(o, data, a.shape(), *axis, name)?,
                Request::SampleChannelMinMax => {
                    let c = *a.shape().last().unwrap_or(&1);
                    if c == 0 {
                        continue;
                    }
                    self.sample_minmax.entry(o).or_default().push(channel_min_max_last(data, c));
                }
                Request::SumSquares => {
                    *self.sum_squares.entry(o).or_default() += sum_squares(data);
                }
                Request::ChannelAbsMax => self.add_channel_abs_max(o, data, a.shape()),
            }
        }
        Ok(())
    }

    /// [`Request::ChannelMean`] on one sample: adds its mean per channel on `axis`.
    fn add_channel_mean(
        &mut self,
        o: Outlet,
        data: &[f32],
        shape: &[usize],
        axis: isize,
        name: &dyn Fn(Outlet) -> String,
    ) -> Result<()> {
        let Some((outer, c, inner)) = channel_view(shape, axis) else { return Ok(()) };
        let e = self.sums.entry((o, axis)).or_insert_with(|| (vec![0.0; c], 0));
        if e.0.len() != c {
            return Err(Error::mismatch(format!("tensor '{}' changed channel count", name(o))));
        }
        let n = (outer * inner).max(1) as f64;
        let mut per = vec![0.0f64; c];
        if inner == 1 {
            // Channels last (MatMul outputs): accumulate whole rows, which vectorizes.
            for row in data.chunks_exact(c) {
                for (p, &x) in per.iter_mut().zip(row) {
                    *p += x as f64;
                }
            }
        } else {
            for ou in 0..outer {
                for (ch, p) in per.iter_mut().enumerate() {
                    let base = (ou * c + ch) * inner;
                    *p += sum_f64(&data[base..base + inner]);
                }
            }
        }
        for (acc, p) in e.0.iter_mut().zip(per) {
            *acc += p / n;
        }
        e.1 += 1;
        Ok(())
    }

    /// [`Request::ChannelMinMax`] on one sample: widens the range per channel on `axis`.
    fn add_channel_min_max(
        &mut self,
        o: Outlet,
        data: &[f32],
        shape: &[usize],
        axis: isize,
        name: &dyn Fn(Outlet) -> String,
    ) -> Result<()> {
        let Some((outer, c, inner)) = channel_view(shape, axis) else { return Ok(()) };
        let e = self.minmax.entry((o, axis)).or_insert_with(|| (vec![f32::INFINITY; c], vec![f32::NEG_INFINITY; c]));
        if e.0.len() != c {
            return Err(Error::mismatch(format!("tensor '{}' changed channel count", name(o))));
        }
        for ou in 0..outer {
            for ch in 0..c {
                let base = (ou * c + ch) * inner;
                let (lo, hi) = min_max(&data[base..base + inner]);
                e.0[ch] = e.0[ch].min(lo);
                e.1[ch] = e.1[ch].max(hi);
            }
        }
        Ok(())
    }

    /// [`Request::ChannelAbsMax`] on one sample: widens the max of |x| per channel on the last axis.
    fn add_channel_abs_max(&mut self, o: Outlet, data: &[f32], shape: &[usize]) {
        let c = *shape.last().unwrap_or(&1);
        let e = self.absmax.entry(o).or_insert_with(|| vec![0.0; c]);
        if e.len() != c || c == 0 {
            return;
        }
        for row in data.chunks_exact(c) {
            for (m, &x) in e.iter_mut().zip(row) {
                *m = m.max(x.abs());
            }
        }
    }

    pub(super) fn merge(&mut self, other: Partial) {
        for (k, v) in other.kept {
            self.kept.entry(k).or_default().extend(v);
        }
        for (k, v) in other.sum_squares {
            *self.sum_squares.entry(k).or_default() += v;
        }
        for (k, v) in other.scalars {
            self.scalars.entry(k).or_default().extend(v);
        }
        for (k, (v, n)) in other.sums {
            let e = self.sums.entry(k).or_insert_with(|| (vec![0.0; v.len()], 0));
            for (a, b) in e.0.iter_mut().zip(v) {
                *a += b;
            }
            e.1 += n;
        }
        for (k, v) in other.absmax {
            let e = self.absmax.entry(k).or_insert_with(|| vec![0.0; v.len()]);
            for (a, b) in e.iter_mut().zip(v) {
                *a = a.max(b);
            }
        }
        for (k, v) in other.sample_minmax {
            self.sample_minmax.entry(k).or_default().extend(v);
        }
        for (k, (mn, mx)) in other.minmax {
            let e = self.minmax.entry(k).or_insert_with(|| (mn.clone(), mx.clone()));
            for (a, b) in e.0.iter_mut().zip(mn) {
                *a = a.min(b);
            }
            for (a, b) in e.1.iter_mut().zip(mx) {
                *a = a.max(b);
            }
        }
        for (k, v) in other.shapes {
            self.shapes.entry(k).or_insert(v);
        }
    }

    /// What the partial results of all `samples` samples add up to.
    pub(super) fn into_collected(self, samples: usize) -> Collected {
        let mut out = Collected { samples, ..Default::default() };
        out.scalars = self.scalars.into_iter().collect();
        out.channel_means = self
            .sums
            .into_iter()
            .map(|(k, (v, cnt))| (k, v.into_iter().map(|x| x / cnt.max(1) as f64).collect()))
            .collect();
        out.channel_abs_max = self.absmax.into_iter().collect();
        out.channel_min_max = self.minmax.into_iter().collect();
        out.sample_channel_min_max = self.sample_minmax.into_iter().collect();
        out.shapes = self.shapes.into_iter().collect();
        out.sum_squares = self.sum_squares.into_iter().collect();
        out.kept = self
            .kept
            .into_iter()
            .map(|(k, mut v)| {
                v.sort_by_key(|(i, _)| *i);
                (k, v.into_iter().map(|(_, t)| t).collect())
            })
            .collect();
        out
    }
}

/// The outlets a statistics pass must produce: those with requests, in a fixed order.
pub fn targets(requests: &HashMap<Outlet, Vec<Request>>) -> Vec<Outlet> {
    let mut t: Vec<Outlet> = requests.keys().copied().collect();
    t.sort();
    t
}
