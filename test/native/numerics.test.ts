/**
 * Numerics: very large scores and long sequences stay finite in the
 * fused attention (lib/attention.ts), and very large logits stay finite in the
 * model's cross-entropy, in fp32 and bf16, against float64 references; a NaN
 * born of a bad learning rate is caught at the step where it appears
 * (docs/ARCHITECTURE.md "Gradients": NONFINITE, weights and moments unchanged) and the model
 * remains usable.
 */
import * as attention from '../../lib/attention';
import { GPTConfig } from '../../lib/config';
import { NonFiniteError } from '../../lib/errors';
import { GPT, PrecisionName } from '../../lib/model';
import { Rng } from '../../lib/rng';
import { randomArray, refBackward, refForward, refRow, relL2 } from '../helpers/attention-ref';
import { refModel, toF64 } from '../helpers/model-ref';
import { tinyConfig } from './shared/setup';

const allFinite = (a: ArrayLike<number>) => {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) return false;
  return true;
};

describe('attention: large scores', () => {
  const B = 1;
  const H = 2;
  const T = 96;
  const D = 64;
  const n = B * H * T * D;
  // amp^2 * D / sqrt(D) / 3 is the scale of the scores: ~3e1, ~3e5, ~3e9, ~3e13
  test.each([
    ['dense', 2],
    ['dense', 200],
    ['dense', 2e4],
    ['banded', 2e6],
  ] as const)('%s, inputs up to %d: finite, convex in v, lse to float64 precision', async (pattern, amp) => {
    const q = randomArray(n, 11, amp);
    const k = randomArray(n, 12, amp);
    const v = randomArray(n, 13, 1);
    const window = pattern === 'banded' ? 17 : T;
    const shape = { batch: B, heads: H, seq: T, headDim: D, pattern, ...(pattern === 'banded' ? { window } : {}), device: 'cpu' as const };
    const f = await attention.forward({ ...shape, q, k, v });
    expect(allFinite(f.out)).toBe(true);
    expect(allFinite(f.lse)).toBe(true);
    const ref = refForward({ batch: B, heads: H, seq: T, headDim: D, window, scale: 1 / Math.sqrt(D) }, q, k, v);
    // lse: relative to its own size (it is about the largest score).
    for (let i = 0; i < ref.lse.length; i++) expect(Math.abs(f.lse[i] - ref.lse[i])).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(ref.lse[i])));
    // Outputs are averages of v: inside [-1, 1]. With small scores, equal to the reference.
    for (let i = 0; i < n; i++) expect(Math.abs(f.out[i])).toBeLessThanOrEqual(1 + 1e-6);
    if (amp <= 2) expect(relL2(f.out, ref.out)).toBeLessThan(1e-5);
    // Backward: finite everywhere.
    const dOut = randomArray(n, 14, 1);
    const g = await attention.backward({ ...shape, q, k, v, out: f.out, lse: f.lse, dOut });
    expect(allFinite(g.dq) && allFinite(g.dk) && allFinite(g.dv)).toBe(true);
    if (amp <= 2) {
      const rb = refBackward({ batch: B, heads: H, seq: T, headDim: D, window, scale: 1 / Math.sqrt(D) }, q, k, v, dOut);
      expect(relL2(g.dv, rb.dv)).toBeLessThan(1e-4);
      expect(relL2(g.dq, rb.dq)).toBeLessThan(1e-4);
    }
  });

  test('every score equal and huge (1e30): a uniform average, not NaN', async () => {
    const T2 = 40;
    const D2 = 16;
    const big = 1e15; // q.k = 16 * 1e30 per pair, scaled by 1/4: 4e30 (fp32 max is 3.4e38)
    const q = new Float32Array(T2 * D2).fill(big);
    const k = new Float32Array(T2 * D2).fill(big);
    const v = Float32Array.from({ length: T2 * D2 }, (_, i) => Math.floor(i / D2)); // row j holds j
    const f = await attention.forward({ batch: 1, heads: 1, seq: T2, headDim: D2, pattern: 'dense', q, k, v, device: 'cpu' });
    expect(allFinite(f.out)).toBe(true);
    for (let i = 0; i < T2; i++) expect(f.out[i * D2]).toBeCloseTo(i / 2, 3); // mean of 0..i
    const g = await attention.backward({ batch: 1, heads: 1, seq: T2, headDim: D2, pattern: 'dense', q, k, v, out: f.out, lse: f.lse, dOut: v, device: 'cpu' });
    expect(allFinite(g.dq) && allFinite(g.dk) && allFinite(g.dv)).toBe(true);
  });
});

