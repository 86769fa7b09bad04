//! The OpenVINO backend (`backend: openvino`): OpenVINO's C library loaded at run time runs the
//! statistics and judges INT8 candidates. Runs where the peers venv provides the library; skips
//! with a printed reason elsewhere (fails instead with $OVPOT_REQUIRE_OPENVINO).

mod common;
use ovpot::api::Top1Accuracy;
use ovpot::backend::BackendKind;
use ovpot::quant::config::Algorithm;
use ovpot::{Model, QuantConfig, Session};

fn openvino_config(base: QuantConfig) -> Option<QuantConfig> {
    let lib = common::openvino_lib()?;
    let mut c = base;
    c.backend = BackendKind::Openvino;
    c.openvino.library = Some(lib);
    Some(c)
}

/// Mean output SQNR (dB) of `q` against `fp` on `n` calibration samples, in the built-in engine.
fn sqnr(fp: &Model, q: &Model, dir: &std::path::Path, n: usize) -> f64 {
    let data = common::dataset(&dir.join("calib"), n);
    let (a, b) = (fp.plan().unwrap(), q.emulating_cpu_plugin().0.plan().unwrap());
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for i in 0..n {
        let s = ovpot::api::Dataset::get(&data, i).unwrap();
        let (x, y) = (a.run(&s).unwrap(), b.run(&s).unwrap());
        for (u, v) in x[0].to_f64_vec().iter().zip(y[0].to_f64_vec()) {
            num += (u - v) * (u - v);
            den += u * u;
        }
    }
    10.0 * (den / num.max(1e-30)).log10()
}

/// Statistics in OpenVINO (reduced in the graph) give the built-in engine's quantization: same
/// quantizers, SQNR within 0.3 dB; the report names the backend and gives OpenVINO's latencies.
#[test]
fn default_quantization_in_openvino_matches_builtin() {
    let Some(dir) = common::fixture("mnist_cnn") else { return };
    let base = common::nncf_like(QuantConfig::default());
    let Some(ov_config) = openvino_config(base.clone()) else { return };
    let model = Model::read(&dir.join("model.xml"), None).unwrap();
    let calib = common::dataset(&dir.join("calib"), 300);
    let builtin = Session::new(&model, base).unwrap().quantize(&calib).unwrap();
    let ov = Session::new(&model, ov_config).unwrap().quantize(&calib).unwrap();
    assert_eq!(builtin.report.backend, "builtin");
    assert!(ov.report.backend.starts_with("openvino 20"), "{}", ov.report.backend);
    let lat = ov.report.latency.clone().expect("latency measured with the OpenVINO backend");
    assert!(lat.fp32_ms > 0.0 && lat.int8_ms > 0.0 && (lat.speedup - lat.fp32_ms / lat.int8_ms).abs() < 1e-9);
    assert!(builtin.report.latency.is_none());
    assert_eq!(ov.report.fake_quantize.len(), builtin.report.fake_quantize.len());
    for (a, b) in ov.report.fake_quantize.iter().zip(&builtin.report.fake_quantize) {
        assert_eq!(a.name, b.name);
        // Activation ranges from OpenVINO's f32 reductions: the same min and max.
        let tol = 1e-5 * a.input_high.abs().max(a.input_low.abs()).max(1.0);
        assert!((a.input_low - b.input_low).abs() <= tol && (a.input_high - b.input_high).abs() <= tol, "{a:?} {b:?}");
    }
    let (s_ov, s_builtin) = (sqnr(&model, &ov.model, &dir, 64), sqnr(&model, &builtin.model, &dir, 64));
    eprintln!("SQNR openvino {s_ov:.3} dB, builtin {s_builtin:.3} dB");
    assert!((s_ov - s_builtin).abs() < 0.3, "{s_ov} vs {s_builtin}");
}

/// The bar: accuracy-aware on ppocr_cls judged in OpenVINO: the final metric in the
/// report is what OpenVINO measures for the returned model (read back from its IR), ≥ 0.940.
#[test]
fn accuracy_aware_metric_is_openvinos() {
    let Some(dir) = common::fixture("ppocr_cls") else { return };
    let base = QuantConfig { algorithm: Algorithm::AccuracyAware, ..QuantConfig::default() };
    let Some(mut config) = openvino_config(base) else { return };
    config.accuracy_aware.maximal_drop = 0.005;
    let model = Model::read(&dir.join("model.xml"), None).unwrap();
    let calib = common::dataset(&dir.join("calib"), 300);
    let eval = common::dataset(&dir.join("eval"), 200);
    let labels: Vec<i64> = ovpot::npy::read_npy(&dir.join("eval_labels.npy"))
        .unwrap()
        .to_f64_vec()
        .into_iter()
        .map(|v| v as i64)
        .collect();
    let mut metric = Top1Accuracy::new(labels.clone(), 0);
    let out = Session::new(&model, config.clone())
        .unwrap()
        .quantize_with_accuracy_control(&calib, &eval, &mut metric)
        .unwrap();
    let acc = out.report.accuracy.clone().unwrap();
    eprintln!("{acc:?}");
    assert!(out.accuracy_reached && acc.final_metric >= 0.940 - 1e-9, "{acc:?}");
    // The saved IR, read back and run by OpenVINO as a user's application would.
    let (xml, bin) = out.model.to_memory().unwrap();
    let back = Model::from_memory(xml.as_bytes(), &bin).unwrap();
    let backend = ovpot::backend::Backend::open(BackendKind::Openvino, &config.openvino).unwrap();
    let exec = backend.compile(back.graph(), &[], 0).unwrap();
    let mut hits = 0;
    for (i, label) in labels.iter().enumerate().take(200) {
        let s = ovpot::api::Dataset::get(&eval, i).unwrap();
        let y = exec.run(&s, &mut ovpot::engine::NoObserver).unwrap()[0].to_f64_vec();
        let top = (0..y.len()).max_by(|&a, &b| y[a].total_cmp(&y[b])).unwrap();
        hits += (top as i64 == *label) as usize;
    }
    let runtime = hits as f64 / 200.0;
    assert!((runtime - acc.final_metric).abs() < 1e-9, "OpenVINO {runtime} vs report {}", acc.final_metric);
}

/// A library that is not there is a clear error naming the path, never a panic.
#[test]
fn missing_library_is_a_clear_error() {
    let opts = ovpot::backend::OpenVinoOptions { library: Some("/nonexistent/openvino/libs".into()), core: None };
    let err = ovpot::backend::Backend::open(BackendKind::Openvino, &opts).unwrap_err().to_string();
    assert!(err.contains("/nonexistent/openvino/libs"), "{err}");
}
