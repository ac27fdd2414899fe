#!/usr/bin/env python3
"""Build rows: `runner build` against `docker build` (the classic builder and
BuildKit, with Debian's docker.io 20.10 CLI at /usr/bin/docker, whose BuildKit
is built in: DOCKER_BUILDKIT=1, no buildx plugin) and `buildah bud`, same machine, same
run, same Dockerfiles and contexts (a static busybox copied into scratch, so
nothing comes from the internet).

(buildah runs with --isolation chroot, which cannot drop the network.)
Usage: python3 bench/build.py --runner target/release/runner [--runs 3]
Needs root, dockerd (Debian's docker.io) and buildah. Prints one line per row
as `name | ours s | peer s ... | ratio` and writes bench/build_results.json.
"""
import argparse, json, os, shutil, signal, statistics, subprocess, sys, tempfile, time

BUSYBOX = "/bin/busybox"
DOCKER = "/usr/bin/docker" if os.access("/usr/bin/docker", os.X_OK) else "docker"


def sh(cmd, env=None, check=True):
    r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if check and r.returncode != 0:
        raise RuntimeError(f"{cmd}: {r.returncode}\n{r.stderr.decode()[-2000:]}")
    return r


def busy():
    """CPU busy fraction and KiB written to disk in the next 0.2 s."""
    def sample():
        cpu = [int(x) for x in open("/proc/stat").readline().split()[1:]]
        written = sum(int(f[9]) for f in (l.split() for l in open("/proc/diskstats"))
                      if len(f) > 9 and not f[2].startswith(("loop", "ram")))
        return sum(cpu), cpu[3] + cpu[4], written
    t0, i0, w0 = sample()
    time.sleep(0.2)
    t1, i1, w1 = sample()
    return 1 - (i1 - i0) / max(t1 - t0, 1), (w1 - w0) / 2


def settle():
    """Waits (at most 10 s) until the machine is quiet: the builders' daemons
    clean up in the background after a build (BuildKit's and containerd's
    garbage collection), and that would be charged to the next one."""
    os.sync()
    for _ in range(50):
        cpu, kib = busy()
        if cpu < 0.15 and kib < 1024:
            return


def timed(cmd, env=None):
    # Each builder pays for its own work only, not the previous one's
    # writeback or background clean-up.
    settle()
    t = time.monotonic()
    sh(cmd, env=env)
    return time.monotonic() - t


def write_context(d, big_mib=0, small_files=0):
    os.makedirs(d, exist_ok=True)
    shutil.copy(BUSYBOX, os.path.join(d, "busybox"))
    if big_mib:
        with open(os.path.join(d, "big.bin"), "wb") as f:
            for _ in range(big_mib):
                f.write(os.urandom(1 << 20))
    if small_files:
        sd = os.path.join(d, "files")
        os.makedirs(sd, exist_ok=True)
        for i in range(small_files):
            with open(os.path.join(sd, f"f{i}"), "w") as f:
                f.write(f"file {i}\n")


THREE_STEP = """FROM scratch
COPY busybox /bin/busybox
COPY . /ctx
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox echo hi > /hi"]
ENV DONE=1
"""

SNAPSHOT = """FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox mkdir /f && i=0; while [ $i -lt 10000 ]; do echo $i > /f/$i; i=$((i+1)); done"]
"""


class Docker:
    def __init__(self, work):
        self.dir = os.path.join(work, "docker")
        os.makedirs(self.dir)
        self.sock = os.path.join(self.dir, "docker.sock")
        self.proc = subprocess.Popen(
            ["dockerd", "--iptables=false", "--ip6tables=false", "--bridge=none",
             "--storage-driver=overlay2", "--data-root", os.path.join(self.dir, "data"),
             "--exec-root", os.path.join(self.dir, "exec"), "-H", f"unix://{self.sock}",
             "--pidfile", os.path.join(self.dir, "docker.pid")],
            stdout=open(os.path.join(self.dir, "dockerd.log"), "w"), stderr=subprocess.STDOUT)
        for _ in range(300):
            if sh([DOCKER, "-H", f"unix://{self.sock}", "version"], check=False).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("dockerd did not start")

    def build(self, ctx, tag, buildkit=False, extra=()):
        env = dict(os.environ, DOCKER_BUILDKIT="1" if buildkit else "0", DOCKER_CONFIG=self.dir)
        return [DOCKER, "-H", f"unix://{self.sock}", "build", "-q", "--network", "none", "-t", tag, *extra, ctx], env

    def buildkit_available(self, work):
        """A BuildKit build of an empty Dockerfile works (with --bridge=none a
        RUN needs --network none: BuildKit's default network wants the bridge)."""
        d = os.path.join(work, "probe")
        os.makedirs(d, exist_ok=True)
        open(os.path.join(d, "Dockerfile"), "w").write("FROM scratch\n")
        c, env = self.build(d, "bench/probe:1", buildkit=True)
        return sh(c, env=env, check=False).returncode == 0

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


NAMES = {
    "cold": "runner build: cold build, 3 steps (COPY busybox, COPY 64 MiB context, RUN), scratch base",
    "cached": "runner build: fully cached rebuild of the same",
    "one-changed": "runner build: rebuild after one changed file in a 10,000-file context (COPY . and RUN re-run)",
    "snapshot": "runner build: RUN writing 10,000 small files, --no-cache (run + snapshot + commit)",
}
# Issue 15's targets, as the speed-up over the faster docker builder (and over buildah).
TARGETS = {"cold": (2.0, None), "cached": (5.0, 20.0), "one-changed": (1 / 0.3, None), "snapshot": (3.0, None)}


