//! Device enumeration and identity: count, handles by index and UUID,
//! UUID, name, minor number, PCI info, memory.
//!
//! MIG device handles answer the identity calls NVIDIA documents for them
//! (UUID, name, memory); calls about the board (index, minor, PCI) are
//! `NVML_ERROR_NOT_SUPPORTED` on them: ask the parent GPU.

use crate::handles::{self, mig_devices, Dev, Mig};
use crate::{ffi, out, put_str, ret, state, sys, Ret};
use migward::topology::{Gpu, Model};
use std::ffi::CStr;
use std::os::raw::{c_char, c_uint};

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetCount_v2(count: *mut c_uint) -> Ret {
    ffi(|| {
        let topology = state::topology()?;
        *out(count)? = topology.gpus.len() as c_uint;
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetCount(count: *mut c_uint) -> Ret {
    nvmlDeviceGetCount_v2(count)
}

/// Physical GPUs only, in topology order, as NVML enumerates them.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetHandleByIndex_v2(
    index: c_uint,
    device: *mut sys::nvmlDevice_t,
) -> Ret {
    ffi(|| {
        let topology = state::topology()?;
        let gpu = topology
            .gpus
            .get(index as usize)
            .ok_or(ret::INVALID_ARGUMENT)?;
        *out(device)? = handles::gpu_handle(gpu);
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetHandleByIndex(
    index: c_uint,
    device: *mut sys::nvmlDevice_t,
) -> Ret {
    nvmlDeviceGetHandleByIndex_v2(index, device)
}

/// A `GPU-…` or `MIG-…` UUID, any case; also the legacy
/// `MIG-GPU-<uuid>/<gi>/<ci>` form of a MIG device.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetHandleByUUID(
    uuid: *const c_char,
    device: *mut sys::nvmlDevice_t,
) -> Ret {
    ffi(|| {
        let topology = state::topology()?;
        if uuid.is_null() {
            return Err(ret::INVALID_ARGUMENT);
        }
        let wanted = CStr::from_ptr(uuid)
            .to_str()
            .map_err(|_| ret::INVALID_ARGUMENT)?;
        let handle = topology
            .gpus
            .iter()
            .find_map(|gpu| find_uuid(gpu, wanted))
            .ok_or(ret::NOT_FOUND)?;
        *out(device)? = handle;
        Ok(())
    })
}

fn find_uuid(gpu: &Gpu, wanted: &str) -> Option<sys::nvmlDevice_t> {
    if gpu.uuid.eq_ignore_ascii_case(wanted) {
        return Some(handles::gpu_handle(gpu));
    }
    let legacy = |m: &Mig| {
        let name = format!("MIG-{}/{}/{}", gpu.uuid, m.gi.gi, m.ci.ci);
        name.eq_ignore_ascii_case(wanted)
    };
    mig_devices(gpu)
        .position(|m| m.ci.uuid.eq_ignore_ascii_case(wanted) || legacy(&m))
        .map(|n| handles::mig_handle(gpu, n))
}

/// A GPU's NVML index; a MIG device's index on its parent (as
/// `nvmlDeviceGetMigDeviceHandleByIndex` numbers it), which NVIDIA's CDI
/// generator uses for the `<gpu>:<mig>` device names.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetIndex(device: sys::nvmlDevice_t, index: *mut c_uint) -> Ret {
    ffi(|| {
        let topology = state::topology()?;
        *out(index)? = match handles::device(&topology, device)? {
            Dev::Gpu(gpu) => gpu.index,
            Dev::Mig(m) => mig_devices(m.gpu)
                .position(|o| o.gi.gi == m.gi.gi && o.ci.ci == m.ci.ci)
                .ok_or(ret::UNKNOWN)? as c_uint,
        };
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetUUID(
    device: sys::nvmlDevice_t,
    uuid: *mut c_char,
    length: c_uint,
) -> Ret {
    ffi(|| {
        let topology = state::topology()?;
        let text = match handles::device(&topology, device)? {
            Dev::Gpu(gpu) => &gpu.uuid,
            Dev::Mig(mig) => &mig.ci.uuid,
        };
        put_str(uuid, length, text)
    })
}

/// A GPU's board name; a MIG device's is `<board> MIG <profile>`, with the
/// compute-instance size in front (`MIG 1c.3g.40gb`) when the compute
/// instance is smaller than its GPU instance, as the driver names it.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetName(
    device: sys::nvmlDevice_t,
    name: *mut c_char,
    length: c_uint,
) -> Ret {
    ffi(|| {
        let topology = state::topology()?;
        put_str(
            name,
            length,
            &device_name(handles::device(&topology, device)?),
        )
    })
}

fn device_name(dev: Dev) -> String {
    match dev {
        Dev::Gpu(gpu) => gpu.model.product_name().to_string(),
        Dev::Mig(Mig { gpu, gi, ci }) => {
            let board = gpu.model.product_name();
            let profile = gi.profile;
            if ci.compute_slices < profile.compute_slices {
                format!("{board} MIG {}c.{}", ci.compute_slices, profile.name)
            } else {
                format!("{board} MIG {}", profile.name)
            }
        }
    }
}

/// The `N` of `/dev/nvidiaN`; not the NVML index.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMinorNumber(
    device: sys::nvmlDevice_t,
    minor: *mut c_uint,
) -> Ret {
    ffi(|| {
        let topology = state::topology()?;
        let Dev::Gpu(gpu) = handles::device(&topology, device)? else {
            return Err(ret::NOT_SUPPORTED);
        };
        *out(minor)? = gpu.minor;
        Ok(())
    })
}

/// Persistence mode (1 = enabled), as the topology says (default on).
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetPersistenceMode(
    device: sys::nvmlDevice_t,
    mode: *mut sys::nvmlEnableState_t,
) -> Ret {
    ffi(|| {
        let topology = state::topology()?;
        let Dev::Gpu(gpu) = handles::device(&topology, device)? else {
            return Err(ret::NOT_SUPPORTED);
        };
        *out(mode)? = if gpu.persistence {
            sys::nvmlEnableState_enum_NVML_FEATURE_ENABLED
        } else {
            sys::nvmlEnableState_enum_NVML_FEATURE_DISABLED
        };
        Ok(())
    })
}

/// `busId` is NVML's `%08X:%02X:%02X.0` (`00000000:07:00.0`), `busIdLegacy`
/// the 4-digit-domain form; `/proc/driver/nvidia/gpus/` names the directory
/// in lowercase with a 4-digit domain (`0000:07:00.0`), so callers must
/// normalise, as they must on a real host.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetPciInfo_v3(
    device: sys::nvmlDevice_t,
    pci: *mut sys::nvmlPciInfo_t,
) -> Ret {
    ffi(|| {
        let topology = state::topology()?;
        let Dev::Gpu(gpu) = handles::device(&topology, device)? else {
            return Err(ret::NOT_SUPPORTED);
        };
        let (domain, bus, dev) = parse_bus_id(&gpu.bus_id()).ok_or(ret::UNKNOWN)?;
        let (device_id, subsystem_id) = pci_ids(gpu.model);
        let pci = out(pci)?;
        pci.domain = domain;
        pci.bus = bus;
        pci.device = dev;
        pci.pciDeviceId = (device_id << 16) | 0x10de;
        pci.pciSubSystemId = (subsystem_id << 16) | 0x10de;
        crate::fill_chars(
            &mut pci.busId,
            &format!("{domain:08X}:{bus:02X}:{dev:02X}.0"),
        );
        crate::fill_chars(
            &mut pci.busIdLegacy,
            &format!("{domain:04X}:{bus:02X}:{dev:02X}.0"),
        );
        Ok(())
    })
}

/// `dddd:bb:dd.f` → (domain, bus, device).
fn parse_bus_id(bus_id: &str) -> Option<(u32, u32, u32)> {
    let mut parts = bus_id.split(':');
    let domain = u32::from_str_radix(parts.next()?, 16).ok()?;
    let bus = u32::from_str_radix(parts.next()?, 16).ok()?;
    let dev = u32::from_str_radix(parts.next()?.split('.').next()?, 16).ok()?;
    Some((domain, bus, dev))
}

/// PCI device and subsystem ids of the SXM boards simulated.
fn pci_ids(model: Model) -> (u32, u32) {
    match model {
        Model::A100_40GB => (0x20b0, 0x134f),
        Model::A100_80GB => (0x20b2, 0x1463),
        Model::H100_80GB => (0x2330, 0x16c1),
        Model::A40 => (0x2235, 0x145a),
    }
}

/// Nothing is ever in use.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo(
    device: sys::nvmlDevice_t,
    memory: *mut sys::nvmlMemory_t,
) -> Ret {
    ffi(|| {
        let topology = state::topology()?;
        let bytes = memory_bytes(handles::device(&topology, device)?);
        *out(memory)? = sys::nvmlMemory_t {
            total: bytes,
            free: bytes,
            used: 0,
        };
        Ok(())
    })
}

/// As `nvmlDeviceGetMemoryInfo` (nvml-wrapper's `memory_info()` calls this
/// one); `memory.version` must be `sizeof(nvmlMemory_v2_t) | (2 << 24)`.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo_v2(
    device: sys::nvmlDevice_t,
    memory: *mut sys::nvmlMemory_v2_t,
) -> Ret {
    const VERSION: c_uint = std::mem::size_of::<sys::nvmlMemory_v2_t>() as c_uint | (2 << 24);
    ffi(|| {
        let topology = state::topology()?;
        let bytes = memory_bytes(handles::device(&topology, device)?);
        let memory = out(memory)?;
        if memory.version != VERSION {
            return Err(ret::INVALID_ARGUMENT);
        }
        (memory.total, memory.reserved, memory.free, memory.used) = (bytes, 0, bytes, 0);
        Ok(())
    })
}

/// The whole board's memory, or a MIG device's share.
fn memory_bytes(dev: Dev) -> u64 {
    let mb = match dev {
        Dev::Gpu(gpu) => gpu.model.memory_mb(),
        Dev::Mig(mig) => mig.gi.profile.memory_mb,
    };
    mb << 20
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_ids_parse() {
        assert_eq!(parse_bus_id("0000:07:00.0"), Some((0, 7, 0)));
        assert_eq!(parse_bus_id("0000:1f:00.0"), Some((0, 0x1f, 0)));
        assert_eq!(parse_bus_id("junk"), None);
    }
}
