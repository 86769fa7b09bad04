//! Datasets: from C callbacks, from in-memory arrays, from a folder of `.npy` files.

use super::boundary::{ffi_call, ffi_free, free_handle, into_handle, out_ptr, try_mut, try_ref, try_slice, try_str};
use super::model::ovpot_model_t;
use super::tensors::{clone_error, ovpot_sample_t, tensor_from_c};
use super::types::ovpot_status_e;
use crate::api::{Dataset, InMemoryDataset, PortDesc, Sample};
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::ffi::{c_char, c_int, c_void};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

/// Fills `sample` with the inputs of sample `index` (0 <= index < length) by calling
/// `ovpot_sample_set_input*`; returns 0 on success, anything else to stop the run with
/// OVPOT_CALLBACK_FAILED. When one of those set calls failed, the run stops with that call's
/// status instead (OVPOT_MISMATCH for a wrong shape or type, OVPOT_INVALID_ARGUMENT, ...),
/// whatever the callback returns. `sample` is valid only during the call.
/// Calls back into ovpot from here work, except on the handles the run is using: the running
/// session and its metric refuse every call, its datasets may be read but not changed or freed
/// (those calls fail at once with OVPOT_INVALID_ARGUMENT; a free leaves the handle as it is).
pub type ovpot_get_item_callback_t =
    Option<extern "C" fn(user_data: *mut c_void, index: usize, sample: *mut ovpot_sample_t) -> c_int>;

/// Releases `user_data` when the object holding it is freed.
pub type ovpot_destroy_callback_t = Option<extern "C" fn(user_data: *mut c_void)>;

/// The C side of a callback dataset. Only touched on the thread that called into ovpot.
pub(crate) struct CallbackDataset {
    length: usize,
    get_item: extern "C" fn(*mut c_void, usize, *mut ovpot_sample_t) -> c_int,
    user_data: *mut c_void,
    destroy: ovpot_destroy_callback_t,
    ports: Option<Arc<[PortDesc]>>,
    /// The thread whose call uses the dataset, and how many of its (nested) calls do.
    owner: Mutex<(Option<ThreadId>, usize)>,
}

/// A callback dataset claimed by the calls of one thread; released on drop (every exit path,
/// errors and panics included).
pub(crate) struct Claim<'a>(Option<&'a Mutex<(Option<ThreadId>, usize)>>);

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if let Some(m) = self.0 {
            let mut o = m.lock().unwrap_or_else(|p| p.into_inner());
            o.1 -= 1;
            if o.1 == 0 {
                o.0 = None;
            }
        }
    }
}

impl CallbackDataset {
    /// Calls `get_item` for `index`; a failure names the sample.
    /// Claims the dataset for the calling thread: a call on another thread while it is claimed
    /// fails at once (its callbacks are never called concurrently); nested calls on the same
    /// thread (from inside its callbacks) share the claim.
    pub(crate) fn claim(&self) -> Result<Claim<'_>> {
        let me = std::thread::current().id();
        let mut o = self.owner.lock().unwrap_or_else(|p| p.into_inner());
        match o.0 {
            Some(t) if t != me => {
                Err(Error::invalid("dataset is in use by another call (its callbacks never run concurrently)"))
            }
            _ => {
                *o = (Some(me), o.1 + 1);
                Ok(Claim(Some(&self.owner)))
            }
        }
    }

    pub(crate) fn get(&self, index: usize) -> Result<Sample> {
        let _claim = self.claim()?;
        if index >= self.length {
            return Err(Error::invalid(format!("sample {index} out of range (length {})", self.length)));
        }
        let mut sample = ovpot_sample_t::new(self.ports.clone());
        let lent = super::boundary::lend(&sample);
        let rc = (self.get_item)(self.user_data, index, &mut sample);
        drop(lent);
        let failed = |e: &Error| -> Error {
            let status = super::boundary::status_of(e);
            // The kind stays the set call's; its name is said once, by the outer error.
            let msg = |inner: String| format!("get_item callback, sample {index}: {inner}");
            match status {
                ovpot_status_e::OVPOT_MISMATCH => Error::mismatch(msg(e.message())),
                ovpot_status_e::OVPOT_INVALID_ARGUMENT => Error::invalid(msg(e.message())),
                ovpot_status_e::OVPOT_UNSUPPORTED => Error::unsupported(msg(e.message())),
                _ => Error::Callback(msg(e.to_string())),
            }
        };
        if let Some(e) = &sample.error {
            return Err(failed(&clone_error(e)));
        }
        if rc != 0 {
            return Err(Error::Callback(format!("get_item callback returned {rc} for sample {index}")));
        }
        sample.check_complete().map_err(|e| failed(&e))?;
        if sample.inputs.is_empty() {
            return Err(Error::Callback(format!("get_item callback set no input for sample {index}")));
        }
        Ok(sample.inputs)
    }
    pub(crate) fn len(&self) -> usize {
        self.length
    }
}

