//! Resolution: request ids → the GPUs and MIG devices they name.

use crate::inventory::{Gpu, MigDevice};
use crate::request::{DeviceId, Request};

/// One thing granted: a whole GPU or one MIG device on it (indices into the
/// inventory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selected {
    Whole { gpu: usize },
    Mig { gpu: usize, mig: usize },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("{origin}: {id} is not a MIG device on this host; {known}")]
    UnknownMig {
        origin: String,
        id: String,
        known: String,
    },
    #[error("{origin}: {id} is not a GPU on this host; GPUs here: {known}")]
    UnknownGpu {
        origin: String,
        id: String,
        known: String,
    },
    #[error(
        "{origin}: GPU index {index} is out of range: this host has {count} GPU(s), 0..{count}"
    )]
    GpuIndexOutOfRange {
        origin: String,
        index: u32,
        count: usize,
    },
    #[error(
        "{origin}: MIG index {gpu}:{mig} is out of range: GPU {gpu} has {count} MIG device(s)"
    )]
    MigIndexOutOfRange {
        origin: String,
        gpu: u32,
        mig: u32,
        count: usize,
    },
    #[error("{origin}: {id} asks for a MIG device on GPU {gpu} ({uuid}), but {state}")]
    MigNotActive {
        origin: String,
        id: String,
        gpu: u32,
        uuid: String,
        state: String,
    },
    #[error("{origin}: this host has no GPU (NVML lists none)")]
    NoGpus { origin: String },
}

/// Why MIG ids cannot be used on a GPU, with what to do; `None` if MIG is on.
pub fn mig_state_problem(gpu: &Gpu) -> Option<String> {
    match (gpu.mig_mode.current, gpu.mig_mode.pending) {
        (true, true) => None,
        (true, false) => Some(
            "its MIG mode is being disabled (pending until a GPU reset); request the whole GPU, or re-enable MIG with `nvidia-smi -i N -mig 1`".into(),
        ),
        (false, true) => Some(
            "its MIG mode is enabled but pending: reset the GPU (`nvidia-smi -i N -r`) or reboot, then create instances".into(),
        ),
        (false, false) => Some(
            "MIG is not enabled on it: enable it with `nvidia-smi -i N -mig 1` and create instances, or request the whole GPU".into(),
        ),
    }
    .map(|s: String| s.replace(" N ", &format!(" {} ", gpu.index)))
}

fn mig_list(gpus: &[Gpu]) -> String {
    let all: Vec<String> = gpus
        .iter()
        .flat_map(|g| {
            g.mig_devices
                .iter()
                .map(move |m| format!("{} ({} on GPU {})", m.uuid, m.profile, g.index))
        })
        .collect();
    let mut out = if all.is_empty() {
        "this host has no MIG devices".to_string()
    } else if all.len() <= 4 {
        format!("MIG devices here: {}", all.join(", "))
    } else {
        format!(
            "MIG devices here include {} and {} more (see `migward list`)",
            all[..3].join(", "),
            all.len() - 3
        )
    };
    for g in gpus {
        if let Some(problem) = mig_state_problem(g) {
            if g.mig_mode.pending || g.mig_mode.current {
                out.push_str(&format!("; GPU {}: {problem}", g.index));
            }
        }
    }
    out
}

fn gpu_list(gpus: &[Gpu]) -> String {
    let all: Vec<String> = gpus
        .iter()
        .map(|g| format!("{} {}", g.index, g.uuid))
        .collect();
    if all.is_empty() {
        "none".into()
    } else {
        all.join(", ")
    }
}

/// The MIG devices a request for a whole GPU takes: every one on it when MIG
/// is active (a MIG-mode GPU is only usable through its instances).
fn whole(gpus: &[Gpu], gpu: usize, out: &mut Vec<Selected>) {
    out.push(Selected::Whole { gpu });
    for mig in 0..gpus[gpu].mig_devices.len() {
        out.push(Selected::Mig { gpu, mig });
    }
}

