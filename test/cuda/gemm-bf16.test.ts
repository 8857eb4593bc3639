/**
 * The CUDA GEMMs with bf16 storage (native/cuda/gemm.cuh), through the
 * addon's cudaGemm test entry: each operand fp32 or bf16 in device memory, C
 * fp32 or bf16. Every combination the model uses, on awkward shapes (1, not
 * multiples of the 128 tile, leading dimensions past the width, operands
 * starting at odd element offsets so no copy is 16-byte aligned), on the own
 * kernels and through gemm() (cuBLASLt where it was chosen: on the emulator,
 * its stand-in):
 *  - against a float64 reference on the bf16-rounded inputs;
 *  - under Precision::BF16 a bf16 operand, the bf16 rounding of an fp32 one,
 *    gives bitwise the C of the fp32 operand (own kernels), and a bf16 C is
 *    bitwise the bf16 rounding of the fp32 C;
 *  - bias, the fused GELU, accumulation, and clear errors for what is refused.
 *  - grids of several groups of tiles (the kernels' block order), the last
 *    group ragged, against the float64 reference.
 */
import { loadAddon } from '../../lib/native';

type Dt = 'fp32' | 'bf16';
interface GemmOpts {
  M: number;
  N: number;
  K: number;
  transA?: boolean;
  transB?: boolean;
  lda?: number;
  ldb?: number;
  ldc?: number;
  a: Float32Array;
  b: Float32Array;
  c: Float32Array;
  out?: Float32Array;
  bias?: Float32Array;
  accumulate?: boolean;
  gelu?: boolean;
  precision?: 'fp32' | 'bf16';
  aType?: Dt;
  bType?: Dt;
  cType?: Dt;
  aOffset?: number;
  bOffset?: number;
  cOffset?: number;
  gemm?: 'own' | 'auto';
  scratchBytes?: number;
}
const addon = loadAddon<{
  cudaGemm(o: GemmOpts): Promise<void>;
  cudaGemmInfo(): { cublaslt: boolean; gemm: string };
  backendOp(o: Record<string, unknown>): Promise<Record<string, Float32Array>>;
}>();

// ---- helpers --------------------------------------------------------------
let seed = 12345;
function rnd(n: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    out[i] = ((seed >>> 8) / 8388608 - 1) * scale;
  }
  return out;
}
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
/** fp32 -> bf16 (round to nearest even) -> fp32, for finite x. */
function bf16(x: number): number {
  f32[0] = x;
  const u = u32[0];
  u32[0] = ((u + 0x7fff + ((u >>> 16) & 1)) & 0xffff0000) >>> 0;
  return f32[0];
}
const roundAll = (x: Float32Array) => Float32Array.from(x, bf16);
const geluTanh = (x: number) => 0.5 * x * (1 + Math.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));

interface Combo {
  name: string;
  ta: boolean;
  tb: boolean;
  a: Dt;
  b: Dt;
  c: Dt;
  accumulate?: boolean;
  gelu?: boolean;
}
// What the model runs with bf16 storage (docs/GPU.md "Which GEMM runs").
const COMBOS: Combo[] = [
  { name: 'NN (bf16, bf16) -> bf16', ta: false, tb: false, a: 'bf16', b: 'bf16', c: 'bf16' },
  { name: 'NN (bf16, bf16) -> fp32', ta: false, tb: false, a: 'bf16', b: 'bf16', c: 'fp32' },
  { name: 'NN (fp32, bf16) -> fp32', ta: false, tb: false, a: 'fp32', b: 'bf16', c: 'fp32' },
  { name: 'NT (fp32, bf16) -> fp32', ta: false, tb: true, a: 'fp32', b: 'bf16', c: 'fp32' },
  { name: 'NT (bf16, bf16) -> fp32', ta: false, tb: true, a: 'bf16', b: 'bf16', c: 'fp32' },
  { name: 'TN (bf16, fp32) -> fp32 accumulate', ta: true, tb: false, a: 'bf16', b: 'fp32', c: 'fp32', accumulate: true },
  { name: 'TN (fp32, bf16) -> fp32 accumulate', ta: true, tb: false, a: 'fp32', b: 'bf16', c: 'fp32', accumulate: true },
  { name: 'TN (bf16, bf16) -> fp32 accumulate', ta: true, tb: false, a: 'bf16', b: 'bf16', c: 'fp32', accumulate: true },
  { name: 'gelu NN (bf16, bf16) -> bf16', ta: false, tb: false, a: 'bf16', b: 'bf16', c: 'bf16', gelu: true },
  { name: 'gelu NN (fp32, fp32) -> fp32', ta: false, tb: false, a: 'fp32', b: 'fp32', c: 'fp32', gelu: true },
];

