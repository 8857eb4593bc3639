// Continuous batching (lib/generate/scheduler.ts): requests arriving at
// random times, of random lengths and sampling settings, some stopped by a
// stop string, some aborted or broken out of mid-stream, some with several
// prompts, some sliding past the context, all decoded in one running batch
// of at most maxBatch sequences. Every request's tokens and the logits each
// token was drawn from are bitwise those of the same request run alone, in
// fp32 and bf16; the batch really ran several sequences per step, queued
// beyond maxBatch, and reused its slots. With a small prefillChunk most
// prompts (and the rebuilds of sliding sequences) are prefilled in chunks:
// still bitwise as alone, and every native prefill or extend takes at most
// one chunk of a sequence, one of each between two steps. Then the same
// through GPT.generate() and GPT.stream(), and the validation of maxBatch
// and prefillChunk.
import { GPTConfig } from '../../lib/config';
import { generate, GenerateOptions, GenerationResult, tokenCodec } from '../../lib/generate';
import { DecodeNative, NativeDecodeSession } from '../../lib/generate/native';
import { BatchScheduler } from '../../lib/generate/scheduler';
import { kvCacheBytes } from '../../lib/limits';
import { GPT } from '../../lib/model';
import { modelScheduler } from '../../lib/model/batching';
import { loadAddon } from '../../lib/native';
import { createNativeModel, NativeModelHandle } from '../../lib/model/native';
import { CallQueue } from '../../lib/model/queue';
import { aloneAndTogether, expectSame, randomRequests } from './shared/batching-driver';

jest.setTimeout(120_000);

const N = 48;
const config: GPTConfig = {
  n_layer: 3,
  n_head: 2,
  n_embd: 32,
  n_positions: N,
  vocab_size: 256,
  layer_norm_epsilon: 1e-5,
  attention_pattern: 'alternating',
  attention_window: 6,
};
const V = config.vocab_size;

