/**
 * Faults during training, on the built CLI in child processes
 * (dist/, made by `npm run build`, which CI runs before the tests):
 *
 * - kill -9 at seeded random moments of `gpt-engine train` with a checkpoint
 *   every step (so kills land in checkpoint writes, `latest` updates, pruning,
 *   plotting and metrics writes), and some kills aimed at the moment a
 *   checkpoint's temporary folder exists; then `--resume`: the newest complete
 *   checkpoint loads, the run continues from its step with the same losses as
 *   a run that was never interrupted (bitwise: the CPU is deterministic), and
 *   metrics.jsonl holds every step once;
 * - a checkpoint write that fails like a full disk (an injected ENOSPC, see
 *   test/helpers/child-fail-write.js): the previous checkpoint survives and
 *   loads, nothing half-written is left, and the error says what failed;
 * - a learning rate that blows the weights up: the run stops at the step
 *   where the loss turns non-finite, naming the last good checkpoint.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { readCheckpoint } from '../../lib/checkpoint';
import { Rng } from '../../lib/rng';
import { CLI, describeExit, distFile, runNode, spawnNode } from '../helpers/child-util';

let tmp: string;
let data: string;
let cfg: string;
const env = () => ({ GPT_ENGINE_CACHE: path.join(tmp, 'cache'), GPT_ENGINE_THREADS: '1' });
const STEPS = '10000'; // the schedule's horizon; every invocation stops long before

function train(args: string[], extraEnv: Record<string, string> = {}, pre: string[] = []) {
  return runNode([...pre, CLI, 'train', ...args], { env: { ...env(), ...extraEnv }, timeoutMs: 120000 });
}

interface Summary {
  step: number;
  losses: number[];
  checkpoint: string | null;
  config: { resumed_from: string | null };
}

function summary(stdout: string): Summary {
  return JSON.parse(stdout) as Summary;
}

/** metrics.jsonl as { step, loss } in file order; every line must be complete JSON. */
function metrics(run: string): { step: number; loss: number }[] {
  const text = fs.readFileSync(path.join(run, 'metrics.jsonl'), 'utf8');
  expect(text.endsWith('\n')).toBe(true);
  return text
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as { step: number; loss: number });
}

/** step-N folders of a run that load completely (weights, optimizer, state), by our own reading, newest last. */
async function loadableCheckpoints(run: string): Promise<number[]> {
  const dir = path.join(run, 'checkpoints');
  if (!fs.existsSync(dir)) return [];
  const steps: number[] = [];
  for (const n of fs.readdirSync(dir)) {
    const m = /^step-(\d+)$/.exec(n);
    if (!m) continue;
    try {
      const c = await readCheckpoint(path.join(dir, n), { optimizer: true });
      if (c.optimizer && c.state && (c.state as { step?: number }).step === Number(m[1])) steps.push(Number(m[1]));
    } catch {
      /* incomplete: not a candidate */
    }
  }
  return steps.sort((a, b) => a - b);
}

function leftovers(run: string): string[] {
  const dir = path.join(run, 'checkpoints');
  return fs.existsSync(dir) ? fs.readdirSync(dir).filter((n) => n.startsWith('.')) : [];
}

beforeAll(async () => {
  distFile('bin/gpt-engine.js');
  distFile('lib/trainer.js');
  distFile('lib/safetensors.js');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gpte-faults-'));
  fs.writeFileSync(path.join(tmp, 'a.txt'), 'It was the best of times, it was the worst of times,\nit was the age of wisdom, it was the age of foolishness,\n'.repeat(40));
  data = path.join(tmp, 'data');
  const p = await runNode([CLI, 'prepare', path.join(tmp, 'a.txt'), '--out', data, '--tokenizer', 'byte'], { env: env(), timeoutMs: 60000 });
  if (p.code !== 0) throw new Error(`prepare failed: ${describeExit(p)}`);
  cfg = path.join(tmp, 'model.json');
  fs.writeFileSync(
    cfg,
    JSON.stringify({
      n_layer: 1,
      n_head: 2,
      n_embd: 32,
      n_positions: 32,
      batch: 4,
      seq: 32,
      lr: 0.01,
      eval_every: 100000,
      eval_windows: 2,
      sample_tokens: 0,
      checkpoint_every: 1,
      keep: 2,
      device: 'cpu',
    }),
  );
});
afterAll(() => tmp && fs.rmSync(tmp, { recursive: true, force: true }));

