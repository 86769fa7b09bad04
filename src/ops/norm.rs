//! Normalizations: MVN (opset2 = MVN-1 with attributes, opset6 with an axes input),
//! NormalizeL2 and BatchNormInference (opset1 and opset5 input orders).
//! MVN over trailing axes (layer norm, per-channel spatial norm) runs group by group over
//! contiguous slices; other axes go through the general reduction + broadcast kernels.

use super::binary::{broadcast_map, make_array, std_slice, AutoBroadcast, PAR_THRESHOLD};
use super::op::{BuildCtx, Op, Registry};
use super::reduce::{keep_shape, norm_axes, reduce_raw};
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use ndarray::ArrayD;
use rayon::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EpsMode {
    InsideSqrt,
    OutsideSqrt,
}

/// Where MVN's axes come from.
#[derive(Clone, Debug)]
enum MvnAxes {
    /// MVN-6: the second input.
    Input,
    /// MVN-1 `reduction_axes`.
    Fixed(Vec<i64>),
    /// MVN-1 without `reduction_axes`: from axis 1 (across channels) or 2 to the end.
    From(usize),
}

#[derive(Debug)]
struct Mvn {
    axes: MvnAxes,
    normalize_variance: bool,
    eps: f64,
    eps_mode: EpsMode,
}

fn denominator(var: f64, eps: f64, mode: EpsMode) -> f32 {
    // The reference computes in the data type (f32).
    let (v, e) = (var as f32, eps as f32);
    match mode {
        EpsMode::InsideSqrt => (v + e).sqrt(),
        EpsMode::OutsideSqrt => v.sqrt() + e,
    }
}

/// MVN over the last dims: each contiguous group of `group` elements is normalized alone.
fn mvn_trailing(xs: &[f32], group: usize, nv: bool, eps: f64, mode: EpsMode) -> Vec<f32> {
    let mut out = vec![0f32; xs.len()];
    let work = |(o, g): (&mut [f32], &[f32])| {
        let n = g.len() as f64;
        let mean = (g.iter().map(|&v| v as f64).sum::<f64>() / n) as f32;
        for (y, &v) in o.iter_mut().zip(g) {
            *y = v - mean;
        }
        if nv {
            let var = o.iter().map(|&d| (d as f64) * (d as f64)).sum::<f64>() / n;
            let den = denominator(var, eps, mode);
            for y in o.iter_mut() {
                *y /= den;
            }
        }
    };
    if xs.len() >= PAR_THRESHOLD && xs.len() / group > 1 {
        out.par_chunks_mut(group).zip(xs.par_chunks(group)).for_each(work);
    } else {
        out.chunks_mut(group).zip(xs.chunks(group)).for_each(work);
    }
    out
}

fn mvn_f32(x: &ArrayD<f32>, axes: &[usize], nv: bool, eps: f64, mode: EpsMode) -> Result<ArrayD<f32>> {
    let shape = x.shape();
    let xs = std_slice(x);
    let r = shape.len();
    let trailing = !axes.is_empty() && axes.iter().enumerate().all(|(i, &a)| a == r - axes.len() + i);
    if trailing {
        let group: usize = shape[r - axes.len()..].iter().product();
        if group == 0 {
            return Ok(x.clone());
        }
        return make_array(shape, mvn_trailing(&xs, group, nv, eps, mode));
    }
    let ks = keep_shape(shape, axes);
    let count: usize = axes.iter().map(|&a| shape[a]).product::<usize>().max(1);
    let sums = reduce_raw(&xs, shape, axes, 0.0, |v| v, |a, v| a + v)?;
    let mean = make_array(&ks, sums.iter().map(|s| (s / count as f64) as f32).collect())?;
    let centered = broadcast_map(x, &mean, AutoBroadcast::Numpy, |v: f32, m: f32| v - m)?;
    if !nv {
        return Ok(centered);
    }
    let cs = std_slice(&centered);
    let sq = reduce_raw(&cs, shape, axes, 0.0, |d| d * d, |a, v| a + v)?;
    let den = make_array(&ks, sq.iter().map(|s| denominator(s / count as f64, eps, mode)).collect())?;
    broadcast_map(&centered, &den, AutoBroadcast::Numpy, |d: f32, q: f32| d / q)
}

