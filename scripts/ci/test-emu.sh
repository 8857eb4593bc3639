#!/usr/bin/env bash
# The CUDA backend's kernels on the CPU under the SIMT emulator
# (tools/cuda-emu, docs/dev/CUDA-EMU.md): builds the emulated addon in its own
# folder (no nvcc needed), then runs everything CI runs on it, each with every
# cudaMalloc buffer ending at an inaccessible page (GPT_EMU_GUARD=1), so a
# kernel reading or writing past a buffer crashes the run instead of passing,
# and under the barrier schedule (GPT_EMU_SCHEDULE=barrier: each warp runs
# alone to its next __syncthreads(), so a missing barrier before a shared tile
# is written or read shows):
#   1. the emulator's self-test (gpt_emu_selftest) and the stand-in
#      libcublasLt's test against a plain loop (gpt_emu_cublaslt_test);
#   2. the cuda jest project (every op against the CPU backend, the decoding
#      ops, a few training steps), its GEMMs through the stand-in cuBLASLt;
#   3. the op table again with GPT_ENGINE_GEMM=own (the engine's own GEMM
#      kernels; docs/GPU.md "Which GEMM runs");
#   4. the GPU check's correctness part (gpu-check.sh --only correctness);
#   5. GPU ranks (test/distributed/gpu-ranks.test.ts: 2 and 3 ranks on the emulated
#      GPU, NCCL's calls done by a stand-in over MPI), where mpirun and the
#      MPI plugin exist (Open MPI installed when the addon was built).
#
#   npm run test:emu -- [--build-dir DIR] [--jest-json FILE] [--results DIR]
#
# --build-dir  the emulated build's folder (default build-emu; built
#              incrementally, kept);
# --jest-json  also write jest's JSON report of step 2 there;
# --results    the GPU check's results folder (default: a temporary one,
#              removed afterwards).
# dist/ is compiled first when it is missing or older than lib/ or bin/ (the
# GPU check and the jest project's GPU probe load it). Exit 0 when all passed.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
caller="${INIT_CWD:-$PWD}"  # through `npm run`, npm's folder; else this one
cd "$root"
build=build-emu jest_json="" results=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir) build="${2:?--build-dir needs a folder}"; shift 2 ;;
    --jest-json) jest_json="${2:?--jest-json needs a file}"; shift 2 ;;
    --results) results="${2:?--results needs a folder}"; shift 2 ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "test-emu: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
# Relative paths mean the folder the command was called from.
abs() { [[ "$1" == /* ]] && echo "$1" || echo "$caller/$1"; }
build="$(abs "$build")"
[[ -n "$jest_json" ]] && jest_json="$(abs "$jest_json")"
tmp="$(mktemp -d /tmp/gpt-engine-emu.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
if [[ -n "$results" ]]; then results="$(abs "$results")"; else results="$tmp/gpu-check"; fi
step() { echo "test-emu: $*" >&2; }
t0=$SECONDS

if [[ ! -f dist/lib/index.js || -n "$(find lib bin -name '*.ts' -newer dist/lib/index.js -print -quit)" ]]; then
  step "compiling dist/ (missing or older than lib/, bin/)"
  npm run --silent build || exit 1
fi

step "building the emulated addon in $build"
if ! GPT_ENGINE_CUDA_EMU=ON GPT_ENGINE_CUDA=OFF npx cmake-js compile -O "$build" >"$tmp/build.log" 2>&1; then
  tail -40 "$tmp/build.log" >&2
  step "the build failed"
  exit 1
fi
addon="$build/Release/gpt_engine.node"
step "built in $((SECONDS - t0)) s"

export GPT_EMU_GUARD=1 GPT_EMU_SCHEDULE=barrier GPT_ENGINE_ADDON="$addon"
fail=0
step "1/5 the emulator's self-test, the stand-in libcublasLt's test"
"$build/gpt_emu_selftest" || { step "FAILED: the self-test"; fail=1; }
"$build/gpt_emu_cublaslt_test" "$(dirname "$addon")/gpt_emu_cublaslt.so" || { step "FAILED: the stand-in libcublasLt's test"; fail=1; }

step "2/5 the cuda jest project"
report="${jest_json:-$tmp/jest.json}"
rm -f "$report"
npx jest --ci --selectProjects cuda --json --outputFile="$report" || { step "FAILED: the cuda jest project"; fail=1; }
# No cuda project (the probe did not see the emulated build) runs no test: a failure, not a pass.
node -e 'const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  if (!(r.numTotalTests > 0)) { console.error("test-emu: the cuda jest project ran no test"); process.exit(1); }' "$report" ||
  { step "FAILED: the cuda jest project ran no test"; fail=1; }

step "3/5 the op table through the own GEMM kernels (GPT_ENGINE_GEMM=own)"
own_report="$tmp/jest-own.json"
GPT_ENGINE_GEMM=own npx jest --ci --selectProjects cuda --testPathPatterns 'test/cuda/ops\.test' --json --outputFile="$own_report" ||
  { step "FAILED: the op table with GPT_ENGINE_GEMM=own"; fail=1; }
node -e 'const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  if (!(r.numPassedTests > 0)) { console.error("test-emu: the op table with GPT_ENGINE_GEMM=own ran no test"); process.exit(1); }' "$own_report" ||
  { step "FAILED: the op table with GPT_ENGINE_GEMM=own ran no test"; fail=1; }

step "4/5 the GPU check's correctness part"
if bash scripts/gpu-check/gpu-check.sh --only correctness "$results" >"$tmp/gpu-check.log" 2>&1; then
  tail -6 "$tmp/gpu-check.log"
else
  tail -40 "$tmp/gpu-check.log"
  step "FAILED: the GPU check's correctness part (log above)"
  fail=1
fi
step "5/5 GPU ranks (mpirun, NCCL stand-in)"
if command -v mpirun >/dev/null && command -v mpicc >/dev/null && [[ -f "$(dirname "$addon")/gpt_engine_mpi.so" ]]; then
  ranks_report="$tmp/gpu-ranks.json"
  GPT_ENGINE_TEST_GPU_RANKS=1 npx jest --ci --selectProjects dist --testPathPatterns 'test/distributed/gpu-ranks' --json --outputFile="$ranks_report" ||
    { step "FAILED: GPU ranks"; fail=1; }
  # Left out inside (no emulated addon seen) would pass with no test run: a failure here.
  node -e 'const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    if (!(r.numPassedTests > 0) || r.numPendingTests > 0) { console.error("test-emu: the GPU-rank tests did not run"); process.exit(1); }' "$ranks_report" ||
    { step "FAILED: the GPU-rank tests did not run"; fail=1; }
else
  step "left out: no mpirun/mpicc, or the addon was built without the MPI plugin (apt-get install openmpi-bin libopenmpi-dev)"
fi
step "done in $((SECONDS - t0)) s: $([[ $fail -eq 0 ]] && echo passed || echo FAILED)"
exit $fail
