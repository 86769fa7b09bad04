//! The one place where C pointers become Rust references: every entry point goes through
//! [`ffi_call`] (panic catching, status mapping, the per-thread error message) and these checked
//! conversions (NULL checks, UTF-8 validation, ownership transfer). Modelled on rustls-ffi's
//! `ffi.rs`/`panic.rs`/`error.rs`.

use super::types::ovpot_status_e;
use crate::error::{Error, Result};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{LazyLock, Mutex, RwLock};

thread_local! {
    /// The message of the last failed call on this thread ("" after a successful one).
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Turns text into a C string, replacing interior NULs so the message is never lost.
pub(crate) fn c_string(text: impl Into<String>) -> CString {
    let text: String = text.into();
    CString::new(text.replace('\0', "\u{FFFD}")).unwrap_or_default()
}

pub(crate) fn set_last_error(message: String) {
    LAST_ERROR.with(|e| *e.borrow_mut() = c_string(message));
}

pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// The C status for an error kind (1:1 with `crate::Error`).
pub(crate) fn status_of(e: &Error) -> ovpot_status_e {
    match e {
        Error::InvalidArgument(_) => ovpot_status_e::OVPOT_INVALID_ARGUMENT,
        Error::Parse { .. } => ovpot_status_e::OVPOT_PARSE_ERROR,
        Error::Unsupported(_) => ovpot_status_e::OVPOT_UNSUPPORTED,
        Error::Mismatch(_) => ovpot_status_e::OVPOT_MISMATCH,
        Error::Callback(_) => ovpot_status_e::OVPOT_CALLBACK_FAILED,
        Error::Cancelled(_) => ovpot_status_e::OVPOT_CANCELLED,
        Error::AccuracyNotReached(_) => ovpot_status_e::OVPOT_ACCURACY_NOT_REACHED,
        Error::Io { .. } => ovpot_status_e::OVPOT_IO_ERROR,
        Error::Internal(_) => ovpot_status_e::OVPOT_INTERNAL,
    }
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    }
}

/// Runs the body of an entry point: clears the thread's error message, catches panics (they must
/// not unwind into C) and records the message of a failure. `name` is the C function's name.
pub(crate) fn ffi_call(name: &str, body: impl FnOnce() -> Result<()>) -> ovpot_status_e {
    set_last_error(String::new());
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => ovpot_status_e::OVPOT_OK,
        Ok(Err(e)) => {
            let status = status_of(&e);
            set_last_error(format!("{name}: {e}"));
            status
        }
        Err(payload) => {
            set_last_error(format!("{name}: internal error: panic: {}", panic_message(&*payload)));
            ovpot_status_e::OVPOT_INTERNAL
        }
    }
}

/// How a running session uses a handle, and so what other calls may do with it meanwhile (a call
/// from inside one of the run's callbacks, or from another thread against the header's contract).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Use {
    /// Read by the run (datasets): other calls may read it, not change or free it.
    Shared,
    /// Changed by the run (the session, its metric): other calls may not touch it.
    Exclusive,
}

/// Handles in use by running sessions, by address. A short list: one entry per handle of each
/// run in progress.
static IN_USE: Mutex<Vec<(usize, Use)>> = Mutex::new(Vec::new());

fn in_use() -> std::sync::MutexGuard<'static, Vec<(usize, Use)>> {
    IN_USE.lock().unwrap_or_else(|p| p.into_inner())
}

/// The handles of one run, marked in use until dropped.
pub(crate) struct InUse(Vec<usize>);

impl InUse {
    /// Marks `handles` (address, use, name for the message) in use; fails, marking nothing, when
    /// one is already in use in a way that conflicts.
    pub(crate) fn mark(handles: &[(usize, Use, &str)]) -> Result<InUse> {
        let mut list = in_use();
        for &(addr, want, what) in handles {
            if let Some(&(_, have)) = list.iter().find(|(a, _)| *a == addr) {
                if have == Use::Exclusive || want == Use::Exclusive {
                    return Err(busy(what));
                }
            }
        }
        list.extend(handles.iter().map(|&(a, u, _)| (a, u)));
        Ok(InUse(handles.iter().map(|h| h.0).collect()))
    }
}

impl Drop for InUse {
    fn drop(&mut self) {
        let mut list = in_use();
        for addr in &self.0 {
            if let Some(i) = list.iter().position(|(a, _)| a == addr) {
                list.swap_remove(i);
            }
        }
    }
}

fn busy(what: &str) -> Error {
    Error::invalid(format!(
        "'{what}' is in use by a running session (a call from inside one of its callbacks, or from \
         another thread); use it after the run returns"
    ))
}

/// Fails when the handle at `addr` is in use by a running session in a way that excludes `want`.
fn check_free_to(addr: usize, want: Use, what: &str) -> Result<()> {
    if addr == 0 {
        return Ok(());
    }
    match in_use().iter().find(|(a, _)| *a == addr) {
        Some(&(_, have)) if have == Use::Exclusive || want == Use::Exclusive => Err(busy(what)),
        _ => Ok(()),
    }
}

