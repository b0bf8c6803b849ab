//! Which GPUs a container asked for: pure parsing of the spec.
//!
//! Sources, highest first (DESIGN.md, "Every way a GPU reaches a
//! container"), read by the table [`READERS`]: the annotation (default
//! `migward/devices`); what a Kubernetes device plugin wrote through the
//! kubelet (`/dev/null` mounts under `/var/run/nvidia-container-devices`,
//! `cdi.k8s.io/*` annotations); `CUDA_VISIBLE_DEVICES` when it names MIG
//! devices or profiles; `NVIDIA_VISIBLE_DEVICES`; then the NVIDIA device
//! nodes an engine already put into the spec (CDI, `--device`, device
//! specs). The first source that says something decides: `none`/`void`/
//! empty in the annotation means "no GPU", in an env variable it means "ask
//! the next source" (CDI writes `NVIDIA_VISIBLE_DEVICES=void` next to its
//! nodes).
//!
//! The env variables and the annotation are written by the container's
//! author; the device plugin's forms and device nodes only by the kubelet
//! (or whoever may grant devices). A policy that distrusts the former
//! ([`RequestPolicy::env_requests`], [`RequestPolicy::annotation_requests`])
//! ignores or refuses what they ask ([`Untrusted`]).
//! Everything here is untrusted input from an image or a user: values are
//! bounded, and every error names the source and the value (cut to a
//! printable length).

mod ids;

pub use crate::config::Untrusted;
pub use ids::{is_uuid_body, parse_ids, parse_profile, DeviceId, SpecNode};

use serde_json::Value;
use std::fmt;

/// Longest value accepted from a source; longer is refused, not truncated.
pub const MAX_VALUE_LEN: usize = 4096;

/// Where a request came from, named in every error about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Annotation(String),
    Env(&'static str),
    Argument,
    /// NVIDIA device nodes already in the spec's `linux.devices`.
    EngineNodes,
    /// A device plugin's `/dev/null` mounts under [`PLUGIN_MOUNT_DIR`].
    PluginMounts,
    /// A CDI device-injection annotation (`cdi.k8s.io/…`).
    CdiAnnotation(String),
}

/// Where NVIDIA's device plugin (`deviceListStrategy: volume-mounts`)
/// mounts `/dev/null` once per device, named by the device id.
pub const PLUGIN_MOUNT_DIR: &str = "/var/run/nvidia-container-devices";

/// The key prefix of CDI device-injection annotations.
pub const CDI_ANNOTATION_PREFIX: &str = "cdi.k8s.io/";

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Annotation(key) => write!(f, "annotation {key}"),
            Source::Env(name) => write!(f, "env {name}"),
            Source::Argument => f.write_str("argument"),
            Source::EngineNodes => f.write_str("device nodes in the spec"),
            Source::PluginMounts => write!(f, "device-plugin mounts under {PLUGIN_MOUNT_DIR}"),
            Source::CdiAnnotation(key) => write!(f, "annotation {key}"),
        }
    }
}

/// A GPU request: the ids asked for, duplicates collapsed, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub source: Source,
    pub ids: Vec<DeviceId>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("{origin} value {value}: {problem}")]
    Malformed {
        origin: Source,
        value: String,
        problem: String,
    },
    #[error("{origin} is not valid UTF-8 ({value}): write the device ids as plain ASCII")]
    NotUtf8 { origin: Source, value: String },
    #[error("spec field {field} is not {expected}: fix the container's config.json")]
    Shape {
        field: &'static str,
        expected: &'static str,
    },
    #[error("{origin} value {value} is a request this host does not accept from a container's author ({key} = false): ask for the GPU through the device plugin (resources.limits nvidia.com/mig-…) instead")]
    Untrusted {
        origin: Source,
        value: String,
        key: &'static str,
    },
}

/// A value as it may appear in a one-line message: escaped, at most 80 chars.
pub fn shown(value: &str) -> String {
    const MAX: usize = 80;
    let mut out: String = value
        .chars()
        .take(MAX)
        .collect::<String>()
        .escape_debug()
        .to_string();
    if value.chars().count() > MAX {
        out.push_str(&format!("… ({} bytes)", value.len()));
    }
    format!("\"{out}\"")
}

