#!/usr/bin/env bash
# deploy/logrotate/crawlgate against a running crawlgate: the snippet (its path and its
# postrotate command swapped for a temp directory and `kill -USR1 PID`, since there is no systemd
# here) rotates access.log, crawlgate reopens it on SIGUSR1, and the next request is logged to
# the new file. Also `logrotate --debug` accepts the snippet as shipped.
#   logrotate_test.sh SOURCE_DIR CRAWLGATE_BINARY
set -euo pipefail
SRC="${1:?source dir}"; BIN="${2:?binary}"
SNIPPET="$SRC/deploy/logrotate/crawlgate"
command -v logrotate >/dev/null || { echo "FAIL: logrotate not found (apt-get install logrotate)"; exit 1; }
command -v curl >/dev/null || { echo "FAIL: curl not found"; exit 1; }
TMP="$(mktemp -d)"; PID=""
cleanup() { [[ -n "$PID" ]] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT

grep -q 'systemctl kill -s USR1 .*crawlgate.service' "$SNIPPET" || { echo "FAIL: postrotate does not send USR1 via systemctl"; exit 1; }
grep -q '^/var/log/crawlgate/\*\.log {' "$SNIPPET" || { echo "FAIL: snippet does not cover /var/log/crawlgate/*.log"; exit 1; }
logrotate --debug --state "$TMP/dry.state" "$SNIPPET" >"$TMP/dry.log" 2>&1 \
  || { cat "$TMP/dry.log"; echo "FAIL: logrotate --debug rejects the snippet"; exit 1; }

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT="$(free_port)"; ADMIN="$(free_port)"
mkdir -p "$TMP/log"
cat >"$TMP/crawlgate.yaml" <<YAML
listen: 127.0.0.1:$PORT
upstream: http://127.0.0.1:9
admin: 127.0.0.1:$ADMIN
access_log: {path: $TMP/log/access.log, format: jsonl}
static_responses:
  - {path: /ping, body: "pong\n"}
YAML
"$BIN" run --config "$TMP/crawlgate.yaml" >"$TMP/crawlgate.out" 2>&1 &
PID=$!
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$ADMIN/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "http://127.0.0.1:$PORT/ping?before" >/dev/null || { cat "$TMP/crawlgate.out"; echo "FAIL: crawlgate not answering"; exit 1; }
wait_for_line() {  # file pattern
  for _ in $(seq 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  return 1
}
wait_for_line "$TMP/log/access.log" 'ping?before' || { echo "FAIL: first request not logged"; exit 1; }

# The shipped snippet with the test's directory and a signal to this crawlgate.
sed -e "s#/var/log/crawlgate/#$TMP/log/#" \
    -e "s#systemctl kill -s USR1 --kill-who=main crawlgate.service#kill -USR1 $PID#" \
    "$SNIPPET" >"$TMP/logrotate.conf"
grep -q "kill -USR1 $PID" "$TMP/logrotate.conf" || { echo "FAIL: could not adapt postrotate"; exit 1; }
logrotate --force --state "$TMP/state" "$TMP/logrotate.conf" || { echo "FAIL: logrotate --force"; exit 1; }
[[ -s "$TMP/log/access.log.1" ]] || { ls -l "$TMP/log"; echo "FAIL: access.log.1 missing after rotation"; exit 1; }
grep -q 'ping?before' "$TMP/log/access.log.1"

curl -fsS "http://127.0.0.1:$PORT/ping?after" >/dev/null
wait_for_line "$TMP/log/access.log" 'ping?after' || { ls -l "$TMP/log"; echo "FAIL: crawlgate did not reopen access.log after SIGUSR1"; exit 1; }
if grep -q 'ping?after' "$TMP/log/access.log.1"; then echo "FAIL: request after rotation went to the rotated file"; exit 1; fi
kill -0 "$PID" || { echo "FAIL: crawlgate died on SIGUSR1"; exit 1; }
echo "PASS: rotated, reopened on SIGUSR1, next request in the new access.log"
