//! Samples (model inputs filled from C buffers) and output sets (model outputs read by C).

use super::boundary::{
    c_string, ffi_call, ffi_free, free_handle, out_ptr, try_bytes, try_mut, try_ref, try_slice, try_str,
};
use super::types::{ovpot_element_type_e, ovpot_status_e};
use crate::api::{PortDesc, Sample};
use crate::error::{Error, Result};
use crate::graph::Dim;
use crate::tensor::{ElementType, Tensor};
use std::ffi::{c_char, c_void, CString};
use std::sync::Arc;

/// One sample: a tensor per model input. Filled with `ovpot_sample_set_input*` (data is copied).
/// Samples passed to a dataset's `get_item` callback are owned by ovpot and valid only during the
/// call; samples made with `ovpot_sample_create` are freed with `ovpot_sample_free`.
pub struct ovpot_sample_t {
    pub(crate) inputs: Sample,
    /// The model's inputs when known: names for by-index setting, types and shapes to check.
    pub(crate) ports: Option<Arc<[PortDesc]>>,
    /// The first failure of a set call, reported with the sample index even if the callback
    /// ignores it.
    pub(crate) error: Option<Error>,
}

impl ovpot_sample_t {
    pub(crate) fn new(ports: Option<Arc<[PortDesc]>>) -> Self {
        ovpot_sample_t { inputs: vec![], ports, error: None }
    }

    fn set(&mut self, name: &str, tensor: Tensor) -> Result<()> {
        let name = match &self.ports {
            Some(ports) => {
                let port = ports.iter().find(|p| p.name == name).ok_or_else(|| {
                    let names: Vec<&str> = ports.iter().map(|p| p.name.as_str()).collect();
                    Error::invalid(format!("'{name}' is not an input of the model (inputs: {names:?})"))
                })?;
                check_port(port, &tensor)?;
                port.name.clone()
            }
            None => name.to_string(),
        };
        match self.inputs.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = tensor,
            None => self.inputs.push((name, tensor)),
        }
        Ok(())
    }

    /// Checks that every model input was set (when the model is known).
    pub(crate) fn check_complete(&self) -> Result<()> {
        if let Some(ports) = &self.ports {
            for p in ports.iter() {
                if !self.inputs.iter().any(|(n, _)| *n == p.name) {
                    return Err(Error::invalid(format!("input '{}' was not set", p.name)));
                }
            }
        }
        Ok(())
    }
}

fn check_port(port: &PortDesc, t: &Tensor) -> Result<()> {
    crate::graph::check_input_tensor(&port.name, port.element_type, &port.shape, t, "")
}

/// Builds a tensor from a C buffer (copied); the byte size must match the shape exactly.
pub(crate) fn tensor_from_c(
    what: &str,
    element_type: u32,
    shape: *const i64,
    rank: usize,
    data: *const c_void,
    byte_size: usize,
) -> Result<Tensor> {
    let et = ovpot_element_type_e::to_rust(element_type, "element_type")?;
    if matches!(et, ElementType::Dynamic | ElementType::I4 | ElementType::U4) {
        return Err(Error::unsupported(format!("{what}: element type {et} cannot hold sample data")));
    }
    let dims = try_slice(shape, rank, "shape")?;
    let mut ushape = Vec::with_capacity(rank);
    for (i, &d) in dims.iter().enumerate() {
        let d = usize::try_from(d).map_err(|_| Error::invalid(format!("{what}: dimension {i} is negative ({d})")))?;
        ushape.push(d);
    }
    let count = ushape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| Error::invalid(format!("{what}: shape {ushape:?} overflows")))?;
    let need = count
        .checked_mul(et.bits() / 8)
        .ok_or_else(|| Error::invalid(format!("{what}: shape {ushape:?} overflows")))?;
    if byte_size != need {
        return Err(Error::mismatch(format!(
            "{what}: {et} data of shape {ushape:?} takes {need} bytes, byte_size is {byte_size}"
        )));
    }
    let bytes = try_bytes(data, byte_size, "data")?;
    Tensor::from_bytes(et, &ushape, bytes)
}

/// Sets input `name` of `sample` from `byte_size` bytes at `data` (copied; native little-endian
/// layout, row-major). `element_type` is an `ovpot_element_type_e` value; `shape` holds `rank`
/// non-negative dims (may be NULL when rank is 0). Setting a name again replaces it.
/// Errors: INVALID_ARGUMENT (NULL, unknown name), MISMATCH (type, shape or byte size).
#[no_mangle]
pub extern "C" fn ovpot_sample_set_input(
    sample: *mut ovpot_sample_t,
    name: *const c_char,
    element_type: u32,
    shape: *const i64,
    rank: usize,
    data: *const c_void,
    byte_size: usize,
) -> ovpot_status_e {
    ffi_call("ovpot_sample_set_input", || {
        let s = try_mut(sample, "sample")?;
        let r = (|| {
            let name = try_str(name, "name")?;
            let t = tensor_from_c(&format!("input '{name}'"), element_type, shape, rank, data, byte_size)?;
            s.set(name, t)
        })();
        record(s, r)
    })
}

