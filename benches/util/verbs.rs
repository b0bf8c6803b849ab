//! A container's life the way containerd's runc shim drives a runtime:
//! `create --pid-file`, `start`, wait for the init to exit (this process is
//! its subreaper, as the shim is), `delete`; every verb through the runtime
//! under test.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The verbs timed, in order.
pub const VERBS: [&str; 4] = ["create", "start", "wait for exit", "delete"];

/// One runtime under test: its binary and the env it runs with.
#[derive(Clone)]
pub struct Runtime {
    pub bin: PathBuf,
    pub env: Vec<(String, PathBuf)>,
}

impl Runtime {
    fn cmd(&self, root: &Path, log: &Path) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg("--root")
            .arg(root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // The init inherits what create's stdio is: a pipe would keep
            // an `output()` waiting until the container exits.
            .stderr(File::create(log).unwrap());
        cmd
    }
}

/// Becomes (or stops being) the subreaper of orphaned descendants, so the
/// container init, whose parent `runtime create` exits, is waited for here.
pub fn subreaper(on: bool) {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, libc::c_ulong::from(on)) };
    assert_eq!(rc, 0, "prctl(PR_SET_CHILD_SUBREAPER)");
}

/// One whole life of container `id` from `bundle`; the time of each verb.
pub fn life(rt: &Runtime, root: &Path, bundle: &Path, id: &str) -> [Duration; 4] {
    let log = bundle.with_extension("stderr");
    let pid_file = bundle.with_extension("pid");
    let _ = std::fs::remove_file(&pid_file);
    let run = |args: &[&std::ffi::OsStr], what: &str| {
        let mut cmd = rt.cmd(root, &log);
        cmd.args(args);
        let start = Instant::now();
        let status = cmd.status().unwrap_or_else(|e| panic!("{what}: {e}"));
        let took = start.elapsed();
        assert!(
            status.success(),
            "{} {what} {id}: {status}: {}",
            rt.bin.display(),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        took
    };
    let create = run(
        &[
            "create".as_ref(),
            "--bundle".as_ref(),
            bundle.as_os_str(),
            "--pid-file".as_ref(),
            pid_file.as_os_str(),
            id.as_ref(),
        ],
        "create",
    );
    let pid: libc::pid_t = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let start = run(&["start".as_ref(), id.as_ref()], "start");
    let t = Instant::now();
    let mut status = 0;
    // SAFETY: waits for our (adopted) child; status is a valid pointer.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid, "waitpid({pid}) for {id}");
    let wait = t.elapsed();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{id}: init ended with {status}"
    );
    let delete = run(&["delete".as_ref(), id.as_ref()], "delete");
    [create, start, wait, delete]
}

/// A static C program that only `execv`s `target`: the least any
/// exec-based shim can add (compiled here with `cc -static`).
pub fn exec_only_shim(dir: &Path, name: &str, target: &Path) -> PathBuf {
    let src = dir.join("exec-only.c");
    std::fs::write(
        &src,
        "#include <unistd.h>\nint main(int c, char **v) { (void)c; execv(TARGET, v); return 127; }\n",
    )
    .unwrap();
    let out = dir.join(name);
    let status = Command::new("cc")
        .args(["-O2", "-static", "-o"])
        .arg(&out)
        .arg(format!("-DTARGET=\"{}\"", target.display()))
        .arg(&src)
        .status()
        .expect("cc: install gcc and libc6-dev");
    assert!(status.success(), "cc -static failed: install libc6-dev");
    out
}

/// `name` on PATH, as an absolute path.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}
