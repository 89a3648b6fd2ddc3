#!/usr/bin/env bash
# Soak test: crawlgate under a bounded mixed load with config reloads, on loopback only.
#
#   bench/soak.sh                                   # 120 s of load, about 2.5 minutes in all
#   bench/soak.sh --duration 30 --json /tmp/soak.json
#   bench/soak.sh --bin build-soak/app/crawlgate
#
# Starts a private nginx backend (the generated demo wiki, plus POST /upload, which nginx buffers
# whole before answering) and crawlgate with a temp config (the default rule set, 127.0.2.0/24 in
# the throttled ai_stealth class, short client timeouts, access log off) and its admin listener,
# all on free 127.0.0.1 ports. Then, for --duration seconds at once:
#   normal    wrk, keep-alive, browser User-Agent: every non-2xx/3xx or socket error is a failure
#   crawlers  GPTBot / ClaudeBot (403) and PerplexityBot (throttled: 429), counted by status
#   stealth   browser UA from 127.0.2.N, far above the ai_stealth limit (6/m: 200 then 429)
#   slow      a slowloris or slow-POST client every second; crawlgate must cut each off
#   reloads   every --reload-every seconds, alternating SIGHUP and POST /-/reload; one in five
#             with a broken config file, which must be refused while serving goes on
# and samples crawlgate's VmRSS and open fds every second. Exit status 1, with the reasons, if a
# normal client got an error, RSS grew 5 % or more from the end of the warm-up to the end, the fd
# count was not back to its pre-load baseline within --fd-settle seconds, a slow client was not
# cut off, a reload had an unexpected outcome, or crawlgate died or did not exit 0 on SIGTERM.
# See bench/README.md ("Soak test").
#
# Options (all bounded):
#   --duration S      seconds of load (20..3600, default 120; warm-up: a quarter, 10..120 s)
#   --json FILE       also write the figures as JSON
#   --bin PATH        crawlgate binary (default $CRAWLGATE_BIN, else build/app/crawlgate)
#   --connections N   wrk connections of the normal clients (1..200, default 16)
#   --reload-every S  seconds between reloads (1..60, default 4)
#   --fd-settle S     seconds the fd count may take to come back to baseline (1..60, default 10)
#   --threads N       crawlgate I/O threads (0..16, default 0 = one per core)
#   --keep-tmp        keep the temp dir (configs, logs, raw outputs)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON=/usr/bin/python3
HELPER="$ROOT/bench/soak.py"
BIN="${CRAWLGATE_BIN:-$ROOT/build/app/crawlgate}"
DURATION=120
JSON=""
CONNECTIONS=16
RELOAD_EVERY=4
FD_SETTLE=10
THREADS=0
KEEP_TMP=0
# crawlgate timeouts in the soak config: slow clients are cut off after these.
HEADER_READ=3
BODY_READ=2
UA="Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"

die() {
    echo "soak.sh: $*" >&2
    exit 2
}
log() { echo "# $*" >&2; }
usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit "${1:-2}"
}

while (($#)); do
    case "$1" in
    --duration | --json | --bin | --connections | --reload-every | --fd-settle | --threads)
        (($# >= 2)) || die "$1 needs a value"
        case "$1" in
        --duration) DURATION="$2" ;;
        --json) JSON="$2" ;;
        --bin) BIN="$2" ;;
        --connections) CONNECTIONS="$2" ;;
        --reload-every) RELOAD_EVERY="$2" ;;
        --fd-settle) FD_SETTLE="$2" ;;
        --threads) THREADS="$2" ;;
        esac
        shift 2
        ;;
    --keep-tmp) KEEP_TMP=1; shift ;;
    -h | --help) usage 0 ;;
    *) echo "soak.sh: unknown argument: $1" >&2; usage 2 ;;
    esac
done