/// The NVIDIA majors of the host, to tell GPU nodes in a spec apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeMajors {
    /// `/dev/nvidia<N>`, `nvidiactl` (255) and `nvidia-modeset` (254).
    pub nvidia: u32,
    /// `/dev/nvidia-caps/nvidia-cap<N>`, when the host has MIG support.
    pub caps: Option<u32>,
}

/// What to read from a spec.
#[derive(Debug, Clone)]
pub struct RequestPolicy<'a> {
    pub annotation: &'a str,
    /// Whether `CUDA_VISIBLE_DEVICES` / `NVIDIA_VISIBLE_DEVICES` count.
    pub env_requests: bool,
    /// Whether the annotation counts.
    pub annotation_requests: bool,
    /// What a source that does not count does when it asks for a GPU.
    pub untrusted: Untrusted,
    /// The CDI kinds (`vendor/class`) whose annotations name NVIDIA GPUs.
    pub cdi_kinds: &'a [String],
    /// Whether NVIDIA nodes already in the spec are a request, and the
    /// majors that tell them apart; `None`: they are not.
    pub engine_nodes: Option<NodeMajors>,
}

/// What one source says about a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Said {
    /// Nothing: ask the next source.
    Nothing,
    /// No GPU, and no lower source is asked.
    NoGpu,
    Asks(Request),
    /// A request from a source the policy does not trust, ignored (the
    /// note says what): ask the next source.
    Ignored(String),
}

type Reader = fn(&Value, &RequestPolicy) -> Result<Said, RequestError>;

/// Every request source, highest first.
pub const READERS: [Reader; 7] = [
    sandbox,
    annotation,
    plugin_mounts,
    cdi_annotations,
    cuda_env,
    nvidia_env,
    engine_nodes,
];

/// What a request read from a spec came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reading {
    pub request: Option<Request>,
    /// Requests the policy ignored, one line each.
    pub ignored: Vec<String>,
}

/// The spec's annotations, `None` when it has none.
fn annotations(spec: &Value) -> Result<Option<&serde_json::Map<String, Value>>, RequestError> {
    match spec.get("annotations") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(a)) => Ok(Some(a)),
        Some(_) => Err(RequestError::Shape {
            field: "annotations",
            expected: "an object",
        }),
    }
}

fn annotation_str(value: &Value) -> Result<&str, RequestError> {
    value.as_str().ok_or(RequestError::Shape {
        field: "annotations",
        expected: "an object of strings",
    })
}

/// What a source the container's author writes says, under the policy:
/// when `trusted` is false, a request is ignored or refused and anything
/// else (including a malformed value) is nothing.
fn authored(
    said: Result<Said, RequestError>,
    trusted: bool,
    key: &'static str,
    policy: &RequestPolicy,
    source: Source,
    value: &str,
) -> Result<Said, RequestError> {
    if trusted {
        return said;
    }
    match (said, policy.untrusted) {
        (Ok(Said::Nothing | Said::NoGpu | Said::Ignored(_)), _) => Ok(Said::Nothing),
        (_, Untrusted::Refuse) => Err(RequestError::Untrusted {
            origin: source,
            value: shown(value),
            key,
        }),
        (_, Untrusted::Ignore) => Ok(Said::Ignored(format!(
            "{source} value {} ignored: {key} = false",
            shown(value)
        ))),
    }
}

/// The annotations that mark a pod's sandbox (pause) container: containerd's
/// CRI and CRI-O's.
pub const SANDBOX_MARKS: [&str; 2] = [
    "io.kubernetes.cri.container-type",
    "io.kubernetes.cri-o.ContainerType",
];

/// A pod's sandbox (pause) container never asks for a GPU: pod annotations
/// reach its spec too, and must not make it a tenant.
fn sandbox(spec: &Value, _: &RequestPolicy) -> Result<Said, RequestError> {
    let Some(annotations) = annotations(spec)? else {
        return Ok(Said::Nothing);
    };
    let is_sandbox = SANDBOX_MARKS
        .iter()
        .any(|k| annotations.get(*k).and_then(Value::as_str) == Some("sandbox"));
    Ok(if is_sandbox {
        Said::NoGpu
    } else {
        Said::Nothing
    })
}

