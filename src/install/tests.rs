//! Golden files: a real-world config → install → the expected file;
//! install again → nothing written; uninstall → the original, byte for byte.
//! `MIGWARD_BLESS=1` rewrites the expected files (then read the diff).

use super::*;
use std::collections::BTreeSet;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/install");

fn target() -> Target {
    Target {
        runtime_bin: "/usr/bin/migward-runtime".into(),
        migward_bin: "/usr/bin/migward".into(),
        config: None,
    }
}

fn opts(root: &Path, default: bool) -> Options {
    Options {
        root: root.into(),
        target: target(),
        default,
    }
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(Path::new(FIXTURES).join(name)).unwrap()
}

fn put(root: &Path, host: &str, text: &str) {
    let p = under(root, Path::new(host));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn get(root: &Path, host: &str) -> Option<String> {
    std::fs::read_to_string(under(root, Path::new(host))).ok()
}

fn golden(name: &str, actual: &str) {
    let path = Path::new(FIXTURES).join("expected").join(name);
    if std::env::var_os("MIGWARD_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
    }
    let expected =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(actual, expected, "{name} differs from the golden file");
}

/// Every file under `root`, relative.
fn files(root: &Path) -> BTreeSet<String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, root, out);
            } else {
                out.insert(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

fn install(engine: Engine, root: &Path, default: bool) -> Plan {
    let plan = plan_install(engine, &opts(root, default)).unwrap();
    plan.apply().unwrap();
    plan
}

fn uninstall(engine: Engine, root: &Path) -> Plan {
    let plan = plan_uninstall(engine, &opts(root, false)).unwrap();
    plan.apply().unwrap();
    plan
}

/// Drops the originals from `engine`'s install record.
fn forget_originals(root: &Path, engine: Engine) {
    let path = record_path(root, engine.name());
    let mut rec = read_record(&path).unwrap().unwrap();
    for f in &mut rec.files {
        f.original = None;
    }
    std::fs::write(&path, serde_json::to_string(&rec).unwrap()).unwrap();
}

/// The whole cycle for one engine file: golden, idempotent, backup, byte-exact undo.
fn cycle(engine: Engine, host: &str, fixture_name: &str, default: bool, expected: &str) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let original = fixture(fixture_name);
    put(root, host, &original);
    let before = files(root);

    let dry = plan_install(engine, &opts(root, default)).unwrap();
    assert!(
        dry.diff(root).contains(&format!("+++ b{host}")),
        "{}",
        dry.diff(root)
    );
    assert_eq!(files(root), before, "a plan alone writes nothing");

    install(engine, root, default);
    golden(expected, &get(root, host).unwrap());
    let bak = format!("{host}.migward.bak");
    assert_eq!(
        get(root, &bak).as_deref(),
        Some(original.as_str()),
        "backup of the original"
    );
    assert!(
        plan_install(engine, &opts(root, default))
            .unwrap()
            .is_noop(),
        "a second install writes nothing"
    );

    uninstall(engine, root);
    assert_eq!(
        get(root, host).unwrap(),
        original,
        "uninstall gives back the original byte for byte"
    );

    // The edit's own undo, without the kept original (a record written
    // before it was kept, or another setting changed since): byte for byte
    // on these real-world files too.
    install(engine, root, default);
    forget_originals(root, engine);
    uninstall(engine, root);
    assert_eq!(
        get(root, host).unwrap(),
        original,
        "the undo alone gives back the original byte for byte"
    );
    let mut left = files(root);
    left.remove(bak.trim_start_matches('/'));
    assert_eq!(left, before, "nothing of install is left but the backup");
    assert!(
        plan_uninstall(engine, &opts(root, false)).is_err(),
        "a second uninstall has nothing to undo"
    );
}

#[test]
fn docker_daemon_json_with_other_keys() {
    cycle(
        Engine::Docker,
        docker::DAEMON_JSON,
        "daemon.json",
        false,
        "daemon.json",
    );
    cycle(
        Engine::Docker,
        docker::DAEMON_JSON,
        "daemon.json",
        true,
        "daemon.json.default",
    );
}

#[test]
fn containerd_1_6_default_config_with_comments() {
    let name = "containerd-1.6.toml";
    cycle(
        Engine::Containerd,
        containerd::CONFIG_TOML,
        name,
        false,
        name,
    );
    cycle(
        Engine::Containerd,
        containerd::CONFIG_TOML,
        name,
        true,
        "containerd-1.6.toml.default",
    );
}

#[test]
fn containerd_2_config_version_3() {
    let name = "containerd-2.x.toml";
    cycle(
        Engine::Containerd,
        containerd::CONFIG_TOML,
        name,
        true,
        name,
    );
}

#[test]
fn podman_containers_conf() {
    cycle(
        Engine::Podman,
        podman::CONTAINERS_CONF,
        "containers.conf",
        true,
        "containers.conf",
    );
}

/// Fuzzing findings 5 and 6: files the JSON CST or toml_edit render with
/// another layout even where nothing of theirs was edited come back byte for
/// byte from the kept original; a setting changed after install is kept.
#[test]
fn odd_layouts_come_back_byte_for_byte_and_later_changes_stay() {
    let cases = [
        (
            Engine::Docker,
            docker::DAEMON_JSON,
            "{\"log-driver\": \"journald\"}",
        ),
        (Engine::Docker, docker::DAEMON_JSON, "{\"a\":1}"),
        (Engine::Docker, docker::DAEMON_JSON, "{ }"),
        (Engine::Docker, docker::DAEMON_JSON, ""),
        (Engine::Podman, podman::CONTAINERS_CONF, "[a.b]\n[a. b.u]\n"),
        (Engine::Podman, podman::CONTAINERS_CONF, "[engine]"),
        (
            Engine::Containerd,
            containerd::CONFIG_TOML,
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]",
        ),
    ];
    for (engine, host, original) in cases {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        put(root, host, original);
        install(engine, root, false);
        uninstall(engine, root);
        assert_eq!(get(root, host).unwrap(), original, "{original:?}");

        // A setting changed after install survives the uninstall (the
        // original is not written over it).
        install(engine, root, false);
        let edited = get(root, host).unwrap();
        let changed = if host.ends_with(".json") {
            let mut v: serde_json::Value = serde_json::from_str(&edited).unwrap();
            v["debug"] = serde_json::json!(true);
            serde_json::to_string_pretty(&v).unwrap()
        } else {
            format!("{edited}\n[later]\nkey = 1\n")
        };
        put(root, host, &changed);
        uninstall(engine, root);
        let after = get(root, host).unwrap();
        assert_ne!(after, original, "{original:?}: the later change was lost");
        if host.ends_with(".json") {
            let v: serde_json::Value = serde_json::from_str(&after).unwrap();
            assert_eq!(v["debug"], true, "{after}");
            assert!(v.get("runtimes").is_none(), "{after}");
        } else {
            let t: toml::Table = after.parse().unwrap();
            assert_eq!(t["later"]["key"].as_integer(), Some(1), "{after}");
            assert!(!after.contains("migward"), "{after}");

            // So does a comment added after install, which is no setting.
            install(engine, root, false);
            let edited = get(root, host).unwrap();
            put(root, host, &format!("# kept by the admin\n{edited}"));
            uninstall(engine, root);
            let after = get(root, host).unwrap();
            assert!(after.starts_with("# kept by the admin\n"), "{after}");
            assert!(!after.contains("migward"), "{after}");
        }
    }
}

