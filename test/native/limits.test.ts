/**
 * Resource limits: lib/limits.ts's estimate against what the core
 * really allocates, refusals before allocating (gpt3-175b on the CPU, absurd
 * batches) with the estimate and what would fit, and clear errors for absurd
 * arguments. The absurd batch on a live model runs in a child process, so a
 * request the engine failed to refuse would show up as a failed test rather
 * than the OS killing jest.
 */
import * as path from 'node:path';

import { GPTConfig, presetConfig } from '../../lib/config';
import { ArgumentRangeError, ArgumentTypeError, OutOfMemoryError } from '../../lib/errors';
import {
  availableMemory,
  checkFits,
  coreActivationBytes,
  estimateMemory,
  formatBytes,
  kvCacheBytes,
  largestBatch,
  largestSeq,
  parseMemoryLimit,
  stateFloats,
} from '../../lib/limits';
import { GPT } from '../../lib/model';
import { loadAddon } from '../../lib/native';
import { describeExit, distFile, runNode } from '../helpers/child-util';
import { tinyConfig } from './shared/setup';

const GiB = 2 ** 30;
const TINY: GPTConfig = tinyConfig();

function oom(fn: () => unknown): OutOfMemoryError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(OutOfMemoryError);
    expect((e as OutOfMemoryError).code).toBe('OUT_OF_MEMORY');
    return e as OutOfMemoryError;
  }
  throw new Error('expected an OutOfMemoryError');
}

describe('the estimate is what the core allocates', () => {
  const configs: GPTConfig[] = [
    TINY,
    { ...TINY, n_layer: 3, n_head: 3, n_embd: 24, vocab_size: 130, attention_pattern: 'alternating', attention_window: 4 },
    { ...TINY, n_layer: 1, n_head: 1, n_embd: 5, vocab_size: 1, n_positions: 9 },
  ];
  test.each(configs.map((c, i) => [i, c] as const))('config %i: parameters, gradients, moments, activations', async (_i, cfg) => {
    const model = await GPT.create(cfg, { device: 'cpu', seed: 3 });
    try {
      const est = estimateMemory({ config: cfg, device: 'cpu' });
      const mem = model.memory();
      expect(est.params).toBe(mem.params);
      expect(est.grads).toBe(mem.grads);
      expect(est.optimizer).toBe(mem.optimizer);
      expect(4 * stateFloats(cfg)).toBe(mem.params);
      // Activations grow to the largest batch x seq seen (they depend on the product only).
      let cap = 0;
      for (const [b, t] of [
        [1, 1],
        [3, 7],
        [2, cfg.n_positions],
        [5, 3],
      ]) {
        const tok = new Int32Array(b * t).fill(0);
        await model.forwardBackward(tok, tok, { batch: b, seq: t });
        model.zeroGrad();
        cap = Math.max(cap, b * t);
        expect(model.memory().activations).toBe(coreActivationBytes(cfg, cap, 1));
        const e = estimateMemory({ config: cfg, device: 'cpu', batch: b, seq: t });
        expect(e.activations).toBe(coreActivationBytes(cfg, b, t));
        expect(e.total).toBe(e.params + e.grads + e.optimizer + e.activations);
      }
    } finally {
      await model.dispose();
    }
  });

  test('activations depend on batch x seq only, and grow linearly with it but for one chunk of logits', () => {
    const c = presetConfig('gpt2');
    const chunk = 512 * 50304 * 4; // the fused classifier's buffer: 512 rows of the padded vocabulary, at most
    expect(coreActivationBytes(c, 4, 256)).toBe(coreActivationBytes(c, 2, 512));
    // 1024 and 8192 rows both hold one chunk of 512 rows, never [B*T, Vp].
    expect(coreActivationBytes(c, 8, 1024)).toBe(8 * (coreActivationBytes(c, 1, 1024) - chunk) + chunk);
    // Below 512 rows the chunk is the batch itself.
    expect(coreActivationBytes(c, 2, 128)).toBe(2 * coreActivationBytes(c, 1, 128));
  });

  test('key/value cache: dense layers hold every position, banded ones the window', () => {
    const c: GPTConfig = { ...TINY, n_layer: 2, attention_pattern: 'alternating', attention_window: 4 };
    // layer 0 dense: 10 slots; layer 1 banded: 4 slots; K and V of n_embd each; fp32
    expect(kvCacheBytes(c, [10])).toBe(4 * 2 * 32 * (10 + 4));
    expect(kvCacheBytes(c, [10, 2])).toBe(4 * 2 * 32 * (10 + 4 + 2 + 2));
  });
});

