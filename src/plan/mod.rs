//! The plan: request + inventory + host files → the device nodes, cgroup
//! allow rules and env a container gets. Pure apart from reading host files
//! through [`HostFiles`]; the same inputs give the same plan.
//!
//! A MIG device brings its parent `/dev/nvidia<minor>`, its GI and CI cap
//! nodes, `nvidiactl`, `nvidia-uvm` and `nvidia-uvm-tools`; a whole GPU its
//! own node, the caps of every MIG device on it, and the shared nodes.
//! Every node needs both a `linux.devices` entry and an allow rule
//! (DESIGN.md): the plan always carries both.

pub mod nodes;
mod resolve;

pub use resolve::{mig_state_problem, resolve, Pick, Resolution, ResolveError, Selected};

use crate::inventory::procfs::{HostError, HostFiles};
use crate::inventory::Gpu;
use crate::request::{DeviceId, Request, Source};
use serde::Serialize;

/// Minor of `/dev/nvidiactl`.
pub const NVIDIACTL_MINOR: u32 = 255;

/// One device node to create in the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceNode {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub major: u32,
    pub minor: u32,
    /// Permission bits, e.g. 0o666.
    pub mode: u32,
}

/// One `linux.resources.devices` allow rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AllowRule {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub major: u32,
    pub minor: u32,
    pub access: &'static str,
}

/// What a container holds, for the lease store and for display.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grant {
    pub gpu_index: u32,
    pub gpu_uuid: String,
    /// `None` for a whole GPU.
    pub mig: Option<MigGrant>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigGrant {
    pub uuid: String,
    pub profile: String,
    pub gi: u32,
    pub ci: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub devices: Vec<DeviceNode>,
    pub rules: Vec<AllowRule>,
    /// Environment variables to set, in order.
    pub env: Vec<(String, String)>,
    pub grants: Vec<Grant>,
    /// Things worth telling the user that do not stop the container.
    pub warnings: Vec<String>,
}

