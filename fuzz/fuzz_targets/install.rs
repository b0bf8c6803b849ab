//! `migward install` / `uninstall` on an engine config file as an admin
//! may have written it (install/: docker's daemon.json through the JSONC
//! CST, containerd's config.toml, CRI-O's crio.conf and podman's
//! containers.conf through toml_edit). The input's first byte picks the
//! engine and `--default`; the rest is the file.
//! Properties: no panic; a config install accepts is registered after it;
//! installing again writes nothing; uninstall gives the file back byte for
//! byte when it did not name migward before.
#![no_main]

use libfuzzer_sys::fuzz_target;
use migward::install::{self, Engine, Options, Target};
use migward_fuzz::{assert_one_line, scratch};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let engine = Engine::ALL[usize::from(pick) % Engine::ALL.len()];
    let file = match engine {
        Engine::Docker => install::docker::DAEMON_JSON,
        Engine::Containerd => install::containerd::CONFIG_TOML,
        Engine::Crio => install::crio::CRIO_CONF,
        Engine::Podman => install::podman::CONTAINERS_CONF,
    };
    let root = scratch().join("install-root");
    let _ = std::fs::remove_dir_all(&root);
    let path = install::under(&root, Path::new(file));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    let opts = Options {
        root: root.clone(),
        target: Target {
            runtime_bin: "/usr/bin/migward-runtime".into(),
            migward_bin: "/usr/bin/migward".into(),
            config: None,
        },
        default: pick & 0x10 != 0,
    };
    let was_registered = install::registered(engine, &root).is_some();

    let plan = match install::plan_install(engine, &opts) {
        Ok(plan) => plan,
        Err(e) => {
            assert_one_line("plan_install", &migward::joined(&e));
            return;
        }
    };
    plan.apply().expect("apply an install plan");
    assert!(
        install::registered(engine, &root).is_some(),
        "{} does not register migward after install:\n{}",
        engine.name(),
        std::fs::read_to_string(&path).unwrap_or_default()
    );
    // Installing again writes nothing (fuzz/README.md, finding 7), except
    // where the file's settings cannot be compared with themselves.
    let again = install::plan_install(engine, &opts).expect("install again");
    for c in again.changes.iter().filter(|c| c.changes()) {
        let before = c.before.as_deref();
        assert!(
            !same_settings(&c.path, before, before),
            "installing twice writes {}:\n{}",
            c.path.display(),
            again.diff(&root)
        );
    }

    let undo = install::plan_uninstall(engine, &opts).expect("plan the uninstall");
    undo.apply().expect("apply the uninstall");
    if !was_registered {
        let after = std::fs::read_to_string(&path).unwrap_or_default();
        // Uninstall writes the kept original back when undoing leaves the
        // same settings. Where the file's settings cannot even be compared
        // with themselves (a TOML nan), the undo's own rendering is kept,
        // which may differ in layout (fuzz/README.md, findings 5 and 6).
        let comparable = same_settings(&path, Some(text), Some(text));
        assert!(
            after == text || !comparable,
            "uninstall did not give {file} back:\nbefore: {text:?}\nafter:  {after:?}"
        );
    }
});

/// Whether two texts of a config file say the same, whatever the layout.
fn same_settings(path: &Path, a: Option<&str>, b: Option<&str>) -> bool {
    let (Some(a), Some(b)) = (a, b) else {
        return a == b;
    };
    if path.extension().is_some_and(|e| e == "json") {
        let json = |t: &str| match t.trim() {
            "" => Some(serde_json::json!({})),
            t => serde_json::from_str::<serde_json::Value>(t).ok(),
        };
        matches!((json(a), json(b)), (Some(x), Some(y)) if x == y)
    } else {
        let toml = |t: &str| t.parse::<toml::Table>().ok();
        matches!((toml(a), toml(b)), (Some(x), Some(y)) if x == y)
    }
}
