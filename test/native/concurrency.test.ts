/**
 * docs/ARCHITECTURE.md "Concurrency": calls on one model run in FIFO order; dispose() waits
 * for the running call and rejects the queued ones with DISPOSED. Checked with
 * calls issued without awaiting, from interleaved async tasks, with failures in
 * the middle of the queue, and against a model driven one call at a time
 * (bitwise: the CPU core is deterministic). Then models in several
 * worker_threads at once (the addon is context-aware): each gives the same
 * numbers as alone. (Terminating a worker in the middle of native work:
 * concurrency-terminate.test.ts.)
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';

import { GPTConfig } from '../../lib/config';
import { DisposedError } from '../../lib/errors';
import { GPT } from '../../lib/model';
import { distFile } from '../helpers/child-util';
import { tinyConfig } from './shared/setup';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { batchOf, checksum } = require('../helpers/child-batches.js') as {
  batchOf(seed: number, n: number, V: number): Int32Array;
  checksum(p: Map<string, Float32Array>): number;
};

const CFG: GPTConfig = tinyConfig({ n_positions: 32, attention_pattern: 'alternating', attention_window: 5 });
const B = 4;
const T = 32;
const SHAPE = { batch: B, seq: T };
const tok = (s: number) => batchOf(s, B * T, CFG.vocab_size);
const STEP = { lr: 3e-3, weightDecay: 0.1, gradClip: 1 };

function sameBits(a: Map<string, Float32Array>, b: Map<string, Float32Array>): boolean {
  for (const [k, x] of a) {
    const y = b.get(k)!;
    if (Buffer.compare(Buffer.from(x.buffer, x.byteOffset, x.byteLength), Buffer.from(y.buffer, y.byteOffset, y.byteLength)) !== 0) return false;
  }
  return true;
}

type Op = { kind: 'fb'; seed: number } | { kind: 'loss'; seed: number } | { kind: 'step' };

/** Runs ops one at a time (awaiting each): the reference order. */
async function sequential(seed: number, ops: Op[]): Promise<{ out: number[]; params: Map<string, Float32Array> }> {
  const m = await GPT.create(CFG, { device: 'cpu', seed });
  const out: number[] = [];
  for (const op of ops) {
    if (op.kind === 'fb') out.push(await m.forwardBackward(tok(op.seed), tok(op.seed + 1), SHAPE));
    else if (op.kind === 'loss') out.push(await m.loss(tok(op.seed), tok(op.seed + 1), SHAPE));
    else out.push((await m.step(STEP)).gradNorm);
  }
  const params = m.parameters();
  await m.dispose();
  return { out, params };
}

function issue(m: GPT, op: Op): Promise<number> {
  if (op.kind === 'fb') return m.forwardBackward(tok(op.seed), tok(op.seed + 1), SHAPE);
  if (op.kind === 'loss') return m.loss(tok(op.seed), tok(op.seed + 1), SHAPE);
  return m.step(STEP).then((r) => r.gradNorm);
}

const OPS: Op[] = [
  { kind: 'fb', seed: 10 },
  { kind: 'fb', seed: 20 },
  { kind: 'step' },
  { kind: 'loss', seed: 30 },
  { kind: 'fb', seed: 40 },
  { kind: 'step' },
  { kind: 'fb', seed: 50 },
  { kind: 'loss', seed: 60 },
  { kind: 'step' },
  { kind: 'loss', seed: 70 },
];

