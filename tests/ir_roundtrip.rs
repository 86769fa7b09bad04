//! Read → write → read gives the same graph, for every fixture model and NNCF's INT8 IR.

mod common;
use ovpot::graph::Graph;

fn assert_same(a: &Graph, b: &Graph, what: &str) {
    assert_eq!(a.nodes.len(), b.nodes.len(), "{what}: node count");
    // The writer numbers nodes in file order; b was read back in that order.
    let oa = ovpot::ir::writer::file_order(a).unwrap();
    let mut map = vec![0usize; a.nodes.len()];
    for (pos, x) in oa.iter().enumerate() {
        map[*x] = pos;
    }
    for &ia in &oa {
        let (na, nb) = (&a.nodes[ia], &b.nodes[map[ia]]);
        assert_eq!(na.name, nb.name, "{what}");
        assert_eq!(na.op_type, nb.op_type, "{what}: {}", na.name);
        assert_eq!(na.version, nb.version, "{what}: {}", na.name);
        let strip = |n: &ovpot::graph::Node| {
            let mut at = n.attrs.clone();
            at.0.retain(|(k, _)| k != "offset" && k != "size");
            at
        };
        assert_eq!(strip(na), strip(nb), "{what}: {}", na.name);
        assert_eq!(na.outputs, nb.outputs, "{what}: {}", na.name);
        assert_eq!(na.input_ports, nb.input_ports, "{what}: {}", na.name);
        assert_eq!(na.rt_info, nb.rt_info, "{what}: {}", na.name);
        assert_eq!(na.layer_attrs, nb.layer_attrs, "{what}: {}", na.name);
        assert_eq!(na.value, nb.value, "{what}: {}", na.name);
        let ia_in: Vec<_> = na.inputs.iter().map(|o| (map[o.node], o.port)).collect();
        let ib_in: Vec<_> = nb.inputs.iter().map(|o| (o.node, o.port)).collect();
        assert_eq!(ia_in, ib_in, "{what}: {}", na.name);
    }
    assert_eq!(a.rt_info, b.rt_info, "{what}: model rt_info");
    assert_eq!(a.name, b.name);
}

fn round_trip(name: &str) {
    let Some(dir) = common::fixture(name) else { return };
    for file in ["model.xml", "nncf_int8.xml"] {
        let a = ovpot::ir::read_model(&dir.join(file), None).unwrap();
        let (xml, bin) = ovpot::ir::serialize(&a).unwrap();
        let b = ovpot::ir::read_model_from_memory(xml.as_bytes(), &bin).unwrap();
        assert_same(&a, &b, &format!("{name}/{file}"));
        // a second pass is a fixed point
        let (xml2, bin2) = ovpot::ir::serialize(&b).unwrap();
        assert_eq!(xml, xml2, "{name}/{file}: serialization is not stable");
        assert_eq!(bin, bin2);
    }
}

#[test]
fn digits_mlp() {
    round_trip("digits_mlp");
}
#[test]
fn mnist_cnn() {
    round_trip("mnist_cnn");
}
#[test]
fn mtcnn_rnet() {
    round_trip("mtcnn_rnet");
}
#[test]
fn mtcnn_onet() {
    round_trip("mtcnn_onet");
}
#[test]
fn ppocr_cls() {
    round_trip("ppocr_cls");
}
#[test]
fn mobilenet_v2() {
    round_trip("mobilenet_v2");
}
#[test]
fn minilm_l6() {
    round_trip("minilm_l6");
}
