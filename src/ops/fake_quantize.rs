//! FakeQuantize (opset1) with OpenVINO's reference arithmetic, in f32:
//! x ≤ min(il, ih) → ol; x > max(il, ih) → oh;
//! else nearbyint(x · (levels − 1) / (ih − il) − il · (levels − 1) / (ih − il)) · (oh − ol) / (levels − 1) + ol,
//! the CPU plugin's order of operations (see [`Grid`]).
//! The four limits broadcast (numpy) against the data; per-tensor and per-channel limits run as
//! flat loops with scalar limits.

use super::binary::{make_array, std_slice, AutoBroadcast, Bcast};
use super::op::{take_unique, BuildCtx, Op, Registry};
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use multiversion::multiversion;
use ndarray::ArrayD;
use std::sync::Arc;

/// Adding and subtracting 1.5·2^23 rounds an f32 of magnitude below 2^22 to the nearest integer,
/// ties to even (the default rounding mode), without the `roundevenf` call that blocks
/// vectorization on baseline x86-64.
const ROUND_MAGIC: f32 = 12_582_912.0;

/// nearbyint for values in [0, 2^22) (the grid index is always within [0, levels − 1]).
#[inline(always)]
fn round_grid(v: f32) -> f32 {
    (v + ROUND_MAGIC) - ROUND_MAGIC
}

/// One quantization grid: the crop limits and the affine maps into and out of the integer grid.
/// The CPU plugin computes FakeQuantize this way (crop, `x·in_scale + in_shift`, round,
/// `q·out_scale + out_shift`), which costs a multiply instead of a divide per element.
#[derive(Clone, Copy, Debug)]
pub struct Grid {
    lo: f32,
    hi: f32,
    in_scale: f32,
    in_shift: f32,
    out_scale: f32,
    out_low: f32,
    out_high: f32,
}

impl Grid {
    #[inline(always)]
    pub fn new(il: f32, ih: f32, ol: f32, oh: f32, levels_minus_one: f32) -> Grid {
        let in_scale = levels_minus_one / (ih - il);
        Grid {
            lo: il.min(ih),
            hi: il.max(ih),
            in_scale,
            in_shift: -il * in_scale,
            out_scale: (oh - ol) / levels_minus_one,
            out_low: ol,
            out_high: oh,
        }
    }

    /// x ≤ min(il, ih) → ol; x > max(il, ih) → oh; else the nearest grid point.
    #[inline(always)]
    pub fn apply(&self, x: f32) -> f32 {
        let q = round_grid(x * self.in_scale + self.in_shift) * self.out_scale + self.out_low;
        // Written as selects (both sides computed) so loops over it vectorize.
        let q = if x > self.hi { self.out_high } else { q };
        if x <= self.lo {
            self.out_low
        } else {
            q
        }
    }
}

/// One element (see [`Grid`]).
#[inline(always)]
pub fn quantize(x: f32, il: f32, ih: f32, ol: f32, oh: f32, levels_minus_one: f32) -> f32 {
    Grid::new(il, ih, ol, oh, levels_minus_one).apply(x)
}

#[derive(Debug)]
struct FakeQuantize {
    levels: usize,
    mode: AutoBroadcast,
}

/// FakeQuantize on f32 arrays.
pub fn fake_quantize_f32(
    x: &ArrayD<f32>,
    limits: [&ArrayD<f32>; 4],
    levels: usize,
    numpy: bool,
) -> Result<ArrayD<f32>> {
    let mode = if numpy { AutoBroadcast::Numpy } else { AutoBroadcast::None };
    fq(x, limits, levels, mode)
}

fn fq(x: &ArrayD<f32>, limits: [&ArrayD<f32>; 4], levels: usize, mode: AutoBroadcast) -> Result<ArrayD<f32>> {
    let l1 = levels_minus_one(levels)?;
    let shapes = [x.shape(), limits[0].shape(), limits[1].shape(), limits[2].shape(), limits[3].shape()];
    let out_shape = mode.out_shape(&shapes)?;
    let plan = Bcast::<5>::new(&out_shape, shapes)?;
    let xs = std_slice(x);
    let mut out = vec![0f32; plan.len()];
    fill(&mut out, Some(&xs), &plan, limits, l1);
    make_array(&out_shape, out)
}

