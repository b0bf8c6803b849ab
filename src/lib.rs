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
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out.replace('\n', " ")
}

/// An anyhow error chain as one line, as the binary prints it.
pub fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}
