//! `migward simulate`: writes a complete simulated GPU host from a topology.
//!
//! Layout of `<dir>`:
//! - `host/`: the host tree (`proc/devices`, `proc/driver/nvidia-caps/mig-minors`,
//!   the capability `access` files, `proc/driver/nvidia/gpus/*/information`,
//!   and `dev/` nodes: real char nodes when root, else regular files);
//! - `nvml/libnvidia-ml.so.1` (the fake NVML library) and `nvml/topology.toml`
//!   next to it, which the fake serves;
//! - `state/`: the lease store;
//! - `config.toml` pointing at all of them.
//!
//! One topology feeds both the fake NVML and the host tree, so they agree.

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
}

/// The `mig-minors` table the driver exposes: 32 GPUs × GI 0..14 × CI 0..7,
/// `G = 3 + 135*gpu + 9*gi`, `C = G + 1 + ci` (DESIGN.md). Only fixtures use
/// the formula; migward itself reads the file.
pub fn mig_minors_text() -> String {
    let mut out = String::from("config 1\nmonitor 2\n");
    for gpu in 0..32u32 {
        for gi in 0..15u32 {
            let g = 3 + 135 * gpu + 9 * gi;
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
            let g = 3 + 135 * gpu.minor + 9 * gi.gi;
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
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let candidates = [
        dir.join(FAKE_NVML_FILE),
        dir.join("..").join(FAKE_NVML_FILE),
        dir.join("../lib/migward").join(FAKE_NVML_FILE),
    ];
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .ok_or(SimulateError::NoFakeNvml { exe })
}

/// What `simulate` wrote.
#[derive(Debug)]
pub struct Simulated {
    pub config: PathBuf,
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
    let lib = nvml_dir.join("libnvidia-ml.so.1");
    // Copy to a temp name and rename: a running process may have the old
    // library mapped.
    let tmp = nvml_dir.join(".libnvidia-ml.so.1.tmp");
    let wrap = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SimulateError::Write { path, source }
    };
    std::fs::copy(fake_nvml, &tmp).map_err(wrap(&tmp))?;
    std::fs::rename(&tmp, &lib).map_err(wrap(&lib))?;
    std::fs::create_dir_all(&state_dir).map_err(wrap(&state_dir))?;
    let config = dir.join("config.toml");
    let body = format!(
        "# simulated GPU host written by `migward simulate {topology}`\nhost_root = {:?}\nstate_dir = {:?}\nnvml_library = {:?}\n",
        host_root.display().to_string(),
        state_dir.display().to_string(),
        lib.display().to_string()
    );
    w.file(&config, &body)?;
    Ok(Simulated {
        config,
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
