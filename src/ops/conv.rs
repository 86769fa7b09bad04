//! Convolution family (opset1): Convolution, GroupConvolution, ConvolutionBackpropData,
//! GroupConvolutionBackpropData. 1-D/2-D/3-D spatial, all run as 3-D with leading unit axes.
//!
//! Speed matters (the engine decides how long quantization takes): convolutions unfold the input
//! (im2col) and call the sgemm of `matrixmultiply` through ndarray; 1x1 stride-1 unpadded
//! convolutions read the input as the GEMM operand directly; groups of one input channel
//! (depthwise) run a direct kernel parallel over channels.

use super::op::{BuildCtx, Epilogue, Op, Registry};
use crate::error::{Error, Result};
use crate::tensor::{ElementType, Tensor};
use multiversion::multiversion;
use ndarray::{ArrayD, ArrayView2, ArrayViewMut2, CowArray, IxDyn};
use rayon::prelude::*;

pub fn register(r: &mut Registry) {
    r.add("Convolution", &["opset1"], build_conv);
    r.add("GroupConvolution", &["opset1"], build_group_conv);
    r.add("ConvolutionBackpropData", &["opset1"], build_deconv);
    r.add("GroupConvolutionBackpropData", &["opset1"], build_group_deconv);
}

// ---------------------------------------------------------------------------------------------
// Shared window geometry (also used by pooling)
// ---------------------------------------------------------------------------------------------

/// How padding is decided (`auto_pad` attribute).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AutoPad {
    Explicit,
    SameUpper,
    SameLower,
    Valid,
}

impl AutoPad {
    pub(crate) fn parse(ctx: &BuildCtx) -> Result<Self> {
        let s = ctx.attr_str_or("auto_pad", "explicit").trim().to_ascii_lowercase();
        Ok(match s.as_str() {
            "explicit" | "notset" | "" => AutoPad::Explicit,
            "same_upper" => AutoPad::SameUpper,
            "same_lower" => AutoPad::SameLower,
            "valid" => AutoPad::Valid,
            _ => return Err(ctx.err(format!("unknown auto_pad '{s}'"))),
        })
    }
}

/// Padding of a strided window for `same_*`: output = ceil(input / stride), the odd pixel at the
/// end (upper) or at the beginning (lower). Returns (begin, end).
pub(crate) fn same_pads(input: usize, kernel_eff: usize, stride: usize, lower: bool) -> (i64, i64) {
    let out = input.div_ceil(stride);
    let total = ((out.saturating_sub(1)) * stride + kernel_eff).saturating_sub(input) as i64;
    let small = total / 2;
    if lower {
        (total - small, small)
    } else {
        (small, total - small)
    }
}

/// One spatial axis of a sliding window, resolved against the actual input size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Axis {
    pub input: usize,
    pub output: usize,
    pub kernel: usize,
    pub stride: usize,
    pub dilation: usize,
    /// Padding before the first input element (may be negative for convolutions: a crop).
    pub pad_begin: i64,
}

impl Axis {
    pub(crate) const UNIT: Axis = Axis { input: 1, output: 1, kernel: 1, stride: 1, dilation: 1, pad_begin: 0 };

    /// Input coordinate read by output `o` at kernel tap `k` (may lie in the padding).
    #[inline]
    pub(crate) fn src(&self, o: usize, k: usize) -> i64 {
        (o * self.stride + k * self.dilation) as i64 - self.pad_begin
    }

    /// Output positions `lo..hi` whose tap `k` reads inside the input.
    #[inline]
    pub(crate) fn valid_range(&self, k: usize) -> (usize, usize) {
        let off = (k * self.dilation) as i64 - self.pad_begin;
        let s = self.stride as i64;
        let lo = if off < 0 { ((-off) + s - 1) / s } else { 0 };
        let hi = if (self.input as i64) <= off { 0 } else { ((self.input as i64) - off + s - 1) / s };
        let hi = (hi.max(0) as usize).min(self.output);
        let lo = (lo as usize).min(hi);
        (lo, hi)
    }
}

/// Lays 1..=3 spatial axes out as exactly 3 (leading unit axes).
pub(crate) fn to3(axes: &[Axis]) -> Result<[Axis; 3]> {
    if axes.is_empty() || axes.len() > 3 {
        return Err(Error::unsupported(format!("{} spatial dimensions (1 to 3 are supported)", axes.len())));
    }
    let mut a = [Axis::UNIT; 3];
    a[3 - axes.len()..].copy_from_slice(axes);
    Ok(a)
}

/// Strides, dilations and pads as written in the IR, checked against the spatial rank at run time.
#[derive(Clone, Debug)]
pub(crate) struct WindowAttrs {
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub pads_begin: Vec<i64>,
    pub pads_end: Vec<i64>,
    pub auto_pad: AutoPad,
}

impl WindowAttrs {
    pub(crate) fn parse(ctx: &BuildCtx, with_dilations: bool) -> Result<Self> {
        let strides = ctx.attr_usize_list("strides")?;
        let dilations = if with_dilations { ctx.attr_usize_list("dilations")? } else { vec![1; strides.len()] };
        let auto_pad = AutoPad::parse(ctx)?;
        let pads_begin = ctx.attr_i64_list_or("pads_begin", vec![])?;
        let pads_end = ctx.attr_i64_list_or("pads_end", vec![])?;
        if strides.contains(&0) || dilations.contains(&0) {
            return Err(ctx.err("strides and dilations must be positive"));
        }
        Ok(WindowAttrs { strides, dilations, pads_begin, pads_end, auto_pad })
    }

    /// Checks the attribute lengths against `n` spatial axes; empty pads mean zeros.
    pub(crate) fn check(&self, n: usize) -> Result<()> {
        let ok = |len: usize| len == n;
        let pads_ok = |len: usize| len == n || len == 0;
        if !ok(self.strides.len())
            || !ok(self.dilations.len())
            || !pads_ok(self.pads_begin.len())
            || !pads_ok(self.pads_end.len())
        {
            return Err(Error::mismatch(format!(
                "strides {:?} / dilations {:?} / pads {:?},{:?} do not match {n} spatial dimensions",
                self.strides, self.dilations, self.pads_begin, self.pads_end
            )));
        }
        Ok(())
    }

