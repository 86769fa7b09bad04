//! Promises of the C header kept (issue #39), called through the exported C functions with
//! `extern "C"` callbacks on the MLP fixture: unknown keys of `ovpot_session_create`'s JSON are
//! named, the last successful report outlives failed runs, datasets refuse a second concurrent
//! user.

mod common;
use ovpot::ffi::*;
use ovpot::tensor::ElementType;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

fn last_error() -> String {
    // SAFETY: ovpot_last_error never returns NULL; the text is copied before the next call.
    unsafe { CStr::from_ptr(ovpot_last_error()) }.to_string_lossy().into_owned()
}

/// What the callbacks read and record.
struct State {
    samples: ovpot::InMemoryDataset,
    input_name: CString,
    /// get_item fails (returns 1) while set.
    fail: AtomicBool,
    /// get_item calls running right now, and the most seen at once.
    inside: AtomicUsize,
    most_inside: AtomicUsize,
    /// Log messages received.
    log: Mutex<Vec<String>>,
}

extern "C" fn get_item(ud: *mut c_void, index: usize, sample: *mut ovpot_sample_t) -> c_int {
    // SAFETY: user_data is the test's State, alive for the whole test.
    let st = unsafe { &*(ud as *const State) };
    let now = st.inside.fetch_add(1, Ordering::SeqCst) + 1;
    st.most_inside.fetch_max(now, Ordering::SeqCst);
    // Widens the window in which a second thread could come in.
    std::thread::sleep(std::time::Duration::from_millis(2));
    let t = &st.samples.samples[index % st.samples.samples.len()][0].1;
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
    st.inside.fetch_sub(1, Ordering::SeqCst);
    (st.fail.load(Ordering::SeqCst) || status != ovpot_status_e::OVPOT_OK) as c_int
}

extern "C" fn log(ud: *mut c_void, _level: ovpot_log_level_e, message: *const c_char) {
    // SAFETY: user_data is the test's State; message is valid during the call.
    let st = unsafe { &*(ud as *const State) };
    let text = unsafe { CStr::from_ptr(message) }.to_string_lossy().into_owned();
    st.log.lock().unwrap().push(text);
}

struct Fixture {
    model: *mut ovpot_model_t,
    state: Box<State>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        ovpot_model_free(self.model);
    }
}

fn fixture() -> Option<Fixture> {
    let dir = common::fixture("digits_mlp")?;
    let xml = CString::new(dir.join("model.xml").to_str().unwrap()).unwrap();
    let mut model = ptr::null_mut();
    assert_eq!(ovpot_model_read(xml.as_ptr(), ptr::null(), &mut model), ovpot_status_e::OVPOT_OK);
    let samples = common::dataset(&dir.join("calib"), 8);
    let input_name = CString::new(samples.samples[0][0].0.clone()).unwrap();
    let state = Box::new(State {
        samples,
        input_name,
        fail: AtomicBool::new(false),
        inside: AtomicUsize::new(0),
        most_inside: AtomicUsize::new(0),
        log: Mutex::new(vec![]),
    });
    Some(Fixture { model, state })
}

impl Fixture {
    fn ud(&self) -> *mut c_void {
        &*self.state as *const State as *mut c_void
    }
    fn dataset(&self, n: usize) -> *mut ovpot_dataset_t {
        let mut d = ptr::null_mut();
        let st = ovpot_dataset_create(self.model, n, Some(get_item), self.ud(), None, &mut d);
        assert_eq!(st, ovpot_status_e::OVPOT_OK, "{}", last_error());
        d
    }
    fn session(&self, config: Option<&str>) -> Result<*mut ovpot_session_t, (ovpot_status_e, String)> {
        let config = config.map(|c| CString::new(c).unwrap());
        let mut s = ptr::null_mut();
        let st = ovpot_session_create(self.model, config.as_ref().map_or(ptr::null(), |c| c.as_ptr()), &mut s);
        if st != ovpot_status_e::OVPOT_OK {
            assert!(s.is_null());
            return Err((st, last_error()));
        }
        assert_eq!(ovpot_session_set_subset_size(s, 8), ovpot_status_e::OVPOT_OK);
        Ok(s)
    }
}

fn report(s: *mut ovpot_session_t) -> Result<String, String> {
    let mut json: *const c_char = ptr::null();
    match ovpot_session_report_json(s, &mut json) {
        // SAFETY: the report lives until the next run or free of the session; copied right away.
        ovpot_status_e::OVPOT_OK => Ok(unsafe { CStr::from_ptr(json) }.to_string_lossy().into_owned()),
        _ => Err(last_error()),
    }
}

