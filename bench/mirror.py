"""The pull-through mirror rows (issue 18), side by side with distribution in
proxy mode (`proxy.remoteurl`), both in front of the same upstream (a Strata
registry holding the 3-layer ~300 MB `big` image of images.py).

- cold pull: a fresh mirror each run, the whole image pulled (manifest, then
  config and layers, 3 at once as docker does) through it;
- cached pull: the same image again through the same mirror;
- 20 concurrent cold pulls: the bytes the upstream sent (its own
  strata_bytes_sent_total) over the image's size.

bench.py calls mirror_rows(bench) in the full run; `python3 bench/mirror.py
--registry R --loadgen L --images DIR [--runs N]` runs only these rows and
prints them as JSON (no BENCHMARKS.md is written).
"""

import argparse
import concurrent.futures
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402

PROXY_CONFIG = B.DISTRIBUTION_CONFIG + "proxy:\n  remoteurl: {upstream}\n"
MANIFEST_ACCEPT = "application/vnd.oci.image.manifest.v1+json"


def start_strata(bench, name, *extra):
    data = os.path.join(bench.work, name)
    os.makedirs(data)
    log = open(os.path.join(bench.work, name + ".log"), "w")
    proc = subprocess.Popen([bench.bins["registry"], "serve", "--listen", "127.0.0.1:0", "--data", data, *extra],
                            stdout=subprocess.PIPE, stderr=log, text=True, env={**os.environ, "STRATA_LOG": "warn"})
    B.STARTED.append(proc)
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on "):
        raise RuntimeError(f"registry did not start: {line!r}")
    return proc, "http://" + line.removeprefix("listening on ")


def start_proxy(bench, name, upstream):
    port = B.free_port()
    data = os.path.join(bench.work, name)
    os.makedirs(data)
    config = os.path.join(bench.work, name + ".yml")
    with open(config, "w") as f:
        f.write(PROXY_CONFIG.format(root=data, port=port, upstream=upstream))
    log = open(os.path.join(bench.work, name + ".log"), "w")
    proc = subprocess.Popen(["docker-registry", "serve", config], stdout=log, stderr=log)
    B.STARTED.append(proc)
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
            break
        except OSError:
            time.sleep(0.05)
    else:
        raise RuntimeError("docker-registry (proxy) did not start")
    return proc, f"http://127.0.0.1:{port}"


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=30)
    B.STARTED.remove(proc)


def pull_image(bench, base, repo, tag):
    """GET the manifest, then every blob (3 at once); seconds taken."""
    start = time.monotonic()
    req = urllib.request.Request(f"{base}/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT})
    manifest = json.load(urllib.request.urlopen(req, timeout=300))
    blobs = [manifest["config"]] + manifest["layers"]
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda d: B.loadgen(bench.bins, "pull", "-base", base, "-repo", repo,
                                          "-digest", d["digest"], "-size", str(d["size"])), blobs))
    return time.monotonic() - start


def tree_bytes(d):
    return sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(d) for f in fs
               if os.path.isfile(os.path.join(dp, f)))


def bytes_sent(base):
    text = urllib.request.urlopen(f"{base}/metrics", timeout=30).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith("strata_bytes_sent_total"))


def image_size(images):
    with open(os.path.join(images, "big", "index.json")) as f:
        digest = json.load(f)["manifests"][0]["digest"]
    path = os.path.join(images, "big", "blobs", "sha256", digest.split(":")[1])
    with open(path) as f:
        m = json.load(f)
    return sum(d["size"] for d in [m["config"]] + m["layers"]) + os.path.getsize(path)


