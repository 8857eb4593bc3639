/**
 * The JSON files of a checkpoint folder (docs/ARCHITECTURE.md "Files users
 * keep"): config.json and state.json, their names and size limits, and pure
 * parsers for them (also used by the fuzz tests), plus the small read helpers
 * the checkpoint and run-folder code share.
 *
 * state.json (version 1), written by the trainer:
 *   version      1                                   required
 *   step         optimizer steps completed (>= 0)    required
 *   total_steps  the run's planned total, >= step    optional
 *   tokens_seen  training tokens consumed (>= 0)     optional
 *   seed         the run's seed (>= 0)               optional
 *   rng          { <name>: { state, inc } }          optional; RngState of each
 *                named generator (decimal strings of uint64)
 *   sampler      any JSON object                      optional (batch sampler position)
 *   schedule     any JSON object                      optional (LR schedule settings)
 *   data         any JSON object                      optional (data folder, tokenizer...)
 *   trainer      any JSON object                      optional (other trainer settings)
 * Unknown top-level keys are errors; nested JSON is limited to 32 levels.
 */
import * as fs from 'node:fs';
import { GPTConfig, TokenizerName, parseConfigJson } from './config';
import { ArgumentRangeError, ArgumentTypeError, BadFileError } from './errors';
import { parseJsonBytes } from './json-bytes';
import { checkKnownKeys, describe, expectInteger, expectObject, typeError } from './validate';

export const CONFIG_FILE = 'config.json';
export const MODEL_FILE = 'model.safetensors';
export const OPTIMIZER_FILE = 'optimizer.safetensors';
export const STATE_FILE = 'state.json';

/** Size limits for the JSON files (a config is tiny; state holds sampler positions). */
export const MAX_CONFIG_BYTES = 16 << 20;
export const MAX_STATE_BYTES = 256 << 20;
const MAX_JSON_DEPTH = 32;

export type CheckpointSource = 'gpt-engine' | 'huggingface';

export type RngStateJson = { state: string; inc: string };

/** state.json (see the file comment). A type alias, so it is assignable to Record<string, unknown>. */
export type CheckpointState = {
  version: 1;
  step: number;
  total_steps?: number;
  tokens_seen?: number;
  seed?: number;
  rng?: Record<string, RngStateJson>;
  sampler?: Record<string, unknown>;
  schedule?: Record<string, unknown>;
  data?: Record<string, unknown>;
  trainer?: Record<string, unknown>;
};

export const STATE_KEYS = [
  'version',
  'step',
  'total_steps',
  'tokens_seen',
  'seed',
  'rng',
  'sampler',
  'schedule',
  'data',
  'trainer',
] as const;

/**
 * Refuses keys and strings no honest config or state file has (longer than
 * `limit` characters) before they reach the did-you-mean helpers, whose cost
 * grows with the product of the lengths.
 */
function checkStringLengths(file: string, o: Record<string, unknown>, limit = 1024): void {
  for (const [k, v] of Object.entries(o)) {
    if (k.length > limit) throw new BadFileError(`${file}: has a key of ${k.length} characters (${JSON.stringify(k.slice(0, 40))}...); no known key is that long`);
    const strings = typeof v === 'string' ? [v] : Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
    for (const str of strings)
      if (str.length > limit) throw new BadFileError(`${file}: the value of ${JSON.stringify(k)} is a string of ${str.length} characters, longer than any valid value (${limit})`);
  }
}

// ---------------------------------------------------------------------------
// JSON files (pure parsers, also used by the fuzz tests)

/** Parses config.json bytes. Errors are BadFileError naming the file. */
export function parseConfigFile(
  bytes: Uint8Array,
  file = CONFIG_FILE,
): { config: GPTConfig; tokenizer?: TokenizerName; source: CheckpointSource } {
  const obj = parseJsonBytes(bytes, file, MAX_JSON_DEPTH);
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj))
    throw new BadFileError(`${file}: expected a JSON object but found ${describe(obj)}`);
  const o = obj as Record<string, unknown>;
  // The same test parseConfigJson uses to tell our files from HF's.
  const source: CheckpointSource =
    'gpt_engine_version' in o || 'attention_pattern' in o || o.model_type === 'gpt-engine' ? 'gpt-engine' : 'huggingface';
  checkStringLengths(file, o);
  try {
    const { config, tokenizer } = parseConfigJson(o, file);
    return { config, tokenizer, source };
  } catch (e) {
    if (e instanceof ArgumentRangeError || e instanceof ArgumentTypeError)
      throw new BadFileError(`${file}: ${e.message}`, { cause: e });
    throw e;
  }
}

const U64_MAX = (1n << 64n) - 1n;

function checkRngState(field: string, v: unknown): RngStateJson {
  const o = expectObject(field, v);
  checkKnownKeys(field, o, ['state', 'inc']);
  for (const k of ['state', 'inc'] as const) {
    const s = o[k];
    if (typeof s !== 'string') throw typeError('a decimal string of a 64-bit unsigned integer', `${field}.${k}`, s);
    if (!/^[0-9]{1,20}$/.test(s) || BigInt(s) > U64_MAX)
      throw new ArgumentRangeError(
        `Expected a decimal string of a 64-bit unsigned integer for ${field}.${k} but received ${describe(s)}`,
      );
  }
  return { state: o.state as string, inc: o.inc as string };
}

