"""Compares BASE.docker.tar/json with BASE.runner.tar/json (see build_compare.sh):
file trees from `docker export` (type, mode, owner, content, link target,
device numbers) and the image configs' fields a Dockerfile sets.
BASE ends in .classic or .buildkit (the builder that made BASE.docker.*); where
the two builders differ the runner follows BuildKit, and the classic
builder's side of those differences is accepted here (docs/build.md).
Paths after BASE are RUN --mount targets (and the parents made for them):
docker 20.10's BuildKit (0.8) leaves them in the image as empty
directories, newer BuildKit (0.10 on) and the runner leave them out; that
side of the difference is accepted for those paths only."""
import hashlib
import json
import sys
import tarfile

SKIP_TOP = {"proc", "sys", "dev"}
SKIP = {".dockerenv", "etc/hostname", "etc/hosts", "etc/resolv.conf", "etc/mtab"}
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
KEYS = ["Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Volumes",
        "Labels", "StopSignal", "Healthcheck", "Shell", "OnBuild"]


def tree(path):
    out = {}
    with tarfile.open(path) as t:
        for m in t.getmembers():
            n = m.name.rstrip("/")
            if n in SKIP or n.split("/")[0] in SKIP_TOP:
                continue
            data = hashlib.sha256(t.extractfile(m).read()).hexdigest()[:12] if m.isfile() else ""
            kind = "file" if m.islnk() or m.isfile() else m.type.decode()
            out[n] = (kind, oct(m.mode), m.uid, m.gid, data or m.linkname if not m.islnk() else "link",
                      m.devmajor, m.devminor)
    # docker export makes /etc for its mount points; an image without one has none.
    if "etc" in out and not any(k.startswith("etc/") for k in out):
        del out["etc"]
    return out


def config(path):
    c = json.load(open(path))
    c = {k: c.get(k) or None for k in KEYS}
    if c["Env"]:
        c["Env"] = [e for e in c["Env"] if e != DEFAULT_PATH] or None
    return c


def main():
    base, stubs = sys.argv[1], set(sys.argv[2:])
    d, r = tree(base + ".docker.tar"), tree(base + ".runner.tar")
    bad = []
    for n in sorted(set(d) | set(r)):
        a, b = d.get(n), r.get(n)
        if n in stubs and b is None and a and a[0] == "5" and not any(k.startswith(n + "/") and k not in stubs for k in d):
            continue  # an empty mount-point directory BuildKit 0.8 leaves
        if a and b and a[0] == b[0] == "file" and "link" in (a[4], b[4]):
            a, b = a[:4], b[:4]  # a hard link: either end may be stored as the file
        if a != b:
            bad.append(f"  tree {n}: docker {d.get(n)} runner {r.get(n)}")
    cd, cr = config(base + ".docker.json"), config(base + ".runner.json")
    if base.endswith(".classic") and cd["WorkingDir"] is None and cr["WorkingDir"] == "/":
        cd["WorkingDir"] = "/"  # BuildKit's scratch has WorkingDir "/", the classic one none
    for k in KEYS:
        if cd[k] != cr[k]:
            bad.append(f"  config {k}: docker {cd[k]} runner {cr[k]}")
    name = base.rsplit("/", 1)[1]
    print(f"build_compare: {name}: {'DIFFERENT' if bad else 'same'} ({len(d)} paths)")
    print("\n".join(bad))
    sys.exit(1 if bad else 0)


main()
