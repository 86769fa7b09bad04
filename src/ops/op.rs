//! What every op family builds on: the [`Op`] trait, the build context, the registry type, and
//! the epilogue the engine folds into an op's output pass.

use crate::error::{Error, Result};
use crate::graph::{Graph, Node, NodeId, PortInfo};
use crate::tensor::{ElementType, Tensor};
use std::collections::HashMap;
use std::sync::Arc;

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
