//! The runtime shim under dockerd, docker-compose and containerd.

mod common;

use common::engines::{self, Containerd, Dockerd};
use common::sim::{
    assert_podman_shows_missing_nvml, expected_nodes, probe_lines, shim_link, write_script, Sim,
    PROBE,
};
use serde_json::{json, Value};
use std::path::Path;

#[test]
fn docker_run_gets_its_instance_and_keeps_docker_hooks() {
    engines::require_root();
    let sim = Sim::new("a100x4-mixed");
    let d = dockerd(&sim);
    let uuid = sim.mig_uuid(0, 1);
    let cuda = format!("CUDA_VISIBLE_DEVICES={uuid}");
    let out = d.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--runtime=migward",
        "-e",
        &cuda,
        "local/busybox:1",
        "sh",
        "-c",
        PROBE,
    ]);
    let text = engines::expect_success(&out, "docker run with MIG");
    assert_eq!(probe_lines(&text), expected_nodes(0, 21, 22));

    let out = d.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--runtime=migward",
        "local/busybox:1",
        "sh",
        "-c",
        PROBE,
    ]);
    let text = engines::expect_success(&out, "docker run without GPU");
    assert_eq!(probe_lines(&text), Vec::<String>::new());

    let out = d.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--runtime=migward",
        "-e",
        "CUDA_VISIBLE_DEVICES=MIG-00000000-0000-4000-8000-000000000000",
        "local/busybox:1",
        "true",
    ]);
    let err = engines::expect_failure(&out, "docker run with unknown UUID");
    assert!(
        err.contains("MIG-00000000-0000-4000-8000-000000000000 is not a MIG device on this host"),
        "{err}"
    );

    // docker's own prestart hook is kept in the edited spec and runs.
    let out = d.docker(&[
        "run",
        "-d",
        "--name",
        "holder",
        "--network",
        "none",
        "--runtime=migward",
        "-e",
        &cuda,
        "local/busybox:1",
        "sleep",
        "3600",
    ]);
    let id = engines::expect_success(&out, "docker run -d")
        .trim()
        .to_string();
    let bundle = d.bundle(&id).join("config.json");
    let spec: Value =
        serde_json::from_str(&std::fs::read_to_string(&bundle).expect("bundle config")).unwrap();
    let prestart = spec["hooks"]["prestart"]
        .as_array()
        .expect("docker's prestart hook");
    assert!(
        prestart
            .iter()
            .any(|h| h["args"].to_string().contains("libnetwork-setkey")),
        "{prestart:?}"
    );
    assert!(spec["linux"]["devices"]
        .to_string()
        .contains("/dev/nvidia-caps/nvidia-cap22"));
    let out = d.docker(&["inspect", "-f", "{{.State.Running}}", "holder"]);
    assert_eq!(engines::expect_success(&out, "inspect").trim(), "true");
    engines::expect_success(&d.docker(&["rm", "-f", "holder"]), "rm");
}

#[test]
fn compose_services_each_see_only_their_instance() {
    engines::require_root();
    engines::require("docker-compose");
    let sim = Sim::new("a100x4-mixed");
    let d = dockerd(&sim);
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/examples/docker-compose.yml");
    let text = std::fs::read_to_string(&example).unwrap();
    // The example names real devices of the simulated demo server.
    for (gpu, mig) in [(0, 0), (1, 1)] {
        assert!(
            text.contains(&sim.mig_uuid(gpu, mig)),
            "example lacks GPU {gpu} MIG {mig}"
        );
    }
    let project = sim.path("compose");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::copy(&example, project.join("docker-compose.yml")).unwrap();
    // This daemon has no bridge: run the services without a network, and
    // probe instead of listing.
    let probe = PROBE.replace('$', "$$");
    let over = format!(
        "version: \"2.4\"\nservices:\n  model-server:\n    network_mode: none\n    command: [\"sh\", \"-c\", {probe:?}]\n  notebook:\n    network_mode: none\n    command: [\"sh\", \"-c\", {probe:?}]\n"
    );
    std::fs::write(project.join("docker-compose.override.yml"), over).unwrap();
    // `up -d`, `docker wait`, then the logs: each service's probe output
    // as the example's users would read it.
    let compose = |args: &[&str]| {
        let mut cmd = d.compose_cmd(&project, "mw");
        cmd.env("MIGWARD_EXAMPLE_IMAGE", "local/busybox:1")
            .args(args);
        engines::output(&mut cmd)
    };
    engines::expect_success(&compose(&["up", "-d"]), "compose up");
    for (svc, want) in [
        ("model-server", expected_nodes(0, 12, 13)),
        ("notebook", expected_nodes(1, 156, 157)),
    ] {
        let name = format!("mw_{svc}_1");
        let code = engines::expect_success(&d.docker(&["wait", &name]), "docker wait");
        assert_eq!(code.trim(), "0", "{svc} exit code");
        let text = engines::expect_success(&d.docker(&["logs", &name]), "docker logs");
        assert_eq!(probe_lines(&text), want, "{svc}");
    }
    engines::expect_success(&compose(&["down"]), "compose down");
}

