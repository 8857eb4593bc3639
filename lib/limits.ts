/**
 * Memory limits (docs/ARCHITECTURE.md "Errors": OUT_OF_MEMORY): what a model takes on a
 * device, checked against what the machine has BEFORE anything is allocated.
 * A request that cannot fit is refused with OutOfMemoryError, whose message
 * gives the estimate piece by piece, what the machine has, and what would fit
 * (the largest batch or sequence at this size, or a smaller preset).
 *
 * Why check at all: on Linux a big allocation usually "succeeds" (overcommit)
 * and the process is killed later, when the pages are touched; a number
 * computed up front turns that into an error the caller can handle.
 *
 * The figures come from the core, not from a copy of its arithmetic: the
 * addon's memoryLayout asks Model::plan_memory (native/core/model.cc), which
 * runs the same layout code a model allocates with: four parameter-sized
 * buffers (weights, gradients, two AdamW moments) and one activation block
 * for batch x seq rows (plus the token and target ids). So the estimate
 * equals GPT.memory() of a model that ran such a call, byte for byte
 * (test/native/limits.test.ts). On CUDA a bf16 model keeps its activations
 * in bf16 and a bf16 copy of the weights (2 bytes per stored parameter), both
 * in the core's figures, plus the scratch the CUDA backend reserves for a
 * training step (cuda_training_scratch_bytes, from the same sizing code the
 * backend reserves with).
 */
import * as os from 'node:os';

import { cloneConfig, getPreset, GPTConfig, layerPatterns, PRESETS, validateConfig } from './config';
import { OutOfMemoryError } from './errors';
import { loadAddon } from './native';
import { checkKnownKeys, expectInteger, expectObject, expectOneOf, rangeError } from './validate';

export type LimitsDevice = 'cpu' | 'cuda';
export type LimitsPrecision = 'fp32' | 'bf16';

export interface FitRequest {
  /** a preset name or a model config */
  config: string | GPTConfig;
  /** the device the model will live on (resolved, not 'auto'); default 'cpu' */
  device?: LimitsDevice;
  /** default: fp32 on the CPU, bf16 on CUDA (docs/ARCHITECTURE.md "Precision") */
  precision?: LimitsPrecision;
  /** rows of one forward / forwardBackward call; absent: the model's state only */
  batch?: number;
  /** sequence length of one call (1 .. n_positions); absent: the model's state only */
  seq?: number;
  /** also count the [batch, seq, vocab] logits copy that forward() hands back */
  logits?: boolean;
  /**
   * also count the gradient accumulation buffer: a model that accumulates more
   * than one micro-batch before a step holds a second gradient-sized buffer
   * (docs/ARCHITECTURE.md "Data parallel"), reported within `grads`
   */
  accumulation?: boolean;
  /** bytes this model already holds (GPT.memory().total), when checking a call on a live model */
  held?: number;
  /** bytes that may be used; default: what the device has free now (see availableMemory) */
  available?: number;
}

export interface MemoryEstimate {
  device: LimitsDevice;
  precision: LimitsPrecision;
  /** the preset name when the request named one */
  preset: string | null;
  batch: number | null;
  seq: number | null;
  /** weights, gradients and each AdamW moment: one parameter-sized buffer each */
  params: number;
  grads: number;
  optimizer: number;
  /** the bf16 weight copy a bf16 model keeps on CUDA (0 elsewhere) */
  lowPrecisionCopy: number;
  /** the activation block for batch x seq (0 without batch and seq) */
  activations: number;
  /** the CUDA backend's scratch for a training step of batch x seq (partial sums, sort keys; 0 on the CPU) */
  scratch: number;
  /** the logits forward() returns (0 unless asked for) */
  logits: number;
  /** everything above */
  total: number;
  /** total minus what the model already holds: what still has to be allocated */
  needed: number;
  /** bytes that may be used, and the machine's total */
  available: number;
  capacity: number;
  /** where `available` came from, for messages */
  source: string;
  fits: boolean;
}

export interface DeviceMemory {
  /** bytes usable now */
  available: number;
  /** bytes the device has in all */
  capacity: number;
  source: string;
}

const REQUEST_KEYS = ['config', 'device', 'precision', 'batch', 'seq', 'logits', 'accumulation', 'held', 'available'] as const;
const MiB = 1 << 20;

/** What the core holds for `c` (Model::plan_memory), with the activations for batch x seq when given. */
function coreLayout(
  c: GPTConfig,
  batch?: number,
  seq?: number,
  storage: 'fp32' | 'bf16' = 'fp32',
): { params: number; grads: number; optimizer: number; activations: number; scratch: number } {
  return loadAddon().memoryLayout(batch === undefined ? { config: c, storage } : { config: c, batch, seq, storage });
}


