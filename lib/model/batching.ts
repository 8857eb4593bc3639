/**
 * The model's continuous batch (lib/generate/scheduler.ts): generate() and
 * stream() of lib/model.ts join it and run the decode loop of
 * lib/generate.ts on the rows it gives them.
 */
import { GPTConfig } from '../config';
import { DisposedError } from '../errors';
import {
  generate as generateWith,
  GenerateOptions,
  GenerationChunk,
  GenerationResult,
  Prompt,
  stream as streamWith,
  TokenCodec,
} from '../generate';
import type { DecodeNative } from '../generate/native';
import { BatchScheduler, DEFAULT_PREFILL_CHUNK } from '../generate/scheduler';
import { kvCacheBytes, LimitsDevice, LimitsPrecision } from '../limits';
import { loadAddon } from '../native';
import type { NativeModelHandle } from './native';
import type { CallQueue } from './queue';

/** The batch of a model: `handle` is null once the model is disposed. */
export function modelScheduler(
  calls: CallQueue,
  handle: () => NativeModelHandle | null,
  config: GPTConfig,
  maxBatch: number,
  prefillChunk: number = DEFAULT_PREFILL_CHUNK,
  device: LimitsDevice = 'cpu',
  precision: LimitsPrecision = 'fp32',
): BatchScheduler {
  const live = (): NativeModelHandle => {
    const h = handle();
    if (!h) throw new DisposedError('The model was disposed during generation');
    return h;
  };
  return new BatchScheduler(
    {
      enqueue: (fn) => calls.enqueue(fn),
      issued: () => calls.issued,
      closed: () => calls.isClosed,
      open: (capacities, abort, extendMax) => loadAddon<DecodeNative>().decodeOpen(live(), { capacities, abort, extendMax }),
      alive: () => void live(),
      vocabSize: config.vocab_size,
      nPositions: config.n_positions,
      // A banded layer's ring holds window + chunk - 1 entries (native/core/decode.h).
      cacheBytes: (caps) =>
        kvCacheBytes(bandedRing(config, Math.min(prefillChunk, config.n_positions)), caps, device, precision),
    },
    maxBatch,
    prefillChunk,
  );
}

/** The config whose window is the ring a banded layer holds in a session extended by `chunk` tokens at a time. */
function bandedRing(config: GPTConfig, chunk: number): GPTConfig {
  const w = config.attention_window;
  return w === null || w === undefined ? config : { ...config, attention_window: w + chunk - 1 };
}

/** Sequences a call decodes: one per prompt. */
function weightOf(prompt: unknown): number {
  return Array.isArray(prompt) ? Math.max(1, prompt.length) : 1;
}

/** The options' signal, if it is one (the options are validated later, by the decode loop). */
function signalOf(options: unknown): AbortSignal | undefined {
  if (typeof options !== 'object' || options === null) return undefined;
  const s = (options as { signal?: unknown }).signal;
  return typeof s === 'object' && s !== null && typeof (s as AbortSignal).addEventListener === 'function' &&
    typeof (s as AbortSignal).aborted === 'boolean'
    ? (s as AbortSignal)
    : undefined;
}

export function batchedGenerate(
  s: BatchScheduler,
  codec: TokenCodec,
  prompt: Prompt | Prompt[],
  options?: GenerateOptions,
): Promise<GenerationResult | GenerationResult[]> {
  return s.with(weightOf(prompt), signalOf(options), (d) => generateWith(d, codec, prompt, options));
}

export async function* batchedStream(
  s: BatchScheduler,
  codec: TokenCodec,
  prompt: Prompt | Prompt[],
  options?: GenerateOptions,
): AsyncGenerator<GenerationChunk, void, undefined> {
  const t = await s.join(weightOf(prompt), signalOf(options));
  try {
    yield* streamWith(t.decoder, codec, prompt, options);
  } finally {
    t.leave();
  }
}