impl Drop for CallbackDataset {
    fn drop(&mut self) {
        if let Some(d) = self.destroy {
            d(self.user_data);
        }
    }
}

pub(crate) enum DatasetKind {
    Memory(InMemoryDataset),
    Rust(Box<dyn Dataset>),
    Callback(CallbackDataset),
}

/// A source of samples for calibration or evaluation. Free with `ovpot_dataset_free`.
pub struct ovpot_dataset_t {
    pub(crate) kind: DatasetKind,
}

impl ovpot_dataset_t {
    /// [`CallbackDataset::claim`] for callback datasets; other kinds are safe on any thread.
    pub(crate) fn claim(&self) -> Result<Claim<'_>> {
        match &self.kind {
            DatasetKind::Callback(c) => c.claim(),
            _ => Ok(Claim(None)),
        }
    }
    /// The dataset as a Rust `Dataset` when it needs no C callback (usable on any thread).
    pub(crate) fn as_rust(&self) -> Option<&dyn Dataset> {
        match &self.kind {
            DatasetKind::Memory(m) => Some(m),
            DatasetKind::Rust(d) => Some(d.as_ref()),
            DatasetKind::Callback(_) => None,
        }
    }
    pub(crate) fn len(&self) -> usize {
        match &self.kind {
            DatasetKind::Memory(m) => m.len(),
            DatasetKind::Rust(d) => d.len(),
            DatasetKind::Callback(c) => c.len(),
        }
    }
    pub(crate) fn get(&self, index: usize) -> Result<Sample> {
        match &self.kind {
            DatasetKind::Memory(m) => m.get(index),
            DatasetKind::Rust(d) => d.get(index),
            DatasetKind::Callback(c) => c.get(index),
        }
    }
}

/// Creates a dataset of `length` samples produced by `get_item`. `model` (may be NULL) lets
/// samples be filled by input index and checked as they are filled. `destroy` (may be NULL) is
/// called with `user_data` when the dataset is freed (not when this call fails). Callbacks are
/// only called from ovpot calls made on the caller's thread, one at a time, never concurrently:
/// while a call on one thread uses the dataset (a run, `ovpot_dataset_get`,
/// `ovpot_metric_evaluate`), a call on another thread that would use it fails at once with
/// OVPOT_INVALID_ARGUMENT ("dataset is in use by another call"); calls from inside its own
/// callbacks, on the same thread, may use it.
#[no_mangle]
pub extern "C" fn ovpot_dataset_create(
    model: *const ovpot_model_t,
    length: usize,
    get_item: ovpot_get_item_callback_t,
    user_data: *mut c_void,
    destroy: ovpot_destroy_callback_t,
    dataset: *mut *mut ovpot_dataset_t,
) -> ovpot_status_e {
    ffi_call("ovpot_dataset_create", || {
        let out = out_ptr(dataset, "dataset", std::ptr::null_mut())?;
        let get_item = get_item.ok_or_else(|| Error::invalid("'get_item' is NULL"))?;
        let ports = if model.is_null() { None } else { Some(try_ref(model, "model")?.input_ports()) };
        let cb = CallbackDataset { length, get_item, user_data, destroy, ports, owner: Mutex::new((None, 0)) };
        *out = into_handle(ovpot_dataset_t { kind: DatasetKind::Callback(cb) });
        Ok(())
    })
}

