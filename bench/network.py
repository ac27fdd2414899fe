"""Rows for networking (issue 17), side by side with podman and docker,
inside a network namespace of the bench's own (`ip netns add`, entered with
`nsenter --net=`), so no bridge, rule or daemon socket reaches the machine's
own namespace:

- `run` of `true` with `--network bridge`, start to exit: ours (strata0, veth,
  lease, nft table) against `podman run --rm --network bridge` (podman0) and
  `docker run --rm` on docker's default bridge (docker0).
- TCP throughput host -> container through `-p 127.0.0.1:P:5201`: iperf3
  (Debian's) as the client in the namespace, `iperf3 -s` in the container,
  against podman's published port and docker's (docker-proxy, which is what a
  connection to 127.0.0.1 goes through with `--userland-proxy=true`).

The container image with iperf3 is made here, offline: busybox plus the host's
/usr/bin/iperf3 and the shared libraries `ldd` names, as an OCI layout
(bench/images.py's helpers), copied by skopeo into the same registry as the
busybox image. Ours and podman pull it from there; docker loads it from a
docker-archive skopeo writes, since its daemon lives in the namespace, where
the registry's 127.0.0.1 is not.

The dockerd for both docker figures runs *inside* the namespace
(`nsenter --net=`) with `--iptables=true --userland-proxy=true` and its own
temp data-root, exec-root, pidfile and socket, so docker0, its iptables rules
and docker-proxy exist only there; the bench checks that the host's links,
nft ruleset and bridge sysctls are the same before and after.

Run alone:

    python3 bench/network.py --runner target/release/runner \
        --registry target/release/registry --loadgen LOADGEN --images IMAGES [--runs N]

which starts its own registry and prints the figures as JSON.
"""
import contextlib
import json
import os
import signal
import subprocess
import sys
import time

from containers import HYBRID, med, podman_cmd, sh, standalone, timed

IPERF = "/usr/bin/iperf3"
IPERF_SECONDS = 5  # per measured test, after 1 s omitted (slow start)
IPERF_RUNS = 7  # median of, each peer in turn
PORTS = {"runner": 15201, "podman": 15202, "docker": 15203}  # in the bench's own namespace


class Netns:
    def __init__(self):
        self.name = f"strata-bench-{os.getpid()}"
        sh(["ip", "netns", "add", self.name])
        self.enter = f"nsenter --net=/run/netns/{self.name}"
        sh(["bash", "-c", f"{self.enter} ip link set lo up"])

    def close(self):
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


def host_snapshot():
    """What dockerd with iptables on could change in the host's namespace."""
    snap = {"links": sh(["ip", "-br", "link"]), "nft": sh(["nft", "list", "ruleset"])}
    for d in ("/proc/sys/net/bridge", "/proc/sys/net/ipv4"):
        for n in ("bridge-nf-call-iptables", "bridge-nf-call-ip6tables", "ip_forward"):
            p = os.path.join(d, n)
            if os.path.exists(p):
                snap[p] = open(p).read()
    return snap


