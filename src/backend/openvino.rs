//! OpenVINO's C library, loaded at run time through `openvino-sys` (`runtime-linking`): no build-
//! or link-time dependency. A [`Core`] compiles graphs written to IR buffers in memory; a
//! [`Compiled`] model runs samples on a pool of infer requests, one per caller in flight.
//!
//! Every raw call is checked; OpenVINO's own message (`ov_get_last_err_msg`) goes into the error.

use crate::error::{Error, Result};
use crate::tensor::{ElementType, Tensor};
use openvino_sys as sys;
use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_void};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// Environment variable naming OpenVINO's C library (a file, or a directory holding it).
pub const LIB_ENV: &str = "OVPOT_OPENVINO_LIB";

/// Functions ovpot calls; checked at load so an old library is an error, not a panic.
const REQUIRED: &[&str] = &[
    "ov_get_openvino_version",
    "ov_version_free",
    "ov_get_last_err_msg",
    "ov_core_create",
    "ov_core_free",
    "ov_core_read_model_from_memory_buffer",
    "ov_core_compile_model_props",
    "ov_model_free",
    "ov_compiled_model_create_infer_request",
    "ov_compiled_model_free",
    "ov_infer_request_set_tensor",
    "ov_infer_request_get_tensor",
    "ov_infer_request_infer",
    "ov_infer_request_free",
    "ov_tensor_create",
    "ov_tensor_data",
    "ov_tensor_get_shape",
    "ov_tensor_get_element_type",
    "ov_tensor_free",
    "ov_shape_create",
    "ov_shape_free",
    "ov_compiled_model_outputs_size",
    "ov_compiled_model_output_by_index",
    "ov_port_get_any_name",
    "ov_output_const_port_free",
    "ov_infer_request_get_output_tensor_by_index",
    "ov_free",
    "ov_infer_request_get_profiling_info",
    "ov_profiling_info_list_free",
];

/// One executed node of a profiled inference (OpenVINO's performance counters).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ProfiledNode {
    /// The executed node: an IR layer's name, or a name OpenVINO made for a fused or added node.
    pub name: String,
    /// Its type in the plugin's graph ("Convolution", "Reorder", ...).
    pub node_type: String,
    /// The kernel that ran it; int8 kernels end in `_I8` or `_u8` ("brgconv_avx512_amx_I8").
    pub exec_type: String,
    /// Median microseconds per inference.
    pub time_us: f64,
}

/// The library in use: where it was found and its version.
#[derive(Clone, Debug)]
pub struct Library {
    pub path: PathBuf,
    pub version: String,
}

static LOADED: Mutex<Option<Library>> = Mutex::new(None);

/// Finds and loads OpenVINO's C library once per process: `explicit` (a file or a directory),
/// else `$OVPOT_OPENVINO_LIB`, else the copy already loaded in this process (an application
/// linked with OpenVINO), else the loader's search path and the usual install locations
/// (`openvino-finder`), else an active Python venv's `openvino/libs`. The error lists every place
/// tried and why each failed.
pub fn load(explicit: Option<&Path>) -> Result<Library> {
    let mut loaded = LOADED.lock().map_err(|_| Error::internal("OpenVINO loader lock poisoned"))?;
    if let Some(lib) = loaded.as_ref() {
        // One OpenVINO per process: a different library asked for later is an error, not a
        // silent substitute.
        if let Some(p) = explicit {
            let same = resolve_file(p)
                .ok()
                .and_then(|f| f.canonicalize().ok())
                .is_some_and(|f| lib.path.canonicalize().is_ok_and(|l| l == f));
            if !same {
                return Err(Error::unsupported(format!(
                    "OpenVINO is already loaded in this process from {}; {} cannot be loaded beside it",
                    lib.path.display(),
                    p.display()
                )));
            }
        }
        return Ok(lib.clone());
    }
    let mut tried: Vec<String> = vec![];
    for (origin, path) in candidates(explicit) {
        let file = match resolve_file(&path) {
            Ok(f) => f,
            Err(why) => {
                tried.push(format!("{origin} {}: {why}", path.display()));
                continue;
            }
        };
        match open(&file) {
            Ok(version) => {
                let lib = Library { path: file, version };
                *loaded = Some(lib.clone());
                return Ok(lib);
            }
            Err(why) => {
                tried.push(format!("{origin} {}: {why}", file.display()));
                // A library that opened but is unusable is not replaced by a later candidate:
                // openvino-sys keeps the first one it loads.
                if why.starts_with("unusable") {
                    break;
                }
            }
        }
    }
    Err(not_found(&tried))
}

