// Run in a child process by test/native/concurrency-terminate.test.ts: starts
// workers (child-worker.js with `hang`) that keep the addon busy, terminates
// them in the middle of native calls, several rounds, then trains once more in
// a fresh worker. Prints "all ok" and exits 0 when the process survived; a
// crash shows as a signal or a non-zero exit code in the parent test.
//
// Each round has one worker that only awaits its calls (the terminate mostly
// lands while the work runs on the thread pool, rarely inside the addon's
// JS-thread part) and one that also makes synchronous calls waiting for the
// model (the terminate lands inside the addon almost every time: that is what
// aborted the process before NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS).
'use strict';
const path = require('node:path');
const { Worker } = require('node:worker_threads');

const script = path.join(__dirname, 'child-worker.js');
const CFG = {
  n_layer: 2, n_head: 4, n_embd: 32, n_positions: 32, vocab_size: 97,
  layer_norm_epsilon: 1e-5, attention_pattern: 'alternating', attention_window: 5,
};
const rounds = Number(process.argv[2] || 6);

function started(w) {
  return new Promise((resolve, reject) => {
    w.once('message', (m) => (m.started ? resolve() : reject(new Error(m.error))));
    w.once('error', reject);
  });
}

async function main() {
  for (let round = 0; round < rounds; round++) {
    const ws = [0, 1].map((i) => {
      const hang = (round + i) % 2 ? 'sync' : true;
      return new Worker(script, { workerData: { config: CFG, seed: i, batch: 8, seq: 32, dataSeed: round * 10 + i, hang } });
    });
    await Promise.all(ws.map(started));
    await new Promise((r) => setTimeout(r, 20 + 15 * round));
    await Promise.all(ws.map((w) => w.terminate()));
  }
  const w = new Worker(script, { workerData: { config: CFG, seed: 5, steps: 2, batch: 2, seq: 16, dataSeed: 7, lr: 3e-3 } });
  const r = await new Promise((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  });
  if (r.error) throw new Error(r.error);
  process.stdout.write(`all ok ${JSON.stringify(r)}\n`);
}
main().catch((e) => {
  process.stderr.write(String(e && e.stack) + '\n');
  process.exitCode = 1;
});
