//! Full bias correction (`use_fast_bias: false`), as NNCF's BiasCorrection: layer after layer on
//! the model with quantized weights, each layer's mean output measured with the layers before it
//! already corrected.

use super::shifts::{accept, full_shifts, BiasSite, FullSite, Schedule, SiteOutlets};
use crate::data::Dataset;
use crate::engine::Plan;
use crate::error::Result;
use crate::graph::{Graph, Outlet};
use crate::hooks::{Hooks, LogLevel, Stage};
use crate::quant::quantized::Quantized;
use crate::quant::stats::{self, Request};
use ndarray::ArrayD;
use std::collections::HashMap;

/// Full bias correction (`use_fast_bias: false`), as NNCF's BiasCorrection does it: the model
/// with quantized weights and FP32 activations, layer after layer, each layer's mean output
/// per channel measured with the layers before it already corrected
/// ([`full_shifts`]), on [`full_correction_samples`] calibration samples.
/// What it corrects is the weights' rounding error and how it travels; the activation
/// quantizers stay out. (With them in, every mean matched FP32's to 1e-4 in OpenVINO and the
/// models got worse: their clipping shrinks large outputs, a gain error whose mean a bias can
/// only move onto the samples it does not touch — mtcnn_onet's two-class head 37.0 → 32.3 dB,
/// mobilenet_v2 17.3 → 11.8 dB.) The mean that a CPU without VNNI's saturation takes off
/// is left alone for the same reason: it is the clipping of large sums (correcting it cost
/// ppocr_cls 1.3 dB without VNNI).
pub fn correct(
    q: &mut Quantized,
    sites: &[(usize, BiasSite)],
    col: &stats::Collected,
    outlets: SiteOutlets,
    data: &dyn Dataset,
    n: usize,
    hooks: &mut Hooks,
) -> Result<()> {
    let fp = &q.fp_graph;
    let qg = q.weights_applied();
    // Layer after layer needs the built-in engine (OpenVINO runs a compiled model whole):
    // OpenVINO is only the fallback for models with ops the engine lacks.
    let plan = match Plan::new(&qg) {
        Ok(p) => p,
        Err(e) if q.backend.runs_ops_beyond_builtin() => {
            hooks.log(LogLevel::Info, &format!("bias correction on the whole model in OpenVINO: {e}"));
            return full_bias_correction_compiled(q, sites, Measured { col, outlets }, qg, data, n, hooks);
        }
        Err(e) => return Err(e),
    };
    // The emulation renumbers nodes and may put ops between a layer and its bias: each site is
    // found again by its Add's name, and measured at the Add's input.
    let mut position = vec![0; qg.nodes.len()];
    for (k, &id) in qg.topo_order()?.iter().enumerate() {
        position[id] = k;
    }
    let mut found: Vec<(usize, &BiasSite, Outlet)> = vec![];
    for (_, s) in sites {
        let Some(add) = qg.find_node(&fp.nodes[s.add].name) else { continue };
        let Some(&pre_bias) = qg.nodes[add].inputs.get(1 - s.bias_input) else { continue };
        found.push((position[pre_bias.node], s, pre_bias));
    }
    found.sort_by_key(|f| f.0);
    let mut full: Vec<FullSite> =
        found.iter().map(|(_, s, o)| FullSite { pre_bias: *o, axis: s.out_axis, fp_means: vec![] }).collect();
    let schedule = Schedule::new(&plan, &full)?;
    let nb = schedule.samples(&qg, full_correction_samples(n));
    let site_list: Vec<&BiasSite> = found.iter().map(|(_, s, _)| *s).collect();
    let fp_means = fp_site_means(q, &site_list, col, outlets, data, nb, hooks)?;
    for (f, (_, s, _)) in full.iter_mut().zip(&found) {
        let mut means = fp_means.get(&(outlets.of(s), s.out_axis)).cloned().unwrap_or_default();
        // Measured after the bias: the value before it is that minus the (per-channel) bias.
        if outlets.after_bias && means.len() == s.bias.len() {
            means.iter_mut().zip(s.bias.iter()).for_each(|(m, b)| *m -= *b as f64);
        }
        f.fp_means = means;
    }
    let samples: Vec<crate::data::Sample> = (0..nb).map(|i| data.get(i)).collect::<Result<_>>()?;
    let biases: Vec<&ArrayD<f32>> = found.iter().map(|(_, s, _)| &s.bias).collect();
    let total = full.len();
    let shifts = full_shifts(&plan, &schedule, &full, &biases, &samples, FULL_THRESHOLD, &mut |k| {
        hooks.progress(Stage::BiasCorrection, k, total)
    })?;
    q.report.inferences += nb;
    for ((_, s, _), shift) in found.iter().zip(shifts) {
        if let Some(shift) = shift {
            q.bias_shifts.push(((*s).clone(), shift));
        }
    }
    Ok(())
}

