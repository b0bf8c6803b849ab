//! The OCI hook front end. runc and hooks.d engines pass the container state
//! (`ociVersion, id, status, pid, bundle, annotations`) on stdin.
//!
//! `poststop` frees the container's lease and never fails the container's
//! teardown: problems are reported on stderr, the exit code stays 0.

use crate::lease::Store;
use serde::Deserialize;
use std::io::Read;
use std::path::Path;

/// Longest state document read from stdin.
const MAX_STATE: u64 = 1 << 20;

#[derive(Debug, Deserialize)]
pub struct State {
    pub id: String,
    #[serde(default)]
    pub pid: Option<u32>,
    #[serde(default)]
    pub bundle: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("cannot read the container state from stdin: {0}")]
    Read(#[from] std::io::Error),
    #[error("the container state on stdin is not OCI state JSON: {0}")]
    Parse(#[from] serde_json::Error),
}

/// Reads the OCI state from `input` (bounded).
pub fn read_state(input: impl Read) -> Result<State, HookError> {
    let mut text = Vec::new();
    input.take(MAX_STATE).read_to_end(&mut text)?;
    Ok(serde_json::from_slice(&text)?)
}

/// `poststop`: release the lease of the container named on stdin.
/// Returns a message for stderr when something went wrong.
pub fn poststop(input: impl Read, state_dir: &Path) -> Option<String> {
    let state = match read_state(input) {
        Ok(s) => s,
        Err(e) => return Some(e.to_string()),
    };
    match Store::new(state_dir).release(&state.id) {
        Ok(_) => None,
        Err(e) => Some(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poststop_releases_and_never_panics_on_junk() {
        let dir = tempfile::tempdir().unwrap();
        assert!(poststop(
            &b"{\"ociVersion\":\"1.0.2\",\"id\":\"abc\",\"status\":\"stopped\"}"[..],
            dir.path()
        )
        .is_none());
        let err = poststop(&b"junk"[..], dir.path()).unwrap();
        assert!(err.contains("not OCI state JSON"), "{err}");
        let err = poststop(&b"{\"id\":\"../etc\"}"[..], dir.path()).unwrap();
        assert!(
            err.contains("container id \"../etc\" is not valid"),
            "{err}"
        );
    }
}
