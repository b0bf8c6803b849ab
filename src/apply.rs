//! Steps shared by the runtime shim and the OCI hook: from a spec to a plan,
//! a lease, and the spec edit.

use crate::config::{Config, EngineDevices};
use crate::driver::Driver;
use crate::lease::liveness::ProcessId;
use crate::lease::{Acquired, Holder, Lease, LeaseError, PickWant, Store};
use crate::plan::{Host, Plan, PlanError};
use crate::request::{NodeMajors, Request, RequestError, RequestPolicy, Source};
use crate::spec::edit;
use serde_json::Value;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("container {id} is privileged and asks for GPUs ({origin}): a privileged container can open every MIG instance; run it without --privileged or set allow_privileged = true in the migward config")]
    Privileged { id: String, origin: String },
    #[error("container {id} asks for every GPU ({origin}=all; CUDA base images set NVIDIA_VISIBLE_DEVICES=all, so the image or the user asked): name one instance or GPU instead, e.g. NVIDIA_VISIBLE_DEVICES=MIG-<uuid> or a profile such as 1g.10gb (`migward list` shows them), or set allow_all = true in the migward config on a single-tenant host")]
    AllGpus { id: String, origin: String },
    #[error("container {id}: its spec carries the NVIDIA device node {node}, which engine_devices = \"refuse\" in the migward config refuses: ask for the instance with NVIDIA_VISIBLE_DEVICES=MIG-<uuid> or the migward/devices annotation instead, or set engine_devices = \"lease\"")]
    EngineNodes { id: String, node: String },
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
    #[error(transparent)]
    Look(Box<PlanError>),
    #[error(transparent)]
    LookStore(LeaseError),
    #[error(transparent)]
    Driver(#[from] crate::driver::DriverError),
    #[error("cannot find the migward binary for the poststop hook: {0}")]
    Exe(std::io::Error),
}

/// The NVIDIA majors of a host, read once per container from
/// `/proc/devices` (no NVML): 195, and the uvm and caps majors.
#[derive(Debug, Clone)]
pub struct GpuMajors {
    /// For reading device nodes out of a spec (without a readable
    /// `/proc/devices`: 195 and no caps major).
    pub nodes: NodeMajors,
    /// Every NVIDIA major, for stripping and checking a spec.
    pub all: Vec<u64>,
}

/// The NVIDIA majors of the host `config` describes.
pub fn gpu_majors(config: &Config) -> GpuMajors {
    let nvidia = crate::inventory::procfs::NVIDIA_MAJOR;
    let mut all = vec![u64::from(nvidia)];
    let read = crate::inventory::procfs::HostFiles::new(&config.host_root).majors();
    let nodes = read.ok().map(|m| {
        all.extend(
            [Some(m.nvidia), m.uvm, m.caps]
                .into_iter()
                .flatten()
                .map(u64::from),
        );
        NodeMajors {
            nvidia: m.nvidia,
            caps: m.caps,
        }
    });
    all.sort_unstable();
    all.dedup();
    GpuMajors {
        nodes: nodes.unwrap_or(NodeMajors { nvidia, caps: None }),
        all,
    }
}

/// The request policy of a config.
pub fn policy<'a>(config: &'a Config, majors: &GpuMajors) -> RequestPolicy<'a> {
    RequestPolicy {
        annotation: &config.annotation,
        env_requests: config.env_requests,
        annotation_requests: config.annotation_requests,
        untrusted: config.untrusted_requests,
        cdi_kinds: &config.cdi_kinds,
        engine_nodes: match config.engine_devices {
            EngineDevices::Strip => None,
            EngineDevices::Lease | EngineDevices::Refuse => Some(majors.nodes),
        },
    }
}

