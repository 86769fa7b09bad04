//! Unary activations and math functions, PReLU, HardSigmoid, SoftMax and LogSoftmax.
//! f32 runs as contiguous slice loops (one monomorphized loop per function, rayon for large
//! tensors); f16/bf16/f64 are computed through f32/f64 and converted back.

use super::binary::{broadcast_map, make_array, par_chunks, std_slice, AutoBroadcast, PAR_THRESHOLD};
use super::op::{take_unique, BuildCtx, Op, Registry};
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use half::{bf16, f16};
use multiversion::multiversion;
use ndarray::ArrayD;
use std::sync::Arc;

/// The Gauss error function in f64: Maclaurin series below 2.5 (terms peak near e^6, so the
/// absolute error stays ~1e-13), continued fraction of erfc above, exactly ±1 past 6.
pub(crate) fn erf(x: f64) -> f64 {
    let ax = x.abs();
    let r = if ax < 2.5 {
        // erf(x) = 2/sqrt(pi) · Σ (-1)^n x^(2n+1) / (n! (2n+1))
        let x2 = ax * ax;
        let mut term = ax;
        let mut sum = ax;
        let mut n = 0.0;
        while n < 200.0 {
            n += 1.0;
            term *= -x2 / n;
            let add = term / (2.0 * n + 1.0);
            sum += add;
            if add.abs() < 1e-17 {
                break;
            }
        }
        sum * std::f64::consts::FRAC_2_SQRT_PI
    } else if ax < 6.0 {
        // erfc(x) = e^{-x²}/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + ...))))
        let mut f = ax;
        for k in (1..=80).rev() {
            f = ax + (k as f64 / 2.0) / f;
        }
        1.0 - (-ax * ax).exp() / (std::f64::consts::PI.sqrt() * f)
    } else {
        1.0
    };
    if x < 0.0 {
        -r
    } else {
        r
    }
}

/// e^x in f32 without a libm call, so loops over it vectorize: x = n·ln2 + r with |r| ≤ ln2/2,
/// e^r by a degree-6 polynomial (Cephes' expf coefficients, error about 1 ulp), times 2^n built
/// from its exponent bits. Below −87.33 (where e^x leaves the normal range) it gives 0, above
/// 88.72 infinity; NaN stays NaN.
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Round to nearest with the 1.5·2^23 trick (no roundf call; NaN is patched below).
    const MAGIC: f32 = 12_582_912.0;
    let xc = x.clamp(-87.33, 88.72);
    let shifted = xc * LOG2E + MAGIC;
    let n = shifted - MAGIC;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 5e-1;
    let e = (p * r * r + r) + 1.0;
    // `shifted` holds n in its low mantissa bits; reading them there (rather than `n as i32`,
    // a saturating conversion) keeps the function vectorizable.
    let n_int = shifted.to_bits().wrapping_sub(MAGIC.to_bits()) as i32;
    let scale = f32::from_bits(((n_int + 127) as u32) << 23);
    let y = e * scale;
    let y = if x < -87.33 { 0.0 } else { y };
    let y = if x > 88.72 { f32::INFINITY } else { y };
    if x.is_nan() {
        x
    } else {
        y
    }
}

/// erf in f32 for the f32 paths: odd Maclaurin polynomial below 0.5, Abramowitz & Stegun 7.1.26
/// (absolute error below 1.5e-7) above; branch-light and free of loops so it stays fast.
#[inline(always)]
pub(crate) fn erf_f32(x: f32) -> f32 {
    let ax = x.abs();
    // Both branches are computed and one is selected, so loops over erf vectorize.
    let x2 = ax * ax;
    // 2/√π · (x − x³/3 + x⁵/10 − x⁷/42 + x⁹/216 − x¹¹/1320)
    let p = 1.0 + x2 * (-1.0 / 3.0 + x2 * (0.1 + x2 * (-1.0 / 42.0 + x2 * (1.0 / 216.0 - x2 / 1320.0))));
    let small = ax * p * std::f32::consts::FRAC_2_SQRT_PI;
    let t = 1.0 / (1.0 + 0.327_591_1 * ax);
    let poly = t * (0.254_829_6 + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let large = 1.0 - poly * exp_f32(-x2);
    let r = if ax < 0.5 { small } else { large };
    r.copysign(x)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Relu,
    Clamp { min: f64, max: f64 },
    Elu { alpha: f32 },
    Sigmoid,
    Tanh,
    Exp,
    Log,
    Sqrt,
    Abs,
    Negative,
    Floor,
    Ceiling,
    Erf,
    GeluErf,
    GeluTanh,
    HSwish,
    HSigmoid,
    Mish,
    SoftPlus,
    Sign,
    RoundEven,
    RoundAway,
    Sin,
    Cos,
}

/// Applies `f` over a slice into a new vector, in parallel when large.
fn map_slice<T: Copy + Sync, O: Copy + Send + Default>(src: &[T], f: impl Fn(T) -> O + Sync) -> Vec<O> {
    let mut out = vec![O::default(); src.len()];
    if src.len() < PAR_THRESHOLD {
        map_into(&mut out, src, &f);
    } else {
        const CHUNK: usize = 1 << 14;
        par_chunks(&mut out, CHUNK, &|c, o| {
            let s = &src[c * CHUNK..c * CHUNK + o.len()];
            map_into(o, s, &f)
        });
    }
    out
}

/// `o[i] = f(s[i])`, compiled for AVX2 and AVX-512 too (the math functions vectorize).
#[multiversion(targets("x86_64+avx512f+avx512vl+fma", "x86_64+avx2+fma"))]
fn map_into<T: Copy, O: Copy>(o: &mut [O], s: &[T], f: &impl Fn(T) -> O) {
    for (y, &x) in o.iter_mut().zip(s) {
        *y = f(x);
    }
}

/// `v[i] = f(v[i])` (see [`map_into`]).
#[multiversion(targets("x86_64+avx512f+avx512vl+fma", "x86_64+avx2+fma"))]
fn update(v: &mut [f32], f: &impl Fn(f32) -> f32) {
    for x in v.iter_mut() {
        *x = f(*x);
    }
}

fn map_array<T: Copy + Sync, O: Copy + Send + Default>(a: &ArrayD<T>, f: impl Fn(T) -> O + Sync) -> Result<ArrayD<O>> {
    let s = std_slice(a);
    make_array(a.shape(), map_slice(&s, f))
}

/// An op's data input: borrowed, or owned when it dies at this op (then written over).
pub(crate) enum Arg<'a> {
    Shared(&'a Tensor),
    Owned(Tensor),
}

impl<'a> From<&'a Tensor> for Arg<'a> {
    fn from(t: &'a Tensor) -> Self {
        Arg::Shared(t)
    }
}

