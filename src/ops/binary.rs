//! Elementwise binary ops (arithmetic, comparison, logical, bitwise) and Select, with numpy
//! broadcasting. The shared broadcast walker ([`Bcast`]) merges dimensions with the same
//! broadcast pattern so the inner loop runs over contiguous slices (same shape, scalar,
//! per-channel bias all become one or two flat loops).

use super::op::{take_unique, BuildCtx, Op, Registry};
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use half::{bf16, f16};
use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;
use std::sync::Arc;

/// Outputs at least this large are computed on several threads.
pub(crate) const PAR_THRESHOLD: usize = 1 << 16;
/// Elements per parallel work item.
const PAR_CHUNK: usize = 1 << 14;

/// Runs `body(chunk_index, chunk)` over `out` cut in chunks of `chunk` elements, in parallel.
///
/// The body is a `dyn` call once per chunk, so rayon's job machinery is instantiated once per
/// element type instead of once per elementwise closure: with a generic body it was ~40% of
/// the crate's LLVM IR and of its compile time.
pub(crate) fn par_chunks<O: Send>(out: &mut [O], chunk: usize, body: &(dyn Fn(usize, &mut [O]) + Sync)) {
    out.par_chunks_mut(chunk).enumerate().for_each(|(i, c)| body(i, c));
}

/// The numpy broadcast of two shapes.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for (i, o) in out.iter_mut().enumerate() {
        let da = if i + a.len() >= r { a[i + a.len() - r] } else { 1 };
        let db = if i + b.len() >= r { b[i + b.len() - r] } else { 1 };
        *o = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(Error::mismatch(format!("shapes {a:?} and {b:?} do not broadcast (numpy)")));
        };
    }
    Ok(out)
}

/// How inputs are broadcast (`auto_broadcast` attribute).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AutoBroadcast {
    Numpy,
    None,
}

impl AutoBroadcast {
    pub(crate) fn from_ctx(ctx: &BuildCtx) -> Result<Self> {
        match ctx.attr_str_or("auto_broadcast", "numpy").trim().to_ascii_lowercase().as_str() {
            "numpy" => Ok(AutoBroadcast::Numpy),
            "none" | "explicit" => Ok(AutoBroadcast::None),
            other => Err(ctx.err(format!("auto_broadcast '{other}' is not supported"))),
        }
    }

    pub(crate) fn out_shape(self, shapes: &[&[usize]]) -> Result<Vec<usize>> {
        let mut out = shapes.first().map(|s| s.to_vec()).unwrap_or_default();
        for s in &shapes[1..] {
            out = match self {
                AutoBroadcast::Numpy => broadcast_shape(&out, s)?,
                AutoBroadcast::None if out.as_slice() == *s => out,
                AutoBroadcast::None => {
                    return Err(Error::mismatch(format!(
                        "auto_broadcast none needs equal shapes, got {out:?} and {s:?}"
                    )))
                }
            };
        }
        Ok(out)
    }
}

/// A walk over an output of shape `out_shape` reading `K` inputs broadcast to it. Dimensions are
/// merged where every input has the same "present / broadcast" pattern; the last merged
/// dimension is the inner loop, where each input's stride is 1 or 0.
pub(crate) struct Bcast<const K: usize> {
    pub out_shape: Vec<usize>,
    dims: Vec<usize>,
    strides: Vec<[usize; K]>,
}

impl<const K: usize> Bcast<K> {
    /// `shapes` must each broadcast to `out_shape` (numpy rules, right aligned).
    pub(crate) fn new(out_shape: &[usize], shapes: [&[usize]; K]) -> Result<Self> {
        let r = out_shape.len();
        for s in &shapes {
            if s.len() > r {
                return Err(Error::mismatch(format!("shape {s:?} does not broadcast to {out_shape:?}")));
            }
        }
        let mut dims: Vec<usize> = vec![];
        let mut pats: Vec<[bool; K]> = vec![];
        for (d, &od) in out_shape.iter().enumerate() {
            if od == 1 {
                continue;
            }
            let mut pat = [false; K];
            for (k, s) in shapes.iter().enumerate() {
                let sd = if d + s.len() >= r { s[d + s.len() - r] } else { 1 };
                if sd == od {
                    pat[k] = true;
                } else if sd != 1 {
                    return Err(Error::mismatch(format!("shape {s:?} does not broadcast to {out_shape:?}")));
                }
            }
            if pats.last() == Some(&pat) {
                if let Some(last) = dims.last_mut() {
                    *last *= od;
                }
            } else {
                dims.push(od);
                pats.push(pat);
            }
        }
        let mut strides = vec![[0usize; K]; dims.len()];
        let mut acc = [1usize; K];
        for j in (0..dims.len()).rev() {
            for k in 0..K {
                if pats[j][k] {
                    strides[j][k] = acc[k];
                    acc[k] *= dims[j];
                }
            }
        }
        Ok(Bcast { out_shape: out_shape.to_vec(), dims, strides })
    }

    pub(crate) fn len(&self) -> usize {
        self.out_shape.iter().product()
    }

    pub(crate) fn inner(&self) -> usize {
        self.dims.last().copied().unwrap_or(1)
    }

