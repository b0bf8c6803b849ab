//! The fault matrix (README, "Faults"): each fault is injected into a real
//! container created through the shim (by runc directly, by dockerd or by
//! containerd), and four things are counted after it and the engine's
//! normal cleanup:
//!
//! - leases leaked: a lease still on disk once its container is gone, or an
//!   instance the next container cannot get;
//! - double grants: a second container granted the instance while the first
//!   can still run;
//! - half-written config.json: a bundle spec that no longer parses, or that
//!   is neither the original nor migward's complete edit;
//! - host writes: anything new under the simulated host's root (its /dev and
//!   /proc) or outside the bundle and state directory.
//!
//! Every count must be zero; each test prints its row.

mod common;

use common::engines::{self, load_config, pid_alive, save_config, wait_until, Containerd, Dockerd};
use common::runc::{spawn_create, Host};
use common::sim::{stderr, write_script};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// How long a fault test waits for an engine to act on its own.
const MINUTE: Duration = Duration::from_secs(60);

#[derive(Debug, Default, PartialEq)]
struct Counts {
    leaked: usize,
    double: usize,
    half_written: usize,
    host_writes: usize,
}

impl Counts {
    fn assert_zero(&self, fault: &str) {
        eprintln!(
            "| {fault} | {} | {} | {} | {} |",
            self.leaked, self.double, self.half_written, self.host_writes
        );
        assert_eq!(self, &Counts::default(), "{fault}");
    }
}

/// Every path under `dir` (not following links).
fn tree(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(p.clone());
            }
            out.insert(p);
        }
    }
    out
}

/// A fault case: the host, the instance under test and what to compare.
struct Case {
    h: Host,
    uuid: String,
    host_before: BTreeSet<PathBuf>,
    counts: Counts,
}

impl Case {
    fn new() -> Case {
        let h = Host::new("h100-7x1g");
        let uuid = h.sim.mig_uuid(0, 2);
        let host_before = tree(&h.sim.path("host"));
        Case {
            h,
            uuid,
            host_before,
            counts: Counts::default(),
        }
    }

    fn bundle(&self, name: &str, args: &[&str]) -> PathBuf {
        self.h.bundle(name, &self.uuid, args)
    }

    /// Counts a bundle spec that is neither `pristine` nor a whole edit.
    fn check_spec(&mut self, bundle: &Path, pristine: &[u8]) {
        let now = std::fs::read(bundle.join("config.json")).unwrap();
        if now == pristine {
            return;
        }
        // migward's edit: whole JSON, with the instance's nodes in it.
        let edited = serde_json::from_slice::<Value>(&now).is_ok_and(|v| {
            v.pointer("/linux/devices")
                .and_then(Value::as_array)
                .is_some_and(|d| {
                    d.iter().any(|n| {
                        n["path"]
                            .as_str()
                            .is_some_and(|p| p.starts_with("/dev/nvidia-caps/"))
                    })
                })
        });
        if !edited {
            self.counts.half_written += 1;
        }
    }

    /// A new container of the same instance is refused while `live` says
    /// the faulted one can still run (else a double grant is counted).
    fn check_exclusive(&mut self, name: &str, live: bool) {
        if !live {
            return;
        }
        let b = self.bundle(name, &["true"]);
        if self.h.run(&b, name).status.success() {
            self.counts.double += 1;
        }
    }

    /// After cleanup: the next container gets the instance, and no lease is
    /// left once it is gone; nothing new appeared on the simulated host.
    fn finish(mut self, fault: &str) {
        let b = self.bundle("next", &["true"]);
        let out = self.h.run(&b, "next");
        if !out.status.success() {
            eprintln!("next container refused: {}", stderr(&out));
            self.counts.leaked += 1;
        }
        self.counts.leaked += self.h.leases().len();
        let host_after = tree(&self.h.sim.path("host"));
        self.counts.host_writes += host_after.difference(&self.host_before).count();
        self.counts.assert_zero(fault);
    }
}

