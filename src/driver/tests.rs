use super::*;
use crate::request::NodeMajors;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

/// A spec in the shape `nvidia-ctk cdi generate` writes (trimmed).
const NVIDIA_YAML: &str = r#"---
cdiVersion: 0.5.0
kind: nvidia.com/gpu
devices:
- name: MIG-6e2a0b3c-0d6e-5f7a-8b9c-0d1e2f3a4b5c
  containerEdits:
    deviceNodes:
    - path: /dev/nvidia0
    - path: /dev/nvidia-caps/nvidia-cap12
    - path: /dev/nvidia-caps/nvidia-cap13
- name: "0:0"
  containerEdits:
    deviceNodes:
    - path: /dev/nvidia0
containerEdits:
  env:
  - NVIDIA_VISIBLE_DEVICES=void
  deviceNodes:
  - path: /dev/nvidiactl
    type: c
    major: 195
    minor: 255
  - path: /dev/nvidia-modeset
    type: c
    major: 195
    minor: 254
  - path: /dev/nvidia3
    type: c
    major: 195
    minor: 3
  hooks:
  - hookName: createContainer
    path: /usr/bin/nvidia-cdi-hook
    args:
    - nvidia-cdi-hook
    - update-ldcache
    - --folder
    - /usr/lib/x86_64-linux-gnu
  - hookName: createContainer
    path: /usr/bin/nvidia-cdi-hook
    args: [nvidia-cdi-hook, create-symlinks, --link, libcuda.so.1::/usr/lib/x86_64-linux-gnu/libcuda.so]
    env: [NVIDIA_CTK_DEBUG=false]
  mounts:
  - hostPath: /usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15
    containerPath: /usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15
    options: [ro, nosuid, nodev, rbind, rprivate]
  - hostPath: /usr/bin/nvidia-smi
    containerPath: /usr/bin/nvidia-smi
    options: [ro, nosuid, nodev, rbind, rprivate]
"#;

fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

fn majors() -> NodeMajors {
    NodeMajors {
        nvidia: 195,
        caps: Some(508),
    }
}

// A spec must be owned by root to be read at all: these tests run as root,
// as the whole suite does (scripts/test.sh checks).
#[test]
fn finds_the_nvidia_spec_and_a_later_directory_wins() {
    let tmp = tempfile::tempdir().unwrap();
    let (etc, run) = (tmp.path().join("etc"), tmp.path().join("run"));
    write(&etc, "nvidia.yaml", NVIDIA_YAML, 0o644);
    // Other kinds and other files are not ours, even when they do not parse.
    write(
        &etc,
        "zz-other.json",
        r#"{"cdiVersion":"0.5.0","kind":"vendor.com/x","devices":[{"name":"a","containerEdits":{"env":["A=1"]}}]}"#,
        0o666,
    );
    write(&etc, "broken.yaml", "{ not: [yaml", 0o644);
    write(&etc, "README.txt", "kind: nvidia.com/gpu", 0o666);
    let found = cdi::find(&[etc.clone(), run.clone()]).unwrap().unwrap();
    assert_eq!(found.file, etc.join("nvidia.yaml"));
    assert_eq!(found.env, ["NVIDIA_VISIBLE_DEVICES=void"]);
    assert_eq!(found.mounts.len(), 2);
    assert_eq!(
        found.mounts[0]["destination"],
        "/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15"
    );
    assert_eq!(found.hooks.len(), 2);
    // The hook without env gets the minimal one; the other keeps its own.
    assert_eq!(found.hooks[0].0, "createContainer");
    assert_eq!(found.hooks[0].1["env"], json!([HOOK_PATH_ENV]));
    assert_eq!(found.hooks[1].1["env"], json!(["NVIDIA_CTK_DEBUG=false"]));

    let later = NVIDIA_YAML.replace("550.54.15", "560.35.03");
    write(&run, "nvidia.yaml", &later, 0o644);
    let found = cdi::find(&[etc.clone(), run.clone()]).unwrap().unwrap();
    assert_eq!(found.file, run.join("nvidia.yaml"));
    assert!(found.mounts[0]["source"]
        .as_str()
        .unwrap()
        .ends_with("560.35.03"));
    assert_eq!(cdi::find(&[tmp.path().join("none")]).unwrap(), None);
}

