/**
 * The defaults a newcomer gets: the no-flag run trains windows of the whole
 * context, so no position embedding keeps its random initial vector. A short
 * run with the default shapes on the built-in corpus, then the trained
 * model's mean loss on positions past 128 must be close to its loss before
 * 128 (with --seq 128, the old default, positions past 128 were never
 * trained and every sample that reached them dissolved). Also: a shorter
 * --seq is announced at the start, and the checkpoint records it.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readTrainedSeq } from '../../lib/checkpoint';
import { presetConfig } from '../../lib/config';
import { defaultCorpus, TokenFile } from '../../lib/data';
import { GPT } from '../../lib/model';
import { defaultSettings, Trainer, type TrainerOptions, type TrainResult } from '../../lib/trainer';

let tmp: string;
let corpus: string;
const oldCache = process.env.GPT_ENGINE_CACHE;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gpte-default-'));
  process.env.GPT_ENGINE_CACHE = path.join(tmp, 'cache');
  corpus = defaultCorpus('byte');
});
afterAll(() => {
  if (oldCache === undefined) delete process.env.GPT_ENGINE_CACHE;
  else process.env.GPT_ENGINE_CACHE = oldCache;
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** Mean next-token loss (nats) of positions [0, split) and [split, T) over val windows of the whole context. */
async function lossByPosition(model: GPT, valFile: string, split: number, windows: number): Promise<{ before: number; after: number }> {
  const T = model.config.n_positions;
  const V = model.config.vocab_size;
  const file = TokenFile.open(valFile);
  const sums = [0, 0];
  const counts = [0, 0];
  try {
    for (let w = 0; w < windows; w++) {
      const start = Math.floor((w * (file.count - T - 1)) / windows);
      const toks = file.read(start, T + 1);
      const { logits } = await model.forward(toks.subarray(0, T), { batch: 1, seq: T });
      for (let t = 0; t < T; t++) {
        const row = logits.subarray(t * V, (t + 1) * V);
        let max = -Infinity;
        for (let v = 0; v < V; v++) max = Math.max(max, row[v]);
        let sum = 0;
        for (let v = 0; v < V; v++) sum += Math.exp(row[v] - max);
        const k = t < split ? 0 : 1;
        sums[k] += Math.log(sum) + max - row[toks[t + 1]];
        counts[k]++;
      }
    }
  } finally {
    file.close();
  }
  return { before: sums[0] / counts[0], after: sums[1] / counts[1] };
}

/** Trains on the built-in corpus into tmp/<out>, collecting the log lines. */
async function train(out: string, options: Omit<TrainerOptions, 'data' | 'out' | 'plot' | 'log'>): Promise<{ r: TrainResult; logs: string[] }> {
  const logs: string[] = [];
  const r = await new Trainer({ ...options, data: corpus, out: path.join(tmp, out), plot: false, log: (s: string) => logs.push(s) }).run();
  return { r, logs };
}

test('the default sequence length is the context, for every buildable preset', () => {
  for (const name of ['tiny', 'small', 'gpt2', 'gpt3-small']) {
    const cfg = presetConfig(name);
    const s = defaultSettings(name, cfg);
    expect(s.seq).toBe(cfg.n_positions);
    expect(s.batch_tokens).toBe(s.batch * s.seq);
  }
});

test('a short default-shaped run trains positions past 128 as well as those before', async () => {
  const { r, logs } = await train('run', { settings: { steps: 300, eval_every: 300, checkpoint_every: 300, sample_tokens: 0, device: 'cpu' } });
  expect(r.config.train.seq).toBe(256);
  expect(r.config.model.n_positions).toBe(256);
  expect(logs.some((l) => /not trained/.test(l))).toBe(false);
  expect(await readTrainedSeq(r.runDir)).toBe(256);
  const model = await GPT.load(r.checkpoint as string, { device: 'cpu' });
  try {
    const { before, after } = await lossByPosition(model, path.join(corpus, 'val.bin'), 128, 8);
    expect(before).toBeLessThan(2.6); // it learned something (about 5.5 at the start)
    expect(Math.abs(after - before)).toBeLessThan(0.15);
  } finally {
    await model.dispose();
  }
}, 240000);

test('a --seq shorter than the context is announced at the start and recorded in the checkpoint', async () => {
  const { r, logs } = await train('short', {
    model: { n_layer: 1, n_head: 2, n_embd: 32, n_positions: 64 },
    settings: { steps: 2, batch: 2, seq: 16, eval_every: 2, checkpoint_every: 2, sample_tokens: 0, device: 'cpu' },
  });
  expect(logs.join('\n')).toMatch(/seq 16 is shorter than the context \(64\): positions 16\.\.63 are not trained/);
  expect(await readTrainedSeq(r.runDir)).toBe(16);
});
