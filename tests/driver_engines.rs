//! The driver's user-space comes with the instance: inside a migward
//! container, NVML (the simulated driver's, loaded through the dynamic
//! loader from the files the CDI spec mounts) lists exactly the container's
//! instance, by every request path, through real runc, dockerd and podman.

mod common;

use common::engines::{self, load_config, save_config, Dockerd};
use common::runc::Host;
use common::sim::{
    add_nvml_probe, expected_nodes, nvml_seen, probe_lines, shim_link, write_script, NvmlSeen, Sim,
    NVML_PROBE, PROBE,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// A runc bundle at `name` with the probe in its rootfs, running
/// [`NVML_PROBE`] with `env`.
fn probe_bundle(h: &Host, name: &str, env: &[&str]) -> PathBuf {
    let dir = h.sim.path(name);
    std::fs::create_dir_all(&dir).unwrap();
    let bundle = engines::runc_bundle(&dir, &["sh", "-c", NVML_PROBE], env);
    add_nvml_probe(&bundle.join("rootfs"));
    bundle
}

fn run_probe(h: &Host, bundle: &Path, id: &str) -> NvmlSeen {
    let text = engines::expect_success(&h.run(bundle, id), id);
    nvml_seen(&text)
}

/// What a container granted MIG device `uuid` of GPU `gpu` must see.
fn assert_sees_only(seen: &NvmlSeen, gpu: &str, uuid: &str) {
    assert_eq!(seen.exit, 0, "{seen:?}");
    assert_eq!(seen.gpus, [gpu], "{seen:?}");
    assert_eq!(seen.migs, [uuid], "{seen:?}");
    assert_eq!(seen.visible, uuid);
}

fn gpu_uuid(sim: &Sim, gpu: usize) -> String {
    sim.list()["gpus"][gpu]["uuid"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn runc_nvml_lists_exactly_the_granted_instance_by_uuid_profile_and_cdi_nodes() {
    let h = Host::new("a100x4-mixed");
    let (gpu1, uuid) = (gpu_uuid(&h.sim, 1), h.sim.mig_uuid(1, 1));

    // By UUID; the CUDA library loads by its SONAME too (the simulated
    // hook made the links, as NVIDIA's update-ldcache hook does).
    let b = probe_bundle(&h, "by-uuid", &[&format!("NVIDIA_VISIBLE_DEVICES={uuid}")]);
    let seen = run_probe(&h, &b, "drv-uuid");
    assert_sees_only(&seen, &gpu1, &uuid);
    assert_eq!(
        seen.header.as_deref(),
        Some("Driver Version: 550.54.15    CUDA Version: 12.4")
    );
    for lib in ["libcuda.so.1", "libcuda.so.550.54.15", "libnvidia-ml.so.1"] {
        let path = format!("/usr/lib/x86_64-linux-gnu/{lib}");
        assert!(seen.driver_files.contains(&path), "{lib}: {seen:?}");
    }

    // By profile: the one picked is the one NVML shows, and the env names it.
    let b = probe_bundle(&h, "by-profile", &["NVIDIA_VISIBLE_DEVICES=1g.10gb"]);
    let seen = run_probe(&h, &b, "drv-profile");
    assert_eq!((seen.exit, seen.migs.len()), (0, 1), "{seen:?}");
    assert_eq!(seen.visible, seen.migs[0]);
    let one_g: Vec<String> = h.sim.list()["gpus"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["mig_devices"].as_array().unwrap().clone())
        .filter(|m| m["profile"] == "1g.10gb")
        .map(|m| m["uuid"].as_str().unwrap().to_string())
        .collect();
    assert!(one_g.contains(&seen.migs[0]), "{seen:?} not in {one_g:?}");

    // By the nodes a CDI-applying engine writes (gpu2 gi4: G = 3 + 270 + 36).
    let b = probe_bundle(&h, "by-nodes", &["NVIDIA_VISIBLE_DEVICES=void"]);
    let mut cfg = load_config(&b);
    let node = |path: &str, major: u32, minor: u32| json!({"path": path, "type": "c", "major": major, "minor": minor, "fileMode": 438});
    cfg["linux"]["devices"] = json!([
        node("/dev/nvidia2", 195, 2),
        node("/dev/nvidia-caps/nvidia-cap309", 508, 309),
        node("/dev/nvidia-caps/nvidia-cap310", 508, 310),
    ]);
    save_config(&b, &cfg);
    let seen = run_probe(&h, &b, "drv-nodes");
    assert_sees_only(&seen, &gpu_uuid(&h.sim, 2), &h.sim.mig_uuid(2, 3));

    // No request: no driver file, no device, NVML cannot even load.
    let b = probe_bundle(&h, "none", &[]);
    let seen = run_probe(&h, &b, "drv-none");
    assert_eq!(seen.exit, 12, "{seen:?}");
    assert!(
        seen.driver_files.is_empty() && seen.gpus.is_empty(),
        "{seen:?}"
    );
    assert!(h.sim.leases().is_empty(), "every lease released on exit");
}

#[test]
fn a_stale_cdi_spec_still_gives_the_instance_its_own_nodes() {
    let h = Host::new("h100-7x1g");
    // The spec's MIG entries from an older layout: every cap node shifted
    // by one GPU instance. migward takes only the common edits from it.
    let path = h.sim.path("cdi/nvidia.yaml");
    let mut spec: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for dev in spec["devices"].as_array_mut().unwrap() {
        for n in dev["containerEdits"]["deviceNodes"].as_array_mut().unwrap() {
            let p = n["path"].as_str().unwrap().to_string();
            if let Some(minor) = p.strip_prefix("/dev/nvidia-caps/nvidia-cap") {
                let old = minor.parse::<u32>().unwrap() + 9;
                n["path"] = json!(format!("/dev/nvidia-caps/nvidia-cap{old}"));
            }
        }
    }
    std::fs::write(&path, serde_yaml::to_string(&spec).unwrap()).unwrap();
    let uuid = h.sim.mig_uuid(0, 2);
    let env = format!("NVIDIA_VISIBLE_DEVICES={uuid}");
    let dir = h.sim.path("stale");
    std::fs::create_dir_all(&dir).unwrap();
    let script = format!("{PROBE}; {NVML_PROBE}");
    let b = engines::runc_bundle(&dir, &["sh", "-c", &script], &[&env]);
    add_nvml_probe(&b.join("rootfs"));
    let text = engines::expect_success(&h.run(&b, "stale"), "stale spec");
    // gpu0 gi3 (the third 1g): G = 3 + 27 = 30.
    assert_eq!(probe_lines(&text), expected_nodes(0, 30, 31));
    assert_sees_only(&nvml_seen(&text), &gpu_uuid(&h.sim, 0), &uuid);
}

#[test]
fn a_cdi_spec_others_can_write_is_refused_and_nothing_is_held() {
    use std::os::unix::fs::PermissionsExt;
    let h = Host::new("h100-7x1g");
    let path = h.sim.path("cdi/nvidia.yaml");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let b = probe_bundle(
        &h,
        "unsafe",
        &[&format!("NVIDIA_VISIBLE_DEVICES={}", h.sim.mig_uuid(0, 0))],
    );
    let before = std::fs::read(b.join("config.json")).unwrap();
    let err = engines::expect_failure(&h.run(&b, "unsafe"), "writable CDI spec");
    let line = format!(
        "CDI spec {} is writable by group or others (mode 666)",
        path.display()
    );
    assert!(err.contains(&line), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert_eq!(
        std::fs::read(b.join("config.json")).unwrap(),
        before,
        "spec untouched"
    );
    assert!(
        h.sim.leases().is_empty(),
        "no lease left: {:?}",
        h.sim.leases()
    );
}

/// A stand-in for NVIDIA's runtime: records the spec it is handed, then
/// execs runc.
fn nvidia_runtime_stand_in(sim: &Sim) -> (PathBuf, PathBuf) {
    let dir = sim.path("nvidia-bin");
    std::fs::create_dir_all(&dir).unwrap();
    let runtime = dir.join("nvidia-container-runtime");
    let record = sim.path("nvidia-runtime-saw.json");
    write_script(
        &runtime,
        &format!(
            r#"prev=""
for a in "$@"; do
  if [ "$prev" = "--bundle" ] || [ "$prev" = "-b" ]; then cp "$a/config.json" {record}; fi
  prev="$a"
done
exec runc "$@""#,
            record = record.display()
        ),
    );
    (runtime, record)
}

#[test]
fn with_nvidia_runtime_below_migward_only_names_the_granted_uuids() {
    let h = Host::new("a100x4-mixed");
    let (runtime, record) = nvidia_runtime_stand_in(&h.sim);
    // Explicitly, and by `auto` when there is no CDI spec and the runtime
    // below is NVIDIA's.
    let runtime_line = format!("runtime = {:?}", runtime.display().to_string());
    let explicit = h.sim.config_variant(
        "explicit",
        &format!("driver = \"nvidia-runtime\"\n{runtime_line}"),
    );
    let base = std::fs::read_to_string(h.sim.config()).unwrap();
    let no_cdi: String = base
        .lines()
        .filter(|l| !l.starts_with("cdi_dirs"))
        .map(|l| format!("{l}\n"))
        .collect();
    let auto = h.sim.path("auto.toml");
    std::fs::write(&auto, format!("{no_cdi}cdi_dirs = []\n{runtime_line}\n")).unwrap();
    for (name, config) in [("explicit", explicit), ("auto", auto)] {
        let b = probe_bundle(&h, name, &["NVIDIA_VISIBLE_DEVICES=1g.10gb"]);
        let mut cmd = h.shim();
        cmd.env("MIGWARD_CONFIG", &config);
        let out = engines::output(
            cmd.args(["run", "--bundle"])
                .arg(&b)
                .arg(format!("nv-{name}")),
        );
        let text = engines::expect_success(&out, name);
        let saw: Value = serde_json::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();
        let env: Vec<&str> = saw["process"]["env"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .filter(|e| e.starts_with("NVIDIA_VISIBLE_DEVICES="))
            .collect();
        // The profile was picked: the runtime below sees its UUID, once.
        let seen = nvml_seen(&text);
        assert_eq!(
            env,
            [format!("NVIDIA_VISIBLE_DEVICES={}", seen.visible)],
            "{name}"
        );
        assert!(seen.visible.starts_with("MIG-"), "{name}: {seen:?}");
        // migward added no driver file: that is NVIDIA's runtime's job
        // (this stand-in adds none, so NVML cannot load).
        assert!(
            saw["hooks"]["createContainer"].is_null(),
            "{name}: {:?}",
            saw["hooks"]
        );
        assert!(seen.driver_files.is_empty(), "{name}: {seen:?}");
        assert_eq!(seen.exit, 12, "{name}: {seen:?}");
        std::fs::remove_file(&record).unwrap();
    }
}

fn probe_image(d: &Dockerd, sim: &Sim, tag: &str) {
    let rootfs = engines::busybox_rootfs(&sim.path("img-rootfs"));
    add_nvml_probe(&rootfs);
    let tar = sim.path("probe.tar");
    engines::tar_dir(&rootfs, &tar);
    let out = engines::output(d.docker_cmd().arg("import").arg(&tar).arg(tag));
    engines::expect_success(&out, "docker import");
}

#[test]
fn docker_nvml_lists_exactly_the_granted_instance() {
    engines::require_root();
    let sim = Sim::new("a100x4-mixed");
    let link = shim_link(sim.dir.path());
    let mut rt = serde_json::Map::new();
    rt.insert(
        "migward".into(),
        json!({"path": link, "runtimeArgs": ["--migward-config", sim.config()]}),
    );
    let d = Dockerd::start_with(&sim.path("e"), rt).expect("dockerd");
    probe_image(&d, &sim, "local/probe:1");
    let uuid = sim.mig_uuid(2, 0);
    let env = format!("NVIDIA_VISIBLE_DEVICES={uuid}");
    let run = |extra: &[&str]| {
        let mut cmd = d.docker_cmd();
        cmd.args(["run", "--rm", "--network", "none", "--runtime", "migward"]);
        cmd.args(extra);
        cmd.args(["local/probe:1", "sh", "-c", NVML_PROBE]);
        engines::expect_success(&engines::output(&mut cmd), "docker run")
    };
    assert_sees_only(&nvml_seen(&run(&["-e", &env])), &gpu_uuid(&sim, 2), &uuid);
    let seen = nvml_seen(&run(&[]));
    assert_eq!(seen.exit, 12, "no grant, no driver: {seen:?}");
    assert!(seen.driver_files.is_empty(), "{seen:?}");
}

#[test]
fn podman_cdi_device_through_the_shim_gets_the_driver_once() {
    engines::require_root();
    let sim = Sim::new("h100-7x1g");
    // podman 4.3 reads CDI specs only from /etc/cdi: the simulated spec
    // under a unique kind, so parallel tests and a real host's spec stay
    // apart. migward reads the same spec from the simulation's cdi_dirs.
    let vendor = format!("t{}.drv.migward.test", std::process::id());
    let text = std::fs::read_to_string(sim.path("cdi/nvidia.yaml")).unwrap();
    let text = text.replace("kind: nvidia.com/gpu", &format!("kind: {vendor}/gpu"));
    struct Removed(PathBuf);
    impl Drop for Removed {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    std::fs::create_dir_all("/etc/cdi").unwrap();
    let file = Removed(Path::new("/etc/cdi").join(format!("{vendor}.yaml")));
    // Written whole under another name, then renamed: podman in a
    // parallel test must never read half a spec.
    let tmp = file.0.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &file.0).unwrap();

    let wrapper = sim.runtime_wrapper();
    let podman = engines::Podman::new(&sim.path("p")).with_runtime(&wrapper);
    let rootfs = engines::busybox_rootfs(&sim.path("rf"));
    add_nvml_probe(&rootfs);
    let uuid = sim.mig_uuid(0, 5);
    let device = format!("{vendor}/gpu={uuid}");
    let script =
        format!("{NVML_PROBE}; echo mounts=$(grep -c libcuda.so.550 /proc/self/mountinfo)");
    let out = podman.run_rootfs(&rootfs, &["--device", &device], &["sh", "-c", &script]);
    let text = engines::expect_success(&out, "podman --device CDI");
    assert_sees_only(&nvml_seen(&text), &gpu_uuid(&sim, 0), &uuid);
    assert!(
        text.contains("mounts=1\n"),
        "the driver mounted once: {text}"
    );
    assert!(sim.leases().is_empty());
}
