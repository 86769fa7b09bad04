//! `ovpot analyze` (issue #36) on ppocr_cls for a CPU without VNNI: the layer whose revert gains
//! most is found, the suggested ignored scope is checked by a real quantization that reaches
//! what it reports, and the files a user opens are written.

mod common;
use ovpot::api::{AnalysisOptions, Judge};
use ovpot::quant::config::TargetIsa;
use ovpot::{Dataset, Model, QuantConfig, Session};
use std::process::Command;

/// Output SQNR (dB) of `model` against FP32 on `data`, computed as the target CPU does.
fn sqnr_db(session: &Session, fp32: &Model, model: &Model, data: &dyn Dataset, n: usize) -> f64 {
    let (mut signal, mut noise) = (0.0f64, 0.0f64);
    for i in 0..n {
        let s = data.get(i).unwrap();
        let f = session.infer(fp32, &s, Judge::Exact).unwrap();
        let q = session.infer(model, &s, Judge::Target).unwrap();
        for (a, b) in f.iter().zip(&q) {
            for (x, y) in a.to_f32().iter().zip(b.to_f32().iter()) {
                signal += (*x as f64).powi(2);
                noise += ((x - y) as f64).powi(2);
            }
        }
    }
    10.0 * (signal / noise).log10()
}

#[test]
fn analysis_finds_the_harmful_layers_and_a_scope_that_is_checked() {
    let Some(dir) = common::fixture("ppocr_cls") else { return };
    let model = Model::read(&dir.join("model.xml"), None).unwrap();
    let calib = common::dataset(&dir.join("calib"), 64);
    let eval = common::dataset(&dir.join("eval"), 16);
    let config = QuantConfig { target_isa: TargetIsa::Avx2, stat_subset_size: 64, ..QuantConfig::default() };
    let mut session = Session::new(&model, config.clone()).unwrap();
    let options = AnalysisOptions { samples: Some(16), target_sqnr_db: None, max_ignored: 6 };
    let a = session.analyze(&calib, &eval, &options).unwrap();

    assert_eq!(a.samples, 16);
    assert!(a.judge.contains("saturating"), "{}", a.judge);
    assert!(a.layers.len() > 20, "{} groups", a.layers.len());
    // Sorted by harm; reverting the worst group gains, and its numbers agree with each other.
    assert!(a.layers.windows(2).all(|w| w[0].revert_gain_db >= w[1].revert_gain_db));
    let worst = &a.layers[0];
    assert!(worst.revert_gain_db > 0.5, "worst group gains only {:.2} dB", worst.revert_gain_db);
    assert!((worst.reverted_sqnr_db - a.sqnr_db - worst.revert_gain_db).abs() < 1e-9);
    // One layer alone quantized is closer to FP32 than all of them.
    assert!(a.layers.iter().all(|l| l.only_this_sqnr_db > a.sqnr_db), "a layer alone is worse than all");
    // Ranges and weights are described for the layers that have them.
    let ranges: Vec<_> = a.layers.iter().flat_map(|l| &l.activations).collect();
    assert!(!ranges.is_empty());
    for r in &ranges {
        assert!(r.seen_min <= r.seen_max && r.range_low <= r.range_high, "{r:?}");
        assert!((0.0..=1.0).contains(&r.clipped_share));
        assert!(r.histogram.iter().sum::<u64>() > 0);
    }
    let weights: Vec<_> = a.layers.iter().flat_map(|l| &l.weights).collect();
    assert!(weights.iter().any(|w| w.bits == 7), "no 7-bit weights on an avx2 target");
    assert!(weights.iter().all(|w| !w.channel_sqnr_db.is_empty() && w.min_sqnr_db <= w.mean_sqnr_db + 1e-9));

    // The suggestion was measured by quantizing with it: the same run from the outside agrees.
    let s = a.suggestion.as_ref().expect("a suggestion");
    assert!(!s.ignored.is_empty() && s.ignored.len() <= 6 * 4);
    assert!((s.target_sqnr_db - (a.sqnr_db + 3.0)).abs() < 1e-9);
    let mut scoped = config.clone();
    scoped.ignored.names = s.ignored.clone();
    let mut scoped_session = Session::new(&model, scoped).unwrap();
    let out = scoped_session.quantize(&calib).unwrap();
    let measured = sqnr_db(&scoped_session, &model, &out.model, &eval, 16);
    assert!((measured - s.measured_sqnr_db).abs() < 0.01, "analysis {} vs quantize {measured}", s.measured_sqnr_db);
    assert!(s.measured_sqnr_db > a.sqnr_db, "the suggested scope does not help");
    assert_eq!(s.reached, s.measured_sqnr_db >= s.target_sqnr_db);

    let page = ovpot::analysis::html::render(&a);
    assert!(page.contains(&worst.layers[0]));
}