#[test]
fn containerd_ctr_run_gets_its_instance() {
    engines::require_root();
    let sim = Sim::new("h100-7x1g");
    let c = Containerd::start(&sim.path("c")).expect("containerd");
    // ctr has no way to pass runtime args: a one-line wrapper gives the
    // config path, as a node's /usr/bin/migward-runtime would read the
    // default /etc/migward/config.toml.
    let wrapper = sim.runtime_wrapper();
    let rootfs = engines::busybox_rootfs(&sim.path("rf"));
    let uuid = sim.mig_uuid(0, 3);
    let env = format!("CUDA_VISIBLE_DEVICES={uuid}");
    let id = format!("mw-ctr-{}", std::process::id());
    let out = c.run_rootfs(
        &wrapper,
        &rootfs,
        &id,
        &["--env", &env],
        &["sh", "-c", PROBE],
    );
    let text = engines::expect_success(&out, "ctr run");
    // gpu0 gi4: G = 3 + 9*4 = 39, C = 40.
    assert_eq!(probe_lines(&text), expected_nodes(0, 39, 40));
}

#[test]
fn docker_holder_blocks_until_killed_and_removed() {
    engines::require_root();
    let sim = Sim::new("h100-7x1g");
    let d = dockerd(&sim);
    let cuda = format!("CUDA_VISIBLE_DEVICES={}", sim.mig_uuid(0, 5));
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "--network", "none", "--runtime=migward", "-e", &cuda];
        args.extend_from_slice(extra);
        d.docker(&args)
    };
    let out = run(&["-d", "--name", "holder", "local/busybox:1", "sleep", "300"]);
    let id = engines::expect_success(&out, "holder").trim().to_string();
    let refused = |what: &str| {
        let err = engines::expect_failure(&run(&["--rm", "local/busybox:1", "true"]), what);
        assert!(
            err.contains(&format!(
                "is held by container {id} (find it with `docker ps --no-trunc --filter id={}`) since ",
                &id[..12]
            )),
            "{what}: {err}"
        );
    };
    refused("second while the holder runs");
    engines::expect_success(
        &d.docker(&["restart", "-t", "1", "holder"]),
        "docker restart of the holder",
    );
    let out = d.docker(&["inspect", "-f", "{{.State.Running}}", "holder"]);
    assert_eq!(engines::expect_success(&out, "inspect").trim(), "true");
    refused("second after the holder restarted");
    engines::expect_success(&d.docker(&["kill", "holder"]), "kill");
    engines::expect_success(&d.docker(&["rm", "holder"]), "rm");
    engines::expect_success(
        &run(&["--rm", "local/busybox:1", "true"]),
        "after kill and rm",
    );
    let leases = sim.run(&["leases", "--json"]);
    let v: Value = serde_json::from_slice(&leases.stdout).unwrap();
    assert_eq!(v["leases"], json!([]), "a lease outlived its container");
}

/// podman with the shim as its runtime. podman passes no runtime args: a
/// wrapper names the config, as a node's /usr/bin/migward-runtime would read
/// /etc/migward/config.toml.
fn podman_shim(sim: &Sim) -> engines::Podman {
    let wrapper = sim.runtime_wrapper();
    engines::Podman::new(&sim.path("p")).with_runtime(&wrapper)
}