/// FakeQuantize written over `x` itself, when it already has the output shape; `None` otherwise.
fn fq_in_place(
    x: &mut ArrayD<f32>,
    limits: [&ArrayD<f32>; 4],
    levels: usize,
    mode: AutoBroadcast,
) -> Option<Result<()>> {
    let l1 = match levels_minus_one(levels) {
        Ok(v) => v,
        Err(e) => return Some(Err(e)),
    };
    let shapes = [x.shape(), limits[0].shape(), limits[1].shape(), limits[2].shape(), limits[3].shape()];
    let plan = match mode.out_shape(&shapes).and_then(|s| Bcast::<5>::new(&s, shapes)) {
        Ok(p) => p,
        Err(e) => return Some(Err(e)),
    };
    if plan.out_shape != x.shape() {
        return None;
    }
    fill(x.as_slice_mut()?, None, &plan, limits, l1);
    Some(Ok(()))
}

fn levels_minus_one(levels: usize) -> Result<f32> {
    if levels < 2 {
        return Err(Error::invalid(format!("FakeQuantize levels must be at least 2, got {levels}")));
    }
    Ok((levels - 1) as f32)
}

/// One contiguous run through one grid, from `xs` or in place; AVX2/AVX-512 where the CPU has
/// them (no FMA contraction: the bits are the baseline build's).
#[multiversion(targets("x86_64+avx512f+avx512vl+fma", "x86_64+avx2+fma"))]
fn apply_run(grid: &Grid, out: &mut [f32], xs: Option<&[f32]>) {
    match xs {
        Some(xs) => out.iter_mut().zip(xs).for_each(|(y, &v)| *y = grid.apply(v)),
        None => out.iter_mut().for_each(|y| *y = grid.apply(*y)),
    }
}

/// Quantizes into `out`, reading the data from `xs`, or from `out` itself when `xs` is `None`
/// (then the data has the output shape, so its offsets are the output's).
fn fill(out: &mut [f32], xs: Option<&[f32]>, plan: &Bcast<5>, limits: [&ArrayD<f32>; 4], l1: f32) {
    let lim: Vec<_> = limits.iter().map(|a| std_slice(a)).collect();
    let (il, ih, ol, oh) = (&*lim[0], &*lim[1], &*lim[2], &*lim[3]);
    let [sx, s0, s1, s2, s3] = plan.inner_strides();
    plan.fill(out, |o, [ox, o0, o1, o2, o3]| {
        let n = o.len();
        if sx == 1 && s0 == 0 && s1 == 0 && s2 == 0 && s3 == 0 {
            let grid = Grid::new(il[o0], ih[o1], ol[o2], oh[o3], l1);
            apply_run(&grid, o, xs.map(|xs| &xs[ox..ox + n]));
        } else {
            for (i, y) in o.iter_mut().enumerate() {
                let v = xs.map_or(*y, |xs| xs[ox + i * sx]);
                *y = quantize(v, il[o0 + i * s0], ih[o1 + i * s1], ol[o2 + i * s2], oh[o3 + i * s3], l1);
            }
        }
    });
}