    pub(crate) fn inner_strides(&self) -> [usize; K] {
        self.strides.last().copied().unwrap_or([0; K])
    }

    /// Input offsets of the first element of outer row `row`.
    fn row_offsets(&self, mut row: usize) -> [usize; K] {
        let mut offs = [0usize; K];
        if self.dims.len() < 2 {
            return offs;
        }
        for j in (0..self.dims.len() - 1).rev() {
            let i = row % self.dims[j];
            row /= self.dims[j];
            for (o, s) in offs.iter_mut().zip(&self.strides[j]) {
                *o += i * s;
            }
        }
        offs
    }

    /// Calls `seg(out_start, len, offsets)` for the pieces of inner rows covering output elements
    /// `start..end`; `offsets` are the inputs' offsets of the piece's first element.
    pub(crate) fn walk(&self, start: usize, end: usize, mut seg: impl FnMut(usize, usize, [usize; K])) {
        let inner = self.inner();
        if inner == 0 || start >= end {
            return;
        }
        let is = self.inner_strides();
        let mut pos = start;
        while pos < end {
            let row = pos / inner;
            let col = pos % inner;
            let n = (inner - col).min(end - pos);
            let mut offs = self.row_offsets(row);
            for k in 0..K {
                offs[k] += col * is[k];
            }
            seg(pos, n, offs);
            pos += n;
        }
    }

    /// Fills `out` (of length `self.len()`), splitting the work over threads when it is large.
    pub(crate) fn fill<O: Send>(&self, out: &mut [O], seg: impl Fn(&mut [O], [usize; K]) + Sync) {
        let total = out.len();
        if total < PAR_THRESHOLD {
            self.walk(0, total, |s, n, offs| seg(&mut out[s..s + n], offs));
        } else {
            par_chunks(out, PAR_CHUNK, &|c, chunk| {
                let s0 = c * PAR_CHUNK;
                let e = s0 + chunk.len();
                self.walk(s0, e, |s, n, offs| seg(&mut chunk[s - s0..s - s0 + n], offs));
            });
        }
    }
}

/// Contiguous data of an array (copied only when it is not in standard layout).
pub(crate) fn std_slice<T: Clone>(a: &ArrayD<T>) -> std::borrow::Cow<'_, [T]> {
    match a.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(a.iter().cloned().collect()),
    }
}

pub(crate) fn make_array<T>(shape: &[usize], v: Vec<T>) -> Result<ArrayD<T>> {
    ArrayD::from_shape_vec(IxDyn(shape), v).map_err(|e| Error::internal(format!("output of shape {shape:?}: {e}")))
}

/// Applies `f` elementwise with broadcasting; the inner loop is specialized for the
/// (1,1), (1,0) and (0,1) stride patterns so it runs over plain slices.
pub(crate) fn broadcast_map<A, B, O, F>(a: &ArrayD<A>, b: &ArrayD<B>, mode: AutoBroadcast, f: F) -> Result<ArrayD<O>>
where
    A: Copy + Sync,
    B: Copy + Sync,
    O: Copy + Send + Default,
    F: Fn(A, B) -> O + Sync,
{
    let out_shape = mode.out_shape(&[a.shape(), b.shape()])?;
    let plan = Bcast::<2>::new(&out_shape, [a.shape(), b.shape()])?;
    let av = std_slice(a);
    let bv = std_slice(b);
    let (av, bv) = (&*av, &*bv);
    let mut out = vec![O::default(); plan.len()];
    let [sa, sb] = plan.inner_strides();
    plan.fill(&mut out, |o, [oa, ob]| {
        let n = o.len();
        match (sa, sb) {
            (1, 1) => {
                for ((y, &x), &z) in o.iter_mut().zip(&av[oa..oa + n]).zip(&bv[ob..ob + n]) {
                    *y = f(x, z);
                }
            }
            (1, 0) => {
                let z = bv[ob];
                for (y, &x) in o.iter_mut().zip(&av[oa..oa + n]) {
                    *y = f(x, z);
                }
            }
            (0, 1) => {
                let x = av[oa];
                for (y, &z) in o.iter_mut().zip(&bv[ob..ob + n]) {
                    *y = f(x, z);
                }
            }
            _ => {
                for (i, y) in o.iter_mut().enumerate() {
                    *y = f(av[oa + i * sa], bv[ob + i * sb]);
                }
            }
        }
    });
    make_array(&out_shape, out)
}