/// The GPU request of a spec, or `None` if it asks for no GPU (then NVML is
/// never loaded). Refuses what the config does not allow: privileged
/// containers, `all`, and device nodes under `engine_devices = "refuse"`.
/// A request the policy ignored is told to `warn`.
pub fn gpu_request(
    config: &Config,
    spec: &Value,
    id: &str,
    majors: &GpuMajors,
    warn: &mut dyn FnMut(String),
) -> Result<Option<Request>, ApplyError> {
    let reading = Request::read(spec, &policy(config, majors))?;
    for note in reading.ignored {
        warn(format!("container {id}: {note}"));
    }
    let Some(request) = reading.request else {
        return Ok(None);
    };
    if request.source == Source::EngineNodes && config.engine_devices == EngineDevices::Refuse {
        return Err(ApplyError::EngineNodes {
            id: id.to_string(),
            node: request
                .ids
                .first()
                .map(ToString::to_string)
                .unwrap_or_default(),
        });
    }
    if request.is_all() && !config.allow_all {
        return Err(ApplyError::AllGpus {
            id: id.to_string(),
            origin: request.source.to_string(),
        });
    }
    if edit::is_privileged(spec) && !config.allow_privileged {
        return Err(ApplyError::Privileged {
            id: id.to_string(),
            origin: request.source.to_string(),
        });
    }
    Ok(Some(request))
}

/// Who a lease names.
pub struct HolderOf<'a> {
    pub id: &'a str,
    pub bundle: Option<&'a Path>,
    pub creator: Option<ProcessId>,
    pub init: Option<ProcessId>,
    pub runtime_root: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
}

/// A grant: the plan, and what the lease store did (`None` when nothing
/// was leased: a look without a container).
pub struct Granted {
    pub plan: Plan,
    pub acquired: Option<Acquired>,
}

/// Whom [`grant`] leases for.
pub enum Grantee<'a> {
    /// A container: its lease is taken.
    Holder(HolderOf<'a>),
    /// Nobody: a look at what would be picked now (`migward resolve`).
    Look,
    /// A container that has no id yet (podman's precreate): a look in which
    /// a profile with nothing free takes its first instance, so that the
    /// createRuntime hook's acquire refuses naming the holder.
    Precreate,
}

