#!/usr/bin/env bash
# Checks the monitoring examples in deploy/ (issue 22's Prometheus rules and
# Grafana dashboard):
#   1. `promtool check rules` of deploy/prometheus/alerts.yml;
#   2. `promtool test rules` of alerts_test.yml: given series, the alerts
#      fire when they should (and not before), with their labels and text;
#   3. the dashboard is JSON with panels;
#   4. the systemd unit (systemd-analyze verify, and its ExecStart run as the
#      unit runs it, unprivileged, with the packaged default config);
#   5. every strata_* metric the rules and the dashboard name is on the
#      /metrics of a real registry (GC scheduled, one mirrored upstream), so
#      a renamed metric cannot leave a rule that never fires.
# promtool comes from Debian's prometheus package (scripts/install-deps.sh).
set -euo pipefail

# shellcheck source=conformance/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_tool promtool jq curl systemd-analyze setpriv "$REGISTRY_BIN"

RULES="$REPO/deploy/prometheus/alerts.yml"
DASHBOARD="$REPO/deploy/grafana/strata.json"
WORK=$(mktemp -d /tmp/strata-deploy.XXXXXX)
cleanup() {
  stop_started_processes
  rm -rf "$WORK"
}
trap cleanup EXIT

promtool check rules "$RULES"
(cd "$(dirname "$RULES")" && promtool test rules alerts_test.yml)
jq -e '(.panels | length) > 0 and all(.panels[]; (.targets | length) > 0)' "$DASHBOARD" >/dev/null ||
  die "$DASHBOARD: not a dashboard with panels that each have a query"
echo "deploy: dashboard has $(jq '.panels | length' "$DASHBOARD") panels"

# The systemd unit: systemd-analyze verify (its binary path pointed at the
# build), then its ExecStart line run as the unit would run it: an
# unprivileged user, no_new_privs, the packaged default config (paths moved
# into the work dir); ready when /readyz says 200.
UNIT="$REPO/deploy/systemd/strata-registry.service"
sed "s|/usr/bin/registry|$REGISTRY_BIN|" "$UNIT" >"$WORK/strata-registry.service"
systemd-analyze verify "$WORK/strata-registry.service"
echo "deploy: systemd-analyze verify ok ($(systemd-analyze security --offline=true "$WORK/strata-registry.service" 2>/dev/null | tail -n1))"
exec_start=$(sed -n 's/^ExecStart=//p' "$UNIT")
[ "$exec_start" = "/usr/bin/registry serve --config /etc/strata/registry.toml" ] ||
  die "the unit's ExecStart changed ($exec_start): update this test"
mkdir -p "$WORK/unit/etc" "$WORK/unit/var"
port=$(pick_port)
sed -e "s|/var/lib/strata|$WORK/unit/var|" -e "s|127.0.0.1:5000|127.0.0.1:$port|" \
  "$REPO/deploy/debian/registry.toml" >"$WORK/unit/etc/registry.toml"
chown -R nobody:nogroup "$WORK/unit"
chmod 755 "$WORK"
setpriv --reuid=nobody --regid=nogroup --clear-groups --no-new-privs \
  "$REGISTRY_BIN" serve --config "$WORK/unit/etc/registry.toml" >"$WORK/unit/log" 2>&1 &
unit_pid=$!
STARTED_PIDS+=("$unit_pid")
wait_http_200 "http://127.0.0.1:$port/readyz" "$unit_pid" 30 ||
  { tail -n 20 "$WORK/unit/log" >&2; die "the registry as the unit runs it did not become ready"; }
[ "$(stat -c %U "$WORK/unit/var/registry.db")" = nobody ] || die "the database is not the service user's"
echo "deploy: ExecStart as an unprivileged user with the default config: ready"

printf '[gc]\ninterval_secs = 3600\n' >"$WORK/strata.toml"
registry_start deploy "$WORK/data" --config "$WORK/strata.toml" --upstream "hub=http://127.0.0.1:9"
curl -fsS "http://$REG_ADDR/metrics" >"$WORK/metrics"
missing=0
for name in $(grep -ohE 'strata_[a-z_]+' "$RULES" "$DASHBOARD" | sort -u); do
  if grep -qE "^$name(\{| )" "$WORK/metrics"; then
    echo "ok: $name is on /metrics"
  else
    echo "FAIL: $name is named in deploy/ but not on /metrics" >&2
    missing=$((missing + 1))
  fi
done
[ "$missing" -eq 0 ] || die "$missing metric(s) of deploy/ missing from /metrics"
echo "deploy: rules, rule tests, dashboard and metric names ok"
