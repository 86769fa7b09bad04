//! Arguments shared by several commands, and turning them into models and datasets.

use super::*;

#[derive(Args, Debug, Clone, Default)]
pub(crate) struct ModelArgs {
    /// Model IR (.xml).
    #[arg(short = 'm', long = "model")]
    pub(crate) model: Option<PathBuf>,
    /// Weights (.bin); default: the .xml path with .bin.
    #[arg(short = 'w', long = "weights")]
    pub(crate) weights: Option<PathBuf>,
}

#[derive(Args, Debug, Clone, Default)]
pub(crate) struct DataArgs {
    /// Data: a folder with <input>.npy per input (samples on axis 0), one .npy per sample, a
    /// single .npy, or a folder of PNG/JPEG images.
    #[arg(long = "data", alias = "data-source")]
    pub(crate) data: Option<PathBuf>,
    /// Image input layout (NCHW or NHWC); default: guessed from the input shape.
    #[arg(long)]
    pub(crate) layout: Option<String>,
    /// Image mean, subtracted before dividing by --scale: one value or one per channel ("123.7,116.3,103.5").
    #[arg(long)]
    pub(crate) mean: Option<String>,
    /// Image scale: value = (pixel - mean) / scale; one value or one per channel.
    #[arg(long)]
    pub(crate) scale: Option<String>,
    /// Feed images as BGR instead of RGB.
    #[arg(long)]
    pub(crate) bgr: bool,
    /// Use at most this many samples.
    #[arg(long)]
    pub(crate) max_samples: Option<usize>,
}

/// What decides where quantizers go (shared by `quantize` and `info`).
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct PlanArgs {
    /// performance (symmetric, default), mixed (asymmetric activations) or accuracy (asymmetric
    /// weights too; on CPU, GPU and ANY it is mixed, as POT maps it).
    #[arg(long)]
    pub(crate) preset: Option<String>,
    /// ANY, CPU, CPU_SPR, GPU, NPU, GNA (default ANY).
    #[arg(long)]
    pub(crate) target_device: Option<String>,
    /// transformer: quantize as a transformer (SmoothQuant, no FQ on some ops); general: not a
    /// transformer. Default: detected (a graph with attention is a transformer).
    #[arg(long)]
    pub(crate) model_type: Option<String>,
    /// The int8 arithmetic of the CPU that will run the model: auto (this CPU, default), avx2
    /// (any x86 CPU without VNNI: pair sums saturate in 16 bits) or vnni (exact sums).
    #[arg(long)]
    pub(crate) target_isa: Option<String>,
    /// 7-bit weights against that saturation: auto (per layer where it pays, default),
    /// per_layer (auto without the output check of the layers left saturating), no, first_layer
    /// (POT's and NNCF's default) or all.
    #[arg(long)]
    pub(crate) saturation_fix: Option<String>,
    /// Layers to keep in floating point: names, `re:<regex>` over names, `type:<OpType>`;
    /// repeat or separate by commas.
    #[arg(long, value_delimiter = ',')]
    pub(crate) ignored_scope: Vec<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum Method {
    Default,
    /// POT spells it `accuracy_aware`.
    #[value(name = "accuracy_aware", alias = "accuracy-aware")]
    AccuracyAware,
}

pub(crate) fn parse_values(s: &str, what: &str) -> CliResult<Vec<f32>> {
    s.trim_matches(|c| c == '[' || c == ']' || c == '(' || c == ')')
        .split([',', ' '])
        .filter(|x| !x.is_empty())
        .map(|x| x.parse::<f32>().map_err(|_| CliError::usage(format!("{what}: '{x}' is not a number"))))
        .collect()
}

pub(crate) fn data_options(d: &DataArgs) -> CliResult<DataOptions> {
    let layout = match &d.layout {
        Some(l) => Some(l.parse::<Layout>()?),
        None => None,
    };
    let mean = d.mean.as_deref().map(|s| parse_values(s, "--mean")).transpose()?.unwrap_or_default();
    let scale = d.scale.as_deref().map(|s| parse_values(s, "--scale")).transpose()?.unwrap_or_default();
    Ok(DataOptions { limit: d.max_samples, image: ImageOptions { layout, mean, scale, bgr: d.bgr } })
}

pub(crate) fn read_model(m: &ModelArgs) -> CliResult<Model> {
    let Some(xml) = &m.model else {
        return usage_fail("no model given (-m model.xml)");
    };
    Ok(Model::read(xml, m.weights.as_deref())?)
}

pub(crate) fn open_data(path: Option<&Path>, model: &Model, d: &DataArgs) -> CliResult<Box<dyn Dataset>> {
    let Some(path) = path else {
        return usage_fail("no data given (--data DIR)");
    };
    let ds = open_dataset(path, &model.inputs(), &data_options(d)?)?;
    if ds.is_empty() {
        return fail(format!("{} holds no samples", path.display()));
    }
    Ok(ds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse() {
        assert_eq!(parse_values("[1, 2.5,3]", "--mean").unwrap(), vec![1.0, 2.5, 3.0]);
        assert!(parse_values("1,x", "--mean").is_err());
    }
}
