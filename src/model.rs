//! A model: an IR graph with its weights, read, written and run.

use crate::engine::Plan;
use crate::error::Result;
use crate::graph::{Graph, PartialShape};
use crate::tensor::ElementType;
use std::path::Path;
use std::sync::Arc;

/// Name, element type and (partial) shape of a model input or output.
#[derive(Clone, Debug, PartialEq)]
pub struct PortDesc {
    pub name: String,
    pub element_type: ElementType,
    pub shape: PartialShape,
}

/// An OpenVINO model (IR graph plus weights). Cheap to clone: constants are shared.
#[derive(Clone, Debug)]
pub struct Model {
    graph: Arc<Graph>,
}

impl Model {
    pub fn from_graph(graph: Graph) -> Self {
        Model { graph: Arc::new(graph) }
    }
    /// Reads `xml` and its weights (`bin`, default: `xml` with `.bin`).
    pub fn read(xml: &Path, bin: Option<&Path>) -> Result<Model> {
        Ok(Self::from_graph(crate::ir::read_model(xml, bin)?))
    }
    /// Reads from memory, as `ov_core_read_model_from_memory_buffer` takes a model.
    pub fn from_memory(xml: &[u8], weights: &[u8]) -> Result<Model> {
        Ok(Self::from_graph(crate::ir::read_model_from_memory(xml, weights)?))
    }
    /// Writes IR v11 atomically (both files appear complete or not at all).
    pub fn save(&self, xml: &Path, bin: Option<&Path>) -> Result<()> {
        crate::ir::write_model(&self.graph, xml, bin)
    }
    /// Serializes to IR text and weights in memory.
    pub fn to_memory(&self) -> Result<(String, Vec<u8>)> {
        crate::ir::serialize(&self.graph)
    }
    pub fn graph(&self) -> &Graph {
        &self.graph
    }
    pub fn name(&self) -> &str {
        &self.graph.name
    }
    pub fn inputs(&self) -> Vec<PortDesc> {
        self.graph
            .parameters()
            .into_iter()
            .map(|p| {
                let info = &self.graph.nodes[p].outputs[0];
                PortDesc {
                    name: self.graph.parameter_name(p).to_string(),
                    element_type: info.element_type,
                    shape: info.shape.clone(),
                }
            })
            .collect()
    }
    pub fn outputs(&self) -> Vec<PortDesc> {
        self.graph
            .results()
            .into_iter()
            .map(|r| {
                let n = &self.graph.nodes[r];
                let src = n.inputs[0];
                let info = self.graph.outlet_info(src);
                let name = info.names.first().cloned().unwrap_or_else(|| self.graph.nodes[src.node].name.clone());
                PortDesc { name, element_type: info.element_type, shape: info.shape.clone() }
            })
            .collect()
    }
    /// A plan for running this model with the built-in engine.
    pub fn plan(&self) -> Result<Plan> {
        Plan::new(&self.graph)
    }
}
