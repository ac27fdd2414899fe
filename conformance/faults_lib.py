"""Harness for conformance/faults.py: cleanup, tmpfs mounts, processes,
HTTP on loopback, and the real PostgreSQL and SeaweedFS that the
S3/PostgreSQL cases run against (the same way conformance/scaleout.sh
starts them).

Everything started here is recorded and stopped by PID; everything mounted
is unmounted; both also when the script fails or is interrupted.
"""

import atexit
import hashlib
import http.client
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REGISTRY_BIN = os.environ.get("REGISTRY_BIN", str(ROOT / "target/release/registry"))
RUNNER_BIN = os.environ.get("RUNNER_BIN", str(ROOT / "target/release/runner"))
WEED = str(ROOT / ".tools/bin/weed")
REQUEST_TIMEOUT = 60.0
MiB = 1024 * 1024

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCTET = {"Content-Type": "application/octet-stream"}

FAILURES = []
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def say(msg):
    print(f"faults.py: {msg}", flush=True)


def fail(case, msg):
    """One failed check: one line."""
    FAILURES.append(case)
    say(f"FAIL {case}: {' '.join(str(msg).split())}")


def ok(case, msg):
    say(f"ok   {case}: {msg}")


class Failed(Exception):
    """A check failed that the rest of its case depends on."""


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---- cleanup -------------------------------------------------------------------

_CLEANUPS = []  # (scope, fn): "case" ones run when the case ends, "run" ones at exit
_CLEANUP_LOCK = threading.Lock()
_SCOPE = ["case"]


def on_cleanup(fn):
    """Run `fn` when the current case ends (or, inside `shared()`, at exit),
    last registered first; also after a failure or a signal."""
    with _CLEANUP_LOCK:
        _CLEANUPS.append((_SCOPE[-1], fn))
    return fn


class shared:
    """`with shared():` what is started inside lives until the run ends
    (the PostgreSQL and SeaweedFS that cases c and d share)."""

    def __enter__(self):
        _SCOPE.append("run")

    def __exit__(self, *_):
        _SCOPE.pop()


def _run(which):
    while True:
        with _CLEANUP_LOCK:
            picked = [i for i, (scope, _) in enumerate(_CLEANUPS) if scope in which]
            if not picked:
                return
            _, fn = _CLEANUPS.pop(picked[-1])
        try:
            fn()
        except Exception as e:  # keep cleaning up the rest
            say(f"cleanup error: {e!r}")


def run_cleanups_of_case():
    _run(("case",))


def run_cleanups():
    _run(("case", "run"))


def _on_signal(signum, _frame):
    say(f"signal {signum}: cleaning up")
    run_cleanups()
    sys.exit(128 + signum)


atexit.register(run_cleanups)
signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGINT, _on_signal)


RESULTS = ROOT / "conformance/results-faults"


def work_dir():
    """A private temp dir for this run, removed at exit (after the unmounts);
    its logs are copied to conformance/results-faults/ first."""
    d = Path(tempfile.mkdtemp(prefix="strata-faults."))
    os.chmod(d, 0o711)  # the postgres user must reach its cluster dir inside
    shutil.rmtree(RESULTS, ignore_errors=True)
    RESULTS.mkdir(parents=True)

    def remove():
        for log in [*d.glob("*.log"), d / "pg/server.log"]:
            if log.is_file():
                shutil.copy(log, RESULTS / log.name)
        shutil.rmtree(d, ignore_errors=True)

    with shared():
        on_cleanup(remove)
    return d


# ---- tmpfs -----------------------------------------------------------------------