/// No usable OpenVINO C library among the candidates `tried`: every way to give one, for
/// whoever called (the C API, the command line, Python through the C API).
fn not_found(tried: &[String]) -> Error {
    Error::unsupported(format!(
        "OpenVINO's C library (libopenvino_c) was not found or could not be loaded; tried: {}. \
         Give its path (a file, or the folder holding it: the pip wheel keeps it in \
         site-packages/openvino/libs) as ovpot_session_set_backend's openvino_lib, the command \
         line's --openvino-lib or ${LIB_ENV}, or use the built-in backend",
        if tried.is_empty() { "nothing".to_string() } else { tried.join("; ") }
    ))
}

/// Where to look, in order, each with how it was found.
fn candidates(explicit: Option<&Path>) -> Vec<(&'static str, PathBuf)> {
    let mut c: Vec<(&'static str, PathBuf)> = vec![];
    if let Some(p) = explicit {
        c.push(("given path", p.to_path_buf()));
        // An explicit choice is not second-guessed.
        return c;
    }
    if let Some(p) = std::env::var_os(LIB_ENV).filter(|v| !v.is_empty()) {
        c.push((LIB_ENV, PathBuf::from(p)));
        return c;
    }
    if let Some(p) = loaded_in_process() {
        c.push(("already loaded in this process", p));
    }
    if let Some(p) = openvino_sys::library::find() {
        c.push(("openvino-finder", p));
    }
    for dir in std::env::var("LD_LIBRARY_PATH").unwrap_or_default().split(':').filter(|d| !d.is_empty()) {
        c.push(("LD_LIBRARY_PATH", PathBuf::from(dir)));
    }
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        if let Ok(rd) = std::fs::read_dir(Path::new(&venv).join("lib")) {
            for e in rd.flatten() {
                c.push(("VIRTUAL_ENV", e.path().join("site-packages/openvino/libs")));
            }
        }
    }
    c.push(("the loader's search path", PathBuf::from("libopenvino_c.so")));
    c
}

/// The path of a `libopenvino_c` mapped into this process, if any (Linux: `/proc/self/maps`).
fn loaded_in_process() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().filter_map(|l| l.split_whitespace().nth(5)).find(|p| is_c_library_name(p)).map(PathBuf::from)
}

fn is_c_library_name(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name == "libopenvino_c.so" || name.starts_with("libopenvino_c.so.") || name == "openvino_c.dll"
}

/// A file as given, or the C library inside a directory (versioned names included: the pip wheel
/// ships `libopenvino_c.so.<version>` only). A bare file name is left to the loader.
fn resolve_file(p: &Path) -> std::result::Result<PathBuf, String> {
    if p.is_dir() {
        let rd = std::fs::read_dir(p).map_err(|e| e.to_string())?;
        let mut found: Vec<PathBuf> =
            rd.flatten().map(|e| e.path()).filter(|f| f.to_str().is_some_and(is_c_library_name)).collect();
        found.sort();
        // The unversioned name when present, else the first versioned one.
        return found.into_iter().next().ok_or_else(|| "no libopenvino_c.so* in this directory".to_string());
    }
    if p.components().count() > 1 && !p.exists() {
        return Err("no such file".into());
    }
    Ok(p.to_path_buf())
}

