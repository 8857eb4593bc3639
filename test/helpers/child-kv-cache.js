// Run by test/cuda/decode-kv-bf16.test.ts in a child process, because the
// type of a decode session's key/value cache follows GPT_ENGINE_BF16_STORAGE
// in the real process environment (jest hands tests a copy). Builds a model
// on `device` at `precision` with the weights of the CPU model of seed 3,
// runs one decode script on it and prints one JSON line: the session's
// cacheBytes and, per sequence, the logits rows of every call it took part
// in (base64 of the float32 bits); or {error} when a call throws.
//   argv[2]: JSON {device, precision, config, prompts, tokens, steps, chunk,
//   caps, resize}
// The script: the prompts prefilled in chunks of `chunk` (a prefill, then
// extends), `steps` steps of every sequence (tokens[b][s]); with `resize`,
// the session then grows by one sequence (capacity 10, the others keep
// their caches) and every old sequence steps once more (tokens[b][steps]).
'use strict';
const path = require('node:path');
const dist = path.join(__dirname, '..', '..', 'dist', 'lib');
const { createNativeModel } = require(path.join(dist, 'model', 'native.js'));
const { loadAddon } = require(path.join(dist, 'native.js'));

const b64 = (a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');

async function script(s, o) {
  const V = o.config.vocab_size, B = o.prompts.length;
  const rows = o.prompts.map(() => []);
  const keep = (logits, took) => took.forEach((t, b) => t && rows[b].push(b64(logits.slice(b * V, (b + 1) * V))));
  for (let at = 0; o.prompts.some((p) => p.length > at); at += o.chunk) {
    const parts = o.prompts.map((p) => p.slice(at, at + o.chunk));
    const call = { tokens: Int32Array.from(parts.flat()), lengths: Int32Array.from(parts, (q) => q.length) };
    keep(await (at === 0 ? s.prefill(call) : s.extend(call)), parts.map((q) => q.length > 0));
  }
  const all = o.prompts.map(() => 1);
  for (let t = 0; t < o.steps; t++)
    keep(await s.step({ tokens: Int32Array.from(o.tokens, (q) => q[t]), active: Uint8Array.from(all) }), all.map(() => true));
  if (o.resize) {
    s.resize({ capacities: Int32Array.from([...o.caps, 10]) });
    const logits = await s.step({
      tokens: Int32Array.from([...o.tokens.map((q) => q[o.steps]), 0]),
      active: Uint8Array.from([...all, 0]),
    });
    keep(logits, all.map(() => true));
  }
  return rows;
}

async function main() {
  const o = JSON.parse(process.argv[2]);
  const weights = await createNativeModel(o.config, 'cpu', o.precision, 3);
  let model = weights;
  if (o.device !== 'cpu') {
    model = await createNativeModel(o.config, o.device, o.precision, 3);
    model.writeTensors('params', weights.readTensors('params'));
  }
  const s = loadAddon().decodeOpen(model, { capacities: Int32Array.from(o.caps), abort: new Int32Array(1), extendMax: o.chunk });
  try {
    const cacheBytes = s.cacheBytes();
    const rows = await script(s, o);
    process.stdout.write(JSON.stringify({ cacheBytes, rows }) + '\n');
  } catch (e) {
    process.stdout.write(JSON.stringify({ error: `${e.name}: ${e.message}` }) + '\n');
  } finally {
    s.close();
    if (model !== weights) model.dispose();
    weights.dispose();
  }
}
main().catch((e) => {
  process.stderr.write(String(e && e.stack) + '\n');
  process.exit(1);
});
