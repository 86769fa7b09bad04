//! Datasets from files: folders of `.npy` arrays and folders of images.
//!
//! Both check every sample against the model's inputs (element type and shape) and fail with a
//! message naming the input, the expected and the found shape/type, and the file.

use crate::error::{Error, Result};
use crate::graph::{Dim, PartialShape};
use crate::model::PortDesc;
use crate::tensor::{ElementType, Tensor};
use ndarray::{ArrayD, Axis, IxDyn, Slice};
use std::path::{Path, PathBuf};

/// One sample: a tensor per model input, by input name.
pub type Sample = Vec<(String, Tensor)>;

/// A source of samples. `get` may be called from any thread (the C wrapper serializes calls).
pub trait Dataset: Send + Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Sample `index` (0 ≤ index < len). Tensors carry the model's batch dim (usually 1).
    fn get(&self, index: usize) -> Result<Sample>;
}

/// A dataset seen in a random order fixed by a seed (POT's `shuffle_data` with `seed`): the first
/// k samples of the view are a random subset of k, the same for the same seed.
pub struct Shuffled<'a> {
    inner: &'a dyn Dataset,
    order: Vec<usize>,
}

impl<'a> Shuffled<'a> {
    pub fn new(inner: &'a dyn Dataset, seed: u64) -> Self {
        let mut order: Vec<usize> = (0..inner.len()).collect();
        // Fisher-Yates driven by SplitMix64: portable and stable across releases, unlike a
        // library generator whose stream may change.
        let mut state = seed;
        let mut next = || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        for i in (1..order.len()).rev() {
            let j = (next() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        Shuffled { inner, order }
    }

    /// The inner dataset's index of view index `i`.
    pub fn source_index(&self, i: usize) -> usize {
        self.order[i]
    }
}

impl Dataset for Shuffled<'_> {
    fn len(&self) -> usize {
        self.order.len()
    }
    fn get(&self, index: usize) -> Result<Sample> {
        let at = *self
            .order
            .get(index)
            .ok_or_else(|| Error::invalid(format!("sample {index} out of range (len {})", self.order.len())))?;
        self.inner.get(at)
    }
}

/// The samples of `inner` at `indices`, in that order.
pub struct Subset<'a> {
    inner: &'a dyn Dataset,
    indices: Vec<usize>,
}

impl<'a> Subset<'a> {
    pub fn new(inner: &'a dyn Dataset, indices: Vec<usize>) -> Self {
        Subset { inner, indices }
    }
}

impl Dataset for Subset<'_> {
    fn len(&self) -> usize {
        self.indices.len()
    }
    fn get(&self, index: usize) -> Result<Sample> {
        let at = *self
            .indices
            .get(index)
            .ok_or_else(|| Error::invalid(format!("sample {index} out of range (len {})", self.indices.len())))?;
        self.inner.get(at)
    }
}

/// POT's annotation-free labels: for each sample's scores (output `output` of the FP32 model),
/// softmax when they are not already in [0, 1], kept when the top score is above `threshold`,
/// labelled with the argmax. Returns (kept sample indices, their labels).
pub fn confident_predictions(outputs: &[Vec<Tensor>], output: usize, threshold: f64) -> Result<(Vec<usize>, Vec<i64>)> {
    let (mut kept, mut labels) = (vec![], vec![]);
    for (i, outs) in outputs.iter().enumerate() {
        let t = outs.get(output).ok_or_else(|| {
            Error::invalid(format!("annotation output {output} but the model has {} outputs", outs.len()))
        })?;
        let v = t.to_f64_vec();
        if v.is_empty() {
            continue;
        }
        let (lo, hi) = v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
        let top = if hi > 1.0 || lo < 0.0 {
            // softmax's top value: 1 / Σ exp(x − max).
            1.0 / v.iter().map(|x| (x - hi).exp()).sum::<f64>()
        } else {
            hi
        };
        if top > threshold {
            kept.push(i);
            labels.push(argmax(t) as i64);
        }
    }
    Ok((kept, labels))
}

/// Samples held in memory.
#[derive(Clone, Debug, Default)]
pub struct InMemoryDataset {
    pub samples: Vec<Sample>,
}

impl Dataset for InMemoryDataset {
    fn len(&self) -> usize {
        self.samples.len()
    }
    fn get(&self, index: usize) -> Result<Sample> {
        self.samples
            .get(index)
            .cloned()
            .ok_or_else(|| Error::invalid(format!("sample {index} out of range (len {})", self.samples.len())))
    }
}

