//! A small harness that drives the real container engines of a Debian 12 development machine
//! (runc 1.1, dockerd 20.10, containerd 1.6 / ctr, podman 4.3, docker-compose 1.29) with all of
//! their state kept in a per-test temporary directory, so tests can run in parallel.
//!
//! Everything here needs root. A missing tool is a panic telling to run
//! `scripts/install-deps.sh`, never a silent pass.
//!
//! Daemons (dockerd, containerd) are guards: dropping one stops exactly the process it started
//! (SIGTERM, a grace period, then SIGKILL), never anything found by name.

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Static busybox from Debian's `busybox-static`.
pub const BUSYBOX: &str = "/bin/busybox";
/// The PATH given to containers whose spec does not come from an image.
pub const CONTAINER_PATH: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Docker API version of Debian 12's daemon (docker.io 20.10).
pub const DOCKER_API_VERSION: &str = "1.41";
/// Default time limit for one engine CLI call.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(120);

const INSTALL_HINT: &str =
    "run `sudo scripts/install-deps.sh` to install the engines the end-to-end tests need";

// ---------------------------------------------------------------------------------------------
// prerequisites

/// Finds `cmd` (a name looked up on PATH, or an absolute path) and returns its absolute path.
/// Panics with a hint to run scripts/install-deps.sh when it is missing.
pub fn require(cmd: &str) -> PathBuf {
    match which(cmd) {
        Some(p) => p,
        None => panic!("missing prerequisite `{cmd}`: {INSTALL_HINT}"),
    }
}

/// Panics unless the test runs as root (every engine here needs it).
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "the end-to-end engine tests must run as root");
}

/// `cmd` resolved on PATH (or checked, when absolute); `None` when absent.
pub fn which(cmd: &str) -> Option<PathBuf> {
    let is_exec = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if cmd.contains('/') {
        let p = PathBuf::from(cmd);
        return is_exec(&p).then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(cmd))
        .find(|p| is_exec(p))
}

/// The Docker CLI that matches Debian's daemon: `/usr/bin/docker` from `docker.io`.
/// (`/usr/local/bin/docker` on these machines is a 28.x client; it negotiates the API version
/// down to 1.41 and works too, but flags newer than the daemon fail, so prefer Debian's.)
pub fn docker_client() -> PathBuf {
    which("/usr/bin/docker").unwrap_or_else(|| require("docker"))
}

// ---------------------------------------------------------------------------------------------
// temp dirs and commands

/// A fresh, short temporary directory under /tmp (unix socket paths must stay under 108 bytes).
pub fn tmpdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("mw")
        .tempdir_in("/tmp")
        .expect("create temp dir under /tmp")
}

/// Last path component of `dir`, usable as a unique id (tempdir names are unique).
pub fn unique_name(dir: &Path) -> String {
    dir.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "mw".into())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// Runs `cmd` with stdin from /dev/null, capturing stdout and stderr, killing it (SIGKILL) after
/// `timeout` (with its whole process group: it runs in a group of its own). A timed-out command
/// comes back as a failure, with what it printed so far and a note appended to its stderr.
/// Output still held by grandchildren that inherited the pipes is not waited for beyond a few
/// seconds after the command exits.
pub fn output_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let reader = |r: Option<Box<dyn Read + Send>>| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let (b, tx) = (buf.clone(), done_tx.clone());
        thread::spawn(move || {
            if let Some(mut r) = r {
                let mut chunk = [0u8; 8192];
                while let Ok(n) = r.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    b.lock().unwrap().extend_from_slice(&chunk[..n]);
                }
            }
            let _ = tx.send(());
        });
        buf
    };
    let out_buf = reader(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err_buf = reader(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() >= deadline => {
                // the whole process group this call started (the command and its children)
                signal(-(child.id() as i32), libc::SIGKILL);
                let _ = child.kill();
                timed_out = true;
                break child.wait().expect("wait for killed child");
            }
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("wait for {what}: {e}"),
        }
    };
    // both readers finish at EOF; a grandchild still holding a pipe gets 5 s in all
    let grace = Instant::now() + Duration::from_secs(5);
    for _ in 0..2 {
        let left = grace.saturating_duration_since(Instant::now());
        if done_rx.recv_timeout(left).is_err() {
            break;
        }
    }
    let stdout = std::mem::take(&mut *out_buf.lock().unwrap());
    let mut stderr = std::mem::take(&mut *err_buf.lock().unwrap());
    if timed_out {
        stderr.extend_from_slice(
            format!("\n[harness] killed after {}s: {what}\n", timeout.as_secs()).as_bytes(),
        );
    }
    Output {
        status,
        stdout,
        stderr,
    }
}

