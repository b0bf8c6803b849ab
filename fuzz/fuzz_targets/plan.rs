//! Request → resolution → plan → spec edit on the simulated hosts of the
//! built-in topologies (TopologyInventory stands in for NVML; host files
//! are the simulator's). The input's first byte picks the host; the rest is
//! a request value, or a config.json when it starts with `{`.
//! Properties: no panic; every planned node has its allow rule (DESIGN.md:
//! either alone leaves the device unusable) and a path of its own; every
//! grant is named in `NVIDIA_VISIBLE_DEVICES`; the shim's edit of a spec
//! (`strip_nvidia` + `apply_plan`) passes the hook's foreign-node check.
#![no_main]

use libfuzzer_sys::fuzz_target;
use migward::config::Exclusive;
use migward::request::{Request, Source};
use migward::spec::edit;
use migward_fuzz::{assert_one_line, policies, sim_host, ALL_MAJORS, NODE_MAJORS};
use serde_json::{json, Value};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let host = sim_host(usize::from(pick));
    let (request, spec) = if rest.first() == Some(&b'{') {
        let Ok(spec @ Value::Object(_)) = serde_json::from_slice::<Value>(rest) else {
            return;
        };
        let policy = &policies()[usize::from(pick >> 2) % 4];
        match Request::from_spec(&spec, policy) {
            Ok(Some(r)) => (r, spec),
            _ => return,
        }
    } else {
        let value = String::from_utf8_lossy(rest);
        match Request::parse(Source::Argument, &value) {
            Ok(Some(r)) => (r, json!({"ociVersion": "1.0.2"})),
            _ => return,
        }
    };

    let plan = match migward::plan::plan(&request, &host.gpus, &host.files) {
        Ok(plan) => plan,
        Err(e) => {
            assert_one_line("plan error", &migward::joined(&e));
            return;
        }
    };
    for d in &plan.devices {
        assert!(
            plan.rules
                .iter()
                .any(|r| (r.kind, r.major, r.minor) == (d.kind, d.major, d.minor)),
            "planned node {} has no allow rule",
            d.path
        );
        assert_eq!(
            plan.devices.iter().filter(|e| e.path == d.path).count(),
            1,
            "two planned nodes at {}",
            d.path
        );
    }
    let visible = plan.visible();
    for g in &plan.grants {
        let named = match &g.mig {
            Some(m) => visible.contains(&m.uuid) || visible.contains(&g.gpu_uuid),
            None => visible.contains(&g.gpu_uuid),
        };
        assert!(
            named,
            "grant {g:?} is not in NVIDIA_VISIBLE_DEVICES={visible}"
        );
    }
    for w in &plan.warnings {
        assert_one_line("plan warning", w);
    }
    for exclusive in [Exclusive::GpuInstance, Exclusive::ComputeInstance] {
        let units = migward::lease::units(&plan.grants, exclusive);
        for u in &units {
            assert_one_line("unit", &u.describe());
        }
    }

    let mut edited = spec;
    edit::strip_nvidia(&mut edited, &ALL_MAJORS);
    edit::apply_plan(&mut edited, &plan);
    assert_eq!(
        migward::apply::foreign_gpu_device(&edited, Some(&plan), NODE_MAJORS),
        None,
        "the hook refuses what the shim wrote, on {}",
        host.name
    );
});
