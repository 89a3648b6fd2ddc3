#!/usr/bin/env bash
# A running crawlgate's /metrics page, after mixed traffic, passes `promtool check metrics` (no
# lint problem at all), and counts what the traffic did: a browser (200), GPTBot (403, denied as
# ai_training), a throttled crawler over its burst (429), a malformed request (400) and a path the
# upstream answers 404. The upstream is live_backend.py on a free port.
#   promtool_live_metrics_test.sh CRAWLGATE_BINARY
set -euo pipefail
BIN="${1:?crawlgate binary}"
source "$(dirname "${BASH_SOURCE[0]}")/live_lib.sh"
need promtool prometheus
need curl curl
[[ -x "$BIN" ]] || fail "$BIN is not an executable"
live_init

BROWSER='Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/145.0.0.0 Safari/537.36'
GPTBOT='Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)'
SEARCHBOT='Mozilla/5.0 (compatible; LiveSearchBot/1.0)'

start_backend backend
read -r PORT ADMIN < <(free_ports 2 | paste -sd' ')
cat >"$LIVE_TMP/crawlgate.yaml" <<YAML
listen: 127.0.0.1:$PORT
admin: 127.0.0.1:$ADMIN
upstream: http://127.0.0.1:$BACKEND_PORT
threads: 1
timeouts: {shutdown_grace: 1s}
classes:
  ai_search: {action: throttle, limit: {rate: 1/h, burst: 3}}
rules:
  - name: gptbot
    class: ai_training
    user_agent: [{token: GPTBot}]
  - name: live-search-bot
    class: ai_search
    user_agent: [{token: LiveSearchBot}]
YAML
"$BIN" check --config "$LIVE_TMP/crawlgate.yaml" >/dev/null || fail "crawlgate check refuses the test config"
start_crawlgate crawlgate "$BIN" "$LIVE_TMP/crawlgate.yaml" "$ADMIN"
URL="http://127.0.0.1:$PORT"

for i in 1 2 3; do expect_code 200 "$BROWSER" "$URL/wiki/Page$i"; done
expect_code 403 "$GPTBOT" "$URL/wiki/Page1"
expect_code 404 "$BROWSER" "$URL/missing/page"
# Burst 3 at 1/h: three through, then refused.
for i in 1 2 3; do expect_code 200 "$SEARCHBOT" "$URL/search?q=$i"; done
for i in 1 2; do expect_code 429 "$SEARCHBOT" "$URL/search?q=over$i"; done
got="$(raw_status "$PORT" 'NOT AN HTTP REQUEST\r\n\r\n')"
[[ "$got" == 400 ]] || fail "malformed request: expected 400, got '${got:-no answer}'"

curl -fsS --max-time 10 "http://127.0.0.1:$ADMIN/metrics" >"$LIVE_TMP/metrics.txt" \
  || fail "GET /metrics on the admin listener failed"
[[ -s "$LIVE_TMP/metrics.txt" ]] || fail "/metrics is empty"

# promtool prints each lint problem as a line (on stderr) and exits 3; any output is a problem.
set +e
promtool check metrics <"$LIVE_TMP/metrics.txt" >"$LIVE_TMP/promtool.out" 2>&1
rc=$?
set -e
if [[ $rc -ne 0 || -s "$LIVE_TMP/promtool.out" ]]; then
  echo "promtool check metrics (exit $rc):" >&2
  sed 's/^/  /' "$LIVE_TMP/promtool.out" >&2
  fail "promtool check metrics reports problems in crawlgate's /metrics"
fi

ge() {  # ge VALUE MIN WHAT
  awk -v v="$1" -v m="$2" 'BEGIN { exit !(v >= m) }' || fail "$3: expected >= $2, got $1"
}
M="$LIVE_TMP/metrics.txt"
ge "$(metric_sum "$M" crawlgate_requests_total 'class="ai_training"' 'action="deny"')" 1 \
  'crawlgate_requests_total{class="ai_training",action="deny"}'
ge "$(metric_sum "$M" crawlgate_requests_total 'action="throttled"')" 2 \
  'crawlgate_requests_total{action="throttled"} (all classes)'
ge "$(metric_sum "$M" crawlgate_requests_total 'class="ai_search"' 'action="throttled"')" 2 \
  'crawlgate_requests_total{class="ai_search",action="throttled"}'
ge "$(metric_sum "$M" crawlgate_requests_total 'action="error"')" 1 \
  'crawlgate_requests_total{action="error"} (the malformed request)'
ge "$(metric_sum "$M" crawlgate_responses_total 'code="4xx"' 'source="upstream"')" 1 \
  'crawlgate_responses_total{code="4xx",source="upstream"} (the 404)'
ge "$(metric_sum "$M" crawlgate_responses_total 'code="2xx"' 'source="upstream"')" 6 \
  'crawlgate_responses_total{code="2xx",source="upstream"}'
ge "$(metric_sum "$M" crawlgate_throttled_total 'class="ai_search"')" 2 \
  'crawlgate_throttled_total{class="ai_search"}'
alive "$LAST_PID" || fail "crawlgate exited during the test"
echo "PASS: promtool check metrics is clean after mixed traffic; deny, throttled, error and upstream 404 counted"
