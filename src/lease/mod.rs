//! One tenant per MIG instance: the lease store (DESIGN.md, "One tenant per
//! instance").
//!
//! Each container holding GPUs has one file, `<state_dir>/leases/<id>.json`,
//! listing the units it holds. Every change happens under an exclusive
//! `flock` on `<state_dir>/leases/.lock`, and every write is atomic (temp +
//! fsync + rename), so a crash leaves either the old file or the new one.
//! A holder that is gone (its process exited, or its pid now belongs to a
//! process with another start time, or it never started and has no runtime
//! state) is stale: the next acquire that meets it reclaims it and logs the
//! reclaim to `<state_dir>/events.log`. A lease file that cannot be read or
//! parsed is an error naming the file, never a grant.

pub mod liveness;

use crate::config::Exclusive;
use crate::plan::Grant;
use liveness::{runc_init, ProcessId};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Longest container id accepted (docker's are 64 hex chars).
pub const MAX_ID_LEN: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("container id {0} is not valid: use 1 to {MAX_ID_LEN} characters of A-Z a-z 0-9 _ + - . not starting with a dot")]
    BadId(String),
    #[error("{what} is held by container {holder}{labels} since {since}: stop that container, or free a stale lease with `migward leases release {holder} --force`")]
    Held {
        what: String,
        holder: String,
        labels: String,
        since: String,
    },
    #[error(
        "lease file {path} is corrupt ({reason}): inspect it, then remove it with `{}`",
        corrupt_fix(id, path)
    )]
    Corrupt {
        path: PathBuf,
        id: String,
        reason: String,
    },
    #[error("lease store {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("container {id} already holds {what} under runtime root {root}, and it is still live: a live container cannot be created again or change its GPUs; delete it first")]
    IdInUse {
        id: String,
        what: String,
        root: String,
    },
    #[error("no free {profile}: all {count} are held; holders: {holders}: stop one of them, or ask for another profile (`migward list` shows which instances are free)")]
    NoneFree {
        profile: String,
        count: usize,
        holders: String,
    },
    #[error("no free {profile}: the other devices of this request already take all {count}: ask for fewer")]
    TakenBySelf { profile: String, count: usize },
    #[error("no lease matches {0}: see `migward leases`")]
    NotFound(String),
    #[error("{prefix} matches {count} leases ({ids}): give more of the container id")]
    Ambiguous {
        prefix: String,
        count: usize,
        ids: String,
    },
    #[error("container {0} is still running: stop it first, or pass --force")]
    Live(String),
}

/// The command that clears corrupt lease file `path` of container `id`:
/// `leases release` where the name is a valid id, else removing the file.
pub fn corrupt_fix(id: &str, path: &Path) -> String {
    if validate_id(id).is_ok() {
        format!("migward leases release {id} --force")
    } else {
        format!("rm {}", path.display())
    }
}

/// Checks a container id before it becomes part of a file name.
pub fn validate_id(id: &str) -> Result<(), LeaseError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(LeaseError::BadId(crate::request::shown(id)))
    }
}

/// One thing held: a whole GPU (`gi` none), a GPU instance (`ci` none) or a
/// compute instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unit {
    pub gpu_uuid: String,
    pub gpu_index: u32,
    pub gi: Option<u32>,
    pub ci: Option<u32>,
    pub mig_uuid: Option<String>,
    pub profile: Option<String>,
}

impl Unit {
    /// Whether two units cannot be held by two containers at once.
    pub fn overlaps(&self, other: &Unit) -> bool {
        self.gpu_uuid.eq_ignore_ascii_case(&other.gpu_uuid)
            && match (self.gi, other.gi) {
                (Some(a), Some(b)) => {
                    a == b
                        && match (self.ci, other.ci) {
                            (Some(x), Some(y)) => x == y,
                            _ => true,
                        }
                }
                _ => true,
            }
    }

    /// How a refusal names the unit.
    pub fn describe(&self) -> String {
        match (self.gi, self.ci) {
            (None, _) => format!("GPU {} ({}, whole)", self.gpu_index, self.gpu_uuid),
            (Some(gi), ci) => format!(
                "GPU {} GI {gi}{} ({}{})",
                self.gpu_index,
                ci.map(|c| format!(" CI {c}")).unwrap_or_default(),
                self.profile.as_deref().unwrap_or("MIG"),
                self.mig_uuid
                    .as_deref()
                    .map(|u| format!(", {u}"))
                    .unwrap_or_default()
            ),
        }
    }
}

