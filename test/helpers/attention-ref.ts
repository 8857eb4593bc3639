/**
 * The float64 attention reference of the tests: softmax(q k^T * scale) v per
 * query row, naive and materialized, and its gradient. attendRow and
 * attendRowBackward take any layout (each key, value and query given by the
 * index where its D numbers start), so every test that needs attention in
 * float64 uses them: the fused kernels' tests in [batch, heads, seq,
 * headDim] (refForward, refBackward, refRow), the model reference
 * (model-ref.ts, fused qkv rows) and the decoding ops (decode-ref.ts, ring
 * caches). Gradients are of the loss sum(out * dOut).
 *
 * refForward / refBackward: causal dense or banded (query i sees keys
 * i - window < j <= i; dense is window = seq), layout [batch, heads, seq,
 * headDim] contiguous, lse [batch, heads, seq]; the backward is computed
 * from the inputs alone (not from a kernel's out / lse).
 */

export interface RefShape {
  batch: number;
  heads: number;
  seq: number;
  headDim: number;
  /** effective window; use seq (or more) for dense */
  window: number;
  scale: number;
}

type Arr = ArrayLike<number>;

export interface RowResult {
  /** probabilities over the listed keys, in their order */
  p: Float64Array;
  out: Float64Array;
  lse: number;
}

/**
 * One query row: q's D numbers start at q[qAt], key n's at k[kAt[n]], value
 * n's at v[vAt[n]] (n over the keys this query sees).
 */
export function attendRow(q: Arr, qAt: number, k: Arr, kAt: Arr, v: Arr, vAt: Arr, D: number, scale: number): RowResult {
  const n = kAt.length;
  const p = new Float64Array(n);
  let m = -Infinity;
  for (let j = 0; j < n; j++) {
    let dot = 0;
    for (let d = 0; d < D; d++) dot += q[qAt + d] * k[kAt[j] + d];
    p[j] = dot * scale;
    if (p[j] > m) m = p[j];
  }
  let l = 0;
  for (let j = 0; j < n; j++) {
    p[j] = Math.exp(p[j] - m);
    l += p[j];
  }
  const out = new Float64Array(D);
  for (let j = 0; j < n; j++) {
    p[j] /= l;
    for (let d = 0; d < D; d++) out[d] += p[j] * v[vAt[j] + d];
  }
  return { p, out, lse: m + Math.log(l) };
}

/**
 * The gradient of sum(out * dOut) through one attendRow (its `p`), with
 * dOut's D numbers at dOut[dAt]: accumulated into dq, dk, dv, which have the
 * layouts of q, k, v (they may be one array, as q, k, v may).
 */
export function attendRowBackward(
  q: Arr, qAt: number, k: Arr, kAt: Arr, v: Arr, vAt: Arr, D: number, scale: number,
  p: Arr, dOut: Arr, dAt: number, dq: Float64Array, dk: Float64Array, dv: Float64Array,
): void {
  const n = kAt.length;
  const dP = new Float64Array(n);
  let delta = 0; // sum_j p_j dP_j = dOut . out
  for (let j = 0; j < n; j++) {
    let s = 0;
    for (let d = 0; d < D; d++) {
      s += dOut[dAt + d] * v[vAt[j] + d];
      dv[vAt[j] + d] += p[j] * dOut[dAt + d];
    }
    dP[j] = s;
    delta += p[j] * s;
  }
  for (let j = 0; j < n; j++) {
    const ds = p[j] * (dP[j] - delta) * scale;
    for (let d = 0; d < D; d++) {
      dq[qAt + d] += ds * k[kAt[j] + d];
      dk[kAt[j] + d] += ds * q[qAt + d];
    }
  }
}

/** Where the keys of query i of head bh start in [batch, heads, seq, headDim] (keys and values alike). */
function causalKeys(s: RefShape, bh: number, i: number): Int32Array {
  const { seq: T, headDim: D } = s;
  const lo = Math.max(0, i - Math.min(s.window, T) + 1);
  const at = new Int32Array(i - lo + 1);
  for (let j = lo; j <= i; j++) at[j - lo] = (bh * T + j) * D;
  return at;
}