/// Like `ovpot_sample_set_input` but names the input by its position in the model's inputs;
/// needs a sample that knows its model.
#[no_mangle]
pub extern "C" fn ovpot_sample_set_input_by_index(
    sample: *mut ovpot_sample_t,
    index: usize,
    element_type: u32,
    shape: *const i64,
    rank: usize,
    data: *const c_void,
    byte_size: usize,
) -> ovpot_status_e {
    ffi_call("ovpot_sample_set_input_by_index", || {
        let s = try_mut(sample, "sample")?;
        let r = (|| {
            let ports = s.ports.clone().ok_or_else(|| {
                Error::invalid("the sample does not know its model, so inputs can only be set by name")
            })?;
            let port = ports.get(index).ok_or_else(|| {
                Error::invalid(format!("input index {index} out of range (the model has {})", ports.len()))
            })?;
            let t = tensor_from_c(&format!("input '{}'", port.name), element_type, shape, rank, data, byte_size)?;
            s.set(&port.name, t)
        })();
        record(s, r)
    })
}

fn record(s: &mut ovpot_sample_t, r: Result<()>) -> Result<()> {
    if let Err(e) = &r {
        if s.error.is_none() {
            s.error = Some(clone_error(e));
        }
    }
    r
}

/// A copy of an error (kind and message) for reporting it a second time.
pub(crate) fn clone_error(e: &Error) -> Error {
    match e {
        Error::InvalidArgument(m) => Error::InvalidArgument(m.clone()),
        Error::Parse { file, msg } => Error::Parse { file: file.clone(), msg: msg.clone() },
        Error::Unsupported(m) => Error::Unsupported(m.clone()),
        Error::Mismatch(m) => Error::Mismatch(m.clone()),
        Error::Callback(m) => Error::Callback(m.clone()),
        Error::Cancelled(m) => Error::Cancelled(m.clone()),
        Error::AccuracyNotReached(m) => Error::AccuracyNotReached(m.clone()),
        Error::Io { path, source } => {
            Error::Io { path: path.clone(), source: std::io::Error::new(source.kind(), source.to_string()) }
        }
        Error::Internal(m) => Error::Internal(m.clone()),
    }
}

/// The number of inputs set so far.
#[no_mangle]
pub extern "C" fn ovpot_sample_size(sample: *const ovpot_sample_t, size: *mut usize) -> ovpot_status_e {
    ffi_call("ovpot_sample_size", || {
        let out = out_ptr(size, "size", 0)?;
        *out = try_ref(sample, "sample")?.inputs.len();
        Ok(())
    })
}

/// Frees a sample made by `ovpot_sample_create` or `ovpot_dataset_get`. NULL is a no-op. Never
/// pass a sample received in a `get_item` callback.
#[no_mangle]
pub extern "C" fn ovpot_sample_free(sample: *mut ovpot_sample_t) {
    ffi_free(|| free_handle(sample, "sample"))
}

/// Dims of a partial shape for C: -1 for a dynamic or bounded dim; `None` for a dynamic rank.
pub(crate) fn c_dims(shape: &crate::graph::PartialShape) -> Option<Vec<i64>> {
    shape.dims().map(|d| {
        d.iter()
            .map(|x| match x {
                Dim::Static(n) => *n as i64,
                _ => -1,
            })
            .collect()
    })
}

/// A set of named tensors: model outputs given to a metric's `update` callback (valid during the
/// call only) or returned by `ovpot_model_infer` (freed with `ovpot_outputs_free`).
pub struct ovpot_outputs_t {
    names: Vec<CString>,
    element_types: Vec<ElementType>,
    dims: Vec<Vec<i64>>,
    /// Contiguous little-endian data of each tensor (engine results may be strided).
    data: Vec<Vec<u8>>,
}

impl ovpot_outputs_t {
    pub(crate) fn new(names: &[String], tensors: &[Tensor]) -> Result<Self> {
        if names.len() != tensors.len() {
            return Err(Error::internal(format!("{} output names for {} outputs", names.len(), tensors.len())));
        }
        let mut data = Vec::with_capacity(tensors.len());
        for t in tensors {
            data.push(t.to_bytes(t.element_type())?);
        }
        Ok(ovpot_outputs_t {
            names: names.iter().map(|n| c_string(n.as_str())).collect(),
            element_types: tensors.iter().map(|t| t.element_type()).collect(),
            dims: tensors.iter().map(|t| t.shape().iter().map(|&d| d as i64).collect()).collect(),
            data,
        })
    }