interface Trial {
  name: string;
  /** ms after the first checkpoint; or { tmpOf: N }: as soon as the temporary folder of checkpoint step-N exists */
  when: number | { tmpOf: number };
}

interface TrialResult {
  trial: Trial;
  run: string;
  /** temporary or set-aside folders the killed process left */
  leftBehind: string[];
  expected: number;
  resumed: Summary;
  stderr: string;
}

async function waitFor(cond: () => boolean, timeoutMs: number, everyMs = 2): Promise<boolean> {
  const t0 = Date.now();
  while (Date.now() - t0 < timeoutMs) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  return false;
}

async function killTrial(trial: Trial, i: number): Promise<TrialResult> {
  const run = path.join(tmp, `run-${i}`);
  const s = spawnNode([CLI, 'train', '--config', cfg, '--data', data, '--out', run, '--steps', STEPS], { env: env(), timeoutMs: 120000 });
  const ckdir = path.join(run, 'checkpoints');
  const started = await waitFor(() => fs.existsSync(path.join(run, 'latest')), 60000, 5);
  if (!started) {
    s.child.kill('SIGKILL');
    throw new Error(`trial ${trial.name}: no checkpoint within 60 s: ${describeExit(await s.done)}`);
  }
  const when = trial.when;
  if (typeof when === 'number') await new Promise((r) => setTimeout(r, when));
  else
    await waitFor(() => {
      try {
        return fs.readdirSync(ckdir).some((n) => n.startsWith(`.step-${when.tmpOf}.tmp-`));
      } catch {
        return false;
      }
    }, 30000, 1);
  s.child.kill('SIGKILL');
  const killed = await s.done;
  if (killed.signal !== 'SIGKILL') throw new Error(`trial ${trial.name}: the run ended before the kill: ${describeExit(killed)}`);
  const leftBehind = leftovers(run);

  // The newest complete checkpoint, by our own reading. `latest` is written
  // after the checkpoint folder is renamed into place: when the kill fell
  // between the two, `latest` still names the previous (complete) one, which
  // is the run's committed state.
  const loadable = await loadableCheckpoints(run);
  expect(loadable.length).toBeGreaterThan(0);
  const latestName = fs.readFileSync(path.join(run, 'latest'), 'utf8').trim();
  const latestStep = Number(/^step-(\d+)$/.exec(latestName)?.[1] ?? NaN);
  const expected = loadable.includes(latestStep) ? latestStep : loadable[loadable.length - 1];
  expect(expected).toBeGreaterThanOrEqual(loadable[loadable.length - 1] - 1);

  const r = await train(['--resume', run, '--stop-after', '2', '--json']);
  if (r.code !== 0) throw new Error(`trial ${trial.name}: --resume failed after a kill at step ~${expected}: ${describeExit(r)}`);
  return { trial, run, leftBehind, expected, resumed: summary(r.stdout), stderr: r.stderr };
}

test('kill -9 at random moments, then --resume: the newest complete checkpoint loads and the run continues exactly', async () => {
  const rng = new Rng(20240610);
  const trials: Trial[] = [
    ...Array.from({ length: 5 }, (_, i) => ({ name: `random-${i}`, when: Math.floor(rng.nextFloat() * 3000) })),
    { name: 'writing-step-2', when: { tmpOf: 2 } },
    { name: 'writing-step-3', when: { tmpOf: 3 } },
    { name: 'writing-step-5', when: { tmpOf: 5 } },
  ];
  // Two at a time (each child uses one thread).
  const results: TrialResult[] = [];
  for (let i = 0; i < trials.length; i += 2) results.push(...(await Promise.all(trials.slice(i, i + 2).map((t, j) => killTrial(t, i + j)))));

  // The same run, never interrupted, far enough for every resumed one.
  const far = Math.max(...results.map((r) => r.expected)) + 2;
  const refRun = path.join(tmp, 'ref');
  const ref = await train(['--config', cfg, '--data', data, '--out', refRun, '--steps', STEPS, '--stop-after', String(far), '--checkpoint-every', '100000', '--json']);
  if (ref.code !== 0) throw new Error(`reference run failed: ${describeExit(ref)}`);
  const refLosses = summary(ref.stdout).losses;
  expect(refLosses).toHaveLength(far);

  for (const r of results) {
    const where = `${r.trial.name} (checkpoint step-${r.expected})`;
    expect({ where, from: r.resumed.config.resumed_from }).toEqual({ where, from: path.join(r.run, 'checkpoints', `step-${r.expected}`) });
    expect({ where, step: r.resumed.step }).toEqual({ where, step: r.expected + 2 });
    // Bitwise the losses of the uninterrupted run at those steps.
    expect({ where, losses: r.resumed.losses }).toEqual({ where, losses: refLosses.slice(r.expected, r.expected + 2) });
    // metrics.jsonl: whole lines, each step once, in order, the same losses as the uninterrupted run.
    const m = metrics(r.run);
    expect({ where, steps: m.map((x) => x.step) }).toEqual({ where, steps: Array.from({ length: r.expected + 2 }, (_, k) => k + 1) });
    expect({ where, losses: m.map((x) => x.loss) }).toEqual({ where, losses: refLosses.slice(0, r.expected + 2) });
    // The resumed run cleaned up what the killed one left half-written.
    expect({ where, left: leftovers(r.run) }).toEqual({ where, left: [] });
    expect(fs.readFileSync(path.join(r.run, 'latest'), 'utf8').trim()).toBe(`step-${r.expected + 2}`);
  }
  // At least one kill landed inside a checkpoint write (a temporary folder was left behind).
  expect(results.filter((r) => r.leftBehind.some((n) => n.includes('.tmp-'))).length).toBeGreaterThan(0);
});

