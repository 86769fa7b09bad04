//! Activation-aware weight scaling (AWQ) as NNCF applies it before 4-bit compression
//! (`awq.py`): for a 4-bit MatMul whose input comes from something that can absorb a per-channel
//! scale, input channel c of the weight is multiplied by `s_c` and the input divided by it —
//! folded into the previous MatMul's rows, or a Multiply inserted after an activation.
//!
//! The patterns, first match wins: `MatMul → Multiply → MatMul` (the previous MatMul absorbs the
//! scale: up_proj for a gated MLP's down_proj), `activation → Multiply → MatMul` and
//! `activation → MatMul` (a Multiply by `1/s` is inserted after the activation).
//!
//! With statistics, `s` is searched per group for the groups holding the 0.2 % input channels
//! of largest magnitude: `s = clip(magnitude, q10, 100)^α` for α on a grid, scored by the mean
//! absolute error of the group's output on per-sample token means. Without, `s = 1 / mean |W|`
//! per input channel (NNCF's data-free AWQ).

use super::activations::{InputStats, SiteStatistics};
use super::lowering::{group_params, quantize, IntFormat};
use super::matrix::{self, WeightMatrix};
use super::select::{WeightKind, WeightSite};
use super::{AwqLayer, AwqParams, WeightStore};
use crate::error::{Error, Result};
use crate::graph::{Attrs, Graph, NodeId, Outlet, PortInfo};
use crate::hooks::{Hooks, LogLevel, Stage};
use crate::tensor::{ElementType, Tensor};
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};

/// NNCF's atomic activations: ops an AWQ scale can be inserted after.
const ATOMIC_ACTIVATIONS: &[&str] =
    &["Relu", "Clamp", "Elu", "PRelu", "Sigmoid", "HSigmoid", "HardSigmoid", "Swish", "HSwish", "Selu"];

/// Where a target's input scale goes.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Merge {
    /// Into the rows of this weight site (the previous MatMul's output channels).
    Rows(usize),
    /// A Multiply inserted after this outlet, before all its readers.
    After(Outlet),
}

/// One AWQ application: the target weight site, its activation input, and the merge.
#[derive(Clone, Copy, Debug)]
struct Target {
    site: usize,
    merge: Merge,
    /// The merge node's own input statistics (the fp16 overflow guard), for `Merge::Rows`.
    merge_site: Option<usize>,
}

/// What AWQ did, for the log.
#[derive(Clone, Debug, Default)]
struct AwqSummary {
    /// Target weights scaled.
    pub targets: usize,
    /// Groups whose scale the search changed.
    pub groups_scaled: usize,
    pub data_aware: bool,
}

