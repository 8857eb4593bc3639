// Chunked prefill (DecodeState::extend, native/core/decode.*): a prompt
// prefilled as a prefill of its first chunk then an extend per further
// chunk gives, after every chunk, the full forward's logits at that
// position (relative L2 < 1e-5 in fp32), for dense and banded layers, with
// chunks of 1, of the window, larger than the window and the prompt, a
// prompt that is not a multiple of the chunk, a band of 1, and a prompt
// that fills the context; steps after it follow the forward. A sequence
// extended beside others (extended by other chunks, prefilled, stepping)
// gets bitwise the logits it gets alone, in fp32 and bf16. The rings of
// banded layers hold window + extendMax - 1 positions; misuse and abort
// give clear errors.
//
// Mid-extend abort leaves the extended sequences empty (decode.h); that
// path is the prefill's and is not timed here.
import { NativeDecodeSession } from '../../lib/generate/native';
import { Handle, makeModel, native, randomTokens as tokensOf, ringShape, Shape } from './shared/decode-model';
import { relL2 } from './shared/setup';

const shape: Shape = ringShape;
const V = shape.vocab_size;
const randomTokens = (n: number, seed: number): Int32Array => tokensOf(n, V, seed);

const open = (h: Handle, caps: number[], extendMax?: number): NativeDecodeSession =>
  native().decodeOpen(h, { capacities: Int32Array.from(caps), abort: new Int32Array(32), extendMax });

/**
 * Prefills `toks` on sequence 0 of a new session in chunks of `chunk`, then
 * steps through `more`; returns the logits after every chunk and step, with
 * the position of each.
 */
async function chunkedRun(h: Handle, toks: Int32Array, chunk: number, more: Int32Array, cap: number): Promise<{ at: number[]; rows: Float32Array[] }> {
  const s = open(h, [cap], chunk);
  const at: number[] = [];
  const rows: Float32Array[] = [];
  for (let o = 0; o < toks.length; o += chunk) {
    const part = toks.slice(o, Math.min(toks.length, o + chunk));
    const call = o === 0 ? s.prefill.bind(s) : s.extend.bind(s);
    rows.push(Float32Array.from(await call({ tokens: part, lengths: Int32Array.of(part.length) })));
    at.push(o + part.length - 1);
  }
  expect(Array.from(s.positions())).toEqual([toks.length]);
  for (let t = 0; t < more.length; t++) {
    rows.push(Float32Array.from(await s.step({ tokens: more.subarray(t, t + 1), active: Uint8Array.of(1) })));
    at.push(toks.length + t);
  }
  s.close();
  return { at, rows };
}

describe('a prompt prefilled in chunks equals the full forward after every chunk', () => {
  let h: Handle;
  beforeAll(async () => {
    h = await makeModel(shape, 7);
  });
  afterAll(() => h.dispose());

  test.each([
    ['chunks of 1', 1, 23, 6],
    ['chunks of 3 (23 is not a multiple)', 3, 23, 6],
    ['chunks of the window', 5, 23, 6],
    ['chunks longer than the window', 7, 30, 10],
    ['chunks longer than the prompt (one whole prefill)', 40, 23, 6],
    ['a prompt that fills the context', 10, 48, 0],
    ['a prompt one short of the context, then a step', 16, 47, 1],
  ])('%s', async (_name, chunk, promptLen, steps) => {
    const toks = randomTokens(promptLen + steps, chunk * 100 + promptLen);
    const want = await h.forward({ tokens: toks, batch: 1, seq: toks.length });
    const { at, rows } = await chunkedRun(h, toks.slice(0, promptLen), chunk, toks.slice(promptLen), toks.length);
    expect(rows.length).toBe(Math.ceil(promptLen / chunk) + steps);
    let worst = 0;
    rows.forEach((r, i) => (worst = Math.max(worst, relL2(r, want.subarray(at[i] * V, (at[i] + 1) * V)))));
    expect(worst).toBeLessThan(1e-5);
  });

  test('a band of 1, a band shorter than the chunk, every layer banded', async () => {
    for (const [window, chunk] of [
      [1, 4],
      [3, 8],
      [2, 1],
    ]) {
      const m = await makeModel({ ...shape, n_layer: 2, patterns: ['banded', 'banded'], attention_window: window }, 3);
      const toks = randomTokens(30, window * 10 + chunk);
      const want = await m.forward({ tokens: toks, batch: 1, seq: 30 });
      const { at, rows } = await chunkedRun(m, toks.slice(0, 25), chunk, toks.slice(25), 30);
      let worst = 0;
      rows.forEach((r, i) => (worst = Math.max(worst, relL2(r, want.subarray(at[i] * V, (at[i] + 1) * V)))));
      expect({ window, chunk, ok: worst < 1e-5 }).toEqual({ window, chunk, ok: true });
      m.dispose();
    }
  });
});

