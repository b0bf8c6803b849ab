//! Device nodes and cgroup rules for a live container (the hook path).
//!
//! Threat model: the container image controls everything under its rootfs.
//! A `/dev`, `/dev/nvidia-caps` or node path that is a symlink could point
//! at a host directory (CVE-2024-0132, CVE-2025-23359, CVE-2025-23267), so
//! every step resolves beneath an fd of the rootfs with `openat2`
//! (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), and nodes are made with
//! `mknodat`, which never follows a symlink in its last component. An
//! existing non-node in the way is an error, never overwritten.
//!
//! A container in its own user namespace cannot use a node made there: its
//! `/dev` is a tmpfs mounted inside that namespace, which the kernel treats
//! as `nodev` (and refuses `mknod` by an unmapped host root outright). For
//! such a container the host's node is bind-mounted instead ([`HostNodes`]):
//! opened on the host before the hook joins the container's namespaces,
//! checked to be the planned device, cloned as a detached mount (read-only
//! where the planned mode has no write bit) and attached onto an empty file
//! made with the same no-symlink rules.

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
    #[error("host node {path} {why}: a container in its own user namespace gets the host's node bind-mounted, so the driver's nodes must exist on the host (nvidia-smi or nvidia-modprobe creates them)")]
    HostNode { path: PathBuf, why: String },
    #[error("cannot bind the host node onto {path}: {errno}")]
    Bind { path: PathBuf, errno: Errno },
}

/// `open_tree(2)`, `move_mount(2)` and `mount_setattr(2)` flags (uapi
/// `linux/mount.h`, stable since Linux 5.2 / 5.12).
const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x04;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
const MOUNT_ATTR_RDONLY: u64 = 0x01;
const MOUNT_ATTR_NOSUID: u64 = 0x02;
const MOUNT_ATTR_NOEXEC: u64 = 0x08;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// The planned nodes as detached bind mounts of the host's nodes, made in
/// the host's namespaces; attach them with [`bind_nodes`] from inside the
/// container's.
pub struct HostNodes {
    trees: Vec<OwnedFd>,
}

impl HostNodes {
    /// Opens each planned node under `host_root` (no symlink in the last
    /// component), checks it is the planned character device and clones it
    /// as a detached mount: read-only when the planned mode grants no
    /// write, never suid or exec.
    pub fn open(host_root: &Path, nodes: &[DeviceNode]) -> Result<HostNodes, NodeError> {
        let mut trees = Vec::with_capacity(nodes.len());
        for node in nodes {
            let path = host_root.join(node.path.trim_start_matches('/'));
            let host_err = |why: String| NodeError::HostNode {
                path: path.clone(),
                why,
            };
            let fd = nix::fcntl::open(
                &path,
                OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            // SAFETY: open returned a fresh fd we now own.
            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
            .map_err(|errno| host_err(format!("cannot be opened: {errno}")))?;
            let st = nix::sys::stat::fstat(fd.as_raw_fd())
                .map_err(|errno| host_err(format!("cannot be read: {errno}")))?;
            let dev = nix::sys::stat::makedev(node.major.into(), node.minor.into());
            if st.st_mode & SFlag::S_IFMT.bits() != SFlag::S_IFCHR.bits() || st.st_rdev != dev {
                return Err(host_err(format!(
                    "is not the character device {}:{}",
                    node.major, node.minor
                )));
            }
            // SAFETY: plain syscall on an fd we own and an empty C string.
            let tree = unsafe {
                libc::syscall(
                    libc::SYS_open_tree,
                    fd.as_raw_fd(),
                    c"".as_ptr(),
                    OPEN_TREE_CLONE
                        | libc::O_CLOEXEC as libc::c_uint
                        | libc::AT_EMPTY_PATH as libc::c_uint,
                )
            };
            if tree < 0 {
                return Err(host_err(format!(
                    "cannot be cloned as a mount: {}",
                    Errno::last()
                )));
            }
            // SAFETY: open_tree returned a fresh fd we now own.
            let tree = unsafe { OwnedFd::from_raw_fd(tree as i32) };
            let mut set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC;
            if node.mode & 0o222 == 0 {
                set |= MOUNT_ATTR_RDONLY;
            }
            let attr = MountAttr {
                attr_set: set,
                attr_clr: 0,
                propagation: 0,
                userns_fd: 0,
            };
            // SAFETY: attr is a valid mount_attr of the size passed.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_mount_setattr,
                    tree.as_raw_fd(),
                    c"".as_ptr(),
                    libc::AT_EMPTY_PATH,
                    &attr as *const MountAttr,
                    std::mem::size_of::<MountAttr>(),
                )
            };
            if rc < 0 {
                return Err(host_err(format!(
                    "cannot be made read-only: {}",
                    Errno::last()
                )));
            }
            trees.push(tree);
        }
        Ok(HostNodes { trees })
    }
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
    open_beneath(dir, name, true, shown)
}

