//! The config file (`--config`, env `MIGWARD_CONFIG`, default
//! `/etc/migward/config.toml`; a missing default file means defaults).
//! Unknown keys are errors naming the key: a typo must not silently leave a
//! policy at its default.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const DEFAULT_PATH: &str = "/etc/migward/config.toml";
pub const ENV_VAR: &str = "MIGWARD_CONFIG";

/// What NVIDIA device nodes an engine already put into a spec (CDI,
/// `--device`, a device plugin's device specs) mean when no higher source
/// asks for a GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EngineDevices {
    /// A request: mapped back to their instances, leased and kept (default).
    Lease,
    /// Removed from the spec, as for a container that asked for nothing
    /// (the hook, which cannot remove a node, refuses instead).
    Strip,
    /// The container is refused, naming the node.
    Refuse,
}

/// What happens to a request from a source the config does not trust
/// (`env_requests = false`, `annotation_requests = false`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Untrusted {
    /// The container gets no GPU from it and starts; a warning says so
    /// (default: a CUDA image's `NVIDIA_VISIBLE_DEVICES=all` must not stop
    /// a pod that asked for no GPU).
    Ignore,
    /// The container is refused, naming the source.
    Refuse,
}

/// Where a granted container's driver user-space (libcuda, NVML,
/// nvidia-smi) comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DriverMode {
    /// `nvidia-runtime` when the runtime below is NVIDIA's, else `cdi` when
    /// a CDI spec of kind `nvidia.com/gpu` exists, else `none` with a
    /// warning (default).
    Auto,
    /// The common edits of NVIDIA's CDI spec (mounts, hooks, env, common
    /// nodes); the device nodes come from migward's plan.
    Cdi,
    /// The runtime below is `nvidia-container-runtime`; migward only names
    /// the granted UUIDs in `NVIDIA_VISIBLE_DEVICES`.
    NvidiaRuntime,
    /// No driver files: the image brings its own, or the container needs none.
    None,
}

