/**
 * The GPT model (docs/ARCHITECTURE.md "The model"): a typed wrapper over the native core's
 * graph. One native call per operation (a whole forward + backward is one
 * call); parameters, gradients and AdamW moments stay in native memory.
 *
 * Contracts (docs/ARCHITECTURE.md "Contracts"):
 * - forwardBackward() accumulates; gradients() and step() see the gradient of
 *   the mean loss over every non-ignored target (target -1) since the last
 *   step(), however many micro-batches. step() clips by min(1, gradClip/norm),
 *   applies AdamW (decay on 2-D tensors only) and zeroes the gradients; a
 *   non-finite norm throws NonFiniteError, leaves weights and moments
 *   unchanged and clears the gradients.
 * - parameters() / gradients() return copies keyed by Hugging Face GPT-2
 *   names (Conv1D weights [in, out]); the vocabulary padding is never visible.
 * - Asynchronous calls on one model run in FIFO order; dispose() waits for the
 *   running call and rejects the queued ones with DisposedError. Synchronous
 *   methods (zeroGrad, parameters, ...) act at once: if a call is running they
 *   wait for it (blocking), and they do not wait for queued calls.
 */
import { readCheckpoint, writeCheckpoint } from './checkpoint';
import { assertBuildable, cloneConfig, getPreset, GPTConfig, TokenizerName, validateConfig } from './config';
import { chooseDevice, choosePrecision, DeviceChoice, DeviceChoiceResult, DeviceName, PrecisionName } from './device';
import { callNativeSync, DisposedError } from './errors';
import {
  Decoder,
  GenerateOptions,
  GenerationChunk,
  GenerationResult,
  nativeDecoder,
  Prompt,
  TokenCodec,
  tokenCodec,
} from './generate';
import { BatchScheduler, BatchStats, checkMaxBatch, checkPrefillChunk, DEFAULT_MAX_BATCH, DEFAULT_PREFILL_CHUNK } from './generate/scheduler';
import { batchedGenerate, batchedStream, modelScheduler } from './model/batching';
import { MemoryFit } from './model/fit';
import { checkBatchShape, checkDeferLoss, checkIds, checkStepOptions, local, orderTensors } from './model/inputs';
import { BufferName, createNativeModel, NativeModelHandle } from './model/native';
import { CallQueue } from './model/queue';
import { exactParameterCount } from './params';
import { checkKnownKeys, expectInteger, expectObject, expectOneOf, typeError } from './validate';

export { chooseDevice } from './device';
export type { DeviceChoice, DeviceChoiceResult, DeviceName, PrecisionName } from './device';
export type { BatchStats } from './generate/scheduler';

export interface CreateOptions {
  /** seed of the weight initialization (non-negative safe integer; default 0) */
  seed?: number;
  /** 'auto' (default): cuda when a usable GPU is present, else cpu */
  device?: DeviceChoice;
  /** default: fp32 on the CPU, bf16 on CUDA (docs/ARCHITECTURE.md "Precision") */
  precision?: PrecisionName;
  /**
   * The most sequences generate()/stream() calls decode together, 1 to 4096
   * (default 16); more wait in order (docs/SERVING.md "Batching").
   */
  maxBatch?: number;
  /**
   * generate()/stream() prefill a prompt longer than this many tokens in
   * chunks of this many, one chunk between two decode steps of the running
   * batch; 1 to 1,048,576 (default 256; docs/SERVING.md "Inside the decoder").
   */
  prefillChunk?: number;
}

export interface LoadOptions extends CreateOptions {
  /** also read the AdamW moments and step counter when the folder has them (default true) */
  optimizer?: boolean;
}

export interface SaveOptions {
  /** also write optimizer.safetensors and the step counter (default false) */
  optimizer?: boolean;
  tokenizer?: TokenizerName;
  /** extra fields for state.json (the trainer's step, RNG, sampler, ...) */
  state?: Record<string, unknown>;
}

export interface BatchShape {
  batch: number;
  seq: number;
  /**
   * The document mask: an end-of-text token id. With it, attention keeps
   * every query inside its document (documents end at this token; the EOT
   * belongs to the document it ends; see lib/doc-mask.ts). Absent: queries
   * attend across documents, as GPT-2 and GPT-3 train.
   */
  docEot?: number;
}

export interface StepOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** clip the global norm to this value; 0 or absent: no clipping */
  gradClip?: number;
}

