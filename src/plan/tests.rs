use super::*;
use crate::inventory::{Inventory, TopologyInventory};
use crate::request::{Request, Source};
use crate::simulate::{write_host_tree, CAPS_MAJOR, UVM_MAJOR};
use crate::topology::Topology;

struct Host {
    _dir: tempfile::TempDir,
    files: HostFiles,
    gpus: Vec<Gpu>,
}

fn host(topology: &str) -> Host {
    host_of(&crate::topology::source_text(topology).unwrap())
}

fn host_of(text: &str) -> Host {
    let dir = tempfile::tempdir().unwrap();
    let topo = Topology::parse(text, "test").unwrap();
    write_host_tree(&topo, dir.path()).unwrap();
    let gpus = TopologyInventory(topo).gpus().unwrap();
    Host {
        files: HostFiles::new(dir.path()),
        _dir: dir,
        gpus,
    }
}

fn req(value: &str) -> Request {
    Request::parse(Source::Env("NVIDIA_VISIBLE_DEVICES"), value)
        .unwrap()
        .unwrap()
}

fn nodes(plan: &Plan) -> Vec<(String, u32, u32)> {
    plan.devices
        .iter()
        .map(|d| (d.path.clone(), d.major, d.minor))
        .collect()
}

fn shared() -> Vec<(String, u32, u32)> {
    vec![
        ("/dev/nvidiactl".into(), 195, 255),
        ("/dev/nvidia-uvm".into(), UVM_MAJOR, 0),
        ("/dev/nvidia-uvm-tools".into(), UVM_MAJOR, 1),
    ]
}

#[test]
fn mig_devices_bring_parent_caps_and_shared_nodes() {
    let h = host("a100x4-mixed");
    let gpu0_gi1 = h.gpus[0].mig_devices[0].uuid.clone();
    let gpu1_gi2 = h.gpus[1].mig_devices[1].uuid.clone();
    let cap = |m: u32| (format!("/dev/nvidia-caps/nvidia-cap{m}"), CAPS_MAJOR, m);
    type Case = (String, Vec<(String, u32, u32)>);
    let cases: Vec<Case> = vec![
        (
            gpu0_gi1.clone(),
            vec![("/dev/nvidia0".into(), 195, 0), cap(12), cap(13)],
        ),
        (
            gpu1_gi2.clone(),
            vec![("/dev/nvidia1".into(), 195, 1), cap(156), cap(157)],
        ),
        (
            "1:1".into(),
            vec![("/dev/nvidia1".into(), 195, 1), cap(156), cap(157)],
        ),
        (
            format!("{gpu0_gi1},{gpu1_gi2}"),
            vec![
                ("/dev/nvidia0".into(), 195, 0),
                cap(12),
                cap(13),
                ("/dev/nvidia1".into(), 195, 1),
                cap(156),
                cap(157),
            ],
        ),
        (
            "0".into(),
            vec![
                ("/dev/nvidia0".into(), 195, 0),
                cap(12),
                cap(13),
                cap(21),
                cap(22),
            ],
        ),
    ];
    for (value, want) in cases {
        let plan = plan(&req(&value), &h.gpus, &h.files).unwrap();
        let mut expected = shared();
        expected.extend(want);
        assert_eq!(nodes(&plan), expected, "{value}");
        assert_eq!(
            plan.rules.len(),
            plan.devices.len(),
            "{value}: a rule per node"
        );
        for (d, r) in plan.devices.iter().zip(&plan.rules) {
            assert_eq!((d.major, d.minor, r.access), (r.major, r.minor, "rwm"));
        }
    }
}

#[test]
fn plan_is_deterministic_and_sets_visible_devices() {
    let h = host("a100x4-mixed");
    let uuid = h.gpus[3].mig_devices[6].uuid.clone();
    let a = plan(&req(&uuid), &h.gpus, &h.files).unwrap();
    let b = plan(&req(&uuid), &h.gpus, &h.files).unwrap();
    assert_eq!(a, b);
    assert_eq!(
        a.env,
        vec![("NVIDIA_VISIBLE_DEVICES".to_string(), uuid.clone())]
    );
    let cap = a
        .devices
        .iter()
        .find(|d| d.path.contains("nvidia-cap"))
        .unwrap();
    assert_eq!(cap.mode, 0o444);
    let gi = &a.grants[0].mig.as_ref().unwrap();
    assert_eq!((gi.gi, gi.ci, gi.profile.as_str()), (7, 0, "1g.10gb"));
}

#[test]
fn whole_gpu_without_mig_gets_only_its_node() {
    let h = host("a100-40gb-pending");
    let p = plan(&req("1"), &h.gpus, &h.files).unwrap();
    let mut expected = shared();
    expected.push(("/dev/nvidia1".into(), 195, 1));
    assert_eq!(nodes(&p), expected);
    assert_eq!(p.env[0].1, h.gpus[1].uuid);
}

