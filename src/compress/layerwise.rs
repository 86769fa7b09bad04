//! Inputs of weighted layers computed layer after layer, each with the weights the layers
//! before it were given (GPTQ's sequential view; NNCF's `LayerwiseEngine`).
//!
//! The targets are split into generations: a target's generation is one more than the latest
//! generation of any target upstream of it, so q, k and v (or gate and up) of one block share
//! one. A generation's inputs are computed after every earlier generation's new weights are
//! set. Where the backend reruns from a frontier (the built-in engine) each op runs once per
//! sample over the whole schedule: a generation starts from the values the earlier ones left,
//! kept only until their last reader has run. Elsewhere each generation runs the whole model.

use crate::backend::{Backend, Executable};
use crate::data::Dataset;
use crate::engine::{NoObserver, Plan};
use crate::error::{Error, Result};
use crate::graph::{Graph, Node, NodeId, Outlet};
use crate::tensor::Tensor;
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// `targets` grouped by generation, in order; within one, in the order given.
pub(crate) fn generations(graph: &Graph, targets: &[NodeId]) -> Result<Vec<Vec<NodeId>>> {
    let is_target: HashSet<NodeId> = targets.iter().copied().collect();
    let n = graph.nodes.len();
    // Generations of targets upstream of a node's output (the node itself included).
    let mut after = vec![0usize; n];
    let mut generation = vec![0usize; n];
    for id in graph.topo_order()? {
        let g = graph.nodes[id].inputs.iter().map(|o| after[o.node]).max().unwrap_or(0);
        generation[id] = g;
        after[id] = g + usize::from(is_target.contains(&id));
    }
    let count = targets.iter().map(|&t| generation[t] + 1).max().unwrap_or(0);
    let mut out = vec![vec![]; count];
    for &t in targets {
        out[generation[t]].push(t);
    }
    out.retain(|g| !g.is_empty());
    Ok(out)
}

/// One generation's wanted values: per outlet, one tensor per sample.
pub(crate) type Inputs = Vec<(Outlet, Vec<Arc<Tensor>>)>;

/// The runs of a schedule: [`Layerwise::inputs`] for each generation in turn, with
/// [`Layerwise::weight_changed`] for every weight set between them.
pub(crate) struct Layerwise<'a> {
    data: &'a dyn Dataset,
    samples: usize,
    /// Per generation, the outlets wanted (each once).
    wanted: Vec<Vec<Outlet>>,
    next: usize,
    how: How<'a>,
}

enum How<'a> {
    Frontier(Box<Frontier>),
    Whole(&'a Backend),
}

/// The built-in engine's schedule: one plan, each sample's values still to be read.
struct Frontier {
    plan: Plan,
    caches: Vec<HashMap<Outlet, Arc<Tensor>>>,
    /// New values of weight outlets (as the ops read them, f32).
    weights: HashMap<Outlet, Arc<Tensor>>,
    /// Per generation: what its run returns (wanted first, then values later runs read).
    returned: Vec<Vec<Outlet>>,
    /// Per generation: the returned values later runs read (kept in the caches).
    kept: Vec<HashSet<Outlet>>,
    /// Per generation: the values no later run reads.
    dropped: Vec<Vec<Outlet>>,
    /// Per generation: the new weights no later run reads.
    weights_dropped: Vec<Vec<Outlet>>,
}

impl<'a> Layerwise<'a> {
    /// The schedule for `wanted` (per generation, the outlets to compute) on the first
    /// `samples` samples of `data`; `weights_of[g]` are the weight outlets whose values change
    /// after generation `g` (read by later generations). On a frontier, the plan holds none of
    /// those weights (they are always seeded) and `load` gives the constants the runs need that
    /// `graph` holds no value for (a streamed model's embedding).
    pub(crate) fn new(
        graph: &Graph,
        wanted: Vec<Vec<Outlet>>,
        weights_of: &[Vec<Outlet>],
        data: &'a dyn Dataset,
        samples: usize,
        backend: &'a Backend,
        load: &mut dyn FnMut(&Node) -> Result<Arc<Tensor>>,
    ) -> Result<Layerwise<'a>> {
        if samples == 0 {
            return Err(Error::invalid("the calibration dataset is empty"));
        }
        let how = if backend.reruns_from_frontier() {
            How::Frontier(Box::new(Frontier::new(graph, &wanted, weights_of, data, samples, load)?))
        } else {
            How::Whole(backend)
        };
        Ok(Layerwise { data, samples, wanted, next: 0, how })
    }

    /// The next generation's inputs, computed on `graph` as it is now.
    pub(crate) fn inputs(&mut self, graph: &Graph) -> Result<Inputs> {
        let g = self.next;
        let wanted = self.wanted.get(g).ok_or_else(|| Error::internal("layer-wise runs past the schedule"))?.clone();
        self.next += 1;
        let per_sample: Vec<Vec<Arc<Tensor>>> = match &mut self.how {
            How::Frontier(f) => f.run(g, wanted.len())?,
            How::Whole(backend) => whole_runs(graph, &wanted, self.data, self.samples, backend)?,
        };
        Ok(wanted.iter().enumerate().map(|(k, &o)| (o, per_sample.iter().map(|s| s[k].clone()).collect())).collect())
    }

    /// Whether the runs take new weights from [`Layerwise::weight_changed`] (else they read
    /// them from the graph given to [`Layerwise::inputs`]).
    pub(crate) fn seeds_weights(&self) -> bool {
        matches!(self.how, How::Frontier(_))
    }

    /// The op input `outlet` now reads `value` (f32, as the op computes).
    pub(crate) fn weight_changed(&mut self, outlet: Outlet, value: Arc<Tensor>) {
        if let How::Frontier(f) = &mut self.how {
            // The plan's copy of the old weight is not read again: it leaves memory now.
            f.plan.forget_folded(outlet);
            f.weights.insert(outlet, value);
        }
    }
}

