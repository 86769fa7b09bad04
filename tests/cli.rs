//! The `ovpot` binary on the fixtures: infer against OpenVINO's outputs, evaluate, info, convert,
//! quantize (flags and POT configs), exit codes and one-line errors.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ovpot(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ovpot")).args(args).output().expect("the ovpot binary runs")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 test path")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The one-line error of a failed run (exit status 1).
fn error_line(o: &Output) -> String {
    error_line_with(o, 1)
}

/// The one-line error of a usage error (a missing or invalid option: exit status 2, as clap's).
fn usage_error_line(o: &Output) -> String {
    error_line_with(o, 2)
}

fn error_line_with(o: &Output, code: i32) -> String {
    assert!(!o.status.success(), "expected failure; stdout: {}", stdout(o));
    assert_eq!(o.status.code(), Some(code), "{}", stderr(o));
    let err = stderr(o);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(lines.len(), 1, "one error line expected: {err}");
    lines[0].to_string()
}

/// Whether the engine can run the model. The repo's own fixtures (tests/data) must run; larger
/// ones from ../shared may use ops not written yet and are then skipped.
fn engine_runs(xml: &Path) -> bool {
    let m = ovpot::Model::read(xml, None).unwrap();
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    match m.plan() {
        Ok(_) => true,
        Err(e) if xml.starts_with(&local) => panic!("{}: the engine must run this fixture: {e}", xml.display()),
        Err(e) => {
            eprintln!("{}: {e}; running checks skipped", xml.display());
            false
        }
    }
}

/// A run that must succeed.
fn assert_ok(o: &Output) {
    assert!(o.status.success(), "exit {:?}: {}", o.status.code(), stderr(o));
}

