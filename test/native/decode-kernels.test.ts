/**
 * The decode kernels (native/cpu/decode_kernels.h) against float64
 * references on every instruction-set path this CPU runs: the linear layer
 * on Conv1D [K, N] weights and the tied head on [N, K] rows, fp32 and bf16
 * (packed copies), awkward sizes (edges of vectors, tiles, k pairs, row
 * groups of 8), bias; a row's result does not depend on the other rows of
 * the call, nor on the thread count.
 */
import { setIsa, setThreads, supportedIsas } from '../../lib/runtime';
import { loadAddon } from '../../lib/native';
import { bf16RoundArray, randomArray } from '../helpers/gemm-ref';
import { restoreRuntimeAfterAll } from './shared/setup';

interface KernelArgs {
  op: 'linear' | 'head';
  precision: 'fp32' | 'bf16';
  M: number;
  K: number;
  N: number;
  x: Float32Array;
  w: Float32Array;
  bias?: Float32Array;
  repeats?: number;
}
type Native = { decodeKernel(a: KernelArgs): { out: Float32Array; seconds: number } };
const kernel = (a: KernelArgs) => loadAddon<Native>().decodeKernel(a).out;

/** float64 reference and the scale of each element (sum |x w|) for the error bound. */
function reference(a: KernelArgs): { ref: Float64Array; scale: Float64Array } {
  const { M, K, N } = a;
  const x = a.precision === 'bf16' ? bf16RoundArray(a.x) : a.x;
  const w = a.precision === 'bf16' ? bf16RoundArray(a.w) : a.w;
  const ref = new Float64Array(M * N);
  const scale = new Float64Array(M * N);
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let s = a.bias ? a.bias[n] : 0;
      let t = a.bias ? Math.abs(a.bias[n]) : 0;
      for (let k = 0; k < K; k++) {
        const p = x[m * K + k] * (a.op === 'linear' ? w[k * N + n] : w[n * K + k]);
        s += p;
        t += Math.abs(p);
      }
      ref[m * N + n] = s;
      scale[m * N + n] = t;
    }
  return { ref, scale };
}

// [M, K, N]: one row and row groups past 8; K odd (bf16 pairs), below and
// past a vector and the 32-wide head rows; N past tiles of 32 / 128-column
// tasks and not a multiple of any vector width.
const SIZES: Array<[number, number, number]> = [
  [1, 1, 1],
  [1, 64, 64],
  [3, 7, 5],
  [8, 33, 130],
  [11, 100, 47],
  [2, 257, 300],
  [9, 16, 16],
  [5, 65, 1],
];

const isas = supportedIsas();
const { threads: initialThreads } = restoreRuntimeAfterAll();

let seed = 11;

describe.each(isas)('decode kernels on the %s path', (isa) => {
  beforeAll(() => setIsa(isa));

  test.each([
    ['linear', 'fp32'],
    ['linear', 'bf16'],
    ['head', 'fp32'],
    ['head', 'bf16'],
  ] as const)('%s %s matches the float64 reference', (op, precision) => {
    for (const [M, K, N] of SIZES) {
      const a: KernelArgs = {
        op, precision, M, K, N,
        x: randomArray(M * K, seed++),
        w: randomArray(K * N, seed++),
        bias: op === 'linear' && N % 2 === 0 ? randomArray(N, seed++) : undefined,
      };
      const out = kernel(a);
      const { ref, scale } = reference(a);
      let worst = 0;
      for (let i = 0; i < M * N; i++) worst = Math.max(worst, Math.abs(out[i] - ref[i]) / (scale[i] + 1e-30));
      // fp32 accumulation of K products (inputs identical to the reference's)
      expect(worst).toBeLessThan(2e-6 * Math.sqrt(K) + 1e-6);
    }
  });

  test('a row does not depend on the other rows of the call, nor on the thread count', () => {
    const [M, K, N] = [11, 96, 260];
    for (const op of ['linear', 'head'] as const)
      for (const precision of ['fp32', 'bf16'] as const) {
        const x = randomArray(M * K, seed++);
        const w = randomArray(K * N, seed++);
        const bias = op === 'linear' ? randomArray(N, seed++) : undefined;
        setThreads(2);
        const all = kernel({ op, precision, M, K, N, x, w, bias });
        for (const m of [0, 4, 10]) {
          const one = kernel({ op, precision, M: 1, K, N, x: x.slice(m * K, (m + 1) * K), w, bias });
          expect(Array.from(one)).toEqual(Array.from(all.subarray(m * N, (m + 1) * N)));
        }
        setThreads(1);
        expect(Array.from(kernel({ op, precision, M, K, N, x, w, bias }))).toEqual(Array.from(all));
        setThreads(initialThreads);
      }
  });

  test('fp32 linear: chunks of rows and column tiles leave a row as it is alone, on any pool size', () => {
    // K: 3 chunks of 64 rows and a short one; N: wide enough to split into
    // column tiles on a larger pool, with a vector edge.
    const [M, K, N] = [11, 200, 1100];
    const x = randomArray(M * K, seed++);
    const w = randomArray(K * N, seed++);
    const bias = randomArray(N, seed++);
    setThreads(2);
    const all = kernel({ op: 'linear', precision: 'fp32', M, K, N, x, w, bias });
    const { ref, scale } = reference({ op: 'linear', precision: 'fp32', M, K, N, x, w, bias });
    let worst = 0;
    for (let i = 0; i < M * N; i++) worst = Math.max(worst, Math.abs(all[i] - ref[i]) / (scale[i] + 1e-30));
    expect(worst).toBeLessThan(2e-6 * Math.sqrt(K) + 1e-6);
    for (const [m0, rows] of [[0, 1], [3, 2], [5, 3], [2, 9]]) {
      const part = kernel({ op: 'linear', precision: 'fp32', M: rows, K, N, x: x.slice(m0 * K, (m0 + rows) * K), w, bias });
      expect(Array.from(part)).toEqual(Array.from(all.subarray(m0 * N, (m0 + rows) * N)));
    }
    for (const t of [1, 3, 8]) {
      setThreads(t);
      expect(Array.from(kernel({ op: 'linear', precision: 'fp32', M, K, N, x, w, bias }))).toEqual(Array.from(all));
    }
    setThreads(initialThreads);
  });
});

test('bad arguments are clear errors', () => {
  const x = new Float32Array(4);
  const w = new Float32Array(8);
  expect(() => loadAddon<Native>().decodeKernel({ op: 'conv' as 'linear', precision: 'fp32', M: 1, K: 4, N: 2, x, w })).toThrow(/'linear' or 'head' for op/);
  expect(() => loadAddon<Native>().decodeKernel({ op: 'linear', precision: 'fp32', M: 1, K: 4, N: 3, x, w })).toThrow(/Float32Array/);
});
