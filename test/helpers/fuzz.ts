/**
 * A seeded mutation harness for the file parsers and builders of
 * raw safetensors images for tests.
 *
 * runFuzz() feeds a parser `count` inputs, each a seed from the corpus put
 * through 1-4 mutations drawn from the mutators given (byte-level ones for
 * every parser, plus structure-aware ones per format). An input passes when
 * the parser returns or throws one of the allowed error classes; anything
 * else (another exception type, a run longer than the per-input limit, an
 * output far larger than the input) fails the test with the seed and the
 * input in hex, so the case can be added to the corpus.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ArgumentRangeError, ArgumentTypeError, BadFileError } from '../../lib/errors';

export const CORPUS_DIR = path.join(__dirname, '..', 'fuzz-corpus');

/** The seed files of one format (test/fuzz-corpus/<format>/), and its regressions/ folder when present. */
export function loadCorpus(format: string): { seeds: Buffer[]; regressions: { name: string; data: Buffer }[] } {
  const dir = path.join(CORPUS_DIR, format);
  const files = (d: string) => (fs.existsSync(d) ? fs.readdirSync(d).filter((f) => fs.statSync(path.join(d, f)).isFile()).sort() : []);
  const seeds = files(dir).map((f) => fs.readFileSync(path.join(dir, f)));
  const rdir = path.join(dir, 'regressions');
  const regressions = files(rdir).map((f) => ({ name: f, data: fs.readFileSync(path.join(rdir, f)) }));
  return { seeds, regressions };
}

/** Inputs per parser: GPT_ENGINE_FUZZ_COUNT overrides (longer runs by hand), default `n`. */
export function fuzzCount(n: number): number {
  const v = Number(process.env.GPT_ENGINE_FUZZ_COUNT);
  return Number.isInteger(v) && v > 0 ? v : n;
}

/** Seed of a run: GPT_ENGINE_FUZZ_SEED overrides (to explore), default `s` (CI replays the same inputs). */
export function fuzzSeed(s: number): number {
  const v = Number(process.env.GPT_ENGINE_FUZZ_SEED);
  return Number.isInteger(v) && v >= 0 ? v : s;
}

// ---------------------------------------------------------------------------
// Random numbers: mulberry32, tiny and fast; seeded per run so failures replay.

export class FuzzRng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  u32(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  /** integer in [0, n) */
  int(n: number): number {
    return n <= 0 ? 0 : this.u32() % n;
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)];
  }
  chance(p: number): boolean {
    return this.u32() / 4294967296 < p;
  }
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.u32() & 0xff;
    return b;
  }
}

export type Mutator = (input: Buffer, rng: FuzzRng) => Buffer;

// ---------------------------------------------------------------------------
// Byte-level mutators (any format)

const INTERESTING_BYTES = [0x00, 0xff, 0x7f, 0x80, 0x22, 0x5c, 0x7b, 0x7d, 0x5b, 0x5d, 0x2c, 0x3a, 0x30, 0x39, 0x2d, 0xc0, 0xed, 0xf4];

export const byteMutators: Record<string, Mutator> = {
  bitFlip(b, rng) {
    if (b.length === 0) return b;
    const o = Buffer.from(b);
    const n = 1 + rng.int(4);
    for (let k = 0; k < n; k++) {
      const i = rng.int(o.length);
      o[i] ^= 1 << rng.int(8);
    }
    return o;
  },
  setByte(b, rng) {
    if (b.length === 0) return b;
    const o = Buffer.from(b);
    o[rng.int(o.length)] = rng.chance(0.5) ? rng.pick(INTERESTING_BYTES) : rng.int(256);
    return o;
  },
  truncate(b, rng) {
    return b.subarray(0, rng.int(b.length + 1));
  },
  insertBytes(b, rng) {
    const at = rng.int(b.length + 1);
    const ins = rng.chance(0.5) ? rng.bytes(1 + rng.int(16)) : Buffer.from([rng.pick(INTERESTING_BYTES)]);
    return Buffer.concat([b.subarray(0, at), ins, b.subarray(at)]);
  },
  deleteBytes(b, rng) {
    if (b.length === 0) return b;
    const at = rng.int(b.length);
    const n = 1 + rng.int(Math.min(32, b.length - at));
    return Buffer.concat([b.subarray(0, at), b.subarray(at + n)]);
  },
  duplicateChunk(b, rng) {
    if (b.length === 0) return b;
    const at = rng.int(b.length);
    const n = 1 + rng.int(Math.min(64, b.length - at));
    const to = rng.int(b.length + 1);
    return Buffer.concat([b.subarray(0, to), b.subarray(at, at + n), b.subarray(to)]);
  },
  invalidUtf8(b, rng) {
    const at = rng.int(b.length + 1);
    const bad = rng.pick([[0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82]]);
    return Buffer.concat([b.subarray(0, at), Buffer.from(bad), b.subarray(at)]);
  },
};

