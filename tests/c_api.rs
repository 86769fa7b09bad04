//! The C ABI from C and C++: builds the programs in examples_c/ with the system compilers against
//! the cdylib in target/ and runs them on the MNIST CNN fixture. `basics.c` checks every entry
//! point and requires every status code but INTERNAL (a caught panic, tested in src/ffi), including
//! the error paths (NULLs, bad values and files, unsupported IR and ops, failing callbacks, cancel,
//! accuracy not reached) and the log callback's level filter; the others quantize (default,
//! accuracy-aware, C++ wrapper, OpenVINO round trip through memory); `cpp_wrapper_test.cpp`
//! checks every class of the C++ wrapper. `examples_c/Makefile` and
//! `ovpot.pc.in` are checked by installing into a temporary prefix and building from there.

mod common;
use common::skipped;
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

fn has(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success())
}

/// Runs `make -C examples_c` with `args`; panics with its output on failure.
fn make(args: &[String], env: &[(&str, &Path)]) {
    let out = Command::new("make")
        .arg("-C")
        .arg(root().join("examples_c"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_os_str())))
        .output()
        .expect("run make");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "make {} failed:\n{text}", args.join(" "));
}

/// Strict flags for examples built by the Makefile, as `build` uses.
const MAKE_CFLAGS: &str = "CFLAGS=-g -O1 -Wall -Wextra -Werror";