/// Opens `name` beneath `dir` (O_PATH, no symlink anywhere); a link or an
/// escape is refused as unsafe.
fn open_beneath(
    dir: &OwnedFd,
    name: &str,
    is_dir: bool,
    shown: &Path,
) -> Result<OwnedFd, NodeError> {
    match openat2(dir.as_raw_fd(), name, how(is_dir)) {
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

/// What already stands at `name` in `dir` (not following a link), and its
/// kind.
fn existing(dir: &OwnedFd, name: &str, shown: &Path) -> Result<(SFlag, libc::stat), NodeError> {
    let st = fstatat(
        Some(dir.as_raw_fd()),
        name,
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|errno| NodeError::Create {
        path: shown.to_path_buf(),
        errno,
    })?;
    Ok((
        SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()),
        st,
    ))
}

/// The refusal for something of `kind` where a planned node belongs.
fn in_the_way(kind: SFlag, shown: &Path) -> NodeError {
    let path = shown.to_path_buf();
    let what = match kind {
        SFlag::S_IFLNK => return NodeError::Unsafe { path },
        SFlag::S_IFCHR => "another device node",
        SFlag::S_IFDIR => "a directory",
        SFlag::S_IFREG => "a regular file",
        _ => "something else",
    };
    NodeError::InTheWay { path, what }
}

/// The container's rootfs, opened (in the current mount namespace) as the
/// anchor of every later step.
pub fn open_rootfs(rootfs: &Path) -> Result<OwnedFd, NodeError> {
    nix::fcntl::open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    // SAFETY: open returned a fresh fd we now own.
    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
    .map_err(|errno| NodeError::Create {
        path: rootfs.to_path_buf(),
        errno,
    })
}

/// Calls `place(dir, name, node, shown)` for each node, with `dir` the
/// node's parent beneath `root` (created 0755 where missing) and `shown`
/// its path for messages (under `rootfs`).
fn walk(
    root: &OwnedFd,
    rootfs: &Path,
    nodes: &[DeviceNode],
    mut place: impl FnMut(&OwnedFd, &str, usize, &Path) -> Result<(), NodeError>,
) -> Result<(), NodeError> {
    // mkdir and mknod obey the umask: clear it so modes are exact
    // (DESIGN.md).
    let old_umask = nix::sys::stat::umask(Mode::empty());
    let result = (|| {
        for (i, node) in nodes.iter().enumerate() {
            let rel = node
                .path
                .strip_prefix("/dev/")
                .filter(|r| !r.split('/').any(|c| c.is_empty() || c == "." || c == ".."))
                .ok_or_else(|| NodeError::NotDev(node.path.clone()))?;
            let shown = rootfs.join(node.path.trim_start_matches('/'));
            let mut dir = subdir(root, "dev", &rootfs.join("dev"))?;
            let mut parts: Vec<&str> = rel.split('/').collect();
            let name = parts.pop().expect("split yields one part");
            let mut at = rootfs.join("dev");
            for part in parts {
                at = at.join(part);
                dir = subdir(&dir, part, &at)?;
            }
            place(&dir, name, i, &shown)?;
        }
        Ok(())
    })();
    nix::sys::stat::umask(old_umask);
    result
}

/// Creates `nodes` beneath `root` (the rootfs at `rootfs`, opened in the
/// current mount namespace), with their planned modes. Idempotent: a char
/// node with the same device number is left as it is.
pub fn make_nodes(root: &OwnedFd, rootfs: &Path, nodes: &[DeviceNode]) -> Result<(), NodeError> {
    walk(root, rootfs, nodes, |dir, name, i, shown| {
        make_node(dir, name, &nodes[i], shown)
    })
}

/// Attaches `host` (opened for the same `nodes`) onto the node paths beneath
/// `root`, the rootfs opened earlier; run inside the container's mount and
/// user namespaces, so what is made belongs to the container's root.
/// Idempotent: a path that already is the planned device is left as it is.
pub fn bind_nodes(
    root: &OwnedFd,
    rootfs: &Path,
    nodes: &[DeviceNode],
    host: HostNodes,
) -> Result<(), NodeError> {
    walk(root, rootfs, nodes, |dir, name, i, shown| {
        bind_node(dir, name, &nodes[i], &host.trees[i], shown)
    })
}

fn bind_node(
    dir: &OwnedFd,
    name: &str,
    node: &DeviceNode,
    tree: &OwnedFd,
    shown: &Path,
) -> Result<(), NodeError> {
    let created = nix::fcntl::openat(
        Some(dir.as_raw_fd()),
        name,
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    );
    match created {
        // SAFETY: openat returned a fresh fd; closed at once.
        Ok(fd) => drop(unsafe { OwnedFd::from_raw_fd(fd) }),
        Err(Errno::EEXIST) => {
            let (kind, st) = existing(dir, name, shown)?;
            let dev = nix::sys::stat::makedev(node.major.into(), node.minor.into());
            match kind {
                // Bound by an earlier run of this hook.
                SFlag::S_IFCHR if st.st_rdev == dev => return Ok(()),
                // The empty file an interrupted run made.
                SFlag::S_IFREG if st.st_size == 0 => {}
                _ => return Err(in_the_way(kind, shown)),
            }
        }
        Err(errno) => {
            return Err(NodeError::Create {
                path: shown.to_path_buf(),
                errno,
            })
        }
    }
    let target = open_beneath(dir, name, false, shown)?;
    // SAFETY: plain syscall on two fds we own and empty C strings.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(NodeError::Bind {
            path: shown.to_path_buf(),
            errno: Errno::last(),
        });
    }
    Ok(())
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
    let (kind, st) = existing(dir, name, shown)?;
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
        _ => Err(in_the_way(kind, shown)),
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

    fn create_nodes(rootfs: &Path, nodes: &[DeviceNode]) -> Result<(), NodeError> {
        make_nodes(&open_rootfs(rootfs)?, rootfs, nodes)
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
    fn host_nodes_to_bind_must_be_the_planned_devices() {
        assert!(
            is_root(),
            "this test makes device nodes: run the tests as root"
        );
        let host = tempfile::tempdir().unwrap();
        let caps = host.path().join("dev/nvidia-caps");
        std::fs::create_dir_all(&caps).unwrap();
        let make = |name: &str, minor: u32| {
            mknodat(
                None,
                &caps.join(name),
                SFlag::S_IFCHR,
                Mode::from_bits_truncate(0o444),
                nix::sys::stat::makedev(508, minor.into()),
            )
            .unwrap()
        };
        make("nvidia-cap12", 12);
        make("nvidia-cap13", 99);
        std::fs::write(caps.join("nvidia-cap14"), "").unwrap();
        std::os::unix::fs::symlink(caps.join("nvidia-cap12"), caps.join("nvidia-cap15")).unwrap();
        assert!(HostNodes::open(host.path(), &[node("/dev/nvidia-caps/nvidia-cap12", 12)]).is_ok());
        for (path, minor, want) in [
            (
                "/dev/nvidia-caps/nvidia-cap13",
                13,
                "is not the character device 508:13",
            ),
            (
                "/dev/nvidia-caps/nvidia-cap14",
                14,
                "is not the character device 508:14",
            ),
            (
                "/dev/nvidia-caps/nvidia-cap15",
                15,
                "is not the character device 508:15",
            ),
            (
                "/dev/nvidia-caps/nvidia-cap16",
                16,
                "cannot be opened: ENOENT",
            ),
        ] {
            let err = HostNodes::open(host.path(), &[node(path, minor)])
                .err()
                .unwrap()
                .to_string();
            let shown = host.path().join(path.trim_start_matches('/'));
            assert!(
                err.starts_with(&format!("host node {} {want}:", shown.display())),
                "{err}"
            );
        }
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
