/**
 * The CPU GEMM against a float64 reference, on every instruction-set path
 * this CPU runs: all transposition combinations, awkward sizes, leading
 * dimensions wider than the rows, accumulate and bias, bf16, thread-count
 * determinism, and lib/gemm.ts's validation messages.
 */
import { gemm, GemmOptions } from '../../lib/gemm';
import { loadAddon } from '../../lib/native';
import { setIsa, setThreads, supportedIsas } from '../../lib/runtime';
import { bf16RoundArray, gemmRef, maxScaledError, randomArray, RefGemm, relL2 } from '../helpers/gemm-ref';
import { restoreRuntimeAfterAll } from './shared/setup';

interface Case {
  M: number;
  N: number;
  K: number;
  transA: boolean;
  transB: boolean;
  pad: number; // extra elements per row in lda/ldb/ldc
  accumulate: boolean;
  bias: boolean;
}

let seed = 1;

function build(cs: Case): { opts: GemmOptions; ref: RefGemm } {
  const { M, N, K, transA, transB, pad } = cs;
  const lda = (transA ? M : K) + pad;
  const ldb = (transB ? K : N) + pad;
  const ldc = N + pad;
  const a = randomArray((transA ? K : M) * lda, seed++);
  const b = randomArray((transB ? N : K) * ldb, seed++);
  const c0 = randomArray(M * ldc, seed++);
  const bias = cs.bias ? randomArray(N, seed++) : undefined;
  const opts: GemmOptions = {
    a, b, c: c0.slice(), M, N, K, transA, transB, lda, ldb, ldc, accumulate: cs.accumulate, bias,
  };
  const ref: RefGemm = { transA, transB, M, N, K, a, lda, b, ldb, c0, ldc, accumulate: cs.accumulate, bias };
  return { opts, ref };
}

/** Row padding of C (columns N .. ldc) must come back untouched. */
function expectPaddingKept(c: Float32Array, c0: Float32Array, M: number, N: number, ldc: number): void {
  for (let i = 0; i < M; i++)
    for (let j = N; j < ldc && i * ldc + j < c.length; j++) expect(c[i * ldc + j]).toBe(c0[i * ldc + j]);
}

const SIZES: Array<[number, number, number]> = [
  [1, 1, 1],
  [7, 63, 65],
  [65, 7, 129],
  [129, 65, 7],
  [63, 129, 1],
  [13, 33, 513], // K over two blocks, odd (bf16 pairs)
  [1, 200, 31],
  [200, 1, 33],
  [250, 40, 29], // more rows than one packed A block (240)
];

const isas = supportedIsas();
const { threads: initialThreads } = restoreRuntimeAfterAll();

