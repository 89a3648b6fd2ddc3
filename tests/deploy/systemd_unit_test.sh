#!/usr/bin/env bash
# deploy/systemd/crawlgate.service: `systemd-analyze verify` (with /usr/bin/crawlgate replaced by
# the built binary, which verify requires to exist) and the hardening score of
# `systemd-analyze security --offline=yes`, which must be at most MAX_EXPOSURE (2.0).
#   systemd_unit_test.sh UNIT CRAWLGATE_BINARY [MAX_EXPOSURE]
set -euo pipefail
UNIT="${1:?unit}"; BINARY="${2:?binary}"; MAX="${3:-2.0}"
command -v systemd-analyze >/dev/null || { echo "FAIL: systemd-analyze not found (apt-get install systemd)"; exit 1; }
[[ -x "$BINARY" ]] || { echo "FAIL: $BINARY is not an executable"; exit 1; }

TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
# The same file name, so the unit name in messages is crawlgate.service.
sed "s#/usr/bin/crawlgate#${BINARY}#g" "$UNIT" >"$TMP/crawlgate.service"
grep -q "^ExecStart=${BINARY} run --config /etc/crawlgate/crawlgate.yaml\$" "$TMP/crawlgate.service" \
  || { echo "FAIL: ExecStart is not '/usr/bin/crawlgate run --config /etc/crawlgate/crawlgate.yaml'"; exit 1; }

# verify prints problems (unknown keys, bad values, missing binaries) on stderr and fails on
# some of them only: treat any output as a failure.
out="$(cd "$TMP" && systemd-analyze verify "$TMP/crawlgate.service" 2>&1)" && rc=0 || rc=$?
if [[ $rc -ne 0 || -n "$out" ]]; then
  echo "FAIL: systemd-analyze verify (rc=$rc):"; echo "$out"; exit 1
fi
echo "systemd-analyze verify: clean"

report="$(systemd-analyze security --offline=yes --no-pager "$TMP/crawlgate.service" 2>&1)" || true
score="$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$report" | head -n1)"
if [[ -z "$score" ]]; then
  echo "FAIL: no 'Overall exposure level' in systemd-analyze security output:"; echo "$report"; exit 1
fi
echo "$report" | grep -v '^✓' || true
if ! awk -v s="$score" -v m="$MAX" 'BEGIN { exit !(s + 0 <= m + 0) }'; then
  echo "FAIL: exposure $score > $MAX"; exit 1
fi
for key in DynamicUser=yes ProtectSystem=strict NoNewPrivileges=yes MemoryDenyWriteExecute=yes \
           'CapabilityBoundingSet=' 'SystemCallFilter=@system-service' 'LogsDirectory=crawlgate' \
           'ConfigurationDirectory=crawlgate' 'ExecReload=/bin/kill -HUP $MAINPID'; do
  grep -qxF "$key" "$UNIT" || { echo "FAIL: $UNIT lacks '$key'"; exit 1; }
done
echo "PASS: exposure $score <= $MAX"
