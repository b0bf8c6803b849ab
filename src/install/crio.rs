//! CRI-O: a drop-in (`/etc/crio/crio.conf.d/99-migward.conf`) with the
//! `migward` runtime table, its settings copied from the `runc` runtime of
//! crio.conf when it has one. CRI-O merges drop-ins over crio.conf, so
//! crio.conf itself is never touched; uninstall removes the drop-in.

use super::doc::{key, set_in_table, FileRecord, TomlDoc};
use super::{Edited, InstallError, Target, RUNTIME_NAME};
use std::path::Path;
use toml_edit::{Item, Table, Value};

pub const CRIO_CONF: &str = "/etc/crio/crio.conf";
pub const DROP_IN: &str = "/etc/crio/crio.conf.d/99-migward.conf";

/// `crio_conf` is crio.conf's text when it exists (read for the runc runtime).
pub fn install(
    crio_conf: Option<(&Path, &str)>,
    t: &Target,
    default: bool,
) -> Result<Edited, InstallError> {
    let runc = match crio_conf {
        Some((path, text)) => {
            let doc = TomlDoc::parse(text).map_err(InstallError::invalid(path))?;
            doc.table_at(&key(&["crio", "runtime", "runtimes", "runc"]))
                .cloned()
        }
        None => None,
    };
    let mut said = Vec::new();
    let mut rt = Table::new();
    if let Some(runc) = &runc {
        for (k, item) in runc.iter() {
            if let Some(v) = item.as_value() {
                let mut v = v.clone();
                v.decor_mut().clear();
                rt.insert(k, Item::Value(v.decorated(" ", "")));
            }
        }
    }
    set_in_table(
        &mut rt,
        "runtime_path",
        Value::from(t.runtime_bin.to_string_lossy().as_ref()),
    );
    if !rt.contains_key("runtime_type") {
        rt.insert("runtime_type", Item::Value(Value::from("oci")));
    }
    if !rt.contains_key("runtime_root") {
        rt.insert("runtime_root", Item::Value(Value::from("/run/runc")));
    }
    said.push(format!(
        "runtime `{RUNTIME_NAME}` (runtime_path = {}){}",
        t.runtime_bin.display(),
        if runc.is_some() {
            ", settings copied from `runc` in crio.conf"
        } else {
            ""
        }
    ));

    let mut doc = toml_edit::DocumentMut::new();
    doc.as_table_mut().decor_mut().set_prefix(
        "# Written by `migward install crio`; `migward uninstall crio` removes this file.\n",
    );
    let mut crio = Table::new();
    crio.set_implicit(true);
    let mut runtime = Table::new();
    runtime.set_implicit(!default);
    if default {
        runtime.insert("default_runtime", Item::Value(Value::from(RUNTIME_NAME)));
        said.push(format!("default_runtime = \"{RUNTIME_NAME}\""));
    }
    let mut runtimes = Table::new();
    runtimes.set_implicit(true);
    runtimes.insert(RUNTIME_NAME, Item::Table(rt));
    runtime.insert("runtimes", Item::Table(runtimes));
    crio.insert("runtime", Item::Table(runtime));
    doc.insert("crio", Item::Table(crio));
    let rec = FileRecord {
        path: DROP_IN.into(),
        owned: true,
        ..Default::default()
    };
    Ok(Edited {
        text: doc.to_string(),
        record: rec,
        said,
    })
}

/// Whether a drop-in or crio.conf registers migward, and as the default.
pub fn registered(texts: &[String]) -> Option<bool> {
    let mut found = None;
    for text in texts {
        let Ok(doc) = TomlDoc::parse(text) else {
            continue;
        };
        if doc
            .table_at(&key(&["crio", "runtime", "runtimes", RUNTIME_NAME]))
            .is_some()
        {
            found = Some(found.unwrap_or(false));
        }
        let d = doc.get(&key(&["crio", "runtime", "default_runtime"]));
        if d.and_then(Item::as_str) == Some(RUNTIME_NAME) {
            found = Some(true);
        }
    }
    found
}
