//! The OCI hook with runc (hooks in config.json) and podman (hooks.d).

mod common;

use common::engines::{self, load_config, runc_bundle, save_config, Podman};
use common::sim::{
    assert_podman_shows_missing_nvml, expected_nodes, expected_plan_nodes, probe_lines, stderr,
    write_script, Sim, MIGWARD, PROBE,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

fn hook_entry(sim: &Sim, stage: &str) -> Value {
    json!({
        "path": MIGWARD,
        "args": ["migward", "--config", sim.config(), "hook", stage],
        "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
        "timeout": 10,
    })
}

/// A runc bundle whose config.json carries migward's createRuntime and
/// poststop hooks.
fn hooked_bundle(sim: &Sim, name: &str, env: &[&str], args: &[&str]) -> PathBuf {
    let dir = sim.path(name);
    std::fs::create_dir_all(&dir).unwrap();
    let bundle = runc_bundle(&dir, args, env);
    let mut cfg = load_config(&bundle);
    cfg["hooks"] = json!({
        "createRuntime": [hook_entry(sim, "createRuntime")],
        "poststop": [hook_entry(sim, "poststop")],
    });
    save_config(&bundle, &cfg);
    bundle
}

fn runc(root: &Path, args: &[&str]) -> std::process::Output {
    engines::output(Command::new("runc").arg("--root").arg(root).args(args))
}

#[test]
fn runc_hook_binds_nodes_and_holds_the_instance() {
    engines::require_root();
    let sim = Sim::new("a100x4-mixed");
    let root = sim.path("runc");
    let uuid = sim.mig_uuid(1, 1);
    let cuda = format!("CUDA_VISIBLE_DEVICES={uuid}");
    let bundle = hooked_bundle(&sim, "probe", &[&cuda], &["sh", "-c", PROBE]);
    let out = runc(
        &root,
        &["run", "--bundle", bundle.to_str().unwrap(), "hook-probe"],
    );
    let text = engines::expect_success(&out, "runc run with the hook");
    assert_eq!(probe_lines(&text), expected_plan_nodes(1, 156, 157));
    assert_eq!(
        sim.leases(),
        Vec::<Value>::new(),
        "poststop released the lease"
    );

    // A holder, then a second container for the same instance.
    let holder = hooked_bundle(&sim, "holder", &[&cuda], &["sleep", "300"]);
    let log = std::fs::File::create(sim.path("holder.log")).unwrap();
    let status = Command::new("runc")
        .arg("--root")
        .arg(&root)
        .args([
            "run",
            "-d",
            "--bundle",
            holder.to_str().unwrap(),
            "hook-holder",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(sim.path("holder.log")).unwrap()
    );
    let second = hooked_bundle(&sim, "second", &[&cuda], &["true"]);
    let out = runc(
        &root,
        &["run", "--bundle", second.to_str().unwrap(), "hook-second"],
    );
    let err = engines::expect_failure(&out, "second container");
    assert!(
        err.contains("container hook-second refused")
            && err.contains("is held by container hook-holder"),
        "{err}"
    );
    assert!(
        runc(&root, &["state", "hook-second"]).status.code() != Some(0),
        "the refused container exists"
    );
    engines::expect_success(&runc(&root, &["kill", "hook-holder", "KILL"]), "kill");
    engines::wait_for("hook-holder to stop after SIGKILL", || {
        String::from_utf8_lossy(&runc(&root, &["state", "hook-holder"]).stdout).contains("stopped")
    });
    engines::expect_success(
        &runc(&root, &["delete", "hook-holder"]),
        "delete runs poststop",
    );
    assert_eq!(sim.leases(), Vec::<Value>::new());
    engines::expect_success(
        &runc(
            &root,
            &["run", "--bundle", second.to_str().unwrap(), "hook-second"],
        ),
        "second after release",
    );
}

#[test]
fn runc_hook_refuses_unsafe_rootfs_paths() {
    engines::require_root();
    let sim = Sim::new("h100-7x1g");
    let root = sim.path("runc");
    let uuid = sim.mig_uuid(0, 0);
    let cuda = format!("CUDA_VISIBLE_DEVICES={uuid}");
    let host_dir = sim.path("host-victim");
    std::fs::create_dir_all(&host_dir).unwrap();
    // Without runc's /dev tmpfs the image's own /dev is what the hook meets.
    type Setup<'a> = Box<dyn Fn(&Path) + 'a>;
    let cases: Vec<(&str, Setup, &str)> = vec![
        (
            "caps-symlink",
            Box::new(|rootfs: &Path| {
                std::os::unix::fs::symlink(&host_dir, rootfs.join("dev/nvidia-caps")).unwrap()
            }),
            "is a symlink or leaves the container's rootfs",
        ),
        (
            "node-symlink",
            Box::new(|rootfs: &Path| {
                std::os::unix::fs::symlink(host_dir.join("x"), rootfs.join("dev/nvidiactl"))
                    .unwrap()
            }),
            "is a symlink or leaves the container's rootfs",
        ),
        (
            "node-file",
            Box::new(|rootfs: &Path| {
                std::fs::write(rootfs.join("dev/nvidiactl"), "not a device").unwrap()
            }),
            "already exists as a regular file",
        ),
    ];
    for (name, setup, want) in cases {
        let bundle = hooked_bundle(&sim, name, &[&cuda], &["true"]);
        let mut cfg = load_config(&bundle);
        cfg["mounts"]
            .as_array_mut()
            .unwrap()
            .retain(|m| m["destination"] != "/dev");
        save_config(&bundle, &cfg);
        setup(&bundle.join("rootfs"));
        let out = runc(&root, &["run", "--bundle", bundle.to_str().unwrap(), name]);
        let err = engines::expect_failure(&out, name);
        assert!(err.contains(want), "{name}: {err}");
        assert_eq!(
            std::fs::read_dir(&host_dir).unwrap().count(),
            0,
            "{name}: the host dir changed"
        );
        assert_eq!(
            sim.leases(),
            Vec::<Value>::new(),
            "{name}: a failed hook kept its lease"
        );
    }
}

#[test]
fn hook_refuses_stages_inside_the_container() {
    let sim = Sim::new("h100-7x1g");
    for stage in ["createContainer", "startContainer"] {
        let out = sim.run(&["hook", stage]);
        assert!(!out.status.success());
        assert!(stderr(&out).contains("CVE-2025-23266"), "{}", stderr(&out));
    }
}

/// The shipped hooks.d files, pointed at this build and this simulated host.
fn hooks_dir(sim: &Sim, files: &[&str]) -> PathBuf {
    let dir = sim.path("hooks.d");
    std::fs::create_dir_all(&dir).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("hooks");
    for f in files {
        let mut hook: Value =
            serde_json::from_str(&std::fs::read_to_string(shipped.join(f)).unwrap()).unwrap();
        assert!(
            hook["hook"]["path"].as_str().unwrap().starts_with('/'),
            "{f}: path must be absolute"
        );
        assert!(hook["hook"]["timeout"].is_u64(), "{f}: timeout");
        hook["hook"]["path"] = json!(MIGWARD);
        hook["hook"]["env"] = json!([
            "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
            format!("MIGWARD_CONFIG={}", sim.config().display())
        ]);
        std::fs::write(dir.join(f), serde_json::to_vec_pretty(&hook).unwrap()).unwrap();
    }
    dir
}

fn podman_holder_cycle(
    sim: &Sim,
    podman: &Podman,
    rootfs: &Path,
    request: &[&str],
    expected: Vec<String>,
) {
    let out = podman.run_rootfs(rootfs, request, &["sh", "-c", PROBE]);
    let text = engines::expect_success(&out, "podman run with a request");
    assert_eq!(probe_lines(&text), expected);
    let out = podman.run_rootfs(rootfs, &[], &["sh", "-c", PROBE]);
    assert_eq!(
        probe_lines(&engines::expect_success(
            &out,
            "podman run without a request"
        )),
        Vec::<String>::new()
    );

    let mut args = vec!["run", "-d", "--name", "holder", "--network", "none"];
    args.extend_from_slice(request);
    let rootfs_s = rootfs.to_str().unwrap();
    args.extend_from_slice(&["--rootfs", rootfs_s, "sleep", "300"]);
    engines::expect_success(
        &engines::output(podman.cmd().args(&args)),
        "podman run -d holder",
    );
    let out = podman.run_rootfs(rootfs, request, &["true"]);
    let err = engines::expect_failure(&out, "second podman container");
    assert!(err.contains("is held by container"), "{err}");
    engines::expect_success(
        &engines::output(podman.cmd().args(["stop", "-t", "1", "holder"])),
        "podman stop",
    );
    engines::expect_success(
        &engines::output(podman.cmd().args(["rm", "holder"])),
        "podman rm",
    );
    engines::expect_success(
        &podman.run_rootfs(rootfs, request, &["true"]),
        "second after stop",
    );
    assert_eq!(
        sim.leases(),
        Vec::<Value>::new(),
        "a lease outlived its container"
    );
}

/// One podman setup (simulated host, busybox rootfs, the shipped hooks.d
/// `files`) and the holder cycle for MIG device `mig` of GPU `gpu`, asked
/// for with `flag` (`--annotation` or `--env`) and `key`.
fn podman_case(
    topology: &str,
    files: &[&str],
    (gpu, mig): (usize, usize),
    flag: &str,
    key: &str,
    expected: Vec<String>,
) {
    engines::require_root();
    let sim = Sim::new(topology);
    let rootfs = engines::busybox_rootfs(&sim.path("rf"));
    let hooks = hooks_dir(&sim, files);
    let podman = Podman::new(&sim.path("p")).with_hooks_dir(&hooks);
    let request = format!("{key}={}", sim.mig_uuid(gpu, mig));
    podman_holder_cycle(&sim, &podman, &rootfs, &[flag, &request], expected);
}

#[test]
fn podman_hooks_dir_by_annotation() {
    let files = ["oci-migward-annotation.json", "oci-migward-poststop.json"];
    podman_case(
        "a100x4-mixed",
        &files,
        (0, 0),
        "--annotation",
        "migward/devices",
        expected_plan_nodes(0, 12, 13),
    );
}

#[test]
fn podman_hooks_dir_by_env() {
    let files = ["oci-migward-env.json", "oci-migward-poststop.json"];
    // gpu3 gi7: G = 3 + 135*3 + 63 = 471.
    podman_case(
        "a100x4-mixed",
        &files,
        (3, 6),
        "--env",
        "CUDA_VISIBLE_DEVICES",
        expected_plan_nodes(3, 471, 472),
    );
}

#[test]
fn podman_precreate_hook() {
    // gpu0 gi3: G = 3 + 27 = 30.
    podman_case(
        "h100-7x1g",
        &["oci-migward-precreate.json"],
        (0, 2),
        "--env",
        "CUDA_VISIBLE_DEVICES",
        expected_nodes(0, 30, 31),
    );
}

#[test]
fn hook_killed_after_the_lease_leaves_nothing_held() {
    engines::require_root();
    let sim = Sim::new("h100-7x1g");
    let root = sim.path("runc");
    let cuda = format!("CUDA_VISIBLE_DEVICES={}", sim.mig_uuid(0, 1));
    // A hook that takes the lease, then hangs until runc's 1 s hook timeout
    // SIGKILLs it; runc then fails the create and kills the container init.
    let wrapper = sim.path("slow-hook");
    write_script(
        &wrapper,
        &format!(
            "{MIGWARD} --config {} hook createRuntime && exec sleep 60",
            sim.config().display()
        ),
    );
    let bundle = hooked_bundle(&sim, "killed", &[&cuda], &["true"]);
    let mut cfg = load_config(&bundle);
    cfg["hooks"]["createRuntime"] = json!([{"path": wrapper, "args": ["slow-hook"], "timeout": 1}]);
    // No poststop either (runc would run it on the failed create): only the
    // liveness rule can free the instance now.
    cfg["hooks"].as_object_mut().unwrap().remove("poststop");
    save_config(&bundle, &cfg);
    let out = runc(
        &root,
        &["run", "--bundle", bundle.to_str().unwrap(), "killed-hook"],
    );
    engines::expect_failure(&out, "hook past its timeout");
    assert_eq!(sim.leases().len(), 1, "the killed hook had taken its lease");
    let next = hooked_bundle(&sim, "next", &[&cuda], &["true"]);
    let out = runc(&root, &["run", "--bundle", next.to_str().unwrap(), "next"]);
    engines::expect_success(&out, "next container for the instance");
    // runc drops a successful hook's stderr: the reclaim shows in the log.
    let log = std::fs::read_to_string(sim.path("state/events.log")).unwrap();
    assert!(
        log.contains("\"event\":\"reclaim\",\"container_id\":\"killed-hook\""),
        "{log}"
    );
    assert_eq!(sim.leases(), Vec::<Value>::new());
}

#[test]
fn hook_refuses_a_spec_that_already_grants_another_instance() {
    engines::require_root();
    let sim = Sim::new("h100-7x1g");
    let root = sim.path("runc");
    let cuda = format!("CUDA_VISIBLE_DEVICES={}", sim.mig_uuid(0, 0));
    let bundle = hooked_bundle(&sim, "foreign", &[&cuda], &["true"]);
    let mut cfg = load_config(&bundle);
    // `podman run --device /dev/nvidia-caps/nvidia-cap30:/dev/x`: gi3's cap.
    cfg["linux"]["devices"] = json!([{"path": "/dev/x", "type": "c", "major": 508, "minor": 30, "fileMode": 0o666, "uid": 0, "gid": 0}]);
    save_config(&bundle, &cfg);
    let out = runc(
        &root,
        &["run", "--bundle", bundle.to_str().unwrap(), "foreign"],
    );
    let err = engines::expect_failure(&out, "spec with another tenant's cap");
    assert!(
        err.contains(
            "already grants device /dev/x (c 508:30), which is not part of its GPU request"
        ),
        "{err}"
    );
    assert_eq!(sim.leases(), Vec::<Value>::new());
}

#[test]
fn hook_refuses_gpu_rules_without_a_request() {
    engines::require_root();
    let sim = Sim::new("h100-7x1g");
    let root = sim.path("runc");
    // No request, but `--device-cgroup-rule 'c 508:* rwm'`: with CAP_MKNOD
    // the container could make any cap node itself, unleased.
    let bundle = hooked_bundle(&sim, "rules", &[], &["true"]);
    let mut cfg = load_config(&bundle);
    cfg["linux"]["resources"]["devices"]
        .as_array_mut()
        .unwrap()
        .push(json!({"allow": true, "type": "c", "major": 508, "access": "rwm"}));
    save_config(&bundle, &cfg);
    let out = runc(
        &root,
        &["run", "--bundle", bundle.to_str().unwrap(), "rules"],
    );
    let err = engines::expect_failure(&out, "GPU rule without a request");
    assert!(
        err.contains("container rules: its spec already grants cgroup rule c 508:*, which is not part of its GPU request"),
        "{err}"
    );
    // The shared nodes alone open no GPU and pass.
    let mut cfg = load_config(&bundle);
    cfg["linux"]["resources"]["devices"]
        .as_array_mut()
        .unwrap()
        .retain(|r| r["major"] != 508);
    cfg["linux"]["devices"] = json!([{"path": "/dev/nvidiactl", "type": "c", "major": 195, "minor": 255, "fileMode": 0o666, "uid": 0, "gid": 0}]);
    save_config(&bundle, &cfg);
    let out = runc(
        &root,
        &["run", "--bundle", bundle.to_str().unwrap(), "shared-only"],
    );
    engines::expect_success(&out, "nvidiactl alone");
    assert_eq!(sim.leases(), Vec::<Value>::new());
}

#[test]
fn podman_hooks_dir_leases_device_nodes_passed_without_a_request() {
    engines::require_root();
    let sim = Sim::new("a100x4-mixed");
    let rootfs = engines::busybox_rootfs(&sim.path("rf"));
    let hooks = hooks_dir(&sim, &["oci-migward-env.json", "oci-migward-poststop.json"]);
    let podman = Podman::new(&sim.path("p")).with_hooks_dir(&hooks);
    // gpu1 gi2: G = 3 + 135 + 18 = 156; no env, no annotation.
    let devices: Vec<String> = [
        "/dev/nvidia1",
        "/dev/nvidia-caps/nvidia-cap156",
        "/dev/nvidia-caps/nvidia-cap157",
    ]
    .iter()
    .map(|p| format!("{}:{p}", sim.path(&format!("host{p}")).display()))
    .collect();
    let mut request = Vec::new();
    for d in &devices {
        request.extend(["--device", d.as_str()]);
    }
    podman_holder_cycle(
        &sim,
        &podman,
        &rootfs,
        &request,
        expected_plan_nodes(1, 156, 157),
    );

    // A cap node alone is half a device: refused, naming the node.
    let out = podman.run_rootfs(&rootfs, &["--device", &devices[1]], &["true"]);
    let err = engines::expect_failure(&out, "GI cap alone");
    assert!(
        err.contains("device nodes in the spec: /dev/nvidia-caps/nvidia-cap156 (c 508:156) is the cap of GPU instance 2 on GPU minor 1"),
        "{err}"
    );
    assert_eq!(sim.leases(), Vec::<Value>::new());
}

#[test]
fn podman_precreate_picks_a_free_instance_for_a_profile() {
    engines::require_root();
    let sim = Sim::new("h100-7x1g");
    let rootfs = engines::busybox_rootfs(&sim.path("rf"));
    let hooks = hooks_dir(&sim, &["oci-migward-precreate.json"]);
    let podman = Podman::new(&sim.path("p")).with_hooks_dir(&hooks);
    for name in ["first", "second"] {
        let out = engines::output(podman.cmd().args([
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "none",
            "--env",
            "NVIDIA_VISIBLE_DEVICES=1g.10gb",
            "--rootfs",
            rootfs.to_str().unwrap(),
            "sleep",
            "300",
        ]));
        engines::expect_success(&out, name);
    }
    let held = sim.leases();
    let uuid_of = |l: &Value| l["units"][0]["mig_uuid"].as_str().unwrap().to_string();
    let mut got: Vec<String> = held.iter().map(uuid_of).collect();
    got.sort();
    let mut want = vec![sim.mig_uuid(0, 0), sim.mig_uuid(0, 1)];
    want.sort();
    assert_eq!(got, want, "{held:?}");
    // Each container's env names the instance it holds (its init's env,
    // which came from the edited spec; `exec` gets podman's stored env).
    for l in &held {
        let id = l["container_id"].as_str().unwrap();
        let out = engines::output(podman.cmd().args([
            "exec",
            id,
            "sh",
            "-c",
            "tr '\\0' '\\n' </proc/1/environ | grep ^NVIDIA_VISIBLE_DEVICES=",
        ]));
        assert_eq!(
            engines::expect_success(&out, "exec").trim(),
            format!("NVIDIA_VISIBLE_DEVICES={}", uuid_of(l))
        );
    }
    engines::expect_success(
        &engines::output(
            podman
                .cmd()
                .args(["rm", "-f", "-t", "0", "first", "second"]),
        ),
        "rm",
    );
    assert_eq!(sim.leases(), Vec::<Value>::new());
}

/// The hook front end and the driver: `precreate` edits the spec before
/// the container exists, so the driver's files come with the grant; the
/// `createRuntime` hook alone cannot add mounts to a live container, so the
/// container gets its nodes and no driver (CDI in the engine, or precreate,
/// is the way there; README).
#[test]
fn podman_precreate_gives_the_driver_and_create_runtime_alone_cannot() {
    use common::sim::{add_nvml_probe, nvml_seen, NVML_PROBE};
    engines::require_root();
    let sim = Sim::new("a100x4-mixed");
    let uuid = sim.mig_uuid(1, 3);
    let gpu1 = sim.list()["gpus"][1]["uuid"].as_str().unwrap().to_string();
    let env = format!("CUDA_VISIBLE_DEVICES={uuid}");
    let cases: [(&str, &[&str]); 2] = [
        ("precreate", &["oci-migward-precreate.json"]),
        (
            "create-runtime",
            &["oci-migward-env.json", "oci-migward-poststop.json"],
        ),
    ];
    for (name, files) in cases {
        // A rootfs each: runc leaves the mountpoints of the driver's files
        // (and the hook's links) in a `--rootfs` directory.
        let rootfs = engines::busybox_rootfs(&sim.path(&format!("rf-{name}")));
        add_nvml_probe(&rootfs);
        let hooks = hooks_dir(&sim, files);
        let podman = Podman::new(&sim.path(&format!("p-{name}"))).with_hooks_dir(&hooks);
        let out = podman.run_rootfs(&rootfs, &["--env", &env], &["sh", "-c", NVML_PROBE]);
        let seen = nvml_seen(&engines::expect_success(&out, name));
        if name == "precreate" {
            assert_eq!(
                (seen.exit, &seen.gpus, &seen.migs),
                (0, &vec![gpu1.clone()], &vec![uuid.clone()]),
                "{seen:?}"
            );
        } else {
            assert_eq!(
                seen.exit, 12,
                "no driver files from the createRuntime hook: {seen:?}"
            );
            assert!(seen.driver_files.is_empty(), "{seen:?}");
        }
        std::fs::remove_dir_all(&hooks).unwrap();
        assert!(sim.leases().is_empty(), "{name}: released");
    }
}

/// A container in its own user namespace: nodes made with mknod on the
/// /dev tmpfs that runc mounts inside that namespace are `nodev` for the
/// kernel (Permission denied on open), so the hook bind-mounts the host's
/// nodes instead; opening one reaches the (absent) driver: ENXIO.
#[test]
fn podman_user_namespaced_container_gets_its_instance_through_the_hook() {
    engines::require_root();
    let sim = Sim::new("a100x4-mixed");
    let rootfs = engines::busybox_rootfs(&sim.path("rf"));
    // The image belongs to the namespace's root, as podman's own
    // id-mapped storage would make it.
    engines::expect_success(
        &engines::output(
            Command::new("chown")
                .args(["-R", "100000:100000"])
                .arg(&rootfs),
        ),
        "chown the rootfs",
    );
    let hooks = hooks_dir(&sim, &["oci-migward-env.json", "oci-migward-poststop.json"]);
    let podman = Podman::new(&sim.path("p")).with_hooks_dir(&hooks);
    let request = format!("CUDA_VISIBLE_DEVICES={}", sim.mig_uuid(1, 1));
    let flags = [
        "--uidmap",
        "0:100000:65536",
        "--gidmap",
        "0:100000:65536",
        "--env",
        &request,
    ];
    // Each node is a mount of the host's; the capability nodes (mode 0444)
    // read-only, the others writable.
    let out = podman.run_rootfs(
        &rootfs,
        &flags,
        &["grep", "/dev/nvidia", "/proc/self/mountinfo"],
    );
    let text = engines::expect_success(&out, "podman run: mountinfo");
    let mut mounts: Vec<(String, bool)> = text
        .lines()
        .map(|l| {
            let fields: Vec<&str> = l.split(' ').collect();
            let ro = fields[5].split(',').any(|o| o == "ro");
            (fields[4].to_string(), ro)
        })
        .collect();
    mounts.sort();
    let expected: Vec<(String, bool)> = [
        ("/dev/nvidia-caps/nvidia-cap156", true),
        ("/dev/nvidia-caps/nvidia-cap157", true),
        ("/dev/nvidia-uvm", false),
        ("/dev/nvidia-uvm-tools", false),
        ("/dev/nvidia1", false),
        ("/dev/nvidiactl", false),
    ]
    .iter()
    .map(|(p, ro)| (p.to_string(), *ro))
    .collect();
    assert_eq!(mounts, expected, "{text}");
    podman_holder_cycle(
        &sim,
        &podman,
        &rootfs,
        &flags,
        expected_plan_nodes(1, 156, 157),
    );
}

/// A host without the NVML library: podman must show migward's line and
/// its generic runtime failure (126), not "command not found" (127), which
/// it reports whenever a runtime's or hook's text says "no such file or
/// directory".
#[test]
fn podman_without_nvml_reports_migward_not_a_missing_runtime() {
    engines::require_root();
    let sim = Sim::new("a100x4-mixed");
    let gone = sim.lose_nvml();
    let rootfs = engines::busybox_rootfs(&sim.path("rf"));
    let hooks = hooks_dir(&sim, &["oci-migward-env.json", "oci-migward-poststop.json"]);
    let podman = Podman::new(&sim.path("p")).with_hooks_dir(&hooks);
    let env = "CUDA_VISIBLE_DEVICES=MIG-00000000-0000-0000-0000-000000000000";
    let out = podman.run_rootfs(&rootfs, &["--env", env], &["true"]);
    assert_podman_shows_missing_nvml(&out, gone, "podman run without NVML");
}