describe('the core reports its own layout (memoryLayout)', () => {
  // The model's own figures; the CUDA backend's scratch (0 without CUDA) is
  // not among them (test/cuda/host-syncs.test.ts checks it).
  const layout = (o: Parameters<ReturnType<typeof loadAddon>['memoryLayout']>[0]) => {
    const { scratch: _s, ...r } = loadAddon().memoryLayout(o);
    return r;
  };

  test('the figures equal what a created model reports, before and after calls of several sizes', async () => {
    const cfg: GPTConfig = { ...TINY, n_layer: 3, n_head: 2, n_embd: 22, vocab_size: 101, attention_pattern: 'alternating', attention_window: 3 };
    const model = await GPT.create(cfg, { device: 'cpu', seed: 1 });
    try {
      const { total: _t0, ...fresh } = model.memory();
      expect(layout({ config: cfg })).toEqual({ ...fresh, activations: 0 });
      expect(fresh.activations).toBe(0);
      let rows = 0;
      for (const [b, t] of [
        [2, 5],
        [1, 3],
        [4, cfg.n_positions],
      ]) {
        const tok = new Int32Array(b * t).fill(1);
        await model.forwardBackward(tok, tok, { batch: b, seq: t });
        model.zeroGrad();
        // The activations grow to the largest batch x seq seen.
        if (b * t > rows) rows = b * t;
        const { total: _t, ...mem } = model.memory();
        expect(mem).toEqual(layout({ config: cfg, batch: rows, seq: 1 }));
        expect(mem.activations).toBeGreaterThan(0);
      }
      // batch 1 x seq 2 after 4 x 17: still the larger block.
      expect(model.memory().activations).toBe(layout({ config: cfg, batch: 4, seq: cfg.n_positions }).activations);
    } finally {
      await model.dispose();
    }
  });

  test('bf16 storage (CUDA in bf16): the stored activations take 2 bytes, params add a bf16 weight copy', () => {
    const cfg: GPTConfig = { ...TINY, n_layer: 2, n_head: 2, n_embd: 32, vocab_size: 101 };
    const C = cfg.n_embd;
    const B = 3, T = 16, M = B * T;
    const f32 = layout({ config: cfg, batch: B, seq: T });
    const b16 = layout({ config: cfg, batch: B, seq: T, storage: 'bf16' });
    expect(layout({ config: cfg, batch: B, seq: T, storage: 'fp32' })).toEqual(f32);
    expect(b16.grads).toBe(f32.grads);
    expect(b16.optimizer).toBe(f32.optimizer);
    expect(b16.params).toBe(f32.params * 1.5);
    // Per layer ln1, qkv, att, ln2, fch, fchg (1 + 3 + 1 + 1 + 4 + 4 = 14 C) and
    // ln_f once are stored in bf16: 2 bytes less per element (each buffer here
    // is a multiple of 64 bytes in both types, so no rounding differs).
    expect(f32.activations - b16.activations).toBe(2 * M * C * (14 * cfg.n_layer + 1));
    expect(() => layout({ config: cfg, storage: 'fp16' as 'bf16' })).toThrow(/storage but received 'fp16'/);
  });

  test('accumulating a second micro-batch adds one gradient-sized buffer, counted by memory() and by the estimate', async () => {
    const model = await GPT.create(TINY, { device: 'cpu', seed: 2 });
    try {
      const tok = new Int32Array(2 * 8).fill(3);
      await model.forwardBackward(tok, tok, { batch: 2, seq: 8 });
      const one = model.memory();
      expect(one.grads).toBe(one.params);
      await model.forwardBackward(tok, tok, { batch: 2, seq: 8 });
      const two = model.memory();
      expect(two.grads).toBe(2 * two.params);
      expect(two.total - one.total).toBe(two.params);
      const est = estimateMemory({ config: TINY, batch: 2, seq: 8, accumulation: true });
      expect(est.grads).toBe(two.grads);
      expect(est.total).toBe(two.total);
      // The buffer is kept: a step and more single micro-batches do not free it.
      await model.step({ lr: 1e-3 });
      await model.forwardBackward(tok, tok, { batch: 2, seq: 8 });
      expect(model.memory().grads).toBe(2 * two.params);
    } finally {
      await model.dispose();
    }
    const e = oom(() => checkFits({ config: TINY, batch: 2, seq: 8, accumulation: true, available: 1000 }));
    expect(e.message).toMatch(/gradients [^,]* \(the sum and the accumulation buffer\)/);

    // A live model whose memory would not hold the buffer: the second micro-batch is refused before any native work.
    const saved = process.env.GPT_ENGINE_MEMORY_LIMIT;
    // (The limit caps what may still be allocated: set to half a gradient buffer once the first micro-batch ran.)
    const small = await GPT.create(TINY, { device: 'cpu', seed: 2 });
    try {
      const tok = new Int32Array(2 * 8).fill(3);
      await small.forwardBackward(tok, tok, { batch: 2, seq: 8 });
      process.env.GPT_ENGINE_MEMORY_LIMIT = String(Math.floor(small.memory().grads / 2));
      expect(() => small.forwardBackward(tok, tok, { batch: 2, seq: 8 })).toThrow(OutOfMemoryError);
      expect(small.memory().grads).toBe(small.memory().params);
      await small.step({ lr: 1e-3 });
      await small.forwardBackward(tok, tok, { batch: 2, seq: 8 });
    } finally {
      if (saved === undefined) delete process.env.GPT_ENGINE_MEMORY_LIMIT;
      else process.env.GPT_ENGINE_MEMORY_LIMIT = saved;
      await small.dispose();
    }
  });

  test('hand-checked figures for a tiny config', () => {
    // n_layer 1, C 2, H 1, n_positions 3, V 5 (Vp 64): every tensor starts on
    // 16 floats: wte 64*2 = 128, wpe 6 -> 16, per layer ln_1 2 x 16, c_attn
    // 12 -> 16 and 6 -> 16, c_proj 4 -> 16 and 2 -> 16, ln_2 2 x 16, c_fc 16
    // and 8 -> 16, mlp proj 16 and 2 -> 16 (12 x 16 = 192), ln_f 2 x 16.
    const c: GPTConfig = { ...TINY, n_layer: 1, n_head: 1, n_embd: 2, n_positions: 3, vocab_size: 5 };
    const floats = 128 + 16 + 192 + 32;
    expect(layout({ config: c })).toEqual({ params: 4 * floats, grads: 4 * floats, optimizer: 8 * floats, activations: 0 });
    // One row: 13 buffers per layer and 11 after, each at most 64 floats
    // (the classifier's chunk of logits: one row of Vp = 64), rounded to 16:
    // layer 13 x 16, then 10 x 16 (the row's loss, a double, among them) +
    // 64; plus a token and a target id.
    expect(layout({ config: c, batch: 1, seq: 1 }).activations).toBe(4 * (13 * 16 + 10 * 16 + 64) + 8);
  });

  test('absurd sizes saturate to Infinity instead of wrapping; bad arguments are named', () => {
    const big = presetConfig('gpt3-175b');
    const r = layout({ config: big, batch: 2 ** 53, seq: 2048 });
    expect(r.activations).toBe(Infinity);
    expect(Number.isFinite(r.params)).toBe(true);
    expect(formatBytes(Infinity)).toBe('more than 2^63 bytes');
    expect(estimateMemory({ config: 'gpt3-175b', batch: 2 ** 52, seq: 2048 }).fits).toBe(false);
    expect(() => layout({ config: big, batch: 1 } as never)).toThrow('Expected batch and seq together (or neither)');
    expect(() => layout({ config: { ...big, n_embd: 0 } })).toThrow('for n_embd but received 0');
  });
});

