"""The web UI row (issue 20): the server time of the first page of a
10,000-tag repository (`GET /ui/r/<name>`: 50 tags with digest, media type,
platforms, size and push time), read from the registry's own request log
(`micros`, JSON log lines), so loopback and client costs are left out.

Distribution has no UI to compare with, so the row has no peer; its target
is absolute (<= 20 ms). bench.py calls ui_rows(bench) in the full run;
`python3 bench/ui.py --registry R [--runs N]` runs only this row and prints
it as JSON (no BENCHMARKS.md is written).
"""

import argparse
import hashlib
import http.client
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402

TAGS = 10_000
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def start(bench):
    data = os.path.join(bench.work, "ui")
    os.makedirs(data)
    logpath = os.path.join(bench.work, "ui.log")
    log = open(logpath, "w")
    proc = subprocess.Popen([bench.bins["registry"], "--log-format", "json", "serve", "--listen", "127.0.0.1:0",
                             "--data", data], stdout=subprocess.PIPE, stderr=log, text=True,
                            env={**os.environ, "STRATA_LOG": "info"})
    B.STARTED.append(proc)
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on "):
        raise RuntimeError(f"registry did not start: {line!r}")
    return proc, line.removeprefix("listening on "), logpath


def seed(host, repo):
    """One image, then TAGS tags on it, over one kept-alive connection."""
    c = http.client.HTTPConnection(host, timeout=60)

    def blob(data):
        d = "sha256:" + hashlib.sha256(data).hexdigest()
        c.request("POST", f"/v2/{repo}/blobs/uploads/?digest={d}", body=data)
        r = c.getresponse()
        r.read()
        assert r.status == 201, r.status
        return d, len(data)

    cd, cn = blob(b'{"architecture":"amd64","os":"linux","config":{}}')
    ld, ln = blob(os.urandom(4096))
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld,
                                       "size": ln}]}).encode()
    for i in range(TAGS):
        c.request("PUT", f"/v2/{repo}/manifests/t{i:05d}", body=manifest, headers={"Content-Type": MANIFEST})
        r = c.getresponse()
        r.read()
        assert r.status == 201, r.status
    return c


def server_micros(logpath, path):
    out = []
    with open(logpath) as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            fields = rec.get("fields", rec)
            if fields.get("path") == path and fields.get("micros") is not None:
                out.append(int(fields["micros"]))
    return out


def ui_rows(bench):
    proc, host, logpath = start(bench)
    repo = "bench/tags10k"
    t0 = time.monotonic()
    c = seed(host, repo)
    B.log(f"ui row: {TAGS} tags pushed in {time.monotonic() - t0:.0f} s")
    path = f"/ui/r/{repo}"
    # Warm-up (the tag list cache, manifest bytes), then the measured runs.
    for _ in range(3 + max(bench.runs, 20)):
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        assert r.status == 200 and b"t00049" in body and b"t00050" not in body, r.status
    time.sleep(0.5)
    micros = server_micros(logpath, path)[3:]
    o = B.stats([m / 1000 for m in micros])
    bench.row(name=f"UI: first page of a {TAGS:,}-tag repository (server time)", unit="ms",
              ours=o, peer=None, peer_name="- (distribution has no UI)", ratio=None,
              target="<= 20 ms", met=o["median"] <= 20, lower_is_better=True,
              ratio_def="no peer: absolute target",
              extra=f"GET /ui/r/<name>: 50 tags with digest, type, size, push time; the registry's own "
                    f"request log (`micros`); {len(micros)} requests after 3 warm-up")
    proc.terminate()
    proc.wait(timeout=30)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--registry", required=True)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--tmp", default=None)
    args = ap.parse_args()
    args.runner = ""
    args.loadgen = ""
    bench = B.Bench(args)
    try:
        ui_rows(bench)
    finally:
        B.stop_all()
        B.shutil.rmtree(bench.work, ignore_errors=True)
    print(json.dumps(bench.rows, indent=1, default=str))


if __name__ == "__main__":
    main()
