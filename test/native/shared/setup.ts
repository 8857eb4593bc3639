/**
 * Setup shared by the native tests: the tiny model most of them train, a
 * model that is disposed of whatever the test does, and the restoring of the
 * process-wide runtime settings a test file changes.
 */
import { GPTConfig } from '../../../lib/config';
import { CreateOptions, GPT } from '../../../lib/model';
import { getIsa, getThreads, IsaName, setIsa, setThreads } from '../../../lib/runtime';

/** Two layers, four heads of 8, 97 tokens, dense attention over 17 positions; `over` changes any field. */
export function tinyConfig(over: Partial<GPTConfig> = {}): GPTConfig {
  return {
    n_layer: 2,
    n_head: 4,
    n_embd: 32,
    n_positions: 17,
    vocab_size: 97,
    layer_norm_epsilon: 1e-5,
    attention_pattern: 'dense',
    attention_window: null,
    ...over,
  };
}

/**
 * Puts the instruction-set path and the thread count back as they are now
 * after all the file's tests; returns them for tests that restore sooner.
 */
export function restoreRuntimeAfterAll(): { isa: IsaName; threads: number } {
  const isa = getIsa();
  const threads = getThreads();
  afterAll(() => {
    setIsa(isa);
    setThreads(threads);
  });
  return { isa, threads };
}

/** Creates a model, runs `fn` with it and disposes of it, whether `fn` succeeds or throws. */
export async function withModel<R>(config: GPTConfig, options: CreateOptions, fn: (model: GPT) => Promise<R>): Promise<R> {
  const model = await GPT.create(config, options);
  try {
    return await fn(model);
  } finally {
    await model.dispose();
  }
}

/**
 * Relative L2 error of `got` against `ref`: Infinity where the lengths differ
 * or `got` holds a value that is not finite.
 */
export function relL2(got: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (got.length !== ref.length) return Infinity;
  let num = 0;
  let den = 0;
  for (let i = 0; i < ref.length; i++) {
    if (!Number.isFinite(got[i])) return Infinity;
    num += (got[i] - ref[i]) ** 2;
    den += ref[i] ** 2;
  }
  return Math.sqrt(num / den);
}

/**
 * A CPU model with the byte tokenizer, created before the enclosing describe
 * block's tests and disposed of after them; the returned function gives it.
 */
export function byteModelForSuite(config: GPTConfig, seed: number): () => GPT {
  let model: GPT | undefined;
  beforeAll(async () => {
    model = await GPT.create(config, { device: 'cpu', seed });
    model.tokenizer = 'byte';
  });
  afterAll(() => model?.dispose());
  return () => {
    if (!model) throw new Error('the suite model is not created yet');
    return model;
  };
}
