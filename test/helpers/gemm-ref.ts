/**
 * Float64 reference for the GEMM tests: the plain triple loop over the same
 * strided inputs the native call sees, plus bf16 rounding (nearest even) done
 * bit-exactly in JS, and error measures.
 */

/** Small deterministic generator (xorshift32) so failures reproduce. */
export function makeRandom(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

/** n uniform values in [-1, 1). */
export function randomArray(n: number, seed: number): Float32Array {
  const r = makeRandom(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = 2 * r() - 1;
  return out;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** x rounded to the nearest bf16 (ties to even), as a float. */
export function bf16Round(x: number): number {
  f32[0] = x;
  let u = u32[0];
  if ((u & 0x7fffffff) > 0x7f800000) return NaN;
  u = (u + 0x7fff + ((u >>> 16) & 1)) >>> 0;
  u32[0] = (u & 0xffff0000) >>> 0;
  return f32[0];
}

export function bf16RoundArray(a: Float32Array): Float32Array {
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = bf16Round(a[i]);
  return out;
}

export interface RefGemm {
  transA: boolean;
  transB: boolean;
  M: number;
  N: number;
  K: number;
  a: Float32Array;
  lda: number;
  b: Float32Array;
  ldb: number;
  /** Initial C ([M] rows of stride ldc) when accumulating. */
  c0?: Float32Array;
  ldc: number;
  accumulate: boolean;
  bias?: Float32Array;
}

/** C as float64 [M, N] (dense, stride N). */
export function gemmRef(g: RefGemm): Float64Array {
  const { M, N, K, a, b, lda, ldb, ldc } = g;
  const out = new Float64Array(M * N);
  const row = new Float64Array(N);
  for (let i = 0; i < M; i++) {
    row.fill(0);
    for (let k = 0; k < K; k++) {
      const av = g.transA ? a[k * lda + i] : a[i * lda + k];
      if (g.transB) {
        for (let j = 0; j < N; j++) row[j] += av * b[j * ldb + k];
      } else {
        const base = k * ldb;
        for (let j = 0; j < N; j++) row[j] += av * b[base + j];
      }
    }
    for (let j = 0; j < N; j++) {
      let x = row[j];
      if (g.accumulate && g.c0) x += g.c0[i * ldc + j];
      if (g.bias) x += g.bias[j];
      out[i * N + j] = x;
    }
  }
  return out;
}

/** Relative L2 error of C (stride ldc) against the dense reference. */
export function relL2(c: Float32Array, ldc: number, ref: Float64Array, M: number, N: number): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < M; i++)
    for (let j = 0; j < N; j++) {
      const d = c[i * ldc + j] - ref[i * N + j];
      num += d * d;
      den += ref[i * N + j] * ref[i * N + j];
    }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

/**
 * Largest error relative to the magnitude sum |a||b| (+ |c0| + |bias|) of each
 * element: the bound fp32 accumulation error scales with, whatever the
 * cancellation in the element itself.
 */
export function maxScaledError(g: RefGemm, c: Float32Array, ref: Float64Array): number {
  const { M, N, K, a, b, lda, ldb, ldc } = g;
  let worst = 0;
  for (let i = 0; i < M; i++)
    for (let j = 0; j < N; j++) {
      let mag = 0;
      for (let k = 0; k < K; k++) {
        const av = g.transA ? a[k * lda + i] : a[i * lda + k];
        const bv = g.transB ? b[j * ldb + k] : b[k * ldb + j];
        mag += Math.abs(av * bv);
      }
      if (g.accumulate && g.c0) mag += Math.abs(g.c0[i * ldc + j]);
      if (g.bias) mag += Math.abs(g.bias[j]);
      const e = Math.abs(c[i * ldc + j] - ref[i * N + j]) / Math.max(mag, 1e-30);
      if (e > worst) worst = e;
    }
  return worst;
}