/// The units a plan's grants hold under the configured exclusivity.
pub fn units(grants: &[Grant], exclusive: Exclusive) -> Vec<Unit> {
    let mut out: Vec<Unit> = Vec::new();
    for g in grants {
        let unit = Unit {
            gpu_uuid: g.gpu_uuid.clone(),
            gpu_index: g.gpu_index,
            gi: g.mig.as_ref().map(|m| m.gi),
            ci: match exclusive {
                Exclusive::ComputeInstance => g.mig.as_ref().map(|m| m.ci),
                Exclusive::GpuInstance => None,
            },
            mig_uuid: g.mig.as_ref().map(|m| m.uuid.clone()),
            profile: g.mig.as_ref().map(|m| m.profile.clone()),
        };
        // A whole GPU already covers its instances.
        if !out.iter().any(|u| u.gi.is_none() && u.overlaps(&unit)) && !out.contains(&unit) {
            out.push(unit);
        }
    }
    out
}

/// Who holds a lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub container_id: String,
    pub bundle: Option<String>,
    /// The process that took the lease (the shim, which becomes runc).
    pub creator: Option<ProcessId>,
    /// The container's init, once known (hooks get it on stdin).
    pub init: Option<ProcessId>,
    /// The runtime's state root (`--root`), where runc keeps `<id>/state.json`.
    pub runtime_root: Option<PathBuf>,
    /// The runtime's `--pid-file`: the container's init pid once created,
    /// for runtimes that keep no runc-style `state.json` (crun).
    #[serde(default)]
    pub pid_file: Option<PathBuf>,
    /// RFC 3339.
    pub since: String,
    pub labels: BTreeMap<String, String>,
}

/// A lease file. Unknown fields are accepted (a newer migward may add
/// some); a file that does not parse at all is corrupt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub version: u32,
    pub holder: Holder,
    pub units: Vec<Unit>,
}

impl Lease {
    pub fn new(holder: Holder, units: Vec<Unit>) -> Lease {
        Lease {
            version: 1,
            holder,
            units,
        }
    }

    /// Whether the holder still runs (see the module doc).
    pub fn live(&self) -> bool {
        if let Some(init) = self.holder.init {
            return init.alive();
        }
        if self.holder.creator.is_some_and(|c| c.alive()) {
            return true;
        }
        if let Some(init) = self
            .holder
            .runtime_root
            .as_deref()
            .and_then(|root| runc_init(root, &self.holder.container_id))
        {
            return init.alive();
        }
        // Other runtimes: the pid file, trusting a process that started
        // after the lease was taken (the creator's start time). A pid reused
        // since then would be taken for the init: a small window that
        // runc's state.json, with its recorded start time, does not have.
        let taken = self.holder.creator.map(|c| c.start_time).unwrap_or(0);
        self.holder
            .pid_file
            .as_deref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| t.trim().parse::<u32>().ok())
            .and_then(ProcessId::of)
            .is_some_and(|p| p.start_time >= taken && p.alive())
    }

    /// How a refusal points a person at the holder: its labels, or for a
    /// docker id without labels, the command that finds the container.
    pub fn holder_hint(&self) -> String {
        let id = &self.holder.container_id;
        if self.holder.labels.is_empty()
            && id.len() == 64
            && id.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return format!(
                " (find it with `docker ps --no-trunc --filter id={}`)",
                &id[..12]
            );
        }
        self.labels_text()
    }

    /// The holder as a person knows it: `namespace/pod/container` for a
    /// Kubernetes pod, `project/service` for a compose service, else the
    /// container id (cut to 24 characters).
    pub fn who(&self) -> String {
        let l = &self.holder.labels;
        let get = |k: &str| l.get(k).map(String::as_str);
        match (get("k8s_namespace"), get("k8s_pod"), get("k8s_container")) {
            (ns, Some(pod), c) => [ns, Some(pod), c]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("/"),
            _ => match (get("compose_project"), get("compose_service")) {
                (Some(p), Some(s)) => format!("{p}/{s}"),
                _ => self.holder.container_id.chars().take(24).collect(),
            },
        }
    }

    pub fn labels_text(&self) -> String {
        if self.holder.labels.is_empty() {
            return String::new();
        }
        let parts: Vec<String> = self
            .holder
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!(" ({})", parts.join(", "))
    }
}

