//! [`Graph`] → OpenVINO IR v11 `.xml` + `.bin` (each constant stored once, packed back to back
//! as OpenVINO writes them).

use super::xml::{escape, write_element};
use crate::error::{Error, Result};
use crate::graph::{Graph, PortInfo};
use crate::tensor::ElementType;
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The alignment of a constant of type `et` in the `.bin`: none. OpenVINO's serializer packs
/// constants back to back and its reader takes any offset; ovpot writes files of the same size.
pub fn alignment_of(_et: ElementType) -> usize {
    1
}

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

/// Where the writer puts constants' bytes: memory (the `.bin` as a vector) or a file written as
/// it goes. Returns each constant's offset.
pub trait ConstSink {
    fn store(&mut self, bytes: &[u8], align: usize) -> Result<u64>;
    /// Whether the sink is the file that `Node::stored` ranges point into (a streamed write),
    /// so such constants are written by reference.
    fn holds_stored(&self) -> bool {
        false
    }
}

/// The `.bin` in memory, each distinct constant stored once.
#[derive(Default)]
struct MemorySink {
    bin: Vec<u8>,
    stored: HashMap<u64, Vec<(usize, usize)>>,
}

impl ConstSink for MemorySink {
    fn store(&mut self, bytes: &[u8], align: usize) -> Result<u64> {
        Ok(store(&mut self.bin, &mut self.stored, bytes, align) as u64)
    }
}

/// Serializes a graph to IR v11 text and weights.
pub fn serialize(graph: &Graph) -> Result<(String, Vec<u8>)> {
    let mut sink = MemorySink::default();
    let xml = serialize_into(graph, &mut sink)?;
    Ok((xml, sink.bin))
}

