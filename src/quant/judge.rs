//! Who computes an INT8 model's outputs when ovpot judges it. The same IR gives different
//! outputs exactly (IR semantics), on a CPU without VNNI (16-bit saturating pair sums) and in
//! OpenVINO's CPU plugin (which also rounds some FakeQuantize ranges its own way); accuracy-aware
//! quantization judges candidates one way, and a user who evaluates the result must be able to
//! judge it the same way, or knowingly another.

use super::config::{QuantConfig, TargetDevice, TargetIsa};
use super::isa::{self, AssumedIsa};
use crate::backend::cpu_plugin::Int8Arithmetic;
use crate::backend::{Backend, BackendKind, Executable};
use crate::error::{Error, Result};
use crate::graph::Graph;

/// Who computes a model's outputs when ovpot judges it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Judge {
    /// The judge accuracy-aware quantization uses for these settings (named in the report).
    #[default]
    Default,
    /// IR semantics exactly: the built-in engine.
    Exact,
    /// As OpenVINO's CPU plugin computes on the target CPU (`target_isa`): the built-in engine
    /// emulating it.
    Target,
    /// OpenVINO's CPU plugin on this machine (the settings' OpenVINO library or core).
    OpenVino,
}

/// A judge made concrete: the backend that runs models and what it is, in words.
pub struct Judged {
    pub backend: Backend,
    /// E.g. "builtin engine emulating OpenVINO's CPU plugin on an avx2 CPU (asked)".
    pub name: String,
    /// Why the default is not what the settings' backend alone would suggest, if it is not.
    pub note: Option<String>,
}

impl Judged {
    /// `graph` compiled to compute as this judge does.
    pub fn compile(&self, graph: Graph, threads: usize) -> Result<Executable> {
        self.backend.compile_as_target(graph, threads)
    }
}

/// The judge of INT8 candidates for `config` given the statistics backend (what
/// [`super::prepare`] and accuracy-aware quantization use): the backend itself when it computes
/// the target's arithmetic here, else the built-in engine emulating the target, with the reason.
pub(crate) fn verdicts(backend: &Backend, target: &AssumedIsa, config: &QuantConfig) -> (Backend, Option<String>) {
    match verdict_backend(backend, target, config) {
        Ok(b) => (b, None),
        Err(why) => (Backend::builtin().emulating(target.arithmetic), Some(why)),
    }
}

/// The backend that judges INT8 models: the backend itself when it computes int8 natively and
/// this CPU's arithmetic is the target's; a backend that does not, emulating the target; else
/// the reason (the caller then judges with the built-in engine emulating the target).
fn verdict_backend(backend: &Backend, target: &isa::AssumedIsa, config: &QuantConfig) -> Result<Backend, String> {
    if !backend.computes_int8_natively() {
        return Ok(backend.emulating(target.arithmetic));
    }
    if target.isa == "none" {
        return Err(format!(
            "target device {:?} is not this CPU: INT8 verdicts come from the built-in engine, not from OpenVINO's CPU plugin",
            config.target_device
        ));
    }
    let here = isa::resolve_here(TargetIsa::Auto, TargetDevice::CPU);
    if here.arithmetic != target.arithmetic {
        return Err(format!(
            "the target's int8 arithmetic ({}) is not this CPU's ({}, {}): INT8 verdicts come from the built-in \
             engine emulating the target, not from OpenVINO here",
            target.isa, here.isa, here.reason
        ));
    }
    Ok(backend.clone())
}

/// Whether accuracy-aware quantization judges candidates as the CPU plugin computes them (its
/// `emulate_cpu_plugin` setting, on CPU targets), or by IR semantics.
pub(crate) fn emulates_cpu_plugin(config: &QuantConfig) -> bool {
    config.accuracy_aware.emulate_cpu_plugin
        && matches!(config.target_device, TargetDevice::ANY | TargetDevice::CPU | TargetDevice::CPU_SPR)
}

