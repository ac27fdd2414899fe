#!/usr/bin/env bash
# Builds a set of Dockerfiles with `runner build` and with `docker build`
# (Debian's docker.io: both the classic builder and BuildKit) and compares the results: the final file trees (type, mode,
# owner, content, link target, from `docker export`) and the image configs.
# The runner's image goes through our registry (`runner build --push`, then
# `docker pull`) and is run with `docker run`. Bases are a static busybox
# copied into scratch: nothing comes from the internet.
#
# Usage: conformance/build_compare.sh   (root; REGISTRY_BIN, RUNNER_BIN)
# Known differences are listed in docs/build.md; the script fails on any
# other difference.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
source "$here/lib.sh"
REGISTRY_BIN=${REGISTRY_BIN:-$repo/target/release/registry}
RUNNER_BIN=${RUNNER_BIN:-$repo/target/release/runner}
STARTED_PIDS=()
WORK=$(mktemp -d /tmp/strata-build-compare.XXXXXX)
DOCKERD_PID=""
cleanup() {
  [ -z "$DOCKERD_PID" ] || stop_pid "$DOCKERD_PID" 30
  stop_started_processes
  rm -rf "$WORK"
}
trap cleanup EXIT
require_tool dockerd docker python3

registry_start build-compare "$WORK/registry"
d=$WORK/docker
mkdir -p "$d"
dockerd --iptables=false --ip6tables=false --bridge=none --storage-driver=overlay2 \
  --data-root "$d/data" --exec-root "$d/exec" -H "unix://$d/docker.sock" \
  --pidfile "$d/docker.pid" >"$d/dockerd.log" 2>&1 &
DOCKERD_PID=$!
export DOCKER_CONFIG=$d
# Debian's docker.io 20.10 CLI (/usr/bin/docker) has BuildKit built in
# (DOCKER_BUILDKIT=1, no buildx plugin needed); a newer CLI first in PATH may
# not. Under --bridge=none a BuildKit RUN needs --network none (or host): its
# default network asks dockerd for the bridge ("network bridge not found").
DOCKER_CLI=${DOCKER_CLI:-docker}
[ ! -x /usr/bin/docker ] || DOCKER_CLI=/usr/bin/docker
DOCKER=("$DOCKER_CLI" -H "unix://$d/docker.sock")
for _ in $(seq 1 300); do "${DOCKER[@]}" version >/dev/null 2>&1 && break; sleep 0.1; done
"${DOCKER[@]}" version >/dev/null || die "dockerd did not start"
mkdir -p "$WORK/probe"
printf 'FROM scratch\n' >"$WORK/probe/Dockerfile"
DOCKER_BUILDKIT=1 "${DOCKER[@]}" build -q --network none "$WORK/probe" >"$WORK/probe.log" 2>&1 ||
  die "BuildKit is not usable with $DOCKER_CLI: $(tail -1 "$WORK/probe.log")"
# Every case is built by both builders; a few lines only BuildKit has (COPY
# --chmod; an unused stage, which it skips and the classic builder builds)
# are in the BuildKit variant only. Where the two differ the runner follows
# BuildKit.
case_dir() { # NAME: the context of case NAME in $WORK/NAME, Dockerfile from stdin
  local c=$WORK/$1
  mkdir -p "$c/src/sub" "$c/ignored"
  cp /bin/busybox "$c/busybox"
  echo a >"$c/src/a.txt"; echo b >"$c/src/b.txt"; echo s >"$c/src/sub/s.txt"
  echo i >"$c/ignored/i.txt"; echo k >"$c/src/keep.log"; echo l >"$c/src/drop.log"
  chmod 0640 "$c/src/b.txt"
  printf 'ignored\n*.md\nsrc/*.log\n!src/keep.log\n' >"$c/.dockerignore"
  echo readme >"$c/README.md"
  cat >"$c/Dockerfile"
}

B='FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]'

