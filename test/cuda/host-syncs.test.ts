/**
 * Host syncs of a training step on the CUDA backend, counted by the SIMT
 * emulator (its runtime counts every host-blocking call: copies to and from
 * the host, stream/device/event synchronizes, cudaMalloc and cudaFree, and
 * apart from them the uploads queued with cudaMemcpyAsync; the
 * addon's emulator-only emuHostSyncs export reads them). Runs where the cuda
 * project runs; on a real GPU the export is absent and the test checks that.
 */
import { GPTConfig } from '../../lib/config';
import { NonFiniteError } from '../../lib/errors';
import { estimateMemory } from '../../lib/limits';
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
  mallocAfterLaunch: number;
  toDeviceAsync: number;
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
        // After the first step, every step makes the same calls: the batch's
        // tokens and targets go up, queued on the stream (cudaMemcpyAsync from
        // pageable memory: the host does not wait for the device), none with
        // cudaMemcpy; the loss comes back in forwardBackward, the gradient
        // norm in step; step's scalars go up queued; each call ends with one
        // stream synchronize.
        const want = { fbToHost: 1, fbToDevice: 0, fbToDeviceAsync: 2, fbSync: 1, stToHost: 1, stToDevice: 1, stSync: 1, stLaunchesAfterCopy: 0, malloc: 0, other: 0 };
        for (let s = 1; s < 4; ++s) {
          const a = fb[s];
          const b = st[s];
          const got = {
            fbToHost: a.toHost,
            fbToDevice: a.toDevice,
            fbToDeviceAsync: a.toDeviceAsync,
            fbSync: a.streamSync,
            stToHost: b.toHost,
            stToDevice: b.toDevice + b.toDeviceAsync,
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

if (info.emulated) {
  // The model sizes the backend's scratch when it is created (the gradient
  // norm's) and when it sizes its activations for a batch (everything a
  // training step of that shape uses): the first call allocates before it
  // queues its first kernel, and no step allocates after that, whatever
  // smaller shape comes next.
  test('scratch is reserved at set-up: no cudaMalloc once a call has queued work', async () => {
    const count = addon.emuHostSyncs!;
    const model = await GPT.create(CFG, { device: 'cuda', precision: 'bf16', seed: 6 });
    try {
      const { tokens, targets } = batch(50);
      count({ reset: true });
      await model.forwardBackward(tokens, targets, { batch: B, seq: T });
      const first = count({ reset: true });
      expect(first.malloc).toBeGreaterThan(0); // the activations (and this shape's scratch)
      expect(first.launches).toBeGreaterThan(0);
      expect(first.mallocAfterLaunch).toBe(0);
      await model.step({ lr: 1e-3, gradClip: 1 });
      expect(count({ reset: true }).malloc).toBe(0); // the norm's scratch came with the model
      // A smaller batch and a shorter sequence reuse what is there.
      for (const [b, t] of [[1, T], [B, 9], [1, 1]]) {
        await model.forwardBackward(tokens.subarray(0, b * t), targets.subarray(0, b * t), { batch: b, seq: t });
        await model.step({ lr: 1e-3 });
        expect({ b, t, malloc: count({ reset: true }).malloc }).toEqual({ b, t, malloc: 0 });
      }
    } finally {
      await model.dispose();
    }
  });

  // checkFits / estimateMemory count that scratch on CUDA (the backend's own
  // sizing code, cuda_training_scratch_bytes), and nothing on the CPU.
  test('the memory planner counts the scratch a CUDA training step reserves', () => {
    const at = (device: 'cpu' | 'cuda', batch: number, seq: number) =>
      estimateMemory({ config: CFG, device, precision: 'fp32', batch, seq, available: 1e12 });
    const small = at('cuda', B, T);
    const big = at('cuda', 64, 32);
    expect(small.scratch).toBeGreaterThan(0);
    expect(big.scratch).toBeGreaterThan(small.scratch);
    expect(at('cpu', B, T).scratch).toBe(0);
    expect(small.total - at('cpu', B, T).total).toBe(small.scratch);
    expect(estimateMemory({ config: CFG, device: 'cuda', precision: 'fp32', available: 1e12 }).scratch).toBeGreaterThan(0); // the norm's
  });

  // With deferLoss the micro-batches leave their losses on the device and
  // step() copies the gradient's sum of squares and the losses' sum back
  // together: one copy to the host and one synchronize per step, however
  // many micro-batches, and no other call that waits for the device (the ids
  // go up queued); the numbers are those of the plain calls, bit for bit
  // (the losses' mean, the norms, the weights).
  for (const precision of ['fp32', 'bf16'] as const) {
    test(`a deferred-loss step of 3 micro-batches copies back once (cuda, ${precision})`, async () => {
      const count = addon.emuHostSyncs!;
      const A = 3;
      const plain = await GPT.create(CFG, { device: 'cuda', precision, seed: 9 });
      const deferred = await GPT.create(CFG, { device: 'cuda', precision, seed: 9 });
      try {
        const shape = { batch: B, seq: T };
        for (let s = 0; s < 3; ++s) {
          const batches = Array.from({ length: A }, (_, i) => batch(100 + 10 * s + i));
          let sum = 0;
          for (const b of batches) sum += await plain.forwardBackward(b.tokens, b.targets, shape);
          const want = await plain.step({ lr: 1e-3, weightDecay: 0.1, gradClip: 0.5 });
          count({ reset: true });
          for (const b of batches) expect(await deferred.forwardBackward(b.tokens, b.targets, shape, { deferLoss: true })).toBeNaN();
          const got = await deferred.step({ lr: 1e-3, weightDecay: 0.1, gradClip: 0.5 });
          const c = count({ reset: true });
          expect(got).toEqual({ ...want, loss: sum / A });
          expect(Object.is(got.loss, sum / A) && Object.is(got.gradNorm, want.gradNorm)).toBe(true);
          // The first step allocates the gradient accumulation buffer (at its
          // second micro-batch); the rest nothing.
          expect({
            step: s,
            toHost: c.toHost,
            toHostBytes: c.toHostBytes,
            toDevice: c.toDevice,
            toDeviceAsync: c.toDeviceAsync,
            streamSync: c.streamSync,
            other: c.deviceSync + c.eventSync,
            launchesAfterToHost: c.launchesAfterToHost,
            malloc: s > 0 ? c.malloc : 0,
          }).toEqual({ step: s, toHost: 1, toHostBytes: 16, toDevice: 0, toDeviceAsync: 2 * A + 1, streamSync: 1, other: 0, launchesAfterToHost: 0, malloc: 0 });
        }
        const a = plain.parameters();
        const b = deferred.parameters();
        for (const [name, w] of a) expect(Buffer.from(b.get(name)!.buffer).equals(Buffer.from(w.buffer))).toBe(true);
        // zeroGrad drops deferred losses with the gradients; a plain step reports none.
        await deferred.forwardBackward(batch(7).tokens, batch(7).targets, shape, { deferLoss: true });
        deferred.zeroGrad();
        await deferred.forwardBackward(batch(8).tokens, batch(8).targets, shape);
        expect((await deferred.step({ lr: 1e-3 })).loss).toBeUndefined();
      } finally {
        await plain.dispose();
        await deferred.dispose();
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