#[test]
fn podman_with_the_shim_as_runtime() {
    engines::require_root();
    let sim = Sim::new("a100x4-mixed");
    let podman = podman_shim(&sim);
    let rootfs = engines::busybox_rootfs(&sim.path("rf"));
    let env = format!("CUDA_VISIBLE_DEVICES={}", sim.mig_uuid(2, 3));
    let out = podman.run_rootfs(&rootfs, &["--env", &env], &["sh", "-c", PROBE]);
    let text = engines::expect_success(&out, "podman --runtime migward");
    // gpu2 gi4: G = 3 + 270 + 36 = 309.
    assert_eq!(probe_lines(&text), expected_nodes(2, 309, 310));
    let out = podman.run_rootfs(&rootfs, &[], &["sh", "-c", PROBE]);
    assert_eq!(
        probe_lines(&engines::expect_success(&out, "no request")),
        Vec::<String>::new()
    );
    let leases = sim.run(&["leases", "--json"]);
    let v: Value = serde_json::from_slice(&leases.stdout).unwrap();
    assert_eq!(v["leases"], json!([]), "a lease outlived its container");
}

/// A directory holding a no-op `nvidia-container-runtime-hook`: dockerd
/// registers its `nvidia` device driver (`--gpus`, compose device
/// reservations) only when one is on its PATH, and adds it as a prestart
/// hook.
fn nvidia_hook_bin(sim: &Sim) -> std::path::PathBuf {
    let bin = sim.path("nvidia-bin");
    std::fs::create_dir_all(&bin).unwrap();
    write_script(&bin.join("nvidia-container-runtime-hook"), "exit 0");
    bin
}

/// dockerd with `migward` (the simulated host's config, passed with
/// runtimeArgs), `migward-all` (the same with allow_all = true) and the
/// no-op NVIDIA hook on its PATH.
fn dockerd(sim: &Sim) -> Dockerd {
    let link = shim_link(sim.dir.path());
    let allow_all = sim.config_variant("allow-all", "allow_all = true");
    let mut rt = serde_json::Map::new();
    for (name, config) in [("migward", sim.config()), ("migward-all", allow_all)] {
        rt.insert(
            name.into(),
            json!({"path": link, "runtimeArgs": ["--migward-config", config]}),
        );
    }
    let d =
        Dockerd::start_with_path(&sim.path("e"), rt, Some(&nvidia_hook_bin(sim))).expect("dockerd");
    d.import_busybox("local/busybox:1").expect("import");
    d
}

#[test]
fn docker_device_nodes_gpus_flag_and_image_all() {
    engines::require_root();
    let sim = Sim::new("a100x4-mixed");
    let d = dockerd(&sim);
    // gpu1 gi2: G = 3 + 135 + 18 = 156.
    let dev = |p: &str| format!("{}:{p}", sim.path(&format!("host{p}")).display());
    let nodes = [
        dev("/dev/nvidia1"),
        dev("/dev/nvidia-caps/nvidia-cap156"),
        dev("/dev/nvidia-caps/nvidia-cap157"),
    ];
    let run = |extra: &[&str], cmd: &[&str]| {
        let mut args = vec!["run", "--network", "none", "--runtime=migward"];
        for n in &nodes {
            args.extend(["--device", n.as_str()]);
        }
        args.extend_from_slice(extra);
        args.push("local/busybox:1");
        args.extend_from_slice(cmd);
        d.docker(&args)
    };
    // Explicit nodes are a request: kept, and leased while it runs.
    let text = engines::expect_success(&run(&["--rm"], &["sh", "-c", PROBE]), "--device nodes");
    assert_eq!(probe_lines(&text), expected_nodes(1, 156, 157));
    let id = engines::expect_success(&run(&["-d"], &["sleep", "300"]), "holder");
    let id = id.trim();
    let held = sim.leases();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0]["container_id"], id);
    assert_eq!(held[0]["units"][0]["mig_uuid"], sim.mig_uuid(1, 1).as_str());
    let err = engines::expect_failure(&run(&["--rm"], &["true"]), "second --device container");
    assert!(err.contains(&format!("is held by container {id}")), "{err}");
    engines::expect_success(&d.docker(&["rm", "-f", id]), "rm -f holder");
    assert_eq!(sim.leases(), Vec::<Value>::new());

    // docker --gpus: dockerd writes the ids into NVIDIA_VISIBLE_DEVICES.
    let uuid = sim.mig_uuid(0, 1);
    let gpus = format!("\"device={uuid}\"");
    let out = d.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--runtime=migward",
        "--gpus",
        &gpus,
        "local/busybox:1",
        "sh",
        "-c",
        PROBE,
    ]);
    let text = engines::expect_success(&out, "--gpus");
    assert_eq!(probe_lines(&text), expected_nodes(0, 21, 22));

    // An image that sets NVIDIA_VISIBLE_DEVICES=all, as CUDA images do.
    d.import_busybox_with("local/cuda-like:1", &["ENV NVIDIA_VISIBLE_DEVICES=all"])
        .expect("import");
    let all = |runtime: &str| {
        d.docker(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--runtime",
            runtime,
            "local/cuda-like:1",
            "sh",
            "-c",
            "ls /dev/nvidia-caps | wc -l",
        ])
    };
    let err = engines::expect_failure(&all("migward"), "image all");
    assert!(
        err.contains("asks for every GPU (env NVIDIA_VISIBLE_DEVICES=all; CUDA base images set NVIDIA_VISIBLE_DEVICES=all"),
        "{err}"
    );
    // With allow_all, the whole machine: both caps of all 17 instances.
    let text = engines::expect_success(&all("migward-all"), "image all, allowed");
    assert_eq!(text.trim(), "34");
    assert_eq!(sim.leases(), Vec::<Value>::new());
}

