//! The IR form OpenVINO runs with compressed-weight kernels, as NNCF writes it:
//! `Const(u8/i8/u4/i4) -> Convert(f16) [-> Subtract(Convert(f16) of the zero point)] -> Multiply
//! (f16 scale) [-> Reshape of the groups] [-> Convert to the weight's type]`, replacing the
//! weight's Const (an FP16 weight's own `Convert(f32)` is kept and now reads the Multiply).

use super::select::{WeightConfig, WeightSite};
use crate::graph::{Attrs, BinRange, Graph, Node, NodeId, Outlet, PartialShape, PortInfo};
use crate::tensor::{ElementType, Tensor};
use std::sync::Arc;

/// A new constant's bytes: in memory, or already written to the output `.bin`.
pub enum Payload {
    Memory(Tensor),
    Stored(BinRange),
}

/// Adds a Const of type `et` and `shape` holding `payload`.
pub fn add_payload_const(
    graph: &mut Graph,
    name: String,
    et: ElementType,
    shape: &[usize],
    payload: Payload,
) -> NodeId {
    let mut n = Node::new(name, "Const", "opset1");
    n.attrs = Attrs(vec![
        ("element_type".into(), et.ir_name().into()),
        ("shape".into(), shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    ]);
    n.outputs.push(PortInfo::new(et, PartialShape::from_static(shape)));
    n.const_type = Some(et);
    match payload {
        Payload::Memory(t) => n.value = Some(Arc::new(t)),
        Payload::Stored(r) => n.stored = Some(r),
    }
    graph.add_node(n)
}

fn convert(graph: &mut Graph, name: String, from: Outlet, to: ElementType) -> Outlet {
    let shape = graph.outlet_info(from).shape.clone();
    let attrs = Attrs::from_pairs(&[("destination_type", to.ir_name())]);
    Outlet::new(graph.add_op(name, "Convert", "opset1", attrs, vec![from], vec![PortInfo::new(to, shape)]), 0)
}

fn binary(graph: &mut Graph, name: String, op: &str, a: Outlet, b: Outlet) -> Outlet {
    let info = graph.outlet_info(a).clone();
    let attrs = Attrs::from_pairs(&[("auto_broadcast", "numpy")]);
    let out = PortInfo::new(info.element_type, info.shape);
    Outlet::new(graph.add_op(name, op, "opset1", attrs, vec![a, b], vec![out]), 0)
}

/// The shapes NNCF gives codes and parameters: codes keep the weight's shape, or split the
/// reduction axis into `[groups, group]`; scales and zero points are 1 along the reduced axis.
pub fn payload_shapes(site: &WeightSite, config: &WeightConfig) -> (Vec<usize>, Vec<usize>) {
    match config.group_size {
        Some(g) => {
            let axis = site.reduction_axes[0];
            let mut codes = site.shape[..axis].to_vec();
            codes.extend([site.shape[axis] / g, g]);
            codes.extend_from_slice(&site.shape[axis + 1..]);
            let mut params = codes.clone();
            params[axis + 1] = 1;
            (codes, params)
        }
        None => {
            let params = site
                .shape
                .iter()
                .enumerate()
                .map(|(a, &d)| if site.reduction_axes.contains(&a) { 1 } else { d })
                .collect();
            (site.shape.clone(), params)
        }
    }
}

/// Replaces the site's Const by the decompression subgraph reading `codes`, `zero_point` and
/// `scale`. The old Const is left without readers (remove dead nodes afterwards).
pub fn insert_decompression(
    graph: &mut Graph,
    site: &WeightSite,
    config: &WeightConfig,
    codes: Payload,
    zero_point: Option<Payload>,
    scale: Payload,
) {
    let name = graph.nodes[site.constant].name.clone();
    let (code_shape, param_shape) = payload_shapes(site, config);
    let code_type = config.format.code_type();
    let q = add_payload_const(graph, name.clone(), code_type, &code_shape, codes);
    let mut w = convert(graph, format!("{name}/convert"), Outlet::new(q, 0), ElementType::F16);
    if let Some(zp) = zero_point {
        let z = add_payload_const(graph, format!("{name}/zero_point"), code_type, &param_shape, zp);
        let z = convert(graph, format!("{name}/zero_point/convert"), Outlet::new(z, 0), ElementType::F16);
        w = binary(graph, format!("{name}/zero_point/subtract"), "Subtract", w, z);
    }
    let s = add_payload_const(graph, format!("{name}/scale"), ElementType::F16, &param_shape, scale);
    let mul_name = format!("{name}/fq_weights_{}", site.input);
    w = binary(graph, mul_name.clone(), "Multiply", w, Outlet::new(s, 0));
    if config.group_size.is_some() {
        let dims: Vec<i64> = site.shape.iter().map(|&d| d as i64).collect();
        let target = graph
            .add_const(format!("{mul_name}/shape"), Tensor::i64_from_vec(&[dims.len()], dims).expect("a 1-D shape"));
        let out = PortInfo::new(ElementType::F16, PartialShape::from_static(&site.shape));
        let attrs = Attrs::from_pairs(&[("special_zero", "false")]);
        let r = graph.add_op(
            format!("{mul_name}/reshape"),
            "Reshape",
            "opset1",
            attrs,
            vec![w, Outlet::new(target, 0)],
            vec![out],
        );
        w = Outlet::new(r, 0);
    }
    replace_uses(graph, Outlet::new(site.constant, 0), w, site.element_type, &format!("{mul_name}/convert"));
}

/// Points the readers of `old` at `new` (f16). NNCF's rule: a Convert reading the old weight
/// that yields the new source's type is bypassed; when the weight was not f16 and some reader is not a Convert, one Convert
/// back to the weight's type is added and every reader reads it.
fn replace_uses(graph: &mut Graph, old: Outlet, new: Outlet, old_type: ElementType, convert_name: &str) {
    let readers: Vec<(NodeId, usize)> = graph.consumers().remove(&old).unwrap_or_default();
    let needs_convert =
        old_type != ElementType::F16 && readers.iter().any(|&(r, _)| graph.nodes[r].op_type != "Convert");
    let source = if needs_convert { convert(graph, convert_name.to_string(), new, old_type) } else { new };
    rewire(graph, readers, source);
}

fn rewire(graph: &mut Graph, readers: Vec<(NodeId, usize)>, source: Outlet) {
    let source_type = graph.outlet_info(source).element_type;
    for (reader, input) in readers {
        let r = &graph.nodes[reader];
        if r.op_type == "Convert" && r.outputs.first().map(|p| p.element_type) == Some(source_type) {
            let next = graph.consumers().remove(&Outlet::new(reader, 0)).unwrap_or_default();
            rewire(graph, next, source);
        } else {
            graph.set_input(reader, input, source);
            graph.nodes[reader].input_ports[input].element_type = source_type;
        }
    }
}