/// A user metric over model outputs. Higher is better unless `higher_is_better` says otherwise.
pub trait Metric: Send {
    fn reset(&mut self);
    /// Accumulates the outputs (model order) of sample `index`.
    fn update(&mut self, index: usize, outputs: &[Tensor]) -> Result<()>;
    /// The metric over everything since `reset`.
    fn value(&mut self) -> Result<f64>;
    fn higher_is_better(&self) -> bool {
        true
    }
    /// Per-sample values of the last `update` calls in index order, when the metric has them
    /// (used to rank layers); `None` means rank by output error.
    fn per_sample(&mut self) -> Option<Vec<f64>> {
        None
    }
    /// A metric that judges whole models (NNCF's `validation_fn(compiled_model, data)`): the
    /// value of `graph` on the evaluation data, computed by the metric itself. `None` (the
    /// default): the metric is fed the outputs ovpot computes, sample by sample.
    fn value_of_model(&mut self, _graph: &crate::graph::Graph) -> Option<Result<f64>> {
        None
    }
}

/// Top-1 accuracy of output `output` against integer labels.
#[derive(Clone, Debug)]
pub struct Top1Accuracy {
    pub labels: Vec<i64>,
    pub output: usize,
    hits: Vec<(usize, f64)>,
}

impl Top1Accuracy {
    pub fn new(labels: Vec<i64>, output: usize) -> Self {
        Top1Accuracy { labels, output, hits: vec![] }
    }
}

/// Index of the largest value (first on ties), over the last axis flattened.
pub fn argmax(t: &Tensor) -> usize {
    let v = t.to_f64_vec();
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

impl Metric for Top1Accuracy {
    fn reset(&mut self) {
        self.hits.clear();
    }
    fn update(&mut self, index: usize, outputs: &[Tensor]) -> Result<()> {
        let out = outputs.get(self.output).ok_or_else(|| {
            Error::invalid(format!("metric output {} but the model has {}", self.output, outputs.len()))
        })?;
        let label = *self
            .labels
            .get(index)
            .ok_or_else(|| Error::invalid(format!("no label for sample {index} ({} labels)", self.labels.len())))?;
        let hit = (argmax(out) as i64 == label) as u8 as f64;
        self.hits.push((index, hit));
        Ok(())
    }
    fn value(&mut self) -> Result<f64> {
        if self.hits.is_empty() {
            return Err(Error::invalid("accuracy of zero samples"));
        }
        Ok(self.hits.iter().map(|h| h.1).sum::<f64>() / self.hits.len() as f64)
    }
    fn per_sample(&mut self) -> Option<Vec<f64>> {
        let mut h = self.hits.clone();
        h.sort_by_key(|x| x.0);
        Some(h.into_iter().map(|x| x.1).collect())
    }
}

/// Lists the files of `dir` whose extension (lower-cased) is one of `exts`, in natural order
/// (`2.npy` before `10.npy`).
fn files_with_ext(dir: &Path, exts: &[&str]) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut v = Vec::new();
    for entry in rd {
        let p = entry.map_err(|e| Error::io(dir, e))?.path();
        let ext = p.extension().map(|x| x.to_string_lossy().to_ascii_lowercase());
        if p.is_file() && ext.is_some_and(|x| exts.contains(&x.as_str())) {
            v.push(p);
        }
    }
    v.sort_by_key(|p| natural_key(p));
    Ok(v)
}

/// Sort key splitting a file name into text and number runs, so numbers compare by value.
fn natural_key(p: &Path) -> Vec<(String, u128)> {
    let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut key = Vec::new();
    let mut text = String::new();
    let mut digits = String::new();
    for ch in name.chars() {
        if ch.is_ascii_digit() {
            digits.push(ch);
        } else {
            if !digits.is_empty() {
                key.push((std::mem::take(&mut text), digits.parse().unwrap_or(u128::MAX)));
                digits.clear();
            }
            text.push(ch);
        }
    }
    key.push((text, if digits.is_empty() { 0 } else { digits.parse().unwrap_or(u128::MAX) }));
    key
}

/// The file stem a model input is looked up by: its name, and the name with characters that
/// cannot appear in file names (`/`, `\`, `:`) replaced by `_`.
fn stem_candidates(input: &str) -> Vec<String> {
    let safe: String = input.chars().map(|c| if matches!(c, '/' | '\\' | ':') { '_' } else { c }).collect();
    if safe == input {
        vec![input.to_string()]
    } else {
        vec![input.to_string(), safe]
    }
}

