//! `migward simulate`: writes a complete simulated GPU host from a topology.
//!
//! Layout of `<dir>`:
//! - `host/`: the host tree (`proc/devices`, `proc/driver/nvidia-caps/mig-minors`,
//!   the capability `access` files, `proc/driver/nvidia/gpus/*/information`,
//!   and `dev/` nodes: real char nodes when root, else regular files);
//! - `nvml/libnvidia-ml.so.1` (the fake NVML library) and `nvml/topology.toml`
//!   next to it, which the fake serves;
//! - `state/`: the lease store;
//! - `driver/`: the driver's user-space as a host with NVIDIA's toolkit has
//!   it, under a driver root: `usr/lib/x86_64-linux-gnu/libnvidia-ml.so.<v>`
//!   (the fake NVML, SONAME `libnvidia-ml.so.1`, with the topology beside
//!   it), `libcuda.so.<v>` (a stand-in, SONAME `libcuda.so.1`),
//!   `usr/bin/nvidia-smi` (a stand-in listing what NVML shows) and
//!   `usr/bin/nvidia-cdi-hook` (a harmless stand-in for NVIDIA's hook);
//! - `cdi/nvidia.yaml`: the CDI spec `nvidia-ctk cdi generate
//!   --driver-root <dir>/driver --dev-root <dir>/host` would write: devices
//!   by UUID and by index, common edits with the driver mounts, hooks, env
//!   and common nodes;
//! - `config.toml` pointing at all of them.
//!
//! One topology feeds both the fake NVML and the host tree, so they agree.
//! The host's copy of the fake (`nvml/`) sees the nodes under `host/dev`
//! (`nvml/dev-root`); the driver's copy, mounted into a container, sees the
//! container's `/dev`, so it lists exactly what the container was given.

use crate::topology::Topology;
use nix::sys::stat::{mknod, Mode, SFlag};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Majors of the simulated host. The caps and uvm majors are dynamic on real
/// hosts; these values appear on real machines.
pub use crate::inventory::procfs::NVIDIA_MAJOR;
pub const UVM_MAJOR: u32 = 511;
pub const CAPS_MAJOR: u32 = 508;

/// The file name cargo gives the fake NVML cdylib.
pub const FAKE_NVML_FILE: &str = "libnvidia_ml_fake.so";
/// The libcuda stand-in, the nvidia-smi stand-in and the hook stand-in, as
/// cargo names them (package `sim-driver`).
pub const DRIVER_FILES: [&str; 3] = ["libcuda_fake.so", "sim-nvidia-smi", "sim-nvidia-cdi-hook"];
/// The driver version the simulated host has (the fake NVML reports it).
pub const DRIVER_VERSION: &str = "550.54.15";
/// Where the driver's libraries live, in the container as on the host.
pub const LIB_DIR: &str = "/usr/lib/x86_64-linux-gnu";

#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error(transparent)]
    Topology(#[from] crate::topology::TopologyError),
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot find the fake NVML library ({FAKE_NVML_FILE}) next to {exe} or in $MIGWARD_FAKE_NVML: build it with `cargo build --workspace` or pass --nvml-lib")]
    NoFakeNvml { exe: PathBuf },
    #[error("cannot find the simulated driver's {file} next to {exe}: build it with `cargo build --workspace`")]
    NoDriverFile { file: String, exe: PathBuf },
}

/// The minor of the GI capability node of GPU instance `gi` on GPU minor
/// `gpu` in the driver's table: `G = 3 + 135*gpu + 9*gi`; its CI `ci` has
/// `C = G + 1 + ci` (DESIGN.md). Only the simulation and the fake driver use
/// the formula; migward itself reads `mig-minors`.
pub fn gi_cap_minor(gpu: u32, gi: u32) -> u32 {
    3 + 135 * gpu + 9 * gi
}

/// The `mig-minors` table the driver exposes: 32 GPUs × GI 0..14 × CI 0..7
/// (see [`gi_cap_minor`]).
pub fn mig_minors_text() -> String {
    let mut out = String::from("config 1\nmonitor 2\n");
    for gpu in 0..32u32 {
        for gi in 0..15u32 {
            let g = gi_cap_minor(gpu, gi);
            let _ = writeln!(out, "gpu{gpu}/gi{gi}/access {g}");
            for ci in 0..8u32 {
                let _ = writeln!(out, "gpu{gpu}/gi{gi}/ci{ci}/access {}", g + 1 + ci);
            }
        }
    }
    out
}

fn proc_devices_text() -> String {
    format!(
        "Character devices:\n  1 mem\n  4 /dev/vc/0\n  5 /dev/tty\n 10 misc\n{NVIDIA_MAJOR} nvidia-frontend\n{CAPS_MAJOR} nvidia-caps\n{UVM_MAJOR} nvidia-uvm\n\nBlock devices:\n  8 sd\n259 blkext\n"
    )
}

