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
import {
  assertBuildable,
  cloneConfig,
  getPreset,
  GPTConfig,
  layerPatterns,
  TokenizerName,
  validateConfig,
} from './config';
import { ArgumentRangeError, callNative, callNativeSync, DisposedError, NoGpuError } from './errors';
import {
  Decoder,
  generate as generateWith,
  GenerateOptions,
  GenerationChunk,
  GenerationResult,
  nativeDecoder,
  Prompt,
  stream as streamWith,
  TokenCodec,
  tokenCodec,
} from './generate';
import { CoreNative, loadAddon } from './native';
import { exactParameterCount } from './params';
import { checkFits } from './limits';
import {
  describe,
  didYouMean,
  expectInteger,
  expectNumber,
  expectObject,
  expectOneOf,
  checkKnownKeys,
  typeError,
  rangeError,
} from './validate';

export type DeviceChoice = 'auto' | 'cpu' | 'cuda';
export type DeviceName = 'cpu' | 'cuda';
export type PrecisionName = 'fp32' | 'bf16';

export interface CreateOptions {
  /** seed of the weight initialization (non-negative safe integer; default 0) */
  seed?: number;
  /** 'auto' (default): cuda when a usable GPU is present, else cpu */
  device?: DeviceChoice;
  /** default: fp32 on the CPU, bf16 on CUDA (docs/ARCHITECTURE.md "Precision") */
  precision?: PrecisionName;
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

type BufferName = 'params' | 'grads' | 'exp_avg' | 'exp_avg_sq';

interface LossOut {
  loss: number;
  count: number;
  forwardMs: number;
  backwardMs: number;
}

/** The native handle (native/addon/model_binding.cc). Internal. */
export interface NativeModelHandle {
  forward(o: { tokens: Int32Array; batch: number; seq: number }): Promise<Float32Array>;
  loss(o: { tokens: Int32Array; targets: Int32Array; batch: number; seq: number }): Promise<LossOut>;
  forwardBackward(o: { tokens: Int32Array; targets: Int32Array; batch: number; seq: number }): Promise<LossOut>;
  step(o: Required<StepOptions>): Promise<StepResult & { optimizerMs: number }>;
  zeroGrad(): void;
  gradNorm(): number;
  tensorInfo(): { name: string; shape: number[]; decay: boolean }[];
  readTensors(which: BufferName): Float32Array[];
  writeTensors(which: BufferName, arrays: (Float32Array | undefined)[]): void;
  getStep(): number;
  setStep(n: number): void;
  accumulatedTargets(): number;
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

const CREATE_KEYS = ['seed', 'device', 'precision'] as const;
const LOAD_KEYS = [...CREATE_KEYS, 'optimizer'] as const;
const STEP_KEYS = ['lr', 'beta1', 'beta2', 'eps', 'weightDecay', 'gradClip'] as const;
const SAVE_KEYS = ['optimizer', 'tokenizer', 'state'] as const;

let bf16Warned = false;

/** True for a typed array of that kind from any realm (jest's vm contexts, worker-made arrays). */
function isTyped(x: unknown, kind: 'Float32Array' | 'Int32Array' | 'Uint32Array'): boolean {
  return ArrayBuffer.isView(x) && Object.prototype.toString.call(x) === `[object ${kind}]`;
}

/** The addon makes arrays in the main realm; view them as this realm's Float32Array (no copy). */
function local(a: Float32Array): Float32Array {
  if (a instanceof Float32Array) return a;
  const v = a as { buffer: ArrayBuffer; byteOffset: number; length: number };
  return new Float32Array(v.buffer, v.byteOffset, v.length);
}

interface Job {
  run: () => Promise<unknown>;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

/** Where a model runs, and why that device. */
export interface DeviceChoiceResult {
  device: DeviceName;
  reason: string;
}

/** Resolves 'auto' | 'cpu' | 'cuda' against what this machine has. */
export function chooseDevice(choice: DeviceChoice = 'auto'): DeviceChoiceResult {
  expectOneOf('device', choice, ['auto', 'cpu', 'cuda'] as const);
  if (choice === 'cpu') return { device: 'cpu', reason: 'device "cpu" was asked for' };
  const info = loadAddon().cudaInfo();
  if (choice === 'cuda') {
    if (!info.available) throw new NoGpuError(`device "cuda" was asked for but no GPU can be used: ${info.reason}`);
    return { device: 'cuda', reason: `device "cuda" was asked for: ${info.name}` };
  }
  if (info.available && info.emulated)
    return { device: 'cpu', reason: `auto: device "cuda" is ${info.name} in this build (for testing; ask for "cuda" to use it), using the CPU` };
  if (info.available) return { device: 'cuda', reason: `auto: a usable GPU was found (${info.name})` };
  return { device: 'cpu', reason: `auto: no usable GPU (${info.reason}), using the CPU` };
}

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
  private readonly queue: Job[] = [];
  private running: Promise<void> | null = null;
  private disposed = false;
  /** Estimated bytes the native model holds (state + activations for maxRows), for checkFits. */
  private heldBytes = 0;
  /** Largest batch * seq the core has grown its activations for. */
  private maxRows = 0;