impl Op for FakeQuantize {
    fn eval_owned(&self, mut inputs: Vec<Arc<Tensor>>) -> Result<Vec<Tensor>> {
        if inputs.len() == 5 && inputs[1..].iter().all(|t| matches!(**t, Tensor::F32(_))) {
            let mut x = Some(inputs.remove(0));
            match take_unique(&mut x) {
                Some(Tensor::F32(mut own)) => {
                    let lim: Vec<&ArrayD<f32>> =
                        inputs.iter().filter_map(|t| if let Tensor::F32(a) = &**t { Some(a) } else { None }).collect();
                    if let [a, b, c, d] = lim[..] {
                        if let Some(r) = fq_in_place(&mut own, [a, b, c, d], self.levels, self.mode) {
                            return r.map(|()| vec![Tensor::F32(own)]);
                        }
                    }
                    x = Some(Arc::new(Tensor::F32(own)));
                }
                Some(t) => x = Some(Arc::new(t)),
                None => {}
            }
            inputs.insert(0, x.ok_or_else(|| Error::internal("FakeQuantize lost its input"))?);
        }
        let refs: Vec<&Tensor> = inputs.iter().map(|a| a.as_ref()).collect();
        self.eval(&refs)
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let [x, il, ih, ol, oh] = inputs else {
            return Err(Error::invalid(format!("FakeQuantize expects 5 inputs, got {}", inputs.len())));
        };
        let et = x.element_type();
        if !et.is_float() {
            return Err(Error::mismatch(format!("FakeQuantize needs float data, got {et}")));
        }
        if let (Tensor::F32(a), Tensor::F32(b), Tensor::F32(c), Tensor::F32(d), Tensor::F32(e)) = (x, il, ih, ol, oh) {
            return Ok(vec![Tensor::F32(fq(a, [b, c, d, e], self.levels, self.mode)?)]);
        }
        // Other float types: computed in f32, returned in the data's type.
        let (a, b, c, d, e) = (x.to_f32(), il.to_f32(), ih.to_f32(), ol.to_f32(), oh.to_f32());
        let out = Tensor::F32(fq(&a, [&b, &c, &d, &e], self.levels, self.mode)?);
        Ok(vec![super::convert::convert_tensor(&out, et)?])
    }
}

fn build_fq(ctx: &BuildCtx) -> Result<Box<dyn Op>> {
    let levels = ctx.attr_i64("levels")?;
    if levels < 2 {
        return Err(ctx.err(format!("levels must be at least 2, got {levels}")));
    }
    Ok(Box::new(FakeQuantize { levels: levels as usize, mode: AutoBroadcast::from_ctx(ctx)? }))
}

