/**
 * `gpt-engine prepare` as a user runs it (the built CLI in dist/, made by
 * `npm run build`): text, JSON Lines and gzip of both in one folder; the same
 * files for --workers 1 and 2; --json with the throughput; --text-field and
 * --skip-bad; bad input named by FILE:LINE with nothing written; and `train`
 * on the result.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';

const root = path.resolve(__dirname, '..', '..');
const cli = path.join(root, 'dist', 'bin', 'gpt-engine.js');
let tmp: string;
let inputs: string;

function run(args: string[]) {
  const r = spawnSync(process.execPath, [cli, ...args], {
    encoding: 'utf8',
    env: { ...process.env, GPT_ENGINE_CACHE: path.join(tmp, 'cache'), GPT_ENGINE_THREADS: '1' },
    timeout: 120000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const read = (dir: string) => ['train.bin', 'val.bin', 'meta.json'].map((f) => fs.readFileSync(path.join(dir, f)));

beforeAll(() => {
  if (!fs.existsSync(cli)) throw new Error(`${cli} is missing: run npm run build before these tests`);
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gpte-prepcli-'));
  inputs = path.join(tmp, 'in');
  fs.mkdirSync(inputs);
  const text = 'Call me Ishmael. Some years ago, never mind how long precisely,\r\nhaving little or no money in my purse — 日本語 😀\n';
  fs.writeFileSync(path.join(inputs, 'a.txt'), text.repeat(40));
  fs.writeFileSync(path.join(inputs, 'b.txt.gz'), zlib.gzipSync(text.repeat(30) + '<|endoftext|>' + 'x'.repeat(3000)));
  const jsonl = Array.from({ length: 30 }, (_, i) => JSON.stringify({ id: i, text: `Record ${i}: ${text.repeat(1 + (i % 3))}` })).join('\n');
  fs.writeFileSync(path.join(inputs, 'c.jsonl'), jsonl);
  fs.writeFileSync(path.join(inputs, 'd.jsonl.gz'), zlib.gzipSync(jsonl));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('--workers 1 and 2 write the same files; --json reports the throughput; progress on stderr', () => {
  const one = run(['prepare', inputs, '--out', path.join(tmp, 'w1'), '--workers', '1', '--json']);
  expect(one.code).toBe(0);
  const two = run(['prepare', inputs, '--out', path.join(tmp, 'w2'), '--workers', '2', '--json']);
  expect(two.code).toBe(0);
  expect(read(path.join(tmp, 'w2'))).toEqual(read(path.join(tmp, 'w1')));
  const r1 = JSON.parse(one.stdout);
  const r2 = JSON.parse(two.stdout);
  expect(r1.documents).toBe(62);
  expect(r1.sources.map((s: { format: string; documents: number }) => `${s.format}:${s.documents}`)).toEqual(['text:1', 'text.gz:1', 'jsonl:30', 'jsonl.gz:30']);
  // workers start as work arrives: this small input is one chunk of work, for one worker
  expect([r1.throughput.workers, r1.throughput.workers_started, r2.throughput.workers, r2.throughput.workers_started]).toEqual([1, 0, 2, 1]);
  for (const r of [r1, r2]) {
    expect(r.throughput.bytes_per_second).toBeGreaterThan(0);
    expect(r.throughput.tokens_per_second).toBeGreaterThan(0);
    expect(r.throughput.seconds).toBeGreaterThan(0);
  }
  expect(two.stderr).toMatch(/^check .* 100% .* MB\/s/m);
  expect(two.stderr).toMatch(/^tokenize .* 100% .* MB\/s {2}ETA 0:00 .* tokens/m);
  expect(two.stderr).toMatch(/62 document\(s\), .* tokens \(gpt2\)/);
  expect(two.stderr).toMatch(/MB\/s, [\d,]+ tokens\/s, 2 worker\(s\)/);
});

test('--text-field, --skip-bad, and bad input named by FILE:LINE with nothing written', () => {
  const dir = path.join(tmp, 'bad');
  fs.mkdirSync(dir);
  const file = path.join(dir, 'r.jsonl');
  fs.writeFileSync(file, ['{"body": "first record, long enough to split\\nin two"}', '{"body": 7}', '{"body": "third\\nrecord here"}', '{"body": "fourth record\\nwith more words"}'].join('\n'));
  const out = path.join(tmp, 'bad-out');
  const missing = run(['prepare', file, '--out', out]);
  expect(missing.code).not.toBe(0);
  expect(missing.stderr).toContain(`gpt-engine: error: ${file}:1: the record has no "text" field (it has "body"; choose the field with --text-field)`);
  const notString = run(['prepare', file, '--out', out, '--text-field', 'body', '--tokenizer', 'byte']);
  expect(notString.stderr).toContain(`${file}:2: expected a string in field "body" but found 7 (number) (pass --skip-bad to skip such input and count it)`);
  expect(fs.existsSync(out)).toBe(false);
  const skipped = run(['prepare', file, '--out', out, '--text-field', 'body', '--tokenizer', 'byte', '--skip-bad', '--json']);
  expect(skipped.code).toBe(0);
  expect(skipped.stderr).toContain(`skipped 1 bad input(s): 1 not string; the first:\n  ${file}:2: expected a string`);
  const meta = JSON.parse(fs.readFileSync(path.join(out, 'meta.json'), 'utf8'));
  expect([meta.documents, meta.skipped.total, meta.skipped.not_string, meta.text_field]).toEqual([3, 1, 1, 'body']);
  expect(JSON.parse(skipped.stdout).skipped).toEqual(meta.skipped);
  for (const [args, message] of [
    [['--workers', '0'], 'Expected an integer between 1 and 1024 for --workers but received "0"'],
    [['--text-field', ''], 'Expected a field name for --text-field but received ""'],
  ] as [string[], string][]) {
    const r = run(['prepare', file, '--out', path.join(tmp, 'never'), ...args]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(message);
  }
  expect(fs.existsSync(path.join(tmp, 'never'))).toBe(false);
});

test('train on data prepared from .jsonl, .txt.gz and .jsonl.gz', () => {
  const data = path.join(tmp, 'byte');
  expect(run(['prepare', inputs, '--out', data, '--tokenizer', 'byte']).code).toBe(0);
  const cfg = path.join(tmp, 'model.json');
  fs.writeFileSync(cfg, JSON.stringify({ n_layer: 1, n_head: 2, n_embd: 32, n_positions: 32, batch: 4, seq: 32, lr: 0.01, eval_windows: 4, sample_tokens: 8, device: 'cpu' }));
  const r = run(['train', '--config', cfg, '--data', data, '--out', path.join(tmp, 'run'), '--steps', '4', '--eval-every', '4', '--json']);
  expect(r.code).toBe(0);
  const res = JSON.parse(r.stdout);
  expect([res.step, res.finished]).toEqual([4, true]);
  expect(Number.isFinite(res.val_loss)).toBe(true);
  expect(res.val_loss).toBeLessThan(Math.log(256));
});
