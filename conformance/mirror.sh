#!/usr/bin/env bash
# Real clients through the pull-through mirror (docs/mirror.md), all on
# loopback: nothing leaves the machine.
#
#   upstreams   a Strata registry ("up", path prefix /v2/up/...), and Debian's
#               docker-registry (distribution) standing in for docker.io
#               ("hub": registry = "docker.io", default = true)
#   skopeo, crane      by path prefix: 127.0.0.1:M/up/team/app:v1
#   ctr (containerd)   upstream.test/team/app:v1 with a hosts.toml mirror: only
#                      ?ns=upstream.test maps it (the default upstream lacks it)
#   dockerd            --registry-mirror http://127.0.0.1:M, pulling docker.io/library/app:v1
#   runner pull        by path prefix
# Each pull is checked against the upstream's manifest digest, and the
# mirror's own counters prove it served (a client that fell back to the real
# docker.io would not count there).
set -euo pipefail
# shellcheck source=conformance/lib.sh
source "$(dirname "$0")/lib.sh"

CRANE="$TOOLS_BIN/crane"
RUNNER_BIN="${RUNNER_BIN:-$REPO/target/release/runner}"
require_tool "$CRANE" "$RUNNER_BIN" skopeo ctr containerd dockerd docker-registry curl jq tar

