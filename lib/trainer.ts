/**
 * The training loop: GPT-3's recipe (AdamW 0.9/0.95, eps 1e-8, weight decay
 * 0.1, clip 1.0, linear warmup, cosine decay to 10%) over random windows of
 * a prepared data folder, with gradient accumulation, periodic evaluation
 * and samples, metrics.jsonl, atomic checkpoints (the last K kept), exact
 * resume and fine-tuning.
 *
 * Exact resume: a checkpoint holds the weights, both Adam moments, the Adam
 * step counter, the sampler's generator state and the schedule; evaluation
 * and samples never touch the training sampler. So on the CPU, steps after a
 * resume see the same batches, rates and moments as an uninterrupted run and
 * their losses are bitwise identical.
 *
 * The trainer never exits the process and never installs signal handlers:
 * the CLI turns SIGINT/SIGTERM into an AbortSignal; the trainer finishes the
 * running step, writes a checkpoint and returns with `interrupted: true`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CONFIG_KEYS, GPTConfig, getPreset, mergeConfig, presetConfig, TokenizerName, validateConfig, assertBuildable } from './config';
import { pruneCheckpoints, resolveCheckpointDir, updateLatest } from './checkpoint';
import { ArgumentRangeError, BadFileError, NonFiniteError } from './errors';
import { sampleToken } from './generate';
import { DeviceChoice, GPT, PrecisionName } from './model';
import { Rng } from './rng';
import { setThreads } from './runtime';
import { BatchSampler, Dataset, defaultCorpus, evalBatches, openDataset, SamplerState, unigramEntropy } from './data';
import { trainingFlopsPerToken } from './flops';
import { defaultWarmup, lrAt, makeSchedule, Schedule } from './schedule';
import { getTokenizer, TOKENIZER_NAMES } from './tokenizer';
import { checkKnownKeys, describe, didYouMean, expectInteger, expectNumber, expectObject, expectOneOf, expectString } from './validate';

// ---------------------------------------------------------------------------
// What the trainer needs from a model

export interface BatchShape {
  batch: number;
  seq: number;
}

export interface StepOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  gradClip: number;
}

/** The part of GPT (lib/model.ts) the trainer drives. */
export interface TrainModel {
  readonly config: GPTConfig;
  /** Adds the gradient of this micro-batch; returns its mean loss. */
  forwardBackward(tokens: Int32Array, targets: Int32Array, shape: BatchShape): Promise<number> | number;
  /** AdamW on the accumulated gradient; throws NONFINITE leaving the weights unchanged. */
  step(o: StepOptions): Promise<{ gradNorm: number }> | { gradNorm: number };
  /** Mean loss without touching gradients. */
  loss(tokens: Int32Array, targets: Int32Array, shape: BatchShape): Promise<number> | number;
  dispose(): unknown;
}

export interface LoadedModel {
  model: TrainModel;
  tokenizer?: TokenizerName;
  /** state.json of a gpt-engine training checkpoint */
  state?: Record<string, unknown>;
  /** the checkpoint folder actually read */
  dir: string;
}

/** How the trainer makes, loads, saves and samples models (lib/model.ts by default; tests may pass their own). */
export interface ModelBackend {
  create(config: GPTConfig, o: { seed: number; device: string; precision?: string }): Promise<TrainModel>;
  /** optimizer: restore moments and step counter (resume) or not (fine-tuning). */
  load(dir: string, o: { optimizer: boolean; device: string; precision?: string }): Promise<LoadedModel>;
  save(model: TrainModel, dir: string, o: { tokenizer: TokenizerName; state: Record<string, unknown> }): Promise<void>;
  /** Continues `prompt` by `n` tokens (temperature sampling with `seed`). */
  sample?(model: TrainModel, prompt: Int32Array, n: number, o: { temperature: number; seed: number }): Promise<number[]>;
  /** A description of the device in use, for logs. */
  describeDevice?(model: TrainModel): string;
}

// ---------------------------------------------------------------------------
// Options

/** Training settings (the model's shape is in `model`). Snake case: these are also config-file keys. */
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
];

/** Keys a --config file may hold: the model's, the training settings, and these. */
export const CONFIG_FILE_EXTRA_KEYS = ['preset', 'data', 'tokenizer'] as const;

/** Settings that change the math: a resumed run keeps them (changing one is an error). */
const RECIPE_KEYS: readonly (keyof TrainSettings)[] = ['batch', 'seq', 'batch_tokens', 'lr', 'warmup', 'min_lr_ratio', 'beta1', 'beta2', 'eps', 'weight_decay', 'grad_clip', 'seed'];