/** True when `v` is plain JSON (finite numbers, no undefined/functions/bigints), at most `depth` levels deep. */
function checkJsonValue(field: string, v: unknown, depth: number): void {
  if (depth < 0) throw new ArgumentRangeError(`Expected at most ${MAX_JSON_DEPTH} levels of nesting for ${field}`);
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return;
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new ArgumentRangeError(`Expected a finite number for ${field} but received ${describe(v)}`);
    return;
  }
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) checkJsonValue(`${field}[${i}]`, v[i], depth - 1);
    return;
  }
  const proto = typeof v === 'object' ? Object.getPrototypeOf(v) : undefined;
  if (proto === Object.prototype || proto === null) {
    // undefined properties are left out, as JSON.stringify does
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) if (x !== undefined) checkJsonValue(`${field}.${k}`, x, depth - 1);
    return;
  }
  throw typeError('a JSON value (null, boolean, finite number, string, array or plain object)', field, v);
}

/**
 * Validates a state object (state.json's content). Throws
 * ArgumentTypeError / ArgumentRangeError; returns a normalized copy.
 */
export function validateState(input: unknown, where = STATE_FILE): CheckpointState {
  const o = expectObject(where, input);
  checkKnownKeys(where, o, STATE_KEYS);
  if (o.version !== 1)
    throw new ArgumentRangeError(
      `Expected 1 for version but received ${describe(o.version)} (this gpt-engine reads state.json version 1)`,
    );
  const step = expectInteger('step', o.step, { min: 0, max: Number.MAX_SAFE_INTEGER });
  const out: CheckpointState = { version: 1, step };
  if (o.total_steps !== undefined) {
    out.total_steps = expectInteger('total_steps', o.total_steps, { min: 0, max: Number.MAX_SAFE_INTEGER });
    if (out.total_steps < step)
      throw new ArgumentRangeError(`Expected an integer >= step (${step}) for total_steps but received ${out.total_steps} (number)`);
  }
  if (o.tokens_seen !== undefined) out.tokens_seen = expectInteger('tokens_seen', o.tokens_seen, { min: 0, max: Number.MAX_SAFE_INTEGER });
  if (o.seed !== undefined) out.seed = expectInteger('seed', o.seed, { min: 0, max: Number.MAX_SAFE_INTEGER });
  if (o.rng !== undefined) {
    const r = expectObject('rng', o.rng);
    const rng: Record<string, RngStateJson> = {};
    for (const [k, v] of Object.entries(r))
      Object.defineProperty(rng, k, { value: checkRngState(`rng.${k}`, v), enumerable: true, writable: true, configurable: true });
    out.rng = rng;
  }
  for (const k of ['sampler', 'schedule', 'data', 'trainer'] as const) {
    if (o[k] === undefined) continue;
    const v = expectObject(k, o[k]);
    checkJsonValue(k, v, MAX_JSON_DEPTH);
    out[k] = JSON.parse(JSON.stringify(v)) as Record<string, unknown>;
  }
  return out;
}

/** Parses state.json bytes. Errors are BadFileError naming the file. */
export function parseStateFile(bytes: Uint8Array, file = STATE_FILE): CheckpointState {
  const obj = parseJsonBytes(bytes, file, MAX_JSON_DEPTH + 1);
  if (typeof obj === 'object' && obj !== null && !Array.isArray(obj)) {
    checkStringLengths(file, obj as Record<string, unknown>, 256);
    const rng = (obj as Record<string, unknown>).rng;
    if (typeof rng === 'object' && rng !== null && !Array.isArray(rng))
      for (const v of Object.values(rng)) if (typeof v === 'object' && v !== null && !Array.isArray(v)) checkStringLengths(`${file} (rng)`, v as Record<string, unknown>, 256);
  }
  try {
    return validateState(obj, file);
  } catch (e) {
    if (e instanceof ArgumentRangeError || e instanceof ArgumentTypeError)
      throw new BadFileError(`${file}: ${e.message}`, { cause: e });
    throw e;
  }
}

// ---------------------------------------------------------------------------
// Small file helpers

export async function exists(p: string): Promise<boolean> {
  try {
    await fs.promises.access(p);
    return true;
  } catch {
    return false;
  }
}

export async function isDirectory(p: string): Promise<boolean> {
  try {
    return (await fs.promises.stat(p)).isDirectory();
  } catch {
    return false;
  }
}

/** The bytes of a regular file of at most `limit` bytes; BadFileError naming the file otherwise. */
export async function readSmallFile(file: string, limit: number): Promise<Buffer> {
  let st: fs.Stats;
  try {
    st = await fs.promises.stat(file);
  } catch (e) {
    throw new BadFileError(`Could not read ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`, { cause: e });
  }
  if (!st.isFile()) throw new BadFileError(`${file} is not a regular file`);
  if (st.size > limit) throw new BadFileError(`${file} has ${st.size} bytes, more than the ${limit}-byte limit for this file`);
  return fs.promises.readFile(file);
}

/**
 * The sequence length a checkpoint was trained with (state.json's
 * trainer.settings.seq), when it records one. Positions from it on were
 * never trained: their position embeddings are still the random initial ones.
 */
export function trainedSeq(state: { trainer?: unknown } | undefined): number | undefined {
  const seq = (state?.trainer as { settings?: { seq?: unknown } } | undefined)?.settings?.seq;
  return typeof seq === 'number' && Number.isInteger(seq) && seq > 0 ? seq : undefined;
}
