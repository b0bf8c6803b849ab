#!/usr/bin/env bash
# Builds the Debian package target/deb/migward_<version>_<arch>.deb with
# dpkg-deb (nothing to install first). The binaries are target/release/migward
# and the migward-runtime next to it, unless --binary names another migward
# (the package test uses the debug build).
#
#   cargo build --release && packaging/deb/build.sh
#   apt install ./target/deb/migward_*.deb && migward install docker
#
# Contents: /usr/bin/migward, /usr/bin/migward-runtime (the shim, a smaller
# binary of the same code), /etc/migward/config.toml
# (a conffile), the hooks.d files podman and CRI-O read (the annotation-only
# createRuntime hook and the poststop hook, enabled; the always-on env hook and
# the precreate hook shipped in /usr/share/migward/hooks, not enabled), a
# tmpfiles.d entry for /run/migward, the man page and shell completions
# (generated from the CLI definitions). No maintainer scripts: nothing runs
# at install time, and `migward install <engine>` is an explicit step.
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN=target/release/migward
OUT=target/deb
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) BIN=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        *) echo "build.sh: unknown argument $1 (use --binary PATH, --out DIR)" >&2; exit 2 ;;
    esac
done
SHIM=$(dirname "$BIN")/migward-runtime
for b in "$BIN" "$SHIM"; do
    if [ ! -x "$b" ]; then
        echo "build.sh: $b is missing: run cargo build --release first, or pass --binary PATH" >&2
        exit 1
    fi
done

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
ARCH=$(dpkg --print-architecture)
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT

install -D -m 0755 "$BIN" "$STAGE/usr/bin/migward"
install -D -m 0755 "$SHIM" "$STAGE/usr/bin/migward-runtime"
install -D -m 0644 packaging/config.toml "$STAGE/etc/migward/config.toml"
install -D -m 0644 packaging/config.toml "$STAGE/usr/share/doc/migward/config.toml"
for h in annotation poststop; do
    install -D -m 0644 "hooks/oci-migward-$h.json" "$STAGE/usr/share/containers/oci/hooks.d/oci-migward-$h.json"
done
for h in env precreate; do
    install -D -m 0644 "hooks/oci-migward-$h.json" "$STAGE/usr/share/migward/hooks/oci-migward-$h.json"
done
install -D -m 0644 /dev/stdin "$STAGE/usr/lib/tmpfiles.d/migward.conf" <<'CONF'
# migward's lease store (state_dir); leases of containers do not outlive a reboot.
d /run/migward 0755 root root -
CONF
mkdir -p "$STAGE/usr/share/man/man1"
"$BIN" generate man | gzip -9n > "$STAGE/usr/share/man/man1/migward.1.gz"
install -D -m 0644 <("$BIN" generate bash) "$STAGE/usr/share/bash-completion/completions/migward"
install -D -m 0644 <("$BIN" generate zsh) "$STAGE/usr/share/zsh/vendor-completions/_migward"
install -D -m 0644 <("$BIN" generate fish) "$STAGE/usr/share/fish/vendor_completions.d/migward.fish"
install -D -m 0644 README.md "$STAGE/usr/share/doc/migward/README.md"
install -D -m 0644 /dev/stdin "$STAGE/usr/share/doc/migward/copyright" <<'COPY'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: migward
License: Apache-2.0
COPY

mkdir -p "$STAGE/DEBIAN"
echo /etc/migward/config.toml > "$STAGE/DEBIAN/conffiles"
SIZE=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
cat > "$STAGE/DEBIAN/control" <<CTRL
Package: migward
Version: $VERSION
Architecture: $ARCH
Maintainer: migward developers <migward@localhost>
Installed-Size: $SIZE
Depends: libc6
Recommends: runc
Suggests: nvidia-container-toolkit
Section: admin
Priority: optional
Description: one tenant per NVIDIA MIG instance, for docker, containerd, podman and CRI-O
 An OCI runtime shim and OCI hook that gives each container exactly the MIG
 instance it asked for, with device-cgroup rules, and refuses a second tenant.
 After installing, register it with an engine: migward install docker.
CTRL
mkdir -p "$OUT"
DEB="$OUT/migward_${VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group -Zgzip --build "$STAGE" "$DEB" >/dev/null
echo "$DEB"
