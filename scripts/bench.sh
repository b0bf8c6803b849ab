#!/usr/bin/env bash
# Benchmarks: what migward adds to a container start, against plain runc,
# measured in one run, and to a Kubernetes pod start (CRI), against the runc
# handler. `scripts/bench.sh` (full: 60 interleaved runs each)
# or `scripts/bench.sh --smoke` (a few runs, as CI does). The report is
# printed and written to target/bench/report.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release --workspace --quiet
mkdir -p target/bench
cargo bench --quiet --bench lifecycle -- "$@" | tee target/bench/report.md
# A pod start through containerd's CRI: the migward RuntimeClass against runc.
cargo bench --quiet --bench pod_start -- "$@" | tee -a target/bench/report.md
