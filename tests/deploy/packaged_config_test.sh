#!/usr/bin/env bash
# deploy/config/crawlgate.yaml (installed as /etc/crawlgate/crawlgate.yaml) checks with the rule
# files and the model where the package puts them, here replaced by the repository's
# rules/default and classifier/models, in a directory laid out like /etc/crawlgate (with an
# empty conf.d/, then with a local rule in it).
#   packaged_config_test.sh SOURCE_DIR CRAWLGATE_BINARY
set -euo pipefail
SRC="${1:?source dir}"; BIN="${2:?binary}"
TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/etc/conf.d"
sed -e "s#/usr/share/crawlgate/rules#$SRC/rules/default#g" \
    -e "s#/usr/share/crawlgate/models#$SRC/classifier/models#g" \
    "$SRC/deploy/config/crawlgate.yaml" >"$TMP/etc/crawlgate.yaml"
grep -q '^behaviour:' "$TMP/etc/crawlgate.yaml"
grep -q '^include:' "$TMP/etc/crawlgate.yaml"
for want in 'listen: 127.0.0.1:8080' 'upstream: http://127.0.0.1:8081' 'admin: 127.0.0.1:9464' \
            '  path: /var/log/crawlgate/access.log'; do
  grep -qF "$want" "$SRC/deploy/config/crawlgate.yaml" || { echo "FAIL: packaged config lacks '$want'"; exit 1; }
done
"$BIN" check --config "$TMP/etc/crawlgate.yaml"

# A local rule in conf.d/ is loaded and decides before the default rules.
cat >"$TMP/etc/conf.d/local.yaml" <<'YAML'
rules:
  - name: local-allow-gptbot-on-about
    action: allow
    user_agent: [{token: GPTBot}]
    path: ['^/about$']
YAML
"$BIN" check --config "$TMP/etc/crawlgate.yaml"
out="$("$BIN" explain --config "$TMP/etc/crawlgate.yaml" --ua 'Mozilla/5.0 (compatible; GPTBot/1.2)' --path /about)"
grep -q 'decision: .*rule=local-allow-gptbot-on-about' <<<"$out" || { echo "FAIL: conf.d rule does not decide first:"; echo "$out"; exit 1; }
out="$("$BIN" explain --config "$TMP/etc/crawlgate.yaml" --ua 'Mozilla/5.0 (compatible; GPTBot/1.2)' --path /wiki/X)"
grep -q 'decision: class=ai_training' <<<"$out" || { echo "FAIL: GPTBot is not ai_training with the packaged config:"; echo "$out"; exit 1; }
echo "PASS: packaged config checks, conf.d rules come first"