fn annotation(spec: &Value, policy: &RequestPolicy) -> Result<Said, RequestError> {
    let Some(value) = annotations(spec)?.and_then(|a| a.get(policy.annotation)) else {
        return Ok(Said::Nothing);
    };
    let value = annotation_str(value)?;
    let source = Source::Annotation(policy.annotation.to_string());
    let said = Request::parse(source.clone(), value).map(|r| match r {
        Some(r) => Said::Asks(r),
        None => Said::NoGpu,
    });
    authored(
        said,
        policy.annotation_requests,
        "annotation_requests",
        policy,
        source,
        value,
    )
}

/// The device ids of a device plugin's `volume-mounts` strategy: each
/// mount whose source is `/dev/null` and whose destination is
/// `PLUGIN_MOUNT_DIR/<id>` (or `PLUGIN_MOUNT_DIR/cdi/<vendor/class=name>`)
/// asks for that id. Other mounts there are not the plugin's: a container
/// cannot make a `/dev/null` bind mount without a hostPath.
fn plugin_mounts(spec: &Value, policy: &RequestPolicy) -> Result<Said, RequestError> {
    let shape = RequestError::Shape {
        field: "mounts",
        expected: "a list of mount objects",
    };
    let mounts = match spec.get("mounts") {
        None | Some(Value::Null) => return Ok(Said::Nothing),
        Some(Value::Array(m)) => m,
        Some(_) => return Err(shape),
    };
    let mut ids: Vec<DeviceId> = Vec::new();
    for m in mounts {
        let text = |k: &str| m.get(k).and_then(Value::as_str);
        let (Some(dest), Some("/dev/null")) = (text("destination"), text("source")) else {
            continue;
        };
        let Some(id) = dest
            .strip_prefix(PLUGIN_MOUNT_DIR)
            .and_then(|rest| rest.strip_prefix('/'))
        else {
            continue;
        };
        // Every error names the mount, not the id cut out of it.
        let malformed = |problem: String| RequestError::Malformed {
            origin: Source::PluginMounts,
            value: shown(dest),
            problem,
        };
        let id = match id.strip_prefix("cdi/") {
            Some(qualified) => cdi_device(qualified, policy).map_err(malformed)?,
            None => Some(id),
        };
        let Some(id) = id else { continue };
        if id.contains(',') {
            return Err(malformed(
                "names more than one device: the plugin mounts one per device".into(),
            ));
        }
        match Request::parse(Source::PluginMounts, id) {
            Ok(r) => ids.extend(r.map(|r| r.ids).unwrap_or_default()),
            Err(RequestError::Malformed { problem, .. }) => return Err(malformed(problem)),
            Err(e) => return Err(e),
        }
    }
    Ok(request_of(Source::PluginMounts, ids))
}

/// Ids in order, each once (a profile asks once per occurrence).
fn request_of(source: Source, ids: Vec<DeviceId>) -> Said {
    let mut out: Vec<DeviceId> = Vec::new();
    for id in ids {
        if matches!(id, DeviceId::Profile(_)) || !out.contains(&id) {
            out.push(id);
        }
    }
    if out.is_empty() {
        Said::Nothing
    } else {
        Said::Asks(Request { source, ids: out })
    }
}

/// The device name of a qualified CDI name (`vendor/class=name`) when its
/// kind is one of the policy's NVIDIA kinds; `None` for another vendor's
/// device.
fn cdi_device<'v>(qualified: &'v str, policy: &RequestPolicy) -> Result<Option<&'v str>, String> {
    let parts = qualified
        .split_once('=')
        .and_then(|(kind, name)| Some((kind, kind.split_once('/')?, name)));
    let Some((kind, _, name)) = parts.filter(|(_, (v, c), n)| {
        !v.is_empty() && !c.is_empty() && !c.contains('/') && !n.trim().is_empty()
    }) else {
        return Err(format!(
            "{} is not a CDI device name: write vendor/class=name, e.g. nvidia.com/gpu=MIG-<uuid>",
            shown(qualified)
        ));
    };
    if !policy.cdi_kinds.iter().any(|k| k == kind) {
        return Ok(None);
    }
    Ok(Some(name))
}

