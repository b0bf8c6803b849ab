//! The checks, in the order a person fixes a host: driver, GPUs, device
//! files, engines, leases, driver files (CDI), cgroups.

use super::{Check, Status};
use crate::config::{Config, DriverMode};
use crate::install::{self, Engine};
use crate::inventory::procfs::{HostFiles, MigMinors};
use crate::inventory::{Gpu, Health, Inventory, NvmlInventory};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MIG_MANAGER: &str = "nvidia-mig-manager.service";

/// Every check. `root` is where engine configs, systemd units and hooks
/// are read (`/` on a host); `/proc` and `/dev` come from `host_root`.
pub fn run(config: &Config, root: &Path) -> Vec<Check> {
    let mut out = Vec::new();
    let inv = NvmlInventory::new(&config.nvml_library);
    let gpus = match inv.health().and_then(|h| Ok((h, inv.gpus()?))) {
        Ok((health, gpus)) => {
            out.push(Check::new(
                "nvml",
                Status::Ok,
                format!(
                    "{} loads; driver {}, {} GPU(s)",
                    config.nvml_library.display(),
                    health.driver_version,
                    gpus.len()
                ),
            ));
            gpu_checks(&health, &gpus, &mut out);
            Some(gpus)
        }
        Err(e) => {
            out.push(Check::new("nvml", Status::Problem, crate::chain(&e)));
            None
        }
    };
    out.push(mig_manager(root));
    let host = HostFiles::new(&config.host_root);
    let minors = device_checks(&host, gpus.as_deref(), &mut out);
    for engine in Engine::ALL {
        out.push(engine_check(engine, root));
    }
    out.push(lease_check(config));
    out.push(cdi_check(config, gpus.as_deref(), minors.as_ref()));
    out.push(cgroup_check(root));
    out
}

fn gpu_checks(health: &Health, gpus: &[Gpu], out: &mut Vec<Check>) {
    for (g, h) in gpus.iter().zip(&health.gpus) {
        let name = format!("gpu {}", g.index);
        let what = format!("{} ({})", g.name, g.uuid);
        let m = g.mig_mode;
        let check = if !h.mig_supported {
            Check::new(name.clone(), Status::Warning, format!("{what} does not support MIG: it can only be handed out whole (NVIDIA_VISIBLE_DEVICES={}); MIG needs an A30, A100, H100 or newer", g.uuid))
        } else if m.current != m.pending {
            let (now, then) = (on_off(m.current), on_off(m.pending));
            Check::new(name.clone(), Status::Problem, format!("{what}: MIG mode is {now} now and {then} after a reset (pending): stop every process on it and run `nvidia-smi -r -i {}`, or reboot", g.index))
        } else if m.current && g.mig_devices.is_empty() {
            Check::new(name.clone(), Status::Warning, format!("{what}: MIG is on but there are no MIG instances: create them (`nvidia-smi mig -i {} -cgi 1g.10gb -C`)", g.index))
        } else if m.current {
            Check::new(
                name.clone(),
                Status::Ok,
                format!("{what}: MIG on, {} MIG device(s)", g.mig_devices.len()),
            )
        } else {
            Check::new(
                name.clone(),
                Status::Ok,
                format!("{what}: MIG off (handed out whole)"),
            )
        };
        out.push(check);
        if h.persistence == Some(false) {
            out.push(Check::new(name, Status::Warning, format!("{what}: persistence mode is off: the driver tears the GPU down whenever no process holds it, and MIG mode changes or instance creation may not stick; enable it (`nvidia-smi -i {} -pm 1`, or the nvidia-persistenced service)", g.index)));
        }
    }
    let on: Vec<String> = gpus
        .iter()
        .filter(|g| g.mig_mode.current)
        .map(|g| g.index.to_string())
        .collect();
    let off: Vec<String> = gpus
        .iter()
        .filter(|g| !g.mig_mode.current)
        .map(|g| g.index.to_string())
        .collect();
    if !on.is_empty() && !off.is_empty() {
        out.push(Check::new("mig mixed", Status::Warning, format!("MIG is on for GPU {} and off for GPU {}: a GPU index request and the device plugin's `single` strategy do not mean the same on both; use MIG UUIDs or profiles, the `mixed` strategy, or turn MIG on everywhere", on.join(","), off.join(","))));
    }
}

