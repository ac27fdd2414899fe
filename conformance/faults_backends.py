"""Cases c and d of conformance/faults.py: the S3 server (SeaweedFS) stopped
and started again under a registry, and PostgreSQL stopped and started
during a stream of pushes. Both run one registry on the same real
PostgreSQL and SeaweedFS, started once for the run.
"""

import http.client
import os
import random
import re
import threading
import time

import faults_lib as lib
from faults_lib import MiB, Failed, Registry, fail, ok, sha256

S3_REPO = "faults/s3"
PG_REPO = "faults/pg"

_BACKENDS = {}
RESTARTS = 3  # PostgreSQL stops and starts in case d (each a chance to cut a transaction)


def backends(work):
    """(Postgres, Weed), started on first use and kept for the run."""
    if not _BACKENDS:
        with lib.shared():
            _BACKENDS["pg"] = lib.Postgres(work).start()
            _BACKENDS["weed"] = lib.Weed(work).start()
        lib.say(f"   PostgreSQL on 127.0.0.1:{_BACKENDS['pg'].port}, "
                f"SeaweedFS S3 on {_BACKENDS['weed'].addr}")
    return _BACKENDS["pg"], _BACKENDS["weed"]


def backend_registry(work, name):
    pg, weed = backends(work)
    args = ["--storage", weed.storage_url(), "--database", pg.url]
    return Registry(name, work, args, env=weed.env()).start(), pg, weed


def internal_details(body, pg, weed):
    """What of the backends' inner workings an error body gives away."""
    text = body.decode(errors="replace")
    leaks = [w for w in ("127.0.0.1", "os error", "error sending request", "connection refused",
                         "sqlx", "object_store", "reqwest", "hyper", "pool timed out", "Generic")
             if w.lower() in text.lower()]
    leaks += [str(p) for p in (*weed.ports, pg.port) if re.search(rf"\b{p}\b", text)]
    return leaks


def check_unavailable(case, what, status, headers, body, pg, weed):
    """503 + Retry-After, an OCI error naming `what` as unavailable, no internals."""
    problems = []
    if status != 503:
        problems.append(f"status {status}, want 503")
    if not (headers.get("retry-after") or "").isdigit():
        problems.append(f"Retry-After {headers.get('retry-after')!r}")
    err = lib.oci_error(body)
    if err is None:
        problems.append(f"body is not an OCI error: {body[:120]!r}")
    elif "unavailable" not in err[1].lower() or what not in err[1].lower():
        problems.append(f"message {err[1]!r} (code {err[0]}) does not say the {what} "
                        "is unavailable")
    leaks = internal_details(body, pg, weed)
    if leaks:
        problems.append(f"body shows internal details {leaks}: {body[:160]!r}")
    if problems:
        fail(case, "; ".join(problems))
        return False
    return True


def interrupted_pull(addr, data, weed):
    """GET a large blob, read 1 MiB, stop weed, read on. The body must be
    either whole and right, or cut short (never complete-looking but wrong).
    Returns a description of what happened, or raises Failed."""
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=lib.REQUEST_TIMEOUT)
    try:
        conn.request("GET", f"/v2/{S3_REPO}/blobs/{sha256(data)}")
        resp = conn.getresponse()
        if resp.status != 200:
            raise Failed(f"GET before the outage answered {resp.status}")
        got = resp.read(MiB)
        weed.kill()
        try:
            got += resp.read()
        except (http.client.IncompleteRead, OSError) as e:
            return f"cut short after {len(got) // MiB} MiB ({type(e).__name__})"
        if len(got) == len(data) and sha256(got) == sha256(data):
            return "whole and intact (it was through before the outage bit)"
        raise Failed(f"the pull ended normally with {len(got)} bytes hashing to "
                     f"{sha256(got)[:19]}: a wrong body that looks complete")
    except (OSError, http.client.HTTPException) as e:
        raise Failed(f"interrupted pull: {e!r}") from e
    finally:
        conn.close()


def wait_ready(addr, want, secs=60):
    """Seconds until /readyz answers `want`, or None."""
    t = time.monotonic()
    got = lib.wait_for("readyz", lambda: lib.readyz(addr, timeout=secs)[0] == want, secs)
    return time.monotonic() - t if got else None


def relaunch(weed):
    weed.remove_sockets()
    for sock in ("filer.sock", "s3.sock"):
        (weed.work / sock).unlink(missing_ok=True)
    if not weed.launch():
        raise Failed("SeaweedFS did not come back on its data dir")


