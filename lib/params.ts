/**
 * Parameter and memory accounting (`gpt-engine params`).
 *
 * Formula count (weights and biases, LayerNorms excluded; the GPT-3 paper's
 * convention):  d*V + d*n_ctx + 12*L*d^2 + 9*L*d
 * Exact tensor count of this engine adds the LayerNorms: 4*L*d + 2*d (the
 * head is tied to wte, so it adds nothing).
 */
import { GPTConfig, layerPatterns } from './config';

export function formulaParameterCount(c: GPTConfig): number {
  const d = c.n_embd;
  const L = c.n_layer;
  return d * c.vocab_size + d * c.n_positions + 12 * L * d * d + 9 * L * d;
}

export function exactParameterCount(c: GPTConfig): number {
  return formulaParameterCount(c) + 4 * c.n_layer * c.n_embd + 2 * c.n_embd;
}

export interface ParameterShares {
  /** fractions of the formula count */
  attention: number;
  feedForward: number;
  tokenEmbedding: number;
  positionEmbedding: number;
}

export interface ParameterBreakdown {
  attention: number; // per model: L * (4d^2 + 4d)
  feedForward: number; // L * (8d^2 + 5d)
  tokenEmbedding: number; // V * d
  positionEmbedding: number; // n_ctx * d
  layerNorm: number; // 4Ld + 2d
}

export function parameterBreakdown(c: GPTConfig): ParameterBreakdown {
  const d = c.n_embd;
  const L = c.n_layer;
  return {
    attention: L * (4 * d * d + 4 * d),
    feedForward: L * (8 * d * d + 5 * d),
    tokenEmbedding: c.vocab_size * d,
    positionEmbedding: c.n_positions * d,
    layerNorm: 4 * L * d + 2 * d,
  };
}

export function parameterShares(c: GPTConfig): ParameterShares {
  const b = parameterBreakdown(c);
  const total = formulaParameterCount(c);
  return {
    attention: b.attention / total,
    feedForward: b.feedForward / total,
    tokenEmbedding: b.tokenEmbedding / total,
    positionEmbedding: b.positionEmbedding / total,
  };
}

/** The vocabulary as the core stores it: padded to a multiple of 64. */
export function paddedVocab(V: number): number {
  return Math.ceil(V / 64) * 64;
}

export interface TrainingMemory {
  /** fp32: weights, gradients and two Adam moments, 4 bytes each */
  fp32: number;
  /** bf16 mixed precision: the fp32 set plus a bf16 copy of the weights */
  bf16: number;
  weights: number;
  gradients: number;
  optimizer: number;
}

/** Bytes of model state to train (activations excluded). */
export function trainingMemory(c: GPTConfig): TrainingMemory {
  const p = exactParameterCount(c);
  // Padded vocabulary rows exist in the core's buffers too.
  const padRows = (paddedVocab(c.vocab_size) - c.vocab_size) * c.n_embd;
  const n = p + padRows;
  const weights = 4 * n;
  const gradients = 4 * n;
  const optimizer = 8 * n;
  return { fp32: weights + gradients + optimizer, bf16: weights + gradients + optimizer + 2 * n, weights, gradients, optimizer };
}

/**
 * Activation bytes the CPU core keeps for backward at batch B, sequence T
 * (fp32). Per layer: ln_1 out, qkv, attention out, attention proj out,
 * residual, ln_2 out, fc, gelu, fc proj, residual2 (17 x B*T*C in all), the
 * LayerNorm statistics (4 x B*T) and the attention log-sum-exp (B*H*T).
 * Plus the embedding output, ln_f output and statistics, the fused
 * classifier's one chunk of logits ([classifierChunkRows, Vp], never all
 * B*T rows: training does not materialise the logits) and its per-row
 * losses (a double per row).
 */
export function activationBytes(c: GPTConfig, B: number, T: number): number {
  const C = c.n_embd;
  const BT = B * T;
  const Vp = paddedVocab(c.vocab_size);
  const perLayer = 17 * BT * C + 4 * BT + c.n_head * BT;
  const rest = BT * C + (BT * C + 2 * BT) + classifierChunkRows(BT, Vp) * Vp + 2 * BT;
  return 4 * (c.n_layer * perLayer + rest);
}

/**
 * Rows of logits the fused classifier holds at once for `rows` = B*T rows
 * and a padded vocabulary Vp: min(rows, 512), or more when 512 rows would
 * take under 32 MiB. The rule of native/core/classifier.cc
 * (classifier_capacity_rows), which sizes the core's buffer.
 */
export function classifierChunkRows(rows: number, Vp: number): number {
  const fit = Math.floor((32 * 1024 * 1024) / (Math.max(Vp, 1) * 4));
  const cap = fit > 512 ? Math.floor(fit / 512) * 512 : 512;
  return Math.max(0, Math.min(rows, cap));
}

/** Fractions of layers by pattern, for display. */
export function patternSummary(c: GPTConfig): string {
  const ps = layerPatterns(c);
  const banded = ps.filter((p) => p === 'banded').length;
  if (banded === 0) return 'dense';
  if (banded === ps.length) return `banded (w=${c.attention_window})`;
  return `${ps.length - banded} dense + ${banded} banded (w=${c.attention_window})`;
}

/**
 * Model-state bytes on each of `ranks` data-parallel ranks (docs/DISTRIBUTED.md):
 * every rank holds the weights and gradients; with ZeRO-1 (the default on
 * several ranks) each keeps 1/ranks of the two Adam moments.
 */
export function perRankTrainingMemory(c: GPTConfig, ranks: number, zero = true): TrainingMemory {
  const m = trainingMemory(c);
  const optimizer = zero && ranks > 1 ? Math.ceil(m.optimizer / ranks) : m.optimizer;
  const bf16Copy = m.bf16 - m.fp32;
  const fp32 = m.weights + m.gradients + optimizer;
  return { fp32, bf16: fp32 + bf16Copy, weights: m.weights, gradients: m.gradients, optimizer };
}
