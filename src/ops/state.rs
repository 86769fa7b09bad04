//! Variables of a stateful model: `ReadValue` and `Assign` (an LLM's KV cache as optimum-intel
//! exports it).
//!
//! The engine runs every inference as a new request whose variables start from their initial
//! value, as a generate loop starts a new prompt: `ReadValue` yields its initializer (its input,
//! or zeros of `variable_shape` with unknown dims as 0 when it has none) and `Assign` is a sink
//! that the next request would read, so within one run it only passes its input through. That is
//! exactly what one calibration sample (a whole token window) computes in OpenVINO after
//! `reset_state()`.

use super::op::{BuildCtx, Op, Registry};
use crate::error::{Error, Result};
use crate::graph::Dim;
use crate::tensor::{ElementType, Tensor};
use std::sync::Arc;

pub fn register(r: &mut Registry) {
    r.add("ReadValue", &["opset3", "opset6"], build_read_value);
    r.add("Assign", &["opset3", "opset6"], build_assign);
}

/// `ReadValue` in a fresh request: the initial value.
#[derive(Debug)]
struct ReadValue {
    /// Element type and shape of the zeros a `ReadValue` without an initializer starts from.
    empty: Option<(ElementType, Vec<usize>)>,
}

fn build_read_value(ctx: &BuildCtx) -> Result<Box<dyn Op>> {
    let n = ctx.node;
    if n.attrs.get("variable_id").is_none_or(|v| v.trim().is_empty()) {
        return Err(ctx.err("ReadValue needs a variable_id"));
    }
    match n.inputs.len() {
        1 => Ok(Box::new(ReadValue { empty: None })),
        0 => {
            let et = n.outputs.first().map(|p| p.element_type).unwrap_or(ElementType::Dynamic);
            if et == ElementType::Dynamic {
                return Err(ctx.err("ReadValue without an initializer needs a static element type"));
            }
            let dims = n.outputs.first().and_then(|p| p.shape.dims().map(|d| d.to_vec()));
            let Some(dims) = dims else {
                return Err(ctx.err("ReadValue without an initializer needs a known rank"));
            };
            let shape = dims.iter().map(|d| if let Dim::Static(v) = d { *v } else { 0 }).collect();
            Ok(Box::new(ReadValue { empty: Some((et, shape)) }))
        }
        k => Err(ctx.err(format!("ReadValue takes 0 or 1 inputs, this one has {k}"))),
    }
}

impl Op for ReadValue {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        match (&self.empty, inputs.first()) {
            (_, Some(init)) => Ok(vec![(*init).clone()]),
            (Some((et, shape)), None) => Ok(vec![Tensor::zeros(*et, shape)?]),
            (None, None) => Err(Error::invalid("ReadValue: missing initializer")),
        }
    }
    fn eval_owned(&self, mut inputs: Vec<Arc<Tensor>>) -> Result<Vec<Tensor>> {
        match inputs.pop() {
            Some(init) => Ok(vec![Arc::try_unwrap(init).unwrap_or_else(|a| (*a).clone())]),
            None => self.eval(&[]),
        }
    }
}

/// `Assign`: stores its input for the next request; within this one, its input.
#[derive(Debug)]
struct Assign;

fn build_assign(ctx: &BuildCtx) -> Result<Box<dyn Op>> {
    if ctx.node.attrs.get("variable_id").is_none_or(|v| v.trim().is_empty()) {
        return Err(ctx.err("Assign needs a variable_id"));
    }
    if ctx.node.inputs.len() != 1 {
        return Err(ctx.err(format!("Assign takes 1 input, this one has {}", ctx.node.inputs.len())));
    }
    Ok(Box::new(Assign))
}

impl Op for Assign {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let v = inputs.first().ok_or_else(|| Error::invalid("Assign: missing input"))?;
        Ok(vec![(*v).clone()])
    }
    fn eval_owned(&self, mut inputs: Vec<Arc<Tensor>>) -> Result<Vec<Tensor>> {
        let v = inputs.pop().ok_or_else(|| Error::invalid("Assign: missing input"))?;
        Ok(vec![Arc::try_unwrap(v).unwrap_or_else(|a| (*a).clone())])
    }
}