def case_s3_down(work):
    reg, pg, weed = backend_registry(work, "s3")
    addr = reg.addr
    base = os.urandom(64 * MiB)
    lib.push_blob(addr, S3_REPO, base)
    small = os.urandom(4 * MiB)
    big = os.urandom(32 * MiB)

    # 1. A pull in progress when the storage goes away.
    try:
        ok("c-pull-interrupted", interrupted_pull(addr, base, weed))
    except Failed as e:
        fail("c-pull-interrupted", e)
    weed.kill()

    # 2. A fresh pull and a push while it is down.
    status, h, body = lib.request(addr, "GET", f"/v2/{S3_REPO}/blobs/{sha256(base)}")
    if check_unavailable("c-pull-down", "storage", status, h, body, pg, weed):
        ok("c-pull-down", f"503, Retry-After {h['retry-after']}, {lib.oci_error(body)[1]!r}")
    status, h, body = lib.request(addr, "POST",
                                  f"/v2/{S3_REPO}/blobs/uploads/?digest={sha256(small)}",
                                  small, lib.OCTET)
    if check_unavailable("c-push-down", "storage", status, h, body, pg, weed):
        ok("c-push-down", f"503, Retry-After {h['retry-after']}, {lib.oci_error(body)[1]!r}")
    secs = wait_ready(addr, 503)
    if secs is None:
        fail("c-readyz-down", f"/readyz never answered 503 with the storage down: "
                              f"{lib.readyz(addr)}")
    else:
        ok("c-readyz-down", f"503 after {secs:.1f} s")
    lines = reg.log_lines(r"storage (is )?unavailable")
    if lines:
        ok("c-log", lines[-1][:160])
    else:
        fail("c-log", f"no log line says the storage is unavailable: {reg.log_tail(2)}")
    n = lib.metric_value(reg.metrics(), "strata_backend_unavailable_total", {"backend": "storage"})
    if not n:
        fail("c-metric", f"strata_backend_unavailable_total{{backend=\"storage\"}} is {n}")
    else:
        ok("c-metric", f"strata_backend_unavailable_total{{backend=\"storage\"}} {n:g}")

    # 3. Back: ready again, then a push in progress when it goes away again.
    relaunch(weed)
    secs = wait_ready(addr, 200)
    if secs is None:
        fail("c-readyz-back", f"/readyz not 200 within 60 s of weed's return: {lib.readyz(addr)}")
    else:
        ok("c-readyz-back", f"200 {secs:.1f} s after weed answered again")
    st, h, body = lib.request(addr, "POST", f"/v2/{S3_REPO}/blobs/uploads/")
    if st != 202:
        raise Failed(f"c: POST with the storage back: {lib.describe(st, body)}")
    put = lib.with_query(lib.location(h, addr), f"digest={sha256(big)}")
    status, h, body, sent = lib.stream_request(addr, "PUT", put, lib.pieces(big), lib.OCTET,
                                               length=len(big), after_bytes=(8 * MiB, weed.kill))
    if check_unavailable("c-push-interrupted", "storage", status, h, body, pg, weed):
        ok("c-push-interrupted", f"weed stopped after 8 MiB of a 32 MiB PUT: 503 "
                                 f"({sent // MiB} MiB sent)")

    # 4. Nothing visible that is not fully stored; then everything works again.
    relaunch(weed)
    if wait_ready(addr, 200) is None:
        fail("c-readyz-back", "/readyz not 200 within 60 s of weed's second return")
    visible = []
    for data in (small, big):
        st, _, _ = lib.request(addr, "HEAD", f"/v2/{S3_REPO}/blobs/{sha256(data)}")
        if st == 200:
            err = lib.check_blob(addr, S3_REPO, data)
            if err:
                visible.append(err)
        elif st != 404:
            visible.append(f"HEAD {sha256(data)[:19]} answered {st}")
    if visible:
        fail("c-no-partial-blob", f"a failed push is visible but not whole: {visible}")
    else:
        ok("c-no-partial-blob", "the failed pushes are absent or whole")
    try:
        for data in (small, big):
            lib.push_blob(addr, S3_REPO, data)
        bad = [e for e in (lib.check_blob(addr, S3_REPO, d) for d in (base, small, big)) if e]
        if bad:
            fail("c-pushes-work", bad)
        else:
            ok("c-pushes-work", "the failed pushes retried: 201; 3 blobs intact")
    except Failed as e:
        fail("c-pushes-work", e)
    reg.stop()
    fsck("c-fsck", pg, weed)


def fsck(case, pg, weed):
    rc, out = lib.run_registry_cmd(["fsck", "--storage", weed.storage_url(), "--database",
                                    pg.url], env=weed.env())
    if rc != 0:
        fail(case, f"fsck exit {rc}: {' | '.join(out.strip().splitlines()[-4:])}")
    else:
        ok(case, "clean")