def mirror_rows(bench):
    images = bench.args.images
    up, up_base = start_strata(bench, "mirror-upstream")
    B.loadgen(bench.bins, "push-image", "-base", up_base, "-repo", "bench/big", "-tag", "v1",
              "-layout", os.path.join(images, "big"))
    size = image_size(images)
    cold = {"strata": [], "distribution": []}
    cached = {"strata": [], "distribution": []}
    stored = {"strata": [], "distribution": []}
    for i in range(bench.runs):
        for kind in ("distribution", "strata"):
            name = f"mirror-{i}" if kind == "strata" else f"proxy-{i}"
            if kind == "strata":
                proc, base = start_strata(bench, name, "--upstream", f"up={up_base}")
                repo = "up/bench/big"
            else:
                proc, base = start_proxy(bench, name, up_base)
                repo = "bench/big"
            os.sync()
            cold[kind].append(pull_image(bench, base, repo, "v1"))
            stored[kind].append(tree_bytes(os.path.join(bench.work, name)))
            cached[kind].append(pull_image(bench, base, repo, "v1"))
            stop(proc)
            # Each run's mirror goes: kept, the run's hundreds of MB of page
            # cache would make every later run write into memory this VM has
            # not touched yet, which is several times slower.
            shutil.rmtree(os.path.join(bench.work, name), ignore_errors=True)
        B.log(f"mirror run {i}: cold D {cold['distribution'][-1]:.2f}s S {cold['strata'][-1]:.2f}s; "
              f"cached D {cached['distribution'][-1]:.2f}s S {cached['strata'][-1]:.2f}s")
    for name, values, target in (("first pull (cold cache)", cold, 1.5), ("cached pull", cached, 2.0)):
        o, p = B.stats(values["strata"]), B.stats(values["distribution"])
        r = p["median"] / o["median"]
        bench.row(name=f"{name} of a 3-layer {size / 1e6:.0f} MB image through the mirror", unit="s",
                  ours=o, peer=p, peer_name="distribution proxy (proxy.remoteurl), same upstream", ratio=r,
                  target=f">= {target}x faster", met=r >= target, lower_is_better=True,
                  ratio_def="distribution s / ours s",
                  extra="manifest, then config and layers 3 at once (loadgen pull); a fresh mirror each run"
                  + ("" if name != "first pull (cold cache)" else
                     "; bytes the mirror had stored when its client's pull ended (median): "
                     f"ours {statistics.median(stored['strata']) / 1e6:.0f} MB, "
                     f"distribution {statistics.median(stored['distribution']) / 1e6:.0f} MB "
                     "(it stores on after answering)"))
    # 20 concurrent cold pulls, once each: what the upstream sent, over the image size.
    fetched = {}
    for kind in ("distribution", "strata"):
        if kind == "strata":
            proc, base = start_strata(bench, "mirror-20", "--upstream", f"up={up_base}")
            repo = "up/bench/big"
        else:
            proc, base = start_proxy(bench, "proxy-20", up_base)
            repo = "bench/big"
        before = bytes_sent(up_base)
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            list(pool.map(lambda _: pull_image(bench, base, repo, "v1"), range(20)))
        fetched[kind] = (bytes_sent(up_base) - before) / size
        stop(proc)
        B.log(f"mirror 20 cold pulls: {kind} made the upstream send {fetched[kind]:.2f}x the image")
    o, p = B.stats([fetched["strata"]]), B.stats([fetched["distribution"]])
    bench.row(name="20 concurrent cold pulls through the mirror: upstream bytes / image size", unit="x image size",
              ours=o, peer=p, peer_name="distribution proxy, same upstream", ratio=o["median"],
              target="<= 1.05x the image size", met=o["median"] <= 1.05, lower_is_better=True,
              ratio_def="bytes the upstream sent (its strata_bytes_sent_total) / image size; peer column: theirs",
              extra="1 run")
    stop(up)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--registry", required=True)
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--images", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tmp", default=None)
    args = ap.parse_args()
    args.runner = ""
    bench = B.Bench(args)
    try:
        mirror_rows(bench)
    finally:
        B.stop_all()
        B.shutil.rmtree(bench.work, ignore_errors=True)
    print(json.dumps(bench.rows, indent=1, default=str))


if __name__ == "__main__":
    main()
