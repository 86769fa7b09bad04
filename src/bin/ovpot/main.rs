//! `ovpot`: the command line door onto the library (quantize, infer, evaluate, info, convert,
//! compress-weights).
//!
//! Everything here is argument handling and file I/O; the work happens in `ovpot::Session`,
//! `ovpot::engine::Plan` and `ovpot::data`.

mod analyze;
mod args;
mod compress;
mod config;
mod convert;
mod evaluate;
mod export;
mod infer;
mod info;
mod quantize;

use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ovpot::api::{LogLevel, Metric, Stage, Top1Accuracy};
use ovpot::data::{open_dataset, read_labels, DataOptions, ImageFolderDataset, ImageOptions, Layout};
use ovpot::quant::config::{Algorithm, IgnoredOperation, IgnoredScope, QuantConfig, TargetDevice};
use ovpot::quant::hw_config::{HwConfig, QSpec};
use ovpot::quant::placement::plan_quantizers;
use ovpot::tensor::Tensor;
use ovpot::{Dataset, Model, Session};
use rayon::prelude::*;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use analyze::*;
use args::*;
use compress::*;
use config::*;
use convert::*;
use evaluate::*;
use export::*;
use infer::*;
use info::*;
use quantize::*;

/// An error for the user: printed as one line `error: ...`; exit status 1, or 2 for a usage
/// error (a missing or invalid option, as clap's own).
#[derive(Debug)]
struct CliError {
    msg: String,
    usage: bool,
}

impl CliError {
    fn new(msg: impl Into<String>) -> Self {
        CliError { msg: msg.into(), usage: false }
    }
    fn usage(msg: impl Into<String>) -> Self {
        CliError { msg: msg.into(), usage: true }
    }
}

impl From<ovpot::Error> for CliError {
    fn from(e: ovpot::Error) -> Self {
        CliError::new(e.to_string())
    }
}

type CliResult<T> = Result<T, CliError>;

fn fail<T>(msg: impl Into<String>) -> CliResult<T> {
    Err(CliError::new(msg))
}

/// A usage error: exit status 2.
fn usage_fail<T>(msg: impl Into<String>) -> CliResult<T> {
    Err(CliError::usage(msg))
}

#[derive(Parser, Debug)]
#[command(name = "ovpot", version, about = "OpenVINO post-training quantization (POT) in Rust")]
struct Cli {
    /// Messages shown on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogArg::Info)]
    log_level: LogArg,
    /// No progress bars and no info messages.
    #[arg(long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq, PartialOrd, Ord)]
enum LogArg {
    Error,
    Warning,
    Info,
    Debug,
}

impl LogArg {
    fn level(self) -> LogLevel {
        match self {
            LogArg::Error => LogLevel::Error,
            LogArg::Warning => LogLevel::Warning,
            LogArg::Info => LogLevel::Info,
            LogArg::Debug => LogLevel::Debug,
        }
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Quantize an FP32 IR to INT8 (POT's DefaultQuantization or AccuracyAwareQuantization).
    Quantize(Box<QuantizeArgs>),
    /// Which layers hurt the quantized model's output, and why: per-layer SQNR, ranges, weight
    /// errors and the smallest ignored scope reaching a target (OUT/analysis.json, .html).
    Analyze(Box<AnalyzeArgs>),
    /// Run the model on every sample and write OUT/out<k>.npy per output.
    Infer(InferArgs),
    /// Print the top-1 accuracy of the model on labelled data.
    Evaluate(EvaluateArgs),
    /// Show inputs, outputs, the op histogram, ops the engine lacks and what would be quantized.
    Info(InfoArgs),
    /// Read an IR and write it back (IR v11).
    Convert(ConvertArgs),
    /// Weight-only compression to INT8/INT4 (NNCF's compress_weights), streamed in bounded memory.
    CompressWeights(CompressArgs),
}

/// Messages to stderr at or above the chosen level.
#[derive(Clone, Copy)]
pub(crate) struct Logger {
    pub(crate) level: LogLevel,
}

impl Logger {
    fn log(&self, level: LogLevel, msg: &str) {
        if level <= self.level {
            eprintln!("[{}] {msg}", level_name(level));
        }
    }
    fn info(&self, msg: &str) {
        self.log(LogLevel::Info, msg)
    }
    fn warn(&self, msg: &str) {
        self.log(LogLevel::Warning, msg)
    }
    fn debug(&self, msg: &str) {
        self.log(LogLevel::Debug, msg)
    }
}

pub(crate) fn level_name(l: LogLevel) -> &'static str {
    match l {
        LogLevel::Error => "error",
        LogLevel::Warning => "warning",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
    }
}

/// Whether progress bars are drawn: stderr is a terminal and not --quiet.
pub(crate) fn bars_visible(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal()
}

pub(crate) fn new_bar(visible: bool, total: usize, label: &str) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{prefix:>16} [{bar:30}] {pos}/{len} {elapsed}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(label.to_string());
    bar
}

/// Progress-bar state behind the session's progress hook: one bar per stage.
pub(crate) struct StageBars {
    pub(crate) visible: bool,
    pub(crate) current: Option<(Stage, ProgressBar)>,
}

impl StageBars {
    fn update(&mut self, stage: Stage, done: usize, total: usize) -> bool {
        let same = matches!(&self.current, Some((s, _)) if *s == stage);
        if !same {
            if let Some((_, bar)) = self.current.take() {
                bar.finish();
            }
            self.current = Some((stage, new_bar(self.visible, total, stage.name())));
        }
        if let Some((_, bar)) = &self.current {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        }
        true
    }
}

impl Drop for StageBars {
    fn drop(&mut self) {
        if let Some((_, bar)) = self.current.take() {
            bar.finish();
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = if cli.quiet { LogLevel::Warning.min(cli.log_level.level()) } else { cli.log_level.level() };
    let log = Logger { level };
    let visible = bars_visible(cli.quiet);
    let result = match &cli.command {
        Command::Quantize(a) => cmd_quantize(a, log, visible),
        Command::Analyze(a) => cmd_analyze(a, log, visible),
        Command::Infer(a) => cmd_infer(a, log, visible),
        Command::Evaluate(a) => cmd_evaluate(a, log, visible),
        Command::Info(a) => cmd_info(a),
        Command::Convert(a) => cmd_convert(a, log),
        Command::CompressWeights(a) => cmd_compress(a, log, visible),
    };
    if ovpot::engine::profile::enabled() {
        // OVPOT_PROFILE=1: where the engine spent its time, by op type (summed over threads).
        for (op, secs, calls) in ovpot::engine::profile::report().iter().take(15) {
            eprintln!("profile: {op:<24} {secs:>9.3} s {calls:>9} calls");
        }
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError { msg, usage }) => {
            eprintln!("error: {}", msg.replace('\n', " "));
            if usage {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
