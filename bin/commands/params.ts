/**
 * `gpt-engine params`: parameter counts (the GPT-3 paper's formula and this
 * engine's exact tensor count), shares, memory to train, activations and
 * FLOPs per token.
 */
import { Command } from 'commander';
import { GPTConfig, getPreset, mergeConfig, PRESET_NAMES, presetConfig, validateConfig, PRESETS } from '../../lib/config';
import { trainingFlopsPerToken } from '../../lib/flops';
import {
  activationBytes,
  exactParameterCount,
  formulaParameterCount,
  parameterShares,
  patternSummary,
  perRankTrainingMemory,
  trainingMemory,
} from '../../lib/params';
import { ArgumentRangeError } from '../../lib/errors';
import { bytesText, commas, intFlag, log, printJson, table } from '../cli-util';

export interface ParamsRow {
  model: string;
  n_layer: number;
  n_head: number;
  n_embd: number;
  n_positions: number;
  vocab_size: number;
  attention: string;
  formula_params: number;
  exact_params: number;
  shares: { attention: number; feed_forward: number; token_embedding: number; position_embedding: number };
  train_memory_bytes: { fp32: number; bf16: number };
  activation_bytes: number;
  batch: number;
  seq: number;
  training_flops_per_token: number;
  /** with --ranks W: model-state bytes per rank of W data-parallel ranks (ZeRO-1) */
  per_rank?: { ranks: number; fp32: number; bf16: number };
  note?: string;
}

export function paramsRow(name: string, c: GPTConfig, batch: number, seq: number, note?: string, ranks?: number): ParamsRow {
  const s = parameterShares(c);
  const m = trainingMemory(c);
  return {
    model: name,
    n_layer: c.n_layer,
    n_head: c.n_head,
    n_embd: c.n_embd,
    n_positions: c.n_positions,
    vocab_size: c.vocab_size,
    attention: patternSummary(c),
    formula_params: formulaParameterCount(c),
    exact_params: exactParameterCount(c),
    shares: { attention: s.attention, feed_forward: s.feedForward, token_embedding: s.tokenEmbedding, position_embedding: s.positionEmbedding },
    train_memory_bytes: { fp32: m.fp32, bf16: m.bf16 },
    activation_bytes: activationBytes(c, batch, seq),
    batch,
    seq,
    training_flops_per_token: trainingFlopsPerToken(c, seq),
    ...(ranks !== undefined ? { per_rank: { ranks, fp32: perRankTrainingMemory(c, ranks).fp32, bf16: perRankTrainingMemory(c, ranks).bf16 } } : {}),
    ...(note ? { note } : {}),
  };
}

const pct = (x: number) => `${(100 * x).toFixed(2)}%`;