class Tmpfs:
    """A small tmpfs mounted at `path` (created), unmounted at cleanup."""

    def __init__(self, path, size_mib, mode="0700"):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode={mode}",
                        "tmpfs", str(self.path)], check=True)
        self.mounted = True
        on_cleanup(self.umount)

    def umount(self):
        if not self.mounted:
            return
        if subprocess.run(["umount", str(self.path)], stderr=subprocess.DEVNULL).returncode != 0:
            # Something still holds it open (a process that is being reaped).
            time.sleep(1)
            if subprocess.run(["umount", str(self.path)]).returncode != 0:
                subprocess.run(["umount", "-l", str(self.path)])
        self.mounted = False

    def free(self):
        """Bytes available to unprivileged writers (what the registry sees)."""
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def total(self):
        st = os.statvfs(self.path)
        return st.f_blocks * st.f_frsize

    def used(self):
        return self.total() - self.free()

    def ballast(self, name, size):
        """A file of `size` bytes on this filesystem, to take space and free it later."""
        p = self.path / name
        with open(p, "wb") as f:
            left = size
            block = b"\0" * MiB
            while left > 0:
                n = min(left, len(block))
                f.write(block[:n])
                left -= n
        return p

    def fill_to(self, name, free_bytes):
        """A ballast file that leaves about `free_bytes` free."""
        size = self.free() - free_bytes
        if size <= 0:
            raise Failed(f"{self.path}: only {self.free()} bytes free, cannot leave {free_bytes}")
        return self.ballast(name, size)


# ---- processes -------------------------------------------------------------------


def pdeath(argv):
    """Under setpriv the child gets SIGKILL should this script die without
    cleaning up (setpriv execs, so the PID stays the child's)."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--", *argv] if setpriv else list(argv)


def stop_pid(proc, secs=10):
    """SIGTERM by PID, SIGKILL after `secs`, reaped."""
    if proc is None or proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(secs)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def free_ports(n):
    """`n` distinct free loopback ports below the kernel's ephemeral range, so
    no outgoing connection (ours or a server's) takes one between this pick
    and the server's listen. A trial bind without SO_REUSEADDR fails on any
    socket using the port, a client's TIME_WAIT included."""
    try:
        lo, hi = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        lo, hi = 32768, 60999
    span = range(10000, lo) if lo > 15000 else range(hi + 1, 65536)
    ports, socks = [], []
    try:
        for port in random.sample(span, len(span)):
            if len(ports) == n:
                return ports
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            socks.append(s)
            ports.append(port)
    finally:
        for s in socks:
            s.close()
    raise Failed(f"no {n} free loopback ports")


class Registry:
    """One `registry serve --listen 127.0.0.1:0 ARGS` process."""

    def __init__(self, name, work, args, env=None):
        self.name = name
        self.log_path = Path(work) / f"{name}.log"
        self.args = list(args)
        self.env = dict(os.environ, **(env or {}))
        self.proc = None
        self.addr = None
        on_cleanup(self.stop)

    def start(self):
        logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            pdeath([REGISTRY_BIN, "serve", "--listen", "127.0.0.1:0", *self.args]),
            stdout=subprocess.PIPE, stderr=logf, stdin=subprocess.DEVNULL, env=self.env)
        logf.close()
        found = []

        def reader():
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace").strip()
                if line.startswith("listening on ") and not found:
                    found.append(line[len("listening on "):])

        threading.Thread(target=reader, daemon=True).start()
        deadline = time.monotonic() + 60
        while not found and time.monotonic() < deadline and self.proc.poll() is None:
            time.sleep(0.05)
        if not found:
            code = self.proc.poll()
            stop_pid(self.proc)
            raise Failed(f"registry {self.name} did not start (exit {code}); "
                         f"log: {self.log_tail()}")
        self.addr = found[0]
        return self

    def stop(self):
        stop_pid(self.proc)

    def log_text(self):
        """The log, without terminal colours."""
        try:
            return ANSI.sub("", self.log_path.read_text(errors="replace"))
        except OSError:
            return ""

    def log_tail(self, n=5):
        return " | ".join(line[:300] for line in self.log_text().strip().splitlines()[-n:])

    def log_lines(self, pattern):
        rx = re.compile(pattern, re.I)
        return [line for line in self.log_text().splitlines() if rx.search(line)]

    def metrics(self):
        status, _, body = request(self.addr, "GET", "/metrics")
        if status != 200:
            raise Failed(f"/metrics answered {status}")
        return body.decode()

    def metric(self, name):
        """Sum of every sample of `name` (any labels); None when absent."""
        return metric_value(self.metrics(), name)


