//! `ovpot quantize`: POT's DefaultQuantization or AccuracyAwareQuantization.

use super::*;

#[derive(Args, Debug)]
pub(crate) struct QuantizeArgs {
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    /// A POT JSON config (model, engine and compression sections); options given here override it.
    #[arg(short = 'c', long = "config")]
    pub(crate) config: Option<PathBuf>,
    /// Algorithm.
    #[arg(short = 'q', long = "quantize", value_enum)]
    pub(crate) method: Option<Method>,
    #[command(flatten)]
    pub(crate) plan: PlanArgs,
    /// Samples used for statistics (stat_subset_size).
    #[arg(long)]
    pub(crate) subset_size: Option<usize>,
    /// Accuracy-aware: the largest allowed metric drop, the config's maximal_drop (absolute
    /// unless the config says relative).
    #[arg(long)]
    pub(crate) max_drop: Option<f64>,
    /// Where to write optimized/<name>.xml, .bin and report.json.
    #[arg(short = 'o', long, default_value = "results")]
    pub(crate) output_dir: PathBuf,
    /// Write the model as a copy of its export folder instead (optimum-intel's layout): DIR/<xml
    /// file name> and .bin, the folder's other files (config.json, tokenizer, ...) copied beside,
    /// the report as DIR/ovpot_report.json. Replaces --output-dir.
    #[arg(long, conflicts_with = "output_dir")]
    pub(crate) export_dir: Option<PathBuf>,
    /// Model name for the written files (default: model.model_name in the config, else the xml name).
    #[arg(short = 'n', long = "name")]
    pub(crate) name: Option<String>,
    /// Keep weights in FP32 behind FakeQuantize instead of int8 constants.
    #[arg(long)]
    pub(crate) keep_uncompressed_weights: bool,
    #[command(flatten)]
    pub(crate) data: DataArgs,
    /// Evaluation data for accuracy-aware quantization (default: --data).
    #[arg(long)]
    pub(crate) eval_data: Option<PathBuf>,
    /// Class labels (.npy, one int per evaluation sample) for top-1 accuracy.
    #[arg(long)]
    pub(crate) labels: Option<PathBuf>,
    /// Which model output the metric reads.
    #[arg(long)]
    pub(crate) metric_output: Option<usize>,
    /// Accuracy-aware without labels (POT's annotation_free): the metric is top-1 agreement with
    /// the FP32 model on the evaluation samples it predicts with confidence above
    /// --annotation-conf-threshold.
    #[arg(long)]
    pub(crate) annotation_free: bool,
    /// The FP32 confidence (softmax of --metric-output) a sample needs to count (POT: 0.6).
    #[arg(long)]
    pub(crate) annotation_conf_threshold: Option<f64>,
    /// Where calibration data comes from: simplified (--data, default) or data_free (synthetic
    /// images made for the model's input; saved as PNG into --data when given, or read from it
    /// when it already holds images and --generate-data is not set).
    #[arg(long)]
    pub(crate) engine: Option<String>,
    /// Data-free mode: make new images even when --data already holds some.
    #[arg(long)]
    pub(crate) generate_data: bool,
    /// Where statistics, bias correction and accuracy-aware verdicts run: builtin (default) or
    /// openvino (OpenVINO's CPU plugin, loaded at run time: its exact int8 arithmetic and speed).
    #[arg(long)]
    pub(crate) backend: Option<String>,
    /// OpenVINO's C library (a file, or a directory holding libopenvino_c.so*) for
    /// --backend openvino; default $OVPOT_OPENVINO_LIB, else the loader's search path.
    #[arg(long)]
    pub(crate) openvino_lib: Option<PathBuf>,
}

