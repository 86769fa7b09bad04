//! Which weights are compressed and how, following NNCF's `compress_weights` rules: MatMul,
//! embedding (Gather of a constant table) and convolution weights qualify; every one starts in the
//! backup precision; the ratio-defining ones (MatMuls but the last, plus embeddings with
//! `all_layers`) go to the primary precision, all of them when `ratio` is 1, else the ones with
//! the largest int8 error first until the share of parameters reaches `ratio`.

use super::lowering::{IntFormat, Layout};
use super::{BackupMode, CompressMode, CompressOptions, GroupSizeFallback};
use crate::error::{Error, Result};
use crate::graph::{Graph, NodeId};
use crate::quant::placement::{ignored_patterns, ignored_reason, unmatched_ignored};
use crate::tensor::{ElementType, Tensor};
use std::collections::HashSet;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightKind {
    MatMul,
    Embedding,
    Convolution,
}

/// How one weight is stored: the code format and group size (`None`: per output channel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeightConfig {
    pub format: IntFormat,
    pub group_size: Option<usize>,
}

impl WeightConfig {
    pub fn name(&self) -> String {
        let mode = format!("int{}_{}", self.format.bits, if self.format.asymmetric { "asym" } else { "sym" });
        match self.group_size {
            Some(g) => format!("{mode}, group size {g}"),
            None => format!("{mode}, per-channel"),
        }
    }
}

/// One constant weight of a weighted op.
#[derive(Clone, Debug)]
pub struct WeightSite {
    /// The `Const` holding the weight.
    pub constant: NodeId,
    /// The op reading it (the first one, for shared weights) and its input index.
    pub op: NodeId,
    pub input: usize,
    pub kind: WeightKind,
    pub shape: Vec<usize>,
    pub element_type: ElementType,
    /// The axes statistics are reduced over (all but the output channels).
    pub reduction_axes: Vec<usize>,
    /// `None`: left in floating point (`skipped` says why).
    pub config: Option<WeightConfig>,
    /// Not ignored and of a layout that can be compressed.
    pub eligible: bool,
    pub ratio_defining: bool,
    pub skipped: Option<String>,
}

impl WeightSite {
    pub fn num_weights(&self) -> usize {
        self.shape.iter().product()
    }

    /// The weight as `[outer, reduce, inner]`, when the reduction axes are one block.
    pub fn layout(&self, group: Option<usize>) -> Option<Layout> {
        let (&first, &last) = (self.reduction_axes.first()?, self.reduction_axes.last()?);
        if last - first + 1 != self.reduction_axes.len() {
            return None;
        }
        let outer = self.shape[..first].iter().product();
        let reduce: usize = self.shape[first..=last].iter().product();
        let inner = self.shape[last + 1..].iter().product();
        Some(Layout { outer, reduce, inner, group: group.unwrap_or(reduce) })
    }

    /// Replaces the weight's constant value with `m` laid out as `layout`, in the weight's own
    /// element type (rounded as NNCF writes a rewritten weight); returns the new value.
    pub fn set_weight(
        &self,
        graph: &mut Graph,
        m: &super::matrix::WeightMatrix,
        layout: Layout,
    ) -> Result<std::sync::Arc<Tensor>> {
        let bytes = m.to_bytes(self.element_type, layout);
        let tensor = std::sync::Arc::new(Tensor::from_bytes(self.element_type, &self.shape, &bytes)?);
        let node = &mut graph.nodes[self.constant];
        node.value = Some(tensor.clone());
        node.stored = None;
        Ok(tensor)
    }
}

/// A weighted op, its kind and its (input index, weight Const) pairs.
type Candidate = (NodeId, WeightKind, Vec<(usize, NodeId)>);

fn is_float(t: ElementType) -> bool {
    matches!(t, ElementType::F32 | ElementType::F16 | ElementType::BF16 | ElementType::F64)
}

