//! Replays inputs that once crashed (or nearly crashed) a fuzz target, through the same code
//! path as fuzz/fuzz_targets/*.rs: each must give a result or a clean error, never a panic.
//! Add a case by copying a fuzz artifact to tests/data/fuzz_regressions/<target>/.

use ovpot::engine::Plan;
use ovpot::graph::Dim;
use ovpot::tensor::Tensor;
use ovpot::QuantConfig;
use std::path::{Path, PathBuf};

fn cases(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz_regressions").join(target);
    let mut v: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect(),
        Err(_) => vec![],
    };
    v.sort();
    v
}

/// The ir_reader fuzz target's body: `xml \0 weights` → read → serialize → plan → run on zeros.
fn ir_reader(data: &[u8]) -> Result<(), String> {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let weights = data.get(split + 1..).unwrap_or(&[]);
    let graph = ovpot::ir::read_model_from_memory(&data[..split], weights).map_err(|e| e.to_string())?;
    let _ = ovpot::ir::serialize(&graph);
    let plan = Plan::new(&graph).map_err(|e| e.to_string())?;
    let mut inputs = Vec::new();
    for p in graph.parameters() {
        let info = &graph.nodes[p].outputs[0];
        let dims = info.shape.0.as_ref().ok_or("dynamic rank")?;
        let shape: Vec<usize> = dims.iter().map(|d| if let Dim::Static(n) = d { *n } else { 1 }).collect();
        if shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).is_none_or(|n| n > 4096) {
            return Err("input too big to run".into());
        }
        inputs.push((
            graph.parameter_name(p).to_string(),
            Tensor::zeros(info.element_type, &shape).map_err(|e| e.to_string())?,
        ));
    }
    plan.run(&inputs).map(|_| ()).map_err(|e| e.to_string())
}

#[test]
fn ir_reader_regressions() {
    let cases = cases("ir_reader");
    assert!(!cases.is_empty(), "no regression inputs found");
    for p in cases {
        let data = std::fs::read(&p).unwrap();
        let r = ir_reader(&data);
        eprintln!("{}: {:?}", p.file_name().unwrap().to_string_lossy(), r);
    }
}

/// Crashes found by the fuzzer in code this suite cannot fix yet (see each file's name); run with
/// `--ignored` to check a fix, then move the file up to tests/data/fuzz_regressions/ir_reader/.
#[test]
fn ir_reader_open_crashes() {
    for p in cases("open/ir_reader") {
        let data = std::fs::read(&p).unwrap();
        let r = ir_reader(&data);
        eprintln!("{}: {:?}", p.file_name().unwrap().to_string_lossy(), r);
    }
}

#[test]
fn quant_config_regressions() {
    for p in cases("quant_config") {
        let data = std::fs::read(&p).unwrap();
        let Ok(text) = std::str::from_utf8(&data) else { continue };
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        match QuantConfig::from_json(text) {
            Err(e) => eprintln!("{name}: {} error: {e}", e.kind()),
            Ok(c) => {
                let flat = serde_json::to_string(&c).unwrap();
                let back =
                    QuantConfig::from_json(&flat).unwrap_or_else(|e| panic!("{name}: {flat} does not parse back: {e}"));
                assert_eq!(back, c, "{name}: round trip through {flat}");
            }
        }
    }
}

/// The fuzz seeds stay valid models: a seed that stops parsing would silently shrink the
/// fuzzer's reach.
#[test]
fn fuzz_seeds_parse_and_run() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/ir_reader");
    let Ok(rd) = std::fs::read_dir(&dir) else { return };
    for e in rd {
        let p = e.unwrap().path();
        let data = std::fs::read(&p).unwrap();
        ir_reader(&data).unwrap_or_else(|e| panic!("seed {} fails: {e}", p.display()));
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/quant_config");
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        QuantConfig::from_json(&text).unwrap_or_else(|e| panic!("seed {} fails: {e}", p.display()));
    }
}
