#!/usr/bin/env python3
"""Fault tests: a full disk, low space, an S3 outage, a PostgreSQL restart,
and a full runner root; the registry tells the truth and heals (issue 14).

Real parts only: tmpfs mounts (root), the release `registry` and `runner`
binaries, Debian's PostgreSQL and SeaweedFS (`weed`, scripts/install-deps.sh),
all on 127.0.0.1.

  a  full disk: --data on a 96 MiB tmpfs; a blob larger than the free space,
     pushed monolithically (POST with body; POST + PUT) and chunked (POST +
     PATCH + PATCH + too big a PATCH): 507 with an OCI error saying the
     storage is full, a log line and strata_storage_full_total; the staging
     bytes are released at once (the chunked upload keeps its acknowledged
     chunks and completes once ballast is deleted); earlier blobs intact; the
     next push that fits succeeds; `registry fsck` is clean. The default
     reserve on this disk is 5% of it (under 1 GiB).
  b  low-space reserve (STRATA_FREE_SPACE_RESERVE=32 MiB): under the reserve a
     new upload (POST) is refused with 507 while an upload in flight and a
     manifest still finish; /readyz stays 200 but says "low space";
     /metrics has strata_storage_free_bytes and strata_storage_reserve_bytes;
     once space is freed a POST is accepted again.
  c  S3 down: one registry on SeaweedFS + PostgreSQL; weed stopped (by PID)
     during a pull and during a push: 503 + Retry-After naming the storage as
     unavailable, no internal details; /readyz 503; weed started again on the
     same dir: /readyz 200 and pushes work; no blob visible that is not
     fully stored; fsck clean.
  d  PostgreSQL stopped and started 3 times during a stream of pushes (6 clients):
     every acknowledged push is intact, every other answer is 503 +
     Retry-After naming the database, and each retry succeeds; fsck clean.
  e  `runner pull` into a full state root (a tmpfs with ballast): a one-line
     "no space left on device" error naming the root, non-zero exit, nothing
     partial left under the root, `runner images` works, and the pull
     succeeds once the ballast is deleted.

Usage: faults.py [CASE...]   (default: a b c d e)

Environment: REGISTRY_BIN, RUNNER_BIN (default target/release/{registry,runner}).
Each failed check prints one line "faults.py: FAIL CASE: ..."; exit 1 if any.
No timing assertions: deadlines only keep a broken registry from hanging the run.
"""

import os
import sys
import time

import faults_lib as lib
import faults_backends
import faults_runner
from faults_lib import MiB, Failed, Registry, Tmpfs, fail, ok, sha256

FULL_REPO = "faults/full"


def check_full(case, status, headers, body):
    """507 with an OCI error whose message says the storage is full."""
    problems = []
    if status != 507:
        problems.append(f"status {status}, want 507")
    err = lib.oci_error(body)
    if err is None:
        problems.append(f"body is not an OCI error: {body[:120]!r}")
    elif "full" not in err[1].lower() or "storage" not in err[1].lower():
        problems.append(f"message {err[1]!r} (code {err[0]}) does not say the storage is full")
    if problems:
        fail(case, "; ".join(problems))
        return False
    return True


def check_released(case, fs, free_before, what):
    """The failed upload's bytes are gone: free space is back (1 MiB slack)."""
    lost = free_before - fs.free()
    if lost > MiB:
        fail(case, f"{lost / MiB:.1f} MiB less free after the failed {what} than before it: "
                   "its staging bytes were kept")
        return False
    return True


def start_upload(addr, repo):
    status, h, body = lib.request(addr, "POST", f"/v2/{repo}/blobs/uploads/")
    if status != 202:
        raise Failed(f"POST upload: {lib.describe(status, body)}")
    return lib.location(h, addr)


