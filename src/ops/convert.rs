//! Convert and ConvertLike. Float → integer truncates toward zero and then wraps to the target
//! width, as OpenVINO's CPU plugin and its reference `static_cast` do (measured with OpenVINO
//! 2026.4: f32 → u8 of -1.5 is 255, of 300.7 is 44; NaN → i32 is i32::MIN, NaN → boolean is false).

use super::binary::{make_array, par_chunks, std_slice, PAR_THRESHOLD};
use super::op::{BuildCtx, Op, Registry};
use crate::error::{Error, Result};
use crate::tensor::{ElementType, Tensor};
use half::{bf16, f16};
use ndarray::ArrayD;

/// A source element: its value as a float, as a (wide) integer and as a boolean.
trait Src: Copy + Sync {
    const FLOAT: bool;
    fn f(self) -> f64;
    fn i(self) -> i128;
    fn b(self) -> bool;
}

/// A destination element built from any source element.
trait Dst: Copy + Send + Default {
    fn from_src<S: Src>(s: S) -> Self;
}

macro_rules! src_float {
    ($($t:ty),*) => {$(
        impl Src for $t {
            const FLOAT: bool = true;
            fn f(self) -> f64 { f64::from(self) }
            fn i(self) -> i128 {
                let v = f64::from(self);
                // x86 cvtt* yields i32::MIN for NaN; Rust's `as` saturates out-of-range values.
                if v.is_nan() { i32::MIN as i128 } else { v.trunc() as i64 as i128 }
            }
            fn b(self) -> bool { let v = f64::from(self); v != 0.0 && !v.is_nan() }
        }
    )*};
}
src_float!(f32, f64, f16, bf16);

macro_rules! src_int {
    ($($t:ty),*) => {$(
        impl Src for $t {
            const FLOAT: bool = false;
            fn f(self) -> f64 { self as f64 }
            fn i(self) -> i128 { self as i128 }
            fn b(self) -> bool { self != 0 }
        }
    )*};
}
src_int!(i8, u8, i16, u16, i32, u32, i64, u64);

impl Src for bool {
    const FLOAT: bool = false;
    fn f(self) -> f64 {
        self as u8 as f64
    }
    fn i(self) -> i128 {
        self as i128
    }
    fn b(self) -> bool {
        self
    }
}

impl Dst for f32 {
    fn from_src<S: Src>(s: S) -> Self {
        if S::FLOAT {
            s.f() as f32
        } else {
            s.i() as f32
        }
    }
}
impl Dst for f64 {
    fn from_src<S: Src>(s: S) -> Self {
        if S::FLOAT {
            s.f()
        } else {
            s.i() as f64
        }
    }
}
impl Dst for f16 {
    fn from_src<S: Src>(s: S) -> Self {
        f16::from_f64(if S::FLOAT { s.f() } else { s.i() as f64 })
    }
}
impl Dst for bf16 {
    fn from_src<S: Src>(s: S) -> Self {
        bf16::from_f64(if S::FLOAT { s.f() } else { s.i() as f64 })
    }
}
macro_rules! dst_int {
    ($($t:ty),*) => {$(
        impl Dst for $t {
            fn from_src<S: Src>(s: S) -> Self { s.i() as $t }
        }
    )*};
}
dst_int!(i8, u8, i16, u16, i32, u32, i64, u64);
impl Dst for bool {
    fn from_src<S: Src>(s: S) -> Self {
        s.b()
    }
}

fn convert_array<S: Src, D: Dst>(a: &ArrayD<S>) -> Result<ArrayD<D>> {
    let src = std_slice(a);
    let mut out = vec![D::default(); src.len()];
    if src.len() >= PAR_THRESHOLD {
        const CHUNK: usize = 1 << 14;
        par_chunks(&mut out, CHUNK, &|c, o| {
            for (y, &x) in o.iter_mut().zip(&src[c * CHUNK..]) {
                *y = D::from_src(x);
            }
        });
    } else {
        for (y, &x) in out.iter_mut().zip(src.iter()) {
            *y = D::from_src(x);
        }
    }
    make_array(a.shape(), out)
}

