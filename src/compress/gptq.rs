//! GPTQ as NNCF 3.4 computes it for 4-bit weights (`gptq.py`): each MatMul's weight is rounded
//! column by column, every column's rounding error spread over the columns not yet rounded
//! through the inverse Hessian of the layer's inputs, so the layer's output error stays small.
//!
//! - Inputs come layer after layer ([`super::layerwise`]): a layer sees the outputs of the layers
//!   before it with their GPTQ weights already set.
//! - `H = 2/N Σ XᵀX` over the first `subset_size` samples (N samples, X a sample's tokens ×
//!   input channels); channels never active are dead (weight columns zeroed, `H` diagonal 1);
//!   damped by `damp_percent` × mean diagonal.
//! - The upper Cholesky factor `U` of `H⁻¹` (NNCF: Cholesky, inverse, Cholesky again) is computed
//!   here from one Cholesky of the reversed `H` and one triangular inverse, in f32 as NNCF's.
//! - Columns in blocks of `block_size`: a group's scale and zero point come from the weights as
//!   the earlier blocks left them, by min/max or, with scale estimation, by NNCF's estimator on
//!   the group's inputs (5 + 10 steps, 32 samples); each column is rounded and its error
//!   `(w − q) / U[i,i]` subtracted along `U`'s row, within the block at once and beyond it per
//!   block, as NNCF does.
//!
//! Rows are independent given `U`, so they run in parallel chunks. The compressor then codes the
//! dequantized weights with the parameters found here.

use super::activations::InputStats;
use super::layerwise::{self, Layerwise};
use super::lowering::{group_params, quantize, GroupParams, IntFormat};
use super::matrix::WeightMatrix;
use super::scale_estimation::estimate_block;
use super::select::{self, WeightConfig, WeightKind, WeightSite};
use super::{Calibration, GptqLayer, GptqParams, ScaleEstimationParams, WeightStore};
use crate::error::{Error, Result};
use crate::graph::{Graph, Node, Outlet};
use crate::hooks::{Hooks, LogLevel, Stage};
use crate::tensor::Tensor;
use faer::linalg::matmul::triangular::BlockStructure;
use faer::{Accum, Mat, MatMut, MatRef, Par};
use ndarray::{ArrayView2, ArrayViewMut2};
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

/// NNCF's scale estimation inside GPTQ (`ScaleEstimation.calculate_quantization_params`'
/// defaults, not the user's `scale_estimation_params`).
const SCALE_ESTIMATION_IN_GPTQ: ScaleEstimationParams =
    ScaleEstimationParams { subset_size: 32, initial_steps: 5, scale_steps: 10, weight_penalty: -1.0 };

/// One site after GPTQ: its parameters (compressor order), what GPTQ bought, and its compressed
/// bytes when it was compressed right away.
pub(crate) type Rounded = (Vec<GroupParams>, GptqLayer, Option<u64>);

/// The compressor's step for one weight: its values (bytes of its element type) coded with the
/// given parameters, the graph rewritten; returns the compressed bytes.
pub(crate) type Compress =
    fn(&mut Graph, &WeightSite, &WeightConfig, &[u8], &mut dyn WeightStore, &[GroupParams]) -> Result<u64>;

/// Rows the output-error report samples per weight.
const REPORT_ROWS: usize = 64;

