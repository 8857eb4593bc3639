// Run in a child process by test/native/decode-terminate.test.ts: starts
// workers (child-decode-worker.js) that decode in a loop, one with
// generate() and one with stream(), and terminates them in the middle of
// decoding (prefill, decode steps, or between the steps' native calls),
// several rounds at varied delays. Then a fresh worker generates (seeded
// sampling) and its tokens must equal those of the same generate() in this
// thread.
// Prints "all ok: ..." and exits 0 when the process survived and at least one
// terminate landed during a decode call; a crash shows as a
// signal or a non-zero exit code in the parent test.
'use strict';
const path = require('node:path');
const { Worker } = require('node:worker_threads');
const { GPT } = require(path.join(__dirname, '..', '..', 'dist', 'lib', 'model.js'));

const script = path.join(__dirname, 'child-decode-worker.js');
const CFG = {
  n_layer: 2, n_head: 4, n_embd: 32, n_positions: 64, vocab_size: 97,
  layer_norm_epsilon: 1e-5, attention_pattern: 'alternating', attention_window: 5,
};
const PROMPT = [5, 17, 3, 42, 8, 1];
const rounds = Number(process.argv[2] || 6);

function message(w) {
  return new Promise((resolve, reject) => {
    w.once('message', (m) => (m.error ? reject(new Error(m.error)) : resolve(m)));
    w.once('error', reject);
  });
}

async function main() {
  let midCall = 0; // terminates that landed while a generate()/stream() was running
  for (let round = 0; round < rounds; round++) {
    const counts = [0, 1].map(() => new Int32Array(new SharedArrayBuffer(8)));
    const ws = ['generate', 'stream'].map(
      (mode, i) =>
        new Worker(script, { workerData: { config: CFG, seed: i, prompt: PROMPT, maxTokens: 50, mode, counts: counts[i] } }),
    );
    await Promise.all(ws.map(message));
    await new Promise((r) => setTimeout(r, 5 + 13 * round));
    await Promise.all(ws.map((w) => w.terminate()));
    for (const c of counts) if (Atomics.load(c, 0) > Atomics.load(c, 1)) midCall++;
  }
  // A terminate between two calls would not test the decode path at all.
  if (midCall === 0) throw new Error('no terminate landed during a decode call');
  const w = new Worker(script, { workerData: { config: CFG, seed: 3, prompt: PROMPT, maxTokens: 20, mode: 'once' } });
  const got = await message(w);
  const m = await GPT.create(CFG, { device: 'cpu', seed: 3 });
  const want = await m.generate(new Int32Array(PROMPT), { maxTokens: 20, temperature: 1, seed: 7, ignoreEos: true });
  await m.dispose();
  if (JSON.stringify(got.tokens) !== JSON.stringify(want.tokens))
    throw new Error(`a fresh worker generated ${JSON.stringify(got.tokens)}, this thread ${JSON.stringify(want.tokens)}`);
  process.stdout.write(`all ok: ${midCall} of ${2 * rounds} terminates during a decode call; ${JSON.stringify(got.tokens)}\n`);
}
main().catch((e) => {
  process.stderr.write(String(e && e.stack) + '\n');
  process.exitCode = 1;
});