describe('attention: long sequences', () => {
  test.each([
    ['dense', 4096, 4096],
    ['banded', 16384, 256],
  ] as const)('%s, seq %d (window %d): finite, rows equal to float64', async (pattern, T, window) => {
    const D = 64;
    const n = T * D;
    const q = randomArray(n, 21, 3);
    const k = randomArray(n, 22, 3);
    const v = randomArray(n, 23, 1);
    const shape = { batch: 1, heads: 1, seq: T, headDim: D, pattern, ...(pattern === 'banded' ? { window } : {}), device: 'cpu' as const };
    const f = await attention.forward({ ...shape, q, k, v });
    expect(allFinite(f.out) && allFinite(f.lse)).toBe(true);
    const scale = 1 / Math.sqrt(D);
    for (const i of [0, 1, 255, 256, 1000, T / 2 + 3, T - 2, T - 1]) {
      const r = refRow({ batch: 1, heads: 1, seq: T, headDim: D, window, scale }, q, k, v, 0, i);
      expect(Math.abs(f.lse[i] - r.lse)).toBeLessThan(1e-4 * Math.max(1, Math.abs(r.lse)));
      expect(relL2(f.out.subarray(i * D, (i + 1) * D), r.out)).toBeLessThan(1e-4);
    }
    const g = await attention.backward({ ...shape, q, k, v, out: f.out, lse: f.lse, dOut: randomArray(n, 24, 1) });
    expect(allFinite(g.dq) && allFinite(g.dk) && allFinite(g.dv)).toBe(true);
  });
});

const CFG: GPTConfig = tinyConfig({ n_positions: 64, attention_pattern: 'alternating', attention_window: 8 });

function batchOf(seed: number, n: number, V: number, ignoreEvery = 0): Int32Array {
  const rng = new Rng(seed);
  return Int32Array.from({ length: n }, (_, i) => (ignoreEvery && i % ignoreEvery === 3 ? -1 : rng.nextInt(V)));
}

describe('cross-entropy with very large logits', () => {
  // ln_f's gain scales every logit: logits = (ln_f(x) * gain) . wte. Gains of
  // 1e3 and 1e5 give logits of about 1e2 and 1e4 (and differences between
  // them as large), where a softmax without the max subtracted overflows.
  test.each([
    ['fp32', 1e3],
    ['fp32', 1e5],
    ['bf16', 1e3],
    ['bf16', 1e5],
  ] as const)('%s, ln_f gain %d: loss and gradients finite, loss equal to float64', async (precision, gain) => {
    const m = await GPT.create(CFG, { device: 'cpu', seed: 4, precision: precision as PrecisionName });
    try {
      const p = m.parameters();
      p.set('ln_f.weight', new Float32Array(CFG.n_embd).fill(gain));
      m.setParameters(p);
      const B = 2;
      const T = 64;
      const tokens = batchOf(1, B * T, 97);
      const targets = batchOf(2, B * T, 97, 7);
      const { logits } = await m.forward(tokens, { batch: B, seq: T });
      let maxAbs = 0;
      for (const x of logits) maxAbs = Math.max(maxAbs, Math.abs(x));
      expect(maxAbs).toBeGreaterThan(gain / 20);
      const loss = await m.forwardBackward(tokens, targets, { batch: B, seq: T });
      expect(Number.isFinite(loss)).toBe(true);
      for (const [, g] of m.gradients()) expect(allFinite(g)).toBe(true);
      const ref = refModel(CFG, toF64(m.parameters()), tokens, targets, B, T);
      // bf16 rounds the GEMM inputs (8 bits of mantissa): the logits move by ~0.4% of their size.
      expect(Math.abs(loss - ref.loss) / Math.max(1, ref.loss)).toBeLessThan(precision === 'fp32' ? 1e-4 : 3e-2);
      // A step with such gradients is finite too (clipped).
      const r = await m.step({ lr: 1e-3, gradClip: 1 });
      expect(Number.isFinite(r.gradNorm)).toBe(true);
      for (const [, w] of m.parameters()) expect(allFinite(w)).toBe(true);
    } finally {
      await m.dispose();
    }
  });

  test('the full context (seq = n_positions = 1024) in fp32 and bf16: finite and equal to float64', async () => {
    const cfg: GPTConfig = { ...CFG, n_layer: 1, n_positions: 1024 };
    for (const precision of ['fp32', 'bf16'] as const) {
      const m = await GPT.create(cfg, { device: 'cpu', seed: 6, precision });
      const tokens = batchOf(3, 1024, 97);
      const targets = batchOf(4, 1024, 97);
      const loss = await m.forwardBackward(tokens, targets, { batch: 1, seq: 1024 });
      for (const [, g] of m.gradients()) expect(allFinite(g)).toBe(true);
      const ref = refModel(cfg, toF64(m.parameters()), tokens, targets, 1, 1024);
      expect(Math.abs(loss - ref.loss) / ref.loss).toBeLessThan(precision === 'fp32' ? 1e-5 : 1e-2);
      await m.dispose();
    }
  });
});

