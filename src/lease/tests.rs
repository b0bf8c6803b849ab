use super::*;
use crate::plan::MigGrant;

fn unit(gpu: &str, gi: Option<u32>, ci: Option<u32>) -> Unit {
    Unit {
        gpu_uuid: gpu.into(),
        gpu_index: 0,
        gi,
        ci,
        mig_uuid: gi.map(|g| format!("MIG-{g}")),
        profile: gi.map(|_| "1g.10gb".into()),
    }
}

fn holder(id: &str, creator: Option<ProcessId>) -> Holder {
    Holder {
        container_id: id.into(),
        bundle: None,
        creator,
        init: None,
        runtime_root: None,
        pid_file: None,
        since: "2026-11-21T06:00:00Z".into(),
        labels: BTreeMap::new(),
    }
}

fn me() -> Option<ProcessId> {
    ProcessId::current()
}

/// A process identity that cannot be alive: this pid, another start time.
fn dead() -> Option<ProcessId> {
    me().map(|p| ProcessId {
        start_time: p.start_time + 7,
        ..p
    })
}

#[test]
fn overlap_rules() {
    let cases = [
        (unit("G", Some(1), None), unit("G", Some(1), None), true),
        (unit("G", Some(1), None), unit("G", Some(2), None), false),
        (unit("G", Some(1), None), unit("H", Some(1), None), false),
        (
            unit("G", Some(1), Some(0)),
            unit("G", Some(1), Some(1)),
            false,
        ),
        (
            unit("G", Some(1), Some(0)),
            unit("G", Some(1), Some(0)),
            true,
        ),
        (unit("G", Some(1), None), unit("G", Some(1), Some(1)), true),
        (unit("G", None, None), unit("G", Some(3), Some(0)), true),
        (unit("G", None, None), unit("H", None, None), false),
    ];
    for (a, b, want) in cases {
        assert_eq!(a.overlaps(&b), want, "{a:?} vs {b:?}");
        assert_eq!(b.overlaps(&a), want, "symmetry {a:?} vs {b:?}");
    }
}

#[test]
fn units_follow_exclusivity() {
    let grant = |gi, ci| Grant {
        gpu_index: 0,
        gpu_uuid: "G".into(),
        mig: Some(MigGrant {
            uuid: format!("MIG-{gi}{ci}"),
            profile: "1c.3g.40gb".into(),
            gi,
            ci,
        }),
    };
    let two_cis = [grant(1, 0), grant(1, 1)];
    let gi_units = units(&two_cis, Exclusive::GpuInstance);
    assert_eq!(gi_units.len(), 2);
    assert!(
        gi_units[0].overlaps(&gi_units[1]),
        "two CIs of one GI collide by default"
    );
    let ci_units = units(&two_cis, Exclusive::ComputeInstance);
    assert!(
        !ci_units[0].overlaps(&ci_units[1]),
        "compute-instance unit keeps them apart"
    );
    let whole = Grant {
        gpu_index: 0,
        gpu_uuid: "G".into(),
        mig: None,
    };
    let with_whole = units(&[whole, grant(1, 0), grant(2, 0)], Exclusive::GpuInstance);
    assert_eq!(with_whole.len(), 1, "the whole GPU covers its instances");
}

