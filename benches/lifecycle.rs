//! What migward adds to a container start, against plain runc, in one run.
//!
//! `cargo bench --bench lifecycle -- [--runs N] [--smoke] [--only-containerd]`
//! (via `scripts/bench.sh`, which installs runc and builds the fake NVML
//! library first). Prints a markdown report. Variants are interleaved (A B
//! C D, B C D A, …) so that machine noise hits all of them alike.
//! `--only-containerd` stops after the first table (the containerd-style
//! lifecycle, 4 × N rounds).

use migward::config::Config;
use migward::inventory::procfs::HostFiles;
use migward::inventory::{Inventory, NvmlInventory};
use migward::lease::liveness::ProcessId;
use migward::lease::{Holder, Lease, Store, Unit};
use migward::request::{Request, Source};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod util;

use util::config_with;

const MIGWARD: &str = env!("CARGO_BIN_EXE_migward");

struct Stats {
    samples: Vec<Duration>,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            samples: Vec::new(),
        }
    }
    fn pct(&self, p: f64) -> Duration {
        let mut s = self.samples.clone();
        s.sort();
        let rank = ((p / 100.0) * s.len() as f64).ceil().max(1.0) as usize;
        s[rank.min(s.len()) - 1]
    }
    fn median(&self) -> Duration {
        self.pct(50.0)
    }
}

