//! The arithmetic of weight-only compression, as NNCF defines it (`weight_lowering.py` and its
//! OpenVINO-model twin): integer codes per group (or per output channel) computed in f32 with true
//! division and round-half-to-even, the scale stored as f16. Matching it operation for operation
//! gives codes bit-identical to NNCF's.

use crate::error::{Error, Result};
use crate::tensor::ElementType;
use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};
use rayon::prelude::*;

/// An integer code format: bits and whether it has a zero point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntFormat {
    pub bits: u32,
    pub asymmetric: bool,
}

impl IntFormat {
    /// The code range: `0..2^b-1` (asymmetric) or `-2^(b-1)..2^(b-1)-1` (symmetric).
    pub fn levels(self) -> (f32, f32) {
        if self.asymmetric {
            (0.0, ((1u32 << self.bits) - 1) as f32)
        } else {
            let half = (1u32 << (self.bits - 1)) as f32;
            (-half, half - 1.0)
        }
    }

    /// The element type codes are stored as.
    pub fn code_type(self) -> ElementType {
        match (self.bits, self.asymmetric) {
            (4, true) => ElementType::U4,
            (4, false) => ElementType::I4,
            (_, true) => ElementType::U8,
            (_, false) => ElementType::I8,
        }
    }
}

/// Scale and zero point of one group (the zero point is 0 for symmetric formats).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroupParams {
    pub scale: f32,
    pub zero_point: f32,
}

/// NNCF's parameters for a group whose values span `min..max`.
///
/// Asymmetric: the range is widened to include 0, `scale = (max - min) / (levels - 1)`,
/// `zero_point = clip(0 - round(min / scale))`. Symmetric: the scale carries the sign of the
/// larger side (`|min| >= max` ? `|min|` : `-max`) divided by `2^(b-1)`, so both ends of the code
/// range are used. A scale below f32's epsilon becomes epsilon.
pub fn group_params(format: IntFormat, min: f32, max: f32) -> GroupParams {
    let eps = f32::EPSILON;
    let (low, high) = format.levels();
    if format.asymmetric {
        let (min, max) = (min.min(0.0), max.max(0.0));
        let mut scale = (max - min) / (high - low);
        if scale.abs() < eps {
            scale = eps;
        }
        let zero_point = (low - (min / scale).round_ties_even()).clamp(low, high);
        GroupParams { scale, zero_point }
    } else {
        let abs_min = min.abs();
        let mut scale = if abs_min >= max { abs_min } else { -max };
        scale /= -low;
        if scale.abs() < eps {
            scale = eps;
        }
        GroupParams { scale, zero_point: 0.0 }
    }
}

/// The code of `v`: `clip(round(v / scale + zero_point))`, rounding half to even.
#[inline]
pub fn quantize(v: f32, p: GroupParams, low: f32, high: f32) -> f32 {
    round_half_even_small((v / p.scale + p.zero_point).clamp(low, high))
}

/// Round half to even for |x| < 2^22 by the float-add trick: adding 1.5 * 2^23 leaves no
/// fraction bits, so the FPU's default rounding (to nearest, ties to even) does the work. Unlike
/// `round_ties_even` it needs no SSE4.1 (the baseline x86-64 build would call libm per element).
/// Clipping before rounding is the same as after, as the bounds are integers.
#[inline]
fn round_half_even_small(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
    (x + MAGIC) - MAGIC
}

/// A weight seen as `[outer, reduce, inner]` (the reduction axis in the middle), with groups of
/// `group` consecutive elements along the reduction axis (`group == reduce`: one per channel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub outer: usize,
    pub reduce: usize,
    pub inner: usize,
    pub group: usize,
}