impl Op for Mvn {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let x = inputs.first().ok_or_else(|| Error::invalid("MVN expects an input"))?;
        let rank = x.rank();
        let raw: Vec<i64> = match &self.axes {
            MvnAxes::Input => {
                let a = inputs.get(1).ok_or_else(|| Error::invalid("MVN-6 expects an axes input"))?;
                a.to_i64_vec()
            }
            MvnAxes::Fixed(v) => v.clone(),
            MvnAxes::From(k) => (*k as i64..rank as i64).collect(),
        };
        let axes = norm_axes(&raw, rank)?;
        let out = match x {
            Tensor::F32(a) => Tensor::F32(mvn_f32(a, &axes, self.normalize_variance, self.eps, self.eps_mode)?),
            _ if x.element_type().is_float() => {
                let a = x.to_f32();
                let o = Tensor::F32(mvn_f32(&a, &axes, self.normalize_variance, self.eps, self.eps_mode)?);
                super::convert::convert_tensor(&o, x.element_type())?
            }
            _ => return Err(Error::mismatch(format!("MVN needs float data, got {}", x.element_type()))),
        };
        Ok(vec![out])
    }
}

fn parse_eps_mode(ctx: &BuildCtx, default: &str) -> Result<EpsMode> {
    match ctx.attr_str_or("eps_mode", default).trim().to_ascii_lowercase().as_str() {
        "inside_sqrt" => Ok(EpsMode::InsideSqrt),
        "outside_sqrt" => Ok(EpsMode::OutsideSqrt),
        other => Err(ctx.err(format!("unknown eps_mode '{other}'"))),
    }
}

fn build_mvn(ctx: &BuildCtx) -> Result<Box<dyn Op>> {
    let normalize_variance = ctx.attr_bool_or("normalize_variance", true)?;
    let eps = ctx.attr_f64("eps")?;
    if ctx.node.version == "opset6" || ctx.node.inputs.len() > 1 && ctx.attr("across_channels").is_none() {
        return Ok(Box::new(Mvn {
            axes: MvnAxes::Input,
            normalize_variance,
            eps,
            eps_mode: parse_eps_mode(ctx, "inside_sqrt")?,
        }));
    }
    // MVN-1: eps is added inside the square root (OpenVINO's reference `mvn`).
    let axes = match ctx.attr("reduction_axes") {
        Some(s) if !s.trim().is_empty() => MvnAxes::Fixed(
            super::attrs::parse_list(s).ok_or_else(|| ctx.err(format!("reduction_axes is not a list: '{s}'")))?,
        ),
        _ => MvnAxes::From(if ctx.attr_bool_or("across_channels", false)? { 1 } else { 2 }),
    };
    Ok(Box::new(Mvn { axes, normalize_variance, eps, eps_mode: EpsMode::InsideSqrt }))
}

/// NormalizeL2(data, axes): x / sqrt(sum(x²) + eps) or x / sqrt(max(sum(x²), eps)).
#[derive(Debug)]
struct NormalizeL2 {
    eps: f64,
    add: bool,
}

impl Op for NormalizeL2 {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let [x, axes] = inputs else {
            return Err(Error::invalid(format!("NormalizeL2 expects 2 inputs, got {}", inputs.len())));
        };
        let axes = norm_axes(&axes.to_i64_vec(), x.rank())?;
        let a = x.to_f32();
        let shape = a.shape().to_vec();
        let xs = std_slice(&a);
        let sums = reduce_raw(&xs, &shape, &axes, 0.0, |v| v * v, |s, v| s + v)?;
        let (eps, add) = (self.eps as f32, self.add);
        let den: Vec<f32> = sums
            .iter()
            .map(|&s| {
                let s = s as f32;
                if add {
                    (s + eps).sqrt()
                } else {
                    s.max(eps).sqrt()
                }
            })
            .collect();
        let den = make_array(&keep_shape(&shape, &axes), den)?;
        let out = Tensor::F32(broadcast_map(&a, &den, AutoBroadcast::Numpy, |v: f32, d: f32| v / d)?);
        if !x.element_type().is_float() {
            return Err(Error::mismatch(format!("NormalizeL2 needs float data, got {}", x.element_type())));
        }
        Ok(vec![super::convert::convert_tensor(&out, x.element_type())?])
    }
}

