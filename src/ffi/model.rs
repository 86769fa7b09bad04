//! Models: reading, saving (files and memory), port queries, inference with the built-in engine.

use super::boundary::{
    c_string, ffi_call, ffi_free, free_handle, into_handle, off_busy_pool, opt_str, out_ptr, try_bytes, try_ref,
    try_str,
};
use super::tensors::{c_dims, ovpot_outputs_t, ovpot_sample_t};
use super::types::{ovpot_element_type_e, ovpot_status_e};
use crate::api::{Model, PortDesc};
use crate::engine::Plan;
use crate::error::{Error, Result};
use std::ffi::{c_char, CString};
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// A port as C sees it: name and dims kept alive with the model.
struct PortC {
    name: CString,
    /// `None` for a dynamic rank.
    dims: Option<Vec<i64>>,
}

/// An OpenVINO model (IR graph plus weights). Read-only after creation: one model may be used by
/// several threads at once (inference, sessions). Free with `ovpot_model_free`.
pub struct ovpot_model_t {
    pub(crate) model: Model,
    inputs: Arc<[PortDesc]>,
    outputs: Vec<PortDesc>,
    inputs_c: Vec<PortC>,
    outputs_c: Vec<PortC>,
    name: CString,
    /// Built on first inference and reused.
    plan: OnceLock<Plan>,
}

impl ovpot_model_t {
    pub(crate) fn new(model: Model) -> Self {
        let inputs: Vec<PortDesc> = model.inputs();
        let outputs = model.outputs();
        let to_c = |ports: &[PortDesc]| -> Vec<PortC> {
            ports.iter().map(|p| PortC { name: c_string(p.name.as_str()), dims: c_dims(&p.shape) }).collect()
        };
        ovpot_model_t {
            inputs_c: to_c(&inputs),
            outputs_c: to_c(&outputs),
            name: c_string(model.name()),
            inputs: inputs.into(),
            outputs,
            model,
            plan: OnceLock::new(),
        }
    }
    pub(crate) fn input_ports(&self) -> Arc<[PortDesc]> {
        self.inputs.clone()
    }
    pub(crate) fn output_names(&self) -> Vec<String> {
        self.outputs.iter().map(|p| p.name.clone()).collect()
    }
    fn plan(&self) -> Result<&Plan> {
        if let Some(p) = self.plan.get() {
            return Ok(p);
        }
        let p = self.model.plan()?;
        Ok(self.plan.get_or_init(|| p))
    }
}

/// Reads an IR model from `xml_path` and its weights from `bin_path` (NULL: the xml path with
/// `.bin`), like `ov_core_read_model`. Free the result with `ovpot_model_free`.
#[no_mangle]
pub extern "C" fn ovpot_model_read(
    xml_path: *const c_char,
    bin_path: *const c_char,
    model: *mut *mut ovpot_model_t,
) -> ovpot_status_e {
    ffi_call("ovpot_model_read", || {
        let out = out_ptr(model, "model", std::ptr::null_mut())?;
        let xml = try_str(xml_path, "xml_path")?;
        let bin = opt_str(bin_path, "bin_path")?;
        let m = Model::read(Path::new(xml), bin.map(Path::new))?;
        *out = into_handle(ovpot_model_t::new(m));
        Ok(())
    })
}

/// Reads an IR model from memory, as `ov_core_read_model_from_memory_buffer` takes it: the IR
/// text (`xml_size` bytes, no NUL needed) and the weights (`weights_size` bytes; NULL when 0).
/// Both buffers are copied.
#[no_mangle]
pub extern "C" fn ovpot_model_read_from_memory_buffer(
    xml: *const c_char,
    xml_size: usize,
    weights: *const u8,
    weights_size: usize,
    model: *mut *mut ovpot_model_t,
) -> ovpot_status_e {
    ffi_call("ovpot_model_read_from_memory_buffer", || {
        let out = out_ptr(model, "model", std::ptr::null_mut())?;
        if xml.is_null() {
            return Err(Error::invalid("'xml' is NULL"));
        }
        let xml = try_bytes(xml as *const std::ffi::c_void, xml_size, "xml")?;
        let weights = try_bytes(weights as *const std::ffi::c_void, weights_size, "weights")?;
        let m = Model::from_memory(xml, weights)?;
        *out = into_handle(ovpot_model_t::new(m));
        Ok(())
    })
}

