//! The device-id grammar on any string, as `CUDA_VISIBLE_DEVICES`,
//! `NVIDIA_VISIBLE_DEVICES` or the `migward/devices` annotation carry it
//! (request/ids.rs). Properties: no panic; what parses prints back to ids
//! that parse the same (the shim writes them into the spec); a profile name
//! is normalised once; every error is one bounded line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use migward::request::{self, DeviceId, Request, Source};
use migward_fuzz::assert_one_line;

fuzz_target!(|data: &[u8]| {
    let value = String::from_utf8_lossy(data);
    let value = value.as_ref();

    let shown = request::shown(value);
    assert_one_line("shown", &shown);
    // 80 characters, each escaped to at most 10 (`\u{10ffff}`), the quotes
    // and the `… (N bytes)` tail.
    assert!(shown.chars().count() <= 80 * 10 + 40, "shown is unbounded");

    let _ = request::is_uuid_body(value);
    if let Some(p) = request::parse_profile(value) {
        assert_eq!(p, p.to_ascii_lowercase(), "profile not lowercase");
        assert_eq!(request::parse_profile(&p).as_deref(), Some(p.as_str()));
    }

    match request::parse_ids(value) {
        Ok(ids) => {
            let text: Vec<String> = ids.iter().map(ToString::to_string).collect();
            let again = request::parse_ids(&text.join(","));
            assert_eq!(again.as_ref(), Ok(&ids), "ids do not round-trip: {text:?}");
            if ids.contains(&DeviceId::All) {
                assert_eq!(ids.len(), 1, "all mixed with ids");
            }
        }
        Err(problem) => assert_one_line("parse_ids", &problem),
    }

    match Request::parse(Source::Env("NVIDIA_VISIBLE_DEVICES"), value) {
        Ok(Some(r)) => assert!(!r.ids.is_empty()),
        Ok(None) => {}
        Err(e) => {
            let msg = e.to_string();
            assert_one_line("Request::parse", &msg);
            assert!(msg.len() < 2500, "error message is {} bytes", msg.len());
        }
    }
});
