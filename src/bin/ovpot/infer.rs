//! `ovpot infer`: run a model over a dataset, outputs to `.npy`.

use super::*;

#[derive(Args, Debug)]
pub(crate) struct InferArgs {
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    #[command(flatten)]
    pub(crate) data: DataArgs,
    /// Where out<k>.npy go.
    #[arg(long, short = 'o')]
    pub(crate) output_dir: PathBuf,
    /// Compute what OpenVINO's CPU plugin computes for an INT8 IR (a FakeQuantize before a fused
    /// residual Add clamps without rounding; without VNNI, int8 pair sums saturate in 16 bits)
    /// instead of FakeQuantize semantics.
    #[arg(long)]
    pub(crate) as_openvino_cpu: bool,
    /// With --as-openvino-cpu: the CPU's int8 arithmetic, auto (this CPU), avx2 (no VNNI) or vnni.
    #[arg(long, default_value = "auto")]
    pub(crate) target_isa: String,
}

/// Runs the model on every sample in parallel; outputs come back in sample order.
pub(crate) fn run_all(model: &Model, data: &dyn Dataset, visible: bool, label: &str) -> CliResult<Vec<Vec<Tensor>>> {
    let plan = model.plan()?;
    let bar = new_bar(visible, data.len(), label);
    let outs: ovpot::Result<Vec<Vec<Tensor>>> = (0..data.len())
        .into_par_iter()
        .map(|i| {
            let sample = data.get(i).map_err(|e| ovpot::Error::invalid(format!("sample {i}: {e}")))?;
            let out = plan.run(&sample).map_err(|e| ovpot::Error::invalid(format!("sample {i}: {e}")))?;
            bar.inc(1);
            Ok(out)
        })
        .collect();
    bar.finish_and_clear();
    Ok(outs?)
}

/// Concatenates per-sample outputs on axis 0 (rank-0 outputs become one row each).
pub(crate) fn stack(parts: &[&Tensor], what: &str) -> CliResult<Tensor> {
    let Some(first) = parts.first() else {
        return fail(format!("{what}: no samples"));
    };
    let et = first.element_type();
    let tail: Vec<usize> = first.shape().iter().skip(1).copied().collect();
    let mut rows = 0;
    let mut bytes = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let (r, t) = match p.shape() {
            [] => (1, &[][..]),
            s => (s[0], &s[1..]),
        };
        if p.element_type() != et || t != tail.as_slice() {
            return fail(format!(
                "{what}: sample {i} gives {} {:?}, sample 0 gave {et} {:?}; cannot stack",
                p.element_type(),
                p.shape(),
                first.shape()
            ));
        }
        rows += r;
        bytes.extend(p.to_bytes(et)?);
    }
    let mut shape = vec![rows];
    shape.extend(tail);
    Ok(Tensor::from_bytes(et, &shape, &bytes)?)
}

/// The model as given, or as OpenVINO's CPU plugin runs it (`--as-openvino-cpu`).
pub(crate) fn model_as_run(model: Model, as_openvino_cpu: bool, target_isa: &str, log: &Logger) -> CliResult<Model> {
    if !as_openvino_cpu {
        return Ok(model);
    }
    let isa = ovpot::quant::isa::resolve_here(enum_value(target_isa, "--target-isa", TARGET_ISAS)?, TargetDevice::CPU);
    let (m, e) = model.emulating_cpu(isa.arithmetic);
    log.info(&format!(
        "as OpenVINO's CPU plugin on {} ({}): {} FakeQuantize(s) clamp without rounding, {} int8 layer(s) can \
         saturate 16-bit pair sums",
        isa.isa,
        isa.reason,
        e.unrounded.len(),
        e.saturating.len()
    ));
    for name in e.unrounded.iter().chain(&e.saturating) {
        log.debug(&format!("  {name}"));
    }
    Ok(m)
}

pub(crate) fn cmd_infer(a: &InferArgs, log: Logger, visible: bool) -> CliResult<()> {
    let model = model_as_run(read_model(&a.model)?, a.as_openvino_cpu, &a.target_isa, &log)?;
    let data = open_data(a.data.data.as_deref(), &model, &a.data)?;
    let outs = run_all(&model, data.as_ref(), visible, "infer")?;
    std::fs::create_dir_all(&a.output_dir).map_err(|e| ovpot::Error::io(&a.output_dir, e))?;
    let names = model.outputs();
    for (k, desc) in names.iter().enumerate() {
        let parts: Vec<&Tensor> = outs.iter().filter_map(|o| o.get(k)).collect();
        let t = stack(&parts, &format!("output {k} ('{}')", desc.name))?;
        let path = a.output_dir.join(format!("out{k}.npy"));
        ovpot::npy::write_npy(&path, &t)?;
        log.info(&format!("wrote {} ({} {:?}, output '{}')", path.display(), t.element_type(), t.shape(), desc.name));
    }
    Ok(())
}