fn stem(p: &Path) -> String {
    p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Checks one sample tensor against a model input.
pub fn check_input(input: &PortDesc, t: &Tensor, origin: &str) -> Result<()> {
    crate::graph::check_input_tensor(&input.name, input.element_type, &input.shape, t, &format!(" in {origin}"))
}

/// Rows `i..i+1` of axis 0 (the sample keeps a batch dim of 1).
fn row(t: &Tensor, i: usize) -> Tensor {
    crate::map_tensor!(t, a => a.slice_axis(Axis(0), Slice::from(i..i + 1)).to_owned())
}

/// Adds a leading batch dim of 1.
fn with_batch(t: &Tensor) -> Result<Tensor> {
    let mut shape = vec![1];
    shape.extend_from_slice(t.shape());
    t.reshaped(&shape)
}

/// How a `.npy` array relates to one model input.
#[derive(Clone, Copy, Debug, PartialEq)]
enum NpyForm {
    /// Axis 0 enumerates samples; each row is one sample with batch 1.
    Stacked,
    /// The whole array is one sample without its batch dim.
    OneSample,
}

fn npy_form(input: &PortDesc, t: &Tensor, origin: &str) -> Result<NpyForm> {
    let shape = t.shape();
    let type_ok = input.element_type == ElementType::Dynamic || t.element_type() == input.element_type;
    if !type_ok {
        return Err(Error::mismatch(format!(
            "input '{}': expected element type {}, found {} in {origin}",
            input.name,
            input.element_type,
            t.element_type()
        )));
    }
    if !shape.is_empty() {
        let mut row_shape = vec![1];
        row_shape.extend_from_slice(&shape[1..]);
        if input.shape.accepts(&row_shape) {
            return Ok(NpyForm::Stacked);
        }
    }
    let mut one = vec![1];
    one.extend_from_slice(shape);
    if input.shape.accepts(&one) {
        return Ok(NpyForm::OneSample);
    }
    Err(Error::mismatch(format!(
        "input '{}': expected shape {} (samples stacked on axis 0, batch 1 each), found {:?} in {origin}",
        input.name, input.shape, shape
    )))
}

enum NpySource {
    /// One array per model input (model order), samples on axis 0.
    Stacked(Vec<(Tensor, NpyForm)>),
    /// One file per sample for a single-input model, read on demand.
    PerSample(Vec<PathBuf>),
}

/// Samples from `.npy` files:
/// - a folder with `<input name>.npy` for every model input, samples stacked on axis 0 (the layout
///   of the fixtures' `calib/` folders);
/// - for a single-input model: a folder with one `.npy` per sample (natural file-name order), or a
///   single `.npy` file (or a folder holding just one) with the samples stacked on axis 0.
///
/// Arrays may also hold one sample without its batch dim.
pub struct NpyFolderDataset {
    inputs: Vec<PortDesc>,
    source: NpySource,
    available: usize,
    limit: Option<usize>,
    origin: PathBuf,
}

impl std::fmt::Debug for NpyFolderDataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NpyFolderDataset({}, {} samples)", self.origin.display(), self.len())
    }
}

impl NpyFolderDataset {
    /// Opens `path` (a folder or one `.npy` file) for a model with `inputs`.
    pub fn open(path: &Path, inputs: &[PortDesc]) -> Result<Self> {
        if inputs.is_empty() {
            return Err(Error::invalid("the model has no inputs (no Parameter layer): there is nothing to calibrate"));
        }
        if path.is_file() {
            let [input] = inputs else {
                return Err(Error::invalid(format!(
                    "{} is one file but the model has {} inputs; pass a folder with one <input>.npy each",
                    path.display(),
                    inputs.len()
                )));
            };
            return Self::stacked(path, vec![(input.clone(), path.to_path_buf())], inputs);
        }
        let files = files_with_ext(path, &["npy"])?;
        if files.is_empty() {
            return Err(Error::invalid(format!("no .npy files in {}", path.display())));
        }
        let mut named = Vec::new();
        let mut missing = Vec::new();
        for input in inputs {
            let cands = stem_candidates(&input.name);
            match files.iter().find(|f| cands.contains(&stem(f))) {
                Some(f) => named.push((input.clone(), f.clone())),
                None => missing.push(input.name.clone()),
            }
        }
        if missing.is_empty() {
            return Self::stacked(path, named, inputs);
        }
        if let [input] = inputs {
            if let [only] = files.as_slice() {
                return Self::stacked(path, vec![(input.clone(), only.clone())], inputs);
            }
            // One file per sample: check the first now so a wrong folder fails early.
            let first = crate::npy::read_npy(&files[0])?;
            Self::per_sample_tensor(input, first, &files[0])?;
            return Ok(NpyFolderDataset {
                inputs: inputs.to_vec(),
                available: files.len(),
                source: NpySource::PerSample(files),
                limit: None,
                origin: path.to_path_buf(),
            });
        }
        let found: Vec<String> = files.iter().map(|f| stem(f)).collect();
        Err(Error::invalid(format!(
            "{} has no .npy for input(s) '{}' (expected one <input name>.npy per input; one .npy per sample \
             works for single-input models only; found {:?})",
            path.display(),
            missing.join("', '"),
            found
        )))
    }