// ---------------------------------------------------------------------------
// JSON-aware mutators: parse, rewrite one value somewhere, serialize.

/** Values that break validators: wrong types, huge, negative, fractional, deep. */
export function weirdValue(rng: FuzzRng): unknown {
  switch (rng.int(22)) {
    case 0: return -1;
    case 1: return 1.5;
    case 2: return 1e308;
    case 3: return Number.MAX_SAFE_INTEGER + 2;
    case 4: return 2 ** 53;
    case 5: return 0;
    case 6: return '';
    case 7: return '12';
    case 8: return null;
    case 9: return true;
    case 10: return [];
    case 11: return {};
    case 12: return [1, 2, 3];
    case 13: return -0.0;
    case 14: return 4294967296;
    case 15: return 'x'.repeat(1 + rng.int(200));
    case 16: return deepJson(rng.int(2) ? 40 : 400); // deeper trees come from deepNest (JSON.stringify would overflow)
    case 17: return { __proto__: 1, constructor: 2 };
    case 18: return 2 ** 31;
    case 19: return rng.int(100000);
    case 20: return -(2 ** 60);
    default: return '\u0000\ud800';
  }
}

export function deepJson(depth: number): unknown {
  let v: unknown = 1;
  for (let i = 0; i < depth; i++) v = i % 2 ? [v] : { a: v };
  return v;
}

/** Paths to every value inside a JSON tree. */
function jsonPaths(v: unknown, prefix: (string | number)[] = [], out: (string | number)[][] = [], depth = 0): (string | number)[][] {
  out.push(prefix);
  if (depth > 12) return out;
  if (Array.isArray(v)) v.forEach((x, i) => jsonPaths(x, [...prefix, i], out, depth + 1));
  else if (v && typeof v === 'object') for (const k of Object.keys(v)) jsonPaths((v as Record<string, unknown>)[k], [...prefix, k], out, depth + 1);
  return out;
}

function setAt(root: unknown, p: (string | number)[], value: unknown): unknown {
  if (p.length === 0) return value;
  let cur = root as Record<string | number, unknown>;
  for (let i = 0; i < p.length - 1; i++) cur = cur[p[i]] as Record<string | number, unknown>;
  cur[p[p.length - 1]] = value;
  return root;
}

function deleteAt(root: unknown, p: (string | number)[]): unknown {
  if (p.length === 0) return root;
  let cur = root as Record<string | number, unknown>;
  for (let i = 0; i < p.length - 1; i++) cur = cur[p[i]] as Record<string | number, unknown>;
  if (Array.isArray(cur)) cur.splice(Number(p[p.length - 1]), 1);
  else delete cur[p[p.length - 1]];
  return root;
}

/** Applies `edit` to the parsed JSON of `b`; returns `b` unchanged when it does not parse. */
export function mutateJson(b: Buffer, rng: FuzzRng, edit: (root: unknown, rng: FuzzRng) => unknown): Buffer {
  let root: unknown;
  try {
    root = JSON.parse(b.toString('utf8'));
  } catch {
    return b;
  }
  const out = edit(root, rng);
  try {
    return Buffer.from(JSON.stringify(out) ?? 'null', 'utf8');
  } catch {
    return b; // a tree too deep for JSON.stringify (deepNest made it): keep the input as it was
  }
}