/// GPTQ's parameters per 4-bit MatMul site (`[outer, groups, inner]`, as
/// [`super::lowering::compress_with`] takes them), what it bought, and the compressed bytes when
/// the site was compressed here: where the layer-wise runs take new weights as seeds each site
/// is compressed as soon as it is rounded; elsewhere the weights in `graph` are replaced by their
/// dequantized GPTQ values, compressed later with these parameters.
#[allow(clippy::too_many_arguments)]
pub(crate) fn apply(
    graph: &mut Graph,
    sites: &[WeightSite],
    calibration: &Calibration,
    params: &GptqParams,
    scale_estimation: bool,
    store: &mut dyn WeightStore,
    compress: Compress,
    hooks: &mut Hooks,
) -> Result<HashMap<usize, Rounded>> {
    let started = std::time::Instant::now();
    // (site, its activation input and hidden axis, the op input its weight arrives at)
    let mut chosen: Vec<(usize, Outlet, usize, Outlet)> = vec![];
    for (i, s) in sites.iter().enumerate() {
        if s.kind != WeightKind::MatMul || s.config.is_none_or(|c| c.format.bits > 4) {
            continue;
        }
        let Some((act, axis)) = select::activation_input(graph, s) else { continue };
        chosen.push((i, act, axis, graph.nodes[s.op].inputs[s.input]));
    }
    let ops: Vec<usize> = chosen.iter().map(|c| sites[c.0].op).collect();
    let by_op: HashMap<usize, usize> = chosen.iter().enumerate().map(|(k, c)| (sites[c.0].op, k)).collect();
    let generations: Vec<Vec<usize>> =
        layerwise::generations(graph, &ops)?.into_iter().map(|g| g.iter().map(|op| by_op[op]).collect()).collect();
    let mut wanted: Vec<Vec<Outlet>> = vec![];
    let mut weights_of: Vec<Vec<Outlet>> = vec![];
    for g in &generations {
        let mut w: Vec<Outlet> = vec![];
        for &k in g {
            if !w.contains(&chosen[k].1) {
                w.push(chosen[k].1);
            }
        }
        wanted.push(w);
        weights_of.push(g.iter().map(|&k| chosen[k].3).collect());
    }
    let n = params.subset_size.min(calibration.data.len());
    hooks.log(
        LogLevel::Info,
        &format!(
            "GPTQ{}: {} weights in {} generations on {n} calibration samples ({})",
            if scale_estimation { " with scale estimation" } else { "" },
            chosen.len(),
            generations.len(),
            calibration.backend.describe()
        ),
    );
    let mut out = HashMap::new();
    if chosen.is_empty() {
        return Ok(out);
    }
    let mut load = |node: &Node| -> Result<Arc<Tensor>> {
        let et = node.const_type.ok_or_else(|| Error::internal(format!("{} has no type", node.describe())))?;
        let shape = node
            .outputs
            .first()
            .and_then(|p| p.shape.to_static())
            .ok_or_else(|| Error::internal(format!("{} has no static shape", node.describe())))?;
        let raw = store.read(node)?;
        Ok(Arc::new(Tensor::from_bytes(et, &shape, &raw)?))
    };
    let mut runs = Layerwise::new(graph, wanted, &weights_of, calibration.data, n, &calibration.backend, &mut load)?;
    let total = chosen.len();
    let mut done = 0;
    hooks.progress(Stage::Gptq, 0, total)?;
    // Seconds in the model runs, the Hessians and their factors, and the rounding.
    let (mut t_runs, mut t_hessians, mut t_rounding) = (0f64, 0f64, 0f64);
    for generation in &generations {
        let t = std::time::Instant::now();
        let inputs = runs.inputs(graph)?;
        t_runs += t.elapsed().as_secs_f64();
        // Each input's Hessian (and factor) once, before its activations leave memory.
        let t = std::time::Instant::now();
        let mut prepared: HashMap<Outlet, Prepared> = HashMap::new();
        for (act, values) in inputs {
            let &(i, _, axis, _) = generation.iter().map(|&k| &chosen[k]).find(|c| c.1 == act).expect("wanted");
            let p = Prepared::new(&values, axis, params.damp_percent, scale_estimation)
                .map_err(|err| Error::invalid(format!("GPTQ on {}: {err}", graph.nodes[sites[i].op].describe())))?;
            prepared.insert(act, p);
        }
        t_hessians += t.elapsed().as_secs_f64();
        for &k in generation {
            let (i, act, _, weight_outlet) = chosen[k];
            let site = &sites[i];
            let p = &prepared[&act];
            let t = std::time::Instant::now();
            let (found, report, dequantized) = quantize_site(graph, site, p, params.block_size, store)?;
            let layout = site.layout(None).expect("compressed weights have a layout");
            let (tensor, compressed) = if runs.seeds_weights() {
                // The runs take the new weight as a seed: the site is compressed now, and its
                // float weight leaves memory.
                let config = site.config.expect("chosen sites are compressed");
                let bytes = dequantized.to_bytes(site.element_type, layout);
                drop(dequantized);
                let tensor = Arc::new(Tensor::from_bytes(site.element_type, &site.shape, &bytes)?);
                let after = compress(graph, site, &config, &bytes, store, &found)?;
                if !graph.nodes.iter().any(|n| n.inputs.iter().any(|o| o.node == site.constant)) {
                    graph.nodes[site.constant].value = None;
                }
                (tensor, Some(after))
            } else {
                // The runs read the graph: the new weight goes there, compressed at the end.
                (site.set_weight(graph, &dequantized, layout)?, None)
            };
            let as_read = match &*tensor {
                Tensor::F32(_) => tensor,
                other => Arc::new(Tensor::F32(other.to_f32())),
            };
            runs.weight_changed(weight_outlet, as_read);
            t_rounding += t.elapsed().as_secs_f64();
            out.insert(i, (found, report, compressed));
            done += 1;
            hooks.progress(Stage::Gptq, done, total)?;
        }
        drop(prepared);
        crate::memory::release_freed();
    }
    hooks.log(
        LogLevel::Info,
        &format!(
            "GPTQ: {} weights in {:.2} s (layer-wise runs {t_runs:.2} s, Hessians and their factors \
             {t_hessians:.2} s, rounding {t_rounding:.2} s)",
            out.len(),
            started.elapsed().as_secs_f64()
        ),
    );
    Ok(out)
}

