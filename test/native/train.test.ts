/**
 * The trainer on the native model (CPU): overfitting, the resume identity
 * (bitwise), fine-tuning from a checkpoint, NaN handling, and clear errors
 * for truncated/corrupted/mismatched checkpoints that leave folders as they
 * were. Models are tiny so the file runs in seconds.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { prepare } from '../../lib/data';
import { NonFiniteError } from '../../lib/errors';
import { GPT } from '../../lib/model';
import { evaluateCheckpoint, Trainer, TrainSettings } from '../../lib/trainer';

let tmp: string;
let data: string;
const model = { n_layer: 2, n_head: 2, n_embd: 32, n_positions: 32 };
const settings: Partial<TrainSettings> = {
  steps: 16,
  batch: 4,
  seq: 32,
  lr: 1e-2,
  warmup: 2,
  eval_every: 8,
  eval_windows: 8,
  checkpoint_every: 8,
  keep: 2,
  sample_tokens: 16,
  device: 'cpu',
};
let n = 0;
const out = () => path.join(tmp, `run-${n++}`);
const base = () => ({ model, settings, data, plot: false });

function snapshot(dir: string): Record<string, string> {
  const o: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else o[path.relative(dir, p)] = fs.readFileSync(p).toString('base64');
    }
  };
  walk(dir);
  return o;
}

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gpte-train-'));
  const text = 'It was the best of times, it was the worst of times, it was the age of wisdom.\n';
  fs.writeFileSync(path.join(tmp, 'text.txt'), text.repeat(60));
  data = path.join(tmp, 'data');
  await prepare([path.join(tmp, 'text.txt')], { out: data, tokenizer: 'byte', valFraction: 0.1 });
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('overfits a tiny model on repeated text', async () => {
  const r = await new Trainer({ ...base(), settings: { ...settings, steps: 300, lr: 1e-2, warmup: 10, eval_every: 300, checkpoint_every: 300 }, out: out() }).run();
  expect(r.losses[0]).toBeGreaterThan(4.5); // about ln 256 at the start
  expect(r.losses[r.losses.length - 1]).toBeLessThan(0.3);
  expect(r.valLoss!).toBeLessThan(0.3);
  expect(r.valLoss!).toBeLessThan(r.unigramEntropy - 2);
  expect(typeof r.sample).toBe('string');
});

test('resume identity: --steps 16 --stop-after 8, then resume = one uninterrupted run, bitwise', async () => {
  const full = await new Trainer({ ...base(), out: out() }).run();
  const dir = out();
  const a = await new Trainer({ ...base(), out: dir, stopAfter: 8 }).run();
  expect(a.step).toBe(8);
  const b = await new Trainer({ resume: dir, plot: false, settings: { device: 'cpu' } }).run();
  expect(b.step).toBe(16);
  const joined = [...a.losses, ...b.losses];
  expect(joined).toHaveLength(16);
  for (let i = 0; i < 16; i++) expect(Object.is(joined[i], full.losses[i])).toBe(true);
  expect(Object.is(b.valLoss, full.valLoss)).toBe(true);
  // the checkpoint loads as a model
  const m = await GPT.load(b.checkpoint!);
  expect(m.config.vocab_size).toBe(256);
  await m.dispose();
});

test('fine-tuning from a checkpoint starts at its loss', async () => {
  const dir = out();
  const src = await new Trainer({ ...base(), out: dir }).run();
  const ev = await evaluateCheckpoint({ checkpoint: dir, device: 'cpu', maxWindows: 8, seq: 32 });
  expect(ev.loss).toBeCloseTo(src.valLoss!, 5);
  const ft = await new Trainer({ initFrom: dir, data, plot: false, settings: { ...settings, steps: 2, warmup: 0, lr: 1e-6 }, out: out() }).run();
  // a fresh model starts near ln 256 = 5.5; the fine-tuned one where the source ended
  expect(Math.abs(ft.losses[0] - src.losses[src.losses.length - 1])).toBeLessThan(0.25);
  expect(ft.valLoss!).toBeCloseTo(src.valLoss!, 2);
});

test('a diverging run stops naming the step and keeps the last good checkpoint', async () => {
  const dir = out();
  const err = await new Trainer({
    ...base(),
    settings: { ...settings, steps: 60, lr: 1e30, warmup: 0, grad_clip: 0, weight_decay: 0, checkpoint_every: 1, keep: 1, eval_every: 1000 },
    out: dir,
  })
    .run()
    .catch((e) => e);
  expect(err).toBeInstanceOf(NonFiniteError);
  expect(err.message).toMatch(/^Training stopped at step (\d+): .*The last good checkpoint is .*step-\d+/);
  const stepN = Number(/step (\d+):/.exec(err.message)![1]);
  const latest = fs.readFileSync(path.join(dir, 'latest'), 'utf8').trim();
  expect(latest).toBe(`step-${stepN - 1}`);
  const m = await GPT.load(dir);
  await m.dispose();
});

test('truncated, corrupted, mismatched and missing checkpoints: clear errors, folders untouched', async () => {
  const dir = out();
  await new Trainer({ ...base(), out: dir, stopAfter: 8 }).run();
  const ck = path.join(dir, 'checkpoints', 'step-8');

  // mismatched config on resume
  let before = snapshot(dir);
  await expect(new Trainer({ resume: dir, plot: false, model: { n_embd: 64 } }).run()).rejects.toThrow(
    /Expected n_embd 32 \(the model in the checkpoint\) but received 64/,
  );
  await expect(new Trainer({ resume: dir, plot: false, settings: { batch: 2 } }).run()).rejects.toThrow(/Expected batch 4 \(the value the resumed run was trained with\)/);
  expect(snapshot(dir)).toEqual(before);

  // truncated model file
  const copy = path.join(tmp, 'truncated');
  fs.cpSync(ck, copy, { recursive: true });
  const mf = path.join(copy, 'model.safetensors');
  fs.truncateSync(mf, fs.statSync(mf).size - 10);
  before = snapshot(copy);
  await expect(new Trainer({ resume: copy, out: out(), plot: false }).run()).rejects.toMatchObject({ code: 'BAD_FILE' });
  expect(snapshot(copy)).toEqual(before);

  // corrupted state.json
  const copy2 = path.join(tmp, 'corrupt');
  fs.cpSync(ck, copy2, { recursive: true });
  fs.writeFileSync(path.join(copy2, 'state.json'), '{"version": 1, "step": "x"}');
  before = snapshot(copy2);
  await expect(new Trainer({ resume: copy2, out: out(), plot: false }).run()).rejects.toThrow(/state.json/);
  expect(snapshot(copy2)).toEqual(before);

  // weights only: no state.json
  const copy3 = path.join(tmp, 'weights-only');
  fs.cpSync(ck, copy3, { recursive: true });
  fs.rmSync(path.join(copy3, 'state.json'));
  fs.rmSync(path.join(copy3, 'optimizer.safetensors'));
  await expect(new Trainer({ resume: copy3, out: out(), plot: false }).run()).rejects.toThrow(/has no state.json: it holds weights only, so it cannot be resumed; use --init-from/);

  // missing files
  await expect(new Trainer({ resume: path.join(tmp, 'nowhere'), plot: false }).run()).rejects.toThrow(/Missing folder .*nowhere for --resume/);
  await expect(new Trainer({ initFrom: path.join(tmp, 'nowhere'), data, plot: false }).run()).rejects.toMatchObject({ code: 'BAD_FILE' });
  await expect(evaluateCheckpoint({ checkpoint: ck, data: path.join(tmp, 'nodata') })).rejects.toThrow(/Missing data folder/);

  // a Hugging Face GPT-2 folder loads for fine-tuning; its vocabulary must match the data
  const hf = path.join(__dirname, '..', 'fixtures', 'hf-gpt2-tiny', 'fp32');
  await expect(new Trainer({ initFrom: hf, data, plot: false, settings: { device: 'cpu' } }).run()).rejects.toThrow(
    /The model's vocab_size is 96 but the data in .* uses the byte tokenizer \(vocabulary 256\)/,
  );

  // tokenizer mismatch when fine-tuning
  const gdata = path.join(tmp, 'gdata');
  await prepare([path.join(tmp, 'text.txt')], { out: gdata, tokenizer: 'gpt2', valFraction: 0.1 });
  await expect(new Trainer({ initFrom: ck, data: gdata, plot: false }).run()).rejects.toThrow(/The model's vocab_size is 256 but the data in .* uses the gpt2 tokenizer|uses the byte tokenizer but the data/);
});
