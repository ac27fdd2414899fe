#!/usr/bin/env bash
# Runs the official OCI distribution-spec conformance suite against Strata.
#
# Three passes, each against a fresh registry with its own empty data dir:
#   full    `--allow-sparse`, every API and data toggle on, OCI_DATA_SPARSE
#           included. Results in conformance/results/.
#   strict  the default registry (sparse manifests are rejected), every
#           toggle on but OCI_DATA_SPARSE. The only non-pass allowed is the
#           "Sparse Manifests" data set, Disabled. Results in
#           conformance/results-strict/.
#   auth    as strict, but the registry runs with `--htpasswd` (a throwaway
#           bcrypt file with one user) and the suite logs in with
#           OCI_USERNAME/OCI_PASSWORD through the Bearer token flow. Before
#           the suite, anonymous requests must get 401 with a Bearer
#           challenge and a wrong password must be refused. Results in
#           conformance/results-auth/.
#
# The suite's exit code is not trusted: check_results.py reads junit.xml and
# results.yaml and fails unless every testcase passed.
#
# Environment:
#   REGISTRY_BIN         registry binary (default target/release/registry)
#   REGISTRY_ARGS        extra `registry serve` flags for both passes
#   STRATA_CONF_USER     passed to the suite as OCI_USERNAME
#   STRATA_CONF_PASS     passed to the suite as OCI_PASSWORD
#   CONFORMANCE_PASSES   passes to run, default "full strict auth"
set -euo pipefail

# shellcheck source=conformance/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SUITE="$TOOLS_BIN/conformance"
require_tool "$SUITE" "$REGISTRY_BIN" curl ss jq /usr/bin/python3
read -r -a EXTRA_REGISTRY_ARGS <<<"${REGISTRY_ARGS:-}"
# shellcheck disable=SC2034 # read by lib.sh
[ -z "${STRATA_CONF_USER:-}" ] || REGISTRY_READY_AUTH="$STRATA_CONF_USER:${STRATA_CONF_PASS:-}"

WORK=$(mktemp -d /tmp/strata-conformance.XXXXXX)
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  stop_started_processes
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

API_TOGGLES=(
  PING PULL PUSH
  BLOBS_ATOMIC BLOBS_DELETE BLOBS_DIGEST_HEADER BLOBS_MOUNT_ANONYMOUS BLOBS_UPLOAD_CANCEL
  MANIFESTS_ATOMIC MANIFESTS_DELETE MANIFESTS_DIGEST_HEADER MANIFESTS_TAG_PARAM
  TAGS_ATOMIC TAGS_DELETE TAGS_LIST
  REFERRER
)
DATA_TOGGLES=(
  IMAGE INDEX INDEX_LIST SPARSE ARTIFACT SUBJECT SUBJECT_MISSING ARTIFACT_LIST
  SUBJECT_LIST DATA_FIELD NONDISTRIBUTABLE CUSTOM_FIELDS NO_LAYERS EMPTY_BLOB SHA512
)

