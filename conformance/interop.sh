#!/usr/bin/env bash
# Real-client interoperability tests against a fresh Strata registry.
#
# Each case is a bash function `case_<name>` that drives one real client
# (docker, podman, buildah, skopeo, crane, oras, regctl) through a round
# trip and checks that digests are identical end to end: what the client
# says it pushed, what the registry serves (the Docker-Content-Digest header
# and the sha256 of the body, checked against each other), and what the
# client reports after pulling back. Images are built locally from
# busybox-static; nothing comes from the internet.
#
# Every case runs in its own subshell with `set -e`, logs to its own file,
# and is reported PASS or FAIL; the script exits non-zero if any failed.
#
# Environment:
#   REGISTRY_BIN      registry binary (default target/release/registry)
#   REGISTRY_ARGS     extra `registry serve` flags
#   INTEROP_CASES     space-separated subset of cases to run (default: all)
#   INTEROP_USER, INTEROP_PASS
#                     when set, every client logs in first (for a registry
#                     started with auth through REGISTRY_ARGS)
#   INTEROP_KEEP=1    keep the work dir (logs, layouts) for inspection
#   INTEROP_AUTH_TLS  "both" (default): the plain run, then the same cases
#                     again in auth+TLS mode (a second invocation of this
#                     script). "0": plain run only. "1": auth+TLS only:
#                     openssl makes a throwaway CA and a server cert for
#                     IP:127.0.0.1, the registry runs with --htpasswd,
#                     --tls-cert and --tls-key, every client logs in (to
#                     temp files) and trusts only that CA: podman, buildah
#                     and skopeo through --cert-dir, oras through --ca-file,
#                     crane and regctl through SSL_CERT_FILE, curl through
#                     --cacert. dockerd treats 127.0.0.0/8 as an insecure
#                     registry, so it talks TLS without consulting certs.d
#                     (nothing is written to /etc/docker). Extra case
#                     auth_refused: anonymous and wrong-password requests
#                     get 401, untrusting clients fail the TLS handshake.
#                     Case logs go to conformance/results-interop-auth-tls.
#   INTEROP_PROXY     "" (default), "nginx" or "haproxy": auth+TLS mode with
#                     the TLS terminated by that reverse proxy (Debian's
#                     package) on its own loopback port, proxying plain HTTP
#                     to a registry started with --htpasswd and
#                     --trusted-proxy 127.0.0.1/32; every client talks to the
#                     proxy only, so the token realm must name the proxy's
#                     https address (the bug of issue 22). Configurations as
#                     in docs/deploy.md. In "both" mode the auth+TLS run is
#                     followed by one run per proxy with the cases in
#                     PROXY_CASES. Logs go to results-interop-proxy-NAME.
#
# Where auth and TLS plug in: the client flags live in one place
# (`client_setup`), logins in `login_all`, and `registry_url` builds every
# URL that curl uses.
set -euo pipefail

# shellcheck source=conformance/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ALL_CASES=(docker podman_formats buildah_manifest_list skopeo crane oras regctl)
DOCKER=/usr/bin/docker
CRANE="$TOOLS_BIN/crane"
ORAS="$TOOLS_BIN/oras"
REGCTL="$TOOLS_BIN/regctl"
BUSYBOX=/bin/busybox

require_tool "$DOCKER" dockerd podman buildah skopeo umoci runc curl jq ss tar gzip \
  sha256sum findmnt "$BUSYBOX" "$CRANE" "$ORAS" "$REGCTL"
read -r -a EXTRA_REGISTRY_ARGS <<<"${REGISTRY_ARGS:-}"
INTEROP_AUTH_TLS=${INTEROP_AUTH_TLS:-both}
case $INTEROP_AUTH_TLS in
  both | 0) AUTH_TLS=false ;;
  1) AUTH_TLS=true ;;
  *) die "INTEROP_AUTH_TLS must be both, 0 or 1, not '$INTEROP_AUTH_TLS'" ;;
esac
INTEROP_PROXY=${INTEROP_PROXY:-}
PROXY_CASES="docker podman_formats skopeo crane auth_refused"
case $INTEROP_PROXY in
  "") ;;
  nginx | haproxy)
    AUTH_TLS=true
    require_tool "$INTEROP_PROXY"
    ;;
  *) die "INTEROP_PROXY must be nginx or haproxy, not '$INTEROP_PROXY'" ;;
esac
[ "$AUTH_TLS" = false ] || require_tool openssl
REG_SCHEME=http
CA_CERT=""

WORK=$(mktemp -d /tmp/strata-interop.XXXXXX)
DOCKERD_PID=""
DOCKER_SOCK="$WORK/docker/docker.sock"

# unmount_under DIR: lazily unmounts every mount point below DIR, deepest first.
unmount_under() {
  local m
  findmnt -rn -o TARGET | grep -F "$1/" | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
}

