//! containerd: a runtime `migward` in the CRI plugin's table, made from a
//! copy of the `runc` runtime (so `SystemdCgroup`, `Root` and the rest carry
//! over) with `BinaryName` set to migward-runtime and the annotations that
//! must reach the spec. Config version 2 (containerd 1.6/1.7) and 3 (2.x).
//!
//! The main file is edited in place, never through an `imports` drop-in:
//! in 1.6/1.7 a drop-in replaces the whole CRI section, silently dropping
//! `sandbox_image`, `SystemdCgroup` and the runc runtime.

use super::doc::{key, set_in_table, Doc, FileRecord, KeyPath, TomlDoc};
use super::{Edited, InstallError, Target, RUNTIME_NAME};
use std::path::Path;
use toml_edit::{Array, Item, Table, Value};

pub const CONFIG_TOML: &str = "/etc/containerd/config.toml";
/// Annotations that must reach the spec, by where they come from. A
/// container's annotations come from the kubelet (a device plugin's
/// `cdi.k8s.io/*`); a pod's are written by its author, so CDI's are not
/// passed from there: a pod annotation `cdi.k8s.io/…` would forge what only
/// the device plugin may say.
pub const ANNOTATIONS: [(&str, &[&str]); 2] = [
    ("pod_annotations", &["migward/*"]),
    ("container_annotations", &["migward/*", "cdi.k8s.io/*"]),
];

/// The CRI plugin's `containerd` table for the config's version.
fn cri_path(doc: &TomlDoc) -> Result<KeyPath, String> {
    let version = doc.doc.get("version").and_then(Item::as_integer);
    let plugin = match version {
        Some(2) => "io.containerd.grpc.v1.cri",
        Some(3) => "io.containerd.cri.v1.runtime",
        Some(v) => return Err(format!("config version {v} is not supported (2 or 3)")),
        None => {
            return Err("no `version` (a version 1 config): run `containerd config migrate` (1.7+) or start from `containerd config default`".into())
        }
    };
    Ok(key(&["plugins", plugin, "containerd"]))
}

pub fn install(
    file: &Path,
    text: Option<&str>,
    t: &Target,
    default: bool,
) -> Result<Edited, InstallError> {
    let invalid = InstallError::invalid(file);
    let text = text.ok_or_else(|| InstallError::Missing {
        path: file.into(),
        what: "containerd's config: write the full default first (`containerd config default > /etc/containerd/config.toml`), then run this again".into(),
    })?;
    let mut doc = TomlDoc::parse(text).map_err(invalid)?;
    let base = cri_path(&doc).map_err(invalid)?;
    let mut rec = FileRecord {
        path: CONFIG_TOML.into(),
        ..Default::default()
    };
    let mut said = Vec::new();

    let runtimes: KeyPath = [base.clone(), key(&["runtimes"])].concat();
    rec.created = doc.ensure_tables(&runtimes).map_err(invalid)?;
    let table = doc
        .table_at_mut(&runtimes)
        .ok_or_else(|| invalid("no runtimes table".into()))?;
    let from_runc = table.get("runc").and_then(Item::as_table).is_some();
    let runtime = migward_runtime(table, t);
    table.insert(RUNTIME_NAME, Item::Table(runtime));
    rec.note_set([runtimes, key(&[RUNTIME_NAME])].concat(), None);
    said.push(format!(
        "runtime `{RUNTIME_NAME}` (io.containerd.runc.v2, BinaryName = {}){}; annotations reach the spec: {}",
        t.runtime_bin.display(),
        if from_runc { ", options copied from `runc`" } else { "" },
        ANNOTATIONS
            .iter()
            .map(|(name, list)| format!("{name} {}", list.join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    ));

    if default {
        let dk: KeyPath = [base, key(&["default_runtime_name"])].concat();
        let prior = doc
            .set_string_noted(&mut rec, dk, RUNTIME_NAME, registered(text).is_some())
            .map_err(invalid)?;
        said.push(format!(
            "default_runtime_name = \"{RUNTIME_NAME}\" (was {})",
            prior.as_deref().unwrap_or("unset")
        ));
    }
    Ok(Edited {
        text: doc.render(),
        record: rec,
        said,
    })
}

/// The `migward` runtime table: a copy of `runc` when there is one (same
/// layout, indentation and options), placed right after it.
fn migward_runtime(runtimes: &Table, t: &Target) -> Table {
    let runc = runtimes.get("runc").and_then(Item::as_table);
    let mut rt = runc.cloned().unwrap_or_default();
    // After runc and its sub-tables (tables are written in position order).
    let last = runc.map(last_position).unwrap_or(None);
    set_in_table(
        &mut rt,
        "runtime_type",
        Value::from("io.containerd.runc.v2"),
    );
    for (name, wanted) in ANNOTATIONS {
        let mut list: Vec<String> = rt
            .get(name)
            .and_then(Item::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        for &a in wanted {
            if !list.iter().any(|x| x == a) {
                list.push(a.to_string());
            }
        }
        set_in_table(&mut rt, name, Value::Array(list.iter().collect::<Array>()));
    }
    if !rt.contains_table("options") {
        let mut o = Table::new();
        if let Some(d) = rt.decor().prefix().and_then(|p| p.as_str()) {
            o.decor_mut().set_prefix(d.to_string());
        }
        rt.insert("options", Item::Table(o));
    }
    if let Some(o) = rt.get_mut("options").and_then(Item::as_table_mut) {
        set_in_table(
            o,
            "BinaryName",
            Value::from(t.runtime_bin.to_string_lossy().as_ref()),
        );
    }
    if let Some(pos) = last {
        set_positions(&mut rt, pos);
    }
    rt
}

fn last_position(t: &Table) -> Option<usize> {
    let mut max = t.position();
    for (_, item) in t.iter() {
        if let Some(sub) = item.as_table() {
            max = max.max(last_position(sub));
        }
    }
    max
}

fn set_positions(t: &mut Table, pos: usize) {
    t.set_position(pos);
    for (_, item) in t.iter_mut() {
        if let Some(sub) = item.as_table_mut() {
            set_positions(sub, pos);
        }
    }
}

/// Whether the config registers migward, and as the default.
pub fn registered(text: &str) -> Option<bool> {
    let doc = TomlDoc::parse(text).ok()?;
    let base = cri_path(&doc).ok()?;
    doc.table_at(&[base.clone(), key(&["runtimes", RUNTIME_NAME])].concat())?;
    let d = doc.get(&[base, key(&["default_runtime_name"])].concat());
    Some(d.and_then(Item::as_str) == Some(RUNTIME_NAME))
}