/// What `backend` computes, in words (for reports and logs).
pub fn describe(backend: &Backend, target: &AssumedIsa) -> String {
    match backend {
        Backend::Builtin { emulate: None } => "builtin engine, exact IR arithmetic".into(),
        Backend::Builtin { emulate: Some(a) } => {
            let sums = match a {
                Int8Arithmetic::Exact => "exact int8 sums",
                Int8Arithmetic::PairSaturating => "16-bit saturating int8 pair sums",
            };
            format!(
                "builtin engine emulating OpenVINO's CPU plugin on the target CPU ({sums}; target_isa {}: {})",
                target.isa, target.reason
            )
        }
        ov => {
            let here = isa::resolve_here(TargetIsa::Auto, TargetDevice::CPU);
            format!("{}, CPU plugin on this CPU ({}: {})", ov.describe(), here.isa, here.reason)
        }
    }
}

/// The backend `judge` names for a session with `config`.
pub fn for_settings(judge: Judge, config: &QuantConfig) -> Result<Judged> {
    let target = isa::resolve_here(config.target_isa, config.target_device);
    let (backend, note) = match judge {
        Judge::Exact => (Backend::builtin(), None),
        Judge::Target => (Backend::builtin().emulating(target.arithmetic), None),
        // OpenVINO judges by name even when the settings' backend is the built-in engine.
        Judge::OpenVino => (Backend::open(BackendKind::Openvino, &config.openvino)?, None),
        Judge::Default => {
            let stats = Backend::open(config.backend, &config.openvino)?;
            let (v, note) = verdicts(&stats, &target, config);
            let v = if emulates_cpu_plugin(config) { v } else { v.without_emulation() };
            (v, note)
        }
    };
    Ok(Judged { name: describe(&backend, &target), backend, note })
}

impl Judge {
    /// From the C enum's integer value.
    pub fn from_raw(raw: u32) -> Result<Judge> {
        Ok(match raw {
            0 => Judge::Default,
            1 => Judge::Exact,
            2 => Judge::Target,
            3 => Judge::OpenVino,
            other => {
                return Err(Error::invalid(format!(
                    "judge {other} is not an ovpot_judge_e (0 default, 1 exact, 2 target, 3 openvino)"
                )))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn avx2() -> QuantConfig {
        QuantConfig { target_isa: TargetIsa::Avx2, ..QuantConfig::default() }
    }

    #[test]
    fn the_default_judge_of_the_builtin_backend_emulates_the_target() {
        let j = for_settings(Judge::Default, &avx2()).unwrap();
        assert!(matches!(j.backend, Backend::Builtin { emulate: Some(Int8Arithmetic::PairSaturating) }));
        assert!(j.name.contains("saturating") && j.name.contains("avx2"), "{}", j.name);
        let mut exact = avx2();
        exact.accuracy_aware.emulate_cpu_plugin = false;
        let j = for_settings(Judge::Default, &exact).unwrap();
        assert!(matches!(j.backend, Backend::Builtin { emulate: None }), "{}", j.name);
    }

    #[test]
    fn exact_and_target_judges_are_what_they_say() {
        let j = for_settings(Judge::Exact, &avx2()).unwrap();
        assert!(matches!(j.backend, Backend::Builtin { emulate: None }));
        assert_eq!(j.name, "builtin engine, exact IR arithmetic");
        let j = for_settings(Judge::Target, &avx2()).unwrap();
        assert!(matches!(j.backend, Backend::Builtin { emulate: Some(Int8Arithmetic::PairSaturating) }));
    }

    #[test]
    fn judges_from_raw_values() {
        assert_eq!(Judge::from_raw(3).unwrap(), Judge::OpenVino);
        let e = Judge::from_raw(4).unwrap_err().to_string();
        assert!(e.contains("not an ovpot_judge_e"), "{e}");
    }
}
