//! Weight-only compression: NNCF's selection rules, the IR form, in-memory and streamed drivers
//! agreeing, the compressed model computing what the original does, and refusals.

mod common;

use ovpot::compress::{compress_file, compress_graph, BackupMode, CompressMode, CompressOptions};
use ovpot::graph::{Attrs, Graph, Outlet, PartialShape, PortInfo};
use ovpot::hooks::Hooks;
use ovpot::tensor::{ElementType, Tensor};
use ovpot::Model;
use std::path::Path;

fn data(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

fn f16_const(g: &mut Graph, name: &str, shape: &[usize], seed: u32) -> Outlet {
    // Deterministic weights with a few outlier input channels, as LLM weights have.
    let n: usize = shape.iter().product();
    let cols = *shape.last().unwrap();
    let v: Vec<f64> = (0..n)
        .map(|i| {
            let x = ((i as u32).wrapping_mul(2654435761).wrapping_add(seed * 97) % 10007) as f64 / 10007.0 - 0.5;
            if (i % cols) % 13 == 5 {
                x * 0.3
            } else {
                x * 0.04
            }
        })
        .collect();
    let c = g.add_const(name, Tensor::from_f64_vec(ElementType::F16, shape, v).unwrap());
    let conv = g.add_op(
        format!("{name}/to_f32"),
        "Convert",
        "opset1",
        Attrs::from_pairs(&[("destination_type", "f32")]),
        vec![Outlet::new(c, 0)],
        vec![PortInfo::new(ElementType::F32, PartialShape::from_static(shape))],
    );
    Outlet::new(conv, 0)
}

/// A tiny decoder-shaped model: embedding (Gather of an FP16 table), three MatMuls with FP16
/// weights (transpose_b), the last one the "lm_head".
fn tiny_llm() -> Graph {
    let (vocab, hidden, inter) = (64, 256, 128);
    let mut g = Graph { name: "tiny_llm".into(), ir_version: 11, ..Default::default() };
    let mut p = ovpot::graph::Node::new("input_ids", "Parameter", "opset1");
    p.attrs = Attrs::from_pairs(&[("shape", "1,4"), ("element_type", "i64")]);
    p.outputs.push(PortInfo::new(ElementType::I64, PartialShape::from_static(&[1, 4])));
    let ids = Outlet::new(g.add_node(p), 0);
    let table = f16_const(&mut g, "embed_tokens", &[vocab, hidden], 1);
    let axis = g.add_const("axis", Tensor::i64_from_vec(&[], vec![0]).unwrap());
    let f32_3d = |d: usize| vec![PortInfo::new(ElementType::F32, PartialShape::from_static(&[1, 4, d]))];
    let emb = g.add_op(
        "embedding",
        "Gather",
        "opset8",
        Attrs::from_pairs(&[("batch_dims", "0")]),
        vec![table, ids, Outlet::new(axis, 0)],
        f32_3d(hidden),
    );
    let mm = |g: &mut Graph, name: &str, x: Outlet, out: usize, inp: usize, seed: u32| {
        let w = f16_const(g, &format!("{name}.weight"), &[out, inp], seed);
        let attrs = Attrs::from_pairs(&[("transpose_a", "false"), ("transpose_b", "true")]);
        Outlet::new(g.add_op(name, "MatMul", "opset1", attrs, vec![x, w], f32_3d(out)), 0)
    };
    let up = mm(&mut g, "up_proj", Outlet::new(emb, 0), inter, hidden, 2);
    let down = mm(&mut g, "down_proj", up, hidden, inter, 3);
    let head = mm(&mut g, "lm_head", down, vocab, hidden, 4);
    let mut r = ovpot::graph::Node::new("logits", "Result", "opset1");
    r.inputs = vec![head];
    r.input_ports = f32_3d(vocab);
    g.add_node(r);
    g
}

fn ids() -> Vec<(String, Tensor)> {
    vec![("input_ids".into(), Tensor::i64_from_vec(&[1, 4], vec![3, 17, 42, 63]).unwrap())]
}

fn sqnr(reference: &Tensor, other: &Tensor) -> f64 {
    let (a, b) = (reference.to_f64_vec(), other.to_f64_vec());
    let signal: f64 = a.iter().map(|x| x * x).sum();
    let noise: f64 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
    10.0 * (signal / noise.max(1e-30)).log10()
}

fn layer<'a>(report: &'a ovpot::compress::CompressReport, weight: &str) -> &'a ovpot::compress::CompressedLayer {
    report.layers.iter().find(|l| l.weight == weight).unwrap_or_else(|| panic!("no report entry for {weight}"))
}

