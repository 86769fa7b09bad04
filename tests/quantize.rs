//! DefaultQuantization on real fixtures: placement like NNCF's, accuracy with the engine.

mod common;
use ovpot::{Model, QuantConfig, Session};

fn fq_count(g: &ovpot::graph::Graph) -> usize {
    g.nodes.iter().filter(|n| n.op_type == "FakeQuantize").count()
}

fn quantize(name: &str, config: QuantConfig) -> Option<(std::path::PathBuf, Model, ovpot::Outcome)> {
    let dir = common::fixture(name)?;
    let model = Model::read(&dir.join("model.xml"), None).unwrap();
    let data = common::dataset(&dir.join("calib"), 300);
    let mut s = Session::new(&model, config).unwrap();
    let out = s.quantize(&data).unwrap();
    Some((dir, model, out))
}

fn check_like_nncf(name: &str, config: QuantConfig, metric_output: usize) {
    let Some((dir, model, out)) = quantize(name, config) else { return };
    let nncf = Model::read(&dir.join("nncf_int8.xml"), None).unwrap();
    let ours = fq_count(out.model.graph());
    assert_eq!(ours, fq_count(nncf.graph()), "{name}: FakeQuantize count differs from NNCF's");
    // Round trip through IR text keeps it loadable.
    let (xml, bin) = out.model.to_memory().unwrap();
    let back = Model::from_memory(xml.as_bytes(), &bin).unwrap();
    if dir.join("eval_labels.npy").exists() {
        let fp = common::engine_accuracy(&model, &dir, metric_output, 1000);
        let q = common::engine_accuracy(&back, &dir, metric_output, 1000);
        let n = common::engine_accuracy(&nncf, &dir, metric_output, 1000);
        eprintln!("{name}: fp32 {fp:.4} ours {q:.4} nncf {n:.4}");
        assert!(q >= n - 0.002, "{name}: accuracy {q} < NNCF {n}");
    }
}

#[test]
fn digits_mlp_like_nncf() {
    check_like_nncf("digits_mlp", common::nncf_like(QuantConfig::default()), 0);
}

#[test]
fn mnist_cnn_like_nncf() {
    check_like_nncf("mnist_cnn", common::nncf_like(QuantConfig::default()), 0);
}

#[test]
fn mtcnn_rnet_like_nncf() {
    check_like_nncf("mtcnn_rnet", common::nncf_like(QuantConfig::default()), 1);
}

#[test]
fn mtcnn_onet_like_nncf() {
    check_like_nncf("mtcnn_onet", common::nncf_like(QuantConfig::default()), 2);
}

#[test]
fn deterministic_bytes() {
    let Some((_, _, a)) = quantize("mnist_cnn", common::nncf_like(QuantConfig::default())) else { return };
    let Some((_, _, b)) = quantize("mnist_cnn", common::nncf_like(QuantConfig::default())) else { return };
    assert_eq!(a.model.to_memory().unwrap(), b.model.to_memory().unwrap());
}

/// Layer name → (op type, dequantized weights, bias).
type LayerConstants = std::collections::BTreeMap<String, (String, Vec<f64>, Option<Vec<f64>>)>;

/// Dequantized weights and bias of every Convolution/GroupConvolution/MatMul, by layer name.
fn layer_constants(m: &Model) -> LayerConstants {
    let g = m.graph();
    let plan = ovpot::engine::Plan::new(g).unwrap();
    let consumers = g.consumers();
    let mut out = std::collections::BTreeMap::new();
    for (id, n) in g.nodes.iter().enumerate() {
        if !matches!(n.op_type.as_str(), "Convolution" | "GroupConvolution" | "MatMul") {
            continue;
        }
        let Some(w) = plan.constant_value(n.inputs[1]) else { continue };
        let bias = consumers.get(&ovpot::graph::Outlet::new(id, 0)).and_then(|c| {
            let add = &g.nodes[c.first()?.0];
            if c.len() != 1 || add.op_type != "Add" {
                return None;
            }
            add.inputs.iter().find_map(|o| plan.constant_value(*o)).map(|b| b.to_f64_vec())
        });
        out.insert(n.name.clone(), (n.op_type.clone(), w.to_f64_vec(), bias));
    }
    out
}

/// Weights and biases equal NNCF's layer by layer: weight codes as OpenVINO's compression makes
/// them from NNCF's FakeQuantize limits (half-range first layer included), biases corrected on
/// Convolution and MatMul only (fast bias correction leaves GroupConvolution alone, as NNCF's
/// OpenVINO backend does). ppocr_cls (first layer with the saturation fix, depthwise
/// convolutions with biases) runs when ../shared is present.
fn check_constants_like_nncf(name: &str) {
    let Some((dir, fp, out)) = quantize(name, common::nncf_like(QuantConfig::default())) else { return };
    let nncf = Model::read(&dir.join("nncf_int8.xml"), None).unwrap();
    let (ours, theirs, orig) = (layer_constants(&out.model), layer_constants(&nncf), layer_constants(&fp));
    assert_eq!(ours.keys().collect::<Vec<_>>(), theirs.keys().collect::<Vec<_>>(), "{name}: layers");
    let rel = |a: &[f64], b: &[f64]| {
        let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-12);
        a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((x - y).abs())) / scale
    };
    for (layer, (op, w, b)) in &ours {
        let (_, nw, nb) = &theirs[layer];
        assert!(rel(w, nw) < 1e-6, "{name}/{layer}: weights differ from NNCF's by {}", rel(w, nw));
        if let (Some(b), Some(nb)) = (b, nb) {
            assert!(rel(b, nb) < 1e-4, "{name}/{layer}: bias differs from NNCF's by {}", rel(b, nb));
            if op == "GroupConvolution" {
                let ob = orig[layer].2.as_ref().unwrap();
                assert_eq!(b, ob, "{name}/{layer}: fast bias correction changed a GroupConvolution bias");
            }
        }
    }
}

#[test]
fn mnist_cnn_constants_like_nncf() {
    check_constants_like_nncf("mnist_cnn");
}

#[test]
fn mtcnn_onet_constants_like_nncf() {
    check_constants_like_nncf("mtcnn_onet");
}

#[test]
fn ppocr_cls_constants_like_nncf() {
    check_constants_like_nncf("ppocr_cls");
}
