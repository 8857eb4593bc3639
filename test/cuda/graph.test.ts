/**
 * CUDA graphs of the training micro-batches and the optimizer step
 * (GPT_ENGINE_CUDA_GRAPH=1): a deferred-loss forwardBackward runs eagerly the
 * first time for a key (shape, first micro-batch of the step or not,
 * accumulating or not), is captured into a graph the second time and
 * replayed from then on; so is step() (one key per model: its per-step
 * values, lr, weight decay, the bias corrections, 1/count and the clip, are
 * read from device memory). The training must give the same losses, gradient
 * norms and weights as without graphs, bit for bit, over steps with gradient
 * accumulation, shape changes and a changing lr, weight decay and clip, and
 * (under the SIMT emulator, whose graph stand-ins record each launch with a
 * copy of its arguments and replay them in order) keep the host syncs of
 * docs/GPU.md: one copy back per step.
 *
 * The flag is read from the process environment when a backend is created,
 * and jest gives a test file a copy of process.env, so each comparison runs
 * in a child process (the compiled package, dist/), which makes the eager
 * model first and then the graphed one.
 */
import { GPT } from '../../lib/model';
import { loadAddon } from '../../lib/native';
import { describeExit, distFile, runNode } from '../helpers/child-util';

const addon = loadAddon();
const info = addon.cudaInfo();

const CHILD = `
const { GPT } = require(process.argv[1]);
const { loadAddon } = require(process.argv[2]);
const { precision, plan, seed } = JSON.parse(process.argv[3]);
const addon = loadAddon();
const count = addon.emuHostSyncs;
// A banded and a dense layer, a vocabulary that needs padding, ignored targets.
const CFG = { n_layer: 2, n_head: 2, n_embd: 64, n_positions: 32, vocab_size: 61, layer_norm_epsilon: 1e-5,
              attention_pattern: 'alternating', attention_window: 7 };
let s = 12345;
const rnd = (n) => (s = (s * 1103515245 + 12345) % 2147483648) % n;
const bits = (x) => x === undefined ? 'none' : Buffer.from(Float64Array.of(x).buffer).toString('hex');
(async () => {
  delete process.env.GPT_ENGINE_CUDA_GRAPH;
  const eager = await GPT.create(CFG, { device: 'cuda', precision, seed });
  process.env.GPT_ENGINE_CUDA_GRAPH = '1';
  const graphed = await GPT.create(CFG, { device: 'cuda', precision, seed });
  const r = { before: [eager.graphs(), graphed.graphs()], steps: [] };
  // A schedule: every step has its own lr, weight decay and clip (a graph
  // that kept any of them from its capture would drift from the eager model).
  const optsOf = (i) => ({ lr: 2e-3 / (1 + i), weightDecay: i % 3 === 2 ? 0 : 0.1 + 0.02 * i, gradClip: i % 2 ? 0.5 : 2 });
  for (const [k, [A, B, T, eot]] of plan.entries()) {
    const opts = optsOf(k);
    const shape = eot === undefined ? { batch: B, seq: T } : { batch: B, seq: T, docEot: eot };
    const batches = Array.from({ length: A }, () => {
      const tokens = Int32Array.from({ length: B * T }, () => rnd(CFG.vocab_size));
      const targets = tokens.map((t, i) => (i % 5 === 2 ? -1 : (t + rnd(3)) % CFG.vocab_size));
      return { tokens, targets };
    });
    for (const b of batches) await eager.forwardBackward(b.tokens, b.targets, shape, { deferLoss: true });
    const want = await eager.step(opts);
    if (count) count({ reset: true });
    for (const b of batches) await graphed.forwardBackward(b.tokens, b.targets, shape, { deferLoss: true });
    const got = await graphed.step(opts);
    const c = count ? count({ reset: true }) : null;
    r.steps.push({
      want: { loss: bits(want.loss), norm: bits(want.gradNorm), clip: want.clipScale, tokens: want.tokens },
      got: { loss: bits(got.loss), norm: bits(got.gradNorm), clip: got.clipScale, tokens: got.tokens },
      syncs: c && { toHost: c.toHost, toHostBytes: c.toHostBytes, toDevice: c.toDevice, toDeviceAsync: c.toDeviceAsync,
                    streamSync: c.streamSync, other: c.deviceSync + c.eventSync, launchesAfterToHost: c.launchesAfterToHost,
                    malloc: c.malloc },
    });
  }
  const a = eager.parameters(), b = graphed.parameters();
  r.differ = [...a].filter(([name, w]) => !Buffer.from(b.get(name).buffer).equals(Buffer.from(w.buffer))).map(([n]) => n);
  r.after = [eager.graphs(), graphed.graphs()];
  await eager.dispose();
  await graphed.dispose();
  process.stdout.write(JSON.stringify(r));
})().catch((e) => { console.error(e); process.exit(1); });
`;

