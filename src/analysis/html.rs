//! `analysis.html`: the analysis as one self-contained page (inline SVG and CSS, no script, no
//! network): the verdict first (the model's SQNR and the suggested ignored scope with its
//! measured effect), the layers sorted by harm as a bar chart, the worst layers' activation
//! histograms with their quantization ranges, and the table of every layer group.

use super::{ActivationRange, Analysis, LayerAnalysis};
use std::fmt::Write;

/// Layers drawn in the bar chart (the most harmful ones).
const CHART_LAYERS: usize = 25;
/// Layers whose activation histograms are drawn.
const HISTOGRAM_LAYERS: usize = 6;

/// The page for `a`.
pub fn render(a: &Analysis) -> String {
    let mut page = String::with_capacity(64 << 10);
    let title = format!("ovpot analysis: {}", escape(&a.model));
    // Writing into a String cannot fail.
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\n<style>{STYLE}</style></head>\n<body>\n<h1>{title}</h1>\n"
    );
    summary(&mut page, a);
    chart(&mut page, a);
    histograms(&mut page, a);
    runtime(&mut page, a);
    table(&mut page, a);
    page.push_str("</body></html>\n");
    page
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}\
h1{font-size:22px}h2{font-size:18px;margin-top:28px}\
.verdict{background:#f3f6fa;border-left:4px solid #2b6cb0;padding:10px 14px}\
.ok{color:#276749}.bad{color:#c53030}\
table{border-collapse:collapse;font-size:13px}th,td{border-bottom:1px solid #ddd;padding:3px 8px;text-align:right}\
th{background:#f3f6fa}td.name{text-align:left;font-family:monospace}\
.hists{display:flex;flex-wrap:wrap;gap:12px}.hist{font-size:12px}\
svg text{font-family:system-ui,sans-serif}";

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn summary(page: &mut String, a: &Analysis) {
    let _ = write!(
        page,
        "<div class=\"verdict\" id=\"verdict\"><p>Output SQNR with every layer quantized: <b>{:.2} dB</b> \
         on {} samples, computed by the {}.</p>",
        a.sqnr_db,
        a.samples,
        escape(&a.judge)
    );
    match &a.suggestion {
        Some(s) => {
            let class = if s.reached { "ok" } else { "bad" };
            let _ = write!(
                page,
                "<p id=\"suggestion\">Leave <b>{}</b> layer(s) in floating point to reach {:.2} dB: \
                 quantizing with that ignored scope measured <b class=\"{class}\">{:.2} dB</b> \
                 on {} samples, against {:.2} dB fully quantized (predicted {:.2} dB){}.</p>\
                 <p><code>--ignore {}</code></p>",
                s.ignored.len(),
                s.target_sqnr_db,
                s.measured_sqnr_db,
                s.samples,
                s.quantized_sqnr_db,
                s.predicted_sqnr_db,
                if s.reached { "" } else { ", the target is not reached" },
                escape(&s.ignored.join(","))
            );
        }
        None if a.layers.iter().any(|l| l.revert_gain_db > 0.0) => {
            page.push_str("<p id=\"suggestion\">The fully quantized model reaches the target: nothing to ignore.</p>")
        }
        None => page.push_str("<p id=\"suggestion\">No layer's revert improves the output: nothing to ignore.</p>"),
    }
    page.push_str("</div>\n");
}

/// Horizontal bars: what reverting each group gains (dB), the most harmful first.
fn chart(page: &mut String, a: &Analysis) {
    let shown: Vec<&LayerAnalysis> = a.layers.iter().take(CHART_LAYERS).collect();
    let max = shown.iter().map(|l| l.revert_gain_db.abs()).fold(0.1, f64::max);
    let (label_w, bar_w, row_h) = (260.0, 560.0, 18.0);
    let height = row_h * shown.len() as f64 + 30.0;
    let _ = write!(
        page,
        "<h2>Which layers hurt</h2><p>Output SQNR gained by leaving one layer group in FP32 (everything \
         else quantized), and in grey the SQNR with that group alone quantized.</p>\n\
         <svg id=\"harm-chart\" width=\"{}\" height=\"{height}\" role=\"img\" aria-label=\"revert gain per layer\">\n",
        label_w + bar_w + 180.0
    );
    for (i, l) in shown.iter().enumerate() {
        let y = 10.0 + row_h * i as f64;
        let w = (l.revert_gain_db.max(0.0) / max * bar_w).max(1.0);
        let name = short(&l.layers.join(", "), 38);
        let _ = writeln!(
            page,
            "<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"end\">{}</text>\
             <rect class=\"bar\" x=\"{label_w}\" y=\"{}\" width=\"{w:.1}\" height=\"{}\" fill=\"#c05621\"><title>{}: {:+.2} dB</title></rect>\
             <text x=\"{}\" y=\"{}\" font-size=\"11\">{:+.2} dB <tspan fill=\"#888\">(alone {:.1} dB)</tspan></text>",
            label_w - 6.0,
            y + 12.0,
            escape(&name),
            y + 2.0,
            row_h - 4.0,
            escape(&l.layers.join(", ")),
            l.revert_gain_db,
            label_w + w + 6.0,
            y + 12.0,
            l.revert_gain_db,
            l.only_this_sqnr_db
        );
    }
    page.push_str("</svg>\n");
}

/// Histograms of the values the worst layers' activation quantizers saw, their range in blue
/// and the clipped share.
fn histograms(page: &mut String, a: &Analysis) {
    page.push_str(
        "<h2>Activation ranges of the worst layers</h2><p>Values seen on the evaluation samples \
         (log scale); the blue band is the quantizer's range, values outside it are clipped.</p>\
         <div class=\"hists\" id=\"histograms\">\n",
    );
    for l in a.layers.iter().take(HISTOGRAM_LAYERS) {
        for r in &l.activations {
            histogram(page, r);
        }
    }
    page.push_str("</div>\n");
}

fn histogram(page: &mut String, r: &ActivationRange) {
    let (w, h) = (300.0, 110.0);
    let span = (r.seen_max - r.seen_min).max(f32::MIN_POSITIVE) as f64;
    let x_of = |v: f32| ((v - r.seen_min) as f64 / span * w).clamp(0.0, w);
    let top = r.histogram.iter().map(|&c| ((c + 1) as f64).ln()).fold(1e-9, f64::max);
    let bin_w = w / r.histogram.len().max(1) as f64;
    let _ = write!(
        page,
        "<div class=\"hist\"><div>{}</div><svg class=\"histogram\" width=\"{w}\" height=\"{}\">\
         <rect x=\"{:.1}\" y=\"0\" width=\"{:.1}\" height=\"{h}\" fill=\"#bee3f8\"/>",
        escape(&short(&r.tensor, 44)),
        h + 16.0,
        x_of(r.range_low),
        (x_of(r.range_high) - x_of(r.range_low)).max(1.0)
    );
    for (i, &c) in r.histogram.iter().enumerate() {
        let bh = ((c + 1) as f64).ln() / top * h * (c > 0) as u8 as f64;
        let _ = write!(
            page,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"#4a5568\"/>",
            i as f64 * bin_w,
            h - bh,
            (bin_w - 0.5).max(0.5)
        );
    }
    let _ = writeln!(
        page,
        "<text x=\"0\" y=\"{}\" font-size=\"10\">{:.3}</text><text x=\"{w}\" y=\"{}\" font-size=\"10\" \
         text-anchor=\"end\">{:.3}</text></svg><div>range [{:.3}, {:.3}], clipped {:.3} %</div></div>",
        h + 12.0,
        r.seen_min,
        h + 12.0,
        r.seen_max,
        r.range_low,
        r.range_high,
        r.clipped_share * 100.0
    );
}

/// Nodes of the runtime table (the slowest in the INT8 model).
const RUNTIME_NODES: usize = 25;

/// What OpenVINO runs, FP32 against INT8, the slowest INT8 nodes first.
fn runtime(page: &mut String, a: &Analysis) {
    let Some(r) = &a.runtime else { return };
    let int8 = r.nodes.iter().filter(|n| n.int8).count();
    let _ = writeln!(
        page,
        "<h2>In the runtime</h2><p>{} on this CPU, one request at a time: {:.3} ms per inference in FP32,          {:.3} ms in INT8 (sums of the performance counters); {int8} of {} nodes run int8 kernels. The          {} slowest INT8 nodes:</p><table id=\"runtime\"><tr><th>node</th><th>type</th><th>INT8 kernel</th>\
         <th>INT8 µs</th><th>FP32 kernel</th><th>FP32 µs</th></tr>",
        escape(&r.runtime),
        r.fp32_ms,
        r.int8_ms,
        r.nodes.len(),
        RUNTIME_NODES.min(r.nodes.len())
    );
    for n in r.nodes.iter().take(RUNTIME_NODES) {
        let _ = writeln!(
            page,
            "<tr><td class=\"name\">{}</td><td>{}</td><td class=\"{}\">{}</td><td>{:.0}</td><td>{}</td><td>{}</td></tr>",
            escape(&n.name),
            escape(&n.node_type),
            if n.int8 { "ok" } else { "" },
            escape(&n.exec_type),
            n.int8_us,
            escape(n.fp32_exec_type.as_deref().unwrap_or("–")),
            n.fp32_us.map_or("–".to_string(), |t| format!("{t:.0}"))
        );
    }
    page.push_str("</table>\n");
}

fn table(page: &mut String, a: &Analysis) {
    page.push_str(
        "<h2>Every layer group</h2><table id=\"layers\"><tr><th>layers</th><th>types</th>\
         <th>revert gain dB</th><th>alone dB</th><th>clipped %</th><th>weight SQNR dB (worst ch.)</th>\
         <th>weight bits</th><th>can saturate</th><th>int8 in the runtime</th></tr>\n",
    );
    for l in &a.layers {
        let clipped = l.activations.iter().map(|r| r.clipped_share).fold(0.0, f64::max) * 100.0;
        let wsqnr = l.weights.iter().map(|w| w.min_sqnr_db).fold(f64::INFINITY, f64::min);
        let bits: Vec<String> = l.weights.iter().map(|w| w.bits.to_string()).collect();
        let saturate = l.weights.iter().any(|w| w.can_saturate);
        let _ = writeln!(
            page,
            "<tr><td class=\"name\">{}</td><td>{}</td><td>{:+.2}</td><td>{:.2}</td><td>{clipped:.3}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&l.layers.join(", ")),
            escape(&l.op_types.join(", ")),
            l.revert_gain_db,
            l.only_this_sqnr_db,
            if wsqnr.is_finite() { format!("{wsqnr:.1}") } else { "–".into() },
            bits.join(", "),
            if saturate { "yes" } else { "" },
            match l.runs_int8 {
                Some(true) => "yes",
                Some(false) => "no",
                None => "",
            }
        );
    }
    page.push_str("</table>\n");
}

/// `s` cut to `n` characters with an ellipsis.
fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).collect::<String>() + "…"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{Suggestion, HISTOGRAM_BINS};

    #[test]
    fn the_page_escapes_names_and_draws_every_part() {
        let range = ActivationRange {
            tensor: "<x>:0".into(),
            seen_min: -1.0,
            seen_max: 3.0,
            range_low: 0.0,
            range_high: 2.0,
            levels: 256,
            clipped_share: 0.25,
            histogram: vec![3; HISTOGRAM_BINS],
            ..Default::default()
        };
        let a = Analysis {
            model: "m&m".into(),
            judge: "builtin".into(),
            samples: 4,
            sqnr_db: 20.0,
            layers: vec![LayerAnalysis {
                layers: vec!["conv<1>".into()],
                op_types: vec!["Convolution".into()],
                revert_gain_db: 2.5,
                activations: vec![range],
                ..Default::default()
            }],
            suggestion: Some(Suggestion { ignored: vec!["conv<1>".into()], reached: true, ..Default::default() }),
            runtime: None,
            timings: vec![],
        };
        let page = render(&a);
        for part in ["id=\"verdict\"", "id=\"harm-chart\"", "class=\"histogram\"", "id=\"layers\"", "clipped 25.000 %"]
        {
            assert!(page.contains(part), "{part} missing");
        }
        assert!(page.contains("conv&lt;1&gt;") && !page.contains("conv<1>"), "names are escaped");
        assert!(page.contains("m&amp;m"));
        assert!(!page.contains("<script") && !page.contains("http"), "self-contained");
    }
}