    fn stacked(origin: &Path, named: Vec<(PortDesc, PathBuf)>, inputs: &[PortDesc]) -> Result<Self> {
        let mut arrays = Vec::with_capacity(named.len());
        let mut count: Option<(usize, String)> = None;
        for (input, file) in &named {
            let t = crate::npy::read_npy(file)?;
            let shown = file.display().to_string();
            let form = npy_form(input, &t, &shown)?;
            let n = match form {
                NpyForm::Stacked => t.shape()[0],
                NpyForm::OneSample => 1,
            };
            if let Some((m, other)) = &count {
                if *m != n {
                    return Err(Error::mismatch(format!(
                        "input '{}': {shown} holds {n} samples but {other} holds {m}",
                        input.name
                    )));
                }
            } else {
                count = Some((n, shown));
            }
            arrays.push((t, form));
        }
        Ok(NpyFolderDataset {
            inputs: inputs.to_vec(),
            available: count.map(|c| c.0).unwrap_or(0),
            source: NpySource::Stacked(arrays),
            limit: None,
            origin: origin.to_path_buf(),
        })
    }

    fn per_sample_tensor(input: &PortDesc, t: Tensor, file: &Path) -> Result<Tensor> {
        let shown = file.display().to_string();
        if input.shape.accepts(t.shape()) {
            check_input(input, &t, &shown)?;
            return Ok(t);
        }
        let t = with_batch(&t)?;
        check_input(input, &t, &shown)?;
        Ok(t)
    }

    /// Keeps at most `n` samples (the first ones).
    pub fn with_limit(mut self, n: Option<usize>) -> Self {
        self.limit = n;
        self
    }

    /// Samples in the files, before any limit.
    pub fn available(&self) -> usize {
        self.available
    }
}

impl Dataset for NpyFolderDataset {
    fn len(&self) -> usize {
        self.limit.map_or(self.available, |l| l.min(self.available))
    }

    fn get(&self, index: usize) -> Result<Sample> {
        if index >= self.len() {
            return Err(Error::invalid(format!(
                "sample {index} out of range ({} has {})",
                self.origin.display(),
                self.len()
            )));
        }
        match &self.source {
            NpySource::Stacked(arrays) => arrays
                .iter()
                .zip(&self.inputs)
                .map(|((t, form), input)| {
                    let s = match form {
                        NpyForm::Stacked => row(t, index),
                        NpyForm::OneSample => with_batch(t)?,
                    };
                    Ok((input.name.clone(), s))
                })
                .collect(),
            NpySource::PerSample(files) => {
                let file = &files[index];
                let t = crate::npy::read_npy(file)?;
                let t = Self::per_sample_tensor(&self.inputs[0], t, file)?;
                Ok(vec![(self.inputs[0].name.clone(), t)])
            }
        }
    }
}

/// Where the channel dim of an image input is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(clippy::upper_case_acronyms)]
pub enum Layout {
    NCHW,
    NHWC,
}

impl std::str::FromStr for Layout {
    type Err = Error;
    fn from_str(s: &str) -> Result<Layout> {
        match s.to_ascii_uppercase().trim_matches(|c| c == '[' || c == ']') {
            "NCHW" => Ok(Layout::NCHW),
            "NHWC" => Ok(Layout::NHWC),
            other => Err(Error::invalid(format!("layout '{other}': expected NCHW or NHWC"))),
        }
    }
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Layout::NCHW => "NCHW",
            Layout::NHWC => "NHWC",
        })
    }
}

