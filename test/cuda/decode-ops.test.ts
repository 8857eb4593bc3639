/**
 * The CUDA backend's decoding ops (kv_store, decode_attention, embedding_at)
 * against the CPU backend on fresh random inputs (a new seed each run, printed
 * on failure), with NaN in every cache slot a row must not read and
 * NaN-poisoned outputs: relative L2 below 1e-5 for attention (fp32 cache and
 * accumulation on both), bitwise equality for the store and the embedding,
 * and the same result twice on the GPU. The bf16 cache (cacheType 'bf16')
 * against a float64 reference on the bf16-rounded keys and values: the store
 * bitwise, attention below 1e-5, rows alone bitwise as in the batch
 * (decode-op-table.js). Runs only where a GPU is present (jest.config.js);
 * the GPU check (npm run gpu-check) runs the same cases.
 */
import { loadAddon } from '../../lib/native';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const dops = require('../ops/decode-op-table.js') as {
  buildDecodeCases(seed: number): Array<{ name: string }>;
  runDecodeOpChecks(
    addon: unknown,
    device: string,
    opts: { seed?: number; only?: Set<string>; cases?: Array<{ name: string }> },
  ): Promise<Array<{ name: string; pass: boolean; errors: Record<string, number>; error?: string; deterministic?: boolean }>>;
  buildDecodeBf16Cases(seed: number): Array<{ name: string }>;
  runDecodeBf16Checks(
    addon: unknown,
    device: string,
    opts: { seed?: number; only?: Set<string>; cases?: Array<{ name: string }> },
  ): Promise<Array<{ name: string; pass: boolean; errors: Record<string, number>; error?: string; deterministic?: boolean }>>;
};

type DecodeOp = (o: Record<string, unknown>) => Promise<Record<string, Float32Array | number>>;
const addon = loadAddon<{ decodeOp: DecodeOp }>();
const SEED = (Date.now() & 0x7fffffff) >>> 0;

describe(`CUDA decoding ops match the CPU backend (seed ${SEED})`, () => {
  const cases = dops.buildDecodeCases(SEED);
  for (const c of cases) {
    test(c.name, async () => {
      const [r] = await dops.runDecodeOpChecks(addon, 'cuda', { seed: SEED, only: new Set([c.name]), cases });
      expect(r).toBeDefined();
      expect(r.error).toBeUndefined();
      if (!r.pass) throw new Error(`${c.name} (seed ${SEED}): errors ${JSON.stringify(r.errors)} deterministic=${r.deterministic}`);
    });
  }

  test('a head size above 256 is a clear error, not a crash', async () => {
    const H = 1, D = 264, P = 4;
    const cache = new Float32Array(2 * H * P * D);
    await expect(
      addon.decodeOp({ device: 'cuda', op: 'decode_attention', M: 1, H, D, cache, q: new Float32Array(D),
        kOffset: Int32Array.of(0), vOffset: Int32Array.of(H * P * D), slots: Int32Array.of(P), pos: Int32Array.of(3),
        first: Int32Array.of(0) }),
    ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('head_dim 264') });
  });
});

describe(`CUDA decoding ops with a bf16 cache match the float64 reference (seed ${SEED})`, () => {
  const cases = dops.buildDecodeBf16Cases(SEED);
  for (const c of cases) {
    test(c.name, async () => {
      const [r] = await dops.runDecodeBf16Checks(addon, 'cuda', { seed: SEED, only: new Set([c.name]), cases });
      expect(r).toBeDefined();
      expect(r.error).toBeUndefined();
      if (!r.pass) throw new Error(`${c.name} (seed ${SEED}): errors ${JSON.stringify(r.errors)} deterministic=${r.deterministic}`);
    });
  }

  const H = 1, D = 8, P = 4;
  const rows = { M: 1, H, D, kOffset: Int32Array.of(0), vOffset: Int32Array.of(H * P * D), slots: Int32Array.of(P),
    pos: Int32Array.of(2), first: Int32Array.of(0) };
  test('the CPU backend takes no bf16 cache: a clear error', async () => {
    const cache = new Float32Array(2 * H * P * D);
    await expect(addon.decodeOp({ device: 'cpu', op: 'kv_store', cacheType: 'bf16', ...rows, cache,
      k: new Float32Array(D), v: new Float32Array(D) })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT',
      message: expect.stringContaining('kv_store cache') });
    await expect(addon.decodeOp({ device: 'cpu', op: 'decode_attention', cacheType: 'bf16', ...rows, cache,
      q: new Float32Array(D) })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT',
      message: expect.stringContaining('decode_attention cache') });
  });
  test('an unknown cacheType is a clear error', () => {
    expect(() => addon.decodeOp({ device: 'cuda', op: 'decode_attention', cacheType: 'fp16', ...rows,
      cache: new Float32Array(2 * H * P * D), q: new Float32Array(D) })).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT',
        message: expect.stringContaining("'fp32' or 'bf16' for cacheType but received 'fp16'") }));
  });
});
