// The KV cache (native/core/decode.*): logits from prefill + one-token steps
// equal a full forward over the same tokens (relative L2 < 1e-5), for dense
// and banded layers, after the banded ring buffer wraps, for batches of
// sequences at different positions; the cache of a banded layer is O(w);
// a sequence decodes bitwise the same alone and in a batch; abort and
// misuse give clear errors.
import { nativeDecoder } from '../../lib/generate';
import { Handle, makeModel, native, randomTokens, ringShape, Shape } from './shared/decode-model';
import { relL2 } from './shared/setup';

/** Logits of every position of one sequence by a full forward: [T, V]. */
async function fullLogits(h: Handle, tokens: Int32Array): Promise<Float32Array> {
  return Float32Array.from(await h.forward({ tokens, batch: 1, seq: tokens.length }));
}

/**
 * Decodes one sequence (prefill of its first `prompt` tokens, then a step a
 * token) and returns the worst relative error of the logits against `want`,
 * the full forward's; closes the session.
 */
async function worstDecodeError(h: Handle, toks: Int32Array, want: Float32Array, prompt: number): Promise<number> {
  const T = toks.length;
  const s = native().decodeOpen(h, { capacities: Int32Array.of(T), abort: new Int32Array(32) });
  let got = await s.prefill({ tokens: toks.slice(0, prompt), lengths: Int32Array.of(prompt) });
  let worst = relL2(got, want.subarray((prompt - 1) * V, prompt * V));
  for (let t = prompt; t < T; t++) {
    got = await s.step({ tokens: Int32Array.of(toks[t]), active: Uint8Array.of(1) });
    worst = Math.max(worst, relL2(got, want.subarray(t * V, (t + 1) * V)));
  }
  s.close();
  return worst;
}

const shape: Shape = ringShape;
const V = shape.vocab_size;

