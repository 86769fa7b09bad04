//! FP32 against INT8 latency in the runtime on this CPU, for the report: does INT8 pay here.

use super::config::QuantConfig;
use super::quantized::LatencyProbe;
use crate::backend::{Backend, Executable};
use crate::data::Dataset;
use crate::error::Result;
use crate::graph::Graph;
use crate::hooks::{Hooks, LogLevel};
use crate::report::Report;
use std::time::Instant;

/// The two models timed: `int8` is the final model; `reverted`: it is not the model the
/// saturation fix's probe timed (layers were reverted since).
pub(crate) struct Timed<'a> {
    pub fp: &'a Graph,
    pub int8: &'a Graph,
    pub reverted: bool,
}

/// Where the backend times as deployed (OpenVINO): FP32 and INT8 latency in the runtime on this
/// CPU (what `probe` measured already, the rest measured now), into the report, with a warning
/// when INT8 is not faster here.
pub(crate) fn measure(
    backend: &Backend,
    probe: LatencyProbe,
    models: Timed,
    data: &dyn Dataset,
    config: &QuantConfig,
    report: &mut Report,
    hooks: &mut Hooks,
) -> Result<()> {
    let Timed { fp, int8, reverted } = models;
    if !backend.times_as_deployed() || data.is_empty() {
        return Ok(());
    }
    if fp.is_stateful() {
        // A stateful model (an LLM's KV cache) has no one latency: it is a prompt's prefill and
        // then a step per token, each depending on the lengths. One window's time would mislead.
        hooks.log(
            LogLevel::Info,
            "latency not measured: a stateful model's time depends on prompt and generation lengths",
        );
        return Ok(());
    }
    let t = Instant::now();
    let int8_known = probe.int8_ms.filter(|_| !reverted);
    let (fp32_ms, int8_ms) = match (probe.fp32_ms, int8_known) {
        (Some(f), Some(i)) => (f, i),
        (fp32_known, int8_known) => {
            // What is missing, compiled side by side (OpenVINO's compile is mostly serial).
            let sample = data.get(0).map_err(|e| e.with_sample("calibration", 0))?;
            let fp_exec = match (fp32_known, probe.fp32) {
                (Some(_), _) => None,
                (None, Some(e)) => Some(e),
                (None, None) => Some(backend.compile_for_latency(fp, config.threads)?),
            };
            let int8_exec =
                int8_known.is_none().then(|| backend.compile_for_latency(int8, config.threads)).transpose()?;
            let execs: Vec<&Executable> = fp_exec.iter().chain(&int8_exec).collect();
            crate::backend::warm_side_by_side(&execs, &sample)?;
            let time = |known: Option<f64>, exec: &Option<Executable>| match (known, exec) {
                (Some(v), _) => Ok(Some(v)),
                (None, Some(e)) => e.latency_ms(&sample),
                (None, None) => Ok(None),
            };
            let (Some(f), Some(i)) = (time(fp32_known, &fp_exec)?, time(int8_known, &int8_exec)?) else {
                return Ok(());
            };
            (f, i)
        }
    };
    let speedup = fp32_ms / int8_ms.max(1e-9);
    hooks.log(
        LogLevel::Info,
        &format!("latency in OpenVINO here: FP32 {fp32_ms:.3} ms, INT8 {int8_ms:.3} ms ({speedup:.2}x)"),
    );
    if speedup <= 1.0 {
        let w = format!(
            "INT8 is not faster than FP32 on this CPU ({int8_ms:.3} ms against {fp32_ms:.3} ms per inference in \
             OpenVINO {}); the INT8 model saves memory here, not time",
            backend.describe().trim_start_matches("openvino ")
        );
        hooks.log(LogLevel::Warning, &w);
        report.warnings.push(w);
    }
    report.latency = Some(crate::report::LatencyReport { fp32_ms, int8_ms, speedup, threads: config.threads });
    report.timings.push(("latency".into(), t.elapsed().as_secs_f64()));
    Ok(())
}