#[test]
fn int4_follows_nncf_rules_and_keeps_the_model_close() {
    let graph = tiny_llm();
    let original = Model::from_graph(graph.clone());
    let options = CompressOptions { mode: CompressMode::Int4Asym, ..Default::default() };
    let (compressed, report) = compress_graph(&graph, &options, &mut Hooks::default()).unwrap();
    // Embedding and lm_head in the backup precision, the rest in 4 bits with groups of 128.
    assert_eq!(layer(&report, "embed_tokens").compression, "int8_asym, per-channel");
    assert_eq!(layer(&report, "lm_head.weight").compression, "int8_asym, per-channel");
    assert_eq!(layer(&report, "up_proj.weight").compression, "int4_asym, group size 128");
    assert!(layer(&report, "down_proj.weight").compression.starts_with("int4_asym"));
    assert!(report.weights_bytes_after * 2 < report.weights_bytes_before, "{}", report.summary());
    // The IR form: u4 codes [out, groups, 128], u4 zero points, f16 scales, a Reshape back.
    let q = compressed.nodes.iter().find(|n| n.name == "up_proj.weight").unwrap();
    assert_eq!(q.const_type, Some(ElementType::U4));
    assert_eq!(q.outputs[0].shape, PartialShape::from_static(&[128, 2, 128]));
    let zp = compressed.nodes.iter().find(|n| n.name == "up_proj.weight/zero_point").unwrap();
    assert_eq!(zp.const_type, Some(ElementType::U4));
    let scale = compressed.nodes.iter().find(|n| n.name == "up_proj.weight/scale").unwrap();
    assert_eq!(
        (scale.const_type, scale.outputs[0].shape.clone()),
        (Some(ElementType::F16), PartialShape::from_static(&[128, 2, 1]))
    );
    assert!(compressed.nodes.iter().any(|n| n.op_type == "Reshape" && n.name.starts_with("up_proj.weight")));
    // No FP16 weight is left behind.
    assert!(!compressed.nodes.iter().any(|n| n.const_type == Some(ElementType::F16) && n.name.ends_with(".weight")));
    // The compressed model computes nearly what the original does.
    let model = Model::from_graph(compressed);
    let a = original.plan().unwrap().run(&ids()).unwrap();
    let b = model.plan().unwrap().run(&ids()).unwrap();
    let db = sqnr(&a[0], &b[0]);
    assert!(db > 8.0, "int4 SQNR {db:.1} dB");
}

#[test]
fn int8_modes_compress_every_weight_per_channel() {
    let graph = tiny_llm();
    let original = Model::from_graph(graph.clone());
    for mode in [CompressMode::Int8Asym, CompressMode::Int8Sym] {
        let options = CompressOptions { mode, ..Default::default() };
        let (compressed, report) = compress_graph(&graph, &options, &mut Hooks::default()).unwrap();
        assert_eq!(report.layers.len(), 4);
        assert!(report.layers.iter().all(|l| l.bits == 8), "{}", report.summary());
        let sym = mode == CompressMode::Int8Sym;
        let q = compressed.nodes.iter().find(|n| n.name == "down_proj.weight").unwrap();
        assert_eq!(q.const_type, Some(if sym { ElementType::I8 } else { ElementType::U8 }));
        assert_eq!(compressed.nodes.iter().any(|n| n.name == "down_proj.weight/zero_point"), !sym);
        let b = Model::from_graph(compressed).plan().unwrap().run(&ids()).unwrap();
        let db = sqnr(&original.plan().unwrap().run(&ids()).unwrap()[0], &b[0]);
        assert!(db > 25.0, "{mode:?} SQNR {db:.1} dB");
    }
}

