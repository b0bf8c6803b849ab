//! Model-based property test of the lease store (`src/lease`).
//!
//! Random sequences of acquires (named units and profile picks), renewals
//! (the same request again, as a retried create), releases, gc, peeks,
//! holder deaths and corrupt lease files run against a store in a temp dir.
//! After every step the store is read back and compared with a small
//! in-memory model of who holds what, and the invariants below are checked on
//! what was read back. Some steps race two or three store calls from threads,
//! each through its own `Store` on the same dir: every outcome, and the state
//! left, must be those of one serial order of the calls (the store serialises
//! them under `flock`). Racing processes are `tests/leases_runc.rs`'s.
//!
//! Holders are real processes (`sleep` children), so liveness is the store's
//! own (pid and start time, `liveness.rs`); a holder dies by SIGKILL. A killed
//! holder stays a zombie until its case ends, so its pid cannot be reused
//! while a lease still names it, and every child is killed and reaped when a
//! case ends, passing or panicking.
//!
//! The model follows the store's documented promises (`src/lease/mod.rs`):
//! a live holder of another id in the way refuses; a dead one is reclaimed by
//! the acquire that meets it; the same id again with the same units and
//! runtime root is `Renewed` and its file left as it is, and with anything
//! else refused while live; a corrupt file refuses every acquire and peek and
//! is still removed by a release; gc removes every dead readable lease and
//! leaves corrupt files.

use migward::lease::liveness::{self, ProcessId};
use migward::lease::{Acquired, Holder, Lease, LeaseError, PickWant, Store, Unit};
use nix::sys::wait::{waitid, Id, WaitPidFlag};
use nix::unistd::Pid;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Barrier, Mutex};

/// GPU UUIDs with their index: the first two spell one GPU (UUIDs compare
/// case-insensitively, so they must collide).
const GPUS: [(&str, u32); 3] = [("GPU-aaaa", 0), ("GPU-AAAA", 0), ("GPU-bbbb", 1)];

/// The container ids that take leases.
const IDS: [&str; 4] = ["a", "b", "c", "d"];

/// Ids a release is asked for: the lease ids, one that never has a file,
/// and ids that must be refused before any file is touched.
const RELEASE_IDS: [&str; 8] = ["a", "b", "c", "d", "ghost", "../a", ".a", ""];

/// Runtime roots a request names (none: the hook). They never exist, so
/// liveness is the creator's.
const ROOTS: [Option<&str>; 3] = [None, Some("runc-a"), Some("runc-b")];

/// Holder processes a case starts with, and at most.
const FIRST_PROCS: usize = 3;
const MAX_PROCS: usize = 5;

/// A unit, as a test case shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct U {
    gpu: usize,
    gi: Option<u32>,
    ci: Option<u32>,
}

/// What requests ask for: each GPU whole, two GIs, two CIs of GI 1.
fn universe() -> Vec<U> {
    let mut out = Vec::new();
    for gpu in 0..GPUS.len() {
        out.push(U {
            gpu,
            gi: None,
            ci: None,
        });
        for gi in 1..=2 {
            out.push(U {
                gpu,
                gi: Some(gi),
                ci: None,
            });
        }
        for ci in 0..=1 {
            out.push(U {
                gpu,
                gi: Some(1),
                ci: Some(ci),
            });
        }
    }
    out
}

fn unit(u: U) -> Unit {
    let (uuid, index) = GPUS[u.gpu];
    Unit {
        gpu_uuid: uuid.into(),
        gpu_index: index,
        gi: u.gi,
        ci: u.ci,
        mig_uuid: u.gi.map(|gi| format!("MIG-{uuid}-{gi}-{:?}", u.ci)),
        profile: u.gi.map(|_| "1g.10gb".into()),
    }
}

/// Whether two units cannot be held by two containers at once, written from
/// the README's rule ("One tenant per instance") rather than taken from
/// `Unit::overlaps`: the same GPU (UUIDs in any case), and either is the
/// whole GPU, or the same GI where either is the whole GI or both are the
/// same CI.
fn collide(a: &Unit, b: &Unit) -> bool {
    a.gpu_uuid.eq_ignore_ascii_case(&b.gpu_uuid)
        && match (a.gi, b.gi) {
            (Some(x), Some(y)) => x == y && (a.ci.is_none() || b.ci.is_none() || a.ci == b.ci),
            _ => true,
        }
}

/// An acquire as generated: `proc` picks a holder process (modulo how many
/// there are), `root` one of [`ROOTS`].
#[derive(Debug, Clone)]
struct Req {
    id: &'static str,
    proc: usize,
    named: Vec<U>,
    picks: Vec<Vec<U>>,
    root: usize,
}