/// Writes the model as IR v11 to `xml_path` and `bin_path` (NULL: the xml path with `.bin`),
/// like `ov_serialize`. Both files appear complete or not at all: they are written to temporary
/// files beside their targets and renamed into place; on failure nothing new is left and an
/// existing model there is untouched. A path that is a symlink is written through (the file it
/// finally points to is replaced; the link stays a link). A path that exists and is not a regular
/// file (a directory, device node, FIFO or socket) is refused with OVPOT_IO_ERROR before anything
/// is written. Error messages name the paths as given, never the temporary files.
#[no_mangle]
pub extern "C" fn ovpot_model_save(
    model: *const ovpot_model_t,
    xml_path: *const c_char,
    bin_path: *const c_char,
) -> ovpot_status_e {
    ffi_call("ovpot_model_save", || {
        let m = try_ref(model, "model")?;
        let xml = try_str(xml_path, "xml_path")?;
        let bin = opt_str(bin_path, "bin_path")?;
        m.model.save(Path::new(xml), bin.map(Path::new))
    })
}

/// A serialized model in memory: IR text and weights, ready for
/// `ov_core_read_model_from_memory_buffer`. Free with `ovpot_ir_buffer_free`.
pub struct ovpot_ir_buffer_t {
    /// IR text followed by one NUL (not counted in its size).
    xml: Vec<u8>,
    weights: Vec<u8>,
}

/// Serializes the model to memory. Read the parts with `ovpot_ir_buffer_xml` and
/// `ovpot_ir_buffer_weights`; free with `ovpot_ir_buffer_free`.
#[no_mangle]
pub extern "C" fn ovpot_model_save_to_memory_buffer(
    model: *const ovpot_model_t,
    buffer: *mut *mut ovpot_ir_buffer_t,
) -> ovpot_status_e {
    ffi_call("ovpot_model_save_to_memory_buffer", || {
        let out = out_ptr(buffer, "buffer", std::ptr::null_mut())?;
        let m = try_ref(model, "model")?;
        let (xml, weights) = m.model.to_memory()?;
        let mut xml = xml.into_bytes();
        xml.push(0);
        *out = into_handle(ovpot_ir_buffer_t { xml, weights });
        Ok(())
    })
}

/// The IR text of `buffer`: `*xml` is NUL-terminated, `*xml_size` excludes the NUL. Valid as
/// long as `buffer`.
#[no_mangle]
pub extern "C" fn ovpot_ir_buffer_xml(
    buffer: *const ovpot_ir_buffer_t,
    xml: *mut *const c_char,
    xml_size: *mut usize,
) -> ovpot_status_e {
    ffi_call("ovpot_ir_buffer_xml", || {
        let xml_out = out_ptr(xml, "xml", std::ptr::null())?;
        let size_out = out_ptr(xml_size, "xml_size", 0)?;
        let b = try_ref(buffer, "buffer")?;
        *xml_out = b.xml.as_ptr() as *const c_char;
        *size_out = b.xml.len() - 1;
        Ok(())
    })
}

/// The weights of `buffer` (the `.bin` content). Valid as long as `buffer`.
#[no_mangle]
pub extern "C" fn ovpot_ir_buffer_weights(
    buffer: *const ovpot_ir_buffer_t,
    weights: *mut *const u8,
    weights_size: *mut usize,
) -> ovpot_status_e {
    ffi_call("ovpot_ir_buffer_weights", || {
        let w_out = out_ptr(weights, "weights", std::ptr::null())?;
        let size_out = out_ptr(weights_size, "weights_size", 0)?;
        let b = try_ref(buffer, "buffer")?;
        *w_out = b.weights.as_ptr();
        *size_out = b.weights.len();
        Ok(())
    })
}

