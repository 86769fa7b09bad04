//! AccuracyAwareQuantization on real data: reverts until the metric is back, with either
//! ranking, and the report tells what was reverted.

mod common;
use ovpot::api::Top1Accuracy;
use ovpot::quant::config::{Algorithm, Ranking};
use ovpot::{Model, QuantConfig, Session};

fn labels(dir: &std::path::Path) -> Vec<i64> {
    ovpot::npy::read_npy(&dir.join("eval_labels.npy")).unwrap().to_f64_vec().into_iter().map(|v| v as i64).collect()
}

/// mnist_cnn loses 0.001 of its 0.957 in INT8; with maximal_drop 0 the groups that cost it are
/// reverted until FP32 accuracy is back.
fn revert_to_fp32_accuracy(ranking: Ranking) {
    let Some(dir) = common::fixture("mnist_cnn") else { return };
    let model = Model::read(&dir.join("model.xml"), None).unwrap();
    let calib = common::dataset(&dir.join("calib"), 300);
    let eval = common::dataset(&dir.join("eval"), 1000);
    let mut config = common::nncf_like(QuantConfig { algorithm: Algorithm::AccuracyAware, ..QuantConfig::default() });
    config.accuracy_aware.maximal_drop = 0.0;
    config.accuracy_aware.ranking = ranking;
    let mut metric = Top1Accuracy::new(labels(&dir), 0);
    let out = Session::new(&model, config).unwrap().quantize_with_accuracy_control(&calib, &eval, &mut metric).unwrap();
    let acc = out.report.accuracy.clone().unwrap();
    eprintln!("{ranking:?}: {acc:?}");
    assert!(acc.default_quantized < acc.baseline, "{acc:?}");
    assert!(out.accuracy_reached && acc.reached && acc.final_metric >= acc.baseline, "{acc:?}");
    assert!(!acc.reverted.is_empty() && acc.int8_share < 1.0, "{acc:?}");
    assert_eq!(acc.reverted.last().unwrap().metric_after, acc.final_metric);
    // The returned model is what the report says: its accuracy in the engine is the final metric.
    let (xml, bin) = out.model.to_memory().unwrap();
    let back = Model::from_memory(xml.as_bytes(), &bin).unwrap();
    let engine = common::engine_accuracy(&back, &dir, 0, 1000);
    assert!((engine - acc.final_metric).abs() < 1e-9, "engine {engine} vs report {}", acc.final_metric);
}

#[test]
fn reverts_ranked_by_output_error() {
    revert_to_fp32_accuracy(Ranking::OutputError);
}

#[test]
fn reverts_ranked_by_metric() {
    revert_to_fp32_accuracy(Ranking::Metric);
}

#[test]
fn ranking_from_pot_json() {
    let c = QuantConfig::from_json(
        r#"{"compression": {"algorithms": [{"name": "AccuracyAwareQuantization",
            "params": {"maximal_drop": 0.005, "ranking": "metric"}}]}}"#,
    )
    .unwrap();
    assert_eq!(c.accuracy_aware.ranking, Ranking::Metric);
    assert!(QuantConfig::from_json(
        r#"{"compression": {"algorithms": [{"name": "AccuracyAwareQuantization", "params": {"ranking": "loudest"}}]}}"#
    )
    .is_err());
}