/// The Const behind an op input, looking through Convert (FP16 weights are stored as
/// `Const(f16) -> Convert(f32)`).
pub fn weight_constant(graph: &Graph, op: NodeId, input: usize) -> Option<NodeId> {
    let mut o = *graph.nodes[op].inputs.get(input)?;
    loop {
        let n = &graph.nodes[o.node];
        if n.is_const() {
            return Some(o.node);
        }
        if n.op_type != "Convert" || n.inputs.len() != 1 {
            return None;
        }
        o = n.inputs[0];
    }
}

/// A MatMul's activation input (the input that is not `site`'s weight) and its hidden axis:
/// the last, or the one before it for a transposed first input. None for other ops, inputs of
/// unknown rank, or a MatMul of two weights.
pub fn activation_input(graph: &Graph, site: &WeightSite) -> Option<(crate::graph::Outlet, usize)> {
    let n = &graph.nodes[site.op];
    if site.kind != WeightKind::MatMul || n.inputs.len() != 2 {
        return None;
    }
    let k = 1 - site.input;
    if weight_constant(graph, site.op, k).is_some() {
        return None;
    }
    let outlet = n.inputs[k];
    let rank = graph.outlet_info(outlet).shape.rank()?;
    if rank < 2 {
        return None;
    }
    let key = if k == 0 { "transpose_a" } else { "transpose_b" };
    let transposed = n.attrs.get(key).is_some_and(|v| v.trim() == "true");
    // The hidden (reduced) axis: the last of a plain first input, the one before of a transposed
    // first input; for an activation on the second input, the reverse.
    let axis = if (k == 0) != transposed { rank - 1 } else { rank - 2 };
    Some((outlet, axis))
}

/// Reduction axes per NNCF's weight layouts.
fn reduction_axes(graph: &Graph, op: NodeId, input: usize, kind: WeightKind, rank: usize) -> Vec<usize> {
    let n = &graph.nodes[op];
    let channel_axes: Vec<usize> = match kind {
        WeightKind::MatMul => {
            if rank < 2 {
                vec![]
            } else {
                let key = if input == 0 { "transpose_a" } else { "transpose_b" };
                let transposed = n.attrs.get(key).is_some_and(|v| v.trim() == "true");
                // [.., C_IN, C_OUT] for an untransposed second input (or a transposed first).
                let in_out = (transposed && input == 0) || (!transposed && input == 1);
                let c_out = if in_out { rank - 1 } else { rank - 2 };
                (0..rank - 2).chain(std::iter::once(c_out)).collect()
            }
        }
        WeightKind::Embedding => vec![0],
        WeightKind::Convolution => match n.op_type.as_str() {
            "Convolution" => vec![0],
            "GroupConvolution" => vec![0, 1],
            "ConvolutionBackpropData" => vec![1],
            _ => vec![0, 2], // GroupConvolutionBackpropData: [G, C_IN, C_OUT, ...]
        },
    };
    (0..rank).filter(|a| !channel_axes.contains(a)).collect()
}

fn weighted_inputs(graph: &Graph, op: NodeId) -> Option<(WeightKind, Vec<usize>)> {
    let n = &graph.nodes[op];
    match n.op_type.as_str() {
        "MatMul" => Some((WeightKind::MatMul, vec![0, 1])),
        "Gather" => Some((WeightKind::Embedding, vec![0])),
        "Convolution" | "GroupConvolution" | "ConvolutionBackpropData" | "GroupConvolutionBackpropData" => {
            Some((WeightKind::Convolution, vec![1]))
        }
        _ => None,
    }
}

pub fn primary_config(options: &CompressOptions) -> WeightConfig {
    let (bits, asymmetric) = match options.mode {
        CompressMode::Int8Asym => (8, true),
        CompressMode::Int8Sym => (8, false),
        CompressMode::Int4Asym => (4, true),
        CompressMode::Int4Sym => (4, false),
    };
    let group = options.effective_group_size();
    WeightConfig { format: IntFormat { bits, asymmetric }, group_size: (group > 0).then_some(group as usize) }
}

pub fn backup_config(options: &CompressOptions) -> Option<WeightConfig> {
    let asymmetric = match options.backup_mode {
        BackupMode::None => return None,
        BackupMode::Int8Asym => true,
        BackupMode::Int8Sym => false,
    };
    Some(WeightConfig { format: IntFormat { bits: 8, asymmetric }, group_size: None })
}