/// How images become input tensors. `mean`/`scale` follow OpenVINO's model conversion options
/// (`--mean_values`, `--scale_values`): value = (pixel − mean) / scale, one number for every
/// channel or one per channel in the model's channel order.
#[derive(Clone, Debug, Default)]
pub struct ImageOptions {
    /// Overrides the layout guessed from the input shape.
    pub layout: Option<Layout>,
    pub mean: Vec<f32>,
    pub scale: Vec<f32>,
    /// Feed BGR instead of RGB (like `--reverse_input_channels` for models trained on BGR).
    pub bgr: bool,
}

/// Images (PNG, JPEG) of a folder in natural file-name order, one sample each, resized
/// (bilinear) to the model input's height and width.
#[derive(Debug)]
pub struct ImageFolderDataset {
    source: ImageSource,
    input: PortDesc,
    layout: Layout,
    channels: usize,
    /// Target height and width; `None` keeps the image's own size (dynamic dims).
    height: Option<usize>,
    width: Option<usize>,
    mean: Vec<f32>,
    scale: Vec<f32>,
    bgr: bool,
    limit: Option<usize>,
}

/// Where an image dataset's pictures come from.
#[derive(Debug)]
enum ImageSource {
    Files(Vec<PathBuf>),
    /// `count` images made by [`crate::synthetic::fractal_image`], image `i` from `seed + i`.
    Synthetic {
        count: usize,
        seed: u64,
    },
}

/// ImageNet's mean and standard deviation in pixel units (RGB), the normalisation most float
/// image models expect when the IR does not normalise itself.
const IMAGENET_MEAN: [f32; 3] = [123.675, 116.28, 103.53];
const IMAGENET_STD: [f32; 3] = [58.395, 57.12, 57.375];

/// Whether `input` of `graph` is normalised inside the model: its first consumers (past a
/// Convert) subtract, add, multiply or divide by a constant (OpenVINO's embedded mean/scale).
pub fn normalised_inside(graph: &crate::graph::Graph, input: &str) -> bool {
    let consumers = graph.consumers();
    let Some(param) = graph.nodes.iter().position(|n| n.op_type == "Parameter" && n.name == input) else {
        return false;
    };
    let mut frontier = vec![param];
    for _ in 0..3 {
        let mut next = vec![];
        for id in frontier {
            for &(c, _) in consumers.get(&crate::graph::Outlet::new(id, 0)).map(|v| v.as_slice()).unwrap_or(&[]) {
                let n = &graph.nodes[c];
                let const_operand = n.inputs.iter().any(|o| graph.nodes[o.node].is_const());
                match n.op_type.as_str() {
                    "Subtract" | "Add" | "Multiply" | "Divide" if const_operand => return true,
                    "Convert" | "Transpose" | "Reshape" => next.push(c),
                    _ => {}
                }
            }
        }
        frontier = next;
    }
    false
}

/// The image options data-free mode feeds a model with: `opts`, plus ImageNet's normalisation
/// for a single floating-point input the model does not normalise itself (when `opts` gives no
/// mean or scale).
pub fn data_free_image_options(model: &crate::model::Model, opts: &ImageOptions) -> ImageOptions {
    let mut opts = opts.clone();
    if let [input] = model.inputs().as_slice() {
        let float = input.element_type.is_float() || input.element_type == ElementType::Dynamic;
        if float && opts.mean.is_empty() && opts.scale.is_empty() && !normalised_inside(model.graph(), &input.name) {
            let rgb = match opts.layout.or_else(|| guess_layout(&input.shape)) {
                Some(Layout::NCHW) => input.shape.dims().and_then(|d| d.get(1).and_then(|c| c.as_static())),
                Some(Layout::NHWC) => input.shape.dims().and_then(|d| d.get(3).and_then(|c| c.as_static())),
                None => None,
            } != Some(1);
            let avg = |v: [f32; 3]| vec![(v[0] + v[1] + v[2]) / 3.0];
            (opts.mean, opts.scale) = if rgb {
                (IMAGENET_MEAN.to_vec(), IMAGENET_STD.to_vec())
            } else {
                (avg(IMAGENET_MEAN), avg(IMAGENET_STD))
            };
        }
    }
    opts
}

/// File extensions read as images.
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg"];

fn static_dim(d: &Dim) -> Option<usize> {
    d.as_static()
}

