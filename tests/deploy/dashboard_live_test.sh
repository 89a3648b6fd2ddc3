#!/usr/bin/env bash
# Every query of deploy/grafana/crawlgate.json returns data from a real Prometheus scraping real
# crawlgate instances, and the counters behind the panels moved the way the traffic says.
#
# Set-up (all on loopback, free ports, one temp dir; everything is killed on exit):
#   - live_backend.py: the site (200; /missing -> 404; /slow answers after 3 s)
#   - redis-server: shared limits, so crawlgate_redis_up is 1
#   - crawlgate "main" in front of the site: denies GPTBot, counts a shadow rule, throttles one
#     crawler (burst 3), tarpits another (300 ms), limits a crawler rotating X-Forwarded-For
#     addresses through a 16-entry client table (evictions), times out on /slow (upstream
#     timeout), writes an access log; reloaded once, refused a broken config once, reloaded again
#   - crawlgate "dead" in front of a port nobody listens on (upstream connect errors), with
#     max_connections 2 (a third connection is refused with 503)
#   - prometheus scraping both admin listeners every second, with deploy/prometheus/alerts.yml
# ~20 s of traffic, then tests/deploy/dashboard_queries.py --check with 10 s rate windows.
#   dashboard_live_test.sh SOURCE_DIR CRAWLGATE_BINARY
set -euo pipefail
SRC="${1:?source dir}"; BIN="${2:?crawlgate binary}"
source "$(dirname "${BASH_SOURCE[0]}")/live_lib.sh"
need prometheus prometheus
need redis-server redis-server
need redis-cli redis-tools
need curl curl
[[ -x "$BIN" ]] || fail "$BIN is not an executable"
[[ -f "$SRC/deploy/grafana/crawlgate.json" && -f "$SRC/deploy/prometheus/alerts.yml" ]] \
  || fail "$SRC is not the crawlgate source tree (no deploy/grafana/crawlgate.json)"
TRAFFIC_SECONDS="${CRAWLGATE_LIVE_TRAFFIC_SECONDS:-20}"
live_init
START=$SECONDS

BROWSER='Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/145.0.0.0 Safari/537.36'
GPTBOT='Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)'

read -r PORT ADMIN PORT2 ADMIN2 DEAD REDIS PROM < <(free_ports 7 | paste -sd' ')
start_backend backend 3
start_redis redis "$REDIS"

main_config() {
  cat <<YAML
listen: 127.0.0.1:$PORT
admin: 127.0.0.1:$ADMIN
upstream: http://127.0.0.1:$BACKEND_PORT
threads: 1
trusted_proxies: [127.0.0.0/8]
timeouts: {upstream_response: 500ms, shutdown_grace: 1s}
access_log: {path: $LIVE_TMP/access.log, format: jsonl}
static_responses:
  - {path: /crawlgate-ping, body: "pong\n"}
throttle: {tarpit_delay: 300ms, max_tarpitted: 100, client_table_size: 16}
redis: {address: 127.0.0.1:$REDIS, budget: 50ms, connect_timeout: 300ms, key_prefix: "live$$:"}
classes:
  ai_search: {action: throttle, limit: {rate: 1/h, burst: 3}}
  ai_data: {action: tarpit, limit: {rate: 1/h, burst: 1}}
  ai_assistant: {action: throttle, limit: {rate: 1/h, burst: 100}}
  ai_stealth: {action: throttle, limit: {rate: 1/h, burst: 100000}}
behaviour:
  model: $SRC/classifier/models/crawlgate-model.json
  thresholds:
    - {min_score: 0.954, class: ai_stealth}
rules:
  - name: gptbot
    class: ai_training
    user_agent: [{token: GPTBot}]
  - name: shadow-bot
    class: ai_training
    enforce: false
    user_agent: [{token: ShadowBot}]
  - name: live-search-bot
    class: ai_search
    user_agent: [{token: LiveSearchBot}]
  - name: greedy-bot
    class: ai_data
    user_agent: [{token: GreedyBot}]
  - name: rotating-bot
    class: ai_assistant
    user_agent: [{token: RotatingBot}]
YAML
}
main_config >"$LIVE_TMP/main.yaml"
cat >"$LIVE_TMP/dead.yaml" <<YAML
listen: 127.0.0.1:$PORT2
admin: 127.0.0.1:$ADMIN2
upstream: http://127.0.0.1:$DEAD
threads: 1
limits: {max_connections: 2}
timeouts: {upstream_connect: 500ms, shutdown_grace: 1s}
redis: {address: 127.0.0.1:$REDIS, budget: 50ms, connect_timeout: 300ms, key_prefix: "live$$:"}
YAML
for config in main dead; do
  "$BIN" check --config "$LIVE_TMP/$config.yaml" >"$LIVE_TMP/check.out" 2>&1 \
    || { cat "$LIVE_TMP/check.out" >&2; fail "crawlgate check refuses the $config test config"; }
