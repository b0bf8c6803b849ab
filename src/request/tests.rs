use super::*;
use serde_json::json;

const U: &str = "1d3e7a2b-4c5f-4a6b-8c7d-9e0f1a2b3c4d";

fn ids(value: &str) -> Vec<DeviceId> {
    parse_ids(value).unwrap_or_else(|e| panic!("{value:?}: {e}"))
}

#[test]
fn grammar_accepts_every_form() {
    let mig = format!("MIG-{U}");
    let cases: Vec<(String, Vec<DeviceId>)> = vec![
        (mig.clone(), vec![DeviceId::MigUuid(mig.clone())]),
        (
            mig.to_uppercase().replace("MIG-", "mig-"),
            vec![DeviceId::MigUuid(mig.clone())],
        ),
        (
            format!("MIG-GPU-{U}/1/0"),
            vec![DeviceId::LegacyMig {
                gpu_uuid: format!("GPU-{U}"),
                gi: 1,
                ci: 0,
            }],
        ),
        (
            format!("GPU-{U}"),
            vec![DeviceId::GpuUuid(format!("GPU-{U}"))],
        ),
        ("3".into(), vec![DeviceId::GpuIndex(3)]),
        ("0:1".into(), vec![DeviceId::MigIndex(0, 1)]),
        ("all".into(), vec![DeviceId::All]),
        ("ALL".into(), vec![DeviceId::All]),
        ("none".into(), vec![]),
        ("void".into(), vec![]),
        ("".into(), vec![]),
        ("  ".into(), vec![]),
        (
            format!(" {mig} , 1 ,{mig},"),
            vec![DeviceId::MigUuid(mig.clone()), DeviceId::GpuIndex(1)],
        ),
    ];
    for (value, want) in cases {
        assert_eq!(ids(&value), want, "{value:?}");
    }
}

#[test]
fn grammar_refuses_malformed_ids_with_the_value() {
    let long = "A".repeat(10 * 1024);
    let cases = [
        ("MIG-zz", "\"MIG-zz\" is not a MIG UUID"),
        ("0:", "\"0:\" is not a MIG index"),
        (":1", "\":1\" is not a MIG index"),
        ("-1", "\"-1\" is not a device id"),
        ("GPU-1234", "\"GPU-1234\" is not a GPU UUID"),
        ("MIG-GPU-zz/1/0", "is not a legacy MIG id"),
        ("all,0", "mixes all"),
        ("none,0", "mixes none/void"),
        ("99999", "is not a device id"),
        (long.as_str(), "is not a device id"),
    ];
    for (value, want) in cases {
        let err = parse_ids(value).unwrap_err();
        assert!(err.contains(want), "{value:.20}: got {err:?}");
        assert!(
            err.len() < 300,
            "error is not one short line: {}",
            err.len()
        );
    }
}

#[test]
fn overlong_values_are_refused_naming_the_source_and_cut() {
    let long = format!("MIG-{U},").repeat(300);
    let err = Request::parse(Source::Env("CUDA_VISIBLE_DEVICES"), &long)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("env CUDA_VISIBLE_DEVICES value \"MIG-"),
        "{err}"
    );
    assert!(err.contains(&format!("({} bytes)", long.len())), "{err}");
    assert!(err.contains("more than 4096"), "{err}");
    assert!(err.len() < 300 && !err.contains('\n'), "{err}");
}

#[test]
fn control_characters_are_escaped_in_errors() {
    let err = Request::parse(Source::Argument, "MIG-\n\u{1b}[31m")
        .unwrap_err()
        .to_string();
    assert!(!err.contains('\n') && !err.contains('\u{1b}'), "{err:?}");
}

const MAJORS: NodeMajors = NodeMajors {
    nvidia: 195,
    caps: Some(508),
};

fn kinds() -> &'static [String] {
    static KINDS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    KINDS.get_or_init(|| crate::config::Config::default().cdi_kinds)
}

fn policy() -> RequestPolicy<'static> {
    RequestPolicy {
        annotation: "migward/devices",
        env_requests: true,
        annotation_requests: true,
        untrusted: Untrusted::Ignore,
        cdi_kinds: kinds(),
        engine_nodes: Some(MAJORS),
    }
}

