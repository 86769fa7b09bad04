//! Statistics reduced inside the model (as NNCF's "inplace" statistics): reduction ops appended
//! to each observed tensor, so a backend that runs the graph as a whole (OpenVINO) hands back a
//! few numbers per tensor instead of whole activations, and keeps its fusions.
//!
//! Requests that need whole tensors (quantiles, sums of squares) or tensors of unknown rank are
//! handed back whole and reduced by [`Partial::observe`] as the built-in engine's are.

use super::summary::{Partial, Request, SampleScalars};
use crate::error::{Error, Result};
use crate::graph::{Attrs, Dim, Graph, Outlet, PartialShape, PortInfo};
use crate::tensor::{ElementType, Tensor};
use std::collections::HashMap;

/// What one appended output holds, and how it feeds the statistics.
enum Item {
    /// The observed tensor's shape (ShapeOf).
    Shape { at: Outlet },
    /// The observed tensor's shape, known from the graph (no output).
    StaticShape { at: Outlet, dims: Vec<usize> },
    /// Min and max over everything: per-sample scalars.
    Scalars { at: Outlet },
    /// Per-channel means on `axis`.
    ChannelMean { at: Outlet, axis: isize },
    /// Per-channel min and max on `axis`.
    ChannelMinMax { at: Outlet, axis: isize },
    /// Per-channel max |x| on the last axis.
    ChannelAbsMax { at: Outlet },
    /// Per-channel min and max on the last axis, kept per sample; with `abs_max`, they also
    /// give the per-channel max |x| (no Abs and ReduceMax of their own).
    SampleChannelMinMax { at: Outlet, abs_max: bool },
    /// The whole tensor, for requests reduced on the host.
    Whole { at: Outlet, requests: Vec<Request> },
}

/// A graph with reductions appended, the outlets to produce and what each one is.
pub struct Reductions {
    pub graph: Graph,
    pub targets: Vec<Outlet>,
    /// For each item, where its values start in `targets` (1 or 2 outlets).
    items: Vec<(Item, usize)>,
}

impl Reductions {
    /// Appends the reductions `requests` need to a copy of `graph`.
    pub fn new(graph: &Graph, requests: &HashMap<Outlet, Vec<Request>>) -> Result<Reductions> {
        let mut r = Reductions { graph: graph.clone(), targets: vec![], items: vec![] };
        for at in super::summary::targets(requests) {
            let reqs = &requests[&at];
            let info = graph.outlet_info(at).clone();
            let Some(rank) = info.shape.rank().filter(|&k| k > 0) else {
                r.push_whole(at, reqs.clone());
                continue;
            };
            // OpenVINO computes a static shape once at compile time, but each output costs a
            // tensor handed back per inference.
            match info.shape.to_static() {
                Some(dims) => r.push(Item::StaticShape { at, dims }, &[]),
                None => {
                    let shape = r.shape_of(at)?;
                    r.push(Item::Shape { at }, &[shape]);
                }
            }
            let minmax_per_channel = reqs.contains(&Request::SampleChannelMinMax);
            let mut whole = vec![];
            for q in reqs {
                match q {
                    Request::Scalars { quantiles } if quantiles.is_empty() => {
                        let axes: Vec<usize> = (0..rank).collect();
                        let mn = r.reduce("ReduceMin", at, &axes)?;
                        let mx = r.reduce("ReduceMax", at, &axes)?;
                        r.push(Item::Scalars { at }, &[mn, mx]);
                    }
                    Request::ChannelMean { axis } => match all_but(rank, *axis) {
                        Some(axes) => {
                            let m = r.reduce("ReduceMean", at, &axes)?;
                            r.push(Item::ChannelMean { at, axis: *axis }, &[m]);
                        }
                        None => whole.push(q.clone()),
                    },
                    Request::ChannelMinMax { axis } => match all_but(rank, *axis) {
                        Some(axes) => {
                            let mn = r.reduce("ReduceMin", at, &axes)?;
                            let mx = r.reduce("ReduceMax", at, &axes)?;
                            r.push(Item::ChannelMinMax { at, axis: *axis }, &[mn, mx]);
                        }
                        None => whole.push(q.clone()),
                    },
                    // Derived from the per-channel min and max below.
                    Request::ChannelAbsMax if minmax_per_channel => {}
                    Request::ChannelAbsMax => {
                        let axes = all_but(rank, -1).unwrap_or_default();
                        let abs = r.graph.add_op(
                            format!("{}/ovpot_abs", r.graph.nodes[at.node].name),
                            "Abs",
                            "opset1",
                            Attrs::default(),
                            vec![at],
                            vec![info.clone()],
                        );
                        let mx = r.reduce("ReduceMax", Outlet::new(abs, 0), &axes)?;
                        r.push(Item::ChannelAbsMax { at }, &[mx]);
                    }
                    Request::SampleChannelMinMax => {
                        let axes = all_but(rank, -1).unwrap_or_default();
                        let mn = r.reduce("ReduceMin", at, &axes)?;
                        let mx = r.reduce("ReduceMax", at, &axes)?;
                        let abs_max = reqs.contains(&Request::ChannelAbsMax);
                        r.push(Item::SampleChannelMinMax { at, abs_max }, &[mn, mx]);
                    }
                    _ => whole.push(q.clone()),
                }
            }
            if !whole.is_empty() {
                r.push_whole(at, whole);
            }
        }
        Ok(r)
    }

