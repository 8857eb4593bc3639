/**
 * The checked-in Hugging Face GPT-2 fixture (test/fixtures/make-hf-fixture.py, an
 * independent writer) loads in all three dtypes, and the fp16/bf16 variants
 * agree with fp32 within their precision.
 */
import * as path from 'node:path';
import { readCheckpoint } from '../../lib/checkpoint';

const root = path.join(__dirname, '..', 'fixtures', 'hf-gpt2-tiny');

test('fp32, fp16 and bf16 variants load and agree', async () => {
  const f32 = await readCheckpoint(path.join(root, 'fp32'));
  expect(f32.source).toBe('huggingface');
  for (const [variant, tol] of [['fp16', 1e-3], ['bf16', 8e-3]] as const) {
    const r = await readCheckpoint(path.join(root, variant));
    expect(r.config).toEqual(f32.config);
    expect([...r.tensors.keys()]).toEqual([...f32.tensors.keys()]);
    for (const [name, a] of f32.tensors) {
      const b = r.tensors.get(name)!;
      let err = 0;
      let norm = 0;
      for (let i = 0; i < a.length; i++) {
        err += (a[i] - b[i]) ** 2;
        norm += a[i] ** 2;
      }
      expect(Math.sqrt(err / Math.max(norm, 1e-30))).toBeLessThan(tol);
    }
  }
});
