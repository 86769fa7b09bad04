//! Data-aware weight compression against NNCF 3.4 on the tiny stateful Llama: AWQ, scale
//! estimation and data-aware mixed precision give the same codes, scales and zero points, byte
//! for byte (references made by tests/data/tiny_llama_stateful/nncf_int4/make.py).

use ovpot::backend::Backend;
use ovpot::compress::{
    compress_file_with, compress_graph_with, Calibration, CompressMode, CompressOptions, SensitivityMetric,
};
use ovpot::data::NpyFolderDataset;
use ovpot::graph::Graph;
use ovpot::hooks::Hooks;
use ovpot::Model;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny_llama_stateful")
}

fn model() -> Model {
    Model::read(&fixture().join("model.xml"), None).unwrap()
}

fn calibration(model: &Model) -> NpyFolderDataset {
    NpyFolderDataset::open(&fixture().join("calib"), &model.inputs()).unwrap()
}

fn fnv1a64(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in bytes {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

/// Every constant of NNCF's result (by name) has the same type and bytes in ours.
fn assert_same_as_nncf(graph: &Graph, case: &str) {
    let path = fixture().join("nncf_int4").join(format!("{case}.json"));
    let text = std::fs::read_to_string(&path).unwrap();
    let want: BTreeMap<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
    let ours: BTreeMap<&str, (String, String)> = graph
        .nodes
        .iter()
        .filter(|n| n.is_const())
        .filter_map(|n| {
            let v = n.value.as_ref()?;
            let et = n.const_type?;
            Some((n.name.as_str(), (et.ir_name().to_string(), fnv1a64(&v.to_bytes(et).ok()?))))
        })
        .collect();
    let mut differ = vec![];
    for (name, w) in &want {
        let (ty, hash) = (w["type"].as_str().unwrap(), w["fnv"].as_str().unwrap());
        match ours.get(name.as_str()) {
            Some((t, h)) if t == ty && h == hash => {}
            Some((t, _)) => differ.push(format!("{name}: {t} differs from NNCF's {ty}")),
            None => differ.push(format!("{name}: missing")),
        }
    }
    assert!(
        differ.is_empty(),
        "{case}: {} of {} constants differ from NNCF's:\n{}",
        differ.len(),
        want.len(),
        differ.join("\n")
    );
}

fn compress(options: &CompressOptions, with_data: bool) -> Graph {
    let m = model();
    let data = calibration(&m);
    let calibration = Calibration { data: &data, backend: Backend::builtin() };
    let (g, _) =
        compress_graph_with(m.graph(), options, with_data.then_some(&calibration), &mut Hooks::default()).unwrap();
    g
}

fn int4(asymmetric: bool, group: i64) -> CompressOptions {
    CompressOptions {
        mode: if asymmetric { CompressMode::Int4Asym } else { CompressMode::Int4Sym },
        group_size: Some(group),
        ..Default::default()
    }
}

#[test]
fn awq_and_scale_estimation_match_nncf() {
    let options = CompressOptions { awq: true, scale_estimation: true, ..int4(true, 16) };
    assert_same_as_nncf(&compress(&options, true), "awq_se");
}

#[test]
fn symmetric_scale_estimation_matches_nncf() {
    let options = CompressOptions { scale_estimation: true, ..int4(false, 32) };
    assert_same_as_nncf(&compress(&options, true), "se_sym");
}

#[test]
fn data_aware_mixed_precision_matches_nncf() {
    // NNCF's default with a dataset: the maximum activation variance.
    let options = CompressOptions { ratio: Some(0.5), ..int4(true, 16) };
    assert_same_as_nncf(&compress(&options, true), "mixed");
    let options = CompressOptions {
        ratio: Some(0.3),
        sensitivity_metric: Some(SensitivityMetric::HessianInputActivation),
        ..int4(false, 16)
    };
    assert_same_as_nncf(&compress(&options, true), "hessian");
}

#[test]
fn data_free_awq_matches_nncf() {
    let options = CompressOptions { awq: true, ..int4(true, 16) };
    assert_same_as_nncf(&compress(&options, false), "awq_data_free");
}

/// GPTQ (layer after layer on the stateful model), alone, with scale estimation inside it, and
/// after AWQ with symmetric codes.
#[test]
fn gptq_matches_nncf() {
    let options = CompressOptions { gptq: true, ..int4(true, 16) };
    assert_same_as_nncf(&compress(&options, true), "gptq");
    let options = CompressOptions { gptq: true, scale_estimation: true, ..int4(true, 16) };
    assert_same_as_nncf(&compress(&options, true), "gptq_se");
    let mut options = CompressOptions { gptq: true, scale_estimation: true, ..int4(true, 16) };
    options.gptq_params.block_size = 32;
    assert_same_as_nncf(&compress(&options, true), "gptq_blocks");
    let options = CompressOptions { gptq: true, awq: true, ..int4(false, 32) };
    assert_same_as_nncf(&compress(&options, true), "awq_gptq_sym");
}

/// GPTQ through the file driver: its own progress stage (no statistics pass: scale estimation
/// runs inside it), a report that shows what it bought per layer, and a model that still runs.
#[test]
fn gptq_reports_its_gain_per_layer() {
    use ovpot::hooks::Stage;
    // Every weight streamed from the .bin (the fixture's are all below the default threshold);
    // the other tests of this binary give the same results either way.
    std::env::set_var("OVPOT_STREAM_KEEP_BELOW", "1024");
    let options = CompressOptions { gptq: true, scale_estimation: true, ..int4(true, 16) };
    let m = model();
    let data = calibration(&m);
    let calibration = Calibration { data: &data, backend: Backend::builtin() };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model.xml");
    let stages = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(Stage, usize, usize)>::new()));
    let seen = stages.clone();
    let mut hooks = Hooks {
        progress: Some(Box::new(move |stage, done, total| {
            seen.lock().unwrap().push((stage, done, total));
            true
        })),
        ..Default::default()
    };
    let report =
        compress_file_with(&fixture().join("model.xml"), &out, &options, Some(&calibration), &mut hooks).unwrap();
    drop(hooks);
    let stages = stages.lock().unwrap().clone();
    let mut order: Vec<Stage> = stages.iter().map(|s| s.0).collect();
    order.dedup();
    assert_eq!(order, [Stage::Gptq, Stage::WeightCompression]);
    let gptq: Vec<_> = stages.iter().filter(|s| s.0 == Stage::Gptq).collect();
    assert_eq!(gptq.last().map(|s| (s.1, s.2)), Some((14, 14)));
    let gains: Vec<_> = report.layers.iter().filter_map(|l| l.gptq.as_ref()).collect();
    assert_eq!(gains.len(), 14);
    assert!(gains.iter().all(|g| g.output_mse.is_finite() && g.output_mse_min_max > 0.0), "{gains:?}");
    // Summed over the layers GPTQ's output error is well below rounding to the nearest.
    let (ours, nearest): (f64, f64) =
        gains.iter().map(|g| (g.output_mse, g.output_mse_min_max)).fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
    assert!(ours < 0.8 * nearest, "GPTQ {ours} vs nearest {nearest}");
    let written = Model::read(&out, None).unwrap();
    assert_same_as_nncf(written.graph(), "gptq_se");
    let plan = ovpot::engine::Plan::new(written.graph()).unwrap();
    let sample = ovpot::Dataset::get(&data, 0).unwrap();
    assert!(plan.run(&sample).unwrap()[0].to_f32().iter().all(|v| v.is_finite()));
}