describe('FIFO on one model', () => {
  let ref: { out: number[]; params: Map<string, Float32Array> };
  beforeAll(async () => {
    ref = await sequential(1, OPS);
  });

  /** The calls ran in OPS's order (`order`), returned what one model running them in turn returns, and left the same weights; disposes `m`. */
  async function expectIssueOrder(m: GPT, order: number[], out: number[]): Promise<void> {
    expect(order).toEqual(OPS.map((_, i) => i));
    expect(out).toEqual(ref.out);
    expect(sameBits(m.parameters(), ref.params)).toBe(true);
    await m.dispose();
  }

  test('calls issued without awaiting settle in issue order with the numbers of a one-at-a-time run', async () => {
    const m = await GPT.create(CFG, { device: 'cpu', seed: 1 });
    const settled: number[] = [];
    const promises = OPS.map((op, i) => issue(m, op).then((v) => (settled.push(i), v)));
    const out = await Promise.all(promises);
    await expectIssueOrder(m, settled, out);
  });

  test('calls from interleaved async tasks run in the order they were issued', async () => {
    const m = await GPT.create(CFG, { device: 'cpu', seed: 1 });
    // Two tasks take turns issuing the ops (each yields between its calls); the
    // model must see them in the global issue order, which is OPS's order.
    const issued: number[] = [];
    const results: number[] = new Array(OPS.length);
    let next = 0;
    const task = async (parity: number) => {
      const mine: Promise<void>[] = [];
      while (next < OPS.length) {
        if (next % 2 !== parity) {
          await new Promise((r) => setImmediate(r));
          continue;
        }
        const i = next++;
        issued.push(i);
        mine.push(issue(m, OPS[i]).then((v) => void (results[i] = v)));
        await Promise.resolve();
      }
      await Promise.all(mine);
    };
    await Promise.all([task(0), task(1)]);
    await expectIssueOrder(m, issued, results);
  });

  test('a failing call in the middle of the queue does not disturb the calls around it', async () => {
    const m = await GPT.create(CFG, { device: 'cpu', seed: 1 });
    const p: Promise<unknown>[] = [];
    p.push(issue(m, OPS[0]), issue(m, OPS[1]));
    // Fails inside the queue, not at the call: save() to a path under a regular file.
    const blocker = path.join(os.tmpdir(), `gpt-engine-conc-${process.pid}`);
    fs.writeFileSync(blocker, 'x');
    const bad = m.save(path.join(blocker, 'ckpt'));
    for (const op of OPS.slice(2)) p.push(issue(m, op));
    await expect(bad).rejects.toThrow(/Could not write the checkpoint/);
    expect(await Promise.all(p)).toEqual(ref.out);
    fs.rmSync(blocker, { force: true });
    await m.dispose();
  });

  test('save() queued between steps writes the weights of exactly the calls before it', async () => {
    const m = await GPT.create(CFG, { device: 'cpu', seed: 1 });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gpt-engine-conc-'));
    try {
      const upToSave = OPS.slice(0, 3); // fb, fb, step
      const all = [...upToSave.map((op) => issue(m, op)), m.save(path.join(dir, 'a'), { optimizer: true }), ...OPS.slice(3).map((op) => issue(m, op))];
      await Promise.all(all);
      const saved = await GPT.load(path.join(dir, 'a'));
      const mid = await sequential(1, upToSave);
      expect(sameBits(saved.parameters(), mid.params)).toBe(true);
      expect(saved.optimizerState().step).toBe(1);
      await saved.dispose();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
      await m.dispose();
    }
  });
});

