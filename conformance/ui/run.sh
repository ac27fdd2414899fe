#!/usr/bin/env bash
# End-to-end test of the web UI in headless Chromium (Debian's chromium,
# driven by playwright-core from npm, pinned in package-lock.json): a
# registry with access rules, an image pushed with crane and an SBOM
# attached to it with oras, then e2e.mjs logs in, searches, opens the tag,
# its layers and config, follows the referrer, deletes a tag, and checks
# that users without rights see neither the repository nor a delete button.
# Screenshots of each page go to docs/ui/ (STRATA_UI_SHOTS=0: none).
# Usage: bash conformance/ui/run.sh   (after scripts/install-deps.sh and a release build)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=../lib.sh
source "$here/../lib.sh"
require_tool "$TOOLS_BIN/crane" "$TOOLS_BIN/oras" /usr/bin/chromium node npm

work=$(mktemp -d)
trap 'stop_started_processes; rm -rf "$work"' EXIT

(cd "$here" && [ -d node_modules/playwright-core ] || npm ci --no-audit --no-fund --silent)

for user in alice bob carol; do
  printf '%s-pw\n' "$user" | "$REGISTRY_BIN" htpasswd "$work/htpasswd" "$user" >/dev/null
done
cat >"$work/registry.toml" <<TOML
[auth]
htpasswd = "$work/htpasswd"
[[auth.rules]]
repositories = ["team/**"]
users = ["alice"]
actions = ["pull", "push", "delete"]
[[auth.rules]]
repositories = ["team/**"]
users = ["bob"]
actions = ["pull"]
[[auth.rules]]
repositories = ["carol/**"]
users = ["carol"]
actions = ["pull", "push"]
TOML
REGISTRY_READY_AUTH=alice:alice-pw registry_start ui "$work/data" --config "$work/registry.toml"
host=$REG_ADDR

# Pushes with real clients: crane builds the image (one layer, run
# settings), oras attaches an SBOM to it as a referrer.
export DOCKER_CONFIG="$work/docker"
mkdir -p "$DOCKER_CONFIG"
"$TOOLS_BIN/crane" auth login "$host" -u alice -p alice-pw >/dev/null 2>&1
mkdir -p "$work/rootfs/app"
printf '#!/bin/sh\necho hello from the app\n' >"$work/rootfs/app/run.sh"
tar -C "$work/rootfs" -czf "$work/layer.tar.gz" app
crane() { "$TOOLS_BIN/crane" --insecure "$@"; }
crane append -f "$work/layer.tar.gz" -t "$host/team/web:build" >/dev/null
crane mutate "$host/team/web:build" -t "$host/team/web:1.0" \
  --entrypoint /app/run.sh --cmd --serve --env MODE=prod --workdir /app --user 1000 \
  --label org.opencontainers.image.title=web --exposed-ports 8080/tcp >/dev/null
crane tag "$host/team/web:1.0" old
crane tag "$host/team/web:1.0" latest
crane copy "$host/team/web:1.0" "$host/team/api:1.0" >/dev/null
printf '{"spdxVersion":"SPDX-2.3","name":"web"}\n' >"$work/sbom.spdx.json"
(cd "$work" && "$TOOLS_BIN/oras" attach --plain-http -u alice -p alice-pw \
  --artifact-type application/spdx+json "$host/team/web:1.0" sbom.spdx.json:application/spdx+json >/dev/null)

STRATA_UI_URL="http://$host" STRATA_UI_SHOTS="${STRATA_UI_SHOTS:-$REPO/docs/ui}" node "$here/e2e.mjs"
