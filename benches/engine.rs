//! Single-sample latency of ovpot's engine on the big fixtures (issue 3).
//!
//! `cargo bench --bench engine [-- --runs N] [--json] [--profile] [FIXTURE...]`
//! Reads `../shared/fixtures` (or `$OVPOT_FIXTURES`), skips fixtures that are absent, runs sample 0
//! of `ref/in` (batch 1) a few times to warm up, then `--runs` times (default 30), and prints the
//! median. `--json` prints one JSON object per fixture instead of the table (for
//! bench/engine.py); `--profile` adds a per-op-type breakdown of one run.
//! Threads: rayon (RAYON_NUM_THREADS) and matrixmultiply (MATMUL_NUM_THREADS) pools.

use ovpot::engine::Plan;
use ovpot::graph::Outlet;
use ovpot::tensor::Tensor;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

const DEFAULT_FIXTURES: [&str; 3] = ["mobilenet_v2", "ppocr_cls", "minilm_l6"];

fn fixtures_root() -> PathBuf {
    match std::env::var_os("OVPOT_FIXTURES") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"),
    }
}

/// Sample 0 of every `ref/in/<name>.npy`, with a leading batch axis of 1.
fn first_sample(dir: &Path) -> Result<Vec<(String, Tensor)>, String> {
    let mut inputs = vec![];
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for e in entries.flatten() {
        let p = e.path();
        if p.extension() != Some(std::ffi::OsStr::new("npy")) {
            continue;
        }
        let name = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let t = ovpot::npy::read_npy(&p).map_err(|e| e.to_string())?;
        let t = ovpot::map_tensor!(&t, a => a
            .slice_axis(ndarray::Axis(0), ndarray::Slice::from(0..1))
            .to_owned());
        inputs.push((name, t));
    }
    inputs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(inputs)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

struct Measured {
    load_ms: f64,
    plan_ms: f64,
    median_ms: f64,
    min_ms: f64,
    profile: Vec<(String, f64, usize)>,
}

fn measure(dir: &Path, runs: usize, profile: bool) -> Result<Measured, String> {
    let t0 = Instant::now();
    let g = ovpot::ir::read_model(&dir.join("model.xml"), None).map_err(|e| e.to_string())?;
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    let t1 = Instant::now();
    let plan = Plan::new(&g).map_err(|e| e.to_string())?;
    let plan_ms = t1.elapsed().as_secs_f64() * 1e3;
    let inputs = first_sample(&dir.join("ref/in"))?;
    for _ in 0..3 {
        plan.run(&inputs).map_err(|e| e.to_string())?;
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let out = plan.run(&inputs).map_err(|e| e.to_string())?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        drop(out);
    }
    let min_ms = times.iter().copied().fold(f64::INFINITY, f64::min);
    let mut breakdown = vec![];
    if profile {
        // Time between consecutive node outputs, charged to the node that produced the later one.
        let mut per_type: BTreeMap<String, (f64, usize)> = BTreeMap::new();
        let mut per_node: BTreeMap<usize, (f64, Vec<usize>)> = BTreeMap::new();
        for _ in 0..5 {
            let mut last = Instant::now();
            let graph = plan.graph();
            let mut obs = |o: Outlet, v: &Tensor| -> ovpot::Result<()> {
                let now = Instant::now();
                let e = per_type.entry(graph.nodes[o.node].op_type.clone()).or_default();
                e.0 += (now - last).as_secs_f64() * 1e3 / 5.0;
                e.1 += 1;
                let pn = per_node.entry(o.node).or_default();
                pn.0 += (now - last).as_secs_f64() * 1e3 / 5.0;
                pn.1 = v.shape().to_vec();
                last = Instant::now();
                Ok(())
            };
            plan.run_observed(&inputs, &mut obs).map_err(|e| e.to_string())?;
        }
        let mut nodes: Vec<_> = per_node.into_iter().collect();
        nodes.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
        for (id, (ms, shape)) in nodes.iter().take(12) {
            let n = &plan.graph().nodes[*id];
            eprintln!("    node {:<40} {:<18} {ms:>8.3} ms -> {shape:?}", n.name, n.op_type);
        }
        breakdown = per_type.into_iter().map(|(k, (ms, n))| (k, ms, n / 5)).collect();
        breakdown.sort_by(|a, b| b.1.total_cmp(&a.1));
    }
    Ok(Measured { load_ms, plan_ms, median_ms: median(times), min_ms, profile: breakdown })
}

fn main() {
    let mut runs = 30usize;
    let mut json = false;
    let mut profile = false;
    let mut names: Vec<String> = vec![];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).unwrap_or(runs),
            "--json" => json = true,
            "--profile" => profile = true,
            "--bench" => {}
            s if s.starts_with("--") => {}
            s => names.push(s.to_string()),
        }
    }
    if names.is_empty() {
        names = DEFAULT_FIXTURES.iter().map(|s| s.to_string()).collect();
    }
    let root = fixtures_root();
    let threads = rayon::current_num_threads();
    if !json {
        println!("ovpot engine, batch 1, sample 0 of ref/in, {runs} runs, rayon threads {threads}");
        println!("{:<14} {:>10} {:>10} {:>9} {:>9}", "fixture", "median ms", "min ms", "load ms", "plan ms");
    }
    for name in &names {
        let dir = root.join(name);
        if !dir.join("model.xml").exists() {
            eprintln!("{name}: not found under {}; skipped", root.display());
            continue;
        }
        match measure(&dir, runs, profile) {
            Ok(m) => {
                if json {
                    println!(
                        "{{\"fixture\":\"{name}\",\"median_ms\":{:.4},\"min_ms\":{:.4},\"runs\":{runs},\"threads\":{threads}}}",
                        m.median_ms, m.min_ms
                    );
                } else {
                    println!(
                        "{:<14} {:>10.3} {:>10.3} {:>9.1} {:>9.1}",
                        name, m.median_ms, m.min_ms, m.load_ms, m.plan_ms
                    );
                }
                for (op, ms, n) in &m.profile {
                    eprintln!("    {op:<22} {ms:>9.3} ms  ({n} nodes)");
                }
            }
            Err(e) => eprintln!("{name}: {e}"),
        }
    }
}