interface Outcome {
  before: [string, string];
  after: [string, string];
  steps: Array<{ want: object; got: object; syncs: Record<string, number> | null }>;
  differ: string[];
}

async function compare(precision: 'fp32' | 'bf16', plan: Step[], seed: number): Promise<Outcome> {
  // The emulator's cuBLASLt stand-in computes at the call, so it cannot be
  // captured (the backend turns graphs off with it): the own GEMM kernels there.
  const env: NodeJS.ProcessEnv = info.emulated ? { GPT_ENGINE_GEMM: 'own' } : {};
  const r = await runNode(['-e', CHILD, distFile('lib/index.js'), distFile('lib/native.js'), JSON.stringify({ precision, plan, seed })], {
    env,
    timeoutMs: 240000,
  });
  if (r.code !== 0) throw new Error(`child failed: ${describeExit(r)}`);
  return JSON.parse(r.stdout) as Outcome;
}

// [micro-batches, batch, seq, document mask's EOT id] per step: one
// micro-batch, accumulation, a smaller shape (the activations stay where they
// are), the first shape again, then with a document mask (token 3 ends a
// document: a few per row).
type Step = [number, number, number, number?];
const PLAN: Step[] = [
  [1, 2, 24],
  [3, 2, 24],
  [2, 2, 24],
  [2, 1, 16],
  [3, 1, 16],
  [3, 2, 24],
  [3, 2, 24, 3],
  [2, 2, 24, 3],
];

if (info.available) {
  for (const precision of ['fp32', 'bf16'] as const) {
    test(`training with CUDA graphs is bitwise the eager training (${precision})`, async () => {
      const r = await compare(precision, PLAN, 11);
      expect(r.before).toEqual(['off: GPT_ENGINE_CUDA_GRAPH is not 1; 0 captured, 0 replayed', 'on; 0 captured, 0 replayed']);
      r.steps.forEach((s, i) => expect({ step: i, ...s.got }).toEqual({ step: i, ...s.want }));
      expect(r.differ).toEqual([]);
      // Six micro-batch keys ((2,24), (1,16) and (2,24) with the mask, each
      // first micro-batch and accumulating) and the step's: each runs eagerly
      // once, is captured (and launched) once; every other call replays.
      const calls = PLAN.reduce((n, p) => n + p[0], 0);
      const steps = PLAN.length;
      expect(r.after).toEqual([
        'off: GPT_ENGINE_CUDA_GRAPH is not 1; 0 captured, 0 replayed',
        `on; 7 captured, ${calls - 6 + steps - 1} replayed`,
      ]);
      // Graphs keep the host syncs: the ids (and the document starts) go up queued before each graph,
      // the step's scalars (one queued copy), one 16-byte copy back and one synchronize per step;
      // nothing allocated after the first two steps (the activations, the accumulation buffer).
      if (info.emulated)
        r.steps.forEach((s, i) =>
          expect({ step: i, ...s.syncs!, malloc: i > 1 ? s.syncs!.malloc : 0 }).toEqual({
            step: i,
            toHost: 1,
            toHostBytes: 16,
            toDevice: 0,
            toDeviceAsync: (PLAN[i][3] === undefined ? 2 : 3) * PLAN[i][0] + 1, // tokens, targets (, document starts); the step's scalars
            streamSync: 1,
            other: 0,
            launchesAfterToHost: 0,
            malloc: 0,
          }),
        );
    });
  }

  test('a larger shape moves the activations: the graphs are captured again, still bitwise', async () => {
    const plan: Step[] = [
      [2, 1, 8],
      [2, 1, 8],
      [2, 2, 20],
      [2, 2, 20],
      [2, 1, 8],
    ];
    const r = await compare('fp32', plan, 12);
    r.steps.forEach((s, i) => expect({ step: i, ...s.got }).toEqual({ step: i, ...s.want }));
    expect(r.differ).toEqual([]);
    // (1,8) twice, then (2,20) moved the activations and dropped the graphs:
    // (2,20) twice, and (1,8) runs eagerly again. The step: eager, captured,
    // then dropped with the rest: eager, captured, replayed.
    expect(r.after[1]).toBe('on; 6 captured, 7 replayed');
  });
}

test('graphs are off on the CPU backend', async () => {
  const model = await GPT.create({ n_layer: 1, n_head: 1, n_embd: 8, n_positions: 4, vocab_size: 5, layer_norm_epsilon: 1e-5, attention_pattern: 'dense', attention_window: 4 }, { device: 'cpu', seed: 1 });
  try {
    expect(model.graphs()).toBe('off (not a CUDA backend)');
  } finally {
    await model.dispose();
  }
});