/// One layer input over the samples, ready for GPTQ.
struct Prepared {
    cols: usize,
    /// `2/N Σ XᵀX`, undamped (`cols × cols`), for the report.
    hessian: Vec<f32>,
    /// Upper Cholesky factor of the damped Hessian's inverse (`cols × cols`, row-major).
    u: Vec<f32>,
    dead: Vec<bool>,
    /// Samples and tokens the Hessian sums over.
    samples: usize,
    tokens: usize,
    /// Per-channel input magnitudes and the sample means scale estimation scores on
    /// (`cols × n`, channel-major).
    estimation: Option<(Vec<f32>, Vec<f32>, usize)>,
}

impl Prepared {
    fn new(values: &[Arc<Tensor>], axis: usize, damp_percent: f64, scale_estimation: bool) -> Result<Prepared> {
        let samples = values.len();
        let mut cols = 0;
        let mut tokens = 0;
        let mut lower = Mat::<f32>::zeros(0, 0);
        let mut stack: Vec<f32> = vec![];
        let mut stats = InputStats { channel_axis: 1, ..Default::default() };
        for v in values {
            let rank = v.shape().len();
            if rank < 2 || axis >= rank {
                return Err(Error::unsupported(format!("an input of shape {:?}", v.shape())));
            }
            // The sample as tokens × channels, borrowed when it already is one.
            let owned: Vec<f32>;
            let flat: &[f32] = match (&**v, axis + 1 == rank) {
                (Tensor::F32(a), true) if a.as_slice().is_some() => a.as_slice().expect("checked"),
                _ => {
                    let x = v.to_f32();
                    let mut order: Vec<usize> = (0..rank).filter(|&a| a != axis).collect();
                    order.push(axis);
                    owned = x.permuted_axes(order).as_standard_layout().iter().copied().collect();
                    &owned
                }
            };
            let c = v.shape()[axis];
            if cols == 0 {
                cols = c;
                lower = Mat::<f32>::zeros(cols, cols);
            } else if c != cols {
                return Err(Error::mismatch(format!("inputs of {cols} and {c} channels")));
            }
            let t = flat.len() / cols.max(1);
            tokens += t;
            if scale_estimation {
                let mut means = vec![0f64; cols];
                for row in flat.chunks_exact(cols) {
                    for (m, &x) in means.iter_mut().zip(row) {
                        *m += x as f64;
                    }
                }
                stats.means.push(means.into_iter().map(|m| (m / t.max(1) as f64) as f32).collect());
                stats.shapes.push(vec![t, cols]);
            }
            // Samples stacked a few at a time (products with more tokens run faster).
            stack.extend_from_slice(flat);
            if stack.len() >= STACK_FLOATS {
                add_gram(&mut lower, &stack, cols, samples);
                stack.clear();
            }
        }
        if !stack.is_empty() {
            add_gram(&mut lower, &stack, cols, samples);
        }
        drop(stack);
        let mut hessian = vec![0f32; cols * cols];
        for j in 0..cols {
            for i in j..cols {
                hessian[i * cols + j] = lower[(i, j)];
                hessian[j * cols + i] = lower[(i, j)];
            }
        }
        drop(lower);
        let dead: Vec<bool> = (0..cols).map(|c| hessian[c * cols + c] == 0.0).collect();
        let u = inverse_cholesky_upper(&hessian, cols, &dead, damp_percent)?;
        let estimation = scale_estimation.then(|| {
            let (magnitude, x) = stats.magnitudes_and_subset(SCALE_ESTIMATION_IN_GPTQ.subset_size);
            let n = x.first().map_or(0, |v| v.len());
            (magnitude, x.concat(), n)
        });
        Ok(Prepared { cols, hessian, u, dead, samples, tokens, estimation })
    }

