//! Shared by the fuzz targets in `fuzz_targets/` (run them with
//! `scripts/fuzz.sh`): a scratch directory per fuzzing process, the
//! simulated hosts of the built-in topologies, the request policies a host
//! may run with, and the JSON comparisons behind the spec-edit properties
//! ("an edit changes only the fields it names", STYLE.md "Editing specs").
//!
//! Every target reads input an attacker may write: a container's
//! config.json and annotations (the image or the pod author), the OCI state
//! on a hook's stdin, CDI specs, lease files and host files (a root-owned
//! but foreign format). A panic in the shim or the hook fails a container
//! start, so every one found is a finding.

use migward::config::{Config, DriverMode};
use migward::inventory::procfs::HostFiles;
use migward::inventory::{Gpu, Inventory, TopologyInventory};
use migward::request::{NodeMajors, RequestPolicy, Untrusted};
use migward::topology::{Topology, BUILTIN_NAMES};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The majors a simulated host (`migward simulate`) lists in `/proc/devices`.
pub const NODE_MAJORS: NodeMajors = NodeMajors {
    nvidia: 195,
    caps: Some(508),
};
/// Every NVIDIA major of a simulated host: nvidia, caps, uvm.
pub const ALL_MAJORS: [u64; 3] = [195, 508, 511];

/// A directory of this process's own, removed when the process exits
/// normally (libFuzzer's `-max_total_time` ends with `exit`). A crash
/// leaves it behind, for the reproducer. On `/dev/shm` where there is one:
/// several targets write files for every input, and the install target
/// fsyncs them.
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    extern "C" fn remove() {
        if let Some(dir) = DIR.get() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    DIR.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("migward-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the scratch dir");
        // SAFETY: registers a plain function; it runs once, at exit.
        unsafe {
            libc::atexit(remove);
        }
        dir
    })
}

/// A simulated GPU host: a built-in topology, its GPUs as NVML would list
/// them, and its host tree (`/proc/devices`, `mig-minors`, ...) on disk.
pub struct SimHost {
    pub name: &'static str,
    pub topology: Topology,
    pub gpus: Vec<Gpu>,
    pub root: PathBuf,
    pub files: HostFiles,
}

/// The simulated host of built-in topology `n` (modulo their number),
/// written under [`scratch`] on first use.
pub fn sim_host(n: usize) -> &'static SimHost {
    static HOSTS: OnceLock<Vec<SimHost>> = OnceLock::new();
    let hosts = HOSTS.get_or_init(|| {
        BUILTIN_NAMES
            .iter()
            .map(|&name| {
                let topology = Topology::load(name).expect("built-in topology");
                let root = scratch().join("hosts").join(name);
                migward::simulate::write_host_tree(&topology, &root).expect("write host tree");
                let gpus = TopologyInventory(topology.clone())
                    .gpus()
                    .expect("topology inventory");
                SimHost {
                    name,
                    topology,
                    gpus,
                    files: HostFiles::new(&root),
                    root,
                }
            })
            .collect()
    });
    &hosts[n % hosts.len()]
}

/// A config for `host` that can never reach a real GPU, driver or lease:
/// NVML at a path that does not exist, state and CDI dirs in [`scratch`].
pub fn config(host: &SimHost) -> Config {
    Config {
        host_root: host.root.clone(),
        state_dir: scratch().join("state"),
        nvml_library: "/nonexistent/libnvidia-ml.so.1".into(),
        driver: DriverMode::None,
        cdi_dirs: vec![scratch().join("no-cdi")],
        ..Config::default()
    }
}

/// The CDI kinds of the default config.
pub fn cdi_kinds() -> &'static [String] {
    static KINDS: OnceLock<Vec<String>> = OnceLock::new();
    KINDS.get_or_init(|| Config::default().cdi_kinds)
}