/// The file driver (the CLI's) gives the in-memory result, and the model still runs with its
/// KV cache.
#[test]
fn file_driver_matches_and_the_result_runs() {
    let options = CompressOptions { awq: true, scale_estimation: true, ..int4(true, 16) };
    let m = model();
    let data = calibration(&m);
    let calibration = Calibration { data: &data, backend: Backend::builtin() };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model.xml");
    // Progress comes stage by stage, each ending full.
    let stages = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(ovpot::hooks::Stage, usize, usize)>::new()));
    let seen = stages.clone();
    let mut hooks = Hooks {
        progress: Some(Box::new(move |stage, done, total| {
            seen.lock().unwrap().push((stage, done, total));
            true
        })),
        ..Default::default()
    };
    let report =
        compress_file_with(&fixture().join("model.xml"), &out, &options, Some(&calibration), &mut hooks).unwrap();
    drop(hooks);
    let stages = stages.lock().unwrap().clone();
    let mut order: Vec<ovpot::hooks::Stage> = stages.iter().map(|s| s.0).collect();
    order.dedup();
    use ovpot::hooks::Stage;
    assert_eq!(order, [Stage::Statistics, Stage::Awq, Stage::ScaleEstimation, Stage::WeightCompression]);
    for stage in order {
        let last = stages.iter().rev().find(|s| s.0 == stage).unwrap();
        assert_eq!(last.1, last.2, "{stage:?} ends at {}/{}", last.1, last.2);
    }
    assert_eq!(report.layers.iter().filter(|l| l.bits == 4).count(), 14);
    // The report says what each method did: AWQ scaled the two down_proj (folded into up_proj),
    // scale estimation never raised a layer's output error.
    let scaled: Vec<_> = report.layers.iter().filter_map(|l| l.awq.as_ref().filter(|a| a.role == "scaled")).collect();
    assert_eq!(scaled.len(), 2);
    assert!(scaled.iter().all(|a| a.with.contains("up_proj") && a.groups_scaled == 1), "{scaled:?}");
    assert_eq!(report.layers.iter().filter(|l| l.awq.as_ref().is_some_and(|a| a.role == "merged")).count(), 2);
    let estimated: Vec<_> = report.layers.iter().filter_map(|l| l.scale_estimation.as_ref()).collect();
    assert_eq!(estimated.len(), 14);
    assert!(estimated.iter().all(|e| e.output_mse <= e.output_mse_min_max));
    assert!(estimated.iter().any(|e| e.output_mse < e.output_mse_min_max));
    let written = Model::read(&out, None).unwrap();
    assert_same_as_nncf(written.graph(), "awq_se");
    assert!(written.graph().is_stateful());
    let plan = ovpot::engine::Plan::new(written.graph()).unwrap();
    let sample = ovpot::Dataset::get(&data, 0).unwrap();
    let logits = plan.run(&sample).unwrap().remove(0);
    assert!(logits.to_f32().iter().all(|v| v.is_finite()));
}