/// Guesses NCHW or NHWC from a rank-4 shape: the side whose dim is 1, 3 or 4 holds channels.
fn guess_layout(shape: &PartialShape) -> Option<Layout> {
    let dims = shape.dims()?;
    let is_c = |d: &Dim| matches!(d.as_static(), Some(1 | 3 | 4));
    match (is_c(&dims[1]), is_c(&dims[3])) {
        (true, _) => Some(Layout::NCHW),
        (false, true) => Some(Layout::NHWC),
        _ => None,
    }
}

fn per_channel(values: &[f32], channels: usize, what: &str, input: &str) -> Result<Vec<f32>> {
    match values.len() {
        0 => Ok(vec![]),
        1 => Ok(vec![values[0]; channels]),
        n if n == channels => Ok(values.to_vec()),
        n => Err(Error::invalid(format!(
            "input '{input}': {what} has {n} values but the input has {channels} channels (give 1 or {channels})"
        ))),
    }
}

impl ImageFolderDataset {
    /// Opens a folder of images for a single-input model.
    pub fn open(dir: &Path, inputs: &[PortDesc], opts: &ImageOptions) -> Result<Self> {
        let files = files_with_ext(dir, IMAGE_EXTENSIONS)?;
        if files.is_empty() {
            return Err(Error::invalid(format!("no PNG or JPEG images in {}", dir.display())));
        }
        Self::new(ImageSource::Files(files), inputs, opts)
    }

    /// `count` synthetic images ([`crate::synthetic`]) for a single-image-input model, for
    /// data-free quantization. The input needs a static height and width (set them with
    /// `ModelInputs` reshaping first otherwise). A floating-point input the model does not
    /// normalise itself gets ImageNet's normalisation unless `opts` gives a mean or scale.
    pub fn synthetic(model: &crate::model::Model, count: usize, seed: u64, opts: &ImageOptions) -> Result<Self> {
        let opts = data_free_image_options(model, opts);
        let d = Self::new(ImageSource::Synthetic { count, seed }, &model.inputs(), &opts)?;
        if d.height.is_none() || d.width.is_none() {
            return Err(Error::invalid(format!(
                "input '{}' has shape {}: synthetic images need a static height and width (POT's engine 'shape')",
                d.input.name, d.input.shape
            )));
        }
        if count == 0 {
            return Err(Error::invalid("data-free mode needs at least one synthetic image"));
        }
        Ok(d)
    }

    /// Whether the synthetic images are normalised with ImageNet's mean and deviation (a float
    /// input the model does not normalise).
    pub fn normalisation(&self) -> (&[f32], &[f32]) {
        (&self.mean, &self.scale)
    }

    fn new(source: ImageSource, inputs: &[PortDesc], opts: &ImageOptions) -> Result<Self> {
        let [input] = inputs else {
            return Err(Error::invalid(format!(
                "image datasets feed single-input models; this model has {} inputs",
                inputs.len()
            )));
        };
        let dims = input.shape.dims().filter(|d| d.len() == 4).ok_or_else(|| {
            Error::mismatch(format!(
                "input '{}': images need a rank-4 input (NCHW or NHWC), the model has {}",
                input.name, input.shape
            ))
        })?;
        if let Some(b) = static_dim(&dims[0]) {
            if b != 1 {
                return Err(Error::mismatch(format!(
                    "input '{}': expected batch 1 for one image per sample, the model has {}",
                    input.name, input.shape
                )));
            }
        }
        let layout = match opts.layout.or_else(|| guess_layout(&input.shape)) {
            Some(l) => l,
            None => {
                return Err(Error::invalid(format!(
                    "input '{}' with shape {}: cannot tell NCHW from NHWC; pass --layout",
                    input.name, input.shape
                )))
            }
        };
        let (c, h, w) = match layout {
            Layout::NCHW => (&dims[1], &dims[2], &dims[3]),
            Layout::NHWC => (&dims[3], &dims[1], &dims[2]),
        };
        let channels = static_dim(c).unwrap_or(3);
        if !matches!(channels, 1 | 3 | 4) {
            return Err(Error::mismatch(format!(
                "input '{}': layout {layout} puts {channels} channels in shape {}; images have 1, 3 or 4",
                input.name, input.shape
            )));
        }
        let is_float = input.element_type.is_float() || input.element_type == ElementType::Dynamic;
        if !is_float && input.element_type != ElementType::U8 {
            return Err(Error::mismatch(format!(
                "input '{}': images feed u8 or floating-point inputs, the model wants {}",
                input.name, input.element_type
            )));
        }
        if !is_float && (!opts.mean.is_empty() || !opts.scale.is_empty()) {
            return Err(Error::invalid(format!(
                "input '{}' is u8: mean/scale apply only to floating-point inputs (the model normalises itself)",
                input.name
            )));
        }
        let mean = per_channel(&opts.mean, channels, "mean", &input.name)?;
        let scale = per_channel(&opts.scale, channels, "scale", &input.name)?;
        if let Some(bad) = scale.iter().find(|s| **s == 0.0 || !s.is_finite()) {
            return Err(Error::invalid(format!("input '{}': scale {bad} is not usable", input.name)));
        }
        Ok(ImageFolderDataset {
            source,
            input: input.clone(),
            layout,
            channels,
            height: static_dim(h),
            width: static_dim(w),
            mean,
            scale,
            bgr: opts.bgr,
            limit: None,
        })
    }

