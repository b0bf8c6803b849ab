//! Every way a GPU reaches a container, through the shim and real runc:
//! device nodes as CDI writes them, `all` from an image, profiles, and the
//! engine_devices policy.

mod common;

use common::engines::{self, load_config, save_config};
use common::runc::Host;
use common::sim::{expected_nodes, probe_lines, stderr, PROBE};
use serde_json::{json, Value};
use std::path::PathBuf;

/// GPU minor, GI cap minor, CI cap minor and UUID of MIG device `m` of GPU 0.
fn mig(h: &Host, m: usize) -> (u32, u32, u32, String) {
    let list = h.sim.list();
    let gpu = &list["gpus"][0];
    let dev = &gpu["mig_devices"][m];
    let n = |v: &Value| v.as_u64().unwrap() as u32;
    (
        n(&gpu["minor"]),
        n(&dev["gi_cap_minor"]),
        n(&dev["ci_cap_minor"]),
        dev["uuid"].as_str().unwrap().to_string(),
    )
}

/// A bundle named `name` running `args` with `env`.
fn bundle(h: &Host, name: &str, args: &[&str], env: &[&str]) -> PathBuf {
    let dir = h.sim.path(name);
    std::fs::create_dir_all(&dir).unwrap();
    engines::runc_bundle(&dir, args, env)
}

/// Writes the nodes and allow rules CDI gives a MIG device (`caps`: its GI
/// and CI cap minors, or fewer), with the shared nodes, next to
/// `NVIDIA_VISIBLE_DEVICES=void`, as `--device nvidia.com/gpu=MIG-…` does.
fn cdi_bundle(h: &Host, name: &str, args: &[&str], gpu_minor: u32, caps: &[u32]) -> PathBuf {
    let b = bundle(h, name, args, &["NVIDIA_VISIBLE_DEVICES=void"]);
    let mut cfg = load_config(&b);
    let mut nodes = vec![
        ("/dev/nvidiactl".to_string(), 195, 255),
        ("/dev/nvidia-modeset".to_string(), 195, 254),
        ("/dev/nvidia-uvm".to_string(), 511, 0),
        ("/dev/nvidia-uvm-tools".to_string(), 511, 1),
        (format!("/dev/nvidia{gpu_minor}"), 195, gpu_minor),
    ];
    nodes.extend(
        caps.iter()
            .map(|c| (format!("/dev/nvidia-caps/nvidia-cap{c}"), 508, *c)),
    );
    if !cfg["linux"]["devices"].is_array() {
        cfg["linux"]["devices"] = json!([]);
    }
    for (path, major, minor) in nodes {
        cfg["linux"]["devices"]
            .as_array_mut()
            .unwrap()
            .push(json!({"path": path, "type": "c", "major": major, "minor": minor}));
        cfg["linux"]["resources"]["devices"]
            .as_array_mut()
            .unwrap()
            .push(json!({"allow": true, "type": "c", "major": major, "minor": minor, "access": "rwm"}));
    }
    save_config(&b, &cfg);
    b
}

