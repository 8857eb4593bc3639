/**
 * CUDA attention reading and writing bf16 storage (AttnTensor bf16 views of
 * q, k, v and out; lse, dOut, dq, dk, dv stay fp32), through the addon's
 * attentionForward / attentionBackward with `bf16: [fields]` (the host's fp32
 * arrays are converted to bf16 on the device, bf16 outputs back to fp32).
 *
 * Against the float64 reference (test/helpers/attention-ref.ts) on the
 * bf16-rounded inputs, under precision bf16: tensor-core kernels (head dims
 * 64/80/96/128) and the fp32 SIMT kernels (16, 256: the head dims the
 * tensor cores lack), dense and banded, document masks, T = 1, T not a
 * multiple of the tiles, window 1, window > T. Tolerances (relative L2;
 * measured under the emulator: about half of each): forward out 4e-3 on
 * tensor cores (bf16 P, out rounded to bf16) and 3e-3 on the SIMT kernels
 * (out rounded to bf16 only); lse within 1e-5 absolute; backward (from the
 * kernel's bf16 out) dq/dk/dv 6e-3 on tensor cores (bf16 dO, P, dS, and D
 * from the bf16 O); on the SIMT kernels dv 1e-5 (fp32 arithmetic on the
 * same bf16 values) and dq/dk 4e-3 (D = rowsum(dO * O) from the bf16 O).
 *
 * Bitwise (both kernel families read a bf16 element and its fp32 copy as the
 * same value, in the same order): bf16 views of bf16-representable data give
 * the fp32 views' lse and out (out bf16: the bf16 rounding of the fp32 out),
 * and dq/dk/dv when the fp32 run's O holds the same bf16 values. Not bitwise
 * against an fp32 O that is not bf16-representable: D = rowsum(dO * O) then
 * reads different O values (checked to differ). Also bitwise: mixed views
 * (only K and V, only Q, only K bf16), the fused [B, T, 3C] QKV view and
 * views that are only 8-, 4- or 2-byte aligned against contiguous bf16 ones,
 * and run to run. dOut / dq / dk / dv as bf16 views: INVALID_ARGUMENT naming
 * the field.
 */
import { loadAddon } from '../../lib/native';
import { l2, randomArray, refBackwardMasked, refForwardMasked, relL2 } from '../helpers/attention-ref';

type Field = Float32Array | { data: Float32Array; offset: number; sb: number; sh: number; st: number };
interface Addon {
  attentionForward(o: Record<string, unknown>): Promise<string>;
  attentionBackward(o: Record<string, unknown>): Promise<string>;
}
const addon = loadAddon<Addon>();

/** Rounds to bf16 (nearest even), kept as fp32. */
function bf16(a: Float32Array): Float32Array {
  const out = Float32Array.from(a);
  const u = new Uint32Array(out.buffer);
  for (let i = 0; i < u.length; i++) u[i] = (u[i] + 0x7fff + ((u[i] >>> 16) & 1)) & 0xffff0000;
  return out;
}
const same = (a: Float32Array, b: Float32Array) => Buffer.from(a.buffer).equals(Buffer.from(b.buffer));

interface Case {
  B: number;
  H: number;
  T: number;
  D: number;
  window: number | null; // null: dense
  docs?: number[][]; // per batch row: positions where a new document starts (besides 0)
}
const label = (c: Case) =>
  `B${c.B} H${c.H} T${c.T} D${c.D} ${c.window === null ? 'dense' : `window ${c.window}`}${c.docs ? ' docs' : ''}`;
const tensorCores = (D: number) => D === 64 || D === 80 || D === 96 || D === 128;

function docStart(c: Case): Int32Array | undefined {
  if (!c.docs) return undefined;
  const ds = new Int32Array(c.B * c.T);
  for (let b = 0; b < c.B; b++) {
    let s = 0;
    for (let i = 0; i < c.T; i++) {
      if (c.docs[b].includes(i)) s = i;
      ds[b * c.T + i] = s;
    }
  }
  return ds;
}