/// `output_timeout` with the default time limit.
pub fn output(cmd: &mut Command) -> Output {
    output_timeout(cmd, CMD_TIMEOUT)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Panics with the command's stdout and stderr unless it succeeded; returns stdout.
pub fn expect_success(o: &Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

/// Panics unless the command failed; returns stdout + stderr for message checks.
pub fn expect_failure(o: &Output, what: &str) -> String {
    assert!(
        !o.status.success(),
        "{what} unexpectedly succeeded:\n--- stdout\n{}\n--- stderr\n{}",
        stdout(o),
        stderr(o)
    );
    format!("{}{}", stdout(o), stderr(o))
}

/// Writes `contents` to `path`, making its parent directories.
pub fn write(path: &Path, contents: impl AsRef<[u8]>) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir {}: {e}", parent.display()));
    }
    fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn tail(path: &Path, max: usize) -> String {
    let s = fs::read_to_string(path).unwrap_or_default();
    let start = s.len().saturating_sub(max);
    let start = (start..s.len())
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(s.len());
    s[start..].to_string()
}

// ---------------------------------------------------------------------------------------------
// busybox rootfs, tarballs, runc bundles

/// Builds a minimal rootfs at `dir/rootfs` from the host's static busybox: `/bin/busybox` plus a
/// symlink for every applet it lists (sh, ls, cat, true, sleep, test, stat, echo, wc, grep,
/// head, mknod, ...), `/dev /proc /sys /tmp /run /root /etc` and `/etc/passwd`, `/etc/group`.
/// Returns the rootfs path (absolute).
pub fn busybox_rootfs(dir: &Path) -> PathBuf {
    busybox_rootfs_at(&dir.join("rootfs"))
}

/// `busybox_rootfs` at an exact path.
pub fn busybox_rootfs_at(rootfs: &Path) -> PathBuf {
    let busybox = require(BUSYBOX);
    let rootfs = absolute(rootfs);
    for d in [
        "bin", "sbin", "usr/bin", "usr/sbin", "dev", "proc", "sys", "etc", "root", "run", "var",
        "tmp",
    ] {
        fs::create_dir_all(rootfs.join(d)).expect("mkdir in rootfs");
    }
    fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777)).expect("chmod tmp");
    fs::set_permissions(rootfs.join("root"), fs::Permissions::from_mode(0o700))
        .expect("chmod root");
    let bin = rootfs.join("bin/busybox");
    if !bin.exists() {
        fs::copy(&busybox, &bin).expect("copy busybox into rootfs");
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).expect("chmod busybox");
    }
    let list = Command::new(&busybox)
        .arg("--list")
        .output()
        .expect("busybox --list");
    assert!(list.status.success(), "busybox --list failed");
    let applets: BTreeSet<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/'))
        .map(String::from)
        .collect();
    for a in &applets {
        let link = rootfs.join("bin").join(a);
        if fs::symlink_metadata(&link).is_err() {
            symlink("busybox", &link).unwrap_or_else(|e| panic!("symlink {a}: {e}"));
        }
    }
    write(
        &rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    );
    write(
        &rootfs.join("etc/group"),
        "root:x:0:\nvideo:x:44:\nnogroup:x:65534:\n",
    );
    write(&rootfs.join("etc/hostname"), "busybox\n");
    write(&rootfs.join("etc/hosts"), "127.0.0.1 localhost\n");
    write(&rootfs.join("etc/resolv.conf"), "");
    rootfs
}

/// A tarball of a busybox rootfs (`dir/busybox.tar`), for `docker import`.
pub fn busybox_tar(dir: &Path) -> PathBuf {
    let rootfs = busybox_rootfs_at(&dir.join("tar-rootfs"));
    let tar = absolute(&dir.join("busybox.tar"));
    tar_dir(&rootfs, &tar);
    tar
}

pub fn tar_dir(src: &Path, out: &Path) {
    let o = output(
        Command::new(require("tar"))
            .arg("--numeric-owner")
            .arg("-C")
            .arg(src)
            .arg("-cf")
            .arg(out)
            .arg("."),
    );
    expect_success(&o, "tar");
}

fn sha256_file(path: &Path) -> String {
    let o = output(Command::new(require("sha256sum")).arg(path));
    let s = expect_success(&o, "sha256sum");
    s.split_whitespace()
        .next()
        .expect("sha256sum output")
        .to_string()
}

/// A one-layer OCI image-layout tarball of busybox (`dir/busybox-oci.tar`) named `name`
/// (e.g. `docker.io/local/busybox:1`), for `ctr image import`. Its config sets PATH and `sh`.
pub fn busybox_oci_tar(dir: &Path, name: &str) -> PathBuf {
    busybox_oci_tar_cmd(dir, name, &["sh"])
}

