#!/usr/bin/env bash
# Builds every cargo-fuzz target in fuzz/ once, then runs each for
# STRATA_FUZZ_SECONDS seconds (default 60; 40 in CI), STRATA_FUZZ_JOBS at once (default:
# one per core), starting from its checked-in seeds (fuzz/seeds/TARGET) plus
# whatever earlier local runs kept (fuzz/corpus/TARGET, not checked in), with
# the dictionary fuzz/dicts/TARGET.dict if there is one. Fails if any target
# panics, runs out of memory or spends more than 10 s on one input, and prints
# that input's path and how to replay it.
#
#   bash fuzz/run.sh                                  every target (test.sh's `fuzz` stage)
#   STRATA_FUZZ_SECONDS=600 bash fuzz/run.sh unpack   one target, longer
#   bash fuzz/run.sh --build-only                     build the targets, run nothing
#
# Uses the nightly toolchain pinned in scripts/install-deps.sh and the
# cargo-fuzz it installs into .tools/bin. Builds without a sanitizer: the
# code is safe Rust, so panics are what we hunt, and an AddressSanitizer
# build costs more time than it is worth here; 16 codegen units let each
# crate of the cold build use both cores, for slightly slower fuzzing.
# Each target's libFuzzer output
# goes to fuzz/artifacts/TARGET.log; one summary line per target is printed.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
export PATH="$REPO/.tools/bin:$PATH"
TOOLCHAIN=$(sed -n 's/^FUZZ_TOOLCHAIN=//p' scripts/install-deps.sh)
SECONDS_EACH="${STRATA_FUZZ_SECONDS:-60}"
JOBS="${STRATA_FUZZ_JOBS:-$(nproc)}"
BUILD_FLAGS=(--sanitizer none --codegen-units 16)
fuzz() { cargo "+$TOOLCHAIN" fuzz "$@"; }

BUILD_ONLY=
if [ "${1:-}" = --build-only ]; then
  BUILD_ONLY=1
  shift
fi
if [ "$#" -gt 0 ]; then
  TARGETS=("$@")
else
  mapfile -t TARGETS < <(fuzz list)
fi

start=$SECONDS
fuzz build "${BUILD_FLAGS[@]}"
echo "fuzz: built ${#TARGETS[@]} targets with $TOOLCHAIN in $((SECONDS - start))s"
[ -n "$BUILD_ONLY" ] && exit 0

# run_target TARGET: fuzzes one target; its exit code goes to fuzz/artifacts/TARGET.rc.
run_target() {
  local target=$1 dict=() rc=0
  mkdir -p "fuzz/corpus/$target"
  [ -f "fuzz/dicts/$target.dict" ] && dict=(-dict="fuzz/dicts/$target.dict")
  fuzz run "${BUILD_FLAGS[@]}" "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
    -max_total_time="$SECONDS_EACH" -timeout=10 -print_final_stats=1 "${dict[@]}" \
    >"fuzz/artifacts/$target.log" 2>&1 || rc=$?
  echo "$rc" >"fuzz/artifacts/$target.rc"
}

# libFuzzer uses one core: run as many targets at once as there are cores.
mkdir -p fuzz/artifacts
running=0
for target in "${TARGETS[@]}"; do
  if [ "$running" -ge "$JOBS" ]; then
    wait -n
    running=$((running - 1))
  fi
  run_target "$target" &
  running=$((running + 1))
done
wait

failed=()
for target in "${TARGETS[@]}"; do
  log="fuzz/artifacts/$target.log"
  rc=$(cat "fuzz/artifacts/$target.rc")
  stat() { awk -v k="stat::$1:" '$1 == k { print $2 }' "$log" | tail -n1; }
  summary="$(stat number_of_executed_units) execs, $(stat average_exec_per_sec)/s, corpus $(find "fuzz/corpus/$target" -type f | wc -l) inputs"
  if [ "$rc" -eq 0 ]; then
    printf 'fuzz: %-10s ok      %s\n' "$target" "$summary"
    continue
  fi
  failed+=("$target")
  printf 'fuzz: %-10s FAILED  (exit %s) %s\n' "$target" "$rc" "$summary"
  grep -E "panicked at|^==[0-9]+== ERROR|ALARM|out-of-memory|Test unit written to" "$log" | head -n 8 | sed 's/^/      /'
  artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n1)
  if [ -n "$artifact" ]; then
    echo "      crash input: $artifact"
    echo "      replay: cargo +$TOOLCHAIN fuzz run ${BUILD_FLAGS[*]} $target $artifact"
  fi
  echo "      full output: $log"
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: all ${#TARGETS[@]} targets ran ${SECONDS_EACH}s each without a crash"