/// Creates the output folders and proves them writable, so a bad `--output-dir` fails before
/// the (long) quantization instead of after it.
pub(crate) fn prepare_output_dir(dir: &Path) -> CliResult<PathBuf> {
    let opt = dir.join("optimized");
    std::fs::create_dir_all(&opt)
        .map_err(|e| CliError::new(format!("--output-dir {}: cannot create {}: {e}", dir.display(), opt.display())))?;
    for d in [dir, opt.as_path()] {
        let probe = d.join(format!(".ovpot-write-check-{}", std::process::id()));
        std::fs::write(&probe, b"").map_err(|e| {
            CliError::new(format!("--output-dir {}: cannot write in {}: {e}", dir.display(), d.display()))
        })?;
        // The probe is empty; failing to remove it does not affect the results.
        let _ = std::fs::remove_file(&probe);
    }
    Ok(opt)
}

/// POT's data-free engine: the images already in `dir` (unless `generate` is set), else
/// `stat_subset_size` synthetic images (seeded by `seed`), saved into `dir` when given.
fn data_free_dataset(
    model: &Model,
    cfg: &QuantConfig,
    df: &DataFree,
    dir: Option<&Path>,
    d: &DataArgs,
    log: &Logger,
) -> CliResult<Box<dyn Dataset>> {
    let mut options = data_options(d)?;
    if let Some(l) = df.layout.as_deref().filter(|_| options.image.layout.is_none()) {
        options.image.layout = Some(l.parse()?);
    }
    options.image = ovpot::data::data_free_image_options(model, &options.image);
    let has_images = dir.is_some_and(|p| {
        std::fs::read_dir(p).is_ok_and(|mut r| {
            r.any(|e| {
                e.is_ok_and(|e| {
                    let ext = e.path().extension().map(|x| x.to_string_lossy().to_ascii_lowercase());
                    ext.is_some_and(|x| ovpot::data::IMAGE_EXTENSIONS.contains(&x.as_str()))
                })
            })
        })
    });
    if let (Some(dir), true, false) = (dir, has_images, df.generate) {
        log.info(&format!("data-free: using the images in {} (--generate-data makes new ones)", dir.display()));
        let ds = ImageFolderDataset::open(dir, &model.inputs(), &options.image)?.with_limit(options.limit);
        return Ok(Box::new(ds));
    }
    let count = options.limit.unwrap_or(cfg.stat_subset_size).min(cfg.stat_subset_size);
    let ds = ImageFolderDataset::synthetic(model, count, cfg.seed, &options.image)?;
    let (mean, scale) = ds.normalisation();
    let how = if mean.is_empty() && scale.is_empty() {
        "pixel values 0..255 (the model normalises them)".to_string()
    } else {
        format!("normalised with mean {mean:?} and scale {scale:?}")
    };
    log.info(&format!("data-free: {count} synthetic fractal images, layout {}, {how}", ds.layout()));
    if let Some(dir) = dir {
        ds.save_png(dir)?;
        log.info(&format!("data-free: images saved to {}", dir.display()));
    }
    Ok(Box::new(ds))
}

/// Ignored-scope names and patterns that match no layer: usually a typo, and otherwise silent.
pub(crate) fn unmatched_scope(model: &Model, cfg: &QuantConfig) -> Vec<String> {
    ovpot::quant::placement::unmatched_ignored(model.graph(), &cfg.ignored)
}

