//! `migward install <engine>` and `migward uninstall <engine>`: register
//! migward with docker, containerd, CRI-O or podman by editing the engine's
//! own config files.
//!
//! Every edit keeps every other key, comment and blank line ([`doc`]); is
//! computed in full before anything is written, so `--dry-run` shows exactly
//! what a run would write; writes each file atomically (temp file, fsync,
//! rename) with the file's mode and owner; keeps the previous content as
//! `<file>.migward.bak`; and writes nothing when nothing would change. What
//! install did is kept in a record (`/var/lib/migward/install/<engine>.json`)
//! so that uninstall undoes exactly that, byte for byte, and nothing else.
//!
//! Every path is taken under a root (`--root`, default `/`): tests and
//! packagers edit a tree that is not the running host's.

pub mod containerd;
pub mod crio;
pub mod doc;
pub mod docker;
pub mod podman;
pub mod toolkit;

use doc::{Doc, FileRecord, JsonDoc, TomlDoc};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The runtime name migward registers under, in every engine.
pub const RUNTIME_NAME: &str = "migward";
/// Where install records live (under the root).
pub const RECORD_DIR: &str = "/var/lib/migward/install";
/// The record of migward's own config edits (shared by every engine).
const CONFIG_RECORD: &str = "config";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    Docker,
    Containerd,
    Crio,
    Podman,
}

impl Engine {
    pub const ALL: [Engine; 4] = [
        Engine::Docker,
        Engine::Containerd,
        Engine::Crio,
        Engine::Podman,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Engine::Docker => "docker",
            Engine::Containerd => "containerd",
            Engine::Crio => "crio",
            Engine::Podman => "podman",
        }
    }

    /// The engine's program, as installed.
    pub fn program(self) -> &'static str {
        match self {
            Engine::Docker => "dockerd",
            Engine::Containerd => "containerd",
            Engine::Crio => "crio",
            Engine::Podman => "podman",
        }
    }

    /// The systemd unit that must restart to read the new config.
    pub fn service(self) -> Option<&'static str> {
        match self {
            Engine::Docker => Some("docker"),
            Engine::Containerd => Some("containerd"),
            Engine::Crio => Some("crio"),
            Engine::Podman => None,
        }
    }
}

/// What the engine will run, as paths on the host (not under the root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `migward-runtime` (the shim).
    pub runtime_bin: PathBuf,
    /// `migward` (the hooks).
    pub migward_bin: PathBuf,
    /// migward's config when it is not the default path.
    pub config: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub root: PathBuf,
    pub target: Target,
    /// Make migward the engine's default runtime.
    pub default: bool,
}

/// One file's new text, what was done to it, and how to undo it.
pub struct Edited {
    pub text: String,
    pub record: FileRecord,
    pub said: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("cannot edit {path}: {why}: fix the file (the engine would refuse it too), then run this again")]
    Invalid { path: PathBuf, why: String },
    #[error("{path} does not exist: {what}")]
    Missing { path: PathBuf, what: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("migward was not installed for {engine} by `migward install` (no record {record}): nothing to undo; remove the `migward` runtime from the engine's config by hand")]
    NotInstalled {
        engine: &'static str,
        record: PathBuf,
    },
    #[error("install record {path} is corrupt: {why}; restore the engine's config from its .migward.bak backup and remove the record")]
    Record { path: PathBuf, why: String },
    #[error(transparent)]
    Toolkit(#[from] crate::driver::cdi::CdiError),
    #[error(
        "restarting {service} failed: {why}: restart it by hand (systemctl restart {service})"
    )]
    Restart { service: &'static str, why: String },
}

impl InstallError {
    /// The `map_err` for a file that cannot be edited as it is.
    pub fn invalid(path: &Path) -> impl Fn(String) -> InstallError + Copy + '_ {
        move |why| InstallError::Invalid {
            path: path.into(),
            why: crate::flat(&why),
        }
    }
}

/// `path` (absolute, as the host sees it) under `root`.
pub fn under(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// What install did for one engine.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Record {
    files: Vec<FileRecord>,
}