#[test]
fn the_cli_writes_the_json_and_the_page() {
    let Some(dir) = common::fixture("mnist_cnn") else { return };
    let out = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_ovpot"))
        .args(["analyze", "-m"])
        .arg(dir.join("model.xml"))
        .arg("--data")
        .arg(dir.join("calib"))
        .args(["--samples", "8", "--subset-size", "32", "--target-sqnr", "40", "-o"])
        .arg(out.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stderr).into_owned() + &String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("analysis.json")).unwrap()).unwrap();
    assert_eq!(json["samples"], 8);
    assert!(json["layers"].as_array().unwrap().len() >= 3, "{json}");
    // The classifier's last MatMul alone costs ~20 dB here: leaving it in FP32 reaches 40 dB.
    let worst = json["layers"][0]["layers"][0].as_str().unwrap();
    assert!(worst.ends_with("MatMul"), "{worst}");
    assert_eq!(json["suggestion"]["target_sqnr_db"], 40.0);
    assert_eq!(json["suggestion"]["ignored"], serde_json::json!([worst]));
    assert_eq!(json["suggestion"]["reached"], true);
    let page = std::fs::read_to_string(out.path().join("analysis.html")).unwrap();
    assert!(page.contains("id=\"harm-chart\"") && page.contains("id=\"layers\""));
    assert!(text.contains("suggested ignored scope (1 layers)"), "{text}");
}

#[test]
fn a_plain_quantization_reports_ranges_clipping_and_weight_error_per_layer() {
    let Some(dir) = common::fixture("ppocr_cls") else { return };
    let model = Model::read(&dir.join("model.xml"), None).unwrap();
    let calib = common::dataset(&dir.join("calib"), 32);
    let config = QuantConfig { target_isa: TargetIsa::Avx2, stat_subset_size: 32, ..QuantConfig::default() };
    let out = Session::new(&model, config).unwrap().quantize(&calib).unwrap();
    let r = &out.report;
    assert_eq!(r.layers.len(), r.quantized_layers.len());
    let first = &r.layers[0];
    // The first convolution's input, the normalized image, is clipped by the range estimator.
    assert!(first.inputs[0].clipped_share > 0.01, "{first:?}");
    assert!(r
        .layers
        .iter()
        .flat_map(|l| &l.inputs)
        .all(|i| (0.0..=1.0).contains(&i.clipped_share) && i.seen_min <= i.seen_max && i.range_low <= i.range_high));
    let weights: Vec<_> = r.layers.iter().filter_map(|l| l.weights.as_ref()).collect();
    assert!(
        weights.iter().any(|w| w.bits == 7)
            && weights.iter().all(|w| w.min_sqnr_db > 10.0 && w.min_sqnr_db <= w.mean_sqnr_db)
    );
    let json = serde_json::to_value(r).unwrap();
    assert!(json["layers"][0]["inputs"][0]["clipped_share"].is_number());
}

