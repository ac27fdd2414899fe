#!/usr/bin/env python3
"""Load test: 200 concurrent clients against one registry.

Starts a registry on a temp data dir, then 200 client threads, each with its
own keep-alive connection, run a mix of operations until the time is up:

  push    35%  a config blob and one or two layers (mostly monolithic, one in
               ten chunked), then a manifest under a tag of its own
  pull    40%  a manifest of a live image, by tag or digest, then one of its
               blobs; both must hash to their digest
  tags    15%  GET /v2/<repo>/tags/list
  delete  10%  an image: its tag or straight its manifest by digest, then its
               blobs

Layer sizes: 70% 1..32 KiB, 25% 32..512 KiB, 5% 0.5..2 MiB.

Checks:
  * no 5xx response, no transport error, no unexpected status (a 404 is
    expected only for an image another client has started to delete);
  * the registry's peak RSS (VmHWM) stays under 300 MiB;
  * afterwards every image pushed and not deleted pulls back intact (manifest
    by tag and by digest, every blob, sha256 verified) and every deleted
    manifest and blob is gone (404).

Prints requests/s, counts by status, p50/p99 latency per operation.

Environment:
  REGISTRY_BIN          registry binary (default target/release/registry)
  STRATA_LOAD_SECONDS   duration of the load (default 120)
  STRATA_LOAD_CLIENTS   client threads (default 200)
  STRATA_LOAD_RSS_MIB   peak RSS limit in MiB (default 300)

Exit status 0 when every check passed, 1 otherwise; each failure is printed
as one line starting with "load.py: FAIL".
"""

import atexit
import http.client
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from crash import (  # noqa: E402  the registry process helpers are shared
    MANIFEST_TYPE,
    CONFIG_TYPE,
    LAYER_TYPE,
    OCTET,
    REGISTRY_BIN,
    Failure,
    Registry,
    location_path,
    mib,
    sha256,
    with_query,
)

SECONDS = float(os.environ.get("STRATA_LOAD_SECONDS", "120"))
CLIENTS = int(os.environ.get("STRATA_LOAD_CLIENTS", "200"))
RSS_LIMIT_MIB = int(os.environ.get("STRATA_LOAD_RSS_MIB", "300"))
REPOS = [f"load/r{i:02}" for i in range(16)]
REQUEST_TIMEOUT = 60.0
MAX_SAMPLES = 10  # failure lines kept per kind


def log(msg):
    print(f"load.py: {msg}", flush=True)


def layer_size(rng):
    r = rng.random()
    if r < 0.70:
        return rng.randint(1 << 10, 32 << 10)
    if r < 0.95:
        return rng.randint(32 << 10, 512 << 10)
    return rng.randint(512 << 10, 2 << 20)


class Image:
    """A pushed image: its manifest, tag and blobs."""

    __slots__ = ("repo", "tag", "digest", "body", "blobs", "deleting")

    def __init__(self, repo, tag, digest, body, blobs):
        self.repo = repo
        self.tag = tag
        self.digest = digest
        self.body = body
        self.blobs = blobs  # [(digest, size)]
        self.deleting = False