fn on_off(b: bool) -> &'static str {
    if b {
        "enabled"
    } else {
        "disabled"
    }
}

/// nvidia-mig-manager applies its own MIG layout at every boot.
fn mig_manager(root: &Path) -> Check {
    let dirs = [
        "/etc/systemd/system",
        "/lib/systemd/system",
        "/usr/lib/systemd/system",
    ];
    let enabled = dirs.iter().find_map(|d| {
        let entries = std::fs::read_dir(install::under(root, Path::new(d))).ok()?;
        entries
            .flatten()
            .map(|e| e.path().join(MIG_MANAGER))
            .find(|p| {
                p.parent()
                    .is_some_and(|d| d.to_string_lossy().ends_with(".wants"))
                    && p.exists()
            })
    });
    match enabled {
        Some(p) => Check::new("mig-manager", Status::Warning, format!("{MIG_MANAGER} is enabled ({}): at every boot it re-applies its own MIG config, and may turn MIG off or re-create instances (new UUIDs); make its config match your layout, or `systemctl disable {MIG_MANAGER}`", p.display())),
        None => Check::new("mig-manager", Status::Ok, format!("{MIG_MANAGER} is not enabled")),
    }
}

/// `/proc/devices`, `mig-minors` and the cap nodes of every MIG device.
fn device_checks(
    host: &HostFiles,
    gpus: Option<&[Gpu]>,
    out: &mut Vec<Check>,
) -> Option<MigMinors> {
    let any_mig = gpus.is_some_and(|g| g.iter().any(|g| g.mig_mode.current));
    let majors = match host.majors() {
        Ok(m) => m,
        Err(e) => {
            out.push(Check::new("devices", Status::Problem, crate::chain(&e)));
            return None;
        }
    };
    match host.require(majors, any_mig) {
        Ok((uvm, caps)) => out.push(Check::new(
            "devices",
            Status::Ok,
            format!(
                "majors nvidia {}, nvidia-uvm {uvm}{}",
                majors.nvidia,
                caps.map(|c| format!(", nvidia-caps {c}"))
                    .unwrap_or_default()
            ),
        )),
        Err(e) => out.push(Check::new("devices", Status::Problem, crate::chain(&e))),
    }
    if !any_mig {
        return None;
    }
    let minors = match host.mig_minors() {
        Ok(m) => m,
        Err(e) => {
            out.push(Check::new("mig-minors", Status::Problem, crate::chain(&e)));
            return None;
        }
    };
    let mut missing = Vec::new();
    let mut count = 0;
    for g in gpus.unwrap_or_default() {
        for m in &g.mig_devices {
            for ci in [None, Some(m.ci)] {
                let Ok(minor) = minors.get(g.minor, m.gi, ci) else {
                    missing.push(format!("{} has no line in mig-minors", m.uuid));
                    continue;
                };
                count += 1;
                let node = host.path(&format!("/dev/nvidia-caps/nvidia-cap{minor}"));
                if !is_char_node(&node, majors.caps, minor) {
                    missing.push(format!("{} (minor {minor})", node.display()));
                }
            }
        }
    }
    out.push(if missing.is_empty() {
        Check::new("cap nodes", Status::Ok, format!("{count} MIG capability node(s) present"))
    } else {
        let caps = majors.caps.map(|c| c.to_string()).unwrap_or("<nvidia-caps major>".into());
        Check::new("cap nodes", Status::Problem, format!("missing or wrong: {}: create each (`mknod -m 444 /dev/nvidia-caps/nvidia-cap<minor> c {caps} <minor>`, or `nvidia-ctk system create-device-nodes`)", missing.join(", ")))
    });
    Some(minors)
}