#[test]
fn compose_profile_replicas_and_device_reservations() {
    engines::require_root();
    engines::require("docker-compose");
    let sim = Sim::new("a100x4-mixed");
    let d = dockerd(&sim);
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/examples/docker-compose.gpus.yml");
    let trainer_uuid = sim.mig_uuid(1, 1);
    assert!(
        std::fs::read_to_string(&example)
            .unwrap()
            .contains(&trainer_uuid),
        "the example names a device of the simulated demo server"
    );
    let project = sim.path("compose");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::copy(&example, project.join("docker-compose.yml")).unwrap();
    std::fs::write(
        project.join("docker-compose.override.yml"),
        "version: \"2.4\"\nservices:\n  worker:\n    network_mode: none\n  trainer:\n    network_mode: none\n",
    )
    .unwrap();
    let compose = |args: &[&str]| {
        let mut cmd = d.compose_cmd(&project, "mwg");
        cmd.env("MIGWARD_EXAMPLE_IMAGE", "local/busybox:1")
            .args(args);
        engines::output(&mut cmd)
    };
    // Three replicas for two free 3g.40gb: two run, one is refused.
    let out = compose(&["up", "-d", "--scale", "worker=3"]);
    let text = format!("{}{}", engines::stdout(&out), engines::stderr(&out));
    assert!(
        text.contains("no free 3g.40gb: all 2 are held; holders: "),
        "{text}"
    );
    let running = engines::expect_success(
        &d.docker(&[
            "ps",
            "-q",
            "--filter",
            "label=com.docker.compose.service=worker",
        ]),
        "docker ps",
    );
    assert_eq!(running.lines().count(), 2, "{running}");
    let held = sim.leases();
    let mut uuids: Vec<String> = held
        .iter()
        .map(|l| l["units"][0]["mig_uuid"].as_str().unwrap().to_string())
        .collect();
    uuids.sort();
    let mut want = vec![sim.mig_uuid(0, 0), sim.mig_uuid(0, 1), trainer_uuid.clone()];
    want.sort();
    assert_eq!(uuids, want, "{held:?}");
    // `migward list` shows every holder.
    let list = sim.list();
    for (g, m) in [(0, 0), (0, 1), (1, 1)] {
        assert!(
            list["gpus"][g]["mig_devices"][m]["holder"].is_object(),
            "GPU {g} MIG {m}: {}",
            list["gpus"][g]["mig_devices"][m]
        );
    }
    // The reservation's device, as the trainer sees it (`docker exec` gets
    // docker's stored env, so read the init's, which came from the spec).
    let script =
        "tr '\\0' '\\n' </proc/1/environ | grep ^NVIDIA_VISIBLE_DEVICES=; ls /dev/nvidia-caps";
    let out = d.docker(&["exec", "mwg_trainer_1", "sh", "-c", script]);
    let text = engines::expect_success(&out, "exec trainer");
    let visible = format!("NVIDIA_VISIBLE_DEVICES={trainer_uuid}");
    assert_eq!(
        text.split_whitespace().collect::<Vec<_>>(),
        vec![visible.as_str(), "nvidia-cap156", "nvidia-cap157"]
    );
    engines::expect_success(&compose(&["down", "-t", "1"]), "compose down");
    assert_eq!(sim.leases(), Vec::<Value>::new());
}

