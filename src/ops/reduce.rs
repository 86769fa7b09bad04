//! Reductions over an axes input (ReduceMean/Sum/Max/Min/Prod/L1/L2/LogicalAnd/LogicalOr), with
//! keep_dims. Accumulation is in f64 (sums of many f32 terms stay accurate); the result keeps the
//! input's element type (integers truncate, as OpenVINO's integer mean does).

use super::binary::{make_array, std_slice, Bcast};
use super::convert::convert_tensor;
use super::op::{BuildCtx, Op, Registry};
use crate::error::{Error, Result};
use crate::tensor::{ElementType, Scalar, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReduceKind {
    Sum,
    Mean,
    Prod,
    Max,
    Min,
    L1,
    L2,
    And,
    Or,
}

/// Normalizes (negative → positive), checks and sorts reduction axes.
pub(crate) fn norm_axes(axes: &[i64], rank: usize) -> Result<Vec<usize>> {
    let mut v = Vec::with_capacity(axes.len());
    for &a in axes {
        let r = rank as i64;
        let n = if a < 0 { a + r } else { a };
        if n < 0 || n >= r.max(1) {
            return Err(Error::mismatch(format!("reduction axis {a} is out of range for rank {rank}")));
        }
        if rank > 0 {
            v.push(n as usize);
        }
    }
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

/// The shape with reduced axes set to 1 (keep_dims form).
pub(crate) fn keep_shape(shape: &[usize], axes: &[usize]) -> Vec<usize> {
    shape.iter().enumerate().map(|(i, &d)| if axes.contains(&i) { 1 } else { d }).collect()
}

/// Reduces `data` (standard layout, `shape`) over `axes`, folding `pre(x)` with `fold` from
/// `init`. Returns one f64 per element of the keep_dims shape.
pub(crate) fn reduce_raw<T: Scalar>(
    data: &[T],
    shape: &[usize],
    axes: &[usize],
    init: f64,
    pre: impl Fn(f64) -> f64,
    fold: impl Fn(f64, f64) -> f64,
) -> Result<Vec<f64>> {
    let ks = keep_shape(shape, axes);
    let n_out: usize = ks.iter().product();
    let mut acc = vec![init; n_out];
    let plan = Bcast::<2>::new(shape, [shape, ks.as_slice()])?;
    let [_, so] = plan.inner_strides();
    plan.walk(0, plan.len(), |_, n, [oi, oo]| {
        let src = &data[oi..oi + n];
        if so == 0 {
            let mut a = acc[oo];
            for &v in src {
                a = fold(a, pre(v.to_f64()));
            }
            acc[oo] = a;
        } else {
            for (a, &v) in acc[oo..oo + n].iter_mut().zip(src) {
                *a = fold(*a, pre(v.to_f64()));
            }
        }
    });
    Ok(acc)
}

/// Sums over `axes` in f64. A run that folds into one output is summed in eight lanes: one
/// running f64 sum costs an add's latency per element (global average pooling in every
/// squeeze-excitation block).
fn reduce_sum<T: Scalar>(data: &[T], shape: &[usize], axes: &[usize]) -> Result<Vec<f64>> {
    let ks = keep_shape(shape, axes);
    let mut acc = vec![0.0; ks.iter().product()];
    let plan = Bcast::<2>::new(shape, [shape, ks.as_slice()])?;
    let [_, so] = plan.inner_strides();
    plan.walk(0, plan.len(), |_, n, [oi, oo]| {
        let src = &data[oi..oi + n];
        if so == 0 {
            let mut lanes = [0.0f64; 8];
            let chunks = src.chunks_exact(8);
            let rest = chunks.remainder();
            for c in chunks {
                for (l, v) in lanes.iter_mut().zip(c) {
                    *l += v.to_f64();
                }
            }
            let mut a = acc[oo]
                + ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
                + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
            for v in rest {
                a += v.to_f64();
            }
            acc[oo] = a;
        } else {
            for (a, v) in acc[oo..oo + n].iter_mut().zip(src) {
                *a += v.to_f64();
            }
        }
    });
    Ok(acc)
}

/// Reduces a typed slice with one of the standard kinds; returns values in keep_dims layout.
pub(crate) fn reduce_slice<T: Scalar>(
    data: &[T],
    shape: &[usize],
    axes: &[usize],
    kind: ReduceKind,
) -> Result<Vec<f64>> {
    let count: usize = axes.iter().map(|&a| shape[a]).product();
    let mut v = match kind {
        ReduceKind::Sum | ReduceKind::Mean => reduce_sum(data, shape, axes)?,
        ReduceKind::Prod => reduce_raw(data, shape, axes, 1.0, |x| x, |a, x| a * x)?,
        ReduceKind::Max => reduce_raw(data, shape, axes, f64::NEG_INFINITY, |x| x, f64::max)?,
        ReduceKind::Min => reduce_raw(data, shape, axes, f64::INFINITY, |x| x, f64::min)?,
        ReduceKind::L1 => reduce_raw(data, shape, axes, 0.0, f64::abs, |a, x| a + x)?,
        ReduceKind::L2 => reduce_raw(data, shape, axes, 0.0, |x| x * x, |a, x| a + x)?,
        ReduceKind::And => reduce_raw(data, shape, axes, 1.0, |x| (x != 0.0) as u8 as f64, f64::min)?,
        ReduceKind::Or => reduce_raw(data, shape, axes, 0.0, |x| (x != 0.0) as u8 as f64, f64::max)?,
    };
    match kind {
        ReduceKind::Mean if count > 0 => v.iter_mut().for_each(|x| *x /= count as f64),
        ReduceKind::L2 => v.iter_mut().for_each(|x| *x = x.sqrt()),
        _ => {}
    }
    Ok(v)
}

/// Reduces a tensor; the result has the input's element type.
pub(crate) fn reduce_tensor(x: &Tensor, axes: &[usize], keep_dims: bool, kind: ReduceKind) -> Result<Tensor> {
    let shape = x.shape().to_vec();
    let logical = matches!(kind, ReduceKind::And | ReduceKind::Or);
    if logical != (x.element_type() == ElementType::Boolean) {
        return Err(Error::mismatch(format!("{kind:?} reduction does not accept {} input", x.element_type())));
    }
    let vals = crate::dispatch_tensor!(x, a => reduce_slice(&std_slice(a), &shape, axes, kind))?;
    let out_shape: Vec<usize> = if keep_dims {
        keep_shape(&shape, axes)
    } else {
        shape.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, &d)| d).collect()
    };
    let t = match x.element_type() {
        ElementType::F32 => Tensor::F32(make_array(&out_shape, vals.into_iter().map(|v| v as f32).collect())?),
        _ => convert_tensor(&Tensor::F64(make_array(&out_shape, vals)?), x.element_type())?,
    };
    Ok(t)
}

