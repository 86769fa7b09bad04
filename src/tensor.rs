//! Element types and n-dimensional tensors (ndarray-backed), with f16/bf16 via `half`.

use crate::error::{Error, Result};
use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};
use ndarray::{ArrayD, IxDyn};

/// f16 or bf16 values as f32 (exact), converted eight at a time where the CPU can (F16C): an
/// LLM's FP16 weights are billions of values.
pub fn half_to_f32<H>(src: &[H]) -> Vec<f32>
where
    [H]: HalfFloatSliceExt,
{
    let mut out = vec![0f32; src.len()];
    src.convert_to_f32_slice(&mut out);
    out
}

/// Element types as OpenVINO IR names them (`element_type` attribute).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum ElementType {
    F32,
    F16,
    BF16,
    F64,
    I4,
    U4,
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    Boolean,
    /// `dynamic` / `undefined`: the type is decided at run time.
    Dynamic,
}

impl ElementType {
    pub const ALL: [ElementType; 15] = [
        ElementType::F32,
        ElementType::F16,
        ElementType::BF16,
        ElementType::F64,
        ElementType::I4,
        ElementType::U4,
        ElementType::I8,
        ElementType::U8,
        ElementType::I16,
        ElementType::U16,
        ElementType::I32,
        ElementType::U32,
        ElementType::I64,
        ElementType::U64,
        ElementType::Boolean,
    ];

    /// Parses the IR's `element_type` / `destination_type` spelling.
    pub fn from_ir(s: &str) -> Option<Self> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "f32" => Self::F32,
            "f16" => Self::F16,
            "bf16" => Self::BF16,
            "f64" => Self::F64,
            "i4" => Self::I4,
            "u4" => Self::U4,
            "i8" => Self::I8,
            "u8" => Self::U8,
            "i16" => Self::I16,
            "u16" => Self::U16,
            "i32" => Self::I32,
            "u32" => Self::U32,
            "i64" => Self::I64,
            "u64" => Self::U64,
            "boolean" | "bool" => Self::Boolean,
            "dynamic" | "undefined" => Self::Dynamic,
            _ => return None,
        })
    }

    /// Parses a port's `precision` spelling (FP32, I64, BOOL, ...).
    pub fn from_precision(s: &str) -> Option<Self> {
        Some(match s.trim().to_ascii_uppercase().as_str() {
            "FP32" => Self::F32,
            "FP16" => Self::F16,
            "BF16" => Self::BF16,
            "FP64" => Self::F64,
            "I4" => Self::I4,
            "U4" => Self::U4,
            "I8" => Self::I8,
            "U8" => Self::U8,
            "I16" => Self::I16,
            "U16" => Self::U16,
            "I32" => Self::I32,
            "U32" => Self::U32,
            "I64" => Self::I64,
            "U64" => Self::U64,
            "BOOL" | "BOOLEAN" => Self::Boolean,
            "DYNAMIC" | "UNSPECIFIED" | "UNDEFINED" => Self::Dynamic,
            _ => return None,
        })
    }

    /// The element type of an output port's `precision`, spelled as OpenVINO's reader accepts it
    /// (exact case): the legacy names ("FP32", "I8", "BOOL", "UNSPECIFIED") or the element type
    /// names ("f32", "i8", "boolean", "dynamic", "undefined"). "DYNAMIC" or "fp32" are refused.
    pub fn from_port_precision(s: &str) -> Option<Self> {
        Some(match s {
            "FP32" | "f32" => Self::F32,
            "FP16" | "f16" => Self::F16,
            "BF16" | "bf16" => Self::BF16,
            "FP64" | "f64" => Self::F64,
            "I4" | "i4" => Self::I4,
            "U4" | "u4" => Self::U4,
            "I8" | "i8" => Self::I8,
            "U8" | "u8" => Self::U8,
            "I16" | "i16" => Self::I16,
            "U16" | "u16" => Self::U16,
            "I32" | "i32" => Self::I32,
            "U32" | "u32" => Self::U32,
            "I64" | "i64" => Self::I64,
            "U64" | "u64" => Self::U64,
            "BOOL" | "boolean" => Self::Boolean,
            "UNSPECIFIED" | "dynamic" | "undefined" => Self::Dynamic,
            _ => return None,
        })
    }

    pub fn ir_name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::BF16 => "bf16",
            Self::F64 => "f64",
            Self::I4 => "i4",
            Self::U4 => "u4",
            Self::I8 => "i8",
            Self::U8 => "u8",
            Self::I16 => "i16",
            Self::U16 => "u16",
            Self::I32 => "i32",
            Self::U32 => "u32",
            Self::I64 => "i64",
            Self::U64 => "u64",
            Self::Boolean => "boolean",
            Self::Dynamic => "dynamic",
        }
    }

    pub fn precision_name(self) -> &'static str {
        match self {
            Self::F32 => "FP32",
            Self::F16 => "FP16",
            Self::BF16 => "BF16",
            Self::F64 => "FP64",
            Self::I4 => "I4",
            Self::U4 => "U4",
            Self::I8 => "I8",
            Self::U8 => "U8",
            Self::I16 => "I16",
            Self::U16 => "U16",
            Self::I32 => "I32",
            Self::U32 => "U32",
            Self::I64 => "I64",
            Self::U64 => "U64",
            Self::Boolean => "BOOL",
            Self::Dynamic => "DYNAMIC",
        }
    }

    /// Bits per element in the `.bin`.
    pub fn bits(self) -> usize {
        match self {
            Self::I4 | Self::U4 => 4,
            Self::I8 | Self::U8 | Self::Boolean => 8,
            Self::F16 | Self::BF16 | Self::I16 | Self::U16 => 16,
            Self::F32 | Self::I32 | Self::U32 => 32,
            Self::F64 | Self::I64 | Self::U64 => 64,
            Self::Dynamic => 0,
        }
    }

    /// Bytes needed for `n` elements in the `.bin`. Saturates: an element count from a hostile
    /// shape then needs more bytes than any buffer holds instead of wrapping to a small size.
    pub fn byte_size(self, n: usize) -> usize {
        n.saturating_mul(self.bits()).div_ceil(8)
    }

    pub fn is_float(self) -> bool {
        matches!(self, Self::F32 | Self::F16 | Self::BF16 | Self::F64)
    }
}