/// [`busybox_oci_tar`] with the image's `Cmd` given (a pause image: one that never exits).
pub fn busybox_oci_tar_cmd(dir: &Path, name: &str, cmd: &[&str]) -> PathBuf {
    let rootfs = busybox_rootfs_at(&dir.join("oci-rootfs"));
    let layout = dir.join("oci-layout");
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs).expect("mkdir blobs");
    let add_blob = |tmp: &Path| -> (String, u64) {
        let digest = sha256_file(tmp);
        let size = fs::metadata(tmp).expect("blob size").len();
        fs::rename(tmp, blobs.join(&digest)).expect("move blob");
        (digest, size)
    };

    let layer_tmp = layout.join("layer.tar");
    tar_dir(&rootfs, &layer_tmp);
    let (layer, layer_size) = add_blob(&layer_tmp);

    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Env": [CONTAINER_PATH], "Cmd": cmd },
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{layer}")] }
    });
    let cfg_tmp = layout.join("config.json");
    write(&cfg_tmp, serde_json::to_vec(&config).unwrap());
    let (cfg, cfg_size) = add_blob(&cfg_tmp);

    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": format!("sha256:{cfg}"), "size": cfg_size },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar",
                     "digest": format!("sha256:{layer}"), "size": layer_size }]
    });
    let man_tmp = layout.join("manifest.json");
    write(&man_tmp, serde_json::to_vec(&manifest).unwrap());
    let (man, man_size) = add_blob(&man_tmp);

    let tag = name.rsplit_once(':').map(|(_, t)| t).unwrap_or("latest");
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{man}"), "size": man_size,
            "annotations": { "io.containerd.image.name": name,
                             "org.opencontainers.image.ref.name": tag }
        }]
    });
    write(
        &layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    );
    write(
        &layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    );

    let out = absolute(&dir.join("busybox-oci.tar"));
    let o = output(
        Command::new(require("tar"))
            .arg("-C")
            .arg(&layout)
            .arg("-cf")
            .arg(&out)
            .args(["oci-layout", "index.json", "blobs"]),
    );
    expect_success(&o, "tar oci layout");
    out
}

/// Creates an OCI bundle at `dir/bundle` with `runc spec`, a busybox rootfs at
/// `dir/bundle/rootfs` (writable: `root.readonly=false`), `process.terminal=false`, the given
/// args, and env = runc's default (PATH, TERM) with `env` ("K=V") added or replacing.
/// Edit further with [`load_config`] / [`save_config`].
pub fn runc_bundle(dir: &Path, args: &[&str], env: &[&str]) -> PathBuf {
    let runc = require("runc");
    let bundle = absolute(&dir.join("bundle"));
    fs::create_dir_all(&bundle).expect("mkdir bundle");
    let _ = fs::remove_file(bundle.join("config.json"));
    let o = output(Command::new(runc).arg("spec").current_dir(&bundle));
    expect_success(&o, "runc spec");
    busybox_rootfs_at(&bundle.join("rootfs"));

    let mut cfg = load_config(&bundle);
    cfg["process"]["terminal"] = json!(false);
    cfg["process"]["args"] = json!(args);
    let mut envs: Vec<String> = cfg["process"]["env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    for e in env {
        let key = e.split('=').next().unwrap_or(e);
        envs.retain(|x| x.split('=').next() != Some(key));
        envs.push(e.to_string());
    }
    if !envs.iter().any(|e| e.starts_with("PATH=")) {
        envs.insert(0, CONTAINER_PATH.to_string());
    }
    cfg["process"]["env"] = json!(envs);
    cfg["root"]["readonly"] = json!(false);
    // A cgroup of its own, named after the bundle (relative: under the
    // test's own cgroup, as runc's default is): without one runc names it
    // after the container id, and two tests running a container with the
    // same id at once would share (and rewrite) one device allow-list.
    cfg["linux"]["cgroupsPath"] = json!(test_cgroup(&bundle));
    save_config(&bundle, &cfg);
    bundle
}

/// The cgroup name [`runc_bundle`] gives the containers of `path` (a bundle,
/// or a directory for the prefix of all bundles under it).
pub fn test_cgroup(path: &Path) -> String {
    let name: String = path
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("migward-test{name}")
}

