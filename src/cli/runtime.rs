//! The runtime shim entry point (issue: runtime shim).

use std::ffi::OsString;
use std::process::ExitCode;

pub fn main(_args: &[OsString]) -> ExitCode {
    eprintln!("migward-runtime: not yet built");
    ExitCode::from(1)
}
