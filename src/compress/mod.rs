//! Weight-only compression (NNCF's `compress_weights`, data-free): MatMul, embedding and
//! convolution weights stored as 8- or 4-bit integer codes with f16 scales, decompressed by
//! OpenVINO's compressed-weight kernels at run time. Activations stay floating point.
//!
//! Two drivers share one pipeline — select the weights, measure them (mixed precision), compress
//! and rewrite:
//! * [`compress_graph`] for a model in memory;
//! * [`compress_file`] for a model on disk, streamed: the graph is read without its weights, each
//!   weight is read from the `.bin`, compressed and written to the output `.bin` before the next,
//!   so memory is bounded by the largest tensor, not the model.

pub mod activations;
mod awq;
mod gptq;
mod layerwise;
pub mod lowering;
pub mod matrix;
mod mixed_precision;
pub mod rewrite;
mod scale_estimation;
pub mod select;
pub mod stats_cache;

use crate::backend::Backend;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::graph::{BinRange, Graph, Node, Outlet};
use crate::hooks::{Hooks, LogLevel, Stage};
use crate::ir::writer::{FileSink, PairWriter};
use crate::quant::config::IgnoredScope;
use crate::tensor::{ElementType, Tensor};
use half::f16;
use rewrite::Payload;
use select::{WeightConfig, WeightSite};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

/// Calibration data for the data-aware methods and the backend that runs the model on it.
pub struct Calibration<'a> {
    pub data: &'a dyn Dataset,
    pub backend: Backend,
}

/// The primary precision, as NNCF names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[repr(C)]
pub enum CompressMode {
    #[default]
    Int8Asym = 0,
    Int8Sym = 1,
    Int4Asym = 2,
    Int4Sym = 3,
}

impl CompressMode {
    pub fn is_int8(self) -> bool {
        matches!(self, CompressMode::Int8Asym | CompressMode::Int8Sym)
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "int8_asym" | "int8" => Some(CompressMode::Int8Asym),
            "int8_sym" => Some(CompressMode::Int8Sym),
            "int4_asym" => Some(CompressMode::Int4Asym),
            "int4_sym" | "int4" => Some(CompressMode::Int4Sym),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            CompressMode::Int8Asym => "int8_asym",
            CompressMode::Int8Sym => "int8_sym",
            CompressMode::Int4Asym => "int4_asym",
            CompressMode::Int4Sym => "int4_sym",
        }
    }
}

/// The precision of weights outside the 4-bit share (and of embeddings and the last layer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[repr(C)]
pub enum BackupMode {
    #[default]
    Int8Asym = 0,
    Int8Sym = 1,
    /// Left in floating point.
    None = 2,
}

impl BackupMode {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "int8_asym" => Some(BackupMode::Int8Asym),
            "int8_sym" => Some(BackupMode::Int8Sym),
            "none" => Some(BackupMode::None),
            _ => None,
        }
    }
}

/// What to do with a weight whose input channels the group size does not divide (NNCF's
/// `group_size_fallback_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[repr(C)]
pub enum GroupSizeFallback {
    /// Refuse the model, naming the weight (NNCF's default).
    #[default]
    Error = 0,
    /// Keep that weight in its original precision.
    Ignore = 1,
    /// Use the largest power of two that divides its channels, when at least
    /// `min_adjusted_group_size`; else the backup precision.
    Adjust = 2,
}

impl GroupSizeFallback {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "error" => Some(GroupSizeFallback::Error),
            "ignore" => Some(GroupSizeFallback::Ignore),
            "adjust" => Some(GroupSizeFallback::Adjust),
            _ => None,
        }
    }
}

fn default_min_adjusted_group_size() -> usize {
    32
}

fn default_subset_size() -> usize {
    128
}

/// How data-aware mixed precision ranks the ratio-defining weights (NNCF's `SensitivityMetric`):
/// the ones ranked most sensitive keep the backup precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SensitivityMetric {
    /// The weight's own int8 error (data-free).
    WeightQuantizationError,
    /// The inputs' Hessian trace estimate times the weight's int8 error (Frobenius norm).
    HessianInputActivation,
    /// The inputs' variance over tokens, averaged over channels, over the weight's int8 error.
    MeanActivationVariance,
    /// The inputs' variance over tokens, its maximum over channels, over the int8 error.
    MaxActivationVariance,
    /// The inputs' max magnitude over tokens, averaged over channels, over the int8 error.
    MeanActivationMagnitude,
}