/// One call of the store.
#[derive(Debug, Clone)]
enum StoreOp {
    Acquire(Req),
    Release(&'static str),
    Gc,
    Peek {
        fixed: Vec<U>,
        picks: Vec<Vec<U>>,
        take_first: bool,
    },
}

/// One step of a case.
#[derive(Debug, Clone)]
enum Op {
    Do(StoreOp),
    /// The id's last request again, from process `proc` (a retried create
    /// or restart comes from a new shim); nothing if the id asked nothing.
    Renew {
        id: &'static str,
        proc: usize,
    },
    /// SIGKILL to a holder process.
    Kill(usize),
    /// One more holder process.
    Spawn,
    /// Truncates the id's lease file to nothing or half, or writes nothing
    /// or half of a lease's JSON where it has none.
    Corrupt {
        id: &'static str,
        half: bool,
    },
    /// Store calls racing from threads, each with its own `Store`.
    Race(Vec<StoreOp>),
}

fn units_strategy(max: usize) -> impl Strategy<Value = Vec<U>> {
    prop::collection::vec(prop::sample::select(universe()), 0..=max)
}

fn picks_strategy() -> impl Strategy<Value = Vec<Vec<U>>> {
    prop::collection::vec(
        prop::collection::vec(prop::sample::select(universe()), 1..=3),
        0..=2,
    )
}

fn req_strategy() -> impl Strategy<Value = Req> {
    (
        prop::sample::select(IDS.to_vec()),
        0..MAX_PROCS,
        units_strategy(2),
        picks_strategy(),
        0..ROOTS.len(),
    )
        .prop_map(|(id, proc, named, picks, root)| Req {
            id,
            proc,
            named,
            picks,
            root,
        })
}

fn store_op_strategy() -> impl Strategy<Value = StoreOp> {
    prop_oneof![
        6 => req_strategy().prop_map(StoreOp::Acquire),
        2 => prop::sample::select(RELEASE_IDS.to_vec()).prop_map(StoreOp::Release),
        1 => Just(StoreOp::Gc),
        1 => (units_strategy(2), picks_strategy(), any::<bool>()).prop_map(
            |(fixed, picks, take_first)| StoreOp::Peek { fixed, picks, take_first }
        ),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        20 => store_op_strategy().prop_map(Op::Do),
        5 => (prop::sample::select(IDS.to_vec()), 0..MAX_PROCS)
            .prop_map(|(id, proc)| Op::Renew { id, proc }),
        4 => (0..MAX_PROCS).prop_map(Op::Kill),
        1 => Just(Op::Spawn),
        // Rare: a corrupt file refuses every acquire until it is released.
        1 => (prop::sample::select(IDS.to_vec()), any::<bool>())
            .prop_map(|(id, half)| Op::Corrupt { id, half }),
        4 => prop::collection::vec(store_op_strategy(), 2..=3).prop_map(Op::Race),
    ]
}

/// A store call with its arguments built.
#[derive(Debug, Clone)]
enum Call {
    Acquire {
        lease: Box<Lease>,
        proc: usize,
        picks: Vec<PickWant>,
    },
    Release(String),
    Gc,
    Peek {
        fixed: Vec<Unit>,
        picks: Vec<PickWant>,
        take_first: bool,
    },
}

/// What a call did, or what the model says it does.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Granted {
        acquired: Acquired,
        picked: Vec<usize>,
        /// Sorted.
        reclaimed: Vec<String>,
    },
    Peeked(Vec<usize>),
    Released(bool),
    /// Sorted.
    Collected(Vec<String>),
    /// A refusal naming a corrupt lease file; the model gives every file it
    /// may name.
    Corrupt(BTreeSet<String>),
    /// A refusal naming a live holder; the model gives every holder it may
    /// name.
    Held(BTreeSet<String>),
    IdInUse(String),
    NoneFree,
    TakenBySelf,
    BadId,
    /// Anything else (an I/O error, a reclaim reported before a refusal):
    /// never predicted.
    Unexpected(String),
}

impl Outcome {
    /// Whether the store may have done `got` where the model says `self`.
    fn admits(&self, got: &Outcome) -> bool {
        match (self, got) {
            (Outcome::Corrupt(may), Outcome::Corrupt(named))
            | (Outcome::Held(may), Outcome::Held(named)) => {
                named.len() == 1 && named.is_subset(may)
            }
            _ => self == got,
        }
    }

    /// Whether the call left the state dir as it was.
    fn changes_nothing(&self) -> bool {
        match self {
            Outcome::Granted {
                acquired,
                reclaimed,
                ..
            } => *acquired == Acquired::Renewed && reclaimed.is_empty(),
            Outcome::Released(removed) => !removed,
            Outcome::Collected(freed) => freed.is_empty(),
            Outcome::Unexpected(_) => false,
            _ => true,
        }
    }
}

/// A lease file the model knows: its content and its holder process.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    lease: Lease,
    proc: usize,
}