describe('chunks of 16 tokens or more (the CPU attends them in tiles of queries)', () => {
  // Head size 12 (no whole vectors), a dense and a banded layer of window 37.
  const long: Shape = { n_layer: 3, n_head: 4, n_embd: 48, n_positions: 260, vocab_size: 100, patterns: ['dense', 'banded', 'dense'], attention_window: 37 };
  let h: Handle;
  beforeAll(async () => {
    h = await makeModel(long, 5);
  });
  afterAll(() => h.dispose());

  test.each([
    ['chunks of 16', 16, 100, 3],
    ['chunks of 70 (a tile and 6 rows)', 70, 250, 4],
    ['chunks of 64 into a full context', 64, 260, 0],
    ['chunks of 100, the last of 17', 100, 217, 2],
  ])('%s equal the full forward', async (_name, chunk, promptLen, steps) => {
    const toks = randomTokens(promptLen + steps, chunk * 7 + promptLen);
    const want = await h.forward({ tokens: toks, batch: 1, seq: toks.length });
    const { at, rows } = await chunkedRun(h, toks.slice(0, promptLen), chunk, toks.slice(promptLen), toks.length);
    let worst = 0;
    rows.forEach((r, i) => (worst = Math.max(worst, relL2(r, want.subarray(at[i] * V, (at[i] + 1) * V)))));
    expect(worst).toBeLessThan(1e-5);
  });

  test('banded rings that wrap inside a tile of keys (window 5, chunks of 20 and 33)', async () => {
    const m = await makeModel({ ...long, n_layer: 2, patterns: ['banded', 'dense'], attention_window: 5 }, 6);
    for (const chunk of [20, 33]) {
      const toks = randomTokens(150, chunk);
      const want = await m.forward({ tokens: toks, batch: 1, seq: 150 });
      const { at, rows } = await chunkedRun(m, toks.slice(0, 147), chunk, toks.slice(147), 150);
      let worst = 0;
      rows.forEach((r, i) => (worst = Math.max(worst, relL2(r, want.subarray(at[i] * V, (at[i] + 1) * V)))));
      expect({ chunk, ok: worst < 1e-5 }).toEqual({ chunk, ok: true });
    }
    m.dispose();
  });

  test('a sequence extended by 20s is bitwise the same alone and beside others', async () => {
    const a = randomTokens(100, 21);
    const b = randomTokens(100, 22);
    const c = randomTokens(100, 23);
    const alone = await chunkedRun(h, a.slice(0, 80), 20, a.slice(80, 84), 100);
    const s = open(h, [100, 100, 100], 20);
    const got: Float32Array[] = [];
    const row = (y: Float32Array) => Float32Array.from(y.subarray(V, 2 * V));
    // c decodes; b goes in chunks of 17 and 3 before a's rows in every call.
    await s.prefill({ tokens: c.slice(0, 30), lengths: Int32Array.of(0, 0, 30) });
    got.push(row(await s.prefill({ tokens: Int32Array.from([...b.slice(0, 17), ...a.slice(0, 20)]), lengths: Int32Array.of(17, 20, 0) })));
    let ct = 30;
    for (const [ao, bo, bn] of [
      [20, 17, 17],
      [40, 34, 3],
      [60, 37, 17],
    ]) {
      await s.step({ tokens: Int32Array.of(0, 0, c[ct++]), active: Uint8Array.of(0, 0, 1) });
      got.push(row(await s.extend({ tokens: Int32Array.from([...b.slice(bo, bo + bn), ...a.slice(ao, ao + 20)]), lengths: Int32Array.of(bn, 20, 0) })));
    }
    for (let t = 80; t < 84; t++)
      got.push(row(await s.step({ tokens: Int32Array.of(b[t - 26], a[t], c[ct++]), active: Uint8Array.of(1, 1, 1) })));
    s.close();
    expect(got.length).toBe(alone.rows.length);
    got.forEach((g, i) => expect({ i, same: Buffer.compare(Buffer.from(g.buffer), Buffer.from(alone.rows[i].buffer)) === 0 }).toEqual({ i, same: true }));
  });
});

