/**
 * CUDA attention backward (one pass over key tiles, dQ from per-key-tile
 * partials summed in a fixed order) against the float64 reference
 * (test/helpers/attention-ref.ts), on both kernel families: fp32 SIMT (tiles
 * of 32; relative L2 < 1e-5) and bf16 tensor cores (key tiles of 64; < 1e-2).
 * Shapes: seq 1, seq not a multiple of the tiles, window 1, window > seq, and
 * bands over several key tiles narrower than the sequence, where key tiles
 * share a slot of the dQ partials (a band of w keys needs ceil((w-1)/tile)+1
 * slots, fewer than the tiles). Also: the backward is bitwise the same run to
 * run even when other shapes ran in between and left their partials in the
 * scratch it reuses. Runs where the cuda project runs (a GPU, or the SIMT
 * emulator).
 */
import { loadAddon } from '../../lib/native';
import { l2, randomArray, refBackward, refForward, relL2 } from '../helpers/attention-ref';

type Out = Record<string, Float32Array>;
const addon = loadAddon<{ backendOp(o: Record<string, unknown>): Promise<Out> }>();
const cuda = (o: Record<string, unknown>): Promise<Out> => addon.backendOp({ device: 'cuda', layout: 'bhtd', ...o });

interface Case {
  precision: 'fp32' | 'bf16';
  B: number;
  H: number;
  T: number;
  D: number;
  window: number | null; // null: dense
}

const CASES: Case[] = [
  { precision: 'fp32', B: 1, H: 2, T: 1, D: 24, window: null },
  { precision: 'fp32', B: 2, H: 1, T: 77, D: 40, window: null },
  { precision: 'fp32', B: 1, H: 2, T: 100, D: 32, window: 33 }, // 2 slots, 4 key tiles
  { precision: 'fp32', B: 1, H: 1, T: 70, D: 64, window: 1 },
  { precision: 'fp32', B: 1, H: 1, T: 45, D: 16, window: 1000 },
  { precision: 'bf16', B: 1, H: 1, T: 1, D: 64, window: null },
  { precision: 'bf16', B: 1, H: 2, T: 150, D: 64, window: null },
  { precision: 'bf16', B: 1, H: 1, T: 200, D: 64, window: 70 }, // 3 slots, 4 key tiles
  { precision: 'bf16', B: 1, H: 1, T: 97, D: 128, window: 40 },
  { precision: 'bf16', B: 1, H: 1, T: 65, D: 128, window: 1 },
  { precision: 'bf16', B: 1, H: 1, T: 90, D: 80, window: 500 },
];

let seed = 900;
function prepare(c: Case) {
  const n = c.B * c.H * c.T * c.D;
  const scale = 1 / Math.sqrt(c.D);
  const q = randomArray(n, seed++), k = randomArray(n, seed++), v = randomArray(n, seed++);
  const dout = randomArray(n, seed++);
  const rs = { batch: c.B, heads: c.H, seq: c.T, headDim: c.D, window: c.window ?? c.T, scale };
  const f = refForward(rs, q, k, v);
  const ref = refBackward(rs, q, k, v, dout);
  const opts = {
    op: 'attention_backward', batch: c.B, heads: c.H, seq: c.T, headDim: c.D, banded: c.window !== null,
    window: c.window ?? 0, scale, precision: c.precision, q, k, v, dout,
    // From the float64 forward rounded to fp32 (independent of the kernel's own forward).
    out: Float32Array.from(f.out), lse: Float32Array.from(f.lse),
  };
  return { opts, ref };
}

const label = (c: Case) =>
  `${c.precision} B${c.B} H${c.H} T${c.T} D${c.D} ${c.window === null ? 'dense' : `window ${c.window}`}`;

describe('CUDA attention backward (one pass, dQ partials)', () => {
  for (const c of CASES) {
    test(`matches the float64 reference: ${label(c)}`, async () => {
      const { opts, ref } = prepare(c);
      const g = await cuda(opts);
      const tol = c.precision === 'fp32' ? 1e-5 : 1e-2;
      const floor = 0.1 * l2(ref.dv); // dq, dk vanish where every query sees only itself
      const errs = { dq: relL2(g.dq, ref.dq, floor), dk: relL2(g.dk, ref.dk, floor), dv: relL2(g.dv, ref.dv) };
      for (const [name, e] of Object.entries(errs))
        if (!(e < tol)) throw new Error(`${label(c)}: error of ${name} is ${e} (tolerance ${tol})`);
    });
  }

  test('bitwise the same run to run, with other shapes run in between', async () => {
    const a = prepare({ precision: 'bf16', B: 1, H: 2, T: 130, D: 64, window: 70 });
    const b = prepare({ precision: 'fp32', B: 1, H: 2, T: 100, D: 48, window: 33 });
    const other = prepare({ precision: 'bf16', B: 2, H: 2, T: 160, D: 64, window: null });
    const first = [await cuda(a.opts), await cuda(b.opts)];
    // A larger dense backward fills the scratch with its own partials.
    await cuda(other.opts);
    const again = [await cuda(b.opts), await cuda(a.opts)].reverse();
    for (let i = 0; i < 2; i++)
      for (const name of ['dq', 'dk', 'dv'])
        expect(Buffer.from(again[i][name].buffer).equals(Buffer.from(first[i][name].buffer))).toBe(true);
  });
});