fn run(s: *mut ovpot_session_t, d: *mut ovpot_dataset_t) -> ovpot_status_e {
    let mut q = ptr::null_mut();
    let st = ovpot_session_run(s, d, &mut q);
    ovpot_model_free(q);
    st
}

#[test]
fn unknown_keys_of_flat_json_are_refused_and_named() {
    let Some(f) = fixture() else { return };
    for (config, key, listed) in [
        (r#"{"presett": "mixed"}"#, "'presett'", "stat_subset_size"),
        (r#"{"preset": "mixed", "target_devise": "CPU"}"#, "'target_devise'", "target_device"),
        (r#"{"accuracy_aware": {"maximal_dorp": 0.01}}"#, "'accuracy_aware.maximal_dorp'", "maximal_drop"),
        // Blocks that default to null or to an empty list are checked inside too.
        (
            r#"{"range_estimator": {"activations": {"max": {"tpye": "max"}}}}"#,
            "'range_estimator.activations.max.tpye'",
            "aggregator",
        ),
        (r#"{"ignored": {"types": [{"tpye": "Add"}]}}"#, "'ignored.types[0].tpye'", "attributes"),
    ] {
        let (status, msg) = f.session(Some(config)).map(|s| ovpot_session_free(s)).unwrap_err();
        assert_eq!(status, ovpot_status_e::OVPOT_INVALID_ARGUMENT, "{config}: {msg}");
        assert!(msg.contains(key) && msg.contains(listed), "{config}: {msg}");
    }
    // Known keys, and the ignored scope's aliases, still work.
    for config in [
        r#"{"preset": "mixed", "stat_subset_size": 8, "accuracy_aware": {"maximal_drop": 0.02}}"#,
        r#"{"ignored": {"scope": [], "operations": []}}"#,
    ] {
        let s = f.session(Some(config)).unwrap_or_else(|e| panic!("{config}: {e:?}"));
        ovpot_session_free(s);
    }
}

#[test]
fn unknown_keys_of_pot_configs_are_warned_in_the_log_and_the_report() {
    let Some(f) = fixture() else { return };
    let config = r#"{"compression": {"target_devise": "CPU", "algorithms": [{"name": "DefaultQuantization",
        "params": {"preset": "performance", "stat_subset_size": 8}}]}}"#;
    let s = f.session(Some(config)).unwrap();
    let st = ovpot_session_set_log_callback(s, Some(log), ovpot_log_level_e::OVPOT_LOG_WARNING as u32, f.ud());
    assert_eq!(st, ovpot_status_e::OVPOT_OK);
    let d = f.dataset(8);
    assert_eq!(run(s, d), ovpot_status_e::OVPOT_OK, "{}", last_error());
    let logged = f.state.log.lock().unwrap().clone();
    assert!(logged.iter().any(|m| m.contains("target_devise")), "not in the log: {logged:?}");
    let r = report(s).unwrap();
    assert!(r.contains("target_devise"), "not in the report: {r}");
    ovpot_session_free(s);
    ovpot_dataset_free(d);
}

extern "C" fn cancel(_ud: *mut c_void, _stage: ovpot_stage_e, _done: usize, _total: usize) -> c_int {
    1
}

/// A failed or cancelled run keeps the last successful run's report, and its pointer.
#[test]
fn the_last_successful_report_outlives_failed_runs() {
    let Some(f) = fixture() else { return };
    let s = f.session(None).unwrap();
    let d = f.dataset(8);
    // Before any success: INVALID_ARGUMENT, saying so.
    let e = report(s).unwrap_err();
    assert!(e.contains("no run of this session has finished yet"), "{e}");
    assert_eq!(run(s, d), ovpot_status_e::OVPOT_OK, "{}", last_error());
    let mut first: *const c_char = ptr::null();
    assert_eq!(ovpot_session_report_json(s, &mut first), ovpot_status_e::OVPOT_OK);
    let good = report(s).unwrap();
    // A failing callback.
    f.state.fail.store(true, Ordering::SeqCst);
    assert_eq!(run(s, d), ovpot_status_e::OVPOT_CALLBACK_FAILED);
    f.state.fail.store(false, Ordering::SeqCst);
    assert_eq!(report(s).as_deref(), Ok(good.as_str()), "the report was lost after a failed run");
    // A cancelled run.
    assert_eq!(ovpot_session_set_progress_callback(s, Some(cancel), ptr::null_mut()), ovpot_status_e::OVPOT_OK);
    assert_eq!(run(s, d), ovpot_status_e::OVPOT_CANCELLED);
    let mut after: *const c_char = ptr::null();
    assert_eq!(ovpot_session_report_json(s, &mut after), ovpot_status_e::OVPOT_OK, "{}", last_error());
    assert_eq!(after, first, "the report moved");
    assert_eq!(report(s).as_deref(), Ok(good.as_str()), "the report was lost after a cancelled run");
    ovpot_session_free(s);
    ovpot_dataset_free(d);
}

