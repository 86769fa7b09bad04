//! `saturation_fix: auto`: which layers get 7-bit weights on a CPU without VNNI.
//!
//! Such CPUs add pairs of u8×s8 products in 16 bits with saturation ([`super::isa`]). 7-bit
//! weights (NNCF's "half range") make saturation impossible but double the weight rounding
//! step; POT and NNCF apply them to the first layer or to all layers, blind to the data. Here
//! each layer whose 8-bit weights *can* saturate is measured on calibration samples, at its
//! quantized input as the INT8 model computes it, against its FP32 weights:
//!
//! * 8-bit error: `layer(x, w8 − w) + saturation(x, w8)` (rounding plus what the CPU drops),
//! * 7-bit error: `layer(x, w7 − w)` (rounding only: nothing saturates),
//!
//! and keeps whichever weights give the smaller squared error; then the layers kept in 8 bits
//! that can still saturate are judged together by the model's output ([`check_groups`]). The
//! mean saturation error per output channel of the layers kept at 8 bits also goes to fast bias
//! correction, which then corrects the bias the CPU actually computes.

use super::config::SaturationFix;
use super::isa;
use super::quantized::Quantized;
use super::stats::{self, Request};
use crate::backend::cpu_plugin::{insert_pair_saturation, pair_kind};
use crate::backend::Executable;
use crate::data::Dataset;
use crate::error::Result;
use crate::graph::{Outlet, PortInfo};
use crate::hooks::LogLevel;
use crate::hooks::{Hooks, Stage};
pub use crate::report::{GroupChoice, LayerChoice};
use crate::tensor::Tensor;
use std::collections::{HashMap, HashSet};
use std::time::Instant;

/// Calibration samples the measurement uses at most.
pub const SAMPLES: usize = 32;

/// What [`measure`] found, by index into the weight quantizers.
#[derive(Clone, Debug, Default)]
pub struct Measured {
    pub choices: Vec<(usize, LayerChoice)>,
    /// Mean saturation error per output channel with 8-bit weights.
    pub mean_saturation: HashMap<usize, Vec<f64>>,
}

/// Weight quantizers whose 8-bit codes can saturate a pair sum (and whose layer the emulation
/// models).
pub fn candidates(q: &Quantized) -> Vec<usize> {
    let g = &q.fp_graph;
    q.setup
        .weights
        .iter()
        .enumerate()
        .filter(|(i, w)| {
            let Some(kind) = (w.input == 1).then(|| pair_kind(g, w.op)).flatten() else { return false };
            // Weights with a zero point are not modelled (the emulation takes symmetric codes).
            let symmetric = q.weights[*i].1.zero_point.is_none();
            !w.half_range && symmetric && crate::backend::cpu_plugin::can_saturate(&q.weights[*i].1.codes, kind)
        })
        .map(|(i, _)| i)
        .collect()
}

