//! Shared by binary tests: a simulated GPU host in a temp dir, and the
//! migward binary run against it.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const MIGWARD: &str = env!("CARGO_BIN_EXE_migward");

/// `file` as cargo builds it next to the migward binary.
fn beside_migward(file: &str) -> PathBuf {
    let path = Path::new(MIGWARD).with_file_name(file);
    assert!(
        path.is_file(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        path.display()
    );
    path
}

/// The fake NVML cdylib cargo builds next to the binary.
pub fn fake_nvml() -> PathBuf {
    beside_migward("libnvidia_ml_fake.so")
}

pub struct Sim {
    pub dir: tempfile::TempDir,
}

impl Sim {
    /// `migward simulate <topology> <tmp>`.
    pub fn new(topology: &str) -> Sim {
        let dir = tempfile::Builder::new()
            .prefix("mw")
            .tempdir_in("/tmp")
            .unwrap();
        let out = Command::new(MIGWARD)
            .args(["simulate", topology])
            .arg(dir.path())
            .arg("--nvml-lib")
            .arg(fake_nvml())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "simulate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Sim { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn config(&self) -> PathBuf {
        self.path("config.toml")
    }

    /// A copy of the config with `extra` lines appended, at `<name>.toml`.
    pub fn config_variant(&self, name: &str, extra: &str) -> PathBuf {
        let base = std::fs::read_to_string(self.config()).unwrap();
        let path = self.path(&format!("{name}.toml"));
        std::fs::write(&path, format!("{base}{extra}\n")).unwrap();
        path
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(MIGWARD);
        c.env("MIGWARD_CONFIG", self.config());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// `migward list --json`.
    pub fn list(&self) -> Value {
        let out = self.run(&["list", "--json"]);
        assert!(
            out.status.success(),
            "list: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// `migward leases --json`: the leases array.
    pub fn leases(&self) -> Vec<Value> {
        let out = self.run(&["leases", "--json"]);
        assert!(out.status.success(), "leases: {}", stderr(&out));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["leases"].as_array().unwrap().clone()
    }

    /// Takes a lease outside any engine (`leases acquire`), held by this
    /// test process; returns what was granted (NVIDIA_VISIBLE_DEVICES).
    pub fn hold(&self, id: &str, ids: &str) -> Output {
        let me = std::process::id().to_string();
        self.run(&["leases", "acquire", id, ids, "--holder-pid", &me])
    }

    /// UUID of MIG device `mig` of GPU `gpu`, from `list --json`.
    /// A one-line wrapper that runs the shim with this host's config, for
    /// engines that cannot pass runtime args (ctr, podman `--runtime`), as
    /// a node's `/usr/bin/migward-runtime` reads the default config.
    pub fn runtime_wrapper(&self) -> PathBuf {
        let wrapper = self.path("migward-runc");
        write_script(
            &wrapper,
            &format!(
                "exec {MIGWARD} runtime --migward-config {} \"$@\"",
                self.config().display()
            ),
        );
        wrapper
    }

    /// Points the config's `nvml_library` at a file that is not there, as
    /// on a host without the driver; returns that path.
    pub fn lose_nvml(&self) -> &'static str {
        const GONE: &str = "/nonexistent/libnvidia-ml.so.1";
        let config = std::fs::read_to_string(self.config()).unwrap();
        let broken: String = config
            .lines()
            .map(|l| {
                if l.starts_with("nvml_library") {
                    format!("nvml_library = {GONE:?}\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        assert_ne!(broken, config, "the sim config names nvml_library");
        std::fs::write(self.config(), broken).unwrap();
        GONE
    }

    pub fn mig_uuid(&self, gpu: usize, mig: usize) -> String {
        self.list()["gpus"][gpu]["mig_devices"][mig]["uuid"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A container command that prints, for every GPU char node under /dev, its
/// path and what opening it gives, then `probe-done`.
pub const PROBE: &str = r#"for f in /dev/nvidia* /dev/nvidia-caps/* /dev/other-*; do [ -c "$f" ] || continue; if cat "$f" >/dev/null 2>/tmp/err; then echo "$f: opened"; else echo "$f: $(cat /tmp/err)"; fi; done; echo probe-done"#;

/// What opening a node gives when the cgroup allows it and no driver exists.
pub const ENXIO: &str = "No such device or address";

/// The sorted node lines of PROBE output.
pub fn probe_lines(out: &str) -> Vec<String> {
    assert!(out.contains("probe-done"), "probe did not finish: {out}");
    let mut lines: Vec<String> = out
        .lines()
        .filter(|l| l.starts_with("/dev/"))
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

/// The PROBE lines for a MIG device on GPU `minor` with cap minors `g`, `c`:
/// each node present and opening with ENXIO, `nvidia-modeset` among them (a
/// common node of the simulated driver's CDI spec, which `driver = "auto"`
/// applies in the shim and the precreate hook).
pub fn expected_nodes(minor: u32, g: u32, c: u32) -> Vec<String> {
    let mut v = expected_plan_nodes(minor, g, c);
    let p = "/dev/nvidia-modeset";
    v.push(format!("{p}: cat: can't open '{p}': {ENXIO}"));
    v.sort();
    v
}

/// As [`expected_nodes`], without the driver's common nodes: what the plan
/// alone gives (the createRuntime hook, which cannot add the driver).
pub fn expected_plan_nodes(minor: u32, g: u32, c: u32) -> Vec<String> {
    let mut v: Vec<String> = [
        format!("/dev/nvidia{minor}"),
        format!("/dev/nvidia-caps/nvidia-cap{g}"),
        format!("/dev/nvidia-caps/nvidia-cap{c}"),
        "/dev/nvidiactl".into(),
        "/dev/nvidia-uvm".into(),
        "/dev/nvidia-uvm-tools".into(),
    ]
    .into_iter()
    .map(|p| format!("{p}: cat: can't open '{p}': {ENXIO}"))
    .collect();
    v.sort();
    v
}

/// A podman run that failed for want of NVML (`lose_nvml`) shows
/// migward's line and podman's generic runtime failure, 126, never 127
/// ("command not found"), which podman gives whenever the text says "no
/// such file or directory".
pub fn assert_podman_shows_missing_nvml(out: &Output, gone: &str, what: &str) {
    let err = super::engines::expect_failure(out, what);
    assert!(
        err.contains(&format!("cannot load the NVML library {gone}")),
        "{err}"
    );
    assert!(!err.to_ascii_lowercase().contains("no such file"), "{err}");
    assert_eq!(out.status.code(), Some(126), "{err}");
}

/// A `migward-runtime` link to the binary in `dir`.
pub fn shim_link(dir: &Path) -> PathBuf {
    let link = dir.join("migward-runtime");
    std::os::unix::fs::symlink(MIGWARD, &link).unwrap();
    link
}

/// Writes an executable shell script at `path`.
pub fn write_script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

/// A container command that lists what NVML shows it (the simulated
/// `nvidia-smi -L`, placed in the rootfs by [`add_nvml_probe`]), the driver
/// files it was given, and its `NVIDIA_VISIBLE_DEVICES`.
pub const NVML_PROBE: &str = r#"nvml-probe; echo "probe-exit=$?"; for f in /usr/lib/x86_64-linux-gnu/lib*; do [ -e "$f" ] && echo "driver-file $f"; done; echo "NVD=$NVIDIA_VISIBLE_DEVICES"; echo probe-done"#;

/// The nvidia-smi stand-in cargo builds next to the binary (package
/// `sim-driver`): the probe that loads NVML through the dynamic loader.
pub fn nvml_probe_bin() -> PathBuf {
    beside_migward("sim-nvidia-smi")
}

/// Puts the NVML probe at `/usr/local/bin/nvml-probe` in `rootfs`, with
/// the C libraries it and the driver's libraries need (the dynamic loader,
/// libc, libgcc_s), copied from the host. The driver's own files are not
/// in the image: they come with the grant.
pub fn add_nvml_probe(rootfs: &Path) {
    let probe = nvml_probe_bin();
    let mut libs = std::collections::BTreeSet::new();
    for bin in [probe.clone(), fake_nvml()] {
        let out = Command::new("ldd").arg(&bin).output().expect("ldd");
        assert!(out.status.success(), "ldd {}", bin.display());
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)` or
            // `/lib64/ld-linux-x86-64.so.2 (0x…)`.
            let path = line.split("=>").last().unwrap_or("").trim();
            let path = path.split(" (").next().unwrap_or("").trim();
            if path.starts_with('/') {
                libs.insert(PathBuf::from(path));
            }
        }
    }
    assert!(libs.len() >= 2, "ldd found the loader and libc: {libs:?}");
    for lib in libs.iter().map(|l| l.as_path()).chain([probe.as_path()]) {
        let to = if lib == probe {
            rootfs.join("usr/local/bin/nvml-probe")
        } else {
            rootfs.join(lib.strip_prefix("/").unwrap())
        };
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(lib, &to).unwrap_or_else(|e| panic!("copy {}: {e}", lib.display()));
    }
}

/// What [`NVML_PROBE`] printed.
#[derive(Debug, Default, PartialEq)]
pub struct NvmlSeen {
    /// The UUIDs of the GPUs and MIG devices NVML listed.
    pub gpus: Vec<String>,
    pub migs: Vec<String>,
    /// The probe's exit code (12: libnvidia-ml.so.1 could not be loaded).
    pub exit: i32,
    /// `Driver Version: … CUDA Version: …`, when NVML loaded.
    pub header: Option<String>,
    /// The driver libraries present in the container.
    pub driver_files: Vec<String>,
    pub visible: String,
}

pub fn nvml_seen(out: &str) -> NvmlSeen {
    assert!(out.contains("probe-done"), "probe did not finish: {out}");
    let uuid = |l: &str| {
        l.split("(UUID: ")
            .nth(1)
            .map(|r| r.trim_end_matches(')').to_string())
    };
    let mut seen = NvmlSeen::default();
    for l in out.lines() {
        if l.starts_with("GPU ") {
            seen.gpus.extend(uuid(l));
        } else if l.trim_start().starts_with("MIG ") {
            seen.migs.extend(uuid(l));
        } else if let Some(code) = l.strip_prefix("probe-exit=") {
            seen.exit = code.parse().unwrap();
        } else if l.starts_with("Driver Version:") {
            seen.header = Some(l.to_string());
        } else if let Some(f) = l.strip_prefix("driver-file ") {
            seen.driver_files.push(f.to_string());
        } else if let Some(v) = l.strip_prefix("NVD=") {
            seen.visible = v.to_string();
        }
    }
    seen
}
