//! OpenVINO IR (v10/v11) `.xml` + `.bin` → [`Graph`].

use super::xml::parse_document;
use crate::error::{Error, Result};
use crate::graph::{describe_layer, Attrs, BinRange, Dim, Graph, Node, Outlet, PartialShape, PortInfo, XmlElement};
use crate::tensor::{ElementType, Tensor};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Reads `model.xml` and its weights (`bin`, or the `.xml` path with `.bin`). The `.bin` is
/// memory-mapped; each constant is decoded from it once.
pub fn read_model(xml_path: &Path, bin_path: Option<&Path>) -> Result<Graph> {
    read_model_with(xml_path, bin_path, None)
}

/// Reads the graph but not the weights: every Const larger than `keep_below` bytes is checked
/// (type, shape, range inside the `.bin`) and recorded in `Node::stored` instead of being decoded,
/// so a model of any size is read in memory proportional to its `.xml`.
pub fn read_model_lazy(xml_path: &Path, bin_path: Option<&Path>, keep_below: u64) -> Result<Graph> {
    read_model_with(xml_path, bin_path, Some(keep_below))
}

fn read_model_with(xml_path: &Path, bin_path: Option<&Path>, lazy: Option<u64>) -> Result<Graph> {
    let text = std::fs::read(xml_path).map_err(|e| Error::io(xml_path, e))?;
    let text = String::from_utf8(text)
        .map_err(|e| Error::parse(xml_path.display().to_string(), format!("the file is not UTF-8: {e}")))?;
    let bin_path = bin_path.map(Path::to_path_buf).unwrap_or_else(|| xml_path.with_extension("bin"));
    let file_name = xml_path.display().to_string();
    let root = parse_document(&text).map_err(|m| Error::parse(&file_name, m))?;
    let needs_weights = first_weighted_const(&root);
    if needs_weights.is_none() && !bin_path.exists() {
        return build_graph(&root, &[], &file_name, &bin_path.display().to_string(), lazy);
    }
    let file = std::fs::File::open(&bin_path).map_err(|e| {
        // Say which model and layer wanted the weights: the path alone does not tell a caller
        // that loaded several models which one is incomplete.
        let why = needs_weights.map(|l| format!("; {file_name} needs it for {l}")).unwrap_or_default();
        Error::io(&bin_path, std::io::Error::new(e.kind(), format!("{e}{why}")))
    })?;
    let len = file.metadata().map_err(|e| Error::io(&bin_path, e))?.len();
    if len == 0 {
        return build_graph(&root, &[], &file_name, &bin_path.display().to_string(), lazy);
    }
    // SAFETY: the mapping is read-only and lives only for this call; a concurrent truncation of
    // the file by another process is the one hazard, accepted as OpenVINO's reader accepts it.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(&bin_path, e))?;
    build_graph(&root, &map, &file_name, &bin_path.display().to_string(), lazy)
}

/// Reads a model from memory: the xml text and the weights bytes, as
/// `ov_core_read_model_from_memory_buffer` takes them.
pub fn read_model_from_memory(xml: &[u8], weights: &[u8]) -> Result<Graph> {
    let text = std::str::from_utf8(xml).map_err(|e| Error::parse("<memory>", format!("the xml is not UTF-8: {e}")))?;
    let root = parse_document(text).map_err(|m| Error::parse("<memory>", m))?;
    build_graph(&root, weights, "<memory>", "<memory weights>", None)
}

/// The first Const with bytes in the `.bin`, described for messages.
fn first_weighted_const(root: &XmlElement) -> Option<String> {
    let layer = root.child("layers")?.children_named("layer").find(|l| {
        matches!(l.attr("type"), Some("Const") | Some("Constant"))
            && l.child("data").and_then(|d| d.attr("size")).is_some_and(|s| s.trim() != "0")
    })?;
    Some(describe_layer(
        layer.attr("id"),
        layer.attr("name").unwrap_or(""),
        layer.attr("type").unwrap_or(""),
        layer.attr("version").unwrap_or("opset1"),
    ))
}