#[test]
fn ratio_backup_and_all_layers() {
    let graph = tiny_llm();
    // ratio 0.5 over up (32768) and down (32768): only one fits below half.
    let options = CompressOptions { mode: CompressMode::Int4Sym, ratio: Some(0.6), ..Default::default() };
    let (_, report) = compress_graph(&graph, &options, &mut Hooks::default()).unwrap();
    let four: Vec<&str> = report.layers.iter().filter(|l| l.bits == 4).map(|l| l.weight.as_str()).collect();
    assert_eq!(four.len(), 1, "{}", report.summary());
    // Backup none: what is not 4-bit stays FP16.
    let options = CompressOptions { mode: CompressMode::Int4Asym, backup_mode: BackupMode::None, ..Default::default() };
    let (_, report) = compress_graph(&graph, &options, &mut Hooks::default()).unwrap();
    assert_eq!(layer(&report, "embed_tokens").compression, "float");
    assert_eq!(layer(&report, "lm_head.weight").bits, 16);
    // all_layers: lm_head and the embedding in 4 bits too.
    let options =
        CompressOptions { mode: CompressMode::Int4Asym, all_layers: true, group_size: Some(64), ..Default::default() };
    let (compressed, report) = compress_graph(&graph, &options, &mut Hooks::default()).unwrap();
    assert!(report.layers.iter().all(|l| l.bits == 4), "{}", report.summary());
    Model::from_graph(compressed).plan().unwrap().run(&ids()).unwrap();
}

#[test]
fn ignored_scope_and_refusals() {
    let graph = tiny_llm();
    let mut options = CompressOptions { mode: CompressMode::Int4Asym, ..Default::default() };
    options.ignored.names.push("down_proj".into());
    let (_, report) = compress_graph(&graph, &options, &mut Hooks::default()).unwrap();
    let down = layer(&report, "down_proj.weight");
    assert_eq!(down.compression, "float");
    assert!(down.kept_because.as_deref().unwrap().contains("ignored"), "{down:?}");
    // A name that is no layer is an error, not a silently compressed model.
    let mut options = CompressOptions::default();
    options.ignored.names.push("no_such_layer".into());
    let err = compress_graph(&graph, &options, &mut Hooks::default()).unwrap_err().to_string();
    assert!(err.contains("no_such_layer"), "{err}");
    // A group size that does not divide the input channels names the weight.
    let options = CompressOptions { mode: CompressMode::Int4Asym, group_size: Some(96), ..Default::default() };
    let err = compress_graph(&graph, &options, &mut Hooks::default()).unwrap_err().to_string();
    assert!(err.contains("group size 96") && err.contains("up_proj.weight"), "{err}");
    // NNCF's option checks.
    for bad in [
        CompressOptions { ratio: Some(0.5), ..Default::default() },
        CompressOptions { mode: CompressMode::Int4Sym, ratio: Some(1.5), ..Default::default() },
        CompressOptions { mode: CompressMode::Int4Sym, group_size: Some(0), ..Default::default() },
    ] {
        assert!(compress_graph(&graph, &bad, &mut Hooks::default()).is_err(), "{bad:?}");
    }
}

#[test]
fn streamed_file_compression_matches_the_in_memory_result() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("tiny.xml");
    ovpot::ir::write_model(&tiny_llm(), &src, None).unwrap();
    let options = CompressOptions { mode: CompressMode::Int4Asym, ratio: Some(0.8), ..Default::default() };
    let out = dir.path().join("out/tiny_int4.xml");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let mut steps = vec![];
    let mut hooks = Hooks::default();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    hooks.progress = Some(Box::new(move |stage, done, total| {
        sink.lock().unwrap().push((stage, done, total));
        true
    }));
    let streamed = compress_file(&src, &out, &options, &mut hooks).unwrap();
    steps.extend(seen.lock().unwrap().iter().copied());
    assert!(steps.iter().any(|&(s, d, t)| s == ovpot::hooks::Stage::WeightCompression && d == t), "{steps:?}");
    let (memory, report) =
        compress_graph(&ovpot::ir::read_model(&src, None).unwrap(), &options, &mut Hooks::default()).unwrap();
    let compressions =
        |r: &ovpot::compress::CompressReport| r.layers.iter().map(|l| l.compression.clone()).collect::<Vec<_>>();
    assert_eq!(compressions(&streamed), compressions(&report));
    // Same constants, byte for byte, by name.
    let read_back = ovpot::ir::read_model(&out, None).unwrap();
    for n in memory.nodes.iter().filter(|n| n.is_const()) {
        let m = read_back.nodes.iter().find(|x| x.name == n.name).unwrap_or_else(|| panic!("{} missing", n.name));
        assert_eq!(m.value, n.value, "{}", n.name);
        assert_eq!(m.const_type, n.const_type, "{}", n.name);
    }
    let a = Model::from_graph(memory).plan().unwrap().run(&ids()).unwrap();
    let b = Model::read(&out, None).unwrap().plan().unwrap().run(&ids()).unwrap();
    assert_eq!(a[0], b[0]);
    // Writing over the input is refused; a cancelled run leaves nothing behind.
    assert!(compress_file(&src, &src, &options, &mut Hooks::default()).is_err());
    let cancelled = dir.path().join("cancelled.xml");
    let mut hooks = Hooks { progress: Some(Box::new(|_, done, _| done < 1)), ..Default::default() };
    let err = compress_file(&src, &cancelled, &options, &mut hooks).unwrap_err();
    assert!(err.to_string().contains("cancel"), "{err}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(!cancelled.exists() && !cancelled.with_extension("bin").exists(), "{left:?}");
    assert!(left.iter().all(|f| !f.to_string_lossy().contains(".tmp")), "temporary files left: {left:?}");
}