impl std::fmt::Display for ElementType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.ir_name())
    }
}

/// A dense tensor. Sub-byte types (i4/u4) are held unpacked as i8/u8.
#[derive(Clone, Debug, PartialEq)]
pub enum Tensor {
    F32(ArrayD<f32>),
    F16(ArrayD<f16>),
    BF16(ArrayD<bf16>),
    F64(ArrayD<f64>),
    I8(ArrayD<i8>),
    U8(ArrayD<u8>),
    I16(ArrayD<i16>),
    U16(ArrayD<u16>),
    I32(ArrayD<i32>),
    U32(ArrayD<u32>),
    I64(ArrayD<i64>),
    U64(ArrayD<u64>),
    Bool(ArrayD<bool>),
}

/// Applies `$body` to the inner array of every variant, binding it to `$a`.
#[macro_export]
macro_rules! dispatch_tensor {
    ($t:expr, $a:ident => $body:expr) => {
        match $t {
            $crate::tensor::Tensor::F32($a) => $body,
            $crate::tensor::Tensor::F16($a) => $body,
            $crate::tensor::Tensor::BF16($a) => $body,
            $crate::tensor::Tensor::F64($a) => $body,
            $crate::tensor::Tensor::I8($a) => $body,
            $crate::tensor::Tensor::U8($a) => $body,
            $crate::tensor::Tensor::I16($a) => $body,
            $crate::tensor::Tensor::U16($a) => $body,
            $crate::tensor::Tensor::I32($a) => $body,
            $crate::tensor::Tensor::U32($a) => $body,
            $crate::tensor::Tensor::I64($a) => $body,
            $crate::tensor::Tensor::U64($a) => $body,
            $crate::tensor::Tensor::Bool($a) => $body,
        }
    };
}