fn gpu_by_index(origin: &str, gpus: &[Gpu], n: u32) -> Result<usize, ResolveError> {
    gpus.iter()
        .position(|g| g.index == n)
        .ok_or_else(|| ResolveError::GpuIndexOutOfRange {
            origin: origin.to_string(),
            index: n,
            count: gpus.len(),
        })
}

fn gpu_by_uuid(origin: &str, gpus: &[Gpu], uuid: &str) -> Result<usize, ResolveError> {
    gpus.iter()
        .position(|g| g.uuid.eq_ignore_ascii_case(uuid))
        .ok_or_else(|| ResolveError::UnknownGpu {
            origin: origin.to_string(),
            id: uuid.to_string(),
            known: gpu_list(gpus),
        })
}

fn find_mig(gpus: &[Gpu], pred: impl Fn(&Gpu, &MigDevice) -> bool) -> Option<Selected> {
    gpus.iter().enumerate().find_map(|(gi, g)| {
        g.mig_devices
            .iter()
            .position(|m| pred(g, m))
            .map(|mig| Selected::Mig { gpu: gi, mig })
    })
}

/// Resolves every id of `request`; duplicates (a MIG device named twice, or
/// inside a whole GPU also asked for) are collapsed.
pub fn resolve(request: &Request, gpus: &[Gpu]) -> Result<Vec<Selected>, ResolveError> {
    let origin = request.source.to_string();
    if gpus.is_empty() {
        return Err(ResolveError::NoGpus { origin });
    }
    let mut out = Vec::new();
    for id in &request.ids {
        match id {
            DeviceId::All => (0..gpus.len()).for_each(|g| whole(gpus, g, &mut out)),
            DeviceId::GpuIndex(n) => whole(gpus, gpu_by_index(&origin, gpus, *n)?, &mut out),
            DeviceId::GpuUuid(uuid) => whole(gpus, gpu_by_uuid(&origin, gpus, uuid)?, &mut out),
            DeviceId::MigUuid(uuid) => {
                let sel =
                    find_mig(gpus, |_, m| m.uuid.eq_ignore_ascii_case(uuid)).ok_or_else(|| {
                        ResolveError::UnknownMig {
                            origin: origin.clone(),
                            id: uuid.clone(),
                            known: mig_list(gpus),
                        }
                    })?;
                out.push(sel);
            }
            DeviceId::MigIndex(n, m) => {
                let g = gpu_by_index(&origin, gpus, *n)?;
                check_mig_active(&origin, id, &gpus[g])?;
                let count = gpus[g].mig_devices.len();
                if *m as usize >= count {
                    return Err(ResolveError::MigIndexOutOfRange {
                        origin,
                        gpu: *n,
                        mig: *m,
                        count,
                    });
                }
                out.push(Selected::Mig {
                    gpu: g,
                    mig: *m as usize,
                });
            }
            DeviceId::LegacyMig { gpu_uuid, gi, ci } => {
                let g = gpu_by_uuid(&origin, gpus, gpu_uuid)?;
                check_mig_active(&origin, id, &gpus[g])?;
                let mig = gpus[g]
                    .mig_devices
                    .iter()
                    .position(|m| m.gi == *gi && m.ci == *ci)
                    .ok_or_else(|| ResolveError::UnknownMig {
                        origin: origin.clone(),
                        id: id.to_string(),
                        known: mig_list(&gpus[g..=g]),
                    })?;
                out.push(Selected::Mig { gpu: g, mig });
            }
        }
    }
    let mut seen = Vec::new();
    out.retain(|s| {
        let new = !seen.contains(s);
        seen.push(*s);
        new
    });
    Ok(out)
}

fn check_mig_active(origin: &str, id: &DeviceId, gpu: &Gpu) -> Result<(), ResolveError> {
    match mig_state_problem(gpu) {
        Some(state) if !gpu.mig_mode.current => Err(ResolveError::MigNotActive {
            origin: origin.to_string(),
            id: id.to_string(),
            gpu: gpu.index,
            uuid: gpu.uuid.clone(),
            state,
        }),
        _ => Ok(()),
    }
}
