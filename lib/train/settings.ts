/**
 * Training settings: their names and types, the defaults of GPT-3's recipe
 * (AdamW 0.9/0.95, eps 1e-8, weight decay 0.1, clip 1.0, linear warmup,
 * cosine decay to 10%), the validation of one setting, the split of a
 * --config file into model keys and settings, and the merge of defaults, a
 * resumed run's recipe and the caller's settings.
 */
import { CONFIG_KEYS, GPTConfig, getPreset, TokenizerName } from '../config';
import { ArgumentRangeError } from '../errors';
import { defaultWarmup } from '../schedule';
import { TOKENIZER_NAMES } from '../tokenizer';
import { checkKnownKeys, describe, didYouMean, expectBoolean, expectInteger, expectNumber, expectObject, expectOneOf, expectString } from '../validate';

/** Training settings (the model's shape is elsewhere). Snake case: these are also config-file keys. */
export interface TrainSettings {
  steps: number;
  batch: number;
  seq: number;
  /** tokens per optimizer step; a multiple of batch * seq (gradient accumulation) */
  batch_tokens: number;
  lr: number;
  warmup: number;
  min_lr_ratio: number;
  beta1: number;
  beta2: number;
  eps: number;
  weight_decay: number;
  grad_clip: number;
  seed: number;
  eval_every: number;
  eval_windows: number;
  checkpoint_every: number;
  keep: number;
  sample_tokens: number;
  device: string;
  precision: string | null;
  /**
   * Keep attention within documents: a query never sees a key across an
   * end-of-text token (the tokenizer's; lib/doc-mask.ts). Off by default,
   * as GPT-2 and GPT-3 train; for data packed from short documents.
   */
  doc_mask: boolean;
}

export const TRAIN_KEYS: readonly (keyof TrainSettings)[] = [
  'steps',
  'batch',
  'seq',
  'batch_tokens',
  'lr',
  'warmup',
  'min_lr_ratio',
  'beta1',
  'beta2',
  'eps',
  'weight_decay',
  'grad_clip',
  'seed',
  'eval_every',
  'eval_windows',
  'checkpoint_every',
  'keep',
  'sample_tokens',
  'device',
  'precision',
  'doc_mask',
];

/** Keys a --config file may hold: the model's, the training settings, and these. */
export const CONFIG_FILE_EXTRA_KEYS = ['preset', 'data', 'tokenizer'] as const;

/** Settings that change the math: a resumed run keeps them (changing one is an error). */
const RECIPE_KEYS: readonly (keyof TrainSettings)[] = ['batch', 'seq', 'batch_tokens', 'lr', 'warmup', 'min_lr_ratio', 'beta1', 'beta2', 'eps', 'weight_decay', 'grad_clip', 'seed', 'doc_mask'];

/** Peak learning rates of GPT-3's table (Brown et al. 2020, table 2.1), by preset. */
const GPT3_LR: Record<string, number> = {
  'gpt3-small': 6e-4,
  'gpt3-medium': 3e-4,
  'gpt3-large': 2.5e-4,
  'gpt3-xl': 2e-4,
  'gpt3-2.7b': 1.6e-4,
  'gpt3-6.7b': 1.2e-4,
  'gpt3-13b': 1e-4,
  'gpt3-175b': 0.6e-4,
  gpt2: 6e-4,
  'gpt2-medium': 3e-4,
  'gpt2-large': 2.5e-4,
  'gpt2-xl': 2e-4,
  // CPU-sized models take larger rates (measured on the built-in corpus; docs/TRAINING.md)
  tiny: 3e-3,
  small: 1e-3,
};

/** The defaults of the no-flag run (`tiny` on Moby-Dick); see docs/TRAINING.md for the measurements behind them. */
export const DEFAULT_STEPS = 1600;
export const DEFAULT_BATCH = 8;

export function defaultSettings(preset: string | null, model: GPTConfig): TrainSettings {
  // Windows of the whole context, so that every position embedding is
  // trained: a position the run never sees keeps its random initial vector
  // and every sample that reaches it dissolves. On the built-in corpus,
  // 8 x 256 for 1600 steps ends further below the unigram entropy than
  // 16 x 128 for 800 did, in about the same time per token.
  const seq = model.n_positions;
  const batch = DEFAULT_BATCH;
  const steps = DEFAULT_STEPS;
  return {
    steps,
    batch,
    seq,
    batch_tokens: batch * seq,
    lr: (preset && GPT3_LR[preset]) || 6e-4,
    warmup: defaultWarmup(steps),
    min_lr_ratio: 0.1,
    beta1: 0.9,
    beta2: 0.95,
    eps: 1e-8,
    weight_decay: 0.1,
    grad_clip: 1.0,
    seed: 1337,
    eval_every: 100,
    eval_windows: 64,
    checkpoint_every: 200,
    keep: 3,
    sample_tokens: 200,
    device: 'auto',
    precision: null,
    doc_mask: false,
  };
}

