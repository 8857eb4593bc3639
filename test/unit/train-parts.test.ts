/**
 * The pieces of the trainer under lib/train/ and lib/run-folder.ts, on their
 * own: the state.json fields written for resume and read back, metrics.jsonl
 * truncation on resume, the weighted mean loss, settings resolution and the
 * default run folder name. The loop that combines them is tested in
 * test/unit/trainer-config.test.ts.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { presetConfig } from '../../lib/config';
import { validateState } from '../../lib/checkpoint';
import type { Dataset } from '../../lib/data';
import { BadFileError } from '../../lib/errors';
import { defaultRunDir } from '../../lib/run-folder';
import { makeSchedule } from '../../lib/schedule';
import type { TrainModel } from '../../lib/train/backend';
import { meanLoss } from '../../lib/train/evaluate';
import { MetricsLog, stepLine } from '../../lib/train/metrics';
import { readResumeState, trainingState } from '../../lib/train/resume';
import { defaultSettings, resolveSettings } from '../../lib/train/settings';

const model = { ...presetConfig('tiny'), vocab_size: 256 };

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gpt-engine-train-parts-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('resume state', () => {
  const settings = { ...defaultSettings('tiny', model), steps: 50, warmup: 5 };
  const ds = { dir: 'data/x', train: { count: 1000 }, val: { count: 100 } } as unknown as Dataset;
  const state = trainingState({
    step: 20,
    settings,
    tokensSeen: 40960,
    sampler: { rng: { state: '123456789012345678', inc: '7' }, draws: 20 },
    schedule: makeSchedule({ lr: settings.lr, warmup: settings.warmup, total: settings.steps, minRatio: settings.min_lr_ratio }),
    ds,
    tokenizer: 'byte',
    preset: 'tiny',
    valLoss: 2.5,
    elapsedSeconds: 12,
  });

  test('what trainingState writes is a valid state.json and reads back', () => {
    expect(validateState(JSON.parse(JSON.stringify(state)))).toMatchObject({ version: 1, step: 20, total_steps: 50, tokens_seen: 40960, seed: settings.seed });
    const r = readResumeState(JSON.parse(JSON.stringify(state)), dir);
    expect(r).toEqual({
      step: 20,
      tokensSeen: 40960,
      preset: 'tiny',
      data: path.resolve('data/x'),
      settings,
      sampler: { rng: { state: '123456789012345678', inc: '7' }, draws: 20 },
    });
  });

  test('a state.json not written by the trainer is a clear BadFileError', () => {
    const missing = (drop: string) => {
      const s = JSON.parse(JSON.stringify(state)) as Record<string, unknown>;
      delete s[drop];
      return () => readResumeState(s, dir);
    };
    expect(missing('trainer')).toThrow(BadFileError);
    expect(missing('trainer')).toThrow(`${path.join(dir, 'state.json')} is missing trainer.settings`);
    expect(missing('data')).toThrow(/is missing data\.dir/);
    expect(missing('rng')).toThrow(/is missing the sampler state/);
    const bad = JSON.parse(JSON.stringify(state));
    bad.trainer.settings.beta1 = 2;
    expect(() => readResumeState(bad, dir)).toThrow(/beta1/);
  });
});

describe('metrics.jsonl', () => {
  const info = { step: 3, totalSteps: 9, loss: 2.25, lr: 1e-3, gradNorm: 0.5, tokensPerSecond: 1234.5678, msPerStep: 40, mfu: 0.0123456789, tokensSeen: 96, elapsedSeconds: 1 };

  test('stepLine rounds throughput and MFU only', () => {
    expect(stepLine(info)).toEqual({ step: 3, loss: 2.25, lr: 1e-3, grad_norm: 0.5, tokens_per_s: 1234.6, ms_per_step: 40, mfu: 0.01235, tokens: 96 });
    expect(stepLine({ ...info, mfu: null }).mfu).toBeNull();
  });

  test('opening after step N drops later lines (and unreadable ones), then appends', () => {
    const file = path.join(dir, 'metrics.jsonl');
    fs.writeFileSync(file, ['{"step":1}', '{"step":2}', '{"step":3}', 'not json', '{"step":4}'].join('\n') + '\n');
    const log = new MetricsLog(file, 2);
    log.write({ step: 3, loss: 1 });
    log.close();
    expect(fs.readFileSync(file, 'utf8')).toBe('{"step":1}\n{"step":2}\n{"step":3,"loss":1}\n');
    expect(fs.readdirSync(dir)).toEqual(['metrics.jsonl']);
  });

  test('a new log starts empty; a log with nothing to drop is left as it is', () => {
    const file = path.join(dir, 'metrics.jsonl');
    new MetricsLog(file, 0).close();
    expect(fs.readFileSync(file, 'utf8')).toBe('');
    fs.writeFileSync(file, '{"step":1}\n{"step":2}');
    const before = fs.statSync(file).ino;
    new MetricsLog(file, 5).close();
    expect(fs.readFileSync(file, 'utf8')).toBe('{"step":1}\n{"step":2}');
    expect(fs.statSync(file).ino).toBe(before);
  });
});

test('meanLoss weights each window equally', async () => {
  const seen: number[][] = [];
  const fake = {
    loss: (_t: Int32Array, _y: Int32Array, s: { batch: number; seq: number }) => {
      seen.push([s.batch, s.seq]);
      return s.batch === 3 ? 1 : 4;
    },
  } as unknown as TrainModel;
  const b = (batch: number) => ({ tokens: new Int32Array(batch * 2), targets: new Int32Array(batch * 2), batch });
  const r = await meanLoss(fake, [b(3), b(1)], 2);
  expect(r).toEqual({ loss: (3 * 1 + 1 * 4) / 4, windows: 4 });
  expect(seen).toEqual([
    [3, 2],
    [1, 2],
  ]);
});

describe('resolveSettings', () => {
  test('a new run derives warmup and batch_tokens from what was given', () => {
    const s = resolveSettings({ steps: 100, batch: 4, seq: 32, lr: undefined }, 'tiny', model, null);
    expect(s).toMatchObject({ steps: 100, warmup: 5, batch: 4, seq: 32, batch_tokens: 128, lr: defaultSettings('tiny', model).lr });
    expect(resolveSettings({ batch: 4, seq: 32, batch_tokens: 512 }, 'tiny', model, null).batch_tokens).toBe(512);
    expect(() => resolveSettings({ batch: 4, seq: 32, batch_tokens: 100 }, 'tiny', model, null)).toThrow(/multiple of batch \* seq = 128 for batch_tokens/);
    expect(() => resolveSettings({ seq: model.n_positions + 1 }, 'tiny', model, null)).toThrow(/seq <= n_positions/);
    expect(() => resolveSettings({ steps: 10, warmup: 11 }, 'tiny', model, null)).toThrow(/warmup <= steps \(10\)/);
  });

  test('a resumed run keeps its recipe and takes other settings', () => {
    const prev = resolveSettings({ steps: 100, batch: 4, seq: 32 }, 'tiny', model, null);
    expect(resolveSettings({ steps: 200, keep: 1, lr: prev.lr }, 'tiny', model, prev)).toEqual({ ...prev, steps: 200, keep: 1 });
    expect(() => resolveSettings({ lr: prev.lr * 2 }, 'tiny', model, prev)).toThrow(`Expected lr ${prev.lr} (the value the resumed run was trained with)`);
  });
});

test('defaultRunDir: runs/<YYYYMMDD-HHMMSS> in local time, under the working folder', () => {
  expect(defaultRunDir(new Date(2024, 0, 2, 3, 4, 5))).toBe(path.resolve('runs', '20240102-030405'));
});