export interface TrainerOptions {
  /** a preset name (default "tiny") */
  preset?: string;
  /** model keys over the preset (from a config file, then flags) */
  model?: Partial<GPTConfig>;
  /** training settings over the defaults */
  settings?: Partial<TrainSettings>;
  /** a prepared data folder; default: the built-in corpus */
  data?: string;
  /** tokenizer of the built-in corpus (default "byte") */
  tokenizer?: TokenizerName;
  /** run folder (default ./runs/<YYYYMMDD-HHMMSS>) */
  out?: string;
  /** end this invocation after this many more steps (with a checkpoint) */
  stopAfter?: number;
  /** a run folder (its newest complete checkpoint) or one checkpoint folder */
  resume?: string;
  /** weights of a checkpoint or Hugging Face GPT-2 folder; fresh optimizer */
  initFrom?: string;
  /** thread count for the CPU pool */
  threads?: number;
  /** peak FLOP/s of the device, for MFU (null: not reported) */
  peakFlops?: number | null;
  /** log lines (default: none) */
  log?: (line: string) => void;
  /** draw loss.svg at each checkpoint and at the end (default true) */
  plot?: boolean;
  backend?: ModelBackend;
}

export interface StepInfo {
  step: number;
  totalSteps: number;
  loss: number;
  lr: number;
  gradNorm: number;
  tokensPerSecond: number;
  msPerStep: number;
  mfu: number | null;
  tokensSeen: number;
  elapsedSeconds: number;
}

export interface EvalInfo {
  step: number;
  valLoss: number;
  valPerplexity: number;
  sample?: string;
}

export interface CheckpointInfo {
  step: number;
  dir: string;
}

export interface RunHooks {
  signal?: AbortSignal;
  onStep?: (s: StepInfo) => void;
  onEval?: (e: EvalInfo) => void;
  onCheckpoint?: (c: CheckpointInfo) => void;
}

export interface TrainResult {
  runDir: string;
  /** the newest checkpoint written or resumed from */
  checkpoint: string | null;
  step: number;
  totalSteps: number;
  stepsThisRun: number;
  interrupted: boolean;
  finished: boolean;
  /** per step of this invocation */
  losses: number[];
  finalLoss: number | null;
  valLoss: number | null;
  valPerplexity: number | null;
  unigramEntropy: number;
  tokenizer: TokenizerName;
  sample: string | null;
  seconds: number;
  tokensPerSecond: number;
  config: EffectiveConfig;
}

/** The effective configuration, printed and saved as <run>/train.json. */
export interface EffectiveConfig {
  preset: string | null;
  model: GPTConfig;
  train: TrainSettings;
  accumulation: number;
  tokenizer: TokenizerName;
  data: string;
  init_from: string | null;
  resumed_from: string | null;
}

// ---------------------------------------------------------------------------
// Defaults

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
export const DEFAULT_STEPS = 800;