/// Opens the library, checks it has every function ovpot calls, and hands it to openvino-sys.
fn open(file: &Path) -> std::result::Result<String, String> {
    {
        // SAFETY: loading OpenVINO's C library runs its initializers, as linking it would; the
        // handle only checks symbols and is dropped (the loader keeps the library mapped while
        // openvino-sys holds its own handle below).
        let lib = unsafe { libloading::Library::new(file) }.map_err(|e| e.to_string())?;
        let missing: Vec<&str> = REQUIRED
            .iter()
            .copied()
            // SAFETY: only the symbol's presence is checked; it is never called through this handle.
            .filter(|s| unsafe { lib.get::<*const c_void>(s.as_bytes()) }.is_err())
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "not a usable OpenVINO C library (OpenVINO 2026.0 or later is needed): missing {}",
                missing.join(", ")
            ));
        }
    }
    sys::library::load_from(file).map_err(|e| format!("unusable: {e}"))?;
    version().ok_or_else(|| "unusable: no version".to_string())
}

fn version() -> Option<String> {
    let mut v = sys::ov_version_t { buildNumber: std::ptr::null(), description: std::ptr::null() };
    // SAFETY: `v` is a valid out-parameter; the strings it receives are freed by ov_version_free.
    unsafe {
        if sys::ov_get_openvino_version(&mut v) != sys::ov_status_e::OK || v.buildNumber.is_null() {
            return None;
        }
        let s = CStr::from_ptr(v.buildNumber).to_string_lossy().into_owned();
        sys::ov_version_free(&mut v);
        Some(s)
    }
}

/// OpenVINO's last error message, with what ovpot was doing.
fn fail(what: &str, status: sys::ov_status_e) -> Error {
    // SAFETY: ov_get_last_err_msg returns a NUL-terminated string owned by OpenVINO, or NULL.
    let msg = unsafe {
        let p = sys::ov_get_last_err_msg();
        if p.is_null() {
            String::new()
        } else {
            CStr::from_ptr(p).to_string_lossy().trim().to_string()
        }
    };
    Error::unsupported(format!("OpenVINO {what} failed ({status:?}){}", if msg.is_empty() { "" } else { ": " }) + &msg)
}

fn check(what: &str, status: sys::ov_status_e) -> Result<()> {
    if status == sys::ov_status_e::OK {
        Ok(())
    } else {
        Err(fail(what, status))
    }
}

fn cstring(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::invalid(format!("'{s}' contains a NUL byte")))
}

/// An `ov_core_t`: created here, or the application's own (borrowed, never freed by ovpot).
pub struct Core {
    ptr: *mut sys::ov_core_t,
    owned: bool,
    pub library: Library,
}

// SAFETY: ov::Core is thread-safe (OpenVINO documents concurrent compile and read calls); the
// pointer is only freed in Drop, once.
unsafe impl Send for Core {}
// SAFETY: as above.
unsafe impl Sync for Core {}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OpenVINO core ({} from {})", self.library.version, self.library.path.display())
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        if self.owned {
            // SAFETY: created by ov_core_create and freed once.
            unsafe { sys::ov_core_free(self.ptr) };
        }
    }
}

impl Core {
    /// Loads the library (see [`load`]) and creates a core.
    pub fn new(lib: Option<&Path>) -> Result<Core> {
        let library = load(lib)?;
        let mut ptr = std::ptr::null_mut();
        // SAFETY: `ptr` is a valid out-parameter.
        check("ov_core_create", unsafe { sys::ov_core_create(&mut ptr) })?;
        Ok(Core { ptr, owned: false, library }.owning())
    }

    fn owning(mut self) -> Core {
        self.owned = true;
        self
    }

    /// Wraps an application's `ov_core_t` (loaded from the library already in the process, or
    /// `lib`). ovpot never frees it.
    ///
    /// # Safety
    /// `ptr` must be a live `ov_core_t*` from the same OpenVINO library, outliving this value.
    pub unsafe fn borrowed(ptr: *mut c_void, lib: Option<&Path>) -> Result<Core> {
        if ptr.is_null() {
            return Err(Error::invalid("the OpenVINO core is NULL"));
        }
        let library = load(lib)?;
        Ok(Core { ptr: ptr.cast(), owned: false, library })
    }

