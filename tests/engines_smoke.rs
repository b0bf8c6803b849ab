//! Smoke tests of the engine harness with plain runc (no migward): each real engine of the
//! development machine runs a busybox container and its output comes back. Needs root and the
//! packages from scripts/install-deps.sh; a missing tool fails the test.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::engines::*;
use serde_json::json;

#[test]
fn runc_runs_busybox_bundle() {
    require_root();
    let runc = require("runc");
    let dir = tmpdir();
    let bundle = runc_bundle(dir.path(), &["sh", "-c", "echo hi $FOO"], &["FOO=bar"]);

    // the config is editable as JSON
    let mut cfg = load_config(&bundle);
    assert_eq!(cfg["process"]["terminal"], json!(false));
    assert!(cfg["process"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e.as_str().unwrap().starts_with("PATH=")));
    cfg["hostname"] = json!("smoke");
    save_config(&bundle, &cfg);

    let id = unique_name(dir.path());
    let o = oci_run(&runc, &dir.path().join("runc-root"), &bundle, &id);
    let out = expect_success(&o, "runc run");
    assert_eq!(out.trim(), "hi bar");

    // hostname edit took effect, applets are there
    let mut cfg = load_config(&bundle);
    cfg["process"]["args"] = json!(["sh", "-c", "hostname; stat -c %F /bin/busybox; true"]);
    save_config(&bundle, &cfg);
    let o = oci_run(&runc, &dir.path().join("runc-root"), &bundle, &id);
    let out = expect_success(&o, "runc run (edited)");
    assert_eq!(out.lines().collect::<Vec<_>>(), ["smoke", "regular file"]);
}

#[test]
fn runc_failing_container_reports_exit_code() {
    require_root();
    let runc = require("runc");
    let dir = tmpdir();
    let bundle = runc_bundle(dir.path(), &["sh", "-c", "echo oops >&2; exit 7"], &[]);
    let o = oci_run(
        &runc,
        &dir.path().join("runc-root"),
        &bundle,
        &unique_name(dir.path()),
    );
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert!(stderr(&o).contains("oops"));
}

#[test]
fn dockerd_runs_busybox() {
    require_root();
    let runc = require("runc");
    let dir = tmpdir();
    let d = Dockerd::start(dir.path(), &[("plainrunc", &runc)]).expect("start dockerd");
    d.import_busybox("local/busybox:1").expect("import busybox");

    let o = d.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "local/busybox:1",
        "echo",
        "hi",
    ]);
    assert_eq!(expect_success(&o, "docker run").trim(), "hi");

    // a runtime from the runtimes map (how migward is plugged in)
    let o = d.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--runtime",
        "plainrunc",
        "-e",
        "FOO=bar",
        "local/busybox:1",
        "sh",
        "-c",
        "echo hi $FOO",
    ]);
    assert_eq!(
        expect_success(&o, "docker run --runtime plainrunc").trim(),
        "hi bar"
    );

    // exit codes come through
    let o = d.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "local/busybox:1",
        "sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));

    let info = expect_success(
        &d.docker(&["info", "--format", "{{json .Runtimes}}"]),
        "docker info",
    );
    assert!(info.contains("plainrunc"), "{info}");
}

#[test]
fn compose_up_against_dockerd() {
    require_root();
    let runc = require("runc");
    let dir = tmpdir();
    let d = Dockerd::start(dir.path(), &[("plainrunc", &runc)]).expect("start dockerd");
    d.import_busybox("local/busybox:1").expect("import busybox");

    let proj = dir.path().join("proj");
    fs::create_dir_all(&proj).unwrap();
    fs::write(
        proj.join("docker-compose.yml"),
        r#"version: "2.4"
services:
  hello:
    image: local/busybox:1
    network_mode: none
    runtime: plainrunc
    environment:
      - FOO=bar
    command: ["sh", "-c", "echo hi-compose $$FOO"]
"#,
    )
    .unwrap();

    let o = d.compose(
        &proj,
        "smoke",
        &[
            "up",
            "--no-color",
            "--abort-on-container-exit",
            "--exit-code-from",
            "hello",
        ],
    );
    let out = expect_success(&o, "docker-compose up");
    assert!(out.contains("hi-compose bar"), "{out}\n{}", stderr(&o));

    // `run --rm -T` gives the service's raw stdout (once: the container runs once) and its
    // exit code
    let o = d.compose(&proj, "smoke", &["run", "--rm", "-T", "hello"]);
    assert_eq!(
        expect_success(&o, "docker-compose run").trim(),
        "hi-compose bar"
    );
    // What a container writes at once reaches `run` even while the container is still
    // running when compose looks (the way a loaded machine made it look): compose must
    // attach before it starts the container (see `Dockerd::compose_cmd`).
    let o = d.compose(
        &proj,
        "smoke",
        &[
            "run",
            "--rm",
            "-T",
            "hello",
            "sh",
            "-c",
            "echo early; sleep 1",
        ],
    );
    assert_eq!(expect_success(&o, "docker-compose run").trim(), "early");
    let o = d.compose(
        &proj,
        "smoke",
        &["run", "--rm", "-T", "hello", "sh", "-c", "exit 4"],
    );
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));

    expect_success(&d.compose(&proj, "smoke", &["down"]), "docker-compose down");
    let ps = expect_success(&d.docker(&["ps", "-aq"]), "docker ps");
    assert!(ps.trim().is_empty(), "containers left: {ps}");
}