export function register(program: Command): void {
  program
    .command('params')
    .description('Count parameters (GPT-3 paper formula and exact), memory to train and FLOPs per token')
    .argument('[preset]', `a preset: ${PRESET_NAMES.join(', ')}`)
    .option('--all', 'every preset')
    .option('--n-layer <n>', 'custom shape: layers')
    .option('--n-head <n>', 'custom shape: heads')
    .option('--n-embd <n>', 'custom shape: width')
    .option('--n-positions <n>', 'context length (overrides the preset)')
    .option('--vocab-size <n>', 'vocabulary (overrides the preset)')
    .option('--batch <n>', 'batch for the activation estimate', '1')
    .option('--seq <n>', 'sequence for the activation estimate (default: the context)')
    .option('--ranks <w>', 'also the memory per rank of W data-parallel ranks with ZeRO-1 (docs/DISTRIBUTED.md)')
    .option('--json', 'one JSON document on stdout')
    .action((preset: string | undefined, opts: Record<string, string | boolean | undefined>) => {
      const batch = intFlag('batch', opts.batch as string)!;
      const ranks = intFlag('ranks', opts.ranks as string | undefined, 1, 1 << 20);
      const overrides: Record<string, unknown> = {};
      const flagMap: [string, string][] = [
        ['nLayer', 'n_layer'],
        ['nHead', 'n_head'],
        ['nEmbd', 'n_embd'],
        ['nPositions', 'n_positions'],
        ['vocabSize', 'vocab_size'],
      ];
      for (const [flag, key] of flagMap) {
        const v = intFlag(flag.replace(/[A-Z]/g, (m) => '-' + m.toLowerCase()), opts[flag] as string | undefined);
        if (v !== undefined) overrides[key] = v;
      }
      let entries: { name: string; config: GPTConfig; note?: string }[];
      if (opts.all) {
        if (preset) throw new ArgumentRangeError(`Expected either a preset or --all but received both ("${preset}" and --all)`);
        entries = PRESET_NAMES.map((n) => ({
          name: n,
          config: Object.keys(overrides).length ? mergeConfig(presetConfig(n), overrides) : countConfig(n),
          note: PRESETS[n].note,
        }));
      } else if (preset) {
        const p = getPreset(preset);
        entries = [{ name: preset, config: Object.keys(overrides).length ? mergeConfig(countConfig(preset), overrides) : countConfig(preset), note: p.note }];
      } else {
        if (!('n_layer' in overrides && 'n_head' in overrides && 'n_embd' in overrides))
          throw new ArgumentRangeError('Expected a preset, --all, or a custom shape (--n-layer, --n-head and --n-embd) but received none');
        entries = [
          {
            name: 'custom',
            config: validateConfig({
              n_positions: 2048,
              vocab_size: 50257,
              layer_norm_epsilon: 1e-5,
              attention_pattern: 'dense',
              attention_window: null,
              ...overrides,
            }),
          },
        ];
      }
      const rows = entries.map((e) => {
        const seq = intFlag('seq', opts.seq as string | undefined) ?? e.config.n_positions;
        return paramsRow(e.name, e.config, batch, seq, e.note, ranks);
      });
      if (opts.json) {
        printJson(rows);
        return;
      }
      process.stdout.write(
        table(
          ['model', 'L', 'heads', 'd', 'ctx', 'params (formula)', 'params (exact)', 'attn', 'ffn', 'W_te', 'W_pe'],
          rows.map((r) => [
            r.model,
            r.n_layer,
            r.n_head,
            r.n_embd,
            r.n_positions,
            commas(r.formula_params),
            commas(r.exact_params),
            pct(r.shares.attention),
            pct(r.shares.feed_forward),
            pct(r.shares.token_embedding),
            pct(r.shares.position_embedding),
          ]),
        ) + '\n\n',
      );
      process.stdout.write(
        table(
          ['model', 'attention', 'train fp32', 'train bf16', ...(ranks !== undefined ? [`fp32 per rank (W${ranks})`] : []), `activations (B${batch})`, 'seq', 'train GFLOP/token'],
          rows.map((r) => [
            r.model,
            r.attention,
            bytesText(r.train_memory_bytes.fp32),
            bytesText(r.train_memory_bytes.bf16),
            ...(r.per_rank ? [bytesText(r.per_rank.fp32)] : []),
            bytesText(r.activation_bytes),
            r.seq,
            (r.training_flops_per_token / 1e9).toFixed(3),
          ]),
        ) + '\n',
      );
      process.stdout.write(
        '\nformula: d*V + d*n_ctx + 12*L*d^2 + 9*L*d (weights and biases, no LayerNorm); exact adds 4*L*d + 2*d (LayerNorms; head tied).\n' +
          'train memory: fp32 weights + gradients + 2 Adam moments (16 B/param); bf16 adds a bf16 weight copy (18 B/param).\n' +
          (ranks !== undefined ? `per rank: weights and gradients on every rank, the Adam moments split ${ranks} ways (ZeRO-1): (8 + 8/${ranks}) B/param; activations come on top.\n` : ''),
      );
      for (const r of rows) if (r.note) log(`note (${r.model}): ${r.note}`);
    });
}

/**
 * The config to count for a preset: the paper's numbers as they are (gpt3-xl
 * with 24 heads, which only changes the head count, not the parameters).
 */
function countConfig(name: string): GPTConfig {
  const p = getPreset(name);
  const c = presetConfig(name);
  if (p.paper) return { ...c, n_head: p.paper.n_head, n_embd: p.paper.n_embd };
  return c;
}