/// Median over rounds of `a[i] - b[i]`, in ms.
fn paired_ms(a: &Stats, b: &Stats) -> f64 {
    let mut diffs: Vec<f64> = a
        .samples
        .iter()
        .zip(&b.samples)
        .map(|(x, y)| x.as_secs_f64() - y.as_secs_f64())
        .collect();
    diffs.sort_by(|x, y| x.partial_cmp(y).unwrap());
    diffs[diffs.len() / 2] * 1000.0
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn run_ok(cmd: &mut Command, what: &str) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn timed(cmd: &mut Command, what: &str) -> Duration {
    let start = Instant::now();
    run_ok(cmd, what);
    start.elapsed()
}

fn busybox_rootfs(dir: &Path) -> PathBuf {
    let rootfs = dir.join("rootfs");
    for d in ["bin", "dev", "proc", "sys", "tmp", "etc"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
        .expect("busybox-static: run scripts/install-deps.sh");
    for app in ["sh", "true"] {
        let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(app));
    }
    rootfs
}

fn bundle(dir: &Path, name: &str, rootfs: &Path, env: &[String]) -> PathBuf {
    let b = dir.join(name);
    std::fs::create_dir_all(&b).unwrap();
    run_ok(
        Command::new("runc").arg("spec").current_dir(&b),
        "runc spec",
    );
    let path = b.join("config.json");
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    cfg["process"]["terminal"] = json!(false);
    cfg["process"]["args"] = json!(["true"]);
    cfg["root"]["path"] = json!(rootfs);
    let envs = cfg["process"]["env"].as_array_mut().unwrap();
    for e in env {
        envs.push(json!(e));
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    b
}

/// Runs `cmd` with `input` on stdin; stdout is dropped, stderr kept.
fn output_with_stdin(cmd: &mut Command, input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Peak RSS from the stderr of a `/usr/bin/time -v` run.
fn max_rss_kb(out: &std::process::Output) -> u64 {
    let text = String::from_utf8_lossy(&out.stderr);
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no RSS in /usr/bin/time output: {text}"))
}

/// The lifecycle table: containerd-style verbs (`util::verbs`), each
/// variant against its reference in the same round.
fn containerd_lifecycle(
    d: &Path,
    runs: usize,
    shim: &Path,
    config: &Path,
    state_dir: &Path,
    [plain, byhand, mig]: [&Path; 3],
    mig_pristine: &[u8],
) {
    use util::verbs::{self, Runtime, VERBS};
    let runc = verbs::which("runc").expect("runc on PATH");
    let plain_rt = |bin: &Path| Runtime {
        bin: bin.to_path_buf(),
        env: vec![],
    };
    let migward = Runtime {
        bin: shim.to_path_buf(),
        env: vec![("MIGWARD_CONFIG".into(), config.to_path_buf())],
    };
    use verbs::Floor;
    let floor = |name: &str, kind| plain_rt(&verbs::exec_only_shim(d, name, &runc, kind));
    // (name, runtime, bundle, index of the reference variant)
    let mut variants: Vec<(String, Runtime, &Path, usize)> = vec![
        ("runc, no devices".into(), plain_rt(&runc), plain, 0),
        ("migward, no GPU request".into(), migward.clone(), plain, 0),
        (
            "static C exec-only shim, then runc (the floor of any exec shim)".into(),
            floor("exec-only-runc", Floor::StaticC),
            plain,
            0,
        ),
        (
            "dynamic C exec-only shim (the floor of a shim that can load NVML)".into(),
            floor("exec-only-runc-dyn", Floor::DynamicC),
            plain,
            0,
        ),
        (
            "Rust exec-only shim (the floor of a Rust shim that can load NVML)".into(),
            floor("exec-only-runc-rs", Floor::Rust),
            plain,
            0,
        ),
    ];
    let by_hand = variants.len();
    variants.extend([
        (
            "runc, the MIG instance's nodes and rules by hand".into(),
            plain_rt(&runc),
            byhand,
            by_hand,
        ),
        ("migward, MIG request".into(), migward, mig, by_hand),
    ]);
    // On a host with NVIDIA's toolkit, its runtime in the same run.
    if let Some(nvidia) = verbs::which("nvidia-container-runtime") {
        variants.push((
            format!("{}, no GPU request", nvidia.display()),
            plain_rt(&nvidia),
            plain,
            0,
        ));
    }
    let root = d.join("runc-verbs");
    let mut verb_stats: Vec<[Stats; 4]> = variants
        .iter()
        .map(|_| std::array::from_fn(|_| Stats::new()))
        .collect();
    verbs::subreaper(true);
    for i in 0..runs {
        // Each round starts at the next variant, so none always follows
        // the same one (a delete's cgroup teardown finishes after it
        // returns, and would land on whoever comes next).
        for k in 0..variants.len() {
            let v = (i + k) % variants.len();
            let (_, rt, bundle, _) = &variants[v];
            if *bundle == mig {
                std::fs::write(mig.join("config.json"), mig_pristine).unwrap();
            }
            let took = verbs::life(rt, &root, bundle, &format!("c{v}-{i}"));
            for (stats, t) in verb_stats[v].iter_mut().zip(took) {
                stats.samples.push(t);
            }
        }
    }
    verbs::subreaper(false);
    assert!(
        Store::new(state_dir).all().unwrap().is_empty(),
        "delete left a lease behind"
    );
    let whole: Vec<Stats> = verb_stats
        .iter()
        .map(|per_verb| Stats {
            samples: (0..runs)
                .map(|i| per_verb.iter().map(|s| s.samples[i]).sum())
                .collect(),
        })
        .collect();
    println!(
        "## A container's whole life as containerd drives it (busybox `true`), {runs} interleaved runs each\n"
    );
    println!("`create --pid-file`, `start`, wait for the init to exit (the bench is its subreaper, as containerd's shim is), `delete`; every verb through the runtime under test.\n");
    println!("| variant | median ms | p90 ms | reference | ratio to reference (medians) | added over reference, paired median ms |");
    println!("|---|---|---|---|---|---|");
    for (v, (name, _, _, r)) in variants.iter().enumerate() {
        println!(
            "| {name} | {} | {} | {} | {:.3} | {:+.2} |",
            ms(whole[v].median()),
            ms(whole[v].pct(90.0)),
            if *r == v { "itself" } else { &variants[*r].0 },
            whole[v].median().as_secs_f64() / whole[*r].median().as_secs_f64(),
            paired_ms(&whole[v], &whole[*r])
        );
    }
    println!("\nPer verb, median ms:\n");
    println!("| variant | {} |", VERBS.join(" | "));
    println!("|---|{}", "---|".repeat(VERBS.len()));
    for (v, (name, _, _, _)) in variants.iter().enumerate() {
        let cells: Vec<String> = verb_stats[v].iter().map(|s| ms(s.median())).collect();
        println!("| {name} | {} |", cells.join(" | "));
    }
    println!("\nPer verb, added over the reference (paired median ms):\n");
    println!("| variant | {} |", VERBS.join(" | "));
    println!("|---|{}", "---|".repeat(VERBS.len()));
    for (v, (name, _, _, r)) in variants.iter().enumerate() {
        if *r == v {
            continue;
        }
        let cells: Vec<String> = (0..VERBS.len())
            .map(|k| format!("{:+.2}", paired_ms(&verb_stats[v][k], &verb_stats[*r][k])))
            .collect();
        println!("| {name} | {} |", cells.join(" | "));
    }
    println!();
}

fn main() {
    let (smoke, runs) = util::runs(60);

    // Bundles and leases live on tmpfs, as they do on a production host
    // (containerd and docker keep bundles under /run, migward its leases in
    // /run/migward); this machine's /run and /tmp are ext4.
    let dir = tempfile::Builder::new()
        .prefix("mwbench")
        .tempdir_in("/dev/shm")
        .unwrap();
    let d = dir.path();
    let fake = Path::new(MIGWARD).with_file_name("libnvidia_ml_fake.so");
    assert!(
        fake.is_file(),
        "{} missing: cargo build --release --workspace",
        fake.display()
    );
    run_ok(
        Command::new(MIGWARD)
            .args(["simulate", "h100-7x1g"])
            .arg(d.join("sim"))
            .arg("--nvml-lib")
            .arg(&fake),
        "simulate",
    );
    let shm = &dir;
    let config_path = d.join("bench.toml");
    let sim_config = std::fs::read_to_string(d.join("sim/config.toml")).unwrap();
    let with_state = config_with(&sim_config, "state_dir", &shm.path().join("state"));
    // The MIG path as before the driver: nodes, rules, env, lease.
    std::fs::write(
        &config_path,
        config_with(&with_state, "driver", Path::new("none")),
    )
    .unwrap();
    // The MIG path with the driver's files from the simulated CDI spec.
    let driver_config = d.join("bench-driver.toml");
    std::fs::write(
        &driver_config,
        config_with(&with_state, "driver", Path::new("cdi")),
    )
    .unwrap();
    let config = Config::load(Some(&config_path)).unwrap();
    // The shim as engines run it: its own binary (packaging installs it).
    let shim = PathBuf::from(env!("CARGO_BIN_EXE_migward-runtime"));
    let uuid = NvmlInventory::new(&config.nvml_library).gpus().unwrap()[0].mig_devices[0]
        .uuid
        .clone();
    let rootfs = busybox_rootfs(d);
    let plain = bundle(d, "plain", &rootfs, &[]);
    let mig = bundle(d, "mig", &rootfs, &[format!("CUDA_VISIBLE_DEVICES={uuid}")]);
    let mig_pristine = std::fs::read(mig.join("config.json")).unwrap();
    // The same nodes and rules, by hand (what `migward resolve` prints).
    let byhand = bundle(
        d,
        "byhand",
        &rootfs,
        &[format!("NVIDIA_VISIBLE_DEVICES={uuid}")],
    );
    {
        let out = Command::new(MIGWARD)
            .env("MIGWARD_CONFIG", &config_path)
            .args(["resolve", "--json", &uuid])
            .output()
            .unwrap();
        let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
        let path = byhand.join("config.json");
        let mut cfg: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let devices: Vec<Value> = plan["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| json!({"path": n["path"], "type": "c", "major": n["major"], "minor": n["minor"], "fileMode": n["mode"], "uid": 0, "gid": 0}))
            .collect();
        cfg["linux"]["devices"] = json!(devices);
        for r in plan["rules"].as_array().unwrap() {
            cfg["linux"]["resources"]["devices"]
                .as_array_mut()
                .unwrap()
                .push(r.clone());
        }
        std::fs::write(&path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    }
    // The same spec with the CDI spec's common edits by hand as well: what
    // runc pays for the driver's mounts and hooks itself.
    let byhand_driver = bundle(
        d,
        "byhand-driver",
        &rootfs,
        &[format!("NVIDIA_VISIBLE_DEVICES={uuid}")],
    );
    {
        let edits = migward::driver::cdi::read(&d.join("sim/cdi/nvidia.yaml"))
            .unwrap()
            .unwrap();
        let mut cfg: Value =
            serde_json::from_slice(&std::fs::read(byhand.join("config.json")).unwrap()).unwrap();
        let majors = migward::request::NodeMajors {
            nvidia: 195,
            caps: Some(migward::simulate::CAPS_MAJOR),
        };
        migward::driver::apply_cdi(&mut cfg, &edits, &config.host_root, majors, &mut |w| {
            panic!("{w}")
        });
        let path = byhand_driver.join("config.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    }
    let root = d.join("runc");

    // 0. A container's whole life the way containerd drives the runtime.
    // Four times the rounds: a life's p90 is ~10 ms above its median, and
    // at 60 rounds the paired medians of one variant moved by ±3 ms from
    // run to run; at 200 they agree within 0.5 ms.
    containerd_lifecycle(
        d,
        if smoke { runs } else { 4 * runs },
        &shim,
        &config_path,
        &config.state_dir,
        [&plain, &byhand, &mig],
        &mig_pristine,
    );
    if std::env::args().any(|a| a == "--only-containerd") {
        return;
    }

    // 1. Full lifecycle, interleaved.
    let names = [
        "runc run (plain)",
        "migward-runtime run, no GPU request (pass-through)",
        "migward-runtime run, MIG request (driver = none)",
        "runc run, same nodes and rules by hand",
        "migward-runtime run, MIG request, driver from the CDI spec",
        "runc run, same nodes, rules and CDI driver edits by hand",
    ];
    let mut life: Vec<Stats> = (0..names.len()).map(|_| Stats::new()).collect();
    for i in 0..runs {
        for (v, stats) in life.iter_mut().enumerate() {
            let id = format!("b{v}-{i}");
            let (bin, b): (&Path, &Path) = match v {
                0 => (Path::new("runc"), &plain),
                1 => (&shim, &plain),
                2 | 4 => {
                    std::fs::write(mig.join("config.json"), &mig_pristine).unwrap();
                    (&shim, &mig)
                }
                3 => (Path::new("runc"), &byhand),
                _ => (Path::new("runc"), &byhand_driver),
            };
            let config = if v == 4 { &driver_config } else { &config_path };
            let mut cmd = Command::new(bin);
            cmd.env("MIGWARD_CONFIG", config)
                .arg("--root")
                .arg(&root)
                .args(["run", "--bundle"])
                .arg(b)
                .arg(&id);
            stats.samples.push(timed(&mut cmd, names[v]));
        }
    }
    assert!(
        Store::new(&config.state_dir).all().unwrap().is_empty(),
        "a lease was left behind"
    );

    println!("## Container lifecycle (busybox `true`), {runs} interleaved runs each\n");
    println!("| variant | median ms | p90 ms | p99 ms | ratio to runc (median) | paired difference vs runc, median ms |");
    println!("|---|---|---|---|---|---|");
    let base = life[0].median().as_secs_f64();
    for (name, s) in names.iter().zip(&life) {
        println!(
            "| {name} | {} | {} | {} | {:.3} | {:+.2} |",
            ms(s.median()),
            ms(s.pct(90.0)),
            ms(s.pct(99.0)),
            s.median().as_secs_f64() / base,
            paired_ms(s, &life[0])
        );
    }
    println!(
        "\nPaired difference: the median over rounds of (variant - runc) in the same round. MIG request vs the same devices by hand: {:+.2} ms. With the driver from the CDI spec, vs the same spec edited by hand: {:+.2} ms. What the driver's mounts and hooks cost runc itself (by hand with vs without them): {:+.2} ms.\n",
        paired_ms(&life[2], &life[3]),
        paired_ms(&life[4], &life[5]),
        paired_ms(&life[5], &life[3])
    );

    // 1b. migward's own cost, isolated: the shim with `/bin/true` as the
    //     lower runtime against `/bin/true` itself, so runc's noise drops out.
    let with_true = |from: &Path, name: &str| {
        let path = d.join(name);
        let base = std::fs::read_to_string(from).unwrap();
        std::fs::write(&path, format!("{base}runtime = \"/bin/true\"\n")).unwrap();
        path
    };
    let true_only = with_true(&config_path, "true-only.toml");
    let true_driver = with_true(&driver_config, "true-driver.toml");
    use util::verbs::Floor;
    let floors = [
        ("exec-only-true", Floor::StaticC),
        ("exec-only-true-dyn", Floor::DynamicC),
        ("exec-only-true-rs", Floor::Rust),
    ]
    .map(|(name, kind)| util::verbs::exec_only_shim(d, name, Path::new("/bin/true"), kind));
    let mut own: Vec<Stats> = (0..7).map(|_| Stats::new()).collect();
    for i in 0..runs * 3 {
        own[0].samples.push(timed(
            Command::new("/bin/true")
                .args(["create", "--bundle"])
                .arg(&plain)
                .arg("x"),
            "true",
        ));
        for (k, floor) in floors.iter().enumerate() {
            own[4 + k].samples.push(timed(
                Command::new(floor)
                    .args(["create", "--bundle"])
                    .arg(&plain)
                    .arg("x"),
                "exec-only shim",
            ));
        }
        let mut pass = Command::new(&shim);
        pass.env("MIGWARD_CONFIG", &true_only)
            .args(["create", "--bundle"])
            .arg(&plain)
            .arg(format!("p{i}"));
        own[1].samples.push(timed(&mut pass, "shim pass-through"));
        // The MIG path without, then with, the driver from the CDI spec.
        for (v, cfg, id) in [
            (2, &true_only, format!("m{i}")),
            (3, &true_driver, format!("d{i}")),
        ] {
            std::fs::write(mig.join("config.json"), &mig_pristine).unwrap();
            let mut with_mig = Command::new(&shim);
            with_mig
                .env("MIGWARD_CONFIG", cfg)
                .args(["create", "--bundle"])
                .arg(&mig)
                .arg(&id);
            own[v].samples.push(timed(&mut with_mig, "shim MIG create"));
            Store::new(&config.state_dir).release(&id).unwrap();
        }
    }
    println!(
        "## migward's own cost in `create` (lower runtime `/bin/true`), {} interleaved runs each\n",
        runs * 3
    );
    println!(
        "| variant | median ms | p90 ms | p99 ms | added over `/bin/true`, paired median ms |"
    );
    println!("|---|---|---|---|---|");
    for (name, s) in [
        "`/bin/true` (stands in for runc)",
        "shim, no GPU request",
        "shim, MIG request (plan, lease, spec write)",
        "shim, MIG request, driver from the CDI spec (read, check, apply)",
        "static C program that only execs `/bin/true` (the floor of any exec shim)",
        "dynamic C program, the same (the floor of a shim that can load NVML)",
        "Rust program, the same (the floor of a Rust shim that can load NVML)",
    ]
    .iter()
    .zip(&own)
    {
        println!(
            "| {name} | {} | {} | {} | {:+.2} |",
            ms(s.median()),
            ms(s.pct(90.0)),
            ms(s.pct(99.0)),
            paired_ms(s, &own[0])
        );
    }
    println!();

    // 2. The hook, against a helper process in its own mount namespace and
    //    devices cgroup (as a container init would be at createRuntime).
    let cg = PathBuf::from(format!(
        "/sys/fs/cgroup/devices/migward-bench-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&cg).expect("cgroup v1 devices controller");
    // It says when it is in its own mount namespace (unshare, then sh, then
    // sleep, all one pid); a hook aimed at it before would mount on the host.
    let mut helper = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg("echo ready; exec sleep 600")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(helper.stdout.take().unwrap()),
        &mut ready,
    )
    .unwrap();
    assert_eq!(ready.trim(), "ready", "the hook's helper namespace");
    let helper_pid = helper.id();
    std::fs::write(cg.join("cgroup.procs"), helper_pid.to_string()).unwrap();
    let hook_rootfs = d.join("hookroot");
    std::fs::create_dir_all(hook_rootfs.join("dev")).unwrap();
    let hook_bundle = bundle(
        d,
        "hook",
        &hook_rootfs,
        &[format!("CUDA_VISIBLE_DEVICES={uuid}")],
    );
    let state = |b: &Path, id: &str| {
        json!({"ociVersion": "1.0.2", "id": id, "status": "creating", "pid": helper_pid, "bundle": b}).to_string()
    };
    let hook_cmd = |stage: &str, input: String| {
        let start = Instant::now();
        let out = output_with_stdin(
            Command::new(MIGWARD)
                .env_clear()
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                .args(["--config"])
                .arg(&config_path)
                .args(["hook", stage]),
            &input,
        );
        assert!(
            out.status.success(),
            "hook {stage}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        start.elapsed()
    };
    let mut hooks: Vec<Stats> = (0..3).map(|_| Stats::new()).collect();
    for i in 0..runs {
        hooks[0]
            .samples
            .push(hook_cmd("createRuntime", state(&plain, &format!("n{i}"))));
        hooks[1].samples.push(hook_cmd(
            "createRuntime",
            state(&hook_bundle, &format!("h{i}")),
        ));
        hooks[2]
            .samples
            .push(hook_cmd("poststop", state(&hook_bundle, &format!("h{i}"))));
    }
    assert!(
        Store::new(&config.state_dir).all().unwrap().is_empty(),
        "the hook left a lease"
    );
    println!("## `migward hook`, {runs} runs each\n");
    println!("| stage | median ms | p90 ms | p99 ms |");
    println!("|---|---|---|---|");
    for (name, s) in [
        "createRuntime, no request",
        "createRuntime, MIG request (lease, cgroup rule, nodes)",
        "poststop (release)",
    ]
    .iter()
    .zip(&hooks)
    {
        println!(
            "| {name} | {} | {} | {} |",
            ms(s.median()),
            ms(s.pct(90.0)),
            ms(s.pct(99.0))
        );
    }

    // 4. Peak RSS and size.
    let true_cfg = d.join("true.toml");
    std::fs::write(
        &true_cfg,
        format!(
            "{}runtime = \"/bin/true\"\n",
            std::fs::read_to_string(&config_path).unwrap()
        ),
    )
    .unwrap();
    let rss_of_create = |bundle: &Path, cfg: &Path, id: &str| {
        std::fs::write(mig.join("config.json"), &mig_pristine).unwrap();
        let kb = max_rss_kb(
            &Command::new("/usr/bin/time")
                .arg("-v")
                .arg(&shim)
                .env("MIGWARD_CONFIG", cfg)
                .args(["--root"])
                .arg(&root)
                .args(["create", "--bundle"])
                .arg(bundle)
                .arg(id)
                .output()
                .unwrap(),
        );
        Store::new(&config.state_dir).release(id).unwrap();
        kb
    };
    let shim_rss = rss_of_create(&mig, &true_cfg, "rss-probe");
    let shim_driver_rss = rss_of_create(&mig, &true_driver, "rss-driver");
    let pass_rss = rss_of_create(&plain, &true_cfg, "rss-plain");
    let hook_rss = max_rss_kb(&output_with_stdin(
        Command::new("/usr/bin/time")
            .arg("-v")
            .arg(MIGWARD)
            .args(["--config"])
            .arg(&config_path)
            .args(["hook", "createRuntime"]),
        &state(&hook_bundle, "rss-hook"),
    ));
    Store::new(&config.state_dir).release("rss-hook").unwrap();
    let _ = helper.kill();
    let _ = helper.wait();
    let _ = std::fs::remove_dir(&cg);
    let size = std::fs::metadata(MIGWARD).unwrap().len();
    let shim_size = std::fs::metadata(&shim).unwrap().len();
    println!("\n## Memory and size\n");
    println!("| what | value |");
    println!("|---|---|");
    for (what, kb) in [
        ("no GPU request", pass_rss),
        ("MIG request, driver = none", shim_rss),
        ("MIG request, driver from the CDI spec", shim_driver_rss),
    ] {
        println!(
            "| shim peak RSS (`create`, {what}; lower runtime /bin/true) | {:.1} MB |",
            kb as f64 / 1024.0
        );
    }
    println!(
        "| hook peak RSS (createRuntime, MIG) | {:.1} MB |",
        hook_rss as f64 / 1024.0
    );
    println!(
        "| release binary size: `migward` / `migward-runtime` | {:.2} MB / {:.2} MB |",
        size as f64 / 1024.0 / 1024.0,
        shim_size as f64 / 1024.0 / 1024.0
    );

    // 3. Lease store.
    let lease_dir = shm.path().join("leases-bench");
    let store = Store::new(&lease_dir);
    let unit = Unit {
        gpu_uuid: "GPU-x".into(),
        gpu_index: 0,
        gi: Some(1),
        ci: None,
        mig_uuid: None,
        profile: None,
    };
    let lease = Lease::new(
        Holder {
            container_id: "bench".into(),
            bundle: None,
            creator: ProcessId::current(),
            init: None,
            runtime_root: None,
            pid_file: None,
            since: "now".into(),
            labels: Default::default(),
        },
        vec![unit],
    );
    let cycles = if smoke { 200 } else { 5000 };
    let start = Instant::now();
    for _ in 0..cycles {
        store.acquire(&lease, &mut |_| {}).unwrap();
        store.release("bench").unwrap();
    }
    let per_sec = cycles as f64 / start.elapsed().as_secs_f64();
    let me = std::process::id().to_string();
    let mut race = Stats::new();
    let race_rounds = if smoke { 1 } else { 5 };
    for round in 0..race_rounds {
        let race_state = shm.path().join(format!("race{round}"));
        let race_cfg = d.join(format!("race{round}.toml"));
        std::fs::write(
            &race_cfg,
            config_with(&sim_config, "state_dir", &race_state),
        )
        .unwrap();
        let start = Instant::now();
        let children: Vec<_> = (0..64)
            .map(|i| {
                Command::new(MIGWARD)
                    .arg("--config")
                    .arg(&race_cfg)
                    .args([
                        "leases",
                        "acquire",
                        &format!("r{i}"),
                        &uuid,
                        "--holder-pid",
                        &me,
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let winners = children
            .into_iter()
            .map(|mut c| c.wait().unwrap().success())
            .filter(|w| *w)
            .count();
        race.samples.push(start.elapsed());
        assert_eq!(winners, 1, "race round {round}: {winners} winners");
    }
    println!("\n## Lease store\n");
    println!("| what | value |");
    println!("|---|---|");
    println!("| acquire + release of a free instance, one process | {per_sec:.0} per second |");
    println!("| 64 processes racing for one instance: time until all answered (median of {race_rounds}) | {} ms, exactly one winner each round |", ms(race.median()));

    // 5. Where the time goes in the MIG path (in-process, median of runs).
    let spec_text = mig_pristine.clone();
    let mut parts: Vec<(&str, Stats)> = [
        "config read",
        "config.json read + parse",
        "request parse",
        "NVML load + init + shutdown",
        "NVML inventory (all GPUs)",
        "host files + plan",
        "lease acquire + release",
        "config.json write (atomic)",
    ]
    .into_iter()
    .map(|n| (n, Stats::new()))
    .collect();
    let request = Request::parse(Source::Env("CUDA_VISIBLE_DEVICES"), &uuid)
        .unwrap()
        .unwrap();
    let gpus = NvmlInventory::new(&config.nvml_library).gpus().unwrap();
    let scratch = d.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    std::fs::write(scratch.join("config.json"), &spec_text).unwrap();
    for _ in 0..runs {
        let t = Instant::now();
        let _ = Config::load(Some(&config_path)).unwrap();
        parts[0].1.samples.push(t.elapsed());
        let t = Instant::now();
        let (_, spec) = migward::spec::load_bundle(&scratch).unwrap();
        parts[1].1.samples.push(t.elapsed());
        let t = Instant::now();
        let majors = migward::apply::gpu_majors(&config);
        let _ = Request::from_spec(&spec, &migward::apply::policy(&config, &majors)).unwrap();
        parts[2].1.samples.push(t.elapsed());
        let t = Instant::now();
        drop(
            nvml_wrapper::Nvml::builder()
                .lib_path(config.nvml_library.as_os_str())
                .init()
                .unwrap(),
        );
        parts[3].1.samples.push(t.elapsed());
        let t = Instant::now();
        let _ = NvmlInventory::new(&config.nvml_library).gpus().unwrap();
        parts[4].1.samples.push(t.elapsed());
        let t = Instant::now();
        let plan =
            migward::plan::plan(&request, &gpus, &HostFiles::new(&config.host_root)).unwrap();
        parts[5].1.samples.push(t.elapsed());
        let lease = Lease::new(
            Holder {
                container_id: "parts".into(),
                bundle: None,
                creator: ProcessId::current(),
                init: None,
                runtime_root: None,
                pid_file: None,
                since: "now".into(),
                labels: Default::default(),
            },
            migward::lease::units(&plan.grants, config.exclusive),
        );
        let t = Instant::now();
        store.acquire(&lease, &mut |_| {}).unwrap();
        store.release("parts").unwrap();
        parts[6].1.samples.push(t.elapsed());
        let t = Instant::now();
        migward::spec::write_atomic(&scratch.join("config.json"), &spec).unwrap();
        parts[7].1.samples.push(t.elapsed());
    }
    let mut exec = Stats::new();
    for _ in 0..runs {
        exec.samples.push(timed(
            Command::new(MIGWARD).arg("--version").stdout(Stdio::null()),
            "migward --version",
        ));
    }
    println!("\n## Where the time goes in the MIG path (in-process, median of {runs})\n");
    println!("| step | median ms |");
    println!("|---|---|");
    println!(
        "| process start (`migward --version`, fork + exec + exit) | {} |",
        ms(exec.median())
    );
    for (name, s) in &parts {
        println!("| {name} | {} |", ms(s.median()));
    }
}