impl SensitivityMetric {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "weight_quantization_error" => Some(SensitivityMetric::WeightQuantizationError),
            "hessian_input_activation" => Some(SensitivityMetric::HessianInputActivation),
            "mean_activation_variance" => Some(SensitivityMetric::MeanActivationVariance),
            "max_activation_variance" => Some(SensitivityMetric::MaxActivationVariance),
            "mean_activation_magnitude" => Some(SensitivityMetric::MeanActivationMagnitude),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SensitivityMetric::WeightQuantizationError => "weight_quantization_error",
            SensitivityMetric::HessianInputActivation => "hessian_input_activation",
            SensitivityMetric::MeanActivationVariance => "mean_activation_variance",
            SensitivityMetric::MaxActivationVariance => "max_activation_variance",
            SensitivityMetric::MeanActivationMagnitude => "mean_activation_magnitude",
        }
    }

    pub fn is_data_aware(self) -> bool {
        self != SensitivityMetric::WeightQuantizationError
    }
}

/// AWQ's search (NNCF's `AdvancedAWQParameters`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AwqParams {
    /// Samples the search scores on.
    pub subset_size: usize,
    /// Share of the input channels with the largest activations whose groups are searched.
    pub percent_to_apply: f64,
    pub alpha_min: f64,
    pub alpha_max: f64,
    /// Grid points between `alpha_min` and `alpha_max`.
    pub steps: usize,
}

impl Default for AwqParams {
    fn default() -> Self {
        AwqParams { subset_size: 32, percent_to_apply: 0.002, alpha_min: 0.0, alpha_max: 1.0, steps: 100 }
    }
}

/// Scale estimation's search (NNCF's `AdvancedScaleEstimationParameters`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScaleEstimationParams {
    pub subset_size: usize,
    pub initial_steps: usize,
    pub scale_steps: usize,
    pub weight_penalty: f64,
}

impl Default for ScaleEstimationParams {
    fn default() -> Self {
        ScaleEstimationParams { subset_size: 64, initial_steps: 5, scale_steps: 5, weight_penalty: -1.0 }
    }
}

/// GPTQ (NNCF's `AdvancedGPTQParameters`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GptqParams {
    /// Share of the mean Hessian diagonal added to it.
    pub damp_percent: f64,
    /// Columns rounded before their errors reach the columns after them.
    pub block_size: usize,
    /// Samples the Hessians are computed on.
    pub subset_size: usize,
}

impl Default for GptqParams {
    fn default() -> Self {
        GptqParams { damp_percent: 0.1, block_size: 128, subset_size: 128 }
    }
}

/// What `compress_weights` does; defaults are NNCF's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompressOptions {
    pub mode: CompressMode,
    /// Weights per scale along the input channels; `-1` per output channel. `None`: 128 for the
    /// 4-bit modes, per channel for the 8-bit ones.
    pub group_size: Option<i64>,
    /// Share of the ratio-defining parameters in the primary (4-bit) precision. `None`: 1.
    pub ratio: Option<f64>,
    pub backup_mode: BackupMode,
    /// Embeddings and the last MatMul in the primary precision too.
    pub all_layers: bool,
    #[serde(alias = "ignored_scope")]
    pub ignored: IgnoredScope,
    /// A group size that does not divide a weight's input channels: error, ignore or adjust.
    #[serde(alias = "group_size_fallback_mode")]
    pub group_size_fallback: GroupSizeFallback,
    /// The smallest group size `adjust` may choose (NNCF: 32).
    #[serde(default = "default_min_adjusted_group_size")]
    pub min_adjusted_group_size: usize,
    /// Calibration samples statistics are collected on (with a dataset; NNCF: 128).
    #[serde(default = "default_subset_size")]
    pub subset_size: usize,
    /// The mixed-precision ranking for `ratio < 1`. `None`: NNCF's default, the maximum
    /// activation variance with a dataset, the int8 error without.
    pub sensitivity_metric: Option<SensitivityMetric>,
    /// Activation-aware weight scaling (needs a dataset for its data-aware search).
    pub awq: bool,
    /// Per-group scales fitted to the layer's output on calibration data.
    pub scale_estimation: bool,
    /// Weights rounded column by column, each column's error made up by the columns after it
    /// (needs a dataset); with `scale_estimation`, groups' scales are estimated inside it.
    pub gptq: bool,
    pub awq_params: AwqParams,
    pub scale_estimation_params: ScaleEstimationParams,
    pub gptq_params: GptqParams,
    /// A folder where statistics are kept (NNCF's `statistics_path`): a later run on the same
    /// model and samples reads them instead of running the model.
    #[serde(alias = "stats_cache")]
    pub statistics_path: Option<std::path::PathBuf>,
}

impl Default for CompressOptions {
    fn default() -> Self {
        CompressOptions {
            mode: CompressMode::default(),
            group_size: None,
            ratio: None,
            backup_mode: BackupMode::default(),
            all_layers: false,
            ignored: IgnoredScope::default(),
            group_size_fallback: GroupSizeFallback::default(),
            min_adjusted_group_size: default_min_adjusted_group_size(),
            subset_size: default_subset_size(),
            sensitivity_metric: None,
            awq: false,
            scale_estimation: false,
            gptq: false,
            awq_params: AwqParams::default(),
            scale_estimation_params: ScaleEstimationParams::default(),
            gptq_params: GptqParams::default(),
            statistics_path: None,
        }
    }
}