/// Like `dispatch_tensor!` but rebuilds a tensor of the same variant from the body's array.
#[macro_export]
macro_rules! map_tensor {
    ($t:expr, $a:ident => $body:expr) => {
        match $t {
            $crate::tensor::Tensor::F32($a) => $crate::tensor::Tensor::F32($body),
            $crate::tensor::Tensor::F16($a) => $crate::tensor::Tensor::F16($body),
            $crate::tensor::Tensor::BF16($a) => $crate::tensor::Tensor::BF16($body),
            $crate::tensor::Tensor::F64($a) => $crate::tensor::Tensor::F64($body),
            $crate::tensor::Tensor::I8($a) => $crate::tensor::Tensor::I8($body),
            $crate::tensor::Tensor::U8($a) => $crate::tensor::Tensor::U8($body),
            $crate::tensor::Tensor::I16($a) => $crate::tensor::Tensor::I16($body),
            $crate::tensor::Tensor::U16($a) => $crate::tensor::Tensor::U16($body),
            $crate::tensor::Tensor::I32($a) => $crate::tensor::Tensor::I32($body),
            $crate::tensor::Tensor::U32($a) => $crate::tensor::Tensor::U32($body),
            $crate::tensor::Tensor::I64($a) => $crate::tensor::Tensor::I64($body),
            $crate::tensor::Tensor::U64($a) => $crate::tensor::Tensor::U64($body),
            $crate::tensor::Tensor::Bool($a) => $crate::tensor::Tensor::Bool($body),
        }
    };
}

/// Numeric conversion used by Convert and by the f32 views of tensors.
pub trait Scalar: Copy + Send + Sync + 'static {
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
}

macro_rules! scalar_int {
    ($($t:ty),*) => {$(
        impl Scalar for $t {
            fn to_f64(self) -> f64 { self as f64 }
            // Saturating like OpenVINO's Convert for out-of-range values; NaN becomes 0.
            fn from_f64(v: f64) -> Self { v.round_ties_even() as $t }
        }
    )*};
}
scalar_int!(i8, u8, i16, u16, i32, u32, i64, u64);

impl Scalar for f32 {
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}
impl Scalar for f64 {
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(v: f64) -> Self {
        v
    }
}
impl Scalar for f16 {
    fn to_f64(self) -> f64 {
        self.to_f64()
    }
    fn from_f64(v: f64) -> Self {
        f16::from_f64(v)
    }
}
impl Scalar for bf16 {
    fn to_f64(self) -> f64 {
        self.to_f64()
    }
    fn from_f64(v: f64) -> Self {
        bf16::from_f64(v)
    }
}
impl Scalar for bool {
    fn to_f64(self) -> f64 {
        if self {
            1.0
        } else {
            0.0
        }
    }
    fn from_f64(v: f64) -> Self {
        v != 0.0
    }
}

/// Elements in `shape`; an error (not an overflow panic) for hostile shapes.
fn element_count(shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| Error::mismatch(format!("shape {shape:?} has more elements than memory")))
}

fn arr<T>(shape: &[usize], v: Vec<T>) -> Result<ArrayD<T>> {
    ArrayD::from_shape_vec(IxDyn(shape), v).map_err(|e| Error::internal(format!("tensor of shape {shape:?}: {e}")))
}

impl Tensor {
    pub fn shape(&self) -> &[usize] {
        dispatch_tensor!(self, a => a.shape())
    }

