#!/usr/bin/env bash
# Runs every test of Strata, in order, stopping at the first failing stage:
#
#   deps         scripts/install-deps.sh (Debian packages, pinned Go tools, weed,
#                fuzz toolchain)
#   build        cargo build --release --workspace --all-targets
#   fmt          cargo fmt --all -- --check
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
#   ui           conformance/ui/run.sh: the web UI in headless Chromium (playwright-core)
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
#                each (40 s in CI); any crash fails, its input path is printed. Its
#                nightly build shares nothing with the stable one, so when both the
#                build and fuzz stages run, the fuzz build starts in the background
#                right after the build stage, at the lowest CPU and I/O priority, on
#                the cores the test stages leave idle; the fuzz stage waits for it
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

ALL_STAGES=(deps build fmt clippy unit conformance scaleout faults crash load interop mirror ui build-compare rootless deploy package docs fuzz)
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
    ui) STRATA_UI_SHOTS=0 bash conformance/ui/run.sh ;;
    build-compare) bash conformance/build_compare.sh ;;
    rootless) bash conformance/rootless.sh ;;
    docs) python3 conformance/docs.py ;;
    fuzz) wait_fuzz_build && STRATA_FUZZ_SECONDS="${STRATA_FUZZ_SECONDS:-40}" bash fuzz/run.sh ;;
    *)
      echo "test.sh: unknown stage '$1' (known: ${ALL_STAGES[*]})" >&2
      return 2
      ;;
  esac
}

# The background fuzz build (see the fuzz stage above): its own session, so
# that one kill stops cargo and every rustc under it.
FUZZ_BUILD_PID=
FUZZ_BUILD_LOG="$REPO/fuzz/artifacts/build.log"
start_fuzz_build() {
  mkdir -p "$(dirname "$FUZZ_BUILD_LOG")"
  setsid nice -n 19 ionice -c 3 bash fuzz/run.sh --build-only >"$FUZZ_BUILD_LOG" 2>&1 &
  FUZZ_BUILD_PID=$!
  echo "test.sh: fuzz targets building in the background (pid $FUZZ_BUILD_PID, log $FUZZ_BUILD_LOG)"
}
wait_fuzz_build() {
  [ -n "$FUZZ_BUILD_PID" ] || return 0
  local rc=0
  wait "$FUZZ_BUILD_PID" || rc=$?
  FUZZ_BUILD_PID=
  cat "$FUZZ_BUILD_LOG"
  [ "$rc" -eq 0 ] || echo "test.sh: the background fuzz build failed (exit $rc)" >&2
  return "$rc"
}
stop_fuzz_build() {
  [ -n "$FUZZ_BUILD_PID" ] && kill -- "-$FUZZ_BUILD_PID" 2>/dev/null
  return 0
}

TIMINGS=()
report() {
  stop_fuzz_build
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
  if [ "$stage" = build ] && [[ " ${STAGES[*]} " == *" fuzz "* ]]; then
    start_fuzz_build
  fi
done
TIMINGS+=("$(printf '%-12s %5ss' total $((SECONDS - start_all)))")
echo
echo "test.sh: all stages passed: ${STAGES[*]}"
