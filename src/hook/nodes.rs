//! Device nodes and cgroup rules for a live container (the hook path).
//!
//! Threat model: the container image controls everything under its rootfs.
//! A `/dev`, `/dev/nvidia-caps` or node path that is a symlink could point
//! at a host directory (CVE-2024-0132, CVE-2025-23359, CVE-2025-23267), so
//! every step resolves beneath an fd of the rootfs with `openat2`
//! (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), and nodes are made with
//! `mknodat`, which never follows a symlink in its last component. An
//! existing non-node in the way is an error, never overwritten.

use crate::plan::{AllowRule, DeviceNode};
use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstatat, mkdirat, mknodat, Mode, SFlag};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("refusing {path}: it is a symlink or leaves the container's rootfs (image-controlled paths are untrusted)")]
    Unsafe { path: PathBuf },
    #[error(
        "{path} already exists as {what}, not the expected device node: remove it from the image"
    )]
    InTheWay { path: PathBuf, what: &'static str },
    #[error("cannot create {path}: {errno}")]
    Create { path: PathBuf, errno: Errno },
    #[error("device node path {0:?} is not under /dev")]
    NotDev(String),
}

fn how(dir: bool) -> OpenHow {
    let mut flags = OFlag::O_PATH | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW;
    if dir {
        flags |= OFlag::O_DIRECTORY;
    }
    OpenHow::new().flags(flags).resolve(
        ResolveFlag::RESOLVE_BENEATH
            | ResolveFlag::RESOLVE_NO_SYMLINKS
            | ResolveFlag::RESOLVE_NO_MAGICLINKS,
    )
}

/// Opens directory `name` beneath `dir`, creating it (0755) if missing.
fn subdir(dir: &OwnedFd, name: &str, shown: &Path) -> Result<OwnedFd, NodeError> {
    match mkdirat(Some(dir.as_raw_fd()), name, Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(errno) => {
            return Err(NodeError::Create {
                path: shown.to_path_buf(),
                errno,
            })
        }
    }
    match openat2(dir.as_raw_fd(), name, how(true)) {
        // SAFETY: openat2 returned a fresh fd we now own.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
        Err(Errno::ELOOP | Errno::EXDEV | Errno::ENOTDIR) => Err(NodeError::Unsafe {
            path: shown.to_path_buf(),
        }),
        Err(errno) => Err(NodeError::Create {
            path: shown.to_path_buf(),
            errno,
        }),
    }
}

/// Creates `nodes` under `rootfs` (in the current mount namespace), with
/// their planned modes. Idempotent: a char node with the same device number
/// is left as it is.
pub fn create_nodes(rootfs: &Path, nodes: &[DeviceNode]) -> Result<(), NodeError> {
    let root = nix::fcntl::open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
    .map_err(|errno| NodeError::Create {
        path: rootfs.to_path_buf(),
        errno,
    })?;
    // mknod obeys the umask: clear it so modes are exact (DESIGN.md).
    let old_umask = nix::sys::stat::umask(Mode::empty());
    let result = (|| {
        for node in nodes {
            let rel = node
                .path
                .strip_prefix("/dev/")
                .filter(|r| !r.split('/').any(|c| c.is_empty() || c == "." || c == ".."))
                .ok_or_else(|| NodeError::NotDev(node.path.clone()))?;
            let shown = rootfs.join(node.path.trim_start_matches('/'));
            let mut dir = subdir(&root, "dev", &rootfs.join("dev"))?;
            let mut parts: Vec<&str> = rel.split('/').collect();
            let name = parts.pop().expect("split yields one part");
            let mut at = rootfs.join("dev");
            for part in parts {
                at = at.join(part);
                dir = subdir(&dir, part, &at)?;
            }
            make_node(&dir, name, node, &shown)?;
        }
        Ok(())
    })();
    nix::sys::stat::umask(old_umask);
    result
}

fn make_node(dir: &OwnedFd, name: &str, node: &DeviceNode, shown: &Path) -> Result<(), NodeError> {
    let dev = nix::sys::stat::makedev(node.major.into(), node.minor.into());
    let mode = Mode::from_bits_truncate(node.mode);
    match mknodat(Some(dir.as_raw_fd()), name, SFlag::S_IFCHR, mode, dev) {
        Ok(()) => return Ok(()),
        Err(Errno::EEXIST) => {}
        Err(errno) => {
            return Err(NodeError::Create {
                path: shown.to_path_buf(),
                errno,
            })
        }
    }
    let st = fstatat(
        Some(dir.as_raw_fd()),
        name,
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|errno| NodeError::Create {
        path: shown.to_path_buf(),
        errno,
    })?;
    let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
    match kind {
        SFlag::S_IFCHR if st.st_rdev == dev => {
            // Ours from an earlier run, or the image's: make the mode the
            // planned one. It is a char node (checked without following
            // links), so the no-follow chmod cannot reach elsewhere.
            if st.st_mode & 0o7777 != node.mode {
                nix::sys::stat::fchmodat(
                    Some(dir.as_raw_fd()),
                    name,
                    mode,
                    nix::sys::stat::FchmodatFlags::NoFollowSymlink,
                )
                .map_err(|errno| NodeError::Create {
                    path: shown.to_path_buf(),
                    errno,
                })?;
            }
            Ok(())
        }
        SFlag::S_IFLNK => Err(NodeError::Unsafe {
            path: shown.to_path_buf(),
        }),
        SFlag::S_IFCHR => Err(NodeError::InTheWay {
            path: shown.to_path_buf(),
            what: "another device node",
        }),
        SFlag::S_IFDIR => Err(NodeError::InTheWay {
            path: shown.to_path_buf(),
            what: "a directory",
        }),
        SFlag::S_IFREG => Err(NodeError::InTheWay {
            path: shown.to_path_buf(),
            what: "a regular file",
        }),
        _ => Err(NodeError::InTheWay {
            path: shown.to_path_buf(),
            what: "something else",
        }),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot read the cgroups of process {pid}")]
    Read {
        pid: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("process {pid} has no cgroup v1 devices controller (cgroup v2 host): the hook cannot add device rules there; use the migward runtime shim or podman's precreate hook (hooks/oci-migward-precreate.json)")]
    NoV1Devices { pid: u32 },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The devices-controller path of a cgroup v1 `/proc/<pid>/cgroup` text.
pub fn devices_cgroup(text: &str) -> Option<&str> {
    text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == "devices")
            .then_some(path)
    })
}