#[derive(Debug)]
struct Reduce {
    kind: ReduceKind,
    keep_dims: bool,
}

impl Op for Reduce {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let [x, axes] = inputs else {
            return Err(Error::invalid(format!("reduction expects 2 inputs, got {}", inputs.len())));
        };
        if axes.element_type().is_float() || axes.element_type() == ElementType::Boolean {
            return Err(Error::mismatch(format!("reduction axes must be integers, got {}", axes.element_type())));
        }
        let axes = norm_axes(&axes.to_i64_vec(), x.rank())?;
        Ok(vec![reduce_tensor(x, &axes, self.keep_dims, self.kind)?])
    }
}

fn build_reduce(ctx: &BuildCtx) -> Result<Box<dyn Op>> {
    let kind = match ctx.node.op_type.as_str() {
        "ReduceSum" => ReduceKind::Sum,
        "ReduceMean" => ReduceKind::Mean,
        "ReduceProd" => ReduceKind::Prod,
        "ReduceMax" => ReduceKind::Max,
        "ReduceMin" => ReduceKind::Min,
        "ReduceL1" => ReduceKind::L1,
        "ReduceL2" => ReduceKind::L2,
        "ReduceLogicalAnd" => ReduceKind::And,
        "ReduceLogicalOr" => ReduceKind::Or,
        other => return Err(ctx.err(format!("'{other}' is not a reduction"))),
    };
    Ok(Box::new(Reduce { kind, keep_dims: ctx.attr_bool_or("keep_dims", false)? }))
}

