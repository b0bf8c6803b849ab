//! MIG pods through a RuntimeClass, proven through containerd's real CRI:
//! a private containerd 1.6 whose runtime `migward` is what `migward install
//! containerd` wrote, driven by a CRI client exactly as the kubelet drives
//! it, on a simulated GPU host. Each device-plugin strategy (`envvar`,
//! `volume-mounts`, `cdi-annotations`) gets exactly its instance; the lease
//! names the pod; a second pod for a held instance fails with migward's
//! line in the CRI error; deleting the pod or killing its process frees
//! the instance; under the Kubernetes policy a pod's own env, a forged
//! `cdi.k8s.io` pod annotation and a `migward/devices` pod annotation get
//! nothing.

mod common;
mod cri;

use common::sim::{expected_nodes, probe_lines, Sim, PROBE};
use cri::{Ctr, Node, PLUGIN_MOUNT_DIR};
use serde_json::Value;

/// The Kubernetes policy: only what the kubelet alone writes counts.
const K8S_POLICY: &str = "env_requests = false\nannotation_requests = false";

/// Probes the nodes, says what NVIDIA_VISIBLE_DEVICES became, and stays up
/// (holding its instance) until stopped.
fn probe_and_hold() -> String {
    format!("{PROBE}; echo \"NVD=$NVIDIA_VISIBLE_DEVICES\"; echo ready; exec sleep 600")
}

fn ctr<'a>(name: &'a str, cmd: &'a [&'a str]) -> Ctr<'a> {
    Ctr {
        name,
        command: cmd,
        ..Default::default()
    }
}

fn kv(k: &str, v: &str) -> (String, String) {
    (k.to_string(), v.to_string())
}

/// The labels of the one lease that names `pod`.
fn lease_of<'a>(leases: &'a [Value], pod: &str) -> &'a Value {
    let found: Vec<&Value> = leases
        .iter()
        .filter(|l| l["labels"]["k8s_pod"] == pod)
        .collect();
    assert_eq!(found.len(), 1, "one lease names pod {pod}: {leases:?}");
    found[0]
}

#[test]
fn envvar_form_gets_exactly_its_instance_and_the_lease_names_the_pod() {
    let sim = Sim::new("a100x4-mixed");
    let mut node = Node::start(&sim, &sim.config(), &[]);
    let uuid = sim.mig_uuid(0, 1);
    let pod = node
        .run_pod("notebook-alice", "team-a", "migward", &[])
        .expect("RunPodSandbox");
    // The pause container passed through: nothing is leased yet.
    assert!(sim.leases().is_empty(), "{:?}", sim.leases());

    let script = probe_and_hold();
    let cmd = ["sh", "-c", script.as_str()];
    let mut c = ctr("notebook", &cmd);
    c.env = vec![kv("NVIDIA_VISIBLE_DEVICES", &uuid)];
    let id = node.run_container(&pod, &c).expect("the container starts");
    let out = node.wait_for_line(&id, "ready");
    assert_eq!(probe_lines(&out), expected_nodes(0, 21, 22));
    assert!(out.contains(&format!("NVD={uuid}")), "{out}");

    let leases = sim.leases();
    assert_eq!(leases.len(), 1, "{leases:?}");
    let lease = lease_of(&leases, "notebook-alice");
    assert_eq!(lease["labels"]["k8s_namespace"], "team-a");
    assert_eq!(lease["labels"]["k8s_container"], "notebook");
    assert_eq!(lease["live"], true, "{lease}");
    let list = sim.run(&["list"]);
    let list = common::sim::stdout(&list);
    assert!(list.contains("team-a/notebook-alice/notebook"), "{list}");

    node.remove_pod(&pod);
    assert!(
        sim.leases().is_empty(),
        "deleting the pod frees its instance"
    );
}

