//! Which GPUs a container asked for: pure parsing of the spec.
//!
//! Sources, highest first (DESIGN.md, "request"): the annotation (default
//! `migward/devices`), then `CUDA_VISIBLE_DEVICES` when it names MIG devices,
//! then `NVIDIA_VISIBLE_DEVICES`. Everything here is untrusted input from an
//! image or a user: values are bounded, and every error names the source and
//! the value (cut to a printable length).

mod ids;

pub use ids::{is_uuid_body, parse_ids, DeviceId};

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
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Annotation(key) => write!(f, "annotation {key}"),
            Source::Env(name) => write!(f, "env {name}"),
            Source::Argument => f.write_str("argument"),
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

/// What to read from a spec.
#[derive(Debug, Clone)]
pub struct RequestPolicy<'a> {
    pub annotation: &'a str,
    /// Whether `CUDA_VISIBLE_DEVICES` / `NVIDIA_VISIBLE_DEVICES` count.
    pub env_requests: bool,
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

    /// Reads the request of an OCI spec (config.json as JSON).
    pub fn from_spec(
        spec: &Value,
        policy: &RequestPolicy,
    ) -> Result<Option<Request>, RequestError> {
        if let Some(annotations) = spec.get("annotations").filter(|a| !a.is_null()) {
            let annotations = annotations.as_object().ok_or(RequestError::Shape {
                field: "annotations",
                expected: "an object",
            })?;
            if let Some(value) = annotations.get(policy.annotation) {
                let source = Source::Annotation(policy.annotation.to_string());
                let value = value.as_str().ok_or(RequestError::Shape {
                    field: "annotations",
                    expected: "an object of strings",
                })?;
                return Request::parse(source, value);
            }
        }
        if !policy.env_requests {
            return Ok(None);
        }
        let env = spec_env(spec)?;
        if let Some(value) = env_value(&env, "CUDA_VISIBLE_DEVICES") {
            // Plain indices in CUDA_VISIBLE_DEVICES select among the devices
            // the container already sees; only MIG ids name host devices.
            let names_mig = value.split(',').any(|item| {
                item.trim()
                    .get(..4)
                    .is_some_and(|p| p.eq_ignore_ascii_case("MIG-"))
            });
            if names_mig {
                return Request::parse(Source::Env("CUDA_VISIBLE_DEVICES"), value);
            }
        }
        match env_value(&env, "NVIDIA_VISIBLE_DEVICES") {
            Some(value) => Request::parse(Source::Env("NVIDIA_VISIBLE_DEVICES"), value),
            None => Ok(None),
        }
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