impl<'a> From<&&'a Tensor> for Arg<'a> {
    fn from(t: &&'a Tensor) -> Self {
        Arg::Shared(t)
    }
}

/// Applies `f` over a slice in place, in parallel when large.
pub(crate) fn map_in_place(v: &mut [f32], f: impl Fn(f32) -> f32 + Sync) {
    if v.len() < PAR_THRESHOLD {
        update(v, &f);
    } else {
        par_chunks(v, 1 << 14, &|_, c| update(c, &f));
    }
}

/// Runs a float function on every float type (f16/bf16 through f32); an owned f32 input is
/// overwritten rather than copied.
fn map_float<'a>(
    t: impl Into<Arg<'a>>,
    f: impl Fn(f32) -> f32 + Sync,
    f64f: impl Fn(f64) -> f64 + Sync,
) -> Result<Tensor> {
    let t = match t.into() {
        Arg::Owned(Tensor::F32(mut a)) if a.is_standard_layout() => {
            if let Some(s) = a.as_slice_mut() {
                map_in_place(s, f);
                return Ok(Tensor::F32(a));
            }
            return map_float(&Tensor::F32(a), f, f64f);
        }
        Arg::Owned(other) => return map_float(&other, f, f64f),
        Arg::Shared(t) => t,
    };
    Ok(match t {
        Tensor::F32(a) => Tensor::F32(map_array(a, f)?),
        Tensor::F16(a) => Tensor::F16(map_array(a, |x: f16| f16::from_f32(f(x.to_f32())))?),
        Tensor::BF16(a) => Tensor::BF16(map_array(a, |x: bf16| bf16::from_f32(f(x.to_f32())))?),
        Tensor::F64(a) => Tensor::F64(map_array(a, f64f)?),
        other => return Err(Error::mismatch(format!("expected a floating-point input, got {}", other.element_type()))),
    })
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp_f32(-x))
}

fn softplus(x: f32) -> f32 {
    // Above ~20 ln(1+e^x) == x in f32; avoids overflow of exp.
    if x > 20.0 {
        x
    } else {
        x.exp().ln_1p()
    }
}

fn softplus64(x: f64) -> f64 {
    if x > 40.0 {
        x
    } else {
        x.exp().ln_1p()
    }
}

const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;

/// Generates the per-kind monomorphized loops for one float type path.
macro_rules! float_kinds {
    ($kind:expr, $t:expr) => {{
        let t = $t;
        match $kind {
            Kind::Relu => map_float(t, |x| x.max(0.0), |x| x.max(0.0)),
            Kind::Clamp { min, max } => {
                let (lo, hi) = (min as f32, max as f32);
                map_float(t, move |x| x.max(lo).min(hi), move |x| x.max(min).min(max))
            }
            Kind::Elu { alpha } => {
                let a64 = alpha as f64;
                map_float(
                    t,
                    move |x| if x > 0.0 { x } else { alpha * (x.exp() - 1.0) },
                    move |x| if x > 0.0 { x } else { a64 * (x.exp() - 1.0) },
                )
            }
            Kind::Sigmoid => map_float(t, sigmoid, |x| 1.0 / (1.0 + (-x).exp())),
            Kind::Tanh => map_float(t, f32::tanh, f64::tanh),
            Kind::Exp => map_float(t, f32::exp, f64::exp),
            Kind::Log => map_float(t, f32::ln, f64::ln),
            Kind::Sqrt => map_float(t, f32::sqrt, f64::sqrt),
            Kind::Abs => map_float(t, f32::abs, f64::abs),
            Kind::Negative => map_float(t, |x| -x, |x| -x),
            Kind::Floor => map_float(t, f32::floor, f64::floor),
            Kind::Ceiling => map_float(t, f32::ceil, f64::ceil),
            Kind::Sin => map_float(t, f32::sin, f64::sin),
            Kind::Cos => map_float(t, f32::cos, f64::cos),
            Kind::Erf => map_float(t, erf_f32, erf),
            Kind::GeluErf => map_float(
                t,
                |x| 0.5 * x * (1.0 + erf_f32(x * std::f32::consts::FRAC_1_SQRT_2)),
                |x| 0.5 * x * (1.0 + erf(x * std::f64::consts::FRAC_1_SQRT_2)),
            ),
            Kind::GeluTanh => map_float(
                t,
                |x| {
                    let x = x as f64;
                    (0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)).tanh())) as f32
                },
                |x| 0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)).tanh()),
            ),
            Kind::HSwish => map_float(
                t,
                |x| x * (x + 3.0).max(0.0).min(6.0) * (1.0 / 6.0),
                |x| x * (x + 3.0).max(0.0).min(6.0) / 6.0,
            ),
            Kind::HSigmoid => {
                map_float(t, |x| (x + 3.0).max(0.0).min(6.0) * (1.0 / 6.0), |x| (x + 3.0).max(0.0).min(6.0) / 6.0)
            }
            Kind::Mish => map_float(t, |x| x * softplus(x).tanh(), |x| x * softplus64(x).tanh()),
            Kind::SoftPlus => map_float(t, softplus, softplus64),
            Kind::Sign => map_float(
                t,
                |x| {
                    if x > 0.0 {
                        1.0
                    } else if x < 0.0 {
                        -1.0
                    } else {
                        x
                    }
                },
                |x| {
                    if x > 0.0 {
                        1.0
                    } else if x < 0.0 {
                        -1.0
                    } else {
                        x
                    }
                },
            ),
            Kind::RoundEven => map_float(t, f32::round_ties_even, f64::round_ties_even),
            Kind::RoundAway => map_float(t, f32::round, f64::round),
        }
    }};
}

