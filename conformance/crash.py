#!/usr/bin/env python3
"""Kill test: acknowledged pushes survive `kill -9` of the registry.

One registry runs on a temp data dir. Six client threads push without pause:
monolithic blobs (log-uniform 1 KiB..4 MiB, some of them re-pushes of a blob
already stored), chunked uploads of 2..4 PATCHes, and tagged image manifests
that reference blobs acknowledged earlier. Every push that got a 201 is
recorded. At random moments (uniform 0.2..1.5 s) the registry is killed with
SIGKILL and restarted on the same data dir, on a new port; clients follow it.
A client that loses a chunked upload either resumes it (GET the session,
continue at its Range) or abandons it; a lost monolithic push or manifest is
retried.

After the last kill the clients stop, the registry is killed once more and
started again with no traffic (the clean restart). Then it checks:

  * every acknowledged blob and manifest reads back and hashes to its digest;
  * every tag resolves to a digest pushed to it whose PUT was not followed,
    strictly after, by an acknowledged PUT of another digest to that tag;
  * anything else the clients tried to push is either absent or intact;
  * every file under storage/blobs hashes to its own name;
  * a client-visible error from a registry that was not being killed
    (a transport error, a 5xx, any unexpected status) is a failure.

It reports the staging debris under storage/uploads after the clean
restart: everything found there, and what is left once every upload session
still open through the API has been cancelled with DELETE. With
STRATA_EXPECT_CLEAN_STAGING=1 the second figure must be zero.

Environment:
  REGISTRY_BIN                  registry binary (default target/release/registry)
  STRATA_CRASH_KILLS            kills under load (default 30; fewer than 20 fails)
  STRATA_CRASH_SEED             random seed (default: time based, printed)
  STRATA_EXPECT_CLEAN_STAGING   1: fail unless staging is clean after restart

Exit status 0 when every check passed, 1 otherwise; each failure is printed
as one line starting with "crash.py: FAIL".
"""

import atexit
import hashlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REGISTRY_BIN = os.environ.get("REGISTRY_BIN", str(ROOT / "target/release/registry"))
KILLS = int(os.environ.get("STRATA_CRASH_KILLS", "30"))
SEED = int(os.environ.get("STRATA_CRASH_SEED", str(time.time_ns() % 1_000_000_007)))
EXPECT_CLEAN = os.environ.get("STRATA_EXPECT_CLEAN_STAGING") == "1"

CLIENTS = 6
REPOS = ["crash/alpha", "crash/beta", "crash/gamma"]
TAGS = ["t0", "t1", "t2", "t3"]
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"
REQUEST_TIMEOUT = 30.0
START_TIMEOUT = 30.0


def log(msg):
    print(f"crash.py: {msg}", flush=True)


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---- the registry process ----------------------------------------------------

def registry_argv(data):
    """The serve command. Under setpriv the registry gets SIGKILL should this
    script die without cleaning up (setpriv execs, so the PID stays); the
    signal follows the thread that forked, so only the main thread starts
    registries."""
    argv = [REGISTRY_BIN, "serve", "--listen", "127.0.0.1:0", "--data", str(data)]
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--", *argv] if setpriv else argv


class Registry:
    """One `registry serve` process at a time on a fixed data dir."""

    def __init__(self, data, log_path):
        self.data = data
        self.log_path = log_path
        self.proc = None
        self.starts = 0

    def start(self):
        assert threading.current_thread() is threading.main_thread()
        logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            registry_argv(self.data),
            stdout=subprocess.PIPE,
            stderr=logf,
            stdin=subprocess.DEVNULL,
        )
        logf.close()
        self.starts += 1
        addr = read_listen_line(self.proc, START_TIMEOUT)
        if addr is None:
            code = self.proc.poll()
            self.kill()
            raise Failure(
                f"registry start #{self.starts} printed no 'listening on' line "
                f"within {START_TIMEOUT:.0f}s (exit {code}); log: {self.log_path}"
            )
        threading.Thread(target=drain, args=(self.proc.stdout,), daemon=True).start()
        return addr

    def kill(self):
        """SIGKILL by PID, then reap."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def stop(self):
        """SIGTERM by PID; SIGKILL after 10 s."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None


def read_listen_line(proc, timeout):
    """The address from the registry's `listening on ADDR` line, or None."""
    found = []

    def reader():
        for raw in proc.stdout:
            line = raw.decode(errors="replace").strip()
            if line.startswith("listening on "):
                found.append(line[len("listening on ") :])
                return

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(timeout)
    return found[0] if found else None