export interface StepResult {
  /** global L2 norm of the mean gradient before clipping */
  gradNorm: number;
  /** the factor the gradient was multiplied by (1 when not clipped) */
  clipScale: number;
  /** optimizer steps taken so far, this one included */
  step: number;
  /** non-ignored targets the gradient averaged over */
  tokens: number;
  /**
   * The mean of the mean losses of the forwardBackward calls with deferLoss
   * since the last step (absent when there were none): they come back here,
   * in the step's one copy from the device.
   */
  loss?: number;
}

/** forwardBackward() options. */
export interface ForwardBackwardOptions {
  /**
   * Leave this batch's loss on the device and resolve with NaN for it: the
   * next step() reports the mean loss of such batches (StepResult.loss), so a
   * step of any number of micro-batches waits for the device once.
   */
  deferLoss?: boolean;
}

export interface ModelMemory {
  params: number;
  grads: number;
  optimizer: number;
  activations: number;
  total: number;
}

/** Milliseconds of the most recent forward / backward / optimizer work. */
export interface ModelTimings {
  forwardMs: number;
  backwardMs: number;
  optimizerMs: number;
}

export interface OptimizerState {
  /** AdamW steps taken (bias correction uses it) */
  step: number;
  exp_avg: Map<string, Float32Array>;
  exp_avg_sq: Map<string, Float32Array>;
}

const CREATE_KEYS = ['seed', 'device', 'precision', 'maxBatch', 'prefillChunk'] as const;
const LOAD_KEYS = [...CREATE_KEYS, 'optimizer'] as const;
const SAVE_KEYS = ['optimizer', 'tokenizer', 'state'] as const;

export class GPT {
  /** The model's configuration (a copy). */
  readonly config: GPTConfig;
  readonly device: DeviceName;
  /** Why this device was picked (for 'auto', what was found). */
  readonly deviceReason: string;
  readonly precision: PrecisionName;
  readonly seed: number;
  /** Tokenizer named by the checkpoint this model was loaded from, if any. */
  tokenizer?: TokenizerName;
  /** state.json of the checkpoint this model was loaded from, if any. */
  loadedState?: Record<string, unknown>;

  private handle: NativeModelHandle | null;
  private readonly names: string[];
  private readonly shapeList: number[][];
  private readonly calls = new CallQueue();
  private disposed = false;
  private readonly fit: MemoryFit;
  /** forwardBackward was called since the last step/zeroGrad (the next one accumulates: MemoryFit.checkAccumulation). */
  private gradsPending = false;
  private readonly batcher: BatchScheduler;

  private constructor(
    handle: NativeModelHandle,
    config: GPTConfig,
    device: DeviceChoiceResult,
    precision: PrecisionName,
    seed: number,
    fit: MemoryFit,
    maxBatch: number,
    private readonly prefillChunk: number,
  ) {
    this.handle = handle;
    this.fit = fit;
    this.config = config;
    this.device = device.device;
    this.deviceReason = device.reason;
    this.precision = precision;
    this.seed = seed;
    const info = handle.tensorInfo();
    this.names = info.map((t) => t.name);
    this.shapeList = info.map((t) => t.shape);
    this.batcher = modelScheduler(this.calls, () => this.handle, config, maxBatch, prefillChunk, this.device, precision);
  }

  /** Builds a model from a preset name or a config object, with seeded weights (docs/ARCHITECTURE.md "The model"). */
  static async create(configOrPreset: string | GPTConfig, opts: CreateOptions = {}): Promise<GPT> {
    let config: GPTConfig;
    if (typeof configOrPreset === 'string') {
      config = cloneConfig(getPreset(configOrPreset).config);
      assertBuildable(config, configOrPreset);
    } else {
      config = validateConfig(configOrPreset);
      assertBuildable(config);
    }
    const o = expectObject('options', opts);
    checkKnownKeys('options', o, CREATE_KEYS);
    const seed = opts.seed === undefined ? 0 : expectInteger('seed', opts.seed, { min: 0, max: Number.MAX_SAFE_INTEGER });
    const maxBatch = opts.maxBatch === undefined ? DEFAULT_MAX_BATCH : checkMaxBatch(opts.maxBatch);
    const prefillChunk = opts.prefillChunk === undefined ? DEFAULT_PREFILL_CHUNK : checkPrefillChunk(opts.prefillChunk);
    const dev = chooseDevice(opts.device === undefined ? 'auto' : opts.device);
    const precision = choosePrecision(dev.device, opts.precision);
    // Refuse a model that cannot fit before allocating anything (with the
    // estimate and what would fit), instead of failing deep in the core.
    const fit = new MemoryFit(config, dev.device, precision, typeof configOrPreset === 'string' ? configOrPreset : undefined);
    const handle = await createNativeModel(config, dev.device, precision, seed);
    return new GPT(handle, config, dev, precision, seed, fit, maxBatch, prefillChunk);
  }