describe('KV-cache decoding equals a full forward', () => {
  let h: Handle;
  beforeAll(async () => {
    h = await makeModel(shape, 7);
  });
  afterAll(() => h.dispose());

  test.each([
    ['a short prompt, then steps past the window (the ring wraps many times)', 3],
    ['a prompt longer than the window', 12],
    ['a one-token prompt', 1],
  ])('%s', async (_name, promptLen) => {
    const T = 40;
    const toks = randomTokens(T, V, promptLen);
    const want = await fullLogits(h, toks);
    const abort = new Int32Array(32);
    const s = native().decodeOpen(h, { capacities: Int32Array.of(T), abort });
    let got: Float32Array = Float32Array.from(await s.prefill({ tokens: toks.slice(0, promptLen), lengths: Int32Array.of(promptLen) }));
    let worst = relL2(got, want.subarray((promptLen - 1) * V, promptLen * V));
    for (let t = promptLen; t < T; t++) {
      got = await s.step({ tokens: Int32Array.of(toks[t]), active: Uint8Array.of(1) });
      worst = Math.max(worst, relL2(got, want.subarray(t * V, (t + 1) * V)));
    }
    expect(worst).toBeLessThan(1e-5);
    expect(Array.from(s.positions())).toEqual([T]);
    s.close();
  });

  test('every layer dense, and every layer banded', async () => {
    for (const patterns of [
      ['dense', 'dense'],
      ['banded', 'banded'],
    ] as ('dense' | 'banded')[][]) {
      const m = await makeModel({ ...shape, n_layer: 2, patterns, attention_window: 3 }, 3);
      const T = 20;
      const toks = randomTokens(T, V, 99);
      const want = await fullLogits(m, toks);
      const worst = await worstDecodeError(m, toks, want, 4);
      expect(worst).toBeLessThan(1e-5);
      m.dispose();
    }
  });

  test('a batch of sequences at different positions, some finishing early, matches each full forward', async () => {
    const prompts = [3, 11, 1, 6];
    const totals = [30, 20, 35, 6];
    const seqs = totals.map((T, i) => randomTokens(T, V, 100 + i));
    const want = await Promise.all(seqs.map((t) => fullLogits(h, t)));
    const s = native().decodeOpen(h, { capacities: Int32Array.from(totals), abort: new Int32Array(32) });
    const B = prompts.length;
    const flat = Int32Array.from(seqs.flatMap((t, i) => Array.from(t.slice(0, prompts[i]))));
    let got = await s.prefill({ tokens: flat, lengths: Int32Array.from(prompts) });
    let worst = 0;
    for (let b = 0; b < B; b++)
      worst = Math.max(worst, relL2(got.subarray(b * V, (b + 1) * V), want[b].subarray((prompts[b] - 1) * V, prompts[b] * V)));
    const pos = [...prompts];
    for (;;) {
      const active = Uint8Array.from(pos.map((p, b) => (p < totals[b] ? 1 : 0)));
      if (!active.some((a) => a)) break;
      const tokens = Int32Array.from(pos.map((p, b) => (p < totals[b] ? seqs[b][p] : 0)));
      got = await s.step({ tokens, active });
      for (let b = 0; b < B; b++) {
        if (!active[b]) continue;
        const t = pos[b];
        worst = Math.max(worst, relL2(got.subarray(b * V, (b + 1) * V), want[b].subarray(t * V, (t + 1) * V)));
        pos[b]++;
      }
    }
    expect(worst).toBeLessThan(1e-5);
    expect(Array.from(s.positions())).toEqual(totals);
    s.close();
  });

  test('a sequence decodes bitwise the same alone and in a batch', async () => {
    const a = randomTokens(25, V, 5);
    const b = randomTokens(25, V, 6);
    const alone = native().decodeOpen(h, { capacities: Int32Array.of(25), abort: new Int32Array(32) });
    const both = native().decodeOpen(h, { capacities: Int32Array.of(25, 25), abort: new Int32Array(32) });
    let x: Float32Array = Float32Array.from(await alone.prefill({ tokens: a.slice(0, 4), lengths: Int32Array.of(4) }));
    const bothTokens = Int32Array.from([...b.slice(0, 9), ...a.slice(0, 4)]);
    // a is the second sequence of the batch, with a different prompt length beside it
    const both0 = native().decodeOpen(h, { capacities: Int32Array.of(25, 25), abort: new Int32Array(32) });
    void both0.close();
    let y = await both.prefill({ tokens: bothTokens, lengths: Int32Array.of(9, 4) });
    expect(Array.from(y.subarray(V, 2 * V))).toEqual(Array.from(x));
    for (let t = 4; t < 25; t++) {
      x = Float32Array.from(await alone.step({ tokens: Int32Array.of(a[t]), active: Uint8Array.of(1) }));
      const bt = 9 + (t - 4) < 25 ? b[9 + (t - 4)] : 0;
      y = await both.step({ tokens: Int32Array.of(bt, a[t]), active: Uint8Array.of(9 + (t - 4) < 25 ? 1 : 0, 1) });
      expect(Array.from(y.subarray(V, 2 * V))).toEqual(Array.from(x));
    }
    alone.close();
    both.close();
  });

  test('prefill again: a row given tokens starts over at position 0, a row of length 0 keeps its cache, bitwise', async () => {
    const a = randomTokens(30, V, 21);
    const b = randomTokens(30, V, 22);
    // fresh: each sequence decoded alone from its own prompt
    const runAlone = async (toks: Int32Array, from: number, to: number): Promise<Float32Array[]> => {
      const s = native().decodeOpen(h, { capacities: Int32Array.of(30), abort: new Int32Array(32) });
      const out = [Float32Array.from(await s.prefill({ tokens: toks.slice(from, from + 3), lengths: Int32Array.of(3) }))];
      for (let t = from + 3; t < to; t++) out.push(Float32Array.from(await s.step({ tokens: Int32Array.of(toks[t]), active: Uint8Array.of(1) })));
      s.close();
      return out;
    };
    const s = native().decodeOpen(h, { capacities: Int32Array.of(30, 30), abort: new Int32Array(32) });
    await s.prefill({ tokens: Int32Array.from([...a.slice(0, 20), ...b.slice(0, 3)]), lengths: Int32Array.of(20, 3) });
    const bRows: Float32Array[] = [];
    for (let t = 3; t < 10; t++) {
      const y = await s.step({ tokens: Int32Array.of(0, b[t]), active: Uint8Array.of(0, 1) });
      bRows.push(Float32Array.from(y.subarray(V, 2 * V)));
    }
    // sequence 0 (20 tokens held, the banded rings full) starts over from a[5..8)
    const y0 = await s.prefill({ tokens: a.slice(5, 8), lengths: Int32Array.of(3, 0) });
    const aRows = [Float32Array.from(y0.subarray(0, V))];
    expect(Array.from(s.positions())).toEqual([3, 10]);
    for (let t = 8; t < 20; t++) {
      const y = await s.step({ tokens: Int32Array.of(a[t], b[t + 2]), active: Uint8Array.of(1, 1) });
      aRows.push(Float32Array.from(y.subarray(0, V)));
      bRows.push(Float32Array.from(y.subarray(V, 2 * V)));
    }
    expect(aRows).toEqual(await runAlone(a, 5, 20));
    const bAlone = await runAlone(b, 0, 22);
    expect(bRows).toEqual(bAlone.slice(1));
    // the restarted row also equals a full forward over its new tokens
    const want = await fullLogits(h, a.slice(5, 20));
    expect(relL2(aRows[aRows.length - 1], want.subarray(14 * V, 15 * V))).toBeLessThan(1e-5);
    s.close();
  });

  test('resize: sequences that keep their capacity keep their caches bitwise; changed and new ones start empty', async () => {
    const a = randomTokens(30, V, 31);
    const b = randomTokens(30, V, 32);
    const c = randomTokens(30, V, 33);
    // Each sequence alone: its prefill of 4 tokens, then a step a token.
    const alone = async (toks: Int32Array, to: number): Promise<Float32Array[]> => {
      const s = native().decodeOpen(h, { capacities: Int32Array.of(30), abort: new Int32Array(32) });
      const out = [Float32Array.from(await s.prefill({ tokens: toks.slice(0, 4), lengths: Int32Array.of(4) }))];
      for (let t = 4; t < to; t++) out.push(Float32Array.from(await s.step({ tokens: Int32Array.of(toks[t]), active: Uint8Array.of(1) })));
      s.close();
      return out;
    };
    const s = native().decodeOpen(h, { capacities: Int32Array.of(30, 12), abort: new Int32Array(32) });
    const rowsA: Float32Array[] = [];
    let y = await s.prefill({ tokens: Int32Array.from([...a.slice(0, 4), ...b.slice(0, 4)]), lengths: Int32Array.of(4, 4) });
    rowsA.push(Float32Array.from(y.subarray(0, V)));
    // 12 tokens into a (past the band of 5, so the rings wrapped), 3 steps of b
    for (let t = 4; t < 12; t++) {
      y = await s.step({ tokens: Int32Array.of(a[t], b[t]), active: Uint8Array.of(1, t < 7 ? 1 : 0) });
      rowsA.push(Float32Array.from(y.subarray(0, V)));
    }
    const before = s.cacheBytes();
    // a keeps 30; b goes from 12 to 30 (emptied); c is new
    s.resize({ capacities: Int32Array.of(30, 30, 30) });
    expect(s.batch).toBe(3);
    expect(Array.from(s.positions())).toEqual([12, 0, 0]);
    expect(s.cacheBytes()).toBeGreaterThan(before);
    await expect(s.step({ tokens: Int32Array.of(a[12], 1, 1), active: Uint8Array.of(1, 1, 0) })).rejects.toThrow(
      /Sequence 1 holds no tokens: prefill it before it steps/,
    );
    y = await s.prefill({ tokens: Int32Array.from([...b.slice(0, 4), ...c.slice(0, 4)]), lengths: Int32Array.of(0, 4, 4) });
    expect(y.length).toBe(3 * V);
    const rowsB = [Float32Array.from(y.subarray(V, 2 * V))];
    const rowsC = [Float32Array.from(y.subarray(2 * V, 3 * V))];
    for (let t = 12; t < 26; t++) {
      const u = t - 8; // b and c are 8 tokens behind a
      y = await s.step({ tokens: Int32Array.of(a[t], b[u], c[u]), active: Uint8Array.of(1, 1, 1) });
      rowsA.push(Float32Array.from(y.subarray(0, V)));
      rowsB.push(Float32Array.from(y.subarray(V, 2 * V)));
      rowsC.push(Float32Array.from(y.subarray(2 * V, 3 * V)));
    }
    expect(rowsA).toEqual(await alone(a, 26));
    expect(rowsB).toEqual(await alone(b, 18));
    expect(rowsC).toEqual(await alone(c, 18));
    // shrinking drops the last sequences; the first keeps its cache
    s.resize({ capacities: Int32Array.of(30) });
    expect(s.batch).toBe(1);
    expect(Array.from(s.positions())).toEqual([26]);
    y = await s.step({ tokens: Int32Array.of(a[26]), active: Uint8Array.of(1) });
    expect(Array.from(y)).toEqual(Array.from((await alone(a, 27))[23]));
    expect(() => s.resize({ capacities: Int32Array.of(49) })).toThrow(/capacity between 1 and n_positions = 48 for sequence 0 but received 49/);
    expect(() => s.resize({ capacities: Int32Array.of() })).toThrow(/between 1 and 65536 sequences/);
    expect(Array.from(s.positions())).toEqual([27]);
    const p = s.step({ tokens: Int32Array.of(a[27]), active: Uint8Array.of(1) });
    expect(() => s.resize({ capacities: Int32Array.of(30, 30) })).toThrow(/still running/);
    await p;
    s.close();
    expect(() => s.resize({ capacities: Int32Array.of(30) })).toThrow(/closed/);
  });

  test('bf16 weights: decoding follows the bf16 full forward closely', async () => {
    const m = await makeModel(shape, 7, 'bf16');
    const T = 16;
    const toks = randomTokens(T, V, 77);
    const want = await fullLogits(m, toks);
    const worst = await worstDecodeError(m, toks, want, 5);
    // the same bf16 roundings on both sides; only summation order differs
    expect(worst).toBeLessThan(1e-3);
    m.dispose();
  });

  test('bf16: the bf16 copy of the weights follows training steps', async () => {
    const m = (await makeModel(shape, 8, 'bf16')) as Handle & {
      forwardBackward(o: { tokens: Int32Array; targets: Int32Array; batch: number; seq: number }): Promise<unknown>;
      step(o: { lr: number; weightDecay: number; gradClip: number }): Promise<unknown>;
    };
    const T = 10;
    const toks = randomTokens(T, V, 78);
    const decodeAll = async (): Promise<number> => {
      const want = await fullLogits(m, toks);
      return worstDecodeError(m, toks, want, 3);
    };
    expect(await decodeAll()).toBeLessThan(1e-3);
    const before = await fullLogits(m, toks);
    for (let i = 0; i < 3; i++) {
      await m.forwardBackward({ tokens: toks, targets: Int32Array.from(toks, (t) => (t + 1) % V), batch: 1, seq: T });
      await m.step({ lr: 3e-2, weightDecay: 0, gradClip: 0 });
    }
    const after = await fullLogits(m, toks);
    expect(relL2(after, before)).toBeGreaterThan(1e-2);
    expect(await decodeAll()).toBeLessThan(1e-3);
    m.dispose();
  });
});

