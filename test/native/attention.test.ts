/**
 * Fused CPU attention against the float64 reference (test/helpers/attention-ref.ts)
 * on every instruction-set path this CPU supports.
 *
 * Budget (2 busy cores): the float64 reference dominates the time, and it is
 * computed once per case and shared by the paths, so every path runs
 * everything: the full cross product (seq {1,2,7,63,64,65} x headDim
 * {16,32,64,80,96,128} x window {1,2,17,seq-1,seq,2*seq}, banded, plus dense),
 * and the long cases (seq 257 and 1000, headDim {64, 128}, window
 * {1, 17, seq}), and a batch x heads = 8 set for the whole-head backward
 * schedule. About 15-25 s in all on 2 busy cores.
 */
import * as attention from '../../lib/attention';
import { getIsa, setIsa, supportedIsas, type IsaName } from '../../lib/runtime';
import { l2, randomArray, refBackward, refForward, relL2, type RefShape } from '../helpers/attention-ref';

const TOL = 1e-5;
const isas = supportedIsas();
const originalIsa = getIsa();
afterAll(() => setIsa(originalIsa));

interface Case {
  batch: number;
  heads: number;
  seq: number;
  headDim: number;
  pattern: 'dense' | 'banded';
  window?: number;
}

interface Ref {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  dOut: Float32Array;
  out: Float64Array;
  lse: Float64Array;
  dq: Float64Array;
  dk: Float64Array;
  dv: Float64Array;
}

const refs = new Map<string, Ref>();
let seed = 1;

function key(c: Case): string {
  return `${c.batch}x${c.heads} T${c.seq} D${c.headDim} ${c.pattern}${c.window ?? ''}`;
}

function refShape(c: Case): RefShape {
  return {
    batch: c.batch,
    heads: c.heads,
    seq: c.seq,
    headDim: c.headDim,
    window: c.pattern === 'dense' ? c.seq : c.window!,
    scale: 1 / Math.sqrt(c.headDim),
  };
}

function getRef(c: Case): Ref {
  const k = key(c);
  let r = refs.get(k);
  if (!r) {
    const n = c.batch * c.heads * c.seq * c.headDim;
    const q = randomArray(n, seed++);
    const kk = randomArray(n, seed++);
    const v = randomArray(n, seed++);
    const dOut = randomArray(n, seed++);
    const s = refShape(c);
    r = { q, k: kk, v, dOut, ...refForward(s, q, kk, v), ...refBackward(s, q, kk, v, dOut) };
    refs.set(k, r);
  }
  return r;
}

/** Runs forward + backward on the current path; throws when any output's relative error reaches TOL. */
async function check(c: Case): Promise<void> {
  const r = getRef(c);
  const shape = { batch: c.batch, heads: c.heads, seq: c.seq, headDim: c.headDim, pattern: c.pattern, window: c.window };
  const f = await attention.forward({ ...shape, q: r.q, k: r.k, v: r.v, device: 'cpu' });
  // Backward from this kernel's own fp32 out / lse, as a model would hold them.
  const g = await attention.backward({
    ...shape,
    q: r.q,
    k: r.k,
    v: r.v,
    out: f.out,
    lse: f.lse,
    dOut: r.dOut,
    device: 'cpu',
  });
  const floor = 0.1 * l2(r.dv); // dq, dk vanish at window 1 (see relL2)
  const errs = {
    out: relL2(f.out, r.out),
    lse: relL2(f.lse, r.lse),
    dq: relL2(g.dq, r.dq, floor),
    dk: relL2(g.dk, r.dk, floor),
    dv: relL2(g.dv, r.dv),
  };
  for (const [name, e] of Object.entries(errs)) {
    if (!(e < TOL)) throw new Error(`${getIsa()} ${key(c)}: relative L2 error of ${name} is ${e}`);
  }
}

function windows(seq: number): number[] {
  return [...new Set([1, 2, 17, seq - 1, seq, 2 * seq])].filter((w) => w >= 1);
}

const SEQS = [1, 2, 7, 63, 64, 65];
const DIMS = [16, 32, 64, 80, 96, 128];

