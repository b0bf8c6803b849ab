//! Host files under a configurable root (DESIGN.md, "Facts the code needs"):
//! `/proc/devices` for majors, `/proc/driver/nvidia-caps/mig-minors` for cap
//! minors, the capability `access` files for node modes.
//!
//! Parsers take `&str`; [`HostFiles`] only opens files.

use std::path::PathBuf;

/// Major of `/dev/nvidia<N>` and `/dev/nvidiactl` on every driver so far.
pub const NVIDIA_MAJOR: u32 = 195;

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
    #[error("cannot read {path}")]
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

    /// The `mig-minors` table (read once; entries are looked up on demand).
    pub fn mig_minors(&self) -> Result<MigMinors, HostError> {
        let (path, text) = self.read("/proc/driver/nvidia-caps/mig-minors")?;
        if text.trim().is_empty() {
            return Err(HostError::EmptyMinors { path });
        }
        Ok(MigMinors { path, text })
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
}

/// The `mig-minors` table: `gpu<N>/gi<G>/access <minor>`,
/// `gpu<N>/gi<G>/ci<C>/access <minor>`, `config 1`, `monitor 2`.
///
/// The file has 4,320 lines on every host and a container needs two of
/// them, so entries are found by scanning for their name rather than by
/// parsing the whole table on every container start (BENCHMARKS.md).
#[derive(Debug, Clone)]
pub struct MigMinors {
    path: PathBuf,
    text: String,
}

impl MigMinors {
    pub fn from_text(path: PathBuf, text: String) -> MigMinors {
        MigMinors { path, text }
    }

    /// The cap minor of a GI (`ci` none) or CI; a missing or garbled entry
    /// is an error naming the file (and the line).
    pub fn get(&self, gpu: u32, gi: u32, ci: Option<u32>) -> Result<u32, HostError> {
        let name = match ci {
            Some(c) => format!("gpu{gpu}/gi{gi}/ci{c}/access"),
            None => format!("gpu{gpu}/gi{gi}/access"),
        };
        for (n, line) in self.text.lines().enumerate() {
            let line = line.trim();
            let Some(rest) = line.strip_prefix(name.as_str()) else {
                continue;
            };
            if !rest.starts_with([' ', '\t']) {
                continue;
            }
            return rest.trim().parse().map_err(|_| HostError::Garbled {
                path: self.path.clone(),
                line: n + 1,
                text: line.chars().take(80).collect(),
            });
        }
        Err(HostError::NoCapMinor {
            path: self.path.clone(),
            gpu,
            gi,
            ci,
        })
    }

    /// What cap minor `minor` is, by scanning the table (the inverse of
    /// [`MigMinors::get`]): how a cap node in a spec is mapped back to its
    /// instance without NVML. `None` if no line has that minor.
    pub fn name_of(&self, minor: u32) -> Option<CapName> {
        self.text.lines().find_map(|line| {
            let mut parts = line.split_whitespace();
            let (Some(name), Some(m), None) = (parts.next(), parts.next(), parts.next()) else {
                return None;
            };
            (m.parse::<u32>().ok()? == minor).then(|| parse_cap_name(name))?
        })
    }
}

/// The name of a line of `mig-minors`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapName {
    /// `gpu<gpu>/gi<gi>/access`: a GPU instance.
    Gi { gpu: u32, gi: u32 },
    /// `gpu<gpu>/gi<gi>/ci<ci>/access`: a compute instance.
    Ci { gpu: u32, gi: u32, ci: u32 },
    /// `config`: the right to change MIG instances.
    Config,
    /// `monitor`: the right to watch every instance.
    Monitor,
}

fn parse_cap_name(name: &str) -> Option<CapName> {
    match name {
        "config" => return Some(CapName::Config),
        "monitor" => return Some(CapName::Monitor),
        _ => {}
    }
    let num = |s: &str, prefix: &str| s.strip_prefix(prefix)?.parse::<u32>().ok();
    let parts: Vec<&str> = name.split('/').collect();
    match parts.as_slice() {
        [g, i, "access"] => Some(CapName::Gi {
            gpu: num(g, "gpu")?,
            gi: num(i, "gi")?,
        }),
        [g, i, c, "access"] => Some(CapName::Ci {
            gpu: num(g, "gpu")?,
            gi: num(i, "gi")?,
            ci: num(c, "ci")?,
        }),
        _ => None,
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

    fn table(text: &str) -> MigMinors {
        MigMinors::from_text("mig-minors".into(), text.into())
    }

    #[test]
    fn mig_minors_lookup() {
        let t = table("config 1\nmonitor 2\ngpu0/gi1/access 12\ngpu0/gi1/ci0/access 13\ngpu1/gi2/access 156\ngpu1/gi2/ci0/access 157\ngpu1/gi12/access 219\n");
        assert_eq!(t.get(0, 1, None).unwrap(), 12);
        assert_eq!(t.get(0, 1, Some(0)).unwrap(), 13);
        assert_eq!(t.get(1, 2, Some(0)).unwrap(), 157);
        assert_eq!(t.get(1, 1, None).unwrap_err().to_string(), "mig-minors has no entry for gpu1/gi1: the file does not match this driver's MIG layout");
        assert_eq!(t.get(1, 12, None).unwrap(), 219, "gi12 is not gi1");
    }

    #[test]
    fn cap_minors_map_back_to_their_names() {
        let t = table("config 1\nmonitor 2\ngpu0/gi1/access 12\ngpu0/gi1/ci0/access 13\ngpu1/gi2/access 156\ngarbage line here\ngpu1/gi2/ci0/access 157\n");
        let cases = [
            (1, Some(CapName::Config)),
            (2, Some(CapName::Monitor)),
            (12, Some(CapName::Gi { gpu: 0, gi: 1 })),
            (
                13,
                Some(CapName::Ci {
                    gpu: 0,
                    gi: 1,
                    ci: 0,
                }),
            ),
            (
                157,
                Some(CapName::Ci {
                    gpu: 1,
                    gi: 2,
                    ci: 0,
                }),
            ),
            (14, None),
        ];
        for (minor, want) in cases {
            assert_eq!(t.name_of(minor), want, "{minor}");
        }
    }

    #[test]
    fn garbled_entries_name_the_line() {
        let cases = [
            (
                "gpu0/gi1/access 12\ngpu0/gi1/ci0/access thirteen\n",
                Some(0),
                2,
            ),
            ("junk\ngpu0/gi1/access -3\n", None, 2),
        ];
        for (text, ci, line) in cases {
            let err = table(text).get(0, 1, ci).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("mig-minors line {line}: ")),
                "{text:?}: {err}"
            );
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
