//! Operations, one file per family. Each op parses its attributes once into a typed struct when a
//! plan is built ([`build`]) and then only evaluates. Ops know nothing about quantization.

use crate::error::{Error, Result};
use crate::graph::{Graph, Node, NodeId, PortInfo};
use crate::tensor::{ElementType, Tensor};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

pub mod activation;
pub mod attrs;
pub mod binary;
pub mod conv;
pub mod convert;
pub mod fake_quantize;
pub mod gemm;
pub mod int8;
pub mod matmul;
pub mod misc;
pub mod norm;
pub mod pool;
pub mod reduce;
pub mod shape;
pub mod state;

/// An evaluable operation with its attributes already parsed.
pub trait Op: Send + Sync + std::fmt::Debug {
    /// Computes the outputs from the inputs (in port order).
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>>;

    /// Like [`Op::eval`], but the engine hands over its references: an input whose `Arc` is
    /// unique dies at this node, so the op may write its output over that buffer instead of
    /// allocating one (elementwise ops, reshapes).
    fn eval_owned(&self, inputs: Vec<Arc<Tensor>>) -> Result<Vec<Tensor>> {
        let refs: Vec<&Tensor> = inputs.iter().map(|a| a.as_ref()).collect();
        self.eval(&refs)
    }

    /// This op with a per-channel bias and clamp applied as it writes its f32 output, when it
    /// can do that (the engine then skips the Add and Clamp it stands for).
    fn with_epilogue(&self, _epilogue: &Epilogue) -> Option<Box<dyn Op>> {
        None
    }
}

/// Work folded into an op's output pass by the engine (see [`Op::with_epilogue`]):
/// `y = clamp(y + bias[channel], lo, hi)`, channels on axis 1.
#[derive(Clone, Debug, Default)]
pub struct Epilogue {
    pub bias: Option<Vec<f32>>,
    pub clamp: Option<(f32, f32)>,
}

impl Epilogue {
    /// Applies the epilogue to one output channel's values.
    #[inline]
    pub fn apply(&self, channel: usize, v: &mut [f32]) {
        let b = self.bias.as_ref().map_or(0.0, |b| b[channel]);
        let (lo, hi) = self.clamp.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
        epilogue_run(v, b, lo, hi, self.clamp.is_some());
    }
}

#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl+fma", "x86_64+avx2+fma"))]
fn epilogue_run(v: &mut [f32], b: f32, lo: f32, hi: f32, clamp: bool) {
    if clamp {
        // max then min, as Clamp evaluates it
        v.iter_mut().for_each(|x| *x = (*x + b).max(lo).min(hi));
    } else {
        v.iter_mut().for_each(|x| *x += b);
    }
}

/// The tensor itself when nobody else holds it.
pub(crate) fn take_unique(a: &mut Option<Arc<Tensor>>) -> Option<Tensor> {
    match a.take().map(Arc::try_unwrap) {
        Some(Ok(t)) => Some(t),
        Some(Err(shared)) => {
            *a = Some(shared);
            None
        }
        None => None,
    }
}

/// What an op builder sees: the node (attributes, port infos) and the constant values of its
/// inputs where they are known before running (weights, shape constants).
pub struct BuildCtx<'a> {
    pub node: &'a Node,
    pub id: NodeId,
    pub graph: &'a Graph,
    /// Constant value of each input, when it is constant-foldable.
    pub const_inputs: Vec<Option<&'a Tensor>>,
}

impl<'a> BuildCtx<'a> {
    pub fn input_info(&self, k: usize) -> Option<&'a PortInfo> {
        self.node.inputs.get(k).map(|o| self.graph.outlet_info(*o))
    }
    pub fn output_type(&self, k: usize) -> ElementType {
        self.node.outputs.get(k).map(|p| p.element_type).unwrap_or(ElementType::Dynamic)
    }
    pub fn err(&self, msg: impl std::fmt::Display) -> Error {
        Error::invalid(format!("{}: {msg}", self.node.describe()))
    }
}

pub type Builder = fn(&BuildCtx) -> Result<Box<dyn Op>>;

/// Op type → (supported versions, builder).
#[derive(Default)]
pub struct Registry {
    map: HashMap<&'static str, (Vec<&'static str>, Builder)>,
}

impl Registry {
    /// Registers `op_type` at the given opset versions.
    pub fn add(&mut self, op_type: &'static str, versions: &[&'static str], b: Builder) {
        self.map.insert(op_type, (versions.to_vec(), b));
    }
    pub fn supports(&self, op_type: &str, version: &str) -> bool {
        self.map.get(op_type).is_some_and(|(v, _)| v.contains(&version) || v.contains(&"*"))
    }
    pub fn builder(&self, op_type: &str) -> Option<Builder> {
        self.map.get(op_type).map(|(_, b)| *b)
    }
    /// All (type, versions), sorted.
    pub fn list(&self) -> Vec<(&'static str, Vec<&'static str>)> {
        let mut v: Vec<_> = self.map.iter().map(|(k, (vs, _))| (*k, vs.clone())).collect();
        v.sort();
        v
    }
}

/// The registry of every op the engine runs.
pub fn registry() -> &'static Registry {
    static REG: OnceLock<Registry> = OnceLock::new();
    REG.get_or_init(|| {
        let mut r = Registry::default();
        activation::register(&mut r);
        binary::register(&mut r);
        conv::register(&mut r);
        convert::register(&mut r);
        fake_quantize::register(&mut r);
        int8::register(&mut r);
        matmul::register(&mut r);
        misc::register(&mut r);
        norm::register(&mut r);
        pool::register(&mut r);
        reduce::register(&mut r);
        shape::register(&mut r);
        state::register(&mut r);
        r
    })
}