/// Creates an empty in-memory dataset; add samples with `ovpot_dataset_add_sample`.
#[no_mangle]
pub extern "C" fn ovpot_dataset_create_in_memory(dataset: *mut *mut ovpot_dataset_t) -> ovpot_status_e {
    ffi_call("ovpot_dataset_create_in_memory", || {
        let out = out_ptr(dataset, "dataset", std::ptr::null_mut())?;
        *out = into_handle(ovpot_dataset_t { kind: DatasetKind::Memory(InMemoryDataset::default()) });
        Ok(())
    })
}

/// Appends a copy of `sample` to a dataset made by `ovpot_dataset_create_in_memory`.
#[no_mangle]
pub extern "C" fn ovpot_dataset_add_sample(
    dataset: *mut ovpot_dataset_t,
    sample: *const ovpot_sample_t,
) -> ovpot_status_e {
    ffi_call("ovpot_dataset_add_sample", || {
        let d = try_mut(dataset, "dataset")?;
        let s = try_ref(sample, "sample")?;
        s.check_complete()?;
        match &mut d.kind {
            DatasetKind::Memory(m) => {
                m.samples.push(s.inputs.clone());
                Ok(())
            }
            _ => Err(Error::invalid("samples can only be added to a dataset made by ovpot_dataset_create_in_memory")),
        }
    })
}

/// One input array of `ovpot_dataset_create_from_arrays`: the samples stacked on axis 0.
#[repr(C)]
pub struct ovpot_array_t {
    /// The model input's name.
    pub name: *const c_char,
    /// An `ovpot_element_type_e` value.
    pub element_type: u32,
    /// `rank` dims; dim 0 counts the samples.
    pub shape: *const i64,
    /// Number of dims (at least 1).
    pub rank: usize,
    /// Row-major, little-endian data.
    pub data: *const c_void,
    /// Size of `data` in bytes; must match the shape exactly.
    pub byte_size: usize,
}

/// Sample `i` of an array stacked on axis 0, keeping a batch dim of 1.
fn slice_sample(t: &Tensor, i: usize) -> Tensor {
    use ndarray::{Axis, Slice};
    crate::map_tensor!(t, a => a.slice_axis(Axis(0), Slice::from(i..i + 1)).to_owned())
}

/// Creates a dataset from `count` arrays (one per model input; copied). Sample `i` takes slice
/// `i` of axis 0 of every array, keeping a leading dim of 1, so arrays of shape [N, C, H, W]
/// give N samples of shape [1, C, H, W]. All arrays must have the same dim 0.
#[no_mangle]
pub extern "C" fn ovpot_dataset_create_from_arrays(
    arrays: *const ovpot_array_t,
    count: usize,
    dataset: *mut *mut ovpot_dataset_t,
) -> ovpot_status_e {
    ffi_call("ovpot_dataset_create_from_arrays", || {
        let out = out_ptr(dataset, "dataset", std::ptr::null_mut())?;
        let arrays = try_slice(arrays, count, "arrays")?;
        if arrays.is_empty() {
            return Err(Error::invalid("no arrays given"));
        }
        let mut named = Vec::with_capacity(arrays.len());
        for (k, a) in arrays.iter().enumerate() {
            let name = try_str(a.name, &format!("arrays[{k}].name"))?;
            if a.rank == 0 {
                return Err(Error::invalid(format!("array '{name}' has rank 0; dim 0 must count the samples")));
            }
            let t = tensor_from_c(&format!("array '{name}'"), a.element_type, a.shape, a.rank, a.data, a.byte_size)?;
            named.push((name.to_string(), t));
        }
        let n = named[0].1.shape()[0];
        for (name, t) in &named {
            if t.shape()[0] != n {
                return Err(Error::mismatch(format!(
                    "array '{name}' holds {} samples but '{}' holds {n}",
                    t.shape()[0],
                    named[0].0
                )));
            }
        }
        let samples =
            (0..n).map(|i| named.iter().map(|(name, t)| (name.clone(), slice_sample(t, i))).collect()).collect();
        *out = into_handle(ovpot_dataset_t { kind: DatasetKind::Rust(Box::new(InMemoryDataset { samples })) });
        Ok(())
    })
}

