//! The hostile-rootfs guard. runc 1.1, given a rootfs whose `/dev` is a
//! symlink to a host directory, creates its `/dev` nodes and links in that
//! host directory. Before the shim hands runc a spec with GPU nodes it
//! checks, without following any symlink, that every directory on the way
//! to each device node the spec lists is a real directory inside the
//! rootfs, and that no node path leaves the rootfs.

use serde_json::Value;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("rootfs {rootfs}: {path} is a symlink (to {target}): runc would create device nodes where it points, outside the container; refusing: make {path} a directory in the image")]
    Symlink {
        rootfs: PathBuf,
        path: String,
        target: String,
    },
    #[error("rootfs {rootfs}: {path} is not a directory: runc cannot create device nodes under it; refusing: make {path} a directory in the image")]
    NotDir { rootfs: PathBuf, path: String },
    #[error(
        "device path {path:?} leaves the container's rootfs: give an absolute path without `..`"
    )]
    Escapes { path: String },
    #[error("rootfs {rootfs}: cannot inspect {path}: {source}")]
    Io {
        rootfs: PathBuf,
        path: String,
        source: std::io::Error,
    },
}

/// Checks `/dev` and `/dev/nvidia-caps` under `rootfs`, where every GPU
/// node goes. A directory that does not exist yet is fine (runc makes it);
/// a symlink or a non-directory is refused.
pub fn check_dev(rootfs: &Path) -> Result<(), RootfsError> {
    check_path(rootfs, "/dev/nvidia-caps/x")
}

/// [`check_dev`], and the directories of every device node in `spec`.
pub fn check(rootfs: &Path, spec: &Value) -> Result<(), RootfsError> {
    check_dev(rootfs)?;
    let nodes = spec
        .pointer("/linux/devices")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|d| d.get("path").and_then(Value::as_str));
    for path in nodes {
        check_path(rootfs, path)?;
    }
    Ok(())
}

/// Every directory on the way to `path` (not `path` itself, which runc
/// replaces) must be a real directory or absent.
fn check_path(rootfs: &Path, path: &str) -> Result<(), RootfsError> {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(p) => parts.push(p),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(RootfsError::Escapes { path: path.into() })
            }
        }
    }
    parts.pop();
    let mut inside = PathBuf::from("/");
    for part in parts {
        inside.push(part);
        let on_host = rootfs.join(inside.strip_prefix("/").unwrap_or(&inside));
        let shown = inside.display().to_string();
        let meta = match std::fs::symlink_metadata(&on_host) {
            Ok(m) => m,
            // Absent: runc creates it, inside the rootfs.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(RootfsError::Io {
                    rootfs: rootfs.into(),
                    path: shown,
                    source,
                })
            }
        };
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&on_host)
                .map(|t| t.display().to_string())
                .unwrap_or_else(|_| "?".into());
            return Err(RootfsError::Symlink {
                rootfs: rootfs.into(),
                path: shown,
                target,
            });
        }
        if !meta.is_dir() {
            return Err(RootfsError::NotDir {
                rootfs: rootfs.into(),
                path: shown,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(paths: &[&str]) -> Value {
        let devices: Vec<Value> = paths.iter().map(|p| json!({"path": p})).collect();
        json!({"root": {"path": "rootfs"}, "linux": {"devices": devices}})
    }

    #[test]
    fn real_directories_and_absent_ones_pass() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("dev")).unwrap();
        let s = spec(&[
            "/dev/nvidia0",
            "/dev/nvidia-caps/nvidia-cap21",
            "/dev/dri/card0",
        ]);
        check(&rootfs, &s).unwrap();
        // No /dev at all: runc makes it.
        check(&dir.path().join("empty"), &s).unwrap();
    }

    #[test]
    fn symlinks_files_and_dotdot_are_refused_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("host-dir");
        std::fs::create_dir_all(&host).unwrap();
        type Make<'a> = &'a dyn Fn(&Path);
        let cases: [(&str, Make, &str, &str); 4] = [
            (
                "dev-link",
                &|r| std::os::unix::fs::symlink(&host, r.join("dev")).unwrap(),
                "/dev/nvidia0",
                "/dev is a symlink (to ",
            ),
            (
                "caps-link",
                &|r| {
                    std::fs::create_dir_all(r.join("dev")).unwrap();
                    std::os::unix::fs::symlink("/tmp", r.join("dev/nvidia-caps")).unwrap()
                },
                "/dev/nvidia0",
                "/dev/nvidia-caps is a symlink (to /tmp)",
            ),
            (
                "dev-file",
                &|r| std::fs::write(r.join("dev"), "").unwrap(),
                "/dev/nvidia0",
                "/dev is not a directory",
            ),
            (
                "dotdot",
                &|r| std::fs::create_dir_all(r.join("dev")).unwrap(),
                "/dev/../../etc/x",
                "device path \"/dev/../../etc/x\" leaves the container's rootfs",
            ),
        ];
        for (name, make, node, want) in cases {
            let rootfs = dir.path().join(name);
            std::fs::create_dir_all(&rootfs).unwrap();
            make(&rootfs);
            let err = check(&rootfs, &spec(&[node])).unwrap_err().to_string();
            assert!(err.contains(want), "{name}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
        assert_eq!(std::fs::read_dir(&host).unwrap().count(), 0);
    }

    #[test]
    fn rootfs_is_relative_to_the_bundle_unless_absolute() {
        use crate::spec::rootfs;
        let b = Path::new("/b");
        assert_eq!(
            rootfs(&json!({"root": {"path": "r"}}), b),
            Path::new("/b/r")
        );
        assert_eq!(rootfs(&json!({"root": {"path": "/x"}}), b), Path::new("/x"));
        assert_eq!(rootfs(&json!({}), b), Path::new("/b/rootfs"));
    }
}