describe.each(['fp32', 'bf16'] as const)('%s: random arrivals, lengths, stops, aborts', (precision) => {
  let handle: NativeModelHandle;
  let calls: CallQueue;
  beforeAll(async () => {
    handle = await createNativeModel(config, 'cpu', precision, 7);
  });
  afterAll(() => handle.dispose());

  const scheduler = (maxBatch: number, prefillChunk?: number) => {
    calls = new CallQueue();
    return modelScheduler(calls, () => handle, config, maxBatch, prefillChunk);
  };

  test.each([
    [4, 101, 24, undefined],
    [16, 202, 24, undefined],
    [4, 303, 24, 7],
    [16, 404, 24, 4],
  ])('maxBatch %d, seed %d: %d requests, prefillChunk %s, each bitwise as alone', async (maxBatch, seed, count, chunk) => {
    const reqs = randomRequests(seed + (precision === 'bf16' ? 1 : 0), count, V);
    // Alone: one at a time, never cut short; then together.
    const { alone, got, soloSteps, stats: st, peak, peakQueued } = await aloneAndTogether(() => scheduler(maxBatch, chunk), reqs);
    got.forEach((g, i) => expectSame(i, g, alone[i]));
    // It batched: fewer steps than alone, several rows per step, never above
    // maxBatch (a request's prompts count one each).
    expect(st.steps).toBeLessThan(soloSteps);
    expect(st.stepRows / st.steps).toBeGreaterThan(1.5);
    expect(peak).toBeLessThanOrEqual(maxBatch);
    if (maxBatch === 4) expect(peakQueued).toBeGreaterThan(0);
    // Slots are reused: no more than the most sequences at once.
    expect(st.slots).toBeLessThanOrEqual(maxBatch);
    expect(st).toMatchObject({ batchSize: 0, running: 0, queued: 0 });
    expect(got.some((g) => g.cut)).toBe(true);
    // chunked: many extends; unchunked (prompts of at most 30 tokens): none
    if (chunk) expect(st.extends).toBeGreaterThan(10);
    else expect(st.extends).toBe(0);
  });

  test('a long prompt reaches the running sequences one chunk at a time', async () => {
    // A scheduler whose native session records its calls.
    const log: { op: 'prefill' | 'extend' | 'step'; lengths: number[] }[] = [];
    const chunk = 5;
    const s = new BatchScheduler(
      {
        enqueue: (fn) => calls.enqueue(fn),
        issued: () => calls.issued,
        closed: () => calls.isClosed,
        open: (capacities, abort, extendMax) => {
          expect(extendMax).toBe(chunk);
          const n = loadAddon<DecodeNative>().decodeOpen(handle, { capacities, abort, extendMax });
          const rec = (op: 'prefill' | 'extend') => (o: { tokens: Int32Array; lengths: Int32Array }) => {
            log.push({ op, lengths: Array.from(o.lengths) });
            return op === 'prefill' ? n.prefill(o) : n.extend(o);
          };
          return Object.assign(Object.create(n) as NativeDecodeSession, {
            prefill: rec('prefill'),
            extend: rec('extend'),
            step: (o: { tokens: Int32Array; active: Uint8Array }) => {
              log.push({ op: 'step', lengths: Array.from(o.active) });
              return n.step(o);
            },
          });
        },
        alive: () => undefined,
        vocabSize: V,
        nPositions: N,
        cacheBytes: (caps) => kvCacheBytes(config, caps),
      },
      4,
      chunk,
    );
    calls = new CallQueue();
    const codec = tokenCodec('byte');
    const long = Int32Array.from({ length: 23 }, (_, i) => (i * 37) % V);
    const run = (prompt: Int32Array, maxTokens: number, delay: number) =>
      new Promise<GenerationResult>((resolve, reject) =>
        setTimeout(
          () => s.with(1, undefined, (d) => generate(d, codec, prompt, { maxTokens, seed: 5 }) as Promise<GenerationResult>).then(resolve, reject),
          delay,
        ),
      );
    const short = await run(Int32Array.of(1, 2), 30, 0).then(async () => {
      log.length = 0;
      // a short request runs; the long one arrives while it steps
      return Promise.all([run(Int32Array.of(1, 2), 30, 0), run(long, 3, 5)]);
    });
    expect(short[0].tokens.length).toBe(30);
    // the long prompt: one prefill of 5 tokens, then extends of 5, 5, 5, 3
    const chunks = log.filter((c) => c.op !== 'step' && c.lengths.some((l) => l > 2)).map((c) => [c.op, Math.max(...c.lengths)]);
    expect(chunks).toEqual([['prefill', 5], ['extend', 5], ['extend', 5], ['extend', 5], ['extend', 3]]);
    // between two steps of the running sequence, at most one prefill and one extend
    let since = 0;
    for (const c of log) {
      if (c.op === 'step') since = 0;
      else expect(++since).toBeLessThanOrEqual(2);
    }
    // the running sequence stepped while the long prompt was prefilled
    const first = log.findIndex((c) => c.op === 'prefill' && c.lengths.includes(5));
    const last = log.findIndex((c) => c.op === 'extend' && c.lengths.includes(3));
    expect(log.slice(first, last).filter((c) => c.op === 'step').length).toBeGreaterThanOrEqual(3);
    s.dispose();
  });
});

