#!/usr/bin/env bash
# Rootless mode end to end: the runner run by an ordinary user.
#
# As root, this makes (or reuses) the user `strata-rootless` with
# subordinate id ranges in /etc/subuid and /etc/subgid, starts a registry
# on loopback, and builds and pushes two images with a root runner of its
# own: `base` (a static busybox, a directory whose file a later layer
# deletes, a home owned by 1000:1000) and `far` (a file owned by uid
# 70000, outside the mapped range). Then, as the user with a clean
# environment (HOME, XDG_DATA_HOME, XDG_RUNTIME_DIR under a fresh per-run
# directory), it checks: pull; run echo; exit codes; the whiteout (the
# deleted file is gone, its sibling kept); the image's files on disk owned
# by the mapped host ids; a file made in the container as uid 1000 lands on
# the host as subuid+999; seccomp denies unshare(2) unless unconfined;
# `--memory` fails with the rootless message; `far` fails naming uid 70000; a `runner build` of a tiny Dockerfile and a
# run of its image; `run -d`, `exec`, `stop`, `rm`; a missing subuid range
# gives the usermod hint. Networking, in a network namespace the test
# makes (`ip netns add`, entered with nsenter, `lo` up): `--network none`
# has only lo; `--network bridge` gets slirp4netns's tap0 and route; the
# container cannot reach a server on the namespace's 127.0.0.1 through
# 10.0.2.2 unless `allow_host_loopback=true`; a detached busybox httpd
# published on 127.0.0.1 (a fixed port and one the runner picks) answers
# curl from the namespace, `port` and `ps` show both, a taken port is
# refused, slirp4netns is the monitor's child and PID 1 holds none of its
# descriptors; after stop and rm slirp4netns is gone, and it also goes
# when a container's monitor is killed outright. This VM's
# /dev/net/tun is mode 0600 (udev would make it 0666): the test checks the
# runner's message about it, then binds a 0666 node of the same device
# over it in a private mount namespace (held by a sleep) where the user's
# network commands run, leaving the machine's own as it is. Last, that
# nothing is left behind: no process of
# the user or of its subordinate ids (after the pause process that holds
# the user namespace is stopped), no mount under the per-run directory,
# and nothing the user owns outside it.
#
# Cleanup (EXIT trap, also on failure): every process of the user and its
# subordinate ids by PID, the registry and the other processes the test
# started, the network namespace, the per-run directory. The account
# and its ranges stay, so re-runs are idempotent.
#
# Environment: RUNNER_BIN (default target/release/runner), REGISTRY_BIN.
set -euo pipefail

# shellcheck source=conformance/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNNER_BIN="${RUNNER_BIN:-$REPO/target/release/runner}"
require_tool "$RUNNER_BIN" "$REGISTRY_BIN" useradd usermod runuser newuidmap newgidmap \
  /bin/busybox curl ss ip nsenter unshare slirp4netns jq
[ "$(id -u)" = 0 ] || die "run as root: it makes the test user"

TEST_USER=strata-rootless
SUB_START=700000
SUB_COUNT=65536
if ! id "$TEST_USER" >/dev/null 2>&1; then
  useradd --create-home --shell /bin/sh "$TEST_USER"
fi
for f in /etc/subuid /etc/subgid; do
  touch "$f"
  grep -q "^$TEST_USER:" "$f" || echo "$TEST_USER:$SUB_START:$SUB_COUNT" >>"$f"
done
USER_UID=$(id -u "$TEST_USER")
USER_GID=$(id -g "$TEST_USER")
USER_HOME=$(getent passwd "$TEST_USER" | cut -d: -f6)
SUB_START=$(awk -F: -v u="$TEST_USER" '$1 == u { print $2; exit }' /etc/subuid)