/// The request policies worth telling apart: the default (every source
/// trusted, engine nodes leased), env and annotation distrusted (ignored,
/// then refused), and engine nodes not a request.
pub fn policies() -> [RequestPolicy<'static>; 4] {
    let base = RequestPolicy {
        annotation: "migward/devices",
        env_requests: true,
        annotation_requests: true,
        untrusted: Untrusted::Ignore,
        cdi_kinds: cdi_kinds(),
        engine_nodes: Some(NODE_MAJORS),
    };
    let distrust = |untrusted| RequestPolicy {
        env_requests: false,
        annotation_requests: false,
        untrusted,
        ..base.clone()
    };
    [
        base.clone(),
        distrust(Untrusted::Ignore),
        distrust(Untrusted::Refuse),
        RequestPolicy {
            engine_nodes: None,
            ..base.clone()
        },
    ]
}

/// Fails unless `message` is one line without control characters: every
/// error about untrusted input shows the value escaped and cut (request
/// `shown`), so an image cannot forge log lines.
pub fn assert_one_line(what: &str, message: &str) {
    assert!(
        !message.chars().any(char::is_control),
        "{what}: message holds a control character: {message:?}"
    );
}

/// `v` without what an edit of the fields at `pointers` may change. An edit
/// reaches its field key by key and replaces a step that is missing or not
/// an object (`spec::edit`'s `object_at`), so the first such step in
/// `before` is what it touches; the field itself otherwise.
pub fn outside(v: &Value, before: &Value, pointers: &[&str]) -> Value {
    let mut out = v.clone();
    for pointer in pointers {
        // RFC 6901 tokens: `~1` is `/`, `~0` is `~`.
        let tokens: Vec<String> = pointer
            .split('/')
            .skip(1)
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect();
        let mut cur = before;
        let mut cut = tokens.len();
        for (i, t) in tokens.iter().enumerate().take(tokens.len() - 1) {
            match cur.get(t.as_str()) {
                Some(next) if next.is_object() => cur = next,
                _ => {
                    cut = i + 1;
                    break;
                }
            }
        }
        remove_at(&mut out, &tokens[..cut]);
    }
    out
}

/// Removes the value at `tokens`, keeping the order of the keys around it.
fn remove_at(v: &mut Value, tokens: &[String]) {
    let Some((last, parents)) = tokens.split_last() else {
        return;
    };
    let mut cur = v;
    for t in parents {
        match cur.get_mut(t.as_str()) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(obj) = cur.as_object_mut() {
        obj.shift_remove(last.as_str());
    }
}

/// Serialized with key order: `Value`'s `==` ignores the order of keys,
/// and an edit must keep it (STYLE.md).
pub fn text(v: &Value) -> String {
    serde_json::to_string(v).expect("a Value serializes")
}

/// Whether `sub` is `full` with some entries left out, order kept.
pub fn is_subsequence(sub: &[Value], full: &[Value]) -> bool {
    let mut rest = full.iter();
    sub.iter().all(|s| rest.any(|f| f == s))
}

/// The array at `pointer`, or an empty slice.
pub fn array<'v>(v: &'v Value, pointer: &str) -> &'v [Value] {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Fails unless `v` reads back as itself after `spec::write_atomic`'s
/// serialization, key order and every float bit included (the root crate's
/// serde_json has `float_roundtrip`: fuzz/README.md, finding 2).
pub fn assert_reads_back(what: &str, v: &Value) {
    let bytes = serde_json::to_vec(v).expect("a Value serializes");
    let back: Value = serde_json::from_slice(&bytes).expect("serde_json reads what it wrote");
    assert!(
        text(v) == text(&back) && *v == back,
        "{what}: the spec does not read back as written:\nheld: {}\nread: {}",
        text(v),
        text(&back)
    );
}

/// Fails unless `after` equals `before` outside the fields at `pointers`
/// (see [`outside`]), key order included.
pub fn assert_only_touched(what: &str, before: &Value, after: &Value, pointers: &[&str]) {
    let (b, a) = (
        text(&outside(before, before, pointers)),
        text(&outside(after, before, pointers)),
    );
    assert!(
        a == b,
        "{what} changed a field it does not name:\nbefore: {b}\nafter:  {a}"
    );
}