fn is_char_node(path: &Path, major: Option<u32>, minor: u32) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    match std::fs::metadata(path) {
        // Not root (a simulated host written without mknod): plain files stand in.
        Ok(m) if m.is_file() => !nix::unistd::geteuid().is_root(),
        Ok(m) => {
            let rdev = m.rdev();
            m.file_type().is_char_device()
                && Some(libc::major(rdev)) == major
                && libc::minor(rdev) == minor
        }
        Err(_) => false,
    }
}

fn engine_check(engine: Engine, root: &Path) -> Check {
    let bin = engine.program();
    let name = engine.name();
    let installed = if root == Path::new("/") {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
    } else {
        ["/usr/bin", "/usr/sbin", "/usr/local/bin"]
            .iter()
            .any(|d| install::under(root, &Path::new(d).join(bin)).is_file())
    };
    match (installed, install::registered(engine, root)) {
        (_, Some(true)) => Check::new(name, Status::Ok, "migward is registered, as the default runtime"),
        (_, Some(false)) => Check::new(name, Status::Ok, format!("migward is registered (containers that name no runtime do not go through it: `migward install {name} --default`)")),
        (true, None) => Check::new(name, Status::Warning, format!("{bin} is installed but migward is not registered: `migward install {name}`")),
        (false, None) => Check::new(name, Status::Ok, format!("not installed ({bin} not found)")),
    }
}

fn lease_check(config: &Config) -> Check {
    let store = crate::lease::Store::new(&config.state_dir);
    match store.scan() {
        Ok((leases, corrupt)) if !corrupt.is_empty() => {
            let why: Vec<String> = corrupt.iter().map(|e| crate::chain(e)).collect();
            Check::new(
                "leases",
                Status::Problem,
                format!(
                    "{} corrupt lease file(s): {} ({} readable)",
                    corrupt.len(),
                    why.join("; "),
                    leases.len()
                ),
            )
        }
        Ok((leases, _)) => {
            let stale: Vec<&str> = leases
                .iter()
                .filter(|l| !l.live())
                .map(|l| l.holder.container_id.as_str())
                .collect();
            if stale.is_empty() {
                Check::new(
                    "leases",
                    Status::Ok,
                    format!(
                        "{} lease(s), all held by live containers ({})",
                        leases.len(),
                        config.state_dir.display()
                    ),
                )
            } else {
                Check::new("leases", Status::Warning, format!("{} stale lease(s) of containers that are gone ({}): the next request reclaims them, or run `migward leases gc`", stale.len(), stale.join(", ")))
            }
        }
        Err(e) => Check::new("leases", Status::Problem, crate::chain(&e)),
    }
}

/// The CDI spec the driver files come from, and whether its MIG entries
/// still name today's instances and cap nodes.
fn cdi_check(config: &Config, gpus: Option<&[Gpu]>, minors: Option<&MigMinors>) -> Check {
    let wants_spec = matches!(config.driver, DriverMode::Auto | DriverMode::Cdi)
        && !crate::driver::is_nvidia_runtime(&config.runtime);
    let edits = match crate::driver::cdi::find(&config.cdi_dirs) {
        Ok(Some(e)) => e,
        Ok(None) if wants_spec => {
            let status = if config.driver == DriverMode::Cdi {
                Status::Problem
            } else {
                Status::Warning
            };
            return Check::new("cdi", status, "no CDI spec of kind nvidia.com/gpu: GPU containers get device nodes but no driver files; generate one (`nvidia-ctk cdi generate --output=/var/run/cdi/nvidia.yaml`)");
        }
        Ok(None) => {
            return Check::new(
                "cdi",
                Status::Ok,
                "no CDI spec needed (driver files come from NVIDIA's runtime, or none are wanted)",
            )
        }
        Err(e) => return Check::new("cdi", Status::Problem, crate::chain(&e)),
    };
    let file = edits.file;
    let (Some(gpus), Some(minors)) = (gpus, minors) else {
        return Check::new(
            "cdi",
            Status::Ok,
            format!("{}: driver files for GPU containers", file.display()),
        );
    };
    match stale_entries(&file, gpus, minors) {
        Ok(stale) if stale.is_empty() => Check::new("cdi", Status::Ok, format!("{}: driver files for GPU containers; its MIG entries match today's instances", file.display())),
        Ok(stale) => Check::new("cdi", Status::Warning, format!("{} is stale ({}); migward plans nodes from mig-minors, but an engine applying it (`--device nvidia.com/gpu=MIG-…`) gets the wrong ones: regenerate it (`nvidia-ctk cdi generate --output={}`)", file.display(), stale.join("; "), file.display())),
        Err(why) => Check::new("cdi", Status::Warning, format!("{}: cannot read its device entries: {why}", file.display())),
    }
}