describe('dispose()', () => {
  test('waits for the running call, rejects every queued one with DISPOSED, then refuses new calls', async () => {
    const m = await GPT.create(CFG, { device: 'cpu', seed: 2 });
    const events: string[] = [];
    const running = m.forwardBackward(tok(1), tok(2), SHAPE).then((l) => (events.push('running resolved'), l));
    const queued = [m.step(STEP), m.forwardBackward(tok(3), tok(4), SHAPE), m.loss(tok(5), tok(6), SHAPE), m.save(path.join(os.tmpdir(), 'never'))];
    const settledQueued = queued.map((q) =>
      q.then(
        () => 'resolved',
        (e: { code?: string }) => (events.push('queued rejected'), e.code),
      ),
    );
    const disposed = m.dispose().then(() => events.push('dispose resolved'));
    expect(m.isDisposed).toBe(true);
    const loss = await running;
    expect(Number.isFinite(loss)).toBe(true);
    expect(await Promise.all(settledQueued)).toEqual(['DISPOSED', 'DISPOSED', 'DISPOSED', 'DISPOSED']);
    await disposed;
    // The queued calls are rejected at once; dispose resolves only after the running call.
    expect(events.indexOf('dispose resolved')).toBeGreaterThan(events.indexOf('running resolved'));
    expect(events.filter((e) => e === 'queued rejected')).toHaveLength(4);
    // Later calls: async ones reject, sync ones throw, all with DISPOSED.
    await expect(m.forwardBackward(tok(1), tok(2), SHAPE)).rejects.toBeInstanceOf(DisposedError);
    await expect(m.step(STEP)).rejects.toMatchObject({ code: 'DISPOSED' });
    expect(() => m.parameters()).toThrow(DisposedError);
    expect(() => m.zeroGrad()).toThrow(DisposedError);
    expect(() => m.memory()).toThrow(DisposedError);
  });

  test('dispose() twice, concurrently and later, resolves every time', async () => {
    const m = await GPT.create(CFG, { device: 'cpu', seed: 2 });
    const events: string[] = [];
    const a = m.forwardBackward(tok(1), tok(2), SHAPE).then((loss) => {
      events.push('call resolved');
      return loss;
    });
    const d1 = m.dispose().then((v) => {
      events.push('dispose 1 resolved');
      return v;
    });
    const d2 = m.dispose().then((v) => {
      events.push('dispose 2 resolved');
      return v;
    });
    expect(m.isDisposed).toBe(true);
    const [loss, r1, r2] = await Promise.all([a, d1, d2]);
    // The running call finishes first; both disposes wait for it, in order, and resolve to nothing.
    expect(Number.isFinite(loss)).toBe(true);
    expect(events).toEqual(['call resolved', 'dispose 1 resolved', 'dispose 2 resolved']);
    expect(r1).toBeUndefined();
    expect(r2).toBeUndefined();
    // Later, with nothing running: resolves at once, with nothing.
    await expect(m.dispose()).resolves.toBeUndefined();
    expect(() => m.parameters()).toThrow(DisposedError);
  });

  test('dispose() from inside a call\'s continuation, and with nothing running', async () => {
    const m = await GPT.create(CFG, { device: 'cpu', seed: 2 });
    const after = m.forwardBackward(tok(1), tok(2), SHAPE).then(() => m.dispose());
    const next = m.step(STEP); // queued behind the first call; runs before dispose() is reached
    await after;
    await expect(next).resolves.toMatchObject({ step: 1 });
    const idle = await GPT.create(CFG, { device: 'cpu', seed: 2 });
    await idle.dispose();
    expect(idle.isDisposed).toBe(true);
  });

  test('200 models created, used and disposed in a burst: no failure, memory returns', async () => {
    const rss0 = process.memoryUsage().rss;
    for (let round = 0; round < 4; round++) {
      const models = await Promise.all(Array.from({ length: 50 }, (_, i) => GPT.create(CFG, { device: 'cpu', seed: i })));
      await Promise.all(
        models.map((m, i) => {
          const seq = 8 * (1 + (i % 4));
          return m.forwardBackward(batchOf(i, seq, 97), batchOf(i + 1, seq, 97), { batch: 1, seq });
        }),
      );
      await Promise.all(models.map((m) => m.dispose()));
    }
    // Each model holds ~0.5 MB of state; 50 at a time, freed each round.
    expect(process.memoryUsage().rss - rss0).toBeLessThan(256 * 2 ** 20);
  });
});

describe('worker threads', () => {
  const script = path.join(__dirname, '..', 'helpers', 'child-worker.js');
  type Result = { losses: number[]; norms: number[]; checksum: number; error?: string };

  function runWorker(data: Record<string, unknown>): Promise<Result> {
    return new Promise((resolve, reject) => {
      const w = new Worker(script, { workerData: data });
      w.once('message', (m: Result) => {
        if (m.error) reject(new Error(`worker failed: ${m.error}`));
        else resolve(m);
      });
      w.once('error', reject);
      w.once('exit', (code) => code !== 0 && reject(new Error(`worker exited with ${code}`)));
    });
  }

  /** The same training in this thread (through lib/, not dist/). */
  async function alone(seed: number, dataSeed: number, steps: number, batch: number, seq: number): Promise<Result> {
    const m = await GPT.create(CFG, { device: 'cpu', seed });
    const losses: number[] = [];
    const norms: number[] = [];
    for (let s = 0; s < steps; s++) {
      const n = batch * seq;
      losses.push(await m.forwardBackward(batchOf(dataSeed + 2 * s, n, 97), batchOf(dataSeed + 2 * s + 1, n, 97), { batch, seq }));
      norms.push((await m.step({ lr: 3e-3, weightDecay: 0.1, gradClip: 1 })).gradNorm);
    }
    const r = { losses, norms, checksum: checksum(m.parameters()) };
    await m.dispose();
    return r;
  }

  beforeAll(() => {
    distFile('lib/model.js');
  });

  test('four workers training at once each match the same run alone', async () => {
    const jobs = [0, 1, 2, 3].map((i) => ({ config: CFG, seed: 10 + i, steps: 4, batch: 2 + i, seq: 16 + 4 * i, dataSeed: 100 * i, lr: 3e-3 }));
    const got = await Promise.all(jobs.map(runWorker));
    for (let i = 0; i < jobs.length; i++) {
      const j = jobs[i];
      const want = await alone(j.seed, j.dataSeed, j.steps, j.batch, j.seq);
      expect(got[i]).toEqual(want);
    }
    // and the main thread meanwhile still works
    const m = await GPT.create(CFG, { device: 'cpu', seed: 3 });
    expect(Number.isFinite(await m.loss(tok(1), tok(2), SHAPE))).toBe(true);
    await m.dispose();
  });
});
