//! The C ABI: a thin layer that checks and converts arguments, then calls the Rust API
//! ([`crate::api`]). Every entry point catches panics, checks pointers for NULL and strings for
//! UTF-8, and returns an [`ovpot_status_e`]; the message of a failure is kept per thread
//! ([`ovpot_last_error`]). Handles are opaque and freed by their `*_free` function, which accepts
//! NULL. `include/ovpot.h` is generated from this module by cbindgen (`cbindgen.toml`).
#![allow(non_camel_case_types, clippy::upper_case_acronyms)]
// Entry points take raw pointers from C; validity is the C caller's promise (documented in the
// header) and every dereference goes through the checked helpers in `boundary`.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

mod boundary;
pub mod compress;
pub mod dataset;
pub mod judge;
pub mod metric;
pub mod model;
pub mod session;
pub mod tensors;
mod types;

use std::ffi::{c_char, c_int};

pub use dataset::*;
pub use judge::*;
pub use metric::*;
pub use model::*;
pub use session::*;
pub use tensors::*;
pub use types::*;

/// The message of the last failed ovpot call on this thread ("" if that call succeeded). Valid
/// until the next ovpot call on the same thread; never NULL; do not free.
#[no_mangle]
pub extern "C" fn ovpot_last_error() -> *const c_char {
    boundary::last_error_ptr()
}

/// The library version as "MAJOR.MINOR.PATCH". Static storage; never NULL; do not free.
#[no_mangle]
pub extern "C" fn ovpot_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}

/// The int8 arithmetic OpenVINO's CPU plugin uses on this machine: "vnni" (exact sums: AVX-VNNI,
/// AVX-512 VNNI, AMX) or "avx2" (an x86 CPU without VNNI, or one capped below it by
/// `ONEDNN_MAX_CPU_ISA`: 16-bit saturating pair sums); what `target_isa` "auto" resolves to.
/// Static storage; never NULL; do not free.
#[no_mangle]
pub extern "C" fn ovpot_host_target_isa() -> *const c_char {
    let r =
        crate::quant::isa::resolve_here(crate::quant::config::TargetIsa::Auto, crate::quant::config::TargetDevice::CPU);
    if r.arithmetic == crate::quant::isa::Int8Arithmetic::PairSaturating {
        c"avx2".as_ptr()
    } else {
        c"vnni".as_ptr()
    }
}

/// The ABI version the library was built with; equals `OVPOT_ABI_VERSION` of a matching header.
#[no_mangle]
pub extern "C" fn ovpot_abi_version() -> u32 {
    OVPOT_ABI_VERSION
}

/// A short static name for a status value ("OK", "INVALID_ARGUMENT", ...; "UNKNOWN" for values
/// that are not an `ovpot_status_e`). Never NULL; do not free.
#[no_mangle]
pub extern "C" fn ovpot_status_name(status: c_int) -> *const c_char {
    let s: &'static str = match status {
        0 => "OK\0",
        1 => "INVALID_ARGUMENT\0",
        2 => "PARSE_ERROR\0",
        3 => "UNSUPPORTED\0",
        4 => "MISMATCH\0",
        5 => "CALLBACK_FAILED\0",
        6 => "CANCELLED\0",
        7 => "ACCURACY_NOT_REACHED\0",
        8 => "IO_ERROR\0",
        9 => "INTERNAL\0",
        _ => "UNKNOWN\0",
    };
    s.as_ptr() as *const c_char
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_constants_match_the_crate() {
        let v = format!("{OVPOT_VERSION_MAJOR}.{OVPOT_VERSION_MINOR}.{OVPOT_VERSION_PATCH}");
        assert_eq!(v, env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn shared_model_handles_are_thread_safe() {
        // The header lets several threads use one model (inference builds a shared plan).
        fn assert_sync_send<T: Sync + Send>() {}
        assert_sync_send::<crate::engine::Plan>();
        assert_sync_send::<crate::api::Model>();
    }

    #[test]
    fn element_types_round_trip() {
        for raw in 0..16u32 {
            let et = ovpot_element_type_e::to_rust(raw, "t").unwrap();
            assert_eq!(ovpot_element_type_e::from_rust(et) as u32, raw);
        }
        assert!(ovpot_element_type_e::to_rust(16, "t").is_err());
    }

    #[test]
    fn panics_become_internal() {
        let s = boundary::ffi_call("ovpot_test", || panic!("boom"));
        assert_eq!(s, ovpot_status_e::OVPOT_INTERNAL);
        // SAFETY: ovpot_last_error never returns NULL and the string lives until the next call.
        let msg = unsafe { std::ffi::CStr::from_ptr(ovpot_last_error()) }.to_str().unwrap().to_string();
        assert!(msg.contains("boom") && msg.contains("ovpot_test"), "{msg}");
    }
}
