//! Resolution: request ids → the GPUs and MIG devices they name, and for
//! each profile asked for, the instances it could get (picked later, under
//! the lease lock: [`crate::lease::Store::acquire`]).

use super::nodes::NodeWant;
use crate::inventory::{Gpu, MigDevice};
use crate::request::{DeviceId, Request};

/// One thing granted: a whole GPU or one MIG device on it (indices into the
/// inventory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selected {
    Whole { gpu: usize },
    Mig { gpu: usize, mig: usize },
}

/// "One free instance of this profile": every MIG device of the profile, in
/// the order they are tried (GPU index, then placement start, GI, CI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pick {
    pub profile: String,
    pub candidates: Vec<Selected>,
}

/// What a request names: devices fixed by id, and profiles to pick.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resolution {
    pub fixed: Vec<Selected>,
    pub picks: Vec<Pick>,
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
    #[error("{origin}: GPU index {index} is out of range: this host has {count} GPU(s){valid}", valid = if *.count == 1 { ", index 0".to_string() } else { format!(", indices 0 to {}", .count - 1) })]
    GpuIndexOutOfRange {
        origin: String,
        index: u32,
        count: usize,
    },
    #[error(
        "{origin}: MIG index {gpu}:{mig} names no MIG device: GPU {gpu} has {count} MIG device(s); see `migward list` for the N:M of each, or use its MIG-<uuid>"
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
    #[error("{origin}: no MIG device has profile {profile} on this host; {known}")]
    UnknownProfile {
        origin: String,
        profile: String,
        known: String,
    },
    #[error("{origin}: asks for {asked} × {profile}, and this host has {count}")]
    TooManyOfProfile {
        origin: String,
        profile: String,
        asked: usize,
        count: usize,
    },
    #[error("{origin}: {path} names GPU minor {minor}, which this host does not have; GPUs here: {known}")]
    NodeGpuMissing {
        origin: String,
        path: String,
        minor: u32,
        known: String,
    },
    #[error("{origin}: {path} names MIG device gpu{gpu_minor}/gi{gi}/ci{ci}, which does not exist now (destroyed or re-created since the spec was written, as in a stale CDI spec); {known}")]
    NodeMigMissing {
        origin: String,
        path: String,
        gpu_minor: u32,
        gi: u32,
        ci: u32,
        known: String,
    },
}

/// The profiles present on a host with their counts, for refusals.
fn profile_list(gpus: &[Gpu]) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for m in gpus.iter().flat_map(|g| &g.mig_devices) {
        match counts.iter_mut().find(|(p, _)| *p == m.profile) {
            Some((_, n)) => *n += 1,
            None => counts.push((m.profile.clone(), 1)),
        }
    }
    if counts.is_empty() {
        return "this host has no MIG devices".into();
    }
    let parts: Vec<String> = counts.iter().map(|(p, n)| format!("{p} ×{n}")).collect();
    format!("profiles here: {}", parts.join(", "))
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
/// inside a whole GPU also asked for) are collapsed. `nodes` are what the
/// request's device nodes form ([`super::nodes::wants`]).
pub fn resolve(
    request: &Request,
    gpus: &[Gpu],
    nodes: &[NodeWant],
) -> Result<Resolution, ResolveError> {
    let origin = request.source.to_string();
    if gpus.is_empty() {
        return Err(ResolveError::NoGpus { origin });
    }
    let mut out = Vec::new();
    let mut picks = Vec::new();
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
                // The device plugin's `N:M`: M is the NVML slot of the MIG
                // device on GPU N, not its position in GI order.
                let g = gpu_by_index(&origin, gpus, *n)?;
                check_mig_active(&origin, id, &gpus[g])?;
                let mig = gpus[g]
                    .mig_devices
                    .iter()
                    .position(|d| d.index == *m)
                    .ok_or_else(|| ResolveError::MigIndexOutOfRange {
                        origin: origin.clone(),
                        gpu: *n,
                        mig: *m,
                        count: gpus[g].mig_devices.len(),
                    })?;
                out.push(Selected::Mig { gpu: g, mig });
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
            DeviceId::Profile(profile) => picks.push(pick(&origin, gpus, profile)?),
            // Nodes are resolved as a whole below: a GPU node and two caps
            // form one MIG device.
            DeviceId::Node(_) => {}
        }
    }
    for p in &picks {
        let asked = picks
            .iter()
            .filter(|q: &&Pick| q.profile == p.profile)
            .count();
        if asked > p.candidates.len() {
            return Err(ResolveError::TooManyOfProfile {
                origin,
                profile: p.profile.clone(),
                asked,
                count: p.candidates.len(),
            });
        }
    }
    for want in nodes {
        out.push(node_selected(&origin, gpus, want)?);
    }
    let mut seen = Vec::new();
    out.retain(|s| {
        let new = !seen.contains(s);
        seen.push(*s);
        new
    });
    Ok(Resolution { fixed: out, picks })
}

fn pick(origin: &str, gpus: &[Gpu], profile: &str) -> Result<Pick, ResolveError> {
    let mut candidates: Vec<(u32, u32, u32, u32, Selected)> = Vec::new();
    for (g, gpu) in gpus.iter().enumerate() {
        if !gpu.mig_mode.current {
            continue;
        }
        for (mig, m) in gpu.mig_devices.iter().enumerate() {
            if m.profile.eq_ignore_ascii_case(profile) {
                let sel = Selected::Mig { gpu: g, mig };
                candidates.push((gpu.index, m.placement.start, m.gi, m.ci, sel));
            }
        }
    }
    if candidates.is_empty() {
        return Err(ResolveError::UnknownProfile {
            origin: origin.to_string(),
            profile: profile.to_string(),
            known: profile_list(gpus),
        });
    }
    candidates.sort_by_key(|c| (c.0, c.1, c.2, c.3));
    Ok(Pick {
        profile: profile.to_string(),
        candidates: candidates.into_iter().map(|c| c.4).collect(),
    })
}

fn node_selected(origin: &str, gpus: &[Gpu], want: &NodeWant) -> Result<Selected, ResolveError> {
    match want {
        NodeWant::Gpu { minor, path } => gpus
            .iter()
            .position(|g| g.minor == *minor)
            .map(|gpu| Selected::Whole { gpu })
            .ok_or_else(|| ResolveError::NodeGpuMissing {
                origin: origin.to_string(),
                path: path.clone(),
                minor: *minor,
                known: gpu_list(gpus),
            }),
        NodeWant::Mig {
            gpu_minor,
            gi,
            ci,
            path,
        } => find_mig(gpus, |g, m| {
            g.minor == *gpu_minor && m.gi == *gi && m.ci == *ci
        })
        .ok_or_else(|| ResolveError::NodeMigMissing {
            origin: origin.to_string(),
            path: path.clone(),
            gpu_minor: *gpu_minor,
            gi: *gi,
            ci: *ci,
            known: mig_list(gpus),
        }),
    }
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
