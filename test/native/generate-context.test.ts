// Generation past the context (contextOverflow 'slide', the default): every
// token's logits equal a full forward over the window the policy says (the
// most recent tokens, positions restarting at 0 whenever the cache is
// rebuilt from the last floor(n_positions / 2) tokens), with dense and banded
// layers; a sequence's logits are bitwise the same alone and in a batch,
// across rebuilds, in fp32 and bf16; 'stop' ends at the context and says so.
import { generate, GenerationResult, slideKeep } from '../../lib/generate';
import { GPT } from '../../lib/model';
import { GPTConfig } from '../../lib/config';
import { byteModelForSuite, relL2 } from './shared/setup';
import { recording } from './shared/batching-driver';

const N = 16;
const config: GPTConfig = {
  n_layer: 4,
  n_head: 2,
  n_embd: 32,
  n_positions: N,
  vocab_size: 256,
  layer_norm_epsilon: 1e-5,
  attention_pattern: 'alternating',
  attention_window: 5,
};
const V = config.vocab_size;

/** The logits of each generated token by the policy's window, from a full forward. */
async function referenceLogits(m: GPT, prompt: Int32Array, generated: number[]): Promise<Float32Array[]> {
  const input = prompt.length > N ? prompt.subarray(prompt.length - N) : prompt;
  const all = [...input, ...generated];
  const L = input.length;
  const keep = slideKeep(N);
  const out: Float32Array[] = [];
  let start = 0;
  let cached = L;
  for (let j = 0; j < generated.length; j++) {
    const win = Int32Array.from(all.slice(start, L + j));
    expect(win.length).toBeLessThanOrEqual(N);
    const { logits } = await m.forward(win, { batch: 1, seq: win.length });
    out.push(logits.slice((win.length - 1) * V, win.length * V));
    // Feeding token j: a full cache is rebuilt from the last `keep` tokens.
    if (cached >= N) {
      start = L + j + 1 - keep;
      cached = keep;
    } else cached++;
  }
  return out;
}

const bytes = (s: string) => Int32Array.from(Buffer.from(s, 'latin1'));
// Lengths 3, 20 (longer than the context: cropped to its last 16), 16 (the
// whole context) and 9: rebuilds fall on different steps for each.
const prompts = [bytes('abc'), bytes('It was a dark and stormy night'.slice(0, 20)), bytes('0123456789abcdef'), bytes('Call me I')];

describe.each(['fp32', 'bf16'] as const)('past the context (%s)', (precision) => {
  let m: GPT;
  beforeAll(async () => {
    m = await GPT.create(config, { device: 'cpu', seed: 5, precision });
    m.tokenizer = 'byte';
  });
  afterAll(() => m.dispose());

  test('every token follows a full forward over its window (dense and banded layers)', async () => {
    const rows: Float32Array[][] = [];
    const res = (await generate(recording(m.decoder(), rows), m.textCodec(), prompts, {
      maxTokens: 45,
      seed: 9,
      temperature: 1,
      ignoreEos: true,
    })) as GenerationResult[];
    const tol = precision === 'fp32' ? 1e-5 : 1e-3;
    for (let i = 0; i < prompts.length; i++) {
      expect(res[i].tokens).toHaveLength(45);
      expect(res[i].finishReason).toBe('length');
      expect(res[i].stats.contextSlides).toBeGreaterThanOrEqual(4);
      expect(res[i].stats.promptTokensDropped).toBe(Math.max(0, prompts[i].length - N));
      expect(rows[i]).toHaveLength(45);
      const want = await referenceLogits(m, prompts[i], res[i].tokens);
      let worst = 0;
      for (let j = 0; j < 45; j++) worst = Math.max(worst, relL2(rows[i][j], want[j]));
      expect(worst).toBeLessThan(tol);
    }
  });

  test('a sequence is bitwise the same alone and in a batch, across rebuilds', async () => {
    const opts = { maxTokens: 40, temperature: 0, ignoreEos: true };
    const batchRows: Float32Array[][] = [];
    const batch = (await generate(recording(m.decoder(), batchRows), m.textCodec(), prompts, opts)) as GenerationResult[];
    for (let i = 0; i < prompts.length; i++) {
      const aloneRows: Float32Array[][] = [];
      const alone = (await generate(recording(m.decoder(), aloneRows), m.textCodec(), prompts[i], opts)) as GenerationResult;
      expect(alone.tokens).toEqual(batch[i].tokens);
      expect(alone.stats.contextSlides).toBe(batch[i].stats.contextSlides);
      expect(aloneRows[0]).toHaveLength(40);
      for (let j = 0; j < 40; j++) expect(Buffer.from(aloneRows[0][j].buffer).equals(Buffer.from(batchRows[i][j].buffer))).toBe(true);
    }
  });
});

