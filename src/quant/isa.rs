//! The int8 arithmetic of the CPU that will run the model.
//!
//! OpenVINO's CPU plugin (oneDNN) multiplies u8 activations by s8 weights. CPUs with VNNI
//! (AVX-VNNI, AVX-512 VNNI, AMX) add the products exactly in 32 bits. CPUs without it (SSE4.1,
//! AVX2, AVX-512 without VNNI) use `pmaddubsw`: each pair of products of adjacent input channels
//! is added in 16 bits *with saturation* before the 32-bit sum. Measured with OpenVINO 2026.4.1
//! and `ONEDNN_MAX_CPU_ISA=AVX2` (convolutions 1x1 and 3x3, 3 to 256 input channels, and
//! FullyConnected up to K = 1536): the result is exactly
//! `Σ_pairs sat16(u[2k]·w[2k] + u[2k+1]·w[2k+1])` per kernel tap, where `u` is the activation's
//! FakeQuantize level (0..255; signed activations arrive shifted by +128 and the shift is
//! compensated exactly), a lone last channel pairs with zero, and depthwise convolutions are
//! exact. [`crate::backend::cpu_plugin`] emulates it; [`crate::quant::saturation`] decides which
//! layers get 7-bit weights so that no pair can saturate.

use super::config::{TargetDevice, TargetIsa};
use serde::Serialize;

pub use crate::backend::cpu_plugin::Int8Arithmetic;

/// The arithmetic assumed for a run and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AssumedIsa {
    /// `avx2` (no VNNI) or `vnni`; `none` when the target device is not a CPU.
    pub isa: String,
    pub arithmetic: Int8Arithmetic,
    /// "asked", or what detection saw.
    pub reason: String,
}

/// What the host CPU offers, as detection reads it (injectable for tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostCpu {
    pub x86: bool,
    /// AVX-512 VNNI, AVX-VNNI or AMX-INT8.
    pub vnni: bool,
}

impl HostCpu {
    /// The CPU this process runs on.
    pub fn detect() -> HostCpu {
        #[cfg(target_arch = "x86_64")]
        {
            let vnni =
                std::arch::is_x86_feature_detected!("avx512vnni") || std::arch::is_x86_feature_detected!("avxvnni");
            HostCpu { x86: true, vnni }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            HostCpu { x86: false, vnni: false }
        }
    }
}

/// Whether a `ONEDNN_MAX_CPU_ISA` value (oneDNN's cap on the instruction sets it uses) leaves
/// VNNI enabled: `Some(false)` for caps below VNNI (SSE41, AVX, AVX2, AVX512_CORE, ...),
/// `Some(true)` for caps that include it, `None` for values oneDNN does not know.
pub fn onednn_cap_allows_vnni(cap: &str) -> Option<bool> {
    let c = cap.trim().to_ascii_uppercase();
    match c.as_str() {
        "" | "ALL" | "DEFAULT" => Some(true),
        "SSE41" | "AVX" | "AVX2" | "AVX512_CORE" | "AVX512_MIC" | "AVX512_MIC_4OPS" | "AVX512_CORE_FP16_NO_VNNI" => {
            Some(false)
        }
        _ if c.contains("VNNI") || c.contains("AMX") || c.contains("BF16") || c.contains("FP16") => Some(true),
        _ if c.starts_with("AVX10") => Some(true),
        _ => None,
    }
}

/// Resolves the configured `target_isa` for a target device: `Auto` is the host CPU (capped by
/// `ONEDNN_MAX_CPU_ISA` as OpenVINO in this process would be). GPU, NPU and GNA are unaffected.
pub fn resolve(asked: TargetIsa, device: TargetDevice, host: HostCpu, onednn_cap: Option<&str>) -> AssumedIsa {
    if !matches!(device, TargetDevice::ANY | TargetDevice::CPU | TargetDevice::CPU_SPR) {
        return AssumedIsa {
            isa: "none".into(),
            arithmetic: Int8Arithmetic::Exact,
            reason: format!("target device {device:?} does not use the CPU's int8 instructions"),
        };
    }
    let (isa, reason) = match asked {
        TargetIsa::Avx2 => ("avx2", "asked (target_isa avx2)".to_string()),
        TargetIsa::Vnni => ("vnni", "asked (target_isa vnni)".to_string()),
        TargetIsa::Auto if device == TargetDevice::CPU_SPR => {
            ("vnni", "target device CPU_SPR (Sapphire Rapids has AMX and VNNI)".to_string())
        }
        TargetIsa::Auto if !host.x86 => ("vnni", "detected: not an x86 CPU (exact int8 dot products)".to_string()),
        TargetIsa::Auto => {
            let cap = onednn_cap.map(|c| (c, onednn_cap_allows_vnni(c)));
            match (host.vnni, cap) {
                (true, Some((c, Some(false)))) => {
                    ("avx2", format!("detected: VNNI, but ONEDNN_MAX_CPU_ISA={c} disables it"))
                }
                (true, _) => ("vnni", "detected: this CPU has VNNI".to_string()),
                (false, _) => ("avx2", "detected: this CPU has no VNNI".to_string()),
            }
        }
    };
    let arithmetic = if isa == "avx2" { Int8Arithmetic::PairSaturating } else { Int8Arithmetic::Exact };
    AssumedIsa { isa: isa.into(), arithmetic, reason }
}

