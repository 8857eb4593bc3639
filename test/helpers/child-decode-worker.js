// A worker_threads script for test/helpers/child-terminate-decode.js: builds
// a model from the compiled package (dist/) and decodes with it.
// workerData: { config, seed, prompt (number[]), maxTokens, mode, counts }
// counts (Int32Array over a SharedArrayBuffer, optional): [0] decode calls
// begun, [1] decode calls finished, so the main thread can tell whether it
// terminated the worker in the middle of one.
//   mode 'generate' | 'stream': posts 'started', then decodes in a loop
//   (generate() calls, or `for await` over stream()) until the main thread
//   terminates the worker, so the terminate lands in the middle of decoding;
//   'generate' also makes synchronous calls (each waits for the model's
//   lock) while a generate() runs, so the terminate often lands inside the
//   addon rather than in JS;
//   mode 'once': one seeded generate(), posts its tokens and ends.
'use strict';
const path = require('node:path');
const { parentPort, workerData } = require('node:worker_threads');
const { GPT } = require(path.join(__dirname, '..', '..', 'dist', 'lib', 'model.js'));

async function main() {
  const o = workerData;
  const model = await GPT.create(o.config, { device: 'cpu', seed: o.seed });
  const prompts = [new Int32Array(o.prompt), new Int32Array(o.prompt.slice(1))];
  const gen = { maxTokens: o.maxTokens, temperature: 0, ignoreEos: true };
  if (o.mode === 'once') {
    const r = await model.generate(prompts[0], { ...gen, temperature: 1, seed: 7 });
    await model.dispose();
    parentPort.postMessage({ tokens: r.tokens });
    return;
  }
  parentPort.postMessage({ started: true });
  const counts = o.counts || new Int32Array(2);
  for (let i = 0; ; i++) {
    Atomics.add(counts, 0, 1);
    if (o.mode === 'stream') {
      // Two prompts at once: the batched decode path.
      for await (const chunk of model.stream(prompts, { ...gen, temperature: 0.8, seed: i })) void chunk;
    } else {
      const running = model.generate(prompts[i % 2], gen);
      for (let k = 0; k < 8; k++) model.memory();
      await running;
    }
    Atomics.add(counts, 1, 1);
  }
}
main().catch((e) => parentPort.postMessage({ error: String(e && e.stack) }));
