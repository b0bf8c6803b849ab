//! The runtime shim: docker and containerd call migward instead of runc.
//!
//! On `create` and `run` it reads `<bundle>/config.json`, resolves the GPU
//! request, writes the planned device nodes, allow rules and env into the
//! spec (atomically, keeping every other field and hook), then execs the
//! real runtime with the original arguments, which then owns the device
//! cgroup (cgroup v1 and v2 alike). Every other verb is exec'd untouched.
//! A spec without a GPU request is passed through without loading NVML.
//!
//! Errors: one line on stderr and, with `--log`, a runc-style JSON log line
//! so `docker run` shows it; non-zero exit; config.json untouched.

mod argv;
pub mod edit;
pub mod log;

pub use argv::{scan, Invocation, CONFIG_FLAG};

use crate::config::Config;
use crate::lease::liveness::ProcessId;
use crate::lease::{validate_id, Holder, Lease, Store};
use crate::request::{Request, RequestPolicy};
use anyhow::{bail, Context};
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

/// Entry point: never returns on success (the real runtime replaces us).
pub fn main(args: &[OsString]) -> ExitCode {
    let inv = scan(args);
    let err = match run(&inv) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let line = crate::cli::one_line(&err);
    eprintln!("migward-runtime: {line}");
    if let Some(path) = &inv.log {
        log::error(path, inv.log_format_json, &format!("migward: {line}"));
    }
    ExitCode::from(1)
}

/// runc's state root when `--root` is not given (as root).
const DEFAULT_RUNC_ROOT: &str = "/run/runc";

fn run(inv: &Invocation) -> anyhow::Result<std::convert::Infallible> {
    let config = Config::load(inv.config.as_deref())?;
    let leased = match inv.verb.as_deref() {
        Some("create" | "run") => prepare(inv, &config)?,
        Some("delete") => {
            release_on_delete(inv, &config);
            None
        }
        _ => None,
    };
    let err = Command::new(&config.runtime).args(&inv.passthrough).exec();
    if let Some(id) = leased {
        // The container will never exist: give the instance back now.
        let _ = Store::new(&config.state_dir).release(&id);
    }
    bail!(
        "cannot run the real runtime {}: {err}; install it or set runtime in the migward config",
        config.runtime.display()
    )
}

/// `delete` frees the container's lease (poststop does too; both are
/// idempotent). A broken store must not block the delete: warn only.
fn release_on_delete(inv: &Invocation, config: &Config) {
    let Some(id) = inv.id.as_ref().and_then(|i| i.to_str()) else {
        return;
    };
    let store = Store::new(&config.state_dir);
    if !store.path_of(id).exists() {
        return;
    }
    if let Err(e) = store.release(id) {
        eprintln!("migward-runtime: warning: {e}");
    }
}

/// Edits the bundle's spec for the container about to be created; returns
/// the container id when a lease was taken.
fn prepare(inv: &Invocation, config: &Config) -> anyhow::Result<Option<String>> {
    let Some(id) = inv.id.as_ref() else {
        bail!("no container id in the arguments: expected `create [--bundle DIR] <id>`");
    };
    let id = id.to_string_lossy();
    let bundle = match &inv.bundle {
        Some(b) => b.clone(),
        None => std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
    };
    let (path, mut spec) = crate::spec::load_bundle(&bundle)?;
    let policy = RequestPolicy {
        annotation: &config.annotation,
        env_requests: config.env_requests,
    };
    let Some(request) = Request::from_spec(&spec, &policy)? else {
        // No GPU request: the container must see no NVIDIA node, even one
        // an engine passed through. Nothing to write in the common case.
        if edit::strip_nvidia(&mut spec) {
            crate::spec::write_atomic(&path, &spec)?;
        }
        return Ok(None);
    };
    validate_id(&id)?;
    if edit::is_privileged(&spec) && !config.allow_privileged {
        bail!(
            "container {id} is privileged and asks for GPUs ({}): a privileged container can open every MIG instance; run it without --privileged or set allow_privileged = true in the migward config",
            request.source
        );
    }
    let plan = crate::plan::on_host(config, &request).with_context(|| format!("container {id}"))?;
    for w in &plan.warnings {
        eprintln!("migward-runtime: warning: {w}");
        if let Some(log_path) = &inv.log {
            log::warning(log_path, inv.log_format_json, &format!("migward: {w}"));
        }
    }
    let lease = Lease::new(
        Holder {
            container_id: id.to_string(),
            bundle: Some(bundle.display().to_string()),
            // This process becomes runc by exec: it holds the lease until
            // runc has written the container's state.
            creator: ProcessId::current(),
            init: None,
            runtime_root: Some(inv.root.clone().unwrap_or_else(|| DEFAULT_RUNC_ROOT.into())),
            since: log::rfc3339(std::time::SystemTime::now()),
            labels: crate::lease::labels_from_spec(&spec),
        },
        crate::lease::units(&plan.grants, config.exclusive),
    );
    let store = Store::new(&config.state_dir);
    store
        .acquire(&lease, &mut |stale| {
            let msg = format!(
                "migward: reclaimed the stale lease of container {} on {}",
                stale.holder.container_id,
                stale
                    .units
                    .first()
                    .map(|u| u.describe())
                    .unwrap_or_default()
            );
            eprintln!("migward-runtime: {msg}");
            if let Some(log_path) = &inv.log {
                log::warning(log_path, inv.log_format_json, &msg);
            }
        })
        .with_context(|| format!("container {id} refused"))?;
    let written = (|| -> anyhow::Result<()> {
        edit::strip_nvidia(&mut spec);
        edit::apply_plan(&mut spec, &plan);
        edit::add_hook(&mut spec, "poststop", release_hook(config)?);
        crate::spec::write_atomic(&path, &spec)?;
        Ok(())
    })();
    if let Err(e) = written {
        let _ = store.release(&id);
        return Err(e);
    }
    Ok(Some(id.to_string()))
}

/// The `poststop` hook that frees the lease when the container is gone:
/// absolute path, explicit env, timeout (DESIGN.md, CVE-2025-23266).
fn release_hook(config: &Config) -> anyhow::Result<serde_json::Value> {
    let exe =
        std::env::current_exe().context("cannot find the migward binary for the poststop hook")?;
    Ok(serde_json::json!({
        "path": exe,
        "args": ["migward", "hook", "poststop", "--state-dir", config.state_dir],
        "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
        "timeout": 10,
    }))
}