def drain(pipe):
    for _ in pipe:
        pass


class Failure(Exception):
    """A check failed; the message is one line."""


# ---- where clients send requests -----------------------------------------------


class Target:
    """The live registry address. `gen` changes before every kill, so a client
    can tell a transport error caused by a kill from one of a live server."""

    def __init__(self):
        self.cond = threading.Condition()
        self.addr = None
        self.gen = 0

    def up(self, addr):
        with self.cond:
            self.addr = addr
            self.gen += 1
            self.cond.notify_all()

    def down(self):
        with self.cond:
            self.addr = None
            self.gen += 1

    def current(self, stop):
        with self.cond:
            while self.addr is None and not stop.is_set():
                self.cond.wait(0.2)
            return self.addr, self.gen


class Lost(Exception):
    """The registry went away during a request (it was being killed)."""


class Stopped(Exception):
    """The run is over."""


class Client:
    """One pushing thread with a keep-alive connection that follows the target."""

    def __init__(self, idx, target, ledger, stop):
        self.idx = idx
        self.target = target
        self.ledger = ledger
        self.stop = stop
        self.rng = random.Random(SEED * 1000 + idx)
        self.conn = None
        self.conn_gen = None

    # -- transport --

    def request(self, method, path, body=b"", headers=None, expect=None):
        """Send one request to the live registry. Raises Lost when it was
        killed meanwhile, Failure on a transport error from a live registry
        or an unexpected status. Returns (status, headers, body)."""
        addr, gen = self.target.current(self.stop)
        if addr is None:
            raise Stopped()
        hdrs = {"Content-Length": str(len(body))}
        hdrs.update(headers or {})
        for retry in (True, False):
            reused = self.conn is not None and self.conn_gen == gen
            if not reused:
                self.close()
                self.conn = http.client.HTTPConnection(addr, timeout=REQUEST_TIMEOUT)
                self.conn_gen = gen
            try:
                self.conn.request(method, path, body=body, headers=hdrs)
                resp = self.conn.getresponse()
                data = resp.read()
                break
            except (OSError, http.client.HTTPException) as e:
                self.close()
                with self.target.cond:
                    killed = self.target.gen != gen
                if killed:
                    raise Lost() from e
                # A keep-alive connection the server had closed: once more, fresh.
                if retry and reused and isinstance(e, STALE_CONNECTION):
                    continue
                raise Failure(f"{method} {path}: transport error from a live registry: {e!r}")
        with self.target.cond:
            killed = self.target.gen != gen
        if expect is not None and resp.status not in expect:
            detail = f"{method} {path} -> {resp.status} (expected {sorted(expect)}): {data[:300]!r}"
            if killed and resp.status >= 500:
                # A request in flight while the process died half way.
                raise Lost()
            raise Failure(detail)
        return resp.status, resp.headers, data

    def close(self):
        if self.conn is not None:
            self.conn.close()
        self.conn = None
        self.conn_gen = None

    # -- the loop --

    def run(self):
        try:
            while not self.stop.is_set():
                r = self.rng.random()
                repo = self.rng.choice(REPOS)
                try:
                    if r < 0.40:
                        self.push_monolithic(repo)
                    elif r < 0.65:
                        self.push_chunked(repo)
                    else:
                        self.push_manifest(repo)
                except Stopped:
                    return
        except Failure as e:
            self.ledger.fail(f"client {self.idx}: {e}")
            self.stop.set()
        except Exception as e:  # a bug in this script must fail the run too
            self.ledger.fail(f"client {self.idx}: unexpected {e!r}")
            self.stop.set()
        finally:
            self.close()

    def blob_bytes(self):
        size = int(2 ** self.rng.uniform(10, 22))  # 1 KiB .. 4 MiB, log-uniform
        return os.urandom(size)

    def push_monolithic(self, repo):
        reuse = self.ledger.some_blob(self.rng) if self.rng.random() < 0.1 else None
        data = reuse if reuse is not None else self.blob_bytes()
        digest = sha256(data)
        path = f"/v2/{repo}/blobs/uploads/?digest={digest}"
        for _ in range(5):
            self.ledger.attempt_blob(repo, digest, len(data))
            try:
                self.request("POST", path, data, OCTET, expect={201})
            except Lost:
                continue
            self.ledger.ack_blob(repo, digest, len(data), data)
            return

    def push_chunked(self, repo):
        data = self.blob_bytes()
        digest = sha256(data)
        n = self.rng.randint(2, 4)
        # Chunks of 2+ bytes: after a kill a session holds 0 or 2+ bytes, so
        # the ambiguous `Range: 0-0` can only mean an empty session.
        cuts = sorted(self.rng.sample(range(2, len(data) - 1, 2), n - 1))
        bounds = list(zip([0] + cuts, cuts + [len(data)]))
        for _ in range(5):
            self.ledger.attempt_blob(repo, digest, len(data))
            try:
                _, h, _ = self.request("POST", f"/v2/{repo}/blobs/uploads/", expect={202})
            except Lost:
                continue
            loc = location_path(h)
            if self.chunked_session(repo, loc, data, digest, bounds):
                return

    def chunked_session(self, repo, loc, data, digest, bounds):
        """Drive one upload session to its end. True when the blob is pushed
        (or seen stored), False when the session was abandoned."""
        acked = 0  # bytes the registry acknowledged with 202
        pending = list(bounds)
        while True:
            try:
                while pending:
                    start, end = pending.pop(0)
                    _, h, _ = self.request(
                        "PATCH",
                        loc,
                        data[start:end],
                        {**OCTET, "Content-Range": f"{start}-{end - 1}"},
                        expect={202},
                    )
                    want = f"0-{end - 1}"
                    if h.get("Range") != want:
                        raise Failure(f"PATCH {loc}: Range {h.get('Range')!r}, expected {want!r}")
                    acked = end
                    loc = location_path(h, loc)
                self.request("PUT", with_query(loc, "digest", digest), expect={201})
                self.ledger.ack_blob(repo, digest, len(data), data)
                self.ledger.session_done(loc)
                return True
            except Lost:
                pass
            if self.rng.random() < 0.5:
                self.ledger.session_abandoned(loc)
                return False
            # Resume: ask the new registry how far the session got.
            try:
                status, h, body = self.request("GET", loc, expect={204, 404})
            except Lost:
                self.ledger.session_abandoned(loc)
                return False
            if status == 404:
                # Gone only when the final PUT committed it.
                try:
                    st, _, _ = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", expect={200, 404})
                except Lost:
                    self.ledger.session_abandoned(loc)
                    return False
                if st == 200 and not pending:
                    return True
                raise Failure(
                    f"upload session {loc} vanished after a restart "
                    f"({acked} bytes acknowledged, blob HEAD {st}): {body[:200]!r}"
                )
            offset = parse_range_end(h.get("Range")) + 1
            if not acked <= offset <= len(data):
                raise Failure(
                    f"GET {loc} after restart: Range {h.get('Range')!r}, but {acked} bytes "
                    f"were acknowledged and {len(data)} sent at most"
                )
            self.ledger.count("resumed")
            loc = location_path(h, loc)
            pending = [(offset, len(data))] if offset < len(data) else []

    def push_manifest(self, repo):
        blobs = self.ledger.blobs_of(repo, self.rng, self.rng.randint(2, 4))
        if blobs is None:
            self.push_monolithic(repo)
            return
        (cfg_digest, cfg_size), layers = blobs[0], blobs[1:]
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "digest": cfg_digest, "size": cfg_size},
            "layers": [{"mediaType": LAYER_TYPE, "digest": d, "size": s} for d, s in layers],
            "annotations": {"nonce": os.urandom(8).hex()},
        }
        body = json.dumps(manifest).encode()
        digest = sha256(body)
        tag = self.rng.choice(TAGS)
        for _ in range(5):
            attempt = self.ledger.attempt_tag(repo, tag, digest)
            try:
                _, h, _ = self.request(
                    "PUT",
                    f"/v2/{repo}/manifests/{tag}",
                    body,
                    {"Content-Type": MANIFEST_TYPE},
                    expect={201},
                )
            except Lost:
                self.ledger.end_attempt(attempt, acked=False)
                continue
            self.ledger.end_attempt(attempt, acked=True)
            got = h.get("Docker-Content-Digest")
            if got not in (None, digest):
                raise Failure(f"PUT manifest {repo}:{tag}: Docker-Content-Digest {got}, expected {digest}")
            self.ledger.ack_manifest(repo, digest, body)
            return