describe('refusals name the estimate and what would fit', () => {
  test('gpt3-175b on the CPU: refused with the pieces of the estimate and a smaller preset', () => {
    const e = oom(() => checkFits({ config: 'gpt3-175b', device: 'cpu', available: 20 * GiB }));
    expect(e.message).toMatch(/^The preset gpt3-175b needs about [0-9,]+ MiB = 2\.[0-9]+ TiB on the CPU in fp32 \(weights [0-9,]+ MiB, gradients [0-9,]+ MiB, AdamW moments [0-9,]+ MiB\), but only 20,480 MiB = 20\.0 GiB is available \(the given limit\)\./);
    // 16 bytes per parameter: about 2.8 TB
    const est = estimateMemory({ config: 'gpt3-175b', device: 'cpu' });
    expect(est.total / 174.6e9).toBeGreaterThan(16);
    expect(est.total / 174.6e9).toBeLessThan(16.1);
    // The suggestion is the largest buildable preset that fits in 20 GiB with
    // room to train it at batch 1 over its full context.
    const m = /What fits: a smaller model such as the preset (\S+) \([0-9,]+ MiB = [0-9.]+ GiB at batch 1 x seq (\d+)\)\.$/.exec(e.message);
    expect(m).not.toBeNull();
    const [name, seq] = [m![1], Number(m![2])];
    expect(estimateMemory({ config: name, batch: 1, seq, available: 20 * GiB }).fits).toBe(true);
    expect(name).toBe('gpt2-large');
    for (const bigger of ['gpt3-xl', 'gpt2-xl', 'gpt3-2.7b'])
      expect(estimateMemory({ config: bigger, batch: 1, seq: presetConfig(bigger).n_positions, available: 20 * GiB }).fits).toBe(false);
  });

  test('gpt3-175b on this machine, with the real free memory', () => {
    // (No machine that runs CI has 2.8 TB of RAM.)
    const e = oom(() => checkFits({ config: 'gpt3-175b', device: 'cpu', batch: 1, seq: 2048 }));
    expect(e.message).toContain('activations for batch 1 x seq 2048');
    expect(e.message).toMatch(/is available \(free memory now, of [0-9,]+ MiB/);
    expect(e.message).toMatch(/What fits: a smaller model such as the preset \S+ \(.* at batch 1 x seq (1024|2048)\)\.|Not even the smallest preset fits\./);
  });

  test('a batch too large: the largest batch and sequence that fit', () => {
    const budget = 8 * GiB;
    const e = oom(() => checkFits({ config: 'gpt2', batch: 64, seq: 1024, available: budget }));
    const m = /What fits: batch (\d+) at seq 1024, or seq (\d+) at batch 64\.$/.exec(e.message);
    expect(m).not.toBeNull();
    const b = Number(m![1]);
    const t = Number(m![2]);
    // Tight: b and t fit, one more does not.
    expect(estimateMemory({ config: 'gpt2', batch: b, seq: 1024, available: budget }).fits).toBe(true);
    expect(estimateMemory({ config: 'gpt2', batch: b + 1, seq: 1024, available: budget }).fits).toBe(false);
    expect(estimateMemory({ config: 'gpt2', batch: 64, seq: t, available: budget }).fits).toBe(true);
    expect(estimateMemory({ config: 'gpt2', batch: 64, seq: t + 1, available: budget }).fits).toBe(false);
    expect(b).toBeGreaterThan(1);
    expect(b).toBeLessThan(64);
  });

  test('a model that fits but not even at batch 1 x full context falls back to shorter sequences', () => {
    const state = estimateMemory({ config: 'gpt2' }).total;
    const budget = state + coreActivationBytes(presetConfig('gpt2'), 1, 100);
    // 100 rows fit: at batch 4, seq 25; at batch 200 not even seq 1, so seq 100 at batch 1.
    const e = oom(() => checkFits({ config: 'gpt2', batch: 4, seq: 1024, available: budget }));
    expect(e.message).toMatch(/What fits: seq 25 at batch 4\.$/);
    const e2 = oom(() => checkFits({ config: 'gpt2', batch: 200, seq: 1024, available: budget }));
    expect(e2.message).toMatch(/What fits: seq 100 at batch 1\.$/);
  });

  test('a live model: what it already holds is not counted twice', () => {
    const full = estimateMemory({ config: TINY, batch: 4, seq: 16 });
    expect(checkFits({ config: TINY, batch: 4, seq: 16, held: full.total - 1000, available: 1000 }).needed).toBe(1000);
    const e = oom(() => checkFits({ config: TINY, batch: 4, seq: 16, held: full.params * 4, available: 1000 }));
    expect(e.message).toMatch(/of which the model already holds/);
    expect(largestBatch({ config: TINY, device: 'cpu', precision: 'fp32', logits: false, held: 0 }, 16, full.total)).toBe(4);
    expect(largestSeq({ config: TINY, device: 'cpu', precision: 'fp32', logits: false, held: 0 }, 4, full.total)).toBe(16);
  });

  test('bf16 on CUDA counts the bf16 weight copy; forward() counts the logits it returns', () => {
    const cpu = estimateMemory({ config: 'gpt2', device: 'cpu', precision: 'bf16', available: 1e12 });
    const gpu = estimateMemory({ config: 'gpt2', device: 'cuda', precision: 'bf16', available: 1e12 });
    expect(cpu.lowPrecisionCopy).toBe(0);
    expect(gpu.lowPrecisionCopy).toBeGreaterThan(0.24e9);
    const f = estimateMemory({ config: 'gpt2', batch: 2, seq: 8, logits: true, available: 1e12 });
    expect(f.logits).toBe(4 * 2 * 8 * 50257);
  });

  test('refusing is instant and allocates nothing', () => {
    const rss0 = process.memoryUsage().rss;
    const t0 = Date.now();
    for (let i = 0; i < 20; i++) oom(() => checkFits({ config: 'gpt3-175b', device: 'cpu', batch: 8, seq: 2048 }));
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(process.memoryUsage().rss - rss0).toBeLessThan(64 * 2 ** 20);
  });

  test('GPT_ENGINE_MEMORY_LIMIT caps what is available', () => {
    const saved = process.env.GPT_ENGINE_MEMORY_LIMIT;
    try {
      process.env.GPT_ENGINE_MEMORY_LIMIT = '256M';
      const m = availableMemory('cpu');
      expect(m.available).toBe(256 * 2 ** 20);
      expect(m.source).toBe('GPT_ENGINE_MEMORY_LIMIT=256M');
      const e = oom(() => checkFits({ config: 'gpt2' }));
      expect(e.message).toContain('(GPT_ENGINE_MEMORY_LIMIT=256M)');
      expect(e.message).toMatch(/What fits: a smaller model such as the preset (tiny|small) \(.* at batch 1 x seq 256\)\.$/);
      process.env.GPT_ENGINE_MEMORY_LIMIT = 'lots';
      expect(() => availableMemory('cpu')).toThrow(
        'Expected a byte count such as 8G, 512M or 1073741824 for GPT_ENGINE_MEMORY_LIMIT but received "lots" (string)',
      );
    } finally {
      if (saved === undefined) delete process.env.GPT_ENGINE_MEMORY_LIMIT;
      else process.env.GPT_ENGINE_MEMORY_LIMIT = saved;
    }
    expect(parseMemoryLimit('1073741824')).toBe(GiB);
    expect(parseMemoryLimit('1.5G')).toBe(1.5 * GiB);
    expect(parseMemoryLimit('2TiB')).toBe(2 * 2 ** 40);
    expect(() => parseMemoryLimit('0')).toThrow(ArgumentRangeError);
  });

  test('byte formatting', () => {
    expect(formatBytes(5 * 2 ** 20)).toBe('5.0 MiB');
    expect(formatBytes(123 * 2 ** 20)).toBe('123 MiB');
    expect(formatBytes(3 * GiB, true)).toBe('3,072 MiB = 3.0 GiB');
    expect(formatBytes(2.5 * 2 ** 40, true)).toBe('2,621,440 MiB = 2.50 TiB');
  });
});

describe('absurd arguments get clear errors', () => {
  test.each([
    [{ config: 'gpt2', batch: 0, seq: 8 }, ArgumentRangeError, 'Expected a positive integer for batch but received 0 (number)'],
    [{ config: 'gpt2', batch: 1.5, seq: 8 }, ArgumentRangeError, 'Expected a positive integer for batch but received 1.5 (number)'],
    [{ config: 'gpt2', batch: '8', seq: 8 }, ArgumentTypeError, 'Expected a positive integer for batch but received "8" (string)'],
    [{ config: 'gpt2', batch: 8, seq: 1025 }, ArgumentRangeError, 'Expected an integer between 1 and 1024 (n_positions) for seq but received 1025 (number)'],
    [{ config: 'gpt2', batch: 8 }, ArgumentRangeError, 'Expected batch and seq together (or neither) for seq but received undefined'],
    [{ config: 'gpt2', batch: 1e300, seq: 8 }, ArgumentRangeError, 'Expected a positive integer <= 9007199254740991 for batch but received 1e+300 (number)'],
    [{ config: 'gpt4', batch: 1, seq: 8 }, ArgumentRangeError, 'for preset but received "gpt4" (string)'],
    [{ config: 'gpt2', device: 'tpu' }, ArgumentRangeError, 'Expected one of "cpu", "cuda" for device but received "tpu" (string)'],
    [{ config: 'gpt2', bacth: 8 }, ArgumentRangeError, 'bacth'],
  ] as const)('%j', (req, cls, msg) => {
    expect(() => checkFits(req as never)).toThrow(cls);
    expect(() => checkFits(req as never)).toThrow(msg);
  });

  test('a batch of a billion rows is refused before allocating, with what fits', () => {
    const e = oom(() => checkFits({ config: 'gpt2', batch: 1e9, seq: 1024 }));
    expect(e.message).toMatch(/activations for batch 1000000000 x seq 1024 [0-9,]+ MiB/);
    expect(e.message).toMatch(/What fits: batch \d+ at seq 1024/);
  });

  test('a live model asked for an absurd batch fails cleanly and keeps working (child process)', async () => {
    const script = path.join(__dirname, '..', 'helpers', 'child-absurd.js');
    distFile('lib/model.js');
    const r = await runNode([script, JSON.stringify({ mode: 'batch', batch: 4096, seq: 4096 })], { timeoutMs: 60000 });
    if (r.code !== 0) throw new Error(`the child did not finish cleanly: ${describeExit(r)}`);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
    expect(out.crashed).toBeUndefined();
    expect(out.absurd.ok).toBe(false);
    expect(out.absurd.code).toBe('OUT_OF_MEMORY');
    expect(out.absurd.message).toMatch(/batch 4096 x seq 4096/);
    expect(Number.isFinite(out.after)).toBe(true);
    // Nothing of the refused request was kept.
    expect(out.rssMiB).toBeLessThan(1024);
  });
});

describe('GPT.create on a model far beyond the machine', () => {
  test('a config within the validator limits but 275 GB big fails cleanly (child process)', async () => {
    const script = path.join(__dirname, '..', 'helpers', 'child-absurd.js');
    distFile('lib/model.js');
    const config = { ...TINY, n_positions: 1 << 24, n_embd: 4096, n_head: 16 };
    const r = await runNode([script, JSON.stringify({ mode: 'create', config })], { timeoutMs: 60000 });
    if (r.code !== 0) throw new Error(`the child did not finish cleanly: ${describeExit(r)}`);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
    expect(out.create).toMatchObject({ ok: false, code: 'OUT_OF_MEMORY' });
    expect(out.rssMiB).toBeLessThan(1024);
    // and checkFits says so before anything is allocated, with the size
    const e = oom(() => checkFits({ config }));
    expect(e.message).toMatch(/^A model with 2 layers and d 4096 needs about [0-9,]+ MiB = 1\.0\d TiB/);
  });

  test('absurd generation requests get clear errors', async () => {
    const m = await GPT.create({ ...TINY, n_positions: 16 }, { device: 'cpu' });
    try {
      await expect(m.generate(new Int32Array([1]), { maxTokens: 1e9 })).rejects.toThrow(
        'Expected a positive integer <= 1000000 for maxTokens but received 1000000000 (number)',
      );
      await expect(m.generate(new Int32Array([1]), { maxTokens: NaN })).rejects.toThrow('Expected a positive integer for maxTokens but received NaN (number)');
      await expect(m.generate(new Int32Array([]), { maxTokens: 2 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      await expect(m.generate(Array.from({ length: 70000 }, () => new Int32Array([1])), { maxTokens: 2 })).rejects.toThrow(
        'Expected between 1 and 65536 sequences to decode',
      );
      expect(() => m.forwardBackward(new Int32Array(16), new Int32Array(16), { batch: 2 ** 30, seq: 16 })).toThrow(
        'Expected a positive integer <= 16777216 for batch but received 1073741824 (number)',
      );
    } finally {
      await m.dispose();
    }
  });

  test('gpt3-175b on the CPU is an OutOfMemoryError, not a crash, and holds no memory afterwards', async () => {
    const rss0 = process.memoryUsage().rss;
    const t0 = Date.now();
    const err = await GPT.create('gpt3-175b', { device: 'cpu' }).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err).toMatchObject({ code: 'OUT_OF_MEMORY', name: 'OutOfMemoryError' });
    // refused by the estimate before the core allocated anything
    expect(err!.message).toMatch(/^The preset gpt3-175b needs about/);
    expect(err!.message).toMatch(/What fits/i);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(process.memoryUsage().rss - rss0).toBeLessThan(256 * 2 ** 20);
  });
});
