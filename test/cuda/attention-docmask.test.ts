/**
 * CUDA attention with a document mask (AttnShape::doc_start, a device
 * pointer) against the float64 reference with an EXPLICIT mask matrix built
 * from the tokens (test/helpers/attention-ref.ts documentMask), forward out +
 * lse and backward dq / dk / dv, dense and banded, on the fp32 SIMT kernels
 * (tiles of 32; relative L2 < 1e-5) and the bf16 tensor-core kernels (tiles
 * of 64 and 32; < 1e-2). Shapes: seq 1, seq not a multiple of the tiles,
 * window 1 and window > seq, documents of length 1, document starts on the
 * 32- and 64-row tile edges and next to them, many tiny documents, whole key
 * tiles before a query tile's documents (skipped), the packed layout. Also:
 * one document is bitwise the unmasked result, backward is bitwise
 * deterministic, and the mask removes enough for a kernel that ignored it to
 * fail. Runs where the cuda project runs (a GPU, or the SIMT emulator).
 */
import { docStarts } from '../../lib/doc-mask';
import { loadAddon } from '../../lib/native';
import {
  documentMask,
  l2,
  randomArray,
  refBackwardMasked,
  refForward,
  refForwardMasked,
  relL2,
  type MaskShape,
} from '../helpers/attention-ref';

type Out = Record<string, Float32Array>;
const addon = loadAddon<{ backendOp(o: Record<string, unknown>): Promise<Out> }>();
const cuda = (o: Record<string, unknown>): Promise<Out> => addon.backendOp({ device: 'cuda', layout: 'bhtd', ...o });

const EOT = 50256;

function tokensWith(seq: number, eots: number[][], seed: number): Int32Array {
  const r = randomArray(eots.length * seq, seed, 1);
  const t = new Int32Array(eots.length * seq);
  for (let i = 0; i < t.length; i++) t[i] = Math.floor((r[i] + 1) * 499.99);
  eots.forEach((row, b) => row.forEach((p) => (t[b * seq + p] = EOT)));
  return t;
}

function everyNth(seq: number, n: number): number[] {
  const out: number[] = [];
  for (let p = n - 1; p < seq; p += n) out.push(p);
  return out;
}

interface Case {
  name: string;
  precision: 'fp32' | 'bf16';
  heads: number;
  seq: number;
  headDim: number;
  eots: number[][]; // batch = eots.length
  windows: Array<number | null>; // null: dense
}

const CASES: Case[] = [
  { name: 'fp32 seq 1', precision: 'fp32', heads: 2, seq: 1, headDim: 16, eots: [[0]], windows: [null, 1] },
  { name: 'fp32 seq 70, starts at 5, 32 and 64', precision: 'fp32', heads: 2, seq: 70, headDim: 33, eots: [[4, 31, 63]],
    windows: [null, 1, 17, 100] },
  { name: 'fp32 starts next to tile edges, documents of length 1', precision: 'fp32', heads: 1, seq: 97, headDim: 64,
    eots: [[30, 32, 33, 34, 64], [31, 95, 96]], windows: [null, 40] },
  { name: 'fp32 many tiny documents', precision: 'fp32', heads: 1, seq: 100, headDim: 16, eots: [everyNth(100, 3)],
    windows: [null, 2] },
  { name: 'fp32 whole key tiles skipped', precision: 'fp32', heads: 1, seq: 200, headDim: 32, eots: [[9, 149], [100]],
    windows: [null, 70] },
  { name: 'bf16 starts on and next to tile edges', precision: 'bf16', heads: 2, seq: 130, headDim: 64,
    eots: [[63, 127], [31, 62, 64]], windows: [null, 1, 17, 200] },
  { name: 'bf16 many tiny documents, whole tiles skipped', precision: 'bf16', heads: 1, seq: 200, headDim: 64,
    eots: [[...everyNth(60, 4), 139], [0, 1, 2, 150]], windows: [null, 33] },
];

interface Prepared {
  label: string;
  precision: string;
  shape: Record<string, unknown>;
  inputs: Record<string, Float32Array>;
  dout: Float32Array;
  docStart: Int32Array;
  ref: Record<'out' | 'lse' | 'dq' | 'dk' | 'dv', Float64Array>;
}

