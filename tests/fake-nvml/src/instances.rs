//! GPU instances and their profiles: `nvmlDeviceGetGpuInstanceById`,
//! `nvmlDeviceGetGpuInstances`, `nvmlGpuInstanceGetInfo`,
//! `nvmlDeviceGetGpuInstanceProfileInfo` and its versioned `…InfoV`.
//!
//! Two traps of the real API are kept, so code tested here works on a card:
//! - the profile-info calls take a profile *index*
//!   (`NVML_GPU_INSTANCE_PROFILE_3_SLICE` = 2), not the profile *id* (9)
//!   that `nvmlGpuInstanceGetInfo` reports; enumerate the indices and match
//!   `info.id`. Index 9 (`…_1_SLICE_REV2`) is profile id 15.
//! - `…InfoV` needs `info.version` set to `sizeof(struct) | (2 << 24)` (or 3
//!   for the v3 layout); anything else is `NVML_ERROR_INVALID_ARGUMENT`.
//!
//! All of them are `NVML_ERROR_NOT_SUPPORTED` while MIG is not active.

use crate::handles;
use crate::{ffi, fill_chars, out, ret, state, sys, Ret};
use migward::topology::{Gpu, Profile};
use std::os::raw::c_uint;

/// `NVML_GPU_INSTANCE_PROFILE_*` index → profile id, for the profiles the
/// simulated models have (DESIGN.md, "Profiles"). Other indices up to
/// [`LAST_PROFILE_INDEX`] exist on some GPU but not these: `NOT_SUPPORTED`.
const PROFILE_IDS: [(c_uint, c_uint); 7] = [
    (sys::NVML_GPU_INSTANCE_PROFILE_1_SLICE, 19),
    (sys::NVML_GPU_INSTANCE_PROFILE_2_SLICE, 14),
    (sys::NVML_GPU_INSTANCE_PROFILE_3_SLICE, 9),
    (sys::NVML_GPU_INSTANCE_PROFILE_4_SLICE, 5),
    (sys::NVML_GPU_INSTANCE_PROFILE_7_SLICE, 0),
    (sys::NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV1, 20),
    (sys::NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV2, 15),
];

/// The last index R550..R580 drivers recognise (`…_2_SLICE_ALL_ME` + 1,
/// newer than nvml-wrapper-sys's header); past it is `INVALID_ARGUMENT`,
/// where tools that enumerate "until INVALID_ARGUMENT" stop.
const LAST_PROFILE_INDEX: c_uint = 0x11;

const INFO_V2: c_uint =
    std::mem::size_of::<sys::nvmlGpuInstanceProfileInfo_v2_t>() as c_uint | (2 << 24);
const INFO_V3: c_uint =
    std::mem::size_of::<sys::nvmlGpuInstanceProfileInfo_v3_t>() as c_uint | (3 << 24);

/// A GPU with MIG active, or `NOT_SUPPORTED`.
fn mig_active(gpu: &Gpu) -> Result<&Gpu, Ret> {
    if gpu.mig.current {
        Ok(gpu)
    } else {
        Err(ret::NOT_SUPPORTED)
    }
}

/// The profile at an `NVML_GPU_INSTANCE_PROFILE_*` index of this GPU.
fn profile_at(gpu: &Gpu, index: c_uint) -> Result<&'static Profile, Ret> {
    if index > LAST_PROFILE_INDEX {
        return Err(ret::INVALID_ARGUMENT);
    }
    mig_active(gpu)?;
    let id = PROFILE_IDS
        .iter()
        .find(|(i, _)| *i == index)
        .map(|(_, id)| *id)
        .ok_or(ret::NOT_SUPPORTED)?;
    gpu.model.profile_by_id(id).ok_or(ret::NOT_SUPPORTED)
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetGpuInstanceById(
    device: sys::nvmlDevice_t,
    id: c_uint,
    gpu_instance: *mut sys::nvmlGpuInstance_t,
) -> Ret {
    ffi(|| {
        let topology = state::topology()?;
        let gpu = handles::physical(&topology, device)?;
        let slot = out(gpu_instance)?;
        let gi = mig_active(gpu)?
            .instances
            .iter()
            .find(|gi| gi.gi == id)
            .ok_or(ret::NOT_FOUND)?;
        *slot = handles::gpu_instance_handle(gpu, gi);
        Ok(())
    })
}

