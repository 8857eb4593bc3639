/**
 * Float64 reference for causal dense / banded attention: naive, materialized
 * per row, masked explicitly (query i sees keys i - window < j <= i; dense is
 * window = seq). Gradients are of the loss sum(out * dOut), computed from the
 * inputs alone (not from the kernel's out / lse).
 *
 * Layout: [batch, heads, seq, headDim] contiguous; lse [batch, heads, seq].
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

/** Row i's probabilities over keys lo..i, plus lse. */
function rowSoftmax(s: RefShape, q: Arr, k: Arr, base: number, i: number, p: Float64Array): { lo: number; lse: number } {
  const { seq: T, headDim: D, scale } = s;
  const lo = Math.max(0, i - Math.min(s.window, T) + 1);
  let m = -Infinity;
  const qi = base + i * D;
  for (let j = lo; j <= i; j++) {
    const kj = base + j * D;
    let dot = 0;
    for (let d = 0; d < D; d++) dot += q[qi + d] * k[kj + d];
    p[j] = dot * scale;
    if (p[j] > m) m = p[j];
  }
  let l = 0;
  for (let j = lo; j <= i; j++) {
    p[j] = Math.exp(p[j] - m);
    l += p[j];
  }
  for (let j = lo; j <= i; j++) p[j] /= l;
  return { lo, lse: m + Math.log(l) };
}

export function refForward(s: RefShape, q: Arr, k: Arr, v: Arr): { out: Float64Array; lse: Float64Array } {
  const { batch: B, heads: H, seq: T, headDim: D } = s;
  const out = new Float64Array(B * H * T * D);
  const lse = new Float64Array(B * H * T);
  const p = new Float64Array(T);
  for (let bh = 0; bh < B * H; bh++) {
    const base = bh * T * D;
    for (let i = 0; i < T; i++) {
      const r = rowSoftmax(s, q, k, base, i, p);
      lse[bh * T + i] = r.lse;
      const oi = base + i * D;
      for (let j = r.lo; j <= i; j++) {
        const vj = base + j * D;
        for (let d = 0; d < D; d++) out[oi + d] += p[j] * v[vj + d];
      }
    }
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
  const p = new Float64Array(T);
  const oi = new Float64Array(D);
  for (let bh = 0; bh < B * H; bh++) {
    const base = bh * T * D;
    for (let i = 0; i < T; i++) {
      const { lo } = rowSoftmax(s, q, k, base, i, p);
      const ri = base + i * D;
      oi.fill(0);
      for (let j = lo; j <= i; j++) {
        const vj = base + j * D;
        for (let d = 0; d < D; d++) oi[d] += p[j] * v[vj + d];
      }
      let delta = 0;
      for (let d = 0; d < D; d++) delta += dOut[ri + d] * oi[d];
      for (let j = lo; j <= i; j++) {
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
