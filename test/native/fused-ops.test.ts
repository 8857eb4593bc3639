/**
 * The fused forward ops on the CPU backend against the compositions they
 * stand for (native/core/backend.h: matmul_forward then gelu_forward; add
 * then layernorm_forward), through backendOp on the CPU. residual + LayerNorm
 * has its own CPU loop; matmul_forward_gelu runs Backend's default body on
 * the CPU (a fused GEMM epilogue measured slower there), so its cases hold
 * the default body and the binding to the separate ops:
 *   - the same bits as the separate ops, on every instruction-set path this
 *     CPU supports, in fp32 and bf16, at awkward sizes (M = 1, C and N not a
 *     multiple of any vector width, N odd, GEMM edge tiles), with resid as its
 *     own buffer or aliasing a or b (the model adds in place);
 *   - the same bits as Backend's default body (`composed: true`);
 *   - the same bits for 1 and 2 threads;
 *   - close to a float64 reference (so "the same as the composition" is also
 *     right).
 * About 5 s on 2 busy cores.
 */
import { loadAddon } from '../../lib/native';
import { setIsa, setThreads, supportedIsas, type IsaName } from '../../lib/runtime';
import { restoreRuntimeAfterAll } from './shared/setup';
import { relL2 } from './shared/setup';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const helpers = require('../ops/run-checks.js') as {
  rng(seed: number): () => number;
  randn(r: () => number, n: number, std?: number): Float32Array;
  bitEqual(a: Float32Array, b: Float32Array): boolean;
};
const { rng, randn, bitEqual } = helpers;

type Out = Record<string, Float32Array>;
const addon = loadAddon<{ backendOp(o: Record<string, unknown>): Promise<Out> }>();
const op = (o: Record<string, unknown>): Promise<Out> => addon.backendOp({ device: 'cpu', ...o });

const isas = supportedIsas();
const { threads: originalThreads } = restoreRuntimeAfterAll();

// [M, K, N]: one row; tiny odd shapes; N odd and past one register tile;
// edge tiles in both directions and several pool tasks; the model's c_fc.
const GEMM_SHAPES: Array<[number, number, number]> = [
  [1, 7, 5],
  [3, 33, 17],
  [13, 64, 129],
  [257, 96, 201],
  [64, 128, 512],
];
// [M, C]: C = 1 (variance 0), C below / not a multiple of every width, GPT sizes.
const LN_SHAPES: Array<[number, number]> = [
  [1, 1],
  [1, 13],
  [5, 100],
  [37, 768],
  [300, 200],
  [3, 1601],
];

function gelu64(x: number): number {
  return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
}

function gemmCase(seed: number, M: number, K: number, N: number, bias = true) {
  const r = rng(seed);
  return { M, K, N, a: randn(r, M * K), b: randn(r, K * N, 0.2), ...(bias ? { bias: randn(r, N, 0.5) } : {}) };
}

function lnCase(seed: number, M: number, C: number) {
  const r = rng(seed);
  const a = randn(r, M * C, 2);
  for (let i = 0; i < a.length; ++i) a[i] += 0.3;
  return { M, C, a, b: randn(r, M * C), gamma: randn(r, C), beta: randn(r, C), eps: 1e-5 };
}

