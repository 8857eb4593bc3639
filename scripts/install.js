#!/usr/bin/env node
// npm's install step: builds the native addon.
//   1. cmake-js from CMakeLists.txt (CPU always; CUDA when nvcc is found,
//      GPT_ENGINE_CUDA=AUTO|ON|OFF), offline with node-api-headers;
//   2. without CMake, node-gyp with binding.gyp (CPU only).
// A prebuilt addon named by GPT_ENGINE_ADDON skips the build.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const say = (m) => process.stderr.write(`gpt-engine install: ${m}\n`);

if (process.env.GPT_ENGINE_ADDON && fs.existsSync(process.env.GPT_ENGINE_ADDON)) {
  say(`using the prebuilt addon ${process.env.GPT_ENGINE_ADDON}`);
  process.exit(0);
}

function has(cmd, args) {
  const r = spawnSync(cmd, args, { stdio: 'ignore' });
  return r.status === 0;
}

function run(cmd, args) {
  say(`${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' });
  return r.status === 0;
}

const cmakeJs = path.join(path.dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js');
if (has('cmake', ['--version'])) {
  if (run(process.execPath, [cmakeJs, 'compile'])) process.exit(0);
  say('the CMake build failed (see above).');
} else {
  say('cmake was not found; trying node-gyp with binding.gyp (CPU only).');
}
const gyp = process.env.npm_config_node_gyp;
if (gyp && fs.existsSync(gyp) && run(process.execPath, [gyp, 'rebuild'])) process.exit(0);
say(
  'could not build the native addon. Install CMake >= 3.24 and a C++17 compiler (g++ >= 9 or clang >= 10), ' +
    'then run `npm rebuild gpt-engine`. Supported: Linux x64 (tested); macOS and Windows build from source.',
);
process.exit(1);
