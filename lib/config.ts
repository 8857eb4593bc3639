/**
 * The model configuration: one typed object with Hugging Face GPT-2 key names
 * plus gpt-engine's attention pattern (docs/ARCHITECTURE.md "The model"). It is saved in
 * every checkpoint's config.json, so a checkpoint describes itself.
 *
 * Our own config files are strict (unknown keys are errors, with a
 * did-you-mean hint). Hugging Face GPT-2 configs go through an allow-list:
 * keys that change the math and are unsupported are errors; dropout and
 * metadata keys are ignored.
 */
import { ArgumentRangeError } from './errors';
import {
  checkKnownKeys,
  describe,
  didYouMean,
  expectInteger,
  expectNumber,
  expectObject,
  expectOneOf,
  rangeError,
  typeError,
} from './validate';

export type LayerPattern = 'dense' | 'banded';
export type AttentionPattern = LayerPattern | 'alternating' | LayerPattern[];
export type TokenizerName = 'gpt2' | 'byte';

export interface GPTConfig {
  /** transformer blocks */
  n_layer: number;
  /** attention heads per block; n_embd must divide by it */
  n_head: number;
  /** model width d */
  n_embd: number;
  /** context length (rows of wpe) */
  n_positions: number;
  /** vocabulary size (padded to a multiple of 64 inside the core only) */
  vocab_size: number;
  /** LayerNorm epsilon; GPT-2 uses 1e-5 */
  layer_norm_epsilon: number;
  /** 'dense' (causal), 'banded' (local causal band), 'alternating' (GPT-3: even dense, odd banded), or one entry per layer */
  attention_pattern: AttentionPattern;
  /** band width w for banded layers: query i sees keys j with i - w < j <= i; null when no layer is banded */
  attention_window: number | null;
}

export const CONFIG_KEYS: readonly (keyof GPTConfig)[] = [
  'n_layer',
  'n_head',
  'n_embd',
  'n_positions',
  'vocab_size',
  'layer_norm_epsilon',
  'attention_pattern',
  'attention_window',
];

export const GPT2_VOCAB_SIZE = 50257;
/** The band GPT-3 presets use. The paper does not give its band width; 256 is our choice (see README). */
export const DEFAULT_GPT3_WINDOW = 256;

export interface Preset {
  name: string;
  config: GPTConfig;
  /** What the preset stands for, for `gpt-engine params` and errors. */
  description: string;
  /** The row of the GPT-3 paper's table, when it differs from what we build (XL's head count). */
  paper?: { n_head: number; n_embd: number };
  /** false: the shape can be counted but not built (gpt3-13b) */
  buildable: boolean;
  note?: string;
}

function gpt2(name: string, L: number, H: number, d: number, description: string): Preset {
  return {
    name,
    description,
    buildable: true,
    config: {
      n_layer: L,
      n_head: H,
      n_embd: d,
      n_positions: 1024,
      vocab_size: GPT2_VOCAB_SIZE,
      layer_norm_epsilon: 1e-5,
      attention_pattern: 'dense',
      attention_window: null,
    },
  };
}

function gpt3(name: string, L: number, H: number, d: number, description: string, extra: Partial<Preset> = {}): Preset {
  return {
    name,
    description,
    buildable: true,
    ...extra,
    config: {
      n_layer: L,
      n_head: H,
      n_embd: d,
      n_positions: 2048,
      vocab_size: GPT2_VOCAB_SIZE,
      layer_norm_epsilon: 1e-5,
      attention_pattern: 'alternating',
      attention_window: DEFAULT_GPT3_WINDOW,
    },
  };
}

