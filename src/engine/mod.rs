//! The built-in CPU engine: a plan computed once (order, constant folding, when each buffer dies),
//! then runs on named inputs with an optional observer on every node output.

use crate::error::{Error, Result};
use crate::graph::{Graph, NodeId, Outlet};
use crate::ops::{self, BuildCtx, Op};
use crate::tensor::Tensor;
use std::collections::HashMap;
use std::sync::Arc;

mod fuse;

/// Time per op type, on when `OVPOT_PROFILE=1`; printed by [`profile::report`].
pub mod profile {
    use std::collections::BTreeMap;
    use std::sync::{Mutex, OnceLock};
    use std::time::Duration;

    static TABLE: Mutex<BTreeMap<String, (Duration, usize)>> = Mutex::new(BTreeMap::new());

    pub fn enabled() -> bool {
        static ON: OnceLock<bool> = OnceLock::new();
        *ON.get_or_init(|| std::env::var("OVPOT_PROFILE").is_ok_and(|v| v == "1"))
    }

    pub fn record(op: &str, d: Duration) {
        if let Ok(mut t) = TABLE.lock() {
            let e = t.entry(op.to_string()).or_default();
            e.0 += d;
            e.1 += 1;
        }
    }

    /// Op types by total time: (type, seconds, calls).
    pub fn report() -> Vec<(String, f64, usize)> {
        let t = TABLE.lock().map(|t| t.clone()).unwrap_or_default();
        let mut v: Vec<(String, f64, usize)> = t.into_iter().map(|(k, (d, n))| (k, d.as_secs_f64(), n)).collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v
    }
}

/// Sees every computed node output during a run (statistics collection).
pub trait Observer {
    /// Called once per computed outlet, in execution order.
    fn observe(&mut self, outlet: Outlet, value: &Tensor) -> Result<()>;

    /// Whether `outlet`'s value matters to this observer. Outlets nobody wants may be fused
    /// away (a convolution's output before its bias and clamp) and then never observed.
    fn wants(&self, _outlet: Outlet) -> bool {
        true
    }
}

impl<F: FnMut(Outlet, &Tensor) -> Result<()>> Observer for F {
    fn observe(&mut self, outlet: Outlet, value: &Tensor) -> Result<()> {
        self(outlet, value)
    }
}

/// An observer that wants nothing: runs fuse wherever they can.
pub struct NoObserver;
impl Observer for NoObserver {
    fn observe(&mut self, _: Outlet, _: &Tensor) -> Result<()> {
        Ok(())
    }
    fn wants(&self, _: Outlet) -> bool {
        false
    }
}

/// An executable plan for one graph.
pub struct Plan {
    graph: Graph,
    /// The nodes a full run computes (those a Result or sink depends on), topologically.
    order: Vec<NodeId>,
    /// Every node, topologically: [`Plan::run_from`] may ask for a node no Result reads (a
    /// probe added beside the model).
    all_order: Vec<NodeId>,
    ops: Vec<Option<Box<dyn Op>>>,
    /// Values known before running (Const and everything computed only from constants).
    folded: Vec<Option<Vec<Arc<Tensor>>>>,
    /// For each step of `order`, the outlets whose last reader that step is.
    frees: Vec<Vec<Outlet>>,
    /// Convolutions run with their bias and clamp, by head node (see [`fuse`]).
    fused: Vec<Option<fuse::Fused>>,
    parameters: Vec<NodeId>,
    results: Vec<NodeId>,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Plan({} nodes)", self.order.len())
    }
}