impl CompressOptions {
    pub fn effective_group_size(&self) -> i64 {
        match (self.mode.is_int8(), self.group_size) {
            (true, _) => -1,
            (false, Some(g)) => g,
            (false, None) => 128,
        }
    }
    pub fn effective_ratio(&self) -> f64 {
        if self.mode.is_int8() {
            1.0
        } else {
            self.ratio.unwrap_or(1.0)
        }
    }

    /// How many calibration samples these options read: `subset_size`, or GPTQ's own
    /// `gptq_params.subset_size` when larger (NNCF keeps the two apart).
    pub fn samples_read(&self) -> usize {
        match self.gptq {
            true => self.subset_size.max(self.gptq_params.subset_size),
            false => self.subset_size,
        }
    }

    /// Whether these options collect activation statistics on calibration data (when given).
    /// GPTQ computes its own inputs, layer by layer, and estimates scales on them.
    pub fn needs_statistics(&self) -> bool {
        self.awq
            || (self.scale_estimation && !self.gptq)
            || (self.effective_ratio() < 1.0 && mixed_precision::metric(self, true).is_data_aware())
    }

    /// Whether compression rewrites weights before compressing them (the model is then held in
    /// memory, not streamed).
    pub fn rewrites_weights(&self, with_data: bool) -> bool {
        self.awq || (with_data && (self.needs_statistics() || self.gptq))
    }

    /// [`CompressOptions::validate`], and what the data-aware options need: calibration data
    /// (`with_data`) and a 4-bit mode.
    pub fn validate_with(&self, with_data: bool) -> Result<()> {
        self.validate()?;
        let asked: Vec<&str> = [
            (self.awq, "awq"),
            (self.scale_estimation, "scale_estimation"),
            (self.gptq, "gptq"),
            (self.sensitivity_metric.is_some_and(|m| m.is_data_aware()), "a data-aware sensitivity_metric"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        if asked.is_empty() {
            return Ok(());
        }
        if self.mode.is_int8() {
            return Err(Error::invalid(format!(
                "{} apply to the 4-bit modes only (mode {})",
                asked.join(" and "),
                self.mode.name()
            )));
        }
        let need_data: Vec<&str> = asked.into_iter().filter(|&a| a != "awq").collect();
        if !with_data && !need_data.is_empty() {
            return Err(Error::invalid(format!("{} need calibration data (a dataset)", need_data.join(" and "))));
        }
        Ok(())
    }

    /// NNCF's checks of the user's options.
    pub fn validate(&self) -> Result<()> {
        if self.mode.is_int8() {
            if self.ratio.is_some_and(|r| r != 1.0) || self.group_size.is_some_and(|g| g != -1) {
                return Err(Error::invalid(format!(
                    "mode {} compresses every weight per channel: ratio must be 1 and group_size -1",
                    self.mode.name()
                )));
            }
            if self.all_layers || self.backup_mode != BackupMode::Int8Asym {
                return Err(Error::invalid(format!(
                    "mode {}: all_layers and backup_mode apply to the 4-bit modes only",
                    self.mode.name()
                )));
            }
        }
        if let Some(r) = self.ratio {
            if !(0.0..=1.0).contains(&r) {
                return Err(Error::invalid(format!("ratio must be between 0 and 1, got {r}")));
            }
        }
        if self.min_adjusted_group_size == 0 {
            return Err(Error::invalid("min_adjusted_group_size must be a positive integer"));
        }
        if let Some(g) = self.group_size {
            if g == 0 || g < -1 {
                return Err(Error::invalid(format!("group_size must be a positive integer or -1, got {g}")));
            }
        }
        if self.subset_size == 0 || self.awq_params.subset_size == 0 || self.scale_estimation_params.subset_size == 0 {
            return Err(Error::invalid("subset_size must be a positive integer"));
        }
        if self.awq_params.steps == 0 || self.awq_params.alpha_min > self.awq_params.alpha_max {
            return Err(Error::invalid("awq_params: steps must be positive and alpha_min at most alpha_max"));
        }
        if self.gptq_params.subset_size == 0 || self.gptq_params.block_size == 0 {
            return Err(Error::invalid("gptq_params: subset_size and block_size must be positive integers"));
        }
        if !(self.gptq_params.damp_percent >= 0.0 && self.gptq_params.damp_percent.is_finite()) {
            return Err(Error::invalid("gptq_params.damp_percent must be a non-negative number"));
        }
        if !(0.0..=1.0).contains(&self.awq_params.percent_to_apply) {
            return Err(Error::invalid("awq_params.percent_to_apply must be between 0 and 1"));
        }
        Ok(())
    }
}

/// One weight in the report.
#[derive(Clone, Debug, Serialize)]
pub struct CompressedLayer {
    /// The weight's Const.
    pub weight: String,
    /// The layer reading it.
    pub layer: String,
    pub layer_type: String,
    pub shape: Vec<usize>,
    pub source_type: String,
    /// `int4_asym, group size 128`, `int8_asym, per-channel`, or `float` (kept).
    pub compression: String,
    pub bits: u32,
    pub ratio_defining: bool,
    pub bytes_before: u64,
    pub bytes_after: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept_because: Option<String>,
    /// What AWQ did to this weight.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub awq: Option<AwqLayer>,
    /// What scale estimation bought at this layer's output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale_estimation: Option<ScaleEstimationLayer>,
    /// What GPTQ bought at this layer's output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gptq: Option<GptqLayer>,
}

/// AWQ on one weight: scaled as a target (its input channels × s), or its rows ÷ s as the
/// previous layer of a target.
#[derive(Clone, Debug, Serialize)]
pub struct AwqLayer {
    /// "scaled" (a target) or "merged" (absorbed a target's scale).
    pub role: String,
    /// For a target: groups the search gave a scale other than 1 (data-aware), or every input
    /// channel (data-free); for a merge: the target's name.
    pub groups_scaled: usize,
    pub with: String,
}

/// Scale estimation on one weight: the mean squared output error per (row, group) on the
/// calibration means, with the min/max scales and with the estimated ones.
#[derive(Clone, Debug, Serialize)]
pub struct ScaleEstimationLayer {
    pub output_mse_min_max: f64,
    pub output_mse: f64,
}

/// GPTQ on one weight: the mean squared output error per token on its calibration inputs
/// (sampled rows), rounded to the nearest with min/max parameters and by GPTQ.
#[derive(Clone, Debug, Serialize)]
pub struct GptqLayer {
    pub output_mse_min_max: f64,
    pub output_mse: f64,
}

/// What a compression run did.
#[derive(Clone, Debug, Serialize, Default)]
pub struct CompressReport {
    pub mode: String,
    pub group_size: i64,
    pub ratio: f64,
    pub backup_mode: String,
    pub all_layers: bool,
    pub layers: Vec<CompressedLayer>,
    /// Parameters per precision (`int4`, `int8`, `float`).
    pub parameters: std::collections::BTreeMap<String, u64>,
    pub weights_bytes_before: u64,
    pub weights_bytes_after: u64,
    pub seconds: f64,
}

impl CompressReport {
    /// NNCF's bitwidth table, as lines.
    pub fn summary(&self) -> String {
        let total: u64 = self.parameters.values().sum();
        let mut s = format!(
            "weight compression {} (group size {}, ratio {}): {} weights, {} -> {} in {:.2} s\n",
            self.mode,
            self.group_size,
            self.ratio,
            self.layers.len(),
            human_bytes(self.weights_bytes_before),
            human_bytes(self.weights_bytes_after),
            self.seconds
        );
        for (k, v) in &self.parameters {
            let layers = self.layers.iter().filter(|l| precision_key(l.bits) == *k).count();
            s.push_str(&format!(
                "  {k:<6} {:>5.1}% of parameters ({layers} layers)\n",
                100.0 * *v as f64 / total.max(1) as f64
            ));
        }
        s
    }
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.2} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n => format!("{:.1} KiB", n as f64 / 1024.0),
    }
}

