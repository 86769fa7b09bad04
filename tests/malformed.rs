//! Hand-made malformed IR files on disk (tests/data/malformed): each one breaks good.xml in one
//! place and must be refused through the file API with the right error kind and a message that
//! names the file and, where one is involved, the layer (id, name and type).

use ovpot::tensor::Tensor;
use ovpot::Model;
use std::collections::BTreeSet;
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/malformed")
}

const CONST_C: &str = "layer id=1 name='c' type=Const (opset1)";
const ADD: &str = "layer id=2 name='add' type=Add (opset1)";
const RELU: &str = "layer id=3 name='relu' type=Relu (opset1)";

/// (file stem, error kind, substrings the message must contain).
type Case = (&'static str, &'static str, &'static [&'static str]);

const CASES: [Case; 8] = [
    // Layer 3's port is closed by an </output> at line 51, after four tabs.
    ("bad_xml", "parse", &["bad_xml.xml", "line 51, column 5", "</output>", "</port>"]),
    ("no_bin", "io", &["no_bin.bin", "no_bin.xml", CONST_C]),
    (
        "const_past_end",
        "parse",
        &["const_past_end.xml", "const_past_end.bin", CONST_C, "offset 8 + size 16", "16 bytes"],
    ),
    ("unknown_element_type", "parse", &["unknown_element_type.xml", CONST_C, "'f24'"]),
    ("dangling_edge", "parse", &["dangling_edge.xml", "dangling edge", RELU, "no layer has id 42"]),
    ("duplicate_edge", "parse", &["duplicate_edge.xml", "duplicate edge", "input port 1 of", ADD, CONST_C]),
    ("cycle", "parse", &["cycle.xml", "cycle", ADD, RELU]),
    ("port_mismatch", "mismatch", &["port_mismatch.xml", "port mismatch", CONST_C, ADD, "[4]", "[5]"]),
];

#[test]
fn the_unbroken_model_reads_and_runs() {
    // Every case differs from this file in one place, so the errors below come from that place.
    let m = Model::read(&dir().join("good.xml"), None).unwrap();
    let x = Tensor::f32_from_vec(&[1, 4], vec![1.0; 4]).unwrap();
    let y = m.plan().unwrap().run(&[("x".into(), x)]).unwrap();
    // relu([1, 1, 1, 1] + [1, -2, 0.5, -0.25])
    assert_eq!(y[0].to_f64_vec(), [2.0, 0.0, 1.5, 0.75]);
}

#[test]
fn each_malformed_file_gets_its_error_kind_and_names_file_and_layer() {
    for (stem, kind, needles) in CASES {
        let xml = dir().join(format!("{stem}.xml"));
        assert!(xml.is_file(), "{} is missing", xml.display());
        let e = match Model::read(&xml, None) {
            Ok(_) => panic!("{stem}: read without an error"),
            Err(e) => e,
        };
        let msg = e.to_string();
        eprintln!("{stem}: {msg}");
        assert_eq!(e.kind(), kind, "{stem}: wrong kind for: {msg}");
        for n in needles {
            assert!(msg.contains(n), "{stem}: message lacks '{n}': {msg}");
        }
        // One prefix per message, not a parse error wrapping an invalid argument.
        assert!(!msg.contains("invalid argument"), "{stem}: nested error kind: {msg}");
    }
}

#[test]
fn every_file_in_the_folder_has_a_case() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut covered: BTreeSet<String> = CASES.iter().map(|c| c.0.to_string()).collect();
    covered.insert("good".into());
    assert_eq!(on_disk, covered);
    // no_bin is about the missing weights file, so it must stay missing.
    assert!(!dir().join("no_bin.bin").exists());
}