fn convert_to<D: Dst>(t: &Tensor) -> Result<ArrayD<D>> {
    crate::dispatch_tensor!(t, a => convert_array::<_, D>(a))
}

/// f16/bf16 → f32 (exact) in parallel chunks, each converted eight values at a time (F16C):
/// the FP16 weights of an LLM export, Convert by Convert.
fn half_array_to_f32<H: Copy + Send + Sync>(a: &ArrayD<H>) -> Option<Result<ArrayD<f32>>>
where
    [H]: half::slice::HalfFloatSliceExt,
{
    let src = a.as_slice()?;
    if src.len() < PAR_THRESHOLD {
        return Some(make_array(a.shape(), crate::tensor::half_to_f32(src)));
    }
    let mut out = vec![0f32; src.len()];
    const CHUNK: usize = 1 << 16;
    par_chunks(&mut out, CHUNK, &|c, o| {
        let from = c * CHUNK;
        half::slice::HalfFloatSliceExt::convert_to_f32_slice(&src[from..from + o.len()], o)
    });
    Some(make_array(a.shape(), out))
}

/// Converts a tensor to `et` with OpenVINO's Convert semantics.
pub fn convert_tensor(t: &Tensor, et: ElementType) -> Result<Tensor> {
    if t.element_type() == et {
        return Ok(t.clone());
    }
    let fast = match (t, et) {
        (Tensor::F16(a), ElementType::F32) => half_array_to_f32(a),
        (Tensor::BF16(a), ElementType::F32) => half_array_to_f32(a),
        _ => None,
    };
    if let Some(converted) = fast {
        return Ok(Tensor::F32(converted?));
    }
    Ok(match et {
        ElementType::F32 => Tensor::F32(convert_to(t)?),
        ElementType::F16 => Tensor::F16(convert_to(t)?),
        ElementType::BF16 => Tensor::BF16(convert_to(t)?),
        ElementType::F64 => Tensor::F64(convert_to(t)?),
        ElementType::I8 => Tensor::I8(convert_to(t)?),
        ElementType::U8 => Tensor::U8(convert_to(t)?),
        ElementType::I16 => Tensor::I16(convert_to(t)?),
        ElementType::U16 => Tensor::U16(convert_to(t)?),
        ElementType::I32 => Tensor::I32(convert_to(t)?),
        ElementType::U32 => Tensor::U32(convert_to(t)?),
        ElementType::I64 => Tensor::I64(convert_to(t)?),
        ElementType::U64 => Tensor::U64(convert_to(t)?),
        ElementType::Boolean => Tensor::Bool(convert_to(t)?),
        // Sub-byte types are held unpacked; clamp to their range so packing stays exact.
        ElementType::I4 => {
            let a: ArrayD<i8> = convert_to(t)?;
            Tensor::I8(a.mapv(|v| v.clamp(-8, 7)))
        }
        ElementType::U4 => {
            let a: ArrayD<u8> = convert_to(t)?;
            Tensor::U8(a.mapv(|v| v.min(15)))
        }
        ElementType::Dynamic => return Err(Error::invalid("Convert to a dynamic element type")),
    })
}

#[derive(Debug)]
struct Convert {
    to: ElementType,
}

impl Op for Convert {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let x = inputs.first().ok_or_else(|| Error::invalid("Convert expects an input"))?;
        Ok(vec![convert_tensor(x, self.to)?])
    }
}

fn build_convert(ctx: &BuildCtx) -> Result<Box<dyn Op>> {
    let to = ctx.attr_type("destination_type")?;
    if to == ElementType::Dynamic {
        return Err(ctx.err("destination_type must be a static element type"));
    }
    Ok(Box::new(Convert { to }))
}

