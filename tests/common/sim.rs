//! Shared by binary tests: a simulated GPU host in a temp dir, and the
//! migward binary run against it.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const MIGWARD: &str = env!("CARGO_BIN_EXE_migward");

/// The fake NVML cdylib cargo builds next to the binary.
pub fn fake_nvml() -> PathBuf {
    let lib = Path::new(MIGWARD).with_file_name("libnvidia_ml_fake.so");
    assert!(
        lib.is_file(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        lib.display()
    );
    lib
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