/// The container's runc state status, if runc knows it.
fn runc_status(h: &Host, id: &str) -> Option<String> {
    let out = h.runc(&["state", id]);
    out.status
        .success()
        .then(|| serde_json::from_slice::<Value>(&out.stdout).ok())
        .flatten()
        .and_then(|v| v["status"].as_str().map(str::to_string))
}

/// Waits (at most a minute, by polling a file the fault's own process
/// writes) for `path` to hold a pid; returns it.
fn wait_for_pid(path: &Path) -> i32 {
    let pid = || {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.trim().parse().ok())
    };
    engines::wait_for(&format!("a pid in {}", path.display()), || pid().is_some());
    pid().expect("the pid just read")
}

fn sigkill(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

#[test]
fn runc_killed_during_create() {
    let mut c = Case::new();
    // A createRuntime hook that stops runc half way: it records its pid and
    // waits, while runc (the exec'd shim) waits for it.
    let b = c.bundle("victim", &["sleep", "300"]);
    let marker = c.h.sim.path("hook.pid");
    let hook = c.h.sim.path("slow-hook");
    write_script(
        &hook,
        &format!("echo $$ > {}\nexec sleep 300", marker.display()),
    );
    let mut cfg = load_config(&b);
    cfg["hooks"] = json!({"createRuntime": [{"path": hook, "args": ["slow-hook"]}]});
    save_config(&b, &cfg);
    let pristine = std::fs::read(b.join("config.json")).unwrap();
    let pending = spawn_create(c.h.shim(), &b, "victim");
    let hook_pid = wait_for_pid(&marker);
    let runc_pid = pending.pid();
    sigkill(runc_pid as i32);
    let _ = pending.wait();
    sigkill(hook_pid);
    c.check_spec(&b, &pristine);
    let status = runc_status(&c.h, "victim");
    let live = matches!(status.as_deref(), Some("created" | "running"));
    c.check_exclusive("while-victim", live);
    // What an engine does next: delete the half-made container.
    let _ = engines::output(c.h.shim().args(["delete", "--force", "victim"]));
    c.finish("runc SIGKILLed during create (in a createRuntime hook)");
}

#[test]
fn shim_killed_between_lease_and_exec() {
    let mut c = Case::new();
    // The runtime below never finishes: the shim (now it) is killed while
    // it holds the lease and before any container exists.
    let stuck = c.h.sim.path("stuck-runtime");
    // It says when it runs: the shim execs it only after the lease is on disk.
    let started = c.h.sim.path("stuck-started");
    write_script(
        &stuck,
        &format!("echo $$ > {}\nexec sleep 300", started.display()),
    );
    let base = std::fs::read_to_string(c.h.sim.config()).unwrap();
    let config = c.h.sim.path("stuck.toml");
    std::fs::write(
        &config,
        format!("{base}runtime = {:?}\n", stuck.display().to_string()),
    )
    .unwrap();
    let b = c.bundle("victim", &["true"]);
    let pristine = std::fs::read(b.join("config.json")).unwrap();
    let mut shim = c.h.shim();
    shim.env("MIGWARD_CONFIG", &config);
    let pending = spawn_create(shim, &b, "victim");
    let lease = c.h.sim.path("state/leases/victim.json");
    wait_for_pid(&started);
    assert!(lease.exists(), "the shim ran the runtime without its lease");
    // While it lives, it holds the instance.
    c.check_exclusive("while-shim", true);
    sigkill(pending.pid() as i32);
    let _ = pending.wait();
    c.check_spec(&b, &pristine);
    c.finish("shim SIGKILLed between lease and exec");
}

#[test]
fn container_init_killed_without_delete() {
    let mut c = Case::new();
    let b = c.bundle("victim", &["sleep", "300"]);
    let pristine = std::fs::read(b.join("config.json")).unwrap();
    engines::expect_success(&c.h.create(&b, "victim"), "create");
    c.check_exclusive("while-init", true);
    let state: Value = serde_json::from_slice(&c.h.runc(&["state", "victim"]).stdout).unwrap();
    let pid = state["pid"].as_i64().unwrap() as i32;
    sigkill(pid);
    // The init is our child's child: runc reparented it to init (pid 1) or
    // a subreaper; wait until it is gone or a zombie.
    engines::wait_for("the killed init to die", || !pid_alive(pid));
    c.check_spec(&b, &pristine);
    // No delete: the next acquire must reclaim the dead holder by itself.
    let b2 = c.bundle("after", &["true"]);
    let out = c.h.run(&b2, "after");
    if !out.status.success() {
        eprintln!("refused after the init died: {}", stderr(&out));
        c.counts.leaked += 1;
    }
    let _ = c.h.runc(&["delete", "--force", "victim"]);
    c.finish("container init SIGKILLed, no delete");
}

/// A tmpfs mounted over the state directory, unmounted when dropped.
struct StateMount(PathBuf);

impl StateMount {
    fn new(state: &Path, options: &str) -> StateMount {
        std::fs::create_dir_all(state).unwrap();
        engines::expect_success(
            &engines::output(
                Command::new("mount")
                    .args(["-t", "tmpfs", "-o", options, "migward-fault"])
                    .arg(state),
            ),
            "mount a tmpfs over the state dir",
        );
        StateMount(state.to_path_buf())
    }
}

impl Drop for StateMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// `create` with the state dir unusable: refused with one line naming it,
/// config.json untouched, runc never reached.
fn unusable_state_dir(fault: &str, options: &str, fill: bool) {
    let mut c = Case::new();
    let state = c.h.sim.path("state");
    let _ = std::fs::remove_dir_all(&state);
    let mount = StateMount::new(&state, options);
    if fill {
        std::fs::create_dir_all(state.join("leases")).unwrap();
        // Fill it: a write to a full tmpfs fails with ENOSPC.
        let big = vec![0u8; 4096];
        let mut f = std::fs::File::create(state.join("filler")).unwrap();
        while std::io::Write::write_all(&mut f, &big).is_ok() {}
    }
    let b = c.bundle("victim", &["true"]);
    let pristine = std::fs::read(b.join("config.json")).unwrap();
    let out = c.h.run(&b, "victim");
    let err = engines::expect_failure(&out, fault);
    assert!(
        err.contains(&state.display().to_string()) && err.lines().count() == 1,
        "{fault}: {err}"
    );
    if std::fs::read(b.join("config.json")).unwrap() != pristine {
        c.counts.half_written += 1;
    }
    if runc_status(&c.h, "victim").is_some() {
        c.counts.double += 1; // a container exists without a lease
    }
    let leftovers: Vec<PathBuf> = tree(&state)
        .into_iter()
        // The filler, the store's dir and its (empty) lock file.
        .filter(|p| !["filler", "leases", ".lock"].iter().any(|n| p.ends_with(n)))
        .collect();
    assert!(leftovers.is_empty(), "{fault}: left {leftovers:?}");
    drop(mount);
    c.finish(fault);
}

#[test]
fn state_dir_read_only() {
    unusable_state_dir("state directory read-only", "ro,size=1m", false);
}

#[test]
fn state_dir_full() {
    unusable_state_dir("state directory full", "size=64k", true);
}

/// A lease file cut short: every acquire is refused, naming the file and
/// the fix, never granted over it; after the fix the instance is free.
fn truncated_lease(fault: &str, keep: impl Fn(usize) -> usize) {
    let mut c = Case::new();
    let b = c.bundle("holder", &["sleep", "300"]);
    engines::expect_success(&c.h.create(&b, "holder"), "create the holder");
    let path = c.h.sim.path("state/leases/holder.json");
    let text = std::fs::read(&path).unwrap();
    std::fs::write(&path, &text[..keep(text.len())]).unwrap();
    // The holder's container really goes away (as after a crash that cut
    // the file); the cut file must still refuse.
    let _ = c.h.runc(&["delete", "--force", "holder"]);
    let b2 = c.bundle("other", &["true"]);
    let out = c.h.run(&b2, "other");
    if out.status.success() {
        c.counts.double += 1;
    } else {
        let err = stderr(&out);
        assert!(
            err.contains("holder.json is corrupt")
                && err.contains("migward leases release holder --force"),
            "{fault}: {err}"
        );
    }
    engines::expect_success(
        &c.h.sim.run(&["leases", "release", "holder", "--force"]),
        "leases release holder --force",
    );
    c.finish(fault);
}

#[test]
fn lease_file_truncated_to_zero() {
    truncated_lease("lease file truncated to 0 bytes", |_| 0);
}

#[test]
fn lease_file_truncated_to_half() {
    truncated_lease("lease file truncated to half its JSON", |n| n / 2);
}

#[test]
fn same_id_in_two_runtime_roots() {
    let mut c = Case::new();
    let other_uuid = c.h.sim.mig_uuid(0, 3);
    let b = c.bundle("first", &["sleep", "300"]);
    engines::expect_success(&c.h.create(&b, "twin"), "create twin in root A");
    let root_b = c.h.sim.path("runc-b");
    let (link, config) = (c.h.link.clone(), c.h.sim.config());
    let shim_b = || {
        let mut cmd = Command::new(&link);
        cmd.env("MIGWARD_CONFIG", &config)
            .arg("--root")
            .arg(&root_b);
        cmd
    };
    // The same id under another root, for the same instance and for
    // another one: both refused (the id's lease belongs to root A's).
    for (name, uuid) in [("same", c.uuid.clone()), ("other", other_uuid)] {
        let b2 = c.h.bundle(&format!("second-{name}"), &uuid, &["true"]);
        let pristine = std::fs::read(b2.join("config.json")).unwrap();
        let out = spawn_create(shim_b(), &b2, "twin").wait();
        if out.status.success() {
            c.counts.double += 1;
            let _ = engines::output(shim_b().args(["delete", "--force", "twin"]));
        } else {
            assert!(stderr(&out).contains("twin"), "{}", stderr(&out));
        }
        c.check_spec(&b2, &pristine);
    }
    // Root B's delete of that id frees nothing of root A's.
    let _ = engines::output(shim_b().args(["delete", "--force", "twin"]));
    c.check_exclusive("while-twin", true);
    c.h.delete("twin");
    c.finish("the same container id in two runtime roots");
}

// --- through the engines ------------------------------------------------------

/// A dockerd whose `migward` runtime is the shim on the case's host with
/// `config`; returns it and its daemon.json (to start it again on the same
/// roots).
fn dockerd(c: &Case, config: &Path, extra: Value) -> (Dockerd, PathBuf) {
    let dir = c.h.sim.path("e");
    let mut cfg = Dockerd::private_config(&dir);
    cfg["runtimes"] =
        json!({"migward": {"path": c.h.link, "runtimeArgs": ["--migward-config", config]}});
    for (k, v) in extra.as_object().into_iter().flatten() {
        cfg[k] = v.clone();
    }
    let cfg_path = dir.join("dk/daemon.json");
    engines::write(&cfg_path, serde_json::to_vec_pretty(&cfg).unwrap());
    let d = Dockerd::start_from(&dir, &cfg_path, None).expect("dockerd");
    d.import_busybox("local/busybox:1").expect("docker import");
    (d, cfg_path)
}

/// `docker run` of a container that asks for the case's instance.
fn docker_run_cmd(c: &Case, d: &Dockerd, args: &[&str]) -> Command {
    let env = format!("NVIDIA_VISIBLE_DEVICES={}", c.uuid);
    let mut cmd = d.docker_cmd();
    cmd.args(["run", "--network", "none", "--runtime=migward", "-e", &env])
        .args(args);
    cmd
}

/// The pid of a docker container's init, if it has one.
fn docker_init_pid(d: &Dockerd, name: &str) -> Option<i32> {
    let out = d.docker(&["inspect", "-f", "{{.State.Pid}}", name]);
    engines::stdout(&out).trim().parse().ok().filter(|p| *p > 0)
}

/// dockerd SIGKILLed while a MIG container runs, then started again: the
/// container keeps its instance as long as it runs (with live-restore
/// dockerd keeps it; without, dockerd stops it on restore), and once it is
/// gone nothing is left.
fn dockerd_killed(live_restore: bool, fault: &str) {
    let mut c = Case::new();
    let config = c.h.sim.config();
    let (d, cfg) = dockerd(&c, &config, json!({"live-restore": live_restore}));
    let out = engines::output(&mut docker_run_cmd(
        &c,
        &d,
        &["-d", "--name", "victim", "local/busybox:1", "sleep", "300"],
    ));
    let id = engines::expect_success(&out, "docker run -d")
        .trim()
        .to_string();
    let bundle = d.bundle(&id);
    c.check_spec(&bundle, b"");
    let init = docker_init_pid(&d, "victim").expect("the container's init pid");
    d.crash();
    // With its daemon gone the container runs on under its shim.
    c.check_exclusive("while-dockerd-is-down", pid_alive(init));
    c.check_spec(&bundle, b"");
    let dir = c.h.sim.path("e");
    let d = Dockerd::start_from(&dir, &cfg, None).expect("dockerd again");
    if !live_restore {
        // dockerd's restore stops what it does not keep.
        wait_until(MINUTE, || !pid_alive(init));
    }
    let live = pid_alive(init);
    assert_eq!(
        live, live_restore,
        "{fault}: the container's init after dockerd restarted"
    );
    c.check_exclusive("after-dockerd-restarted", live);
    if !live_restore {
        // The restore deleted the task through migward, which released
        // the lease.
        wait_until(MINUTE, || c.h.leases().is_empty());
        assert_eq!(
            c.h.leases(),
            Vec::<Value>::new(),
            "dockerd's restore did not go through migward's delete"
        );
    }
    engines::expect_success(&d.docker(&["rm", "-f", "victim"]), "docker rm -f");
    drop(d);
    c.finish(fault);
}

#[test]
fn dockerd_killed_while_a_container_runs() {
    dockerd_killed(false, "dockerd SIGKILLed while a container runs, restarted");
}

#[test]
fn dockerd_killed_while_a_container_runs_with_live_restore() {
    dockerd_killed(
        true,
        "dockerd SIGKILLed while a container runs, restarted with live-restore",
    );
}

/// Writes the go file when dropped, so a slow runtime never outlives a
/// failed test by its whole wait.
struct Go(PathBuf);

impl Drop for Go {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.0, "");
    }
}

