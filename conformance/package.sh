#!/usr/bin/env bash
# The Debian packages of issue 22, built and installed for real:
#   1. `registry __assets` / `runner __assets` write the man pages and shell
#      completions from the clap definitions; `cargo deb --no-build` packages
#      the release binaries already built (no second compile);
#   2. `dpkg -i` of strata-registry and strata-runner (CI is root on Debian
#      12), then the files are checked where Debian puts them: binaries, man
#      pages (`man -l`), bash/zsh/fish completions, the conffile
#      /etc/strata/registry.toml, the unit, the strata user (sysusers.d) and
#      /var/lib/strata owned by it;
#   3. the installed /usr/bin/registry started as the unit's ExecStart starts
#      it (user strata, no_new_privs, UMask=0027; systemd is not PID 1 here),
#      with only the port moved by STRATA_LISTEN as an Environment= drop-in
#      would; ready on /readyz; crane pushes and pulls an image through it,
#      the installed runner pulls it; SIGHUP reloads it; stopped by PID;
#   4. `dpkg --purge` of both at the end, and the user and /var/lib/strata
#      removed when this test made them (a rerun starts clean).
set -euo pipefail

# shellcheck source=conformance/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export PATH="$TOOLS_BIN:$PATH"
require_tool cargo-deb dpkg dpkg-deb man setpriv curl crane gzip "$REPO/target/release/registry" "$REPO/target/release/runner"

PACKAGES=(strata-registry strata-runner)
WORK=$(mktemp -d /tmp/strata-package.XXXXXX)
had_user=false had_data=false had_etc=false
getent passwd strata >/dev/null && had_user=true
[ -e /var/lib/strata ] && had_data=true
[ -e /etc/strata ] && had_etc=true

purge_packages() {
  local pkg
  for pkg in "${PACKAGES[@]}"; do
    if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'installed\|config-files'; then
      dpkg --purge "$pkg" >/dev/null
    fi
  done
}
cleanup() {
  stop_started_processes
  purge_packages || true
  [ "$had_data" = true ] || rm -rf /var/lib/strata
  [ "$had_etc" = true ] || rm -rf /etc/strata
  if [ "$had_user" = false ] && getent passwd strata >/dev/null; then
    userdel strata 2>/dev/null || true
    groupdel strata 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
ok() { echo "ok: $*"; }

# A run that died before its cleanup left the packages installed: start clean.
purge_packages
# A config of somebody else's at the conffile's place would be clobbered (or
# dpkg would ask): refuse instead.
[ ! -e /etc/strata/registry.toml ] || {
  had_etc=true
  die "/etc/strata/registry.toml exists and is no package's: not installing over it"
}

# 1. Man pages and completions, then the two .debs from the release build.
ASSETS="$REPO/target/release/strata-assets"
rm -rf "$ASSETS"
for bin in registry runner; do
  "$REPO/target/release/$bin" __assets "$ASSETS/$bin"
  gzip -9n "$ASSETS/$bin"/man/*.1
done
debs=()
for crate in registry runner; do
  (cd "$REPO" && cargo deb -p "$crate" --no-build --fast) >"$WORK/cargo-deb-$crate.log" 2>&1 ||
    { cat "$WORK/cargo-deb-$crate.log" >&2; die "cargo deb -p $crate failed"; }
  deb=$(tail -n1 "$WORK/cargo-deb-$crate.log")
  [ -f "$deb" ] || { cat "$WORK/cargo-deb-$crate.log" >&2; die "cargo deb -p $crate made no package"; }
  debs+=("$deb")
  ok "built $(basename "$deb") ($(($(stat -c %s "$deb") / 1024)) KiB)"
done

# 2. Install them and check what went where.
dpkg -i "${debs[@]}" >"$WORK/dpkg.log" 2>&1 || { cat "$WORK/dpkg.log" >&2; die "dpkg -i failed"; }
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}\n' "$pkg" | grep -q 'install ok installed' || die "$pkg is not installed"
done
ok "dpkg -i ${PACKAGES[*]}"

[ "$(/usr/bin/registry --version)" = "$("$REPO/target/release/registry" --version)" ] ||
  die "/usr/bin/registry is not the release build"
/usr/bin/runner --version >/dev/null || die "/usr/bin/runner does not run"
ok "/usr/bin/registry and /usr/bin/runner: $(/usr/bin/registry --version)"

for page in registry registry-serve registry-gc runner runner-run runner-build; do
  file=/usr/share/man/man1/$page.1.gz
  [ -f "$file" ] || die "man page $file missing"
  MANWIDTH=100 man -l "$file" 2>/dev/null | grep -q "^NAME" || die "man -l $file shows no NAME section"
done
MANWIDTH=100 man -l /usr/share/man/man1/registry-serve.1.gz 2>/dev/null | grep -q -- '--trusted-proxy' ||
  die "registry-serve(1) does not document --trusted-proxy"
ok "man pages readable by man -l ($(dpkg -L strata-registry strata-runner | grep -c '/man1/.*\.1\.gz$') pages)"

for bin in registry runner; do
  for file in /usr/share/bash-completion/completions/$bin /usr/share/zsh/vendor-completions/_$bin \
    /usr/share/fish/vendor_completions.d/$bin.fish; do
    [ -s "$file" ] || die "completion $file missing"
  done
  # The bash completion, loaded, completes the first word to the subcommands.
  words=$(bash -c "source /usr/share/bash-completion/completions/$bin
    COMP_WORDS=($bin '') COMP_CWORD=1 COMP_LINE='$bin ' COMP_POINT=\${#COMP_LINE}
    \$(complete -p $bin | sed -n 's/.*-F \([^ ]*\).*/\1/p') $bin '' $bin
    echo \"\${COMPREPLY[*]}\"")
  grep -qw "$([ $bin = registry ] && echo serve || echo run)" <<<"$words" ||
    die "bash completion of $bin offers no subcommands: $words"
  ! grep -q '__' <<<"$words" || die "bash completion of $bin offers a hidden command: $words"
