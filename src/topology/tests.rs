use super::*;

fn invalid(text: &str) -> String {
    Topology::parse(text, "test").unwrap_err().to_string()
}

#[test]
fn builtins_parse_and_lay_out_first_fit() {
    let topo = Topology::load("a100x4-mixed").unwrap();
    assert_eq!(topo.gpus.len(), 4);
    let gpu0: Vec<_> = topo.gpus[0]
        .instances
        .iter()
        .map(|i| (i.gi, i.profile.name, i.start))
        .collect();
    assert_eq!(gpu0, [(1, "3g.40gb", 0), (2, "3g.40gb", 4)]);
    let gpu1: Vec<_> = topo.gpus[1]
        .instances
        .iter()
        .map(|i| (i.gi, i.profile.name, i.start))
        .collect();
    assert_eq!(
        gpu1,
        [
            (1, "2g.20gb", 0),
            (2, "2g.20gb", 2),
            (3, "2g.20gb", 4),
            (4, "1g.10gb", 6)
        ]
    );
    assert_eq!(topo.gpus[3].instances.len(), 7);
    let h100 = Topology::load("h100-7x1g").unwrap();
    assert_eq!(h100.gpus[0].model, Model::H100_80GB);
    let pending = Topology::load("a100-40gb-pending").unwrap();
    assert_eq!(
        pending.gpus[0].mig,
        MigMode {
            current: false,
            pending: true
        }
    );
}

#[test]
fn derived_uuids_are_stable_and_well_formed() {
    let a = Topology::load("a100x4-mixed").unwrap();
    let b = Topology::load("a100x4-mixed").unwrap();
    assert_eq!(a, b);
    let mig = &a.gpus[0].instances[0].compute_instances[0].uuid;
    assert!(mig.starts_with("MIG-"), "{mig}");
    assert!(crate::request::is_uuid_body(&mig[4..]), "{mig}");
    assert_ne!(mig, &a.gpus[0].instances[1].compute_instances[0].uuid);
}

#[test]
fn invalid_layouts_are_refused_with_the_reason() {
    let cases = [
        (
            "[[gpu]]\nmodel = \"A100-80GB\"\ninstances = [{ profile = \"3g.40gb\", start = 0 }, { profile = \"2g.20gb\", start = 2 }]",
            "overlaps another instance",
        ),
        (
            "[[gpu]]\nmodel = \"A100-80GB\"\ninstances = [{ profile = \"3g.40gb\", start = 2 }]",
            "cannot start at memory slice 2",
        ),
        (
            "[[gpu]]\nmodel = \"A100-80GB\"\ninstances = [\"4g.40gb\", \"4g.40gb\"]",
            "A100-80GB already has one instance of 4g.40gb, the most that fit",
        ),
        (
            "[[gpu]]\nmodel = \"A100-80GB\"\ninstances = [\"4g.40gb\", \"3g.40gb\", \"1g.10gb\"]",
            "no free placement left for 1g.10gb",
        ),
        ("[[gpu]]\nmodel = \"V100\"", "unknown model \"V100\""),
        (
            "[[gpu]]\nmodel = \"A100-80GB\"\ninstances = [\"9g.1tb\"]",
            "profile \"9g.1tb\" does not exist on A100-80GB",
        ),
        (
            "[[gpu]]\nmodel = \"A100-80GB\"\nmig = \"disabled\"\ninstances = [\"1g.10gb\"]",
            "MIG mode is not enabled",
        ),
        (
            "[[gpu]]\nmodel = \"A100-80GB\"\ninstances = [{ profile = \"3g.40gb\", ci_slices = [2, 2] }]",
            "do not fit the 3 compute slices",
        ),
        (
            // Found by fuzzing: a u32 sum wrapped to 1 and passed the check.
            "[[gpu]]\nmodel = \"H100-80GB\"\ninstances = [{ profile = \"1g.10gb\", ci_slices = [4294967295, 2] }]",
            "do not fit the 1 compute slices",
        ),
        (
            "[[gpu]]\nmodel = \"A100-80GB\"\ninstances = [{ profile = \"1g.10gb\", gi = 3 }, { profile = \"1g.10gb\", gi = 3 }]",
            "gi 3 is used twice",
        ),
        ("[[gpu]]\nmodel = \"A100-80GB\"\nminor = 40", "minor 40 is out of range"),
        ("[[gpu]]\nmodel = \"A100-80GB\"\ncolour = 1", "line 3, column 1: unknown field `colour`"),
        ("", "has no gpu"),
        ("[[gpu]\n", "line 1, column 6: "),
    ];
    for (text, want) in cases {
        let err = invalid(text);
        assert!(err.contains(want), "{text:?}: got {err:?}, want {want:?}");
    }
}

#[test]
fn explicit_ids_and_compute_instances() {
    let topo = Topology::parse(
        r#"
[[gpu]]
model = "H100-80GB"
minor = 4
uuid = "GPU-AAAAAAAA-0000-4000-8000-000000000001"
instances = [{ profile = "3g.40gb", start = 4, gi = 2, ci_slices = [1, 2] }]
"#,
        "test",
    )
    .unwrap();
    let gpu = &topo.gpus[0];
    assert_eq!(gpu.minor, 4);
    assert_eq!(gpu.uuid, "GPU-aaaaaaaa-0000-4000-8000-000000000001");
    let gi = &gpu.instances[0];
    assert_eq!((gi.gi, gi.start), (2, 4));
    let cis: Vec<_> = gi
        .compute_instances
        .iter()
        .map(|c| (c.ci, c.compute_slices))
        .collect();
    assert_eq!(cis, [(0, 1), (1, 2)]);
}

#[test]
fn unknown_name_lists_the_builtins() {
    let err = Topology::load("nope-not-here").unwrap_err().to_string();
    assert!(err.contains("a100x4-mixed"), "{err}");
}

#[test]
fn a_gpu_without_mig_support_is_off_by_default_and_refuses_mig() {
    let t = Topology::parse("[[gpu]]\nmodel = \"A40\"\npersistence = false\n", "t").unwrap();
    assert!(!t.gpus[0].mig.current && !t.gpus[0].mig.pending);
    assert!(!t.gpus[0].persistence);
    let err = Topology::parse("[[gpu]]\nmodel = \"A40\"\nmig = \"enabled\"\n", "t").unwrap_err();
    assert!(err.to_string().contains("does not support MIG"), "{err}");
}