/// The issue's target: ppocr_cls (FP32 0.945, INT8 0.925 in OpenVINO) with max_drop 0.005. Judged
/// as OpenVINO's CPU plugin runs the candidates, one revert (Conv@40) brings the metric back to
/// 0.945, which OpenVINO 2026.4 confirms for the saved IR (`tests/data/ppocr_cls/int8`); NNCF 3.4
/// reverts the same layer.
#[test]
fn ppocr_cls_one_revert_as_openvino_judges_it() {
    let Some(dir) = common::fixture("ppocr_cls") else { return };
    let model = Model::read(&dir.join("model.xml"), None).unwrap();
    let calib = common::dataset(&dir.join("calib"), 300);
    let eval = common::dataset(&dir.join("eval"), 200);
    let mut config = common::nncf_like(QuantConfig { algorithm: Algorithm::AccuracyAware, ..QuantConfig::default() });
    config.accuracy_aware.maximal_drop = 0.005;
    let mut metric = Top1Accuracy::new(labels(&dir), 0);
    let out = Session::new(&model, config).unwrap().quantize_with_accuracy_control(&calib, &eval, &mut metric).unwrap();
    let acc = out.report.accuracy.clone().unwrap();
    eprintln!("{acc:?}");
    assert!((acc.baseline - 0.945).abs() < 1e-9, "{acc:?}");
    assert!(acc.default_quantized < acc.baseline - 0.005, "{acc:?}");
    assert_eq!(acc.reverted.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["Conv@40"], "{acc:?}");
    assert!(out.accuracy_reached && acc.final_metric >= acc.baseline - 1e-9, "{acc:?}");
    assert!((acc.int8_share - 53.0 / 54.0).abs() < 1e-9, "{acc:?}");
    // The report lists what the returned model holds.
    let fq_nodes = out.model.graph().nodes.iter().filter(|n| n.op_type == "FakeQuantize").count();
    let fq_listed = out.report.fake_quantize.iter().filter(|f| f.kind.starts_with("activation")).count();
    assert_eq!((fq_listed, fq_nodes), (79, 79));
    assert_eq!(out.report.fake_quantize.iter().filter(|f| f.kind.starts_with("weights")).count(), 53);
    assert!(!out.report.quantized_layers.iter().any(|l| l == "Conv@40"));
    // The report's final metric is the engine's verdict on the returned model run as the CPU
    // plugin runs it.
    let (as_cpu, _) = out.model.emulating_cpu_plugin();
    let engine = common::engine_accuracy(&as_cpu, &dir, 0, 200);
    assert!((engine - acc.final_metric).abs() < 1e-9, "engine {engine} vs report {}", acc.final_metric);
}

/// An accuracy-aware run on `dir`'s labels (top-1 of output 0), with the log lines it wrote.
fn with_logs(
    model: &Model,
    config: QuantConfig,
    calib: &dyn ovpot::Dataset,
    eval: &dyn ovpot::Dataset,
    dir: &std::path::Path,
) -> (ovpot::Outcome, Vec<String>) {
    let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = logs.clone();
    let mut session = Session::new(model, config).unwrap();
    session.hooks.log = Some(Box::new(move |_, m| sink.lock().unwrap().push(m.to_string())));
    let mut metric = Top1Accuracy::new(labels(dir), 0);
    let out = session.quantize_with_accuracy_control(calib, eval, &mut metric).unwrap();
    let logs = logs.lock().unwrap().clone();
    (out, logs)
}

/// POT's convert_to_mixed_preset: a performance-preset model over the drop is quantized again
/// with the mixed preset (asymmetric activations) before any revert, and the run goes on from
/// whichever of the two drops less.
#[test]
fn convert_to_mixed_preset_tries_the_mixed_preset_first() {
    let Some(dir) = common::fixture("mnist_cnn") else { return };
    let model = Model::read(&dir.join("model.xml"), None).unwrap();
    let calib = common::dataset(&dir.join("calib"), 300);
    let eval = common::dataset(&dir.join("eval"), 1000);
    let run = |convert: bool| {
        let mut config =
            common::nncf_like(QuantConfig { algorithm: Algorithm::AccuracyAware, ..QuantConfig::default() });
        config.accuracy_aware.maximal_drop = 0.0;
        config.accuracy_aware.convert_to_mixed_preset = convert;
        with_logs(&model, config, &calib, &eval, &dir)
    };
    let (plain, plain_logs) = run(false);
    let (converted, logs) = run(true);
    assert!(!plain_logs.iter().any(|l| l.contains("mixed preset")), "{plain_logs:?}");
    let line = logs.iter().find(|l| l.starts_with("mixed preset INT8 metric")).unwrap_or_else(|| panic!("{logs:?}"));
    let chose_mixed = line.ends_with("going on from the mixed preset");
    eprintln!("{line}");
    assert_eq!(converted.report.preset, if chose_mixed { "mixed" } else { "performance" });
    let asymmetric = converted.report.fake_quantize.iter().any(|f| f.kind == "activation asymmetric");
    assert_eq!(asymmetric, chose_mixed);
    assert!(logs.iter().any(|l| l.starts_with("convert_to_mixed_preset: quantizing again")), "{logs:?}");
    let acc = converted.report.accuracy.as_ref().unwrap();
    assert!(converted.accuracy_reached && acc.final_metric >= acc.baseline, "{acc:?}");
    assert_eq!(plain.report.preset, "performance");
}

