/**
 * The Decoder over a native model: KV-cache sessions of
 * native/addon/decode_binding.cc (the math of a decode step lives in
 * native/core/decode.*).
 */
import { callNative, callNativeSync } from '../errors';
import { loadAddon } from '../native';
import { Decoder } from './types';

/** The decode session of native/addon/decode_binding.cc. Internal. */
export interface NativeDecodeSession {
  /** Sequences (follows resize()). */
  readonly batch: number;
  readonly vocabSize: number;
  prefill(o: { tokens: Int32Array; lengths: Int32Array }): Promise<Float32Array>;
  step(o: { tokens: Int32Array; active: Uint8Array }): Promise<Float32Array>;
  /** Sets the sequences' capacities: unchanged ones keep their caches, changed and new ones start empty. */
  resize(o: { capacities: Int32Array }): void;
  cacheBytes(): number;
  scratchBytes(): number;
  positions(): Int32Array;
  close(): void;
}

export interface DecodeNative {
  decodeOpen(model: unknown, o: { capacities: Int32Array; abort: Int32Array }): NativeDecodeSession;
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
): Decoder {
  return {
    vocabSize: config.vocab_size,
    nPositions: config.n_positions,
    open(capacities, abort) {
      const h = handle();
      const s = callNativeSync(() =>
        loadAddon<DecodeNative>().decodeOpen(h, { capacities: Int32Array.from(capacities), abort }),
      );
      return {
        cacheBytes: s.cacheBytes(),
        prefill(prompts) {
          alive();
          const lengths = Int32Array.from(prompts.map((p) => p.length));
          const tokens = new Int32Array(lengths.reduce((a, b) => a + b, 0));
          let o = 0;
          for (const p of prompts) {
            tokens.set(p, o);
            o += p.length;
          }
          return callNative(() => s.prefill({ tokens, lengths }));
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