  /**
   * Loads a checkpoint folder, a run folder (its newest complete checkpoint)
   * or a Hugging Face GPT-2 folder. With `optimizer` (default true) the AdamW
   * moments and step counter are restored when the folder has them.
   */
  static async load(dir: string, opts: LoadOptions = {}): Promise<GPT> {
    const o = expectObject('options', opts);
    checkKnownKeys('options', o, LOAD_KEYS);
    const withOpt = opts.optimizer === undefined ? true : opts.optimizer;
    const ckpt = await readCheckpoint(dir, { optimizer: withOpt });
    const { optimizer: _o, ...createOpts } = opts;
    void _o;
    const model = await GPT.create(ckpt.config, createOpts);
    try {
      model.setParameters(ckpt.tensors);
      if (ckpt.optimizer) {
        const st = ckpt.state as Record<string, unknown> | undefined;
        const trainer = st?.trainer as Record<string, unknown> | undefined;
        const step =
          typeof trainer?.optimizer_step === 'number' ? trainer.optimizer_step : typeof st?.step === 'number' ? st.step : 0;
        model.setOptimizerState({ step, exp_avg: ckpt.optimizer.exp_avg, exp_avg_sq: ckpt.optimizer.exp_avg_sq });
      }
    } catch (e) {
      await model.dispose();
      throw e;
    }
    model.tokenizer = ckpt.tokenizer;
    model.loadedState = ckpt.state as Record<string, unknown> | undefined;
    return model;
  }

  /** Tensors in parameter order, with their shapes (HF names, unpadded). */
  shapes(): Map<string, number[]> {
    return new Map(this.names.map((n, i) => [n, [...this.shapeList[i]]]));
  }

  /** Exact number of parameters (LayerNorms included). */
  get numParameters(): number {
    return exactParameterCount(this.config);
  }

  /** Logits [batch, seq, vocab_size] for tokens [batch * seq] (a copy). */
  forward(tokens: Int32Array | Uint32Array, shape: BatchShape): Promise<{ logits: Float32Array }> {
    const s = this.checkShape(shape, true);
    const t = checkIds('tokens', tokens, s, this.config.vocab_size, false);
    return this.calls.enqueue(async () => ({
      logits: local(await this.native().forward({ tokens: t, ...s })),
    }));
  }

  /** Mean cross-entropy over non-ignored targets (-1 = ignored); no gradients. NaN when every target is ignored. */
  loss(tokens: Int32Array | Uint32Array, targets: Int32Array, shape: BatchShape): Promise<number> {
    const s = this.checkShape(shape);
    const t = checkIds('tokens', tokens, s, this.config.vocab_size, false);
    const g = checkIds('targets', targets, s, this.config.vocab_size, true);
    return this.calls.enqueue(async () => (await this.native().loss({ tokens: t, targets: g, ...s })).loss);
  }

  /** forwardBackward() takes { deferLoss } (lib/train/backend.ts TrainModel). */
  readonly defersLoss = true;

  /**
   * Forward + backward; gradients accumulate until step() or zeroGrad().
   * Returns this batch's mean loss, or NaN with `deferLoss` (then step()
   * reports it).
   */
  forwardBackward(
    tokens: Int32Array | Uint32Array,
    targets: Int32Array,
    shape: BatchShape,
    opts: ForwardBackwardOptions = {},
  ): Promise<number> {
    const s = this.checkShape(shape);
    const t = checkIds('tokens', tokens, s, this.config.vocab_size, false);
    const g = checkIds('targets', targets, s, this.config.vocab_size, true);
    const defer = checkDeferLoss(opts);
    if (this.gradsPending) this.fit.checkAccumulation();
    this.gradsPending = true;
    return this.calls.enqueue(
      async () => (await this.native().forwardBackward({ tokens: t, targets: g, ...s, ...(defer ? { deferLoss: true } : {}) })).loss,
    );
  }

  /**
   * Clip + AdamW + zero the gradients (docs/ARCHITECTURE.md "Gradients").
   * AdamW settings left out take the core's defaults (native/core/model.h:
   * beta1 0.9, beta2 0.95, eps 1e-8, no weight decay, no clipping).
   */
  step(opts: StepOptions): Promise<StepResult> {
    const given = checkStepOptions(opts);
    this.gradsPending = false;
    return this.calls.enqueue(async () => {
      const r = await this.native().step(given);
      const out: StepResult = { gradNorm: r.gradNorm, clipScale: r.clipScale, step: r.step, tokens: r.tokens };
      if (r.deferred > 0) out.loss = r.loss;
      return out;
    });
  }