test('a checkpoint write that fails like a full disk: the previous checkpoint survives and the error says what happened', async () => {
  const run = path.join(tmp, 'enospc');
  const pre = ['-r', path.join(__dirname, '..', 'helpers', 'child-fail-write.js')];
  const fail = JSON.stringify({ dir: 'step-3', file: 'optimizer.safetensors', errno: 'ENOSPC' });
  const r = await train(['--config', cfg, '--data', data, '--out', run, '--steps', STEPS, '--stop-after', '6'], { GPT_ENGINE_TEST_FAIL_WRITE: fail }, pre);
  expect(r.signal).toBeNull();
  expect(r.code).not.toBe(0);
  const ck3 = path.join(run, 'checkpoints', 'step-3');
  // One message: which checkpoint, which stage, the system's error, and what became of the previous state.
  expect(r.stderr).toContain(`Could not write the checkpoint ${ck3}: writing optimizer.safetensors failed: ENOSPC: no space left on device`);
  expect(r.stderr).toMatch(/Nothing was written under .*step-3\./);
  // Nothing half-written; the previous checkpoint is intact and still `latest`.
  expect(fs.existsSync(ck3)).toBe(false);
  expect(leftovers(run)).toEqual([]);
  expect(fs.readFileSync(path.join(run, 'latest'), 'utf8').trim()).toBe('step-2');
  expect(await loadableCheckpoints(run)).toEqual([1, 2]);
  // and the run resumes from it, continuing as if nothing had happened.
  const again = await train(['--resume', run, '--stop-after', '2', '--json']);
  if (again.code !== 0) throw new Error(`resume after the failed write: ${describeExit(again)}`);
  const s = summary(again.stdout);
  expect(s.config.resumed_from).toBe(path.join(run, 'checkpoints', 'step-2'));
  expect(s.step).toBe(4);
  const ref = await train(['--config', cfg, '--data', data, '--out', path.join(tmp, 'enospc-ref'), '--steps', STEPS, '--stop-after', '4', '--checkpoint-every', '100000', '--json']);
  expect(s.losses).toEqual(summary(ref.stdout).losses.slice(2, 4));
});

test('a learning rate that blows up: the run stops at the step the loss turns non-finite, naming the last good checkpoint', async () => {
  const run = path.join(tmp, 'nan');
  const r = await train(['--config', cfg, '--data', data, '--out', run, '--steps', STEPS, '--stop-after', '30', '--lr', '1e30', '--warmup', '0']);
  expect(r.signal).toBeNull();
  expect(r.code).not.toBe(0);
  const m = /Training stopped at step (\d+): ([^\n]*)\. The last good checkpoint is (\S+);/.exec(r.stderr);
  if (!m) throw new Error(`no "Training stopped" message: ${describeExit(r)}`);
  const stopped = Number(m[1]);
  expect(stopped).toBeLessThanOrEqual(3);
  const good = m[3];
  // The named checkpoint loads, and its weights are finite.
  const c = await readCheckpoint(good, { optimizer: true });
  for (const [, t] of c.tensors) expect(t.every(Number.isFinite)).toBe(true);
  expect(good).toBe(path.join(run, 'checkpoints', `step-${stopped - 1}`));
});
