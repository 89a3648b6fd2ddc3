#!/usr/bin/env bash
# Compare crawlgate with its peers in one run, on loopback, against the same static backend.
#
#   bench/peers.sh                      # defaults: wrk -t1 -c50 -d10s, fixed rate 2000 req/s for 10 s
#   DURATION=3 FIXED_DURATION=3 bench/peers.sh     # a quick run
#
# Peers: direct (the nginx backend itself), nginx proxy_pass + upstream keepalive, haproxy,
# crawlgate ($CRAWLGATE_BIN, skipped when missing). See bench/README.md for what is measured,
# how the peers are configured, and why processes are pinned the way they are.
#
# Environment (all bounded):
#   CRAWLGATE_BIN   crawlgate binary (default build/app/crawlgate)
#   CRAWLGATE_ARGS  extra arguments for 'crawlgate run' (word-split), e.g. --config FILE
#   CRAWLGATE_ACCESS_LOG  0 (default): default rules, access log off; 1: the embedded default
#                   config (access log to stdout, behaviour model in shadow mode)
#   CRAWLGATE_BEHAVIOUR   1: with CRAWLGATE_ACCESS_LOG=0, also score every request with the
#                   behavioural model, in shadow mode (default 0: rules and limits only)
#   PEERS           which peers, default "direct nginx haproxy crawlgate"
#   TARGET          request path, default /wiki/Web_crawler (13 KB page)
#   DURATION        part 1: seconds per wrk run (1..120, default 10)
#   CONNECTIONS     part 1: wrk connections (1..1000, default 50)
#   WRK_THREADS     part 1: wrk threads (1..4, default 1)
#   WARMUP          part 1: warm-up seconds before each measured run (0..30, default 2)
#   FIXED_PEERS     part 2: peers measured at a fixed rate, default = PEERS
#   FIXED_RATE      part 2: total requests/s (10..50000, default 2000)
#   FIXED_DURATION  part 2: seconds per run (1..120, default 10)
#   HEY_WORKERS     part 2: connections: hey -c (each worker does FIXED_RATE/HEY_WORKERS req/s)
#                   and paced wrk -c (default 4)
#   FIXED_TOOLS     part 2: "hey wrk" (default), "hey" or "wrk" (paced wrk, microsecond resolution)
#   PIN             1 = pin with taskset (default when >= 2 CPUs), 0 = do not pin
#   LOADGEN_CPU     CPU for wrk/hey (default 0)
#   SUT_CPU         CPU for the proxy under test (default 1)
#   BACKEND_CPU     CPU for the backend nginx (default = SUT_CPU)
#   KEEP_TMP=1      keep the temp dir (configs, logs, raw outputs)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-/usr/bin/python3}"
CRAWLGATE_BIN="${CRAWLGATE_BIN:-$ROOT/build/app/crawlgate}"
[[ "$CRAWLGATE_BIN" == /* ]] || CRAWLGATE_BIN="$PWD/$CRAWLGATE_BIN"
PEERS="${PEERS:-direct nginx haproxy crawlgate}"
FIXED_PEERS="${FIXED_PEERS:-$PEERS}"
FIXED_TOOLS="${FIXED_TOOLS:-hey wrk}"
TARGET="${TARGET:-/wiki/Web_crawler}"
DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-50}"
WRK_THREADS="${WRK_THREADS:-1}"
WARMUP="${WARMUP:-2}"
FIXED_RATE="${FIXED_RATE:-2000}"
FIXED_DURATION="${FIXED_DURATION:-10}"
HEY_WORKERS="${HEY_WORKERS:-4}"
LOADGEN_CPU="${LOADGEN_CPU:-0}"
SUT_CPU="${SUT_CPU:-1}"
BACKEND_CPU="${BACKEND_CPU:-$SUT_CPU}"
NCPU="$(nproc)"
if [[ -z "${PIN:-}" ]]; then
    if ((NCPU >= 2)) && command -v taskset >/dev/null; then PIN=1; else PIN=0; fi
fi
UA="Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0 crawlgate-bench"

die() {
    echo "peers.sh: $*" >&2
    exit 1
}
log() { echo "# $*" >&2; }

bounded() { # name value lo hi
    if ! [[ "$2" =~ ^[0-9]+$ ]] || ! (($2 >= $3 && $2 <= $4)); then die "$1=$2 must be an integer in $3..$4"; fi
}
bounded DURATION "$DURATION" 1 120
bounded CONNECTIONS "$CONNECTIONS" 1 1000
bounded WRK_THREADS "$WRK_THREADS" 1 4
bounded WARMUP "$WARMUP" 0 30
bounded FIXED_RATE "$FIXED_RATE" 10 50000
bounded FIXED_DURATION "$FIXED_DURATION" 1 120
bounded HEY_WORKERS "$HEY_WORKERS" 1 64
((CONNECTIONS >= WRK_THREADS)) || die "CONNECTIONS must be >= WRK_THREADS"
if [[ "$PIN" == 1 ]]; then
    for c in "$LOADGEN_CPU" "$SUT_CPU" "$BACKEND_CPU"; do bounded CPU "$c" 0 $((NCPU - 1)); done
fi
[[ "$TARGET" == /* ]] || die "TARGET must start with /"
for tool in $FIXED_TOOLS; do [[ "$tool" == hey || "$tool" == wrk ]] || die "FIXED_TOOLS: unknown tool $tool"; done

for tool in nginx haproxy wrk curl; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install -y nginx haproxy wrk curl hey)"
done
[[ " $FIXED_TOOLS " == *" hey "* ]] && ! command -v hey >/dev/null && {
    log "hey not found: part 2 uses wrk only (apt-get install -y hey)"
    FIXED_TOOLS="${FIXED_TOOLS//hey/}"
}
NGINX="$(command -v nginx)"
CLK_TCK="$(getconf CLK_TCK)"

pin() { # CPU cmd...
    local cpu="$1"
    shift
    if [[ "$PIN" == 1 ]]; then taskset -c "$cpu" "$@"; else "$@"; fi
}
# Prefix for commands started in the background, so that $! is the real process (taskset execs it).
SUT_PIN=()
[[ "$PIN" == 1 ]] && SUT_PIN=(taskset -c "$SUT_CPU")

# ---------------------------------------------------------------------------------------------
# Temp dir and cleanup: every process this script starts is stopped on exit, by pid.
TMP="$(mktemp -d /tmp/crawlgate-peers.XXXXXX)"
HAPROXY_PID=""
CRAWLGATE_PID=""
LOAD_PID=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if [[ -n "$LOAD_PID" ]]; then pkill -TERM -P "$LOAD_PID" 2>/dev/null; stop_pid "$LOAD_PID"; fi
    if [[ -n "$CRAWLGATE_PID" ]]; then stop_pid "$CRAWLGATE_PID"; fi
    if [[ -n "$HAPROXY_PID" ]]; then stop_pid "$HAPROXY_PID"; fi
    if [[ -s "$TMP/nginx-proxy/nginx.pid" ]]; then stop_pid "$(cat "$TMP/nginx-proxy/nginx.pid")" QUIT; fi
    if [[ -d "$TMP/backend" ]]; then "$ROOT/scripts/demo-backend.sh" stop "$TMP/backend" >/dev/null; fi
    if [[ "${KEEP_TMP:-0}" == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

alive() { # pid: running and not a zombie (a daemonized nginx is reaped by init, maybe late)
    local st
    st="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    st="${st##*) }"
    [[ "${st:0:1}" != Z ]]
}

stop_pid() { # pid [signal]: signal, wait up to 3 s, then KILL (children too)
    local pid="$1" sig="${2:-TERM}" i
    alive "$pid" || return 0
    kill "-$sig" "$pid" 2>/dev/null
    for ((i = 0; i < 60; i++)); do
        alive "$pid" || return 0
        sleep 0.05
    done
    pkill -KILL -P "$pid" 2>/dev/null
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
}

wait_port() { # port seconds [pid]: wait until 127.0.0.1:port accepts
    local port="$1" n=$(($2 * 20)) pid="${3:-}" i
    for ((i = 0; i < n; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        [[ -n "$pid" ]] && ! alive "$pid" && return 1
        sleep 0.05
    done
    return 1
}

# All pids of a process tree (master and workers); threads are inside their process's stat.
tree_pids() {
    local p
    for p in "$@"; do
        [[ -n "$p" ]] || continue
        echo "$p"
        ps -o pid= --ppid "$p" 2>/dev/null || true
    done
}

cpu_ticks() { # pids... -> summed utime+stime in clock ticks
    local sum=0 p line rest
    for p in $(tree_pids "$@"); do
        line="$(cat "/proc/$p/stat" 2>/dev/null)" || continue
        rest="${line##*) }" # fields after "(comm) "; utime/stime are fields 14/15 => 12/13 here
        read -r -a f <<<"$rest"
        sum=$((sum + f[11] + f[12]))
    done
    echo "$sum"
}

# ---------------------------------------------------------------------------------------------
# Ports, site, backend.
read -r BACKEND_PORT NGINX_PORT HAPROXY_PORT CRAWLGATE_PORT ADMIN_PORT < <("$PYTHON" - <<'EOF'
import socket
socks = []
for _ in range(5):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
)

declare -A PORT=([direct]=$BACKEND_PORT [nginx]=$NGINX_PORT [haproxy]=$HAPROXY_PORT [crawlgate]=$CRAWLGATE_PORT)
declare -A PIDS=() # peer -> pids of the process(es) doing the proxying
declare -A LABEL=([direct]="backend direct" [nginx]="nginx proxy_pass" [haproxy]="haproxy" [crawlgate]="crawlgate")
declare -A SKIP=()

log "temp dir $TMP"
DEMO_BACKEND_ACCESS_LOG=0 pin "$BACKEND_CPU" "$ROOT/scripts/demo-backend.sh" start "$TMP/backend" "$BACKEND_PORT" >&2
BACKEND_PIDS="$(cat "$TMP/backend/nginx.pid")"
PIDS[direct]="$BACKEND_PIDS"
WORKER_USER="$(grep -m1 '^user ' "$TMP/backend/conf/nginx.conf" || true)"

subst() { # template out dir port
    sed -e "s#@DIR@#$3#g" -e "s#@PORT@#$4#g" -e "s#@BACKEND_PORT@#$BACKEND_PORT#g" \
        -e "s#@USER@#$WORKER_USER#g" "$1" >"$2"
}

start_nginx_proxy() {
    local d="$TMP/nginx-proxy"
    mkdir -p "$d/logs" "$d/tmp"
    subst "$ROOT/bench/nginx-proxy.conf" "$d/nginx.conf" "$d" "$NGINX_PORT"
    pin "$SUT_CPU" "$NGINX" -p "$d/" -c "$d/nginx.conf" -e "$d/logs/error.log" || return 1
    wait_port "$NGINX_PORT" 5 || return 1
    PIDS[nginx]="$(cat "$d/nginx.pid")"
}

start_haproxy() {
    local d="$TMP/haproxy"
    mkdir -p "$d"
    subst "$ROOT/bench/haproxy-proxy.cfg" "$d/haproxy.cfg" "$d" "$HAPROXY_PORT"
    "${SUT_PIN[@]}" haproxy -db -f "$d/haproxy.cfg" >"$d/haproxy.log" 2>&1 &
    HAPROXY_PID=$!
    wait_port "$HAPROXY_PORT" 5 "$HAPROXY_PID" || { cat "$d/haproxy.log" >&2; return 1; }
    PIDS[haproxy]="$HAPROXY_PID"
}

# Without a --config in CRAWLGATE_ARGS, crawlgate gets the repo's default rule set with the access
# log off (the other peers log nothing either); CRAWLGATE_ACCESS_LOG=1 keeps the embedded default
# config instead, whose JSONL access log then goes to a file in the temp dir.
CRAWLGATE_CONFIG_DESC="embedded default config"
crawlgate_config() {
    local rules="$ROOT/rules/default" cfg="$TMP/crawlgate-bench.yaml" f out
    [[ " ${CRAWLGATE_ARGS:-} " == *" --config "* || " ${CRAWLGATE_ARGS:-} " == *" -c "* ]] && {
        CRAWLGATE_CONFIG_DESC="config from CRAWLGATE_ARGS"
        return 0
    }
    if [[ "${CRAWLGATE_ACCESS_LOG:-0}" == 1 ]]; then
        # The embedded default config scores every request; enforced, it would throttle the one
        # address the load comes from after its burst. Shadow mode keeps the cost, not the 429s.
        sed -e 's/^  enforce: true/  enforce: false/' \
            -e "s#^  model: crawlgate-model.json#  model: $ROOT/classifier/models/crawlgate-model.json#" \
            "$rules/crawlgate.yaml" >"$cfg"
        cp "$rules/classes.yaml" "$rules/ai-crawlers.yaml" "$rules/known-bots.yaml" "$TMP/"
        if out="$("$CRAWLGATE_BIN" check --config "$cfg" 2>&1)"; then
            CRAWLGATE_CONFIG_ARGS=(--config "$cfg")
            CRAWLGATE_CONFIG_DESC="the embedded default config (access log on, behaviour in shadow mode)"
        else
            CRAWLGATE_CONFIG_DESC="embedded default config, access log on (behaviour enforced: expect 429s)"
            log "crawlgate check rejected the shadow copy of the default config: $out"
        fi
        return 0
    fi
    for f in classes ai-crawlers known-bots; do [[ -f "$rules/$f.yaml" ]] || return 0; done
    cat >"$cfg" <<EOF2
# bench/peers.sh: the default rule set, access log off.
access_log:
  path: ""
include: [$rules/classes.yaml, $rules/ai-crawlers.yaml, $rules/known-bots.yaml]
EOF2
    if [[ "${CRAWLGATE_BEHAVIOUR:-0}" == 1 ]]; then
        # Every benchmark request is scored (features + model), in shadow mode: one address at
        # tens of thousands of requests/s is a crawler to the model, and refusals would not be a
        # proxy's cost.
        cat >>"$cfg" <<EOF2
behaviour:
  model: $ROOT/classifier/models/crawlgate-model.json
  enforce: false
  thresholds:
    - {min_score: 0.954, class: ai_stealth}
EOF2
    fi
    if out="$("$CRAWLGATE_BIN" check --config "$cfg" 2>&1)"; then
        CRAWLGATE_CONFIG_ARGS=(--config "$cfg")
        CRAWLGATE_CONFIG_DESC="rules/default/{classes,ai-crawlers,known-bots}.yaml, access log off$([[ "${CRAWLGATE_BEHAVIOUR:-0}" == 1 ]] && echo ", behaviour model (shadow)"): ${out##*: }"
    else
        log "crawlgate check rejected the bench config, using the embedded default: $out"
    fi
}

start_crawlgate() {
    local args=(run --listen "127.0.0.1:$CRAWLGATE_PORT" --upstream "http://127.0.0.1:$BACKEND_PORT" --threads 1)
    CRAWLGATE_CONFIG_ARGS=()
    crawlgate_config
    args+=("${CRAWLGATE_CONFIG_ARGS[@]}")
    # Keep the admin listener off the default port if this build has the flag.
    if "$CRAWLGATE_BIN" run --help 2>&1 | grep -q -- '--admin'; then
        args+=(--admin "127.0.0.1:$ADMIN_PORT")
    fi
    # shellcheck disable=SC2206
    args+=(${CRAWLGATE_ARGS:-})
    echo "$CRAWLGATE_BIN ${args[*]}" >"$TMP/crawlgate.cmd"
    "${SUT_PIN[@]}" "$CRAWLGATE_BIN" "${args[@]}" >"$TMP/crawlgate.log" 2>&1 &
    CRAWLGATE_PID=$!
    if ! wait_port "$CRAWLGATE_PORT" 10 "$CRAWLGATE_PID"; then
        log "crawlgate did not start: $(cat "$TMP/crawlgate.cmd")"
        tail -n 20 "$TMP/crawlgate.log" >&2 || true
        return 1
    fi
    PIDS[crawlgate]="$CRAWLGATE_PID"
}

for peer in $PEERS; do
    case "$peer" in
    direct) ;;
    nginx) start_nginx_proxy || { SKIP[nginx]="failed to start"; log "nginx proxy failed to start"; } ;;
    haproxy) start_haproxy || { SKIP[haproxy]="failed to start"; log "haproxy failed to start"; } ;;
    crawlgate)
        if [[ ! -x "$CRAWLGATE_BIN" ]]; then
            SKIP[crawlgate]="skipped: $CRAWLGATE_BIN not built"
        else
            start_crawlgate || SKIP[crawlgate]="failed to start (its output is above; KEEP_TMP=1 keeps it)"
        fi
        ;;
    *) die "unknown peer: $peer" ;;
    esac
done

# Sanity: every peer answers TARGET with 200 and the backend's exact body.
curl -fsS -A "$UA" -o "$TMP/expected.body" "http://127.0.0.1:$BACKEND_PORT$TARGET" ||
    die "backend does not serve $TARGET"
BODY_BYTES="$(stat -c %s "$TMP/expected.body")"
ACTIVE=()
for peer in $PEERS; do
    [[ -n "${SKIP[$peer]:-}" ]] && continue
    code="$(curl -sS -A "$UA" -o "$TMP/$peer.body" -w '%{http_code}' "http://127.0.0.1:${PORT[$peer]}$TARGET" || true)"
    if [[ "$code" != 200 ]] || ! cmp -s "$TMP/expected.body" "$TMP/$peer.body"; then
        SKIP[$peer]="sanity check failed (status $code or body differs)"
        log "$peer: ${SKIP[$peer]}"
        if [[ "$peer" == crawlgate ]]; then tail -n 20 "$TMP/crawlgate.log" >&2 || true; fi
        continue
    fi
    ACTIVE+=("$peer")
done

# ---------------------------------------------------------------------------------------------
cat >"$TMP/report.lua" <<'EOF'
done = function(s, lat, req)
  local e = s.errors
  io.write(string.format(
    "CGBENCH requests=%d duration_us=%d bytes=%d p50=%d p90=%d p99=%d max=%d errors=%d status_err=%d" ..
    " connect=%d read=%d write=%d timeout=%d\n",
    s.requests, s.duration, s.bytes, lat:percentile(50), lat:percentile(90), lat:percentile(99), lat.max,
    e.connect + e.read + e.write + e.timeout, e.status, e.connect, e.read, e.write, e.timeout))
end
EOF

# Paced wrk for part 2: one schedule per wrk thread (delay() is per thread), FIXED_RATE req/s in
# total; wrk timers have 1 ms granularity, the schedule is cumulative so the average rate is exact.
cat >"$TMP/paced.lua" <<EOF
local ffi = require("ffi")
ffi.cdef[[ typedef struct { long tv_sec; long tv_nsec; } cg_timespec; int clock_gettime(int, cg_timespec *); ]]
local ts = ffi.new("cg_timespec")
local function now_ms() ffi.C.clock_gettime(1, ts); return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6 end
local interval = 1000.0 / $FIXED_RATE
local nexts = nil
function delay()
  local t = now_ms()
  if nexts == nil or nexts < t - 50 then nexts = t end -- do not burst to catch up after a stall
  nexts = nexts + interval
  local d = nexts - t
  if d < 0 then return 0 end
  return math.floor(d)
end
$(cat "$TMP/report.lua")
EOF

# load_run out timefile cmd...: run the load generator pinned, in the background so that a signal
# to this script is handled at once (cleanup stops it); its user/sys/real seconds go to timefile.
load_run() {
    local out="$1" tf="$2" rc=0
    shift 2
    (
        TIMEFORMAT='%U %S %R'
        time pin "$LOADGEN_CPU" "$@" >"$out" 2>&1
    ) 2>"$tf" &
    LOAD_PID=$!
    wait "$LOAD_PID" || rc=$?
    LOAD_PID=""
    return "$rc"
}

NOTES=()
# A peer whose process died during a run is reported (with crawlgate's last output) and dropped.
check_alive() {
    local peer="$1" p
    [[ -z "${SKIP[$peer]:-}" ]] || return 0
    for p in ${PIDS[$peer]:-}; do
        if ! alive "$p"; then
            NOTES+=("${LABEL[$peer]} (pid $p) exited during the run")
            SKIP[$peer]="exited during the run"
            log "${LABEL[$peer]} (pid $p) exited during the run"
            if [[ "$peer" == crawlgate ]]; then grep -v '^{' "$TMP/crawlgate.log" | tail -n 20 >&2 || true; fi
            ACTIVE=("${ACTIVE[@]/$peer/}")
        fi
    done
}

why_missing() { # peer listname
    local list="${!2}"
    if [[ -n "${SKIP[$1]:-}" ]]; then echo "${SKIP[$1]}"
    elif [[ " $list " != *" $1 "* ]]; then echo "not in $2"
    else echo "no result (see notes)"; fi
}

kv() { # key file -> value of key=... on the CGBENCH line
    grep -o "CGBENCH .*" "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"
}

# run_wrk peer outfile seconds conns threads [script] -> sets W_* globals
run_wrk() {
    local peer="$1" out="$2" secs="$3" conns="$4" threads="$5" script="${6:-$TMP/report.lua}"
    local url="http://127.0.0.1:${PORT[$peer]}$TARGET" t0 t1 b0 b1 tf="$out.time"
    t0="$(cpu_ticks "${PIDS[$peer]}")"
    b0="$(cpu_ticks "$BACKEND_PIDS")"
    load_run "$out" "$tf" timeout -k 5 $((secs + 30)) wrk -t"$threads" -c"$conns" -d"${secs}s" \
        -H "User-Agent: $UA" -H "Accept-Language: en" -s "$script" "$url" ||
        { log "wrk failed against $peer"; cat "$out" >&2; check_alive "$peer"; return 1; }
    t1="$(cpu_ticks "${PIDS[$peer]}")"
    b1="$(cpu_ticks "$BACKEND_PIDS")"
    W_REQ="$(kv requests "$out")"
    W_DUR="$(kv duration_us "$out")"
    W_P50="$(kv p50 "$out")"
    W_P99="$(kv p99 "$out")"
    W_ERR=$(($(kv errors "$out") + $(kv status_err "$out")))
    W_RPS="$(awk -v r="$W_REQ" -v d="$W_DUR" 'BEGIN{printf "%.0f", r / (d / 1e6)}')"
    if ((W_ERR > 0)); then
        NOTES+=("$peer ($(basename "$out")): errors: connect $(kv connect "$out"), read $(kv read "$out"), write $(kv write "$out"), timeout $(kv timeout "$out"), status>=400 $(kv status_err "$out")")
    fi
    check_alive "$peer"
    # CPU of the peer's own processes, per request and as % of one core; same for backend and wrk.
    W_CPU_REQ="$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v r="$W_REQ" 'BEGIN{printf "%.1f", r ? t / hz * 1e6 / r : 0}')"
    W_CPU_PCT="$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v d="$W_DUR" 'BEGIN{printf "%.0f", t / hz / (d / 1e6) * 100}')"
    W_BCPU_PCT="$(awk -v t=$((b1 - b0)) -v hz="$CLK_TCK" -v d="$W_DUR" 'BEGIN{printf "%.0f", t / hz / (d / 1e6) * 100}')"
    W_LCPU_PCT="$(awk '{printf "%.0f", ($1 + $2) / $3 * 100}' "$tf")"
}

# ---------------------------------------------------------------------------------------------
echo "crawlgate peer benchmark  $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "machine: $NCPU CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "versions: $("$NGINX" -v 2>&1 | sed 's/.*version: //'), $(haproxy -v | head -1 | awk '{print "haproxy/" $3}'), $(wrk -v 2>&1 | head -1 | awk '{print "wrk " $2}')$(command -v hey >/dev/null && echo ", hey")"
echo "target: GET $TARGET ($BODY_BYTES bytes)  backend: nginx 1 worker on 127.0.0.1:$BACKEND_PORT"
if [[ "$PIN" == 1 ]]; then
    echo "pinning: load generator CPU $LOADGEN_CPU, proxy under test CPU $SUT_CPU, backend CPU $BACKEND_CPU"
else
    echo "pinning: off"
fi
if [[ -n "${PIDS[crawlgate]:-}" ]]; then
    echo "crawlgate: $(sed "s#$ROOT/##" "$TMP/crawlgate.cmd")"
    echo "crawlgate config: $CRAWLGATE_CONFIG_DESC"
fi
for peer in $PEERS; do [[ -n "${SKIP[$peer]:-}" ]] && echo "note: ${LABEL[$peer]}: ${SKIP[$peer]}"; done
echo

echo "== part 1: throughput, wrk -t$WRK_THREADS -c$CONNECTIONS -d${DURATION}s (after ${WARMUP}s warm-up), keep-alive =="
declare -A RPS=() CPUREQ=()
ROWS=()
for peer in "${ACTIVE[@]}"; do
    [[ -n "$peer" ]] || continue
    if ((WARMUP > 0)); then run_wrk "$peer" "$TMP/$peer.warmup" "$WARMUP" "$CONNECTIONS" "$WRK_THREADS" || true; fi
    [[ -z "${SKIP[$peer]:-}" ]] || continue
    if run_wrk "$peer" "$TMP/$peer.wrk" "$DURATION" "$CONNECTIONS" "$WRK_THREADS"; then
        RPS[$peer]="$W_RPS"
        CPUREQ[$peer]="$W_CPU_REQ"
        if [[ "$peer" == direct ]]; then pcpu="-"; preq="-"; else pcpu="$W_CPU_PCT"; preq="$W_CPU_REQ"; fi
        ROWS+=("$(printf '%-17s %9s %9s %9s %7s %12s %9s %9s %8s' "${LABEL[$peer]}" "$W_RPS" "$W_P50" "$W_P99" \
            "$W_ERR" "$preq" "$pcpu" "$W_BCPU_PCT" "$W_LCPU_PCT")")
    fi
    log "part 1: $peer done"
done
printf '%-17s %9s %9s %9s %7s %12s %9s %9s %8s\n' peer "req/s" "p50 us" "p99 us" errors \
    "proxy us/req" "proxy %" "backend %" "loadgen %"
printf '%s\n' "${ROWS[@]}"
echo "(us = microseconds; 'proxy us/req' = CPU time of the proxy's processes per request; '%' = share of one core)"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2f", a / b; else printf "n/a" }'; }
if [[ -n "${RPS[crawlgate]:-}" ]]; then
    [[ -n "${RPS[nginx]:-}" ]] && echo "crawlgate / nginx proxy_pass: throughput x$(ratio "${RPS[crawlgate]}" "${RPS[nginx]}"), CPU per request x$(ratio "${CPUREQ[crawlgate]}" "${CPUREQ[nginx]}")"
    [[ -n "${RPS[haproxy]:-}" ]] && echo "crawlgate / haproxy:          throughput x$(ratio "${RPS[crawlgate]}" "${RPS[haproxy]}"), CPU per request x$(ratio "${CPUREQ[crawlgate]}" "${CPUREQ[haproxy]}")"
else
    echo "crawlgate: $(why_missing crawlgate PEERS) -- no ratios"
fi
echo

# ---------------------------------------------------------------------------------------------
echo "== part 2: latency at a fixed rate of $FIXED_RATE req/s for ${FIXED_DURATION}s =="
secs_to_us() { awk -v s="$1" 'BEGIN{ if (s == "") print ""; else printf "%.0f", s * 1e6 }'; }
declare -A F_P50=() F_P99=()
ROWS=()
for tool in $FIXED_TOOLS; do
    for peer in $FIXED_PEERS; do
        [[ " ${ACTIVE[*]} " == *" $peer "* ]] || continue
        url="http://127.0.0.1:${PORT[$peer]}$TARGET"
        if [[ "$tool" == hey ]]; then
            per=$(((FIXED_RATE + HEY_WORKERS - 1) / HEY_WORKERS))
            out="$TMP/$peer.hey"
            load_run "$out" "$out.time" timeout -k 5 $((FIXED_DURATION + 30)) hey -z "${FIXED_DURATION}s" \
                -c "$HEY_WORKERS" -q "$per" -cpus 1 -disable-compression -H "User-Agent: $UA" \
                -H "Accept-Language: en" "$url" || { log "hey failed against $peer"; continue; }
            rps="$(awk '/Requests\/sec:/{printf "%.0f", $2}' "$out")"
            p50="$(secs_to_us "$(awk '$1 == "50%" && $2 == "in" {print $3}' "$out")")"
            p99="$(secs_to_us "$(awk '$1 == "99%" && $2 == "in" {print $3}' "$out")")"
            ok="$(awk '/\[200\]/{print $2}' "$out")"
            total="$(awk '/^ *\[[0-9]+\]/{n += $2} END{print n + 0}' "$out")"
            errs=$((total - ${ok:-0} + $(awk '/Error distribution/{f=1; next} f && /\[[0-9]+\]/{gsub(/[\[\]]/, "", $1); n += $1} END{print n + 0}' "$out")))
            desc="hey -c$HEY_WORKERS -q$per"
            check_alive "$peer"
        else
            out="$TMP/$peer.paced"
            run_wrk "$peer" "$out" "$FIXED_DURATION" "$HEY_WORKERS" 1 "$TMP/paced.lua" || continue
            rps="$W_RPS" p50="$W_P50" p99="$W_P99" errs="$W_ERR"
            desc="wrk paced -c$HEY_WORKERS"
        fi
        F_P50[$tool.$peer]="$p50"
        F_P99[$tool.$peer]="$p99"
        add50="-" add99="-"
        if [[ "$peer" != direct && -n "${F_P99[$tool.direct]:-}" ]]; then
            add50=$((p50 - F_P50[$tool.direct]))
            add99=$((p99 - F_P99[$tool.direct]))
        fi
        ROWS+=("$(printf '%-17s %-22s %7s %9s %9s %7s %11s %11s' "${LABEL[$peer]}" "$desc" "$rps" "$p50" "$p99" "$errs" "$add50" "$add99")")
        log "part 2: $tool $peer done"
    done
done
printf '%-17s %-22s %7s %9s %9s %7s %11s %11s\n' peer tool "req/s" "p50 us" "p99 us" errors "+p50 us" "+p99 us"
printf '%s\n' "${ROWS[@]}"
echo "(+p50/+p99 = added over backend direct measured with the same tool; hey reports 100 us steps)"
if [[ -z "${F_P99[hey.crawlgate]:-}${F_P99[wrk.crawlgate]:-}" ]]; then
    echo "crawlgate: $(why_missing crawlgate FIXED_PEERS) -- not measured"
fi
if ((${#NOTES[@]} > 0)); then
    echo
    printf 'note: %s\n' "${NOTES[@]}"
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
