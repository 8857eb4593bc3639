/**
 * `gpt-engine train | prepare | eval` as a user runs them: child processes of
 * the built CLI (dist/, made by `npm run build`, which CI runs before the
 * tests). SIGINT mid-run leaves a loadable checkpoint and exits 0; --json is
 * one document; bad flags have clear messages and write nothing.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { GPT } from '../../lib/model';

const root = path.resolve(__dirname, '..', '..');
const cli = path.join(root, 'dist', 'bin', 'gpt-engine.js');
let tmp: string;
let data: string;
let cfg: string;

function run(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [cli, ...args], {
    encoding: 'utf8',
    env: { ...process.env, GPT_ENGINE_CACHE: path.join(tmp, 'cache'), GPT_ENGINE_THREADS: '1', ...env },
    timeout: 120000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(() => {
  if (!fs.existsSync(cli)) throw new Error(`${cli} is missing: run npm run build before these tests`);
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gpte-cli-'));
  fs.writeFileSync(path.join(tmp, 'a.txt'), 'To be, or not to be, that is the question:\nWhether tis nobler in the mind to suffer\n'.repeat(30));
  fs.mkdirSync(path.join(tmp, 'more'));
  fs.writeFileSync(path.join(tmp, 'more', 'b.txt'), 'The slings and arrows of outrageous fortune,\nOr to take arms against a sea of troubles\n'.repeat(30));
  data = path.join(tmp, 'data');
  cfg = path.join(tmp, 'model.json');
  fs.writeFileSync(cfg, JSON.stringify({ n_layer: 1, n_head: 2, n_embd: 32, n_positions: 32, batch: 4, seq: 32, lr: 0.01, eval_windows: 4, sample_tokens: 8, device: 'cpu' }));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('prepare: files and folders, progress on stderr, meta on stdout with --json', () => {
  const r = run(['prepare', path.join(tmp, 'a.txt'), path.join(tmp, 'more'), '--out', data, '--tokenizer', 'byte', '--val-fraction', '0.1', '--json']);
  expect(r.stderr).toMatch(/100%/);
  expect(r.code).toBe(0);
  const meta = JSON.parse(r.stdout);
  expect(meta.documents).toBe(2);
  expect(meta.tokenizer).toBe('byte');
  expect(r.stderr).toContain(`wrote ${path.join(data, 'train.bin')}`);
});

test('train --json: one document; stop-after and resume; eval', () => {
  const out = path.join(tmp, 'run');
  const a = run(['train', '--config', cfg, '--data', data, '--out', out, '--steps', '6', '--stop-after', '3', '--eval-every', '3', '--json']);
  expect(a.code).toBe(0);
  const sa = JSON.parse(a.stdout);
  expect(sa.step).toBe(3);
  expect(sa.finished).toBe(false);
  expect(sa.checkpoint).toBe(path.join(out, 'checkpoints', 'step-3'));
  expect(a.stderr).toMatch(/effective config: \{"preset":"tiny","model":\{"n_layer":1/);
  expect(a.stderr).toContain(`resume with: gpt-engine train --resume ${out}`);
  expect(a.stderr).toMatch(/^step 1\/6 {2}loss/m); // plain lines, no bar, when stderr is not a TTY
  expect(a.stderr).not.toContain('\r');
  const b = run(['train', '--resume', out, '--json']);
  expect(b.code).toBe(0);
  const sb = JSON.parse(b.stdout);
  expect(sb.step).toBe(6);
  expect(sb.finished).toBe(true);
  expect(fs.readFileSync(path.join(out, 'loss.svg'), 'utf8')).toMatch(/^<svg /);
  expect(typeof sb.val_loss).toBe('number');
  expect(typeof sb.unigram_entropy).toBe('number');
  expect(b.stderr).toMatch(/unigram entropy of the corpus/);
  // the gap to the unigram entropy is a distance with its side named, never a negative "below"
  const gap = b.stderr.match(/nats\/token \((\d+\.\d+) (below|above)\)/);
  expect(gap).not.toBeNull();
  expect(gap![2]).toBe(sb.val_loss <= sb.unigram_entropy ? 'below' : 'above');
  expect(Number(gap![1])).toBeCloseTo(Math.abs(sb.unigram_entropy - sb.val_loss), 2);
  // across processes too: the two halves give the losses of one uninterrupted run, bitwise
  const full = run(['train', '--config', cfg, '--data', data, '--out', path.join(tmp, 'full'), '--steps', '6', '--eval-every', '3', '--json']);
  expect([...sa.losses, ...sb.losses]).toEqual(JSON.parse(full.stdout).losses);
  expect(sb.val_loss).toBe(JSON.parse(full.stdout).val_loss);
  const e = run(['eval', '--checkpoint', out, '--json']);
  expect(e.code).toBe(0);
  const se = JSON.parse(e.stdout);
  expect(se.checkpoint).toBe(path.join(out, 'checkpoints', 'step-6'));
  expect(se.loss).toBeCloseTo(Math.log(se.perplexity), 6);
  const t = run(['eval', '--checkpoint', out, '--data', data]);
  expect(t.stdout).toMatch(/^loss: \d+\.\d{4} nats\/token$/m);
  expect(t.stdout).toMatch(/^perplexity: /m);
});

test('SIGINT finishes the step, writes a loadable checkpoint and exits 0; the run resumes', async () => {
  const out = path.join(tmp, 'sigint');
  const child = spawn(process.execPath, [cli, 'train', '--config', cfg, '--data', data, '--out', out, '--steps', '100000', '--eval-every', '100000', '--checkpoint-every', '100000'], {
    env: { ...process.env, GPT_ENGINE_THREADS: '1' },
  });
  let stderr = '';
  let sent = false;
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
    if (!sent && /step 1\/100000/.test(stderr)) {
      sent = true;
      child.kill('SIGINT');
    }
  });
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  expect(stderr).toMatch(/SIGINT: finishing the current step, then writing a checkpoint/);
  expect(code).toBe(0);
  const m = /interrupted at step (\d+); checkpoint written to (\S+)/.exec(stderr);
  expect(m).not.toBeNull();
  const model = await GPT.load(m![2]);
  expect(model.loadedState?.step).toBe(Number(m![1]));
  await model.dispose();
  const r = run(['train', '--resume', out, '--stop-after', '2', '--json']);
  expect(r.code).toBe(0);
  expect(JSON.parse(r.stdout).step).toBe(Number(m![1]) + 2);
});

test('bad flags: clear messages, nothing written', () => {
  const out = path.join(tmp, 'never');
  const cases: [string[], RegExp][] = [
    [['train', '--steps', '0', '--out', out], /Expected an integer >= 1 for --steps but received "0"/],
    [['train', '--lr', 'fast', '--out', out], /Expected a number > 0 for --lr but received "fast"/],
    [['train', '--preset', 'tinyy', '--out', out, '--data', data], /for preset but received "tinyy" \(string\) \(did you mean "tiny"\?\)/],
    [['train', '--device', 'tpu', '--out', out], /Expected one of auto, cpu, cuda for --device but received "tpu"/],
    [['train', '--config', path.join(tmp, 'nope.json'), '--out', out], /Cannot read --config .*nope.json/],
    [['train', '--data', path.join(tmp, 'nodata'), '--out', out], /Missing data folder .*nodata/],
    [['train', '--config', cfg, '--data', data, '--batch', '4', '--seq', '32', '--batch-tokens', '100', '--out', out], /Expected a multiple of batch \* seq = 128 for batch_tokens but received 100/],
    [['train', '--resume', path.join(tmp, 'run'), '--preset', 'small'], /Expected no --preset or --config with --resume/],
    [['train', '--bogus'], /unknown option '--bogus'/],
    [['prepare', path.join(tmp, 'missing.txt'), '--out', out], /Missing input .*missing.txt: no such file or folder/],
    [['prepare', path.join(tmp, 'a.txt'), '--out', out, '--tokenizer', 'bpe'], /Expected one of gpt2, byte for --tokenizer but received "bpe"/],
    [['eval'], /required option '--checkpoint <dir>' not specified/],
  ];
  fs.writeFileSync(path.join(tmp, 'bad.json'), JSON.stringify({ n_layers: 2 }));
  cases.push([['train', '--config', path.join(tmp, 'bad.json'), '--out', out], /Unknown key "n_layers" in .*bad.json \(did you mean "n_layer"\?\)/]);
  for (const [args, re] of cases) {
    const r = run(args);
    expect({ args, code: r.code, stderr: r.stderr }).toEqual({ args, code: 1, stderr: expect.stringMatching(re) });
    expect(r.stderr).not.toMatch(/unexpected error|    at /);
  }
  expect(fs.existsSync(out)).toBe(false);
});
