/**
 * The CPU backend's ops against their plain references
 * (native/cpu/reference_ops.cc: one loop each, everything in double),
 * through backendOp (the fast path) and referenceOp (the reference) with the
 * same options: LayerNorm forward and backward, GELU forward and backward,
 * embedding forward and backward, the fused softmax + cross-entropy (loss
 * and gradient), the gradient's sum of squares and AdamW.
 *
 * On random inputs at awkward sizes: one row, one column, widths that are
 * not a multiple of any vector width (so every SIMD tail runs), sizes past
 * the pool's piece sizes (several tasks), repeated tokens, ignored targets,
 * garbage in the padded vocabulary columns, small variances (eps matters),
 * large logits (the max must be subtracted). On every instruction-set path
 * this CPU supports, and with 1 thread and the whole pool.
 *
 * Each tolerance is a bound per element built from the magnitudes that
 * enter it (a few float roundings of the terms summed), not a blanket one,
 * so a real bug fails: a lost tail element, a missing row or column, a
 * variance over C - 1, eps in the wrong place, a missing bias correction. The
 * tests also check that their own tolerances are tight (far below the values
 * compared) and that an error of a few tolerances on one tail element fails.
 * About 70 s on 2 busy cores.
 */
import { loadAddon } from '../../lib/native';
import { setIsa, setThreads, supportedIsas, type IsaName } from '../../lib/runtime';
import { restoreRuntimeAfterAll } from './shared/setup';

type Out = Record<string, Float32Array | number>;
type Opts = Record<string, unknown>;
const addon = loadAddon<{ backendOp(o: Opts): Promise<Out>; referenceOp(o: Opts): Promise<Out> }>();
const fast = (o: Opts): Promise<Out> => addon.backendOp({ device: 'cpu', ...o });
const reference = (o: Opts): Promise<Out> => addon.referenceOp(o);

const U = 2 ** -24; // float32 unit roundoff

const isas = supportedIsas();
const { isa: originalIsa, threads: originalThreads } = restoreRuntimeAfterAll();

// ---- inputs ----------------------------------------------------------------------
// The op tables' generator (every seed here is non-zero).
const { rng } = require('../ops/run-checks.js') as { rng: (seed: number) => () => number };
function randn(r: () => number, n: number, std = 1, mean = 0): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; ++i) a[i] = mean + std * Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  return a;
}
function randint(r: () => number, n: number, hi: number): Int32Array {
  return Int32Array.from({ length: n }, () => Math.floor(r() * hi));
}
const f32 = (o: Out, k: string): Float32Array => o[k] as Float32Array;

// ---- the comparison ------------------------------------------------------------------
/**
 * Every element within its bound: |fast - ref| <= tol(i). Also checks that
 * the bounds are tight (the largest is below `tight` times the largest
 * |ref|, so no bound swallows the values; Infinity where the exact result is
 * 0 or a start value, so the bound has nothing to be small against) and
 * that the comparison rejects an error of 4 bounds (or a few float steps
 * where the bound is 0) on the last element,
 * which the SIMD tail computes.
 */
function expectClose(where: string, got: Float32Array | Float64Array, ref: Float32Array | Float64Array, tol: (i: number) => number, tight = 1e-4): void {
  expect([where, got.length]).toEqual([where, ref.length]);
  const t = Float64Array.from({ length: ref.length }, (_, i) => tol(i));
  const bad = (g: Float32Array | Float64Array): string | null => {
    for (let i = 0; i < ref.length; ++i)
      if (!(Math.abs(g[i] - ref[i]) <= t[i])) return `${where}: element ${i} is ${g[i]}, the reference ${ref[i]} (tolerance ${t[i].toExponential(2)})`;
    return null;
  };
  expect(bad(got)).toBeNull();
  let maxTol = 0;
  let maxRef = 0;
  for (let i = 0; i < ref.length; ++i) {
    maxTol = Math.max(maxTol, t[i]);
    maxRef = Math.max(maxRef, Math.abs(ref[i]));
  }
  expect([where, tight === Infinity || maxTol <= tight * maxRef]).toEqual([where, true]);
  const last = ref.length - 1;
  const wrong = Float64Array.from(got);
  const step = Math.max(4 * t[last], Math.abs(ref[last]) * 2 ** -20, 1e-30);
  wrong[last] = ref[last] + step;
  expect([where, bad(wrong) !== null]).toEqual([where, true]);
}

