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

/// The one-line error of a failed run.
fn error_line(o: &Output) -> String {
    assert!(!o.status.success(), "expected failure; stdout: {}", stdout(o));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(o));
    let err = stderr(o);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(lines.len(), 1, "one error line expected: {err}");
    lines[0].to_string()
}

/// Whether the engine can run the model yet (ops are being written in parallel).
fn engine_runs(xml: &Path) -> bool {
    let m = ovpot::Model::read(xml, None).unwrap();
    let ok = m.plan().is_ok();
    if !ok {
        eprintln!("{}: engine ops missing; running checks skipped", xml.display());
    }
    ok
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
    if !engine_runs(&xml) {
        error_line(&o);
        return;
    }
    assert!(o.status.success(), "{}", stderr(&o));
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
    if !engine_runs(&xml) {
        error_line(&o);
        return;
    }
    assert!(o.status.success(), "{}", stderr(&o));
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
    let e = error_line(&ovpot(&[
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
    assert!(e.contains("--preset 'fastest'"), "{e}");
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
    let e = error_line(&ovpot(&["quantize", "-m", s(&mnist.join("model.xml")), "--output-dir", s(out.path())]));
    assert!(e.contains("--data"), "{e}");
    // clap's usage errors keep their own exit code (2).
    let o = ovpot(&["quantize", "--no-such-flag"]);
    assert_eq!(o.status.code(), Some(2));
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

/// Runs a quantize command; true when it produced output, false when quantization is not built
/// yet (then the error must be the clean one-line "unsupported").
fn quantize_ran(o: &Output) -> bool {
    if o.status.success() {
        return true;
    }
    let e = error_line(o);
    assert!(e.contains("unsupported") || e.contains("not supported"), "unexpected failure: {e}");
    eprintln!("quantization not available yet: {e}");
    false
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
    if quantize_ran(&o) {
        check_quantized(out.path(), "model", "default");
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.path().join("report.json")).unwrap()).unwrap();
        assert_eq!(r["preset"].as_str().map(|p| p.to_lowercase()), Some("mixed".into()), "{r}");
        assert_eq!(r["samples_used"].as_u64(), Some(64), "{r}");
    }
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
    if quantize_ran(&o) {
        check_quantized(&out, "digits_int8", "default");
    }

    // AccuracyAware needs labels: from the command line...
    let cfg = write_config(tmp.path(), &dir, "AccuracyAwareQuantization", "");
    let e = error_line(&ovpot(&["quantize", "-c", s(&cfg), "--output-dir", s(&out)]));
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
    if quantize_ran(&o) {
        check_quantized(&out, "digits_int8", "accuracy");
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
        let drop = r["accuracy"]["drop"].as_f64().expect("accuracy section");
        assert!(drop <= 0.01 + 1e-9 || r["accuracy"]["reached"] == false, "{r}");
    }
    // ...or from ovpot's engine keys in the config.
    let extra = format!(
        r#", "eval_data_source": "{}", "labels": "{}", "metric_output": 0"#,
        s(&dir.join("eval")),
        s(&dir.join("eval_labels.npy"))
    );
    let cfg = write_config(tmp.path(), &dir, "AccuracyAwareQuantization", &extra);
    let o = ovpot(&["--quiet", "quantize", "-c", s(&cfg), "--output-dir", s(&out)]);
    if quantize_ran(&o) {
        check_quantized(&out, "digits_int8", "accuracy");
    }
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
    if quantize_ran(&o) {
        check_quantized(&out, "mnist_full", "default");
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
        let layers: Vec<&str> = r["quantized_layers"].as_array().unwrap().iter().filter_map(|x| x.as_str()).collect();
        assert!(!layers.is_empty() && !layers.contains(&ignored), "{layers:?}");
        assert_eq!(r["samples_used"].as_u64(), Some(200), "{r}");
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
    if !quantize_ran(&o) {
        return;
    }
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
    if quantize_ran(&o) {
        check_quantized(out.path(), "model", "accuracy");
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.path().join("report.json")).unwrap()).unwrap();
        assert_eq!(r["accuracy"]["maximal_drop"].as_f64(), Some(0.005), "{r}");
        // FP32 accuracy on the 540 eval digits is 0.9778 (meta.json).
        assert!((r["accuracy"]["baseline"].as_f64().unwrap() - 0.9778).abs() < 0.001, "{r}");
    }
}
