/**
 * The native model handle (native/addon/model_binding.cc) as lib/model.ts
 * sees it: every call it makes, typed, and the one place the model's
 * configuration is turned into the binding's input.
 */
import { GPTConfig, layerPatterns } from '../config';
import type { DeviceName, PrecisionName } from '../device';
import type { ModelMemory, ModelTimings, StepOptions, StepResult } from '../model';
import { callNative } from '../errors';
import { CoreNative, loadAddon } from '../native';

export type BufferName = 'params' | 'grads' | 'exp_avg' | 'exp_avg_sq';

interface LossOut {
  loss: number;
  count: number;
  forwardMs: number;
  backwardMs: number;
}

/** The native handle. Internal. */
export interface NativeModelHandle {
  forward(o: { tokens: Int32Array; batch: number; seq: number; docEot?: number }): Promise<Float32Array>;
  loss(o: { tokens: Int32Array; targets: Int32Array; batch: number; seq: number; docEot?: number }): Promise<LossOut>;
  /** deferLoss: the loss stays on the device (resolves with NaN for it; step() reports it). */
  forwardBackward(o: { tokens: Int32Array; targets: Int32Array; batch: number; seq: number; docEot?: number; deferLoss?: boolean }): Promise<LossOut>;
  /** AdamW settings left out take the core's defaults (native/core/model.h). loss: the deferred losses' mean (NaN when deferred is 0). */
  step(o: StepOptions): Promise<Omit<StepResult, 'loss'> & { optimizerMs: number; deferred: number; loss: number }>;
  zeroGrad(): void;
  gradNorm(): number;
  tensorInfo(): { name: string; shape: number[]; decay: boolean }[];
  readTensors(which: BufferName): Float32Array[];
  writeTensors(which: BufferName, arrays: (Float32Array | undefined)[]): void;
  getStep(): number;
  setStep(n: number): void;
  accumulatedTargets(): number;
  /** CUDA graphs of the training step: "on" or "off: <why>", then the counts captured and replayed. */
  graphs(): string;
  /** The type of the stored training activations and of the weights' GEMM copy (docs/ARCHITECTURE.md "Precision"). */
  storage(): 'fp32' | 'bf16';
  memory(): Omit<ModelMemory, 'total'>;
  timings(): ModelTimings;
  dispose(): void;
}

interface ModelNative extends CoreNative {
  createModel(o: {
    config: Record<string, unknown>;
    device: DeviceName;
    precision: PrecisionName;
    seed: number;
  }): Promise<NativeModelHandle>;
}

/** Builds the native model of a validated, buildable config with seeded weights. */
export function createNativeModel(
  config: GPTConfig,
  device: DeviceName,
  precision: PrecisionName,
  seed: number,
): Promise<NativeModelHandle> {
  const native = loadAddon<ModelNative>();
  return callNative(() =>
    native.createModel({
      config: {
        n_layer: config.n_layer,
        n_head: config.n_head,
        n_embd: config.n_embd,
        n_positions: config.n_positions,
        vocab_size: config.vocab_size,
        layer_norm_epsilon: config.layer_norm_epsilon,
        attention_window: config.attention_window ?? undefined,
        patterns: layerPatterns(config),
      },
      device,
      precision,
      seed,
    }),
  );
}
