// GPT.generate / GPT.stream on the CPU addon: seeded sampling, batch equals
// alone, streaming chunks, stop strings, abort, errors before native work,
// and the Hugging Face GPT-2 fixture (expected logits from an independent
// PyTorch script, test/fixtures/make-hf-fixture.py), including fp16 and bf16 files.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { GPTConfig } from '../../lib/config';
import { DisposedError } from '../../lib/errors';
import { GenerationResult } from '../../lib/generate';
import { GPT } from '../../lib/model';
import { byteModelForSuite, relL2 } from './shared/setup';

const fixture = path.join(__dirname, '..', 'fixtures', 'hf-gpt2-tiny');

const byteConfig: GPTConfig = {
  n_layer: 2,
  n_head: 2,
  n_embd: 32,
  n_positions: 64,
  vocab_size: 256,
  layer_norm_epsilon: 1e-5,
  attention_pattern: 'alternating',
  attention_window: 6,
};

describe('generate and stream (byte tokenizer, random weights)', () => {
  const model = byteModelForSuite(byteConfig, 3);

  test('a seed reproduces the output; stats are filled in', async () => {
    const opts = { maxTokens: 30, temperature: 1.2, seed: 11 };
    const a = await model().generate('Call me Ishmael.', opts);
    const b = await model().generate('Call me Ishmael.', opts);
    const c = await model().generate('Call me Ishmael.', { ...opts, seed: 12 });
    expect(a.tokens).toHaveLength(30);
    expect(b.tokens).toEqual(a.tokens);
    expect(c.tokens).not.toEqual(a.tokens);
    expect(a.text).toBe(Buffer.from(Uint8Array.from(a.tokens)).toString('utf8'));
    expect(a.stats.promptTokens).toBe(16);
    expect(a.stats.generatedTokens).toBe(30);
    // dense layer: 45 positions x 2 (k, v) x 32 floats; banded layer: a ring
    // of min(45, window 6 + prefillChunk 256 - 1) positions (native/core/decode.h)
    expect(a.stats.cacheBytes).toBe(4 * 2 * 32 * (45 + 45));
    expect(a.stats.timeToFirstTokenMs).toBeGreaterThan(0);
    expect(a.stats.prefillTokensPerSecond).toBeGreaterThan(0);
    expect(a.stats.decodeTokensPerSecond).toBeGreaterThan(0);
    expect(a.stats.tokensPerSecond).toBeGreaterThan(0);
  });

  test('a batch of prompts of different lengths equals generating each alone', async () => {
    const prompts = ['a', 'The whale, the whale!', 'Queequeg'];
    const opts = { maxTokens: 25, temperature: 0.9, topK: 40, topP: 0.95, seed: 5, stop: ['\n\n'] };
    const batch = await model().generate(prompts, opts);
    // Prompt i samples from the stream (seed, i): prompt 0 alone, and prompt
    // i as the last of a batch of i + 1, must give what the full batch gave.
    const first = await model().generate(prompts[0], opts);
    expect(first.tokens).toEqual(batch[0].tokens);
    for (let i = 1; i < prompts.length; i++) {
      const sub = await model().generate(prompts.slice(0, i + 1), opts);
      expect(sub[i].tokens).toEqual(batch[i].tokens);
      expect(sub[i].text).toBe(batch[i].text);
    }
    // a different neighbour (another length) does not change prompt 0 either
    const other = await model().generate([prompts[0], prompts[2]], opts);
    expect(other[0].tokens).toEqual(batch[0].tokens);
  });

  test('greedy decoding picks the argmax of the full forward at every step', async () => {
    const r = await model().generate(Int32Array.of(10, 20, 30), { maxTokens: 12, temperature: 0 });
    const seq = Int32Array.from([10, 20, 30, ...r.tokens]);
    const { logits } = await model().forward(seq, { batch: 1, seq: seq.length });
    const V = byteConfig.vocab_size;
    for (let i = 0; i < r.tokens.length; i++) {
      const row = logits.subarray((2 + i) * V, (3 + i) * V);
      let best = 0;
      for (let v = 1; v < V; v++) if (row[v] > row[best]) best = v;
      expect(r.tokens[i]).toBe(best);
    }
  });

  test('stream chunks concatenate to the text of generate', async () => {
    const opts = { maxTokens: 40, temperature: 1.5, seed: 8 };
    const chunks: string[] = [];
    const toks: number[] = [];
    for await (const c of model().stream('xyz', opts)) {
      chunks.push(c.text);
      toks.push(...c.tokens);
    }
    const r = await model().generate('xyz', opts);
    expect(chunks.join('')).toBe(r.text);
    expect(toks).toEqual(r.tokens);
  });

  test('breaking out of for-await stops generation; the model stays usable', async () => {
    let n = 0;
    for await (const c of model().stream('abc', { maxTokens: 50, seed: 1 })) {
      n += c.tokens.length;
      if (n >= 3) break;
    }
    expect(n).toBe(3);
    const r = await model().generate('abc', { maxTokens: 2, seed: 1 });
    expect(r.tokens).toHaveLength(2);
  });

  test('an abort rejects with the signal reason; returnPartial resolves with the partial output', async () => {
    const ac = new AbortController();
    const reason = new Error('stop now');
    const seen: number[] = [];
    await expect(
      (async () => {
        for await (const c of model().stream('abc', { maxTokens: 50, seed: 1, signal: ac.signal })) {
          seen.push(...c.tokens);
          if (seen.length === 4) ac.abort(reason);
        }
      })(),
    ).rejects.toBe(reason);
    expect(seen).toHaveLength(4);

    const ac2 = new AbortController();
    const p = model().generate('abc', { maxTokens: 60, seed: 1, signal: ac2.signal, returnPartial: true });
    setImmediate(() => ac2.abort());
    const r = await p;
    expect(['aborted', 'length']).toContain(r.finishReason);
    expect(r.tokens.length).toBeLessThanOrEqual(60);
  });

  test('errors come before any native work', async () => {
    await expect(model().generate('x'.repeat(65), { contextOverflow: 'stop' })).rejects.toThrow(/at most n_positions = 64 tokens but received one of 65/);
    await expect(model().generate('hello', { contextOverflow: 'wrap' as never })).rejects.toThrow(/Expected one of "slide", "stop" for contextOverflow but received "wrap"/);
    await expect(model().generate('hello', { topk: 3 } as never)).rejects.toThrow(/Unknown key "topk" in generate options \(did you mean "topK"\?\)/);
    await expect(model().generate('hello', { temperature: NaN })).rejects.toThrow(/temperature/);
  });

  test('a disposed model rejects with DisposedError', async () => {
    const m = await GPT.create(byteConfig, { device: 'cpu', seed: 1 });
    m.tokenizer = 'byte';
    await m.dispose();
    await expect(m.generate('hi', { maxTokens: 2 })).rejects.toBeInstanceOf(DisposedError);
  });
});