/// The targets, in topological order of the target ops.
fn find_targets(graph: &Graph, sites: &[WeightSite]) -> Result<Vec<Target>> {
    let site_of_op: HashMap<NodeId, Vec<usize>> = sites.iter().enumerate().fold(HashMap::new(), |mut m, (i, s)| {
        m.entry(s.op).or_default().push(i);
        m
    });
    let position: HashMap<NodeId, usize> = graph.topo_order()?.into_iter().enumerate().map(|(k, n)| (n, k)).collect();
    let mut candidates: Vec<usize> = (0..sites.len())
        .filter(|&i| {
            let s = &sites[i];
            s.kind == WeightKind::MatMul
                && s.config.is_some_and(|c| c.format.bits <= 4)
                && site_of_op.get(&s.op).is_some_and(|v| v.len() == 1)
        })
        .collect();
    candidates.sort_by_key(|&i| position.get(&sites[i].op).copied().unwrap_or(usize::MAX));
    let is_op = |o: Outlet, types: &[&str]| types.contains(&graph.nodes[o.node].op_type.as_str());
    let weight_site = |node: NodeId| site_of_op.get(&node).and_then(|v| (v.len() == 1).then(|| v[0]));
    // Per pattern, the nodes a match already used (NNCF's matcher does not reuse them).
    let mut used: [HashSet<NodeId>; 3] = Default::default();
    let mut targets = vec![];
    for i in candidates {
        let site = &sites[i];
        let Some((act, _)) = super::select::activation_input(graph, site) else { continue };
        let producer = &graph.nodes[act.node];
        let mut found: Option<Target> = None;
        // 1. MatMul → Multiply → MatMul.
        if producer.op_type == "Multiply" {
            for &inp in &producer.inputs {
                if is_op(inp, &["MatMul"])
                    && !used[0].contains(&inp.node)
                    && !used[0].contains(&act.node)
                    && !used[0].contains(&site.op)
                {
                    used[0].extend([inp.node, act.node, site.op]);
                    let rank = sites[i].shape.len();
                    found = Some(match weight_site(inp.node) {
                        Some(p) if sites[p].shape.len() == rank && sites[p].kind == WeightKind::MatMul => {
                            Target { site: i, merge: Merge::Rows(p), merge_site: Some(p) }
                        }
                        _ => Target { site: i, merge: Merge::After(inp), merge_site: None },
                    });
                    break;
                }
            }
        }
        // 2. activation → Multiply → MatMul.
        if found.is_none() && producer.op_type == "Multiply" {
            for &inp in &producer.inputs {
                if is_op(inp, ATOMIC_ACTIVATIONS) && ![inp.node, act.node, site.op].iter().any(|n| used[1].contains(n))
                {
                    used[1].extend([inp.node, act.node, site.op]);
                    found = Some(Target { site: i, merge: Merge::After(inp), merge_site: None });
                    break;
                }
            }
        }
        // 3. activation → MatMul.
        if found.is_none() && is_op(act, ATOMIC_ACTIVATIONS) && ![act.node, site.op].iter().any(|n| used[2].contains(n))
        {
            used[2].extend([act.node, site.op]);
            found = Some(Target { site: i, merge: Merge::After(act), merge_site: None });
        }
        targets.extend(found);
    }
    Ok(targets)
}