/// The newest complete opset of the OpenVINO release ovpot follows (2026.4: its opset17 holds
/// only a few ops, not even Constant, Add or Result).
const LATEST_OPSET: u32 = 16;

/// Whether OpenVINO's reader knows the opset a layer names (`opset1` ... `opset16`); it refuses
/// any other (`opset99`, `experimental`, `extension` without a registered extension).
fn is_known_opset(version: &str) -> bool {
    version
        .strip_prefix("opset")
        .filter(|n| !n.starts_with('0'))
        .and_then(|n| n.parse::<u32>().ok())
        .is_some_and(|n| (1..=LATEST_OPSET).contains(&n))
}

struct LayerPorts {
    /// IR port id → input index
    inputs: HashMap<u64, usize>,
    /// IR port id → output index
    outputs: HashMap<u64, usize>,
}

fn parse_u64(s: Option<&str>, what: &str, ctx: &dyn Fn() -> String, file: &str) -> Result<u64> {
    let s = s.ok_or_else(|| Error::parse(file, format!("{}: missing attribute '{what}'", ctx())))?;
    s.trim()
        .parse::<u64>()
        .map_err(|_| Error::parse(file, format!("{}: attribute '{what}' is not a non-negative integer: '{s}'", ctx())))
}

/// Which side of a layer a port is on: OpenVINO's reader requires and checks an output port's
/// `precision` (exact spelling) and ignores an input port's.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Input,
    Output,
}

fn parse_port(port: &XmlElement, side: Side, ctx: &dyn Fn() -> String, file: &str) -> Result<(u64, PortInfo)> {
    let id = parse_u64(port.attr("id"), "id", ctx, file)?;
    let element_type = match (port.attr("precision"), side) {
        (None, Side::Input) => ElementType::Dynamic,
        (None, Side::Output) => {
            return Err(Error::parse(file, format!("{}: output port {id} is missing attribute 'precision'", ctx())))
        }
        (Some(p), Side::Input) => ElementType::from_precision(p)
            .ok_or_else(|| Error::parse(file, format!("{}: port {id} has unknown precision '{p}'", ctx())))?,
        (Some(p), Side::Output) => ElementType::from_port_precision(p)
            .ok_or_else(|| Error::parse(file, format!("{}: output port {id} has unknown precision '{p}'", ctx())))?,
    };
    let mut dims = Vec::new();
    for d in port.children_named("dim") {
        let dim = Dim::parse(&d.text)
            .ok_or_else(|| Error::parse(file, format!("{}: port {id} has a bad dim '{}'", ctx(), d.text)))?;
        dims.push(dim);
    }
    let names = port.attr("names").map(split_names).unwrap_or_default();
    Ok((id, PortInfo { element_type, shape: PartialShape(Some(dims)), names, rt_info: port.child("rt_info").cloned() }))
}

/// Tensor names are comma separated; a literal comma is escaped as `\,`.
fn split_names(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.peek() == Some(&',') {
            cur.push(',');
            chars.next();
        } else if c == ',' {
            out.push(std::mem::take(&mut cur).trim().to_string());
        } else {
            cur.push(c);
        }
    }
    if !cur.trim().is_empty() || !out.is_empty() {
        out.push(cur.trim().to_string());
    }
    out.retain(|n| !n.is_empty());
    out
}

/// Parses a `shape` attribute ("16, 1, 3, 3"; empty for a scalar).
pub fn parse_shape_attr(s: &str) -> Option<Vec<usize>> {
    let s = s.trim();
    if s.is_empty() {
        return Some(vec![]);
    }
    s.split(',').map(|d| d.trim().parse::<usize>().ok()).collect()
}