/// `own = f(own, other)` (or `f(other, own)` when `own_is_second`) where `own` already has the
/// output shape: the result is written over `own`'s buffer. `None` when the layout does not allow
/// it (then the caller allocates as usual).
pub(crate) fn broadcast_update<T, F>(
    own: &mut ArrayD<T>,
    other: &ArrayD<T>,
    mode: AutoBroadcast,
    own_is_second: bool,
    f: F,
) -> Option<Result<()>>
where
    T: Copy + Send + Sync,
    F: Fn(T, T) -> T + Sync,
{
    let out_shape = match mode.out_shape(&[own.shape(), other.shape()]) {
        Ok(s) => s,
        Err(e) => return Some(Err(e)),
    };
    if out_shape != own.shape() || !own.is_standard_layout() {
        return None;
    }
    let plan = match Bcast::<2>::new(&out_shape, [own.shape(), other.shape()]) {
        Ok(p) => p,
        Err(e) => return Some(Err(e)),
    };
    let ov = std_slice(other);
    let ov = &*ov;
    let own = own.as_slice_mut()?;
    let [_, sb] = plan.inner_strides();
    let g = move |x: T, z: T| if own_is_second { f(z, x) } else { f(x, z) };
    plan.fill(own, |o, [_, ob]| {
        let n = o.len();
        match sb {
            1 => o.iter_mut().zip(&ov[ob..ob + n]).for_each(|(y, &z)| *y = g(*y, z)),
            0 => {
                let z = ov[ob];
                o.iter_mut().for_each(|y| *y = g(*y, z));
            }
            _ => o.iter_mut().enumerate().for_each(|(i, y)| *y = g(*y, ov[ob + i * sb])),
        }
    });
    Some(Ok(()))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Add,
    Subtract,
    Multiply,
    Divide { python: bool },
    Power,
    Maximum,
    Minimum,
    SquaredDifference,
    FloorMod,
    Mod,
    Equal,
    NotEqual,
    Less,
    Greater,
    LessEqual,
    GreaterEqual,
    LogicalAnd,
    LogicalOr,
    LogicalXor,
    BitwiseAnd,
    BitwiseOr,
    BitwiseXor,
}

#[derive(Debug)]
struct Binary {
    kind: Kind,
    mode: AutoBroadcast,
}

fn float_arith(kind: Kind) -> impl Fn(f32, f32) -> f32 + Sync + Copy {
    move |a: f32, b: f32| match kind {
        Kind::Add => a + b,
        Kind::Subtract => a - b,
        Kind::Multiply => a * b,
        Kind::Divide { .. } => a / b,
        // x² (RMSNorm's Power) as one rounded product, as OpenVINO computes it; libm's powf
        // is far slower and not always correctly rounded.
        Kind::Power if b == 2.0 => a * a,
        Kind::Power => a.powf(b),
        Kind::Maximum => a.max(b),
        Kind::Minimum => a.min(b),
        Kind::SquaredDifference => (a - b) * (a - b),
        Kind::FloorMod => {
            let r = a % b;
            if r != 0.0 && ((r < 0.0) != (b < 0.0)) {
                r + b
            } else {
                r
            }
        }
        Kind::Mod => a % b,
        _ => f32::NAN,
    }
}

fn float_arith64(kind: Kind) -> impl Fn(f64, f64) -> f64 + Sync + Copy {
    move |a: f64, b: f64| match kind {
        Kind::Add => a + b,
        Kind::Subtract => a - b,
        Kind::Multiply => a * b,
        Kind::Divide { .. } => a / b,
        Kind::Power => a.powf(b),
        Kind::Maximum => a.max(b),
        Kind::Minimum => a.min(b),
        Kind::SquaredDifference => (a - b) * (a - b),
        Kind::FloorMod => {
            let r = a % b;
            if r != 0.0 && ((r < 0.0) != (b < 0.0)) {
                r + b
            } else {
                r
            }
        }
        Kind::Mod => a % b,
        _ => f64::NAN,
    }
}

/// Integer arithmetic in the type's own width (wrapping, like C++), division by zero gives 0.
macro_rules! int_arith {
    ($t:ty, $kind:expr) => {{
        let kind = $kind;
        move |a: $t, b: $t| -> $t {
            match kind {
                Kind::Add => a.wrapping_add(b),
                Kind::Subtract => a.wrapping_sub(b),
                Kind::Multiply => a.wrapping_mul(b),
                Kind::Divide { python } => {
                    if b == 0 {
                        0
                    } else {
                        let q = a.wrapping_div(b);
                        #[allow(unused_comparisons)]
                        let neg = (a < 0) != (b < 0);
                        if python && neg && q.wrapping_mul(b) != a {
                            q.wrapping_sub(1)
                        } else {
                            q
                        }
                    }
                }
                Kind::Power => (a as f64).powf(b as f64) as $t,
                Kind::Maximum => a.max(b),
                Kind::Minimum => a.min(b),
                Kind::SquaredDifference => a.wrapping_sub(b).wrapping_mul(a.wrapping_sub(b)),
                Kind::FloorMod => {
                    if b == 0 {
                        0
                    } else {
                        let r = a.wrapping_rem(b);
                        #[allow(unused_comparisons)]
                        let fix = r != 0 && ((r < 0) != (b < 0));
                        if fix {
                            r.wrapping_add(b)
                        } else {
                            r
                        }
                    }
                }
                Kind::Mod => {
                    if b == 0 {
                        0
                    } else {
                        a.wrapping_rem(b)
                    }
                }
                Kind::BitwiseAnd => a & b,
                Kind::BitwiseOr => a | b,
                Kind::BitwiseXor => a ^ b,
                _ => 0,
            }
        }
    }};
}

