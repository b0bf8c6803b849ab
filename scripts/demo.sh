#!/usr/bin/env bash
# The main job on a simulated GPU host: builds migward, simulates a
# four-card A100-80GB server (GPU 0: 3g.40gb x2; GPU 1 and 2: 2g.20gb x3 +
# 1g.10gb; GPU 3: 1g.10gb x7), lists it, resolves a request, then runs real
# containers through the runtime shim, each seeing only its own instance,
# one asking for a profile (any free 1g.10gb), refuses an image's
# NVIDIA_VISIBLE_DEVICES=all, and shows one tenant per instance: a second
# container for a held instance is refused, and runs once the holder stops;
# then migward doctor, and migward install docker --default into a private
# node root with a private dockerd started on the file it wrote.
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO=${MIGWARD_DEMO_DIR:-/tmp/migward-demo}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "installing the engines and tools (scripts/install-deps.sh; needs root; skipped when present)"
scripts/install-deps.sh

step "building migward and the fake NVML library"
cargo build --workspace --quiet
BIN=$PWD/target/debug/migward   # and target/debug/migward-runtime, the shim

step "simulating a100x4-mixed in $DEMO"
rm -rf "$DEMO"
"$BIN" simulate a100x4-mixed "$DEMO"
export MIGWARD_CONFIG=$DEMO/config.toml

step "migward list"
"$BIN" list

mig() { "$BIN" list --json | jq -r ".gpus[$1].mig_devices[$2].uuid"; }
A=$(mig 0 1)
B=$(mig 3 4)

step "migward resolve $A"
"$BIN" resolve "$A"

step "two containers through migward-runtime (runc underneath)"
ROOTFS=$DEMO/rootfs
mkdir -p "$ROOTFS/bin" "$ROOTFS/dev" "$ROOTFS/proc" "$ROOTFS/sys" "$ROOTFS/tmp"
cp /bin/busybox "$ROOTFS/bin/busybox"
for app in sh ls cat echo sleep; do ln -sf busybox "$ROOTFS/bin/$app"; done
prepare() { # name KEY=value args-json: writes a bundle for a container with that env request
    local bundle=$DEMO/$1
    mkdir -p "$bundle"
    (cd "$bundle" && rm -f config.json && runc spec)
    jq --arg rootfs "$ROOTFS" --arg req "$2" --argjson args "$3" \
        '.root.path=$rootfs | .process.terminal=false | .process.env += [$req] | .process.args=$args' \
        "$bundle/config.json" > "$bundle/config.json.new" && mv "$bundle/config.json.new" "$bundle/config.json"
}
SHOW='["sh","-c","echo NVIDIA_VISIBLE_DEVICES=$NVIDIA_VISIBLE_DEVICES sees:; ls -d /dev/nvidia* /dev/nvidia-caps/*"]'
run_env() { # name KEY=value
    prepare "$1" "$2" "$SHOW"
    echo "-- container $1 asks with $2"
    target/debug/migward-runtime --root "$DEMO/runc" run --bundle "$DEMO/$1" "demo-$1"
}
run() { run_env "$1" "CUDA_VISIBLE_DEVICES=$2"; }
run notebook "$A"
run batch "$B"

step "a profile: any free 1g.10gb, picked by migward and written into the container's env"
run_env worker NVIDIA_VISIBLE_DEVICES=1g.10gb

step "NVIDIA_VISIBLE_DEVICES=all, which every CUDA image sets, is refused unless allow_all = true"
run_env cuda-image NVIDIA_VISIBLE_DEVICES=all || echo "(refused, exit $?)"

step "a request for a device that does not exist never reaches runc"
run typo MIG-00000000-0000-4000-8000-000000000000 || echo "(refused, exit $?)"

step "one tenant per instance: a holder, then a second container for the same instance"
prepare holder "CUDA_VISIBLE_DEVICES=$A" '["sleep","300"]'
target/debug/migward-runtime --root "$DEMO/runc" run -d --bundle "$DEMO/holder" demo-holder \
    </dev/null >"$DEMO/holder.log" 2>&1
