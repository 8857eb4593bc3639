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

/** A CPU model of `shape` with random weights from `seed`. */
export async function makeModel(shape: Shape, seed = 1, precision: 'fp32' | 'bf16' = 'fp32'): Promise<Handle> {
  return native().createModel({ config: { layer_norm_epsilon: 1e-5, ...shape }, device: 'cpu', precision, seed });
}

/** n tokens in [0, V) from `seed`. */
export function randomTokens(n: number, V: number, seed: number): Int32Array {
  const r = new Rng(seed, 0);
  return Int32Array.from({ length: n }, () => r.nextInt(V));
}