fn precision_key(bits: u32) -> String {
    match bits {
        4 => "int4".into(),
        8 => "int8".into(),
        _ => "float".into(),
    }
}

/// A weight's raw bytes: copied out of a constant in memory, or a mapping of its range of the
/// `.bin` (unmapped when dropped, so only one tensor is resident at a time).
enum WeightBytes {
    Owned(Vec<u8>),
    Mapped { map: memmap2::Mmap, skip: usize },
}

impl std::ops::Deref for WeightBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            WeightBytes::Owned(v) => v,
            WeightBytes::Mapped { map, skip } => &map[*skip..],
        }
    }
}

/// Where a driver reads weights' bytes from and puts the compressed ones.
trait WeightStore {
    /// The raw bytes of a Const (its `.bin` layout).
    fn read(&mut self, node: &Node) -> Result<WeightBytes>;
    /// Makes a payload of a new constant stored as `et`.
    fn put(&mut self, et: ElementType, held: Tensor) -> Result<Payload>;
    /// Copies a constant that stays as it is to the output; its new range (streamed runs only).
    fn copy_through(&mut self, node: &Node) -> Result<Option<BinRange>>;
}

/// A model in memory: constants hold their values.
struct MemoryStore;

impl WeightStore for MemoryStore {
    fn read(&mut self, node: &Node) -> Result<WeightBytes> {
        let v = node.value.as_ref().ok_or_else(|| Error::internal(format!("{} has no value", node.describe())))?;
        Ok(WeightBytes::Owned(v.to_bytes(node.const_type.unwrap_or(v.element_type()))?))
    }
    fn put(&mut self, _et: ElementType, held: Tensor) -> Result<Payload> {
        Ok(Payload::Memory(held))
    }
    fn copy_through(&mut self, _node: &Node) -> Result<Option<BinRange>> {
        Ok(None)
    }
}

