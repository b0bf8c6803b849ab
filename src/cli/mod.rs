//! Subcommands of the `migward` binary, one file each.

pub mod doctor;
pub mod generate;
pub mod hook;
pub mod install;
pub mod leases;
pub mod list;
pub mod resolve;
pub mod runtime;
pub mod simulate;
mod table;

use crate::config::Config;
use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

/// migward: one tenant per NVIDIA MIG instance, for docker, containerd,
/// podman and CRI-O.
#[derive(Debug, Parser)]
#[command(name = "migward", version)]
pub struct Cli {
    /// Config file [default: $MIGWARD_CONFIG, else /etc/migward/config.toml].
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List GPUs and MIG devices, with a slice map per GPU.
    List(list::Args),
    /// Show the device nodes, cgroup rules and env a request would get.
    Resolve(resolve::Args),
    /// Write a simulated GPU host (host tree, fake NVML, config) into a directory.
    Simulate(simulate::Args),
    /// Run as an OCI hook (container state on stdin).
    Hook(hook::Args),
    /// Show and manage leases (who holds which instance).
    Leases(leases::Args),
    /// Check the host for the traps that break MIG containers (exit 1 on a problem).
    Doctor(doctor::Args),
    /// Register migward with an engine (docker, containerd, crio, podman).
    Install(install::Args),
    /// Undo `migward install`, byte for byte.
    Uninstall(install::Args),
    /// Print the man page or a shell completion script.
    #[command(hide = true)]
    Generate(generate::Args),
    /// The OCI runtime shim (same as calling this binary as migward-runtime).
    #[command(disable_help_flag = true)]
    Runtime {
        /// Arguments passed as to runc.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

/// Runs the CLI; errors are printed once, here, as one line.
pub fn main(args: Vec<OsString>) -> ExitCode {
    // The shim's argv belongs to runc: hand it over before clap sees it.
    if args.get(1).is_some_and(|a| a == "runtime") {
        return runtime::main(&args[2..]);
    }
    let cli = match hook::by_hand(&args) {
        Some((config, args)) => Cli {
            config,
            command: Command::Hook(args),
        },
        None => Cli::parse_from(args),
    };
    crate::sigpipe(if cli.command.only_prints() {
        // `migward list | head -1`: a closed pipe ends the command quietly,
        // as it does for every Unix tool (no panic on a failed println!).
        libc::SIG_DFL
    } else {
        // A hook, an install or a lease change is never cut off half way
        // by a reader that went away: a write fails instead.
        libc::SIG_IGN
    });
    // A hook's error reaches podman inside runc's (see for_engines).
    let hook = matches!(cli.command, Command::Hook(_));
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            let line = crate::one_line(&e);
            let line = if hook {
                crate::for_engines(&line)
            } else {
                line
            };
            eprintln!("migward: {line}");
            ExitCode::from(1)
        }
    }
}

impl Command {
    /// Commands that only read and print, which a closed pipe may end.
    fn only_prints(&self) -> bool {
        match self {
            Command::List(_) | Command::Resolve(_) | Command::Doctor(_) | Command::Generate(_) => {
                true
            }
            Command::Leases(args) => args.action.is_none(),
            _ => false,
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = || Config::load(cli.config.as_deref()).map_err(anyhow::Error::from);
    match cli.command {
        Command::List(args) => list::run(&config()?, &args),
        Command::Resolve(args) => resolve::run(&config()?, &args),
        Command::Simulate(args) => simulate::run(&args),
        Command::Hook(args) => hook::run(config, &args),
        Command::Leases(args) => leases::run(&config()?, &args),
        Command::Doctor(args) => doctor::run(&config()?, &args),
        Command::Generate(args) => generate::run(&args),
        Command::Install(args) => install::run(cli.config.as_deref(), &args, false),
        Command::Uninstall(args) => install::run(cli.config.as_deref(), &args, true),
        Command::Runtime { args } => Ok(runtime::main(&args)),
    }
}
