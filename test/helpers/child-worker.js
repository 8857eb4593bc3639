// A worker_threads script for test/native/concurrency.test.ts: builds a model
// from the compiled package (dist/), trains a few steps on seeded batches and
// posts back the losses, grad norms and a checksum of the final weights.
// workerData: { config, seed, steps, batch, seq, dataSeed, lr, hang }
// With `hang`, it posts 'started' and then keeps issuing calls until the main
// thread terminates it (to terminate a worker in the middle of native work);
// `hang: 'sync'` also makes synchronous calls while each one runs.
'use strict';
const path = require('node:path');
const { parentPort, workerData } = require('node:worker_threads');
const { GPT } = require(path.join(__dirname, '..', '..', 'dist', 'lib', 'model.js'));
const { batchOf, checksum } = require('./child-batches.js');

async function main() {
  const o = workerData;
  const model = await GPT.create(o.config, { device: 'cpu', seed: o.seed });
  const n = o.batch * o.seq;
  if (o.hang) {
    parentPort.postMessage({ started: true });
    for (let i = 0; ; i++) {
      const tok = batchOf(o.dataSeed + i, n, o.config.vocab_size);
      const running = model.forwardBackward(tok, tok, { batch: o.batch, seq: o.seq });
      // 'sync': while that call runs on the thread pool, synchronous calls
      // (the first waits for the model's lock) keep this thread inside the
      // addon most of the time, so the terminate lands there, not in JS.
      if (o.hang === 'sync') {
        for (let k = 0; k < 16; k++) {
          model.parameters();
          model.memory();
        }
      }
      await running;
    }
  }
  const losses = [];
  const norms = [];
  for (let s = 0; s < o.steps; s++) {
    const tok = batchOf(o.dataSeed + 2 * s, n, o.config.vocab_size);
    const tgt = batchOf(o.dataSeed + 2 * s + 1, n, o.config.vocab_size);
    losses.push(await model.forwardBackward(tok, tgt, { batch: o.batch, seq: o.seq }));
    norms.push((await model.step({ lr: o.lr, weightDecay: 0.1, gradClip: 1 })).gradNorm);
  }
  const sum = checksum(model.parameters());
  await model.dispose();
  parentPort.postMessage({ losses, norms, checksum: sum });
}
main().catch((e) => parentPort.postMessage({ error: String(e && e.stack) }));
