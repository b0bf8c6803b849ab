//! The real inventory, over nvml-wrapper.
//!
//! nvml-wrapper has no safe call for GI/CI ids or a GI's placement, so those
//! go through `nvml.lib()` (DESIGN.md, "Testing without a GPU").

use super::{
    ci_profile_name, Gpu, GpuHealth, Health, Inventory, InventoryError, MigDevice, MigMode,
    Placement,
};
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};
use nvml_wrapper_sys::bindings::{
    nvmlDevice_t, nvmlGpuInstanceInfo_t, nvmlGpuInstanceProfileInfo_v2_t, nvmlGpuInstance_t,
    nvmlReturn_enum_NVML_SUCCESS, NVML_GPU_INSTANCE_PROFILE_COUNT,
};
use std::ffi::CStr;
use std::path::PathBuf;

/// NVML loaded from a configurable library path.
pub struct NvmlInventory {
    library: PathBuf,
}

impl NvmlInventory {
    pub fn new(library: impl Into<PathBuf>) -> Self {
        NvmlInventory {
            library: library.into(),
        }
    }

    fn open(&self) -> Result<Nvml, InventoryError> {
        Nvml::builder()
            .lib_path(self.library.as_os_str())
            .init()
            .map_err(|e| InventoryError::Load {
                library: self.library.clone(),
                reason: match e {
                    NvmlError::LibloadingError(inner) => inner.to_string(),
                    NvmlError::DriverNotLoaded => "the NVIDIA driver is not loaded".into(),
                    other => other.to_string(),
                },
            })
    }
}

fn call<T>(
    name: &'static str,
    device: Option<&str>,
    r: Result<T, NvmlError>,
) -> Result<T, InventoryError> {
    r.map_err(|e| InventoryError::Call {
        call: name,
        device: device.map(str::to_string),
        reason: e.to_string(),
    })
}

fn symbol<'a, F>(
    name: &'static str,
    device: &str,
    r: Result<&'a F, &libloading::Error>,
) -> Result<&'a F, InventoryError> {
    r.map_err(|e| InventoryError::Call {
        call: name,
        device: Some(device.to_string()),
        reason: format!("symbol missing from the library: {e}"),
    })
}

fn raw(name: &'static str, device: &str, ret: u32) -> Result<(), InventoryError> {
    if ret == nvmlReturn_enum_NVML_SUCCESS {
        Ok(())
    } else {
        Err(InventoryError::Call {
            call: name,
            device: Some(device.to_string()),
            reason: format!("NVML error {ret}"),
        })
    }
}

/// Every physical GPU's handle, with its NVML index.
fn devices(nvml: &Nvml) -> Result<Vec<(u32, Device<'_>)>, InventoryError> {
    let count = call("nvmlDeviceGetCount", None, nvml.device_count())?;
    (0..count)
        .map(|index| {
            let dev = call(
                "nvmlDeviceGetHandleByIndex",
                None,
                nvml.device_by_index(index),
            )?;
            Ok((index, dev))
        })
        .collect()
}

impl Inventory for NvmlInventory {
    fn gpus(&self) -> Result<Vec<Gpu>, InventoryError> {
        let nvml = self.open()?;
        devices(&nvml)?
            .iter()
            .map(|(index, dev)| read_gpu(&nvml, *index, dev))
            .collect()
    }

    fn health(&self) -> Result<Health, InventoryError> {
        let nvml = self.open()?;
        let driver_version = call(
            "nvmlSystemGetDriverVersion",
            None,
            nvml.sys_driver_version(),
        )?;
        let mut gpus = Vec::new();
        for (index, dev) in devices(&nvml)? {
            let mig_supported = !matches!(dev.mig_mode(), Err(NvmlError::NotSupported));
            gpus.push(GpuHealth {
                index,
                mig_supported,
                persistence: dev.is_in_persistent_mode().ok(),
            });
        }
        Ok(Health {
            driver_version,
            gpus,
        })
    }
}

fn read_gpu(nvml: &Nvml, index: u32, dev: &Device) -> Result<Gpu, InventoryError> {
    let label = format!("GPU {index}");
    let uuid = call("nvmlDeviceGetUUID", Some(&label), dev.uuid())?;
    let name = call("nvmlDeviceGetName", Some(&uuid), dev.name())?;
    let minor = call("nvmlDeviceGetMinorNumber", Some(&uuid), dev.minor_number())?;
    let mig_mode = match dev.mig_mode() {
        Ok(m) => MigMode {
            current: m.current == 1,
            pending: m.pending == 1,
        },
        // GPUs without MIG support answer NotSupported: MIG is simply off.
        Err(NvmlError::NotSupported) => MigMode {
            current: false,
            pending: false,
        },
        Err(e) => return call("nvmlDeviceGetMigMode", Some(&uuid), Err(e)),
    };
    let mut mig_devices = Vec::new();
    if mig_mode.current {
        let max = call(
            "nvmlDeviceGetMaxMigDeviceCount",
            Some(&uuid),
            dev.mig_device_count(),
        )?;
        for slot in 0..max {
            let mig = match dev.mig_device_by_index(slot) {
                Ok(mig) => mig,
                // Slots are sparse: an empty one answers NotFound.
                Err(NvmlError::NotFound) | Err(NvmlError::InvalidArg) => continue,
                Err(e) => return call("nvmlDeviceGetMigDeviceHandleByIndex", Some(&uuid), Err(e)),
            };
            mig_devices.push(read_mig(nvml, dev, &mig, &uuid, slot)?);
        }
    }
    mig_devices.sort_by_key(|m| (m.gi, m.ci));
    Ok(Gpu {
        index,
        minor,
        uuid,
        name,
        mig_mode,
        mig_devices,
    })
}