class Stats:
    """Everything the clients saw, behind one lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.status = Counter()
        self.latency = {}  # op -> [seconds]
        self.failures = Counter()  # kind -> count
        self.samples = []
        self.live = []  # images nobody deletes yet
        self.deleted = []
        self.pushed_repos = set()
        self.expected_404 = 0

    def record(self, op, status, secs):
        with self.lock:
            self.status[status] += 1
            self.latency.setdefault(op, []).append(secs)

    def fail(self, kind, msg):
        with self.lock:
            self.failures[kind] += 1
            if self.failures[kind] <= MAX_SAMPLES:
                self.samples.append(f"{kind}: {msg}")

    def add_image(self, img):
        with self.lock:
            self.live.append(img)
            self.pushed_repos.add(img.repo)

    def pick_live(self, rng):
        with self.lock:
            return rng.choice(self.live) if self.live else None

    def take_for_delete(self, rng):
        """Claim a live image: it leaves the live set before any DELETE is sent."""
        with self.lock:
            if len(self.live) < 20:
                return None
            i = rng.randrange(len(self.live))
            img = self.live[i]
            self.live[i] = self.live[-1]
            self.live.pop()
            img.deleting = True
            return img

    def mark_deleted(self, img):
        with self.lock:
            self.deleted.append(img)

    def repo_for_tags(self, rng):
        with self.lock:
            return rng.choice(sorted(self.pushed_repos)) if self.pushed_repos else None


class Client:
    """One thread, one keep-alive connection."""

    def __init__(self, idx, addr, stats, deadline):
        self.idx = idx
        self.addr = addr
        self.stats = stats
        self.deadline = deadline
        self.rng = random.Random(idx)
        self.conn = None
        self.pushes = 0

    def request(self, op, method, path, body=b"", headers=None):
        """(status, headers, body), or None after a transport error (recorded)."""
        hdrs = {"Content-Length": str(len(body))}
        hdrs.update(headers or {})
        for retry in (True, False):
            reused = self.conn is not None
            if not reused:
                self.conn = http.client.HTTPConnection(self.addr, timeout=REQUEST_TIMEOUT)
            t0 = time.monotonic()
            try:
                self.conn.request(method, path, body=body, headers=hdrs)
                resp = self.conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException) as e:
                self.conn.close()
                self.conn = None
                # A keep-alive connection the server had closed: once more, fresh.
                if retry and reused and isinstance(
                    e, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
                ):
                    continue
                self.stats.record(op, "transport error", time.monotonic() - t0)
                self.stats.fail("transport error", f"{method} {path}: {e!r}")
                return None
            self.stats.record(op, resp.status, time.monotonic() - t0)
            if resp.status >= 500:
                self.stats.fail("5xx", f"{method} {path} -> {resp.status}: {data[:200]!r}")
            return resp.status, resp.headers, data

    def expect(self, op, method, path, want, body=b"", headers=None):
        """Like request, but anything but `want` is a failure; returns None then."""
        r = self.request(op, method, path, body, headers)
        if r is None:
            return None
        if r[0] != want:
            if r[0] < 500:
                self.stats.fail("unexpected status", f"{method} {path} -> {r[0]} (want {want}): {r[2][:200]!r}")
            return None
        return r

    def run(self):
        try:
            while time.monotonic() < self.deadline:
                r = self.rng.random()
                if r < 0.35:
                    self.push()
                elif r < 0.75:
                    self.pull()
                elif r < 0.90:
                    self.tags()
                else:
                    self.delete()
        except Exception as e:  # a bug in this script must fail the run too
            self.stats.fail("client crashed", f"client {self.idx}: {e!r}")
        finally:
            if self.conn is not None:
                self.conn.close()

    # -- operations --

    def push_blob(self, repo, data):
        digest = sha256(data)
        if self.rng.random() < 0.9:
            ok = self.expect("push blob", "POST", f"/v2/{repo}/blobs/uploads/?digest={digest}", 201, data, OCTET)
            return digest if ok else None
        r = self.expect("push blob", "POST", f"/v2/{repo}/blobs/uploads/", 202)
        if r is None:
            return None
        loc = location_path(r[1])
        cut = len(data) // 2
        for start, end in ((0, cut), (cut, len(data))):
            r = self.expect(
                "push blob",
                "PATCH",
                loc,
                202,
                data[start:end],
                {**OCTET, "Content-Range": f"{start}-{end - 1}"},
            )
            if r is None:
                return None
            loc = location_path(r[1], loc)
        ok = self.expect("push blob", "PUT", with_query(loc, "digest", digest), 201)
        return digest if ok else None

    def push(self):
        repo = self.rng.choice(REPOS)
        config = json.dumps({"architecture": "amd64", "os": "linux", "nonce": os.urandom(8).hex()}).encode()
        layers = [os.urandom(layer_size(self.rng)) for _ in range(self.rng.randint(1, 2))]
        blobs = []
        for data in [config, *layers]:
            digest = self.push_blob(repo, data)
            if digest is None:
                return
            blobs.append((digest, len(data)))
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "digest": blobs[0][0], "size": blobs[0][1]},
            "layers": [{"mediaType": LAYER_TYPE, "digest": d, "size": s} for d, s in blobs[1:]],
        }
        body = json.dumps(manifest).encode()
        self.pushes += 1
        tag = f"c{self.idx}-{self.pushes}"
        ok = self.expect(
            "push manifest", "PUT", f"/v2/{repo}/manifests/{tag}", 201, body, {"Content-Type": MANIFEST_TYPE}
        )
        if ok:
            self.stats.add_image(Image(repo, tag, sha256(body), body, blobs))

    def pull(self):
        img = self.stats.pick_live(self.rng)
        if img is None:
            return
        ref = img.tag if self.rng.random() < 0.5 else img.digest
        if not self.pull_one("pull manifest", img, f"/v2/{img.repo}/manifests/{ref}", img.digest):
            return
        digest, _ = self.rng.choice(img.blobs)
        self.pull_one("pull blob", img, f"/v2/{img.repo}/blobs/{digest}", digest)

    def pull_one(self, op, img, path, digest):
        r = self.request(op, "GET", path, headers={"Accept": MANIFEST_TYPE})
        if r is None:
            return False
        status, _, body = r
        if status == 404 and img.deleting:
            with self.stats.lock:
                self.stats.expected_404 += 1
            return False
        if status != 200:
            if status < 500:
                self.stats.fail("unexpected status", f"GET {path} -> {status}: {body[:200]!r}")
            return False
        if sha256(body) != digest:
            self.stats.fail("corrupt read", f"GET {path}: {len(body)} bytes hash to {sha256(body)}, want {digest}")
            return False
        return True

    def tags(self):
        repo = self.stats.repo_for_tags(self.rng)
        if repo is None:
            return
        r = self.expect("tags list", "GET", f"/v2/{repo}/tags/list", 200)
        if r is None:
            return
        try:
            doc = json.loads(r[2])
            ok = doc.get("name") == repo and isinstance(doc.get("tags"), list)
        except ValueError:
            ok = False
        if not ok:
            self.stats.fail("bad tags list", f"GET /v2/{repo}/tags/list: {r[2][:200]!r}")

    def delete(self):
        img = self.stats.take_for_delete(self.rng)
        if img is None:
            return
        base = f"/v2/{img.repo}"
        if self.rng.random() < 0.5 and not self.expect("delete", "DELETE", f"{base}/manifests/{img.tag}", 202):
            return
        if not self.expect("delete", "DELETE", f"{base}/manifests/{img.digest}", 202):
            return
        for digest, _ in img.blobs:
            if not self.expect("delete", "DELETE", f"{base}/blobs/{digest}", 202):
                return
        self.stats.mark_deleted(img)


# ---- after the load ----------------------------------------------------------------


class Reader:
    """Plain GETs against the registry, one connection per thread."""

    def __init__(self, addr):
        self.addr = addr
        self.local = threading.local()
        self.conns = []

    def close(self):
        """Close every connection, so a graceful shutdown need not wait for them."""
        for conn in self.conns:
            conn.close()

    def get(self, path):
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection(self.addr, timeout=REQUEST_TIMEOUT)
            self.conns.append(conn)
        try:
            conn.request("GET", path, headers={"Accept": MANIFEST_TYPE})
            resp = conn.getresponse()
            return resp.status, resp.read()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            self.local.conn = None
            return f"transport error {e!r}", b""


def verify_live(reader, img):
    problems = []
    for ref in (img.tag, img.digest):
        status, body = reader.get(f"/v2/{img.repo}/manifests/{ref}")
        if status != 200 or body != img.body:
            problems.append(f"live manifest {img.repo}:{ref} -> {status}, {len(body)} bytes, want the pushed {len(img.body)}")
    for digest, size in img.blobs:
        status, body = reader.get(f"/v2/{img.repo}/blobs/{digest}")
        if status != 200 or sha256(body) != digest or len(body) != size:
            problems.append(f"live blob {img.repo}@{digest} -> {status}, {len(body)} bytes hashing to {sha256(body)}")
    return problems


def verify_deleted(reader, img):
    problems = []
    for path in [f"/v2/{img.repo}/manifests/{img.digest}"] + [f"/v2/{img.repo}/blobs/{d}" for d, _ in img.blobs]:
        status, _ = reader.get(path)
        if status != 404:
            problems.append(f"deleted {path} -> {status}, want 404")
    return problems


def proc_status(pid, field):
    """A /proc/PID/status field in KiB, or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def percentile(xs, p):
    if not xs:
        return 0.0
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def run(work):
    reg = Registry(work / "data", work / "registry.log")
    atexit.register(reg.kill)
    addr = reg.start()
    pid = reg.proc.pid
    stats = Stats()
    threading.stack_size(512 * 1024)
    deadline = time.monotonic() + SECONDS
    clients = [Client(i, addr, stats, deadline) for i in range(CLIENTS)]
    threads = [threading.Thread(target=c.run, name=f"client-{i}", daemon=True) for i, c in enumerate(clients)]
    rss_peak = 0
    started = time.monotonic()
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        rss = proc_status(pid, "VmRSS")
        if rss is None:
            raise Failure(f"the registry (PID {pid}) died under load; log: {work / 'registry.log'}")
        rss_peak = max(rss_peak, rss)
        time.sleep(0.5)
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    hwm = proc_status(pid, "VmHWM") or rss_peak

    reader = Reader(addr)
    verify_started = time.monotonic()
    with ThreadPoolExecutor(32) as pool:
        live = list(pool.map(lambda img: verify_live(reader, img), stats.live))
        gone = list(pool.map(lambda img: verify_deleted(reader, img), stats.deleted))
    for kind, results in (("after the load", live), ("after the load", gone)):
        for problems in results:
            for p in problems:
                stats.fail(kind, p)
    verify_secs = time.monotonic() - verify_started
    if proc_status(pid, "VmRSS") is None:
        raise Failure(f"the registry (PID {pid}) died; log: {work / 'registry.log'}")
    reader.close()
    reg.stop()

    total = sum(stats.status.values())
    by_status = ", ".join(f"{k}: {v}" for k, v in sorted(stats.status.items(), key=lambda kv: str(kv[0])))
    log(f"{CLIENTS} clients for {elapsed:.0f}s: {total} requests, {total / elapsed:.0f} requests/s")
    log(f"by status: {by_status}; {stats.expected_404} of the 404s were reads racing a delete")
    everything = []
    for op in sorted(stats.latency):
        xs = sorted(stats.latency[op])
        everything += xs
        log(f"  {op:<14} {len(xs):>7}  p50 {percentile(xs, 0.5) * 1000:7.1f} ms  p99 {percentile(xs, 0.99) * 1000:7.1f} ms")
    everything.sort()
    log(f"  {'all':<14} {len(everything):>7}  p50 {percentile(everything, 0.5) * 1000:7.1f} ms  p99 {percentile(everything, 0.99) * 1000:7.1f} ms")
    log(
        f"images: {len(stats.live)} live verified by tag, digest and blobs; "
        f"{len(stats.deleted)} deleted verified gone, in {verify_secs:.0f}s"
    )
    log(f"registry peak RSS (VmHWM): {mib(hwm * 1024)} (limit {RSS_LIMIT_MIB} MiB)")

    failures = [f"{n} x {kind}" for kind, n in sorted(stats.failures.items())]
    failures += stats.samples
    if hwm > RSS_LIMIT_MIB * 1024:
        failures.append(f"registry peak RSS {mib(hwm * 1024)} over the {RSS_LIMIT_MIB} MiB limit")
    if not stats.live or not stats.deleted:
        failures.append("the load pushed or deleted nothing; it proved nothing")
    return failures, work / "registry.log"


def main():
    if not os.access(REGISTRY_BIN, os.X_OK):
        print(f"load.py: error: {REGISTRY_BIN} not found; build it with cargo build --release --workspace", file=sys.stderr)
        return 2

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    work = Path(tempfile.mkdtemp(prefix="strata-load."))
    atexit.register(shutil.rmtree, work, True)
    try:
        failures, log_path = run(work)
    except Failure as e:
        failures, log_path = [str(e)], work / "registry.log"
    for f in failures:
        print(f"load.py: FAIL {f}", flush=True)
    if failures:
        if log_path.exists():
            errors = [l for l in log_path.read_text(errors="replace").splitlines() if "ERROR" in l or "WARN" in l]
            if errors:
                print("load.py: registry warnings and errors:\n  " + "\n  ".join(errors[-20:]), flush=True)
        log(f"FAILED: {len(failures)} problems")
        return 1
    log("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