fn build_graph(root: &XmlElement, weights: &[u8], file: &str, bin_name: &str, lazy: Option<u64>) -> Result<Graph> {
    if root.name != "net" {
        return Err(Error::parse(file, format!("the root element is <{}>, expected <net>", root.name)));
    }
    let ir_version: u32 = root.attr("version").and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    if ir_version != 10 && ir_version != 11 {
        return Err(Error::unsupported(format!(
            "{file}: IR version {:?} (only 10 and 11 are read)",
            root.attr("version").unwrap_or("missing")
        )));
    }
    let layers = root.child("layers").ok_or_else(|| Error::parse(file, "no <layers> section"))?;
    let mut nodes: Vec<Node> = Vec::new();
    let mut ports: Vec<LayerPorts> = Vec::new();
    let mut id_to_index: HashMap<u64, usize> = HashMap::new();
    for layer in layers.children_named("layer") {
        let raw_id = layer.attr("id").unwrap_or("?").to_string();
        let name = layer.attr("name").unwrap_or("").to_string();
        let op_type = layer.attr("type").unwrap_or("").to_string();
        let version = layer.attr("version").unwrap_or("opset1").to_string();
        let ctx = || describe_layer(Some(&raw_id), &name, &op_type, &version);
        let id = parse_u64(layer.attr("id"), "id", &ctx, file)?;
        if op_type.is_empty() {
            return Err(Error::parse(file, format!("{}: missing attribute 'type'", ctx())));
        }
        if !is_known_opset(&version) {
            return Err(Error::parse(
                file,
                format!("{}: unknown opset '{version}' (OpenVINO 2026.4 reads opset1 to opset{LATEST_OPSET})", ctx()),
            ));
        }
        let mut node = Node::new(name.clone(), &op_type, &version);
        node.ir_id = Some(id);
        node.layer_attrs = layer
            .attrs
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "id" | "name" | "type" | "version"))
            .cloned()
            .collect();
        if let Some(d) = layer.child("data") {
            node.attrs = Attrs(d.attrs.clone());
        }
        node.rt_info = layer.child("rt_info").cloned();
        let mut lp = LayerPorts { inputs: HashMap::new(), outputs: HashMap::new() };
        if let Some(inp) = layer.child("input") {
            for p in inp.children_named("port") {
                let (pid, info) = parse_port(p, Side::Input, &ctx, file)?;
                if lp.inputs.insert(pid, node.input_ports.len()).is_some() {
                    return Err(Error::parse(file, format!("{}: duplicate input port id {pid}", ctx())));
                }
                node.input_ports.push(info);
            }
        }
        if let Some(out) = layer.child("output") {
            for p in out.children_named("port") {
                let (pid, info) = parse_port(p, Side::Output, &ctx, file)?;
                if lp.outputs.insert(pid, node.outputs.len()).is_some() || lp.inputs.contains_key(&pid) {
                    return Err(Error::parse(file, format!("{}: duplicate port id {pid}", ctx())));
                }
                node.outputs.push(info);
            }
        }
        check_structural_ports(&node, &ctx, file)?;
        check_type_attributes(&node, &ctx, file)?;
        if node.is_const() {
            read_const(&mut node, weights, &ctx, file, bin_name, lazy)?;
        }
        if node.is_parameter() {
            check_parameter(&node, &ctx, file)?;
        }
        if id_to_index.insert(id, nodes.len()).is_some() {
            return Err(Error::parse(file, format!("{}: duplicate layer id {id}", ctx())));
        }
        node.inputs = vec![Outlet::new(usize::MAX, 0); node.input_ports.len()];
        nodes.push(node);
        ports.push(lp);
    }
    if let Some(edges) = root.child("edges") {
        for e in edges.children_named("edge") {
            let ectx = || {
                format!(
                    "edge {}:{} -> {}:{}",
                    e.attr("from-layer").unwrap_or("?"),
                    e.attr("from-port").unwrap_or("?"),
                    e.attr("to-layer").unwrap_or("?"),
                    e.attr("to-port").unwrap_or("?")
                )
            };
            let fl = parse_u64(e.attr("from-layer"), "from-layer", &ectx, file)?;
            let fp = parse_u64(e.attr("from-port"), "from-port", &ectx, file)?;
            let tl = parse_u64(e.attr("to-layer"), "to-layer", &ectx, file)?;
            let tp = parse_u64(e.attr("to-port"), "to-port", &ectx, file)?;
            let (from, to) = match (id_to_index.get(&fl), id_to_index.get(&tl)) {
                (Some(&f), Some(&t)) => (f, t),
                (Some(&f), None) => {
                    let msg = format!(
                        "{}: dangling edge: it starts at {} but no layer has id {tl}",
                        ectx(),
                        nodes[f].describe()
                    );
                    return Err(Error::parse(file, msg));
                }
                (None, Some(&t)) => {
                    let msg = format!(
                        "{}: dangling edge: it ends at {} but no layer has id {fl}",
                        ectx(),
                        nodes[t].describe()
                    );
                    return Err(Error::parse(file, msg));
                }
                (None, None) => {
                    let msg = format!("{}: dangling edge: no layer has id {fl} or id {tl}", ectx());
                    return Err(Error::parse(file, msg));
                }
            };
            let &out_idx = ports[from].outputs.get(&fp).ok_or_else(|| {
                Error::parse(file, format!("{}: {} has no output port {fp}", ectx(), nodes[from].describe()))
            })?;
            let &in_idx = ports[to].inputs.get(&tp).ok_or_else(|| {
                Error::parse(file, format!("{}: {} has no input port {tp}", ectx(), nodes[to].describe()))
            })?;
            let earlier = nodes[to].inputs[in_idx];
            if earlier.node != usize::MAX {
                return Err(Error::parse(
                    file,
                    format!(
                        "{}: duplicate edge: input port {tp} of {} already has an edge from {}",
                        ectx(),
                        nodes[to].describe(),
                        nodes[earlier.node].describe()
                    ),
                ));
            }
            let fo = &nodes[from].outputs[out_idx];
            let ti = &nodes[to].input_ports[in_idx];
            if !ports_compatible(fo, ti) {
                // Mismatch has no file field, so the file leads the message.
                return Err(Error::mismatch(format!(
                    "{file}: {}: port mismatch: output port {fp} of {} is {} {} but input port {tp} of {} expects {} {}",
                    ectx(),
                    nodes[from].describe(),
                    fo.element_type,
                    fo.shape,
                    nodes[to].describe(),
                    ti.element_type,
                    ti.shape
                )));
            }
            nodes[to].inputs[in_idx] = Outlet::new(from, out_idx);
        }
    }
    for (n, lp) in nodes.iter().zip(&ports) {
        if let Some(k) = n.inputs.iter().position(|o| o.node == usize::MAX) {
            let pid = lp.inputs.iter().find(|&(_, &i)| i == k).map_or(k as u64, |(&p, _)| p);
            return Err(Error::parse(file, format!("{}: input port {pid} has no incoming edge", n.describe())));
        }
    }
    let graph = Graph {
        name: root.attr("name").unwrap_or("model").to_string(),
        ir_version,
        nodes,
        rt_info: root.child("rt_info").cloned(),
    };
    // topo_order reports a cycle as an invalid argument; in a file it is a parse error, and its
    // message must not nest a second "invalid argument:" prefix.
    graph.topo_order().map_err(|e| match e {
        Error::InvalidArgument(m) => Error::parse(file, m),
        e => e,
    })?;
    Ok(graph)
}

