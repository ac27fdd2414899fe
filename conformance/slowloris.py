#!/usr/bin/env python3
"""Connection-flood load test: thousands of stalled sockets on loopback.

Starts a registry with its default connection caps, pushes one blob, then:

  A. two clients (127.0.0.2 and 127.0.0.3) open STRATA_FLOOD_PER_CLIENT
     sockets each (default 8500) and send half a request head on each, then
     stall. Past the per-client cap the registry answers a fixed 503 with
     Retry-After and closes. Meanwhile, from 127.0.0.1, `/livez` and a normal
     pull (GET of the blob, sha256 checked) must answer within a second.
  B. many clients (STRATA_FLOOD_IPS addresses, default 24, 300 sockets each)
     fill the total cap. `/livez` must still answer 200 within a second (the
     reserved slice); a normal request must be answered within a second too,
     with 503 and Retry-After (not left hanging).

Throughout, the registry's RSS must stay under STRATA_FLOOD_RSS_MIB (default
200) and it must never run out of file descriptors (the caps are well under
the 20000 limit). After each phase the sockets are closed and a normal pull
must succeed again.

Everything stays on loopback; the test takes about 10 s. Exit status 0 when
every check passed; each failure is one line starting with
"slowloris.py: FAIL".
"""

import hashlib
import http.client
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REGISTRY_BIN = os.environ.get("REGISTRY_BIN", str(REPO / "target/release/registry"))
PER_CLIENT = int(os.environ.get("STRATA_FLOOD_PER_CLIENT", "8500"))
IPS = int(os.environ.get("STRATA_FLOOD_IPS", "24"))
RSS_LIMIT_MIB = int(os.environ.get("STRATA_FLOOD_RSS_MIB", "200"))
ANSWER_WITHIN = 1.0
HALF_REQUEST = b"GET /v2/ HTTP/1.1\r\nHost: x\r\nUser-Agent: slowloris\r\n"

failures = []


def log(msg):
    print(f"slowloris.py: {msg}", flush=True)


def fail(msg):
    failures.append(msg)
    log(f"FAIL {msg}")


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def start_registry(data):
    proc = subprocess.Popen(
        [REGISTRY_BIN, "serve", "--listen", "127.0.0.1:0", "--data", str(data)],
        stdout=subprocess.PIPE,
        stderr=open(data.parent / "registry.log", "ab"),
        stdin=subprocess.DEVNULL,
        env={**os.environ, "STRATA_LOG": "warn"},
    )
    line = proc.stdout.readline().decode().strip()
    if not line.startswith("listening on "):
        proc.kill()
        proc.wait()
        raise SystemExit(f"slowloris.py: registry did not start: {line!r}")
    threading.Thread(target=lambda: proc.stdout.read(), daemon=True).start()
    host, port = line[len("listening on ") :].rsplit(":", 1)
    return proc, (host, int(port))


def rss_kib(pid, field):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def request(addr, method, path, body=None, source="127.0.0.1"):
    """One request on a new connection: (status, headers, body, seconds)."""
    started = time.monotonic()
    conn = http.client.HTTPConnection(
        addr[0], addr[1], timeout=10, source_address=(source, 0)
    )
    try:
        conn.request(method, path, body=body)
        r = conn.getresponse()
        data = r.read()
        return r.status, dict(r.getheaders()), data, time.monotonic() - started
    finally:
        conn.close()


def flood(addr, sources, per_source):
    """Open `per_source` stalled sockets from each source address."""
    held = []
    for source in sources:
        for _ in range(per_source):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(5)
            try:
                s.bind((source, 0))
                s.connect(addr)
                s.sendall(HALF_REQUEST)
            except OSError:
                s.close()
                continue
            s.setblocking(False)
            held.append(s)
    return held


def census(sockets):
    """Count sockets still held open, refused with a 503, or closed otherwise."""
    held = refused = closed = 0
    for s in sockets:
        try:
            data = s.recv(4096)
        except BlockingIOError:
            held += 1
            continue
        except OSError:
            closed += 1
            continue
        if data.startswith(b"HTTP/1.1 503") and b"Retry-After" in data:
            refused += 1
        else:
            closed += 1
    return held, refused, closed