fn read_report(out: &Path) -> serde_json::Value {
    let p = out.join("report.json");
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

/// The `name` fields of a report list ("ignored") or its strings ("quantized_layers").
fn names(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|x| x.get("name").unwrap_or(x).as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn infer_matches_openvino_reference() {
    // The last three come from ../shared when present (u8 NHWC inputs, three i64 inputs).
    let names = ["digits_mlp", "mnist_cnn", "mtcnn_rnet", "mtcnn_onet", "ppocr_cls", "mobilenet_v2", "minilm_l6"];
    for name in names {
        let Some(dir) = common::fixture(name) else {
            continue;
        };
        let xml = dir.join("model.xml");
        let out = tempfile::tempdir().unwrap();
        let o = ovpot(&[
            "--quiet",
            "infer",
            "-m",
            s(&xml),
            "--data",
            s(&dir.join("ref/in")),
            "--output-dir",
            s(out.path()),
        ]);
        if !engine_runs(&xml) {
            let e = error_line(&o);
            assert!(e.contains("not supported") || e.contains("unsupported") || e.contains("missing"), "{e}");
            continue;
        }
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let mut k = 0;
        while dir.join(format!("ref/out{k}.npy")).exists() {
            let want = ovpot::npy::read_npy(&dir.join(format!("ref/out{k}.npy"))).unwrap();
            let got = ovpot::npy::read_npy(&out.path().join(format!("out{k}.npy"))).unwrap();
            let tol = 1e-4 * common::max_abs(&want).max(1.0);
            let d = common::max_abs_diff(&got, &want);
            assert!(d <= tol, "{name} out{k}: max|diff| {d} > {tol}");
            k += 1;
        }
        assert!(k > 0 && !out.path().join(format!("out{k}.npy")).exists(), "{name}: {k} outputs");
    }
}

#[test]
fn infer_on_generated_images() {
    let Some(dir) = common::fixture("mtcnn_rnet") else {
        return;
    };
    let xml = dir.join("model.xml");
    let imgs = tempfile::tempdir().unwrap();
    for i in 0..3u8 {
        let img = image::RgbImage::from_fn(31, 27, |x, y| image::Rgb([x as u8 * 8, y as u8 * 9, 40 * i]));
        img.save(imgs.path().join(format!("face{i}.png"))).unwrap();
    }
    let out = tempfile::tempdir().unwrap();
    let o = ovpot(&[
        "--quiet",
        "infer",
        "-m",
        s(&xml),
        "--data",
        s(imgs.path()),
        "--mean",
        "127.5",
        "--scale",
        "128",
        "-o",
        s(out.path()),
    ]);
    assert_ok(&o);
    assert!(stderr(&o).is_empty(), "--quiet prints nothing: {}", stderr(&o));
    let p1 = ovpot::npy::read_npy(&out.path().join("out1.npy")).unwrap();
    assert_eq!(p1.shape(), &[3, 2]);
    // Output 1 is a softmax over face / not face.
    for row in p1.to_f64_vec().chunks(2) {
        assert!((row[0] + row[1] - 1.0).abs() < 1e-5, "{row:?}");
    }
    // The same images without mean/scale give other outputs: mean/scale reach the model.
    let out2 = tempfile::tempdir().unwrap();
    let o = ovpot(&["--quiet", "infer", "-m", s(&xml), "--data", s(imgs.path()), "-o", s(out2.path())]);
    assert!(o.status.success(), "{}", stderr(&o));
    let q1 = ovpot::npy::read_npy(&out2.path().join("out1.npy")).unwrap();
    assert!(common::max_abs_diff(&p1, &q1) > 1e-6);
}

#[test]
fn evaluate_prints_top1() {
    let Some(dir) = common::fixture("mnist_cnn") else {
        return;
    };
    let xml = dir.join("model.xml");
    let o = ovpot(&[
        "evaluate",
        "-m",
        s(&xml),
        "--data",
        s(&dir.join("eval")),
        "--labels",
        s(&dir.join("eval_labels.npy")),
        "--max-samples",
        "200",
    ]);
    assert_ok(&o);
    let line = stdout(&o);
    let acc: f64 = line
        .strip_prefix("top-1 accuracy: ")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("unexpected output: {line}"));
    // FP32 accuracy on the whole eval set is 0.957 (meta.json); 200 samples stay close to it.
    assert!(acc > 0.9, "{line}");
    assert!(line.contains("/200 samples"), "{line}");
}

#[test]
fn info_lists_ports_and_ops() {
    let Some(dir) = common::fixture("mtcnn_rnet") else {
        return;
    };
    let o = ovpot(&["info", s(&dir.join("model.xml"))]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("inputs:\n  x  f32 [1,3,24,24]"), "{out}");
    assert!(out.contains("outputs:\n  0: "), "{out}");
    assert!(out.contains("  1: "), "two outputs: {out}");
    assert!(out.contains("PReLU"), "{out}");
    assert!(out.contains("Convolution"), "{out}");
    assert!(out.contains("engine: "), "{out}");
}

#[test]
fn convert_rewrites_a_model_that_reads_back() {
    let Some(dir) = common::fixture("mnist_cnn") else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let dst = out.path().join("sub/m.xml");
    for src in ["model.xml", "nncf_int8.xml"] {
        let o = ovpot(&["--quiet", "convert", "-m", s(&dir.join(src)), "-o", s(&dst)]);
        assert!(o.status.success(), "{src}: {}", stderr(&o));
        let a = ovpot::Model::read(&dir.join(src), None).unwrap();
        let b = ovpot::Model::read(&dst, None).unwrap();
        assert_eq!(a.inputs(), b.inputs());
        assert_eq!(a.outputs(), b.outputs());
        assert_eq!(a.graph().nodes.len(), b.graph().nodes.len());
        assert!(out.path().join("sub/m.bin").exists());
    }
}

#[test]
fn bad_input_gives_one_line_errors() {
    let Some(mnist) = common::fixture("mnist_cnn") else {
        return;
    };
    let Some(rnet) = common::fixture("mtcnn_rnet") else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    // A model file that does not exist.
    let e = error_line(&ovpot(&["info", "/nonexistent/model.xml"]));
    assert!(e.contains("/nonexistent/model.xml"), "{e}");
    // Data of another model: names the input and both shapes.
    let e = error_line(&ovpot(&[
        "infer",
        "-m",
        s(&rnet.join("model.xml")),
        "--data",
        s(&mnist.join("calib")),
        "-o",
        s(out.path()),
    ]));
    assert!(e.contains("'x'") && e.contains("[1,3,24,24]") && e.contains("28"), "{e}");
    // Too few labels.
    let e = error_line(&ovpot(&[
        "evaluate",
        "-m",
        s(&mnist.join("model.xml")),
        "--data",
        s(&mnist.join("calib")),
        "--labels",
        s(&mnist.join("ref/out0.npy")),
    ]));
    assert!(e.contains("labels"), "{e}");
    // A metric output the model lacks.
    let e = error_line(&ovpot(&[
        "evaluate",
        "-m",
        s(&mnist.join("model.xml")),
        "--data",
        s(&mnist.join("eval")),
        "--labels",
        s(&mnist.join("eval_labels.npy")),
        "--metric-output",
        "3",
    ]));
    assert!(e.contains("--metric-output 3") && e.contains("1 output"), "{e}");
    // Not an IR.
    let e = error_line(&ovpot(&["info", s(&mnist.join("meta.json"))]));
    assert!(e.contains("meta.json"), "{e}");
    // Bad option values.
    let e = usage_error_line(&ovpot(&[
        "quantize",
        "-m",
        s(&mnist.join("model.xml")),
        "--data",
        s(&mnist.join("calib")),
        "--preset",
        "fastest",
        "--output-dir",
        s(out.path()),
    ]));
    assert!(e.contains("--preset 'fastest'") && e.contains("performance, mixed or accuracy"), "{e}");
    let e = error_line(&ovpot(&[
        "quantize",
        "-m",
        s(&mnist.join("model.xml")),
        "--data",
        s(&mnist.join("calib")),
        "--ignored-scope",
        "re:(",
        "--output-dir",
        s(out.path()),
    ]));
    assert!(e.contains("ignored pattern"), "{e}");
    let e = usage_error_line(&ovpot(&["quantize", "-m", s(&mnist.join("model.xml")), "--output-dir", s(out.path())]));
    assert!(e.contains("--data"), "{e}");
    // clap's usage errors keep their own exit code (2).
    let o = ovpot(&["quantize", "--no-such-flag"]);
    assert_eq!(o.status.code(), Some(2));
}

/// Usage errors exit 2 like clap's own, with a message that says what to give: a missing model
/// or data, an unknown preset (listing the valid ones), `info` without its positional model.
/// `--help` lists every preset, and `accuracy` is one.
#[test]
fn usage_errors_exit_2_and_say_what_is_valid() {
    let mnist = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/mnist_cnn");
    let (xml, calib, labels) = (mnist.join("model.xml"), mnist.join("calib"), mnist.join("eval_labels.npy"));
    let out = tempfile::tempdir().unwrap();
    let o = s(out.path());
    let e = usage_error_line(&ovpot(&["quantize", "--data", s(&calib), "-o", o]));
    assert!(e.contains("no model given (-m model.xml)"), "{e}");
    let e = usage_error_line(&ovpot(&["quantize", "-m", s(&xml), "-o", o]));
    assert!(e.contains("no data given (--data DIR)"), "{e}");
    for cmd in ["infer", "evaluate"] {
        let mut args = vec![cmd, "-m", s(&xml), "--output-dir", o];
        if cmd == "evaluate" {
            args = vec![cmd, "-m", s(&xml), "--labels", s(&labels)];
        }
        let e = usage_error_line(&ovpot(&args));
        assert!(e.contains("--data"), "{cmd}: {e}");
    }
    let e = usage_error_line(&ovpot(&["quantize", "-m", s(&xml), "--data", s(&calib), "--preset", "fast", "-o", o]));
    assert!(e.contains("--preset 'fast'") && e.contains("performance, mixed or accuracy"), "{e}");
    let e = usage_error_line(&ovpot(&["info"]));
    assert!(e.contains("ovpot info model.xml") && !e.contains("-m model.xml"), "{e}");
    let e = usage_error_line(&ovpot(&["info", s(&xml), "--saturation-fix", "some"]));
    assert!(e.contains("auto, per_layer, first_layer, all or no"), "{e}");
    let e = usage_error_line(&ovpot(&["quantize", "-m", s(&xml), "--data", s(&calib), "--backend", "gpu", "-o", o]));
    assert!(e.contains("builtin or openvino"), "{e}");

    // `accuracy` is a preset: --help says so, and it runs (on CPU it is mixed, as POT maps it).
    let help = stdout(&ovpot(&["quantize", "--help"]));
    assert!(help.contains("accuracy (asymmetric"), "{help}");
    let o = ovpot(&["info", s(&xml), "--preset", "accuracy", "--target-device", "CPU"]);
    assert_ok(&o);
    assert!(stdout(&o).contains("preset mixed"), "{}", stdout(&o));
}

/// Checks a finished quantize run: the IR reads back, runs, carries FakeQuantize, and the report
/// is consistent with it.
fn check_quantized(out: &Path, name: &str, algorithm: &str) {
    let xml = out.join(format!("optimized/{name}.xml"));
    let m = ovpot::Model::read(&xml, None).unwrap_or_else(|e| panic!("{}: {e}", xml.display()));
    let fq = m.graph().nodes.iter().filter(|n| n.op_type == "FakeQuantize").count();
    assert!(fq > 0, "no FakeQuantize in {}", xml.display());
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    // The report lists weight quantizers too; with int8 weights they are constants, not FQ nodes.
    let listed = report["fake_quantize"].as_array().map_or(0, |a| a.len());
    assert!(listed >= fq, "report lists {listed} quantizers, the IR has {fq} FakeQuantize");
    assert!(report["algorithm"].as_str().unwrap_or("").to_lowercase().contains(algorithm), "{report}");
}

#[test]
fn quantize_default_with_flags() {
    let Some(dir) = common::fixture("mnist_cnn") else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let o = ovpot(&[
        "--quiet",
        "quantize",
        "-m",
        s(&dir.join("model.xml")),
        "--data",
        s(&dir.join("calib")),
        "--preset",
        "mixed",
        "--target-device",
        "CPU",
        "--subset-size",
        "64",
        "--output-dir",
        s(out.path()),
    ]);
    assert_ok(&o);
    check_quantized(out.path(), "model", "default");
    let r = read_report(out.path());
    assert_eq!(r["preset"].as_str().map(|p| p.to_lowercase()), Some("mixed".into()), "{r}");
    assert_eq!(r["samples_used"].as_u64(), Some(64), "{r}");
}

/// Writes a POT-style config (comments included, as POT's own templates have them).
fn write_config(dir: &Path, fixture: &Path, algo: &str, extra_engine: &str) -> PathBuf {
    let text = format!(
        r#"/* POT simplified-mode config */
{{
    "model": {{
        "model_name": "digits_int8", // name of the written files
        "model": "{xml}",
        "weights": "{bin}"
    }},
    "engine": {{
        "type": "simplified",
        "data_source": "{data}"{extra_engine}
    }},
    "compression": {{
        "target_device": "ANY",
        "algorithms": [
            {{
                "name": "{algo}",
                "params": {{
                    "preset": "performance",
                    "stat_subset_size": 100,
                    "maximal_drop": 0.01
                }}
            }}
        ]
    }}
}}
"#,
        xml = s(&fixture.join("model.xml")),
        bin = s(&fixture.join("model.bin")),
        data = s(&fixture.join("calib")),
    );
    let p = dir.join(format!("{algo}.json"));
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn quantize_from_pot_configs() {
    let Some(dir) = common::fixture("digits_mlp") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let cfg = write_config(tmp.path(), &dir, "DefaultQuantization", "");
    let o = ovpot(&["--quiet", "quantize", "-c", s(&cfg), "--output-dir", s(&out)]);
    assert_ok(&o);
    check_quantized(&out, "digits_int8", "default");

    // AccuracyAware needs labels: from the command line...
    let cfg = write_config(tmp.path(), &dir, "AccuracyAwareQuantization", "");
    let e = usage_error_line(&ovpot(&["quantize", "-c", s(&cfg), "--output-dir", s(&out)]));
    assert!(e.contains("--labels"), "{e}");
    let o = ovpot(&[
        "--quiet",
        "quantize",
        "-c",
        s(&cfg),
        "--eval-data",
        s(&dir.join("eval")),
        "--labels",
        s(&dir.join("eval_labels.npy")),
        "--output-dir",
        s(&out),
    ]);
    assert_ok(&o);
    check_quantized(&out, "digits_int8", "accuracy");
    let r = read_report(&out);
    let drop = r["accuracy"]["drop"].as_f64().expect("accuracy section");
    assert!(drop <= 0.01 + 1e-9 || r["accuracy"]["reached"] == false, "{r}");
    // ...or from ovpot's engine keys in the config.
    let extra = format!(
        r#", "eval_data_source": "{}", "labels": "{}", "metric_output": 0"#,
        s(&dir.join("eval")),
        s(&dir.join("eval_labels.npy"))
    );
    let cfg = write_config(tmp.path(), &dir, "AccuracyAwareQuantization", &extra);
    let o = ovpot(&["--quiet", "quantize", "-c", s(&cfg), "--output-dir", s(&out)]);
    assert_ok(&o);
    check_quantized(&out, "digits_int8", "accuracy");
}

/// A config using every key of POT's DefaultQuantization spec (written here with ovpot's values):
/// comments, accuracy-checker engine keys, `"model_type": "None"`, per-border range estimators,
/// ignored scope by name and by type with attributes.
#[test]
fn quantize_full_pot_spec_config() {
    let Some(dir) = common::fixture("mnist_cnn") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let ignored = "__module.9/aten::linear/MatMul";
    let text = format!(
        r#"{{
    /* model */
    "model": {{"model_name": "mnist_full", // the written name
              "model": "{xml}", "weights": "{bin}"}},
    "engine": {{"stat_requests_number": 4, "eval_requests_number": 4,
               "type": "simplified", "data_source": "{data}"}},
    "compression": {{
        "target_device": "CPU", "model_type": "None", "dump_intermediate_model": false,
        "inplace_statistics": true,
        "algorithms": [{{"name": "DefaultQuantization", "params": {{
            "ignored": {{"scope": ["{ignored}"],
                        "operations": [{{"type": "Add", "attributes": {{"auto_broadcast": "numpy"}}}}, {{"type": "SoftMax"}}]}},
            "preset": "mixed", "stat_subset_size": 200, "shuffle_data": false, "seed": 0,
            "weights": {{"bits": 8, "mode": "symmetric", "granularity": "perchannel",
                        "level_low": -127, "level_high": 127,
                        "range_estimator": {{"max": {{"type": "quantile", "outlier_prob": 0.0001}}}}}},
            "activations": {{"bits": 8, "mode": "asymmetric", "granularity": "pertensor",
                        "range_estimator": {{"preset": "quantile",
                            "min": {{"clipping_value": 0, "aggregator": "mean", "type": "quantile", "outlier_prob": 0.0001}},
                            "max": {{"clipping_value": 6, "aggregator": "mean", "type": "quantile", "outlier_prob": 0.0001}}}}}}
        }}}}]
    }}
}}
"#,
        xml = s(&dir.join("model.xml")),
        bin = s(&dir.join("model.bin")),
        data = s(&dir.join("calib")),
    );
    let cfg = tmp.path().join("spec.json");
    std::fs::write(&cfg, text).unwrap();
    let out = tmp.path().join("out");
    let o = ovpot(&["--quiet", "quantize", "-c", s(&cfg), "--output-dir", s(&out)]);
    assert_ok(&o);
    check_quantized(&out, "mnist_full", "default");
    let r = read_report(&out);
    let layers = names(&r["quantized_layers"]);
    assert!(!layers.is_empty() && !layers.iter().any(|l| l == ignored), "{layers:?}");
    assert_eq!(r["samples_used"].as_u64(), Some(200), "{r}");
    // The activations block says asymmetric: that is the mixed preset, as the config also says.
    assert_eq!(r["preset"].as_str(), Some("mixed"), "{r}");
    // clipping_value and the weight estimator are honoured: no warning, and no activation range
    // reaches past the clipping values.
    let warnings = r["warnings"].to_string();
    assert!(!warnings.contains("clipping_value") && !warnings.contains("weights.range_estimator"), "{warnings}");
    for fq in r["fake_quantize"].as_array().unwrap() {
        if fq["kind"].as_str().unwrap_or("").starts_with("activation") {
            let (lo, hi) = (fq["input_low"].as_f64().unwrap(), fq["input_high"].as_f64().unwrap());
            assert!(hi <= 6.0 + 1e-6 && lo >= -1e-6, "{fq}");
        }
    }
}

