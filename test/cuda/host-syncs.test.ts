/**
 * Host syncs of a training step on the CUDA backend, counted by the SIMT
 * emulator (its runtime counts every host-blocking call: copies to and from
 * the host, stream/device/event synchronizes, cudaMalloc and cudaFree; the
 * addon's emulator-only emuHostSyncs export reads them). Runs where the cuda
 * project runs; on a real GPU the export is absent and the test checks that.
 */
import { GPTConfig } from '../../lib/config';
import { NonFiniteError } from '../../lib/errors';
import { GPT } from '../../lib/model';
import { loadAddon } from '../../lib/native';
import { Rng } from '../../lib/rng';

interface HostSyncs {
  toHost: number;
  toHostBytes: number;
  toDevice: number;
  streamSync: number;
  deviceSync: number;
  eventSync: number;
  malloc: number;
  free: number;
  launches: number;
  launchesAfterToHost: number;
}
type EmuAddon = { emuHostSyncs?: (o?: { reset?: boolean }) => HostSyncs };

const addon = loadAddon<EmuAddon>();
const info = addon.cudaInfo();

// A banded and a dense layer, a vocabulary that needs padding, ignored targets.
const CFG: GPTConfig = {
  n_layer: 2,
  n_head: 2,
  n_embd: 64,
  n_positions: 32,
  vocab_size: 61,
  layer_norm_epsilon: 1e-5,
  attention_pattern: 'alternating',
  attention_window: 7,
};
const B = 2;
const T = 24;

function batch(seed: number) {
  const rng = new Rng(seed);
  const tokens = new Int32Array(B * T).map(() => rng.nextInt(CFG.vocab_size));
  const targets = new Int32Array(B * T).map((_, i) => (i % 5 === 2 ? -1 : (tokens[i] + 1) % CFG.vocab_size));
  return { tokens, targets };
}

test('the emulator-only counter export exists exactly in the emulator build', () => {
  expect(info.available).toBe(true);
  expect(typeof addon.emuHostSyncs).toBe(info.emulated ? 'function' : 'undefined');
});

if (info.emulated) {
  test('the counters count a copy back and reset', async () => {
    const count = addon.emuHostSyncs!;
    const model = await GPT.create(CFG, { device: 'cuda', precision: 'fp32', seed: 5 });
    try {
      count({ reset: true });
      model.parameters();
      const c = count({ reset: true });
      expect(c.toHost).toBeGreaterThan(0);
      expect(c.toHostBytes).toBeGreaterThan(0);
      expect(count().toHost).toBe(0);
      expect(() => count({ reset: 1 as unknown as boolean })).toThrow(/boolean for reset/);
    } finally {
      await model.dispose();
    }
  });

  for (const precision of ['fp32', 'bf16'] as const) {
    test(`a steady-state training step on cuda (${precision}) has the expected host syncs`, async () => {
      const count = addon.emuHostSyncs!;
      const model = await GPT.create(CFG, { device: 'cuda', precision, seed: 5 });
      try {
        const fb: HostSyncs[] = [];
        const st: HostSyncs[] = [];
        for (let s = 0; s < 4; ++s) {
          const { tokens, targets } = batch(40 + s);
          count({ reset: true });
          const loss = await model.forwardBackward(tokens, targets, { batch: B, seq: T });
          fb.push(count({ reset: true }));
          const r = await model.step({ lr: 1e-3, weightDecay: 0.1, gradClip: 0.5 });
          st.push(count({ reset: true }));
          expect(Number.isFinite(loss)).toBe(true);
          expect(Number.isFinite(r.gradNorm)).toBe(true);
          expect(st[s].launches).toBeGreaterThan(0);
        }
        process.stdout.write(
          `host syncs per call (${precision}): forwardBackward ${JSON.stringify(fb)}\nstep ${JSON.stringify(st)}\n`,
        );
        // After the first step (which sizes the scratch buffers), every step
        // makes the same calls: the batch's tokens and targets go up; the loss
        // comes back in forwardBackward, the gradient norm in step; each call
        // ends with one stream synchronize.
        const want = { fbToHost: 1, fbToDevice: 2, fbSync: 1, stToHost: 1, stToDevice: 0, stSync: 1, stLaunchesAfterCopy: 0, malloc: 0, other: 0 };
        for (let s = 1; s < 4; ++s) {
          const a = fb[s];
          const b = st[s];
          const got = {
            fbToHost: a.toHost,
            fbToDevice: a.toDevice,
            fbSync: a.streamSync,
            stToHost: b.toHost,
            stToDevice: b.toDevice,
            stSync: b.streamSync,
            // step's copy back comes after the last kernel it queues (AdamW
            // read the clipping scale on the device).
            stLaunchesAfterCopy: b.launchesAfterToHost,
            malloc: a.malloc + b.malloc,
            // cudaFree is not counted here: the counters are per process, and a
            // model of an earlier test that the garbage collector finalizes may
            // free its buffers at any time. A step that freed scratch would also
            // have to allocate (grow-only buffers), which malloc catches.
            other: a.deviceSync + b.deviceSync + a.eventSync + b.eventSync,
          };
          expect({ step: s, ...got }).toEqual({ step: s, ...want });
        }
      } finally {
        await model.dispose();
      }
    });
  }
}

// The step's clipping scale lives on the device and AdamW skips itself when
// the norm is not finite: a step with a non-finite gradient throws and leaves
// the weights, moments and step count exactly as they were.
test('a step with a non-finite gradient norm on cuda changes nothing', async () => {
  const model = await GPT.create(CFG, { device: 'cuda', precision: 'fp32', seed: 8 });
  try {
    const { tokens, targets } = batch(70);
    const shape = { batch: B, seq: T };
    await model.forwardBackward(tokens, targets, shape);
    expect(Number.isFinite((await model.step({ lr: 1e30 })).gradNorm)).toBe(true); // absurd weights from here
    const before = model.parameters();
    const opt = model.optimizerState();
    const loss = await model.forwardBackward(tokens, targets, shape);
    expect(Number.isFinite(loss)).toBe(false);
    await expect(model.step({ lr: 1e30, gradClip: 1 })).rejects.toThrow(NonFiniteError);
    const after = model.parameters();
    for (const [name, w] of before) expect(Buffer.from(after.get(name)!.buffer).equals(Buffer.from(w.buffer))).toBe(true);
    const opt2 = model.optimizerState();
    expect(opt2.step).toBe(opt.step);
    for (const [name, w] of opt.exp_avg) expect(Buffer.from(opt2.exp_avg.get(name)!.buffer).equals(Buffer.from(w.buffer))).toBe(true);
    for (const [name, w] of opt.exp_avg_sq) expect(Buffer.from(opt2.exp_avg_sq.get(name)!.buffer).equals(Buffer.from(w.buffer))).toBe(true);
  } finally {
    await model.dispose();
  }
});