fn compare<T: PartialOrd + Copy>(kind: Kind) -> impl Fn(T, T) -> bool + Sync + Copy {
    move |a: T, b: T| match kind {
        Kind::Equal => a == b,
        Kind::NotEqual => a != b,
        Kind::Less => a < b,
        Kind::Greater => a > b,
        Kind::LessEqual => a <= b,
        Kind::GreaterEqual => a >= b,
        _ => false,
    }
}

impl Binary {
    fn is_compare(&self) -> bool {
        matches!(
            self.kind,
            Kind::Equal | Kind::NotEqual | Kind::Less | Kind::Greater | Kind::LessEqual | Kind::GreaterEqual
        )
    }
    fn is_logical(&self) -> bool {
        matches!(self.kind, Kind::LogicalAnd | Kind::LogicalOr | Kind::LogicalXor)
    }
    fn is_bitwise(&self) -> bool {
        matches!(self.kind, Kind::BitwiseAnd | Kind::BitwiseOr | Kind::BitwiseXor)
    }

    fn eval_compare(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let m = self.mode;
        macro_rules! cmp {
            ($x:expr, $y:expr, $t:ty) => {
                Tensor::Bool(broadcast_map($x, $y, m, compare::<$t>(self.kind))?)
            };
        }
        Ok(match (a, b) {
            (Tensor::F32(x), Tensor::F32(y)) => cmp!(x, y, f32),
            (Tensor::F16(x), Tensor::F16(y)) => cmp!(x, y, f16),
            (Tensor::BF16(x), Tensor::BF16(y)) => cmp!(x, y, bf16),
            (Tensor::F64(x), Tensor::F64(y)) => cmp!(x, y, f64),
            (Tensor::I8(x), Tensor::I8(y)) => cmp!(x, y, i8),
            (Tensor::U8(x), Tensor::U8(y)) => cmp!(x, y, u8),
            (Tensor::I16(x), Tensor::I16(y)) => cmp!(x, y, i16),
            (Tensor::U16(x), Tensor::U16(y)) => cmp!(x, y, u16),
            (Tensor::I32(x), Tensor::I32(y)) => cmp!(x, y, i32),
            (Tensor::U32(x), Tensor::U32(y)) => cmp!(x, y, u32),
            (Tensor::I64(x), Tensor::I64(y)) => cmp!(x, y, i64),
            (Tensor::U64(x), Tensor::U64(y)) => cmp!(x, y, u64),
            (Tensor::Bool(x), Tensor::Bool(y)) => cmp!(x, y, bool),
            _ => return Err(type_mismatch(a, b)),
        })
    }

    fn eval_logical(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let (Tensor::Bool(x), Tensor::Bool(y)) = (a, b) else {
            return Err(Error::mismatch(format!(
                "logical op needs boolean inputs, got {} and {}",
                a.element_type(),
                b.element_type()
            )));
        };
        let k = self.kind;
        Ok(Tensor::Bool(broadcast_map(x, y, self.mode, move |p: bool, q: bool| match k {
            Kind::LogicalAnd | Kind::BitwiseAnd => p & q,
            Kind::LogicalOr | Kind::BitwiseOr => p | q,
            _ => p ^ q,
        })?))
    }

    fn eval_arith(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let m = self.mode;
        let k = self.kind;
        if self.is_bitwise() && matches!(a, Tensor::F32(_) | Tensor::F16(_) | Tensor::BF16(_) | Tensor::F64(_)) {
            return Err(Error::mismatch(format!("bitwise op on {} is not allowed", a.element_type())));
        }
        macro_rules! int {
            ($x:expr, $y:expr, $t:ty, $var:ident) => {
                Tensor::$var(broadcast_map($x, $y, m, int_arith!($t, k))?)
            };
        }
        Ok(match (a, b) {
            (Tensor::F32(x), Tensor::F32(y)) => {
                // Monomorphized per kind so the inner loops vectorize.
                match k {
                    Kind::Add => Tensor::F32(broadcast_map(x, y, m, |p: f32, q: f32| p + q)?),
                    Kind::Subtract => Tensor::F32(broadcast_map(x, y, m, |p: f32, q: f32| p - q)?),
                    Kind::Multiply => Tensor::F32(broadcast_map(x, y, m, |p: f32, q: f32| p * q)?),
                    Kind::Divide { .. } => Tensor::F32(broadcast_map(x, y, m, |p: f32, q: f32| p / q)?),
                    Kind::Maximum => Tensor::F32(broadcast_map(x, y, m, |p: f32, q: f32| p.max(q))?),
                    Kind::Minimum => Tensor::F32(broadcast_map(x, y, m, |p: f32, q: f32| p.min(q))?),
                    _ => Tensor::F32(broadcast_map(x, y, m, float_arith(k))?),
                }
            }
            (Tensor::F16(x), Tensor::F16(y)) => {
                let f = float_arith(k);
                Tensor::F16(broadcast_map(x, y, m, move |p: f16, q: f16| f16::from_f32(f(p.to_f32(), q.to_f32())))?)
            }
            (Tensor::BF16(x), Tensor::BF16(y)) => {
                let f = float_arith(k);
                Tensor::BF16(broadcast_map(x, y, m, move |p: bf16, q: bf16| bf16::from_f32(f(p.to_f32(), q.to_f32())))?)
            }
            (Tensor::F64(x), Tensor::F64(y)) => Tensor::F64(broadcast_map(x, y, m, float_arith64(k))?),
            (Tensor::I8(x), Tensor::I8(y)) => int!(x, y, i8, I8),
            (Tensor::U8(x), Tensor::U8(y)) => int!(x, y, u8, U8),
            (Tensor::I16(x), Tensor::I16(y)) => int!(x, y, i16, I16),
            (Tensor::U16(x), Tensor::U16(y)) => int!(x, y, u16, U16),
            (Tensor::I32(x), Tensor::I32(y)) => int!(x, y, i32, I32),
            (Tensor::U32(x), Tensor::U32(y)) => int!(x, y, u32, U32),
            (Tensor::I64(x), Tensor::I64(y)) => int!(x, y, i64, I64),
            (Tensor::U64(x), Tensor::U64(y)) => int!(x, y, u64, U64),
            (Tensor::Bool(_), Tensor::Bool(_)) if self.is_bitwise() => return self.eval_logical(a, b),
            (Tensor::Bool(x), Tensor::Bool(y)) => {
                // Booleans as 0/1 (Add → or, Multiply → and, ...), as OpenVINO's reference does.
                let f = int_arith!(u8, k);
                Tensor::Bool(broadcast_map(x, y, m, move |p: bool, q: bool| f(p as u8, q as u8) != 0)?)
            }
            _ => return Err(type_mismatch(a, b)),
        })
    }
}