/// Removes the (empty) cgroups of the bundles under `dir` that runc could
/// not remove itself: a container whose runc was killed during `create`
/// has no state for a `delete` to find. Only where the tests run in the
/// root cgroup, as here and in CI; a cgroup that still holds a process is
/// left (rmdir fails).
pub fn remove_test_cgroups(dir: &Path) {
    // the '-' that stood for the '/' after `dir`: no other dir's prefix
    let prefix = format!("{}-", test_cgroup(dir));
    let roots = fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .chain([PathBuf::from("/sys/fs/cgroup")]);
    for root in roots {
        for entry in fs::read_dir(&root).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = fs::remove_dir(entry.path());
            }
        }
    }
}

/// The bundle's `config.json` as JSON.
pub fn load_config(bundle: &Path) -> Value {
    let p = bundle.join("config.json");
    let s = fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    serde_json::from_str(&s).unwrap_or_else(|e| panic!("parse {}: {e}", p.display()))
}

/// Writes the bundle's `config.json`.
pub fn save_config(bundle: &Path, cfg: &Value) {
    write(
        &bundle.join("config.json"),
        serde_json::to_vec_pretty(cfg).unwrap(),
    );
}

/// `<runtime> --root <state_root> run --bundle <bundle> <id>` (stdin /dev/null), where runtime is
/// runc or anything runc-compatible (the migward runtime shim). Use a per-test `state_root` so
/// parallel tests never share runc state.
pub fn oci_run(runtime: &Path, state_root: &Path, bundle: &Path, id: &str) -> Output {
    output(
        Command::new(runtime)
            .arg("--root")
            .arg(state_root)
            .arg("run")
            .arg("--bundle")
            .arg(bundle)
            .arg(id),
    )
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().expect("cwd").join(p)
    }
}

// ---------------------------------------------------------------------------------------------
// daemons

/// Polls `done` every 25 ms until it holds or `limit` has passed; whether
/// it held. For waits whose outcome the caller reads either way.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(25));
    }
}

/// [`wait_until`] for events that must come (a killed process going away,
/// a file a process writes): a minute without is a stuck test, not a slow
/// machine, and it panics naming `what`.
pub fn wait_for(what: &str, done: impl FnMut() -> bool) {
    assert!(
        wait_until(Duration::from_secs(60), done),
        "waited a minute for {what}"
    );
}

/// Whether `pid` exists and is not a zombie (a zombie answers kill(pid, 0)
/// but runs nothing and holds nothing open).
pub fn pid_alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z"))
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: plain kill(2) on a pid this harness started.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// SIGTERM to the child, up to `grace` for it to exit, then SIGKILL. Reaps it.
pub fn stop_child(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    signal(child.id() as i32, libc::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The command line of `pid`, NUL separators turned into spaces.
fn cmdline(pid: i32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

pub fn spawn_daemon(cmd: &mut Command, log: &Path) -> Result<Child, String> {
    let f = fs::File::create(log).map_err(|e| format!("create {}: {e}", log.display()))?;
    let f2 = f.try_clone().map_err(|e| e.to_string())?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(f))
        .stderr(Stdio::from(f2))
        .spawn()
        .map_err(|e| format!("spawn {cmd:?}: {e}"))
}

/// How long a daemon (dockerd, containerd) may take to answer after it is
/// started: a stuck daemon, not a slow machine, takes longer. dockerd
/// restarted after a crash answers only after its restore has stopped the
/// containers it found (10 s each for a `sleep`, which ignores SIGTERM).
pub const DAEMON_START: Duration = Duration::from_secs(120);

/// Polls `ready` every 100 ms until it returns true, the daemon exits, or `timeout` passes.
pub fn wait_ready(
    child: &mut Child,
    what: &str,
    log: &Path,
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Err(format!(
                "{what} exited early ({st}); log:\n{}",
                tail(log, 4000)
            ));
        }
        if ready() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{what} not ready after {}s; log:\n{}",
                timeout.as_secs(),
                tail(log, 4000)
            ));
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// A dockerd (Debian docker.io 20.10) of our own: vfs storage, no iptables, no bridge, and its
/// data-root, exec-root, pidfile and socket under `dir/dk`. It starts its own managed containerd
/// (socket under the exec-root), which stops with it. Up in well under a second here.
pub struct Dockerd {
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
    child: Child,
    client: PathBuf,
}

impl Dockerd {
    /// Starts dockerd with `runtimes` (name, absolute path of a runc-compatible binary) added to
    /// its runtimes map, and waits (up to [`DAEMON_START`]) until `docker version` answers.
    pub fn start(dir: &Path, runtimes: &[(&str, &Path)]) -> Result<Dockerd, String> {
        let mut rt = serde_json::Map::new();
        for (name, path) in runtimes {
            rt.insert(name.to_string(), json!({ "path": absolute(path) }));
        }
        Dockerd::start_with(dir, rt)
    }