    fn check(&self, index: usize) -> Result<()> {
        if index >= self.names.len() {
            return Err(Error::invalid(format!("output index {index} out of range ({} outputs)", self.names.len())));
        }
        Ok(())
    }
}

/// The number of tensors in `outputs`.
#[no_mangle]
pub extern "C" fn ovpot_outputs_size(outputs: *const ovpot_outputs_t, size: *mut usize) -> ovpot_status_e {
    ffi_call("ovpot_outputs_size", || {
        let out = out_ptr(size, "size", 0)?;
        *out = try_ref(outputs, "outputs")?.names.len();
        Ok(())
    })
}

/// The index of the output called `name` (INVALID_ARGUMENT when there is none).
#[no_mangle]
pub extern "C" fn ovpot_outputs_find(
    outputs: *const ovpot_outputs_t,
    name: *const c_char,
    index: *mut usize,
) -> ovpot_status_e {
    ffi_call("ovpot_outputs_find", || {
        let out = out_ptr(index, "index", usize::MAX)?;
        let o = try_ref(outputs, "outputs")?;
        let name = try_str(name, "name")?;
        *out = o
            .names
            .iter()
            .position(|n| n.to_str() == Ok(name))
            .ok_or_else(|| Error::invalid(format!("no output named '{name}'")))?;
        Ok(())
    })
}

/// The name of output `index`; valid as long as `outputs`.
#[no_mangle]
pub extern "C" fn ovpot_outputs_name(
    outputs: *const ovpot_outputs_t,
    index: usize,
    name: *mut *const c_char,
) -> ovpot_status_e {
    ffi_call("ovpot_outputs_name", || {
        let out = out_ptr(name, "name", std::ptr::null())?;
        let o = try_ref(outputs, "outputs")?;
        o.check(index)?;
        *out = o.names[index].as_ptr();
        Ok(())
    })
}

/// The element type of output `index`.
#[no_mangle]
pub extern "C" fn ovpot_outputs_element_type(
    outputs: *const ovpot_outputs_t,
    index: usize,
    element_type: *mut ovpot_element_type_e,
) -> ovpot_status_e {
    ffi_call("ovpot_outputs_element_type", || {
        let out = out_ptr(element_type, "element_type", ovpot_element_type_e::OVPOT_ELEMENT_TYPE_DYNAMIC)?;
        let o = try_ref(outputs, "outputs")?;
        o.check(index)?;
        *out = ovpot_element_type_e::from_rust(o.element_types[index]);
        Ok(())
    })
}

/// The shape of output `index`: `*dims` points to `*rank` dims, valid as long as `outputs`.
#[no_mangle]
pub extern "C" fn ovpot_outputs_shape(
    outputs: *const ovpot_outputs_t,
    index: usize,
    dims: *mut *const i64,
    rank: *mut usize,
) -> ovpot_status_e {
    ffi_call("ovpot_outputs_shape", || {
        let dims_out = out_ptr(dims, "dims", std::ptr::null())?;
        let rank_out = out_ptr(rank, "rank", 0)?;
        let o = try_ref(outputs, "outputs")?;
        o.check(index)?;
        *dims_out = o.dims[index].as_ptr();
        *rank_out = o.dims[index].len();
        Ok(())
    })
}

/// The data of output `index` (contiguous, row-major, little-endian) and its size in bytes;
/// valid as long as `outputs`.
#[no_mangle]
pub extern "C" fn ovpot_outputs_data(
    outputs: *const ovpot_outputs_t,
    index: usize,
    data: *mut *const c_void,
    byte_size: *mut usize,
) -> ovpot_status_e {
    ffi_call("ovpot_outputs_data", || {
        let data_out = out_ptr(data, "data", std::ptr::null())?;
        let size_out = out_ptr(byte_size, "byte_size", 0)?;
        let o = try_ref(outputs, "outputs")?;
        o.check(index)?;
        *data_out = o.data[index].as_ptr() as *const c_void;
        *size_out = o.data[index].len();
        Ok(())
    })
}

/// Frees outputs returned by `ovpot_model_infer`. NULL is a no-op. Never pass the outputs given
/// to a metric callback.
#[no_mangle]
pub extern "C" fn ovpot_outputs_free(outputs: *mut ovpot_outputs_t) {
    ffi_free(|| free_handle(outputs, "outputs"))
}

impl super::boundary::Handle for ovpot_sample_t {
    const C_NAME: &'static str = "ovpot_sample_t";
}

impl super::boundary::Handle for ovpot_outputs_t {
    const C_NAME: &'static str = "ovpot_outputs_t";
}