/// Measures the 8-bit and 7-bit errors of the `candidates` layers on up to [`SAMPLES`]
/// calibration samples, in one pass over the INT8 model (8-bit weights everywhere).
pub fn measure(
    q: &Quantized,
    candidates: &[usize],
    data: &dyn Dataset,
    n: usize,
    hooks: &mut Hooks,
) -> Result<Measured> {
    let mut g = q.quantizers_applied(&HashSet::new(), true)?;
    let mut reqs: HashMap<Outlet, Vec<Request>> = HashMap::new();
    // weight index → (8-bit error outlet, 8-bit rounding-only outlet, 7-bit error outlet, elements per sample axis)
    let mut probes = vec![];
    for &i in candidates {
        let w = &q.setup.weights[i];
        let (fp, q8) = &q.weights[i];
        let q7 = super::minmax::quantize_weight(
            fp,
            &super::minmax::WeightScheme { half_range: true, ..w.scheme(&q.config) },
        )?;
        let node = g.nodes[w.op].clone();
        let x = node.inputs[0];
        let probe = |g: &mut crate::graph::Graph, tag: &str, delta: ndarray::ArrayD<f32>| {
            let c = g.add_const(format!("{}/saturation_probe_{tag}/weights", node.name), Tensor::F32(delta));
            g.add_op(
                format!("{}/saturation_probe_{tag}", node.name),
                &node.op_type,
                &node.version,
                node.attrs.clone(),
                vec![x, Outlet::new(c, 0)],
                vec![PortInfo::new(node.outputs[0].element_type, node.outputs[0].shape.clone())],
            )
        };
        let d8 = probe(&mut g, "8bit", &q8.dequantized() - &**fp);
        let d7 = probe(&mut g, "7bit", &q7.dequantized() - &**fp);
        let scale: Vec<f32> = q8.scale.iter().copied().collect();
        let Some(e8) = insert_pair_saturation(&mut g, w.op, x, Outlet::new(d8, 0), Tensor::I8(q8.codes.clone()), scale)
        else {
            continue;
        };
        let axis: isize = if node.op_type == "MatMul" { -1 } else { 1 };
        let (e8, d8, d7) = (Outlet::new(e8, 0), Outlet::new(d8, 0), Outlet::new(d7, 0));
        reqs.insert(e8, vec![Request::SumSquares, Request::ChannelMean { axis }]);
        reqs.insert(d8, vec![Request::ChannelMean { axis }, Request::SumSquares]);
        reqs.insert(d7, vec![Request::SumSquares]);
        probes.push((i, e8, d8, d7, axis));
    }
    let mut out = Measured::default();
    if probes.is_empty() {
        return Ok(out);
    }
    // The probes emulate the target's pair saturation: always the built-in engine.
    let exec = crate::backend::Backend::builtin().compile(&g, &stats::targets(&reqs), q.config.threads)?;
    let m = n.clamp(1, SAMPLES);
    let col = stats::collect(&exec, data, m, &reqs, hooks, Stage::Statistics)?;
    for (i, e8, d8, d7, axis) in probes {
        let (Some(s8), Some(s7)) = (col.sum_squares.get(&e8), col.sum_squares.get(&d7)) else { continue };
        let elems = col.shapes.get(&e8).map_or(1, |s| s.iter().product::<usize>()).max(1) * m;
        let (error_8bit, error_7bit) = (s8 / elems as f64, s7 / elems as f64);
        let error_8bit_exact = col.sum_squares.get(&d8).map_or(f64::NAN, |s| s / elems as f64);
        let layer = g.nodes[q.setup.weights[i].op].name.clone();
        let choice =
            LayerChoice { layer, error_8bit, error_8bit_exact, error_7bit, seven_bit: error_7bit < error_8bit };
        out.choices.push((i, choice));
        if let (Some(a), Some(b)) = (col.channel_means.get(&(e8, axis)), col.channel_means.get(&(d8, axis))) {
            out.mean_saturation.insert(i, a.iter().zip(b).map(|(x, y)| x - y).collect());
        }
    }
    Ok(out)
}

/// The output check's group of layers the local measure left in 8 bits that can saturate.
pub const SATURATING_GROUP: &str = "saturating layers";

/// Which weights a group keeps when the output cannot tell them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lean {
    /// 7-bit unless 8-bit weights are clearly better ([`clearly_better`]): POT's and NNCF's
    /// first-layer fix, the convention to depart from only on evidence.
    SevenBit,
    /// Whichever gives the higher mean per-sample SQNR: for layers the local measure already
    /// judged, where the output only has to settle the question.
    Neither,
}

/// Sets the weights of quantizer `i` to 7 bits (`half`) or 8.
pub fn set_half_range(q: &mut Quantized, i: usize, half: bool) -> Result<()> {
    let w = &mut q.setup.weights[i];
    if w.half_range != half {
        w.half_range = half;
        let fp = &q.weights[i].0;
        q.weights[i].1 = super::minmax::quantize_weight(fp, &w.scheme(&q.config))?;
    }
    Ok(())
}

/// The mean of `a − b` over the samples where both are finite (paired, the same samples).
pub fn mean_difference(a: &[f64], b: &[f64]) -> f64 {
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).filter(|v| v.is_finite()).collect();
    d.iter().sum::<f64>() / d.len().max(1) as f64
}

/// Whether per-sample SQNRs `a` beat `b` (paired, the same samples) by more than twice the
/// standard error of the mean difference.
pub fn clearly_better(a: &[f64], b: &[f64]) -> bool {
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).filter(|v| v.is_finite()).collect();
    if d.len() < 2 {
        return false;
    }
    let n = d.len() as f64;
    let mean = d.iter().sum::<f64>() / n;
    let var = d.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    mean > 2.0 * (var / n).sqrt()
}