export const PRESETS: Readonly<Record<string, Preset>> = Object.freeze({
  tiny: {
    name: 'tiny',
    description: 'CPU-sized model for quick runs (4 layers, 4 heads, d 128, context 256)',
    buildable: true,
    config: {
      n_layer: 4,
      n_head: 4,
      n_embd: 128,
      n_positions: 256,
      vocab_size: GPT2_VOCAB_SIZE,
      layer_norm_epsilon: 1e-5,
      attention_pattern: 'dense',
      attention_window: null,
    },
  },
  small: {
    name: 'small',
    description: 'CPU-sized model (6 layers, 6 heads, d 384, context 256)',
    buildable: true,
    config: {
      n_layer: 6,
      n_head: 6,
      n_embd: 384,
      n_positions: 256,
      vocab_size: GPT2_VOCAB_SIZE,
      layer_norm_epsilon: 1e-5,
      attention_pattern: 'dense',
      attention_window: null,
    },
  },
  gpt2: gpt2('gpt2', 12, 12, 768, 'GPT-2 small (124M)'),
  'gpt2-medium': gpt2('gpt2-medium', 24, 16, 1024, 'GPT-2 medium (355M)'),
  'gpt2-large': gpt2('gpt2-large', 36, 20, 1280, 'GPT-2 large (774M)'),
  'gpt2-xl': gpt2('gpt2-xl', 48, 25, 1600, 'GPT-2 XL (1.5B)'),
  'gpt3-small': gpt3('gpt3-small', 12, 12, 768, 'GPT-3 Small (125M)'),
  'gpt3-medium': gpt3('gpt3-medium', 24, 16, 1024, 'GPT-3 Medium (350M)'),
  'gpt3-large': gpt3('gpt3-large', 24, 16, 1536, 'GPT-3 Large (760M)'),
  'gpt3-xl': gpt3('gpt3-xl', 24, 16, 2048, 'GPT-3 XL (1.3B)', {
    paper: { n_head: 24, n_embd: 2048 },
    note: 'the paper lists 24 heads for d_model 2048, which does not divide; built with 16 heads of 128 (the head size the paper gives); the parameter count is unchanged',
  }),
  'gpt3-2.7b': gpt3('gpt3-2.7b', 32, 32, 2560, 'GPT-3 2.7B'),
  'gpt3-6.7b': gpt3('gpt3-6.7b', 32, 32, 4096, 'GPT-3 6.7B'),
  'gpt3-13b': gpt3('gpt3-13b', 40, 40, 5140, 'GPT-3 13B', {
    buildable: false,
    note: 'the paper lists d_model 5140 with 40 heads, which does not divide (its head size is 128); count-only. The nearest buildable shape is d_model 5120 (40 heads of 128): use a config file with n_embd 5120',
  }),
  'gpt3-175b': gpt3('gpt3-175b', 96, 96, 12288, 'GPT-3 175B'),
});

export const PRESET_NAMES: readonly string[] = Object.keys(PRESETS);

/** A copy of a preset's config. Throws for an unknown name (with a hint). */
export function presetConfig(name: string): GPTConfig {
  const p = getPreset(name);
  return cloneConfig(p.config);
}

export function getPreset(name: string): Preset {
  if (typeof name !== 'string') throw typeError('a preset name', 'preset', name);
  const p = PRESETS[name];
  if (!p)
    throw new ArgumentRangeError(
      `Expected one of ${PRESET_NAMES.join(', ')} for preset but received ${describe(name)}${didYouMean(name, PRESET_NAMES)}`,
    );
  return p;
}

export function cloneConfig(c: GPTConfig): GPTConfig {
  return {
    ...c,
    attention_pattern: Array.isArray(c.attention_pattern) ? [...c.attention_pattern] : c.attention_pattern,
  };
}

/** The pattern of each layer, expanded. */
export function layerPatterns(c: GPTConfig): LayerPattern[] {
  const p = c.attention_pattern;
  if (Array.isArray(p)) return [...p];
  if (p === 'alternating') return Array.from({ length: c.n_layer }, (_, i) => (i % 2 === 0 ? 'dense' : 'banded'));
  return Array.from({ length: c.n_layer }, () => p);
}

export function hasBandedLayer(c: GPTConfig): boolean {
  return layerPatterns(c).includes('banded');
}

/** Largest value any integer dimension may take (keeps products in range). */
const MAX_DIM = 1 << 24;

/**
 * Validates a complete config object (strict: unknown keys are errors) and
 * returns a normalized copy. `where` names the source in messages.
 */
export function validateConfig(input: unknown, where = 'config'): GPTConfig {
  const o = expectObject(where, input);
  checkKnownKeys(where, o, CONFIG_KEYS);
  for (const k of CONFIG_KEYS) {
    if (!(k in o) && k !== 'attention_window' && k !== 'layer_norm_epsilon' && k !== 'attention_pattern')
      throw new ArgumentRangeError(`Expected a value for ${k} in ${where} but it is missing`);
  }
  const n_layer = expectInteger('n_layer', o.n_layer, { min: 1, max: 4096 });
  const n_head = expectInteger('n_head', o.n_head, { min: 1, max: 4096 });
  const n_embd = expectInteger('n_embd', o.n_embd, { min: 1, max: MAX_DIM });
  const n_positions = expectInteger('n_positions', o.n_positions, { min: 1, max: MAX_DIM });
  const vocab_size = expectInteger('vocab_size', o.vocab_size, { min: 1, max: MAX_DIM });
  const layer_norm_epsilon =
    o.layer_norm_epsilon === undefined ? 1e-5 : expectNumber('layer_norm_epsilon', o.layer_norm_epsilon, { gt: 0, max: 1 });
  if (n_embd % n_head !== 0)
    throw new ArgumentRangeError(
      `Expected n_embd to be divisible by n_head but received n_embd ${n_embd} and n_head ${n_head} (${n_embd} / ${n_head} = ${(n_embd / n_head).toFixed(3)})`,
    );

  let attention_pattern: AttentionPattern;
  const p = o.attention_pattern === undefined ? 'dense' : o.attention_pattern;
  if (Array.isArray(p)) {
    if (p.length !== n_layer)
      throw new ArgumentRangeError(
        `Expected an array of ${n_layer} entries (one per layer, n_layer = ${n_layer}) for attention_pattern but received ${describe(p)}`,
      );
    attention_pattern = p.map((e, i) => expectOneOf(`attention_pattern[${i}]`, e, ['dense', 'banded'] as const));
  } else {
    attention_pattern = expectOneOf('attention_pattern', p, ['dense', 'banded', 'alternating'] as const);
  }

  let attention_window: number | null = null;
  const banded = layerPatterns({ n_layer, attention_pattern } as GPTConfig).includes('banded');
  if (o.attention_window !== undefined && o.attention_window !== null) {
    attention_window = expectInteger('attention_window', o.attention_window, { min: 1, max: MAX_DIM });
  } else if (banded) {
    throw rangeError('a positive integer (the pattern has banded layers)', 'attention_window', o.attention_window);
  }
  return { n_layer, n_head, n_embd, n_positions, vocab_size, layer_norm_epsilon, attention_pattern, attention_window };
}

