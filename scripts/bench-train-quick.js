#!/usr/bin/env node
// Quick training-step benchmark straight on the addon (no TypeScript build):
// ms per step split into forward / backward / optimizer, and tokens/s, for
// the cases. `gpt-engine bench train` is the full benchmark.
//
//   node scripts/bench-train-quick.js [--case a|b|c|all] [--precision fp32|bf16|both] [--steps N] [--threads N]
//
// Cases: (a) L6/H6/d384 B8 T256, (b) GPT-2 small B4 T256, (c) GPT-2 small B4 T64;
// vocabulary 50257 (padded to 50304 inside the core), AdamW with weight decay
// 0.1 and clipping at 1.0, random tokens. On a busy machine the CPU-time
// figure (tokens per CPU-second x threads) estimates the rate with the cores
// to ourselves; it ignores memory-bandwidth contention.
'use strict';
const path = require('node:path');

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
};
const addonPath = process.env.GPT_ENGINE_ADDON || path.join(__dirname, '..', 'build', 'Release', 'gpt_engine.node');
const addon = require(addonPath);
if (opt('threads')) addon.setThreads(Number(opt('threads')));

const base = { n_positions: 1024, vocab_size: 50257, layer_norm_epsilon: 1e-5 };
const CASES = {
  a: { label: '(a) L6/H6/d384 B8 T256', config: { ...base, n_layer: 6, n_head: 6, n_embd: 384, n_positions: 256 }, B: 8, T: 256 },
  b: { label: '(b) GPT-2 small B4 T256', config: { ...base, n_layer: 12, n_head: 12, n_embd: 768 }, B: 4, T: 256 },
  c: { label: '(c) GPT-2 small B4 T64', config: { ...base, n_layer: 12, n_head: 12, n_embd: 768 }, B: 4, T: 64 },
};
const which = opt('case', 'all');
const precisions = opt('precision', 'both') === 'both' ? ['fp32', 'bf16'] : [opt('precision')];
const steps = Number(opt('steps', '3'));

function tokens(n, V, seed) {
  const t = new Int32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    t[i] = s % V;
  }
  return t;
}

(async () => {
  console.log(`threads ${addon.getThreads()}, isa ${addon.getIsa()}, avx512_bf16 ${addon.hasAvx512Bf16()}`);
  for (const key of which === 'all' ? Object.keys(CASES) : [which]) {
    const c = CASES[key];
    const cfg = { ...c.config, patterns: Array(c.config.n_layer).fill('dense') };
    for (const precision of precisions) {
      const m = await addon.createModel({ config: cfg, device: 'cpu', precision, seed: 1 });
      const n = c.B * c.T;
      const rows = [];
      for (let i = 0; i <= steps; i++) {
        const tok = tokens(n + 1, cfg.vocab_size, 7 + i);
        const c0 = process.cpuUsage();
        const t0 = process.hrtime.bigint();
        const fb = await m.forwardBackward({ tokens: tok.subarray(0, n), targets: tok.slice(1), batch: c.B, seq: c.T });
        const st = await m.step({ lr: 1e-4, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, gradClip: 1 });
        const ms = Number(process.hrtime.bigint() - t0) / 1e6;
        const cu = process.cpuUsage(c0);
        const cpuMs = (cu.user + cu.system) / 1000;
        if (i > 0) rows.push({ ms, cpuMs, f: fb.forwardMs, b: fb.backwardMs, o: st.optimizerMs, loss: fb.loss });
      }
      const med = (k) => rows.map((r) => r[k]).sort((x, y) => x - y)[Math.floor(rows.length / 2)];
      const ms = med('ms');
      console.log(
        `${c.label} ${precision}: ${ms.toFixed(0)} ms/step (forward ${med('f').toFixed(0)}, backward ${med('b').toFixed(0)}, ` +
          `optimizer ${med('o').toFixed(0)}), ${((n * 1000) / ms).toFixed(0)} tokens/s, loss ${rows[rows.length - 1].loss.toFixed(3)}; ` +
          `CPU time ${med('cpuMs').toFixed(0)} ms/step (${((n * 1000 * addon.getThreads()) / med('cpuMs')).toFixed(0)} tokens/s if every thread had its core)`,
      );
      m.dispose();
    }
  }
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
