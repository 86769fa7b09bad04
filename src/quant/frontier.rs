//! Running many variants of one model cheaply: each candidate graph runs only what differs from
//! a base graph, starting from the values it shares with the base's run ([`shared_frontier`],
//! [`Plan::run_from`]); results are bit-identical to whole runs. Accuracy-aware ranking and the
//! per-layer analysis judge their candidates this way.

use crate::data::Sample;
use crate::engine::{NoObserver, Plan};
use crate::error::Result;
use crate::graph::{Graph, NodeId, Outlet};
use crate::tensor::Tensor;
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Outlets of `cand` whose values a run of `base` gives: the inputs of the nodes that differ
/// (by name, op, attributes, inputs and constant values) and the outputs that do not, each with
/// its outlet in `base`; and how many of `cand`'s non-constant nodes differ.
pub(crate) fn shared_frontier(base: &Graph, cand: &Graph) -> Result<(Vec<(Outlet, Outlet)>, usize)> {
    let by_name: HashMap<&str, NodeId> = base.nodes.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();
    let mut same: Vec<Option<NodeId>> = vec![None; cand.nodes.len()];
    for id in cand.topo_order()? {
        let n = &cand.nodes[id];
        let Some(&b) = by_name.get(n.name.as_str()) else { continue };
        let m = &base.nodes[b];
        let equal = n.op_type == m.op_type
            && n.version == m.version
            && n.attrs == m.attrs
            && n.inputs.len() == m.inputs.len()
            && n.inputs.iter().zip(&m.inputs).all(|(i, j)| same[i.node] == Some(j.node) && i.port == j.port)
            && match (&n.value, &m.value) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
                (None, None) => true,
                _ => false,
            };
        if equal {
            same[id] = Some(b);
        }
    }
    let konst = cand.constant_outlets()?;
    let mut pairs = vec![];
    let mut seen = HashSet::new();
    let mut share = |o: Outlet, pairs: &mut Vec<(Outlet, Outlet)>| {
        if let Some(b) = same[o.node] {
            if !konst[o.node] && seen.insert(o) {
                pairs.push((o, Outlet::new(b, o.port)));
            }
        }
    };
    let mut changed = 0;
    for (id, n) in cand.nodes.iter().enumerate() {
        if same[id].is_some() || konst[id] {
            continue;
        }
        changed += 1;
        for &i in &n.inputs {
            share(i, &mut pairs);
        }
    }
    for r in cand.results() {
        if let Some(&o) = cand.nodes[r].inputs.first() {
            share(o, &mut pairs);
        }
    }
    Ok((pairs, changed))
}

/// A candidate ready to run: its plan, the (candidate, base) outlets it takes from the base's
/// run, and how many of its ops differ.
type Candidate = (Plan, Vec<(Outlet, Outlet)>, usize);

/// Bytes of one sample's values at `outlets` (4 per element, the engine computes in f32; 1 MiB
/// for a dynamic shape).
fn frontier_bytes(g: &Graph, outlets: &[Outlet]) -> usize {
    outlets
        .iter()
        .map(|&o| {
            let info = g.outlet_info(o);
            info.shape.to_static().map_or(1 << 20, |s| s.iter().product::<usize>() * 4)
        })
        .sum()
}

/// Base values cached per wave of candidates stay within this many bytes.
const FRONTIER_BUDGET: usize = 256 << 20;

/// A base graph run on a set of inputs, from which candidates run what differs.
pub(crate) struct FrontierRun<'a> {
    base_graph: &'a Graph,
    base: Plan,
    seeds: Vec<HashMap<Outlet, Arc<Tensor>>>,
}