#[test]
fn legacy_ids_resolve_with_a_warning_and_cuda_env_is_normalised() {
    let h = host("a100x4-mixed");
    let legacy = format!("MIG-{}/2/0", h.gpus[0].uuid);
    let r = Request::parse(Source::Env("CUDA_VISIBLE_DEVICES"), &legacy)
        .unwrap()
        .unwrap();
    let p = plan(&r, &h.gpus, &h.files).unwrap();
    let want = h.gpus[0].mig_devices[1].uuid.clone();
    assert_eq!(p.grants[0].mig.as_ref().unwrap().uuid, want);
    assert!(p.warnings[0].contains("legacy MIG id"), "{:?}", p.warnings);
    assert!(p.env.contains(&("CUDA_VISIBLE_DEVICES".to_string(), want)));
}

#[test]
fn bad_requests_name_the_problem() {
    let h = host("a100x4-mixed");
    let pending = host("a100-40gb-pending");
    let unknown = "MIG-00000000-0000-4000-8000-000000000000";
    let cases: Vec<(&Host, String, &str)> = vec![
        (
            &h,
            unknown.into(),
            "is not a MIG device on this host; MIG devices here include MIG-",
        ),
        (
            &h,
            "GPU-00000000-0000-4000-8000-000000000000".into(),
            "is not a GPU on this host; GPUs here: 0 GPU-",
        ),
        (
            &h,
            "7".into(),
            "GPU index 7 is out of range: this host has 4 GPU(s), indices 0 to 3",
        ),
        (
            &h,
            "0:5".into(),
            "MIG index 0:5 names no MIG device: GPU 0 has 2 MIG device(s)",
        ),
        (
            &pending,
            "0:0".into(),
            "but its MIG mode is enabled but pending: reset the GPU (`nvidia-smi -i 0 -r`)",
        ),
        (
            &pending,
            "1:0".into(),
            "MIG is not enabled on it: enable it with `nvidia-smi -i 1 -mig 1`",
        ),
        (
            &pending,
            unknown.into(),
            "this host has no MIG devices; GPU 0: its MIG mode is enabled but pending",
        ),
        (
            &pending,
            format!("MIG-{}/1/0", pending.gpus[1].uuid),
            "MIG is not enabled on it",
        ),
        (
            &h,
            "4g.40gb".into(),
            "no MIG device has profile 4g.40gb on this host; profiles here: 3g.40gb ×2, 2g.20gb ×6, 1g.10gb ×9",
        ),
        (
            &h,
            "3g.40gb,3g.40gb,mig-3g.40gb".into(),
            "asks for 3 × 3g.40gb, and this host has 2",
        ),
        (
            &pending,
            "1g.5gb".into(),
            "no MIG device has profile 1g.5gb on this host; this host has no MIG devices",
        ),
    ];
    for (host, value, want) in cases {
        let err = plan(&req(&value), &host.gpus, &host.files)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("env NVIDIA_VISIBLE_DEVICES: "), "{err}");
        assert!(err.contains(want), "{value}: got {err}");
        assert!(!err.contains('\n'));
    }
}

#[test]
fn broken_host_files_name_the_file() {
    let cases: Vec<(&str, &str, &str)> = vec![
        (
            "proc/driver/nvidia-caps/mig-minors",
            "gpu0/gi1/access 12\ngpu0/gi1/ci0/access rubbish\n",
            "mig-minors line 2: \"gpu0/gi1/ci0/access rubbish\"",
        ),
        (
            "proc/driver/nvidia-caps/mig-minors",
            "rubbish here\n",
            "mig-minors has no entry for gpu0/gi1",
        ),
        (
            "proc/driver/nvidia-caps/mig-minors",
            "",
            "mig-minors is empty",
        ),
        (
            "proc/devices",
            "Character devices:\n195 nvidia\n511 nvidia-uvm\n",
            "proc/devices has no nvidia-caps character device",
        ),
        (
            "proc/devices",
            "Character devices:\n195 nvidia\n508 nvidia-caps\n",
            "has no nvidia-uvm character device",
        ),
        (
            "proc/devices",
            "Character devices:\n  1 mem\n",
            "the NVIDIA driver is not loaded",
        ),
    ];
    for (file, text, want) in cases {
        let h = host("a100x4-mixed");
        std::fs::write(h.files.path(file), text).unwrap();
        let uuid = h.gpus[0].mig_devices[0].uuid.clone();
        let err = plan(&req(&uuid), &h.gpus, &h.files)
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{file}: got {err}");
    }
    let h = host("a100x4-mixed");
    std::fs::remove_file(h.files.path("proc/driver/nvidia-caps/mig-minors")).unwrap();
    let uuid = h.gpus[0].mig_devices[0].uuid.clone();
    let err = plan(&req(&uuid), &h.gpus, &h.files)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot read") && err.contains("mig-minors"),
        "{err}"
    );
}

