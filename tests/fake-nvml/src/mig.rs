//! MIG mode and MIG device handles: mode, enumeration, parent, GI/CI ids,
//! attributes.
//!
//! nvml-wrapper has no safe call for the GI and CI ids of a MIG device;
//! migward reads them through `nvml.lib()` (DESIGN.md, "Testing without a
//! GPU"), so these are the calls its resolution step rests on.

use crate::handles::{self, mig_devices, Dev};
use crate::{ffi, out, ret, state, sys, Ret};
use std::os::raw::c_uint;

/// Every simulated model is MIG-capable: seven MIG devices at most.
const MAX_MIG_DEVICES: c_uint = 7;

/// Current and pending mode of a physical GPU (1 = enabled).
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMigMode(
    device: sys::nvmlDevice_t,
    current: *mut c_uint,
    pending: *mut c_uint,
) -> Ret {
    ffi(|| {
        let topology = state::topology()?;
        let Dev::Gpu(gpu) = handles::device(&topology, device)? else {
            return Err(ret::NOT_SUPPORTED);
        };
        if !gpu.model.supports_mig() {
            return Err(ret::NOT_SUPPORTED);
        }
        if current.is_null() || pending.is_null() {
            return Err(ret::INVALID_ARGUMENT);
        }
        *out(current)? = c_uint::from(gpu.mig.current);
        *out(pending)? = c_uint::from(gpu.mig.pending);
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceIsMigDeviceHandle(
    device: sys::nvmlDevice_t,
    is_mig: *mut c_uint,
) -> Ret {
    ffi(|| {
        let topology = state::topology()?;
        let dev = handles::device(&topology, device)?;
        *out(is_mig)? = c_uint::from(matches!(dev, Dev::Mig(_)));
        Ok(())
    })
}

/// 7 for every physical GPU, whatever its mode (all models are MIG-capable).
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMaxMigDeviceCount(
    device: sys::nvmlDevice_t,
    count: *mut c_uint,
) -> Ret {
    ffi(|| {
        let topology = state::topology()?;
        handles::physical(&topology, device)?;
        *out(count)? = MAX_MIG_DEVICES;
        Ok(())
    })
}

/// The `index`-th MIG device, GPU instances in topology order, then compute
/// instances. `NOT_SUPPORTED` while MIG is not active (a pending mode is not
/// active), `NOT_FOUND` past the last one.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMigDeviceHandleByIndex(
    device: sys::nvmlDevice_t,
    index: c_uint,
    mig_device: *mut sys::nvmlDevice_t,
) -> Ret {
    ffi(|| {
        let topology = state::topology()?;
        let gpu = handles::physical(&topology, device)?;
        let slot = out(mig_device)?;
        if !gpu.mig.current {
            return Err(ret::NOT_SUPPORTED);
        }
        if index as usize >= mig_devices(gpu).count() {
            return Err(ret::NOT_FOUND);
        }
        *slot = handles::mig_handle(gpu, index as usize);
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetDeviceHandleFromMigDeviceHandle(
    mig_device: sys::nvmlDevice_t,
    device: *mut sys::nvmlDevice_t,
) -> Ret {
    ffi(|| {
        let topology = state::topology()?;
        let Dev::Mig(mig) = handles::device(&topology, mig_device)? else {
            return Err(ret::INVALID_ARGUMENT);
        };
        *out(device)? = handles::gpu_handle(mig.gpu);
        Ok(())
    })
}

/// The GI id of a MIG device; `NOT_SUPPORTED` on a physical GPU.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetGpuInstanceId(
    device: sys::nvmlDevice_t,
    id: *mut c_uint,
) -> Ret {
    ffi(|| {
        let topology = state::topology()?;
        let Dev::Mig(mig) = handles::device(&topology, device)? else {
            return Err(ret::NOT_SUPPORTED);
        };
        *out(id)? = mig.gi.gi;
        Ok(())
    })
}

/// The CI id of a MIG device; `NOT_SUPPORTED` on a physical GPU.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetComputeInstanceId(
    device: sys::nvmlDevice_t,
    id: *mut c_uint,
) -> Ret {
    ffi(|| {
        let topology = state::topology()?;
        let Dev::Mig(mig) = handles::device(&topology, device)? else {
            return Err(ret::NOT_SUPPORTED);
        };
        *out(id)? = mig.ci.ci;
        Ok(())
    })
}

/// A MIG device's share of the GPU: its compute instance's SMs (the GPU
/// instance's, split by compute slices), its GPU instance's memory.
/// `NOT_SUPPORTED` on a physical GPU.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetAttributes_v2(
    device: sys::nvmlDevice_t,
    attributes: *mut sys::nvmlDeviceAttributes_t,
) -> Ret {
    ffi(|| {
        let topology = state::topology()?;
        let Dev::Mig(mig) = handles::device(&topology, device)? else {
            return Err(ret::NOT_SUPPORTED);
        };
        let profile = mig.gi.profile;
        let attributes = out(attributes)?;
        *attributes = sys::nvmlDeviceAttributes_t {
            multiprocessorCount: profile.multiprocessors * mig.ci.compute_slices
                / profile.compute_slices.max(1),
            sharedCopyEngineCount: profile.compute_slices,
            sharedDecoderCount: 0,
            sharedEncoderCount: 0,
            sharedJpegCount: 0,
            sharedOfaCount: 0,
            gpuInstanceSliceCount: profile.compute_slices,
            computeInstanceSliceCount: mig.ci.compute_slices,
            memorySizeMB: profile.memory_mb,
        };
        Ok(())
    })
}
