/**
 * The trainer's loop, settings and files, driven by a small pure-TypeScript
 * model (a tied-embedding bigram with AdamW) so they are tested without the
 * addon: resume identity, stop-after, keep-K, interruption, NaN handling,
 * mismatches and config-file parsing. The native model's versions of these
 * live in test/native/train*.test.ts.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { GPTConfig, TokenizerName } from '../../lib/config';
import { expectedTensorShapes, readCheckpoint, writeCheckpoint } from '../../lib/checkpoint';
import { prepare } from '../../lib/data';
import { NonFiniteError } from '../../lib/errors';
import { Rng } from '../../lib/rng';
import type { BatchShape, StepOptions } from '../../lib/model';
import { ModelBackend, parseTrainConfigFile, Trainer, TrainModel, TrainSettings } from '../../lib/trainer';

class Bigram implements TrainModel {
  config: GPTConfig;
  tensors: Map<string, Float32Array>;
  m: Map<string, Float32Array>;
  v: Map<string, Float32Array>;
  grad: Float32Array;
  t = 0;
  poison = false;
  constructor(config: GPTConfig, seed: number) {
    this.config = config;
    this.tensors = new Map();
    this.m = new Map();
    this.v = new Map();
    const rng = new Rng(seed, 9);
    for (const [name, shape] of expectedTensorShapes(config)) {
      const n = shape.reduce((a, b) => a * b, 1);
      const w = new Float32Array(n);
      if (name === 'wte.weight') for (let i = 0; i < n; i++) w[i] = (rng.nextFloat() - 0.5) * 0.2;
      this.tensors.set(name, w);
      this.m.set(name, new Float32Array(n));
      this.v.set(name, new Float32Array(n));
    }
    this.grad = new Float32Array(config.vocab_size * config.n_embd);
  }
  private pass(tokens: Int32Array, targets: Int32Array, backward: boolean): number {
    const V = this.config.vocab_size;
    const C = this.config.n_embd;
    const E = this.tensors.get('wte.weight')!;
    let loss = 0;
    const z = new Float64Array(V);
    for (let i = 0; i < tokens.length; i++) {
      const x = tokens[i];
      let mx = -Infinity;
      for (let j = 0; j < V; j++) {
        let d = 0;
        for (let c = 0; c < C; c++) d += E[x * C + c] * E[j * C + c];
        z[j] = d;
        if (d > mx) mx = d;
      }
      let sum = 0;
      for (let j = 0; j < V; j++) sum += Math.exp(z[j] - mx);
      loss += Math.log(sum) + mx - z[targets[i]];
      if (!backward) continue;
      for (let j = 0; j < V; j++) {
        const dz = (Math.exp(z[j] - mx) / sum - (j === targets[i] ? 1 : 0)) / tokens.length;
        for (let c = 0; c < C; c++) {
          this.grad[j * C + c] += dz * E[x * C + c];
          this.grad[x * C + c] += dz * E[j * C + c];
        }
      }
    }
    return this.poison ? NaN : loss / tokens.length;
  }
  accum = 0;
  forwardBackward(tokens: Int32Array, targets: Int32Array, _s: BatchShape): number {
    this.accum++;
    return this.pass(tokens, targets, true);
  }
  loss(tokens: Int32Array, targets: Int32Array): number {
    return this.pass(tokens, targets, false);
  }
  step(o: Required<StepOptions>): { gradNorm: number } {
    const g = this.grad;
    for (let i = 0; i < g.length; i++) g[i] /= this.accum;
    this.accum = 0;
    let n2 = 0;
    for (let i = 0; i < g.length; i++) n2 += g[i] * g[i];
    const norm = Math.sqrt(n2);
    const clip = o.gradClip > 0 ? Math.min(1, o.gradClip / norm) : 1;
    this.t++;
    const W = this.tensors.get('wte.weight')!;
    const m = this.m.get('wte.weight')!;
    const v = this.v.get('wte.weight')!;
    for (let i = 0; i < g.length; i++) {
      const gi = g[i] * clip;
      m[i] = o.beta1 * m[i] + (1 - o.beta1) * gi;
      v[i] = o.beta2 * v[i] + (1 - o.beta2) * gi * gi;
      const mh = m[i] / (1 - o.beta1 ** this.t);
      const vh = v[i] / (1 - o.beta2 ** this.t);
      W[i] -= o.lr * (mh / (Math.sqrt(vh) + o.eps) + o.weightDecay * W[i]);
    }
    g.fill(0);
    return { gradNorm: norm };
  }
  disposed = false;
  dispose(): void {
    this.disposed = true;
  }
}

const live: Bigram[] = [];
const backend: ModelBackend = {
  async create(config, o) {
    const m = new Bigram(config, o.seed);
    live.push(m);
    return m;
  },
  async load(dir, o) {
    const c = await readCheckpoint(dir, { optimizer: o.optimizer });
    const m = new Bigram(c.config, 0);
    m.tensors = c.tensors;
    if (o.optimizer && c.optimizer) {
      m.m = c.optimizer.exp_avg;
      m.v = c.optimizer.exp_avg_sq;
      m.t = c.state?.step ?? 0;
    }
    live.push(m);
    return { model: m, tokenizer: c.tokenizer, state: c.state, dir: c.dir };
  },
  async save(model, dir, o) {
    const b = model as Bigram;
    await writeCheckpoint(dir, {
      config: b.config,
      tokenizer: o.tokenizer as TokenizerName,
      tensors: b.tensors,
      shapes: expectedTensorShapes(b.config),
      optimizer: { exp_avg: b.m, exp_avg_sq: b.v },
      state: o.state,
    });
  },
  async sample(_model, _prompt, n) {
    return Array.from({ length: n }, () => 97);
  },
};

let tmp: string;
let data: string;
beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gpte-trainer-'));
  fs.writeFileSync(path.join(tmp, 'text.txt'), 'abcabcabd abcab\n'.repeat(200));
  data = path.join(tmp, 'data');
  await prepare([path.join(tmp, 'text.txt')], { out: data, tokenizer: 'byte', valFraction: 0.1 });
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const model = { n_layer: 1, n_head: 1, n_embd: 8, n_positions: 16 };
const settings: Partial<TrainSettings> = { steps: 12, batch: 2, seq: 8, lr: 0.05, warmup: 2, eval_every: 4, checkpoint_every: 4, keep: 2, eval_windows: 4, sample_tokens: 5 };
let n = 0;
const out = () => path.join(tmp, `run-${n++}`);

test('learns, writes metrics, checkpoints (last K kept), latest, train.json and a sample', async () => {
  const dir = out();
  const evals: number[] = [];
  const r = await new Trainer({ model, settings, data, out: dir, backend, plot: false }).run({ onEval: (e) => evals.push(e.valLoss) });
  expect(r.step).toBe(12);
  expect(r.finished).toBe(true);
  expect(r.losses).toHaveLength(12);
  expect(r.losses[11]).toBeLessThan(r.losses[0]);
  expect(evals).toHaveLength(3);
  expect(r.sample).toBe('abcabcab' + 'aaaaa'); // the prompt (the first val bytes) and 5 sampled tokens
  expect(r.checkpoint).toBe(path.join(dir, 'checkpoints', 'step-12'));
  expect(fs.readdirSync(path.join(dir, 'checkpoints')).sort()).toEqual(['step-12', 'step-8']);
  expect(fs.readFileSync(path.join(dir, 'latest'), 'utf8').trim()).toBe('step-12');
  const lines = fs.readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  expect(lines.map((l) => l.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  expect(Object.keys(lines[3]).sort()).toEqual(['grad_norm', 'loss', 'lr', 'mfu', 'ms_per_step', 'step', 'tokens', 'tokens_per_s', 'val_loss', 'val_perplexity'].sort());
  const eff = JSON.parse(fs.readFileSync(path.join(dir, 'train.json'), 'utf8'));
  expect(eff.model.vocab_size).toBe(256);
  expect(eff.train.beta2).toBe(0.95);
  expect(eff.train.weight_decay).toBe(0.1);
  expect(live.every((m) => m.disposed)).toBe(true);
});

test('resume identity: stop-after then resume gives the same losses as one run', async () => {
  const full = await new Trainer({ model, settings, data, out: out(), backend, plot: false }).run();
  const dir = out();
  const first = await new Trainer({ model, settings, data, out: dir, backend, plot: false, stopAfter: 5 }).run();
  expect(first.step).toBe(5);
  expect(first.finished).toBe(false);
  expect(first.checkpoint).toBe(path.join(dir, 'checkpoints', 'step-5'));
  const second = await new Trainer({ resume: dir, backend, plot: false }).run();
  expect(second.step).toBe(12);
  expect([...first.losses, ...second.losses]).toEqual(full.losses);
  expect(second.valLoss).toBe(full.valLoss);
  const steps = fs.readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).step);
  expect(steps).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  // a checkpoint folder works as well as the run folder
  const again = await new Trainer({ resume: path.join(dir, 'checkpoints', 'step-8'), out: out(), backend, plot: false }).run();
  expect(again.losses).toEqual(full.losses.slice(8));
});

test('an abort finishes the step, checkpoints and returns interrupted', async () => {
  const dir = out();
  const ac = new AbortController();
  const r = await new Trainer({ model, settings, data, out: dir, backend, plot: false }).run({
    signal: ac.signal,
    onStep: (s) => {
      if (s.step === 3) ac.abort();
    },
  });
  expect(r.interrupted).toBe(true);
  expect(r.step).toBe(3);
  expect(r.checkpoint).toBe(path.join(dir, 'checkpoints', 'step-3'));
  const c = await readCheckpoint(dir, { optimizer: true });
  expect(c.state?.step).toBe(3);
});

test('a non-finite loss stops with the step named and keeps the last good checkpoint', async () => {
  const dir = out();
  const poisoning: ModelBackend = {
    ...backend,
    async create(config, o) {
      const m = (await backend.create(config, o)) as Bigram;
      const orig = m.forwardBackward.bind(m);
      let calls = 0;
      m.forwardBackward = (a, b, s) => {
        calls++;
        if (calls === 6) m.poison = true;
        return orig(a, b, s);
      };
      return m;
    },
  };
  const err = await new Trainer({ model, settings, data, out: dir, backend: poisoning, plot: false }).run().catch((e) => e);
  expect(err).toBeInstanceOf(NonFiniteError);
  expect(err.message).toMatch(/^Training stopped at step 6: the loss is NaN\. The last good checkpoint is .*step-4/);
  expect(fs.readFileSync(path.join(dir, 'latest'), 'utf8').trim()).toBe('step-4');
});

test('settings: clear errors, and resume keeps its recipe', async () => {
  const run = (o: object) => new Trainer({ model, data, out: out(), backend, plot: false, ...o }).run();
  await expect(run({ settings: { ...settings, batch_tokens: 20 } })).rejects.toThrow(
    'Expected a multiple of batch * seq = 16 for batch_tokens but received 20 (number): gradient accumulation runs whole micro-batches',
  );
  await expect(run({ settings: { ...settings, seq: 32 } })).rejects.toThrow('Expected seq <= n_positions (16) for seq but received 32 (number)');
  await expect(run({ settings: { ...settings, warmup: 50 } })).rejects.toThrow('Expected warmup <= steps (12) for warmup but received 50 (number)');
  await expect(run({ model: { ...model, vocab_size: 50257 }, settings })).rejects.toThrow(/The model's vocab_size is 50257 but the data in .* uses the byte tokenizer \(vocabulary 256\)/);
  expect(() => new Trainer({ settings: { lr: -1 } })).toThrow('Expected a finite number > 0 for lr but received -1 (number)');
  expect(() => new Trainer({ settings: { lrr: 1 } as never })).toThrow('Unknown key "lrr" in settings (did you mean "lr"?)');
  expect(() => new Trainer({ preset: 'tinyy' })).toThrow(/for preset but received "tinyy" \(string\) \(did you mean "tiny"\?\)/);
  expect(() => new Trainer({ resume: 'a', initFrom: 'b' })).toThrow(/either resume or initFrom/);
  await expect(run({ data: path.join(tmp, 'nope') })).rejects.toThrow(/Missing data folder .*nope/);

  const dir = out();
  await new Trainer({ model, settings, data, out: dir, backend, plot: false, stopAfter: 2 }).run();
  const before = fs.readdirSync(path.join(dir, 'checkpoints'));
  await expect(new Trainer({ resume: dir, backend, plot: false, settings: { lr: 0.01 } }).run()).rejects.toThrow(
    /Expected lr 0.05 \(the value the resumed run was trained with\) but received 0.01 \(number\): a resumed run keeps its recipe/,
  );
  await expect(new Trainer({ resume: dir, backend, plot: false, model: { n_embd: 16 } }).run()).rejects.toThrow(/Expected n_embd 8 \(the model in the checkpoint\) but received 16/);
  await expect(new Trainer({ model, settings, data, out: dir, backend, plot: false }).run()).rejects.toThrow(/already holds a run; resume it with --resume/);
  await expect(new Trainer({ resume: path.join(tmp, 'missing'), backend, plot: false }).run()).rejects.toThrow(/Missing folder .*missing for --resume/);
  expect(fs.readdirSync(path.join(dir, 'checkpoints'))).toEqual(before);
  // the run's data is gone
  const data2 = path.join(tmp, 'data-copy');
  fs.cpSync(data, data2, { recursive: true });
  const dir2 = out();
  await new Trainer({ model, settings, data: data2, out: dir2, backend, plot: false, stopAfter: 2 }).run();
  fs.rmSync(data2, { recursive: true });
  await expect(new Trainer({ resume: dir2, backend, plot: false }).run()).rejects.toThrow(/The run was trained on .*data-copy, which is missing; pass --data/);
  expect((await new Trainer({ resume: dir2, data, backend, plot: false, stopAfter: 1 }).run()).step).toBe(3);
  // --steps may grow on resume
  const more = await new Trainer({ resume: dir, backend, plot: false, settings: { steps: 14 } }).run();
  expect(more.step).toBe(14);
});

test('fine-tuning from a checkpoint starts at its loss', async () => {
  const dir = out();
  const a = await new Trainer({ model, settings, data, out: dir, backend, plot: false }).run();
  const b = await new Trainer({ initFrom: dir, settings: { ...settings, steps: 3, lr: 1e-9, warmup: 0 }, data, out: out(), backend, plot: false }).run();
  expect(b.config.init_from).toBe(path.join(dir, 'checkpoints', 'step-12'));
  // the first fine-tuning step is evaluated on the loaded weights, close to where training ended
  expect(Math.abs(b.losses[0] - a.losses[11])).toBeLessThan(0.3);
  expect(b.valLoss).toBeCloseTo(a.valLoss!, 4);
});

test('config files: model keys, training keys, unknown keys', () => {
  const p = parseTrainConfigFile({ preset: 'small', n_layer: 2, lr: 0.001, steps: 10, tokenizer: 'gpt2' });
  expect(p).toEqual({ preset: 'small', model: { n_layer: 2 }, settings: { lr: 0.001, steps: 10 }, tokenizer: 'gpt2' });
  expect(() => parseTrainConfigFile({ n_layers: 2 })).toThrow(/Unknown key "n_layers" in config file \(did you mean "n_layer"\?\)/);
  expect(() => parseTrainConfigFile({ steps: 0 })).toThrow('Expected a positive integer for steps but received 0 (number)');
  expect(() => parseTrainConfigFile([])).toThrow(/Expected an object for config file/);
});