fn cap_access(minor: u32) -> String {
    format!("DeviceFileMinor: {minor}\nDeviceFileMode: 292\nDeviceFileModify: 1\n")
}

struct Writer;

impl Writer {
    fn file(&self, path: &Path, text: &str) -> Result<(), SimulateError> {
        let wrap = |source| SimulateError::Write {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(wrap)?;
        }
        std::fs::write(path, text).map_err(wrap)
    }

    /// Puts `from` at `to` through a temp name and a rename (a running
    /// process may have the old file mapped): a hard link where it can (the
    /// debug build of the fake NVML is large, and tests simulate many
    /// hosts), else a copy. Keeps the mode (executables).
    fn copy(&self, from: &Path, to: &Path) -> Result<(), SimulateError> {
        let wrap = |source| SimulateError::Write {
            path: to.to_path_buf(),
            source,
        };
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(wrap)?;
        }
        let tmp = to.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        if std::fs::hard_link(from, &tmp).is_err() {
            std::fs::copy(from, &tmp).map_err(wrap)?;
        }
        std::fs::rename(&tmp, to).map_err(wrap)
    }

    /// A char node when we may mknod, else a regular file standing in.
    fn node(&self, path: &Path, major: u32, minor: u32, mode: u32) -> Result<(), SimulateError> {
        let wrap = |source| SimulateError::Write {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(wrap)?;
        }
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(wrap(e)),
        }
        let dev = nix::sys::stat::makedev(major.into(), minor.into());
        if mknod(path, SFlag::S_IFCHR, Mode::from_bits_truncate(mode), dev).is_err() {
            std::fs::write(path, b"").map_err(wrap)?;
        }
        // mknod obeys the umask: set the mode explicitly.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(wrap)
    }
}

/// Writes the host tree of `topo` under `root`.
pub fn write_host_tree(topo: &Topology, root: &Path) -> Result<(), SimulateError> {
    let w = Writer;
    w.file(&root.join("proc/devices"), &proc_devices_text())?;
    w.file(
        &root.join("proc/driver/nvidia-caps/mig-minors"),
        &mig_minors_text(),
    )?;
    let caps_dir = root.join("proc/driver/nvidia/capabilities");
    w.file(&caps_dir.join("mig/config"), &cap_access(1))?;
    w.file(&caps_dir.join("mig/monitor"), &cap_access(2))?;
    w.node(&root.join("dev/nvidiactl"), NVIDIA_MAJOR, 255, 0o666)?;
    w.node(&root.join("dev/nvidia-modeset"), NVIDIA_MAJOR, 254, 0o666)?;
    w.node(&root.join("dev/nvidia-uvm"), UVM_MAJOR, 0, 0o666)?;
    w.node(&root.join("dev/nvidia-uvm-tools"), UVM_MAJOR, 1, 0o666)?;
    for gpu in &topo.gpus {
        let info = format!(
            "Model: \t\t {}\nIRQ:   \t\t 0\nGPU UUID: \t {}\nVideo BIOS: \t 92.00.45.00.03\nBus Type: \t PCIe\nDMA Size: \t 47 bits\nDMA Mask: \t 0x7fffffffffff\nBus Location: \t {}\nDevice Minor: \t {}\nGPU Excluded:\t No\n",
            gpu.model.product_name(),
            gpu.uuid,
            gpu.bus_id(),
            gpu.minor
        );
        w.file(
            &root.join(format!(
                "proc/driver/nvidia/gpus/{}/information",
                gpu.bus_id()
            )),
            &info,
        )?;
        w.node(
            &root.join(format!("dev/nvidia{}", gpu.minor)),
            NVIDIA_MAJOR,
            gpu.minor,
            0o666,
        )?;
        for gi in &gpu.instances {
            let g = gi_cap_minor(gpu.minor, gi.gi);
            let gi_dir = caps_dir.join(format!("gpu{}/mig/gi{}", gpu.minor, gi.gi));
            w.file(&gi_dir.join("access"), &cap_access(g))?;
            w.node(
                &root.join(format!("dev/nvidia-caps/nvidia-cap{g}")),
                CAPS_MAJOR,
                g,
                0o444,
            )?;
            for ci in &gi.compute_instances {
                let c = g + 1 + ci.ci;
                w.file(&gi_dir.join(format!("ci{}/access", ci.ci)), &cap_access(c))?;
                w.node(
                    &root.join(format!("dev/nvidia-caps/nvidia-cap{c}")),
                    CAPS_MAJOR,
                    c,
                    0o444,
                )?;
            }
        }
    }
    Ok(())
}