#[test]
fn podman_cdi_devices_are_kept_and_leased() {
    engines::require_root();
    let sim = Sim::new("h100-7x1g");
    // podman 4.3 reads CDI specs only from /etc/cdi and /var/run/cdi: a
    // uniquely named vendor keeps parallel tests (and a real host's
    // nvidia.com specs) apart.
    let vendor = format!("t{}.migward.test", std::process::id());
    let kind = format!("{vendor}/gpu");
    let uuid = sim.mig_uuid(0, 3);
    // gpu0 gi4: G = 3 + 36 = 39.
    let host = |p: &str| sim.path(&format!("host{p}")).display().to_string();
    let node = |p: &str| json!({"path": p, "hostPath": host(p)});
    let spec = json!({
        "cdiVersion": "0.5.0",
        "kind": kind,
        "devices": [{"name": uuid, "containerEdits": {"deviceNodes": [
            node("/dev/nvidia0"), node("/dev/nvidia-caps/nvidia-cap39"), node("/dev/nvidia-caps/nvidia-cap40")
        ]}}],
        "containerEdits": {
            "env": ["NVIDIA_VISIBLE_DEVICES=void"],
            "deviceNodes": [node("/dev/nvidiactl"), node("/dev/nvidia-uvm"), node("/dev/nvidia-uvm-tools")]
        }
    });
    struct Removed(std::path::PathBuf);
    impl Drop for Removed {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    std::fs::create_dir_all("/etc/cdi").unwrap();
    let file = Removed(Path::new("/etc/cdi").join(format!("{vendor}.json")));
    std::fs::write(&file.0, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();

    let podman = podman_shim(&sim);
    let rootfs = engines::busybox_rootfs(&sim.path("rf"));
    let device = format!("{kind}={uuid}");
    let out = podman.run_rootfs(&rootfs, &["--device", &device], &["sh", "-c", PROBE]);
    let text = engines::expect_success(&out, "podman --device CDI");
    assert_eq!(probe_lines(&text), expected_nodes(0, 39, 40));
    assert_eq!(sim.leases(), Vec::<Value>::new(), "released on exit");

    let out = engines::output(podman.cmd().args([
        "run",
        "-d",
        "--name",
        "cdi-holder",
        "--network",
        "none",
        "--device",
        &device,
        "--rootfs",
        rootfs.to_str().unwrap(),
        "sleep",
        "300",
    ]));
    engines::expect_success(&out, "holder");
    let held = sim.leases();
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["units"][0]["mig_uuid"], uuid.as_str());
    let out = podman.run_rootfs(&rootfs, &["--device", &device], &["true"]);
    let err = engines::expect_failure(&out, "second CDI container");
    assert!(err.contains("is held by container"), "{err}");
    engines::expect_success(
        &engines::output(podman.cmd().args(["rm", "-f", "-t", "0", "cdi-holder"])),
        "rm holder",
    );
    assert_eq!(sim.leases(), Vec::<Value>::new());
}

/// As the hook's test in hook_engines.rs: without the NVML library, podman
/// with the shim as its runtime shows migward's line and exits 126, not
/// 127 ("command not found").
#[test]
fn podman_shim_without_nvml_reports_migward_not_a_missing_runtime() {
    engines::require_root();
    let sim = Sim::new("a100x4-mixed");
    let gone = sim.lose_nvml();
    let podman = podman_shim(&sim);
    let rootfs = engines::busybox_rootfs(&sim.path("rf"));
    let env = "CUDA_VISIBLE_DEVICES=MIG-00000000-0000-0000-0000-000000000000";
    let out = podman.run_rootfs(&rootfs, &["--env", env], &["true"]);
    assert_podman_shows_missing_nvml(&out, gone, "podman --runtime migward without NVML");
}