/// Who holds what, by the store's promises.
#[derive(Debug, Clone, Default)]
struct Model {
    /// Readable lease files by container id.
    leases: BTreeMap<String, Entry>,
    /// Ids whose lease file is corrupt.
    corrupt: BTreeSet<String>,
    /// Per holder process, whether it runs.
    alive: Vec<bool>,
    /// Lines of `events.log`, counted by (event, container id).
    events: BTreeMap<(String, String), usize>,
}

impl Model {
    fn apply(&mut self, call: &Call) -> Outcome {
        match call {
            Call::Acquire { lease, proc, picks } => self.acquire(lease, *proc, picks),
            Call::Release(id) => {
                if migward::lease::validate_id(id).is_err() {
                    return Outcome::BadId;
                }
                // A corrupt file is removed too, unlogged: there is nothing
                // to log it with.
                let readable = self.leases.remove(id).is_some();
                if readable {
                    self.log("release", id);
                }
                let corrupt = self.corrupt.remove(id);
                Outcome::Released(readable || corrupt)
            }
            Call::Gc => {
                let dead: Vec<String> = self
                    .leases
                    .iter()
                    .filter(|(_, h)| !self.alive[h.proc])
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in &dead {
                    self.leases.remove(id);
                    self.log("reclaim", id);
                }
                Outcome::Collected(dead)
            }
            Call::Peek {
                fixed,
                picks,
                take_first,
            } => {
                if !self.corrupt.is_empty() {
                    return Outcome::Corrupt(self.corrupt.clone());
                }
                // Held fixed units are the acquire's to refuse.
                let mut units = fixed.clone();
                let mut picked = Vec::new();
                for pick in picks {
                    let c = &pick.candidates;
                    let fits = |u: &Unit, units: &[Unit]| !units.iter().any(|t| collide(t, u));
                    let chosen = (0..c.len())
                        .find(|&i| fits(&c[i], &units) && self.holders_of(&c[i], "").is_empty())
                        .or_else(|| (0..c.len()).find(|&i| *take_first && fits(&c[i], &units)));
                    let Some(i) = chosen else {
                        return self.none_free(c);
                    };
                    units.push(c[i].clone());
                    picked.push(i);
                }
                Outcome::Peeked(picked)
            }
        }
    }

    fn acquire(&mut self, lease: &Lease, proc: usize, picks: &[PickWant]) -> Outcome {
        let id = &lease.holder.container_id;
        // Never a grant past a lease file that cannot be read.
        if !self.corrupt.is_empty() {
            return Outcome::Corrupt(self.corrupt.clone());
        }
        for u in &lease.units {
            let holders = self.holders_of(u, id);
            if !holders.is_empty() {
                return Outcome::Held(holders);
            }
        }
        let ours = self.leases.get(id).filter(|h| self.alive[h.proc]).cloned();
        let mut units = lease.units.clone();
        let mut picked = Vec::new();
        for pick in picks {
            let c = &pick.candidates;
            let free = |u: &Unit, units: &[Unit]| {
                !units.iter().any(|t| collide(t, u)) && self.holders_of(u, id).is_empty()
            };
            // A container that already holds a candidate keeps it.
            let kept = (0..c.len()).find(|&i| {
                ours.as_ref().is_some_and(|h| h.lease.units.contains(&c[i])) && free(&c[i], &units)
            });
            let Some(i) = kept.or_else(|| (0..c.len()).find(|&i| free(&c[i], &units))) else {
                return self.none_free(c);
            };
            units.push(c[i].clone());
            picked.push(i);
        }
        let renewed = match &ours {
            None => false,
            Some(h)
                if h.lease.units == units
                    && h.lease.holder.runtime_root == lease.holder.runtime_root =>
            {
                true
            }
            Some(_) => return Outcome::IdInUse(id.clone()),
        };
        // Dead holders in the way are reclaimed; a dead lease of this id is
        // overwritten.
        let reclaimed: Vec<String> = self
            .leases
            .iter()
            .filter(|(other, h)| {
                *other != id
                    && !self.alive[h.proc]
                    && h.lease
                        .units
                        .iter()
                        .any(|o| units.iter().any(|u| collide(o, u)))
            })
            .map(|(other, _)| other.clone())
            .collect();
        for other in &reclaimed {
            self.leases.remove(other);
            self.log("reclaim", other);
        }
        if !renewed {
            let mut full = lease.clone();
            full.units = units;
            self.leases.insert(id.clone(), Entry { lease: full, proc });
        }
        Outcome::Granted {
            acquired: if renewed {
                Acquired::Renewed
            } else {
                Acquired::New
            },
            picked,
            reclaimed,
        }
    }

    /// The live holders other than `id` of something colliding with `u`.
    fn holders_of(&self, u: &Unit, id: &str) -> BTreeSet<String> {
        self.leases
            .iter()
            .filter(|(other, h)| {
                *other != id && self.alive[h.proc] && h.lease.units.iter().any(|o| collide(o, u))
            })
            .map(|(other, _)| other.clone())
            .collect()
    }

