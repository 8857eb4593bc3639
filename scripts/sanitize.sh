#!/usr/bin/env bash
# Builds test/sanitize (the native core with ASan + UBSan + LSan, no Node) and
# runs it with halt_on_error. Usage: scripts/sanitize.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-sanitize}
cmake -S test/sanitize -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build "$BUILD" -j 2
export ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export LSAN_OPTIONS=exitcode=23
"$BUILD/sanitize_native"
