//! Which GPUs and MIG devices exist, as plain data.
//!
//! The [`Inventory`] trait is the only place NVML is reached, so everything
//! after it (planning, leases) is testable with [`TopologyInventory`]. NVML
//! answers only what the driver alone knows: UUIDs, GI/CI ids, profiles,
//! placements and MIG mode. Device majors and cap minors come from the host
//! files ([`procfs`]).

mod nvml;
pub mod procfs;

pub use nvml::NvmlInventory;

use crate::topology::Topology;
use serde::Serialize;
use std::path::PathBuf;

/// MIG mode as NVML reports it: `pending` differs from `current` until the
/// GPU is reset (nvidia-smi shows `Enabled*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MigMode {
    pub current: bool,
    pub pending: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Placement {
    pub start: u32,
    pub size: u32,
}

/// One physical GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gpu {
    pub index: u32,
    /// Device minor: `/dev/nvidia<minor>`; not the NVML index.
    pub minor: u32,
    pub uuid: String,
    pub name: String,
    pub mig_mode: MigMode,
    pub mig_devices: Vec<MigDevice>,
}

/// One MIG device: a compute instance inside a GPU instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigDevice {
    /// The NVML slot (`nvmlDeviceGetMigDeviceHandleByIndex`): the `M` of a
    /// Kubernetes device plugin's `N:M` index id.
    pub index: u32,
    pub uuid: String,
    /// `3g.40gb`, or `1c.3g.40gb` for a CI smaller than its GI.
    pub profile: String,
    pub gi: u32,
    pub ci: u32,
    pub placement: Placement,
    pub multiprocessors: u32,
    pub memory_mb: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("cannot load the NVML library {library}: {reason}; install the NVIDIA driver or set nvml_library in the config")]
    Load { library: PathBuf, reason: String },
    #[error("NVML call {call} failed{on}: {reason}", on = .device.as_ref().map(|d| format!(" on {d}")).unwrap_or_default())]
    Call {
        call: &'static str,
        device: Option<String>,
        reason: String,
    },
}

/// What `migward doctor` asks the driver beyond the inventory (never asked
/// on a container start).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    pub driver_version: String,
    pub gpus: Vec<GpuHealth>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GpuHealth {
    pub index: u32,
    /// False on boards without MIG (A40, V100): NVML answers NotSupported.
    pub mig_supported: bool,
    /// Persistence mode; `None` where NVML cannot say.
    pub persistence: Option<bool>,
}

/// Answers "which GPUs and MIG devices exist".
pub trait Inventory {
    fn gpus(&self) -> Result<Vec<Gpu>, InventoryError>;
    fn health(&self) -> Result<Health, InventoryError>;
}

/// An inventory served straight from a topology: the test double of NVML for
/// unit tests (end-to-end tests go through the fake NVML library instead).
pub struct TopologyInventory(pub Topology);

impl Inventory for TopologyInventory {
    fn gpus(&self) -> Result<Vec<Gpu>, InventoryError> {
        Ok(self.0.gpus.iter().map(gpu_of_topology).collect())
    }

    fn health(&self) -> Result<Health, InventoryError> {
        let gpus = self.0.gpus.iter().map(|g| GpuHealth {
            index: g.index,
            mig_supported: g.model.supports_mig(),
            persistence: Some(g.persistence),
        });
        Ok(Health {
            driver_version: crate::simulate::DRIVER_VERSION.into(),
            gpus: gpus.collect(),
        })
    }
}

/// The profile name of a compute instance of `ci_slices` inside a GI of
/// `gi_profile`: the GI's name when it spans the GI, else `<n>c.<gi name>`.
pub fn ci_profile_name(gi_profile: &str, gi_slices: u32, ci_slices: u32) -> String {
    if ci_slices >= gi_slices {
        gi_profile.to_string()
    } else {
        format!("{ci_slices}c.{gi_profile}")
    }
}

fn gpu_of_topology(gpu: &crate::topology::Gpu) -> Gpu {
    // NVML numbers MIG devices in topology order (see the fake NVML); the
    // list is then sorted by GI and CI, as the NVML inventory does.
    let mut mig_devices: Vec<MigDevice> = gpu
        .instances
        .iter()
        .flat_map(|gi| gi.compute_instances.iter().map(move |ci| (gi, ci)))
        .enumerate()
        .map(|(slot, (gi, ci))| MigDevice {
            index: slot as u32,
            uuid: ci.uuid.clone(),
            profile: ci_profile_name(
                gi.profile.name,
                gi.profile.compute_slices,
                ci.compute_slices,
            ),
            gi: gi.gi,
            ci: ci.ci,
            placement: Placement {
                start: gi.start,
                size: gi.profile.memory_slices,
            },
            multiprocessors: gi.profile.multiprocessors * ci.compute_slices
                / gi.profile.compute_slices,
            memory_mb: gi.profile.memory_mb,
        })
        .collect();
    mig_devices.sort_by_key(|m| (m.gi, m.ci));
    Gpu {
        index: gpu.index,
        minor: gpu.minor,
        uuid: gpu.uuid.clone(),
        name: gpu.model.product_name().to_string(),
        mig_mode: MigMode {
            current: gpu.mig.current,
            pending: gpu.mig.pending,
        },
        mig_devices,
    }
}