/// Op types the graph runner handles itself.
pub fn is_structural(op_type: &str) -> bool {
    matches!(op_type, "Parameter" | "Const" | "Constant" | "Result")
}

/// Every (type, version) the engine lacks, with the layers that use it.
pub fn missing_ops(graph: &Graph) -> Vec<((String, String), Vec<String>)> {
    let reg = registry();
    let mut m: std::collections::BTreeMap<(String, String), Vec<String>> = Default::default();
    for n in &graph.nodes {
        if !is_structural(&n.op_type) && !reg.supports(&n.op_type, &n.version) {
            m.entry((n.op_type.clone(), n.version.clone())).or_default().push(n.name.clone());
        }
    }
    m.into_iter().collect()
}

/// How many inputs an op type takes, as OpenVINO's op definitions say (None: not checked here).
/// OpenVINO refuses a model where a layer has another count ("node index is out of range").
fn input_count(op_type: &str) -> Option<std::ops::RangeInclusive<usize>> {
    Some(match op_type {
        "ReLU" | "Relu" | "Gelu" | "HSwish" | "Mish" | "SoftPlus" | "HSigmoid" | "Round" | "Clamp" | "Elu"
        | "Sigmoid" | "Tanh" | "Exp" | "Log" | "Sqrt" | "Abs" | "Negative" | "Floor" | "Ceiling" | "Erf" | "Sign"
        | "Sin" | "Cos" | "SoftMax" | "Softmax" | "LogSoftmax" | "LogicalNot" | "BitwiseNot" | "Convert"
        | "ShapeOf" | "NonZero" | "MaxPool" | "AvgPool" | "DepthToSpace" | "SpaceToDepth" | "ShuffleChannels" => 1..=1,
        "Swish" | "Squeeze" | "CumSum" | "MVN" => 1..=2,
        "Add" | "Subtract" | "Multiply" | "Divide" | "Power" | "Maximum" | "Minimum" | "SquaredDifference"
        | "FloorMod" | "Mod" | "Equal" | "NotEqual" | "Less" | "Greater" | "LessEqual" | "GreaterEqual"
        | "LogicalAnd" | "LogicalOr" | "LogicalXor" | "BitwiseAnd" | "BitwiseOr" | "BitwiseXor" | "PReLU" | "PRelu"
        | "Convolution" | "GroupConvolution" | "ConvertLike" | "MatMul" | "Reshape" | "Unsqueeze" | "Transpose"
        | "Split" | "GatherElements" | "GatherND" | "Tile" | "NormalizeL2" | "TopK" | "AdaptiveAvgPool"
        | "AdaptiveMaxPool" | "ReduceSum" | "ReduceMean" | "ReduceProd" | "ReduceMax" | "ReduceMin"
        | "ReduceLogicalAnd" | "ReduceLogicalOr" | "ReduceL1" | "ReduceL2" => 2..=2,
        "ConvolutionBackpropData" | "GroupConvolutionBackpropData" | "Broadcast" => 2..=3,
        "Interpolate" => 2..=4,
        "Selu" | "HardSigmoid" | "Select" | "VariadicSplit" | "Gather" | "Range" => 3..=3,
        "StridedSlice" | "Pad" => 3..=4,
        "ScaledDotProductAttention" => 3..=5,
        "Slice" => 4..=5,
        "BatchNormInference" | "FakeQuantize" => 5..=5,
        "Concat" => 1..=usize::MAX,
        _ => return None,
    })
}

/// How many outputs an op type (at this version) has, where ovpot checks it: MaxPool-1 has one,
/// MaxPool-8/14 two (values and indices); the ops with several outputs (Split, TopK, …) are not
/// checked here. OpenVINO refuses an edge from an output the op does not have.
fn output_count(op_type: &str, version: &str) -> Option<usize> {
    match (op_type, version) {
        ("MaxPool", "opset1") => Some(1),
        ("MaxPool", _) | ("TopK", _) | ("AdaptiveMaxPool", _) => Some(2),
        ("Split" | "VariadicSplit", _) => None,
        (t, _) => input_count(t).map(|_| 1),
    }
}

/// Fails when a layer of the graph has more or fewer inputs than its op type takes, or more
/// outputs.
pub fn check_input_count(node: &crate::graph::Node) -> Result<()> {
    if let Some(outputs) = output_count(&node.op_type, &node.version) {
        if node.outputs.len() > outputs {
            return Err(Error::invalid(format!(
                "{}: {}-{} has {outputs} output(s), this one {}",
                node.describe(),
                node.op_type,
                node.version.trim_start_matches("opset"),
                node.outputs.len()
            )));
        }
    }
    let Some(count) = input_count(&node.op_type) else { return Ok(()) };
    if count.contains(&node.inputs.len()) {
        return Ok(());
    }
    let want = match (count.start(), count.end()) {
        (a, b) if a == b => a.to_string(),
        (a, &usize::MAX) => format!("{a} or more"),
        (a, b) => format!("{a} to {b}"),
    };
    Err(Error::invalid(format!(
        "{}: {} takes {want} input(s), this one has {}",
        node.describe(),
        node.op_type,
        node.inputs.len()
    )))
}

/// Builds the op for a node.
pub fn build(ctx: &BuildCtx) -> Result<Box<dyn Op>> {
    let n = ctx.node;
    let reg = registry();
    if !reg.supports(&n.op_type, &n.version) {
        return Err(Error::unsupported(format!("{} is not supported by the engine", n.describe())));
    }

    let b = reg.builder(&n.op_type).expect("supported op has a builder");
    b(ctx)
}
