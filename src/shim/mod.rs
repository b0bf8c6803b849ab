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
pub mod log;
pub mod rootfs;

pub use argv::{scan, Invocation};

use crate::apply;
use crate::config::Config;
use crate::lease::liveness::ProcessId;
use crate::lease::{validate_id, Acquired, Store};
use crate::spec::edit;
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
    let line = crate::for_engines(&crate::one_line(&err));
    eprintln!("migward-runtime: {line}");
    if let Some(path) = &inv.log {
        log::error(path, inv.log_format_json, &format!("migward: {line}"));
    }
    ExitCode::from(1)
}

/// runc's state root when `--root` is not given (as root).
const DEFAULT_RUNC_ROOT: &str = "/run/runc";

fn run(inv: &Invocation) -> anyhow::Result<std::convert::Infallible> {
    let creates = matches!(inv.verb.as_deref(), Some("create" | "run" | "restore"));
    let config = match Config::load(inv.config.as_deref()) {
        Ok(c) => c,
        // A typo in the config must not stop `state`, `kill` or `delete` of
        // running containers: those fall back to the defaults, loudly.
        Err(e) if !creates => {
            eprintln!(
                "migward-runtime: warning: {}; using the default config for `{}`",
                crate::chain(&e),
                inv.verb.as_deref().unwrap_or("")
            );
            Config::default()
        }
        Err(e) => return Err(e.into()),
    };
    let leased = if creates {
        prepare(inv, &config)?
    } else {
        None
    };
    if inv.verb.as_deref() == Some("delete") {
        delete(inv, &config);
    }
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

/// `delete`: run the real runtime's delete as a child and free the lease
/// only once it succeeded (a refused delete leaves a running container,
/// which keeps its instance), then exit as it did. This is what frees a
/// created container's lease (a `run` one has the poststop hook too; both
/// are idempotent). A broken store must not block the delete.
fn delete(inv: &Invocation, config: &Config) {
    // An id that could not have a lease is not turned into a path at all.
    let id = inv
        .id
        .as_ref()
        .and_then(|i| i.to_str())
        .filter(|id| validate_id(id).is_ok());
    let store = Store::new(&config.state_dir);
    // Only the lease this runtime root took: the same id may live under
    // another root (containerd namespaces), where it is not ours to free.
    let root = inv.root.clone().unwrap_or_else(|| DEFAULT_RUNC_ROOT.into());
    let ours = |id: &&str| {
        store
            .get(id)
            .ok()
            .flatten()
            .is_some_and(|l| l.holder.runtime_root.as_deref() == Some(root.as_path()))
    };
    let Some(id) = id.filter(ours) else {
        return; // nothing to release: exec the runtime as for any verb
    };
    let status = match Command::new(&config.runtime)
        .args(&inv.passthrough)
        .status()
    {
        Ok(s) => s,
        Err(_) => return, // reported by the exec that follows
    };
    if status.success() {
        if let Err(e) = store.release(id) {
            eprintln!("migward-runtime: warning: {}", crate::chain(&e));
        }
    }
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(1));
    std::process::exit(code);
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
    let majors = apply::gpu_majors(config);
    let warn = |msg: &str| {
        eprintln!("migward-runtime: warning: {msg}");
        if let Some(log_path) = &inv.log {
            log::warning(log_path, inv.log_format_json, &format!("migward: {msg}"));
        }
    };
    let Some(request) = apply::gpu_request(config, &spec, &id, &majors, &mut |m| warn(&m))? else {
        // No GPU request: the container must see no NVIDIA node, even one
        // an engine passed through (engine_devices = "strip"), and a runtime
        // below (such as nvidia-container-runtime) must not add any:
        // NVIDIA_VISIBLE_DEVICES becomes `void`. Nothing to write in the
        // common case.
        let stripped = edit::strip_nvidia(&mut spec, &majors.all);
        if stripped | edit::void_visible_devices(&mut spec) {
            crate::spec::write_atomic(&path, &spec)?;
        }
        return Ok(None);
    };
    validate_id(&id)?;
    // Before any lease: a rootfs whose /dev leads out of it is refused.
    let rootfs = crate::spec::rootfs(&spec, &bundle);
    rootfs::check_dev(&rootfs)?;
    let who = apply::HolderOf {
        id: &id,
        bundle: Some(&bundle),
        // This process becomes runc by exec: it holds the lease until runc
        // has written the container's state.
        creator: ProcessId::current(),
        init: None,
        runtime_root: Some(inv.root.clone().unwrap_or_else(|| DEFAULT_RUNC_ROOT.into())),
        pid_file: inv.pid_file.clone(),
    };
    let granted = apply::grant(
        config,
        &spec,
        &request,
        apply::Grantee::Holder(who),
        &mut |m| warn(&m),
    )?;
    granted.plan.warnings.iter().for_each(|w| warn(w));
    // `create` (every engine's verb) is always followed by our `delete`,
    // which frees the lease, and a holder that dies without one is
    // reclaimed by the next acquire: no poststop hook, one process less
    // per container. `run` and `restore` end with runc deleting the
    // container itself, so there poststop frees it. So does a config named
    // by `--migward-config`: podman's cleanup runs `delete` without its
    // `--runtime-flag`s, and that delete would read another state dir.
    let release_hook = inv.verb.as_deref() != Some("create") || inv.config.is_some();
    let written = apply::edit_spec(
        &mut spec,
        &request,
        &granted.plan,
        config,
        &majors,
        release_hook,
        &mut |m| warn(&m),
    )
    .map_err(anyhow::Error::from)
    .and_then(|()| Ok(rootfs::check(&rootfs, &spec)?))
    .and_then(|()| Ok(crate::spec::write_atomic(&path, &spec)?));
    let ours = (granted.acquired == Some(Acquired::New)).then(|| id.to_string());
    if let Err(e) = written {
        // Only a lease this call took is undone: a renewed one belongs to
        // a container that exists.
        if let Some(id) = &ours {
            let _ = Store::new(&config.state_dir).release(id);
        }
        return Err(e);
    }
    Ok(ours)
}
