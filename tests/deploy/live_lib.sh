# shellcheck shell=bash
# Helpers for the live deploy tests (promtool_live_metrics_test.sh, dashboard_live_test.sh):
# a temp dir, background processes killed by pid on any exit, free loopback ports, readiness
# waits and small HTTP helpers. Source it after `set -euo pipefail`; then call live_init.
# Every wait is bounded in tries and time; nothing listens on a fixed port.

LIVE_PY=/usr/bin/python3
LIVE_HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LIVE_PIDS=()
LIVE_NAMES=()
LIVE_TMP=""

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

need() {  # need COMMAND DEBIAN_PACKAGE
  command -v "$1" >/dev/null || fail "$1 not found (apt-get install $2)"
}

live_cleanup() {
  local rc=$? i pid
  trap - EXIT INT TERM
  for ((i = ${#LIVE_PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${LIVE_PIDS[$i]}" 2>/dev/null || true
  done
  for ((i = ${#LIVE_PIDS[@]} - 1; i >= 0; i--)); do
    pid="${LIVE_PIDS[$i]}"
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [[ $rc -ne 0 && -n "$LIVE_TMP" && -d "$LIVE_TMP" ]]; then
    # On failure, the last lines of every process's output help more than the exit code.
    for i in "${!LIVE_NAMES[@]}"; do
      local log="$LIVE_TMP/${LIVE_NAMES[$i]}.log"
      [[ -s "$log" ]] || continue
      echo "---- last lines of ${LIVE_NAMES[$i]} output ----" >&2
      tail -n 15 "$log" >&2
    done
  fi
  [[ -n "$LIVE_TMP" ]] && rm -rf "$LIVE_TMP"
  exit "$rc"
}

live_init() {
  LIVE_TMP="$(mktemp -d "${TMPDIR:-/tmp}/crawlgate-live.XXXXXX")"
  trap live_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# start_bg NAME COMMAND...: runs COMMAND in the background, output to $LIVE_TMP/NAME.log; the
# pid is in $LAST_PID (and is killed on exit).
start_bg() {
  local name="$1"
  shift
  "$@" >"$LIVE_TMP/$name.log" 2>&1 &
  LAST_PID=$!
  LIVE_PIDS+=("$LAST_PID")
  LIVE_NAMES+=("$name")
}

# free_ports N: N distinct free loopback ports, one a line (held together while chosen).
free_ports() {
  "$LIVE_PY" - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print("\n".join(str(s.getsockname()[1]) for s in socks))
PY
}

alive() { kill -0 "$1" 2>/dev/null; }

# wait_http URL PID WHAT: until URL answers 2xx (at most ~10 s), failing early if PID died.
wait_http() {
  local url="$1" pid="$2" what="$3"
  for _ in $(seq 100); do
    curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null && return 0
    alive "$pid" || fail "$what exited before it was ready"
    sleep 0.1
  done
  fail "$what not ready after 10 s ($url)"
}

# start_backend NAME [SLOW_SECONDS]: live_backend.py on a free port; the port is in $BACKEND_PORT.
start_backend() {
  local name="$1" slow="${2:-3}" portfile="$LIVE_TMP/$1.port"
  start_bg "$name" "$LIVE_PY" "$LIVE_HERE/live_backend.py" "$portfile" "$slow"
  local pid=$LAST_PID
  for _ in $(seq 100); do
    [[ -s "$portfile" ]] && break
    alive "$pid" || fail "backend $name exited at start"
    sleep 0.05
  done
  [[ -s "$portfile" ]] || fail "backend $name did not start in 5 s"
  # shellcheck disable=SC2034 # for the sourcing script
  BACKEND_PORT="$(cat "$portfile")"
}

# start_crawlgate NAME BINARY CONFIG ADMIN_PORT: runs it and waits for /readyz.
start_crawlgate() {
  local name="$1" bin="$2" config="$3" admin="$4"
  start_bg "$name" "$bin" run --config "$config"
  wait_http "http://127.0.0.1:$admin/readyz" "$LAST_PID" "crawlgate ($name)"
}

# start_redis NAME PORT: a throwaway redis-server on loopback, no persistence.
start_redis() {
  local name="$1" port="$2" dir="$LIVE_TMP/$1"
  mkdir -p "$dir"
  start_bg "$name" redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$dir" --daemonize no
  local pid=$LAST_PID
  for _ in $(seq 100); do
    [[ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" == PONG ]] && return 0
    alive "$pid" || fail "redis-server exited at start"
    sleep 0.1
  done
  fail "redis-server not answering PING after 10 s"
}

# code UA URL [CURL ARGS...]: the status code of one GET (000 when no answer in 10 s).
code() {
  local ua="$1" url="$2"
  shift 2
  curl -s -o /dev/null --max-time 10 -w '%{http_code}' -A "$ua" "$@" "$url" || true
}

# expect_code WANT UA URL [CURL ARGS...]
expect_code() {
  local want="$1" got
  shift
  got="$(code "$@")"
  [[ "$got" == "$want" ]] || fail "GET $2 as '$1': expected $want, got $got"
}

# raw_status PORT BYTES: sends BYTES (printf format) on a fresh connection, prints the status
# code of the answer (empty when none in 5 s).
raw_status() {
  # shellcheck disable=SC2016 # expanded by the inner bash
  timeout 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
                     printf "$2" >&3
                     IFS= read -r line <&3 && echo "$line"' _ "$1" "$2" 2>/dev/null |
    awk '{print $2}' || true
}

# metric_sum FILE NAME [REGEX...]: sum of the samples of NAME (a Prometheus text page in FILE)
# whose line matches every extended REGEX, e.g. metric_sum m.txt crawlgate_requests_total
# 'class="ai_training"' 'action="deny"'.
metric_sum() {
  local file="$1" name="$2"
  shift 2
  awk -v name="$name" -v res="$(printf '%s\n' "$@")" '
    BEGIN { n = split(res, re, "\n"); if (re[n] == "") n-- }
    /^#/ { next }
    { split($1, parts, "{"); if (parts[1] != name) next
      for (i = 1; i <= n; i++) if ($0 !~ re[i]) next
      sum += $NF }
    END { printf "%.17g\n", sum + 0 }' "$file"
}