/**
 * Merges overrides into a base config (preset, then file, then flags) and
 * validates the result.
 */
export function mergeConfig(base: GPTConfig, overrides: Record<string, unknown>, where = 'config'): GPTConfig {
  const o = expectObject(where, overrides);
  checkKnownKeys(where, o, CONFIG_KEYS);
  return validateConfig({ ...cloneConfig(base), ...o }, where);
}

/** Refuses shapes that can be counted but not built (gpt3-13b), and head sizes the kernels don't support. */
export function assertBuildable(c: GPTConfig, presetName?: string): void {
  if (presetName) {
    const p = getPreset(presetName);
    if (!p.buildable) throw new ArgumentRangeError(`The preset ${presetName} cannot be built: ${p.note}`);
  }
  const hd = c.n_embd / c.n_head;
  if (hd > 256)
    throw new ArgumentRangeError(
      `Expected a head size (n_embd / n_head) of at most 256 but received ${hd} (n_embd ${c.n_embd}, n_head ${c.n_head})`,
    );
}

// ---------------------------------------------------------------------------
// config.json files

/** Extra keys our own config.json carries besides GPTConfig. */
export interface ConfigFileExtras {
  tokenizer?: TokenizerName;
}

/** Keys our config.json may hold: GPTConfig, HF identity keys we write, and ours. */
const OWN_FILE_KEYS = [
  ...CONFIG_KEYS,
  'model_type',
  'architectures',
  'n_ctx',
  'activation_function',
  'tie_word_embeddings',
  'bos_token_id',
  'eos_token_id',
  'tokenizer',
  'gpt_engine_version',
];

/** The config.json we write: HF GPT-2 names, plus ours. */
export function toConfigJson(c: GPTConfig, extras: ConfigFileExtras = {}, version = '0.1.0'): Record<string, unknown> {
  const dense = !hasBandedLayer(c);
  const out: Record<string, unknown> = {
    // A model with banded layers must not be run as dense by other GPT-2 tools.
    model_type: dense ? 'gpt2' : 'gpt-engine',
    architectures: ['GPT2LMHeadModel'],
    n_layer: c.n_layer,
    n_head: c.n_head,
    n_embd: c.n_embd,
    n_positions: c.n_positions,
    n_ctx: c.n_positions,
    vocab_size: c.vocab_size,
    layer_norm_epsilon: c.layer_norm_epsilon,
    activation_function: 'gelu_new',
    tie_word_embeddings: true,
    attention_pattern: c.attention_pattern,
    attention_window: c.attention_window,
    gpt_engine_version: version,
  };
  if (extras.tokenizer) out.tokenizer = extras.tokenizer;
  if (c.vocab_size === GPT2_VOCAB_SIZE) {
    out.bos_token_id = 50256;
    out.eos_token_id = 50256;
  }
  return out;
}

