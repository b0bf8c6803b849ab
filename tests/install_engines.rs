//! `migward install` end to end: each engine, started on the config file
//! install wrote, runs a MIG container through migward; `uninstall` gives
//! the file back byte for byte.

mod common;

use common::engines::{self, write, Dockerd, Podman};
use common::sim::{
    expected_nodes, expected_plan_nodes, probe_lines, shim_link, stderr, stdout, Sim, MIGWARD,
    PROBE,
};
use std::path::{Path, PathBuf};
use std::process::Command;

/// `migward --config <sim> <verb> <engine> --root <root> …`, which must succeed.
fn migward(sim: &Sim, root: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new(MIGWARD);
    cmd.arg("--config")
        .arg(sim.config())
        .args(args)
        .arg("--root")
        .arg(root);
    if args[0] == "install" {
        let link = sim.path("migward-runtime");
        cmd.arg("--runtime-path")
            .arg(link)
            .arg("--migward-path")
            .arg(MIGWARD);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "migward {args:?}: {}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

fn probe(d: &Dockerd, extra: &[&str]) -> std::process::Output {
    let mut cmd = d.docker_cmd();
    cmd.args(["run", "--rm", "--network", "none"]).args(extra);
    cmd.args(["local/busybox:1", "sh", "-c", PROBE]);
    engines::output(&mut cmd)
}

#[test]
fn dockerd_on_the_installed_daemon_json_runs_mig_containers() {
    engines::require_root();
    let sim = Sim::new("a100x4-mixed");
    shim_link(sim.dir.path());
    let root = sim.path("root");
    let daemon_json = root.join("etc/docker/daemon.json");
    let mut cfg = Dockerd::private_config(&sim.path("e"));
    cfg["log-level"] = "warn".into();
    cfg["default-ulimits"] =
        serde_json::json!({"nofile": {"Name": "nofile", "Hard": 4096, "Soft": 4096}});
    write(&daemon_json, serde_json::to_string_pretty(&cfg).unwrap());
    let original = read(&daemon_json);

    let said = migward(&sim, &root, &["install", "docker"]);
    assert!(
        said.contains("runtime `migward`") && said.contains("systemctl restart docker"),
        "{said}"
    );
    let uuid = sim.mig_uuid(0, 1);
    let cuda = format!("CUDA_VISIBLE_DEVICES={uuid}");
    {
        let d = Dockerd::start_from(&sim.path("e"), &daemon_json, None).expect("dockerd");
        d.import_busybox("local/busybox:1").unwrap();
        let text = engines::expect_success(
            &probe(&d, &["--runtime", "migward", "-e", &cuda]),
            "docker run --runtime migward",
        );
        assert_eq!(probe_lines(&text), expected_nodes(0, 21, 22));
    }

    let said = migward(&sim, &root, &["install", "docker", "--default"]);
    assert!(said.contains("default runtime `migward`"), "{said}");
    let again = migward(&sim, &root, &["install", "docker", "--default"]);
    assert!(
        again.contains("already installed; nothing written"),
        "{again}"
    );
    {
        let d = Dockerd::start_from(&sim.path("e"), &daemon_json, None).expect("dockerd");
        d.import_busybox("local/busybox:1").unwrap();
        // No runtime named: migward is the default, so the request is served…
        let text =
            engines::expect_success(&probe(&d, &["-e", &cuda]), "docker run, default runtime");
        assert_eq!(probe_lines(&text), expected_nodes(0, 21, 22));
        // …and an image's `all` is refused, which plain runc would not do.
        let err = engines::expect_failure(&probe(&d, &["-e", "NVIDIA_VISIBLE_DEVICES=all"]), "all");
        assert!(err.contains("asks for every GPU"), "{err}");
    }

    migward(&sim, &root, &["uninstall", "docker"]);
    assert_eq!(
        read(&daemon_json),
        original,
        "uninstall gives daemon.json back byte for byte"
    );
}

#[test]
fn containerd_config_dump_shows_the_runtime_and_keeps_the_rest() {
    engines::require_root();
    let containerd = engines::require("containerd");
    let sim = Sim::new("h100-7x1g");
    let link = shim_link(sim.dir.path());
    let root = sim.path("root");
    let file = root.join("etc/containerd/config.toml");
    let default = Command::new(&containerd)
        .args(["config", "default"])
        .output()
        .unwrap();
    assert!(default.status.success(), "{}", stderr(&default));
    let original = format!("# this node's containerd\n{}", stdout(&default));
    write(&file, &original);

    let said = migward(&sim, &root, &["install", "containerd", "--default"]);
    assert!(said.contains("options copied from `runc`"), "{said}");
    let dump = Command::new(&containerd)
        .arg("--config")
        .arg(&file)
        .args(["config", "dump"])
        .output()
        .unwrap();
    assert!(
        dump.status.success(),
        "containerd config dump: {}",
        stderr(&dump)
    );
    let dump = stdout(&dump);
    let cri = r#"[plugins."io.containerd.grpc.v1.cri".containerd"#;
    for want in [
        format!("{cri}.runtimes.migward]"),
        format!("{cri}.runtimes.migward.options]"),
        format!("BinaryName = \"{}\"", link.display()),
        r#"pod_annotations = ["migward/*"]"#.into(),
        r#"container_annotations = ["migward/*", "cdi.k8s.io/*"]"#.into(),
        r#"default_runtime_name = "migward""#.into(),
        format!("{cri}.runtimes.runc]"),
        "sandbox_image = \"registry.k8s.io/pause:".into(),
    ] {
        assert!(dump.contains(&want), "config dump lacks {want}:\n{dump}");
    }
    migward(&sim, &root, &["uninstall", "containerd"]);
    assert_eq!(read(&file), original);
}

#[test]
fn podman_on_the_installed_containers_conf_runs_mig_containers() {
    engines::require_root();
    let sim = Sim::new("a100x4-mixed");
    shim_link(sim.dir.path());
    let rootfs = engines::busybox_rootfs(&sim.path("rf"));
    let root = sim.path("root");
    let mut podman = Podman::new(&sim.path("p"));
    let conf: PathBuf = root.join("etc/containers/containers.conf");
    write(&conf, read(&podman.conf));
    let original = read(&conf);
    podman.conf = conf.clone();

    let said = migward(&sim, &root, &["install", "podman"]);
    assert!(said.contains("--runtime-flag migward-config="), "{said}");
    let flag = format!("migward-config={}", sim.config().display());
    let cuda = format!("CUDA_VISIBLE_DEVICES={}", sim.mig_uuid(0, 1));
    let extra = ["--runtime", "migward", "--runtime-flag", &flag, "-e", &cuda];
    let text = engines::expect_success(
        &podman.run_rootfs(&rootfs, &extra, &["sh", "-c", PROBE]),
        "podman --runtime migward",
    );
    assert_eq!(probe_lines(&text), expected_nodes(0, 21, 22));

    let hooks = root.join("etc/containers/oci/hooks.d");
    let podman = podman.with_hooks_dir(&hooks);
    let ann = format!("migward/devices={}", sim.mig_uuid(0, 0));
    let out = podman.run_rootfs(&rootfs, &["--annotation", &ann], &["sh", "-c", PROBE]);
    let text = engines::expect_success(&out, "podman with the installed hooks");
    assert_eq!(probe_lines(&text), expected_plan_nodes(0, 12, 13));
    assert_eq!(
        sim.leases(),
        Vec::<serde_json::Value>::new(),
        "the installed poststop hook freed the lease"
    );

    migward(&sim, &root, &["uninstall", "podman"]);
    assert_eq!(read(&conf), original);
    assert_eq!(
        std::fs::read_dir(&hooks).unwrap().count(),
        0,
        "the hooks are gone"
    );
}