    pub fn len(&self) -> usize {
        dispatch_tensor!(self, a => a.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn rank(&self) -> usize {
        self.shape().len()
    }

    pub fn element_type(&self) -> ElementType {
        match self {
            Tensor::F32(_) => ElementType::F32,
            Tensor::F16(_) => ElementType::F16,
            Tensor::BF16(_) => ElementType::BF16,
            Tensor::F64(_) => ElementType::F64,
            Tensor::I8(_) => ElementType::I8,
            Tensor::U8(_) => ElementType::U8,
            Tensor::I16(_) => ElementType::I16,
            Tensor::U16(_) => ElementType::U16,
            Tensor::I32(_) => ElementType::I32,
            Tensor::U32(_) => ElementType::U32,
            Tensor::I64(_) => ElementType::I64,
            Tensor::U64(_) => ElementType::U64,
            Tensor::Bool(_) => ElementType::Boolean,
        }
    }

    pub fn from_f32(a: ArrayD<f32>) -> Self {
        Tensor::F32(a)
    }

    pub fn scalar_f32(v: f32) -> Self {
        Tensor::F32(ArrayD::from_elem(IxDyn(&[]), v))
    }

    /// Builds an f32 tensor from a shape and values.
    pub fn f32_from_vec(shape: &[usize], v: Vec<f32>) -> Result<Self> {
        Ok(Tensor::F32(arr(shape, v)?))
    }

    pub fn i64_from_vec(shape: &[usize], v: Vec<i64>) -> Result<Self> {
        Ok(Tensor::I64(arr(shape, v)?))
    }

    /// Zeros of a given type and shape.
    pub fn zeros(et: ElementType, shape: &[usize]) -> Result<Self> {
        let n = element_count(shape)?;
        Self::from_f64_vec(et, shape, vec![0.0; n])
    }

    /// Builds a tensor of type `et` from f64 values (rounded/saturated for integers).
    pub fn from_f64_vec(et: ElementType, shape: &[usize], v: Vec<f64>) -> Result<Self> {
        fn conv<T: Scalar>(shape: &[usize], v: Vec<f64>) -> Result<ArrayD<T>> {
            arr(shape, v.into_iter().map(T::from_f64).collect())
        }
        Ok(match et {
            ElementType::F32 => Tensor::F32(conv(shape, v)?),
            ElementType::F16 => Tensor::F16(conv(shape, v)?),
            ElementType::BF16 => Tensor::BF16(conv(shape, v)?),
            ElementType::F64 => Tensor::F64(conv(shape, v)?),
            ElementType::I8 | ElementType::I4 => Tensor::I8(conv(shape, v)?),
            ElementType::U8 | ElementType::U4 => Tensor::U8(conv(shape, v)?),
            ElementType::I16 => Tensor::I16(conv(shape, v)?),
            ElementType::U16 => Tensor::U16(conv(shape, v)?),
            ElementType::I32 => Tensor::I32(conv(shape, v)?),
            ElementType::U32 => Tensor::U32(conv(shape, v)?),
            ElementType::I64 => Tensor::I64(conv(shape, v)?),
            ElementType::U64 => Tensor::U64(conv(shape, v)?),
            ElementType::Boolean => Tensor::Bool(conv(shape, v)?),
            ElementType::Dynamic => return Err(Error::invalid("cannot build a tensor of dynamic type")),
        })
    }

    /// Converts to another element type (OpenVINO Convert semantics: round to nearest even for
    /// float→int, saturating).
    pub fn convert(&self, et: ElementType) -> Result<Tensor> {
        if self.element_type() == et {
            return Ok(self.clone());
        }
        if et == ElementType::F32 {
            return Ok(Tensor::F32(self.to_f32()));
        }
        let v: Vec<f64> = self.to_f64_vec();
        Self::from_f64_vec(et, self.shape(), v)
    }

    /// The values as f64 in logical (row-major) order.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        dispatch_tensor!(self, a => a.iter().map(|x| Scalar::to_f64(*x)).collect())
    }

    /// The values as i64 (for shape-like inputs: axes, dims, indices).
    pub fn to_i64_vec(&self) -> Vec<i64> {
        match self {
            Tensor::I64(a) => a.iter().copied().collect(),
            Tensor::I32(a) => a.iter().map(|&x| x as i64).collect(),
            _ => self.to_f64_vec().into_iter().map(|x| x as i64).collect(),
        }
    }

    /// An f32 copy (or the array itself when already f32).
    pub fn to_f32(&self) -> ArrayD<f32> {
        match self {
            Tensor::F32(a) => a.clone(),
            Tensor::F16(a) => match a.as_slice() {
                Some(s) => ArrayD::from_shape_vec(a.raw_dim(), half_to_f32(s)).expect("same length"),
                None => a.mapv(|x| x.to_f32()),
            },
            Tensor::BF16(a) => match a.as_slice() {
                Some(s) => ArrayD::from_shape_vec(a.raw_dim(), half_to_f32(s)).expect("same length"),
                None => a.mapv(|x| x.to_f32()),
            },
            other => dispatch_tensor!(other, a => a.mapv(|x| Scalar::to_f64(x) as f32)),
        }
    }

    /// The values as f32 in logical order; a plain copy when the tensor is contiguous f32
    /// (iterating an `IxDyn` array element by element costs an index update per value).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match self {
            Tensor::F32(a) => match a.as_slice() {
                Some(s) => s.to_vec(),
                None => a.iter().copied().collect(),
            },
            other => other.to_f32().iter().copied().collect(),
        }
    }

    /// Borrow as f32 when the tensor is f32.
    pub fn as_f32(&self) -> Option<&ArrayD<f32>> {
        match self {
            Tensor::F32(a) => Some(a),
            _ => None,
        }
    }

    /// Borrow as f32 or fail with a message naming `what`.
    pub fn expect_f32(&self, what: &str) -> Result<&ArrayD<f32>> {
        self.as_f32().ok_or_else(|| Error::mismatch(format!("{what}: expected f32, got {}", self.element_type())))
    }

    /// Reinterprets the tensor with a new shape of the same element count.
    /// Like [`Tensor::reshaped`], keeping the buffer (no copy) when it is in standard layout.
    pub fn into_reshaped(self, shape: &[usize]) -> Result<Tensor> {
        if !self.is_standard_layout() || element_count(shape)? != self.len() {
            return self.reshaped(shape);
        }
        Ok(map_tensor!(self, a => a.into_shape_with_order(IxDyn(shape)).expect("standard layout, same count")))
    }

    fn is_standard_layout(&self) -> bool {
        dispatch_tensor!(self, a => a.is_standard_layout())
    }

    pub fn reshaped(&self, shape: &[usize]) -> Result<Tensor> {
        let n = element_count(shape)?;
        if n != self.len() {
            return Err(Error::mismatch(format!(
                "cannot reshape {:?} ({} elements) to {:?} ({} elements)",
                self.shape(),
                self.len(),
                shape,
                n
            )));
        }
        Ok(map_tensor!(self, a => {
            let v: Vec<_> = a.iter().cloned().collect();
            ArrayD::from_shape_vec(IxDyn(shape), v).expect("element count checked")
        }))
    }

    /// Decodes `bytes` in the `.bin` layout (little endian; i4/u4 packed two per byte, low nibble
    /// first; boolean one byte each).
    pub fn from_bytes(et: ElementType, shape: &[usize], bytes: &[u8]) -> Result<Tensor> {
        let n = element_count(shape)?;
        let need = et.byte_size(n);
        if bytes.len() < need {
            return Err(Error::mismatch(format!(
                "{et} tensor of shape {shape:?} needs {need} bytes, got {}",
                bytes.len()
            )));
        }
        macro_rules! le {
            ($t:ty, $w:expr, $var:ident) => {{
                let v: Vec<$t> = bytes[..need]
                    .chunks_exact($w)
                    .map(|c| <$t>::from_le_bytes(c.try_into().expect("chunk width")))
                    .collect();
                Tensor::$var(arr(shape, v)?)
            }};
        }
        Ok(match et {
            ElementType::F32 => le!(f32, 4, F32),
            ElementType::F64 => le!(f64, 8, F64),
            ElementType::F16 => {
                let v = bytes[..need].chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]])).collect();
                Tensor::F16(arr(shape, v)?)
            }
            ElementType::BF16 => {
                let v = bytes[..need].chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]])).collect();
                Tensor::BF16(arr(shape, v)?)
            }
            ElementType::I8 => Tensor::I8(arr(shape, bytes[..n].iter().map(|&b| b as i8).collect())?),
            ElementType::U8 => Tensor::U8(arr(shape, bytes[..n].to_vec())?),
            ElementType::Boolean => Tensor::Bool(arr(shape, bytes[..n].iter().map(|&b| b != 0).collect())?),
            ElementType::I16 => le!(i16, 2, I16),
            ElementType::U16 => le!(u16, 2, U16),
            ElementType::I32 => le!(i32, 4, I32),
            ElementType::U32 => le!(u32, 4, U32),
            ElementType::I64 => le!(i64, 8, I64),
            ElementType::U64 => le!(u64, 8, U64),
            ElementType::U4 => {
                let v = (0..n).map(|i| (bytes[i / 2] >> ((i % 2) * 4)) & 0x0f).collect();
                Tensor::U8(arr(shape, v)?)
            }
            ElementType::I4 => {
                let v = (0..n)
                    .map(|i| {
                        let nib = (bytes[i / 2] >> ((i % 2) * 4)) & 0x0f;
                        ((nib << 4) as i8) >> 4
                    })
                    .collect();
                Tensor::I8(arr(shape, v)?)
            }
            ElementType::Dynamic => return Err(Error::invalid("constant of dynamic element type")),
        })
    }

    /// Encodes the tensor as `et` in the `.bin` layout. `et` may differ from the held type only for
    /// the sub-byte types (i4 from i8, u4 from u8).
    pub fn to_bytes(&self, et: ElementType) -> Result<Vec<u8>> {
        let held = self.element_type();
        let ok = held == et
            || (et == ElementType::I4 && held == ElementType::I8)
            || (et == ElementType::U4 && held == ElementType::U8);
        if !ok {
            return Err(Error::mismatch(format!("cannot encode a {held} tensor as {et}")));
        }
        // Contiguous byte-sized codes (the common case for weights) skip the element iterator.
        match (self, et) {
            (Tensor::U8(a), ElementType::U8) | (Tensor::U8(a), ElementType::U4) if a.as_slice().is_some() => {
                return Ok(bytes_of_codes(a.as_slice().expect("checked"), et == ElementType::U4));
            }
            (Tensor::I8(a), ElementType::I8) | (Tensor::I8(a), ElementType::I4) if a.as_slice().is_some() => {
                let codes: &[i8] = a.as_slice().expect("checked");
                // i8 -> u8 keeps the bits.
                let codes: Vec<u8> = codes.iter().map(|&x| x as u8).collect();
                return Ok(bytes_of_codes(&codes, et == ElementType::I4));
            }
            _ => {}
        }
        let mut out = Vec::with_capacity(et.byte_size(self.len()));
        match (self, et) {
            (Tensor::I8(a), ElementType::I4) | (Tensor::I8(a), ElementType::U4) => {
                pack_nibbles(a.iter().map(|&x| x as u8), &mut out)
            }
            (Tensor::U8(a), ElementType::U4) => pack_nibbles(a.iter().copied(), &mut out),
            (Tensor::F32(a), _) => a.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            (Tensor::F64(a), _) => a.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            (Tensor::F16(a), _) => a.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            (Tensor::BF16(a), _) => a.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            (Tensor::I8(a), _) => a.iter().for_each(|&x| out.push(x as u8)),
            (Tensor::U8(a), _) => out.extend(a.iter().copied()),
            (Tensor::Bool(a), _) => a.iter().for_each(|&x| out.push(x as u8)),
            (Tensor::I16(a), _) => a.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            (Tensor::U16(a), _) => a.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            (Tensor::I32(a), _) => a.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            (Tensor::U32(a), _) => a.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            (Tensor::I64(a), _) => a.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            (Tensor::U64(a), _) => a.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        }
        Ok(out)
    }
}