/// Without VNNI, when `saturation_fix: auto`'s output check gave the layers left saturating
/// 7-bit weights (mnist_cnn: one layer), an accuracy-aware run over the drop quantizes again with
/// those layers decided one by one (`per_layer`) and goes on from whichever model's metric is
/// better; with exact sums (VNNI) there is nothing to judge again.
#[test]
fn saturating_layers_judged_again_by_the_metric() {
    use ovpot::quant::config::TargetIsa;
    let Some(dir) = common::fixture("mnist_cnn") else { return };
    let model = Model::read(&dir.join("model.xml"), None).unwrap();
    let calib = common::dataset(&dir.join("calib"), 300);
    let eval = common::dataset(&dir.join("eval"), 1000);
    let run = |isa: TargetIsa| {
        let mut config = QuantConfig { algorithm: Algorithm::AccuracyAware, target_isa: isa, ..QuantConfig::default() };
        config.accuracy_aware.maximal_drop = 0.0;
        config.accuracy_aware.convert_to_mixed_preset = false;
        with_logs(&model, config, &calib, &eval, &dir)
    };
    let (out, logs) = run(TargetIsa::Avx2);
    let a = out.report.int8_arithmetic.clone().unwrap();
    let group = a.output_checks.iter().find(|c| c.group == "saturating layers").map(|c| c.seven_bit);
    match logs.iter().find(|l| l.starts_with("saturating layers judged one by one")) {
        Some(line) => {
            eprintln!("{line}");
            let went_on = line.ends_with("going on from that model");
            assert_eq!(a.saturation_fix, if went_on { "per_layer" } else { "auto" }, "{a:?}");
            assert_eq!(group, if went_on { None } else { Some(true) }, "{a:?}");
        }
        // Only when the output check kept them in 8 bits (a close call on this model: 25.64
        // against 25.67 dB here, where it gives them 7 bits).
        None => assert_eq!((a.saturation_fix.as_str(), group), ("auto", Some(false)), "{logs:?}"),
    }
    let acc = out.report.accuracy.as_ref().unwrap();
    assert!(out.accuracy_reached && acc.final_metric >= acc.baseline, "{acc:?}");

    let (_, vnni_logs) = run(TargetIsa::Vnni);
    assert!(!vnni_logs.iter().any(|l| l.contains("judged one by one")), "{vnni_logs:?}");
}

/// POT's annotation-free mode: no labels; the metric is top-1 agreement with the FP32 model on
/// the evaluation samples it predicts with confidence above the threshold. With maximal_drop 0
/// the returned model agrees with FP32 on every one of them, which the engine confirms.
#[test]
fn annotation_free_agrees_with_fp32_on_confident_samples() {
    let Some(dir) = common::fixture("ppocr_cls") else { return };
    let model = Model::read(&dir.join("model.xml"), None).unwrap();
    let calib = common::dataset(&dir.join("calib"), 300);
    let eval = common::dataset(&dir.join("eval"), 200);
    let mut config = common::nncf_like(QuantConfig { algorithm: Algorithm::AccuracyAware, ..QuantConfig::default() });
    config.accuracy_aware.maximal_drop = 0.0;
    config.accuracy_aware.annotation_free = true;
    config.accuracy_aware.annotation_conf_threshold = 0.9;
    let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = logs.clone();
    let mut session = Session::new(&model, config).unwrap();
    session.hooks.log = Some(Box::new(move |_, m| sink.lock().unwrap().push(m.to_string())));
    // A metric given alongside is not used: no labels exist.
    let mut ignored = Top1Accuracy::new(vec![], 0);
    let out = session.quantize_with_accuracy_control(&calib, &eval, &mut ignored).unwrap();
    let acc = out.report.accuracy.clone().unwrap();
    let logs = logs.lock().unwrap().clone();
    let line = logs.iter().find(|l| l.starts_with("annotation-free:")).unwrap_or_else(|| panic!("{logs:?}"));
    eprintln!("{line}\n{acc:?}");
    assert_eq!(acc.baseline, 1.0, "FP32 agrees with itself");
    assert!(out.accuracy_reached && acc.final_metric == 1.0, "{acc:?}");
    // The engine's verdict on the returned model, on the same confident samples.
    use ovpot::Dataset;
    let fp = model.plan().unwrap();
    let (q, _) = out.model.emulating_cpu_plugin();
    let qe = q.plan().unwrap();
    let (mut kept, mut agree) = (0, 0);
    for i in 0..eval.len() {
        let s = eval.get(i).unwrap();
        let f = fp.run(&s).unwrap();
        let scores = f[0].to_f64_vec();
        let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let top = if max > 1.0 || scores.iter().any(|&x| x < 0.0) {
            1.0 / scores.iter().map(|x| (x - max).exp()).sum::<f64>()
        } else {
            max
        };
        if top > 0.9 {
            kept += 1;
            agree += (ovpot::api::argmax(&f[0]) == ovpot::api::argmax(&qe.run(&s).unwrap()[0])) as usize;
        }
    }
    assert!(line.contains(&format!("{kept} of 200")), "{line}");
    assert_eq!(agree, kept);
}