    pub(crate) fn pad(&self, i: usize) -> (i64, i64) {
        (self.pads_begin.get(i).copied().unwrap_or(0), self.pads_end.get(i).copied().unwrap_or(0))
    }

    /// Forward-convolution axes for `input` spatial sizes and `kernel` sizes (floor rounding).
    pub(crate) fn conv_axes(&self, input: &[usize], kernel: &[usize]) -> Result<Vec<Axis>> {
        self.check(input.len())?;
        let mut axes = Vec::with_capacity(input.len());
        for i in 0..input.len() {
            let (stride, dilation, k) = (self.strides[i], self.dilations[i], kernel[i]);
            let keff = (k.max(1) - 1) * dilation + 1;
            let (pb, pe) = match self.auto_pad {
                AutoPad::Explicit => self.pad(i),
                AutoPad::Valid => (0, 0),
                AutoPad::SameUpper => same_pads(input[i], keff, stride, false),
                AutoPad::SameLower => same_pads(input[i], keff, stride, true),
            };
            let padded = input[i] as i64 + pb + pe;
            if k == 0 || padded < keff as i64 {
                return Err(Error::mismatch(format!(
                    "kernel {k} (dilated {keff}) is larger than the padded input {padded} on spatial axis {i}"
                )));
            }
            let output = ((padded - keff as i64) / stride as i64 + 1) as usize;
            axes.push(Axis { input: input[i], output, kernel: k, stride, dilation, pad_begin: pb });
        }
        Ok(axes)
    }
}

// ---------------------------------------------------------------------------------------------
// Element types
// ---------------------------------------------------------------------------------------------

/// An f32 view of a float tensor in standard layout (copied only when it is not already that).
pub(crate) fn f32_view<'a>(t: &'a Tensor, what: &str) -> Result<CowArray<'a, f32, IxDyn>> {
    match t {
        Tensor::F32(a) => Ok(a.as_standard_layout()),
        Tensor::F16(_) | Tensor::BF16(_) | Tensor::F64(_) => Ok(CowArray::from(t.to_f32())),
        other => Err(Error::mismatch(format!("{what}: expected a float tensor, got {}", other.element_type()))),
    }
}

/// Wraps an f32 result as the element type of the op's data input.
pub(crate) fn from_f32(a: ArrayD<f32>, et: ElementType) -> Result<Tensor> {
    let t = Tensor::F32(a);
    if et == ElementType::F32 {
        Ok(t)
    } else {
        t.convert(et)
    }
}

pub(crate) fn slice_of<'a>(a: &'a CowArray<'_, f32, IxDyn>, what: &str) -> Result<&'a [f32]> {
    a.as_slice().ok_or_else(|| Error::internal(format!("{what}: tensor is not contiguous")))
}

/// C = A · B + beta · C (see [`super::gemm`]).
fn gemm(a: ArrayView2<f32>, b: ArrayView2<f32>, c: ArrayViewMut2<f32>, beta: f32) {
    super::gemm::gemm_f32(a, b, c, beta);
}

fn view2(s: &[f32], rows: usize, cols: usize) -> Result<ArrayView2<'_, f32>> {
    ArrayView2::from_shape((rows, cols), s).map_err(|e| Error::internal(format!("matrix view: {e}")))
}

fn view2_mut(s: &mut [f32], rows: usize, cols: usize) -> Result<ArrayViewMut2<'_, f32>> {
    ArrayViewMut2::from_shape((rows, cols), s).map_err(|e| Error::internal(format!("matrix view: {e}")))
}

// ---------------------------------------------------------------------------------------------
// Kernels
// ---------------------------------------------------------------------------------------------

/// Unfolds `channels` input planes (each [D,H,W] contiguous) into `col`: one row per
/// (channel, kd, kh, kw), one column per output position; padding reads as zero.
fn im2col(x: &[f32], channels: usize, ax: &[Axis; 3], col: &mut [f32]) {
    let [d, h, w] = *ax;
    let kk = d.kernel * h.kernel * w.kernel;
    let ncols = d.output * h.output * w.output;
    let plane = d.input * h.input * w.input;
    if ncols == 0 {
        return;
    }
    let rows = col[..channels * kk * ncols].par_chunks_mut(ncols).with_min_len(4);
    rows.enumerate().for_each(|(r, row)| {
        let c = r / kk;
        let t = r % kk;
        let (kd, kh, kw) = (t / (h.kernel * w.kernel), (t / w.kernel) % h.kernel, t % w.kernel);
        let src_plane = &x[c * plane..(c + 1) * plane];
        let (lo, hi) = w.valid_range(kw);
        let off = (kw * w.dilation) as i64 - w.pad_begin;
        for od in 0..d.output {
            let id = d.src(od, kd);
            for oh in 0..h.output {
                let ih = h.src(oh, kh);
                let dst = &mut row[(od * h.output + oh) * w.output..(od * h.output + oh + 1) * w.output];
                if id < 0 || id >= d.input as i64 || ih < 0 || ih >= h.input as i64 {
                    dst.fill(0.0);
                    continue;
                }
                let src = &src_plane[(id as usize * h.input + ih as usize) * w.input..][..w.input];
                dst[..lo].fill(0.0);
                dst[hi..].fill(0.0);
                if w.stride == 1 {
                    let start = (lo as i64 + off) as usize;
                    dst[lo..hi].copy_from_slice(&src[start..start + (hi - lo)]);
                } else {
                    for (ow, v) in dst.iter_mut().enumerate().take(hi).skip(lo) {
                        *v = src[(ow as i64 * w.stride as i64 + off) as usize];
                    }
                }
            }
        }
    });
}

/// Outputs summed together in registers by the depthwise kernel (several vectors, so the
/// additions of consecutive taps do not wait on each other).
const DW_BLOCK: usize = 64;

