//! A folder of statistics already collected (`--stats-cache DIR`): a second compression of the
//! same model on the same samples (other methods, ratio or group size) reads them instead of
//! running the model. An entry's name is a hash of what determines the statistics: the graph
//! (ops, attributes, constants' bytes), the inputs asked for, the samples, and the backend.

use super::activations::InputStats;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::graph::{Graph, Outlet};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"OVPOTST1";

/// FNV-1a over 64-bit words (bytes for the tail): fast enough to hash a model's weights.
struct Hasher(u64);

impl Hasher {
    fn new() -> Self {
        Hasher(0xcbf2_9ce4_8422_2325)
    }
    fn bytes(&mut self, b: &[u8]) {
        let words = b.chunks_exact(8);
        let tail = words.remainder();
        for w in words {
            self.0 = (self.0 ^ u64::from_le_bytes(w.try_into().expect("8 bytes"))).wrapping_mul(0x100_0000_01b3);
        }
        for &x in tail {
            self.0 = (self.0 ^ x as u64).wrapping_mul(0x100_0000_01b3);
        }
        self.0 = (self.0 ^ b.len() as u64).wrapping_mul(0x100_0000_01b3);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
}

/// The name of an outlet that survives a re-read of the model.
fn outlet_name(graph: &Graph, o: Outlet) -> String {
    format!("{}:{}", graph.nodes[o.node].name, o.port)
}

/// The entry's key: the graph, the inputs (by name, with their axes), the first `n` samples and
/// the backend's name.
pub fn key(graph: &Graph, inputs: &[(Outlet, usize)], data: &dyn Dataset, n: usize, backend: &str) -> Result<String> {
    let mut h = Hasher::new();
    for node in &graph.nodes {
        h.str(&node.op_type);
        h.str(&node.name);
        for (k, v) in &node.attrs.0 {
            h.str(k);
            h.str(v);
        }
        for i in &node.inputs {
            h.bytes(&(i.node as u64).to_le_bytes());
            h.bytes(&(i.port as u64).to_le_bytes());
        }
        if let (Some(v), Some(et)) = (&node.value, node.const_type) {
            h.bytes(&v.to_bytes(et)?);
        }
    }
    for &(o, axis) in inputs {
        h.str(&outlet_name(graph, o));
        h.bytes(&(axis as u64).to_le_bytes());
    }
    for i in 0..n {
        for (name, t) in data.get(i)? {
            h.str(&name);
            h.str(t.element_type().ir_name());
            for &d in t.shape() {
                h.bytes(&(d as u64).to_le_bytes());
            }
            h.bytes(&t.to_bytes(t.element_type())?);
        }
    }
    h.str(backend);
    Ok(format!("{:016x}", h.0))
}

fn entry(dir: &Path, key: &str) -> PathBuf {
    dir.join(format!("{key}.ovstats"))
}

/// The statistics stored under `key`, mapped onto `graph`'s outlets; None when there is no entry
/// (or it is unreadable: the caller collects again and overwrites it).
pub fn load(dir: &Path, key: &str, graph: &Graph) -> Option<HashMap<Outlet, InputStats>> {
    let mut bytes = vec![];
    std::fs::File::open(entry(dir, key)).ok()?.read_to_end(&mut bytes).ok()?;
    decode(&bytes, graph)
}

/// Stores `stats` under `key` (written to a temporary file, then renamed).
pub fn store(dir: &Path, key: &str, graph: &Graph, stats: &HashMap<Outlet, InputStats>) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let path = entry(dir, key);
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        f.write_all(&encode(graph, stats))?;
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(&path, e)
    })
}

fn encode(graph: &Graph, stats: &HashMap<Outlet, InputStats>) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    let mut names: Vec<(String, &InputStats)> = stats.iter().map(|(&o, s)| (outlet_name(graph, o), s)).collect();
    names.sort_by(|a, b| a.0.cmp(&b.0));
    let u64s = |out: &mut Vec<u8>, v: u64| out.extend_from_slice(&v.to_le_bytes());
    u64s(&mut out, names.len() as u64);
    for (name, s) in names {
        u64s(&mut out, name.len() as u64);
        out.extend_from_slice(name.as_bytes());
        u64s(&mut out, s.channel_axis as u64);
        u64s(&mut out, s.samples() as u64);
        for (m, shape) in s.means.iter().zip(&s.shapes) {
            u64s(&mut out, shape.len() as u64);
            shape.iter().for_each(|&d| u64s(&mut out, d as u64));
            u64s(&mut out, m.len() as u64);
            m.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
        }
        for v in [&s.mean_square, &s.mean_variance, &s.max_variance, &s.mean_magnitude] {
            v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        }
    }
    out
}

/// Reads what [`encode`] wrote; None when it is not that or names an outlet `graph` lacks.
fn decode(bytes: &[u8], graph: &Graph) -> Option<HashMap<Outlet, InputStats>> {
    let mut r = Reader { bytes, at: 0 };
    if r.take(8)? != MAGIC {
        return None;
    }
    let by_name: HashMap<&str, usize> = graph.nodes.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();
    let mut out = HashMap::new();
    for _ in 0..r.u64()? {
        let len = r.u64()? as usize;
        let name = std::str::from_utf8(r.take(len)?).ok()?;
        let (node, port) = name.rsplit_once(':')?;
        let outlet = Outlet::new(*by_name.get(node)?, port.parse().ok()?);
        let mut s = InputStats { channel_axis: r.u64()? as usize, ..Default::default() };
        let samples = r.u64()? as usize;
        for _ in 0..samples {
            let rank = r.u64()? as usize;
            s.shapes.push((0..rank).map(|_| r.u64().map(|d| d as usize)).collect::<Option<_>>()?);
            let hidden = r.u64()? as usize;
            s.means.push((0..hidden).map(|_| r.f32()).collect::<Option<_>>()?);
        }
        for v in [&mut s.mean_square, &mut s.mean_variance, &mut s.max_variance, &mut s.mean_magnitude] {
            *v = (0..samples).map(|_| r.f64()).collect::<Option<_>>()?;
        }
        out.insert(outlet, s);
    }
    (r.at == bytes.len()).then_some(out)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len())?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Some(s)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn f32(&mut self) -> Option<f32> {
        Some(f32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn f64(&mut self) -> Option<f64> {
        Some(f64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Node;

    #[test]
    fn entries_read_back_and_refuse_garbage() {
        let mut g = Graph::default();
        let a = g.add_node(Node::new("x", "Parameter", "opset1"));
        let o = Outlet::new(a, 0);
        let s = InputStats {
            channel_axis: 2,
            means: vec![vec![1.0, -2.5], vec![0.25, 3.0]],
            shapes: vec![vec![1, 4, 2], vec![1, 3, 2]],
            mean_square: vec![1.0, 2.0],
            mean_variance: vec![0.5, 0.25],
            max_variance: vec![0.75, 0.5],
            mean_magnitude: vec![2.0, 3.0],
        };
        let stats: HashMap<Outlet, InputStats> = [(o, s.clone())].into_iter().collect();
        let bytes = encode(&g, &stats);
        assert_eq!(decode(&bytes, &g).unwrap()[&o], s);
        assert!(decode(&bytes[..bytes.len() - 1], &g).is_none());
        assert!(decode(b"OVPOTST0", &g).is_none());
        let dir = tempfile::tempdir().unwrap();
        store(dir.path(), "k", &g, &stats).unwrap();
        assert_eq!(load(dir.path(), "k", &g).unwrap()[&o], s);
        assert!(load(dir.path(), "other", &g).is_none());
    }
}