/// A model streamed from one `.bin` to another.
struct StreamStore<'a> {
    source: std::fs::File,
    source_path: &'a Path,
    sink: &'a mut FileSink,
    /// Constants copied to the output (by name and output range): their source ranges, for a
    /// later read (the layer-wise runs read constants after the copies are made).
    moved: HashMap<(String, BinRange), BinRange>,
}

impl StreamStore<'_> {
    fn map_range(&self, r: BinRange) -> Result<WeightBytes> {
        const PAGE: u64 = 64 << 10; // a multiple of every platform's mapping granularity
        let start = r.offset / PAGE * PAGE;
        let skip = (r.offset - start) as usize;
        let len = skip + r.size as usize;
        let file_len = self.source.metadata().map_err(|e| Error::io(self.source_path, e))?.len();
        if r.offset + r.size > file_len {
            return Err(Error::io(
                self.source_path,
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the weights file shrank while being read"),
            ));
        }
        // SAFETY: a read-only mapping of a range checked to lie inside the file, dropped after
        // this weight is compressed; a concurrent truncation by another process is the one
        // hazard, accepted as the model reader (and OpenVINO's) accepts it.
        let map = unsafe { memmap2::MmapOptions::new().offset(start).len(len).populate().map(&self.source) }
            .map_err(|e| Error::io(self.source_path, e))?;
        Ok(WeightBytes::Mapped { map, skip })
    }
}

#[cfg(unix)]
fn read_exact_at(f: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(f, buf, offset)
}

#[cfg(windows)]
fn read_exact_at(f: &std::fs::File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    while !buf.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_read(f, buf, offset)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf = &mut buf[n..];
        offset += n as u64;
    }
    Ok(())
}

impl WeightStore for StreamStore<'_> {
    fn read(&mut self, node: &Node) -> Result<WeightBytes> {
        match (&node.value, node.stored) {
            (Some(v), _) => Ok(WeightBytes::Owned(v.to_bytes(node.const_type.unwrap_or(v.element_type()))?)),
            (None, Some(r)) => {
                let source = self.moved.get(&(node.name.clone(), r)).copied().unwrap_or(r);
                self.map_range(source)
            }
            _ => Err(Error::internal(format!("{} has no value", node.describe()))),
        }
    }
    fn put(&mut self, et: ElementType, held: Tensor) -> Result<Payload> {
        let bytes = held.to_bytes(et)?;
        drop(held);
        let size = bytes.len() as u64;
        let offset = self.sink.append_owned(bytes, crate::ir::writer::alignment_of(et))?;
        Ok(Payload::Stored(BinRange { offset, size }))
    }
    fn copy_through(&mut self, node: &Node) -> Result<Option<BinRange>> {
        let Some(r) = node.stored else { return Ok(None) };
        // In pieces, so a large constant never sits in memory whole.
        const PIECE: u64 = 16 << 20;
        let mut buf = vec![0u8; PIECE.min(r.size) as usize];
        let align = crate::ir::writer::alignment_of(node.const_type.unwrap_or(ElementType::U8));
        let mut first = None;
        let mut done = 0u64;
        while done < r.size {
            let n = PIECE.min(r.size - done) as usize;
            read_exact_at(&self.source, &mut buf[..n], r.offset + done).map_err(|e| Error::io(self.source_path, e))?;
            let at = if first.is_none() {
                self.sink.append(&buf[..n], align)?
            } else {
                self.sink.append_unaligned(&buf[..n])?
            };
            first.get_or_insert(at);
            done += n as u64;
        }
        let offset = match first {
            Some(at) => at,
            None => self.sink.append(&[], align)?,
        };
        let copied = BinRange { offset, size: r.size };
        self.moved.insert((node.name.clone(), copied), r);
        Ok(Some(copied))
    }
}

/// Compresses the weights of a model held in memory; returns the compressed model.
pub fn compress_graph(graph: &Graph, options: &CompressOptions, hooks: &mut Hooks) -> Result<(Graph, CompressReport)> {
    compress_graph_with(graph, options, None, hooks)
}

/// [`compress_graph`] with calibration data for the data-aware methods (AWQ, scale estimation,
/// data-aware mixed precision).
pub fn compress_graph_with(
    graph: &Graph,
    options: &CompressOptions,
    calibration: Option<&Calibration>,
    hooks: &mut Hooks,
) -> Result<(Graph, CompressReport)> {
    let mut graph = graph.clone();
    let report = run(&mut graph, options, &mut MemoryStore, calibration, hooks)?;
    Ok((graph, report))
}

/// Compresses `input` (`.xml`, its `.bin` next to it) into `output` (`.xml`, `.bin` next to it),
/// streamed: peak memory is about the largest weight tensor plus the graph. Both output files
/// appear only when complete.
pub fn compress_file(
    input: &Path,
    output: &Path,
    options: &CompressOptions,
    hooks: &mut Hooks,
) -> Result<CompressReport> {
    compress_file_with(input, output, options, None, hooks)
}