pub(crate) fn cmd_quantize(a: &QuantizeArgs, log: Logger, visible: bool) -> CliResult<()> {
    let (mut cfg, mut paths) = match &a.config {
        Some(c) => read_config(c)?,
        None => (QuantConfig::default(), PotPaths::default()),
    };
    match a.engine.as_deref() {
        None => {}
        Some("simplified") => paths.data_free = None,
        Some("data_free") => {
            let df = paths.data_free.get_or_insert_with(Default::default);
            df.generate |= a.generate_data;
        }
        Some(e) => {
            return usage_fail(format!("--engine {e}: 'simplified' (data folders) or 'data_free' (synthetic images)"))
        }
    }
    apply_overrides(&mut cfg, a)?;
    let xml = a.model.model.clone().or(paths.model.clone());
    let weights = a.model.weights.clone().or(paths.weights.clone());
    let model = read_model(&ModelArgs { model: xml.clone(), weights })?;
    let export = match (&a.export_dir, &xml) {
        (Some(d), Some(x)) => Some(prepare_export_dir(d, x)?),
        (Some(_), None) => return usage_fail("--export-dir needs the model given by -m or the config"),
        (None, _) => None,
    };
    let opt_dir = match &export {
        Some(e) => e.dir.clone(),
        None => prepare_output_dir(&a.output_dir)?,
    };
    let name = model_name(a, &paths, xml.as_deref());
    let data_path = a.data.data.clone().or(paths.data.clone());
    if data_path.is_none() {
        if let Some(hint) = paths.engine_hint(cfg.algorithm) {
            return usage_fail(hint);
        }
    }
    if paths.data_free.is_some() {
        cfg.use_data_free_estimators();
    }
    let data = match &paths.data_free {
        Some(df) => data_free_dataset(&model, &cfg, df, data_path.as_deref(), &a.data, &log)?,
        None => open_data(data_path.as_deref(), &model, &a.data)?,
    };
    if let Some(ac) = &paths.accuracy_checker {
        log.info(&format!("the config's accuracy-checker engine ({ac}) is not used; ovpot reads plain data folders"));
    }
    let mut warnings = paths.warnings.clone();
    warnings.extend(unmatched_scope(&model, &cfg));
    for w in &warnings {
        log.warn(w);
    }
    log.debug(&format!(
        "data: {} sample(s) from {}",
        data.len(),
        data_path.as_deref().unwrap_or(Path::new("")).display()
    ));
    log.debug(&format!("settings: {}", serde_json::to_string(&cfg).unwrap_or_default()));
    log.info(&format!(
        "quantizing '{name}' ({}, preset {}, device {}) on {} samples",
        json_name(&cfg.algorithm),
        json_name(&cfg.effective_preset()),
        json_name(&cfg.target_device),
        data.len().min(cfg.stat_subset_size)
    ));

    let mut session = Session::new(&model, cfg.clone())?;
    show_progress(&mut session, log, visible);

    let mut outcome = match cfg.algorithm {
        Algorithm::Default => session.quantize(data.as_ref())?,
        Algorithm::AccuracyAware => {
            let sources = EvalSources { a, paths: &paths, data_path: data_path.as_deref() };
            run_accuracy_aware(&mut session, &model, data.as_ref(), &sources)?
        }
    };
    drop(session);
    outcome.report.warnings.extend(warnings);

    let (out_xml, report_path) = match &export {
        Some(e) => (e.model_xml.clone(), e.report.clone()),
        None => (opt_dir.join(format!("{name}.xml")), a.output_dir.join("report.json")),
    };
    outcome.model.save(&out_xml, None)?;
    if let (Some(e), Some(x)) = (&export, &xml) {
        let n = e.copy_companions(x, paths.weights.as_deref().or(a.model.weights.as_deref()))?;
        log.info(&format!("copied {n} other file(s) of the model's folder into {}", e.dir.display()));
    }
    let report = serde_json::to_string_pretty(&outcome.report).map_err(|e| CliError::new(format!("report: {e}")))?;
    std::fs::write(&report_path, report + "\n").map_err(|e| ovpot::Error::io(&report_path, e))?;
    log.info(&format!(
        "wrote {} ({} quantizers, {} layers quantized) and {}",
        out_xml.display(),
        outcome.report.fake_quantize.len(),
        outcome.report.quantized_layers.len(),
        report_path.display()
    ));
    log_outcome(&outcome, &log);
    Ok(())
}

/// Where accuracy-aware quantization's evaluation data and labels come from.
struct EvalSources<'a> {
    a: &'a QuantizeArgs,
    paths: &'a PotPaths,
    data_path: Option<&'a Path>,
}