/// Compiles `examples_c/<source>` into a fresh folder; `None` (test skipped) without a compiler.
/// `allow_unsupported` keeps OVPOT_UNSUPPORTED from quantization acceptable (exit code 3).
fn build(source: &str, allow_unsupported: bool, extra: &[String]) -> Option<(tempfile::TempDir, PathBuf)> {
    let cpp = source.ends_with(".cpp");
    let compiler = if cpp { "c++" } else { "cc" };
    if !has(compiler) {
        skipped(&format!("{compiler} not found: {source} not built"));
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
    // cargo's LD_LIBRARY_PATH lists target/<profile> too, where an older libovpot.so from a
    // `cargo build` may sit; it would win over the rpath. The library of this build goes first.
    let mut paths = vec![lib_dir()];
    paths.extend(
        std::env::var_os("LD_LIBRARY_PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default(),
    );
    run_with(exe, args, Some(std::env::join_paths(paths).expect("library paths")))
}

/// Runs an example linked against an installed copy, with the environment as it is.
fn run_installed(exe: &Path, args: &[&Path]) -> (i32, String) {
    run_with(exe, args, None)
}

fn run_with(exe: &Path, args: &[&Path], library_path: Option<std::ffi::OsString>) -> (i32, String) {
    let mut cmd = Command::new(exe);
    cmd.args(args);
    if let Some(p) = library_path {
        cmd.env("LD_LIBRARY_PATH", p);
    }
    let out = cmd.output().expect("run the example");
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
fn c_weight_compression_in_memory_and_streamed() {
    let Some((dir, exe)) = build("compress_weights.c", false, &[]) else {
        return;
    };
    let out_xml = dir.path().join("int4_weights.xml");
    let (code, out) = run(&exe, &[&fixture(), &out_xml]);
    assert_eq!(code, 0, "compress_weights.c failed:\n{out}");
    assert!(out.contains("int8 with a ratio: INVALID_ARGUMENT"), "{out}");
    assert!(out.contains("int4 report mentions int4_sym: yes"), "{out}");
    // The file written is an IR with 4-bit weights that the engine runs.
    let m = ovpot::Model::read(&out_xml, None).unwrap();
    assert!(m.graph().nodes.iter().any(|n| n.const_type == Some(ovpot::tensor::ElementType::I4)), "no i4 weights");
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
    // Reached (the example checks the drop of at most 0.01 itself) and reported; NOT_REACHED is
    // required in basics.c, where the metric is scripted.
    assert!(out.contains("INT8 top-1") && out.contains("(OK)") && out.contains("report has accuracy: yes"), "{out}");

    // The cheap form c_memcheck.sh runs under valgrind: 50 samples from an in-memory array.
    let (code, out) = run(&exe, &[&fixture(), &dir.path().join("aa50.xml"), Path::new("50")]);
    assert_eq!(code, 0, "accuracy_aware.c with 50 samples failed:\n{out}");
    assert!(out.contains("over 50 samples") && out.contains("report has accuracy: yes"), "{out}");
}

/// `make install` into a temporary prefix, then `pkg-config ovpot` from there gives the flags the
/// examples build with (dynamically, with an rpath so they run without LD_LIBRARY_PATH), and
/// `pkg-config ovpot-static` links libovpot.a even with libovpot.so beside it.
#[test]
fn c_makefile_install_and_pkg_config() {
    for tool in ["make", "pkg-config", "cc", "c++", "readelf"] {
        if !has(tool) {
            skipped(&format!("{tool} not found"));
            return;
        }
    }
    let lib = lib_dir();
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().join("prefix");
    let build = tmp.path().join("build");
    let var = |k: &str, v: &Path| format!("{k}={}", v.display());
    make(&["install".into(), var("PREFIX", &prefix), var("OVPOT_LIB_DIR", &lib), var("BUILD", &build)], &[]);
    for f in [
        "include/ovpot.h",
        "include/ovpot.hpp",
        "lib/libovpot.so",
        "lib/pkgconfig/ovpot.pc",
        "lib/pkgconfig/ovpot-static.pc",
    ] {
        assert!(prefix.join(f).exists(), "make install did not install {f}");
    }

    let pc_path = prefix.join("lib/pkgconfig");
    let pkg_config_of = |package: &str, args: &[&str]| -> String {
        let out = Command::new("pkg-config").args(args).arg(package).env("PKG_CONFIG_PATH", &pc_path).output().unwrap();
        assert!(out.status.success(), "pkg-config {args:?} {package}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let pkg_config = |args: &[&str]| pkg_config_of("ovpot", args);
    assert_eq!(pkg_config(&["--modversion"]), env!("CARGO_PKG_VERSION"));
    let (inc, libdir) = (prefix.join("include"), prefix.join("lib"));
    assert_eq!(
        pkg_config(&["--cflags", "--libs"]),
        format!("-I{} -L{} -Wl,-rpath,{} -lovpot", inc.display(), libdir.display(), libdir.display())
    );
    let static_libs = pkg_config(&["--static", "--libs"]);
    for l in ["-lpthread", "-ldl", "-lm"] {
        assert!(static_libs.split(' ').any(|x| x == l), "no {l} in Libs.private: {static_libs}");
    }
    let static_only = pkg_config_of("ovpot-static", &["--libs"]);
    assert!(static_only.starts_with(&format!("{}/libovpot.a ", libdir.display())), "{static_only}");
    assert!(!static_only.contains("-lovpot"), "{static_only}");

    // As the docs build an application: `cc app.c $(pkg-config --cflags --libs ovpot[-static])`,
    // nothing else; the dynamic one runs without LD_LIBRARY_PATH, the static one needs no libovpot.so.
    if prefix.join("lib/libovpot.a").exists() {
        for (package, exe) in [("ovpot", "app_dynamic"), ("ovpot-static", "app_static")] {
            let exe = tmp.path().join(exe);
            let flags = pkg_config_of(package, &["--cflags", "--libs"]);
            let src = root().join("examples_c/quantize.c");
            let cmd = format!(
                "cc -std=c11 -I{} {} {flags} -lpthread -lm -o {}",
                root().join("examples_c").display(),
                src.display(),
                exe.display()
            );
            let out = Command::new("sh").arg("-c").arg(&cmd).env_remove("LD_LIBRARY_PATH").output().unwrap();
            assert!(out.status.success(), "{cmd}: {}", String::from_utf8_lossy(&out.stderr));
            let elf = Command::new("readelf").arg("-d").arg(&exe).output().unwrap();
            let needs_so = String::from_utf8_lossy(&elf.stdout).contains("libovpot.so");
            assert_eq!(needs_so, package == "ovpot", "{package}: libovpot.so needed: {needs_so}");
            // cargo test puts target/debug/deps on LD_LIBRARY_PATH: gone, so the rpath must find the library.
            let run = Command::new(&exe)
                .arg(fixture())
                .arg(tmp.path().join(format!("{package}.xml")))
                .env_remove("LD_LIBRARY_PATH")
                .output()
                .unwrap();
            let out = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
            assert!(run.status.success() && out.contains("FakeQuantize entries: yes"), "{package} app failed:\n{out}");
        }
    }

    // Examples built from the installed copy only (no OVPOT_LIB_DIR / OVPOT_INCLUDE_DIR).
    let env = [("PKG_CONFIG_PATH", pc_path.as_path())];
    let dynamic = tmp.path().join("dynamic");
    make(
        &[
            "USE_PKG_CONFIG=1".into(),
            var("BUILD", &dynamic),
            MAKE_CFLAGS.into(),
            "CXXFLAGS=-g -O1 -Wall -Wextra -Werror".into(),
            "quantize".into(),
            "quantize_cpp".into(),
        ],
        &env,
    );
    let (code, out) = run_installed(&dynamic.join("quantize"), &[&fixture(), &tmp.path().join("q.xml")]);
    assert!(code == 0 && out.contains("FakeQuantize entries: yes"), "quantize (pkg-config) failed:\n{out}");
    let (code, out) = run_installed(&dynamic.join("quantize_cpp"), &[&fixture(), &tmp.path().join("qcpp.xml")]);
    assert_eq!(code, 0, "quantize_cpp (pkg-config) failed:\n{out}");

    // Statically linked through ovpot-static.pc: runs with the shared library gone.
    if !prefix.join("lib/libovpot.a").exists() {
        skipped(&format!("no libovpot.a in {}: static link not checked", lib.display()));
        return;
    }
    let fixed = tmp.path().join("static");
    make(
        &["USE_PKG_CONFIG=1".into(), "STATIC=1".into(), var("BUILD", &fixed), MAKE_CFLAGS.into(), "quantize".into()],
        &env,
    );
    std::fs::remove_file(prefix.join("lib/libovpot.so")).unwrap();
    let (code, out) = run_installed(&fixed.join("quantize"), &[&fixture(), &tmp.path().join("qs.xml")]);
    assert!(code == 0 && out.contains("FakeQuantize entries: yes"), "static quantize failed:\n{out}");
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

/// Every class of the C++ wrapper on the MNIST CNN and the digits MLP, owned and lent handles,
/// moves, and exceptions of the user's own type from every kind of callback (get_item, metric
/// reset/update/value, model evaluator, progress, log) caught by that type at the wrapper call.
#[test]
fn cpp_wrapper_covers_the_c_api_and_rethrows_callback_exceptions() {
    let Some((dir, exe)) = build("cpp_wrapper_test.cpp", false, &[]) else {
        return;
    };
    let (code, out) = run(&exe, &[&root().join("tests/data"), &dir.path().join("out")]);
    assert_eq!(code, 0, "cpp_wrapper_test failed:\n{out}");
    assert!(out.contains("cpp_wrapper_test: ") && out.contains(" checks, 0 failed"), "{out}");
    for section in ["models", "samples and outputs", "datasets", "metrics", "sessions", "compressors"] {
        assert!(out.contains(&format!("{section}: ok")), "{section}: {out}");
    }
    assert!(out.contains("callback exceptions: ok"), "{out}");
}

/// Where the peers venv (openvino's pip wheel, with its C library and headers) may be: where
/// .ci/run puts it ($OVPOT_PEERS, else .peers/ in the repo), or ../peers next to the repo.
fn venv_candidates() -> Vec<PathBuf> {
    let mut v = vec![];
    if let Some(p) = std::env::var_os("OVPOT_PEERS") {
        v.push(PathBuf::from(p).join("venv"));
    }
    v.push(root().join(".peers/venv"));
    v.push(root().join("../peers/venv"));
    v
}

/// OpenVINO's C library and headers: $OVPOT_OPENVINO_DIR, else the first peers venv that has them.
fn openvino_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("OVPOT_OPENVINO_DIR") {
        return Some(PathBuf::from(d));
    }
    venv_candidates().into_iter().find_map(|venv| {
        let py = std::fs::read_dir(venv.join("lib"))
            .ok()?
            .filter_map(|e| e.ok())
            .find(|e| e.file_name().to_string_lossy().starts_with("python"))?;
        let d = py.path().join("site-packages/openvino");
        d.join("include/openvino/c/openvino.h").exists().then_some(d)
    })
}

#[test]
fn c_quantized_model_runs_in_openvino_from_memory() {
    let Some(ov) = openvino_dir() else {
        let searched: Vec<String> = venv_candidates().iter().map(|p| p.display().to_string()).collect();
        let msg = format!(
            "OpenVINO's C library not found (set OVPOT_OPENVINO_DIR or OVPOT_PEERS); searched {}",
            searched.join(", ")
        );
        // .ci/run sets OVPOT_NO_SKIP once it has installed the venv: skipping then would hide a failure.
        skipped(&msg);
        return;
    };
    let has_libc = std::fs::read_dir(ov.join("libs")).is_ok_and(|rd| {
        rd.filter_map(|e| e.ok()).any(|e| e.file_name().to_string_lossy().starts_with("libopenvino_c.so"))
    });
    if !has("make") || !has("cc") || !has_libc {
        skipped(&format!("make, cc or libopenvino_c.so in {} missing", ov.join("libs").display()));
        return;
    }
    // Built by the Makefile's ov_roundtrip target, which is thereby checked too.
    let dir = tempfile::tempdir().unwrap();
    let args = [
        format!("OPENVINO_DIR={}", ov.display()),
        format!("OVPOT_LIB_DIR={}", lib_dir().display()),
        format!("BUILD={}", dir.path().display()),
        MAKE_CFLAGS.into(),
        "ov_roundtrip".into(),
    ];
    make(&args, &[]);
    let (code, out) = run(&dir.path().join("ov_roundtrip"), &[&fixture()]);
    assert_eq!(code, 0, "ov_roundtrip.c failed:\n{out}");
    assert!(out.contains("FP32 via memory buffer") && out.contains("4/4 classes agree"), "{out}");
    // Every Conv/MatMul of the quantized model runs an int8 kernel in OpenVINO, none of FP32's.
    assert!(out.contains("FP32 in OpenVINO: 0/4 weighted layers run in int8"), "{out}");
    assert!(out.contains("INT8 in OpenVINO: 4/4 weighted layers run in int8 (100%"), "{out}");
    assert!(out.contains("ovpot report: 4 quantized layers"), "{out}");
}