/** HF keys that are metadata or training-only (dropout): accepted and ignored. */
const HF_IGNORED_KEYS = [
  '_name_or_path',
  'architectures',
  'model_type',
  'attn_pdrop',
  'embd_pdrop',
  'resid_pdrop',
  'summary_activation',
  'summary_first_dropout',
  'summary_proj_to_labels',
  'summary_type',
  'summary_use_proj',
  'task_specific_params',
  'initializer_range',
  'bos_token_id',
  'eos_token_id',
  'pad_token_id',
  'torch_dtype',
  'dtype',
  'transformers_version',
  'use_cache',
  'output_past',
  'n_special',
  'predict_special_tokens',
  'id2label',
  'label2id',
  'gradient_checkpointing',
  'tokenizer_class',
  'prefix',
  'finetuning_task',
];
/** HF keys that change the math: accepted only with the value gpt-engine computes. */
const HF_MATH_KEYS = [
  'n_layer',
  'n_head',
  'n_embd',
  'n_positions',
  'n_ctx',
  'vocab_size',
  'layer_norm_epsilon',
  'activation_function',
  'n_inner',
  'scale_attn_weights',
  'scale_attn_by_inverse_layer_idx',
  'reorder_and_upcast_attn',
  'tie_word_embeddings',
  'add_cross_attention',
];

/** Reads a Hugging Face GPT-2 config.json through the allow-list. */
export function fromHuggingFaceConfig(input: unknown, where = 'config.json'): GPTConfig {
  const o = expectObject(where, input);
  const allowed = [...HF_MATH_KEYS, ...HF_IGNORED_KEYS];
  for (const key of Object.keys(o)) {
    if (!allowed.includes(key))
      throw new ArgumentRangeError(
        `Unknown key ${JSON.stringify(key)} in ${where}${didYouMean(key, allowed)}: gpt-engine reads GPT-2 configs through an allow-list and cannot tell whether this key changes the model`,
      );
  }
  const unsupported = (key: string, value: unknown, expected: string) =>
    new ArgumentRangeError(
      `Expected ${expected} for ${key} in ${where} but received ${describe(value)}: gpt-engine does not support that variant of GPT-2`,
    );
  if (o.activation_function !== undefined && o.activation_function !== 'gelu_new')
    throw unsupported('activation_function', o.activation_function, '"gelu_new" (tanh GELU)');
  if (o.scale_attn_by_inverse_layer_idx !== undefined && o.scale_attn_by_inverse_layer_idx !== false)
    throw unsupported('scale_attn_by_inverse_layer_idx', o.scale_attn_by_inverse_layer_idx, 'false');
  if (o.reorder_and_upcast_attn !== undefined && o.reorder_and_upcast_attn !== false)
    throw unsupported('reorder_and_upcast_attn', o.reorder_and_upcast_attn, 'false');
  if (o.scale_attn_weights !== undefined && o.scale_attn_weights !== true)
    throw unsupported('scale_attn_weights', o.scale_attn_weights, 'true');
  if (o.tie_word_embeddings !== undefined && o.tie_word_embeddings !== true)
    throw unsupported('tie_word_embeddings', o.tie_word_embeddings, 'true (untied heads are not supported)');
  if (o.add_cross_attention !== undefined && o.add_cross_attention !== false)
    throw unsupported('add_cross_attention', o.add_cross_attention, 'false');
  const n_embd = o.n_embd;
  if (o.n_inner !== undefined && o.n_inner !== null && o.n_inner !== (typeof n_embd === 'number' ? 4 * n_embd : NaN))
    throw unsupported('n_inner', o.n_inner, `null or ${typeof n_embd === 'number' ? 4 * n_embd : '4 * n_embd'}`);
  const n_positions = o.n_positions ?? o.n_ctx;
  return validateConfig(
    {
      n_layer: o.n_layer,
      n_head: o.n_head,
      n_embd: o.n_embd,
      n_positions,
      vocab_size: o.vocab_size,
      layer_norm_epsilon: o.layer_norm_epsilon ?? 1e-5,
      attention_pattern: 'dense',
      attention_window: null,
    },
    where,
  );
}

/**
 * Reads any config.json: ours (it has gpt_engine_version or
 * attention_pattern; strict) or Hugging Face's (allow-list). Returns the
 * config and the tokenizer it names, if any.
 */
export function parseConfigJson(input: unknown, where = 'config.json'): { config: GPTConfig; tokenizer?: TokenizerName } {
  const o = expectObject(where, input);
  const ours = 'gpt_engine_version' in o || 'attention_pattern' in o || o.model_type === 'gpt-engine';
  if (!ours) return { config: fromHuggingFaceConfig(o, where), tokenizer: o.vocab_size === GPT2_VOCAB_SIZE ? 'gpt2' : undefined };
  checkKnownKeys(where, o, OWN_FILE_KEYS);
  const cfg: Record<string, unknown> = {};
  for (const k of CONFIG_KEYS) if (k in o) cfg[k] = o[k];
  if (cfg.n_positions === undefined && o.n_ctx !== undefined) cfg.n_positions = o.n_ctx;
  const config = validateConfig(cfg, where);
  let tokenizer: TokenizerName | undefined;
  if (o.tokenizer !== undefined) tokenizer = expectOneOf('tokenizer', o.tokenizer, ['gpt2', 'byte'] as const);
  return { config, tokenizer };
}