#[test]
fn an_unsafe_or_invalid_spec_is_refused_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let writable = write(tmp.path(), "nvidia.yaml", NVIDIA_YAML, 0o666);
    let err = cdi::find(&[tmp.path().into()]).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "CDI spec {} is writable by group or others (mode 666)",
            writable.display()
        )),
        "{err}"
    );
    assert!(err.contains("chmod 644"), "{err}");

    std::fs::set_permissions(&writable, std::fs::Permissions::from_mode(0o644)).unwrap();
    nix::unistd::chown(&writable, Some(nix::unistd::Uid::from_raw(1000)), None).unwrap();
    let err = cdi::find(&[tmp.path().into()]).unwrap_err().to_string();
    assert!(err.contains("is owned by uid 1000, not root"), "{err}");
    std::fs::remove_file(&writable).unwrap();

    let cases = [
        (
            NVIDIA_YAML.replace("  env:\n", "  envs:\n"),
            "unknown field `envs`",
        ),
        (
            NVIDIA_YAML.replace("cdiVersion: 0.5.0", "cdiVersion: 9.9.9"),
            "unknown cdiVersion \"9.9.9\"",
        ),
        (
            NVIDIA_YAML.replace(
                "hookName: createContainer\n    path: /usr/bin/nvidia-cdi-hook\n    args:\n",
                "hookName: createContainer\n    path: nvidia-cdi-hook\n    args:\n",
            ),
            "hook nvidia-cdi-hook needs an absolute path",
        ),
        (
            NVIDIA_YAML.replace(
                "  - hostPath: /usr/bin/nvidia-smi",
                "  - hostPath: usr/bin/nvidia-smi",
            ),
            "needs absolute paths",
        ),
        (
            NVIDIA_YAML.replace("hookName: createContainer", "hookName: beforeEverything"),
            "invalid hook name",
        ),
        (
            // A broken file that names our kind is not "no spec".
            NVIDIA_YAML.replace("devices:\n- name:", "devices:\n- {name:"),
            "did not find expected",
        ),
        (
            // Fuzzing finding 3: a key quoted with its control characters.
            NVIDIA_YAML.replace("\ncontainerEdits:", "\n\"x\\e[2J\\r\": 1\ncontainerEdits:"),
            "unknown field `x\\u{1b}[2J `",
        ),
    ];
    for (text, want) in cases {
        let path = write(tmp.path(), "nvidia.yaml", &text, 0o644);
        let err = cdi::find(&[tmp.path().into()]).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "CDI spec {} is not a valid CDI spec: ",
                path.display()
            )),
            "{err}"
        );
        assert!(err.contains(want), "{want}: {err}");
        assert!(!err.chars().any(char::is_control), "{err:?}");
    }
}

fn edits() -> CommonEdits {
    let tmp = tempfile::tempdir().unwrap();
    let path = write(tmp.path(), "nvidia.yaml", NVIDIA_YAML, 0o644);
    cdi::read(&path).unwrap().unwrap()
}

#[test]
fn common_edits_apply_once_and_leave_gpu_nodes_to_the_plan() {
    let edits = edits();
    let mut spec = json!({
        "ociVersion": "1.0.2",
        "process": {"env": ["PATH=/bin", "NVIDIA_VISIBLE_DEVICES=MIG-x"]},
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
        "x-unknown": {"kept": true},
    });
    let mut warnings = Vec::new();
    apply_cdi(&mut spec, &edits, Path::new("/"), majors(), &mut |w| {
        warnings.push(w)
    });
    let once = spec.clone();
    apply_cdi(&mut spec, &edits, Path::new("/"), majors(), &mut |w| {
        warnings.push(w)
    });
    assert_eq!(spec, once, "applying twice changes nothing");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(spec["x-unknown"], json!({"kept": true}));
    assert_eq!(spec["mounts"].as_array().unwrap().len(), 3);
    assert_eq!(
        spec["hooks"]["createContainer"].as_array().unwrap().len(),
        2
    );
    let paths: Vec<_> = spec["linux"]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["/dev/nvidiactl", "/dev/nvidia-modeset"],
        "no GPU node from the spec"
    );
    assert_eq!(
        spec["linux"]["resources"]["devices"],
        json!([
            {"allow": true, "type": "c", "major": 195, "minor": 255, "access": "rwm"},
            {"allow": true, "type": "c", "major": 195, "minor": 254, "access": "rwm"},
        ])
    );
    // The spec's env is set once; the plan sets NVIDIA_VISIBLE_DEVICES after.
    assert_eq!(
        spec["process"]["env"],
        json!(["PATH=/bin", "NVIDIA_VISIBLE_DEVICES=void"])
    );
}