    /// A pick with no free candidate: `NoneFree` when some live lease holds
    /// one of them (the store counts the requester's own live lease too),
    /// else the request's other units took them all.
    fn none_free(&self, candidates: &[Unit]) -> Outcome {
        let held = self.leases.values().any(|h| {
            self.alive[h.proc]
                && h.lease
                    .units
                    .iter()
                    .any(|o| candidates.iter().any(|c| collide(o, c)))
        });
        if held {
            Outcome::NoneFree
        } else {
            Outcome::TakenBySelf
        }
    }

    fn log(&mut self, event: &str, id: &str) {
        *self
            .events
            .entry((event.to_string(), id.to_string()))
            .or_default() += 1;
    }

    /// The units a granted acquire holds.
    fn granted_units(call: &Call, picked: &[usize]) -> Vec<Unit> {
        let Call::Acquire { lease, picks, .. } = call else {
            return Vec::new();
        };
        let mut units = lease.units.clone();
        units.extend(
            picks
                .iter()
                .zip(picked)
                .map(|(p, &i)| p.candidates[i].clone()),
        );
        units
    }
}

/// Runs a call on the store.
fn perform(store: &Store, call: &Call) -> Outcome {
    match call {
        Call::Acquire { lease, picks, .. } => {
            let mut reclaimed = Vec::new();
            let mut on_reclaim = |l: &Lease| reclaimed.push(l.holder.container_id.clone());
            let result = if picks.is_empty() {
                store
                    .acquire(lease, &mut on_reclaim)
                    .map(|acquired| (acquired, Vec::new()))
            } else {
                store
                    .acquire_picking(lease, picks, &mut on_reclaim)
                    .map(|t| (t.acquired, t.picked))
            };
            match result {
                Ok((acquired, picked)) => {
                    reclaimed.sort();
                    Outcome::Granted {
                        acquired,
                        picked,
                        reclaimed,
                    }
                }
                Err(e) if reclaimed.is_empty() => refusal(store, e, &lease.holder.container_id),
                Err(e) => Outcome::Unexpected(format!("reclaimed {reclaimed:?}, then: {e}")),
            }
        }
        Call::Release(id) => match store.release(id) {
            Ok(removed) => Outcome::Released(removed),
            Err(e) => refusal(store, e, id),
        },
        Call::Gc => match store.gc() {
            Ok(freed) => {
                let mut ids: Vec<String> =
                    freed.into_iter().map(|l| l.holder.container_id).collect();
                ids.sort();
                Outcome::Collected(ids)
            }
            Err(e) => refusal(store, e, ""),
        },
        Call::Peek {
            fixed,
            picks,
            take_first,
        } => match store.peek(fixed, picks, *take_first) {
            Ok(picked) => Outcome::Peeked(picked),
            Err(e) => refusal(store, e, ""),
        },
    }
}

fn refusal(store: &Store, e: LeaseError, asked: &str) -> Outcome {
    match &e {
        LeaseError::Corrupt { path, id, reason }
            if *path == store.path_of(id)
                && e.to_string()
                    .contains(&format!("{} is corrupt ({reason})", path.display())) =>
        {
            Outcome::Corrupt(BTreeSet::from([id.clone()]))
        }
        LeaseError::Held { holder, .. } => Outcome::Held(BTreeSet::from([holder.clone()])),
        LeaseError::IdInUse { id, .. } if id == asked => Outcome::IdInUse(id.clone()),
        LeaseError::NoneFree { .. } => Outcome::NoneFree,
        LeaseError::TakenBySelf { .. } => Outcome::TakenBySelf,
        LeaseError::BadId(_) => Outcome::BadId,
        _ => Outcome::Unexpected(migward::chain(&e)),
    }
}

/// The holder processes of a case. Dropping it kills and reaps them all.
#[derive(Default)]
struct Procs {
    children: Vec<Child>,
    ids: Vec<ProcessId>,
}

impl Procs {
    fn spawn(&mut self, spawned: &Mutex<Vec<ProcessId>>) -> Result<(), TestCaseError> {
        let child = Command::new("sleep")
            .arg("1000")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| TestCaseError::fail(format!("cannot start sleep: {e}")))?;
        let id = ProcessId::of(child.id());
        self.children.push(child);
        let id = id.ok_or_else(|| TestCaseError::fail("a fresh child has no /proc entry"))?;
        self.ids.push(id);
        spawned.lock().unwrap().push(id);
        Ok(())
    }

    /// SIGKILL, then waits until the child is a zombie without reaping it
    /// (`WNOWAIT`): dead for liveness, its pid still not reusable.
    fn kill(&mut self, i: usize) -> Result<(), TestCaseError> {
        let child = &mut self.children[i];
        child
            .kill()
            .map_err(|e| TestCaseError::fail(format!("kill: {e}")))?;
        let pid = Pid::from_raw(child.id() as i32);
        waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT)
            .map_err(|e| TestCaseError::fail(format!("waitid {pid}: {e}")))?;
        Ok(())
    }

    fn reap(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        self.reap();
    }
}