fn ports_compatible(from: &PortInfo, to: &PortInfo) -> bool {
    let types_ok = from.element_type == to.element_type
        || from.element_type == ElementType::Dynamic
        || to.element_type == ElementType::Dynamic;
    let shapes_ok = match (from.shape.dims(), to.shape.dims()) {
        (Some(a), Some(b)) => {
            a.len() == b.len()
                && a.iter().zip(b).all(|(x, y)| match (x, y) {
                    (Dim::Static(p), Dim::Static(q)) => p == q,
                    _ => true,
                })
        }
        _ => true,
    };
    types_ok && shapes_ok
}

fn read_const(
    node: &mut Node,
    weights: &[u8],
    ctx: &dyn Fn() -> String,
    file: &str,
    bin_name: &str,
    lazy: Option<u64>,
) -> Result<()> {
    let et_name = node
        .attrs
        .get("element_type")
        .map(str::to_string)
        .or_else(|| node.outputs.first().map(|p| p.element_type.ir_name().to_string()))
        .ok_or_else(|| Error::parse(file, format!("{}: Const without element_type", ctx())))?;
    let et = ElementType::from_ir(&et_name)
        .filter(|t| *t != ElementType::Dynamic)
        .ok_or_else(|| Error::parse(file, format!("{}: unknown element_type '{et_name}'", ctx())))?;
    let shape = match node.attrs.get("shape") {
        Some(s) => {
            parse_shape_attr(s).ok_or_else(|| Error::parse(file, format!("{}: bad shape attribute '{s}'", ctx())))?
        }
        None => node
            .outputs
            .first()
            .and_then(|p| p.shape.to_static())
            .ok_or_else(|| Error::parse(file, format!("{}: Const without a static shape", ctx())))?,
    };
    let offset = parse_u64(node.attrs.get("offset"), "offset", ctx, file)? as usize;
    let size = parse_u64(node.attrs.get("size"), "size", ctx, file)? as usize;
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| Error::parse(file, format!("{}: shape {shape:?} overflows", ctx())))?;
    let need = et.byte_size(count);
    if size < need {
        return Err(Error::parse(
            file,
            format!("{}: size {size} is too small for {et} {shape:?} ({need} bytes)", ctx()),
        ));
    }
    let end = offset.checked_add(size).filter(|&e| e <= weights.len()).ok_or_else(|| {
        Error::parse(
            file,
            format!(
                "{}: offset {offset} + size {size} runs past the end of {bin_name} ({} bytes)",
                ctx(),
                weights.len()
            ),
        )
    })?;
    if lazy.is_some_and(|keep_below| size as u64 > keep_below) {
        node.stored = Some(BinRange { offset: offset as u64, size: size as u64 });
    } else {
        let t = Tensor::from_bytes(et, &shape, &weights[offset..end])
            .map_err(|e| Error::parse(file, format!("{}: {e}", ctx())))?;
        node.value = Some(Arc::new(t));
    }
    node.const_type = Some(et);
    if let Some(port) = node.outputs.first() {
        // The attributes make the constant (as in OpenVINO); a port that says otherwise is a
        // contradiction that would be written back as it was read.
        if port.shape.dims().is_some_and(|d| !dims_agree(&shape_as_dims(&shape), d)) {
            let msg = format!("{}: shape=\"{}\" contradicts its output port {}", ctx(), shape_text(&shape), port.shape);
            return Err(Error::parse(file, msg));
        }
        if port.element_type != ElementType::Dynamic && port.element_type != et {
            let msg =
                format!("{}: element_type {et} contradicts its output port's precision {}", ctx(), port.element_type);
            return Err(Error::parse(file, msg));
        }
    }
    Ok(())
}

