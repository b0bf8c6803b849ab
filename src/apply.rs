//! Steps shared by the runtime shim and the OCI hook: from a spec to a plan,
//! a lease, and the spec edit.

use crate::config::Config;
use crate::lease::liveness::ProcessId;
use crate::lease::{Holder, Lease, LeaseError, Store};
use crate::plan::{Plan, PlanError};
use crate::request::{Request, RequestError, RequestPolicy};
use crate::shim::edit;
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
}

/// Takes the lease for `plan`; stale holders in the way are reclaimed and
/// reported through `on_reclaim` as one line each.
pub fn take_lease(
    config: &Config,
    spec: &Value,
    plan: &Plan,
    who: HolderOf,
    on_reclaim: &mut dyn FnMut(String),
) -> Result<(), ApplyError> {
    let lease = Lease::new(
        Holder {
            container_id: who.id.to_string(),
            bundle: Some(who.bundle.display().to_string()),
            creator: who.creator,
            init: who.init,
            runtime_root: who.runtime_root,
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

/// The whole spec edit: engine-provided NVIDIA nodes out, the plan's nodes,
/// rules and env in, and the release hook.
pub fn edit_spec(spec: &mut Value, plan: &Plan, config: &Config) -> Result<(), ApplyError> {
    edit::strip_nvidia(spec);
    edit::apply_plan(spec, plan);
    edit::add_hook(spec, "poststop", release_hook(config)?);
    Ok(())
}