/// Finds the fake NVML library: `$MIGWARD_FAKE_NVML`, else next to the
/// running executable (where `cargo build --workspace` puts it).
pub fn find_fake_nvml() -> Result<PathBuf, SimulateError> {
    if let Some(p) = std::env::var_os("MIGWARD_FAKE_NVML").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    find_beside_exe(FAKE_NVML_FILE).map_err(|exe| SimulateError::NoFakeNvml { exe })
}

/// `file` next to the running executable (or one level up, or in
/// `../lib/migward`), else the executable's path as the error.
fn find_beside_exe(file: &str) -> Result<PathBuf, PathBuf> {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let candidates = [
        dir.join(file),
        dir.join("..").join(file),
        dir.join("../lib/migward").join(file),
    ];
    candidates.into_iter().find(|p| p.is_file()).ok_or(exe)
}

/// Writes the simulated driver under `driver` (a driver root) and the CDI
/// spec describing it into `cdi_dir`.
fn write_driver(
    topo: &Topology,
    text: &str,
    fake_nvml: &Path,
    driver: &Path,
    host_root: &Path,
    cdi_dir: &Path,
) -> Result<(), SimulateError> {
    let w = Writer;
    let [cuda, smi, hook] = DRIVER_FILES.map(|f| {
        find_beside_exe(f).map_err(|exe| SimulateError::NoDriverFile {
            file: f.to_string(),
            exe,
        })
    });
    let (cuda, smi, hook) = (cuda?, smi?, hook?);
    let lib_dir = driver.join(LIB_DIR.trim_start_matches('/'));
    let bin_dir = driver.join("usr/bin");
    let files = [
        (
            fake_nvml,
            lib_dir.join(format!("libnvidia-ml.so.{DRIVER_VERSION}")),
        ),
        (
            cuda.as_path(),
            lib_dir.join(format!("libcuda.so.{DRIVER_VERSION}")),
        ),
        (smi.as_path(), bin_dir.join("nvidia-smi")),
        (hook.as_path(), bin_dir.join("nvidia-cdi-hook")),
    ];
    for (from, to) in &files {
        w.copy(from, to)?;
    }
    w.file(&lib_dir.join("topology.toml"), text)?;
    // The driver's own record of its version, as /proc/driver/nvidia/version.
    w.file(&driver.join("version"), &format!("{DRIVER_VERSION}\n"))?;
    let mounts: Vec<_> = files
        .iter()
        .take(3)
        .map(|(_, to)| to.clone())
        .chain([lib_dir.join("topology.toml")])
        .map(|host| {
            let in_container = Path::new("/").join(host.strip_prefix(driver).unwrap_or(&host));
            serde_json::json!({
                "hostPath": host, "containerPath": in_container,
                "options": ["ro", "nosuid", "nodev", "rbind", "rprivate"],
            })
        })
        .collect();
    let hook_path = bin_dir.join("nvidia-cdi-hook");
    let node = |path: String| serde_json::json!({"path": path, "hostPath": host_root.join(path.trim_start_matches('/'))});
    let common_nodes: Vec<_> = [
        "/dev/nvidiactl",
        "/dev/nvidia-uvm",
        "/dev/nvidia-uvm-tools",
        "/dev/nvidia-modeset",
    ]
    .map(|p| node(p.to_string()))
    .into();
    let mut devices = Vec::new();
    for gpu in &topo.gpus {
        let gpu_node = node(format!("/dev/nvidia{}", gpu.minor));
        for name in [gpu.index.to_string(), gpu.uuid.clone()] {
            devices.push(
                serde_json::json!({"name": name, "containerEdits": {"deviceNodes": [gpu_node]}}),
            );
        }
        let migs = gpu
            .instances
            .iter()
            .flat_map(|gi| gi.compute_instances.iter().map(move |ci| (gi, ci)));
        for (j, (gi, ci)) in migs.enumerate() {
            let g = gi_cap_minor(gpu.minor, gi.gi);
            let nodes = [
                gpu_node.clone(),
                node(format!("/dev/nvidia-caps/nvidia-cap{g}")),
                node(format!("/dev/nvidia-caps/nvidia-cap{}", g + 1 + ci.ci)),
            ];
            for name in [format!("{}:{j}", gpu.index), ci.uuid.clone()] {
                devices.push(
                    serde_json::json!({"name": name, "containerEdits": {"deviceNodes": nodes}}),
                );
            }
        }
    }
    let spec = serde_json::json!({
        "cdiVersion": "0.5.0",
        "kind": crate::driver::cdi::NVIDIA_KIND,
        "devices": devices,
        "containerEdits": {
            "env": ["NVIDIA_VISIBLE_DEVICES=void"],
            "deviceNodes": common_nodes,
            "hooks": [
                {"hookName": "createContainer", "path": hook_path,
                 "args": ["nvidia-cdi-hook", "create-symlinks", "--link",
                          format!("libcuda.so.1::{LIB_DIR}/libcuda.so")]},
                {"hookName": "createContainer", "path": hook_path,
                 "args": ["nvidia-cdi-hook", "update-ldcache", "--folder", LIB_DIR]},
            ],
            "mounts": mounts,
        },
    });
    let yaml = serde_yaml::to_string(&spec).map_err(|e| SimulateError::Write {
        path: cdi_dir.join("nvidia.yaml"),
        source: std::io::Error::other(e),
    })?;
    let path = cdi_dir.join("nvidia.yaml");
    w.file(&path, &yaml)?;
    // Whatever the umask: a spec writable by others is refused.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
        .map_err(|source| SimulateError::Write { path, source })
}

