//! The engine against OpenVINO's FP32 outputs on every fixture's `ref` inputs.

mod common;
use ovpot::engine::Plan;

fn check(name: &str) {
    let Some(dir) = common::fixture(name) else { return };
    let g = ovpot::ir::read_model(&dir.join("model.xml"), None).unwrap();
    let plan = Plan::new(&g).unwrap();
    let inputs = common::read_inputs(&dir.join("ref/in"));
    let n = inputs[0].1.shape()[0];
    let n_out = plan.output_outlets().len();
    let mut outs: Vec<Vec<ovpot::tensor::Tensor>> = vec![vec![]; n_out];
    for i in 0..n {
        let o = plan.run(&common::sample(&inputs, i)).unwrap();
        for (k, t) in o.into_iter().enumerate() {
            outs[k].push(t);
        }
    }
    for (k, per_sample) in outs.iter().enumerate() {
        let reference = ovpot::npy::read_npy(&dir.join(format!("ref/out{k}.npy"))).unwrap();
        let flat: Vec<f64> = per_sample.iter().flat_map(|t| t.to_f64_vec()).collect();
        let refv = reference.to_f64_vec();
        assert_eq!(flat.len(), refv.len(), "{name} output {k}: element count");
        let tol = 1e-4 * common::max_abs(&reference).max(1.0);
        let diff = flat.iter().zip(&refv).fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
        eprintln!("{name} out{k}: max|diff| = {diff:.3e} (tol {tol:.1e})");
        assert!(diff <= tol, "{name} output {k}: max|diff| {diff} > {tol}");
    }
}

#[test]
fn digits_mlp() {
    check("digits_mlp");
}
#[test]
fn mnist_cnn() {
    check("mnist_cnn");
}
#[test]
fn mtcnn_rnet() {
    check("mtcnn_rnet");
}
#[test]
fn mtcnn_onet() {
    check("mtcnn_onet");
}
#[test]
fn ppocr_cls() {
    check("ppocr_cls");
}
#[test]
fn mobilenet_v2() {
    check("mobilenet_v2");
}
#[test]
fn minilm_l6() {
    check("minilm_l6");
}