/// One file to change: its text before and after (`None`: absent).
#[derive(Debug, Clone)]
pub struct Change {
    pub path: PathBuf,
    pub before: Option<String>,
    pub after: Option<String>,
    /// A file people read (shown in diffs and backed up); false for records.
    pub shown: bool,
}

impl Change {
    pub fn changes(&self) -> bool {
        self.before != self.after
    }
}

/// Everything one install or uninstall would write.
pub struct Plan {
    pub engine: Engine,
    pub changes: Vec<Change>,
    /// What was chosen, one line each.
    pub said: Vec<String>,
}

fn read_opt(path: &Path) -> Result<Option<String>, InstallError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(InstallError::Read {
            path: path.into(),
            source,
        }),
    }
}

fn record_path(root: &Path, name: &str) -> PathBuf {
    under(root, &Path::new(RECORD_DIR).join(format!("{name}.json")))
}

fn read_record(path: &Path) -> Result<Option<Record>, InstallError> {
    let Some(text) = read_opt(path)? else {
        return Ok(None);
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| InstallError::Record {
            path: path.into(),
            why: e.to_string(),
        })
}

fn record_change(path: PathBuf, before: Option<String>, rec: Option<&Record>) -> Change {
    let after = rec.map(|r| {
        let mut t = serde_json::to_string_pretty(r).expect("a record serializes");
        t.push('\n');
        t
    });
    Change {
        path,
        before,
        after,
        shown: false,
    }
}

/// The config file migward reads, as the host sees it.
pub(super) fn config_path(t: &Target) -> PathBuf {
    t.config
        .clone()
        .unwrap_or_else(|| crate::config::DEFAULT_PATH.into())
}

/// Where a file the host sees at `path` is edited: under the root, except
/// an explicitly named migward config, which is taken as given.
fn config_file(opts: &Options) -> PathBuf {
    match &opts.target.config {
        Some(p) => p.clone(),
        None => under(&opts.root, Path::new(crate::config::DEFAULT_PATH)),
    }
}

