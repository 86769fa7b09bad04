//! Shape and data-movement ops: Reshape, Squeeze, Unsqueeze, Transpose, Concat, Split,
//! VariadicSplit, StridedSlice, Slice, Gather, GatherElements, GatherND, ShapeOf, Broadcast, Tile,
//! Pad, Range, DepthToSpace, SpaceToDepth, ShuffleChannels.
//!
//! Shape-like inputs (axes, target shapes, pads) are read at eval time, so shapes computed at run
//! time (ShapeOf → ... → Reshape) work. Most movements are expressed as a list of flat source
//! indices ([`take`]), which works for every element type.

use super::attrs::norm_axis;
use super::op::{take_unique, BuildCtx, Op, Registry};
use crate::error::{Error, Result};
use crate::map_tensor;
use crate::tensor::{ElementType, Tensor};
use half::{bf16, f16};
use ndarray::{ArrayD, IxDyn};
use std::sync::Arc;

pub fn register(r: &mut Registry) {
    r.add("Reshape", &["opset1"], build_reshape);
    r.add("Squeeze", &["opset1", "opset15"], build_squeeze);
    r.add("Unsqueeze", &["opset1"], |_| Ok(Box::new(Unsqueeze)));
    r.add("Transpose", &["opset1"], |_| Ok(Box::new(Transpose)));
    r.add("Concat", &["opset1"], build_concat);
    r.add("Split", &["opset1"], build_split);
    r.add("VariadicSplit", &["opset1"], |_| Ok(Box::new(VariadicSplit)));
    r.add("StridedSlice", &["opset1"], build_strided_slice);
    r.add("Slice", &["opset8"], |_| Ok(Box::new(Slice)));
    r.add("Gather", &["opset1", "opset7", "opset8"], build_gather);
    r.add("GatherElements", &["opset6"], build_gather_elements);
    r.add("GatherND", &["opset5", "opset8"], build_gather_nd);
    r.add("ShapeOf", &["opset1", "opset3"], build_shape_of);
    r.add("Broadcast", &["opset1", "opset3"], build_broadcast);
    r.add("Tile", &["opset1"], |_| Ok(Box::new(Tile)));
    r.add("Pad", &["opset1", "opset12"], build_pad);
    r.add("Range", &["opset1", "opset4"], build_range);
    r.add("DepthToSpace", &["opset1"], build_depth_to_space);
    r.add("SpaceToDepth", &["opset1"], build_space_to_depth);
    r.add("ShuffleChannels", &["opset1"], build_shuffle_channels);
}

// ---------------------------------------------------------------------------------------------
// Generic helpers

/// Borrow a tensor's array when it holds element type `Self` (lets generic code pair tensors).
pub(crate) trait Elem: Clone + Send + Sync + 'static {
    fn of(t: &Tensor) -> Option<&ArrayD<Self>>;
}

macro_rules! elem {
    ($($t:ty => $v:ident),*) => {$(
        impl Elem for $t {
            fn of(t: &Tensor) -> Option<&ArrayD<Self>> {
                match t {
                    Tensor::$v(a) => Some(a),
                    _ => None,
                }
            }
        }
    )*};
}
elem!(f32 => F32, f16 => F16, bf16 => BF16, f64 => F64, i8 => I8, u8 => U8, i16 => I16,
      u16 => U16, i32 => I32, u32 => U32, i64 => I64, u64 => U64, bool => Bool);

/// Marks an output element that takes the fill value instead of a source element.
pub(crate) const FILL: usize = usize::MAX;

pub(crate) fn arr<T>(shape: &[usize], v: Vec<T>) -> Result<ArrayD<T>> {
    ArrayD::from_shape_vec(IxDyn(shape), v).map_err(|e| Error::internal(format!("array of shape {shape:?}: {e}")))
}

/// Row-major strides of `shape`.
pub(crate) fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

fn take_t<T: Elem>(a: &ArrayD<T>, idx: &[usize], shape: &[usize], fill: Option<&Tensor>) -> Result<ArrayD<T>> {
    let src = super::binary::std_slice(a);
    let fill_v: Option<T> = match fill {
        Some(f) => Some(
            T::of(f)
                .and_then(|x| x.iter().next().cloned())
                .ok_or_else(|| Error::mismatch("fill value has the wrong element type or is empty"))?,
        ),
        None => None,
    };
    let mut out = Vec::with_capacity(idx.len());
    for &i in idx {
        if i == FILL {
            out.push(fill_v.clone().ok_or_else(|| Error::internal("fill index without a fill value"))?);
        } else {
            out.push(src.get(i).cloned().ok_or_else(|| Error::internal(format!("source index {i} out of range")))?);
        }
    }
    arr(shape, out)
}

/// Output of `shape` whose element k is source element `idx[k]` (row-major flat index), or
/// `fill` (a tensor of the same type, first element used) where `idx[k] == FILL`.
pub(crate) fn take(t: &Tensor, idx: &[usize], shape: &[usize], fill: Option<&Tensor>) -> Result<Tensor> {
    Ok(map_tensor!(t, a => take_t(a, idx, shape, fill)?))
}

fn take_runs_t<T: Elem>(a: &ArrayD<T>, starts: &[usize], run: usize, shape: &[usize]) -> Result<ArrayD<T>> {
    let src = super::binary::std_slice(a);
    let mut out = Vec::with_capacity(starts.len() * run);
    for &p in starts {
        let piece = src.get(p..p + run).ok_or_else(|| Error::internal(format!("source run at {p} out of range")))?;
        out.extend_from_slice(piece);
    }
    arr(shape, out)
}

/// `take(t, &outer_sum(maps), shape, fill)`, copying whole runs when the innermost map reads
/// consecutive source elements (a transpose or slice that keeps the last axis, say).
pub(crate) fn take_maps(t: &Tensor, maps: &[Vec<usize>], shape: &[usize], fill: Option<&Tensor>) -> Result<Tensor> {
    if let Some((last, outer_maps)) = maps.split_last() {
        // FILL is usize::MAX, so no FILL can follow a real index in a consecutive run.
        let consecutive = last.len() >= 4 && last.windows(2).all(|p| p[0] != FILL && p[1] == p[0] + 1);
        if consecutive {
            let mut starts = outer_sum(outer_maps);
            if !starts.contains(&FILL) {
                for p in &mut starts {
                    *p += last[0];
                }
                let run = last.len();
                return Ok(map_tensor!(t, a => take_runs_t(a, &starts, run, shape)?));
            }
        }
    }
    take(t, &outer_sum(maps), shape, fill)
}

/// Flat indices of an axis-separable movement: output axis d reads source offset `maps[d][o]`
/// (already multiplied by the source stride, or FILL). Returns the row-major outer sum.
pub(crate) fn outer_sum(maps: &[Vec<usize>]) -> Vec<usize> {
    let mut idx = vec![0usize];
    for m in maps {
        let mut next = Vec::with_capacity(idx.len() * m.len());
        for &p in &idx {
            for &o in m {
                next.push(if p == FILL || o == FILL { FILL } else { p + o });
            }
        }
        idx = next;
    }
    idx
}

/// Transposes `t` viewed as `shape` (same element count) by `perm`.
fn permute(t: &Tensor, shape: &[usize], perm: &[usize]) -> Result<Tensor> {
    let st = strides(shape);
    let maps: Vec<Vec<usize>> = perm.iter().map(|&p| (0..shape[p]).map(|i| i * st[p]).collect()).collect();
    let out: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    take_maps(t, &maps, &out, None)
}

fn input<'a>(inputs: &[&'a Tensor], k: usize, op: &str) -> Result<&'a Tensor> {
    inputs.get(k).copied().ok_or_else(|| Error::invalid(format!("{op}: missing input {k}")))
}

fn to_usize(v: i64, what: &str) -> Result<usize> {
    usize::try_from(v).map_err(|_| Error::invalid(format!("{what}: negative value {v}")))
}

