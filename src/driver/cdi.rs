//! NVIDIA's CDI spec, read for its common `containerEdits`: the driver's
//! library mounts, hooks, env and common nodes (DESIGN.md, "Driver
//! user-space in the container").
//!
//! The format is the `container-device-interface` crate's: a file is
//! parsed into its `Spec` type (unknown fields refused) and its edits are
//! checked with the crate's validation and turned into OCI values with its
//! `to_oci` conversions. Its full loader is not used: it checks every file
//! against a JSON schema, which costs milliseconds on each container start,
//! and it would hand over the spec's device entries, which migward never
//! uses (they go stale when MIG instances are re-created).

use container_device_interface::container_edits::{ContainerEdits, Validate};
use container_device_interface::specs::config::{self as cdi, Hook, Mount};
use container_device_interface::version::VALID_SPEC_VERSIONS;
use serde_json::Value;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The CDI kind NVIDIA's toolkit writes its driver description under.
pub const NVIDIA_KIND: &str = "nvidia.com/gpu";

#[derive(Debug, thiserror::Error)]
pub enum CdiError {
    #[error("cannot read CDI spec {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("CDI spec {path} is {why}; it would run hooks as root in every GPU container: make it owned by root and not writable by others (chown root:root; chmod 644), or remove it")]
    Unsafe { path: PathBuf, why: String },
    #[error("CDI spec {path} is not a valid CDI spec: {message}; regenerate it with `nvidia-ctk cdi generate`")]
    Invalid { path: PathBuf, message: String },
}

/// Larger files are read only this far (NVIDIA's spec for 8 GPUs with 7
/// MIG devices each is well under 1 MiB).
const MAX_SPEC_BYTES: u64 = 16 << 20;

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// One edit of a spec's common `containerEdits`, as OCI JSON values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommonEdits {
    /// The file the edits come from.
    pub file: PathBuf,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    /// The common device nodes: `path`, plus `hostPath` when the spec names
    /// one, plus whatever of `type`/`major`/`minor`/`fileMode`/`permissions`
    /// it gives (the rest is read from the host node when applied).
    pub nodes: Vec<cdi::DeviceNode>,
    /// OCI `mounts` entries.
    pub mounts: Vec<Value>,
    /// `(stage, OCI hook)`: stage as in `hooks.<stage>` (`createContainer` …).
    pub hooks: Vec<(String, Value)>,
}

/// The spec of kind [`NVIDIA_KIND`] in `dirs`, if any: the last one found,
/// directories in order and files by name within each (CDI: a later
/// directory wins). Only `.json` and `.yaml` files are read; a file of
/// another kind is skipped, even when it does not parse.
pub fn find(dirs: &[PathBuf]) -> Result<Option<CommonEdits>, CdiError> {
    let mut found = None;
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue; // a missing directory holds no spec
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("json" | "yaml")
                )
            })
            .collect();
        files.sort();
        for file in files {
            if let Some(edits) = read(&file)? {
                found = Some(edits);
            }
        }
    }
    Ok(found)
}

/// Reads one file: `None` when it is not of [`NVIDIA_KIND`].
pub fn read(path: &Path) -> Result<Option<CommonEdits>, CdiError> {
    let read_err = |source| CdiError::Read {
        path: path.to_path_buf(),
        source,
    };
    // Checked on the open file, so what is checked is what is read.
    // O_NONBLOCK: opening a FIFO must not wait for a writer.
    use std::os::unix::fs::OpenOptionsExt;
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        // A dangling link is no spec.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_err(e)),
    };
    let meta = file.metadata().map_err(read_err)?;
    // Nor is a directory or a FIFO.
    if !meta.is_file() {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    file.take(MAX_SPEC_BYTES)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    // JSON is YAML: one parser reads both.
    let raw = match serde_yaml::from_slice::<serde_yaml::Value>(&bytes) {
        Ok(raw) => raw,
        // Not ours to judge, unless it names our kind: a broken NVIDIA
        // spec must not pass for "no spec".
        Err(e) if contains(&bytes, NVIDIA_KIND.as_bytes()) => {
            return Err(CdiError::Invalid {
                path: path.to_path_buf(),
                message: crate::flat(&e.to_string()),
            })
        }
        Err(_) => return Ok(None),
    };
    if raw.get("kind").and_then(serde_yaml::Value::as_str) != Some(NVIDIA_KIND) {
        return Ok(None);
    }
    if meta.uid() != 0 {
        return Err(CdiError::Unsafe {
            path: path.to_path_buf(),
            why: format!("owned by uid {}, not root", meta.uid()),
        });
    }
    if meta.mode() & 0o022 != 0 {
        return Err(CdiError::Unsafe {
            path: path.to_path_buf(),
            why: format!(
                "writable by group or others (mode {:o})",
                meta.mode() & 0o7777
            ),
        });
    }
    let invalid = |message: String| CdiError::Invalid {
        path: path.to_path_buf(),
        message: crate::flat(&message),
    };
    let version = raw
        .get("cdiVersion")
        .and_then(serde_yaml::Value::as_str)
        .unwrap_or_default()
        .to_string();
    if !VALID_SPEC_VERSIONS.is_valid_version(&version) {
        return Err(invalid(format!("unknown cdiVersion {version:?}")));
    }
    let spec: cdi::Spec = serde_yaml::from_value(raw).map_err(|e| invalid(e.to_string()))?;
    let edits = spec.container_edits.unwrap_or_default();
    ContainerEdits {
        container_edits: edits.clone(),
    }
    .validate()
    .map_err(|e| invalid(format!("{e:#}")))?;
    let mut out = CommonEdits {
        file: path.to_path_buf(),
        env: edits.env.unwrap_or_default(),
        nodes: edits.device_nodes.unwrap_or_default(),
        ..CommonEdits::default()
    };
    for m in edits.mounts.unwrap_or_default() {
        out.mounts.push(mount(&m).map_err(invalid)?);
    }
    for h in edits.hooks.unwrap_or_default() {
        out.hooks.push(hook(&h).map_err(invalid)?);
    }
    Ok(Some(out))
}

/// A mount as OCI JSON. Both paths must be absolute: a relative host path
/// would be looked up from wherever the runtime runs, and the driver's
/// files are never taken from the image.
fn mount(m: &Mount) -> Result<Value, String> {
    let oci = m.to_oci().map_err(|e| format!("{e:#}"))?;
    let source = oci.source().clone().unwrap_or_default();
    if !source.is_absolute() || !oci.destination().is_absolute() {
        return Err(format!(
            "mount {} -> {} needs absolute paths",
            source.display(),
            oci.destination().display()
        ));
    }
    serde_json::to_value(oci).map_err(|e| e.to_string())
}

/// A hook as `(stage, OCI JSON)`. A hook with no env of its own gets a
/// minimal one: a hook that inherits the runtime's env can be made to load
/// a library the image chose (CVE-2025-23266).
fn hook(h: &Hook) -> Result<(String, Value), String> {
    let stage = serde_json::to_value(h)
        .ok()
        .and_then(|v| v.get("hookName").and_then(Value::as_str).map(String::from))
        .ok_or("a hook without hookName")?;
    let mut oci = h.to_oci().map_err(|e| format!("{e:#}"))?;
    if !oci.path().is_absolute() {
        return Err(format!(
            "hook {} needs an absolute path",
            oci.path().display()
        ));
    }
    if oci.env().as_ref().is_none_or(Vec::is_empty) {
        oci.set_env(Some(vec![super::HOOK_PATH_ENV.to_string()]));
    }
    let value = serde_json::to_value(oci).map_err(|e| e.to_string())?;
    Ok((stage, value))
}
