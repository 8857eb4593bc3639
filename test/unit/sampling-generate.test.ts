// The decode loop of lib/generate.ts against a fake decoder (no addon):
// batch equals alone, seeds, stop strings, UTF-8 chunks, EOS, abort, breaking
// out of for-await, and the errors raised before any native work.
import { AbortedError, ArgumentRangeError, ArgumentTypeError } from '../../lib/errors';
import {
  Decoder,
  DecodeSession,
  generate,
  GenerationChunk,
  GenerationResult,
  runGeneration,
  stream,
  TokenCodec,
} from '../../lib/generate';

const V = 257; // bytes + an end-of-text token (256)
const EOS = 256;

const byteCodec: TokenCodec = {
  encode: (t) => Array.from(new TextEncoder().encode(t)),
  decode: (ids) => new TextDecoder().decode(Uint8Array.from(Array.from(ids).filter((i) => i < 256))),
  eosToken: EOS,
};

/**
 * A deterministic toy "model": the logits of a sequence depend on its whole
 * history (a rolling hash), so any mix-up of positions or rows between
 * sequences changes the output. `prefer` biases the logits toward some bytes.
 */
class FakeDecoder implements Decoder {
  readonly vocabSize = V;
  opened = 0;
  closed = 0;
  steps = 0;
  inFlight = 0;
  constructor(
    readonly nPositions = 64,
    private readonly opts: { delayMs?: number; prefer?: number[]; eosAfter?: number; script?: number[] } = {},
  ) {}

  private row(hist: number[], out: Float32Array, off: number) {
    let h = 2166136261;
    for (const t of hist) h = Math.imul(h ^ t, 16777619) >>> 0;
    for (let v = 0; v < V; v++) {
      const x = Math.imul(h ^ (v * 2654435761), 2246822519) >>> 0;
      out[off + v] = (x / 4294967296) * 4 - 8;
    }
    for (const p of this.opts.prefer ?? []) out[off + p] += 6;
    const sc = this.opts.script;
    if (sc) out[off + sc[(hist.length - 1) % sc.length]] += 100;
    if (this.opts.eosAfter !== undefined && hist.length >= this.opts.eosAfter) out[off + EOS] = 100;
    else out[off + EOS] = -100;
  }

  prefills = 0;
  open(capacities: number[], abort: Int32Array): DecodeSession {
    this.opened++;
    const hists: number[][] = capacities.map(() => []);
    const self = this;
    let open = true;
    const work = async () => {
      if (!open) throw new Error('session used after close');
      self.inFlight++;
      try {
        if (self.opts.delayMs) await new Promise((r) => setTimeout(r, self.opts.delayMs));
        if (abort[0]) throw new AbortedError('native decode aborted');
      } finally {
        self.inFlight--;
      }
    };
    return {
      cacheBytes: 1234,
      async prefill(prompts: Int32Array[]) {
        await work();
        self.prefills++;
        // A prompt restarts its sequence; an empty one leaves it as it was.
        const out = new Float32Array(prompts.length * V).fill(NaN);
        prompts.forEach((p, i) => {
          if (p.length === 0) return;
          if (p.length > capacities[i]) throw new Error(`sequence ${i} over capacity`);
          hists[i] = Array.from(p);
          self.row(hists[i], out, i * V);
        });
        return out;
      },
      async step(tokens: Int32Array, active: Uint8Array) {
        await work();
        self.steps++;
        const out = new Float32Array(tokens.length * V).fill(NaN);
        for (let i = 0; i < tokens.length; i++) {
          if (!active[i]) continue;
          hists[i].push(tokens[i]);
          if (hists[i].length > capacities[i]) throw new Error(`sequence ${i} over capacity`);
          self.row(hists[i], out, i * V);
        }
        return out;
      },
      close() {
        if (open) self.closed++;
        open = false;
      },
    };
  }
}

