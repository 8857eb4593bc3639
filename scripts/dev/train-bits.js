#!/usr/bin/env node
// Prints a hash of the exact bits of a few training steps (losses, gradient
// norms, every gradient of the first step) and of forward() logits, for a
// small model, so two builds of the addon can be compared bit for bit:
//
//   GPT_ENGINE_ADDON=<addon> [GPT_ENGINE_ISA=avx512|avx2|portable] \
//   [GPT_ENGINE_THREADS=n] node scripts/dev/train-bits.js [fp32|bf16] [batch] [seq]
//
// The config (vocabulary 1000, padded 1024; 2 layers, 64 channels) and the
// data are fixed; batch x seq above 256 rows runs the classifier in several
// chunks on the CPU.
'use strict';
const crypto = require('node:crypto');
const { GPT } = require('../../dist/lib/index.js');

async function main() {
  const precision = process.argv[2] || 'fp32';
  const B = Number(process.argv[3] || 3), T = Number(process.argv[4] || 201);
  const config = { vocab_size: 1000, n_positions: 256, n_layer: 2, n_head: 4, n_embd: 64 };
  const model = await GPT.create(config, { device: 'cpu', precision, seed: 7 });
  let s = 12345;
  const rnd = () => (s = (s * 1103515245 + 12345) % 2147483648) / 2147483648;
  const tokens = Int32Array.from({ length: B * T }, () => Math.floor(rnd() * 1000));
  const targets = Int32Array.from({ length: B * T }, (_, i) => (i % 17 === 3 ? -1 : Math.floor(rnd() * 1000)));
  const h = crypto.createHash('sha256');
  const f64 = (x) => h.update(Buffer.from(Float64Array.of(x).buffer));
  for (let i = 0; i < 3; ++i) {
    f64(await model.forwardBackward(tokens, targets, { batch: B, seq: T }));
    if (i === 0) for (const g of model.gradients().values()) h.update(Buffer.from(g.buffer, g.byteOffset, g.byteLength));
    const r = await model.step({ lr: 1e-3, weightDecay: 0.1, gradClip: 1 });
    f64(r.gradNorm);
  }
  const { logits } = await model.forward(tokens, { batch: B, seq: T });
  h.update(Buffer.from(logits.buffer, logits.byteOffset, logits.byteLength));
  f64(await model.loss(tokens, targets, { batch: B, seq: T }));
  console.log(h.digest('hex').slice(0, 16));
  await model.dispose();
}
main().catch((e) => {
  console.error(e);
  process.exit(1);
});