    /// Reads an IR from memory and compiles it for `device` with `properties`.
    pub fn compile(&self, xml: &str, bin: &[u8], device: &str, properties: &[(&str, String)]) -> Result<Compiled> {
        let weights = HostTensor::bytes(bin)?;
        let mut model = std::ptr::null_mut();
        // SAFETY: xml/weights outlive the call; OpenVINO copies what it keeps of the weights
        // tensor's (shared) buffer reference, which `weights` holds until the model is freed below.
        check("reading the model", unsafe {
            sys::ov_core_read_model_from_memory_buffer(
                self.ptr,
                xml.as_ptr() as *const c_char,
                xml.len(),
                weights.ptr,
                &mut model,
            )
        })?;
        let keys: Vec<CString> = properties.iter().map(|(k, _)| cstring(k)).collect::<Result<_>>()?;
        let values: Vec<CString> = properties.iter().map(|(_, v)| cstring(v)).collect::<Result<_>>()?;
        let props: Vec<sys::ov_property_t> = keys
            .iter()
            .zip(&values)
            .map(|(k, v)| sys::ov_property_t { key: k.as_ptr(), value: v.as_ptr().cast() })
            .collect();
        let dev = cstring(device)?;
        let mut compiled = std::ptr::null_mut();
        // SAFETY: model is valid; props, keys and values live through the call.
        let status = unsafe {
            sys::ov_core_compile_model_props(self.ptr, model, dev.as_ptr(), props.len(), props.as_ptr(), &mut compiled)
        };
        // SAFETY: the compiled model holds its own references; the source model is ours to free.
        unsafe { sys::ov_model_free(model) };
        drop(weights);
        check(&format!("compiling for {device}"), status)?;
        let mut c =
            Compiled { ptr: compiled, pool: Mutex::new(vec![]), output_index: HashMap::new(), fresh_requests: false };
        c.output_index = c.output_names()?.into_iter().enumerate().map(|(i, n)| (n, i)).collect();
        Ok(c)
    }
}

/// A compiled model and its idle infer requests.
pub struct Compiled {
    ptr: *mut sys::ov_compiled_model_t,
    pool: Mutex<Vec<Request>>,
    /// Output index by tensor name: outputs are read by index (a lookup by name scans them all).
    output_index: HashMap<String, usize>,
    /// A stateful model (ReadValue/Assign): every inference runs on a new request, whose
    /// variables start from their initializers. OpenVINO's C API has no `reset_state`; a
    /// reused request would carry one sample's KV cache into the next.
    fresh_requests: bool,
}

// SAFETY: a compiled model is thread-safe in OpenVINO; each request is used by one thread at a
// time (taken from the pool under its lock).
unsafe impl Send for Compiled {}
// SAFETY: as above.
unsafe impl Sync for Compiled {}

impl Drop for Compiled {
    fn drop(&mut self) {
        if let Ok(p) = self.pool.get_mut() {
            p.clear();
        }
        // SAFETY: created by compile, freed once, after its requests.
        unsafe { sys::ov_compiled_model_free(self.ptr) };
    }
}

struct Request(*mut sys::ov_infer_request_t);

// SAFETY: a request moves between threads through the pool and is used by one at a time.
unsafe impl Send for Request {}

impl Drop for Request {
    fn drop(&mut self) {
        // SAFETY: created by ov_compiled_model_create_infer_request, freed once.
        unsafe { sys::ov_infer_request_free(self.0) };
    }
}

impl Compiled {
    /// Runs every inference on a new infer request when `stateful` (see `fresh_requests`).
    pub fn with_state_reset(mut self, stateful: bool) -> Compiled {
        self.fresh_requests = stateful;
        self
    }