/// Judges groups of layers by the model's output: for each group in turn, 7- or 8-bit weights
/// by the per-sample output SQNR (the mean over outputs) on up to [`SAMPLES`] calibration
/// samples computed as the target CPU computes, the groups before it as decided. The first
/// layers lean to 7 bits (POT's and NNCF's first-layer fix) and keep 8 only beyond the noise
/// of the measurement ([`clearly_better`]).
/// (The noise is real: on ppocr_cls, whose output is a two-class softmax, 32 samples preferred
/// 7-bit by 3 dB in the built-in engine and 8-bit by 1 dB in OpenVINO, 300 samples 8-bit by
/// 0.3 dB, and the evaluation set 7-bit by 1.5 dB.) The first layer's error travels
/// through the whole network, where a local measure misjudges it: 7-bit first layers give the
/// better output on the image models here even with exact sums (ppocr_cls, mobilenet_v2), by
/// several dB where they saturate. Judged one by one, the other layers' output effects are a
/// few tenths of a dB and change sign between calibration and evaluation data, so the local
/// measure decides each; but the layers it leaves in 8 bits that can still saturate are then
/// judged together, as one group, leaning neither way ([`Lean::Neither`]): a layer's local
/// squared error does not predict its effect on the output. On ppocr_cls, without VNNI, the
/// ten such layers cost 1.4 dB at the output on the evaluation set (0.3 dB on the calibration
/// set, 0.6 dB per sample) though each measured better in 8 bits; on mtcnn_onet, mobilenet_v2
/// and minilm_l6 the output keeps them in 8 bits, consistently with the evaluation sets.
///
/// With OpenVINO judging on this CPU, the candidates are compiled as deployed (one request at a
/// time), and the chosen one's latency and the FP32 model's go into `q.latency`: the report's
/// figure costs no compile of its own.
pub fn check_groups(
    q: &mut Quantized,
    groups: &[(&str, Vec<usize>, Lean)],
    fp_outputs: Option<&[Vec<Tensor>]>,
    data: &dyn Dataset,
    n: usize,
) -> Result<Vec<GroupChoice>> {
    let groups: Vec<_> = groups.iter().filter(|(_, g, _)| !g.is_empty()).collect();
    if groups.is_empty() {
        return Ok(vec![]);
    }
    let threads = q.config.threads;
    let as_deployed = q.verdicts.times_as_deployed() && q.latency.fp32.is_some();
    let m = n.clamp(1, SAMPLES);
    let idx: Vec<usize> = (0..m).collect();
    // On the verdict backend: OpenVINO where it computes the target's arithmetic here.
    let fp = match fp_outputs.filter(|f| f.len() >= m) {
        // The statistics pass kept them.
        Some(f) => f[..m].to_vec(),
        None => {
            let fp_exec = q.verdicts.compile(&q.fp_graph, &[], q.config.threads)?;
            q.report.inferences += m;
            fp_exec.run_many(data, &idx, "calibration", &mut |_| Ok(()))?
        }
    };
    let output_sqnr = |exec: &crate::backend::Executable| -> Result<(f64, Vec<f64>)> {
        let outs = exec.run_many(data, &idx, "calibration", &mut |_| Ok(()))?;
        Ok(output_sqnr_db(&fp, &outs))
    };
    let first = data.get(0).map_err(|e| e.with_sample("calibration", 0))?;
    let mut out = vec![];
    // The model as decided so far, compiled, with its output SQNR (total, per sample).
    let mut chosen: Option<(Executable, f64, Vec<f64>)> = None;
    for (name, members, lean) in groups {
        // Where the group's layers all stand one way, that candidate is the model as decided
        // so far, already measured: only the other one is built.
        let standing = members.iter().map(|&i| q.setup.weights[i].half_range).collect::<HashSet<_>>();
        let reused = match (chosen.take(), standing.len()) {
            (Some(c), 1) => Some((usize::from(standing.contains(&true)), c)),
            _ => None,
        };
        // The candidates to build, compiled side by side (OpenVINO's compile is mostly serial).
        let mut built = vec![];
        for half in [false, true] {
            if reused.as_ref().is_some_and(|(k, _)| *k == usize::from(half)) {
                continue;
            }
            for &i in members {
                set_half_range(q, i, half)?;
            }
            let g = q.quantizers_applied(&HashSet::new(), true)?;
            let exec = if as_deployed {
                q.verdicts.compile_for_latency(&g.without_dead_nodes(), threads)?
            } else {
                q.judge(g, true)?
            };
            built.push((usize::from(half), exec));
        }
        if let [(_, a), (_, b)] = &built[..] {
            crate::backend::warm_side_by_side(&[a, b], &first)?;
        }
        let mut measured: [Option<(Executable, f64, Vec<f64>)>; 2] = [None, None];
        for (k, exec) in built {
            q.report.inferences += m;
            let (total, per_sample) = output_sqnr(&exec)?;
            measured[k] = Some((exec, total, per_sample));
        }
        if let Some((k, c)) = reused {
            measured[k] = Some(c);
        }
        let [Some(eight), Some(seven)] = measured else {
            return Err(crate::error::Error::internal("a 7/8-bit candidate was not measured"));
        };
        let seven_bit = match lean {
            Lean::SevenBit => !clearly_better(&eight.2, &seven.2),
            Lean::Neither => mean_difference(&seven.2, &eight.2) > 0.0,
        };
        let (sqnr_8bit, sqnr_7bit) = (eight.1, seven.1);
        chosen = Some(if seven_bit { seven } else { eight });
        for &i in members {
            set_half_range(q, i, seven_bit)?;
        }
        let layers = members.iter().map(|&i| q.fp_graph.nodes[q.setup.weights[i].op].name.clone()).collect();
        out.push(GroupChoice {
            group: name.to_string(),
            layers,
            output_sqnr_db_8bit: sqnr_8bit,
            output_sqnr_db_7bit: sqnr_7bit,
            seven_bit,
        });
    }
    // The last group's choice is the model as decided.
    if let (true, Some(fp), Some((int8, ..))) = (as_deployed, q.latency.fp32.as_ref(), chosen) {
        q.latency.fp32_ms = fp.latency_ms(&first)?;
        q.latency.int8_ms = int8.latency_ms(&first)?;
    }
    Ok(out)
}