/// Fails unless editing `once` (already edited) again changes nothing.
/// `before` with `edit` applied, checked: nothing outside the fields at
/// `touched` changed ([`assert_only_touched`]), and a second application
/// changes nothing ([`assert_idempotent`]).
pub fn edited(what: &str, before: &Value, touched: &[&str], edit: impl Fn(&mut Value)) -> Value {
    let mut once = before.clone();
    edit(&mut once);
    assert_only_touched(what, before, &once, touched);
    assert_idempotent(what, &once, edit);
    once
}

pub fn assert_idempotent(what: &str, once: &Value, edit: impl FnOnce(&mut Value)) {
    let mut twice = once.clone();
    edit(&mut twice);
    assert!(
        text(&twice) == text(once),
        "{what} is not idempotent:\nonce:  {}\ntwice: {}",
        text(once),
        text(&twice)
    );
}

/// Real plans of the simulated hosts, with the request each answers: a
/// profile on the H100 (a MIG device), and a whole A100 with MIG active
/// (its node and every cap on it).
pub fn fixed_plans() -> &'static [(migward::request::Request, migward::plan::Plan)] {
    use migward::request::{Request, Source};
    static PLANS: OnceLock<Vec<(Request, migward::plan::Plan)>> = OnceLock::new();
    PLANS.get_or_init(|| {
        [
            (1, Source::Annotation("migward/devices".into()), "1g.10gb"),
            (0, Source::Env("NVIDIA_VISIBLE_DEVICES"), "0"),
        ]
        .into_iter()
        .map(|(host, source, value)| {
            let host = sim_host(host);
            let request = Request::parse(source, value)
                .expect("a valid request")
                .expect("asks for a GPU");
            let plan = migward::plan::plan(&request, &host.gpus, &host.files)
                .expect("the simulated host plans it");
            (request, plan)
        })
        .collect()
    })
}

/// Common CDI edits as NVIDIA's spec has them: env, a library mount, a
/// hook, the shared nodes, and nodes that open a GPU (which `apply_cdi`
/// must leave to the plan).
pub fn fixed_cdi_edits() -> &'static migward::driver::cdi::CommonEdits {
    use serde_json::json;
    static EDITS: OnceLock<migward::driver::cdi::CommonEdits> = OnceLock::new();
    EDITS.get_or_init(|| {
        let node = |v: Value| serde_json::from_value(v).expect("a CDI device node");
        migward::driver::cdi::CommonEdits {
            file: "/etc/cdi/nvidia.yaml".into(),
            env: vec![
                "NVIDIA_VISIBLE_DEVICES=void".into(),
                "A=1".into(),
                "A=2".into(),
            ],
            nodes: vec![
                node(json!({"path": "/dev/nvidiactl", "type": "c", "major": 195, "minor": 255})),
                node(json!({"path": "/dev/nvidia-uvm", "type": "c", "major": 511, "minor": 0, "permissions": "rw"})),
                node(json!({"path": "/dev/nvidia-modeset"})),
                node(json!({"path": "/dev/nvidia0", "type": "c", "major": 195, "minor": 0})),
                node(json!({"path": "/dev/nvidia-caps/nvidia-cap12", "type": "c", "major": 508, "minor": 12})),
            ],
            mounts: vec![json!({
                "destination": "/usr/bin/nvidia-smi",
                "source": "/usr/bin/nvidia-smi",
                "type": "bind",
                "options": ["ro", "nosuid", "nodev", "rbind", "rprivate"],
            })],
            hooks: vec![(
                "createContainer".into(),
                json!({
                    "path": "/usr/bin/nvidia-cdi-hook",
                    "args": ["nvidia-cdi-hook", "update-ldcache"],
                    "env": [migward::driver::HOOK_PATH_ENV],
                }),
            )],
        }
    })
}