describe.each(isas.map((isa) => [isa]))('fused attention on %s', (isa: IsaName) => {
  beforeAll(() => setIsa(isa));

  it.each(SEQS.map((s) => [s]))('matches float64 for seq %i, every headDim and window', async (seq) => {
    for (const headDim of DIMS) {
      await check({ batch: 1, heads: 2, seq, headDim, pattern: 'dense' });
      for (const window of windows(seq)) await check({ batch: 1, heads: 2, seq, headDim, pattern: 'banded', window });
    }
  });

  it.each([[257], [1000]])('matches float64 at seq %i (headDim 64, 128; window 1, 17, seq)', async (seq) => {
    for (const headDim of [64, 128]) {
      const bh = seq === 257 ? { batch: 2, heads: 1 } : { batch: 1, heads: 1 };
      for (const window of [1, 17, seq]) await check({ ...bh, seq, headDim, pattern: 'banded', window });
    }
  });

  // batch * heads >= 8 switches backward to one task per head (dQ accumulated
  // in place) when headDim is a whole number of vectors: 16/64/80 on
  // every path; 24 only on avx2/portable (avx512 keeps the tile schedule).
  it('matches float64 with 8 heads (the whole-head backward schedule)', async () => {
    for (const seq of [7, 70])
      for (const headDim of [16, 24, 64, 80]) {
        await check({ batch: 2, heads: 4, seq, headDim, pattern: 'dense' });
        for (const window of [1, 17, seq]) await check({ batch: 2, heads: 4, seq, headDim, pattern: 'banded', window });
      }
  });

  it('takes odd head sizes (1, 3, 33, 200, 256)', async () => {
    for (const headDim of [1, 3, 33, 200, 256]) {
      await check({ batch: 1, heads: 1, seq: 70, headDim, pattern: 'dense' });
      await check({ batch: 1, heads: 1, seq: 70, headDim, pattern: 'banded', window: 9 });
    }
  });

  it('banded with window >= seq is bitwise dense; window 1 returns v', async () => {
    const shape = { batch: 2, heads: 3, seq: 150, headDim: 64 };
    const n = 2 * 3 * 150 * 64;
    const q = randomArray(n, 901);
    const k = randomArray(n, 902);
    const v = randomArray(n, 903);
    const dOut = randomArray(n, 904);
    const dense = await attention.forward({ ...shape, pattern: 'dense', q, k, v });
    for (const window of [150, 151, 10000]) {
      const band = await attention.forward({ ...shape, pattern: 'banded', window, q, k, v });
      expect(Buffer.from(band.out.buffer).equals(Buffer.from(dense.out.buffer))).toBe(true);
      expect(Buffer.from(band.lse.buffer).equals(Buffer.from(dense.lse.buffer))).toBe(true);
      const gd = await attention.backward({ ...shape, pattern: 'dense', q, k, v, out: dense.out, lse: dense.lse, dOut });
      const gb = await attention.backward({ ...shape, pattern: 'banded', window, q, k, v, out: dense.out, lse: dense.lse, dOut });
      for (const name of ['dq', 'dk', 'dv'] as const)
        expect(Buffer.from(gb[name].buffer).equals(Buffer.from(gd[name].buffer))).toBe(true);
    }
    const one = await attention.forward({ ...shape, pattern: 'banded', window: 1, q, k, v });
    expect(Buffer.from(one.out.buffer).equals(Buffer.from(v.buffer))).toBe(true);
  });

  it('stays finite and accurate with scores of +-60', async () => {
    const batch = 1, heads = 2, seq = 130, headDim = 64;
    const n = batch * heads * seq * headDim;
    const q = randomArray(n, 1201);
    const k = randomArray(n, 1202);
    const v = randomArray(n, 1203);
    const dOut = randomArray(n, 1204);
    // Scale q and k so the largest |score| over the causal pairs is 60.
    const scale = 1 / Math.sqrt(headDim);
    let maxScore = 0;
    for (let bh = 0; bh < batch * heads; bh++)
      for (let i = 0; i < seq; i++)
        for (let j = 0; j <= i; j++) {
          let d = 0;
          for (let x = 0; x < headDim; x++) d += q[(bh * seq + i) * headDim + x] * k[(bh * seq + j) * headDim + x];
          maxScore = Math.max(maxScore, Math.abs(d * scale));
        }
    const a = Math.sqrt(60 / maxScore);
    for (let i = 0; i < n; i++) {
      q[i] *= a;
      k[i] *= a;
    }
    for (const [pattern, window] of [['dense', undefined], ['banded', 40]] as const) {
      const shape = { batch, heads, seq, headDim, pattern, window };
      const s: RefShape = { batch, heads, seq, headDim, window: window ?? seq, scale };
      const rf = refForward(s, q, k, v);
      const rb = refBackward(s, q, k, v, dOut);
      const f = await attention.forward({ ...shape, q, k, v });
      const g = await attention.backward({ ...shape, q, k, v, out: f.out, lse: f.lse, dOut });
      const nf = await attention.naiveForward({ ...shape, q, k, v });
      const ng = await attention.naiveBackward({ ...shape, q, k, v, out: nf.out, lse: nf.lse, dOut });
      for (const x of [f.out, f.lse, g.dq, g.dk, g.dv]) expect(x.every(Number.isFinite)).toBe(true);
      expect(relL2(f.out, rf.out)).toBeLessThan(TOL);
      expect(relL2(f.lse, rf.lse)).toBeLessThan(TOL);
      for (const name of ['dq', 'dk', 'dv'] as const) {
        const ours = relL2(g[name], rb[name]);
        const naive = relL2(ng[name], rb[name]);
        // "no worse than 2x a plain fp32 materialized implementation"
        expect(ours).toBeLessThanOrEqual(2 * naive);
      }
    }
  });
});