/// Whether a process is neither running nor a zombie.
fn gone(p: &ProcessId) -> bool {
    liveness::start_time(p.pid) != Some(p.start_time)
}

/// The files of a state dir but the lock, by path, with their bytes.
fn snapshot(state: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for dir in [state.to_path_buf(), state.join("leases")] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            // The lock file is made by the first call, refused or not.
            if path.is_file() && entry.file_name() != ".lock" {
                out.insert(path.clone(), std::fs::read(&path).unwrap_or_default());
            }
        }
    }
    out
}

/// `events.log`, counted by (event, container id).
fn events(state: &Path) -> Result<BTreeMap<(String, String), usize>, TestCaseError> {
    let text = std::fs::read_to_string(state.join("events.log")).unwrap_or_default();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| TestCaseError::fail(format!("events.log line {line:?}: {e}")))?;
        let field = |k: &str| v[k].as_str().unwrap_or("?").to_string();
        *out.entry((field("event"), field("container_id")))
            .or_default() += 1;
    }
    Ok(out)
}

/// Whether the store holds what the model says (leases, corrupt files, the
/// event log).
fn same_state(store: &Store, model: &Model, state: &Path) -> Result<bool, TestCaseError> {
    let (leases, bad) = store
        .scan()
        .map_err(|e| TestCaseError::fail(format!("scan: {e}")))?;
    let bad: BTreeSet<String> = bad
        .iter()
        .filter_map(|e| match e {
            LeaseError::Corrupt { id, .. } => Some(id.clone()),
            _ => None,
        })
        .collect();
    let want: Vec<&Lease> = model.leases.values().map(|h| &h.lease).collect();
    Ok(leases.iter().collect::<Vec<_>>() == want
        && bad == model.corrupt
        && events(state)? == model.events)
}

/// The invariants, on what the store reads back.
fn check(store: &Store, model: &Model, state: &Path) -> Result<(), TestCaseError> {
    let (leases, bad) = store
        .scan()
        .map_err(|e| TestCaseError::fail(format!("scan: {e}")))?;
    // The model and the store agree on who holds what.
    let want: Vec<&Lease> = model.leases.values().map(|h| &h.lease).collect();
    prop_assert_eq!(leases.iter().collect::<Vec<_>>(), want, "leases");
    let mut corrupt = BTreeSet::new();
    for e in &bad {
        match e {
            LeaseError::Corrupt { path, id, .. } if *path == store.path_of(id) => {
                corrupt.insert(id.clone());
            }
            other => prop_assert!(false, "scan reported {other}"),
        }
    }
    prop_assert_eq!(&corrupt, &model.corrupt, "corrupt files");
    let mut ids: BTreeSet<String> = model.leases.keys().cloned().collect();
    ids.extend(model.corrupt.iter().cloned());
    prop_assert_eq!(
        store
            .ids()
            .map_err(|e| TestCaseError::fail(e.to_string()))?,
        ids.into_iter().collect::<Vec<_>>(),
        "ids"
    );
    // Never a list past a corrupt file.
    match store.all() {
        Ok(all) => prop_assert!(model.corrupt.is_empty() && all == leases, "all: {all:?}"),
        Err(LeaseError::Corrupt { id, .. }) => prop_assert!(model.corrupt.contains(&id)),
        Err(e) => prop_assert!(false, "all: {e}"),
    }
    for id in IDS.iter().chain(&["ghost"]) {
        let got = store.get(id);
        match (&got, model.leases.get(*id), model.corrupt.contains(*id)) {
            (Ok(Some(l)), Some(h), false) => prop_assert_eq!(l, &h.lease),
            (Ok(None), None, false) => {}
            (Err(LeaseError::Corrupt { .. }), None, true) => {}
            _ => prop_assert!(false, "get({id}) = {got:?}"),
        }
    }
    // Liveness is the holder process's.
    for h in model.leases.values() {
        prop_assert_eq!(
            h.lease.live(),
            model.alive[h.proc],
            "liveness of {}",
            h.lease.holder.container_id
        );
    }
    // Never two live holders of one unit.
    for (i, a) in leases.iter().enumerate() {
        for b in &leases[i + 1..] {
            if !(a.live() && b.live()) {
                continue;
            }
            for ua in &a.units {
                for ub in &b.units {
                    prop_assert!(
                        !ua.overlaps(ub) && !collide(ua, ub),
                        "{} and {} both live on {ua:?} / {ub:?}",
                        a.holder.container_id,
                        b.holder.container_id
                    );
                }
            }
        }
    }
    // Only lease files and the lock: no temp file left behind.
    if let Ok(entries) = std::fs::read_dir(state.join("leases")) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let lease_file = name
                .strip_suffix(".json")
                .is_some_and(|id| IDS.contains(&id));
            prop_assert!(name == ".lock" || lease_file, "stray file {name}");
        }
    }
    prop_assert_eq!(events(state)?, model.events.clone(), "events.log");
    Ok(())
}