let seed = 300;
function prepare(c: Case, window: number | null): Prepared {
  const B = c.eots.length, H = c.heads, T = c.seq, D = c.headDim, n = B * H * T * D;
  const tokens = tokensWith(T, c.eots, seed++);
  const docStart = docStarts(tokens, B, T, EOT);
  const allowed = documentMask(tokens, B, T, EOT, window ?? T);
  const s: MaskShape = { batch: B, heads: H, seq: T, headDim: D, scale: 1 / Math.sqrt(D) };
  const q = randomArray(n, seed++), k = randomArray(n, seed++), v = randomArray(n, seed++), dout = randomArray(n, seed++);
  const f = refForwardMasked(s, allowed, q, k, v);
  const label = `${c.name} ${window === null ? 'dense' : `window ${window}`}`;
  const band = documentMask(new Int32Array(B * T), B, T, EOT, window ?? T);
  if (band.some((x, i) => x !== allowed[i])) {
    const d = relL2(refForward({ ...s, window: window ?? T }, q, k, v).out, f.out);
    if (!(d > 0.1)) throw new Error(`${label}: the unmasked reference is only ${d} from the masked one`);
  }
  return {
    label,
    precision: c.precision,
    shape: { batch: B, heads: H, seq: T, headDim: D, banded: window !== null, window: window ?? 0, scale: s.scale,
      precision: c.precision },
    inputs: { q, k, v },
    dout,
    docStart,
    ref: { ...f, ...refBackwardMasked(s, allowed, q, k, v, dout) },
  };
}

describe('document-masked CUDA attention', () => {
  for (const c of CASES) {
    test(`matches the explicitly masked float64 reference: ${c.name}`, async () => {
      const tol = c.precision === 'fp32' ? 1e-5 : 1e-2;
      for (const w of c.windows) {
        const p = prepare(c, w);
        const f = await cuda({ op: 'attention_forward', ...p.shape, ...p.inputs, docStart: p.docStart });
        // Backward from the float64 forward rounded to fp32 (independent of the kernel's own forward).
        const out = Float32Array.from(p.ref.out), lse = Float32Array.from(p.ref.lse);
        const g = await cuda({ op: 'attention_backward', ...p.shape, ...p.inputs, docStart: p.docStart, out, lse,
          dout: p.dout });
        const again = await cuda({ op: 'attention_backward', ...p.shape, ...p.inputs, docStart: p.docStart, out, lse,
          dout: p.dout });
        const floor = 0.1 * l2(p.ref.dv); // dq, dk vanish where every query sees only itself
        const errs: Record<string, number> = {
          out: relL2(f.out, p.ref.out),
          // lse is a logarithm: its absolute error is what matters (see scripts/gpu-check/ops.js).
          lse: Math.sqrt(f.lse.reduce((a, x, i) => a + (x - p.ref.lse[i]) ** 2, 0) / f.lse.length),
          dq: relL2(g.dq, p.ref.dq, floor),
          dk: relL2(g.dk, p.ref.dk, floor),
          dv: relL2(g.dv, p.ref.dv),
        };
        for (const [name, e] of Object.entries(errs))
          if (!(e < tol)) throw new Error(`${p.label}: error of ${name} is ${e} (tolerance ${tol})`);
        for (const name of ['dq', 'dk', 'dv'])
          expect(Buffer.from(again[name].buffer).equals(Buffer.from(g[name].buffer))).toBe(true);
      }
    });
  }

  test('one document is bitwise the unmasked result (fp32 and bf16, packed layout)', async () => {
    const shapes = [['fp32', 2, 70, 40, null], ['bf16', 2, 130, 64, 17], ['bf16', 1, 65, 64, null]] as const;
    for (const [precision, H, T, D, window] of shapes) {
      const B = 2, n = B * H * T * D;
      const shape = { batch: B, heads: H, seq: T, headDim: D, banded: window !== null, window: window ?? 0, precision,
        layout: 'btc' };
      const qkv = randomArray(3 * n, 911);
      const docStart = docStarts(tokensWith(T, [[T - 1], []], 912), B, T, EOT);
      const f0 = await cuda({ op: 'attention_forward', ...shape, qkv });
      const f1 = await cuda({ op: 'attention_forward', ...shape, qkv, docStart });
      const dout = randomArray(n, 913);
      const g0 = await cuda({ op: 'attention_backward', ...shape, qkv, out: f0.out, lse: f0.lse, dout });
      const g1 = await cuda({ op: 'attention_backward', ...shape, qkv, out: f0.out, lse: f0.lse, dout, docStart });
      for (const [a, b] of [[f0.out, f1.out], [f0.lse, f1.lse], [g0.dqkv, g1.dqkv]])
        expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer))).toBe(true);
    }
  });

  test('bad document starts are a clear error before anything runs on the device', async () => {
    const x = new Float32Array(1 * 1 * 4 * 16);
    await expect(cuda({ op: 'attention_forward', batch: 1, heads: 1, seq: 4, headDim: 16, q: x, k: x, v: x,
      docStart: Int32Array.from([0, 0, 2, 1]) })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT',
      message: expect.stringMatching(/docStart\[3\].*received 1/) });
  });
});
