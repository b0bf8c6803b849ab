//! `migward doctor`: the host traps that cost people days, one line each,
//! with the one thing to do. A problem stops GPU containers from working as
//! asked; a warning is a trap that will bite later (at the next boot, the
//! next re-partition). Nothing here changes the host.

mod checks;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warning,
    Problem,
}

impl Status {
    pub fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Problem => "problem",
        }
    }
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked (`nvml`, `gpu 0`, `docker` …).
    pub check: String,
    pub status: Status,
    /// What was found, and for a warning or problem what to do.
    pub message: String,
}

impl Check {
    fn new(check: impl Into<String>, status: Status, message: impl Into<String>) -> Check {
        Check {
            check: check.into(),
            status,
            message: message.into(),
        }
    }
}

pub use checks::run;

/// The worst status among `checks`.
pub fn worst(checks: &[Check]) -> Status {
    checks.iter().map(|c| c.status).max().unwrap_or(Status::Ok)
}

/// One line per check: `status  check  message`.
pub fn render(checks: &[Check]) -> String {
    let width = checks.iter().map(|c| c.check.len()).max().unwrap_or(0);
    checks
        .iter()
        .map(|c| {
            format!(
                "{:<8} {:<width$}  {}\n",
                c.status.word(),
                c.check,
                c.message
            )
        })
        .collect()
}
