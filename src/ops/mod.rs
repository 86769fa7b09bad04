//! Operations, one file per family. Each op parses its attributes once into a typed struct when a
//! plan is built ([`build`]) and then only evaluates. Ops know nothing about quantization.

use crate::error::{Error, Result};
use crate::graph::Graph;
use std::sync::OnceLock;

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
pub mod op;
pub mod pool;
pub mod reduce;
pub mod shape;
pub mod state;

pub use op::{BuildCtx, Builder, Epilogue, Op, Registry};

/// The registry of every op the engine runs. Never inlined: its frame names the registry's
/// allocations for valgrind (include/ovpot.supp), in any build.
#[inline(never)]
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