    /// Keeps at most `n` images (the first ones).
    pub fn with_limit(mut self, n: Option<usize>) -> Self {
        self.limit = n;
        self
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Where image `index` comes from, for messages.
    fn origin(&self, index: usize) -> String {
        match &self.source {
            ImageSource::Files(files) => files[index].display().to_string(),
            ImageSource::Synthetic { seed, .. } => format!("synthetic image {index} (seed {})", seed + index as u64),
        }
    }

    /// Writes the images as PNG files `000000.png`, ... into `dir` (POT's data-free
    /// `data_source`), each as the model sees it before normalisation.
    pub fn save_png(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        for i in 0..self.len() {
            let (h, w, bytes) = self.pixels(i)?;
            let path = dir.join(format!("{i:06}.png"));
            let color = match self.channels {
                1 => image::ExtendedColorType::L8,
                3 => image::ExtendedColorType::Rgb8,
                _ => image::ExtendedColorType::Rgba8,
            };
            image::save_buffer(&path, &bytes, w as u32, h as u32, color)
                .map_err(|e| Error::io(&path, std::io::Error::other(e.to_string())))?;
        }
        Ok(())
    }

    /// Decodes (or makes), resizes and lays out image `index` as HWC bytes of `channels` channels.
    fn pixels(&self, index: usize) -> Result<(usize, usize, Vec<u8>)> {
        let file = match &self.source {
            ImageSource::Files(files) => &files[index],
            ImageSource::Synthetic { seed, .. } => {
                let (h, w) = (self.height.unwrap_or(224), self.width.unwrap_or(224));
                let rgb = crate::synthetic::fractal_image(h, w, seed.wrapping_add(index as u64));
                let bytes = match self.channels {
                    3 => rgb,
                    // Luma (BT.601) for one channel, opaque alpha for four.
                    1 => rgb
                        .chunks_exact(3)
                        .map(|p| (0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32).round() as u8)
                        .collect(),
                    _ => rgb.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect(),
                };
                return Ok((h, w, bytes));
            }
        };
        let img = image::ImageReader::open(file)
            .map_err(|e| Error::io(file, e))?
            .with_guessed_format()
            .map_err(|e| Error::io(file, e))?
            .decode()
            .map_err(|e| Error::parse(file.display().to_string(), e.to_string()))?;
        let h = self.height.unwrap_or(img.height() as usize);
        let w = self.width.unwrap_or(img.width() as usize);
        let img = if (img.height() as usize, img.width() as usize) != (h, w) {
            img.resize_exact(w as u32, h as u32, image::imageops::FilterType::Triangle)
        } else {
            img
        };
        let mut bytes = match self.channels {
            1 => img.to_luma8().into_raw(),
            3 => img.to_rgb8().into_raw(),
            _ => img.to_rgba8().into_raw(),
        };
        if self.bgr && self.channels >= 3 {
            for px in bytes.chunks_exact_mut(self.channels) {
                px.swap(0, 2);
            }
        }
        Ok((h, w, bytes))
    }
}

impl Dataset for ImageFolderDataset {
    fn len(&self) -> usize {
        let n = match &self.source {
            ImageSource::Files(files) => files.len(),
            ImageSource::Synthetic { count, .. } => *count,
        };
        self.limit.map_or(n, |l| l.min(n))
    }

