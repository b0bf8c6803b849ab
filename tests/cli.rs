//! The `migward` binary's list, resolve and simulate against the fake NVML
//! library and a generated host tree.

mod common;

use common::sim::{self as support, stderr, stdout, Sim};
use serde_json::Value;
use std::os::unix::ffi::OsStrExt;

fn resolve_json(sim: &Sim, id: &str) -> Value {
    let out = sim.run(&["resolve", "--json", id]);
    assert!(out.status.success(), "resolve {id}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn device_nodes(plan: &Value) -> Vec<(String, String, u64, u64, u64)> {
    plan["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["path"].as_str().unwrap().to_string(),
                d["type"].as_str().unwrap().to_string(),
                d["major"].as_u64().unwrap(),
                d["minor"].as_u64().unwrap(),
                d["mode"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn list_shows_the_demo_server() {
    let sim = Sim::new("a100x4-mixed");
    let list = sim.list();
    let gpus = list["gpus"].as_array().unwrap();
    assert_eq!(gpus.len(), 4);
    let profiles: Vec<Vec<&str>> = gpus
        .iter()
        .map(|g| {
            g["mig_devices"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["profile"].as_str().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(profiles[0], ["3g.40gb", "3g.40gb"]);
    assert_eq!(profiles[1], ["2g.20gb", "2g.20gb", "2g.20gb", "1g.10gb"]);
    assert_eq!(profiles[3], ["1g.10gb"; 7]);
    let g0 = &gpus[0];
    assert_eq!(g0["name"], "NVIDIA A100-SXM4-80GB");
    assert_eq!(g0["minor"], 0);
    assert_eq!(
        g0["mig_mode"],
        serde_json::json!({"current": true, "pending": true})
    );
    let m = &g0["mig_devices"][0];
    assert_eq!((m["gi"].as_u64(), m["ci"].as_u64()), (Some(1), Some(0)));
    assert_eq!(m["placement"], serde_json::json!({"start": 0, "size": 4}));
    assert_eq!(
        (m["gi_cap_minor"].as_u64(), m["ci_cap_minor"].as_u64()),
        (Some(12), Some(13))
    );
    let m = &gpus[1]["mig_devices"][1];
    assert_eq!(
        (
            m["gi"].as_u64(),
            m["gi_cap_minor"].as_u64(),
            m["ci_cap_minor"].as_u64()
        ),
        (Some(2), Some(156), Some(157))
    );

    let out = sim.run(&["list"]);
    let text = stdout(&out);
    assert!(out.status.success());
    assert!(text.contains("GPU 1  NVIDIA A100-SXM4-80GB"), "{text}");
    assert!(
        text.contains("gi1  gi1  gi2  gi2  gi3  gi3  gi4  free"),
        "{text}"
    );
    assert!(text.contains("12,13"), "{text}");
}

#[test]
fn resolve_gives_exact_nodes() {
    let sim = Sim::new("a100x4-mixed");
    let cases = [((0, 0), 0, 12, 13), ((1, 1), 1, 156, 157)];
    for ((gpu, mig), parent, gi_cap, ci_cap) in cases {
        let uuid = sim.mig_uuid(gpu, mig);
        let plan = resolve_json(&sim, &uuid);
        let want = vec![
            (
                "/dev/nvidiactl".to_string(),
                "c".to_string(),
                195,
                255,
                0o666,
            ),
            ("/dev/nvidia-uvm".into(), "c".into(), 511, 0, 0o666),
            ("/dev/nvidia-uvm-tools".into(), "c".into(), 511, 1, 0o666),
            (
                format!("/dev/nvidia{parent}"),
                "c".into(),
                195,
                parent,
                0o666,
            ),
            (
                format!("/dev/nvidia-caps/nvidia-cap{gi_cap}"),
                "c".into(),
                508,
                gi_cap,
                0o444,
            ),
            (
                format!("/dev/nvidia-caps/nvidia-cap{ci_cap}"),
                "c".into(),
                508,
                ci_cap,
                0o444,
            ),
        ];
        assert_eq!(device_nodes(&plan), want, "{uuid}");
        assert_eq!(plan["rules"].as_array().unwrap().len(), 6);
        assert_eq!(plan["env"]["NVIDIA_VISIBLE_DEVICES"], uuid.as_str());
    }
    // Upper case and spaces are the same request.
    let uuid = sim.mig_uuid(0, 0);
    let upper = format!("  {}  ", uuid.to_uppercase());
    assert_eq!(
        device_nodes(&resolve_json(&sim, &upper)),
        device_nodes(&resolve_json(&sim, &uuid))
    );
}

#[test]
fn resolve_reads_a_bundle() {
    let sim = Sim::new("h100-7x1g");
    let uuid = sim.mig_uuid(0, 6);
    let bundle = sim.path("bundle");
    std::fs::create_dir(&bundle).unwrap();
    let spec = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {"cwd": "/", "args": ["sh"], "user": {"uid": 0, "gid": 0},
                    "env": ["PATH=/bin", format!("CUDA_VISIBLE_DEVICES={uuid}")]},
        "root": {"path": "rootfs"}
    });
    std::fs::write(bundle.join("config.json"), spec.to_string()).unwrap();
    let out = sim.run(&["resolve", "--json", "--bundle", bundle.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["request"]["source"], "env CUDA_VISIBLE_DEVICES");
    assert!(
        device_nodes(&plan)
            .iter()
            .any(|d| d.0 == "/dev/nvidia-caps/nvidia-cap67"),
        "{plan}"
    );

    std::fs::write(bundle.join("config.json"), "{\"ociVersion\":\"1.0.2\",\"process\":{\"cwd\":\"/\",\"args\":[\"sh\"],\"user\":{\"uid\":0,\"gid\":0},\"env\":[\"PATH=/bin\"]}}").unwrap();
    let out = sim.run(&["resolve", "--bundle", bundle.to_str().unwrap()]);
    assert!(stdout(&out).contains("no GPU request"), "{}", stdout(&out));
}

/// Runs `resolve` expecting a one-line failure containing every `want`.
fn refused(sim: &Sim, args: &[&std::ffi::OsStr], want: &[&str]) {
    let out = sim.cmd().arg("resolve").args(args).output().unwrap();
    let err = stderr(&out);
    assert!(
        !out.status.success(),
        "{args:?} succeeded: {}",
        stdout(&out)
    );
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    for w in want {
        assert!(err.contains(w), "{args:?}: {err:?} lacks {w:?}");
    }
}

fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

#[test]
fn bad_ids_get_one_clear_line() {
    let sim = Sim::new("a100x4-mixed");
    let long = "M".repeat(10 * 1024);
    let bad_utf8 = std::ffi::OsStr::from_bytes(b"MIG-\xff\xfe");
    let cases: Vec<(&std::ffi::OsStr, Vec<&str>)> = vec![
        (
            os("MIG-zz"),
            vec!["argument value \"MIG-zz\"", "is not a MIG UUID"],
        ),
        (os("0:"), vec!["\"0:\" is not a MIG index"]),
        (os(":1"), vec!["\":1\" is not a MIG index"]),
        (os("-1"), vec!["\"-1\" is not a device id"]),
        (os(&long), vec!["is 10240 bytes long", "(10240 bytes)"]),
        (bad_utf8, vec!["is not valid UTF-8"]),
        (
            os("MIG-00000000-0000-4000-8000-000000000000"),
            vec![
                "is not a MIG device on this host",
                "MIG devices here include MIG-",
            ],
        ),
        (
            os("9"),
            vec!["GPU index 9 is out of range: this host has 4 GPU(s)"],
        ),
        (
            os("3:7"),
            vec!["MIG index 3:7 names no MIG device: GPU 3 has 7 MIG device(s)"],
        ),
    ];
    for (arg, want) in cases {
        refused(&sim, &[arg], &want);
    }
}

#[test]
fn mig_ids_on_gpus_without_active_mig_say_what_to_do() {
    let sim = Sim::new("a100-40gb-pending");
    let list = sim.list();
    assert_eq!(
        list["gpus"][0]["mig_mode"],
        serde_json::json!({"current": false, "pending": true})
    );
    let gpu1 = list["gpus"][1]["uuid"].as_str().unwrap().to_string();
    refused(
        &sim,
        &[os("0:0")],
        &["MIG mode is enabled but pending", "reset the GPU"],
    );
    refused(
        &sim,
        &[os("1:0")],
        &[
            "1:0 asks for a MIG device on GPU 1",
            "MIG is not enabled on it",
        ],
    );
    refused(
        &sim,
        &[os(&format!("MIG-{gpu1}/1/0"))],
        &["MIG is not enabled on it"],
    );
    // The whole GPU works.
    let plan = resolve_json(&sim, "1");
    assert!(device_nodes(&plan).iter().any(|d| d.0 == "/dev/nvidia1"));
    let text = stdout(&sim.run(&["list"]));
    assert!(
        text.contains("MIG disabled, pending enabled (reset the GPU to apply)"),
        "{text}"
    );
}

#[test]
fn legacy_ids_resolve_with_a_warning() {
    let sim = Sim::new("a100x4-mixed");
    let gpu0 = sim.list()["gpus"][0]["uuid"].as_str().unwrap().to_string();
    let out = sim.run(&["resolve", "--json", &format!("MIG-{gpu0}/2/0")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("legacy MIG id form"),
        "{}",
        stderr(&out)
    );
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        plan["grants"][0]["mig"]["uuid"],
        sim.mig_uuid(0, 1).as_str()
    );
}

#[test]
fn broken_host_files_and_library_are_named() {
    let uuid_of = |sim: &Sim| sim.mig_uuid(0, 0);
    let sim = Sim::new("a100x4-mixed");
    let uuid = uuid_of(&sim);
    std::fs::write(
        sim.path("host/proc/driver/nvidia-caps/mig-minors"),
        "gpu0/gi1/access 12\ngpu0/gi1/ci0/access nonsense\n",
    )
    .unwrap();
    refused(&sim, &[os(&uuid)], &["mig-minors line 2", "nonsense"]);
    std::fs::write(
        sim.path("host/proc/driver/nvidia-caps/mig-minors"),
        "\u{0}\u{1}binary junk",
    )
    .unwrap();
    refused(
        &sim,
        &[os(&uuid)],
        &[
            "mig-minors has no entry for gpu0/gi1",
            "does not match this driver's MIG layout",
        ],
    );
    std::fs::remove_file(sim.path("host/proc/driver/nvidia-caps/mig-minors")).unwrap();
    refused(&sim, &[os(&uuid)], &["cannot read", "mig-minors"]);

    let sim = Sim::new("a100x4-mixed");
    let uuid = uuid_of(&sim);
    std::fs::write(
        sim.path("host/proc/devices"),
        "Character devices:\n195 nvidia\n511 nvidia-uvm\n",
    )
    .unwrap();
    refused(
        &sim,
        &[os(&uuid)],
        &["proc/devices has no nvidia-caps character device"],
    );

    let sim = Sim::new("a100x4-mixed");
    std::fs::remove_file(sim.path("nvml/libnvidia-ml.so.1")).unwrap();
    refused(
        &sim,
        &[os("0")],
        &[
            "cannot load the NVML library",
            "libnvidia-ml.so.1",
            "install the NVIDIA driver",
        ],
    );
}

#[test]
fn simulate_refuses_bad_topologies() {
    let dir = tempfile::tempdir().unwrap();
    let topo = dir.path().join("t.toml");
    std::fs::write(&topo, "[[gpu]]\nmodel = \"A100-80GB\"\ninstances = [{ profile = \"3g.40gb\", start = 0 }, { profile = \"2g.20gb\", start = 2 }]\n").unwrap();
    let out = std::process::Command::new(support::MIGWARD)
        .args([
            "simulate",
            topo.to_str().unwrap(),
            dir.path().join("sim").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("overlaps another instance's placement"),
        "{}",
        stderr(&out)
    );
    let out = std::process::Command::new(support::MIGWARD)
        .args(["simulate", "no-such-topology", "x"])
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains("unknown topology \"no-such-topology\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn config_errors_name_the_key() {
    let sim = Sim::new("h100-7x1g");
    let text = std::fs::read_to_string(sim.config()).unwrap();
    std::fs::write(sim.config(), format!("{text}exclusivity = \"gpu\"\n")).unwrap();
    let lines = text.lines().count() + 1;
    let out = sim.run(&["list"]);
    assert!(
        stderr(&out).contains(&format!(
            "line {lines}, column 1: unknown field `exclusivity`"
        )),
        "{}",
        stderr(&out)
    );
    let out = Sim::new("h100-7x1g")
        .cmd()
        .args(["--config", "/nonexistent/c.toml", "list"])
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains("cannot read config /nonexistent/c.toml"),
        "{}",
        stderr(&out)
    );
}

/// Runs `list` against the system's real libnvidia-ml (a GPU host only).
#[test]
#[ignore = "needs a real NVIDIA GPU and driver"]
fn list_on_real_nvml() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "").unwrap();
    let out = std::process::Command::new(support::MIGWARD)
        .args(["--config", config.to_str().unwrap(), "list", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let gpus = list["gpus"].as_array().unwrap();
    assert!(!gpus.is_empty());
    for g in gpus {
        assert!(g["uuid"].as_str().unwrap().starts_with("GPU-"));
        if !g["mig_mode"]["current"].as_bool().unwrap() {
            let out = std::process::Command::new(support::MIGWARD)
                .args([
                    "--config",
                    config.to_str().unwrap(),
                    "resolve",
                    &format!("{}:0", g["index"]),
                ])
                .output()
                .unwrap();
            assert!(
                stderr(&out).contains("MIG is not enabled on it")
                    || stderr(&out).contains("is being disabled"),
                "{}",
                stderr(&out)
            );
            let out = std::process::Command::new(support::MIGWARD)
                .args([
                    "--config",
                    config.to_str().unwrap(),
                    "resolve",
                    "--json",
                    &g["index"].to_string(),
                ])
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", stderr(&out));
        }
    }
}

#[test]
fn resolve_takes_flags_after_ids_and_always_prints_every_key() {
    let sim = Sim::new("h100-7x1g");
    let uuid = sim.mig_uuid(0, 3);
    let out = sim.run(&["resolve", &uuid, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys = ["request", "grants", "devices", "rules", "env", "warnings"];
    let has_keys = |v: &Value| keys.iter().all(|k| v.get(k).is_some());
    assert!(has_keys(&plan), "{plan}");
    assert_eq!(plan["grants"][0]["mig"]["uuid"], uuid.as_str());
    assert_eq!(plan["warnings"], serde_json::json!([]));
    // A bundle without a request still carries every key.
    let bundle = sim.path("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    std::fs::write(bundle.join("config.json"), "{\"ociVersion\":\"1.0.2\",\"process\":{\"cwd\":\"/\",\"args\":[\"sh\"],\"user\":{\"uid\":0,\"gid\":0},\"env\":[\"PATH=/bin\"]}}").unwrap();
    let out = sim.run(&["resolve", "--bundle", bundle.to_str().unwrap(), "--json"]);
    let none: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(has_keys(&none), "{none}");
    assert!(none["request"].is_null());
}

#[test]
fn resolve_a_profile_shows_the_instance_a_container_would_get_now() {
    let sim = Sim::new("h100-7x1g");
    let picked = |sim: &Sim| resolve_json(sim, "mig-1g.10gb")["grants"][0]["mig"]["uuid"].clone();
    assert_eq!(picked(&sim), sim.mig_uuid(0, 0).as_str());
    // Hold the first two (this test process stands in for the containers).
    for (id, m) in [("holder-a", 0), ("holder-b", 1)] {
        let out = sim.hold(id, &sim.mig_uuid(0, m));
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert_eq!(picked(&sim), sim.mig_uuid(0, 2).as_str());
    // A look leases nothing.
    let leases: Value = serde_json::from_slice(&sim.run(&["leases", "--json"]).stdout).unwrap();
    assert_eq!(leases["leases"].as_array().unwrap().len(), 2);
    // Profiles taken through acquire pick what is free, then refuse.
    for i in 0..5 {
        let out = sim.hold(&format!("p{i}"), "1g.10gb");
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let out = sim.hold("p5", "1g.10gb");
    let err = stderr(&out);
    assert!(
        err.starts_with("migward: container p5 refused: no free 1g.10gb: all 7 are held; holders: holder-a on GPU 0 GI ")
            && err.contains("and 3 more (see `migward leases`)"),
        "{err}"
    );
    refused(
        &sim,
        &[os("4g.40gb")],
        &["no MIG device has profile 4g.40gb on this host; profiles here: 1g.10gb ×7"],
    );
}

#[test]
fn leases_release_takes_a_unique_prefix() {
    let sim = Sim::new("h100-7x1g");
    let long = "f00dfeed".repeat(8);
    for (id, m) in [(long.as_str(), 0), ("f00dcafe", 1)] {
        let out = sim.hold(id, &sim.mig_uuid(0, m));
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let table = stdout(&sim.run(&["leases"]));
    let shown = &long[..24];
    assert!(table.contains(shown) && !table.contains(&long), "{table}");
    let out = sim.run(&["leases", "release", "f00d", "--force"]);
    assert!(
        stderr(&out).contains("\"f00d\" matches 2 leases (f00dcafe, f00dfeedf00dfeed"),
        "{}",
        stderr(&out)
    );
    let out = sim.run(&["leases", "release", shown, "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        format!("released the lease of container {long}")
    );
}

/// The JSON example under `heading` in README.md (`, …]` dropped).
fn readme_example(heading: &str) -> Value {
    let readme = include_str!("../README.md");
    let at = readme.find(heading).expect("README heading");
    let block = &readme[at..];
    let start = block.find("```json\n").expect("json block") + "```json\n".len();
    let end = block[start..].find("```").unwrap();
    let text = block[start..start + end].replace(", …]", "]");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{heading}: {e}"))
}

/// Keys and nesting, without values; arrays by their first element.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(a) => Value::Array(a.first().map(shape).into_iter().collect()),
        _ => Value::Null,
    }
}

#[test]
fn readme_json_examples_match_real_output() {
    let sim = Sim::new("a100x4-mixed");
    let uuid = sim.mig_uuid(0, 0);
    let real = resolve_json(&sim, &uuid);
    assert_eq!(
        shape(&readme_example("### `migward resolve --json`")),
        shape(&real)
    );
    // list, with the first instance held so that `holder` is an object.
    let out = sim.hold("readme", &uuid);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut real = sim.list();
    real["gpus"].as_array_mut().unwrap().truncate(1);
    real["gpus"][0]["mig_devices"]
        .as_array_mut()
        .unwrap()
        .truncate(1);
    assert_eq!(
        shape(&readme_example("### `migward list --json`")),
        shape(&real)
    );
}

#[test]
fn resolve_needs_the_lease_store_only_to_pick_a_profile() {
    let sim = Sim::new("h100-7x1g");
    // A state dir that cannot be created, as for a user without write access.
    let config = sim.config_variant("ro", "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("state_dir"))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(
        &config,
        format!("{text}\nstate_dir = \"/proc/migward-none\"\n"),
    )
    .unwrap();
    let uuid = sim.mig_uuid(0, 0);
    let resolve = |id: &str| {
        sim.cmd()
            .env("MIGWARD_CONFIG", &config)
            .args(["resolve", id])
            .output()
            .unwrap()
    };
    let out = resolve(&uuid);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = resolve("1g.10gb");
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("lease store /proc/migward-none/leases"),
        "{err}"
    );
}

/// A reader that goes away (`migward list | head -1`) ends a command that
/// only prints quietly, as for any Unix tool: killed by SIGPIPE or done,
/// never a panic ("failed printing to stdout: Broken pipe").
#[test]
fn a_closed_pipe_is_a_normal_end() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    let sim = Sim::new("a100x4-mixed");
    let commands: [&[&str]; 5] = [
        &["resolve", "--json", "all"],
        &["list"],
        &["list", "--json"],
        &["generate", "bash"],
        &["doctor", "--json"],
    ];
    for args in commands {
        let mut child = sim
            .cmd()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader is gone before the command writes its first byte.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = stderr(&out);
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{args:?}: {err}"
        );
        assert!(
            out.status.signal() == Some(libc::SIGPIPE) || out.status.code().is_some(),
            "{args:?}: {:?}",
            out.status
        );
        assert!(!out.status.core_dumped(), "{args:?}: {:?}", out.status);
    }
}

/// A corrupt lease file refuses every GPU container on the host, so every
/// command that meets it names it and the command that clears it.
#[test]
fn a_corrupt_lease_file_is_listed_named_and_cleared() {
    let sim = Sim::new("h100-7x1g");
    let uuid = sim.mig_uuid(0, 0);
    // A lease file cut off half way (a full disk, a crash mid-write).
    let leases = sim.path("state/leases");
    std::fs::create_dir_all(&leases).unwrap();
    let file = leases.join("half-written.json");
    std::fs::write(&file, "{\"version\": 1, \"holder\": {\"conta").unwrap();
    let fix = "migward leases release half-written --force";

    let out = sim.run(&["leases"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let table = stdout(&out);
    let row = table
        .lines()
        .find(|l| l.contains("half-written"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("corrupt"), "{table}");
    assert!(stderr(&out).contains(fix), "{}", stderr(&out));

    let out = sim.run(&["leases", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["leases"], serde_json::json!([]));
    assert_eq!(v["corrupt"][0]["container_id"], "half-written");
    assert_eq!(v["corrupt"][0]["path"], file.display().to_string());
    assert_eq!(v["corrupt"][0]["fix"], fix);

    let out = sim.run(&["leases", "gc"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("left alone: lease file"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains(fix), "{}", stderr(&out));
    assert!(file.exists(), "gc removed a file it could not read");

    // A container asking for any instance is refused with the same pointer.
    let out = sim.hold("wants-one", &uuid);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&file.display().to_string()) && err.contains(fix),
        "{err}"
    );

    let out = sim.run(&["leases", "release", "half-written", "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = sim.run(&["leases"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "no leases");
}