/// `--keep-uncompressed-weights` leaves FP32 weights behind FakeQuantize; `--ignored-scope
/// type:MatMul` keeps every MatMul in floating point; the result still evaluates.
#[test]
fn quantize_flags_change_the_ir() {
    let Some(dir) = common::fixture("mnist_cnn") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let (xml, calib) = (dir.join("model.xml"), dir.join("calib"));
    let base = ["--quiet", "quantize", "-m", s(&xml), "--data", s(&calib)];
    let o = ovpot(&[&base[..], &["--subset-size", "50", "-o", s(&a)]].concat());
    assert_ok(&o);
    let o = ovpot(
        &[
            &base[..],
            &["--subset-size", "50", "--keep-uncompressed-weights", "--ignored-scope", "type:MatMul", "-o", s(&b)],
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let count = |dir: &Path, pred: &dyn Fn(&ovpot::graph::Node) -> bool| {
        let m = ovpot::Model::read(&dir.join("optimized/model.xml"), None).unwrap();
        m.graph().nodes.iter().filter(|n| pred(n)).count()
    };
    let int8_const = |n: &ovpot::graph::Node| {
        n.is_const() && n.value.as_ref().is_some_and(|v| v.element_type() == ovpot::tensor::ElementType::I8)
    };
    let fq = |n: &ovpot::graph::Node| n.op_type == "FakeQuantize";
    assert!(count(&a, &int8_const) > 0, "default: int8 weights");
    assert_eq!(count(&b, &int8_const), 0, "--keep-uncompressed-weights: no int8 constants");
    // Two convolutions left: each has an activation FQ and a weight FQ.
    assert_eq!(count(&b, &fq), 4, "MatMuls ignored, weights as FQ");
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(b.join("report.json")).unwrap()).unwrap();
    let layers = r["quantized_layers"].as_array().unwrap();
    assert!(layers.iter().all(|l| !l.as_str().unwrap_or("").contains("MatMul")), "{layers:?}");

    let o = ovpot(&[
        "evaluate",
        "-m",
        s(&a.join("optimized/model.xml")),
        "--data",
        s(&dir.join("eval")),
        "--labels",
        s(&dir.join("eval_labels.npy")),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // NNCF's INT8 model scores 0.956 on these 1000 samples (FP32: 0.957).
    let acc: f64 = stdout(&o).split_whitespace().nth(2).and_then(|x| x.parse().ok()).unwrap();
    assert!(acc > 0.94, "{}", stdout(&o));
}

/// `-q accuracy_aware` (POT's spelling) with flags only; the report carries the metric.
#[test]
fn quantize_accuracy_aware_flags() {
    let Some(dir) = common::fixture("digits_mlp") else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let (xml, calib, eval, labels) =
        (dir.join("model.xml"), dir.join("calib"), dir.join("eval"), dir.join("eval_labels.npy"));
    let o = ovpot(&[
        "--quiet",
        "quantize",
        "-q",
        "accuracy_aware",
        "-m",
        s(&xml),
        "--data",
        s(&calib),
        "--eval-data",
        s(&eval),
        "--labels",
        s(&labels),
        "--max-drop",
        "0.005",
        "-o",
        s(out.path()),
    ]);
    assert_ok(&o);
    check_quantized(out.path(), "model", "accuracy");
    let r = read_report(out.path());
    assert_eq!(r["accuracy"]["maximal_drop"].as_f64(), Some(0.005), "{r}");
    // FP32 accuracy on the 540 eval digits is 0.9778 (meta.json).
    assert!((r["accuracy"]["baseline"].as_f64().unwrap() - 0.9778).abs() < 0.001, "{r}");
}

/// The `info` plan section: "    <name>  <type>: ..." lines under a heading, up to the next heading.
fn plan_lines<'a>(out: &'a str, heading: &str) -> Vec<&'a str> {
    out.lines()
        .skip_while(|l| !l.trim_start().starts_with(heading))
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .collect()
}

fn plan_count(out: &str, heading: &str) -> usize {
    out.lines()
        .find_map(|l| l.trim_start().strip_prefix(heading))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no '{heading}' in:\n{out}"))
}

/// `info` shows the quantize path's placement: the ops, what on them is quantized, the ignored
/// ones with reasons and the FakeQuantize count, which the IR quantize writes matches.
#[test]
fn info_shows_what_would_be_quantized() {
    let Some(dir) = common::fixture("mnist_cnn") else {
        return;
    };
    let xml = dir.join("model.xml");
    let o = ovpot(&["info", s(&xml)]);
    assert_ok(&o);
    let out = stdout(&o);
    assert!(out.contains("quantization (device ANY, preset performance):"), "{out}");
    // Two convolutions and two MatMuls, each with an activation and a weight quantizer.
    let quantized = plan_lines(&out, "quantized ops:");
    assert_eq!(plan_count(&out, "quantized ops:"), 4, "{out}");
    assert_eq!(quantized.len(), 4, "{out}");
    for l in &quantized {
        assert!(l.contains("activation from '") && l.contains("8-bit symmetric"), "{l}");
        assert!(l.contains("weights on input 1 (8-bit symmetric per channel"), "{l}");
    }
    assert_eq!(plan_count(&out, "ignored ops:"), 0, "{out}");
    assert!(out.contains("FakeQuantize to insert: 8 (4 on activations, 4 on weights;"), "{out}");

    // The count is what quantize inserts (weights as FQ when kept uncompressed).
    let tmp = tempfile::tempdir().unwrap();
    let o = ovpot(&[
        "--quiet",
        "quantize",
        "-m",
        s(&xml),
        "--data",
        s(&dir.join("calib")),
        "--subset-size",
        "20",
        "--keep-uncompressed-weights",
        "-o",
        s(tmp.path()),
    ]);
    assert_ok(&o);
    let m = ovpot::Model::read(&tmp.path().join("optimized/model.xml"), None).unwrap();
    assert_eq!(m.graph().nodes.iter().filter(|n| n.op_type == "FakeQuantize").count(), 8);
    let listed: Vec<String> = quantized.iter().map(|l| l.trim().split("  ").next().unwrap().to_string()).collect();
    assert_eq!(names(&read_report(tmp.path())["quantized_layers"]), listed);

    // An ignored layer moves to the ignored list with its reason.
    let conv = "__module.3/aten::_convolution/Convolution";
    let o = ovpot(&["info", s(&xml), "--ignored-scope", conv, "--preset", "mixed"]);
    assert_ok(&o);
    let out = stdout(&o);
    assert!(out.contains("preset mixed"), "{out}");
    assert_eq!(plan_count(&out, "quantized ops:"), 3, "{out}");
    let ignored = plan_lines(&out, "ignored ops:");
    assert_eq!(ignored, [format!("    {conv}  Convolution: ignored scope: name")], "{out}");
    assert!(plan_lines(&out, "quantized ops:").iter().all(|l| l.contains("8-bit asymmetric")), "{out}");

    // GNA quantizes the same ops with 16-bit activations.
    let o = ovpot(&["info", s(&xml), "--target-device", "GNA"]);
    assert_ok(&o);
    let out = stdout(&o);
    assert!(out.contains("device GNA"), "{out}");
    let gna = plan_lines(&out, "quantized ops:");
    assert_eq!(gna.len(), 4, "{out}");
    assert!(gna.iter().all(|l| l.contains("16-bit symmetric") && !l.contains("half range")), "{out}");

    // A quantized IR has nothing left to quantize; bad options are one-line errors.
    let o = ovpot(&["info", s(&dir.join("nncf_int8.xml"))]);
    assert_ok(&o);
    assert!(stdout(&o).contains("already quantized"), "{}", stdout(&o));
    let e = usage_error_line(&ovpot(&["info", s(&xml), "--target-device", "TPU"]));
    assert!(e.contains("--target-device 'TPU'"), "{e}");
}

/// Settings of POT's own config files, with the paths substituted. The keys and values are those
/// of POT's `simplified_mode_template.json`, `default_quantization_spec.json`,
/// `accuracy_aware_quantization_template.json` and `accuracy_aware_quantization_spec.json`
/// (tools/pot/configs in openvinotoolkit/openvino), including their placeholders and spellings;
/// the comments are short notes of ours.
const POT_SIMPLIFIED_TEMPLATE: &str = r#"/* simplified mode: DefaultQuantization on a folder of data */
{
    "model": {
        "model_name": "model_name", // name of the optimized files
        "model": "<MODEL_PATH>", // .xml
        "weights": "<PATH_TO_WEIGHTS>" // .bin
    },
    "engine": {
        "type": "simplified",
        "data_source": "PATH_TO_SOURCE" // folder of samples
    },
    "compression": {
        "target_device": "ANY",
        "algorithms": [
            {
                "name": "DefaultQuantization",
                "params": {
                    "preset": "performance", // symmetric
                    "stat_subset_size": 300
                }
            }
        ]
    }
}
"#;

/// The DefaultQuantization example of POT's documentation.
const POT_DOCS_DEFAULT: &str = r#"{
    "model": {"model_name": "doc_default", "model": "<MODEL_PATH>", "weights": "<PATH_TO_WEIGHTS>"},
    "engine": {"type": "simplified", "data_source": "PATH_TO_SOURCE"},
    "compression": {"target_device": "ANY", "algorithms": [{"name": "DefaultQuantization",
        "params": {"preset": "performance", "stat_subset_size": 300, "stat_batch_size": 1}}]}
}
"#;

