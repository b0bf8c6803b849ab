//! migward gives a container exactly the NVIDIA MIG instance it asked for,
//! and no other container that instance while it is held.
//!
//! The data path runs one way (DESIGN.md): [`request`] → [`inventory`] →
//! [`plan`] → lease → apply (runtime shim or OCI hook).

pub mod apply;
pub mod cli;
pub mod config;
pub mod doctor;
pub mod driver;
pub mod hook;
pub mod install;
pub mod inventory;
pub mod lease;
pub mod plan;
pub mod request;
pub mod shim;
pub mod simulate;
pub mod spec;
pub mod topology;

/// An error and its causes as one line (`what failed: why: why`), for
/// places that print a library error without anyhow.
pub fn chain(e: &dyn std::error::Error) -> String {
    flat(&joined(e))
}

/// An error and its causes joined with `: `, as their messages are
/// (control characters and all): [`chain`] before [`flat`].
pub fn joined(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// An anyhow error chain as one line, as the binary prints it.
pub fn one_line(e: &anyhow::Error) -> String {
    flat(&format!("{e:#}"))
}

/// `text` as one line without control characters: line breaks and tabs
/// become spaces, any other control character its escape (`\u{1b}`), so a
/// value quoted from a file (a TOML key, a CDI path) can neither forge nor
/// garble a log line.
pub fn flat(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

/// An error line for an engine to show. podman searches a failed runtime's
/// (or hook's) text for "no such file or directory" and then reports its
/// runtime itself as missing (exit 127, "OCI runtime attempted to invoke a
/// command that was not found"): the OS's words for ENOENT are replaced.
pub fn for_engines(line: &str) -> String {
    const ENOENT: &str = "no such file or directory";
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    // ASCII lowercasing keeps byte offsets, so they index `rest` too.
    while let Some(at) = rest.to_ascii_lowercase().find(ENOENT) {
        out.push_str(&rest[..at]);
        out.push_str("not there (ENOENT)");
        rest = &rest[at + ENOENT.len()..];
    }
    out.push_str(rest);
    out
}

/// The number of an exit code, for a `no_main` binary's `exit`.
/// `ExitCode` keeps it private on stable Rust; migward makes its codes
/// from a `u8`.
pub fn exit_code(code: std::process::ExitCode) -> i32 {
    (0..=u8::MAX)
        .find(|n| std::process::ExitCode::from(*n) == code)
        .map_or(1, i32::from)
}

/// Sets what SIGPIPE does to this process (`libc::SIG_IGN` or
/// `libc::SIG_DFL`); the binary decides per command (`cli::main`).
pub fn sigpipe(action: libc::sighandler_t) {
    // SAFETY: installs no handler function, only a disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, action);
    }
}

/// A TOML error as `line L, column C: message`, one line, for a file a
/// person edits (the position from the error's span in `text`).
pub fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = flat(e.message().trim());
    let Some(span) = e.span() else {
        return message;
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.chars().rev().take_while(|c| *c != '\n').count() + 1;
    format!("line {line}, column {column}: {message}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn engine_lines_never_say_no_such_file() {
        assert_eq!(
            super::for_engines(
                "cannot load /x.so: /x.so: cannot open shared object file: No such file or directory; NO SUCH FILE OR DIRECTORY"
            ),
            "cannot load /x.so: /x.so: cannot open shared object file: not there (ENOENT); not there (ENOENT)"
        );
        assert_eq!(super::for_engines("GPU 0 is held"), "GPU 0 is held");
    }

    #[test]
    fn toml_errors_name_line_and_column() {
        let text = "a = 1\nbogus = 2\n";
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct A {
            a: u32,
        }
        let e = toml::from_str::<A>(text).unwrap_err();
        let line = super::toml_error(text, &e);
        assert!(
            line.starts_with("line 2, column 1: unknown field `bogus`"),
            "{line}"
        );
        let e = toml::from_str::<A>("a = \"x\"").unwrap_err();
        let line = super::toml_error("a = \"x\"", &e);
        assert!(line.starts_with("line 1, column 5: invalid type"), "{line}");
    }
}