impl Plan {
    /// Builds a plan. A graph with ops the engine lacks is refused here, listing every missing
    /// (type, version) and the layers that use it.
    pub fn new(graph: &Graph) -> Result<Plan> {
        let missing = ops::missing_ops(graph);
        if !missing.is_empty() {
            let parts: Vec<String> = missing
                .iter()
                .map(|((t, v), _)| {
                    // Every layer, so one error tells the user all there is to replace.
                    let layers: Vec<String> = graph
                        .nodes
                        .iter()
                        .filter(|n| &n.op_type == t && &n.version == v)
                        .map(|n| match n.ir_id {
                            Some(id) => format!("id={id} '{}'", n.name),
                            None => format!("'{}'", n.name),
                        })
                        .collect();
                    format!("{t} ({v}) used by {} layer(s): {}", layers.len(), layers.join(", "))
                })
                .collect();
            return Err(Error::unsupported(format!(
                "the engine lacks {} op type(s): {}",
                missing.len(),
                parts.join("; ")
            )));
        }
        let graph = graph.clone();
        // Nodes no Result or sink depends on (a rewrite's leftovers: the FP16 weights and
        // Converts a quantized or smoothed weight replaced) are not folded, and a full run skips
        // them; folding them would hold a second FP32 copy of an LLM's weights.
        let live = graph.live_nodes();
        let all_order = graph.topo_order()?;
        let order: Vec<NodeId> = all_order.iter().copied().filter(|&id| live[id]).collect();
        let n = graph.nodes.len();
        let mut folded: Vec<Option<Vec<Arc<Tensor>>>> = vec![None; n];
        let mut ops_v: Vec<Option<Box<dyn Op>>> = (0..n).map(|_| None).collect();
        for &id in &all_order {
            let node = &graph.nodes[id];
            if node.is_const() {
                // A constant without its value (not read, or left out by a caller that always
                // seeds what it feeds) is neither folded nor run: a run that needs it fails.
                if let Some(v) = node.value.clone() {
                    folded[id] = Some(vec![v]);
                }
                continue;
            }
            if node.is_parameter() || node.is_result() {
                continue;
            }
            let const_inputs: Vec<Option<&Tensor>> =
                node.inputs.iter().map(|o| folded[o.node].as_ref().map(|v| v[o.port].as_ref())).collect();
            let all_const = !const_inputs.is_empty() && const_inputs.iter().all(|c| c.is_some()) && !node.reads_state();
            // A dead node is folded only when small (a shape computation another dead node's
            // build may need), and one that cannot be built is left out: only a run that asks
            // for it fails.
            const DEAD_FOLD_LIMIT: usize = 1 << 16;
            let fold = all_const
                && (live[id]
                    || const_inputs.iter().map(|c| c.map_or(0, |t| t.len())).sum::<usize>() <= DEAD_FOLD_LIMIT);
            let ctx = BuildCtx { node, id, graph: &graph, const_inputs: const_inputs.clone() };
            ops::check_input_count(node)?;
            let op = match ops::build(&ctx) {
                Ok(op) => op,
                Err(_) if !live[id] => continue,
                Err(e) => return Err(e),
            };
            if fold {
                let ins: Vec<&Tensor> = const_inputs.iter().map(|c| c.expect("all const")).collect();
                match op.eval(&ins) {
                    Ok(outs) => folded[id] = Some(outs.into_iter().map(Arc::new).collect()),
                    Err(_) if !live[id] => {}
                    Err(e) => return Err(Error::invalid(format!("{}: {e}", node.describe()))),
                }
            }
            ops_v[id] = Some(op);
        }
        let fused = fuse::find(&graph, &ops_v, &folded);
        let mut plan = Plan {
            fused,
            parameters: graph.parameters(),
            results: graph.results(),
            frees: vec![],
            graph,
            order,
            all_order,
            ops: ops_v,
            folded,
        };
        plan.frees = plan.free_lists(&plan.order.clone(), &[]);
        Ok(plan)
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Whether an outlet's value is known without running (constant-foldable).
    pub fn is_constant(&self, o: Outlet) -> bool {
        self.folded[o.node].is_some()
    }

    /// The folded value of a constant outlet.
    pub fn constant_value(&self, o: Outlet) -> Option<&Arc<Tensor>> {
        self.folded[o.node].as_ref().map(|v| &v[o.port])
    }

    /// Drops the folded value of `o` and of the chain of single-input folded nodes behind it
    /// (a weight and its Convert) that nothing else reads, for a caller that will always seed
    /// `o` with a value of its own ([`Plan::run_from`]): the plan then no longer holds the old
    /// value alive. A run that needs `o` unseeded fails.
    pub fn forget_folded(&mut self, o: Outlet) {
        fn readers(g: &Graph, id: NodeId) -> usize {
            g.nodes.iter().map(|n| n.inputs.iter().filter(|i| i.node == id).count()).sum()
        }
        let mut id = o.node;
        while self.folded[id].is_some() && (id == o.node || readers(&self.graph, id) == 1) {
            self.folded[id] = None;
            self.graph.nodes[id].value = None;
            match self.graph.nodes[id].inputs.as_slice() {
                [single] => id = single.node,
                _ => break,
            }
        }
    }

    /// Input names in model order.
    pub fn input_names(&self) -> Vec<String> {
        self.parameters.iter().map(|&p| self.graph.parameter_name(p).to_string()).collect()
    }

    /// The outlets the Results read, in output order.
    pub fn output_outlets(&self) -> Vec<Outlet> {
        self.results.iter().map(|&r| self.graph.nodes[r].inputs[0]).collect()
    }

    fn free_lists(&self, steps: &[NodeId], keep: &[Outlet]) -> Vec<Vec<Outlet>> {
        let mut last: HashMap<Outlet, usize> = HashMap::new();
        for (i, &id) in steps.iter().enumerate() {
            for &o in &self.graph.nodes[id].inputs {
                last.insert(o, i);
            }
        }
        let mut frees = vec![vec![]; steps.len()];
        for (o, i) in last {
            if !keep.contains(&o) {
                frees[i].push(o);
            }
        }
        for f in &mut frees {
            f.sort();
        }
        frees
    }

    /// Checks and orders named inputs as the parameters expect them.
    pub fn bind_inputs(&self, inputs: &[(String, Tensor)]) -> Result<Vec<(NodeId, Arc<Tensor>)>> {
        let tensors = self.graph.bind_sample(&self.parameters, inputs)?;
        let bound: Vec<(NodeId, Arc<Tensor>)> =
            self.parameters.iter().zip(tensors).map(|(&p, t)| (p, Arc::new(t.clone()))).collect();
        for (n, _) in inputs {
            if self.graph.find_parameter(n).is_none() {
                return Err(Error::invalid(format!(
                    "'{n}' is not an input of the model (inputs: {:?})",
                    self.input_names()
                )));
            }
        }
        Ok(bound)
    }

    /// Runs the model on named inputs; returns the outputs in model order.
    pub fn run(&self, inputs: &[(String, Tensor)]) -> Result<Vec<Tensor>> {
        self.run_observed(inputs, &mut NoObserver)
    }

    /// Runs the model, showing every computed node output to `observer`.
    pub fn run_observed(&self, inputs: &[(String, Tensor)], observer: &mut dyn Observer) -> Result<Vec<Tensor>> {
        let bound = self.bind_inputs(inputs)?;
        let seeds: HashMap<Outlet, Arc<Tensor>> = bound.into_iter().map(|(p, t)| (Outlet::new(p, 0), t)).collect();
        let outs = self.output_outlets();
        let vals = self.execute(&seeds, &outs, &self.order, &self.frees, observer)?;
        Ok(vals.into_iter().map(|t| Arc::try_unwrap(t).unwrap_or_else(|a| (*a).clone())).collect())
    }

    /// Runs only what `targets` need, starting from given activations (`seeds`); parameters not
    /// among the seeds must not be needed.
    pub fn run_from(
        &self,
        seeds: &HashMap<Outlet, Arc<Tensor>>,
        targets: &[Outlet],
        observer: &mut dyn Observer,
    ) -> Result<Vec<Arc<Tensor>>> {
        let n = self.graph.nodes.len();
        let mut needed = vec![false; n];
        let mut stack: Vec<NodeId> = targets.iter().map(|o| o.node).collect();
        while let Some(id) = stack.pop() {
            if needed[id] {
                continue;
            }
            needed[id] = true;
            if self.folded[id].is_some() {
                continue;
            }
            for o in &self.graph.nodes[id].inputs {
                if !seeds.contains_key(o) {
                    stack.push(o.node);
                }
            }
        }
        let steps: Vec<NodeId> = self.all_order.iter().copied().filter(|&id| needed[id]).collect();
        let frees = self.free_lists(&steps, targets);
        self.execute(seeds, targets, &steps, &frees, observer)
    }

    fn execute(
        &self,
        seeds: &HashMap<Outlet, Arc<Tensor>>,
        targets: &[Outlet],
        steps: &[NodeId],
        frees: &[Vec<Outlet>],
        observer: &mut dyn Observer,
    ) -> Result<Vec<Arc<Tensor>>> {
        let mut vals: HashMap<Outlet, Arc<Tensor>> = seeds.clone();
        let mut in_steps = vec![false; self.graph.nodes.len()];
        steps.iter().for_each(|&id| in_steps[id] = true);
        // Nodes whose work a fused op already did in this run.
        let mut absorbed = vec![false; self.graph.nodes.len()];
        for (i, &id) in steps.iter().enumerate() {
            let node = &self.graph.nodes[id];
            if absorbed[id] {
                continue;
            }
            let seeded_all = (0..node.outputs.len().max(1)).all(|p| vals.contains_key(&Outlet::new(id, p)));
            if seeded_all && !node.is_result() {
                // given as a seed (e.g. a parameter): nothing to compute
            } else if let Some(f) = &self.folded[id] {
                for (p, v) in f.iter().enumerate() {
                    vals.insert(Outlet::new(id, p), v.clone());
                }
            } else if node.is_parameter() {
                return Err(Error::invalid(format!(
                    "input '{}' is needed but was not given",
                    self.graph.parameter_name(id)
                )));
            } else if node.is_result() {
                // results just forward their input
            } else {
                let op = self.ops[id].as_ref().ok_or_else(|| match node.is_const() {
                    true => Error::internal(format!("{}: the plan holds no value for this constant", node.describe())),
                    false => Error::internal("op missing in plan"),
                })?;
                let ins: Vec<Arc<Tensor>> = node
                    .inputs
                    .iter()
                    .map(|o| {
                        vals.get(o)
                            .cloned()
                            .ok_or_else(|| Error::internal(format!("{}: input {:?} not computed", node.describe(), o)))
                    })
                    .collect::<Result<_>>()?;
                // Values read for the last time here leave the map first, so an op can reuse
                // their buffers (see `Op::eval_owned`).
                for o in &frees[i] {
                    if !targets.contains(o) {
                        vals.remove(o);
                    }
                }
                let fused = self.fused[id].as_ref().filter(|f| {
                    f.hidden.iter().all(|o| !observer.wants(*o) && !targets.contains(o))
                        && f.absorbed.iter().all(|&b| in_steps[b])
                });
                let (op, first_outlet) = match fused {
                    Some(f) => {
                        f.absorbed.iter().for_each(|&b| absorbed[b] = true);
                        (f.op.as_ref(), f.result)
                    }
                    None => (op.as_ref(), Outlet::new(id, 0)),
                };
                let started = profile::enabled().then(std::time::Instant::now);
                let outs = op.eval_owned(ins).map_err(|e| match e {
                    Error::InvalidArgument(m) | Error::Mismatch(m) => {
                        Error::mismatch(format!("{}: {m}", node.describe()))
                    }
                    other => other,
                })?;
                if let Some(t0) = started {
                    profile::record(&node.op_type, t0.elapsed());
                }
                for (p, t) in outs.into_iter().enumerate() {
                    let o = Outlet::new(first_outlet.node, first_outlet.port + p);
                    observer.observe(o, &t)?;
                    vals.insert(o, Arc::new(t));
                }
            }
            for o in &frees[i] {
                if !targets.contains(o) {
                    vals.remove(o);
                }
            }
        }
        targets
            .iter()
            .map(|o| vals.get(o).cloned().ok_or_else(|| Error::internal(format!("target {:?} was not computed", o))))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::Observer;
    use crate::graph::Outlet;
    use crate::model::Model;
    use crate::tensor::Tensor;
    use ndarray::{ArrayD, IxDyn};

    fn port(id: usize, prec: &str, dims: &[usize]) -> String {
        let d: String = dims.iter().map(|d| format!("<dim>{d}</dim>")).collect();
        format!("<port id=\"{id}\" precision=\"{prec}\">{d}</port>")
    }

    /// relu(x) is read by an Add, by a Multiply twice and last by a Reshape; the Add's result by
    /// a Subtract then a Clamp: every elementwise op may write over a dying input, and none may
    /// touch a value still to be read.
    #[test]
    fn in_place_ops_leave_live_values_alone() {
        let f = |id, dims: &[usize]| port(id, "FP32", dims);
        let layer = |id: usize, ty: &str, data: &str, ins: &[String], outs: &[String]| {
            format!(
                "<layer id=\"{id}\" name=\"l{id}\" type=\"{ty}\" version=\"opset1\">{}<input>{}</input><output>{}</output></layer>\n",
                if data.is_empty() { String::new() } else { format!("<data {data}/>") },
                ins.concat(),
                outs.concat()
            )
            .replace("<input></input>", "")
            .replace("<output></output>", "")
        };
        let layers = [
            layer(0, "Parameter", "shape=\"1,4\" element_type=\"f32\"", &[], &[f(0, &[1, 4])]),
            layer(1, "Relu", "", &[f(0, &[1, 4])], &[f(1, &[1, 4])]),
            layer(2, "Const", "element_type=\"f32\" shape=\"4\" offset=\"0\" size=\"16\"", &[], &[f(0, &[4])]),
            layer(3, "Add", "", &[f(0, &[1, 4]), f(1, &[4])], &[f(2, &[1, 4])]),
            layer(4, "Multiply", "", &[f(0, &[1, 4]), f(1, &[1, 4])], &[f(2, &[1, 4])]),
            layer(5, "Subtract", "", &[f(0, &[1, 4]), f(1, &[1, 4])], &[f(2, &[1, 4])]),
            layer(6, "Clamp", "min=\"0\" max=\"2\"", &[f(0, &[1, 4])], &[f(1, &[1, 4])]),
            layer(
                7,
                "Const",
                "element_type=\"i64\" shape=\"1\" offset=\"16\" size=\"8\"",
                &[],
                &[port(0, "I64", &[1])],
            ),
            layer(8, "Reshape", "special_zero=\"false\"", &[f(0, &[1, 4]), port(1, "I64", &[1])], &[f(2, &[4])]),
            layer(9, "Result", "", &[f(0, &[1, 4])], &[]),
            layer(10, "Result", "", &[f(0, &[4])], &[]),
        ];
        let edges = [(0, 0, 1, 0), (1, 1, 3, 0), (2, 0, 3, 1), (1, 1, 4, 0), (1, 1, 4, 1), (3, 2, 5, 0), (4, 2, 5, 1)]
            .iter()
            .chain(&[(5, 2, 6, 0), (1, 1, 8, 0), (7, 0, 8, 1), (6, 1, 9, 0), (8, 2, 10, 0)])
            .map(|(a, b, c, d)| {
                format!("<edge from-layer=\"{a}\" from-port=\"{b}\" to-layer=\"{c}\" to-port=\"{d}\"/>")
            })
            .collect::<String>();
        let xml =
            format!("<net name=\"t\" version=\"11\"><layers>{}</layers><edges>{edges}</edges></net>", layers.concat());
        let mut bin: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        bin.extend(4i64.to_le_bytes());
        let model = Model::from_memory(xml.as_bytes(), &bin).unwrap();
        let plan = model.plan().unwrap();
        let x = Tensor::F32(ArrayD::from_shape_vec(IxDyn(&[1, 4]), vec![-1.0, 0.5, 2.0, -3.0]).unwrap());
        for _ in 0..2 {
            let out = plan.run(&[("l0".to_string(), x.clone())]).unwrap();
            // relu = [0, .5, 2, 0]; add = [1, 2.5, 5, 4]; mul = [0, .25, 4, 0]; sub = [1, 2.25, 1, 4]
            assert_eq!(out[0].to_f32().iter().copied().collect::<Vec<_>>(), [1.0, 2.0, 1.0, 2.0]);
            assert_eq!(out[1].to_f32().iter().copied().collect::<Vec<_>>(), [0.0, 0.5, 2.0, 0.0]);
            assert_eq!(out[1].shape(), [4]);
        }
        assert_eq!(x.to_f32().iter().copied().collect::<Vec<_>>(), [-1.0, 0.5, 2.0, -3.0]);
    }

    /// Observes every outlet but wants only those listed (or all).
    struct Seen {
        wanted: Option<Vec<Outlet>>,
        seen: Vec<Outlet>,
    }

    impl Observer for Seen {
        fn observe(&mut self, outlet: Outlet, _: &Tensor) -> crate::Result<()> {
            self.seen.push(outlet);
            Ok(())
        }
        fn wants(&self, outlet: Outlet) -> bool {
            self.wanted.as_ref().is_none_or(|w| w.contains(&outlet))
        }
    }

    /// mnist_cnn's Convolution → Add → ReLU chains run fused unless an observer wants the values
    /// in between; both ways give the same bits.
    #[test]
    fn conv_bias_relu_fused_only_when_nobody_looks() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/mnist_cnn");
        let model = Model::read(&dir.join("model.xml"), None).unwrap();
        let plan = model.plan().unwrap();
        let x = crate::npy::read_npy(&dir.join("calib/input.npy")).unwrap();
        let x = crate::map_tensor!(&x, a => a.slice_axis(ndarray::Axis(0), ndarray::Slice::from(0..2)).to_owned());
        let inputs = [("input".to_string(), x)];
        let graph = plan.graph();
        let convs: Vec<Outlet> = (0..graph.nodes.len())
            .filter(|&i| graph.nodes[i].op_type == "Convolution")
            .map(|i| Outlet::new(i, 0))
            .collect();
        assert_eq!(convs.len(), 2);
        let mut all = Seen { wanted: None, seen: vec![] };
        let unfused = plan.run_observed(&inputs, &mut all).unwrap();
        assert!(convs.iter().all(|c| all.seen.contains(c)));
        let mut few = Seen { wanted: Some(vec![]), seen: vec![] };
        let fused = plan.run_observed(&inputs, &mut few).unwrap();
        assert!(convs.iter().all(|c| !few.seen.contains(c)), "conv outputs were computed: {:?}", few.seen);
        assert!(few.seen.len() + 4 <= all.seen.len());
        assert_eq!(fused[0].to_f32(), unfused[0].to_f32());
        assert_eq!(plan.run(&inputs).unwrap()[0].to_f32(), unfused[0].to_f32());
    }
}
