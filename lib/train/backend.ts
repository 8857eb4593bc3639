/**
 * What the trainer needs from a model, and the default way to make, load,
 * save and sample one: lib/model.ts (GPT) over lib/checkpoint.ts folders.
 * Tests pass their own ModelBackend to drive the loop without the addon.
 */
import type { GPTConfig, TokenizerName } from '../config';
import { resolveCheckpointDir } from '../run-folder';
import { DeviceChoice, GPT, PrecisionName } from '../model';
import type { BatchShape, ForwardBackwardOptions, StepOptions } from '../model';

/** The part of GPT (lib/model.ts) the trainer drives. */
export interface TrainModel {
  readonly config: GPTConfig;
  /** forwardBackward honours { deferLoss: true } (GPT does). */
  readonly defersLoss?: boolean;
  /**
   * Adds the gradient of this micro-batch; returns its mean loss. A model
   * with defersLoss honours { deferLoss: true } (returns NaN, and step()
   * reports the micro-batches' mean loss instead); the trainer asks for it
   * when one process trains.
   */
  forwardBackward(tokens: Int32Array, targets: Int32Array, shape: BatchShape, o?: ForwardBackwardOptions): Promise<number> | number;
  /**
   * AdamW on the accumulated gradient (the trainer passes every field); throws NONFINITE leaving the weights
   * unchanged. loss: the mean loss of the deferred micro-batches, when there were any.
   */
  step(o: Required<StepOptions>): Promise<{ gradNorm: number; loss?: number }> | { gradNorm: number; loss?: number };
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

/** GPT (lib/model.ts) on checkpoint, run and Hugging Face GPT-2 folders. */
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
    sample: async (model, prompt, n, o) => (await (model as GPT).generate(prompt, { maxTokens: n, temperature: o.temperature, seed: o.seed })).tokens,
    describeDevice: (model) => {
      const g = model as GPT;
      return `${g.device} (${g.deviceReason}), ${g.precision}`;
    },
  };
}