/// A case: its state dir, store, holder processes and model.
struct Case<'s> {
    dir: tempfile::TempDir,
    store: Store,
    procs: Procs,
    model: Model,
    /// Each id's last request, for [`Op::Renew`].
    last: BTreeMap<&'static str, Req>,
    spawned: &'s Mutex<Vec<ProcessId>>,
}

impl Case<'_> {
    fn state(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(&mut self) -> Result<(), TestCaseError> {
        if self.procs.ids.len() < MAX_PROCS {
            self.procs.spawn(self.spawned)?;
            self.model.alive.push(true);
        }
        Ok(())
    }

    fn call(&self, op: &StoreOp, stamp: String) -> Call {
        let pick = |c: &Vec<U>| PickWant {
            profile: "1g.10gb".into(),
            candidates: c.iter().copied().map(unit).collect(),
        };
        match op {
            StoreOp::Acquire(req) => {
                let proc = req.proc % self.procs.ids.len();
                let holder = Holder {
                    container_id: req.id.into(),
                    bundle: None,
                    creator: Some(self.procs.ids[proc]),
                    init: None,
                    runtime_root: ROOTS[req.root].map(|r| self.state().join(r)),
                    pid_file: None,
                    since: stamp,
                    labels: BTreeMap::new(),
                };
                Call::Acquire {
                    lease: Box::new(Lease::new(
                        holder,
                        req.named.iter().copied().map(unit).collect(),
                    )),
                    proc,
                    picks: req.picks.iter().map(pick).collect(),
                }
            }
            StoreOp::Release(id) => Call::Release(id.to_string()),
            StoreOp::Gc => Call::Gc,
            StoreOp::Peek {
                fixed,
                picks,
                take_first,
            } => Call::Peek {
                fixed: fixed.iter().copied().map(unit).collect(),
                picks: picks.iter().map(pick).collect(),
                take_first: *take_first,
            },
        }
    }

    /// One store call, alone.
    fn one(&mut self, op: &StoreOp, step: usize) -> Result<Outcome, TestCaseError> {
        if let StoreOp::Acquire(req) = op {
            self.last.insert(req.id, req.clone());
        }
        let call = self.call(op, format!("2026-01-01T00:{:02}:00Z", step % 60));
        let before = snapshot(self.state());
        let corrupt_before = !self.model.corrupt.is_empty();
        let want = self.model.apply(&call);
        let got = perform(&self.store, &call);
        prop_assert!(
            want.admits(&got),
            "the model says {want:?}, the store did {got:?}"
        );
        let after = snapshot(self.state());
        if got.changes_nothing() {
            prop_assert!(before == after, "{got:?} changed the state dir");
        }
        if let Call::Acquire { lease, .. } = &call {
            // Never a grant over a corrupt file.
            if corrupt_before {
                prop_assert!(
                    matches!(got, Outcome::Corrupt(_)),
                    "granted past a corrupt file"
                );
            }
            let path = self.store.path_of(&lease.holder.container_id);
            if let Outcome::Granted {
                acquired, picked, ..
            } = &got
            {
                // A renewal leaves the file as it is.
                if *acquired == Acquired::Renewed {
                    prop_assert_eq!(before.get(&path), after.get(&path), "renewed file");
                }
                // A dead holder does not outlive the acquire that meets it:
                // nothing but this lease is left on what it holds.
                let mine = Model::granted_units(&call, picked);
                let (leases, _) = self
                    .store
                    .scan()
                    .map_err(|e| TestCaseError::fail(format!("scan: {e}")))?;
                for other in leases {
                    if other.holder.container_id == lease.holder.container_id {
                        continue;
                    }
                    prop_assert!(
                        !other
                            .units
                            .iter()
                            .any(|o| mine.iter().any(|u| u.overlaps(o))),
                        "{} still holds a unit of the grant",
                        other.holder.container_id
                    );
                }
            }
        }
        Ok(got)
    }

    /// Store calls racing from threads, each through its own `Store`.
    fn race(&mut self, ops: &[StoreOp], step: usize) -> Result<Vec<Outcome>, TestCaseError> {
        let calls: Vec<Call> = ops
            .iter()
            .enumerate()
            .map(|(i, op)| self.call(op, format!("2026-01-01T00:{:02}:{i:02}Z", step % 60)))
            .collect();
        let barrier = Barrier::new(calls.len());
        let state = self.state().to_path_buf();
        let got: Vec<Outcome> = std::thread::scope(|s| {
            let handles: Vec<_> = calls
                .iter()
                .map(|call| {
                    let store = Store::new(&state);
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        perform(&store, call)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        // The outcomes and the state left must be those of one serial order.
        let mut serial = None;
        for order in permutations(calls.len()) {
            let mut model = self.model.clone();
            let mut want = vec![Outcome::BadId; calls.len()];
            for &i in &order {
                want[i] = model.apply(&calls[i]);
            }
            if want.iter().zip(&got).all(|(w, g)| w.admits(g))
                && same_state(&self.store, &model, self.state())?
            {
                serial = Some(model);
                break;
            }
        }
        let Some(model) = serial else {
            return Err(TestCaseError::fail(format!(
                "no serial order of the racing calls explains {got:?}"
            )));
        };
        self.model = model;
        // At most one live winner on a unit (a winner released in the same
        // race may be followed by another).
        let released: BTreeSet<&str> = calls
            .iter()
            .filter_map(|call| match call {
                Call::Release(id) => Some(id.as_str()),
                _ => None,
            })
            .collect();
        let winners: Vec<(&Call, Vec<Unit>)> = calls
            .iter()
            .zip(&got)
            .filter_map(|(call, out)| match (call, out) {
                (Call::Acquire { lease, proc, .. }, Outcome::Granted { picked, .. })
                    if self.model.alive[*proc]
                        && !released.contains(lease.holder.container_id.as_str()) =>
                {
                    Some((call, Model::granted_units(call, picked)))
                }
                _ => None,
            })
            .collect();
        for (i, (a, ua)) in winners.iter().enumerate() {
            for (b, ub) in &winners[i + 1..] {
                let (Call::Acquire { lease: la, .. }, Call::Acquire { lease: lb, .. }) = (a, b)
                else {
                    continue;
                };
                if la.holder.container_id != lb.holder.container_id {
                    prop_assert!(
                        !ua.iter().any(|u| ub.iter().any(|v| collide(u, v))),
                        "two live winners: {} and {}",
                        la.holder.container_id,
                        lb.holder.container_id
                    );
                }
            }
        }
        Ok(got)
    }

    fn corrupt(&mut self, id: &str, half: bool) -> Result<(), TestCaseError> {
        let path = self.store.path_of(id);
        let io = |e: std::io::Error| TestCaseError::fail(format!("{}: {e}", path.display()));
        std::fs::create_dir_all(path.parent().unwrap()).map_err(io)?;
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(_) => {
                let lease = Lease::new(
                    Holder {
                        container_id: id.into(),
                        bundle: None,
                        creator: self.procs.ids.first().copied(),
                        init: None,
                        runtime_root: None,
                        pid_file: None,
                        since: "2026-01-01T00:00:00Z".into(),
                        labels: BTreeMap::new(),
                    },
                    vec![unit(universe()[0])],
                );
                serde_json::to_vec_pretty(&lease).unwrap()
            }
        };
        let keep = if half { bytes.len() / 2 } else { 0 };
        std::fs::write(&path, &bytes[..keep]).map_err(io)?;
        self.model.leases.remove(id);
        self.model.corrupt.insert(id.to_string());
        Ok(())
    }

    fn step(&mut self, op: &Op, step: usize) -> Result<Vec<Outcome>, TestCaseError> {
        match op {
            Op::Do(op) => Ok(vec![self.one(op, step)?]),
            Op::Renew { id, proc } => match self.last.get(id) {
                Some(req) => {
                    let req = Req {
                        proc: *proc,
                        ..req.clone()
                    };
                    Ok(vec![self.one(&StoreOp::Acquire(req), step)?])
                }
                None => Ok(Vec::new()),
            },
            Op::Kill(i) => {
                let i = i % self.procs.ids.len();
                if self.model.alive[i] {
                    self.procs.kill(i)?;
                    self.model.alive[i] = false;
                }
                Ok(Vec::new())
            }
            Op::Spawn => self.spawn().map(|()| Vec::new()),
            Op::Corrupt { id, half } => self.corrupt(id, *half).map(|()| Vec::new()),
            Op::Race(ops) => self.race(ops, step),
        }
    }
}

/// A failure's message, without the "Case failed: " of its `Display`.
fn why(e: &TestCaseError) -> String {
    match e {
        TestCaseError::Fail(r) | TestCaseError::Reject(r) => r.message().to_string(),
    }
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for at in 0..=p.len() {
            let mut q = p.clone();
            q.insert(at, n - 1);
            out.push(q);
        }
    }
    out
}

/// Runs `ops` on a fresh store, checking after every step; returns each
/// step's outcomes. Every holder process is reaped before it returns.
fn run_case(
    ops: &[Op],
    spawned: &Mutex<Vec<ProcessId>>,
) -> Result<Vec<Vec<Outcome>>, TestCaseError> {
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(format!("tempdir: {e}")))?;
    let mut case = Case {
        store: Store::new(dir.path()),
        dir,
        procs: Procs::default(),
        model: Model::default(),
        last: BTreeMap::new(),
        spawned,
    };
    for _ in 0..FIRST_PROCS {
        case.spawn()?;
    }
    let mut trace = Vec::new();
    for (step, op) in ops.iter().enumerate() {
        let outcomes = case
            .step(op, step)
            .and_then(|o| check(&case.store, &case.model, case.state()).map(|()| o))
            .map_err(|e| TestCaseError::fail(format!("step {step} {op:?}: {}", why(&e))))?;
        trace.push(outcomes);
    }
    case.procs.reap();
    for p in &case.procs.ids {
        prop_assert!(gone(p), "holder {} outlived its case", p.pid);
    }
    Ok(trace)
}

/// Runs `ops` and fails on the first broken invariant.
fn run(ops: &[Op]) -> Vec<Vec<Outcome>> {
    let spawned = Mutex::new(Vec::new());
    let trace = run_case(ops, &spawned).unwrap_or_else(|e| panic!("{}", why(&e)));
    assert_no_leftover(&spawned);
    trace
}

fn assert_no_leftover(spawned: &Mutex<Vec<ProcessId>>) {
    let spawned = spawned.lock().unwrap();
    let left: Vec<u32> = spawned.iter().filter(|p| !gone(p)).map(|p| p.pid).collect();
    assert!(
        left.is_empty(),
        "holder processes left running or unreaped: {left:?}"
    );
}

#[test]
fn random_interleavings_keep_one_live_holder_per_unit() {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128);
    let mut runner = TestRunner::new(Config {
        cases,
        // A failure is printed below as the sequence to paste into a test.
        failure_persistence: None,
        max_shrink_iters: 2048,
        ..Config::default()
    });
    let spawned = Mutex::new(Vec::new());
    let result = runner.run(&prop::collection::vec(op_strategy(), 1..=32), |ops| {
        run_case(&ops, &spawned).map(|_| ())
    });
    assert_no_leftover(&spawned);
    match result {
        Ok(()) => {}
        Err(TestError::Fail(why, ops)) => panic!("{why}\nminimal failing steps:\n{ops:#?}"),
        Err(e) => panic!("{e}"),
    }
}