/// Byte-sized codes as `.bin` bytes: copied, or packed two per byte (low nibble first).
fn bytes_of_codes(codes: &[u8], nibbles: bool) -> Vec<u8> {
    if !nibbles {
        return codes.to_vec();
    }
    let pairs = codes.chunks_exact(2);
    let tail = pairs.remainder().first().map(|&v| v & 0x0f);
    let mut out: Vec<u8> = pairs.map(|p| (p[0] & 0x0f) | ((p[1] & 0x0f) << 4)).collect();
    out.extend(tail);
    out
}

fn pack_nibbles(vals: impl Iterator<Item = u8>, out: &mut Vec<u8>) {
    let mut cur = 0u8;
    let mut half = false;
    for v in vals {
        if half {
            out.push(cur | ((v & 0x0f) << 4));
        } else {
            cur = v & 0x0f;
        }
        half = !half;
    }
    if half {
        out.push(cur);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_every_type() {
        for et in ElementType::ALL {
            let vals: Vec<f64> = match et {
                ElementType::Boolean => vec![1.0, 0.0, 1.0],
                ElementType::U4 => vec![0.0, 7.0, 15.0],
                ElementType::I4 => vec![-8.0, 0.0, 7.0],
                _ if et.is_float() => vec![-1.5, 0.0, 2.25],
                ElementType::U8 | ElementType::U16 | ElementType::U32 | ElementType::U64 => {
                    vec![0.0, 5.0, 200.0]
                }
                _ => vec![-3.0, 0.0, 100.0],
            };
            let t = Tensor::from_f64_vec(et, &[3], vals.clone()).unwrap();
            let b = t.to_bytes(et).unwrap();
            assert_eq!(b.len(), et.byte_size(3), "{et}");
            let back = Tensor::from_bytes(et, &[3], &b).unwrap();
            assert_eq!(back.to_f64_vec(), vals, "{et}");
        }
    }

    #[test]
    fn short_buffer_is_an_error() {
        let e = Tensor::from_bytes(ElementType::F32, &[4], &[0u8; 8]).unwrap_err();
        assert_eq!(e.kind(), "mismatch");
    }
}
