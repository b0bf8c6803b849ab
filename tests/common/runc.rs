//! A simulated GPU host with the shim in front of real runc, for the
//! end-to-end tests that drive runc directly.

use super::engines::{self, runc_bundle};
use super::sim::{shim_link, Sim};
use serde_json::Value;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub struct Host {
    pub sim: Sim,
    pub link: PathBuf,
    pub root: PathBuf,
}

impl Host {
    pub fn new(topology: &str) -> Host {
        engines::require_root();
        let sim = Sim::new(topology);
        let link = shim_link(sim.dir.path());
        let root = sim.path("runc");
        Host { sim, link, root }
    }

    pub fn shim(&self) -> Command {
        let mut c = Command::new(&self.link);
        c.env("MIGWARD_CONFIG", self.sim.config())
            .arg("--root")
            .arg(&self.root);
        c
    }

    /// A bundle named `name` whose container asks for `uuid` and runs `args`.
    pub fn bundle(&self, name: &str, uuid: &str, args: &[&str]) -> PathBuf {
        let dir = self.sim.path(name);
        std::fs::create_dir_all(&dir).unwrap();
        runc_bundle(&dir, args, &[&format!("NVIDIA_VISIBLE_DEVICES={uuid}")])
    }

    /// `create` with stdio on files: runc hands its stdio to the container's
    /// init, so a pipe would stay open as long as the container lives.
    pub fn create(&self, bundle: &Path, id: &str) -> Output {
        spawn_create(self.shim(), bundle, id).wait()
    }

    pub fn run(&self, bundle: &Path, id: &str) -> Output {
        engines::output(self.shim().args(["run", "--bundle"]).arg(bundle).arg(id))
    }

    pub fn runc(&self, args: &[&str]) -> Output {
        engines::output(
            Command::new("runc")
                .arg("--root")
                .arg(&self.root)
                .args(args),
        )
    }

    pub fn leases(&self) -> Vec<Value> {
        self.sim.leases()
    }

    /// Starts `create` of every bundle at once (container `<prefix>-<i>`),
    /// then waits for all; returns each one's output and the indices that
    /// were created.
    pub fn create_racing(&self, bundles: &[PathBuf], prefix: &str) -> (Vec<Output>, Vec<usize>) {
        let pending: Vec<Pending> = bundles
            .iter()
            .enumerate()
            .map(|(i, b)| spawn_create(self.shim(), b, &format!("{prefix}-{i}")))
            .collect();
        let outs: Vec<Output> = pending.into_iter().map(Pending::wait).collect();
        let created = (0..outs.len())
            .filter(|&i| outs[i].status.success())
            .collect();
        (outs, created)
    }

    /// `delete --force` through the shim, which must succeed.
    pub fn delete(&self, id: &str) {
        engines::expect_success(
            &engines::output(self.shim().args(["delete", "--force", id])),
            &format!("delete {id}"),
        );
    }
}

/// A `create` in flight, its stdio on files.
pub struct Pending {
    child: std::process::Child,
    out: PathBuf,
    err: PathBuf,
}

impl Pending {
    /// The pid of the runtime process (the shim, then what it exec'd).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn wait(mut self) -> Output {
        let status = self.child.wait().unwrap();
        Output {
            status,
            stdout: std::fs::read(&self.out).unwrap_or_default(),
            stderr: std::fs::read(&self.err).unwrap_or_default(),
        }
    }
}

pub fn spawn_create(mut cmd: Command, bundle: &Path, id: &str) -> Pending {
    let (out, err) = (bundle.join("stdout.log"), bundle.join("stderr.log"));
    let child = cmd
        .args(["create", "--bundle"])
        .arg(bundle)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(File::create(&out).unwrap())
        .stderr(File::create(&err).unwrap())
        .spawn()
        .unwrap();
    Pending { child, out, err }
}

impl Drop for Host {
    /// A failed test must not leave containers behind.
    fn drop(&mut self) {
        let out = self.runc(&["list", "-q"]);
        for id in String::from_utf8_lossy(&out.stdout).lines() {
            self.runc(&["delete", "--force", id]);
        }
        engines::remove_test_cgroups(self.sim.dir.path());
    }
}