/// CDI device-injection annotations (`cdi.k8s.io/<plugin>_<id>` =
/// `vendor/class=name[,…]`), as NVIDIA's device plugin writes them with
/// `deviceListStrategy: cdi-annotations`. Devices of other kinds are
/// another vendor's business and pass.
fn cdi_annotations(spec: &Value, policy: &RequestPolicy) -> Result<Said, RequestError> {
    let Some(annotations) = annotations(spec)? else {
        return Ok(Said::Nothing);
    };
    let mut ids = Vec::new();
    let mut source = None;
    for (key, value) in annotations {
        if !key.starts_with(CDI_ANNOTATION_PREFIX) {
            continue;
        }
        let value = annotation_str(value)?;
        let origin = Source::CdiAnnotation(shown(key).trim_matches('"').to_string());
        let malformed = |problem: String| RequestError::Malformed {
            origin: origin.clone(),
            value: shown(value),
            problem,
        };
        if value.len() > MAX_VALUE_LEN {
            return Err(malformed(format!(
                "is {} bytes long, more than {MAX_VALUE_LEN}: list fewer devices",
                value.len()
            )));
        }
        // (Not the CDI crate's parse_annotations: it prints to stdout,
        // which is the precreate hook's output.)
        for qualified in value.split(',') {
            let Some(name) = cdi_device(qualified, policy).map_err(malformed)? else {
                continue;
            };
            let parsed = Request::parse(origin.clone(), name)?;
            ids.extend(parsed.map(|r| r.ids).unwrap_or_default());
            source.get_or_insert(origin.clone());
        }
    }
    Ok(match source {
        Some(source) => request_of(source, ids),
        None => Said::Nothing,
    })
}

/// An env value as a source says it: `none`/`void`/empty is nothing.
fn said(source: Source, value: &str) -> Result<Said, RequestError> {
    Ok(match Request::parse(source, value)? {
        Some(r) => Said::Asks(r),
        None => Said::Nothing,
    })
}

fn cuda_env(spec: &Value, policy: &RequestPolicy) -> Result<Said, RequestError> {
    // Plain indices in CUDA_VISIBLE_DEVICES select among the devices the
    // container already sees; only MIG ids and profiles name host devices.
    let env = spec_env(spec)?;
    let Some(value) = env_value(&env, "CUDA_VISIBLE_DEVICES") else {
        return Ok(Said::Nothing);
    };
    let names_mig = value.split(',').map(str::trim).any(|item| {
        item.get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("MIG-"))
            || parse_profile(item).is_some()
    });
    if !names_mig {
        return Ok(Said::Nothing);
    }
    env_request("CUDA_VISIBLE_DEVICES", value, policy)
}

fn nvidia_env(spec: &Value, policy: &RequestPolicy) -> Result<Said, RequestError> {
    let Some(value) = env_value(&spec_env(spec)?, "NVIDIA_VISIBLE_DEVICES") else {
        return Ok(Said::Nothing);
    };
    // The device plugin's volume-mounts strategy points here at its
    // mounts, which were read already.
    if value.trim_end_matches('/') == PLUGIN_MOUNT_DIR {
        return Ok(Said::Nothing);
    }
    env_request("NVIDIA_VISIBLE_DEVICES", value, policy)
}

/// What env variable `name` says, under the policy's trust in env.
fn env_request(
    name: &'static str,
    value: &str,
    policy: &RequestPolicy,
) -> Result<Said, RequestError> {
    let source = Source::Env(name);
    let s = said(source.clone(), value);
    authored(
        s,
        policy.env_requests,
        "env_requests",
        policy,
        source,
        value,
    )
}