/** Validates one training setting (also used for config files and flags). */
export function validateSetting(key: string, value: unknown, where = 'config'): unknown {
  const k = key as keyof TrainSettings;
  switch (k) {
    case 'steps':
    case 'batch':
    case 'seq':
    case 'batch_tokens':
    case 'eval_every':
    case 'eval_windows':
    case 'checkpoint_every':
    case 'keep':
      return expectInteger(k, value, { min: 1 });
    case 'warmup':
    case 'sample_tokens':
    case 'seed':
      return expectInteger(k, value, { min: 0 });
    case 'lr':
    case 'eps':
      return expectNumber(k, value, { gt: 0 });
    case 'min_lr_ratio':
      return expectNumber(k, value, { min: 0, max: 1 });
    case 'beta1':
    case 'beta2':
      return expectNumber(k, value, { min: 0, max: 0.999999 });
    case 'weight_decay':
    case 'grad_clip':
      return expectNumber(k, value, { min: 0 });
    case 'device':
      return expectOneOf(k, value, ['cpu', 'cuda', 'auto'] as const);
    case 'precision':
      if (value === null) return null;
      return expectOneOf(k, value, ['fp32', 'bf16'] as const);
    case 'doc_mask':
      return expectBoolean(k, value);
    default:
      throw new ArgumentRangeError(`Unknown key ${JSON.stringify(key)} in ${where}${didYouMean(key, TRAIN_KEYS as readonly string[])}`);
  }
}

/**
 * Splits a --config file's object into preset, model keys, training settings,
 * data and tokenizer. Unknown keys are errors (with a did-you-mean hint).
 */
export function parseTrainConfigFile(input: unknown, where = 'config file'): {
  preset?: string;
  model: Partial<GPTConfig>;
  settings: Partial<TrainSettings>;
  data?: string;
  tokenizer?: TokenizerName;
} {
  const o = expectObject(where, input);
  const allowed = [...CONFIG_KEYS, ...TRAIN_KEYS, ...CONFIG_FILE_EXTRA_KEYS] as string[];
  checkKnownKeys(where, o, allowed);
  const model: Record<string, unknown> = {};
  const settings: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    if ((CONFIG_KEYS as readonly string[]).includes(k)) model[k] = v;
    else if ((TRAIN_KEYS as readonly string[]).includes(k)) settings[k] = validateSetting(k, v, where);
  }
  const out: ReturnType<typeof parseTrainConfigFile> = { model: model as Partial<GPTConfig>, settings: settings as Partial<TrainSettings> };
  if (o.preset !== undefined) out.preset = getPreset(expectString('preset', o.preset)).name;
  if (o.data !== undefined) out.data = expectString('data', o.data, { nonEmpty: true });
  if (o.tokenizer !== undefined) out.tokenizer = expectOneOf('tokenizer', o.tokenizer, TOKENIZER_NAMES);
  return out;
}

/**
 * The settings of a run: the defaults, then the resumed run's recipe (`prev`,
 * null for a new run), then `options` (undefined values ignored). Changing a
 * recipe key on resume is an error; the result is checked against the model.
 */
export function resolveSettings(options: Partial<TrainSettings> | undefined, preset: string | null, model: GPTConfig, prev: TrainSettings | null): TrainSettings {
  const given: Partial<TrainSettings> = {};
  for (const [k, v] of Object.entries(options ?? {})) if (v !== undefined) (given as Record<string, unknown>)[k] = v;
  let s: TrainSettings;
  if (prev) {
    // Runs saved before doc_mask existed trained without it.
    prev = { ...prev, doc_mask: prev.doc_mask ?? false };
    s = { ...prev };
    for (const k of RECIPE_KEYS) {
      if (given[k] !== undefined && given[k] !== prev[k])
        throw new ArgumentRangeError(
          `Expected ${k} ${prev[k]} (the value the resumed run was trained with) but received ${describe(given[k])}: a resumed run keeps its recipe; use --init-from to start a new run from these weights`,
        );
    }
    Object.assign(s, given);
  } else {
    s = { ...defaultSettings(preset, model), ...given };
    if (given.steps !== undefined && given.warmup === undefined) s.warmup = defaultWarmup(s.steps);
    if (given.seq !== undefined || given.batch !== undefined) {
      if (given.batch_tokens === undefined) s.batch_tokens = s.batch * s.seq;
    }
    if (given.seq === undefined) s.seq = Math.min(s.seq, model.n_positions);
    if (given.batch_tokens === undefined) s.batch_tokens = s.batch * s.seq;
  }
  if (s.seq > model.n_positions)
    throw new ArgumentRangeError(`Expected seq <= n_positions (${model.n_positions}) for seq but received ${s.seq} (number)`);
  if (s.batch_tokens % (s.batch * s.seq) !== 0)
    throw new ArgumentRangeError(
      `Expected a multiple of batch * seq = ${s.batch * s.seq} for batch_tokens but received ${s.batch_tokens} (number): gradient accumulation runs whole micro-batches`,
    );
  if (s.warmup > s.steps) throw new ArgumentRangeError(`Expected warmup <= steps (${s.steps}) for warmup but received ${s.warmup} (number)`);
  return s;
}
