//! A stand-in for the driver's `libcuda.so.1`: enough of the CUDA driver
//! API for a program to find the library and ask its version. It exists so
//! that the simulated host's CDI spec mounts a CUDA library under its real
//! name and SONAME, as `nvidia-ctk cdi generate` does; it drives no GPU.

#![allow(clippy::missing_safety_doc)]

use std::os::raw::{c_int, c_uint};

/// `CUDA_SUCCESS`.
const SUCCESS: c_int = 0;
/// `CUDA_ERROR_INVALID_VALUE`.
const INVALID_VALUE: c_int = 1;
/// CUDA 12.4, as the simulated R550 driver reports it.
const DRIVER_VERSION: c_int = 12040;

#[no_mangle]
pub extern "C" fn cuInit(flags: c_uint) -> c_int {
    if flags != 0 {
        return INVALID_VALUE;
    }
    SUCCESS
}

#[no_mangle]
pub unsafe extern "C" fn cuDriverGetVersion(version: *mut c_int) -> c_int {
    if version.is_null() {
        return INVALID_VALUE;
    }
    // SAFETY: CUDA's contract: a non-NULL output points to an int.
    unsafe { *version = DRIVER_VERSION };
    SUCCESS
}