/// Finds the weights and assigns each its starting configuration (backup precision, primary for
/// the ratio-defining ones). Mixed precision for `ratio < 1` is applied afterwards, with the
/// weights' values.
pub fn select_weights(graph: &Graph, options: &CompressOptions) -> Result<Vec<WeightSite>> {
    let regexes = ignored_patterns(&options.ignored)?;
    // A name or pattern matching no layer is an error (NNCF validates the scope the same way),
    // so a typo does not silently compress a layer.
    if let Some(first) = unmatched_ignored(graph, &options.ignored).into_iter().next() {
        return Err(Error::invalid(first));
    }
    let order = graph.topo_order()?;
    let is_const = graph.constant_outlets()?;
    let patterns = crate::graph::patterns::transformer_ignored(graph);
    let candidates = find_candidates(graph, &order, &is_const);
    let backup = backup_config(options);
    let n = candidates.len();
    let mut sites = vec![];
    let mut seen: HashSet<NodeId> = HashSet::new();
    let mut last_layer_skipped = false;
    for (i, (op, kind, weights)) in candidates.into_iter().enumerate() {
        let is_last = i + 1 == n;
        let op_ignored = ignored_reason(graph, op, &options.ignored, &regexes)
            .or_else(|| patterns.get(&op).map(|p| crate::graph::patterns::reason(p)));
        for (input, constant) in weights {
            if !seen.insert(constant) {
                // A shared weight is compressed once; a shared last layer counts as skipped.
                last_layer_skipped = is_last;
                continue;
            }
            let c = &graph.nodes[constant];
            let shape = c
                .value
                .as_ref()
                .map(|v| v.shape().to_vec())
                .or_else(|| c.outputs.first().and_then(|p| p.shape.to_static()))
                .ok_or_else(|| Error::internal(format!("{} has no static shape", c.describe())))?;
            let element_type = c.const_type.expect("filtered on float const_type");
            let axes = reduction_axes(graph, op, input, kind, shape.len());
            let mut site = WeightSite {
                constant,
                op,
                input,
                kind,
                reduction_axes: axes,
                shape,
                element_type,
                config: None,
                eligible: false,
                ratio_defining: false,
                skipped: None,
            };
            let ignored = op_ignored.clone().or_else(|| ignored_reason(graph, constant, &options.ignored, &regexes));
            if let Some(why) = ignored {
                last_layer_skipped = is_last;
                site.skipped = Some(why);
            } else if site.layout(None).is_none() {
                site.skipped = Some("its output channels are not one block of axes".into());
            } else {
                site.eligible = true;
                site.config = backup;
                if backup.is_none() {
                    site.skipped = Some("backup mode none".into());
                }
            }
            sites.push(site);
        }
    }
    mark_ratio_defining(&mut sites, options, last_layer_skipped);
    let primary = primary_config(options);
    for s in sites.iter_mut().filter(|s| s.ratio_defining) {
        apply_primary(graph, s, options, primary)?;
    }
    Ok(sites)
}

/// Weighted ops in topological order, with their constant float weight inputs.
fn find_candidates(graph: &Graph, order: &[NodeId], is_const: &[bool]) -> Vec<Candidate> {
    let mut candidates: Vec<Candidate> = vec![];
    for &id in order {
        let Some((kind, inputs)) = weighted_inputs(graph, id) else { continue };
        if is_const[id] {
            continue; // folded at compile time, not a layer
        }
        let weights: Vec<(usize, NodeId)> = inputs
            .into_iter()
            .filter_map(|k| weight_constant(graph, id, k).map(|c| (k, c)))
            .filter(|&(_, c)| graph.nodes[c].const_type.is_some_and(is_float))
            .collect();
        if !weights.is_empty() {
            candidates.push((id, kind, weights));
        }
    }
    candidates
}

