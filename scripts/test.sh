#!/usr/bin/env bash
# Runs every test, as CI does: installs the engines the end-to-end tests
# drive, checks formatting and lints, builds the workspace (migward and the
# fake NVML library) and runs all tests with nextest.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace
cargo nextest run --workspace --no-fail-fast
# A short benchmark run keeps the bench working; it asserts no timing.
scripts/bench.sh --smoke
