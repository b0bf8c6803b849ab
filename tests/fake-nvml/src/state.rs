//! The process-wide NVML state: the loaded topology and the init count.
//!
//! Real NVML counts `nvmlInit*` calls and tears down on the matching last
//! `nvmlShutdown`; so does the fake. The topology is read on the first init
//! only, so every handle given out stays valid until the last shutdown.

use crate::{ret, Ret};
use migward::topology::Topology;
use std::ffi::{c_void, CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

/// A path or built-in topology name; wins over `topology.toml` beside the library.
pub const TOPOLOGY_ENV: &str = "MIGWARD_FAKE_NVML_TOPOLOGY";
/// The file looked for next to the loaded library when [`TOPOLOGY_ENV`] is unset.
pub const TOPOLOGY_FILE: &str = "topology.toml";
/// Next to the library: the directory holding the device nodes, one line
/// (`migward simulate` writes `<host>/dev` next to the host's copy); without
/// it, `/dev`, as inside a container.
pub const DEV_ROOT_FILE: &str = "dev-root";

struct State {
    inits: u32,
    topology: Option<Arc<Topology>>,
}

static STATE: Mutex<State> = Mutex::new(State {
    inits: 0,
    topology: None,
});

fn lock() -> MutexGuard<'static, State> {
    // A panic while holding the lock leaves plain data behind: keep going.
    STATE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The served topology, or `UNINITIALIZED` outside init/shutdown.
pub fn topology() -> Result<Arc<Topology>, Ret> {
    lock().topology.clone().ok_or(ret::UNINITIALIZED)
}

/// `nvmlInit*`: loads the topology on the first call, counts the others.
pub fn init() -> Result<(), Ret> {
    let mut state = lock();
    if state.topology.is_none() {
        match load() {
            Ok(topology) => state.topology = Some(Arc::new(topology)),
            Err(message) => {
                // One line a person can act on, whatever the parser said (STYLE.md).
                eprintln!("fake nvml: {}", message.replace('\n', " "));
                return Err(ret::UNKNOWN);
            }
        }
    }
    state.inits = state.inits.saturating_add(1);
    Ok(())
}

/// `nvmlShutdown`: forgets the topology when the last init is undone.
pub fn shutdown() -> Result<(), Ret> {
    let mut state = lock();
    if state.inits == 0 {
        return Err(ret::UNINITIALIZED);
    }
    state.inits -= 1;
    if state.inits == 0 {
        state.topology = None;
    }
    Ok(())
}

/// The topology to serve. One named by [`TOPOLOGY_ENV`] is served whole (a
/// library under test). One read beside the library is a simulated driver,
/// which behaves like the real one: it shows only what this process may
/// open (see [`visible`]).
fn load() -> Result<Topology, String> {
    if let Some(name) = std::env::var_os(TOPOLOGY_ENV).filter(|v| !v.is_empty()) {
        let name = name.to_string_lossy();
        // Errors name the file (or the unknown name) already.
        return Topology::load(&name).map_err(|e| e.to_string());
    }
    let dir = own_dir().ok_or_else(|| {
        format!(
            "cannot find where this library was loaded from: set {TOPOLOGY_ENV} to a topology file"
        )
    })?;
    let path = dir.join(TOPOLOGY_FILE);
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "cannot read topology file {origin}: {e} (write it next to the library, or set {TOPOLOGY_ENV} to a topology file)"
        )
    })?;
    let topology = Topology::parse(&text, &origin).map_err(|e| e.to_string())?;
    let dev_root = std::fs::read_to_string(dir.join(DEV_ROOT_FILE))
        .map(|s| PathBuf::from(s.trim()))
        .unwrap_or_else(|_| PathBuf::from("/dev"));
    Ok(visible(topology, &dev_root))
}

/// Whether this process may open the node at `path`. Without a driver, a
/// char node the device cgroup allows opens with ENXIO, a denied one fails
/// with EPERM, a missing one with ENOENT (DESIGN.md); a plain file standing
/// in for a node (a simulation written without root) opens.
fn may_open(path: &std::path::Path) -> bool {
    match std::fs::File::open(path) {
        Ok(_) => true,
        Err(e) => e.raw_os_error() == Some(libc::ENXIO),
    }
}

/// What a driver shows a process: a GPU whose `/dev/nvidia<minor>` it may
/// open, and of it the MIG devices whose GI and CI capability nodes it may
/// open too (minors by the driver's table, `simulate::gi_cap_minor`). GPUs are numbered in the order they remain, as NVML
/// numbers the GPUs a container sees.
fn visible(mut topology: Topology, dev_root: &std::path::Path) -> Topology {
    topology
        .gpus
        .retain(|g| may_open(&dev_root.join(format!("nvidia{}", g.minor))));
    for (index, gpu) in topology.gpus.iter_mut().enumerate() {
        gpu.index = index as u32;
        let minor = gpu.minor;
        let cap = |m: u32| may_open(&dev_root.join(format!("nvidia-caps/nvidia-cap{m}")));
        gpu.instances.retain_mut(|gi| {
            let g = migward::simulate::gi_cap_minor(minor, gi.gi);
            if !cap(g) {
                return false;
            }
            gi.compute_instances.retain(|ci| cap(g + 1 + ci.ci));
            !gi.compute_instances.is_empty()
        });
    }
    topology
}

/// The directory of the file this library was loaded from (`dladdr` on one
/// of its own functions), as the dynamic loader recorded it.
fn own_dir() -> Option<PathBuf> {
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    let anchor = own_dir as fn() -> Option<PathBuf> as *const c_void;
    // SAFETY: dladdr only reads the address and fills `info`.
    let found = unsafe { libc::dladdr(anchor, info.as_mut_ptr()) };
    if found == 0 {
        return None;
    }
    // SAFETY: dladdr succeeded, so `info` is initialised.
    let info = unsafe { info.assume_init() };
    if info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname is a NUL-terminated string owned by the loader.
    let name = unsafe { CStr::from_ptr(info.dli_fname) };
    let path = PathBuf::from(OsStr::from_bytes(name.to_bytes()));
    let path = std::fs::canonicalize(&path).unwrap_or(path);
    path.parent().map(PathBuf::from)
}
