//! Library lifetime and system queries: `nvmlInit*`, `nvmlShutdown`,
//! `nvmlErrorString`, driver and NVML versions.

use crate::{ffi, put_str, ret, state, sys, Ret};
use std::os::raw::{c_char, c_uint};

/// The driver the fake claims to be (an R550 data-center release).
pub const DRIVER_VERSION: &str = migward::simulate::DRIVER_VERSION;
/// `nvmlSystemGetNVMLVersion` of that driver.
pub const NVML_VERSION: &str = "12.550.54.15";
/// `nvmlSystemGetCudaDriverVersion` of that driver: CUDA 12.4.
pub const CUDA_DRIVER_VERSION: i32 = 12040;

#[no_mangle]
pub extern "C" fn nvmlInit_v2() -> Ret {
    ffi(state::init)
}

/// The pre-R260 name; nvml-wrapper's `legacy-functions` feature calls it.
#[no_mangle]
pub extern "C" fn nvmlInit() -> Ret {
    ffi(state::init)
}

/// `NVML_INIT_FLAG_NO_GPUS` and `NVML_INIT_FLAG_NO_ATTACH` change nothing
/// here: the simulated GPUs are always attached. Other bits are refused.
#[no_mangle]
pub extern "C" fn nvmlInitWithFlags(flags: c_uint) -> Ret {
    ffi(|| {
        let known = sys::NVML_INIT_FLAG_NO_GPUS | sys::NVML_INIT_FLAG_NO_ATTACH;
        if flags & !known != 0 {
            return Err(ret::INVALID_ARGUMENT);
        }
        state::init()
    })
}

#[no_mangle]
pub extern "C" fn nvmlShutdown() -> Ret {
    ffi(state::shutdown)
}

/// Works before init, like NVIDIA's; unknown codes read "Unknown Error".
#[no_mangle]
pub extern "C" fn nvmlErrorString(result: Ret) -> *const c_char {
    error_string(result).as_ptr()
}

fn error_string(result: Ret) -> &'static std::ffi::CStr {
    match result {
        0 => c"Success",
        1 => c"Uninitialized",
        2 => c"Invalid Argument",
        3 => c"Not Supported",
        4 => c"Insufficient Permissions",
        5 => c"Already Initialized",
        6 => c"Not Found",
        7 => c"Insufficient Size",
        8 => c"Insufficient External Power",
        9 => c"Driver Not Loaded",
        10 => c"Timeout",
        11 => c"Interrupt request issue",
        12 => c"NVML Shared Library Not Found",
        13 => c"Function Not Found",
        14 => c"Corrupted infoROM",
        15 => c"GPU is lost",
        16 => c"GPU requires restart",
        17 => c"The operating system has blocked the request.",
        18 => c"RM has detected an NVML/RM version mismatch.",
        19 => c"In use by another client",
        20 => c"Insufficient Memory",
        21 => c"No data",
        25 => c"Argument version mismatch",
        _ => c"Unknown Error",
    }
}

#[no_mangle]
pub unsafe extern "C" fn nvmlSystemGetDriverVersion(version: *mut c_char, length: c_uint) -> Ret {
    ffi(|| {
        state::topology()?;
        put_str(version, length, DRIVER_VERSION)
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlSystemGetNVMLVersion(version: *mut c_char, length: c_uint) -> Ret {
    ffi(|| {
        state::topology()?;
        put_str(version, length, NVML_VERSION)
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlSystemGetCudaDriverVersion(version: *mut i32) -> Ret {
    ffi(|| {
        state::topology()?;
        *crate::out(version)? = CUDA_DRIVER_VERSION;
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlSystemGetCudaDriverVersion_v2(version: *mut i32) -> Ret {
    nvmlSystemGetCudaDriverVersion(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_message() {
        assert_eq!(error_string(0), c"Success");
        assert_eq!(error_string(ret::INSUFFICIENT_SIZE), c"Insufficient Size");
        assert_eq!(error_string(ret::UNKNOWN), c"Unknown Error");
        assert_eq!(error_string(12345), c"Unknown Error");
    }
}
