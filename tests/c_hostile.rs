//! Hostile inputs at the C boundary, called through the exported functions from Rust (the C
//! programs in tests/c_api.rs cover the happy paths): NULLs, non-UTF-8 paths, garbage buffers
//! and hostile sizes all give a status and a message, never a crash.

use ovpot::ffi::*;
use std::ffi::{CStr, CString};
use std::os::raw::c_char;
use std::ptr;

fn last_error() -> String {
    // SAFETY: ovpot_last_error never returns NULL and the string lives until the next ovpot
    // call on this thread; it is copied right away.
    unsafe { CStr::from_ptr(ovpot_last_error()) }.to_string_lossy().into_owned()
}

fn fixture_xml() -> Option<CString> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/digits_mlp/model.xml");
    p.exists().then(|| CString::new(p.to_str().unwrap()).unwrap())
}

#[test]
fn null_arguments() {
    let mut m: *mut ovpot_model_t = ptr::null_mut();
    assert_eq!(ovpot_model_read(ptr::null(), ptr::null(), &mut m), ovpot_status_e::OVPOT_INVALID_ARGUMENT);
    assert!(last_error().contains("xml_path"), "{}", last_error());
    let Some(xml) = fixture_xml() else { return };
    assert_eq!(ovpot_model_read(xml.as_ptr(), ptr::null(), ptr::null_mut()), ovpot_status_e::OVPOT_INVALID_ARGUMENT);
    assert!(last_error().contains("model"), "{}", last_error());
    assert_eq!(ovpot_model_save(ptr::null(), xml.as_ptr(), ptr::null()), ovpot_status_e::OVPOT_INVALID_ARGUMENT);
    let mut size = 0usize;
    assert_eq!(ovpot_model_inputs_size(ptr::null(), &mut size), ovpot_status_e::OVPOT_INVALID_ARGUMENT);
    ovpot_model_free(ptr::null_mut());
}

#[test]
fn non_utf8_paths_are_refused_cleanly() {
    let mut m: *mut ovpot_model_t = ptr::null_mut();
    let bad = CString::new(b"/tmp/mod\xffel.xml".to_vec()).unwrap();
    let st = ovpot_model_read(bad.as_ptr(), ptr::null(), &mut m);
    // Linux paths are bytes; ovpot's C API takes UTF-8 only and says so.
    assert_eq!(st, ovpot_status_e::OVPOT_INVALID_ARGUMENT, "{}", last_error());
    assert!(last_error().contains("UTF-8"), "{}", last_error());
    assert!(m.is_null());
    let Some(xml) = fixture_xml() else { return };
    assert_eq!(ovpot_model_read(xml.as_ptr(), ptr::null(), &mut m), ovpot_status_e::OVPOT_OK);
    let st = ovpot_model_save(m, bad.as_ptr(), ptr::null());
    assert_eq!(st, ovpot_status_e::OVPOT_INVALID_ARGUMENT);
    assert!(last_error().contains("UTF-8"), "{}", last_error());
    ovpot_model_free(m);
}

#[test]
fn garbage_memory_buffers() {
    let cases: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b"".to_vec(), vec![]),
        (b"\xff\xfe\x00garbage".to_vec(), vec![1, 2, 3]),
        (b"<net version=\"11\"><layers>".to_vec(), vec![]),
        (
            b"<net version=\"11\"><layers><layer id=\"0\" name=\"c\" type=\"Const\"><data element_type=\"f32\" \
              shape=\"9999999999\" offset=\"0\" size=\"39999999996\" /><output><port id=\"0\" /></output></layer>\
              </layers></net>"
                .to_vec(),
            vec![0; 16],
        ),
    ];
    for (xml, w) in cases {
        let mut m: *mut ovpot_model_t = ptr::null_mut();
        let wp = if w.is_empty() { ptr::null() } else { w.as_ptr() };
        let st = ovpot_model_read_from_memory_buffer(xml.as_ptr() as *const c_char, xml.len(), wp, w.len(), &mut m);
        assert_ne!(st, ovpot_status_e::OVPOT_OK, "{:?} was read", String::from_utf8_lossy(&xml));
        assert!(!last_error().is_empty());
        assert!(m.is_null());
    }
    // A NULL weights pointer with a non-zero size.
    let Some(xml) = fixture_xml() else { return };
    let text = std::fs::read(xml.to_str().unwrap()).unwrap();
    let mut m: *mut ovpot_model_t = ptr::null_mut();
    let st = ovpot_model_read_from_memory_buffer(text.as_ptr() as *const c_char, text.len(), ptr::null(), 64, &mut m);
    assert_eq!(st, ovpot_status_e::OVPOT_INVALID_ARGUMENT, "{}", last_error());
    assert!(last_error().contains("weights"), "{}", last_error());
}

#[test]
fn status_names_for_every_code_and_beyond() {
    for code in -5..20 {
        let p = ovpot_status_name(code);
        assert!(!p.is_null());
        // SAFETY: non-NULL static string per the API contract, checked just above.
        let s = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
        assert!(!s.is_empty(), "code {code}");
    }
}