#[test]
fn the_c_api_analyses_and_keeps_the_page() {
    use ovpot::ffi::*;
    use std::ffi::{c_char, CStr, CString};
    use std::ptr;
    let Some(dir) = common::fixture("mnist_cnn") else { return };
    let c = |p: &std::path::Path| CString::new(p.to_str().unwrap()).unwrap();
    let err = || unsafe { CStr::from_ptr(ovpot_last_error()) }.to_string_lossy().into_owned();
    let ok = ovpot_status_e::OVPOT_OK;
    let mut model = ptr::null_mut();
    assert_eq!(ovpot_model_read(c(&dir.join("model.xml")).as_ptr(), ptr::null(), &mut model), ok);
    let mut calib = ptr::null_mut();
    assert_eq!(ovpot_dataset_create_from_npy_folder(model, c(&dir.join("calib")).as_ptr(), &mut calib), ok);
    let mut s = ptr::null_mut();
    let config = CString::new(r#"{"stat_subset_size": 32}"#).unwrap();
    assert_eq!(ovpot_session_create(model, config.as_ptr(), &mut s), ok, "{}", err());

    let mut html: *const c_char = ptr::null();
    assert_eq!(ovpot_session_analysis_html(s, &mut html), ovpot_status_e::OVPOT_INVALID_ARGUMENT);
    assert!(err().contains("no analysis"), "{}", err());
    let mut json: *const c_char = ptr::null();
    let st = ovpot_session_analyze(s, calib, ptr::null(), 8, f64::INFINITY, &mut json);
    assert_eq!(st, ovpot_status_e::OVPOT_INVALID_ARGUMENT);
    assert!(json.is_null());

    assert_eq!(ovpot_session_analyze(s, calib, ptr::null(), 8, f64::NAN, &mut json), ok, "{}", err());
    // SAFETY: valid until the next analysis or the free of the session; copied right away.
    let a: serde_json::Value = serde_json::from_str(&unsafe { CStr::from_ptr(json) }.to_string_lossy()).unwrap();
    assert_eq!(a["samples"], 8);
    // Chosen on 8 samples, checked on 32 (four times as many), whose SQNR the default target
    // adds 3 dB to.
    let suggestion = &a["suggestion"];
    assert_eq!(suggestion["samples"], 32, "{a}");
    let quantized = suggestion["quantized_sqnr_db"].as_f64().unwrap();
    assert!((suggestion["target_sqnr_db"].as_f64().unwrap() - (quantized + 3.0)).abs() < 1e-9, "{a}");
    // The model's input is a quantized tensor too: its values are seen.
    let inputs: Vec<&serde_json::Value> =
        a["layers"].as_array().unwrap().iter().flat_map(|l| l["activations"].as_array().unwrap()).collect();
    assert!(inputs.iter().all(|r| r["seen_max"].is_number() && r["histogram"][0].is_number()), "{a}");
    assert!(inputs.iter().any(|r| r["tensor"] == "input:0"), "{a}");
    assert_eq!(ovpot_session_analysis_html(s, &mut html), ok);
    let page = unsafe { CStr::from_ptr(html) }.to_string_lossy().into_owned();
    assert!(page.starts_with("<!DOCTYPE html>") && page.contains("id=\"harm-chart\""));

    ovpot_session_free(s);
    ovpot_dataset_free(calib);
    ovpot_model_free(model);
}

#[test]
fn with_openvino_the_analysis_says_what_the_runtime_runs_in_int8() {
    let Some(dir) = common::fixture("mnist_cnn") else { return };
    let Some(lib) = common::openvino_lib() else { return };
    let out = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_ovpot"))
        .args(["analyze", "-m"])
        .arg(dir.join("model.xml"))
        .arg("--data")
        .arg(dir.join("calib"))
        .args([
            "--samples",
            "4",
            "--subset-size",
            "16",
            "--max-ignored",
            "1",
            "--backend",
            "openvino",
            "--openvino-lib",
        ])
        .arg(lib)
        .arg("-o")
        .arg(out.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{text}");
    let a: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("analysis.json")).unwrap()).unwrap();
    let r = &a["runtime"];
    assert!(r["runtime"].as_str().unwrap().starts_with("openvino "), "{r}");
    assert!(r["fp32_ms"].as_f64().unwrap() > 0.0 && r["int8_ms"].as_f64().unwrap() > 0.0);
    let nodes = r["nodes"].as_array().unwrap();
    // The CNN's convolutions and MatMuls run int8 kernels, named as OpenVINO names them.
    let int8: Vec<&serde_json::Value> = nodes.iter().filter(|n| n["int8"] == true).collect();
    assert!(int8.len() >= 3, "{r}");
    let convs = int8.iter().filter(|n| n["node_type"] == "Convolution");
    assert!(convs.clone().count() == 2 && convs.into_iter().all(|n| n["fp32_exec_type"].is_string()), "{r}");
    // Every layer group, the MatMuls whose nodes OpenVINO renames included, is found in int8.
    let layers = a["layers"].as_array().unwrap();
    assert!(layers.iter().all(|l| l["runs_int8"] == true), "{a}");
    let page = std::fs::read_to_string(out.path().join("analysis.html")).unwrap();
    assert!(page.contains("id=\"runtime\""));
}