describe('naive materialized kernel', () => {
  it('matches float64 (it is the benchmarks baseline and the stability yardstick)', async () => {
    for (const c of [
      { batch: 1, heads: 2, seq: 65, headDim: 80, pattern: 'dense' as const },
      { batch: 2, heads: 1, seq: 100, headDim: 32, pattern: 'banded' as const, window: 17 },
    ]) {
      const r = getRef(c);
      const f = await attention.naiveForward({ ...c, q: r.q, k: r.k, v: r.v });
      const g = await attention.naiveBackward({ ...c, q: r.q, k: r.k, v: r.v, out: f.out, lse: f.lse, dOut: r.dOut });
      expect(relL2(f.out, r.out)).toBeLessThan(TOL);
      expect(relL2(f.lse, r.lse)).toBeLessThan(TOL);
      for (const name of ['dq', 'dk', 'dv'] as const) expect(relL2(g[name], r[name])).toBeLessThan(TOL);
    }
  });
});

describe('float64 reference', () => {
  it('has gradients that match finite differences', () => {
    const s: RefShape = { batch: 1, heads: 1, seq: 6, headDim: 4, window: 3, scale: 0.7 };
    const n = 6 * 4;
    const q = Float64Array.from(randomArray(n, 71));
    const k = Float64Array.from(randomArray(n, 72));
    const v = Float64Array.from(randomArray(n, 73));
    const dOut = Float64Array.from(randomArray(n, 74));
    const loss = () => {
      const { out } = refForward(s, q, k, v);
      let l = 0;
      for (let i = 0; i < n; i++) l += out[i] * dOut[i];
      return l;
    };
    const g = refBackward(s, q, k, v, dOut);
    const h = 1e-6;
    for (const [x, grad] of [
      [q, g.dq],
      [k, g.dk],
      [v, g.dv],
    ] as const) {
      for (let i = 0; i < n; i++) {
        const x0 = x[i];
        x[i] = x0 + h;
        const lp = loss();
        x[i] = x0 - h;
        const lm = loss();
        x[i] = x0;
        expect(Math.abs((lp - lm) / (2 * h) - grad[i])).toBeLessThan(1e-7);
      }
    }
  });
});
