/**
 * The Decoder over a native model: KV-cache sessions of
 * native/addon/decode_binding.cc (the math of a decode step lives in
 * native/core/decode.*).
 */
import { callNative, callNativeSync } from '../errors';
import { loadAddon } from '../native';
import { Decoder } from './types';

/** Prompts longer than this are prefilled in chunks of this many tokens (GPT.create/load `prefillChunk`). */
export const DEFAULT_PREFILL_CHUNK = 256;
/** The largest prefillChunk accepted (chunks are at most n_positions tokens in any case). */
export const MAX_PREFILL_CHUNK = 1 << 20;

/** The decode session of native/addon/decode_binding.cc. Internal. */
export interface NativeDecodeSession {
  /** Sequences (follows resize()). */
  readonly batch: number;
  readonly vocabSize: number;
  /** The most tokens one extend() appends to a sequence (it sizes the rings of banded layers). */
  readonly extendMax: number;
  prefill(o: { tokens: Int32Array; lengths: Int32Array }): Promise<Float32Array>;
  /**
   * Continues sequence b from its cache with lengths[b] tokens (0 leaves it
   * as it is): the chunks after the first of a chunked prefill.
   */
  extend(o: { tokens: Int32Array; lengths: Int32Array }): Promise<Float32Array>;
  step(o: { tokens: Int32Array; active: Uint8Array }): Promise<Float32Array>;
  /** Sets the sequences' capacities: unchanged ones keep their caches, changed and new ones start empty. */
  resize(o: { capacities: Int32Array }): void;
  cacheBytes(): number;
  scratchBytes(): number;
  positions(): Int32Array;
  close(): void;
}

export interface DecodeNative {
  decodeOpen(model: unknown, o: { capacities: Int32Array; abort: Int32Array; extendMax?: number }): NativeDecodeSession;
}

/** Concatenates prompts into the { tokens, lengths } of a native prefill or extend. */
export function packPrompts(prompts: readonly Int32Array[]): { tokens: Int32Array; lengths: Int32Array } {
  const lengths = Int32Array.from(prompts.map((p) => p.length));
  const tokens = new Int32Array(lengths.reduce((a, b) => a + b, 0));
  let o = 0;
  for (const p of prompts) {
    tokens.set(p, o);
    o += p.length;
  }
  return { tokens, lengths };
}

/**
 * The next chunk of each prompt of a chunked prefill: prompt i from done[i]
 * (the tokens already in its cache), at most `chunk` tokens; empty once it
 * is whole. The chunks depend only on each prompt's length and `chunk`
 * (docs/SERVING.md "Inside the decoder").
 */
export function nextChunks(prompts: readonly Int32Array[], done: readonly number[], chunk: number): Int32Array[] {
  return prompts.map((p, i) => p.subarray(done[i], Math.min(p.length, done[i] + chunk)));
}

/**
 * Prefills prompts on a native session in chunks of at most `chunk` tokens:
 * one prefill of the first chunks, then an extend per further chunk. Row i
 * of the result holds prompt i's logits after its last token (rows of empty
 * prompts are left as the session had them). A prompt of at most `chunk`
 * tokens is one whole prefill.
 */
export async function chunkedPrefill(s: NativeDecodeSession, prompts: Int32Array[], chunk: number): Promise<Float32Array> {
  const V = s.vocabSize;
  const done = prompts.map(() => 0);
  let out: Float32Array | null = null;
  for (let first = true; ; first = false) {
    const parts = nextChunks(prompts, done, chunk);
    if (!first && parts.every((p) => p.length === 0)) break;
    const call = packPrompts(parts);
    const got = await callNative(() => (first ? s.prefill(call) : s.extend(call)));
    if (!out) out = Float32Array.from(got);
    parts.forEach((p, i) => {
      if (p.length === 0) return;
      done[i] += p.length;
      if (done[i] === prompts[i].length) out!.set(got.subarray(i * V, (i + 1) * V), i * V);
    });
  }
  return out!;
}

/**
 * A Decoder over a native model handle (lib/model.ts). `handle` is called
 * when a session opens, so a disposed model fails there (after validation);
 * `alive` is checked before every call.
 */
export function nativeDecoder(
  handle: () => unknown,
  config: { vocab_size: number; n_positions: number },
  alive: () => void = () => undefined,
  prefillChunk = DEFAULT_PREFILL_CHUNK,
): Decoder {
  const chunk = Math.min(prefillChunk, config.n_positions);
  return {
    vocabSize: config.vocab_size,
    nPositions: config.n_positions,
    open(capacities, abort) {
      const h = handle();
      const s = callNativeSync(() =>
        loadAddon<DecodeNative>().decodeOpen(h, { capacities: Int32Array.from(capacities), abort, extendMax: chunk }),
      );
      return {
        cacheBytes: s.cacheBytes(),
        prefill(prompts) {
          alive();
          // In chunks, as the model's batch prefills (lib/generate/scheduler.ts),
          // so a generation on this decoder gives what GPT.generate() gives.
          return chunkedPrefill(s, prompts, chunk);
        },
        step(tokens, active) {
          alive();
          return callNative(() => s.step({ tokens, active }));
        },
        close: () => s.close(),
      };
    },
  };
}