// ---- cases -------------------------------------------------------------------------
// [M, C]: one row and one column (variance 0), widths below and between every
// vector width, C past the column piece (64) and an odd GPT-like width, M past
// the row piece (16384 / C rows).
const LN_SHAPES: Array<[number, number]> = [
  [1, 1],
  [1, 7],
  [3, 17],
  [5, 100],
  [2, 257],
  [400, 100],
  [3, 1601],
];

async function layernormCases(seed0: number): Promise<void> {
  let seed = seed0;
  for (const [M, C] of LN_SHAPES)
    for (const small of [false, true]) {
      const r = rng(seed++);
      // small: a variance of 1e-4 around 0.5, where eps (1e-5) matters
      const inp = small ? randn(r, M * C, 1e-2, 0.5) : randn(r, M * C, 2, 0.3);
      const gamma = randn(r, C, 1, 1);
      const beta = randn(r, C, 0.5);
      const eps = 1e-5;
      const o = { op: 'layernorm_forward', M, C, inp, gamma, beta, eps };
      const [f, g] = await Promise.all([fast(o), reference(o)]);
      const mean = f32(g, 'mean');
      const rstd = f32(g, 'rstd');
      const where = `layernorm_forward ${M}x${C}${small ? ' small variance' : ''}`;
      // The row sums lose about sqrt(C) float steps of the row's largest |x|,
      // which xhat = (x - mean) * rstd sees times rstd (C = 1: the mean is x
      // itself, xhat is exactly 0 and out is beta).
      const rowMaxes = Float64Array.from({ length: M }, (_, row) => inp.subarray(row * C, row * C + C).reduce((a, x) => Math.max(a, Math.abs(x)), 0));
      const rowMax = (row: number) => rowMaxes[row];
      const shift = (row: number) => Math.sqrt(C - 1) * rowMaxes[row] * rstd[row];
      const xhat = (i: number) => (inp[i] - mean[Math.floor(i / C)]) * rstd[Math.floor(i / C)];
      const outTol = (i: number) =>
        8 * U * (Math.abs(gamma[i % C]) * (Math.sqrt(C) * Math.abs(xhat(i)) + shift(Math.floor(i / C))) + Math.abs(beta[i % C]));
      // (a row 50 standard deviations from 0 is ill-conditioned: looser there)
      const tight = C === 1 ? Infinity : small ? 1e-3 : 1e-4;
      expectClose(`${where} out`, f32(f, 'out'), f32(g, 'out'), outTol, tight);
      // (the mean is small next to the row's values it is summed from: 1e-3)
      expectClose(`${where} mean`, f32(f, 'mean'), mean, (row) => 4 * U * Math.sqrt(C) * rowMax(row), C === 1 ? Infinity : 1e-3);
      expectClose(`${where} rstd`, f32(f, 'rstd'), rstd, (row) => 2 * U * (Math.sqrt(C) + shift(row)) * rstd[row], tight);

      // backward from the reference's statistics, accumulating into random starts
      const dout = randn(r, M * C);
      const dinp0 = randn(r, M * C, 0.1);
      const dgamma0 = randn(r, C, 0.1);
      const dbeta0 = randn(r, C, 0.1);
      const b = { op: 'layernorm_backward', M, C, dout, inp, gamma, mean, rstd, dinp: dinp0, dgamma: dgamma0, dbeta: dbeta0 };
      const [fb, gb] = await Promise.all([fast(b), reference(b)]);
      // magnitudes that enter each output, in double
      const xh = xhat;
      const gAbs = new Float64Array(M);
      const gxAbs = new Float64Array(M);
      const colG = new Float64Array(C);
      const colB = new Float64Array(C);
      for (let i = 0; i < M * C; ++i) {
        const row = Math.floor(i / C);
        gAbs[row] += Math.abs(dout[i] * gamma[i % C]) / C;
        gxAbs[row] += Math.abs(dout[i] * gamma[i % C] * xh(i)) / C;
        colG[i % C] += Math.abs(dout[i] * xh(i));
        colB[i % C] += Math.abs(dout[i]);
      }
      expectClose(`${where} dinp`, f32(fb, 'dinp'), f32(gb, 'dinp'), (i) => {
        const row = Math.floor(i / C);
        // g - mean(g) - xhat * mean(g * xhat): the means lose sqrt(C) steps
        // (both sides take xhat from the same mean and rstd: no shift here)
        const terms = Math.abs(dout[i] * gamma[i % C]) + Math.sqrt(C) * (gAbs[row] + Math.abs(xh(i)) * gxAbs[row]);
        return 8 * U * (rstd[row] * terms + Math.abs(dinp0[i]));
      }, tight);
      expectClose(`${where} dgamma`, f32(fb, 'dgamma'), f32(gb, 'dgamma'), (c) => 4 * U * ((M + 1) * colG[c] + Math.abs(dgamma0[c])), 1e-3);
      expectClose(`${where} dbeta`, f32(fb, 'dbeta'), f32(gb, 'dbeta'), (c) => 4 * U * (M * colB[c] + Math.abs(dbeta0[c])), 1e-3);
    }
}