/// Frees a buffer from `ovpot_model_save_to_memory_buffer`. NULL is a no-op.
#[no_mangle]
pub extern "C" fn ovpot_ir_buffer_free(buffer: *mut ovpot_ir_buffer_t) {
    ffi_free(|| free_handle(buffer, "buffer"))
}

/// The model's friendly name; valid as long as `model`.
#[no_mangle]
pub extern "C" fn ovpot_model_get_friendly_name(
    model: *const ovpot_model_t,
    name: *mut *const c_char,
) -> ovpot_status_e {
    ffi_call("ovpot_model_get_friendly_name", || {
        let out = out_ptr(name, "name", std::ptr::null())?;
        *out = try_ref(model, "model")?.name.as_ptr();
        Ok(())
    })
}

fn port<'a>(ports: &'a [PortC], index: usize, kind: &str) -> Result<&'a PortC> {
    ports
        .get(index)
        .ok_or_else(|| Error::invalid(format!("{kind} index {index} out of range (the model has {})", ports.len())))
}

fn port_shape(p: &PortC, dims: *mut *const i64, rank: *mut i64) -> Result<()> {
    let dims_out = out_ptr(dims, "dims", std::ptr::null())?;
    let rank_out = out_ptr(rank, "rank", -1)?;
    if let Some(d) = &p.dims {
        *dims_out = d.as_ptr();
        *rank_out = d.len() as i64;
    }
    Ok(())
}

/// The number of model inputs.
#[no_mangle]
pub extern "C" fn ovpot_model_inputs_size(model: *const ovpot_model_t, size: *mut usize) -> ovpot_status_e {
    ffi_call("ovpot_model_inputs_size", || {
        let out = out_ptr(size, "size", 0)?;
        *out = try_ref(model, "model")?.inputs_c.len();
        Ok(())
    })
}

/// The number of model outputs.
#[no_mangle]
pub extern "C" fn ovpot_model_outputs_size(model: *const ovpot_model_t, size: *mut usize) -> ovpot_status_e {
    ffi_call("ovpot_model_outputs_size", || {
        let out = out_ptr(size, "size", 0)?;
        *out = try_ref(model, "model")?.outputs_c.len();
        Ok(())
    })
}

/// The name of input `index` (its tensor name); valid as long as `model`.
#[no_mangle]
pub extern "C" fn ovpot_model_input_name(
    model: *const ovpot_model_t,
    index: usize,
    name: *mut *const c_char,
) -> ovpot_status_e {
    ffi_call("ovpot_model_input_name", || {
        let out = out_ptr(name, "name", std::ptr::null())?;
        *out = port(&try_ref(model, "model")?.inputs_c, index, "input")?.name.as_ptr();
        Ok(())
    })
}

/// The name of output `index` (its tensor name); valid as long as `model`.
#[no_mangle]
pub extern "C" fn ovpot_model_output_name(
    model: *const ovpot_model_t,
    index: usize,
    name: *mut *const c_char,
) -> ovpot_status_e {
    ffi_call("ovpot_model_output_name", || {
        let out = out_ptr(name, "name", std::ptr::null())?;
        *out = port(&try_ref(model, "model")?.outputs_c, index, "output")?.name.as_ptr();
        Ok(())
    })
}

/// The element type of input `index`.
#[no_mangle]
pub extern "C" fn ovpot_model_input_element_type(
    model: *const ovpot_model_t,
    index: usize,
    element_type: *mut ovpot_element_type_e,
) -> ovpot_status_e {
    ffi_call("ovpot_model_input_element_type", || {
        let out = out_ptr(element_type, "element_type", ovpot_element_type_e::OVPOT_ELEMENT_TYPE_DYNAMIC)?;
        let m = try_ref(model, "model")?;
        port(&m.inputs_c, index, "input")?;
        *out = ovpot_element_type_e::from_rust(m.inputs[index].element_type);
        Ok(())
    })
}