describe('gpt2 tokenizer: multi-byte characters stream whole', () => {
  test('chunks never split a character and concatenate to the text', async () => {
    const m = await GPT.create({ ...byteConfig, vocab_size: 50257, n_embd: 16 }, { device: 'cpu', seed: 2 });
    try {
      const opts = { maxTokens: 40, temperature: 3, seed: 4, ignoreEos: true };
      const chunks: string[] = [];
      for await (const c of m.stream('€ 😀 ç', opts)) chunks.push(c.text);
      const r = await m.generate('€ 😀 ç', opts);
      expect(chunks.join('')).toBe(r.text);
      const dec = new TextDecoder('utf-8', { fatal: true });
      for (const c of chunks) expect(() => dec.decode(Buffer.from(c, 'utf8'))).not.toThrow();
    } finally {
      await m.dispose();
    }
  });
});

interface Expected {
  sequences: number[][];
  config: { vocab_size: number };
  variants: Record<string, { logits: number[][][]; greedy: { prompt: number[]; tokens: number[] } }>;
}

describe('Hugging Face GPT-2 fixture', () => {
  const expected = JSON.parse(fs.readFileSync(path.join(fixture, 'expected.json'), 'utf8')) as Expected;
  const V = expected.config.vocab_size;

  test.each(['fp32', 'fp16', 'bf16'])('%s: full forward and KV-cache decoding match PyTorch', async (variant) => {
    const m = await GPT.load(path.join(fixture, variant), { device: 'cpu' });
    try {
      const want = expected.variants[variant];
      let worstFull = 0;
      let worstDecode = 0;
      for (let si = 0; si < expected.sequences.length; si++) {
        const seq = Int32Array.from(expected.sequences[si]);
        const T = seq.length;
        const ref = Float64Array.from(want.logits[si].flat());
        const { logits } = await m.forward(seq, { batch: 1, seq: T });
        worstFull = Math.max(worstFull, relL2(logits, ref));
        // decode: a prompt of half the sequence, then one token at a time
        const P = Math.max(1, T >> 1);
        const s = await m.decoder().open([T], new Int32Array(32));
        try {
          let got = await s.prefill([seq.slice(0, P)]);
          worstDecode = Math.max(worstDecode, relL2(got, ref.subarray((P - 1) * V, P * V)));
          for (let t = P; t < T; t++) {
            got = await s.step(Int32Array.of(seq[t]), Uint8Array.of(1));
            worstDecode = Math.max(worstDecode, relL2(got, ref.subarray(t * V, (t + 1) * V)));
          }
        } finally {
          s.close();
        }
      }
      expect(worstFull).toBeLessThan(1e-5);
      expect(worstDecode).toBeLessThan(1e-5);
      const g = (await m.generate(Int32Array.from(want.greedy.prompt), {
        maxTokens: want.greedy.tokens.length,
        temperature: 0,
      })) as GenerationResult;
      expect(g.tokens).toEqual(want.greedy.tokens);
    } finally {
      await m.dispose();
    }
  });
});