/// Applies AWQ to the 4-bit MatMuls that match a pattern, rewriting their weights (and the
/// merge weights, or inserting Multiplies) in `graph`. With `statistics` the search is
/// data-aware and the targets' input means are rescaled for the methods that follow.
pub(crate) fn apply(
    graph: &mut Graph,
    sites: &[WeightSite],
    mut statistics: Option<&mut SiteStatistics>,
    params: &AwqParams,
    store: &mut dyn WeightStore,
    hooks: &mut Hooks,
) -> Result<HashMap<usize, AwqLayer>> {
    let started = std::time::Instant::now();
    let mut layers = HashMap::new();
    let targets = find_targets(graph, sites)?;
    let mut summary = AwqSummary { data_aware: statistics.is_some(), ..Default::default() };
    if targets.is_empty() {
        hooks.log(LogLevel::Info, "AWQ: no MatMul matches its patterns; skipped");
        return Ok(layers);
    }
    for (k, t) in targets.iter().enumerate() {
        hooks.progress(Stage::Awq, k, targets.len())?;
        let site = &sites[t.site];
        let config = site.config.expect("targets are compressed");
        let layout = site.layout(None).expect("compressed weights have a layout");
        let raw = store.read(&graph.nodes[site.constant])?;
        let mut weight = WeightMatrix::read(&raw, site.element_type, layout)?;
        drop(raw);
        let scale = match statistics.as_deref() {
            Some(stats) => {
                let own = stats.for_site(t.site).ok_or_else(|| {
                    Error::internal(format!("AWQ: no input statistics for {}", graph.nodes[site.op].describe()))
                })?;
                let guard = match t.merge_site {
                    Some(p) => Some(overflow_guard(graph, &sites[p], stats.for_site(p), params, store)?),
                    None => None,
                };
                let group = config.group_size.unwrap_or(weight.cols);
                let (scale, changed) = search(&weight, own, group, config.format, params, guard.as_ref());
                summary.groups_scaled += changed;
                (scale, changed)
            }
            None => (data_free_scale(&weight), weight.cols),
        };
        let (scale, changed) = scale;
        let with = match t.merge {
            Merge::Rows(p) => graph.nodes[sites[p].op].name.clone(),
            Merge::After(o) => format!("a Multiply after {}", graph.nodes[o.node].name),
        };
        layers.insert(t.site, AwqLayer { role: "scaled".into(), groups_scaled: changed, with });
        if let Merge::Rows(p) = t.merge {
            let with = graph.nodes[site.op].name.clone();
            layers.insert(p, AwqLayer { role: "merged".into(), groups_scaled: 0, with });
        }
        // Input channel c of the weight × s_c, rounded back to the weight's type.
        for r in 0..weight.rows {
            for (w, &s) in weight.data[r * weight.cols..(r + 1) * weight.cols].iter_mut().zip(&scale) {
                *w *= s;
            }
        }
        site.set_weight(graph, &weight, layout)?;
        let inverse: Vec<f32> = scale.iter().map(|&s| 1.0 / s).collect();
        match t.merge {
            Merge::Rows(p) => {
                let ps = &sites[p];
                let p_layout = ps.layout(None).expect("merge weights have a layout");
                let raw = store.read(&graph.nodes[ps.constant])?;
                let mut merged = WeightMatrix::read(&raw, ps.element_type, p_layout)?;
                if merged.rows != inverse.len() {
                    return Err(Error::unsupported(format!(
                        "AWQ: {} has {} output channels where {} reads {}",
                        graph.nodes[ps.op].describe(),
                        merged.rows,
                        graph.nodes[site.op].describe(),
                        inverse.len()
                    )));
                }
                for (r, &a) in inverse.iter().enumerate() {
                    merged.data[r * merged.cols..(r + 1) * merged.cols].iter_mut().for_each(|w| *w *= a);
                }
                ps.set_weight(graph, &merged, p_layout)?;
            }
            Merge::After(outlet) => insert_scale(graph, outlet, site, &inverse)?,
        }
        if let Some(stats) = statistics.as_deref_mut() {
            if let Some(s) = stats.for_site_mut_own(t.site) {
                for m in &mut s.means {
                    m.iter_mut().zip(&inverse).for_each(|(v, &a)| *v *= a);
                }
            }
        }
        summary.targets += 1;
    }
    hooks.progress(Stage::Awq, targets.len(), targets.len())?;
    hooks.log(
        LogLevel::Info,
        &format!(
            "AWQ ({}): {} weights scaled, {} groups searched to a new scale, in {:.2} s",
            if summary.data_aware { "data-aware" } else { "data-free" },
            summary.targets,
            summary.groups_scaled,
            started.elapsed().as_secs_f64()
        ),
    );
    Ok(layers)
}

/// NNCF's data-free scale: one over the mean |w| of each input channel (at least f32's eps).
fn data_free_scale(w: &WeightMatrix) -> Vec<f32> {
    (0..w.cols)
        .map(|c| {
            let col: Vec<f32> = (0..w.rows).map(|r| w.data[r * w.cols + c].abs()).collect();
            // A sum down the rows: NumPy reduces a non-contiguous axis in order.
            let sum = col.iter().fold(0f32, |a, &b| a + b);
            1.0 / (sum / w.rows as f32).max(f32::EPSILON)
        })
        .collect()
}

/// The fp16 overflow guard of a merge: the previous MatMul's mean |w| per output row, the
/// largest magnitude of its input, and its input channels.
struct OverflowGuard {
    row_mean_abs: Vec<f32>,
    input_max: f32,
    inputs: usize,
}