def metric_value(text, name, labels=None):
    total, seen = 0.0, False
    rx = re.compile(r"^" + re.escape(name) + r"(\{[^}]*\})?\s+(\S+)")
    for line in text.splitlines():
        m = rx.match(line)
        if m and (labels is None or all(f'{k}="{v}"' in (m.group(1) or "")
                                        for k, v in labels.items())):
            total += float(m.group(2))
            seen = True
    return total if seen else None


def run_registry_cmd(args, env=None, timeout=300):
    """`registry ARGS` (gc, fsck): (exit code, stdout + stderr)."""
    p = subprocess.run(pdeath([REGISTRY_BIN, *args]), capture_output=True, timeout=timeout,
                       env=dict(os.environ, **(env or {})), stdin=subprocess.DEVNULL)
    return p.returncode, (p.stdout + p.stderr).decode(errors="replace")


# ---- HTTP ------------------------------------------------------------------------


def request(addr, method, path, body=b"", headers=None, timeout=REQUEST_TIMEOUT):
    """One request on a fresh connection: (status, lower-case headers, body).
    A transport error or a timeout raises Failed. Large bodies are streamed,
    so an early answer (the server failing before it read them) is seen."""
    if len(body) > 256 * 1024:
        status, h, data, _ = stream_request(addr, method, path, pieces(body), headers,
                                            length=len(body), timeout=timeout)
        return status, h, data
    conn = http.client.HTTPConnection(addr, timeout=timeout)
    hdrs = {"Content-Length": str(len(body))}
    hdrs.update(headers or {})
    try:
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    except (OSError, http.client.HTTPException) as e:
        raise Failed(f"{method} {path}: transport error: {e!r}") from e
    finally:
        conn.close()


def stream_request(addr, method, path, chunks, headers=None, length=None,
                   timeout=REQUEST_TIMEOUT, after_bytes=None):
    """Sends a request whose body comes from the iterable `chunks` (with
    Content-Length `length`, or chunked when None) and stops sending as soon
    as the server answers (as it does when it fails early). `after_bytes`
    is (n, fn): `fn()` runs once n body bytes are sent. Returns
    (status, lower-case headers, body, bytes sent)."""
    host, port = addr.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    head = [f"{method} {path} HTTP/1.1", f"Host: {addr}", "Connection: close"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    head.append(f"Content-Length: {length}" if length is not None
                else "Transfer-Encoding: chunked")
    sent, answered, hook = 0, False, after_bytes
    try:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        for chunk in chunks:
            if select.select([sock], [], [], 0)[0]:
                answered = True
                break
            frame = chunk if length is not None else b"%x\r\n%s\r\n" % (len(chunk), chunk)
            sock.sendall(frame)
            sent += len(chunk)
            if hook is not None and sent >= hook[0]:
                hook[1]()
                hook = None
        if not answered and length is None:
            sock.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered and closed; read what it said
    except OSError as e:
        sock.close()
        raise Failed(f"{method} {path}: transport error after {sent} bytes: {e!r}") from e
    resp = http.client.HTTPResponse(sock, method=method)
    try:
        resp.begin()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data, sent
    except (OSError, http.client.HTTPException) as e:
        raise Failed(f"{method} {path}: no answer after {sent} body bytes: {e!r}") from e
    finally:
        resp.close()
        sock.close()


def pieces(data, size=256 * 1024):
    for i in range(0, len(data), size):
        yield data[i:i + size]


def location(headers, addr=None):
    loc = headers.get("location", "")
    if loc.startswith("http://") and addr:
        loc = loc.split(addr, 1)[-1]
    return loc


def with_query(path, query):
    return path + ("&" if "?" in path else "?") + query


def oci_error(body):
    """(code, message, detail) of an OCI error body, or None when it is not one."""
    try:
        e = json.loads(body)["errors"][0]
        return e.get("code"), e.get("message") or "", e.get("detail") or ""
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def describe(status, body):
    return f"{status} {body[:200].decode(errors='replace')!r}"


def push_blob(addr, repo, data):
    """A monolithic push (POST with ?digest=); raises Failed unless 201."""
    status, _, body = request(addr, "POST", f"/v2/{repo}/blobs/uploads/?digest={sha256(data)}",
                              data, OCTET)
    if status != 201:
        raise Failed(f"push of {len(data)} bytes to {repo}: {describe(status, body)}")
    return sha256(data)


def image_manifest(config, layers):
    """(bytes) of an OCI image manifest for a config blob and (media type, blob) layers."""
    return json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": mt, "digest": sha256(b), "size": len(b)} for mt, b in layers],
    }).encode()