/// [`compress_file`] with calibration data. The data-aware methods run the model, so it is read
/// whole (not streamed) when they are asked for; GPTQ alone on the built-in engine streams (each
/// weight read when it is rounded and written compressed right away).
pub fn compress_file_with(
    input: &Path,
    output: &Path,
    options: &CompressOptions,
    calibration: Option<&Calibration>,
    hooks: &mut Hooks,
) -> Result<CompressReport> {
    if same_file(input, output) {
        return Err(Error::invalid(format!(
            "the output {} is the input model: write the compressed model elsewhere",
            output.display()
        )));
    }
    options.validate_with(calibration.is_some())?;
    // GPTQ alone (with or without scale estimation) on a backend that reruns from a frontier
    // reads each weight when it rounds it and writes it compressed right away: streamed too.
    let streamed_gptq = options.gptq
        && !options.awq
        && !options.needs_statistics()
        && calibration.is_some_and(|c| c.backend.reruns_from_frontier());
    if options.rewrites_weights(calibration.is_some()) && !streamed_gptq {
        let mut graph = read_model_piecewise(input)?;
        let report = run(&mut graph, options, &mut MemoryStore, calibration, hooks)?;
        crate::ir::writer::write_model(&graph, output, None)?;
        return Ok(report);
    }
    // Constants below this size (shapes, norms' gains) are read with the graph;
    // OVPOT_STREAM_KEEP_BELOW (bytes) lowers it, so the tests stream their small models too.
    let keep_below: u64 = std::env::var("OVPOT_STREAM_KEEP_BELOW").ok().and_then(|v| v.parse().ok()).unwrap_or(1 << 16);
    let mut graph = crate::ir::reader::read_model_lazy(input, None, keep_below)?;
    let source_path = input.with_extension("bin");
    let mut pair = PairWriter::create(output, None)?;
    let source = if graph.nodes.iter().any(|n| n.stored.is_some()) {
        Some(std::fs::File::open(&source_path).map_err(|e| Error::io(&source_path, e))?)
    } else {
        None
    };
    let report = match source {
        Some(source) => {
            let mut store = StreamStore { source, source_path: &source_path, sink: pair.sink(), moved: HashMap::new() };
            run(&mut graph, options, &mut store, calibration.filter(|_| streamed_gptq), hooks)?
        }
        None => run(&mut graph, options, &mut MemoryStore, calibration.filter(|_| streamed_gptq), hooks)?,
    };
    pair.finish(&graph)?;
    Ok(report)
}