/// What one tenant holds exclusively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Exclusive {
    /// The GPU instance: its compute instances share memory and L2 (default).
    GpuInstance,
    /// Each compute instance on its own.
    ComputeInstance,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Root under which `/proc` and `/dev` are read (tests: a simulated host).
    pub host_root: PathBuf,
    /// Where leases live.
    pub state_dir: PathBuf,
    /// The NVML library to load.
    pub nvml_library: PathBuf,
    /// The real OCI runtime: a name looked up on PATH, or an absolute path.
    pub runtime: PathBuf,
    pub exclusive: Exclusive,
    /// Whether privileged containers may ask for MIG devices.
    pub allow_privileged: bool,
    /// Whether `CUDA_VISIBLE_DEVICES` / `NVIDIA_VISIBLE_DEVICES` are requests.
    pub env_requests: bool,
    /// The annotation that carries a request.
    pub annotation: String,
    /// Whether the annotation is a request.
    pub annotation_requests: bool,
    /// What a request from a source turned off does.
    pub untrusted_requests: Untrusted,
    /// The CDI kinds whose `cdi.k8s.io/*` annotations and device-plugin
    /// mounts name NVIDIA GPUs.
    pub cdi_kinds: Vec<String>,
    /// What NVIDIA nodes already in a spec mean.
    pub engine_devices: EngineDevices,
    /// Whether a request for every GPU (`all`) is granted.
    pub allow_all: bool,
    /// Where a granted container's driver files come from.
    pub driver: DriverMode,
    /// Where CDI specs are read, in order: a later directory wins.
    pub cdi_dirs: Vec<PathBuf>,
    /// The file this config was read from, if any (not a key).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host_root: "/".into(),
            state_dir: "/run/migward".into(),
            nvml_library: "libnvidia-ml.so.1".into(),
            runtime: "runc".into(),
            exclusive: Exclusive::GpuInstance,
            allow_privileged: false,
            env_requests: true,
            annotation: "migward/devices".into(),
            annotation_requests: true,
            untrusted_requests: Untrusted::Ignore,
            cdi_kinds: vec![
                "nvidia.com/gpu".into(),
                "k8s.device-plugin.nvidia.com/gpu".into(),
            ],
            engine_devices: EngineDevices::Lease,
            allow_all: false,
            driver: DriverMode::Auto,
            cdi_dirs: vec!["/etc/cdi".into(), "/var/run/cdi".into()],
            source: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            message: crate::toml_error(text, &e),
        })?;
        if let Some(dir) = config.cdi_dirs.iter().find(|d| !d.is_absolute()) {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                message: format!(
                    "cdi_dirs entry {:?} is relative: it would be looked up from wherever the runtime runs (often the bundle); give an absolute path such as \"/etc/cdi\"",
                    dir.display().to_string()
                ),
            });
        }
        if let Some(kind) = config.cdi_kinds.iter().find(|k| {
            let parts: Vec<&str> = k.split('/').collect();
            parts.len() != 2 || parts.iter().any(|p| p.is_empty()) || k.contains('=')
        }) {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                message: format!(
                    "cdi_kinds entry {kind:?} is not a CDI kind: write vendor/class, e.g. \"nvidia.com/gpu\""
                ),
            });
        }
        if config.annotation.trim().is_empty() {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                message: "annotation must not be empty".into(),
            });
        }
        Ok(config)
    }

    /// Loads from an explicit path, else `MIGWARD_CONFIG`, else the default
    /// path; only a missing *default* file means defaults.
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        let from_env = std::env::var_os(ENV_VAR).filter(|v| !v.is_empty());
        let (path, required) = match (explicit, from_env) {
            (Some(p), _) => (p.to_path_buf(), true),
            (None, Some(p)) => (PathBuf::from(p), true),
            (None, None) => (PathBuf::from(DEFAULT_PATH), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Config::parse(&text, &path).map(|c| Config {
                source: Some(path),
                ..c
            }),
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Config::default())
            }
            Err(source) => Err(ConfigError::Read { path, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let p = Path::new("c.toml");
        assert_eq!(Config::parse("", p).unwrap(), Config::default());
        let c = Config::parse(
            "host_root = \"/sim\"\nexclusive = \"compute-instance\"\nallow_privileged = true\nruntime = \"/usr/bin/crun\"\n",
            p,
        )
        .unwrap();
        assert_eq!(c.host_root, PathBuf::from("/sim"));
        assert_eq!(c.exclusive, Exclusive::ComputeInstance);
        assert!(c.allow_privileged);
        assert_eq!(c.runtime, PathBuf::from("/usr/bin/crun"));
    }

    #[test]
    fn shipped_example_is_the_defaults() {
        let text = include_str!("../packaging/config.toml");
        assert_eq!(
            Config::parse(text, Path::new("packaging/config.toml")).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn bad_config_names_the_problem() {
        let p = Path::new("/etc/migward/config.toml");
        let cases = [
            (
                "state_dir = \"/run/x\"\nhost_rot = \"/\"",
                "line 2, column 1: unknown field `host_rot`",
            ),
            ("exclusive = \"gpu\"", "unknown variant `gpu`"),
            ("engine_devices = \"keep\"", "unknown variant `keep`"),
            ("driver = \"nvidia\"", "unknown variant `nvidia`"),
            ("untrusted_requests = \"drop\"", "unknown variant `drop`"),
            (
                "cdi_kinds = [\"nvidia.com\"]",
                "cdi_kinds entry \"nvidia.com\" is not a CDI kind",
            ),
            ("cdi_kinds = [\"nvidia.com/gpu=0\"]", "is not a CDI kind"),
            ("cdi_dirs = [\"cdi\"]", "cdi_dirs entry \"cdi\" is relative"),
            (
                "allow_privileged = \"yes\"",
                "line 1, column 20: invalid type",
            ),
            ("annotation = \" \"", "annotation must not be empty"),
            // Fuzzing finding 3: a key quoted with its control characters.
            ("\"a\\u001b[2J\\r\\n\" = 1", "unknown field `a\\u{1b}[2J  `"),
        ];
        for (text, want) in cases {
            let err = Config::parse(text, p).unwrap_err().to_string();
            assert!(
                err.starts_with("config /etc/migward/config.toml: "),
                "{err}"
            );
            assert!(err.contains(want), "{text}: {err}");
            assert!(!err.chars().any(char::is_control), "{err:?}");
        }
    }
}
