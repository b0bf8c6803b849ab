//! A fake `libnvidia-ml.so` that serves a simulated GPU server.
//!
//! migward needs NVML for one thing: turning a MIG UUID into its parent GPU,
//! GPU-instance id and compute-instance id (DESIGN.md, "The data path"). No
//! development machine has an A100 or H100, so tests, CI and `migward
//! simulate` load this library instead of NVIDIA's. It answers from a
//! [`migward::topology::Topology`], the same file the fixture generator turns
//! into `/proc` and `/dev` trees, so NVML and the host files always agree.
//!
//! Where the topology comes from, read once per `nvmlInit_v2`:
//! 1. `MIGWARD_FAKE_NVML_TOPOLOGY`, a path or a built-in topology name;
//! 2. otherwise `topology.toml` next to the loaded library itself (`migward
//!    simulate` copies the library to `<dir>/nvml/libnvidia-ml.so.1` and
//!    writes `<dir>/nvml/topology.toml`).
//!
//! A missing or invalid topology makes `nvmlInit_v2` print one line to stderr
//! and return `NVML_ERROR_UNKNOWN`.
//!
//! nvml-wrapper looks symbols up one by one, so only the entry points migward
//! and its tests call are exported (see the modules). They follow NVIDIA's
//! header: the documented return codes, NUL-terminated strings refused with
//! `NVML_ERROR_INSUFFICIENT_SIZE` when the buffer is short, outputs left
//! untouched on error, `NVML_ERROR_UNINITIALIZED` before `nvmlInit_v2` and
//! after the last `nvmlShutdown`. Where real drivers are stricter than the
//! header (profile *indices*, not ids, in `nvmlDeviceGetGpuInstanceProfileInfo*`;
//! a versioned info struct), the fake is strict too, so code that passes
//! here does not break on a real card.
//!
//! Nothing here may unwind into C: every export runs inside `ffi`.

// Every export is a C entry point whose contract is NVIDIA's `nvml.h`; the
// pointer rules are NVML's, not repeated on each function.
#![allow(clippy::missing_safety_doc)]

mod device;
mod handles;
mod instances;
mod mig;
mod state;
mod system;

use nvml_wrapper_sys::bindings as sys;
use std::os::raw::{c_char, c_uint};
use std::panic::{catch_unwind, AssertUnwindSafe};

pub(crate) type Ret = sys::nvmlReturn_t;

/// The `nvmlReturn_t` codes the fake gives.
pub(crate) mod ret {
    use super::sys;
    pub const SUCCESS: super::Ret = sys::nvmlReturn_enum_NVML_SUCCESS;
    pub const UNINITIALIZED: super::Ret = sys::nvmlReturn_enum_NVML_ERROR_UNINITIALIZED;
    pub const INVALID_ARGUMENT: super::Ret = sys::nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT;
    pub const NOT_SUPPORTED: super::Ret = sys::nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED;
    pub const NOT_FOUND: super::Ret = sys::nvmlReturn_enum_NVML_ERROR_NOT_FOUND;
    pub const INSUFFICIENT_SIZE: super::Ret = sys::nvmlReturn_enum_NVML_ERROR_INSUFFICIENT_SIZE;
    pub const UNKNOWN: super::Ret = sys::nvmlReturn_enum_NVML_ERROR_UNKNOWN;
}

/// Runs an export's body: `Ok` is `NVML_SUCCESS`, `Err` the code, and a
/// panic becomes `NVML_ERROR_UNKNOWN` instead of unwinding into C (which is
/// undefined behaviour). Bodies avoid panics anyway: the workspace's release
/// profile sets `panic = "abort"`, where nothing can be caught.
pub(crate) fn ffi(body: impl FnOnce() -> Result<(), Ret>) -> Ret {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => ret::SUCCESS,
        Ok(Err(code)) => code,
        Err(_) => ret::UNKNOWN,
    }
}

/// The caller's output slot, or `INVALID_ARGUMENT` for NULL.
pub(crate) unsafe fn out<'a, T>(ptr: *mut T) -> Result<&'a mut T, Ret> {
    // SAFETY: NVML's contract: a non-NULL output points to a writable `T`.
    unsafe { ptr.as_mut() }.ok_or(ret::INVALID_ARGUMENT)
}

/// Copies `text` and a NUL into the caller's `len`-byte buffer, or refuses
/// with `INSUFFICIENT_SIZE` (writing nothing) when it does not fit.
pub(crate) unsafe fn put_str(buf: *mut c_char, len: c_uint, text: &str) -> Result<(), Ret> {
    if buf.is_null() {
        return Err(ret::INVALID_ARGUMENT);
    }
    let bytes = text.as_bytes();
    if bytes.len() >= len as usize {
        return Err(ret::INSUFFICIENT_SIZE);
    }
    // SAFETY: NVML's contract: `buf` holds `len` bytes, and `bytes.len() + 1 <= len`.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr().cast::<c_char>(), buf, bytes.len());
        *buf.add(bytes.len()) = 0;
    }
    Ok(())
}

/// Fills a fixed `char[N]` field of an NVML struct, truncating if needed.
pub(crate) fn fill_chars(field: &mut [c_char], text: &str) {
    let n = text.len().min(field.len().saturating_sub(1));
    for (dst, src) in field.iter_mut().zip(&text.as_bytes()[..n]) {
        *dst = *src as c_char;
    }
    for dst in field.iter_mut().skip(n) {
        *dst = 0;
    }
}