describe('generate with a fake decoder', () => {
  test('a seed reproduces the output; results carry stats', async () => {
    const d = new FakeDecoder();
    const a = (await generate(d, byteCodec, 'hello', { maxTokens: 20, seed: 5, ignoreEos: true })) as GenerationResult;
    const b = (await generate(d, byteCodec, 'hello', { maxTokens: 20, seed: 5, ignoreEos: true })) as GenerationResult;
    const c = (await generate(d, byteCodec, 'hello', { maxTokens: 20, seed: 6, ignoreEos: true })) as GenerationResult;
    expect(a.tokens).toHaveLength(20);
    expect(a.tokens).toEqual(b.tokens);
    expect(a.tokens).not.toEqual(c.tokens);
    expect(a.finishReason).toBe('length');
    expect(a.stats).toMatchObject({ promptTokens: 5, generatedTokens: 20, cacheBytes: 1234, batchSize: 1, seed: 5 });
    expect(a.stats.timeToFirstTokenMs).toBeGreaterThanOrEqual(0);
    expect(d.opened).toBe(d.closed);
  });

  test('a batch equals generating each prompt alone', async () => {
    const d = new FakeDecoder();
    const prompts = ['a', 'longer prompt', 'mid one'];
    const opts = { maxTokens: 12, seed: 9, temperature: 0.9, topK: 50, topP: 0.95, ignoreEos: true };
    const batch = (await generate(d, byteCodec, prompts, opts)) as GenerationResult[];
    expect(batch).toHaveLength(3);
    for (let i = 0; i < prompts.length; i++) {
      // alone, prompt i must use stream (seed, i): emulate by padding the batch position
      const alone = (await generate(d, byteCodec, [prompts[i]], opts)) as GenerationResult[];
      if (i === 0) expect(alone[0].tokens).toEqual(batch[0].tokens);
      const again = (await generate(d, byteCodec, prompts.slice(0, i + 1), opts)) as GenerationResult[];
      expect(again[i].tokens).toEqual(batch[i].tokens);
      expect(again[i].text).toBe(batch[i].text);
    }
  });

  test('greedy decoding ignores the seed', async () => {
    const d = new FakeDecoder();
    const a = (await generate(d, byteCodec, 'x', { maxTokens: 10, temperature: 0, seed: 1, ignoreEos: true })) as GenerationResult;
    const b = (await generate(d, byteCodec, 'x', { maxTokens: 10, temperature: 0, seed: 2, ignoreEos: true })) as GenerationResult;
    expect(a.tokens).toEqual(b.tokens);
  });

  test('sequences of a batch finish independently (EOS, length)', async () => {
    const d = new FakeDecoder(64, { eosAfter: 8 });
    const r = (await generate(d, byteCodec, ['abcdef', 'a'], { maxTokens: 20, seed: 1 })) as GenerationResult[];
    // history reaches 8 tokens after 2 and 7 generated tokens: the next one is EOS
    expect(r[0].tokens).toHaveLength(3);
    expect(r[0].tokens[2]).toBe(EOS);
    expect(r[0].finishReason).toBe('eos');
    expect(r[1].tokens).toHaveLength(8);
    expect(r[1].finishReason).toBe('eos');
    expect(r[0].text).toBe(byteCodec.decode(r[0].tokens));
  });

  test('chunks end on character boundaries and concatenate to the text', async () => {
    // the model spells out multi-byte characters one byte per token
    const script = Array.from(new TextEncoder().encode('a€b😀çd'));
    const d = new FakeDecoder(200, { script });
    const chunks: GenerationChunk[] = [];
    for await (const c of stream(d, byteCodec, 'p', { maxTokens: 60, seed: 3, ignoreEos: true })) chunks.push(c);
    const full = (await generate(d, byteCodec, 'p', { maxTokens: 60, seed: 3, ignoreEos: true })) as GenerationResult;
    expect(chunks.map((c) => c.text).join('')).toBe(full.text);
    expect(chunks.flatMap((c) => c.tokens)).toEqual(full.tokens);
    expect(full.text).toBe(byteCodec.decode(full.tokens));
    expect(full.text.startsWith('a€b😀çd'.repeat(3))).toBe(true);
    // a token that leaves a character incomplete gives a chunk with tokens and no text
    expect(chunks.some((c) => c.text === '' && c.tokens.length === 1)).toBe(true);
    for (const c of chunks) {
      expect(c.text).not.toContain('\uFFFD');
      expect(new TextDecoder('utf-8', { fatal: true }).decode(new TextEncoder().encode(c.text))).toBe(c.text);
    }
    expect(chunks.map((c) => c.text)).toContain('😀');
  });

  test('invalid bytes still concatenate to the decoding of all tokens', async () => {
    const prefer = [0xe2, 0x82, 0xac, 0xc3, 0xa7, 0xf0, 0x9f, 0x98, 0x80];
    const d = new FakeDecoder(200, { prefer });
    const chunks: string[] = [];
    for await (const c of stream(d, byteCodec, 'p', { maxTokens: 150, seed: 3, ignoreEos: true })) chunks.push(c.text);
    const full = (await generate(d, byteCodec, 'p', { maxTokens: 150, seed: 3, ignoreEos: true })) as GenerationResult;
    expect(chunks.join('')).toBe(full.text);
    expect(full.text).toBe(byteCodec.decode(full.tokens));
  });

  test('a stop string ends generation and is excluded', async () => {
    const d = new FakeDecoder(200);
    const free = (await generate(d, byteCodec, 'q', { maxTokens: 60, seed: 4, temperature: 0.5, topK: 3, ignoreEos: true })) as GenerationResult;
    // choose a stop string from the middle of the free-running text
    const bytes = free.tokens;
    const mid = 20;
    const stop = byteCodec.decode(bytes.slice(mid, mid + 2));
    const expectText = free.text.slice(0, free.text.indexOf(stop));
    const chunks: string[] = [];
    let result: GenerationResult | undefined;
    const it = runGeneration(d, byteCodec, 'q', { maxTokens: 60, seed: 4, temperature: 0.5, topK: 3, ignoreEos: true, stop: ['NEVER', stop] });
    for (;;) {
      const n = await it.next();
      if (n.done) {
        result = n.value[0];
        break;
      }
      chunks.push(n.value.text);
    }
    expect(result.finishReason).toBe('stop');
    expect(result.text).toBe(expectText);
    expect(chunks.join('')).toBe(expectText);
    expect(result.tokens.length).toBeLessThan(60);
  });

  test('breaking out of for-await stops generation and closes the session', async () => {
    const d = new FakeDecoder(200);
    let n = 0;
    for await (const c of stream(d, byteCodec, 'z', { maxTokens: 100, seed: 1, ignoreEos: true })) {
      n += c.tokens.length;
      if (n >= 5) break;
    }
    expect(d.steps).toBe(4);
    expect(d.closed).toBe(1);
    expect(d.inFlight).toBe(0);
  });

  test('an abort rejects with the signal reason and stops native work', async () => {
    const d = new FakeDecoder(200, { delayMs: 5 });
    const ac = new AbortController();
    const reason = new Error('user said stop');
    setTimeout(() => ac.abort(reason), 40);
    await expect(generate(d, byteCodec, 'z', { maxTokens: 150, seed: 1, ignoreEos: true, signal: ac.signal })).rejects.toBe(reason);
    expect(d.steps).toBeLessThan(20);
    expect(d.closed).toBe(1);
    const steps = d.steps;
    await new Promise((r) => setTimeout(r, 30));
    expect(d.steps).toBe(steps);
  });

  test('returnPartial resolves with what was made', async () => {
    const d = new FakeDecoder(200, { delayMs: 5 });
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 40);
    const r = (await generate(d, byteCodec, 'z', { maxTokens: 150, seed: 1, ignoreEos: true, signal: ac.signal, returnPartial: true })) as GenerationResult;
    expect(r.finishReason).toBe('aborted');
    expect(r.tokens.length).toBeGreaterThan(0);
    expect(r.tokens.length).toBeLessThan(150);
    expect(r.text).toBe(byteCodec.decode(r.tokens));
  });

  test('an abort in a stream throws from the loop', async () => {
    const d = new FakeDecoder(200, { delayMs: 2 });
    const ac = new AbortController();
    let seen = 0;
    await expect(
      (async () => {
        for await (const c of stream(d, byteCodec, 'z', { maxTokens: 150, ignoreEos: true, signal: ac.signal })) {
          seen += c.tokens.length;
          if (seen === 3) ac.abort();
        }
      })(),
    ).rejects.toMatchObject({ name: 'AbortError' });
    expect(seen).toBe(3);
    expect(d.closed).toBe(1);
  });

  test('an already aborted signal rejects before any native work', async () => {
    const d = new FakeDecoder();
    const ac = new AbortController();
    ac.abort(new Error('early'));
    await expect(generate(d, byteCodec, 'z', { signal: ac.signal })).rejects.toThrow('early');
    expect(d.opened).toBe(0);
  });
});

