//! Host files under a configurable root (DESIGN.md, "Facts the code needs"):
//! `/proc/devices` for majors, `/proc/driver/nvidia-caps/mig-minors` for cap
//! minors, the capability `access` files for node modes.
//!
//! Parsers take `&str`; [`HostFiles`] only opens files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Device majors read from `/proc/devices`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Majors {
    /// `nvidia` (or the older `nvidia-frontend`): 195 on every driver so far.
    pub nvidia: u32,
    pub uvm: Option<u32>,
    /// Dynamic: 238, 508 and others are seen.
    pub caps: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} has no nvidia character device: the NVIDIA driver is not loaded on this host")]
    NoNvidia { path: PathBuf },
    #[error("{path} has no {name} character device: {hint}")]
    Missing {
        path: PathBuf,
        name: &'static str,
        hint: &'static str,
    },
    #[error("{path} line {line}: {text:?} is not `gpu<N>/gi<G>[/ci<C>]/access <minor>` or `config|monitor <minor>`")]
    Garbled {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error("{path} is empty: the nvidia-caps interface of the driver is not set up (load the nvidia module with MIG support)")]
    EmptyMinors { path: PathBuf },
    #[error("{path} has no entry for gpu{gpu}/gi{gi}{ci}: the file does not match this driver's MIG layout", ci = .ci.map(|c| format!("/ci{c}")).unwrap_or_default())]
    NoCapMinor {
        path: PathBuf,
        gpu: u32,
        gi: u32,
        ci: Option<u32>,
    },
}