cleanup() {
  set +e
  if [ -n "$DOCKERD_PID" ]; then
    local containerd_pid
    containerd_pid=$(cat "$WORK/docker/exec/containerd/containerd.pid" 2>/dev/null)
    stop_pid "$DOCKERD_PID" 30
    # dockerd stops the containerd it started; make sure of it.
    if [ -n "$containerd_pid" ] && kill -0 "$containerd_pid" 2>/dev/null; then
      kill -TERM "$containerd_pid" 2>/dev/null
      sleep 1
      kill -KILL "$containerd_pid" 2>/dev/null
    fi
  fi
  stop_started_processes
  unmount_under "$WORK"
  if [ "${INTEROP_KEEP:-0}" = 1 ]; then
    echo "interop: work dir kept at $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- helpers

fail() {
  echo "FAIL: $*" >&2
  return 1
}

# expect_eq WHAT GOT WANT
expect_eq() {
  [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"
  echo "ok: $1 = $3"
}

# expect_contains WHAT HAYSTACK NEEDLE
expect_contains() {
  grep -qxF -- "$3" <<<"$2" || fail "$1: '$3' not in: $(tr '\n' ' ' <<<"$2")"
  echo "ok: $1 contains $3"
}

sha256_of() { echo "sha256:$(sha256sum "$1" | cut -d' ' -f1)"; }

registry_url() { echo "$REG_SCHEME://$REG_ADDR/v2/$1"; }

MANIFEST_ACCEPT="application/vnd.oci.image.index.v1+json,application/vnd.oci.image.manifest.v1+json,application/vnd.docker.distribution.manifest.list.v2+json,application/vnd.docker.distribution.manifest.v2+json"

# fetch_manifest REPO REF OUT: GETs a manifest into OUT, checks the status is
# 200 and that the Docker-Content-Digest header is the sha256 of the body
# (when REF is a digest, also that it equals REF). Prints the digest.
fetch_manifest() {
  local repo=$1 ref=$2 out=$3 hdr code header_digest body_digest
  hdr="$out.headers"
  code=$(curl -sS -o "$out" -D "$hdr" -w '%{http_code}' "${CURL_AUTH[@]}" \
    -H "Accept: $MANIFEST_ACCEPT" "$(registry_url "$repo/manifests/$ref")")
  [ "$code" = 200 ] || fail "GET $repo/manifests/$ref: HTTP $code: $(head -c 300 "$out")"
  header_digest=$(tr -d '\r' <"$hdr" | awk -F': ' 'tolower($1) == "docker-content-digest" { print $2 }')
  body_digest=$(sha256_of "$out")
  [ "$header_digest" = "$body_digest" ] ||
    fail "$repo/manifests/$ref: Docker-Content-Digest '$header_digest' but body hashes to $body_digest"
  case $ref in
    sha256:*) [ "$ref" = "$body_digest" ] || fail "$repo@$ref served content hashing to $body_digest" ;;
  esac
  echo "$body_digest"
}

# registry_digest REPO REF: the digest the registry serves for REPO:REF.
registry_digest() {
  local tmp
  tmp=$(mktemp "$WORK/manifest.XXXXXX")
  fetch_manifest "$1" "$2" "$tmp"
}

# expect_manifest_gone REPO REF: GET must answer 404 MANIFEST_UNKNOWN.
expect_manifest_gone() {
  local body code
  body=$(mktemp "$WORK/gone.XXXXXX")
  code=$(curl -sS -o "$body" -w '%{http_code}' "${CURL_AUTH[@]}" \
    -H "Accept: $MANIFEST_ACCEPT" "$(registry_url "$1/manifests/$2")")
  [ "$code" = 404 ] || fail "GET $1/manifests/$2 after delete: HTTP $code, want 404"
  grep -q MANIFEST_UNKNOWN "$body" || fail "404 for $1:$2 without MANIFEST_UNKNOWN: $(cat "$body")"
  echo "ok: $1:$2 is gone (404 MANIFEST_UNKNOWN)"
}

# registry_tags REPO: the tag list, one a line, sorted.
registry_tags() {
  curl -fsS "${CURL_AUTH[@]}" "$(registry_url "$1/tags/list")" | jq -r '.tags // [] | .[]' | sort
}

# layout_digest LAYOUT TAG: the manifest digest of TAG in an OCI layout dir.
layout_digest() {
  jq -r --arg t "$2" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $t) | .digest' "$1/index.json"
}

