//! What both benchmarks need: their arguments and config edits.

#[allow(dead_code)] // pod_start does not drive runtimes itself
pub mod verbs;

use std::path::Path;

/// `[--runs N] [--smoke]`: whether this is a smoke run, and the runs per
/// variant (N, else 3 for a smoke run, else `full`).
pub fn runs(full: usize) -> (bool, usize) {
    let args: Vec<String> = std::env::args().collect();
    let smoke = args.iter().any(|a| a == "--smoke");
    let runs = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(if smoke { 3 } else { full });
    (smoke, runs)
}

/// A config text with `key` set to `value` (any earlier line for it dropped).
pub fn config_with(base: &str, key: &str, value: &Path) -> String {
    let mut out: String = base
        .lines()
        .filter(|l| !l.starts_with(key))
        .map(|l| format!("{l}\n"))
        .collect();
    out.push_str(&format!("{key} = {:?}\n", value.display().to_string()));
    out
}
