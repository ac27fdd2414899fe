#!/usr/bin/env bash
# Checks the monitoring examples in deploy/ (issue 22's Prometheus rules and
# Grafana dashboard):
#   1. `promtool check rules` of deploy/prometheus/alerts.yml;
#   2. `promtool test rules` of alerts_test.yml: given series, the alerts
#      fire when they should (and not before), with their labels and text;
#   3. the dashboard is JSON with panels;
#   4. every strata_* metric the rules and the dashboard name is on the
#      /metrics of a real registry (GC scheduled, one mirrored upstream), so
#      a renamed metric cannot leave a rule that never fires.
# promtool comes from Debian's prometheus package (scripts/install-deps.sh).
set -euo pipefail

# shellcheck source=conformance/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_tool promtool jq curl "$REGISTRY_BIN"

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