thread_local! {
    /// How many runs this thread is serving callbacks for (more than one when a callback starts
    /// a run of another session).
    static SERVING: Cell<usize> = const { Cell::new(0) };
}

/// Marks this thread as serving a run's callbacks until dropped.
pub(crate) struct Serving(());

impl Serving {
    pub(crate) fn enter() -> Serving {
        SERVING.with(|s| s.set(s.get() + 1));
        Serving(())
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        SERVING.with(|s| s.set(s.get().saturating_sub(1)));
    }
}

/// Whether this thread is serving a run's callbacks (so a call now comes from inside one).
pub(crate) fn serving() -> bool {
    SERVING.with(Cell::get) > 0
}

/// Runs `job`, off the shared thread pool when this thread is serving a run's callbacks: that
/// run's pool threads may all be waiting for this very thread (for a sample, a metric update),
/// so work queued on the shared pool would never start.
pub(crate) fn off_busy_pool<R: Send>(job: impl FnOnce() -> R + Send) -> Result<R> {
    if serving() {
        in_private_pool(job)
    } else {
        Ok(job())
    }
}

/// Runs `job` in a thread pool of its own (its parallel loops included).
pub(crate) fn in_private_pool<R: Send>(job: impl FnOnce() -> R + Send) -> Result<R> {
    Ok(private_pool()?.install(job))
}

/// A thread pool for calls made from inside callbacks (see [`off_busy_pool`]).
pub(crate) fn private_pool() -> Result<rayon::ThreadPool> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("ovpot-nested-{i}"))
        .build()
        .map_err(|e| Error::internal(format!("cannot start a thread pool: {e}")))
}

/// An opaque C handle type: what every entry point may receive as a handle.
pub(crate) trait Handle {
    /// The C type's name, for messages ("ovpot_model_t").
    const C_NAME: &'static str;
}

/// Whether ovpot owns a live handle until its `*_free`, or lends it to a callback for the call.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Held {
    Owned,
    Lent,
}

/// Every live handle, by address: the handles ovpot made (until their `*_free`) and the ones it
/// lends to a callback (during the call). An entry point looks its handles up here before it
/// reads them, so a freed, foreign or wrong-type pointer is refused without reading its memory.
/// A pointer whose memory was reused by a new handle of the same type passes: that one is used.
/// Keys are the addresses bit-inverted ([`key`]): a leak checker scanning memory must not find a
/// handle the program forgot to free through this table.
static HANDLES: LazyLock<RwLock<HashMap<usize, (&'static str, Held)>>> = LazyLock::new(Default::default);

fn key(addr: usize) -> usize {
    !addr
}

/// Registers a live handle. Not inlined: the shipped valgrind suppressions name it (the table
/// lives for the process).
#[inline(never)]
fn register_handle(addr: usize, entry: (&'static str, Held)) {
    handles_write().insert(key(addr), entry);
}

fn handles_read() -> std::sync::RwLockReadGuard<'static, HashMap<usize, (&'static str, Held)>> {
    HANDLES.read().unwrap_or_else(|p| p.into_inner())
}

fn handles_write() -> std::sync::RwLockWriteGuard<'static, HashMap<usize, (&'static str, Held)>> {
    HANDLES.write().unwrap_or_else(|p| p.into_inner())
}

/// Fails unless `ptr` is NULL-free and a live handle of type `T`; what the entry can say about it.
fn check_handle<T: Handle>(ptr: *const T, what: &str) -> Result<Held> {
    if ptr.is_null() {
        return Err(Error::invalid(format!("'{what}' is NULL")));
    }
    match handles_read().get(&key(ptr as usize)) {
        Some(&(name, held)) if name == T::C_NAME => Ok(held),
        Some(&(name, _)) => Err(Error::invalid(format!("'{what}' is an {name}, not an {}", T::C_NAME))),
        None => {
            Err(Error::invalid(format!("'{what}' is freed or not an ovpot handle (expected a live {})", T::C_NAME)))
        }
    }
}

/// A shared reference to a live handle of type `T` (not NULL, not freed, not another type).
pub(crate) fn try_ref<'a, T: Handle>(ptr: *const T, what: &str) -> Result<&'a T> {
    check_handle(ptr, what)?;
    check_free_to(ptr as usize, Use::Shared, what)?;
    // SAFETY: the pointer is a live handle of type `T` (registered by `into_handle` or `lend`
    // and not yet freed or returned); the C caller promises it is not mutated during the call
    // (documented in the header for every parameter).
    Ok(unsafe { &*ptr })
}

/// An exclusive reference to a live handle of type `T` (not NULL, not freed, not another type).
pub(crate) fn try_mut<'a, T: Handle>(ptr: *mut T, what: &str) -> Result<&'a mut T> {
    check_handle(ptr, what)?;
    check_free_to(ptr as usize, Use::Exclusive, what)?;
    // SAFETY: the pointer is a live handle of type `T`; the C caller promises it is not used
    // elsewhere during the call (the header says handles are not shared between concurrent calls).
    Ok(unsafe { &mut *ptr })
}