fn build_normalize_l2(ctx: &BuildCtx) -> Result<Box<dyn Op>> {
    let add = match ctx.attr_str_or("eps_mode", "add").trim().to_ascii_lowercase().as_str() {
        "add" => true,
        "max" => false,
        other => return Err(ctx.err(format!("unknown eps_mode '{other}'"))),
    };
    Ok(Box::new(NormalizeL2 { eps: ctx.attr_f64("eps")?, add }))
}

/// BatchNormInference: gamma·(x − mean)/sqrt(var + eps) + beta per channel (axis 1).
#[derive(Debug)]
struct BatchNorm {
    eps: f32,
    /// opset1 orders inputs (gamma, beta, data, mean, var); opset5 (data, gamma, beta, mean, var).
    data_first: bool,
}

impl Op for BatchNorm {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        if inputs.len() != 5 {
            return Err(Error::invalid(format!("BatchNormInference expects 5 inputs, got {}", inputs.len())));
        }
        let (x, gamma, beta) =
            if self.data_first { (inputs[0], inputs[1], inputs[2]) } else { (inputs[2], inputs[0], inputs[1]) };
        let (mean, var) = (inputs[3], inputs[4]);
        if !x.element_type().is_float() {
            return Err(Error::mismatch(format!("BatchNormInference needs float data, got {}", x.element_type())));
        }
        let shape = x.shape().to_vec();
        if shape.len() < 2 {
            return Err(Error::mismatch(format!("BatchNormInference data must have rank >= 2, got {shape:?}")));
        }
        let c = shape[1];
        let per_channel = |t: &Tensor, what: &str| -> Result<Vec<f32>> {
            if t.len() != c {
                return Err(Error::mismatch(format!("{what} has {} values for {c} channels", t.len())));
            }
            Ok(t.to_f32().iter().copied().collect())
        };
        let (g, b, m, v) = (
            per_channel(gamma, "gamma")?,
            per_channel(beta, "beta")?,
            per_channel(mean, "mean")?,
            per_channel(var, "variance")?,
        );
        let den: Vec<f32> = v.iter().map(|&s| (s + self.eps).sqrt()).collect();
        let a = x.to_f32();
        let xs = std_slice(&a);
        let inner: usize = shape[2..].iter().product();
        let mut out = vec![0f32; xs.len()];
        if inner > 0 {
            for (row, (o, xi)) in out.chunks_mut(inner).zip(xs.chunks(inner)).enumerate() {
                let k = row % c;
                for (y, &val) in o.iter_mut().zip(xi) {
                    *y = g[k] * ((val - m[k]) / den[k]) + b[k];
                }
            }
        }
        let out = Tensor::F32(make_array(&shape, out)?);
        Ok(vec![super::convert::convert_tensor(&out, x.element_type())?])
    }
}

fn build_batch_norm(ctx: &BuildCtx) -> Result<Box<dyn Op>> {
    Ok(Box::new(BatchNorm { eps: ctx.attr_f64("epsilon")? as f32, data_first: ctx.node.version != "opset1" }))
}