  private constructor(
    handle: NativeModelHandle,
    config: GPTConfig,
    device: DeviceChoiceResult,
    precision: PrecisionName,
    seed: number,
  ) {
    this.handle = handle;
    this.config = config;
    this.device = device.device;
    this.deviceReason = device.reason;
    this.precision = precision;
    this.seed = seed;
    const info = handle.tensorInfo();
    this.names = info.map((t) => t.name);
    this.shapeList = info.map((t) => t.shape);
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
    const dev = chooseDevice(opts.device === undefined ? 'auto' : opts.device);
    const precision =
      opts.precision === undefined ? (dev.device === 'cuda' ? 'bf16' : 'fp32') : expectOneOf('precision', opts.precision, ['fp32', 'bf16'] as const);
    if (precision === 'bf16' && dev.device === 'cpu' && !bf16Warned && !loadAddon().hasAvx512Bf16()) {
      bf16Warned = true;
      process.emitWarning(
        'precision "bf16" on a CPU without AVX512_BF16: GEMM inputs are rounded to bf16 and multiplied in fp32 (the same numbers, without the bf16 speed-up)',
        { code: 'GPT_ENGINE_BF16' },
      );
    }
    // Refuse a model that cannot fit before allocating anything (with the
    // estimate and what would fit), instead of failing deep in the core.
    const fit = checkFits({ config: typeof configOrPreset === 'string' ? configOrPreset : config, device: dev.device, precision });
    const native = loadAddon<ModelNative>();
    const handle = await callNative(() =>
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
        device: dev.device,
        precision,
        seed,
      }),
    );
    const model = new GPT(handle, config, dev, precision, seed);
    model.heldBytes = fit.total;
    return model;
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
    const t = this.checkIds('tokens', tokens, s, false);
    return this.enqueue(async () => ({
      logits: local(await this.native().forward({ tokens: t, batch: s.batch, seq: s.seq })),
    }));
  }

  /** Mean cross-entropy over non-ignored targets (-1 = ignored); no gradients. NaN when every target is ignored. */
  loss(tokens: Int32Array | Uint32Array, targets: Int32Array, shape: BatchShape): Promise<number> {
    const s = this.checkShape(shape);
    const t = this.checkIds('tokens', tokens, s, false);
    const g = this.checkIds('targets', targets, s, true);
    return this.enqueue(async () => (await this.native().loss({ tokens: t, targets: g, batch: s.batch, seq: s.seq })).loss);
  }

