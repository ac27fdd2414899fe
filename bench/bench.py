"""Side-by-side benchmark of Strata against peer programs, driven by run.sh.

Every figure is measured for both programs in the same run, alternating
A B A B, and reported as median with min and max. Results go to
BENCHMARKS.md, bench/results.json and a chart of the ratios.

Only loopback addresses are used. Every process this starts is stopped by
its PID on exit; every temp dir is removed.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

MiB = 1 << 20
ACCEPT = ("application/vnd.oci.image.manifest.v1+json, "
          "application/vnd.docker.distribution.manifest.v2+json")
STARTED = []  # Popen objects we started; stopped by PID on exit.
T0 = time.monotonic()


def log(msg):
    print(f"[{time.monotonic() - T0:6.0f}s] {msg}", file=sys.stderr, flush=True)


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def stop_all():
    for p in STARTED:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGTERM)
    for p in STARTED:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
    STARTED.clear()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A registry process on loopback with a fresh data dir."""

    def __init__(self, kind, bins, workdir, name):
        self.kind = kind
        self.data = os.path.join(workdir, name)
        os.makedirs(self.data)
        self.log = open(os.path.join(workdir, name + ".log"), "w")
        if kind == "strata":
            self.proc = subprocess.Popen(
                [bins["registry"], "serve", "--listen", "127.0.0.1:0", "--data", self.data],
                stdout=subprocess.PIPE, stderr=self.log, text=True,
                env={**os.environ, "STRATA_LOG": "warn"})
            STARTED.append(self.proc)
            line = self.proc.stdout.readline().strip()
            if not line.startswith("listening on "):
                raise RuntimeError(f"registry did not start: {line!r}")
            self.base = "http://" + line.removeprefix("listening on ")
        else:
            port = free_port()
            config = os.path.join(workdir, name + ".yml")
            with open(config, "w") as f:
                f.write(DISTRIBUTION_CONFIG.format(root=self.data, port=port))
            self.proc = subprocess.Popen(["docker-registry", "serve", config],
                                         stdout=self.log, stderr=self.log)
            STARTED.append(self.proc)
            self.base = f"http://127.0.0.1:{port}"
            for _ in range(200):
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                        break
                except OSError:
                    time.sleep(0.02)
            else:
                raise RuntimeError("docker-registry did not start")
        self.host = self.base.removeprefix("http://")

    def hwm_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmHWM")

    def stop(self, remove=True):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        STARTED.remove(self.proc)
        self.log.close()
        if remove:
            shutil.rmtree(self.data, ignore_errors=True)


DISTRIBUTION_CONFIG = """version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  redirect:
    disable: true
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
  secret: strata-bench
catalog:
  maxentries: 100000
"""


def loadgen(bins, *args):
    out = sh([bins["loadgen"], *args])
    return json.loads(out)


def timed_bash(script):
    """Run a bash script that prints '$s $e' (EPOCHREALTIME) last; return seconds."""
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"command failed ({out.returncode}): {script}\n{out.stdout}\n{out.stderr}")
    s, e = lines[-1].split()[-2:]
    return float(e) - float(s)


def stats(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values), "values": values}


# ---------------------------------------------------------------- rows