def close_all(sockets):
    for s in sockets:
        s.close()


def check_pull(addr, digest, blob, label, expect_ok=True):
    status, headers, data, secs = request(addr, "GET", f"/v2/flood/blobs/{digest}")
    if expect_ok:
        if status != 200 or hashlib.sha256(data).hexdigest() != digest.split(":")[1]:
            fail(f"{label}: pull answered {status}, {len(data)} bytes")
    elif status not in (200, 503):
        fail(f"{label}: pull answered {status}")
    elif status == 503 and "Retry-After" not in headers:
        fail(f"{label}: 503 without Retry-After")
    if secs > ANSWER_WITHIN:
        fail(f"{label}: pull took {secs:.2f} s")
    return status, secs


def check_livez(addr, label):
    status, _, data, secs = request(addr, "GET", "/livez")
    if status != 200 or data != b"ok\n":
        fail(f"{label}: /livez answered {status} {data!r}")
    if secs > ANSWER_WITHIN:
        fail(f"{label}: /livez took {secs:.2f} s")
    return secs


def check_resources(pid, label):
    rss = rss_kib(pid, "VmRSS") // 1024
    fds = open_fds(pid)
    log(f"{label}: registry RSS {rss} MiB, {fds} open fds")
    if rss > RSS_LIMIT_MIB:
        fail(f"{label}: registry RSS {rss} MiB > {RSS_LIMIT_MIB} MiB")
    if fds > 15000:
        fail(f"{label}: registry holds {fds} fds")


def main():
    hard = raise_fd_limit()
    if hard < 2 * PER_CLIENT + 1000:
        raise SystemExit(f"slowloris.py: fd limit {hard} too low for the flood")
    with tempfile.TemporaryDirectory(prefix="strata-flood-") as tmp:
        proc, addr = start_registry(Path(tmp) / "data")
        try:
            run(proc, addr)
        finally:
            proc.kill()
            proc.wait()
            if failures:
                log(f"registry log: {Path(tmp) / 'registry.log'} (removed)")
    if failures:
        log(f"{len(failures)} failure(s)")
        return 1
    log("ok")
    return 0


def run(proc, addr):
    blob = os.urandom(256 * 1024)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    status, _, _, _ = request(
        addr, "POST", f"/v2/flood/blobs/uploads/?digest={digest}", body=blob
    )
    if status != 201:
        fail(f"push answered {status}")
        return

    log(f"phase A: 2 clients x {PER_CLIENT} stalled sockets")
    started = time.monotonic()
    sockets = flood(addr, ["127.0.0.2", "127.0.0.3"], PER_CLIENT)
    log(f"opened {len(sockets)} sockets in {time.monotonic() - started:.1f} s")
    time.sleep(1)
    held, refused, closed = census(sockets)
    log(f"held {held}, refused with 503 {refused}, closed {closed}")
    if held > 2 * 256:
        fail(f"phase A: {held} sockets held, more than the per-client caps allow")
    if refused == 0:
        fail("phase A: no socket was refused with 503")
    for i in range(5):
        check_livez(addr, f"phase A probe {i}")
        check_pull(addr, digest, blob, f"phase A probe {i}")
    check_resources(proc.pid, "phase A")
    close_all(sockets)

    log(f"phase B: {IPS} clients x 300 stalled sockets")
    sources = [f"127.0.1.{i}" for i in range(1, IPS + 1)]
    sockets = flood(addr, sources, 300)
    time.sleep(1)
    held, refused, closed = census(sockets)
    log(f"held {held}, refused with 503 {refused}, closed {closed}")
    if held > 4096:
        fail(f"phase B: {held} sockets held, more than the total cap")
    if refused == 0:
        fail("phase B: no socket was refused with 503")
    answered = []
    for i in range(5):
        check_livez(addr, f"phase B probe {i}")
        answered.append(check_pull(addr, digest, blob, f"phase B probe {i}", False)[0])
    log(f"phase B: normal pulls answered {answered}")
    check_resources(proc.pid, "phase B")
    close_all(sockets)

    time.sleep(1)
    check_pull(addr, digest, blob, "after the floods")
    check_livez(addr, "after the floods")


if __name__ == "__main__":
    sys.exit(main())