class Pusher(threading.Thread):
    """Pushes blobs and (every third push) tagged manifests until stopped;
    records every answer."""

    def __init__(self, idx, addr, stop):
        super().__init__(daemon=True)
        self.idx, self.addr, self.stop = idx, addr, stop
        self.rng = random.Random(idx)
        self.config = b'{"architecture":"amd64","os":"linux","worker":%d}' % idx
        self.acked_blobs, self.acked_tags, self.failed, self.errors = [], [], [], []

    def push(self, kind, key, payload):
        """One attempt: the status (None on a transport error)."""
        if kind == "blob":
            path = f"/v2/{PG_REPO}/blobs/uploads/?digest={sha256(payload)}"
            hdrs = lib.OCTET
        else:
            path = f"/v2/{PG_REPO}/manifests/{key}"
            hdrs = {"Content-Type": lib.OCI_MANIFEST}
        try:
            status, h, body = lib.request(self.addr, "POST" if kind == "blob" else "PUT", path,
                                          payload, hdrs)
        except Failed as e:
            self.errors.append(str(e))
            return None, {}, b""
        return status, h, body

    def run(self):
        n = 0
        status, _, body = self.push("blob", None, self.config)
        if status != 201:
            self.errors.append(f"config push before the restart: {status} {body[:100]!r}")
            return
        while not self.stop.is_set():
            n += 1
            if n % 3 == 0:
                layers = [(lib.OCI_LAYER_TAR, self.acked_blobs[-1])] if self.acked_blobs else []
                kind, key = "manifest", f"w{self.idx}-{n}"
                payload = lib.image_manifest(self.config, layers)
            else:
                kind, key = "blob", None
                payload = os.urandom(self.rng.randint(64 * 1024, 512 * 1024))
            status, h, body = self.push(kind, key, payload)
            if status == 201:
                (self.acked_blobs if kind == "blob" else self.acked_tags).append(
                    payload if kind == "blob" else (key, payload))
            elif status is not None:
                self.failed.append((kind, key, payload, status, h, body))


def case_postgres_restart(work):
    reg, pg, weed = backend_registry(work, "pg")
    addr = reg.addr
    stop = threading.Event()
    pushers = [Pusher(i, addr, stop) for i in range(6)]
    for p in pushers:
        p.start()
    time.sleep(1.5)
    for _ in range(RESTARTS):
        pg.down()
        time.sleep(2)
        if not pg.up():
            raise Failed("PostgreSQL did not start again")
        time.sleep(1.5)
    stop.set()
    for p in pushers:
        p.join(lib.REQUEST_TIMEOUT + 10)

    acked = sum(len(p.acked_blobs) + len(p.acked_tags) for p in pushers)
    failed = [f for p in pushers for f in p.failed]
    errors = [e for p in pushers for e in p.errors]
    statuses = sorted({f[3] for f in failed})
    lib.say(f"   {acked} pushes acknowledged, {len(failed)} refused (statuses {statuses}), "
            f"{len(errors)} transport errors")
    if errors:
        fail("d-no-transport-errors", f"{len(errors)}, first: {errors[0]}")
    good = True
    for kind, key, _, status, h, body in failed:
        if not check_unavailable("d-refusals", "database", status, h, body, pg, weed):
            good = False
            break
    if good:
        ok("d-refusals", f"all {len(failed)} refused pushes: 503 naming the database")

    # Acknowledged pushes are intact.
    bad = []
    for p in pushers:
        bad += [e for e in (lib.check_blob(addr, PG_REPO, b) for b in p.acked_blobs) if e]
        for tag, manifest in p.acked_tags:
            st, h, body = lib.request(addr, "GET", f"/v2/{PG_REPO}/manifests/{tag}",
                                      headers={"Accept": lib.OCI_MANIFEST})
            if st != 200 or body != manifest:
                bad.append(f"tag {tag}: {lib.describe(st, body)}")
    if bad:
        fail("d-acked-intact", f"{len(bad)} acknowledged pushes damaged, first: {bad[0]}")
    else:
        ok("d-acked-intact", f"{acked} acknowledged pushes read back intact")

    # Each refused push succeeds when retried.
    leftovers = []
    deadline = time.monotonic() + 60
    for kind, key, payload, *_ in failed:
        pusher = pushers[0]
        while True:
            status, _, body = pusher.push(kind, key, payload)
            if status == 201 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if status != 201:
            leftovers.append(f"{kind} {key or sha256(payload)[:19]}: {status} {body[:100]!r}")
    if leftovers:
        fail("d-retries", f"{len(leftovers)} retries failed, first: {leftovers[0]}")
    else:
        ok("d-retries", f"all {len(failed)} refused pushes succeeded when retried")
    if failed:
        n = lib.metric_value(reg.metrics(), "strata_backend_unavailable_total",
                             {"backend": "database"})
        if not n:
            fail("d-metric", f"strata_backend_unavailable_total{{backend=\"database\"}} is {n}")
        else:
            ok("d-metric", f"strata_backend_unavailable_total{{backend=\"database\"}} {n:g}")
    status, _ = lib.readyz(addr)
    if status != 200:
        fail("d-readyz", f"/readyz {status} after PostgreSQL is back")
    reg.stop()
    fsck("d-fsck", pg, weed)

