//! Reading and writing a bundle's `config.json` without losing anything.
//!
//! The spec is kept as a `serde_json::Value` (with key order preserved) and
//! only the few places migward touches are edited, so fields that oci-spec
//! or migward do not know survive the round trip (STYLE.md, "Editing
//! specs"). oci-spec is used only to check that the file is an OCI spec.
//! Writes are atomic: temp file in the same directory, fsync, rename.

pub mod edit;

use serde_json::Value;
use std::io::Write as _;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("bundle {path} does not exist: check the --bundle path")]
    NoBundle { path: PathBuf },
    #[error("{path} is missing: the bundle has no OCI spec")]
    Missing { path: PathBuf },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: env {name} contains bytes that are not UTF-8: write the value as plain ASCII"
    )]
    EnvNotUtf8 { path: PathBuf, name: String },
    #[error("{path} is not valid JSON: {reason}")]
    NotJson { path: PathBuf, reason: String },
    #[error("{path} is not an OCI runtime spec: {reason}")]
    NotOci { path: PathBuf, reason: String },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Reads `<bundle>/config.json`.
pub fn load_bundle(bundle: &Path) -> Result<(PathBuf, Value), SpecError> {
    if !bundle.is_dir() {
        return Err(SpecError::NoBundle {
            path: bundle.to_path_buf(),
        });
    }
    let path = bundle.join("config.json");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SpecError::Missing { path })
        }
        Err(source) => return Err(SpecError::Read { path, source }),
    };
    let spec = parse(&path, &bytes)?;
    Ok((path, spec))
}

/// Parses spec bytes, checking that they form an OCI runtime spec.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Value, SpecError> {
    let spec: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => {
            if std::str::from_utf8(bytes).is_err() {
                if let Some(name) = non_utf8_env(bytes) {
                    return Err(SpecError::EnvNotUtf8 {
                        path: path.to_path_buf(),
                        name,
                    });
                }
            }
            return Err(SpecError::NotJson {
                path: path.to_path_buf(),
                reason: e.to_string(),
            });
        }
    };
    let not_oci = |reason: String| SpecError::NotOci {
        path: path.to_path_buf(),
        reason,
    };
    if !spec.get("ociVersion").is_some_and(Value::is_string) {
        return Err(not_oci("it has no ociVersion string".into()));
    }
    serde_json::from_value::<oci_spec::runtime::Spec>(spec.clone())
        .map_err(|e| not_oci(e.to_string()))?;
    Ok(spec)
}

/// The name of the first env entry with invalid UTF-8, found on a lossy copy.
fn non_utf8_env(bytes: &[u8]) -> Option<String> {
    let lossy = String::from_utf8_lossy(bytes);
    let spec: Value = serde_json::from_str(&lossy).ok()?;
    spec.pointer("/process/env")?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find(|kv| kv.contains('\u{FFFD}'))
        .map(|kv| {
            let name = kv.split('=').next().unwrap_or(kv);
            crate::request::shown(name).trim_matches('"').to_string()
        })
}

/// The rootfs of `spec` in `bundle`: `root.path`, relative to the bundle
/// unless absolute; `rootfs` when absent, as runc defaults.
pub fn rootfs(spec: &Value, bundle: &Path) -> PathBuf {
    let root = spec
        .pointer("/root/path")
        .and_then(Value::as_str)
        .unwrap_or("rootfs");
    bundle.join(root)
}

/// Writes `spec` to `path` atomically (temp file in the same directory +
/// rename), keeping the file's permissions. Readers see the old spec or the
/// new one, never a mix. No fsync: a bundle does not outlive a host crash
/// (its container is gone too), and the fsync was the largest single cost
/// of the shim's MIG path (BENCHMARKS.md).
pub fn write_atomic(path: &Path, spec: &Value) -> Result<(), SpecError> {
    let wrap = |source| SpecError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(wrap)?;
    // One write: serde_json on a bare file makes a syscall per token.
    let bytes = serde_json::to_vec(spec).map_err(|e| wrap(e.into()))?;
    tmp.write_all(&bytes).map_err(wrap)?;
    if let Ok(meta) = std::fs::metadata(path) {
        tmp.as_file()
            .set_permissions(meta.permissions())
            .map_err(wrap)?;
    }
    tmp.persist(path).map_err(|e| wrap(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_specs_are_named() {
        let p = Path::new("/b/config.json");
        let cases: Vec<(&[u8], &str)> = vec![
            (b"{", "is not valid JSON"),
            (b"[]", "has no ociVersion"),
            (b"{\"ociVersion\": \"1.0.2\", \"process\": 7}", "is not an OCI runtime spec"),
            (
                b"{\"ociVersion\":\"1.0.2\",\"process\":{\"cwd\":\"/\",\"args\":[\"sh\"],\"user\":{\"uid\":0,\"gid\":0},\"env\":[\"CUDA_VISIBLE_DEVICES=MIG-\xff\xfe\"]}}",
                "env CUDA_VISIBLE_DEVICES contains bytes that are not UTF-8",
            ),
        ];
        for (bytes, want) in cases {
            let err = parse(p, bytes).unwrap_err().to_string();
            assert!(err.starts_with("/b/config.json"), "{err}");
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn round_trip_keeps_unknown_fields_and_order() {
        let dir = tempfile::tempdir().unwrap();
        // The float, found by fuzzing, came back one ULP off without
        // serde_json's float_roundtrip.
        let text = r#"{"ociVersion":"1.0.2","float":2.3333333333333334e+17,"zeta":{"keep":[1,2]},"process":{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0},"x-unknown":true},"annotations":{"io.kubernetes.pod.name":"p"},"alpha":null}"#;
        let path = dir.path().join("config.json");
        std::fs::write(&path, text).unwrap();
        let (p, spec) = load_bundle(dir.path()).unwrap();
        write_atomic(&p, &spec).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }

    #[test]
    fn missing_bundle_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_bundle(&dir.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
        let err = load_bundle(dir.path()).unwrap_err().to_string();
        assert!(err.contains("config.json is missing"), "{err}");
    }
}
