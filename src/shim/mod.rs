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

use crate::apply;
use crate::config::Config;
use crate::lease::liveness::ProcessId;
use crate::lease::{validate_id, Store};
use anyhow::bail;
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
    // An id that could not have a lease is not turned into a path at all.
    let Some(id) = inv
        .id
        .as_ref()
        .and_then(|i| i.to_str())
        .filter(|id| validate_id(id).is_ok())
    else {
        return;
    };
    let store = Store::new(&config.state_dir);
    if !store.path_of(id).exists() {
        return;
    }
    if let Err(e) = store.release(id) {
        eprintln!("migward-runtime: warning: {}", crate::chain(&e));
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
    let Some(plan) = apply::gpu_plan(config, &spec, &id)? else {
        // No GPU request: the container must see no NVIDIA node, even one
        // an engine passed through. Nothing to write in the common case.
        if edit::strip_nvidia(&mut spec) {
            crate::spec::write_atomic(&path, &spec)?;
        }
        return Ok(None);
    };
    validate_id(&id)?;
    let warn = |msg: &str| {
        eprintln!("migward-runtime: warning: {msg}");
        if let Some(log_path) = &inv.log {
            log::warning(log_path, inv.log_format_json, &format!("migward: {msg}"));
        }
    };
    plan.warnings.iter().for_each(|w| warn(w));
    let who = apply::HolderOf {
        id: &id,
        bundle: &bundle,
        // This process becomes runc by exec: it holds the lease until runc
        // has written the container's state.
        creator: ProcessId::current(),
        init: None,
        runtime_root: Some(inv.root.clone().unwrap_or_else(|| DEFAULT_RUNC_ROOT.into())),
    };
    apply::take_lease(config, &spec, &plan, who, &mut |m| warn(&m))?;
    let written = apply::edit_spec(&mut spec, &plan, config)
        .map_err(anyhow::Error::from)
        .and_then(|()| Ok(crate::spec::write_atomic(&path, &spec)?));
    if let Err(e) = written {
        let _ = Store::new(&config.state_dir).release(&id);
        return Err(e);
    }
    Ok(Some(id.to_string()))
}
