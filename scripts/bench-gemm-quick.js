#!/usr/bin/env node
// Quick GEMM timing: GFLOP/s of the CPU GEMM on GPT-2 small's linear layers at
// M = 1024 rows (B4 x T256), in the three forms a linear layer needs, fp32
// and bf16, against the FMA peak the addon measures. A developer tool; the
// user-facing table is `gpt-engine bench gemm`.
//
//   node scripts/bench-gemm-quick.js [--threads N] [--isa avx512|avx2|portable]
//        [--precision fp32|bf16] [--shape 768x2304|qkv] [--form fwd|dinp|dw] [--seconds S]
//        [--peak-core GFLOPS] [--json]
//
// The addon comes from $GPT_ENGINE_ADDON or build/Release. Wall-clock figures
// are only meaningful on an otherwise idle machine (not while something
// compiles); the GFLOP per CPU-second columns hold up better under load
// (the per-core peak is the probe's pool peak divided by the threads, which
// assumes the probe itself ran undisturbed).
'use strict';
const path = require('node:path');

const addonPath = process.env.GPT_ENGINE_ADDON || path.join(__dirname, '..', 'build', 'Release', 'gpt_engine.node');
const addon = require(path.resolve(addonPath));

const args = process.argv.slice(2);
function opt(name, dflt) {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
}
const threads = Number(opt('threads', addon.getThreads()));
const isa = opt('isa', addon.getIsa());
const precisions = opt('precision', 'fp32,bf16').split(',');
const onlyShape = opt('shape', '');
const forms = opt('form', 'fwd,dinp,dw').split(',');
const seconds = Number(opt('seconds', '0.4'));
// Per-core fp32 peak for the CPU-second columns (default: the probe / threads).
const peakCoreArg = opt('peak-core', '');
addon.setThreads(threads);
addon.setIsa(isa);

const M = 1024; // B4 x T256
// Conv1D layers: w [K, N] (in, out). The head is tied: wte [Vp, C].
const SHAPES = [
  { name: 'qkv', K: 768, N: 2304 },
  { name: 'attn.proj', K: 768, N: 768 },
  { name: 'fc', K: 768, N: 3072 },
  { name: 'mlp.proj', K: 3072, N: 768 },
  { name: 'head', K: 768, N: 50304, head: true },
];

function rand(n) {
  const a = new Float32Array(n);
  let s = 12345;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    a[i] = (s / 4294967296 - 0.5) * 0.1;
  }
  return a;
}

// The gemm call of each form, as the model makes it.
function call(shape, form) {
  const { K, N } = shape;
  if (!shape.head) {
    if (form === 'fwd') return { M, N, K, transA: false, transB: false, a: [M, K], b: [K, N], c: [M, N], bias: true };
    if (form === 'dinp') return { M, N: K, K: N, transA: false, transB: true, a: [M, N], b: [K, N], c: [M, K] };
    return { M: K, N, K: M, transA: true, transB: false, a: [M, K], b: [M, N], c: [K, N], accumulate: true };
  }
  // head: x [M, C], wte [Vp, C], logits [M, Vp]; K = C, N = Vp
  if (form === 'fwd') return { M, N, K, transA: false, transB: true, a: [M, K], b: [N, K], c: [M, N] };
  if (form === 'dinp') return { M, N: K, K: N, transA: false, transB: false, a: [M, N], b: [N, K], c: [M, K] };
  return { M: N, N: K, K: M, transA: true, transB: false, a: [M, N], b: [M, K], c: [N, K], accumulate: true };
}

// Best wall time per call, and the process CPU time per call of that repeat
// (all pool threads together: on a busy machine, GFLOP per CPU-second still
// says how well the kernel runs when it does run).
async function time(opts) {
  await addon.gemm(opts); // warm-up (scratch, page faults)
  let best = Infinity;
  let cpu = Infinity;
  for (let rep = 0; rep < 3; rep++) {
    let n = 0;
    const t0 = process.hrtime.bigint();
    const c0 = process.cpuUsage();
    let t = 0;
    do {
      await addon.gemm(opts);
      n++;
      t = Number(process.hrtime.bigint() - t0) / 1e9;
    } while (t < seconds / 3);
    const c = process.cpuUsage(c0);
    if (t / n < best) {
      best = t / n;
      cpu = (c.user + c.system) / 1e6 / n;
    }
  }
  return { wall: best, cpu };
}

(async () => {
  const peak = await addon.probeFmaPeak({ seconds: 0.3 });
  const peakBf16 = await addon.probeFmaPeak({ bf16: true, seconds: 0.3 });
  console.log(
    `isa ${isa}, ${threads} threads, fp32 FMA peak ${peak.gflops.toFixed(1)} GFLOP/s` +
      (peakBf16.supported ? `, bf16 dot-product probe ${peakBf16.gflops.toFixed(1)} GFLOP/s` : ''),
  );
  console.log('(timings are noisy while other work runs on the machine)');
  const perCore = peakCoreArg ? Number(peakCoreArg) : peak.gflops / threads;
  console.log(
    'shape       K x N        form  prec   ms       GFLOP/s  % fp32 peak   GFLOP/cpu-s  % of one core',
  );
  const rows = [];
  for (const shape of SHAPES) {
    if (onlyShape && onlyShape !== `${shape.K}x${shape.N}` && onlyShape !== shape.name) continue;
    for (const form of forms)
      for (const precision of precisions) {
        const c = call(shape, form);
        const a = rand(c.a[0] * c.a[1]);
        const b = rand(c.b[0] * c.b[1]);
        const out = new Float32Array(c.c[0] * c.c[1]);
        const opts = {
          a, b, c: out, M: c.M, N: c.N, K: c.K, transA: c.transA, transB: c.transB,
          accumulate: !!c.accumulate, precision,
        };
        if (c.bias) opts.bias = rand(c.N);
        const { wall: s, cpu } = await time(opts);
        const flop = 2 * c.M * c.N * c.K;
        const gflops = flop / s / 1e9;
        const pct = (100 * gflops) / peak.gflops;
        const cpuGflops = flop / cpu / 1e9;
        const cpuPct = (100 * cpuGflops) / perCore;
        rows.push({ shape: shape.name, K: shape.K, N: shape.N, form, precision, ms: s * 1e3, gflops, pct, cpuGflops, cpuPct });
        console.log(
          `${shape.name.padEnd(11)} ${`${shape.K}x${shape.N}`.padEnd(12)} ${form.padEnd(5)} ${precision.padEnd(6)} ` +
            `${(s * 1e3).toFixed(2).padStart(7)}  ${gflops.toFixed(1).padStart(7)}  ${pct.toFixed(1).padStart(6)}%` +
            `   ${cpuGflops.toFixed(1).padStart(9)}  ${cpuPct.toFixed(1).padStart(10)}%`,
        );
      }
  }
  if (args.includes('--json')) console.log(JSON.stringify({ isa, threads, peak: peak.gflops, rows }));
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