function allowed(c: Case, ds: Int32Array | undefined): Uint8Array {
  const w = c.window ?? c.T;
  const a = new Uint8Array(c.B * c.T * c.T);
  for (let b = 0; b < c.B; b++)
    for (let i = 0; i < c.T; i++)
      for (let j = 0; j <= i; j++)
        if (i - j < w && (!ds || j >= ds[b * c.T + i])) a[(b * c.T + i) * c.T + j] = 1;
  return a;
}

let seed = 4100;
function inputs(c: Case) {
  const n = c.B * c.H * c.T * c.D;
  const q = bf16(randomArray(n, seed++, 2)), k = bf16(randomArray(n, seed++, 2)), v = bf16(randomArray(n, seed++));
  const dOut = randomArray(n, seed++);
  return { n, q, k, v, dOut };
}
function shape(c: Case, ds?: Int32Array) {
  return {
    batch: c.B, heads: c.H, seq: c.T, headDim: c.D, pattern: c.window === null ? 'dense' : 'banded',
    window: c.window ?? undefined, scale: 1 / Math.sqrt(c.D), precision: 'bf16', device: 'cuda',
    ...(ds ? { docStart: ds } : {}),
  };
}

async function forward(c: Case, ds: Int32Array | undefined, f: { q: Field; k: Field; v: Field }, b16: string[],
  out?: Field) {
  const n = c.B * c.H * c.T * c.D;
  const o = out ?? new Float32Array(n);
  const lse = new Float32Array(c.B * c.H * c.T);
  await addon.attentionForward({ ...shape(c, ds), ...f, out: o, lse, bf16: b16 });
  return { out: o instanceof Float32Array ? o : o.data, lse };
}

async function backward(c: Case, ds: Int32Array | undefined,
  f: { q: Field; k: Field; v: Field; out: Field; lse: Float32Array; dOut: Float32Array }, b16: string[]) {
  const n = c.B * c.H * c.T * c.D;
  const g = { dq: new Float32Array(n), dk: new Float32Array(n), dv: new Float32Array(n) };
  await addon.attentionBackward({ ...shape(c, ds), ...f, ...g, bf16: b16 });
  return g;
}

const ALL = ['q', 'k', 'v', 'out'];

const CASES: Case[] = [
  { B: 1, H: 2, T: 1, D: 64, window: null },
  { B: 2, H: 1, T: 200, D: 64, window: null }, // 4 key tiles: both K/V stages, reused
  { B: 1, H: 1, T: 70, D: 80, window: 1 },
  { B: 1, H: 1, T: 90, D: 96, window: 200 },
  { B: 1, H: 1, T: 150, D: 128, window: 70 },
  { B: 1, H: 2, T: 140, D: 64, window: null, docs: [[5, 64, 65, 100]] },
  { B: 1, H: 1, T: 1, D: 16, window: null },
  { B: 1, H: 2, T: 77, D: 16, window: null },
  { B: 1, H: 1, T: 70, D: 16, window: 1 },
  { B: 2, H: 1, T: 50, D: 16, window: 13, docs: [[10, 31, 32], [1]] },
  { B: 1, H: 1, T: 45, D: 256, window: 100 },
];

