/**
 * The linear ops of a decode step on the CPU backend (native/core/backend.h
 * "decoding: the linear layers": decode_linear, decode_linear_gelu,
 * decode_head, bf16 weights packed by decode_weight_pack first), through
 * backendOp, on every instruction-set path this CPU supports:
 *   - close to a float64 reference of what matmul_forward / matmul_nt
 *     compute (inputs rounded to bf16 in the reference for bf16), at few
 *     rows and awkward sizes, with and without bias;
 *   - decode_linear_gelu is decode_linear then gelu_forward, bit for bit;
 *   - a row's result is bitwise the same alone and among other rows (a
 *     sequence decodes the same alone and in a batch);
 *   - a head with a bias is a clear error.
 * The kernels behind them: test/native/decode-kernels.test.ts.
 */
import { loadAddon } from '../../lib/native';
import { getIsa, setIsa, supportedIsas, type IsaName } from '../../lib/runtime';
import { bf16RoundArray, randomArray } from '../helpers/gemm-ref';

type Out = Record<string, Float32Array>;
const addon = loadAddon<{ backendOp(o: Record<string, unknown>): Promise<Out> }>();
const op = (o: Record<string, unknown>): Promise<Out> => addon.backendOp({ device: 'cpu', ...o });

type Op = 'decode_linear' | 'decode_linear_gelu' | 'decode_head';
type Precision = 'fp32' | 'bf16';

/** float64 out[M, N] = a @ b (+ bias), b [K, N] or, for the head, [N, K]; and the scale sum |a b| of each element. */
function reference(
  head: boolean,
  p: Precision,
  M: number,
  K: number,
  N: number,
  a0: Float32Array,
  b0: Float32Array,
  bias?: Float32Array,
): { ref: Float64Array; scale: Float64Array } {
  const a = p === 'bf16' ? bf16RoundArray(a0) : a0;
  const b = p === 'bf16' ? bf16RoundArray(b0) : b0;
  const ref = new Float64Array(M * N);
  const scale = new Float64Array(M * N);
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let s = bias ? bias[n] : 0;
      let t = bias ? Math.abs(bias[n]) : 0;
      for (let k = 0; k < K; k++) {
        const x = a[m * K + k] * (head ? b[n * K + k] : b[k * N + n]);
        s += x;
        t += Math.abs(x);
      }
      ref[m * N + n] = s;
      scale[m * N + n] = t;
    }
  return { ref, scale };
}

/** GPT-2's tanh GELU in float64. */
const gelu = (x: number): number => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));

/** The largest |got - ref| / (scale + 1e-30) over all elements. */
function worstScaled(got: Float32Array, ref: Float64Array, scale: Float64Array): number {
  expect(got.length).toBe(ref.length);
  let worst = 0;
  for (let i = 0; i < ref.length; i++) {
    const e = Math.abs(got[i] - ref[i]) / (scale[i] + 1e-30);
    worst = Number.isNaN(e) ? Infinity : Math.max(worst, e);
  }
  return worst;
}

// [M, K, N, bias]: one row and more than 8 (register groups of 8 rows), K
// odd (bf16 pairs) and past a chunk of 64 rows of w, N past the 32-column
// packed tiles and no multiple of a vector.
const SIZES: Array<[number, number, number, boolean]> = [
  [1, 1, 1, true],
  [1, 96, 200, true],
  [3, 7, 5, false],
  [9, 130, 47, true],
  [4, 33, 130, false],
];

const isas = supportedIsas();
const originalIsa: IsaName = getIsa();
afterAll(() => setIsa(originalIsa));
let seed = 501;

describe.each(isas)('CPU decode linear ops on the %s path', (isa) => {
  beforeAll(() => setIsa(isa));

  test.each([
    ['decode_linear', 'fp32'],
    ['decode_linear', 'bf16'],
    ['decode_head', 'fp32'],
    ['decode_head', 'bf16'],
  ] as Array<[Op, Precision]>)('%s %s is close to the float64 product', async (name, precision) => {
    const head = name === 'decode_head';
    for (const [M, K, N, withBias] of SIZES) {
      const a = randomArray(M * K, seed++);
      const b = randomArray(K * N, seed++);
      const bias = withBias && !head ? randomArray(N, seed++) : undefined;
      const got = await op({ op: name, precision, M, K, N, a, b, ...(bias ? { bias } : {}) });
      const { ref, scale } = reference(head, precision, M, K, N, a, b, bias);
      // fp32 sums of K products of the same inputs as the reference's
      expect(worstScaled(got.out, ref, scale)).toBeLessThan(2e-6 * Math.sqrt(K) + 1e-6);
    }
  });

  test.each(['fp32', 'bf16'] as Precision[])(
    'decode_linear_gelu %s is decode_linear then gelu_forward, bit for bit, and close to float64',
    async (precision) => {
      for (const [M, K, N, withBias] of SIZES) {
        const a = randomArray(M * K, seed++);
        const b = randomArray(K * N, seed++);
        const bias = withBias ? { bias: randomArray(N, seed++) } : {};
        const fused = await op({ op: 'decode_linear_gelu', precision, M, K, N, a, b, ...bias });
        const lin = await op({ op: 'decode_linear', precision, M, K, N, a, b, ...bias });
        const g = await op({ op: 'gelu_forward', inp: lin.out });
        expect(Buffer.from(fused.pre.buffer).equals(Buffer.from(lin.out.buffer))).toBe(true);
        expect(Buffer.from(fused.out.buffer).equals(Buffer.from(g.out.buffer))).toBe(true);
        const { ref, scale } = reference(false, precision, M, K, N, a, b, 'bias' in bias ? bias.bias : undefined);
        // GELU's slope is below 1.13: the product's bound, a little wider,
        // and room for the fp32 tanh (the + 1).
        let worst = 0;
        for (let i = 0; i < ref.length; i++)
          worst = Math.max(worst, Math.abs(fused.out[i] - gelu(ref[i])) / (scale[i] + 1));
        expect(worst).toBeLessThan(3e-6 * Math.sqrt(K) + 2e-6);
      }
    },
  );

  test('a row is bitwise the same alone and among other rows', async () => {
    const [M, K, N] = [11, 96, 260];
    for (const name of ['decode_linear', 'decode_head'] as Op[])
      for (const precision of ['fp32', 'bf16'] as Precision[]) {
        const a = randomArray(M * K, seed++);
        const b = randomArray(K * N, seed++);
        const bias = name === 'decode_linear' ? { bias: randomArray(N, seed++) } : {};
        const all = (await op({ op: name, precision, M, K, N, a, b, ...bias })).out;
        for (const m of [0, 5, 10]) {
          const one = (await op({ op: name, precision, M: 1, K, N, a: a.slice(m * K, (m + 1) * K), b, ...bias })).out;
          expect(Array.from(one)).toEqual(Array.from(all.subarray(m * N, (m + 1) * N)));
        }
      }
  });
});

test('a bias for the head is a clear error', async () => {
  await expect(
    op({ op: 'decode_head', precision: 'fp32', M: 1, K: 2, N: 2, a: new Float32Array(2), b: new Float32Array(4),
      bias: new Float32Array(2) }),
  ).rejects.toThrow(/no bias for op 'decode_head'/);
});