#[test]
fn data_aware_options_are_checked() {
    let m = model();
    // Scale estimation and a data-aware metric need data; int8 modes take none of them.
    for options in [
        CompressOptions { scale_estimation: true, ..int4(true, 16) },
        CompressOptions {
            ratio: Some(0.5),
            sensitivity_metric: Some(SensitivityMetric::MeanActivationMagnitude),
            ..int4(true, 16)
        },
        CompressOptions { awq: true, ..Default::default() },
        CompressOptions { gptq: true, ..int4(true, 16) },
    ] {
        let err = compress_graph_with(m.graph(), &options, None, &mut Hooks::default()).unwrap_err();
        assert!(err.to_string().contains("awq") || err.to_string().contains("data"), "{err}");
    }
}

/// The C API: calibration samples copied from a dataset (freed before the run), AWQ and scale
/// estimation from the options JSON, in memory and to a file: NNCF's constants both times.
#[test]
fn c_api_compresses_with_calibration_data() {
    use ovpot::ffi::compress::*;
    use ovpot::ffi::*;
    use std::ffi::CString;
    use std::ptr;
    let ok = ovpot_status_e::OVPOT_OK;
    let c = |p: &Path| CString::new(p.to_str().unwrap()).unwrap();
    let xml = c(&fixture().join("model.xml"));
    let mut model: *mut ovpot_model_t = ptr::null_mut();
    assert_eq!(ovpot_model_read(xml.as_ptr(), ptr::null(), &mut model), ok);
    let mut data: *mut ovpot_dataset_t = ptr::null_mut();
    assert_eq!(ovpot_dataset_create_from_npy_folder(model, c(&fixture().join("calib")).as_ptr(), &mut data), ok);
    let options =
        CString::new(r#"{"mode": "int4_asym", "group_size": 16, "awq": true, "scale_estimation": true}"#).unwrap();
    let mut compressor: *mut ovpot_compressor_t = ptr::null_mut();
    assert_eq!(ovpot_compressor_create(options.as_ptr(), &mut compressor), ok);
    let bad = CString::new("cuda").unwrap();
    assert_eq!(
        ovpot_compressor_set_backend(compressor, bad.as_ptr(), ptr::null()),
        ovpot_status_e::OVPOT_INVALID_ARGUMENT
    );
    let builtin = CString::new("builtin").unwrap();
    assert_eq!(ovpot_compressor_set_backend(compressor, builtin.as_ptr(), ptr::null()), ok);
    assert_eq!(ovpot_compressor_set_calibration(compressor, data), ok);
    ovpot_dataset_free(data);
    let mut compressed: *mut ovpot_model_t = ptr::null_mut();
    assert_eq!(ovpot_compressor_compress_model(compressor, model, &mut compressed), ok);
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("m.xml");
    assert_eq!(ovpot_model_save(compressed, c(&saved).as_ptr(), ptr::null()), ok);
    let file = dir.path().join("f.xml");
    assert_eq!(ovpot_compressor_compress_file(compressor, xml.as_ptr(), c(&file).as_ptr()), ok);
    // Without calibration data scale estimation is refused.
    assert_eq!(ovpot_compressor_set_calibration(compressor, ptr::null()), ok);
    let mut again: *mut ovpot_model_t = ptr::null_mut();
    assert_eq!(ovpot_compressor_compress_model(compressor, model, &mut again), ovpot_status_e::OVPOT_INVALID_ARGUMENT);
    assert!(again.is_null());
    ovpot_model_free(compressed);
    ovpot_model_free(model);
    ovpot_compressor_free(compressor);
    for p in [saved, file] {
        assert_same_as_nncf(Model::read(&p, None).unwrap().graph(), "awq_se");
    }
}

/// `statistics_path`: the first run keeps the statistics; a second with other options reads them
/// (its log says so, and it runs no sample) and gives what a fresh run gives; other samples are
/// another entry.
#[test]
fn statistics_are_kept_and_read_back() {
    use std::sync::{Arc, Mutex};
    let m = model();
    let data = calibration(&m);
    let dir = tempfile::tempdir().unwrap();
    let mut options = CompressOptions { scale_estimation: true, ..int4(true, 16) };
    options.statistics_path = Some(dir.path().to_path_buf());
    let run = |options: &CompressOptions, data: &dyn ovpot::Dataset| -> (Graph, Vec<String>) {
        let lines = Arc::new(Mutex::new(vec![]));
        let seen = lines.clone();
        let mut hooks = Hooks {
            log: Some(Box::new(move |_, msg: &str| seen.lock().unwrap().push(msg.to_string()))),
            ..Default::default()
        };
        let calibration = Calibration { data, backend: Backend::builtin() };
        let (g, _) = compress_graph_with(m.graph(), options, Some(&calibration), &mut hooks).unwrap();
        drop(hooks);
        let lines = lines.lock().unwrap().clone();
        (g, lines)
    };
    let (_, first) = run(&options, &data);
    assert!(first.iter().any(|l| l.starts_with("statistics kept in")), "{first:?}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    let other = CompressOptions { awq: true, ..options.clone() };
    let (cached, second) = run(&other, &data);
    assert!(second.iter().any(|l| l.starts_with("statistics read from")), "{second:?}");
    assert_same_as_nncf(&cached, "awq_se");
    // Three of the four samples: another key, collected and kept beside the first.
    let fewer = CompressOptions { subset_size: 3, ..other };
    let (_, third) = run(&fewer, &data);
    assert!(third.iter().any(|l| l.starts_with("statistics kept in")), "{third:?}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}
