//! docker: the `migward` entry under `runtimes` in daemon.json, and with
//! `--default` the `default-runtime` (what protects containers that name no
//! runtime, and so no GPU).

use super::doc::{key, Doc, FileRecord, JsonDoc};
use super::{Edited, InstallError, Target, RUNTIME_NAME};
use serde_json::json;
use std::path::Path;

pub const DAEMON_JSON: &str = "/etc/docker/daemon.json";

pub fn install(
    file: &Path,
    text: Option<&str>,
    t: &Target,
    default: bool,
) -> Result<Edited, InstallError> {
    let invalid = InstallError::invalid(file);
    let mut doc = JsonDoc::parse(text.unwrap_or("")).map_err(invalid)?;
    let mut rec = FileRecord {
        path: DAEMON_JSON.into(),
        ..Default::default()
    };
    if text.is_none() {
        rec.created_with = Some("{}\n".into());
    }
    let mut said = Vec::new();
    // Whether an earlier install (its record lost) registered migward: only
    // then is a `default-runtime` of "migward" that install's to take back.
    let registered_before = text.and_then(registered).is_some();

    let runtimes = key(&["runtimes"]);
    if doc.ensure_object(&runtimes).map_err(invalid)? {
        rec.created.push(runtimes.clone());
    }
    let mut entry = json!({ "path": t.runtime_bin });
    if let Some(cfg) = &t.config {
        entry["runtimeArgs"] = json!(["--migward-config", cfg]);
    }
    let ours = key(&["runtimes", RUNTIME_NAME]);
    doc.set(&ours, entry).map_err(invalid)?;
    rec.note_set(ours, None);
    said.push(format!(
        "runtime `{RUNTIME_NAME}` = {}",
        t.runtime_bin.display()
    ));

    if default {
        let dk = key(&["default-runtime"]);
        let prior = doc.get(&dk);
        doc.set(&dk, json!(RUNTIME_NAME)).map_err(invalid)?;
        said.push(match &prior {
            Some(p) => format!("default runtime `{RUNTIME_NAME}` (was {p})"),
            None => {
                format!("default runtime `{RUNTIME_NAME}` (was runc, dockerd's built-in default)")
            }
        });
        let prior = prior
            .filter(|p| !(registered_before && p == RUNTIME_NAME))
            .map(|p| p.to_string());
        rec.note_set(dk, prior);
    }
    Ok(Edited {
        text: doc.render(),
        record: rec,
        said,
    })
}

/// Whether daemon.json registers migward, and as the default.
pub fn registered(text: &str) -> Option<bool> {
    let doc = JsonDoc::parse(text).ok()?;
    doc.get(&key(&["runtimes", RUNTIME_NAME]))?;
    Some(
        doc.get(&key(&["default-runtime"]))
            .is_some_and(|d| d == RUNTIME_NAME),
    )
}