#[test]
fn a_spec_an_engine_already_applied_gets_no_duplicates() {
    let edits = edits();
    // What podman writes for `--device nvidia.com/gpu=…`: the same mounts
    // and hooks (without migward's env), the spec's env.
    let engine_hooks: Vec<Value> = edits
        .hooks
        .iter()
        .map(|(_, h)| {
            let mut h = h.clone();
            if h["env"] == json!([HOOK_PATH_ENV]) {
                h.as_object_mut().unwrap().remove("env");
            }
            h
        })
        .collect();
    let mut spec = json!({
        "process": {"env": ["NVIDIA_VISIBLE_DEVICES=void"]},
        "mounts": edits.mounts,
        "hooks": {"createContainer": engine_hooks, "prestart": [{"path": "/usr/bin/docker-hook"}]},
        "linux": {"devices": [{"path": "/dev/nvidiactl", "type": "c", "major": 195, "minor": 255}]},
    });
    apply_cdi(&mut spec, &edits, Path::new("/"), majors(), &mut |w| {
        panic!("{w}")
    });
    assert_eq!(spec["mounts"], json!(edits.mounts));
    let hooks = spec["hooks"]["createContainer"].as_array().unwrap();
    assert_eq!(hooks.len(), 2);
    assert!(
        hooks.iter().all(|h| h["env"].is_array()),
        "every hook has an env: {hooks:?}"
    );
    assert_eq!(spec["hooks"]["prestart"].as_array().unwrap().len(), 1);
    assert_eq!(spec["linux"]["devices"].as_array().unwrap().len(), 2);
    assert_eq!(
        spec["process"]["env"],
        json!(["NVIDIA_VISIBLE_DEVICES=void"])
    );
}

#[test]
fn a_common_node_missing_on_the_host_is_skipped_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let text = NVIDIA_YAML.replace(
        "  - path: /dev/nvidia-modeset\n    type: c\n    major: 195\n    minor: 254\n",
        "  - path: /dev/nvidia-modeset\n",
    );
    let path = write(tmp.path(), "nvidia.yaml", &text, 0o644);
    let edits = cdi::read(&path).unwrap().unwrap();
    let mut spec = json!({});
    let mut warnings = Vec::new();
    // The host root has no dev/nvidia-modeset.
    apply_cdi(&mut spec, &edits, tmp.path(), majors(), &mut |w| {
        warnings.push(w)
    });
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("common node /dev/nvidia-modeset skipped"),
        "{warnings:?}"
    );
    assert_eq!(spec["linux"]["devices"].as_array().unwrap().len(), 1);
}

#[test]
fn auto_picks_nvidia_runtime_then_cdi_then_none_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = Config {
        cdi_dirs: vec![tmp.path().join("cdi")],
        ..Config::default()
    };
    let Driver::None { warning: Some(w) } = choose(&config).unwrap() else {
        panic!("auto without a spec or NVIDIA's runtime is none")
    };
    assert!(
        w.starts_with("no driver files will be injected: no CDI spec of kind nvidia.com/gpu in "),
        "{w}"
    );
    config.runtime = "/usr/bin/nvidia-container-runtime".into();
    assert_eq!(choose(&config).unwrap(), Driver::NvidiaRuntime);
    config.runtime = "runc".into();
    config.driver = DriverMode::None;
    assert_eq!(choose(&config).unwrap(), Driver::None { warning: None });
    config.driver = DriverMode::Cdi;
    let err = choose(&config).unwrap_err().to_string();
    assert!(
        err.starts_with(
            "driver = \"cdi\" in the migward config, but no CDI spec of kind nvidia.com/gpu is in "
        ),
        "{err}"
    );
    {
        write(
            &tmp.path().join("cdi"),
            "nvidia.json",
            &serde_json::to_string(&serde_yaml::from_str::<Value>(NVIDIA_YAML).unwrap()).unwrap(),
            0o644,
        );
        config.driver = DriverMode::Auto;
        assert!(
            matches!(choose(&config).unwrap(), Driver::Cdi(_)),
            "auto applies a spec"
        );
        // NVIDIA's runtime below injects from the spec itself: not twice.
        config.runtime = "nvidia-container-runtime".into();
        assert_eq!(choose(&config).unwrap(), Driver::NvidiaRuntime);
    }
}
