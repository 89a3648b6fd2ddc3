#!/usr/bin/env bash
# README command (b): install dependencies, build, and run the whole test suite with ctest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"

"$ROOT/scripts/deps.sh"
BUILD_DIR="$BUILD_DIR" "$ROOT/scripts/build.sh"
cd "$BUILD_DIR"
ctest --output-on-failure -j "${JOBS:-2}" --timeout 600