/// Labels worth showing, from a spec's annotations.
pub fn labels_from_spec(spec: &serde_json::Value) -> BTreeMap<String, String> {
    // CRI-O's pod and container annotations, then containerd's CRI ones.
    const KEYS: [(&str, &str); 8] = [
        ("com.docker.compose.project", "compose_project"),
        ("com.docker.compose.service", "compose_service"),
        ("io.kubernetes.pod.namespace", "k8s_namespace"),
        ("io.kubernetes.pod.name", "k8s_pod"),
        ("io.kubernetes.container.name", "k8s_container"),
        ("io.kubernetes.cri.sandbox-namespace", "k8s_namespace"),
        ("io.kubernetes.cri.sandbox-name", "k8s_pod"),
        ("io.kubernetes.cri.container-name", "k8s_container"),
    ];
    let mut out = BTreeMap::new();
    if let Some(ann) = spec.get("annotations").and_then(|a| a.as_object()) {
        for (key, label) in KEYS {
            if let Some(v) = ann.get(key).and_then(|v| v.as_str()) {
                out.insert(
                    label.to_string(),
                    crate::request::shown(v).trim_matches('"').to_string(),
                );
            }
        }
    }
    out
}

/// What an acquire did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquired {
    /// A new lease file was written: undo it with a release on failure.
    New,
    /// The container already held exactly this lease: leave it alone.
    Renewed,
}

/// A profile asked for: one of `candidates` (in order of preference).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PickWant {
    pub profile: String,
    pub candidates: Vec<Unit>,
}

/// What an acquire took: `picked[i]` is the index of the candidate chosen
/// for pick `i`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub acquired: Acquired,
    pub picked: Vec<usize>,
}

/// The outcome of checking a lease against the others, before any write.
struct Choice {
    /// Every unit the lease will hold: the named ones, then the picked.
    units: Vec<Unit>,
    picked: Vec<usize>,
    /// Stale leases in the way, as indices into the others.
    reclaim: Vec<usize>,
    renewed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Acquire,
    Peek { take_first: bool },
}

/// Decides an acquire: refuses when a live holder is in the way, picks the
/// profiles, lists the stale holders to reclaim. Liveness is checked only
/// for leases that matter, once each.
fn choose(
    others: &[Lease],
    lease: &Lease,
    picks: &[PickWant],
    mode: Mode,
) -> Result<Choice, LeaseError> {
    let id = &lease.holder.container_id;
    let mut live: Vec<Option<bool>> = vec![None; others.len()];
    let mut is_live = |i: usize| *live[i].get_or_insert_with(|| others[i].live());
    let same = others
        .iter()
        .position(|o| !id.is_empty() && &o.holder.container_id == id);
    let same = same.filter(|&i| is_live(i));
    // Another container's live lease on `u` (a lease of this id, live or
    // dead, is never in its own way).
    let blocking = |u: &Unit, is_live: &mut dyn FnMut(usize) -> bool| {
        (0..others.len()).find(|&i| {
            others[i].holder.container_id != *id
                && others[i].units.iter().any(|o| o.overlaps(u))
                && is_live(i)
        })
    };
    for u in lease.units.iter().filter(|_| mode == Mode::Acquire) {
        if let Some(i) = blocking(u, &mut is_live) {
            let other = &others[i];
            // Name what the holder holds: under gpu-instance exclusivity
            // it may be another MIG device of the requested one's GI.
            let theirs = other.units.iter().find(|o| o.overlaps(u)).unwrap_or(u);
            let what = if theirs == u {
                u.describe()
            } else {
                let asked = u.mig_uuid.clone().unwrap_or_else(|| u.describe());
                let how = match theirs.gi {
                    None => "which contains",
                    Some(_) => "which shares its GPU instance with",
                };
                format!("{}, {how} the requested {asked},", theirs.describe())
            };
            return Err(LeaseError::Held {
                what,
                holder: other.holder.container_id.clone(),
                labels: other.holder_hint(),
                since: other.holder.since.clone(),
            });
        }
    }
    let mut units = lease.units.clone();
    let mut picked = Vec::new();
    for pick in picks {
        let held_by_us = |c: &Unit| same.is_some_and(|s| others[s].units.contains(c));
        let free = |c: &Unit, units: &[Unit], is_live: &mut dyn FnMut(usize) -> bool| {
            !units.iter().any(|u| u.overlaps(c)) && blocking(c, is_live).is_none()
        };
        let order = (0..pick.candidates.len())
            .filter(|&c| held_by_us(&pick.candidates[c]))
            .chain(0..pick.candidates.len());
        let mut chosen = None;
        for c in order {
            if free(&pick.candidates[c], &units, &mut is_live) {
                chosen = Some(c);
                break;
            }
        }
        if chosen.is_none() && mode == (Mode::Peek { take_first: true }) {
            chosen = (0..pick.candidates.len())
                .find(|&c| !units.iter().any(|u| u.overlaps(&pick.candidates[c])));
        }
        let Some(c) = chosen else {
            return Err(none_free(others, pick, &mut is_live));
        };
        units.push(pick.candidates[c].clone());
        picked.push(c);
    }
    let mut renewed = false;
    if let Some(s) = same {
        let other = &others[s];
        if other.units == units && other.holder.runtime_root == lease.holder.runtime_root {
            renewed = true;
        } else {
            return Err(LeaseError::IdInUse {
                id: other.holder.container_id.clone(),
                what: other.units.first().map(Unit::describe).unwrap_or_default(),
                root: other
                    .holder
                    .runtime_root
                    .as_deref()
                    .map(|r| r.display().to_string())
                    .unwrap_or_else(|| "(hook)".into()),
            });
        }
    }
    // Whatever else overlaps what is taken is stale: a live one was
    // refused above.
    let reclaim = (0..others.len())
        .filter(|&i| {
            let o = &others[i];
            // A dead lease of the same id is simply overwritten.
            let ours = !id.is_empty() && &o.holder.container_id == id;
            let in_way = o
                .units
                .iter()
                .any(|ou| units.iter().any(|u| u.overlaps(ou)));
            !ours && in_way && !is_live(i)
        })
        .collect();
    Ok(Choice {
        units,
        picked,
        reclaim,
        renewed,
    })
}

