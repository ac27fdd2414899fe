"""Build the benchmark's test images as OCI image layouts, from Debian's
busybox-static and random data only (nothing is fetched).

Usage: images.py OUTDIR. Idempotent: an image whose layout exists is kept.

  OUTDIR/busybox      1 layer: /bin/busybox and its applet links
  OUTDIR/big          3 gzip layers, ~300 MB: busybox + 2 random files
  OUTDIR/shared-NN    20 images: the same 3 base layers + 1 small own layer
  OUTDIR/shared.json  the sum of the unique blob sizes of the 20 images
"""

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

BUSYBOX = "/bin/busybox"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"


def tar_bytes(entries):
    """entries: list of (name, bytes | None for dir | str for symlink target, mode)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, mode in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 0
            info.mode = mode
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif isinstance(data, str):
                info.type = tarfile.SYMTYPE
                info.linkname = data
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def busybox_tar():
    with open(BUSYBOX, "rb") as f:
        binary = f.read()
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    entries = [(d, None, 0o755) for d in ("bin", "etc", "tmp", "proc", "sys", "dev", "root")]
    entries.append(("bin/busybox", binary, 0o755))
    entries += [(f"bin/{a}", "busybox", 0o777) for a in applets if a != "busybox"]
    entries.append(("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644))
    entries.append(("etc/group", b"root:x:0:\n", 0o644))
    return tar_bytes(entries)


def random_tar(name, size):
    return tar_bytes([("data", None, 0o755), (f"data/{name}", os.urandom(size), 0o644)])


class Layout:
    def __init__(self, root):
        self.root = root
        os.makedirs(os.path.join(root, "blobs", "sha256"), exist_ok=True)

    def blob(self, data, media_type):
        digest = hashlib.sha256(data).hexdigest()
        path = os.path.join(self.root, "blobs", "sha256", digest)
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(data)
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}

    def image(self, layers, tag, label):
        """layers: list of (uncompressed tar, gzip bytes)."""
        descs = [self.blob(gz, LAYER_GZ) for _, gz in layers]
        config = {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"], "Labels": {"bench": label}},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(t).hexdigest() for t, _ in layers]},
        }
        cdesc = self.blob(json.dumps(config).encode(), CONFIG)
        manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST, "config": cdesc, "layers": descs}).encode()
        mdesc = self.blob(manifest, MANIFEST)
        mdesc["annotations"] = {"org.opencontainers.image.ref.name": tag}
        with open(os.path.join(self.root, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2, "manifests": [mdesc]}, f)
        with open(os.path.join(self.root, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)
        return [cdesc, mdesc] + descs


def gz(data, level=6):
    return gzip.compress(data, compresslevel=level, mtime=0)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    bb = busybox_tar()
    bb_layer = (bb, gz(bb))
    if not os.path.exists(os.path.join(out, "busybox", "index.json")):
        Layout(os.path.join(out, "busybox")).image([bb_layer], "latest", "busybox")
    if not os.path.exists(os.path.join(out, "big", "index.json")):
        # Random bytes, so gzip cannot shrink them: ~300 MB compressed.
        layers = [bb_layer] + [(t, gz(t, 1)) for t in (random_tar(f"r{i}", 150 * 10**6) for i in range(2))]
        Layout(os.path.join(out, "big")).image(layers, "latest", "big")
    if not os.path.exists(os.path.join(out, "shared.json")):
        base = [bb_layer] + [(t, gz(t, 1)) for t in (random_tar(f"base{i}", (i + 1) * 4 << 20) for i in range(2))]
        unique = {}
        for n in range(20):
            own = random_tar(f"own{n}", 256 << 10)
            descs = Layout(os.path.join(out, f"shared-{n:02d}")).image(base + [(own, gz(own, 1))], "latest", f"shared-{n}")
            for d in descs:
                unique[d["digest"]] = d["size"]
        with open(os.path.join(out, "shared.json"), "w") as f:
            json.dump({"unique_blobs": len(unique), "unique_bytes": sum(unique.values())}, f)


if __name__ == "__main__":
    main()