/// Python-style slice of `0..dim` (`start`/`stop` None = open end); negative values count from
/// the end; out-of-range values are clamped.
fn slice_indices(dim: usize, start: Option<i64>, stop: Option<i64>, step: i64) -> Result<Vec<usize>> {
    if step == 0 {
        return Err(Error::invalid("slice step is 0"));
    }
    let d = dim as i64;
    let norm = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
    let mut out = vec![];
    if step > 0 {
        let s = start.map(norm).unwrap_or(0).clamp(0, d);
        let e = stop.map(norm).unwrap_or(d).clamp(0, d);
        let mut i = s;
        while i < e {
            out.push(i as usize);
            i = i.saturating_add(step);
        }
    } else {
        let s = start.map(norm).unwrap_or(d - 1).clamp(-1, d - 1);
        let e = stop.map(norm).unwrap_or(-1).clamp(-1, d - 1);
        let mut i = s;
        while i > e {
            out.push(i as usize);
            i = i.saturating_add(step);
        }
    }
    Ok(out)
}

/// Concatenates same-typed tensors along `axis`.
fn concat_tensors(ts: &[&Tensor], axis: usize) -> Result<Tensor> {
    fn cat<T: Elem>(first: &ArrayD<T>, ts: &[&Tensor], axis: usize) -> Result<ArrayD<T>> {
        let mut views = Vec::with_capacity(ts.len());
        for (k, t) in ts.iter().enumerate() {
            let a = T::of(t).ok_or_else(|| {
                Error::mismatch(format!("Concat input {k} is {}, expected the type of input 0", t.element_type()))
            })?;
            views.push(a.view());
        }
        let _ = first;
        ndarray::concatenate(ndarray::Axis(axis), &views)
            .map_err(|e| Error::mismatch(format!("Concat along axis {axis}: {e}")))
    }
    let first = ts.first().ok_or_else(|| Error::invalid("Concat without inputs"))?;
    Ok(map_tensor!(*first, a => cat(a, ts, axis)?))
}

/// Axis-separable slice: `sel[d]` lists the kept source coordinates of axis d.
fn select(t: &Tensor, sel: &[Vec<usize>]) -> Result<Tensor> {
    let st = strides(t.shape());
    let maps: Vec<Vec<usize>> = sel.iter().zip(&st).map(|(s, &k)| s.iter().map(|&i| i * k).collect()).collect();
    let shape: Vec<usize> = sel.iter().map(|s| s.len()).collect();
    take_maps(t, &maps, &shape, None)
}

/// Pads `t` with zeros (`pads_*` per axis, negative values crop).
pub(crate) fn pad_zeros(t: &Tensor, pads_begin: &[i64], pads_end: &[i64]) -> Result<Tensor> {
    let pb = Tensor::i64_from_vec(&[pads_begin.len()], pads_begin.to_vec())?;
    let pe = Tensor::i64_from_vec(&[pads_end.len()], pads_end.to_vec())?;
    let mut out = Pad { mode: PadMode::Constant }.eval(&[t, &pb, &pe])?;
    out.pop().ok_or_else(|| Error::internal("Pad returned no output"))
}

/// Numpy-broadcasts `t` to `target` (right-aligned; dims of 1 stretch).
pub(crate) fn broadcast_numpy(t: &Tensor, target: &[usize]) -> Result<Tensor> {
    let tv: Vec<i64> = target.iter().map(|&d| d as i64).collect();
    let tt = Tensor::i64_from_vec(&[tv.len()], tv)?;
    let mut out = Broadcast { mode: BroadcastMode::Numpy }.eval(&[t, &tt])?;
    out.pop().ok_or_else(|| Error::internal("Broadcast returned no output"))
}

// ---------------------------------------------------------------------------------------------
// Reshape / Squeeze / Unsqueeze

#[derive(Debug)]
struct Reshape {
    special_zero: bool,
}

fn build_reshape(ctx: &BuildCtx) -> Result<Box<dyn Op>> {
    Ok(Box::new(Reshape { special_zero: ctx.attr_bool_or("special_zero", false)? }))
}

/// Output shape of Reshape for `pattern` (0 = copy with special_zero, -1 = infer).
fn reshape_dims(in_shape: &[usize], pattern: &[i64], special_zero: bool) -> Result<Vec<usize>> {
    let total: usize = in_shape.iter().product();
    let mut out = Vec::with_capacity(pattern.len());
    let mut infer = None;
    for (i, &p) in pattern.iter().enumerate() {
        match p {
            -1 => {
                if infer.is_some() {
                    return Err(Error::invalid(format!("Reshape pattern {pattern:?} has more than one -1")));
                }
                infer = Some(i);
                out.push(1);
            }
            0 if special_zero => out.push(*in_shape.get(i).ok_or_else(|| {
                Error::invalid(format!("Reshape pattern {pattern:?}: 0 at {i} beyond input rank {}", in_shape.len()))
            })?),
            p if p < 0 => return Err(Error::invalid(format!("Reshape pattern {pattern:?} has {p}"))),
            p => out.push(p as usize),
        }
    }
    if let Some(i) = infer {
        let known = out
            .iter()
            .enumerate()
            .filter(|(k, _)| *k != i)
            .try_fold(1usize, |a, (_, &d)| a.checked_mul(d))
            .ok_or_else(|| Error::invalid(format!("Reshape pattern {pattern:?} overflows")))?;
        if known == 0 && total == 0 {
            // An empty tensor: the inferred dimension is 0 as well.
            out[i] = 0;
        } else if known == 0 || !total.is_multiple_of(known) {
            return Err(Error::mismatch(format!("Reshape {in_shape:?} to pattern {pattern:?}: cannot infer -1")));
        } else {
            out[i] = total / known;
        }
    }
    if out.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) != Some(total) {
        return Err(Error::mismatch(format!("Reshape {in_shape:?} to pattern {pattern:?}: element count differs")));
    }
    Ok(out)
}

impl NewDims for Reshape {
    fn dims(&self, inputs: &[&Tensor]) -> Result<Vec<usize>> {
        let x = input(inputs, 0, "Reshape")?;
        let pattern = input(inputs, 1, "Reshape")?.to_i64_vec();
        reshape_dims(x.shape(), &pattern, self.special_zero)
    }
}

/// Ops whose output is the data with other dims (Reshape, Squeeze, Unsqueeze).
trait NewDims {
    fn dims(&self, inputs: &[&Tensor]) -> Result<Vec<usize>>;
}

impl<T: NewDims + Send + Sync + std::fmt::Debug> Op for T {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let dims = self.dims(inputs)?;
        Ok(vec![inputs[0].reshaped(&dims)?])
    }

    /// A data input that dies here keeps its buffer.
    fn eval_owned(&self, mut inputs: Vec<Arc<Tensor>>) -> Result<Vec<Tensor>> {
        let dims = self.dims(&inputs.iter().map(|a| a.as_ref()).collect::<Vec<_>>())?;
        inputs.truncate(1);
        let mut x = inputs.pop();
        match take_unique(&mut x) {
            Some(t) => Ok(vec![t.into_reshaped(&dims)?]),
            None => Ok(vec![x.ok_or_else(|| Error::internal("reshape lost its input"))?.reshaped(&dims)?]),
        }
    }
}

#[derive(Debug)]
struct Squeeze {
    allow_axis_skip: bool,
}

fn build_squeeze(ctx: &BuildCtx) -> Result<Box<dyn Op>> {
    Ok(Box::new(Squeeze { allow_axis_skip: ctx.attr_bool_or("allow_axis_skip", false)? }))
}