pub fn register(r: &mut Registry) {
    r.add("FakeQuantize", &["opset1"], build_fq);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::binary::tests::{f32t, run_op, vals};

    #[test]
    fn per_tensor_u8_grid() {
        // [0, 2.55] with 256 levels: step 0.01; ties round to even codes.
        let x = f32t(&[6], &[-1.0, 0.0, 0.004, 0.006, 1.0, 3.0]);
        let s = |v: f32| f32t(&[], &[v]);
        let o = run_op("FakeQuantize", "opset1", &[("levels", "256")], &[x, s(0.0), s(2.55), s(0.0), s(2.55)]).unwrap();
        let v = vals(&o[0]);
        let want = [0.0, 0.0, 0.0, 0.01, 1.0, 2.55];
        for (a, b) in v.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{v:?}");
        }
    }

    #[test]
    fn boundaries_follow_reference() {
        // x equal to in_low gives out_low; x equal to in_high goes through the formula.
        assert_eq!(quantize(-1.0, -1.0, 1.0, -10.0, 10.0, 2.0), -10.0);
        assert_eq!(quantize(1.0, -1.0, 1.0, -10.0, 10.0, 2.0), 10.0);
        // 0.5 of a step rounds half to even: (0.25+1)/2·2 = 1.25 → 1; (0.5+1)/2·2 = 1.5 → 2
        assert_eq!(quantize(0.25, -1.0, 1.0, -1.0, 1.0, 2.0), 0.0);
        assert_eq!(quantize(0.5, -1.0, 1.0, -1.0, 1.0, 2.0), 1.0);
        assert_eq!(quantize(0.5, 0.0, 2.0, 0.0, 2.0, 2.0), 0.0);
        assert_eq!(quantize(2.5, 0.0, 4.0, 0.0, 4.0, 4.0), 2.0);
        assert_eq!(quantize(3.5, 0.0, 4.0, 0.0, 4.0, 4.0), 4.0);
        assert!(quantize(f32::NAN, 0.0, 4.0, 0.0, 4.0, 4.0).is_nan());
        // Degenerate range: il == ih splits at the point.
        assert_eq!(quantize(0.3, 0.3, 0.3, 5.0, 7.0, 255.0), 5.0);
        assert_eq!(quantize(0.31, 0.3, 0.3, 5.0, 7.0, 255.0), 7.0);
        // Inverted input range.
        assert_eq!(quantize(0.0, 1.0, -1.0, -1.0, 1.0, 2.0), 0.0);
    }

    #[test]
    fn per_channel_limits_broadcast() {
        // [1,2,3] data, channel limits [1,2,1]; output limits scalar.
        let x = f32t(&[1, 2, 3], &[-0.6, 0.1, 0.7, -0.6, 0.1, 0.7]);
        let il = f32t(&[1, 2, 1], &[-1.0, 0.0]);
        let ih = f32t(&[1, 2, 1], &[1.0, 0.5]);
        let ol = f32t(&[1, 2, 1], &[-1.0, 0.0]);
        let oh = f32t(&[1, 2, 1], &[1.0, 0.5]);
        let o = run_op("FakeQuantize", "opset1", &[("levels", "3")], &[x, il, ih, ol, oh]).unwrap();
        // channel 0: grid {-1,0,1}; channel 1: grid {0,0.25,0.5}
        assert_eq!(vals(&o[0]), vec![-1.0, 0.0, 1.0, 0.0, 0.0, 0.5]);
    }

    #[test]
    fn limits_on_last_axis_and_errors() {
        let x = f32t(&[2, 2], &[0.3, 0.3, 0.7, 0.7]);
        let il = f32t(&[2], &[0.0, 0.0]);
        let ih = f32t(&[2], &[1.0, 2.0]);
        let o = run_op(
            "FakeQuantize",
            "opset1",
            &[("levels", "2")],
            &[x.clone(), il.clone(), ih.clone(), il.clone(), ih.clone()],
        )
        .unwrap();
        assert_eq!(vals(&o[0]), vec![0.0, 0.0, 1.0, 0.0]);
        assert!(run_op(
            "FakeQuantize",
            "opset1",
            &[("levels", "1")],
            &[x.clone(), il.clone(), ih.clone(), il.clone(), ih.clone()]
        )
        .is_err());
        let bad = f32t(&[3], &[0.0, 0.0, 0.0]);
        assert!(run_op("FakeQuantize", "opset1", &[("levels", "256")], &[x, bad, ih.clone(), il, ih]).is_err());
    }

    /// OpenVINO 2026.4 CPU outputs (INFERENCE_PRECISION_HINT=f32) on the same inputs.
    #[test]
    fn matches_openvino_cpu() {
        let x = f32t(&[1, 12], &[-3.7, -1.25, -0.5, -0.01, 0.0, 0.3, 0.5, 1.0, 1.7, 2.5, 6.2, 11.0]);
        let s = |v: f32| f32t(&[], &[v]);
        let cases: [(&str, [f32; 4], &[f64]); 2] = [
            (
                "256",
                [-1.3, 4.2, -1.3, 4.2],
                &[
                    -1.3000000715255737,
                    -1.256862759590149,
                    -0.501960813999176,
                    -0.005882389843463898,
                    -0.005882389843463898,
                    0.2960784137248993,
                    0.4901960492134094,
                    1.0078431367874146,
                    1.698039174079895,
                    2.4960784912109375,
                    4.200000286102295,
                    4.200000286102295,
                ],
            ),
            ("5", [0.0, 2.0, -1.0, 1.0], &[-1.0, -1.0, -1.0, -1.0, -1.0, -0.5, -0.5, 0.0, 0.5, 1.0, 1.0, 1.0]),
        ];
        for (levels, [a, b, c, d], want) in cases {
            let o =
                run_op("FakeQuantize", "opset1", &[("levels", levels)], &[x.clone(), s(a), s(b), s(c), s(d)]).unwrap();
            for (g, w) in vals(&o[0]).iter().zip(want) {
                assert!((g - w).abs() <= 1e-6 * w.abs().max(1.0), "levels {levels}: {g} vs {w}");
            }
        }
    }
}