/// The NVIDIA character devices of `linux.devices` that name a GPU or a MIG
/// capability: `/dev/nvidia<N>` and the cap nodes. The shared nodes
/// (`nvidiactl`, `nvidia-modeset`, uvm) name no device and are not listed.
pub fn gpu_nodes(spec: &Value, majors: NodeMajors) -> Result<Vec<SpecNode>, RequestError> {
    let shape = RequestError::Shape {
        field: "linux.devices",
        expected: "a list of device objects",
    };
    let devices = match spec.pointer("/linux/devices") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(d)) => d,
        Some(_) => return Err(shape),
    };
    let mut out = Vec::new();
    for d in devices {
        if d.get("type").and_then(Value::as_str) == Some("b") {
            continue;
        }
        // As runc reads them: 32 bits of each number.
        let number = |k: &str| d.get(k).and_then(crate::spec::edit::device_number);
        let (Some(major), Some(minor)) = (number("major"), number("minor")) else {
            continue;
        };
        let gpu = major == majors.nvidia && minor < SHARED_NVIDIA_MINORS;
        if gpu || Some(major) == majors.caps {
            let path = d.get("path").and_then(Value::as_str).unwrap_or("?");
            let node = SpecNode {
                path: shown(path).trim_matches('"').to_string(),
                major,
                minor,
            };
            if !out.contains(&node) {
                out.push(node);
            }
        }
    }
    Ok(out)
}

/// Minors of major 195 at and above this are shared nodes, not GPUs
/// (`nvidia-modeset` 254, `nvidiactl` 255).
pub const SHARED_NVIDIA_MINORS: u32 = 254;

fn engine_nodes(spec: &Value, policy: &RequestPolicy) -> Result<Said, RequestError> {
    let Some(majors) = policy.engine_nodes else {
        return Ok(Said::Nothing);
    };
    let nodes = gpu_nodes(spec, majors)?;
    if nodes.is_empty() {
        return Ok(Said::Nothing);
    }
    Ok(Said::Asks(Request {
        source: Source::EngineNodes,
        ids: nodes.into_iter().map(DeviceId::Node).collect(),
    }))
}

impl Request {
    /// Parses one value from `source`; `Ok(None)` means "not a GPU request"
    /// (`none`, `void` or empty).
    pub fn parse(source: Source, value: &str) -> Result<Option<Request>, RequestError> {
        if value.len() > MAX_VALUE_LEN {
            return Err(RequestError::Malformed {
                origin: source,
                value: shown(value),
                problem: format!(
                    "is {} bytes long, more than {MAX_VALUE_LEN}: list fewer devices",
                    value.len()
                ),
            });
        }
        match parse_ids(value) {
            Ok(ids) if ids.is_empty() => Ok(None),
            Ok(ids) => Ok(Some(Request { source, ids })),
            Err(problem) => Err(RequestError::Malformed {
                origin: source,
                value: shown(value),
                problem,
            }),
        }
    }

    /// Reads the request of an OCI spec (config.json as JSON): the first
    /// source of [`READERS`] that says something.
    pub fn from_spec(
        spec: &Value,
        policy: &RequestPolicy,
    ) -> Result<Option<Request>, RequestError> {
        Ok(Request::read(spec, policy)?.request)
    }

    /// Like [`Request::from_spec`], with the requests the policy ignored.
    pub fn read(spec: &Value, policy: &RequestPolicy) -> Result<Reading, RequestError> {
        let mut reading = Reading::default();
        for reader in READERS {
            match reader(spec, policy)? {
                Said::Nothing => continue,
                Said::Ignored(note) => reading.ignored.push(note),
                Said::NoGpu => break,
                Said::Asks(request) => {
                    reading.request = Some(request);
                    break;
                }
            }
        }
        Ok(reading)
    }

    /// Whether the request asks for every GPU.
    pub fn is_all(&self) -> bool {
        self.ids.contains(&DeviceId::All)
    }

    /// Whether the request names profiles, to be picked under the lease lock.
    pub fn has_profiles(&self) -> bool {
        self.ids.iter().any(|id| matches!(id, DeviceId::Profile(_)))
    }
}

/// `process.env` of a spec; a missing list is empty.
pub fn spec_env(spec: &Value) -> Result<Vec<&str>, RequestError> {
    let shape = RequestError::Shape {
        field: "process.env",
        expected: "a list of strings",
    };
    match spec.get("process").and_then(|p| p.get("env")) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().ok_or(shape.clone()))
            .collect(),
        Some(_) => Err(shape),
    }
}

/// The value of `name` in a `KEY=value` list. runc passes the list to
/// execve as it is and glibc's getenv returns the first match, so the first
/// one wins here too.
pub fn env_value<'a>(env: &[&'a str], name: &str) -> Option<&'a str> {
    env.iter().find_map(|kv| {
        kv.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('='))
    })
}

#[cfg(test)]
mod tests;