export const jsonMutators: Record<string, Mutator> = {
  replaceValue: (b, rng) =>
    mutateJson(b, rng, (root, r) => {
      const paths = jsonPaths(root);
      return setAt(root, r.pick(paths), weirdValue(r));
    }),
  deleteKey: (b, rng) =>
    mutateJson(b, rng, (root, r) => {
      const paths = jsonPaths(root).filter((p) => p.length > 0);
      return paths.length ? deleteAt(root, r.pick(paths)) : root;
    }),
  addKey: (b, rng) =>
    mutateJson(b, rng, (root, r) => {
      const objs = jsonPaths(root).filter((p) => {
        let cur: unknown = root;
        for (const k of p) cur = (cur as Record<string | number, unknown>)[k];
        return cur !== null && typeof cur === 'object' && !Array.isArray(cur);
      });
      if (!objs.length) return root;
      const p = r.pick(objs);
      let cur: unknown = root;
      for (const k of p) cur = (cur as Record<string | number, unknown>)[k];
      const key = r.pick(['extra', 'n_layers', '__proto__', 'constructor', 'toString', '', 'version', 'step']);
      (cur as Record<string, unknown>)[key] = weirdValue(r);
      return root;
    }),
  deepNest: (b, rng) => {
    const depth = rng.pick([33, 100, 10000, 200000]);
    const where = rng.int(b.length + 1);
    return Buffer.concat([b.subarray(0, where), Buffer.from('['.repeat(depth) + ']'.repeat(depth)), b.subarray(where)]);
  },
  wrapTop: (b, rng) => mutateJson(b, rng, (root, r) => r.pick([[root], null, 1, 'x', { a: root }])),
};

// ---------------------------------------------------------------------------
// Safetensors: raw builders and structure-aware mutators

export interface RawTensor {
  name: string;
  dtype: string;
  shape: unknown;
  bytes: Uint8Array;
  /** override data_offsets in the header (default: where the bytes land) */
  offsets?: unknown;
}

/** Builds a safetensors image from raw parts (no validation: tests craft bad files with it). */
export function buildSafetensors(
  tensors: RawTensor[],
  opts: { metadata?: unknown; headerObject?: (h: Record<string, unknown>) => unknown; headerLength?: bigint; pad?: number; trailing?: Uint8Array } = {},
): Buffer {
  const h: Record<string, unknown> = {};
  if (opts.metadata !== undefined) h.__metadata__ = opts.metadata;
  let pos = 0;
  for (const t of tensors) {
    h[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: t.offsets ?? [pos, pos + t.bytes.length] };
    pos += t.bytes.length;
  }
  const obj = opts.headerObject ? opts.headerObject(h) : h;
  let json = Buffer.from(JSON.stringify(obj), 'utf8');
  const pad = opts.pad ?? (8 - ((8 + json.length) % 8)) % 8;
  json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(opts.headerLength ?? BigInt(json.length));
  return Buffer.concat([prefix, json, ...tensors.map((t) => Buffer.from(t.bytes)), ...(opts.trailing ? [Buffer.from(opts.trailing)] : [])]);
}

export function f32Bytes(values: ArrayLike<number>): Uint8Array {
  return new Uint8Array(Float32Array.from(values).buffer);
}

/** float32 -> IEEE half bits, round to nearest even (test data only). */
export function toHalfBits(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer)[0];
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  let mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
  e = h >> 10;
  return sign | h;
}

export function f16Bytes(values: ArrayLike<number>): Uint8Array {
  const b = new Uint8Array(values.length * 2);
  for (let i = 0; i < values.length; i++) {
    const h = toHalfBits(values[i]);
    b[2 * i] = h & 0xff;
    b[2 * i + 1] = h >> 8;
  }
  return b;
}

/** bf16 by truncation (exact for values with 8 significant bits). */
export function bf16Bytes(values: ArrayLike<number>): Uint8Array {
  const f = Float32Array.from(values);
  const u = new Uint32Array(f.buffer);
  const b = new Uint8Array(values.length * 2);
  for (let i = 0; i < values.length; i++) {
    b[2 * i] = (u[i] >>> 16) & 0xff;
    b[2 * i + 1] = u[i] >>> 24;
  }
  return b;
}