pub fn plan_install(engine: Engine, opts: &Options) -> Result<Plan, InstallError> {
    let root = &opts.root;
    let t = &opts.target;
    let rec_path = record_path(root, engine.name());
    let rec_before = read_opt(&rec_path)?;
    let old = read_record(&rec_path)?;
    let old_file = |p: &str| {
        old.as_ref()
            .and_then(|r| r.files.iter().find(|f| f.path == Path::new(p)))
    };
    let mut changes = Vec::new();
    let mut said = Vec::new();
    let mut files = Vec::new();
    let mut edit =
        |host: &str, edited: Edited, before: Option<String>, changes: &mut Vec<Change>| {
            said.extend(edited.said);
            let after = settled(is_json(Path::new(host)), before.as_ref(), edited.text);
            files.push(
                edited
                    .record
                    .editing(before.as_deref(), &after)
                    .merged_into(old_file(host)),
            );
            changes.push(Change {
                path: under(root, Path::new(host)),
                before,
                after: Some(after),
                shown: true,
            });
        };
    match engine {
        Engine::Docker | Engine::Containerd | Engine::Podman => {
            let host = match engine {
                Engine::Docker => docker::DAEMON_JSON,
                Engine::Containerd => containerd::CONFIG_TOML,
                _ => podman::CONTAINERS_CONF,
            };
            let file = under(root, Path::new(host));
            let text = read_opt(&file)?;
            let edited = match engine {
                Engine::Docker => docker::install(&file, text.as_deref(), t, opts.default)?,
                Engine::Containerd => containerd::install(&file, text.as_deref(), t, opts.default)?,
                _ => podman::install(&file, text.as_deref(), t, opts.default)?,
            };
            edit(host, edited, text, &mut changes);
            if engine == Engine::Podman {
                for (host, text) in podman::hooks(t) {
                    let file = under(root, &host);
                    let before = read_opt(&file)?;
                    let host = host.to_string_lossy().into_owned();
                    let rec = FileRecord {
                        path: host.clone().into(),
                        owned: true,
                        ..Default::default()
                    };
                    let said = vec![format!("hook {host}")];
                    edit(
                        &host,
                        Edited {
                            text,
                            record: rec,
                            said,
                        },
                        before,
                        &mut changes,
                    );
                }
            }
        }
        Engine::Crio => {
            let conf = under(root, Path::new(crio::CRIO_CONF));
            let conf_text = read_opt(&conf)?;
            let edited = crio::install(
                conf_text.as_deref().map(|t| (conf.as_path(), t)),
                t,
                opts.default,
            )?;
            let before = read_opt(&under(root, Path::new(crio::DROP_IN)))?;
            edit(crio::DROP_IN, edited, before, &mut changes);
        }
    }
    let record = Record { files };
    changes.push(record_change(rec_path, rec_before, Some(&record)));

    // migward's own config: the driver mode and runtime that fit the toolkit.
    let cfg_file = config_file(opts);
    let cfg_text = read_opt(&cfg_file)?;
    let cdi_dirs = match &cfg_text {
        Some(text) => {
            crate::config::Config::parse(text, &cfg_file)
                .map_err(|e| InstallError::invalid(&cfg_file)(crate::chain(&e)))?
                .cdi_dirs
        }
        None => crate::config::Config::default().cdi_dirs,
    };
    // An explicitly named config is read as the host sees it, and so are
    // the CDI dirs it names; the default config's dirs are under the root.
    let cdi_dirs: Vec<PathBuf> = match &t.config {
        Some(_) => cdi_dirs,
        None => cdi_dirs.iter().map(|d| under(root, d)).collect(),
    };
    let kit = toolkit::detect(root, &cdi_dirs)?;
    if let Some(edited) = toolkit::configure(
        &cfg_file,
        &config_path(t),
        cfg_text.as_deref(),
        &kit,
        &mut said,
    )? {
        let crec_path = record_path(root, CONFIG_RECORD);
        let crec_before = read_opt(&crec_path)?;
        let old = read_record(&crec_path)?;
        // migward's own config is TOML, whatever an explicit path is named.
        let text = settled(false, cfg_text.as_ref(), edited.text);
        let merged = edited
            .record
            .editing(cfg_text.as_deref(), &text)
            .merged_into(old.as_ref().and_then(|r| r.files.first()));
        changes.push(Change {
            path: cfg_file,
            before: cfg_text,
            after: Some(text),
            shown: true,
        });
        changes.push(record_change(
            crec_path,
            crec_before,
            Some(&Record {
                files: vec![merged],
            }),
        ));
    }
    if t.config.is_some() {
        match engine {
            Engine::Containerd => said.push(format!(
                "containerd cannot pass arguments to a runtime binary: migward-runtime reads {} unless containerd's environment sets {}={}",
                crate::config::DEFAULT_PATH,
                crate::config::ENV_VAR,
                config_path(t).display()
            )),
            Engine::Podman => said.push(format!(
                "podman --runtime {RUNTIME_NAME} needs `--runtime-flag migward-config={}` (podman passes no env to the runtime); the hooks carry it already",
                config_path(t).display()
            )),
            _ => {}
        }
    }
    Ok(Plan {
        engine,
        changes,
        said,
    })
}

pub fn plan_uninstall(engine: Engine, opts: &Options) -> Result<Plan, InstallError> {
    let root = &opts.root;
    let rec_path = record_path(root, engine.name());
    let rec_before = read_opt(&rec_path)?;
    let rec = read_record(&rec_path)?.ok_or_else(|| InstallError::NotInstalled {
        engine: engine.name(),
        record: rec_path.clone(),
    })?;
    let mut changes = Vec::new();
    let mut said = Vec::new();
    for f in &rec.files {
        changes.push(undo_at(&under(root, &f.path), f, &mut said)?);
    }
    changes.push(record_change(rec_path, rec_before, None));

    // migward's own config goes back once no engine is left installed.
    let others = Engine::ALL
        .iter()
        .filter(|e| **e != engine)
        .any(|e| record_path(root, e.name()).exists());
    let crec_path = record_path(root, CONFIG_RECORD);
    if !others {
        if let Some(crec) = read_record(&crec_path)? {
            for f in &crec.files {
                let file = match &opts.target.config {
                    Some(p) if p == &f.path => p.clone(),
                    _ => under(root, &f.path),
                };
                changes.push(undo_at(&file, f, &mut said)?);
            }
            changes.push(record_change(
                crec_path.clone(),
                read_opt(&crec_path)?,
                None,
            ));
        }
    }
    Ok(Plan {
        engine,
        changes,
        said,
    })
}

