//! Steps shared by the runtime shim and the OCI hook: from a spec to a plan,
//! a lease, and the spec edit.

use crate::config::Config;
use crate::lease::liveness::ProcessId;
use crate::lease::{Acquired, Holder, Lease, LeaseError, Store};
use crate::plan::{Plan, PlanError};
use crate::request::{Request, RequestError, RequestPolicy};
use crate::spec::edit;
use serde_json::Value;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("container {id} is privileged and asks for GPUs ({origin}): a privileged container can open every MIG instance; run it without --privileged or set allow_privileged = true in the migward config")]
    Privileged { id: String, origin: String },
    #[error("container {id}")]
    Plan {
        id: String,
        #[source]
        source: Box<PlanError>,
    },
    #[error("container {id} refused")]
    Lease {
        id: String,
        #[source]
        source: LeaseError,
    },
    #[error("cannot find the migward binary for the poststop hook: {0}")]
    Exe(std::io::Error),
}

/// The request policy of a config.
pub fn policy(config: &Config) -> RequestPolicy<'_> {
    RequestPolicy {
        annotation: &config.annotation,
        env_requests: config.env_requests,
    }
}

/// The plan for a spec's GPU request, or `None` if it asks for no GPU
/// (then NVML is never loaded). Refuses privileged containers unless allowed.
pub fn gpu_plan(config: &Config, spec: &Value, id: &str) -> Result<Option<Plan>, ApplyError> {
    let Some(request) = Request::from_spec(spec, &policy(config))? else {
        return Ok(None);
    };
    if edit::is_privileged(spec) && !config.allow_privileged {
        return Err(ApplyError::Privileged {
            id: id.to_string(),
            origin: request.source.to_string(),
        });
    }
    crate::plan::on_host(config, &request)
        .map(Some)
        .map_err(|source| ApplyError::Plan {
            id: id.to_string(),
            source: Box::new(source),
        })
}

/// Who a lease names.
pub struct HolderOf<'a> {
    pub id: &'a str,
    pub bundle: &'a Path,
    pub creator: Option<ProcessId>,
    pub init: Option<ProcessId>,
    pub runtime_root: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
}

/// Takes the lease for `plan`; stale holders in the way are reclaimed and
/// reported through `on_reclaim` as one line each.
pub fn take_lease(
    config: &Config,
    spec: &Value,
    plan: &Plan,
    who: HolderOf,
    on_reclaim: &mut dyn FnMut(String),
) -> Result<Acquired, ApplyError> {
    let lease = Lease::new(
        Holder {
            container_id: who.id.to_string(),
            bundle: Some(who.bundle.display().to_string()),
            creator: who.creator,
            init: who.init,
            runtime_root: who.runtime_root,
            pid_file: who.pid_file,
            since: crate::shim::log::rfc3339(std::time::SystemTime::now()),
            labels: crate::lease::labels_from_spec(spec),
        },
        crate::lease::units(&plan.grants, config.exclusive),
    );
    Store::new(&config.state_dir)
        .acquire(&lease, &mut |stale| {
            on_reclaim(format!(
                "reclaimed the stale lease of container {} on {}",
                stale.holder.container_id,
                stale
                    .units
                    .first()
                    .map(|u| u.describe())
                    .unwrap_or_default()
            ))
        })
        .map_err(|source| ApplyError::Lease {
            id: who.id.to_string(),
            source,
        })
}

/// The `poststop` hook that frees the lease when the container is gone:
/// absolute path, explicit env, timeout (DESIGN.md, CVE-2025-23266).
pub fn release_hook(config: &Config) -> Result<Value, ApplyError> {
    let exe = std::env::current_exe().map_err(ApplyError::Exe)?;
    Ok(serde_json::json!({
        "path": exe,
        "args": ["migward", "hook", "poststop", "--state-dir", config.state_dir],
        "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
        "timeout": 10,
    }))
}

/// The majors of NVIDIA devices on this host: 195, and the uvm and caps
/// majors from `/proc/devices` when it can be read (no NVML needed).
pub fn gpu_majors(config: &Config) -> Vec<u64> {
    let mut majors = vec![u64::from(crate::inventory::procfs::NVIDIA_MAJOR)];
    if let Ok(m) = crate::inventory::procfs::HostFiles::new(&config.host_root).majors() {
        majors.extend(
            [Some(m.nvidia), m.uvm, m.caps]
                .into_iter()
                .flatten()
                .map(u64::from),
        );
    }
    majors.sort_unstable();
    majors.dedup();
    majors
}

/// The first NVIDIA device (of `majors`) the spec grants that is not in
/// `plan`: an engine's `--device` or device-cgroup rule for another tenant's
/// instance. The hook cannot remove it from a live container, so it refuses.
pub fn foreign_gpu_device(spec: &Value, plan: &Plan, majors: &[u64]) -> Option<String> {
    let planned = |major: u64, minor: Option<u64>| {
        minor.is_some_and(|mi| {
            plan.devices
                .iter()
                .any(|d| u64::from(d.major) == major && u64::from(d.minor) == mi)
        })
    };
    let entries = |ptr: &str| {
        spec.pointer(ptr)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    for d in entries("/linux/devices") {
        let (Some(major), minor) = (d["major"].as_u64(), d["minor"].as_u64()) else {
            continue;
        };
        if majors.contains(&major) && d["type"] != "b" && !planned(major, minor) {
            return Some(format!(
                "device {} (c {major}:{})",
                d["path"].as_str().unwrap_or("?"),
                minor.map(|m| m.to_string()).unwrap_or("*".into())
            ));
        }
    }
    for r in entries("/linux/resources/devices") {
        let Some(major) = r["major"].as_u64() else {
            continue;
        };
        let minor = r["minor"].as_u64();
        if r["allow"] == true
            && majors.contains(&major)
            && r["type"] != "b"
            && !planned(major, minor)
        {
            return Some(format!(
                "cgroup rule c {major}:{}",
                minor.map(|m| m.to_string()).unwrap_or("*".into())
            ));
        }
    }
    None
}

/// The whole spec edit: engine-provided NVIDIA nodes (of `majors`) out,
/// the plan's nodes, rules and env in, and the release hook.
pub fn edit_spec(
    spec: &mut Value,
    plan: &Plan,
    config: &Config,
    majors: &[u64],
) -> Result<(), ApplyError> {
    edit::strip_nvidia(spec, majors);
    edit::apply_plan(spec, plan);
    edit::add_hook(spec, "poststop", release_hook(config)?);
    Ok(())
}