    /// Like [`Dockerd::start`], with the daemon.json `runtimes` map given whole (for
    /// `runtimeArgs`).
    pub fn start_with(dir: &Path, rt: serde_json::Map<String, Value>) -> Result<Dockerd, String> {
        Dockerd::start_with_path(dir, rt, None)
    }

    /// Like [`Dockerd::start_with`], with `bin` first on dockerd's PATH (where dockerd looks
    /// for `nvidia-container-runtime-hook` at start-up, to accept `--gpus` and compose
    /// device reservations).
    pub fn start_with_path(
        dir: &Path,
        rt: serde_json::Map<String, Value>,
        bin: Option<&Path>,
    ) -> Result<Dockerd, String> {
        let mut cfg = Dockerd::private_config(dir);
        cfg["runtimes"] = Value::Object(rt);
        let cfg_path = absolute(&dir.join("dk/daemon.json"));
        write(&cfg_path, serde_json::to_vec_pretty(&cfg).unwrap());
        Dockerd::start_from(dir, &cfg_path, bin)
    }

    /// The daemon.json keys that keep this dockerd private to `dir/dk` (no runtimes).
    pub fn private_config(dir: &Path) -> Value {
        let dir = absolute(&dir.join("dk"));
        let socket = dir.join("docker.sock");
        json!({
            "storage-driver": "vfs",
            "iptables": false,
            "ip6tables": false,
            "ip-forward": false,
            "ip-masq": false,
            "bridge": "none",
            "data-root": dir.join("data"),
            "exec-root": dir.join("exec"),
            "pidfile": dir.join("dockerd.pid"),
            "hosts": [format!("unix://{}", socket.display())],
            "shutdown-timeout": 3,
        })
    }

    /// Starts dockerd on the daemon.json at `cfg_path` (made from
    /// [`Dockerd::private_config`] for the same `dir`).
    pub fn start_from(dir: &Path, cfg_path: &Path, bin: Option<&Path>) -> Result<Dockerd, String> {
        let dockerd = require("dockerd");
        let client = docker_client();
        require("containerd");
        require("containerd-shim-runc-v2");
        let dir = absolute(&dir.join("dk"));
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let socket = dir.join("docker.sock");
        write(&dir.join("cli/config.json"), "{}");
        // the docker client docker-compose finds first on PATH (see `Dockerd::compose_cmd`);
        // a dockerd started again on the same dir finds the link there
        let compose_docker = dir.join("compose-bin/docker");
        if fs::symlink_metadata(&compose_docker).is_err() {
            fs::create_dir_all(dir.join("compose-bin")).map_err(|e| e.to_string())?;
            std::os::unix::fs::symlink(&client, &compose_docker).map_err(|e| e.to_string())?;
        }
        let log = dir.join("dockerd.log");
        let mut cmd = Command::new(dockerd);
        cmd.arg("--config-file").arg(cfg_path);
        if let Some(bin) = bin {
            let path = std::env::var("PATH").unwrap_or_default();
            cmd.env("PATH", format!("{}:{path}", absolute(bin).display()));
        }
        let child = spawn_daemon(&mut cmd, &log)?;
        let mut d = Dockerd {
            dir,
            socket,
            log,
            child,
            client,
        };
        let (client, env) = (d.client.clone(), d.env());
        let log = d.log.clone();
        wait_ready(&mut d.child, "dockerd", &log, DAEMON_START, || {
            output_timeout(
                Command::new(&client)
                    .envs(env.iter().map(|(k, v)| (k, v)))
                    .arg("version"),
                Duration::from_secs(15),
            )
            .status
            .success()
        })?;
        Ok(d)
    }

