//! The C ABI from C and C++: builds the programs in examples_c/ with the system compilers against
//! the cdylib in target/ and runs them on the MNIST CNN fixture. `basics.c` checks every entry
//! point but quantization itself, including the error paths (NULLs, bad values and files, failing
//! callbacks, cancel); the others quantize (default, accuracy-aware, C++ wrapper, OpenVINO round
//! trip through memory).

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where cargo put the cdylib built with this test: target/<profile>/deps (`cargo test` builds
/// libovpot.so there and uplifts it to target/<profile> only on `cargo build`).
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("target/<profile>/deps").to_path_buf();
    if deps.join("libovpot.so").exists() {
        return deps;
    }
    deps.parent().expect("target/<profile>").to_path_buf()
}

fn fixture() -> PathBuf {
    root().join("tests/data/mnist_cnn")
}

fn has(compiler: &str) -> bool {
    Command::new(compiler).arg("--version").output().is_ok_and(|o| o.status.success())
}

/// Compiles `examples_c/<source>` into a fresh folder; `None` (test skipped) without a compiler.
/// `allow_unsupported` keeps OVPOT_UNSUPPORTED from quantization acceptable (exit code 3).
fn build(source: &str, allow_unsupported: bool, extra: &[String]) -> Option<(tempfile::TempDir, PathBuf)> {
    let cpp = source.ends_with(".cpp");
    let compiler = if cpp { "c++" } else { "cc" };
    if !has(compiler) {
        eprintln!("{compiler} not found: {source} skipped");
        return None;
    }
    let lib = lib_dir();
    assert!(lib.join("libovpot.so").exists(), "no libovpot.so in {}", lib.display());
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join(source.replace('.', "_"));
    let mut cmd = Command::new(compiler);
    cmd.arg(if cpp { "-std=c++17" } else { "-std=c11" })
        .args(["-Wall", "-Wextra", "-Werror", "-g"])
        .arg(format!("-DOVPOT_EXAMPLES_ALLOW_UNSUPPORTED={}", allow_unsupported as i32))
        .arg("-I")
        .arg(root().join("include"))
        .arg("-I")
        .arg(root().join("examples_c"))
        .arg(root().join("examples_c").join(source))
        .arg("-o")
        .arg(&exe)
        .arg(format!("-L{}", lib.display()))
        .arg("-lovpot")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .args(extra)
        .args(["-lpthread", "-lm"]);
    let out = cmd.output().expect("run the compiler");
    assert!(out.status.success(), "{source} does not compile:\n{}", String::from_utf8_lossy(&out.stderr));
    Some((dir, exe))
}

/// Runs a built example; returns (exit code, stdout).
fn run(exe: &Path, args: &[&Path]) -> (i32, String) {
    let out = Command::new(exe).args(args).output().expect("run the example");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("--- {}\n{stdout}{stderr}", exe.display());
    (out.status.code().unwrap_or(-1), stdout + &stderr)
}

#[test]
fn c_basics_and_error_paths() {
    let Some((dir, exe)) = build("basics.c", false, &[]) else {
        return;
    };
    let (code, out) = run(&exe, &[&fixture(), dir.path()]);
    assert_eq!(code, 0, "basics failed:\n{out}");
    assert!(out.contains("basics: 0 failed, 0 pending"), "{out}");
}

#[test]
fn c_default_quantization_with_a_data_callback() {
    let Some((dir, exe)) = build("quantize.c", false, &[]) else {
        return;
    };
    let out_xml = dir.path().join("int8.xml");
    let (code, out) = run(&exe, &[&fixture(), &out_xml]);
    assert_eq!(code, 0, "quantize.c failed:\n{out}");
    assert!(out.contains("report:") && out.contains("FakeQuantize entries: yes"), "{out}");
    // The saved model is a valid IR with FakeQuantize ops that the engine runs.
    let m = ovpot::Model::read(&out_xml, None).unwrap();
    let fq = m.graph().nodes.iter().filter(|n| n.op_type == "FakeQuantize").count();
    assert!(fq > 0, "no FakeQuantize in the quantized model");
    m.plan().unwrap();
}

#[test]
fn c_accuracy_aware_with_a_metric_callback() {
    let Some((dir, exe)) = build("accuracy_aware.c", false, &[]) else {
        return;
    };
    let (code, out) = run(&exe, &[&fixture(), &dir.path().join("aa.xml")]);
    assert!(out.contains("FP32 top-1: 0.9570 (callback) 0.9570 (built-in) over 1000 samples"), "{out}");
    assert_eq!(code, 0, "accuracy_aware.c failed:\n{out}");
    // Within the maximal drop of 0.01 (the example checks it too) and reported.
    assert!(out.contains("INT8 top-1") && out.contains("report has accuracy: yes"), "{out}");
}

#[test]
fn cpp_wrapper_quantizes() {
    let Some((dir, exe)) = build("quantize.cpp", false, &[]) else {
        return;
    };
    let (code, out) = run(&exe, &[&fixture(), &dir.path().join("int8.xml")]);
    assert_eq!(code, 0, "quantize.cpp failed:\n{out}");
    assert!(out.contains("expected error:") && out.contains("callback error: no sample 0"), "{out}");
}

/// OpenVINO's C library and headers from the pip wheel (the peers venv), when present.
fn openvino_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("OVPOT_OPENVINO_DIR") {
        return Some(PathBuf::from(d));
    }
    let venv = root().join("../peers/venv/lib");
    let py = std::fs::read_dir(&venv)
        .ok()?
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().starts_with("python"))?;
    let d = py.path().join("site-packages/openvino");
    d.join("include/openvino/c/openvino.h").exists().then_some(d)
}

#[test]
fn c_quantized_model_runs_in_openvino_from_memory() {
    let Some(ov) = openvino_dir() else {
        eprintln!("OpenVINO's C library not found (set OVPOT_OPENVINO_DIR): skipped");
        return;
    };
    let libs = ov.join("libs");
    let Some(libc) = std::fs::read_dir(&libs).ok().and_then(|rd| {
        rd.filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| n.starts_with("libopenvino_c.so"))
    }) else {
        eprintln!("no libopenvino_c.so in {}: skipped", libs.display());
        return;
    };
    let extra = vec![
        format!("-I{}", ov.join("include").display()),
        format!("-L{}", libs.display()),
        format!("-l:{libc}"),
        format!("-Wl,-rpath,{}", libs.display()),
    ];
    let Some((_dir, exe)) = build("ov_roundtrip.c", false, &extra) else {
        return;
    };
    let (code, out) = run(&exe, &[&fixture()]);
    assert_eq!(code, 0, "ov_roundtrip.c failed:\n{out}");
    assert!(out.contains("FP32 via memory buffer") && out.contains("4/4 classes agree"), "{out}");
}
