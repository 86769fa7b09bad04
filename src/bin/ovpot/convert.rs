//! `ovpot convert`: read an IR and write it back.

use super::*;

#[derive(Args, Debug)]
pub(crate) struct ConvertArgs {
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    /// Output IR (.xml); the weights go next to it as .bin.
    #[arg(short = 'o', long = "output")]
    pub(crate) output: PathBuf,
}

pub(crate) fn cmd_convert(a: &ConvertArgs, log: Logger) -> CliResult<()> {
    let model = read_model(&a.model)?;
    if let Some(dir) = a.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| ovpot::Error::io(dir, e))?;
    }
    model.save(&a.output, None)?;
    log.info(&format!("wrote {}", a.output.display()));
    Ok(())
}
