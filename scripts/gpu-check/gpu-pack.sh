#!/usr/bin/env bash
# Packs what the GPU check (scripts/gpu-check/gpu-check.sh) needs on a GPU
# machine that has no Node and no network into .device/ (git-ignored; carry it
# with the run):
#   .device/node.xz          this machine's node, xz -T2 -6 (about 23 MiB)
#   .device/pkg/             package.json, dist/, production node_modules that
#                            the check uses, and build/Release/gpt_engine.node
#                            built for sm_80/sm_90(+PTX) with libstdc++ linked
#                            statically (the GPU machine's may be older)
# gpt-tokenizer ships every OpenAI encoding (about 27 MB); only the files that
# loading what dist/ requires from it pulls in are copied (about 0.6 MB).
#
# The rest of what the check runs comes with the working tree, not .device:
# scripts/gpu-check/ (the script, main.js), test/ops/ (the op tables and their
# runner) and bench/pytorch/ (the PyTorch twin); the script fails when one of
# them would not travel (ignored by git, or missing).
#
# Limits (docs/GPU.md "Packing"), checked at the end; over either one the
# script fails, naming the sizes:
#   - dist/ + production node_modules in .device/pkg <= 30 MiB;
#   - what a run carries: the working tree git would send (tracked and
#     untracked-not-ignored files) + .device <= 64 MiB.
# Usage: scripts/gpu-check/gpu-pack.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
mkdir -p .device/pkg/build/Release
if [[ ! -f .device/node.xz || "$(command -v node)" -nt .device/node.xz ]]; then
  xz -T2 -6 -c "$(command -v node)" > .device/node.xz
fi
npx tsc -p .
GPT_ENGINE_STATIC_RUNTIME=1 npx cmake-js compile -O build-gpu-pack
cp build-gpu-pack/Release/gpt_engine.node .device/pkg/build/Release/
rm -rf .device/pkg/dist .device/pkg/node_modules
cp -r dist .device/pkg/dist
cp package.json .device/pkg/
mkdir -p .device/pkg/node_modules
# node-addon-api and node-api-headers serve the rebuild-there fallback.
for m in commander node-addon-api node-api-headers; do
  [[ -d node_modules/$m ]] && cp -r "node_modules/$m" .device/pkg/node_modules/
done
# gpt-tokenizer: package.json plus every file that requiring dist/'s
# specifiers loads (read from require.cache), nothing else.
specs="$(grep -rhoE "require\(['\"]gpt-tokenizer[^'\"]*['\"]\)" dist | sed -E "s/require\(['\"]([^'\"]+)['\"]\)/\1/" | sort -u)"
[[ -n "$specs" ]] || { echo "gpu-pack: dist/ requires nothing from gpt-tokenizer? (grep found no require)" >&2; exit 1; }
tok_src="$(cd node_modules/gpt-tokenizer && pwd -P)"
node -e '
  const specs = process.argv.slice(2);
  for (const s of specs) require(s);
  const path = require("node:path");
  const dir = require("node:fs").realpathSync(path.dirname(require.resolve("gpt-tokenizer/package.json"))) + path.sep;
  for (const f of Object.keys(require.cache)) if (f.startsWith(dir)) console.log(f.slice(dir.length));
' $specs > .device/tokenizer-files.txt
mkdir -p .device/pkg/node_modules/gpt-tokenizer
cp "$tok_src/package.json" .device/pkg/node_modules/gpt-tokenizer/
[[ -f "$tok_src/LICENSE" ]] && cp "$tok_src/LICENSE" .device/pkg/node_modules/gpt-tokenizer/
(cd "$tok_src" && xargs -a "$root/.device/tokenizer-files.txt" cp --parents -t "$root/.device/pkg/node_modules/gpt-tokenizer/")
rm .device/tokenizer-files.txt
# The pruned copy must still tokenize (run from inside .device/pkg so its own
# node_modules resolve).
(cd .device/pkg && node -e '
  const t = require("./dist/lib/tokenizer.js");
  const ids = t.encode("Call me Ishmael.");
  if (t.decode(ids) !== "Call me Ishmael." || ids.length < 3) { console.error("gpu-pack: the pruned gpt-tokenizer does not round-trip"); process.exit(1); }
') || exit 1

# What the check runs from the working tree must travel with it.
sent="$(git ls-files -c -o --exclude-standard)"
for f in scripts/gpu-check/gpu-check.sh scripts/gpu-check/main.js scripts/ci/check-cuda-kernels.sh \
         test/ops/op-table.js test/ops/decode-op-table.js test/ops/run-checks.js \
         bench/pytorch/gpu_check.py bench/pytorch/common.py bench/pytorch/gpt.py; do
  grep -qxF "$f" <<<"$sent" || { echo "gpu-pack: FAILED: $f is missing or ignored by git, so a run would not carry it" >&2; exit 1; }
done

mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
bytes_of() { du -sb "$@" | awk '{ s += $1 } END { print s + 0 }'; }
node_b=$(bytes_of .device/node.xz)
addon_b=$(bytes_of .device/pkg/build)
js_b=$(bytes_of .device/pkg/dist .device/pkg/node_modules .device/pkg/package.json)
device_b=$(bytes_of .device)
tree_b=$(git ls-files -z -c -o --exclude-standard | xargs -0 -r du -cb 2>/dev/null | awk '$2 == "total" { s += $1 } END { print s + 0 }')
carry_b=$((tree_b + device_b))
echo "gpu-pack: node.xz $(mib "$node_b"), addon $(mib "$addon_b"), dist + production node_modules $(mib "$js_b"), .device $(mib "$device_b")"
echo "gpu-pack: working tree sent with a run $(mib "$tree_b"); with .device carried $(mib "$carry_b")"
js_limit=${GPU_PACK_JS_LIMIT_MIB:-30} carry_limit=${GPU_PACK_CARRY_LIMIT_MIB:-64}  # overridable to test the failure
fail=0
if (( js_b > js_limit * 1048576 )); then
  echo "gpu-pack: FAILED: dist/ + production node_modules is $(mib "$js_b"), over the ${js_limit} MiB budget: prune what dist/ does not load" >&2
  fail=1
fi
if (( carry_b > carry_limit * 1048576 )); then
  echo "gpu-pack: FAILED: a device run would carry $(mib "$carry_b") (working tree $(mib "$tree_b") + .device $(mib "$device_b")), over the ${carry_limit} MiB limit" >&2
  fail=1
fi
exit $fail