  /** Clears the accumulated gradients and target count. */
  zeroGrad(): void {
    this.gradsPending = false;
    this.sync((h) => h.zeroGrad());
  }

  /** Global L2 norm of the current mean gradient (what step() would report). */
  gradNorm(): number {
    return this.sync((h) => h.gradNorm());
  }

  /** Non-ignored targets accumulated since the last step() / zeroGrad(). */
  accumulatedTargets(): number {
    return this.sync((h) => h.accumulatedTargets());
  }

  /**
   * CUDA graphs of the training micro-batches (GPT_ENGINE_CUDA_GRAPH=1 on "cuda"):
   * "on" or "off: <why>", then how many graphs were captured and replayed.
   */
  graphs(): string {
    return this.sync((h) => h.graphs());
  }

  /**
   * The type this model stores its training activations (LayerNorm outputs,
   * qkv, attention output, the MLP's pre- and post-GELU) and the weights'
   * copy for the GEMMs in: 'bf16' on CUDA in bf16 (unless
   * GPT_ENGINE_BF16_STORAGE=0), 'fp32' otherwise (docs/ARCHITECTURE.md "Precision").
   */
  storage(): 'fp32' | 'bf16' {
    return this.sync((h) => h.storage());
  }

  /** Copies of every parameter, keyed by HF GPT-2 names. */
  parameters(): Map<string, Float32Array> {
    return this.readBuffer('params');
  }

  /** Copies of the mean gradient since the last step, keyed like parameters(). */
  gradients(): Map<string, Float32Array> {
    return this.readBuffer('grads');
  }

  /**
   * Copies tensors in (validated: names, lengths). Every tensor must be given
   * unless `partial` is true. Accepts a Map or a plain object.
   */
  setParameters(tensors: Map<string, Float32Array> | Record<string, Float32Array>, opts: { partial?: boolean } = {}): void {
    const arrays = orderTensors('parameters', tensors, this.names, this.shapeList, opts.partial === true);
    this.sync((h) => h.writeTensors('params', arrays));
  }

  /** The AdamW moments (copies) and step counter. */
  optimizerState(): OptimizerState {
    return {
      step: this.sync((h) => h.getStep()),
      exp_avg: this.readBuffer('exp_avg'),
      exp_avg_sq: this.readBuffer('exp_avg_sq'),
    };
  }

  /** Restores the AdamW moments and step counter (all tensors required). */
  setOptimizerState(s: OptimizerState): void {
    expectObject('optimizer state', s);
    const step = expectInteger('step', s.step, { min: 0, max: Number.MAX_SAFE_INTEGER });
    const m = orderTensors('exp_avg', s.exp_avg, this.names, this.shapeList, false);
    const v = orderTensors('exp_avg_sq', s.exp_avg_sq, this.names, this.shapeList, false);
    this.sync((h) => {
      h.writeTensors('exp_avg', m);
      h.writeTensors('exp_avg_sq', v);
      h.setStep(step);
    });
  }

  /**
   * Writes the checkpoint folder of docs/ARCHITECTURE.md (config.json, model.safetensors, and with
   * `optimizer` optimizer.safetensors + state.json), atomically. Runs after
   * the calls already queued.
   */
  save(dir: string, opts: SaveOptions = {}): Promise<void> {
    if (typeof dir !== 'string' || dir.length === 0) throw typeError('a folder path', 'dir', dir);
    const o = expectObject('options', opts);
    checkKnownKeys('save options', o, SAVE_KEYS);
    if (opts.tokenizer !== undefined) expectOneOf('tokenizer', opts.tokenizer, ['gpt2', 'byte'] as const);
    if (opts.state !== undefined) expectObject('state', opts.state);
    return this.calls.enqueue(async () => {
      const tensors = this.parameters();
      let optimizer: { exp_avg: Map<string, Float32Array>; exp_avg_sq: Map<string, Float32Array> } | undefined;
      let state = opts.state;
      if (opts.optimizer) {
        const s = this.optimizerState();
        optimizer = { exp_avg: s.exp_avg, exp_avg_sq: s.exp_avg_sq };
        const trainer = (state?.trainer as Record<string, unknown> | undefined) ?? {};
        state = { version: 1, step: s.step, ...state, trainer: { ...trainer, optimizer_step: s.step } };
      }
      await writeCheckpoint(dir, {
        config: cloneConfig(this.config),
        tokenizer: opts.tokenizer ?? this.tokenizer,
        tensors,
        shapes: this.shapes(),
        optimizer,
        state,
      });
    });
  }