export function defaultSettings(preset: string | null, model: GPTConfig): TrainSettings {
  // 16 x 128: on the built-in corpus, 16 shorter windows per step learn
  // faster per token than 8 x 256 (and attention costs less).
  const seq = Math.min(model.n_positions, 128);
  const batch = 16;
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

function timestamp(d = new Date()): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

const METRICS_FILE = 'metrics.jsonl';
const TRAIN_FILE = 'train.json';

// ---------------------------------------------------------------------------
// The trainer

export class Trainer {
  private readonly opts: TrainerOptions;
  private readonly log: (line: string) => void;

  constructor(opts: TrainerOptions = {}) {
    expectObject('options', opts);
    checkKnownKeys('trainer options', opts as Record<string, unknown>, [
      'preset',
      'model',
      'settings',
      'data',
      'tokenizer',
      'out',
      'stopAfter',
      'resume',
      'initFrom',
      'threads',
      'peakFlops',
      'log',
      'plot',
      'backend',
    ]);
    if (opts.resume !== undefined && opts.initFrom !== undefined)
      throw new ArgumentRangeError(`Expected either resume or initFrom but received both (${JSON.stringify(opts.resume)} and ${JSON.stringify(opts.initFrom)})`);
    if (opts.stopAfter !== undefined) expectInteger('stopAfter', opts.stopAfter, { min: 1 });
    if (opts.threads !== undefined) expectInteger('threads', opts.threads, { min: 1, max: 1024 });
    if (opts.preset !== undefined) getPreset(opts.preset);
    if (opts.model !== undefined) checkKnownKeys('model', expectObject('model', opts.model), CONFIG_KEYS);
    if (opts.settings !== undefined) {
      for (const [k, v] of Object.entries(expectObject('settings', opts.settings))) if (v !== undefined) validateSetting(k, v, 'settings');
    }
    if (opts.tokenizer !== undefined) expectOneOf('tokenizer', opts.tokenizer, TOKENIZER_NAMES);
    this.opts = opts;
    this.log = opts.log ?? (() => undefined);
  }

  async run(hooks: RunHooks = {}): Promise<TrainResult> {
    const o = this.opts;
    const backend = o.backend ?? defaultBackend();
    const t0 = Date.now();
    if (o.threads !== undefined) setThreads(o.threads);

    // -- where the model and state come from --------------------------------
    let loaded: LoadedModel | null = null;
    let runDir: string;
    let resumedFrom: string | null = null;
    let prevState: ResumeState | null = null;
    if (o.resume !== undefined) {
      const { checkpointDir, runDir: rd } = await resolveResume(o.resume, o.out);
      loaded = await backend.load(checkpointDir, { optimizer: true, device: o.settings?.device ?? 'auto', precision: o.settings?.precision ?? undefined });
      if (!loaded.state) {
        await loaded.model.dispose();
        throw new BadFileError(`${checkpointDir} has no state.json: it holds weights only, so it cannot be resumed; use --init-from to fine-tune from it`);
      }
      prevState = readResumeState(loaded.state, checkpointDir);
      resumedFrom = loaded.dir;
      runDir = rd;
    } else {
      runDir = path.resolve(o.out ?? path.join('runs', timestamp()));
      if (fs.existsSync(path.join(runDir, 'checkpoints')) || fs.existsSync(path.join(runDir, METRICS_FILE)))
        throw new ArgumentRangeError(`The run folder ${runDir} already holds a run; resume it with --resume ${runDir} or choose another --out`);
    }

    try {
      // -- configuration ------------------------------------------------------
      const preset = prevState ? prevState.preset : o.preset ?? (o.initFrom ? null : 'tiny');
      if (o.initFrom !== undefined && o.preset !== undefined)
        throw new ArgumentRangeError(`Expected either --preset or --init-from but received both (the model's shape comes from ${o.initFrom})`);
      // Data first: its tokenizer fixes the vocabulary.
      const dataDir = prevState?.data ?? o.data ?? defaultCorpus(o.tokenizer ?? 'byte', { log: this.log });
      if (prevState && o.data !== undefined && path.resolve(o.data) !== path.resolve(prevState.data))
        this.log(`note: resuming on ${o.data} instead of ${prevState.data}`);
      if (prevState && o.data === undefined && !fs.existsSync(prevState.data))
        throw new BadFileError(`The run was trained on ${prevState.data}, which is missing; pass --data with the same prepared data`);
      const ds = openDataset(o.data !== undefined ? o.data : dataDir);
      try {
        return await this.runWith(backend, hooks, { loaded, ds, runDir, preset, prevState, resumedFrom, t0 });
      } finally {
        ds.close();
      }
    } finally {
      if (loaded) await loaded.model.dispose();
    }
  }

  private async runWith(
    backend: ModelBackend,
    hooks: RunHooks,
    a: { loaded: LoadedModel | null; ds: Dataset; runDir: string; preset: string | null; prevState: ResumeState | null; resumedFrom: string | null; t0: number },
  ): Promise<TrainResult> {
    const o = this.opts;
    const { ds, runDir, prevState } = a;
    const tokenizer = ds.tokenizer;
    const tok = getTokenizer(tokenizer);

    // -- model config -------------------------------------------------------
    let model: TrainModel;
    let modelConfig: GPTConfig;
    let initFrom: string | null = null;
    let owned = false;
    if (a.loaded) {
      model = a.loaded.model;
      modelConfig = validateConfig(model.config);
      checkModelOverrides(modelConfig, o.model, 'the checkpoint');
    } else if (o.initFrom !== undefined) {
      const l = await backend.load(o.initFrom, { optimizer: false, device: o.settings?.device ?? 'auto', precision: o.settings?.precision ?? undefined });
      model = l.model;
      owned = true;
      modelConfig = validateConfig(model.config);
      initFrom = l.dir;
      try {
        checkModelOverrides(modelConfig, o.model, o.initFrom);
        if (l.tokenizer && l.tokenizer !== tokenizer)
          throw new ArgumentRangeError(`The checkpoint ${o.initFrom} uses the ${l.tokenizer} tokenizer but the data in ${ds.dir} uses ${tokenizer}; prepare the data with --tokenizer ${l.tokenizer}`);
      } catch (e) {
        await model.dispose();
        throw e;
      }
    } else {
      let base = presetConfig(a.preset ?? 'tiny');
      // A preset's vocabulary follows the data unless the config sets one.
      if (o.model?.vocab_size === undefined) base = { ...base, vocab_size: tok.vocabSize };
      modelConfig = mergeConfig(base, (o.model ?? {}) as Record<string, unknown>, 'model config');
      assertBuildable(modelConfig, a.preset ?? undefined);
      model = null as unknown as TrainModel; // created below, after settings validate
    }
    // Checks before training; a model loaded for --init-from is freed when one fails.
    const prep = await (async () => {
      try {
        if (modelConfig.vocab_size !== tok.vocabSize)
          throw new ArgumentRangeError(
            `The model's vocab_size is ${modelConfig.vocab_size} but the data in ${ds.dir} uses the ${tokenizer} tokenizer (vocabulary ${tok.vocabSize}); prepare the data with the model's tokenizer or set vocab_size ${tok.vocabSize}`,
          );

        // -- settings -----------------------------------------------------------
        const settings = this.resolveSettings(a.preset, modelConfig, prevState);
        const accum = settings.batch_tokens / (settings.batch * settings.seq);
        const schedule = makeSchedule({ lr: settings.lr, warmup: settings.warmup, total: settings.steps, minRatio: settings.min_lr_ratio });
        const startStep = prevState?.step ?? 0;
        if (startStep >= settings.steps && prevState)
          throw new ArgumentRangeError(`The checkpoint is at step ${startStep}, already at the run's total of ${settings.steps} steps; pass a larger --steps to train further`);
        const endStep = Math.min(settings.steps, o.stopAfter !== undefined ? startStep + o.stopAfter : settings.steps);
        const sampler = new BatchSampler(ds.train, { batch: settings.batch, seq: settings.seq, seed: settings.seed });
        if (prevState) sampler.setState(prevState.sampler);
        const evalSet = evalBatches(ds.val, { batch: settings.batch, seq: settings.seq, maxWindows: settings.eval_windows });
        const entropy = unigramEntropy(ds);
        return { settings, accum, schedule, startStep, endStep, sampler, evalSet, entropy };
      } catch (e) {
        if (owned) await model.dispose();
        throw e;
      }
    })();
    const { settings, accum, schedule, startStep, endStep, sampler, evalSet, entropy } = prep;

    if (!model) {
      model = await backend.create(modelConfig, { seed: settings.seed, device: settings.device, precision: settings.precision ?? undefined });
      owned = true;
    }
    try {
      const effective: EffectiveConfig = {
        preset: a.preset,
        model: modelConfig,
        train: settings,
        accumulation: accum,
        tokenizer,
        data: path.resolve(ds.dir),
        init_from: initFrom,
        resumed_from: a.resumedFrom,
      };
      fs.mkdirSync(runDir, { recursive: true });
      writeJsonAtomic(path.join(runDir, TRAIN_FILE), effective);
      this.log(`run folder: ${runDir}`);
      this.log(`effective config: ${JSON.stringify(effective)}`);
      if (backend.describeDevice) this.log(`device: ${backend.describeDevice(model)}`);
      if (prevState) this.log(`resuming from ${a.resumedFrom} at step ${startStep} of ${settings.steps}`);
      if (initFrom) this.log(`fine-tuning from ${initFrom} (fresh optimizer)`);
      const metricsPath = path.join(runDir, METRICS_FILE);
      truncateMetrics(metricsPath, startStep);
      const metrics = fs.openSync(metricsPath, 'a');

      const flopsPerToken = trainingFlopsPerToken(modelConfig, settings.seq);
      const tokensPerStep = settings.batch_tokens;
      let tokensSeen = prevState?.tokensSeen ?? 0;
      let step = startStep;
      const losses: number[] = [];
      let lastCheckpoint: string | null = a.resumedFrom;
      let lastCheckpointStep = prevState ? startStep : -1;
      let valLoss: number | null = null;
      let sample: string | null = null;
      let interrupted = false;
      const runStart = Date.now();
      let trainMs = 0;

      const evaluate = async (): Promise<number> => {
        let sum = 0;
        let n = 0;
        for (const b of evalSet) {
          const l = await model.loss(b.tokens, b.targets, { batch: b.batch, seq: settings.seq });
          sum += l * b.batch;
          n += b.batch;
        }
        return sum / n;
      };

      const makeSample = async (atStep: number): Promise<string | null> => {
        if (!backend.sample || settings.sample_tokens === 0) return null;
        const prompt = tok.eot !== null ? Int32Array.of(tok.eot) : ds.val.read(0, Math.min(8, ds.val.count));
        try {
          const n = Math.min(settings.sample_tokens, modelConfig.n_positions - prompt.length);
          const out = await backend.sample(model, prompt, n, { temperature: 0.8, seed: settings.seed + atStep });
          const text = tok.decode(tok.eot !== null ? out : [...prompt, ...out]);
          return text;
        } catch (e) {
          this.log(`sample failed: ${(e as Error).message}`);
          return null;
        }
      };

      const checkpoint = async (): Promise<string> => {
        const dir = path.join(runDir, 'checkpoints', `step-${step}`);
        const state: Record<string, unknown> = {
          version: 1,
          step,
          total_steps: settings.steps,
          tokens_seen: tokensSeen,
          seed: settings.seed,
          rng: { sampler: sampler.getState().rng },
          sampler: { draws: sampler.getState().draws, batch: settings.batch, seq: settings.seq },
          schedule: { lr: schedule.lr, warmup: schedule.warmup, total: schedule.total, min_ratio: schedule.minRatio },
          data: { dir: path.resolve(ds.dir), tokenizer, train_tokens: ds.train.count, val_tokens: ds.val.count },
          trainer: { preset: a.preset, settings, val_loss: valLoss, elapsed_s: (Date.now() - a.t0) / 1000 },
        };
        await backend.save(model, dir, { tokenizer, state });
        await updateLatest(runDir, `step-${step}`);
        const deleted = await pruneCheckpoints(runDir, settings.keep);
        for (const d of deleted) this.log(`removed old checkpoint ${d}`);
        lastCheckpoint = dir;
        lastCheckpointStep = step;
        hooks.onCheckpoint?.({ step, dir });
        await this.plot(runDir);
        return dir;
      };

      try {
        while (step < endStep) {
          if (hooks.signal?.aborted) {
            interrupted = true;
            break;
          }
          const s = step + 1;
          const lr = lrAt(schedule, s);
          const ts = Date.now();
          let lossSum = 0;
          for (let i = 0; i < accum; i++) {
            const b = sampler.next();
            lossSum += await model.forwardBackward(b.tokens, b.targets, { batch: settings.batch, seq: settings.seq });
          }
          const loss = lossSum / accum;
          if (!Number.isFinite(loss)) throw nonFinite(s, `the loss is ${loss}`, lastCheckpoint);
          let gradNorm: number;
          try {
            gradNorm = (
              await model.step({
                lr,
                beta1: settings.beta1,
                beta2: settings.beta2,
                eps: settings.eps,
                weightDecay: settings.weight_decay,
                gradClip: settings.grad_clip,
              })
            ).gradNorm;
          } catch (e) {
            if ((e as { code?: string }).code === 'NONFINITE') throw nonFinite(s, (e as Error).message, lastCheckpoint);
            throw e;
          }
          step = s;
          tokensSeen += tokensPerStep;
          const ms = Date.now() - ts;
          trainMs += ms;
          losses.push(loss);
          const tps = ms > 0 ? (tokensPerStep * 1000) / ms : 0;
          const mfu = o.peakFlops ? (tps * flopsPerToken) / o.peakFlops : null;
          const info: StepInfo = {
            step,
            totalSteps: settings.steps,
            loss,
            lr,
            gradNorm,
            tokensPerSecond: tps,
            msPerStep: ms,
            mfu,
            tokensSeen,
            elapsedSeconds: (Date.now() - runStart) / 1000,
          };
          const line: Record<string, unknown> = {
            step,
            loss,
            lr,
            grad_norm: gradNorm,
            tokens_per_s: round(tps, 1),
            ms_per_step: ms,
            mfu: mfu === null ? null : round(mfu, 5),
            tokens: tokensSeen,
          };
          hooks.onStep?.(info);
          const last = step === endStep;
          if (step % settings.eval_every === 0 || step === settings.steps || (last && o.stopAfter === undefined)) {
            valLoss = await evaluate();
            line.val_loss = valLoss;
            line.val_perplexity = Math.exp(valLoss);
            sample = await makeSample(step);
            hooks.onEval?.({ step, valLoss, valPerplexity: Math.exp(valLoss), ...(sample !== null ? { sample } : {}) });
          }
          fs.writeSync(metrics, JSON.stringify(line) + '\n');
          if (step % settings.checkpoint_every === 0 || last || hooks.signal?.aborted) await checkpoint();
          if (hooks.signal?.aborted && step < endStep) {
            interrupted = true;
            break;
          }
        }
        if (interrupted && lastCheckpointStep !== step) await checkpoint();
      } finally {
        fs.closeSync(metrics);
      }
      await this.plot(runDir);
      const seconds = (Date.now() - a.t0) / 1000;
      const stepsThisRun = step - startStep;
      return {
        runDir,
        checkpoint: lastCheckpoint,
        step,
        totalSteps: settings.steps,
        stepsThisRun,
        interrupted,
        finished: step >= settings.steps,
        losses,
        finalLoss: losses.length ? losses[losses.length - 1] : null,
        valLoss,
        valPerplexity: valLoss === null ? null : Math.exp(valLoss),
        unigramEntropy: entropy,
        tokenizer,
        sample,
        seconds,
        tokensPerSecond: trainMs > 0 ? (stepsThisRun * tokensPerStep * 1000) / trainMs : 0,
        config: effective,
      };
    } finally {
      if (owned) await model.dispose();
    }
  }

  /** Defaults, then the resumed run's recipe, then options; recipe changes on resume are errors. */
  private resolveSettings(preset: string | null, model: GPTConfig, prev: ResumeState | null): TrainSettings {
    const given: Partial<TrainSettings> = {};
    for (const [k, v] of Object.entries(this.opts.settings ?? {})) if (v !== undefined) (given as Record<string, unknown>)[k] = v;
    let s: TrainSettings;
    if (prev) {
      s = { ...prev.settings };
      for (const k of RECIPE_KEYS) {
        if (given[k] !== undefined && given[k] !== prev.settings[k])
          throw new ArgumentRangeError(
            `Expected ${k} ${prev.settings[k]} (the value the resumed run was trained with) but received ${describe(given[k])}: a resumed run keeps its recipe; use --init-from to start a new run from these weights`,
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

  private async plot(runDir: string): Promise<void> {
    if (this.opts.plot === false) return;
    try {
      // lib/plot.ts is optional at build time of this file: loaded by name.
      const file = path.join(__dirname, 'plot');
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const mod = require(file) as { writeLossPlot?: (dir: string) => Promise<string> };
      if (typeof mod.writeLossPlot === 'function') await mod.writeLossPlot(runDir);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'MODULE_NOT_FOUND') return;
      this.log(`loss plot not written: ${(e as Error).message}`);
    }
  }
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

function nonFinite(step: number, why: string, lastCheckpoint: string | null): NonFiniteError {
  return new NonFiniteError(
    `Training stopped at step ${step}: ${why}. ${lastCheckpoint ? `The last good checkpoint is ${lastCheckpoint}` : 'No checkpoint was written yet'}; try a lower --lr or more --warmup`,
  );
}

function checkModelOverrides(c: GPTConfig, overrides: Partial<GPTConfig> | undefined, source: string): void {
  if (!overrides) return;
  for (const [k, v] of Object.entries(overrides)) {
    if (v === undefined) continue;
    const have = (c as unknown as Record<string, unknown>)[k];
    if (JSON.stringify(have) !== JSON.stringify(v))
      throw new ArgumentRangeError(`Expected ${k} ${JSON.stringify(have)} (the model in ${source}) but received ${describe(v)}: the shape of a loaded model cannot change`);
  }
}

function writeJsonAtomic(file: string, value: unknown): void {
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, JSON.stringify(value, null, 2) + '\n');
  fs.renameSync(tmp, file);
}

/** Drops metrics lines past `step` (left by a run that went on after its last checkpoint). */
function truncateMetrics(file: string, step: number): void {
  if (!fs.existsSync(file)) return;
  const lines = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.trim());
  const keep = lines.filter((l) => {
    try {
      return (JSON.parse(l) as { step: number }).step <= step;
    } catch {
      return false;
    }
  });
  if (keep.length !== lines.length) writeFileAtomicText(file, keep.map((l) => l + '\n').join(''));
}

function writeFileAtomicText(file: string, text: string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
}

interface ResumeState {
  step: number;
  tokensSeen: number;
  preset: string | null;
  data: string;
  settings: TrainSettings;
  sampler: SamplerState;
}

function readResumeState(state: Record<string, unknown>, dir: string): ResumeState {
  const bad = (what: string) => new BadFileError(`${path.join(dir, 'state.json')} is missing ${what}; it was not written by gpt-engine train, so it cannot be resumed`);
  const trainer = state.trainer as { preset?: string | null; settings?: TrainSettings } | undefined;
  const data = state.data as { dir?: string } | undefined;
  const rng = (state.rng as Record<string, { state: string; inc: string }> | undefined)?.sampler;
  const sampler = state.sampler as { draws?: number } | undefined;
  if (!trainer?.settings) throw bad('trainer.settings');
  if (!data?.dir) throw bad('data.dir');
  if (!rng || !sampler || typeof sampler.draws !== 'number') throw bad('the sampler state');
  const settings = { ...trainer.settings };
  for (const k of TRAIN_KEYS) if (settings[k] !== undefined) validateSetting(k, settings[k], 'state.json trainer.settings');
  return {
    step: state.step as number,
    tokensSeen: (state.tokens_seen as number) ?? 0,
    preset: trainer.preset ?? null,
    data: data.dir,
    settings,
    sampler: { rng, draws: sampler.draws },
  };
}

/** --resume: a run folder (its newest complete checkpoint) or a checkpoint folder. */
async function resolveResume(target: string, out: string | undefined): Promise<{ checkpointDir: string; runDir: string }> {
  const dir = path.resolve(target);
  if (!fs.existsSync(dir)) throw new BadFileError(`Missing folder ${target} for --resume (expected a run folder or a checkpoint folder)`);
  const checkpointDir = await resolveCheckpointDir(dir);
  // A checkpoint inside <run>/checkpoints/step-N continues that run.
  let runDir: string;
  if (out !== undefined) runDir = path.resolve(out);
  else if (path.basename(path.dirname(checkpointDir)) === 'checkpoints') runDir = path.dirname(path.dirname(checkpointDir));
  else runDir = path.resolve(path.join('runs', timestamp()));
  return { checkpointDir, runDir };
}

// ---------------------------------------------------------------------------
// The default backend: lib/model.ts (GPT) and lib/checkpoint.ts

export function defaultBackend(): ModelBackend {
  const opts = (o: { device: string; precision?: string }) => ({
    device: o.device as DeviceChoice,
    ...(o.precision ? { precision: o.precision as PrecisionName } : {}),
  });
  return {
    create: (config, o) => GPT.create(config, { seed: o.seed, ...opts(o) }),
    load: async (dir, o) => {
      const resolved = await resolveCheckpointDir(dir);
      const m = await GPT.load(resolved, { optimizer: o.optimizer, ...opts(o) });
      return { model: m, tokenizer: m.tokenizer, state: m.loadedState, dir: resolved };
    },
    save: (model, dir, o) => (model as GPT).save(dir, { optimizer: true, state: o.state, tokenizer: o.tokenizer }),
    sample: async (model, prompt, n, o) => {
      const g = model as GPT & { generate?: (p: Int32Array, o: { maxTokens: number; temperature: number; seed: number }) => Promise<{ tokens: number[] }> };
      if (typeof g.generate === 'function') return (await g.generate(prompt, { maxTokens: n, temperature: o.temperature, seed: o.seed })).tokens;
      return sampleWithForward(g, prompt, n, o);
    },
    describeDevice: (model) => {
      const g = model as GPT;
      return `${g.device} (${g.deviceReason}), ${g.precision}`;
    },
  };
}

/** Sampling by full forward passes (no KV cache), used when the model has no generate(). */
async function sampleWithForward(model: GPT, prompt: Int32Array, n: number, o: { temperature: number; seed: number }): Promise<number[]> {
  const rng = new Rng(o.seed, 0);
  const V = model.config.vocab_size;
  const ctx = model.config.n_positions;
  const seqTokens = Array.from(prompt);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const window = Int32Array.from(seqTokens.slice(-ctx));
    const { logits } = await model.forward(window, { batch: 1, seq: window.length });
    const row = logits.subarray((window.length - 1) * V, window.length * V);
    const t = sampleToken(row, V, { temperature: o.temperature, topK: 0, topP: 1 }, rng);
    out.push(t);
    seqTokens.push(t);
  }
  return out;
}

// ---------------------------------------------------------------------------
// Evaluation of a checkpoint

export interface EvaluateOptions {
  /** a checkpoint, run or Hugging Face GPT-2 folder */
  checkpoint: string;
  /** a prepared data folder; default: the data the checkpoint was trained on, else the built-in corpus */
  data?: string;
  split?: 'val' | 'train';
  batch?: number;
  /** default: min(context, 256), or the training seq of the checkpoint */
  seq?: number;
  /** evaluation windows, spread evenly over the split (default 512) */
  maxWindows?: number;
  device?: string;
  precision?: string;
  threads?: number;
  backend?: ModelBackend;
  log?: (line: string) => void;
}

export interface EvaluateResult {
  checkpoint: string;
  data: string;
  split: 'val' | 'train';
  tokenizer: TokenizerName;
  loss: number;
  perplexity: number;
  tokens: number;
  windows: number;
  seq: number;
  unigramEntropy: number;
  seconds: number;
}

/** Mean loss and perplexity of a checkpoint over a data split. */
export async function evaluateCheckpoint(o: EvaluateOptions): Promise<EvaluateResult> {
  expectObject('options', o);
  expectString('checkpoint', o.checkpoint, { nonEmpty: true });
  const split = o.split === undefined ? 'val' : expectOneOf('split', o.split, ['val', 'train'] as const);
  if (o.threads !== undefined) setThreads(expectInteger('threads', o.threads, { min: 1, max: 1024 }));
  const t0 = Date.now();
  const backend = o.backend ?? defaultBackend();
  const loaded = await backend.load(o.checkpoint, { optimizer: false, device: o.device ?? 'auto', precision: o.precision });
  try {
    const model = loaded.model;
    const trainData = (loaded.state?.data as { dir?: string } | undefined)?.dir;
    const trainSeq = ((loaded.state?.trainer as { settings?: { seq?: number } } | undefined)?.settings?.seq) ?? undefined;
    const tokenizer: TokenizerName = loaded.tokenizer ?? (model.config.vocab_size === 256 ? 'byte' : 'gpt2');
    let dataDir = o.data;
    if (dataDir === undefined) {
      if (trainData && fs.existsSync(trainData)) dataDir = trainData;
      else dataDir = defaultCorpus(tokenizer, { log: o.log });
    }
    const ds = openDataset(dataDir);
    try {
      if (ds.tokenizer !== tokenizer)
        throw new ArgumentRangeError(`The checkpoint ${loaded.dir} uses the ${tokenizer} tokenizer but the data in ${dataDir} uses ${ds.tokenizer}`);
      if (ds.vocabSize !== model.config.vocab_size)
        throw new ArgumentRangeError(`The model's vocab_size is ${model.config.vocab_size} but the data in ${dataDir} has a vocabulary of ${ds.vocabSize}`);
      const seq = o.seq !== undefined ? expectInteger('seq', o.seq, { min: 1, max: model.config.n_positions }) : Math.min(trainSeq ?? 256, model.config.n_positions);
      const batch = o.batch !== undefined ? expectInteger('batch', o.batch, { min: 1 }) : 8;
      const maxWindows = o.maxWindows !== undefined ? expectInteger('maxWindows', o.maxWindows, { min: 1 }) : 512;
      const file = split === 'val' ? ds.val : ds.train;
      const batches = evalBatches(file, { batch, seq, maxWindows });
      let sum = 0;
      let windows = 0;
      for (const b of batches) {
        const l = await model.loss(b.tokens, b.targets, { batch: b.batch, seq });
        sum += l * b.batch;
        windows += b.batch;
      }
      const loss = sum / windows;
      if (!Number.isFinite(loss)) throw new NonFiniteError(`The loss of ${loaded.dir} on ${dataDir} is ${loss}: the weights are not finite`);
      return {
        checkpoint: loaded.dir,
        data: path.resolve(dataDir),
        split,
        tokenizer,
        loss,
        perplexity: Math.exp(loss),
        tokens: windows * seq,
        windows,
        seq,
        unigramEntropy: unigramEntropy(ds),
        seconds: (Date.now() - t0) / 1000,
      };
    } finally {
      ds.close();
    }
  } finally {
    await loaded.model.dispose();
  }
}
