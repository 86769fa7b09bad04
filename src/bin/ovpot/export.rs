//! `--export-dir`: the optimized model written as a copy of the model's export folder (what
//! `optimum-cli export openvino --weight-format int4` leaves): the IR under its own file name,
//! beside the folder's other files (config.json, generation_config.json, tokenizer files), so
//! `OVModelForCausalLM.from_pretrained(DIR)` loads it. The report is `DIR/ovpot_report.json`.

use super::*;

/// Where an export goes: the model's xml path inside `dir` and the report's path.
pub(crate) struct ExportDir {
    pub(crate) dir: PathBuf,
    pub(crate) model_xml: PathBuf,
    pub(crate) report: PathBuf,
}

/// Checks `dir` (created when missing, writable, not the source folder) before any work starts.
pub(crate) fn prepare_export_dir(dir: &Path, source_xml: &Path) -> CliResult<ExportDir> {
    let file =
        source_xml.file_name().ok_or_else(|| CliError::new(format!("{}: no file name", source_xml.display())))?;
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::new(format!("--export-dir {}: cannot create it: {e}", dir.display())))?;
    let source_dir = source_folder(source_xml);
    if same_dir(dir, &source_dir) {
        return fail(format!(
            "--export-dir {} is the model's own folder: the export would overwrite its source; give another folder",
            dir.display()
        ));
    }
    let probe = dir.join(format!(".ovpot-write-check-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .map_err(|e| CliError::new(format!("--export-dir {}: cannot write in it: {e}", dir.display())))?;
    // The probe is empty; failing to remove it does not affect the results.
    let _ = std::fs::remove_file(&probe);
    Ok(ExportDir { dir: dir.to_path_buf(), model_xml: dir.join(file), report: dir.join("ovpot_report.json") })
}

fn source_folder(xml: &Path) -> PathBuf {
    match xml.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    matches!((std::fs::canonicalize(a), std::fs::canonicalize(b)), (Ok(x), Ok(y)) if x == y)
}

impl ExportDir {
    /// Copies every other file of the source folder (not the model's own xml/bin, not
    /// subfolders) once the model is written; returns how many. Each copy goes through a
    /// temporary file and a rename, so no half-copied file is left.
    pub(crate) fn copy_companions(&self, source_xml: &Path, source_bin: Option<&Path>) -> CliResult<usize> {
        let source_dir = source_folder(source_xml);
        let bin = source_bin.map(Path::to_path_buf).unwrap_or_else(|| source_xml.with_extension("bin"));
        let skip: Vec<PathBuf> =
            [source_xml.to_path_buf(), bin].iter().filter_map(|p| std::fs::canonicalize(p).ok()).collect();
        let entries = std::fs::read_dir(&source_dir)
            .map_err(|e| CliError::new(format!("reading {}: {e}", source_dir.display())))?;
        let mut copied = 0;
        for entry in entries {
            let path = entry.map_err(|e| CliError::new(format!("reading {}: {e}", source_dir.display())))?.path();
            let canonical = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            if !path.is_file() || skip.contains(&canonical) {
                continue;
            }
            let Some(name) = path.file_name() else { continue };
            let target = self.dir.join(name);
            if target == self.model_xml || target == self.model_xml.with_extension("bin") || target == self.report {
                continue;
            }
            let tmp = self.dir.join(format!(".{}.ovpot-tmp-{}", name.to_string_lossy(), std::process::id()));
            let done = std::fs::copy(&path, &tmp).and_then(|_| std::fs::rename(&tmp, &target));
            if let Err(e) = done {
                let _ = std::fs::remove_file(&tmp);
                return fail(format!("copying {} to {}: {e}", path.display(), target.display()));
            }
            copied += 1;
        }
        Ok(copied)
    }
}