/// Serializes a graph to IR v11 text, handing constants' bytes to `sink`.
pub fn serialize_into(graph: &Graph, sink: &mut dyn ConstSink) -> Result<String> {
    let order = file_order(graph)?;
    let mut new_id = vec![0usize; graph.nodes.len()];
    for (i, &id) in order.iter().enumerate() {
        new_id[id] = i;
    }
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
            let (et, shape, offset, size) = match (&n.value, n.stored) {
                (Some(value), _) => {
                    let et = n.const_type.unwrap_or(value.element_type());
                    let bytes = value.to_bytes(et).map_err(|e| Error::internal(format!("{}: {e}", n.describe())))?;
                    (et, value.shape().to_vec(), sink.store(&bytes, alignment_of(et))?, bytes.len() as u64)
                }
                (None, Some(range)) if sink.holds_stored() => {
                    let et = n.const_type.ok_or_else(|| Error::internal(format!("{} has no type", n.describe())))?;
                    let shape = n
                        .outputs
                        .first()
                        .and_then(|p| p.shape.to_static())
                        .ok_or_else(|| Error::internal(format!("{} has no static shape to write", n.describe())))?;
                    (et, shape, range.offset, range.size)
                }
                _ => return Err(Error::internal(format!("{} has no value to write", n.describe()))),
            };
            attrs.set("element_type", et.ir_name());
            attrs.set("shape", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "));
            attrs.set("offset", offset.to_string());
            attrs.set("size", size.to_string());
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
    Ok(x)
}

fn store(bin: &mut Vec<u8>, stored: &mut HashMap<u64, Vec<(usize, usize)>>, bytes: &[u8], align: usize) -> usize {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    let key = h.finish();
    if let Some(cands) = stored.get(&key) {
        for &(off, len) in cands {
            if len == bytes.len() && off.is_multiple_of(align) && &bin[off..off + len] == bytes {
                return off;
            }
        }
    }
    while !bin.len().is_multiple_of(align) {
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

/// A temporary name next to `p`, unique per process and call (two saves may stream at once).
fn temp_path(p: &Path, tag: &str) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut s = p.as_os_str().to_os_string();
    s.push(format!(".{tag}-{}-{n}", std::process::id()));
    PathBuf::from(s)
}

/// Saves in one process run one at a time, so two threads saving to one path cannot interleave
/// their renames and leave a mismatched pair.
static SAVE_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Writes `data` to `path`; errors name `shown` (the user's path, not the temporary).
fn write_file_synced(path: &Path, shown: &Path, data: &[u8]) -> Result<()> {
    let mut f = std::fs::File::create(path).map_err(|e| Error::io(shown, e))?;
    f.write_all(data).map_err(|e| Error::io(shown, e))?;
    f.sync_all().map_err(|e| Error::io(shown, e))?;
    Ok(())
}

/// The file a save to `path` replaces: `path` itself, or the file its symlinks finally point to
/// (a save writes through a link and leaves it a link). Refuses anything that is not a regular
/// file or missing: directories, device nodes, FIFOs, sockets. Errors name `path`.
fn save_target(path: &Path) -> Result<PathBuf> {
    let mut cur = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                let to = std::fs::read_link(&cur).map_err(|e| Error::io(path, e))?;
                cur = match cur.parent() {
                    Some(dir) if to.is_relative() => dir.join(to),
                    _ => to,
                };
            }
            Ok(m) if m.is_file() => return Ok(cur),
            Ok(m) => {
                let what = if m.is_dir() { "a directory" } else { "a device, FIFO or socket" };
                let via = if cur == path { String::new() } else { format!(" (through a link to {})", cur.display()) };
                return Err(Error::io(
                    path,
                    std::io::Error::other(format!("not a regular file: the save target is {what}{via}")),
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(cur),
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    Err(Error::io(path, std::io::Error::other("too many levels of symbolic links")))
}

/// Writes `xml_path` and its `.bin` (next to it unless `bin_path` is given) atomically: both go
/// to temporary files first and are renamed into place only when both are complete, so a failure
/// never leaves a half-written pair or destroys an existing model.
pub fn write_model(graph: &Graph, xml_path: &Path, bin_path: Option<&Path>) -> Result<()> {
    let (xml, bin) = serialize(graph)?;
    let mut pair = PairWriter::create(xml_path, bin_path)?;
    pair.sink().append(&bin, 1)?;
    pair.finish_with_xml(&xml)
}

/// A `.bin` written as it goes: constants appended back to back, small ones stored once. The
/// bytes go to the file on a writer thread, so compressing the next weight overlaps writing this
/// one; at most a few buffers wait in between.
pub struct FileSink {
    queue: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    writer: Option<std::thread::JoinHandle<std::io::Result<std::fs::File>>>,
    /// The path errors name: the user's, not the temporary file written.
    path: PathBuf,
    len: u64,
    small: HashMap<Vec<u8>, u64>,
}

/// Constants up to this size are deduplicated (shape vectors, scalars); larger ones are weights,
/// written as they come.
const DEDUP_LIMIT: usize = 4096;

impl FileSink {
    /// Writes `path`; errors name `shown`. Never inlined: its frame names the writer thread's
    /// allocations, which include/ovpot.supp matches by name (glibc keeps a finished thread's
    /// thread-local block in its cache of stacks).
    #[inline(never)]
    fn create(path: &Path, shown: &Path) -> Result<Self> {
        let f = std::fs::File::create(path).map_err(|e| Error::io(shown, e))?;
        let (queue, pending) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
        let writer = std::thread::Builder::new()
            .name("ovpot-bin-writer".into())
            .spawn(move || -> std::io::Result<std::fs::File> {
                let mut out = std::io::BufWriter::with_capacity(1 << 20, f);
                for chunk in pending {
                    out.write_all(&chunk)?;
                }
                out.flush()?;
                out.into_inner().map_err(|e| e.into_error())
            })
            .map_err(|e| Error::io(shown, e))?;
        Ok(FileSink {
            queue: Some(queue),
            writer: Some(writer),
            path: shown.to_path_buf(),
            len: 0,
            small: HashMap::new(),
        })
    }

    fn send(&mut self, chunk: Vec<u8>) -> Result<()> {
        let n = chunk.len() as u64;
        let sent = self.queue.as_ref().is_some_and(|q| q.send(chunk).is_ok());
        if !sent {
            // The writer stopped: its error says why.
            return Err(self.stop().err().unwrap_or_else(|| Error::internal("the .bin writer stopped")));
        }
        self.len += n;
        Ok(())
    }

    fn pad(&mut self, align: usize) -> Result<()> {
        let align = align.max(1) as u64;
        let pad = (align - self.len % align) % align;
        if pad > 0 {
            self.send(vec![0u8; pad as usize])?;
        }
        Ok(())
    }

    /// Appends `bytes` at the next offset that is a multiple of `align` and returns that offset.
    pub fn append(&mut self, bytes: &[u8], align: usize) -> Result<u64> {
        self.append_owned(bytes.to_vec(), align)
    }

    /// [`append`](Self::append) without a copy.
    pub fn append_owned(&mut self, bytes: Vec<u8>, align: usize) -> Result<u64> {
        self.pad(align)?;
        let offset = self.len;
        self.send(bytes)?;
        Ok(offset)
    }

    /// Appends `bytes` right after the previous ones (the continuation of a constant written in
    /// pieces).
    pub fn append_unaligned(&mut self, bytes: &[u8]) -> Result<u64> {
        let offset = self.len;
        self.send(bytes.to_vec())?;
        Ok(offset)
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Waits for the writer; the file when every byte was written.
    fn stop(&mut self) -> Result<std::fs::File> {
        self.queue = None;
        let writer = self.writer.take().ok_or_else(|| Error::internal("the .bin writer already stopped"))?;
        match writer.join() {
            Ok(Ok(f)) => Ok(f),
            Ok(Err(e)) => Err(Error::io(&self.path, e)),
            Err(_) => Err(Error::internal("the .bin writer thread panicked")),
        }
    }

    fn finish(mut self) -> Result<()> {
        let f = self.stop()?;
        f.sync_all().map_err(|e| Error::io(&self.path, e))
    }
}

impl Drop for FileSink {
    fn drop(&mut self) {
        // An unfinished sink (an error upstream): let the writer drain and close the file.
        if self.writer.is_some() {
            let _ = self.stop();
        }
    }
}

impl ConstSink for FileSink {
    fn store(&mut self, bytes: &[u8], align: usize) -> Result<u64> {
        if bytes.len() <= DEDUP_LIMIT {
            if let Some(&at) = self.small.get(bytes).filter(|&&at| at.is_multiple_of(align as u64)) {
                return Ok(at);
            }
            let at = self.append(bytes, align)?;
            self.small.insert(bytes.to_vec(), at);
            return Ok(at);
        }
        self.append(bytes, align)
    }
    fn holds_stored(&self) -> bool {
        true
    }
}

/// Writes a model pair as a stream: the `.bin` goes to a temporary file through [`FileSink`]
/// (constants can be appended before the graph is final, recorded in `Node::stored`), then the
/// `.xml`; both are renamed into place only when complete. Dropped unfinished, it removes its
/// temporary files and leaves any existing model untouched.
///
/// Symlinks are written through (their final targets are replaced, the links stay); targets
/// that are not regular files (directories, devices, FIFOs) are refused before anything is
/// written. Errors name the user's paths, never the temporaries.
pub struct PairWriter {
    /// The paths as the user gave them (for messages).
    xml_shown: PathBuf,
    bin_shown: PathBuf,
    /// The files replaced (symlinks resolved).
    xml_path: PathBuf,
    bin_path: PathBuf,
    tmp_xml: PathBuf,
    tmp_bin: PathBuf,
    sink: Option<FileSink>,
}

impl PairWriter {
    pub fn create(xml_path: &Path, bin_path: Option<&Path>) -> Result<Self> {
        let bin_shown = bin_path.map(Path::to_path_buf).unwrap_or_else(|| xml_path.with_extension("bin"));
        let xml_target = save_target(xml_path)?;
        let bin_target = save_target(&bin_shown)?;
        if xml_target == bin_target {
            return Err(Error::invalid(format!(
                "the .xml and the .bin would be one file ({}): give the weights another path",
                xml_target.display()
            )));
        }
        let (tmp_xml, tmp_bin) = (temp_path(&xml_target, "tmp"), temp_path(&bin_target, "tmp"));
        let sink = FileSink::create(&tmp_bin, &bin_shown)?;
        Ok(PairWriter {
            xml_shown: xml_path.to_path_buf(),
            bin_shown,
            xml_path: xml_target,
            bin_path: bin_target,
            tmp_xml,
            tmp_bin,
            sink: Some(sink),
        })
    }

    pub fn sink(&mut self) -> &mut FileSink {
        self.sink.as_mut().expect("the sink lives until finish")
    }

    /// Serializes `graph` (its `stored` constants point into this writer's `.bin`) and installs
    /// the pair.
    pub fn finish(mut self, graph: &Graph) -> Result<()> {
        let xml = serialize_into(graph, self.sink())?;
        self.finish_with_xml(&xml)
    }

    fn finish_with_xml(mut self, xml: &str) -> Result<()> {
        let sink = self.sink.take().expect("the sink lives until finish");
        sink.finish()?;
        write_file_synced(&self.tmp_xml, &self.xml_shown, xml.as_bytes())?;
        let _guard = SAVE_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Checked again under the lock: a directory may have appeared since `create`.
        save_target(&self.xml_shown)?;
        save_target(&self.bin_shown)?;
        install_pair(
            (&self.tmp_xml, &self.tmp_bin),
            (&self.xml_path, &self.bin_path),
            (&self.xml_shown, &self.bin_shown),
        )
    }
}

impl Drop for PairWriter {
    fn drop(&mut self) {
        // After a successful install the temporary names no longer exist; otherwise clean up.
        let _ = std::fs::remove_file(&self.tmp_xml);
        let _ = std::fs::remove_file(&self.tmp_bin);
    }
}

/// Renames a complete temporary pair (`tmp`) into place (`target`), keeping the old `.bin` until
/// the new `.xml` is in place so a failure restores the old pair, or removes the new `.bin` when
/// there was none. Errors name the user's paths (`shown`).
fn install_pair(tmp: (&Path, &Path), target: (&Path, &Path), shown: (&Path, &Path)) -> Result<()> {
    let ((tx, tb), (xml_path, bin_path), (xml_shown, bin_shown)) = (tmp, target, shown);
    let backup = temp_path(bin_path, "old");
    let mut moved_old_bin = false;
    let mut installed_bin = false;
    let result = (|| {
        if bin_path.is_file() {
            std::fs::rename(bin_path, &backup).map_err(|e| Error::io(bin_shown, e))?;
            moved_old_bin = true;
        }
        std::fs::rename(tb, bin_path).map_err(|e| Error::io(bin_shown, e))?;
        installed_bin = true;
        std::fs::rename(tx, xml_path).map_err(|e| Error::io(xml_shown, e))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(tx);
        let _ = std::fs::remove_file(tb);
        if moved_old_bin {
            let _ = std::fs::rename(&backup, bin_path);
        } else if installed_bin {
            let _ = std::fs::remove_file(bin_path);
        }
    } else if moved_old_bin {
        let _ = std::fs::remove_file(&backup);
    }
    result
}