fn spec(env: &[&str], annotations: serde_json::Value) -> serde_json::Value {
    json!({"ociVersion": "1.0.2", "process": {"env": env}, "annotations": annotations})
}

#[test]
fn sources_follow_precedence() {
    let policy = policy();
    let mig = format!("MIG-{U}");
    let cuda = format!("CUDA_VISIBLE_DEVICES={mig}");
    type Case = (serde_json::Value, Option<(Source, Vec<DeviceId>)>);
    let cases: Vec<Case> = vec![
        (spec(&["PATH=/bin"], json!({})), None),
        (
            spec(
                &[&cuda, "NVIDIA_VISIBLE_DEVICES=all"],
                json!({"migward/devices": "1"}),
            ),
            Some((
                Source::Annotation("migward/devices".into()),
                vec![DeviceId::GpuIndex(1)],
            )),
        ),
        (
            spec(&[&cuda, "NVIDIA_VISIBLE_DEVICES=all"], json!({})),
            Some((
                Source::Env("CUDA_VISIBLE_DEVICES"),
                vec![DeviceId::MigUuid(mig.clone())],
            )),
        ),
        (
            spec(
                &["CUDA_VISIBLE_DEVICES=0", "NVIDIA_VISIBLE_DEVICES=2"],
                json!({}),
            ),
            Some((
                Source::Env("NVIDIA_VISIBLE_DEVICES"),
                vec![DeviceId::GpuIndex(2)],
            )),
        ),
        (spec(&["NVIDIA_VISIBLE_DEVICES=void"], json!({})), None),
        (spec(&[&cuda], json!({"migward/devices": "none"})), None),
        (json!({"ociVersion": "1.0.2"}), None),
        (
            spec(
                &[
                    "CUDA_VISIBLE_DEVICES=mig-1g.10gb",
                    "NVIDIA_VISIBLE_DEVICES=all",
                ],
                json!({}),
            ),
            Some((
                Source::Env("CUDA_VISIBLE_DEVICES"),
                vec![DeviceId::Profile("1g.10gb".into())],
            )),
        ),
        (
            spec(&["NVIDIA_VISIBLE_DEVICES=3g.40gb,3g.40gb"], json!({})),
            Some((
                Source::Env("NVIDIA_VISIBLE_DEVICES"),
                vec![
                    DeviceId::Profile("3g.40gb".into()),
                    DeviceId::Profile("3g.40gb".into()),
                ],
            )),
        ),
        // CDI: the engine's nodes next to NVIDIA_VISIBLE_DEVICES=void.
        (
            cdi_spec(&["NVIDIA_VISIBLE_DEVICES=void"], json!({})),
            Some((Source::EngineNodes, cdi_ids())),
        ),
        // A higher source wins over the nodes; the annotation's none is final.
        (
            cdi_spec(&["NVIDIA_VISIBLE_DEVICES=1"], json!({})),
            Some((
                Source::Env("NVIDIA_VISIBLE_DEVICES"),
                vec![DeviceId::GpuIndex(1)],
            )),
        ),
        (cdi_spec(&[], json!({"migward/devices": "none"})), None),
    ];
    for (spec, want) in cases {
        let got = Request::from_spec(&spec, &policy)
            .unwrap()
            .map(|r| (r.source, r.ids));
        assert_eq!(got, want, "{spec}");
    }
}