/// Gives a ratio-defining weight the primary precision, with the group size fallback when the
/// group size does not divide its input channels.
fn apply_primary(graph: &Graph, s: &mut WeightSite, options: &CompressOptions, primary: WeightConfig) -> Result<()> {
    let mut config = primary;
    if let Some(g) = primary.group_size {
        let layout = s.layout(None);
        let reduce = layout.map(|l| l.reduce).unwrap_or(0);
        if layout.is_none() || !reduce.is_multiple_of(g) {
            let name = &graph.nodes[s.constant].name;
            // The largest power of two dividing the channels (NNCF's ADJUST).
            let adjusted = reduce & reduce.wrapping_neg();
            match options.group_size_fallback {
                GroupSizeFallback::Error => {
                    return Err(Error::invalid(format!(
                        "group size {g} does not divide the {reduce} input channels of weight '{name}' (shape \
                         {:?}); choose a group size that does, add the layer to the ignored scope, or set \
                         group_size_fallback to ignore or adjust",
                        s.shape
                    )))
                }
                GroupSizeFallback::Ignore => {
                    s.ratio_defining = false;
                    s.eligible = false;
                    s.config = None;
                    s.skipped = Some(format!("group size {g} does not divide its {reduce} input channels"));
                    return Ok(());
                }
                GroupSizeFallback::Adjust if layout.is_some() && adjusted >= options.min_adjusted_group_size => {
                    config.group_size = Some(adjusted);
                }
                GroupSizeFallback::Adjust => {
                    // No valid group: the backup precision it already has, outside the ratio.
                    s.ratio_defining = false;
                    return Ok(());
                }
            }
        }
    }
    s.config = Some(config);
    s.skipped = None;
    Ok(())
}

/// NNCF's ratio-defining weights: for 4-bit modes the MatMuls but the last one (lm_head) unless
/// `all_layers`, plus embeddings with one reduction axis when `all_layers`; for 8-bit modes all.
fn mark_ratio_defining(sites: &mut [WeightSite], options: &CompressOptions, last_layer_skipped: bool) {
    if options.mode.is_int8() {
        sites.iter_mut().filter(|s| s.eligible).for_each(|s| s.ratio_defining = true);
        return;
    }
    let mut matmuls: Vec<usize> =
        (0..sites.len()).filter(|&i| sites[i].eligible && sites[i].kind == WeightKind::MatMul).collect();
    if !options.all_layers && !last_layer_skipped {
        matmuls.pop();
    }
    for i in matmuls {
        sites[i].ratio_defining = true;
    }
    if options.all_layers {
        for s in sites.iter_mut() {
            if s.eligible && s.kind == WeightKind::Embedding && s.reduction_axes.len() == 1 {
                s.ratio_defining = true;
            }
        }
    }
}

/// NNCF's data-free sensitivity of a weight: `1 / (int8 error + eps)`, eps of its element type.
pub fn inverse_error(site: &WeightSite, error: f64) -> f64 {
    let eps = match site.element_type {
        ElementType::F16 => 0.000_976_562_5,
        ElementType::BF16 => 0.007_812_5,
        ElementType::F64 => f64::EPSILON,
        _ => f32::EPSILON as f64,
    };
    1.0 / (error + eps)
}

/// NNCF's mixed precision: ratio-defining weights sorted by sensitivity `scores` ascending (the
/// least sensitive first) go to the primary precision while the share of parameters stays below
/// `ratio`; the rest take the backup precision.
pub fn apply_ratio(sites: &mut [WeightSite], scores: &[(usize, f64)], options: &CompressOptions) {
    let ratio = options.effective_ratio();
    if ratio >= 1.0 {
        return;
    }
    let total: usize = scores.iter().map(|&(i, _)| sites[i].num_weights()).sum();
    let mut scored = scores.to_vec();
    // A stable sort, as Python's `sorted`.
    scored.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut primary: HashSet<usize> = HashSet::new();
    let mut in_primary = 0usize;
    for (i, _) in scored {
        let w = sites[i].num_weights();
        if (in_primary + w) as f64 / total.max(1) as f64 >= ratio {
            break;
        }
        primary.insert(i);
        in_primary += w;
    }
    let backup = backup_config(options);
    for &(i, _) in scores {
        if !primary.contains(&i) {
            sites[i].config = backup;
            if backup.is_none() {
                sites[i].skipped = Some("backup mode none (below the 4-bit ratio)".into());
            }
        }
    }
}