/// The GPU instances of one profile *id*; `instances` must hold as many
/// handles as the profile's `instanceCount`, as NVML requires.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetGpuInstances(
    device: sys::nvmlDevice_t,
    profile_id: c_uint,
    instances: *mut sys::nvmlGpuInstance_t,
    count: *mut c_uint,
) -> Ret {
    ffi(|| {
        let topology = state::topology()?;
        let gpu = handles::physical(&topology, device)?;
        if instances.is_null() {
            return Err(ret::INVALID_ARGUMENT);
        }
        let count = out(count)?;
        let gpu = mig_active(gpu)?;
        let profile = gpu
            .model
            .profile_by_id(profile_id)
            .ok_or(ret::INVALID_ARGUMENT)?;
        let mut n = 0;
        for gi in gpu
            .instances
            .iter()
            .filter(|gi| gi.profile.id == profile.id)
        {
            // SAFETY: NVML's contract: room for `profile.max_count` handles,
            // and validation keeps a profile's instances within that.
            *instances.add(n) = handles::gpu_instance_handle(gpu, gi);
            n += 1;
        }
        *count = n as c_uint;
        Ok(())
    })
}

/// Parent GPU handle, GI id, profile id and placement (start and size in
/// memory slices).
#[no_mangle]
pub unsafe extern "C" fn nvmlGpuInstanceGetInfo(
    gpu_instance: sys::nvmlGpuInstance_t,
    info: *mut sys::nvmlGpuInstanceInfo_t,
) -> Ret {
    ffi(|| {
        let topology = state::topology()?;
        let (gpu, gi) = handles::gpu_instance(&topology, gpu_instance)?;
        *out(info)? = sys::nvmlGpuInstanceInfo_t {
            device: handles::gpu_handle(gpu),
            id: gi.gi,
            profileId: gi.profile.id,
            placement: sys::nvmlGpuInstancePlacement_t {
                start: gi.start,
                size: gi.profile.memory_slices,
            },
        };
        Ok(())
    })
}

/// A compute instance of a GPU instance by its CI id; `NOT_FOUND` when the
/// GPU instance has no such compute instance.
#[no_mangle]
pub unsafe extern "C" fn nvmlGpuInstanceGetComputeInstanceById(
    gpu_instance: sys::nvmlGpuInstance_t,
    id: c_uint,
    compute_instance: *mut sys::nvmlComputeInstance_t,
) -> Ret {
    ffi(|| {
        let topology = state::topology()?;
        let (gpu, gi) = handles::gpu_instance(&topology, gpu_instance)?;
        let slot = out(compute_instance)?;
        let ci = gi
            .compute_instances
            .iter()
            .find(|ci| ci.ci == id)
            .ok_or(ret::NOT_FOUND)?;
        *slot = handles::compute_instance_handle(gpu, gi, ci);
        Ok(())
    })
}

/// `NVML_COMPUTE_INSTANCE_PROFILE_*` id of a compute instance of `slices`
/// compute slices (1, 2, 3, 4, 7, 8 and 6 slices are ids 0 to 6).
fn compute_profile_id(slices: u32) -> Option<c_uint> {
    [1, 2, 3, 4, 7, 8, 6]
        .iter()
        .position(|s| *s == slices)
        .map(|i| i as c_uint)
}

