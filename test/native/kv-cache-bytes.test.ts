/**
 * kvCacheBytes (lib/limits.ts) by device and precision: the bf16 key/value
 * cache of a bf16 model on CUDA (Backend::kv_cache_dtype) takes 2 bytes an
 * element, every other cache 4, and GPT_ENGINE_BF16_STORAGE=0 keeps CUDA's
 * fp32. test/cuda/decode-kv-bf16.test.ts holds a session's cacheBytes to it.
 */
import { GPTConfig } from '../../lib/config';
import { kvCacheBytes, storageType } from '../../lib/limits';
import { tinyConfig } from './shared/setup';

describe('the key/value cache in bytes by device and precision', () => {
  const c: GPTConfig = { ...tinyConfig(), n_layer: 2, attention_pattern: 'alternating', attention_window: 4 };
  const elems = 2 * c.n_embd * (10 + 4 + 3 + 3); // capacities 10 and 3: dense 10 + banded 4, dense 3 + banded 3
  const saved = process.env.GPT_ENGINE_BF16_STORAGE;
  afterEach(() => {
    if (saved === undefined) delete process.env.GPT_ENGINE_BF16_STORAGE;
    else process.env.GPT_ENGINE_BF16_STORAGE = saved;
  });

  test('bf16 on CUDA in bf16 halves it; fp32 otherwise', () => {
    delete process.env.GPT_ENGINE_BF16_STORAGE;
    expect(kvCacheBytes(c, [10, 3])).toBe(4 * elems);
    expect(kvCacheBytes(c, [10, 3], 'cpu', 'bf16')).toBe(4 * elems);
    expect(kvCacheBytes(c, [10, 3], 'cuda', 'fp32')).toBe(4 * elems);
    expect(kvCacheBytes(c, [10, 3], 'cuda', 'bf16')).toBe(2 * elems);
    expect([storageType('cpu', 'bf16'), storageType('cuda', 'fp32'), storageType('cuda', 'bf16')]).toEqual(['fp32', 'fp32', 'bf16']);
  });

  test('GPT_ENGINE_BF16_STORAGE=0 keeps the fp32 cache on CUDA', () => {
    process.env.GPT_ENGINE_BF16_STORAGE = '0';
    expect(kvCacheBytes(c, [10, 3], 'cuda', 'bf16')).toBe(4 * elems);
    expect(storageType('cuda', 'bf16')).toBe('fp32');
  });
});
