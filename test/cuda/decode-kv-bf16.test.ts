/**
 * The bf16 key/value cache of decoding on CUDA (Backend::kv_cache_dtype: bf16
 * under bf16 unless GPT_ENGINE_BF16_STORAGE=0, fp32 under fp32; the CPU's is
 * fp32 always). One script (test/helpers/child-kv-cache.js, in a child
 * process: the switch is read from the real environment) on a model with a
 * dense and a banded layer (head size 64, so the decode attention takes its
 * 16-byte loads): prompts prefilled in chunks (a prefill, then extends
 * attending over the cache), steps until the banded layer's ring has wrapped
 * twice, then a resize that keeps the sequences' caches and one more step.
 * On CUDA in bf16 with the bf16 cache every logits row is held to the CPU's
 * (the same weights, bf16, fp32 cache) within KV_TOL relative L2; the same
 * script with CUDA's fp32 cache is measured too, and the two CUDA runs must
 * differ (the cache is really rounded). A sequence's logits are bitwise the
 * same decoded alone or in a batch with the bf16 cache. The cache's bytes
 * halve under bf16, and kvCacheBytes (lib/limits.ts) says so.
 * Runs where the cuda project runs (a GPU, or the SIMT emulator build).
 */
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';

import { GPTConfig } from '../../lib/config';
import { kvCacheBytes } from '../../lib/limits';
import { Rng } from '../../lib/rng';
import { relL2 } from '../native/shared/setup';

jest.setTimeout(600_000);

const CFG: GPTConfig = {
  n_layer: 2,
  n_head: 2,
  n_embd: 128,
  n_positions: 32,
  vocab_size: 97,
  layer_norm_epsilon: 1e-5,
  attention_pattern: 'alternating',
  attention_window: 6,
};
const CHUNK = 4; // extendMax: the banded ring holds 6 + 4 - 1 = 9 positions
const CAPS = [24, 24];
const STEPS = 12;
// Relative L2 of CUDA's logits (bf16 cache) against the CPU's (fp32 cache),
// both bf16 models, worst row of the script. Measured on the SIMT emulator
// over 7 draws of the tokens: 3.7e-3 to 4.9e-3 with the bf16 cache, 2.8e-3
// to 3.7e-3 with CUDA's fp32 cache (CUDA's prefill attention runs on tensor
// cores, the CPU's in fp32), 3.8e-3 to 4.9e-3 between CUDA's two caches (the
// cache's rounding, up to 2^-8 relative per element). The test prints its figures.
const KV_TOL = 1e-2;

const rng = new Rng(41);
const PROMPTS = [5, 9].map((n) => Array.from({ length: n }, () => rng.nextInt(CFG.vocab_size)));
const TOKENS = PROMPTS.map(() => Array.from({ length: STEPS + 1 }, () => rng.nextInt(CFG.vocab_size)));

interface Run {
  cacheBytes: number;
  rows: Float32Array[][];
}

/** The script in a child process on `device` at `precision`, GPT_ENGINE_BF16_STORAGE = `storage` (undefined: unset). */
function run(device: 'cpu' | 'cuda', precision: 'fp32' | 'bf16', storage?: string, alone = false): Run {
  const env = { ...process.env };
  delete env.GPT_ENGINE_BF16_STORAGE;
  if (storage !== undefined) env.GPT_ENGINE_BF16_STORAGE = storage;
  const n = alone ? 1 : PROMPTS.length;
  const arg = JSON.stringify({ device, precision, config: CFG, prompts: PROMPTS.slice(0, n), tokens: TOKENS.slice(0, n),
    steps: STEPS, chunk: CHUNK, caps: CAPS.slice(0, n), resize: true });
  const text = execFileSync(process.execPath, [path.join(__dirname, '..', 'helpers', 'child-kv-cache.js'), arg],
    { env, encoding: 'utf8', timeout: 300_000 });
  const o = JSON.parse(text) as { cacheBytes: number; rows: string[][]; error?: string };
  if (o.error) throw new Error(`${device} ${precision} (storage ${storage}): ${o.error}`);
  const floats = (s: string) => {
    const b = Buffer.from(s, 'base64');
    return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
  };
  return { cacheBytes: o.cacheBytes, rows: o.rows.map((r) => r.map(floats)) };
}

