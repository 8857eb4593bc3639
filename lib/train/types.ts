/**
 * The trainer's options, progress reports and result (lib/trainer.ts runs
 * the loop; these are its public shapes).
 */
import type { GPTConfig, TokenizerName } from '../config';
import type { World } from '../distributed/world';
import type { ModelBackend } from './backend';
import type { TrainSettings } from './settings';

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
  /** the ranks of a data-parallel run (lib/distributed/world.ts; docs/DISTRIBUTED.md); absent: one process */
  world?: World;
  /** ZeRO-1 on the ranks: each keeps 1/W of the AdamW moments (default: on when there are several) */
  zero?: boolean;
}

/** The keys of TrainerOptions (unknown keys are errors). */
export const TRAINER_OPTION_KEYS: readonly (keyof TrainerOptions)[] = [
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
  'world',
  'zero',
];

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