/// AccuracyAwareQuantization with top-1 accuracy against `--labels`, or annotation-free.
fn run_accuracy_aware(
    session: &mut Session,
    model: &Model,
    data: &dyn Dataset,
    src: &EvalSources,
) -> CliResult<ovpot::Outcome> {
    if session.config.accuracy_aware.annotation_free {
        let eval_path =
            src.a.eval_data.clone().or(src.paths.eval_data.clone()).or(src.data_path.map(Path::to_path_buf));
        let k = src.a.metric_output.or(src.paths.metric_output).unwrap_or(0);
        check_metric_output(model, k)?;
        session.config.accuracy_aware.annotation_output = k;
        let eval = open_data(eval_path.as_deref(), model, &src.a.data)?;
        // The metric comes from the FP32 model's own predictions (see annotation_free).
        let mut unused = Top1Accuracy::new(vec![], k);
        return Ok(session.quantize_with_accuracy_control(data, eval.as_ref(), &mut unused)?);
    }
    let eval_path = src.a.eval_data.clone().or(src.paths.eval_data.clone()).or(src.data_path.map(Path::to_path_buf));
    let Some(labels_path) = src.a.labels.clone().or(src.paths.labels.clone()) else {
        return usage_fail(src.paths.engine_hint(Algorithm::AccuracyAware).unwrap_or_else(|| {
            "accuracy-aware quantization needs --labels labels.npy (or --annotation-free: agreement \
                         with the FP32 model's confident predictions)"
                .into()
        }));
    };
    let k = src.a.metric_output.or(src.paths.metric_output).unwrap_or(0);
    check_metric_output(model, k)?;
    let eval = open_data(eval_path.as_deref(), model, &src.a.data)?;
    let labels = read_labels(&labels_path)?;
    check_labels(&labels, eval.len(), &labels_path)?;
    let mut metric = Top1Accuracy::new(labels, k);
    Ok(session.quantize_with_accuracy_control(data, eval.as_ref(), &mut metric)?)
}

/// Progress bars per stage, log lines printed above them.
pub(crate) fn show_progress(session: &mut Session, log: Logger, visible: bool) {
    // Shared so that log lines print above the bar instead of through it.
    let bars = std::sync::Arc::new(std::sync::Mutex::new(StageBars { visible, current: None }));
    let progress_bars = bars.clone();
    session.hooks.progress = Some(Box::new(move |stage, done, total| match progress_bars.lock() {
        Ok(mut b) => b.update(stage, done, total),
        Err(_) => true,
    }));
    session.hooks.log = Some(Box::new(move |level, msg| match bars.lock() {
        Ok(b) => match &b.current {
            Some((_, bar)) => bar.suspend(|| log.log(level, msg)),
            None => log.log(level, msg),
        },
        Err(_) => log.log(level, msg),
    }));
    session.hooks.log_level = Some(log.level);
}

/// The accuracy reached, and a warning when the target was not.
fn log_outcome(outcome: &ovpot::Outcome, log: &Logger) {
    if let Some(acc) = &outcome.report.accuracy {
        log.info(&format!(
            "metric: FP32 {:.4}, default INT8 {:.4}, final {:.4} (drop {:.4}, allowed {:.4})",
            acc.baseline, acc.default_quantized, acc.final_metric, acc.drop, acc.maximal_drop
        ));
    }
    if !outcome.accuracy_reached {
        log.warn("the accuracy target was not reached; the model written is the best found");
    }
}

/// The name of the files written: `--name`, the config's `model_name`, else the xml's stem.
fn model_name(a: &QuantizeArgs, paths: &PotPaths, xml: Option<&Path>) -> String {
    a.name
        .clone()
        .or(paths.name.clone())
        .or_else(|| xml.and_then(|x| x.file_stem()).map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "model".to_string())
}
