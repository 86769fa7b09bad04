//! `ovpot compress-weights`: weight-only INT8/INT4 compression (NNCF's `compress_weights`),
//! streamed from the input `.bin` to the output one.

use super::*;
use ovpot::backend::{Backend, BackendKind, OpenVinoOptions};
use ovpot::compress::{
    compress_file_with, BackupMode, Calibration, CompressMode, CompressOptions, GroupSizeFallback, SensitivityMetric,
};
use ovpot::hooks::Hooks;

#[derive(Args, Debug)]
pub(crate) struct CompressArgs {
    /// Model IR (.xml); its weights (.bin) next to it.
    #[arg(short = 'm', long = "model")]
    pub(crate) model: PathBuf,
    /// int8_asym (default), int8_sym, int4_asym or int4_sym.
    #[arg(long, default_value = "int8_asym")]
    pub(crate) mode: String,
    /// Weights per scale along the input channels (4-bit modes; default 128); -1: per channel.
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) group_size: Option<i64>,
    /// Share of the ratio-defining parameters in 4 bits (default 1); the rest take the backup mode.
    #[arg(long)]
    pub(crate) ratio: Option<f64>,
    /// Precision of what is not 4-bit: int8_asym (default), int8_sym or none (floating point).
    #[arg(long)]
    pub(crate) backup_mode: Option<String>,
    /// A group size that does not divide a weight's input channels: error (default), ignore
    /// (that weight stays as it is) or adjust (the largest power of two that divides them, at
    /// least --min-adjusted-group-size, else the backup mode), as NNCF's group_size_fallback_mode.
    #[arg(long)]
    pub(crate) group_size_fallback: Option<String>,
    /// The smallest group size `--group-size-fallback adjust` may choose (default 32).
    #[arg(long)]
    pub(crate) min_adjusted_group_size: Option<usize>,
    /// Embeddings and the last layer in the primary precision too.
    #[arg(long)]
    pub(crate) all_layers: bool,
    /// Layers to leave as they are: names, `re:<regex>` over names, `type:<OpType>`; repeat or
    /// separate by commas.
    #[arg(long, value_delimiter = ',')]
    pub(crate) ignored_scope: Vec<String>,
    /// Calibration data for the data-aware methods: a folder with <input>.npy per model input
    /// (samples on axis 0; for an LLM, windows of token ids), as `quantize --data`.
    #[arg(long, alias = "data")]
    pub(crate) dataset: Option<PathBuf>,
    /// Calibration samples statistics are collected on (default 128).
    #[arg(long)]
    pub(crate) subset_size: Option<usize>,
    /// Activation-aware weight scaling (AWQ; needs --dataset).
    #[arg(long)]
    pub(crate) awq: bool,
    /// Per-group scales fitted to each layer's output on the calibration data (needs --dataset).
    #[arg(long)]
    pub(crate) scale_estimation: bool,
    /// GPTQ: weights rounded column by column, each column's error made up by the columns after
    /// it, layer after layer on the calibration data (needs --dataset; with --scale-estimation
    /// the groups' scales are estimated inside it).
    #[arg(long)]
    pub(crate) gptq: bool,
    /// How mixed precision (--ratio below 1) ranks layers: weight_quantization_error,
    /// hessian_input_activation, mean_activation_variance, max_activation_variance (default
    /// with --dataset) or mean_activation_magnitude.
    #[arg(long)]
    pub(crate) sensitivity_metric: Option<String>,
    /// Keep the statistics in DIR and read them from there when the same model and samples come
    /// again (NNCF's statistics_path): a second run with other options skips the model runs.
    #[arg(long, value_name = "DIR")]
    pub(crate) stats_cache: Option<PathBuf>,
    /// Where the model runs for statistics: builtin (default) or openvino.
    #[arg(long)]
    pub(crate) backend: Option<String>,
    /// OpenVINO's C library (a file or a directory) for --backend openvino.
    #[arg(long)]
    pub(crate) openvino_lib: Option<PathBuf>,
    /// Where to write optimized/<name>.xml, .bin and report.json.
    #[arg(long, default_value = "results")]
    pub(crate) output_dir: PathBuf,
    /// Write the model as a copy of its export folder instead (optimum-intel's layout): DIR/<xml
    /// file name> and .bin, the folder's other files (config.json, tokenizer, ...) copied beside,
    /// the report as DIR/ovpot_report.json. Replaces --output-dir.
    #[arg(long, conflicts_with = "output_dir")]
    pub(crate) export_dir: Option<PathBuf>,
}

