#!/usr/bin/env node
// Quick timing of the fused CPU attention (the full table is
// `gpt-engine bench attention`). Batch 1, 12 heads, headDim 64, dense and
// banded (w = 256): forward and forward+backward ms, GFLOP/s counted as
// FlashAttention does (4*D per (query, key) pair in the triangle / band,
// backward 2.5x forward) and the fraction of the measured FMA peak.
//
//   node scripts/bench-attention-quick.js [--seq 1024,2048,4096] [--naive] [--reps 3]
// Uses $GPT_ENGINE_ADDON, else build/Release/gpt_engine.node.
'use strict';
const path = require('node:path');

const file = process.env.GPT_ENGINE_ADDON || path.join(__dirname, '..', 'build', 'Release', 'gpt_engine.node');
const addon = require(path.resolve(file));

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
}
const seqs = arg('seq', '1024,2048,4096').split(',').map(Number);
const reps = Number(arg('reps', '3'));
const withNaive = process.argv.includes('--naive');
const B = 1, H = 12, D = 64, W = 256;

function pairs(T, w) {
  // keys i - w < j <= i, exactly
  if (w >= T) return (T * (T + 1)) / 2;
  return (w * (w + 1)) / 2 + (T - w) * w;
}

function rand(n, seed) {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = (s / 4294967296) * 2 - 1;
  }
  return a;
}

async function time(fn) {
  let best = Infinity;
  for (let r = 0; r < reps; r++) {
    const t0 = process.hrtime.bigint();
    await fn();
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return best;
}

(async () => {
  const peak = (await addon.probeFmaPeak({ seconds: 0.3, repeats: 3 })).gflops;
  console.log(
    `isa ${addon.getIsa()}, threads ${addon.getThreads()}, FMA peak ${peak.toFixed(1)} GFLOP/s ` +
      `(timings are noisy while other work runs on the machine)`,
  );
  console.log('kernel  pattern     T   fwd ms  fwd GF/s  %peak  fwd+bwd ms  f+b GF/s  %peak  workspace KiB');
  for (const T of seqs) {
    const n = B * H * T * D;
    const q = rand(n, 1), k = rand(n, 2), v = rand(n, 3), dOut = rand(n, 4);
    for (const pattern of ['dense', 'banded']) {
      const shape = { batch: B, heads: H, seq: T, headDim: D, pattern, window: W };
      const fl = 4 * D * pairs(T, pattern === 'dense' ? T : W) * B * H;
      for (const naive of withNaive ? [false, true] : [false]) {
        const out = new Float32Array(n), lse = new Float32Array(B * H * T);
        const dq = new Float32Array(n), dk = new Float32Array(n), dv = new Float32Array(n);
        addon.attentionResetWorkspace();
        const fwd = await time(() => addon.attentionForward({ ...shape, q, k, v, out, lse, naive }));
        const bwd = await time(() =>
          addon.attentionBackward({ ...shape, q, k, v, out, lse, dOut, dq, dk, dv, naive }),
        );
        const fb = fwd + bwd;
        const gf = fl / fwd / 1e6, gfb = (3.5 * fl) / fb / 1e6;
        console.log(
          `${(naive ? 'naive' : 'fused').padEnd(7)} ${pattern.padEnd(7)} ${String(T).padStart(5)} ` +
            `${fwd.toFixed(1).padStart(8)} ${gf.toFixed(1).padStart(9)} ${((100 * gf) / peak).toFixed(1).padStart(6)} ` +
            `${fb.toFixed(1).padStart(11)} ${gfb.toFixed(1).padStart(9)} ${((100 * gfb) / peak).toFixed(1).padStart(6)} ` +
            `${naive ? '-' : (addon.attentionWorkspaceHighWater() / 1024).toFixed(0)}`,
        );
      }
    }
  }
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