"$BIN" leases
run second "$A" || echo "(refused, exit $?)"
step "the holder stops; now the second container runs"
runc --root "$DEMO/runc" kill demo-holder KILL
for _ in $(seq 50); do
    runc --root "$DEMO/runc" state demo-holder 2>/dev/null | grep -q '"stopped"' && break
    sleep 0.1
done
target/debug/migward-runtime --root "$DEMO/runc" delete demo-holder
run second "$A"
"$BIN" leases

step "migward doctor on the simulated host"
mkdir -p "$DEMO/node/etc/docker"
"$BIN" doctor --root "$DEMO/node" || echo "(doctor found a problem, exit $?)"

step "migward install docker --default, then a private dockerd started on the file it wrote"
# The node's daemon.json keeps this dockerd private to $DEMO (its own socket,
# data and exec roots, no networking); install adds migward to it.
NODE_JSON=$DEMO/node/etc/docker/daemon.json
DK=$DEMO/dockerd
mkdir -p "$DK/cli"
echo '{}' >"$DK/cli/config.json"
jq -n --arg dk "$DK" '{"log-level": "warn", "storage-driver": "vfs", "iptables": false,
    "ip6tables": false, "ip-forward": false, "ip-masq": false, "bridge": "none",
    "data-root": "\($dk)/data", "exec-root": "\($dk)/exec", "pidfile": "\($dk)/dockerd.pid",
    "hosts": ["unix://\($dk)/docker.sock"], "shutdown-timeout": 3}' >"$NODE_JSON"
cp "$NODE_JSON" "$DEMO/daemon.json.orig"
"$BIN" install docker --default --root "$DEMO/node" --runtime-path "$PWD/target/debug/migward-runtime" --dry-run
"$BIN" install docker --default --root "$DEMO/node" --runtime-path "$PWD/target/debug/migward-runtime"
"$BIN" doctor --root "$DEMO/node" | grep -E '^(ok|warning|problem) +docker'

export DOCKER_HOST=unix://$DK/docker.sock DOCKER_API_VERSION=1.41 DOCKER_CONFIG=$DK/cli DOCKER_CONTEXT=default
DOCKER=/usr/bin/docker
[ -x "$DOCKER" ] || DOCKER=docker
dockerd --config-file "$NODE_JSON" >"$DK/dockerd.log" 2>&1 &
DOCKERD_PID=$!
stop_dockerd() { # TERM, up to 20 s, then KILL: only the dockerd started here
    kill -0 "$DOCKERD_PID" 2>/dev/null || return 0
    kill -TERM "$DOCKERD_PID"
    for _ in $(seq 200); do kill -0 "$DOCKERD_PID" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$DOCKERD_PID" 2>/dev/null || true
}
trap stop_dockerd EXIT
for _ in $(seq 600); do
    "$DOCKER" version >/dev/null 2>&1 && break
    kill -0 "$DOCKERD_PID" 2>/dev/null || { cat "$DK/dockerd.log"; exit 1; }
    sleep 0.1
done
tar -C "$ROOTFS" -c . | "$DOCKER" import - local/busybox:1 >/dev/null
echo "-- docker run with no --runtime: migward is the default and gives $B"
"$DOCKER" run --rm --network none -e "CUDA_VISIBLE_DEVICES=$B" local/busybox:1 \
    sh -c 'ls -d /dev/nvidia* /dev/nvidia-caps/*'
echo "-- docker run with NVIDIA_VISIBLE_DEVICES=all and no --runtime: refused"
"$DOCKER" run --rm --network none -e NVIDIA_VISIBLE_DEVICES=all local/busybox:1 true \
    || echo "(refused, exit $?)"
stop_dockerd

step "migward uninstall docker: daemon.json is back byte for byte"
"$BIN" uninstall docker --root "$DEMO/node"
cmp "$NODE_JSON" "$DEMO/daemon.json.orig" && echo "daemon.json is the original again"