    /// Mean squared output error per token of rows changed by `e` (`rows × cols`):
    /// `e H eᵀ · N / (2 · tokens)` averaged over the rows.
    fn output_error(&self, e: &[f32], rows: usize) -> f64 {
        let c = self.cols;
        let mut he = vec![0f32; rows * c];
        faer::linalg::matmul::matmul(
            MatMut::from_row_major_slice_mut(&mut he, rows, c),
            Accum::Replace,
            MatRef::from_row_major_slice(e, rows, c),
            MatRef::from_row_major_slice(&self.hessian, c, c),
            1.0f32,
            Par::Seq,
        );
        let quad: f64 = e.iter().zip(&he).map(|(&a, &b)| a as f64 * b as f64).sum();
        quad * self.samples as f64 / (2.0 * self.tokens.max(1) as f64 * rows.max(1) as f64)
    }
}

/// Tokens × channels floats stacked before their Gram matrix is added (16 MiB).
const STACK_FLOATS: usize = 1 << 22;

/// Adds `2/samples · XᵀX` of the stacked rows `x` (`tokens × cols`) to the lower half of `lower`
/// (the product is symmetric).
fn add_gram(lower: &mut Mat<f32>, x: &[f32], cols: usize, samples: usize) {
    let x = MatRef::from_row_major_slice(x, x.len() / cols, cols);
    faer::linalg::matmul::triangular::matmul(
        lower.as_mut(),
        BlockStructure::TriangularLower,
        Accum::Add,
        x.transpose(),
        BlockStructure::Rectangular,
        x,
        BlockStructure::Rectangular,
        2.0 / samples as f32,
        Par::rayon(0),
    );
}

/// The upper triangular `U` with `UᵀU = (H + damp·I)⁻¹` (dead channels' diagonal set to 1
/// first), from the lower Cholesky factor of `H` reversed in both axes (`J H J = L Lᵀ`):
/// `H = V Vᵀ` with `V = J L J` upper triangular, so `U = V⁻¹ = J L⁻¹ J`.
fn inverse_cholesky_upper(hessian: &[f32], c: usize, dead: &[bool], damp_percent: f64) -> Result<Vec<f32>> {
    use faer::dyn_stack::{MemBuffer, MemStack};
    use faer::linalg::cholesky::llt::factor::{cholesky_in_place, cholesky_in_place_scratch};
    let diag = |i: usize| if dead[i] { 1.0 } else { hessian[i * c + i] as f64 };
    let mean = (0..c).map(diag).sum::<f64>() / c.max(1) as f64;
    let damp = damp_percent * mean;
    // In f32, as NNCF factors; in place, one matrix besides the Hessian at a time (two at the
    // inverse).
    let mut l = Mat::<f32>::from_fn(c, c, |i, j| {
        let (a, b) = (c - 1 - i, c - 1 - j);
        if a == b {
            (diag(a) + damp) as f32
        } else if dead[a] || dead[b] {
            0.0
        } else {
            hessian[a * c + b]
        }
    });
    let par = Par::rayon(0);
    let mut scratch = MemBuffer::new(cholesky_in_place_scratch::<f32>(c, par, Default::default()));
    cholesky_in_place(l.as_mut(), Default::default(), par, MemStack::new(&mut scratch), Default::default()).map_err(
        |_| {
            Error::invalid("the damped Hessian of its inputs is not positive definite (raise gptq_params.damp_percent)")
        },
    )?;
    drop(scratch);
    // J H J = L Lᵀ, so H = (J L J)(J L J)ᵀ and U = (J L J)⁻¹ = J L⁻¹ J.
    let mut inverse = Mat::<f32>::zeros(c, c);
    faer::linalg::triangular_inverse::invert_lower_triangular(inverse.as_mut(), l.as_ref(), par);
    drop(l);
    let mut out = vec![0f32; c * c];
    for i in 0..c {
        for j in i..c {
            out[i * c + j] = inverse[(c - 1 - i, c - 1 - j)];
        }
    }
    Ok(out)
}

