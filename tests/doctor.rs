//! `migward doctor` on simulated hosts seeded with each trap: the expected
//! line, and exit 1 exactly when a problem is found.

mod common;

use common::sim::{stdout, Sim};
use serde_json::Value;
use std::path::Path;

/// `migward doctor --json --root <empty>` (no engines), with `config`.
fn doctor(sim: &Sim, config: &Path) -> (i32, Vec<Value>) {
    let root = sim.path("root");
    std::fs::create_dir_all(&root).unwrap();
    let out = sim
        .cmd()
        .env("MIGWARD_CONFIG", config)
        .args(["doctor", "--json", "--root"])
        .arg(&root)
        .output()
        .unwrap();
    let v: Value =
        serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
    (
        out.status.code().unwrap(),
        v["checks"].as_array().unwrap().clone(),
    )
}

fn find<'a>(checks: &'a [Value], status: &str, text: &str) -> Option<&'a Value> {
    checks
        .iter()
        .find(|c| c["status"] == status && c["message"].as_str().unwrap().contains(text))
}

fn statuses(checks: &[Value]) -> Vec<String> {
    checks
        .iter()
        .filter(|c| c["status"] != "ok")
        .map(|c| format!("{} {}: {}", c["status"], c["check"], c["message"]))
        .collect()
}

#[test]
fn a_clean_simulated_host_is_all_ok() {
    let sim = Sim::new("a100x4-mixed");
    let (code, checks) = doctor(&sim, &sim.config());
    assert_eq!(statuses(&checks), Vec::<String>::new());
    assert_eq!(code, 0);
    for want in [
        "nvml",
        "gpu 3",
        "mig-manager",
        "devices",
        "cap nodes",
        "docker",
        "containerd",
        "crio",
        "podman",
        "leases",
        "cdi",
        "cgroup",
    ] {
        assert!(checks.iter().any(|c| c["check"] == want), "no {want} check");
    }
    assert!(find(&checks, "ok", "driver 550.54.15, 4 GPU(s)").is_some());
    assert!(find(&checks, "ok", "MIG entries match today's instances").is_some());
    let text = sim.run(&["doctor"]);
    assert!(
        stdout(&text)
            .lines()
            .all(|l| l.starts_with("ok ") || l.starts_with("warning ")),
        "{}",
        stdout(&text)
    );
}

#[test]
fn pending_mig_mode_is_a_problem_that_says_reset() {
    let sim = Sim::new("a100-40gb-pending");
    let (code, checks) = doctor(&sim, &sim.config());
    let c =
        find(&checks, "problem", "pending").unwrap_or_else(|| panic!("{:?}", statuses(&checks)));
    assert!(
        c["message"]
            .as_str()
            .unwrap()
            .contains("nvidia-smi -r -i 0"),
        "{c}"
    );
    assert_eq!(code, 1);
}

#[test]
fn a_gpu_without_mig_persistence_off_and_mixed_mig_are_warnings() {
    let topo = "[[gpu]]\nmodel = \"A100-80GB\"\npersistence = false\ninstances = [\"3g.40gb\"]\n\n[[gpu]]\nmodel = \"A40\"\n";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.toml");
    std::fs::write(&file, topo).unwrap();
    let sim = Sim::new(file.to_str().unwrap());
    let (code, checks) = doctor(&sim, &sim.config());
    assert!(
        find(&checks, "warning", "NVIDIA A40").is_some_and(|c| c["message"]
            .as_str()
            .unwrap()
            .contains("does not support MIG")),
        "{:?}",
        statuses(&checks)
    );
    assert!(
        find(&checks, "warning", "persistence mode is off").is_some_and(|c| c["check"] == "gpu 0"),
        "{:?}",
        statuses(&checks)
    );
    assert!(
        find(&checks, "warning", "MIG is on for GPU 0 and off for GPU 1").is_some(),
        "{:?}",
        statuses(&checks)
    );
    assert_eq!(code, 0, "warnings alone exit 0");
}

#[test]
fn mig_manager_stale_cdi_and_corrupt_leases_are_found() {
    let sim = Sim::new("h100-7x1g");
    let wants = sim.path("root/etc/systemd/system/multi-user.target.wants");
    std::fs::create_dir_all(&wants).unwrap();
    std::fs::write(wants.join("nvidia-mig-manager.service"), "[Unit]\n").unwrap();
    // The spec was generated before the instances were re-created: one MIG
    // entry names the caps of another instance.
    let spec = sim.path("cdi/nvidia.yaml");
    let text = std::fs::read_to_string(&spec).unwrap();
    let cap = list_cap(&sim, 0);
    let other = list_cap(&sim, 1);
    let from = format!("path: /dev/nvidia-caps/nvidia-cap{cap}\n");
    let to = format!("path: /dev/nvidia-caps/nvidia-cap{other}\n");
    assert!(text.contains(&from), "{text}");
    std::fs::write(&spec, text.replace(&from, &to)).unwrap();
    std::fs::create_dir_all(sim.path("state/leases")).unwrap();
    std::fs::write(sim.path("state/leases/broken.json"), "{not json").unwrap();

    let (code, checks) = doctor(&sim, &sim.config());
    assert!(
        find(&checks, "warning", "nvidia-mig-manager.service is enabled").is_some(),
        "{:?}",
        statuses(&checks)
    );
    let stale =
        find(&checks, "warning", "is stale").unwrap_or_else(|| panic!("{:?}", statuses(&checks)));
    assert!(
        stale["message"]
            .as_str()
            .unwrap()
            .contains("nvidia-ctk cdi generate"),
        "{stale}"
    );
    assert!(
        find(&checks, "problem", "corrupt lease")
            .is_some_and(|c| c["message"].as_str().unwrap().contains("broken.json")),
        "{:?}",
        statuses(&checks)
    );
    assert_eq!(code, 1);
}

#[test]
fn no_nvml_library_is_a_problem() {
    let sim = Sim::new("h100-7x1g");
    let text = std::fs::read_to_string(sim.config()).unwrap();
    let cfg = sim.path("broken.toml");
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("nvml_library"))
        .collect();
    std::fs::write(
        &cfg,
        format!(
            "{}\nnvml_library = \"/nonexistent/libnvidia-ml.so.1\"\n",
            lines.join("\n")
        ),
    )
    .unwrap();
    let (code, checks) = doctor(&sim, &cfg);
    let c = find(&checks, "problem", "/nonexistent/libnvidia-ml.so.1")
        .unwrap_or_else(|| panic!("{:?}", statuses(&checks)));
    assert_eq!(c["check"], "nvml");
    assert_eq!(code, 1);
}

/// The GI cap minor of MIG device `mig` of GPU 0.
fn list_cap(sim: &Sim, mig: usize) -> u64 {
    sim.list()["gpus"][0]["mig_devices"][mig]["gi_cap_minor"]
        .as_u64()
        .unwrap()
}
