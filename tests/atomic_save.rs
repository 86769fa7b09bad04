//! Model::save is atomic: a failed save errors cleanly, leaves an existing model byte-identical
//! and leaves no temporary files behind; a successful save replaces both files.
//!
//! The tests run as root in CI containers, where permission bits do not stop writes, so write
//! failures are provoked with missing folders and directories standing where a file should go.

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

fn no_temp_files(dir: &Path, except: &[PathBuf]) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if except.contains(&p) {
            continue;
        }
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.contains(".tmp-") && !name.contains(".old-"), "temporary file left behind: {}", p.display());
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
    // The .bin goes to a folder that does not exist: its temporary cannot be created.
    let before = snapshot(tmp.path());
    let e = b.save(&xml, Some(&tmp.path().join("nodir/m.bin"))).unwrap_err();
    assert_eq!(e.kind(), "io", "{e}");
    assert!(e.to_string().contains("nodir"), "{e}");
    assert_eq!(snapshot(tmp.path()), before, "a failed save changed the directory");
    no_temp_files(tmp.path(), &[]);
}

#[test]
fn failing_xml_temp_keeps_the_old_model_and_removes_the_bin_temp() {
    let Some((a, b)) = models() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let xml = tmp.path().join("m.xml");
    a.save(&xml, None).unwrap();
    // The new .bin replaces m.bin, but the .xml goes to a folder that does not exist: the .bin
    // temporary is written, then the .xml temporary fails.
    let before = snapshot(tmp.path());
    let e = b.save(&tmp.path().join("nodir/m.xml"), Some(&tmp.path().join("m.bin"))).unwrap_err();
    assert_eq!(e.kind(), "io", "{e}");
    assert!(e.to_string().contains("nodir"), "{e}");
    assert_eq!(snapshot(tmp.path()), before, "a failed save changed the directory");
    no_temp_files(tmp.path(), &[]);
    assert_eq!(Model::read(&xml, None).unwrap().to_memory().unwrap(), a.to_memory().unwrap());
}

#[test]
fn bin_target_that_is_a_directory() {
    let Some((a, b)) = models() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let xml = tmp.path().join("m.xml");
    a.save(&xml, None).unwrap();
    let old_xml = std::fs::read(&xml).unwrap();
    let bin_dir = tmp.path().join("b.bin");
    std::fs::create_dir(&bin_dir).unwrap();
    std::fs::write(bin_dir.join("keep"), b"k").unwrap();
    match b.save(&xml, Some(&bin_dir)) {
        // Refused: the old .xml is untouched.
        Err(e) => {
            assert_eq!(e.kind(), "io", "{e}");
            assert!(e.to_string().contains("b.bin"), "{e}");
            assert_eq!(std::fs::read(&xml).unwrap(), old_xml);
            no_temp_files(tmp.path(), &[]);
        }
        // Or the directory was moved aside: then the new pair is complete.
        Ok(()) => {
            let back = Model::read(&xml, Some(&bin_dir)).unwrap();
            assert!(back.to_memory().unwrap() == b.to_memory().unwrap());
        }
    }
}

/// A failed save must not replace any existing file: here the .xml rename fails (its target is
/// a directory) after the .bin was already renamed over another model's weights.
#[test]
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