#[test]
fn containerd_ctr_runs_rootfs_and_image() {
    require_root();
    let runc = require("runc");
    let dir = tmpdir();
    let rootfs = busybox_rootfs(dir.path());
    let c = Containerd::start(dir.path()).expect("start containerd");

    let o = c.run_rootfs(
        &runc,
        &rootfs,
        "smoke1",
        &["--env", "FOO=bar"],
        &["sh", "-c", "echo hi $FOO"],
    );
    assert_eq!(expect_success(&o, "ctr run --rootfs").trim(), "hi bar");

    let o = c.run_rootfs(&runc, &rootfs, "smoke2", &[], &["sh", "-c", "exit 5"]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));

    c.import_busybox("docker.io/local/busybox:1")
        .expect("import image");
    let o = c.ctr(&[
        "run",
        "--rm",
        "--runtime",
        "io.containerd.runc.v2",
        "--runc-binary",
        runc.to_str().unwrap(),
        "docker.io/local/busybox:1",
        "smoke3",
        "echo",
        "hi-image",
    ]);
    assert_eq!(expect_success(&o, "ctr run image").trim(), "hi-image");

    let left = expect_success(&c.ctr(&["container", "ls", "-q"]), "ctr container ls");
    assert!(left.trim().is_empty(), "containers left: {left}");
}

#[test]
fn podman_runs_rootfs_with_hooks_dir() {
    require_root();
    let runc = require("runc");
    let dir = tmpdir();
    let rootfs = busybox_rootfs(dir.path());

    // a prestart hook, only for containers annotated smoke/hook, that leaves a marker file
    let hooks = dir.path().join("hooks.d");
    fs::create_dir_all(&hooks).unwrap();
    let marker = dir.path().join("hook-ran");
    let hook_sh = dir.path().join("hook.sh");
    fs::write(&hook_sh, format!("#!/bin/sh\ncat > {}\n", marker.display())).unwrap();
    fs::set_permissions(&hook_sh, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(
        hooks.join("smoke.json"),
        serde_json::to_vec(&json!({
            "version": "1.0.0",
            "hook": { "path": hook_sh },
            "when": { "annotations": { "^smoke/hook$": ".+" } },
            "stages": ["prestart"]
        }))
        .unwrap(),
    )
    .unwrap();

    let p = Podman::new(dir.path())
        .with_hooks_dir(&hooks)
        .with_runtime(&runc);

    let o = p.run_rootfs(
        &rootfs,
        &["-e", "FOO=bar"],
        &["sh", "-c", "echo hi $FOO; ulimit -n"],
    );
    let out = expect_success(&o, "podman run");
    assert_eq!(out.lines().collect::<Vec<_>>(), ["hi bar", "1024"]);
    assert!(!marker.exists(), "hook ran without the annotation");

    let o = p.run_rootfs(&rootfs, &["--annotation", "smoke/hook=1"], &["echo", "hi"]);
    assert_eq!(expect_success(&o, "podman run (hook)").trim(), "hi");
    let state = fs::read_to_string(&marker).expect("hook ran");
    let state: serde_json::Value = serde_json::from_str(&state).expect("hook got the state JSON");
    assert!(state["pid"].as_i64().unwrap_or(0) > 0, "{state}");

    let o = p.run_rootfs(&rootfs, &[], &["sh", "-c", "exit 6"]);
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
}
