//! The runtime shim with a real runc: nodes, cgroup rules, spec
//! preservation and bad input.

mod common;

use common::engines::{self, load_config, runc_bundle, save_config};
use common::sim::{expected_nodes, probe_lines, shim_link, Sim, PROBE};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Output};

fn shim(sim: &Sim, link: &Path, root: &Path, args: &[&str]) -> Output {
    engines::output(
        Command::new(link)
            .env("MIGWARD_CONFIG", sim.config())
            .arg("--root")
            .arg(root)
            .args(args),
    )
}

#[test]
fn runc_container_gets_exactly_its_instance() {
    engines::require_root();
    let sim = Sim::new("a100x4-mixed");
    // The separate shim binary, as packaging installs it (its poststop
    // hook must name the `migward` next to it, which has the CLI).
    let link = std::path::PathBuf::from(env!("CARGO_BIN_EXE_migward-runtime"));
    let uuid = sim.mig_uuid(1, 1);
    let probe = format!("{PROBE}; cat /other-cap 2>&1; echo");
    let bundle = runc_bundle(
        sim.dir.path(),
        &["sh", "-c", &probe],
        &[&format!("CUDA_VISIBLE_DEVICES={uuid}")],
    );
    // An engine granting another tenant's cap under another name (docker
    // `--device /dev/nvidia-caps/nvidia-cap12:/dev/other-cap` plus a rule
    // for every caps minor): the shim strips both, by device number.
    let mut cfg = load_config(&bundle);
    cfg["linux"]["devices"] = json!([{"path": "/dev/other-cap", "type": "c", "major": 508, "minor": 12, "fileMode": 0o666, "uid": 0, "gid": 0}]);
    cfg["linux"]["resources"]["devices"]
        .as_array_mut()
        .unwrap()
        .push(json!({"allow": true, "type": "c", "major": 508, "access": "rwm"}));
    save_config(&bundle, &cfg);
    // A node of another instance made by hand in the image: it exists in the
    // container, and the device cgroup must refuse it.
    nix::sys::stat::mknod(
        &bundle.join("rootfs/other-cap"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(508, 12),
    )
    .unwrap();
    let out = shim(
        &sim,
        &link,
        &sim.path("runc"),
        &["run", "--bundle", bundle.to_str().unwrap(), "mw-runc-1"],
    );
    let text = engines::expect_success(&out, "shim run");
    assert_eq!(probe_lines(&text), expected_nodes(1, 156, 157));
    assert!(
        text.contains("cat: can't open '/other-cap': Operation not permitted"),
        "{text}"
    );
    let cfg = load_config(&bundle);
    let env: Vec<&str> = cfg["process"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        env.contains(&format!("NVIDIA_VISIBLE_DEVICES={uuid}").as_str()),
        "{env:?}"
    );
    // `run` ends with runc deleting the container itself, no `delete` verb
    // comes: the poststop hook freed the lease.
    // Absolute path, explicit env, a timeout (DESIGN.md, CVE-2025-23266).
    let poststop = cfg["hooks"]["poststop"].as_array().unwrap();
    assert_eq!(poststop.len(), 1);
    assert!(poststop[0]["path"].as_str().unwrap().starts_with('/'));
    assert_eq!(
        poststop[0]["args"].as_array().unwrap()[1..3],
        [json!("hook"), json!("poststop")]
    );
    assert!(
        poststop[0]["env"].is_array() && poststop[0]["timeout"].is_u64(),
        "{poststop:?}"
    );
    assert_eq!(sim.leases(), Vec::<Value>::new());
}

#[test]
fn runc_container_without_request_sees_no_nvidia_node() {
    engines::require_root();
    let sim = Sim::new("a100x4-mixed");
    let link = shim_link(sim.dir.path());
    let bundle = runc_bundle(sim.dir.path(), &["sh", "-c", PROBE], &[]);
    // An engine passing a GPU through anyway, with engine_devices = "strip":
    // the shim removes it. ("refuse" refuses it, "lease" makes it a request:
    // tests/requests_runc.rs.)
    let config = std::fs::read_to_string(sim.config()).unwrap();
    std::fs::write(
        sim.config(),
        format!("{config}engine_devices = \"strip\"\n"),
    )
    .unwrap();
    let mut cfg = load_config(&bundle);
    cfg["linux"]["devices"] = json!([{"path": "/dev/nvidia0", "type": "c", "major": 195, "minor": 0, "fileMode": 0o666, "uid": 0, "gid": 0}]);
    cfg["linux"]["resources"]["devices"]
        .as_array_mut()
        .unwrap()
        .push(json!({"allow": true, "type": "c", "major": 195, "minor": 0, "access": "rwm"}));
    save_config(&bundle, &cfg);
    let out = shim(
        &sim,
        &link,
        &sim.path("runc"),
        &["run", "--bundle", bundle.to_str().unwrap(), "mw-runc-2"],
    );
    let text = engines::expect_success(&out, "shim run");
    assert_eq!(probe_lines(&text), Vec::<String>::new());

    // With env requests off, an image's NVIDIA_VISIBLE_DEVICES=all is no
    // request, and becomes `void` so no runtime below adds GPUs either.
    let config = std::fs::read_to_string(sim.config()).unwrap();
    std::fs::write(sim.config(), format!("{config}env_requests = false\n")).unwrap();
    let mut cfg = load_config(&bundle);
    cfg["process"]["env"]
        .as_array_mut()
        .unwrap()
        .push(json!("NVIDIA_VISIBLE_DEVICES=all"));
    save_config(&bundle, &cfg);
    let out = shim(
        &sim,
        &link,
        &sim.path("runc"),
        &["run", "--bundle", bundle.to_str().unwrap(), "mw-runc-3"],
    );
    let text = engines::expect_success(&out, "shim run, env requests off");
    assert_eq!(probe_lines(&text), Vec::<String>::new());
    let env = load_config(&bundle)["process"]["env"].clone();
    assert!(
        env.as_array()
            .unwrap()
            .contains(&json!("NVIDIA_VISIBLE_DEVICES=void")),
        "{env}"
    );
    assert!(sim.list()["gpus"][0]["mig_devices"][0]["holder"].is_null());
}

#[test]
fn spec_fields_and_hooks_survive() {
    engines::require_root();
    let sim = Sim::new("h100-7x1g");
    let link = shim_link(sim.dir.path());
    let uuid = sim.mig_uuid(0, 2);
    let bundle = runc_bundle(
        sim.dir.path(),
        &["true"],
        &[&format!("CUDA_VISIBLE_DEVICES={uuid}")],
    );
    let mut cfg = load_config(&bundle);
    let annotations = json!({
        "com.docker.compose.project": "ml", "com.docker.compose.service": "trainer",
        "io.kubernetes.pod.name": "trainer-0", "io.kubernetes.pod.namespace": "research",
        "io.kubernetes.cri.container-type": "container", "io.podman.annotations.autoremove": "FALSE",
        "org.opencontainers.image.ref.name": "cuda"
    });
    cfg["annotations"] = annotations.clone();
    cfg["x-vendor-extension"] = json!({"nested": [1, {"a": null}], "flag": true});
    cfg["process"]["x-unknown-process-field"] = json!("kept");
    cfg["linux"]["x-future"] = json!({"k": "v"});
    cfg["hooks"] = json!({"prestart": [{"path": "/bin/true", "args": ["true", "engine-hook"]}]});
    save_config(&bundle, &cfg);
    let root = sim.path("runc");
    let out = shim(
        &sim,
        &link,
        &root,
        &["create", "--bundle", bundle.to_str().unwrap(), "mw-spec-1"],
    );
    engines::expect_success(&out, "shim create");
    let after = load_config(&bundle);
    assert_eq!(sim.leases().len(), 1);
    let out = shim(&sim, &link, &root, &["delete", "--force", "mw-spec-1"]);
    engines::expect_success(&out, "shim delete");
    // `create` adds no release hook: our `delete` freed the lease.
    assert_eq!(sim.leases(), Vec::<Value>::new());
    assert_eq!(after["annotations"], annotations);
    assert_eq!(after["x-vendor-extension"], cfg["x-vendor-extension"]);
    assert_eq!(after["process"]["x-unknown-process-field"], "kept");
    assert_eq!(after["linux"]["x-future"], cfg["linux"]["x-future"]);
    assert_eq!(after["hooks"]["prestart"], cfg["hooks"]["prestart"]);
    assert!(after["hooks"].get("poststop").is_none(), "{after}");
    // The simulated driver's CDI spec (driver = "auto"): its hooks, each
    // with an explicit env, and its driver mounts from the driver root.
    let created = after["hooks"]["createContainer"].as_array().unwrap();
    assert_eq!(created.len(), 2, "{created:?}");
    assert!(created.iter().all(|h| h["env"].is_array()), "{created:?}");
    let driver_root = sim.path("driver").display().to_string();
    let from_driver = |m: &Value| m["source"].as_str().unwrap_or("").starts_with(&driver_root);
    let driver_mounts = after["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| from_driver(m))
        .count();
    assert_eq!(driver_mounts, 4, "{:?}", after["mounts"]);
    // Everything else is as before, plus our devices, rules, env and hooks.
    let mut stripped = after.clone();
    let hooks = stripped["hooks"].as_object_mut().unwrap();
    hooks.remove("createContainer");
    stripped["mounts"]
        .as_array_mut()
        .unwrap()
        .retain(|m| !from_driver(m));
    let devs = stripped["linux"]["devices"].as_array().unwrap().len();
    assert_eq!(devs, 7, "the plan's six and the driver's nvidia-modeset");
    stripped["linux"].as_object_mut().unwrap().remove("devices");
    let rules = stripped["linux"]["resources"]["devices"]
        .as_array_mut()
        .unwrap();
    rules.retain(|r| r["allow"] != json!(true));
    stripped["process"]["env"]
        .as_array_mut()
        .unwrap()
        .retain(|e| !e.as_str().unwrap().starts_with("NVIDIA_VISIBLE_DEVICES="));
    assert_eq!(stripped, cfg);
}

/// Runs the shim expecting failure; returns stderr. config.json (if any)
/// must be untouched and runc must hold no container.
fn refused(sim: &Sim, link: &Path, bundle: &Path, args: &[&str], want: &str) {
    let root = sim.path("runc");
    let before = std::fs::read(bundle.join("config.json")).ok();
    let out = shim(sim, link, &root, args);
    let err = engines::expect_failure(&out, "shim");
    assert!(err.contains(want), "{args:?}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
    assert_eq!(
        std::fs::read(bundle.join("config.json")).ok(),
        before,
        "config.json changed"
    );
    let state: Vec<_> = std::fs::read_dir(&root)
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(state.is_empty(), "runc was reached: {state:?}");
}

/// A rootfs whose /dev is a symlink to a host directory: runc 1.1 would
/// create the container's /dev nodes and links there. The shim refuses it
/// before any lease, and the host directory stays empty.
#[test]
fn a_rootfs_whose_dev_leads_out_is_refused() {
    engines::require_root();
    let sim = Sim::new("h100-7x1g");
    let link = shim_link(sim.dir.path());
    let uuid = sim.mig_uuid(0, 1);
    let bundle = runc_bundle(
        sim.dir.path(),
        &["true"],
        &[&format!("CUDA_VISIBLE_DEVICES={uuid}")],
    );
    let host_dir = sim.path("host-dir");
    std::fs::create_dir_all(&host_dir).unwrap();
    let dev = bundle.join("rootfs/dev");
    let _ = std::fs::remove_dir_all(&dev);
    std::os::unix::fs::symlink(&host_dir, &dev).unwrap();
    let b = bundle.to_str().unwrap();
    refused(
        &sim,
        &link,
        &bundle,
        &["create", "--bundle", b, "mw-hostile-dev"],
        &format!("/dev is a symlink (to {})", host_dir.display()),
    );
    assert_eq!(std::fs::read_dir(&host_dir).unwrap().count(), 0);
    assert_eq!(sim.leases(), Vec::<Value>::new());
    // The same for /dev/nvidia-caps, where the cap nodes go.
    std::fs::remove_file(&dev).unwrap();
    std::fs::create_dir_all(&dev).unwrap();
    std::os::unix::fs::symlink(&host_dir, dev.join("nvidia-caps")).unwrap();
    refused(
        &sim,
        &link,
        &bundle,
        &["create", "--bundle", b, "mw-hostile-caps"],
        "/dev/nvidia-caps is a symlink",
    );
    assert_eq!(std::fs::read_dir(&host_dir).unwrap().count(), 0);
    assert_eq!(sim.leases(), Vec::<Value>::new());
}

#[test]
fn bad_bundles_and_requests_never_reach_runc() {
    engines::require_root();
    let sim = Sim::new("a100x4-mixed");
    let link = shim_link(sim.dir.path());
    let bundle = runc_bundle(
        sim.dir.path(),
        &["true"],
        &["CUDA_VISIBLE_DEVICES=MIG-00000000-0000-4000-8000-000000000000"],
    );
    let b = bundle.to_str().unwrap();
    let log = sim.path("log.json");
    refused(
        &sim,
        &link,
        &bundle,
        &[
            "--log",
            log.to_str().unwrap(),
            "--log-format",
            "json",
            "create",
            "--bundle",
            b,
            "c1",
        ],
        "is not a MIG device on this host",
    );
    let last: Value = serde_json::from_str(
        std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(last["level"], "error");
    assert!(
        last["msg"]
            .as_str()
            .unwrap()
            .contains("is not a MIG device on this host"),
        "{last}"
    );

    let mut cfg = load_config(&bundle);
    cfg["process"]["env"] = json!(["PATH=/bin", "CUDA_VISIBLE_DEVICES=MIG-zz"]);
    save_config(&bundle, &cfg);
    refused(
        &sim,
        &link,
        &bundle,
        &["create", "--bundle", b, "c2"],
        "env CUDA_VISIBLE_DEVICES value \"MIG-zz\"",
    );

    let uuid = sim.mig_uuid(0, 0);
    cfg["process"]["env"] = json!(["PATH=/bin", format!("CUDA_VISIBLE_DEVICES={uuid}")]);
    cfg["process"]["capabilities"]["bounding"]
        .as_array_mut()
        .unwrap()
        .push(json!("CAP_SYS_ADMIN"));
    save_config(&bundle, &cfg);
    refused(
        &sim,
        &link,
        &bundle,
        &["create", "--bundle", b, "c3"],
        "is privileged and asks for GPUs",
    );
    refused(
        &sim,
        &link,
        &bundle,
        &["create", "--bundle", b],
        "no container id in the arguments",
    );

    std::fs::write(bundle.join("config.json"), "{not json").unwrap();
    refused(
        &sim,
        &link,
        &bundle,
        &["create", "--bundle", b, "c4"],
        "config.json is not valid JSON",
    );
    std::fs::write(
        bundle.join("config.json"),
        "{\"ociVersion\": \"1.0.2\", \"process\": []}",
    )
    .unwrap();
    refused(
        &sim,
        &link,
        &bundle,
        &["create", "--bundle", b, "c5"],
        "config.json is not an OCI runtime spec",
    );
    // Bytes that are not UTF-8 in the env: named, not garbled into a grant.
    let mut text = serde_json::to_vec(&cfg).unwrap();
    let at = text.windows(4).position(|w| w == b"MIG-").unwrap() + 4;
    text.splice(at..at, [0xff, 0xfe]);
    std::fs::write(bundle.join("config.json"), &text).unwrap();
    refused(
        &sim,
        &link,
        &bundle,
        &["create", "--bundle", b, "c5b"],
        "env CUDA_VISIBLE_DEVICES contains bytes that are not UTF-8",
    );
    std::fs::remove_file(bundle.join("config.json")).unwrap();
    refused(
        &sim,
        &link,
        &bundle,
        &["create", "--bundle", b, "c6"],
        "config.json is missing",
    );
    // Unreadable: a directory where the file should be.
    std::fs::create_dir(bundle.join("config.json")).unwrap();
    refused(
        &sim,
        &link,
        &bundle,
        &["create", "--bundle", b, "c6b"],
        "cannot read",
    );
    std::fs::remove_dir(bundle.join("config.json")).unwrap();
    let gone = sim.path("no-such-bundle");
    refused(
        &sim,
        &link,
        &gone,
        &["create", "--bundle", gone.to_str().unwrap(), "c7"],
        "does not exist",
    );
}

#[test]
fn privileged_containers_may_be_allowed_by_config() {
    engines::require_root();
    let sim = Sim::new("h100-7x1g");
    let link = shim_link(sim.dir.path());
    let uuid = sim.mig_uuid(0, 6);
    let bundle = runc_bundle(
        sim.dir.path(),
        &["sh", "-c", PROBE],
        &[&format!("CUDA_VISIBLE_DEVICES={uuid}")],
    );
    let mut cfg = load_config(&bundle);
    for set in ["bounding", "effective", "permitted"] {
        cfg["process"]["capabilities"][set]
            .as_array_mut()
            .unwrap()
            .push(json!("CAP_SYS_ADMIN"));
    }
    save_config(&bundle, &cfg);
    let text = std::fs::read_to_string(sim.config()).unwrap();
    std::fs::write(sim.config(), format!("{text}allow_privileged = true\n")).unwrap();
    let out = shim(
        &sim,
        &link,
        &sim.path("runc"),
        &["run", "--bundle", bundle.to_str().unwrap(), "mw-priv"],
    );
    let text = engines::expect_success(&out, "privileged container with allow_privileged");
    // gpu0 gi7: G = 3 + 63 = 66.
    assert_eq!(probe_lines(&text), expected_nodes(0, 66, 67));
}
