//! `migward leases`: who holds which instance; release and gc.

use super::table;
use crate::config::Config;
use crate::lease::liveness::ProcessId;
use crate::lease::{Lease, LeaseError, Store};
use crate::request::{Request, Source};
use serde_json::json;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub action: Option<Action>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Free the lease of a container id, or of the holder of a MIG/GPU UUID.
    Release {
        target: String,
        /// Free it even though the holder still runs.
        #[arg(long)]
        force: bool,
    },
    /// Reclaim every stale lease.
    Gc,
    /// Take a lease outside any engine, held by process PID (tests, benchmarks).
    #[command(hide = true)]
    Acquire {
        container_id: String,
        ids: String,
        #[arg(long)]
        holder_pid: u32,
    },
}

/// The pid shown for a holder: its init, else the process creating it.
fn shown_pid(lease: &Lease) -> Option<u32> {
    lease
        .holder
        .init
        .or_else(|| {
            lease
                .holder
                .runtime_root
                .as_deref()
                .and_then(|r| crate::lease::liveness::runc_init(r, &lease.holder.container_id))
        })
        .or(lease.holder.creator)
        .map(|p| p.pid)
}

pub fn run(config: &Config, args: &Args) -> anyhow::Result<ExitCode> {
    let store = Store::new(&config.state_dir);
    match &args.action {
        None => show(&store, args.json),
        Some(Action::Gc) => {
            let freed = store.gc()?;
            for l in &freed {
                println!("reclaimed the stale lease of {}", l.holder.container_id);
            }
            println!("{} stale lease(s) reclaimed", freed.len());
            // gc never removes what it cannot read: a person looks first.
            let corrupt = store.scan()?.1;
            for e in &corrupt {
                eprintln!("migward: left alone: {}", crate::chain(e));
            }
            Ok(exit_for(&corrupt))
        }
        Some(Action::Release { target, force }) => {
            // A container id, or a unique prefix of one (the table shows 24
            // characters of docker's 64), else a GPU or MIG UUID.
            let expanded = match crate::lease::validate_id(target) {
                Ok(()) => store.expand_id(target)?,
                Err(_) => None,
            };
            let target = expanded.as_ref().unwrap_or(target);
            // A corrupt lease file can only be named by its container id.
            if let Err(e @ LeaseError::Corrupt { .. }) = store.get(target) {
                if !force {
                    return Err(anyhow::Error::from(e).context("pass --force to remove it"));
                }
                store.release(target)?;
                println!("removed the corrupt lease file of container {target}");
                return Ok(ExitCode::SUCCESS);
            }
            let target_lc = target.to_ascii_lowercase();
            let lease = store
                .scan()?
                .0
                .into_iter()
                .find(|l| {
                    l.holder.container_id == *target
                        || l.units.iter().any(|u| {
                            u.gpu_uuid.eq_ignore_ascii_case(&target_lc)
                                || u.mig_uuid
                                    .as_deref()
                                    .is_some_and(|m| m.eq_ignore_ascii_case(&target_lc))
                        })
                })
                .ok_or_else(|| LeaseError::NotFound(crate::request::shown(target)))?;
            let id = lease.holder.container_id.clone();
            if lease.live() && !force {
                return Err(LeaseError::Live(id).into());
            }
            store.release(&id)?;
            println!("released the lease of container {id}");
            Ok(ExitCode::SUCCESS)
        }
        Some(Action::Acquire {
            container_id,
            ids,
            holder_pid,
        }) => {
            let request = Request::parse(Source::Argument, ids)?
                .ok_or_else(|| anyhow::anyhow!("no device ids given"))?;
            let who = crate::apply::HolderOf {
                id: container_id,
                bundle: None,
                creator: None,
                init: Some(
                    ProcessId::of(*holder_pid)
                        .ok_or_else(|| anyhow::anyhow!("process {holder_pid} does not exist"))?,
                ),
                runtime_root: None,
                pid_file: None,
            };
            let granted = crate::apply::grant(
                config,
                &serde_json::Value::Null,
                &request,
                crate::apply::Grantee::Holder(who),
                &mut |line| eprintln!("migward: {line}"),
            )?;
            println!("{}", granted.plan.visible());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A corrupt lease file refuses every GPU container on the host: a
/// command that finds one exits 1, so a script notices.
fn exit_for(corrupt: &[LeaseError]) -> ExitCode {
    match corrupt {
        [] => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    }
}

fn show(store: &Store, as_json: bool) -> anyhow::Result<ExitCode> {
    let (leases, corrupt) = store.scan()?;
    for e in &corrupt {
        eprintln!("migward: {}", crate::chain(e));
    }
    let corrupt_rows = corrupt.iter().filter_map(|e| match e {
        LeaseError::Corrupt { path, id, reason } => Some((path, id, reason)),
        _ => None,
    });
    if as_json {
        let bad: Vec<_> = corrupt_rows
            .map(|(path, id, reason)| {
                json!({
                    "container_id": id,
                    "path": path,
                    "reason": reason,
                    "fix": crate::lease::corrupt_fix(id, path),
                })
            })
            .collect();
        let out: Vec<_> = leases
            .iter()
            .map(|l| {
                json!({
                    "container_id": l.holder.container_id,
                    "units": l.units,
                    "labels": l.holder.labels,
                    "pid": shown_pid(l),
                    "since": l.holder.since,
                    "bundle": l.holder.bundle,
                    "live": l.live(),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "leases": out, "corrupt": bad }))?
        );
        return Ok(exit_for(&corrupt));
    }
    if leases.is_empty() && corrupt.is_empty() {
        println!("no leases");
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows: Vec<Vec<String>> = leases
        .iter()
        .flat_map(|l| {
            l.units.iter().map(move |u| {
                vec![
                    u.describe(),
                    l.holder.container_id.chars().take(24).collect(),
                    l.labels_text().trim().to_string(),
                    shown_pid(l)
                        .map(|p| p.to_string())
                        .unwrap_or_else(|| "-".into()),
                    l.holder.since.clone(),
                    if l.live() { "live" } else { "stale" }.to_string(),
                ]
            })
        })
        .collect();
    rows.extend(corrupt_rows.map(|(_, id, _)| {
        let mut row = vec![
            "? (unreadable file)".to_string(),
            id.chars().take(24).collect(),
        ];
        row.extend(["-", "-", "-", "corrupt"].map(String::from));
        row
    }));
    print!(
        "{}",
        table::render(
            "",
            &["INSTANCE", "HOLDER", "LABELS", "PID", "SINCE", "STATE"],
            &rows
        )
    );
    Ok(exit_for(&corrupt))
}
