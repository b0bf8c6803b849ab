//! `migward hook <stage>`: the OCI hook (stdin: container state).

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The OCI hook stage: poststop.
    pub stage: String,
    /// The lease store [default: state_dir from the config].
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
}

pub fn run(
    config: impl FnOnce() -> anyhow::Result<crate::config::Config>,
    args: &Args,
) -> anyhow::Result<ExitCode> {
    match args.stage.as_str() {
        "poststop" => {
            let state_dir = match &args.state_dir {
                Some(d) => d.clone(),
                None => config()?.state_dir,
            };
            // A poststop hook must never fail the container's teardown.
            if let Some(problem) = crate::hook::poststop(std::io::stdin().lock(), &state_dir) {
                eprintln!("migward hook poststop: warning: {problem}");
            }
            Ok(ExitCode::SUCCESS)
        }
        other => anyhow::bail!("unknown hook stage {other:?}: use poststop"),
    }
}