#[test]
fn live_holder_refuses_stale_holder_is_reclaimed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let a = Lease::new(holder("a", me()), vec![unit("G", Some(1), None)]);
    assert_eq!(
        store
            .acquire(&a, &mut |_| panic!("nothing to reclaim"))
            .unwrap(),
        Acquired::New
    );
    // Same container again (restart, retried create) is granted, untouched.
    assert_eq!(
        store
            .acquire(&a, &mut |_| panic!("nothing to reclaim"))
            .unwrap(),
        Acquired::Renewed
    );
    // The same id asking for other units while live is refused, not
    // overwritten; so is the same id from another runtime root.
    let moved = Lease::new(holder("a", me()), vec![unit("G", Some(4), None)]);
    let err = store.acquire(&moved, &mut |_| {}).unwrap_err().to_string();
    assert!(
        err.contains("container a already holds GPU 0 GI 1"),
        "{err}"
    );
    let mut other_root = holder("a", me());
    other_root.runtime_root = Some("/run/containerd/runc/other".into());
    let err = store
        .acquire(
            &Lease::new(other_root, vec![unit("G", Some(1), None)]),
            &mut |_| {},
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("a live container cannot be created again"),
        "{err}"
    );
    assert_eq!(store.all().unwrap()[0].units, a.units);
    let b = Lease::new(holder("b", me()), vec![unit("G", Some(1), None)]);
    let err = store.acquire(&b, &mut |_| {}).unwrap_err().to_string();
    assert!(
        err.contains(
            "GPU 0 GI 1 (1g.10gb, MIG-1) is held by container a since 2026-11-21T06:00:00Z"
        ),
        "{err}"
    );
    assert!(err.contains("migward leases release a --force"), "{err}");
    // Another MIG device of the same GPU instance (gpu-instance
    // exclusivity): the refusal names what `a` holds, not the request.
    let mut sibling = unit("G", Some(1), None);
    sibling.mig_uuid = Some("MIG-1b".into());
    let err = store
        .acquire(&Lease::new(holder("b", me()), vec![sibling]), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(
            "GPU 0 GI 1 (1g.10gb, MIG-1), which shares its GPU instance with the requested MIG-1b, is held by container a since"
        ),
        "{err}"
    );
    // Another instance is fine.
    let c = Lease::new(holder("c", me()), vec![unit("G", Some(2), None)]);
    store
        .acquire(&c, &mut |_| panic!("nothing to reclaim"))
        .unwrap();
    // Release frees it for b.
    assert!(store.release("a").unwrap());
    assert!(!store.release("a").unwrap());
    store
        .acquire(&b, &mut |_| panic!("nothing to reclaim"))
        .unwrap();

    // A holder whose pid now belongs to another process start is stale.
    let d = Lease::new(holder("d", dead()), vec![unit("H", Some(1), None)]);
    store.acquire(&d, &mut |_| {}).unwrap();
    let e = Lease::new(holder("e", me()), vec![unit("H", None, None)]);
    let mut reclaimed = Vec::new();
    store
        .acquire(&e, &mut |l| reclaimed.push(l.holder.container_id.clone()))
        .unwrap();
    assert_eq!(reclaimed, ["d"]);
    let log = std::fs::read_to_string(dir.path().join("events.log")).unwrap();
    assert!(
        log.contains("\"event\":\"reclaim\"") && log.contains("\"container_id\":\"d\""),
        "{log}"
    );
    let ids: Vec<_> = store
        .all()
        .unwrap()
        .into_iter()
        .map(|l| l.holder.container_id)
        .collect();
    assert_eq!(ids, ["b", "c", "e"]);
}

#[test]
fn never_started_holder_without_runtime_state_is_stale() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let mut h = holder("x", None);
    h.runtime_root = Some(dir.path().join("runc"));
    store
        .acquire(&Lease::new(h, vec![unit("G", Some(1), None)]), &mut |_| {})
        .unwrap();
    assert!(!store.all().unwrap()[0].live());
    // With runc state naming a live init, it is live.
    std::fs::create_dir_all(dir.path().join("runc/x")).unwrap();
    let p = me().unwrap();
    std::fs::write(
        dir.path().join("runc/x/state.json"),
        format!(
            "{{\"init_process_pid\": {}, \"init_process_start\": {}}}",
            p.pid, p.start_time
        ),
    )
    .unwrap();
    assert!(store.all().unwrap()[0].live());
    assert_eq!(store.gc().unwrap().len(), 0);
    std::fs::remove_dir_all(dir.path().join("runc/x")).unwrap();
    assert_eq!(store.gc().unwrap().len(), 1);
    assert!(store.all().unwrap().is_empty());
}

