//! The OCI hook front end, for engines that read a hooks directory (podman,
//! CRI-O). runc passes the container state (`ociVersion, id, status, pid,
//! bundle, annotations`) on stdin and runs `createRuntime`/`prestart` in the
//! host namespaces, before pivot_root (DESIGN.md, "OCI hooks").
//!
//! - `createRuntime` / `prestart`: request → plan → lease, then the cgroup v1
//!   allow rules and the nodes inside the container's mount namespace. If
//!   the spec already carries the planned nodes (podman's `precreate` stage
//!   or the shim put them there), only the lease is taken.
//! - `poststop`: frees the lease; never fails the container's teardown.
//! - `precreate` (podman): config.json on stdin, the edited one on stdout.
//! - `createContainer` / `startContainer` run inside the container, where a
//!   hook can be made to load attacker code (CVE-2025-23266): refused.
//!
//! The hook reads only the config file, the bundle and host files; it loads
//! nothing the container names and runs with the env its hooks.d entry gives.

pub mod nodes;

use crate::apply::{self, ApplyError, HolderOf};
use crate::config::Config;
use crate::lease::liveness::ProcessId;
use crate::lease::{Acquired, Store};
use crate::plan::Plan;
use serde::Deserialize;
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Longest state or config document read from stdin.
const MAX_INPUT: u64 = 16 << 20;
/// Where cgroup v1 controllers are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug, Deserialize)]
pub struct State {
    pub id: String,
    #[serde(default)]
    pub pid: Option<u32>,
    #[serde(default)]
    pub bundle: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("cannot read stdin")]
    Read(#[from] std::io::Error),
    #[error("the container state on stdin is not OCI state JSON")]
    Parse(#[from] serde_json::Error),
    #[error("cannot write the edited config.json to stdout")]
    Write(#[source] std::io::Error),
    #[error("the container state has no {0}: run this hook at createRuntime or prestart")]
    MissingField(&'static str),
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Lease(#[from] crate::lease::LeaseError),
    #[error("container {id}")]
    Cgroup {
        id: String,
        #[source]
        source: nodes::CgroupError,
    },
    #[error("container {id}: {reason}")]
    Nodes { id: String, reason: String },
    #[error("container {id}: its spec already grants {what}, which is not part of its GPU request: remove the --device or device-cgroup rule, or use the runtime shim, which strips them")]
    Foreign { id: String, what: String },
    #[error("hook stage {0} runs inside the container, where a hook can be made to load the image's code as root (CVE-2025-23266): use createRuntime (or prestart) and poststop")]
    InsideContainer(String),
    #[error("unknown hook stage {0:?}: use createRuntime, prestart, poststop or precreate")]
    UnknownStage(String),
}

/// Reads the OCI state from `input` (bounded).
pub fn read_state(input: impl Read) -> Result<State, HookError> {
    let mut text = Vec::new();
    input.take(MAX_INPUT).read_to_end(&mut text)?;
    Ok(serde_json::from_slice(&text)?)
}

/// `poststop`: release the lease of the container named on stdin.
/// Returns a message for stderr when something went wrong.
pub fn poststop(input: impl Read, state_dir: &Path) -> Option<String> {
    let state = match read_state(input) {
        Ok(s) => s,
        Err(e) => return Some(crate::chain(&e)),
    };
    match Store::new(state_dir).release(&state.id) {
        Ok(_) => None,
        Err(e) => Some(crate::chain(&e)),
    }
}

/// True if every planned node and rule is already in the spec.
fn already_applied(spec: &Value, plan: &Plan) -> bool {
    let devices = spec.pointer("/linux/devices").and_then(Value::as_array);
    let rules = spec
        .pointer("/linux/resources/devices")
        .and_then(Value::as_array);
    let (Some(devices), Some(rules)) = (devices, rules) else {
        return false;
    };
    plan.devices.iter().all(|d| {
        devices
            .iter()
            .any(|e| e["path"] == d.path.as_str() && e["major"] == d.major && e["minor"] == d.minor)
            && rules
                .iter()
                .any(|r| r["allow"] == true && r["major"] == d.major && r["minor"] == d.minor)
    })
}

/// `createRuntime` / `prestart`. Warnings (legacy ids, reclaims) go to
/// `warn`.
pub fn create_runtime(
    input: impl Read,
    config: &Config,
    warn: &mut dyn FnMut(String),
) -> Result<(), HookError> {
    let state = read_state(input)?;
    let bundle = state
        .bundle
        .clone()
        .ok_or(HookError::MissingField("bundle"))?;
    let (_, spec) = crate::spec::load_bundle(&bundle)?;
    let majors = apply::gpu_majors(config);
    let Some(request) = apply::gpu_request(config, &spec, &state.id, &majors, warn)? else {
        // A GPU node or rule an engine passed without a request (under
        // engine_devices = "strip", or next to an annotation's `none`)
        // cannot be removed from a created container: refused, never let
        // through unleased.
        if let Some(what) = apply::foreign_gpu_device(&spec, None, majors.nodes) {
            return Err(HookError::Foreign {
                id: state.id.clone(),
                what,
            });
        }
        return Ok(());
    };
    crate::lease::validate_id(&state.id)?;
    let pid = state.pid.ok_or(HookError::MissingField("pid"))?;
    let who = HolderOf {
        id: &state.id,
        bundle: Some(&bundle),
        creator: None,
        init: ProcessId::of(pid),
        runtime_root: None,
        pid_file: None,
    };
    let granted = apply::grant(
        config,
        &spec,
        &request,
        apply::Grantee::Holder(who),
        &mut |m| warn(m),
    )?;
    let plan = granted.plan;
    plan.warnings.iter().for_each(|w| warn(w.clone()));
    let id = state.id.clone();
    let release_new = || {
        if granted.acquired == Some(Acquired::New) {
            let _ = Store::new(&config.state_dir).release(&id);
        }
    };
    if let Some(what) = apply::foreign_gpu_device(&spec, Some(&plan), majors.nodes) {
        release_new();
        return Err(HookError::Foreign { id, what });
    }
    if already_applied(&spec, &plan) {
        return Ok(());
    }
    let result = nodes::allow_devices(Path::new(CGROUP_ROOT), pid, &plan.rules)
        .map_err(|source| HookError::Cgroup {
            id: id.clone(),
            source,
        })
        .and_then(|()| {
            place_nodes(pid, &crate::spec::rootfs(&spec, &bundle), &plan, config).map_err(
                |reason| HookError::Nodes {
                    id: id.clone(),
                    reason,
                },
            )
        });
    if result.is_err() {
        release_new();
    }
    result
}

/// Puts the planned nodes into the rootfs of container init `pid`: made
/// with mknod, or, when the container has its own user namespace (where a
/// node made inside is unusable), the host's nodes bind-mounted.
fn place_nodes(pid: u32, rootfs: &Path, plan: &Plan, config: &Config) -> Result<(), String> {
    let chain = |e: nodes::NodeError| crate::chain(&e);
    // Opened here, in the host's mount namespace, where the nodes are.
    let host = if own_user_namespace(pid)? {
        Some(nodes::HostNodes::open(&config.host_root, &plan.devices).map_err(chain)?)
    } else {
        None
    };
    in_namespaces(pid, host.is_some(), rootfs, |root| {
        match host {
            Some(host) => nodes::bind_nodes(&root, rootfs, &plan.devices, host),
            None => nodes::make_nodes(&root, rootfs, &plan.devices),
        }
        .map_err(chain)
    })
}

/// Whether process `pid` lives in a user namespace other than the hook's.
fn own_user_namespace(pid: u32) -> Result<bool, String> {
    use std::os::unix::fs::MetadataExt;
    let ns = |path: String| {
        std::fs::metadata(&path)
            .map(|m| (m.dev(), m.ino()))
            .map_err(|e| format!("cannot read {path}: {e}"))
    };
    Ok(ns(format!("/proc/{pid}/ns/user"))? != ns("/proc/self/ns/user".into())?)
}

/// Runs `f` in a child process that has joined the mount namespace of
/// `pid` and opened `rootfs` there, and, with `user`, then joined its user
/// namespace as its root (setns needs a single-threaded caller, and the
/// hook itself must stay in the host's namespaces). The rootfs is opened as
/// host root: its parent directories need not be searchable by the
/// container's root. Returns the error text.
fn in_namespaces(
    pid: u32,
    user: bool,
    rootfs: &Path,
    f: impl FnOnce(std::os::fd::OwnedFd) -> Result<(), String>,
) -> Result<(), String> {
    use nix::sched::{setns, CloneFlags};
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult, Gid, Uid};
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/mnt"))
        .map_err(|e| format!("cannot open the mount namespace of process {pid}: {e}"))?;
    let userns = if user {
        Some(
            std::fs::File::open(format!("/proc/{pid}/ns/user"))
                .map_err(|e| format!("cannot open the user namespace of process {pid}: {e}"))?,
        )
    } else {
        None
    };
    let join_user = |userns: &std::fs::File| {
        setns(userns, CloneFlags::CLONE_NEWUSER)
            .and_then(|()| nix::unistd::setresgid(Gid::from(0), Gid::from(0), Gid::from(0)))
            .and_then(|()| nix::unistd::setresuid(Uid::from(0), Uid::from(0), Uid::from(0)))
            .map_err(|e| {
                format!("cannot join the user namespace of process {pid} as its root: {e}")
            })
    };
    let (mut reader, writer) = std::io::pipe().map_err(|e| format!("cannot make a pipe: {e}"))?;
    // SAFETY: the hook is single-threaded; the child only makes syscalls,
    // writes to the pipe and exits without returning.
    match unsafe { fork() }.map_err(|e| format!("cannot fork: {e}"))? {
        ForkResult::Child => {
            let mut writer = writer;
            let outcome = setns(&ns, CloneFlags::CLONE_NEWNS)
                .map_err(|e| format!("cannot join the mount namespace of process {pid}: {e}"))
                .and_then(|()| nodes::open_rootfs(rootfs).map_err(|e| crate::chain(&e)))
                .and_then(|t| {
                    userns.as_ref().map_or(Ok(()), join_user)?;
                    f(t)
                });
            let code = match outcome {
                Ok(()) => 0,
                Err(msg) => {
                    let _ = writer.write_all(msg.as_bytes());
                    1
                }
            };
            // SAFETY: leave the forked child without running the parent's
            // destructors or atexit handlers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(writer);
            let mut msg = String::new();
            let _ = reader.read_to_string(&mut msg);
            match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, 0)) => Ok(()),
                Ok(_) if !msg.is_empty() => Err(msg),
                other => Err(format!("node creation failed: {other:?}")),
            }
        }
    }
}