def measure(runner, runs, work):
    """Times each workload for runner, docker (classic, and BuildKit when it
    works) and buildah, alternating peers within each run. Returns
    ({workload: {peer: [seconds]}}, {peer: why it was not measured})."""
    docker = Docker(work)
    try:
        peers = {"runner": None, "docker classic": None, "buildah": None}
        if docker.buildkit_available(work):
            peers["docker buildkit"] = None
        else:
            peers["docker buildkit"] = "BuildKit build of an empty Dockerfile failed"
        storage = os.path.join(work, "buildah")

        def cmd(peer, ctx, tag, root, extra=()):
            if peer == "runner":
                return [runner, "--root", root, "build", "-q", "-t", tag, *extra, ctx], None
            if peer.startswith("docker"):
                return docker.build(ctx, tag, buildkit=peer == "docker buildkit", extra=extra)
            return ["buildah", "--root", storage, "--runroot", storage + "-run", "bud", "-q",
                    "--isolation", "chroot", "--layers", "-t", tag, *extra, ctx], None

        def reset(peer, root):
            if peer == "runner":
                shutil.rmtree(root, ignore_errors=True)
            elif peer.startswith("docker"):
                sh([DOCKER, "-H", f"unix://{docker.sock}", "builder", "prune", "-af"], check=False)
                sh([DOCKER, "-H", f"unix://{docker.sock}", "image", "prune", "-af"], check=False)
            else:
                sh(["buildah", "--root", storage, "--runroot", storage + "-run", "rmi", "-af"], check=False)

        big = os.path.join(work, "big")
        write_context(big, big_mib=64)
        open(os.path.join(big, "Dockerfile"), "w").write(THREE_STEP)
        many = os.path.join(work, "many")
        write_context(many, small_files=10000)
        open(os.path.join(many, "Dockerfile"), "w").write(THREE_STEP)
        snap = os.path.join(work, "snap")
        write_context(snap)
        open(os.path.join(snap, "Dockerfile"), "w").write(SNAPSHOT)
        live = [p for p, why in peers.items() if why is None]
        rows = {k: {p: [] for p in live} for k in NAMES}
        for run in range(runs):
            # The order turns each run, so no builder always follows the same one.
            turn = live[run % len(live):] + live[:run % len(live)]
            for peer in [p for p in turn if peers[p] is None]:
                root = os.path.join(work, f"runner-root-{run}")
                try:
                    reset(peer, root)
                    c, env = cmd(peer, big, "bench/big:1", root)
                    rows["cold"][peer].append(timed(c, env))
                    rows["cached"][peer].append(timed(c, env))
                    c, env = cmd(peer, many, "bench/many:1", root)
                    timed(c, env)
                    with open(os.path.join(many, "files", "f77"), "a") as f:
                        f.write(f"changed {run} {peer}\n")
                    rows["one-changed"][peer].append(timed(c, env))
                    c, env = cmd(peer, snap, "bench/snap:1", root, extra=["--no-cache"])
                    rows["snapshot"][peer].append(timed(c, env))
                except RuntimeError as e:
                    print(f"{peer}: {e}", file=sys.stderr)
                    peers[peer] = str(e).splitlines()[0]
                print(f"[build] run {run} {peer}: " + ", ".join(
                    f"{k} {v[peer][-1]:.3f}s" for k, v in rows.items() if v[peer]), file=sys.stderr)
        return rows, {p: why for p, why in peers.items() if why}
    finally:
        docker.stop()


def build_rows(bench, stats):
    """Adds the four build rows to a bench run (`bench.row`); the runner is built."""
    work = os.path.join(bench.work, "build")
    os.makedirs(work, exist_ok=True)
    rows, missing = measure(bench.bins["runner"], max(bench.runs, 3), work)
    bench.info["build_not_measured"] = missing
    for k, by in rows.items():
        ours = by.get("runner")
        dockers = {p: statistics.median(v) for p, v in by.items() if p.startswith("docker") and v}
        if not ours or not dockers:
            continue
        best = min(dockers, key=dockers.get)
        ours_med = statistics.median(ours)
        ratio = dockers[best] / ours_med
        want, want_buildah = TARGETS[k]
        met = ratio >= want
        others = [f"{p}: {fmt_s(v)} s" for p, v in by.items() if p not in ("runner", best) and v]
        target = f">= {want:.2f}x faster than the faster docker builder"
        if want_buildah and by.get("buildah"):
            vs_buildah = statistics.median(by["buildah"]) / ours_med
            met = met and vs_buildah >= want_buildah
            target += f", and >= {want_buildah:.0f}x faster than buildah"
            others.append(f"buildah / ours = {vs_buildah:.2f}x")
        bench.row(name=NAMES[k], unit="s wall", ours=stats(ours), peer=stats(by[best]),
                  peer_name=f"{best} (docker.io 20.10)", ratio=ratio, target=target, met=met,
                  ratio_def=f"{best} s / ours s", extra="; ".join(others))


def fmt_s(values):
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runner", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "build_results.json"))
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="strata-build-bench-")
    try:
        rows, missing = measure(a.runner, a.runs, work)
        results = []
        for k, by in rows.items():
            med = {p: statistics.median(v) for p, v in by.items() if v}
            ours = med.get("runner")
            line = {"name": NAMES[k], "median_s": med}
            for p, v in med.items():
                if p != "runner" and ours:
                    line[f"ratio vs {p}"] = round(v / ours, 2)
            results.append(line)
            print(f"{NAMES[k]} | " + " | ".join(f"{p} {v:.3f}s" for p, v in med.items())
                  + " | " + " | ".join(f"{p}/runner {v / ours:.2f}x" for p, v in med.items() if p != "runner" and ours))
        json.dump({"rows": results, "runs": a.runs, "not_measured": missing}, open(a.out, "w"), indent=2)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