/// A spec as CDI leaves it for a MIG device: parent, GI and CI caps, the
/// shared nodes, and a block device and a non-NVIDIA char device.
fn cdi_spec(env: &[&str], annotations: serde_json::Value) -> serde_json::Value {
    let mut s = spec(env, annotations);
    s["linux"] = json!({"devices": [
        {"path": "/dev/nvidiactl", "type": "c", "major": 195, "minor": 255},
        {"path": "/dev/nvidia-modeset", "type": "c", "major": 195, "minor": 254},
        {"path": "/dev/nvidia-uvm", "type": "c", "major": 511, "minor": 0},
        {"path": "/dev/nvidia3", "type": "c", "major": 195, "minor": 3},
        {"path": "/dev/nvidia-caps/nvidia-cap417", "type": "c", "major": 508, "minor": 417},
        {"path": "/dev/nvidia-caps/nvidia-cap418", "type": "c", "major": 508, "minor": 418},
        {"path": "/dev/nvidia-caps/nvidia-cap418", "type": "c", "major": 508, "minor": 418},
        {"path": "/dev/sda", "type": "b", "major": 195, "minor": 1},
        {"path": "/dev/wrapped", "type": "c", "major": 4294967491u64, "minor": 4294967297u64},
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}
    ]});
    s
}

fn cdi_ids() -> Vec<DeviceId> {
    let node = |path: &str, major, minor| {
        DeviceId::Node(SpecNode {
            path: path.into(),
            major,
            minor,
        })
    };
    vec![
        node("/dev/nvidia3", 195, 3),
        node("/dev/nvidia-caps/nvidia-cap417", 508, 417),
        node("/dev/nvidia-caps/nvidia-cap418", 508, 418),
        // runc makes 195:1 of 2^32 + 195 : 2^32 + 1.
        node("/dev/wrapped", 195, 1),
    ]
}

#[test]
fn engine_nodes_count_only_when_enabled() {
    let s = cdi_spec(&[], json!({}));
    let off = RequestPolicy {
        engine_nodes: None,
        ..policy()
    };
    assert_eq!(Request::from_spec(&s, &off).unwrap(), None);
    let bad = json!({"ociVersion": "1.0.2", "linux": {"devices": {"path": "/dev/nvidia0"}}});
    let err = Request::from_spec(&bad, &policy()).unwrap_err().to_string();
    assert!(err.contains("linux.devices is not a list"), "{err}");
}

#[test]
fn profiles_are_recognised() {
    let cases = [
        ("1g.10gb", Some("1g.10gb")),
        ("MIG-1G.10GB", Some("1g.10gb")),
        ("1g.10gb+me", Some("1g.10gb+me")),
        ("1c.3g.40gb", Some("1c.3g.40gb")),
        ("7g.80gb", Some("7g.80gb")),
        ("1g", None),
        ("1g.10", None),
        ("g.10gb", None),
        ("1x.3g.40gb", None),
        ("1g.10gb.5", None),
        ("mig-", None),
    ];
    for (item, want) in cases {
        assert_eq!(parse_profile(item).as_deref(), want, "{item}");
    }
}

#[test]
fn env_requests_can_be_turned_off() {
    let policy = RequestPolicy {
        env_requests: false,
        ..policy()
    };
    let s = spec(&[&format!("CUDA_VISIBLE_DEVICES=MIG-{U}")], json!({}));
    assert_eq!(Request::from_spec(&s, &policy).unwrap(), None);
    let s = spec(&[], json!({"migward/devices": "0"}));
    assert!(Request::from_spec(&s, &policy).unwrap().is_some());
}

#[test]
fn malformed_env_names_the_variable() {
    let policy = policy();
    let s = spec(&["CUDA_VISIBLE_DEVICES=MIG-zz"], json!({}));
    let err = Request::from_spec(&s, &policy).unwrap_err().to_string();
    assert!(
        err.starts_with("env CUDA_VISIBLE_DEVICES value \"MIG-zz\""),
        "{err}"
    );
    let s = json!({"process": {"env": "PATH=/bin"}});
    let err = Request::from_spec(&s, &policy).unwrap_err().to_string();
    assert!(
        err.contains("process.env is not a list of strings"),
        "{err}"
    );
}

/// A device plugin's `volume-mounts` form: `/dev/null` once per device.
fn plugin_spec(env: &[&str], ids: &[&str]) -> serde_json::Value {
    let mut s = spec(env, json!({}));
    let mut mounts = vec![json!({"destination": "/proc", "type": "proc", "source": "proc"})];
    for id in ids {
        mounts.push(json!({
            "destination": format!("{PLUGIN_MOUNT_DIR}/{id}"),
            "type": "bind", "source": "/dev/null", "options": ["rbind", "ro"]
        }));
    }
    s["mounts"] = json!(mounts);
    s
}