interface Shape {
  M: number;
  N: number;
  K: number;
  pad: number; // extra elements per row of each operand (leading dimension past the width)
  off: number; // element offset of every operand in its device buffer
}
const SHAPES: Shape[] = [
  { M: 1, N: 1, K: 1, pad: 0, off: 0 },
  { M: 37, N: 45, K: 70, pad: 3, off: 1 }, // 2-byte aligned bf16, 4-byte aligned fp32
  { M: 130, N: 67, K: 33, pad: 2, off: 2 }, // 4-byte aligned bf16 rows
  { M: 29, N: 131, K: 41, pad: 4, off: 4 }, // 8-byte aligned bf16 rows
  { M: 64, N: 40, K: 48, pad: 0, off: 0 }, // 16-byte aligned
  { M: 45, N: 45, K: 45, pad: 3, off: 0 }, // 16-byte aligned rows cut mid-chunk by every edge
  { M: 5, N: 9, K: 0, pad: 1, off: 1 }, // empty K: C = bias (+ C when accumulating)
];

interface Problem {
  shape: Shape;
  combo: Combo;
  lda: number;
  ldb: number;
  ldc: number;
  a: Float32Array;
  b: Float32Array;
  c0: Float32Array; // C before the call (bf16-exact, so a bf16 C's gaps round-trip)
  bias: Float32Array;
}

function problem(combo: Combo, shape: Shape): Problem {
  const { M, N, K } = shape;
  const pad = combo.gelu ? 0 : shape.pad;
  const aRows = combo.ta ? K : M, aCols = combo.ta ? M : K;
  const bRows = combo.tb ? N : K, bCols = combo.tb ? K : N;
  const lda = aCols + pad, ldb = bCols + pad, ldc = N + pad;
  return {
    shape,
    combo,
    lda,
    ldb,
    ldc,
    a: poisonGaps(rnd(aRows * lda, 1), aRows, aCols, lda),
    b: poisonGaps(rnd(bRows * ldb, 0.5), bRows, bCols, ldb),
    c0: roundAll(rnd(M * ldc, 2)),
    bias: rnd(N, 0.5),
  };
}

/** NaN in the leading-dimension gaps of an operand: a kernel that multiplies
 *  anything past an edge (instead of zeros) turns its C into NaN. */
function poisonGaps(x: Float32Array, rows: number, cols: number, ld: number): Float32Array {
  for (let r = 0; r < rows; r++) for (let c = cols; c < ld; c++) x[r * ld + c] = NaN;
  return x;
}

interface Result {
  c: Float32Array;
  out?: Float32Array;
}

async function run(
  p: Problem,
  types: { a: Dt; b: Dt; c: Dt },
  gemm: 'own' | 'auto',
  precision: 'bf16' | 'fp32' = 'bf16',
  scratchBytes = 1 << 20,
): Promise<Result> {
  const { M, N, K, off } = p.shape;
  const { combo } = p;
  const c = Float32Array.from(p.c0);
  const out = combo.gelu ? Float32Array.from(p.c0) : undefined;
  const o: GemmOpts = {
    M, N, K, a: p.a, b: p.b, c, bias: p.bias, precision, gemm,
    aType: types.a, bType: types.b, cType: types.c,
    accumulate: !!combo.accumulate,
    scratchBytes,
  };
  if (combo.gelu) {
    o.gelu = true;
    o.out = out;
  } else {
    Object.assign(o, { transA: combo.ta, transB: combo.tb, lda: p.lda, ldb: p.ldb, ldc: p.ldc, aOffset: off, bOffset: off, cOffset: off });
  }
  await addon.cudaGemm(o);
  return { c, out };
}

