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

fn run(inv: &Invocation) -> anyhow::Result<std::convert::Infallible> {
    let config = Config::load(inv.config.as_deref())?;
    if matches!(inv.verb.as_deref(), Some("create" | "run")) {
        prepare(inv, &config)?;
    }
    let err = Command::new(&config.runtime).args(&inv.passthrough).exec();
    bail!(
        "cannot run the real runtime {}: {err}; install it or set runtime in the migward config",
        config.runtime.display()
    )
}

/// Edits the bundle's spec for the container about to be created.
fn prepare(inv: &Invocation, config: &Config) -> anyhow::Result<()> {
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
        return Ok(());
    };
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
    edit::strip_nvidia(&mut spec);
    edit::apply_plan(&mut spec, &plan);
    crate::spec::write_atomic(&path, &spec)?;
    Ok(())
}
