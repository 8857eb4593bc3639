/**
 * The engine's CPU matrix multiply on Float32Arrays, for tests and
 * benchmarks (the model calls the same kernel from native code):
 *
 *   C[M, N] = (accumulate ? C : 0) + op(A) @ op(B) (+ bias[N] on every row)
 *
 * op(A) is [M, K]: `a` as a row-major [M, K] matrix, or with `transA` the
 * transpose of `a` stored as [K, M]. op(B) is [K, N]: `b` as [K, N], or with
 * `transB` the transpose of `b` stored as [N, K]. Leading dimensions (`lda`,
 * `ldb`, `ldc`: elements between consecutive rows as stored) default to the
 * row widths. `precision: 'bf16'` rounds A and B to bf16 (nearest even) and
 * accumulates in fp32. Results are bitwise identical for any thread count on
 * one instruction-set path.
 */
import { callNative } from './errors';
import { loadAddon } from './native';
import {
  checkKnownKeys,
  expectBoolean,
  expectFloat32Array,
  expectInteger,
  expectObject,
  expectOneOf,
  rangeError,
} from './validate';

export type GemmPrecision = 'fp32' | 'bf16';

export interface GemmOptions {
  /** op(A) source: [M, K] row-major, or [K, M] with transA. */
  a: Float32Array;
  /** op(B) source: [K, N] row-major, or [N, K] with transB. */
  b: Float32Array;
  /** Output [M, N] (row stride ldc), written in place; allocated when omitted. */
  c?: Float32Array;
  M: number;
  N: number;
  K: number;
  transA?: boolean;
  transB?: boolean;
  lda?: number;
  ldb?: number;
  ldc?: number;
  /** Add to the existing contents of c instead of overwriting them. */
  accumulate?: boolean;
  /** [N], added to every row. */
  bias?: Float32Array;
  /** Default 'fp32'. */
  precision?: GemmPrecision;
}

interface GemmNative {
  gemm(opts: Record<string, unknown>): Promise<void>;
}

const GEMM_KEYS = ['a', 'b', 'c', 'M', 'N', 'K', 'transA', 'transB', 'lda', 'ldb', 'ldc', 'accumulate', 'bias', 'precision'] as const;
const MAX_DIM = 2147483647;

/** Elements a rows x cols row-major matrix with leading dimension ld spans. */
function span(rows: number, cols: number, ld: number): number {
  return rows === 0 || cols === 0 ? 0 : (rows - 1) * ld + cols;
}

function checkSpan(field: string, arr: Float32Array, need: number, shape: string): void {
  if (arr.length < need) throw rangeError(`a Float32Array of length >= ${need} (${shape})`, field, arr);
}

/** Runs the GEMM and resolves to C (the given `c`, or a new array). */
export async function gemm(options: GemmOptions): Promise<Float32Array> {
  const o = expectObject('options', options);
  checkKnownKeys('gemm options', o, GEMM_KEYS);
  const M = expectInteger('M', o.M, { min: 0, max: MAX_DIM });
  const N = expectInteger('N', o.N, { min: 0, max: MAX_DIM });
  const K = expectInteger('K', o.K, { min: 0, max: MAX_DIM });
  const transA = o.transA === undefined ? false : expectBoolean('transA', o.transA);
  const transB = o.transB === undefined ? false : expectBoolean('transB', o.transB);
  const accumulate = o.accumulate === undefined ? false : expectBoolean('accumulate', o.accumulate);
  const precision = o.precision === undefined ? 'fp32' : expectOneOf('precision', o.precision, ['fp32', 'bf16'] as const);
  const aRows = transA ? K : M;
  const aCols = transA ? M : K;
  const bRows = transB ? N : K;
  const bCols = transB ? K : N;
  const lda = o.lda === undefined ? Math.max(1, aCols) : expectInteger('lda', o.lda, { min: Math.max(1, aCols), max: MAX_DIM });
  const ldb = o.ldb === undefined ? Math.max(1, bCols) : expectInteger('ldb', o.ldb, { min: Math.max(1, bCols), max: MAX_DIM });
  const ldc = o.ldc === undefined ? Math.max(1, N) : expectInteger('ldc', o.ldc, { min: Math.max(1, N), max: MAX_DIM });
  const a = expectFloat32Array('a', o.a);
  const b = expectFloat32Array('b', o.b);
  checkSpan('a', a, span(aRows, aCols, lda), `${aRows} x ${aCols}, lda ${lda}`);
  checkSpan('b', b, span(bRows, bCols, ldb), `${bRows} x ${bCols}, ldb ${ldb}`);
  let c: Float32Array;
  if (o.c === undefined) {
    if (accumulate) throw rangeError('a Float32Array to accumulate into', 'c', o.c);
    c = new Float32Array(span(M, N, ldc));
  } else {
    c = expectFloat32Array('c', o.c);
    checkSpan('c', c, span(M, N, ldc), `${M} x ${N}, ldc ${ldc}`);
  }
  const bias = o.bias === undefined ? undefined : expectFloat32Array('bias', o.bias, N);
  const native = loadAddon<GemmNative>();
  await callNative(() =>
    native.gemm({ a, b, c, M, N, K, transA, transB, lda, ldb, ldc, accumulate, bias, precision }),
  );
  return c;
}