#[test]
fn corrupt_lease_is_an_error_never_a_grant() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    std::fs::create_dir_all(dir.path().join("leases")).unwrap();
    std::fs::write(dir.path().join("leases/junk.json"), b"\x00\xffgarbage").unwrap();
    let a = Lease::new(holder("a", me()), vec![unit("G", Some(1), None)]);
    let err = store.acquire(&a, &mut |_| {}).unwrap_err().to_string();
    assert!(
        err.contains("lease file") && err.contains("leases/junk.json is corrupt"),
        "{err}"
    );
    assert!(!store.path_of("a").exists());
}

#[test]
fn hostile_ids_are_refused_before_any_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let long = "a".repeat(10 * 1024);
    for id in [
        "../x",
        "a/b",
        "..",
        ".hidden",
        "",
        "a\0b",
        long.as_str(),
        "a b",
        "é",
    ] {
        let lease = Lease::new(holder(id, me()), vec![unit("G", Some(1), None)]);
        let err = store.acquire(&lease, &mut |_| {}).unwrap_err().to_string();
        assert!(err.starts_with("container id "), "{id:.20}: {err}");
        assert!(err.len() < 300, "{err}");
        assert!(store.release(id).is_err());
    }
    assert!(!dir.path().join("leases").exists(), "a file was touched");
}