#[test]
fn device_plugin_volume_mounts_are_a_request() {
    let p = policy();
    let env = format!("NVIDIA_VISIBLE_DEVICES={PLUGIN_MOUNT_DIR}");
    let mig = format!("MIG-{U}");
    let s = plugin_spec(&[&env], &[&mig, "3:1", &mig]);
    let got = Request::from_spec(&s, &p).unwrap().unwrap();
    assert_eq!(got.source, Source::PluginMounts);
    assert_eq!(
        got.ids,
        vec![DeviceId::MigUuid(mig.clone()), DeviceId::MigIndex(3, 1)]
    );
    // The env pointing at the mounts alone asks for nothing.
    assert_eq!(
        Request::from_spec(&plugin_spec(&[&env], &[]), &p).unwrap(),
        None
    );
    // The CDI form of the mount names a qualified device; another vendor's passes.
    let cdi = format!("cdi/k8s.device-plugin.nvidia.com/gpu={mig}");
    let s = plugin_spec(&[], &[&cdi, "cdi/vendor.example/fpga=0"]);
    let got = Request::from_spec(&s, &p).unwrap().unwrap();
    assert_eq!(got.ids, vec![DeviceId::MigUuid(mig.clone())]);
    // Only /dev/null-sourced mounts are the plugin's.
    let mut s = plugin_spec(&[], &[]);
    s["mounts"] = json!([{"destination": format!("{PLUGIN_MOUNT_DIR}/{mig}"), "source": "/tmp/x"}]);
    assert_eq!(Request::from_spec(&s, &p).unwrap(), None);
    // A bad id names the mount; a list in one name is refused.
    for (id, want) in [
        ("MIG-zz", "MIG-zz"),
        ("0,1", "more than one device"),
        ("cdi/nogpu", "not a CDI device name"),
    ] {
        let err = Request::from_spec(&plugin_spec(&[], &[id]), &p)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "device-plugin mounts under {PLUGIN_MOUNT_DIR} value \"{PLUGIN_MOUNT_DIR}/"
            )) && err.contains(want),
            "{err}"
        );
    }
}

#[test]
fn cdi_annotations_are_a_request() {
    let p = policy();
    let mig = format!("MIG-{U}");
    let key = "cdi.k8s.io/nvidia-device-plugin_7f3a";
    let s = spec(
        &[],
        json!({key: format!("k8s.device-plugin.nvidia.com/gpu={mig},nvidia.com/gpu=0:2")}),
    );
    let got = Request::from_spec(&s, &p).unwrap().unwrap();
    assert_eq!(got.source, Source::CdiAnnotation(key.into()));
    assert_eq!(
        got.ids,
        vec![DeviceId::MigUuid(mig.clone()), DeviceId::MigIndex(0, 2)]
    );
    // Another vendor's devices pass, and so do other annotations.
    let s = spec(
        &[],
        json!({"cdi.k8s.io/fpga": "vendor.example/fpga=0", "io.kubernetes.cri.container-type": "container"}),
    );
    assert_eq!(Request::from_spec(&s, &p).unwrap(), None);
    // A malformed value names the annotation.
    let s = spec(&[], json!({key: "MIG-x"}));
    let err = Request::from_spec(&s, &p).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("annotation {key} value \"MIG-x\"")),
        "{err}"
    );
    let s = spec(&[], json!({key: "nvidia.com/gpu=MIG-zz"}));
    let err = Request::from_spec(&s, &p).unwrap_err().to_string();
    assert!(err.contains("MIG-zz"), "{err}");
}

#[test]
fn kubelet_sources_rank_above_the_authors_env() {
    let p = policy();
    let other = "MIG-aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee";
    let mig = format!("MIG-{U}");
    let env = format!("CUDA_VISIBLE_DEVICES={other}");
    let got = Request::from_spec(&plugin_spec(&[&env], &[&mig]), &p)
        .unwrap()
        .unwrap();
    assert_eq!(got.source, Source::PluginMounts);
    let s = spec(
        &[&env],
        json!({"cdi.k8s.io/x": format!("nvidia.com/gpu={mig}")}),
    );
    let got = Request::from_spec(&s, &p).unwrap().unwrap();
    assert_eq!(got.source, Source::CdiAnnotation("cdi.k8s.io/x".into()));
}