const POT_DEFAULT_SPEC: &str = r#"{
    /* model */
    "model": {
        "model_name": "model_name",
        "model": "<MODEL_PATH>",
        "weights": "<PATH_TO_WEIGHTS>"
    },
    /* engine: accuracy checker keys, then the simplified mode (which wins with "type") */
    "engine": {
        "stat_requests_number": 8,
        "eval_requests_number": 8,
        "config": "<CONFIG_PATH>",
        "name": "model_name",
        "launchers": [{"framework": "dlsdk", "device": "CPU", "adapter": "classification"}],
        "datasets": [{
            "name": "dataset_name",
            "data_source": "<DATASET_PATH>",
            "annotation": "<ANNOTATION_PATH>",
            "preprocessing": [{"type": "resize", "interpolation": "BILINEAR", "aspect_ratio_scale": "greater", "size": 224}],
            "metrics": [{"name": "accuracy@top1", "type": "accuracy", "top_k": 1}]
        }],
        "type": "simplified", // "accuracy_checker" otherwise
        "data_source": "PATH_TO_SOURCE"
    },
    "compression": {
        "target_device": "ANY",
        "model_type": "None", // or "transformer"
        "dump_intermediate_model": false,
        "inplase_statistics": true, // POT's spec spells it so
        "algorithms": [
            {
                "name": "DefaultQuantization",
                "params": {
                    "ignored": {
                        "scope": ["<NODE_NAME>"],
                        "operations": [
                            {"type": "<NODE_TYPE>", "attributes": {"<NAME>": "<VALUE>"}},
                            {"type": "<NODE_TYPE>"}
                        ]
                    },
                    "preset": "mixed",
                    "stat_subset_size": 100,
                    "shuffle_data": false,
                    "seed": 0,
                    "weights": {
                        "bits": 8,
                        "mode": "symmetric",
                        "granularity": "perchannel",
                        "level_low": -127,
                        "level_high": 127,
                        "range_estimator": {
                            "max": {"type": "quantile", "outlier_prob": 0.0001}
                        }
                    },
                    "activations": {
                        "bits": 8,
                        "mode": "symmetric", // overrides the mixed preset
                        "granularity": "pertensor",
                        "range_estimator": {
                            "preset": "quantile",
                            /* or per border: */
                            "min": {"clipping_value": 0, "aggregator": "mean", "type": "quantile", "outlier_prob": 0.0001},
                            "max": {"clipping_value": 6, "aggregator": "mean", "type": "quantile", "outlier_prob": 0.0001}
                        }
                    }
                }
            }
        ]
    }
}
"#;