# Per-run directories: the user's state and runtime dirs, under its home.
RUN_DIR="$USER_HOME/rootless-test.$$"
WORK=$(mktemp -d /tmp/strata-rootless.XXXXXX)
touch "$WORK/stamp"
FAILED=0
NETNS=strata-rootless-$$

# The PIDs of the user's processes and of its subordinate ids' (zombies
# aside: dead, and left to init to reap, which this VM's does slowly).
user_pids() {
  ps -eo pid=,uid=,stat= | awk -v u="$USER_UID" -v lo="$SUB_START" -v n="$SUB_COUNT" \
    '($2 == u || ($2 >= lo && $2 < lo + n)) && $3 !~ /^Z/ { print $1 }'
}

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  local pid
  for pid in $(user_pids); do kill -KILL "$pid" 2>/dev/null || true; done
  stop_started_processes
  [ ! -e "/run/netns/$NETNS" ] || ip netns del "$NETNS"
  rm -rf "$RUN_DIR" "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$RUN_DIR/data" "$RUN_DIR/run" "$RUN_DIR/ctx"
chmod 700 "$RUN_DIR" "$RUN_DIR/run"
chown -R "$TEST_USER:$USER_GID" "$RUN_DIR"

# as_user ARGS...: the runner as the test user, with a clean environment.
as_user() {
  (cd "$RUN_DIR" && runuser -u "$TEST_USER" -- env -i HOME="$USER_HOME" \
    XDG_DATA_HOME="$RUN_DIR/data" XDG_RUNTIME_DIR="$RUN_DIR/run" \
    PATH=/usr/sbin:/usr/bin:/sbin:/bin "$RUNNER_BIN" "$@")
}
# in_netns CMD...: CMD (as root) in the test's network namespace only.
in_netns() { nsenter --net="/run/netns/$NETNS" "$@"; }
# as_user_net ARGS...: the runner as the user in the test's network
# namespace, in the mount namespace of $TUN_HOLDER (with a 0666
# /dev/net/tun) once it is set.
as_user_net() {
  (cd "$RUN_DIR" && nsenter --net="/run/netns/$NETNS" \
    ${TUN_HOLDER:+--mount="/proc/$TUN_HOLDER/ns/mnt" --wd="$RUN_DIR"} \
    runuser -u "$TEST_USER" -- env -i HOME="$USER_HOME" \
    XDG_DATA_HOME="$RUN_DIR/data" XDG_RUNTIME_DIR="$RUN_DIR/run" \
    PATH=/usr/sbin:/usr/bin:/sbin:/bin "$RUNNER_BIN" "$@")
}

pass() { printf '  ok   %s\n' "$*"; }
fail() {
  printf '  FAIL %s\n' "$*"
  FAILED=1
}
# expect NAME WANT GOT
expect() {
  if [ "$2" = "$3" ]; then pass "$1"; else fail "$1: want [$2], got [$3]"; fi
}
# expect_in NAME NEEDLE TEXT
expect_in() {
  case $3 in *"$2"*) pass "$1" ;; *) fail "$1: [$2] not in [$3]" ;; esac
}

echo "== rootless: seeding images (as root)"
registry_start rootless-registry "$WORK/registry"
REG=$REG_ADDR
ROOT_RUNNER=("$RUNNER_BIN" --root "$WORK/root-runner")
mkdir -p "$WORK/base"
cp /bin/busybox "$WORK/base/busybox"
cat >"$WORK/base/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN mkdir -p /gone /home/app /tmp && chmod 1777 /tmp && echo doomed >/gone/file && \
    echo kept >/gone/kept && chown 1000:1000 /home/app
RUN rm /gone/file
DOCKERFILE
"${ROOT_RUNNER[@]}" build -q -t "$REG/rootless/base:1" --push "$WORK/base" >/dev/null
mkdir -p "$WORK/far"
printf 'FROM %s\nRUN touch /far && chown 70000:70000 /far\n' "$REG/rootless/base:1" \
  >"$WORK/far/Dockerfile"
