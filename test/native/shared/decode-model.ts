/**
 * What the decoding tests share: a model handle made straight from the addon
 * (no lib/ model around it), its shape, and deterministic random tokens.
 */
import { DecodeNative } from '../../../lib/generate/native';
import { loadAddon } from '../../../lib/native';
import { Rng } from '../../../lib/rng';

export interface Handle {
  forward(o: { tokens: Int32Array; batch: number; seq: number }): Promise<Float32Array>;
  dispose(): void;
}
export type Native = DecodeNative & { createModel(o: unknown): Promise<Handle> };
export const native = (): Native => loadAddon<Native>();

export interface Shape {
  n_layer: number;
  n_head: number;
  n_embd: number;
  n_positions: number;
  vocab_size: number;
  patterns: ('dense' | 'banded')[];
  attention_window?: number;
}

/**
 * A small model with a narrow band and several banded layers in a row, so
 * the ring buffer wraps soon. Random init has tiny weights (std 0.02) and
 * near-uniform logits, which a large model would compare leniently.
 */
export const ringShape: Shape = {
  n_layer: 4,
  n_head: 4,
  n_embd: 64,
  n_positions: 48,
  vocab_size: 100,
  patterns: ['dense', 'banded', 'banded', 'dense'],
  attention_window: 5,
};

/** A CPU model of `shape` with random weights from `seed`. */
export async function makeModel(shape: Shape, seed = 1, precision: 'fp32' | 'bf16' = 'fp32'): Promise<Handle> {
  return native().createModel({ config: { layer_norm_epsilon: 1e-5, ...shape }, device: 'cpu', precision, seed });
}

/** n tokens in [0, V) from `seed`. */
export function randomTokens(n: number, V: number, seed: number): Int32Array {
  const r = new Rng(seed, 0);
  return Int32Array.from({ length: n }, () => r.nextInt(V));
}