impl Frontier {
    fn new(
        graph: &Graph,
        wanted: &[Vec<Outlet>],
        weights_of: &[Vec<Outlet>],
        data: &dyn Dataset,
        samples: usize,
        load: &mut dyn FnMut(&Node) -> Result<Arc<Tensor>>,
    ) -> Result<Frontier> {
        let plan = Plan::new(&plan_graph(graph, wanted, weights_of, load)?)?;
        let caches = (0..samples)
            .map(|i| {
                let sample = data.get(i).map_err(|e| e.with_sample("calibration", i))?;
                let bound = plan.bind_inputs(&sample).map_err(|e| e.with_sample("calibration", i))?;
                Ok(bound.into_iter().map(|(p, t)| (Outlet::new(p, 0), t)).collect())
            })
            .collect::<Result<Vec<HashMap<Outlet, Arc<Tensor>>>>>()?;
        // Walk the schedule once: which run computes each value, and which last reads it.
        let mut available: HashSet<Outlet> = caches.first().map(|c| c.keys().copied().collect()).unwrap_or_default();
        let parameters = available.clone();
        let mut seeded: HashSet<Outlet> = HashSet::new();
        let mut made_in: HashMap<Outlet, usize> = HashMap::new();
        let mut last_read: HashMap<Outlet, usize> = HashMap::new();
        let mut seed_read: HashMap<Outlet, usize> = HashMap::new();
        for (g, outs) in wanted.iter().enumerate() {
            let mut computed: HashSet<NodeId> = HashSet::new();
            let mut stack: Vec<NodeId> = vec![];
            for &o in outs {
                last_read.insert(o, g);
                if !available.contains(&o) {
                    stack.push(o.node);
                }
            }
            while let Some(id) = stack.pop() {
                if plan.is_constant(Outlet::new(id, 0)) || !computed.insert(id) {
                    continue;
                }
                for &o in &graph.nodes[id].inputs {
                    if seeded.contains(&o) {
                        seed_read.insert(o, g);
                        continue;
                    }
                    if plan.is_constant(o) {
                        continue;
                    }
                    if available.contains(&o) {
                        last_read.insert(o, g);
                    } else {
                        stack.push(o.node);
                    }
                }
            }
            for &id in &computed {
                for p in 0..graph.nodes[id].outputs.len().max(1) {
                    let o = Outlet::new(id, p);
                    available.insert(o);
                    made_in.insert(o, g);
                }
            }
            if let Some(ws) = weights_of.get(g) {
                seeded.extend(ws.iter().copied());
            }
        }
        let count = wanted.len();
        let mut returned: Vec<Vec<Outlet>> = wanted.to_vec();
        let mut kept: Vec<HashSet<Outlet>> = vec![HashSet::new(); count];
        let mut dropped: Vec<Vec<Outlet>> = vec![vec![]; count];
        for (&o, &g) in &last_read {
            if let Some(&m) = made_in.get(&o) {
                if g > m {
                    kept[m].insert(o);
                    if !returned[m].contains(&o) {
                        returned[m].push(o);
                    }
                }
            }
            if !parameters.contains(&o) {
                dropped[g].push(o);
            }
        }
        let mut weights_dropped: Vec<Vec<Outlet>> = vec![vec![]; count];
        for (&o, &g) in &seed_read {
            weights_dropped[g].push(o);
        }
        Ok(Frontier { plan, caches, weights: HashMap::new(), returned, kept, dropped, weights_dropped })
    }

