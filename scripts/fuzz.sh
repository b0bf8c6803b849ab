#!/usr/bin/env bash
# Fuzzes migward's parsers of untrusted input (fuzz/fuzz_targets/) with
# libFuzzer through cargo-fuzz, on the stable toolchain.
#
#   scripts/fuzz.sh [--seconds N] [--ci] [--build-only] [--list] [TARGET...]
#
# Runs every target (or the ones named) for N seconds each (default 20) and
# exits non-zero if any of them finds a crash, a panic or a timeout; the
# input is left in fuzz/artifacts/<target>/ and the command that replays it
# is printed.
#
# --ci: the bounded, repeatable run scripts/test.sh makes: the targets built
# without optimization (`cargo fuzz build --dev`: a cold build took 2 min
# 45 s here, a release one 5 to 15 minutes), each run from the checked-in
# seeds alone with a fixed seed (-seed=1) for 5,000 inputs, cut off after
# --seconds (default 120) on a slow machine. The same tree fuzzes the same
# inputs every time (a cut-off run fuzzes a prefix of them), so CI never
# turns red by chance; finding new bugs is what the longer runs are for.
#
# Stable Rust: `cargo fuzz` with `--sanitizer none` passes only stable
# codegen flags (-Cpasses=sancov-module, -Cllvm-args=-sanitizer-coverage-*,
# --cfg fuzzing); `--debug-assertions` adds -Cdebug-assertions and overflow
# checks, so arithmetic that wraps in a release build panics here.
# RUSTC_BOOTSTRAP is unset: nothing here may lean on nightly features.
#
# Corpus: the seeds in fuzz/corpus/<target>/ are read, never written; what
# the fuzzer adds goes to fuzz/target/corpus/<target>/ (ignored by git) and
# is kept between runs, so repeated local runs pick up where they stopped.
#
# Idempotent setup: a C++ compiler (libfuzzer-sys builds libFuzzer; apt, as
# root) and cargo-fuzz (cargo install, once).
set -euo pipefail
cd "$(dirname "$0")/.."
unset RUSTC_BOOTSTRAP

CARGO_FUZZ_VERSION=0.13.2
seconds=
ci=0
build_only=0
list=0
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds)
            seconds="${2:?--seconds needs a number}"
            shift 2
            ;;
        --seconds=*)
            seconds="${1#*=}"
            shift
            ;;
        --build-only)
            build_only=1
            shift
            ;;
        --ci)
            ci=1
            shift
            ;;
        --list)
            list=1
            shift
            ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        -*)
            echo "fuzz.sh: unknown option $1 (see --help)" >&2
            exit 2
            ;;
        *)
            targets+=("$1")
            shift
            ;;
    esac
done
if [ -z "$seconds" ]; then
    if [ "$ci" -eq 1 ]; then seconds=120; else seconds=20; fi
fi
case "$seconds" in
    '' | *[!0-9]*)
        echo "fuzz.sh: --seconds takes a whole number, not $seconds" >&2
        exit 2
        ;;
esac

all_targets=()
for f in fuzz/fuzz_targets/*.rs; do
    all_targets+=("$(basename "$f" .rs)")
done
if [ "$list" -eq 1 ]; then
    printf '%s\n' "${all_targets[@]}"
    exit 0
fi
if [ "${#targets[@]}" -eq 0 ]; then
    targets=("${all_targets[@]}")
fi
for t in "${targets[@]}"; do
    if [ ! -f "fuzz/fuzz_targets/$t.rs" ]; then
        echo "fuzz.sh: no fuzz target $t: the targets are ${all_targets[*]}" >&2
        exit 2
    fi
done

# --- setup --------------------------------------------------------------------
if ! command -v c++ >/dev/null 2>&1 && ! command -v g++ >/dev/null 2>&1 &&
    ! command -v clang++ >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "fuzz.sh: libfuzzer-sys needs a C++ compiler: install g++ (as root: apt-get install g++)" >&2
        exit 1
    fi
    echo "fuzz.sh: installing g++ (libfuzzer-sys builds libFuzzer from C++)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends g++ >/dev/null
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "fuzz.sh: note: not root, so the cdi target stops at cdi::read's owner check (a CDI spec must be root's) and never reaches the edits"
fi

# The same flags for build and run, or `cargo fuzz run` builds again.
flags=(--sanitizer none --debug-assertions)
if [ "$ci" -eq 1 ]; then
    flags+=(--dev)
fi
echo "fuzz.sh: building the fuzz targets (cargo fuzz build ${flags[*]})"
(cd fuzz && cargo fuzz build "${flags[@]}")
if [ "$build_only" -eq 1 ]; then
    exit 0
fi

# Which dictionary (fuzz/dict/) a target uses where it is not the one
# named after it: the targets that read OCI specs share one.
declare -A DICT=(
    [request_spec]=spec
    [spec_edit]=spec
    [plan]=spec
    [hook]=spec
)

# --- run ----------------------------------------------------------------------
failed=()
summary=()
for t in "${targets[@]}"; do
    corpus="fuzz/target/corpus/$t"
    log="fuzz/target/logs/$t.log"
    args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
    if [ "$ci" -eq 1 ]; then
        corpus="fuzz/target/ci-corpus/$t"
        log="fuzz/target/ci-logs/$t.log"
        rm -rf "$corpus"
        args+=(-seed=1 -runs=5000)
    fi
    mkdir -p "$corpus" "fuzz/corpus/$t" "$(dirname "$log")"
    dict="fuzz/dict/${DICT[$t]:-$t}.dict"
    if [ -f "$dict" ]; then
        args+=(-dict="$PWD/$dict")
    fi
    if [ "$ci" -eq 1 ]; then
        echo "fuzz.sh: $t, 5000 inputs from seed 1 (at most ${seconds}s)"
    else
        echo "fuzz.sh: $t for ${seconds}s"
    fi
    rc=0
    (cd fuzz && cargo fuzz run "${flags[@]}" "$t" "../$corpus" "corpus/$t" -- "${args[@]}") \
        >"$log" 2>&1 || rc=$?
    stats="$(grep -E '^#[0-9]+' "$log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+' || true)"
    runs="$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo '?')"
    speed="$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo '?')"
    if [ "$rc" -eq 0 ]; then
        summary+=("$(printf '%-13s ok     %9s runs %7s exec/s  %s' "$t" "$runs" "$speed" "$stats")")
    else
        failed+=("$t")
        summary+=("$(printf '%-13s FAILED (exit %s) see %s' "$t" "$rc" "$log")")
        echo "fuzz.sh: $t failed:" >&2
        grep -E "panicked at|^thread '|ERROR: libFuzzer|SUMMARY|deadly signal|timeout" "$log" | head -8 >&2 || true
        grep -A1 -E "panicked at" "$log" | head -4 >&2 || true
        artifact="$(grep -oE 'Test unit written to [^ ]+' "$log" | tail -1 | cut -d' ' -f5 || true)"
        if [ -n "$artifact" ]; then
            echo "fuzz.sh: replay with: (cd fuzz && cargo fuzz run ${flags[*]} $t ${artifact#fuzz/})" >&2
        fi
    fi
done

echo
if [ "$ci" -eq 1 ]; then
    echo "fuzz.sh: 5000 inputs per target from seed 1"
else
    echo "fuzz.sh: ${seconds}s per target"
fi
printf '  %s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz.sh: findings in ${failed[*]}" >&2
    exit 1
fi