    /// `unix://<dir>/dk/docker.sock`
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Environment for docker / docker-compose clients talking to this daemon.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("DOCKER_HOST".into(), self.host()),
            ("DOCKER_API_VERSION".into(), DOCKER_API_VERSION.into()),
            (
                "DOCKER_CONFIG".into(),
                self.dir.join("cli").display().to_string(),
            ),
            ("DOCKER_CONTEXT".into(), "default".into()),
        ]
    }

    /// A docker CLI command aimed at this daemon (add args, then run it with [`output`]).
    pub fn docker_cmd(&self) -> Command {
        let mut c = Command::new(&self.client);
        c.envs(self.env());
        c
    }

    /// Runs the docker CLI against this daemon (time limit [`CMD_TIMEOUT`]).
    pub fn docker(&self, args: &[&str]) -> Output {
        output(self.docker_cmd().args(args))
    }

    /// `docker import` of a busybox rootfs tarball as `tag` (e.g. `local/busybox:1`).
    pub fn import_busybox(&self, tag: &str) -> Result<(), String> {
        self.import_busybox_with(tag, &[])
    }

    /// [`Dockerd::import_busybox`] with Dockerfile instructions for the image config
    /// (`docker import --change`, e.g. `ENV NVIDIA_VISIBLE_DEVICES=all` as CUDA images set).
    pub fn import_busybox_with(&self, tag: &str, changes: &[&str]) -> Result<(), String> {
        let tar = busybox_tar(&self.dir.join("img"));
        let mut cmd = self.docker_cmd();
        cmd.arg("import");
        for c in changes {
            cmd.arg("--change").arg(c);
        }
        let o = output(cmd.arg(&tar).arg(tag));
        if o.status.success() {
            Ok(())
        } else {
            Err(format!(
                "docker import failed: {}{}",
                stdout(&o),
                stderr(&o)
            ))
        }
    }

    /// A `docker-compose` (Debian's 1.29, python) command against this daemon, run in
    /// `project_dir` (where docker-compose.yml lives) with project name `project`.
    ///
    /// `run` goes through the docker CLI (`docker start --attach`), compose's default on
    /// Linux, with this daemon's client first on PATH. Its other way,
    /// `COMPOSE_INTERACTIVE_NO_CLI=1`, is broken in 1.29 on Python 3: dockerpty's
    /// `sockets()` returns a lazy `map`, so compose starts the container before it attaches,
    /// loses what the container writes in between, and starts the container a second time
    /// when it finds it stopped (dockerd's debug log shows `start`, `attach` ×3, `start`).
    /// That made `run` print nothing on a loaded machine.
    pub fn compose_cmd(&self, project_dir: &Path, project: &str) -> Command {
        let bin = self.dir.join("compose-bin");
        let path = std::env::var("PATH").unwrap_or_default();
        let mut c = Command::new(require("docker-compose"));
        c.envs(self.env())
            .env_remove("COMPOSE_INTERACTIVE_NO_CLI")
            .env("PATH", format!("{}:{path}", bin.display()))
            .current_dir(project_dir)
            .args(["--ansi", "never"])
            .arg("-p")
            .arg(project);
        c
    }

    /// Runs docker-compose (see [`Dockerd::compose_cmd`]) with `args`.
    pub fn compose(&self, project_dir: &Path, project: &str, args: &[&str]) -> Output {
        output(self.compose_cmd(project_dir, project).args(args))
    }

    /// The daemon's log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILLs dockerd, as a crash would. None of the drop's cleanup runs:
    /// its containers, their shims and (if it outlives dockerd) its managed
    /// containerd are left for a dockerd started again on the same `dir`
    /// with [`Dockerd::start_from`], whose drop cleans them up.
    ///
    /// Returns once the managed containerd (killed with dockerd by its
    /// parent-death signal) is dead, or after a minute, and removes its pid
    /// file: a dockerd started while that pid still exists (a zombie
    /// answers kill(pid, 0)) takes it for a live containerd and times out
    /// on its socket.
    pub fn crash(mut self) {
        let ctd_pid = self.managed_containerd();
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(pid) = ctd_pid {
            wait_until(Duration::from_secs(60), || !pid_alive(pid));
            // Dead, perhaps a zombie its new parent has not reaped: its
            // pid file must not make the next dockerd wait on its socket.
            let _ = fs::remove_file(self.containerd_pid_file());
        }
        std::mem::forget(self);
    }

    /// The bundle of container `id`, as dockerd's managed containerd keeps
    /// it.
    pub fn bundle(&self, id: &str) -> PathBuf {
        self.dir.join(format!(
            "exec/containerd/daemon/io.containerd.runtime.v2.task/moby/{id}"
        ))
    }

    /// Where dockerd's managed containerd writes its pid.
    fn containerd_pid_file(&self) -> PathBuf {
        self.dir.join("exec/containerd/containerd.pid")
    }

    /// The pid of dockerd's managed containerd, from its pid file.
    fn managed_containerd(&self) -> Option<i32> {
        fs::read_to_string(self.containerd_pid_file())
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // dockerd's managed containerd writes its pid here; it should exit with dockerd, but if
        // dockerd had to be SIGKILLed make sure that containerd (ours: its cmdline names our
        // exec-root) goes too.
        let exec = self.dir.join("exec");
        let ctd_pid = self.managed_containerd();
        // dockerd's own shutdown waits out each running container's stop timeout (10 s for a
        // `sleep`, which ignores SIGTERM as pid 1): force-remove what a failed test left first.
        if let Ok(None) = self.child.try_wait() {
            let short = Duration::from_secs(15);
            let ps = output_timeout(self.docker_cmd().args(["ps", "-q"]), short);
            let ids: Vec<String> = stdout(&ps).split_whitespace().map(String::from).collect();
            if !ids.is_empty() {
                let _ = output_timeout(self.docker_cmd().args(["rm", "-f"]).args(&ids), short);
            }
        }
        stop_child(&mut self.child, Duration::from_secs(15));
        if let Some(pid) = ctd_pid {
            let ours = || cmdline(pid).contains(&*exec.to_string_lossy());
            wait_until(Duration::from_secs(5), || !(pid_alive(pid) && ours()));
            if pid_alive(pid) && ours() {
                signal(pid, libc::SIGKILL);
                wait_until(Duration::from_secs(60), || !pid_alive(pid));
            }
            // As in `crash`: a dockerd started again on this dir must not
            // take a dead (zombie) containerd's pid, or a reused one, for
            // its containerd.
            if !pid_alive(pid) || !ours() {
                let _ = fs::remove_file(self.containerd_pid_file());
            }
        }
        // A dockerd that crashed ([`Dockerd::crash`]) left its mounts (the
        // data-root's private bind of itself, network namespaces); the one
        // started after it unmounts only its own. Newest first.
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let ours: Vec<&str> = mountinfo
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| Path::new(m).starts_with(&self.dir))
            .collect();
        for m in ours.into_iter().rev() {
            let _ = Command::new("umount")
                .args(["-l", m])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A containerd (Debian 1.6) of our own: root, state and socket under `dir/ct`, CRI plugin off,
/// and a namespace unique to this instance (so parallel tests never share runc state or cgroups
/// `/<ns>/<id>`). Shim sockets still go to /run/containerd/s (hashed, no collisions).
pub struct Containerd {
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub namespace: String,
    pub log: PathBuf,
    child: Child,
    ctr: PathBuf,
}

impl Containerd {
    /// Starts containerd and waits (up to [`DAEMON_START`]) until `ctr version` answers.
    pub fn start(dir: &Path) -> Result<Containerd, String> {
        let containerd = require("containerd");
        let ctr = require("ctr");
        require("containerd-shim-runc-v2");
        let dir = absolute(&dir.join("ct"));
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let socket = dir.join("c.sock");
        let cfg = format!(
            "version = 2\n\
             root = \"{root}\"\n\
             state = \"{state}\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{sock}\"\n\
             [ttrpc]\n  address = \"\"\n\
             [debug]\n  address = \"\"\n",
            root = dir.join("root").display(),
            state = dir.join("state").display(),
            sock = socket.display(),
        );
        let cfg_path = dir.join("config.toml");
        write(&cfg_path, cfg);
        let log = dir.join("containerd.log");
        let child = spawn_daemon(
            Command::new(containerd).arg("--config").arg(&cfg_path),
            &log,
        )?;
        let namespace = format!("mw-{}", unique_name(dir.parent().unwrap_or(&dir)));
        let mut c = Containerd {
            dir,
            socket,
            namespace,
            log,
            child,
            ctr,
        };
        let (ctr, sock, log) = (c.ctr.clone(), c.socket.clone(), c.log.clone());
        wait_ready(&mut c.child, "containerd", &log, DAEMON_START, || {
            output_timeout(
                Command::new(&ctr)
                    .arg("--address")
                    .arg(&sock)
                    .arg("version"),
                Duration::from_secs(15),
            )
            .status
            .success()
        })?;
        Ok(c)
    }

    /// `ctr --address <sock> -n <ns>` (add args, then run it with [`output`]).
    pub fn ctr_cmd(&self) -> Command {
        let mut c = Command::new(&self.ctr);
        c.arg("--address")
            .arg(&self.socket)
            .arg("-n")
            .arg(&self.namespace);
        c
    }

    /// Runs ctr against this containerd in this instance's namespace.
    pub fn ctr(&self, args: &[&str]) -> Output {
        output(self.ctr_cmd().args(args))
    }

    /// `ctr run --rm --runtime io.containerd.runc.v2 --runc-binary <runtime> --env PATH=..
    /// [extra] --rootfs <rootfs> <id> <cmd...>`. With `--rootfs` there is no image config, so the
    /// process env is empty unless given: without `--env PATH=...` runc cannot find `sh`.
    pub fn run_rootfs(
        &self,
        runtime_binary: &Path,
        rootfs: &Path,
        id: &str,
        extra: &[&str],
        cmd: &[&str],
    ) -> Output {
        output(
            self.ctr_cmd()
                .args([
                    "run",
                    "--rm",
                    "--runtime",
                    "io.containerd.runc.v2",
                    "--runc-binary",
                ])
                .arg(absolute(runtime_binary))
                .args(["--env", CONTAINER_PATH])
                .args(extra)
                .arg("--rootfs")
                .arg(absolute(rootfs))
                .arg(id)
                .args(cmd),
        )
    }

    /// `ctr image import` of a hand-built one-layer OCI image of busybox named `name`
    /// (e.g. `docker.io/local/busybox:1`), unpacked with the default (overlayfs) snapshotter.
    pub fn import_busybox(&self, name: &str) -> Result<(), String> {
        let tar = busybox_oci_tar(&self.dir.join("img"), name);
        let o = output(self.ctr_cmd().args(["image", "import"]).arg(&tar));
        if o.status.success() {
            Ok(())
        } else {
            Err(format!(
                "ctr image import failed: {}{}",
                stdout(&o),
                stderr(&o)
            ))
        }
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Shims outlive containerd by design: kill and delete whatever tasks and containers a
        // failed test left in our namespace first.
        if let Ok(None) = self.child.try_wait() {
            let short = Duration::from_secs(15);
            let tasks = output_timeout(self.ctr_cmd().args(["task", "ls", "-q"]), short);
            for id in stdout(&tasks)
                .lines()
                .map(str::trim)
                .filter(|s| !s.is_empty())
            {
                let _ = output_timeout(self.ctr_cmd().args(["task", "delete", "-f", id]), short);
            }
            let cs = output_timeout(self.ctr_cmd().args(["container", "ls", "-q"]), short);
            for id in stdout(&cs).lines().map(str::trim).filter(|s| !s.is_empty()) {
                let _ = output_timeout(self.ctr_cmd().args(["container", "rm", id]), short);
            }
        }
        stop_child(&mut self.child, Duration::from_secs(10));
    }
}

/// Rootful podman (Debian 4.3) with all its state under `dir/pm`: a `containers.conf`
/// (cgroupfs manager, file events, runtime runc, nofile/nproc ulimits below the host's, own
/// network config dir), `--root`, `--runroot`, `--tmpdir`, `--storage-driver vfs`, and
/// optionally `--hooks-dir` and `--runtime <abs path>`.
pub struct Podman {
    pub dir: PathBuf,
    pub conf: PathBuf,
    pub hooks_dir: Option<PathBuf>,
    pub runtime: Option<PathBuf>,
    podman: PathBuf,
}

impl Podman {
    pub fn new(dir: &Path) -> Podman {
        let podman = require("podman");
        require("conmon");
        require("runc");
        let dir = absolute(&dir.join("pm"));
        for d in ["root", "run", "tmp", "net"] {
            fs::create_dir_all(dir.join(d)).expect("mkdir podman dirs");
        }
        let conf = dir.join("containers.conf");
        write(
            &conf,
            format!(
                "[containers]\n\
                 default_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]\n\
                 [engine]\n\
                 cgroup_manager = \"cgroupfs\"\n\
                 events_logger = \"file\"\n\
                 runtime = \"runc\"\n\
                 [network]\n\
                 network_config_dir = \"{}\"\n",
                dir.join("net").display()
            ),
        );
        Podman {
            dir,
            conf,
            hooks_dir: None,
            runtime: None,
            podman,
        }
    }

    /// Adds `--hooks-dir <dir>` (OCI hooks JSON files; `when.annotations` keys are regexes).
    pub fn with_hooks_dir(mut self, hooks_dir: &Path) -> Podman {
        self.hooks_dir = Some(absolute(hooks_dir));
        self
    }

    /// Adds `--runtime <abs path>` (a runc-compatible binary).
    pub fn with_runtime(mut self, runtime: &Path) -> Podman {
        self.runtime = Some(absolute(runtime));
        self
    }

    /// The podman command with all global flags (add a subcommand, then run with [`output`]).
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(&self.podman);
        c.env("CONTAINERS_CONF", &self.conf)
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("run"))
            .arg("--tmpdir")
            .arg(self.dir.join("tmp"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
            ]);
        if let Some(h) = &self.hooks_dir {
            c.arg("--hooks-dir").arg(h);
        }
        if let Some(r) = &self.runtime {
            c.arg("--runtime").arg(r);
        }
        c
    }

    /// `podman run --rm --network none [extra] --rootfs <rootfs> <cmd...>`.
    pub fn run_rootfs(&self, rootfs: &Path, extra: &[&str], cmd: &[&str]) -> Output {
        output(
            self.cmd()
                .args(["run", "--rm", "--network", "none"])
                .args(extra)
                .arg("--rootfs")
                .arg(absolute(rootfs))
                .args(cmd),
        )
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Remove whatever a failed test left running (normally nothing: runs use --rm).
        let _ = output_timeout(
            self.cmd().args(["rm", "--all", "--force", "--time", "0"]),
            DAEMON_START,
        );
    }
}