describe.each(isas.map((isa) => [isa]))('fused forward ops on %s', (isa: IsaName) => {
  beforeAll(() => setIsa(isa));

  for (const precision of ['fp32', 'bf16']) {
    test(`matmul_forward_gelu (${precision}) = matmul_forward then gelu_forward, bitwise`, async () => {
      let seed = 11;
      for (const [M, K, N] of GEMM_SHAPES) {
        for (const bias of [true, false]) {
          const c = gemmCase(seed++, M, K, N, bias);
          const fused = await op({ op: 'matmul_forward_gelu', precision, ...c });
          const composed = await op({ op: 'matmul_forward_gelu', precision, composed: true, ...c });
          const pre = (await op({ op: 'matmul_forward', precision, ...c })).out;
          const out = (await op({ op: 'gelu_forward', inp: pre })).out;
          const where = `${M}x${K}x${N} bias=${bias}`;
          expect([where, bitEqual(fused.pre, pre), bitEqual(fused.out, out)]).toEqual([where, true, true]);
          expect([where, bitEqual(composed.pre, pre), bitEqual(composed.out, out)]).toEqual([where, true, true]);
        }
      }
    });
  }

  test('residual_layernorm_forward = add then layernorm_forward, bitwise, resid apart or aliasing a or b', async () => {
    let seed = 101;
    for (const [M, C] of LN_SHAPES) {
      const c = lnCase(seed++, M, C);
      const sum = (await op({ op: 'add', a: c.a, b: c.b })).out;
      const ln = await op({ op: 'layernorm_forward', M, C, inp: sum, gamma: c.gamma, beta: c.beta, eps: c.eps });
      for (const aliasResid of [0, 1, 2]) {
        for (const composed of [false, true]) {
          const f = await op({ op: 'residual_layernorm_forward', ...c, aliasResid, composed });
          const where = `${M}x${C} alias=${aliasResid} composed=${composed}`;
          const same = ['resid', 'out', 'mean', 'rstd'].map((k) => bitEqual(f[k], k === 'resid' ? sum : ln[k]));
          expect([where, ...same]).toEqual([where, true, true, true, true]);
        }
      }
    }
  });
});

describe('fused forward ops: threads and a float64 reference', () => {
  test('the same bits for 1 and 2 threads', async () => {
    const g = gemmCase(7, 257, 96, 1031);
    const l = lnCase(8, 300, 768);
    const run = async () => [
      await op({ op: 'matmul_forward_gelu', precision: 'fp32', ...g }),
      await op({ op: 'matmul_forward_gelu', precision: 'bf16', ...g }),
      await op({ op: 'residual_layernorm_forward', ...l, aliasResid: 1 }),
    ];
    setThreads(1);
    const one = await run();
    setThreads(2);
    const two = await run();
    setThreads(originalThreads);
    for (let i = 0; i < one.length; ++i)
      for (const k of Object.keys(one[i])) expect([i, k, bitEqual(one[i][k], two[i][k])]).toEqual([i, k, true]);
  });

  test('matmul_forward_gelu (fp32) is within 1e-5 of float64', async () => {
    const { M, K, N, a, b, bias } = gemmCase(21, 37, 70, 133);
    const f = await op({ op: 'matmul_forward_gelu', precision: 'fp32', M, K, N, a, b, bias });
    const pre = new Float64Array(M * N),
      out = new Float64Array(M * N);
    for (let i = 0; i < M; ++i)
      for (let j = 0; j < N; ++j) {
        let s = bias![j];
        for (let k = 0; k < K; ++k) s += a[i * K + k] * b[k * N + j];
        pre[i * N + j] = s;
        out[i * N + j] = gelu64(s);
      }
    expect(relL2(f.pre, pre)).toBeLessThan(1e-5);
    expect(relL2(f.out, out)).toBeLessThan(1e-5);
  });

  test('residual_layernorm_forward is within 1e-5 of float64', async () => {
    const { M, C, a, b, gamma, beta, eps } = lnCase(22, 9, 333);
    const f = await op({ op: 'residual_layernorm_forward', M, C, a, b, gamma, beta, eps });
    const resid = new Float64Array(M * C),
      out = new Float64Array(M * C),
      mean = new Float64Array(M),
      rstd = new Float64Array(M);
    for (let m = 0; m < M; ++m) {
      let s = 0;
      for (let c = 0; c < C; ++c) s += (resid[m * C + c] = a[m * C + c] + b[m * C + c]);
      const mu = s / C;
      let v = 0;
      for (let c = 0; c < C; ++c) v += (resid[m * C + c] - mu) ** 2;
      const rs = 1 / Math.sqrt(v / C + eps);
      mean[m] = mu;
      rstd[m] = rs;
      for (let c = 0; c < C; ++c) out[m * C + c] = (resid[m * C + c] - mu) * rs * gamma[c] + beta[c];
    }
    for (const [k, ref] of [['resid', resid], ['out', out], ['mean', mean], ['rstd', rstd]] as const)
      expect([k, relL2(f[k], ref) < 1e-5]).toEqual([k, true]);
  });
});