describe('errors before native work', () => {
  const d = new FakeDecoder(16);
  const cases: [string, unknown, unknown, RegExp, unknown][] = [
    ['unknown option', 'hi', { maxToken: 3 }, /Unknown key "maxToken" in generate options \(did you mean "maxTokens"\?\)/, ArgumentRangeError],
    ['prompt too long with contextOverflow stop', 'x'.repeat(17), { contextOverflow: 'stop' }, /at most n_positions = 16 tokens but received one of 17 tokens/, ArgumentRangeError],
    ['contextOverflow', 'hi', { contextOverflow: 'wrap' }, /Expected one of "slide", "stop" for contextOverflow but received "wrap"/, ArgumentRangeError],
    ['maxTokens', 'hi', { maxTokens: 0 }, /maxTokens/, ArgumentRangeError],
    ['temperature', 'hi', { temperature: -1 }, /Expected a finite number >= 0 for temperature but received -1 \(number\)/, ArgumentRangeError],
    ['topK', 'hi', { topK: 1.5 }, /Expected a non-negative integer for topK but received 1.5/, ArgumentRangeError],
    ['topP', 'hi', { topP: 0 }, /Expected a finite number > 0 and <= 1 for topP but received 0/, ArgumentRangeError],
    ['seed', 'hi', { seed: 'a' }, /Expected a non-negative integer for seed but received "a" \(string\)/, ArgumentTypeError],
    ['stop', 'hi', { stop: [''] }, /Expected a non-empty string for stop\[0\]/, ArgumentRangeError],
    ['signal', 'hi', { signal: {} }, /Expected an AbortSignal for signal/, ArgumentTypeError],
    ['prompt type', 42, {}, /Expected a string, an Int32Array or a Uint32Array of token ids for prompt but received 42/, ArgumentTypeError],
    ['token out of range', Int32Array.of(1, 300), {}, /Expected token ids in \[0, 257\) for prompt\[1\] but received 300/, ArgumentRangeError],
    ['empty batch', [], {}, /Expected at least one prompt for prompt/, ArgumentRangeError],
  ];
  test.each(cases)('%s', async (_name, prompt, opts, msg, cls) => {
    const p = generate(d, byteCodec, prompt as string, opts as object);
    await expect(p).rejects.toThrow(msg);
    await expect(p).rejects.toBeInstanceOf(cls as typeof Error);
    expect(d.opened).toBe(0);
  });
  test('an empty prompt starts from the end-of-text token', async () => {
    const r = (await generate(new FakeDecoder(16), byteCodec, '', { maxTokens: 3, seed: 1, ignoreEos: true })) as GenerationResult;
    expect(r.stats.promptTokens).toBe(1);
    expect(r.tokens).toHaveLength(3);
  });
});
