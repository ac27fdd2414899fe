#!/usr/bin/env python3
"""Webhooks on two replicas sharing one database: each event delivered once.

conformance/scaleout.sh runs this with the replicas' store flags after `--`
(S3 and PostgreSQL, the AWS_* variables in the environment):

    python3 conformance/webhook_replicas.py -- --storage s3://... --database postgres://...

A receiver on loopback (a thread here) answers every third request with 500,
so deliveries are retried, by either replica. Two `registry serve` replicas
have the same `[[webhook]]` to it. Then:

1. 24 manifests are pushed alternately through both (4 repositories, 6 tags
   each): every push event is answered 200 exactly once (no event delivered
   twice, none lost), in push order per repository.
2. 8 more are pushed through one replica, which is killed with SIGKILL at
   once: the other replica delivers every one of them (at least once: one
   the dead replica had sent but not recorded may come twice).

Exits non-zero when a check fails. Every process it started is stopped by PID.
"""

import http.server
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import faults_lib as lib  # noqa: E402

lib.say = lambda msg: print(f"webhook_replicas.py: {msg}", flush=True)

LOCK = threading.Lock()
REQUESTS = []  # (event id, repository, subject, answered status)


class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        event = json.loads(body)
        with LOCK:
            status = 500 if len(REQUESTS) % 3 == 2 else 200
            REQUESTS.append((event["id"], event["data"]["repository"], event["subject"], status))
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_):
        pass


def push(addr, repo, tag):
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": f"{repo}:{tag}:{time.time_ns()}"}).encode()
    layer = f"layer {repo} {tag}".encode()
    lib.push_blob(addr, repo, config)
    lib.push_blob(addr, repo, layer)
    manifest = lib.image_manifest(config, [(lib.OCI_LAYER_TAR, layer)])
    status, _, body = lib.request(addr, "PUT", f"/v2/{repo}/manifests/{tag}", manifest,
                                  {"Content-Type": lib.OCI_MANIFEST})
    if status != 201:
        raise lib.Failed(f"PUT {repo}:{tag}: {lib.describe(status, body)}")


def delivered(subjects, secs=90):
    """Wait until every subject was answered 200; the 200-answered requests."""
    def done():
        with LOCK:
            ok = [r for r in REQUESTS if r[3] == 200]
        return ok if set(subjects) <= {r[2] for r in ok} else None
    got = lib.wait_for("deliveries", done, secs)
    if got is None:
        with LOCK:
            seen = {r[2] for r in REQUESTS if r[3] == 200}
        raise lib.Failed(f"not delivered within {secs}s: {sorted(set(subjects) - seen)}")
    return got


def main():
    store_args = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    work = Path(tempfile.mkdtemp(prefix="strata-webhook-replicas."))
    lib.on_cleanup(lambda: shutil.rmtree(work, ignore_errors=True))
    config = work / "registry.toml"
    config.write_text(f'[[webhook]]\nname = "replicas"\nurl = "{url}"\nevents = ["push"]\n'
                      'timeout = "2s"\nbackoff = "100ms"\nmax_backoff = "400ms"\n')
    args = ["--config", str(config), *store_args]
    a = lib.Registry("webhook-a", work, args).start()
    b = lib.Registry("webhook-b", work, args).start()
    lib.say(f"webhook replicas at {a.addr} and {b.addr}, receiver {url}")
    prefix = f"webhooks/{os.getpid()}-{time.time_ns()}"
    failures = 0

    subjects, order = [], {}
    for t in range(6):
        for r in range(4):
            repo, tag = f"{prefix}/r{r}", f"t{t}"
            push((a, b)[(t * 4 + r) % 2].addr, repo, tag)
            subjects.append(f"{repo}:{tag}")
            order.setdefault(repo, []).append(f"{repo}:{tag}")
    got = [g for g in delivered(subjects) if g[2] in set(subjects)]
    ids = [g[0] for g in got]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice or len(ids) != len(subjects):
        lib.say(f"FAIL once: {len(ids)} successful deliveries of {len(subjects)} events; twice: {twice}")
        failures += 1
    else:
        lib.say(f"ok   once: {len(subjects)} events through two replicas, each answered 200 once "
                f"({sum(1 for r in REQUESTS if r[3] == 500)} deliveries refused with 500 and retried)")
    misordered = [repo for repo, want in order.items()
                  if [g[2] for g in got if g[1] == repo] != want]
    if misordered:
        lib.say(f"FAIL order: events of {misordered} arrived out of push order")
        failures += 1
    else:
        lib.say("ok   order: each repository's events arrived in push order")

    crash = [f"{prefix}/crash:c{i}" for i in range(8)]
    for s in crash:
        repo, tag = s.split(":")
        push(a.addr, repo, tag)
    os.kill(a.proc.pid, signal.SIGKILL)
    a.proc.wait()
    try:
        delivered(crash)
        lib.say("ok   crash: replica A killed with SIGKILL after 8 pushes; replica B delivered all 8")
    except lib.Failed as e:
        lib.say(f"FAIL crash: {e}")
        failures += 1
    server.shutdown()
    return 1 if failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except lib.Failed as e:
        lib.say(f"FAIL {e}")
        sys.exit(1)
