//! Topology files (topology/mod.rs), as `migward simulate <file>` and the
//! fake NVML read them. Validation is what keeps a simulated host honest
//! ("fixtures cannot lie"), so what it accepts must be a layout a GPU
//! could have.
//! Properties: no panic; an error is one line; an accepted topology keeps
//! its placements inside the 8 memory slices without overlap, uses at most
//! 7 compute slices per GPU, gives each compute instance at least one slice
//! and no more than its GPU instance has, keeps GI ids in 1..=14 and unique,
//! minors in 0..=31 and unique; and its inventory lists every instance.
#![no_main]

use libfuzzer_sys::fuzz_target;
use migward::inventory::{Inventory, TopologyInventory};
use migward::topology::{Topology, COMPUTE_SLICES, MEMORY_SLICES};
use migward_fuzz::assert_one_line;
use std::collections::BTreeSet;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let topo = match Topology::parse(text, "fuzz.toml") {
        Ok(t) => t,
        Err(e) => {
            assert_one_line("Topology::parse", &migward::joined(&e));
            return;
        }
    };
    let mut minors = BTreeSet::new();
    for gpu in &topo.gpus {
        assert!(
            gpu.minor <= 31 && minors.insert(gpu.minor),
            "minor {}",
            gpu.minor
        );
        let mut memory = [false; MEMORY_SLICES as usize];
        let mut compute = 0u64;
        let mut gis = BTreeSet::new();
        for gi in &gpu.instances {
            let p = gi.profile;
            assert!(
                (1..=14).contains(&gi.gi) && gis.insert(gi.gi),
                "gi {}",
                gi.gi
            );
            for s in gi.start..gi.start + p.memory_slices {
                assert!(
                    s < MEMORY_SLICES && !memory[s as usize],
                    "memory slice {s} twice"
                );
                memory[s as usize] = true;
            }
            compute += u64::from(p.compute_slices);
            let ci_total: u64 = gi
                .compute_instances
                .iter()
                .map(|c| u64::from(c.compute_slices))
                .sum();
            assert!(
                gi.compute_instances.iter().all(|c| c.compute_slices >= 1)
                    && ci_total <= u64::from(p.compute_slices),
                "gi {} ({}): compute instances take {ci_total} of {} slices: {:?}",
                gi.gi,
                p.name,
                p.compute_slices,
                gi.compute_instances
                    .iter()
                    .map(|c| c.compute_slices)
                    .collect::<Vec<_>>()
            );
        }
        assert!(
            compute <= u64::from(COMPUTE_SLICES),
            "gpu {} uses {compute} compute slices",
            gpu.index
        );
    }
    let gpus = TopologyInventory(topo.clone())
        .gpus()
        .expect("a topology's inventory");
    for (g, t) in gpus.iter().zip(&topo.gpus) {
        let cis: usize = t.instances.iter().map(|i| i.compute_instances.len()).sum();
        assert_eq!(
            g.mig_devices.len(),
            cis,
            "gpu {}: inventory lists another count",
            t.index
        );
    }
});
