//! How a run reports: progress (which can cancel) and log messages.

use crate::error::{Error, Result};
use serde::Serialize;

/// Long-running stages reported to progress callbacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(C)]
pub enum Stage {
    Statistics = 0,
    BiasCorrection = 1,
    Evaluation = 2,
    Ranking = 3,
    AccuracyAware = 4,
    SmoothQuant = 5,
    WeightCompression = 6,
    MixedPrecision = 7,
    Awq = 8,
    ScaleEstimation = 9,
    Gptq = 10,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Statistics => "statistics",
            Stage::BiasCorrection => "bias correction",
            Stage::Evaluation => "evaluation",
            Stage::Ranking => "ranking",
            Stage::AccuracyAware => "accuracy-aware",
            Stage::SmoothQuant => "smooth quant",
            Stage::WeightCompression => "weight compression",
            Stage::MixedPrecision => "mixed precision",
            Stage::Awq => "AWQ",
            Stage::ScaleEstimation => "scale estimation",
            Stage::Gptq => "GPTQ",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[repr(C)]
pub enum LogLevel {
    Error = 0,
    Warning = 1,
    Info = 2,
    Debug = 3,
}

/// Progress: return false to cancel. Called on the thread that runs the session.
pub type ProgressFn = dyn FnMut(Stage, usize, usize) -> bool + Send;
/// Log sink. Called on the thread that runs the session.
pub type LogFn = dyn FnMut(LogLevel, &str) + Send;

/// Hooks a session reports through.
#[derive(Default)]
pub struct Hooks {
    pub progress: Option<Box<ProgressFn>>,
    pub log: Option<Box<LogFn>>,
    pub log_level: Option<LogLevel>,
}

impl Hooks {
    /// Reports progress; an error when the user cancels.
    pub fn progress(&mut self, stage: Stage, done: usize, total: usize) -> Result<()> {
        if let Some(p) = self.progress.as_mut() {
            if !p(stage, done, total) {
                return Err(Error::Cancelled(format!("cancelled during {} at {done}/{total}", stage.name())));
            }
        }
        Ok(())
    }
    pub fn log(&mut self, level: LogLevel, msg: &str) {
        if level <= self.log_level.unwrap_or(LogLevel::Info) {
            if let Some(l) = self.log.as_mut() {
                l(level, msg);
            }
        }
    }
}