"${ROOT_RUNNER[@]}" build -q -t "$REG/rootless/far:1" --push "$WORK/far" >/dev/null
BASE="$REG/rootless/base:1"

echo "== rootless: as $TEST_USER (uid $USER_UID, subordinate ids from $SUB_START)"
as_user pull "$BASE" >/dev/null && pass "pull as the user" || fail "pull as the user"
out=$(as_user run --rm "$BASE" echo hello 2>"$WORK/run.err") || true
expect "run echo" hello "$out"
expect_in "run says once which limits are not enforced" "not enforced" "$(cat "$WORK/run.err")"
expect "the warning is printed once" 1 "$(grep -c 'not enforced' "$WORK/run.err")"
code=0
as_user run --rm "$BASE" sh -c 'exit 7' 2>/dev/null || code=$?
expect "exit code" 7 "$code"
out=$(as_user run --rm "$BASE" id -u 2>/dev/null) || true
expect "container root" 0 "$out"
out=$(as_user run --rm "$BASE" sh -c 'ls /gone; cat /gone/kept' 2>/dev/null) || true
expect "whiteout hides the deleted file" "$(printf 'kept\nkept')" "$out"

# On disk: the image's root-owned files belong to the user, 1000 -> subuid+999.
layers="$RUN_DIR/data/strata-runner/layers/sha256"
owner=$(find "$layers" -path '*/bin/busybox' -printf '%u' -quit)
expect "image root's files owned by the user on disk" "$TEST_USER" "$owner"
owner=$(find "$layers" -path '*/home/app' -printf '%U:%G' -quit)
expect "image uid 1000 owned by subuid+999 on disk" "$((SUB_START + 999)):$((SUB_START + 999))" "$owner"
as_user run --rm -v "$RUN_DIR/ctx:/out" "$BASE" sh -c 'touch /out/root-made' 2>/dev/null || true
expect "a file container root makes is the user's" "$USER_UID" "$(stat -c %u "$RUN_DIR/ctx/root-made" 2>/dev/null)"

# seccomp: unshare(CLONE_NEWUSER) is denied by the default profile only.
code=0
as_user run --rm "$BASE" unshare -U true 2>/dev/null || code=$?
[ "$code" != 0 ] && pass "seccomp denies unshare" || fail "seccomp denies unshare (exit $code)"
code=0
as_user run --rm --security-opt seccomp=unconfined "$BASE" unshare -U true 2>/dev/null || code=$?
expect "unshare allowed when unconfined (the denial was seccomp's)" 0 "$code"

err=$(as_user run --rm --memory 32m "$BASE" true 2>&1) && fail "--memory should fail" || true
expect_in "--memory fails with the rootless message" "--memory cannot be enforced in rootless mode" "$err"
out=$(as_user run --rm --network host "$BASE" sh -c 'echo net' 2>/dev/null) || true
expect "--network host" net "$out"
err=$(as_user run --rm "$REG/rootless/far:1" true 2>&1) && fail "far should fail" || true
expect_in "an id outside the range is named" "owned by uid 70000" "$err"

# build: a tiny Dockerfile on top of base, and a run of its image.
cat >"$RUN_DIR/ctx/Dockerfile" <<'DOCKERFILE'
FROM __BASE__
RUN echo built >/built && rm -r /gone && mkdir /gone && echo new >/gone/only
DOCKERFILE
sed -i "s|__BASE__|$BASE|" "$RUN_DIR/ctx/Dockerfile"
chown "$TEST_USER" "$RUN_DIR/ctx/Dockerfile"
as_user build -q -t rootless/built:1 "$RUN_DIR/ctx" >/dev/null 2>"$WORK/build.err" &&
  pass "build as the user" || fail "build as the user: $(tail -n 3 "$WORK/build.err")"
out=$(as_user run --rm rootless/built:1 sh -c 'cat /built; ls /gone' 2>/dev/null) || true
expect "run the built image (opaque dir from the build)" "$(printf 'built\nonly')" "$out"

