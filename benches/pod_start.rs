//! What the `migward` RuntimeClass adds to a pod start, against the plain
//! `runc` handler, through containerd's real CRI (no kubelet; see
//! tests/cri): RunPodSandbox (the pause container) + CreateContainer +
//! StartContainer of a busybox `true`, timed until StartContainer returns.
//! The pod is then stopped and removed, untimed. Variants are interleaved
//! round by round on one containerd. `driver = "none"`: the driver's files
//! are not migward's cost.
//!
//! `cargo bench --bench pod_start -- [--runs N] [--smoke]` (via
//! `scripts/bench.sh`). Needs root, containerd and the fake NVML library.

mod util;

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/cri/mod.rs"]
#[allow(dead_code)] // the tests use the rest
mod cri;

use common::sim::Sim;
use cri::{Ctr, Node};
use std::path::Path;
use std::time::{Duration, Instant};
use util::config_with;

struct Variant {
    name: &'static str,
    handler: &'static str,
    mig: bool,
    samples: Vec<Duration>,
}

fn pct(samples: &[Duration], p: f64) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    let rank = ((p / 100.0) * s.len() as f64).ceil().max(1.0) as usize;
    s[rank.min(s.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // cargo's bench discovery
    }
    let (_, runs) = util::runs(40);

    let sim = Sim::new("a100x4-mixed");
    // migward's own cost: without the simulated driver's CDI edits (its
    // hooks run by runc cost the same under any runtime; BENCHMARKS.md
    // measures them apart).
    // Leases and bundles on tmpfs, as /run is on a node (it is ext4 on
    // this VM: fsyncs there would be measured, not migward).
    let shm = tempfile::tempdir_in("/dev/shm").expect("a tmpfs dir");
    let base = std::fs::read_to_string(sim.config()).unwrap();
    let text = config_with(&base, "state_dir", &shm.path().join("leases"));
    let config = sim.path("bench.toml");
    std::fs::write(&config, config_with(&text, "driver", Path::new("none"))).unwrap();
    let mut node = Node::start_with_state(&sim, &config, &[], &shm.path().join("containerd"));
    let uuid = sim.mig_uuid(3, 4);
    let mut variants = [
        Variant {
            name: "runc handler, no GPU",
            handler: "runc",
            mig: false,
            samples: vec![],
        },
        Variant {
            name: "migward handler, no GPU",
            handler: "migward",
            mig: false,
            samples: vec![],
        },
        Variant {
            name: "migward handler, MIG request (envvar)",
            handler: "migward",
            mig: true,
            samples: vec![],
        },
    ];
    let cmd = ["true"];
    // One warm-up round per variant (image unpack, first shim start).
    for round in 0..=runs {
        for v in variants.iter_mut() {
            let mut c = Ctr {
                name: "main",
                command: &cmd,
                ..Default::default()
            };
            if v.mig {
                c.env = vec![("NVIDIA_VISIBLE_DEVICES".into(), uuid.clone())];
            }
            let t = Instant::now();
            let pod = node
                .run_pod("bench", "default", v.handler, &[])
                .expect("RunPodSandbox");
            let id = node
                .run_container(&pod, &c)
                .map_err(|(_, e)| e)
                .expect("container");
            let took = t.elapsed();
            // As the kubelet sees it: the container has exited before its
            // pod is stopped. StopPodSandbox right after StartContainer
            // kills a container that may be exiting, and containerd 1.6's
            // runc shim then goes away under the Kill call (`ttrpc:
            // closed`) now and then on a loaded machine, plain runc
            // handler included (its log shows the same shim disconnect).
            node.wait_exited(&id);
            node.remove_pod(&pod);
            if round > 0 {
                v.samples.push(took);
            }
        }
    }
    drop(node);
    let out = std::process::Command::new(common::sim::MIGWARD)
        .arg("--config")
        .arg(&config)
        .args(["leases", "--json"])
        .output()
        .unwrap();
    let leases: serde_json::Value = serde_json::from_slice(&out.stdout).expect("leases --json");
    assert_eq!(
        leases["leases"],
        serde_json::json!([]),
        "every pod's lease was freed"
    );

    let base = pct(&variants[0].samples, 50.0);
    println!("## Pod start through containerd's CRI (pause + one busybox `true`), {runs} interleaved runs each\n");
    println!("| variant | median ms | p90 ms | ratio to runc | added ms |");
    println!("|---|---|---|---|---|");
    for v in &variants {
        let med = pct(&v.samples, 50.0);
        println!(
            "| {} | {:.1} | {:.1} | {:.3} | {:+.1} |",
            v.name,
            ms(med),
            ms(pct(&v.samples, 90.0)),
            med.as_secs_f64() / base.as_secs_f64(),
            ms(med) - ms(base)
        );
    }
    println!();
}