/// Integer versions of the ops that make sense on integers.
macro_rules! int_kinds {
    ($kind:expr, $a:expr, $ty:ty, $var:ident) => {{
        let a = $a;
        match $kind {
            Kind::Relu => Ok(Tensor::$var(map_array(a, |x: $ty| if x > (0 as $ty) { x } else { 0 as $ty })?)),
            Kind::Clamp { min, max } => {
                // OpenVINO clamps integers to [ceil(min), floor(max)].
                let lo = min.ceil();
                let hi = max.floor();
                Ok(Tensor::$var(map_array(a, move |x: $ty| (x as f64).max(lo).min(hi) as $ty)?))
            }
            Kind::Abs => Ok(Tensor::$var(map_array(a, |x: $ty| (x as f64).abs() as $ty)?)),
            Kind::Negative => Ok(Tensor::$var(map_array(a, |x: $ty| (0 as $ty).wrapping_sub(x))?)),
            Kind::Sign => Ok(Tensor::$var(map_array(a, |x: $ty| {
                #[allow(unused_comparisons)]
                let neg = x < (0 as $ty);
                if x == (0 as $ty) {
                    0 as $ty
                } else if neg {
                    (0 as $ty).wrapping_sub(1)
                } else {
                    1 as $ty
                }
            })?)),
            Kind::Floor | Kind::Ceiling | Kind::RoundEven | Kind::RoundAway => Ok(Tensor::$var(a.clone())),
            other => Err(Error::mismatch(format!("{other:?} needs a floating-point input, got {}", stringify!($ty)))),
        }
    }};
}

#[derive(Debug)]
struct Unary {
    kind: Kind,
}

impl Op for Unary {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let x = inputs.first().ok_or_else(|| Error::invalid("expected an input"))?;
        Ok(vec![self.apply(x)?])
    }

    fn eval_owned(&self, mut inputs: Vec<Arc<Tensor>>) -> Result<Vec<Tensor>> {
        let mut first = inputs.drain(..).next();
        match take_unique(&mut first) {
            Some(t @ Tensor::F32(_)) => Ok(vec![float_kinds!(self.kind, Arg::Owned(t))?]),
            Some(t) => Ok(vec![self.apply(&t)?]),
            None => Ok(vec![self.apply(first.as_deref().ok_or_else(|| Error::invalid("expected an input"))?)?]),
        }
    }
}

impl Unary {
    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let out = match x {
            Tensor::F32(_) | Tensor::F16(_) | Tensor::BF16(_) | Tensor::F64(_) => float_kinds!(self.kind, x)?,
            Tensor::I8(a) => int_kinds!(self.kind, a, i8, I8)?,
            Tensor::U8(a) => int_kinds!(self.kind, a, u8, U8)?,
            Tensor::I16(a) => int_kinds!(self.kind, a, i16, I16)?,
            Tensor::U16(a) => int_kinds!(self.kind, a, u16, U16)?,
            Tensor::I32(a) => int_kinds!(self.kind, a, i32, I32)?,
            Tensor::U32(a) => int_kinds!(self.kind, a, u32, U32)?,
            Tensor::I64(a) => int_kinds!(self.kind, a, i64, I64)?,
            Tensor::U64(a) => int_kinds!(self.kind, a, u64, U64)?,
            Tensor::Bool(_) => return Err(Error::mismatch(format!("{:?} on a boolean input", self.kind))),
        };
        Ok(out)
    }
}

fn build_unary(ctx: &BuildCtx) -> Result<Box<dyn Op>> {
    let kind = match ctx.node.op_type.as_str() {
        "ReLU" | "Relu" => Kind::Relu,
        "Clamp" => {
            let min = ctx.attr_f64("min")?;
            let max = ctx.attr_f64("max")?;
            if min > max {
                return Err(ctx.err(format!("Clamp min {min} > max {max}")));
            }
            Kind::Clamp { min, max }
        }
        "Elu" => Kind::Elu { alpha: ctx.attr_f64("alpha")? as f32 },
        "Sigmoid" => Kind::Sigmoid,
        "Tanh" => Kind::Tanh,
        "Exp" => Kind::Exp,
        "Log" => Kind::Log,
        "Sqrt" => Kind::Sqrt,
        "Abs" => Kind::Abs,
        "Negative" => Kind::Negative,
        "Floor" => Kind::Floor,
        "Ceiling" => Kind::Ceiling,
        "Sin" => Kind::Sin,
        "Cos" => Kind::Cos,
        "Erf" => Kind::Erf,
        "Gelu" => {
            // opset2 Gelu has no attribute and uses erf.
            match ctx.attr_str_or("approximation_mode", "erf").trim().to_ascii_lowercase().as_str() {
                "erf" => Kind::GeluErf,
                "tanh" => Kind::GeluTanh,
                other => return Err(ctx.err(format!("unknown approximation_mode '{other}'"))),
            }
        }
        "HSwish" => Kind::HSwish,
        "HSigmoid" => Kind::HSigmoid,
        "Mish" => Kind::Mish,
        "SoftPlus" => Kind::SoftPlus,
        "Sign" => Kind::Sign,
        "Round" => match ctx.attr_str_or("mode", "half_to_even").trim().to_ascii_lowercase().as_str() {
            "half_to_even" => Kind::RoundEven,
            "half_away_from_zero" => Kind::RoundAway,
            other => return Err(ctx.err(format!("unknown Round mode '{other}'"))),
        },
        other => return Err(ctx.err(format!("'{other}' is not a unary op"))),
    };
    Ok(Box::new(Unary { kind }))
}

