#!/usr/bin/env node
// Prints {"ok": bool, "reason": string, "emulated"?: bool} : whether this
// machine (or this build's SIMT emulator) can run the CUDA test project.
// Used by jest.config.js in a child process, so a broken addon cannot take
// jest down with it.
'use strict';
const path = require('node:path');
let result;
try {
  const { loadAddon } = require(path.join(__dirname, '..', '..', 'dist', 'lib', 'native.js'));
  const info = loadAddon().cudaInfo();
  // An emulated build (GPT_ENGINE_CUDA_EMU=ON) counts: its "GPU" is the SIMT
  // emulator running the same CUDA sources on the CPU.
  result = info.available
    ? { ok: true, reason: info.emulated ? `${info.name}: the CUDA kernels run emulated on the CPU` : info.name,
        emulated: !!info.emulated }
    : { ok: false, reason: info.reason };
} catch (e) {
  result = { ok: false, reason: `the addon did not load (${String(e.message).split('\n')[0]})` };
}
process.stdout.write(JSON.stringify(result));