#[test]
fn the_install_record_is_roots_alone() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    put(root, containerd::CONFIG_TOML, "version = 2\n");
    install(Engine::Containerd, root, false);
    let mode = std::fs::metadata(record_path(root, Engine::Containerd.name()))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
}

/// Fuzzing finding 7: a second install that would only move a table (here
/// after toml_edit re-rendered a header's quotes) writes nothing.
#[test]
fn installing_again_never_rewrites_a_file_whose_settings_are_done() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let original =
        "version=3\n[plugins.\"io.containerd.grpc.v1.cri\".n]\n[plugins.'io.containerd.grpc.v1.cri']";
    put(root, containerd::CONFIG_TOML, original);
    install(Engine::Containerd, root, false);
    let again = plan_install(Engine::Containerd, &opts(root, false)).unwrap();
    assert!(again.is_noop(), "{}", again.diff(root));
    uninstall(Engine::Containerd, root);
    assert_eq!(get(root, containerd::CONFIG_TOML).unwrap(), original);
}

#[test]
fn crio_drop_in_copies_runc_and_leaves_crio_conf_alone() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let conf = fixture("crio.conf");
    put(root, crio::CRIO_CONF, &conf);
    let before = files(root);
    install(Engine::Crio, root, true);
    golden("99-migward.conf", &get(root, crio::DROP_IN).unwrap());
    assert_eq!(get(root, crio::CRIO_CONF).unwrap(), conf);
    assert_eq!(registered(Engine::Crio, root), Some(true));
    assert!(plan_install(Engine::Crio, &opts(root, true))
        .unwrap()
        .is_noop());
    uninstall(Engine::Crio, root);
    assert_eq!(files(root), before);
    assert_eq!(registered(Engine::Crio, root), None);
}

