/**
 * `gpt-engine serve` as a user runs it (the built CLI in dist/): a
 * checkpoint folder served under its folder name, the URL printed on stdout,
 * the API key from $GPT_ENGINE_API_KEY, Ctrl-C draining running requests
 * (a second Ctrl-C aborting them) and exiting 0, and bad flags refused
 * before anything listens.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { GPT } from '../../lib/model';
import { distFile, runNode } from '../helpers/child-util';
import { events, metric, postJson, request, startServeCli, waitFor } from '../helpers/serve-util';

let tmp: string;
let ckpt: string;

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gpte-serve-'));
  ckpt = path.join(tmp, 'my-model');
  const m = await GPT.create('tiny', { device: 'cpu', seed: 2 });
  await m.save(ckpt, { tokenizer: 'gpt2' });
  await m.dispose();
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('--checkpoint: served under the folder name, equal to generate() on the loaded model; SIGINT with a stream running drains it and exits 0', async () => {
  // --prefill-chunk 3: the prompt (7 tokens) is prefilled in chunks, as GPT.load with prefillChunk 3 does
  const s = await startServeCli(['--checkpoint', ckpt, '--max-batch', '2', '--prefill-chunk', '3']);
  try {
    expect(s.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const models = (await request(`${s.url}/v1/models`)).json as { data: { id: string }[] };
    expect(models.data.map((d) => d.id)).toEqual(['my-model']);
    const prompt = 'Hello there, how are you?';
    const r = await postJson(`${s.url}/v1/completions`, { model: 'my-model', prompt, max_tokens: 6, seed: 4 });
    expect(r.status).toBe(200);
    const m = await GPT.load(ckpt, { device: 'cpu', prefillChunk: 3 });
    expect(m.textCodec().encode(prompt).length).toBeGreaterThan(3);
    const want = await m.generate(prompt, { maxTokens: 6, seed: 4 });
    await m.dispose();
    expect(s.stderr()).toMatch(/max batch 2, prefill chunk 3,/);
    expect((r.json as { choices: { text: string }[] }).choices[0].text).toBe(want.text);
    expect(metric((await request(`${s.url}/metrics`)).text, 'gpt_engine_max_batch')).toBe(2);

    const streamed = postJson(`${s.url}/v1/completions`, { prompt: 'x', max_tokens: 40, ignore_eos: true, stream: true });
    await waitFor(async () => (await request(`${s.url}/metrics`)).text, (t) => metric(t, 'gpt_engine_batch_size') === 1);
    s.child.kill('SIGINT');
    const done = await streamed;
    expect(events(done.text).pop()).toBe('[DONE]');
    const exit = await s.done;
    expect({ code: exit.code, signal: exit.signal }).toEqual({ code: 0, signal: null });
    expect(exit.stderr).toMatch(/SIGINT: draining \(up to 30 s/);
    expect(exit.stdout.trim()).toBe(s.url);
  } finally {
    s.child.kill('SIGKILL');
  }
}, 120000);

test('a second SIGINT aborts what runs: the stream ends with a shutting_down error event, exit 0', async () => {
  const s = await startServeCli(['--model', 'tiny', '--drain-seconds', '600']);
  try {
    const streamed = postJson(`${s.url}/v1/completions`, { prompt: 'x', max_tokens: 250, ignore_eos: true, stream: true });
    await waitFor(async () => (await request(`${s.url}/metrics`)).text, (t) => metric(t, 'gpt_engine_batch_size') === 1);
    s.child.kill('SIGINT');
    await waitFor(async () => s.stderr(), (t) => t.includes('draining'));
    s.child.kill('SIGINT');
    const ev = events((await streamed).text);
    expect(JSON.parse(ev[ev.length - 1]).error.code).toBe('shutting_down');
    const exit = await s.done;
    expect(exit.code).toBe(0);
    expect(exit.stderr).toMatch(/aborting running requests/);
  } finally {
    s.child.kill('SIGKILL');
  }
}, 120000);

test('$GPT_ENGINE_API_KEY requires the key', async () => {
  const s = await startServeCli(['--model', 'tiny'], { GPT_ENGINE_API_KEY: 'k-42' });
  try {
    expect((await postJson(`${s.url}/v1/completions`, { prompt: 'a', max_tokens: 1 })).status).toBe(401);
    expect((await postJson(`${s.url}/v1/completions`, { prompt: 'a', max_tokens: 1 }, { Authorization: 'Bearer k-42' })).status).toBe(200);
    expect(s.stderr()).toMatch(/API key required/);
  } finally {
    s.child.kill('SIGTERM');
    expect((await s.done).code).toBe(0);
  }
}, 120000);

test.each([
  [[], /Expected exactly one of --checkpoint or --model but received neither/],
  [['--model', 'tiny', '--checkpoint', '/nowhere'], /received both/],
  [['--model', 'tinyy'], /Expected one of .* for preset but received "tinyy".*did you mean "tiny"/],
  [['--model', 'tiny', '--port', '70000'], /--port/],
  [['--model', 'tiny', '--max-batch', '0'], /--max-batch/],
  [['--model', 'tiny', '--max-batch', '2', '--max-n', '3'], /--max-n/],
  [['--model', 'tiny', '--prefill-chunk', '0'], /--prefill-chunk/],
  [['--model', 'tiny', '--prefill-chunk', 'many'], /--prefill-chunk/],
  [['--model', 'tiny', '--drain-seconds', '-1'], /--drain-seconds/],
  [['--checkpoint', '/nowhere/at/all'], /nowhere/],
])('bad flags are refused before listening: %j', async (args, message) => {
  // --port 0 where the case does not set it: if a flag were accepted, nothing would collide.
  const port = args.includes('--port') ? [] : ['--port', '0'];
  const r = await runNode([distFile('bin/gpt-engine.js'), 'serve', ...args, ...port], { timeoutMs: 60000 });
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(message);
  expect(r.stdout).toBe('');
}, 60000);

test('--help says what --max-batch sets', async () => {
  const r = await runNode([distFile('bin/gpt-engine.js'), 'serve', '--help']);
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(/--max-batch <n>.*decoder's batch/);
  expect(r.stdout).toMatch(/--prefill-chunk <n> +prompts longer than this many tokens are prefilled in\s+chunks/);
  expect(r.stdout).toMatch(/--api-key/);
});