    fn push(&mut self, item: Item, outs: &[Outlet]) {
        self.items.push((item, self.targets.len()));
        self.targets.extend_from_slice(outs);
    }

    fn push_whole(&mut self, at: Outlet, requests: Vec<Request>) {
        self.push(Item::Whole { at, requests }, &[at]);
    }

    fn shape_of(&mut self, at: Outlet) -> Result<Outlet> {
        let rank = self.graph.outlet_info(at).shape.rank().unwrap_or(0);
        let name = format!("{}/ovpot_shape{}", self.graph.nodes[at.node].name, at.port);
        let id = self.graph.add_op(
            name,
            "ShapeOf",
            "opset3",
            Attrs::from_pairs(&[("output_type", "i64")]),
            vec![at],
            vec![PortInfo::new(ElementType::I64, PartialShape::from_static(&[rank]))],
        );
        Ok(Outlet::new(id, 0))
    }

    /// `op` (ReduceMin/Max/Mean) of `at` over `axes`, dims kept (OpenVINO's C API cannot hand
    /// over a rank-0 tensor's shape).
    fn reduce(&mut self, op: &str, at: Outlet, axes: &[usize]) -> Result<Outlet> {
        let info = self.graph.outlet_info(at).clone();
        let name = format!("{}/ovpot_{}{}", self.graph.nodes[at.node].name, op.to_lowercase(), at.port);
        let axes_t = Tensor::i64_from_vec(&[axes.len()], axes.iter().map(|&a| a as i64).collect())?;
        let c = self.graph.add_const(format!("{name}/axes"), axes_t);
        let kept: Vec<Dim> = match info.shape.dims() {
            Some(d) => d.iter().enumerate().map(|(i, d)| if axes.contains(&i) { Dim::Static(1) } else { *d }).collect(),
            None => return Err(Error::internal("reduction of a tensor of unknown rank")),
        };
        let id = self.graph.add_op(
            name,
            op,
            "opset1",
            Attrs::from_pairs(&[("keep_dims", "true")]),
            vec![at, Outlet::new(c, 0)],
            vec![PortInfo::new(info.element_type, PartialShape(Some(kept)))],
        );
        Ok(Outlet::new(id, 0))
    }