/// The element type of output `index`.
#[no_mangle]
pub extern "C" fn ovpot_model_output_element_type(
    model: *const ovpot_model_t,
    index: usize,
    element_type: *mut ovpot_element_type_e,
) -> ovpot_status_e {
    ffi_call("ovpot_model_output_element_type", || {
        let out = out_ptr(element_type, "element_type", ovpot_element_type_e::OVPOT_ELEMENT_TYPE_DYNAMIC)?;
        let m = try_ref(model, "model")?;
        port(&m.outputs_c, index, "output")?;
        *out = ovpot_element_type_e::from_rust(m.outputs[index].element_type);
        Ok(())
    })
}

/// The partial shape of input `index`: `*rank` dims at `*dims`, -1 for a dynamic (or bounded)
/// dim; a dynamic rank gives `*rank` = -1 and `*dims` = NULL. Valid as long as `model`.
#[no_mangle]
pub extern "C" fn ovpot_model_input_partial_shape(
    model: *const ovpot_model_t,
    index: usize,
    dims: *mut *const i64,
    rank: *mut i64,
) -> ovpot_status_e {
    ffi_call("ovpot_model_input_partial_shape", || {
        let m = try_ref(model, "model")?;
        port_shape(port(&m.inputs_c, index, "input")?, dims, rank)
    })
}

/// The partial shape of output `index`, as `ovpot_model_input_partial_shape` gives it.
#[no_mangle]
pub extern "C" fn ovpot_model_output_partial_shape(
    model: *const ovpot_model_t,
    index: usize,
    dims: *mut *const i64,
    rank: *mut i64,
) -> ovpot_status_e {
    ffi_call("ovpot_model_output_partial_shape", || {
        let m = try_ref(model, "model")?;
        port_shape(port(&m.outputs_c, index, "output")?, dims, rank)
    })
}

/// Runs the model on one sample with ovpot's built-in CPU engine (FP32 reference, or the
/// FakeQuantize simulation of a quantized model). Free the result with `ovpot_outputs_free`.
/// The first call builds an execution plan that later calls reuse; calls may run concurrently.
#[no_mangle]
pub extern "C" fn ovpot_model_infer(
    model: *const ovpot_model_t,
    sample: *const ovpot_sample_t,
    outputs: *mut *mut ovpot_outputs_t,
) -> ovpot_status_e {
    ffi_call("ovpot_model_infer", || {
        let out = out_ptr(outputs, "outputs", std::ptr::null_mut())?;
        let m = try_ref(model, "model")?;
        let s = try_ref(sample, "sample")?;
        // From inside a run's callback the shared pool may be waiting for this thread.
        let results = off_busy_pool(|| m.plan()?.run(&s.inputs))??;
        *out = into_handle(ovpot_outputs_t::new(&m.output_names(), &results)?);
        Ok(())
    })
}

/// Frees a model. NULL is a no-op.
#[no_mangle]
pub extern "C" fn ovpot_model_free(model: *mut ovpot_model_t) {
    ffi_free(|| free_handle(model, "model"))
}

/// Creates an empty sample. `model` may be NULL; when given, input names, element types and
/// shapes are checked as they are set and inputs can be set by index. Free with
/// `ovpot_sample_free`.
#[no_mangle]
pub extern "C" fn ovpot_sample_create(model: *const ovpot_model_t, sample: *mut *mut ovpot_sample_t) -> ovpot_status_e {
    ffi_call("ovpot_sample_create", || {
        let out = out_ptr(sample, "sample", std::ptr::null_mut())?;
        let ports = if model.is_null() { None } else { Some(try_ref(model, "model")?.input_ports()) };
        *out = into_handle(ovpot_sample_t::new(ports));
        Ok(())
    })
}

impl super::boundary::Handle for ovpot_model_t {
    const C_NAME: &'static str = "ovpot_model_t";
}

impl super::boundary::Handle for ovpot_ir_buffer_t {
    const C_NAME: &'static str = "ovpot_ir_buffer_t";
}