/// What an install leaves in a file (JSON or TOML) that holds `before`,
/// given the `text` it would write: `before` itself when that already holds every setting
/// as `text` does (installed already), even where `text` lays it out
/// otherwise (a table moved); else `text`.
fn settled(json: bool, before: Option<&String>, text: String) -> String {
    match before {
        Some(b) if *b != text && same_settings(json, b, &text) => b.clone(),
        _ => text,
    }
}

/// Whether `path` is a JSON file (daemon.json); the others are TOML.
fn is_json(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "json")
}

/// Whether two texts of a JSON or TOML config file hold the same settings,
/// whatever their layout. An empty daemon.json is `{}` to dockerd.
fn same_settings(json: bool, a: &str, b: &str) -> bool {
    if json {
        let value = |t: &str| match t.trim() {
            "" => Some(serde_json::Value::Object(Default::default())),
            t => serde_json::from_str::<serde_json::Value>(t).ok(),
        };
        matches!((value(a), value(b)), (Some(x), Some(y)) if x == y)
    } else {
        let value = |t: &str| t.parse::<toml::Table>().ok();
        matches!((value(a), value(b)), (Some(x), Some(y)) if x == y)
    }
}

fn undo_at(file: &Path, f: &FileRecord, said: &mut Vec<String>) -> Result<Change, InstallError> {
    let before = read_opt(file)?;
    let Some(text) = &before else {
        said.push(format!("{} is gone already", f.path.display()));
        return Ok(Change {
            path: file.into(),
            before: None,
            after: None,
            shown: true,
        });
    };
    if f.owned {
        said.push(format!("removed {}", f.path.display()));
        return Ok(Change {
            path: file.into(),
            before,
            after: None,
            shown: true,
        });
    }
    let invalid = InstallError::invalid(file);
    let json = is_json(&f.path);
    let rendered = if json {
        let mut d = JsonDoc::parse(text).map_err(invalid)?;
        doc::undo(&mut d, f).map_err(invalid)?;
        d.render()
    } else {
        let mut d = TomlDoc::parse(text).map_err(invalid)?;
        doc::undo(&mut d, f).map_err(invalid)?;
        d.render()
    };
    // The file is as the last install left it: it goes back as it was,
    // byte for byte (the JSON CST and toml_edit keep most of a
    // layout, not all: a one-line daemon.json would come back multi-line).
    let untouched = f.written.as_deref() == Some(doc::text_hash(text).as_str());
    let rendered = match &f.original {
        Some(original) if untouched && same_settings(json, original, &rendered) => original.clone(),
        _ => rendered,
    };
    // A file install created goes when nothing but what it was created with
    // is left (a comment it started with may have gone with the key after it).
    let left_alone =
        f.created_with.as_deref() == Some(rendered.as_str()) || rendered.trim().is_empty();
    let after = if f.created_with.is_some() && left_alone {
        said.push(format!("removed {} (install created it)", f.path.display()));
        None
    } else {
        said.push(format!(
            "{}: undid {} key(s)",
            f.path.display(),
            f.set.len()
        ));
        Some(rendered)
    };
    Ok(Change {
        path: file.into(),
        before,
        after,
        shown: true,
    })
}

impl Plan {
    /// Whether running the plan would write anything.
    pub fn is_noop(&self) -> bool {
        !self.changes.iter().any(Change::changes)
    }

    /// A unified diff of every file people read (`--dry-run`).
    pub fn diff(&self, root: &Path) -> String {
        let mut out = String::new();
        for c in self.changes.iter().filter(|c| c.shown && c.changes()) {
            let shown = c
                .path
                .strip_prefix(root)
                .map(|p| Path::new("/").join(p))
                .unwrap_or(c.path.clone());
            let name = shown.display().to_string();
            let (a, b) = (
                c.before.as_deref().unwrap_or(""),
                c.after.as_deref().unwrap_or(""),
            );
            let old = if c.before.is_some() {
                format!("a{name}")
            } else {
                "/dev/null".into()
            };
            let new = if c.after.is_some() {
                format!("b{name}")
            } else {
                "/dev/null".into()
            };
            let diff = similar::TextDiff::from_lines(a, b);
            out.push_str(
                &diff
                    .unified_diff()
                    .context_radius(3)
                    .header(&old, &new)
                    .to_string(),
            );
        }
        out
    }

