//! Simulated GPU servers: the topology file, its validation and the built-in
//! layouts.
//!
//! A topology is the one source of truth for a simulated host: the fake NVML
//! library serves it, and the fixture generator ([`crate::simulate`]) writes
//! the matching `/proc` and `/dev` tree from it. Validation refuses layouts
//! that no real GPU could have (overlapping placements, a start the profile
//! does not allow, more compute slices than the GPU has), so fixtures cannot
//! lie.

mod profiles;

pub use profiles::{Model, Profile};

use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Compute slices per GPU (A100 and H100 alike).
pub const COMPUTE_SLICES: u32 = 7;
/// Memory slices per GPU, drawn in `migward list`'s slice map.
pub const MEMORY_SLICES: u32 = 8;

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("cannot read topology file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("topology {origin}: {message}")]
    Syntax { origin: String, message: String },
    #[error("topology {origin}: gpu {gpu}: {problem}")]
    Invalid {
        origin: String,
        gpu: usize,
        problem: String,
    },
    #[error("topology {origin} has no gpu: add at least one [[gpu]] table")]
    Empty { origin: String },
    #[error("unknown topology {0:?}: use a built-in name ({names}) or a path to a topology file", names = BUILTIN_NAMES.join(", "))]
    Unknown(String),
}

/// MIG mode of one GPU: current and pending, as NVML reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigMode {
    pub current: bool,
    pub pending: bool,
}

/// A validated simulated server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub gpus: Vec<Gpu>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpu {
    pub index: u32,
    pub minor: u32,
    pub uuid: String,
    pub model: Model,
    pub mig: MigMode,
    /// Persistence mode (`nvidia-smi -pm`); on unless the topology says not.
    pub persistence: bool,
    pub instances: Vec<GpuInstance>,
}