    /// Generation `g`'s run on every sample; per sample the first `wanted` returned values.
    fn run(&mut self, g: usize, wanted: usize) -> Result<Vec<Vec<Arc<Tensor>>>> {
        let (plan, weights, targets) = (&self.plan, &self.weights, &self.returned[g]);
        let results: Vec<Result<Vec<Arc<Tensor>>>> = self
            .caches
            .par_iter()
            .enumerate()
            .map(|(i, cache)| {
                let mut seeds = cache.clone();
                seeds.extend(weights.iter().map(|(&o, t)| (o, t.clone())));
                plan.run_from(&seeds, targets, &mut NoObserver).map_err(|e| e.with_sample("calibration", i))
            })
            .collect();
        let mut out = Vec::with_capacity(results.len());
        for (cache, r) in self.caches.iter_mut().zip(results) {
            let values = r?;
            for (&o, v) in targets.iter().zip(&values) {
                if self.kept[g].contains(&o) {
                    cache.insert(o, v.clone());
                }
            }
            for o in &self.dropped[g] {
                cache.remove(o);
            }
            out.push(values.into_iter().take(wanted).collect());
        }
        for o in &self.weights_dropped[g] {
            self.weights.remove(o);
        }
        Ok(out)
    }
}

/// The graph the frontier's plan runs: without the weights that are always seeded (each
/// constant behind a seeded outlet that nothing else reads), and with every constant the runs
/// need that `graph` holds no value for given by `load`.
fn plan_graph(
    graph: &Graph,
    wanted: &[Vec<Outlet>],
    weights_of: &[Vec<Outlet>],
    load: &mut dyn FnMut(&Node) -> Result<Arc<Tensor>>,
) -> Result<Graph> {
    let mut g = graph.clone();
    let mut readers = vec![0usize; g.nodes.len()];
    for n in &g.nodes {
        for i in &n.inputs {
            readers[i.node] += 1;
        }
    }
    let seeded: HashSet<Outlet> = weights_of.iter().flatten().copied().collect();
    for &w in &seeded {
        let mut id = w.node;
        loop {
            if id != w.node && readers[id] != 1 {
                break;
            }
            if g.nodes[id].is_const() {
                g.nodes[id].value = None;
                break;
            }
            match g.nodes[id].inputs.as_slice() {
                [single] => id = single.node,
                _ => break,
            }
        }
    }
    let mut seen = vec![false; g.nodes.len()];
    let mut stack: Vec<NodeId> = wanted.iter().flatten().map(|o| o.node).collect();
    while let Some(id) = stack.pop() {
        if std::mem::replace(&mut seen[id], true) {
            continue;
        }
        if g.nodes[id].is_const() {
            if g.nodes[id].value.is_none() {
                let v = load(&g.nodes[id])?;
                g.nodes[id].value = Some(v);
            }
            continue;
        }
        stack.extend(g.nodes[id].inputs.iter().filter(|o| !seeded.contains(o)).map(|o| o.node));
    }
    Ok(g)
}

