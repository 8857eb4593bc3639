/**
 * Fused CPU attention with a document mask (AttnShape::doc_start) against
 * the float64 reference with an EXPLICIT mask matrix built from the tokens
 * (test/helpers/attention-ref.ts documentMask: same document, causal, within
 * the band), forward out + lse and backward dq / dk / dv, dense and banded,
 * on every instruction-set path this CPU supports, through backendOp on the
 * CPU backend. Shapes: seq 1, seq not a multiple of the 64-row tile, window
 * 1 and window > seq, documents of length 1, document starts on a tile edge
 * and one off it, many tiny documents, a query tile whose rows all start
 * after whole key tiles (skipped tiles), the whole-head backward schedule
 * (batch x heads >= 8), an odd head size and the model's packed layout.
 * Also: one document is bitwise the unmasked result; the result does not
 * depend on the thread count; the naive kernel takes the mask too; the
 * document starts are checked; the C++ builder agrees with lib/doc-mask.ts
 * (whose own tests are test/unit/doc-mask.test.ts); and
 * every masked case differs from the unmasked reference by far more than
 * the tolerance (a kernel that ignored the mask would fail).
 * About 20 s on 2 busy cores.
 */
import { docStarts } from '../../lib/doc-mask';
import { loadAddon } from '../../lib/native';
import { setIsa, setThreads, supportedIsas, type IsaName } from '../../lib/runtime';
import { restoreRuntimeAfterAll } from './shared/setup';
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
const op = (o: Record<string, unknown>): Promise<Out> => addon.backendOp({ device: 'cpu', layout: 'bhtd', ...o });

const TOL = 1e-5;
const EOT = 50256;
const isas = supportedIsas();
const { isa: originalIsa, threads: originalThreads } = restoreRuntimeAfterAll();

/** Token rows with end-of-text tokens at the given positions (one list per batch row), other ids below 1000. */
function tokensWith(seq: number, eots: number[][], seed: number): Int32Array {
  const r = randomArray(eots.length * seq, seed, 1);
  const t = new Int32Array(eots.length * seq);
  for (let i = 0; i < t.length; i++) t[i] = Math.floor((r[i] + 1) * 499.99);
  eots.forEach((row, b) => row.forEach((p) => (t[b * seq + p] = EOT)));
  return t;
}

function everyNth(seq: number, n: number, from = n - 1): number[] {
  const out: number[] = [];
  for (let p = from; p < seq; p += n) out.push(p);
  return out;
}

interface Case {
  name: string;
  heads: number;
  seq: number;
  headDim: number;
  eots: number[][]; // batch = eots.length
  windows: number[]; // banded windows; dense always runs too
  layout?: 'bhtd' | 'btc';
}

const CASES: Case[] = [
  { name: 'seq 1', heads: 2, seq: 1, headDim: 16, eots: [[0], []], windows: [1, 5] },
  { name: 'seq 70: starts at 5, 30 and the tile edge 64', heads: 2, seq: 70, headDim: 64, eots: [[4, 29, 63]],
    windows: [1, 17, 200] },
  { name: 'documents of length 1', heads: 1, seq: 40, headDim: 32, eots: [[9, 10, 11, 38, 39]], windows: [1, 3, 40] },
  { name: 'starts on, before and after tile edges', heads: 2, seq: 130, headDim: 64, eots: [[63, 127], [62, 64]],
    windows: [17, 64, 65] },
  { name: 'many tiny documents', heads: 1, seq: 200, headDim: 16, eots: [everyNth(200, 3), everyNth(200, 2)],
    windows: [2, 9] },
  { name: 'whole key tiles skipped', heads: 1, seq: 300, headDim: 64, eots: [[9, 249], [150]], windows: [100] },
  { name: 'batch x heads = 8 (whole-head backward schedule)', heads: 4, seq: 100, headDim: 64, eots: [[20, 63], [50]],
    windows: [1, 30] },
  { name: 'batch x heads = 8, headDim 16', heads: 4, seq: 75, headDim: 16, eots: [[0, 64], [70]], windows: [33] },
  { name: 'odd head size 33', heads: 1, seq: 70, headDim: 33, eots: [[12, 64]], windows: [7] },
  { name: 'packed qkv layout (the model)', heads: 3, seq: 90, headDim: 32, eots: [[31, 32, 70]], windows: [20],
    layout: 'btc' },
];

interface Prepared {
  shape: Record<string, unknown>;
  inputs: Record<string, Float32Array>;
  dout: Float32Array;
  docStart: Int32Array;
  ref: Record<'out' | 'lse' | 'dq' | 'dk' | 'dv', Float64Array>;
  label: string;
}

/** [B, H, T, D] from the packed [B, T, 3C] layout's part `which` (0 q, 1 k, 2 v); C = H * D. */
function unpack(qkv: Float32Array, B: number, H: number, T: number, D: number, which: number,
  stride: number): Float32Array {
  const out = new Float32Array(B * H * T * D);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let t = 0; t < T; t++)
        for (let d = 0; d < D; d++)
          out[((b * H + h) * T + t) * D + d] = qkv[(b * T + t) * stride + which * H * D + h * D + d];
  return out;
}
function pack(x: Float64Array, B: number, H: number, T: number, D: number, into: Float64Array, which: number,
  stride: number): void {
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let t = 0; t < T; t++)
        for (let d = 0; d < D; d++)
          into[(b * T + t) * stride + which * H * D + h * D + d] = x[((b * H + h) * T + t) * D + d];
}