describe('contextOverflow', () => {
  const m = byteModelForSuite(config, 6);

  test("'stop' ends at the context with finishReason 'context' and says why", async () => {
    const r = await m().generate('hello', { maxTokens: 40, seed: 1, ignoreEos: true, contextOverflow: 'stop' });
    // the last token is predicted from the full context of 16 tokens
    expect(r.tokens).toHaveLength(N - 5 + 1);
    expect(r.finishReason).toBe('context');
    expect(r.stopReason).toMatch(/context of n_positions = 16 tokens \(contextOverflow 'stop'\)/);
    expect(r.stats.contextSlides).toBe(0);
    // the same tokens as 'slide' up to there
    const s = await m().generate('hello', { maxTokens: 40, seed: 1, ignoreEos: true });
    expect(s.tokens.slice(0, r.tokens.length)).toEqual(r.tokens);
    expect(s.tokens).toHaveLength(40);
    expect(s.finishReason).toBe('length');
    expect(s.stopReason).toBe('reached maxTokens = 40');
    // within the context 'stop' changes nothing
    const short = await m().generate('hello', { maxTokens: 5, seed: 1, ignoreEos: true, contextOverflow: 'stop' });
    expect(short.finishReason).toBe('length');
    expect(short.tokens).toEqual(r.tokens.slice(0, 5));
  });

  test("a prompt longer than the context: cropped with 'slide', an error naming the lengths with 'stop'", async () => {
    const long = 'x'.repeat(10) + 'abcdefghijklmnop';
    await expect(m().generate(long, { contextOverflow: 'stop' })).rejects.toThrow(
      /Expected a prompt of at most n_positions = 16 tokens but received one of 26 tokens/,
    );
    const a = await m().generate(long, { maxTokens: 10, seed: 2, ignoreEos: true });
    const b = await m().generate('abcdefghijklmnop', { maxTokens: 10, seed: 2, ignoreEos: true });
    expect(a.tokens).toEqual(b.tokens);
    expect(a.stats.promptTokens).toBe(26);
    expect(a.stats.promptTokensDropped).toBe(10);
  });

  test('stream goes past the context; its chunks concatenate to the text', async () => {
    let text = '';
    let n = 0;
    for await (const c of m().stream('abc', { maxTokens: 50, seed: 4, ignoreEos: true })) {
      text += c.text;
      n += c.tokens.length;
    }
    const r = await m().generate('abc', { maxTokens: 50, seed: 4, ignoreEos: true });
    expect(n).toBe(50);
    expect(text).toBe(r.text);
  });

  test('a one-position model slides one token at a time', async () => {
    const one = await GPT.create({ ...config, n_positions: 1, attention_window: 1 }, { device: 'cpu', seed: 1 });
    one.tokenizer = 'byte';
    try {
      const rows: Float32Array[][] = [];
      const r = (await generate(recording(one.decoder(), rows), one.textCodec(), 'ab', { maxTokens: 6, seed: 3, ignoreEos: true })) as GenerationResult;
      expect(r.tokens).toHaveLength(6);
      expect(r.stats.contextSlides).toBe(5);
      const toks = [98, ...r.tokens];
      for (let j = 0; j < 6; j++) {
        const { logits } = await one.forward(Int32Array.of(toks[j]), { batch: 1, seq: 1 });
        expect(relL2(rows[0][j], logits)).toBeLessThan(1e-5);
      }
    } finally {
      await one.dispose();
    }
  });
});