/** float64 pre = op(A) op(B) + bias (+ C0 when accumulating) on bf16-rounded A and B. */
function reference(p: Problem): Float64Array {
  const { M, N, K } = p.shape;
  const { ta, tb, accumulate } = p.combo;
  const ref = new Float64Array(M * N);
  for (let i = 0; i < M; i++)
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) {
        const a = ta ? p.a[k * p.lda + i] : p.a[i * p.lda + k];
        const b = tb ? p.b[j * p.ldb + k] : p.b[k * p.ldb + j];
        s += bf16(a) * bf16(b);
      }
      s += p.bias[j];
      if (accumulate) s += p.c0[i * p.ldc + j];
      ref[i * N + j] = s;
    }
  return ref;
}

function relL2(got: Float32Array, ldc: number, ref: Float64Array, M: number, N: number, f: (x: number) => number = (x) => x): number {
  let e = 0, n = 0;
  for (let i = 0; i < M; i++)
    for (let j = 0; j < N; j++) {
      const r = f(ref[i * N + j]);
      e += (got[i * ldc + j] - r) ** 2;
      n += r * r;
    }
  return Math.sqrt(e / Math.max(n, 1e-30));
}

/** The elements of C outside its M x N window (the ldc gaps) are as they were. */
function expectGapsUntouched(got: Float32Array, p: Problem) {
  const { M, N } = p.shape;
  for (let i = 0; i < M; i++)
    for (let j = N; j < p.ldc; j++)
      if (got[i * p.ldc + j] !== p.c0[i * p.ldc + j]) throw new Error(`C[${i}, ${j}] outside the output window was written`);
}

function firstBitDiff(x: Float32Array, y: Float32Array): string | null {
  for (let i = 0; i < x.length; i++) if (!Object.is(x[i], y[i])) return `element ${i}: ${x[i]} vs ${y[i]}`;
  return null;
}

// Tolerances (rel L2 against float64 on the bf16-rounded inputs, whose
// products are exact in fp32). fp32 C: only fp32 summation error (measured at
// most 5e-8 on these shapes, emulator and stand-in alike); bf16 C: one
// rounding to bf16, at most 2^-8 relative per element (measured 1.6e-3 to
// 1.7e-3 on the larger shapes, 2.7e-3 on a single element).
const TOL_F32 = 2e-7;
const TOL_BF16 = 2 ** -8 + 1e-6;

const info = addon.cudaGemmInfo();

describe('bf16-storage GEMMs against float64 on the bf16-rounded inputs', () => {
  for (const combo of COMBOS)
    for (const gemm of ['own', 'auto'] as const)
      test(`${combo.name} (${gemm === 'own' ? 'own kernels' : `gemm(): ${info.gemm}`})`, async () => {
        for (const shape of SHAPES) {
          const p = problem(combo, shape);
          const r = await run(p, combo, gemm);
          const ref = reference(p);
          const { M, N } = shape;
          const tol = combo.c === 'bf16' ? TOL_BF16 : TOL_F32;
          const what = `${combo.name} ${gemm} M=${M} N=${N} K=${shape.K} pad=${shape.pad} off=${shape.off}`;
          const e = relL2(r.c, p.ldc, ref, M, N);
          if (!(e < tol)) throw new Error(`${what}: C relative L2 error ${e} (limit ${tol})`);
          if (combo.gelu) {
            const eg = relL2(r.out!, p.ldc, ref, M, N, geluTanh);
            if (!(eg < tol)) throw new Error(`${what}: GELU out relative L2 error ${eg} (limit ${tol})`);
          }
          if (!combo.gelu) expectGapsUntouched(r.c, p);
        }
      });
});

// Grids of several tile groups (gemm.cu's block order: groups of 8 tiles
// along the dimension of the larger operand, the last group shorter): a
// block that took no tile or another's leaves C's tiles at C0 (random), so
// the float64 reference fails them.
const GRID_SHAPES: Shape[] = [
  { M: 9 * 128 + 1, N: 3 * 128 - 5, K: 40, pad: 1, off: 1 }, // 10 x 3 tiles, A the larger: groups of 8 and 2 row tiles
  { M: 3 * 128 - 84, N: 9 * 128 + 1, K: 40, pad: 0, off: 0 }, // 3 x 10 tiles, B the larger: groups of 8 and 2 column tiles
  { M: 9 * 128 + 1, N: 77, K: 33, pad: 2, off: 2 }, // one column of 10 tiles
  { M: 50, N: 9 * 128 + 1, K: 33, pad: 3, off: 0 }, // one row of 10 tiles
  { M: 17 * 128 + 5, N: 200, K: 20, pad: 0, off: 1 }, // 18 x 2 tiles: groups of 8, 8 and 2
];