/// ConvertLike(data, like): converts to the element type of `like`.
#[derive(Debug)]
struct ConvertLike;

impl Op for ConvertLike {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let [x, like] = inputs else {
            return Err(Error::invalid(format!("ConvertLike expects 2 inputs, got {}", inputs.len())));
        };
        Ok(vec![convert_tensor(x, like.element_type())?])
    }
}

pub fn register(r: &mut Registry) {
    r.add("Convert", &["opset1"], build_convert);
    r.add("ConvertLike", &["opset1"], |_| Ok(Box::new(ConvertLike)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::binary::tests::{f32t, run_op, vals};

    #[test]
    fn float_to_int_truncates_and_wraps() {
        let x = f32t(&[8], &[1.5, 2.5, -1.5, -0.7, 300.7, -300.2, 0.4, f32::NAN]);
        let o = run_op("Convert", "opset1", &[("destination_type", "i32")], std::slice::from_ref(&x)).unwrap();
        assert_eq!(o[0].to_i64_vec(), vec![1, 2, -1, 0, 300, -300, 0, i32::MIN as i64]);
        let o = run_op("Convert", "opset1", &[("destination_type", "u8")], std::slice::from_ref(&x)).unwrap();
        assert_eq!(o[0].to_i64_vec(), vec![1, 2, 255, 0, 44, 212, 0, 0]);
        let o = run_op("Convert", "opset1", &[("destination_type", "i8")], std::slice::from_ref(&x)).unwrap();
        assert_eq!(o[0].to_i64_vec(), vec![1, 2, -1, 0, 44, -44, 0, 0]);
        let o = run_op("Convert", "opset1", &[("destination_type", "boolean")], &[x]).unwrap();
        assert_eq!(vals(&o[0]), vec![1., 1., 1., 1., 1., 1., 1., 0.]);
    }

    #[test]
    fn f16_i64_bool_to_f32() {
        let h = Tensor::from_f64_vec(ElementType::F16, &[2, 1], vec![0.5, -65504.0]).unwrap();
        let o = run_op("Convert", "opset1", &[("destination_type", "f32")], &[h]).unwrap();
        assert_eq!(o[0].element_type(), ElementType::F32);
        assert_eq!(o[0].shape(), &[2, 1]);
        assert_eq!(vals(&o[0]), vec![0.5, -65504.0]);
        let i = Tensor::i64_from_vec(&[2], vec![-3, 1 << 40]).unwrap();
        let o = run_op("Convert", "opset1", &[("destination_type", "f32")], &[i]).unwrap();
        assert_eq!(vals(&o[0]), vec![-3.0, (1u64 << 40) as f64]);
        let b = Tensor::Bool(make_array(&[2], vec![true, false]).unwrap());
        let o = run_op("Convert", "opset1", &[("destination_type", "i64")], &[b]).unwrap();
        assert_eq!(o[0].to_i64_vec(), vec![1, 0]);
    }

    #[test]
    fn f32_to_f16_rounds_and_overflows_to_inf() {
        let x = f32t(&[2], &[1.0 + 1.0 / 4096.0, 1e6]);
        let o = run_op("Convert", "opset1", &[("destination_type", "f16")], &[x]).unwrap();
        assert_eq!(vals(&o[0]), vec![1.0, f64::INFINITY]);
    }

    #[test]
    fn int_to_int_wraps_and_convert_like() {
        let i = Tensor::i64_from_vec(&[2], vec![300, -1]).unwrap();
        let like = Tensor::from_f64_vec(ElementType::U8, &[1], vec![0.0]).unwrap();
        let o = run_op("ConvertLike", "opset1", &[], &[i, like]).unwrap();
        assert_eq!(o[0].element_type(), ElementType::U8);
        assert_eq!(o[0].to_i64_vec(), vec![44, 255]);
        assert!(run_op("Convert", "opset1", &[("destination_type", "x9")], &[f32t(&[1], &[1.])]).is_err());
    }
}
