/**
 * The fused attention kernel on its own (docs/ARCHITECTURE.md "Fused attention"): causal
 * dense or locally banded (query i sees keys j with i - window < j <= i),
 * flash-style, forward and backward. Used by the tests, the benchmarks, and
 * anyone who wants the kernel without a model.
 *
 * Layout: q, k, v, out, dOut, dq, dk, dv are contiguous Float32Arrays of
 * shape [batch, heads, seq, headDim]; lse is [batch, heads, seq], the natural
 * log of the row's sum of exp(scale * q.k). Everything is validated here
 * before any native work; the native call runs off the event loop.
 */
import { chooseDevice, defaultPrecision, DEVICE_CHOICES, DeviceChoice, PrecisionName, PRECISIONS } from './device';
import { callNative } from './errors';
import { loadAddon } from './native';
import {
  checkKnownKeys,
  expectFloat32Array,
  expectInteger,
  expectNumber,
  expectObject,
  expectOneOf,
  expectPositiveInteger,
  rangeError,
  typeError,
} from './validate';

const INT32_MAX = 2 ** 31 - 1;

export type AttentionPattern = 'dense' | 'banded';
export type AttentionDevice = DeviceChoice;
export type AttentionPrecision = PrecisionName;

export const ATTENTION_PATTERNS: readonly AttentionPattern[] = ['dense', 'banded'];
export const ATTENTION_DEVICES: readonly AttentionDevice[] = DEVICE_CHOICES;
export const ATTENTION_PRECISIONS: readonly AttentionPrecision[] = PRECISIONS;
/** Largest head size the kernels take. */
export const MAX_HEAD_DIM = 256;

export interface AttentionShape {
  batch: number;
  heads: number;
  seq: number;
  /** 1 .. 256 (64, 80, 96 and 128 get the fastest code) */
  headDim: number;
  pattern: AttentionPattern;
  /** banded only (required there): query i sees keys i - window < j <= i */
  window?: number;
  /** default 1 / sqrt(headDim) */
  scale?: number;
  /** default 'auto': cuda when a real GPU is usable (never the SIMT emulator), else cpu */
  device?: AttentionDevice;
  /**
   * default 'bf16' on cuda, 'fp32' on cpu. On cuda, 'fp32' runs the fp32
   * kernels (any head size), 'bf16' the tensor-core ones (head sizes 64, 80,
   * 96, 128; other sizes run fp32). The cpu always runs fp32.
   */
  precision?: AttentionPrecision;
}

export interface AttentionForwardOptions extends AttentionShape {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
}

export interface AttentionBackwardOptions extends AttentionForwardOptions {
  out: Float32Array;
  lse: Float32Array;
  dOut: Float32Array;
}

export interface AttentionForwardResult {
  out: Float32Array;
  lse: Float32Array;
  /** where it ran */
  device: 'cpu' | 'cuda';
}

export interface AttentionBackwardResult {
  dq: Float32Array;
  dk: Float32Array;
  dv: Float32Array;
  device: 'cpu' | 'cuda';
}

/** A strided [B, H, T, D] view: element (b, h, t, d) at data[offset + b*sb + h*sh + t*st + d]. */
export interface StridedView {
  data: Float32Array;
  offset: number;
  sb: number;
  sh: number;
  st: number;
}
type NativeTensor = Float32Array | StridedView;

/** The shape as the addon takes it: the device resolved, and the naive reference kernel on request. */
interface NativeShape extends Omit<AttentionShape, 'device'> {
  naive?: boolean;
  device?: 'cpu' | 'cuda';
}

/** The addon's attention exports (native/addon/attention_binding.cc); they trust lib/ to validate. */
export interface AttentionNative {
  attentionForward(
    o: NativeShape & { q: NativeTensor; k: NativeTensor; v: NativeTensor; out: NativeTensor; lse: Float32Array },
  ): Promise<'cpu' | 'cuda'>;
  attentionBackward(
    o: NativeShape & {
      q: NativeTensor;
      k: NativeTensor;
      v: NativeTensor;
      out: NativeTensor;
      lse: Float32Array;
      dOut: NativeTensor;
      dq: NativeTensor;
      dk: NativeTensor;
      dv: NativeTensor;
    },
  ): Promise<'cpu' | 'cuda'>;
  attentionWorkspaceHighWater(): number;
  attentionResetWorkspace(): void;
}

function addon() {
  return loadAddon<AttentionNative>();
}

const SHAPE_KEYS = ['batch', 'heads', 'seq', 'headDim', 'pattern', 'window', 'scale', 'device', 'precision'] as const;
const FORWARD_KEYS = [...SHAPE_KEYS, 'q', 'k', 'v'];
const BACKWARD_KEYS = [...FORWARD_KEYS, 'out', 'lse', 'dOut'];

interface Checked {
  shape: NativeShape & { window?: number; scale: number };
  n: number;
  rows: number;
  device: AttentionDevice;
  precision?: AttentionPrecision;
}