const POT_AA_TEMPLATE: &str = r#"/* accuracy aware: needs an annotated data set */
{
    "model": {
        "model_name": "model_name",
        "model": "<MODEL_PATH>",
        "weights": "<PATH_TO_WEIGHTS>"
    },
    "engine": {
        "config": "<CONFIG_PATH>" // accuracy checker YAML
    },
    "compression": {
        "target_device": "ANY",
        "algorithms": [
            {
                "name": "AccuracyAwareQuantization",
                "params": {
                    "preset": "performance",
                    "stat_subset_size": 300,
                    "maximal_drop": 0.01,
                    "tune_hyperparams": false
                }
            }
        ]
    }
}
"#;

const POT_AA_SPEC: &str = r#"{
    "model": {"model_name": "model_name", "model": "<MODEL_PATH>", "weights": "<PATH_TO_WEIGHTS>"},
    "engine": {
        "stat_requests_number": 8,
        "eval_requests_number": 8,
        "config": "<CONFIG_PATH>",
        "name": "model_name",
        "launchers": [{"framework": "dlsdk", "device": "CPU", "adapter": "classification"}],
        "datasets": [{"name": "dataset_name", "data_source": "<DATASET_PATH>", "annotation": "<ANNOTATION_PATH>",
                      "preprocessing": [{"type": "resize", "interpolation": "BILINEAR", "aspect_ratio_scale": "greater", "size": 224}],
                      "metrics": [{"name": "accuracy@top1", "type": "accuracy", "top_k": 1}]}]
    },
    "compression": {
        "target_device": "ANY",
        "inplace_statistics": true,
        "model_type": "None",
        "algorithms": [
            {
                "name": "AccuracyAwareQuantization",
                "params": {
                    "ranking_subset_size": 300,
                    "max_iter_num": 20, // layers that may be reverted
                    "maximal_drop": 0.005,
                    "drop_type": "absolute",
                    "use_prev_if_drop_increase": false,
                    "base_algorithm": "DefaultQuantization",
                    "annotation_free": false,
                    "annotation_conf_threshold": 0.6,
                    "convert_to_mixed_preset": false,
                    "metrics": [{"name": "accuracy", "baseline_value": 0.72}],
                    "metric_subset_ratio": 0.5,
                    "tune_hyperparams": false,
                    "ignored": {
                        "scope": ["<NODE_NAME>"],
                        "operations": [{"type": "<NODE_TYPE>", "attributes": {"<NAME>": "<VALUE>"}}, {"type": "<NODE_TYPE>"}]
                    },
                    "preset": "mixed",
                    "stat_subset_size": 100,
                    "weights": {
                        "bits": 8, "mode": "symmetric", "granularity": "perchannel", "level_low": -127, "level_high": 127,
                        "range_estimator": {"max": {"type": "quantile", "outlier_prob": 0.0001}}
                    },
                    "activations": {
                        "bits": 8, "mode": "asymmetric", "granularity": "pertensor",
                        "range_estimator": {
                            "preset": "quantile",
                            "min": {"aggregator": "mean", "type": "quantile", "outlier_prob": 0.0001},
                            "max": {"aggregator": "mean", "type": "quantile", "outlier_prob": 0.0001}
                        }
                    }
                }
            }
        ]
    }
}
"#;

/// A POT config with its placeholders replaced by a fixture's files.
fn pot_config(tmp: &Path, name: &str, template: &str, fixture: &Path) -> PathBuf {
    let text = template
        .replace("<MODEL_PATH>", s(&fixture.join("model.xml")))
        .replace("<PATH_TO_WEIGHTS>", s(&fixture.join("model.bin")))
        .replace("PATH_TO_SOURCE", s(&fixture.join("calib")))
        .replace("<CONFIG_PATH>", s(&tmp.join("accuracy_checker.yml")));
    let p = tmp.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn quantize_runs_pot_default_configs() {
    let Some(dir) = common::fixture("mnist_cnn") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        ("template.json", POT_SIMPLIFIED_TEMPLATE, "model_name", 300),
        ("docs.json", POT_DOCS_DEFAULT, "doc_default", 300),
        ("spec.json", POT_DEFAULT_SPEC, "model_name", 100),
    ];
    for (file, template, name, samples) in cases {
        let cfg = pot_config(tmp.path(), file, template, &dir);
        let out = tmp.path().join(format!("out_{file}"));
        let o = ovpot(&["--log-level", "warning", "quantize", "-c", s(&cfg), "-o", s(&out)]);
        assert_ok(&o);
        check_quantized(&out, name, "default");
        let r = read_report(&out);
        assert_eq!(r["samples_used"].as_u64(), Some(samples), "{file}: {r}");
        assert_eq!(r["target_device"].as_str(), Some("ANY"), "{file}: {r}");
        // The spec's activations block asks for symmetric: performance, despite "preset": "mixed".
        assert_eq!(r["preset"].as_str(), Some("performance"), "{file}: {r}");
        assert_eq!(names(&r["quantized_layers"]).len(), 4, "{file}: {r}");
        let warnings: Vec<String> = r["warnings"].as_array().unwrap().iter().map(|w| w.to_string()).collect();
        if file == "spec.json" {
            // Every setting not applied is named, on stderr and in the report; clipping_value
            // and the weight estimator are applied.
            let key = "'<NODE_NAME>'";
            assert!(warnings.iter().any(|w| w.contains(key)), "{key}: {warnings:?}");
            assert!(stderr(&o).contains(key), "{key}: {}", stderr(&o));
            for applied in ["clipping_value", "weights.range_estimator"] {
                assert!(!warnings.iter().any(|w| w.contains(applied)), "{applied}: {warnings:?}");
            }
        } else {
            assert!(stderr(&o).is_empty(), "{file}: {}", stderr(&o));
        }
    }
}

#[test]
fn quantize_runs_pot_accuracy_aware_configs() {
    let Some(dir) = common::fixture("digits_mlp") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    for (file, template, drop) in [("aa_template.json", POT_AA_TEMPLATE, 0.01), ("aa_spec.json", POT_AA_SPEC, 0.005)] {
        let cfg = pot_config(tmp.path(), file, template, &dir);
        let out = tmp.path().join(format!("out_{file}"));
        let o = ovpot(&[
            "quantize",
            "-c",
            s(&cfg),
            "--data",
            s(&dir.join("calib")),
            "--eval-data",
            s(&dir.join("eval")),
            "--labels",
            s(&dir.join("eval_labels.npy")),
            "-o",
            s(&out),
        ]);
        assert_ok(&o);
        // The accuracy-checker engine is named as unused, not silently dropped.
        assert!(stderr(&o).contains("accuracy-checker engine"), "{file}: {}", stderr(&o));
        check_quantized(&out, "model_name", "accuracy");
        let r = read_report(&out);
        assert_eq!(r["accuracy"]["maximal_drop"].as_f64(), Some(drop), "{file}: {r}");
        let acc = &r["accuracy"];
        assert!(acc["drop"].as_f64().unwrap() <= drop + 1e-9 || acc["reached"] == false, "{file}: {r}");
        if file == "aa_spec.json" {
            assert_eq!(r["preset"].as_str(), Some("mixed"), "{r}");
            assert_eq!(r["samples_used"].as_u64(), Some(100), "{r}");
            assert!(r["warnings"].to_string().contains("'metrics'"), "{r}");
        }
    }
}