fn env_of(bundle: &std::path::Path) -> Vec<String> {
    load_config(bundle)["process"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn append_config(h: &Host, line: &str) {
    let text = std::fs::read_to_string(h.sim.config()).unwrap();
    std::fs::write(h.sim.config(), format!("{text}{line}\n")).unwrap();
}

#[test]
fn cdi_nodes_are_kept_and_leased_and_half_devices_refused() {
    let h = Host::new("h100-7x1g");
    let (minor, g, c, uuid) = mig(&h, 2);
    // The container keeps exactly the device CDI gave it.
    let b = cdi_bundle(&h, "cdi0", &["sh", "-c", PROBE], minor, &[g, c]);
    let text = engines::expect_success(&h.run(&b, "cdi-0"), "CDI-shaped spec");
    assert_eq!(probe_lines(&text), expected_nodes(minor, g, c));
    assert!(
        env_of(&b).contains(&format!("NVIDIA_VISIBLE_DEVICES={uuid}")),
        "{:?}",
        env_of(&b)
    );
    assert_eq!(h.leases(), Vec::<Value>::new(), "released when it exited");

    // While one holds it, a second spec with the same nodes is refused.
    let a = cdi_bundle(&h, "cdia", &["sleep", "300"], minor, &[g, c]);
    engines::expect_success(&h.create(&a, "cdi-a"), "holder");
    let leases = h.leases();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0]["container_id"], "cdi-a");
    assert_eq!(leases[0]["units"][0]["mig_uuid"], uuid.as_str());
    let b2 = cdi_bundle(&h, "cdib", &["true"], minor, &[g, c]);
    let err = stderr(&h.create(&b2, "cdi-b"));
    assert!(
        err.contains("container cdi-b refused") && err.contains("is held by container cdi-a"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // Half a device is refused naming the node, before runc runs.
    let half = cdi_bundle(&h, "half", &["true"], minor, &[g]);
    let err = stderr(&h.create(&half, "cdi-half"));
    assert!(
        err.contains(&format!(
            "device nodes in the spec: /dev/nvidia-caps/nvidia-cap{g} (c 508:{g}) is the cap of GPU instance"
        )),
        "{err}"
    );
    assert!(
        h.runc(&["state", "cdi-half"]).status.code() != Some(0),
        "runc never ran"
    );
    h.delete("cdi-a");
    assert_eq!(h.leases(), Vec::<Value>::new());
}

#[test]
fn engine_devices_refuse_names_the_node() {
    let h = Host::new("h100-7x1g");
    append_config(&h, "engine_devices = \"refuse\"");
    let (minor, g, c, uuid) = mig(&h, 0);
    let b = cdi_bundle(&h, "r", &["true"], minor, &[g, c]);
    let err = stderr(&h.create(&b, "refused-nodes"));
    assert!(
        err.contains(&format!("its spec carries the NVIDIA device node /dev/nvidia{minor} (c 195:{minor}), which engine_devices = \"refuse\" in the migward config refuses")),
        "{err}"
    );
    // A higher source decides; the engine's nodes outside its grant go.
    let mut cfg = load_config(&b);
    cfg["process"]["env"] = json!(["PATH=/bin:/sbin", format!("NVIDIA_VISIBLE_DEVICES={uuid}")]);
    cfg["process"]["args"] = json!(["sh", "-c", PROBE]);
    save_config(&b, &cfg);
    let text = engines::expect_success(&h.run(&b, "named"), "named instance");
    assert_eq!(probe_lines(&text), expected_nodes(minor, g, c));
}

#[test]
fn all_from_an_image_is_refused_unless_allowed() {
    let h = Host::new("h100-7x1g");
    let b = bundle(
        &h,
        "all",
        &["sh", "-c", PROBE],
        &["NVIDIA_VISIBLE_DEVICES=all"],
    );
    let err = stderr(&h.run(&b, "all-1"));
    assert!(
        err.contains("container all-1 asks for every GPU (env NVIDIA_VISIBLE_DEVICES=all; CUDA base images set NVIDIA_VISIBLE_DEVICES=all")
            && err.contains("or set allow_all = true in the migward config"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(h.leases(), Vec::<Value>::new());

    // An image's all next to a named MIG device keeps working.
    let (minor, g, c, uuid) = mig(&h, 1);
    let named = bundle(
        &h,
        "named",
        &["sh", "-c", PROBE],
        &[
            "NVIDIA_VISIBLE_DEVICES=all",
            &format!("CUDA_VISIBLE_DEVICES={uuid}"),
        ],
    );
    let text = engines::expect_success(&h.run(&named, "all-2"), "named next to all");
    assert_eq!(probe_lines(&text), expected_nodes(minor, g, c));

    append_config(&h, "allow_all = true");
    let text = engines::expect_success(&h.run(&b, "all-3"), "all, allowed");
    let lines = probe_lines(&text);
    // The whole GPU: its node, the shared nodes (nvidia-modeset from the
    // driver's CDI spec) and both caps of all 7.
    assert_eq!(lines.len(), 5 + 14, "{lines:?}");
}

#[test]
fn sixteen_profile_requests_on_seven_instances() {
    let h = Host::new("h100-7x1g");
    let bundles: Vec<PathBuf> = (0..16)
        .map(|i| {
            let env = if i % 2 == 0 {
                "NVIDIA_VISIBLE_DEVICES=1g.10gb"
            } else {
                "NVIDIA_VISIBLE_DEVICES=mig-1g.10gb"
            };
            bundle(&h, &format!("p{i}"), &["true"], &[env])
        })
        .collect();
    let (outs, created) = h.create_racing(&bundles, "prof");
    assert_eq!(
        created.len(),
        7,
        "{:?}",
        outs.iter().map(stderr).collect::<Vec<_>>()
    );
    for (i, o) in outs.iter().enumerate().filter(|(_, o)| !o.status.success()) {
        let err = stderr(o);
        assert!(
            err.contains(&format!(
                "container prof-{i} refused: no free 1g.10gb: all 7 are held; holders: prof-"
            )),
            "{err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    // Seven distinct instances, each written into its container's spec.
    let leases = h.leases();
    assert_eq!(leases.len(), 7);
    let mut uuids: Vec<String> = Vec::new();
    for l in &leases {
        let uuid = l["units"][0]["mig_uuid"].as_str().unwrap().to_string();
        let i: usize = l["container_id"].as_str().unwrap()["prof-".len()..]
            .parse()
            .unwrap();
        assert!(
            env_of(&bundles[i]).contains(&format!("NVIDIA_VISIBLE_DEVICES={uuid}")),
            "{:?}",
            env_of(&bundles[i])
        );
        uuids.push(uuid);
    }
    uuids.sort();
    uuids.dedup();
    assert_eq!(uuids.len(), 7, "{leases:?}");
    for i in &created {
        h.delete(&format!("prof-{i}"));
    }
    assert_eq!(h.leases(), Vec::<Value>::new());
}

#[test]
fn a_profile_in_cuda_visible_devices_is_rewritten_to_the_uuid() {
    let h = Host::new("a100x4-mixed");
    let b = bundle(
        &h,
        "cuda",
        &[
            "sh",
            "-c",
            "echo $CUDA_VISIBLE_DEVICES $NVIDIA_VISIBLE_DEVICES",
        ],
        &["CUDA_VISIBLE_DEVICES=3g.40gb"],
    );
    let text = engines::expect_success(&h.run(&b, "cuda-prof"), "profile in CUDA env");
    // The first free 3g.40gb in GPU, then placement order: GPU 0, start 0.
    let uuid = h.sim.mig_uuid(0, 0);
    assert_eq!(text.trim(), format!("{uuid} {uuid}"));
}