describe('grids of several tile groups, ragged last group (own kernels, against float64)', () => {
  for (const combo of COMBOS)
    test(combo.name, async () => {
      for (const shape of GRID_SHAPES) {
        const p = problem(combo, shape);
        const r = await run(p, combo, 'own');
        const ref = reference(p);
        const { M, N } = shape;
        const tol = combo.c === 'bf16' ? TOL_BF16 : TOL_F32;
        const what = `${combo.name} M=${M} N=${N} K=${shape.K}`;
        const e = relL2(r.c, p.ldc, ref, M, N);
        if (!(e < tol)) throw new Error(`${what}: C relative L2 error ${e} (limit ${tol})`);
        if (combo.gelu) {
          const eg = relL2(r.out!, p.ldc, ref, M, N, geluTanh);
          if (!(eg < tol)) throw new Error(`${what}: GELU out relative L2 error ${eg} (limit ${tol})`);
        } else {
          expectGapsUntouched(r.c, p);
        }
      }
    });
});

describe('bf16 storage changes no bits under Precision::BF16 (own kernels)', () => {
  for (const combo of COMBOS)
    test(combo.name, async () => {
      for (const shape of SHAPES) {
        const p = problem(combo, shape);
        // The same call with every operand and C in fp32.
        const f = await run(p, { a: 'fp32', b: 'fp32', c: 'fp32' }, 'own');
        const h = await run(p, combo, 'own');
        // An fp32 C with bf16 operands: bitwise the fp32 operands' C.
        // A bf16 C: bitwise the bf16 rounding of that C.
        const want = combo.c === 'bf16' ? roundAll(f.c) : f.c;
        const what = `${combo.name} M=${shape.M} N=${shape.N} K=${shape.K} off=${shape.off}`;
        const d = firstBitDiff(h.c, want);
        if (d) throw new Error(`${what}: C differs from the fp32-storage result at ${d}`);
        if (combo.gelu) {
          const dg = firstBitDiff(h.out!, combo.c === 'bf16' ? roundAll(f.out!) : f.out!);
          if (dg) throw new Error(`${what}: GELU out differs from the fp32-storage result at ${dg}`);
        }
      }
    });

  test('a bf16 C is the rounding of the fp32 C for every operand type mix (NN, own)', async () => {
    const combo: Combo = { name: 'NN', ta: false, tb: false, a: 'fp32', b: 'fp32', c: 'bf16' };
    const p = problem(combo, SHAPES[1]);
    const f = await run(p, { a: 'bf16', b: 'bf16', c: 'fp32' }, 'own');
    const h = await run(p, { a: 'bf16', b: 'bf16', c: 'bf16' }, 'own');
    expect(firstBitDiff(h.c, roundAll(f.c))).toBeNull();
  });
});