done
ok "bash, zsh and fish completions installed; bash completes 'registry ' to: $(bash -c 'source /usr/share/bash-completion/completions/registry
  COMP_WORDS=(registry "") COMP_CWORD=1; _registry registry "" registry; echo "${COMPREPLY[*]}"')"

dpkg-query -W -f='${Conffiles}\n' strata-registry | grep -q '^ /etc/strata/registry.toml ' ||
  die "/etc/strata/registry.toml is not a conffile"
cmp -s /etc/strata/registry.toml "$REPO/deploy/debian/registry.toml" || die "/etc/strata/registry.toml is not the default config"
ok "conffile /etc/strata/registry.toml"

getent passwd strata >/dev/null || die "no strata user"
[ "$(getent passwd strata | cut -d: -f6,7)" = "/var/lib/strata:/usr/sbin/nologin" ] ||
  die "strata user: $(getent passwd strata)"
[ "$(id -u strata)" -lt 1000 ] || die "strata is not a system user (uid $(id -u strata))"
[ "$(stat -c '%U:%G %a' /var/lib/strata)" = "strata:strata 750" ] ||
  die "/var/lib/strata is $(stat -c '%U:%G %a' /var/lib/strata)"
ok "system user strata (uid $(id -u strata), created $([ "$had_user" = true ] && echo earlier || echo by the package)); /var/lib/strata strata:strata 750"

UNIT=/usr/lib/systemd/system/strata-registry.service
cmp -s "$UNIT" "$REPO/deploy/systemd/strata-registry.service" || die "$UNIT is not deploy/systemd's unit"
systemd-analyze verify "$UNIT"
[ -f /usr/lib/sysusers.d/strata-registry.conf ] || die "sysusers.d entry missing"
ok "unit $UNIT installed, systemd-analyze verify passes"

# 3. The installed registry as the unit runs it.
exec_start=$(sed -n 's/^ExecStart=//p' "$UNIT")
[ "$exec_start" = "/usr/bin/registry serve --config /etc/strata/registry.toml" ] ||
  die "the unit's ExecStart changed ($exec_start): update this test"
read -r -a exec_argv <<<"$exec_start"
port=$(pick_port)
chmod 755 "$WORK"
(umask 0027 && exec env STRATA_LISTEN="127.0.0.1:$port" setpriv --reuid=strata --regid=strata --init-groups \
  --no-new-privs "${exec_argv[@]}") >"$WORK/registry.log" 2>&1 &
reg_pid=$!
STARTED_PIDS+=("$reg_pid")
wait_http_200 "http://127.0.0.1:$port/readyz" "$reg_pid" 30 ||
  { tail -n 20 "$WORK/registry.log" >&2; die "the installed registry did not become ready"; }
[ "$(stat -c %U "/var/lib/strata/registry.db")" = strata ] || die "registry.db is not strata's"
ok "the installed registry, run as the unit runs it, is ready on 127.0.0.1:$port"

mkdir -p "$WORK/layer"
echo "packaged $RANDOM" >"$WORK/layer/hello"
tar -C "$WORK/layer" -cf "$WORK/layer.tar" hello
image="127.0.0.1:$port/package/hello:1"
crane append -f "$WORK/layer.tar" -t "$image" >/dev/null 2>"$WORK/crane.log" ||
  { cat "$WORK/crane.log" >&2; die "crane push to the installed registry failed"; }
[ "$(crane export "$image" - | tar -xOf - hello)" = "$(cat "$WORK/layer/hello")" ] ||
  die "the image pulled back does not hold the pushed file"
[ -n "$(find /var/lib/strata/storage -type f -user strata | head -n1)" ] || die "no blob stored under /var/lib/strata"
ok "crane pushed $image and pulled it back; blobs in /var/lib/strata"

/usr/bin/runner --root "$WORK/runner-root" pull "$image" >"$WORK/runner.log" 2>&1 ||
  { cat "$WORK/runner.log" >&2; die "the installed runner could not pull $image"; }
ok "the installed runner pulled $image"

# ExecReload, as systemd would run it: SIGHUP reloads, the server goes on.
exec_reload=$(sed -n 's/^ExecReload=//p' "$UNIT")
[ "$exec_reload" = '/bin/kill -HUP $MAINPID' ] || die "the unit's ExecReload changed ($exec_reload): update this test"
MAINPID=$reg_pid
eval "$exec_reload"
for _ in $(seq 1 300); do
  grep -q 'configuration reloaded' "$WORK/registry.log" && break
  sleep 0.1
done
grep -q 'configuration reloaded' "$WORK/registry.log" || { tail -n 20 "$WORK/registry.log" >&2; die "no reload after ExecReload"; }
wait_http_200 "http://127.0.0.1:$port/readyz" "$reg_pid" 10 || die "not ready after the reload"
ok "ExecReload (SIGHUP): configuration reloaded, still serving"

kill -TERM "$reg_pid"
rc=0
wait "$reg_pid" || rc=$?
[ "$rc" -eq 0 ] || { tail -n 20 "$WORK/registry.log" >&2; die "the registry exited $rc on SIGTERM"; }
ok "SIGTERM: the registry stopped cleanly"

# 4. Remove them again (the trap does it too on failure).
purge_packages
[ ! -e /usr/bin/registry ] && [ ! -e /usr/bin/runner ] && [ ! -e /etc/strata/registry.toml ] ||
  die "dpkg --purge left files behind"
ok "dpkg --purge ${PACKAGES[*]}"
echo "package: all checks passed"