    /// One tensor name per output, in output order.
    fn output_names(&self) -> Result<Vec<String>> {
        let mut n = 0usize;
        // SAFETY: valid compiled model and out-parameter.
        check("counting outputs", unsafe { sys::ov_compiled_model_outputs_size(self.ptr, &mut n) })?;
        let mut names = Vec::with_capacity(n);
        for i in 0..n {
            let mut port = std::ptr::null_mut();
            // SAFETY: i < n; the port is freed below.
            check("reading an output", unsafe { sys::ov_compiled_model_output_by_index(self.ptr, i, &mut port) })?;
            let mut name: *mut c_char = std::ptr::null_mut();
            // SAFETY: valid port; the name is OpenVINO's allocation, freed with ov_free.
            let status = unsafe { sys::ov_port_get_any_name(port, &mut name) };
            // SAFETY: created by output_by_index above.
            unsafe { sys::ov_output_const_port_free(port) };
            if status == sys::ov_status_e::OK && !name.is_null() {
                // SAFETY: a NUL-terminated string from OpenVINO, freed once.
                names.push(unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned());
                unsafe { sys::ov_free(name) };
            } else {
                names.push(String::new());
            }
        }
        Ok(names)
    }

    fn take(&self) -> Result<Request> {
        if let Some(r) = self.pool.lock().ok().and_then(|mut p| p.pop()) {
            return Ok(r);
        }
        let mut r = std::ptr::null_mut();
        // SAFETY: `r` is a valid out-parameter.
        check("creating an infer request", unsafe { sys::ov_compiled_model_create_infer_request(self.ptr, &mut r) })?;
        Ok(Request(r))
    }

    /// Runs one inference: `inputs` by tensor name; returns the tensors named `outputs`.
    pub fn infer(&self, inputs: &[(&CStr, &Tensor)], outputs: &[CString]) -> Result<Vec<Tensor>> {
        let req = self.take()?;
        let held = set_inputs(&req, inputs)?;
        // SAFETY: all inputs are set.
        check("inference", unsafe { sys::ov_infer_request_infer(req.0) })?;
        let mut out = Vec::with_capacity(outputs.len());
        for name in outputs {
            let mut t = std::ptr::null_mut();
            let index = name.to_str().ok().and_then(|n| self.output_index.get(n));
            // SAFETY: valid request and out-parameter; the tensor handle is ours to free.
            check(&format!("reading output {}", name.to_string_lossy()), unsafe {
                match index {
                    Some(&i) => sys::ov_infer_request_get_output_tensor_by_index(req.0, i, &mut t),
                    None => sys::ov_infer_request_get_tensor(req.0, name.as_ptr(), &mut t),
                }
            })?;
            let host = HostTensor { ptr: t, _data: None };
            out.push(host.to_tensor()?);
        }
        drop(held);
        if !self.fresh_requests {
            if let Ok(mut p) = self.pool.lock() {
                p.push(req);
            }
        }
        Ok(out)
    }
}

impl Compiled {
    /// Runs `inputs` `runs` times on one request (compiled with `PERF_COUNT` on) and returns the
    /// nodes that executed, with their median time per inference.
    pub fn profile(&self, inputs: &[(&CStr, &Tensor)], runs: usize) -> Result<Vec<ProfiledNode>> {
        let req = self.take()?;
        let held = set_inputs(&req, inputs)?;
        let mut nodes: Vec<ProfiledNode> = vec![];
        let mut times: Vec<Vec<f64>> = vec![];
        for run in 0..runs.max(1) + 1 {
            // SAFETY: all inputs are set.
            check("inference", unsafe { sys::ov_infer_request_infer(req.0) })?;
            let mut list = sys::ov_profiling_info_list_t { profiling_infos: std::ptr::null_mut(), size: 0 };
            // SAFETY: valid request and out-parameter; the list is freed below.
            check("reading the performance counters", unsafe {
                sys::ov_infer_request_get_profiling_info(req.0, &mut list)
            })?;
            let infos: &[sys::ov_profiling_info_t] = if list.profiling_infos.is_null() {
                &[]
            } else {
                // SAFETY: OpenVINO's array of `size` entries, alive until the list is freed.
                unsafe { std::slice::from_raw_parts(list.profiling_infos, list.size) }
            };
            let text = |p: *const c_char| {
                if p.is_null() {
                    String::new()
                } else {
                    // SAFETY: NUL-terminated strings owned by the list.
                    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
                }
            };
            if run == 1 {
                nodes = infos
                    .iter()
                    .map(|i| ProfiledNode {
                        name: text(i.node_name),
                        node_type: text(i.node_type),
                        exec_type: text(i.exec_type),
                        time_us: 0.0,
                    })
                    .collect();
                times = vec![vec![]; nodes.len()];
            }
            // The first run warms the caches; the node list is the same in every run.
            if run >= 1 && infos.len() == nodes.len() {
                for (t, i) in times.iter_mut().zip(infos) {
                    t.push(i.real_time as f64);
                }
            }
            // SAFETY: filled by get_profiling_info above, freed once.
            unsafe { sys::ov_profiling_info_list_free(&mut list) };
        }
        drop(held);
        for (n, mut t) in nodes.iter_mut().zip(times) {
            t.sort_by(f64::total_cmp);
            n.time_us = t.get(t.len() / 2).copied().unwrap_or(0.0);
        }
        Ok(nodes)
    }
}