describe.each(isas)('gemm on the %s path', (isa) => {
  beforeAll(() => setIsa(isa));

  test('fp32: every transposition, awkward sizes, padded leading dims, accumulate and bias', async () => {
    let i = 0;
    for (const [M, N, K] of SIZES)
      for (const transA of [false, true])
        for (const transB of [false, true]) {
          // rotate the other options so every combination of flags shows up
          const pad = i % 3 === 0 ? 0 : (i % 5) + 1;
          const accumulate = i % 2 === 1;
          const bias = i % 4 >= 2;
          i++;
          const { opts, ref } = build({ M, N, K, transA, transB, pad, accumulate, bias });
          const c0 = opts.c!.slice();
          const c = await gemm(opts);
          const r = gemmRef(ref);
          const label = `${isa} fp32 M${M} N${N} K${K} tA${transA} tB${transB} pad${pad} acc${accumulate} bias${bias}`;
          // Relative L2 over the whole output (a few elements could cancel to
          // near zero in tiny outputs, so there the scaled error decides).
          const err = relL2(c, ref.ldc, r, M, N);
          if (M * N >= 64 && !(err < 1e-5)) throw new Error(`${label}: relative L2 error ${err}`);
          const scaled = maxScaledError(ref, c, r);
          if (!(scaled < 1e-5)) throw new Error(`${label}: scaled max error ${scaled}`);
          expectPaddingKept(c, c0, M, N, ref.ldc);
        }
  });

  test('bf16: within 1e-2 of float64, and fp32 math on the bf16-rounded inputs', async () => {
    let i = 0;
    for (const [M, N, K] of SIZES)
      for (const transA of [false, true])
        for (const transB of [false, true]) {
          const pad = i % 2;
          const accumulate = i % 3 === 1;
          const bias = i % 4 === 3;
          i++;
          const { opts, ref } = build({ M, N, K, transA, transB, pad, accumulate, bias });
          const c = await gemm({ ...opts, precision: 'bf16' });
          const label = `${isa} bf16 M${M} N${N} K${K} tA${transA} tB${transB}`;
          const exact = gemmRef(ref);
          const err = relL2(c, ref.ldc, exact, M, N);
          if (M * N >= 64 && !(err < 1e-2)) throw new Error(`${label}: relative L2 error ${err} against float64`);
          const scaledExact = maxScaledError(ref, c, exact);
          if (!(scaledExact < 1e-2)) throw new Error(`${label}: scaled max error ${scaledExact} against float64`);
          // The same inputs rounded to bf16 first: only fp32 summation error remains.
          const rounded = { ...ref, a: bf16RoundArray(ref.a), b: bf16RoundArray(ref.b) };
          const rr = gemmRef(rounded);
          const errR = relL2(c, ref.ldc, rr, M, N);
          if (M * N >= 64 && !(errR < 1e-5)) throw new Error(`${label}: relative L2 error ${errR} against rounded inputs`);
          const scaled = maxScaledError(rounded, c, rr);
          if (!(scaled < 1e-5)) throw new Error(`${label}: scaled max error ${scaled} against rounded inputs`);
        }
  });

  test('a larger product over several tiles and K blocks', async () => {
    for (const precision of ['fp32', 'bf16'] as const) {
      const { opts, ref } = build({ M: 150, N: 333, K: 517, transA: false, transB: true, pad: 3, accumulate: true, bias: true });
      const c = await gemm({ ...opts, precision });
      const r = precision === 'fp32' ? gemmRef(ref) : gemmRef({ ...ref, a: bf16RoundArray(ref.a), b: bf16RoundArray(ref.b) });
      expect(relL2(c, ref.ldc, r, 150, 333)).toBeLessThan(1e-5);
    }
  });

  test('1 and 2 threads give bitwise identical results', async () => {
    const shapes: Array<[boolean, boolean]> = [
      [false, false],
      [false, true],
      [true, false],
    ];
    for (const precision of ['fp32', 'bf16'] as const)
      for (const [transA, transB] of shapes) {
        const { opts } = build({ M: 150, N: 270, K: 530, transA, transB, pad: 1, accumulate: true, bias: true });
        const c0 = opts.c!.slice();
        setThreads(1);
        const one = await gemm({ ...opts, c: c0.slice(), precision });
        setThreads(2);
        const two = await gemm({ ...opts, c: c0.slice(), precision });
        setThreads(initialThreads);
        expect(Buffer.from(two.buffer).equals(Buffer.from(one.buffer))).toBe(true);
      }
  });
});

describe('gemm edge cases', () => {
  test('K = 0 gives bias (or the accumulated C) and M = 0 / N = 0 do nothing', async () => {
    const bias = new Float32Array([1, 2, 3]);
    const c = await gemm({ a: new Float32Array(0), b: new Float32Array(0), M: 2, N: 3, K: 0, bias });
    expect(Array.from(c)).toEqual([1, 2, 3, 1, 2, 3]);
    const acc = new Float32Array([1, 1, 1, 1, 1, 1]);
    await gemm({ a: new Float32Array(0), b: new Float32Array(0), c: acc, M: 2, N: 3, K: 0, accumulate: true, bias });
    expect(Array.from(acc)).toEqual([2, 3, 4, 2, 3, 4]);
    const untouched = new Float32Array([5]);
    await gemm({ a: new Float32Array(4), b: new Float32Array(0), c: untouched, M: 0, N: 0, K: 4 });
    expect(untouched[0]).toBe(5);
  });

  test('allocates C when none is given', async () => {
    const c = await gemm({ a: new Float32Array([1, 2]), b: new Float32Array([3, 4]), M: 1, N: 1, K: 2 });
    expect(Array.from(c)).toEqual([11]);
  });
});