# Detached: run -d, exec, stop, rm (one namespace shared across commands).
id=$(as_user run -d --name rl1 "$BASE" sleep 300 2>/dev/null) || true
out=$(as_user exec rl1 sh -c 'echo in; id -u' 2>/dev/null) || true
expect "exec into a detached container" "$(printf 'in\n0')" "$out"
as_user stop -t 1 rl1 >/dev/null 2>&1 && pass "stop" || fail "stop"
as_user rm rl1 >/dev/null 2>&1 && pass "rm" || fail "rm"
expect "ps is empty" "" "$(as_user ps -q 2>/dev/null)"
[ -n "$id" ] || fail "run -d printed no id"

echo "== rootless: networking (slirp4netns, in network namespace $NETNS)"
ip netns add "$NETNS"
in_netns ip link set lo up
# A server on the namespace's loopback that containers must not reach.
mkdir -p "$WORK/www"
echo loopback-secret >"$WORK/www/index.html"
LOOP_PORT=18081
WEB_PORT=18080
nsenter --net="/run/netns/$NETNS" busybox httpd -f -p "127.0.0.1:$LOOP_PORT" -h "$WORK/www" &
STARTED_PIDS+=("$!")
body=""
for _ in $(seq 1 50); do
  body=$(in_netns curl -s --max-time 2 "http://127.0.0.1:$LOOP_PORT/" || true)
  [ -z "$body" ] || break
  sleep 0.1
done
expect "a server answers on the namespace's 127.0.0.1" loopback-secret "$body"
if runuser -u "$TEST_USER" -- test -r /dev/net/tun -a -w /dev/net/tun; then
  echo "  (the user can open /dev/net/tun here: its error message is not checked)"
else
  err=$(as_user_net run --rm -p 127.0.0.1::80 "$BASE" true 2>&1) && fail "-p without /dev/net/tun should fail" || true
  expect_in "a /dev/net/tun the user cannot open is named, with the fix" "chmod 0666 /dev/net/tun" "$err"
fi
mknod -m 666 "$WORK/tun" c 10 200
unshare --mount --propagation private sh -c \
  'mount --bind "$1" /dev/net/tun && : >"$2" && exec sleep 3600' sh "$WORK/tun" "$WORK/tun.ready" &
TUN_HOLDER=$!
STARTED_PIDS+=("$TUN_HOLDER")
for _ in $(seq 1 50); do [ -e "$WORK/tun.ready" ] && break; sleep 0.1; done
[ -e "$WORK/tun.ready" ] || die "the mount namespace with a 0666 /dev/net/tun did not come up"

out=$(as_user_net run --rm --network none "$BASE" ip -o link 2>/dev/null | awk -F': ' '{ print $2 }' | tr '\n' ' ') || true
expect "--network none has only lo" "lo " "$out"
out=$(as_user_net run --rm --network bridge "$BASE" sh -c 'ip -o -4 addr show tap0; ip route; cat /etc/resolv.conf' 2>"$WORK/net.err") || true
expect_in "--network bridge: tap0 has slirp4netns's address" "10.0.2.100/24" "$out"
expect_in "its default route is slirp4netns's gateway" "default via 10.0.2.2" "$out"
expect_in "its name server is slirp4netns's forwarder" "nameserver 10.0.2.3" "$out"
[ -z "$out" ] && echo "    $(tail -n 3 "$WORK/net.err")"
# (busybox nc, not wget: this busybox's wget crashes on any URL.)
fetch_loop="printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 10.0.2.2 $LOOP_PORT"
out=$(as_user_net run --rm --network bridge "$BASE" sh -c "$fetch_loop" 2>/dev/null) || true
case $out in
  *loopback-secret*) fail "the container reached the host's 127.0.0.1 through 10.0.2.2" ;;
  *) pass "the host's 127.0.0.1 is out of reach (10.0.2.2, host loopback disabled)" ;;