impl Layout {
    pub fn groups(&self) -> usize {
        self.reduce / self.group
    }
    pub fn len(&self) -> usize {
        self.outer * self.reduce * self.inner
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Number of (scale, zero point) pairs.
    pub fn param_count(&self) -> usize {
        self.outer * self.groups() * self.inner
    }
}

/// Compressed codes and their parameters, in the weight's memory order (codes) and in
/// `[outer, groups, inner]` order (scales and zero points).
#[derive(Clone, Debug, PartialEq)]
pub struct Compressed {
    /// One code per element: u8 for asymmetric formats, i8 bits for symmetric ones; 4-bit codes
    /// are held one per byte (packed when written).
    pub codes: Vec<u8>,
    /// Stored scale (f16, as NNCF stores it).
    pub scale: Vec<f16>,
    /// Zero points (asymmetric formats only), same codes type as `codes`.
    pub zero_point: Option<Vec<u8>>,
}

/// Reads `n` floating-point weights of type `et` from little-endian bytes into `out`.
pub fn decode_floats(et: ElementType, bytes: &[u8], out: &mut [f32], scratch: &mut Vec<u16>) -> Result<()> {
    let n = out.len();
    match et {
        ElementType::F32 => {
            for (o, c) in out.iter_mut().zip(bytes[..n * 4].chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        ElementType::F64 => {
            for (o, c) in out.iter_mut().zip(bytes[..n * 8].chunks_exact(8)) {
                *o = f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32;
            }
        }
        ElementType::F16 | ElementType::BF16 => {
            scratch.clear();
            scratch.extend(bytes[..n * 2].chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])));
            if et == ElementType::F16 {
                let halves: &[f16] = half::slice::HalfBitsSliceExt::reinterpret_cast(scratch.as_slice());
                halves.convert_to_f32_slice(out);
            } else {
                let halves: &[bf16] = half::slice::HalfBitsSliceExt::reinterpret_cast(scratch.as_slice());
                halves.convert_to_f32_slice(out);
            }
        }
        other => return Err(Error::unsupported(format!("weights of element type {other} are not floating point"))),
    }
    Ok(())
}

/// Compresses a weight held as raw bytes of type `et` laid out as `layout`.
pub fn compress(raw: &[u8], et: ElementType, layout: Layout, format: IntFormat) -> Result<Compressed> {
    compress_with(raw, et, layout, format, None)
}

/// [`compress`] with each group's parameters given (`[outer, groups, inner]` order, as scale
/// estimation finds them) instead of its min/max ones: codes from the f32 scale, the scale
/// stored as f16.
pub fn compress_with(
    raw: &[u8],
    et: ElementType,
    layout: Layout,
    format: IntFormat,
    precomputed: Option<&[GroupParams]>,
) -> Result<Compressed> {
    check_layout(raw, et, layout)?;
    if precomputed.is_some_and(|p| p.len() != layout.param_count()) {
        return Err(Error::internal("precomputed parameters do not match the weight's groups"));
    }
    let params_of = |idx: usize, mn: f32, mx: f32| match precomputed {
        Some(p) => p[idx],
        None => group_params(format, mn, mx),
    };
    let (low, high) = format.levels();
    let ng = layout.groups();
    let mut codes = vec![0u8; layout.len()];
    let mut scale = vec![f16::ZERO; layout.param_count()];
    let mut zero_point = vec![0u8; if format.asymmetric { layout.param_count() } else { 0 }];
    let width = et_width(et);
    if layout.inner == 1 {
        // Contiguous groups: one task per channel row.
        let row_bytes = layout.reduce * width;
        let zp_chunk = if format.asymmetric { ng } else { 0 };
        let mut zp_rows: Vec<&mut [u8]> = if format.asymmetric {
            zero_point.chunks_mut(zp_chunk).collect()
        } else {
            (0..layout.outer).map(|_| <&mut [u8]>::default()).collect()
        };
        codes
            .par_chunks_mut(layout.reduce)
            .zip(scale.par_chunks_mut(ng))
            .zip(zp_rows.par_iter_mut())
            .enumerate()
            .try_for_each_init(
                || (vec![0f32; layout.reduce], Vec::new()),
                |(row, scratch), (o, ((code_row, scale_row), zp_row))| -> Result<()> {
                    decode_floats(et, &raw[o * row_bytes..(o + 1) * row_bytes], row, scratch)?;
                    for g in 0..ng {
                        let vals = &row[g * layout.group..(g + 1) * layout.group];
                        let (mn, mx) = if precomputed.is_some() { (0.0, 0.0) } else { min_max(vals) };
                        let p = params_of(o * ng + g, mn, mx);
                        scale_row[g] = f16::from_f32(p.scale);
                        if format.asymmetric {
                            zp_row[g] = p.zero_point as u8;
                        }
                        let out = &mut code_row[g * layout.group..(g + 1) * layout.group];
                        quantize_into(vals, out, p, low, high);
                    }
                    Ok(())
                },
            )?;
    } else {
        // Strided groups (a MatMul weight stored [in, out]): tasks over blocks of columns,
        // results scattered afterwards.
        const BLOCK: usize = 64;
        let blocks = layout.inner.div_ceil(BLOCK);
        let tasks: Vec<(usize, usize)> = (0..layout.outer).flat_map(|o| (0..blocks).map(move |b| (o, b))).collect();
        let results: Vec<(usize, usize, Vec<u8>, Vec<GroupParams>)> = tasks
            .par_iter()
            .map_init(Vec::new, |scratch, &(o, b)| -> Result<_> {
                let c0 = b * BLOCK;
                let bw = BLOCK.min(layout.inner - c0);
                let mut panel = vec![0f32; layout.reduce * bw];
                for r in 0..layout.reduce {
                    let start = ((o * layout.reduce + r) * layout.inner + c0) * width;
                    decode_floats(et, &raw[start..start + bw * width], &mut panel[r * bw..(r + 1) * bw], scratch)?;
                }
                let mut params = Vec::with_capacity(ng * bw);
                let mut block_codes = vec![0u8; layout.reduce * bw];
                for g in 0..ng {
                    for c in 0..bw {
                        let (mut mn, mut mx) = (f32::INFINITY, f32::NEG_INFINITY);
                        for r in g * layout.group..(g + 1) * layout.group {
                            let v = panel[r * bw + c];
                            mn = mn.min(v);
                            mx = mx.max(v);
                        }
                        let p = params_of((o * ng + g) * layout.inner + c0 + c, mn, mx);
                        for r in g * layout.group..(g + 1) * layout.group {
                            block_codes[r * bw + c] = quantize(panel[r * bw + c], p, low, high) as i32 as u8;
                        }
                        params.push(p);
                    }
                }
                Ok((o, c0, block_codes, params))
            })
            .collect::<Result<_>>()?;
        for (o, c0, block_codes, params) in results {
            let bw = block_codes.len() / layout.reduce;
            for r in 0..layout.reduce {
                let at = (o * layout.reduce + r) * layout.inner + c0;
                codes[at..at + bw].copy_from_slice(&block_codes[r * bw..(r + 1) * bw]);
            }
            for g in 0..ng {
                for c in 0..bw {
                    let p = params[g * bw + c];
                    let at = (o * ng + g) * layout.inner + c0 + c;
                    scale[at] = f16::from_f32(p.scale);
                    if format.asymmetric {
                        zero_point[at] = p.zero_point as u8;
                    }
                }
            }
        }
    }
    Ok(Compressed { codes, scale, zero_point: format.asymmetric.then_some(zero_point) })
}

