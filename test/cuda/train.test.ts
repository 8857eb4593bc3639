/**
 * A few training steps of a tiny model on the CUDA backend against the CPU
 * backend, from the same weights and batches: the losses and gradient norms
 * agree to bf16 tolerance, and training lowers the loss on both. Runs where
 * the cuda project runs (a GPU, or the SIMT emulator build; jest.config.js).
 */
import { GPTConfig } from '../../lib/config';
import { GPT } from '../../lib/model';
import { Rng } from '../../lib/rng';

// Head size 64 (a size of the bf16 tensor-core attention kernels, so bf16
// training runs them); one dense and one banded layer; a vocabulary that
// needs padding.
const CFG: GPTConfig = {
  n_layer: 2,
  n_head: 2,
  n_embd: 128,
  n_positions: 48,
  vocab_size: 97,
  layer_norm_epsilon: 1e-5,
  attention_pattern: 'alternating',
  attention_window: 9,
};
const B = 2;
const T = 40;
const STEPS = 4;

function batch(seed: number) {
  const rng = new Rng(seed);
  // A learnable pattern (next token = token + 1 mod 97) with some ignored targets.
  const tokens = new Int32Array(B * T).map(() => rng.nextInt(CFG.vocab_size));
  const targets = new Int32Array(B * T).map((_, i) => (i % 7 === 3 ? -1 : (tokens[i] + 1) % CFG.vocab_size));
  return { tokens, targets };
}

async function train(model: GPT): Promise<{ losses: number[]; norms: number[] }> {
  const losses: number[] = [];
  const norms: number[] = [];
  for (let s = 0; s < STEPS; ++s) {
    const { tokens, targets } = batch(100 + (s % 2));
    losses.push(await model.forwardBackward(tokens, targets, { batch: B, seq: T }));
    const r = await model.step({ lr: 3e-3, weightDecay: 0.1, gradClip: 1 });
    norms.push(r.gradNorm);
  }
  return { losses, norms };
}

test('training steps on cuda match the cpu to bf16 tolerance', async () => {
  const cpu = await GPT.create(CFG, { device: 'cpu', precision: 'bf16', seed: 11 });
  const gpu = await GPT.create(CFG, { device: 'cuda', precision: 'bf16', seed: 11 });
  try {
    gpu.setParameters(cpu.parameters());
    const a = await train(cpu);
    const b = await train(gpu);
    for (let s = 0; s < STEPS; ++s) {
      expect(Number.isFinite(b.losses[s])).toBe(true);
      expect(Math.abs(b.losses[s] - a.losses[s]) / a.losses[s]).toBeLessThan(1e-2);
      expect(Math.abs(b.norms[s] - a.norms[s]) / a.norms[s]).toBeLessThan(3e-2);
    }
    // Steps 0 and 2 see the same batch: both backends learned from step 0.
    expect(a.losses[2]).toBeLessThan(a.losses[0]);
    expect(b.losses[2]).toBeLessThan(b.losses[0]);
    // The weights after training agree too.
    const pa = cpu.parameters();
    const pb = gpu.parameters();
    let num = 0, den = 0;
    for (const [name, x] of pa) {
      const y = pb.get(name)!;
      for (let i = 0; i < x.length; ++i) {
        num += (x[i] - y[i]) ** 2;
        den += x[i] ** 2;
      }
    }
    expect(Math.sqrt(num / den)).toBeLessThan(1e-2);
  } finally {
    await cpu.dispose();
    await gpu.dispose();
  }
});
