/**
 * forwardBackward({ deferLoss: true }) leaves the batch's loss in backend
 * memory and step() reports the mean of those losses (StepResult.loss). On
 * the CPU (Backend::loss_accumulate's reference body) the numbers are those
 * of the plain calls bit for bit; test/cuda/host-syncs.test.ts holds the CUDA
 * backend to the same and counts its one copy back.
 */
import { GPTConfig } from '../../lib/config';
import { GPT } from '../../lib/model';
import { Rng } from '../../lib/rng';

const CFG: GPTConfig = { n_layer: 2, n_head: 2, n_embd: 32, n_positions: 16, vocab_size: 37, layer_norm_epsilon: 1e-5, attention_pattern: 'dense', attention_window: null };
const B = 3;
const T = 11;
const shape = { batch: B, seq: T };

function batch(seed: number, ignoreAll = false) {
  const rng = new Rng(seed);
  const tokens = new Int32Array(B * T).map(() => rng.nextInt(CFG.vocab_size));
  const targets = new Int32Array(B * T).map((_, i) => (ignoreAll || i % 4 === 1 ? -1 : rng.nextInt(CFG.vocab_size)));
  return { tokens, targets };
}

test('deferred losses come back from step() with the bits of the plain calls', async () => {
  const plain = await GPT.create(CFG, { device: 'cpu', seed: 3 });
  const deferred = await GPT.create(CFG, { device: 'cpu', seed: 3 });
  try {
    for (let s = 0; s < 3; ++s) {
      // Step 1 has a micro-batch whose targets are all ignored: its mean is
      // NaN, and so is the step's.
      const batches = [batch(10 * s), batch(10 * s + 1, s === 1), batch(10 * s + 2)];
      let sum = 0;
      for (const b of batches) sum += await plain.forwardBackward(b.tokens, b.targets, shape);
      const want = await plain.step({ lr: 1e-2, gradClip: 1 });
      for (const b of batches) expect(await deferred.forwardBackward(b.tokens, b.targets, shape, { deferLoss: true })).toBeNaN();
      const got = await deferred.step({ lr: 1e-2, gradClip: 1 });
      expect(Object.is(got.loss, sum / batches.length)).toBe(true);
      expect(Number.isNaN(got.loss!)).toBe(s === 1);
      expect({ ...got, loss: 0 }).toEqual({ ...want, loss: 0 });
    }
    const a = plain.parameters();
    const b = deferred.parameters();
    for (const [name, w] of a) expect(Buffer.from(b.get(name)!.buffer).equals(Buffer.from(w.buffer))).toBe(true);
  } finally {
    await plain.dispose();
    await deferred.dispose();
  }
});

test('a step reports no loss without deferred batches, and zeroGrad drops them', async () => {
  const model = await GPT.create(CFG, { device: 'cpu', seed: 4 });
  try {
    const b = batch(1);
    await model.forwardBackward(b.tokens, b.targets, shape);
    expect((await model.step({ lr: 1e-3 })).loss).toBeUndefined();
    await model.forwardBackward(b.tokens, b.targets, shape, { deferLoss: true });
    model.zeroGrad();
    const loss = await model.forwardBackward(b.tokens, b.targets, shape, { deferLoss: false });
    expect(Number.isFinite(loss)).toBe(true);
    expect((await model.step({ lr: 1e-3 })).loss).toBeUndefined();
    await model.forwardBackward(b.tokens, b.targets, shape, { deferLoss: true });
    const r = await model.step({ lr: 1e-3 });
    expect(Number.isFinite(r.loss!)).toBe(true);
  } finally {
    await model.dispose();
  }
});

test('bad forwardBackward options are refused, naming the field', async () => {
  const model = await GPT.create(CFG, { device: 'cpu', seed: 4 });
  try {
    const b = batch(1);
    expect(() => model.forwardBackward(b.tokens, b.targets, shape, { deferLoss: 1 as unknown as boolean })).toThrow(
      /Expected a boolean for deferLoss but received 1/,
    );
    expect(() => model.forwardBackward(b.tokens, b.targets, shape, { defer: true } as never)).toThrow(/defer/);
    expect(model.accumulatedTargets()).toBe(0);
  } finally {
    await model.dispose();
  }
});