/// The FP32 mean output per channel of `sites` over the first `nb` samples: the statistics
/// pass's (`col`) where it measured them on exactly those samples, else measured now, so that
/// FP32 and INT8 means always come from the same samples.
fn fp_site_means(
    q: &mut Quantized,
    sites: &[&BiasSite],
    col: &stats::Collected,
    outlets: SiteOutlets,
    data: &dyn Dataset,
    nb: usize,
    hooks: &mut Hooks,
) -> Result<HashMap<(Outlet, isize), Vec<f64>>> {
    let keys: Vec<(Outlet, isize)> = sites.iter().map(|s| (outlets.of(s), s.out_axis)).collect();
    if col.samples == nb && keys.iter().all(|k| col.channel_means.contains_key(k)) {
        return Ok(keys.into_iter().map(|k| (k, col.channel_means[&k].clone())).collect());
    }
    let mut reqs: HashMap<Outlet, Vec<Request>> = HashMap::new();
    for &(o, axis) in &keys {
        reqs.entry(o).or_default().push(Request::ChannelMean { axis });
    }
    let fp = &q.fp_graph;
    let fp_col = stats::collect_on(&q.backend, fp, None, q.config.threads, pass(data, nb, &reqs), hooks)?;
    q.report.inferences += nb;
    Ok(fp_col.channel_means)
}

/// Calibration samples full bias correction measures on: NNCF's fifth of the statistics
/// subset, but never fewer than 60 (or all there are). Measured (CPU int8 arithmetic vnni and
/// avx2, ovcheck): 60 of 300 samples is within the noise of all 300, at a fifth of the time.
pub fn full_correction_samples(n: usize) -> usize {
    (n / 5).max(n.min(60))
}

/// NNCF's BiasCorrection threshold: a shift may change a bias by up to this many times its value.
const FULL_THRESHOLD: f64 = 1000.0;

/// Full bias correction in OpenVINO, for models the built-in engine cannot run: every layer
/// measured at once in the compiled model (quantized weights, FP32 activations), so an
/// upstream layer's error is corrected again by the layers it reaches (less exact than layer
/// after layer).
fn full_bias_correction_compiled(
    q: &mut Quantized,
    sites: &[(usize, BiasSite)],
    measured: Measured,
    qg: Graph,
    data: &dyn Dataset,
    n: usize,
    hooks: &mut Hooks,
) -> Result<()> {
    let Measured { col, outlets } = measured;
    let mut qreqs: HashMap<Outlet, Vec<Request>> = HashMap::new();
    for (_, s) in sites {
        qreqs.entry(outlets.of(s)).or_default().push(Request::ChannelMean { axis: s.out_axis });
    }
    let qcol = stats::collect_on(&q.backend, &qg, None, q.config.threads, pass(data, n, &qreqs), hooks)?;
    q.report.inferences += n;
    let site_list: Vec<&BiasSite> = sites.iter().map(|(_, s)| s).collect();
    let fp_means = fp_site_means(q, &site_list, col, outlets, data, n, hooks)?;
    for (_, site) in sites {
        let key = (outlets.of(site), site.out_axis);
        if let (Some(f), Some(m)) = (fp_means.get(&key), qcol.channel_means.get(&key)) {
            let shift: Vec<f64> = f.iter().zip(m).map(|(a, b)| a - b).collect();
            if let Some(s) = accept(&site.bias, &shift, FULL_THRESHOLD) {
                q.bias_shifts.push((site.clone(), s));
            }
        }
    }
    Ok(())
}

/// A statistics pass of bias correction's.
fn pass<'a>(data: &'a dyn Dataset, n: usize, requests: &'a HashMap<Outlet, Vec<Request>>) -> stats::Pass<'a> {
    stats::Pass { data, n, requests, stage: Stage::BiasCorrection }
}

/// What the statistics pass measured for bias correction, and where it measured the sites.
struct Measured<'a> {
    col: &'a stats::Collected,
    outlets: SiteOutlets,
}