describe('GPT.generate() and GPT.stream() batch', () => {
  const prompts = ['The cat', 'A', 'Some longer prompt than the others', 'xyz', 'q', 'hello there', '12345', 'z'];
  const opts = (i: number): GenerateOptions => ({ maxTokens: 12 + (i % 5) * 3, seed: 100 + i, temperature: 0.9 });

  test('concurrent calls equal each alone; stats count the batch and the queue; the model stays usable', async () => {
    const m = await GPT.create(config, { device: 'cpu', seed: 3, maxBatch: 3 });
    m.tokenizer = 'byte';
    const alone: GenerationResult[] = [];
    for (let i = 0; i < prompts.length; i++) alone.push(await m.generate(prompts[i], opts(i)));
    let peak = 0;
    let queued = 0;
    const watch = setInterval(() => {
      const st = m.batchStats();
      peak = Math.max(peak, st.batchSize);
      queued = Math.max(queued, st.queued);
    }, 1);
    const streamed = async (i: number): Promise<string> => {
      let text = '';
      for await (const c of m.stream(prompts[i], opts(i))) text += c.text;
      return text;
    };
    const got = await Promise.all(prompts.map((p, i) => (i % 2 ? streamed(i) : m.generate(p, opts(i)).then((r) => r.text))));
    clearInterval(watch);
    expect(got).toEqual(alone.map((r) => r.text));
    expect(peak).toBe(3);
    expect(queued).toBeGreaterThan(0);
    expect(m.batchStats()).toMatchObject({ maxBatch: 3, batchSize: 0, running: 0, queued: 0 });
    // a call of more prompts than maxBatch runs as a batch of its own, beside nothing
    const five = prompts.slice(0, 5);
    const manyAlone = await m.generate(five, { maxTokens: 4, seed: 1 });
    const [many, one] = await Promise.all([m.generate(five, { maxTokens: 4, seed: 1 }), m.generate('x', opts(0))]);
    expect(many.map((r) => r.tokens)).toEqual(manyAlone.map((r) => r.tokens));
    expect(one.tokens).toEqual((await m.generate('x', opts(0))).tokens);
    await m.dispose();
    await expect(m.generate('a', { maxTokens: 2 })).rejects.toMatchObject({ code: 'DISPOSED' });
  });

  test('a training call queued between generations closes the batch: later ones run after it, on its weights', async () => {
    const m = await GPT.create(config, { device: 'cpu', seed: 3 });
    m.tokenizer = 'byte';
    const tok = Int32Array.from({ length: 2 * 16 }, (_, i) => (i * 7) % V);
    const g = (i: number) => m.generate(prompts[i], { maxTokens: 20, seed: i, temperature: 0 });
    const before = await Promise.all([g(0), g(1)]);
    const order: string[] = [];
    const a = g(0).then((r) => (order.push('a'), r));
    const b = g(1).then((r) => (order.push('b'), r));
    const fb = m.forwardBackward(tok, tok, { batch: 2, seq: 16 }).then(() => order.push('forwardBackward'));
    const st = m.step({ lr: 1 }).then(() => order.push('step'));
    const c = g(0).then((r) => (order.push('c'), r));
    const [ra, rb, , , rc] = await Promise.all([a, b, fb, st, c]);
    expect(order).toEqual(['a', 'b', 'forwardBackward', 'step', 'c']);
    expect([ra.tokens, rb.tokens]).toEqual(before.map((r) => r.tokens));
    // c saw the stepped weights: what a call alone on them gives, not what a and b got
    expect(rc.tokens).toEqual((await g(0)).tokens);
    expect(rc.tokens).not.toEqual(ra.tokens);
    await m.dispose();
  });

  test('prefillChunk: a chunked generation equals the same on the model\'s decoder, alone or beside another; validated by name', async () => {
    const m = await GPT.create(config, { device: 'cpu', seed: 3, prefillChunk: 6 });
    m.tokenizer = 'byte';
    expect(m.batchStats().prefillChunk).toBe(6);
    const long = 'A prompt of forty bytes, chunked by six.';
    const o = { maxTokens: 5, seed: 9, temperature: 0 };
    const viaDecoder = (await generate(m.decoder(), tokenCodec('byte'), long, o)) as GenerationResult;
    const [a, b] = await Promise.all([m.generate(long, o), m.generate('x', { maxTokens: 8, seed: 4 })]);
    expect(a.tokens).toEqual(viaDecoder.tokens);
    expect(b.tokens).toEqual((await m.generate('x', { maxTokens: 8, seed: 4 })).tokens);
    await m.dispose();
    for (const bad of [0, (1 << 20) + 1, 2.5, '8'])
      await expect(GPT.create(config, { device: 'cpu', prefillChunk: bad as number })).rejects.toThrow(/prefillChunk but received/);
  });

  test('maxBatch is validated by name', async () => {
    for (const bad of [0, 4097, 1.5, '4', -1])
      await expect(GPT.create(config, { device: 'cpu', maxBatch: bad as number })).rejects.toThrow(
        new RegExp(`maxBatch but received ${typeof bad === 'string' ? `'${bad}'|"${bad}"|${bad}` : String(bad).replace('.', '\\.')}`),
      );
    const m = await GPT.create(config, { device: 'cpu', maxBatch: 4096 });
    expect(m.batchStats().maxBatch).toBe(4096);
    await m.dispose();
  });
});