#[test]
fn racing_threads_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let winners: Vec<bool> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..32)
            .map(|i| {
                let store = Store::new(dir.path());
                s.spawn(move || {
                    let lease = Lease::new(
                        holder(&format!("c{i}"), me()),
                        vec![unit("G", Some(1), None)],
                    );
                    store.acquire(&lease, &mut |_| {}).is_ok()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(winners.iter().filter(|w| **w).count(), 1);
    assert_eq!(Store::new(dir.path()).all().unwrap().len(), 1);
}

#[test]
fn labels_come_from_annotations() {
    let spec = serde_json::json!({"annotations": {"com.docker.compose.project": "ml", "com.docker.compose.service": "trainer", "other": "x"}});
    let labels = labels_from_spec(&spec);
    assert_eq!(labels.len(), 2);
    assert_eq!(labels["compose_service"], "trainer");
}

#[test]
fn a_holder_is_named_as_a_person_knows_it() {
    let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let who = |annotations: serde_json::Value| {
        let mut h = holder(id, None);
        h.labels = labels_from_spec(&serde_json::json!({ "annotations": annotations }));
        Lease::new(h, vec![]).who()
    };
    // containerd's CRI and CRI-O's annotations.
    let cri = serde_json::json!({"io.kubernetes.cri.sandbox-namespace": "team-a",
        "io.kubernetes.cri.sandbox-name": "nb", "io.kubernetes.cri.container-name": "main"});
    assert_eq!(who(cri), "team-a/nb/main");
    let crio = serde_json::json!({"io.kubernetes.pod.namespace": "ml", "io.kubernetes.pod.name": "train",
        "io.kubernetes.container.name": "step"});
    assert_eq!(who(crio), "ml/train/step");
    assert_eq!(who(serde_json::json!({"io.kubernetes.pod.name": "p"})), "p");
    let compose = serde_json::json!({"com.docker.compose.project": "lab", "com.docker.compose.service": "worker"});
    assert_eq!(who(compose), "lab/worker");
    assert_eq!(who(serde_json::json!({})), &id[..24]);
}

#[test]
fn pid_file_liveness_for_other_runtimes() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("init.pid");
    // A creator that is gone, started at the same tick as this process.
    let gone = me().map(|p| ProcessId {
        pid: u32::MAX - 1,
        ..p
    });
    let mut h = holder("crun-1", gone);
    h.runtime_root = Some(dir.path().join("crun"));
    h.pid_file = Some(pid_file.clone());
    let lease = Lease::new(h, vec![unit("G", Some(1), None)]);
    assert!(!lease.live(), "no pid file yet and the creator is gone");
    std::fs::write(&pid_file, std::process::id().to_string()).unwrap();
    assert!(
        lease.live(),
        "the pid file names a live process started after the lease"
    );
    std::fs::write(&pid_file, "1").unwrap();
    assert!(!lease.live(), "pid 1 started before the lease was taken");
}

#[test]
fn scan_reports_corrupt_files_and_get_reads_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    store
        .acquire(
            &Lease::new(holder("good", me()), vec![unit("G", Some(1), None)]),
            &mut |_| {},
        )
        .unwrap();
    std::fs::write(dir.path().join("leases/bad.json"), "{").unwrap();
    let (ok, bad) = store.scan().unwrap();
    assert_eq!(ok.len(), 1);
    assert_eq!(bad.len(), 1);
    assert!(
        bad[0]
            .to_string()
            .contains("migward leases release bad --force"),
        "{}",
        bad[0]
    );
    assert!(store.get("good").unwrap().is_some());
    assert!(store.get("none").unwrap().is_none());
    assert!(store.get("bad").is_err());
    // gc leaves the corrupt file for a person, and frees nothing live.
    assert!(store.gc().unwrap().is_empty());
    assert!(dir.path().join("leases/bad.json").exists());
}

fn pick(profile: &str, gis: &[u32]) -> PickWant {
    PickWant {
        profile: profile.into(),
        candidates: gis.iter().map(|&g| unit("G", Some(g), None)).collect(),
    }
}

#[test]
fn picks_take_the_first_free_candidate_and_refuse_when_all_are_held() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let want = pick("1g.10gb", &[7, 8, 9]);
    let take = |id: &str, who| {
        store.acquire_picking(
            &Lease::new(holder(id, who), vec![]),
            std::slice::from_ref(&want),
            &mut |_| {},
        )
    };
    assert_eq!(take("a", me()).unwrap().picked, vec![0]);
    assert_eq!(take("b", me()).unwrap().picked, vec![1]);
    // A stale holder of the last one is reclaimed by the pick.
    let stale = Lease::new(holder("gone", dead()), vec![unit("G", Some(9), None)]);
    store.write(&stale).unwrap();
    let mut reclaimed = Vec::new();
    let t = store
        .acquire_picking(
            &Lease::new(holder("c", me()), vec![]),
            std::slice::from_ref(&want),
            &mut |l| reclaimed.push(l.holder.container_id.clone()),
        )
        .unwrap();
    assert_eq!((t.picked, reclaimed), (vec![2], vec!["gone".to_string()]));
    assert_eq!(
        store.get("c").unwrap().unwrap().units,
        vec![unit("G", Some(9), None)]
    );
    let err = take("d", me()).unwrap_err().to_string();
    assert!(
        err.starts_with("no free 1g.10gb: all 3 are held; holders: a on GPU 0 GI 7; b on GPU 0 GI 8; c on GPU 0 GI 9: stop one"),
        "{err}"
    );
    assert!(
        store.get("d").unwrap().is_none(),
        "a refusal writes nothing"
    );
    // The same container again keeps what it has (a restart).
    let again = take("b", me()).unwrap();
    assert_eq!((again.acquired, again.picked), (Acquired::Renewed, vec![1]));
}

#[test]
fn picks_skip_what_the_request_names_and_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let lease = Lease::new(holder("a", me()), vec![unit("G", Some(7), None)]);
    let picks = [pick("1g.10gb", &[7, 8, 9]), pick("1g.10gb", &[7, 8, 9])];
    let t = store.acquire_picking(&lease, &picks, &mut |_| {}).unwrap();
    assert_eq!(t.picked, vec![1, 2]);
    assert_eq!(store.get("a").unwrap().unwrap().units.len(), 3);
    // A look picks without writing: nothing is free any more.
    let err = store.peek(&[], &picks[..1], false).unwrap_err().to_string();
    assert!(err.starts_with("no free 1g.10gb"), "{err}");
    // Precreate takes the first, for the acquire to refuse naming the holder.
    assert_eq!(store.peek(&[], &picks[..1], true).unwrap(), vec![0]);
    // A held fixed unit is left for the acquire to refuse.
    assert_eq!(
        store.peek(&[unit("G", Some(7), None)], &[], false).unwrap(),
        Vec::<usize>::new()
    );
    store.release("a").unwrap();
    assert_eq!(store.peek(&[], &picks, false).unwrap(), vec![0, 1]);
    assert!(store.all().unwrap().is_empty(), "peek writes nothing");
}