/// Resolves `request` on the host, takes the lease for the grantee
/// (profiles are picked under the lease lock, so racing containers get
/// distinct instances) and plans what was taken. Stale holders in the way
/// are reclaimed and reported through `on_reclaim` as one line each.
pub fn grant(
    config: &Config,
    spec: &Value,
    request: &Request,
    grantee: Grantee,
    on_reclaim: &mut dyn FnMut(String),
) -> Result<Granted, ApplyError> {
    let (who, take_first) = match grantee {
        Grantee::Holder(w) => (Some(w), false),
        Grantee::Look => (None, false),
        Grantee::Precreate => (None, true),
    };
    // A look has no container to name in its errors; precreate names the
    // stage (the container has no id yet).
    let id = match (&who, take_first) {
        (Some(w), _) => Some(w.id),
        (None, true) => Some("(precreate)"),
        (None, false) => None,
    };
    let plan_err = |source: PlanError| match id {
        Some(id) => ApplyError::Plan {
            id: id.to_string(),
            source: Box::new(source),
        },
        None => ApplyError::Look(Box::new(source)),
    };
    let lease_err = |source: LeaseError| match id {
        Some(id) => ApplyError::Lease {
            id: id.to_string(),
            source,
        },
        None => ApplyError::LookStore(source),
    };
    let host = Host::load(config).map_err(plan_err)?;
    let resolution = host.resolve(request).map_err(plan_err)?;
    let unit_of = |sel| crate::lease::units(&[host.grant_of(sel)], config.exclusive);
    let fixed: Vec<_> = resolution.fixed.iter().map(|s| host.grant_of(*s)).collect();
    let fixed = crate::lease::units(&fixed, config.exclusive);
    let picks: Vec<PickWant> = resolution
        .picks
        .iter()
        .map(|p| PickWant {
            profile: p.profile.clone(),
            candidates: p.candidates.iter().flat_map(|c| unit_of(*c)).collect(),
        })
        .collect();
    let store = Store::new(&config.state_dir);
    let (picked, acquired) = match &who {
        Some(who) => {
            let lease = Lease::new(
                Holder {
                    container_id: who.id.to_string(),
                    bundle: who.bundle.map(|b| b.display().to_string()),
                    creator: who.creator,
                    init: who.init,
                    runtime_root: who.runtime_root.clone(),
                    pid_file: who.pid_file.clone(),
                    since: crate::shim::log::rfc3339(std::time::SystemTime::now()),
                    labels: crate::lease::labels_from_spec(spec),
                },
                fixed,
            );
            let taken = store
                .acquire_picking(&lease, &picks, &mut |stale| {
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
                .map_err(lease_err)?;
            (taken.picked, Some(taken.acquired))
        }
        // Nothing to pick: a look needs no lease store (nor the right to
        // write one).
        None if picks.is_empty() => (Vec::new(), None),
        None => (
            store.peek(&fixed, &picks, take_first).map_err(lease_err)?,
            None,
        ),
    };
    let mut selected = resolution.fixed.clone();
    for (pick, c) in resolution.picks.iter().zip(picked) {
        selected.push(pick.candidates[c]);
    }
    match host.plan(request, &selected) {
        Ok(plan) => Ok(Granted { plan, acquired }),
        Err(e) => {
            // Only a lease this call created is undone.
            if let (Some(who), Some(Acquired::New)) = (&who, acquired) {
                let _ = store.release(who.id);
            }
            Err(plan_err(e))
        }
    }
}

/// The `poststop` hook that frees the lease when the container is gone:
/// absolute path, explicit env, timeout (DESIGN.md, CVE-2025-23266).
pub fn release_hook(config: &Config) -> Result<Value, ApplyError> {
    let exe = cli_binary()?;
    Ok(serde_json::json!({
        "path": exe,
        "args": ["migward", "hook", "poststop", "--state-dir", config.state_dir],
        "env": [crate::driver::HOOK_PATH_ENV],
        "timeout": 10,
    }))
}

/// The `migward` binary that runs hooks: this one, unless this is the
/// separate `migward-runtime` binary (no CLI), whose `migward` is installed
/// next to it.
fn cli_binary() -> Result<std::path::PathBuf, ApplyError> {
    let exe = std::env::current_exe().map_err(ApplyError::Exe)?;
    if exe.file_name().is_some_and(|n| n != "migward-runtime") {
        return Ok(exe);
    }
    let cli = exe.with_file_name("migward");
    if cli.is_file() {
        Ok(cli)
    } else {
        Err(ApplyError::Exe(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!(
                "{} is missing: install migward next to migward-runtime",
                cli.display()
            ),
        )))
    }
}

/// The first GPU or MIG cap device the spec grants that is not in `plan`
/// (`None`: a container without a request, which may have none): an
/// engine's `--device` or device-cgroup rule (wildcards included) for
/// another tenant's instance. The hook cannot remove it from a created
/// container, so it refuses. The shared nodes (`nvidiactl`,
/// `nvidia-modeset`, uvm) open no GPU and are let through.
pub fn foreign_gpu_device(spec: &Value, plan: Option<&Plan>, majors: NodeMajors) -> Option<String> {
    use crate::request::SHARED_NVIDIA_MINORS;
    let opens_gpu = |major: u32, minor: Option<u32>| {
        (major == majors.nvidia && minor.is_none_or(|m| m < SHARED_NVIDIA_MINORS))
            || Some(major) == majors.caps
    };
    let planned = |major: u32, minor: Option<u32>| {
        minor.is_some_and(|mi| {
            plan.is_some_and(|p| p.devices.iter().any(|d| d.major == major && d.minor == mi))
        })
    };
    let entries = |ptr: &str| {
        spec.pointer(ptr)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let shown = |minor: Option<u32>| minor.map(|m| m.to_string()).unwrap_or("*".into());
    for d in entries("/linux/devices") {
        let (Some(major), minor) = (
            edit::device_number(&d["major"]),
            edit::device_number(&d["minor"]),
        ) else {
            continue;
        };
        if d["type"] != "b" && opens_gpu(major, minor) && !planned(major, minor) {
            return Some(format!(
                "device {} (c {major}:{})",
                crate::request::shown(d["path"].as_str().unwrap_or("?")).trim_matches('"'),
                shown(minor)
            ));
        }
    }
    for r in entries("/linux/resources/devices") {
        let Some(major) = edit::device_number(&r["major"]) else {
            continue;
        };
        let minor = edit::device_number(&r["minor"]);
        if r["allow"] == true
            && r["type"] != "b"
            && opens_gpu(major, minor)
            && !planned(major, minor)
        {
            return Some(format!("cgroup rule c {major}:{}", shown(minor)));
        }
    }
    None
}

/// The whole spec edit: engine-provided NVIDIA nodes out; the driver's
/// files (per the `driver` config) in; the plan's nodes, rules and env in;
/// and, with `release_hook`, the `poststop` hook that frees the lease. A
/// profile asked for by annotation is rewritten
/// there to the granted UUIDs, so the spec names what was picked (podman's
/// createRuntime hook reads it again). Warnings (no driver files, a common
/// node missing) go to `warn`, one line each.
pub fn edit_spec(
    spec: &mut Value,
    request: &Request,
    plan: &Plan,
    config: &Config,
    majors: &GpuMajors,
    release_hook: bool,
    warn: &mut dyn FnMut(String),
) -> Result<(), ApplyError> {
    let driver = crate::driver::choose(config)?;
    edit::strip_nvidia(spec, &majors.all);
    match &driver {
        Driver::Cdi(edits) => {
            crate::driver::apply_cdi(spec, edits, &config.host_root, majors.nodes, warn)
        }
        Driver::None {
            warning: Some(line),
        } => warn(line.clone()),
        Driver::NvidiaRuntime | Driver::None { warning: None } => {}
    }
    // After the CDI env: the spec's NVIDIA_VISIBLE_DEVICES=void gives way
    // to the granted UUIDs.
    edit::apply_plan(spec, plan);
    if let Source::Annotation(key) = &request.source {
        if request.has_profiles() {
            edit::set_annotation(spec, key, &plan.visible());
        }
    }
    if release_hook {
        edit::add_hook(spec, "poststop", self::release_hook(config)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::DeviceNode;
    use serde_json::json;

    #[test]
    fn foreign_gpu_devices_are_gpu_and_cap_nodes_and_rules_outside_the_plan() {
        let majors = NodeMajors {
            nvidia: 195,
            caps: Some(508),
        };
        let plan = Plan {
            devices: vec![DeviceNode {
                path: "/dev/nvidia0".into(),
                kind: "c",
                major: 195,
                minor: 0,
                mode: 0o666,
            }],
            rules: vec![],
            env: vec![],
            grants: vec![],
            warnings: vec![],
        };
        let dev = |major: u64, minor: u64| json!({"linux": {"devices": [{"path": "/dev/x", "type": "c", "major": major, "minor": minor}]}});
        let rule = |major: Value, minor: Value| json!({"linux": {"resources": {"devices": [{"allow": true, "type": "c", "major": major, "minor": minor, "access": "rwm"}]}}});
        let cases = [
            (dev(195, 0), None, Some("device /dev/x (c 195:0)")),
            (dev(195, 0), Some(&plan), None),
            (dev(195, 1), Some(&plan), Some("device /dev/x (c 195:1)")),
            (dev(195, 255), None, None),
            (dev(195, 254), None, None),
            (dev(511, 0), None, None),
            (dev(508, 12), None, Some("device /dev/x (c 508:12)")),
            // runc keeps 32 bits of each number: this is a 195:0 node.
            (
                dev((1 << 32) + 195, 0),
                None,
                Some("device /dev/x (c 195:0)"),
            ),
            (
                rule(json!(508), Value::Null),
                None,
                Some("cgroup rule c 508:*"),
            ),
            (
                rule(json!(195), Value::Null),
                Some(&plan),
                Some("cgroup rule c 195:*"),
            ),
            (rule(json!(195), json!(255)), None, None),
            (rule(json!(10), json!(229)), None, None),
            (
                json!({"linux": {"resources": {"devices": [{"allow": false, "type": "c", "major": 195, "access": "rwm"}]}}}),
                None,
                None,
            ),
        ];
        for (spec, plan, want) in cases {
            assert_eq!(
                foreign_gpu_device(&spec, plan, majors).as_deref(),
                want,
                "{spec}"
            );
        }
    }
}