fn read_mig(
    nvml: &Nvml,
    parent: &Device,
    mig: &Device,
    parent_uuid: &str,
    slot: u32,
) -> Result<MigDevice, InventoryError> {
    let uuid = call("nvmlDeviceGetUUID", Some(parent_uuid), mig.uuid())?;
    let lib = nvml.lib();
    // SAFETY: handles come from nvml-wrapper and stay valid while `nvml`
    // lives; every out-parameter is a plain C struct owned here.
    unsafe {
        let handle: nvmlDevice_t = mig.handle();
        let parent_handle: nvmlDevice_t = parent.handle();
        let (mut gi, mut ci) = (0u32, 0u32);
        let f = symbol(
            "nvmlDeviceGetGpuInstanceId",
            &uuid,
            lib.nvmlDeviceGetGpuInstanceId.as_ref(),
        )?;
        raw("nvmlDeviceGetGpuInstanceId", &uuid, f(handle, &mut gi))?;
        let f = symbol(
            "nvmlDeviceGetComputeInstanceId",
            &uuid,
            lib.nvmlDeviceGetComputeInstanceId.as_ref(),
        )?;
        raw("nvmlDeviceGetComputeInstanceId", &uuid, f(handle, &mut ci))?;

        let mut gi_handle: nvmlGpuInstance_t = std::ptr::null_mut();
        let f = symbol(
            "nvmlDeviceGetGpuInstanceById",
            &uuid,
            lib.nvmlDeviceGetGpuInstanceById.as_ref(),
        )?;
        raw(
            "nvmlDeviceGetGpuInstanceById",
            &uuid,
            f(parent_handle, gi, &mut gi_handle),
        )?;
        let mut info: nvmlGpuInstanceInfo_t = std::mem::zeroed();
        let f = symbol(
            "nvmlGpuInstanceGetInfo",
            &uuid,
            lib.nvmlGpuInstanceGetInfo.as_ref(),
        )?;
        raw("nvmlGpuInstanceGetInfo", &uuid, f(gi_handle, &mut info))?;

        // GetGpuInstanceProfileInfoV takes a profile *index*
        // (NVML_GPU_INSTANCE_PROFILE_*), not the id GpuInstanceGetInfo
        // reports: walk the indices for the one whose id matches.
        let f = symbol(
            "nvmlDeviceGetGpuInstanceProfileInfoV",
            &uuid,
            lib.nvmlDeviceGetGpuInstanceProfileInfoV.as_ref(),
        )?;
        let mut found = None;
        for index in 0..NVML_GPU_INSTANCE_PROFILE_COUNT {
            let mut prof: nvmlGpuInstanceProfileInfo_v2_t = std::mem::zeroed();
            // NVML's versioned-struct convention: size | version << 24.
            prof.version =
                std::mem::size_of::<nvmlGpuInstanceProfileInfo_v2_t>() as u32 | (2 << 24);
            if f(parent_handle, index, &mut prof) == nvmlReturn_enum_NVML_SUCCESS
                && prof.id == info.profileId
            {
                found = Some(prof);
                break;
            }
        }
        let prof = found.ok_or_else(|| InventoryError::Call {
            call: "nvmlDeviceGetGpuInstanceProfileInfoV",
            device: Some(uuid.clone()),
            reason: format!("no profile has id {}", info.profileId),
        })?;
        let gi_name = CStr::from_ptr(prof.name.as_ptr()).to_string_lossy();
        let gi_name = gi_name.trim_start_matches("MIG ").to_string();

        let attrs = call("nvmlDeviceGetAttributes", Some(&uuid), mig.attributes())?;
        Ok(MigDevice {
            index: slot,
            profile: ci_profile_name(
                &gi_name,
                prof.sliceCount,
                attrs.compute_instance_slice_count,
            ),
            uuid: uuid.clone(),
            gi,
            ci,
            placement: Placement {
                start: info.placement.start,
                size: info.placement.size,
            },
            multiprocessors: attrs.multiprocessor_count,
            memory_mb: attrs.memory_size_mb,
        })
    }
}