/// The error of int8 asymmetric per-channel compression, decompressed with the f32 scale, as
/// NNCF's mixed-precision criteria read it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Int8Error {
    /// The largest per-channel mean squared error (`max_mean`: the data-free criterion).
    pub max_mean: f64,
    /// The Frobenius norm of the error (`frobenius`: the Hessian criterion).
    pub frobenius: f64,
}

/// [`Int8Error`] of a weight; channels in parallel.
pub fn int8_error(raw: &[u8], et: ElementType, layout: Layout) -> Result<Int8Error> {
    let per_channel = Layout { group: layout.reduce, ..layout };
    check_layout(raw, et, per_channel)?;
    let format = IntFormat { bits: 8, asymmetric: true };
    let (low, high) = format.levels();
    let width = et_width(et);
    // One channel's values: a contiguous row when `inner` is 1, else strided.
    let channel = |c: usize, vals: &mut Vec<f32>, scratch: &mut Vec<u16>| -> Result<f64> {
        let (o, i) = (c / layout.inner, c % layout.inner);
        if layout.inner == 1 {
            let row_bytes = layout.reduce * width;
            decode_floats(et, &raw[o * row_bytes..(o + 1) * row_bytes], vals, scratch)?;
        } else {
            for (r, v) in vals.iter_mut().enumerate() {
                let at = ((o * layout.reduce + r) * layout.inner + i) * width;
                decode_floats(et, &raw[at..at + width], std::slice::from_mut(v), scratch)?;
            }
        }
        Ok(mean_squared_error(vals, format, low, high))
    };
    let errors: Vec<f64> = (0..layout.outer * layout.inner)
        .into_par_iter()
        .map_init(|| (vec![0f32; layout.reduce], Vec::new()), |(vals, scratch), c| channel(c, vals, scratch))
        .collect::<Result<_>>()?;
    let max_mean = errors.iter().copied().fold(0.0, f64::max);
    let frobenius = (errors.iter().sum::<f64>() * layout.reduce as f64).sqrt();
    Ok(Int8Error { max_mean, frobenius })
}

