#!/usr/bin/env node
// Peak memory of one training step on the CPU, per batch size: for each
// batch B given, a fresh child process creates <preset>, runs one
// forwardBackward on B x <seq> tokens and one step, and reports its max RSS
// (process.resourceUsage().maxRSS). Each B runs <runs> times; the medians
// and their differences to the first B are printed.
//
//   node scripts/dev/train-rss.js [seq=256] [preset=gpt2] [batches=1,8] [runs=3]
//
// GPT_ENGINE_ADDON picks the addon build to measure (lib/native.ts).
'use strict';
const { execFileSync } = require('node:child_process');
const path = require('node:path');

if (process.argv[2] === '--child') {
  const { GPT } = require(path.join(__dirname, '..', '..', 'dist', 'lib', 'model.js'));
  const [B, T, preset] = [Number(process.argv[3]), Number(process.argv[4]), process.argv[5]];
  (async () => {
    const model = await GPT.create(preset, { device: 'cpu', seed: 1 });
    const V = model.config.vocab_size;
    const tokens = Int32Array.from({ length: B * T }, (_, i) => (i * 7919) % V);
    const targets = Int32Array.from({ length: B * T }, (_, i) => (i * 104729 + 1) % V);
    const loss = await model.forwardBackward(tokens, targets, { batch: B, seq: T });
    await model.step({ lr: 1e-4 });
    const maxRssMiB = process.resourceUsage().maxRSS / 1024; // KiB on Linux
    process.stdout.write(JSON.stringify({ B, T, loss, maxRssMiB, activations: model.memory().activations }) + '\n');
    await model.dispose();
  })().catch((e) => {
    process.stderr.write(String(e && e.stack) + '\n');
    process.exit(1);
  });
} else {
  const T = Number(process.argv[2] || 256);
  const preset = process.argv[3] || 'gpt2';
  const batches = (process.argv[4] || '1,8').split(',').map(Number);
  const runs = Number(process.argv[5] || 3);
  for (const b of batches)
    if (!Number.isInteger(b) || b < 1) throw new Error(`Expected positive integer batches but received '${process.argv[4]}'`);
  const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
  const rows = [];
  for (const B of batches) {
    const rss = [];
    let act = 0;
    for (let i = 0; i < runs; ++i) {
      const out = execFileSync(process.execPath, [__filename, '--child', String(B), String(T), preset], { encoding: 'utf8' });
      const o = JSON.parse(out.trim().split('\n').pop());
      rss.push(o.maxRssMiB);
      act = o.activations;
    }
    rows.push({ B, rss, med: median(rss), act });
    console.log(`B ${B} x T ${T} ${preset}: max RSS ${rss.map((x) => x.toFixed(0)).join(', ')} MiB (median ${median(rss).toFixed(0)}); activations reported ${(act / 2 ** 20).toFixed(0)} MiB`);
  }
  for (const r of rows.slice(1))
    console.log(`median max RSS at B ${r.B} minus at B ${rows[0].B}: ${(r.med - rows[0].med).toFixed(0)} MiB = ${((r.med - rows[0].med) * 1.048576).toFixed(0)} MB`);
}