fn type_mismatch(a: &Tensor, b: &Tensor) -> Error {
    Error::mismatch(format!("input types differ or are unsupported: {} and {}", a.element_type(), b.element_type()))
}

impl Binary {
    /// `own ∘ other` (or `other ∘ own`) written over `own`'s buffer; `None` when the kind or the
    /// layout does not allow it.
    fn update_f32(&self, own: &mut ArrayD<f32>, other: &ArrayD<f32>, own_is_second: bool) -> Option<Result<()>> {
        let m = self.mode;
        let o = own_is_second;
        // Monomorphized per kind so the inner loops vectorize.
        match self.kind {
            Kind::Add => broadcast_update(own, other, m, o, |p: f32, q: f32| p + q),
            Kind::Subtract => broadcast_update(own, other, m, o, |p: f32, q: f32| p - q),
            Kind::Multiply => broadcast_update(own, other, m, o, |p: f32, q: f32| p * q),
            Kind::Divide { .. } => broadcast_update(own, other, m, o, |p: f32, q: f32| p / q),
            Kind::Maximum => broadcast_update(own, other, m, o, |p: f32, q: f32| p.max(q)),
            Kind::Minimum => broadcast_update(own, other, m, o, |p: f32, q: f32| p.min(q)),
            _ if self.is_compare() || self.is_logical() || self.is_bitwise() => None,
            k => broadcast_update(own, other, m, o, float_arith(k)),
        }
    }

    /// f32 arithmetic written over an input that dies here and already has the output shape;
    /// gives the inputs back when neither can be reused.
    fn eval_in_place(&self, a: Arc<Tensor>, b: Arc<Tensor>) -> std::result::Result<Result<Tensor>, [Arc<Tensor>; 2]> {
        let mut pair = [Some(a), Some(b)];
        for mine in 0..2 {
            match take_unique(&mut pair[mine]) {
                Some(Tensor::F32(mut own)) => {
                    if let Some(Tensor::F32(other)) = pair[1 - mine].as_deref() {
                        if let Some(r) = self.update_f32(&mut own, other, mine == 1) {
                            return Ok(r.map(|()| Tensor::F32(own)));
                        }
                    }
                    pair[mine] = Some(Arc::new(Tensor::F32(own)));
                }
                Some(t) => pair[mine] = Some(Arc::new(t)),
                None => {}
            }
        }
        match pair {
            [Some(a), Some(b)] => Err([a, b]),
            _ => Ok(Err(Error::internal("binary op lost an input"))),
        }
    }
}

impl Op for Binary {
    fn eval_owned(&self, inputs: Vec<Arc<Tensor>>) -> Result<Vec<Tensor>> {
        match <[Arc<Tensor>; 2]>::try_from(inputs) {
            Ok([a, b]) => match self.eval_in_place(a, b) {
                Ok(r) => Ok(vec![r?]),
                Err([a, b]) => self.eval(&[&a, &b]),
            },
            Err(inputs) => {
                let refs: Vec<&Tensor> = inputs.iter().map(|a| a.as_ref()).collect();
                self.eval(&refs)
            }
        }
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let [a, b] = inputs else {
            return Err(Error::invalid(format!("expected 2 inputs, got {}", inputs.len())));
        };
        let out = if self.is_compare() {
            self.eval_compare(a, b)?
        } else if self.is_logical() {
            self.eval_logical(a, b)?
        } else {
            self.eval_arith(a, b)?
        };
        Ok(vec![out])
    }
}

