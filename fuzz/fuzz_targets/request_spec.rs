//! A container's config.json as the shim and the hook read it: the OCI
//! check (`spec::parse`), then every request source under each policy
//! (`Request::read`), the refusals of `apply::gpu_request`, and the other
//! readers of a spec (privileged, foreign GPU nodes, lease labels).
//! Readers also get JSON that is not an OCI spec: they must not panic on
//! any shape. Properties: no panic; request errors and labels are one line;
//! a request is never empty.
#![no_main]

use libfuzzer_sys::fuzz_target;
use migward::apply::{self, GpuMajors};
use migward::request::{self, Request};
use migward::spec::{self, edit};
use migward_fuzz::{assert_one_line, policies, sim_host, ALL_MAJORS, NODE_MAJORS};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = spec::parse(Path::new("/bundle/config.json"), data) {
        let _ = e.to_string();
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };

    for policy in policies() {
        match Request::read(&value, &policy) {
            Ok(reading) => {
                if let Some(r) = &reading.request {
                    assert!(!r.ids.is_empty(), "empty request from {}", r.source);
                    for id in &r.ids {
                        assert_one_line("device id", &id.to_string());
                    }
                }
                for note in &reading.ignored {
                    assert_one_line("ignored", note);
                }
            }
            Err(e) => assert_one_line("Request::read", &e.to_string()),
        }
    }

    let majors = GpuMajors {
        nodes: NODE_MAJORS,
        all: ALL_MAJORS.to_vec(),
    };
    let mut config = migward_fuzz::config(sim_host(0));
    for (allow_all, allow_privileged, engine) in [
        (false, false, migward::config::EngineDevices::Lease),
        (true, true, migward::config::EngineDevices::Refuse),
    ] {
        config.allow_all = allow_all;
        config.allow_privileged = allow_privileged;
        config.engine_devices = engine;
        let mut warnings = Vec::new();
        match apply::gpu_request(&config, &value, "fuzz", &majors, &mut |w| warnings.push(w)) {
            Ok(_) => {}
            Err(e) => assert_one_line("gpu_request", &migward::joined(&e)),
        }
        for w in &warnings {
            assert_one_line("gpu_request warning", w);
        }
    }

    let _ = edit::is_privileged(&value);
    if let Ok(nodes) = request::gpu_nodes(&value, NODE_MAJORS) {
        for n in &nodes {
            assert_one_line("gpu node", &n.to_string());
        }
    }
    if let Some(foreign) = apply::foreign_gpu_device(&value, None, NODE_MAJORS) {
        assert_one_line("foreign device", &foreign);
    }
    for (k, v) in migward::lease::labels_from_spec(&value) {
        assert_one_line("label", &format!("{k}={v}"));
    }
    if let Ok(env) = request::spec_env(&value) {
        let _ = request::env_value(&env, "NVIDIA_VISIBLE_DEVICES");
    }
    let _ = spec::rootfs(&value, Path::new("/bundle"));
});