function checkShape(where: string, o: Record<string, unknown>, keys: readonly string[]): Checked {
  checkKnownKeys(where, o, keys);
  const batch = expectPositiveInteger('batch', o.batch, INT32_MAX);
  const heads = expectPositiveInteger('heads', o.heads, INT32_MAX);
  const seq = expectPositiveInteger('seq', o.seq, INT32_MAX);
  const headDim = expectInteger('headDim', o.headDim, { min: 1, max: MAX_HEAD_DIM });
  const pattern = expectOneOf('pattern', o.pattern, ATTENTION_PATTERNS);
  let window: number | undefined;
  if (pattern === 'banded') {
    if (o.window === undefined || o.window === null)
      throw typeError('a positive integer (required for pattern "banded")', 'window', o.window);
    window = expectPositiveInteger('window', o.window, INT32_MAX);
  } else if (o.window !== undefined && o.window !== null) {
    // Accepted (and ignored) for dense, so one options object can serve both patterns.
    expectPositiveInteger('window', o.window, INT32_MAX);
  }
  const scale = o.scale === undefined ? 1 / Math.sqrt(headDim) : expectNumber('scale', o.scale);
  if (!Number.isFinite(Math.fround(scale))) throw rangeError('a finite number within float32 range', 'scale', o.scale);
  const device = o.device === undefined ? 'auto' : expectOneOf('device', o.device, ATTENTION_DEVICES);
  const precision = o.precision === undefined ? undefined : expectOneOf('precision', o.precision, ATTENTION_PRECISIONS);
  const rows = batch * heads * seq;
  const n = rows * headDim;
  if (!Number.isSafeInteger(n)) throw rangeError('a shape whose size fits in memory', 'batch * heads * seq * headDim', n);
  return { shape: { batch, heads, seq, headDim, pattern, window, scale }, n, rows, device, precision };
}

/**
 * 'cpu' | 'cuda' for a requested device (lib/device.ts chooseDevice): 'auto'
 * is a real GPU when one is usable, never the SIMT emulator; 'cuda' without
 * a usable GPU is a NoGpuError with the reason.
 */
export function resolveDevice(device: AttentionDevice): 'cpu' | 'cuda' {
  return chooseDevice(device).device;
}

function checkForward(where: string, options: unknown, keys: readonly string[]) {
  const o = expectObject(where, options);
  const c = checkShape(where, o, keys);
  const q = expectFloat32Array('q', o.q, c.n);
  const k = expectFloat32Array('k', o.k, c.n);
  const v = expectFloat32Array('v', o.v, c.n);
  return { o, c, q, k, v };
}

function checkBackward(where: string, options: unknown) {
  const f = checkForward(where, options, BACKWARD_KEYS);
  const out = expectFloat32Array('out', f.o.out, f.c.n);
  const lse = expectFloat32Array('lse', f.o.lse, f.c.rows);
  const dOut = expectFloat32Array('dOut', f.o.dOut, f.c.n);
  return { ...f, out, lse, dOut };
}

async function runForward(options: unknown, naive: boolean): Promise<AttentionForwardResult> {
  const where = naive ? 'attention.naiveForward options' : 'attention.forward options';
  const { c, q, k, v } = checkForward(where, options, FORWARD_KEYS);
  if (naive && c.device === 'cuda') throw typeError('"auto" or "cpu" (the naive kernel is cpu only)', 'device', c.device);
  const device = naive ? 'cpu' : resolveDevice(c.device);
  const precision = c.precision ?? defaultPrecision(device);
  const out = new Float32Array(c.n);
  const lse = new Float32Array(c.rows);
  const ran = await callNative(() =>
    addon().attentionForward({ ...c.shape, q, k, v, out, lse, naive, device, precision }),
  );
  return { out, lse, device: ran };
}

async function runBackward(options: unknown, naive: boolean): Promise<AttentionBackwardResult> {
  const where = naive ? 'attention.naiveBackward options' : 'attention.backward options';
  const { c, q, k, v, out, lse, dOut } = checkBackward(where, options);
  if (naive && c.device === 'cuda') throw typeError('"auto" or "cpu" (the naive kernel is cpu only)', 'device', c.device);
  const device = naive ? 'cpu' : resolveDevice(c.device);
  const precision = c.precision ?? defaultPrecision(device);
  const dq = new Float32Array(c.n);
  const dk = new Float32Array(c.n);
  const dv = new Float32Array(c.n);
  const ran = await callNative(() =>
    addon().attentionBackward({ ...c.shape, q, k, v, out, lse, dOut, dq, dk, dv, naive, device, precision }),
  );
  return { dq, dk, dv, device: ran };
}

/** Fused forward: out [B, H, T, D] and lse [B, H, T]. */
export function forward(options: AttentionForwardOptions): Promise<AttentionForwardResult> {
  return runForward(options, false);
}

/** Fused backward from the forward's out and lse: dq, dk, dv (overwritten, not accumulated). */
export function backward(options: AttentionBackwardOptions): Promise<AttentionBackwardResult> {
  return runBackward(options, false);
}

/** The plain materialized fp32 kernel (T x T scores per head) on the same threads: the benchmarks' baseline. */
export function naiveForward(options: AttentionForwardOptions): Promise<AttentionForwardResult> {
  return runForward(options, true);
}

/** Backward of the materialized kernel. */
export function naiveBackward(options: AttentionBackwardOptions): Promise<AttentionBackwardResult> {
  return runBackward(options, true);
}

/** Peak bytes of scratch the fused CPU kernels have held since the last reset. */
export function workspaceHighWater(): number {
  return addon().attentionWorkspaceHighWater();
}

/** Starts a new high-water measurement. */
export function resetWorkspace(): void {
  addon().attentionResetWorkspace();
}
