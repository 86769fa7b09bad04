//! IR text + weights from untrusted bytes: the input is `xml \0 weights` (everything before the
//! first NUL is the XML, the rest the .bin). Whatever parses must also plan, serialize and, when
//! its inputs are small and static, run on zeros, all without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ovpot::engine::Plan;
use ovpot::graph::Dim;
use ovpot::tensor::Tensor;

/// Inputs above this many elements are not run: the fuzzer looks for crashes, not slow models.
const MAX_RUN_ELEMENTS: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let xml = &data[..split];
    let weights = data.get(split + 1..).unwrap_or(&[]);
    let Ok(graph) = ovpot::ir::read_model_from_memory(xml, weights) else { return };
    let _ = ovpot::ir::serialize(&graph);
    let Ok(plan) = Plan::new(&graph) else { return };
    let mut inputs = Vec::new();
    for p in graph.parameters() {
        let info = &graph.nodes[p].outputs[0];
        let Some(dims) = info.shape.0.as_ref() else { return };
        let mut shape = Vec::with_capacity(dims.len());
        for d in dims {
            match d {
                Dim::Static(n) => shape.push(*n),
                _ => shape.push(1),
            }
        }
        let elements = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        if !matches!(elements, Some(n) if n <= MAX_RUN_ELEMENTS) {
            return;
        }
        let Ok(t) = Tensor::zeros(info.element_type, &shape) else { return };
        inputs.push((graph.parameter_name(p).to_string(), t));
    }
    let _ = plan.run(&inputs);
});
