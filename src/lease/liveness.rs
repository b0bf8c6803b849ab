//! Is a lease holder still alive? A pid alone is not enough: pids are
//! reused, so a process is identified by pid *and* start time (field 22 of
//! `/proc/<pid>/stat`, in clock ticks since boot).

use std::path::Path;

/// A process identity that survives pid reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessId {
    pub pid: u32,
    pub start_time: u64,
}

/// Start time of `pid` from `/proc/<pid>/stat`, if the process exists.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

/// Field 22 of a stat line. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted after its closing `)`.
pub fn parse_start_time(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

impl ProcessId {
    /// This process.
    pub fn current() -> Option<ProcessId> {
        let pid = std::process::id();
        start_time(pid).map(|start_time| ProcessId { pid, start_time })
    }

    pub fn of(pid: u32) -> Option<ProcessId> {
        start_time(pid).map(|start_time| ProcessId { pid, start_time })
    }

    /// True while this very process runs (and is not a zombie).
    pub fn alive(&self) -> bool {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) else {
            return false;
        };
        let state = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next());
        parse_start_time(&stat) == Some(self.start_time) && state != Some("Z") && state != Some("X")
    }
}

/// The init process runc recorded for container `id` under its state root
/// (`<root>/<id>/state.json`: `init_process_pid`, `init_process_start`).
pub fn runc_init(root: &Path, id: &str) -> Option<ProcessId> {
    let text = std::fs::read_to_string(root.join(id).join("state.json")).ok()?;
    let state: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some(ProcessId {
        pid: u32::try_from(state.get("init_process_pid")?.as_u64()?).ok()?,
        start_time: state.get("init_process_start")?.as_u64()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parsing_survives_odd_names() {
        let line = "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615";
        assert_eq!(parse_start_time(line), Some(987654));
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[test]
    fn current_process_is_alive_and_reuse_is_detected() {
        let me = ProcessId::current().unwrap();
        assert!(me.alive());
        let reused = ProcessId {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!reused.alive());
        assert!(!ProcessId {
            pid: u32::MAX - 1,
            start_time: 1
        }
        .alive());
    }
}
