//! `migward-runtime`, the runtime shim, as its own small binary: the code
//! every container verb runs, without the CLI (clap, install, doctor, man
//! pages), so it starts faster and maps less (BENCHMARKS.md). The `migward`
//! binary called by this name, or as `migward runtime`, does the same.
#![no_main]

use std::ffi::{c_char, c_int};

#[no_mangle]
extern "C" fn main(_argc: c_int, _argv: *const *const c_char) -> c_int {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let code = migward::cli::runtime::main(&args);
    std::process::exit(migward::exit_code(code))
}