#[test]
fn missing_files_are_created_and_removed_again() {
    for engine in [Engine::Docker, Engine::Podman] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        install(engine, root, true);
        assert_eq!(registered(engine, root), Some(true), "{engine:?}");
        uninstall(engine, root);
        assert_eq!(
            files(root),
            BTreeSet::new(),
            "{engine:?}: install created every file, uninstall removes them"
        );
    }
}

#[test]
fn podman_hooks_carry_this_hosts_paths() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut o = opts(root, false);
    o.target.migward_bin = "/opt/migward/bin/migward".into();
    o.target.config = Some("/opt/migward/config.toml".into());
    plan_install(Engine::Podman, &o).unwrap().apply().unwrap();
    let hook = get(
        root,
        "/etc/containers/oci/hooks.d/oci-migward-annotation.json",
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&hook).unwrap();
    assert_eq!(v["hook"]["path"], "/opt/migward/bin/migward");
    assert_eq!(
        v["hook"]["env"][1],
        "MIGWARD_CONFIG=/opt/migward/config.toml"
    );
    assert_eq!(v["when"]["annotations"]["^migward/devices$"], ".+");
    assert!(get(
        root,
        "/etc/containers/oci/hooks.d/oci-migward-poststop.json"
    )
    .is_some());
}

#[test]
fn docker_runtime_args_name_a_config_that_is_not_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut o = opts(root, false);
    o.target.config = Some("/srv/migward.toml".into());
    plan_install(Engine::Docker, &o).unwrap().apply().unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&get(root, docker::DAEMON_JSON).unwrap()).unwrap();
    assert_eq!(
        v["runtimes"]["migward"]["runtimeArgs"],
        serde_json::json!(["--migward-config", "/srv/migward.toml"])
    );
}

