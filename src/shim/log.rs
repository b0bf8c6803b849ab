//! runc-style log lines for the `--log` file: docker and containerd read the
//! last `error` entry of a failed runtime call and show its `msg`.

use std::io::Write as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

pub fn error(path: &Path, json: bool, msg: &str) {
    write(path, json, "error", msg);
}

pub fn warning(path: &Path, json: bool, msg: &str) {
    write(path, json, "warning", msg);
}

fn write(path: &Path, json: bool, level: &str, msg: &str) {
    let time = rfc3339(SystemTime::now());
    let line = if json {
        serde_json::json!({"level": level, "msg": msg, "time": time}).to_string()
    } else {
        format!("time=\"{time}\" level={level} msg={msg:?}")
    };
    // Best effort: failing to log must not hide the error on stderr.
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        // One write: runc appends to the same file.
        let _ = f.write_all(format!("{line}\n").as_bytes());
    }
}

/// `2026-11-21T06:00:00Z` from a system time (UTC, civil-from-days).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86400, secs % 86400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_dates() {
        let cases = [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_795_219_200, "2026-11-21T00:00:00Z"),
        ];
        for (secs, want) in cases {
            assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(secs)), want);
        }
    }

    #[test]
    fn json_lines_append() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log.json");
        error(&p, true, "first");
        error(&p, true, "second \"q\"");
        let text = std::fs::read_to_string(&p).unwrap();
        let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(
            (last["level"].as_str(), last["msg"].as_str()),
            (Some("error"), Some("second \"q\""))
        );
        assert_eq!(text.lines().count(), 2);
    }
}
