/**
 * docs/ARCHITECTURE.md "Concurrency" with generate(): calls on one model run in FIFO order,
 * so a generate() issued between a forwardBackward() and a step() sees the
 * weights from before that step, whatever the timing; and dispose() waits for
 * a running generate() instead of cutting it off.
 */
import { GPTConfig } from '../../lib/config';
import { GPT } from '../../lib/model';
import { tinyConfig } from './shared/setup';

const CFG: GPTConfig = tinyConfig({ n_positions: 64 });
const prompt = new Int32Array([1, 2, 3]);
const tok = new Int32Array(4 * 16).map((_, i) => (i * 7) % 97);
const GEN = { maxTokens: 40, temperature: 0, ignoreEos: true };

test('generate() between forwardBackward() and step() sees the weights before the step', async () => {
  const m = await GPT.create(CFG, { device: 'cpu', seed: 5 });
  const alone = await m.generate(prompt, GEN);
  const order: string[] = [];
  const fb = m.forwardBackward(tok, tok, { batch: 4, seq: 16 }).then(() => order.push('forwardBackward'));
  const g = m.generate(prompt, GEN).then((r) => (order.push('generate'), r));
  const st = m.step({ lr: 5 }).then(() => order.push('step'));
  const [, got] = await Promise.all([fb, g, st]);
  expect(order).toEqual(['forwardBackward', 'generate', 'step']);
  expect(got.tokens).toEqual(alone.tokens);
  await m.dispose();
});

test('dispose() waits for a running generate(), which completes', async () => {
  const m = await GPT.create(CFG, { device: 'cpu', seed: 5 });
  const alone = await m.generate(prompt, GEN);
  const g = m.generate(prompt, GEN);
  const d = m.dispose();
  const got = await g;
  await d;
  expect(got.tokens).toEqual(alone.tokens);
  await expect(m.generate(prompt, GEN)).rejects.toMatchObject({ code: 'DISPOSED' });
});