def monolithic_full(fs, addr, variant):
    """A monolithic push bigger than the free space: 507, bytes released."""
    case = f"a-monolithic-{variant}"
    free = fs.free()
    big = os.urandom(free + 16 * MiB)
    if variant == "post":
        path = f"/v2/{FULL_REPO}/blobs/uploads/?digest={sha256(big)}"
        method = "POST"
    else:
        path = lib.with_query(start_upload(addr, FULL_REPO), f"digest={sha256(big)}")
        method = "PUT"
    status, h, body, sent = lib.stream_request(addr, method, path, lib.pieces(big),
                                               lib.OCTET, length=len(big))
    good = check_full(case, status, h, body)
    good &= check_released(case, fs, free, f"{method} of {len(big) // MiB} MiB")
    st, _, _ = lib.request(addr, "HEAD", f"/v2/{FULL_REPO}/blobs/{sha256(big)}")
    if st != 404:
        fail(case, f"HEAD of the refused blob answered {st}, want 404")
        good = False
    if good:
        ok(case, f"{method} of {len(big) // MiB} MiB into {free // MiB} MiB free: 507, "
                 f"staging released ({sent // MiB} MiB sent before the answer)")


def case_full_disk(work):
    fs = Tmpfs(work / "full", 96)
    data = fs.path / "data"
    reg = Registry("full-disk", work, ["--data", str(data)]).start()
    addr = reg.addr
    ballast = fs.ballast("ballast", 24 * MiB)
    earlier = [os.urandom(n) for n in (MiB, 2 * MiB + 5, 300_000)]
    for b in earlier:
        lib.push_blob(addr, FULL_REPO, b)

    # The default reserve on a small disk: 5% of it (1 GiB is more).
    want = min(1 << 30, fs.total() * 5 // 100)
    got = reg.metric("strata_storage_reserve_bytes")
    if got is None or abs(got - want) > 4096:
        fail("a-default-reserve", f"strata_storage_reserve_bytes {got}, want {want} "
                                  f"(5% of the {fs.total() // MiB} MiB disk)")
    else:
        ok("a-default-reserve", f"{int(got)} bytes (5% of {fs.total() // MiB} MiB)")

    # Monolithic: POST with the whole body, then POST + PUT.
    for variant in ("post", "put"):
        try:
            monolithic_full(fs, addr, variant)
        except Failed as e:
            fail(f"a-monolithic-{variant}", e)

    lines = reg.log_lines(r"storage (is )?full")
    if lines:
        ok("a-log", lines[-1][:160])
    else:
        fail("a-log", f"no log line says the storage is full; last lines: {reg.log_tail(3)}")
    n = reg.metric("strata_storage_full_total")
    if not n or n < 2:
        fail("a-metric", f"strata_storage_full_total is {n}, want >= 2 after two refused pushes")
    else:
        ok("a-metric", f"strata_storage_full_total {n:g}")

    status, _, _ = lib.request(addr, "GET", "/v2/")
    bad = [e for e in (lib.check_blob(addr, FULL_REPO, b) for b in earlier) if e]
    if status != 200 or bad:
        fail("a-still-serving", f"GET /v2/ {status}; earlier blobs: {bad}")
    else:
        ok("a-still-serving", f"/v2/ 200, {len(earlier)} earlier blobs intact")

    fits = os.urandom(8 * MiB)
    try:
        lib.push_blob(addr, FULL_REPO, fits)
        ok("a-next-push", "an 8 MiB push right after the failures: 201")
    except Failed as e:
        fail("a-next-push", f"{e} (free now {fs.free() // MiB} MiB)")

    try:
        chunked_full(fs, reg, ballast)
    except Failed as e:
        fail("a-chunked", e)

    reg.stop()
    rc, out = lib.run_registry_cmd(["fsck", "--data", str(data)])
    if rc != 0:
        fail("a-fsck", f"fsck exit {rc}: {' | '.join(out.strip().splitlines()[-4:])}")
    else:
        ok("a-fsck", "clean")


def chunked_full(fs, reg, ballast):
    """POST + 2 PATCHes acknowledged + a PATCH too big for the disk: 507, the
    session keeps the acknowledged bytes; with ballast gone it completes."""
    case = "a-chunked"
    addr = reg.addr
    loc = start_upload(addr, FULL_REPO)
    acked = b""
    for _ in range(2):
        chunk = os.urandom(4 * MiB)
        rng = f"{len(acked)}-{len(acked) + len(chunk) - 1}"
        status, h, body = lib.request(addr, "PATCH", loc, chunk,
                                      {**lib.OCTET, "Content-Range": rng})
        if status != 202:
            raise Failed(f"{case}: PATCH {rng}: {lib.describe(status, body)}")
        loc = lib.location(h, addr)
        acked += chunk
    free = fs.free()
    rest = os.urandom(free + 8 * MiB)
    rng = f"{len(acked)}-{len(acked) + len(rest) - 1}"
    status, h, body, _ = lib.stream_request(addr, "PATCH", loc, lib.pieces(rest),
                                            {**lib.OCTET, "Content-Range": rng},
                                            length=len(rest))
    good = check_full(case, status, h, body)
    good &= check_released(case, fs, free, f"PATCH of {len(rest) // MiB} MiB")
    status, h, body = lib.request(addr, "GET", loc)
    want = f"0-{len(acked) - 1}"
    if status != 204 or h.get("range") != want:
        fail(case, f"after the refused PATCH the session answers {status} Range "
                   f"{h.get('range')}, want 204 Range {want} (the acknowledged chunks)")
        good = False
    ballast.unlink()
    status, h, body = lib.request(addr, "PATCH", loc, rest, {**lib.OCTET, "Content-Range": rng})
    if status != 202:
        fail(case, f"PATCH {rng} once space was freed: {lib.describe(status, body)}")
        return
    loc = lib.location(h, addr)
    whole = acked + rest
    status, _, body = lib.request(addr, "PUT", lib.with_query(loc, f"digest={sha256(whole)}"))
    if status != 201:
        fail(case, f"PUT to finish once space was freed: {lib.describe(status, body)}")
        return
    err = lib.check_blob(addr, FULL_REPO, whole)
    if err:
        fail(case, err)
    elif good:
        ok(case, f"8 MiB acknowledged, a {len(rest) // MiB} MiB PATCH refused with 507 and "
                 f"released; ballast deleted: completed, {len(whole) // MiB} MiB intact")


def case_reserve(work):
    reserve = 32 * MiB
    fs = Tmpfs(work / "reserve", 96)
    data = fs.path / "data"
    reg = Registry("reserve", work, ["--data", str(data)],
                   env={"STRATA_FREE_SPACE_RESERVE": str(reserve)}).start()
    addr = reg.addr
    repo = "faults/reserve"
    text = reg.metrics()
    got = lib.metric_value(text, "strata_storage_reserve_bytes")
    free_gauge = lib.metric_value(text, "strata_storage_free_bytes")
    if got != reserve:
        fail("b-metrics", f"strata_storage_reserve_bytes {got}, want {reserve} "
                          "(STRATA_FREE_SPACE_RESERVE)")
    if free_gauge is None or abs(free_gauge - fs.free()) > 4 * MiB:
        fail("b-metrics", f"strata_storage_free_bytes {free_gauge}, statvfs says {fs.free()}")
    elif got == reserve:
        ok("b-metrics", f"reserve {reserve} bytes, free {int(free_gauge)} bytes")

    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    lib.push_blob(addr, repo, config)
    inflight = start_upload(addr, repo)
    part1 = os.urandom(MiB)
    status, h, body = lib.request(addr, "PATCH", inflight, part1,
                                  {**lib.OCTET, "Content-Range": f"0-{MiB - 1}"})
    if status != 202:
        raise Failed(f"b: PATCH before the ballast: {lib.describe(status, body)}")
    inflight = lib.location(h, addr)
    refused_before = reg.metric("strata_storage_full_total") or 0

    ballast = fs.fill_to("ballast", 16 * MiB)
    status, h, body = lib.request(addr, "POST", f"/v2/{repo}/blobs/uploads/")
    good = check_full("b-post-refused", status, h, body)
    small = os.urandom(65536)
    status, h, body = lib.request(addr, "POST", f"/v2/{repo}/blobs/uploads/?digest={sha256(small)}",
                                  small, lib.OCTET)
    good &= check_full("b-post-refused", status, h, body)
    if good:
        ok("b-post-refused", f"{fs.free() // MiB} MiB free under a {reserve // MiB} MiB reserve: "
                             "POST and monolithic POST answer 507")
    refused = reg.metric("strata_storage_full_total") or 0
    if refused < refused_before + 2:
        fail("b-post-refused", f"strata_storage_full_total {refused:g} did not count the refusals")
    lines = reg.log_lines(r"below the reserve")
    if not lines:
        fail("b-log", "no log line says free space is below the reserve; last lines: "
                      f"{reg.log_tail(3)}")
    else:
        ok("b-log", lines[-1][:160])

    status, text = lib.readyz(addr)
    if status != 200 or "low space" not in text:
        fail("b-readyz", f"/readyz under the reserve answered {status} {text!r}, "
                         "want 200 saying 'low space'")
    else:
        ok("b-readyz", f"200 {text.strip()!r}")
    free_gauge = lib.wait_for("free gauge", lambda: (
        v if (v := reg.metric("strata_storage_free_bytes")) is not None and v < reserve else None),
        10)
    if free_gauge is None:
        fail("b-metrics", f"strata_storage_free_bytes {reg.metric('strata_storage_free_bytes')} "
                          f"not under the reserve with {fs.free()} bytes free")

    # What is already in flight finishes: the rest of the upload, a manifest.
    part2 = os.urandom(2 * MiB)
    whole = part1 + part2
    status, h, body = lib.request(addr, "PATCH", inflight, part2,
                                  {**lib.OCTET, "Content-Range": f"{MiB}-{len(whole) - 1}"})
    if status == 202:
        status, h, body = lib.request(addr, "PUT", lib.with_query(lib.location(h, addr),
                                                                  f"digest={sha256(whole)}"))
    manifest = lib.image_manifest(config, [(lib.OCI_LAYER_TAR, whole)])
    if status == 201:
        status, h, body = lib.request(addr, "PUT", f"/v2/{repo}/manifests/v1", manifest,
                                      {"Content-Type": lib.OCI_MANIFEST})
    if status != 201:
        fail("b-inflight", f"finishing an upload and its manifest under the reserve: "
                           f"{lib.describe(status, body)}")
    else:
        ok("b-inflight", "an upload started before the reserve was reached and its manifest "
                         "finish under it (201)")

    ballast.unlink()
    status, h, body = lib.request(addr, "POST", f"/v2/{repo}/blobs/uploads/")
    ready = lib.readyz(addr)
    if status != 202 or ready != (200, "ok\n"):
        fail("b-recovered", f"space freed: POST {lib.describe(status, body)}, /readyz {ready}")
    else:
        ok("b-recovered", "space freed: POST 202, /readyz 200 'ok'")


CASES = {
    "a": case_full_disk,
    "b": case_reserve,
    "c": faults_backends.case_s3_down,
    "d": faults_backends.case_postgres_restart,
    "e": faults_runner.case_runner_full,
}


def main(argv):
    if os.geteuid() != 0:
        print("faults.py: needs root (tmpfs mounts)", file=sys.stderr)
        return 2
    wanted = argv or list(CASES)
    unknown = [c for c in wanted if c not in CASES]
    if unknown:
        print(f"faults.py: unknown case(s) {unknown}; known: {list(CASES)}", file=sys.stderr)
        return 2
    for binary in (lib.REGISTRY_BIN, lib.RUNNER_BIN):
        if not os.access(binary, os.X_OK):
            print(f"faults.py: {binary} missing; cargo build --release first", file=sys.stderr)
            return 2
    work = lib.work_dir()
    started = time.monotonic()
    for name in wanted:
        t = time.monotonic()
        lib.say(f"== case {name}: {CASES[name].__name__}")
        try:
            CASES[name](work)
        except Failed as e:
            fail(name, f"aborted: {e}")
        except Exception as e:  # a bug here fails the run too
            fail(name, f"aborted: unexpected {e!r}")
        lib.say(f"   case {name} took {time.monotonic() - t:.1f} s")
        lib.run_cleanups_of_case()
    secs = time.monotonic() - started
    if lib.FAILURES:
        lib.say(f"{len(lib.FAILURES)} check(s) failed in {secs:.0f} s (logs in {lib.RESULTS})")
        return 1
    lib.say(f"all checks passed in {secs:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