esac
out=$(as_user_net run --rm --network slirp4netns:allow_host_loopback=true "$BASE" \
  sh -c "$fetch_loop" 2>"$WORK/loop.err") || true
expect_in "allow_host_loopback=true reaches it (so the check above can fail)" loopback-secret "$out"
[ -n "$out" ] || echo "    $(tail -n 3 "$WORK/loop.err")"

as_user_net run -d --name rlweb -p "127.0.0.1:$WEB_PORT:80" -p 127.0.0.1::80 "$BASE" \
  sh -c 'mkdir -p /www && echo hello-from-slirp >/www/index.html && exec httpd -f -p 80 -h /www' \
  >/dev/null 2>"$WORK/web.err" || fail "run -d -p: $(tail -n 3 "$WORK/web.err")"
body=""
for _ in $(seq 1 50); do
  body=$(in_netns curl -s --max-time 2 "http://127.0.0.1:$WEB_PORT/" || true)
  [ -z "$body" ] || break
  sleep 0.1
done
expect "curl from the namespace reaches the published port" hello-from-slirp "$body"
ports=$(as_user_net port rlweb 80 2>&1) || true
expect_in "runner port shows the fixed port" "127.0.0.1:$WEB_PORT" "$ports"
picked=$(echo "$ports" | grep -v ":$WEB_PORT\$" | head -n 1 | sed 's/.*://')
body=$(in_netns curl -s --max-time 2 "http://127.0.0.1:${picked:-1}/" || true)
expect "the port the runner picked (-p 127.0.0.1::80) answers too" hello-from-slirp "$body"
expect_in "ps shows the published ports" "127.0.0.1:$WEB_PORT->80/tcp" "$(as_user_net ps 2>&1)"
expect "inspect shows slirp4netns's address" 10.0.2.100 \
  "$(as_user_net inspect rlweb 2>/dev/null | jq -r '.[0].NetworkSettings.IPAddress')"
err=$(as_user_net run --rm -p "127.0.0.1:$WEB_PORT:80" "$BASE" true 2>&1) && fail "a taken port should be refused" || true
expect_in "a port already published is refused" "127.0.0.1:$WEB_PORT/tcp is already in use" "$err"
slirp=$(ps -o pid=,uid= -C slirp4netns | awk -v u="$USER_UID" '$2 == u { print $1 }')
expect "one slirp4netns runs for the container" 1 "$(echo "$slirp" | grep -c .)"
cid=$(as_user_net inspect rlweb 2>/dev/null | jq -r '.[0].Id')
monitor=$(jq -r .owner_pid "$RUN_DIR/data/strata-runner/containers/$cid/state.json" 2>/dev/null || true)
expect "slirp4netns is the child of the container's monitor" "${monitor:-none}" \
  "$(ps -o ppid= -p "${slirp:-1}" | tr -d ' ')"
# fd_targets PID: what the descriptors of PID are (pipe:[N], socket:[N], paths).
fd_targets() { find "/proc/$1/fd" -mindepth 1 -exec readlink {} \; 2>/dev/null | sort -u; }
pid1=$(as_user_net inspect rlweb 2>/dev/null | jq -r '.[0].State.Pid')
[ -n "$(fd_targets "${pid1:-0}")" ] && [ -n "$(fd_targets "${slirp:-0}")" ] &&
  pass "PID 1's and slirp4netns's descriptors are readable" || fail "no descriptors of PID 1 ($pid1) or slirp4netns ($slirp)"
