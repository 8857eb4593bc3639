/**
 * The fused classifier on the CUDA backend against the CPU backend: the
 * model's losses, gradient norms, first-step gradients, forward() logits and
 * loss() agree within fp32 tolerance (relative 1e-5: the GEMMs sum in
 * another order than the CPU's; 1e-2 with bf16 matmul inputs), with the chunk the backend picks (one for
 * this batch) and with chunks of 7 rows (44 chunks, a ragged last one of 4),
 * which GPT_ENGINE_CLASSIFIER_ROWS forces in a child process
 * (test/helpers/child-classifier.js). The classifier's ops alone are in the
 * op table (test/ops/op-table.js, test/cuda/ops.test.ts). Runs where the cuda
 * project runs (a GPU, or the SIMT emulator build; jest.config.js).
 */
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';

interface Run { losses: number[]; norms: number[]; grads: Record<string, string>; logits: string; evalLoss: number; error?: string }

const config = {
  n_layer: 1, n_head: 2, n_embd: 32, n_positions: 64, vocab_size: 301,
  layer_norm_epsilon: 1e-5, attention_pattern: 'dense', attention_window: null,
};
const B = 5, T = 61;

function run(device: 'cpu' | 'cuda', rows: number | null, precision: 'fp32' | 'bf16' = 'fp32', storage: 'fp32' | 'bf16' = 'fp32'): Run {
  const env = { ...process.env };
  delete env.GPT_ENGINE_CLASSIFIER_ROWS;
  if (rows !== null) env.GPT_ENGINE_CLASSIFIER_ROWS = String(rows);
  // CUDA in bf16 stores its activations in bf16 unless told otherwise (docs/ARCHITECTURE.md "Precision").
  env.GPT_ENGINE_BF16_STORAGE = storage === 'bf16' ? '1' : '0';
  const arg = JSON.stringify({ precision, batch: B, seq: T, config, device });
  const text = execFileSync(process.execPath, [path.join(__dirname, '..', 'helpers', 'child-classifier.js'), arg], { env, encoding: 'utf8', timeout: 120000 });
  const o = JSON.parse(text) as Run;
  if (o.error) throw new Error(`${device}, rows ${rows}: ${o.error}`);
  return o;
}

const floats = (b64: string): Float32Array => {
  const b = Buffer.from(b64, 'base64');
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
};
function relL2(got: Float32Array, want: Float32Array): number {
  if (got.length !== want.length) return Infinity;
  let num = 0, den = 0;
  for (let i = 0; i < want.length; ++i) {
    if (!Number.isFinite(got[i])) return Infinity;
    num += (got[i] - want[i]) ** 2;
    den += want[i] ** 2;
  }
  return Math.sqrt(num / den);
}
const rel = (a: number, b: number): number => Math.abs(a - b) / Math.abs(b);

describe('the fused classifier on cuda matches the cpu (fp32)', () => {
  const cpu = run('cpu', null);

  test.each([['as the backend picks', null], ['of 7 rows (a ragged last one)', 7]] as const)('chunks %s', (_label, rows) => {
    const gpu = run('cuda', rows);
    for (let i = 0; i < 2; ++i) {
      expect(rel(gpu.losses[i], cpu.losses[i])).toBeLessThan(1e-5);
      expect(rel(gpu.norms[i], cpu.norms[i])).toBeLessThan(1e-5);
    }
    expect(rel(gpu.evalLoss, cpu.evalLoss)).toBeLessThan(1e-5);
    expect(relL2(floats(gpu.logits), floats(cpu.logits))).toBeLessThan(1e-5);
    expect(Object.keys(gpu.grads).sort()).toEqual(Object.keys(cpu.grads).sort());
    for (const k of Object.keys(cpu.grads)) {
      const e = relL2(floats(gpu.grads[k]), floats(cpu.grads[k]));
      if (!(e < 1e-5)) throw new Error(`${k}: relative L2 error ${e}`);
    }
  });
});

describe('the fused classifier on cuda matches the cpu (bf16, fp32 storage)', () => {
  // bf16 GEMM inputs on both backends; the tolerance of the bf16 matmuls
  // (relative 1e-2), as test/cuda/train.test.ts holds whole steps to.
  test.each([['as the backend picks', null], ['of 7 rows (a ragged last one)', 7]] as const)('chunks %s', (_label, rows) => {
    const cpu = run('cpu', null, 'bf16');
    const gpu = run('cuda', rows, 'bf16');
    for (let i = 0; i < 2; ++i) {
      expect(rel(gpu.losses[i], cpu.losses[i])).toBeLessThan(1e-2);
      expect(rel(gpu.norms[i], cpu.norms[i])).toBeLessThan(1e-2);
    }
    expect(rel(gpu.evalLoss, cpu.evalLoss)).toBeLessThan(1e-2);
    expect(relL2(floats(gpu.logits), floats(cpu.logits))).toBeLessThan(1e-2);
    for (const k of Object.keys(cpu.grads)) {
      const e = relL2(floats(gpu.grads[k]), floats(cpu.grads[k]));
      if (!(e < 1e-2)) throw new Error(`${k}: relative L2 error ${e}`);
    }
  });
});

describe('the fused classifier on cuda matches the cpu (bf16, bf16 storage)', () => {
  // ln_f's output and the head's weight copy in bf16 (the head's GEMMs then
  // mix them with the fp32 logits' gradient): the first step's losses and
  // gradients within the bf16 tolerance (measured 2e-7 and 2e-5 relative,
  // gradients up to 3.0e-3). The logits and loss after two AdamW steps drift
  // further (measured 2.6e-2 and 2e-5): the first steps' updates are about
  // lr times the sign of each gradient element, so elements whose gradient
  // is near zero move by different amounts; held to 6e-2 and 1e-3.
  test.each([['as the backend picks', null], ['of 7 rows (a ragged last one)', 7]] as const)('chunks %s', (_label, rows) => {
    const cpu = run('cpu', null, 'bf16');
    const gpu = run('cuda', rows, 'bf16', 'bf16');
    for (let i = 0; i < 2; ++i) {
      expect(rel(gpu.losses[i], cpu.losses[i])).toBeLessThan(1e-3);
      expect(rel(gpu.norms[i], cpu.norms[i])).toBeLessThan(1e-2);
    }
    expect(rel(gpu.evalLoss, cpu.evalLoss)).toBeLessThan(1e-3);
    expect(relL2(floats(gpu.logits), floats(cpu.logits))).toBeLessThan(6e-2);
    for (const k of Object.keys(cpu.grads)) {
      const e = relL2(floats(gpu.grads[k]), floats(cpu.grads[k]));
      if (!(e < 1e-2)) throw new Error(`${k}: relative L2 error ${e}`);
    }
  });
});
