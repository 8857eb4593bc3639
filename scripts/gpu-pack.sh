#!/usr/bin/env bash
# Packs what scripts/gpu-check.sh needs on a GPU machine that has no Node and
# no network into .device/ (git-ignored; carry it with the run):
#   .device/node.xz          this machine's node, xz -T2 -6 (about 23 MiB)
#   .device/pkg/             package.json, dist/, production node_modules that
#                            the check uses, and build/Release/gpt_engine.node
#                            built for sm_80/sm_90(+PTX) with libstdc++ linked
#                            statically (the GPU machine's may be older)
# Keeps .device under about 40 MiB. Usage: scripts/gpu-pack.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
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
for m in commander gpt-tokenizer node-addon-api node-api-headers; do
  [[ -d node_modules/$m ]] && cp -r "node_modules/$m" .device/pkg/node_modules/
done
du -sh .device .device/* .device/pkg/* | sed 's/^/gpu-pack: /'
