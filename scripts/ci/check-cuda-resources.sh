#!/usr/bin/env bash
# Static resource check of the CUDA kernels in the built addon: registers,
# local memory (spills), static + dynamic shared memory per kernel against
# what its launch may use (48 KiB without the opt-in; 163 KiB sm_80 / 227 KiB
# sm_90 with it), registers x threads per block <= 65536. Reads the cubins in
# the .node itself (no GPU, no cuobjdump needed); the launch table (threads,
# dynamic shared memory per kernel) lives in scripts/ci/cuda-resources.js.
#
#   scripts/ci/check-cuda-resources.sh [path/to/gpt_engine.node] [--json]
#
# Default: $GPT_ENGINE_ADDON, else build/Release/gpt_engine.node. Exit 0 when
# every kernel fits, 1 when one does not (each problem is named), 2 when the
# addon is missing or was built without CUDA.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
addon="${1:-${GPT_ENGINE_ADDON:-$root/build/Release/gpt_engine.node}}"
exec node "$root/scripts/ci/cuda-resources.js" "$addon" "${@:2}"