/** Floats in one parameter-sized buffer of the core (tensors rounded to 16 floats, vocabulary padded). */
export function stateFloats(c: GPTConfig): number {
  return coreLayout(c).params / 4;
}

/** Bytes of the core's activation block for batch x seq, with the token and target ids (GPT.memory().activations). */
export function coreActivationBytes(c: GPTConfig, batch: number, seq: number): number {
  return coreLayout(c, batch, seq).activations;
}

/**
 * The type the core stores a model's activations and its decoding key/value
 * cache in (Backend::activation_dtype, kv_cache_dtype): bf16 on CUDA in bf16
 * unless GPT_ENGINE_BF16_STORAGE=0, else fp32.
 */
export function storageType(device: LimitsDevice, precision: LimitsPrecision): 'fp32' | 'bf16' {
  return device === 'cuda' && precision === 'bf16' && process.env.GPT_ENGINE_BF16_STORAGE !== '0' ? 'bf16' : 'fp32';
}

/**
 * Bytes of the key/value cache generation keeps (native/core/decode.h): per
 * sequence and layer, K and V of [H, P, D], where P is the sequence's capacity
 * (prompt + new tokens) on dense layers and min(window, capacity) on banded ones;
 * 4 bytes an element, 2 for the bf16 cache of a bf16 model on CUDA (storageType).
 */
export function kvCacheBytes(
  c: GPTConfig,
  capacities: readonly number[],
  device: LimitsDevice = 'cpu',
  precision: LimitsPrecision = 'fp32',
): number {
  const patterns = layerPatterns(c);
  let elems = 0;
  for (const cap of capacities)
    for (const p of patterns) {
      const slots = p === 'banded' ? Math.min(c.attention_window ?? cap, cap) : cap;
      elems += 2 * c.n_embd * slots;
    }
  return (storageType(device, precision) === 'bf16' ? 2 : 4) * elems;
}

/** "123 MiB"; with `long`, sizes from 1 GiB also in GiB or TiB: "2,662,219 MiB = 2.54 TiB". */
export function formatBytes(bytes: number, long = false): string {
  if (bytes === Infinity) return 'more than 2^63 bytes';
  const mib = bytes / MiB;
  const main = mib >= 10 ? `${Math.round(mib).toLocaleString('en-US')} MiB` : `${mib.toFixed(mib >= 1 ? 1 : 2)} MiB`;
  if (!long) return main;
  if (bytes >= 2 ** 40) return `${main} = ${(bytes / 2 ** 40).toFixed(2)} TiB`;
  if (bytes >= 2 ** 30) return `${main} = ${(bytes / 2 ** 30).toFixed(1)} GiB`;
  return main;
}

/** Parses GPT_ENGINE_MEMORY_LIMIT: bytes, or a number with K, M, G or T (binary units). */
export function parseMemoryLimit(text: string): number {
  const m = /^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)i?b?\s*$/i.exec(text);
  if (!m) throw rangeError('a byte count such as 8G, 512M or 1073741824', 'GPT_ENGINE_MEMORY_LIMIT', text);
  const unit = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  const v = Math.floor(Number(m[1]) * unit);
  if (v <= 0) throw rangeError('a positive byte count', 'GPT_ENGINE_MEMORY_LIMIT', text);
  return v;
}

/**
 * What a device can hold now. CPU: free memory (os.freemem(), which on Linux
 * is MemAvailable, i.e. free plus reclaimable cache), capped by the
 * container's limit when there is one. CUDA: the GPU's total memory (the
 * addon does not report free memory). GPT_ENGINE_MEMORY_LIMIT, when set,
 * caps both (for machines where swap is wanted, or to leave room for others).
 */
export function availableMemory(device: LimitsDevice = 'cpu'): DeviceMemory {
  let available: number;
  let capacity: number;
  let source: string;
  if (device === 'cuda') {
    const info = loadAddon().cudaInfo();
    capacity = info.available ? info.totalMemory : 0;
    available = capacity;
    source = info.available ? `the GPU's memory (${info.name})` : `no usable GPU (${info.reason})`;
  } else {
    capacity = os.totalmem();
    const constrained = typeof process.constrainedMemory === 'function' ? Number(process.constrainedMemory()) : 0;
    const limited = constrained > 0 && constrained < capacity;
    if (limited) capacity = constrained;
    available = Math.min(os.freemem(), capacity);
    source = `free memory now, of ${formatBytes(capacity, true)} ${limited ? 'allowed by the container' : 'RAM'}`;
  }
  const env = process.env.GPT_ENGINE_MEMORY_LIMIT;
  if (env !== undefined && env !== '') {
    const lim = parseMemoryLimit(env);
    if (lim < available) {
      available = lim;
      source = `GPT_ENGINE_MEMORY_LIMIT=${env}`;
    }
  }
  return { available, capacity, source };
}

