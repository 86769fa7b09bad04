//! ovpot: OpenVINO post-training quantization as a native library.
//!
//! Data flows one way: IR text → [`graph::Graph`] → (the [`engine`] runs it, quantization passes
//! rewrite it) → IR text. The C ABI and the CLI are thin doors onto this Rust API.

pub mod engine;
pub mod error;
pub mod graph;
pub mod ir;
pub mod npy;
pub mod ops;
pub mod tensor;

pub use error::{Error, Result};
