#!/usr/bin/env bash
# Side-by-side benchmark of Strata against peer programs on this machine.
# Usage: bash bench/run.sh [--runs N]   (writes BENCHMARKS.md and bench/ratios.png)
# Installs its peers itself (idempotent); needs root; uses only 127.0.0.1.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
cache=${STRATA_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/strata-bench}
mkdir -p "$cache"

say() { printf '[run.sh] %s\n' "$*" >&2; }

# Peers and tools, from Debian.
pkgs=(docker-registry crun runc podman docker.io buildah skopeo umoci wrk hyperfine busybox-static iperf3)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# matplotlib for the chart, in a venv of our own.
venv=$cache/venv
if ! "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
    say "installing matplotlib into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q matplotlib
fi

# Our binaries. The runner is optional: its rows say "not measured" without it.
say "building registry and runner (release)"
# One workspace build: the same features as CI's, so nothing is rebuilt per package.
(cd "$repo" && cargo build --release -q --workspace)
runner=$repo/target/release/runner
[[ -n $runner && ! -x $runner ]] && runner=""

# The load generator.
say "building bench/loadgen"
(cd "$here/loadgen" && GOFLAGS=-mod=mod go build -o "$cache/loadgen" .)

# Test images, built locally from busybox-static and random data, cached.
say "building test images (cached in $cache/images)"
python3 "$here/images.py" "$cache/images"

exec "$venv/bin/python" "$here/bench.py" \
    --repo "$repo" --benchdir "$here" \
    --registry "$repo/target/release/registry" --runner "$runner" \
    --loadgen "$cache/loadgen" --images "$cache/images" --cache "$cache" \
    --out "$repo/BENCHMARKS.md" --chart "$here/ratios.png" --build-seconds "$SECONDS" "$@"