/// The whole model in memory, its constants read one at a time from the `.bin` (a mapped `.bin`
/// would stay resident beside the decoded weights: twice the model at the peak).
fn read_model_piecewise(input: &Path) -> Result<Graph> {
    let mut graph = crate::ir::reader::read_model_lazy(input, None, 1 << 16)?;
    let bin = input.with_extension("bin");
    if !graph.nodes.iter().any(|n| n.stored.is_some()) {
        return Ok(graph);
    }
    let file = std::fs::File::open(&bin).map_err(|e| Error::io(&bin, e))?;
    for node in graph.nodes.iter_mut() {
        let Some(range) = node.stored else { continue };
        let et = node.const_type.ok_or_else(|| Error::internal(format!("{} has no type", node.describe())))?;
        let shape = node
            .outputs
            .first()
            .and_then(|p| p.shape.to_static())
            .ok_or_else(|| Error::internal(format!("{} has no static shape", node.describe())))?;
        let mut bytes = vec![0u8; range.size as usize];
        read_exact_at(&file, &mut bytes, range.offset).map_err(|e| Error::io(&bin, e))?;
        node.value = Some(std::sync::Arc::new(Tensor::from_bytes(et, &shape, &bytes)?));
        node.stored = None;
    }
    Ok(graph)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// The pipeline: select, collect statistics (with data), assign mixed precision, copy what
/// stays, compress and rewrite.
fn run(
    graph: &mut Graph,
    options: &CompressOptions,
    store: &mut dyn WeightStore,
    calibration: Option<&Calibration>,
    hooks: &mut Hooks,
) -> Result<CompressReport> {
    let started = Instant::now();
    options.validate_with(calibration.is_some())?;
    let mut sites = select::select_weights(graph, options)?;
    let mut statistics = match calibration {
        Some(c) if options.needs_statistics() => Some(collect_statistics(graph, &sites, options, c, hooks)?),
        _ => None,
    };
    mixed_precision::assign(graph, &mut sites, options, store, statistics.as_ref(), hooks)?;
    let awq_layers = match options.awq {
        true => awq::apply(graph, &sites, statistics.as_mut(), &options.awq_params, store, hooks)?,
        false => HashMap::new(),
    };
    // A streamed run copies what stays as it is first: every `stored` range then points into
    // the output, before GPTQ writes compressed weights there too.
    keep_uncompressed_constants(graph, &sites, store)?;
    // GPTQ estimates scales itself when scale estimation is asked for too (NNCF's order).
    let gptq_found = match (calibration, options.gptq) {
        (Some(c), true) => {
            let compress: gptq::Compress = |graph, site, config, raw, store, found| {
                compress_site_from(graph, site, config, raw, store, Some(found))
            };
            gptq::apply(graph, &sites, c, &options.gptq_params, options.scale_estimation, store, compress, hooks)?
        }
        _ => HashMap::new(),
    };
    let estimated = match (&statistics, options.scale_estimation && !options.gptq) {
        (Some(stats), true) => {
            scale_estimation::estimate(graph, &sites, stats, &options.scale_estimation_params, store, hooks)?
        }
        _ => HashMap::new(),
    };
    drop(statistics);
    let mut report = new_report(options);
    let total = sites.len();
    for (k, site) in sites.iter().enumerate() {
        hooks.progress(Stage::WeightCompression, k, total)?;
        let before = graph.nodes[site.constant]
            .stored
            .map(|r| r.size)
            .unwrap_or_else(|| site.element_type.byte_size(site.num_weights()) as u64);
        let after = match (site.config, gptq_found.get(&k).and_then(|g| g.2)) {
            // Compressed by GPTQ as soon as it was rounded.
            (Some(_), Some(bytes)) => bytes,
            (Some(config), None) => {
                let precomputed =
                    estimated.get(&k).map(|v| v.0.as_slice()).or_else(|| gptq_found.get(&k).map(|v| v.0.as_slice()));
                let bytes = compress_site(graph, site, &config, store, precomputed)?;
                // The float weight nobody reads any more leaves memory now, not at the end.
                if !graph.nodes.iter().any(|n| n.inputs.iter().any(|o| o.node == site.constant)) {
                    graph.nodes[site.constant].value = None;
                }
                bytes
            }
            (None, _) => before,
        };
        let mut entry = layer_entry(graph, site, before, after);
        if let Some(a) = awq_layers.get(&k) {
            entry.awq = Some(a.clone());
        }
        if let Some((_, g, _)) = gptq_found.get(&k) {
            entry.gptq = Some(g.clone());
        }
        if let Some((_, e)) = estimated.get(&k) {
            entry.scale_estimation =
                Some(ScaleEstimationLayer { output_mse_min_max: e.min_max, output_mse: e.estimated });
        }
        report.layers.push(entry);
    }
    hooks.progress(Stage::WeightCompression, total, total)?;
    graph.remove_dead_nodes();
    for l in &report.layers {
        *report.parameters.entry(precision_key(l.bits)).or_default() += l.shape.iter().product::<usize>() as u64;
        report.weights_bytes_before += l.bytes_before;
        report.weights_bytes_after += l.bytes_after;
    }
    report.seconds = started.elapsed().as_secs_f64();
    for line in report.summary().lines() {
        hooks.log(LogLevel::Info, line);
    }
    Ok(report)
}

/// Statistics of the inputs of the compressed MatMuls, on the first `subset_size` samples.
fn collect_statistics(
    graph: &Graph,
    sites: &[WeightSite],
    options: &CompressOptions,
    calibration: &Calibration,
    hooks: &mut Hooks,
) -> Result<activations::SiteStatistics> {
    let mut by_site = HashMap::new();
    let mut inputs: Vec<(Outlet, usize)> = vec![];
    for (i, s) in sites.iter().enumerate() {
        if s.config.is_none() || s.kind != select::WeightKind::MatMul {
            continue;
        }
        let Some((outlet, axis)) = select::activation_input(graph, s) else { continue };
        by_site.insert(i, outlet);
        if !inputs.iter().any(|&(o, _)| o == outlet) {
            inputs.push((outlet, axis));
        }
    }
    let n = options.subset_size.min(calibration.data.len());
    hooks.log(
        LogLevel::Info,
        &format!(
            "statistics of {} layer inputs on {n} calibration samples ({})",
            inputs.len(),
            calibration.backend.describe()
        ),
    );
    let started = Instant::now();
    let backend = calibration.backend.describe();
    let cached = match &options.statistics_path {
        Some(dir) => {
            let key = stats_cache::key(graph, &inputs, calibration.data, n, &backend)?;
            let found = stats_cache::load(dir, &key, graph).filter(|s| inputs.iter().all(|(o, _)| s.contains_key(o)));
            Some((dir, key, found))
        }
        None => None,
    };
    let inputs = match cached {
        Some((dir, key, Some(found))) => {
            hooks.log(LogLevel::Info, &format!("statistics read from {} ({key})", dir.display()));
            found
        }
        Some((dir, key, None)) => {
            let stats = activations::collect(graph, &inputs, calibration.data, n, &calibration.backend, hooks)?;
            stats_cache::store(dir, &key, graph, &stats)?;
            hooks.log(LogLevel::Info, &format!("statistics kept in {} ({key})", dir.display()));
            stats
        }
        None => activations::collect(graph, &inputs, calibration.data, n, &calibration.backend, hooks)?,
    };
    hooks.log(LogLevel::Info, &format!("statistics in {:.2} s", started.elapsed().as_secs_f64()));
    Ok(activations::SiteStatistics { by_site, inputs, own: HashMap::new() })
}

fn new_report(options: &CompressOptions) -> CompressReport {
    CompressReport {
        mode: options.mode.name().into(),
        group_size: options.effective_group_size(),
        ratio: options.effective_ratio(),
        backup_mode: match options.backup_mode {
            BackupMode::Int8Asym => "int8_asym",
            BackupMode::Int8Sym => "int8_sym",
            BackupMode::None => "none",
        }
        .into(),
        all_layers: options.all_layers,
        ..Default::default()
    }
}

fn layer_entry(graph: &Graph, site: &WeightSite, before: u64, after: u64) -> CompressedLayer {
    let op = &graph.nodes[site.op];
    CompressedLayer {
        weight: graph.nodes[site.constant].name.clone(),
        layer: op.name.clone(),
        layer_type: op.op_type.clone(),
        shape: site.shape.clone(),
        source_type: site.element_type.ir_name().into(),
        compression: site.config.map(|c| c.name()).unwrap_or_else(|| "float".into()),
        bits: site.config.map(|c| c.format.bits).unwrap_or(site.element_type.bits() as u32),
        ratio_defining: site.ratio_defining,
        bytes_before: before,
        bytes_after: after,
        kept_because: if site.config.is_none() { site.skipped.clone() } else { None },
        awq: None,
        scale_estimation: None,
        gptq: None,
    }
}

/// In a streamed run, constants that stay as they are are copied to the output `.bin` first, so
/// every `stored` range then points into the output.
fn keep_uncompressed_constants(graph: &mut Graph, sites: &[WeightSite], store: &mut dyn WeightStore) -> Result<()> {
    let replaced: std::collections::HashSet<usize> =
        sites.iter().filter(|s| s.config.is_some()).map(|s| s.constant).collect();
    for id in 0..graph.nodes.len() {
        if graph.nodes[id].stored.is_none() || replaced.contains(&id) {
            continue;
        }
        if let Some(r) = store.copy_through(&graph.nodes[id])? {
            graph.nodes[id].stored = Some(r);
        }
    }
    Ok(())
}

/// Compresses one weight and rewrites the graph; returns the compressed bytes.
fn compress_site(
    graph: &mut Graph,
    site: &WeightSite,
    config: &WeightConfig,
    store: &mut dyn WeightStore,
    precomputed: Option<&[lowering::GroupParams]>,
) -> Result<u64> {
    let raw = store.read(&graph.nodes[site.constant])?;
    compress_site_from(graph, site, config, &raw, store, precomputed)
}

/// [`compress_site`] of the weight values `raw` (bytes of the site's element type).
fn compress_site_from(
    graph: &mut Graph,
    site: &WeightSite,
    config: &WeightConfig,
    raw: &[u8],
    store: &mut dyn WeightStore,
    precomputed: Option<&[lowering::GroupParams]>,
) -> Result<u64> {
    let layout = site.layout(config.group_size).expect("selected weights have a layout");
    let c = lowering::compress_with(raw, site.element_type, layout, config.format, precomputed)
        .map_err(|e| Error::invalid(format!("{}: {e}", graph.nodes[site.constant].describe())))?;
    let (code_shape, param_shape) = rewrite::payload_shapes(site, config);
    let code_type = config.format.code_type();
    let mut bytes_after = 0u64;
    let mut make = |et: ElementType, held: Tensor| -> Result<Payload> {
        bytes_after += et.byte_size(held.len()) as u64;
        store.put(et, held)
    };
    let codes = make(code_type, code_tensor(c.codes, config, &code_shape)?)?;
    let zero_point = match c.zero_point {
        Some(zp) => Some(make(code_type, code_tensor(zp, config, &param_shape)?)?),
        None => None,
    };
    let scale = make(ElementType::F16, scale_tensor(c.scale, &param_shape)?)?;
    rewrite::insert_decompression(graph, site, config, codes, zero_point, scale);
    Ok(bytes_after)
}

fn code_tensor(codes: Vec<u8>, config: &WeightConfig, shape: &[usize]) -> Result<Tensor> {
    let a = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(shape), codes)
        .map_err(|e| Error::internal(format!("codes of shape {shape:?}: {e}")))?;
    Ok(if config.format.asymmetric { Tensor::U8(a) } else { Tensor::I8(a.mapv(|b| b as i8)) })
}

fn scale_tensor(scale: Vec<f16>, shape: &[usize]) -> Result<Tensor> {
    let a = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(shape), scale)
        .map_err(|e| Error::internal(format!("scales of shape {shape:?}: {e}")))?;
    Ok(Tensor::F16(a))
}