# probe_sparse SPARSE(true|false): pushes a manifest whose layer was never
# pushed. A registry started with --allow-sparse must accept it (201); a
# strict one must reject it with 400 MANIFEST_BLOB_UNKNOWN. This checks the
# pass runs against the registry mode it claims.
probe_sparse() {
  local base="http://$REG_ADDR/v2/probe/sparse" auth=() loc code body="$WORK/probe.out"
  local cfg_digest=sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a # "{}"
  [ -z "${STRATA_CONF_USER:-}" ] || auth=(-u "$STRATA_CONF_USER:${STRATA_CONF_PASS:-}")
  loc=$(curl -fsS -X POST -D - -o /dev/null ${auth[@]+"${auth[@]}"} "$base/blobs/uploads/" |
    tr -d '\r' | awk -F': ' 'tolower($1) == "location" { print $2 }')
  case $loc in /*) loc="http://$REG_ADDR$loc" ;; esac
  case $loc in *\?*) loc="$loc&digest=$cfg_digest" ;; *) loc="$loc?digest=$cfg_digest" ;; esac
  code=$(curl -sS -X PUT -o /dev/null -w '%{http_code}' ${auth[@]+"${auth[@]}"} \
    -H 'Content-Type: application/octet-stream' --data-binary '{}' "$loc")
  [ "$code" = 201 ] || { echo "   probe: config blob upload answered $code"; return 1; }
  code=$(curl -sS -X PUT -o "$body" -w '%{http_code}' ${auth[@]+"${auth[@]}"} \
    -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
    --data-binary '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"'"$cfg_digest"'","size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000001","size":1234}]}' \
    "$base/manifests/sparse")
  if [ "$1" = true ] && [ "$code" = 201 ]; then
    echo "   probe: sparse manifest accepted (201), as --allow-sparse asks"
  elif [ "$1" = false ] && [ "$code" = 400 ] && grep -q MANIFEST_BLOB_UNKNOWN "$body"; then
    echo "   probe: sparse manifest rejected (400 MANIFEST_BLOB_UNKNOWN), as a strict registry must"
  else
    echo "   probe: sparse manifest push answered $code: $(head -c 300 "$body")"
    return 1
  fi
}

# probe_auth: an anonymous request and one with a wrong password must get
# 401 with a Bearer challenge; the right password must get a token from
# /token and 200 on /v2/ with it.
probe_auth() {
  local base="http://$REG_ADDR" hdr="$WORK/auth-probe.h" code token ok=true
  code=$(curl -sS -o /dev/null -D "$hdr" -w '%{http_code}' "$base/v2/conformance/repo1/tags/list")
  if [ "$code" = 401 ] && tr -d '\r' <"$hdr" | grep -qi '^www-authenticate: Bearer realm="http://'"$REG_ADDR"'/token"'; then
    echo "   probe: anonymous request refused (401, Bearer challenge)"
  else
    echo "   probe: anonymous request answered $code: $(tr -d '\r' <"$hdr" | grep -i '^www-authenticate' || echo 'no challenge')"
    ok=false
  fi
  code=$(curl -sS -o /dev/null -w '%{http_code}' -u "$STRATA_CONF_USER:wrong-$STRATA_CONF_PASS" \
    "$base/token?service=strata&scope=repository:conformance/repo1:pull")
  if [ "$code" = 401 ]; then
    echo "   probe: wrong password refused by /token (401)"
  else
    echo "   probe: /token with a wrong password answered $code"
    ok=false
  fi
  token=$(curl -fsS -u "$STRATA_CONF_USER:$STRATA_CONF_PASS" \
    "$base/token?service=strata&scope=repository:conformance/repo1:pull,push" | jq -r '.token // .access_token // empty')
  code=$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "$base/v2/")
  if [ -n "$token" ] && [ "$code" = 200 ]; then
    echo "   probe: /token issued a token that /v2/ accepts"
  else
    echo "   probe: token '${token:0:20}...' got $code on /v2/"
    ok=false
  fi
  [ "$ok" = true ]
}

# run_pass LABEL RESULTS_DIR SPARSE(true|false) REGISTRY_FLAGS...
run_pass() {
  local label=$1 results=$2 sparse=$3 t toggles=() allow=()
  shift 3
  rm -rf "$results"
  mkdir -p "$results"
  registry_start "$label" "$WORK/$label/data" "$@" ${EXTRA_REGISTRY_ARGS[@]+"${EXTRA_REGISTRY_ARGS[@]}"}
  echo "== conformance pass '$label' against $REG_ADDR (registry flags: $* ${REGISTRY_ARGS:-})"
  local probe_ok=true
  probe_sparse "$sparse" || probe_ok=false
  if [ "$label" = auth ]; then probe_auth || probe_ok=false; fi

  for t in "${API_TOGGLES[@]}"; do toggles+=("OCI_API_$t=true"); done
  for t in "${DATA_TOGGLES[@]}"; do toggles+=("OCI_DATA_$t=true"); done
  toggles+=("OCI_DATA_SPARSE=$sparse")
  [ "$sparse" = true ] || allow=(--allow-disabled "Sparse Manifests")

  # Run from an empty dir so no stray oci-conformance.yaml is picked up.
  # Any OCI_* variable of the caller is dropped, so the pass is what it says.
  (
    cd "$WORK/$label"
    while IFS= read -r var; do unset "$var"; done < <(env | sed -n 's/^\(OCI_[A-Z0-9_]*\)=.*/\1/p')
    env "${toggles[@]}" \
      OCI_VERSION=dev OCI_TLS=disabled OCI_REGISTRY="$REG_ADDR" \
      OCI_REPO1=conformance/repo1 OCI_REPO2=conformance/repo2 \
      OCI_USERNAME="${STRATA_CONF_USER:-}" OCI_PASSWORD="${STRATA_CONF_PASS:-}" \
      OCI_RESULTS_DIR="$results" OCI_LOG=error \
      "$SUITE" >"$results/suite-output.txt" 2>&1
  ) || true # the exit code is not trusted either way; the files are judged below

  stop_pid "$REG_PID"
  cp "$WORK/$label/$label.log" "$results/registry.log" 2>/dev/null || true
  if /usr/bin/python3 "$REPO/conformance/check_results.py" "$results" "$label" ${allow[@]+"${allow[@]}"} &&
    [ "$probe_ok" = true ]; then
    return 0
  fi
  echo "   report: $results/report.html (registry log: $results/registry.log)"
  return 1
}

status=0
totals=(0 0 0 0)
for pass in ${CONFORMANCE_PASSES:-full strict auth}; do
  case $pass in
    full) run_pass full "$REPO/conformance/results" true --allow-sparse || status=1 ;;
    strict) run_pass strict "$REPO/conformance/results-strict" false || status=1 ;;
    auth)
      # A throwaway user for this pass only; the caller's credentials, if
      # any, come back afterwards.
      saved_user=${STRATA_CONF_USER-} saved_pass=${STRATA_CONF_PASS-} saved_ready=${REGISTRY_READY_AUTH-}
      STRATA_CONF_USER=conformance STRATA_CONF_PASS="pw-$RANDOM$RANDOM-x"
      printf '%s' "$STRATA_CONF_PASS" | "$REGISTRY_BIN" htpasswd "$WORK/htpasswd" "$STRATA_CONF_USER" >/dev/null
      REGISTRY_READY_AUTH="$STRATA_CONF_USER:$STRATA_CONF_PASS"
      run_pass auth "$REPO/conformance/results-auth" false --htpasswd "$WORK/htpasswd" || status=1
      STRATA_CONF_USER=$saved_user STRATA_CONF_PASS=$saved_pass REGISTRY_READY_AUTH=$saved_ready
      ;;
    *) die "unknown pass '$pass' in CONFORMANCE_PASSES" ;;
  esac
  dir="$REPO/conformance/results"
  [ "$pass" = full ] || dir="$REPO/conformance/results-$pass"
  if [ -f "$dir/counts" ]; then
    read -r -a c <"$dir/counts"
    for i in 0 1 2 3; do totals[i]=$((totals[i] + c[i])); done
  fi
done

echo "conformance: ${totals[0]} passed, ${totals[1]} failed, ${totals[2]} skipped, ${totals[3]} disabled"
if [ "$status" -ne 0 ]; then
  echo "conformance: FAILED" >&2
fi
exit "$status"
