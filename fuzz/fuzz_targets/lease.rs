//! Lease files (lease/mod.rs): any bytes as `<state_dir>/leases/<id>.json`,
//! named for the container it names (else `fuzz.json`), read by
//! `Store::get` and `Store::scan` as every acquire reads them, and
//! deserialized directly; the text is also tried as a container id.
//! Properties: no panic; a file is a lease that names its file, or a
//! `Corrupt` error naming it, never a grant of nothing; a lease survives
//! migward's own write (`to_vec_pretty`) unchanged; unit overlap is
//! symmetric and reflexive; a valid id names a file inside the lease
//! directory.
//! `Lease::live` is left out: it reads the pid file and runtime root the
//! lease names, which is the host's state, not the input's.
#![no_main]

use libfuzzer_sys::fuzz_target;
use migward::lease::{self, Lease, LeaseError, Store};
use migward_fuzz::{assert_one_line, scratch};

fuzz_target!(|data: &[u8]| {
    let parsed = serde_json::from_slice::<Lease>(data);
    if let Ok(l) = &parsed {
        let _ = (l.holder_hint(), l.who(), l.labels_text());
        for a in &l.units {
            let _ = a.describe();
            assert!(a.overlaps(a), "a unit does not overlap itself: {a:?}");
            for b in &l.units {
                assert_eq!(a.overlaps(b), b.overlaps(a), "overlap is not symmetric");
            }
        }
        let bytes = serde_json::to_vec_pretty(l).expect("a lease serializes");
        let back: Lease = serde_json::from_slice(&bytes).expect("a written lease reads back");
        assert_eq!(&back, l);
    }

    // The file is named for the container it names, when that is an id:
    // a lease in a file of another name is corrupt (a copy).
    let name = match &parsed {
        Ok(l) if lease::validate_id(&l.holder.container_id).is_ok() => {
            l.holder.container_id.clone()
        }
        _ => "fuzz".to_string(),
    };
    let state = scratch().join("lease-state");
    let store = Store::new(&state);
    let dir = state.join("leases");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.json")), data).unwrap();
    match store.get(&name) {
        Ok(Some(l)) => {
            assert_eq!(Ok(&l), parsed.as_ref().map_err(|_| ()), "get differs");
            assert_eq!(l.holder.container_id, name);
        }
        Ok(None) => panic!("get found no lease in an existing file"),
        Err(LeaseError::Corrupt { id, reason, .. }) => {
            assert_eq!(id, name);
            assert!(
                parsed
                    .as_ref()
                    .map_or(true, |l| l.holder.container_id != name),
                "get refused a lease that parses and names its file: {reason}"
            );
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
    let (leases, bad) = store.scan().expect("the lease dir is readable");
    assert_eq!(
        leases.len() + bad.len(),
        1,
        "scan saw {} files",
        leases.len() + bad.len()
    );

    let id = String::from_utf8_lossy(data);
    match lease::validate_id(&id) {
        Ok(()) => {
            let path = store.path_of(&id);
            assert_eq!(
                path.parent(),
                Some(dir.as_path()),
                "id {id:?} leaves the lease dir"
            );
            assert_eq!(
                path.file_name().and_then(|n| n.to_str()),
                Some(format!("{id}.json").as_str())
            );
            assert!(store.get(&id).is_ok() || id == name);
        }
        Err(e) => assert_one_line("validate_id", &e.to_string()),
    }
});
