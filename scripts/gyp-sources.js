#!/usr/bin/env node
// Lists native sources for binding.gyp (gyp has no globbing):
//   node scripts/gyp-sources.js main      addon, core (CPU build: no CUDA) and the cpu files without an ISA suffix
//   node scripts/gyp-sources.js avx512    native/cpu/*_avx512.cc (likewise avx2, portable)
// Paths are relative to the package root, where binding.gyp lives.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const list = (dir) =>
  fs
    .readdirSync(path.join(root, dir))
    .filter((f) => f.endsWith('.cc'))
    .sort()
    .map((f) => `${dir}/${f}`);
const isaOf = (f) => (f.match(/_(avx512|avx2|portable)\.cc$/) || [])[1];
const group = process.argv[2];
let out;
if (group === 'main') {
  out = [...list('native/addon'), ...list('native/core'), ...list('native/cpu').filter((f) => !isaOf(f))];
} else {
  out = list('native/cpu').filter((f) => isaOf(f) === group);
}
process.stdout.write(out.join(' ') + '\n');
