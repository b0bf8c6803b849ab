//! Just enough of runc's command line to find the verb, the bundle and the
//! container id (STYLE.md: scan argv, don't model runc's CLI).

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

/// runc global flags that take a value.
const GLOBAL_VALUE_FLAGS: &[&str] = &["--root", "--log", "--log-format", "--criu", "--rootless"];
/// Flags of `create`, `run` and `restore` that take a value (runc 1.1 and
/// 1.2).
const VERB_VALUE_FLAGS: &[&str] = &[
    "--bundle",
    "-b",
    "--console-socket",
    "--pid-file",
    "--preserve-fds",
    "--pidfd-socket",
    "--image-path",
    "--work-path",
    "--parent-path",
    "--manage-cgroups-mode",
    "--empty-ns",
    "--lsm-profile",
    "--lsm-mount-context",
];

/// Our own flag, for docker's `runtimeArgs`; removed before exec.
pub const CONFIG_FLAG: &str = "--migward-config";

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Invocation {
    /// The arguments to pass on to the real runtime.
    pub passthrough: Vec<OsString>,
    pub config: Option<PathBuf>,
    pub verb: Option<String>,
    pub bundle: Option<PathBuf>,
    pub log: Option<PathBuf>,
    /// runc's `--root`: where it keeps container state.
    pub root: Option<PathBuf>,
    /// `create --pid-file`: where the runtime writes the init's pid.
    pub pid_file: Option<PathBuf>,
    pub log_format_json: bool,
    pub id: Option<OsString>,
}

fn flag_value<'a>(
    arg: &'a OsStr,
    names: &[&'static str],
) -> Option<(&'static str, Option<&'a str>)> {
    let s = arg.to_str()?;
    names.iter().find_map(|n| {
        if s == *n {
            Some((*n, None))
        } else {
            s.strip_prefix(n)
                .and_then(|rest| rest.strip_prefix('='))
                .map(|v| (*n, Some(v)))
        }
    })
}

/// Scans runc-style argv.
pub fn scan(args: &[OsString]) -> Invocation {
    let mut inv = Invocation::default();
    let mut i = 0;
    let mut before_verb = true;
    while i < args.len() {
        let arg = &args[i];
        if let Some((_, inline)) = flag_value(arg, &[CONFIG_FLAG]) {
            match inline {
                Some(v) => inv.config = Some(v.into()),
                None => {
                    inv.config = args.get(i + 1).map(PathBuf::from);
                    i += 1;
                }
            }
            i += 1;
            continue;
        }
        inv.passthrough.push(arg.clone());
        let table = if before_verb {
            GLOBAL_VALUE_FLAGS
        } else {
            VERB_VALUE_FLAGS
        };
        if let Some((name, inline)) = flag_value(arg, table) {
            let value = match inline {
                Some(v) => Some(OsString::from(v)),
                None => {
                    i += 1;
                    args.get(i)
                        .inspect(|v| inv.passthrough.push((*v).clone()))
                        .cloned()
                }
            };
            match name {
                "--log" => inv.log = value.map(PathBuf::from),
                "--root" => inv.root = value.map(PathBuf::from),
                "--log-format" => inv.log_format_json = value.is_some_and(|v| v == "json"),
                "--bundle" | "-b" => inv.bundle = value.map(PathBuf::from),
                "--pid-file" => inv.pid_file = value.map(PathBuf::from),
                _ => {}
            }
        } else if arg.to_str().is_some_and(|s| s.starts_with('-')) {
            // A boolean flag.
        } else if before_verb {
            inv.verb = Some(arg.to_string_lossy().into_owned());
            before_verb = false;
        } else if inv.id.is_none() {
            inv.id = Some(arg.clone());
        }
        i += 1;
    }
    inv
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn docker_create() {
        let inv = scan(&v(&[
            "--root",
            "/run/docker/runtime-runc/moby",
            "--log",
            "/x/log.json",
            "--log-format",
            "json",
            "create",
            "--bundle",
            "/b",
            "--pid-file",
            "/b/init.pid",
            "abc123",
        ]));
        assert_eq!(inv.verb.as_deref(), Some("create"));
        assert_eq!(inv.bundle, Some(PathBuf::from("/b")));
        assert_eq!(inv.log, Some(PathBuf::from("/x/log.json")));
        assert_eq!(
            inv.root,
            Some(PathBuf::from("/run/docker/runtime-runc/moby"))
        );
        assert!(inv.log_format_json);
        assert_eq!(inv.id, Some(OsString::from("abc123")));
        assert_eq!(inv.passthrough.len(), 12);
    }

    #[test]
    fn forms_and_our_flag() {
        type Case<'a> = (
            Vec<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                vec!["run", "-b", "/b", "-d", "id1"],
                Some("run"),
                Some("/b"),
                Some("id1"),
                None,
            ),
            (
                vec!["--debug", "create", "--bundle=/b", "id2"],
                Some("create"),
                Some("/b"),
                Some("id2"),
                None,
            ),
            (
                vec!["--migward-config", "/c.toml", "delete", "--force", "id3"],
                Some("delete"),
                None,
                Some("id3"),
                Some("/c.toml"),
            ),
            (
                vec!["--migward-config=/c.toml", "create"],
                Some("create"),
                None,
                None,
                Some("/c.toml"),
            ),
            (vec!["--version"], None, None, None, None),
            (vec!["state", "id4"], Some("state"), None, Some("id4"), None),
        ];
        for (args, verb, bundle, id, config) in cases {
            let inv = scan(&v(&args));
            assert_eq!(inv.verb.as_deref(), verb, "{args:?}");
            assert_eq!(inv.bundle, bundle.map(PathBuf::from), "{args:?}");
            assert_eq!(inv.id, id.map(OsString::from), "{args:?}");
            assert_eq!(inv.config, config.map(PathBuf::from), "{args:?}");
            assert!(!inv
                .passthrough
                .iter()
                .any(|a| a.to_string_lossy().contains("migward-config")));
        }
    }
}
