#!/usr/bin/env bash
# README command (a): install dependencies, build, start the demo wiki (nginx on 127.0.0.1:8081)
# and crawlgate in front of it on 127.0.0.1:8080 with the embedded default config.
# Ctrl-C stops both.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEMO_DIR="${DEMO_DIR:-$ROOT/build/demo}"

"$ROOT/scripts/deps.sh"
"$ROOT/scripts/build.sh"

"$ROOT/scripts/demo-backend.sh" start "$DEMO_DIR" 8081
trap '"$ROOT/scripts/demo-backend.sh" stop "$DEMO_DIR" >/dev/null 2>&1 || true' EXIT
echo
echo "demo: crawlgate on http://127.0.0.1:8080/ in front of the demo wiki on 127.0.0.1:8081"
echo "demo: try  curl http://127.0.0.1:8080/   and   curl -A GPTBot/1.2 http://127.0.0.1:8080/"
echo "demo: metrics and health on http://127.0.0.1:9464/ ; Ctrl-C to stop"
echo
"$ROOT/build/app/crawlgate" run