bounded() { # name value lo hi
    if ! [[ "$2" =~ ^[0-9]+$ ]] || ! (($2 >= $3 && $2 <= $4)); then die "$1 must be an integer in $3..$4, not '$2'"; fi
}
bounded --duration "$DURATION" 20 3600
bounded --connections "$CONNECTIONS" 1 200
bounded --reload-every "$RELOAD_EVERY" 1 60
bounded --fd-settle "$FD_SETTLE" 1 60
bounded --threads "$THREADS" 0 16
[[ "$BIN" == /* ]] || BIN="$PWD/$BIN"
[[ -x "$BIN" ]] || die "crawlgate binary not found: $BIN (build it, or pass --bin / CRAWLGATE_BIN)"
if [[ -n "$JSON" ]]; then
    [[ "$JSON" == /* ]] || JSON="$PWD/$JSON"
    [[ -d "$(dirname "$JSON")" ]] || die "--json: no such directory: $(dirname "$JSON")"
fi
for tool in nginx wrk curl timeout; do
    command -v "$tool" >/dev/null || die "$tool not found (scripts/deps.sh --bench installs nginx, wrk, curl)"
done
[[ -x "$PYTHON" ]] || die "$PYTHON not found"
NGINX="$(command -v nginx)"
# Warm-up: a quarter of the run, 10..120 s. RSS growth is measured from its end. (RSS climbs
# during the first ~10 reloads, then holds: see bench/README.md.)
WARMUP=$((DURATION / 4))
((WARMUP < 10)) && WARMUP=10
((WARMUP > 120)) && WARMUP=120

# ---------------------------------------------------------------------------------------------
# Temp dir and cleanup: every process this script starts is stopped on exit, Ctrl-C or TERM.
TMP="$(mktemp -d /tmp/crawlgate-soak.XXXXXX)"
NGINX_PID="" CRAWLGATE_PID="" WRK_PID="" CLIENTS_PID="" RELOADER_PID=""

alive() { # pid: running and not a zombie
    local st
    st="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    st="${st##*) }"
    [[ "${st:0:1}" != Z ]]
}

# shellcheck disable=SC2317
stop_pid() { # pid [signal] [tenths of a second to wait]: signal, wait, then KILL it and its children
    local pid="$1" sig="${2:-TERM}" n="${3:-40}" i
    [[ -n "$pid" ]] && alive "$pid" || return 0
    kill "-$sig" "$pid" 2>/dev/null
    for ((i = 0; i < n; i++)); do
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then
        pkill -KILL -P "$pid" 2>/dev/null
        kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null || true
}

# shellcheck disable=SC2317
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    # The reloader is a subshell: its children (sleep, curl) first.
    if [[ -n "$RELOADER_PID" ]]; then pkill -TERM -P "$RELOADER_PID" 2>/dev/null; stop_pid "$RELOADER_PID"; fi
    stop_pid "$WRK_PID"     # timeout(1), which passes the signal on to wrk
    stop_pid "$CLIENTS_PID" # timeout(1) again, for the Python clients
    stop_pid "$CRAWLGATE_PID" TERM 150
    stop_pid "$NGINX_PID" QUIT 50
    if ((KEEP_TMP)); then log "kept $TMP"; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wait_port() { # port tenths [pid]: until 127.0.0.1:port accepts
    local port="$1" n="$2" pid="${3:-}" i
    for ((i = 0; i < n; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        [[ -n "$pid" ]] && ! alive "$pid" && return 1
        sleep 0.1
    done
    return 1
}

rss_kb() { awk '/^VmRSS:/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
hwm_kb() { awk '/^VmHWM:/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

FACTS="$TMP/facts"
: >"$FACTS"
fact() { echo "$1=$2" >>"$FACTS"; }

read -r PORT BACKEND_PORT ADMIN_PORT < <("$PYTHON" - <<'EOF'
import socket
socks = []
for _ in range(3):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
)
# The client helper binds to 127.0.N.M source addresses (Linux routes all of 127/8 to lo).
"$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.2.1", 0))' 2>/dev/null ||
    die "cannot bind to 127.0.2.1: the loopback interface does not carry 127.0.0.0/8"

# ---------------------------------------------------------------------------------------------
# Backend: nginx, 1 worker, the demo wiki; POST /upload is buffered whole by nginx (proxied to
# its own /sink), so a slow POST body is held open until crawlgate cuts it off.
mkdir -p "$TMP/backend/logs" "$TMP/backend/tmp"
"$PYTHON" "$ROOT/tools/make_demo_site.py" "$TMP/backend/site" >/dev/null
user_line=""
if [[ "$(id -u)" == 0 ]]; then
    # As root nginx's workers would run as nobody, which cannot enter the 0700 temp dir.
    user_line="user root root;"
fi
cat >"$TMP/backend/nginx.conf" <<EOF
# bench/soak.sh backend
$user_line
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 8192;
pid $TMP/backend/nginx.pid;
error_log $TMP/backend/logs/error.log warn;
events { worker_connections 4096; }
http {
    types { text/html html; text/css css; text/plain txt; application/javascript js;
            image/png png; image/svg+xml svg; image/x-icon ico; }
    default_type application/octet-stream;
    access_log off;
    client_body_temp_path $TMP/backend/tmp/client_body;
    proxy_temp_path       $TMP/backend/tmp/proxy;
    fastcgi_temp_path     $TMP/backend/tmp/fastcgi;
    uwsgi_temp_path       $TMP/backend/tmp/uwsgi;
    scgi_temp_path        $TMP/backend/tmp/scgi;
    sendfile on;
    keepalive_timeout 65s;
    keepalive_requests 1000000;
    server_tokens off;
    open_file_cache max=256 inactive=60s;
    server {
        listen 127.0.0.1:$BACKEND_PORT;
        root $TMP/backend/site;
        index index.html;
        location / { try_files \$uri \$uri.html \$uri/ =404; }
        location = /upload {
            client_max_body_size 1m;
            client_body_timeout 120s;
            proxy_pass http://127.0.0.1:$BACKEND_PORT/sink;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
        location = /sink { return 200 "stored\n"; }
    }
}
EOF
"$NGINX" -p "$TMP/backend/" -c "$TMP/backend/nginx.conf" -e "$TMP/backend/logs/error.log" -t -q ||
    die "backend nginx config test failed"
"$NGINX" -p "$TMP/backend/" -c "$TMP/backend/nginx.conf" -e "$TMP/backend/logs/error.log" &
NGINX_PID=$!
wait_port "$BACKEND_PORT" 50 "$NGINX_PID" || { tail -n 5 "$TMP/backend/logs/error.log" >&2; die "backend nginx did not start"; }

# ---------------------------------------------------------------------------------------------
# crawlgate configs: two good variants (reloads alternate between them, so each one changes the
# running config) and two broken ones (a YAML syntax error; an unknown class and a bad regex).
CFG="$TMP/crawlgate.yaml"
RULES="$ROOT/rules/default"
write_good() { # file stealth-cost
    cat >"$1" <<EOF
# bench/soak.sh: the default rule set; a "stealth" address block put in the default ai_stealth
# class (throttle, 6/m, burst 30, per /24); short client timeouts so that slow clients are cut
# off quickly; access log off.
listen: 127.0.0.1:$PORT
upstream: http://127.0.0.1:$BACKEND_PORT
admin: 127.0.0.1:$ADMIN_PORT
threads: $THREADS
access_log: {path: ""}
timeouts:
  header_read: ${HEADER_READ}s
  body_read: ${BODY_READ}s
limits:
  min_body_rate: 512
upstream_pool:
  idle_timeout: 2s
rules:
  - name: soak-stealth-block
    class: ai_stealth
    remote_addresses: [127.0.2.0/24]
    cost: $2
include: [$RULES/classes.yaml, $RULES/ai-crawlers.yaml, $RULES/known-bots.yaml]
EOF
}
write_good "$TMP/good-A.yaml" 1
write_good "$TMP/good-B.yaml" 2
{ cat "$TMP/good-A.yaml"; printf 'rules_oops: [unclosed\n'; } >"$TMP/broken-0.yaml"
sed 's/^rules:$/rules:\n  - {name: soak-broken, class: no_such_class, user_agent: ["(unclosed"]}/' \
    "$TMP/good-A.yaml" >"$TMP/broken-1.yaml"
for f in good-A good-B; do
    out="$("$BIN" check --config "$TMP/$f.yaml" 2>&1)" || die "crawlgate check refused $f.yaml: $out"
done
for f in broken-0 broken-1; do
    if "$BIN" check --config "$TMP/$f.yaml" >/dev/null 2>&1; then die "crawlgate check accepted $f.yaml"; fi
done
cp "$TMP/good-A.yaml" "$CFG"

"$BIN" run --config "$CFG" >"$TMP/crawlgate.log" 2>&1 &
CRAWLGATE_PID=$!
ADMIN="http://127.0.0.1:$ADMIN_PORT"
URL="http://127.0.0.1:$PORT"
if ! wait_port "$PORT" 100 "$CRAWLGATE_PID" || ! wait_port "$ADMIN_PORT" 50 "$CRAWLGATE_PID"; then
    tail -n 10 "$TMP/crawlgate.log" >&2
    die "crawlgate did not start"
fi
BIN_DESC="$("$BIN" --version 2>/dev/null | head -1 || true)"
BIN_DESC="${BIN_DESC:-crawlgate} (${BIN#"$ROOT"/}), $(curl -s --max-time 5 "$ADMIN/metrics" | awk '$1 == "crawlgate_rules" {print $2}') rules"

# Sanity: a browser gets the page, GPTBot a 403, the stealth block its page, and a POST goes through.
code() { curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$@" || true; }
[[ "$(code -A "$UA" "$URL/wiki/Main_Page")" == 200 ]] || die "sanity: a browser did not get 200"
[[ "$(code -A 'Mozilla/5.0 (compatible; GPTBot/1.2; +https://openai.com/gptbot)' "$URL/wiki/Main_Page")" == 403 ]] ||
    die "sanity: GPTBot did not get 403"
[[ "$(code --interface 127.0.2.1 -A "$UA" "$URL/wiki/Main_Page")" == 200 ]] || die "sanity: the stealth block did not get 200"
[[ "$(code -A "$UA" --data-binary 'hello' "$URL/upload")" == 200 ]] || die "sanity: POST /upload did not get 200"
[[ "$(code "$ADMIN/readyz")" == 200 ]] || die "sanity: /readyz is not 200"

# Baseline: idle, once the upstream pool has dropped the sanity requests' connections (idle_timeout
# 2 s): the fd count must hold still for 2 s (at most 10 s of waiting).
prev=-1 same=0
for ((i = 0; i < 40 && same < 8; i++)); do
    sleep 0.25
    n="$(fd_count "$CRAWLGATE_PID")"
    if [[ "$n" == "$prev" ]]; then same=$((same + 1)); else same=0; fi
    prev="$n"
done
FD_BASE="$prev"
RSS_BASE="$(rss_kb "$CRAWLGATE_PID")"
# crawlgate_config_reloads_total counts the initial load too: the report uses differences.
curl -s --max-time 5 "$ADMIN/metrics" >"$TMP/metrics.start" || die "cannot read $ADMIN/metrics"
m() { awk -v k="$2" '$1 == k {v = $2} END {printf "%d", v}' "$1"; }
fact m0_reload_success "$(m "$TMP/metrics.start" 'crawlgate_config_reloads_total{result="success"}')"
fact m0_reload_failure "$(m "$TMP/metrics.start" 'crawlgate_config_reloads_total{result="failure"}')"
fact m0_generation "$(m "$TMP/metrics.start" crawlgate_config_generation)"

fact date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
fact duration "$DURATION"
fact warmup "$WARMUP"
fact reload_every "$RELOAD_EVERY"
fact connections "$CONNECTIONS"
fact bin_desc "$BIN_DESC"
fact load_before "$(cut -d' ' -f1 /proc/loadavg)"
fact fd_base "$FD_BASE"
fact rss_base_kb "$RSS_BASE"
log "crawlgate pid $CRAWLGATE_PID on 127.0.0.1:$PORT (admin $ADMIN_PORT), backend $BACKEND_PORT; idle: $FD_BASE fds, RSS $((RSS_BASE / 1024)) MiB"
log "load for ${DURATION}s (warm-up ${WARMUP}s), temp dir $TMP"

# ---------------------------------------------------------------------------------------------
# Load. Normal clients: wrk, keep-alive, cycling over wiki pages and assets.
cat >"$TMP/normal.lua" <<'EOF'
local paths = { "/wiki/Main_Page", "/wiki/Web_crawler", "/static/wiki.css", "/wiki/HTTP",
                "/wiki/Rate_limiting", "/static/wiki.js", "/wiki/Nginx", "/", "/wiki/IPv6",
                "/static/logo.svg", "/wiki/Throughput", "/favicon.ico" }
local reqs, i = {}, 0
init = function(args)
  for k, p in ipairs(paths) do reqs[k] = wrk.format("GET", p) end
end
request = function()
  i = i % #reqs + 1
  return reqs[i]
end
done = function(s, lat, req)
  local e = s.errors
  io.write(string.format("SOAK requests=%d duration_us=%d connect=%d read=%d write=%d timeout=%d status=%d p50=%d p99=%d\n",
    s.requests, s.duration, e.connect, e.read, e.write, e.timeout, e.status,
    lat:percentile(50), lat:percentile(99)))
end
EOF
timeout -k 5 $((DURATION + 30)) wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 10s \
    -H "User-Agent: $UA" -H "Accept-Language: en-US,en;q=0.5" \
    -H "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8" \
    -s "$TMP/normal.lua" "$URL/" >"$TMP/wrk.out" 2>&1 &
WRK_PID=$!

# Crawlers, stealth and slow clients.
timeout -k 5 $((DURATION + HEADER_READ + 30)) "$PYTHON" "$HELPER" load --port "$PORT" \
    --duration "$DURATION" --header-timeout "$HEADER_READ" --body-timeout "$BODY_READ" \
    --out "$TMP/clients.json" >"$TMP/clients.log" 2>&1 &
CLIENTS_PID=$!

# Reloads: every RELOAD_EVERY s, alternating SIGHUP and POST /-/reload; every fifth with a
# broken config file, put back right after. Each waits (at most 60 s) for crawlgate's reload
# counters to move and logs "INDEX HOW EXPECT GOT HTTP_CODE MS".
reload_counts() { # -> "success failure"
    curl -s --max-time 5 "$ADMIN/metrics" | awk '
        $1 == "crawlgate_config_reloads_total{result=\"success\"}" {s = $2}
        $1 == "crawlgate_config_reloads_total{result=\"failure\"}" {f = $2}
        END {printf "%d %d\n", s, f}'
}
reloader() {
    set +e
    local i j end max how expect src variant=A s0 f0 s f got http t0 t1
    end=$(($(date +%s) + DURATION - 1))
    max=$((DURATION / RELOAD_EVERY + 1))
    for ((i = 0; i < max; i++)); do
        sleep "$RELOAD_EVERY"
        (($(date +%s) < end)) || break
        if ((i % 2 == 0)); then how=hup; else how=post; fi
        if ((i % 5 == 4)); then
            expect=refused
            src="$TMP/broken-$(((i / 5) % 2)).yaml"
        else
            expect=ok
            if [[ "$variant" == A ]]; then variant=B; else variant=A; fi
            src="$TMP/good-$variant.yaml"
        fi
        cp "$src" "$CFG.new" && mv -f "$CFG.new" "$CFG"
        read -r s0 f0 < <(reload_counts)
        t0="${EPOCHREALTIME/./}"
        http=-
        if [[ "$how" == hup ]]; then
            kill -HUP "$CRAWLGATE_PID"
        else
            http="$(curl -s -o "$TMP/reload.answer" -w '%{http_code}' --max-time 60 -X POST "$ADMIN/-/reload")"
        fi
        got=timeout
        for ((j = 0; j < 600; j++)); do
            read -r s f < <(reload_counts)
            if ((f > f0)); then got=refused; break; fi
            if ((s > s0)); then got=ok; break; fi
            sleep 0.1
        done
        t1="${EPOCHREALTIME/./}"
        if [[ "$expect" == refused ]]; then cp "$TMP/good-$variant.yaml" "$CFG.new" && mv -f "$CFG.new" "$CFG"; fi
        echo "$i $how $expect $got ${http:--} $(((t1 - t0) / 1000))"
    done
}
reloader >"$TMP/reloads.log" 2>"$TMP/reloader.err" &
RELOADER_PID=$!

# Sampling, once a second: RSS and fds; RSS "after warm-up" is the first sample at or past WARMUP,
# "end" the last one before the load stops.
RSS_WARM=0 RSS_END=0 FD_PEAK=0 DIED=""
start="${EPOCHREALTIME/./}"
for ((tick = 1; tick <= DURATION; tick++)); do
    now="${EPOCHREALTIME/./}"
    wait_us=$((start + tick * 1000000 - now))
    ((wait_us > 0)) && sleep "$(printf '%d.%06d' $((wait_us / 1000000)) $((wait_us % 1000000)))"
    if ! alive "$CRAWLGATE_PID"; then
        DIED="at ${tick}s of load; last lines: $(tail -n 3 "$TMP/crawlgate.log" | tr '\n' ' ')"
        break
    fi
    r="$(rss_kb "$CRAWLGATE_PID")"
    n="$(fd_count "$CRAWLGATE_PID")"
    echo "$tick $r $n" >>"$TMP/samples"
    ((n > FD_PEAK)) && FD_PEAK=$n
    ((tick >= WARMUP && RSS_WARM == 0)) && RSS_WARM=$r
    ((tick < DURATION)) && RSS_END=$r
    if ((tick % 15 == 0)); then log "${tick}s: RSS $((r / 1024)) MiB, $n fds"; fi
done

# The load stops: wrk ends at DURATION, the slow clients within HEADER_READ + a few seconds.
WRK_RC=0 CLIENTS_RC=0
wait "$WRK_PID" || WRK_RC=$?
WRK_PID=""
wait "$CLIENTS_PID" || CLIENTS_RC=$?
CLIENTS_PID=""
wait "$RELOADER_PID" 2>/dev/null || true
RELOADER_PID=""
((WRK_RC == 0)) || { log "wrk exited $WRK_RC:"; tail -n 5 "$TMP/wrk.out" >&2; }
((CLIENTS_RC == 0)) || { log "client helper exited $CLIENTS_RC:"; tail -n 5 "$TMP/clients.log" >&2; }
[[ -s "$TMP/reloader.err" ]] && { log "reloader:"; head -n 5 "$TMP/reloader.err" >&2; }

# fds back to baseline within FD_SETTLE s (the upstream pool's idle connections expire after 2 s).
FD_SETTLED=0 FD_AFTER=-1
t0="${EPOCHREALTIME/./}"
if alive "$CRAWLGATE_PID"; then
    for ((i = 0; i <= FD_SETTLE * 4; i++)); do
        FD_AFTER="$(fd_count "$CRAWLGATE_PID")"
        if ((FD_AFTER <= FD_BASE)); then FD_SETTLED=1; break; fi
        sleep 0.25
    done
fi
t1="${EPOCHREALTIME/./}"
fact fd_settle_s "$(awk -v d=$((t1 - t0)) 'BEGIN{printf "%.1f", d / 1e6}')"
fact fd_settled "$FD_SETTLED"
fact fd_after "$FD_AFTER"
fact fd_peak "$FD_PEAK"
fact rss_warm_kb "$RSS_WARM"
fact rss_end_kb "$RSS_END"
fact rss_after_kb "$(rss_kb "$CRAWLGATE_PID")"
fact rss_hwm_kb "$(hwm_kb "$CRAWLGATE_PID")"
fact load_after "$(cut -d' ' -f1 /proc/loadavg)"

if [[ -z "$DIED" ]] && alive "$CRAWLGATE_PID"; then
    fact alive 1
    curl -s --max-time 5 "$ADMIN/metrics" >"$TMP/metrics.final" || true
    fact m_reload_success "$(m "$TMP/metrics.final" 'crawlgate_config_reloads_total{result="success"}')"
    fact m_reload_failure "$(m "$TMP/metrics.final" 'crawlgate_config_reloads_total{result="failure"}')"
    fact m_generation "$(m "$TMP/metrics.final" crawlgate_config_generation)"
    # Graceful stop: SIGTERM must drain and exit 0.
    kill -TERM "$CRAWLGATE_PID"
    rc=0
    for ((i = 0; i < 150; i++)); do alive "$CRAWLGATE_PID" || break; sleep 0.1; done
    if alive "$CRAWLGATE_PID"; then rc="timeout"; else wait "$CRAWLGATE_PID" || rc=$?; fi
    [[ "$rc" == timeout ]] || CRAWLGATE_PID=""
    fact exit_code "$rc"
else
    fact alive 0
    fact died "${DIED:-after the load}"
fi

# wrk's figures.
if line="$(grep -m1 '^SOAK ' "$TMP/wrk.out")"; then
    for kv in ${line#SOAK }; do
        k="${kv%%=*}" v="${kv#*=}"
        case "$k" in
        requests | duration_us) fact "normal_$k" "$v" ;;
        p50 | p99) fact "normal_${k}_us" "$v" ;;
        *) fact "normal_err_$k" "$v" ;;
        esac
    done
fi

rc=0
"$PYTHON" "$HELPER" report --facts "$FACTS" --clients "$TMP/clients.json" \
    --reloads "$TMP/reloads.log" ${JSON:+--json "$JSON"} || rc=$?
if ((rc != 0)) && [[ -s "$TMP/crawlgate.log" ]]; then
    log "crawlgate's last lines:"
    tail -n 5 "$TMP/crawlgate.log" | cut -c1-300 >&2
fi
exit "$rc"