/// Where one spatial axis of a depthwise convolution reads, after padding and splitting the
/// input into `stride` phases (phase `a` holds padded positions `i·stride + a`): tap `k` reads
/// phase `k·dilation mod stride` at offset `k·dilation div stride` from the output position.
#[derive(Clone, Copy)]
struct PhaseAxis {
    axis: Axis,
    /// Phase length: every output position plus the farthest tap offset.
    len: usize,
}

impl PhaseAxis {
    fn new(axis: Axis) -> PhaseAxis {
        let reach = (axis.kernel.saturating_sub(1) * axis.dilation) / axis.stride;
        PhaseAxis { axis, len: axis.output + reach }
    }
    fn tap(&self, k: usize) -> (usize, usize) {
        let off = k * self.axis.dilation;
        (off % self.axis.stride, off / self.axis.stride)
    }
    /// Input position of phase `a`, index `i` (outside the input: padding).
    fn source(&self, a: usize, i: usize) -> i64 {
        (i * self.axis.stride + a) as i64 - self.axis.pad_begin
    }
}

/// Buffers the depthwise kernel reuses from plane to plane.
#[derive(Default)]
struct DwScratch {
    phases: Vec<f32>,
    wide: Vec<f32>,
    taps: Vec<(f32, usize)>,
}

/// Direct convolution of one input plane with one filter (a depthwise channel). The plane is
/// padded and split into stride phases once, laid out flat with rows of the phase width; then
/// every tap is one contiguous run of that buffer, and all outputs (each row widened to the
/// phase width, the extra columns dropped afterwards) are summed over the taps in blocks.
#[multiversion(targets("x86_64+avx512f+avx512vl+fma", "x86_64+avx2+fma"))]
fn depthwise_plane(x: &[f32], wk: &[f32], ax: &[Axis; 3], out: &mut [f32], scratch: &mut DwScratch) {
    let [pd, ph, pw] = ax.map(PhaseAxis::new);
    let (sd, sh, sw) = (pd.axis.stride, ph.axis.stride, pw.axis.stride);
    let block = pd.len * ph.len * pw.len;
    // Slack past the last phase: widened outputs read up to one row beyond it.
    let DwScratch { phases, wide: wide_buf, taps } = scratch;
    phases.clear();
    phases.resize(sd * sh * sw * block + pw.len, 0.0);
    for (p, dst) in phases.chunks_mut(block).take(sd * sh * sw).enumerate() {
        let (ad, ah, aw) = (p / (sh * sw), (p / sw) % sh, p % sw);
        for i in 0..pd.len {
            let id = pd.source(ad, i);
            if id < 0 || id >= pd.axis.input as i64 {
                continue;
            }
            for j in 0..ph.len {
                let ih = ph.source(ah, j);
                if ih < 0 || ih >= ph.axis.input as i64 {
                    continue;
                }
                let src = &x[(id as usize * ph.axis.input + ih as usize) * pw.axis.input..][..pw.axis.input];
                let row = &mut dst[(i * ph.len + j) * pw.len..][..pw.len];
                // Phase positions lo..hi fall inside the row.
                let first = pw.source(aw, 0);
                let lo = if first >= 0 { 0 } else { ((-first) as usize).div_ceil(sw) };
                let hi = ((pw.axis.input as i64 - first).max(0) as usize).div_ceil(sw).min(pw.len);
                if lo < hi {
                    let start = (first + (lo * sw) as i64) as usize;
                    if sw == 1 {
                        row[lo..hi].copy_from_slice(&src[start..start + (hi - lo)]);
                    } else {
                        for (o, &v) in row[lo..hi].iter_mut().zip(src[start..].iter().step_by(sw)) {
                            *o = v;
                        }
                    }
                }
            }
        }
    }
    // (weight, start of its run in `phases`) per tap
    taps.clear();
    for kd in 0..pd.axis.kernel {
        let (ad, qd) = pd.tap(kd);
        for kh in 0..ph.axis.kernel {
            let (ah, qh) = ph.tap(kh);
            for kw in 0..pw.axis.kernel {
                let (aw, qw) = pw.tap(kw);
                let phase = (ad * sh + ah) * sw + aw;
                let wv = wk[(kd * ph.axis.kernel + kh) * pw.axis.kernel + kw];
                taps.push((wv, phase * block + (qd * ph.len + qh) * pw.len + qw));
            }
        }
    }
    let (od, oh, ow) = (pd.axis.output, ph.axis.output, pw.axis.output);
    // Widened output: rows of the phase width, planes of the phase height.
    let wide_len = (od.saturating_sub(1) * ph.len + oh) * pw.len;
    let direct = od == 1 && pw.len == ow;
    wide_buf.clear();
    wide_buf.resize(if direct { 0 } else { wide_len }, 0.0);
    let wide: &mut [f32] = if direct { &mut out[..wide_len] } else { wide_buf };
    let mut chunks = wide.chunks_exact_mut(DW_BLOCK);
    let mut i0 = 0;
    for chunk in &mut chunks {
        let mut acc = [0.0f32; DW_BLOCK];
        for &(wv, base) in taps.iter() {
            if let Ok(run) = <&[f32; DW_BLOCK]>::try_from(&phases[base + i0..base + i0 + DW_BLOCK]) {
                for (a, &v) in acc.iter_mut().zip(run) {
                    *a += wv * v;
                }
            }
        }
        chunk.copy_from_slice(&acc);
        i0 += DW_BLOCK;
    }
    let tail = chunks.into_remainder();
    tail.fill(0.0);
    for &(wv, base) in taps.iter() {
        for (a, &v) in tail.iter_mut().zip(&phases[base + i0..]) {
            *a += wv * v;
        }
    }
    if !direct {
        for d in 0..od {
            for h in 0..oh {
                out[(d * oh + h) * ow..][..ow].copy_from_slice(&wide_buf[(d * ph.len + h) * pw.len..][..ow]);
            }
        }
    }
}

