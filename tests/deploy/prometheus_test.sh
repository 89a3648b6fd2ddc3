#!/usr/bin/env bash
# deploy/prometheus: `promtool check config` and `check rules`, the alert unit tests
# (alerts_test.yml, `promtool test rules`), every dashboard expression parsed by promtool, and
# every crawlgate_* metric of the alerts and the dashboard listed in docs/metrics.md.
#   prometheus_test.sh SOURCE_DIR
set -euo pipefail
SRC="${1:?source dir}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
command -v promtool >/dev/null || { echo "FAIL: promtool not found (apt-get install prometheus)"; exit 1; }
PY=/usr/bin/python3

TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
promtool check config "$SRC/deploy/prometheus/prometheus.yml"
promtool check rules "$SRC/deploy/prometheus/alerts.yml"
cp "$SRC/deploy/prometheus/alerts.yml" "$HERE/alerts_test.yml" "$TMP/"
(cd "$TMP" && promtool test rules alerts_test.yml)

# The dashboard's queries (variables substituted) as recording rules: promtool parses each one.
"$PY" "$HERE/dashboard_queries.py" --dashboard "$SRC/deploy/grafana/crawlgate.json" --list |
  "$PY" -c '
import json, sys
rules = [{"record": "crawlgate:dashboard_query_%d" % i, "expr": line.rstrip("\n")}
         for i, line in enumerate(sys.stdin) if line.strip()]
print(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))' >"$TMP/dashboard_rules.yml"
promtool check rules "$TMP/dashboard_rules.yml"

"$PY" "$HERE/dashboard_queries.py" --dashboard "$SRC/deploy/grafana/crawlgate.json" --lint
"$PY" "$HERE/dashboard_queries.py" --dashboard "$SRC/deploy/grafana/crawlgate.json" \
  --check-names "$SRC/docs/metrics.md"

documented="$(sed -n 's/^| `\(crawlgate_[a-z0-9_]*\)`.*/\1/p' "$SRC/docs/metrics.md" | sort -u)"
bad=0
for name in $(grep -o 'crawlgate_[a-z0-9_]*' "$SRC/deploy/prometheus/alerts.yml" | sed -E 's/_(bucket|sum|count)$//' | sort -u); do
  grep -qx "$name" <<<"$documented" || { echo "FAIL: alerts.yml uses $name, not in docs/metrics.md"; bad=1; }
done
[[ $bad -eq 0 ]] || exit 1
echo "PASS: prometheus config, alert rules and their tests, dashboard queries"
