"""Case e of conformance/faults.py: `runner pull` into a full state root.

A registry on an ordinary temp dir holds two images built here through the
registry API: `faults/small` (a busybox layer, gzip) and `faults/big` (the
same busybox layer plus a 36 MiB layer of random bytes, plain tar). The
runner's root is on a 96 MiB tmpfs; after `small` is pulled, ballast leaves
48 MiB free, less than `big` needs (its layer is downloaded and unpacked:
twice its size).
"""

import gzip
import json
import io
import os
import platform
import subprocess
import tarfile

import faults_lib as lib
from faults_lib import MiB, Failed, Registry, Tmpfs, fail, ok, sha256

BUSYBOX = "/bin/busybox"
APPLETS = ["sh", "echo", "cat", "ls", "true", "false"]


def tar_bytes(entries):
    """An uncompressed tar of (name, bytes or None for a dir, mode, link target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, mode, link in entries:
            info = tarfile.TarInfo(name)
            info.mode, info.mtime = mode, 0
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            elif data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def busybox_layer():
    """(media type, blob, diff_id) of a gzip busybox root filesystem."""
    with open(BUSYBOX, "rb") as f:
        busybox = f.read()
    entries = [("bin", None, 0o755, None), ("etc", None, 0o755, None),
               ("tmp", None, 0o1777, None), ("bin/busybox", busybox, 0o755, None),
               ("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644, None)]
    entries += [(f"bin/{a}", None, 0o777, "busybox") for a in APPLETS]
    raw = tar_bytes(entries)
    return lib.OCI_LAYER_GZIP, gzip.compress(raw, mtime=0), sha256(raw), busybox


def push_image(addr, repo, layers):
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    config = json.dumps({"architecture": arch, "os": "linux",
                             "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
                             "rootfs": {"type": "layers",
                                        "diff_ids": [d for _, _, d in layers]}}).encode()
    lib.push_blob(addr, repo, config)
    for _, blob, _ in layers:
        lib.push_blob(addr, repo, blob)
    manifest = lib.image_manifest(config, [(mt, b) for mt, b, _ in layers])
    status, _, body = lib.request(addr, "PUT", f"/v2/{repo}/manifests/latest", manifest,
                                  {"Content-Type": lib.OCI_MANIFEST})
    if status != 201:
        raise Failed(f"manifest of {repo}: {lib.describe(status, body)}")
    return f"{addr}/{repo}:latest"


def runner(root, *args):
    p = subprocess.run(lib.pdeath([lib.RUNNER_BIN, "--root", str(root), *args]),
                       capture_output=True, stdin=subprocess.DEVNULL, timeout=300)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def leftovers(root, known):
    """What a failed pull left that it should not have: entries under tmp/,
    and layer directories that are not complete unpacks of a known layer.
    `known` maps a diff_id hex to (path inside the layer, expected bytes)."""
    found = []
    tmp = root / "tmp"
    if tmp.is_dir():
        found += [f"tmp/{e}" for e in sorted(os.listdir(tmp))]
    layers = root / "layers/sha256"
    for hex_ in sorted(os.listdir(layers)) if layers.is_dir() else []:
        if hex_ not in known:
            found.append(f"layers/sha256/{hex_[:12]} (not a layer of the images)")
            continue
        path, want = known[hex_]
        f = layers / hex_ / path
        if not f.is_file() or f.stat().st_size != len(want) or f.read_bytes() != want:
            found.append(f"layers/sha256/{hex_[:12]} (incomplete: {path})")
    return found


def case_runner_full(work):
    reg = Registry("runner-registry", work, ["--data", str(work / "runner-registry")]).start()
    bb_type, bb_blob, bb_diff, busybox = busybox_layer()
    big_file = os.urandom(36 * MiB)
    big_raw = tar_bytes([("big.bin", big_file, 0o644, None)])
    small_ref = push_image(reg.addr, "faults/small", [(bb_type, bb_blob, bb_diff)])
    big_ref = push_image(reg.addr, "faults/big", [(bb_type, bb_blob, bb_diff),
                                                  (lib.OCI_LAYER_TAR, big_raw, sha256(big_raw))])
    known = {bb_diff[7:]: ("bin/busybox", busybox), sha256(big_raw)[7:]: ("big.bin", big_file)}
    del big_raw

    fs = Tmpfs(work / "runner-root", 96)
    root = fs.path / "root"
    rc, _, err = runner(root, "pull", small_ref)
    if rc != 0:
        raise Failed(f"pull of the small image: exit {rc}: {err.strip()[-300:]}")
    used = fs.used()
    ballast = fs.fill_to("ballast", 48 * MiB)
    ballast_size = ballast.stat().st_size

    rc, _, err = runner(root, "pull", big_ref)
    lines = [line for line in err.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if rc == 0:
        fail("e-error", "the pull into a full root exited 0")
    elif f"no space left on device under {root}".lower() not in last.lower():
        fail("e-error", f"exit {rc}; the last line does not say 'no space left on device "
                        f"under {root}': {last[:300]!r}")
    elif "free space" not in last.lower() or last.lower().count("no space left") > 1:
        fail("e-error", f"exit {rc}; not one clear line (once the cause, then 'free space "
                        f"and pull again'): {last[:300]!r}")
    elif any("panicked" in line for line in lines):
        fail("e-error", f"the runner panicked: {err[-300:]!r}")
    else:
        ok("e-error", f"exit {rc}: {last[:200]}")

    left = leftovers(root, known)
    if left:
        fail("e-nothing-partial", f"left under the root: {left}")
    else:
        ok("e-nothing-partial", "tmp/ is empty, every layer dir is a whole layer")
    extra = fs.used() - ballast_size - used
    if extra > 2 * MiB:
        fail("e-space-released", f"{extra / MiB:.1f} MiB more used than before the failed pull")
    else:
        ok("e-space-released", f"{max(extra, 0) / MiB:.1f} MiB more used than before")

    rc, out, err = runner(root, "images")
    if rc != 0 or "faults/small" not in out or "faults/big" in out:
        fail("e-store-consistent", f"runner images: exit {rc}, {out.strip()!r} {err.strip()!r}")
    else:
        ok("e-store-consistent", "runner images lists the small image only")

    ballast.unlink()
    rc, _, err = runner(root, "pull", big_ref)
    rc2, out, _ = runner(root, "images")
    if rc != 0 or rc2 != 0 or "faults/big" not in out:
        fail("e-retry", f"pull after freeing space: exit {rc}: {err.strip()[-300:]!r}")
    else:
        left = leftovers(root, known)
        if left:
            fail("e-retry", f"after the successful pull: {left}")
        else:
            ok("e-retry", "the pull succeeds once the ballast is gone")