fn mean_squared_error(vals: &[f32], format: IntFormat, low: f32, high: f32) -> f64 {
    let (mn, mx) = min_max(vals);
    let p = group_params(format, mn, mx);
    let sum: f64 = vals
        .iter()
        .map(|&v| {
            let q = quantize(v, p, low, high);
            let d = (q - p.zero_point) * p.scale - v;
            (d as f64) * (d as f64)
        })
        .sum();
    sum / vals.len().max(1) as f64
}

/// Smallest and largest value, in lanes the compiler vectorizes.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2"))]
fn min_max(vals: &[f32]) -> (f32, f32) {
    const LANES: usize = 16;
    let mut lo = [f32::INFINITY; LANES];
    let mut hi = [f32::NEG_INFINITY; LANES];
    let chunks = vals.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            lo[i] = if c[i] < lo[i] { c[i] } else { lo[i] };
            hi[i] = if c[i] > hi[i] { c[i] } else { hi[i] };
        }
    }
    let fold = |acc: (f32, f32), v: f32| (acc.0.min(v), acc.1.max(v));
    let acc = lo.iter().zip(&hi).fold((f32::INFINITY, f32::NEG_INFINITY), |a, (&l, &h)| (a.0.min(l), a.1.max(h)));
    rest.iter().fold(acc, |a, &v| fold(a, v))
}

/// [`quantize`] over a group, writing each code's low byte (two's complement for signed codes).
/// The same arithmetic in a form the compiler vectorizes: the rounded value's low mantissa
/// bits are the integer code.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2"))]
fn quantize_into(vals: &[f32], out: &mut [u8], p: GroupParams, low: f32, high: f32) {
    const MAGIC: f32 = 12_582_912.0;
    for (o, &v) in out.iter_mut().zip(vals) {
        let x = v / p.scale + p.zero_point;
        let x = if x < low { low } else { x };
        let x = if x > high { high } else { x };
        *o = ((x + MAGIC).to_bits() & 0xff) as u8;
    }
}

fn et_width(et: ElementType) -> usize {
    match et {
        ElementType::F64 => 8,
        ElementType::F32 => 4,
        _ => 2,
    }
}