class Bench:
    def __init__(self, args):
        self.args = args
        self.runs = args.runs
        self.bins = {"registry": args.registry, "runner": args.runner, "loadgen": args.loadgen}
        self.work = tempfile.mkdtemp(prefix="strata-bench-", dir=args.tmp)
        # podman refuses a runroot over 50 characters, which a long TMPDIR makes likely.
        self.short = tempfile.mkdtemp(prefix="sb-", dir="/tmp")
        self.rows = []
        self.info = {}

    def server(self, kind, name):
        return Server(kind, self.bins, self.work, name)

    def row(self, **kw):
        self.rows.append(kw)
        log(f"row: {kw['name']}: ours {fmt(kw.get('ours'))} peer {fmt(kw.get('peer'))} "
            f"ratio {kw.get('ratio')} met={kw.get('met')}")

    def blob_files(self):
        """The 512 MiB and 4 GiB test files (random, cached between runs) and their digests."""
        cache = self.args.cache
        small = os.path.join(cache, "blob-512MiB")
        if not os.path.exists(small):
            sh(["bash", "-c", f"head -c 512M /dev/urandom > {small}.tmp && mv {small}.tmp {small}"])
        big = os.path.join(cache, "blob-4GiB")
        if not os.path.exists(big):
            # Eight copies of the random 512 MiB: content does not matter for memory use.
            sh(["bash", "-c", f"for i in 1 2 3 4 5 6 7 8; do cat {small}; done > {big}.tmp && mv {big}.tmp {big}"])
        digests = {}
        for path in (small, big):
            dfile = path + ".sha256"
            if not os.path.exists(dfile) or os.path.getmtime(dfile) < os.path.getmtime(path):
                with open(dfile, "w") as f:
                    f.write("sha256:" + sh(["sha256sum", path]).split()[0])
            with open(dfile) as f:
                digests[path] = f.read().strip()
        return small, digests[small], big, digests[big]

    # -- pushes, each into a fresh registry so no run is a dedup hit

    def push_rows(self):
        small, dsmall, big, dbig = self.blob_files()
        mono = {"strata": [], "distribution": []}
        chunked = {"strata": [], "distribution": []}
        dd = []
        ddfile = os.path.join(self.work, "dd.out")
        for i in range(self.runs):
            for kind in ("distribution", "strata"):
                s = self.server(kind, f"{kind}-mono-{i}")
                os.sync()
                mono[kind].append(loadgen(self.bins, "push", "-base", s.base, "-repo", "bench/mono",
                                          "-file", small, "-digest", dsmall)["mb_per_s"])
                s.stop()
            os.sync()
            t = time.monotonic()
            sh(["dd", "if=/dev/zero", f"of={ddfile}", "bs=1M", "count=512", "conv=fsync"])
            dd.append(512 * MiB / 1e6 / (time.monotonic() - t))
            os.unlink(ddfile)
            log(f"push run {i}: mono D {mono['distribution'][-1]:.0f} S {mono['strata'][-1]:.0f} dd {dd[-1]:.0f} MB/s")
        for i in range(self.runs):
            for kind in ("distribution", "strata"):
                s = self.server(kind, f"{kind}-chunk-{i}")
                os.sync()
                chunked[kind].append(loadgen(self.bins, "push", "-base", s.base, "-repo", "bench/chunked",
                                             "-file", small, "-digest", dsmall, "-chunk", str(16 * MiB))["mb_per_s"])
                s.stop()
            log(f"push run {i}: chunked D {chunked['distribution'][-1]:.0f} S {chunked['strata'][-1]:.0f} MB/s")
        o, p, d = stats(mono["strata"]), stats(mono["distribution"]), stats(dd)
        r = o["median"] / p["median"]
        rd = o["median"] / d["median"]
        self.row(name="monolithic push of a 512 MiB blob (POST + PUT ?digest=)", unit="MB/s",
                 ours=o, peer=p, peer_name="distribution", ratio=r,
                 extra=f"durable write (dd conv=fsync): {fmt(d)} MB/s; ours / dd = {rd:.2f}",
                 target=">= 3x its MB/s, and >= 0.70x of dd conv=fsync", met=r >= 3 and rd >= 0.70,
                 ratio_def="ours MB/s / distribution MB/s")
        o, p = stats(chunked["strata"]), stats(chunked["distribution"])
        r = o["median"] / p["median"]
        self.row(name="chunked push of 512 MiB in 16 MiB PATCHes", unit="MB/s", ours=o, peer=p,
                 peer_name="distribution", ratio=r, target=">= 3x", met=r >= 3,
                 ratio_def="ours MB/s / distribution MB/s")
        # Peak RSS during a 4 GiB push, a fresh process each run.
        rss = {"strata": [], "distribution": []}
        speed = {"strata": [], "distribution": []}
        for i in range(self.runs):
            for kind in ("distribution", "strata"):
                s = self.server(kind, f"{kind}-rss-{i}")
                os.sync()
                speed[kind].append(loadgen(self.bins, "push", "-base", s.base, "-repo", "bench/huge",
                                           "-file", big, "-digest", dbig)["mb_per_s"])
                rss[kind].append(s.hwm_kib() / 1024)
                s.stop()
            log(f"rss run {i}: D {rss['distribution'][-1]:.1f} MiB S {rss['strata'][-1]:.1f} MiB")
        os.sync()
        o, p = stats(rss["strata"]), stats(rss["distribution"])
        r = o["median"] / p["median"]
        self.row(name="peak RSS of the registry during a 4 GiB push", unit="MiB (VmHWM)", ours=o, peer=p,
                 peer_name="distribution", ratio=r, target="<= 0.5x and under 100 MiB",
                 met=r <= 0.5 and o["max"] < 100, lower_is_better=True,
                 extra=f"push speed of the 4 GiB: ours {fmt(stats(speed['strata']))} MB/s, "
                       f"distribution {fmt(stats(speed['distribution']))} MB/s",
                 ratio_def="ours MiB / distribution MiB")

    # -- long-lived servers

    def http_rows(self, S, D):
        small, dsmall, _, _ = self.blob_files()
        for s in (D, S):
            loadgen(self.bins, "push", "-base", s.base, "-repo", "bench/pull", "-file", small, "-digest", dsmall)
        os.sync()
        pull = {"strata": [], "distribution": []}
        for i in range(self.runs):
            for kind, s in (("distribution", D), ("strata", S)):
                pull[kind].append(loadgen(self.bins, "pull", "-base", s.base, "-repo", "bench/pull",
                                          "-digest", dsmall, "-size", str(512 * MiB))["mb_per_s"])
        o, p = stats(pull["strata"]), stats(pull["distribution"])
        r = o["median"] / p["median"]
        self.row(name="pull of a 512 MiB blob", unit="MB/s", ours=o, peer=p, peer_name="distribution",
                 ratio=r, target=">= 1.0x", met=r >= 1.0, ratio_def="ours MB/s / distribution MB/s")

        conc = {"strata": [], "distribution": []}
        errors = {"strata": 0, "distribution": 0}
        for i in range(self.runs):
            for kind, s in (("distribution", D), ("strata", S)):
                res = loadgen(self.bins, "concurrent-push", "-base", s.base, "-repo", f"bench/c{i}-",
                              "-clients", "32", "-size", str(8 * MiB))
                conc[kind].append(res["mb_per_s"])
                errors[kind] += res["errors"]
                if res["errors"]:
                    log(f"{kind} concurrent push errors: {res['errors']}: {res['first_error']}")
        os.sync()
        o, p = stats(conc["strata"]), stats(conc["distribution"])
        r = o["median"] / p["median"]
        self.row(name="32 clients pushing distinct 8 MiB blobs at once", unit="MB/s aggregate", ours=o, peer=p,
                 peer_name="distribution", ratio=r, target=">= 3x aggregate MB/s, no errors",
                 met=r >= 3 and errors["strata"] == 0,
                 extra=f"errors: ours {errors['strata']}, distribution {errors['distribution']}",
                 ratio_def="ours MB/s / distribution MB/s")

        # Seeding is setup, not a figure: both registries at once to save time.
        seed = {}

        def seed_one(kind, s):
            t = loadgen(self.bins, "seed-tags", "-base", s.base, "-repo", "bench/tags", "-count", "10000",
                        "-conc", "32")["seconds"]
            r = loadgen(self.bins, "seed-repos", "-base", s.base, "-repo", "bench/many/r", "-count", "2000",
                        "-conc", "32")["seconds"]
            seed[kind] = (t, r)
            log(f"{kind}: seeded 10,000 tags in {t:.1f}s, 2,000 repositories in {r:.1f}s (both seeded at once)")
        threads = [threading.Thread(target=seed_one, args=a) for a in (("distribution", D), ("strata", S))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if len(seed) != 2:
            raise RuntimeError("seeding failed")
        self.info["seeding"] = seed

        for method in ("GET", "HEAD"):
            rps = {"strata": [], "distribution": []}
            p99 = {"strata": [], "distribution": []}
            bad = {"strata": 0, "distribution": 0}
            for i in range(self.runs):
                for kind, s in (("distribution", D), ("strata", S)):
                    res = loadgen(self.bins, "hammer", "-base", s.base, "-path", "/v2/bench/tags/manifests/t00042",
                                  "-method", method, "-accept", ACCEPT, "-conc", "32", "-duration", "3s")
                    rps[kind].append(res["rps"])
                    p99[kind].append(res["p99_ms"])
                    bad[kind] += res["errors"] + res["non_2xx"]
            o, p = stats(rps["strata"]), stats(rps["distribution"])
            po, pp = stats(p99["strata"]), stats(p99["distribution"])
            r = o["median"] / p["median"]
            rp = po["median"] / pp["median"]
            self.row(name=f"manifest {method} by tag, 32 connections", unit="requests/s", ours=o, peer=p,
                     peer_name="distribution", ratio=r,
                     target=">= 10x requests/s, p99 <= 1/10 of its p99", met=r >= 10 and rp <= 0.1 and bad["strata"] == 0,
                     extra=f"p99 ms: ours {fmt(po)}, distribution {fmt(pp)}; ours/theirs = {rp:.3f}; "
                           f"errors+non-2xx: ours {bad['strata']}, distribution {bad['distribution']}",
                     ratio_def="ours requests/s / distribution requests/s")

        for name, path, key, expect in (
                ("tag list of a repository with 10,000 tags", "/v2/bench/tags/tags/list", "tags", 10000),
                ("_catalog with 2,000 repositories", "/v2/_catalog", "repositories", None)):
            lps = {"strata": [], "distribution": []}
            items = {}
            for i in range(self.runs):
                for kind, s in (("distribution", D), ("strata", S)):
                    res = loadgen(self.bins, "list", "-base", s.base, "-path", path, "-key", key,
                                  "-conc", "4", "-duration", "2s")
                    if res["errors"]:
                        raise RuntimeError(f"{kind} {path}: errors")
                    lps[kind].append(res["listings_per_s"])
                    items[kind] = res["items"]
            o, p = stats(lps["strata"]), stats(lps["distribution"])
            r = o["median"] / p["median"]
            self.row(name=name, unit="full listings/s (4 clients, following Link)", ours=o, peer=p,
                     peer_name="distribution", ratio=r, target=">= 10x", met=r >= 10,
                     extra=f"items per listing: ours {items['strata']}, distribution {items['distribution']}",
                     ratio_def="ours listings/s / distribution listings/s")

    # -- runner rows

    def runner_rows(self, S):
        images = self.args.images
        for name in ("busybox", "big"):
            loadgen(self.bins, "push-image", "-base", S.base, "-repo", f"bench/{name}", "-tag", "latest",
                    "-layout", os.path.join(images, name))
        busybox = f"{S.host}/bench/busybox:latest"
        big = f"{S.host}/bench/big:latest"
        log("runner rows: images pushed")
        sh(["skopeo", "inspect", "--tls-verify=false", f"docker://{big}"])  # the image is valid for a peer client
        runner = self.bins["runner"]
        have_runner = runner and os.access(runner, os.X_OK)
        runs = max(self.runs, 10)

        # crun and runc: a bundle unpacked by umoci and given runner's isolation.
        bundle = os.path.join(self.work, "bundle")
        sh(["umoci", "unpack", "--image", os.path.join(images, "busybox") + ":latest", bundle])
        sh([sys.executable, os.path.join(self.args.benchdir, "crun_bundle.py"), bundle])
        hybrid = "umount /sys/fs/cgroup/unified && "

        def crun(i, rt="crun"):
            return timed_bash(f"unshare -m bash -c '{hybrid}s=$EPOCHREALTIME; {rt} run --bundle {bundle} "
                              f"strata-bench-{rt}-{i} >/dev/null && echo $s $EPOCHREALTIME'")

        pm_root = os.path.join(self.work, "podman")
        os.makedirs(pm_root)
        authfile = os.path.join(pm_root, "auth.json")
        with open(authfile, "w") as f:
            f.write("{}")

        def podman(root):
            runroot = os.path.join(self.short, os.path.basename(root))
            return (f"podman --root {root}/root --runroot {runroot} --storage-driver overlay "
                    f"--cgroup-manager cgroupfs --events-backend none")
        # podman's default rlimits are above this machine's hard limits, hence the explicit --ulimit.
        pm_run = (f"{podman(pm_root)} run --rm --network none --ulimit nofile=1024:1024 "
                  f"--ulimit nproc=1024:1024 {busybox} /bin/true")
        sh(["unshare", "-m", "bash", "-c",
            f"{podman(pm_root)} pull -q --tls-verify=false --authfile {authfile} {busybox}"])

        def pm(i):
            return timed_bash(f"unshare -m bash -c '{hybrid}s=$EPOCHREALTIME; {pm_run} && echo $s $EPOCHREALTIME'")

        rr_root = os.path.join(self.work, "runner-root")
        rr_run = f"{runner} --root {rr_root} run {busybox} /bin/true"

        def rr(i, run=rr_run):
            return timed_bash(f"s=$EPOCHREALTIME; {run} && echo $s $EPOCHREALTIME")

        # Landlock's cost: the same run with the rules off, interleaved.
        rr_off = rr_run.replace(" run ", " run --security-opt landlock=off ", 1)

        log("runner rows: bundle and podman store ready")
        times = {"runner": [], "crun": [], "runc": [], "podman": [], "landlock-off": []}
        crun(-1), crun(-1, "runc"), pm(-1)  # warm-up: page cache, image store
        if have_runner:
            sh([runner, "--root", rr_root, "pull", busybox])
            rr(-1)  # warm-up, and the layer unpack of "an already pulled image"
        for i in range(runs):
            if have_runner:
                # On and off take turns going first: whichever follows the
                # peers' runs pays for their clean-up in the background.
                if i % 2:
                    times["landlock-off"].append(rr(i, rr_off) * 1e3)
                times["runner"].append(rr(i) * 1e3)
                if not i % 2:
                    times["landlock-off"].append(rr(i, rr_off) * 1e3)
            times["crun"].append(crun(i) * 1e3)
            times["podman"].append(pm(i) * 1e3)
            times["runc"].append(crun(i, "runc") * 1e3)
        self.info["run_commands"] = {"runner": rr_run, "crun": f"crun run --bundle {bundle} ID",
                                     "podman": pm_run}
        c, p, rc = stats(times["crun"]), stats(times["podman"]), stats(times["runc"])
        missing = "not measured: runner not built"
        if have_runner:
            o = stats(times["runner"])
            r = o["median"] / c["median"]
            rp = p["median"] / o["median"]
            self.row(name="runner run of /bin/true from an already pulled image (seccomp, cgroup, all namespaces)",
                     unit="ms wall", ours=o, peer=c, peer_name="crun run of the same image as a bundle, equivalent isolation",
                     ratio=r, target="<= 1.0x wall time", met=r <= 1.0, lower_is_better=True,
                     extra=f"runc run of the same bundle (no target): {fmt(rc)} ms",
                     ratio_def="ours ms / crun ms")
            self.row(name="the same", unit="ms wall", ours=o, peer=p, peer_name="podman run --rm --network none",
                     ratio=rp, target=">= 10x faster", met=rp >= 10, ratio_def="podman ms / ours ms")
            off = stats(times["landlock-off"])
            added = o["median"] - off["median"]
            self.row(name="Landlock's cost: runner run of /bin/true, rules on (the default)", unit="ms wall",
                     ours=o, peer=off, peer_name="runner run --security-opt landlock=off", ratio=o["median"] / off["median"],
                     target="<= 1 ms added", met=added <= 1.0, lower_is_better=True,
                     extra=f"added: {added:.2f} ms (difference of the medians)", ratio_def="on ms / off ms")
            log("rootless row (bench/rootless.py)")
            import rootless
            rootless.rootless_rows(self, busybox, runner, o["median"], stats, timed_bash)
        else:
            self.row(name="runner run of /bin/true from an already pulled image (seccomp, cgroup, all namespaces)",
                     unit="ms wall", ours=None, peer=c, peer_name="crun run of the same image as a bundle, equivalent isolation",
                     ratio=None, target="<= 1.0x wall time", met=None, note=missing)
            self.row(name="the same", unit="ms wall", ours=None, peer=p, peer_name="podman run --rm --network none",
                     ratio=None, target=">= 10x faster", met=None, note=missing)

        # Pull + unpack of the ~300 MB 3-layer image: fresh stores each run.
        pulls = {"runner": [], "podman": []}
        for i in range(self.runs):
            root = os.path.join(self.work, f"pull-runner-{i}")
            if have_runner:
                os.sync()
                pulls["runner"].append(timed_bash(
                    f"s=$EPOCHREALTIME; {runner} --root {root} pull {big} >/dev/null && "
                    f"{runner} --root {root} run {big} /bin/true && echo $s $EPOCHREALTIME"))
                shutil.rmtree(root, ignore_errors=True)
            root = os.path.join(self.work, f"pull-podman-{i}")
            os.makedirs(root)
            os.sync()
            pulls["podman"].append(timed_bash(
                f"unshare -m bash -c 's=$EPOCHREALTIME; {podman(root)} pull -q --tls-verify=false "
                f"--authfile {authfile} {big} >/dev/null && echo $s $EPOCHREALTIME'"))
            shutil.rmtree(root, ignore_errors=True)
            shutil.rmtree(os.path.join(self.short, os.path.basename(root)), ignore_errors=True)
            log(f"pull+unpack run {i}: runner {pulls['runner'][-1] if pulls['runner'] else '-'} "
                f"podman {pulls['podman'][-1]:.2f}s")
        p = stats(pulls["podman"])
        size = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in
                   os.walk(os.path.join(images, "big", "blobs")) for f in fs)
        self.info["big_image_bytes"] = size
        if have_runner:
            o = stats(pulls["runner"])
            r = p["median"] / o["median"]
            self.row(name=f"pull + unpack of a 3-layer {size / 1e6:.0f} MB gzip image from our registry",
                     unit="s wall", ours=o, peer=p, peer_name="podman pull of the same image", ratio=r,
                     target=">= 2x faster", met=r >= 2, ratio_def="podman s / ours s",
                     extra="ours = `runner pull` (which unpacks each layer as it downloads) then `runner run IMAGE /bin/true`, "
                           "so it also pays for one container start")
        else:
            self.row(name=f"pull + unpack of a 3-layer {size / 1e6:.0f} MB gzip image from our registry",
                     unit="s wall", ours=None, peer=p, peer_name="podman pull of the same image", ratio=None,
                     target=">= 2x faster", met=None, note=missing)

    # -- dedup

    def storage_row(self):
        images = self.args.images
        S = self.server("strata", "strata-dedup")
        D = self.server("distribution", "distribution-dedup")
        for n in range(20):
            for s in (S, D):
                loadgen(self.bins, "push-image", "-base", s.base, "-repo", f"bench/app{n}", "-tag", "v1",
                        "-layout", os.path.join(images, f"shared-{n:02d}"))
        with open(os.path.join(images, "shared.json")) as f:
            unique = json.load(f)
        blobs = os.path.join(S.data, "storage", "blobs")
        files = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(blobs) for f in fs)
        du = int(sh(["du", "-sb", blobs]).split()[0])
        dfiles = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in
                     os.walk(os.path.join(D.data, "docker", "registry", "v2", "blobs")) for f in fs)
        r = files / unique["unique_bytes"]
        self.row(name="storage used after pushing 20 images sharing 3 base layers", unit="bytes",
                 ours=stats([files]), peer=stats([unique["unique_bytes"]]), peer_name="sum of unique blob sizes",
                 ratio=r, target="exactly 1.00x", met=files == unique["unique_bytes"],
                 ratio_def="bytes of blob files / sum of unique blob sizes",
                 extra=f"{unique['unique_blobs']} unique blobs; `du -sb` of storage/blobs (counts directory inodes too): "
                       f"{du}; distribution's blob files for the same pushes: {dfiles} bytes; deterministic, 1 run")
        S.stop()
        D.stop()

    def run(self):
        try:
            self.info["load_before"] = open("/proc/loadavg").read().split()[:3]
            log("push rows")
            self.push_rows()
            S = self.server("strata", "strata-main")
            D = self.server("distribution", "distribution-main")
            log("http rows")
            self.http_rows(S, D)
            # Its ~100k small files go with the work dir at the end: deleting
            # them here took minutes on a busy disk, in the middle of the run.
            D.stop(remove=False)
            log("runner rows (distribution stopped)")
            self.runner_rows(S)
            if self.bins.get("runner"):
                log("container rows (run -d, exec, monitor RSS; bench/containers.py)")
                import containers
                containers.container_rows(self, f"{S.host}/bench/busybox:latest",
                                          os.path.join(self.short, "c"), stats)
                log("build rows (runner build vs docker classic, BuildKit, buildah; bench/build.py)")
                import build
                build.build_rows(self, stats)
                log("network rows (run --network bridge, TCP through -p; in a netns; bench/network.py)")
                import network
                network.network_rows(self, f"{S.host}/bench/busybox:latest",
                                     os.path.join(self.short, "n"), stats)
            S.stop()
            log("storage row")
            self.storage_row()
            log("mirror rows")
            sys.modules.setdefault("bench", sys.modules[__name__])
            import mirror
            mirror.mirror_rows(self)
            log("ui row (bench/ui.py)")
            import ui
            ui.ui_rows(self)
            self.info["load_after"] = open("/proc/loadavg").read().split()[:3]
        finally:
            stop_all()
            self.info["measure_seconds"] = time.monotonic() - T0
            log(f"removing {self.work}")
            shutil.rmtree(self.work, ignore_errors=True)
            shutil.rmtree(self.short, ignore_errors=True)
            self.info["cleanup_seconds"] = time.monotonic() - T0 - self.info["measure_seconds"]


