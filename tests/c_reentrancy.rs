//! Calls back into ovpot from inside every kind of callback of a running session (issue #20):
//! each either works or fails at once with a clear status, never hangs. Called through the
//! exported C functions, with `extern "C"` callbacks, on the MLP fixture.

mod common;
use ovpot::ffi::*;
use ovpot::tensor::ElementType;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::ptr;
use std::time::Duration;

fn last_error() -> String {
    // SAFETY: ovpot_last_error never returns NULL; the text is copied before the next call.
    unsafe { CStr::from_ptr(ovpot_last_error()) }.to_string_lossy().into_owned()
}

/// (call, status, message) of each call made from one callback kind.
type Seen = Vec<(&'static str, ovpot_status_e, String)>;
/// Per callback kind, what its calls saw.
type Probed = Vec<(&'static str, Seen)>;

/// The handles the callbacks poke at, and what they saw.
struct State {
    samples: ovpot::InMemoryDataset,
    input_name: CString,
    model: *mut ovpot_model_t,
    /// The session that runs (its callbacks call back into ovpot).
    session: *mut ovpot_session_t,
    /// The dataset it runs on (a callback dataset over `samples`).
    running_data: *mut ovpot_dataset_t,
    /// Its metric in accuracy-aware runs.
    running_metric: *mut ovpot_metric_t,
    /// Handles no run uses.
    other_session: *mut ovpot_session_t,
    other_data: *mut ovpot_dataset_t,
    other_metric: *mut ovpot_metric_t,
    /// Callback kinds probed so far, with (call, status, message) of each probe.
    probed: Probed,
}

fn fill(st: &State, index: usize, sample: *mut ovpot_sample_t) -> c_int {
    let t = &st.samples.samples[index][0].1;
    let shape: Vec<i64> = t.shape().iter().map(|&d| d as i64).collect();
    let bytes = t.to_bytes(ElementType::F32).unwrap();
    let status = ovpot_sample_set_input(
        sample,
        st.input_name.as_ptr(),
        ovpot_element_type_e::OVPOT_ELEMENT_TYPE_F32 as u32,
        shape.as_ptr(),
        shape.len(),
        bytes.as_ptr() as *const c_void,
        bytes.len(),
    );
    (status != ovpot_status_e::OVPOT_OK) as c_int
}

/// Every kind of call, once per callback kind.
fn probe(st: &mut State, kind: &'static str) {
    if st.probed.iter().any(|(k, _)| *k == kind) {
        return;
    }
    let mut seen = vec![];
    let mut note = |call: &'static str, status: ovpot_status_e| seen.push((call, status, last_error()));
    let mut q: *mut ovpot_model_t = ptr::null_mut();

    // The running session and what it runs with.
    note("run(running session)", ovpot_session_run(st.session, st.other_data, &mut q));
    ovpot_model_free(q);
    let one = CString::new("10").unwrap();
    let key = CString::new("stat_subset_size").unwrap();
    note("set_option(running session)", ovpot_session_set_option(st.session, key.as_ptr(), one.as_ptr()));
    let mut json: *const c_char = ptr::null();
    note("report_json(running session)", ovpot_session_report_json(st.session, &mut json));
    ovpot_session_free(st.session);
    note("session_free(running session)", status_of_last_error());
    ovpot_dataset_free(st.running_data);
    note("dataset_free(running dataset)", status_of_last_error());
    let mut n = 0usize;
    note("dataset_size(running dataset)", ovpot_dataset_size(st.running_data, &mut n));
    if !st.running_metric.is_null() {
        let mut v = 0.0;
        let status = ovpot_metric_evaluate(st.running_metric, st.model, st.other_data, &mut v);
        note("metric_evaluate(running metric)", status);
    }

    // Everything else works, inference and runs of other sessions included.
    let mut s: *mut ovpot_sample_t = ptr::null_mut();
    note("dataset_get(other dataset)", ovpot_dataset_get(st.other_data, 0, &mut s));
    let mut outs: *mut ovpot_outputs_t = ptr::null_mut();
    note("model_infer", ovpot_model_infer(st.model, s, &mut outs));
    ovpot_outputs_free(outs);
    ovpot_sample_free(s);
    let mut v = 0.0;
    note("metric_evaluate(other metric)", ovpot_metric_evaluate(st.other_metric, st.model, st.other_data, &mut v));
    note("run(other session)", ovpot_session_run(st.other_session, st.other_data, &mut q));
    ovpot_model_free(q);
    st.probed.push((kind, seen));
}

/// `*_free` functions return nothing: a refused free leaves its reason as the last error.
fn status_of_last_error() -> ovpot_status_e {
    if last_error().is_empty() {
        ovpot_status_e::OVPOT_OK
    } else {
        ovpot_status_e::OVPOT_INVALID_ARGUMENT
    }
}

fn state(ud: *mut c_void) -> &'static mut State {
    // SAFETY: user_data is the test's State, alive for the whole run; callbacks run one at a
    // time on the calling thread.
    unsafe { &mut *(ud as *mut State) }
}

extern "C" fn get_item(ud: *mut c_void, index: usize, sample: *mut ovpot_sample_t) -> c_int {
    let st = state(ud);
    probe(st, "get_item");
    fill(st, index, sample)
}

extern "C" fn get_item_quiet(ud: *mut c_void, index: usize, sample: *mut ovpot_sample_t) -> c_int {
    fill(state(ud), index, sample)
}

extern "C" fn progress(ud: *mut c_void, _stage: ovpot_stage_e, _done: usize, _total: usize) -> c_int {
    probe(state(ud), "progress");
    0
}

extern "C" fn log(ud: *mut c_void, _level: ovpot_log_level_e, _message: *const c_char) {
    probe(state(ud), "log");
}

extern "C" fn metric_update(ud: *mut c_void, _outputs: *const ovpot_outputs_t, _index: usize) -> c_int {
    probe(state(ud), "metric_update");
    0
}

extern "C" fn metric_value(ud: *mut c_void, value: *mut f64) -> c_int {
    probe(state(ud), "metric_value");
    // SAFETY: ovpot passes a valid out-pointer.
    unsafe { *value = 1.0 };
    0
}

extern "C" fn metric_reset(ud: *mut c_void) -> c_int {
    probe(state(ud), "metric_reset");
    0
}

extern "C" fn quiet_update(_ud: *mut c_void, _o: *const ovpot_outputs_t, _i: usize) -> c_int {
    0
}

extern "C" fn quiet_value(_ud: *mut c_void, value: *mut f64) -> c_int {
    // SAFETY: ovpot passes a valid out-pointer.
    unsafe { *value = 1.0 };
    0
}

fn callback_dataset(model: *mut ovpot_model_t, n: usize, st: *mut State, quiet: bool) -> *mut ovpot_dataset_t {
    let mut d = ptr::null_mut();
    let cb = if quiet { get_item_quiet } else { get_item };
    let status = ovpot_dataset_create(model, n, Some(cb), st as *mut c_void, None, &mut d);
    assert_eq!(status, ovpot_status_e::OVPOT_OK, "{}", last_error());
    d
}

fn run_all() -> Probed {
    let dir = common::fixture("digits_mlp").expect("tests/data/digits_mlp");
    let xml = CString::new(dir.join("model.xml").to_str().unwrap()).unwrap();
    let mut model = ptr::null_mut();
    assert_eq!(ovpot_model_read(xml.as_ptr(), ptr::null(), &mut model), ovpot_status_e::OVPOT_OK);
    let samples = common::dataset(&dir.join("calib"), 8);
    let input_name = CString::new(samples.samples[0][0].0.clone()).unwrap();
    let mk_session = || {
        let mut s = ptr::null_mut();
        assert_eq!(ovpot_session_create(model, ptr::null(), &mut s), ovpot_status_e::OVPOT_OK);
        assert_eq!(ovpot_session_set_subset_size(s, 8), ovpot_status_e::OVPOT_OK);
        s
    };
    let st = Box::into_raw(Box::new(State {
        samples,
        input_name,
        model,
        session: mk_session(),
        running_data: ptr::null_mut(),
        running_metric: ptr::null_mut(),
        other_session: mk_session(),
        other_data: ptr::null_mut(),
        other_metric: ptr::null_mut(),
        probed: vec![],
    }));
    // SAFETY: `st` stays alive until the end of this function; the callbacks get it as user data.
    let s = unsafe { &mut *st };
    s.running_data = callback_dataset(model, 8, st, false);
    s.other_data = callback_dataset(model, 8, st, true);
    let mut other_metric = ptr::null_mut();
    let status =
        ovpot_metric_create(Some(quiet_update), Some(quiet_value), None, 1, ptr::null_mut(), None, &mut other_metric);
    assert_eq!(status, ovpot_status_e::OVPOT_OK);
    s.other_metric = other_metric;
    let mut metric = ptr::null_mut();
    let status = ovpot_metric_create(
        Some(metric_update),
        Some(metric_value),
        Some(metric_reset),
        1,
        st as *mut c_void,
        None,
        &mut metric,
    );
    assert_eq!(status, ovpot_status_e::OVPOT_OK);
    assert_eq!(
        ovpot_session_set_progress_callback(s.session, Some(progress), st as *mut c_void),
        ovpot_status_e::OVPOT_OK
    );
    let level = ovpot_log_level_e::OVPOT_LOG_INFO as u32;
    assert_eq!(
        ovpot_session_set_log_callback(s.session, Some(log), level, st as *mut c_void),
        ovpot_status_e::OVPOT_OK
    );

    let mut q = ptr::null_mut();
    let status = ovpot_session_run(s.session, s.running_data, &mut q);
    assert_eq!(status, ovpot_status_e::OVPOT_OK, "{}", last_error());
    ovpot_model_free(q);
    s.running_metric = metric;
    let status = ovpot_session_run_accuracy_aware(s.session, s.running_data, s.running_data, metric, &mut q);
    assert_eq!(status, ovpot_status_e::OVPOT_OK, "{}", last_error());
    ovpot_model_free(q);

    // After the runs the handles are free again: the session reports, everything frees.
    let mut json: *const c_char = ptr::null();
    assert_eq!(ovpot_session_report_json(s.session, &mut json), ovpot_status_e::OVPOT_OK);
    ovpot_session_free(s.session);
    ovpot_session_free(s.other_session);
    ovpot_dataset_free(s.running_data);
    assert_eq!(last_error(), "");
    ovpot_dataset_free(s.other_data);
    ovpot_metric_free(metric);
    ovpot_metric_free(s.other_metric);
    ovpot_model_free(model);
    // SAFETY: made by Box::into_raw above; no handle refers to it any more.
    let st = unsafe { Box::from_raw(st) };
    st.probed
}

#[test]
fn calls_from_every_callback_work_or_fail_at_once() {
    if common::fixture("digits_mlp").is_none() {
        return;
    }
    // A hang is a failure, not a stuck test run.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(run_all());
    });
    let probed = rx.recv_timeout(Duration::from_secs(300)).expect("a call from inside a callback hung");
    let kinds: Vec<&str> = probed.iter().map(|(k, _)| *k).collect();
    for k in ["get_item", "progress", "log", "metric_update", "metric_value", "metric_reset"] {
        assert!(kinds.contains(&k), "no call from {k}: probed {kinds:?}");
    }
    for (kind, seen) in &probed {
        for (call, status, message) in seen {
            let refused = call.contains("running");
            if refused && !call.starts_with("dataset_size") {
                assert_eq!(*status, ovpot_status_e::OVPOT_INVALID_ARGUMENT, "{call} from {kind}: {message}");
                assert!(message.contains("in use by a running session"), "{call} from {kind}: {message}");
            } else {
                assert_eq!(*status, ovpot_status_e::OVPOT_OK, "{call} from {kind}: {message}");
            }
        }
    }
}