/** One query row (i) of one head (bh = b * heads + h) of refForward, for long sequences. */
export function refRow(s: RefShape, q: Arr, k: Arr, v: Arr, bh: number, i: number): { out: Float64Array; lse: number } {
  const at = causalKeys(s, bh, i);
  const r = attendRow(q, (bh * s.seq + i) * s.headDim, k, at, v, at, s.headDim, s.scale);
  return { out: r.out, lse: r.lse };
}

export function refForward(s: RefShape, q: Arr, k: Arr, v: Arr): { out: Float64Array; lse: Float64Array } {
  const { batch: B, heads: H, seq: T, headDim: D } = s;
  const out = new Float64Array(B * H * T * D);
  const lse = new Float64Array(B * H * T);
  for (let bh = 0; bh < B * H; bh++)
    for (let i = 0; i < T; i++) {
      const r = refRow(s, q, k, v, bh, i);
      out.set(r.out, (bh * T + i) * D);
      lse[bh * T + i] = r.lse;
    }
  return { out, lse };
}

export function refBackward(
  s: RefShape,
  q: Arr,
  k: Arr,
  v: Arr,
  dOut: Arr,
): { dq: Float64Array; dk: Float64Array; dv: Float64Array } {
  const { batch: B, heads: H, seq: T, headDim: D, scale } = s;
  const n = B * H * T * D;
  const dq = new Float64Array(n);
  const dk = new Float64Array(n);
  const dv = new Float64Array(n);
  for (let bh = 0; bh < B * H; bh++)
    for (let i = 0; i < T; i++) {
      const at = causalKeys(s, bh, i);
      const qAt = (bh * T + i) * D;
      const { p } = attendRow(q, qAt, k, at, v, at, D, scale);
      attendRowBackward(q, qAt, k, at, v, at, D, scale, p, dOut, qAt, dq, dk, dv);
    }
  return { dq, dk, dv };
}

/** Deterministic uniform values in [-amp, amp) (a 32-bit LCG; tests want fresh but reproducible inputs). */
export function randomArray(n: number, seed: number, amp = 1): Float32Array {
  const a = new Float32Array(n);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    a[i] = ((x >>> 8) / 16777216) * 2 * amp - amp;
  }
  return a;
}

/**
 * Relative L2 error ||got - ref|| / ||ref||. A reference that is zero up to
 * rounding (dq and dk at window 1, where dS = P (dP - rowsum(dO*O)) vanishes
 * exactly) has no relative error; there the denominator is `floor`, the norm
 * of a comparable quantity.
 */
export function relL2(got: ArrayLike<number>, ref: ArrayLike<number>, floor = 0): number {
  let e = 0;
  let r = 0;
  for (let i = 0; i < ref.length; i++) {
    e += (got[i] - ref[i]) ** 2;
    r += ref[i] ** 2;
  }
  return Math.sqrt(e) / Math.max(Math.sqrt(r), floor);
}

export function l2(a: ArrayLike<number>): number {
  let r = 0;
  for (let i = 0; i < a.length; i++) r += a[i] ** 2;
  return Math.sqrt(r);
}

/**
 * Float64 reference with an EXPLICIT mask: allowed[b*T*T + i*T + j] != 0 when
 * query i of batch row b may see key j (the same for every head; every query
 * must see at least one key). Dense / banded / document masks are all just
 * masks here; `window` in RefShape is ignored. Gradients as refBackward.
 */
export type MaskShape = Omit<RefShape, 'window'>;