/// Parses the `Character devices:` section of `/proc/devices`.
/// Returns (nvidia, uvm, caps) majors, each if present.
pub fn parse_proc_devices(text: &str) -> (Option<u32>, Option<u32>, Option<u32>) {
    let (mut nvidia, mut uvm, mut caps) = (None, None, None);
    let mut in_char = false;
    for line in text.lines() {
        let line = line.trim();
        if line.ends_with(':') {
            in_char = line.starts_with("Character");
            continue;
        }
        if !in_char {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(major), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let Ok(major) = major.parse::<u32>() else {
            continue;
        };
        match name {
            "nvidia" | "nvidia-frontend" => nvidia = nvidia.or(Some(major)),
            "nvidia-uvm" => uvm = Some(major),
            "nvidia-caps" => caps = Some(major),
            _ => {}
        }
    }
    (nvidia, uvm, caps)
}

/// Key of one line of `mig-minors`: (gpu minor, gi, ci) — `None` ci for the GI line.
pub type CapKey = (u32, u32, Option<u32>);

/// Parses `mig-minors`: `gpu0/gi1/access 12`, `gpu0/gi1/ci0/access 13`,
/// `config 1`, `monitor 2`. Returns the GI/CI entries, or the bad line number.
pub fn parse_mig_minors(text: &str) -> Result<HashMap<CapKey, u32>, (usize, String)> {
    let mut out = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        let bad = || (n + 1, trimmed.chars().take(80).collect::<String>());
        let mut parts = trimmed.split_whitespace();
        let (Some(name), Some(minor), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let minor: u32 = minor.parse().map_err(|_| bad())?;
        if name == "config" || name == "monitor" {
            continue;
        }
        let segs: Vec<&str> = name.split('/').collect();
        let num =
            |s: &str, prefix: &str| s.strip_prefix(prefix).and_then(|v| v.parse::<u32>().ok());
        let key = match segs.as_slice() {
            [gpu, gi, "access"] => (num(gpu, "gpu"), num(gi, "gi"), Some(None)),
            [gpu, gi, ci, "access"] => (num(gpu, "gpu"), num(gi, "gi"), num(ci, "ci").map(Some)),
            _ => (None, None, None),
        };
        match key {
            (Some(gpu), Some(gi), Some(ci)) => {
                out.insert((gpu, gi, ci), minor);
            }
            _ => return Err(bad()),
        }
    }
    Ok(out)
}

/// Parses a capability `access` file's `DeviceFileMode: 292` (decimal).
pub fn parse_cap_mode(text: &str) -> Option<u32> {
    text.lines().find_map(|l| {
        l.strip_prefix("DeviceFileMode:")
            .and_then(|v| v.trim().parse::<u32>().ok())
            .filter(|m| *m <= 0o777)
    })
}

/// The host files, under a root (`/` in production, a fixture dir in tests).
#[derive(Debug, Clone)]
pub struct HostFiles {
    root: PathBuf,
}

impl HostFiles {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        HostFiles { root: root.into() }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }

    fn read(&self, rel: &str) -> Result<(PathBuf, String), HostError> {
        let path = self.path(rel);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok((path, text)),
            Err(source) => Err(HostError::Read { path, source }),
        }
    }

    /// Majors of the nvidia devices; `nvidia` must be present.
    pub fn majors(&self) -> Result<Majors, HostError> {
        let (path, text) = self.read("/proc/devices")?;
        let (nvidia, uvm, caps) = parse_proc_devices(&text);
        let nvidia = nvidia.ok_or(HostError::NoNvidia { path })?;
        Ok(Majors { nvidia, uvm, caps })
    }

    /// Like [`HostFiles::majors`], but also requires uvm and caps (MIG use).
    pub fn require(&self, majors: Majors, caps: bool) -> Result<(u32, Option<u32>), HostError> {
        let path = self.path("/proc/devices");
        let uvm = majors.uvm.ok_or_else(|| HostError::Missing {
            path: path.clone(),
            name: "nvidia-uvm",
            hint: "load the nvidia-uvm module (nvidia-modprobe -u -c=0) so CUDA can run",
        })?;
        let caps = if caps {
            Some(majors.caps.ok_or(HostError::Missing {
                path,
                name: "nvidia-caps",
                hint: "MIG capabilities are not available: load a driver with MIG support (R450+) and enable MIG",
            })?)
        } else {
            None
        };
        Ok((uvm, caps))
    }

    /// The GI/CI cap minors from `mig-minors`.
    pub fn mig_minors(&self) -> Result<MigMinors, HostError> {
        let (path, text) = self.read("/proc/driver/nvidia-caps/mig-minors")?;
        let table = parse_mig_minors(&text).map_err(|(line, text)| HostError::Garbled {
            path: path.clone(),
            line,
            text,
        })?;
        if table.is_empty() {
            return Err(HostError::EmptyMinors { path });
        }
        Ok(MigMinors { path, table })
    }

    /// Mode of a cap node from its capability `access` file; 0444 if absent.
    pub fn cap_mode(&self, gpu: u32, gi: u32, ci: Option<u32>) -> u32 {
        let rel = match ci {
            Some(ci) => {
                format!("/proc/driver/nvidia/capabilities/gpu{gpu}/mig/gi{gi}/ci{ci}/access")
            }
            None => format!("/proc/driver/nvidia/capabilities/gpu{gpu}/mig/gi{gi}/access"),
        };
        std::fs::read_to_string(self.path(&rel))
            .ok()
            .and_then(|t| parse_cap_mode(&t))
            .unwrap_or(0o444)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// The parsed `mig-minors` table.
#[derive(Debug, Clone)]
pub struct MigMinors {
    path: PathBuf,
    table: HashMap<CapKey, u32>,
}

impl MigMinors {
    pub fn get(&self, gpu: u32, gi: u32, ci: Option<u32>) -> Result<u32, HostError> {
        self.table
            .get(&(gpu, gi, ci))
            .copied()
            .ok_or_else(|| HostError::NoCapMinor {
                path: self.path.clone(),
                gpu,
                gi,
                ci,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_devices_majors() {
        let cases = [
            ("Character devices:\n195 nvidia-frontend\n508 nvidia-caps\n509 nvidia-uvm\n\nBlock devices:\n  8 sd\n", (Some(195), Some(509), Some(508))),
            ("Character devices:\n  1 mem\n195 nvidia\n195 nvidiactl\n238 nvidia-caps\n", (Some(195), None, Some(238))),
            ("Character devices:\n  1 mem\nBlock devices:\n195 nvidia\n", (None, None, None)),
            ("", (None, None, None)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_proc_devices(text), want, "{text:?}");
        }
    }

    #[test]
    fn mig_minors_table() {
        let text = "config 1\nmonitor 2\ngpu0/gi1/access 12\ngpu0/gi1/ci0/access 13\ngpu1/gi2/access 156\ngpu1/gi2/ci0/access 157\n";
        let t = parse_mig_minors(text).unwrap();
        assert_eq!(t[&(0, 1, None)], 12);
        assert_eq!(t[&(0, 1, Some(0))], 13);
        assert_eq!(t[&(1, 2, Some(0))], 157);
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn garbled_mig_minors_name_the_line() {
        let cases = [
            ("gpu0/gi1/access 12\nhello\n", 2),
            ("gpu0/gi1/access twelve\n", 1),
            ("gpuX/gi1/access 12\n", 1),
            ("gpu0/gi1/ci0/acces 13\n", 1),
        ];
        for (text, line) in cases {
            assert_eq!(parse_mig_minors(text).unwrap_err().0, line, "{text:?}");
        }
    }

    #[test]
    fn cap_mode_is_decimal() {
        assert_eq!(
            parse_cap_mode("DeviceFileMinor: 12\nDeviceFileMode: 292\nDeviceFileModify: 1\n"),
            Some(0o444)
        );
        assert_eq!(parse_cap_mode("DeviceFileMode: 99999\n"), None);
    }
}