/// Sets `inputs` (by tensor name) on `req`; the returned tensors must outlive its inferences.
fn set_inputs(req: &Request, inputs: &[(&CStr, &Tensor)]) -> Result<Vec<HostTensor>> {
    let mut held = Vec::with_capacity(inputs.len());
    for (name, t) in inputs {
        let host = HostTensor::from_tensor(t)?;
        // SAFETY: request and tensor are valid; the request keeps its own reference.
        check(&format!("setting input {}", name.to_string_lossy()), unsafe {
            sys::ov_infer_request_set_tensor(req.0, name.as_ptr(), host.ptr)
        })?;
        held.push(host);
    }
    Ok(held)
}

/// An `ov_tensor_t` handle, freed on drop; `_data` keeps host memory it points to alive.
struct HostTensor {
    ptr: *mut sys::ov_tensor_t,
    _data: Option<Vec<u8>>,
}

impl Drop for HostTensor {
    fn drop(&mut self) {
        if !self.ptr.is_null() {
            // SAFETY: created by ov_tensor_create*/returned by get_tensor, freed once.
            unsafe { sys::ov_tensor_free(self.ptr) };
        }
    }
}

fn ov_type(et: ElementType) -> Option<sys::ov_element_type_e> {
    use sys::ov_element_type_e as E;
    Some(match et {
        ElementType::F32 => E::F32,
        ElementType::F16 => E::F16,
        ElementType::BF16 => E::BF16,
        ElementType::F64 => E::F64,
        ElementType::I8 => E::I8,
        ElementType::U8 => E::U8,
        ElementType::I16 => E::I16,
        ElementType::U16 => E::U16,
        ElementType::I32 => E::I32,
        ElementType::U32 => E::U32,
        ElementType::I64 => E::I64,
        ElementType::U64 => E::U64,
        ElementType::Boolean => E::OV_BOOLEAN,
        _ => return None,
    })
}

/// Our element type for an OpenVINO type code (read as an integer: an unknown code must not
/// become an invalid Rust enum value).
fn from_ov_code(code: u32) -> Option<ElementType> {
    use sys::ov_element_type_e as E;
    [
        ElementType::F32,
        ElementType::F16,
        ElementType::BF16,
        ElementType::F64,
        ElementType::I8,
        ElementType::U8,
        ElementType::I16,
        ElementType::U16,
        ElementType::I32,
        ElementType::U32,
        ElementType::I64,
        ElementType::U64,
        ElementType::Boolean,
    ]
    .into_iter()
    .find(|&et| ov_type(et).map(|e: E| e as u32) == Some(code))
}

impl HostTensor {
    fn create(et: sys::ov_element_type_e, dims: &[usize]) -> Result<HostTensor> {
        let dims: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
        let mut shape = sys::ov_shape_t { rank: 0, dims: std::ptr::null_mut() };
        // SAFETY: dims outlives the call; shape is freed below.
        check("creating a shape", unsafe { sys::ov_shape_create(dims.len() as i64, dims.as_ptr(), &mut shape) })?;
        let mut t = std::ptr::null_mut();
        // SAFETY: a valid shape; OpenVINO allocates the tensor's memory.
        let status = unsafe { sys::ov_tensor_create(et, shape, &mut t) };
        // SAFETY: created above.
        unsafe { sys::ov_shape_free(&mut shape) };
        check("creating a tensor", status)?;
        Ok(HostTensor { ptr: t, _data: None })
    }

