#!/usr/bin/env bash
# Builds test/sanitize (the native core with ASan + UBSan + LSan, no Node) and
# runs it with halt_on_error: attention, GEMM, the model's step, tensor copies,
# bad input, KV-cache decoding, and 100 create/destroy cycles with a heap check.
# Usage: scripts/ci/sanitize.sh [BUILD_DIR]. Prints the build and run times.
# (About 35 s to build and 2 s to run on 2 idle cores; see docs/RELIABILITY.md.)
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build-sanitize}
t0=$SECONDS
cmake -S test/sanitize -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build "$BUILD" -j 2
t1=$SECONDS
export ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export LSAN_OPTIONS=exitcode=23
"$BUILD/sanitize_native"
echo "sanitize: build $((t1 - t0)) s, run $((SECONDS - t1)) s"