#[test]
fn bad_files_are_refused_with_the_path_and_nothing_is_written() {
    let cases = [
        (
            Engine::Docker,
            docker::DAEMON_JSON,
            "{\"runtimes\": {",
            "daemon.json",
        ),
        (
            Engine::Docker,
            docker::DAEMON_JSON,
            "[1, 2]",
            "not an object",
        ),
        (
            Engine::Docker,
            docker::DAEMON_JSON,
            "{\"runtimes\": []}",
            "`runtimes` is not an object",
        ),
        (
            // Found by fuzzing: dockerd reads the last `runtimes`, an edit
            // in place would change the first.
            Engine::Docker,
            docker::DAEMON_JSON,
            "{\"runtimes\": {}, \"debug\": true, \"runtimes\": {\"nvidia\": {\"path\": \"x\"}}}",
            "the key \"runtimes\" appears twice in one object (dockerd reads only the last): merge the two at line 1 column",
        ),
        (
            Engine::Docker,
            docker::DAEMON_JSON,
            "{\"log-opts\": {\"max-size\": \"1m\", \"max-size\": \"2m\"}}",
            "the key \"max-size\" appears twice",
        ),
        (
            Engine::Containerd,
            containerd::CONFIG_TOML,
            "[plugins.cri]\n",
            "containerd config migrate",
        ),
        (
            Engine::Containerd,
            containerd::CONFIG_TOML,
            "version = 2\n[plugins\n",
            "line 2",
        ),
        (
            Engine::Podman,
            podman::CONTAINERS_CONF,
            "[engine]\nruntimes = 3\n",
            "`engine.runtimes` is not a table",
        ),
    ];
    for (engine, host, text, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        put(root, host, text);
        let before = files(root);
        let err = plan_install(engine, &opts(root, false))
            .err()
            .unwrap_or_else(|| panic!("{text:?} accepted"));
        let msg = err.to_string();
        assert!(msg.contains(host) && msg.contains(want), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
        assert_eq!(files(root), before);
    }
    // Fuzzing finding 9: a table where the default-runtime value goes was
    // replaced by the value, and uninstall could not bring it back.
    let dir = tempfile::tempdir().unwrap();
    let text = "#Sven NAME).\n[engine.runtime]\nrnucc = [\n  \"/Zusr/binsbin/runc\",\n]\n";
    put(dir.path(), podman::CONTAINERS_CONF, text);
    let before = files(dir.path());
    let msg = plan_install(Engine::Podman, &opts(dir.path(), true))
        .err()
        .expect("a table where the default runtime goes")
        .to_string();
    assert!(
        msg.contains(podman::CONTAINERS_CONF)
            && msg.contains("`engine.runtime` is a table where migward sets a value"),
        "{msg}"
    );
    assert_eq!(files(dir.path()), before);

    let dir = tempfile::tempdir().unwrap();
    let err = plan_install(Engine::Containerd, &opts(dir.path(), false))
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("containerd config default"),
        "{err}"
    );
}

const CDI_SPEC: &str = "cdiVersion: \"0.5.0\"\nkind: nvidia.com/gpu\ndevices:\n- name: \"0\"\n  containerEdits:\n    deviceNodes:\n    - path: /dev/nvidia0\ncontainerEdits:\n  env:\n  - NVIDIA_VISIBLE_DEVICES=void\n";

#[test]
fn the_toolkit_sets_the_driver_mode_and_uninstall_takes_it_back() {
    use std::os::unix::fs::PermissionsExt;
    // A CDI spec: driver = "cdi"; the config did not exist and goes again.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    put(root, "/var/run/cdi/nvidia.yaml", CDI_SPEC);
    let spec = under(root, Path::new("/var/run/cdi/nvidia.yaml"));
    std::fs::set_permissions(&spec, std::fs::Permissions::from_mode(0o644)).unwrap();
    let plan = install(Engine::Docker, root, false);
    assert!(
        plan.said
            .iter()
            .any(|s| s.contains("/var/run/cdi/nvidia.yaml")),
        "{:?}",
        plan.said
    );
    let cfg = get(root, crate::config::DEFAULT_PATH).unwrap();
    assert!(cfg.contains("driver = \"cdi\""), "{cfg}");
    crate::config::Config::parse(&cfg, Path::new("c")).unwrap();
    // A second engine shares the config; it stays until the last one goes.
    install(Engine::Podman, root, false);
    uninstall(Engine::Docker, root);
    assert!(get(root, crate::config::DEFAULT_PATH).is_some());
    uninstall(Engine::Podman, root);
    assert_eq!(get(root, crate::config::DEFAULT_PATH), None);

    // NVIDIA's runtime and no spec: it runs below migward.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    put(root, "/usr/bin/nvidia-container-runtime", "#!/bin/sh\n");
    let original = "# ours\nallow_all = false\n";
    put(root, crate::config::DEFAULT_PATH, original);
    install(Engine::Docker, root, false);
    let cfg = get(root, crate::config::DEFAULT_PATH).unwrap();
    assert_eq!(
        cfg,
        format!("{original}runtime = \"/usr/bin/nvidia-container-runtime\"\ndriver = \"nvidia-runtime\"\n")
    );
    uninstall(Engine::Docker, root);
    assert_eq!(get(root, crate::config::DEFAULT_PATH).unwrap(), original);

    // A driver the admin chose is left alone.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    put(root, "/usr/bin/nvidia-container-runtime", "#!/bin/sh\n");
    put(
        root,
        crate::config::DEFAULT_PATH,
        "driver = \"none\"\nruntime = \"runc\"\n",
    );
    let plan = install(Engine::Docker, root, false);
    assert!(
        plan.said.iter().any(|s| s.contains("left as it is")),
        "{:?}",
        plan.said
    );
    assert_eq!(
        get(root, crate::config::DEFAULT_PATH).unwrap(),
        "driver = \"none\"\nruntime = \"runc\"\n"
    );
}