done
start_crawlgate main "$BIN" "$LIVE_TMP/main.yaml" "$ADMIN"
MAIN_PID=$LAST_PID
start_crawlgate dead "$BIN" "$LIVE_TMP/dead.yaml" "$ADMIN2"
DEAD_PID=$LAST_PID

# Prometheus: the shipped alert rules too (they must evaluate without errors).
mkdir -p "$LIVE_TMP/prom"
cp "$SRC/deploy/prometheus/alerts.yml" "$LIVE_TMP/prom/alerts.yml"
cat >"$LIVE_TMP/prom/prometheus.yml" <<YAML
global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}
rule_files: [alerts.yml]
scrape_configs:
  - job_name: crawlgate
    metrics_path: /metrics
    static_configs:
      - targets: ['127.0.0.1:$ADMIN', '127.0.0.1:$ADMIN2']
YAML
start_bg prometheus prometheus --config.file="$LIVE_TMP/prom/prometheus.yml" \
  --storage.tsdb.path="$LIVE_TMP/prom/data" --web.listen-address="127.0.0.1:$PROM"
PROM_PID=$LAST_PID
PROM_URL="http://127.0.0.1:$PROM"
wait_http "$PROM_URL/-/ready" "$PROM_PID" prometheus

# prom_query EXPR: the value of the one sample of an instant query ("none" when empty, "N series"
# when there are more: aggregate them in EXPR).
prom_query() {
  curl -fsS --max-time 5 -G "$PROM_URL/api/v1/query" --data-urlencode "query=$1" 2>/dev/null |
    "$LIVE_PY" -c '
import json, sys
body = json.load(sys.stdin)
result = body["data"]["result"] if body.get("status") == "success" else []
print("none" if not result else result[0]["value"][1] if len(result) == 1 else f"{len(result)} series")' 2>/dev/null || echo none
}
# wait_prom EXPR WHAT [SECONDS]: until EXPR has a sample (use a filter such as "> 0").
wait_prom() {
  local deadline=$((SECONDS + ${3:-15}))
  while ((SECONDS < deadline)); do
    [[ "$(prom_query "$1")" != none ]] && return 0
    sleep 0.5
  done
  fail "$2: no sample of '$1' in Prometheus after ${3:-15} s"
}
wait_prom 'count(up{job="crawlgate"} == 1) == 2' "both crawlgate targets scraped"

URL="http://127.0.0.1:$PORT"
URL2="http://127.0.0.1:$PORT2"
RELOAD="http://127.0.0.1:$ADMIN/-/reload"
declare -A SEEN=()
count() { SEEN["$1"]=$((${SEEN["$1"]:-0} + 1)); }

