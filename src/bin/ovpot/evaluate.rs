//! `ovpot evaluate`: top-1 accuracy of a model on labelled data.

use super::*;

#[derive(Args, Debug)]
pub(crate) struct EvaluateArgs {
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    #[command(flatten)]
    pub(crate) data: DataArgs,
    /// Class labels (.npy), one per sample.
    #[arg(long)]
    pub(crate) labels: PathBuf,
    /// Which model output holds the class scores.
    #[arg(long, default_value_t = 0)]
    pub(crate) metric_output: usize,
    /// Compute what OpenVINO's CPU plugin computes for an INT8 IR (a FakeQuantize before a fused
    /// residual Add clamps without rounding; without VNNI, int8 pair sums saturate in 16 bits)
    /// instead of FakeQuantize semantics.
    #[arg(long)]
    pub(crate) as_openvino_cpu: bool,
    /// With --as-openvino-cpu: the CPU's int8 arithmetic, auto (this CPU), avx2 (no VNNI) or vnni.
    #[arg(long, default_value = "auto")]
    pub(crate) target_isa: String,
}

/// Top-1 accuracy of `outs` against `labels`; (accuracy, hits).
pub(crate) fn top1(outs: &[Vec<Tensor>], labels: &[i64], output: usize) -> CliResult<(f64, usize)> {
    let mut metric = Top1Accuracy::new(labels.to_vec(), output);
    metric.reset();
    for (i, o) in outs.iter().enumerate() {
        metric.update(i, o)?;
    }
    let acc = metric.value()?;
    let hits = metric.per_sample().map(|v| v.iter().filter(|x| **x > 0.5).count()).unwrap_or(0);
    Ok((acc, hits))
}

pub(crate) fn check_labels(labels: &[i64], samples: usize, path: &Path) -> CliResult<()> {
    if labels.len() < samples {
        return fail(format!("labels {}: {} labels for {samples} samples", path.display(), labels.len()));
    }
    Ok(())
}

pub(crate) fn check_metric_output(model: &Model, k: usize) -> CliResult<()> {
    let n = model.outputs().len();
    if k >= n {
        return fail(format!("--metric-output {k}: the model has {n} output(s) (0..{})", n - 1));
    }
    Ok(())
}

pub(crate) fn cmd_evaluate(a: &EvaluateArgs, log: Logger, visible: bool) -> CliResult<()> {
    let model = model_as_run(read_model(&a.model)?, a.as_openvino_cpu, &a.target_isa, &log)?;
    check_metric_output(&model, a.metric_output)?;
    let data = open_data(a.data.data.as_deref(), &model, &a.data)?;
    let labels = read_labels(&a.labels)?;
    check_labels(&labels, data.len(), &a.labels)?;
    let outs = run_all(&model, data.as_ref(), visible, "evaluate")?;
    let (acc, hits) = top1(&outs, &labels, a.metric_output)?;
    println!("top-1 accuracy: {acc:.4} ({hits}/{} samples, output {})", outs.len(), a.metric_output);
    Ok(())
}