# verify_layout_blobs LAYOUT: every blob's file name is the sha256 of its bytes.
verify_layout_blobs() {
  local f n=0
  for f in "$1"/blobs/sha256/*; do
    [ "sha256:$(basename "$f")" = "$(sha256_of "$f")" ] || fail "corrupt blob $f"
    n=$((n + 1))
  done
  echo "ok: $n blobs in $1 match their digests"
}

# ------------------------------------------------------- clients and setup

client_setup() {
  export HOME="$WORK/home" DOCKER_CONFIG="$WORK/home/docker-config"
  export REGISTRY_AUTH_FILE="$WORK/home/auth.json"
  export CONTAINERS_REGISTRIES_CONF="$WORK/home/registries.conf"
  mkdir -p "$HOME" "$DOCKER_CONFIG"
  echo '{}' >"$DOCKER_CONFIG/config.json"
  echo '{"auths":{}}' >"$REGISTRY_AUTH_FILE"
  : >"$CONTAINERS_REGISTRIES_CONF"
  AUTHFILE=(--authfile "$REGISTRY_AUTH_FILE")
  CTR_TLS=(--tls-verify=false)
  ORAS_TLS=(--plain-http)
  REGCTL_HOST="reg=$REG_ADDR,tls=disabled"
  SKOPEO_TLS=(--tls-verify=false)
  SKOPEO_COPY_TLS=(--src-tls-verify=false --dest-tls-verify=false)
  CRANE_FLAGS=(--insecure)
  CURL_AUTH=()
  if [ "$AUTH_TLS" = true ]; then
    # Verification on, and only the throwaway CA is trusted.
    CTR_TLS=(--tls-verify=true --cert-dir "$CERT_DIR")
    SKOPEO_TLS=("${CTR_TLS[@]}")
    SKOPEO_COPY_TLS=(--src-tls-verify=true --src-cert-dir "$CERT_DIR" --dest-tls-verify=true --dest-cert-dir "$CERT_DIR")
    ORAS_TLS=(--ca-file "$CA_CERT")
    CRANE_FLAGS=()
    REGCTL_HOST="reg=$REG_ADDR,tls=enabled"
    CURL_AUTH=(--cacert "$CA_CERT")
  fi
  if [ -n "${INTEROP_USER:-}" ]; then
    CURL_AUTH+=(-u "$INTEROP_USER:${INTEROP_PASS:-}")
    REGCTL_HOST="$REGCTL_HOST,user=$INTEROP_USER,pass=${INTEROP_PASS:-}"
  fi
}

# make_certs DIR: a throwaway CA and a server cert for IP:127.0.0.1 signed by
# it. Sets CA_CERT, CERT_DIR (holds only ca.crt), SERVER_CERT, SERVER_KEY.
make_certs() {
  local d=$1
  mkdir -p "$d/ca-dir"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=strata interop test CA $$" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
  printf '%s\n' "subjectAltName=IP:127.0.0.1" "basicConstraints=CA:FALSE" \
    "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >"$d/server.ext"
  openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
    -days 2 -extfile "$d/server.ext" -out "$d/server.crt" 2>/dev/null
  openssl verify -CAfile "$d/ca.crt" "$d/server.crt" >/dev/null
  cp "$d/ca.crt" "$d/ca-dir/ca.crt"
  CA_CERT="$d/ca.crt" CERT_DIR="$d/ca-dir" SERVER_CERT="$d/server.crt" SERVER_KEY="$d/server.key"
}

# start_proxy: starts $INTEROP_PROXY with TLS (the throwaway CA's server
# cert) on a free port in front of the registry at $REG_ADDR, and points
# REG_ADDR at it. The configurations are docs/deploy.md's.
start_proxy() {
  local d="$WORK/proxy" backend=$REG_ADDR port pid attempt
  mkdir -p "$d"
  for attempt in 1 2 3; do
    port=$(pick_port)
    case $INTEROP_PROXY in
      nginx)
        cat >"$d/nginx.conf" <<CONF
user root;
worker_processes 1;
daemon off;
pid $d/nginx.pid;
events { worker_connections 512; }
http {
  access_log off;
  client_body_temp_path $d/body;
  proxy_temp_path $d/proxy-temp;
  fastcgi_temp_path $d/fastcgi;
  uwsgi_temp_path $d/uwsgi;
  scgi_temp_path $d/scgi;
  server {
    listen 127.0.0.1:$port ssl;
    ssl_certificate $SERVER_CERT;
    ssl_certificate_key $SERVER_KEY;
    client_max_body_size 0;
    chunked_transfer_encoding on;
    location / {
      proxy_pass http://$backend;
      proxy_http_version 1.1;
      proxy_request_buffering off;
      proxy_buffering off;
      proxy_read_timeout 900s;
      proxy_send_timeout 900s;
      proxy_set_header Host \$http_host;
      proxy_set_header X-Forwarded-Host \$http_host;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
  }
}
CONF
        nginx -e "$d/error.log" -p "$d" -c "$d/nginx.conf" >"$d/nginx.out" 2>&1 &
        ;;
      haproxy)
        cat "$SERVER_CERT" "$SERVER_KEY" >"$d/haproxy.pem"
        cat >"$d/haproxy.cfg" <<CONF
global
  maxconn 512
defaults
  mode http
  timeout connect 10s
  timeout client 900s
  timeout server 900s
  option forwardfor
frontend registry
  bind 127.0.0.1:$port ssl crt $d/haproxy.pem
  http-request set-header X-Forwarded-Proto https
  default_backend strata
backend strata
  server strata $backend
CONF
        haproxy -db -f "$d/haproxy.cfg" >"$d/haproxy.log" 2>&1 &
        ;;
    esac
    pid=$!
    STARTED_PIDS+=("$pid")
    if REGISTRY_READY_CACERT=$CA_CERT wait_http_200 "https://127.0.0.1:$port/v2/" "$pid" 30; then
      REG_ADDR="127.0.0.1:$port"
      return 0
    fi
    stop_pid "$pid"
    echo "interop: $INTEROP_PROXY did not come up on port $port (attempt $attempt)" >&2
  done
  tail -n 20 "$d"/*.log "$d"/*.out 2>/dev/null >&2 || true
  die "$INTEROP_PROXY failed to start"
}

docker_() { "$DOCKER" -H "unix://$DOCKER_SOCK" "$@"; }
# podman and buildah share one private store; pulls go to fresh stores.
store_flags() { echo "--root $WORK/store-$1/root --runroot $WORK/store-$1/run --storage-driver overlay"; }
podman_in() {
  local store=$1
  shift
  # shellcheck disable=SC2046
  podman $(store_flags "$store") --cgroup-manager cgroupfs --events-backend file "$@"
}
buildah_() {
  # shellcheck disable=SC2046
  buildah $(store_flags build) "$@"
}
crane_() { SSL_CERT_FILE=${CA_CERT:-${SSL_CERT_FILE:-}} "$CRANE" ${CRANE_FLAGS[@]+"${CRANE_FLAGS[@]}"} "$@"; }
oras_() { "$ORAS" "$@" "${ORAS_TLS[@]}"; }
regctl_() { SSL_CERT_FILE=${CA_CERT:-${SSL_CERT_FILE:-}} "$REGCTL" --host "$REGCTL_HOST" "$@"; }

login_all() {
  [ -n "${INTEROP_USER:-}" ] || return 0
  local pass=${INTEROP_PASS:-}
  [ -z "$DOCKERD_PID" ] || docker_ login -u "$INTEROP_USER" --password-stdin "$REG_ADDR" <<<"$pass"
  podman_in build login "${CTR_TLS[@]}" "${AUTHFILE[@]}" -u "$INTEROP_USER" --password-stdin "$REG_ADDR" <<<"$pass"
  crane_ auth login "$REG_ADDR" -u "$INTEROP_USER" --password-stdin <<<"$pass"
  oras_ login -u "$INTEROP_USER" --password-stdin "$REG_ADDR" <<<"$pass"
}

start_dockerd() {
  local d="$WORK/docker"
  mkdir -p "$d/data" "$d/exec"
  dockerd --iptables=false --ip6tables=false --bridge=none --storage-driver=overlay2 \
    --data-root "$d/data" --exec-root "$d/exec" -H "unix://$DOCKER_SOCK" \
    --pidfile "$d/docker.pid" >"$d/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  for _ in $(seq 1 600); do
    if docker_ version >/dev/null 2>&1; then
      return 0
    fi
    kill -0 "$DOCKERD_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "interop: dockerd did not start; last log lines:" >&2
  tail -n 20 "$d/dockerd.log" >&2
  stop_pid "$DOCKERD_PID" 30
  DOCKERD_PID=""
  return 1
}

# A root file system with a static busybox, and a tar of it.
make_fixtures() {
  local r="$WORK/fixtures/rootfs" app
  mkdir -p "$r/bin" "$r/etc" "$r/tmp"
  cp "$BUSYBOX" "$r/bin/busybox"
  for app in sh cat echo ls true; do ln -s busybox "$r/bin/$app"; done
  echo "root:x:0:0:root:/:/bin/sh" >"$r/etc/passwd"
  tar --numeric-owner -C "$r" -cf "$WORK/fixtures/rootfs.tar" .
}

# make_layout DIR: an OCI layout (umoci) with tags base (busybox) and
# t1..t3 (base plus a /marker layer that differs per tag).
make_layout() {
  local l=$1 t
  umoci init --layout "$l"
  umoci new --image "$l:base"
  umoci insert --image "$l:base" "$WORK/fixtures/rootfs" /
  umoci config --image "$l:base" --config.cmd /bin/sh --config.cmd -c --config.cmd "cat /marker"
  for t in t1 t2 t3; do
    umoci tag --image "$l:base" "$t"
    echo "marker $t $$ $RANDOM" >"$l.marker-$t"
    umoci insert --image "$l:$t" "$l.marker-$t" /marker
  done
  umoci gc --layout "$l"
}

# ------------------------------------------------------------------- cases

case_docker() {
  [ -n "$DOCKERD_PID" ] || fail "dockerd is not running"
  local ctx="$WORK/docker-ctx" img="$REG_ADDR/docker/multi:1" out pushed pulled id_before id_after
  mkdir -p "$ctx"
  docker_ import "$WORK/fixtures/rootfs.tar" strata-interop/base:1
  echo "layer a $RANDOM" >"$ctx/a.txt"
  # 48 MiB that does not compress: a layer far larger than any buffer.
  head -c 50331648 /dev/urandom >"$ctx/b.bin"
  cat >"$ctx/Dockerfile" <<'EOF'
FROM strata-interop/base:1
COPY a.txt /a.txt
COPY b.bin /b.bin
CMD ["/bin/cat", "/a.txt"]
EOF
  DOCKER_BUILDKIT=0 docker_ build --network none -q -t "$img" "$ctx"
  expect_eq "layer count" "$(docker_ image inspect -f '{{len .RootFS.Layers}}' "$img")" 3
  id_before=$(docker_ image inspect -f '{{.Id}}' "$img")

  out=$(docker_ push "$img")
  echo "$out"
  pushed=$(grep -o 'digest: sha256:[0-9a-f]*' <<<"$out" | cut -d' ' -f2)
  [ -n "$pushed" ] || fail "docker push printed no digest"
  expect_eq "registry digest of docker/multi:1" "$(registry_digest docker/multi 1)" "$pushed"

  docker_ rmi "$img" strata-interop/base:1
  if docker_ image inspect "$img" >/dev/null 2>&1; then fail "image still present after rmi"; fi
  out=$(docker_ pull "$img")
  echo "$out"
  pulled=$(sed -n 's/^Digest: //p' <<<"$out")
  expect_eq "pulled digest" "$pulled" "$pushed"
  id_after=$(docker_ image inspect -f '{{.Id}}' "$img")
  expect_eq "image id (config digest) after round trip" "$id_after" "$id_before"
  expect_contains "RepoDigests" "$(docker_ image inspect -f '{{range .RepoDigests}}{{println .}}{{end}}' "$img")" \
    "$REG_ADDR/docker/multi@$pushed"
  expect_eq "docker run output" "$(docker_ run --rm --network none "$img")" "$(cat "$ctx/a.txt")"
  expect_eq "big layer content" "$(docker_ run --rm --network none "$img" cat /b.bin | sha256sum)" \
    "$(sha256sum <"$ctx/b.bin")"

  docker_ rmi "$img"
  docker_ pull "$REG_ADDR/docker/multi@$pushed"
  expect_eq "image id after pull by digest" \
    "$(docker_ image inspect -f '{{.Id}}' "$REG_ADDR/docker/multi@$pushed")" "$id_before"

  if [ -n "${INTEROP_USER:-}" ]; then
    jq -e --arg r "$REG_ADDR" '.auths[$r].auth' "$DOCKER_CONFIG/config.json" >/dev/null ||
      fail "docker login left no credentials for $REG_ADDR in $DOCKER_CONFIG/config.json"
    docker_ logout "$REG_ADDR"
    if jq -e --arg r "$REG_ADDR" '.auths[$r].auth' "$DOCKER_CONFIG/config.json" >/dev/null; then
      fail "credentials for $REG_ADDR still in config.json after docker logout"
    fi
    docker_ rmi "$REG_ADDR/docker/multi@$pushed" "$img" 2>/dev/null || true
    if out=$(docker_ pull "$img" 2>&1); then fail "docker pull after logout succeeded: $out"; fi
    grep -qiE 'unauthorized|authentication required|no basic auth' <<<"$out" ||
      fail "docker pull after logout failed, but not for want of auth: $out"
    echo "ok: after docker logout the pull is refused: $out"
    docker_ login -u "$INTEROP_USER" --password-stdin "$REG_ADDR" <<<"${INTEROP_PASS:-}"
    out=$(docker_ pull "$img")
    expect_eq "pulled digest after login again" "$(sed -n 's/^Digest: //p' <<<"$out")" "$pushed"
  fi
}

# Only in auth+TLS mode: what must be refused is refused.
case_auth_refused() {
  local hdr="$WORK/refused.h" code out empty="$WORK/empty-auth"
  mkdir -p "$empty/docker"
  echo '{"auths":{}}' >"$empty/auth.json"
  echo '{}' >"$empty/docker/config.json"
  code=$(curl -sS --cacert "$CA_CERT" -o /dev/null -D "$hdr" -w '%{http_code}' \
    -H "Accept: $MANIFEST_ACCEPT" "$(registry_url crane/base/manifests/1)")
  expect_eq "anonymous manifest GET" "$code" 401
  tr -d '\r' <"$hdr" | grep -i '^www-authenticate: Bearer realm="https://'"$REG_ADDR"'/token"' ||
    fail "no Bearer challenge with an https realm: $(cat "$hdr")"
  code=$(curl -sS --cacert "$CA_CERT" -o /dev/null -w '%{http_code}' -u "$INTEROP_USER:wrong" \
    "$(registry_url crane/base/manifests/1)")
  expect_eq "wrong password manifest GET" "$code" 401
  code=$(curl -sS --cacert "$CA_CERT" -o /dev/null -w '%{http_code}' -u "$INTEROP_USER:wrong" \
    "$REG_SCHEME://$REG_ADDR/token?service=strata&scope=repository:crane/base:pull")
  expect_eq "wrong password /token" "$code" 401
  # containers/image also reads $DOCKER_CONFIG/config.json: point it away.
  if out=$(DOCKER_CONFIG="$empty/docker" HOME="$empty" REGISTRY_AUTH_FILE="$empty/auth.json" \
    skopeo inspect "${SKOPEO_TLS[@]}" --authfile "$empty/auth.json" "docker://$REG_ADDR/crane/base:1" 2>&1); then
    fail "anonymous skopeo inspect succeeded"
  fi
  grep -qiE 'unauthorized|authentication required|401' <<<"$out" || fail "anonymous skopeo failed otherwise: $out"
  echo "ok: anonymous skopeo inspect refused: $out"
  if out=$(DOCKER_CONFIG="$empty/docker" crane_ digest "$REG_ADDR/crane/base:1" 2>&1); then
    fail "anonymous crane digest succeeded"
  fi
  grep -qiE 'unauthorized|authentication required|401' <<<"$out" || fail "anonymous crane failed otherwise: $out"
  echo "ok: anonymous crane digest refused: $out"
  # TLS is really verified: without the CA the handshake fails.
  if out=$(skopeo inspect --tls-verify=true "${AUTHFILE[@]}" "docker://$REG_ADDR/crane/base:1" 2>&1); then
    fail "skopeo trusted the registry without the CA"
  fi
  grep -qi 'certificate' <<<"$out" || fail "skopeo without CA failed otherwise: $out"
  echo "ok: skopeo without --cert-dir rejects the certificate"
  if out=$(SSL_CERT_FILE=/dev/null "$CRANE" digest "$REG_ADDR/crane/base:1" 2>&1); then
    fail "crane trusted the registry without the CA"
  fi
  grep -qi 'certificate' <<<"$out" || fail "crane without CA failed otherwise: $out"
  echo "ok: crane without the CA rejects the certificate"
  # And the logged-in clients do get through.
  expect_eq "logged-in skopeo digest" \
    "$(skopeo inspect "${SKOPEO_TLS[@]}" "${AUTHFILE[@]}" "docker://$REG_ADDR/crane/base:1" | jq -r .Digest)" \
    "$(registry_digest crane/base 1)"
}

# build_image TAG ARCH MARKER: buildah commits an image from scratch.
build_image() {
  local tag=$1 arch=$2 ctr
  ctr=$(buildah_ from scratch)
  buildah_ copy "$ctr" "$WORK/fixtures/rootfs" / >/dev/null
  echo "$3" >"$WORK/marker-$tag"
  buildah_ copy "$ctr" "$WORK/marker-$tag" /marker >/dev/null
  buildah_ config --os linux --arch "$arch" --cmd '["/bin/cat","/marker"]' "$ctr"
  buildah_ commit -q --format oci "$ctr" "localhost/strata-interop/$tag"
  buildah_ rm "$ctr" >/dev/null
}

case_podman_formats() {
  local fmt want_type pushed config store ref
  build_image podman amd64 "podman $RANDOM"
  for fmt in oci v2s2; do
    case $fmt in
      oci) want_type=application/vnd.oci.image.manifest.v1+json ;;
      v2s2) want_type=application/vnd.docker.distribution.manifest.v2+json ;;
    esac
    ref="$REG_ADDR/podman/img:$fmt"
    podman_in build push -q "${CTR_TLS[@]}" "${AUTHFILE[@]}" --format "$fmt" \
      --digestfile "$WORK/podman-$fmt.digest" localhost/strata-interop/podman "docker://$ref"
    pushed=$(cat "$WORK/podman-$fmt.digest")
    fetch_manifest podman/img "$fmt" "$WORK/podman-$fmt.json" >/dev/null
    expect_eq "$fmt: registry digest" "$(sha256_of "$WORK/podman-$fmt.json")" "$pushed"
    expect_eq "$fmt: manifest mediaType" "$(jq -r .mediaType "$WORK/podman-$fmt.json")" "$want_type"
    config=$(jq -r .config.digest "$WORK/podman-$fmt.json")

    store="pull-$fmt"
    podman_in "$store" pull -q "${CTR_TLS[@]}" "${AUTHFILE[@]}" "$ref" >/dev/null
    expect_eq "$fmt: pulled digest" "$(podman_in "$store" image inspect --format '{{.Digest}}' "$ref")" "$pushed"
    expect_eq "$fmt: pulled image id" "sha256:$(podman_in "$store" image inspect --format '{{.Id}}' "$ref")" "$config"
  done
}

case_buildah_manifest_list() {
  local arch list=localhost/strata-interop/list pushed child store
  for arch in amd64 arm64; do
    build_image "multi-$arch" "$arch" "platform $arch $RANDOM"
  done
  buildah_ manifest create "$list" >/dev/null
  for arch in amd64 arm64; do
    buildah_ manifest add "$list" "containers-storage:localhost/strata-interop/multi-$arch" >/dev/null
  done
  buildah_ manifest push -q --all "${CTR_TLS[@]}" "${AUTHFILE[@]}" --format oci \
    --digestfile "$WORK/list.digest" "$list" "docker://$REG_ADDR/buildah/multi:1"
  pushed=$(cat "$WORK/list.digest")
  fetch_manifest buildah/multi 1 "$WORK/list.json" >/dev/null
  expect_eq "index digest" "$(sha256_of "$WORK/list.json")" "$pushed"
  expect_eq "index mediaType" "$(jq -r .mediaType "$WORK/list.json")" application/vnd.oci.image.index.v1+json
  expect_eq "platforms" "$(jq -r '[.manifests[].platform | .os + "/" + .architecture] | sort | join(" ")' "$WORK/list.json")" \
    "linux/amd64 linux/arm64"

  for arch in amd64 arm64; do
    child=$(jq -r --arg a "$arch" '.manifests[] | select(.platform.architecture == $a) | .digest' "$WORK/list.json")
    expect_eq "$arch: child manifest by digest" "$(registry_digest buildah/multi "$child")" "$child"
    store="pull-$arch"
    podman_in "$store" pull -q "${CTR_TLS[@]}" "${AUTHFILE[@]}" --arch "$arch" "$REG_ADDR/buildah/multi:1" >/dev/null
    expect_eq "$arch: pulled architecture" \
      "$(podman_in "$store" image inspect --format '{{.Architecture}}' "$REG_ADDR/buildah/multi:1")" "$arch"
    expect_contains "$arch: RepoDigests" \
      "$(podman_in "$store" image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$REG_ADDR/buildah/multi:1")" \
      "$REG_ADDR/buildah/multi@$child"
  done
}

case_skopeo() {
  local l="$WORK/skopeo/layout" back="$WORK/skopeo/back" t want got
  mkdir -p "$WORK/skopeo"
  make_layout "$l"
  for t in t1 t2 t3; do
    want=$(layout_digest "$l" "$t")
    skopeo copy -q "${SKOPEO_COPY_TLS[@]}" "${AUTHFILE[@]}" --digestfile "$WORK/skopeo/$t.digest" \
      "oci:$l:$t" "docker://$REG_ADDR/skopeo/img:$t"
    expect_eq "$t: pushed digest = layout digest" "$(cat "$WORK/skopeo/$t.digest")" "$want"
    expect_eq "$t: registry digest" "$(registry_digest skopeo/img "$t")" "$want"
  done

  skopeo copy -q "${SKOPEO_COPY_TLS[@]}" "${AUTHFILE[@]}" "docker://$REG_ADDR/skopeo/img:t1" "oci:$back:t1"
  expect_eq "copied back to a layout" "$(layout_digest "$back" t1)" "$(layout_digest "$l" t1)"
  verify_layout_blobs "$back"

  skopeo sync "${SKOPEO_COPY_TLS[@]}" "${AUTHFILE[@]}" --src docker --dest docker \
    "$REG_ADDR/skopeo/img" "$REG_ADDR/skopeo-mirror"
  expect_eq "mirror tags" "$(registry_tags skopeo-mirror/img | tr '\n' ' ')" "t1 t2 t3 "
  for t in t1 t2 t3; do
    expect_eq "$t: synced digest" "$(registry_digest skopeo-mirror/img "$t")" "$(layout_digest "$l" "$t")"
  done

  want=$(layout_digest "$l" t2)
  got=$(skopeo inspect "${SKOPEO_TLS[@]}" "${AUTHFILE[@]}" "docker://$REG_ADDR/skopeo/img:t2")
  expect_eq "inspect Digest" "$(jq -r .Digest <<<"$got")" "$want"
  expect_eq "inspect RepoTags" "$(jq -r '.RepoTags | sort | join(" ")' <<<"$got")" "t1 t2 t3"
  skopeo inspect --raw "${SKOPEO_TLS[@]}" "${AUTHFILE[@]}" "docker://$REG_ADDR/skopeo/img:t2" >"$WORK/skopeo/raw.json"
  expect_eq "inspect --raw hashes to digest" "$(sha256_of "$WORK/skopeo/raw.json")" "$want"
  expect_eq "inspect --config Cmd" \
    "$(skopeo inspect --config "${SKOPEO_TLS[@]}" "${AUTHFILE[@]}" "docker://$REG_ADDR/skopeo/img:t2" | jq -c .config.Cmd)" \
    '["/bin/sh","-c","cat /marker"]'

  skopeo delete "${SKOPEO_TLS[@]}" "${AUTHFILE[@]}" "docker://$REG_ADDR/skopeo/img:t3"
  expect_manifest_gone skopeo/img t3
  expect_manifest_gone skopeo/img "$(layout_digest "$l" t3)"
  expect_eq "tags after delete" "$(registry_tags skopeo/img | tr '\n' ' ')" "t1 t2 "
  expect_eq "t1 untouched" "$(registry_digest skopeo/img t1)" "$(layout_digest "$l" t1)"
}

case_crane() {
  local base="$REG_ADDR/crane/base:1" app="$REG_ADDR/crane/app:1" d_base d_app layer size code
  crane_ append -f "$WORK/fixtures/rootfs.tar" -t "$base"
  d_base=$(crane_ digest "$base")
  expect_eq "crane digest = registry digest" "$(registry_digest crane/base 1)" "$d_base"

  mkdir -p "$WORK/crane/add"
  echo "crane layer $RANDOM" >"$WORK/crane/add/hello"
  tar -C "$WORK/crane/add" -cf "$WORK/crane/add.tar" hello
  crane_ append -b "$base" -f "$WORK/crane/add.tar" -t "$app"
  d_app=$(crane_ digest "$app")
  crane_ manifest "$app" >"$WORK/crane/app.json"
  expect_eq "append: manifest digest" "$(sha256_of "$WORK/crane/app.json")" "$d_app"
  expect_eq "append: layer count" "$(jq '.layers | length' "$WORK/crane/app.json")" 2
  expect_eq "append: base layer kept" "$(jq -r '.layers[0].digest' "$WORK/crane/app.json")" \
    "$(crane_ manifest "$base" | jq -r '.layers[0].digest')"

  layer=$(jq -r '.layers[1].digest' "$WORK/crane/app.json")
  size=$(jq -r '.layers[1].size' "$WORK/crane/app.json")
  crane_ blob "$REG_ADDR/crane/app@$layer" >"$WORK/crane/layer.tgz"
  expect_eq "blob: digest of bytes" "$(sha256_of "$WORK/crane/layer.tgz")" "$layer"
  expect_eq "blob: size" "$(stat -c %s "$WORK/crane/layer.tgz")" "$size"
  expect_eq "blob: layer content" "$(tar -xzOf "$WORK/crane/layer.tgz" hello)" "$(cat "$WORK/crane/add/hello")"
  code=$(curl -sS -r 10-49 -D "$WORK/crane/range.h" -o "$WORK/crane/range.bin" -w '%{http_code}' \
    "${CURL_AUTH[@]}" "$(registry_url "crane/app/blobs/$layer")")
  expect_eq "range: status" "$code" 206
  expect_eq "range: Content-Range" \
    "$(tr -d '\r' <"$WORK/crane/range.h" | awk -F': ' 'tolower($1) == "content-range" { print $2 }')" "bytes 10-49/$size"
  expect_eq "range: bytes" "$(od -An -tx1 "$WORK/crane/range.bin")" \
    "$(tail -c +11 "$WORK/crane/layer.tgz" | head -c 40 | od -An -tx1)"

  crane_ copy "$app" "$REG_ADDR/crane/copy:1"
  expect_eq "copy: digest" "$(crane_ digest "$REG_ADDR/crane/copy:1")" "$d_app"
  expect_eq "copy: registry digest" "$(registry_digest crane/copy 1)" "$d_app"
  crane_ tag "$REG_ADDR/crane/copy:1" 2
  expect_eq "ls" "$(crane_ ls "$REG_ADDR/crane/copy" | sort | tr '\n' ' ')" "1 2 "

  crane_ mutate "$app" --label strata.test=yes --env STRATA=1 -t "$REG_ADDR/crane/mut:1"
  crane_ config "$REG_ADDR/crane/mut:1" >"$WORK/crane/mut-config.json"
  expect_eq "mutate: label" "$(jq -r '.config.Labels["strata.test"]' "$WORK/crane/mut-config.json")" yes
  expect_contains "mutate: env" "$(jq -r '.config.Env[]' "$WORK/crane/mut-config.json")" STRATA=1
  expect_eq "mutate: layers unchanged" "$(crane_ manifest "$REG_ADDR/crane/mut:1" | jq -c '[.layers[].digest]')" \
    "$(jq -c '[.layers[].digest]' "$WORK/crane/app.json")"
  expect_eq "mutate: config digest" "$(crane_ manifest "$REG_ADDR/crane/mut:1" | jq -r .config.digest)" \
    "$(sha256_of "$WORK/crane/mut-config.json")"

  local catalog repo
  catalog=$(crane_ catalog "$REG_ADDR")
  for repo in crane/base crane/app crane/copy crane/mut; do
    expect_contains "catalog" "$catalog" "$repo"
  done

  crane_ delete "$REG_ADDR/crane/copy@$d_app"
  expect_manifest_gone crane/copy 1
  expect_manifest_gone crane/copy "$d_app"
  if crane_ digest "$REG_ADDR/crane/copy:2" 2>/dev/null; then fail "tag 2 still resolves after delete"; fi
  expect_eq "app untouched by delete in another repo" "$(registry_digest crane/app 1)" "$d_app"
}

case_oras() {
  local d="$WORK/oras" art="$REG_ADDR/oras/art:v1" img="$REG_ADDR/oras/img:1"
  local art_type=application/vnd.strata.test.v1 sig_type=application/vnd.strata.signature.v1
  local pushed img_digest sig_digest
  mkdir -p "$d/in" "$d/sig"
  cd "$d/in"
  echo "payload $RANDOM" >payload.txt
  oras_ push "$art" --artifact-type "$art_type" --export-manifest "$d/art.json" payload.txt:text/plain
  pushed=$(sha256_of "$d/art.json")
  expect_eq "artifact: registry digest" "$(registry_digest oras/art v1)" "$pushed"
  expect_eq "artifact: artifactType" "$(jq -r .artifactType "$d/art.json")" "$art_type"
  oras_ manifest fetch "$art" >"$d/fetched.json"
  expect_eq "manifest fetch: bytes" "$(sha256_of "$d/fetched.json")" "$pushed"
  expect_eq "manifest fetch --descriptor" "$(oras_ manifest fetch --descriptor "$art" | jq -r .digest)" "$pushed"
  oras_ pull "$art" -o "$d/out"
  cmp "$d/out/payload.txt" "$d/in/payload.txt"
  echo "ok: pulled payload identical"

  # An image (config + layer) to sign.
  tar -C "$WORK/fixtures/rootfs" -czf layer.tar.gz .
  echo '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["'"$(gzip -dc layer.tar.gz | sha256sum | cut -d' ' -f1 | sed 's/^/sha256:/')"'"]}}' >config.json
  oras_ push "$img" --config config.json:application/vnd.oci.image.config.v1+json \
    --export-manifest "$d/img.json" layer.tar.gz:application/vnd.oci.image.layer.v1.tar+gzip
  img_digest=$(sha256_of "$d/img.json")
  expect_eq "image: registry digest" "$(registry_digest oras/img 1)" "$img_digest"

  cd "$d/sig"
  echo "signature over $img_digest" >sig.txt
  oras_ attach "$img" --artifact-type "$sig_type" --export-manifest "$d/sig.json" sig.txt:application/vnd.strata.signature
  sig_digest=$(sha256_of "$d/sig.json")
  expect_eq "attach: subject" "$(jq -r .subject.digest "$d/sig.json")" "$img_digest"
  expect_eq "attach: registry digest" "$(registry_digest oras/img "$sig_digest")" "$sig_digest"

  oras_ discover "$img" --format json >"$d/discover.json"
  expect_eq "discover: referrer" \
    "$(jq -r --arg t "$sig_type" '[.referrers[] | select(.artifactType == $t) | .digest] | join(" ")' "$d/discover.json")" \
    "$sig_digest"
  curl -fsS "${CURL_AUTH[@]}" "$(registry_url "oras/img/referrers/$img_digest")" >"$d/referrers.json"
  expect_eq "referrers API: mediaType" "$(jq -r .mediaType "$d/referrers.json")" application/vnd.oci.image.index.v1+json
  expect_eq "referrers API: entry" \
    "$(jq -r '[.manifests[] | .digest + " " + .artifactType] | join(",")' "$d/referrers.json")" "$sig_digest $sig_type"
  curl -fsS "${CURL_AUTH[@]}" "$(registry_url "oras/img/referrers/$img_digest?artifactType=application/x-none")" >"$d/none.json"
  expect_eq "referrers API: filtered out" "$(jq '.manifests | length' "$d/none.json")" 0

  oras_ pull "$REG_ADDR/oras/img@$sig_digest" -o "$d/sig-out"
  cmp "$d/sig-out/sig.txt" "$d/sig/sig.txt"
  echo "ok: pulled signature identical"
}

case_regctl() {
  local l="$WORK/regctl/layout" d="$WORK/regctl" t src
  mkdir -p "$d"
  make_layout "$l"
  tar -C "$l" -cf "$d/layout.tar" .
  for t in base t1 t2; do
    regctl_ image import --name "$t" "$REG_ADDR/regctl/src:$t" "$d/layout.tar"
    expect_eq "import $t: digest" "$(regctl_ image digest "$REG_ADDR/regctl/src:$t")" "$(layout_digest "$l" "$t")"
  done
  src=$(layout_digest "$l" t1)

  regctl_ image copy "$REG_ADDR/regctl/src:t1" "$REG_ADDR/regctl/dst:1"
  regctl_ image copy "$REG_ADDR/regctl/src:t1" "$REG_ADDR/regctl/dst:2"
  expect_eq "copy: digest" "$(registry_digest regctl/dst 1)" "$src"
  expect_eq "tag ls" "$(regctl_ tag ls "$REG_ADDR/regctl/dst" | sort | tr '\n' ' ')" "1 2 "
  regctl_ tag rm "$REG_ADDR/regctl/dst:2"
  expect_eq "tag ls after rm" "$(regctl_ tag ls "$REG_ADDR/regctl/dst" | sort | tr '\n' ' ')" "1 "
  expect_eq "tag rm keeps the manifest" "$(registry_digest regctl/dst 1)" "$src"

  echo "artifact $RANDOM" >"$d/data.txt"
  regctl_ artifact put --artifact-type application/vnd.strata.regctl.v1 \
    -f "$d/data.txt" -m text/plain "$REG_ADDR/regctl/art:1"
  regctl_ artifact get "$REG_ADDR/regctl/art:1" >"$d/got.txt"
  cmp "$d/got.txt" "$d/data.txt"
  echo "ok: artifact get returns the bytes put"
  fetch_manifest regctl/art 1 "$d/art.json" >/dev/null
  expect_eq "artifact: artifactType" "$(jq -r .artifactType "$d/art.json")" application/vnd.strata.regctl.v1

  echo "sbom $RANDOM" >"$d/sbom.txt"
  regctl_ artifact put --artifact-type application/vnd.strata.sbom.v1 --subject "$REG_ADDR/regctl/dst:1" \
    -f "$d/sbom.txt" -m text/plain
  regctl_ artifact get --subject "$REG_ADDR/regctl/dst:1" --filter-artifact-type application/vnd.strata.sbom.v1 >"$d/sbom-got.txt"
  cmp "$d/sbom-got.txt" "$d/sbom.txt"
  echo "ok: referrer artifact found by subject"

  regctl_ image check-base "$REG_ADDR/regctl/src:t1" --base "$REG_ADDR/regctl/src:base"
  echo "ok: check-base accepts the real base"
  if regctl_ image check-base "$REG_ADDR/regctl/src:t1" --base "$REG_ADDR/regctl/src:t2" --quiet; then
    fail "check-base accepted t2 as the base of t1"
  fi
  echo "ok: check-base rejects a wrong base"
}

# ------------------------------------------------------------------ driver

make_fixtures
AUTH_TLS_ARGS=()
if [ "$AUTH_TLS" = true ]; then
  make_certs "$WORK/certs"
  INTEROP_USER=interop INTEROP_PASS="pw-$RANDOM$RANDOM-x"
  printf '%s' "$INTEROP_PASS" | "$REGISTRY_BIN" htpasswd "$WORK/htpasswd" "$INTEROP_USER" >/dev/null
  AUTH_TLS_ARGS=(--htpasswd "$WORK/htpasswd" --tls-cert "$SERVER_CERT" --tls-key "$SERVER_KEY")
  REGISTRY_READY_CACERT=$CA_CERT REG_SCHEME=https
  if [ -n "$INTEROP_PROXY" ]; then
    # Plain HTTP behind the proxy, which alone speaks TLS to the clients.
    AUTH_TLS_ARGS=(--htpasswd "$WORK/htpasswd" --trusted-proxy 127.0.0.1/32)
    REGISTRY_READY_CACERT=""
  fi
  ALL_CASES+=(auth_refused)
fi
[ -z "${INTEROP_USER:-}" ] || REGISTRY_READY_AUTH="$INTEROP_USER:${INTEROP_PASS:-}"
registry_start interop "$WORK/registry/data" ${AUTH_TLS_ARGS[@]+"${AUTH_TLS_ARGS[@]}"} \
  ${EXTRA_REGISTRY_ARGS[@]+"${EXTRA_REGISTRY_ARGS[@]}"}
if [ -n "$INTEROP_PROXY" ]; then
  start_proxy
  echo "interop: $INTEROP_PROXY at https://$REG_ADDR in front of the registry (pid $REG_PID)"
fi
echo "interop: registry at $REG_SCHEME://$REG_ADDR (pid $REG_PID)${INTEROP_USER:+, user $INTEROP_USER}"
client_setup

read -r -a CASES <<<"${INTEROP_CASES:-${ALL_CASES[*]}}"
for c in "${CASES[@]}"; do
  declare -F "case_$c" >/dev/null || die "unknown case '$c' (known: ${ALL_CASES[*]})"
done
if [[ " ${CASES[*]} " == *" docker "* ]]; then
  start_dockerd || true # case_docker then fails on its own
fi
login_all

# Case logs are kept (gitignored) for a look after a failure.
LOG_DIR="$REPO/conformance/results-interop"
[ "$AUTH_TLS" = false ] || LOG_DIR="$LOG_DIR-auth-tls"
[ -z "$INTEROP_PROXY" ] || LOG_DIR="$REPO/conformance/results-interop-proxy-$INTEROP_PROXY"
rm -rf "$LOG_DIR"
mkdir -p "$LOG_DIR"
failed=0
for c in "${CASES[@]}"; do
  log="$LOG_DIR/$c.log"
  start=$SECONDS
  set +e
  (
    set -eEuo pipefail
    trap 'echo "FAILED: line $LINENO: $BASH_COMMAND (exit $?)" >&2' ERR
    cd "$WORK"
    "case_$c"
  ) >"$log" 2>&1
  rc=$?
  set -e
  secs=$((SECONDS - start))
  if [ "$rc" -eq 0 ]; then
    echo "PASS  $c (${secs}s)"
  else
    failed=$((failed + 1))
    echo "FAIL  $c (${secs}s); last lines of its log:"
    tail -n 25 "$log" | sed 's/^/    /'
  fi
done

cp "$WORK/registry/interop.log" "$LOG_DIR/registry.log" 2>/dev/null || true
[ -z "$DOCKERD_PID" ] || cp "$WORK/docker/dockerd.log" "$LOG_DIR/dockerd.log"
[ -z "$INTEROP_PROXY" ] || cp "$WORK"/proxy/*.log "$LOG_DIR/" 2>/dev/null || true
if [ "$failed" -ne 0 ]; then
  kill -0 "$REG_PID" 2>/dev/null || echo "interop: the registry process died"
  echo "interop: case logs in $LOG_DIR"
fi
mode=plain
[ "$AUTH_TLS" = false ] || mode=auth+tls
[ -z "$INTEROP_PROXY" ] || mode="auth+tls through $INTEROP_PROXY"
echo "interop ($mode): $(( ${#CASES[@]} - failed )) passed, $failed failed"
if [ "$INTEROP_AUTH_TLS" = both ]; then
  # Stop this run's registry and dockerd first, then the auth+TLS run and
  # the runs behind each reverse proxy.
  cleanup
  trap - EXIT
  rc=0
  INTEROP_AUTH_TLS=1 bash "$0" || rc=$?
  for proxy in nginx haproxy; do
    INTEROP_AUTH_TLS=1 INTEROP_PROXY=$proxy INTEROP_CASES="$PROXY_CASES" bash "$0" || rc=$?
  done
  [ "$failed" -eq 0 ] && [ "$rc" -eq 0 ]
  exit
fi
[ "$failed" -eq 0 ]