#[test]
fn refusals_point_at_a_docker_holder() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let id = "0123456789abcdef".repeat(4);
    store
        .acquire(
            &Lease::new(holder(&id, me()), vec![unit("G", Some(1), None)]),
            &mut |_| {},
        )
        .unwrap();
    let err = store
        .acquire(
            &Lease::new(holder("b", me()), vec![unit("G", Some(1), None)]),
            &mut |_| {},
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!(
            "held by container {id} (find it with `docker ps --no-trunc --filter id=0123456789ab`)"
        )),
        "{err}"
    );
}

#[test]
fn ids_expand_from_a_unique_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    for (id, gi) in [("abc123", 1), ("abd999", 2), ("x", 3)] {
        store
            .acquire(
                &Lease::new(holder(id, me()), vec![unit("G", Some(gi), None)]),
                &mut |_| {},
            )
            .unwrap();
    }
    std::fs::write(store.path_of("corrupt1"), "{").unwrap();
    let cases = [
        ("abc", Some("abc123")),
        ("x", Some("x")),
        ("corr", Some("corrupt1")),
        ("zz", None),
    ];
    for (prefix, want) in cases {
        assert_eq!(
            store.expand_id(prefix).unwrap().as_deref(),
            want,
            "{prefix}"
        );
    }
    let err = store.expand_id("ab").unwrap_err().to_string();
    assert_eq!(
        err,
        "\"ab\" matches 2 leases (abc123, abd999): give more of the container id"
    );
}

#[test]
fn a_pick_the_request_itself_exhausts_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let lease = Lease::new(holder("a", me()), vec![unit("G", Some(7), None)]);
    let err = store
        .acquire_picking(&lease, &[pick("1g.10gb", &[7])], &mut |_| {})
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "no free 1g.10gb: the other devices of this request already take all 1: ask for fewer"
    );
    assert!(store.get("a").unwrap().is_none());
}

#[test]
fn a_copied_or_oddly_named_lease_file_is_corrupt_with_a_fix_that_works() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    // A lease and a copy of it under another name: read as container `a`,
    // a reclaim of the copy would remove a.json and never the copy.
    let a = Lease::new(holder("a", me()), vec![unit("G", Some(1), None)]);
    store.acquire(&a, &mut |_| {}).unwrap();
    std::fs::copy(store.path_of("a"), store.path_of("a-backup")).unwrap();
    let b = Lease::new(holder("b", me()), vec![unit("G", Some(2), None)]);
    let err = store.acquire(&b, &mut |_| {}).unwrap_err().to_string();
    assert!(
        err.contains(
            "a-backup.json is corrupt (it names container \"a\", not the one its file name says)"
        ) && err.ends_with("remove it with `migward leases release a-backup --force`"),
        "{err}"
    );
    // What the fix runs removes the copy and leaves a's own lease.
    store.release("a-backup").unwrap();
    assert!(!store.path_of("a-backup").exists() && store.path_of("a").exists());
    store.acquire(&b, &mut |_| {}).unwrap();
    // A corrupt file whose name is no container id: the fix is `rm`.
    let odd = dir.path().join("leases/x y.json");
    std::fs::write(&odd, "{").unwrap();
    let err = store.acquire(&b, &mut |_| {}).unwrap_err().to_string();
    assert!(
        err.ends_with(&format!("remove it with `rm {}`", odd.display())),
        "{err}"
    );
}