# Traffic: TRAFFIC_SECONDS, and at least 12 rounds (the reloads need 11) when the machine is
# slow, but never more than 400 rounds or 60 s.
deadline=$((SECONDS + TRAFFIC_SECONDS))
hard_deadline=$((SECONDS + 60))
i=0
while (((SECONDS < deadline || i < 12) && SECONDS < hard_deadline && i < 400)); do
  i=$((i + 1))
  # A browser: two pages and a missing one on one kept-alive connection, from a visitor's
  # address (127.0.0.1 itself is never scored by the behaviour model).
  for c in $(curl -s --max-time 10 -A "$BROWSER" -H "X-Forwarded-For: 192.0.2.$((i % 250 + 1))" \
               -o /dev/null -o /dev/null -o /dev/null \
               -w '%{http_code}\n' "$URL/wiki/A$i" "$URL/wiki/B$i" "$URL/missing/$i"); do
    count "browser:$c"
  done
  count "gptbot:$(code "$GPTBOT" "$URL/wiki/A$i")"
  count "shadow:$(code 'ShadowBot/1.0' "$URL/wiki/S$i")"
  count "search:$(code 'Mozilla/5.0 (compatible; LiveSearchBot/1.0)' "$URL/search?q=$i")"
  count "greedy:$(code 'GreedyBot/2.0' "$URL/data/$i")"
  for j in 1 2 3; do
    count "rotating:$(code 'RotatingBot/1' "$URL/r/$i/$j" -H "X-Forwarded-For: 10.77.$i.$j")"
  done
  count "ping:$(code "$BROWSER" "$URL/crawlgate-ping")"
  count "bad:$(raw_status "$PORT" 'NOT AN HTTP REQUEST\r\n\r\n')"
  count "dead:$(code "$BROWSER" "$URL2/wiki/A$i")"
  if ((i % 5 == 2)); then count "slow:$(code "$BROWSER" "$URL/slow/$i")"; fi
  case $i in
    3)  # Two idle connections fill the dead instance's max_connections; a third gets 503.
        exec {held1}<>"/dev/tcp/127.0.0.1/$PORT2" {held2}<>"/dev/tcp/127.0.0.1/$PORT2"
        sleep 0.3
        count "overfull:$(code "$BROWSER" "$URL2/")"
        exec {held1}>&- {held2}>&- ;;
    5)  count "reload:$(curl -s -o /dev/null --max-time 10 -w '%{http_code}' -X POST "$RELOAD")" ;;
    8)  printf 'rules: [\n  - name: broken\n' >>"$LIVE_TMP/main.yaml"
        count "badreload:$(curl -s -o "$LIVE_TMP/badreload.out" --max-time 10 -w '%{http_code}' -X POST "$RELOAD")"
        main_config >"$LIVE_TMP/main.yaml" ;;
    11) count "reload:$(curl -s -o /dev/null --max-time 10 -w '%{http_code}' -X POST "$RELOAD")" ;;
  esac
  alive "$MAIN_PID" || fail "crawlgate (main) exited during the traffic"
  alive "$DEAD_PID" || fail "crawlgate (dead) exited during the traffic"
  sleep 0.2
done
summary="$(for k in "${!SEEN[@]}"; do echo "$k=${SEEN[$k]}"; done | sort | paste -sd' ')"
echo "traffic: $i rounds in $((SECONDS - START)) s since start: $summary"
((i >= 12)) || fail "only $i traffic rounds in ${TRAFFIC_SECONDS} s (the reloads need 11)"

# What the clients saw, before asking Prometheus.
seen() { echo "${SEEN["$1"]:-0}"; }
expect_seen() {  # KEY:CODE WHAT
  (($(seen "$1") >= 1)) || fail "$2: never answered ${1#*:} (saw: $summary)"
}
expect_seen browser:200 "browser"
expect_seen browser:404 "browser on /missing (upstream 404)"
expect_seen gptbot:403 "GPTBot"
expect_seen shadow:200 "ShadowBot (shadow rule: let through)"
expect_seen search:429 "LiveSearchBot over its burst"
expect_seen greedy:429 "GreedyBot over its burst (tarpit)"
expect_seen bad:400 "malformed request"
expect_seen dead:502 "request to the instance with a dead upstream"
expect_seen slow:504 "request the upstream answers too late"
expect_seen overfull:503 "third connection over max_connections: 2"
expect_seen ping:200 "static response"
(($(seen reload:200) == 2)) || fail "POST /-/reload: expected 200 twice (saw: $summary)"
(($(seen badreload:422) == 1)) || fail "POST /-/reload of a broken config: expected 422 (saw: $summary; $(head -c 300 "$LIVE_TMP/badreload.out"))"
(($(seen gptbot:200) == 0)) || fail "GPTBot was let through"

# Wait for the last scrapes: the final reload (generation 3) is in Prometheus, and rate windows
# of 10 s hold at least a few samples of every target.
wait_prom "max(crawlgate_config_generation{instance=\"127.0.0.1:$ADMIN\"}) >= 3" "config generation after two reloads"
wait_prom 'min(count_over_time(crawlgate_build_info[10s])) >= 5' "samples in a 10 s window"
sleep 1.5  # one more scrape of the counters the last round moved

echo "dashboard queries against $PROM_URL:"
# --allow-empty: none. Every panel gets data here; "Connections accepted and rejected",
# "Redis fallbacks" and "Client table evictions" need no special traffic since crawlgate
# exports those counters at 0 from start-up (a rate of 0 is data).
"$LIVE_PY" "$LIVE_HERE/dashboard_queries.py" --dashboard "$SRC/deploy/grafana/crawlgate.json" \
  --check "$PROM_URL" --rate-interval 10s --range 1m >"$LIVE_TMP/check.out" 2>&1 || {
  sed 's/^/  /' "$LIVE_TMP/check.out"
  fail "dashboard panels without data (see FAIL lines above)"
}
sed 's/^/  /' "$LIVE_TMP/check.out"