pub(crate) fn cmd_compress(a: &CompressArgs, log: Logger, visible: bool) -> CliResult<()> {
    let mode = CompressMode::parse(&a.mode).ok_or_else(|| {
        CliError::usage(format!("--mode {}: expected int8_asym, int8_sym, int4_asym or int4_sym", a.mode))
    })?;
    let backup_mode = match &a.backup_mode {
        Some(b) => BackupMode::parse(b)
            .ok_or_else(|| CliError::usage(format!("--backup-mode {b}: expected int8_asym, int8_sym or none")))?,
        None => BackupMode::default(),
    };
    let group_size_fallback = match &a.group_size_fallback {
        Some(f) => GroupSizeFallback::parse(f)
            .ok_or_else(|| CliError::usage(format!("--group-size-fallback {f}: expected error, ignore or adjust")))?,
        None => GroupSizeFallback::default(),
    };
    let mut options = CompressOptions {
        mode,
        group_size: a.group_size,
        ratio: a.ratio,
        backup_mode,
        all_layers: a.all_layers,
        group_size_fallback,
        min_adjusted_group_size: a.min_adjusted_group_size.unwrap_or(32),
        awq: a.awq,
        scale_estimation: a.scale_estimation,
        gptq: a.gptq,
        statistics_path: a.stats_cache.clone(),
        ..Default::default()
    };
    if let Some(n) = a.subset_size {
        options.subset_size = n;
    }
    if let Some(m) = &a.sensitivity_metric {
        options.sensitivity_metric = Some(SensitivityMetric::parse(m).ok_or_else(|| {
            CliError::usage(format!(
                "--sensitivity-metric {m}: expected weight_quantization_error, hessian_input_activation, \
                 mean_activation_variance, max_activation_variance or mean_activation_magnitude"
            ))
        })?);
    }
    add_ignored_items(&mut options.ignored, &a.ignored_scope);
    options.validate_with(a.dataset.is_some())?;
    let backend_kind: BackendKind = match &a.backend {
        Some(b) => enum_value(b, "--backend", BACKENDS)?,
        None => BackendKind::Builtin,
    };
    let dataset = match &a.dataset {
        Some(dir) => {
            // The inputs' names and shapes: the graph without its large constants.
            let model = Model::from_graph(ovpot::ir::reader::read_model_lazy(&a.model, None, 1 << 16)?);
            let ds = open_dataset(dir, &model.inputs(), &Default::default())?;
            if ds.is_empty() {
                return fail(format!("{} holds no samples", dir.display()));
            }
            Some(ds)
        }
        None => None,
    };
    let backend = match &dataset {
        Some(_) => Some(Backend::open(backend_kind, &OpenVinoOptions { library: a.openvino_lib.clone(), core: None })?),
        None => None,
    };
    let calibration = match (&dataset, backend) {
        (Some(d), Some(backend)) => Some(Calibration { data: d.as_ref(), backend }),
        _ => None,
    };
    let export = a.export_dir.as_deref().map(|d| prepare_export_dir(d, &a.model)).transpose()?;
    let (out_xml, report_path) = match &export {
        Some(e) => (e.model_xml.clone(), e.report.clone()),
        None => {
            let opt_dir = prepare_output_dir(&a.output_dir)?;
            let name = a.model.file_stem().and_then(|s| s.to_str()).unwrap_or("model").to_string();
            (opt_dir.join(format!("{name}.xml")), a.output_dir.join("report.json"))
        }
    };
    let bars = std::sync::Arc::new(std::sync::Mutex::new(StageBars { visible, current: None }));
    let progress_bars = bars.clone();
    let mut hooks = Hooks {
        progress: Some(Box::new(move |stage, done, total| {
            progress_bars.lock().map(|mut b| b.update(stage, done, total)).unwrap_or(true)
        })),
        log: Some(Box::new(move |level, msg| log.log(level, msg))),
        log_level: Some(log.level),
    };
    let report = compress_file_with(&a.model, &out_xml, &options, calibration.as_ref(), &mut hooks)?;
    drop(hooks);
    drop(bars);
    if let Some(e) = &export {
        let n = e.copy_companions(&a.model, None)?;
        log.info(&format!("copied {n} other file(s) of the model's folder into {}", e.dir.display()));
    }
    let text = serde_json::to_string_pretty(&report).map_err(|e| CliError::new(format!("report: {e}")))?;
    std::fs::write(&report_path, text + "\n").map_err(|e| ovpot::Error::io(&report_path, e))?;
    log.info(&format!("wrote {} and {}", out_xml.display(), report_path.display()));
    Ok(())
}