fn overflow_guard(
    graph: &Graph,
    merge: &WeightSite,
    stats: Option<&InputStats>,
    params: &AwqParams,
    store: &mut dyn WeightStore,
) -> Result<OverflowGuard> {
    let layout = merge.layout(None).expect("merge weights have a layout");
    let raw = store.read(&graph.nodes[merge.constant])?;
    let w = WeightMatrix::read(&raw, merge.element_type, layout)?;
    let row_mean_abs = (0..w.rows)
        .map(|r| {
            let abs: Vec<f32> = w.row(r).iter().map(|v| v.abs()).collect();
            let m = matrix::mean(&abs);
            // NumPy's mean of an f16 array accumulates in f32 and returns f16.
            if merge.element_type == ElementType::F16 {
                half::f16::from_f32(m).to_f32()
            } else {
                m
            }
        })
        .collect();
    let input_max = match stats {
        Some(s) => s.magnitudes_and_subset(params.subset_size).0.into_iter().fold(f32::NEG_INFINITY, f32::max),
        None => 0.0,
    };
    Ok(OverflowGuard { row_mean_abs, input_max, inputs: w.cols })
}

/// The data-aware search: per input channel, the scale (1 outside the searched groups), and the
/// number of groups given a new one.
fn search(
    w: &WeightMatrix,
    stats: &InputStats,
    group: usize,
    format: IntFormat,
    params: &AwqParams,
    guard: Option<&OverflowGuard>,
) -> (Vec<f32>, usize) {
    let (magnitude, x) = stats.magnitudes_and_subset(params.subset_size);
    let h = magnitude.len();
    let n = x.first().map_or(0, |v| v.len());
    let top_k = ((h as f64 * params.percent_to_apply) as usize).max(1);
    let mut order: Vec<usize> = (0..h).collect();
    order.sort_by(|&a, &b| magnitude[b].total_cmp(&magnitude[a]));
    let mut groups: Vec<usize> = order[..top_k.min(h)].iter().map(|&c| c / group).collect();
    groups.sort_unstable();
    groups.dedup();
    let alpha_step = (params.alpha_max - params.alpha_min) / params.steps as f64;
    let alphas: Vec<f32> = (0..params.steps)
        .scan(params.alpha_min, |a, _| {
            let v = *a;
            *a += alpha_step;
            Some(v as f32)
        })
        .collect();
    let results: Vec<(usize, Option<Vec<f32>>)> = groups
        .par_iter()
        .map(|&g| (g, search_group(w, &magnitude, &x, n, g * group, group, format, &alphas, guard)))
        .collect();
    let mut scale = vec![1f32; h];
    let mut changed = 0;
    for (g, best) in results {
        if let Some(best) = best {
            scale[g * group..(g + 1) * group].copy_from_slice(&best);
            changed += 1;
        }
    }
    (scale, changed)
}

/// One group's search; the best scale when some α beats the starting bound `max |W·X|`.
#[allow(clippy::too_many_arguments)]
fn search_group(
    w: &WeightMatrix,
    magnitude: &[f32],
    x: &[Vec<f32>],
    n: usize,
    offset: usize,
    group: usize,
    format: IntFormat,
    alphas: &[f32],
    guard: Option<&OverflowGuard>,
) -> Option<Vec<f32>> {
    let rows = w.rows;
    let gscale_raw = &magnitude[offset..offset + group];
    let a_min = matrix::quantile(gscale_raw, 0.1) as f32;
    let gscale: Vec<f32> = gscale_raw.iter().map(|&v| v.max(a_min).min(100.0)).collect();
    let gweight: Vec<f32> = (0..rows).flat_map(|r| w.row(r)[offset..offset + group].iter().copied()).collect();
    let gacts: Vec<f32> = (0..group).flat_map(|c| x[offset + c].iter().copied()).collect();
    let fp_out = matrix::matmul(&gweight, &gacts, rows, group, n);
    let bound = fp_out.iter().fold(0f32, |a, &v| a.max(v.abs()));
    let (low, high) = format.levels();
    let diffs: Vec<(f32, Vec<f32>)> = alphas
        .par_iter()
        .map(|&alpha| {
            let mut cur: Vec<f32> = gscale.iter().map(|&s| pow(s, alpha)).collect();
            if let Some(g) = guard {
                clamp_for_fp16(&mut cur, g, offset);
            }
            let mut deq = vec![0f32; rows * group];
            for r in 0..rows {
                let scaled: Vec<f32> =
                    gweight[r * group..(r + 1) * group].iter().zip(&cur).map(|(&v, &s)| v * s).collect();
                let (mn, mx) =
                    scaled.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
                let p = group_params(format, mn, mx);
                for (d, &v) in deq[r * group..(r + 1) * group].iter_mut().zip(&scaled) {
                    *d = (quantize(v, p, low, high) - p.zero_point) * p.scale;
                }
            }
            let sacts: Vec<f32> = (0..group)
                .flat_map(|c| {
                    let s = cur[c];
                    gacts[c * n..(c + 1) * n].iter().map(move |&v| v / s)
                })
                .collect();
            let out = matrix::matmul(&deq, &sacts, rows, group, n);
            let abs: Vec<f32> = out.iter().zip(&fp_out).map(|(&a, &b)| (a - b).abs()).collect();
            (matrix::mean(&abs), cur)
        })
        .collect();
    let mut best: Option<Vec<f32>> = None;
    let mut min_diff = bound;
    for (d, cur) in diffs {
        if d < min_diff {
            min_diff = d;
            best = Some(cur);
        }
    }
    best
}

