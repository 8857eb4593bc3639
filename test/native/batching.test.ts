// Continuous batching (lib/generate/scheduler.ts): requests arriving at
// random times, of random lengths and sampling settings, some stopped by a
// stop string, some aborted or broken out of mid-stream, some with several
// prompts, some sliding past the context, all decoded in one running batch
// of at most maxBatch sequences. Every request's tokens and the logits each
// token was drawn from are bitwise those of the same request run alone, in
// fp32 and bf16; the batch really ran several sequences per step, queued
// beyond maxBatch, and reused its slots. Then the same through GPT.generate()
// and GPT.stream(), and maxBatch's validation.
import { GPTConfig } from '../../lib/config';
import {
  Decoder,
  DecodeSession,
  generate,
  GenerateOptions,
  GenerationResult,
  stream,
  tokenCodec,
} from '../../lib/generate';
import { BatchScheduler } from '../../lib/generate/scheduler';
import { GPT } from '../../lib/model';
import { modelScheduler } from '../../lib/model/batching';
import { createNativeModel, NativeModelHandle } from '../../lib/model/native';
import { CallQueue } from '../../lib/model/queue';
import { Rng } from '../../lib/rng';

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
const codec = tokenCodec('byte');

/** Records, per sequence, the logits each sampled token was drawn from. */
function recording(d: Decoder, rows: Float32Array[][]): Decoder {
  return {
    vocabSize: d.vocabSize,
    nPositions: d.nPositions,
    async open(capacities: number[], abort: Int32Array): Promise<DecodeSession> {
      const s = await d.open(capacities, abort);
      rows.length = 0;
      for (let i = 0; i < capacities.length; i++) rows.push([]);
      return {
        cacheBytes: s.cacheBytes,
        async prefill(prompts: Int32Array[]) {
          const out = await s.prefill(prompts);
          prompts.forEach((p, i) => p.length && rows[i].push(out.slice(i * V, (i + 1) * V)));
          return out;
        },
        async step(tokens: Int32Array, active: Uint8Array) {
          const out = await s.step(tokens, active);
          active.forEach((a, i) => a && rows[i].push(out.slice(i * V, (i + 1) * V)));
          return out;
        },
        close: () => s.close(),
      };
    },
  };
}

interface Request {
  prompts: Int32Array[];
  options: GenerateOptions;
  mode: 'generate' | 'stream';
  /** stream: break out of the loop after this many chunks */
  breakAfter?: number;
  /** abort the signal after this many chunks (stream) or this many ms (generate, returnPartial) */
  abortAfter?: number;
  /** ms after the start of the run at which the request arrives */
  delay: number;
}

interface Outcome {
  tokens: number[][];
  rows: Float32Array[][];
  finish: string[];
  /** cut short by an abort or a break: compare as a prefix */
  cut: boolean;
}

function randomRequests(seed: number, count: number): Request[] {
  const r = new Rng(seed, 0);
  const pick = <T>(xs: T[]): T => xs[r.nextInt(xs.length)];
  const out: Request[] = [];
  for (let i = 0; i < count; i++) {
    const nPrompts = r.nextInt(5) === 0 ? 2 + r.nextInt(2) : 1;
    const prompts = Array.from({ length: nPrompts }, () =>
      Int32Array.from({ length: 1 + r.nextInt(30) }, () => r.nextInt(V)),
    );
    const options: GenerateOptions = {
      // a few go past the context (contextOverflow 'slide' rebuilds their rows)
      maxTokens: r.nextInt(6) === 0 ? 50 + r.nextInt(30) : 1 + r.nextInt(24),
      temperature: pick([0, 0.7, 1, 1.4]),
      topK: pick([0, 0, 7]),
      topP: pick([1, 1, 0.9]),
      seed: r.nextInt(1 << 30),
    };
    if (r.nextInt(4) === 0) options.stop = [pick(['a', 'e', 'o', ' ']), pick(['x', 'q', '\u00ff'])];
    if (r.nextInt(6) === 0) options.contextOverflow = 'stop';
    const mode = r.nextInt(2) === 0 ? 'generate' : 'stream';
    const req: Request = { prompts, options, mode, delay: r.nextInt(40) };
    const cut = r.nextInt(5);
    if (cut === 0 && mode === 'stream') req.breakAfter = 1 + r.nextInt(6);
    if (cut === 1) req.abortAfter = mode === 'stream' ? 1 + r.nextInt(6) : r.nextInt(15);
    out.push(req);
  }
  return out;
}

