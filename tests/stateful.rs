//! Stateful LLMs as optimum-intel exports them (issue #34): `tests/data/tiny_llama_stateful` is a
//! 2-layer random-init Llama exported by optimum-intel (ReadValue/Assign KV cache,
//! ScaledDotProductAttention, RoPE from `inv_freq`, dynamic batch and sequence), with 4 windows of
//! 8 token ids and OpenVINO 2026.4.1's logits for them (state reset before each window). Every
//! path keeps the model whole: read/write, weight compression in memory and streamed, quantize
//! (built-in engine and OpenVINO backend).

mod common;
use ovpot::compress::{compress_file, compress_graph, CompressMode, CompressOptions};
use ovpot::graph::Graph;
use ovpot::hooks::Hooks;
use ovpot::tensor::Tensor;
use ovpot::{Dataset, Model, QuantConfig, Session};
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny_llama_stateful")
}

fn read() -> Model {
    Model::read(&fixture().join("model.xml"), None).unwrap()
}

/// `(variable_id, op type)` of every ReadValue and Assign, sorted.
fn variables(g: &Graph) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = g
        .nodes
        .iter()
        .filter(|n| n.op_type == "ReadValue" || n.op_type == "Assign")
        .map(|n| (n.attrs.get("variable_id").unwrap_or("").to_string(), n.op_type.clone()))
        .collect();
    v.sort();
    v
}

fn assert_whole(original: &Graph, written: &Graph) {
    let (a, b) = (variables(original), variables(written));
    assert_eq!(a.len(), 8, "the fixture has 4 variables (2 layers x K, V), read and written each");
    assert_eq!(a, b, "every ReadValue/Assign pair survives");
    // The variables' declared type and shape are written as read.
    for n in written.nodes.iter().filter(|n| n.op_type == "ReadValue") {
        let src = original.nodes.iter().find(|m| m.name == n.name).expect("same ReadValue");
        assert_eq!(n.attrs.get("variable_type"), src.attrs.get("variable_type"));
        assert_eq!(n.attrs.get("variable_shape"), src.attrs.get("variable_shape"));
    }
}

fn logits(model: &Model, data: &dyn Dataset) -> Vec<Tensor> {
    let plan = model.plan().unwrap();
    (0..data.len()).map(|i| plan.run(&data.get(i).unwrap()).unwrap().remove(0)).collect()
}

fn sqnr(reference: &[Tensor], got: &[Tensor]) -> f64 {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (r, g) in reference.iter().zip(got) {
        for (u, v) in r.to_f64_vec().iter().zip(g.to_f64_vec()) {
            num += (u - v) * (u - v);
            den += u * u;
        }
    }
    10.0 * (den / num.max(1e-30)).log10()
}

/// The built-in engine runs the KV cache as a fresh request per window: OpenVINO's logits, and the
/// same logits when a window runs again (no state carried over).
#[test]
fn engine_runs_the_stateful_model_as_openvino_does() {
    let model = read();
    let data = common::dataset(&fixture().join("calib"), 4);
    let reference = ovpot::npy::read_npy(&fixture().join("ref/logits.npy")).unwrap();
    let ours = logits(&model, &data);
    for (i, t) in ours.iter().enumerate() {
        let r = common::sample(&[("logits".into(), reference.clone())], i).remove(0).1;
        let err = common::max_abs_diff(&r, t) / common::max_abs(&r);
        assert!(err < 1e-4, "window {i}: relative error {err}");
    }
    assert_eq!(logits(&model, &data)[0].to_f64_vec(), ours[0].to_f64_vec());
}

#[test]
fn read_and_write_keep_the_variables() {
    let model = read();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.xml");
    model.save(&out, None).unwrap();
    let again = Model::read(&out, None).unwrap();
    assert_whole(model.graph(), again.graph());
    let (xml, _) = model.to_memory().unwrap();
    assert_eq!(xml.matches("type=\"Assign\"").count(), 4);
}

fn int4(group: i64) -> CompressOptions {
    CompressOptions { mode: CompressMode::Int4Asym, group_size: Some(group), ..Default::default() }
}