describe.each(['fp32', 'bf16'] as const)('%s: a chunked sequence is bitwise the same alone and beside others', (precision) => {
  let h: Handle;
  beforeAll(async () => {
    h = await makeModel(shape, 11, precision);
  });
  afterAll(() => h.dispose());

  test('extended beside other chunks, a prefill and steps, in any row', async () => {
    const a = randomTokens(40, 1);
    const b = randomTokens(40, 2);
    const c = randomTokens(40, 3);
    const chunk = 6;
    // a alone: chunks of 6 of its 26-token prompt, then steps.
    const alone = await chunkedRun(h, a.slice(0, 26), chunk, a.slice(26, 34), 40);
    // Together, a is sequence 2; b is prefilled in chunks of 4 (from a
    // session sized for 9), c prefilled whole then stepping, all in the same calls.
    const s = open(h, [40, 40, 40], 9);
    const got: Float32Array[] = [];
    const row = (y: Float32Array) => Float32Array.from(y.subarray(2 * V, 3 * V));
    // tick 1: b's first chunk and a's first chunk are prefilled together
    let y = await s.prefill({ tokens: Int32Array.from([...b.slice(0, 4), ...a.slice(0, 6)]), lengths: Int32Array.of(4, 0, 6) });
    got.push(row(y));
    // tick 2: a and b extend; c is prefilled whole in a call of its own
    y = await s.extend({ tokens: Int32Array.from([...b.slice(4, 8), ...a.slice(6, 12)]), lengths: Int32Array.of(4, 0, 6) });
    got.push(row(y));
    await s.prefill({ tokens: c.slice(0, 3), lengths: Int32Array.of(0, 3, 0) });
    // ticks 3-5: c steps between a's chunks; b goes on in chunks of 4 and of 9
    let ct = 3;
    for (const [ao, bo, bn] of [
      [12, 8, 4],
      [18, 12, 9],
      [24, 21, 9],
    ]) {
      const an = Math.min(6, 26 - ao);
      y = await s.extend({ tokens: Int32Array.from([...b.slice(bo, bo + bn), ...a.slice(ao, ao + an)]), lengths: Int32Array.of(bn, 0, an) });
      got.push(row(y));
      await s.step({ tokens: Int32Array.of(0, c[ct++], 0), active: Uint8Array.of(0, 1, 0) });
    }
    expect(Array.from(s.positions())).toEqual([30, 6, 26]);
    // a steps beside b and c
    for (let t = 26; t < 34; t++) {
      y = await s.step({ tokens: Int32Array.of(b[t + 4], c[ct++], a[t]), active: Uint8Array.of(1, 1, 1) });
      got.push(row(y));
    }
    s.close();
    expect(got.length).toBe(alone.rows.length);
    got.forEach((g, i) => {
      if (Buffer.compare(Buffer.from(g.buffer), Buffer.from(alone.rows[i].buffer)) !== 0)
        throw new Error(`${precision}: logits ${i} of the chunked sequence differ between alone and beside others`);
    });
  });
});