make_cases() { # BUILDER (classic or buildkit): the cases' contexts for BUILDER
local CHMOD="" UNUSED=""
if [ "$1" = buildkit ]; then
  CHMOD="--chmod=0600"
  UNUSED=$'FROM tools AS unused\nRUN exit 9'
fi
case_dir "config.$1" <<DOCKERFILE
$B
RUN mkdir -p /etc && echo 'root:x:0:0:root:/root:/bin/sh' > /etc/passwd && echo 'app:x:1000:1000::/home/app:/bin/sh' >> /etc/passwd && echo 'root:x:0:' > /etc/group && echo 'app:x:1000:' >> /etc/group
ARG WHO=world
ENV GREETING="hello \$WHO" OTHER=\${WHO:-x}
WORKDIR /srv/app
WORKDIR sub
COPY --chown=app:app src/a.txt ./
COPY $CHMOD src/*.txt /globbed/
COPY src /tree/
LABEL org.example.a=1 "org.example.b"="two words"
EXPOSE 80 53/udp
VOLUME ["/data"]
STOPSIGNAL SIGINT
HEALTHCHECK --interval=30s --retries=2 CMD wget -q -O- http://localhost/ || exit 1
SHELL ["/bin/sh", "-ec"]
ONBUILD RUN echo child
USER app
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["echo \$GREETING"]
DOCKERFILE

case_dir "snapshot.$1" <<DOCKERFILE
$B
RUN mkdir -p /d/keep /o/sub && echo 1 > /d/gone && echo 2 > /o/sub/old && echo 3 > /d/keep/k && echo h > /h1
RUN rm /d/gone && rm -rf /o && mkdir /o && echo new > /o/new && ln /h1 /h2 && mkfifo /fifo && mknod /null2 c 1 3 && cp /bin/busybox /suid && chmod 4755 /suid && chmod 2755 /d/keep && chown 1:2 /h1 && ln -s ../h1 /d/rel
DOCKERFILE

case_dir "multistage.$1" <<DOCKERFILE
FROM scratch AS tools
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
FROM tools AS build
RUN echo built > /artifact && mkdir /out && echo o > /out/o
$UNUSED
FROM scratch
COPY --from=build /artifact /out /result/
COPY --from=tools /bin/busybox /bin/busybox
COPY . /ctx/
CMD ["/bin/busybox", "cat", "/result/artifact"]
DOCKERFILE

[ "$1" = buildkit ] || return 0
# RUN --mount is BuildKit's only.
case_dir "mounts.$1" <<DOCKERFILE
$B
RUN --mount=target=/ctx cp /ctx/src/a.txt /from-ctx && ls -a /ctx > /ctx-list && ls /ctx/src > /ctx-src-list
RUN --mount=type=cache,target=/var/cache/x echo c > /var/cache/x/f && cat /var/cache/x/f > /from-cache
RUN --mount=type=tmpfs,target=/scratch/t echo t > /scratch/t/f && cat /scratch/t/f > /from-tmpfs
RUN --mount=type=bind,source=src,target=/srcrw,rw echo w > /srcrw/new && ls /srcrw > /srcrw-list
RUN --mount=type=bind,source=src/a.txt,target=/etc/one.txt cat /etc/one.txt > /from-file
DOCKERFILE
}
make_cases classic
make_cases buildkit

fail=0
for builder in classic buildkit; do
  bk=0
  [ $builder = classic ] || bk=1
  names="config snapshot multistage"
  [ $builder = classic ] || names="$names mounts"
  for name in $names; do
    c=$WORK/$name.$builder
    DOCKER_BUILDKIT=$bk "${DOCKER[@]}" build -q --network none -t "cmp/$name:$builder" "$c" \
      >"$c.docker.log" 2>&1 ||
      { echo "build_compare: docker build ($builder) of $name failed" >&2; fail=1; continue; }
    "$RUNNER_BIN" --root "$WORK/runner-root" build -q -t "$REG_ADDR/cmp/$name:$builder" --push "$c" >/dev/null ||
      { echo "build_compare: runner build of $name ($builder variant) failed" >&2; fail=1; continue; }
    "${DOCKER[@]}" pull -q "$REG_ADDR/cmp/$name:$builder" >/dev/null
    for who in docker runner; do
      img="cmp/$name:$builder"
      [ $who = docker ] || img="$REG_ADDR/cmp/$name:$builder"
      id=$("${DOCKER[@]}" create "$img" /bin/busybox true)
      "${DOCKER[@]}" export "$id" >"$c.$who.tar"
      "${DOCKER[@]}" rm "$id" >/dev/null
      "${DOCKER[@]}" image inspect -f '{{json .Config}}' "$img" >"$c.$who.json"
    done
    stubs=()
    [ $name != mounts ] || stubs=(ctx scratch scratch/t srcrw var var/cache var/cache/x)
    python3 "$here/build_compare.py" "$c" "${stubs[@]}" || fail=1
  done
done
# The runner-built image runs under docker too.
out=$("${DOCKER[@]}" run --rm --network none "$REG_ADDR/cmp/multistage:buildkit")
[ "$out" = built ] || { echo "build_compare: docker run of the runner's image printed '$out'" >&2; fail=1; }
exit $fail
