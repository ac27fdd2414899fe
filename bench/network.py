"""Row for networking (issue 17), side by side with podman, inside a network
namespace of the bench's own (`ip netns add`, entered with `nsenter --net=`),
so no bridge or rule reaches the machine's own namespace:

- `run` of `true` with `--network bridge`, start to exit: ours (strata0, veth,
  lease, nft table) against `podman run --rm --network bridge` (netavark,
  podman0). Docker's default bridge is not measured: the bench may start
  dockerd only with `--bridge=none --iptables=false` (shared rules), which
  has no bridge network.

Run alone:

    python3 bench/network.py --runner target/release/runner \
        --registry target/release/registry --loadgen LOADGEN --images IMAGES [--runs N]

which starts its own registry and prints the figures as JSON.
"""
import os
import subprocess
import sys

from containers import HYBRID, med, podman_cmd, sh, standalone, timed


class Netns:
    def __init__(self):
        self.name = f"strata-bench-{os.getpid()}"
        sh(["ip", "netns", "add", self.name])
        self.enter = f"nsenter --net=/run/netns/{self.name}"
        sh(["bash", "-c", f"{self.enter} ip link set lo up"])

    def close(self):
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


def measure_runner(runner, root, image, ns, runs):
    sh([runner, "--root", root, "pull", image])  # outside: the registry is on the host's 127.0.0.1
    times = []
    for i in range(runs + 1):
        t, _ = timed(f"{ns.enter} {runner} --root {root} run --network bridge {image} true")
        if i:  # the first is a warm-up (and makes the bridge)
            times.append(t * 1e3)
    return {"run_bridge_ms": med(times)}


def measure_podman(root, image, ns, runs):
    pm = podman_cmd(root)
    os.makedirs(root, exist_ok=True)
    auth = os.path.join(root, "auth.json")
    with open(auth, "w") as f:
        f.write("{}")
    sh(["unshare", "-m", "bash", "-c", f"{pm} pull -q --tls-verify=false --authfile {auth} {image}"])
    run = (f"{pm} run --rm --network bridge --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 "
           f"{image} true")
    times = []
    for i in range(runs + 1):
        t, _ = timed(f"{ns.enter} unshare -m bash -c '{HYBRID}{run}'")
        if i:
            times.append(t * 1e3)
    return {"run_bridge_ms": med(times)}


def measure(runner, image, work, runs):
    ns = Netns()
    try:
        out = {"runner": measure_runner(runner, os.path.join(work, "runner-root"), image, ns, runs)}
        print(f"[network] runner {out['runner']}", file=sys.stderr)
        out["podman"] = measure_podman(os.path.join(work, "podman"), image, ns, runs)
        print(f"[network] podman {out['podman']}", file=sys.stderr)
        return out
    finally:
        ns.close()


def network_rows(bench, image, work, stats):
    """Adds the row to a bench run (`bench.row`), runner built."""
    m = measure(bench.bins["runner"], image, work, max(bench.runs, 10))
    r, p = m["runner"], m["podman"]
    bench.info["network_rows"] = m
    ratio = p["run_bridge_ms"] / r["run_bridge_ms"]
    bench.row(name="run of true with --network bridge, start to exit (in a netns of its own)",
              unit="ms wall", ours=stats([r["run_bridge_ms"]]), peer=stats([p["run_bridge_ms"]]),
              peer_name="podman run --rm --network bridge", ratio=ratio, target=">= 5x faster",
              met=ratio >= 5, ratio_def="podman ms / ours ms",
              extra="docker's default bridge not measured (dockerd only with --bridge=none here)")


if __name__ == "__main__":
    sys.exit(standalone(measure, "sbn-"))
