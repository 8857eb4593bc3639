// Run by test/native/classifier.test.ts and test/cuda/classifier.test.ts in a
// child process, because the fused classifier reads GPT_ENGINE_CLASSIFIER_ROWS
// from the real process environment (jest hands tests a copy). Trains a
// small model (on the CPU unless `device` says otherwise) for two steps on fixed data and prints one JSON line: the losses, gradient norms,
// the first step's gradients and forward()'s logits (base64 of the float32
// bits), and loss(); or {error} when a call throws.
//   argv[2]: JSON {precision, isa, threads, batch, seq, config, device?}
'use strict';
const path = require('node:path');
const { GPT } = require(path.join(__dirname, '..', '..', 'dist', 'lib', 'model.js'));
const { setIsa, setThreads } = require(path.join(__dirname, '..', '..', 'dist', 'lib', 'runtime.js'));

const b64 = (a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');

async function main() {
  const o = JSON.parse(process.argv[2]);
  if (o.isa) setIsa(o.isa);
  if (o.threads) setThreads(o.threads);
  const B = o.batch, T = o.seq, V = o.config.vocab_size;
  let s = 71;
  const rnd = () => (s = (s * 1103515245 + 12345) % 2147483648) / 2147483648;
  const tokens = Int32Array.from({ length: B * T }, () => Math.floor(rnd() * V));
  const targets = Int32Array.from({ length: B * T }, (_, i) => (i % 13 === 0 ? -1 : Math.floor(rnd() * V)));
  const model = await GPT.create(o.config, { device: o.device || 'cpu', precision: o.precision, seed: 5 });
  const out = { losses: [], norms: [], grads: {}, logits: '', evalLoss: 0 };
  try {
    for (let i = 0; i < 2; ++i) {
      out.losses.push(await model.forwardBackward(tokens, targets, { batch: B, seq: T }));
      if (i === 0) for (const [k, g] of model.gradients()) out.grads[k] = b64(g);
      out.norms.push((await model.step({ lr: 1e-2 })).gradNorm);
    }
    out.logits = b64((await model.forward(tokens, { batch: B, seq: T })).logits);
    out.evalLoss = await model.loss(tokens, targets, { batch: B, seq: T });
  } catch (e) {
    process.stdout.write(JSON.stringify({ error: `${e.name}: ${e.message}` }) + '\n');
    return;
  } finally {
    await model.dispose();
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}
main().catch((e) => {
  process.stderr.write(String(e && e.stack) + '\n');
  process.exit(1);
});
