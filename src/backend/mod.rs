//! Where quantization's inferences run: "run this graph on these samples and hand me these
//! outlets", by the built-in engine or by OpenVINO loaded at run time. `quant/` asks through
//! [`Backend::compile`] and [`Executable::run`] and never learns which one it got; where the two
//! differ it asks what the backend can do (the capability questions below); the report names it.
//!
//! The built-in engine computes IR semantics exactly; [`Backend::emulating`] makes it compute as
//! OpenVINO's CPU plugin does on a CPU with a given int8 arithmetic ([`cpu_plugin`]).

pub mod cpu_plugin;
pub mod openvino;

use crate::data::Dataset;
use crate::engine::{NoObserver, Observer, Plan};
use crate::error::{Error, Result};
use crate::graph::{Graph, NodeId, Outlet};
use crate::tensor::Tensor;
use cpu_plugin::{Emulation, Int8Arithmetic};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::path::PathBuf;
use std::sync::Arc;

/// Which engine runs the inferences quantization needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// ovpot's own CPU engine: no dependency, deterministic; emulates the target CPU's int8.
    #[default]
    Builtin,
    /// OpenVINO's CPU plugin in this process: the runtime's own arithmetic and speed.
    #[serde(alias = "OpenVINO", alias = "ov")]
    Openvino,
}

/// A backend ready to compile graphs.
#[derive(Clone, Debug)]
pub enum Backend {
    /// The built-in engine; `emulate`: models compiled "as the target" ([`Backend::compile_as_target`])
    /// compute as OpenVINO's CPU plugin does on a CPU with that int8 arithmetic.
    Builtin {
        emulate: Option<Int8Arithmetic>,
    },
    OpenVino(Arc<openvino::Core>),
}

/// An application's own OpenVINO core, handed over through the C API.
#[derive(Clone, Debug)]
pub struct CoreHandle(pub Arc<openvino::Core>);

impl PartialEq for CoreHandle {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// How to reach OpenVINO when the backend is `openvino`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OpenVinoOptions {
    /// The C library: a file or a directory (else `$OVPOT_OPENVINO_LIB`, the process, the loader).
    pub library: Option<PathBuf>,
    /// The application's core (C API); else one shared core per process.
    pub core: Option<CoreHandle>,
}

impl Backend {
    /// Opens the backend `kind` (loading OpenVINO when asked).
    pub fn open(kind: BackendKind, ov: &OpenVinoOptions) -> Result<Backend> {
        match kind {
            BackendKind::Builtin => Ok(Backend::builtin()),
            BackendKind::Openvino => match &ov.core {
                Some(c) => Ok(Backend::OpenVino(c.0.clone())),
                None => Ok(Backend::OpenVino(openvino::shared_core(ov.library.as_deref())?)),
            },
        }
    }

    /// The built-in engine, computing IR semantics exactly.
    pub fn builtin() -> Backend {
        Backend::Builtin { emulate: None }
    }

    /// This backend judging INT8 models for a CPU with `arithmetic`: the built-in engine
    /// emulates it; OpenVINO computes the arithmetic of the CPU it runs on.
    pub fn emulating(&self, arithmetic: Int8Arithmetic) -> Backend {
        match self {
            Backend::Builtin { .. } => Backend::Builtin { emulate: Some(arithmetic) },
            ov => ov.clone(),
        }
    }

    /// This backend computing IR semantics exactly (the built-in engine without its emulation).
    pub fn without_emulation(&self) -> Backend {
        match self {
            Backend::Builtin { .. } => Backend::builtin(),
            ov => ov.clone(),
        }
    }

    /// "builtin", or "openvino <version>".
    pub fn describe(&self) -> String {
        match self {
            Backend::Builtin { .. } => "builtin".into(),
            Backend::OpenVino(c) => format!("openvino {}", c.library.version),
        }
    }

    /// Runs int8 layers in this CPU's own integer arithmetic, as the runtime will (else it
    /// computes them exactly or emulates a target).
    pub fn computes_int8_natively(&self) -> bool {
        matches!(self, Backend::OpenVino(_))
    }

    /// Shows every tensor it computes to an [`Observer`] (else statistics are reduced inside the
    /// graph and handed back as extra outputs).
    pub fn observes_inner_tensors(&self) -> bool {
        matches!(self, Backend::Builtin { .. })
    }

    /// Hands over a layer's output before its bias Add (OpenVINO fuses the Add into the layer).
    pub fn hands_over_pre_bias_values(&self) -> bool {
        matches!(self, Backend::Builtin { .. })
    }