/// Forward grouped convolution on f32 slices. `x`: [N, G*cin, spatial], `w`: [G, cout, cin, k],
/// output [N, G*cout, out spatial].
#[allow(clippy::too_many_arguments)]
fn conv_forward(
    x: &[f32],
    n: usize,
    groups: usize,
    cin: usize,
    cout: usize,
    w: &[f32],
    ax: &[Axis; 3],
    epilogue: Option<&Epilogue>,
) -> Vec<f32> {
    let [d, h, wa] = *ax;
    let plane_in = d.input * h.input * wa.input;
    let plane_out = d.output * h.output * wa.output;
    let kk = d.kernel * h.kernel * wa.kernel;
    let mut out = vec![0.0f32; n * groups * cout * plane_out];
    if out.is_empty() {
        return out;
    }
    if cin == 1 {
        // Depthwise (or channel multiplier): one input plane per group, direct kernel.
        let planes = out.par_chunks_mut(plane_out).with_min_len(4).enumerate();
        planes.for_each_init(DwScratch::default, |scratch, (i, dst)| {
            let oc = i % (groups * cout);
            let b = i / (groups * cout);
            let g = oc / cout;
            let src = &x[(b * groups + g) * plane_in..][..plane_in];
            depthwise_plane(src, &w[oc * kk..(oc + 1) * kk], ax, dst, scratch);
            if let Some(e) = epilogue {
                // while the plane is still in cache
                e.apply(oc, dst);
            }
        });
        return out;
    }
    let pointwise = ax.iter().all(|a| a.kernel == 1 && a.stride == 1 && a.pad_begin == 0 && a.output == a.input);
    let mut col = if pointwise { vec![] } else { vec![0.0f32; cin * kk * plane_out] };
    for b in 0..n {
        for g in 0..groups {
            let xg = &x[(b * groups + g) * cin * plane_in..][..cin * plane_in];
            let wg = &w[g * cout * cin * kk..][..cout * cin * kk];
            let og = &mut out[(b * groups + g) * cout * plane_out..][..cout * plane_out];
            let bmat: &[f32] = if pointwise {
                xg
            } else {
                im2col(xg, cin, ax, &mut col);
                &col
            };
            // The shapes were built from the slice lengths above, so the views cannot fail.
            if let (Ok(a), Ok(bm), Ok(c)) =
                (view2(wg, cout, cin * kk), view2(bmat, cin * kk, plane_out), view2_mut(og, cout, plane_out))
            {
                gemm(a, bm, c, 0.0);
            }
            if let Some(e) = epilogue {
                let apply = |(r, row): (usize, &mut [f32])| e.apply(g * cout + r, row);
                if og.len() < super::binary::PAR_THRESHOLD {
                    og.chunks_mut(plane_out).enumerate().for_each(apply);
                } else {
                    og.par_chunks_mut(plane_out).with_min_len(8).enumerate().for_each(apply);
                }
            }
        }
    }
    out
}

/// Transposed (backprop-data) grouped convolution. `x`: [N, G*cin, in], `w`: [G, cin, cout, k];
/// `full` axes describe the forward convolution from the output (`input` = output size incl.
/// the crop, `output` = data size). Output [N, G*cout, out spatial].
fn deconv_forward(x: &[f32], n: usize, groups: usize, cin: usize, cout: usize, w: &[f32], ax: &[Axis; 3]) -> Vec<f32> {
    let [d, h, wa] = *ax;
    // Here `output` is the data (deconv input) size and `input` is the deconv output size.
    let plane_x = d.output * h.output * wa.output;
    let plane_y = d.input * h.input * wa.input;
    let kk = d.kernel * h.kernel * wa.kernel;
    let mut out = vec![0.0f32; n * groups * cout * plane_y];
    let mut col = vec![0.0f32; cout * kk * plane_x];
    if out.is_empty() || col.is_empty() {
        return out;
    }
    for b in 0..n {
        for g in 0..groups {
            let xg = &x[(b * groups + g) * cin * plane_x..][..cin * plane_x];
            let wg = &w[g * cin * cout * kk..][..cin * cout * kk];
            // col[cout*kk, P] = Wgᵀ · Xg, Wg viewed [cin, cout*kk].
            if let (Ok(a), Ok(bm), Ok(c)) =
                (view2(wg, cin, cout * kk), view2(xg, cin, plane_x), view2_mut(&mut col, cout * kk, plane_x))
            {
                gemm(a.t(), bm, c, 0.0);
            }
            let og = &mut out[(b * groups + g) * cout * plane_y..][..cout * plane_y];
            og.par_chunks_mut(plane_y).enumerate().for_each(|(oc, dst)| {
                col2im_channel(&col[oc * kk * plane_x..][..kk * plane_x], ax, dst);
            });
        }
    }
    out
}

