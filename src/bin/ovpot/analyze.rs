//! `ovpot analyze`: which layers hurt the quantized model's output, why, and the smallest
//! ignored scope that reaches a target (OUT/analysis.json and OUT/analysis.html).

use super::*;
use ovpot::api::AnalysisOptions;

#[derive(Args, Debug)]
pub(crate) struct AnalyzeArgs {
    #[command(flatten)]
    pub(crate) quantize: QuantizeArgs,
    /// Evaluation samples every output SQNR is measured on (the first ones of --eval-data, else
    /// of --data); default: enough for 16384 output values, 16 to 256.
    #[arg(long)]
    pub(crate) samples: Option<usize>,
    /// The output SQNR (dB) the suggested ignored scope must reach; default: the quantized
    /// model's SQNR + 3 dB (half its output noise).
    #[arg(long)]
    pub(crate) target_sqnr: Option<f64>,
    /// Largest suggested ignored scope, in layer groups.
    #[arg(long, default_value_t = 32)]
    pub(crate) max_ignored: usize,
}

pub(crate) fn cmd_analyze(a: &AnalyzeArgs, log: Logger, visible: bool) -> CliResult<()> {
    let q = &a.quantize;
    let (mut cfg, paths) = match &q.config {
        Some(c) => read_config(c)?,
        None => (QuantConfig::default(), PotPaths::default()),
    };
    apply_overrides(&mut cfg, q)?;
    let model = read_model(&ModelArgs {
        model: q.model.model.clone().or(paths.model.clone()),
        weights: q.model.weights.clone().or(paths.weights.clone()),
    })?;
    let data_path = q.data.data.clone().or(paths.data.clone());
    if data_path.is_none() {
        return usage_fail("ovpot analyze needs calibration data: --data DIR (or the config's data_source)");
    }
    let data = open_data(data_path.as_deref(), &model, &q.data)?;
    let eval = match &q.eval_data {
        Some(p) => Some(open_data(Some(p), &model, &q.data)?),
        None => None,
    };
    let eval_ref: &dyn Dataset = eval.as_deref().unwrap_or(data.as_ref());
    std::fs::create_dir_all(&q.output_dir)
        .map_err(|e| CliError::new(format!("--output-dir {}: {e}", q.output_dir.display())))?;
    for w in unmatched_scope(&model, &cfg) {
        log.warn(&w);
    }
    log.info(&format!(
        "analysing '{}' (preset {}, device {}): statistics on {} samples, SQNR on {}",
        model.graph().name,
        json_name(&cfg.effective_preset()),
        json_name(&cfg.target_device),
        data.len().min(cfg.stat_subset_size),
        a.samples.map_or("an automatic count of".to_string(), |n| eval_ref.len().min(n).to_string())
    ));
    let options = AnalysisOptions { samples: a.samples, target_sqnr_db: a.target_sqnr, max_ignored: a.max_ignored };
    let mut session = Session::new(&model, cfg)?;
    show_progress(&mut session, log, visible);
    let analysis = session.analyze(data.as_ref(), eval_ref, &options)?;
    drop(session);

    let json = serde_json::to_string_pretty(&analysis).map_err(|e| CliError::new(format!("analysis: {e}")))?;
    let json_path = q.output_dir.join("analysis.json");
    let html_path = q.output_dir.join("analysis.html");
    std::fs::write(&json_path, json + "\n").map_err(|e| ovpot::Error::io(&json_path, e))?;
    std::fs::write(&html_path, ovpot::analysis::html::render(&analysis))
        .map_err(|e| ovpot::Error::io(&html_path, e))?;
    log.info(&format!("output SQNR with every layer quantized: {:.2} dB ({})", analysis.sqnr_db, analysis.judge));
    for l in analysis.layers.iter().take(5) {
        log.info(&format!(
            "  revert {:<40} {:+.2} dB (alone: {:.2} dB)",
            l.layers.join(", "),
            l.revert_gain_db,
            l.only_this_sqnr_db
        ));
    }
    if let Some(s) = &analysis.suggestion {
        log.info(&format!(
            "suggested ignored scope ({} layers): {:.2} dB measured on {} samples ({:.2} dB fully quantized), target {:.2} dB{}",
            s.ignored.len(),
            s.measured_sqnr_db,
            s.samples,
            s.quantized_sqnr_db,
            s.target_sqnr_db,
            if s.reached { "" } else { " (not reached)" }
        ));
    }
    log.info(&format!("wrote {} and {}", json_path.display(), html_path.display()));
    Ok(())
}
