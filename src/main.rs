//! The migward binary: parse args, call the library, map errors to an exit
//! code. Called as `migward-runtime` (a link), it is the runtime shim.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let called_as = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if called_as == "migward-runtime" {
        return migward::cli::runtime::main(&args[1..]);
    }
    migward::cli::main(args)
}