OCTET = {"Content-Type": "application/octet-stream"}
STALE_CONNECTION = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


def location_path(headers, default=None):
    loc = headers.get("Location")
    if loc is None:
        if default is None:
            raise Failure("upload response without Location")
        return default
    u = urllib.parse.urlsplit(loc)
    return u.path + (f"?{u.query}" if u.query else "")


def with_query(path, key, value):
    sep = "&" if "?" in path else "?"
    return f"{path}{sep}{key}={urllib.parse.quote(value, safe=':')}"


def parse_range_end(value):
    """`0-N` -> N; `0-0` or no header means nothing received yet (-1)."""
    if not value or value == "0-0":
        return -1
    start, _, end = value.partition("-")
    if start != "0" or not end.isdigit():
        raise Failure(f"malformed upload Range header {value!r}")
    return int(end)


# ---- what the clients did ------------------------------------------------------


class Ledger:
    """Everything pushed, with what the registry acknowledged."""

    def __init__(self):
        self.lock = threading.Lock()
        self.acked_blobs = {}  # (repo, digest) -> size
        self.tried_blobs = {}  # (repo, digest) -> size
        self.acked_manifests = {}  # (repo, digest) -> bytes
        self.tried_manifests = set()  # (repo, digest)
        self.tag_attempts = []  # [repo, tag, digest, start, end, acked]
        self.sample = []  # a few blob bodies for dedup re-pushes
        self.open_sessions = set()  # upload paths clients walked away from
        self.failures = []
        self.counts = {"resumed": 0}

    def fail(self, msg):
        with self.lock:
            self.failures.append(msg)

    def count(self, key):
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1

    def attempt_blob(self, repo, digest, size):
        with self.lock:
            self.tried_blobs[(repo, digest)] = size

    def ack_blob(self, repo, digest, size, data):
        with self.lock:
            self.acked_blobs[(repo, digest)] = size
            if len(data) <= 256 * 1024:
                if len(self.sample) < 64:
                    self.sample.append(data)
                else:
                    self.sample[random.randrange(64)] = data

    def some_blob(self, rng):
        with self.lock:
            return rng.choice(self.sample) if self.sample else None

    def blobs_of(self, repo, rng, n):
        with self.lock:
            mine = [(d, s) for (r, d), s in self.acked_blobs.items() if r == repo]
        if len(mine) < n:
            return None
        return rng.sample(mine, n)

    def attempt_tag(self, repo, tag, digest):
        with self.lock:
            self.tried_manifests.add((repo, digest))
            a = [repo, tag, digest, time.monotonic(), None, False]
            self.tag_attempts.append(a)
            return a

    def end_attempt(self, attempt, acked):
        with self.lock:
            attempt[4] = time.monotonic()
            attempt[5] = acked

    def ack_manifest(self, repo, digest, body):
        with self.lock:
            self.acked_manifests[(repo, digest)] = body

    def session_abandoned(self, loc):
        with self.lock:
            self.open_sessions.add(loc)

    def session_done(self, loc):
        with self.lock:
            self.open_sessions.discard(loc)