/// One generation on a backend that runs whole models: `graph` compiled up to `wanted`, every
/// sample run (model inputs wanted directly are taken from the sample).
fn whole_runs(
    graph: &Graph,
    wanted: &[Outlet],
    data: &dyn Dataset,
    samples: usize,
    backend: &Backend,
) -> Result<Vec<Vec<Arc<Tensor>>>> {
    let computed: Vec<Outlet> = wanted.iter().copied().filter(|o| !graph.nodes[o.node].is_parameter()).collect();
    let exec: Option<Executable> = match computed.is_empty() {
        true => None,
        false => Some(backend.compile(graph, &computed, 0)?),
    };
    let one = |i: usize| -> Result<Vec<Arc<Tensor>>> {
        let sample = data.get(i).map_err(|e| e.with_sample("calibration", i))?;
        let mut outs = match &exec {
            Some(x) => x.run(&sample, &mut NoObserver).map_err(|e| e.with_sample("calibration", i))?,
            None => vec![],
        }
        .into_iter();
        wanted
            .iter()
            .map(|&o| {
                if graph.nodes[o.node].is_parameter() {
                    let name = graph.parameter_name(o.node);
                    let t = sample
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, t)| t.clone())
                        .ok_or_else(|| Error::invalid(format!("calibration sample {i} has no input '{name}'")))?;
                    Ok(Arc::new(t))
                } else {
                    outs.next().map(Arc::new).ok_or_else(|| Error::internal("a layer-wise run returned too little"))
                }
            })
            .collect()
    };
    let in_flight = |f: &(dyn Fn() -> Vec<Result<Vec<Arc<Tensor>>>> + Sync)| match &exec {
        Some(x) => x.in_flight(f),
        None => f(),
    };
    let results = in_flight(&|| (0..samples).into_par_iter().map(one).collect());
    results.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;
    use crate::graph::{Attrs, Node, PartialShape, PortInfo};
    use crate::tensor::ElementType;

    fn port() -> PortInfo {
        PortInfo::new(ElementType::F32, PartialShape::from_static(&[1, 4]))
    }

    fn matmul(g: &mut Graph, name: &str, x: Outlet) -> (NodeId, Outlet) {
        let w = Outlet::new(g.add_const(format!("{name}.w"), Tensor::f32_from_vec(&[4, 4], vec![0.5; 16]).unwrap()), 0);
        let id = g.add_op(name, "MatMul", "opset1", Attrs::default(), vec![x, w], vec![port()]);
        (id, Outlet::new(id, 0))
    }

    /// On the tiny stateful Llama: each generation's inputs, after the earlier generations'
    /// weights changed, are bit-identical to a whole run of the changed model; the values a later
    /// generation reads are kept, not recomputed.
    #[test]
    fn inputs_follow_the_changed_weights_and_values_are_kept() {
        use crate::compress::select::weight_constant;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny_llama_stateful");
        let model = crate::Model::read(&dir.join("model.xml"), None).unwrap();
        let data = crate::data::NpyFolderDataset::open(&dir.join("calib"), &model.inputs()).unwrap();
        let mut graph = model.graph().clone();
        let targets: Vec<NodeId> = (0..graph.nodes.len())
            .filter(|&id| {
                graph.nodes[id].op_type == "MatMul"
                    && weight_constant(&graph, id, 1).is_some()
                    && graph.nodes[id].name.contains("layers")
            })
            .collect();
        assert_eq!(targets.len(), 14);
        let gens = generations(&graph, &targets).unwrap();
        assert_eq!(gens.iter().map(|g| g.len()).collect::<Vec<_>>(), [3, 1, 2, 1, 3, 1, 2, 1]);
        let wanted: Vec<Vec<Outlet>> = gens
            .iter()
            .map(|g| {
                let mut w: Vec<Outlet> = g.iter().map(|&t| graph.nodes[t].inputs[0]).collect();
                w.dedup();
                w
            })
            .collect();
        let weights_of: Vec<Vec<Outlet>> =
            gens.iter().map(|g| g.iter().map(|&t| graph.nodes[t].inputs[1]).collect()).collect();
        let backend = Backend::builtin();
        let mut load = |n: &Node| -> Result<Arc<Tensor>> { Err(Error::internal(format!("{} not loaded", n.name))) };
        let mut runs = Layerwise::new(&graph, wanted.clone(), &weights_of, &data, 2, &backend, &mut load).unwrap();
        if let How::Frontier(f) = &runs.how {
            for (g, outs) in wanted.iter().enumerate().take(gens.len() - 1) {
                for o in outs {
                    assert!(f.kept[g].contains(o), "generation {g}: its input {o:?} is read again next");
                }
            }
        } else {
            panic!("the built-in engine reruns from a frontier");
        }
        for (g, gen) in gens.iter().enumerate() {
            let got = runs.inputs(&graph).unwrap();
            let whole = whole_runs(&graph, &wanted[g], &data, 2, &backend).unwrap();
            for (k, (o, values)) in got.iter().enumerate() {
                assert_eq!(*o, wanted[g][k]);
                for (s, v) in values.iter().enumerate() {
                    assert_eq!(v.to_f32(), whole[s][k].to_f32(), "generation {g}, sample {s}");
                }
            }
            // New weights for this generation: halved.
            for &t in gen {
                let c = weight_constant(&graph, t, 1).unwrap();
                let halved = Tensor::F32(graph.nodes[c].value.as_ref().unwrap().to_f32().mapv(|v| v * 0.5));
                graph.nodes[c].value = Some(Arc::new(halved.clone()));
                runs.weight_changed(graph.nodes[t].inputs[1], Arc::new(halved));
            }
        }
    }

    #[test]
    fn a_generation_follows_the_latest_target_upstream() {
        // x -> a -> b; x -> c; (b + c) -> d
        let mut g = Graph::default();
        let mut p = Node::new("x", "Parameter", "opset1");
        p.outputs.push(port());
        let x = Outlet::new(g.add_node(p), 0);
        let (a, ao) = matmul(&mut g, "a", x);
        let (b, bo) = matmul(&mut g, "b", ao);
        let (c, co) = matmul(&mut g, "c", x);
        let s = Outlet::new(g.add_op("s", "Add", "opset1", Attrs::default(), vec![bo, co], vec![port()]), 0);
        let (d, _) = matmul(&mut g, "d", s);
        assert_eq!(generations(&g, &[a, b, c, d]).unwrap(), vec![vec![a, c], vec![b], vec![d]]);
        // Targets given in another order keep that order within a generation.
        assert_eq!(generations(&g, &[d, c, b, a]).unwrap(), vec![vec![c, a], vec![b], vec![d]]);
    }
}