/// The saturation fix for a target without VNNI: measures the layers whose 8-bit weights can
/// saturate, gives 7-bit weights to those `saturation_fix: auto` picks, and records the choice in
/// the report. Returns the mean saturation error per output channel of the layers that keep
/// 8-bit weights (by weight index), for bias correction.
pub(crate) fn fix(
    q: &mut Quantized,
    data: &dyn Dataset,
    n: usize,
    fp_outputs: Option<&[Vec<Tensor>]>,
    hooks: &mut Hooks,
) -> Result<HashMap<usize, Vec<f64>>> {
    let mode = q.config.saturation_fix;
    let mode_name = serde_json::to_value(mode).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
    // `auto` and `per_layer` decide per layer; `auto` also judges the layers left saturating.
    let per_layer = matches!(mode, SaturationFix::Auto | SaturationFix::PerLayer);
    let mut means = HashMap::new();
    let mut measured = vec![];
    if q.isa.arithmetic == isa::Int8Arithmetic::PairSaturating {
        let cands = candidates(q);
        if !cands.is_empty() {
            let t = Instant::now();
            let m = measure(q, &cands, data, n, hooks)?;
            q.report.inferences += n.clamp(1, SAMPLES);
            for (i, choice) in &m.choices {
                if per_layer && choice.seven_bit {
                    set_half_range(q, *i, true)?;
                }
            }
            means = m.mean_saturation;
            measured = m.choices.into_iter().map(|(_, c)| c).collect();
            q.report.timings.push(("saturation_fix".into(), t.elapsed().as_secs_f64()));
        }
    }
    let mut groups = vec![];
    let saturating_target = q.isa.arithmetic == isa::Int8Arithmetic::PairSaturating;
    if per_layer && q.isa.isa != "none" && !saturating_target {
        // Exact sums (VNNI): a 7-bit first layer costs one bit of one layer and nothing can
        // saturate. Judged by the output on every model tried (seven fixtures, an 800x608
        // detector), 8 bits never won beyond the noise, and the check took a quarter of the
        // detector's time: POT's and NNCF's first-layer fix, unmeasured.
        for i in 0..q.setup.weights.len() {
            if q.setup.weights[i].first && q.setup.weights[i].spec.symmetric {
                set_half_range(q, i, true)?;
            }
        }
    }
    if per_layer && saturating_target {
        let t = Instant::now();
        let firsts: Vec<usize> = (0..q.setup.weights.len()).filter(|&i| q.setup.weights[i].first).collect();
        let left_8bit: Vec<usize> = match mode {
            SaturationFix::Auto => candidates(q).into_iter().filter(|&i| !q.setup.weights[i].first).collect(),
            _ => vec![],
        };
        groups = check_groups(
            q,
            &[("first layers", firsts, Lean::SevenBit), (SATURATING_GROUP, left_8bit, Lean::Neither)],
            fp_outputs,
            data,
            n,
        )?;
        for c in &groups {
            hooks.log(
                LogLevel::Info,
                &format!(
                    "{} ({}): output SQNR {:.2} dB with 8-bit, {:.2} dB with 7-bit weights; {}-bit kept",
                    c.group,
                    c.layers.len(),
                    c.output_sqnr_db_8bit,
                    c.output_sqnr_db_7bit,
                    if c.seven_bit { 7 } else { 8 }
                ),
            );
        }
        q.report.timings.push(("saturation_fix_output_check".into(), t.elapsed().as_secs_f64()));
    }
    // Bias correction corrects the mean saturation of layers left in 8 bits.
    means.retain(|i, _| !q.setup.weights[*i].half_range);
    record_choice(q, mode_name, measured, groups, hooks);
    Ok(means)
}