/// GPTQ of one weight: its parameters in compressor order, the report, and its dequantized
/// values.
fn quantize_site(
    graph: &mut Graph,
    site: &WeightSite,
    p: &Prepared,
    block: usize,
    store: &mut dyn WeightStore,
) -> Result<(Vec<GroupParams>, GptqLayer, WeightMatrix)> {
    let config = site.config.expect("chosen sites are compressed");
    let layout = site.layout(None).expect("compressed weights have a layout");
    let raw = store.read(&graph.nodes[site.constant])?;
    let original = WeightMatrix::read(&raw, site.element_type, layout)?;
    drop(raw);
    if original.cols != p.cols {
        return Err(Error::invalid(format!(
            "GPTQ on {}: {} input channels, its input has {}",
            graph.nodes[site.op].describe(),
            original.cols,
            p.cols
        )));
    }
    let (rows, cols) = (original.rows, original.cols);
    let group = config.group_size.unwrap_or(cols);
    let ng = cols / group;
    let mut w = original.data.clone();
    for (k, &d) in p.dead.iter().enumerate() {
        if d {
            (0..rows).for_each(|row| w[row * cols + k] = 0.0);
        }
    }
    let (deq, per_row) =
        quantize_rows(&mut w, rows, cols, &p.u, group, block.max(1), config.format, p.estimation.as_ref());
    drop(w);
    let dequantized = WeightMatrix { rows, cols, data: deq };
    let report = report(&original, &dequantized, group, config.format, p);

    // Rows are (outer, inner) pairs; the compressor wants [outer, groups, inner].
    let mut ordered = vec![GroupParams { scale: 0.0, zero_point: 0.0 }; per_row.len()];
    for (r, gp) in per_row.into_iter().enumerate() {
        let (o, inner_i, g) = (r / ng / layout.inner, (r / ng) % layout.inner, r % ng);
        ordered[(o * ng + g) * layout.inner + inner_i] = gp;
    }
    Ok((ordered, report, dequantized))
}

/// Rows per parallel task: a few tasks per thread.
fn chunk_rows(rows: usize) -> usize {
    let tasks = rayon::current_num_threads().max(1) * 4;
    rows.div_ceil(tasks).clamp(8, 256).min(rows.max(1))
}

