#!/usr/bin/env node
// Prints {"ok": bool, "reason": string} : whether this machine can run the
// CUDA test project. Used by jest.config.js in a child process, so a broken
// addon cannot take jest down with it.
'use strict';
const path = require('node:path');
let result;
try {
  const { loadAddon } = require(path.join(__dirname, '..', 'dist', 'lib', 'native.js'));
  const info = loadAddon().cudaInfo();
  result = info.available ? { ok: true, reason: info.name } : { ok: false, reason: info.reason };
} catch (e) {
  result = { ok: false, reason: `the addon did not load (${String(e.message).split('\n')[0]})` };
}
process.stdout.write(JSON.stringify(result));
