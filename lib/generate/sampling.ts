/**
 * Sampling one token from a row of logits. The order: temperature, then
 * top-k, then top-p (nucleus), then one uniform draw from the prompt's own
 * PCG32 stream (seed, i). `temperature: 0` is argmax with the lowest id on
 * ties and draws nothing.
 */
import { NonFiniteError } from '../errors';
import { Rng } from '../rng';
import { SamplingOptions } from './types';

/** Index of the largest finite value in row[0..n), lowest index on ties. */
export function argmax(row: ArrayLike<number>, n = row.length): number {
  let best = -1;
  let bestV = -Infinity;
  for (let i = 0; i < n; i++) {
    const v = row[i];
    if (v > bestV) {
      bestV = v;
      best = i;
    }
  }
  if (best < 0) {
    // Every value is -Infinity or NaN: fall back to the lowest -Infinity id, or fail on NaN.
    for (let i = 0; i < n; i++) if (row[i] === -Infinity) return i;
    throw new NonFiniteError('Every logit is NaN: the model produced non-finite values');
  }
  return best;
}

// A candidate order: higher logit first, lower id on ties.
function before(la: number, ia: number, lb: number, ib: number): boolean {
  return la > lb || (la === lb && ia < ib);
}

/**
 * The k best ids of row[0..n) in order (logit desc, id asc), via a size-k
 * min-heap: O(n log k), and most elements are rejected with one comparison.
 */
export function topKIndices(row: ArrayLike<number>, n: number, k: number): number[] {
  const heap: number[] = []; // ids; heap[0] is the worst kept
  const worse = (a: number, b: number) => before(row[b], b, row[a], a); // a ranks after b
  const siftDown = (i: number) => {
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < heap.length && worse(heap[l], heap[m])) m = l;
      if (r < heap.length && worse(heap[r], heap[m])) m = r;
      if (m === i) return;
      [heap[i], heap[m]] = [heap[m], heap[i]];
      i = m;
    }
  };
  for (let id = 0; id < n; id++) {
    const v = row[id];
    if (v !== v) continue; // NaN never ranks
    if (heap.length < k) {
      heap.push(id);
      let i = heap.length - 1;
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (!worse(heap[i], heap[p])) break;
        [heap[i], heap[p]] = [heap[p], heap[i]];
        i = p;
      }
    } else if (before(v, id, row[heap[0]], heap[0])) {
      heap[0] = id;
      siftDown(0);
    }
  }
  return heap.sort((a, b) => (before(row[a], a, row[b], b) ? -1 : 1));
}

/**
 * The distribution sampling draws from, after temperature, top-k and top-p:
 * candidate ids (most likely first for top-k/top-p; id order otherwise) and
 * their unnormalized weights. Exposed for tests.
 */
export function samplingDistribution(
  row: ArrayLike<number>,
  n: number,
  s: SamplingOptions,
): { ids: number[] | null; weights: Float64Array; total: number } {
  if (!(s.temperature > 0)) throw new RangeError('samplingDistribution needs temperature > 0 (0 is argmax)');
  const invT = 1 / s.temperature;
  const k = s.topK > 0 && s.topK < n ? s.topK : 0;
  let ids: number[] | null = k ? topKIndices(row, n, k) : null;
  let max = -Infinity;
  if (ids) max = row[ids[0]];
  else for (let i = 0; i < n; i++) if (row[i] > max) max = row[i];
  if (max === -Infinity || max !== max) {
    // Nothing finite to sample from: the model is broken, or every logit is masked.
    if (max === -Infinity) return { ids: [argmax(row, n)], weights: Float64Array.of(1), total: 1 };
    throw new NonFiniteError('Every logit is NaN: the model produced non-finite values');
  }
  if (max === Infinity) throw new NonFiniteError('A logit is +Infinity: the model produced non-finite values');
  const m = ids ? ids.length : n;
  let weights = new Float64Array(m);
  let total = 0;
  for (let j = 0; j < m; j++) {
    const id = ids ? ids[j] : j;
    const v = row[id];
    const w = v === v ? Math.exp((v - max) * invT) : 0;
    weights[j] = w;
    total += w;
  }
  if (s.topP < 1) {
    // The nucleus is a prefix of the candidates sorted by weight. Without
    // top-k, avoid sorting the whole vocabulary: the ids with weight >= t form
    // a prefix of that order, so once their mass reaches p the nucleus lies
    // inside them. Lower t until it does.
    let order: number[];
    if (ids) order = ids.map((_, j) => j);
    else {
      let t = 1e-3;
      for (;;) {
        const cand: number[] = [];
        let mass = 0;
        for (let j = 0; j < m; j++)
          if (weights[j] >= t) {
            cand.push(j);
            mass += weights[j];
          }
        if (mass >= s.topP * total || t === 0) {
          order = cand;
          break;
        }
        t = t < 1e-30 ? 0 : t * 1e-3;
      }
      order.sort((a, b) => weights[b] - weights[a] || a - b);
    }
    const keep: number[] = [];
    const kw: number[] = [];
    let mass = 0;
    const target = s.topP * total;
    for (const j of order) {
      keep.push(ids ? ids[j] : j);
      kw.push(weights[j]);
      mass += weights[j];
      if (mass >= target) break;
    }
    ids = keep;
    weights = Float64Array.from(kw);
    total = mass;
  }
  return { ids, weights, total };
}

/** Samples one token id from row[0..n) (temperature, top-k, top-p, one draw from rng). */
export function sampleToken(row: ArrayLike<number>, n: number, s: SamplingOptions, rng: Rng): number {
  if (s.temperature === 0) return argmax(row, n);
  const d = samplingDistribution(row, n, s);
  const u = rng.nextFloat() * d.total;
  let acc = 0;
  const m = d.weights.length;
  for (let j = 0; j < m; j++) {
    acc += d.weights[j];
    if (u < acc) return d.ids ? d.ids[j] : j;
  }
  // Rounding left u at the very top: take the last candidate with weight.
  for (let j = m - 1; j >= 0; j--) if (d.weights[j] > 0) return d.ids ? d.ids[j] : j;
  return d.ids ? d.ids[0] : 0;
}
