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

fn spec(env: &[&str], annotations: serde_json::Value) -> serde_json::Value {
    json!({"ociVersion": "1.0.2", "process": {"env": env}, "annotations": annotations})
}

#[test]
fn sources_follow_precedence() {
    let policy = RequestPolicy {
        annotation: "migward/devices",
        env_requests: true,
    };
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
    ];
    for (spec, want) in cases {
        let got = Request::from_spec(&spec, &policy)
            .unwrap()
            .map(|r| (r.source, r.ids));
        assert_eq!(got, want, "{spec}");
    }
}

#[test]
fn env_requests_can_be_turned_off() {
    let policy = RequestPolicy {
        annotation: "migward/devices",
        env_requests: false,
    };
    let s = spec(&[&format!("CUDA_VISIBLE_DEVICES=MIG-{U}")], json!({}));
    assert_eq!(Request::from_spec(&s, &policy).unwrap(), None);
    let s = spec(&[], json!({"migward/devices": "0"}));
    assert!(Request::from_spec(&s, &policy).unwrap().is_some());
}

#[test]
fn malformed_env_names_the_variable() {
    let policy = RequestPolicy {
        annotation: "migward/devices",
        env_requests: true,
    };
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
