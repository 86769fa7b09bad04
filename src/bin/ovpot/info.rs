//! `ovpot info`: inputs, outputs, op histogram and what `quantize` would quantize.

use super::*;

#[derive(Args, Debug)]
pub(crate) struct InfoArgs {
    /// Model IR (.xml).
    #[arg(value_name = "MODEL_XML")]
    pub(crate) xml: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    #[command(flatten)]
    pub(crate) plan: PlanArgs,
}

/// "8-bit symmetric per channel" and the like.
pub(crate) fn spec_text(q: &QSpec) -> String {
    let mode = if q.symmetric { "symmetric" } else { "asymmetric" };
    let gran = if q.per_channel { " per channel" } else { "" };
    format!("{}-bit {mode}{gran}", q.bits)
}

/// What `quantize` would do with these options: the placement the quantize path computes
/// (before SmoothQuant, which only rescales transformer MatMul inputs).
pub(crate) fn print_plan(model: &Model, a: &PlanArgs) -> CliResult<()> {
    let mut cfg = QuantConfig::default();
    apply_plan_args(&mut cfg, a)?;
    cfg.validate()?;
    let g = model.graph();
    if cfg.model_type.is_none() {
        if let Some(why) = ovpot::quant::detect::transformer(g) {
            cfg.model_type = Some(ovpot::quant::config::ModelType::Transformer);
            println!("model type: transformer, detected ({why})");
        }
    }
    println!(
        "quantization (device {}, preset {}{}):",
        json_name(&cfg.target_device),
        json_name(&cfg.effective_preset()),
        cfg.model_type.map(|m| format!(", model type {}", json_name(&m))).unwrap_or_default()
    );
    if let Some(fq) = g.nodes.iter().find(|n| n.op_type == "FakeQuantize") {
        println!("  none: the model is already quantized ('{}' is a FakeQuantize)", fq.name);
        return Ok(());
    }
    let hw = HwConfig::new(cfg.target_device, cfg.model_type);
    let setup = plan_quantizers(g, &hw, &cfg)?;
    println!("  quantized ops: {}", setup.quantized_ops.len());
    for &id in &setup.quantized_ops {
        let n = &g.nodes[id];
        let mut what = vec![];
        for p in setup.activations.iter().filter(|p| p.targets.contains(&id)) {
            let src = &g.nodes[p.source.node];
            what.push(format!("activation from '{}' ({})", src.name, spec_text(&p.spec)));
        }
        for w in setup.weights.iter().filter(|w| w.op == id) {
            let half = if w.half_range { ", half range" } else { "" };
            what.push(format!("weights on input {} ({}{half})", w.input, spec_text(&w.spec)));
        }
        println!("    {}  {}: {}", n.name, n.op_type, what.join("; "));
    }
    println!("  ignored ops: {}", setup.ignored.len());
    for i in &setup.ignored {
        println!("    {}  {}: {}", i.name, i.op_type, i.reason);
    }
    let (acts, weights) = (setup.activations.len(), setup.weights.len());
    println!(
        "  FakeQuantize to insert: {} ({acts} on activations, {weights} on weights; weights are stored as int8 \
         constants instead unless --keep-uncompressed-weights)",
        acts + weights
    );
    Ok(())
}

pub(crate) fn cmd_info(a: &InfoArgs) -> CliResult<()> {
    let mut m = a.model.clone();
    if let Some(x) = &a.xml {
        m.model = Some(x.clone());
    }
    if m.model.is_none() {
        return usage_fail("no model given (ovpot info model.xml)");
    }
    let model = read_model(&m)?;
    let g = model.graph();
    println!("model: {} (IR v{}, {} layers)", g.name, g.ir_version, g.nodes.len());
    println!("inputs:");
    for p in model.inputs() {
        println!("  {}  {} {}", p.name, p.element_type, p.shape);
    }
    println!("outputs:");
    for (k, p) in model.outputs().iter().enumerate() {
        println!("  {k}: {}  {} {}", p.name, p.element_type, p.shape);
    }
    let mut hist: std::collections::BTreeMap<(String, String), usize> = Default::default();
    for n in &g.nodes {
        *hist.entry((n.op_type.clone(), n.version.clone())).or_default() += 1;
    }
    println!("ops:");
    for ((t, v), n) in &hist {
        println!("  {t:<24} {v:<8} {n}");
    }
    let missing = ovpot::ops::missing_ops(g);
    if missing.is_empty() {
        println!("engine: every op is supported");
    } else {
        println!("engine: missing ops:");
        for ((t, v), layers) in missing {
            let shown: Vec<&str> = layers.iter().take(3).map(|s| s.as_str()).collect();
            let more = if layers.len() > 3 { format!(" and {} more", layers.len() - 3) } else { String::new() };
            println!("  {t} ({v}) used by '{}'{more}", shown.join("', '"));
        }
    }
    print_plan(&model, &a.plan)
}