fn build_binary(ctx: &BuildCtx) -> Result<Box<dyn Op>> {
    let kind = match ctx.node.op_type.as_str() {
        "Add" => Kind::Add,
        "Subtract" => Kind::Subtract,
        "Multiply" => Kind::Multiply,
        "Divide" => Kind::Divide { python: ctx.attr_bool_or("m_pythondiv", true)? },
        "Power" => Kind::Power,
        "Maximum" => Kind::Maximum,
        "Minimum" => Kind::Minimum,
        "SquaredDifference" => Kind::SquaredDifference,
        "FloorMod" => Kind::FloorMod,
        "Mod" => Kind::Mod,
        "Equal" => Kind::Equal,
        "NotEqual" => Kind::NotEqual,
        "Less" => Kind::Less,
        "Greater" => Kind::Greater,
        "LessEqual" => Kind::LessEqual,
        "GreaterEqual" => Kind::GreaterEqual,
        "LogicalAnd" => Kind::LogicalAnd,
        "LogicalOr" => Kind::LogicalOr,
        "LogicalXor" => Kind::LogicalXor,
        "BitwiseAnd" => Kind::BitwiseAnd,
        "BitwiseOr" => Kind::BitwiseOr,
        "BitwiseXor" => Kind::BitwiseXor,
        other => return Err(ctx.err(format!("'{other}' is not a binary op"))),
    };
    // The IR spells Divide's attribute `m_pythondiv`; accept `pythondivision` too.
    let kind = match kind {
        Kind::Divide { .. } if ctx.attr("pythondivision").is_some() => {
            Kind::Divide { python: ctx.attr_bool_or("pythondivision", true)? }
        }
        k => k,
    };
    Ok(Box::new(Binary { kind, mode: AutoBroadcast::from_ctx(ctx)? }))
}

/// Select(cond, then, else) with numpy broadcasting of all three.
#[derive(Debug)]
struct Select {
    mode: AutoBroadcast,
}

fn select_typed<T: Copy + Sync + Send + Default>(c: &[bool], t: &[T], e: &[T], plan: &Bcast<3>) -> Vec<T> {
    let mut out = vec![T::default(); plan.len()];
    let [sc, st, se] = plan.inner_strides();
    plan.fill(&mut out, |o, [oc, ot, oe]| {
        for (i, y) in o.iter_mut().enumerate() {
            *y = if c[oc + i * sc] { t[ot + i * st] } else { e[oe + i * se] };
        }
    });
    out
}

impl Op for Select {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let [c, t, e] = inputs else {
            return Err(Error::invalid(format!("Select expects 3 inputs, got {}", inputs.len())));
        };
        let Tensor::Bool(ca) = c else {
            return Err(Error::mismatch(format!("Select condition must be boolean, got {}", c.element_type())));
        };
        let shape = self.mode.out_shape(&[c.shape(), t.shape(), e.shape()])?;
        let plan = Bcast::<3>::new(&shape, [c.shape(), t.shape(), e.shape()])?;
        let cv = std_slice(ca);
        macro_rules! sel {
            ($x:expr, $y:expr, $var:ident) => {
                Tensor::$var(make_array(&shape, select_typed(&cv, &std_slice($x), &std_slice($y), &plan))?)
            };
        }
        let out = match (t, e) {
            (Tensor::F32(x), Tensor::F32(y)) => sel!(x, y, F32),
            (Tensor::F16(x), Tensor::F16(y)) => sel!(x, y, F16),
            (Tensor::BF16(x), Tensor::BF16(y)) => sel!(x, y, BF16),
            (Tensor::F64(x), Tensor::F64(y)) => sel!(x, y, F64),
            (Tensor::I8(x), Tensor::I8(y)) => sel!(x, y, I8),
            (Tensor::U8(x), Tensor::U8(y)) => sel!(x, y, U8),
            (Tensor::I16(x), Tensor::I16(y)) => sel!(x, y, I16),
            (Tensor::U16(x), Tensor::U16(y)) => sel!(x, y, U16),
            (Tensor::I32(x), Tensor::I32(y)) => sel!(x, y, I32),
            (Tensor::U32(x), Tensor::U32(y)) => sel!(x, y, U32),
            (Tensor::I64(x), Tensor::I64(y)) => sel!(x, y, I64),
            (Tensor::U64(x), Tensor::U64(y)) => sel!(x, y, U64),
            (Tensor::Bool(x), Tensor::Bool(y)) => sel!(x, y, Bool),
            _ => return Err(type_mismatch(t, e)),
        };
        Ok(vec![out])
    }
}

fn build_select(ctx: &BuildCtx) -> Result<Box<dyn Op>> {
    Ok(Box::new(Select { mode: AutoBroadcast::from_ctx(ctx)? }))
}