interface Normalized {
  config: GPTConfig;
  preset: string | null;
  device: LimitsDevice;
  precision: LimitsPrecision;
  batch: number | null;
  seq: number | null;
  logits: boolean;
  accumulation: boolean;
  held: number;
  available: number | undefined;
}

function normalize(req: FitRequest): Normalized {
  const o = expectObject('request', req);
  checkKnownKeys('memory request', o, REQUEST_KEYS);
  let config: GPTConfig;
  let preset: string | null = null;
  if (typeof req.config === 'string') {
    preset = req.config;
    config = cloneConfig(getPreset(req.config).config);
  } else config = validateConfig(req.config);
  const device = req.device === undefined ? 'cpu' : expectOneOf('device', req.device, ['cpu', 'cuda'] as const);
  const precision =
    req.precision === undefined ? (device === 'cuda' ? 'bf16' : 'fp32') : expectOneOf('precision', req.precision, ['fp32', 'bf16'] as const);
  if ((req.batch === undefined) !== (req.seq === undefined))
    throw rangeError('batch and seq together (or neither)', req.batch === undefined ? 'batch' : 'seq', undefined);
  let batch: number | null = null;
  let seq: number | null = null;
  if (req.batch !== undefined) {
    batch = expectInteger('batch', req.batch, { min: 1, max: Number.MAX_SAFE_INTEGER });
    seq = expectInteger('seq', req.seq, { min: 1, max: Number.MAX_SAFE_INTEGER });
    if (seq > config.n_positions) throw rangeError(`an integer between 1 and ${config.n_positions} (n_positions)`, 'seq', seq);
  }
  const held = req.held === undefined ? 0 : expectInteger('held', req.held, { min: 0, max: Number.MAX_SAFE_INTEGER });
  const available = req.available === undefined ? undefined : expectInteger('available', req.available, { min: 0, max: Number.MAX_SAFE_INTEGER });
  return { config, preset, device, precision, batch, seq, logits: req.logits === true, accumulation: req.accumulation === true, held, available };
}

function estimateFor(n: Normalized, mem: DeviceMemory): MemoryEstimate {
  const c = n.config;
  const storage = storageType(n.device, n.precision);
  const core =
    n.batch !== null && n.seq !== null ? coreLayout(c, n.batch, n.seq, storage) : coreLayout(c, undefined, undefined, storage);
  // In bf16 storage the core's params figure holds the fp32 weights and their bf16 copy.
  const params = core.grads;
  const lowPrecisionCopy = core.params - core.grads;
  const logits = n.logits && n.batch !== null && n.seq !== null ? 4 * n.batch * n.seq * c.vocab_size : 0;
  const grads = n.accumulation ? 2 * core.grads : core.grads;
  const scratch = n.device === 'cuda' ? core.scratch : 0;
  const total = params + grads + core.optimizer + lowPrecisionCopy + core.activations + scratch + logits;
  const needed = Math.max(0, total - n.held);
  return {
    device: n.device,
    precision: n.precision,
    preset: n.preset,
    batch: n.batch,
    seq: n.seq,
    params,
    grads,
    optimizer: core.optimizer,
    lowPrecisionCopy,
    activations: core.activations,
    scratch,
    logits,
    total,
    needed,
    available: mem.available,
    capacity: mem.capacity,
    source: mem.source,
    fits: needed <= mem.available,
  };
}

function deviceMemory(n: Normalized): DeviceMemory {
  if (n.available !== undefined) return { available: n.available, capacity: n.available, source: 'the given limit' };
  return availableMemory(n.device);
}

/** The estimate for a request, and whether it fits; never throws for lack of memory. */
export function estimateMemory(req: FitRequest): MemoryEstimate {
  const n = normalize(req);
  return estimateFor(n, deviceMemory(n));
}

