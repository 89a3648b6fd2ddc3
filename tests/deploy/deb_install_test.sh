#!/usr/bin/env bash
# Builds the Debian package with CPack and installs it into a clean Debian 12 (bookworm) root made
# with debootstrap, resolving its dependencies from this machine's Debian mirror; then runs
# `crawlgate check` (embedded config) and `crawlgate check --config /etc/crawlgate/crawlgate.yaml`
# inside it, checks the installed layout and the conffiles, and removes/purges the package.
#
#   deb_install_test.sh BUILD_DIR
#
# Opt-in (it needs root, network and ~1.5 min the first time): runs only when
# CRAWLGATE_DEB_TEST=1, else exits 77 (ctest: skipped). The minbase root is cached as a tarball in
# BUILD_DIR/deploy-test/ (delete it to refresh); each run unpacks a fresh copy of it.
# CRAWLGATE_DEBIAN_MIRROR overrides the mirror read from /etc/apt/sources.list{,.d/*}.
set -euo pipefail

BUILD_DIR="$(cd "${1:?usage: deb_install_test.sh BUILD_DIR}" && pwd)"

if [[ "${CRAWLGATE_DEB_TEST:-0}" != 1 ]]; then
  echo "SKIP: set CRAWLGATE_DEB_TEST=1 to build the .deb and install it into a debootstrap root"
  exit 77
fi
fail() { echo "FAIL: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || fail "needs root (debootstrap, chroot)"
for tool in cpack debootstrap dpkg-deb dpkg-shlibdeps file; do
  command -v "$tool" >/dev/null || fail "$tool not found (apt-get install cmake debootstrap dpkg-dev file)"
done
[[ -f "$BUILD_DIR/CPackConfig.cmake" ]] || fail "$BUILD_DIR/CPackConfig.cmake missing: is cmake/packaging.cmake included?"

# --- the mirror this machine uses --------------------------------------------------------------
# deb822 .sources (URIs:/Suites:) or one-line sources.list entries; the first "deb" source with
# suite bookworm.
find_mirror() {
  /usr/bin/python3 - <<'PY'
import glob, re
def deb822(path):
    for stanza in re.split(r'\n\s*\n', open(path, encoding='utf-8', errors='replace').read()):
        fields = {}
        for line in stanza.splitlines():
            if line.startswith('#') or ':' not in line or line[0].isspace():
                continue
            key, value = line.split(':', 1)
            fields[key.strip().lower()] = value.split()
        if fields.get('enabled', ['yes'])[0].lower() == 'no':
            continue
        if 'deb' in fields.get('types', []) and 'bookworm' in fields.get('suites', []):
            for uri in fields.get('uris', []):
                if uri.startswith('http'):
                    yield uri
def oneline(path):
    for line in open(path, encoding='utf-8', errors='replace'):
        words = re.sub(r'\[[^\]]*\]', '', line.split('#', 1)[0]).split()
        if len(words) >= 3 and words[0] == 'deb' and words[2] == 'bookworm' and words[1].startswith('http'):
            yield words[1]
files = sorted(glob.glob('/etc/apt/sources.list.d/*.sources'))
lists = ['/etc/apt/sources.list'] + sorted(glob.glob('/etc/apt/sources.list.d/*.list'))
for path in files:
    for uri in deb822(path):
        print(uri); raise SystemExit(0)
for path in lists:
    try:
        for uri in oneline(path):
            print(uri); raise SystemExit(0)
    except FileNotFoundError:
        pass
raise SystemExit(1)
PY
}
MIRROR="${CRAWLGATE_DEBIAN_MIRROR:-$(find_mirror)}" || fail "no bookworm mirror in /etc/apt/sources.list{,.d/*}"
MIRROR="${MIRROR%/}"
echo "mirror: $MIRROR"

WORK="$BUILD_DIR/deploy-test"
CACHE="$WORK/bookworm-minbase.tar.gz"
mkdir -p "$WORK"
ROOT="$(mktemp -d "$WORK/root.XXXXXX")"
cleanup() {
  local m
  for m in "$ROOT/proc" "$ROOT/dev/pts"; do
    mountpoint -q "$m" && umount -l "$m"
  done
  rm -rf --one-file-system "$ROOT"
}
trap cleanup EXIT

# --- 1. the package ----------------------------------------------------------------------------
start=$SECONDS
rm -rf "$WORK/pkg"
(cd "$BUILD_DIR" && cpack -G DEB -B "$WORK/pkg" >"$WORK/cpack.log" 2>&1) \
  || { cat "$WORK/cpack.log"; fail "cpack -G DEB"; }
DEB="$(ls "$WORK"/pkg/crawlgate_*.deb 2>/dev/null | head -n1)"
[[ -n "$DEB" ]] || { cat "$WORK/cpack.log"; fail "cpack made no crawlgate_*.deb"; }
echo "package: $DEB ($((SECONDS - start)) s)"
dpkg-deb --info "$DEB"

depends="$(dpkg-deb --field "$DEB" Depends)"
[[ "$depends" == *libc6* ]] || fail "Depends lacks libc6 (shlibdeps off?): $depends"
[[ "$depends" == *libhyperscan* && "$depends" == *libyaml-cpp* ]] \
  || fail "Depends lacks libhyperscan/libyaml-cpp: $depends"
conffiles="$(dpkg-deb --ctrl-tarfile "$DEB" | tar -xO ./conffiles)"
for f in /etc/crawlgate/crawlgate.yaml /etc/logrotate.d/crawlgate; do
  grep -qx "$f" <<<"$conffiles" || fail "$f is not a conffile"
done
contents="$(dpkg-deb --contents "$DEB")"
for f in ./usr/bin/crawlgate ./etc/crawlgate/crawlgate.yaml ./etc/crawlgate/conf.d/ \
         ./lib/systemd/system/crawlgate.service ./etc/logrotate.d/crawlgate \
         ./usr/share/crawlgate/rules/classes.yaml ./usr/share/crawlgate/rules/ai-crawlers.yaml \
         ./usr/share/crawlgate/rules/known-bots.yaml \
         ./usr/share/doc/crawlgate/ai-robots-txt.LICENSE \
         ./usr/share/doc/crawlgate/crawler-user-agents.LICENSE ./usr/share/doc/crawlgate/copyright; do
  grep -q " $f\$" <<<"$contents" || fail "package lacks $f"
done
if grep -q ' \./usr/share/crawlgate/rules/crawlgate\.yaml$' <<<"$contents"; then
  fail "package ships the embedded default config as a rule file"
fi

# --- 2. a clean bookworm root (cached) ---------------------------------------------------------
start=$SECONDS
if [[ ! -s "$CACHE" ]]; then
  echo "debootstrap --variant=minbase bookworm (first run only; cached in $CACHE)"
  rm -rf "$ROOT" && mkdir -p "$ROOT"
  debootstrap --variant=minbase bookworm "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -n 30 "$WORK/debootstrap.log"; fail "debootstrap"; }
  tar -C "$ROOT" -czf "$CACHE.tmp" . && mv "$CACHE.tmp" "$CACHE"
  echo "debootstrap: $((SECONDS - start)) s"
else
  tar -C "$ROOT" -xzf "$CACHE"
  echo "root unpacked from cache: $((SECONDS - start)) s"
fi

# The same mirror for bookworm, bookworm-updates (the build machine's libraries may be newer than
# the point release); security updates from the machine's security source when it has one.
{
  echo "deb $MIRROR bookworm main"
  echo "deb $MIRROR bookworm-updates main"
} >"$ROOT/etc/apt/sources.list"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d" && chmod 755 "$ROOT/usr/sbin/policy-rc.d"
mount -t proc proc "$ROOT/proc"
# apt wants a pty for its log; best effort (a container may refuse a new devpts instance).
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$ROOT/dev/pts" 2>/dev/null || true
cp "$DEB" "$ROOT/tmp/"
in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
              DEBIAN_FRONTEND=noninteractive LC_ALL=C "$@"; }

