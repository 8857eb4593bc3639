#!/usr/bin/env node
'use strict';
// Chunked prefill on the CPU (docs/BENCHMARKS.md "Chunked prefill"), gpt2
// with random weights, fp32:
// - per call: a prefill of 256 tokens at position 0, an extend of 256 at
//   256, 512 and 768, and a whole prefill of 1000 (best of 2, ms);
// - 4 streams decoding when a 1000-token prompt arrives, for prefillChunk
//   256 and 1024 (whole): the longest pause between two tokens of a running
//   stream after the arrival, and the prompt's time to first token.
// Usage: node scripts/dev/prefill-chunk-bench.js [calls|serve|all] (after
// npm run build and the addon build; GPT_ENGINE_ADDON picks another addon).
const path = require('path');
const { performance } = require('perf_hooks');
const root = path.join(__dirname, '..', '..');
const { GPT } = require(path.join(root, 'dist/lib/model'));
const { loadAddon } = require(path.join(root, 'dist/lib/native'));
const { presetConfig } = require(path.join(root, 'dist/lib/config'));

const what = process.argv[2] || 'all';
if (!['calls', 'serve', 'all'].includes(what)) {
  console.error(`Expected calls, serve or all but received ${what}`);
  process.exit(2);
}

/** n token ids in [0, 50000) from a seed (a linear congruential sequence). */
function tokens(n, seed) {
  let s = seed >>> 0;
  return Int32Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) >>> 0;
    return s % 50000;
  });
}

async function calls() {
  const { attention_pattern: _p, attention_window: _w, ...c } = presetConfig('gpt2');
  const config = { ...c, patterns: Array(c.n_layer).fill('dense') };
  const addon = loadAddon();
  const h = await addon.createModel({ config, device: 'cpu', precision: 'fp32', seed: 1 });
  const t = tokens(1024, 5);
  const s = addon.decodeOpen(h, { capacities: Int32Array.of(1024), abort: new Int32Array(32), extendMax: 256 });
  const best = {};
  const time = async (name, fn) => {
    const t0 = performance.now();
    await fn();
    best[name] = Math.min(best[name] ?? Infinity, Math.round(performance.now() - t0));
  };
  try {
    for (let rep = 0; rep < 2; rep++) {
      await time('prefill 256 at 0', () => s.prefill({ tokens: t.slice(0, 256), lengths: Int32Array.of(256) }));
      for (const p of [256, 512, 768])
        await time(`extend 256 at ${p}`, () => s.extend({ tokens: t.slice(p, p + 256), lengths: Int32Array.of(256) }));
      await time('prefill 1000', () => s.prefill({ tokens: t.slice(0, 1000), lengths: Int32Array.of(1000) }));
    }
  } finally {
    s.close();
    h.dispose();
  }
  console.log('per call, best of 2 (ms):', JSON.stringify(best));
}

async function serve(chunk) {
  const model = await GPT.create('gpt2', { seed: 1, device: 'cpu', precision: 'fp32', maxBatch: 8, prefillChunk: chunk });
  let stop = false;
  let arrived = 0;
  let running = 0;
  let allRunning;
  const started = new Promise((r) => (allRunning = r));
  const pauses = [0, 0, 0, 0];
  const streams = pauses.map(async (_, i) => {
    let last = 0;
    for await (const c of model.stream(tokens(16, 100 + i), { maxTokens: 1000, temperature: 0, ignoreEos: true })) {
      const now = performance.now();
      if (last === 0 && ++running === pauses.length) allRunning();
      if (arrived && last && now > arrived) pauses[i] = Math.max(pauses[i], now - last);
      last = now;
      if (stop) break;
    }
  });
  try {
    await started;
    await new Promise((r) => setTimeout(r, 300));
    arrived = performance.now();
    let first = 0;
    for await (const c of model.stream(tokens(1000, 9), { maxTokens: 2, temperature: 0, ignoreEos: true }))
      if (!first && c.tokens.length) first = performance.now() - arrived;
    // The running streams' next steps after the prompt's first token.
    await new Promise((r) => setTimeout(r, 500));
    stop = true;
    await Promise.all(streams);
    console.log(`prefillChunk ${chunk}: longest pause ${Math.round(Math.max(...pauses))} ms, first token ${(first / 1000).toFixed(2)} s`);
  } finally {
    stop = true;
    model.dispose();
  }
}

(async () => {
  if (what !== 'serve') await calls();
  if (what !== 'calls') {
    await serve(256);
    await serve(1024);
  }
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
