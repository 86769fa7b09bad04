//! Hostile inputs: ovpot runs inside other people's processes, so every bad model, sample,
//! callback or path must come back as a clean `Error` of the right kind with a message that says
//! what to fix, never a panic or garbage output.

mod common;
use ovpot::api::{Hooks, Stage};
use ovpot::tensor::{ElementType, Tensor};
use ovpot::{Dataset, Error, InMemoryDataset, Metric, Model, QuantConfig, Session};
use std::path::Path;
use std::sync::{Arc, Mutex};

// ---------------------------------------------------------------- small IR builder

/// `<port>` with dims.
fn port(id: usize, prec: &str, dims: &[&str]) -> String {
    let dims: String = dims.iter().map(|d| format!("<dim>{d}</dim>")).collect();
    format!("<port id=\"{id}\" precision=\"{prec}\">{dims}</port>")
}

/// `<layer>` with `data` attributes and ports.
fn layer(id: usize, name: &str, ty: &str, version: &str, data: &str, ins: &[String], outs: &[String]) -> String {
    let mut s = format!("<layer id=\"{id}\" name=\"{name}\" type=\"{ty}\" version=\"{version}\">");
    if !data.is_empty() {
        s += &format!("<data {data} />");
    }
    if !ins.is_empty() {
        s += &format!("<input>{}</input>", ins.concat());
    }
    if !outs.is_empty() {
        s += &format!("<output>{}</output>", outs.concat());
    }
    s + "</layer>\n"
}

