/**
 * FLOP accounting, the one formula every benchmark and MFU figure uses.
 *
 * Conventions (stated in every benchmark's output):
 * - a multiply-add counts as 2 FLOPs;
 * - matmuls of a training step: 6 x every parameter except wpe per token
 *   (forward 2, backward 4; the tied head counts through wte);
 * - attention, as FlashAttention's benchmarks count it: forward 4 x D FLOPs
 *   per (query, key) pair actually computed (QK^T and PV), pairs counted
 *   exactly over the causal triangle or the band; backward 2.5 x forward;
 * - a GEMM C[M, N] = A[M, K] B[K, N]: 2 x M x K x N.
 */
import { GPTConfig, LayerPattern, layerPatterns } from './config';
import { exactParameterCount } from './params';

export const FLOP_CONVENTIONS =
  'FLOPs: 2 per multiply-add; matmuls 6 x (parameters except wpe) per trained token (2 forward); ' +
  'attention 4 x D per (query, key) pair computed forward (causal triangle or band, exactly), backward 2.5 x forward. ' +
  'GEMM: 2*M*K*N.';

/** Backward attention FLOPs as a multiple of forward. */
export const ATTENTION_BACKWARD_FACTOR = 2.5;

/**
 * (query, key) pairs computed for one head over a sequence of length T:
 * dense causal T(T+1)/2; banded sum over i of min(i + 1, w).
 */
export function attentionPairs(T: number, pattern: LayerPattern, window?: number | null): number {
  if (pattern === 'dense' || !window || window >= T) return (T * (T + 1)) / 2;
  const w = window;
  // queries 0..w-1 see i+1 keys; the rest see w
  return (w * (w + 1)) / 2 + (T - w) * w;
}

export interface AttentionShape {
  batch: number;
  heads: number;
  seq: number;
  headDim: number;
  pattern: LayerPattern;
  window?: number | null;
}

export function attentionFlops(s: AttentionShape): { forward: number; backward: number; total: number } {
  const forward = 4 * s.headDim * attentionPairs(s.seq, s.pattern, s.window) * s.batch * s.heads;
  const backward = ATTENTION_BACKWARD_FACTOR * forward;
  return { forward, backward, total: forward + backward };
}

/** FLOPs of one GEMM C[M, N] = A[M, K] B[K, N] (with or without transposes, accumulation or bias). */
export function gemmFlops(M: number, K: number, N: number): number {
  return 2 * M * K * N;
}

/** Parameters that take part in matmuls: every parameter except wpe. */
export function matmulParameters(c: GPTConfig): number {
  return exactParameterCount(c) - c.n_positions * c.n_embd;
}

/** Forward FLOPs per token at sequence length T (matmuls + attention averaged over the sequence). */
export function forwardFlopsPerToken(c: GPTConfig, T: number): number {
  let attn = 0;
  for (const p of layerPatterns(c)) attn += (4 * c.n_embd * attentionPairs(T, p, c.attention_window)) / T;
  return 2 * matmulParameters(c) + attn;
}

/** Training (forward + backward) FLOPs per token at sequence length T. */
export function trainingFlopsPerToken(c: GPTConfig, T: number): number {
  let attn = 0;
  for (const p of layerPatterns(c)) attn += (4 * c.n_embd * attentionPairs(T, p, c.attention_window)) / T;
  return 6 * matmulParameters(c) + (1 + ATTENTION_BACKWARD_FACTOR) * attn;
}

/** FLOPs to decode one token at position `pos` (0-based) with a KV cache. */
export function decodeFlopsPerToken(c: GPTConfig, pos: number): number {
  let attn = 0;
  for (const p of layerPatterns(c)) {
    const keys = p === 'banded' && c.attention_window ? Math.min(pos + 1, c.attention_window) : pos + 1;
    attn += 4 * c.n_embd * keys;
  }
  return 2 * matmulParameters(c) + attn;
}

/** Model FLOP utilization: achieved FLOP/s over a peak FLOP/s. */
export function mfu(flopsPerSecond: number, peakFlopsPerSecond: number): number {
  return peakFlopsPerSecond > 0 ? flopsPerSecond / peakFlopsPerSecond : 0;
}