fn shape_as_dims(shape: &[usize]) -> Vec<Dim> {
    shape.iter().map(|&d| Dim::Static(d)).collect()
}

fn shape_text(shape: &[usize]) -> String {
    shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")
}

/// Whether two partial shapes can describe the same tensor: same rank, equal static dims.
fn dims_agree(a: &[Dim], b: &[Dim]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| match (x.as_static(), y.as_static()) {
            (Some(p), Some(q)) => p == q,
            _ => true,
        })
}

/// Attributes that name an element type (`element_type`, `destination_type`, `output_type`,
/// `index_element_type`) must name one: OpenVINO refuses `index_element_type="xyz"` on a MaxPool
/// ("not a member of enum element::Type_t"), and ovpot would write it back.
fn check_type_attributes(node: &Node, ctx: &dyn Fn() -> String, file: &str) -> Result<()> {
    for (key, value) in &node.attrs.0 {
        let names_a_type = key.ends_with("element_type") || key == "destination_type" || key == "output_type";
        if names_a_type && ElementType::from_ir(value).is_none() {
            return Err(Error::parse(file, format!("{}: unknown {key} '{value}' (not an element type)", ctx())));
        }
    }
    Ok(())
}

/// Parameter, Const and Result have fixed ports (OpenVINO refuses, say, a Result without an
/// input: "Argument has 0 outputs (1 expected)").
fn check_structural_ports(node: &Node, ctx: &dyn Fn() -> String, file: &str) -> Result<()> {
    let (inputs, outputs) = match node.op_type.as_str() {
        "Parameter" | "Const" | "Constant" => (0, 1),
        "Result" => (1, 0),
        _ => return Ok(()),
    };
    let (have_in, have_out) = (node.input_ports.len(), node.outputs.len());
    if have_in != inputs || have_out != outputs {
        let msg = format!(
            "{}: a {} has {inputs} input and {outputs} output port(s), this one {have_in} and {have_out}",
            ctx(),
            node.op_type
        );
        return Err(Error::parse(file, msg));
    }
    Ok(())
}

