//! One tenant per instance with real runc: refusals, release, races and
//! crashes.

mod common;

use common::engines::{self, load_config, save_config};
use common::runc::Host;
use common::sim::{stderr, write_script, Sim};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

#[test]
fn second_container_is_refused_until_the_first_exits() {
    let h = Host::new("a100x4-mixed");
    let x = h.sim.mig_uuid(3, 0);
    let y = h.sim.mig_uuid(3, 1);
    let a = h.bundle("a", &x, &["sleep", "300"]);
    let out = h.create(&a, "holder-a");
    assert!(out.status.success(), "create A: {}", stderr(&out));
    engines::expect_success(&h.runc(&["start", "holder-a"]), "start A");

    let b = h.bundle("b", &x, &["true"]);
    let out = h.run(&b, "second-b");
    let err = engines::expect_failure(&out, "B on a held instance");
    assert!(
        err.contains(&format!("container second-b refused: GPU 3 GI 1 (1g.10gb, {x}) is held by container holder-a since ")),
        "{err}"
    );
    assert!(
        err.contains("migward leases release holder-a --force"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // A delete the runtime refuses (the container runs, no --force) keeps
    // the lease.
    let out = engines::output(h.shim().args(["delete", "holder-a"]));
    engines::expect_failure(&out, "delete of a running container");
    assert_eq!(h.leases().len(), 1, "a refused delete freed the lease");

    let other = h.bundle("c", &y, &["true"]);
    engines::expect_success(&h.run(&other, "other-c"), "another instance");

    let listed = h.leases();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["container_id"], "holder-a");
    assert_eq!(listed[0]["live"], true);
    let text = engines::expect_success(&h.sim.run(&["list"]), "list");
    assert!(text.contains("holder-a"), "list shows the holder: {text}");

    // A exits: its init is gone, so its lease is stale even before delete.
    engines::expect_success(&h.runc(&["kill", "holder-a", "KILL"]), "kill A");
    engines::wait_for("holder-a to stop after SIGKILL", || {
        h.runc(&["state", "holder-a"])
            .stdout
            .windows(7)
            .any(|w| w == b"stopped")
    });
    let out = h.run(&b, "second-b");
    let text = engines::expect_success(&out, "B after A exited");
    assert!(
        stderr(&out).contains("reclaimed the stale lease of container holder-a"),
        "{text}"
    );
    let log = std::fs::read_to_string(h.sim.path("state/events.log")).unwrap();
    assert!(log.contains("\"event\":\"reclaim\""), "{log}");
    // `delete` of A (what engines do) is harmless now; nothing is left.
    engines::expect_success(
        &engines::output(h.shim().args(["delete", "--force", "holder-a"])),
        "delete A",
    );
    assert_eq!(h.leases(), Vec::<Value>::new());
}

#[test]
fn thirty_two_racing_processes_one_winner() {
    let h = Host::new("h100-7x1g");
    let x = h.sim.mig_uuid(0, 0);
    let me = std::process::id().to_string();
    let children: Vec<_> = (0..32)
        .map(|i| {
            h.sim
                .cmd()
                .args([
                    "leases",
                    "acquire",
                    &format!("racer-{i}"),
                    &x,
                    "--holder-pid",
                    &me,
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let granted = outs.iter().filter(|o| o.status.success()).count();
    assert_eq!(
        granted,
        1,
        "{:?}",
        outs.iter().map(stderr).collect::<Vec<_>>()
    );
    for o in outs.iter().filter(|o| !o.status.success()) {
        assert!(
            stderr(o).contains("is held by container racer-"),
            "{}",
            stderr(o)
        );
    }
    assert_eq!(h.leases().len(), 1);
}

#[test]
fn thirty_two_containers_on_seven_instances() {
    let h = Host::new("h100-7x1g");
    let uuids: Vec<String> = (0..7).map(|m| h.sim.mig_uuid(0, m)).collect();
    let bundles: Vec<PathBuf> = (0..32)
        .map(|i| h.bundle(&format!("b{i}"), &uuids[i % 7], &["true"]))
        .collect();
    let (outs, created) = h.create_racing(&bundles, "many");
    assert_eq!(
        created.len(),
        7,
        "{:?}",
        outs.iter().map(stderr).collect::<Vec<_>>()
    );
    for (i, o) in outs.iter().enumerate().filter(|(_, o)| !o.status.success()) {
        let err = stderr(o);
        assert!(
            err.contains(&format!("container many-{i} refused"))
                && err.contains("is held by container many-"),
            "{err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    // Each instance went to exactly one container.
    let mut held: Vec<usize> = created.iter().map(|i| i % 7).collect();
    held.sort();
    assert_eq!(held, (0..7).collect::<Vec<_>>());
    for i in &created {
        h.delete(&format!("many-{i}"));
    }
    assert_eq!(h.leases(), Vec::<Value>::new());
}

#[test]
fn crashes_never_block_an_instance() {
    let h = Host::new("h100-7x1g");
    let x = h.sim.mig_uuid(0, 4);
    let next = |name: &str| {
        let b = h.bundle(name, &x, &["true"]);
        h.run(&b, name)
    };

    // 1. The shim is killed after the lease, before runc runs: the lower
    //    runtime here is a process that stays put (the exec'd shim), killed.
    let stuck = h.sim.path("stuck-runtime");
    // It says when it runs: the shim execs it only after the lease is on disk.
    let started = h.sim.path("stuck-started");
    write_script(
        &stuck,
        &format!("echo $$ > {}\nexec sleep 300", started.display()),
    );
    let stuck_config = h.sim.path("stuck.toml");
    let base = std::fs::read_to_string(h.sim.config()).unwrap();
    std::fs::write(
        &stuck_config,
        format!("{base}runtime = {:?}\n", stuck.display().to_string()),
    )
    .unwrap();
    let b = h.bundle("killed", &x, &["true"]);
    let mut child = Command::new(&h.link)
        .env("MIGWARD_CONFIG", &stuck_config)
        .args(["create", "--bundle"])
        .arg(&b)
        .arg("killed-shim")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lease_file = h.sim.path("state/leases/killed-shim.json");
    engines::wait_for("the shim to exec the stuck runtime", || {
        let exited = child.try_wait().unwrap();
        assert!(exited.is_none(), "the shim exited: {exited:?}");
        started.exists()
    });
    assert!(
        lease_file.exists(),
        "the shim ran the runtime without its lease"
    );
    let refused = next("while-alive");
    assert!(
        stderr(&refused).contains("held by container killed-shim"),
        "{}",
        stderr(&refused)
    );
    child.kill().unwrap();
    child.wait().unwrap();
    engines::expect_success(&next("after-shim-kill"), "after the shim was killed");

    // 2. runc's create fails after the lease (a bad rootfs path).
    let bad = h.bundle("badroot", &x, &["true"]);
    let mut cfg = load_config(&bad);
    cfg["root"]["path"] = json!("/nonexistent/rootfs");
    save_config(&bad, &cfg);
    engines::expect_failure(&h.run(&bad, "badroot"), "bad rootfs");
    engines::expect_success(&next("after-bad-rootfs"), "after a failed create");

    // 3. The container's init is SIGKILLed (no delete follows).
    let holder = h.bundle("init-killed", &x, &["sleep", "300"]);
    assert!(h.create(&holder, "init-killed").status.success());
    let state: Value = serde_json::from_slice(&h.runc(&["state", "init-killed"]).stdout).unwrap();
    let pid = state["pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    engines::wait_for("the killed init to die", || !engines::pid_alive(pid));
    engines::expect_success(&next("after-init-kill"), "after the init was killed");
    h.runc(&["delete", "--force", "init-killed"]);

    // 4. A lease file full of garbage: the clear error, never a grant.
    std::fs::write(
        h.sim.path("state/leases/garbage.json"),
        "\u{0}\u{7f}not json at all",
    )
    .unwrap();
    let out = next("after-garbage");
    let err = engines::expect_failure(&out, "garbage lease");
    assert!(
        err.contains("state/leases/garbage.json is corrupt"),
        "{err}"
    );

    // 5. Hostile container ids are refused before any file is touched.
    std::fs::remove_file(h.sim.path("state/leases/garbage.json")).unwrap();
    let b = h.bundle("hostile", &x, &["true"]);
    let before: Vec<_> = std::fs::read_dir(h.sim.path("state/leases"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    for id in ["../../escape", "a/b", ".hidden"] {
        let err = engines::expect_failure(&h.run(&b, id), "hostile id");
        assert!(
            err.contains("container id") && err.contains("is not valid"),
            "{err}"
        );
    }
    let after: Vec<_> = std::fs::read_dir(h.sim.path("state/leases"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(before, after);
    assert!(!h.sim.path("escape.json").exists());
}

#[test]
fn exclusivity_units_gpu_instance_compute_instance_and_whole_gpu() {
    let topo_dir = tempfile::tempdir().unwrap();
    let topo = topo_dir.path().join("cis.toml");
    std::fs::write(
        &topo,
        "[[gpu]]\nmodel = \"A100-80GB\"\ninstances = [{ profile = \"3g.40gb\", ci_slices = [1, 1, 1] }, \"3g.40gb\"]\n",
    )
    .unwrap();
    let sim = Sim::new(topo.to_str().unwrap());
    let list = sim.list();
    let profiles: Vec<&str> = list["gpus"][0]["mig_devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["profile"].as_str().unwrap())
        .collect();
    assert_eq!(
        profiles,
        ["1c.3g.40gb", "1c.3g.40gb", "1c.3g.40gb", "3g.40gb"]
    );
    let (ci0, ci1, other) = (sim.mig_uuid(0, 0), sim.mig_uuid(0, 1), sim.mig_uuid(0, 3));
    let me = std::process::id().to_string();
    let acquire = |sim: &Sim, id: &str, ids: &str| {
        sim.cmd()
            .args(["leases", "acquire", id, ids, "--holder-pid", &me])
            .output()
            .unwrap()
    };
    // Default unit: the GPU instance. Two CIs of one GI collide.
    assert!(acquire(&sim, "a", &ci0).status.success());
    let out = acquire(&sim, "b", &ci1);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("GPU 0 GI 1 (1c.3g.40gb")
            && stderr(&out).contains("held by container a"),
        "{}",
        stderr(&out)
    );
    // A whole-GPU request conflicts with any lease on the GPU.
    let out = acquire(&sim, "w", "0");
    assert!(
        stderr(&out).contains("GPU 0 (GPU-") && stderr(&out).contains("held by container a"),
        "{}",
        stderr(&out)
    );
    assert!(
        acquire(&sim, "c", &other).status.success(),
        "another GI is free"
    );

    // Compute-instance unit: both CIs are granted; the whole GPU still is not.
    let text = std::fs::read_to_string(sim.config()).unwrap();
    std::fs::write(
        sim.config(),
        format!("{text}exclusive = \"compute-instance\"\n"),
    )
    .unwrap();
    for id in ["a", "c"] {
        assert!(sim
            .run(&["leases", "release", id, "--force"])
            .status
            .success());
    }
    assert!(acquire(&sim, "a", &ci0).status.success());
    assert!(
        acquire(&sim, "b", &ci1).status.success(),
        "{}",
        stderr(&acquire(&sim, "b", &ci1))
    );
    assert!(
        !acquire(&sim, "b2", &ci1).status.success(),
        "the same CI twice"
    );
    assert!(!acquire(&sim, "w", "all").status.success());
    // A live holder is only released with --force.
    let out = sim.run(&["leases", "release", &ci0]);
    assert!(
        stderr(&out).contains("container a is still running: stop it first, or pass --force"),
        "{}",
        stderr(&out)
    );
    assert!(sim
        .run(&["leases", "release", &ci0, "--force"])
        .status
        .success());
}