# ---- checks after the run ------------------------------------------------------


class Checker:
    """Reads back from the final registry with plain connections."""

    def __init__(self, addr):
        self.addr = addr
        self.local = threading.local()
        self.conns = []

    def close(self):
        """Close every connection, so a graceful shutdown need not wait for them."""
        for conn in self.conns:
            conn.close()

    def get(self, method, path):
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection(self.addr, timeout=60)
            self.conns.append(conn)
        try:
            conn.request(method, path, headers={"Accept": MANIFEST_TYPE})
            resp = conn.getresponse()
            return resp.status, resp.headers, resp.read()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            self.local.conn = None
            raise Failure(f"{method} {path}: transport error from the final registry: {e!r}")


def verify_blob(chk, repo, digest, size, must_exist):
    status, _, body = chk.get("GET", f"/v2/{repo}/blobs/{digest}")
    if status == 404 and not must_exist:
        return None
    if status != 200:
        return f"GET blob {repo}@{digest} -> {status}: {body[:200]!r}"
    if sha256(body) != digest:
        return f"GET blob {repo}@{digest}: {len(body)} bytes hash to {sha256(body)}"
    if len(body) != size:
        return f"GET blob {repo}@{digest}: {len(body)} bytes, pushed {size}"
    return None


def verify_manifest(chk, repo, digest, body_pushed, must_exist):
    status, _, body = chk.get("GET", f"/v2/{repo}/manifests/{digest}")
    if status == 404 and not must_exist:
        return None
    if status != 200:
        return f"GET manifest {repo}@{digest} -> {status}: {body[:200]!r}"
    if sha256(body) != digest:
        return f"GET manifest {repo}@{digest}: bytes hash to {sha256(body)}"
    if body_pushed is not None and body != body_pushed:
        return f"GET manifest {repo}@{digest}: bytes differ from the pushed ones"
    return None


