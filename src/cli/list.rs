//! `migward list [--json]`: every GPU and MIG device, with a slice map.

use super::table;
use crate::config::Config;
use crate::inventory::procfs::{HostFiles, MigMinors};
use crate::inventory::{Gpu, Inventory, MigDevice, NvmlInventory};
use crate::lease::{Lease, Store, Unit};
use crate::topology::MEMORY_SLICES;
use serde_json::json;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON (a stable interface, see README).
    #[arg(long)]
    pub json: bool,
}

pub fn run(config: &Config, args: &Args) -> anyhow::Result<ExitCode> {
    let gpus = NvmlInventory::new(&config.nvml_library).gpus()?;
    let host = HostFiles::new(&config.host_root);
    let has_mig = gpus.iter().any(|g| !g.mig_devices.is_empty());
    let minors = match has_mig.then(|| host.mig_minors()).transpose() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("migward: warning: cap minors unknown: {}", crate::chain(&e));
            None
        }
    };
    let leases = match Store::new(&config.state_dir).all() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("migward: warning: holders unknown: {}", crate::chain(&e));
            Vec::new()
        }
    };
    let holders = Holders(&leases);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&to_json(&gpus, minors.as_ref(), &holders))?
        );
    } else {
        print!("{}", render(&gpus, minors.as_ref(), &holders));
    }
    Ok(ExitCode::SUCCESS)
}

/// Who holds what, for display.
pub struct Holders<'a>(pub &'a [Lease]);

impl Holders<'_> {
    /// The lease covering MIG device `m` of `gpu`, if any.
    fn of(&self, gpu: &Gpu, m: &MigDevice) -> Option<&Lease> {
        let unit = Unit {
            gpu_uuid: gpu.uuid.clone(),
            gpu_index: gpu.index,
            gi: Some(m.gi),
            ci: Some(m.ci),
            mig_uuid: None,
            profile: None,
        };
        self.0
            .iter()
            .find(|l| l.units.iter().any(|u| u.overlaps(&unit)))
    }

    fn text(&self, gpu: &Gpu, m: &MigDevice) -> String {
        match self.of(gpu, m) {
            Some(l) if l.live() => l.who(),
            Some(l) => format!("{} (stale)", l.who()),
            None => "-".into(),
        }
    }
}

fn cap(minors: Option<&MigMinors>, gpu: u32, gi: u32, ci: Option<u32>) -> Option<u32> {
    minors.and_then(|m| m.get(gpu, gi, ci).ok())
}

pub fn to_json(gpus: &[Gpu], minors: Option<&MigMinors>, holders: &Holders) -> serde_json::Value {
    let gpus: Vec<_> = gpus
        .iter()
        .map(|g| {
            let devs: Vec<_> = g
                .mig_devices
                .iter()
                .map(|m| {
                    json!({
                        "index": m.index,
                        "uuid": m.uuid,
                        "profile": m.profile,
                        "gi": m.gi,
                        "ci": m.ci,
                        "placement": m.placement,
                        "gi_cap_minor": cap(minors, g.minor, m.gi, None),
                        "ci_cap_minor": cap(minors, g.minor, m.gi, Some(m.ci)),
                        "multiprocessors": m.multiprocessors,
                        "memory_mb": m.memory_mb,
                        "holder": holders.of(g, m).map(|l| json!({
                            "container_id": l.holder.container_id,
                            "live": l.live(),
                        })),
                    })
                })
                .collect();
            json!({
                "index": g.index,
                "minor": g.minor,
                "uuid": g.uuid,
                "name": g.name,
                "mig_mode": g.mig_mode,
                "mig_devices": devs,
            })
        })
        .collect();
    json!({ "gpus": gpus })
}

fn mode_word(on: bool) -> &'static str {
    if on {
        "enabled"
    } else {
        "disabled"
    }
}

/// The eight memory slices in a row: which GI covers each, `free` if none.
pub fn slice_map(gpu: &Gpu) -> String {
    let mut cells = Vec::new();
    for s in 0..MEMORY_SLICES {
        let owner = gpu
            .mig_devices
            .iter()
            .find(|m| (m.placement.start..m.placement.start + m.placement.size).contains(&s));
        cells.push(match owner {
            Some(m) => format!("gi{}", m.gi),
            None => "free".into(),
        });
    }
    let header: Vec<String> = (0..MEMORY_SLICES).map(|s| format!("{s:<4}")).collect();
    let row: Vec<String> = cells.iter().map(|c| format!("{c:<4}")).collect();
    format!(
        "  memory slices  {}\n                 {}\n",
        header.join(" ").trim_end(),
        row.join(" ").trim_end()
    )
}

pub fn render(gpus: &[Gpu], minors: Option<&MigMinors>, holders: &Holders) -> String {
    let mut out = String::new();
    if gpus.is_empty() {
        out.push_str("no GPU found\n");
    }
    for g in gpus {
        let pending = if g.mig_mode.pending != g.mig_mode.current {
            format!(
                ", pending {} (reset the GPU to apply)",
                mode_word(g.mig_mode.pending)
            )
        } else {
            String::new()
        };
        out.push_str(&format!(
            "GPU {}  {}  {}  minor {}  MIG {}{pending}\n",
            g.index,
            g.name,
            g.uuid,
            g.minor,
            mode_word(g.mig_mode.current)
        ));
        if !g.mig_mode.current {
            out.push_str("  whole GPU: /dev/nvidia");
            out.push_str(&format!("{}\n\n", g.minor));
            continue;
        }
        out.push_str(&slice_map(g));
        let opt = |v: Option<u32>| v.map(|v| v.to_string()).unwrap_or_else(|| "?".into());
        let rows: Vec<Vec<String>> = g
            .mig_devices
            .iter()
            .map(|m| {
                vec![
                    format!("{}:{}", g.index, m.index),
                    m.profile.clone(),
                    m.gi.to_string(),
                    m.ci.to_string(),
                    format!("{}:{}", m.placement.start, m.placement.size),
                    format!(
                        "{},{}",
                        opt(cap(minors, g.minor, m.gi, None)),
                        opt(cap(minors, g.minor, m.gi, Some(m.ci)))
                    ),
                    m.uuid.clone(),
                    holders.text(g, m),
                ]
            })
            .collect();
        if rows.is_empty() {
            out.push_str("  no MIG instances: create some with `nvidia-smi mig -cgi ... -C`\n\n");
            continue;
        }
        out.push_str(&table::render(
            "  ",
            &[
                "N:M",
                "PROFILE",
                "GI",
                "CI",
                "PLACEMENT",
                "CAPS",
                "UUID",
                "HOLDER",
            ],
            &rows,
        ));
        out.push('\n');
    }
    out
}