// GELU: lengths 1, below and between the vector widths, past the element piece
// (32768) with a tail; inputs from -12 to 12 and exact zeros.
const GELU_LENGTHS = [1, 3, 17, 1000, 40001];

async function geluCases(seed0: number): Promise<void> {
  let seed = seed0;
  for (const n of GELU_LENGTHS) {
    const r = rng(seed++);
    const inp = randn(r, n, 3);
    if (n > 10) {
      inp[0] = 0;
      inp[1] = -12;
      inp[2] = 12;
    }
    const dout = randn(r, n);
    const fo = { op: 'gelu_forward', inp };
    const bo = { op: 'gelu_backward', inp, dout };
    const [ff, gf, fb, gb] = await Promise.all([fast(fo), reference(fo), fast(bo), reference(bo)]);
    // tanh through exp: a few float steps of 1, times |x| / 2
    expectClose(`gelu_forward n=${n}`, f32(ff, 'out'), f32(gf, 'out'), (i) => 16 * U * (Math.abs(f32(gf, 'out')[i]) + Math.abs(inp[i])), 1e-3);
    // 1 - t^2 loses a few steps of 1, times |x| du / 2
    expectClose(`gelu_backward n=${n}`, f32(fb, 'out'), f32(gb, 'out'), (i) => 16 * U * Math.abs(dout[i]) * (1 + Math.abs(inp[i]) * (1 + 0.14 * inp[i] * inp[i])), 1e-3);
  }
}

// [B, T, C, V]: one of each, odd widths, rows past the row piece, tokens
// repeated (V small) so the backward sums several rows into one table row.
const EMB_SHAPES: Array<[number, number, number, number]> = [
  [1, 1, 1, 1],
  [2, 3, 17, 5],
  [3, 7, 100, 50],
  [4, 64, 257, 30],
];

async function embeddingCases(seed0: number): Promise<void> {
  let seed = seed0;
  for (const [B, T, C, V] of EMB_SHAPES) {
    const r = rng(seed++);
    const tokens = randint(r, B * T, V);
    const wte = randn(r, V * C);
    const wpe = randn(r, T * C);
    const fo = { op: 'embedding_forward', B, T, C, V, tokens, wte, wpe };
    const [ff, gf] = await Promise.all([fast(fo), reference(fo)]);
    const where = `embedding ${B}x${T}x${C} V=${V}`;
    // one float addition, correctly rounded either way: the same bits
    expectClose(`${where} forward`, f32(ff, 'out'), f32(gf, 'out'), () => 0, 0);

    const dout = randn(r, B * T * C);
    const dwte = randn(r, V * C, 0.1);
    const dwpe = randn(r, T * C, 0.1);
    const bo = { op: 'embedding_backward', B, T, C, V, tokens, dout, dwte, dwpe };
    const [fb, gb] = await Promise.all([fast(bo), reference(bo)]);
    // each table element: its start plus n terms, summed in float
    const teSum = Float64Array.from(dwte, Math.abs);
    const teN = new Float64Array(V * C).fill(1);
    const peSum = Float64Array.from(dwpe, Math.abs);
    const peN = new Float64Array(T * C).fill(1);
    for (let row = 0; row < B * T; ++row)
      for (let c = 0; c < C; ++c) {
        const d = Math.abs(dout[row * C + c]);
        teSum[tokens[row] * C + c] += d;
        teN[tokens[row] * C + c] += 1;
        peSum[(row % T) * C + c] += d;
        peN[(row % T) * C + c] += 1;
      }
    expectClose(`${where} dwte`, f32(fb, 'dwte'), f32(gb, 'dwte'), (i) => 2 * U * teN[i] * teSum[i], 1e-3);
    expectClose(`${where} dwpe`, f32(fb, 'dwpe'), f32(gb, 'dwpe'), (i) => 2 * U * peN[i] * peSum[i], 1e-3);
  }
}