function rowSoftmaxMasked(s: MaskShape, allowed: Uint8Array, b: number, q: Arr, k: Arr, base: number, i: number,
  p: Float64Array): { keys: number[]; lse: number } {
  const { seq: T, headDim: D, scale } = s;
  const keys: number[] = [];
  let m = -Infinity;
  const qi = base + i * D;
  for (let j = 0; j < T; j++) {
    if (!allowed[(b * T + i) * T + j]) continue;
    keys.push(j);
    const kj = base + j * D;
    let dot = 0;
    for (let d = 0; d < D; d++) dot += q[qi + d] * k[kj + d];
    p[j] = dot * scale;
    if (p[j] > m) m = p[j];
  }
  if (keys.length === 0) throw new Error(`masked reference: query ${i} of batch row ${b} sees no key`);
  let l = 0;
  for (const j of keys) {
    p[j] = Math.exp(p[j] - m);
    l += p[j];
  }
  for (const j of keys) p[j] /= l;
  return { keys, lse: m + Math.log(l) };
}

export function refForwardMasked(s: MaskShape, allowed: Uint8Array, q: Arr, k: Arr, v: Arr):
  { out: Float64Array; lse: Float64Array } {
  const { batch: B, heads: H, seq: T, headDim: D } = s;
  const out = new Float64Array(B * H * T * D);
  const lse = new Float64Array(B * H * T);
  const p = new Float64Array(T);
  for (let bh = 0; bh < B * H; bh++) {
    const b = Math.floor(bh / H);
    const base = bh * T * D;
    for (let i = 0; i < T; i++) {
      const r = rowSoftmaxMasked(s, allowed, b, q, k, base, i, p);
      lse[bh * T + i] = r.lse;
      const oi = base + i * D;
      for (const j of r.keys) {
        const vj = base + j * D;
        for (let d = 0; d < D; d++) out[oi + d] += p[j] * v[vj + d];
      }
    }
  }
  return { out, lse };
}

export function refBackwardMasked(s: MaskShape, allowed: Uint8Array, q: Arr, k: Arr, v: Arr, dOut: Arr):
  { dq: Float64Array; dk: Float64Array; dv: Float64Array } {
  const { batch: B, heads: H, seq: T, headDim: D, scale } = s;
  const n = B * H * T * D;
  const dq = new Float64Array(n);
  const dk = new Float64Array(n);
  const dv = new Float64Array(n);
  const p = new Float64Array(T);
  const oi = new Float64Array(D);
  for (let bh = 0; bh < B * H; bh++) {
    const b = Math.floor(bh / H);
    const base = bh * T * D;
    for (let i = 0; i < T; i++) {
      const { keys } = rowSoftmaxMasked(s, allowed, b, q, k, base, i, p);
      const ri = base + i * D;
      oi.fill(0);
      for (const j of keys) {
        const vj = base + j * D;
        for (let d = 0; d < D; d++) oi[d] += p[j] * v[vj + d];
      }
      let delta = 0;
      for (let d = 0; d < D; d++) delta += dOut[ri + d] * oi[d];
      for (const j of keys) {
        const rj = base + j * D;
        let dp = 0;
        for (let d = 0; d < D; d++) dp += dOut[ri + d] * v[rj + d];
        const ds = p[j] * (dp - delta) * scale;
        for (let d = 0; d < D; d++) {
          dq[ri + d] += ds * k[rj + d];
          dk[rj + d] += ds * q[ri + d];
          dv[rj + d] += p[j] * dOut[ri + d];
        }
      }
    }
  }
  return { dq, dk, dv };
}

/**
 * The explicit mask of causal attention within documents, from the tokens
 * themselves (not from document starts): position i's document is the number
 * of end-of-text tokens before it in its row (an EOT belongs to the document
 * it ends), and query i sees key j when both are in one document, j <= i,
 * and i - j < window (window >= seq: dense). [batch, seq, seq].
 */
export function documentMask(tokens: ArrayLike<number>, batch: number, seq: number, eot: number, window: number): Uint8Array {
  const allowed = new Uint8Array(batch * seq * seq);
  const doc = new Int32Array(seq);
  for (let b = 0; b < batch; b++) {
    let n = 0;
    for (let i = 0; i < seq; i++) {
      doc[i] = n;
      if (tokens[b * seq + i] === eot) n++;
    }
    for (let i = 0; i < seq; i++)
      for (let j = 0; j <= i; j++)
        if (doc[i] === doc[j] && i - j < window) allowed[(b * seq + i) * seq + j] = 1;
  }
  return allowed;
}
