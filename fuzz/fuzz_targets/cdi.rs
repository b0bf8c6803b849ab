//! CDI specs (driver/cdi.rs): any bytes as a `.yaml` file in a CDI
//! directory, read by `cdi::read` and `cdi::find` as `driver = "auto"`
//! reads them on every granted container start, then applied to a spec
//! with `driver::apply_cdi`.
//! Properties: no panic; what is applied is idempotent; every mount has
//! absolute paths and every hook an absolute path and an env of its own
//! (CVE-2025-23266); no common node that opens a GPU or MIG instance gets
//! into the spec.
//! `read` refuses a spec not owned by root before it parses the edits, so
//! past that check this target only reaches the parser when it runs as
//! root (scripts/fuzz.sh says so).
#![no_main]

use libfuzzer_sys::fuzz_target;
use migward::driver::{self, cdi};
use migward_fuzz::{assert_idempotent, assert_one_line, scratch, sim_host, NODE_MAJORS};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;

fuzz_target!(|data: &[u8]| {
    let dir = scratch().join("cdi");
    let file = dir.join("nvidia.yaml");
    if !dir.exists() {
        std::fs::create_dir_all(&dir).unwrap();
    }
    std::fs::write(&file, data).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();

    let edits = match cdi::read(&file) {
        Ok(Some(edits)) => edits,
        Ok(None) => return,
        Err(e) => {
            assert_one_line("cdi::read", &migward::joined(&e));
            return;
        }
    };
    let found = cdi::find(&[dir]).expect("find reads what read read");
    assert_eq!(found.as_ref(), Some(&edits), "find and read disagree");

    for m in &edits.mounts {
        for k in ["source", "destination"] {
            assert!(
                m[k].as_str().is_some_and(|p| p.starts_with('/')),
                "mount {k} is not absolute: {m}"
            );
        }
    }
    for (_, h) in &edits.hooks {
        assert!(
            h["path"].as_str().is_some_and(|p| p.starts_with('/')),
            "hook path: {h}"
        );
        assert!(
            h["env"].as_array().is_some_and(|e| !e.is_empty()),
            "hook without env: {h}"
        );
    }

    let host = sim_host(1);
    let mut spec = json!({
        "ociVersion": "1.0.2",
        "process": {"env": ["PATH=/bin", "NVIDIA_VISIBLE_DEVICES=all"]},
        "linux": {"devices": [], "resources": {"devices": [{"allow": false, "access": "rwm"}]}},
    });
    let mut warnings = Vec::new();
    let run = |v: &mut Value, warnings: &mut Vec<String>| {
        driver::apply_cdi(v, &edits, &host.root, NODE_MAJORS, &mut |w| {
            warnings.push(w)
        });
    };
    run(&mut spec, &mut warnings);
    for w in &warnings {
        assert_one_line("apply_cdi warning", w);
    }
    assert_idempotent("apply_cdi", &spec, |v| run(v, &mut Vec::new()));
    assert_eq!(
        migward::apply::foreign_gpu_device(&spec, None, NODE_MAJORS),
        None,
        "a CDI common node opens a GPU"
    );
});