    fn get(&self, index: usize) -> Result<Sample> {
        if index >= self.len() {
            return Err(Error::invalid(format!("image {index} out of range ({} images)", self.len())));
        }
        let (h, w, hwc) = self.pixels(index)?;
        let c = self.channels;
        let hwc_arr = ArrayD::from_shape_vec(IxDyn(&[1, h, w, c]), hwc)
            .map_err(|e| Error::internal(format!("image {}: {e}", self.origin(index))))?;
        let laid = match self.layout {
            Layout::NHWC => hwc_arr,
            Layout::NCHW => hwc_arr.permuted_axes(IxDyn(&[0, 3, 1, 2])).as_standard_layout().to_owned(),
        };
        let t = if self.input.element_type == ElementType::U8 {
            Tensor::U8(laid)
        } else {
            let caxis = match self.layout {
                Layout::NCHW => 1,
                Layout::NHWC => 3,
            };
            let mut f = laid.mapv(|x| x as f32);
            if !self.mean.is_empty() || !self.scale.is_empty() {
                for (ch, mut lane) in f.axis_iter_mut(Axis(caxis)).enumerate() {
                    let m = self.mean.get(ch).copied().unwrap_or(0.0);
                    let s = self.scale.get(ch).copied().unwrap_or(1.0);
                    lane.mapv_inplace(|x| (x - m) / s);
                }
            }
            let t = Tensor::F32(f);
            match self.input.element_type {
                ElementType::F32 | ElementType::Dynamic => t,
                et => t.convert(et)?,
            }
        };
        check_input(&self.input, &t, &self.origin(index))?;
        Ok(vec![(self.input.name.clone(), t)])
    }
}

/// Options for [`open_dataset`].
#[derive(Clone, Debug, Default)]
pub struct DataOptions {
    /// At most this many samples.
    pub limit: Option<usize>,
    pub image: ImageOptions,
}

/// Opens `path` as an `.npy` dataset (a `.npy` file, or a folder holding `.npy` files) or else an
/// image folder.
pub fn open_dataset(path: &Path, inputs: &[PortDesc], opts: &DataOptions) -> Result<Box<dyn Dataset>> {
    if !path.exists() {
        return Err(Error::invalid(format!("data path {} does not exist", path.display())));
    }
    if path.is_file() || !files_with_ext(path, &["npy"])?.is_empty() {
        return Ok(Box::new(NpyFolderDataset::open(path, inputs)?.with_limit(opts.limit)));
    }
    if !files_with_ext(path, IMAGE_EXTENSIONS)?.is_empty() {
        return Ok(Box::new(ImageFolderDataset::open(path, inputs, &opts.image)?.with_limit(opts.limit)));
    }
    Err(Error::invalid(format!("{} holds neither .npy files nor PNG/JPEG images", path.display())))
}

/// Reads integer class labels from a `.npy` (shape [N] or [N,1]; integer, or float with whole
/// values).
pub fn read_labels(path: &Path) -> Result<Vec<i64>> {
    let t = crate::npy::read_npy(path)?;
    let shown = path.display().to_string();
    let n = t.shape().first().copied().unwrap_or(0);
    if t.rank() == 0 || t.len() != n {
        return Err(Error::mismatch(format!("labels {shown}: expected shape [N] or [N,1], found {:?}", t.shape())));
    }
    if t.element_type().is_float() {
        let v = t.to_f64_vec();
        if let Some((i, x)) = v.iter().enumerate().find(|(_, x)| x.fract() != 0.0 || !x.is_finite()) {
            return Err(Error::mismatch(format!("labels {shown}: label {i} is {x}, not a class index")));
        }
        return Ok(v.into_iter().map(|x| x as i64).collect());
    }
    Ok(t.to_i64_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order() {
        let mut v: Vec<PathBuf> = ["s10.npy", "s2.npy", "s1.npy"].iter().map(PathBuf::from).collect();
        v.sort_by_key(|p| natural_key(p));
        assert_eq!(v, ["s1.npy", "s2.npy", "s10.npy"].iter().map(PathBuf::from).collect::<Vec<_>>());
    }

    #[test]
    fn layout_guess_and_parse() {
        let s = |d: &[usize]| PartialShape::from_static(d);
        assert_eq!(guess_layout(&s(&[1, 3, 24, 24])), Some(Layout::NCHW));
        assert_eq!(guess_layout(&s(&[1, 48, 192, 3])), Some(Layout::NHWC));
        assert_eq!(guess_layout(&s(&[1, 5, 7, 9])), None);
        assert_eq!("nhwc".parse::<Layout>().ok(), Some(Layout::NHWC));
        assert!("NCDHW".parse::<Layout>().is_err());
    }
}