/** Runs one request on a scheduler, recording its logits. */
async function runRequest(s: BatchScheduler, req: Request, alone: boolean): Promise<Outcome> {
  const rows: Float32Array[][] = [];
  const ac = new AbortController();
  const aborting = !alone && req.abortAfter !== undefined;
  const options: GenerateOptions = { ...req.options, ...(aborting ? { signal: ac.signal, returnPartial: true } : {}) };
  const batch = req.prompts.length > 1;
  const prompt = batch ? req.prompts : req.prompts[0];
  const t = await s.join(req.prompts.length, options.signal);
  try {
    const d = recording(t.decoder, rows);
    if (req.mode === 'generate') {
      let timer: NodeJS.Timeout | undefined;
      if (aborting) timer = setTimeout(() => ac.abort(), req.abortAfter);
      const res = await generate(d, codec, prompt, options);
      clearTimeout(timer);
      const list = (batch ? res : [res]) as GenerationResult[];
      return {
        tokens: list.map((x) => x.tokens),
        rows,
        finish: list.map((x) => x.finishReason),
        cut: list.some((x) => x.finishReason === 'aborted'),
      };
    }
    const tokens: number[][] = req.prompts.map(() => []);
    let chunks = 0;
    let cut = false;
    try {
      for await (const c of stream(d, codec, prompt, options)) {
        tokens[c.index].push(...c.tokens);
        chunks++;
        if (!alone && req.breakAfter !== undefined && chunks >= req.breakAfter) {
          cut = true;
          break;
        }
        if (aborting && chunks === req.abortAfter) {
          ac.abort();
          cut = true;
        }
      }
    } catch (e) {
      if (!ac.signal.aborted) throw e;
      cut = true;
    }
    return { tokens, rows, finish: [], cut };
  } finally {
    t.leave();
  }
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

/** The batched outcome equals the one alone: whole, or (cut short) as a prefix. */
function expectSame(i: number, got: Outcome, alone: Outcome): void {
  const where = `request ${i}`;
  for (let p = 0; p < alone.tokens.length; p++) {
    const g = got.tokens[p];
    const a = alone.tokens[p];
    if (got.cut) expect({ where, tokens: g }).toEqual({ where, tokens: a.slice(0, g.length) });
    else expect({ where, tokens: g }).toEqual({ where, tokens: a });
    const gr = got.rows[p] ?? [];
    const ar = alone.rows[p];
    if (!got.cut) expect({ where, rows: gr.length }).toEqual({ where, rows: ar.length });
    expect(gr.length).toBeLessThanOrEqual(ar.length);
    for (let k = 0; k < gr.length; k++)
      if (!sameBits(gr[k], ar[k])) throw new Error(`${where}, prompt ${p}: the logits of token ${k} differ from the request alone`);
  }
  if (!got.cut && alone.finish.length) expect({ where, finish: got.finish }).toEqual({ where, finish: alone.finish });
}

describe.each(['fp32', 'bf16'] as const)('%s: random arrivals, lengths, stops, aborts', (precision) => {
  let handle: NativeModelHandle;
  let calls: CallQueue;
  beforeAll(async () => {
    handle = await createNativeModel(config, 'cpu', precision, 7);
  });
  afterAll(() => handle.dispose());

  const scheduler = (maxBatch: number) => {
    calls = new CallQueue();
    return modelScheduler(calls, () => handle, config, maxBatch);
  };

  test.each([
    [4, 101, 24],
    [16, 202, 24],
  ])('maxBatch %d, seed %d: %d requests, each bitwise as alone', async (maxBatch, seed, count) => {
    const reqs = randomRequests(seed + (precision === 'bf16' ? 1 : 0), count);
    // Alone: one at a time, never cut short.
    const solo = scheduler(maxBatch);
    const alone: Outcome[] = [];
    for (const q of reqs) alone.push(await runRequest(solo, q, true));
    const soloSteps = solo.stats().steps;
    solo.dispose();

    const s = scheduler(maxBatch);
    let peak = 0;
    let peakQueued = 0;
    const watch = setInterval(() => {
      const st = s.stats();
      peak = Math.max(peak, st.batchSize);
      peakQueued = Math.max(peakQueued, st.queued);
    }, 1);
    const got = await Promise.all(
      reqs.map(
        (q) =>
          new Promise<Outcome>((resolve, reject) =>
            setTimeout(() => runRequest(s, q, false).then(resolve, reject), q.delay),
          ),
      ),
    );
    clearInterval(watch);
    got.forEach((g, i) => expectSame(i, g, alone[i]));
    const st = s.stats();
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