def iperf_layer():
    """A tar of /usr/bin/iperf3 and the libraries it loads, at their paths."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import images
    files = [IPERF]
    for line in sh(["ldd", IPERF]).splitlines():
        parts = line.split()
        path = parts[2] if "=>" in parts and len(parts) > 2 else parts[0]
        if path.startswith("/"):
            files.append(path)
    entries, dirs = [], set()
    for path in files:
        name = path.lstrip("/")
        parent = os.path.dirname(name)
        while parent and parent not in dirs:
            dirs.add(parent)
            parent = os.path.dirname(parent)
        with open(os.path.realpath(path), "rb") as f:
            entries.append((name, f.read(), 0o755))
    return images, images.tar_bytes([(d, None, 0o755) for d in sorted(dirs)] + entries)


def iperf_image(busybox_ref, work):
    """Pushes busybox + iperf3 as `bench/iperf3:latest` next to `busybox_ref`;
    returns its reference."""
    images, layer = iperf_layer()
    bb = images.busybox_tar()
    layout = os.path.join(work, "iperf3-layout")
    images.Layout(layout).image([(bb, images.gz(bb)), (layer, images.gz(layer))], "latest", "iperf3")
    ref = busybox_ref.split("/", 1)[0] + "/bench/iperf3:latest"
    sh(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:latest", f"docker://{ref}"])
    return ref


def iperf_wait(ns, port):
    """Waits for the server behind 127.0.0.1:port (a 1 s test that succeeds:
    docker-proxy accepts before the container listens)."""
    for _ in range(100):
        if subprocess.run(["bash", "-c", f"{ns.enter} {IPERF} -c 127.0.0.1 -p {port} -J -t 1"],
                          capture_output=True).returncode == 0:
            return
        time.sleep(0.2)
    raise RuntimeError(f"no iperf3 server on 127.0.0.1:{port} in {ns.name}")


def iperf_test(ns, port):
    """Gbit/s received in one iperf3 test to 127.0.0.1:port in the namespace."""
    out = json.loads(sh(["bash", "-c", f"{ns.enter} {IPERF} -c 127.0.0.1 -p {port} -J -t {IPERF_SECONDS} -O 1"]))
    return out["end"]["sum_received"]["bits_per_second"] / 1e9


def run_true(cmd, runs):
    times = []
    for i in range(runs + 1):
        t, _ = timed(cmd)
        if i:  # the first is a warm-up (and makes the bridge)
            times.append(t * 1e3)
    return med(times)


def quiet(cmd):
    subprocess.run(["bash", "-c", cmd], capture_output=True)


class Runner:
    name = "runner"

    def __init__(self, runner, root, ns):
        self.rn, self.ns = f"{runner} --root {root}", ns

    def prepare(self, image, iperf):
        for ref in (image, iperf):  # outside: the registry is on the host's 127.0.0.1
            sh(["bash", "-c", f"{self.rn} pull {ref}"])

    def run_true(self, image, runs):
        return run_true(f"{self.ns.enter} {self.rn} run --network bridge {image} true", runs)

    def serve(self, iperf, port, cleanup):
        _, cid = timed(f"{self.ns.enter} {self.rn} run -d -p 127.0.0.1:{port}:5201 {iperf} {IPERF} -s")
        cleanup.callback(quiet, f"{self.ns.enter} {self.rn} rm -f {cid}")


class Podman:
    name = "podman"
    limits = "--ulimit nofile=1024:1024 --ulimit nproc=1024:1024"

    def __init__(self, root, ns):
        self.root, self.pm, self.ns = root, podman_cmd(root), ns

    def prepare(self, image, iperf):
        os.makedirs(self.root, exist_ok=True)
        auth = os.path.join(self.root, "auth.json")
        with open(auth, "w") as f:
            f.write("{}")
        for ref in (image, iperf):
            sh(["unshare", "-m", "bash", "-c", f"{self.pm} pull -q --tls-verify=false --authfile {auth} {ref}"])

    def cmd(self, args):
        return f"{self.ns.enter} unshare -m bash -c '{HYBRID}{self.pm} {args}'"

    def run_true(self, image, runs):
        return run_true(self.cmd(f"run --rm --network bridge {self.limits} {image} true"), runs)

    def serve(self, iperf, port, cleanup):
        _, cid = timed(self.cmd(f"run -d --network bridge {self.limits} -p 127.0.0.1:{port}:5201 "
                                f"{iperf} {IPERF} -s"))
        cleanup.callback(quiet, self.cmd(f"rm -f -t 0 {cid.splitlines()[-1]}"))


class Docker:
    """dockerd in the namespace, with its bridge, iptables and docker-proxy
    there; its own temp dirs and socket."""
    name = "docker"

    def __init__(self, work, ns):
        self.work, self.ns = work, ns

    def start(self, cleanup):
        d = {k: os.path.join(self.work, k) for k in ("data", "exec", "cfg")}
        for p in d.values():
            os.makedirs(p, exist_ok=True)
        sock = os.path.join(self.work, "docker.sock")
        log = open(os.path.join(self.work, "dockerd.log"), "w")
        proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{self.ns.name}", "dockerd", "--iptables=true", "--ip6tables=false",
             "--userland-proxy=true", "--storage-driver=overlay2", "--data-root", d["data"],
             "--exec-root", d["exec"], "-H", f"unix://{sock}", "--pidfile", os.path.join(self.work, "docker.pid")],
            stdout=log, stderr=log)  # nsenter execs dockerd: proc.pid is dockerd's
        cleanup.callback(stop, proc)
        self.docker = f"DOCKER_CONFIG={d['cfg']} /usr/bin/docker -H unix://{sock}"
        for _ in range(300):
            if subprocess.run(["bash", "-c", f"{self.docker} version"], capture_output=True).returncode == 0:
                return
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"dockerd did not start in {self.ns.name} (see {self.work}/dockerd.log)")

    def prepare(self, image, iperf):
        for ref in (image, iperf):  # the daemon cannot reach the host's 127.0.0.1: load an archive
            name = ref.split("/", 1)[1]
            tar = os.path.join(self.work, name.replace("/", "_").replace(":", "_") + ".tar")
            sh(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{ref}", f"docker-archive:{tar}:{name}"])
            sh(["bash", "-c", f"{self.docker} load -q -i {tar}"])

    def run_true(self, image, runs):
        return run_true(f"{self.docker} run --rm {image.split('/', 1)[1]} true", runs)

    def serve(self, iperf, port, cleanup):
        _, cid = timed(f"{self.docker} run -d -p 127.0.0.1:{port}:5201 {iperf.split('/', 1)[1]} {IPERF} -s")
        cleanup.callback(quiet, f"{self.docker} rm -f {cid}")


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def podman_leftovers(before):
    """Removes the empty /run/netns/netns-* files podman's CNI left behind
    (made during this run, mounted nowhere: their mounts were in the bench's
    private mount namespaces)."""
    for n in set(os.listdir("/run/netns")) - before:
        p = os.path.join("/run/netns", n)
        if n.startswith("netns-") and os.path.getsize(p) == 0 and not os.path.ismount(p):
            os.remove(p)


def measure(runner, image, work, runs):
    """Each peer's `run true` in turn; then the three iperf3 servers at once,
    tested in turn (ours, podman, docker, docker, podman, ours, ...) so that
    a change in the machine's load hits all three alike."""
    host_before = host_snapshot()
    ns = Netns()
    netns_before = set(os.listdir("/run/netns"))  # exists now
    out = {}
    try:
        with contextlib.ExitStack() as cleanup:
            iperf = iperf_image(image, work)
            docker = Docker(os.path.join(work, "docker"), ns)
            peers = [Runner(runner, os.path.join(work, "runner-root"), ns),
                     Podman(os.path.join(work, "podman"), ns), docker]
            for p in peers:
                if p is docker:
                    docker.start(cleanup)
                p.prepare(image, iperf)
                out[p.name] = {"run_bridge_ms": p.run_true(image, runs), "tcp_gbps_runs": []}
                print(f"[network] {p.name} run true: {out[p.name]['run_bridge_ms']:.1f} ms", file=sys.stderr)
            for p in peers:
                p.serve(iperf, PORTS[p.name], cleanup)
            for p in peers:
                iperf_wait(ns, PORTS[p.name])
            out["docker"]["docker_proxy_pids"] = subprocess.run(  # read only: the proxy is in the path
                ["pgrep", "-f", f"docker-proxy.*-host-port {PORTS['docker']}"],
                capture_output=True, text=True).stdout.split()
            for i in range(IPERF_RUNS):  # in turn, the order reversed every other round
                for p in peers if i % 2 == 0 else peers[::-1]:
                    out[p.name]["tcp_gbps_runs"].append(iperf_test(ns, PORTS[p.name]))
            for p in peers:
                out[p.name]["tcp_gbps"] = med(out[p.name]["tcp_gbps_runs"])
                print(f"[network] {p.name} tcp: {out[p.name]['tcp_gbps_runs']} Gbit/s", file=sys.stderr)
    finally:
        ns.close()
        podman_leftovers(netns_before)
    host_after = host_snapshot()
    out["host_namespace_unchanged"] = host_before == host_after
    if host_before != host_after:
        print(f"[network] the host namespace changed during the run: "
              f"{[k for k in host_before if host_before[k] != host_after.get(k)]}", file=sys.stderr)
    return out