pub fn register(r: &mut Registry) {
    // MVN-1 is spelled opset2 in IR (it first appeared there).
    r.add("MVN", &["opset1", "opset2", "opset6"], build_mvn);
    r.add("NormalizeL2", &["opset1"], build_normalize_l2);
    r.add("BatchNormInference", &["opset1", "opset5"], build_batch_norm);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::binary::tests::{f32t, run_op, vals};

    fn close(a: &[f64], b: &[f64], tol: f64) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= tol, "{a:?} vs {b:?}");
        }
    }

    fn axes(v: &[i64]) -> Tensor {
        Tensor::I32(make_array(&[v.len()], v.iter().map(|&x| x as i32).collect()).unwrap())
    }

    #[test]
    fn mvn6_last_axis_inside_and_outside() {
        // rows [1,2,3,4] → mean 2.5, var 1.25
        let x = f32t(&[2, 4], &[1., 2., 3., 4., 2., 2., 2., 2.]);
        let attrs = [("eps", "0.25"), ("normalize_variance", "true"), ("eps_mode", "INSIDE_SQRT")];
        let o = run_op("MVN", "opset6", &attrs, &[x.clone(), axes(&[-1])]).unwrap();
        let d = (1.25f64 + 0.25).sqrt();
        close(&vals(&o[0]), &[-1.5 / d, -0.5 / d, 0.5 / d, 1.5 / d, 0., 0., 0., 0.], 1e-6);
        let attrs = [("eps", "0.25"), ("normalize_variance", "true"), ("eps_mode", "outside_sqrt")];
        let o = run_op("MVN", "opset6", &attrs, &[x.clone(), axes(&[1])]).unwrap();
        let d = 1.25f64.sqrt() + 0.25;
        close(&vals(&o[0])[..4], &[-1.5 / d, -0.5 / d, 0.5 / d, 1.5 / d], 1e-6);
        let attrs = [("eps", "0.25"), ("normalize_variance", "false"), ("eps_mode", "inside_sqrt")];
        let o = run_op("MVN", "opset6", &attrs, &[x, axes(&[1])]).unwrap();
        close(&vals(&o[0])[..4], &[-1.5, -0.5, 0.5, 1.5], 1e-6);
    }

    #[test]
    fn mvn_non_trailing_axis_matches_hand_values() {
        // [2,2] normalized over axis 0: columns (1,3) and (2,6)
        let x = f32t(&[2, 2], &[1., 2., 3., 6.]);
        let attrs = [("eps", "0"), ("normalize_variance", "true"), ("eps_mode", "inside_sqrt")];
        let o = run_op("MVN", "opset6", &attrs, &[x, axes(&[0])]).unwrap();
        close(&vals(&o[0]), &[-1., -1., 1., 1.], 1e-6);
    }

    #[test]
    fn mvn1_across_channels_and_not() {
        // [1,2,2]: per channel over the spatial axis, or over both.
        let x = f32t(&[1, 2, 2], &[0., 2., 10., 14.]);
        let o = run_op(
            "MVN",
            "opset2",
            &[("eps", "0"), ("across_channels", "false"), ("normalize_variance", "false")],
            std::slice::from_ref(&x),
        )
        .unwrap();
        close(&vals(&o[0]), &[-1., 1., -2., 2.], 1e-6);
        let o = run_op(
            "MVN",
            "opset2",
            &[("eps", "0"), ("across_channels", "true"), ("normalize_variance", "false")],
            std::slice::from_ref(&x),
        )
        .unwrap();
        close(&vals(&o[0]), &[-6.5, -4.5, 3.5, 7.5], 1e-6);
        let o = run_op("MVN", "opset2", &[("eps", "0"), ("reduction_axes", "2"), ("normalize_variance", "true")], &[x])
            .unwrap();
        close(&vals(&o[0]), &[-1., 1., -1., 1.], 1e-6);
    }

    #[test]
    fn normalize_l2_modes() {
        let x = f32t(&[2, 2], &[3., 4., 0., 0.]);
        let o =
            run_op("NormalizeL2", "opset1", &[("eps", "1e-6"), ("eps_mode", "max")], &[x.clone(), axes(&[1])]).unwrap();
        close(&vals(&o[0]), &[0.6, 0.8, 0., 0.], 1e-6);
        let o = run_op("NormalizeL2", "opset1", &[("eps", "11"), ("eps_mode", "add")], &[x, axes(&[1])]).unwrap();
        close(&vals(&o[0]), &[0.5, 4. / 6., 0., 0.], 1e-6);
    }

    #[test]
    fn batch_norm_both_input_orders() {
        let x = f32t(&[1, 2, 2], &[1., 3., 10., 20.]);
        let gamma = f32t(&[2], &[2., 1.]);
        let beta = f32t(&[2], &[1., -1.]);
        let mean = f32t(&[2], &[2., 10.]);
        let var = f32t(&[2], &[1., 4.]);
        let want = [-1., 3., -1., 4.];
        let o = run_op(
            "BatchNormInference",
            "opset5",
            &[("epsilon", "0")],
            &[x.clone(), gamma.clone(), beta.clone(), mean.clone(), var.clone()],
        )
        .unwrap();
        close(&vals(&o[0]), &want, 1e-6);
        let o = run_op("BatchNormInference", "opset1", &[("epsilon", "0")], &[gamma, beta, x, mean, var]).unwrap();
        close(&vals(&o[0]), &want, 1e-6);
    }
}