/// What in the spec's `MIG-<uuid>` entries disagrees with today's layout.
fn stale_entries(file: &Path, gpus: &[Gpu], minors: &MigMinors) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
    let spec: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| e.to_string())?;
    let mut in_spec: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    for dev in spec["devices"].as_sequence().into_iter().flatten() {
        let Some(name) = dev["name"].as_str().filter(|n| n.starts_with("MIG-")) else {
            continue;
        };
        let caps = dev["containerEdits"]["deviceNodes"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|n| {
                n["path"]
                    .as_str()?
                    .strip_prefix("/dev/nvidia-caps/nvidia-cap")?
                    .parse()
                    .ok()
            })
            .collect();
        in_spec.insert(name.to_ascii_lowercase(), caps);
    }
    let mut stale = Vec::new();
    let mut today = BTreeSet::new();
    for g in gpus {
        for m in &g.mig_devices {
            today.insert(m.uuid.to_ascii_lowercase());
            let want: BTreeSet<u32> = [None, Some(m.ci)]
                .iter()
                .filter_map(|ci| minors.get(g.minor, m.gi, *ci).ok())
                .collect();
            match in_spec.get(&m.uuid.to_ascii_lowercase()) {
                None => stale.push(format!("{} is missing", m.uuid)),
                Some(caps) if *caps != want => stale.push(format!(
                    "{} names caps {} but they are {} today",
                    m.uuid,
                    join(caps),
                    join(&want)
                )),
                Some(_) => {}
            }
        }
    }
    for name in in_spec.keys().filter(|n| !today.contains(*n)) {
        stale.push(format!("{name} no longer exists"));
    }
    Ok(stale)
}

fn join(set: &BTreeSet<u32>) -> String {
    set.iter().map(u32::to_string).collect::<Vec<_>>().join("/")
}

/// The createRuntime hook adds device rules through the cgroup v1 devices
/// controller; on a cgroup v2 host it refuses every GPU container.
fn cgroup_check(root: &Path) -> Check {
    let cg = Path::new("/sys/fs/cgroup");
    let v2 = cg.join("cgroup.controllers").exists() && !cg.join("devices").exists();
    let version = if v2 { "v2" } else { "v1 (devices controller)" };
    let hooks: Vec<PathBuf> = [
        "/etc/containers/oci/hooks.d",
        "/usr/share/containers/oci/hooks.d",
    ]
    .iter()
    .filter_map(|d| std::fs::read_dir(install::under(root, Path::new(d))).ok())
    .flat_map(|e| e.flatten().map(|e| e.path()))
    .filter(|p| create_runtime_hook(p))
    .collect();
    match (v2, hooks.is_empty()) {
        (true, false) => {
            let list: Vec<String> = hooks.iter().map(|p| p.display().to_string()).collect();
            Check::new("cgroup", Status::Problem, format!("cgroup v2, and migward's createRuntime hook is installed ({}): it needs the v1 devices controller and refuses GPU containers here; use the runtime (`migward install podman --default`) or oci-migward-precreate.json instead", list.join(", ")))
        }
        _ => Check::new(
            "cgroup",
            Status::Ok,
            format!(
                "cgroup {version}; {} migward createRuntime hook(s) installed",
                hooks.len()
            ),
        ),
    }
}

fn create_runtime_hook(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
        return false;
    };
    let ours = v["hook"]["path"]
        .as_str()
        .is_some_and(|p| p.ends_with("/migward"));
    let stage = v["stages"]
        .as_array()
        .is_some_and(|s| s.iter().any(|s| s == "createRuntime"));
    ours && stage
}
