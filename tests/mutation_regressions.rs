//! Cases found by the differential mutation campaign (`.ci/tools/mutate.py`) and the issues, kept
//! as text edits of the fixtures (`tests/data/mutations/cases.json`): each is refused at read with
//! the expected kind and message, or quantizes into an IR that reads back with what OpenVINO
//! needs. None may panic.

mod common;
use ovpot::{Model, QuantConfig, Session};
use serde_json::Value;

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(vec![], |a| a.iter().filter_map(|s| s.as_str()).map(String::from).collect())
}

#[test]
fn mutation_cases() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let cases: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(root.join("tests/data/mutations/cases.json")).unwrap()).unwrap();
    assert!(!cases.is_empty());
    for case in &cases {
        let what = case["what"].as_str().unwrap();
        let Some(dir) = common::fixture(case["fixture"].as_str().unwrap()) else { continue };
        let xml = std::fs::read_to_string(dir.join("model.xml")).unwrap();
        let find = case["find"].as_str().unwrap();
        assert!(xml.contains(find), "{what}: the edit no longer applies to the fixture");
        let xml = xml.replacen(find, case["replace"].as_str().unwrap(), 1);
        let bin = std::fs::read(dir.join("model.bin")).unwrap();
        let expect = &case["expect"];
        let read = Model::from_memory(xml.as_bytes(), &bin);
        let data = common::dataset(&dir.join("calib"), 8);
        let config = QuantConfig { stat_subset_size: 8, ..QuantConfig::default() };
        match expect["kind"].as_str().unwrap() {
            "ok" => {
                let model = read.unwrap_or_else(|e| panic!("{what}: refused: {e}"));
                let out = Session::new(&model, config).unwrap().quantize(&data).unwrap();
                let (text, weights) = out.model.to_memory().unwrap();
                for needle in strings(expect, "output_contains") {
                    assert!(text.contains(&needle), "{what}: the output lacks {needle}");
                }
                Model::from_memory(text.as_bytes(), &weights).unwrap();
            }
            kind => {
                // Refused at read, or else by the quantizer before anything is written.
                let e = match read.and_then(|m| Session::new(&m, config)?.quantize(&data)) {
                    Ok(_) => panic!("{what}: quantized, expected a {kind} error"),
                    Err(e) => e,
                };
                assert_eq!(e.kind(), kind, "{what}: {e}");
                for needle in strings(expect, "contains") {
                    assert!(e.to_string().contains(&needle), "{what}: message lacks {needle}: {e}");
                }
            }
        }
    }
}