#[test]
fn volume_mounts_and_cdi_annotations_under_the_kubernetes_policy() {
    let sim = Sim::new("a100x4-mixed");
    let config = sim.config_variant("k8s", K8S_POLICY);
    let mut node = Node::start(&sim, &config, &[]);
    let script = probe_and_hold();
    let cmd = ["sh", "-c", script.as_str()];

    // volume-mounts, by UUID (deviceIDStrategy uuid) and by index (index).
    let by_uuid = sim.mig_uuid(0, 1);
    for (pod_name, id, want) in [
        ("mounts-uuid", by_uuid.clone(), expected_nodes(0, 21, 22)),
        (
            "mounts-index",
            "3:0".to_string(),
            expected_nodes(3, 417, 418),
        ),
    ] {
        let pod = node.run_pod(pod_name, "batch", "migward", &[]).unwrap();
        let mut c = ctr("job", &cmd);
        c.env = vec![kv("NVIDIA_VISIBLE_DEVICES", PLUGIN_MOUNT_DIR)];
        c.mounts = vec![kv("/dev/null", &format!("{PLUGIN_MOUNT_DIR}/{id}"))];
        let cid = node.run_container(&pod, &c).expect(pod_name);
        let out = node.wait_for_line(&cid, "ready");
        assert_eq!(probe_lines(&out), want, "{pod_name}");
        assert!(
            out.contains("NVD=MIG-"),
            "the env names the granted UUID: {out}"
        );
    }

    // cdi-annotations: a container annotation only the kubelet writes.
    let uuid = sim.mig_uuid(3, 4);
    let pod = node.run_pod("cdi", "batch", "migward", &[]).unwrap();
    let mut c = ctr("job", &cmd);
    c.annotations = vec![kv(
        "cdi.k8s.io/k8s-device-plugin_mig-3-4",
        &format!("k8s.device-plugin.nvidia.com/gpu={uuid}"),
    )];
    let cid = node.run_container(&pod, &c).expect("cdi-annotations");
    let out = node.wait_for_line(&cid, "ready");
    assert_eq!(probe_lines(&out), expected_nodes(3, 453, 454));
    assert!(out.contains(&format!("NVD={uuid}")), "{out}");

    let leases = sim.leases();
    assert_eq!(leases.len(), 3, "{leases:?}");
    for pod in ["mounts-uuid", "mounts-index", "cdi"] {
        assert_eq!(lease_of(&leases, pod)["labels"]["k8s_namespace"], "batch");
    }
    let held = lease_of(&leases, "mounts-uuid").to_string();
    assert!(held.contains(&by_uuid), "{held}");
}

#[test]
fn forged_requests_under_the_kubernetes_policy_get_no_device() {
    let sim = Sim::new("a100x4-mixed");
    let config = sim.config_variant("k8s", K8S_POLICY);
    let mut node = Node::start(&sim, &config, &[]);
    let uuid = sim.mig_uuid(0, 1);
    let forged = format!("nvidia.com/gpu={uuid}");
    // A pod's author writes its metadata and its env, never the kubelet's
    // container annotations or the device plugin's mounts.
    let pod = node
        .run_pod(
            "forger",
            "tenant-b",
            "migward",
            &[("migward/devices", &uuid), ("cdi.k8s.io/forged", &forged)],
        )
        .unwrap();
    let script = probe_and_hold();
    let cmd = ["sh", "-c", script.as_str()];
    let mut c = ctr("main", &cmd);
    c.env = vec![
        kv("NVIDIA_VISIBLE_DEVICES", &uuid),
        kv("CUDA_VISIBLE_DEVICES", &uuid),
    ];
    let id = node
        .run_container(&pod, &c)
        .expect("an ignored request still starts");
    let out = node.wait_for_line(&id, "ready");
    assert_eq!(
        probe_lines(&out),
        Vec::<String>::new(),
        "no NVIDIA node: {out}"
    );
    assert!(out.contains("NVD=void"), "{out}");
    assert!(sim.leases().is_empty(), "{:?}", sim.leases());
}

#[test]
fn a_held_instance_refuses_a_second_pod_until_its_holder_dies() {
    let sim = Sim::new("a100x4-mixed");
    let mut node = Node::start(&sim, &sim.config(), &[]);
    let uuid = sim.mig_uuid(3, 4);
    let script = probe_and_hold();
    let cmd = ["sh", "-c", script.as_str()];

    // The request is a pod annotation: it reaches the pause container's
    // spec too, which must not take the instance before the container.
    let holder = node
        .run_pod("trainer", "ml", "migward", &[("migward/devices", &uuid)])
        .unwrap();
    let held = node
        .run_container(&holder, &ctr("train", &cmd))
        .expect("holder");
    let out = node.wait_for_line(&held, "ready");
    assert_eq!(probe_lines(&out), expected_nodes(3, 453, 454));

    let second = node.run_pod("intruder", "ml", "migward", &[]).unwrap();
    let mut c = ctr("steal", &cmd);
    c.env = vec![kv("NVIDIA_VISIBLE_DEVICES", &uuid)];
    let (_, err) = node
        .run_container(&second, &c)
        .expect_err("the instance is held");
    let msg = err.message();
    assert!(
        msg.contains("is held by container") && msg.contains("k8s_pod=trainer"),
        "the CRI error carries migward's line: {msg}"
    );

    // The holder's process dies (OOM, a node-level kill): the next acquire
    // reclaims its instance.
    let pid = node.pid(&held);
    // SAFETY: kill(2) on the container's own init process, found through CRI.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    node.wait_exited(&held);
    let mut c = ctr("steal-again", &cmd);
    c.env = vec![kv("NVIDIA_VISIBLE_DEVICES", &uuid)];
    let id = node
        .run_container(&second, &c)
        .expect("the dead holder's instance is free");
    let out = node.wait_for_line(&id, "ready");
    assert_eq!(probe_lines(&out), expected_nodes(3, 453, 454));
    let leases = sim.leases();
    assert_eq!(leases.len(), 1, "{leases:?}");
    assert_eq!(
        lease_of(&leases, "intruder")["labels"]["k8s_container"],
        "steal-again"
    );

    node.remove_pod(&second);
    node.remove_pod(&holder);
    assert!(sim.leases().is_empty(), "{:?}", sim.leases());
}