describe('a NaN from a bad learning rate is caught at the step where it appears', () => {
  test.each(['fp32', 'bf16'] as const)('%s: lr 1e30', async (precision) => {
    const m = await GPT.create(CFG, { device: 'cpu', seed: 8, precision });
    try {
      const B = 2;
      const T = 32;
      const shape = { batch: B, seq: T };
      const tokens = batchOf(5, B * T, 97);
      const targets = batchOf(6, B * T, 97);
      // Step 1: the gradient is fine; the update is absurd (weights of ~1e30).
      await m.forwardBackward(tokens, targets, shape);
      const r1 = await m.step({ lr: 1e30 });
      expect(Number.isFinite(r1.gradNorm)).toBe(true);
      const after1 = m.parameters();
      const opt1 = m.optimizerState();
      // Step 2: the forward pass overflows; the step refuses and leaves everything as it was.
      const loss2 = await m.forwardBackward(tokens, targets, shape);
      let caught: unknown;
      try {
        await m.step({ lr: 1e30 });
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(NonFiniteError);
      expect((caught as NonFiniteError).code).toBe('NONFINITE');
      expect((caught as Error).message).toMatch(/non-finite|NaN|Infinity|inf/i);
      expect(Number.isFinite(loss2)).toBe(false);
      const afterFail = m.parameters();
      for (const [name, w] of after1) expect(Buffer.from(afterFail.get(name)!.buffer).equals(Buffer.from(w.buffer))).toBe(true);
      const optFail = m.optimizerState();
      expect(optFail.step).toBe(opt1.step);
      for (const [name, w] of opt1.exp_avg) expect(Buffer.from(optFail.exp_avg.get(name)!.buffer).equals(Buffer.from(w.buffer))).toBe(true);
      for (const [name, w] of opt1.exp_avg_sq) expect(Buffer.from(optFail.exp_avg_sq.get(name)!.buffer).equals(Buffer.from(w.buffer))).toBe(true);
      // The model is still usable: back to sane weights, a sane step works.
      const fresh = await GPT.create(CFG, { device: 'cpu', seed: 8, precision });
      m.setParameters(fresh.parameters());
      await fresh.dispose();
      m.zeroGrad();
      const l = await m.forwardBackward(tokens, targets, shape);
      expect(Number.isFinite(l)).toBe(true);
      expect(Number.isFinite((await m.step({ lr: 1e-3 })).gradNorm)).toBe(true);
    } finally {
      await m.dispose();
    }
  });

  test('a NaN written into one weight is caught at the next step, weights unchanged', async () => {
    const m = await GPT.create(CFG, { device: 'cpu', seed: 9 });
    try {
      const p = m.parameters();
      p.get('h.1.mlp.c_fc.weight')![5] = NaN;
      m.setParameters(p);
      const before = m.parameters();
      const tokens = batchOf(7, 64, 97);
      const loss = await m.forwardBackward(tokens, batchOf(8, 64, 97), { batch: 2, seq: 32 });
      expect(Number.isNaN(loss)).toBe(true);
      await expect(m.step({ lr: 1e-3 })).rejects.toMatchObject({ code: 'NONFINITE' });
      const after = m.parameters();
      for (const [name, w] of before) expect(Buffer.from(after.get(name)!.buffer).equals(Buffer.from(w.buffer))).toBe(true);
    } finally {
      await m.dispose();
    }
  });
});
