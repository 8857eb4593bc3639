// Run by test/native/limits.test.ts in a child process, so that a request the
// engine fails to refuse (the OS killing the process, an abort) shows up as a
// failed test instead of taking jest down. Prints one JSON line.
//   {"mode":"batch","batch":B,"seq":T}: a live model asked for a batch far
//     beyond the machine, then a small call to check it still works;
//   {"mode":"create","config":{...}}: GPT.create on a config far beyond it.
'use strict';
const path = require('node:path');
const { GPT } = require(path.join(__dirname, '..', '..', 'dist', 'lib', 'model.js'));

const errorOf = (e) => ({ ok: false, name: e.name, code: e.code, message: e.message });

async function batchMode(batch, seq) {
  const config = {
    // Training holds no [rows, vocab] logits (the fused classifier), so the
    // absurd batch is made of rows: 4096 x 4096 rows of 128 channels need
    // about 240 GB of activations.
    n_layer: 1, n_head: 2, n_embd: 128, n_positions: 4096, vocab_size: 50257,
    layer_norm_epsilon: 1e-5, attention_pattern: 'dense', attention_window: null,
  };
  const model = await GPT.create(config, { device: 'cpu', seed: 1 });
  const out = { absurd: null, after: null, rssMiB: 0 };
  const tokens = new Int32Array(batch * seq).fill(7);
  try {
    await model.forwardBackward(tokens, tokens, { batch, seq });
    out.absurd = { ok: true };
  } catch (e) {
    out.absurd = errorOf(e);
  }
  model.zeroGrad();
  const small = new Int32Array(2 * 8).fill(3);
  out.after = await model.forwardBackward(small, small, { batch: 2, seq: 8 });
  out.rssMiB = Math.round(process.memoryUsage().rss / 2 ** 20);
  await model.dispose();
  return out;
}

async function createMode(config) {
  const t0 = Date.now();
  let res;
  try {
    const m = await GPT.create(config, { device: 'cpu' });
    res = { ok: true };
    await m.dispose();
  } catch (e) {
    res = errorOf(e);
  }
  return { create: res, ms: Date.now() - t0, rssMiB: Math.round(process.memoryUsage().rss / 2 ** 20) };
}

async function main() {
  const o = JSON.parse(process.argv[2] || '{"mode":"batch","batch":4096,"seq":4096}');
  const out = o.mode === 'create' ? await createMode(o.config) : await batchMode(o.batch, o.seq);
  process.stdout.write(JSON.stringify(out) + '\n');
}
main().catch((e) => {
  process.stdout.write(JSON.stringify({ crashed: String(e && e.stack) }) + '\n');
  process.exitCode = 1;
});