/// The C API: `ovpot_session_set_annotation_free` lets `ovpot_session_run_accuracy_aware` run
/// with a NULL metric; without it a NULL metric is refused.
#[test]
fn c_api_annotation_free_takes_no_metric() {
    use ovpot::ffi::*;
    use std::ffi::CString;
    use std::ptr;
    let Some(dir) = common::fixture("mnist_cnn") else { return };
    let xml = CString::new(dir.join("model.xml").to_str().unwrap()).unwrap();
    let (mut model, mut calib, mut eval, mut session) =
        (ptr::null_mut(), ptr::null_mut(), ptr::null_mut(), ptr::null_mut());
    assert_eq!(ovpot_model_read(xml.as_ptr(), ptr::null(), &mut model), ovpot_status_e::OVPOT_OK);
    for (sub, out) in [("calib", &mut calib), ("eval", &mut eval)] {
        let p = CString::new(dir.join(sub).to_str().unwrap()).unwrap();
        assert_eq!(ovpot_dataset_create_from_npy_folder(model, p.as_ptr(), out), ovpot_status_e::OVPOT_OK);
    }
    let config = CString::new(r#"{"stat_subset_size": 100}"#).unwrap();
    assert_eq!(ovpot_session_create(model, config.as_ptr(), &mut session), ovpot_status_e::OVPOT_OK);
    let mut q = ptr::null_mut();
    let refused = ovpot_session_run_accuracy_aware(session, calib, eval, ptr::null_mut(), &mut q);
    assert_eq!(refused, ovpot_status_e::OVPOT_INVALID_ARGUMENT);
    assert!(q.is_null());
    assert_eq!(ovpot_session_set_annotation_free(session, 1, 1.5, 0), ovpot_status_e::OVPOT_INVALID_ARGUMENT);
    assert_eq!(ovpot_session_set_annotation_free(session, 1, 0.6, 0), ovpot_status_e::OVPOT_OK);
    let status = ovpot_session_run_accuracy_aware(session, calib, eval, ptr::null_mut(), &mut q);
    assert_eq!(status, ovpot_status_e::OVPOT_OK);
    assert!(!q.is_null());
    ovpot_model_free(q);
    ovpot_session_free(session);
    ovpot_dataset_free(calib);
    ovpot_dataset_free(eval);
    ovpot_model_free(model);
}

/// POT's tune_hyperparams: when the default model misses the drop, POT's grid of 10 range-
/// estimator settings and the other bias correction are tried before any revert, and the run
/// goes on from the best of them.
#[test]
fn tune_hyperparams_tries_pots_grid_first() {
    let Some(dir) = common::fixture("mnist_cnn") else { return };
    let model = Model::read(&dir.join("model.xml"), None).unwrap();
    let calib = common::dataset(&dir.join("calib"), 100);
    let eval = common::dataset(&dir.join("eval"), 300);
    let c = QuantConfig::from_json(
        r#"{"compression": {"algorithms": [{"name": "AccuracyAwareQuantization",
            "params": {"maximal_drop": 0.0, "tune_hyperparams": true, "stat_subset_size": 100}}]}}"#,
    )
    .unwrap();
    assert!(c.accuracy_aware.tune_hyperparams);
    let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = logs.clone();
    let mut session = Session::new(&model, common::nncf_like(c)).unwrap();
    session.hooks.log = Some(Box::new(move |_, m| sink.lock().unwrap().push(m.to_string())));
    let mut metric = Top1Accuracy::new(labels(&dir)[..300].to_vec(), 0);
    let out = session.quantize_with_accuracy_control(&calib, &eval, &mut metric).unwrap();
    let logs = logs.lock().unwrap().clone();
    let tried = logs.iter().filter(|l| l.starts_with("tune_hyperparams: ") && l.contains("→ metric")).count();
    let acc = out.report.accuracy.clone().unwrap();
    if acc.default_quantized < acc.baseline {
        assert_eq!(tried, 11, "{logs:?}");
        assert!(logs.iter().any(|l| l.starts_with("tune_hyperparams: going on from")), "{logs:?}");
    } else {
        assert_eq!(tried, 0, "nothing to tune when the default model meets the drop: {logs:?}");
    }
    assert!(out.accuracy_reached, "{acc:?}");
}
