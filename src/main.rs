//! The migward binary: parse args, call the library, map errors to an exit
//! code. Called as `migward-runtime` (a link), it is the runtime shim.
//!
//! `no_main`: migward starts once for every verb of every container, so it
//! skips what Rust's `main` wrapper does first (the main thread's stack
//! guard, which glibc finds by reading `/proc/self/maps`, and the stack
//! overflow handler): 0.1 to 0.2 ms a process (BENCHMARKS.md). Arguments
//! still come from `std::env::args_os` (glibc hands them to std before
//! `main`); the exit code goes through `std::process::exit`, which flushes
//! stdout. SIGPIPE is set by `cli::main` and the shim, per command.
#![no_main]

use std::ffi::{c_char, c_int};

#[no_mangle]
extern "C" fn main(_argc: c_int, _argv: *const *const c_char) -> c_int {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let called_as = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let code = if called_as == "migward-runtime" {
        migward::cli::runtime::main(&args[1..])
    } else {
        migward::cli::main(args)
    };
    std::process::exit(migward::exit_code(code))
}
