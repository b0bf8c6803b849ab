#!/usr/bin/env bash
# Install what migward's end-to-end tests need on a clean Debian 12 (root).
#
# Idempotent: when every tool is already present the apt step is skipped.
# Package installs must not start system daemons (docker.io / containerd ship
# init scripts and systemd units): a policy-rc.d that answers 101 ("action
# forbidden") is put in place for the duration of the install when none exists.
# The tests start their own dockerd / containerd with private sockets and state.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps.sh: must run as root" >&2
    exit 1
fi

# command -> Debian package that provides it
declare -A NEED=(
    [runc]=runc
    [podman]=podman
    [dockerd]=docker.io
    [/usr/bin/docker]=docker.io
    [containerd]=containerd
    [ctr]=containerd
    [containerd-shim-runc-v2]=containerd
    [conmon]=conmon
    [sha256sum]=coreutils
    [/bin/busybox]=busybox-static
    [docker-compose]=docker-compose
    [nsenter]=util-linux
    [unshare]=util-linux
    [/usr/bin/time]=time
    [jq]=jq
    [tar]=tar
    [mknod]=coreutils
    [slirp4netns]=slirp4netns
    [newuidmap]=uidmap
    [pkill]=procps
    [ip]=iproute2
    [dpkg-deb]=dpkg
    [gzip]=gzip
    # k8s-cri (the CRI test client) generates its gRPC code with protoc
    [protoc]=protobuf-compiler
)

have() {
    case "$1" in
        /*) [ -x "$1" ] ;;
        *) command -v "$1" >/dev/null 2>&1 ;;
    esac
}

missing_pkgs=()
for cmd in "${!NEED[@]}"; do
    if ! have "$cmd"; then
        missing_pkgs+=("${NEED[$cmd]}")
    fi
done
# busybox-static specifically (the dynamic busybox package would not work in a bare rootfs)
if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed'; then
    missing_pkgs+=(busybox-static)
fi

if [ "${#missing_pkgs[@]}" -gt 0 ]; then
    mapfile -t missing_pkgs < <(printf '%s\n' "${missing_pkgs[@]}" | sort -u)
    echo "install-deps.sh: installing ${missing_pkgs[*]}"

    created_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        created_policy=1
    fi
    cleanup() {
        if [ "$created_policy" -eq 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
    }
    trap cleanup EXIT

    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${missing_pkgs[@]}" >/dev/null
    # podman's recommended helpers (conmon comes as a dependency; these are only
    # needed for rootless use but keep podman quiet about them)
    for p in uidmap slirp4netns; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
            apt-get install -y -qq --no-install-recommends "$p" >/dev/null || true
    done
else
    echo "install-deps.sh: system packages already present"
fi

# Rust components used by the checks (clippy, rustfmt).
if command -v rustup >/dev/null 2>&1; then
    installed="$(rustup component list --installed 2>/dev/null || true)"
    for c in clippy rustfmt; do
        if ! grep -q "^$c" <<<"$installed"; then
            rustup component add "$c" || echo "install-deps.sh: warning: could not add rust component $c" >&2
        fi
    done
else
    for c in cargo-clippy rustfmt; do
        command -v "$c" >/dev/null 2>&1 || echo "install-deps.sh: warning: $c not found and no rustup" >&2
    done
fi

# The test runner (crates.io is reachable; this builds it once).
if ! cargo nextest --version >/dev/null 2>&1; then
    echo "install-deps.sh: installing cargo-nextest"
    cargo install --locked cargo-nextest
fi

# Final check: every tool the tests use must now be present.
fail=0
for cmd in "${!NEED[@]}"; do
    if ! have "$cmd"; then
        echo "install-deps.sh: still missing: $cmd (package ${NEED[$cmd]})" >&2
        fail=1
    fi
done
exit "$fail"
