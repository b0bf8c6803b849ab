//! `migward hook <stage>`: the OCI hook (stdin: container state, or
//! config.json for `precreate`).

use std::ffi::OsString;
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

/// The hook's argv read by hand (config file, then the hook's args) when it
/// has one of the forms the hooks files, the precreate hook and the injected
/// poststop use: `[--config P] hook STAGE [--state-dir P] [--config P]`,
/// each option once, `--opt P` or `--opt=P`. The hook starts on every
/// container start of an engine that uses the hooks directory, and this way
/// clap's command tree is never built or paged in (peak RSS, BENCHMARKS.md).
/// Anything else (help, a flag it does not know, a value missing) is `None`,
/// and clap reads it with its usual messages.
pub fn by_hand(args: &[OsString]) -> Option<(Option<PathBuf>, Args)> {
    let mut config = None;
    let mut state_dir = None;
    let mut hook = false;
    let mut stage = None;
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        let text = arg.to_str()?;
        if !text.starts_with('-') {
            match (hook, &stage) {
                (false, _) if text == "hook" => hook = true,
                (true, None) => stage = Some(text.to_string()),
                _ => return None,
            }
            continue;
        }
        let (name, inline) = match text.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (text, None),
        };
        let slot = match name {
            "--config" => &mut config,
            "--state-dir" if stage.is_some() => &mut state_dir,
            _ => return None,
        };
        let value = match inline {
            Some(v) => v,
            None => rest.next()?.to_str()?,
        };
        if slot.is_some() || value.is_empty() || value.starts_with('-') {
            return None;
        }
        *slot = Some(PathBuf::from(value));
    }
    Some((
        config,
        Args {
            stage: stage?,
            state_dir,
        },
    ))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn argv(line: &str) -> Vec<OsString> {
        line.split(' ').map(OsString::from).collect()
    }

    /// What clap makes of `line`, in by_hand's terms (None where it refuses).
    fn by_clap(line: &str) -> Option<(Option<PathBuf>, Option<PathBuf>, String)> {
        let cli = Cli::try_parse_from(argv(line)).ok()?;
        match cli.command {
            Command::Hook(a) => Some((cli.config, a.state_dir, a.stage)),
            _ => None,
        }
    }

    #[test]
    fn the_forms_engines_use_are_read_by_hand_as_clap_reads_them() {
        for line in [
            "migward hook createRuntime",
            "migward hook poststop",
            "migward hook precreate",
            "migward hook prestart",
            "migward hook poststop --state-dir /run/migward",
            "migward hook poststop --state-dir=/run/migward",
            "migward --config /etc/m.toml hook createRuntime",
            "migward --config=/etc/m.toml hook createRuntime",
            "migward hook createRuntime --config /etc/m.toml",
            "migward hook poststop --config /c --state-dir /s",
            "migward hook poststop --state-dir /s --config=/c",
            "migward hook nosuchstage",
            "migward hook hook",
        ] {
            let (config, args) = by_hand(&argv(line)).unwrap_or_else(|| panic!("{line}"));
            assert_eq!(
                Some((config, args.state_dir, args.stage)),
                by_clap(line),
                "{line}"
            );
        }
    }

    #[test]
    fn everything_else_goes_to_clap() {
        for line in [
            "migward",
            "migward hook",
            "migward hook --help",
            "migward hook -h",
            "migward --help hook poststop",
            "migward hook poststop extra",
            "migward hook poststop --state-dir",
            "migward hook poststop --state-dir=",
            "migward hook poststop --state-dir --config",
            "migward hook poststop --state-dir /a --state-dir /b",
            "migward --config /a hook poststop --config /b",
            "migward hook --state-dir /s poststop",
            "migward hook poststop --unknown x",
            "migward hook poststop -- x",
            "migward list",
            "migward leases hook",
            "migward --version",
        ] {
            assert!(by_hand(&argv(line)).is_none(), "{line}");
        }
        // not UTF-8
        use std::os::unix::ffi::OsStringExt;
        let mut odd = argv("migward hook poststop --state-dir");
        odd.push(OsString::from_vec(vec![b'/', 0xff]));
        assert!(by_hand(&odd).is_none());
    }
}
