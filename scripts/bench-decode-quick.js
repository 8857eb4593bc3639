#!/usr/bin/env node
// Quick KV-cache decoding benchmark straight on the addon (no TypeScript
// build): GPT-2 small shape with random weights, a 16-token prompt per
// sequence, then greedy steps; decode tokens/s (all sequences together),
// time to first token, and the bandwidth bound measured in the same run
// (a batch-1 step reads every weight once: bound = read bandwidth / bytes of
// weights per token). `gpt-engine bench generate` is the full benchmark.
//
//   node scripts/bench-decode-quick.js [--batch 1,8] [--precision fp32,bf16] [--tokens 64] [--prompt 16] [--threads N]
//
// On a busy machine the figures are low and noisy: the load is printed with
// each row.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
};
const addonPath = process.env.GPT_ENGINE_ADDON || path.join(__dirname, '..', 'build', 'Release', 'gpt_engine.node');
const addon = require(addonPath);
if (opt('threads')) addon.setThreads(Number(opt('threads')));

const batches = opt('batch', '1,8').split(',').map(Number);
const precisions = opt('precision', 'fp32,bf16').split(',');
const nNew = Number(opt('tokens', '64'));
const nPrompt = Number(opt('prompt', '16'));
const L = 12, C = 768, V = 50257, Vp = Math.ceil(V / 64) * 64, NPOS = 1024;
const config = { n_layer: L, n_head: 12, n_embd: C, n_positions: NPOS, vocab_size: V, layer_norm_epsilon: 1e-5, patterns: Array(L).fill('dense') };
// Weights a step reads: the linear layers and the tied head (wte, padded).
const weightFloats = L * 12 * C * C + Vp * C;

const load = () => fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

function tokens(n, seed) {
  const t = new Int32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    t[i] = s % V;
  }
  return t;
}

function argmax(row, off) {
  let best = 0;
  let bv = -Infinity;
  for (let i = 0; i < V; i++) if (row[off + i] > bv) bv = row[off + (best = i)];
  return best;
}

(async () => {
  console.log(`threads ${addon.getThreads()}, isa ${addon.getIsa()}, avx512_bf16 ${addon.hasAvx512Bf16()}; ` +
    `GPT-2 small, prompt ${nPrompt}, ${nNew} new tokens per sequence`);
  const rows = [];
  for (const precision of precisions) {
    const model = await addon.createModel({ config, device: 'cpu', precision, seed: 1 });
    const bytesPerToken = weightFloats * (precision === 'bf16' ? 2 : 4);
    for (const B of batches) {
      const bw = await addon.probeBandwidth({ bytes: 512 << 20, repeats: 5 });
      const loadBefore = load();
      const s = addon.decodeOpen(model, { capacities: Int32Array.from({ length: B }, () => nPrompt + nNew), abort: new Int32Array(1) });
      const prompt = new Int32Array(B * nPrompt);
      for (let b = 0; b < B; b++) prompt.set(tokens(nPrompt, 7 + b), b * nPrompt);
      const t0 = process.hrtime.bigint();
      let logits = await s.prefill({ tokens: prompt, lengths: Int32Array.from({ length: B }, () => nPrompt) });
      const t1 = process.hrtime.bigint();
      const active = new Uint8Array(B).fill(1);
      const next = new Int32Array(B);
      for (let i = 1; i < nNew; i++) {
        for (let b = 0; b < B; b++) next[b] = argmax(logits, b * V);
        logits = await s.step({ tokens: next, active });
      }
      const t2 = process.hrtime.bigint();
      s.close();
      const ttft = Number(t1 - t0) / 1e6;
      const decodeMs = Number(t2 - t1) / 1e6;
      const tps = ((nNew - 1) * B) / (decodeMs / 1000);
      const bound = (bw.gbps * 1e9) / bytesPerToken;
      const row = {
        precision, batch: B, decodeTokensPerSecond: +tps.toFixed(1), perSequence: +(tps / B).toFixed(1),
        timeToFirstTokenMs: +ttft.toFixed(1), bandwidthGBps: +bw.gbps.toFixed(1),
        weightMBPerToken: +(bytesPerToken / 1e6).toFixed(0), boundTokensPerSecond: +bound.toFixed(1),
        shareOfBound: B === 1 ? +(tps / bound).toFixed(2) : undefined, load: `${loadBefore} -> ${load()}`,
      };
      rows.push(row);
      console.log(JSON.stringify(row));
    }
    model.dispose();
  }
  const get = (p, b) => rows.find((r) => r.precision === p && r.batch === b);
  const f1 = get('fp32', 1), h1 = get('bf16', 1), f8 = get('fp32', 8), h8 = get('bf16', 8);
  if (f1 && h1) console.log(`bf16 / fp32 at batch 1: ${(h1.decodeTokensPerSecond / f1.decodeTokensPerSecond).toFixed(2)}x`);
  if (f1 && f8) console.log(`fp32 batch 8 / batch 1: ${(f8.decodeTokensPerSecond / f1.decodeTokensPerSecond).toFixed(2)}x`);
  if (h1 && h8) console.log(`bf16 batch 8 / batch 1: ${(h8.decodeTokensPerSecond / h1.decodeTokensPerSecond).toFixed(2)}x`);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