#[test]
fn real_fixtures_convolutions_and_f32_weights() {
    // mnist_cnn: FP32 Convolution and MatMul weights; int8 per channel keeps the accuracy.
    let dir = data("mnist_cnn");
    let graph = ovpot::ir::read_model(&dir.join("model.xml"), None).unwrap();
    let (compressed, report) = compress_graph(&graph, &CompressOptions::default(), &mut Hooks::default()).unwrap();
    assert!(report.layers.iter().any(|l| l.layer_type == "Convolution" && l.bits == 8), "{}", report.summary());
    assert!(report.layers.iter().any(|l| l.layer_type == "MatMul" && l.bits == 8), "{}", report.summary());
    // FP32 weights get a Convert back to f32 after the f16 Multiply, as NNCF writes them.
    assert!(compressed.nodes.iter().any(|n| n.op_type == "Convert"
        && n.name.ends_with("/convert")
        && n.attrs.get("destination_type") == Some("f32")));
    let original = Model::from_graph(graph);
    let model = Model::from_graph(compressed);
    let a = common::engine_accuracy(&original, &dir, 0, 200);
    let b = common::engine_accuracy(&model, &dir, 0, 200);
    assert!(b >= a - 0.01, "FP32 {a:.3}, int8 weights {b:.3}");
}

/// NNCF's group size fallbacks on a Llama export whose projections have 64 input channels and
/// whose down projections 128: group 128 is an error by default; `ignore` keeps the 64-channel
/// weights as they are; `adjust` gives them groups of 64, or the int8 backup when 64 is under
/// `min_adjusted_group_size`.
#[test]
fn group_size_fallback_error_ignore_adjust() {
    use ovpot::compress::GroupSizeFallback;
    let model = Model::read(&data("tiny_llama_stateful").join("model.xml"), None).unwrap();
    let run = |fallback, min| {
        let options = CompressOptions {
            mode: CompressMode::Int4Asym,
            group_size: Some(128),
            group_size_fallback: fallback,
            min_adjusted_group_size: min,
            ..Default::default()
        };
        compress_graph(model.graph(), &options, &mut Hooks::default()).map(|(_, r)| r)
    };
    let e = run(GroupSizeFallback::Error, 32).unwrap_err().to_string();
    assert!(e.contains("does not divide the 64 input channels") && e.contains("group_size_fallback"), "{e}");
    let kinds = |r: &ovpot::compress::CompressReport| {
        let mut m = std::collections::BTreeMap::<String, usize>::new();
        for l in r.layers.iter().filter(|l| !l.layer.contains("rotary")) {
            *m.entry(l.compression.clone()).or_default() += 1;
        }
        m.into_iter().collect::<Vec<_>>()
    };
    let ignore = run(GroupSizeFallback::Ignore, 32).unwrap();
    assert_eq!(
        kinds(&ignore),
        [("float".into(), 12), ("int4_asym, group size 128".into(), 2), ("int8_asym, per-channel".into(), 2)]
    );
    assert!(ignore.layers.iter().any(|l| l.kept_because.as_deref().is_some_and(|w| w.contains("does not divide"))));
    let adjust = run(GroupSizeFallback::Adjust, 32).unwrap();
    assert_eq!(
        kinds(&adjust),
        [
            ("int4_asym, group size 128".into(), 2),
            ("int4_asym, group size 64".into(), 12),
            ("int8_asym, per-channel".into(), 2)
        ]
    );
    let backup = run(GroupSizeFallback::Adjust, 128).unwrap();
    assert_eq!(kinds(&backup), [("int4_asym, group size 128".into(), 2), ("int8_asym, per-channel".into(), 14)]);
}