impl Gpu {
    /// The PCI bus id used for `/proc/driver/nvidia/gpus/<bus-id>`.
    pub fn bus_id(&self) -> String {
        format!("0000:{:02x}:00.0", 0x07 + self.index * 0x08)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuInstance {
    pub gi: u32,
    pub profile: &'static Profile,
    pub start: u32,
    pub compute_instances: Vec<ComputeInstance>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComputeInstance {
    pub ci: u32,
    pub compute_slices: u32,
    pub uuid: String,
}

// ---- the file format -------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    #[serde(default)]
    gpu: Vec<GpuSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GpuSpec {
    model: String,
    /// Default: enabled on a GPU with MIG support, disabled on one without.
    mig: Option<String>,
    #[serde(default = "default_persistence")]
    persistence: bool,
    uuid: Option<String>,
    minor: Option<u32>,
    #[serde(default)]
    instances: Vec<InstanceSpec>,
}

fn default_persistence() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum InstanceSpec {
    Profile(String),
    Full(FullInstanceSpec),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FullInstanceSpec {
    profile: String,
    start: Option<u32>,
    gi: Option<u32>,
    /// Compute-slice size of each compute instance; default one CI over the whole GI.
    ci_slices: Option<Vec<u32>>,
    /// UUIDs of the compute instances, in order; default derived.
    uuids: Option<Vec<String>>,
}

/// Built-in topologies, by name.
pub const BUILTIN_NAMES: [&str; 3] = ["a100x4-mixed", "h100-7x1g", "a100-40gb-pending"];

/// The TOML text of a built-in topology.
pub fn builtin(name: &str) -> Option<&'static str> {
    match name {
        "a100x4-mixed" => Some(include_str!("builtin/a100x4-mixed.toml")),
        "h100-7x1g" => Some(include_str!("builtin/h100-7x1g.toml")),
        "a100-40gb-pending" => Some(include_str!("builtin/a100-40gb-pending.toml")),
        _ => None,
    }
}

/// The TOML text of a built-in topology or of a topology file.
pub fn source_text(name_or_path: &str) -> Result<String, TopologyError> {
    if let Some(text) = builtin(name_or_path) {
        return Ok(text.to_string());
    }
    let path = Path::new(name_or_path);
    if !path.exists() {
        return Err(TopologyError::Unknown(name_or_path.to_string()));
    }
    std::fs::read_to_string(path).map_err(|source| TopologyError::Read {
        path: path.to_path_buf(),
        source,
    })
}

impl Topology {
    /// A built-in name or a path to a topology file.
    pub fn load(name_or_path: &str) -> Result<Topology, TopologyError> {
        Topology::parse(&source_text(name_or_path)?, name_or_path)
    }

    /// Parses and validates topology TOML; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Topology, TopologyError> {
        let spec: FileSpec = toml::from_str(text).map_err(|e| TopologyError::Syntax {
            origin: origin.to_string(),
            message: crate::toml_error(text, &e),
        })?;
        if spec.gpu.is_empty() {
            return Err(TopologyError::Empty {
                origin: origin.to_string(),
            });
        }
        let mut gpus = Vec::new();
        for (index, gpu) in spec.gpu.into_iter().enumerate() {
            let built = build_gpu(index as u32, gpu).map_err(|problem| TopologyError::Invalid {
                origin: origin.to_string(),
                gpu: index,
                problem,
            })?;
            gpus.push(built);
        }
        let mut minors = BTreeSet::new();
        let mut uuids = BTreeSet::new();
        for gpu in &gpus {
            let invalid = |problem: String| TopologyError::Invalid {
                origin: origin.to_string(),
                gpu: gpu.index as usize,
                problem,
            };
            if !minors.insert(gpu.minor) {
                return Err(invalid(format!("minor {} is used twice", gpu.minor)));
            }
            let ids = std::iter::once(&gpu.uuid).chain(
                gpu.instances
                    .iter()
                    .flat_map(|gi| gi.compute_instances.iter().map(|ci| &ci.uuid)),
            );
            for uuid in ids {
                if !uuids.insert(uuid.to_ascii_lowercase()) {
                    return Err(invalid(format!("uuid {uuid} is used twice")));
                }
            }
        }
        Ok(Topology { gpus })
    }
}

fn build_gpu(index: u32, spec: GpuSpec) -> Result<Gpu, String> {
    let model = Model::from_key(&spec.model).ok_or_else(|| {
        let known: Vec<_> = Model::ALL.iter().map(|m| m.key()).collect();
        format!(
            "unknown model {:?}: use one of {}",
            spec.model,
            known.join(", ")
        )
    })?;
    let mig_key = spec.mig.unwrap_or_else(|| {
        if model.supports_mig() {
            "enabled"
        } else {
            "disabled"
        }
        .into()
    });
    if !model.supports_mig() && !mig_key.eq_ignore_ascii_case("disabled") {
        return Err(format!(
            "a {} does not support MIG: mig must be \"disabled\"",
            model.key()
        ));
    }
    let mig = match mig_key.to_ascii_lowercase().as_str() {
        "enabled" => MigMode {
            current: true,
            pending: true,
        },
        "disabled" => MigMode {
            current: false,
            pending: false,
        },
        "pending" => MigMode {
            current: false,
            pending: true,
        },
        other => {
            return Err(format!(
                "mig {other:?} is not one of enabled, disabled, pending"
            ))
        }
    };
    let minor = spec.minor.unwrap_or(index);
    if minor > 31 {
        return Err(format!("minor {minor} is out of range 0..=31"));
    }
    let uuid = match spec.uuid {
        Some(u) => check_uuid(&u, "GPU-")?,
        None => derived_uuid("GPU-", &format!("gpu/{index}")),
    };
    if !mig.current && !spec.instances.is_empty() {
        return Err(
            "has MIG instances but MIG mode is not enabled (instances exist only while MIG is active)"
                .into(),
        );
    }
    let mut used = [false; MEMORY_SLICES as usize];
    let mut compute_used = 0;
    let mut gi_ids = BTreeSet::new();
    let mut instances: Vec<GpuInstance> = Vec::new();
    for (n, inst) in spec.instances.into_iter().enumerate() {
        let full = match inst {
            InstanceSpec::Profile(profile) => FullInstanceSpec {
                profile,
                start: None,
                gi: None,
                ci_slices: None,
                uuids: None,
            },
            InstanceSpec::Full(full) => full,
        };
        let profile = model.profile(&full.profile).ok_or_else(|| {
            let known: Vec<_> = model.profiles().iter().map(|p| p.name).collect();
            format!(
                "instance {n}: profile {:?} does not exist on {}: use one of {}",
                full.profile,
                model.key(),
                known.join(", ")
            )
        })?;
        let same = instances
            .iter()
            .filter(|i| i.profile.id == profile.id)
            .count() as u32;
        if same >= profile.max_count {
            let fit = match profile.max_count {
                1 => "one instance".to_string(),
                count => format!("{count} instances"),
            };
            return Err(format!(
                "instance {n}: {} already has {fit} of {}, the most that fit: remove one or pick a smaller profile",
                model.key(),
                profile.name,
            ));
        }
        let free = |start: u32| (start..start + profile.memory_slices).all(|s| !used[s as usize]);
        let start = match full.start {
            Some(start) => {
                if !profile.starts.contains(&start) {
                    return Err(format!(
                        "instance {n}: {} cannot start at memory slice {start} (allowed: {:?})",
                        profile.name, profile.starts
                    ));
                }
                if !free(start) {
                    return Err(format!(
                        "instance {n}: {} at {start}:{} overlaps another instance's placement",
                        profile.name, profile.memory_slices
                    ));
                }
                start
            }
            None => profile
                .starts
                .iter()
                .copied()
                .find(|s| free(*s))
                .ok_or_else(|| {
                    format!(
                        "instance {n}: no free placement left for {} (memory slices taken: {})",
                        profile.name,
                        slice_list(&used)
                    )
                })?,
        };
        compute_used += profile.compute_slices;
        if compute_used > COMPUTE_SLICES {
            return Err(format!(
                "instance {n}: {} needs {} compute slices but only {} of {COMPUTE_SLICES} are left",
                profile.name,
                profile.compute_slices,
                COMPUTE_SLICES + profile.compute_slices - compute_used
            ));
        }
        for s in start..start + profile.memory_slices {
            used[s as usize] = true;
        }
        // Auto ids: the lowest free one, in listed order. Explicit ids that
        // collide with an earlier auto id are caught as "used twice".
        let gi = full
            .gi
            .unwrap_or_else(|| (1..=14).find(|id| !gi_ids.contains(id)).unwrap_or(15));
        if !(1..=14).contains(&gi) {
            return Err(format!("instance {n}: gi {gi} is out of range 1..=14"));
        }
        if !gi_ids.insert(gi) {
            return Err(format!("instance {n}: gi {gi} is used twice"));
        }
        let ci_slices = full
            .ci_slices
            .unwrap_or_else(|| vec![profile.compute_slices]);
        if ci_slices.is_empty() || ci_slices.len() > 8 {
            return Err(format!(
                "instance {n}: ci_slices must list 1 to 8 compute instances"
            ));
        }
        // Summed in u64: u32 values near the top would wrap past the check.
        let total: u64 = ci_slices.iter().map(|&c| u64::from(c)).sum();
        if ci_slices.contains(&0) || total > u64::from(profile.compute_slices) {
            return Err(format!(
                "instance {n}: ci_slices {ci_slices:?} do not fit the {} compute slices of {}",
                profile.compute_slices, profile.name
            ));
        }
        if let Some(uuids) = &full.uuids {
            if uuids.len() != ci_slices.len() {
                return Err(format!(
                    "instance {n}: {} uuids given for {} compute instances",
                    uuids.len(),
                    ci_slices.len()
                ));
            }
        }
        let mut compute_instances = Vec::new();
        for (ci, slices) in ci_slices.into_iter().enumerate() {
            let uuid = match full.uuids.as_ref().map(|u| u[ci].clone()) {
                Some(u) => check_uuid(&u, "MIG-")?,
                None => derived_uuid("MIG-", &format!("{uuid}/{gi}/{ci}")),
            };
            compute_instances.push(ComputeInstance {
                ci: ci as u32,
                compute_slices: slices,
                uuid,
            });
        }
        instances.push(GpuInstance {
            gi,
            profile,
            start,
            compute_instances,
        });
    }
    Ok(Gpu {
        index,
        minor,
        uuid,
        model,
        mig,
        persistence: spec.persistence,
        instances,
    })
}

fn slice_list(used: &[bool]) -> String {
    let taken: Vec<String> = used
        .iter()
        .enumerate()
        .filter(|(_, u)| **u)
        .map(|(i, _)| i.to_string())
        .collect();
    taken.join(",")
}

fn check_uuid(uuid: &str, prefix: &str) -> Result<String, String> {
    let rest = uuid
        .get(..prefix.len())
        .filter(|p| p.eq_ignore_ascii_case(prefix))
        .map(|_| &uuid[prefix.len()..]);
    match rest {
        Some(rest) if crate::request::is_uuid_body(rest) => {
            Ok(format!("{prefix}{}", rest.to_ascii_lowercase()))
        }
        _ => Err(format!(
            "uuid {uuid:?} is not of the form {prefix}xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
        )),
    }
}

/// A stable, realistic-looking UUID derived from `seed` (FNV-1a, 128 bits),
/// so that built-in topologies name the same devices on every machine.
pub fn derived_uuid(prefix: &str, seed: &str) -> String {
    // FNV-1a over the seed, then splitmix64's finaliser so that similar
    // seeds give unrelated-looking UUIDs.
    let hash = |salt: u64| {
        let h = seed.bytes().fold(0xcbf2_9ce4_8422_2325_u64 ^ salt, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        let h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^ (h >> 31)
    };
    let (a, b) = (hash(0), hash(0x9e37_79b9_7f4a_7c15));
    format!(
        "{prefix}{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        (a & 0x0fff) | 0x4000,
        ((b >> 48) & 0x3fff) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests;
