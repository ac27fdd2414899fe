"""Turn an umoci-unpacked bundle into one isolated like `runner run`:
/bin/true, no terminal, pid/net/ipc/uts/mount/cgroup namespaces, Docker's
default capabilities, no_new_privs, and the seccomp profile podman uses
(/usr/share/containers/seccomp.json, converted to the OCI runtime format).

Usage: crun_bundle.py BUNDLE_DIR
"""

import json
import sys

CAPS = [f"CAP_{c}" for c in (
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
    "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE")]
ARCH = "SCMP_ARCH_X86_64"


def applies(rule, key):
    cond = rule.get(key) or {}
    if "arches" in cond and not set(cond["arches"]) & {"amd64", "x86_64"}:
        return False
    if "caps" in cond and not set(cond["caps"]) <= set(CAPS):
        return False
    return True


def seccomp(profile_path="/usr/share/containers/seccomp.json"):
    with open(profile_path) as f:
        profile = json.load(f)
    syscalls = []
    for rule in profile["syscalls"]:
        if not rule.get("includes") or applies(rule, "includes"):
            excl = rule.get("excludes") or {}
            if excl and (("caps" in excl and set(excl["caps"]) & set(CAPS)) or
                         ("arches" in excl and set(excl["arches"]) & {"amd64", "x86_64"})):
                continue
            out = {"names": rule["names"], "action": rule["action"]}
            if rule.get("args"):
                out["args"] = rule["args"]
            if rule.get("errnoRet") is not None:
                out["errnoRet"] = rule["errnoRet"]
            syscalls.append(out)
    return {
        "defaultAction": profile["defaultAction"],
        "defaultErrnoRet": profile.get("defaultErrnoRet", 1),
        "architectures": [ARCH, "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": syscalls,
    }


def main():
    path = sys.argv[1] + "/config.json"
    with open(path) as f:
        config = json.load(f)
    process = config["process"]
    process["terminal"] = False
    process["args"] = ["/bin/true"]
    process["noNewPrivileges"] = True
    process["capabilities"] = {k: CAPS for k in ("bounding", "effective", "permitted")}
    linux = config["linux"]
    linux["namespaces"] = [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "cgroup")]
    linux["seccomp"] = seccomp()
    linux["cgroupsPath"] = "/strata-bench-crun"
    with open(path, "w") as f:
        json.dump(config, f, indent=1)


if __name__ == "__main__":
    main()