/** Splits a safetensors image into its header object and data, or undefined when it does not parse. */
function splitSafetensors(b: Buffer): { header: Record<string, unknown>; data: Buffer } | undefined {
  if (b.length < 8) return undefined;
  const n = b.readBigUInt64LE(0);
  if (n > BigInt(b.length - 8)) return undefined;
  try {
    const header = JSON.parse(b.subarray(8, 8 + Number(n)).toString('utf8'));
    if (!header || typeof header !== 'object' || Array.isArray(header)) return undefined;
    return { header, data: b.subarray(8 + Number(n)) };
  } catch {
    return undefined;
  }
}

function joinSafetensors(header: unknown, data: Buffer): Buffer {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([prefix, json, data]);
}

function rewriteTensor(b: Buffer, rng: FuzzRng, edit: (e: Record<string, unknown>, dataSize: number, r: FuzzRng) => void): Buffer {
  const s = splitSafetensors(b);
  if (!s) return b;
  const names = Object.keys(s.header).filter((k) => k !== '__metadata__');
  if (!names.length) return b;
  const e = s.header[rng.pick(names)];
  if (!e || typeof e !== 'object') return b;
  edit(e as Record<string, unknown>, s.data.length, rng);
  return joinSafetensors(s.header, s.data);
}

export const safetensorsMutators: Record<string, Mutator> = {
  offsetsPastEnd: (b, rng) =>
    rewriteTensor(b, rng, (e, size, r) => {
      e.data_offsets = [r.int(size + 1), size + 1 + r.int(1 << 20)];
    }),
  reversedRange: (b, rng) =>
    rewriteTensor(b, rng, (e) => {
      const o = e.data_offsets as number[];
      if (Array.isArray(o) && o.length === 2) e.data_offsets = [o[1], o[0]];
    }),
  overlappingRange: (b, rng) =>
    rewriteTensor(b, rng, (e, size, r) => {
      const o = e.data_offsets as number[];
      if (Array.isArray(o) && o.length === 2 && typeof o[0] === 'number') {
        const shift = 1 + r.int(8);
        e.data_offsets = [Math.max(0, o[0] - shift), o[1] - shift];
      }
    }),
  weirdOffsets: (b, rng) =>
    rewriteTensor(b, rng, (e, _s, r) => {
      e.data_offsets = r.pick([[-1, 4], [0], [0, 1, 2], '0,4', [0.5, 4], [2 ** 64, 2 ** 64 + 4], null, [0, 1e308]]);
    }),
  hugeShape: (b, rng) =>
    rewriteTensor(b, rng, (e, _s, r) => {
      e.shape = r.pick([[2 ** 31, 2 ** 31], [1e308], [2 ** 53, 2 ** 53, 2 ** 53], [-1], [-4, -4], [65536, 65536, 65536, 65536], [1.5], ['4'], [null], {}, 4, [0, 2 ** 60], Array(100).fill(2)]);
    }),
  wrongDtype: (b, rng) =>
    rewriteTensor(b, rng, (e, _s, r) => {
      e.dtype = r.pick(['F64', 'I64', 'U8', 'BOOL', 'F8_E4M3', 'f32', 'F128', '', 42, null, 'BF16', 'F16', 'F32', 'constructor', '__proto__', 'toString']);
    }),
  lieAboutHeaderLength: (b, rng) => {
    if (b.length < 8) return b;
    const o = Buffer.from(b);
    const n = o.readBigUInt64LE(0);
    const choices = [n + 1n, n - 1n, 0n, 1n, 2n ** 63n, 2n ** 64n - 1n, BigInt(o.length), 100_000_001n, n + BigInt(1 + rng.int(64))];
    o.writeBigUInt64LE(rng.pick(choices) & ((1n << 64n) - 1n), 0);
    return o;
  },
  metadataJunk: (b, rng) => {
    const s = splitSafetensors(b);
    if (!s) return b;
    s.header.__metadata__ = rng.pick([{ a: 1 }, [], 'x', null, { a: { b: 'c' } }, { ok: 'yes' }, deepJson(10)]);
    return joinSafetensors(s.header, s.data);
  },
  headerJson: (b, rng) => {
    // JSON-aware edit of the header alone.
    const s = splitSafetensors(b);
    if (!s) return b;
    const m = rng.pick(Object.values(jsonMutators));
    const h = m(Buffer.from(JSON.stringify(s.header)), rng);
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(BigInt(h.length));
    return Buffer.concat([prefix, h, s.data]);
  },
  headerInvalidUtf8: (b, rng) => {
    const s = splitSafetensors(b);
    if (!s) return b;
    const h = byteMutators.invalidUtf8(Buffer.from(JSON.stringify(s.header)), rng);
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(BigInt(h.length));
    return Buffer.concat([prefix, h, s.data]);
  },
};

