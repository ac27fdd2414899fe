# shellcheck shell=bash disable=SC2034
# Shared helpers for conformance/run.sh and conformance/interop.sh.
# Source it; it defines functions and a few variables, and runs nothing.
#
#   REPO            the repository root
#   TOOLS_BIN       <repo>/.tools/bin (crane, oras, regctl, conformance, weed)
#   REGISTRY_BIN    registry binary, default <repo>/target/release/registry
#
#   registry_start NAME DATA_DIR [ARGS...]
#       starts `registry serve --listen 127.0.0.1:PORT --data DATA_DIR ARGS...`
#       on a free loopback port, waits until GET /v2/ answers 200 from that
#       very process, and sets REG_PORT, REG_ADDR and REG_PID. Logs go to
#       DATA_DIR/../NAME.log. Every process started here is recorded, and
#       stop_started_processes (call it from your EXIT trap) ends them by PID.
#       When REGISTRY_READY_AUTH is "user:pass", the readiness probe sends it.
#       When REGISTRY_READY_CACERT names a CA file, the probe speaks https
#       and trusts only that CA (for a registry started with --tls-cert).

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_BIN="$REPO/.tools/bin"
REGISTRY_BIN="${REGISTRY_BIN:-$REPO/target/release/registry}"

STARTED_PIDS=()

die() {
  printf '%s: error: %s\n' "$(basename "$0")" "$*" >&2
  exit 1
}

require_tool() {
  local tool
  for tool in "$@"; do
    [ -x "$tool" ] || command -v "$tool" >/dev/null 2>&1 ||
      die "$tool not found; run scripts/install-deps.sh first"
  done
}

# port_is_free PORT: true when no TCP socket of any state uses PORT. A
# client's TIME_WAIT or open connection on a port refuses a later listen
# there too, even with SO_REUSEADDR.
port_is_free() {
  [ -z "$(ss -Htan "sport = :$1" 2>/dev/null)" ]
}

# pick_port: prints a random free port below the kernel's ephemeral range
# (ip_local_port_range), so the outgoing connections of earlier stages and of
# the servers we start cannot take it between our pick and their listen.
pick_port() {
  local port i lo hi base span
  read -r lo hi </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || { lo=32768 hi=60999; }
  if [ "$lo" -gt 15000 ]; then
    base=10000 span=$((lo - 10000))
  else
    base=$((hi + 1)) span=$((65535 - hi))
  fi
  for i in $(seq 1 50); do
    port=$((base + (RANDOM * 32768 + RANDOM) % span))
    if port_is_free "$port"; then
      echo "$port"
      return 0
    fi
  done
  die "no free loopback port found"
}

# listener_pid PORT: the PID that listens on 127.0.0.1:PORT, if any.
listener_pid() {
  ss -Htlnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | head -n1 | cut -d= -f2
}

# wait_http_200 URL PID SECONDS: waits until URL answers 200 while PID lives.
wait_http_200() {
  local url=$1 pid=$2 secs=$3 i
  for _ in $(seq 1 $((secs * 10))); do
    kill -0 "$pid" 2>/dev/null || return 1
    if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
      ${REGISTRY_READY_AUTH:+-u "$REGISTRY_READY_AUTH"} \
      ${REGISTRY_READY_CACERT:+--cacert "$REGISTRY_READY_CACERT"} "$url")" = 200 ]; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

registry_start() {
  local name=$1 data=$2 attempt log pid port scheme=http
  [ -z "${REGISTRY_READY_CACERT:-}" ] || scheme=https
  shift 2
  require_tool "$REGISTRY_BIN"
  mkdir -p "$data"
  log="$(dirname "$data")/$name.log"
  for attempt in 1 2 3 4 5; do
    port=$(pick_port)
    "$REGISTRY_BIN" serve --listen "127.0.0.1:$port" --data "$data" "$@" >>"$log" 2>&1 &
    pid=$!
    STARTED_PIDS+=("$pid")
    # The registry prints nothing to rely on: readiness is a 200 on /v2/
    # served by this very process (not by someone else on the same port).
    if wait_http_200 "$scheme://127.0.0.1:$port/v2/" "$pid" 30 &&
      [ "$(listener_pid "$port")" = "$pid" ]; then
      REG_PORT=$port
      REG_ADDR="127.0.0.1:$port"
      REG_PID=$pid
      return 0
    fi
    stop_pid "$pid"
    printf 'registry %s did not come up on port %s (attempt %s)\n' "$name" "$port" "$attempt" >&2
  done
  printf -- '--- last lines of %s ---\n' "$log" >&2
  tail -n 30 "$log" >&2 || true
  die "registry $name failed to start"
}

# stop_pid PID [SECONDS]: SIGTERM, then SIGKILL after SECONDS (default 10),
# and reap it.
stop_pid() {
  local pid=$1 secs=${2:-10}
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 $((secs * 10))); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

stop_started_processes() {
  local pid
  for pid in "${STARTED_PIDS[@]}"; do
    stop_pid "$pid"
  done
  STARTED_PIDS=()
}