def check_blob(addr, repo, data):
    """None when GET returns exactly `data`, else what went wrong."""
    try:
        status, _, body = request(addr, "GET", f"/v2/{repo}/blobs/{sha256(data)}")
    except Failed as e:
        return str(e)
    if status != 200:
        return f"GET {sha256(data)[:19]}: {describe(status, body)}"
    if sha256(body) != sha256(data):
        return f"GET {sha256(data)[:19]}: {len(body)} bytes hashing to {sha256(body)[:19]}"
    return None


def wait_for(what, fn, secs):
    """Polls `fn` until it returns a true value (returned) or `secs` pass (None)."""
    deadline = time.monotonic() + secs
    while True:
        try:
            v = fn()
        except Failed:
            v = None
        if v:
            return v
        if time.monotonic() > deadline:
            return None
        time.sleep(0.2)


def readyz(addr, timeout=REQUEST_TIMEOUT):
    status, _, body = request(addr, "GET", "/readyz", timeout=timeout)
    return status, body.decode(errors="replace")


# ---- PostgreSQL and SeaweedFS ----------------------------------------------------


def pg_bin():
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    if not bins:
        raise Failed("PostgreSQL binaries not found under /usr/lib/postgresql")
    return bins[-1]


class Postgres:
    """A temp cluster owned by `postgres`, TCP on 127.0.0.1 only, a `strata` database."""

    def __init__(self, work):
        self.bin = pg_bin()
        self.dir = Path(work) / "pg"
        self.data = self.dir / "data"
        self.password = os.urandom(16).hex()
        self.started = False
        self.port = None
        on_cleanup(self.stop)

    def pg_ctl(self, *args, check=True):
        return subprocess.run(["runuser", "-u", "postgres", "--", str(self.bin / "pg_ctl"),
                               "-D", str(self.data), *args],
                              capture_output=True, check=check, timeout=120)

    def start(self):
        self.dir.mkdir(parents=True)
        (self.dir / "pwfile").write_text(self.password + "\n")
        subprocess.run(["chown", "-R", "postgres:postgres", str(self.dir)], check=True)
        os.chmod(self.dir, 0o700)
        subprocess.run(["runuser", "-u", "postgres", "--", str(self.bin / "initdb"), "-D",
                        str(self.data), "-U", "strata", f"--pwfile={self.dir / 'pwfile'}",
                        "-A", "scram-sha-256", "-E", "UTF8", "--no-sync"],
                       capture_output=True, check=True, timeout=120)
        for _ in range(3):
            self.port = free_ports(1)[0]
            if self.up():
                break
        if not self.started:
            raise Failed("PostgreSQL did not start")
        subprocess.run([str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
                        "strata", "-d", "postgres", "-qAt", "-c", "CREATE DATABASE strata"],
                       env=dict(os.environ, PGPASSWORD=self.password), check=True,
                       capture_output=True, timeout=60)
        return self

    def up(self):
        r = self.pg_ctl("-l", str(self.dir / "server.log"), "-w", "-t", "60", "-o",
                        f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir}", "start",
                        check=False)
        self.started = r.returncode == 0
        return self.started

    def down(self):
        self.pg_ctl("-m", "fast", "-w", "-t", "60", "stop", check=False)
        self.started = False

    def stop(self):
        if self.started:
            self.down()

    @property
    def url(self):
        return f"postgres://strata:{self.password}@127.0.0.1:{self.port}/strata"