/// Reads a scalar parameter input (alpha, beta) as f32.
fn scalar_input(t: &Tensor, what: &str) -> Result<f32> {
    if t.len() != 1 {
        return Err(Error::mismatch(format!("{what} must hold one value, got shape {:?}", t.shape())));
    }
    Ok(t.to_f32().iter().next().copied().unwrap_or(0.0))
}

/// HardSigmoid(x, alpha, beta) = max(0, min(1, alpha·x + beta)).
#[derive(Debug)]
struct HardSigmoid;

impl Op for HardSigmoid {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let [x, a, b] = inputs else {
            return Err(Error::invalid(format!("HardSigmoid expects 3 inputs, got {}", inputs.len())));
        };
        let alpha = scalar_input(a, "alpha")?;
        let beta = scalar_input(b, "beta")?;
        let (a64, b64) = (alpha as f64, beta as f64);
        Ok(vec![map_float(x, move |v| (alpha * v + beta).clamp(0.0, 1.0), move |v| (a64 * v + b64).clamp(0.0, 1.0))?])
    }
}

/// Swish(x[, beta]) = x · sigmoid(beta·x).
#[derive(Debug)]
struct Swish;

impl Op for Swish {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let x = inputs.first().ok_or_else(|| Error::invalid("Swish expects an input"))?;
        let beta = match inputs.get(1) {
            Some(b) => scalar_input(b, "beta")?,
            None => 1.0,
        };
        let b64 = beta as f64;
        Ok(vec![map_float(x, move |v| v * sigmoid(beta * v), move |v| v / (1.0 + (-b64 * v).exp()))?])
    }
}

/// Selu(x, alpha, beta) = lambda·(x > 0 ? x : alpha·(e^x − 1)).
#[derive(Debug)]
struct Selu;

impl Op for Selu {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let [x, a, l] = inputs else {
            return Err(Error::invalid(format!("Selu expects 3 inputs, got {}", inputs.len())));
        };
        let alpha = scalar_input(a, "alpha")?;
        let lambda = scalar_input(l, "lambda")?;
        let (a64, l64) = (alpha as f64, lambda as f64);
        Ok(vec![map_float(
            x,
            move |v| lambda * if v > 0.0 { v } else { alpha * (v.exp() - 1.0) },
            move |v| l64 * if v > 0.0 { v } else { a64 * (v.exp() - 1.0) },
        )?])
    }
}

/// PReLU: slope per channel (axis 1) when it is 1-D of the channel count, numpy broadcast otherwise.
#[derive(Debug)]
struct PRelu;

fn prelu_f32(x: &ArrayD<f32>, slope: &ArrayD<f32>) -> Result<ArrayD<f32>> {
    let shape = x.shape();
    let s = std_slice(slope);
    let per_channel = slope.ndim() == 1 && shape.len() >= 2 && slope.len() == shape[1] && slope.len() != 1;
    if !per_channel {
        if s.len() == 1 {
            let k = s[0];
            return map_array(x, move |v: f32| if v < 0.0 { v * k } else { v });
        }
        return broadcast_map(x, slope, AutoBroadcast::Numpy, |v: f32, k: f32| if v < 0.0 { v * k } else { v });
    }
    let c = shape[1];
    let inner: usize = shape[2..].iter().product();
    let xs = std_slice(x);
    let mut out = vec![0f32; xs.len()];
    let work = |(row, (o, xi)): (usize, (&mut [f32], &[f32]))| {
        let k = s[row % c];
        for (y, &v) in o.iter_mut().zip(xi) {
            *y = if v < 0.0 { v * k } else { v };
        }
    };
    if inner == 0 {
        return make_array(shape, out);
    }
    if xs.len() >= PAR_THRESHOLD {
        par_chunks(&mut out, inner, &|row, o| {
            let xi = &xs[row * inner..row * inner + o.len()];
            work((row, (o, xi)))
        });
    } else {
        out.chunks_mut(inner).zip(xs.chunks(inner)).enumerate().for_each(work);
    }
    make_array(shape, out)
}

impl Op for PRelu {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let [x, s] = inputs else {
            return Err(Error::invalid(format!("PReLU expects 2 inputs, got {}", inputs.len())));
        };
        let out = match (x, s) {
            (Tensor::F32(a), Tensor::F32(k)) => Tensor::F32(prelu_f32(a, k)?),
            _ if x.element_type().is_float() && x.element_type() == s.element_type() => {
                Tensor::F32(prelu_f32(&x.to_f32(), &s.to_f32())?).convert(x.element_type())?
            }
            _ => {
                return Err(Error::mismatch(format!(
                    "PReLU needs float data and slope of the same type, got {} and {}",
                    x.element_type(),
                    s.element_type()
                )))
            }
        };
        Ok(vec![out])
    }
}

/// SoftMax / LogSoftmax along one axis: subtract the max, exponentiate, normalize.
#[derive(Debug)]
struct Softmax {
    axis: i64,
    log: bool,
}

/// Softmax (or log-softmax) of one contiguous run.
#[multiversion(targets("x86_64+avx512f+avx512vl+fma", "x86_64+avx2+fma"))]
fn softmax_contiguous(o: &mut [f32], xi: &[f32], log: bool) {
    let mut top = [f32::NEG_INFINITY; 16];
    let mut chunks = xi.chunks_exact(16);
    for c in &mut chunks {
        for (t, &v) in top.iter_mut().zip(c) {
            *t = t.max(v);
        }
    }
    let m = top.iter().chain(chunks.remainder()).copied().fold(f32::NEG_INFINITY, f32::max);
    // Exponentials first (a loop that vectorizes), then their sum in lanes.
    for (y, &v) in o.iter_mut().zip(xi) {
        *y = exp_f32(v - m);
    }
    let mut lanes = [0f32; 16];
    let mut chunks = o.chunks_exact(16);
    for c in &mut chunks {
        for (l, &e) in lanes.iter_mut().zip(c) {
            *l += e;
        }
    }
    let sum = lanes.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>();
    if log {
        let ls = sum.ln();
        for (y, &v) in o.iter_mut().zip(xi) {
            *y = v - m - ls;
        }
    } else {
        let r = 1.0 / sum;
        for y in o.iter_mut() {
            *y *= r;
        }
    }
}

