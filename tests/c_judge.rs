//! The judge of a model's outputs, chosen and named through the C API (issue #39): evaluating
//! with a session's default judge gives what its accuracy-aware run reported; the exact, target
//! and OpenVINO judges compute what they say (checked against OpenVINO's own outputs of the
//! ppocr_cls INT8 model, recorded with and without VNNI).

mod common;
use ovpot::ffi::*;
use ovpot::tensor::ElementType;
use std::ffi::{c_char, c_void, CStr, CString};
use std::path::Path;
use std::ptr;

const OK: ovpot_status_e = ovpot_status_e::OVPOT_OK;

fn last_error() -> String {
    // SAFETY: ovpot_last_error never returns NULL; the text is copied before the next call.
    unsafe { CStr::from_ptr(ovpot_last_error()) }.to_string_lossy().into_owned()
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn path(p: &Path) -> CString {
    c(p.to_str().unwrap())
}

fn read_model(xml: &Path) -> *mut ovpot_model_t {
    let mut m = ptr::null_mut();
    assert_eq!(ovpot_model_read(path(xml).as_ptr(), ptr::null(), &mut m), OK, "{}", last_error());
    m
}

fn session(model: *const ovpot_model_t, config: &str) -> *mut ovpot_session_t {
    let mut s = ptr::null_mut();
    assert_eq!(ovpot_session_create(model, c(config).as_ptr(), &mut s), OK, "{}", last_error());
    s
}

fn judge_name(s: *const ovpot_session_t, judge: ovpot_judge_e) -> String {
    let mut name: *const c_char = ptr::null();
    assert_eq!(ovpot_session_judge_name(s, judge as u32, &mut name), OK, "{}", last_error());
    // SAFETY: valid until the next call on the session; copied right away.
    unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned()
}

fn evaluate(
    s: *const ovpot_session_t,
    metric: *mut ovpot_metric_t,
    model: *const ovpot_model_t,
    data: *const ovpot_dataset_t,
    judge: ovpot_judge_e,
) -> f64 {
    let mut v = f64::NAN;
    assert_eq!(ovpot_session_evaluate(s, metric, model, data, judge as u32, &mut v), OK, "{}", last_error());
    v
}

/// The fixtures' inputs are f32 or u8 (images with the preprocessing in the model).
fn element_type(t: &ovpot::tensor::Tensor) -> (ElementType, ovpot_element_type_e) {
    match t.element_type() {
        ElementType::U8 => (ElementType::U8, ovpot_element_type_e::OVPOT_ELEMENT_TYPE_U8),
        _ => (ElementType::F32, ovpot_element_type_e::OVPOT_ELEMENT_TYPE_F32),
    }
}

/// The first `n` samples of the fixture's eval set as a C dataset, and their labels' metric.
fn eval_subset(dir: &Path, n: usize) -> (*mut ovpot_dataset_t, *mut ovpot_metric_t) {
    let x = ovpot::npy::read_npy(&dir.join("eval/x.npy")).unwrap();
    let n = n.min(x.shape()[0]);
    let per = x.len() / x.shape()[0];
    let (et, c_et) = element_type(&x);
    let bytes = x.to_bytes(et).unwrap();
    let mut shape: Vec<i64> = x.shape().iter().map(|&d| d as i64).collect();
    shape[0] = n as i64;
    let name = c("x");
    let array = ovpot_array_t {
        name: name.as_ptr(),
        element_type: c_et as u32,
        shape: shape.as_ptr(),
        rank: shape.len(),
        data: bytes.as_ptr() as *const c_void,
        byte_size: n * per * bytes.len() / x.len(),
    };
    let mut data = ptr::null_mut();
    assert_eq!(ovpot_dataset_create_from_arrays(&array, 1, &mut data), OK, "{}", last_error());
    let labels = ovpot::npy::read_npy(&dir.join("eval_labels.npy")).unwrap().to_i64_vec();
    let mut metric = ptr::null_mut();
    assert_eq!(ovpot_metric_create_top1_accuracy(labels.as_ptr(), n, 0, &mut metric), OK, "{}", last_error());
    (data, metric)
}

/// Top-1 of recorded outputs ([N, classes]) against the labels.
fn recorded_top1(outputs: &Path, labels: &Path) -> f64 {
    let out = ovpot::npy::read_npy(outputs).unwrap();
    let labels = ovpot::npy::read_npy(labels).unwrap().to_i64_vec();
    let classes = out.shape()[1];
    let v = out.to_f64_vec();
    let hits = labels
        .iter()
        .enumerate()
        .filter(|&(i, &l)| {
            let row = &v[i * classes..(i + 1) * classes];
            let best = (0..classes).fold(0, |b, k| if row[k] > row[b] { k } else { b });
            best as i64 == l
        })
        .count();
    hits as f64 / labels.len() as f64
}

#[test]
fn the_judges_compute_what_they_say() {
    let Some(dir) = common::fixture("ppocr_cls") else { return };
    if !dir.join("int8/openvino_avx2_out.npy").exists() {
        common::skipped("ppocr_cls has no recorded OpenVINO outputs");
        return;
    }
    let fp32 = read_model(&dir.join("model.xml"));
    let int8 = read_model(&dir.join("int8/model.xml"));
    let (data, metric) = eval_subset(&dir, 200);
    let labels = dir.join("eval_labels.npy");
    let one_sample = 1.0 / 200.0 + 1e-9;

    let s = session(fp32, r#"{"target_isa": "avx2"}"#);
    let target = evaluate(s, metric, int8, data, ovpot_judge_e::OVPOT_JUDGE_TARGET);
    let without_vnni = recorded_top1(&dir.join("int8/openvino_avx2_out.npy"), &labels);
    assert!(
        (target - without_vnni).abs() <= one_sample,
        "target judge {target} vs OpenVINO without VNNI {without_vnni}"
    );
    // The built-in backend's default judge is the target's emulation, and says so.
    assert_eq!(evaluate(s, metric, int8, data, ovpot_judge_e::OVPOT_JUDGE_DEFAULT), target);
    let name = judge_name(s, ovpot_judge_e::OVPOT_JUDGE_DEFAULT);
    assert!(name.contains("emulating") && name.contains("saturating") && name.contains("avx2"), "{name}");

    // The exact judge is what ovpot_metric_evaluate computes.
    let exact = evaluate(s, metric, int8, data, ovpot_judge_e::OVPOT_JUDGE_EXACT);
    let mut plain = f64::NAN;
    assert_eq!(ovpot_metric_evaluate(metric, int8, data, &mut plain), OK, "{}", last_error());
    assert_eq!(exact, plain);
    eprintln!("ppocr_cls INT8 top-1: target (avx2) {target}, exact {exact}; OpenVINO without VNNI {without_vnni}");
    assert_eq!(judge_name(s, ovpot_judge_e::OVPOT_JUDGE_EXACT), "builtin engine, exact IR arithmetic");

    // One sample through ovpot_session_infer: the target judge's outputs differ from the exact
    // ones on this model (its 8-bit weights saturate without VNNI).
    let mut sample = ptr::null_mut();
    assert_eq!(ovpot_dataset_get(data, 0, &mut sample), OK);
    let mut outs = [ptr::null_mut(); 2];
    for (o, j) in outs.iter_mut().zip([ovpot_judge_e::OVPOT_JUDGE_EXACT, ovpot_judge_e::OVPOT_JUDGE_TARGET]) {
        assert_eq!(ovpot_session_infer(s, int8, sample, j as u32, o), OK, "{}", last_error());
    }
    let values = |o: *const ovpot_outputs_t| {
        let mut data: *const c_void = ptr::null();
        let mut bytes = 0usize;
        assert_eq!(ovpot_outputs_data(o, 0, &mut data, &mut bytes), OK);
        // SAFETY: `bytes` bytes at `data`, valid as long as the outputs.
        unsafe { std::slice::from_raw_parts(data as *const u8, bytes) }.to_vec()
    };
    assert_ne!(values(outs[0]), values(outs[1]), "the target judge computed exactly");
    outs.iter().for_each(|&o| ovpot_outputs_free(o));

    // A value that is not a judge is refused and named.
    let mut v = 0.0;
    let st = ovpot_session_evaluate(s, metric, int8, data, 7, &mut v);
    assert_eq!(st, ovpot_status_e::OVPOT_INVALID_ARGUMENT);
    assert!(last_error().contains("7 is not an ovpot_judge_e"), "{}", last_error());
    assert!(v.is_nan());

    // OpenVINO judges as OpenVINO computes on this CPU (with or without VNNI).
    if let Some(lib) = common::openvino_lib() {
        let lib = path(&lib);
        assert_eq!(ovpot_session_set_backend(s, c("builtin").as_ptr(), lib.as_ptr()), OK, "{}", last_error());
        let ov = evaluate(s, metric, int8, data, ovpot_judge_e::OVPOT_JUDGE_OPENVINO);
        let here = unsafe { CStr::from_ptr(ovpot_host_target_isa()) }.to_str().unwrap().to_string();
        let recorded = if here == "avx2" { "int8/openvino_avx2_out.npy" } else { "int8/openvino_out.npy" };
        let want = recorded_top1(&dir.join(recorded), &labels);
        eprintln!("ppocr_cls INT8 top-1: OpenVINO judge {ov}, recorded {want} ({here})");
        assert!((ov - want).abs() <= one_sample, "OpenVINO judge {ov} vs recorded {want} ({here})");
        let name = judge_name(s, ovpot_judge_e::OVPOT_JUDGE_OPENVINO);
        assert!(name.starts_with("openvino ") && name.contains(&here), "{name}");
    }

    ovpot_sample_free(sample);
    ovpot_session_free(s);
    ovpot_metric_free(metric);
    ovpot_dataset_free(data);
    ovpot_model_free(int8);
    ovpot_model_free(fp32);
}

#[test]
fn the_default_judge_scores_an_accuracy_aware_result_as_the_run_did() {
    let Some(dir) = common::fixture("ppocr_cls") else { return };
    let fp32 = read_model(&dir.join("model.xml"));
    let (eval, metric) = eval_subset(&dir, 40);
    let calib = common::dataset(&dir.join("calib"), 32);
    let (calib_data, _) = {
        let mut d = ptr::null_mut();
        assert_eq!(ovpot_dataset_create_in_memory(&mut d), OK);
        for smp in &calib.samples {
            let mut sample = ptr::null_mut();
            assert_eq!(ovpot_sample_create(fp32, &mut sample), OK);
            let (name, t) = &smp[0];
            let shape: Vec<i64> = t.shape().iter().map(|&d| d as i64).collect();
            let (et, c_et) = element_type(t);
            let bytes = t.to_bytes(et).unwrap();
            let st = ovpot_sample_set_input(
                sample,
                c(name).as_ptr(),
                c_et as u32,
                shape.as_ptr(),
                shape.len(),
                bytes.as_ptr() as *const c_void,
                bytes.len(),
            );
            assert_eq!(st, OK, "{}", last_error());
            assert_eq!(ovpot_dataset_add_sample(d, sample), OK, "{}", last_error());
            ovpot_sample_free(sample);
        }
        (d, ())
    };
    let s = session(
        fp32,
        r#"{"target_isa": "avx2", "stat_subset_size": 32, "accuracy_aware": {"maximal_drop": 0.0, "max_iter_num": 3}}"#,
    );
    let mut q = ptr::null_mut();
    let st = ovpot_session_run_accuracy_aware(s, calib_data, eval, metric, &mut q);
    assert!(st == OK || st == ovpot_status_e::OVPOT_ACCURACY_NOT_REACHED, "{:?}: {}", st, last_error());
    let mut json: *const c_char = ptr::null();
    assert_eq!(ovpot_session_report_json(s, &mut json), OK);
    // SAFETY: the report lives until the next run or free of the session; parsed right away.
    let report: serde_json::Value = serde_json::from_str(&unsafe { CStr::from_ptr(json) }.to_string_lossy()).unwrap();
    let reported = report["accuracy"]["final_metric"].as_f64().unwrap();
    assert_eq!(report["judge"].as_str().unwrap(), judge_name(s, ovpot_judge_e::OVPOT_JUDGE_DEFAULT));
    let judged = evaluate(s, metric, q, eval, ovpot_judge_e::OVPOT_JUDGE_DEFAULT);
    assert_eq!(judged, reported, "the default judge disagrees with the run's report");
    let exact = evaluate(s, metric, q, eval, ovpot_judge_e::OVPOT_JUDGE_EXACT);
    eprintln!("accuracy-aware result: reported {reported}, default judge {judged}, exact {exact}");

    ovpot_model_free(q);
    ovpot_session_free(s);
    ovpot_metric_free(metric);
    ovpot_dataset_free(eval);
    ovpot_dataset_free(calib_data);
    ovpot_model_free(fp32);
}