impl NewDims for Squeeze {
    fn dims(&self, inputs: &[&Tensor]) -> Result<Vec<usize>> {
        let x = input(inputs, 0, "Squeeze")?;
        let shape = x.shape();
        let mut drop = vec![false; shape.len()];
        match inputs.get(1) {
            None => shape.iter().enumerate().for_each(|(i, &d)| drop[i] = d == 1),
            Some(axes) => {
                for a in axes.to_i64_vec() {
                    let a = norm_axis(a, shape.len())?;
                    if shape[a] == 1 {
                        drop[a] = true;
                    } else if !self.allow_axis_skip {
                        return Err(Error::mismatch(format!("Squeeze axis {a} of shape {shape:?} is not 1")));
                    }
                }
            }
        }
        Ok(shape.iter().zip(&drop).filter(|(_, &d)| !d).map(|(&s, _)| s).collect())
    }
}

#[derive(Debug)]
struct Unsqueeze;

impl NewDims for Unsqueeze {
    fn dims(&self, inputs: &[&Tensor]) -> Result<Vec<usize>> {
        let x = input(inputs, 0, "Unsqueeze")?;
        let axes = input(inputs, 1, "Unsqueeze")?.to_i64_vec();
        let rank = x.rank() + axes.len();
        let mut new = vec![false; rank];
        for a in axes {
            let a = norm_axis(a, rank)?;
            if new[a] {
                return Err(Error::invalid(format!("Unsqueeze axis {a} repeated")));
            }
            new[a] = true;
        }
        let mut it = x.shape().iter();
        Ok(new.iter().map(|&n| if n { 1 } else { *it.next().unwrap_or(&1) }).collect())
    }
}

// ---------------------------------------------------------------------------------------------
// Transpose / Concat / Split

#[derive(Debug)]
struct Transpose;

impl Op for Transpose {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let x = input(inputs, 0, "Transpose")?;
        let order = input(inputs, 1, "Transpose")?.to_i64_vec();
        let rank = x.rank();
        let perm: Vec<usize> = if order.is_empty() {
            (0..rank).rev().collect()
        } else {
            if order.len() != rank {
                return Err(Error::mismatch(format!("Transpose order {order:?} for rank {rank}")));
            }
            let p = order.iter().map(|&a| norm_axis(a, rank)).collect::<Result<Vec<_>>>()?;
            let mut seen = vec![false; rank];
            for &a in &p {
                if std::mem::replace(&mut seen[a], true) {
                    return Err(Error::invalid(format!("Transpose order {order:?} repeats an axis")));
                }
            }
            p
        };
        if perm.iter().enumerate().all(|(i, &p)| i == p) {
            return Ok(vec![x.clone()]);
        }
        Ok(vec![permute(x, x.shape(), &perm)?])
    }
}

#[derive(Debug)]
struct Concat {
    axis: i64,
}

fn build_concat(ctx: &BuildCtx) -> Result<Box<dyn Op>> {
    Ok(Box::new(Concat { axis: ctx.attr_i64("axis")? }))
}

impl Op for Concat {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let x = input(inputs, 0, "Concat")?;
        let axis = norm_axis(self.axis, x.rank())?;
        Ok(vec![concat_tensors(inputs, axis)?])
    }
}

/// Splits `x` along `axis` into consecutive pieces of the given lengths.
fn split_lengths(x: &Tensor, axis: usize, lengths: &[usize]) -> Result<Vec<Tensor>> {
    let mut outs = Vec::with_capacity(lengths.len());
    let mut start = 0;
    for &len in lengths {
        let sel: Vec<Vec<usize>> = x
            .shape()
            .iter()
            .enumerate()
            .map(|(d, &n)| if d == axis { (start..start + len).collect() } else { (0..n).collect() })
            .collect();
        outs.push(select(x, &sel)?);
        start += len;
    }
    Ok(outs)
}

#[derive(Debug)]
struct Split {
    num_splits: usize,
}

fn build_split(ctx: &BuildCtx) -> Result<Box<dyn Op>> {
    let n = ctx.attr_i64("num_splits")?;
    if n < 1 {
        return Err(ctx.err(format!("num_splits {n} < 1")));
    }
    Ok(Box::new(Split { num_splits: n as usize }))
}

impl Op for Split {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let x = input(inputs, 0, "Split")?;
        let axis_v = input(inputs, 1, "Split")?.to_i64_vec();
        let axis = norm_axis(*axis_v.first().ok_or_else(|| Error::invalid("Split: empty axis"))?, x.rank())?;
        let dim = x.shape()[axis];
        if dim % self.num_splits != 0 {
            return Err(Error::mismatch(format!("Split: axis {axis} of {dim} not divisible by {}", self.num_splits)));
        }
        split_lengths(x, axis, &vec![dim / self.num_splits; self.num_splits])
    }
}

#[derive(Debug)]
struct VariadicSplit;

impl Op for VariadicSplit {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let x = input(inputs, 0, "VariadicSplit")?;
        let axis_v = input(inputs, 1, "VariadicSplit")?.to_i64_vec();
        let axis = norm_axis(*axis_v.first().ok_or_else(|| Error::invalid("VariadicSplit: empty axis"))?, x.rank())?;
        let lens = input(inputs, 2, "VariadicSplit")?.to_i64_vec();
        let dim = x.shape()[axis] as i64;
        let known: i64 = lens.iter().filter(|&&l| l != -1).sum();
        let n_infer = lens.iter().filter(|&&l| l == -1).count();
        if n_infer > 1 || (n_infer == 0 && known != dim) || known > dim {
            return Err(Error::mismatch(format!("VariadicSplit lengths {lens:?} for axis of {dim}")));
        }
        let lens: Vec<usize> =
            lens.iter()
                .map(|&l| {
                    if l == -1 {
                        to_usize(dim - known, "VariadicSplit")
                    } else {
                        to_usize(l, "VariadicSplit lengths")
                    }
                })
                .collect::<Result<_>>()?;
        split_lengths(x, axis, &lens)
    }
}

// ---------------------------------------------------------------------------------------------
// StridedSlice / Slice

#[derive(Debug)]
struct StridedSlice {
    begin_mask: Vec<i64>,
    end_mask: Vec<i64>,
    new_axis_mask: Vec<i64>,
    shrink_axis_mask: Vec<i64>,
    ellipsis_mask: Vec<i64>,
}

fn build_strided_slice(ctx: &BuildCtx) -> Result<Box<dyn Op>> {
    Ok(Box::new(StridedSlice {
        begin_mask: ctx.attr_i64_list_or("begin_mask", vec![])?,
        end_mask: ctx.attr_i64_list_or("end_mask", vec![])?,
        new_axis_mask: ctx.attr_i64_list_or("new_axis_mask", vec![])?,
        shrink_axis_mask: ctx.attr_i64_list_or("shrink_axis_mask", vec![])?,
        ellipsis_mask: ctx.attr_i64_list_or("ellipsis_mask", vec![])?,
    }))
}

fn bit(mask: &[i64], i: usize) -> bool {
    mask.get(i).is_some_and(|&v| v != 0)
}

