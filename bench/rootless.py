"""Rootless rows (issue 21): `runner run` started by an ordinary user,
against rootless podman started by the same user, same image, same run.

The user is the one conformance/rootless.sh makes (`strata-rootless`, with
subordinate ids 700000+65536 in /etc/subuid and /etc/subgid); it is made
here too when missing, and kept, as that test keeps it. Each program gets a
clean environment (HOME, XDG_DATA_HOME and XDG_RUNTIME_DIR under a fresh
directory in the user's home) and runs through `runuser`, whose own cost
both pay. podman runs as the root rows run it (cgroupfs, no events, the
same --ulimit), in a mount namespace without the cgroup v2 hierarchy
(crun refuses the hybrid layout), with --network none as ours. Neither has
cgroup limits here: this machine has cgroup v1, where no subtree can be
delegated.

Cleanup: every process of the user (both programs leave a pause process
that holds the user namespace) is killed by PID, and the directory goes.
"""
import os
import shutil
import subprocess
import time

USER = "strata-rootless"
SUB_START, SUB_COUNT = 700000, 65536
HYBRID = "umount /sys/fs/cgroup/unified && "


def ensure_user():
    """Makes the user and its id ranges when missing; returns its home."""
    if subprocess.run(["id", USER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", USER], check=True)
    for f in ("/etc/subuid", "/etc/subgid"):
        lines = open(f).read().splitlines() if os.path.exists(f) else []
        if not any(line.startswith(USER + ":") for line in lines):
            with open(f, "a") as out:
                out.write(f"{USER}:{SUB_START}:{SUB_COUNT}\n")
    return subprocess.run(["getent", "passwd", USER], capture_output=True, text=True,
                          check=True).stdout.split(":")[5]


def user_pids():
    uid = int(subprocess.run(["id", "-u", USER], capture_output=True, text=True, check=True).stdout)
    out = subprocess.run(["ps", "-eo", "pid=,uid=,stat="], capture_output=True, text=True).stdout
    pids = []
    for line in out.splitlines():
        pid, puid, stat = line.split()[:3]
        puid = int(puid)
        if (puid == uid or SUB_START <= puid < SUB_START + SUB_COUNT) and not stat.startswith("Z"):
            pids.append(int(pid))
    return pids


def kill_user_processes():
    for _ in range(50):
        pids = user_pids()
        if not pids:
            return
        for p in pids:
            try:
                os.kill(p, 9)
            except ProcessLookupError:
                pass
        time.sleep(0.1)


def rootless_rows(bench, image, runner, root_runner_ms, stats, timed_bash):
    """Adds the rootless row; `root_runner_ms` is the root run's figure."""
    home = ensure_user()
    rd = os.path.join(home, f"bench.{os.getpid()}")
    try:
        for d in ("data", "rt", "bin"):
            os.makedirs(os.path.join(rd, d))
        # The user cannot reach the build tree; the binary goes beside its state.
        exe = os.path.join(rd, "bin", "runner")
        shutil.copy(runner, exe)
        with open(os.path.join(rd, "auth.json"), "w") as f:
            f.write("{}")
        subprocess.run(["chown", "-R", f"{USER}:{USER}", rd], check=True)
        os.chmod(os.path.join(rd, "rt"), 0o700)
        env = (f"runuser -u {USER} -- env -i HOME={home} PATH=/usr/sbin:/usr/bin:/sbin:/bin "
               f"XDG_DATA_HOME={rd}/data XDG_RUNTIME_DIR={rd}/rt")
        pm = (f"{env} podman --root {rd}/pm --runroot {rd}/rt/pm --storage-driver overlay "
              f"--cgroup-manager cgroupfs --events-backend none")
        ours = f"{env} {exe} run --network none {image} /bin/true"
        theirs = (f"{pm} run --rm --network none --ulimit nofile=1024:1024 "
                  f"--ulimit nproc=1024:1024 {image} /bin/true")
        subprocess.run(["bash", "-c", f"{env} {exe} pull {image}"], check=True, capture_output=True)
        subprocess.run(["unshare", "-m", "bash", "-c",
                        f"{HYBRID}{pm} pull -q --tls-verify=false --authfile {rd}/auth.json {image}"],
                       check=True, capture_output=True)

        def ours_s():
            return timed_bash(f"s=$EPOCHREALTIME; {ours} 2>/dev/null && echo $s $EPOCHREALTIME")

        def theirs_s():
            return timed_bash(f"unshare -m bash -c '{HYBRID}s=$EPOCHREALTIME; {theirs} 2>/dev/null "
                              f"&& echo $s $EPOCHREALTIME'")

        ours_s(), theirs_s()  # warm-up: each starts its pause process here
        times = {"ours": [], "podman": []}
        for _ in range(max(bench.runs, 10)):
            times["ours"].append(ours_s() * 1e3)
            times["podman"].append(theirs_s() * 1e3)
        o, p = stats(times["ours"]), stats(times["podman"])
        r = p["median"] / o["median"]
        bench.info["run_commands"]["runner rootless"] = ours
        bench.info["run_commands"]["podman rootless"] = theirs
        bench.row(name="rootless: runner run of /bin/true by an ordinary user (user namespace from subuid)",
                  unit="ms wall", ours=o, peer=p, peer_name="rootless podman run --rm --network none, same user",
                  ratio=r, target="none (a figure; issue 21 sets no target)", met=None,
                  ratio_def="podman ms / ours ms",
                  extra=f"the same run as root (row above): {root_runner_ms:.1f} ms; both through runuser")
    finally:
        kill_user_processes()
        shutil.rmtree(rd, ignore_errors=True)