// [M, V]: one row, a vocabulary of 1, odd vocabularies below, between and
// past the vector widths, GPT-2's; Vp = V padded to 64 with garbage in the
// padding, every third target ignored, one row of logits near 100.
const CE_SHAPES: Array<[number, number]> = [
  [1, 1],
  [2, 3],
  [5, 17],
  [9, 131],
  [300, 50],
  [3, 50257],
];

async function crossentropyCases(seed0: number): Promise<void> {
  let seed = seed0;
  for (const [M, V] of CE_SHAPES) {
    const Vp = Math.ceil(V / 64) * 64;
    const r = rng(seed++);
    const logits = randn(r, M * Vp, 2);
    for (let row = 0; row < M; ++row) for (let c = V; c < Vp; ++c) logits[row * Vp + c] = 1e4 * (r() - 0.5);
    if (M > 1) for (let c = 0; c < V; ++c) logits[Vp + c] += 100;
    const targets = Int32Array.from({ length: M }, (_, i) => (i % 3 === 2 ? -1 : Math.floor(r() * V)));
    const counted = targets.filter((t) => t >= 0).length;
    for (const dlogitsScale of [0, 1 / Math.max(counted, 1)]) {
      const o = { op: 'crossentropy', M, V, Vp, logits, targets, dlogitsScale };
      const [f, g] = await Promise.all([fast(o), reference(o)]);
      const where = `crossentropy ${M}x${V} scale=${dlogitsScale}`;
      expect([where, f.count]).toEqual([where, counted]);
      expect([where, g.count]).toEqual([where, counted]);
      // per row: lse = max + log(sum) in float (a few steps of |lse|), minus x[t]
      const lse = new Float64Array(M);
      let lossScale = 0;
      for (let row = 0; row < M; ++row) {
        if (targets[row] < 0) continue;
        const x = logits.subarray(row * Vp, row * Vp + V);
        const mx = x.reduce((a, v) => Math.max(a, v), -Infinity);
        lse[row] = mx + Math.log(x.reduce((a, v) => a + Math.exp(v - mx), 0));
        lossScale += Math.abs(lse[row]) + Math.abs(x[targets[row]]);
      }
      const lossTol = 8 * U * (lossScale + 1e-30);
      expect([where, Math.abs((f.loss as number) - (g.loss as number)) <= lossTol]).toEqual([where, true]);
      // (the row of logits near 100 has a loss of a few from two values near 100)
      expect([where, lossTol <= 1e-3 * Math.max(Math.abs(g.loss as number), 1)]).toEqual([where, true]);
      expect([where, Math.abs((f.loss as number) + 4 * lossTol + 1e-6 - (g.loss as number)) <= lossTol]).toEqual([where, false]);
      // the gradient (or the untouched logits when the scale is 0)
      const ref = f32(g, 'dlogits');
      expectClose(`${where} dlogits`, f32(f, 'dlogits'), ref, (i) => {
        if (dlogitsScale === 0) return 0;
        const row = Math.floor(i / Vp);
        const c = i % Vp;
        if (targets[row] < 0 || c >= V) return 0;
        const p = Math.exp(logits[i] - lse[row]);
        // exp(x - lse) with lse and x - lse off by a step of each, and exp's own error
        return dlogitsScale * (8 * U * p * (4 + Math.abs(lse[row]) + Math.abs(logits[i] - lse[row])) + (c === targets[row] ? 2 * U : 0)) + 1e-45;
      }, dlogitsScale === 0 ? 0 : V === 1 ? Infinity : 1e-4);
    }
  }
}

// Sum of squares: lengths around the 1024-element blocks and past the piece (65536).
async function sumSquaresCases(seed0: number): Promise<void> {
  let seed = seed0;
  for (const n of [1, 5, 1023, 1025, 140001]) {
    const g = randn(rng(seed++), n, 0.7);
    const o = { op: 'sum_squares', g };
    const [f, r] = await Promise.all([fast(o), reference(o)]);
    // positive terms: float blocks of 1024 lose at most ~1024 steps each
    const tol = 1024 * U * (r.sum as number);
    expect([`sum_squares n=${n}`, Math.abs((f.sum as number) - (r.sum as number)) <= tol]).toEqual([`sum_squares n=${n}`, true]);
    expect([`sum_squares n=${n}`, Math.abs((f.sum as number) * (1 + 1e-3) - (r.sum as number)) <= tol]).toEqual([`sum_squares n=${n}`, false]);
  }
}