/// Creates a dataset from `.npy` files for `model`: a folder with `<input name>.npy` per model
/// input, samples stacked on axis 0 (or, for one-input models, one `.npy` per sample, or a
/// single stacked `.npy` file). Samples are checked against the model's inputs.
#[no_mangle]
pub extern "C" fn ovpot_dataset_create_from_npy_folder(
    model: *const ovpot_model_t,
    path: *const c_char,
    dataset: *mut *mut ovpot_dataset_t,
) -> ovpot_status_e {
    ffi_call("ovpot_dataset_create_from_npy_folder", || {
        let out = out_ptr(dataset, "dataset", std::ptr::null_mut())?;
        let m = try_ref(model, "model")?;
        let path = try_str(path, "path")?;
        let d = crate::data::NpyFolderDataset::open(Path::new(path), &m.input_ports())?;
        *out = into_handle(ovpot_dataset_t { kind: DatasetKind::Rust(Box::new(d)) });
        Ok(())
    })
}

/// Creates `count` synthetic images for `model`'s single image input (data-free quantization,
/// POT's `engine.type: data_free`): fractals, random shapes and strokes made from `seed`, laid
/// out as the input wants (NCHW or NHWC, u8 or float; a float input the model does not
/// normalise itself gets ImageNet's normalisation). When `save_dir` is not NULL the images are
/// also written there as PNG files. Quantize with `ovpot_session_set_data_free` on the session.
#[no_mangle]
pub extern "C" fn ovpot_dataset_create_synthetic(
    model: *const ovpot_model_t,
    count: usize,
    seed: u64,
    save_dir: *const c_char,
    dataset: *mut *mut ovpot_dataset_t,
) -> ovpot_status_e {
    ffi_call("ovpot_dataset_create_synthetic", || {
        let out = out_ptr(dataset, "dataset", std::ptr::null_mut())?;
        let m = try_ref(model, "model")?;
        let d = crate::data::ImageFolderDataset::synthetic(&m.model, count, seed, &Default::default())?;
        if !save_dir.is_null() {
            d.save_png(Path::new(try_str(save_dir, "save_dir")?))?;
        }
        *out = into_handle(ovpot_dataset_t { kind: DatasetKind::Rust(Box::new(d)) });
        Ok(())
    })
}

/// The number of samples.
#[no_mangle]
pub extern "C" fn ovpot_dataset_size(dataset: *const ovpot_dataset_t, size: *mut usize) -> ovpot_status_e {
    ffi_call("ovpot_dataset_size", || {
        let out = out_ptr(size, "size", 0)?;
        *out = try_ref(dataset, "dataset")?.len();
        Ok(())
    })
}

/// Copies sample `index` into a new sample (calling `get_item` for callback datasets); free it
/// with `ovpot_sample_free`. Handy for `ovpot_model_infer`.
#[no_mangle]
pub extern "C" fn ovpot_dataset_get(
    dataset: *const ovpot_dataset_t,
    index: usize,
    sample: *mut *mut ovpot_sample_t,
) -> ovpot_status_e {
    ffi_call("ovpot_dataset_get", || {
        let out = out_ptr(sample, "sample", std::ptr::null_mut())?;
        let d = try_ref(dataset, "dataset")?;
        let inputs = d.get(index)?;
        *out = into_handle(ovpot_sample_t { inputs, ports: None, error: None });
        Ok(())
    })
}

/// Frees a dataset (calling its destroy callback, if any). NULL is a no-op.
#[no_mangle]
pub extern "C" fn ovpot_dataset_free(dataset: *mut ovpot_dataset_t) {
    ffi_free(|| free_handle(dataset, "dataset"))
}

impl super::boundary::Handle for ovpot_dataset_t {
    const C_NAME: &'static str = "ovpot_dataset_t";
}
