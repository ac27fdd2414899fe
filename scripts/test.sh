#!/usr/bin/env bash
# Runs every test of Strata, in order, stopping at the first failing stage:
#
#   deps         scripts/install-deps.sh (Debian packages, pinned Go tools, weed,
#                fuzz toolchain)
#   fmt          cargo fmt --all -- --check (first: it takes a second, the build minutes)
#   build        cargo build --release --workspace --all-targets
#   clippy       cargo clippy --release --workspace --all-targets -- -D warnings
#   unit         cargo test --release --workspace (STRATA_REGISTRY_BIN is set
#                to the release registry binary for the runner's tests)
#   conformance  conformance/run.sh: the OCI conformance suite, three passes (full, strict, auth)
#   scaleout     conformance/scaleout.sh: 3 replicas on S3 + PostgreSQL, suite via proxy
#   faults       conformance/faults.py: full disk and low space (tmpfs), S3 and PostgreSQL
#                outages, a full runner root: honest answers (507/503), nothing half-kept
#   crash        conformance/crash.py: kill -9 under push load, pushes survive
#   load         conformance/load.py: 200 clients, no 5xx, RSS under 300 MiB;
#                conformance/slowloris.py: 17,000 stalled sockets, /livez and a pull answer within 1 s
#   interop      conformance/interop.sh: real clients round-trip images, plain
#                and then with --htpasswd + TLS (throwaway CA), logged in
#   mirror       conformance/mirror.sh: skopeo, crane, ctr (hosts.toml ?ns=), dockerd
#                --registry-mirror and runner pull through the pull-through mirror
#   build-compare conformance/build_compare.sh: Dockerfiles built by runner build and by
#                docker build give the same file trees and configs; pushed, run by docker
#   rootless     conformance/rootless.sh: the runner as an ordinary user (made with
#                /etc/subuid and /etc/subgid ranges): pull, run, exit codes, whiteouts,
#                ownership on disk, seccomp, --memory refused, build, run -d/exec/stop/rm,
#                and nothing left behind
#   package      conformance/package.sh: the .debs of registry and runner (cargo deb
#                --no-build), dpkg -i, files checked, the installed registry run as its
#                unit would (user strata), crane push/pull through it, dpkg --purge;
#                conformance/image.sh: deploy/image/Dockerfile built by runner build,
#                pushed, run by the runner (-p, -v) and by docker, in a netns of its own
#   docs         conformance/docs.py: every ```sh block of README.md, docs/runner.md and
#                docs/operations.md, run as written (marked exceptions are counted)
#   fuzz         fuzz/run.sh: every cargo-fuzz target (nightly), STRATA_FUZZ_SECONDS
#                each (60 s in CI); any crash fails, its input path is printed
#
# Needs root (packages, dockerd, mounts). Prints the time of each stage at
# the end, also when a stage fails.
#
#   STRATA_STAGES="build unit"   run only these stages, in the order given
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
export PATH="$REPO/.tools/bin:$PATH"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export STRATA_REGISTRY_BIN="$REPO/target/release/registry"
export REGISTRY_BIN="${REGISTRY_BIN:-$STRATA_REGISTRY_BIN}"

ALL_STAGES=(deps build fmt clippy unit conformance scaleout faults crash load interop mirror build-compare rootless deploy package docs fuzz)
read -r -a STAGES <<<"${STRATA_STAGES:-${ALL_STAGES[*]}}"

stage_cmd() {
  case $1 in
    deps) bash scripts/install-deps.sh ;;
    build) cargo build --release --workspace --all-targets ;;
    fmt) cargo fmt --all -- --check ;;
    clippy) cargo clippy --release --workspace --all-targets -- -D warnings ;;
    unit) cargo test --release --workspace ;;
    conformance) bash conformance/run.sh ;;
    scaleout) bash conformance/scaleout.sh ;;
    faults) python3 conformance/faults.py ;;
    crash) python3 conformance/crash.py ;;
    load) python3 conformance/load.py && python3 conformance/slowloris.py ;;
    interop) bash conformance/interop.sh ;;
    deploy) bash conformance/deploy.sh ;;
    package) bash conformance/package.sh && bash conformance/image.sh ;;
    mirror) bash conformance/mirror.sh ;;
    build-compare) bash conformance/build_compare.sh ;;
    rootless) bash conformance/rootless.sh ;;
    docs) python3 conformance/docs.py ;;
    fuzz) STRATA_FUZZ_SECONDS="${STRATA_FUZZ_SECONDS:-60}" bash fuzz/run.sh ;;
    *)
      echo "test.sh: unknown stage '$1' (known: ${ALL_STAGES[*]})" >&2
      return 2
      ;;
  esac
}

TIMINGS=()
report() {
  local line
  echo
  echo "== stage timings"
  for line in "${TIMINGS[@]}"; do echo "   $line"; done
}
trap report EXIT

start_all=$SECONDS
for stage in "${STAGES[@]}"; do
  echo
  echo "== stage: $stage"
  start=$SECONDS
  set +e
  stage_cmd "$stage"
  rc=$?
  set -e
  secs=$((SECONDS - start))
  if [ "$rc" -ne 0 ]; then
    TIMINGS+=("$(printf '%-12s %5ss  FAILED (exit %s)' "$stage" "$secs" "$rc")")
    echo
    echo "test.sh: stage '$stage' FAILED (exit $rc); later stages not run" >&2
    exit 1
  fi
  TIMINGS+=("$(printf '%-12s %5ss  ok' "$stage" "$secs")")
done
TIMINGS+=("$(printf '%-12s %5ss' total $((SECONDS - start_all)))")
echo
echo "test.sh: all stages passed: ${STAGES[*]}"