# ---------------------------------------------------------------- report

def fmt(s):
    if not s:
        return "-"
    if isinstance(s, dict):
        if s["n"] == 1:
            return num(s["median"])
        return f"{num(s['median'])} ({num(s['min'])}-{num(s['max'])})"
    return num(s)


def num(v):
    if abs(v) >= 10000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in sh(["lscpu"]).splitlines()
                if line.startswith("Model name")), "?")
    mem = int(open("/proc/meminfo").readline().split()[1]) // 1024
    fs = sh(["findmnt", "-no", "FSTYPE,SOURCE", "--target", tempfile.gettempdir()]).strip()

    def ver(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout.strip().splitlines()[0]
        except (OSError, IndexError):
            return "?"
    return {
        "cpu": f"{cpu}, {os.cpu_count()} cores", "memory": f"{mem} MiB", "kernel": platform.release(),
        "temp dir filesystem": f"{tempfile.gettempdir()} on {fs}",
        "docker-registry": ver(["docker-registry", "--version"]), "crun": ver(["crun", "--version"]),
        "runc": ver(["runc", "--version"]), "podman": ver(["podman", "--version"]),
        "skopeo": ver(["skopeo", "--version"]), "umoci": ver(["umoci", "--version"]),
        "go (load generator)": ver(["go", "version"]),
    }


def write_report(bench, args, elapsed):
    rows = bench.rows
    m = machine()
    rev = sh(["git", "-C", args.repo, "rev-parse", "--short", "HEAD"]).strip()
    dirty = sh(["git", "-C", args.repo, "status", "--porcelain", "--", "store", "registry", "runner"]).strip()
    lines = [
        "# Benchmarks",
        "",
        "Written by `bash bench/run.sh` (do not edit by hand). Each figure is the median of "
        f"{args.runs} or more runs with (min-max); the two programs of a row are measured in the same "
        "run, alternating A B A B. Ratios are of medians.",
        "",
        f"- Run: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, "
        f"took {elapsed / 60:.1f} min (measuring {bench.info.get('measure_seconds', 0) / 60:.1f}, "
        f"deleting temp dirs {bench.info.get('cleanup_seconds', 0) / 60:.1f}, plus {args.build_seconds / 60:.1f} min "
        f"of installs and builds before); Strata at `{rev}`"
        + (" with uncommitted changes in the crates" if dirty else ""),
    ]
    for k, v in m.items():
        lines.append(f"- {k}: {v}")
    lines += [
        f"- load average before / after: {' '.join(bench.info.get('load_before', []))} / "
        f"{' '.join(bench.info.get('load_after', []))} (other work on the machine shares its 2 cores)",
        "",
        "## Results",
        "",
        "| what | unit | ours | peer | peer value | ratio | target | met |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        met = "n/a" if r.get("met") is None else ("**yes**" if r["met"] else "**no**")
        ours = fmt(r.get("ours")) if r.get("ours") else r.get("note", "-")
        ratio = f"{r['ratio']:.2f}x" if r.get("ratio") is not None else "-"
        lines.append(f"| {r['name']} | {r['unit']} | {ours} | {r['peer_name']} | {fmt(r.get('peer'))} | "
                     f"{ratio} | {r['target']} | {met} |")
    lines += ["", "Notes per row:", ""]
    for r in rows:
        bits = [b for b in (f"ratio = {r['ratio_def']}" if r.get("ratio_def") else None, r.get("extra")) if b]
        if bits:
            lines.append(f"- {r['name']}: " + "; ".join(bits) + ".")
    seed = bench.info.get("seeding", {})
    if seed:
        lines.append("- Setup (not a target): seeding 10,000 tags took "
                     + ", ".join(f"{k} {v[0]:.1f}s" for k, v in seed.items())
                     + "; seeding 2,000 repositories took "
                     + ", ".join(f"{k} {v[1]:.1f}s" for k, v in seed.items()) + ".")
    lines += ["", "![ratios](bench/ratios.png)", "", "## How each figure is taken", "", COMMANDS.format(
        runs=args.runs,
        run_commands="\n".join(f"  - {k}: `{v}`" for k, v in bench.info.get("run_commands", {}).items())), ""]
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    with open(os.path.join(args.benchdir, "results.json"), "w") as f:
        json.dump({"machine": m, "rows": rows, "info": bench.info}, f, indent=1, default=str)


COMMANDS = """\
Everything runs on this machine over 127.0.0.1. `bench/run.sh` installs the peers from
Debian (`docker-registry crun runc podman docker.io buildah skopeo umoci wrk hyperfine busybox-static`),
matplotlib from PyPI into a cache venv, builds `cargo build --release --workspace`
and the load generator `bench/loadgen` (Go, standard library only), then runs `bench/bench.py`.

- Registries: ours is `target/release/registry serve --listen 127.0.0.1:0 --data DIR` with
  `STRATA_LOG=warn`; distribution is `docker-registry serve CONFIG` with filesystem storage in a
  temp dir, `log.level: warn`, access log off, redirects off, `catalog.maxentries: 100000`.
  Both have their per-request logging off, so neither pays for it.
- Pushes (monolithic, chunked, 4 GiB) go each run into a freshly started registry with an empty
  data dir, so no push is a dedup hit; `sync` runs before each one, untimed.
  Monolithic: `loadgen push -file F -digest D` = POST `/blobs/uploads/`, then PUT `?digest=` with the
  file streamed as the body. Chunked: the same with `-chunk 16777216` = PATCHes with Content-Range,
  then an empty PUT `?digest=`. The file is 512 MiB of random bytes. MB/s = 10^6 bytes/s, timed from
  the POST to the 201.
- Durable write speed: `dd if=/dev/zero of=F bs=1M count=512 conv=fsync`, in the same loop.
- Pull: `loadgen pull` = one GET of the blob, body read and discarded (page cache warm for both).
- Manifest GET/HEAD: `loadgen hammer -conc 32 -duration 3s` keeps 32 keep-alive connections with
  one request in flight each and records every latency (wrk 4.1 hangs on HEAD responses, so
  both methods use this raw HTTP/1.1 client). Accept asks for OCI and Docker v2 manifests.
- Tag list and `_catalog`: `loadgen list -conc 4 -duration 3s` fetches the whole listing again and
  again, following `Link` headers, and counts complete listings per second. Each body is checked
  with Go's `json.Valid` and its names are counted by their quotes rather than decoded: decoding
  10,000 strings cost the client more than our server spent, and capped both registries alike.
- 32 clients: `loadgen concurrent-push -clients 32 -size 8388608` makes 32 distinct random blobs
  (new each run), then starts 32 monolithic pushes at once; MB/s = 256 MiB / time until the last 201.
- Peak RSS: VmHWM from `/proc/PID/status` of a fresh registry process after a monolithic push of a
  4 GiB file.
- Container start: the busybox image (Debian's busybox-static, 1 layer) is pushed to our registry.
  Times are wall clock from bash's `$EPOCHREALTIME` around the command alone, after one untimed
  warm-up each, {runs} or more runs. crun, runc and podman run inside
  `unshare -m bash -c 'umount /sys/fs/cgroup/unified && ...'` because crun refuses hybrid cgroups.
  The crun/runc bundle is `umoci unpack` of the same image, edited by `bench/crun_bundle.py` to match
  runner's isolation: pid, net, ipc, uts, mount and cgroup namespaces, a cgroup, Docker's default
  capabilities, no_new_privs, and podman's seccomp profile.
{run_commands}
- Landlock's cost: the same `runner run`, and the same with `--security-opt landlock=off`,
  taken in turn in the same loop.
- Rootless: `bench/rootless.py` (its docstring has the details) runs `runner run` and rootless
  podman as the user `strata-rootless` (made when missing, with subordinate ids), each through
  `runuser` with a clean environment, taken in turn; every process of the user is killed after.
- Pull + unpack: a 3-layer gzip image (busybox + two 150 MB random files) in our registry, pulled
  into a fresh, empty store each run: `runner --root R pull IMAGE` then `runner --root R run IMAGE
  /bin/true`, against `podman --root R ... pull --tls-verify=false IMAGE`.
- Builds (`bench/build.py`): the same Dockerfiles and contexts (a static busybox copied into
  scratch, nothing from the internet) built by `runner build -q`, `docker build -q --network none`
  (Debian's docker.io 20.10 with `DOCKER_BUILDKIT=0` and `=1`, its own dockerd with
  `--bridge=none`) and `buildah bud --isolation chroot --layers`; each run starts from an empty
  cache for every builder (`docker builder prune -af`, `buildah rmi -af`, a fresh runner root).
  The ratio is against the faster docker builder of the run.
- Networking (`bench/network.py`), in a network namespace the bench makes (`ip netns add`,
  `nsenter --net=`), with a dockerd of its own inside it (`--iptables=true --userland-proxy=true`,
  so docker0, its rules and docker-proxy exist only there): `run --network bridge IMAGE true`
  against `podman run --rm --network bridge` and `docker run --rm` (docker0); then TCP from
  Debian's iperf3 to `-p 127.0.0.1:P:5201` of a container running `iperf3 -s` (busybox + the
  host's /usr/bin/iperf3 and its libraries, one image for all three), 7 tests of 5 s (1 s omitted)
  for each of ours, podman's and docker's published port, taken in turn (the order reversed
  every other round); medians.
- Storage: 20 images sharing 3 base layers (plus one small own layer and config each) pushed
  to a fresh registry; the bytes of the files under `DATA/storage/blobs` against the sum of the
  sizes of the distinct blobs (layers, configs and manifests).
"""


def chart(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, values, colors = [], [], []
    for r in rows:
        label = r["name"] if r["name"] != "the same" else "runner run of /bin/true"
        label = textwrap.shorten(label, 60) + "\nvs " + textwrap.shorten(r["peer_name"], 50)
        if r.get("lower_is_better"):
            label += "\n(lower is better)"
        labels.append(label)
        values.append(r["ratio"] if r.get("ratio") is not None else 0)
        colors.append("#bbbbbb" if r.get("met") is None else ("#2e8b57" if r["met"] else "#c0392b"))
    fig, ax = plt.subplots(figsize=(12, 0.7 * len(rows) + 1.5))
    y = list(range(len(rows)))[::-1]
    ax.barh(y, [max(v, 1e-3) for v in values], color=colors)
    for yi, v, r in zip(y, values, rows):
        text = f"{v:.2f}x" if r.get("ratio") is not None else r.get("note", "not measured")
        ax.text(max(v, 1e-3) * 1.08 if v else 0.011, yi, text, va="center", fontsize=8)
        goal = target_value(r)
        if goal:
            ax.plot([goal, goal], [yi - 0.4, yi + 0.4], color="black", linewidth=2)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_xscale("log")
    ax.set_xlim(0.01, max([v for v in values if v] + [10]) * 4)
    ax.axvline(1.0, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("ratio (see BENCHMARKS.md for each definition); black tick = target; "
                  "green met, red missed, grey not measured")
    ax.set_title("Strata vs peers, same run")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def target_value(r):
    t = r["target"]
    for token in t.replace(",", " ").split():
        if token.endswith("x"):
            try:
                return float(token[:-1])
            except ValueError:
                pass
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True)
    ap.add_argument("--benchdir", required=True)
    ap.add_argument("--registry", required=True)
    ap.add_argument("--runner", default="")
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--images", required=True)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--tmp", default=None)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--build-seconds", type=float, default=0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--chart", required=True)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    bench = Bench(args)
    bench.run()
    write_report(bench, args, time.monotonic() - T0)
    chart(bench.rows, args.chart)
    log(f"wrote {args.out} and {args.chart}")
    for r in bench.rows:
        ratio = f"{r['ratio']:.2f}x" if r.get("ratio") is not None else "-"
        print(f"{ratio:>9}  {'MET ' if r.get('met') else ('n/a ' if r.get('met') is None else 'MISS')}  "
              f"{r['name']} vs {r['peer_name']}")


if __name__ == "__main__":
    main()