    /// Writes every change; returns the backups it made.
    pub fn apply(&self) -> Result<Vec<PathBuf>, InstallError> {
        let mut backups = Vec::new();
        for c in self.changes.iter().filter(|c| c.changes()) {
            let meta = std::fs::metadata(&c.path).ok();
            // An edited file keeps its previous text; a file install
            // created or owns is simply removed again.
            if let (true, Some(before), Some(_)) = (c.shown, &c.before, &c.after) {
                let bak = PathBuf::from(format!("{}.migward.bak", c.path.display()));
                write_atomic(&bak, before, meta.as_ref(), 0o644)?;
                backups.push(bak);
            }
            match &c.after {
                // An install record holds the original of each file it
                // edited (which may hold credentials): root's alone.
                Some(text) if !c.shown => write_atomic(&c.path, text, None, 0o600)?,
                Some(text) => write_atomic(&c.path, text, meta.as_ref(), 0o644)?,
                None => std::fs::remove_file(&c.path).or_else(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => Ok(()),
                    _ => Err(InstallError::Write {
                        path: c.path.clone(),
                        source: e,
                    }),
                })?,
            }
        }
        Ok(backups)
    }
}

/// Writes `text` to `path` through a temp file in the same directory, with
/// the mode and owner of `like` (the file it replaces), else `mode`.
fn write_atomic(
    path: &Path,
    text: &str,
    like: Option<&std::fs::Metadata>,
    mode: u32,
) -> Result<(), InstallError> {
    let err = |source| InstallError::Write {
        path: path.into(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(err)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".migward-")
        .tempfile_in(dir)
        .map_err(err)?;
    tmp.write_all(text.as_bytes()).map_err(err)?;
    let mode = like.map(|m| m.mode() & 0o7777).unwrap_or(mode);
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(err)?;
    if let Some(m) = like {
        std::os::unix::fs::fchown(tmp.as_file(), Some(m.uid()), Some(m.gid())).map_err(err)?;
    }
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err)
}

/// Restarts the engine's service so it reads the new config.
pub fn restart(engine: Engine) -> Result<Option<&'static str>, InstallError> {
    let Some(service) = engine.service() else {
        return Ok(None);
    };
    let out = std::process::Command::new("systemctl")
        .args(["restart", service])
        .output()
        .map_err(|e| InstallError::Restart {
            service,
            why: e.to_string(),
        })?;
    if !out.status.success() {
        let why = crate::flat(String::from_utf8_lossy(&out.stderr).trim());
        return Err(InstallError::Restart {
            service,
            why: format!("{} ({why})", out.status),
        });
    }
    Ok(Some(service))
}

/// Whether `engine`'s config under `root` registers migward: `None` no,
/// `Some(default)` yes.
pub fn registered(engine: Engine, root: &Path) -> Option<bool> {
    let read = |p: &str| std::fs::read_to_string(under(root, Path::new(p))).ok();
    match engine {
        Engine::Docker => docker::registered(&read(docker::DAEMON_JSON)?),
        Engine::Containerd => containerd::registered(&read(containerd::CONFIG_TOML)?),
        Engine::Podman => podman::registered(&read(podman::CONTAINERS_CONF)?),
        Engine::Crio => {
            let mut texts: Vec<String> = read(crio::CRIO_CONF).into_iter().collect();
            if let Ok(dir) = std::fs::read_dir(under(root, Path::new("/etc/crio/crio.conf.d"))) {
                let mut paths: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
                paths.sort();
                texts.extend(paths.iter().filter_map(|p| std::fs::read_to_string(p).ok()));
            }
            crio::registered(&texts)
        }
    }
}

#[cfg(test)]
mod tests;