impl Plan {
    /// What `NVIDIA_VISIBLE_DEVICES` is set to: the granted UUIDs.
    pub fn visible(&self) -> String {
        self.env
            .iter()
            .find(|(k, _)| k == "NVIDIA_VISIBLE_DEVICES")
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    Inventory(#[from] crate::inventory::InventoryError),
    #[error(transparent)]
    Nodes(#[from] nodes::NodeError),
}

/// The GPU host a plan is made on: its GPUs (from NVML) and its files.
pub struct Host {
    pub gpus: Vec<Gpu>,
    pub files: HostFiles,
}

impl Host {
    /// The host `config` describes: NVML at `config.nvml_library`, host
    /// files under `config.host_root`.
    pub fn load(config: &crate::config::Config) -> Result<Host, PlanError> {
        use crate::inventory::{Inventory, NvmlInventory};
        Ok(Host {
            gpus: NvmlInventory::new(&config.nvml_library).gpus()?,
            files: HostFiles::new(&config.host_root),
        })
    }

    /// Resolves `request` here; device nodes are mapped back first.
    pub fn resolve(&self, request: &Request) -> Result<Resolution, PlanError> {
        let spec_nodes: Vec<_> = request
            .ids
            .iter()
            .filter_map(|id| match id {
                DeviceId::Node(n) => Some(n.clone()),
                _ => None,
            })
            .collect();
        let wants = if spec_nodes.is_empty() {
            Vec::new()
        } else {
            nodes::wants(&spec_nodes, &self.files)?
        };
        Ok(resolve(request, &self.gpus, &wants)?)
    }

    /// The plan for what was selected (fixed devices and picked instances).
    pub fn plan(&self, request: &Request, selected: &[Selected]) -> Result<Plan, PlanError> {
        build(request, selected, &self.gpus, &self.files)
    }

    /// What a selected device holds, for the lease store.
    pub fn grant_of(&self, sel: Selected) -> Grant {
        grant_of(&self.gpus, sel)
    }
}

/// What a selected device holds.
pub fn grant_of(gpus: &[Gpu], sel: Selected) -> Grant {
    let (g, mig) = match sel {
        Selected::Whole { gpu } => (gpu, None),
        Selected::Mig { gpu, mig } => (gpu, Some(mig)),
    };
    let gpu = &gpus[g];
    Grant {
        gpu_index: gpu.index,
        gpu_uuid: gpu.uuid.clone(),
        mig: mig.map(|m| {
            let dev = &gpu.mig_devices[m];
            MigGrant {
                uuid: dev.uuid.clone(),
                profile: dev.profile.clone(),
                gi: dev.gi,
                ci: dev.ci,
            }
        }),
    }
}

fn node(path: String, major: u32, minor: u32, mode: u32) -> DeviceNode {
    DeviceNode {
        path,
        kind: "c",
        major,
        minor,
        mode,
    }
}

/// Builds the plan for `request` over `gpus` without a lease store: each
/// profile gets its first candidate not already taken by this request.
pub fn plan(request: &Request, gpus: &[Gpu], host: &HostFiles) -> Result<Plan, PlanError> {
    let h = Host {
        gpus: gpus.to_vec(),
        files: host.clone(),
    };
    let Resolution { mut fixed, picks } = h.resolve(request)?;
    for p in picks {
        if let Some(c) = p.candidates.iter().find(|c| !fixed.contains(c)) {
            fixed.push(*c);
        }
    }
    build(request, &fixed, gpus, host)
}

/// Builds the plan for `selected` over `gpus`, reading majors and cap
/// minors from `host`.
pub fn build(
    request: &Request,
    selected: &[Selected],
    gpus: &[Gpu],
    host: &HostFiles,
) -> Result<Plan, PlanError> {
    let needs_caps = selected.iter().any(|s| matches!(s, Selected::Mig { .. }));
    let majors = host.majors()?;
    let (uvm, caps) = host.require(majors, needs_caps)?;
    let minors = if needs_caps {
        Some(host.mig_minors()?)
    } else {
        None
    };

    let mut devices = vec![
        node(
            "/dev/nvidiactl".into(),
            majors.nvidia,
            NVIDIACTL_MINOR,
            0o666,
        ),
        node("/dev/nvidia-uvm".into(), uvm, 0, 0o666),
        node("/dev/nvidia-uvm-tools".into(), uvm, 1, 0o666),
    ];
    let mut grants = Vec::new();
    let mut visible = Vec::new();
    let whole_gpus: Vec<usize> = selected
        .iter()
        .filter_map(|s| match s {
            Selected::Whole { gpu } => Some(*gpu),
            _ => None,
        })
        .collect();
    for sel in selected {
        let (g, mig) = match *sel {
            Selected::Whole { gpu } => (gpu, None),
            Selected::Mig { gpu, mig } => (gpu, Some(mig)),
        };
        let gpu = &gpus[g];
        let parent = node(
            format!("/dev/nvidia{}", gpu.minor),
            majors.nvidia,
            gpu.minor,
            0o666,
        );
        if !devices.contains(&parent) {
            devices.push(parent);
        }
        let Some(m) = mig else {
            visible.push(gpu.uuid.clone());
            grants.push(grant_of(gpus, *sel));
            continue;
        };
        let dev = &gpu.mig_devices[m];
        let (caps, minors) = (
            caps.unwrap_or_default(),
            minors.as_ref().expect("read when a MIG device is selected"),
        );
        for ci in [None, Some(dev.ci)] {
            let minor = minors.get(gpu.minor, dev.gi, ci)?;
            let mode = host.cap_mode(gpu.minor, dev.gi, ci);
            let cap = node(
                format!("/dev/nvidia-caps/nvidia-cap{minor}"),
                caps,
                minor,
                mode,
            );
            if !devices.contains(&cap) {
                devices.push(cap);
            }
        }
        if !whole_gpus.contains(&g) {
            visible.push(dev.uuid.clone());
        }
        grants.push(grant_of(gpus, *sel));
    }
    let rules = devices
        .iter()
        .map(|d| AllowRule {
            kind: d.kind,
            major: d.major,
            minor: d.minor,
            access: "rwm",
        })
        .collect();
    let joined = visible.join(",");
    let mut env = vec![("NVIDIA_VISIBLE_DEVICES".to_string(), joined.clone())];
    if request.source == Source::Env("CUDA_VISIBLE_DEVICES") {
        // Normalise legacy and index forms to the UUIDs CUDA accepts.
        env.push(("CUDA_VISIBLE_DEVICES".to_string(), joined));
    }
    let warnings = request
        .ids
        .iter()
        .filter(|id| matches!(id, DeviceId::LegacyMig { .. }))
        .map(|id| {
            format!(
                "{}: {id} is the legacy MIG id form, which CUDA on current drivers (R470+) refuses; use the MIG-<uuid> form shown by `migward list`",
                request.source
            )
        })
        .collect();
    Ok(Plan {
        devices,
        rules,
        env,
        grants,
        warnings,
    })
}

#[cfg(test)]
mod tests;