def check_tags(chk, ledger):
    """A tag must name the digest of some PUT to it that no acknowledged PUT
    began after the end of. Returns failures."""
    problems = []
    by_tag = {}
    for repo, tag, digest, start, end, acked in ledger.tag_attempts:
        by_tag.setdefault((repo, tag), []).append((digest, start, end, acked))
    for (repo, tag), attempts in sorted(by_tag.items()):
        acked = [a for a in attempts if a[3]]
        status, h, body = chk.get("GET", f"/v2/{repo}/manifests/{tag}")
        if status == 404 and not acked:
            continue
        if status != 200:
            problems.append(f"tag {repo}:{tag} -> {status} after {len(acked)} acknowledged PUTs: {body[:200]!r}")
            continue
        got = sha256(body)
        allowed = {
            d
            for d, _, end, _ in attempts
            if end is not None and not any(b[1] > end for b in acked)
        }
        # A PUT still in flight at the final kill may also have landed.
        allowed |= {d for d, _, end, _ in attempts if end is None}
        if got not in allowed:
            last = max(acked, key=lambda a: a[2])[0] if acked else None
            problems.append(
                f"tag {repo}:{tag} resolves to {got}, an overwritten or never-pushed digest "
                f"(last acknowledged {last})"
            )
    return problems


def check_blob_files(data):
    """Every file under storage/blobs/<alg>/<2hex>/<hex> hashes to its name."""
    problems = []
    root = data / "storage" / "blobs"
    count = 0
    for path in sorted(root.rglob("*")) if root.exists() else []:
        if not path.is_file():
            continue
        count += 1
        rel = path.relative_to(root)
        parts = rel.parts
        if len(parts) != 3 or parts[1] != parts[2][:2] or parts[0] not in hashlib.algorithms_available:
            problems.append(f"stray file under storage/blobs: {rel} ({path.stat().st_size} bytes)")
            continue
        h = hashlib.new(parts[0])
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        if h.hexdigest() != parts[2]:
            problems.append(
                f"storage/blobs/{rel} ({path.stat().st_size} bytes) does not hash to its name "
                f"(truncated or half-written)"
            )
    return count, problems


def staging_usage(data):
    """(session dirs, files, bytes, a few file names with sizes) under storage/uploads."""
    root = data / "storage" / "uploads"
    dirs = files = size = 0
    names = []
    if root.exists():
        dirs = sum(1 for p in root.iterdir() if p.is_dir())
        for p in sorted(root.rglob("*")):
            if p.is_file():
                files += 1
                size += p.stat().st_size
                if len(names) < 5:
                    names.append(f"{p.relative_to(root)} ({p.stat().st_size} B)")
    return dirs, files, size, names


def cancel_sessions(chk, data, known):
    """DELETE every upload session the registry still serves: those clients
    walked away from, and any other session dir found under storage/uploads.
    Returns (sessions cancelled, problems)."""
    paths = set(known)
    root = data / "storage" / "uploads"
    if root.exists():
        for p in root.iterdir():
            if p.is_dir():
                paths.update(f"/v2/{repo}/blobs/uploads/{p.name}" for repo in REPOS)
    cancelled = 0
    problems = []
    for path in sorted(paths):
        status, _, body = chk.get("DELETE", path)
        if status == 204:
            cancelled += 1
        elif status != 404:
            problems.append(f"DELETE {path} -> {status}: {body[:200]!r}")
    return cancelled, problems


def mib(n):
    return f"{n / (1 << 20):.1f} MiB"


# ---- main ----------------------------------------------------------------------


