//! `migward install <engine>` and `migward uninstall <engine>`.

use crate::install::{self, Engine, Options, Target};
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The engine to register migward with.
    #[arg(value_enum)]
    pub engine: Engine,
    /// Edit the files under this directory instead of / (packaging, tests).
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    /// Make migward the engine's default runtime, so containers that name no
    /// runtime (and no GPU) are covered too. Not for uninstall.
    #[arg(long)]
    pub default: bool,
    /// Print a unified diff of what would change and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Restart the engine's service (systemctl) when its config changed.
    #[arg(long)]
    pub restart: bool,
    /// The migward-runtime the engine runs [default: /usr/bin/migward-runtime
    /// when it exists under the root, else the one next to this binary].
    #[arg(long)]
    pub runtime_path: Option<PathBuf>,
    /// The migward binary the hooks run [default: /usr/bin/migward when it
    /// exists under the root, else this binary].
    #[arg(long)]
    pub migward_path: Option<PathBuf>,
}

fn default_bin(root: &Path, name: &str, explicit: &Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        anyhow::ensure!(
            p.is_absolute(),
            "--{}-path {} is not absolute: give the full path",
            name.trim_start_matches("migward-"),
            p.display()
        );
        return Ok(p.clone());
    }
    let system = Path::new("/usr/bin").join(name);
    if install::under(root, &system).exists() {
        return Ok(system);
    }
    let exe = std::env::current_exe().context("cannot find this binary's path")?;
    let beside = exe.with_file_name(name);
    anyhow::ensure!(
        beside.exists(),
        "no {name} in {} or next to {}: make the link (`ln -s migward {name}`) or pass --{}-path",
        system.display(),
        exe.display(),
        name.trim_start_matches("migward-")
    );
    Ok(beside)
}

pub fn run(config: Option<&Path>, args: &Args, uninstall: bool) -> anyhow::Result<ExitCode> {
    let verb = if uninstall { "uninstall" } else { "install" };
    anyhow::ensure!(
        !(uninstall && args.default),
        "--default is for install: uninstall puts back the default runtime that install replaced"
    );
    // The config this command would read is the one the engine should use.
    let from_env = std::env::var_os(crate::config::ENV_VAR).map(PathBuf::from);
    let config = config.map(Path::to_path_buf).or(from_env);
    let config = config.as_deref();
    if let Some(c) = config {
        anyhow::ensure!(
            c.is_absolute(),
            "--config {} is not absolute: the engine needs the full path",
            c.display()
        );
    }
    let runtime_bin = if uninstall {
        PathBuf::new()
    } else {
        default_bin(&args.root, "migward-runtime", &args.runtime_path)?
    };
    let migward_bin = if uninstall {
        PathBuf::new()
    } else {
        default_bin(&args.root, "migward", &args.migward_path)?
    };
    let opts = Options {
        root: args.root.clone(),
        target: Target {
            runtime_bin,
            migward_bin,
            config: config
                .filter(|c| *c != Path::new(crate::config::DEFAULT_PATH))
                .map(Path::to_path_buf),
        },
        default: args.default,
    };
    let engine = args.engine.name();
    let plan = if uninstall {
        install::plan_uninstall(args.engine, &opts)?
    } else {
        install::plan_install(args.engine, &opts)?
    };
    if args.dry_run {
        print!("{}", plan.diff(&args.root));
        for s in &plan.said {
            println!("# {s}");
        }
        println!("# dry run: nothing written");
        return Ok(ExitCode::SUCCESS);
    }
    if plan.is_noop() {
        let state = if uninstall {
            "not installed"
        } else {
            "already installed"
        };
        println!("migward {verb} {engine}: {state}; nothing written");
        return Ok(ExitCode::SUCCESS);
    }
    let backups = plan.apply()?;
    println!("migward {verb} {engine}:");
    for s in &plan.said {
        println!("  {s}");
    }
    for c in plan.changes.iter().filter(|c| c.shown && c.changes()) {
        let what = match (&c.before, &c.after) {
            (None, _) => "created",
            (_, None) => "removed",
            _ => "edited",
        };
        println!("  {what} {}", c.path.display());
    }
    for b in &backups {
        println!("  backup {}", b.display());
    }
    match (args.restart, args.engine.service()) {
        (true, _) => match install::restart(args.engine)? {
            Some(s) => println!("  restarted {s} (systemctl restart {s})"),
            None => {
                println!("  podman has no daemon: the next podman command reads the new config")
            }
        },
        (false, Some(s)) => {
            println!("  restart {s} to apply it: systemctl restart {s} (or pass --restart)")
        }
        (false, None) => {}
    }
    Ok(ExitCode::SUCCESS)
}