fn check_layout(raw: &[u8], et: ElementType, layout: Layout) -> Result<()> {
    if !matches!(et, ElementType::F32 | ElementType::F16 | ElementType::BF16 | ElementType::F64) {
        return Err(Error::unsupported(format!("weights of element type {et} are not floating point")));
    }
    if layout.group == 0 || !layout.reduce.is_multiple_of(layout.group) {
        return Err(Error::invalid(format!(
            "group size {} does not divide the reduction axis of {} elements",
            layout.group, layout.reduce
        )));
    }
    if raw.len() < layout.len() * et_width(et) {
        return Err(Error::mismatch(format!(
            "{} bytes hold fewer than the {} {et} weights of the layout",
            raw.len(),
            layout.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn asymmetric_params_include_zero_and_round_half_even() {
        let p = group_params(IntFormat { bits: 8, asymmetric: true }, 0.5, 2.55);
        // The range is widened to 0..2.55: scale 0.01, zero point 0.
        assert!((p.scale - 0.01).abs() < 1e-7);
        assert_eq!(p.zero_point, 0.0);
        let p = group_params(IntFormat { bits: 4, asymmetric: true }, -1.0, 2.0);
        assert_eq!(p.scale, 0.2);
        assert_eq!(p.zero_point, 5.0);
        assert_eq!(quantize(-1.0, p, 0.0, 15.0), 0.0);
        assert_eq!(quantize(2.0, p, 0.0, 15.0), 15.0);
        // 0.1 / 0.2 + 5 = 5.5 rounds to the even 6, as numpy and OpenVINO round.
        assert_eq!(quantize(0.1, p, 0.0, 15.0), 6.0);
    }

    #[test]
    fn vector_kernels_match_the_scalar_definition() {
        let vals: Vec<f32> = (0..203).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.0137).collect();
        let (mn, mx) = min_max(&vals);
        assert_eq!(
            (mn, mx),
            (vals.iter().cloned().fold(f32::MAX, f32::min), vals.iter().cloned().fold(f32::MIN, f32::max))
        );
        for format in [IntFormat { bits: 4, asymmetric: true }, IntFormat { bits: 8, asymmetric: false }] {
            let (low, high) = format.levels();
            let p = group_params(format, mn, mx);
            let mut out = vec![0u8; vals.len()];
            quantize_into(&vals, &mut out, p, low, high);
            for (o, &v) in out.iter().zip(&vals) {
                assert_eq!(*o, quantize(v, p, low, high) as i32 as u8, "{v}");
            }
        }
    }

    #[test]
    fn float_trick_rounds_like_round_ties_even() {
        for i in -6000..6000 {
            let x = i as f32 * 0.0625 + 0.000_01 * (i % 7) as f32;
            assert_eq!(round_half_even_small(x), x.round_ties_even(), "{x}");
        }
        for x in [0.5f32, 1.5, 2.5, -0.5, -1.5, 254.5, 255.5] {
            assert_eq!(round_half_even_small(x), x.round_ties_even(), "{x}");
        }
    }

    #[test]
    fn symmetric_scale_takes_the_sign_of_the_larger_side() {
        let f = IntFormat { bits: 8, asymmetric: false };
        let p = group_params(f, -1.0, 0.5);
        assert_eq!(p.scale, 1.0 / 128.0);
        assert_eq!(quantize(-1.0, p, -128.0, 127.0), -128.0);
        // max wins: the scale is negative and max maps to -128.
        let p = group_params(f, -0.5, 1.0);
        assert_eq!(p.scale, -1.0 / 128.0);
        assert_eq!(quantize(1.0, p, -128.0, 127.0), -128.0);
        assert_eq!(quantize(-0.5, p, -128.0, 127.0), 64.0);
        // All-zero groups get epsilon, not a division by zero.
        assert_eq!(group_params(f, 0.0, 0.0).scale, f32::EPSILON);
    }

    #[test]
    fn strided_and_contiguous_layouts_agree() {
        // A [4, 6] weight reduced along axis 0 (strided) equals its transpose reduced along axis 1.
        let w: Vec<f32> = (0..24).map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.37).collect();
        let mut t = vec![0f32; 24];
        for r in 0..4 {
            for c in 0..6 {
                t[c * 4 + r] = w[r * 6 + c];
            }
        }
        let f = IntFormat { bits: 4, asymmetric: true };
        let strided =
            compress(&f32_bytes(&w), ElementType::F32, Layout { outer: 1, reduce: 4, inner: 6, group: 2 }, f).unwrap();
        let rows =
            compress(&f32_bytes(&t), ElementType::F32, Layout { outer: 6, reduce: 4, inner: 1, group: 2 }, f).unwrap();
        for r in 0..4 {
            for c in 0..6 {
                assert_eq!(strided.codes[r * 6 + c], rows.codes[c * 4 + r]);
            }
        }
        for g in 0..2 {
            for c in 0..6 {
                assert_eq!(strided.scale[g * 6 + c], rows.scale[c * 2 + g]);
            }
        }
    }

    #[test]
    fn f16_weights_decode_exactly_and_bad_groups_are_refused() {
        let w = [0.5f32, -0.25, 1.0, 2.0];
        let raw: Vec<u8> = w.iter().flat_map(|&x| f16::from_f32(x).to_le_bytes()).collect();
        let mut out = [0f32; 4];
        decode_floats(ElementType::F16, &raw, &mut out, &mut Vec::new()).unwrap();
        assert_eq!(out, w);
        let err = compress(
            &raw,
            ElementType::F16,
            Layout { outer: 1, reduce: 4, inner: 1, group: 3 },
            IntFormat { bits: 4, asymmetric: true },
        )
        .unwrap_err();
        assert!(err.to_string().contains("group size 3"), "{err}");
    }

    #[test]
    fn int8_error_is_the_worst_channel_mean_and_the_frobenius_norm() {
        let w = [0.0f32, 1.0, 0.3, 0.0, 0.0, 0.0];
        let e =
            int8_error(&f32_bytes(&w), ElementType::F32, Layout { outer: 2, reduce: 3, inner: 1, group: 3 }).unwrap();
        assert!(e.max_mean > 0.0 && e.max_mean < 1e-5, "{e:?}");
        // One channel errs: its sum of squares is 3 × its mean.
        assert!((e.frobenius - (3.0 * e.max_mean).sqrt()).abs() < 1e-12, "{e:?}");
        // The same channels stored input-major (strided) give the same errors.
        let t = [0.0f32, 0.0, 1.0, 0.0, 0.3, 0.0];
        let strided =
            int8_error(&f32_bytes(&t), ElementType::F32, Layout { outer: 1, reduce: 3, inner: 2, group: 3 }).unwrap();
        assert_eq!(e, strided);
    }
}
