//! podman: the `migward` entry under `[engine.runtimes]` in containers.conf
//! (`podman --runtime migward`; with `--default`, `[engine] runtime`), and
//! the hooks.d files: the createRuntime hook for containers that carry the
//! `migward/devices` annotation, and the poststop hook that frees leases.

use super::doc::{key, Doc, FileRecord, TomlDoc};
use super::{Edited, InstallError, Target, RUNTIME_NAME};
use std::path::{Path, PathBuf};
use toml_edit::{Array, Item, Value};

pub const CONTAINERS_CONF: &str = "/etc/containers/containers.conf";
pub const HOOKS_DIR: &str = "/etc/containers/oci/hooks.d";
/// The hooks.d files install writes (the annotation hook and the poststop hook).
pub const HOOKS: [(&str, &str); 2] = [
    (
        "oci-migward-annotation.json",
        include_str!("../../hooks/oci-migward-annotation.json"),
    ),
    (
        "oci-migward-poststop.json",
        include_str!("../../hooks/oci-migward-poststop.json"),
    ),
];

pub fn install(
    file: &Path,
    text: Option<&str>,
    t: &Target,
    default: bool,
) -> Result<Edited, InstallError> {
    let invalid = InstallError::invalid(file);
    let mut doc = TomlDoc::parse(text.unwrap_or("")).map_err(invalid)?;
    let mut rec = FileRecord {
        path: CONTAINERS_CONF.into(),
        ..Default::default()
    };
    if text.is_none() {
        rec.created_with = Some(String::new());
    }
    let mut said = Vec::new();
    let runtimes = key(&["engine", "runtimes"]);
    rec.created = doc.ensure_tables(&runtimes).map_err(invalid)?;
    if let Some(t) = doc.table_at_mut(&runtimes) {
        // An `[engine.runtimes]` written here gets a header of its own.
        t.set_implicit(false);
    }
    let ours = key(&["engine", "runtimes", RUNTIME_NAME]);
    let path = t.runtime_bin.to_string_lossy();
    doc.set_value(&ours, Value::Array(Array::from_iter([path.as_ref()])))
        .map_err(invalid)?;
    rec.note_set(ours, None);
    said.push(format!(
        "runtime `{RUNTIME_NAME}` = {path} (podman --runtime {RUNTIME_NAME})"
    ));
    if default {
        let dk = key(&["engine", "runtime"]);
        let prior = doc
            .set_string_noted(
                &mut rec,
                dk,
                RUNTIME_NAME,
                text.and_then(registered).is_some(),
            )
            .map_err(invalid)?;
        said.push(format!(
            "[engine] runtime = \"{RUNTIME_NAME}\" (was {})",
            prior.as_deref().unwrap_or("unset")
        ));
    }
    Ok(Edited {
        text: doc.render(),
        record: rec,
        said,
    })
}

/// The hooks.d files, with this host's paths (binary and config).
pub fn hooks(t: &Target) -> Vec<(PathBuf, String)> {
    let config = super::config_path(t);
    HOOKS
        .iter()
        .map(|(name, template)| {
            let mut v: serde_json::Value =
                serde_json::from_str(template).expect("shipped hook file is JSON");
            let hook = &mut v["hook"];
            hook["path"] = serde_json::json!(t.migward_bin);
            hook["env"] = serde_json::json!([
                "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                format!("{}={}", crate::config::ENV_VAR, config.display())
            ]);
            let mut text = serde_json::to_string_pretty(&v).expect("JSON value serializes");
            text.push('\n');
            (Path::new(HOOKS_DIR).join(name), text)
        })
        .collect()
}

/// Whether containers.conf registers migward, and as the default.
pub fn registered(text: &str) -> Option<bool> {
    let doc = TomlDoc::parse(text).ok()?;
    doc.get(&key(&["engine", "runtimes", RUNTIME_NAME]))?;
    let d = doc.get(&key(&["engine", "runtime"]));
    Some(d.and_then(Item::as_str) == Some(RUNTIME_NAME))
}