def run(work):
    data = work / "data"
    reg = Registry(data, work / "registry.log")
    atexit.register(reg.kill)
    target = Target()
    ledger = Ledger()
    stop = threading.Event()
    rng = random.Random(SEED)
    started = time.monotonic()

    target.up(reg.start())
    clients = [Client(i, target, ledger, stop) for i in range(CLIENTS)]
    threads = [threading.Thread(target=c.run, name=f"client-{i}") for i, c in enumerate(clients)]
    try:
        for t in threads:
            t.start()
        kills = 0
        while kills < KILLS and not stop.is_set():
            time.sleep(rng.uniform(0.2, 1.5))
            target.down()
            reg.kill()
            kills += 1
            target.up(reg.start())
        if not stop.is_set():
            time.sleep(0.5)  # let the clients push to the last registry too
    finally:
        stop.set()
        for t in threads:
            t.join()
    # The clean restart: crash the idle registry once more, start it again
    # with nobody pushing.
    target.down()
    reg.kill()
    addr = reg.start()
    load_secs = time.monotonic() - started

    failures = list(ledger.failures)
    raw_dirs, raw_files, raw_bytes, _ = staging_usage(data)

    chk = Checker(addr)
    jobs = []
    with ThreadPoolExecutor(4) as pool:
        for (repo, digest), size in ledger.acked_blobs.items():
            jobs.append(pool.submit(verify_blob, chk, repo, digest, size, True))
        for key, size in ledger.tried_blobs.items():
            if key not in ledger.acked_blobs:
                jobs.append(pool.submit(verify_blob, chk, *key, size, False))
        for (repo, digest), body in ledger.acked_manifests.items():
            jobs.append(pool.submit(verify_manifest, chk, repo, digest, body, True))
        for key in ledger.tried_manifests - ledger.acked_manifests.keys():
            jobs.append(pool.submit(verify_manifest, chk, *key, None, False))
        failures += [j.result() for j in jobs if j.result()]
    failures += check_tags(chk, ledger)
    blob_files, file_problems = check_blob_files(data)
    failures += file_problems

    cancelled, cancel_problems = cancel_sessions(chk, data, ledger.open_sessions)
    failures += cancel_problems
    left_dirs, left_files, left_bytes, left_names = staging_usage(data)
    chk.close()
    reg.stop()

    acked_tags = sum(1 for a in ledger.tag_attempts if a[5])
    log(
        f"seed {SEED}: {kills} kills under load in {load_secs:.0f}s, then one idle; acknowledged "
        f"{len(ledger.acked_blobs)} blobs ({mib(sum(ledger.acked_blobs.values()))}), "
        f"{len(ledger.acked_manifests)} manifests, {acked_tags} tag PUTs; "
        f"{ledger.counts['resumed']} uploads resumed after a kill"
    )
    log(
        f"verified {len(jobs)} blob/manifest reads ({len(ledger.acked_blobs) + len(ledger.acked_manifests)} "
        f"acknowledged), {len({(a[0], a[1]) for a in ledger.tag_attempts})} tags, "
        f"{blob_files} files under storage/blobs"
    )
    log(
        f"staging after clean restart: {raw_dirs} session dirs, {raw_files} files, {mib(raw_bytes)}; "
        f"after cancelling {cancelled} open sessions by DELETE: {left_dirs} dirs, "
        f"{left_files} files, {mib(left_bytes)}"
        + (f" (e.g. {', '.join(left_names)})" if left_names else "")
    )
    if EXPECT_CLEAN and (left_files or left_dirs):
        failures.append(
            f"staging debris after a clean restart: {left_dirs} dirs, {left_files} files "
            f"({mib(left_bytes)}) under storage/uploads that no upload session owns"
        )
    if kills < 20:
        failures.append(f"only {kills} kills under load (need at least 20)")
    if not ledger.acked_manifests:
        failures.append("no manifest push was acknowledged; the test proved nothing")
    return failures, work / "registry.log"


def main():
    if not os.access(REGISTRY_BIN, os.X_OK):
        print(f"crash.py: error: {REGISTRY_BIN} not found; build it with cargo build --release --workspace", file=sys.stderr)
        return 2

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    work = Path(tempfile.mkdtemp(prefix="strata-crash."))
    atexit.register(shutil.rmtree, work, True)
    try:
        failures, log_path = run(work)
    except Failure as e:
        failures, log_path = [str(e)], work / "registry.log"
    for f in failures:
        print(f"crash.py: FAIL {f}", flush=True)
    if failures:
        text = log_path.read_text(errors="replace") if log_path.exists() else ""
        lines = re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines()
        errors = [line for line in lines if " ERROR " in line or "panicked" in line][:20]
        if errors:
            print("crash.py: registry errors logged:\n  " + "\n  ".join(errors), flush=True)
        tail = lines[-20:]
        if tail:
            print("crash.py: last registry log lines:\n  " + "\n  ".join(tail), flush=True)
        log(f"FAILED: {len(failures)} problems (seed {SEED})")
        return 1
    log("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
