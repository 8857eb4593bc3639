/**
 * The HTTP server (lib/serve) driven by the official `openai` client and by
 * raw requests: completions equal the library's generate() with the same
 * seed, streamed chunks concatenate to the non-streamed text, n choices
 * equal a batch of n prompts, stop strings cut where the library cuts, and
 * every error is OpenAI's error object with the status that says why.
 * The `tiny` preset with random weights, on 127.0.0.1 with port 0.
 */
import { APIError, OpenAI } from 'openai';
import { GPT } from '../../lib/model';
import { GENERATE_OPTION_KEYS, TokenCodec } from '../../lib/generate';
import { serve, ServeHandle } from '../../lib/serve';
import { events, postJson, rawHttp, request } from '../helpers/serve-util';

let model: GPT;
let server: ServeHandle;
let client: OpenAI;
let codec: TokenCodec;
const PROMPT = 'The quick brown fox';

beforeAll(async () => {
  model = await GPT.create('tiny', { device: 'cpu', seed: 11 });
  codec = model.textCodec();
  server = await serve(model, { port: 0, name: 'tiny' });
  client = new OpenAI({ apiKey: 'not-checked', baseURL: `${server.url}/v1`, maxRetries: 0 });
});
afterAll(async () => {
  await server?.close({ drainSeconds: 0 });
  await model?.dispose();
});

const ids = (text: string) => Int32Array.from(codec.encode(text) as ArrayLike<number>);
const finish = (r: string) => (r === 'stop' || r === 'eos' ? 'stop' : 'length');

async function streamText(params: Record<string, unknown>): Promise<{ texts: string[]; finishes: (string | null)[]; usage: unknown }> {
  const s = await client.completions.create({ model: 'tiny', prompt: PROMPT, ...params, stream: true } as never);
  const n = (params.n as number | undefined) ?? 1;
  const texts = Array.from({ length: n }, () => '');
  const finishes: (string | null)[] = Array.from({ length: n }, () => null);
  let usage: unknown = null;
  for await (const chunk of s as unknown as AsyncIterable<OpenAI.Completion>) {
    for (const c of chunk.choices) {
      texts[c.index] += c.text;
      if (c.finish_reason) finishes[c.index] = c.finish_reason;
    }
    if (chunk.usage) usage = chunk.usage;
  }
  return { texts, finishes, usage };
}