// Which GEMM ran: the emulator's stand-in sums in double, the own kernels in
// fp32, so on these shapes their results differ in some last bits.
const onStandIn = info.cublaslt && /stand-in/.test(info.gemm);
if (onStandIn) describe('bf16 storage through cuBLASLt (the stand-in)', () => {
  const shape = SHAPES[1];
  const sameBits = (x: Float32Array, y: Float32Array) => firstBitDiff(x, y) === null;
  async function both(combo: Combo) {
    const p = problem(combo, shape);
    const own = await run(p, combo, 'own');
    const auto = await run(p, combo, 'auto');
    return { own, auto };
  }
  test('homogeneous bf16 operands, fp32 or bf16 C, run on cuBLASLt', async () => {
    for (const combo of COMBOS.filter((c) => c.a === 'bf16' && c.b === 'bf16' && !c.gelu)) {
      const { own, auto } = await both(combo);
      if (combo.c === 'fp32') expect(sameBits(auto.c, own.c)).toBe(false);
      // Either way within one bf16 rounding of the own result.
      const ref = Float64Array.from(own.c);
      expect(relL2(auto.c, 1, ref, 1, own.c.length)).toBeLessThan(TOL_BF16);
    }
  });
  test('a mixed call runs on cuBLASLt with a large enough workspace, on the own kernels without one', async () => {
    const combo = COMBOS.find((c) => c.name === 'NN (fp32, bf16) -> fp32')!;
    const p = problem(combo, shape);
    // The fp32 A, all of its leading-dimension span, in bf16.
    const need = 2 * ((shape.M - 1) * p.lda + shape.K);
    const own = await run(p, combo, 'own');
    expect(sameBits((await run(p, combo, 'auto', 'bf16', need)).c, own.c)).toBe(false);
    expect(sameBits((await run(p, combo, 'auto', 'bf16', need - 1)).c, own.c)).toBe(true);
    expect(sameBits((await run(p, combo, 'auto', 'bf16', 0)).c, own.c)).toBe(true);
  });
  test('bias + GELU with bf16 pre and out runs on cuBLASLt, its GELU reading the rounded pre (the composition)', async () => {
    const { own, auto } = await both(COMBOS.find((c) => c.gelu && c.c === 'bf16')!);
    // gelu_forward (bf16 storage) of the stored pre: what cuBLASLt's path
    // writes, and not what the own fused kernel writes (the GELU of the fp32
    // pre), so this also shows which path ran.
    const composed = async (pre: Float32Array) =>
      (await addon.backendOp({ device: 'cuda', op: 'gelu_forward', storage: 'bf16', inp: pre })).out;
    expect(sameBits(auto.out!, await composed(auto.c))).toBe(true);
    expect(sameBits(own.out!, await composed(own.c))).toBe(false);
    const ref = Float64Array.from(own.out!);
    expect(relL2(auto.out!, 1, ref, 1, own.out!.length)).toBeLessThan(TOL_BF16);
  });
});

describe('refused combinations are clear errors', () => {
  const base = (o: Partial<GemmOpts>): GemmOpts => ({
    M: 3, N: 5, K: 4, a: rnd(12), b: rnd(20), c: new Float32Array(15), precision: 'bf16', gemm: 'own', ...o,
  });
  test('precision fp32 takes fp32 operands', async () => {
    for (const t of [{ aType: 'bf16' }, { bType: 'bf16' }, { cType: 'bf16' }] as const)
      await expect(addon.cudaGemm(base({ precision: 'fp32', ...t }))).rejects.toMatchObject({
        code: 'INVALID_ARGUMENT',
        message: expect.stringContaining('precision fp32 takes fp32 operands'),
      });
    await expect(
      addon.cudaGemm(base({ precision: 'fp32', gelu: true, out: new Float32Array(15), aType: 'bf16', bType: 'bf16' })),
    ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('precision fp32 takes fp32 operands') });
  });
  test('a bf16 C is never accumulated into', async () => {
    await expect(addon.cudaGemm(base({ cType: 'bf16', accumulate: true }))).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringContaining('bf16 C cannot be accumulated'),
    });
  });
  test('a combination that is not instantiated names the layout and the types', async () => {
    await expect(
      addon.cudaGemm(base({ transA: true, lda: 3, aType: 'bf16', bType: 'bf16', cType: 'bf16' })),
    ).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringMatching(/layout TN with A bf16, B bf16, C bf16 is not instantiated/),
    });
    await expect(
      addon.cudaGemm(base({ gelu: true, out: new Float32Array(15), aType: 'bf16', bType: 'fp32', cType: 'bf16' })),
    ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/NN with A bf16, B fp32, C bf16/) });
    // Through gemm(): cuBLASLt takes no combination the own GEMM lacks.
    await expect(
      addon.cudaGemm(base({ gemm: 'auto', transA: true, lda: 3, aType: 'bf16', bType: 'bf16', cType: 'bf16' })),
    ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/layout TN with A bf16, B bf16, C bf16/) });
    await expect(
      addon.cudaGemm(base({ gemm: 'auto', gelu: true, out: new Float32Array(15), aType: 'bf16', bType: 'fp32' })),
    ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/NN with A bf16, B fp32, C fp32/) });
  });
  test('bad types are refused by name', () => {
    expect(() => addon.cudaGemm(base({ aType: 'fp16' as Dt }))).toThrow(/"fp32" or "bf16" for aType but received "fp16"/);
  });
});