def network_rows(bench, image, work, stats):
    """Adds the rows to a bench run (`bench.row`), runner built."""
    m = measure(bench.bins["runner"], image, work, max(bench.runs, 10))
    r, p, d = m["runner"], m["podman"], m["docker"]
    bench.info["network_rows"] = m
    ratio = p["run_bridge_ms"] / r["run_bridge_ms"]
    bench.row(name="run of true with --network bridge, start to exit (in a netns of its own)",
              unit="ms wall", ours=stats([r["run_bridge_ms"]]), peer=stats([p["run_bridge_ms"]]),
              peer_name="podman run --rm --network bridge", ratio=ratio, target=">= 5x faster",
              met=ratio >= 5, ratio_def="podman ms / ours ms",
              extra=f"docker run --rm, default bridge (dockerd in the netns): {d['run_bridge_ms']:.1f} ms")
    best, best_name = max((p, "podman run -p (CNI portmap: DNAT)"), (d, "docker run -p (docker-proxy)"),
                          key=lambda x: x[0]["tcp_gbps"])
    ratio = r["tcp_gbps"] / best["tcp_gbps"]
    bench.row(name="TCP throughput host -> container through -p on 127.0.0.1 (iperf3, in a netns)",
              unit="Gbit/s", ours=stats(r["tcp_gbps_runs"]), peer=stats(best["tcp_gbps_runs"]), peer_name=best_name,
              ratio=ratio, target=">= 1.0x the better peer", met=ratio >= 1.0,
              ratio_def="ours Gbit/s / better peer's Gbit/s",
              extra=f"podman {p['tcp_gbps']:.2f}, docker-proxy {d['tcp_gbps']:.2f} Gbit/s")


if __name__ == "__main__":
    sys.exit(standalone(measure, "sbn-"))
