/**
 * Data-parallel training on 2 CPU ranks of 1 thread each (docs/DISTRIBUTED.md):
 * the same model as one process accumulating the ranks' micro-batches,
 * ZeRO-1, checkpoints across rank counts.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { checkpointBytes, expectOk, metrics, mpirun, QUICK, single, removeTmpDirs, tmpDir } from './helpers';

afterAll(removeTmpDirs);

const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-30);

describe('2 ranks against 1 process', () => {
  const dirs: Record<string, string> = {};
  beforeAll(() => {
    for (const [name, run] of [
      ['ranks', () => mpirun(2, ['train', ...QUICK, '--steps', '20', '--zero', '0', '--checkpoint-every', '1', '--keep', '100', '--out', (dirs.ranks = tmpDir('ranks'))])],
      ['ranksAgain', () => mpirun(2, ['train', ...QUICK, '--steps', '20', '--zero', '0', '--checkpoint-every', '1', '--keep', '100', '--out', (dirs.ranksAgain = tmpDir('again'))])],
      ['single', () => single(['train', ...QUICK, '--steps', '20', '--batch-tokens', '512', '--checkpoint-every', '1', '--keep', '100', '--out', (dirs.single = tmpDir('single'))])],
    ] as const)
      expectOk(run());
  });

  test('the first step (loss, and the weights its gradient made) is bitwise the same; every loss of 20 steps agrees', () => {
    const a = metrics(dirs.ranks);
    const b = metrics(dirs.single);
    expect(a).toHaveLength(20);
    expect(a[0].loss).toBe(b[0].loss);
    expect(a[0].grad_norm).toBe(b[0].grad_norm);
    // The weights after step 1 come from the summed gradient: equal bytes mean equal gradients.
    const w = (d: string) => fs.readFileSync(path.join(d, 'checkpoints', 'step-1', 'model.safetensors'));
    expect(w(dirs.ranks).equals(w(dirs.single))).toBe(true);
    for (let i = 0; i < 20; i++) expect(rel(a[i].loss, b[i].loss)).toBeLessThan(1e-5);
  });

  test('the same 2-rank run twice: bitwise equal losses and checkpoints', () => {
    expect(metrics(dirs.ranksAgain).map((l) => l.loss)).toEqual(metrics(dirs.ranks).map((l) => l.loss));
    const ck = (d: string) => checkpointBytes(path.join(d, 'checkpoints', 'step-20'));
    const a = ck(dirs.ranks);
    const b = ck(dirs.ranksAgain);
    expect([...a.keys()]).toEqual([...b.keys()]);
    for (const [k, v] of a) expect({ file: k, equal: v.equals(b.get(k)!) }).toEqual({ file: k, equal: true });
  });
});

describe('ZeRO-1', () => {
  test('on vs off: the same losses within 1e-6; the optimizer state per rank is halved', () => {
    const on = tmpDir('zero1');
    const off = tmpDir('zero0');
    const r1 = mpirun(2, ['train', ...QUICK, '--steps', '20', '--zero', '1', '--out', on]);
    const r0 = mpirun(2, ['train', ...QUICK, '--steps', '20', '--zero', '0', '--out', off]);
    expectOk(r1);
    expectOk(r0);
    const a = metrics(on);
    const b = metrics(off);
    for (let i = 0; i < 20; i++) expect(rel(a[i].loss, b[i].loss)).toBeLessThan(1e-6);
    const opt = (s: string) => {
      const m = /ZeRO-1 (on|off); memory per rank: .* optimizer state [\d.]+ MiB \((\d+) bytes\)/.exec(s);
      if (!m) throw new Error(`no memory line in:\n${s}`);
      return Number(m[2]);
    };
    const full = opt(r0.stderr);
    expect(opt(r1.stderr)).toBeGreaterThan(0);
    expect(Math.abs(opt(r1.stderr) - full / 2)).toBeLessThanOrEqual(2 * 64); // half, to the 64-byte slice boundary
    // The checkpoint holds the whole state, gathered: same size as without ZeRO.
    const size = (d: string) => fs.statSync(path.join(d, 'checkpoints', 'step-20', 'optimizer.safetensors')).size;
    expect(size(on)).toBe(size(off));
  });
});

test('ZeRO-1 on 3 ranks (slices of unequal sizes) agrees with 3 unsharded ranks within 1e-6', () => {
  const on = tmpDir('zero3');
  const off = tmpDir('zero3off');
  expectOk(mpirun(3, ['train', ...QUICK, '--batch', '2', '--steps', '6', '--zero', '1', '--out', on]));
  expectOk(mpirun(3, ['train', ...QUICK, '--batch', '2', '--steps', '6', '--zero', '0', '--out', off]));
  const a = metrics(on);
  const b = metrics(off);
  expect(a).toHaveLength(6);
  for (let i = 0; i < 6; i++) expect(rel(a[i].loss, b[i].loss)).toBeLessThan(1e-6);
});

describe('checkpoints and resume across rank counts', () => {
  test('--stop-after then --resume on 2 ranks is bitwise the uninterrupted 2-rank run', () => {
    const whole = tmpDir('whole');
    const parts = tmpDir('parts');
    expectOk(mpirun(2, ['train', ...QUICK, '--steps', '12', '--out', whole]));
    expectOk(mpirun(2, ['train', ...QUICK, '--steps', '12', '--stop-after', '5', '--out', parts]));
    expectOk(mpirun(2, ['train', '--resume', parts, '--threads', '1']));
    expect(metrics(parts).map((l) => l.loss)).toEqual(metrics(whole).map((l) => l.loss));
    const a = checkpointBytes(path.join(whole, 'checkpoints', 'step-12'));
    const b = checkpointBytes(path.join(parts, 'checkpoints', 'step-12'));
    for (const k of ['model.safetensors', 'optimizer.safetensors']) expect(a.get(k)!.equals(b.get(k)!)).toBe(true);
  });

  test('a 2-rank checkpoint resumes in 1 process, and a 1-process one on 2 ranks: the first resumed loss matches within 1e-5', () => {
    const ranks = tmpDir('r2');
    expectOk(mpirun(2, ['train', ...QUICK, '--steps', '8', '--out', ranks]));
    const ranksStop = tmpDir('r2stop');
    expectOk(mpirun(2, ['train', ...QUICK, '--steps', '8', '--stop-after', '4', '--out', ranksStop]));
    expectOk(single(['train', '--resume', ranksStop, '--threads', '1']));
    expect(rel(metrics(ranksStop)[4].loss, metrics(ranks)[4].loss)).toBeLessThan(1e-5);

    const one = tmpDir('r1');
    expectOk(single(['train', ...QUICK, '--steps', '8', '--batch-tokens', '512', '--out', one]));
    const oneStop = tmpDir('r1stop');
    expectOk(single(['train', ...QUICK, '--steps', '8', '--batch-tokens', '512', '--stop-after', '4', '--out', oneStop]));
    expectOk(mpirun(2, ['train', '--resume', oneStop, '--threads', '1']));
    expect(rel(metrics(oneStop)[4].loss, metrics(one)[4].loss)).toBeLessThan(1e-5);
  });
});