/// POT's default engine (the accuracy checker) is not available: without data the error says so
/// and what to give instead, for both algorithms.
#[test]
fn accuracy_checker_engine_is_a_clear_error() {
    let Some(dir) = common::fixture("digits_mlp") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let default = POT_AA_TEMPLATE.replace("AccuracyAwareQuantization", "DefaultQuantization");
    for (file, template) in [("default.json", default.as_str()), ("aa.json", POT_AA_TEMPLATE)] {
        let cfg = pot_config(tmp.path(), file, template, &dir);
        let e = usage_error_line(&ovpot(&["quantize", "-c", s(&cfg), "-o", s(&out)]));
        assert!(e.contains("accuracy-checker engine") && e.contains("accuracy_checker.yml"), "{e}");
        assert!(e.contains("not supported") && e.contains("--data DIR"), "{e}");
        assert!(e.contains("\"type\": \"simplified\""), "{e}");
        assert_eq!(e.contains("--labels"), file == "aa.json", "{e}");
        // Data without labels: accuracy-aware still names the engine.
        if file == "aa.json" {
            let e =
                usage_error_line(&ovpot(&["quantize", "-c", s(&cfg), "--data", s(&dir.join("calib")), "-o", s(&out)]));
            assert!(e.contains("accuracy-checker engine") && e.contains("--labels"), "{e}");
        }
    }
    // Inline launchers and datasets are an accuracy-checker engine too.
    let cfg = pot_config(tmp.path(), "spec.json", POT_AA_SPEC, &dir);
    let e = usage_error_line(&ovpot(&["quantize", "-c", s(&cfg), "-o", s(&out)]));
    assert!(e.contains("accuracy-checker engine"), "{e}");
}

/// A bad --output-dir fails before any data is read or quantized.
#[test]
fn unwritable_output_dir_fails_first() {
    let Some(dir) = common::fixture("mnist_cnn") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a_file");
    std::fs::write(&file, "x").unwrap();
    let bad = file.join("results");
    let o = ovpot(&["quantize", "-m", s(&dir.join("model.xml")), "--data", s(&dir.join("calib")), "-o", s(&bad)]);
    let e = error_line(&o);
    assert!(e.contains("--output-dir") && e.contains(s(&bad)), "{e}");
    assert!(!stderr(&o).contains("quantizing"), "quantization started: {}", stderr(&o));
    // Data that does not exist is not even looked at.
    let o = ovpot(&["quantize", "-m", s(&dir.join("model.xml")), "--data", "/nonexistent", "-o", s(&bad)]);
    assert!(error_line(&o).contains("--output-dir"), "{}", stderr(&o));
}

/// Face-like test images for MTCNN's RNet (24x24 input): `n` images of the given extension.
fn write_images(dir: &Path, n: u8, ext: &str) {
    for i in 0..n {
        let img = image::RgbImage::from_fn(40, 36, |x, y| {
            image::Rgb([(x * 6) as u8, (y * 7) as u8, 30u8.wrapping_mul(i).wrapping_add((x + y) as u8)])
        });
        img.save(dir.join(format!("img{i}.{ext}"))).unwrap();
    }
}

fn infer_out1(xml: &Path, data: &Path, extra: &[&str]) -> ovpot::tensor::Tensor {
    let out = tempfile::tempdir().unwrap();
    let o = ovpot(&[&["--quiet", "infer", "-m", s(xml), "--data", s(data), "-o", s(out.path())], extra].concat());
    assert_ok(&o);
    ovpot::npy::read_npy(&out.path().join("out1.npy")).unwrap()
}

#[test]
fn jpeg_images_and_layout_flag() {
    let Some(dir) = common::fixture("mtcnn_rnet") else {
        return;
    };
    let xml = dir.join("model.xml");
    let jpegs = tempfile::tempdir().unwrap();
    write_images(jpegs.path(), 2, "jpg");
    write_images(jpegs.path(), 1, "jpeg");
    let p = infer_out1(&xml, jpegs.path(), &[]);
    // img0.jpeg, img0.jpg, img1.jpg: all three read, each a face/not-face softmax.
    assert_eq!(p.shape(), &[3, 2]);
    for row in p.to_f64_vec().chunks(2) {
        assert!((row[0] + row[1] - 1.0).abs() < 1e-5, "{row:?}");
    }
    // The JPEGs decode to about the pixels a PNG of the same image holds.
    let pngs = tempfile::tempdir().unwrap();
    write_images(pngs.path(), 1, "png");
    let jpg1 = tempfile::tempdir().unwrap();
    write_images(jpg1.path(), 1, "jpg");
    let (a, b) = (infer_out1(&xml, pngs.path(), &[]), infer_out1(&xml, jpg1.path(), &[]));
    assert!(common::max_abs_diff(&a, &b) < 0.1, "{:?} vs {:?}", a.to_f64_vec(), b.to_f64_vec());

    // --layout: the guess (NCHW for [1,3,24,24]) given explicitly changes nothing ...
    let forced = infer_out1(&xml, jpegs.path(), &["--layout", "NCHW"]);
    assert_eq!(common::max_abs_diff(&forced, &p), 0.0);
    // ... and the other layout puts 24 channels where images have 3.
    let out = tempfile::tempdir().unwrap();
    let o = ovpot(&["infer", "-m", s(&xml), "--data", s(jpegs.path()), "--layout", "nhwc", "-o", s(out.path())]);
    let e = error_line(&o);
    assert!(e.contains("layout NHWC") && e.contains("24 channels"), "{e}");
    let e = error_line(&ovpot(&["infer", "-m", s(&xml), "--data", s(jpegs.path()), "--layout", "CHW", "-o", "x"]));
    assert!(e.contains("layout 'CHW'"), "{e}");
}

#[test]
fn quantize_from_an_image_folder() {
    let Some(dir) = common::fixture("mtcnn_rnet") else {
        return;
    };
    let imgs = tempfile::tempdir().unwrap();
    write_images(imgs.path(), 6, "png");
    write_images(imgs.path(), 2, "jpg");
    let out = tempfile::tempdir().unwrap();
    let o = ovpot(&[
        "--quiet",
        "quantize",
        "-m",
        s(&dir.join("model.xml")),
        "--data",
        s(imgs.path()),
        "--mean",
        "127.5",
        "--scale",
        "128",
        "-n",
        "rnet_int8",
        "-o",
        s(out.path()),
    ]);
    assert_ok(&o);
    check_quantized(out.path(), "rnet_int8", "default");
    assert_eq!(read_report(out.path())["samples_used"].as_u64(), Some(8));
    // The quantized model still runs on the images.
    let q =
        infer_out1(&out.path().join("optimized/rnet_int8.xml"), imgs.path(), &["--mean", "127.5", "--scale", "128"]);
    assert_eq!(q.shape(), &[8, 2]);
}

#[test]
fn log_levels() {
    let Some(dir) = common::fixture("digits_mlp") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let run = |level: &str| {
        let (out, xml, calib) = (tmp.path().join(level), dir.join("model.xml"), dir.join("calib"));
        let args = ["--log-level", level, "quantize", "-m", s(&xml), "--data", s(&calib)];
        let o = ovpot(&[&args[..], &["--subset-size", "30", "-o", s(&out)]].concat());
        assert_ok(&o);
        check_quantized(&out, "model", "default");
        stderr(&o)
    };
    let quiet = run("error");
    assert!(quiet.is_empty(), "--log-level error prints nothing on success: {quiet}");
    let info = run("info");
    assert!(info.lines().any(|l| l.starts_with("[info] quantizing")), "{info}");
    assert!(!info.contains("[debug]"), "{info}");
    let debug = run("debug");
    assert!(debug.lines().filter(|l| l.starts_with("[debug] ")).count() >= 2, "{debug}");
    assert!(debug.contains("[debug] settings: {"), "{debug}");
}