describe('ring size, errors and abort', () => {
  let h: Handle;
  beforeAll(async () => {
    h = await makeModel({ ...shape, n_layer: 2, patterns: ['dense', 'banded'] }, 4);
  });
  afterAll(() => h.dispose());

  test('banded layers hold min(capacity, window + extendMax - 1) positions', () => {
    const C = shape.n_embd;
    const bytes = (cap: number, e: number) => 4 * 2 * C * (cap + Math.min(cap, 5 + e - 1));
    for (const [cap, e] of [
      [40, 1],
      [40, 8],
      [40, 48],
      [6, 3],
    ]) {
      const s = open(h, [cap], e);
      expect({ cap, e, bytes: s.cacheBytes() }).toEqual({ cap, e, bytes: bytes(cap, e) });
      expect(s.extendMax).toBe(e);
      s.close();
    }
    expect(open(h, [4]).extendMax).toBe(1);
  });

  test('misuse is an error naming the value, never a crash; the session stays usable', async () => {
    expect(() => open(h, [10], 0)).toThrow(/extendMax/);
    expect(() => open(h, [10], 49)).toThrow(/extendMax/);
    const s = open(h, [12, 12], 4);
    await s.prefill({ tokens: new Int32Array(14), lengths: Int32Array.of(4, 10) });
    await expect(s.extend({ tokens: Int32Array.of(1, 2, 3, 4, 5), lengths: Int32Array.of(5, 0) })).rejects.toThrow(
      /at most extend_max = 4 tokens to extend sequence 0 \(its banded layers hold 8 positions\) but received 5/,
    );
    await expect(s.extend({ tokens: Int32Array.of(1, 2, 3), lengths: Int32Array.of(0, 3) })).rejects.toThrow(
      /extension of 0 to 2 tokens for sequence 1 \(it holds 10 of its capacity of 12\) but received 3/,
    );
    await expect(s.extend({ tokens: Int32Array.of(1, 100), lengths: Int32Array.of(2, 0) })).rejects.toThrow(/token ids in \[0, 100\) but received 100/);
    await expect(s.extend({ tokens: Int32Array.of(), lengths: Int32Array.of(0, 0) })).rejects.toThrow(/at least one sequence but every length is 0/);
    expect(() => s.extend({ tokens: Int32Array.of(1), lengths: Int32Array.of(-1, 2) })).toThrow(/lengths >= 0/);
    expect(Array.from(s.positions())).toEqual([4, 10]);
    await expect(s.extend({ tokens: Int32Array.of(1, 2, 3, 4), lengths: Int32Array.of(4, 0) })).resolves.toHaveLength(2 * V);
    expect(Array.from(s.positions())).toEqual([8, 10]);
    // a sequence whose ring holds all its positions may take more than extendMax
    const w = open(h, [6], 2);
    await w.prefill({ tokens: Int32Array.of(1), lengths: Int32Array.of(1) });
    await expect(w.extend({ tokens: Int32Array.of(1, 2, 3, 4, 5), lengths: Int32Array.of(5) })).resolves.toHaveLength(V);
    w.close();
    s.close();
  });

  test('abort stops an extend with ABORTED', async () => {
    const abort = new Int32Array(32);
    const s = native().decodeOpen(h, { capacities: Int32Array.of(20, 20), abort, extendMax: 4 });
    await s.prefill({ tokens: Int32Array.of(1, 2, 3, 4, 5), lengths: Int32Array.of(3, 2) });
    abort[0] = 1;
    await expect(s.extend({ tokens: Int32Array.of(6, 7), lengths: Int32Array.of(2, 0) })).rejects.toMatchObject({ code: 'ABORTED' });
    abort[0] = 0;
    expect(Array.from(s.positions())).toEqual([3, 2]);
    s.close();
  });
});
