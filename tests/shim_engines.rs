//! The runtime shim under dockerd, docker-compose and containerd.

mod common;

use common::engines::{self, Containerd, Dockerd};
use common::sim::{expected_nodes, probe_lines, shim_link, write_script, Sim, MIGWARD, PROBE};
use serde_json::{json, Value};
use std::path::Path;

/// dockerd with migward registered, its config passed with runtimeArgs.
fn dockerd(sim: &Sim) -> Dockerd {
    let link = shim_link(sim.dir.path());
    let mut rt = serde_json::Map::new();
    rt.insert(
        "migward".into(),
        json!({"path": link, "runtimeArgs": ["--migward-config", sim.config()]}),
    );
    let d = Dockerd::start_with(&sim.path("e"), rt).expect("dockerd");
    d.import_busybox("local/busybox:1").expect("import");
    d
}

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
        "60",
    ]);
    let id = engines::expect_success(&out, "docker run -d")
        .trim()
        .to_string();
    let bundle = d.dir.join(format!(
        "exec/containerd/daemon/io.containerd.runtime.v2.task/moby/{id}/config.json"
    ));
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
    // `up -d` then the logs: `run` attaches after start and can lose the
    // first lines of a short-lived container.
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
    let wrapper = sim.path("migward-runc");
    write_script(
        &wrapper,
        &format!(
            "exec {MIGWARD} runtime --migward-config {} \"$@\"",
            sim.config().display()
        ),
    );
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

#[test]
fn podman_with_the_shim_as_runtime() {
    engines::require_root();
    let sim = Sim::new("a100x4-mixed");
    // podman passes no runtime args: a wrapper names the config, as a node's
    // /usr/bin/migward-runtime would read /etc/migward/config.toml.
    let wrapper = sim.path("migward-runc");
    write_script(
        &wrapper,
        &format!(
            "exec {MIGWARD} runtime --migward-config {} \"$@\"",
            sim.config().display()
        ),
    );
    let podman = engines::Podman::new(&sim.path("p")).with_runtime(&wrapper);
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
