//! `migward resolve <ids> | --bundle DIR [--json]`: what a request would get.

use super::table;
use crate::config::Config;
use crate::plan::Plan;
use crate::request::{shown, Request, Source};
use anyhow::{bail, Context};
use serde_json::json;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Device ids (MIG-<uuid>, GPU-<uuid>, N, N:M, a profile such as
    /// 1g.10gb, all), comma or space separated.
    #[arg(value_parser = clap::value_parser!(OsString), allow_negative_numbers = true)]
    pub ids: Vec<OsString>,
    /// Read the request from DIR/config.json instead, as the shim would
    /// (with its policy: privileged, `all` and engine_devices refusals).
    #[arg(long, conflicts_with = "ids")]
    pub bundle: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn request_of(config: &Config, args: &Args) -> anyhow::Result<Option<Request>> {
    if let Some(bundle) = &args.bundle {
        let (_, spec) = crate::spec::load_bundle(bundle)?;
        let majors = crate::apply::gpu_majors(config);
        return Ok(crate::apply::gpu_request(
            config,
            &spec,
            &bundle.display().to_string(),
            &majors,
            &mut |m| eprintln!("warning: {m}"),
        )?);
    }
    if args.ids.is_empty() {
        bail!("no device ids given: pass ids (e.g. MIG-<uuid>) or --bundle DIR");
    }
    let mut values = Vec::new();
    for id in &args.ids {
        match id.to_str() {
            Some(s) => values.push(s.to_string()),
            None => bail!(
                "argument {} is not valid UTF-8: write device ids as plain ASCII",
                shown(&id.to_string_lossy())
            ),
        }
    }
    let request = Request::parse(Source::Argument, &values.join(","))?;
    if request.as_ref().is_some_and(Request::is_all) && !config.allow_all {
        eprintln!("migward: warning: a container asking for all would be refused: allow_all = false in the migward config");
    }
    Ok(request)
}

pub fn run(config: &Config, args: &Args) -> anyhow::Result<ExitCode> {
    let Some(request) = request_of(config, args)? else {
        if args.json {
            println!(
                "{}",
                json!({"request": null, "grants": [], "devices": [], "rules": [], "env": {}, "warnings": []})
            );
        } else {
            println!("no GPU request: the container gets no NVIDIA device");
        }
        return Ok(ExitCode::SUCCESS);
    };
    // A look, not a lease: a profile shows the instance a container would
    // be given now.
    let plan = crate::apply::grant(
        config,
        &serde_json::Value::Null,
        &request,
        crate::apply::Grantee::Look,
        &mut |_| {},
    )
    .context("cannot resolve the request")?
    .plan;
    for w in &plan.warnings {
        eprintln!("migward: warning: {w}");
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&plan_json(&request, &plan))?
        );
    } else {
        print!("{}", render(&request, &plan));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn plan_json(request: &Request, plan: &Plan) -> serde_json::Value {
    let ids: Vec<String> = request.ids.iter().map(ToString::to_string).collect();
    let env: serde_json::Map<String, serde_json::Value> = plan
        .env
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let rules: Vec<_> = plan
        .rules
        .iter()
        .map(|r| json!({"allow": true, "type": r.kind, "major": r.major, "minor": r.minor, "access": r.access}))
        .collect();
    json!({
        "request": {"source": request.source.to_string(), "ids": ids},
        "grants": plan.grants,
        "devices": plan.devices,
        "rules": rules,
        "env": env,
        "warnings": plan.warnings,
    })
}

fn render(request: &Request, plan: &Plan) -> String {
    let ids: Vec<String> = request.ids.iter().map(ToString::to_string).collect();
    let mut out = format!(
        "request from {}: {}\n\ngrants:\n",
        request.source,
        ids.join(",")
    );
    for g in &plan.grants {
        match &g.mig {
            Some(m) => out.push_str(&format!(
                "  GPU {} MIG {} gi {} ci {}  {}\n",
                g.gpu_index, m.profile, m.gi, m.ci, m.uuid
            )),
            None => out.push_str(&format!("  GPU {} whole  {}\n", g.gpu_index, g.gpu_uuid)),
        }
    }
    out.push_str("\ndevices:\n");
    let rows: Vec<Vec<String>> = plan
        .devices
        .iter()
        .map(|d| {
            vec![
                d.path.clone(),
                d.kind.to_string(),
                d.major.to_string(),
                d.minor.to_string(),
                format!("{:04o}", d.mode),
            ]
        })
        .collect();
    out.push_str(&table::render(
        "  ",
        &["PATH", "TYPE", "MAJOR", "MINOR", "MODE"],
        &rows,
    ));
    out.push_str("\ndevice cgroup allow rules:\n");
    for r in &plan.rules {
        out.push_str(&format!(
            "  {} {}:{} {}\n",
            r.kind, r.major, r.minor, r.access
        ));
    }
    out.push_str("\nenv:\n");
    for (k, v) in &plan.env {
        out.push_str(&format!("  {k}={v}\n"));
    }
    out
}