describe('colsum_accumulate (bias gradients)', () => {
  const native = () =>
    loadAddon<{ colsumAccumulate(o: { out: Float32Array; x: Float32Array; M: number; N: number }): void }>();

  test('adds the column sums in float64 accuracy, 1 and 2 threads bitwise identical', () => {
    for (const [M, N] of [
      [1, 1],
      [7, 300],
      [300, 700],
    ]) {
      const x = randomArray(M * N, seed++);
      const out0 = randomArray(N, seed++);
      setThreads(1);
      const one = out0.slice();
      native().colsumAccumulate({ out: one, x, M, N });
      setThreads(2);
      const two = out0.slice();
      native().colsumAccumulate({ out: two, x, M, N });
      setThreads(initialThreads);
      expect(Buffer.from(two.buffer).equals(Buffer.from(one.buffer))).toBe(true);
      for (let j = 0; j < N; j++) {
        let s = out0[j];
        let mag = Math.abs(out0[j]);
        for (let i = 0; i < M; i++) {
          s += x[i * N + j];
          mag += Math.abs(x[i * N + j]);
        }
        expect(Math.abs(one[j] - s)).toBeLessThanOrEqual(1e-5 * mag);
      }
    }
  });
});

describe('gemm validation messages', () => {
  const a = new Float32Array(6);
  const b = new Float32Array(6);
  const base: GemmOptions = { a, b, M: 2, N: 2, K: 3 };
  const bad = (o: Record<string, unknown>) => gemm(o as unknown as GemmOptions);

  test.each([
    [{ ...base, M: 1.5 }, 'Expected a non-negative integer for M but received 1.5 (number)', RangeError],
    [{ ...base, N: '2' }, 'Expected a non-negative integer for N but received "2" (string)', TypeError],
    [{ ...base, K: -1 }, 'Expected a non-negative integer for K but received -1 (number)', RangeError],
    [{ ...base, transA: 1 }, 'Expected a boolean for transA but received 1 (number)', TypeError],
    [{ ...base, precision: 'bf61' }, 'Expected one of "fp32", "bf16" for precision but received "bf61" (string) (did you mean "bf16"?)', RangeError],
    [{ ...base, lda: 2 }, 'Expected an integer between 3 and 2147483647 for lda but received 2 (number)', RangeError],
    [{ ...base, a: [1, 2, 3, 4, 5, 6] }, 'Expected a Float32Array for a but received an array of length 6', TypeError],
    [{ ...base, b: new Float32Array(5) }, 'Expected a Float32Array of length >= 6 (3 x 2, ldb 2) for b but received a Float32Array of length 5', RangeError],
    [{ ...base, c: new Float32Array(3) }, 'Expected a Float32Array of length >= 4 (2 x 2, ldc 2) for c but received a Float32Array of length 3', RangeError],
    [{ ...base, bias: new Float32Array(3) }, 'Expected a Float32Array of length 2 for bias but received a Float32Array of length 3', RangeError],
    [{ ...base, accumulate: true }, 'Expected a Float32Array to accumulate into for c but received undefined', RangeError],
    [{ ...base, transa: true }, 'Unknown key "transa" in gemm options (did you mean "transA"?)', RangeError],
  ])('%#: %s', async (opts, message, cls) => {
    const p = bad(opts as Record<string, unknown>);
    await expect(p).rejects.toThrow(message);
    await expect(bad(opts as Record<string, unknown>)).rejects.toBeInstanceOf(cls);
  });

  test('options must be an object', async () => {
    await expect(bad(undefined as unknown as Record<string, unknown>)).rejects.toThrow(
      'Expected an object for options but received undefined',
    );
  });
});
