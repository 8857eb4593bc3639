/**
 * `gpt-engine generate` as a user runs it: a child process of the built CLI
 * (dist/, made by `npm run build`; GPT_ENGINE_CLI points elsewhere). Text
 * streams to stdout and stats go to stderr; --json is one document; the
 * output equals GPT.generate with the same seed; bad flags have clear
 * messages and write nothing to stdout.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { GPT } from '../../lib/model';

const root = path.resolve(__dirname, '..', '..');
const cli = process.env.GPT_ENGINE_CLI ?? path.join(root, 'dist', 'bin', 'gpt-engine.js');
let tmp: string;
let ckpt: string;

function run(args: string[]) {
  const r = spawnSync(process.execPath, [cli, 'generate', ...args], {
    encoding: 'utf8',
    env: { ...process.env, GPT_ENGINE_THREADS: '1' },
    timeout: 60000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(async () => {
  if (!fs.existsSync(cli)) throw new Error(`${cli} is missing: run npm run build before these tests`);
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gpte-gen-'));
  ckpt = path.join(tmp, 'ckpt');
  const m = await GPT.create(
    { n_layer: 2, n_head: 2, n_embd: 32, n_positions: 64, vocab_size: 256, layer_norm_epsilon: 1e-5, attention_pattern: 'alternating', attention_window: 8 },
    { device: 'cpu', seed: 1 },
  );
  await m.save(ckpt, { tokenizer: 'byte' });
  await m.dispose();
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('--json: one document whose output equals GPT.generate with the same seed', async () => {
  const r = run(['--checkpoint', ckpt, '--prompt', 'Call me Ishmael.', '--max-tokens', '20', '--seed', '3', '--temperature', '0.9', '--top-k', '50', '--json']);
  expect(r.code).toBe(0);
  const doc = JSON.parse(r.stdout);
  const m = await GPT.load(ckpt, { device: 'cpu' });
  try {
    const want = await m.generate('Call me Ishmael.', { maxTokens: 20, seed: 3, temperature: 0.9, topK: 50 });
    expect(doc.tokens).toEqual(want.tokens);
    expect(doc.text).toBe(want.text);
  } finally {
    await m.dispose();
  }
  expect(doc.stats.generatedTokens).toBe(20);
  expect(doc.finish_reason).toBe('length');
  expect(r.stderr).toMatch(/time to first token [\d.]+ ms; prefill [\d.]+ tokens\/s, decode [\d.]+ tokens\/s/);
});

test('text streams to stdout, stats to stderr; --prompt-file; --stop', () => {
  const pf = path.join(tmp, 'prompt.txt');
  fs.writeFileSync(pf, 'Call me Ishmael.');
  const a = run(['--checkpoint', ckpt, '--prompt-file', pf, '--max-tokens', '20', '--seed', '3', '--temperature', '0.9', '--top-k', '50', '--json']);
  const doc = JSON.parse(a.stdout);
  const b = run(['--checkpoint', ckpt, '--prompt-file', pf, '--max-tokens', '20', '--seed', '3', '--temperature', '0.9', '--top-k', '50']);
  expect(b.code).toBe(0);
  expect(b.stdout).toBe(doc.text + '\n');
  expect(b.stderr).toMatch(/generated 20 tokens/);
  // stop at a character of the free-running text: the output ends before it
  const stop = [...doc.text].find((ch, i) => i > 2 && ch.trim().length > 0 && ch !== '\uFFFD');
  if (stop) {
    const c = run(['--checkpoint', ckpt, '--prompt-file', pf, '--max-tokens', '20', '--seed', '3', '--temperature', '0.9', '--top-k', '50', '--stop', stop, '--json']);
    const d = JSON.parse(c.stdout);
    expect(d.text).toBe(doc.text.slice(0, doc.text.indexOf(stop)));
    expect(d.finish_reason).toBe('stop');
  }
});

test('bad flags: clear messages, nothing on stdout', () => {
  const cases: [string[], RegExp][] = [
    [['--checkpoint', ckpt], /Expected exactly one of --prompt or --prompt-file but received neither/],
    [['--checkpoint', ckpt, '--prompt', 'a', '--prompt-file', 'b'], /received both/],
    [['--checkpoint', ckpt, '--prompt', 'a', '--top-p', '2'], /Expected a number > 0 and <= 1 for --top-p but received "2"/],
    [['--checkpoint', ckpt, '--prompt', 'a', '--max-tokens', '0'], /--max-tokens/],
    [['--checkpoint', ckpt, '--prompt', 'x'.repeat(70), '--context-overflow', 'stop'], /at most n_positions = 64 tokens but received one of 70 tokens: it is longer than the model's context/],
    [['--checkpoint', ckpt, '--prompt', 'a', '--context-overflow', 'wrap'], /Expected one of slide, stop for --context-overflow but received "wrap"/],
    [['--checkpoint', path.join(tmp, 'nope'), '--prompt', 'a'], /nope/],
  ];
  for (const [args, msg] of cases) {
    const r = run(args);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(msg);
    expect(r.stdout).toBe('');
  }
});

test('--max-tokens 600 on a context of 64 slides past it; --context-overflow stop ends there and says so', () => {
  const r = run(['--checkpoint', ckpt, '--prompt', 'Call me Ishmael.', '--max-tokens', '600', '--seed', '1', '--ignore-eos', '--json']);
  expect(r.code).toBe(0);
  const doc = JSON.parse(r.stdout);
  expect(doc.tokens).toHaveLength(600);
  expect(doc.finish_reason).toBe('length');
  // the cache fills when token 48 is fed; then it is rebuilt from 32 tokens
  // and refills every 33 tokens: rebuilds at tokens 48, 81, ..., 576 (the
  // last token, 599, is never fed)
  expect(doc.stats.contextSlides).toBe(17);
  const s = run(['--checkpoint', ckpt, '--prompt', 'Call me Ishmael.', '--max-tokens', '600', '--seed', '1', '--ignore-eos', '--context-overflow', 'stop', '--json']);
  expect(s.code).toBe(0);
  const sd = JSON.parse(s.stdout);
  expect(sd.tokens).toEqual(doc.tokens.slice(0, 64 - 16 + 1));
  expect(sd.finish_reason).toBe('context');
  expect(sd.stop_reason).toMatch(/context of n_positions = 64 tokens/);
  expect(s.stderr).toMatch(/finished: context \(reached the model's context/);
});