/// A Parameter's `shape` and `element_type` attributes define its input, as in OpenVINO (which
/// takes no shape for a scalar); an output port that contradicts them is refused rather than
/// guessed at.
fn check_parameter(node: &Node, ctx: &dyn Fn() -> String, file: &str) -> Result<()> {
    let port = node
        .outputs
        .first()
        .ok_or_else(|| Error::parse(file, format!("{}: a Parameter without an output port", ctx())))?;
    let attr = node.attrs.get("shape").unwrap_or("");
    let mut dims = vec![];
    if !attr.trim().is_empty() {
        for d in attr.split(',') {
            let dim = Dim::parse(d)
                .filter(|d| !matches!(d, Dim::Range(lo, hi) if *lo < 0 || (*hi >= 0 && hi < lo)))
                .ok_or_else(|| Error::parse(file, format!("{}: bad dim '{}' in shape=\"{attr}\"", ctx(), d.trim())))?;
            dims.push(dim);
        }
    }
    if let Some(port_dims) = port.shape.dims() {
        if !dims_agree(&dims, port_dims) {
            let msg = format!("{}: shape=\"{attr}\" contradicts its output port {}", ctx(), port.shape);
            return Err(Error::parse(file, msg));
        }
    }
    let Some(et) = node.attrs.get("element_type") else {
        // OpenVINO reads it as dynamic, then cannot compile the model.
        return Err(Error::parse(file, format!("{}: a Parameter without element_type", ctx())));
    };
    let t = ElementType::from_ir(et)
        .ok_or_else(|| Error::parse(file, format!("{}: unknown element_type '{et}'", ctx())))?;
    if t == ElementType::Dynamic {
        // OpenVINO reads it, then cannot compile the model ("incompatible descriptors").
        let msg = format!("{}: element_type '{et}': a model input needs an element type", ctx());
        return Err(Error::parse(file, msg));
    }
    if port.element_type != ElementType::Dynamic && t != port.element_type {
        let msg = format!("{}: element_type {et} contradicts its output port's precision {}", ctx(), port.element_type);
        return Err(Error::parse(file, msg));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_escaped_commas() {
        assert_eq!(split_names("a,b\\,c, d"), vec!["a", "b,c", "d"]);
        assert!(split_names("").is_empty());
    }
}