/// GPTQ of `w` (`rows × cols`, row-major; left as the column updates made it). Returns the
/// dequantized weights and each row's group parameters (`rows × groups`). Within a block the
/// columns are rounded by row chunks in parallel; the block's errors reach the columns after it
/// in one product over all rows.
#[allow(clippy::too_many_arguments)]
fn quantize_rows(
    w: &mut [f32],
    rows: usize,
    cols: usize,
    u: &[f32],
    group: usize,
    block: usize,
    format: IntFormat,
    estimation: Option<&(Vec<f32>, Vec<f32>, usize)>,
) -> (Vec<f32>, Vec<GroupParams>) {
    let ng = cols / group;
    let mut deq = vec![0f32; rows * cols];
    let mut params = vec![GroupParams { scale: 0.0, zero_point: 0.0 }; rows * ng];
    let mut err = vec![0f32; rows * block];
    let (mut ublock, mut spread) = (Vec::<f32>::new(), Vec::<f32>::new());
    let chunk = chunk_rows(rows);
    for i1 in (0..cols).step_by(block) {
        let i2 = (i1 + block).min(cols);
        let bw = i2 - i1;
        let w_now: &[f32] = w;
        deq.par_chunks_mut(chunk * cols)
            .zip(params.par_chunks_mut(chunk * ng))
            .zip(err[..rows * bw].par_chunks_mut(chunk * bw))
            .enumerate()
            .for_each(|(c, ((deq, params), err))| {
                let r0 = c * chunk;
                let r = err.len() / bw;
                let w_rows = &w_now[r0 * cols..(r0 + r) * cols];
                round_block(w_rows, deq, params, err, r, cols, u, i1, i2, group, format, estimation);
            });
        if i2 < cols {
            // The block's errors spread over the columns after it (contiguous operands: the
            // engine's product).
            let rest = cols - i2;
            ublock.clear();
            for k in i1..i2 {
                ublock.extend_from_slice(&u[k * cols + i2..(k + 1) * cols]);
            }
            spread.resize(rows * rest, 0.0);
            crate::ops::gemm::gemm_f32(
                ArrayView2::from_shape((rows, bw), &err[..rows * bw]).expect("sized above"),
                ArrayView2::from_shape((bw, rest), &ublock[..]).expect("sized above"),
                ArrayViewMut2::from_shape((rows, rest), &mut spread[..]).expect("sized above"),
                0.0,
            );
            w.par_chunks_mut(cols).zip(spread.par_chunks(rest)).for_each(|(row, d)| {
                for (x, &v) in row[i2..].iter_mut().zip(d) {
                    *x -= v;
                }
            });
        }
    }
    (deq, params)
}

/// Columns `i1..i2` of `r` rows (`w_rows`: the weights as the earlier blocks left them):
/// parameters of the groups starting here, dequantized values into `deq`, the scaled errors into
/// `err` (`r × (i2 − i1)`).
#[allow(clippy::too_many_arguments)]
fn round_block(
    w_rows: &[f32],
    deq: &mut [f32],
    params: &mut [GroupParams],
    err: &mut [f32],
    r: usize,
    cols: usize,
    u: &[f32],
    i1: usize,
    i2: usize,
    group: usize,
    format: IntFormat,
    estimation: Option<&(Vec<f32>, Vec<f32>, usize)>,
) {
    let ng = cols / group;
    let bw = i2 - i1;
    let (low, high) = format.levels();
    let mut wb = vec![0f32; r * bw];
    for k in 0..r {
        wb[k * bw..(k + 1) * bw].copy_from_slice(&w_rows[k * cols + i1..k * cols + i2]);
    }
    let mut wg = vec![0f32; r * group];
    for i in 0..bw {
        let col = i1 + i;
        if col.is_multiple_of(group) {
            // The group's parameters from the weights as the earlier blocks left them.
            let g = col / group;
            for k in 0..r {
                wg[k * group..(k + 1) * group].copy_from_slice(&w_rows[k * cols + col..k * cols + col + group]);
            }
            let found: Vec<GroupParams> = match estimation {
                Some((magnitude, x, n)) => {
                    let (s, xg) = (&magnitude[col..col + group], &x[col * n..(col + group) * n]);
                    estimate_block(&wg, r, group, s, xg, *n, format, &SCALE_ESTIMATION_IN_GPTQ).0
                }
                None => (0..r)
                    .map(|k| {
                        let v = &wg[k * group..(k + 1) * group];
                        let (mn, mx) =
                            v.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
                        group_params(format, mn, mx)
                    })
                    .collect(),
            };
            for (k, gp) in found.into_iter().enumerate() {
                params[k * ng + g] = gp;
            }
        }
        let d = u[col * cols + col];
        let urow = &u[col * cols + col..col * cols + i2];
        for k in 0..r {
            let gp = params[k * ng + col / group];
            let wv = wb[k * bw + i];
            let q = (quantize(wv, gp, low, high) - gp.zero_point) * gp.scale;
            deq[k * cols + col] = q;
            let e = (wv - q) / d;
            err[k * bw + i] = e;
            for (x, &h) in wb[k * bw + i..(k + 1) * bw].iter_mut().zip(urow) {
                *x -= e * h;
            }
        }
    }
}