/// Scatter-adds the kk rows of one output channel's column matrix into its plane.
fn col2im_channel(col: &[f32], ax: &[Axis; 3], dst: &mut [f32]) {
    let [d, h, w] = *ax;
    let p = d.output * h.output * w.output;
    for kd in 0..d.kernel {
        for kh in 0..h.kernel {
            for kw in 0..w.kernel {
                let row = &col[((kd * h.kernel + kh) * w.kernel + kw) * p..][..p];
                let (lo, hi) = w.valid_range(kw);
                for od in 0..d.output {
                    let id = d.src(od, kd);
                    if id < 0 || id >= d.input as i64 {
                        continue;
                    }
                    for oh in 0..h.output {
                        let ih = h.src(oh, kh);
                        if ih < 0 || ih >= h.input as i64 {
                            continue;
                        }
                        let base = (id as usize * h.input + ih as usize) * w.input;
                        let r = &row[(od * h.output + oh) * w.output..][..w.output];
                        for (ow, &v) in r.iter().enumerate().take(hi).skip(lo) {
                            dst[base + w.src(ow, kw) as usize] += v;
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Ops
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct Conv {
    window: WindowAttrs,
    /// Weights carry a leading group axis (GroupConvolution).
    grouped: bool,
    /// Bias and clamp the engine folded into this convolution.
    epilogue: Option<Epilogue>,
}

fn build_conv(ctx: &BuildCtx) -> Result<Box<dyn Op>> {
    Ok(Box::new(Conv { window: WindowAttrs::parse(ctx, true)?, grouped: false, epilogue: None }))
}

fn build_group_conv(ctx: &BuildCtx) -> Result<Box<dyn Op>> {
    Ok(Box::new(Conv { window: WindowAttrs::parse(ctx, true)?, grouped: true, epilogue: None }))
}

fn two_inputs<'a>(inputs: &[&'a Tensor]) -> Result<(&'a Tensor, &'a Tensor)> {
    match inputs {
        [x, w, ..] => Ok((x, w)),
        _ => Err(Error::invalid(format!("expected data and weights inputs, got {} input(s)", inputs.len()))),
    }
}

impl Op for Conv {
    fn with_epilogue(&self, epilogue: &Epilogue) -> Option<Box<dyn Op>> {
        Some(Box::new(Conv { window: self.window.clone(), grouped: self.grouped, epilogue: Some(epilogue.clone()) }))
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let (xt, wt) = two_inputs(inputs)?;
        let xs = xt.shape().to_vec();
        let ws = wt.shape().to_vec();
        let lead = if self.grouped { 3 } else { 2 };
        if xs.len() < 3 || ws.len() != xs.len() + lead - 2 {
            return Err(Error::mismatch(format!("data {xs:?} and weights {ws:?} ranks do not match")));
        }
        let (groups, cout, cin) = if self.grouped { (ws[0], ws[1], ws[2]) } else { (1, ws[0], ws[1]) };
        if groups == 0 || cin * groups != xs[1] {
            return Err(Error::mismatch(format!(
                "data {xs:?} has {} channels, weights {ws:?} expect {}",
                xs[1],
                cin * groups
            )));
        }
        let axes = self.window.conv_axes(&xs[2..], &ws[lead..])?;
        let ax = to3(&axes)?;
        let x = f32_view(xt, "data")?;
        let w = f32_view(wt, "weights")?;
        if let Some(b) = self.epilogue.as_ref().and_then(|e| e.bias.as_ref()) {
            if b.len() != groups * cout {
                return Err(Error::mismatch(format!(
                    "bias of {} values for {} output channels",
                    b.len(),
                    groups * cout
                )));
            }
        }
        let (xs_f, ws_f) = (slice_of(&x, "data")?, slice_of(&w, "weights")?);
        let out = conv_forward(xs_f, xs[0], groups, cin, cout, ws_f, &ax, self.epilogue.as_ref());
        let mut shape = vec![xs[0], groups * cout];
        shape.extend(axes.iter().map(|a| a.output));
        let arr = ArrayD::from_shape_vec(IxDyn(&shape), out).map_err(|e| Error::internal(e.to_string()))?;
        Ok(vec![from_f32(arr, xt.element_type())?])
    }
}

#[derive(Debug)]
struct Deconv {
    window: WindowAttrs,
    output_padding: Vec<i64>,
    grouped: bool,
}

fn build_deconv(ctx: &BuildCtx) -> Result<Box<dyn Op>> {
    build_deconv_impl(ctx, false)
}

fn build_group_deconv(ctx: &BuildCtx) -> Result<Box<dyn Op>> {
    build_deconv_impl(ctx, true)
}

fn build_deconv_impl(ctx: &BuildCtx, grouped: bool) -> Result<Box<dyn Op>> {
    let window = WindowAttrs::parse(ctx, true)?;
    let output_padding = ctx.attr_i64_list_or("output_padding", vec![])?;
    if output_padding.iter().any(|&p| p < 0) {
        return Err(ctx.err("output_padding must not be negative"));
    }
    Ok(Box::new(Deconv { window, output_padding, grouped }))
}

impl Deconv {
    /// Axes of the equivalent forward convolution (deconv output → deconv input).
    fn axes(&self, data: &[usize], kernel: &[usize], out_shape: Option<&[i64]>) -> Result<Vec<Axis>> {
        let n = data.len();
        self.window.check(n)?;
        if !(self.output_padding.is_empty() || self.output_padding.len() == n) {
            return Err(Error::mismatch(format!(
                "output_padding {:?} does not match {n} spatial dims",
                self.output_padding
            )));
        }
        if let Some(o) = out_shape {
            if o.len() != n || o.iter().any(|&v| v < 0) {
                return Err(Error::mismatch(format!("output_shape {o:?} does not match {n} spatial dims")));
            }
        }
        let mut axes = Vec::with_capacity(n);
        for i in 0..n {
            let (s, dl, k) = (self.window.strides[i], self.window.dilations[i], kernel[i]);
            let keff = ((k.max(1) - 1) * dl + 1) as i64;
            let op = self.output_padding.get(i).copied().unwrap_or(0);
            let full = (data[i] as i64 - 1) * s as i64 + keff;
            let same = matches!(self.window.auto_pad, AutoPad::SameUpper | AutoPad::SameLower);
            let (pb, out) = match (out_shape, self.window.auto_pad) {
                (Some(o), _) if same => {
                    let total = (full - o[i] + op).max(0);
                    let pb = if self.window.auto_pad == AutoPad::SameUpper { total - total / 2 } else { total / 2 };
                    (pb, o[i])
                }
                (Some(o), AutoPad::Explicit) => (self.window.pad(i).0, o[i]),
                (Some(o), _) => (0, o[i]),
                (None, AutoPad::Explicit) => {
                    let (pb, pe) = self.window.pad(i);
                    (pb, full - pb - pe + op)
                }
                (None, _) => (0, full + op),
            };
            if out <= 0 || k == 0 {
                return Err(Error::mismatch(format!("output size {out} on spatial axis {i} is not positive")));
            }
            axes.push(Axis { input: out as usize, output: data[i], kernel: k, stride: s, dilation: dl, pad_begin: pb });
        }
        Ok(axes)
    }
}

impl Op for Deconv {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let (xt, wt) = two_inputs(inputs)?;
        let out_shape = inputs.get(2).map(|t| t.to_i64_vec());
        let xs = xt.shape().to_vec();
        let ws = wt.shape().to_vec();
        let lead = if self.grouped { 3 } else { 2 };
        if xs.len() < 3 || ws.len() != xs.len() + lead - 2 {
            return Err(Error::mismatch(format!("data {xs:?} and weights {ws:?} ranks do not match")));
        }
        let (groups, cin, cout) = if self.grouped { (ws[0], ws[1], ws[2]) } else { (1, ws[0], ws[1]) };
        if groups == 0 || cin * groups != xs[1] {
            return Err(Error::mismatch(format!(
                "data {xs:?} has {} channels, weights {ws:?} expect {}",
                xs[1],
                cin * groups
            )));
        }
        let axes = self.axes(&xs[2..], &ws[lead..], out_shape.as_deref())?;
        let ax = to3(&axes)?;
        let x = f32_view(xt, "data")?;
        let w = f32_view(wt, "weights")?;
        let out = deconv_forward(slice_of(&x, "data")?, xs[0], groups, cin, cout, slice_of(&w, "weights")?, &ax);
        let mut shape = vec![xs[0], groups * cout];
        shape.extend(axes.iter().map(|a| a.input));
        let arr = ArrayD::from_shape_vec(IxDyn(&shape), out).map_err(|e| Error::internal(e.to_string()))?;
        Ok(vec![from_f32(arr, xt.element_type())?])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize], v: Vec<f32>) -> Tensor {
        Tensor::f32_from_vec(shape, v).unwrap()
    }

    fn seq(n: usize) -> Vec<f32> {
        (0..n).map(|i| i as f32).collect()
    }

    fn conv(window: WindowAttrs, grouped: bool, x: &Tensor, w: &Tensor) -> Tensor {
        Conv { window, grouped, epilogue: None }.eval(&[x, w]).unwrap().remove(0)
    }

    fn win(s: &[usize], d: &[usize], pb: &[i64], pe: &[i64], auto_pad: AutoPad) -> WindowAttrs {
        WindowAttrs {
            strides: s.to_vec(),
            dilations: d.to_vec(),
            pads_begin: pb.to_vec(),
            pads_end: pe.to_vec(),
            auto_pad,
        }
    }

    /// Direct definition of a (grouped) 2-D convolution, for comparison.
    #[allow(clippy::too_many_arguments)]
    fn naive2d(
        x: &[f32],
        xs: [usize; 4],
        w: &[f32],
        groups: usize,
        cout: usize,
        k: [usize; 2],
        s: [usize; 2],
        dl: [usize; 2],
        pb: [i64; 2],
        out: [usize; 2],
    ) -> Vec<f32> {
        let cin = xs[1] / groups;
        let mut y = vec![0.0; xs[0] * groups * cout * out[0] * out[1]];
        for n in 0..xs[0] {
            for oc in 0..groups * cout {
                let g = oc / cout;
                for oh in 0..out[0] {
                    for ow in 0..out[1] {
                        let mut acc = 0.0;
                        for ic in 0..cin {
                            for kh in 0..k[0] {
                                for kw in 0..k[1] {
                                    let ih = (oh * s[0] + kh * dl[0]) as i64 - pb[0];
                                    let iw = (ow * s[1] + kw * dl[1]) as i64 - pb[1];
                                    if ih < 0 || iw < 0 || ih >= xs[2] as i64 || iw >= xs[3] as i64 {
                                        continue;
                                    }
                                    let xi = ((n * xs[1] + g * cin + ic) * xs[2] + ih as usize) * xs[3] + iw as usize;
                                    let wi = ((oc * cin + ic) * k[0] + kh) * k[1] + kw;
                                    acc += x[xi] * w[wi];
                                }
                            }
                        }
                        y[((n * groups * cout + oc) * out[0] + oh) * out[1] + ow] = acc;
                    }
                }
            }
        }
        y
    }

    #[test]
    fn conv_hand_checked_3x3() {
        // 1x1x3x3 input 0..8, 2x2 kernel of ones, no padding: sums of 2x2 windows.
        let x = t(&[1, 1, 3, 3], seq(9));
        let w = t(&[1, 1, 2, 2], vec![1.0; 4]);
        let y = conv(win(&[1, 1], &[1, 1], &[0, 0], &[0, 0], AutoPad::Explicit), false, &x, &w);
        assert_eq!(y.shape(), &[1, 1, 2, 2]);
        assert_eq!(y.to_f64_vec(), vec![8.0, 12.0, 20.0, 24.0]);
        // pad 1 all around, stride 2: corners see 1, 2, 2 and 4 elements.
        let y = conv(win(&[2, 2], &[1, 1], &[1, 1], &[1, 1], AutoPad::Explicit), false, &x, &w);
        assert_eq!(y.shape(), &[1, 1, 2, 2]);
        assert_eq!(y.to_f64_vec(), vec![0.0, 3.0, 9.0, 24.0]);
    }

    #[test]
    fn conv_matches_naive_odd_strides_dilations_pads() {
        // (input shape, groups, cout per group, kernel, strides, dilations, pads_begin, pads_end)
        type Case = ([usize; 4], usize, usize, [usize; 2], [usize; 2], [usize; 2], [i64; 2], [i64; 2]);
        let cases: &[Case] = &[
            ([1, 3, 7, 6], 1, 4, [3, 3], [2, 1], [1, 1], [1, 1], [1, 1]),
            ([2, 4, 9, 8], 2, 3, [3, 2], [3, 2], [2, 1], [2, 0], [1, 2]),
            ([1, 2, 5, 5], 1, 2, [1, 1], [1, 1], [1, 1], [0, 0], [0, 0]),
            ([1, 6, 8, 7], 6, 1, [3, 3], [2, 2], [1, 1], [1, 1], [1, 1]),
            ([1, 6, 8, 7], 6, 2, [5, 3], [1, 3], [2, 1], [4, 1], [3, 2]),
            ([1, 2, 6, 6], 1, 3, [3, 3], [1, 1], [1, 1], [-1, 0], [0, -1]),
            // depthwise planes large enough for the kernel's register blocks, strided, cropped
            ([1, 3, 20, 19], 3, 1, [3, 3], [1, 1], [1, 1], [1, 1], [1, 1]),
            ([1, 2, 23, 21], 2, 1, [3, 5], [2, 3], [2, 1], [2, 1], [0, 2]),
            ([1, 2, 17, 30], 2, 1, [3, 3], [1, 2], [1, 1], [-1, 0], [1, -2]),
        ];
        for &(xs, groups, cout, k, s, dl, pb, pe) in cases {
            let cin = xs[1] / groups;
            let xv: Vec<f32> = (0..xs.iter().product::<usize>()).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
            let wv: Vec<f32> = (0..groups * cout * cin * k[0] * k[1]).map(|i| ((i * 5) % 7) as f32 - 3.0).collect();
            let x = t(&xs, xv.clone());
            let (w, grouped) = if groups == 1 {
                (t(&[cout, cin, k[0], k[1]], wv.clone()), false)
            } else {
                (t(&[groups, cout, cin, k[0], k[1]], wv.clone()), true)
            };
            let y = conv(win(&s, &dl, &pb, &pe, AutoPad::Explicit), grouped, &x, &w);
            let out = [y.shape()[2], y.shape()[3]];
            for i in 0..2 {
                let keff = (k[i] - 1) * dl[i] + 1;
                let exp = (xs[2 + i] as i64 + pb[i] + pe[i] - keff as i64) / s[i] as i64 + 1;
                assert_eq!(out[i] as i64, exp, "case {xs:?} k {k:?}");
            }
            let want = naive2d(&xv, xs, &wv, groups, cout, k, s, dl, pb, out);
            let got: Vec<f32> = y.to_f64_vec().iter().map(|&v| v as f32).collect();
            assert_eq!(got, want, "case {xs:?} g{groups} k{k:?} s{s:?} d{dl:?}");
        }
    }

    #[test]
    fn auto_pad_same_and_valid() {
        // same_upper on 5 with k3 s2: out 3, total pad 2 → (1,1); on 4: out 2, total 1 → (0,1).
        assert_eq!(same_pads(5, 3, 2, false), (1, 1));
        assert_eq!(same_pads(4, 3, 2, false), (0, 1));
        assert_eq!(same_pads(4, 3, 2, true), (1, 0));
        let x = t(&[1, 1, 4, 4], seq(16));
        let w = t(&[1, 1, 3, 3], vec![1.0; 9]);
        let up = conv(win(&[2, 2], &[1, 1], &[9, 9], &[9, 9], AutoPad::SameUpper), false, &x, &w);
        assert_eq!(up.shape(), &[1, 1, 2, 2]);
        // windows rows 0..3 / 2..4 (pad after), cols likewise.
        assert_eq!(up.to_f64_vec(), vec![45.0, 39.0, 66.0, 50.0]);
        let lo = conv(win(&[2, 2], &[1, 1], &[], &[], AutoPad::SameLower), false, &x, &w);
        // windows rows -1..2 / 1..4.
        assert_eq!(lo.to_f64_vec(), vec![10.0, 24.0, 51.0, 90.0]);
        let valid = conv(win(&[1, 1], &[1, 1], &[3, 3], &[3, 3], AutoPad::Valid), false, &x, &w);
        assert_eq!(valid.shape(), &[1, 1, 2, 2]);
        assert_eq!(valid.to_f64_vec(), vec![45.0, 54.0, 81.0, 90.0]);
    }

    #[test]
    fn conv_1d_and_3d() {
        let x = t(&[1, 1, 5], vec![1.0, 2.0, 3.0, 4.0, 5.0]);
        let w = t(&[1, 1, 2], vec![1.0, -1.0]);
        let y = conv(win(&[2], &[1], &[1], &[0], AutoPad::Explicit), false, &x, &w);
        // positions -1..1, 1..3, 3..5 → [-1, 2-3, 4-5]
        assert_eq!(y.to_f64_vec(), vec![-1.0, -1.0, -1.0]);
        let x = t(&[1, 1, 2, 2, 2], seq(8));
        let w = t(&[2, 1, 2, 2, 2], [vec![1.0; 8], vec![0.5; 8]].concat());
        let y = conv(win(&[1, 1, 1], &[1, 1, 1], &[0, 0, 0], &[0, 0, 0], AutoPad::Explicit), false, &x, &w);
        assert_eq!(y.shape(), &[1, 2, 1, 1, 1]);
        assert_eq!(y.to_f64_vec(), vec![28.0, 14.0]);
    }

    #[test]
    fn depthwise_3d_matches_per_channel_convolution() {
        let xs = [1, 2, 4, 5, 6];
        let xv: Vec<f32> = (0..240).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
        let wv: Vec<f32> = (0..54).map(|i| ((i * 5) % 7) as f32 - 3.0).collect();
        let window = win(&[1, 2, 1], &[1, 1, 2], &[1, 1, 2], &[0, 1, 1], AutoPad::Explicit);
        let y = conv(window.clone(), true, &t(&xs, xv.clone()), &t(&[2, 1, 1, 3, 3, 3], wv.clone()));
        let got = y.to_f64_vec();
        let per_channel = got.len() / 2;
        for c in 0..2 {
            let x1 = t(&[1, 1, 4, 5, 6], xv[c * 120..(c + 1) * 120].to_vec());
            let w1 = t(&[1, 1, 3, 3, 3], wv[c * 27..(c + 1) * 27].to_vec());
            let want = conv(window.clone(), false, &x1, &w1).to_f64_vec();
            assert_eq!(&got[c * per_channel..(c + 1) * per_channel], &want[..], "channel {c}");
        }
    }

    #[test]
    fn depthwise_with_channel_multiplier_and_f16() {
        // 2 groups, 1 input channel each, 2 outputs per group.
        let x = t(&[1, 2, 3, 3], seq(18));
        let w = t(&[2, 2, 1, 1, 1], vec![1.0, 2.0, 3.0, 4.0]);
        let y = conv(win(&[2, 2], &[1, 1], &[0, 0], &[0, 0], AutoPad::Explicit), true, &x, &w);
        assert_eq!(y.shape(), &[1, 4, 2, 2]);
        assert_eq!(
            y.to_f64_vec(),
            vec![0.0, 2.0, 6.0, 8.0, 0.0, 4.0, 12.0, 16.0, 27.0, 33.0, 45.0, 51.0, 36.0, 44.0, 60.0, 68.0]
        );
        let xh = x.convert(ElementType::F16).unwrap();
        let wh = w.convert(ElementType::F16).unwrap();
        let yh = conv(win(&[2, 2], &[1, 1], &[0, 0], &[0, 0], AutoPad::Explicit), true, &xh, &wh);
        assert_eq!(yh.element_type(), ElementType::F16);
        assert_eq!(yh.to_f64_vec(), y.to_f64_vec());
    }

    #[test]
    fn depthwise_stride_wider_than_input() {
        // stride 3 over a width of 1 (phase split must not read past the row)
        let x = t(&[1, 2, 2, 1], vec![1.0, 2.0, 3.0, 4.0]);
        let w = t(&[2, 1, 1, 1, 1], vec![2.0, 3.0]);
        let y = conv(win(&[3, 3], &[1, 1], &[0, 0], &[0, 0], AutoPad::Explicit), true, &x, &w);
        assert_eq!(y.shape(), &[1, 2, 1, 1]);
        assert_eq!(y.to_f64_vec(), vec![2.0, 9.0]);
    }

    #[test]
    fn conv_errors_name_the_problem() {
        let x = t(&[1, 3, 4, 4], seq(48));
        let w = t(&[1, 2, 3, 3], vec![1.0; 18]);
        let e =
            Conv { window: win(&[1, 1], &[1, 1], &[0, 0], &[0, 0], AutoPad::Explicit), grouped: false, epilogue: None }
                .eval(&[&x, &w])
                .unwrap_err();
        assert!(e.to_string().contains("channels"), "{e}");
        let w = t(&[1, 3, 5, 5], vec![1.0; 75]);
        let e =
            Conv { window: win(&[1, 1], &[1, 1], &[0, 0], &[0, 0], AutoPad::Explicit), grouped: false, epilogue: None }
                .eval(&[&x, &w])
                .unwrap_err();
        assert!(e.to_string().contains("larger"), "{e}");
    }

    fn deconv(window: WindowAttrs, op: &[i64], grouped: bool, ins: &[&Tensor]) -> Tensor {
        Deconv { window, output_padding: op.to_vec(), grouped }.eval(ins).unwrap().remove(0)
    }

    #[test]
    fn deconv_hand_checked() {
        // 1-D: x=[1,2], k=[1,1,1] stride 2 → full length 5: [1,1,1+2,2,2].
        let x = t(&[1, 1, 2], vec![1.0, 2.0]);
        let w = t(&[1, 1, 3], vec![1.0, 1.0, 1.0]);
        let y = deconv(win(&[2], &[1], &[0], &[0], AutoPad::Explicit), &[], false, &[&x, &w]);
        assert_eq!(y.to_f64_vec(), vec![1.0, 1.0, 3.0, 2.0, 2.0]);
        // pads crop 1 at the begin, output_padding adds one zero-contribution at the end.
        let y = deconv(win(&[2], &[1], &[1], &[0], AutoPad::Explicit), &[1], false, &[&x, &w]);
        assert_eq!(y.to_f64_vec(), vec![1.0, 3.0, 2.0, 2.0, 0.0]);
        // output_shape input 3 with explicit pads_begin 1.
        let os = Tensor::i64_from_vec(&[1], vec![3]).unwrap();
        let y = deconv(win(&[2], &[1], &[1], &[0], AutoPad::Explicit), &[], false, &[&x, &w, &os]);
        assert_eq!(y.to_f64_vec(), vec![1.0, 3.0, 2.0]);
        // same_upper with output_shape 4: total pad 1 goes to the begin.
        let os = Tensor::i64_from_vec(&[1], vec![4]).unwrap();
        let y = deconv(win(&[2], &[1], &[], &[], AutoPad::SameUpper), &[], false, &[&x, &w, &os]);
        assert_eq!(y.to_f64_vec(), vec![1.0, 3.0, 2.0, 2.0]);
        let y = deconv(win(&[2], &[1], &[], &[], AutoPad::SameLower), &[], false, &[&x, &w, &os]);
        assert_eq!(y.to_f64_vec(), vec![1.0, 1.0, 3.0, 2.0]);
    }

    #[test]
    fn deconv_is_adjoint_of_conv() {
        // <conv(x), y> == <x, deconv(y)> for the same weights (grouped, strided, dilated, padded).
        let groups = 2;
        let (cin, cout) = (3, 2);
        let xs = [1, groups * cin, 7, 8];
        let xv: Vec<f32> = (0..xs.iter().product::<usize>()).map(|i| ((i * 3) % 7) as f32 - 3.0).collect();
        let wv: Vec<f32> = (0..groups * cout * cin * 9).map(|i| ((i * 5) % 9) as f32 - 4.0).collect();
        let window = win(&[2, 3], &[1, 2], &[1, 2], &[2, 1], AutoPad::Explicit);
        let y = conv(window.clone(), true, &t(&xs, xv.clone()), &t(&[groups, cout, cin, 3, 3], wv.clone()));
        let ys = y.shape().to_vec();
        let yv: Vec<f32> = (0..y.len()).map(|i| ((i * 7) % 5) as f32 - 2.0).collect();
        // deconv weights [G, C_in(deconv)=cout, C_out(deconv)=cin, k]: transpose of forward.
        let mut wt = vec![0.0; wv.len()];
        for g in 0..groups {
            for o in 0..cout {
                for i in 0..cin {
                    for k in 0..9 {
                        wt[((g * cout + o) * cin + i) * 9 + k] = wv[((g * cout + o) * cin + i) * 9 + k];
                    }
                }
            }
        }
        let os = Tensor::i64_from_vec(&[2], vec![7, 8]).unwrap();
        let back = deconv(window, &[], true, &[&t(&ys, yv.clone()), &t(&[groups, cout, cin, 3, 3], wt), &os]);
        assert_eq!(back.shape(), &xs);
        let lhs: f64 = y.to_f64_vec().iter().zip(&yv).map(|(a, b)| a * *b as f64).sum();
        let rhs: f64 = back.to_f64_vec().iter().zip(&xv).map(|(a, b)| a * *b as f64).sum();
        assert!((lhs - rhs).abs() < 1e-3, "{lhs} vs {rhs}");
    }
}
