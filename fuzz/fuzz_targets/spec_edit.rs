//! The spec edits (spec/edit.rs, `apply::edit_spec`, `driver::apply_cdi`)
//! on any JSON object, as config.json reaches them after `spec::parse`.
//! Properties, for each edit: no panic; it changes nothing outside the
//! fields it names (key order included); editing twice equals editing
//! once; what `strip_nvidia` leaves, the hook's `foreign_gpu_device` and
//! the engine-node request find nothing in; a voided
//! `NVIDIA_VISIBLE_DEVICES` asks for no GPU; the result reads back the same
//! after `spec::write_atomic`'s serialization.
#![no_main]

use libfuzzer_sys::fuzz_target;
use migward::apply::{self, GpuMajors};
use migward::request::{self, Request, Source};
use migward::spec::edit;
use migward_fuzz::{
    array, assert_idempotent, assert_only_touched, assert_reads_back, edited, fixed_cdi_edits,
    fixed_plans, is_subsequence, sim_host, text, ALL_MAJORS, NODE_MAJORS,
};
use serde_json::Value;

const STRIPPED: [&str; 3] = ["/linux/devices", "/linux/resources/devices", "/mounts"];
const PLANNED: [&str; 3] = ["/linux/devices", "/linux/resources/devices", "/process/env"];
const ENV: &str = "/process/env";
const NVD: &str = "NVIDIA_VISIBLE_DEVICES";

fuzz_target!(|data: &[u8]| {
    // spec::parse lets only objects through (it needs `ociVersion`).
    let Ok(before @ Value::Object(_)) = serde_json::from_slice::<Value>(data) else {
        return;
    };

    strip(&before);
    void(&before);
    set_env(&before);
    for (request, plan) in fixed_plans() {
        let s = edited("apply_plan", &before, &PLANNED, |v| {
            edit::apply_plan(v, plan)
        });
        for d in &plan.devices {
            let at_path = array(&s, "/linux/devices")
                .iter()
                .filter(|e| e["path"] == d.path.as_str())
                .count();
            assert_eq!(at_path, 1, "planned node {} not in the spec once", d.path);
        }
        edit_spec(&before, request, plan);
    }
    cdi(&before);
});

fn strip(before: &Value) {
    let mut s = before.clone();
    let changed = edit::strip_nvidia(&mut s, &ALL_MAJORS);
    assert_eq!(
        changed,
        text(&s) != text(before),
        "strip_nvidia's changed flag"
    );
    assert_only_touched("strip_nvidia", before, &s, &STRIPPED);
    for p in STRIPPED {
        assert!(
            is_subsequence(array(&s, p), array(before, p)),
            "strip_nvidia did more than remove entries of {p}"
        );
    }
    let mut again = s.clone();
    assert!(
        !edit::strip_nvidia(&mut again, &ALL_MAJORS),
        "strip_nvidia twice changed more"
    );
    assert_eq!(text(&again), text(&s));
    assert_eq!(
        apply::foreign_gpu_device(&s, None, NODE_MAJORS),
        None,
        "the hook finds a GPU node that strip_nvidia left: {}",
        text(&s)
    );
    assert_eq!(
        request::gpu_nodes(&s, NODE_MAJORS).unwrap_or_default(),
        vec![],
        "a GPU node request survives strip_nvidia"
    );
    // Never the other way: `is_privileged` reads a rule of type `a` (or
    // none) as "every device" whatever its major, while strip_nvidia removes
    // it as a rule for that major, so `{"allow":true,"major":195}` is
    // privileged before the strip and not after. Both readings grant less
    // (finding 4, kept on purpose; see `edit::is_privileged`).
    assert!(
        !edit::is_privileged(&s) || edit::is_privileged(before),
        "strip_nvidia made a spec privileged"
    );
    assert_reads_back("strip_nvidia", &s);
}

fn void(before: &Value) {
    let mut s = before.clone();
    let changed = edit::void_visible_devices(&mut s);
    assert_eq!(
        changed,
        text(&s) != text(before),
        "void_visible_devices' changed flag"
    );
    assert_only_touched("void_visible_devices", before, &s, &[ENV]);
    let (was, now) = (array(before, ENV), array(&s, ENV));
    assert_eq!(was.len(), now.len());
    for (w, n) in was.iter().zip(now) {
        let voided = w
            .as_str()
            .is_some_and(|w| w.starts_with("NVIDIA_VISIBLE_DEVICES="))
            && n == "NVIDIA_VISIBLE_DEVICES=void";
        assert!(w == n || voided, "void_visible_devices rewrote {w}");
    }
    for e in now.iter().filter_map(Value::as_str) {
        if let Some(v) = e.strip_prefix("NVIDIA_VISIBLE_DEVICES=") {
            assert_eq!(
                Request::parse(Source::Env(NVD), v),
                Ok(None),
                "a voided env still asks for a GPU"
            );
        }
    }
    assert_idempotent("void_visible_devices", &s, |v| {
        edit::void_visible_devices(v);
    });
}

fn set_env(before: &Value) {
    let entry = format!("{NVD}=MIG-0b14a1a5-6c21-4bdc-9d0c-8c1e7a3b2a10");
    let s = edited("set_env", before, &[ENV], |v| {
        edit::set_env(v, NVD, &entry[NVD.len() + 1..])
    });
    let env = array(&s, ENV);
    assert_eq!(env.last().and_then(Value::as_str), Some(entry.as_str()));
    let others: Vec<&Value> = array(before, ENV)
        .iter()
        .filter(|e| {
            !e.as_str()
                .is_some_and(|e| e.starts_with("NVIDIA_VISIBLE_DEVICES="))
        })
        .collect();
    assert_eq!(env[..env.len() - 1].iter().collect::<Vec<_>>(), others);
}

fn edit_spec(before: &Value, request: &Request, plan: &migward::plan::Plan) {
    let host = sim_host(1);
    let config = migward_fuzz::config(host);
    let majors = GpuMajors {
        nodes: NODE_MAJORS,
        all: ALL_MAJORS.to_vec(),
    };
    let run = |v: &mut Value| {
        apply::edit_spec(v, request, plan, &config, &majors, false, &mut |_| {})
            .expect("edit_spec without a release hook or driver cannot fail")
    };
    let touched = [
        "/linux/devices",
        "/linux/resources/devices",
        "/mounts",
        "/process/env",
        "/annotations/migward~1devices",
    ];
    let s = edited("edit_spec", before, &touched, run);
    assert_eq!(
        apply::foreign_gpu_device(&s, Some(plan), NODE_MAJORS),
        None,
        "the hook refuses a spec the shim edited"
    );
    assert_reads_back("edit_spec", &s);
}

fn cdi(before: &Value) {
    let edits = fixed_cdi_edits();
    let host = sim_host(1);
    let run = |v: &mut Value| {
        migward::driver::apply_cdi(v, edits, &host.root, NODE_MAJORS, &mut |_| {});
    };
    let touched = [
        "/process/env",
        "/mounts",
        "/hooks/createContainer",
        "/linux/devices",
        "/linux/resources/devices",
    ];
    edited("apply_cdi", before, &touched, run);
    let mut stripped = before.clone();
    edit::strip_nvidia(&mut stripped, &ALL_MAJORS);
    run(&mut stripped);
    assert_eq!(
        apply::foreign_gpu_device(&stripped, None, NODE_MAJORS),
        None,
        "apply_cdi added a node that opens a GPU"
    );
}