// ---------------------------------------------------------------------------
// The harness

export const ALLOWED_ERRORS = [BadFileError, ArgumentRangeError, ArgumentTypeError];

export interface FuzzResult {
  count: number;
  accepted: number;
  rejected: number;
  /** error messages by first 40 characters, for a glance at coverage */
  kinds: Map<string, number>;
  ms: number;
  slowestMs: number;
  /** the slowest input (to look at when a run gets slow) */
  slowest?: Buffer;
  /** time spent mutating, outside the parser */
  mutateMs: number;
}

export interface FuzzOptions {
  seed: number;
  count: number;
  corpus: Buffer[];
  mutators: Mutator[];
  /** the parser; may return a size in bytes of what it produced (checked against the input) */
  parse: (input: Buffer) => unknown | Promise<unknown>;
  /** output bytes allowed per input byte (default 4: fp16 -> fp32 doubles) */
  maxGrowth?: number;
  /** longest one input may take (default 5000 ms: catches hangs, not GC pauses on a loaded machine) */
  maxMsPerInput?: number;
  allowed?: (new (...args: never[]) => Error)[];
}

export function mutate(input: Buffer, rng: FuzzRng, mutators: Mutator[]): Buffer {
  let b = input;
  const n = 1 + rng.int(4);
  for (let k = 0; k < n; k++) b = rng.pick(mutators)(b, rng);
  return b;
}

function describeFailure(seed: number, i: number, input: Buffer, why: string): string {
  const hex = input.length > 4096 ? input.subarray(0, 4096).toString('hex') + '...' : input.toString('hex');
  return `fuzz seed ${seed}, input #${i} (${input.length} bytes): ${why}\ninput hex: ${hex}`;
}

/** Runs the harness; throws (failing the test) at the first input that breaks the contract. */
export async function runFuzz(o: FuzzOptions): Promise<FuzzResult> {
  const rng = new FuzzRng(o.seed);
  const allowed = o.allowed ?? ALLOWED_ERRORS;
  const maxGrowth = o.maxGrowth ?? 4;
  const maxMs = o.maxMsPerInput ?? 5000;
  const res: FuzzResult = { count: 0, accepted: 0, rejected: 0, kinds: new Map(), ms: 0, slowestMs: 0, mutateMs: 0 };
  const t0 = performance.now();
  for (let i = 0; i < o.count; i++) {
    const base = rng.pick(o.corpus);
    const m0 = performance.now();
    const input = mutate(base, rng, o.mutators);
    const s = performance.now();
    res.mutateMs += s - m0;
    let out: unknown;
    try {
      out = await o.parse(input);
      res.accepted++;
    } catch (e) {
      if (!allowed.some((C) => e instanceof C))
        throw new Error(describeFailure(o.seed, i, input, `threw ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`));
      if (typeof (e as Error).message !== 'string' || (e as Error).message.length < 10)
        throw new Error(describeFailure(o.seed, i, input, `unclear error message ${JSON.stringify((e as Error).message)}`));
      res.rejected++;
      const k = (e as Error).message.replace(/[0-9]+/g, 'N').slice(0, 60);
      res.kinds.set(k, (res.kinds.get(k) ?? 0) + 1);
    }
    const dt = performance.now() - s;
    if (dt > res.slowestMs) {
      res.slowestMs = dt;
      res.slowest = input;
    }
    if (dt > maxMs) throw new Error(describeFailure(o.seed, i, input, `took ${dt.toFixed(0)} ms (limit ${maxMs})`));
    if (typeof out === 'number' && out > maxGrowth * input.length + 1024)
      throw new Error(describeFailure(o.seed, i, input, `produced ${out} bytes from ${input.length} input bytes`));
    res.count++;
  }
  res.ms = performance.now() - t0;
  return res;
}
