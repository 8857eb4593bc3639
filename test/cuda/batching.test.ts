/**
 * Continuous batching on the CUDA backend (a GPU, or the SIMT emulator
 * build): requests arriving at random times, with random lengths, sampling,
 * stop strings, aborts and breaks, decoded in one batch of at most 3
 * sequences; each request's tokens and the logits each token was drawn from
 * are bitwise those of the request run alone, in fp32 and bf16; and again
 * with prompts prefilled in chunks of 5 (a prefill, then extends whose rows
 * attend over the cache with the decode attention). This holds
 * on CUDA because every kernel of a prefill and a step computes a row from
 * that row alone in a fixed order: the GEMMs tile over rows without
 * splitting K, LayerNorm and the embedding work per row, a prompt's
 * attention runs on its own rows, and the decode attention splits a row's
 * keys by a fixed chunk size (native/cuda/decode_attention.cu).
 */
import { GPTConfig } from '../../lib/config';
import { modelScheduler } from '../../lib/model/batching';
import { createNativeModel, NativeModelHandle } from '../../lib/model/native';
import { CallQueue } from '../../lib/model/queue';
import { aloneAndTogether, expectSame, randomRequests } from '../native/shared/batching-driver';

jest.setTimeout(600_000);

// Head size 64 (bf16 runs the tensor-core kernels), one dense and one
// banded layer, the byte vocabulary (padded to a multiple of 128).
const CFG: GPTConfig = {
  n_layer: 2,
  n_head: 2,
  n_embd: 128,
  n_positions: 32,
  vocab_size: 256,
  layer_norm_epsilon: 1e-5,
  attention_pattern: 'alternating',
  attention_window: 6,
};

describe.each(['fp32', 'bf16'] as const)('continuous batching on cuda in %s', (precision) => {
  let handle: NativeModelHandle;
  beforeAll(async () => {
    handle = await createNativeModel(CFG, 'cuda', precision, 9);
  });
  afterAll(() => handle?.dispose());

  test.each([undefined, 5])('random arrivals, stops, aborts, prefillChunk %s: each request bitwise as alone', async (chunk) => {
    const reqs = randomRequests((precision === 'fp32' ? 31 : 32) + (chunk ? 10 : 0), 10, CFG.vocab_size);
    const { alone, got, soloSteps, stats } = await aloneAndTogether(
      () => modelScheduler(new CallQueue(), () => handle, CFG, 3, chunk),
      reqs,
    );
    if (chunk) expect(stats.extends).toBeGreaterThan(3);
    got.forEach((g, i) => expectSame(i, g, alone[i]));
    expect(stats.steps).toBeLessThan(soloSteps);
    expect(stats.stepRows / stats.steps).toBeGreaterThan(1.2);
    expect(stats).toMatchObject({ batchSize: 0, running: 0, queued: 0 });
  });
});