/// The output error of a sample of rows: rounded to the nearest with min/max parameters, and by
/// GPTQ.
fn report(original: &WeightMatrix, gptq: &WeightMatrix, group: usize, format: IntFormat, p: &Prepared) -> GptqLayer {
    let (rows, cols) = (original.rows, original.cols);
    let step = rows.div_ceil(REPORT_ROWS).max(1);
    let picked: Vec<usize> = (0..rows).step_by(step).collect();
    let (low, high) = format.levels();
    let mut nearest = Vec::with_capacity(picked.len() * cols);
    let mut ours = Vec::with_capacity(picked.len() * cols);
    for &r in &picked {
        let row = original.row(r);
        for chunk in row.chunks(group) {
            let (mn, mx) = chunk.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
            let gp = group_params(format, mn, mx);
            nearest.extend(chunk.iter().map(|&v| v - (quantize(v, gp, low, high) - gp.zero_point) * gp.scale));
        }
        ours.extend(row.iter().zip(gptq.row(r)).map(|(&a, &b)| a - b));
    }
    GptqLayer {
        output_mse_min_max: p.output_error(&nearest, picked.len()),
        output_mse: p.output_error(&ours, picked.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small positive definite matrix and a weight: GPTQ's output error is no larger than
    /// rounding to the nearest, and U is H⁻¹'s upper Cholesky factor.
    #[test]
    fn gptq_lowers_the_output_error_and_u_factors_the_inverse() {
        let (c, t, rows) = (32usize, 200usize, 8usize);
        let mut seed = 7u64;
        let mut rnd = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 33) as f64 / (1u64 << 31) as f64 - 0.5) as f32
        };
        // Correlated inputs: each token mixes a few shared factors.
        let factors: Vec<f32> = (0..4 * c).map(|_| rnd()).collect();
        let mut x: Vec<f32> = Vec::with_capacity(t * c);
        for _ in 0..t {
            let a: Vec<f32> = (0..4).map(|_| rnd()).collect();
            for j in 0..c {
                let v: f32 = (0..4).map(|k| a[k] * factors[k * c + j]).sum();
                x.push(v + 0.1 * rnd());
            }
        }
        let tensor = Arc::new(Tensor::f32_from_vec(&[1, t, c], x).unwrap());
        let p = Prepared::new(&[tensor], 2, 0.01, false).unwrap();
        // UᵀU · (H + damp) = I
        let damp = 0.01 * (0..c).map(|i| p.hessian[i * c + i] as f64).sum::<f64>() / c as f64;
        for i in 0..c {
            for j in 0..c {
                let mut v = 0f64;
                for k in 0..c {
                    let inv_ik: f64 = (0..c).map(|m| p.u[m * c + i] as f64 * p.u[m * c + k] as f64).sum();
                    let h = p.hessian[k * c + j] as f64 + if k == j { damp } else { 0.0 };
                    v += inv_ik * h;
                }
                assert!((v - if i == j { 1.0 } else { 0.0 }).abs() < 1e-3, "({i},{j}) = {v}");
            }
        }
        let original = WeightMatrix { rows, cols: c, data: (0..rows * c).map(|_| rnd()).collect() };
        let format = IntFormat { bits: 4, asymmetric: true };
        let mut w = original.data.clone();
        let (deq, params) = quantize_rows(&mut w, rows, c, &p.u, 16, 8, format, None);
        assert_eq!(params.len(), rows * 2);
        // Every value is on its group's grid.
        for r in 0..rows {
            for j in 0..c {
                let gp = params[r * 2 + j / 16];
                let code = deq[r * c + j] / gp.scale + gp.zero_point;
                assert!((code - code.round()).abs() < 1e-3 && (0.0..=15.0).contains(&code.round()));
            }
        }
        let gptq = WeightMatrix { rows, cols: c, data: deq };
        let r = report(&original, &gptq, 16, format, &p);
        assert!(r.output_mse < r.output_mse_min_max * 0.9, "{r:?}");
    }
}
