#!/usr/bin/env node
// Quick timing of the fused CPU attention (the full table is
// `gpt-engine bench attention`). Batch 1, 12 heads, headDim 64, dense and
// banded (w = 256): forward and forward+backward ms, GFLOP/s counted as
// FlashAttention does (4*D per (query, key) pair in the triangle / band,
// backward 2.5x forward) and the fraction of the measured FMA peak.
//
//   node scripts/bench-attention-quick.js [--seq 1024,2048,4096] [--naive] [--reps 3] [--core-peak 117]
// Uses $GPT_ENGINE_ADDON, else build/Release/gpt_engine.node.
//
// On a shared machine wall-clock figures mostly measure the neighbours, so
// the "cpu" columns also divide the FLOPs by the CPU time the process used
// (the pool blocks, it never spins) and compare with one core's FMA peak
// (--core-peak, GFLOP/s; default: the measured pool peak / threads).
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

// Best wall ms and best CPU ms over the repeats.
async function time(fn) {
  let best = Infinity;
  let bestCpu = Infinity;
  for (let r = 0; r < reps; r++) {
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    await fn();
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e6);
    const c = process.cpuUsage(c0);
    bestCpu = Math.min(bestCpu, (c.user + c.system) / 1e3);
  }
  return [best, bestCpu];
}

(async () => {
  const peak = (await addon.probeFmaPeak({ seconds: 0.3, repeats: 3 })).gflops;
  const threads = addon.getThreads();
  const corePeak = Number(arg('core-peak', String(peak / threads)));
  console.log(
    `isa ${addon.getIsa()}, threads ${threads}, FMA peak ${peak.toFixed(1)} GFLOP/s measured now, ` +
      `${corePeak.toFixed(1)} per core for the cpu columns (timings are noisy while other work runs)`,
  );
  console.log(
    'kernel  pattern     T   fwd ms  fwd GF/s  %peak  fwd+bwd ms  f+b GF/s  %peak | cpu: fwd %core  f+b %core | workspace KiB',
  );
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
        const [fwd, fwdCpu] = await time(() => addon.attentionForward({ ...shape, q, k, v, out, lse, naive }));
        const [bwd, bwdCpu] = await time(() =>
          addon.attentionBackward({ ...shape, q, k, v, out, lse, dOut, dq, dk, dv, naive }),
        );
        const fb = fwd + bwd;
        const gf = fl / fwd / 1e6, gfb = (3.5 * fl) / fb / 1e6;
        const cf = (100 * fl) / fwdCpu / 1e6 / corePeak;
        const cfb = (100 * 3.5 * fl) / (fwdCpu + bwdCpu) / 1e6 / corePeak;
        console.log(
          `${(naive ? 'naive' : 'fused').padEnd(7)} ${pattern.padEnd(7)} ${String(T).padStart(5)} ` +
            `${fwd.toFixed(1).padStart(8)} ${gf.toFixed(1).padStart(9)} ${((100 * gf) / peak).toFixed(1).padStart(6)} ` +
            `${fb.toFixed(1).padStart(11)} ${gfb.toFixed(1).padStart(9)} ${((100 * gfb) / peak).toFixed(1).padStart(6)} | ` +
            `${cf.toFixed(1).padStart(14)} ${cfb.toFixed(1).padStart(10)} | ` +
            `${naive ? '-' : (addon.attentionWorkspaceHighWater() / 1024).toFixed(0)}`,
        );
      }
    }
  }
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