fn acquire(id: &'static str, proc: usize, named: &[U]) -> Op {
    Op::Do(StoreOp::Acquire(Req {
        id,
        proc,
        named: named.to_vec(),
        picks: Vec::new(),
        root: 0,
    }))
}

const G0_GI1: U = U {
    gpu: 0,
    gi: Some(1),
    ci: None,
};
const G0_UPPER_WHOLE: U = U {
    gpu: 1,
    gi: None,
    ci: None,
};

#[test]
fn a_killed_holder_is_reclaimed_by_the_next_acquire() {
    let trace = run(&[
        acquire("a", 0, &[G0_GI1]),
        acquire("b", 1, &[G0_UPPER_WHOLE]),
        Op::Kill(0),
        acquire("b", 1, &[G0_UPPER_WHOLE]),
    ]);
    assert_eq!(trace[1], [Outcome::Held(BTreeSet::from(["a".into()]))]);
    assert_eq!(
        trace[3],
        [Outcome::Granted {
            acquired: Acquired::New,
            picked: vec![],
            reclaimed: vec!["a".into()],
        }]
    );
}

#[test]
fn a_corrupt_file_refuses_until_released() {
    let trace = run(&[
        acquire("a", 0, &[G0_GI1]),
        Op::Corrupt {
            id: "a",
            half: true,
        },
        acquire("b", 1, &[U { gpu: 2, ..G0_GI1 }]),
        Op::Do(StoreOp::Release("ghost")),
        Op::Do(StoreOp::Release("a")),
        acquire("b", 1, &[G0_GI1]),
    ]);
    assert_eq!(trace[2], [Outcome::Corrupt(BTreeSet::from(["a".into()]))]);
    assert_eq!(trace[3], [Outcome::Released(false)]);
    assert_eq!(trace[4], [Outcome::Released(true)]);
    assert!(matches!(trace[5][0], Outcome::Granted { .. }));
}

#[test]
fn racing_acquires_on_one_unit_have_one_winner() {
    let racer = |id| {
        StoreOp::Acquire(Req {
            id,
            proc: 0,
            named: vec![G0_GI1],
            picks: Vec::new(),
            root: 0,
        })
    };
    for _ in 0..8 {
        let trace = run(&[Op::Race(vec![racer("a"), racer("b"), racer("c")])]);
        let won = trace[0]
            .iter()
            .filter(|o| matches!(o, Outcome::Granted { .. }))
            .count();
        assert_eq!(won, 1, "{trace:?}");
    }
}

#[test]
fn the_model_collides_as_the_store_does() {
    let all: Vec<Unit> = universe().into_iter().map(unit).collect();
    for a in &all {
        for b in &all {
            assert_eq!(a.overlaps(b), collide(a, b), "{a:?} / {b:?}");
        }
    }
}