impl Op for StridedSlice {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let x = input(inputs, 0, "StridedSlice")?;
        let begin = input(inputs, 1, "StridedSlice")?.to_i64_vec();
        let end = input(inputs, 2, "StridedSlice")?.to_i64_vec();
        let stride = match inputs.get(3) {
            Some(s) => s.to_i64_vec(),
            None => vec![1; begin.len()],
        };
        let shape = x.shape();
        let st = strides(shape);
        let rank = shape.len();
        let n = begin.len();
        // Input axes the spec names explicitly (not new axes, not the ellipsis).
        let explicit = (0..n).filter(|&i| !bit(&self.new_axis_mask, i) && !bit(&self.ellipsis_mask, i)).count();
        let mut maps: Vec<Vec<usize>> = vec![];
        let mut out_shape: Vec<usize> = vec![];
        let mut ax = 0usize;
        let mut seen_ellipsis = false;
        let full = |ax: usize| -> Vec<usize> { (0..shape[ax]).map(|i| i * st[ax]).collect() };
        for i in 0..n {
            if bit(&self.ellipsis_mask, i) && !seen_ellipsis {
                seen_ellipsis = true;
                let k = rank.saturating_sub(explicit);
                for _ in 0..k {
                    if ax >= rank {
                        break;
                    }
                    maps.push(full(ax));
                    out_shape.push(shape[ax]);
                    ax += 1;
                }
                continue;
            }
            if bit(&self.new_axis_mask, i) {
                maps.push(vec![0]);
                out_shape.push(1);
                continue;
            }
            if ax >= rank {
                return Err(Error::invalid(format!("StridedSlice: begin {begin:?} exceeds rank {rank}")));
            }
            let dim = shape[ax];
            let s = *stride.get(i).unwrap_or(&1);
            if bit(&self.shrink_axis_mask, i) {
                let b = begin.get(i).copied().unwrap_or(0);
                let b = if b < 0 { b + dim as i64 } else { b };
                if b < 0 || b >= dim as i64 {
                    return Err(Error::invalid(format!("StridedSlice: shrink index {b} out of range for {dim}")));
                }
                maps.push(vec![b as usize * st[ax]]);
            } else {
                let b = (!bit(&self.begin_mask, i)).then(|| begin.get(i).copied()).flatten();
                let e = (!bit(&self.end_mask, i)).then(|| end.get(i).copied()).flatten();
                let sel = slice_indices(dim, b, e, s)?;
                out_shape.push(sel.len());
                maps.push(sel.iter().map(|&k| k * st[ax]).collect());
            }
            ax += 1;
        }
        while ax < rank {
            maps.push(full(ax));
            out_shape.push(shape[ax]);
            ax += 1;
        }
        Ok(vec![take_maps(x, &maps, &out_shape, None)?])
    }
}

#[derive(Debug)]
struct Slice;

impl Op for Slice {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let x = input(inputs, 0, "Slice")?;
        let start = input(inputs, 1, "Slice")?.to_i64_vec();
        let stop = input(inputs, 2, "Slice")?.to_i64_vec();
        let step = input(inputs, 3, "Slice")?.to_i64_vec();
        let rank = x.rank();
        let axes: Vec<usize> = match inputs.get(4) {
            Some(a) => a.to_i64_vec().iter().map(|&a| norm_axis(a, rank)).collect::<Result<_>>()?,
            None => (0..start.len()).collect(),
        };
        if start.len() != axes.len() || stop.len() != axes.len() || step.len() != axes.len() {
            return Err(Error::mismatch(format!(
                "Slice: start {start:?}, stop {stop:?}, step {step:?}, axes {axes:?} differ in length"
            )));
        }
        let mut sel: Vec<Vec<usize>> = x.shape().iter().map(|&n| (0..n).collect()).collect();
        for (k, &a) in axes.iter().enumerate() {
            sel[a] = slice_indices(x.shape()[a], Some(start[k]), Some(stop[k]), step[k])?;
        }
        Ok(vec![select(x, &sel)?])
    }
}

// ---------------------------------------------------------------------------------------------
// Gather family

#[derive(Debug)]
struct Gather {
    batch_dims: i64,
}

fn build_gather(ctx: &BuildCtx) -> Result<Box<dyn Op>> {
    Ok(Box::new(Gather { batch_dims: ctx.attr_i64_or("batch_dims", 0)? }))
}

/// Resolves a possibly negative index into `0..dim`, or None when out of range.
fn resolve(i: i64, dim: usize) -> Option<usize> {
    let d = dim as i64;
    let j = if i < 0 { i + d } else { i };
    (0..d).contains(&j).then_some(j as usize)
}

impl Op for Gather {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let data = input(inputs, 0, "Gather")?;
        let ind_t = input(inputs, 1, "Gather")?;
        let axis_v = input(inputs, 2, "Gather")?.to_i64_vec();
        let ds = data.shape();
        let is = ind_t.shape();
        let axis = norm_axis(*axis_v.first().ok_or_else(|| Error::invalid("Gather: empty axis"))?, ds.len())?;
        let b = if self.batch_dims < 0 { self.batch_dims + is.len() as i64 } else { self.batch_dims };
        let b = to_usize(b, "Gather batch_dims")?;
        if b > axis || b > is.len() || ds[..b] != is[..b] {
            return Err(Error::mismatch(format!(
                "Gather: batch_dims {b} for data {ds:?}, indices {is:?}, axis {axis}"
            )));
        }
        let ind = ind_t.to_i64_vec();
        let n_batch: usize = ds[..b].iter().product();
        let n_outer: usize = ds[b..axis].iter().product();
        let n_idx: usize = is[b..].iter().product();
        let dim = ds[axis];
        let n_inner: usize = ds[axis + 1..].iter().product();
        let mut idx = Vec::with_capacity(n_batch * n_outer * n_idx * n_inner);
        let mut oob = false;
        for bt in 0..n_batch {
            for o in 0..n_outer {
                let base = (bt * n_outer + o) * dim;
                for j in 0..n_idx {
                    match resolve(ind[bt * n_idx + j], dim) {
                        Some(k) => idx.extend((base + k) * n_inner..(base + k + 1) * n_inner),
                        None => {
                            // OpenVINO fills out-of-range positions with zeros.
                            oob = true;
                            idx.extend(std::iter::repeat_n(FILL, n_inner));
                        }
                    }
                }
            }
        }
        let mut shape: Vec<usize> = ds[..axis].to_vec();
        shape.extend_from_slice(&is[b..]);
        shape.extend_from_slice(&ds[axis + 1..]);
        let zero = if oob { Some(Tensor::zeros(data.element_type(), &[1])?) } else { None };
        Ok(vec![take(data, &idx, &shape, zero.as_ref())?])
    }
}

#[derive(Debug)]
struct GatherElements {
    axis: i64,
}

fn build_gather_elements(ctx: &BuildCtx) -> Result<Box<dyn Op>> {
    Ok(Box::new(GatherElements { axis: ctx.attr_i64("axis")? }))
}

impl Op for GatherElements {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let data = input(inputs, 0, "GatherElements")?;
        let ind_t = input(inputs, 1, "GatherElements")?;
        let ds = data.shape();
        let is = ind_t.shape().to_vec();
        let axis = norm_axis(self.axis, ds.len())?;
        if is.len() != ds.len() {
            return Err(Error::mismatch(format!("GatherElements: data {ds:?} and indices {is:?} differ in rank")));
        }
        let dst = strides(ds);
        let ind = ind_t.to_i64_vec();
        let mut idx = Vec::with_capacity(ind.len());
        let mut coord = vec![0usize; is.len()];
        for &v in &ind {
            let k = resolve(v, ds[axis])
                .ok_or_else(|| Error::invalid(format!("GatherElements: index {v} out of range for {}", ds[axis])))?;
            let mut flat = 0;
            for d in 0..is.len() {
                let c = if d == axis { k } else { coord[d] };
                if c >= ds[d] {
                    return Err(Error::mismatch(format!("GatherElements: indices {is:?} exceed data {ds:?}")));
                }
                flat += c * dst[d];
            }
            idx.push(flat);
            for d in (0..is.len()).rev() {
                coord[d] += 1;
                if coord[d] < is[d] {
                    break;
                }
                coord[d] = 0;
            }
        }
        Ok(vec![take(data, &idx, &is, None)?])
    }
}

#[derive(Debug)]
struct GatherNd {
    batch_dims: usize,
    /// opset5 flattens the batch dimensions of the output into one.
    flatten_batch: bool,
}

fn build_gather_nd(ctx: &BuildCtx) -> Result<Box<dyn Op>> {
    let b = ctx.attr_i64_or("batch_dims", 0)?;
    Ok(Box::new(GatherNd {
        batch_dims: usize::try_from(b).map_err(|_| ctx.err("negative batch_dims"))?,
        flatten_batch: ctx.node.version == "opset5",
    }))
}

