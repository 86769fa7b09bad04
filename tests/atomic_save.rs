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

/// The .xml path is a directory and no .bin exists yet: the save fails and leaves nothing,
/// not even the new .bin beside it (issue #39).
#[test]
fn xml_target_that_is_a_directory_leaves_no_orphan_bin() {
    let Some((a, _)) = models() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let xml_dir = tmp.path().join("d.xml");
    std::fs::create_dir(&xml_dir).unwrap();
    let before = snapshot(tmp.path());
    let e = a.save(&xml_dir, None).unwrap_err();
    assert_eq!(e.kind(), "io", "{e}");
    assert!(e.to_string().contains("d.xml"), "{e}");
    assert!(e.to_string().contains("not a regular file"), "{e}");
    assert_eq!(snapshot(tmp.path()), before, "a failed save left files behind");
}

/// A failed save names the user's path, never an internal temporary file.
#[test]
fn errors_name_the_users_path_not_a_temporary() {
    let Some((a, _)) = models() else { return };
    let tmp = tempfile::tempdir().unwrap();
    for (xml, bin) in
        [(tmp.path().join("nodir/m.xml"), None), (tmp.path().join("m.xml"), Some(tmp.path().join("nodir/m.bin")))]
    {
        let e = a.save(&xml, bin.as_deref()).unwrap_err().to_string();
        assert!(!e.contains(".tmp-") && !e.contains(".old-"), "the error names a temporary: {e}");
        assert!(e.contains("nodir/m."), "{e}");
    }
}

/// Saving onto symlinks writes through to their targets: the links stay links.
#[cfg(unix)]
#[test]
fn symlinks_are_written_through() {
    let Some((a, b)) = models() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let real = tmp.path().join("real");
    std::fs::create_dir(&real).unwrap();
    a.save(&real.join("t.xml"), None).unwrap();
    std::os::unix::fs::symlink(real.join("t.xml"), tmp.path().join("l.xml")).unwrap();
    // A relative link, and one whose target does not exist yet.
    std::os::unix::fs::symlink("real/t.bin", tmp.path().join("l.bin")).unwrap();
    std::os::unix::fs::symlink("real/new.xml", tmp.path().join("n.xml")).unwrap();
    b.save(&tmp.path().join("l.xml"), None).unwrap();
    for l in ["l.xml", "l.bin"] {
        assert!(std::fs::symlink_metadata(tmp.path().join(l)).unwrap().file_type().is_symlink(), "{l} was replaced");
    }
    assert_eq!(Model::read(&real.join("t.xml"), None).unwrap().to_memory().unwrap(), b.to_memory().unwrap());
    b.save(&tmp.path().join("n.xml"), Some(&real.join("new.bin"))).unwrap();
    assert!(std::fs::symlink_metadata(tmp.path().join("n.xml")).unwrap().file_type().is_symlink());
    assert_eq!(Model::read(&real.join("new.xml"), None).unwrap().to_memory().unwrap(), b.to_memory().unwrap());
    no_temp_files(tmp.path(), &[]);
    no_temp_files(&real, &[]);
}

/// Device nodes and FIFOs are not model files: the save is refused and they stay what they are.
/// Only nodes made inside the test's own folder are used: a regression must never replace a
/// system device such as /dev/null (the unfixed writer did, running as root).
#[cfg(unix)]
#[test]
fn device_nodes_and_fifos_are_refused() {
    use std::os::unix::fs::FileTypeExt;
    let Some((a, _)) = models() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let made = |args: &[&str]| std::process::Command::new(args[0]).args(&args[1..]).status().is_ok_and(|s| s.success());
    let fifo = tmp.path().join("f.xml");
    let dev = tmp.path().join("null.bin");
    let mut nodes = vec![];
    if made(&["mkfifo", fifo.to_str().unwrap()]) {
        nodes.push((fifo.clone(), tmp.path().join("f.bin")));
    }
    // A character device like /dev/null (needs root): as the .bin, and through a symlink.
    if made(&["mknod", "-m", "666", dev.to_str().unwrap(), "c", "1", "3"]) {
        nodes.push((tmp.path().join("m.xml"), dev.clone()));
        std::os::unix::fs::symlink(&dev, tmp.path().join("l.bin")).unwrap();
        nodes.push((tmp.path().join("l.xml"), tmp.path().join("l.bin")));
    }
    if nodes.is_empty() {
        eprintln!("neither mkfifo nor mknod worked: nothing to check");
        return;
    }
    let before = snapshot_names(tmp.path());
    for (xml, bin) in &nodes {
        let e = a.save(xml, Some(bin)).unwrap_err();
        assert_eq!(e.kind(), "io", "{e}");
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }
    assert_eq!(snapshot_names(tmp.path()), before, "a refused save changed the folder");
    if fifo.exists() {
        assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    }
    if dev.exists() {
        assert!(std::fs::symlink_metadata(&dev).unwrap().file_type().is_char_device());
    }
}

fn snapshot_names(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

/// Through the C API: `ovpot_model_save` and `ovpot_compressor_compress_file` onto a directory
/// fail with OVPOT_IO_ERROR naming it and leave no orphan .bin beside it.
#[test]
fn c_api_saves_onto_a_directory_leave_nothing() {
    use ovpot::ffi::compress::*;
    use ovpot::ffi::*;
    use std::ffi::{CStr, CString};
    use std::ptr;
    let Some(dir) = common::fixture("digits_mlp") else { return };
    let input = CString::new(dir.join("model.xml").to_str().unwrap()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let xml_dir = tmp.path().join("d.xml");
    std::fs::create_dir(&xml_dir).unwrap();
    let out = CString::new(xml_dir.to_str().unwrap()).unwrap();
    let before = snapshot(tmp.path());
    let last_error = || unsafe { CStr::from_ptr(ovpot_last_error()) }.to_string_lossy().into_owned();

    let mut m: *mut ovpot_model_t = ptr::null_mut();
    assert_eq!(ovpot_model_read(input.as_ptr(), ptr::null(), &mut m), ovpot_status_e::OVPOT_OK);
    assert_eq!(ovpot_model_save(m, out.as_ptr(), ptr::null()), ovpot_status_e::OVPOT_IO_ERROR);
    assert!(last_error().contains("d.xml") && !last_error().contains(".tmp-"), "{}", last_error());
    ovpot_model_free(m);
    assert_eq!(snapshot(tmp.path()), before, "ovpot_model_save left files behind");

    let mut c: *mut ovpot_compressor_t = ptr::null_mut();
    assert_eq!(ovpot_compressor_create(ptr::null(), &mut c), ovpot_status_e::OVPOT_OK);
    assert_eq!(ovpot_compressor_compress_file(c, input.as_ptr(), out.as_ptr()), ovpot_status_e::OVPOT_IO_ERROR);
    assert!(last_error().contains("d.xml") && !last_error().contains(".tmp-"), "{}", last_error());
    ovpot_compressor_free(c);
    assert_eq!(snapshot(tmp.path()), before, "ovpot_compressor_compress_file left files behind");
}