WORK=$(mktemp -d /tmp/strata-mirror.XXXXXX)
CONTAINERD_PID="" DOCKERD_PID=""
cleanup() {
  [ -z "$DOCKERD_PID" ] || stop_pid "$DOCKERD_PID" 20
  [ -z "$CONTAINERD_PID" ] || stop_pid "$CONTAINERD_PID" 20
  stop_started_processes
  umount -R "$WORK/containerd/root" 2>/dev/null || true
  umount -R "$WORK/docker/data" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

fail() {
  echo "mirror: FAIL: $*" >&2
  for log in "$WORK"/*.log "$WORK"/docker/dockerd.log; do
    [ -f "$log" ] && { echo "--- $log" >&2; tail -n 20 "$log" >&2; }
  done
  exit 1
}
pass() { echo "mirror: ok: $*"; }

metric() { # metric PORT PREFIX: sum of the lines of /metrics starting with PREFIX
  curl -fsS "http://127.0.0.1:$1/metrics" | awk -v p="$2" 'index($0, p) == 1 { s += $NF } END { print s + 0 }'
}

# --- upstreams -------------------------------------------------------------
registry_start upstream "$WORK/upstream/data"
UP_PORT=$REG_PORT

DIST_PORT=$(pick_port)
cat >"$WORK/distribution.yml" <<YML
version: 0.1
storage:
  filesystem:
    rootdirectory: $WORK/distribution
http:
  addr: 127.0.0.1:$DIST_PORT
YML
docker-registry serve "$WORK/distribution.yml" >"$WORK/distribution.log" 2>&1 &
STARTED_PIDS+=("$!")
wait_http_200 "http://127.0.0.1:$DIST_PORT/v2/" "$!" 30 || fail "distribution did not start"

# A 3-layer image, pushed to both upstreams.
mkdir -p "$WORK/layers"
for i in 1 2 3; do
  mkdir -p "$WORK/layers/$i/etc"
  head -c $((i * 300000)) /dev/urandom >"$WORK/layers/$i/etc/data$i"
  tar -C "$WORK/layers/$i" -cf "$WORK/layers/$i.tar" etc
done
"$CRANE" append --insecure -f "$WORK/layers/1.tar" -f "$WORK/layers/2.tar" -f "$WORK/layers/3.tar" \
  -t "127.0.0.1:$UP_PORT/team/app:v0" >/dev/null 2>&1
"$CRANE" mutate --insecure --set-platform linux/amd64 -t "127.0.0.1:$UP_PORT/team/app:v1" \
  "127.0.0.1:$UP_PORT/team/app:v0" >/dev/null 2>&1
"$CRANE" tag --insecure "127.0.0.1:$UP_PORT/team/app:v1" v2 2>/dev/null
"$CRANE" copy --insecure "127.0.0.1:$UP_PORT/team/app:v1" "127.0.0.1:$DIST_PORT/library/app:v1" 2>/dev/null
WANT=$("$CRANE" digest --insecure "127.0.0.1:$UP_PORT/team/app:v1")
[ "$("$CRANE" digest --insecure "127.0.0.1:$DIST_PORT/library/app:v1")" = "$WANT" ] ||
  fail "the two upstreams hold different images"

# --- the mirror ------------------------------------------------------------
cat >"$WORK/mirror.toml" <<TOML
[[upstream]]
name = "up"
url = "http://127.0.0.1:$UP_PORT"
registry = "upstream.test"

[[upstream]]
name = "hub"
url = "http://127.0.0.1:$DIST_PORT"
registry = "docker.io"
default = true
TOML
registry_start mirror "$WORK/mirror/data" --config "$WORK/mirror.toml"
M=$REG_PORT

# --- skopeo and crane, by path prefix --------------------------------------
skopeo copy --quiet --src-tls-verify=false "docker://127.0.0.1:$M/up/team/app:v1" "oci:$WORK/skopeo:v1" ||
  fail "skopeo copy through the mirror"
got=$(skopeo inspect --tls-verify=false --format '{{.Digest}}' "docker://127.0.0.1:$M/up/team/app:v1")
[ "$got" = "$WANT" ] || fail "skopeo saw $got, want $WANT"
pass "skopeo by path prefix"
"$CRANE" pull --insecure "127.0.0.1:$M/up/team/app:v1" "$WORK/crane.tar" || fail "crane pull through the mirror"
[ "$("$CRANE" digest --insecure "127.0.0.1:$M/up/team/app:v1")" = "$WANT" ] || fail "crane digest"
pass "crane by path prefix"
# A push into the mirrored repository is refused.
if "$CRANE" copy --insecure "127.0.0.1:$UP_PORT/team/app:v1" "127.0.0.1:$M/up/team/app:pushed" 2>"$WORK/push.err"; then
  fail "a push into a mirrored repository was accepted"
fi
grep -q DENIED "$WORK/push.err" || fail "the refused push did not say DENIED: $(cat "$WORK/push.err")"
pass "push into a mirrored repository: DENIED"

# --- runner pull ------------------------------------------------------------
"$RUNNER_BIN" pull --root "$WORK/runner" "127.0.0.1:$M/up/team/app:v1" >"$WORK/runner.out" 2>&1 ||
  fail "runner pull through the mirror: $(cat "$WORK/runner.out")"
pass "runner pull by path prefix"

# --- ctr: hosts.toml mirror, ?ns=docker.io ---------------------------------
mkdir -p "$WORK/containerd/certs.d/upstream.test"
cat >"$WORK/containerd/certs.d/upstream.test/hosts.toml" <<TOML
server = "https://upstream.test"

[host."http://127.0.0.1:$M"]
  capabilities = ["pull", "resolve"]
TOML
cat >"$WORK/containerd/config.toml" <<TOML
version = 2
root = "$WORK/containerd/root"
state = "$WORK/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$WORK/containerd/containerd.sock"
TOML
up_misses=$(metric "$M" 'strata_mirror_misses_total{upstream="up"}')
containerd --config "$WORK/containerd/config.toml" >"$WORK/containerd.log" 2>&1 &
CONTAINERD_PID=$!
for _ in $(seq 1 100); do [ -S "$WORK/containerd/containerd.sock" ] && break; sleep 0.1; done
ctr -a "$WORK/containerd/containerd.sock" images pull --hosts-dir "$WORK/containerd/certs.d" \
  --platform linux/amd64 upstream.test/team/app:v2 >"$WORK/ctr.out" 2>&1 ||
  fail "ctr pull through the mirror: $(tail -n 5 "$WORK/ctr.out")"
got=$(ctr -a "$WORK/containerd/containerd.sock" images ls | awk '$1 == "upstream.test/team/app:v2" { print $3 }')
[ "$got" = "$WANT" ] || fail "ctr holds $got, want $WANT"
[ "$(metric "$M" 'strata_mirror_misses_total{upstream="up"}')" -gt "$up_misses" ] ||
  fail "ctr's pull did not go through the mirror's upstream"
pass "ctr with a hosts.toml mirror (?ns=upstream.test)"
stop_pid "$CONTAINERD_PID" 20
CONTAINERD_PID=""

# --- dockerd --registry-mirror ---------------------------------------------
mkdir -p "$WORK/docker/data" "$WORK/docker/exec"
hub_requests=$(metric "$M" 'strata_mirror_hits_total{upstream="hub"}')
hub_requests=$((hub_requests + $(metric "$M" 'strata_mirror_misses_total{upstream="hub"}')))
dockerd --iptables=false --ip6tables=false --bridge=none --storage-driver=overlay2 \
  --data-root "$WORK/docker/data" --exec-root "$WORK/docker/exec" \
  -H "unix://$WORK/docker/docker.sock" --pidfile "$WORK/docker/docker.pid" \
  --registry-mirror "http://127.0.0.1:$M" >"$WORK/docker/dockerd.log" 2>&1 &
DOCKERD_PID=$!
for _ in $(seq 1 300); do
  /usr/bin/docker -H "unix://$WORK/docker/docker.sock" version >/dev/null 2>&1 && break
  kill -0 "$DOCKERD_PID" 2>/dev/null || fail "dockerd exited"
  sleep 0.1
done
DOCKER_CONFIG="$WORK/docker/config" /usr/bin/docker -H "unix://$WORK/docker/docker.sock" pull -q docker.io/library/app:v1 \
  >"$WORK/docker.out" 2>&1 || fail "docker pull through the mirror: $(cat "$WORK/docker.out")"
got=$(/usr/bin/docker -H "unix://$WORK/docker/docker.sock" image inspect --format '{{index .RepoDigests 0}}' app:v1)
[ "${got#*@}" = "$WANT" ] || fail "docker holds $got, want $WANT"
now=$(( $(metric "$M" 'strata_mirror_hits_total{upstream="hub"}') + $(metric "$M" 'strata_mirror_misses_total{upstream="hub"}') ))
[ "$now" -gt "$hub_requests" ] || fail "docker's pull did not go through the mirror"
pass "dockerd --registry-mirror (docker.io name, local distribution upstream)"

echo "mirror: all passed"