pub fn register(r: &mut Registry) {
    for t in ["ReduceSum", "ReduceMean", "ReduceProd", "ReduceMax", "ReduceMin", "ReduceLogicalAnd", "ReduceLogicalOr"]
    {
        r.add(t, &["opset1"], build_reduce);
    }
    r.add("ReduceL1", &["opset4"], build_reduce);
    r.add("ReduceL2", &["opset4"], build_reduce);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::binary::tests::{f32t, run_op, vals};

    fn axes(v: &[i64]) -> Tensor {
        Tensor::i64_from_vec(&[v.len()], v.to_vec()).unwrap()
    }

    #[test]
    fn mean_over_spatial_keep_dims() {
        let x = f32t(&[1, 2, 2, 2], &[1., 2., 3., 4., 10., 20., 30., 40.]);
        let o = run_op("ReduceMean", "opset1", &[("keep_dims", "true")], &[x.clone(), axes(&[2, 3])]).unwrap();
        assert_eq!(o[0].shape(), &[1, 2, 1, 1]);
        assert_eq!(vals(&o[0]), vec![2.5, 25.]);
        let o = run_op("ReduceMean", "opset1", &[("keep_dims", "false")], &[x, axes(&[-1, -2])]).unwrap();
        assert_eq!(o[0].shape(), &[1, 2]);
    }

    #[test]
    fn sum_over_outer_and_middle_axes() {
        // [2,3,2]: reduce axis 0 (output stride 1 inner loop) and axis 1 (odd middle axis)
        let x: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let t = f32t(&[2, 3, 2], &x);
        let o = run_op("ReduceSum", "opset1", &[], &[t.clone(), axes(&[0])]).unwrap();
        assert_eq!(o[0].shape(), &[3, 2]);
        assert_eq!(vals(&o[0]), vec![6., 8., 10., 12., 14., 16.]);
        let o = run_op("ReduceSum", "opset1", &[("keep_dims", "true")], &[t.clone(), axes(&[1])]).unwrap();
        assert_eq!(o[0].shape(), &[2, 1, 2]);
        assert_eq!(vals(&o[0]), vec![6., 9., 24., 27.]);
        let o = run_op("ReduceMax", "opset1", &[], &[t.clone(), axes(&[0, 2])]).unwrap();
        assert_eq!(vals(&o[0]), vec![7., 9., 11.]);
        let o = run_op("ReduceMin", "opset1", &[], &[t.clone(), axes(&[0, 1, 2])]).unwrap();
        assert_eq!(o[0].shape(), &[] as &[usize]);
        assert_eq!(vals(&o[0]), vec![0.]);
        // empty axes: identity
        let o = run_op("ReduceSum", "opset1", &[], &[t.clone(), Tensor::i64_from_vec(&[0], vec![]).unwrap()]).unwrap();
        assert_eq!(vals(&o[0]), vals(&t));
    }

    #[test]
    fn prod_on_int32_and_norms() {
        let x = Tensor::I32(make_array(&[2], vec![128, 3]).unwrap());
        let a = Tensor::I32(make_array(&[1], vec![0]).unwrap());
        let o = run_op("ReduceProd", "opset1", &[("keep_dims", "true")], &[x, a]).unwrap();
        assert_eq!(o[0].element_type(), ElementType::I32);
        assert_eq!(o[0].shape(), &[1]);
        assert_eq!(o[0].to_i64_vec(), vec![384]);
        let y = f32t(&[2, 2], &[3., -4., -1., 0.]);
        let o = run_op("ReduceL2", "opset4", &[], &[y.clone(), axes(&[1])]).unwrap();
        assert_eq!(vals(&o[0]), vec![5., 1.]);
        let o = run_op("ReduceL1", "opset4", &[], &[y, axes(&[1])]).unwrap();
        assert_eq!(vals(&o[0]), vec![7., 1.]);
        let m = Tensor::i64_from_vec(&[3], vec![1, 2, 4]).unwrap();
        let o = run_op("ReduceMean", "opset1", &[], &[m, axes(&[0])]).unwrap();
        assert_eq!(o[0].to_i64_vec(), vec![2]);
    }

    #[test]
    fn logical_reductions_and_errors() {
        let b = Tensor::Bool(make_array(&[2, 2], vec![true, false, true, true]).unwrap());
        let o = run_op("ReduceLogicalAnd", "opset1", &[], &[b.clone(), axes(&[1])]).unwrap();
        assert_eq!(vals(&o[0]), vec![0., 1.]);
        let o = run_op("ReduceLogicalOr", "opset1", &[], &[b.clone(), axes(&[1])]).unwrap();
        assert_eq!(vals(&o[0]), vec![1., 1.]);
        assert!(run_op("ReduceSum", "opset1", &[], &[b, axes(&[0])]).is_err());
        assert!(run_op("ReduceSum", "opset1", &[], &[f32t(&[2], &[1., 2.]), axes(&[1])]).is_err());
    }
}