/** The largest relative L2 between matching rows. */
function worst(got: Run, want: Run): number {
  let e = 0;
  got.rows.forEach((rows, b) => {
    expect(rows.length).toBe(want.rows[b].length);
    rows.forEach((r, i) => (e = Math.max(e, relL2(r, want.rows[b][i]))));
  });
  return e;
}

const bitsOf = (a: Float32Array): Uint32Array => new Uint32Array(a.buffer, a.byteOffset, a.length);

describe('decoding on cuda keeps a bf16 key/value cache under bf16', () => {
  let cpu: Run, bf: Run, f32: Run;
  beforeAll(() => {
    cpu = run('cpu', 'bf16');
    bf = run('cuda', 'bf16');
    f32 = run('cuda', 'bf16', '0');
  });

  test('chunked prefill, steps over a wrapped ring and a resize follow the CPU', () => {
    // 7 calls for sequence 0, 8 for sequence 1, all of them compared.
    expect(bf.rows.map((r) => r.length)).toEqual([1 + 1 + STEPS + 1, 1 + 2 + STEPS + 1]);
    const errBf = worst(bf, cpu), errF32 = worst(f32, cpu), errCaches = worst(bf, f32);
    console.log(`bf16 cache vs CPU ${errBf.toExponential(2)}, fp32 cache vs CPU ${errF32.toExponential(2)}, ` +
      `bf16 vs fp32 cache ${errCaches.toExponential(2)} (relative L2 of the logits, worst row)`);
    expect(errBf).toBeLessThan(KV_TOL);
    expect(errF32).toBeLessThan(KV_TOL);
    // The cache's rounding shows, within its size.
    expect(errCaches).toBeGreaterThan(0);
    expect(errCaches).toBeLessThan(KV_TOL);
  });

  test("a sequence's logits are bitwise the same alone and in a batch (bf16 cache)", () => {
    const one = run('cuda', 'bf16', undefined, true);
    expect(one.cacheBytes).toBe(bf.cacheBytes / 2);
    expect(one.rows[0].length).toBe(bf.rows[0].length);
    one.rows[0].forEach((r, i) => expect(bitsOf(r)).toEqual(bitsOf(bf.rows[0][i])));
  });

  test('the cache takes 2 bytes an element under bf16, 4 under fp32 and with GPT_ENGINE_BF16_STORAGE=0', () => {
    const ring: GPTConfig = { ...CFG, attention_window: (CFG.attention_window as number) + CHUNK - 1 };
    const fp32 = kvCacheBytes(ring, CAPS);
    expect(fp32).toBe(4 * 2 * 2 * 128 * (24 + 9));
    expect(cpu.cacheBytes).toBe(fp32);
    expect(bf.cacheBytes).toBe(fp32 / 2);
    expect(f32.cacheBytes).toBe(fp32);
    expect(run('cuda', 'fp32').cacheBytes).toBe(fp32);
    const before = process.env.GPT_ENGINE_BF16_STORAGE;
    try {
      delete process.env.GPT_ENGINE_BF16_STORAGE;
      expect(kvCacheBytes(ring, CAPS, 'cuda', 'bf16')).toBe(fp32 / 2);
      expect(kvCacheBytes(ring, CAPS, 'cuda', 'fp32')).toBe(fp32);
      expect(kvCacheBytes(ring, CAPS, 'cpu', 'bf16')).toBe(fp32);
      process.env.GPT_ENGINE_BF16_STORAGE = '0';
      expect(kvCacheBytes(ring, CAPS, 'cuda', 'bf16')).toBe(fp32);
    } finally {
      if (before === undefined) delete process.env.GPT_ENGINE_BF16_STORAGE;
      else process.env.GPT_ENGINE_BF16_STORAGE = before;
    }
  });
});
