//! Host text formats (inventory/procfs.rs and its neighbours): the
//! `Character devices:` section of `/proc/devices`, the `mig-minors` table,
//! a capability `access` file, `/proc/<pid>/cgroup` (hook/nodes.rs) and
//! `/proc/<pid>/stat` (lease/liveness.rs: a process names itself there, so
//! its `comm` is chosen by whoever runs it). The same text is also read as
//! `mig-minors` through `HostFiles` to map engine-provided cap nodes back
//! to instances (`plan::nodes::wants`).
//! Properties: no panic; a mode is at most 0o777; on a well-formed table
//! `MigMinors::get` and `MigMinors::name_of` are inverses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use migward::inventory::procfs::{self, CapName, HostFiles, MigMinors};
use migward::request::SpecNode;
use migward_fuzz::{scratch, sim_host};
use std::collections::HashSet;
use std::path::PathBuf;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();

    let _ = procfs::parse_proc_devices(&text);
    if let Some(mode) = procfs::parse_cap_mode(&text) {
        assert!(mode <= 0o777, "cap mode {mode:o}");
    }
    let _ = migward::hook::nodes::devices_cgroup(&text);
    let _ = migward::lease::liveness::parse_start_time(&text);

    let table = MigMinors::from_text(PathBuf::from("mig-minors"), text.clone());
    for (gpu, gi, ci) in [(0, 1, None), (0, 1, Some(0)), (1, 2, Some(0)), (0, 0, None)] {
        if let Err(e) = table.get(gpu, gi, ci) {
            let _ = e.to_string();
        }
    }
    let lines = well_formed(&text);
    for (name, minor) in lines.iter().flatten().take(16) {
        match table.name_of(*minor) {
            Some(CapName::Gi { gpu, gi }) if *name == format!("gpu{gpu}/gi{gi}/access") => {
                assert_eq!(table.get(gpu, gi, None).ok(), Some(*minor), "{name}");
            }
            Some(CapName::Ci { gpu, gi, ci })
                if *name == format!("gpu{gpu}/gi{gi}/ci{ci}/access") =>
            {
                assert_eq!(table.get(gpu, gi, Some(ci)).ok(), Some(*minor), "{name}");
            }
            _ => {}
        }
    }

    // The same text as a host's mig-minors, beside a real /proc/devices;
    // the cap nodes asked for are those of the minors the text names.
    let root = scratch().join("procfs-host");
    let minors_path = root.join("proc/driver/nvidia-caps/mig-minors");
    if !minors_path.exists() {
        let devices = std::fs::read_to_string(sim_host(1).root.join("proc/devices")).unwrap();
        std::fs::create_dir_all(minors_path.parent().unwrap()).unwrap();
        std::fs::write(root.join("proc/devices"), devices).unwrap();
    }
    std::fs::write(&minors_path, &text).unwrap();
    let mut nodes = vec![SpecNode {
        path: "/dev/nvidia0".into(),
        major: 195,
        minor: 0,
    }];
    nodes.extend(
        text.split_whitespace()
            .filter_map(|w| w.parse::<u32>().ok())
            .take(4)
            .map(|minor| SpecNode {
                path: format!("/dev/nvidia-caps/nvidia-cap{minor}"),
                major: 508,
                minor,
            }),
    );
    if let Err(e) = migward::plan::nodes::wants(&nodes, &HostFiles::new(&root)) {
        let _ = e.to_string();
    }
});

/// `(name, minor)` of each line when every line is `name minor` separated
/// by spaces or tabs, with no name or minor twice; `None` otherwise.
fn well_formed(text: &str) -> Option<Vec<(String, u32)>> {
    let mut out = Vec::new();
    let (mut names, mut minors) = (HashSet::new(), HashSet::new());
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (name, minor) = line.split_once([' ', '\t'])?;
        let minor = minor.trim_matches([' ', '\t']);
        if name.chars().any(char::is_whitespace) || minor.chars().any(char::is_whitespace) {
            return None;
        }
        let minor: u32 = minor.parse().ok()?;
        if !names.insert(name.to_string()) || !minors.insert(minor) {
            return None;
        }
        out.push((name.to_string(), minor));
    }
    Some(out)
}
