//! The simulated host's `nvidia-cdi-hook`: the harmless stand-in its CDI
//! spec names as the `createContainer` hooks, doing the two jobs of
//! NVIDIA's hook that make the driver's libraries loadable:
//!
//! - `update-ldcache --folder DIR…`: gives each `lib*.so.<driver version>`
//!   in DIR its `lib*.so.1` SONAME link (NVIDIA's libraries' SONAME), as
//!   running `ldconfig` in the container does;
//! - `create-symlinks --link TARGET::LINK…`: makes LINK point at TARGET.
//!
//! It reads the container state on stdin (OCI), finds the rootfs from the
//! bundle's `config.json`, and works chrooted into it, so no link it makes
//! can land outside the container whatever the image's symlinks say.

use std::io::Read;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn rootfs() -> Result<PathBuf, String> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| format!("read the state: {e}"))?;
    let state: serde_json::Value =
        serde_json::from_str(&input).map_err(|e| format!("parse the state: {e}"))?;
    let bundle = PathBuf::from(state["bundle"].as_str().ok_or("no bundle in the state")?);
    let config = std::fs::read_to_string(bundle.join("config.json"))
        .map_err(|e| format!("read {}/config.json: {e}", bundle.display()))?;
    let config: serde_json::Value =
        serde_json::from_str(&config).map_err(|e| format!("parse config.json: {e}"))?;
    let root = PathBuf::from(config["root"]["path"].as_str().ok_or("no root.path")?);
    Ok(if root.is_absolute() {
        root
    } else {
        bundle.join(root)
    })
}

/// Makes `link` point at `target`, replacing what was there atomically.
fn link(target: &Path, link: &Path) -> Result<(), String> {
    if let Some(parent) = link.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("mkdir {}: {e}", parent.display()))?;
    }
    let tmp = link.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    symlink(target, &tmp).map_err(|e| format!("symlink {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, link).map_err(|e| format!("rename to {}: {e}", link.display()))
}

/// `libcuda.so.550.54.15` → `libcuda.so.1`; `None` for other names.
fn soname_of(name: &str) -> Option<String> {
    let (stem, version) = name.split_once(".so.")?;
    (name.starts_with("lib")
        && version.contains('.')
        && version.split('.').all(|p| p.parse::<u32>().is_ok()))
    .then(|| format!("{stem}.so.1"))
}

fn run(args: &[String]) -> Result<(), String> {
    let root = rootfs()?;
    std::os::unix::fs::chroot(&root).map_err(|e| format!("chroot {}: {e}", root.display()))?;
    std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))?;
    let (command, rest) = args.split_first().ok_or("no command")?;
    let values = |flag: &str| {
        rest.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].clone())
            .collect::<Vec<_>>()
    };
    match command.as_str() {
        "update-ldcache" => {
            for folder in values("--folder") {
                let Ok(entries) = std::fs::read_dir(&folder) else {
                    continue;
                };
                for e in entries.filter_map(Result::ok) {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if let Some(soname) = soname_of(&name) {
                        link(Path::new(&name), &Path::new(&folder).join(soname))?;
                    }
                }
            }
            Ok(())
        }
        "create-symlinks" => {
            for spec in values("--link") {
                let (target, at) = spec
                    .split_once("::")
                    .ok_or_else(|| format!("--link {spec}: expected TARGET::LINK"))?;
                link(Path::new(target), Path::new(at))?;
            }
            Ok(())
        }
        other => Err(format!("unknown command {other:?}")),
    }
}

fn main() -> ExitCode {
    // args[0] is the hook's name as the spec gives it.
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nvidia-cdi-hook (simulated): {e}");
            ExitCode::FAILURE
        }
    }
}