/// `docker rm -f` sent while the shim's `create` is in flight (held in the
/// lower runtime, after migward took the lease and edited the spec).
#[test]
fn docker_rm_force_during_create() {
    let mut c = Case::new();
    let marker = c.h.sim.path("create.pid");
    let go = Go(c.h.sim.path("go"));
    let slow = c.h.sim.path("slow-runc");
    // The first `create` waits (at most two minutes) for the test's go.
    write_script(
        &slow,
        &format!(
            "for a in \"$@\"; do\n  if [ \"$a\" = create ] && [ ! -e {go} ]; then\n    echo $$ > {marker}\n    i=0\n    while [ ! -e {go} ] && [ $i -lt 2400 ]; do sleep 0.05; i=$((i+1)); done\n  fi\ndone\nexec runc \"$@\"",
            go = go.0.display(),
            marker = marker.display()
        ),
    );
    let config = c.h.sim.config_variant(
        "slow",
        &format!("runtime = {:?}", slow.display().to_string()),
    );
    // debug: dockerd logs each API call, which shows when the removal is in.
    let (d, _) = dockerd(&c, &config, json!({"debug": true}));
    let mut run = docker_run_cmd(
        &c,
        &d,
        &["-d", "--name", "victim", "local/busybox:1", "sleep", "300"],
    );
    let run = std::thread::spawn(move || engines::output(&mut run));
    wait_for_pid(&marker);
    // The lease is taken before the lower runtime runs.
    assert_eq!(c.h.leases().len(), 1, "the shim's lease during create");
    let mut rm = d.docker_cmd();
    rm.args(["rm", "-f", "victim"]);
    let rm = std::thread::spawn(move || engines::output(&mut rm));
    // The removal has reached dockerd (it waits there for the create).
    let removal_in = || {
        d.log_text()
            .lines()
            .any(|l| l.contains("Calling DELETE") && l.contains("/containers/victim"))
    };
    wait_until(MINUTE, removal_in);
    assert!(removal_in(), "the removal never reached dockerd");
    drop(go);
    let (run, rm) = (run.join().unwrap(), rm.join().unwrap());
    eprintln!(
        "docker run: {} {}; docker rm -f: {} {}",
        run.status,
        stderr(&run).trim(),
        rm.status,
        stderr(&rm).trim()
    );
    // The removal wins once the create is done: no container, no lease.
    engines::expect_success(&rm, "docker rm -f during create");
    let gone = d.docker(&["inspect", "victim"]);
    assert!(!gone.status.success(), "the container is still there");
    if !c.h.leases().is_empty() {
        eprintln!("left after the removal: {:?}", c.h.leases());
        c.counts.leaked += 1;
    }
    drop(d);
    c.finish("`docker rm -f` while `create` is in flight");
}