/// The refusal when every candidate of a pick is held.
fn none_free(
    others: &[Lease],
    pick: &PickWant,
    is_live: &mut dyn FnMut(usize) -> bool,
) -> LeaseError {
    const SHOWN: usize = 4;
    let mut holders: Vec<String> = Vec::new();
    for (i, o) in others.iter().enumerate() {
        let held: Vec<&Unit> = o
            .units
            .iter()
            .filter(|u| pick.candidates.iter().any(|c| c.overlaps(u)))
            .collect();
        if held.is_empty() || !is_live(i) {
            continue;
        }
        let on: Vec<String> = held
            .iter()
            .map(|u| match u.gi {
                Some(gi) => format!("GPU {} GI {gi}", u.gpu_index),
                None => format!("GPU {}", u.gpu_index),
            })
            .collect();
        holders.push(format!(
            "{} on {}{}",
            o.holder.container_id,
            on.join(", "),
            o.holder_hint()
        ));
    }
    // Instances, not MIG devices: under gpu-instance exclusivity the compute
    // instances of one GI are one unit.
    let mut distinct: Vec<&Unit> = Vec::new();
    for c in &pick.candidates {
        if !distinct.iter().any(|d| d.overlaps(c)) {
            distinct.push(c);
        }
    }
    if holders.is_empty() {
        return LeaseError::TakenBySelf {
            profile: pick.profile.clone(),
            count: distinct.len(),
        };
    }
    let more = holders.len().saturating_sub(SHOWN);
    holders.truncate(SHOWN);
    let mut text = holders.join("; ");
    if more > 0 {
        text.push_str(&format!("; and {more} more (see `migward leases`)"));
    }
    LeaseError::NoneFree {
        profile: pick.profile.clone(),
        count: distinct.len(),
        holders: text,
    }
}

/// The lease store under a state dir.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    state_dir: PathBuf,
}

impl Store {
    pub fn new(state_dir: &Path) -> Store {
        Store {
            dir: state_dir.join("leases"),
            state_dir: state_dir.to_path_buf(),
        }
    }

    fn io(&self, path: &Path) -> impl Fn(std::io::Error) -> LeaseError {
        let path = path.to_path_buf();
        move |source| LeaseError::Io {
            path: path.clone(),
            source,
        }
    }

    fn lock(&self) -> Result<Flock<File>, LeaseError> {
        std::fs::create_dir_all(&self.dir).map_err(self.io(&self.dir))?;
        let path = self.dir.join(".lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(self.io(&path))?;
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| LeaseError::Io {
            path,
            source: e.into(),
        })
    }