/** Largest batch at `seq` whose total fits in `budget` bytes (0 when not even batch 1 does). */
export function largestBatch(n: Pick<Normalized, 'config' | 'device' | 'precision' | 'logits' | 'held'> & { accumulation?: boolean }, seq: number, budget: number): number {
  const fits = (b: number) => estimateFor({ accumulation: false, ...n, preset: null, batch: b, seq, available: budget }, { available: budget, capacity: budget, source: '' }).fits;
  if (!fits(1)) return 0;
  let lo = 1;
  let hi = 2;
  while (fits(hi) && hi < 2 ** 40) {
    lo = hi;
    hi *= 2;
  }
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (fits(mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}

/** Largest seq (<= n_positions) at `batch` whose total fits in `budget` bytes (0 when not even seq 1 does). */
export function largestSeq(n: Pick<Normalized, 'config' | 'device' | 'precision' | 'logits' | 'held'> & { accumulation?: boolean }, batch: number, budget: number): number {
  const fits = (t: number) => estimateFor({ accumulation: false, ...n, preset: null, batch, seq: t, available: budget }, { available: budget, capacity: budget, source: '' }).fits;
  if (!fits(1)) return 0;
  let lo = 1;
  let hi = n.config.n_positions + 1;
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (fits(mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}

/** Buildable presets, smallest first. */
function presetsBySize(): { name: string; config: GPTConfig }[] {
  return Object.values(PRESETS)
    .filter((p) => p.buildable)
    .map((p) => ({ name: p.name, config: p.config, floats: stateFloats(p.config) }))
    .sort((a, b) => a.floats - b.floats)
    .map(({ name, config }) => ({ name, config }));
}

/** What would fit instead, as one sentence (empty when nothing sensible does). */
function whatFits(n: Normalized, e: MemoryEstimate): string {
  const budget = e.available;
  const base = { config: n.config, device: n.device, precision: n.precision, logits: n.logits, accumulation: n.accumulation, held: n.held };
  const stateOnly = estimateFor({ ...n, batch: null, seq: null }, { available: budget, capacity: budget, source: '' });
  const parts: string[] = [];
  if (stateOnly.fits && n.batch !== null && n.seq !== null) {
    const b = largestBatch(base, n.seq, budget);
    const t = largestSeq(base, n.batch, budget);
    if (b > 0) parts.push(`batch ${b} at seq ${n.seq}`);
    if (t > 0) parts.push(`seq ${t} at batch ${n.batch}`);
    if (b === 0 && t === 0) {
      const t1 = largestSeq(base, 1, budget);
      if (t1 > 0) parts.push(`seq ${t1} at batch 1`);
    }
    if (parts.length) return ` What fits: ${parts.join(', or ')}.`;
  }
  // The model itself is too big: the largest preset that fits, with room to
  // train it (the request's batch and seq, else batch 1 at its full context).
  let best: string | null = null;
  for (const p of presetsBySize()) {
    const batch = n.batch ?? 1;
    const seq = Math.min(n.seq ?? p.config.n_positions, p.config.n_positions);
    const pe = estimateFor({ ...n, config: p.config, preset: p.name, batch, seq, held: 0 }, { available: budget, capacity: budget, source: '' });
    if (pe.fits) best = `${p.name} (${formatBytes(pe.total, true)} at batch ${batch} x seq ${seq})`;
  }
  if (best) return ` What fits: a smaller model such as the preset ${best}.`;
  return ' Not even the smallest preset fits.';
}

function describeRequest(n: Normalized, e: MemoryEstimate): string {
  const what = n.preset ? `The preset ${n.preset}` : `A model with ${n.config.n_layer} layers and d ${n.config.n_embd}`;
  const pieces = [
    `weights ${formatBytes(e.params)}`,
    `gradients ${formatBytes(e.grads)}${n.accumulation ? " (the sum and the accumulation buffer)" : ""}`,
    `AdamW moments ${formatBytes(e.optimizer)}`,
  ];
  if (e.lowPrecisionCopy) pieces.push(`bf16 weight copy ${formatBytes(e.lowPrecisionCopy)}`);
  if (n.batch !== null) pieces.push(`activations for batch ${n.batch} x seq ${n.seq} ${formatBytes(e.activations)}`);
  if (e.scratch) pieces.push(`GPU scratch ${formatBytes(e.scratch)}`);
  if (e.logits) pieces.push(`returned logits ${formatBytes(e.logits)}`);
  const held = n.held > 0 ? `, of which the model already holds ${formatBytes(n.held)}` : '';
  return (
    `${what} needs about ${formatBytes(e.total, true)} on the ${n.device === 'cuda' ? 'GPU' : 'CPU'} in ${n.precision} ` +
    `(${pieces.join(', ')})${held}, but only ${formatBytes(e.available, true)} is available (${e.source}).`
  );
}

/**
 * Throws OutOfMemoryError (code OUT_OF_MEMORY) when the request cannot fit;
 * returns the estimate when it can. Call it before allocating: GPT.create
 * (state only), each call with a new largest batch x seq (with `held`), and
 * the trainer before it builds its model (with its micro-batch).
 */
export function checkFits(req: FitRequest): MemoryEstimate {
  const n = normalize(req);
  const e = estimateFor(n, deviceMemory(n));
  if (!e.fits) throw new OutOfMemoryError(describeRequest(n, e) + whatFits(n, e));
  return e;
}