/// `-w` reads weights from any path and name.
#[test]
fn weights_at_another_path() {
    let Some(dir) = common::fixture("mnist_cnn") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let xml = tmp.path().join("net.xml");
    std::fs::copy(dir.join("model.xml"), &xml).unwrap();
    std::fs::create_dir(tmp.path().join("w")).unwrap();
    let weights = tmp.path().join("w/params.data");
    std::fs::copy(dir.join("model.bin"), &weights).unwrap();
    let out = tmp.path().join("out");
    let o =
        ovpot(&["--quiet", "infer", "-m", s(&xml), "-w", s(&weights), "--data", s(&dir.join("ref/in")), "-o", s(&out)]);
    assert_ok(&o);
    let want = ovpot::npy::read_npy(&dir.join("ref/out0.npy")).unwrap();
    let got = ovpot::npy::read_npy(&out.join("out0.npy")).unwrap();
    assert!(common::max_abs_diff(&got, &want) <= 1e-4 * common::max_abs(&want).max(1.0));
    let q = tmp.path().join("q");
    let calib = dir.join("calib");
    let args = ["--quiet", "quantize", "-m", s(&xml), "-w", s(&weights), "--data", s(&calib)];
    assert_ok(&ovpot(&[&args[..], &["--subset-size", "20", "-o", s(&q)]].concat()));
    check_quantized(&q, "net", "default");
    // Without -w the default net.bin is missing, and the error names it.
    let e = error_line(&ovpot(&["info", s(&xml)]));
    assert!(e.contains("net.bin"), "{e}");
}

/// `--ignored-scope` by name and by `re:` pattern: the report lists both with their reasons.
#[test]
fn ignored_scope_by_name_and_pattern() {
    let Some(dir) = common::fixture("mnist_cnn") else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let conv = "__module.0/aten::_convolution/Convolution";
    let o = ovpot(&[
        "--quiet",
        "quantize",
        "-m",
        s(&dir.join("model.xml")),
        "--data",
        s(&dir.join("calib")),
        "--subset-size",
        "30",
        "--ignored-scope",
        conv,
        "--ignored-scope",
        r"re:__module\.9/.*/MatMul",
        "-o",
        s(out.path()),
    ]);
    assert_ok(&o);
    check_quantized(out.path(), "model", "default");
    let r = read_report(out.path());
    let ignored = r["ignored"].as_array().unwrap();
    let reason =
        |name: &str| ignored.iter().find(|i| i["name"] == name).map(|i| i["reason"].as_str().unwrap().to_string());
    assert_eq!(reason(conv).as_deref(), Some("ignored scope: name"), "{r}");
    let fc = "__module.9/aten::linear/MatMul";
    assert!(reason(fc).is_some_and(|x| x.contains("pattern")), "{r}");
    assert_eq!(ignored.len(), 2, "{r}");
    let layers = names(&r["quantized_layers"]);
    assert_eq!(layers.len(), 2, "{layers:?}");
    assert!(!layers.iter().any(|l| l == conv || l == fc), "{layers:?}");
}

/// `--as-openvino-cpu`: the int8 ppocr_cls IR scores what OpenVINO scores (0.945, recorded in
/// tests/data/ppocr_cls/int8/openvino_out.npy); by FakeQuantize semantics it scores 0.935.
#[test]
fn evaluate_as_openvino_cpu() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ppocr_cls");
    let (xml, eval, labels) = (dir.join("int8/model.xml"), dir.join("eval"), dir.join("eval_labels.npy"));
    let run = |extra: &[&str]| {
        let mut args = vec!["evaluate", "-m", s(&xml), "--data", s(&eval), "--labels", s(&labels)];
        args.extend_from_slice(extra);
        let o = ovpot(&args);
        assert_ok(&o);
        (stdout(&o), stderr(&o))
    };
    let (as_cpu, log) = run(&["--as-openvino-cpu", "--target-isa", "vnni"]);
    assert!(as_cpu.starts_with("top-1 accuracy: 0.9450 (189/200"), "{as_cpu}");
    assert!(log.contains("7 FakeQuantize(s) clamp without rounding"), "{log}");
    // A CPU without VNNI (OpenVINO measures 0.910 there: tests/cpu_plugin.rs).
    let (no_vnni, log) = run(&["--as-openvino-cpu", "--target-isa", "avx2"]);
    assert!(no_vnni.starts_with("top-1 accuracy: 0.9100 (182/200"), "{no_vnni}");
    assert!(log.contains("on avx2 (asked") && log.contains("41 int8 layer(s) can saturate"), "{log}");
    let (plain, _) = run(&[]);
    assert!(plain.starts_with("top-1 accuracy: 0.9350 (187/200"), "{plain}");
}

#[test]
fn compress_weights_writes_the_model_and_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/mnist_cnn/model.xml");
    let out = dir.path().join("w4");
    let o = ovpot(&[
        "compress-weights",
        "-m",
        s(&model),
        "--mode",
        "int4_sym",
        "--group-size",
        "-1",
        "--output-dir",
        s(&out),
    ]);
    assert_ok(&o);
    assert!(stderr(&o).contains("int4"), "{}", stderr(&o));
    let report = read_report(&out);
    let layers = report["layers"].as_array().unwrap();
    assert!(layers.iter().any(|l| l["bits"] == 4) && layers.iter().any(|l| l["bits"] == 8), "{report}");
    let xml = out.join("optimized/model.xml");
    assert!(engine_runs(&xml));
    // Bad options are one-line errors, before anything is written.
    let bad = dir.path().join("bad");
    let e = usage_error_line(&ovpot(&["compress-weights", "-m", s(&model), "--mode", "int3", "--output-dir", s(&bad)]));
    assert!(e.contains("--mode int3"), "{e}");
    let e = error_line(&ovpot(&["compress-weights", "-m", s(&model), "--ratio", "0.5", "--output-dir", s(&bad)]));
    assert!(e.contains("ratio"), "{e}");
    assert!(!bad.exists(), "an output folder was created for a refused run");
}

/// Data-free mode: `--engine data_free` makes synthetic images for the model's input (saved as PNG
/// into --data), quantizes on them, and a second run reuses the saved images.
#[test]
fn quantize_data_free_makes_saves_and_reuses_images() {
    let Some(dir) = common::fixture("mnist_cnn") else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let images = out.path().join("images");
    let args = |o: &Path| {
        vec![
            "quantize".to_string(),
            "-m".into(),
            s(&dir.join("model.xml")).into(),
            "--engine".into(),
            "data_free".into(),
            "--data".into(),
            s(&images).into(),
            "--subset-size".into(),
            "30".into(),
            "--output-dir".into(),
            s(o).into(),
        ]
    };
    let first = out.path().join("first");
    let o = ovpot(&args(&first).iter().map(String::as_str).collect::<Vec<_>>());
    assert_ok(&o);
    assert!(stderr(&o).contains("data-free: 30 synthetic fractal images"), "{}", stderr(&o));
    assert_eq!(stderr(&o).matches("data-free ranges, ").count(), 2, "two estimators tried: {}", stderr(&o));
    check_quantized(&first, "model", "default");
    let pngs = std::fs::read_dir(&images).unwrap().count();
    assert_eq!(pngs, 30);
    let second = out.path().join("second");
    let o = ovpot(&args(&second).iter().map(String::as_str).collect::<Vec<_>>());
    assert_ok(&o);
    assert!(stderr(&o).contains("data-free: using the images in"), "{}", stderr(&o));
    // The same images give the same model.
    let a = std::fs::read(first.join("optimized/model.bin")).unwrap();
    let b = std::fs::read(second.join("optimized/model.bin")).unwrap();
    assert_eq!(a, b);
}