    /// Runs a model again from a frontier of cached values ([`Plan::run_from`]) rather than whole.
    pub fn reruns_from_frontier(&self) -> bool {
        matches!(self, Backend::Builtin { .. })
    }

    /// Runs ops the built-in engine lacks (it is a runtime of its own).
    pub fn runs_ops_beyond_builtin(&self) -> bool {
        matches!(self, Backend::OpenVino(_))
    }

    /// Measures latency as the model will be deployed on this CPU.
    pub fn times_as_deployed(&self) -> bool {
        matches!(self, Backend::OpenVino(_))
    }

    /// Rewrites `graph` to compute what this backend's target computes: the built-in engine's
    /// emulation when it has one; nothing for a backend that computes natively.
    pub fn as_target(&self, graph: &mut Graph) -> Emulation {
        match self {
            Backend::Builtin { emulate: Some(a) } => cpu_plugin::emulate_for(graph, *a),
            _ => Emulation::default(),
        }
    }

    /// A whole model (its outputs), compiled to compute as this backend's target does
    /// ([`Backend::as_target`]).
    pub fn compile_as_target(&self, mut graph: Graph, threads: usize) -> Result<Executable> {
        match self {
            Backend::Builtin { .. } => {
                self.as_target(&mut graph);
                Ok(Executable::builtin(Plan::new(&graph)?, &[]))
            }
            // The FP32 weights quantizers replaced stay out of what OpenVINO is handed.
            ov => ov.compile(&graph.without_dead_nodes(), &[], threads),
        }
    }

    /// Prepares `graph` to produce the values of `targets` (the model's outputs when empty).
    /// `threads` (0 = all cores) bounds OpenVINO's threads.
    pub fn compile(&self, graph: &Graph, targets: &[Outlet], threads: usize) -> Result<Executable> {
        match self {
            Backend::Builtin { .. } => Ok(Executable::builtin(Plan::new(graph)?, targets)),
            Backend::OpenVino(core) => Executable::openvino(core, graph.clone(), targets, threads, "THROUGHPUT"),
        }
    }

    /// [`Backend::compile`] from a built-in plan already made (reused by the built-in engine).
    pub fn compile_plan(&self, plan: Plan, targets: &[Outlet], threads: usize) -> Result<Executable> {
        match self {
            Backend::Builtin { .. } => Ok(Executable::builtin(plan, targets)),
            Backend::OpenVino(core) => {
                let graph = plan.graph().clone();
                drop(plan);
                Executable::openvino(core, graph, targets, threads, "THROUGHPUT")
            }
        }
    }
}

impl Backend {
    /// [`Backend::compile`] for one request at a time, as an application deploys a model
    /// (OpenVINO's LATENCY hint): for [`Executable::latency_ms`]. The built-in engine has one
    /// way to run.
    pub fn compile_for_latency(&self, graph: &Graph, threads: usize) -> Result<Executable> {
        match self {
            Backend::Builtin { .. } => self.compile(graph, &[], threads),
            Backend::OpenVino(core) => Executable::openvino(core, graph.clone(), &[], threads, "LATENCY"),
        }
    }
}

impl Backend {
    /// Per-node times and kernels of `graph` on `sample` as deployed (one request, OpenVINO's
    /// LATENCY hint, performance counters on), median of `runs`; None for the built-in engine.
    pub fn profile(
        &self,
        graph: &Graph,
        sample: &[(String, Tensor)],
        runs: usize,
        threads: usize,
    ) -> Result<Option<Vec<openvino::ProfiledNode>>> {
        let Backend::OpenVino(core) = self else { return Ok(None) };
        let g = graph.clone().without_dead_nodes();
        let targets = targets_or_outputs(&g, &[]);
        let mut ov = OvExecutable::new(core, &g, &targets, threads, "LATENCY")?;
        ov.properties.push(("PERF_COUNT", "YES".to_string()));
        let ins = ov.inputs(&g, sample)?;
        let shapes = ins.iter().map(|(_, t)| t.shape().to_vec()).collect();
        let compiled = ov.compiled_for(shapes)?;
        compiled.profile(&ins, runs).map(Some)
    }
}

/// One compile, run on a thread of its own.
type CompileJob<'a> = Box<dyn FnOnce() -> Result<()> + Send + 'a>;

/// Runs the compile steps `jobs` at the same time, one thread each; the first error wins.
fn compile_side_by_side(jobs: Vec<CompileJob<'_>>) -> Result<()> {
    if jobs.len() <= 1 {
        return jobs.into_iter().try_for_each(|j| j());
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = jobs.into_iter().map(|j| s.spawn(j)).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(Error::internal("an OpenVINO compile thread panicked"))))
            .collect::<Vec<_>>()
            .into_iter()
            .collect()
    })
}

