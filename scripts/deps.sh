#!/usr/bin/env bash
# Installs the Debian 12 packages crawlgate needs to build, test and run its demo.
#   scripts/deps.sh            build + test + demo
#   scripts/deps.sh --bench    also the benchmark peers (haproxy, wrk, hey)
set -euo pipefail

packages=(
  g++ cmake make pkg-config
  libboost1.74-dev libhyperscan-dev libyaml-cpp-dev nlohmann-json3-dev libcli11-dev
  prometheus-cpp-dev libgtest-dev libgmock-dev libbenchmark-dev libpcre2-dev
  nginx curl python3 python3-yaml python3-numpy python3-sklearn
  systemd prometheus logrotate debootstrap dpkg-dev file
  libhiredis-dev redis-server
)
if [[ "${1:-}" == "--bench" ]]; then
  packages+=(haproxy wrk hey)
fi

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "deps: all ${#packages[@]} packages present"
  exit 0
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
echo "deps: installing ${missing[*]}"
"${sudo[@]}" apt-get update -qq
# Debian's nginx package may start a system nginx on port 80; the demo and the tests run their
# own nginx on other ports and never touch it.
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
  "${missing[@]}"