/// Parent GPU, GPU instance, CI id, CI profile id and placement (start and
/// size in compute slices, compute instances packed in id order).
#[no_mangle]
pub unsafe extern "C" fn nvmlComputeInstanceGetInfo_v2(
    compute_instance: sys::nvmlComputeInstance_t,
    info: *mut sys::nvmlComputeInstanceInfo_t,
) -> Ret {
    ffi(|| {
        let topology = state::topology()?;
        let mig = handles::compute_instance(&topology, compute_instance)?;
        let start = mig
            .gi
            .compute_instances
            .iter()
            .take_while(|ci| ci.ci != mig.ci.ci)
            .map(|ci| ci.compute_slices)
            .sum();
        *out(info)? = sys::nvmlComputeInstanceInfo_t {
            device: handles::gpu_handle(mig.gpu),
            gpuInstance: handles::gpu_instance_handle(mig.gpu, mig.gi),
            id: mig.ci.ci,
            profileId: compute_profile_id(mig.ci.compute_slices).ok_or(ret::UNKNOWN)?,
            placement: sys::nvmlComputeInstancePlacement_t {
                start,
                size: mig.ci.compute_slices,
            },
        };
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetGpuInstanceProfileInfo(
    device: sys::nvmlDevice_t,
    profile: c_uint,
    info: *mut sys::nvmlGpuInstanceProfileInfo_t,
) -> Ret {
    ffi(|| {
        let topology = state::topology()?;
        let gpu = handles::physical(&topology, device)?;
        let info = out(info)?;
        let p = profile_at(gpu, profile)?;
        *info = sys::nvmlGpuInstanceProfileInfo_t {
            id: p.id,
            isP2pSupported: 0,
            sliceCount: p.compute_slices,
            instanceCount: p.max_count,
            multiprocessorCount: p.multiprocessors,
            copyEngineCount: p.compute_slices,
            decoderCount: 0,
            encoderCount: 0,
            jpegCount: 0,
            ofaCount: 0,
            memorySizeMB: p.memory_mb,
        };
        Ok(())
    })
}

/// As the unversioned call, plus the profile name (`3g.40gb`; real drivers
/// may prefix it with `MIG `). Fills the v2 or v3 layout per `info.version`.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetGpuInstanceProfileInfoV(
    device: sys::nvmlDevice_t,
    profile: c_uint,
    info: *mut sys::nvmlGpuInstanceProfileInfo_v2_t,
) -> Ret {
    ffi(|| {
        let topology = state::topology()?;
        let gpu = handles::physical(&topology, device)?;
        let v2 = out(info)?;
        let version = v2.version;
        if version != INFO_V2 && version != INFO_V3 {
            return Err(ret::INVALID_ARGUMENT);
        }
        let p = profile_at(gpu, profile)?;
        if version == INFO_V2 {
            v2.id = p.id;
            v2.isP2pSupported = 0;
            v2.sliceCount = p.compute_slices;
            v2.instanceCount = p.max_count;
            v2.multiprocessorCount = p.multiprocessors;
            v2.copyEngineCount = p.compute_slices;
            (v2.decoderCount, v2.encoderCount, v2.jpegCount, v2.ofaCount) = (0, 0, 0, 0);
            v2.memorySizeMB = p.memory_mb;
            fill_chars(&mut v2.name, p.name);
        } else {
            // SAFETY: the caller declared the v3 layout, which has the same size.
            let v3 = &mut *info.cast::<sys::nvmlGpuInstanceProfileInfo_v3_t>();
            v3.id = p.id;
            v3.sliceCount = p.compute_slices;
            v3.instanceCount = p.max_count;
            v3.multiprocessorCount = p.multiprocessors;
            v3.copyEngineCount = p.compute_slices;
            (v3.decoderCount, v3.encoderCount, v3.jpegCount, v3.ofaCount) = (0, 0, 0, 0);
            v3.memorySizeMB = p.memory_mb;
            fill_chars(&mut v3.name, p.name);
            v3.capabilities = 0;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_match_the_card() {
        // Words a real driver accepts (measured: 0x02000098 / 0x03000098).
        assert_eq!((INFO_V2, INFO_V3), (0x0200_0098, 0x0300_0098));
    }
}