let seed = 100;
function prepare(c: Case, window: number | null): Prepared {
  const B = c.eots.length, H = c.heads, T = c.seq, D = c.headDim;
  const n = B * H * T * D;
  const tokens = tokensWith(T, c.eots, seed++);
  const docStart = docStarts(tokens, B, T, EOT);
  const allowed = documentMask(tokens, B, T, EOT, window ?? T);
  const s: MaskShape = { batch: B, heads: H, seq: T, headDim: D, scale: 1 / Math.sqrt(D) };
  const shape = { batch: B, heads: H, seq: T, headDim: D, banded: window !== null, window: window ?? 0, scale: s.scale,
    layout: c.layout ?? 'bhtd' };
  const label = `${c.name} ${window === null ? 'dense' : `window ${window}`}`;
  const dout = randomArray(n, seed++);
  let inputs: Record<string, Float32Array>;
  let q: Float32Array, k: Float32Array, v: Float32Array;
  if (c.layout === 'btc') {
    const qkv = randomArray(3 * n, seed++);
    inputs = { qkv };
    [q, k, v] = [0, 1, 2].map((w) => unpack(qkv, B, H, T, D, w, 3 * H * D));
  } else {
    [q, k, v] = [randomArray(n, seed++), randomArray(n, seed++), randomArray(n, seed++)];
    inputs = { q, k, v };
  }
  // dout is given in the call's layout; the reference wants [B, H, T, D].
  const doutBhtd = c.layout === 'btc' ? unpack(dout, B, H, T, D, 0, H * D) : dout;
  const f = refForwardMasked(s, allowed, q, k, v);
  const g = refBackwardMasked(s, allowed, q, k, v, doutBhtd);
  // The mask matters: wherever it removes a pair the band allows, the
  // unmasked result is far from the masked one.
  const band = documentMask(new Int32Array(B * T), B, T, EOT, window ?? T);
  if (band.some((x, i) => x !== allowed[i])) {
    const plain = refForward({ ...s, window: window ?? T }, q, k, v);
    const d = relL2(plain.out, f.out);
    if (!(d > 1000 * TOL)) throw new Error(`${label}: the unmasked reference is only ${d} from the masked one`);
    if (process.env.DOCMASK_VERBOSE) console.log(`${label}: unmasked vs masked ${d.toExponential(2)}`);
  }
  let ref = { ...f, ...g };
  if (c.layout === 'btc') {
    // Outputs come back packed: out [B, T, C], dqkv [B, T, 3C] (as 'dq' here).
    const out = new Float64Array(n);
    pack(f.out, B, H, T, D, out, 0, H * D);
    const dqkv = new Float64Array(3 * n);
    [g.dq, g.dk, g.dv].forEach((x, w) => pack(x, B, H, T, D, dqkv, w, 3 * H * D));
    ref = { out, lse: f.lse, dq: dqkv, dk: new Float64Array(0), dv: new Float64Array(0) };
  }
  return { shape, inputs, dout, docStart, ref, label };
}

const prepared: Prepared[] = [];
beforeAll(() => {
  for (const c of CASES) for (const w of [null, ...c.windows]) prepared.push(prepare(c, w));
});

async function runFused(p: Prepared, extra: Record<string, unknown> = {}): Promise<Out> {
  const f = await op({ op: 'attention_forward', ...p.shape, ...p.inputs, docStart: p.docStart, ...extra });
  const g = await op({ op: 'attention_backward', ...p.shape, ...p.inputs, docStart: p.docStart, out: f.out, lse: f.lse,
    dout: p.dout, ...extra });
  return { ...f, ...g };
}

function check(p: Prepared, r: Out, what: string): void {
  const packed = 'dqkv' in r;
  const floor = 0.1 * l2(packed ? p.ref.dq : p.ref.dv); // dq, dk vanish where every query sees only itself
  const errs: Record<string, number> = { out: relL2(r.out, p.ref.out), lse: relL2(r.lse, p.ref.lse) };
  if (packed) errs.dqkv = relL2(r.dqkv, p.ref.dq);
  else {
    errs.dq = relL2(r.dq, p.ref.dq, floor);
    errs.dk = relL2(r.dk, p.ref.dk, floor);
    errs.dv = relL2(r.dv, p.ref.dv);
  }
  for (const [name, e] of Object.entries(errs))
    if (!(e < TOL)) throw new Error(`${what} ${p.label}: relative L2 error of ${name} is ${e}`);
}

const bitEqual = (a: Float32Array, b: Float32Array): boolean =>
  a.length === b.length &&
  Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

