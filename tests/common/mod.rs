#![allow(dead_code)]
//! Shared helpers for the integration tests.

use ovpot::tensor::Tensor;
use std::path::{Path, PathBuf};

/// The fixture folder: the repo's own copy under tests/data, else ../shared/fixtures (benchmark
/// sized cases); None when neither exists (the test is then skipped with a note).
pub fn fixture(name: &str) -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let local = root.join("tests/data").join(name);
    if local.join("model.xml").exists() {
        return Some(local);
    }
    let shared = root.join("../shared/fixtures").join(name);
    if shared.join("model.xml").exists() {
        return Some(shared);
    }
    skipped(&format!("fixture {name} not available"));
    None
}

/// A test that cannot run here says why and returns; with $OVPOT_NO_SKIP set (CI, where every
/// resource is installed) it fails instead, so that no test passes by not running.
pub fn skipped(why: &str) {
    let strict = std::env::var_os("OVPOT_NO_SKIP").is_some() || std::env::var_os("OVPOT_REQUIRE_OPENVINO").is_some();
    assert!(!strict, "not skipped under OVPOT_NO_SKIP: {why}");
    eprintln!("SKIPPED: {why}");
}

/// Reads every `<input>.npy` of a folder, sorted by name.
pub fn read_inputs(dir: &Path) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "npy"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, ovpot::npy::read_npy(&p).unwrap())
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Sample `i` of stacked inputs (axis 0), kept with a leading batch dim of 1.
pub fn sample(inputs: &[(String, Tensor)], i: usize) -> Vec<(String, Tensor)> {
    inputs
        .iter()
        .map(|(n, t)| {
            let t =
                ovpot::map_tensor!(t, a => a.slice_axis(ndarray::Axis(0), ndarray::Slice::from(i..i + 1)).to_owned());
            (n.clone(), t)
        })
        .collect()
}

pub fn max_abs(t: &Tensor) -> f64 {
    t.to_f64_vec().iter().fold(0.0f64, |m, x| m.max(x.abs()))
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.shape(), b.shape(), "shapes differ");
    a.to_f64_vec().iter().zip(b.to_f64_vec()).fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
}

/// Every sample of a data folder as an in-memory dataset (first `limit` samples).
pub fn dataset(dir: &Path, limit: usize) -> ovpot::InMemoryDataset {
    let inputs = read_inputs(dir);
    let n = inputs[0].1.shape()[0].min(limit);
    ovpot::InMemoryDataset { samples: (0..n).map(|i| sample(&inputs, i)).collect() }
}

/// Top-1 accuracy of a model with the built-in engine on a fixture's eval set.
pub fn engine_accuracy(model: &ovpot::Model, fixture_dir: &Path, output: usize, limit: usize) -> f64 {
    use ovpot::Dataset;
    let data = dataset(&fixture_dir.join("eval"), limit);
    let labels = ovpot::npy::read_npy(&fixture_dir.join("eval_labels.npy")).unwrap().to_i64_vec();
    let plan = model.plan().unwrap();
    let mut hits = 0;
    for (i, &label) in labels.iter().enumerate().take(data.len()) {
        let out = plan.run(&data.get(i).unwrap()).unwrap();
        if ovpot::api::argmax(&out[output]) as i64 == label {
            hits += 1;
        }
    }
    hits as f64 / data.len() as f64
}

/// NNCF's default settings where ovpot's differ by design: the first-layer saturation fix on
/// every target, and exact int8 sums assumed (so results do not depend on the test machine's
/// CPU). For tests that compare with NNCF's IRs or pin exact outcomes.
pub fn nncf_like(config: ovpot::QuantConfig) -> ovpot::QuantConfig {
    use ovpot::quant::config::{SaturationFix, TargetIsa};
    ovpot::QuantConfig { saturation_fix: SaturationFix::FirstLayer, target_isa: TargetIsa::Vnni, ..config }
}

/// OpenVINO's C library for the OpenVINO backend: $OVPOT_OPENVINO_LIB, else the `openvino/libs`
/// folder of the peers venv (.ci/run's $OVPOT_PEERS, `.peers/` in the repo, `../peers`). None
/// prints why the caller skips; with $OVPOT_REQUIRE_OPENVINO set, a missing library fails.
#[allow(dead_code)]
pub fn openvino_lib() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("OVPOT_OPENVINO_LIB") {
        return Some(PathBuf::from(p));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut venvs = vec![];
    if let Some(p) = std::env::var_os("OVPOT_PEERS") {
        venvs.push(PathBuf::from(p).join("venv"));
    }
    venvs.push(root.join(".peers/venv"));
    venvs.push(root.join("../peers/venv"));
    let found = venvs.iter().find_map(|venv| {
        let py = std::fs::read_dir(venv.join("lib"))
            .ok()?
            .filter_map(|e| e.ok())
            .find(|e| e.file_name().to_string_lossy().starts_with("python"))?;
        let d = py.path().join("site-packages/openvino/libs");
        d.is_dir().then_some(d)
    });
    if found.is_none() {
        skipped(&format!(
            "OpenVINO's C library not found (set OVPOT_OPENVINO_LIB or OVPOT_PEERS); looked in {venvs:?}"
        ));
    }
    found
}
