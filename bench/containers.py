"""Rows for containers that live on (issue 16), side by side with podman and docker:

- `run -d` of a sleeping container, until the command returns;
- `exec` of `true` in a running container;
- RSS of the monitor of one idle container, against podman's conmon.

`container_rows(bench, S, busybox, podman)` adds them to a full bench run
(bench.py calls it from its runner rows). Run alone, only these rows:

    python3 bench/containers.py --runner target/release/runner \
        --registry target/release/registry --loadgen LOADGEN --images IMAGES [--runs N]

which starts its own registry and dockerd (Debian's docker.io, own temp
dirs, stopped by pid) and prints the figures as JSON.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HYBRID = "umount /sys/fs/cgroup/unified && "


def sh(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode:
        raise RuntimeError(f"{cmd} failed ({p.returncode}): {p.stderr.strip()}")
    return p.stdout


def timed(cmd):
    """Seconds until the shell command returns, and its stdout."""
    t = time.monotonic()
    out = sh(["bash", "-c", cmd])
    return time.monotonic() - t, out.strip()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def med(values):
    return statistics.median(values) if values else None


def measure_runner(runner, root, image, runs):
    sh([runner, "--root", root, "pull", image])
    run_d, execs, rss = [], [], []
    for i in range(runs + 1):
        t, cid = timed(f"{runner} --root {root} run -d {image} sleep 600")
        if i:  # the first is a warm-up
            run_d.append(t * 1e3)
        if i == 1:
            for j in range(runs + 1):
                te, _ = timed(f"{runner} --root {root} exec {cid} true")
                if j:
                    execs.append(te * 1e3)
            time.sleep(1)  # idle
            with open(os.path.join(root, "containers", cid, "state.json")) as f:
                rss.append(rss_kib(json.load(f)["owner_pid"]))
        sh([runner, "--root", root, "rm", "-f", cid])
    return {"run_d_ms": med(run_d), "exec_ms": med(execs), "monitor_rss_kib": med(rss)}


def podman_cmd(root):
    return (f"podman --root {root}/root --runroot {root}/runroot --storage-driver overlay "
            f"--cgroup-manager cgroupfs --events-backend none")


def measure_podman(root, image, runs):
    pm = podman_cmd(root)
    os.makedirs(root, exist_ok=True)
    auth = os.path.join(root, "auth.json")
    with open(auth, "w") as f:
        f.write("{}")
    sh(["unshare", "-m", "bash", "-c", f"{pm} pull -q --tls-verify=false --authfile {auth} {image}"])
    run = (f"{pm} run -d --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 "
           f"{image} sleep 600")
    run_d, execs, rss = [], [], []
    for i in range(runs + 1):
        t, cid = timed(f"unshare -m bash -c '{HYBRID}{run}'")
        cid = cid.splitlines()[-1]
        if i:
            run_d.append(t * 1e3)
        if i == 1:
            for j in range(runs + 1):
                te, _ = timed(f"unshare -m bash -c '{HYBRID}{pm} exec {cid} true'")
                if j:
                    execs.append(te * 1e3)
            time.sleep(1)
            conmon = int(sh(["bash", "-c", f"{pm} inspect -f '{{{{.State.ConmonPid}}}}' {cid}"]).strip())
            rss.append(rss_kib(conmon))
        sh(["unshare", "-m", "bash", "-c", f"{HYBRID}{pm} rm -f -t 0 {cid}"])
    return {"run_d_ms": med(run_d), "exec_ms": med(execs), "conmon_rss_kib": med(rss)}


def start_dockerd(work):
    d = {k: os.path.join(work, k) for k in ("data", "exec", "cfg")}
    for p in d.values():
        os.makedirs(p, exist_ok=True)
    sock = os.path.join(work, "docker.sock")
    pidfile = os.path.join(work, "docker.pid")
    log = open(os.path.join(work, "dockerd.log"), "w")
    proc = subprocess.Popen(["dockerd", "--iptables=false", "--ip6tables=false", "--bridge=none",
                             "--storage-driver=overlay2", "--data-root", d["data"], "--exec-root", d["exec"],
                             "-H", f"unix://{sock}", "--pidfile", pidfile], stdout=log, stderr=log)
    docker = f"DOCKER_CONFIG={d['cfg']} /usr/bin/docker -H unix://{sock}"
    for _ in range(300):
        if subprocess.run(["bash", "-c", f"{docker} version"], capture_output=True).returncode == 0:
            return proc, docker
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("dockerd did not start")


def measure_docker(work, image, runs):
    proc, docker = start_dockerd(work)
    try:
        sh(["bash", "-c", f"{docker} pull -q {image}"])
        run_d, execs = [], []
        for i in range(runs + 1):
            t, cid = timed(f"{docker} run -d --network none {image} sleep 600")
            if i:
                run_d.append(t * 1e3)
            if i == 1:
                for j in range(runs + 1):
                    te, _ = timed(f"{docker} exec {cid} true")
                    if j:
                        execs.append(te * 1e3)
            sh(["bash", "-c", f"{docker} rm -f {cid}"])
        return {"run_d_ms": med(run_d), "exec_ms": med(execs)}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def measure(runner, image, work, runs):
    out = {"runner": measure_runner(runner, os.path.join(work, "runner-root"), image, runs)}
    print(f"[containers] runner {out['runner']}", file=sys.stderr)
    out["podman"] = measure_podman(os.path.join(work, "podman"), image, runs)
    print(f"[containers] podman {out['podman']}", file=sys.stderr)
    out["docker"] = measure_docker(os.path.join(work, "docker"), image, runs)
    print(f"[containers] docker {out['docker']}", file=sys.stderr)
    return out


def container_rows(bench, image, work, stats):
    """Adds the three rows to a bench run (`bench.row`), runner built."""
    m = measure(bench.bins["runner"], image, work, max(bench.runs, 10))
    r, p, d = m["runner"], m["podman"], m["docker"]
    bench.info["container_rows"] = m
    ratio = p["run_d_ms"] / r["run_d_ms"]
    bench.row(name="run -d of a sleeping container, until the command returns", unit="ms wall",
              ours=stats([r["run_d_ms"]]), peer=stats([p["run_d_ms"]]), peer_name="podman run -d --network none",
              ratio=ratio, target=">= 5x faster", met=ratio >= 5, ratio_def="podman ms / ours ms",
              extra=f"docker run -d (dockerd from Debian): {d['run_d_ms']:.1f} ms")
    ratio = p["exec_ms"] / r["exec_ms"]
    bench.row(name="exec of true in a running container", unit="ms wall", ours=stats([r["exec_ms"]]),
              peer=stats([p["exec_ms"]]), peer_name="podman exec", ratio=ratio, target=">= 5x faster",
              met=ratio >= 5, ratio_def="podman ms / ours ms", extra=f"docker exec: {d['exec_ms']:.1f} ms")
    ratio = r["monitor_rss_kib"] / p["conmon_rss_kib"]
    bench.row(name="RSS of the monitor of one idle container", unit="KiB", ours=stats([r["monitor_rss_kib"]]),
              peer=stats([p["conmon_rss_kib"]]), peer_name="conmon under podman", ratio=ratio,
              target="<= 1.0x", met=ratio <= 1.0, ratio_def="ours KiB / conmon KiB")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def standalone(measure_fn, prefix):
    """Runs `measure_fn(runner, image, work, runs)` on its own: a registry of
    ours on a free loopback port with the busybox image of bench/images.py
    pushed to it; prints the figures as JSON."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--runner", required=True)
    ap.add_argument("--registry", required=True)
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--images", required=True)
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix=prefix, dir="/tmp")  # podman refuses a runroot over 50 characters
    port = free_port()
    reg = subprocess.Popen([args.registry, "serve", "--listen", f"127.0.0.1:{port}", "--data",
                            os.path.join(work, "reg")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        sh([args.loadgen, "push-image", "-base", f"http://127.0.0.1:{port}", "-repo", "bench/busybox",
            "-tag", "latest", "-layout", os.path.join(args.images, "busybox")])
        image = f"127.0.0.1:{port}/bench/busybox:latest"
        print(json.dumps(measure_fn(args.runner, image, work, args.runs), indent=1))
    finally:
        reg.kill()
        reg.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(standalone(measure, "sbc-"))