describe('completions through the openai client', () => {
  test('a completion equals generate() with the same seed, with usage counts', async () => {
    const r = await client.completions.create({ model: 'tiny', prompt: PROMPT, max_tokens: 9, seed: 5, temperature: 0.9, top_p: 0.95 });
    const want = await model.generate([ids(PROMPT)], { maxTokens: 9, seed: 5, temperature: 0.9, topP: 0.95 });
    expect(r.object).toBe('text_completion');
    expect(r.model).toBe('tiny');
    expect(r.id).toMatch(/^cmpl-/);
    expect(r.choices).toHaveLength(1);
    expect(r.choices[0].text).toBe(want[0].text);
    expect(r.choices[0].index).toBe(0);
    expect(r.choices[0].finish_reason).toBe(finish(want[0].finishReason));
    expect(r.usage).toEqual({ prompt_tokens: ids(PROMPT).length, completion_tokens: want[0].tokens.length, total_tokens: ids(PROMPT).length + want[0].tokens.length });
  });

  test('the streamed chunks concatenate to the non-streamed text with the same seed; [DONE] ends the stream', async () => {
    const params = { max_tokens: 12, seed: 21, temperature: 1 };
    const whole = await client.completions.create({ model: 'tiny', prompt: PROMPT, ...params });
    const s = await streamText({ ...params, stream_options: { include_usage: true } });
    expect(s.texts[0]).toBe(whole.choices[0].text);
    expect(s.texts[0].length).toBeGreaterThan(0);
    expect(s.finishes[0]).toBe(whole.choices[0].finish_reason);
    expect(s.usage).toEqual(whole.usage);
    // The raw stream: server-sent events, the last one [DONE].
    const raw = await postJson(`${server.url}/v1/completions`, { prompt: PROMPT, ...params, stream: true });
    expect(raw.status).toBe(200);
    expect(raw.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const ev = events(raw.text);
    expect(ev[ev.length - 1]).toBe('[DONE]');
    const text = ev.slice(0, -1).map((e) => (JSON.parse(e) as OpenAI.Completion).choices.map((c) => c.text).join('')).join('');
    expect(text).toBe(whole.choices[0].text);
  });

  test('n > 1: n choices, each equal to its row of a batch of n prompts (streamed too)', async () => {
    const r = await client.completions.create({ model: 'tiny', prompt: PROMPT, max_tokens: 6, seed: 3, n: 3 });
    const want = await model.generate([ids(PROMPT), ids(PROMPT), ids(PROMPT)], { maxTokens: 6, seed: 3 });
    expect(r.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    expect(r.choices.map((c) => c.text)).toEqual(want.map((w) => w.text));
    expect(new Set(r.choices.map((c) => c.text)).size).toBeGreaterThan(1);
    expect(r.usage!.completion_tokens).toBe(want.reduce((a, w) => a + w.tokens.length, 0));
    expect(r.usage!.prompt_tokens).toBe(ids(PROMPT).length);
    const s = await streamText({ max_tokens: 6, seed: 3, n: 3 });
    expect(s.texts).toEqual(want.map((w) => w.text));
    expect(s.finishes).toEqual(want.map((w) => finish(w.finishReason)));
  });

  test('stop strings (a string or an array) cut the text where generate() cuts it, finish_reason "stop"', async () => {
    // Seeded sampling: random weights decoded greedily repeat one token.
    const full = (await client.completions.create({ model: 'tiny', prompt: PROMPT, max_tokens: 24, seed: 7 })).choices[0].text;
    const stop = full.slice(12, 16);
    expect(stop.trim().length).toBeGreaterThan(0);
    const cut = full.slice(0, full.indexOf(stop));
    for (const s of [stop, ['zzzz-not-there', stop]]) {
      const r = await client.completions.create({ model: 'tiny', prompt: PROMPT, max_tokens: 24, seed: 7, stop: s });
      expect(r.choices[0].text).toBe(cut);
      expect(r.choices[0].finish_reason).toBe('stop');
      const st = await streamText({ max_tokens: 24, seed: 7, stop: s });
      expect(st.texts[0]).toBe(cut);
      expect(st.finishes[0]).toBe('stop');
    }
  });

  test('a stop string completed by the last allowed token is "stop" in both forms; without it "length"', async () => {
    const want = (await model.generate([ids(PROMPT)], { maxTokens: 16, seed: 8, ignoreEos: true }))[0];
    // Find a token k whose own text first appears where it starts: stopping on it ends generation at token k.
    let k = -1;
    let piece = '';
    for (let i = 3; i < 16 && k < 0; i++) {
      const before = codec.decode(want.tokens.slice(0, i));
      const p = codec.decode(want.tokens.slice(i, i + 1));
      if (p.trim().length > 0 && !p.includes('\uFFFD') && (before + p).indexOf(p) === before.length) {
        k = i + 1;
        piece = p;
      }
    }
    expect(k).toBeGreaterThan(0);
    const body = { model: 'tiny', prompt: PROMPT, seed: 8, max_tokens: k, ignore_eos: true };
    const lib = (await model.generate([ids(PROMPT)], { maxTokens: k, seed: 8, ignoreEos: true, stop: piece }))[0];
    expect(lib.finishReason).toBe('stop');
    expect(lib.tokens).toHaveLength(k);
    const r = (await postJson(`${server.url}/v1/completions`, { ...body, stop: piece })).json as OpenAI.Completion;
    expect(r.choices[0]).toMatchObject({ text: lib.text, finish_reason: 'stop' });
    const s = await streamText({ seed: 8, max_tokens: k, ignore_eos: true, stop: piece });
    expect(s.texts[0]).toBe(lib.text);
    expect(s.finishes[0]).toBe('stop');
    const plain = await streamText({ seed: 8, max_tokens: k, ignore_eos: true });
    expect(plain.finishes[0]).toBe('length');
  });

  test('a prompt as token ids, or an array of one prompt, equals the text prompt', async () => {
    const base = { model: 'tiny', max_tokens: 5, seed: 9 };
    const text = (await client.completions.create({ ...base, prompt: PROMPT })).choices[0].text;
    const tokenIds = Array.from(ids(PROMPT));
    for (const prompt of [tokenIds, [tokenIds], [PROMPT]]) {
      const r = await postJson(`${server.url}/v1/completions`, { ...base, prompt });
      expect(r.status).toBe(200);
      expect((r.json as OpenAI.Completion).choices[0].text).toBe(text);
    }
  });

  test('an empty prompt starts from the end-of-text token', async () => {
    const r = await client.completions.create({ model: 'tiny', prompt: '', max_tokens: 4, seed: 2 });
    const want = await model.generate([Int32Array.of(codec.eosToken!)], { maxTokens: 4, seed: 2 });
    expect(r.choices[0].text).toBe(want[0].text);
    expect(r.usage!.prompt_tokens).toBe(1);
  });

  test('GET /v1/models lists the served model; an unknown one is 404', async () => {
    const list = await client.models.list();
    expect(list.data.map((m) => m.id)).toEqual(['tiny']);
    expect((await client.models.retrieve('tiny')).id).toBe('tiny');
    await expect(client.models.retrieve('gpt-4')).rejects.toMatchObject({ status: 404 });
  });

  test('GET /health', async () => {
    const r = await request(`${server.url}/health`);
    expect(r.status).toBe(200);
    expect(r.json).toEqual({ status: 'ok' });
  });
});

/** Checks an error answer: status, and the error object with its type, param and code. */
function expectError(r: { status: number; json: unknown }, status: number, param: string | null, code: string | null, message?: RegExp): void {
  expect(r.status).toBe(status);
  const e = (r.json as { error: Record<string, unknown> }).error;
  expect(Object.keys(e).sort()).toEqual(['code', 'message', 'param', 'type']);
  expect(typeof e.message).toBe('string');
  expect(e.type).toBe(status === 429 ? 'rate_limit_error' : status >= 500 ? 'server_error' : 'invalid_request_error');
  expect(e.param).toBe(param);
  expect(e.code).toBe(code);
  if (message) expect(e.message).toMatch(message);
}

describe('errors: OpenAI error objects', () => {
  const url = () => `${server.url}/v1/completions`;

  test('bad JSON is 400', async () => {
    expectError(await postJson(url(), '{"prompt": "a",'), 400, null, 'invalid_json', /JSON/);
    expectError(await postJson(url(), '[1, 2]'), 400, null, null, /JSON object/);
  });

  test.each([
    [{ prompt: 'a', temperature: 'hot' }, 'temperature', /Expected a number between 0 and 2 for temperature but received "hot"/],
    [{ prompt: 'a', temperature: 3 }, 'temperature', /temperature/],
    [{ prompt: 'a', top_p: 0 }, 'top_p', /top_p/],
    [{ prompt: 'a', max_tokens: 0 }, 'max_tokens', /max_tokens/],
    [{ prompt: 'a', max_tokens: 2.5 }, 'max_tokens', /max_tokens/],
    [{ prompt: 'a', n: 100 }, 'n', /Expected an integer between 1 and 8 for n/],
    [{ prompt: 'a', seed: -1 }, 'seed', /seed/],
    [{ prompt: 'a', stop: [''] }, 'stop[0]', /stop\[0\]/],
    [{ prompt: 'a', stop: ['a', 'b', 'c', 'd', 'e'] }, 'stop', /at most 4/],
    [{ prompt: 'a', stop: 7 }, 'stop', /stop/],
    [{ prompt: 'a', stream: 'yes' }, 'stream', /stream/],
    [{ prompt: 'a', stream_options: { include_usage: true } }, 'stream_options', /stream is true/],
    [{}, 'prompt', /prompt/],
    [{ prompt: 12 }, 'prompt', /prompt/],
    [{ prompt: [] }, 'prompt', /prompt/],
    [{ prompt: ['a', 'b'] }, 'prompt', /one prompt/],
    [{ prompt: [1, 2, 99999] }, 'prompt[2]', /token id in \[0, 50257\)/],
    [{ prompt: [1, -2] }, 'prompt[1]', /prompt\[1\]/],
    [{ prompt: 'a', model: 7 }, 'model', /model/],
    [{ prompt: 'a', context_overflow: 'wrap' }, 'context_overflow', /"slide" or "stop"/],
  ])('a bad field is 400 naming it: %j', async (body, param, message) => {
    const r = await postJson(url(), body);
    expectError(r, 400, param, 'prompt' in body ? 'invalid_value' : 'missing_required_parameter', message);
  });

  test('unknown fields and unsupported OpenAI fields are 400 naming them', async () => {
    expectError(await postJson(url(), { prompt: 'a', foo: 1 }), 400, 'foo', 'unknown_parameter', /Unrecognized request argument supplied: foo/);
    for (const [field, value] of [
      ['logprobs', 2],
      ['logprobs', 0],
      ['echo', true],
      ['suffix', 'x'],
      ['presence_penalty', 0.5],
      ['frequency_penalty', 1],
      ['logit_bias', { '50256': -100 }],
      ['best_of', 3],
    ] as const)
      expectError(await postJson(url(), { prompt: 'a', [field]: value }), 400, field, 'unsupported_parameter', new RegExp(`${field} is not supported`));
    // The values that ask for nothing are accepted.
    const ok = await postJson(url(), { prompt: 'a', max_tokens: 1, logprobs: null, echo: false, presence_penalty: 0, frequency_penalty: 0, logit_bias: {}, best_of: 1, user: 'u' });
    expect(ok.status).toBe(200);
  });

  test('the openai client sees a bad field as a 400 BadRequestError', async () => {
    const e = await client.completions.create({ model: 'tiny', prompt: 'a', logprobs: 1 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(APIError);
    expect((e as APIError).status).toBe(400);
    expect((e as APIError).param).toBe('logprobs');
  });

  test('an unknown model is 404', async () => {
    expectError(await postJson(url(), { model: 'gpt-4', prompt: 'a' }), 404, 'model', 'model_not_found', /"gpt-4" does not exist/);
    const e = await client.completions.create({ model: 'davinci', prompt: 'a' }).catch((x: unknown) => x);
    expect((e as APIError).status).toBe(404);
  });

  test('a prompt longer than the context with context_overflow "stop" is 400; so is max_tokens past it', async () => {
    const long = Array.from({ length: 300 }, (_, i) => i % 1000);
    expectError(await postJson(url(), { prompt: long, context_overflow: 'stop' }), 400, 'prompt', 'context_length_exceeded', /context of 256 tokens/);
    expectError(await postJson(url(), { prompt: long.slice(0, 250), max_tokens: 10, context_overflow: 'stop' }), 400, 'max_tokens', 'context_length_exceeded', /at most 6/);
    // Without max_tokens the default shrinks to fit.
    const fit = await postJson(url(), { prompt: long.slice(0, 253), context_overflow: 'stop' });
    expect(fit.status).toBe(200);
    expect((fit.json as OpenAI.Completion).usage!.completion_tokens).toBeLessThanOrEqual(3);
  });

  test('a prompt longer than the context without "stop": cropped where the library slides (the default), else 400', async () => {
    const long = Array.from({ length: 300 }, (_, i) => (i * 37) % 1000);
    const slides = (GENERATE_OPTION_KEYS as readonly string[]).includes('contextOverflow');
    for (const extra of [{}, { context_overflow: 'slide' }]) {
      const r = await postJson(url(), { prompt: long, max_tokens: 3, seed: 1, ...extra });
      if (slides) {
        expect(r.status).toBe(200);
        const want = await model.generate([Int32Array.from(long)], { maxTokens: 3, seed: 1 });
        expect((r.json as OpenAI.Completion).choices[0].text).toBe(want[0].text);
      } else expectError(r, 400, 'prompt', 'context_length_exceeded', /context of 256 tokens/);
    }
  });

  test('a wrong Content-Type is 415; an unknown path 404; a wrong method 405 with Allow', async () => {
    const r = await request(url(), { method: 'POST', body: '{"prompt":"a"}', headers: { 'Content-Type': 'text/plain' } });
    expectError(r, 415, null, 'unsupported_media_type');
    expectError(await request(`${server.url}/v1/chat/completions`, { method: 'POST' }), 404, null, 'unknown_url', /Unknown path/);
    const m = await request(url());
    expectError(m, 405, null, 'method_not_allowed');
    expect(m.headers.get('allow')).toBe('POST');
  });

  test('a Host header that is not a loopback name is 403 on a loopback server', async () => {
    const r = await rawHttp(`${server.url}/v1/models`, { headers: { Host: 'attacker.example:80' } });
    expect(r.status).toBe(403);
    expect(JSON.parse(r.text).error.code).toBe('forbidden_host');
    const ok = await rawHttp(`${server.url}/v1/models`, { headers: { Host: `localhost:${server.port}` } });
    expect(ok.status).toBe(200);
  });
});

describe('limits: body size, API key, full queue', () => {
  test('a body over --max-body is 413, by Content-Length or while reading a chunked body', async () => {
    const s = await serve(model, { port: 0, maxBodyBytes: 1000 });
    try {
      const big = JSON.stringify({ prompt: 'x'.repeat(2000) });
      expectError(await postJson(`${s.url}/v1/completions`, big), 413, null, 'request_too_large', /at most 1000 bytes/);
      const chunked = await rawHttp(`${s.url}/v1/completions`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' },
        chunks: [Buffer.from('{"prompt": "'), Buffer.alloc(1500, 'y'), Buffer.from('"}')],
      });
      expect(chunked.status).toBe(413);
      expect(JSON.parse(chunked.text).error.code).toBe('request_too_large');
      // Under the limit is served.
      expect((await postJson(`${s.url}/v1/completions`, { prompt: 'x', max_tokens: 1 })).status).toBe(200);
    } finally {
      await s.close({ drainSeconds: 0 });
    }
  });

  test('with an API key: 401 without it or with a wrong one; the openai client with it is served; /health stays open', async () => {
    const s = await serve(model, { port: 0, name: 'tiny', apiKey: 'sekrit-123' });
    try {
      const none = await postJson(`${s.url}/v1/completions`, { prompt: 'a' });
      expectError(none, 401, null, 'invalid_api_key', /received none/);
      expect(none.headers.get('www-authenticate')).toBe('Bearer');
      expectError(await postJson(`${s.url}/v1/completions`, { prompt: 'a' }, { Authorization: 'Bearer nope' }), 401, null, 'invalid_api_key', /wrong/);
      expectError(await request(`${s.url}/metrics`), 401, null, 'invalid_api_key');
      expectError(await request(`${s.url}/v1/models`), 401, null, 'invalid_api_key');
      expect((await request(`${s.url}/health`)).status).toBe(200);
      const bad = new OpenAI({ apiKey: 'wrong', baseURL: `${s.url}/v1`, maxRetries: 0 });
      expect(((await bad.completions.create({ model: 'tiny', prompt: 'a' }).catch((x: unknown) => x)) as APIError).status).toBe(401);
      const good = new OpenAI({ apiKey: 'sekrit-123', baseURL: `${s.url}/v1`, maxRetries: 0 });
      const r = await good.completions.create({ model: 'tiny', prompt: 'a', max_tokens: 2 });
      expect(r.choices).toHaveLength(1);
      expect((await request(`${s.url}/metrics`, { headers: { Authorization: 'Bearer sekrit-123' } })).status).toBe(200);
    } finally {
      await s.close({ drainSeconds: 0 });
    }
  });

  test('a full queue is 429 with Retry-After; the slot frees when the running request ends', async () => {
    const s = await serve(model, { port: 0, name: 'tiny', maxBatch: 1, maxQueue: 0 });
    const ac = new AbortController();
    try {
      const long = await fetch(`${s.url}/v1/completions`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ prompt: 'a', max_tokens: 250, ignore_eos: true, stream: true }),
        signal: ac.signal,
      });
      const reader = long.body!.getReader();
      await reader.read(); // it holds the only slot now
      const r = await postJson(`${s.url}/v1/completions`, { prompt: 'b', max_tokens: 1 });
      expectError(r, 429, null, 'queue_full', /at capacity/);
      expect(r.headers.get('retry-after')).toBe('1');
      const c = new OpenAI({ apiKey: 'x', baseURL: `${s.url}/v1`, maxRetries: 0 });
      const e = (await c.completions.create({ model: 'tiny', prompt: 'b', max_tokens: 1 }).catch((x: unknown) => x)) as APIError;
      expect(e.status).toBe(429);
      ac.abort();
      await reader.cancel().catch(() => undefined);
      // Once the aborted stream has let go, requests are served again.
      let ok = 0;
      for (let i = 0; i < 200 && ok === 0; i++) {
        const again = await postJson(`${s.url}/v1/completions`, { prompt: 'b', max_tokens: 1 });
        if (again.status === 200) ok++;
        else await new Promise((res) => setTimeout(res, 20));
      }
      expect(ok).toBe(1);
    } finally {
      ac.abort();
      await s.close({ drainSeconds: 0 });
    }
  });
});

describe('serve options', () => {
  test('bad options are refused with the field named', async () => {
    await expect(serve(model, { port: 70000 })).rejects.toThrow(/Expected a non-negative integer <= 65535 for port/);
    await expect(serve(model, { maxN: 4, maxBatch: 2 })).rejects.toThrow(/maxN/);
    await expect(serve(model, { colour: 'red' } as never)).rejects.toThrow(/Unknown key "colour"/);
  });
});