class Weed:
    """`weed server` with S3 on loopback ports, telemetry off, one identity, one bucket."""

    BUCKET = "strata"

    def __init__(self, work):
        self.work = Path(work)
        self.dir = self.work / "weed"
        self.key = "strata-faults"
        self.secret = os.urandom(16).hex()
        self.proc = None
        self.ports = []
        on_cleanup(self.stop)
        on_cleanup(self.remove_sockets)

    def s3(self, *args):
        """A SigV4-signed curl request to the S3 server; prints the status code."""
        r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time",
                            "5", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user",
                            f"{self.key}:{self.secret}", "-H",
                            "x-amz-content-sha256: UNSIGNED-PAYLOAD", *args],
                           capture_output=True, timeout=30)
        return r.stdout.decode().strip()

    def start(self):
        (self.work / "s3.json").write_text(json.dumps({"identities": [{
            "name": "strata",
            "credentials": [{"accessKey": self.key, "secretKey": self.secret}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        for _ in range(3):
            self.ports = free_ports(8)
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir.mkdir()
            if self.launch(create_bucket=True):
                return self
            self.stop()
        raise Failed("SeaweedFS did not start")

    def launch(self, create_bucket=False, secs=90):
        """Starts weed on the chosen ports and data dir; True once an object
        can be written into the bucket."""
        p = self.ports
        with open(self.work / "weed.log", "ab") as logf:
            self.proc = subprocess.Popen(pdeath([
                WEED, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={self.dir}",
                "-master.telemetry=false", f"-master.port={p[0]}", f"-master.port.grpc={p[1]}",
                f"-volume.port={p[2]}", f"-volume.port.grpc={p[3]}", f"-filer.port={p[4]}",
                f"-filer.port.grpc={p[5]}", f"-filer.localSocket={self.work / 'filer.sock'}",
                "-s3", f"-s3.port={p[6]}", f"-s3.port.grpc={p[7]}",
                f"-s3.localSocket={self.work / 's3.sock'}", "-s3.port.iceberg=0",
                "-s3.port.lance=0", f"-s3.config={self.work / 's3.json'}", "-volume.max=16",
                "-master.volumeSizeLimitMB=1024"]), stdout=logf, stderr=logf,
                stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + secs
        while time.monotonic() < deadline and self.proc.poll() is None:
            if create_bucket:
                code = self.s3("-X", "PUT", f"http://{self.addr}/{self.BUCKET}")
                create_bucket = code not in ("200", "409")
            if not create_bucket and self.s3("-X", "PUT", "--data-binary", "probe",
                                             f"http://{self.addr}/{self.BUCKET}/probe") == "200":
                self.s3("-X", "DELETE", f"http://{self.addr}/{self.BUCKET}/probe")
                return True
            time.sleep(0.2)
        return False

    def kill(self):
        """Stops the server by PID (SIGTERM, SIGKILL after 3 s: weed often
        takes 10 s to shut down)."""
        stop_pid(self.proc, 3)
        self.proc = None

    def stop(self):
        self.kill()

    def remove_sockets(self):
        # weed puts gRPC unix sockets in /tmp, named by our ports, and leaves some.
        for port in self.ports:
            for role in ("master", "volume", "filer", "s3"):
                Path(f"/tmp/seaweedfs-{role}-grpc-{port}.sock").unlink(missing_ok=True)

    @property
    def addr(self):
        return f"127.0.0.1:{self.ports[6]}"

    def env(self):
        return {"AWS_ENDPOINT": f"http://{self.addr}", "AWS_REGION": "us-east-1",
                "AWS_ALLOW_HTTP": "true", "AWS_ACCESS_KEY_ID": self.key,
                "AWS_SECRET_ACCESS_KEY": self.secret}

    def storage_url(self):
        return f"s3://{self.BUCKET}/registry"