describe.each(isas.map((isa) => [isa]))('document-masked fused attention on %s', (isa: IsaName) => {
  beforeAll(() => setIsa(isa));

  it.each(CASES)('matches the explicitly masked float64 reference: $name', async (c: Case) => {
    const mine = prepared.filter((x) => x.label.startsWith(`${c.name} `));
    expect(mine).toHaveLength(1 + c.windows.length);
    for (const p of mine) check(p, await runFused(p), isa);
  });

  it('one document (no boundary inside a row) is bitwise the unmasked result', async () => {
    const shapes = [[2, 4, 130, 64, null], [1, 2, 130, 64, 17], [1, 3, 70, 33, null], [2, 1, 1, 16, 1]] as const;
    for (const [B, H, T, D, window] of shapes) {
      const n = B * H * T * D;
      const shape = { batch: B, heads: H, seq: T, headDim: D, banded: window !== null, window: window ?? 0 };
      const inputs = { q: randomArray(n, 7001), k: randomArray(n, 7002), v: randomArray(n, 7003) };
      // EOT only as the very last token: the whole row is one document.
      const docStart = docStarts(tokensWith(T, Array.from({ length: B }, () => [T - 1]), 7004), B, T, EOT);
      expect(docStart.every((x) => x === 0)).toBe(true);
      const f0 = await op({ op: 'attention_forward', ...shape, ...inputs });
      const f1 = await op({ op: 'attention_forward', ...shape, ...inputs, docStart });
      const dout = randomArray(n, 7005);
      const g0 = await op({ op: 'attention_backward', ...shape, ...inputs, out: f0.out, lse: f0.lse, dout });
      const g1 = await op({ op: 'attention_backward', ...shape, ...inputs, out: f0.out, lse: f0.lse, dout, docStart });
      for (const k of ['out', 'lse'] as const) expect(bitEqual(f1[k], f0[k])).toBe(true);
      for (const k of ['dq', 'dk', 'dv'] as const) expect(bitEqual(g1[k], g0[k])).toBe(true);
    }
  });
});

describe('document-masked attention, other checks', () => {
  it('gives the same bits on 1 thread as on the pool', async () => {
    const p = prepared.find((x) => x.label === 'starts on, before and after tile edges window 64');
    if (!p) throw new Error('no case');
    const many = await runFused(p);
    setThreads(1);
    try {
      const one = await runFused(p);
      for (const k of ['out', 'lse', 'dq', 'dk', 'dv']) expect(bitEqual(one[k], many[k])).toBe(true);
    } finally {
      setThreads(originalThreads);
    }
  });

  it('the naive materialized kernel takes the mask too', async () => {
    for (const label of ['seq 70: starts at 5, 30 and the tile edge 64 window 17', 'many tiny documents dense',
      'packed qkv layout (the model) window 20', 'documents of length 1 window 1']) {
      const p = prepared.find((x) => x.label === label);
      if (!p) throw new Error(`no case ${label}`);
      check(p, await runFused(p, { naive: true }), 'naive');
    }
  });

  it('builds the document starts from tokens in C++ as lib/doc-mask.ts does', async () => {
    for (const c of CASES) {
      const B = c.eots.length, T = c.seq;
      const tokens = tokensWith(T, c.eots, 4242);
      const n = B * c.heads * T * c.headDim;
      const x = randomArray(n, 4243);
      const shape = { batch: B, heads: c.heads, seq: T, headDim: c.headDim };
      const fromTokens = await op({ op: 'attention_forward', ...shape, q: x, k: x, v: x, tokens, eot: EOT });
      const ts = docStarts(tokens, B, T, EOT);
      expect(Array.from(fromTokens.docStart)).toEqual(Array.from(ts));
      const given = await op({ op: 'attention_forward', ...shape, q: x, k: x, v: x, docStart: ts });
      expect(bitEqual(fromTokens.out, given.out)).toBe(true);
    }
  });

  it('rejects document starts that are not a split into documents, naming the element', async () => {
    const shape = { op: 'attention_forward', batch: 2, heads: 1, seq: 4, headDim: 8 };
    const x = new Float32Array(2 * 4 * 8);
    const bad: Array<[number[], RegExp]> = [
      [[0, 0, 2, 1, 0, 0, 0, 0], /docStart\[3\].*received 1/], // decreases
      [[0, 0, 0, 4, 0, 0, 0, 0], /docStart\[3\].*received 4/], // after its own position
      [[0, 0, 0, 0, 1, 1, 1, 1], /docStart\[4\].*batch row 1, position 0.*received 1/], // a row must start at 0
      [[0, 0, 0, 0, 0, 0, -1, 0], /docStart\[6\].*received -1/],
    ];
    for (const [ds, msg] of bad) {
      const docStart = Int32Array.from(ds);
      await expect(op({ ...shape, q: x, k: x, v: x, docStart })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT',
        message: expect.stringMatching(msg) });
      await expect(op({ ...shape, q: x, k: x, v: x, docStart, naive: true }))
        .rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    }
    await expect(op({ ...shape, q: x, k: x, v: x, docStart: new Int32Array(7) })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT', message: expect.stringContaining('length 8 for docStart') });
  });
});