  /**
   * Forward + backward; gradients accumulate until step() or zeroGrad().
   * Returns this batch's mean loss.
   */
  forwardBackward(tokens: Int32Array | Uint32Array, targets: Int32Array, shape: BatchShape): Promise<number> {
    const s = this.checkShape(shape);
    const t = this.checkIds('tokens', tokens, s, false);
    const g = this.checkIds('targets', targets, s, true);
    return this.enqueue(
      async () => (await this.native().forwardBackward({ tokens: t, targets: g, batch: s.batch, seq: s.seq })).loss,
    );
  }

  /** Clip + AdamW + zero the gradients (docs/ARCHITECTURE.md "Gradients"). */
  step(opts: StepOptions): Promise<StepResult> {
    const o = expectObject('options', opts);
    checkKnownKeys('step options', o, STEP_KEYS);
    const full: Required<StepOptions> = {
      lr: expectNumber('lr', opts.lr, { min: 0 }),
      beta1: opts.beta1 === undefined ? 0.9 : expectNumber('beta1', opts.beta1, { min: 0, max: 0.999999 }),
      beta2: opts.beta2 === undefined ? 0.95 : expectNumber('beta2', opts.beta2, { min: 0, max: 0.999999999 }),
      eps: opts.eps === undefined ? 1e-8 : expectNumber('eps', opts.eps, { gt: 0 }),
      weightDecay: opts.weightDecay === undefined ? 0 : expectNumber('weightDecay', opts.weightDecay, { min: 0 }),
      gradClip: opts.gradClip === undefined ? 0 : expectNumber('gradClip', opts.gradClip, { min: 0 }),
    };
    return this.enqueue(async () => {
      const r = await this.native().step(full);
      return { gradNorm: r.gradNorm, clipScale: r.clipScale, step: r.step, tokens: r.tokens };
    });
  }

  /** Clears the accumulated gradients and target count. */
  zeroGrad(): void {
    const h = this.native();
    callNativeSync(() => h.zeroGrad());
  }

  /** Global L2 norm of the current mean gradient (what step() would report). */
  gradNorm(): number {
    const h = this.native();
    return callNativeSync(() => h.gradNorm());
  }

  /** Non-ignored targets accumulated since the last step() / zeroGrad(). */
  accumulatedTargets(): number {
    const h = this.native();
    return callNativeSync(() => h.accumulatedTargets());
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
    const arrays = this.collect('parameters', tensors, opts.partial === true);
    const h = this.native();
    callNativeSync(() => h.writeTensors('params', arrays));
  }

  /** The AdamW moments (copies) and step counter. */
  optimizerState(): OptimizerState {
    const h = this.native();
    return {
      step: callNativeSync(() => h.getStep()),
      exp_avg: this.readBuffer('exp_avg'),
      exp_avg_sq: this.readBuffer('exp_avg_sq'),
    };
  }