fn net(layers: &[String], edges: &[(usize, usize, usize, usize)]) -> String {
    let edges: String = edges
        .iter()
        .map(|(a, b, c, d)| format!("<edge from-layer=\"{a}\" from-port=\"{b}\" to-layer=\"{c}\" to-port=\"{d}\" />\n"))
        .collect();
    format!("<?xml version=\"1.0\"?>\n<net name=\"hostile\" version=\"11\">\n<layers>\n{}</layers>\n<edges>\n{edges}</edges>\n</net>\n", layers.concat())
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// x[1,4] + c[4] → `op` (type, version) → Result: the smallest model with a constant and a
/// middle op to make hostile.
fn add_then(op: &str, version: &str) -> String {
    let f = |d: &[&str]| port(0, "FP32", d);
    net(
        &[
            layer(0, "x", "Parameter", "opset1", "shape=\"1,4\" element_type=\"f32\"", &[], &[f(&["1", "4"])]),
            layer(
                1,
                "c",
                "Const",
                "opset1",
                "element_type=\"f32\" shape=\"4\" offset=\"0\" size=\"16\"",
                &[],
                &[f(&["4"])],
            ),
            layer(
                2,
                "add",
                "Add",
                "opset1",
                "",
                &[f(&["1", "4"]), port(1, "FP32", &["4"])],
                &[port(2, "FP32", &["1", "4"])],
            ),
            layer(3, "mid", op, version, "", &[f(&["1", "4"])], &[port(1, "FP32", &["1", "4"])]),
            layer(4, "out", "Result", "opset1", "", &[f(&["1", "4"])], &[]),
        ],
        &[(0, 0, 2, 0), (1, 0, 2, 1), (2, 2, 3, 0), (3, 1, 4, 0)],
    )
}

fn read_mem(xml: &str, bin: &[u8]) -> ovpot::Result<Model> {
    Model::from_memory(xml.as_bytes(), bin)
}

/// Asserts `r` failed with `kind` and a message containing every `needles` entry.
#[track_caller]
fn assert_err<T>(r: ovpot::Result<T>, kind: &str, needles: &[&str]) -> Error {
    let e = match r {
        Ok(_) => panic!("expected a {kind} error mentioning {needles:?}, got Ok"),
        Err(e) => e,
    };
    let msg = e.to_string();
    assert_eq!(e.kind(), kind, "wrong kind for: {msg}");
    for n in needles {
        assert!(msg.contains(n), "message lacks '{n}': {msg}");
    }
    e
}

fn digits() -> Option<(std::path::PathBuf, String, Vec<u8>)> {
    let dir = common::fixture("digits_mlp")?;
    let xml = std::fs::read_to_string(dir.join("model.xml")).unwrap();
    let bin = std::fs::read(dir.join("model.bin")).unwrap();
    Some((dir, xml, bin))
}

// ---------------------------------------------------------------- weights (.bin)

#[test]
fn truncated_bin_names_the_constant_and_sizes() {
    let Some((_, xml, bin)) = digits() else { return };
    let e = assert_err(read_mem(&xml, &bin[..100]), "parse", &["Constant_3", "runs past the end", "100 bytes"]);
    eprintln!("{e}");
    assert_err(read_mem(&xml, &[]), "parse", &["runs past the end"]);
}

#[test]
fn truncated_bin_file_on_disk() {
    let Some((dir, _, bin)) = digits() else { return };
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(dir.join("model.xml"), tmp.path().join("m.xml")).unwrap();
    std::fs::write(tmp.path().join("m.bin"), &bin[..bin.len() - 1]).unwrap();
    assert_err(Model::read(&tmp.path().join("m.xml"), None), "parse", &["runs past the end", "m.bin"]);
    // Missing .bin: an I/O error naming the file.
    std::fs::remove_file(tmp.path().join("m.bin")).unwrap();
    assert_err(Model::read(&tmp.path().join("m.xml"), None), "io", &["m.bin"]);
}

#[test]
fn oversized_bin_is_accepted_like_openvino() {
    let Some((_, xml, mut bin)) = digits() else { return };
    bin.extend(std::iter::repeat_n(0xAB, 4096));
    let m = read_mem(&xml, &bin).unwrap();
    m.plan().unwrap();
}

#[test]
fn garbled_bin_gives_a_model_that_fails_cleanly_or_runs_finite() {
    let Some((dir, xml, bin)) = digits() else { return };
    // Deterministic pseudo-random bytes: many decode to NaN/Inf/huge floats.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let garbled: Vec<u8> = (0..bin.len())
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let m = read_mem(&xml, &garbled).unwrap();
    let data = common::dataset(&dir.join("calib"), 20);
    let r = Session::new(&m, QuantConfig::default()).unwrap().quantize(&data);
    check_clean_or_finite(r, "garbled weights");
}

/// Quantizing a model with non-finite numbers must either refuse with a clean error or give
/// a model whose quantization parameters are all finite.
fn check_clean_or_finite(r: ovpot::Result<ovpot::Outcome>, what: &str) {
    match r {
        Err(e) => {
            eprintln!("{what}: {} error: {e}", e.kind());
            assert!(matches!(e.kind(), "invalid_argument" | "mismatch" | "unsupported"), "{what}: {e}");
        }
        Ok(out) => {
            for fq in &out.report.fake_quantize {
                assert!(
                    fq.input_low.is_finite() && fq.input_high.is_finite(),
                    "{what}: FakeQuantize {} got range [{}, {}]",
                    fq.name,
                    fq.input_low,
                    fq.input_high
                );
            }
            // Every FakeQuantize limit and every dequantization scale in the written model is finite.
            let g = out.model.graph();
            let is_int_const = |i: usize| {
                let n = &g.nodes[i];
                n.is_const() && n.value.as_ref().is_some_and(|v| !v.element_type().is_float())
            };
            for c in &g.nodes {
                let limits: Vec<usize> = match c.op_type.as_str() {
                    "FakeQuantize" => c.inputs[1..].iter().map(|o| o.node).collect(),
                    // Multiply(Convert(int8 const), scale) is a compressed weight.
                    "Multiply"
                        if c.inputs.iter().any(|o| {
                            g.nodes[o.node].op_type == "Convert"
                                && g.nodes[o.node].inputs.iter().any(|s| is_int_const(s.node))
                                || g.nodes[o.node].op_type == "Subtract"
                        }) =>
                    {
                        c.inputs.iter().map(|o| o.node).collect()
                    }
                    _ => continue,
                };
                for i in limits {
                    if let Some(v) = g.nodes[i].value.as_ref() {
                        let v = v.to_f64_vec();
                        assert!(
                            v.iter().all(|x| x.is_finite()),
                            "{what}: {} feeding {} is not finite",
                            g.nodes[i].name,
                            c.name
                        );
                    }
                }
            }
            eprintln!("{what}: quantized, {} FQ all finite", out.report.fake_quantize.len());
        }
    }
}

// ---------------------------------------------------------------- XML

#[test]
fn xml_not_utf8_or_not_xml() {
    assert_err(Model::from_memory(b"<net version=\"11\">\xff\xfe</net>", &[]), "parse", &["UTF-8"]);
    assert_err(read_mem("this is not xml", &[]), "parse", &[]);
    assert_err(read_mem("<net version=\"11\"><layers><layer", &[]), "parse", &[]);
    assert_err(read_mem("", &[]), "parse", &[]);
    let Some((_, xml, bin)) = digits() else { return };
    // Cut anywhere in the middle: always a parse error, never a panic.
    for cut in (1..xml.len()).step_by(97) {
        if !xml.is_char_boundary(cut) {
            continue;
        }
        let r = read_mem(&xml[..cut], &bin);
        assert!(r.is_err(), "truncated at {cut} parsed");
    }
}

#[test]
fn wrong_root_and_ir_versions() {
    assert_err(read_mem("<model version=\"11\"><layers/></model>", &[]), "parse", &["<model>", "<net>"]);
    assert_err(read_mem("<net version=\"7\"><layers/></net>", &[]), "unsupported", &["IR version", "7"]);
    assert_err(read_mem("<net><layers/></net>", &[]), "unsupported", &["missing"]);
    assert_err(read_mem("<net version=\"11\"></net>", &[]), "parse", &["<layers>"]);
}

#[test]
fn wrong_element_types() {
    let ok = add_then("Relu", "opset1");
    read_mem(&ok, &f32_bytes(&[1.0; 4])).unwrap();
    // Unknown port precision.
    let bad = ok.replacen("precision=\"FP32\"", "precision=\"FP99\"", 1);
    assert_err(read_mem(&bad, &f32_bytes(&[1.0; 4])), "parse", &["FP99", "name='x'"]);
    // Unknown Const element type.
    let bad = ok.replace("element_type=\"f32\" shape=\"4\"", "element_type=\"q7\" shape=\"4\"");
    assert_err(read_mem(&bad, &f32_bytes(&[1.0; 4])), "parse", &["q7", "name='c'"]);
    // Unknown Parameter element type.
    let bad = ok.replace("shape=\"1,4\" element_type=\"f32\"", "shape=\"1,4\" element_type=\"complex\"");
    assert_err(read_mem(&bad, &f32_bytes(&[1.0; 4])), "parse", &["complex", "name='x'"]);
    // An f32 output wired into an i64 input.
    let bad = ok.replace(&port(1, "FP32", &["4"]), &port(1, "I64", &["4"]));
    assert_err(read_mem(&bad, &f32_bytes(&[1.0; 4])), "mismatch", &["'c'", "'add'", "i64"]);
    // Wrong element nesting: a <layer> with a text body where ports belong.
    let bad = ok.replace("<input>", "<input>garbage<dim>4</dim>");
    let r = read_mem(&bad, &f32_bytes(&[1.0; 4]));
    if let Err(e) = &r {
        eprintln!("text inside <input>: {e}");
    }
}

#[test]
fn negative_and_huge_dims() {
    let ok = add_then("Relu", "opset1");
    let w = f32_bytes(&[1.0; 4]);
    // Negative dims other than -1 are not dims.
    let bad = ok.replacen("<dim>4</dim>", "<dim>-5</dim>", 1);
    assert_err(read_mem(&bad, &w), "parse", &["-5", "name='x'"]);
    let bad = ok.replace("shape=\"4\" offset", "shape=\"-4\" offset");
    assert_err(read_mem(&bad, &w), "parse", &["-4", "name='c'"]);
    // A Const whose element count overflows, or whose bytes would be absurd.
    let bad = ok.replace("shape=\"4\" offset", "shape=\"4611686018427387904,4611686018427387904\" offset");
    assert_err(read_mem(&bad, &w), "parse", &["name='c'"]);
    let bad = ok.replace("shape=\"4\" offset", "shape=\"4611686018427387904\" offset");
    assert_err(read_mem(&bad, &w), "parse", &["name='c'"]);
    // Size and offset near u64::MAX.
    let bad = ok.replace("offset=\"0\" size=\"16\"", "offset=\"18446744073709551615\" size=\"16\"");
    assert_err(read_mem(&bad, &w), "parse", &["offset", "name='c'"]);
    let bad = ok.replace("offset=\"0\" size=\"16\"", "offset=\"0\" size=\"18446744073709551615\"");
    assert_err(read_mem(&bad, &w), "parse", &["name='c'"]);
    let bad = ok.replace("offset=\"0\" size=\"16\"", "offset=\"0\" size=\"99999999999999999999999\"");
    assert_err(read_mem(&bad, &w), "parse", &["size", "name='c'"]);
}

#[test]
fn huge_parameter_shape_is_refused_at_run_not_allocated() {
    let ok = add_then("Relu", "opset1");
    let w = f32_bytes(&[1.0; 4]);
    let huge =
        ok.replace("shape=\"1,4\"", "shape=\"1000000000000,4\"").replace("<dim>1</dim>", "<dim>1000000000000</dim>");
    let m = read_mem(&huge, &w).unwrap();
    let plan = m.plan().unwrap();
    let x = Tensor::f32_from_vec(&[1, 4], vec![0.0; 4]).unwrap();
    assert_err(plan.run(&[("x".into(), x)]), "mismatch", &["x"]);
}

#[test]
fn shape_mismatch_between_layers() {
    let ok = add_then("Relu", "opset1");
    // Relu says its input is [1,5] while Add produces [1,4].
    let bad = ok.replacen(
        "name=\"mid\" type=\"Relu\" version=\"opset1\"><input><port id=\"0\" precision=\"FP32\"><dim>1</dim><dim>4</dim>",
        "name=\"mid\" type=\"Relu\" version=\"opset1\"><input><port id=\"0\" precision=\"FP32\"><dim>1</dim><dim>5</dim>",
        1,
    );
    assert_ne!(bad, ok);
    assert_err(read_mem(&bad, &f32_bytes(&[1.0; 4])), "mismatch", &["'add'", "'mid'"]);
    // Rank mismatch.
    let bad = ok.replacen(
        "name=\"mid\" type=\"Relu\" version=\"opset1\"><input><port id=\"0\" precision=\"FP32\"><dim>1</dim><dim>4</dim>",
        "name=\"mid\" type=\"Relu\" version=\"opset1\"><input><port id=\"0\" precision=\"FP32\"><dim>4</dim>",
        1,
    );
    assert_err(read_mem(&bad, &f32_bytes(&[1.0; 4])), "mismatch", &["'add'", "'mid'"]);
}

#[test]
fn dangling_duplicate_and_missing_edges() {
    let ok = add_then("Relu", "opset1");
    let w = f32_bytes(&[1.0; 4]);
    let add = "layer id=2 name='add' type=Add (opset1)";
    let bad = ok.replace("from-layer=\"3\"", "from-layer=\"42\"");
    let out = "layer id=4 name='out' type=Result (opset1)";
    assert_err(read_mem(&bad, &w), "parse", &["<memory>", "dangling edge", "ends at", out, "no layer has id 42"]);
    let bad = ok.replace("to-layer=\"4\"", "to-layer=\"42\"");
    let mid = "layer id=3 name='mid' type=Relu (opset1)";
    assert_err(read_mem(&bad, &w), "parse", &["dangling edge", "starts at", mid, "no layer has id 42"]);
    let bad = ok.replace("to-port=\"1\"", "to-port=\"7\"");
    assert_err(read_mem(&bad, &w), "parse", &[add, "has no input port 7"]);
    let bad = ok.replace("<edge from-layer=\"1\" from-port=\"0\" to-layer=\"2\" to-port=\"1\" />", "");
    assert_err(read_mem(&bad, &w), "parse", &[add, "input port 1 has no incoming edge"]);
    let bad = ok.replace("</edges>", "<edge from-layer=\"0\" from-port=\"0\" to-layer=\"2\" to-port=\"0\" /></edges>");
    let x = "layer id=0 name='x' type=Parameter (opset1)";
    assert_err(read_mem(&bad, &w), "parse", &["duplicate edge", "input port 0 of", add, "already has an edge from", x]);
    let bad = ok.replace("<layer id=\"4\"", "<layer id=\"3\"");
    assert_err(read_mem(&bad, &w), "parse", &["duplicate layer id 3"]);
    let bad = ok.replace("<layer id=\"4\"", "<layer id=\"minus one\"");
    assert_err(read_mem(&bad, &w), "parse", &["minus one"]);
}

#[test]
fn cycles_are_refused() {
    // x → a(Add, x, b) → b(Relu) → a: a cycle through a and b, plus a Result.
    let p = |id, d: &[&str]| port(id, "FP32", d);
    let xml = net(
        &[
            layer(0, "x", "Parameter", "opset1", "shape=\"1,4\" element_type=\"f32\"", &[], &[p(0, &["1", "4"])]),
            layer(1, "a", "Add", "opset1", "", &[p(0, &["1", "4"]), p(1, &["1", "4"])], &[p(2, &["1", "4"])]),
            layer(2, "b", "Relu", "opset1", "", &[p(0, &["1", "4"])], &[p(1, &["1", "4"])]),
            layer(3, "out", "Result", "opset1", "", &[p(0, &["1", "4"])], &[]),
        ],
        &[(0, 0, 1, 0), (2, 1, 1, 1), (1, 2, 2, 0), (2, 1, 3, 0)],
    );
    // Both layers on the cycle, in edge order, and not the Result downstream of it.
    let a = "layer id=1 name='a' type=Add (opset1)";
    let b = "layer id=2 name='b' type=Relu (opset1)";
    let e = assert_err(read_mem(&xml, &[]), "parse", &["cycle", &format!("{b} -> {a} -> back to {b}")]);
    let msg = e.to_string();
    assert!(!msg.contains("'out'") && !msg.contains("invalid argument"), "{msg}");
    // A self loop.
    let xml = net(
        &[
            layer(0, "x", "Parameter", "opset1", "shape=\"1,4\" element_type=\"f32\"", &[], &[p(0, &["1", "4"])]),
            layer(1, "self", "Add", "opset1", "", &[p(0, &["1", "4"]), p(1, &["1", "4"])], &[p(2, &["1", "4"])]),
            layer(2, "out", "Result", "opset1", "", &[p(0, &["1", "4"])], &[]),
        ],
        &[(0, 0, 1, 0), (1, 2, 1, 1), (1, 2, 2, 0)],
    );
    let me = "layer id=1 name='self' type=Add (opset1)";
    assert_err(read_mem(&xml, &[]), "parse", &["cycle", &format!("{me} -> back to {me}")]);
}

#[test]
fn unknown_ops_and_opsets_are_all_listed_by_plan() {
    let w = f32_bytes(&[1.0; 4]);
    let m = read_mem(&add_then("FrobnicateV2", "opset1"), &w).unwrap();
    assert_err(m.plan(), "unsupported", &["FrobnicateV2", "'mid'"]);
    // An opset OpenVINO does not have is refused at read, as OpenVINO's reader refuses it.
    for bad in ["opset99", "opset18", "opset0", "experimental", "extension", ""] {
        assert_err(read_mem(&add_then("Relu", bad), &w), "parse", &["unknown opset", "'mid'"]);
    }
    // A known opset where the engine lacks that version of the op: read, refused by the plan.
    let m = read_mem(&add_then("Relu", "opset8"), &w).unwrap();
    assert_err(m.plan(), "unsupported", &["Relu", "opset8", "'mid'"]);
    // Two unknown ops: both are named in one error.
    let xml = add_then("FrobnicateV2", "opset1")
        .replace("type=\"Add\" version=\"opset1\"", "type=\"Add\" version=\"opset9\"");
    let m = read_mem(&xml, &w).unwrap();
    let e = assert_err(m.plan(), "unsupported", &["FrobnicateV2", "opset9", "id=2 'add'", "id=3 'mid'", "2 op type"]);
    eprintln!("{e}");
    // Seven layers of one missing type: every one is listed, with its id.
    let mut layers = vec![layer(
        0,
        "x",
        "Parameter",
        "opset1",
        "shape=\"1,4\" element_type=\"f32\"",
        &[],
        &[port(0, "FP32", &["1", "4"])],
    )];
    let mut edges = vec![];
    for i in 1..=7 {
        let f = |id| port(id, "FP32", &["1", "4"]);
        layers.push(layer(i, &format!("frob{i}"), "FrobnicateV2", "opset1", "", &[f(0)], &[f(1)]));
        edges.push((i - 1, if i == 1 { 0 } else { 1 }, i, 0));
    }
    layers.push(layer(8, "out", "Result", "opset1", "", &[port(0, "FP32", &["1", "4"])], &[]));
    edges.push((7, 1, 8, 0));
    let m7 = read_mem(&net(&layers, &edges), &[]).unwrap();
    let names: Vec<String> = (1..=7).map(|i| format!("id={i} 'frob{i}'")).collect();
    let mut needles: Vec<&str> = names.iter().map(String::as_str).collect();
    needles.push("used by 7 layer(s)");
    let e = assert_err(m7.plan(), "unsupported", &needles);
    assert!(!e.to_string().contains("more"), "{e}");
    // A session refuses the model the same way instead of failing midway.
    let data =
        InMemoryDataset { samples: vec![vec![("x".into(), Tensor::f32_from_vec(&[1, 4], vec![0.5; 4]).unwrap())]] };
    let r = Session::new(&m, QuantConfig::default()).unwrap().quantize(&data);
    assert_err(r, "unsupported", &["FrobnicateV2"]);
}

#[test]
fn output_port_precision_is_read_as_openvino_reads_it() {
    let w = f32_bytes(&[1.0; 4]);
    let base = add_then("Relu", "opset1");
    let mid_out = "<port id=\"1\" precision=\"FP32\"><dim>1</dim><dim>4</dim></port></output></layer>\n<layer id=\"4\"";
    assert!(base.contains(mid_out));
    // OpenVINO requires an output port's precision and reads it case-sensitively.
    for (prec, ok) in [(None, false), (Some("DYNAMIC"), false), (Some("fp32"), false), (Some("dynamic"), true)] {
        let attr = prec.map(|p| format!(" precision=\"{p}\"")).unwrap_or_default();
        let xml = base.replace(mid_out, &mid_out.replace(" precision=\"FP32\"", &attr));
        match read_mem(&xml, &w) {
            Err(e) => {
                assert!(!ok, "{prec:?} refused: {e}");
                assert!(e.to_string().contains("'mid'") && e.to_string().contains("precision"), "{e}");
            }
            Ok(m) => {
                assert!(ok, "{prec:?} accepted");
                // Written back with a precision OpenVINO reads ("dynamic", never left out).
                let (text, _) = m.to_memory().unwrap();
                assert!(text.contains("precision=\"dynamic\""), "{text}");
                assert!(!text.contains("<port id=\"1\">"), "{text}");
                read_mem(&text, &w).unwrap();
            }
        }
    }
    // Input ports: OpenVINO ignores their precision; so does ovpot where it is missing.
    let xml = base.replacen("<input><port id=\"0\" precision=\"FP32\">", "<input><port id=\"0\">", 1);
    read_mem(&xml, &w).unwrap();
}

#[test]
fn absurd_weights_leave_their_layer_in_floating_point() {
    // Bit rot: finite weights of 1e36. OpenVINO cannot compile an int8 layer over them (its
    // dequantization scale is out of range), so the layer stays FP32 and the log says why.
    let Some((dir, m)) = digits_with_weights(|w| w[5] = 1e36) else { return };
    let data = common::dataset(&dir.join("calib"), 20);
    let out = Session::new(&m, QuantConfig::default()).unwrap().quantize(&data).unwrap();
    let r = &out.report;
    let ig = r.ignored.iter().find(|i| i.reason.contains("1e36")).expect("the layer is reported as left out");
    assert!(r.warnings.iter().any(|w| w.contains(&ig.name) && w.contains("floating point")), "{:?}", r.warnings);
    assert!(!r.fake_quantize.is_empty(), "other layers are still quantized");
    for bad in [f32::NAN, f32::INFINITY] {
        let Some((_, m)) = digits_with_weights(|w| w[5] = bad) else { return };
        let out = Session::new(&m, QuantConfig::default()).unwrap().quantize(&data).unwrap();
        assert!(out.report.ignored.iter().any(|i| i.reason.contains("weights hold")), "{:?}", out.report.ignored);
    }
}

// ---------------------------------------------------------------- constants with NaN/Inf

fn digits_with_weights(edit: impl Fn(&mut [f32])) -> Option<(std::path::PathBuf, Model)> {
    let (dir, xml, bin) = digits()?;
    let mut w: Vec<f32> = bin.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    edit(&mut w);
    Some((dir, read_mem(&xml, &f32_bytes(&w)).unwrap()))
}

#[test]
fn nan_weights_quantize_cleanly() {
    let Some((dir, m)) = digits_with_weights(|w| w[5] = f32::NAN) else { return };
    let data = common::dataset(&dir.join("calib"), 20);
    check_clean_or_finite(Session::new(&m, QuantConfig::default()).unwrap().quantize(&data), "NaN weight");
}

#[test]
fn inf_weights_quantize_cleanly() {
    let Some((dir, m)) = digits_with_weights(|w| {
        w[5] = f32::INFINITY;
        w[70] = f32::NEG_INFINITY;
    }) else {
        return;
    };
    let data = common::dataset(&dir.join("calib"), 20);
    check_clean_or_finite(Session::new(&m, QuantConfig::default()).unwrap().quantize(&data), "Inf weight");
}

#[test]
fn huge_finite_weights_quantize_cleanly() {
    let Some((dir, m)) = digits_with_weights(|w| w[5] = f32::MAX) else { return };
    let data = common::dataset(&dir.join("calib"), 20);
    check_clean_or_finite(Session::new(&m, QuantConfig::default()).unwrap().quantize(&data), "f32::MAX weight");
}

// ---------------------------------------------------------------- samples

fn digits_model() -> Option<(std::path::PathBuf, Model)> {
    let dir = common::fixture("digits_mlp")?;
    let m = Model::read(&dir.join("model.xml"), None).unwrap();
    Some((dir, m))
}

fn quantize(m: &Model, data: &dyn Dataset) -> ovpot::Result<ovpot::Outcome> {
    Session::new(m, QuantConfig::default())?.quantize(data)
}

/// 10 good samples with sample 6 replaced by `bad`.
fn with_bad_sample(dir: &Path, bad: Vec<(String, Tensor)>) -> InMemoryDataset {
    let mut d = common::dataset(&dir.join("calib"), 10);
    d.samples[6] = bad;
    d
}

#[test]
fn sample_with_wrong_shape() {
    let Some((dir, m)) = digits_model() else { return };
    let bad = vec![("input".into(), Tensor::f32_from_vec(&[1, 63], vec![0.0; 63]).unwrap())];
    assert_err(quantize(&m, &with_bad_sample(&dir, bad)), "mismatch", &["input"]);
}

#[test]
fn sample_with_wrong_rank() {
    let Some((dir, m)) = digits_model() else { return };
    let bad = vec![("input".into(), Tensor::f32_from_vec(&[1, 8, 8], vec![0.0; 64]).unwrap())];
    assert_err(quantize(&m, &with_bad_sample(&dir, bad)), "mismatch", &["input"]);
    let bad = vec![("input".into(), Tensor::scalar_f32(0.0))];
    assert_err(quantize(&m, &with_bad_sample(&dir, bad)), "mismatch", &["input"]);
}

#[test]
fn sample_with_wrong_dtype() {
    let Some((dir, m)) = digits_model() else { return };
    let bad = vec![("input".into(), Tensor::i64_from_vec(&[1, 64], vec![1; 64]).unwrap())];
    let e = quantize(&m, &with_bad_sample(&dir, bad));
    assert_err(e, "mismatch", &["input"]);
    let bad = vec![("input".into(), Tensor::zeros(ElementType::F16, &[1, 64]).unwrap())];
    assert_err(quantize(&m, &with_bad_sample(&dir, bad)), "mismatch", &["input"]);
}

#[test]
fn sample_missing_or_unknown_input() {
    let Some((dir, m)) = digits_model() else { return };
    assert_err(quantize(&m, &with_bad_sample(&dir, vec![])), "invalid_argument", &["input"]);
    let bad = vec![("imput".into(), Tensor::f32_from_vec(&[1, 64], vec![0.0; 64]).unwrap())];
    assert_err(quantize(&m, &with_bad_sample(&dir, bad)), "invalid_argument", &["input"]);
}

/// Every bad sample above, with the check that the error names the sample's index.
#[test]
fn bad_sample_errors_name_the_sample_index() {
    let Some((dir, m)) = digits_model() else { return };
    let bads: Vec<Vec<(String, Tensor)>> = vec![
        vec![("input".into(), Tensor::f32_from_vec(&[1, 63], vec![0.0; 63]).unwrap())],
        vec![("input".into(), Tensor::f32_from_vec(&[1, 8, 8], vec![0.0; 64]).unwrap())],
        vec![("input".into(), Tensor::i64_from_vec(&[1, 64], vec![1; 64]).unwrap())],
        vec![],
    ];
    for bad in bads {
        let e = quantize(&m, &with_bad_sample(&dir, bad)).unwrap_err();
        assert!(e.to_string().contains("sample 6"), "{e}");
    }
}

#[test]
fn nan_and_inf_activations_during_calibration() {
    let Some((dir, m)) = digits_model() else { return };
    for (what, v) in [("NaN", f32::NAN), ("+Inf", f32::INFINITY), ("-Inf", f32::NEG_INFINITY)] {
        let mut x = vec![0.25f32; 64];
        x[3] = v;
        let bad = vec![("input".into(), Tensor::f32_from_vec(&[1, 64], x).unwrap())];
        let r = quantize(&m, &with_bad_sample(&dir, bad));
        check_clean_or_finite(r, &format!("{what} activation"));
    }
    // Every sample NaN: no range can be computed at all.
    let all_nan = InMemoryDataset {
        samples: (0..4)
            .map(|_| vec![("input".into(), Tensor::f32_from_vec(&[1, 64], vec![f32::NAN; 64]).unwrap())])
            .collect(),
    };
    check_clean_or_finite(quantize(&m, &all_nan), "all-NaN calibration");
}

#[test]
fn empty_dataset() {
    let Some((_, m)) = digits_model() else { return };
    let e = assert_err(quantize(&m, &InMemoryDataset::default()), "invalid_argument", &[]);
    assert!(e.to_string().contains("empty") || e.to_string().contains("no "), "{e}");
}

/// A dataset whose `get` fails at `fail_at` (a user callback reporting a lost file).
struct FailingDataset {
    inner: InMemoryDataset,
    fail_at: usize,
    calls: Mutex<Vec<usize>>,
}

impl Dataset for FailingDataset {
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn get(&self, index: usize) -> ovpot::Result<ovpot::api::Sample> {
        self.calls.lock().unwrap().push(index);
        if index == self.fail_at {
            return Err(Error::Callback("the image file vanished".into()));
        }
        self.inner.get(index)
    }
}

#[test]
fn dataset_get_failure_names_the_sample() {
    let Some((dir, m)) = digits_model() else { return };
    let d = FailingDataset { inner: common::dataset(&dir.join("calib"), 40), fail_at: 17, calls: Mutex::new(vec![]) };
    assert_err(quantize(&m, &d), "callback", &["vanished", "17"]);
}

#[test]
fn dataset_get_failure_is_a_callback_error() {
    let Some((dir, m)) = digits_model() else { return };
    let d = FailingDataset { inner: common::dataset(&dir.join("calib"), 40), fail_at: 17, calls: Mutex::new(vec![]) };
    assert_err(quantize(&m, &d), "callback", &["vanished"]);
    // The failure stops the run: samples far past it are not all fetched.
    let calls = d.calls.lock().unwrap();
    assert!(calls.contains(&17));
}

#[test]
fn dataset_whose_len_lies() {
    // len() says 50 but get() has only 10: the run ends with an error naming the index.
    struct Liar(InMemoryDataset);
    impl Dataset for Liar {
        fn len(&self) -> usize {
            50
        }
        fn get(&self, index: usize) -> ovpot::Result<ovpot::api::Sample> {
            self.0.get(index)
        }
    }
    let Some((dir, m)) = digits_model() else { return };
    let r = quantize(&m, &Liar(common::dataset(&dir.join("calib"), 10)));
    assert_err(r, "invalid_argument", &["sample 10"]);
}

// ---------------------------------------------------------------- metrics

/// Negative mean |output − FP32 output| over the eval set: any quantization error is an accuracy
/// drop, so accuracy control always ranks and reverts.
struct Fidelity {
    reference: Vec<Vec<f64>>,
    err: Vec<f64>,
    nan: bool,
}

impl Metric for Fidelity {
    fn reset(&mut self) {
        self.err.clear();
    }
    fn update(&mut self, index: usize, outputs: &[Tensor]) -> ovpot::Result<()> {
        let o = outputs[0].to_f64_vec();
        let r = &self.reference[index];
        self.err.push(o.iter().zip(r).map(|(a, b)| (a - b).abs()).sum::<f64>() / o.len() as f64);
        Ok(())
    }
    fn value(&mut self) -> ovpot::Result<f64> {
        if self.nan {
            return Ok(f64::NAN);
        }
        Ok(-self.err.iter().sum::<f64>() / self.err.len().max(1) as f64)
    }
}

fn fidelity(m: &Model, eval: &InMemoryDataset) -> Fidelity {
    let plan = m.plan().unwrap();
    let reference = eval.samples.iter().map(|s| plan.run(s).unwrap()[0].to_f64_vec()).collect();
    Fidelity { reference, err: vec![], nan: false }
}

fn aa_config() -> QuantConfig {
    let mut c = QuantConfig::default();
    c.accuracy_aware.maximal_drop = 0.0;
    c.accuracy_aware.max_iter_num = 2;
    c.accuracy_aware.ranking_subset_size = 5;
    c.algorithm = ovpot::quant::config::Algorithm::AccuracyAware;
    c
}

#[test]
fn metric_returning_nan() {
    let Some((dir, m)) = digits_model() else { return };
    let calib = common::dataset(&dir.join("calib"), 20);
    let eval = common::dataset(&dir.join("eval"), 20);
    let mut metric = fidelity(&m, &eval);
    metric.nan = true;
    let r = Session::new(&m, aa_config()).unwrap().quantize_with_accuracy_control(&calib, &eval, &mut metric);
    assert_err(r, "callback", &["NaN"]);
}

#[test]
fn metric_with_too_few_labels() {
    let Some((dir, m)) = digits_model() else { return };
    let calib = common::dataset(&dir.join("calib"), 20);
    let eval = common::dataset(&dir.join("eval"), 20);
    let mut metric = ovpot::api::Top1Accuracy::new(vec![0; 5], 0);
    let r = Session::new(&m, aa_config()).unwrap().quantize_with_accuracy_control(&calib, &eval, &mut metric);
    assert_err(r, "invalid_argument", &["label", "5"]);
    let mut metric = ovpot::api::Top1Accuracy::new(vec![0; 20], 3);
    let r = Session::new(&m, aa_config()).unwrap().quantize_with_accuracy_control(&calib, &eval, &mut metric);
    assert_err(r, "invalid_argument", &["output 3"]);
}

#[test]
fn empty_evaluation_dataset() {
    let Some((dir, m)) = digits_model() else { return };
    let calib = common::dataset(&dir.join("calib"), 20);
    let mut metric = ovpot::api::Top1Accuracy::new(vec![], 0);
    let r = Session::new(&m, aa_config()).unwrap().quantize_with_accuracy_control(
        &calib,
        &InMemoryDataset::default(),
        &mut metric,
    );
    assert_err(r, "invalid_argument", &["empty"]);
}

// ---------------------------------------------------------------- cancellation

/// Runs accuracy-aware quantization with a progress callback that cancels at the first report
/// of `stage`; returns the error and the stages seen.
fn cancel_at(stage: Stage) -> Option<(ovpot::Result<ovpot::Outcome>, Vec<Stage>)> {
    let (dir, m) = digits_model()?;
    let calib = common::dataset(&dir.join("calib"), 20);
    let eval = common::dataset(&dir.join("eval"), 20);
    let mut metric = fidelity(&m, &eval);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let mut s = Session::new(&m, aa_config()).unwrap();
    s.hooks = Hooks {
        progress: Some(Box::new(move |st, _done, _total| {
            let mut v = seen2.lock().unwrap();
            if v.last() != Some(&st) {
                v.push(st);
            }
            st != stage
        })),
        ..Default::default()
    };
    let r = s.quantize_with_accuracy_control(&calib, &eval, &mut metric);
    let seen = seen.lock().unwrap().clone();
    Some((r, seen))
}

#[test]
fn cancel_at_every_stage() {
    for stage in [Stage::Evaluation, Stage::Statistics, Stage::BiasCorrection, Stage::Ranking, Stage::AccuracyAware] {
        let Some((r, seen)) = cancel_at(stage) else { return };
        assert!(seen.contains(&stage), "{stage:?} never reported progress (saw {seen:?})");
        assert_err(r, "cancelled", &[stage.name()]);
    }
}

#[test]
fn cancel_default_quantization() {
    let Some((dir, m)) = digits_model() else { return };
    let calib = common::dataset(&dir.join("calib"), 20);
    for stage in [Stage::Statistics, Stage::BiasCorrection] {
        let mut s = Session::new(&m, QuantConfig::default()).unwrap();
        s.hooks.progress = Some(Box::new(move |st, _, _| st != stage));
        assert_err(s.quantize(&calib), "cancelled", &[stage.name()]);
    }
    // Cancelling on the very first call (0 of n done).
    let mut s = Session::new(&m, QuantConfig::default()).unwrap();
    s.hooks.progress = Some(Box::new(|_, _, _| false));
    assert_err(s.quantize(&calib), "cancelled", &["statistics"]);
}

// ---------------------------------------------------------------- paths

#[test]
fn unwritable_output_paths() {
    let Some((_, m)) = digits_model() else { return };
    let tmp = tempfile::tempdir().unwrap();
    // A directory that does not exist.
    let p = tmp.path().join("no/such/dir/model.xml");
    assert_err(m.save(&p, None), "io", &["no/such/dir"]);
    // A path through a regular file (works even as root, unlike permission bits).
    let file = tmp.path().join("plain");
    std::fs::write(&file, b"x").unwrap();
    assert_err(m.save(&file.join("model.xml"), None), "io", &["plain"]);
    // The .xml target is an existing directory.
    let d = tmp.path().join("isdir.xml");
    std::fs::create_dir(&d).unwrap();
    let r = m.save(&d, Some(&tmp.path().join("isdir.bin")));
    assert_err(r, "io", &["isdir"]);
    // Reading a directory or a missing file.
    assert_err(Model::read(tmp.path(), None), "io", &[]);
    assert_err(Model::read(&tmp.path().join("missing.xml"), None), "io", &["missing.xml"]);
}

#[cfg(unix)]
#[test]
fn non_utf8_paths() {
    use std::os::unix::ffi::OsStrExt;
    let Some((_, m)) = digits_model() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let name = std::ffi::OsStr::from_bytes(b"mod\xffel.xml");
    let p = tmp.path().join(name);
    // Linux allows any bytes: saving and reading back must just work.
    m.save(&p, None).unwrap();
    let back = Model::read(&p, None).unwrap();
    assert_eq!(back.to_memory().unwrap(), m.to_memory().unwrap());
    // And a missing one is an I/O error whose message shows the path lossily.
    let missing = tmp.path().join(std::ffi::OsStr::from_bytes(b"\xfe\xfe.xml"));
    assert_err(Model::read(&missing, None), "io", &["\u{fffd}"]);
}

// ---------------------------------------------------------------- configs

#[test]
fn hostile_configs() {
    assert_err(QuantConfig::from_json(""), "parse", &["config"]);
    assert_err(QuantConfig::from_json("[1,2]"), "parse", &["not a JSON object"]);
    assert_err(QuantConfig::from_json(r#"{"stat_subset_size": -3}"#), "parse", &[]);
    assert_err(QuantConfig::from_json(r#"{"stat_subset_size": 1e400}"#), "parse", &[]);
    assert_err(
        QuantConfig::from_json(r#"{"ignored": {"patterns": ["(unclosed"]}}"#),
        "invalid_argument",
        &["(unclosed"],
    );
    assert_err(
        QuantConfig::from_json(r#"{"compression": {"algorithms": [{"name": "Magic"}]}}"#),
        "unsupported",
        &["Magic"],
    );
    assert_err(QuantConfig::from_json(r#"{"compression": {"algorithms": []}}"#), "parse", &["empty"]);
    // Deep nesting is refused by the JSON parser, not by a stack overflow.
    let deep = "[".repeat(100_000) + &"]".repeat(100_000);
    assert_err(QuantConfig::from_json(&deep), "parse", &[]);
    let deep_base =
        (0..200).fold(String::from("{}"), |acc, _| format!("{{\"base_algorithm\": {{\"params\": {acc}}}}}"));
    let pot = format!(
        r#"{{"compression": {{"algorithms": [{{"name": "AccuracyAwareQuantization", "params": {deep_base}}}]}}}}"#
    );
    assert!(QuantConfig::from_json(&pot).is_err());
}