/// Output SQNR of INT8 outputs against FP32 (dB, the mean over outputs, so that each output counts
/// whatever its scale): over all the samples, and per sample (for the paired comparison).
fn output_sqnr_db(fp: &[Vec<Tensor>], outs: &[Vec<Tensor>]) -> (f64, Vec<f64>) {
    let k = fp.first().map_or(0, |o| o.len());
    let db = |n: f64, d: f64| 10.0 * (d.max(1e-300) / n.max(1e-300)).log10();
    let (mut num, mut den) = (vec![0.0f64; k], vec![0.0f64; k]);
    let mut per_sample = vec![];
    for (a, b) in fp.iter().zip(outs) {
        let mut sample_db = 0.0;
        for (j, (x, y)) in a.iter().zip(b).enumerate() {
            let (x, y) = (x.to_f32(), y.to_f32());
            let (mut n, mut d) = (0.0f64, 0.0f64);
            for (u, v) in x.iter().zip(y.iter()) {
                n += ((u - v) as f64).powi(2);
                d += (*u as f64).powi(2);
            }
            num[j] += n;
            den[j] += d;
            sample_db += db(n, d);
        }
        per_sample.push(sample_db / k.max(1) as f64);
    }
    let total: Vec<f64> = num.iter().zip(&den).map(|(n, d)| db(*n, *d)).collect();
    (total.iter().sum::<f64>() / total.len().max(1) as f64, per_sample)
}

/// The layers the fix gave 7-bit weights and those left saturating, into the log and the report.
fn record_choice(
    q: &mut Quantized,
    mode_name: String,
    measured: Vec<LayerChoice>,
    groups: Vec<GroupChoice>,
    hooks: &mut Hooks,
) {
    let g = &q.fp_graph;
    let seven: Vec<String> =
        q.setup.weights.iter().filter(|w| w.half_range).map(|w| g.nodes[w.op].name.clone()).collect();
    let saturating: Vec<String> = if q.isa.arithmetic == isa::Int8Arithmetic::PairSaturating {
        candidates(q).into_iter().map(|i| g.nodes[q.setup.weights[i].op].name.clone()).collect()
    } else {
        vec![]
    };
    hooks.log(
        LogLevel::Info,
        &format!(
            "saturation fix {}: {} layer(s) with 7-bit weights, {} left with 8-bit weights that can saturate",
            mode_name,
            seven.len(),
            saturating.len()
        ),
    );
    q.report.int8_arithmetic = Some(crate::report::Int8ArithmeticReport {
        target_isa: q.isa.isa.clone(),
        reason: q.isa.reason.clone(),
        saturation_fix: mode_name,
        seven_bit_layers: seven,
        measured,
        output_checks: groups,
        saturating_layers: saturating,
    });
}

#[cfg(test)]
mod tests {
    use super::{clearly_better, mean_difference};

    #[test]
    fn mean_difference_over_finite_pairs() {
        assert_eq!(mean_difference(&[11.0, 13.0, f64::INFINITY], &[10.0, 10.0, 10.0]), 2.0);
        assert_eq!(mean_difference(&[], &[]), 0.0);
    }

    #[test]
    fn better_only_beyond_the_noise() {
        // +1 dB on every sample: clearly better.
        assert!(clearly_better(&[11.0, 12.0, 13.0, 14.0], &[10.0, 11.0, 12.0, 13.0]));
        // The same mean gain, carried by one sample of four: noise.
        assert!(!clearly_better(&[14.0, 11.0, 12.0, 13.0], &[10.0, 11.0, 12.0, 13.0]));
        // Worse, equal, or too few samples to tell.
        assert!(!clearly_better(&[9.0, 10.0, 11.0], &[10.0, 11.0, 12.0]));
        assert!(!clearly_better(&[10.0, 10.0], &[10.0, 10.0]));
        assert!(!clearly_better(&[20.0], &[10.0]));
    }
}