impl<'a> FrontierRun<'a> {
    /// `base_graph` ready to run on `inputs`.
    pub(crate) fn new(base_graph: &'a Graph, inputs: &[Sample]) -> Result<FrontierRun<'a>> {
        let base = Plan::new(base_graph)?;
        let seeds = inputs
            .iter()
            .map(|s| Ok(base.bind_inputs(s)?.into_iter().map(|(p, t)| (Outlet::new(p, 0), t)).collect()))
            .collect::<Result<_>>()?;
        Ok(FrontierRun { base_graph, base, seeds })
    }

    /// The base's non-constant ops (what a whole run computes).
    pub(crate) fn base_ops(&self) -> Result<usize> {
        Ok(self.base_graph.constant_outlets()?.iter().filter(|c| !**c).count().max(1))
    }

    /// Runs `count` candidates, built by `build(j)` a wave at a time (two per thread, built in
    /// parallel), on every input: `score(j, k, outputs)` sees candidate `j`'s outputs on input
    /// `k`; `finish(j, scores)` gets its scores batch by batch (the inputs are run in batches
    /// whose base values fit [`FRONTIER_BUDGET`]), in candidate order, after each wave. Returns
    /// how many candidate ops ran in all.
    pub(crate) fn run<R: Send>(
        &self,
        count: usize,
        build: impl Fn(usize) -> Result<Graph> + Sync,
        score: impl Fn(usize, usize, Vec<Tensor>) -> Result<R> + Sync,
        mut finish: impl FnMut(usize, Vec<Vec<R>>) -> Result<()>,
    ) -> Result<usize> {
        let n = self.seeds.len();
        let mut recomputed = 0usize;
        let wave = rayon::current_num_threads().max(1) * 2;
        for first in (0..count).step_by(wave) {
            let js: Vec<usize> = (first..(first + wave).min(count)).collect();
            let built: Vec<Candidate> = js
                .par_iter()
                .map(|&j| {
                    let g = build(j)?;
                    let (frontier, changed) = shared_frontier(self.base_graph, &g)?;
                    Ok((Plan::new(&g)?, frontier, changed))
                })
                .collect::<Result<_>>()?;
            recomputed += built.iter().map(|b| b.2).sum::<usize>();
            // The base values every candidate of this wave starts from.
            let mut union: Vec<Outlet> = built.iter().flat_map(|b| b.1.iter().map(|p| p.1)).collect();
            union.sort();
            union.dedup();
            let slot: HashMap<Outlet, usize> = union.iter().enumerate().map(|(k, &o)| (o, k)).collect();
            let per_sample = frontier_bytes(self.base_graph, &union).max(1);
            let batch = (FRONTIER_BUDGET / per_sample).clamp(1, n.max(1));
            let mut scores: Vec<Vec<Vec<R>>> = (0..built.len()).map(|_| Vec::new()).collect();
            for start in (0..n).step_by(batch) {
                let rows: Vec<usize> = (start..(start + batch).min(n)).collect();
                let shared: Vec<Vec<Arc<Tensor>>> = rows
                    .par_iter()
                    .map(|&k| self.base.run_from(&self.seeds[k], &union, &mut NoObserver))
                    .collect::<Result<_>>()?;
                // Every (candidate, sample) pair in parallel: a wave of one candidate still
                // uses every thread.
                let pairs: Vec<(usize, usize)> =
                    (0..built.len()).flat_map(|c| (0..rows.len()).map(move |r| (c, r))).collect();
                let mut part: Vec<Result<R>> = pairs
                    .par_iter()
                    .map(|&(c, r)| {
                        let (plan, frontier, _) = &built[c];
                        let seeds: HashMap<Outlet, Arc<Tensor>> =
                            frontier.iter().map(|&(cand, b)| (cand, shared[r][slot[&b]].clone())).collect();
                        let out: Vec<Tensor> = plan
                            .run_from(&seeds, &plan.output_outlets(), &mut NoObserver)?
                            .into_iter()
                            .map(|t| Arc::try_unwrap(t).unwrap_or_else(|a| (*a).clone()))
                            .collect();
                        score(js[c], rows[r], out)
                    })
                    .collect();
                for s in scores.iter_mut().rev() {
                    let tail = part.split_off(part.len() - rows.len());
                    s.push(tail.into_iter().collect::<Result<Vec<R>>>()?);
                }
            }
            for (j, s) in js.into_iter().zip(scores) {
                finish(j, s)?;
            }
        }
        Ok(recomputed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::InMemoryDataset;
    use crate::hooks::Hooks;
    use crate::model::Model;
    use crate::quant::config::QuantConfig;

    /// `n` samples of a stacked-input folder, one per sample.
    fn samples(dir: &std::path::Path, name: &str, n: usize) -> InMemoryDataset {
        let x = crate::npy::read_npy(&dir.join(format!("{name}.npy"))).unwrap();
        let samples = (0..n)
            .map(|i| {
                let t = crate::map_tensor!(&x, a => a.slice_axis(ndarray::Axis(0), ndarray::Slice::from(i..i + 1)).to_owned());
                vec![(name.to_string(), t)]
            })
            .collect();
        InMemoryDataset { samples }
    }

    /// Running a candidate from the values it shares with the current model gives the bits a
    /// whole run gives, for groups early, in the middle and at the end of ppocr_cls, and runs
    /// less of the model the later the group.
    #[test]
    fn candidates_run_from_shared_values_as_whole_runs() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ppocr_cls");
        let model = Model::read(&dir.join("model.xml"), None).unwrap();
        let calib = samples(&dir.join("calib"), "x", 16);
        let eval = samples(&dir.join("eval"), "x", 3);
        let q = crate::quant::prepare(&model, &QuantConfig::default(), &calib, &mut Hooks::default()).unwrap();
        let base_graph = q.materialize(&HashSet::new()).unwrap();
        let base = Plan::new(&base_graph).unwrap();
        let groups = q.revert_groups();
        let picks = [0, groups.len() / 2, groups.len() - 1];
        let mut changed_counts = vec![];
        for &gi in &picks {
            let reverted: HashSet<NodeId> = groups[gi].iter().copied().collect();
            let g = q.materialize(&reverted).unwrap();
            let (frontier, changed) = shared_frontier(&base_graph, &g).unwrap();
            changed_counts.push(changed);
            let plan = Plan::new(&g).unwrap();
            let targets = plan.output_outlets();
            for s in &eval.samples {
                let whole = plan.run(s).unwrap();
                let seeds: HashMap<Outlet, Arc<Tensor>> =
                    base.bind_inputs(s).unwrap().into_iter().map(|(p, t)| (Outlet::new(p, 0), t)).collect();
                let base_targets: Vec<Outlet> = frontier.iter().map(|p| p.1).collect();
                let shared = base.run_from(&seeds, &base_targets, &mut NoObserver).unwrap();
                let seeds: HashMap<Outlet, Arc<Tensor>> =
                    frontier.iter().zip(shared).map(|(&(c, _), v)| (c, v)).collect();
                let part = plan.run_from(&seeds, &targets, &mut NoObserver).unwrap();
                assert_eq!(whole.len(), part.len());
                for (a, b) in whole.iter().zip(&part) {
                    assert_eq!(a.to_f32(), b.to_f32(), "group {gi}");
                }
            }
        }
        let ops = base_graph.constant_outlets().unwrap().iter().filter(|c| !**c).count();
        assert!(changed_counts[2] * 4 < ops, "the last group reran {} of {ops} ops", changed_counts[2]);
        assert!(changed_counts[2] < changed_counts[0], "{changed_counts:?}");
    }
}
