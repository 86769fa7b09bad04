//! OpenVINO IR text and weights ↔ [`crate::graph::Graph`].

pub mod reader;
pub mod writer;
pub mod xml;

pub use reader::{read_model, read_model_from_memory};
pub use writer::{serialize, write_model};