/// The rotary `inv_freq` MatMul is NNCF's RoPE pattern: kept in floating point, so a group size
/// that does not divide its single input channel is no error; the other weights are compressed.
fn check_rope_kept(report: &ovpot::compress::CompressReport) {
    let rope: Vec<_> = report.layers.iter().filter(|l| l.layer.contains("rotary_emb")).collect();
    assert_eq!(rope.len(), 1, "{:?}", report.layers.iter().map(|l| &l.layer).collect::<Vec<_>>());
    assert_eq!(rope[0].compression, "float");
    assert!(rope[0].kept_because.as_deref().is_some_and(|w| w.contains("RoPE")), "{:?}", rope[0].kept_because);
    // 2 layers x 7 projections in int4, the embedding and lm_head in the int8 backup, as NNCF.
    assert_eq!(report.layers.iter().filter(|l| l.bits == 4).count(), 14);
    assert_eq!(report.layers.iter().filter(|l| l.bits == 8).count(), 2);
}

#[test]
fn weight_compression_in_memory_keeps_the_kv_cache() {
    let model = read();
    for options in [CompressOptions::default(), int4(16)] {
        let (compressed, report) = compress_graph(model.graph(), &options, &mut Hooks::default()).unwrap();
        assert_whole(model.graph(), &compressed);
        if options.mode == CompressMode::Int4Asym {
            check_rope_kept(&report);
        }
        // It runs, and close to FP32 (int8 per channel far closer than int4 in groups of 16).
        let data = common::dataset(&fixture().join("calib"), 4);
        let s = sqnr(&logits(&model, &data), &logits(&Model::from_graph(compressed), &data));
        let floor = if options.mode.is_int8() { 30.0 } else { 10.0 };
        assert!(s > floor, "{}: logits SQNR {s:.2} dB", options.mode.name());
    }
}

#[test]
fn streamed_weight_compression_keeps_the_kv_cache() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("c.xml");
    let report = compress_file(&fixture().join("model.xml"), &out, &int4(16), &mut Hooks::default()).unwrap();
    check_rope_kept(&report);
    let written = Model::read(&out, None).unwrap();
    assert_whole(read().graph(), written.graph());
}

/// W8A8 of the stateful model: the rotary MatMul stays in floating point (RoPE pattern), no
/// quantizer on the cache path (ReadValue, the beam Gather, Assign's input), K quantized after
/// the cache Concat as NNCF places it; the model is written whole and stays close to FP32.
fn check_quantized(model: &Model, out: &ovpot::Outcome) {
    assert_whole(model.graph(), out.model.graph());
    let g = out.model.graph();
    let consumers = g.consumers();
    for (id, n) in g.nodes.iter().enumerate() {
        if n.name.contains("rotary_emb") && n.op_type == "MatMul" {
            assert!(n.inputs.iter().all(|o| g.nodes[o.node].op_type != "FakeQuantize"), "{} quantized", n.name);
        }
        if n.op_type == "FakeQuantize" {
            let src = &g.nodes[n.inputs[0].node];
            assert!(!matches!(src.op_type.as_str(), "ReadValue" | "Gather"), "FQ after {}", src.describe());
            let readers = consumers.get(&ovpot::graph::Outlet::new(id, 0)).cloned().unwrap_or_default();
            assert!(readers.iter().all(|(r, _)| g.nodes[*r].op_type != "Assign"), "FQ into an Assign");
        }
    }
    assert!(out.report.ignored.iter().any(|i| i.name.contains("rotary_emb") && i.reason.contains("RoPE")));
    let data = common::dataset(&fixture().join("calib"), 4);
    let s = sqnr(&logits(model, &data), &logits(&out.model.emulating_cpu_plugin().0, &data));
    assert!(s > 15.0, "W8A8 logits SQNR {s:.2} dB");
}