/// [`resolve`] for this process: the host CPU and `ONEDNN_MAX_CPU_ISA` from the environment.
pub fn resolve_here(asked: TargetIsa, device: TargetDevice) -> AssumedIsa {
    let cap = std::env::var("ONEDNN_MAX_CPU_ISA").ok();
    resolve(asked, device, HostCpu::detect(), cap.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    const VNNI_HOST: HostCpu = HostCpu { x86: true, vnni: true };
    const AVX2_HOST: HostCpu = HostCpu { x86: true, vnni: false };

    #[test]
    fn auto_follows_the_host_and_onednn_cap() {
        let r = resolve(TargetIsa::Auto, TargetDevice::ANY, VNNI_HOST, None);
        assert_eq!((r.isa.as_str(), r.arithmetic), ("vnni", Int8Arithmetic::Exact));
        assert!(r.reason.starts_with("detected"));
        let r = resolve(TargetIsa::Auto, TargetDevice::CPU, AVX2_HOST, None);
        assert_eq!((r.isa.as_str(), r.arithmetic), ("avx2", Int8Arithmetic::PairSaturating));
        let r = resolve(TargetIsa::Auto, TargetDevice::CPU, VNNI_HOST, Some("AVX2"));
        assert_eq!(r.arithmetic, Int8Arithmetic::PairSaturating);
        assert!(r.reason.contains("ONEDNN_MAX_CPU_ISA=AVX2"), "{}", r.reason);
        let r = resolve(TargetIsa::Auto, TargetDevice::CPU, VNNI_HOST, Some("avx512_core_vnni"));
        assert_eq!(r.arithmetic, Int8Arithmetic::Exact);
        // A cap cannot add VNNI the host lacks.
        let r = resolve(TargetIsa::Auto, TargetDevice::CPU, AVX2_HOST, Some("ALL"));
        assert_eq!(r.arithmetic, Int8Arithmetic::PairSaturating);
        let r = resolve(TargetIsa::Auto, TargetDevice::ANY, HostCpu { x86: false, vnni: false }, None);
        assert_eq!(r.arithmetic, Int8Arithmetic::Exact);
    }

    #[test]
    fn asked_wins_and_other_devices_are_exact() {
        let r = resolve(TargetIsa::Avx2, TargetDevice::CPU, VNNI_HOST, None);
        assert_eq!((r.arithmetic, r.reason.as_str()), (Int8Arithmetic::PairSaturating, "asked (target_isa avx2)"));
        let r = resolve(TargetIsa::Vnni, TargetDevice::ANY, AVX2_HOST, Some("AVX2"));
        assert_eq!(r.arithmetic, Int8Arithmetic::Exact);
        for d in [TargetDevice::GPU, TargetDevice::NPU, TargetDevice::GNA] {
            let r = resolve(TargetIsa::Avx2, d, AVX2_HOST, None);
            assert_eq!((r.isa.as_str(), r.arithmetic), ("none", Int8Arithmetic::Exact));
        }
        assert_eq!(resolve(TargetIsa::Auto, TargetDevice::CPU_SPR, AVX2_HOST, None).arithmetic, Int8Arithmetic::Exact);
    }

    #[test]
    fn onednn_caps() {
        for c in ["SSE41", "AVX", "avx2", "AVX512_CORE"] {
            assert_eq!(onednn_cap_allows_vnni(c), Some(false), "{c}");
        }
        for c in ["AVX2_VNNI", "AVX512_CORE_VNNI", "AVX512_CORE_BF16", "AVX512_CORE_AMX", "ALL", "AVX10_1_512"] {
            assert_eq!(onednn_cap_allows_vnni(c), Some(true), "{c}");
        }
        assert_eq!(onednn_cap_allows_vnni("bogus"), None);
    }

    #[test]
    fn detection_runs() {
        let h = HostCpu::detect();
        assert_eq!(h.x86, cfg!(target_arch = "x86_64"));
    }
}