impl Op for GatherNd {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let data = input(inputs, 0, "GatherND")?;
        let ind_t = input(inputs, 1, "GatherND")?;
        let ds = data.shape();
        let is = ind_t.shape();
        let b = self.batch_dims;
        let k = *is.last().ok_or_else(|| Error::invalid("GatherND: scalar indices"))?;
        if is.len() < b + 1 || ds.len() < b + k || ds[..b] != is[..b] {
            return Err(Error::mismatch(format!("GatherND: data {ds:?}, indices {is:?}, batch_dims {b}")));
        }
        let dst = strides(ds);
        let n_batch: usize = ds[..b].iter().product();
        let n_tuples: usize = is[b..is.len() - 1].iter().product();
        let slice_len: usize = ds[b + k..].iter().product();
        let batch_stride: usize = ds[b..].iter().product();
        let ind = ind_t.to_i64_vec();
        let mut idx = Vec::with_capacity(n_batch * n_tuples * slice_len);
        for bt in 0..n_batch {
            for t in 0..n_tuples {
                let tuple = &ind[(bt * n_tuples + t) * k..(bt * n_tuples + t + 1) * k];
                let mut flat = bt * batch_stride;
                for (j, &v) in tuple.iter().enumerate() {
                    let c = resolve(v, ds[b + j])
                        .ok_or_else(|| Error::invalid(format!("GatherND: index {v} out of range for {}", ds[b + j])))?;
                    flat += c * dst[b + j];
                }
                idx.extend(flat..flat + slice_len);
            }
        }
        let mut shape: Vec<usize> = if self.flatten_batch && b > 0 { vec![n_batch] } else { is[..b].to_vec() };
        shape.extend_from_slice(&is[b..is.len() - 1]);
        shape.extend_from_slice(&ds[b + k..]);
        Ok(vec![take(data, &idx, &shape, None)?])
    }
}

// ---------------------------------------------------------------------------------------------
// ShapeOf / Broadcast / Tile / Pad / Range

#[derive(Debug)]
struct ShapeOf {
    out: ElementType,
}

fn build_shape_of(ctx: &BuildCtx) -> Result<Box<dyn Op>> {
    let out = if ctx.attr("output_type").is_some() { ctx.attr_type("output_type")? } else { ElementType::I64 };
    if !matches!(out, ElementType::I64 | ElementType::I32) {
        return Err(ctx.err(format!("output_type {out} is not i32 or i64")));
    }
    Ok(Box::new(ShapeOf { out }))
}

impl Op for ShapeOf {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let x = input(inputs, 0, "ShapeOf")?;
        let v: Vec<i64> = x.shape().iter().map(|&d| d as i64).collect();
        let n = v.len();
        Ok(vec![match self.out {
            ElementType::I32 => Tensor::I32(arr(&[n], v.iter().map(|&d| d as i32).collect())?),
            _ => Tensor::i64_from_vec(&[n], v)?,
        }])
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum BroadcastMode {
    Numpy,
    Explicit,
    Bidirectional,
}

#[derive(Debug)]
struct Broadcast {
    mode: BroadcastMode,
}

fn build_broadcast(ctx: &BuildCtx) -> Result<Box<dyn Op>> {
    let mode = match ctx.attr_str_or("mode", "numpy").to_ascii_lowercase().as_str() {
        "numpy" => BroadcastMode::Numpy,
        "explicit" => BroadcastMode::Explicit,
        "bidirectional" => BroadcastMode::Bidirectional,
        m => return Err(ctx.err(format!("broadcast mode '{m}' is not supported"))),
    };
    Ok(Box::new(Broadcast { mode }))
}

/// Broadcasts `x` to `out` where output axis d reads input axis `src[d]` (None: new axis).
fn broadcast_to(x: &Tensor, out: &[usize], src: &[Option<usize>]) -> Result<Tensor> {
    let st = strides(x.shape());
    let mut maps = Vec::with_capacity(out.len());
    for (d, &n) in out.iter().enumerate() {
        maps.push(match src[d] {
            Some(a) if x.shape()[a] == n => (0..n).map(|i| i * st[a]).collect(),
            Some(a) if x.shape()[a] == 1 => vec![0; n],
            Some(a) => {
                return Err(Error::mismatch(format!(
                    "Broadcast: input {:?} axis {a} cannot broadcast to {out:?}",
                    x.shape()
                )))
            }
            None => vec![0; n],
        });
    }
    take_maps(x, &maps, out, None)
}

impl Op for Broadcast {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let x = input(inputs, 0, "Broadcast")?;
        let target: Vec<usize> = input(inputs, 1, "Broadcast")?
            .to_i64_vec()
            .into_iter()
            .map(|v| to_usize(v, "Broadcast target_shape"))
            .collect::<Result<_>>()?;
        let xs = x.shape();
        match self.mode {
            BroadcastMode::Explicit => {
                let mapping = input(inputs, 2, "Broadcast")?.to_i64_vec();
                if mapping.len() != xs.len() {
                    return Err(Error::mismatch(format!("Broadcast: axes_mapping {mapping:?} for input {xs:?}")));
                }
                let mut src = vec![None; target.len()];
                for (i, &m) in mapping.iter().enumerate() {
                    let m = to_usize(m, "Broadcast axes_mapping")?;
                    *src.get_mut(m).ok_or_else(|| {
                        Error::invalid(format!("Broadcast: axes_mapping {mapping:?} beyond target {target:?}"))
                    })? = Some(i);
                }
                Ok(vec![broadcast_to(x, &target, &src)?])
            }
            BroadcastMode::Numpy | BroadcastMode::Bidirectional => {
                let rank = target.len().max(xs.len());
                if self.mode == BroadcastMode::Numpy && xs.len() > target.len() {
                    return Err(Error::mismatch(format!("Broadcast: input {xs:?} has higher rank than {target:?}")));
                }
                let mut out = vec![0; rank];
                let mut src = vec![None; rank];
                for d in 0..rank {
                    let t = (d + target.len()).checked_sub(rank).map(|i| target[i]).unwrap_or(1);
                    let xi = (d + xs.len()).checked_sub(rank);
                    let xd = xi.map(|i| xs[i]).unwrap_or(1);
                    src[d] = xi;
                    out[d] = if self.mode == BroadcastMode::Bidirectional {
                        if t == 1 || t == xd {
                            xd
                        } else if xd == 1 {
                            t
                        } else {
                            return Err(Error::mismatch(format!("Broadcast: {xs:?} and {target:?} are incompatible")));
                        }
                    } else {
                        t
                    };
                }
                Ok(vec![broadcast_to(x, &out, &src)?])
            }
        }
    }
}

#[derive(Debug)]
struct Tile;

impl Op for Tile {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let x = input(inputs, 0, "Tile")?;
        let reps = input(inputs, 1, "Tile")?.to_i64_vec();
        let rank = reps.len().max(x.rank());
        let mut shape = vec![1usize; rank - x.rank()];
        shape.extend_from_slice(x.shape());
        let mut r = vec![1i64; rank - reps.len()];
        r.extend_from_slice(&reps);
        let st = strides(&shape);
        let mut maps = vec![];
        let mut out = vec![];
        for d in 0..rank {
            let n = shape[d] * to_usize(r[d], "Tile repeats")?;
            maps.push((0..n).map(|i| (i % shape[d].max(1)) * st[d]).collect());
            out.push(n);
        }
        Ok(vec![take_maps(x, &maps, &out, None)?])
    }
}

#[derive(Debug, Clone, Copy)]
enum PadMode {
    Constant,
    Edge,
    Reflect,
    Symmetric,
}

#[derive(Debug)]
struct Pad {
    mode: PadMode,
}

fn build_pad(ctx: &BuildCtx) -> Result<Box<dyn Op>> {
    let mode = match ctx.attr_str_or("pad_mode", "constant").to_ascii_lowercase().as_str() {
        "constant" => PadMode::Constant,
        "edge" => PadMode::Edge,
        "reflect" => PadMode::Reflect,
        "symmetric" => PadMode::Symmetric,
        m => return Err(ctx.err(format!("pad_mode '{m}' is not supported"))),
    };
    Ok(Box::new(Pad { mode }))
}

