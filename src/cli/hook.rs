//! `migward hook <stage>`: the OCI hook (stdin: container state, or
//! config.json for `precreate`).

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The OCI hook stage: createRuntime, prestart, poststop or precreate.
    pub stage: String,
    /// The lease store, for poststop [default: state_dir from the config].
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
}

pub fn run(
    config: impl FnOnce() -> anyhow::Result<crate::config::Config>,
    args: &Args,
) -> anyhow::Result<ExitCode> {
    let mut warn = |msg: String| eprintln!("migward hook {}: warning: {msg}", args.stage);
    match args.stage.as_str() {
        "poststop" => {
            let state_dir = match &args.state_dir {
                Some(d) => d.clone(),
                None => config()?.state_dir,
            };
            // A poststop hook must never fail the container's teardown.
            if let Some(problem) = crate::hook::poststop(std::io::stdin().lock(), &state_dir) {
                warn(problem);
            }
        }
        "createRuntime" | "prestart" => {
            crate::hook::create_runtime(std::io::stdin().lock(), &config()?, &mut warn)?;
        }
        "precreate" => {
            crate::hook::precreate(
                std::io::stdin().lock(),
                std::io::stdout().lock(),
                &config()?,
                &mut warn,
            )?;
        }
        "createContainer" | "startContainer" => {
            return Err(crate::hook::HookError::InsideContainer(args.stage.clone()).into());
        }
        other => return Err(crate::hook::HookError::UnknownStage(other.to_string()).into()),
    }
    Ok(ExitCode::SUCCESS)
}