pub fn register(r: &mut Registry) {
    for t in [
        "Add",
        "Subtract",
        "Multiply",
        "Divide",
        "Power",
        "Maximum",
        "Minimum",
        "SquaredDifference",
        "FloorMod",
        "Mod",
        "Equal",
        "NotEqual",
        "Less",
        "Greater",
        "LessEqual",
        "GreaterEqual",
        "LogicalAnd",
        "LogicalOr",
        "LogicalXor",
    ] {
        r.add(t, &["opset1"], build_binary);
    }
    for t in ["BitwiseAnd", "BitwiseOr", "BitwiseXor"] {
        r.add(t, &["opset13"], build_binary);
    }
    r.add("Select", &["opset1"], build_select);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::graph::{Graph, Node};

    /// Builds and runs a registered op on the given inputs with the given attributes.
    pub(crate) fn run_op(
        op_type: &str,
        version: &str,
        attrs: &[(&str, &str)],
        inputs: &[Tensor],
    ) -> Result<Vec<Tensor>> {
        let mut node = Node::new("t", op_type, version);
        for (k, v) in attrs {
            node.attrs.set(k, *v);
        }
        let graph = Graph::default();
        let ctx = BuildCtx { node: &node, id: 0, graph: &graph, const_inputs: inputs.iter().map(Some).collect() };
        let op = crate::ops::build(&ctx)?;
        let refs: Vec<&Tensor> = inputs.iter().collect();
        op.eval(&refs)
    }

    pub(crate) fn f32t(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::f32_from_vec(shape, v.to_vec()).unwrap()
    }

    pub(crate) fn vals(t: &Tensor) -> Vec<f64> {
        t.to_f64_vec()
    }

    #[test]
    fn broadcast_shapes() {
        assert_eq!(broadcast_shape(&[2, 1, 3], &[4, 1]).unwrap(), vec![2, 4, 3]);
        assert_eq!(broadcast_shape(&[], &[5]).unwrap(), vec![5]);
        assert_eq!(broadcast_shape(&[0, 3], &[1]).unwrap(), vec![0, 3]);
        assert!(broadcast_shape(&[2, 3], &[4]).is_err());
    }

    #[test]
    fn add_same_scalar_channel_and_general() {
        let a = f32t(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        let o = run_op("Add", "opset1", &[], &[a.clone(), a.clone()]).unwrap();
        assert_eq!(vals(&o[0]), vec![2., 4., 6., 8., 10., 12.]);
        let s = f32t(&[], &[10.]);
        let o = run_op("Add", "opset1", &[], &[s, a.clone()]).unwrap();
        assert_eq!(vals(&o[0]), vec![11., 12., 13., 14., 15., 16.]);
        // per-channel bias on [1,2,2,2]
        let x = f32t(&[1, 2, 2, 2], &[0., 1., 2., 3., 4., 5., 6., 7.]);
        let bias = f32t(&[1, 2, 1, 1], &[100., 200.]);
        let o = run_op("Add", "opset1", &[], &[x, bias]).unwrap();
        assert_eq!(o[0].shape(), &[1, 2, 2, 2]);
        assert_eq!(vals(&o[0]), vec![100., 101., 102., 103., 204., 205., 206., 207.]);
        // [3,1] - [2] → [3,2] (both operands broadcast, odd shape)
        let p = f32t(&[3, 1], &[1., 2., 3.]);
        let q = f32t(&[2], &[10., 20.]);
        let o = run_op("Subtract", "opset1", &[], &[p, q]).unwrap();
        assert_eq!(o[0].shape(), &[3, 2]);
        assert_eq!(vals(&o[0]), vec![-9., -19., -8., -18., -7., -17.]);
    }

    #[test]
    fn large_parallel_matches_serial() {
        let n = PAR_THRESHOLD * 2 + 7;
        let c = 3;
        let x: Vec<f32> = (0..n * c).map(|i| (i % 97) as f32).collect();
        let a = f32t(&[1, c, n], &x);
        let b = f32t(&[1, c, 1], &[1., 2., 3.]);
        let o = run_op("Multiply", "opset1", &[], &[a, b]).unwrap();
        let v = vals(&o[0]);
        for (i, y) in v.iter().enumerate() {
            assert_eq!(*y, x[i] as f64 * (1 + i / n) as f64);
        }
    }

    #[test]
    fn none_broadcast_rejects_different_shapes() {
        let a = f32t(&[2], &[1., 2.]);
        let b = f32t(&[1], &[1.]);
        assert!(run_op("Add", "opset1", &[("auto_broadcast", "none")], &[a, b]).is_err());
    }

    #[test]
    fn integer_division_and_mods() {
        let a = Tensor::i64_from_vec(&[4], vec![7, -7, 7, -7]).unwrap();
        let b = Tensor::i64_from_vec(&[4], vec![2, 2, -2, -2]).unwrap();
        let o = run_op("Divide", "opset1", &[], &[a.clone(), b.clone()]).unwrap();
        assert_eq!(o[0].to_i64_vec(), vec![3, -4, -4, 3]);
        let o = run_op("Divide", "opset1", &[("m_pythondiv", "false")], &[a.clone(), b.clone()]).unwrap();
        assert_eq!(o[0].to_i64_vec(), vec![3, -3, -3, 3]);
        let o = run_op("FloorMod", "opset1", &[], &[a.clone(), b.clone()]).unwrap();
        assert_eq!(o[0].to_i64_vec(), vec![1, 1, -1, -1]);
        let o = run_op("Mod", "opset1", &[], &[a, b]).unwrap();
        assert_eq!(o[0].to_i64_vec(), vec![1, -1, 1, -1]);
        let fa = f32t(&[2], &[-7.5, 7.5]);
        let fb = f32t(&[2], &[2., -2.]);
        let o = run_op("FloorMod", "opset1", &[], &[fa, fb]).unwrap();
        assert_eq!(vals(&o[0]), vec![0.5, -0.5]);
        let z = Tensor::i64_from_vec(&[1], vec![0]).unwrap();
        let o = run_op("Divide", "opset1", &[], &[Tensor::i64_from_vec(&[1], vec![5]).unwrap(), z]).unwrap();
        assert_eq!(o[0].to_i64_vec(), vec![0]);
    }

    #[test]
    fn power_sqdiff_max_min() {
        let a = f32t(&[3], &[2., -3., 0.5]);
        let b = f32t(&[3], &[3., 1., 2.]);
        let p = run_op("Power", "opset1", &[], &[a.clone(), b.clone()]).unwrap();
        assert_eq!(vals(&p[0]), vec![8., -3., 0.25]);
        let s = run_op("SquaredDifference", "opset1", &[], &[a.clone(), b.clone()]).unwrap();
        assert_eq!(vals(&s[0]), vec![1., 16., 2.25]);
        let mx = run_op("Maximum", "opset1", &[], &[a.clone(), b.clone()]).unwrap();
        assert_eq!(vals(&mx[0]), vec![3., 1., 2.]);
        let mn = run_op("Minimum", "opset1", &[], &[a, b]).unwrap();
        assert_eq!(vals(&mn[0]), vec![2., -3., 0.5]);
    }

    #[test]
    fn f16_add_and_u8_wraps() {
        let a = Tensor::from_f64_vec(crate::tensor::ElementType::F16, &[2], vec![1.5, 2.0]).unwrap();
        let o = run_op("Add", "opset1", &[], &[a.clone(), a]).unwrap();
        assert_eq!(o[0].element_type(), crate::tensor::ElementType::F16);
        assert_eq!(vals(&o[0]), vec![3.0, 4.0]);
        let u = Tensor::from_f64_vec(crate::tensor::ElementType::U8, &[1], vec![250.0]).unwrap();
        let v = Tensor::from_f64_vec(crate::tensor::ElementType::U8, &[1], vec![10.0]).unwrap();
        let o = run_op("Add", "opset1", &[], &[u, v]).unwrap();
        assert_eq!(vals(&o[0]), vec![4.0]);
    }

    #[test]
    fn comparisons_logical_bitwise() {
        let a = Tensor::i64_from_vec(&[1, 3], vec![0, 1, 2]).unwrap();
        let b = Tensor::i64_from_vec(&[3, 1], vec![0, 1, 2]).unwrap();
        let o = run_op("GreaterEqual", "opset1", &[], &[a.clone(), b.clone()]).unwrap();
        assert_eq!(o[0].shape(), &[3, 3]);
        assert_eq!(vals(&o[0]), vec![1., 1., 1., 0., 1., 1., 0., 0., 1.]);
        let o = run_op("Less", "opset1", &[], &[a.clone(), b.clone()]).unwrap();
        assert_eq!(vals(&o[0]), vec![0., 0., 0., 1., 0., 0., 1., 1., 0.]);
        let t = Tensor::Bool(make_array(&[4], vec![true, true, false, false]).unwrap());
        let f = Tensor::Bool(make_array(&[4], vec![true, false, true, false]).unwrap());
        let o = run_op("LogicalXor", "opset1", &[], &[t.clone(), f.clone()]).unwrap();
        assert_eq!(vals(&o[0]), vec![0., 1., 1., 0.]);
        let o = run_op("BitwiseAnd", "opset13", &[], &[t.clone(), f.clone()]).unwrap();
        assert_eq!(vals(&o[0]), vec![1., 0., 0., 0.]);
        let o = run_op("BitwiseOr", "opset13", &[], &[t, f]).unwrap();
        assert_eq!(vals(&o[0]), vec![1., 1., 1., 0.]);
        let x = Tensor::I32(make_array(&[2], vec![6, -1]).unwrap());
        let y = Tensor::I32(make_array(&[2], vec![3, 5]).unwrap());
        let o = run_op("BitwiseXor", "opset13", &[], &[x, y]).unwrap();
        assert_eq!(o[0].to_i64_vec(), vec![5, -6]);
        assert!(run_op("LogicalAnd", "opset1", &[], &[a, b]).is_err());
    }

    #[test]
    fn select_broadcasts_three_inputs() {
        let c = Tensor::Bool(make_array(&[1, 2], vec![true, false]).unwrap());
        let t = f32t(&[2, 1], &[1., 2.]);
        let e = f32t(&[], &[-1.]);
        let o = run_op("Select", "opset1", &[], &[c, t, e]).unwrap();
        assert_eq!(o[0].shape(), &[2, 2]);
        assert_eq!(vals(&o[0]), vec![1., -1., 2., -1.]);
    }

    #[test]
    fn mixed_types_are_errors() {
        let a = f32t(&[1], &[1.]);
        let b = Tensor::i64_from_vec(&[1], vec![1]).unwrap();
        let e = run_op("Add", "opset1", &[], &[a, b]).unwrap_err();
        assert_eq!(e.kind(), "mismatch");
    }
}
