//! `migward runtime …` and `migward-runtime …`: the runtime shim.

use std::ffi::OsString;
use std::process::ExitCode;

pub fn main(args: &[OsString]) -> ExitCode {
    // As Rust's own `main` would: a closed pipe is a failed write, not a
    // death between the lease and the exec. `Command::exec` gives the real
    // runtime the default back.
    crate::sigpipe(libc::SIG_IGN);
    crate::shim::main(args)
}
