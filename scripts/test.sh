#!/usr/bin/env bash
# Runs every test, as CI does: installs the engines the end-to-end tests
# drive, checks formatting and lints, builds the workspace (migward and the
# fake NVML library), runs all tests with nextest, then every fuzz target
# for a short, repeatable run (fuzz/README.md) and a short benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cargo fmt --all --check
cargo fmt --manifest-path fuzz/Cargo.toml --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace
cargo nextest run --workspace --no-fail-fast
# 5,000 inputs per target from a fixed seed; exits non-zero on any crash,
# panic or timeout.
scripts/fuzz.sh --ci
# A short benchmark run keeps the bench working; it asserts no timing.
scripts/bench.sh --smoke
