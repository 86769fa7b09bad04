//! Read → write → read gives the same graph, for every fixture model and NNCF's INT8 IR, and for
//! hand-made IRs: every element type, IR v10, range dims, shared constants.

mod common;
use ovpot::graph::{Dim, Graph, PartialShape};
use ovpot::tensor::{ElementType, Tensor};
use ovpot::Model;

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

// ---------------------------------------------------------------- hand-made IRs

fn data_dir(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

fn const_value<'a>(g: &'a Graph, name: &str) -> &'a Tensor {
    let id = g.find_node(name).unwrap_or_else(|| panic!("no layer {name}"));
    g.nodes[id].value.as_deref().unwrap_or_else(|| panic!("{name} has no value"))
}

/// The bytes a Const occupies in `bin`, by its offset and size attributes.
fn const_bytes<'a>(g: &Graph, bin: &'a [u8], name: &str) -> &'a [u8] {
    let n = &g.nodes[g.find_node(name).unwrap()];
    let at = |k: &str| n.attrs.get(k).unwrap().parse::<usize>().unwrap();
    &bin[at("offset")..at("offset") + at("size")]
}

/// Asserts the Const `name` is held as the `Tensor::$var` variant with exactly `want`.
macro_rules! expect_values {
    ($g:expr, $name:expr, $var:ident, $want:expr) => {
        match const_value($g, $name) {
            Tensor::$var(a) => assert_eq!(a.iter().copied().collect::<Vec<_>>(), $want, "{}", $name),
            t => panic!("{} is held as {}", $name, t.element_type()),
        }
    };
}

/// The values written into tests/data/element_types/model.bin (OpenVINO 2026.4 reads the same
/// values from it; i4/u4 are packed two per byte, low nibble first).
fn check_element_type_values(g: &Graph) {
    use half::{bf16, f16};
    expect_values!(g, "c_f32", F32, [1.5f32, -2.25, 1e-40, 3.0e38]);
    let f16s = [1.0f32, -0.5, 65504.0, 6.103_515_6e-5].map(f16::from_f32);
    expect_values!(g, "c_f16", F16, f16s);
    expect_values!(g, "c_bf16", BF16, [1.0f32, -2.5, 256.0, 0.0078125].map(bf16::from_f32));
    expect_values!(g, "c_f64", F64, [0.1f64, -1e300, 5e-324, 2.0]);
    // i4/u4 are held unpacked in i8/u8.
    expect_values!(g, "c_i4", I8, [-8i8, -1, 0, 7, 3]);
    expect_values!(g, "c_u4", U8, [0u8, 15, 1, 8, 9]);
    expect_values!(g, "c_i8", I8, [-128i8, -1, 0, 127]);
    expect_values!(g, "c_u8", U8, [0u8, 1, 128, 255]);
    expect_values!(g, "c_i16", I16, [i16::MIN, -1, 0, i16::MAX]);
    expect_values!(g, "c_u16", U16, [0u16, 1, 32768, u16::MAX]);
    expect_values!(g, "c_i32", I32, [i32::MIN, -1, 0, i32::MAX]);
    expect_values!(g, "c_u32", U32, [0u32, 1, 1 << 31, u32::MAX]);
    expect_values!(g, "c_i64", I64, [i64::MIN, -1, 0, i64::MAX]);
    expect_values!(g, "c_u64", U64, [0u64, 1, 1 << 63, u64::MAX]);
    expect_values!(g, "c_boolean", Bool, [true, false, true, true]);
}

#[test]
fn every_element_type_reads_writes_and_reads_back_bit_exact() {
    let dir = data_dir("element_types");
    let a = Model::read(&dir.join("model.xml"), None).unwrap();
    check_element_type_values(a.graph());
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("m.xml");
    a.save(&out, None).unwrap();
    let b = Model::read(&out, None).unwrap();
    check_element_type_values(b.graph());
    let (bin_a, bin_b) =
        (std::fs::read(dir.join("model.bin")).unwrap(), std::fs::read(tmp.path().join("m.bin")).unwrap());
    let mut seen = vec![];
    for n in a.graph().nodes.iter().filter(|n| n.is_const()) {
        let nb = &b.graph().nodes[b.graph().find_node(&n.name).unwrap()];
        assert_eq!(n.const_type, nb.const_type, "{}", n.name);
        assert_eq!(n.outputs, nb.outputs, "{}", n.name);
        assert_eq!(const_bytes(a.graph(), &bin_a, &n.name), const_bytes(b.graph(), &bin_b, &n.name), "{}", n.name);
        seen.push(n.const_type.unwrap());
    }
    // One Const per element type, so none was skipped.
    for et in ElementType::ALL {
        assert!(seen.contains(&et), "no Const of type {et}");
    }
}

/// Runs every sample of a fixture's ref inputs through a model, one at a time.
fn run_ref(m: &Model, dir: &std::path::Path) -> Vec<Vec<f64>> {
    let plan = m.plan().unwrap();
    let inputs = common::read_inputs(&dir.join("ref/in"));
    (0..inputs[0].1.shape()[0]).map(|i| plan.run(&common::sample(&inputs, i)).unwrap()[0].to_f64_vec()).collect()
}

#[test]
fn ir_v10_reads_and_runs_like_v11() {
    let Some(dir) = common::fixture("digits_mlp") else { return };
    let v10 = Model::read(&data_dir("ir_v10").join("digits_mlp.xml"), Some(&dir.join("model.bin"))).unwrap();
    let v11 = Model::read(&dir.join("model.xml"), None).unwrap();
    assert_eq!(v10.graph().ir_version, 10);
    // Without tensor names the input goes by the Parameter's name and the output by its
    // producer's, as OpenVINO names v10 inputs and outputs.
    assert_eq!(v10.inputs()[0].name, "input");
    assert_eq!(v10.outputs()[0].name, "Add_21");
    assert_eq!(v10.outputs()[0].shape, v11.outputs()[0].shape);
    let (a, b) = (run_ref(&v10, &dir), run_ref(&v11, &dir));
    assert_eq!(a.len(), 4);
    assert_eq!(a, b);
}