    fn data(&self) -> Result<*mut c_void> {
        let mut p = std::ptr::null_mut();
        // SAFETY: valid tensor and out-parameter.
        check("reading tensor data", unsafe { sys::ov_tensor_data(self.ptr, &mut p) })?;
        Ok(p)
    }

    /// A u8 tensor holding a copy of `bytes` (the model's weights).
    fn bytes(bytes: &[u8]) -> Result<HostTensor> {
        let t = HostTensor::create(sys::ov_element_type_e::U8, &[bytes.len()])?;
        if !bytes.is_empty() {
            let p = t.data()?;
            // SAFETY: the tensor was allocated with bytes.len() bytes.
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), p.cast::<u8>(), bytes.len()) };
        }
        Ok(t)
    }

    fn from_tensor(t: &Tensor) -> Result<HostTensor> {
        let et = t.element_type();
        let ov = ov_type(et).ok_or_else(|| Error::unsupported(format!("element type {et} as an OpenVINO input")))?;
        let bytes = t.to_bytes(et)?;
        let h = HostTensor::create(ov, t.shape())?;
        if !bytes.is_empty() {
            let p = h.data()?;
            // SAFETY: the tensor holds exactly bytes.len() bytes of this type and shape.
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), p.cast::<u8>(), bytes.len()) };
        }
        Ok(h)
    }

    fn to_tensor(&self) -> Result<Tensor> {
        let mut code: u32 = 0;
        // SAFETY: the out-parameter is a u32 the size of the C enum; read as an integer so an
        // unknown code stays a value, not an invalid enum.
        check("reading an output type", unsafe {
            sys::ov_tensor_get_element_type(self.ptr, (&mut code as *mut u32).cast())
        })?;
        let et = from_ov_code(code)
            .ok_or_else(|| Error::unsupported(format!("OpenVINO output element type code {code}")))?;
        let mut shape = sys::ov_shape_t { rank: 0, dims: std::ptr::null_mut() };
        // SAFETY: valid tensor; shape is freed below.
        check("reading an output shape", unsafe { sys::ov_tensor_get_shape(self.ptr, &mut shape) })?;
        let dims: Vec<usize> = if shape.rank > 0 && !shape.dims.is_null() {
            // SAFETY: dims holds `rank` values.
            unsafe { std::slice::from_raw_parts(shape.dims, shape.rank as usize) }.iter().map(|&d| d as usize).collect()
        } else {
            vec![]
        };
        // SAFETY: created by get_shape.
        unsafe { sys::ov_shape_free(&mut shape) };
        let n: usize = dims.iter().product();
        let size = et.byte_size(n);
        let bytes: &[u8] = if size == 0 {
            &[]
        } else {
            let p = self.data()?;
            // SAFETY: the tensor holds `size` bytes of this type and shape while `self` lives.
            unsafe { std::slice::from_raw_parts(p.cast::<u8>(), size) }
        };
        Tensor::from_bytes(et, &dims, bytes)
    }
}

/// The library loaded in this process, if any (for reports).
pub fn loaded() -> Option<Library> {
    LOADED.lock().ok().and_then(|l| l.clone())
}

/// One shared core per process for callers that do not bring their own.
pub fn shared_core(lib: Option<&Path>) -> Result<std::sync::Arc<Core>> {
    static CORE: OnceLock<std::sync::Arc<Core>> = OnceLock::new();
    load(lib)?;
    if let Some(c) = CORE.get() {
        return Ok(c.clone());
    }
    let c = std::sync::Arc::new(Core::new(lib)?);
    Ok(CORE.get_or_init(|| c).clone())
}

#[cfg(test)]
mod not_found_tests {
    #[test]
    fn names_every_way_to_give_the_library() {
        let err = super::not_found(&["explicit /x: no such file".into()]).to_string();
        for way in ["/x", "ovpot_session_set_backend", "--openvino-lib", "OVPOT_OPENVINO_LIB", "built-in backend"] {
            assert!(err.contains(way), "{way} missing from: {err}");
        }
    }
}