# Beyond "has data": the series behind the panels count what the traffic did.
ge() {  # ge EXPR MIN WHAT: the first sample of EXPR is a number (not NaN/Inf) >= MIN
  local v
  v="$(prom_query "$1")"
  if [[ ! "$v" =~ ^-?[0-9]+(\.[0-9]+)?(e[-+]?[0-9]+)?$ ]] ||
    ! awk -v v="$v" -v m="$2" 'BEGIN { exit !(v + 0 >= m + 0) }'; then
    fail "$3: expected $1 >= $2, got $v"
  fi
}
ge 'sum(crawlgate_requests_total{class="ai_training",action="deny",enforced="true"})' 1 "denied AI crawlers"
ge 'sum(crawlgate_denied_requests_total{class="ai_training"})' 1 "denied AI crawlers (work saved)"
ge 'sum(crawlgate_rule_matches_total{rule="shadow-bot",mode="shadow"})' 1 "shadow-mode rule matches"
ge 'sum(crawlgate_requests_total{class="ai_training",enforced="false"})' 1 "shadow-mode decisions in requests_total"
ge 'sum(crawlgate_throttled_total{class="ai_search"})' 1 "throttled clients"
ge 'sum(crawlgate_tarpitted_total{class="ai_data"})' 1 "tarpitted clients"
ge 'sum(crawlgate_requests_total{action="tarpit"})' 1 "tarpit in requests_total"
ge 'max(max_over_time(crawlgate_client_table_entries[5m]))' 1 "client table entries"
ge 'sum(crawlgate_client_table_evictions_total)' 1 "client table evictions (16 entries, rotating addresses)"
ge 'sum(crawlgate_upstream_errors_total{kind="connect"})' 1 "upstream connect errors (dead upstream)"
ge 'sum(crawlgate_upstream_errors_total{kind="timeout"})' 1 "upstream timeouts (/slow)"
ge 'sum(crawlgate_responses_total{code="5xx",source="crawlgate"})' 1 "5xx answered by crawlgate"
ge 'sum(crawlgate_responses_total{code="4xx",source="upstream"})' 1 "4xx from the upstream"
ge 'sum(crawlgate_requests_total{action="error"})' 1 "malformed requests"
ge 'sum(crawlgate_requests_total{action="static"})' 1 "static responses"
ge 'sum(crawlgate_connections_rejected_total)' 1 "connections over max_connections"
ge "sum(crawlgate_config_reloads_total{result=\"failure\",instance=\"127.0.0.1:$ADMIN\"})" 1 "failed reloads"
ge "sum(crawlgate_config_reloads_total{result=\"success\",instance=\"127.0.0.1:$ADMIN\"})" 3 "successful loads (start + 2 reloads)"
ge 'min(crawlgate_redis_up)' 1 "redis connected on every instance"
ge 'sum(crawlgate_access_log_lines_total{result="written"})' 1 "access log lines written"
ge 'sum(crawlgate_response_bytes_total{audience="bots"})' 1 "bytes sent to bots"
ge 'sum(crawlgate_response_bytes_total{audience="humans"})' 1 "bytes sent to humans"
ge 'histogram_quantile(0.99, sum by (le) (rate(crawlgate_upstream_latency_seconds_bucket[1m])))' 0 "upstream latency p99 (a number, not NaN)"
ge 'max(crawlgate_rules)' 5 "rules in the config"

# The shipped alert rules loaded and evaluated without errors.
curl -fsS --max-time 5 "$PROM_URL/api/v1/rules" >"$LIVE_TMP/rules.json" || fail "GET /api/v1/rules"
"$LIVE_PY" - "$LIVE_TMP/rules.json" <<'PY' || fail "alert rules of deploy/prometheus/alerts.yml in a live Prometheus"
import json, sys
groups = json.load(open(sys.argv[1]))["data"]["groups"]
rules = [r for g in groups for r in g["rules"]]
bad = [r for r in rules if r.get("health") == "err"]
for r in bad:
    print(f"  rule {r['name']}: {r.get('lastError')}", file=sys.stderr)
if not rules:
    print("  no rules loaded", file=sys.stderr)
sys.exit(1 if bad or not rules else 0)
PY
echo "PASS: every dashboard query has data; counters match the traffic ($((SECONDS - START)) s)"
