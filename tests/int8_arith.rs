//! The int8 arithmetic of the CPU that runs the model: the built-in engine emulating a CPU
//! without VNNI (16-bit saturating pair sums) and one with it (exact sums), against OpenVINO
//! 2026.4's outputs recorded both ways (`tests/data/int8_arith`, made by
//! `.ci/tools/make_int8_arith_fixture.py`: signed and unsigned activations, padding, stride 2, a
//! grouped convolution and a MatMul, weights large enough to saturate many pairs).

mod common;
use ovpot::quant::isa::Int8Arithmetic;
use ovpot::Model;
use std::path::Path;

fn dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/int8_arith")
}

/// Largest difference to OpenVINO's outputs (per output, over the 4 samples), relative to the
/// output's largest magnitude.
fn errors(model: &Model, tag: &str) -> Vec<f64> {
    let d = dir();
    let inputs = common::read_inputs(&d.join("in"));
    let plan = model.plan().unwrap();
    let mut worst = vec![0.0f64; 4];
    for (k, worst) in worst.iter_mut().enumerate() {
        let want = ovpot::npy::read_npy(&d.join(format!("out{k}_{tag}.npy"))).unwrap().to_f64_vec();
        let per = want.len() / 4;
        let scale = want.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        for i in 0..4 {
            let got = plan.run(&common::sample(&inputs, i)).unwrap()[k].to_f64_vec();
            let diff = got.iter().zip(&want[i * per..(i + 1) * per]).fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
            *worst = worst.max(diff / scale);
        }
    }
    worst
}

#[test]
fn no_vnni_arithmetic_is_emulated_exactly() {
    let model = Model::read(&dir().join("model.xml"), None).unwrap();
    let (avx2, e) = model.emulating_cpu(Int8Arithmetic::PairSaturating);
    assert_eq!(e.saturating.len(), 4, "{:?}", e.saturating);
    let emulated = errors(&avx2, "avx2");
    let plain = errors(&model, "avx2");
    eprintln!("vs OpenVINO without VNNI: emulated {emulated:?}, exact sums {plain:?}");
    for (k, (&em, &pl)) in emulated.iter().zip(&plain).enumerate() {
        // f32 rounding of the dequantized result only; exact sums are off by 5 to 60 percent.
        assert!(em < 1e-5, "output {k}: {em}");
        assert!(pl > 0.02, "output {k}: the data must saturate ({pl})");
    }
}

#[test]
fn vnni_arithmetic_is_exact() {
    let model = Model::read(&dir().join("model.xml"), None).unwrap();
    let (vnni, e) = model.emulating_cpu(Int8Arithmetic::Exact);
    assert!(e.saturating.is_empty());
    for (k, err) in errors(&vnni, "vnni").into_iter().enumerate() {
        assert!(err < 1e-5, "output {k}: {err}");
    }
}