    pub fn path_of(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    fn read(&self, path: &Path) -> Result<Lease, LeaseError> {
        let text = std::fs::read(path).map_err(self.io(path))?;
        let id = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let corrupt = |reason: String| LeaseError::Corrupt {
            path: path.to_path_buf(),
            id: id.clone(),
            reason,
        };
        let lease: Lease = serde_json::from_slice(&text).map_err(|e| corrupt(e.to_string()))?;
        // A copy (`a-backup.json`) would be read as container `a`, and a
        // reclaim would then remove `a.json`, never the copy: untrusted.
        if lease.holder.container_id != id {
            return Err(corrupt(format!(
                "it names container {:?}, not the one its file name says",
                lease.holder.container_id
            )));
        }
        Ok(lease)
    }

    /// Every lease, in container-id order.
    /// Every lease; a corrupt file is an error (an acquire must never
    /// grant past a lease it cannot read).
    pub fn all(&self) -> Result<Vec<Lease>, LeaseError> {
        let (leases, mut corrupt) = self.scan()?;
        match corrupt.pop() {
            Some(e) => Err(e),
            None => Ok(leases),
        }
    }

    /// Every readable lease, and the errors of the files that are not (for
    /// `migward leases`, which must still show and free them).
    pub fn scan(&self) -> Result<(Vec<Lease>, Vec<LeaseError>), LeaseError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((Vec::new(), Vec::new()))
            }
            Err(e) => return Err(self.io(&self.dir)(e)),
        };
        let (mut out, mut bad) = (Vec::new(), Vec::new());
        for entry in entries {
            let path = entry.map_err(self.io(&self.dir))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.ends_with(".json") && !name.starts_with('.') {
                match self.read(&path) {
                    Ok(lease) => out.push(lease),
                    Err(e) => bad.push(e),
                }
            }
        }
        out.sort_by(|a, b| a.holder.container_id.cmp(&b.holder.container_id));
        Ok((out, bad))
    }

    /// The container ids that have a lease file, readable or not, sorted.
    pub fn ids(&self) -> Result<Vec<String>, LeaseError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io(&self.dir)(e)),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let name = entry.map_err(self.io(&self.dir))?.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if validate_id(id).is_ok() {
                ids.push(id.to_string());
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// The container id that `prefix` names: itself when it has a lease,
    /// else the one lease id it begins (as docker takes a short id).
    /// `None` when no id begins with it.
    pub fn expand_id(&self, prefix: &str) -> Result<Option<String>, LeaseError> {
        let ids = self.ids()?;
        if ids.iter().any(|i| i == prefix) {
            return Ok(Some(prefix.to_string()));
        }
        let matches: Vec<&String> = ids.iter().filter(|i| i.starts_with(prefix)).collect();
        match matches.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some((*one).clone())),
            many => Err(LeaseError::Ambiguous {
                prefix: crate::request::shown(prefix),
                count: many.len(),
                ids: many
                    .iter()
                    .take(4)
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// The lease of container `id`, if any.
    pub fn get(&self, id: &str) -> Result<Option<Lease>, LeaseError> {
        validate_id(id)?;
        let path = self.path_of(id);
        if !path.exists() {
            return Ok(None);
        }
        self.read(&path).map(Some)
    }

    fn write(&self, lease: &Lease) -> Result<(), LeaseError> {
        let path = self.path_of(&lease.holder.container_id);
        let io = self.io(&path);
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp")
            .tempfile_in(&self.dir)
            .map_err(&io)?;
        // One write: serde_json on a bare file makes a syscall per token.
        let bytes = serde_json::to_vec_pretty(lease).map_err(|e| io(e.into()))?;
        tmp.write_all(&bytes).map_err(&io)?;
        tmp.as_file().sync_all().map_err(&io)?;
        tmp.persist(&path).map_err(|e| io(e.error))?;
        Ok(())
    }

    fn remove(&self, id: &str) -> Result<bool, LeaseError> {
        let path = self.path_of(id);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.io(&path)(e)),
        }
    }

    /// Appends one JSON line to `<state_dir>/events.log` (best effort).
    pub fn log_event(&self, event: &str, lease: &Lease) {
        let line = serde_json::json!({
            "time": crate::shim::log::rfc3339(std::time::SystemTime::now()),
            "event": event,
            "container_id": lease.holder.container_id,
            "units": lease.units.iter().map(Unit::describe).collect::<Vec<_>>(),
        });
        if let Ok(mut f) = File::options()
            .create(true)
            .append(true)
            .open(self.state_dir.join("events.log"))
        {
            // One write of the whole line: O_APPEND keeps concurrent
            // writers' lines whole only if each is a single write.
            let _ = f.write_all(format!("{line}\n").as_bytes());
        }
    }

    /// Takes `lease` for its container, or fails naming the holder of the
    /// first unit in the way. Stale holders in the way are reclaimed;
    /// `on_reclaim` hears of each.
    ///
    /// The same container id again with the same units (a restart, a
    /// retried create) is granted as [`Acquired::Renewed`] and its file is
    /// left as it is; a live lease of that id with other units, or from
    /// another runtime root, is refused rather than overwritten.
    pub fn acquire(
        &self,
        lease: &Lease,
        on_reclaim: &mut dyn FnMut(&Lease),
    ) -> Result<Acquired, LeaseError> {
        self.acquire_picking(lease, &[], on_reclaim)
            .map(|t| t.acquired)
    }

    /// [`Store::acquire`], where `lease.units` are the units asked for by
    /// name and each of `picks` adds the first of its candidates that no
    /// live holder overlaps, chosen under the lock so that racing
    /// containers get distinct instances. A container that already holds
    /// a candidate (a restart) keeps it.
    pub fn acquire_picking(
        &self,
        lease: &Lease,
        picks: &[PickWant],
        on_reclaim: &mut dyn FnMut(&Lease),
    ) -> Result<Taken, LeaseError> {
        validate_id(&lease.holder.container_id)?;
        let _lock = self.lock()?;
        let others = self.all()?;
        let choice = choose(&others, lease, picks, Mode::Acquire)?;
        for &i in &choice.reclaim {
            let other = &others[i];
            self.remove(&other.holder.container_id)?;
            self.log_event("reclaim", other);
            on_reclaim(other);
        }
        if choice.renewed {
            return Ok(Taken {
                acquired: Acquired::Renewed,
                picked: choice.picked,
            });
        }
        let mut full = lease.clone();
        full.units = choice.units;
        self.write(&full)?;
        Ok(Taken {
            acquired: Acquired::New,
            picked: choice.picked,
        })
    }

    /// What [`Store::acquire_picking`] would pick now for a container that
    /// holds nothing, without writing or reclaiming anything (`migward
    /// resolve`, podman's precreate stage, which has no container id yet).
    /// Held `fixed` units are no error here: the acquire that follows
    /// refuses them. A pick with no free candidate is [`LeaseError::NoneFree`],
    /// or with `take_first`, its first candidate, so that the acquire refuses
    /// naming the holder (podman does not show a precreate hook's message).
    pub fn peek(
        &self,
        fixed: &[Unit],
        picks: &[PickWant],
        take_first: bool,
    ) -> Result<Vec<usize>, LeaseError> {
        let _lock = self.lock()?;
        let others = self.all()?;
        let probe = Lease::new(
            Holder {
                container_id: String::new(),
                bundle: None,
                creator: None,
                init: None,
                runtime_root: None,
                pid_file: None,
                since: String::new(),
                labels: BTreeMap::new(),
            },
            fixed.to_vec(),
        );
        Ok(choose(&others, &probe, picks, Mode::Peek { take_first })?.picked)
    }

    /// Frees the lease of container `id`; false if it held none.
    pub fn release(&self, id: &str) -> Result<bool, LeaseError> {
        validate_id(id)?;
        let _lock = self.lock()?;
        let path = self.path_of(id);
        if !path.exists() {
            return Ok(false);
        }
        // Read first so a release is logged with what it freed; a corrupt
        // file is still removed (that is what a release is for).
        let lease = self.read(&path).ok();
        let removed = self.remove(id)?;
        if let Some(lease) = lease {
            self.log_event("release", &lease);
        }
        Ok(removed)
    }

    /// Removes every stale lease; returns them.
    pub fn gc(&self) -> Result<Vec<Lease>, LeaseError> {
        let _lock = self.lock()?;
        let mut freed = Vec::new();
        // Corrupt files are left for a person to look at (`leases` lists them).
        for lease in self.scan()?.0 {
            if !lease.live() {
                self.remove(&lease.holder.container_id)?;
                self.log_event("reclaim", &lease);
                freed.push(lease);
            }
        }
        Ok(freed)
    }
}

#[cfg(test)]
mod tests;