/// A handle lent to a callback: registered as live for the call, unregistered when dropped.
pub(crate) struct Lent(usize);

/// Lends `value` to a callback as a handle; it is live until the returned guard is dropped.
pub(crate) fn lend<T: Handle>(value: &T) -> Lent {
    let addr = value as *const T as usize;
    register_handle(addr, (T::C_NAME, Held::Lent));
    Lent(addr)
}

impl Drop for Lent {
    fn drop(&mut self) {
        handles_write().remove(&key(self.0));
    }
}

/// A UTF-8 string from a NUL-terminated C string that must not be NULL.
pub(crate) fn try_str<'a>(ptr: *const c_char, what: &str) -> Result<&'a str> {
    if ptr.is_null() {
        return Err(Error::invalid(format!("'{what}' is NULL")));
    }
    // SAFETY: non-NULL was checked; the caller promises a NUL-terminated string that outlives
    // the call.
    let c = unsafe { CStr::from_ptr(ptr) };
    c.to_str().map_err(|e| Error::invalid(format!("'{what}' is not valid UTF-8: {e}")))
}

/// Like [`try_str`] but NULL gives `None`.
pub(crate) fn opt_str<'a>(ptr: *const c_char, what: &str) -> Result<Option<&'a str>> {
    if ptr.is_null() {
        Ok(None)
    } else {
        try_str(ptr, what).map(Some)
    }
}

/// A slice from a pointer and a length; NULL is accepted only for an empty slice.
pub(crate) fn try_slice<'a, T>(ptr: *const T, len: usize, what: &str) -> Result<&'a [T]> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Error::invalid(format!("'{what}' is NULL but its length is {len}")));
    }
    if !(ptr as usize).is_multiple_of(std::mem::align_of::<T>()) {
        return Err(Error::invalid(format!("'{what}' is not aligned for its element type")));
    }
    if len.checked_mul(std::mem::size_of::<T>()).is_none_or(|b| b > isize::MAX as usize) {
        return Err(Error::invalid(format!("'{what}': length {len} is too large")));
    }
    // SAFETY: non-NULL, aligned, size checked above; the caller promises `len` readable elements
    // that are not mutated during the call.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Bytes from a `const void*` and a byte count; NULL is accepted only for zero bytes.
pub(crate) fn try_bytes<'a>(ptr: *const std::ffi::c_void, len: usize, what: &str) -> Result<&'a [u8]> {
    try_slice(ptr as *const u8, len, what)
}

/// Checks an out-parameter and clears it, so the caller sees a defined value on failure.
pub(crate) fn out_ptr<'a, T>(ptr: *mut T, what: &str, cleared: T) -> Result<&'a mut T> {
    check_free_to(ptr as usize, Use::Exclusive, what)?;
    // SAFETY: the C caller promises a non-NULL out-pointer points to writable memory of its type
    // (documented in the header for every out-parameter); NULL is checked here.
    let out = unsafe { ptr.as_mut() }.ok_or_else(|| Error::invalid(format!("'{what}' is NULL")))?;
    *out = cleared;
    Ok(out)
}

/// Hands a Rust value to C as an owned handle (freed by the matching `*_free`).
pub(crate) fn into_handle<T: Handle>(value: T) -> *mut T {
    let ptr = Box::into_raw(Box::new(value));
    register_handle(ptr as usize, (T::C_NAME, Held::Owned));
    ptr
}

/// Takes back ownership of a handle made by [`into_handle`] and drops it; NULL is a no-op. A
/// handle that is not live (freed already, lent to a callback, foreign, another type) or in use
/// by a running session (freeing it would pull it from under the run) is not freed: the thread's
/// error message says why and the handle, if live, stays valid.
pub(crate) fn free_handle<T: Handle>(ptr: *mut T, what: &str) {
    if ptr.is_null() {
        return;
    }
    let refused = match check_handle(ptr, what) {
        Ok(Held::Owned) => check_free_to(ptr as usize, Use::Exclusive, what).err(),
        Ok(Held::Lent) => Some(Error::invalid(format!("'{what}' is lent to a callback for the call; ovpot frees it"))),
        Err(e) => Some(e),
    };
    if let Some(e) = refused {
        set_last_error(format!("not freed: {}", e.message()));
        return;
    }
    // Unregistered before it is dropped: from here on no call can reach it.
    if handles_write().remove(&key(ptr as usize)).is_some() {
        // SAFETY: the pointer was registered as an owned live handle of type `T`, which only
        // `into_handle` does for a `Box<T>` it leaked; removing it from the registry under the
        // lock makes this the one free.
        drop(unsafe { Box::from_raw(ptr) });
    }
}

/// A free function that must not unwind into C (panics in destructors are swallowed).
pub(crate) fn ffi_free(body: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(body));
}