impl Op for Pad {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let x = input(inputs, 0, "Pad")?;
        let pb = input(inputs, 1, "Pad")?.to_i64_vec();
        let pe = input(inputs, 2, "Pad")?.to_i64_vec();
        let xs = x.shape();
        if pb.len() != xs.len() || pe.len() != xs.len() {
            return Err(Error::mismatch(format!("Pad: pads {pb:?}/{pe:?} for input {xs:?}")));
        }
        let st = strides(xs);
        let mut maps = vec![];
        let mut out = vec![];
        for d in 0..xs.len() {
            let dim = xs[d] as i64;
            let n = dim + pb[d] + pe[d];
            let n = to_usize(n, "Pad output dimension")?;
            let mut m = Vec::with_capacity(n);
            for o in 0..n as i64 {
                let c = o - pb[d];
                let src = if (0..dim).contains(&c) {
                    Some(c)
                } else {
                    match self.mode {
                        PadMode::Constant => None,
                        PadMode::Edge => Some(c.clamp(0, dim - 1)),
                        PadMode::Reflect => Some(if c < 0 { -c } else { 2 * (dim - 1) - c }),
                        PadMode::Symmetric => Some(if c < 0 { -c - 1 } else { 2 * dim - 1 - c }),
                    }
                };
                m.push(match src {
                    None => FILL,
                    Some(c) if (0..dim).contains(&c) => c as usize * st[d],
                    Some(_) => {
                        return Err(Error::invalid(format!("Pad: pads {pb:?}/{pe:?} too large for input {xs:?}")))
                    }
                });
            }
            maps.push(m);
            out.push(n);
        }
        let fill = match inputs.get(3) {
            Some(v) => v.convert(x.element_type())?,
            None => Tensor::zeros(x.element_type(), &[1])?,
        };
        Ok(vec![take_maps(x, &maps, &out, Some(&fill))?])
    }
}

#[derive(Debug)]
struct Range {
    /// opset4's output_type; opset1 takes the type of `start`.
    out: Option<ElementType>,
}

fn build_range(ctx: &BuildCtx) -> Result<Box<dyn Op>> {
    let out = if ctx.node.version == "opset4" { Some(ctx.attr_type("output_type")?) } else { None };
    Ok(Box::new(Range { out }))
}

impl Op for Range {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let scalar = |k: usize| -> Result<f64> {
            input(inputs, k, "Range")?
                .to_f64_vec()
                .first()
                .copied()
                .ok_or_else(|| Error::invalid(format!("Range: input {k} is empty")))
        };
        let et = match self.out {
            Some(e) => e,
            None => input(inputs, 0, "Range")?.element_type(),
        };
        // Integer outputs from float bounds: the count and values come from the float bounds, each
        // value rounded half to even (as OpenVINO's CPU plugin does; checked on 2026.4).
        let (start, stop, step) = (scalar(0)?, scalar(1)?, scalar(2)?);
        if step == 0.0 {
            return Err(Error::invalid("Range: step is 0"));
        }
        let n = ((stop - start) / step).ceil();
        let n = if n.is_finite() && n > 0.0 { n as usize } else { 0 };
        let v: Vec<f64> = (0..n).map(|i| start + i as f64 * step).collect();
        Ok(vec![Tensor::from_f64_vec(et, &[n], v)?])
    }
}

// ---------------------------------------------------------------------------------------------
// DepthToSpace / SpaceToDepth / ShuffleChannels

fn blocks_first(ctx: &BuildCtx) -> Result<bool> {
    match ctx.attr_req("mode")?.to_ascii_lowercase().as_str() {
        "blocks_first" => Ok(true),
        "depth_first" => Ok(false),
        m => Err(ctx.err(format!("mode '{m}' is not blocks_first or depth_first"))),
    }
}

#[derive(Debug)]
struct DepthToSpace {
    block: usize,
    blocks_first: bool,
}

fn build_depth_to_space(ctx: &BuildCtx) -> Result<Box<dyn Op>> {
    let block = to_usize(ctx.attr_i64_or("block_size", 1)?, "block_size")?.max(1);
    Ok(Box::new(DepthToSpace { block, blocks_first: blocks_first(ctx)? }))
}

impl Op for DepthToSpace {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let x = input(inputs, 0, "DepthToSpace")?;
        let xs = x.shape();
        if xs.len() < 3 {
            return Err(Error::mismatch(format!("DepthToSpace: input {xs:?} has rank < 3")));
        }
        let k = xs.len() - 2;
        let bs = self.block;
        let div = bs.pow(k as u32);
        if xs[1] % div != 0 {
            return Err(Error::mismatch(format!("DepthToSpace: channels {} not divisible by {div}", xs[1])));
        }
        let c = xs[1] / div;
        let spatial = &xs[2..];
        // View as [N, (bs.. , C) or (C, bs..), D1..Dk] and move each block next to its dim.
        let mut view = vec![xs[0]];
        let mut perm = vec![0];
        if self.blocks_first {
            view.extend(std::iter::repeat_n(bs, k));
            view.push(c);
            perm.push(k + 1);
            for i in 0..k {
                perm.push(k + 2 + i);
                perm.push(1 + i);
            }
        } else {
            view.push(c);
            view.extend(std::iter::repeat_n(bs, k));
            perm.push(1);
            for i in 0..k {
                perm.push(k + 2 + i);
                perm.push(2 + i);
            }
        }
        view.extend_from_slice(spatial);
        let t = permute(x, &view, &perm)?;
        let mut out = vec![xs[0], c];
        out.extend(spatial.iter().map(|&d| d * bs));
        Ok(vec![t.reshaped(&out)?])
    }
}

#[derive(Debug)]
struct SpaceToDepth {
    block: usize,
    blocks_first: bool,
}

fn build_space_to_depth(ctx: &BuildCtx) -> Result<Box<dyn Op>> {
    let block = to_usize(ctx.attr_i64_or("block_size", 1)?, "block_size")?.max(1);
    Ok(Box::new(SpaceToDepth { block, blocks_first: blocks_first(ctx)? }))
}

impl Op for SpaceToDepth {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let x = input(inputs, 0, "SpaceToDepth")?;
        let xs = x.shape();
        if xs.len() < 3 {
            return Err(Error::mismatch(format!("SpaceToDepth: input {xs:?} has rank < 3")));
        }
        let k = xs.len() - 2;
        let bs = self.block;
        if xs[2..].iter().any(|d| d % bs != 0) {
            return Err(Error::mismatch(format!("SpaceToDepth: spatial dims of {xs:?} not divisible by {bs}")));
        }
        // View as [N, C, D1/bs, bs, D2/bs, bs, ...].
        let mut view = vec![xs[0], xs[1]];
        for &d in &xs[2..] {
            view.push(d / bs);
            view.push(bs);
        }
        let blocks: Vec<usize> = (0..k).map(|i| 3 + 2 * i).collect();
        let spatial: Vec<usize> = (0..k).map(|i| 2 + 2 * i).collect();
        let mut perm = vec![0];
        if self.blocks_first {
            perm.extend(&blocks);
            perm.push(1);
        } else {
            perm.push(1);
            perm.extend(&blocks);
        }
        perm.extend(&spatial);
        let t = permute(x, &view, &perm)?;
        let mut out = vec![xs[0], xs[1] * bs.pow(k as u32)];
        out.extend(xs[2..].iter().map(|&d| d / bs));
        Ok(vec![t.reshaped(&out)?])
    }
}

#[derive(Debug)]
struct ShuffleChannels {
    axis: i64,
    group: usize,
}

fn build_shuffle_channels(ctx: &BuildCtx) -> Result<Box<dyn Op>> {
    Ok(Box::new(ShuffleChannels {
        axis: ctx.attr_i64_or("axis", 1)?,
        group: to_usize(ctx.attr_i64_or("group", 1)?, "group")?.max(1),
    }))
}