/// `s^α` in f32 (NumPy: α = 0 gives exactly 1).
fn pow(s: f32, alpha: f32) -> f32 {
    if alpha == 0.0 {
        1.0
    } else {
        (s as f64).powf(alpha as f64) as f32
    }
}

/// NNCF's guard against fp16 overflow in the merged MatMul: where the previous layer's outputs
/// could reach a quarter of f16's range once divided by the scale, the scale is raised to keep
/// them below it.
fn clamp_for_fp16(cur: &mut [f32], g: &OverflowGuard, offset: usize) {
    const THRESHOLD: f32 = 0.25 * 65504.0;
    let prev = &g.row_mean_abs[offset..offset + cur.len()];
    let magnitudes: Vec<f32> =
        prev.iter().zip(cur.iter()).map(|(&p, &c)| (p / c) * g.input_max * g.inputs as f32).collect();
    if magnitudes.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) >= THRESHOLD {
        for ((c, &m), &p) in cur.iter_mut().zip(&magnitudes).zip(prev) {
            if m >= THRESHOLD {
                *c = p * g.input_max * g.inputs as f32 / THRESHOLD;
            }
        }
    }
}

/// Inserts `outlet × scale` (a per-channel constant on the activation's channel axis) before
/// every reader of `outlet`.
fn insert_scale(graph: &mut Graph, outlet: Outlet, target: &WeightSite, scale: &[f32]) -> Result<()> {
    let info = graph.outlet_info(outlet).clone();
    let (_, axis) = super::select::activation_input(graph, target)
        .ok_or_else(|| Error::internal("AWQ target without an activation input"))?;
    let rank = info.shape.rank().ok_or_else(|| Error::unsupported("AWQ: an activation of unknown rank"))?;
    let mut shape = vec![1usize; rank];
    shape[axis] = scale.len();
    let et = info.element_type;
    let values = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&shape), scale.to_vec())
        .map_err(|e| Error::internal(format!("AWQ scale: {e}")))?;
    let value = match et {
        ElementType::F16 => Tensor::F16(values.mapv(half::f16::from_f32)),
        _ => Tensor::F32(values),
    };
    let name = format!("{}/awq_mul", graph.nodes[outlet.node].name);
    let readers = graph.consumers().remove(&outlet).unwrap_or_default();
    let c = graph.add_const(format!("{name}/scale"), value);
    let mul = graph.add_op(
        name,
        "Multiply",
        "opset1",
        Attrs::from_pairs(&[("auto_broadcast", "numpy")]),
        vec![outlet, Outlet::new(c, 0)],
        vec![PortInfo::new(et, info.shape.clone())],
    );
    for (reader, input) in readers {
        graph.set_input(reader, input, Outlet::new(mul, 0));
    }
    Ok(())
}