/// Makes each executable ready for samples shaped like `sample` (OpenVINO compiles for the
/// sample's shapes), the compiles side by side; the built-in engine has nothing to do.
pub fn warm_side_by_side(execs: &[&Executable], sample: &[(String, Tensor)]) -> Result<()> {
    let jobs: Vec<CompileJob<'_>> = execs
        .iter()
        .filter_map(|e| match &e.inner {
            Inner::OpenVino(ov) => {
                let graph = &e.graph;
                Some(Box::new(move || ov.compile_for(graph, sample)) as CompileJob<'_>)
            }
            Inner::Builtin(_) => None,
        })
        .collect();
    compile_side_by_side(jobs)
}

/// Threads that feed OpenVINO: twice the cores, at least 4.
fn openvino_pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        rayon::ThreadPoolBuilder::new()
            .num_threads((2 * n).max(4))
            .thread_name(|i| format!("ovpot-ov-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

/// `targets` without parameters, or the model's outputs when that leaves none.
fn targets_or_outputs(graph: &Graph, targets: &[Outlet]) -> Vec<Outlet> {
    let params = graph.parameters();
    let t: Vec<Outlet> = targets.iter().copied().filter(|o| !params.contains(&o.node)).collect();
    if t.is_empty() {
        graph.results().iter().map(|&r| graph.nodes[r].inputs[0]).collect()
    } else {
        t
    }
}

enum Inner {
    Builtin(Plan),
    OpenVino(OvExecutable),
}

/// A graph compiled for one backend, producing fixed target outlets.
pub struct Executable {
    inner: Inner,
    targets: Vec<Outlet>,
    /// The graph OpenVINO compiled (the built-in plan holds its own).
    graph: Graph,
}

impl Executable {
    /// The built-in engine running `plan` up to `targets`.
    pub fn builtin(plan: Plan, targets: &[Outlet]) -> Executable {
        let targets = targets_or_outputs(plan.graph(), targets);
        Executable { inner: Inner::Builtin(plan), targets, graph: Graph::default() }
    }

    /// `graph` in OpenVINO up to `targets` (the model's outputs when empty), compiled with the
    /// performance `hint` (THROUGHPUT or LATENCY).
    fn openvino(
        core: &Arc<openvino::Core>,
        graph: Graph,
        targets: &[Outlet],
        threads: usize,
        hint: &str,
    ) -> Result<Executable> {
        let targets = targets_or_outputs(&graph, targets);
        let ov = OvExecutable::new(core, &graph, &targets, threads, hint)?;
        Ok(Executable { inner: Inner::OpenVino(ov), targets, graph })
    }

    pub fn graph(&self) -> &Graph {
        match &self.inner {
            Inner::Builtin(p) => p.graph(),
            Inner::OpenVino(_) => &self.graph,
        }
    }

    /// Runs `f` (which runs samples in parallel with rayon) where this backend wants it: the
    /// built-in engine computes on the current pool; OpenVINO computes on its own threads, so
    /// samples run from a pool with more threads than cores, keeping requests in flight while
    /// others reduce results.
    pub fn in_flight<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.inner {
            Inner::Builtin(_) => f(),
            Inner::OpenVino(_) => match openvino_pool() {
                Some(pool) => pool.install(f),
                None => f(),
            },
        }
    }

    /// The median time (ms) of one inference on `sample`, one request at a time: at least 7
    /// runs after 2 to warm up, more up to 0.25 s. None for the built-in engine (its time is
    /// not what the application will see).
    pub fn latency_ms(&self, sample: &[(String, Tensor)]) -> Result<Option<f64>> {
        let Inner::OpenVino(ov) = &self.inner else { return Ok(None) };
        // The first runs after compiling warm the caches.
        ov.run(&self.graph, sample)?;
        ov.run(&self.graph, sample)?;
        let start = std::time::Instant::now();
        let mut times = vec![];
        while times.len() < 7 || (times.len() < 200 && start.elapsed().as_secs_f64() < 0.25) {
            let t = std::time::Instant::now();
            ov.run(&self.graph, sample)?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        Ok(Some(times[times.len() / 2]))
    }

    /// The outlets [`Executable::run`] returns, in order.
    pub fn targets(&self) -> &[Outlet] {
        &self.targets
    }

    /// Runs the samples `indices` of `data` ("`what` sample i" in errors), requests in parallel
    /// in waves of what the executable keeps in flight; outputs in `indices` order. After each
    /// wave `progress` gets the number of samples done (an error stops the run).
    pub fn run_many(
        &self,
        data: &dyn Dataset,
        indices: &[usize],
        what: &str,
        progress: &mut dyn FnMut(usize) -> Result<()>,
    ) -> Result<Vec<Vec<Tensor>>> {
        use rayon::prelude::*;
        let wave = (self.in_flight(rayon::current_num_threads) * 4).max(1);
        let mut out = Vec::with_capacity(indices.len());
        for (w, chunk) in indices.chunks(wave).enumerate() {
            let res: Vec<Result<Vec<Tensor>>> = self.in_flight(|| {
                chunk
                    .par_iter()
                    .map(|&i| {
                        let s = data.get(i).map_err(|e| e.with_sample(what, i))?;
                        self.run(&s, &mut NoObserver).map_err(|e| match e {
                            Error::Mismatch(m) => Error::Mismatch(format!("{what} sample {i}: {m}")),
                            Error::InvalidArgument(m) => Error::InvalidArgument(format!("{what} sample {i}: {m}")),
                            other => other,
                        })
                    })
                    .collect()
            });
            for r in res {
                out.push(r?);
            }
            progress((w * wave + chunk.len()).min(indices.len()))?;
        }
        Ok(out)
    }

    /// Runs one sample; returns the targets' values. The built-in engine shows every value it
    /// computes to `observer`; OpenVINO shows the targets.
    pub fn run(&self, sample: &[(String, Tensor)], observer: &mut dyn Observer) -> Result<Vec<Tensor>> {
        match &self.inner {
            Inner::Builtin(plan) => {
                let seeds: HashMap<Outlet, Arc<Tensor>> =
                    plan.bind_inputs(sample)?.into_iter().map(|(p, t)| (Outlet::new(p, 0), t)).collect();
                Ok(plan
                    .run_from(&seeds, &self.targets, observer)?
                    .into_iter()
                    .map(|t| Arc::try_unwrap(t).unwrap_or_else(|a| (*a).clone()))
                    .collect())
            }
            Inner::OpenVino(ov) => {
                let outs = ov.run(self.graph(), sample)?;
                for (o, t) in self.targets.iter().zip(&outs) {
                    if observer.wants(*o) {
                        observer.observe(*o, t)?;
                    }
                }
                Ok(outs)
            }
        }
    }
}

/// The graph in OpenVINO: each target outlet a Result with a tensor name of its own, each
/// parameter renamed so inputs are set by a name nobody else uses.
///
/// OpenVINO runs a graph with dynamic dims far slower than one with static shapes (shape
/// inference on every inference), so the graph is compiled for the input shapes each sample
/// brings, up to [`SHAPE_VARIANTS`] of them, then once with its own (dynamic) shapes.
struct OvExecutable {
    core: Arc<openvino::Core>,
    graph: Graph,
    properties: Vec<(&'static str, String)>,
    /// Compiled models by input shapes (empty: the graph's own shapes).
    variants: std::sync::Mutex<Vec<ShapeVariant>>,
    /// Parameter node and its tensor name in the compiled model.
    inputs: Vec<(NodeId, CString)>,
    outputs: Vec<CString>,
}

/// Input shapes and the model compiled for them.
type ShapeVariant = (Vec<Vec<usize>>, Arc<openvino::Compiled>);

/// Input shapes compiled for before falling back to one dynamic-shape compile.
const SHAPE_VARIANTS: usize = 8;

fn set_output_names(result: &mut crate::graph::Node, name: &str) {
    result.layer_attrs.retain(|(k, _)| k != "output_names");
    result.layer_attrs.push(("output_names".into(), name.into()));
}

/// OpenVINO's CPU plugin compiled as ovpot's verdicts need it: FP32 inference precision (no
/// bf16 on CPUs that have it); throughput streams for many samples in flight, or latency.
fn cpu_properties(threads: usize, hint: &str) -> Vec<(&'static str, String)> {
    let mut p = vec![("INFERENCE_PRECISION_HINT", "f32".to_string()), ("PERFORMANCE_HINT", hint.to_string())];
    if threads > 0 {
        p.push(("INFERENCE_NUM_THREADS", threads.to_string()));
    }
    p
}

impl OvExecutable {
    fn new(
        core: &Arc<openvino::Core>,
        graph: &Graph,
        targets: &[Outlet],
        threads: usize,
        hint: &str,
    ) -> Result<OvExecutable> {
        let mut g = graph.clone();
        let mut inputs = vec![];
        for (k, p) in g.parameters().into_iter().enumerate() {
            let name = format!("ovpot.in.{k}");
            inputs.push((p, CString::new(name.clone()).map_err(|_| Error::internal("name"))?));
            g.nodes[p].outputs[0].names = vec![name];
        }
        let mut outputs = vec![];
        // One name per distinct outlet (two Results may read the same one); OpenVINO names a
        // model output by its Result's `output_names`.
        let mut named: HashMap<Outlet, String> = HashMap::new();
        for &o in targets {
            let k = named.len();
            let name = named.entry(o).or_insert_with(|| format!("ovpot.out.{k}")).clone();
            outputs.push(CString::new(name).map_err(|_| Error::internal("name"))?);
        }
        let mut has_result: HashMap<Outlet, bool> = HashMap::new();
        for r in g.results() {
            let o = g.nodes[r].inputs[0];
            if let Some(name) = named.get(&o) {
                set_output_names(&mut g.nodes[r], name);
                has_result.insert(o, true);
            }
        }
        let mut fresh: Vec<(&Outlet, &String)> = named.iter().filter(|(o, _)| !has_result.contains_key(o)).collect();
        fresh.sort();
        for (&o, name) in fresh {
            let r = g.add_op(format!("{name}/result"), "Result", "opset1", Default::default(), vec![o], vec![]);
            set_output_names(&mut g.nodes[r], name);
        }
        Ok(OvExecutable {
            core: core.clone(),
            graph: g,
            properties: cpu_properties(threads, hint),
            variants: std::sync::Mutex::new(vec![]),
            inputs,
            outputs,
        })
    }

    /// The model compiled for these input shapes (or for the graph's own when there are many).
    fn compiled_for(&self, shapes: Vec<Vec<usize>>) -> Result<Arc<openvino::Compiled>> {
        // Compiles happen under the lock: threads that need the same shapes wait for one compile.
        let mut v = self.variants.lock().map_err(|_| Error::internal("OpenVINO variants lock poisoned"))?;
        if let Some((_, c)) = v.iter().find(|(k, _)| *k == shapes || k.is_empty()) {
            return Ok(c.clone());
        }
        let key = if v.len() >= SHAPE_VARIANTS { vec![] } else { shapes };
        let mut g = self.graph.clone();
        if !key.is_empty() {
            for ((p, _), dims) in self.inputs.iter().zip(&key) {
                let node = &mut g.nodes[*p];
                node.attrs.set("shape", dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(","));
                node.outputs[0].shape = crate::graph::PartialShape::from_static(dims);
            }
        }
        let (xml, bin) = crate::ir::writer::serialize(&g)?;
        if let Some(dir) = std::env::var_os("OVPOT_DUMP_OPENVINO_IR") {
            // Debugging aid: the IRs handed to OpenVINO, numbered.
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let k = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let base = std::path::Path::new(&dir).join(format!("ov{k}"));
            let _ = std::fs::write(base.with_extension("xml"), &xml);
            let _ = std::fs::write(base.with_extension("bin"), &bin);
        }
        let compiled =
            Arc::new(self.core.compile(&xml, &bin, "CPU", &self.properties)?.with_state_reset(g.is_stateful()));
        v.push((key, compiled.clone()));
        Ok(compiled)
    }

    /// The sample's tensors by the compiled model's input names, checked against the graph.
    fn inputs<'s>(&self, graph: &Graph, sample: &'s [(String, Tensor)]) -> Result<Vec<(&CStr, &'s Tensor)>> {
        let params: Vec<NodeId> = self.inputs.iter().map(|(p, _)| *p).collect();
        let tensors = graph.bind_sample(&params, sample)?;
        Ok(self.inputs.iter().zip(tensors).map(|((_, name), t)| (name.as_c_str(), t)).collect())
    }

    /// Compiles for the shapes of `sample` now (else the first run does).
    fn compile_for(&self, graph: &Graph, sample: &[(String, Tensor)]) -> Result<()> {
        let shapes = self.inputs(graph, sample)?.iter().map(|(_, t)| t.shape().to_vec()).collect();
        self.compiled_for(shapes).map(|_| ())
    }

    fn run(&self, graph: &Graph, sample: &[(String, Tensor)]) -> Result<Vec<Tensor>> {
        let ins = self.inputs(graph, sample)?;
        let shapes: Vec<Vec<usize>> = ins.iter().map(|(_, t)| t.shape().to_vec()).collect();
        self.compiled_for(shapes)?.infer(&ins, &self.outputs)
    }
}