/// Softmax over the rows of a block (`inner` columns each), row by row over the axis so every
/// pass reads contiguous memory.
#[multiversion(targets("x86_64+avx512f+avx512vl+fma", "x86_64+avx2+fma"))]
fn softmax_strided(o: &mut [f32], xi: &[f32], inner: usize, log: bool) {
    let mut m = vec![f32::NEG_INFINITY; inner];
    let mut sum = vec![0f32; inner];
    for row in xi.chunks(inner) {
        for (a, &v) in m.iter_mut().zip(row) {
            *a = a.max(v);
        }
    }
    for (orow, row) in o.chunks_mut(inner).zip(xi.chunks(inner)) {
        for (((y, &v), &mx), s) in orow.iter_mut().zip(row).zip(&m).zip(sum.iter_mut()) {
            let e = exp_f32(v - mx);
            *y = e;
            *s += e;
        }
    }
    if log {
        let ls: Vec<f32> = sum.iter().map(|s| s.ln()).collect();
        for (orow, row) in o.chunks_mut(inner).zip(xi.chunks(inner)) {
            for (((y, &v), &mx), &l) in orow.iter_mut().zip(row).zip(&m).zip(&ls) {
                *y = v - mx - l;
            }
        }
    } else {
        for orow in o.chunks_mut(inner) {
            for (y, &s) in orow.iter_mut().zip(&sum) {
                *y /= s;
            }
        }
    }
}

fn softmax_f32(x: &ArrayD<f32>, axis: usize, log: bool) -> Result<ArrayD<f32>> {
    let shape = x.shape();
    let n = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let xs = std_slice(x);
    let mut out = vec![0f32; xs.len()];
    let block = n * inner;
    if block == 0 {
        return make_array(shape, out);
    }
    let work = |(o, xi): (&mut [f32], &[f32])| {
        if inner == 1 {
            softmax_contiguous(o, xi, log)
        } else {
            softmax_strided(o, xi, inner, log)
        }
    };
    if xs.len() >= PAR_THRESHOLD && xs.len() / block > 1 {
        par_chunks(&mut out, block, &|b, o| {
            let xi = &xs[b * block..b * block + o.len()];
            work((o, xi))
        });
    } else {
        out.chunks_mut(block).zip(xs.chunks(block)).for_each(work);
    }
    make_array(shape, out)
}

impl Op for Softmax {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let x = inputs.first().ok_or_else(|| Error::invalid("SoftMax expects an input"))?;
        let axis = super::attrs::norm_axis(self.axis, x.rank())?;
        if x.rank() == 0 {
            return Err(Error::mismatch("SoftMax of a scalar"));
        }
        let out = match x {
            Tensor::F32(a) => Tensor::F32(softmax_f32(a, axis, self.log)?),
            _ if x.element_type().is_float() => {
                Tensor::F32(softmax_f32(&x.to_f32(), axis, self.log)?).convert(x.element_type())?
            }
            _ => return Err(Error::mismatch(format!("SoftMax needs a float input, got {}", x.element_type()))),
        };
        Ok(vec![out])
    }
}

fn build_softmax(ctx: &BuildCtx) -> Result<Box<dyn Op>> {
    Ok(Box::new(Softmax { axis: ctx.attr_i64_or("axis", 1)?, log: ctx.node.op_type == "LogSoftmax" }))
}

/// LogicalNot on booleans.
#[derive(Debug)]
struct LogicalNot;

impl Op for LogicalNot {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        match inputs.first() {
            Some(Tensor::Bool(a)) => Ok(vec![Tensor::Bool(map_array(a, |v: bool| !v)?)]),
            Some(t) => Err(Error::mismatch(format!("LogicalNot needs a boolean input, got {}", t.element_type()))),
            None => Err(Error::invalid("LogicalNot expects an input")),
        }
    }
}

/// BitwiseNot (opset13) on integers and booleans.
#[derive(Debug)]
struct BitwiseNot;

impl Op for BitwiseNot {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let x = inputs.first().ok_or_else(|| Error::invalid("BitwiseNot expects an input"))?;
        macro_rules! not {
            ($a:expr, $var:ident, $t:ty) => {
                Tensor::$var(map_array($a, |v: $t| !v)?)
            };
        }
        Ok(vec![match x {
            Tensor::Bool(a) => not!(a, Bool, bool),
            Tensor::I8(a) => not!(a, I8, i8),
            Tensor::U8(a) => not!(a, U8, u8),
            Tensor::I16(a) => not!(a, I16, i16),
            Tensor::U16(a) => not!(a, U16, u16),
            Tensor::I32(a) => not!(a, I32, i32),
            Tensor::U32(a) => not!(a, U32, u32),
            Tensor::I64(a) => not!(a, I64, i64),
            Tensor::U64(a) => not!(a, U64, u64),
            other => return Err(Error::mismatch(format!("BitwiseNot on {}", other.element_type()))),
        }])
    }
}

