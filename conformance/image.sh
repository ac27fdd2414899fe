#!/usr/bin/env bash
# The registry's own image (deploy/image/Dockerfile), issue 22:
#   1. its context made by deploy/image/context.sh from the release binary;
#   2. built by `runner build` and pushed to a Strata registry;
#   3. pulled and run by the runner, `run -d -p 127.0.0.1:PORT:5000 -v
#      DIR:/var/lib/strata`: ready on /readyz, crane pushes an image into it,
#      its blobs land in DIR (the volume);
#   4. pulled by docker (dockerd here has --bridge=none, so `--network
#      host`) and run on the same volume: the image pushed in 3 is there.
# Everything that listens runs inside a network namespace this script
# makes (ip netns add, entered with nsenter --net=, deleted at the end), so
# the bridge, veth, nft rules and ports of the runner never touch the
# machine's own namespace; inside it all servers bind 127.0.0.1.
set -euo pipefail

# shellcheck source=conformance/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export PATH="$TOOLS_BIN:$PATH"
RUNNER_BIN=${RUNNER_BIN:-$REPO/target/release/runner}
require_tool ip nsenter curl crane dockerd "$REGISTRY_BIN" "$RUNNER_BIN"

WORK=$(mktemp -d /tmp/strata-image.XXXXXX)
NS=strata-image-$$
IN=(nsenter "--net=/run/netns/$NS")
DOCKERD_PID=
cleanup() {
  set +e
  if [ -n "$DOCKERD_PID" ]; then
    "${DOCKER[@]}" rm -f strata-image >/dev/null 2>&1
    stop_pid "$DOCKERD_PID" 20
  fi
  "${IN[@]}" "$RUNNER_BIN" --root "$WORK/run-root" rm -f strata-image >/dev/null 2>&1
  stop_started_processes
  ip netns del "$NS" 2>/dev/null
  # dockerd bind-mounts its namespace under its exec root and leaves it.
  local m
  for m in $(awk -v w="$WORK/" 'index($2, w) == 1 { print $2 }' /proc/self/mounts | sort -r); do
    umount "$m" 2>/dev/null
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
ok() { echo "ok: $*"; }

ip netns add "$NS"
"${IN[@]}" ip link set lo up

# in_ns_ready URL PID: like wait_http_200, with curl inside the namespace.
in_ns_ready() {
  local url=$1 pid=$2
  for _ in $(seq 1 300); do
    kill -0 "$pid" 2>/dev/null || return 1
    [ "$("${IN[@]}" curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url")" = 200 ] && return 0
    sleep 0.1
  done
  return 1
}

# The Strata registry the image is pushed to, in the namespace.
hub_port=$(pick_port)
"${IN[@]}" "$REGISTRY_BIN" serve --listen "127.0.0.1:$hub_port" --data "$WORK/hub" >"$WORK/hub.log" 2>&1 &
STARTED_PIDS+=($!)
in_ns_ready "http://127.0.0.1:$hub_port/readyz" "$!" || die "the Strata registry did not start"
HUB=127.0.0.1:$hub_port

# 1 and 2: context, runner build, push.
bash "$REPO/deploy/image/context.sh" "$REGISTRY_BIN" "$WORK/ctx"
image=$HUB/strata/registry:test
"${IN[@]}" "$RUNNER_BIN" --root "$WORK/build-root" build -q -t "$image" --push "$WORK/ctx" >"$WORK/build.log" 2>&1 ||
  { cat "$WORK/build.log" >&2; die "runner build of deploy/image/Dockerfile failed"; }
config=$("${IN[@]}" crane config "$image")
[ "$(jq -r '.config.User' <<<"$config")" = 65532:65532 ] || die "image user: $config"
ok "runner build of deploy/image/Dockerfile, pushed as $image ($("${IN[@]}" crane manifest "$image" | jq '[.layers[].size] | add') bytes of layers)"

# 3. The runner pulls it (a fresh root) and runs it, the data on a volume.
vol=$WORK/volume
mkdir -p "$vol"
chown 65532:65532 "$vol"
port=$(pick_port)
"${IN[@]}" "$RUNNER_BIN" --root "$WORK/run-root" run -d --name strata-image -p "127.0.0.1:$port:5000" \
  -v "$vol:/var/lib/strata" "$image" >"$WORK/run.log" 2>&1 ||
  { cat "$WORK/run.log" >&2; die "runner run of the image failed"; }
ready=false
for _ in $(seq 1 300); do
  if [ "$("${IN[@]}" curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/readyz")" = 200 ]; then
    ready=true
    break
  fi
  sleep 0.1
done
[ "$ready" = true ] || { "${IN[@]}" "$RUNNER_BIN" --root "$WORK/run-root" logs strata-image >&2; die "the registry in the runner's container is not ready"; }
ok "runner run -d -p 127.0.0.1:$port:5000 -v $vol:/var/lib/strata: ready"

mkdir -p "$WORK/layer"
echo "in a container $RANDOM" >"$WORK/layer/hello"
tar -C "$WORK/layer" -cf "$WORK/layer.tar" hello
"${IN[@]}" crane append -f "$WORK/layer.tar" -t "127.0.0.1:$port/inner/hello:1" >/dev/null 2>"$WORK/crane.log" ||
  { cat "$WORK/crane.log" >&2; die "crane push into the containerised registry failed"; }
[ "$("${IN[@]}" crane export "127.0.0.1:$port/inner/hello:1" - | tar -xOf - hello)" = "$(cat "$WORK/layer/hello")" ] ||
  die "the pushed image does not come back"
[ -f "$vol/registry.db" ] && [ -n "$(find "$vol/storage" -type f -user 65532 | head -n1)" ] ||
  die "the data is not on the volume: $(ls -la "$vol")"
ok "crane push and pull through it; the blobs are on the volume, owned by 65532"
"${IN[@]}" "$RUNNER_BIN" --root "$WORK/run-root" rm -f strata-image >/dev/null

# 4. docker: dockerd inside the namespace, the image pulled from the Strata
# registry, run with --network host on the same volume.
d=$WORK/docker
mkdir -p "$d"
"${IN[@]}" dockerd --iptables=false --ip6tables=false --bridge=none --storage-driver=overlay2 \
  --data-root "$d/data" --exec-root "$d/exec" -H "unix://$d/docker.sock" \
  --pidfile "$d/docker.pid" >"$d/dockerd.log" 2>&1 &
DOCKERD_PID=$!
export DOCKER_CONFIG=$d
DOCKER_CLI=docker
[ ! -x /usr/bin/docker ] || DOCKER_CLI=/usr/bin/docker
DOCKER=("$DOCKER_CLI" -H "unix://$d/docker.sock")
for _ in $(seq 1 300); do "${DOCKER[@]}" version >/dev/null 2>&1 && break; sleep 0.1; done
"${DOCKER[@]}" version >/dev/null 2>&1 || { tail -n 20 "$d/dockerd.log" >&2; die "dockerd did not start"; }
dport=$(pick_port)
"${DOCKER[@]}" run -d --name strata-image --network host -e "STRATA_LISTEN=127.0.0.1:$dport" \
  -v "$vol:/var/lib/strata" "$image" >"$WORK/docker-run.log" 2>&1 ||
  { cat "$WORK/docker-run.log" >&2; die "docker run of the image failed"; }
ready=false
for _ in $(seq 1 300); do
  if [ "$("${IN[@]}" curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$dport/readyz")" = 200 ]; then
    ready=true
    break
  fi
  sleep 0.1
done
[ "$ready" = true ] || { "${DOCKER[@]}" logs strata-image >&2; die "the registry in docker's container is not ready"; }
[ "$("${IN[@]}" crane export "127.0.0.1:$dport/inner/hello:1" - | tar -xOf - hello)" = "$(cat "$WORK/layer/hello")" ] ||
  die "the image pushed in the runner's container is not served from the volume under docker"
ok "docker run --network host -v $vol:/var/lib/strata: ready, serves the image pushed before from the volume"
echo "image: all checks passed"