#[test]
fn untrusted_author_requests_are_ignored_or_refused() {
    let mig = format!("MIG-{U}");
    let k8s = RequestPolicy {
        env_requests: false,
        annotation_requests: false,
        ..policy()
    };
    // Forged env and annotation: ignored, each with a note; the container
    // asks for nothing.
    let s = spec(
        &[
            &format!("NVIDIA_VISIBLE_DEVICES={mig}"),
            "CUDA_VISIBLE_DEVICES=1g.10gb",
        ],
        json!({"migward/devices": "0"}),
    );
    let r = Request::read(&s, &k8s).unwrap();
    assert_eq!(r.request, None);
    assert_eq!(r.ignored.len(), 3, "{:?}", r.ignored);
    assert!(
        r.ignored[0].starts_with(
            "annotation migward/devices value \"0\" ignored: annotation_requests = false"
        ),
        "{:?}",
        r.ignored
    );
    assert!(
        r.ignored[2].contains("env_requests = false"),
        "{:?}",
        r.ignored
    );
    // What the kubelet wrote still counts, past the ignored env.
    let s = plugin_spec(&[&format!("NVIDIA_VISIBLE_DEVICES={mig}")], &[&mig]);
    let r = Request::read(&s, &k8s).unwrap();
    assert_eq!(r.request.unwrap().source, Source::PluginMounts);
    assert!(r.ignored.is_empty(), "read stops at the plugin's mounts");
    let s = cdi_spec(&[&format!("NVIDIA_VISIBLE_DEVICES={mig}")], json!({}));
    let r = Request::read(&s, &k8s).unwrap();
    assert_eq!(r.request.unwrap().source, Source::EngineNodes);
    assert_eq!(r.ignored.len(), 1);
    // A malformed forged value is ignored like any other; `void` and an
    // index-only CUDA_VISIBLE_DEVICES are no request at all.
    let s = spec(&["NVIDIA_VISIBLE_DEVICES=MIG-zz"], json!({}));
    assert_eq!(Request::read(&s, &k8s).unwrap().ignored.len(), 1);
    let s = spec(
        &["NVIDIA_VISIBLE_DEVICES=void", "CUDA_VISIBLE_DEVICES=0"],
        json!({}),
    );
    assert_eq!(Request::read(&s, &k8s).unwrap(), Reading::default());

    let refuse = RequestPolicy {
        untrusted: Untrusted::Refuse,
        ..k8s
    };
    let s = spec(&[&format!("NVIDIA_VISIBLE_DEVICES={mig}")], json!({}));
    let err = Request::from_spec(&s, &refuse).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("env NVIDIA_VISIBLE_DEVICES value \"{mig}\" is a request this host does not accept from a container's author (env_requests = false)")),
        "{err}"
    );
    let s = spec(&["NVIDIA_VISIBLE_DEVICES=void"], json!({}));
    assert_eq!(Request::from_spec(&s, &refuse).unwrap(), None);
}

#[test]
fn a_pods_sandbox_container_asks_for_nothing() {
    let mig = format!("MIG-{U}");
    for mark in SANDBOX_MARKS {
        let s = spec(
            &[&format!("NVIDIA_VISIBLE_DEVICES={mig}")],
            json!({mark: "sandbox", "migward/devices": "1g.10gb", "cdi.k8s.io/x": format!("nvidia.com/gpu={mig}")}),
        );
        assert_eq!(
            Request::read(&s, &policy()).unwrap(),
            Reading::default(),
            "{mark}"
        );
        let s = spec(&[], json!({mark: "container", "migward/devices": "0"}));
        assert!(
            Request::from_spec(&s, &policy()).unwrap().is_some(),
            "{mark}"
        );
    }
}