#[test]
fn quantize_keeps_the_kv_cache_and_skips_rope() {
    let model = read();
    let calib = common::dataset(&fixture().join("calib"), 4);
    let out = Session::new(&model, QuantConfig::default()).unwrap().quantize(&calib).unwrap();
    check_quantized(&model, &out);
    // Transformers take no first-layer 7-bit weights on a VNNI target (NNCF's fix is for
    // Convolutions only).
    let dir = tempfile::tempdir().unwrap();
    out.model.save(&dir.path().join("q.xml"), None).unwrap();
    assert_whole(model.graph(), Model::read(&dir.path().join("q.xml"), None).unwrap().graph());
}

/// The OpenVINO backend runs each calibration window on a fresh infer request: the same ranges
/// as the built-in engine (a reused request would carry one window's KV cache into the next).
#[test]
fn quantize_with_the_openvino_backend_resets_the_state() {
    let Some(lib) = common::openvino_lib() else { return };
    let model = read();
    let calib = common::dataset(&fixture().join("calib"), 4);
    let mut config = QuantConfig::default();
    let builtin = Session::new(&model, config.clone()).unwrap().quantize(&calib).unwrap();
    config.backend = ovpot::backend::BackendKind::Openvino;
    config.openvino.library = Some(lib);
    let ov = Session::new(&model, config).unwrap().quantize(&calib).unwrap();
    check_quantized(&model, &ov);
    assert_eq!(ov.report.fake_quantize.len(), builtin.report.fake_quantize.len());
    for (a, b) in ov.report.fake_quantize.iter().zip(&builtin.report.fake_quantize) {
        let tol = 1e-4 * a.input_high.abs().max(a.input_low.abs()).max(1.0);
        assert!((a.input_low - b.input_low).abs() <= tol && (a.input_high - b.input_high).abs() <= tol, "{a:?} {b:?}");
    }
}

/// The C API on the stateful model: read, npy-folder dataset, session run, compress in memory and
/// to a file, save; every result keeps its variables.
#[test]
fn c_api_paths_keep_the_kv_cache() {
    use ovpot::ffi::compress::*;
    use ovpot::ffi::*;
    use std::ffi::CString;
    use std::ptr;
    let ok = ovpot_status_e::OVPOT_OK;
    let c = |p: &Path| CString::new(p.to_str().unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let xml = c(&fixture().join("model.xml"));
    let mut model: *mut ovpot_model_t = ptr::null_mut();
    assert_eq!(ovpot_model_read(xml.as_ptr(), ptr::null(), &mut model), ok);
    let mut data: *mut ovpot_dataset_t = ptr::null_mut();
    assert_eq!(ovpot_dataset_create_from_npy_folder(model, c(&fixture().join("calib")).as_ptr(), &mut data), ok);
    let mut session: *mut ovpot_session_t = ptr::null_mut();
    assert_eq!(ovpot_session_create(model, ptr::null(), &mut session), ok);
    let mut quantized: *mut ovpot_model_t = ptr::null_mut();
    assert_eq!(ovpot_session_run(session, data, &mut quantized), ok);
    let q_xml = dir.path().join("q.xml");
    assert_eq!(ovpot_model_save(quantized, c(&q_xml).as_ptr(), ptr::null()), ok);
    let mut compressor: *mut ovpot_compressor_t = ptr::null_mut();
    let options = CString::new(r#"{"mode": "int4_asym", "group_size": 16}"#).unwrap();
    assert_eq!(ovpot_compressor_create(options.as_ptr(), &mut compressor), ok);
    let mut compressed: *mut ovpot_model_t = ptr::null_mut();
    assert_eq!(ovpot_compressor_compress_model(compressor, model, &mut compressed), ok);
    let c_xml = dir.path().join("c.xml");
    assert_eq!(ovpot_model_save(compressed, c(&c_xml).as_ptr(), ptr::null()), ok);
    let f_xml = dir.path().join("f.xml");
    assert_eq!(ovpot_compressor_compress_file(compressor, xml.as_ptr(), c(&f_xml).as_ptr()), ok);
    for m in [compressed, quantized, model] {
        ovpot_model_free(m);
    }
    ovpot_compressor_free(compressor);
    ovpot_session_free(session);
    ovpot_dataset_free(data);
    let original = read();
    for p in [q_xml, c_xml, f_xml] {
        assert_whole(original.graph(), Model::read(&p, None).unwrap().graph());
    }
}
