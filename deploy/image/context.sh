#!/usr/bin/env bash
# deploy/image/context.sh REGISTRY_BIN CTX: makes the build context of
# deploy/image/Dockerfile in CTX: the Dockerfile, and rootfs/ holding the
# binary at /usr/bin/registry (stripped, as the Debian package has it), the
# shared libraries `ldd` lists for it (at the same paths, the dynamic loader
# included), /var/lib/strata owned by 65532, an /etc/passwd naming that
# user, and /tmp.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 REGISTRY_BIN CTX" >&2; exit 2; }
bin=$1 ctx=$2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$ctx/rootfs
rm -rf "$root"
mkdir -p "$root/usr/bin" "$root/var/lib/strata" "$root/etc" "$root/tmp"
install -m 0755 "$bin" "$root/usr/bin/registry"
strip "$root/usr/bin/registry"
# `ldd` lines: "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" and
# "/lib64/ld-linux-x86-64.so.2 (0x...)"; linux-vdso has no file.
for lib in $(ldd "$bin" | grep -oE '/[^ ]+\.so[^ ]*'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
printf 'root:x:0:0::/:/sbin/nologin\nstrata:x:65532:65532::/var/lib/strata:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nstrata:x:65532:\n' >"$root/etc/group"
chown 65532:65532 "$root/var/lib/strata"
chmod 1777 "$root/tmp"
cp "$here/Dockerfile" "$ctx/Dockerfile"
