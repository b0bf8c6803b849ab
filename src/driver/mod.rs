//! The driver's user-space (libcuda, NVML, nvidia-smi) for a granted
//! container. NVIDIA's description says *which files*; migward's plan says
//! *which device*.
//!
//! - `cdi`: the common `containerEdits` of the host's CDI spec of kind
//!   `nvidia.com/gpu` are applied: driver mounts, hooks (each with an
//!   explicit env), env, and the common nodes (`nvidiactl`, uvm,
//!   `nvidia-modeset`). GPU and MIG cap nodes never come from the spec: its
//!   device entries go stale when instances are re-created.
//! - `nvidia-runtime`: the runtime below is `nvidia-container-runtime`,
//!   which injects the driver for the UUIDs the plan puts in
//!   `NVIDIA_VISIBLE_DEVICES`; nothing to add here.
//! - `none`: nothing; `auto` picks one of the three per container.
//!
//! Every edit is idempotent, so a spec an engine already edited from the
//! same CDI spec (podman `--device nvidia.com/gpu=…`) gets no duplicate
//! mount, hook, node or env.

pub mod cdi;

use crate::config::{Config, DriverMode};
use crate::request::SHARED_NVIDIA_MINORS;
use cdi::CommonEdits;
use serde_json::{json, Value};
use std::path::Path;

pub use cdi::CdiError;

/// The env every hook migward adds gets when it has none of its own.
pub const HOOK_PATH_ENV: &str = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";

/// Where a granted container's driver files come from, decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Driver {
    Cdi(CommonEdits),
    NvidiaRuntime,
    /// Nothing is injected; `warning` says so when `auto` found nothing.
    None {
        warning: Option<String>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    Cdi(#[from] CdiError),
    #[error("driver = \"cdi\" in the migward config, but no CDI spec of kind nvidia.com/gpu is in {dirs}: generate one with `nvidia-ctk cdi generate --output=/var/run/cdi/nvidia.yaml`, or set driver = \"none\"")]
    NoCdiSpec { dirs: String },
}

/// Whether `runtime` (a name or a path) is one of NVIDIA's runtimes
/// (`nvidia-container-runtime`, `.cdi`, `.legacy`).
pub fn is_nvidia_runtime(runtime: &Path) -> bool {
    runtime
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("nvidia-container-runtime"))
}

/// Decides the driver source for a container that was granted a device.
pub fn choose(config: &Config) -> Result<Driver, DriverError> {
    let dirs = || {
        config
            .cdi_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match config.driver {
        DriverMode::None => Ok(Driver::None { warning: None }),
        DriverMode::NvidiaRuntime => Ok(Driver::NvidiaRuntime),
        DriverMode::Cdi => match cdi::find(&config.cdi_dirs)? {
            Some(edits) => Ok(Driver::Cdi(edits)),
            None => Err(DriverError::NoCdiSpec { dirs: dirs() }),
        },
        DriverMode::Auto => {
            // NVIDIA's runtime below injects the driver itself (from the same
            // CDI spec, where there is one): adding it here too would mount
            // and hook everything twice.
            if is_nvidia_runtime(&config.runtime) {
                Ok(Driver::NvidiaRuntime)
            } else if let Some(edits) = cdi::find(&config.cdi_dirs)? {
                Ok(Driver::Cdi(edits))
            } else {
                Ok(Driver::None {
                    warning: Some(format!(
                        "no driver files will be injected: no CDI spec of kind nvidia.com/gpu in {} and the runtime below ({}) is not nvidia-container-runtime; CUDA works only if the image brings the host driver's libraries (run `nvidia-ctk cdi generate --output=/var/run/cdi/nvidia.yaml`, or set driver = \"none\" to silence this)",
                        dirs(),
                        config.runtime.display()
                    )),
                })
            }
        }
    }
}

/// Applies a CDI spec's common edits to `spec`. Common nodes that open a
/// GPU or MIG instance (`majors`: 195 below the shared minors, the caps
/// major) are skipped: the plan decides those. A common node that is not on
/// the host is skipped with a warning (the toolkit lists `nvidia-modeset`
/// and the uvm nodes only where the modules are loaded).
pub fn apply_cdi(
    spec: &mut Value,
    edits: &CommonEdits,
    host_root: &Path,
    majors: crate::request::NodeMajors,
    warn: &mut dyn FnMut(String),
) {
    use crate::spec::edit;
    for e in &edits.env {
        if let Some((key, value)) = e.split_once('=') {
            edit::set_env(spec, key, value);
        }
    }
    for m in &edits.mounts {
        edit::add_mount(spec, m.clone());
    }
    for (stage, h) in &edits.hooks {
        edit::replace_hook(spec, stage, h.clone());
    }
    for n in &edits.nodes {
        let raw = serde_json::to_value(n).unwrap_or_default();
        let path = raw["path"].as_str().unwrap_or_default();
        let node = match common_node(&raw, host_root) {
            Ok(node) => node,
            Err(why) => {
                warn(crate::flat(&format!(
                    "CDI spec {}: common node {path} skipped: {why}",
                    edits.file.display()
                )));
                continue;
            }
        };
        let opens_gpu = node.kind == "c"
            && ((node.major == majors.nvidia && node.minor < SHARED_NVIDIA_MINORS)
                || Some(node.major) == majors.caps);
        if opens_gpu {
            continue;
        }
        edit::add_device(
            spec,
            json!({
                "path": path, "type": node.kind, "major": node.major, "minor": node.minor,
                "fileMode": node.mode, "uid": 0, "gid": 0,
            }),
        );
        edit::add_rule(
            spec,
            json!({
                "allow": true, "type": node.kind, "major": node.major, "minor": node.minor,
                "access": node.access,
            }),
        );
    }
}

struct Node {
    kind: &'static str,
    major: u32,
    minor: u32,
    mode: u32,
    access: String,
}

/// A common node's type and numbers: from the spec, else from the host
/// node (`hostPath`, else `path` under the host root).
fn common_node(raw: &Value, host_root: &Path) -> Result<Node, String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let path = raw["path"].as_str().unwrap_or_default();
    let host_path = match raw["hostPath"].as_str() {
        Some(p) => std::path::PathBuf::from(p),
        None => host_root.join(path.trim_start_matches('/')),
    };
    let given = |k: &str| raw[k].as_u64().and_then(|n| u32::try_from(n).ok());
    let access = match raw["permissions"].as_str() {
        None | Some("") => "rwm".to_string(),
        Some("none") => String::new(),
        Some(p) => p.to_string(),
    };
    let kind_given = raw["type"].as_str();
    if let (Some(major), Some(minor), Some("c" | "b")) =
        (given("major"), given("minor"), kind_given)
    {
        return Ok(Node {
            kind: if kind_given == Some("b") { "b" } else { "c" },
            major,
            minor,
            mode: given("fileMode").unwrap_or(0o666),
            access,
        });
    }
    let meta =
        std::fs::metadata(&host_path).map_err(|e| format!("{}: {e}", host_path.display()))?;
    let ft = meta.file_type();
    if !(ft.is_char_device() || ft.is_block_device()) {
        return Err(format!("{} is not a device node", host_path.display()));
    }
    let rdev = meta.rdev();
    Ok(Node {
        kind: if ft.is_block_device() { "b" } else { "c" },
        major: nix::sys::stat::major(rdev) as u32,
        minor: nix::sys::stat::minor(rdev) as u32,
        mode: given("fileMode").unwrap_or(meta.mode() & 0o777),
        access,
    })
}

#[cfg(test)]
mod tests;
