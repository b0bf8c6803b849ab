//! NVIDIA's container toolkit on the host, and the `driver` mode and lower
//! runtime that fit it (see the README, "The driver's user-space"):
//!
//! - a CDI spec of kind `nvidia.com/gpu`: `driver = "cdi"`, runc below;
//! - `nvidia-container-runtime` without a spec: `runtime` = it and
//!   `driver = "nvidia-runtime"`;
//! - neither: nothing is written, and install says how to get the driver
//!   files into GPU containers.
//!
//! A key the config already sets is left as it is.

use super::doc::{key, Doc, FileRecord, TomlDoc};
use super::{under, Edited, InstallError};
use crate::driver::cdi;
use std::path::{Path, PathBuf};
use toml_edit::Value;

pub const RUNTIME_PATHS: [&str; 2] = [
    "/usr/bin/nvidia-container-runtime",
    "/usr/local/bin/nvidia-container-runtime",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Toolkit {
    /// A CDI spec (its path as the host sees it).
    CdiSpec(PathBuf),
    /// NVIDIA's runtime, without a CDI spec.
    Runtime(PathBuf),
    None,
}

/// What the host has: a CDI spec in `cdi_dirs` (paths as given), else
/// NVIDIA's runtime under `root`.
pub fn detect(root: &Path, cdi_dirs: &[PathBuf]) -> Result<Toolkit, cdi::CdiError> {
    if let Some(edits) = cdi::find(cdi_dirs)? {
        let host = edits
            .file
            .strip_prefix(root)
            .map(|p| Path::new("/").join(p))
            .unwrap_or(edits.file);
        return Ok(Toolkit::CdiSpec(host));
    }
    for p in RUNTIME_PATHS {
        if under(root, Path::new(p)).is_file() {
            return Ok(Toolkit::Runtime(p.into()));
        }
    }
    Ok(Toolkit::None)
}

/// The edit of migward's config for `toolkit`; `None` when nothing changes.
pub fn configure(
    file: &Path,
    host_path: &Path,
    text: Option<&str>,
    toolkit: &Toolkit,
    said: &mut Vec<String>,
) -> Result<Option<Edited>, InstallError> {
    let wanted: Vec<(&str, String)> = match toolkit {
        Toolkit::CdiSpec(spec) => {
            said.push(format!(
                "NVIDIA's CDI spec {}: GPU containers get the driver files from it",
                spec.display()
            ));
            vec![("driver", "cdi".into())]
        }
        Toolkit::Runtime(rt) => {
            said.push(format!(
                "NVIDIA's runtime {} and no CDI spec: migward runs it below and it adds the driver files",
                rt.display()
            ));
            vec![
                ("runtime", rt.to_string_lossy().into_owned()),
                ("driver", "nvidia-runtime".into()),
            ]
        }
        Toolkit::None => {
            said.push("no NVIDIA container toolkit found: GPU containers get device nodes but no driver files; install the toolkit and run `nvidia-ctk cdi generate --output=/var/run/cdi/nvidia.yaml`".into());
            return Ok(None);
        }
    };
    let invalid = InstallError::invalid(file);
    let mut doc = TomlDoc::parse(text.unwrap_or("")).map_err(invalid)?;
    let mut rec = FileRecord {
        path: host_path.into(),
        ..Default::default()
    };
    let header =
        "# migward config; every key and its default: /usr/share/doc/migward/config.toml\n";
    if text.is_none() {
        doc.doc.as_table_mut().decor_mut().set_prefix(header);
        rec.created_with = Some(doc.render());
    }
    let mut changed = false;
    for (name, value) in wanted {
        let k = key(&[name]);
        match doc.raw(&k) {
            Some(old) if old.trim_matches('"') != value => {
                said.push(format!(
                    "{name} = {old} already set in {}: left as it is",
                    host_path.display()
                ));
            }
            Some(_) => {}
            None => {
                doc.set_value(&k, Value::from(value.as_str()))
                    .map_err(invalid)?;
                rec.note_set(k, None);
                said.push(format!("{name} = \"{value}\" in {}", host_path.display()));
                changed = true;
            }
        }
    }
    Ok(changed.then(|| Edited {
        text: doc.render(),
        record: rec,
        said: Vec::new(),
    }))
}
