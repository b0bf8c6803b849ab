//! `migward runtime …` and `migward-runtime …`: the runtime shim.

use std::ffi::OsString;
use std::process::ExitCode;

pub fn main(args: &[OsString]) -> ExitCode {
    crate::shim::main(args)
}
