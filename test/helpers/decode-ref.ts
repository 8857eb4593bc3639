/**
 * Float64 references of the Backend's decoding ops (kv_store,
 * decode_attention, embedding_at) on the options of a test/ops/decode-op-table.js
 * case, shaped like decodeOp's result ({ key: values }). decode_attention is
 * attention-ref.ts's attendRow over each row's ring of cache slots.
 */
import { attendRow } from './attention-ref';

type Ints = ArrayLike<number>;
type Floats = ArrayLike<number>;

/** Slot of position j in a ring of P slots. */
const slotOf = (j: number, P: number) => j % P;

export function decodeReference(opts: Record<string, unknown>): Record<string, Float64Array> {
  const o = opts as Record<string, number & Ints & Floats> & { op: string };
  if (o.op === 'embedding_at') {
    const out = new Float64Array(o.M * o.C);
    for (let r = 0; r < o.M; ++r)
      for (let c = 0; c < o.C; ++c) out[r * o.C + c] = Math.fround(o.wte[o.tokens[r] * o.C + c] + o.wpe[o.positions[r] * o.C + c]);
    return { out };
  }
  const { M, H, D } = o;
  const C = H * D;
  if (o.op === 'kv_store') {
    const cache = Float64Array.from(o.cache);
    for (let r = 0; r < M; ++r) {
      if (o.pos[r] < 0) continue;
      const P = o.slots[r];
      const slot = slotOf(o.pos[r], P);
      for (let h = 0; h < H; ++h)
        for (let d = 0; d < D; ++d) {
          cache[o.kOffset[r] + (h * P + slot) * D + d] = o.k[r * o.ld + h * D + d];
          cache[o.vOffset[r] + (h * P + slot) * D + d] = o.v[r * o.ld + h * D + d];
        }
    }
    return { cache };
  }
  if (o.op !== 'decode_attention') throw new Error(`no reference for op ${o.op}`);
  const out = new Float64Array(M * C);
  for (let r = 0; r < M; ++r) {
    const P = o.slots[r];
    const n = o.pos[r] - o.first[r] + 1;
    for (let h = 0; h < H; ++h) {
      // Keys first..pos, each in its ring slot.
      const kAt = new Int32Array(n);
      const vAt = new Int32Array(n);
      for (let i = 0; i < n; ++i) {
        const slot = slotOf(o.first[r] + i, P);
        kAt[i] = o.kOffset[r] + (h * P + slot) * D;
        vAt[i] = o.vOffset[r] + (h * P + slot) * D;
      }
      out.set(attendRow(o.q, r * o.ldq + h * D, o.cache, kAt, o.cache, vAt, D, o.scale).out, r * C + h * D);
    }
  }
  return { out };
}
