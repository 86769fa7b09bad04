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
    check_like_nncf("digits_mlp", QuantConfig::default(), 0);
}

#[test]
fn mnist_cnn_like_nncf() {
    check_like_nncf("mnist_cnn", QuantConfig::default(), 0);
}

#[test]
fn mtcnn_rnet_like_nncf() {
    check_like_nncf("mtcnn_rnet", QuantConfig::default(), 1);
}

#[test]
fn mtcnn_onet_like_nncf() {
    check_like_nncf("mtcnn_onet", QuantConfig::default(), 2);
}

#[test]
fn deterministic_bytes() {
    let Some((_, _, a)) = quantize("mnist_cnn", QuantConfig::default()) else { return };
    let Some((_, _, b)) = quantize("mnist_cnn", QuantConfig::default()) else { return };
    assert_eq!(a.model.to_memory().unwrap(), b.model.to_memory().unwrap());
}
