/**
 * The CPU backend's decoding ops (core/backend.h "decoding": kv_store,
 * decode_attention, embedding_at) against a float64 reference, through the
 * addon's decodeOp, on the cases of test/ops/decode-op-table.js:
 * position 0, window 1, a window larger than the position, a wrapped ring,
 * key counts that are not a multiple of any tile (255, 256, 257, 1000),
 * odd head sizes, several rows at different positions with strided q/out.
 * Cache slots a row must not read hold NaN, outputs are NaN-poisoned.
 * Also: thread-count invariance and the binding's checks of bad records.
 */
import { loadAddon } from '../../lib/native';
import { getIsa, setIsa, supportedIsas } from '../../lib/runtime';
import { decodeReference } from '../helpers/decode-ref';
import { relL2 } from './shared/setup';

interface Case {
  name: string;
  opts: Record<string, unknown>;
  outputs: string[];
  tol?: number;
  exact?: boolean;
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const dops = require('../ops/decode-op-table.js') as {
  buildDecodeCases(seed: number): Case[];
  rowAlone(o: Record<string, unknown>, r: number): Record<string, unknown>;
};
type DecodeOp = (o: Record<string, unknown>) => Promise<Record<string, Float32Array | number>>;
const addon = loadAddon<{ decodeOp: DecodeOp; setThreads(n: number): void; getThreads(): number }>();

const SEED = 20261128;
const CASES = dops.buildDecodeCases(SEED);
const find = (prefix: string): Case => CASES.find((x) => x.name.startsWith(prefix))!;

describe('CPU decoding ops match a float64 reference', () => {
  for (const c of CASES) {
    test(c.name, async () => {
      const got = await addon.decodeOp({ ...c.opts, device: 'cpu' });
      const ref = decodeReference(c.opts);
      for (const k of c.outputs) {
        const g = got[k] as Float32Array;
        if (c.exact) {
          expect(g.length).toBe(ref[k].length);
          // A copy (or one fp32 add): every element exactly the reference.
          let bad = -1;
          for (let i = 0; i < g.length && bad < 0; i++)
            if (!(g[i] === Math.fround(ref[k][i]) || (Number.isNaN(g[i]) && Number.isNaN(ref[k][i])))) bad = i;
          expect(bad).toBe(-1);
        } else {
          expect(relL2(g, ref[k])).toBeLessThan(c.tol ?? 1e-5);
        }
      }
      if ('gapsUntouched' in got) expect(got.gapsUntouched).toBe(1);
    });
  }

  test('each row of a batch is bitwise the same run alone', async () => {
    const c = find('decode_attention a batch');
    const batch = (await addon.decodeOp({ ...c.opts, device: 'cpu' })).out as Float32Array;
    const C = (c.opts.H as number) * (c.opts.D as number);
    for (let r = 0; r < (c.opts.M as number); r++) {
      const alone = (await addon.decodeOp({ ...dops.rowAlone(c.opts, r), device: 'cpu' })).out as Float32Array;
      expect(Array.from(alone)).toEqual(Array.from(batch.subarray(r * C, (r + 1) * C)));
    }
  });

  test('the rows of a long extend are bitwise the same without the other sequences\' rows', async () => {
    const c = find('decode_attention long extends');
    const batch = (await addon.decodeOp({ ...c.opts, device: 'cpu' })).out as Float32Array;
    // out comes back as [M, C] rows.
    const H = c.opts.H as number, D = c.opts.D as number, C = H * D, ldq = c.opts.ldq as number;
    // Each sequence's run on its own: rows [from, from + n) of the batch.
    for (const [from, n] of [
      [0, 70],
      [70, 1],
      [71, 40],
      [111, 16],
    ]) {
      const sub = (a: Int32Array) => a.slice(from, from + n);
      const o = c.opts as Record<string, Int32Array | Float32Array | number>;
      const alone = (await addon.decodeOp({
        ...c.opts, device: 'cpu', M: n, kOffset: sub(o.kOffset as Int32Array), vOffset: sub(o.vOffset as Int32Array),
        slots: sub(o.slots as Int32Array), pos: sub(o.pos as Int32Array), first: sub(o.first as Int32Array),
        q: (o.q as Float32Array).slice(from * ldq, (from + n - 1) * ldq + C),
      })).out as Float32Array;
      for (let i = 0; i < n; i++)
        expect(Buffer.from(alone.slice(i * C, (i + 1) * C).buffer).equals(Buffer.from(batch.slice((from + i) * C, (from + i + 1) * C).buffer))).toBe(true);
    }
  });

  test('long extends match the reference on every instruction-set path', async () => {
    // The tiled kernel is compiled once per path (attention_impl.h).
    const before = getIsa();
    try {
      for (const isa of supportedIsas()) {
        setIsa(isa);
        for (const c of CASES.filter((x) => x.name.startsWith('decode_attention long extend'))) {
          const got = (await addon.decodeOp({ ...c.opts, device: 'cpu' })).out as Float32Array;
          expect({ isa, name: c.name, ok: relL2(got, decodeReference(c.opts).out) < 1e-5 }).toEqual({ isa, name: c.name, ok: true });
        }
      }
    } finally {
      setIsa(before);
    }
  });

  test.each(['decode_attention a batch', 'decode_attention long extends'])('%s: bitwise the same on 1 thread and on the whole pool', async (name) => {
    const c = find(name);
    const many = await addon.decodeOp({ ...c.opts, device: 'cpu' });
    const before = addon.getThreads();
    addon.setThreads(1);
    try {
      const one = await addon.decodeOp({ ...c.opts, device: 'cpu' });
      expect(Buffer.from((one.out as Float32Array).buffer).equals(Buffer.from((many.out as Float32Array).buffer))).toBe(true);
    } finally {
      addon.setThreads(before);
    }
  });
});

describe('decodeOp refuses records that break the contract', () => {
  const base = () => {
    return { ...find('decode_attention dense position 0').opts, device: 'cpu' } as Record<string, unknown>;
  };
  test.each([
    ['a cache that does not fit', { kOffset: Int32Array.of(1 << 30) }, 'to fit in the cache'],
    ['more keys than slots', { first: Int32Array.of(0), pos: Int32Array.of(8) }, 'pos - first < slots'],
    ['first after pos', { first: Int32Array.of(1), pos: Int32Array.of(0) }, '0 <= first <= pos'],
    ['zero slots', { slots: Int32Array.of(0) }, 'slots >= 1'],
    ['a short q', { q: new Float32Array(3) }, 'Float32Array of length'],
  ])('%s', async (_n, patch, msg) => {
    await expect(addon.decodeOp({ ...base(), ...patch })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringContaining(msg),
    });
  });

  test('two rows storing into one slot', async () => {
    const c = find('kv_store prefill');
    const pos = Int32Array.of(-1, 1, 2, 3, 4, 5); // 1 and 5 share slot 1 of the ring of 4
    await expect(addon.decodeOp({ ...c.opts, device: 'cpu', pos })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringContaining('one cache slot'),
    });
  });
});
