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

/// A program that only execs its target: the least an exec-based shim
/// built this way can add.
#[derive(Clone, Copy)]
pub enum Floor {
    /// C, `cc -static`: the least any exec shim can add.
    StaticC,
    /// C, linked against libc.so (PIE): the least a shim that can `dlopen`
    /// the host's NVML can add (a static glibc program cannot load it).
    DynamicC,
    /// Rust, built as migward's release profile builds (LTO, panic=abort,
    /// `no_main`, stripped), `Command::exec` as the shim does: the least a
    /// shim written in Rust that can load NVML can add.
    Rust,
}

/// `floor` built in `dir` as `name`, execing `target`.
pub fn exec_only_shim(dir: &Path, name: &str, target: &Path, floor: Floor) -> PathBuf {
    let out = dir.join(name);
    let status = match floor {
        Floor::StaticC | Floor::DynamicC => {
            let src = dir.join(format!("{name}.c"));
            std::fs::write(
                &src,
                "#include <unistd.h>\nint main(int c, char **v) { (void)c; execv(TARGET, v); return 127; }\n",
            )
            .unwrap();
            let mut cc = Command::new("cc");
            cc.arg("-O2");
            if let Floor::StaticC = floor {
                cc.arg("-static");
            }
            cc.arg("-o")
                .arg(&out)
                .arg(format!("-DTARGET=\"{}\"", target.display()))
                .arg(&src)
                .status()
                .expect("cc: install gcc and libc6-dev")
        }
        Floor::Rust => {
            let src = dir.join(format!("{name}.rs"));
            std::fs::write(
                &src,
                format!(
                    r#"#![no_main]
use std::os::unix::process::CommandExt;
#[no_mangle]
extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {{
    let err = std::process::Command::new({target:?}).args(std::env::args_os().skip(1)).exec();
    eprintln!("{{err}}");
    127
}}
"#
                ),
            )
            .unwrap();
            let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
            Command::new(rustc)
                .args(["--edition", "2021", "-C", "opt-level=3", "-C", "lto"])
                .args([
                    "-C",
                    "codegen-units=1",
                    "-C",
                    "panic=abort",
                    "-C",
                    "strip=symbols",
                ])
                .arg("-o")
                .arg(&out)
                .arg(&src)
                .status()
                .expect("rustc")
        }
    };
    assert!(
        status.success(),
        "building {name} failed (gcc, libc6-dev, rustc)"
    );
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
