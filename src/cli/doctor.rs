//! `migward doctor [--json]`.

use crate::config::Config;
use crate::doctor::{self, Status};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the checks as JSON.
    #[arg(long)]
    pub json: bool,
    /// Where engine configs, systemd units and hooks are read [default: /].
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
}

/// Exit status 1 when a check found a problem (warnings alone exit 0), so
/// scripts can gate on it.
pub fn run(config: &Config, args: &Args) -> anyhow::Result<ExitCode> {
    let checks = doctor::run(config, &args.root);
    let worst = doctor::worst(&checks);
    if args.json {
        let v = serde_json::json!({ "status": worst, "checks": checks });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", doctor::render(&checks));
    }
    Ok(if worst == Status::Problem {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