  /** Bytes held: parameters, gradients, optimizer moments, activations. */
  memory(): ModelMemory {
    const m = this.sync((h) => h.memory());
    return { ...m, total: m.params + m.grads + m.optimizer + m.activations };
  }

  /** Split timings of the most recent calls (forward, backward, optimizer), in ms. */
  timings(): ModelTimings {
    return this.sync((h) => h.timings());
  }

  /** The native handle (for lib/distributed, which joins the model to the ranks of a data-parallel run). */
  nativeHandle(): NativeModelHandle {
    return this.native();
  }

  /** True once dispose() was called. */
  get isDisposed(): boolean {
    return this.disposed;
  }

  /**
   * Frees the native model: waits for the running call, rejects the queued
   * ones with DisposedError. Later calls throw DisposedError. Idempotent.
   */
  async dispose(): Promise<void> {
    const first = !this.disposed;
    this.disposed = true;
    const running = this.calls.close();
    if (running) await running;
    if (!first) return;
    this.batcher.dispose();
    const h = this.handle;
    this.handle = null;
    if (h) h.dispose();
  }

  // ---- internals -----------------------------------------------------------

  private native(): NativeModelHandle {
    if (this.disposed || !this.handle) throw new DisposedError('This model was disposed');
    return this.handle;
  }

  /** A synchronous native call on the live handle, its errors converted. */
  private sync<T>(fn: (h: NativeModelHandle) => T): T {
    const h = this.native();
    return callNativeSync(() => fn(h));
  }

  /** Validates a shape and checks that its activations (and logits) fit. */
  private checkShape(shape: BatchShape, logits = false): BatchShape {
    const s = checkBatchShape(shape, this.config.n_positions, this.config.vocab_size);
    this.fit.check(s.batch, s.seq, logits);
    return s;
  }

  private readBuffer(which: BufferName): Map<string, Float32Array> {
    const arrays = this.sync((h) => h.readTensors(which));
    return new Map(this.names.map((n, i) => [n, local(arrays[i])]));
  }

  // ---- generation ----------------------------------------------------------

  /**
   * Generates a continuation of a prompt (text, or token ids) with a KV
   * cache. An array of prompts decodes in one batch; each result equals
   * generating that prompt alone. Options, sampling order and statistics:
   * lib/generate.ts. Concurrent generate()/stream() calls decode together,
   * one batched step for all (lib/generate/scheduler.ts), each result
   * bitwise what the call alone gives; toward the other calls of the model
   * a generation keeps its place in the FIFO queue (docs/ARCHITECTURE.md
   * "Concurrency"): it sees the weights the calls before it left, and
   * dispose() waits for it.
   */
  generate(prompt: Prompt, options?: GenerateOptions): Promise<GenerationResult>;
  generate(prompts: Prompt[], options?: GenerateOptions): Promise<GenerationResult[]>;
  generate(prompt: Prompt | Prompt[], options?: GenerateOptions): Promise<GenerationResult | GenerationResult[]> {
    return batchedGenerate(this.batcher, this.textCodec(), prompt, options);
  }

  /**
   * Streams chunks `{ text, tokens, index }` as tokens are sampled; the texts
   * concatenate to generate()'s text. Breaking out of `for await` stops
   * generation; an aborted `signal` makes the loop throw its reason. The
   * stream joins the model's batch when iteration starts and leaves it when
   * the loop ends (dispose() waits for it).
   */
  stream(prompt: Prompt | Prompt[], options?: GenerateOptions): AsyncGenerator<GenerationChunk, void, undefined> {
    return batchedStream(this.batcher, this.textCodec(), prompt, options);
  }

  /** What the batch of concurrent generations holds now (for metrics). */
  batchStats(): BatchStats {
    return this.batcher.stats();
  }

  /** The model's incremental decoder (KV-cache sessions): what generate() runs on; for benchmarks and tests. */
  decoder(): Decoder {
    // The running queue job may outlive dispose()'s call (dispose waits for
    // it), so these check the native handle, which goes only after it ends.
    const handle = (): NativeModelHandle => {
      if (!this.handle) throw new DisposedError('This model was disposed');
      return this.handle;
    };
    return nativeDecoder(
      handle,
      this.config,
      () => {
        if (!this.handle) throw new DisposedError('The model was disposed during generation');
      },
      this.prefillChunk,
    );
  }

  /** The tokenizer generate() uses: the checkpoint's, else gpt2. */
  textCodec(): TokenCodec {
    return tokenCodec(this.tokenizer ?? 'gpt2');
  }
}
