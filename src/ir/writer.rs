//! [`Graph`] → OpenVINO IR v11 `.xml` + `.bin` (each constant stored once, 8-byte aligned).

use super::xml::{escape, write_element};
use crate::error::{Error, Result};
use crate::graph::{Graph, PortInfo};
use crate::tensor::ElementType;
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

const ALIGN: usize = 8;

/// The order nodes are written in: Parameters first and Results last, each in model order
/// (OpenVINO orders a model's inputs and outputs by their position in the file), the rest
/// topologically.
pub fn file_order(graph: &Graph) -> Result<Vec<usize>> {
    let topo = graph.topo_order()?;
    let mut order: Vec<usize> = graph.parameters();
    order.extend(topo.into_iter().filter(|&i| !graph.nodes[i].is_parameter() && !graph.nodes[i].is_result()));
    order.extend(graph.results());
    Ok(order)
}

/// Serializes a graph to IR v11 text and weights.
pub fn serialize(graph: &Graph) -> Result<(String, Vec<u8>)> {
    let order = file_order(graph)?;
    let mut new_id = vec![0usize; graph.nodes.len()];
    for (i, &id) in order.iter().enumerate() {
        new_id[id] = i;
    }
    let mut bin: Vec<u8> = Vec::new();
    let mut stored: HashMap<u64, Vec<(usize, usize)>> = HashMap::new();
    let mut x = String::with_capacity(graph.nodes.len() * 600);
    x.push_str("<?xml version=\"1.0\"?>\n");
    x.push_str(&format!("<net name=\"{}\" version=\"11\">\n\t<layers>\n", escape(&graph.name)));
    for &id in &order {
        let n = &graph.nodes[id];
        x.push_str(&format!(
            "\t\t<layer id=\"{}\" name=\"{}\" type=\"{}\" version=\"{}\"",
            new_id[id],
            escape(&n.name),
            escape(&n.op_type),
            escape(&n.version)
        ));
        for (k, v) in &n.layer_attrs {
            x.push_str(&format!(" {}=\"{}\"", k, escape(v)));
        }
        x.push_str(">\n");
        let mut attrs = n.attrs.clone();
        if n.is_const() {
            let value =
                n.value.as_ref().ok_or_else(|| Error::internal(format!("{} has no value to write", n.describe())))?;
            let et = n.const_type.unwrap_or(value.element_type());
            let bytes = value.to_bytes(et).map_err(|e| Error::internal(format!("{}: {e}", n.describe())))?;
            let offset = store(&mut bin, &mut stored, &bytes);
            attrs.set("element_type", et.ir_name());
            attrs.set("shape", value.shape().iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "));
            attrs.set("offset", offset.to_string());
            attrs.set("size", bytes.len().to_string());
        }
        if !attrs.0.is_empty() || n.is_const() {
            x.push_str("\t\t\t<data");
            for (k, v) in &attrs.0 {
                x.push_str(&format!(" {}=\"{}\"", k, escape(v)));
            }
            x.push_str(" />\n");
        }
        if let Some(rt) = &n.rt_info {
            write_element(&mut x, rt, 3);
        }
        if !n.input_ports.is_empty() {
            x.push_str("\t\t\t<input>\n");
            for (k, p) in n.input_ports.iter().enumerate() {
                write_port(&mut x, k, p);
            }
            x.push_str("\t\t\t</input>\n");
        }
        if !n.outputs.is_empty() {
            x.push_str("\t\t\t<output>\n");
            for (k, p) in n.outputs.iter().enumerate() {
                let mut p = p.clone();
                if n.is_const() {
                    if let Some(et) = n.const_type {
                        p.element_type = et;
                    }
                }
                write_port(&mut x, n.input_ports.len() + k, &p);
            }
            x.push_str("\t\t\t</output>\n");
        }
        x.push_str("\t\t</layer>\n");
    }
    x.push_str("\t</layers>\n\t<edges>\n");
    for &id in &order {
        let n = &graph.nodes[id];
        for (k, o) in n.inputs.iter().enumerate() {
            let from_ports = graph.nodes[o.node].input_ports.len();
            x.push_str(&format!(
                "\t\t<edge from-layer=\"{}\" from-port=\"{}\" to-layer=\"{}\" to-port=\"{}\" />\n",
                new_id[o.node],
                from_ports + o.port,
                new_id[id],
                k
            ));
        }
    }
    x.push_str("\t</edges>\n");
    if let Some(rt) = &graph.rt_info {
        write_element(&mut x, rt, 1);
    }
    x.push_str("</net>\n");
    Ok((x, bin))
}

fn store(bin: &mut Vec<u8>, stored: &mut HashMap<u64, Vec<(usize, usize)>>, bytes: &[u8]) -> usize {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    let key = h.finish();
    if let Some(cands) = stored.get(&key) {
        for &(off, len) in cands {
            if len == bytes.len() && &bin[off..off + len] == bytes {
                return off;
            }
        }
    }
    while !bin.len().is_multiple_of(ALIGN) {
        bin.push(0);
    }
    let off = bin.len();
    bin.extend_from_slice(bytes);
    stored.entry(key).or_default().push((off, bytes.len()));
    off
}

fn write_port(x: &mut String, id: usize, p: &PortInfo) {
    x.push_str(&format!("\t\t\t\t<port id=\"{id}\""));
    // OpenVINO requires `precision` on every output port; a dynamic type is spelled "dynamic"
    // ("DYNAMIC" is refused).
    let precision = match p.element_type {
        ElementType::Dynamic => "dynamic",
        t => t.precision_name(),
    };
    x.push_str(&format!(" precision=\"{precision}\""));
    if !p.names.is_empty() {
        let names: Vec<String> = p.names.iter().map(|s| s.replace(',', "\\,")).collect();
        x.push_str(&format!(" names=\"{}\"", escape(&names.join(","))));
    }
    let dims = p.shape.dims().unwrap_or(&[]);
    if dims.is_empty() && p.rt_info.is_none() {
        x.push_str(" />\n");
        return;
    }
    x.push_str(">\n");
    for d in dims {
        x.push_str(&format!("\t\t\t\t\t<dim>{d}</dim>\n"));
    }
    if let Some(rt) = &p.rt_info {
        write_element(x, rt, 5);
    }
    x.push_str("\t\t\t\t</port>\n");
}

/// A temporary name next to `p`, unique per process (saves within a process are serialized).
fn temp_path(p: &Path, tag: &str) -> PathBuf {
    let mut s = p.as_os_str().to_os_string();
    s.push(format!(".{tag}-{}", std::process::id()));
    PathBuf::from(s)
}

/// Saves in one process run one at a time, so two threads saving to one path cannot interleave
/// their renames and leave a mismatched pair.
static SAVE_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn write_file_synced(path: &Path, data: &[u8]) -> Result<()> {
    let mut f = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    f.write_all(data).map_err(|e| Error::io(path, e))?;
    f.sync_all().map_err(|e| Error::io(path, e))?;
    Ok(())
}

/// Writes `xml_path` and its `.bin` (next to it unless `bin_path` is given) atomically: both go
/// to temporary files first and are renamed into place only when both are complete, so a failure
/// never leaves a half-written pair or destroys an existing model.
pub fn write_model(graph: &Graph, xml_path: &Path, bin_path: Option<&Path>) -> Result<()> {
    let bin_path = bin_path.map(Path::to_path_buf).unwrap_or_else(|| xml_path.with_extension("bin"));
    let (xml, bin) = serialize(graph)?;
    let _guard = SAVE_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let (tx, tb) = (temp_path(xml_path, "tmp"), temp_path(&bin_path, "tmp"));
    let backup = temp_path(&bin_path, "old");
    let mut moved_old_bin = false;
    let result = (|| {
        write_file_synced(&tb, &bin)?;
        write_file_synced(&tx, xml.as_bytes())?;
        // Keep the old .bin until the new .xml is in place, so a failure restores the old pair.
        if bin_path.is_file() {
            std::fs::rename(&bin_path, &backup).map_err(|e| Error::io(&bin_path, e))?;
            moved_old_bin = true;
        }
        std::fs::rename(&tb, &bin_path).map_err(|e| Error::io(&bin_path, e))?;
        std::fs::rename(&tx, xml_path).map_err(|e| Error::io(xml_path, e))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tx);
        let _ = std::fs::remove_file(&tb);
        if moved_old_bin {
            let _ = std::fs::rename(&backup, &bin_path);
        }
    } else if moved_old_bin {
        let _ = std::fs::remove_file(&backup);
    }
    result
}