shared=$(comm -12 <(fd_targets "${pid1:-0}") <(fd_targets "${slirp:-0}") | grep -v '^/dev/null$' || true)
expect "PID 1 holds none of slirp4netns's descriptors" "" "$shared"
as_user_net stop -t 1 rlweb >/dev/null 2>&1 && pass "stop the published container" || fail "stop the published container"
left=$(ps -o pid= -p "${slirp:-1}" || true)
expect "slirp4netns is gone once the container stops" "" "${left// /}"
expect "its API socket and record are gone" "" \
  "$(find "$RUN_DIR/data" -name 'slirp4netns.sock' -o -name 'slirp4netns.json' 2>/dev/null)"
expect "the published port is free again" "" "$(in_netns ss -Htln "sport = :$WEB_PORT")"
as_user_net rm rlweb >/dev/null 2>&1 && pass "rm the published container" || fail "rm the published container"
# A monitor killed outright: its slirp4netns goes too (its exit pipe closes).
as_user_net run -d --name rlkill -p 127.0.0.1::80 "$BASE" sleep 300 >/dev/null 2>&1 || fail "run -d rlkill"
cid=$(as_user_net inspect rlkill 2>/dev/null | jq -r '.[0].Id')
monitor=$(jq -r .owner_pid "$RUN_DIR/data/strata-runner/containers/$cid/state.json" 2>/dev/null || true)
slirp=$(ps -o pid=,comm= --ppid "${monitor:-1}" | awk '$2 == "slirp4netns" { print $1 }')
[ -n "$slirp" ] && pass "the second container has its slirp4netns" || fail "no slirp4netns under monitor $monitor"
# alive PID: true while PID runs (a zombie has ended).
alive() { ps -o stat= -p "$1" 2>/dev/null | grep -qv '^Z'; }
alive "${slirp:-0}" && pass "it runs before" || fail "slirp4netns ${slirp:-?} does not run"
kill -KILL "${monitor:-0}" 2>/dev/null || true
for _ in $(seq 1 30); do alive "${slirp:-0}" || break; sleep 0.1; done
alive "${slirp:-0}" && fail "slirp4netns outlived its killed monitor" ||
  pass "slirp4netns exits when its monitor is killed"
as_user_net rm -f rlkill >/dev/null 2>&1 && pass "rm -f after the monitor was killed" || fail "rm -f rlkill"

# A user without a subordinate range gets the fix.
sed -i "/^$TEST_USER:/d" /etc/subuid
pause_file="$RUN_DIR/run/strata-runner/userns.pid"
pause=$(cut -d' ' -f1 "$pause_file" 2>/dev/null || true)
[ -n "$pause" ] && kill -KILL "$pause" 2>/dev/null || true
err=$(as_user images 2>&1) && fail "no subuid range should fail" || true
echo "$TEST_USER:$SUB_START:$SUB_COUNT" >>/etc/subuid
expect_in "missing /etc/subuid range names the file and the fix" "/etc/subuid has no range for user $TEST_USER" "$err"
expect_in "and the fix" "usermod --add-subuids" "$err"

echo "== rootless: nothing left behind"
pause=$(cut -d' ' -f1 "$pause_file" 2>/dev/null || true)
[ -n "$pause" ] && kill -KILL "$pause" 2>/dev/null || true
sleep 0.2
left=$(for pid in $(user_pids); do ps -o pid=,args= -p "$pid"; done)
expect "no process of the user or its ids" "" "${left% }"
expect "no mount under the run dir" 0 "$(grep -c " $RUN_DIR" /proc/self/mountinfo || true)"
stray=$(find /tmp /var/tmp /dev/shm /run /var/lib "$USER_HOME" -xdev -path "$RUN_DIR" -prune -o \
  -newer "$WORK/stamp" \( -uid "$USER_UID" -o \
  \( -uid +"$((SUB_START - 1))" -uid -"$((SUB_START + SUB_COUNT))" \) \) -print 2>/dev/null |
  grep -v "^$USER_HOME\$" | head -n 5 || true)
expect "nothing of the user's outside its run dir" "" "$stray"

[ "$FAILED" = 0 ] || die "rootless: some checks failed"
echo "== rootless: all checks passed"