impl Op for ShuffleChannels {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let x = input(inputs, 0, "ShuffleChannels")?;
        let xs = x.shape();
        let axis = norm_axis(self.axis, xs.len())?;
        let c = xs[axis];
        if c % self.group != 0 {
            return Err(Error::mismatch(format!("ShuffleChannels: {c} channels not divisible by {}", self.group)));
        }
        let outer: usize = xs[..axis].iter().product();
        let inner: usize = xs[axis + 1..].iter().product();
        let t = permute(x, &[outer, self.group, c / self.group, inner], &[0, 2, 1, 3])?;
        Ok(vec![t.reshaped(xs)?])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::f32_from_vec(shape, v.to_vec()).unwrap()
    }
    fn iota(shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        f(shape, &(0..n).map(|i| i as f32).collect::<Vec<_>>())
    }
    fn i(v: &[i64]) -> Tensor {
        Tensor::i64_from_vec(&[v.len()], v.to_vec()).unwrap()
    }
    fn vals(t: &Tensor) -> Vec<f64> {
        t.to_f64_vec()
    }
    fn run1(op: &dyn Op, ins: &[&Tensor]) -> Tensor {
        op.eval(ins).unwrap().remove(0)
    }

    #[test]
    fn reshape_special_zero_and_infer() {
        let x = iota(&[2, 3, 4]);
        let y = run1(&Reshape { special_zero: true }, &[&x, &i(&[0, -1])]);
        assert_eq!(y.shape(), &[2, 12]);
        let y = run1(&Reshape { special_zero: false }, &[&x, &i(&[4, -1])]);
        assert_eq!(y.shape(), &[4, 6]);
        assert!(Reshape { special_zero: false }.eval(&[&x, &i(&[0, -1])]).is_err());
        assert!(Reshape { special_zero: false }.eval(&[&x, &i(&[5, -1])]).is_err());
        let empty = iota(&[0, 4]);
        let y = run1(&Reshape { special_zero: false }, &[&empty, &i(&[-1, 0, 2])]);
        assert_eq!(y.shape(), &[0, 0, 2]);
    }

    #[test]
    fn squeeze_unsqueeze() {
        let x = iota(&[1, 3, 1, 2]);
        assert_eq!(run1(&Squeeze { allow_axis_skip: false }, &[&x]).shape(), &[3, 2]);
        assert_eq!(run1(&Squeeze { allow_axis_skip: false }, &[&x, &i(&[-2])]).shape(), &[1, 3, 2]);
        assert!(Squeeze { allow_axis_skip: false }.eval(&[&x, &i(&[1])]).is_err());
        assert_eq!(run1(&Squeeze { allow_axis_skip: true }, &[&x, &i(&[1, 0])]).shape(), &[3, 1, 2]);
        let y = iota(&[3, 2]);
        assert_eq!(run1(&Unsqueeze, &[&y, &i(&[0, -1])]).shape(), &[1, 3, 2, 1]);
        assert_eq!(run1(&Unsqueeze, &[&y, &i(&[1])]).shape(), &[3, 1, 2]);
    }

    #[test]
    fn transpose_permutes_and_reverses() {
        let x = iota(&[2, 3]);
        let y = run1(&Transpose, &[&x, &i(&[1, 0])]);
        assert_eq!(y.shape(), &[3, 2]);
        assert_eq!(vals(&y), vec![0., 3., 1., 4., 2., 5.]);
        let x = iota(&[2, 3, 4]);
        let y = run1(&Transpose, &[&x, &i(&[])]);
        assert_eq!(y.shape(), &[4, 3, 2]);
        let y = run1(&Transpose, &[&x, &i(&[0, 2, 1])]);
        // y[1][3][2] = x[1][2][3] = 12 + 8 + 3
        assert_eq!(vals(&y)[12 + 3 * 3 + 2], 23.0);
    }

    #[test]
    fn concat_negative_axis_and_type_mismatch() {
        let a = iota(&[2, 1]);
        let b = f(&[2, 2], &[10., 11., 12., 13.]);
        let y = run1(&Concat { axis: -1 }, &[&a, &b]);
        assert_eq!(y.shape(), &[2, 3]);
        assert_eq!(vals(&y), vec![0., 10., 11., 1., 12., 13.]);
        let c = i(&[1, 2]);
        assert!(Concat { axis: 0 }.eval(&[&i(&[0]), &c]).is_ok());
        assert!(Concat { axis: 0 }.eval(&[&a, &c]).is_err());
    }

    #[test]
    fn split_and_variadic_split() {
        let x = iota(&[2, 6]);
        let outs = Split { num_splits: 3 }.eval(&[&x, &i(&[-1])]).unwrap();
        assert_eq!(outs.len(), 3);
        assert_eq!(vals(&outs[1]), vec![2., 3., 8., 9.]);
        assert!(Split { num_splits: 4 }.eval(&[&x, &i(&[1])]).is_err());
        let outs = VariadicSplit.eval(&[&x, &i(&[1]), &i(&[1, -1, 2])]).unwrap();
        assert_eq!(outs[1].shape(), &[2, 3]);
        assert_eq!(vals(&outs[2]), vec![4., 5., 10., 11.]);
    }

    fn ss(b: &[i64], e: &[i64], n: &[i64], s: &[i64], el: &[i64]) -> StridedSlice {
        StridedSlice {
            begin_mask: b.to_vec(),
            end_mask: e.to_vec(),
            new_axis_mask: n.to_vec(),
            shrink_axis_mask: s.to_vec(),
            ellipsis_mask: el.to_vec(),
        }
    }

    #[test]
    fn strided_slice_masks() {
        let x = iota(&[3, 4]);
        // x[1:, ::-2]
        let y = run1(&ss(&[0, 1], &[1, 1], &[], &[], &[]), &[&x, &i(&[1, 0]), &i(&[0, 0]), &i(&[1, -2])]);
        assert_eq!(y.shape(), &[2, 2]);
        assert_eq!(vals(&y), vec![7., 5., 11., 9.]);
        // x[-1, None, 1:3] → shape [1, 2]
        let y = run1(
            &ss(&[0, 0, 0], &[0, 0, 0], &[0, 1, 0], &[1, 0, 0], &[]),
            &[&x, &i(&[-1, 0, 1]), &i(&[0, 0, 3]), &i(&[1, 1, 1])],
        );
        assert_eq!(y.shape(), &[1, 2]);
        assert_eq!(vals(&y), vec![9., 10.]);
        // x3[..., 1] on [2,3,4] → [2,3]
        let x3 = iota(&[2, 3, 4]);
        let y = run1(&ss(&[], &[], &[], &[0, 1], &[1, 0]), &[&x3, &i(&[0, 1]), &i(&[0, 2]), &i(&[1, 1])]);
        assert_eq!(y.shape(), &[2, 3]);
        assert_eq!(vals(&y), vec![1., 5., 9., 13., 17., 21.]);
        // Out-of-range end is clamped.
        let y = run1(&ss(&[], &[], &[], &[], &[]), &[&x, &i(&[0, 2]), &i(&[100, 100])]);
        assert_eq!(y.shape(), &[3, 2]);
    }

    #[test]
    fn slice_with_axes_and_negative_step() {
        let x = iota(&[3, 4]);
        let y = run1(&Slice, &[&x, &i(&[-1]), &i(&[i64::MIN]), &i(&[-2]), &i(&[-1])]);
        assert_eq!(y.shape(), &[3, 2]);
        assert_eq!(vals(&y), vec![3., 1., 7., 5., 11., 9.]);
        let y = run1(&Slice, &[&x, &i(&[1, 1]), &i(&[i64::MAX, 3]), &i(&[1, 1])]);
        assert_eq!(vals(&y), vec![5., 6., 9., 10.]);
    }

    #[test]
    fn gather_axis_batch_dims_negative_indices() {
        let table = iota(&[4, 2]);
        let ids = Tensor::i64_from_vec(&[2, 2], vec![0, 3, -1, 1]).unwrap();
        let y = run1(&Gather { batch_dims: 0 }, &[&table, &ids, &i(&[0])]);
        assert_eq!(y.shape(), &[2, 2, 2]);
        assert_eq!(vals(&y), vec![0., 1., 6., 7., 6., 7., 2., 3.]);
        // Scalar index on axis 1 drops the axis; i32 data stays i32.
        let x = Tensor::I32(ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![1, 2, 3, 4, 5, 6]).unwrap());
        let idx = Tensor::I64(ArrayD::from_elem(IxDyn(&[]), 2));
        let y = run1(&Gather { batch_dims: 0 }, &[&x, &idx, &i(&[1])]);
        assert_eq!(y, Tensor::I32(ArrayD::from_shape_vec(IxDyn(&[2]), vec![3, 6]).unwrap()));
        // batch_dims = 1: per row its own index.
        let idx = Tensor::i64_from_vec(&[2, 1], vec![2, 0]).unwrap();
        let y = run1(&Gather { batch_dims: -1 }, &[&x, &idx, &i(&[1])]);
        assert_eq!(y.shape(), &[2, 1]);
        assert_eq!(vals(&y), vec![3., 4.]);
        // Out of range → zeros.
        let y = run1(&Gather { batch_dims: 0 }, &[&table, &i(&[9]), &i(&[0])]);
        assert_eq!(vals(&y), vec![0., 0.]);
    }

    #[test]
    fn gather_elements_and_nd() {
        let x = iota(&[2, 2]);
        let idx = Tensor::i64_from_vec(&[2, 2], vec![0, 0, 1, 0]).unwrap();
        let y = run1(&GatherElements { axis: 1 }, &[&x, &idx]);
        assert_eq!(vals(&y), vec![0., 0., 3., 2.]);
        let y = run1(&GatherElements { axis: 0 }, &[&x, &idx]);
        assert_eq!(vals(&y), vec![0., 1., 2., 1.]);
        let idx = Tensor::i64_from_vec(&[2, 2], vec![0, 1, 1, 0]).unwrap();
        let y = run1(&GatherNd { batch_dims: 0, flatten_batch: false }, &[&x, &idx]);
        assert_eq!(vals(&y), vec![1., 2.]);
        let idx = Tensor::i64_from_vec(&[2, 1], vec![1, 0]).unwrap();
        let y = run1(&GatherNd { batch_dims: 0, flatten_batch: false }, &[&x, &idx]);
        assert_eq!(y.shape(), &[2, 2]);
        assert_eq!(vals(&y), vec![2., 3., 0., 1.]);
        let y = run1(&GatherNd { batch_dims: 1, flatten_batch: true }, &[&x, &idx]);
        assert_eq!(y.shape(), &[2]);
        assert_eq!(vals(&y), vec![1., 2.]);
    }

    #[test]
    fn shape_of_types() {
        let x = iota(&[2, 3]);
        assert_eq!(run1(&ShapeOf { out: ElementType::I64 }, &[&x]), i(&[2, 3]));
        let y = run1(&ShapeOf { out: ElementType::I32 }, &[&x]);
        assert_eq!(y.element_type(), ElementType::I32);
    }

    #[test]
    fn broadcast_modes() {
        let x = f(&[3, 1], &[1., 2., 3.]);
        let y = run1(&Broadcast { mode: BroadcastMode::Numpy }, &[&x, &i(&[2, 3, 2])]);
        assert_eq!(y.shape(), &[2, 3, 2]);
        assert_eq!(vals(&y)[..6], [1., 1., 2., 2., 3., 3.]);
        let y = run1(&Broadcast { mode: BroadcastMode::Bidirectional }, &[&x, &i(&[1, 4])]);
        assert_eq!(y.shape(), &[3, 4]);
        let y = run1(&Broadcast { mode: BroadcastMode::Bidirectional }, &[&x, &i(&[1])]);
        assert_eq!(y.shape(), &[3, 1]);
        let v = f(&[3], &[1., 2., 3.]);
        let y = run1(&Broadcast { mode: BroadcastMode::Explicit }, &[&v, &i(&[3, 2]), &i(&[0])]);
        assert_eq!(vals(&y), vec![1., 1., 2., 2., 3., 3.]);
        assert!(Broadcast { mode: BroadcastMode::Numpy }.eval(&[&x, &i(&[2, 2])]).is_err());
    }

    #[test]
    fn tile_repeats() {
        let x = f(&[2], &[1., 2.]);
        let y = run1(&Tile, &[&x, &i(&[2, 2])]);
        assert_eq!(y.shape(), &[2, 4]);
        assert_eq!(vals(&y), vec![1., 2., 1., 2., 1., 2., 1., 2.]);
    }

    #[test]
    fn pad_modes_and_negative_pads() {
        let x = f(&[3], &[1., 2., 3.]);
        let p = |m: PadMode, b: i64, e: i64| vals(&run1(&Pad { mode: m }, &[&x, &i(&[b]), &i(&[e])]));
        assert_eq!(p(PadMode::Constant, 1, 2), vec![0., 1., 2., 3., 0., 0.]);
        assert_eq!(p(PadMode::Edge, 2, 1), vec![1., 1., 1., 2., 3., 3.]);
        assert_eq!(p(PadMode::Reflect, 2, 2), vec![3., 2., 1., 2., 3., 2., 1.]);
        assert_eq!(p(PadMode::Symmetric, 2, 2), vec![2., 1., 1., 2., 3., 3., 2.]);
        assert_eq!(p(PadMode::Constant, -1, 1), vec![2., 3., 0.]);
        let y = run1(&Pad { mode: PadMode::Constant }, &[&x, &i(&[1]), &i(&[0]), &Tensor::scalar_f32(9.)]);
        assert_eq!(vals(&y), vec![9., 1., 2., 3.]);
        assert!(Pad { mode: PadMode::Reflect }.eval(&[&x, &i(&[3]), &i(&[0])]).is_err());
    }

    #[test]
    fn range_types() {
        let s = |v: f32| Tensor::scalar_f32(v);
        let y = run1(&Range { out: None }, &[&s(0.), &s(1.), &s(0.25)]);
        assert_eq!(vals(&y), vec![0., 0.25, 0.5, 0.75]);
        let y = run1(&Range { out: Some(ElementType::I64) }, &[&i(&[5]), &i(&[0]), &i(&[-2])]);
        assert_eq!(y, i(&[5, 3, 1]));
        let y = run1(&Range { out: Some(ElementType::I32) }, &[&i(&[3]), &i(&[0]), &i(&[1])]);
        assert_eq!(y.len(), 0);
    }

    #[test]
    fn depth_space_round_trip_and_shuffle() {
        let x = iota(&[1, 4, 1, 1]);
        let y = run1(&DepthToSpace { block: 2, blocks_first: true }, &[&x]);
        assert_eq!(y.shape(), &[1, 1, 2, 2]);
        assert_eq!(vals(&y), vec![0., 1., 2., 3.]);
        let x = iota(&[1, 8, 2, 3]);
        for bf in [true, false] {
            let y = run1(&DepthToSpace { block: 2, blocks_first: bf }, &[&x]);
            assert_eq!(y.shape(), &[1, 2, 4, 6]);
            let z = run1(&SpaceToDepth { block: 2, blocks_first: bf }, &[&y]);
            assert_eq!(z, x);
        }
        // depth_first with C'=2: channel c*4 + by*2 + bx → output channel c.
        let x = iota(&[1, 8, 1, 1]);
        let y = run1(&DepthToSpace { block: 2, blocks_first: false }, &[&x]);
        assert_eq!(vals(&y), vec![0., 1., 2., 3., 4., 5., 6., 7.]);
        let y = run1(&DepthToSpace { block: 2, blocks_first: true }, &[&x]);
        assert_eq!(vals(&y), vec![0., 2., 4., 6., 1., 3., 5., 7.]);
        let x = iota(&[1, 6]);
        let y = run1(&ShuffleChannels { axis: 1, group: 2 }, &[&x]);
        assert_eq!(vals(&y), vec![0., 3., 1., 4., 2., 5.]);
    }
}