/// `precreate` (podman): the edited spec, plus a createRuntime hook that
/// takes the lease once the container has an id. Unchanged input is echoed
/// byte for byte when the container asks for no GPU.
pub fn precreate(
    input: impl Read,
    mut output: impl Write,
    config: &Config,
    warn: &mut dyn FnMut(String),
) -> Result<(), HookError> {
    let mut bytes = Vec::new();
    input.take(MAX_INPUT).read_to_end(&mut bytes)?;
    let mut spec = crate::spec::parse(Path::new("config.json on stdin"), &bytes)?;
    let majors = apply::gpu_majors(config);
    let Some(request) = apply::gpu_request(config, &spec, "(precreate)", &majors, warn)? else {
        // Strip engine-provided NVIDIA nodes; echo the input otherwise.
        let stripped = crate::spec::edit::strip_nvidia(&mut spec, &majors.all);
        if stripped | crate::spec::edit::void_visible_devices(&mut spec) {
            let bytes = serde_json::to_vec(&spec).map_err(|e| HookError::Write(e.into()))?;
            output.write_all(&bytes).map_err(HookError::Write)?;
        } else {
            output.write_all(&bytes).map_err(HookError::Write)?;
        }
        return Ok(());
    };
    // No container id yet: profiles are picked from what is free now, and
    // the createRuntime hook leases the UUIDs written into the spec.
    let granted = apply::grant(
        config,
        &spec,
        &request,
        apply::Grantee::Precreate,
        &mut |m| warn(m),
    )?;
    granted.plan.warnings.iter().for_each(|w| warn(w.clone()));
    // Hook mode: no migward `delete` comes, so poststop frees the lease.
    apply::edit_spec(
        &mut spec,
        &request,
        &granted.plan,
        config,
        &majors,
        true,
        warn,
    )?;
    let exe = std::env::current_exe().map_err(ApplyError::Exe)?;
    let mut args = vec![Value::from("migward")];
    if let Some(source) = &config.source {
        args.extend([
            Value::from("--config"),
            Value::from(source.display().to_string()),
        ]);
    }
    args.extend([Value::from("hook"), Value::from("createRuntime")]);
    crate::spec::edit::add_hook(
        &mut spec,
        "createRuntime",
        serde_json::json!({"path": exe, "args": args, "env": [crate::driver::HOOK_PATH_ENV], "timeout": 10}),
    );
    let bytes = serde_json::to_vec(&spec).map_err(|e| HookError::Write(e.into()))?;
    output.write_all(&bytes).map_err(HookError::Write)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poststop_releases_and_never_panics_on_junk() {
        let dir = tempfile::tempdir().unwrap();
        assert!(poststop(
            &b"{\"ociVersion\":\"1.0.2\",\"id\":\"abc\",\"status\":\"stopped\"}"[..],
            dir.path()
        )
        .is_none());
        let err = poststop(&b"junk"[..], dir.path()).unwrap();
        assert!(err.contains("not OCI state JSON"), "{err}");
        let err = poststop(&b"{\"id\":\"../etc\"}"[..], dir.path()).unwrap();
        assert!(
            err.contains("container id \"../etc\" is not valid"),
            "{err}"
        );
    }

    #[test]
    fn no_request_costs_nothing_and_needs_no_nvml() {
        let bundle = tempfile::tempdir().unwrap();
        std::fs::write(
            bundle.path().join("config.json"),
            r#"{"ociVersion":"1.0.2","process":{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0},"env":["PATH=/bin"]}}"#,
        )
        .unwrap();
        let config = Config {
            nvml_library: "/nonexistent/libnvidia-ml.so.1".into(),
            state_dir: bundle.path().join("state"),
            ..Config::default()
        };
        let state = format!("{{\"ociVersion\":\"1.0.2\",\"id\":\"x\",\"status\":\"creating\",\"pid\":1,\"bundle\":{:?}}}", bundle.path());
        create_runtime(state.as_bytes(), &config, &mut |w| panic!("{w}")).unwrap();
        assert!(!bundle.path().join("state").exists());
        let mut out = Vec::new();
        let input = std::fs::read(bundle.path().join("config.json")).unwrap();
        precreate(&input[..], &mut out, &config, &mut |w| panic!("{w}")).unwrap();
        assert_eq!(
            out, input,
            "precreate echoes a spec without a request byte for byte"
        );
    }
}
