//! The built-in engine judging an INT8 IR as OpenVINO's CPU plugin runs it
//! (`Model::emulating_cpu_plugin`), against outputs recorded from OpenVINO 2026.4.

mod common;
use ovpot::{Dataset, Model, QuantConfig, Session};

/// ppocr_cls after accuracy-aware quantization (Conv@40 in FP32), with OpenVINO's outputs for
/// its 200 eval samples (`tests/data/ppocr_cls/int8`).
#[test]
fn ppocr_int8_runs_as_openvino_runs_it() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ppocr_cls");
    let int8 = Model::read(&dir.join("int8/model.xml"), None).unwrap();
    let ov = ovpot::npy::read_npy(&dir.join("int8/openvino_out.npy")).unwrap().to_f64_vec();
    let labels = ovpot::npy::read_npy(&dir.join("eval_labels.npy")).unwrap().to_i64_vec();
    let eval = common::dataset(&dir.join("eval"), 200);
    let (emulated, changed) = int8.emulating_cpu_plugin();
    // The seven residual blocks whose projection convolution OpenVINO fuses with the sum.
    let blocks = ["9", "15", "18", "21", "24", "30", "33"];
    let expected: Vec<String> = blocks.iter().map(|b| format!("BatchNormalization@{b}/fq_output_0")).collect();
    assert_eq!(changed, expected);
    assert!(emulated.graph().nodes.iter().filter(|n| n.op_type == "Clamp").count() >= 7);

    // (top-1 hits, samples within 1e-4 of OpenVINO, argmax disagreements with OpenVINO)
    let judge = |m: &Model| {
        let plan = m.plan().unwrap();
        let (mut hits, mut close, mut disagree) = (0, 0, 0);
        for i in 0..eval.len() {
            let out = plan.run(&eval.get(i).unwrap()).unwrap()[0].to_f64_vec();
            let want = &ov[i * 2..i * 2 + 2];
            let argmax = |v: &[f64]| if v[1] > v[0] { 1 } else { 0 };
            hits += usize::from(argmax(&out) == labels[i]);
            disagree += usize::from(argmax(&out) != argmax(want));
            close += usize::from(out.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-4));
        }
        (hits, close, disagree)
    };
    let ov_hits = (0..labels.len()).filter(|&i| i64::from(ov[i * 2 + 1] > ov[i * 2]) == labels[i]).count();
    assert_eq!(ov_hits, 189, "OpenVINO's recorded accuracy is 0.945");
    let (hits, close, disagree) = judge(&emulated);
    let (plain_hits, plain_close, plain_disagree) = judge(&int8);
    eprintln!("emulated: {hits} hits, {close} close, {disagree} disagree; FakeQuantize semantics: {plain_hits}, {plain_close}, {plain_disagree}");
    assert_eq!(hits, ov_hits);
    assert_eq!(disagree, 0);
    assert!(close >= 100 && close > plain_close + 20, "{close} vs {plain_close}");
}

/// A network without residual sums has nothing the plugin computes differently.
#[test]
fn nothing_to_emulate_without_residual_sums() {
    let Some(dir) = common::fixture("mnist_cnn") else { return };
    let model = Model::read(&dir.join("model.xml"), None).unwrap();
    let calib = common::dataset(&dir.join("calib"), 64);
    let mut s = Session::new(&model, QuantConfig::default()).unwrap();
    let q = s.quantize(&calib).unwrap();
    let (_, changed) = q.model.emulating_cpu_plugin();
    assert!(changed.is_empty(), "{changed:?}");
}

/// The same IR on a CPU without VNNI: OpenVINO (recorded with `ONEDNN_MAX_CPU_ISA=AVX2`) scores
/// it 0.910, not 0.945: 41 of its int8 layers saturate 16-bit pair sums. The engine emulating
/// that arithmetic gives OpenVINO's verdict; exact sums would promise 0.945.
#[test]
fn ppocr_int8_on_a_cpu_without_vnni() {
    use ovpot::quant::isa::Int8Arithmetic;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ppocr_cls");
    let int8 = Model::read(&dir.join("int8/model.xml"), None).unwrap();
    let ov = ovpot::npy::read_npy(&dir.join("int8/openvino_avx2_out.npy")).unwrap().to_f64_vec();
    let labels = ovpot::npy::read_npy(&dir.join("eval_labels.npy")).unwrap().to_i64_vec();
    let eval = common::dataset(&dir.join("eval"), 200);
    let argmax = |v: &[f64]| i64::from(v[1] > v[0]);
    let ov_hits = (0..labels.len()).filter(|&i| argmax(&ov[i * 2..i * 2 + 2]) == labels[i]).count();
    assert_eq!(ov_hits, 182, "OpenVINO's recorded accuracy without VNNI is 0.910");
    let (emulated, e) = int8.emulating_cpu(Int8Arithmetic::PairSaturating);
    assert_eq!((e.unrounded.len(), e.saturating.len()), (7, 41));
    let plan = emulated.plan().unwrap();
    let (mut hits, mut disagree, mut close) = (0, 0, 0);
    for i in 0..eval.len() {
        let out = plan.run(&eval.get(i).unwrap()).unwrap()[0].to_f64_vec();
        let want = &ov[i * 2..i * 2 + 2];
        hits += usize::from(argmax(&out) == labels[i]);
        disagree += usize::from(argmax(&out) != argmax(want));
        close += usize::from(out.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-4));
    }
    eprintln!("emulated without VNNI: {hits} hits, {disagree} argmax disagreements, {close} within 1e-4");
    assert_eq!(hits, ov_hits);
    // Measured: 2 disagreements (which cancel) and 74 of 200 within 1e-4; the exact-sum judge
    // disagrees with OpenVINO on 9 (tests/cli.rs: 0.945 vs 0.910).
    assert!(disagree <= 2 && close >= 60, "{disagree} disagreements, {close} close");
}
