//! The device-id grammar (DESIGN.md, "request"), comma separated:
//! `MIG-<uuid>`, legacy `MIG-GPU-<gpu-uuid>/<gi>/<ci>`, `GPU-<uuid>`, GPU
//! index `N`, MIG index `N:M`, a MIG profile (`1g.10gb`, `mig-1g.10gb`:
//! one free instance of it), `all`, and `none`, `void` or empty for "no GPU".
//! Device nodes an engine put into a spec become [`DeviceId::Node`]s; they
//! have no text form.

use std::fmt;

/// One parsed device id; UUIDs are kept lowercase with their prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DeviceId {
    /// `MIG-<uuid>`.
    MigUuid(String),
    /// Legacy `MIG-GPU-<uuid>/<gi>/<ci>`: CUDA on current drivers refuses it.
    LegacyMig { gpu_uuid: String, gi: u32, ci: u32 },
    /// `GPU-<uuid>`.
    GpuUuid(String),
    /// A GPU by NVML index.
    GpuIndex(u32),
    /// `N:M`: the M-th MIG device of GPU N (shifts when instances change).
    MigIndex(u32, u32),
    /// Every GPU.
    All,
    /// One free MIG device of this profile (`1g.10gb`, `1c.3g.40gb`),
    /// lowercase, without the Kubernetes `mig-` prefix. Each occurrence
    /// asks for one more instance.
    Profile(String),
    /// An NVIDIA device node an engine already put into the spec (CDI,
    /// `--device`, a device plugin's device specs).
    Node(SpecNode),
}

/// A character device entry of `linux.devices`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpecNode {
    pub path: String,
    pub major: u32,
    pub minor: u32,
}

impl fmt::Display for SpecNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (c {}:{})", self.path, self.major, self.minor)
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceId::MigUuid(u) | DeviceId::GpuUuid(u) => f.write_str(u),
            DeviceId::LegacyMig { gpu_uuid, gi, ci } => write!(f, "MIG-{gpu_uuid}/{gi}/{ci}"),
            DeviceId::GpuIndex(n) => write!(f, "{n}"),
            DeviceId::MigIndex(n, m) => write!(f, "{n}:{m}"),
            DeviceId::All => f.write_str("all"),
            DeviceId::Profile(p) => f.write_str(p),
            DeviceId::Node(n) => n.fmt(f),
        }
    }
}

/// True for `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` in hex, any case.
pub fn is_uuid_body(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

const UUID_SHAPE: &str = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";

/// Parses a whole value; an empty list means "not a GPU request".
pub fn parse_ids(value: &str) -> Result<Vec<DeviceId>, String> {
    let items: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let mut ids: Vec<DeviceId> = Vec::new();
    let mut nothing = false;
    for item in &items {
        if item.eq_ignore_ascii_case("none") || item.eq_ignore_ascii_case("void") {
            nothing = true;
            continue;
        }
        let id = parse_one(item)?;
        if matches!(id, DeviceId::Profile(_)) || !ids.contains(&id) {
            ids.push(id);
        }
    }
    if nothing && !ids.is_empty() {
        return Err("mixes none/void with device ids: give either ids or none".into());
    }
    if ids.contains(&DeviceId::All) && ids.len() > 1 {
        return Err("mixes all with other device ids: give either all or a list".into());
    }
    Ok(ids)
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    s.get(..prefix.len())
        .filter(|p| p.eq_ignore_ascii_case(prefix))
        .map(|_| &s[prefix.len()..])
}

fn parse_index(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 4 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A MIG profile name as `nvidia-smi mig -lgip` and the Kubernetes device
/// plugin spell it: `[<c>c.]<g>g.<mem>gb[+me]`, optionally `mig-` first.
/// Returns it lowercase without the `mig-` prefix.
pub fn parse_profile(item: &str) -> Option<String> {
    let lower = item.to_ascii_lowercase();
    let name = lower.strip_prefix("mig-").unwrap_or(&lower);
    let digits = |s: &str| !s.is_empty() && s.len() <= 3 && s.bytes().all(|b| b.is_ascii_digit());
    let body = name.strip_suffix("+me").unwrap_or(name);
    let mut parts: Vec<&str> = body.split('.').collect();
    if parts.len() == 3 {
        let ci = parts.remove(0);
        if !ci.strip_suffix('c').is_some_and(digits) {
            return None;
        }
    }
    let ok = parts.len() == 2
        && parts[0].strip_suffix('g').is_some_and(digits)
        && parts[1].strip_suffix("gb").is_some_and(digits);
    ok.then(|| name.to_string())
}

fn parse_one(item: &str) -> Result<DeviceId, String> {
    let shown = super::shown(item);
    if item.eq_ignore_ascii_case("all") {
        return Ok(DeviceId::All);
    }
    if let Some(profile) = parse_profile(item) {
        return Ok(DeviceId::Profile(profile));
    }
    if let Some(rest) = strip_prefix_ci(item, "MIG-GPU-") {
        let mut parts = rest.split('/');
        let (uuid, gi, ci) = (parts.next(), parts.next(), parts.next());
        return match (uuid, gi.and_then(parse_index), ci.and_then(parse_index), parts.next()) {
            (Some(uuid), Some(gi), Some(ci), None) if is_uuid_body(uuid) => Ok(DeviceId::LegacyMig {
                gpu_uuid: format!("GPU-{}", uuid.to_ascii_lowercase()),
                gi,
                ci,
            }),
            _ => Err(format!(
                "{shown} is not a legacy MIG id (MIG-GPU-{UUID_SHAPE}/<gi>/<ci>); prefer MIG-<uuid> from `migward list`"
            )),
        };
    }
    if let Some(rest) = strip_prefix_ci(item, "MIG-") {
        return if is_uuid_body(rest) {
            Ok(DeviceId::MigUuid(format!(
                "MIG-{}",
                rest.to_ascii_lowercase()
            )))
        } else {
            Err(format!(
                "{shown} is not a MIG UUID (MIG-{UUID_SHAPE}): copy it from `migward list` or `nvidia-smi -L`"
            ))
        };
    }
    if let Some(rest) = strip_prefix_ci(item, "GPU-") {
        return if is_uuid_body(rest) {
            Ok(DeviceId::GpuUuid(format!(
                "GPU-{}",
                rest.to_ascii_lowercase()
            )))
        } else {
            Err(format!(
                "{shown} is not a GPU UUID (GPU-{UUID_SHAPE}): copy it from `migward list` or `nvidia-smi -L`"
            ))
        };
    }
    if let Some((gpu, mig)) = item.split_once(':') {
        return match (parse_index(gpu), parse_index(mig)) {
            (Some(n), Some(m)) => Ok(DeviceId::MigIndex(n, m)),
            _ => Err(format!(
                "{shown} is not a MIG index (<gpu>:<mig>, e.g. 0:1); prefer MIG-<uuid>"
            )),
        };
    }
    match parse_index(item) {
        Some(n) => Ok(DeviceId::GpuIndex(n)),
        None => Err(format!(
            "{shown} is not a device id: use MIG-<uuid>, GPU-<uuid>, an index N, N:M, a profile such as 1g.10gb, all or none"
        )),
    }
}