describe('cache size', () => {
  test('banded layers hold the window, dense layers the whole capacity', async () => {
    const m = await makeModel({ ...shape, n_positions: 512, patterns: ['dense', 'banded', 'banded', 'banded'], attention_window: 8 }, 2);
    const C = shape.n_embd;
    const bytes = (cap: number) => 4 * 2 * C * (cap + 3 * Math.min(cap, 8));
    for (const cap of [4, 100, 500]) {
      const s = native().decodeOpen(m, { capacities: Int32Array.of(cap), abort: new Int32Array(32) });
      expect(s.cacheBytes()).toBe(bytes(cap));
      s.close();
    }
    const s = native().decodeOpen(m, { capacities: Int32Array.of(100, 7), abort: new Int32Array(32) });
    expect(s.cacheBytes()).toBe(bytes(100) + bytes(7));
    s.close();
    m.dispose();
  });
});

describe('errors and abort', () => {
  let h: Handle;
  beforeAll(async () => {
    h = await makeModel({ ...shape, n_layer: 2, patterns: ['dense', 'banded'] }, 4);
  });
  afterAll(() => h.dispose());

  test('abort stops a call with ABORTED', async () => {
    const abort = new Int32Array(32);
    const s = native().decodeOpen(h, { capacities: Int32Array.of(10), abort });
    await s.prefill({ tokens: Int32Array.of(1, 2), lengths: Int32Array.of(2) });
    abort[0] = 1;
    await expect(s.step({ tokens: Int32Array.of(3), active: Uint8Array.of(1) })).rejects.toMatchObject({ code: 'ABORTED' });
    abort[0] = 0;
    // the state is still usable (the aborted step did not advance it)
    expect(Array.from(s.positions())).toEqual([2]);
    s.close();
  });

  test('misuse is an error, never a crash', async () => {
    const mk = (caps: number[]) => native().decodeOpen(h, { capacities: Int32Array.from(caps), abort: new Int32Array(32) });
    expect(() => mk([0])).toThrow(/capacity between 1 and n_positions = 48/);
    expect(() => mk([49])).toThrow(/capacity between 1 and n_positions = 48/);
    const s = mk([3]);
    await expect(s.step({ tokens: Int32Array.of(1), active: Uint8Array.of(1) })).rejects.toThrow(/prefill before the first decode step/);
    await expect(s.prefill({ tokens: Int32Array.of(1, 2, 3, 4), lengths: Int32Array.of(4) })).rejects.toThrow(/prompt of 0 to 3 tokens for sequence 0 but received 4/);
    await expect(s.prefill({ tokens: Int32Array.of(1, 200), lengths: Int32Array.of(2) })).rejects.toThrow(/token ids in \[0, 100\)/);
    await s.prefill({ tokens: Int32Array.of(1, 2), lengths: Int32Array.of(2) });
    await expect(s.prefill({ tokens: Int32Array.of(), lengths: Int32Array.of(0) })).rejects.toThrow(/at least one sequence but every length is 0/);
    await s.step({ tokens: Int32Array.of(5), active: Uint8Array.of(1) });
    await expect(s.step({ tokens: Int32Array.of(5), active: Uint8Array.of(1) })).rejects.toThrow(/is full: it holds its capacity of 3 tokens/);
    const p = s.step({ tokens: Int32Array.of(5), active: Uint8Array.of(0) });
    await expect(p).resolves.toHaveLength(V);
    s.close();
    expect(() => s.step({ tokens: Int32Array.of(5), active: Uint8Array.of(1) })).toThrow(/closed/);
    expect(() => native().decodeOpen({}, { capacities: Int32Array.of(3), abort: new Int32Array(32) })).toThrow(/model handle/);
  });

  test('overlapping calls on one session are refused', async () => {
    const s = native().decodeOpen(h, { capacities: Int32Array.of(40), abort: new Int32Array(32) });
    const a = s.prefill({ tokens: randomTokens(40, V, 1), lengths: Int32Array.of(40) });
    expect(() => s.step({ tokens: Int32Array.of(1), active: Uint8Array.of(1) })).toThrow(/still running/);
    await a;
    await expect(s.step({ tokens: Int32Array.of(1), active: Uint8Array.of(0) })).resolves.toHaveLength(V);
    s.close();
  });

  test('nativeDecoder adapts a handle to lib/generate', async () => {
    const d = nativeDecoder(() => h, { vocab_size: V, n_positions: 48 });
    const s = await d.open([5, 5], new Int32Array(32));
    const logits = await s.prefill([Int32Array.of(1, 2), Int32Array.of(3)]);
    expect(logits.length).toBe(2 * V);
    expect(s.cacheBytes).toBeGreaterThan(0);
    s.close();
  });
});