pub fn register(r: &mut Registry) {
    r.add("ReLU", &["opset1"], build_unary);
    r.add("Relu", &["opset1"], build_unary);
    for t in [
        "Clamp", "Elu", "Sigmoid", "Tanh", "Exp", "Log", "Sqrt", "Abs", "Negative", "Floor", "Ceiling", "Erf", "Sign",
        "Sin", "Cos",
    ] {
        r.add(t, &["opset1"], build_unary);
    }
    r.add("Gelu", &["opset2", "opset7"], build_unary);
    r.add("HSwish", &["opset4"], build_unary);
    r.add("Mish", &["opset4"], build_unary);
    r.add("SoftPlus", &["opset4"], build_unary);
    r.add("HSigmoid", &["opset5"], build_unary);
    r.add("Round", &["opset5"], build_unary);
    r.add("HardSigmoid", &["opset1"], |_| Ok(Box::new(HardSigmoid)));
    r.add("Selu", &["opset1"], |_| Ok(Box::new(Selu)));
    r.add("Swish", &["opset4"], |_| Ok(Box::new(Swish)));
    r.add("PReLU", &["opset1"], |_| Ok(Box::new(PRelu)));
    r.add("PRelu", &["opset1"], |_| Ok(Box::new(PRelu)));
    r.add("SoftMax", &["opset1", "opset8"], build_softmax);
    r.add("Softmax", &["opset1", "opset8"], build_softmax);
    r.add("LogSoftmax", &["opset5"], build_softmax);
    r.add("LogicalNot", &["opset1"], |_| Ok(Box::new(LogicalNot)));
    r.add("BitwiseNot", &["opset13"], |_| Ok(Box::new(BitwiseNot)));
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

    fn un(op: &str, ver: &str, attrs: &[(&str, &str)], x: &[f32]) -> Vec<f64> {
        let o = run_op(op, ver, attrs, &[f32t(&[x.len()], x)]).unwrap();
        vals(&o[0])
    }

    #[test]
    fn exp_f32_close_to_libm() {
        let mut worst = 0.0f64;
        for i in -200_000..=200_000 {
            let x = i as f32 * 4.4e-4; // −88 … 88
            let (got, want) = (exp_f32(x) as f64, (x as f64).exp());
            if x >= -87.33 {
                worst = worst.max(((got - want) / want).abs());
            }
        }
        assert!(worst < 3e-7, "relative error {worst}");
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(-100.0), 0.0);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert!(exp_f32(f32::NAN).is_nan());
        assert!(exp_f32(88.7) > 3e38 && exp_f32(89.0) == f32::INFINITY);
    }

    #[test]
    fn erf_matches_known_values() {
        // erf(0.1), erf(0.5), erf(1), erf(2), erf(3.5)
        let known = [
            (0.1, 0.112_462_916_018_284_9),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (2.0, 0.995_322_265_018_952_7),
            (3.5, 0.999_999_256_901_627_7),
        ];
        for (x, e) in known {
            assert!((erf(x) - e).abs() < 1e-12, "erf({x}) = {} want {e}", erf(x));
            assert!((erf(-x) + e).abs() < 1e-12);
        }
        assert_eq!(erf(0.0), 0.0);
        for i in -400..=400 {
            let x = i as f64 / 80.0;
            let (got, want) = (erf_f32(x as f32) as f64, erf(x));
            assert!((got - want).abs() < 4e-7, "erf_f32({x}) = {got} want {want}");
        }
        assert_eq!(erf(10.0), 1.0);
    }

    #[test]
    fn simple_activations() {
        assert_eq!(un("ReLU", "opset1", &[], &[-1., 0., 2.]), vec![0., 0., 2.]);
        assert_eq!(un("Clamp", "opset1", &[("min", "0"), ("max", "6")], &[-1., 3., 7.]), vec![0., 3., 6.]);
        close(&un("Sigmoid", "opset1", &[], &[0., 2.]), &[0.5, 0.880_797_077_977_882_3], 1e-7);
        close(&un("HSwish", "opset4", &[], &[-4., -1., 1., 4.]), &[0., -1. / 3., 4. / 6. * 1., 4.], 1e-7);
        close(&un("HSigmoid", "opset5", &[], &[-4., 0., 4.]), &[0., 0.5, 1.], 1e-7);
        close(&un("Elu", "opset1", &[("alpha", "2")], &[-1., 1.]), &[2. * ((-1f64).exp() - 1.), 1.], 1e-6);
        close(&un("SoftPlus", "opset4", &[], &[0., 100.]), &[2f64.ln(), 100.], 1e-6);
        close(&un("Mish", "opset4", &[], &[1.]), &[0.865_098_388], 1e-6);
        assert_eq!(un("Round", "opset5", &[], &[0.5, 1.5, -2.5]), vec![0., 2., -2.]);
        assert_eq!(un("Round", "opset5", &[("mode", "half_away_from_zero")], &[0.5, -2.5]), vec![1., -3.]);
        assert_eq!(un("Sign", "opset1", &[], &[-3., 0., 2.]), vec![-1., 0., 1.]);
        assert_eq!(un("Ceiling", "opset1", &[], &[-1.5, 1.2]), vec![-1., 2.]);
    }

    #[test]
    fn math_functions_hand_checked() {
        close(
            &un("Tanh", "opset1", &[], &[-1., 0., 0.5, 20.]),
            &[-0.761_594_155_955_764_9, 0., 0.462_117_157_260_009_7, 1.],
            1e-6,
        );
        assert_eq!(un("Sqrt", "opset1", &[], &[0., 2.25, 4., 1e6]), vec![0., 1.5, 2., 1000.]);
        assert!(un("Sqrt", "opset1", &[], &[-1.])[0].is_nan());
        assert_eq!(un("Negative", "opset1", &[], &[-1.5, 0., 2., -0.25]), vec![1.5, 0., -2., 0.25]);
        assert_eq!(un("Floor", "opset1", &[], &[-1.5, -1., -0.2, 0.3, 2.7]), vec![-2., -1., -1., 0., 2.]);
        assert_eq!(un("Ceiling", "opset1", &[], &[-1.5, -1., -0.2, 0.3, 2.7]), vec![-1., -1., 0., 1., 3.]);
        close(
            &un("Log", "opset1", &[], &[1., std::f32::consts::E, 0.5, 1024.]),
            &[0., 1., -std::f64::consts::LN_2, 10. * std::f64::consts::LN_2],
            1e-6,
        );
        assert_eq!(un("Log", "opset1", &[], &[0.])[0], f64::NEG_INFINITY);
        close(&un("Exp", "opset1", &[], &[0., 1., -2.]), &[1., std::f64::consts::E, 0.135_335_283_236_612_7], 1e-6);
        close(
            &un("Erf", "opset1", &[], &[0., 0.5, -1., 3.]),
            &[0., 0.520_499_877_813_046_5, -0.842_700_792_949_714_9, 0.999_977_909_503_001_4],
            1e-6,
        );
    }

    /// OpenVINO writes ReLU, PReLU and SoftMax (its serializer renames Relu, PRelu, Softmax) and
    /// reads either spelling; both must be the same op here, for every opset OpenVINO uses.
    #[test]
    fn both_openvino_spellings() {
        let x = f32t(&[2, 3], &[-1., 0., 2., 3., -4., 0.5]);
        let run = |op: &str, ver: &str, attrs: &[(&str, &str)], extra: &[Tensor]| {
            let ins: Vec<Tensor> = std::iter::once(x.clone()).chain(extra.iter().cloned()).collect();
            vals(&run_op(op, ver, attrs, &ins).unwrap()[0])
        };
        assert_eq!(run("Relu", "opset1", &[], &[]), vec![0., 0., 2., 3., 0., 0.5]);
        assert_eq!(run("ReLU", "opset1", &[], &[]), run("Relu", "opset1", &[], &[]));
        let slope = [f32t(&[1], &[0.5])];
        assert_eq!(run("PRelu", "opset1", &[], &slope), vec![-0.5, 0., 2., 3., -2., 0.5]);
        assert_eq!(run("PReLU", "opset1", &[], &slope), run("PRelu", "opset1", &[], &slope));
        let e: Vec<f64> = [-1f64, 0., 2.].iter().map(|v| v.exp()).collect();
        let s: f64 = e.iter().sum();
        for ver in ["opset1", "opset8"] {
            let sm = run("Softmax", ver, &[("axis", "1")], &[]);
            close(&sm[..3], &[e[0] / s, e[1] / s, e[2] / s], 1e-6);
            assert_eq!(run("SoftMax", ver, &[("axis", "1")], &[]), sm, "{ver}");
        }
        // opset8 takes a negative axis; -2 is the batch axis here.
        let by_col = run("Softmax", "opset8", &[("axis", "-2")], &[]);
        close(&[by_col[0], by_col[3]], &[1. / (1. + 4f64.exp()), 1. - 1. / (1. + 4f64.exp())], 1e-6);
        let ls = run("LogSoftmax", "opset5", &[("axis", "1")], &[]);
        close(&ls[..3], &[(e[0] / s).ln(), (e[1] / s).ln(), (e[2] / s).ln()], 1e-6);
    }

    #[test]
    fn gelu_modes() {
        // Gelu(1) = 0.5·(1+erf(1/√2)) = 0.8413447; tanh form 0.8411920
        close(&un("Gelu", "opset7", &[("approximation_mode", "ERF")], &[1., -1.]), &[0.841_344_7, -0.158_655_3], 1e-6);
        close(&un("Gelu", "opset2", &[], &[1.]), &[0.841_344_7], 1e-6);
        close(&un("Gelu", "opset7", &[("approximation_mode", "tanh")], &[1.]), &[0.841_192], 1e-6);
    }

    #[test]
    fn hardsigmoid_and_swish_take_inputs() {
        let x = f32t(&[3], &[-10., 0., 1.]);
        let o = run_op("HardSigmoid", "opset1", &[], &[x.clone(), f32t(&[], &[0.2]), f32t(&[], &[0.5])]).unwrap();
        close(&vals(&o[0]), &[0., 0.5, 0.7], 1e-7);
        let o = run_op("Swish", "opset4", &[], std::slice::from_ref(&x)).unwrap();
        close(&vals(&o[0]), &[-10. / (1. + 10f64.exp()), 0., 0.731_058_578_6], 1e-6);
        let o = run_op("Swish", "opset4", &[], &[x, f32t(&[], &[2.])]).unwrap();
        close(&vals(&o[0])[2..], &[0.880_797_08], 1e-6);
    }

    #[test]
    fn prelu_per_channel_and_broadcast() {
        let x = f32t(&[1, 2, 2], &[-1., 2., -3., 4.]);
        let o = run_op("PReLU", "opset1", &[], &[x.clone(), f32t(&[2], &[0.1, 0.5])]).unwrap();
        close(&vals(&o[0]), &[-0.1, 2., -1.5, 4.], 1e-7);
        let o = run_op("PReLU", "opset1", &[], &[x.clone(), f32t(&[1], &[0.25])]).unwrap();
        close(&vals(&o[0]), &[-0.25, 2., -0.75, 4.], 1e-7);
        // slope on the last axis via numpy broadcast
        let o = run_op("PReLU", "opset1", &[], &[x, f32t(&[1, 1, 2], &[0.1, 0.5])]).unwrap();
        close(&vals(&o[0]), &[-0.1, 2., -0.3, 4.], 1e-7);
    }

    #[test]
    fn softmax_axes() {
        let x = f32t(&[2, 3], &[1., 2., 3., 1., 1., 1.]);
        let o = run_op("SoftMax", "opset8", &[("axis", "-1")], std::slice::from_ref(&x)).unwrap();
        let e: Vec<f64> = [1f64, 2., 3.].iter().map(|v| v.exp()).collect();
        let s: f64 = e.iter().sum();
        close(&vals(&o[0]), &[e[0] / s, e[1] / s, e[2] / s, 1. / 3., 1. / 3., 1. / 3.], 1e-6);
        let o = run_op("SoftMax", "opset1", &[("axis", "0")], std::slice::from_ref(&x)).unwrap();
        let a = 1. / (1. + (-1f64).exp());
        close(&vals(&o[0]), &[0.5, a, 1. / (1. + (-2f64).exp()), 0.5, 1. - a, 1. - 1. / (1. + (-2f64).exp())], 1e-6);
        let o = run_op("LogSoftmax", "opset5", &[("axis", "1")], &[x]).unwrap();
        close(&vals(&o[0])[..3], &[(e[0] / s).ln(), (e[1] / s).ln(), (e[2] / s).ln()], 1e-6);
        // LogSoftmax over a non-last axis equals the log of SoftMax there.
        let y = f32t(&[3, 2, 2], &[1., 2., 3., -1., 0.5, 7., -2., 4., 3., 3., 0., 1.]);
        let sm = run_op("SoftMax", "opset8", &[("axis", "1")], std::slice::from_ref(&y)).unwrap();
        let ls = run_op("LogSoftmax", "opset5", &[("axis", "-2")], &[y]).unwrap();
        let logs: Vec<f64> = vals(&sm[0]).iter().map(|v| v.ln()).collect();
        close(&vals(&ls[0]), &logs, 1e-5);
        close(
            &vals(&sm[0])[..4],
            &[1. / (1. + 2f64.exp()), 1. / (1. + (-3f64).exp()), 1. / (1. + (-2f64).exp()), 1. / (1. + 3f64.exp())],
            1e-6,
        );
        // large values do not overflow
        let o = run_op("SoftMax", "opset8", &[("axis", "0")], &[f32t(&[2], &[1000., 1000.])]).unwrap();
        close(&vals(&o[0]), &[0.5, 0.5], 1e-7);
    }

    #[test]
    fn integer_and_bool_paths() {
        let x = Tensor::i64_from_vec(&[3], vec![-5, 0, 9]).unwrap();
        let o = run_op("Clamp", "opset1", &[("min", "-1.5"), ("max", "4.5")], std::slice::from_ref(&x)).unwrap();
        assert_eq!(o[0].to_i64_vec(), vec![-1, 0, 4]);
        let o = run_op("Abs", "opset1", &[], std::slice::from_ref(&x)).unwrap();
        assert_eq!(o[0].to_i64_vec(), vec![5, 0, 9]);
        assert!(run_op("Exp", "opset1", &[], &[x]).is_err());
        let b = Tensor::Bool(make_array(&[2], vec![true, false]).unwrap());
        let o = run_op("LogicalNot", "opset1", &[], &[b]).unwrap();
        assert_eq!(vals(&o[0]), vec![0., 1.]);
    }

    #[test]
    fn f16_goes_through_f32() {
        let x = Tensor::from_f64_vec(crate::tensor::ElementType::F16, &[2], vec![-1.0, 2.0]).unwrap();
        let o = run_op("ReLU", "opset1", &[], &[x]).unwrap();
        assert_eq!(o[0].element_type(), crate::tensor::ElementType::F16);
        assert_eq!(vals(&o[0]), vec![0., 2.]);
    }

    /// OpenVINO 2026.4 CPU outputs (INFERENCE_PRECISION_HINT=f32) on the same inputs.
    #[test]
    fn matches_openvino_cpu() {
        let x = [-3.7f32, -1.25, -0.5, -0.01, 0.0, 0.3, 0.5, 1.0, 1.7, 2.5, 6.2, 11.0];
        type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a [f64]);
        let cases: [Case; 6] = [
            (
                "Gelu",
                "opset7",
                &[("approximation_mode", "erf")],
                &[
                    -0.0003987312375102192,
                    -0.13206221163272858,
                    -0.1542687714099884,
                    -0.00496010622009635,
                    0.0,
                    0.1853734403848648,
                    0.3457312285900116,
                    0.8413447141647339,
                    1.6242387294769287,
                    2.48447585105896,
                    6.199999809265137,
                    11.0,
                ],
            ),
            (
                "Gelu",
                "opset7",
                &[("approximation_mode", "tanh")],
                &[
                    -0.00027192235575057566,
                    -0.13228580355644226,
                    -0.1542859971523285,
                    -0.00496010622009635,
                    0.0,
                    0.18537093698978424,
                    0.3457140028476715,
                    0.8411920070648193,
                    1.6241059303283691,
                    2.4849157333374023,
                    6.199999809265137,
                    11.0,
                ],
            ),
            (
                "Mish",
                "opset4",
                &[],
                &[
                    -0.09034667164087296,
                    -0.30841392278671265,
                    -0.22074377536773682,
                    -0.005967983976006508,
                    0.0,
                    0.20800139009952545,
                    0.37524521350860596,
                    0.8650984168052673,
                    1.6207680702209473,
                    2.4713923931121826,
                    6.199948787689209,
                    11.0,
                ],
            ),
            (
                "SoftPlus",
                "opset4",
                &[],
                &[
                    0.024422883987426758,
                    0.25192904472351074,
                    0.4740769863128662,
                    0.688159704208374,
                    0.6931472420692444,
                    0.8543553352355957,
                    0.9740769863128662,
                    1.3132617473602295,
                    1.867786169052124,
                    2.578889846801758,
                    6.202027320861816,
                    11.000016212463379,
                ],
            ),
            (
                "Erf",
                "opset1",
                &[],
                &[
                    -0.9999998211860657,
                    -0.9229001998901367,
                    -0.520500123500824,
                    -0.01128342468291521,
                    0.0,
                    0.32862672209739685,
                    0.520500123500824,
                    0.8427006602287292,
                    0.9837904572486877,
                    0.9995929598808289,
                    1.0,
                    1.0,
                ],
            ),
            (
                "Swish",
                "opset4",
                &[],
                &[
                    -0.0892699733376503,
                    -0.27837517857551575,
                    -0.1887703239917755,
                    -0.004975000396370888,
                    0.0,
                    0.172332763671875,
                    0.3112296760082245,
                    0.7310585975646973,
                    1.4374090433120728,
                    2.310354471206665,
                    6.187442779541016,
                    10.99981689453125,
                ],
            ),
        ];
        for (op, ver, attrs, want) in cases {
            let got = un(op, ver, attrs, &x);
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() <= 1e-6 * w.abs().max(1.0), "{op}: {got:?} vs {want:?}");
            }
        }
    }
}
