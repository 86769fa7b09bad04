//! ovpot: OpenVINO post-training quantization as a native library.
//!
//! Data flows one way: IR text → [`graph::Graph`] → (the [`engine`] runs it, [`quant`] passes
//! rewrite it) → IR text. The C ABI ([`ffi`]) and the CLI are thin doors onto this Rust API
//! ([`api`]).

pub mod analysis;
pub mod api;
pub mod backend;
pub mod compress;
pub mod data;
pub mod engine;
pub mod error;
pub mod ffi;
pub mod graph;
pub mod hooks;
pub mod ir;
pub mod memory;
pub mod model;
pub mod npy;
pub mod ops;
pub mod quant;
pub mod report;
pub mod synthetic;
pub mod tensor;

pub use api::{Dataset, InMemoryDataset, Metric, Model, Outcome, Report, Session};
pub use error::{Error, Result};
pub use quant::config::QuantConfig;