/// containerd's runc shim SIGKILLed under a running MIG container:
/// containerd cleans up after the dead shim (its `delete` goes through
/// migward), and the instance is free once the container is gone.
#[test]
fn containerd_shim_killed() {
    let mut c = Case::new();
    let ct = Containerd::start(&c.h.sim.path("c")).expect("containerd");
    let wrapper = c.h.sim.runtime_wrapper();
    let rootfs = engines::busybox_rootfs(&c.h.sim.path("rf"));
    let env = format!("NVIDIA_VISIBLE_DEVICES={}", c.uuid);
    let out = engines::output(
        ct.ctr_cmd()
            .args([
                "run",
                "-d",
                "--runtime",
                "io.containerd.runc.v2",
                "--runc-binary",
            ])
            .arg(&wrapper)
            .args(["--env", engines::CONTAINER_PATH, "--env", &env, "--rootfs"])
            .arg(&rootfs)
            .args(["victim", "sleep", "300"]),
    );
    engines::expect_success(&out, "ctr run -d");
    let bundle = ct.dir.join(format!(
        "state/io.containerd.runtime.v2.task/{}/victim",
        ct.namespace
    ));
    c.check_spec(&bundle, b"");
    let tasks = engines::expect_success(&ct.ctr(&["task", "ls"]), "ctr task ls");
    let init: i32 = tasks
        .lines()
        .find(|l| l.starts_with("victim "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid for victim in {tasks}"));
    let stat = std::fs::read_to_string(format!("/proc/{init}/stat")).unwrap();
    let shim: i32 = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .expect("the init's parent");
    assert!(
        engines::stdout(&engines::output(Command::new("ps").args([
            "-o",
            "comm=",
            "-p",
            &shim.to_string()
        ])))
        .contains("containerd-shim"),
        "the init's parent {shim} is not containerd's shim"
    );
    sigkill(shim);
    // containerd sees its shim gone and deletes the container's task.
    wait_until(MINUTE, || !pid_alive(init));
    let live = pid_alive(init);
    c.check_exclusive("after-the-shim-died", live);
    // containerd's cleanup ran the shim's `delete`, with the runtime the
    // bundle names (migward), which released the lease after the kill.
    wait_until(MINUTE, || c.h.leases().is_empty());
    assert_eq!(
        c.h.leases(),
        Vec::<Value>::new(),
        "the cleanup after the dead shim did not go through migward's delete"
    );
    let _ = ct.ctr(&["task", "delete", "-f", "victim"]);
    let _ = ct.ctr(&["container", "rm", "victim"]);
    drop(ct);
    c.finish("containerd's runc shim SIGKILLed under a running container");
}