#[test]
fn range_and_dynamic_dims_survive_a_round_trip_and_run() {
    let Some(dir) = common::fixture("mnist_cnn") else { return };
    let xml = std::fs::read_to_string(dir.join("model.xml")).unwrap();
    let bin = std::fs::read(dir.join("model.bin")).unwrap();
    let dims = |d: [&str; 4]| d.map(|x| format!("\n\t\t\t\t\t<dim>{x}</dim>")).concat();
    let param = |shape: &str, d| {
        format!(
            "<data shape=\"{shape}\" element_type=\"f32\" />\n\t\t\t<output>\n\t\t\t\t<port id=\"0\" precision=\"FP32\" names=\"input\">{d}"
        )
    };
    let old = param("?,1,28,28", dims(["-1", "1", "28", "28"]));
    assert!(xml.contains(&old), "mnist_cnn's Parameter changed");
    // Batch 1 to 8, height and width unknown.
    let edited = xml.replacen(&old, &param("1..8,1,?,?", dims(["1..8", "1", "-1", "-1"])), 1);
    let want = PartialShape(Some(vec![Dim::Range(1, 8), Dim::Static(1), Dim::Dynamic, Dim::Dynamic]));
    let a = Model::from_memory(edited.as_bytes(), &bin).unwrap();
    assert_eq!(a.inputs()[0].shape, want);
    let (xml2, bin2) = a.to_memory().unwrap();
    let b = Model::from_memory(xml2.as_bytes(), &bin2).unwrap();
    assert_eq!(b.inputs()[0].shape, want);
    let p = b.graph().parameters()[0];
    assert_eq!(b.graph().nodes[p].attrs.get("shape"), Some("1..8,1,?,?"));

    // Batch 2 runs and gives the reference rows; batch 9 is outside the range.
    let x = &common::read_inputs(&dir.join("ref/in"))[0].1;
    let x2 = ovpot::map_tensor!(x, a => a.slice_axis(ndarray::Axis(0), ndarray::Slice::from(0..2)).to_owned());
    let plan = b.plan().unwrap();
    let y = plan.run(&[("input".into(), x2)]).unwrap();
    assert_eq!(y[0].shape(), [2, 10]);
    let reference = ovpot::npy::read_npy(&dir.join("ref/out0.npy")).unwrap().to_f64_vec();
    let tol = 1e-4 * reference.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (got, want) in y[0].to_f64_vec().iter().zip(&reference[..20]) {
        assert!((got - want).abs() <= tol, "{got} vs {want}");
    }
    let x9 = Tensor::zeros(ElementType::F32, &[9, 1, 28, 28]).unwrap();
    let e = plan.run(&[("input".into(), x9)]).unwrap_err();
    assert_eq!(e.kind(), "mismatch", "{e}");
}

#[test]
fn identical_constants_are_stored_once_and_packed() {
    // a: 3 bytes, so what follows needs padding; b and c: the same 16 bytes, at unaligned offsets.
    let layer = |id: usize, name: &str, data: &str, prec: &str, n: usize| {
        format!(
            "<layer id=\"{id}\" name=\"{name}\" type=\"Const\" version=\"opset1\"><data {data} /><output><port id=\"0\" precision=\"{prec}\"><dim>{n}</dim></port></output></layer>\
             <layer id=\"{}\" name=\"r_{name}\" type=\"Result\" version=\"opset1\"><input><port id=\"0\" precision=\"{prec}\"><dim>{n}</dim></port></input></layer>",
            id + 1
        )
    };
    let layers = [
        layer(0, "a", "element_type=\"u8\" shape=\"3\" offset=\"0\" size=\"3\"", "U8", 3),
        layer(2, "b", "element_type=\"f32\" shape=\"4\" offset=\"3\" size=\"16\"", "FP32", 4),
        layer(4, "c", "element_type=\"f32\" shape=\"4\" offset=\"19\" size=\"16\"", "FP32", 4),
    ];
    let edges: String = (0..3)
        .map(|i| format!("<edge from-layer=\"{}\" from-port=\"0\" to-layer=\"{}\" to-port=\"0\" />", 2 * i, 2 * i + 1))
        .collect();
    let xml =
        format!("<net name=\"dup\" version=\"11\"><layers>{}</layers><edges>{edges}</edges></net>", layers.concat());
    let mut bin = vec![7u8, 8, 9];
    for _ in 0..2 {
        bin.extend([1.0f32, -2.0, 3.5, 0.25].iter().flat_map(|v| v.to_le_bytes()));
    }
    let m = Model::from_memory(xml.as_bytes(), &bin).unwrap();
    let (xml2, bin2) = m.to_memory().unwrap();
    let g = Model::from_memory(xml2.as_bytes(), &bin2).unwrap().graph().clone();
    let offset =
        |name: &str| g.nodes[g.find_node(name).unwrap()].attrs.get("offset").unwrap().parse::<usize>().unwrap();
    // Constants are packed back to back, as OpenVINO's serializer writes them.
    for name in ["a", "b", "c"] {
        assert_eq!(const_value(&g, name), const_value(m.graph(), name), "{name}");
    }
    assert_eq!(offset("b"), offset("c"));
    // 3 bytes of a, one copy of b/c, no padding.
    assert_eq!(bin2.len(), 3 + 16);
}
