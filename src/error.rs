//! One error type for the whole crate; each kind maps 1:1 onto a C status code.

use std::path::PathBuf;

/// What went wrong, with enough context (file, layer) to act on it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("parse error in {file}: {msg}")]
    Parse { file: String, msg: String },
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("shape/type mismatch: {0}")]
    Mismatch(String),
    #[error("callback failed: {0}")]
    Callback(String),
    #[error("cancelled: {0}")]
    Cancelled(String),
    #[error("accuracy not reached: {0}")]
    AccuracyNotReached(String),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn parse(file: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Parse { file: file.into(), msg: msg.into() }
    }
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
    pub fn mismatch(msg: impl Into<String>) -> Self {
        Error::Mismatch(msg.into())
    }
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }
    pub fn unsupported(msg: impl Into<String>) -> Self {
        Error::Unsupported(msg.into())
    }
    pub fn internal(msg: impl Into<String>) -> Self {
        Error::Internal(msg.into())
    }
    /// Adds "<what> sample i" to the message, keeping the kind.
    pub fn with_sample(self, what: &str, i: usize) -> Error {
        let tag = format!("{what} sample {i}");
        match self {
            Error::InvalidArgument(m) if !m.contains(&tag) => Error::InvalidArgument(format!("{tag}: {m}")),
            Error::Mismatch(m) if !m.contains(&tag) => Error::Mismatch(format!("{tag}: {m}")),
            Error::Callback(m) if !m.contains(&tag) => Error::Callback(format!("{tag}: {m}")),
            Error::Unsupported(m) if !m.contains(&tag) => Error::Unsupported(format!("{tag}: {m}")),
            other => other,
        }
    }
    /// What went wrong, without the kind's prefix ("input 'x': expected ..." rather than
    /// "shape/type mismatch: input 'x': ..."): for a message that wraps this error in one of
    /// the same kind.
    pub fn message(&self) -> String {
        match self {
            Error::InvalidArgument(m)
            | Error::Unsupported(m)
            | Error::Mismatch(m)
            | Error::Callback(m)
            | Error::Cancelled(m)
            | Error::AccuracyNotReached(m)
            | Error::Internal(m) => m.clone(),
            other => other.to_string(),
        }
    }
    /// Short stable name of the kind, used in tests and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidArgument(_) => "invalid_argument",
            Error::Parse { .. } => "parse",
            Error::Unsupported(_) => "unsupported",
            Error::Mismatch(_) => "mismatch",
            Error::Callback(_) => "callback",
            Error::Cancelled(_) => "cancelled",
            Error::AccuracyNotReached(_) => "accuracy_not_reached",
            Error::Io { .. } => "io",
            Error::Internal(_) => "internal",
        }
    }
}