#[test]
fn mig_index_is_the_nvml_slot_as_the_device_plugin_means_it() {
    // NVML numbers MIG devices in creation (topology) order, so with GI 5
    // created first, 0:0 is GI 5 although the list shows it second.
    let h = host_of(
        "[[gpu]]\nmodel = \"A100-80GB\"\ninstances = [{ profile = \"3g.40gb\", start = 4, gi = 5 }, { profile = \"3g.40gb\", start = 0, gi = 1 }]\n",
    );
    let by_gi: Vec<(u32, u32)> = h.gpus[0]
        .mig_devices
        .iter()
        .map(|m| (m.gi, m.index))
        .collect();
    assert_eq!(by_gi, vec![(1, 1), (5, 0)]);
    for (id, gi) in [("0:0", 5), ("0:1", 1)] {
        let p = plan(&req(id), &h.gpus, &h.files).unwrap();
        assert_eq!(p.grants[0].mig.as_ref().unwrap().gi, gi, "{id}");
    }
}

#[test]
fn profiles_take_candidates_in_gpu_then_placement_order() {
    let h = host_of(
        "[[gpu]]\nmodel = \"A100-80GB\"\ninstances = [{ profile = \"1g.10gb\", start = 6 }, { profile = \"1g.10gb\", start = 5 }, \"3g.40gb\"]\n[[gpu]]\nmodel = \"A100-80GB\"\ninstances = [\"1g.10gb\"]\n",
    );
    let files = h.files.clone();
    let host = crate::plan::Host {
        gpus: h.gpus.clone(),
        files,
    };
    let res = host.resolve(&req("1g.10gb")).unwrap();
    assert!(res.fixed.is_empty());
    let order: Vec<(u32, u32)> = res.picks[0]
        .candidates
        .iter()
        .map(|s| {
            let g = host.grant_of(*s);
            let gpu = &h.gpus[g.gpu_index as usize];
            let m = gpu
                .mig_devices
                .iter()
                .find(|m| m.gi == g.mig.as_ref().unwrap().gi)
                .unwrap();
            (g.gpu_index, m.placement.start)
        })
        .collect();
    assert_eq!(order, vec![(0, 5), (0, 6), (1, 0)]);
    // Without a lease store, two asks of one profile get two instances.
    let p = plan(&req("1g.10gb,mig-1g.10gb"), &h.gpus, &h.files).unwrap();
    assert_eq!(p.grants.len(), 2);
    assert_ne!(p.grants[0], p.grants[1]);
    let visible = p.visible();
    assert_eq!(visible.split(',').count(), 2, "{visible}");
    assert!(
        visible.split(',').all(|u| u.starts_with("MIG-")),
        "{visible}"
    );
}

#[test]
fn device_nodes_plan_like_the_uuid_they_form() {
    use crate::request::{DeviceId, SpecNode};
    let h = host("a100x4-mixed");
    let dev = &h.gpus[3].mig_devices[2];
    let by_uuid = plan(&req(&dev.uuid), &h.gpus, &h.files).unwrap();
    let node = |path: String, major, minor| DeviceId::Node(SpecNode { path, major, minor });
    let caps: Vec<_> = by_uuid
        .devices
        .iter()
        .filter(|d| d.major == CAPS_MAJOR)
        .collect();
    let request = Request {
        source: Source::EngineNodes,
        ids: vec![
            node("/dev/nvidia3".into(), 195, 3),
            node(caps[0].path.clone(), CAPS_MAJOR, caps[0].minor),
            node(caps[1].path.clone(), CAPS_MAJOR, caps[1].minor),
        ],
    };
    let by_nodes = plan(&request, &h.gpus, &h.files).unwrap();
    assert_eq!(by_nodes.devices, by_uuid.devices);
    assert_eq!(by_nodes.grants, by_uuid.grants);
    assert_eq!(by_nodes.visible(), dev.uuid);

    // A cap of an instance that no longer exists (GPU 3 has GIs 7..13
    // only after re-creation; GI 2's CI 1 was never made).
    let g = 3 + 135 * 3 + 9 * 2;
    let stale = Request {
        source: Source::EngineNodes,
        ids: vec![
            node(format!("/dev/nvidia-caps/nvidia-cap{g}"), CAPS_MAJOR, g),
            node(
                format!("/dev/nvidia-caps/nvidia-cap{}", g + 2),
                CAPS_MAJOR,
                g + 2,
            ),
        ],
    };
    let err = plan(&stale, &h.gpus, &h.files).unwrap_err().to_string();
    assert!(
        err.contains(&format!("device nodes in the spec: /dev/nvidia-caps/nvidia-cap{} names MIG device gpu3/gi2/ci1, which does not exist now", g + 2)),
        "{err}"
    );
}