// AdamW: one element, an odd count, past the element piece; the first step
// and a later one (bias correction), with and without decay and clipping
// scale, and gradients of about 1e-8 from zero moments, where eps counts.
async function adamwCases(seed0: number): Promise<void> {
  let seed = seed0;
  for (const n of [1, 7, 40001])
    for (const [step, weightDecay, gradScale, tiny] of [
      [1, 0, 1, 0],
      [5, 0.1, 0.5, 0],
      [1, 0, 1, 1],
    ]) {
      const r = rng(seed++);
      const param = randn(r, n);
      const grad = randn(r, n, tiny ? 1e-8 : 0.3);
      const m = tiny ? new Float32Array(n) : randn(r, n, 0.05);
      const v = Float32Array.from({ length: n }, () => (tiny ? 0 : 0.01 * r()));
      const o = { op: 'adamw', param, grad, m, v, lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay, gradScale, step };
      const [f, g] = await Promise.all([fast(o), reference(o)]);
      const where = `adamw n=${n} step=${step} wd=${weightDecay}${tiny ? ' tiny gradients' : ''}`;
      const gs = (i: number) => Math.abs(grad[i] * gradScale);
      expectClose(`${where} m`, f32(f, 'm'), f32(g, 'm'), (i) => 8 * U * (0.9 * Math.abs(m[i]) + 0.1 * gs(i)));
      expectClose(`${where} v`, f32(f, 'v'), f32(g, 'v'), (i) => 8 * U * (0.95 * v[i] + 0.05 * gs(i) ** 2));
      // The update, lr * (m_hat / (sqrt(v_hat) + eps) + wd * p), to a few float
      // steps, plus the roundings of the new parameter (a float step of it).
      // Checked on the change of the parameter, about lr, so an error in the
      // update shows.
      const gp = f32(g, 'param');
      // |m_hat / (sqrt(v_hat) + eps)| from the reference's moments
      const bc1 = 1 - 0.9 ** step;
      const bc2 = 1 - 0.95 ** step;
      const upd = (i: number) => Math.abs(f32(g, 'm')[i] / bc1) / (Math.sqrt(f32(g, 'v')[i] / bc2) + 1e-8);
      const ulp = (x: number) => (x === 0 ? 2 ** -149 : 2 ** (Math.floor(Math.log2(Math.abs(x))) - 23));
      const delta = (p: Float32Array) => Float64Array.from(p, (x, i) => x - param[i]);
      expectClose(`${where} param - param0`, delta(f32(f, 'param')), delta(gp), (i) => {
        return 64 * U * 1e-2 * (upd(i) + weightDecay * Math.abs(param[i])) + 4 * ulp(gp[i]);
      }, 1e-2);
    }
}

describe.each(isas.map((isa) => [isa]))('CPU ops against their plain references on %s', (isa: IsaName) => {
  beforeAll(() => setIsa(isa));
  test('LayerNorm forward and backward', () => layernormCases(100));
  test('GELU forward and backward', () => geluCases(200));
  test('embedding forward and backward', () => embeddingCases(300));
  test('softmax + cross-entropy: loss, count and gradient', () => crossentropyCases(400));
  test('sum of squares', () => sumSquaresCases(500));
  test('AdamW', () => adamwCases(600));
});

describe('CPU ops against their plain references with one thread', () => {
  beforeAll(() => {
    setIsa(originalIsa);
    setThreads(1);
  });
  afterAll(() => setThreads(originalThreads));
  test('every op', async () => {
    await layernormCases(700);
    await geluCases(710);
    await embeddingCases(720);
    await crossentropyCases(730);
    await sumSquaresCases(740);
    await adamwCases(750);
  });
});

describe('referenceOp', () => {
  test('names what it cannot run', async () => {
    await expect(reference({ op: 'matmul_forward' })).rejects.toThrow("for op but received 'matmul_forward'");
    await expect(reference({ op: 'gelu_forward' })).rejects.toThrow('Expected a Float32Array for inp');
    await expect(reference({ op: 'gelu_backward', inp: new Float32Array(3), dout: new Float32Array(2) })).rejects.toThrow(
      'Expected a Float32Array of length 3 for dout but received length 2',
    );
  });
});