describe('CUDA attention with bf16 q/k/v/out views', () => {
  for (const c of CASES) {
    test(`forward and backward match the float64 reference: ${label(c)}`, async () => {
      const ds = docStart(c);
      const { q, k, v, dOut } = inputs(c);
      const ms = { batch: c.B, heads: c.H, seq: c.T, headDim: c.D, scale: 1 / Math.sqrt(c.D) };
      const mask = allowed(c, ds);
      const ref = refForwardMasked(ms, mask, q, k, v);
      const tc = tensorCores(c.D);

      const f = await forward(c, ds, { q, k, v }, ALL);
      const eOut = relL2(f.out, ref.out);
      expect(eOut).toBeLessThan(tc ? 4e-3 : 3e-3);
      let eLse = 0;
      for (let i = 0; i < ref.lse.length; i++) eLse = Math.max(eLse, Math.abs(f.lse[i] - ref.lse[i]));
      expect(eLse).toBeLessThan(1e-5);
      // The stored out is bf16.
      expect(same(f.out, bf16(f.out))).toBe(true);

      // Backward from the kernel's own bf16 out and lse; the reference's
      // gradient is of the same bf16 inputs.
      const rb = refBackwardMasked(ms, mask, q, k, v, dOut);
      const g = await backward(c, ds, { q, k, v, out: f.out, lse: f.lse, dOut }, ALL);
      const floor = 0.1 * l2(rb.dv); // dq, dk vanish where every query sees only itself
      const tol = tc ? 6e-3 : 4e-3;
      expect(relL2(g.dq, rb.dq, floor)).toBeLessThan(tol);
      expect(relL2(g.dk, rb.dk, floor)).toBeLessThan(tol);
      expect(relL2(g.dv, rb.dv)).toBeLessThan(tc ? 6e-3 : 1e-5);
    });
  }

  // Bitwise against fp32 views holding the same (bf16) values.
  const BITWISE: Case[] = [
    { B: 1, H: 2, T: 150, D: 64, window: null },
    { B: 1, H: 1, T: 130, D: 80, window: 50, docs: [[70]] },
    { B: 1, H: 2, T: 70, D: 16, window: null },
  ];
  for (const c of BITWISE) {
    test(`bf16 views give the fp32 views' bits: ${label(c)}`, async () => {
      const ds = docStart(c);
      const { q, k, v, dOut } = inputs(c);
      const f32 = await forward(c, ds, { q, k, v }, []);
      const b = await forward(c, ds, { q, k, v }, ALL);
      expect(same(b.lse, f32.lse)).toBe(true);
      expect(same(b.out, bf16(f32.out))).toBe(true); // out rounded once from the same fp32 result
      for (const mixed of [['q', 'k', 'v'], ['k', 'v'], ['q'], ['k'], ['v', 'out']]) {
        const m = await forward(c, ds, { q, k, v }, mixed);
        expect(same(m.lse, f32.lse)).toBe(true);
        expect(same(m.out, mixed.includes('out') ? bf16(f32.out) : f32.out)).toBe(true);
      }

      // Backward: O as bf16 values in both runs (the bf16 view and its fp32 copy).
      const out = b.out, lse = b.lse;
      const g32 = await backward(c, ds, { q, k, v, out, lse, dOut }, []);
      for (const views of [ALL, ['q'], ['k', 'v'], ['out']]) {
        const g = await backward(c, ds, { q, k, v, out, lse, dOut }, views);
        for (const name of ['dq', 'dk', 'dv'] as const) expect(same(g[name], g32[name])).toBe(true);
      }
      // An fp32 O that is not bf16-representable gives a different D = rowsum(dO*O), so different bits.
      const gf = await backward(c, ds, { q, k, v, out: f32.out, lse, dOut }, []);
      expect(same(gf.dq, g32.dq) && same(gf.dk, g32.dk)).toBe(false);
    });
  }

  test('fused [B, T, 3C] QKV views and 8-, 4- and 2-byte aligned views give the contiguous views\' bits', async () => {
    for (const c of [
      { B: 2, H: 2, T: 70, D: 64, window: null },
      { B: 1, H: 2, T: 40, D: 16, window: 9 },
    ] as Case[]) {
      const { B, H, T, D } = c;
      const C = H * D;
      const { q, k, v, dOut } = inputs(c);
      const ref = await forward(c, undefined, { q, k, v }, ALL);
      const gref = await backward(c, undefined, { q, k, v, out: ref.out, lse: ref.lse, dOut }, ALL);
      // [B, T, 3C]: q, k, v of head h at columns h*D, C + h*D, 2C + h*D; out [B, T, C].
      const qkv = new Float32Array(B * T * 3 * C);
      const o2 = new Float32Array(B * T * C);
      for (let b = 0; b < B; b++)
        for (let h = 0; h < H; h++)
          for (let t = 0; t < T; t++)
            for (let d = 0; d < D; d++) {
              const src = ((b * H + h) * T + t) * D + d, row = (b * T + t) * 3 * C + h * D + d;
              qkv[row] = q[src];
              qkv[row + C] = k[src];
              qkv[row + 2 * C] = v[src];
              o2[(b * T + t) * C + h * D + d] = ref.out[src];
            }
      const view = (data: Float32Array, offset: number, st: number) => ({ data, offset, sb: T * st, sh: D, st });
      const fused = { q: view(qkv, 0, 3 * C), k: view(qkv, C, 3 * C), v: view(qkv, 2 * C, 3 * C) };
      const outView = view(new Float32Array(B * T * C), 0, C);
      const f = await forward(c, undefined, fused, ALL, outView);
      expect(same(f.lse, ref.lse)).toBe(true);
      for (let i = 0; i < o2.length; i++) if (f.out[i] !== o2[i]) throw new Error(`${label(c)}: fused out differs at ${i}`);
      const g = await backward(c, undefined, { ...fused, out: view(o2, 0, C), lse: ref.lse, dOut }, ALL);
      for (const name of ['dq', 'dk', 'dv'] as const) expect(same(g[name], gref[name])).toBe(true);

      // [B, H, T, D] copies at element offsets 4, 2, 1 (8-, 4-, 2-byte aligned bf16) with a padded row stride.
      for (const [off, pad] of [[4, 4], [2, 2], [1, 3]]) {
        const st = D + pad;
        const shifted = (a: Float32Array) => {
          const data = new Float32Array(off + B * H * T * st);
          for (let r = 0; r < B * H * T; r++) data.set(a.subarray(r * D, r * D + D), off + r * st);
          return { data, offset: off, sb: H * T * st, sh: T * st, st };
        };
        const u = await forward(c, undefined, { q: shifted(q), k: shifted(k), v: shifted(v) }, ALL);
        expect(same(u.lse, ref.lse)).toBe(true);
        expect(same(u.out, ref.out)).toBe(true);
        const gu = await backward(c, undefined,
          { q: shifted(q), k: shifted(k), v: shifted(v), out: shifted(ref.out), lse: ref.lse, dOut }, ALL);
        for (const name of ['dq', 'dk', 'dv'] as const) expect(same(gu[name], gref[name])).toBe(true);
      }
    }
  });

  test('bitwise the same run to run', async () => {
    const c: Case = { B: 1, H: 2, T: 130, D: 96, window: 70 };
    const { q, k, v, dOut } = inputs(c);
    const a = await forward(c, undefined, { q, k, v }, ALL);
    const ga = await backward(c, undefined, { q, k, v, out: a.out, lse: a.lse, dOut }, ALL);
    const b = await forward(c, undefined, { q, k, v }, ALL);
    const gb = await backward(c, undefined, { q, k, v, out: b.out, lse: b.lse, dOut }, ALL);
    expect(same(a.out, b.out) && same(a.lse, b.lse)).toBe(true);
    for (const name of ['dq', 'dk', 'dv'] as const) expect(same(ga[name], gb[name])).toBe(true);
  });

  test('dOut, dq, dk and dv must be fp32: a bf16 view is INVALID_ARGUMENT naming it', async () => {
    const c: Case = { B: 1, H: 1, T: 5, D: 64, window: null };
    const { q, k, v, dOut } = inputs(c);
    const f = await forward(c, undefined, { q, k, v }, ALL);
    for (const [field, name] of [['dOut', 'dout'], ['dq', 'dq'], ['dk', 'dk'], ['dv', 'dv']])
      await expect(backward(c, undefined, { q, k, v, out: f.out, lse: f.lse, dOut }, ['q', field])).rejects.toThrow(
        `attention_backward: ${name} is a bf16 view`,
      );
  });
});