#[test]
fn a_named_config_is_read_with_its_own_cdi_dirs_as_given() {
    // The config and its CDI dir lie outside the root (a simulated host's):
    // the spec is found where the config says, not under the root.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let cdi = dir.path().join("cdi");
    std::fs::create_dir_all(&cdi).unwrap();
    std::fs::write(cdi.join("nvidia.yaml"), CDI_SPEC).unwrap();
    let cfg_path = dir.path().join("config.toml");
    let original = format!("cdi_dirs = [{:?}]\n", cdi.display().to_string());
    std::fs::write(&cfg_path, &original).unwrap();
    let mut o = opts(&root, false);
    o.target.config = Some(cfg_path.clone());
    let plan = plan_install(Engine::Docker, &o).unwrap();
    plan.apply().unwrap();
    let spec = cdi.join("nvidia.yaml").display().to_string();
    assert!(
        plan.said.iter().any(|s| s.contains(&spec)),
        "{:?}",
        plan.said
    );
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    assert_eq!(cfg, format!("{original}driver = \"cdi\"\n"));
    plan_uninstall(Engine::Docker, &o).unwrap().apply().unwrap();
    assert_eq!(std::fs::read_to_string(&cfg_path).unwrap(), original);
}

#[test]
fn a_default_install_restores_the_previous_default_even_after_reinstalls() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let original = fixture("daemon.json");
    put(root, docker::DAEMON_JSON, &original);
    install(Engine::Docker, root, true);
    install(Engine::Docker, root, true);
    install(Engine::Docker, root, false);
    assert_eq!(registered(Engine::Docker, root), Some(true));
    uninstall(Engine::Docker, root);
    assert_eq!(get(root, docker::DAEMON_JSON).unwrap(), original);
}

#[test]
fn a_migward_default_the_admin_wrote_comes_back_and_one_a_lost_install_wrote_goes() {
    // Fuzzing finding 10: a default of "migward" in a file that does not
    // register migward was taken for an earlier install's and removed.
    let cases = [
        (
            Engine::Docker,
            docker::DAEMON_JSON,
            "{\n\"default-runtime\":\"migward\",\n    \"ve\": true\n}\n",
        ),
        (
            Engine::Podman,
            podman::CONTAINERS_CONF,
            "[engine]\nruntime = \"migward\"\n",
        ),
        (
            Engine::Containerd,
            containerd::CONFIG_TOML,
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\ndefault_runtime_name = \"migward\"\n",
        ),
    ];
    for (engine, host, original) in cases {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        put(root, host, original);
        install(engine, root, true);
        assert_eq!(registered(engine, root), Some(true), "{original:?}");
        uninstall(engine, root);
        assert_eq!(get(root, host).unwrap(), original, "{original:?}");

        // The undo alone, without the kept original, keeps the default.
        install(engine, root, true);
        forget_originals(root, engine);
        uninstall(engine, root);
        let after = get(root, host).unwrap();
        assert!(after.contains("migward"), "{original:?}: {after}");
        assert_eq!(registered(engine, root), None, "{original:?}: {after}");

        // An install whose record is lost: its default is its own, and goes
        // with it.
        install(engine, root, true);
        std::fs::remove_file(record_path(root, engine.name())).unwrap();
        install(engine, root, true);
        uninstall(engine, root);
        let after = get(root, host).unwrap();
        assert!(!after.contains("migward"), "{original:?}: {after}");
    }
}