/// POT's own config spec files (tests/data/pot_configs, from POT's repository) with the model
/// pointed at a fixture: each is read, no key is dropped silently (what ovpot does not apply is
/// named in a warning), and the run quantizes.
#[test]
fn pot_spec_configs_are_read_with_every_key_accounted_for() {
    let Some(dir) = common::fixture("mnist_cnn") else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pot_configs");
    let tmp = tempfile::tempdir().unwrap();
    let mut seen = 0;
    for spec in ["default_quantization_spec", "accuracy_aware_quantization_spec", "data_free_mode_template"] {
        let path = root.join(format!("{spec}.json"));
        seen += 1;
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        // The spec's placeholders pointed at the fixture.
        let adapted = text
            .replace("<MODEL_PATH>", s(&dir.join("model.xml")))
            .replace("<PATH_TO_WEIGHTS>", s(&dir.join("model.bin")))
            .replace("<DATASET_PATH>", s(&dir.join("calib")))
            .replace("PATH_TO_SOURCE", s(&tmp.path().join("synthetic")));
        let config = tmp.path().join(format!("{name}.json"));
        std::fs::write(&config, &adapted).unwrap();
        let out = tmp.path().join(&name);
        let mut args =
            vec!["quantize", "-c", s(&config), "-n", "model", "--subset-size", "20", "--output-dir", s(&out)];
        let calib = dir.join("calib");
        let eval = dir.join("eval");
        let labels = dir.join("eval_labels.npy");
        if !name.contains("data_free") {
            // The spec's accuracy-checker engine is replaced by plain data, as the README says.
            args.extend(["--engine", "simplified", "--data", s(&calib)]);
        }
        if name.contains("accuracy_aware") {
            args.extend(["--eval-data", s(&eval), "--labels", s(&labels)]);
        }
        let o = ovpot(&args);
        let err = stderr(&o);
        assert!(o.status.success(), "{name}: {err}");
        check_quantized(&out, "model", if name.contains("accuracy_aware") { "accuracy" } else { "default" });
        // Keys the spec sets and ovpot does not apply are named.
        if name == "accuracy_aware_quantization_spec" {
            assert!(err.contains("'metrics'"), "the accuracy-checker metrics are named: {err}");
        }
        if name == "data_free_mode_template" {
            assert!(err.contains("engine.shape"), "{err}");
            assert!(tmp.path().join("synthetic/000000.png").exists(), "images saved to data_source");
        }
        assert!(!err.contains("not a known POT"), "{name}: a POT key unknown to ovpot:\n{err}");
    }
    assert_eq!(seen, 3);
}

/// Replaces the string value of every `"key": "..."` in a JSON text (object values are left).
fn replace_string_values(text: &str, key: &str, value: &str) -> String {
    let pat = format!("\"{key}\"");
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(&pat) {
        let (head, tail) = rest.split_at(i + pat.len());
        out.push_str(head);
        let after = tail.trim_start();
        let Some(after_colon) = after.strip_prefix(':') else {
            rest = tail;
            continue;
        };
        let v = after_colon.trim_start();
        match v.strip_prefix('"').and_then(|v| v.find('"').map(|end| &v[end + 1..])) {
            Some(remaining) => {
                out.push_str(&format!(": \"{value}\""));
                rest = remaining;
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

/// Every other JSON config of POT's `configs/` folder (templates and the examples, with their
/// comments and trailing commas; tests/data/pot_configs) run with the model pointed at a fixture
/// and the data at its calibration set: each quantizes, or stops with an error saying why, and
/// every key or algorithm ovpot does not apply is named in a warning.
#[test]
fn pot_example_configs_run_or_say_why() {
    let Some(dir) = common::fixture("mnist_cnn") else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pot_configs");
    let specs = ["default_quantization_spec", "accuracy_aware_quantization_spec", "data_free_mode_template"];
    let mut files = vec![];
    let mut dirs = vec![root.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                files.push(p);
            }
        }
    }
    files.sort();
    let tmp = tempfile::tempdir().unwrap();
    let (calib, eval, labels) = (dir.join("calib"), dir.join("eval"), dir.join("eval_labels.npy"));
    let mut ran = 0;
    for path in &files {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if specs.contains(&name.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        let adapted = replace_string_values(
            &replace_string_values(&text, "model", s(&dir.join("model.xml"))),
            "weights",
            s(&dir.join("model.bin")),
        );
        let config = tmp.path().join(format!("{name}.json"));
        std::fs::write(&config, &adapted).unwrap();
        let out = tmp.path().join(&name);
        let mut args =
            vec!["quantize", "-c", s(&config), "-n", "model", "--subset-size", "20", "--output-dir", s(&out)];
        args.extend(["--engine", "simplified", "--data", s(&calib)]);
        let accuracy_aware = text.contains("AccuracyAwareQuantization");
        if accuracy_aware {
            args.extend(["--eval-data", s(&eval), "--labels", s(&labels)]);
        }
        let o = ovpot(&args);
        let err = stderr(&o);
        let expect_error = match name.as_str() {
            "cascaded_model_default_quantizatoin_spec" | "mtcnn_int8" => Some("'model.cascade'"),
            "mobilenetV2_pytorch_int8_tune_quantile" => Some("QuantileTuningAlgorithm"),
            _ => None,
        };
        if let Some(what) = expect_error {
            let e = error_line(&o);
            assert!(e.contains(what) && e.contains("not"), "{name}: {e}");
            continue;
        }
        assert!(o.status.success(), "{name}: {err}");
        ran += 1;
        check_quantized(&out, "model", if accuracy_aware { "accuracy" } else { "default" });
        assert!(!err.contains("not a known POT"), "{name}: a POT key unknown to ovpot:\n{err}");
        let named = |what: &str| assert!(err.contains(what), "{name}: '{what}' not named:\n{err}");
        if text.contains("\"optimizer\"") {
            named("'optimizer' is not run");
            named("'ActivationChannelAlignment' is not run");
        }
        for algo in ["QuantNoiseEstimator", "INT4MixedQuantization", "RangeOptimization", "WeightSparsity"] {
            if text.contains(algo) {
                named(&format!("'{algo}' is not run"));
            }
        }
        // A plain MinMaxQuantization corrects no bias; followed by FastBiasCorrection it does.
        let corrected = read_report(&out)["timings"].to_string().contains("bias_correction");
        if text.contains("MinMaxQuantization") || text.contains("TunableQuantization") {
            assert_eq!(corrected, text.contains("BiasCorrection"), "{name}: bias correction");
        }
    }
    assert!(files.len() >= 45 && ran >= 39, "{} files, {ran} quantized", files.len());
}

/// `--export-dir` writes what optimum-cli leaves for a compressed LLM: the IR under its own name
/// beside the export's other files, KV cache whole; the source folder is refused as the target.
#[test]
fn export_dir_copies_the_llm_export_folder() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny_llama_stateful");
    let xml = src.join("model.xml");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("int4");
    let o = ovpot(&[
        "compress-weights",
        "-m",
        s(&xml),
        "--mode",
        "int4_asym",
        "--group-size",
        "16",
        "--export-dir",
        s(&out),
    ]);
    assert_ok(&o);
    let mut files: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    files.sort();
    assert_eq!(files, ["config.json", "generation_config.json", "model.bin", "model.xml", "ovpot_report.json"]);
    assert_eq!(std::fs::read(out.join("config.json")).unwrap(), std::fs::read(src.join("config.json")).unwrap());
    let text = std::fs::read_to_string(out.join("model.xml")).unwrap();
    assert_eq!(text.matches("type=\"Assign\"").count(), 4);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("ovpot_report.json")).unwrap()).unwrap();
    assert_eq!(report["mode"], "int4_asym");
    // W8A8 too; and never into the model's own folder.
    let q = dir.path().join("w8a8");
    assert_ok(&ovpot(&["quantize", "-m", s(&xml), "--data", s(&src.join("calib")), "--export-dir", s(&q)]));
    assert!(q.join("model.xml").exists() && q.join("config.json").exists() && q.join("ovpot_report.json").exists());
    let e = error_line(&ovpot(&["compress-weights", "-m", s(&xml), "--export-dir", s(&src)]));
    assert!(e.contains("is the model's own folder"), "{e}");
}