# --- 3. install, check, remove -----------------------------------------------------------------
start=$SECONDS
in_root apt-get update -qq || fail "apt-get update in the root"
in_root apt-get install -y -q --no-install-recommends "/tmp/$(basename "$DEB")" \
  || fail "apt-get install of the package into a clean bookworm root"
echo "install: $((SECONDS - start)) s"

in_root dpkg-query -W -f='${Status} ${Version}\n' crawlgate
in_root crawlgate --version
in_root crawlgate check || fail "crawlgate check (embedded config) in the clean root"
in_root crawlgate check --config /etc/crawlgate/crawlgate.yaml \
  || fail "crawlgate check --config /etc/crawlgate/crawlgate.yaml in the clean root"
out="$(in_root crawlgate explain --config /etc/crawlgate/crawlgate.yaml \
        --ua 'Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)')" \
  || fail "crawlgate explain in the clean root"
echo "$out"
grep -q 'ai_training' <<<"$out" || fail "explain: GPTBot not classified ai_training with the installed rules"
registered="$(in_root dpkg-query -W -f='${Conffiles}\n' crawlgate)"
grep -q '/etc/crawlgate/crawlgate.yaml' <<<"$registered" || fail "dpkg does not know the conffiles"

# A local edit of the conffile survives remove; purge removes it.
echo "# local edit" >>"$ROOT/etc/crawlgate/crawlgate.yaml"
in_root apt-get remove -y -q crawlgate >/dev/null || fail "apt-get remove"
[[ ! -e "$ROOT/usr/bin/crawlgate" ]] || fail "remove left /usr/bin/crawlgate"
grep -q '# local edit' "$ROOT/etc/crawlgate/crawlgate.yaml" || fail "remove did not keep the edited conffile"
in_root apt-get purge -y -q crawlgate >/dev/null || fail "apt-get purge"
[[ ! -e "$ROOT/etc/crawlgate/crawlgate.yaml" ]] || fail "purge left /etc/crawlgate/crawlgate.yaml"
echo "PASS: $DEB installs into a clean bookworm root; check passes with the embedded and the installed config"
