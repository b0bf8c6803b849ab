//! The OCI hook's stdin (hook/mod.rs): the container state for
//! `createRuntime`/`prestart`/`poststop` (`read_state`, `poststop` on a
//! scratch lease store), and podman's `precreate`, which reads a
//! config.json and prints the edited one. The config points at a simulated
//! host with no NVML, so a GPU request ends in an error, not a grant.
//! Properties: no panic; `poststop` never fails loudly (it returns a line
//! for stderr); `precreate` prints an OCI spec, echoes a spec it has no
//! reason to change byte for byte, and is a fixed point on its own output.
#![no_main]

use libfuzzer_sys::fuzz_target;
use migward::hook;
use migward_fuzz::{assert_one_line, config, scratch, sim_host};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(state) = hook::read_state(data) {
        let _ = (state.id.len(), state.pid, state.bundle);
    }
    if let Some(line) = hook::poststop(data, &scratch().join("hook-state")) {
        assert_one_line("poststop", &line);
    }

    let config = config(sim_host(1));
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    if hook::precreate(data, &mut out, &config, &mut |w| warnings.push(w)).is_err() {
        return;
    }
    migward::spec::parse(Path::new("precreate output"), &out)
        .expect("precreate printed something that is not an OCI spec");
    let mut again = Vec::new();
    hook::precreate(&out[..], &mut again, &config, &mut |_| {})
        .expect("precreate refuses its own output");
    assert!(
        again == out,
        "precreate is not a fixed point:\nonce:  {}\ntwice: {}",
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&again)
    );
    // No NVML: only a spec without a GPU request gets this far, stripped of
    // engine-provided NVIDIA nodes and with NVIDIA_VISIBLE_DEVICES voided.
    let mut spec: serde_json::Value = serde_json::from_slice(data).unwrap();
    let changed = migward::spec::edit::strip_nvidia(&mut spec, &migward_fuzz::ALL_MAJORS)
        | migward::spec::edit::void_visible_devices(&mut spec);
    if changed {
        assert!(
            out == serde_json::to_vec(&spec).unwrap(),
            "precreate printed another edit"
        );
    } else {
        assert!(
            out == data,
            "precreate rewrote a spec it had no reason to change"
        );
    }
});
