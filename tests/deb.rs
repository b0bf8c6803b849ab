//! The Debian package (`packaging/deb/build.sh`): built from this build's
//! binary, installed into a throwaway dpkg root, run from there (`--version`,
//! `doctor`, `install docker` as the README says), then removed, leaving
//! only the conffile, and purged, leaving nothing.

mod common;

use common::engines::require;
use common::sim::{stderr, stdout, Sim, MIGWARD};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        stdout(&out),
        stderr(&out)
    );
    out
}

/// Every file and link under `root`, outside dpkg's own database.
fn files(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if rel.starts_with("var/lib/dpkg") {
                continue;
            }
            if p.is_dir() && !p.is_symlink() {
                walk(&p, root, out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

#[test]
fn the_package_installs_runs_and_leaves_nothing_after_purge() {
    require("dpkg-deb");
    let dpkg = require("dpkg");
    let sim = Sim::new("h100-7x1g");
    let out_dir = sim.path("deb");
    let build = run(Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/deb/build.sh"
    ))
    .arg("--binary")
    .arg(MIGWARD)
    .arg("--out")
    .arg(&out_dir));
    let deb = PathBuf::from(stdout(&build).trim());
    assert!(deb.is_file(), "{}", deb.display());

    let root = sim.path("root");
    for d in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    let dpkg_root = format!("--root={}", root.display());
    // The throwaway root has no libc6 package; the binary uses the host's.
    run(Command::new(&dpkg)
        .arg(&dpkg_root)
        .args(["--force-depends", "-i"])
        .arg(&deb));
    let installed = files(&root);
    for want in [
        "usr/bin/migward",
        "usr/bin/migward-runtime",
        "etc/migward/config.toml",
        "usr/share/containers/oci/hooks.d/oci-migward-annotation.json",
        "usr/share/containers/oci/hooks.d/oci-migward-poststop.json",
        "usr/share/migward/hooks/oci-migward-env.json",
        "usr/lib/tmpfiles.d/migward.conf",
        "usr/share/man/man1/migward.1.gz",
        "usr/share/bash-completion/completions/migward",
    ] {
        assert!(
            installed.iter().any(|f| f == want),
            "{want} not in the package: {installed:?}"
        );
    }
    // The shim is its own binary (smaller than the CLI), not a link.
    let shim = std::fs::symlink_metadata(root.join("usr/bin/migward-runtime")).unwrap();
    assert!(shim.is_file(), "{shim:?}");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&shim.permissions()) & 0o777,
        0o755
    );

    let bin = root.join("usr/bin/migward");
    let version = run(Command::new(&bin).arg("--version"));
    assert_eq!(
        stdout(&version).trim(),
        format!("migward {}", env!("CARGO_PKG_VERSION"))
    );
    let doctor = Command::new(&bin)
        .arg("--config")
        .arg(sim.config())
        .arg("doctor")
        .arg("--root")
        .arg(&root)
        .output()
        .unwrap();
    let text = stdout(&doctor);
    let problems: Vec<&str> = text.lines().filter(|l| l.starts_with("problem")).collect();
    // The package enables the createRuntime hook, which only a cgroup v2 host refuses.
    assert!(problems.iter().all(|l| l.contains("cgroup v2")), "{text}");
    assert_eq!(doctor.status.success(), problems.is_empty(), "{text}");

    // The README's next step, from the installed binary: it registers the
    // packaged /usr/bin/migward-runtime.
    let inst = run(Command::new(&bin)
        .arg("--config")
        .arg(sim.config())
        .args(["install", "docker", "--root"])
        .arg(&root));
    assert!(
        stdout(&inst).contains("= /usr/bin/migward-runtime"),
        "{}",
        stdout(&inst)
    );
    let daemon: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("etc/docker/daemon.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        daemon["runtimes"]["migward"]["path"],
        "/usr/bin/migward-runtime"
    );
    run(Command::new(&bin)
        .arg("--config")
        .arg(sim.config())
        .args(["uninstall", "docker", "--root"])
        .arg(&root));

    run(Command::new(&dpkg).arg(&dpkg_root).args(["-r", "migward"]));
    assert_eq!(
        files(&root),
        ["etc/migward/config.toml"],
        "remove keeps only the conffile"
    );
    run(Command::new(&dpkg).arg(&dpkg_root).args(["-P", "migward"]));
    assert_eq!(files(&root), Vec::<String>::new(), "purge leaves nothing");
}