/// Adds allow rules to the cgroup v1 devices controller of process `pid`.
pub fn allow_devices(cgroup_root: &Path, pid: u32, rules: &[AllowRule]) -> Result<(), CgroupError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map_err(|source| CgroupError::Read { pid, source })?;
    let rel = devices_cgroup(&text).ok_or(CgroupError::NoV1Devices { pid })?;
    let path = cgroup_root
        .join("devices")
        .join(rel.trim_start_matches('/'))
        .join("devices.allow");
    for r in rules {
        std::fs::write(
            &path,
            format!("{} {}:{} {}", r.kind, r.major, r.minor, r.access),
        )
        .map_err(|source| CgroupError::Write {
            path: path.clone(),
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(path: &str, minor: u32) -> DeviceNode {
        DeviceNode {
            path: path.into(),
            kind: "c",
            major: 508,
            minor,
            mode: 0o444,
        }
    }

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn devices_cgroup_line() {
        let text = "12:pids:/a\n5:devices:/libpod_parent/libpod-abc\n0::/user.slice\n";
        assert_eq!(devices_cgroup(text), Some("/libpod_parent/libpod-abc"));
        assert_eq!(devices_cgroup("0::/x\n"), None);
    }

    #[test]
    fn nodes_are_made_with_exact_modes_and_idempotently() {
        assert!(
            is_root(),
            "this test makes device nodes: run the tests as root"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("dev")).unwrap();
        let nodes = [
            node("/dev/nvidia-caps/nvidia-cap12", 12),
            DeviceNode {
                mode: 0o666,
                ..node("/dev/nvidiactl", 255)
            },
        ];
        create_nodes(dir.path(), &nodes).unwrap();
        // A second run, after the mode was changed, restores it.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.path().join("dev/nvidiactl"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        create_nodes(dir.path(), &nodes).unwrap();
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let m = std::fs::symlink_metadata(dir.path().join("dev/nvidia-caps/nvidia-cap12")).unwrap();
        assert!(m.file_type().is_char_device());
        assert_eq!(m.mode() & 0o777, 0o444);
        assert_eq!(m.rdev(), nix::sys::stat::makedev(508, 12));
        let m = std::fs::metadata(dir.path().join("dev/nvidiactl")).unwrap();
        assert_eq!(m.mode() & 0o777, 0o666);
    }

    #[test]
    fn symlinks_and_squatters_are_refused() {
        assert!(
            is_root(),
            "this test makes device nodes: run the tests as root"
        );
        let host = tempfile::tempdir().unwrap();
        type Setup<'a> = Box<dyn Fn(&Path) + 'a>;
        let cases: Vec<(&str, Setup)> = vec![
            (
                "is a symlink",
                Box::new(|r: &Path| {
                    std::os::unix::fs::symlink(host.path(), r.join("dev")).unwrap()
                }),
            ),
            (
                "is a symlink",
                Box::new(|r: &Path| {
                    std::fs::create_dir(r.join("dev")).unwrap();
                    std::os::unix::fs::symlink(host.path(), r.join("dev/nvidia-caps")).unwrap();
                }),
            ),
            (
                "is a symlink",
                Box::new(|r: &Path| {
                    std::fs::create_dir_all(r.join("dev/nvidia-caps")).unwrap();
                    std::os::unix::fs::symlink(
                        host.path().join("victim"),
                        r.join("dev/nvidia-caps/nvidia-cap12"),
                    )
                    .unwrap();
                }),
            ),
            (
                "already exists as a regular file",
                Box::new(|r: &Path| {
                    std::fs::create_dir_all(r.join("dev/nvidia-caps")).unwrap();
                    std::fs::write(r.join("dev/nvidia-caps/nvidia-cap12"), "x").unwrap();
                }),
            ),
            (
                "already exists as a directory",
                Box::new(|r: &Path| {
                    std::fs::create_dir_all(r.join("dev/nvidia-caps/nvidia-cap12")).unwrap()
                }),
            ),
        ];
        for (want, setup) in cases {
            let root = tempfile::tempdir().unwrap();
            setup(root.path());
            let err = create_nodes(root.path(), &[node("/dev/nvidia-caps/nvidia-cap12", 12)])
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{want}: {err}");
            let host_entries: Vec<_> = std::fs::read_dir(host.path()).unwrap().collect();
            assert!(
                host_entries.is_empty(),
                "something was made in the host dir: {host_entries:?}"
            );
        }
        let root = tempfile::tempdir().unwrap();
        let err = create_nodes(root.path(), &[node("/dev/../etc/x", 1)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not under /dev"), "{err}");
    }
}