/// `ovpot_session_set_option` refuses what `ovpot_session_create` refuses, inside blocks too,
/// and leaves the configuration as it was.
#[test]
fn set_option_refuses_unknown_keys_inside_blocks() {
    let Some(f) = fixture() else { return };
    let s = f.session(None).unwrap();
    let set = |key: &str, value: &str| {
        let (k, v) = (CString::new(key).unwrap(), CString::new(value).unwrap());
        (ovpot_session_set_option(s, k.as_ptr(), v.as_ptr()), last_error())
    };
    for (key, value, named) in [
        ("maximal_dorp", "0.01", "'maximal_dorp'"),
        ("ignored", r#"{"scope": ["fc1"], "scoep": ["fc2"]}"#, "'ignored.scoep'"),
        (
            "range_estimator",
            r#"{"preset": "quantile", "max": {"outlier_prop": 0.01}}"#,
            "'range_estimator.max.outlier_prop'",
        ),
        ("range_estimator", r#"{"weights": {"max": {"tpye": "abs_max"}}}"#, "'range_estimator.weights.max.tpye'"),
    ] {
        let (status, msg) = set(key, value);
        assert_eq!(status, ovpot_status_e::OVPOT_INVALID_ARGUMENT, "{key}: {msg}");
        assert!(msg.contains(named), "{key}: {msg}");
    }
    let (status, msg) = set("ignored", r#"{"scope": ["fc1"], "operations": [{"type": "Add", "attributes": {}}]}"#);
    assert_eq!(status, ovpot_status_e::OVPOT_OK, "{msg}");
    // The setting is named by its key, with how C spells it.
    assert_eq!(ovpot_session_set_max_drop(s, -1.0), ovpot_status_e::OVPOT_INVALID_ARGUMENT);
    let msg = last_error();
    assert!(msg.contains("maximal_drop must be") && msg.contains("ovpot_session_set_max_drop"), "{msg}");
    ovpot_session_free(s);
}

/// The compressor's options: an unknown key inside `ignored` is refused, named.
#[test]
fn compressor_options_refuse_unknown_keys_inside_ignored() {
    use ovpot::ffi::compress::*;
    for (options, named, listed) in [
        (r#"{"mode": "int8_sym", "ignored": {"nmes": ["fc1"]}}"#, "'ignored.nmes'", "patterns"),
        (
            r#"{"ignored_scope": {"types": [{"type": "MatMul", "atribute": {}}]}}"#,
            "'ignored_scope.types[0].atribute'",
            "attributes",
        ),
    ] {
        let text = CString::new(options).unwrap();
        let mut c = ptr::null_mut();
        assert_eq!(ovpot_compressor_create(text.as_ptr(), &mut c), ovpot_status_e::OVPOT_INVALID_ARGUMENT, "{options}");
        assert!(c.is_null());
        let msg = last_error();
        assert!(msg.contains(named) && msg.contains(listed), "{options}: {msg}");
    }
    let text = CString::new(r#"{"ignored": {"names": ["fc1"], "types": [{"type": "MatMul"}]}}"#).unwrap();
    let mut c = ptr::null_mut();
    assert_eq!(ovpot_compressor_create(text.as_ptr(), &mut c), ovpot_status_e::OVPOT_OK, "{}", last_error());
    ovpot_compressor_free(c);
}

/// The same for the compressor: a failed compression keeps the last successful one's report.
#[test]
fn the_last_successful_compression_report_outlives_failures() {
    use ovpot::ffi::compress::*;
    let Some(f) = fixture() else { return };
    let dir = common::fixture("digits_mlp").unwrap();
    let input = CString::new(dir.join("model.xml").to_str().unwrap()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = CString::new(tmp.path().join("c.xml").to_str().unwrap()).unwrap();
    let bad = CString::new(tmp.path().join("nodir/c.xml").to_str().unwrap()).unwrap();
    let mut c = ptr::null_mut();
    assert_eq!(ovpot_compressor_create(ptr::null(), &mut c), ovpot_status_e::OVPOT_OK);
    let text = |c| {
        let mut json: *const c_char = ptr::null();
        assert_eq!(ovpot_compressor_report_json(c, &mut json), ovpot_status_e::OVPOT_OK, "{}", last_error());
        // SAFETY: valid until the next compression; copied right away.
        unsafe { CStr::from_ptr(json) }.to_string_lossy().into_owned()
    };
    assert_eq!(ovpot_compressor_compress_file(c, input.as_ptr(), out.as_ptr()), ovpot_status_e::OVPOT_OK);
    let good = text(c);
    assert_eq!(ovpot_compressor_compress_file(c, input.as_ptr(), bad.as_ptr()), ovpot_status_e::OVPOT_IO_ERROR);
    assert_eq!(text(c), good);
    let mut m = ptr::null_mut();
    assert_eq!(ovpot_compressor_compress_model(c, ptr::null(), &mut m), ovpot_status_e::OVPOT_INVALID_ARGUMENT);
    assert_eq!(text(c), good);
    ovpot_compressor_free(c);
    drop(f);
}

/// One callback dataset given to two sessions running at once on two threads: its get_item is
/// never called concurrently; the second run fails at once with INVALID_ARGUMENT instead.
#[test]
fn a_dataset_in_use_refuses_a_second_concurrent_user() {
    let Some(f) = fixture() else { return };
    let d = f.dataset(8) as usize;
    let sessions: Vec<usize> = (0..2).map(|_| f.session(None).unwrap() as usize).collect();
    let mut seen = vec![];
    for _ in 0..5 {
        let barrier = std::sync::Barrier::new(2);
        let results: Vec<(ovpot_status_e, String)> = std::thread::scope(|scope| {
            let hs: Vec<_> = sessions
                .iter()
                .map(|&s| {
                    let barrier = &barrier;
                    scope.spawn(move || {
                        barrier.wait();
                        let st = run(s as *mut ovpot_session_t, d as *mut ovpot_dataset_t);
                        (st, last_error())
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (st, msg) in &results {
            if *st != ovpot_status_e::OVPOT_OK {
                assert_eq!(*st, ovpot_status_e::OVPOT_INVALID_ARGUMENT, "{msg}");
                assert!(msg.contains("dataset is in use by another call"), "{msg}");
            }
        }
        assert!(results.iter().any(|(st, _)| *st == ovpot_status_e::OVPOT_OK), "{results:?}");
        seen.extend(results);
    }
    assert_eq!(f.state.most_inside.load(Ordering::SeqCst), 1, "get_item ran on two threads at once");
    // Released after every run, failed ones included: a run alone works.
    assert_eq!(run(sessions[0] as *mut ovpot_session_t, d as *mut ovpot_dataset_t), ovpot_status_e::OVPOT_OK);
    for s in sessions {
        ovpot_session_free(s as *mut ovpot_session_t);
    }
    ovpot_dataset_free(d as *mut ovpot_dataset_t);
}

extern "C" fn get_item_wrong_shape(ud: *mut c_void, _index: usize, sample: *mut ovpot_sample_t) -> c_int {
    // SAFETY: user_data is the test's State, alive for the whole test.
    let st = unsafe { &*(ud as *const State) };
    let shape = [1i64, 5];
    let values = [0f32; 5];
    let status = ovpot_sample_set_input(
        sample,
        st.input_name.as_ptr(),
        ovpot_element_type_e::OVPOT_ELEMENT_TYPE_F32 as u32,
        shape.as_ptr(),
        shape.len(),
        values.as_ptr() as *const c_void,
        std::mem::size_of_val(&values),
    );
    (status != ovpot_status_e::OVPOT_OK) as c_int
}

/// A set call that fails inside `get_item` stops the run with that call's own status, as the
/// header says, and the message says what is wrong once (not "mismatch: ... mismatch: ...").
#[test]
fn a_failed_set_input_in_get_item_keeps_its_status_and_says_it_once() {
    let Some(f) = fixture() else { return };
    let mut d = ptr::null_mut();
    let st = ovpot_dataset_create(f.model, 4, Some(get_item_wrong_shape), f.ud(), None, &mut d);
    assert_eq!(st, ovpot_status_e::OVPOT_OK, "{}", last_error());
    let s = f.session(None).unwrap();
    assert_eq!(run(s, d), ovpot_status_e::OVPOT_MISMATCH);
    let msg = last_error();
    assert_eq!(msg.matches("shape/type mismatch").count(), 1, "{msg}");
    assert!(msg.contains("get_item callback, sample 0") && msg.contains("expected shape"), "{msg}");
    ovpot_session_free(s);
    ovpot_dataset_free(d);
}
