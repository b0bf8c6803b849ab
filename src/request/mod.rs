//! Which GPUs a container asked for: pure parsing of the spec.
//!
//! Sources, highest first (DESIGN.md, "Every way a GPU reaches a
//! container"), read by the table [`READERS`]: the annotation (default
//! `migward/devices`), `CUDA_VISIBLE_DEVICES` when it names MIG devices or
//! profiles, `NVIDIA_VISIBLE_DEVICES`, then the NVIDIA device nodes an
//! engine already put into the spec (CDI, `--device`, device plugins). The
//! first source that says something decides: `none`/`void`/empty in the
//! annotation means "no GPU", in an env variable it means "ask the next
//! source" (CDI writes `NVIDIA_VISIBLE_DEVICES=void` next to its nodes).
//! Everything here is untrusted input from an image or a user: values are
//! bounded, and every error names the source and the value (cut to a
//! printable length).

mod ids;

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
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Annotation(key) => write!(f, "annotation {key}"),
            Source::Env(name) => write!(f, "env {name}"),
            Source::Argument => f.write_str("argument"),
            Source::EngineNodes => f.write_str("device nodes in the spec"),
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
}

type Reader = fn(&Value, &RequestPolicy) -> Result<Said, RequestError>;

/// Every request source, highest first.
pub const READERS: [Reader; 4] = [annotation, cuda_env, nvidia_env, engine_nodes];

fn annotation(spec: &Value, policy: &RequestPolicy) -> Result<Said, RequestError> {
    let Some(annotations) = spec.get("annotations").filter(|a| !a.is_null()) else {
        return Ok(Said::Nothing);
    };
    let annotations = annotations.as_object().ok_or(RequestError::Shape {
        field: "annotations",
        expected: "an object",
    })?;
    let Some(value) = annotations.get(policy.annotation) else {
        return Ok(Said::Nothing);
    };
    let value = value.as_str().ok_or(RequestError::Shape {
        field: "annotations",
        expected: "an object of strings",
    })?;
    let source = Source::Annotation(policy.annotation.to_string());
    Ok(match Request::parse(source, value)? {
        Some(r) => Said::Asks(r),
        None => Said::NoGpu,
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
    if !policy.env_requests {
        return Ok(Said::Nothing);
    }
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
    said(Source::Env("CUDA_VISIBLE_DEVICES"), value)
}

fn nvidia_env(spec: &Value, policy: &RequestPolicy) -> Result<Said, RequestError> {
    if !policy.env_requests {
        return Ok(Said::Nothing);
    }
    match env_value(&spec_env(spec)?, "NVIDIA_VISIBLE_DEVICES") {
        Some(value) => said(Source::Env("NVIDIA_VISIBLE_DEVICES"), value),
        None => Ok(Said::Nothing),
    }
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
        for reader in READERS {
            match reader(spec, policy)? {
                Said::Nothing => continue,
                Said::NoGpu => return Ok(None),
                Said::Asks(request) => return Ok(Some(request)),
            }
        }
        Ok(None)
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
