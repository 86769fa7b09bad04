//! Model::save is atomic: a failed save errors cleanly, leaves an existing model byte-identical
//! and leaves no temporary files behind; a successful save replaces both files.
//!
//! The tests run as root in CI containers, where permission bits do not stop writes, so write
//! failures are provoked with directories standing where the writer wants a file.

mod common;
use ovpot::Model;
use std::path::{Path, PathBuf};

fn models() -> Option<(Model, Model)> {
    let a = Model::read(&common::fixture("digits_mlp")?.join("model.xml"), None).unwrap();
    let b = Model::read(&common::fixture("mnist_cnn")?.join("model.xml"), None).unwrap();
    Some((a, b))
}

fn snapshot(dir: &Path) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    let mut v: Vec<(PathBuf, Option<Vec<u8>>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let bytes = if p.is_file() { Some(std::fs::read(&p).unwrap()) } else { None };
            (p, bytes)
        })
        .collect();
    v.sort();
    v
}

/// The writer's temporary name for `p` (it appends `.tmp-<pid>`).
fn temp_of(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_os_string();
    s.push(format!(".tmp-{}", std::process::id()));
    PathBuf::from(s)
}

fn no_temp_files(dir: &Path, except: &[PathBuf]) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if except.contains(&p) {
            continue;
        }
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.contains(".tmp-"), "temporary file left behind: {}", p.display());
    }
}

#[test]
fn save_writes_both_files_and_replaces_an_old_model() {
    let Some((a, b)) = models() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let xml = tmp.path().join("m.xml");
    a.save(&xml, None).unwrap();
    assert_eq!(Model::read(&xml, None).unwrap().to_memory().unwrap(), a.to_memory().unwrap());
    b.save(&xml, None).unwrap();
    assert_eq!(Model::read(&xml, None).unwrap().to_memory().unwrap(), b.to_memory().unwrap());
    no_temp_files(tmp.path(), &[]);
    assert_eq!(snapshot(tmp.path()).len(), 2);
}

#[test]
fn failing_bin_temp_keeps_the_old_model() {
    let Some((a, b)) = models() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let xml = tmp.path().join("m.xml");
    a.save(&xml, None).unwrap();
    // The .bin's temporary cannot be created.
    let blocker = temp_of(&tmp.path().join("m.bin"));
    std::fs::create_dir(&blocker).unwrap();
    let before = snapshot(tmp.path());
    let e = b.save(&xml, None).unwrap_err();
    assert_eq!(e.kind(), "io", "{e}");
    assert!(e.to_string().contains("m.bin"), "{e}");
    assert_eq!(snapshot(tmp.path()), before, "a failed save changed the directory");
    no_temp_files(tmp.path(), &[blocker]);
}

#[test]
fn failing_xml_temp_keeps_the_old_model_and_removes_the_bin_temp() {
    let Some((a, b)) = models() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let xml = tmp.path().join("m.xml");
    a.save(&xml, None).unwrap();
    // The .bin temporary is written, then the .xml temporary fails.
    let blocker = temp_of(&xml);
    std::fs::create_dir(&blocker).unwrap();
    let before = snapshot(tmp.path());
    let e = b.save(&xml, None).unwrap_err();
    assert_eq!(e.kind(), "io", "{e}");
    assert!(e.to_string().contains("m.xml"), "{e}");
    assert_eq!(snapshot(tmp.path()), before, "a failed save changed the directory");
    no_temp_files(tmp.path(), &[blocker]);
    assert_eq!(Model::read(&xml, None).unwrap().to_memory().unwrap(), a.to_memory().unwrap());
}

#[test]
fn failing_bin_rename_keeps_the_old_xml() {
    let Some((a, b)) = models() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let xml = tmp.path().join("m.xml");
    a.save(&xml, None).unwrap();
    let old_xml = std::fs::read(&xml).unwrap();
    // The .bin target is a non-empty directory: the rename fails after both temporaries exist.
    let bin_dir = tmp.path().join("b.bin");
    std::fs::create_dir(&bin_dir).unwrap();
    std::fs::write(bin_dir.join("keep"), b"k").unwrap();
    let e = b.save(&xml, Some(&bin_dir)).unwrap_err();
    assert_eq!(e.kind(), "io", "{e}");
    assert!(e.to_string().contains("b.bin"), "{e}");
    assert_eq!(std::fs::read(&xml).unwrap(), old_xml);
    no_temp_files(tmp.path(), &[]);
}

/// A failed save must not replace any existing file: here the .xml rename fails (its target is
/// a directory) after the .bin was already renamed over another model's weights.
#[test]
#[ignore = "bug (src/ir/writer.rs): the .bin is renamed into place before the .xml rename can fail"]
fn failing_xml_rename_keeps_the_old_bin() {
    let Some((a, b)) = models() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let old = tmp.path().join("old.xml");
    a.save(&old, None).unwrap();
    let old_bin = std::fs::read(tmp.path().join("old.bin")).unwrap();
    let xml_dir = tmp.path().join("new.xml");
    std::fs::create_dir(&xml_dir).unwrap();
    std::fs::write(xml_dir.join("keep"), b"k").unwrap();
    let e = b.save(&xml_dir, Some(&tmp.path().join("old.bin"))).unwrap_err();
    assert_eq!(e.kind(), "io", "{e}");
    assert_eq!(std::fs::read(tmp.path().join("old.bin")).unwrap(), old_bin, "the old weights were replaced");
    no_temp_files(tmp.path(), &[]);
}

#[test]
fn missing_directory_errors_cleanly() {
    let Some((a, _)) = models() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let e = a.save(&tmp.path().join("nope/m.xml"), None).unwrap_err();
    assert_eq!(e.kind(), "io");
    assert!(e.to_string().contains("nope"), "{e}");
    assert!(snapshot(tmp.path()).is_empty());
}

#[cfg(unix)]
#[test]
fn read_only_directory_errors_cleanly() {
    use std::os::unix::fs::PermissionsExt;
    let Some((a, b)) = models() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ro");
    std::fs::create_dir(&dir).unwrap();
    let xml = dir.join("m.xml");
    a.save(&xml, None).unwrap();
    let before = snapshot(&dir);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    // Root ignores permission bits: then the save succeeds and there is nothing to check.
    let probe = std::fs::File::create(dir.join("probe")).is_ok();
    let r = b.save(&xml, None);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    if probe {
        eprintln!("running with permission override (root): read-only check skipped");
        return;
    }
    let e = r.unwrap_err();
    assert_eq!(e.kind(), "io", "{e}");
    assert_eq!(snapshot(&dir), before);
}

/// Saves from several threads to one path: the result is always one complete model (its xml
/// and bin from the same save), never a mix.
#[test]
#[ignore = "bug (src/ir/writer.rs): temporaries are named by process id only, so threads saving to one path share them"]
fn concurrent_saves_to_one_path_never_mix() {
    let Some((a, b)) = models() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let xml = tmp.path().join("m.xml");
    let (ma, mb) = (a.to_memory().unwrap(), b.to_memory().unwrap());
    for _ in 0..10 {
        std::thread::scope(|s| {
            for k in 0..4 {
                let m = if k % 2 == 0 { &a } else { &b };
                let xml = &xml;
                s.spawn(move || {
                    let _ = m.save(xml, None);
                });
            }
        });
        let got = Model::read(&xml, None).map(|m| m.to_memory().unwrap());
        match got {
            Ok(g) => assert!(g == ma || g == mb, "the saved model is neither input"),
            Err(e) => panic!("concurrent saves left an unreadable model: {e}"),
        }
    }
    no_temp_files(tmp.path(), &[]);
}