/// What `simulate` wrote.
#[derive(Debug)]
pub struct Simulated {
    pub config: PathBuf,
    pub cdi_spec: PathBuf,
    pub host_root: PathBuf,
    pub nvml_library: PathBuf,
    pub state_dir: PathBuf,
    pub topology: Topology,
}

/// Writes a complete simulated host for `topology` (a built-in name or a
/// file) into `dir`, using the fake NVML library at `fake_nvml`.
pub fn simulate(topology: &str, dir: &Path, fake_nvml: &Path) -> Result<Simulated, SimulateError> {
    let text = crate::topology::source_text(topology)?;
    let topo = Topology::parse(&text, topology)?;
    let dir = absolute(dir);
    let host_root = dir.join("host");
    let nvml_dir = dir.join("nvml");
    let state_dir = dir.join("state");
    write_host_tree(&topo, &host_root)?;
    let w = Writer;
    w.file(&nvml_dir.join("topology.toml"), &text)?;
    w.file(
        &nvml_dir.join("dev-root"),
        &format!("{}\n", host_root.join("dev").display()),
    )?;
    let lib = nvml_dir.join("libnvidia-ml.so.1");
    w.copy(fake_nvml, &lib)?;
    let cdi_dir = dir.join("cdi");
    write_driver(
        &topo,
        &text,
        fake_nvml,
        &dir.join("driver"),
        &host_root,
        &cdi_dir,
    )?;
    std::fs::create_dir_all(&state_dir).map_err(|source| SimulateError::Write {
        path: state_dir.clone(),
        source,
    })?;
    let config = dir.join("config.toml");
    let body = format!(
        "# simulated GPU host written by `migward simulate {topology}`\nhost_root = {:?}\nstate_dir = {:?}\nnvml_library = {:?}\n# driver = \"auto\" finds the simulated driver's CDI spec here\ncdi_dirs = [{:?}]\n",
        host_root.display().to_string(),
        state_dir.display().to_string(),
        lib.display().to_string(),
        cdi_dir.display().to_string()
    );
    w.file(&config, &body)?;
    Ok(Simulated {
        config,
        cdi_spec: cdi_dir.join("nvidia.yaml"),
        host_root,
        nvml_library: lib,
        state_dir,
        topology: topo,
    })
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::procfs::HostFiles;

    #[test]
    fn mig_minors_follow_the_driver_table() {
        let text = mig_minors_text();
        assert_eq!(text.lines().count(), 2 + 32 * 15 * 9);
        let t = crate::inventory::procfs::MigMinors::from_text("mig-minors".into(), text);
        assert_eq!(t.get(0, 1, None).unwrap(), 12);
        assert_eq!(t.get(0, 1, Some(0)).unwrap(), 13);
        assert_eq!(t.get(1, 2, None).unwrap(), 156);
        assert_eq!(t.get(1, 2, Some(0)).unwrap(), 157);
        assert_eq!(t.get(31, 14, Some(7)).unwrap(), 3 + 135 * 31 + 9 * 14 + 8);
    }

    #[test]
    fn host_tree_is_readable_by_host_files() {
        let dir = tempfile::tempdir().unwrap();
        let topo = Topology::load("a100x4-mixed").unwrap();
        write_host_tree(&topo, dir.path()).unwrap();
        let host = HostFiles::new(dir.path());
        let majors = host.majors().unwrap();
        assert_eq!(
            (majors.nvidia, majors.uvm, majors.caps),
            (195, Some(UVM_MAJOR), Some(CAPS_MAJOR))
        );
        assert_eq!(
            host.mig_minors().unwrap().get(3, 7, Some(0)).unwrap(),
            3 + 135 * 3 + 63 + 1
        );
        assert_eq!(host.cap_mode(0, 1, Some(0)), 0o444);
        assert!(dir.path().join("dev/nvidia-caps/nvidia-cap13").exists());
        assert!(dir.path().join("dev/nvidia3").exists());
        assert!(!dir.path().join("dev/nvidia4").exists());
    }
}
