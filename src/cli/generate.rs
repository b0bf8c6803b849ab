//! `migward generate <man|bash|zsh|fish>`: the man page and shell
//! completions, from the same clap definitions as the help text (the
//! Debian package ships them).

use clap::CommandFactory;
use std::process::ExitCode;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum What {
    Man,
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(value_enum)]
    pub what: What,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let mut cmd = super::Cli::command();
    let mut out = std::io::stdout();
    let shell = match args.what {
        What::Man => {
            clap_mangen::Man::new(cmd).render(&mut out)?;
            return Ok(ExitCode::SUCCESS);
        }
        What::Bash => clap_complete::Shell::Bash,
        What::Zsh => clap_complete::Shell::Zsh,
        What::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(shell, &mut cmd, "migward", &mut out);
    Ok(ExitCode::SUCCESS)
}