  /** Restores the AdamW moments and step counter (all tensors required). */
  setOptimizerState(s: OptimizerState): void {
    expectObject('optimizer state', s);
    const step = expectInteger('step', s.step, { min: 0, max: Number.MAX_SAFE_INTEGER });
    const m = this.collect('exp_avg', s.exp_avg, false);
    const v = this.collect('exp_avg_sq', s.exp_avg_sq, false);
    const h = this.native();
    callNativeSync(() => {
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
    return this.enqueue(async () => {
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
    const h = this.native();
    const m = callNativeSync(() => h.memory());
    return { ...m, total: m.params + m.grads + m.optimizer + m.activations };
  }

  /** Split timings of the most recent calls (forward, backward, optimizer), in ms. */
  timings(): ModelTimings {
    const h = this.native();
    return callNativeSync(() => h.timings());
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
    if (this.disposed) {
      if (this.running) await this.running;
      return;
    }
    this.disposed = true;
    const queued = this.queue.splice(0);
    for (const j of queued) j.reject(new DisposedError('The model was disposed before this call ran'));
    if (this.running) await this.running;
    const h = this.handle;
    this.handle = null;
    if (h) h.dispose();
  }

  // ---- internals -----------------------------------------------------------

  private native(): NativeModelHandle {
    if (this.disposed || !this.handle) throw new DisposedError('This model was disposed');
    return this.handle;
  }

  /** Runs `fn` after every call queued before it (FIFO); errors keep the caller's stack. */
  private enqueue<T>(fn: () => Promise<T>): Promise<T> {
    if (this.disposed) return Promise.reject(new DisposedError('This model was disposed'));
    const caller = new Error().stack;
    return new Promise<T>((resolve, reject) => {
      this.queue.push({
        run: () => callNative(fn).catch((e: unknown) => {
          if (e instanceof Error && caller) e.stack = `${e.name}: ${e.message}\n${caller.split('\n').slice(2).join('\n')}`;
          throw e;
        }),
        resolve: resolve as (v: unknown) => void,
        reject,
      });
      if (!this.running) this.running = this.pump();
    });
  }

  private async pump(): Promise<void> {
    for (;;) {
      const job = this.queue.shift();
      if (!job) break;
      try {
        job.resolve(await job.run());
      } catch (e) {
        job.reject(e);
      }
    }
    this.running = null;
  }

  private checkShape(shape: BatchShape, logits = false): BatchShape {
    const o = expectObject('shape', shape);
    checkKnownKeys('shape', o, ['batch', 'seq']);
    const batch = expectInteger('batch', shape.batch, { min: 1, max: 1 << 24 });
    const seq = expectInteger('seq', shape.seq, { min: 1 });
    if (seq > this.config.n_positions)
      throw rangeError(`an integer between 1 and ${this.config.n_positions} (n_positions)`, 'seq', seq);
    // A new largest shape makes the core grow its activations: check that
    // they fit first (OUT_OF_MEMORY with what would fit), before any work.
    if (batch * seq > this.maxRows || logits) {
      const e = checkFits({
        config: this.config,
        device: this.device,
        precision: this.precision,
        batch,
        seq,
        logits,
        held: this.heldBytes,
      });
      if (batch * seq > this.maxRows) {
        this.maxRows = batch * seq;
        this.heldBytes = e.total - e.logits;
      }
    }
    return { batch, seq };
  }

  /** Validates ids and returns a private Int32Array copy (later changes to the caller's array cannot race the call). */
  private checkIds(field: string, ids: unknown, s: BatchShape, allowIgnore: boolean): Int32Array {
    const n = s.batch * s.seq;
    if (!isTyped(ids, 'Int32Array') && !(allowIgnore ? false : isTyped(ids, 'Uint32Array')))
      throw typeError(allowIgnore ? 'an Int32Array' : 'an Int32Array or Uint32Array', field, ids);
    const arr = ids as Int32Array | Uint32Array;
    if (arr.length !== n)
      throw rangeError(`an array of batch * seq = ${s.batch} * ${s.seq} = ${n} ids`, field, arr);
    const V = this.config.vocab_size;
    const lo = allowIgnore ? -1 : 0;
    for (let i = 0; i < n; i++) {
      const v = arr[i];
      if (v < lo || v >= V) {
        const what = allowIgnore ? `ids in [0, ${V}) or -1 (ignored)` : `token ids in [0, ${V})`;
        throw new ArgumentRangeError(`Expected ${what} for ${field} but received ${v} at index ${i}`);
      }
    }
    return Int32Array.from(arr);
  }

  private readBuffer(which: BufferName): Map<string, Float32Array> {
    const h = this.native();
    const arrays = callNativeSync(() => h.readTensors(which));
    return new Map(this.names.map((n, i) => [n, local(arrays[i])]));
  }

  /** Orders a user's tensor map into tensor order, checking names and lengths. */
  private collect(
    field: string,
    tensors: Map<string, Float32Array> | Record<string, Float32Array>,
    partial: boolean,
  ): (Float32Array | undefined)[] {
    if (!(tensors instanceof Map)) expectObject(field, tensors);
    const entries: [string, unknown][] = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
    const index = new Map(this.names.map((n, i) => [n, i]));
    const out: (Float32Array | undefined)[] = new Array(this.names.length).fill(undefined);
    for (const [name, arr] of entries) {
      const i = index.get(name);
      if (i === undefined)
        throw new ArgumentRangeError(
          `Unknown tensor ${JSON.stringify(name)} in ${field}${didYouMean(name, this.names)}; expected Hugging Face GPT-2 names such as wte.weight, h.0.attn.c_attn.weight`,
        );
      const shape = this.shapeList[i];
      const len = shape.reduce((a, b) => a * b, 1);
      if (!isTyped(arr, 'Float32Array')) throw typeError('a Float32Array', `${field}["${name}"]`, arr);
      if ((arr as Float32Array).length !== len)
        throw new ArgumentRangeError(
          `Expected a Float32Array of ${len} values (shape [${shape.join(', ')}]) for ${field}["${name}"] but received ${describe(arr)}`,
        );
      out[i] = arr as Float32Array;
    }
    if (!partial) {
      const missing = this.names.filter((_, i) => out[i] === undefined);
      if (missing.length)
        throw new ArgumentRangeError(
          `Expected every tensor in ${field} but ${missing.length} are missing (${missing.slice(0, 3).join(', ')}${missing.length > 3 ? ', ...' : ''})`,
        );
    }
    return out;
  }

  // ---- generation (generate() / stream()) is added below this line --------

  /**
   * Generates a continuation of a prompt (text, or token ids) with a KV
   * cache. An array of prompts decodes in one batch; each result equals
   * generating that prompt alone. Options, sampling order and statistics:
   * lib/generate.ts. A generation is one call in the model's FIFO queue
   * (docs/ARCHITECTURE.md "Concurrency"): it sees the weights as they were when its turn
   * came, and dispose() waits for it.
   */
  generate(prompt: Prompt, options?: GenerateOptions): Promise<GenerationResult>;
  generate(prompts: Prompt[], options?: GenerateOptions): Promise<GenerationResult[]>;
  generate(prompt: Prompt | Prompt[], options?: GenerateOptions): Promise<GenerationResult | GenerationResult[]> {
    return this.enqueue(() => generateWith(this.decoder(), this.textCodec(), prompt, options));
  }

  /**
   * Streams chunks `{ text, tokens, index }` as tokens are sampled; the texts
   * concatenate to generate()'s text. Breaking out of `for await` stops
   * generation; an aborted `signal` makes the loop throw its reason. The
   * stream takes its place in the model's FIFO queue when iteration starts
   * and holds it until the loop ends (dispose() waits for it).
   */
  async *stream(prompt: Prompt | Prompt[], options?: GenerateOptions): AsyncGenerator<GenerationChunk, void, undefined> {
    let release: () => void = () => undefined;
    const finished = new Promise<void>((r) => (release = r));
    let begin: () => void = () => undefined;
    const myTurn = new Promise<void>((r) => (begin = r));
    // A queue job that lasts as long as the stream; it rejects with
    // DisposedError if the model is disposed before its turn.
    const job = this.enqueue(async () => {
      begin();
      await finished;
    });
    await Promise.race([myTurn, job]);
    try {
      yield* streamWith(this.decoder(), this.textCodec(), prompt, options);
    } finally {
      release();
      await job.catch(() => undefined);
    }
  }

  /** The model's incremental decoder (KV-cache sessions): what generate() runs on; for benchmarks and tests. */
  decoder(): Decoder {
    // The running queue job may outlive dispose()'s call (dispose waits for
    // it), so these check the native handle, which goes only after it ends.
    const handle = (): NativeModelHandle => {
      if (!this.handle) throw new DisposedError('This model was disposed');
      return this.handle;
    };
    return nativeDecoder(handle, this.config, () => {
      if (!this.handle) throw new DisposedError('The model was disposed during generation');
    });
  }

  /** The tokenizer generate() uses: the checkpoint's, else gpt2. */
  textCodec(): TokenCodec {
    return tokenCodec(this.tokenizer ?? 'gpt2');
  }
}