    /// Feeds one sample's values of `targets` into `part`.
    pub(super) fn accumulate(
        &self,
        part: &mut Partial,
        values: &[Tensor],
        sample: usize,
        name: &dyn Fn(Outlet) -> String,
    ) -> Result<()> {
        let f32s = |k: usize| -> Result<Vec<f32>> {
            Ok(values.get(k).ok_or_else(|| Error::internal("missing reduction"))?.to_f32_vec())
        };
        let check = |at: Outlet, v: &[f32]| -> Result<()> {
            if v.iter().all(|x| x.is_finite()) {
                Ok(())
            } else {
                Err(Error::invalid(format!("calibration sample {sample}: tensor '{}' holds NaN or Inf", name(at))))
            }
        };
        for (item, k) in &self.items {
            let k = *k;
            match item {
                Item::Shape { at } => {
                    let dims: Vec<usize> = values[k].to_i64_vec().into_iter().map(|d| d.max(0) as usize).collect();
                    part.shapes.entry(*at).or_insert(dims);
                }
                Item::StaticShape { at, dims } => {
                    part.shapes.entry(*at).or_insert_with(|| dims.clone());
                }
                Item::Scalars { at } => {
                    let (mn, mx) = (f32s(k)?, f32s(k + 1)?);
                    check(*at, &mn)?;
                    check(*at, &mx)?;
                    let (mn, mx) = (mn.first().copied().unwrap_or(0.0), mx.first().copied().unwrap_or(0.0));
                    part.scalars.entry(*at).or_default().push(SampleScalars {
                        min: mn as f64,
                        max: mx as f64,
                        abs_max: mn.abs().max(mx.abs()) as f64,
                        quantiles: vec![],
                    });
                }
                Item::ChannelMean { at, axis } => {
                    let m = f32s(k)?;
                    check(*at, &m)?;
                    let e = part.sums.entry((*at, *axis)).or_insert_with(|| (vec![0.0; m.len()], 0));
                    if e.0.len() != m.len() {
                        return Err(Error::mismatch(format!("tensor '{}' changed channel count", name(*at))));
                    }
                    for (acc, v) in e.0.iter_mut().zip(&m) {
                        *acc += *v as f64;
                    }
                    e.1 += 1;
                }
                Item::ChannelMinMax { at, axis } => {
                    let (mn, mx) = (f32s(k)?, f32s(k + 1)?);
                    check(*at, &mn)?;
                    check(*at, &mx)?;
                    let e = part
                        .minmax
                        .entry((*at, *axis))
                        .or_insert_with(|| (vec![f32::INFINITY; mn.len()], vec![f32::NEG_INFINITY; mn.len()]));
                    if e.0.len() != mn.len() {
                        return Err(Error::mismatch(format!("tensor '{}' changed channel count", name(*at))));
                    }
                    for (a, b) in e.0.iter_mut().zip(&mn) {
                        *a = a.min(*b);
                    }
                    for (a, b) in e.1.iter_mut().zip(&mx) {
                        *a = a.max(*b);
                    }
                }
                Item::ChannelAbsMax { at } => {
                    let m = f32s(k)?;
                    check(*at, &m)?;
                    let e = part.absmax.entry(*at).or_insert_with(|| vec![0.0; m.len()]);
                    if e.len() == m.len() {
                        for (a, b) in e.iter_mut().zip(&m) {
                            *a = a.max(*b);
                        }
                    }
                }
                Item::SampleChannelMinMax { at, abs_max } => {
                    let (mn, mx) = (f32s(k)?, f32s(k + 1)?);
                    check(*at, &mn)?;
                    check(*at, &mx)?;
                    if *abs_max {
                        let e = part.absmax.entry(*at).or_insert_with(|| vec![0.0; mn.len()]);
                        if e.len() == mn.len() {
                            for ((a, lo), hi) in e.iter_mut().zip(&mn).zip(&mx) {
                                *a = a.max(lo.abs()).max(hi.abs());
                            }
                        }
                    }
                    part.sample_minmax.entry(*at).or_default().push((mn, mx));
                }
                Item::Whole { at, requests } => part.observe(*at, &values[k], requests, sample, name)?,
            }
        }
        Ok(())
    }
}

/// Every axis of a rank-`rank` tensor but `axis` (negative counts from the end).
fn all_but(rank: usize, axis: isize) -> Option<Vec<usize>> {
    let a = if axis < 0 { axis + rank as isize } else { axis };
    if a < 0 || a >= rank as isize {
        return None;
    }
    Some((0..rank).filter(|&i| i != a as usize).collect())
}
