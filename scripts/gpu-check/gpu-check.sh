#!/usr/bin/env bash
# The GPU check, in one go: correctness first, then benchmarks.
#
#   npm run gpu-check -- [--only correctness] [--dry-run] [RESULTS_DIR]
#   (or scripts/gpu-check/gpu-check.sh with the same options)
#
# Works on a GPU machine with no Node and no network: it uses
#   - node: `node` on PATH, else .device/node.xz (unpacked to /tmp);
#   - the package: .device/pkg (dist/, production node_modules, a prebuilt
#     addon; made here by scripts/gpu-check/gpu-pack.sh), else this checkout's dist/;
#   - the addon: $GPT_ENGINE_ADDON, else the prebuilt one; if it does not load
#     or has no CUDA backend, it is rebuilt here with cmake + ninja from
#     native/ (nvcc needed) and that build is used.
# --dry-run runs the whole script with the CPU backend standing in for the
# GPU (tiny benchmark shapes), so CI tests the script itself.
# Results: JSON files in RESULTS_DIR (default ./gpu-check-results), a short
# table printed last. Exit 0 when every check passed.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
only="" dry=0 results=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --only) only="${2:-}"; shift 2 ;;
    --only=*) only="${1#--only=}"; shift ;;
    --dry-run) dry=1; shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    -*) echo "gpu-check: unknown option $1" >&2; exit 2 ;;
    *) results="$1"; shift ;;
  esac
done
if [[ -n "$only" && "$only" != "correctness" ]]; then
  echo "gpu-check: --only takes 'correctness' but received '$only'" >&2
  exit 2
fi
results="${results:-$PWD/gpu-check-results}"
# Through `npm run gpu-check -- DIR` the working folder is the package root:
# a relative DIR means the folder npm was called from.
[[ "$results" != /* && -n "${INIT_CWD:-}" ]] && results="$INIT_CWD/$results"
mkdir -p "$results"
results="$(cd "$results" && pwd)"
say() { echo "gpu-check: $*" >&2; }
t_start=$(date +%s)

# ---- node -------------------------------------------------------------------
node_bin="$(command -v node || true)"
if [[ -z "$node_bin" ]]; then
  if [[ -f "$root/.device/node.xz" ]]; then
    mkdir -p /tmp/gpt-engine-node
    xz -dc "$root/.device/node.xz" > /tmp/gpt-engine-node/node && chmod +x /tmp/gpt-engine-node/node
    node_bin=/tmp/gpt-engine-node/node
  else
    say "no node on PATH and no .device/node.xz (make it with scripts/gpu-check/gpu-pack.sh)"
    exit 2
  fi
fi
say "node $("$node_bin" --version) at $node_bin"

# ---- package (compiled JS) -----------------------------------------------------
pkg="$root"
if [[ -f "$root/.device/pkg/dist/lib/native.js" ]]; then pkg="$root/.device/pkg"; fi
if [[ ! -f "$pkg/dist/lib/native.js" ]]; then
  if [[ -x "$root/node_modules/.bin/tsc" ]]; then
    say "dist/ missing: compiling the TypeScript"
    (cd "$root" && "$node_bin" node_modules/.bin/tsc -p .) || { say "tsc failed"; exit 2; }
  else
    say "no compiled dist/ (run npm run build, or scripts/gpu-check/gpu-pack.sh for a GPU machine)"
    exit 2
  fi
fi
say "package at $pkg"

# ---- addon -----------------------------------------------------------------------
# probe: 0 = usable for this run; 3 = loads but lacks backendOp or the CUDA backend; 1 = does not load
probe() {
  GPT_ENGINE_ADDON="$1" "$node_bin" -e '
    let a; try { a = require(process.env.GPT_ENGINE_ADDON); } catch (e) { console.error(String(e.message).split("\n")[0]); process.exit(1); }
    const i = a.cudaInfo();
    console.error(`addon: cuda compiled=${i.compiled} available=${i.available} ${i.available ? i.name : i.reason}`);
    if (typeof a.backendOp !== "function") { console.error("addon has no backendOp"); process.exit(3); }
    if (process.argv[1] !== "1" && !i.compiled) process.exit(3);
    process.exit(0);' "$dry"
}
addon=""
for cand in "${GPT_ENGINE_ADDON:-}" "$pkg/build/Release/gpt_engine.node" "$root/build/Release/gpt_engine.node"; do
  [[ -n "$cand" && -f "$cand" ]] || continue
  if probe "$cand"; then addon="$cand"; break; fi
  say "addon $cand is not usable here"
done
if [[ -z "$addon" ]]; then
  say "rebuilding the addon with cmake (no usable prebuilt one)"
  inc=""
  for m in "$pkg/node_modules" "$root/node_modules"; do
    if [[ -d "$m/node-addon-api" && -d "$m/node-api-headers/include" ]]; then
      inc="$m/node-addon-api;$m/node-api-headers/include"; break
    fi
  done
  [[ -n "$inc" ]] || { say "cannot rebuild: node-addon-api / node-api-headers not found in node_modules"; exit 2; }
  bdir=/tmp/gpt-engine-build
  cuda_mode=ON; [[ $dry -eq 1 ]] && cuda_mode=AUTO
  gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
  archs="${GPT_ENGINE_CUDA_ARCHS:-90-real}"
  if GPT_ENGINE_CUDA=$cuda_mode GPT_ENGINE_CUDA_ARCHS="$archs" cmake -S "$root" -B "$bdir" "${gen[@]}" \
       -DCMAKE_BUILD_TYPE=Release -DCMAKE_JS_INC="$inc" -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$bdir/Release" \
       > "$results/rebuild.log" 2>&1 &&
     cmake --build "$bdir" -j "$(nproc)" >> "$results/rebuild.log" 2>&1; then
    addon="$bdir/Release/gpt_engine.node"
    probe "$addon" || { say "the rebuilt addon is not usable either (see $results/rebuild.log)"; exit 2; }
  else
    tail -20 "$results/rebuild.log" >&2
    say "rebuild failed (full log: $results/rebuild.log)"
    exit 2
  fi
fi
export GPT_ENGINE_ADDON="$addon"
say "addon $addon ($(( $(date +%s) - t_start )) s so far)"
if command -v nm >/dev/null && [[ $dry -eq 0 ]]; then
  "$root/scripts/ci/check-cuda-kernels.sh" "$addon" >&2 || say "WARNING: kernel check failed"
fi

# ---- run -------------------------------------------------------------------------
device=cuda; [[ $dry -eq 1 ]] && device=cpu
extra=(); [[ -n "$only" ]] && extra+=(--only "$only"); [[ $dry -eq 1 ]] && extra+=(--dry-run)
"$node_bin" "$root/scripts/gpu-check/main.js" --device "$device" --results "$results" --pkg "$pkg" "${extra[@]}"
rc=$?
say "done in $(( $(date +%s) - t_start )) s"
exit $rc
