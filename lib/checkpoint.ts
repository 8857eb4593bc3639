/**
 * Checkpoint folders, run folders and Hugging Face GPT-2 folders
 * (docs/ARCHITECTURE.md "Files users keep").
 *
 * A checkpoint folder holds
 *   config.json            toConfigJson(config, { tokenizer })
 *   model.safetensors      F32 tensors, HF GPT-2 names, Conv1D [in, out]
 *   optimizer.safetensors  (training state) exp_avg.<name>, exp_avg_sq.<name>
 *   state.json             (training state) see CheckpointState below
 * and is written into a temporary folder beside its final name, fsynced, then
 * renamed into place, so a crash never leaves a half checkpoint under the
 * final name. A run folder holds checkpoints/step-<N>/ and a file `latest`
 * whose one line names the newest complete one (`step-<N>`).
 *
 * readCheckpoint accepts a checkpoint folder, a run folder or a Hugging Face
 * GPT-2 folder (config.json + model.safetensors; names with or without
 * `transformer.`, attention-mask buffers ignored, `lm_head.weight` accepted
 * only when equal to wte, fp16/bf16 converted). Every tensor is checked
 * against the shapes the config implies before any tensor data is read.
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
import * as path from 'node:path';
import { GPTConfig, TokenizerName, parseConfigJson, toConfigJson, validateConfig } from './config';
import { ArgumentRangeError, ArgumentTypeError, BadFileError } from './errors';
import {
  FLOAT_DTYPES,
  SafetensorsReader,
  TensorToWrite,
  parseJsonBytes,
  tempNameBeside,
  writeFileChunks,
  writeSafetensors,
} from './safetensors';
import { checkKnownKeys, describe, didYouMean, expectInteger, expectObject, typeError } from './validate';

export const CONFIG_FILE = 'config.json';
export const MODEL_FILE = 'model.safetensors';
export const OPTIMIZER_FILE = 'optimizer.safetensors';
export const STATE_FILE = 'state.json';
export const LATEST_FILE = 'latest';
export const CHECKPOINTS_DIR = 'checkpoints';

/** Size limits for the JSON files (a config is tiny; state holds sampler positions). */
const MAX_CONFIG_BYTES = 16 << 20;
const MAX_STATE_BYTES = 256 << 20;
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

export interface OptimizerTensors {
  exp_avg: Map<string, Float32Array>;
  exp_avg_sq: Map<string, Float32Array>;
}

export interface CheckpointData {
  config: GPTConfig;
  tokenizer?: TokenizerName;
  tensors: Map<string, Float32Array>;
  shapes: Map<string, number[]>;
  optimizer?: OptimizerTensors;
  state?: Record<string, unknown>;
}

export interface LoadedCheckpoint extends CheckpointData {
  state?: CheckpointState;
  source: CheckpointSource;
  /** the checkpoint folder actually read (inside a run folder, the resolved step-N) */
  dir: string;
}

// ---------------------------------------------------------------------------
// Tensor names and shapes

/** Every tensor a config implies, HF GPT-2 names, Conv1D weights [in, out], in parameter order. */
export function expectedTensorShapes(config: GPTConfig): Map<string, number[]> {
  const C = config.n_embd;
  const m = new Map<string, number[]>();
  m.set('wte.weight', [config.vocab_size, C]);
  m.set('wpe.weight', [config.n_positions, C]);
  for (let i = 0; i < config.n_layer; i++) {
    const p = `h.${i}.`;
    m.set(p + 'ln_1.weight', [C]);
    m.set(p + 'ln_1.bias', [C]);
    m.set(p + 'attn.c_attn.weight', [C, 3 * C]);
    m.set(p + 'attn.c_attn.bias', [3 * C]);
    m.set(p + 'attn.c_proj.weight', [C, C]);
    m.set(p + 'attn.c_proj.bias', [C]);
    m.set(p + 'ln_2.weight', [C]);
    m.set(p + 'ln_2.bias', [C]);
    m.set(p + 'mlp.c_fc.weight', [C, 4 * C]);
    m.set(p + 'mlp.c_fc.bias', [4 * C]);
    m.set(p + 'mlp.c_proj.weight', [4 * C, C]);
    m.set(p + 'mlp.c_proj.bias', [C]);
  }
  m.set('ln_f.weight', [C]);
  m.set('ln_f.bias', [C]);
  return m;
}

/** didYouMean, skipped for long names (its edit distance is quadratic; a hostile file could stall it). */
function hint(name: string, choices: readonly string[]): string {
  return name.length > 200 ? '' : didYouMean(name, choices);
}

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

function shapeText(s: readonly number[]): string {
  return `[${s.join(', ')}]`;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function configText(c: GPTConfig): string {
  return `n_layer ${c.n_layer}, n_embd ${c.n_embd}, vocab_size ${c.vocab_size}, n_positions ${c.n_positions}`;
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

async function exists(p: string): Promise<boolean> {
  try {
    await fs.promises.access(p);
    return true;
  } catch {
    return false;
  }
}

async function isDirectory(p: string): Promise<boolean> {
  try {
    return (await fs.promises.stat(p)).isDirectory();
  } catch {
    return false;
  }
}

async function readSmallFile(file: string, limit: number): Promise<Buffer> {
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

async function fsyncDir(dir: string): Promise<void> {
  // Directory fsync makes renames durable; some platforms refuse it (EISDIR/EPERM on Windows): best effort.
  let fh: fs.promises.FileHandle | undefined;
  try {
    fh = await fs.promises.open(dir, 'r');
    await fh.sync();
  } catch {
    /* not supported here */
  } finally {
    await fh?.close().catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------
// Writing

function checkTensorSet(what: string, tensors: Map<string, Float32Array>, shapes: Map<string, number[]> | undefined, expected: Map<string, number[]>): void {
  if (!(tensors instanceof Map)) throw typeError('a Map of Float32Array', what, tensors);
  for (const name of tensors.keys())
    if (!expected.has(name))
      throw new ArgumentRangeError(
        `Unexpected tensor ${JSON.stringify(name)} in ${what}${hint(String(name), [...expected.keys()])}: the config implies exactly ${expected.size} tensors`,
      );
  for (const [name, shape] of expected) {
    const t = tensors.get(name);
    if (t === undefined) throw new ArgumentRangeError(`Expected a tensor ${JSON.stringify(name)} of shape ${shapeText(shape)} in ${what} but it is missing`);
    if (!(t instanceof Float32Array)) throw typeError('a Float32Array', `${what} ${JSON.stringify(name)}`, t);
    const n = shape.reduce((a, b) => a * b, 1);
    if (t.length !== n)
      throw new ArgumentRangeError(
        `Expected ${n} elements (shape ${shapeText(shape)}) for ${what} ${JSON.stringify(name)} but received a Float32Array of length ${t.length}`,
      );
    const s = shapes?.get(name);
    if (shapes && (!Array.isArray(s) || !sameShape(s, shape)))
      throw new ArgumentRangeError(
        `Expected shape ${shapeText(shape)} for ${JSON.stringify(name)} in shapes but received ${Array.isArray(s) ? shapeText(s) : describe(s)}`,
      );
  }
}

function ordered(expected: Map<string, number[]>, tensors: Map<string, Float32Array>, prefix = ''): Map<string, TensorToWrite> {
  const m = new Map<string, TensorToWrite>();
  for (const [name, shape] of expected) m.set(prefix + name, { shape, data: tensors.get(name)! });
  return m;
}

/**
 * Writes a checkpoint folder atomically: everything goes into a temporary
 * folder beside `dir`, is fsynced, and the folder is renamed into place
 * (an existing checkpoint under that name is swapped out only after the new
 * one is complete). On failure the temporary folder is removed, any previous
 * checkpoint under `dir` is left as it was, and the error says what failed.
 */
export async function writeCheckpoint(dir: string, c: CheckpointData): Promise<void> {
  if (typeof dir !== 'string' || dir.length === 0) throw typeError('a folder path', 'dir', dir);
  if (typeof c !== 'object' || c === null) throw typeError('an object', 'checkpoint', c);
  const config = validateConfig(c.config, 'config');
  if (c.tokenizer !== undefined && c.tokenizer !== 'gpt2' && c.tokenizer !== 'byte')
    throw new ArgumentRangeError(`Expected one of "gpt2", "byte" for tokenizer but received ${describe(c.tokenizer)}`);
  const expected = expectedTensorShapes(config);
  checkTensorSet('tensors', c.tensors, c.shapes, expected);
  if (c.optimizer !== undefined) {
    expectObject('optimizer', c.optimizer);
    checkTensorSet('optimizer.exp_avg', c.optimizer.exp_avg, undefined, expected);
    checkTensorSet('optimizer.exp_avg_sq', c.optimizer.exp_avg_sq, undefined, expected);
  }
  const state = c.state === undefined ? undefined : validateState({ version: 1, ...c.state }, 'state');

  const target = path.resolve(dir);
  const parent = path.dirname(target);
  if (await exists(target)) {
    if (!(await isDirectory(target))) throw new ArgumentRangeError(`Cannot write a checkpoint to ${target}: it exists and is not a folder`);
    const entries = await fs.promises.readdir(target);
    if (entries.length > 0 && !entries.includes(CONFIG_FILE))
      throw new ArgumentRangeError(
        `Refusing to replace ${target} with a checkpoint: the folder exists, is not empty and is not a checkpoint folder (no ${CONFIG_FILE})`,
      );
  }
  let stage = `creating ${parent}`;
  const tmp = tempNameBeside(target, 'tmp');
  let old: string | undefined;
  let movedOld = false;
  try {
    await fs.promises.mkdir(parent, { recursive: true });
    stage = `creating the temporary folder ${tmp}`;
    await fs.promises.mkdir(tmp);
    stage = `writing ${CONFIG_FILE}`;
    const cfg = Buffer.from(JSON.stringify(toConfigJson(config, { tokenizer: c.tokenizer }), null, 2) + '\n', 'utf8');
    await writeFileChunks(path.join(tmp, CONFIG_FILE), [cfg]);
    stage = `writing ${MODEL_FILE}`;
    await writeSafetensors(path.join(tmp, MODEL_FILE), ordered(expected, c.tensors), {
      atomic: false,
      metadata: { format: 'pt', writer: 'gpt-engine' },
    });
    if (c.optimizer) {
      stage = `writing ${OPTIMIZER_FILE}`;
      const m = ordered(expected, c.optimizer.exp_avg, 'exp_avg.');
      for (const [k, v] of ordered(expected, c.optimizer.exp_avg_sq, 'exp_avg_sq.')) m.set(k, v);
      await writeSafetensors(path.join(tmp, OPTIMIZER_FILE), m, { atomic: false, metadata: { format: 'pt', writer: 'gpt-engine' } });
    }
    if (state) {
      stage = `writing ${STATE_FILE}`;
      await writeFileChunks(path.join(tmp, STATE_FILE), [Buffer.from(JSON.stringify(state, null, 2) + '\n', 'utf8')]);
    }
    stage = 'syncing the temporary folder';
    await fsyncDir(tmp);
    if (await exists(target)) {
      old = tempNameBeside(target, 'old');
      stage = `moving the previous checkpoint aside to ${old}`;
      await fs.promises.rename(target, old);
      movedOld = true;
    }
    stage = `renaming ${tmp} to ${target}`;
    await fs.promises.rename(tmp, target);
    await fsyncDir(parent);
  } catch (e) {
    await fs.promises.rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    let after: string;
    if (movedOld && old) {
      const restored = await fs.promises.rename(old, target).then(
        () => true,
        () => false,
      );
      after = restored
        ? `The previous checkpoint at ${target} is unchanged.`
        : `The previous checkpoint was moved to ${old} and could not be moved back; rename it to ${target} to restore it.`;
    } else if (await exists(target)) after = `The previous checkpoint at ${target} is unchanged.`;
    else after = `Nothing was written under ${target}.`;
    const err = e as NodeJS.ErrnoException;
    const out = new Error(`Could not write the checkpoint ${target}: ${stage} failed: ${err.message ?? String(e)}. ${after}`, { cause: e });
    if (err && typeof err.code === 'string') (out as NodeJS.ErrnoException).code = err.code;
    throw out;
  }
  // The swap succeeded: the old copy is no longer needed.
  if (old) await fs.promises.rm(old, { recursive: true, force: true }).catch(() => undefined);
}

// ---------------------------------------------------------------------------
// Run folders

const STEP_RE = /^step-(0|[1-9][0-9]{0,15})$/;

/** 'step-<N>' */
export function checkpointDirName(step: number): string {
  expectInteger('step', step, { min: 0, max: Number.MAX_SAFE_INTEGER });
  return `step-${step}`;
}

/**
 * True when `dir` holds a complete checkpoint: config.json parses and
 * model.safetensors has a valid header whose sizes match the file (and
 * state.json parses when present). Never throws.
 */
export async function isCompleteCheckpoint(dir: string): Promise<boolean> {
  try {
    parseConfigFile(await readSmallFile(path.join(dir, CONFIG_FILE), MAX_CONFIG_BYTES));
    const r = await SafetensorsReader.open(path.join(dir, MODEL_FILE));
    await r.close();
    if (await exists(path.join(dir, OPTIMIZER_FILE))) await (await SafetensorsReader.open(path.join(dir, OPTIMIZER_FILE))).close();
    if (await exists(path.join(dir, STATE_FILE))) parseStateFile(await readSmallFile(path.join(dir, STATE_FILE), MAX_STATE_BYTES));
    return true;
  } catch {
    return false;
  }
}

export interface CheckpointEntry {
  name: string;
  step: number;
  dir: string;
}

async function stepDirs(runDir: string): Promise<CheckpointEntry[]> {
  const root = path.join(runDir, CHECKPOINTS_DIR);
  let names: string[];
  try {
    names = await fs.promises.readdir(root);
  } catch {
    return [];
  }
  const out: CheckpointEntry[] = [];
  for (const name of names) {
    const m = STEP_RE.exec(name);
    if (m) out.push({ name, step: Number(m[1]), dir: path.join(root, name) });
  }
  return out.sort((a, b) => a.step - b.step);
}

/** Complete checkpoints of a run folder, by step (ascending). */
export async function listCheckpoints(runDir: string): Promise<CheckpointEntry[]> {
  const out: CheckpointEntry[] = [];
  for (const e of await stepDirs(runDir)) if (await isCompleteCheckpoint(e.dir)) out.push(e);
  return out;
}

function checkLatestName(name: string): void {
  if (typeof name !== 'string' || !STEP_RE.test(name))
    throw new ArgumentRangeError(`Expected a checkpoint name like "step-100" for latest but received ${describe(name)}`);
}

/** The name `latest` holds, or undefined when it is missing or not a checkpoint name. */
export async function readLatest(runDir: string): Promise<string | undefined> {
  let text: string;
  try {
    const b = await readSmallFile(path.join(runDir, LATEST_FILE), 4096);
    text = b.toString('utf8').trim();
  } catch {
    return undefined;
  }
  if (text.startsWith(`${CHECKPOINTS_DIR}/`)) text = text.slice(CHECKPOINTS_DIR.length + 1);
  return STEP_RE.test(text) ? text : undefined;
}

/** Atomically points `latest` at checkpoints/<name> (written beside, fsynced, renamed). */
export async function updateLatest(runDir: string, name: string): Promise<void> {
  checkLatestName(name);
  const file = path.join(path.resolve(runDir), LATEST_FILE);
  const tmp = tempNameBeside(file);
  try {
    await writeFileChunks(tmp, [Buffer.from(name + '\n', 'utf8')]);
    await fs.promises.rename(tmp, file);
  } catch (e) {
    await fs.promises.rm(tmp, { force: true }).catch(() => undefined);
    throw new Error(`Could not update ${file}: ${(e as Error).message}`, { cause: e });
  }
  await fsyncDir(path.dirname(file));
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Deletes all but the newest `keep` complete checkpoints of a run folder,
 * never the one `latest` names, plus temporary folders left by writers that
 * died (their process is gone). Incomplete step folders are left alone.
 * Returns the names deleted.
 */
export async function pruneCheckpoints(runDir: string, keep: number): Promise<string[]> {
  expectInteger('keep', keep, { min: 1 });
  const latest = await readLatest(runDir);
  const complete = await listCheckpoints(runDir);
  const keepNames = new Set(complete.slice(Math.max(0, complete.length - keep)).map((e) => e.name));
  if (latest) keepNames.add(latest);
  const deleted: string[] = [];
  for (const e of complete) {
    if (keepNames.has(e.name)) continue;
    await fs.promises.rm(e.dir, { recursive: true, force: true });
    deleted.push(e.name);
  }
  const root = path.join(runDir, CHECKPOINTS_DIR);
  let names: string[] = [];
  try {
    names = await fs.promises.readdir(root);
  } catch {
    /* no checkpoints folder */
  }
  for (const n of names) {
    const m = /^\.step-\d+\.(?:tmp|old)-(\d+)-[0-9a-f]+$/.exec(n);
    if (m && Number(m[1]) !== process.pid && !pidAlive(Number(m[1]))) {
      await fs.promises.rm(path.join(root, n), { recursive: true, force: true });
      deleted.push(n);
    }
  }
  return deleted;
}

/**
 * The checkpoint folder `dir` stands for: itself when it holds config.json;
 * for a run folder, the one `latest` names if complete, else the highest
 * complete step-N. Throws BadFileError when there is none.
 */
export async function resolveCheckpointDir(dir: string): Promise<string> {
  if (typeof dir !== 'string' || dir.length === 0) throw typeError('a folder path', 'dir', dir);
  const abs = path.resolve(dir);
  if (!(await isDirectory(abs))) {
    if (await exists(abs)) throw new BadFileError(`${abs} is not a folder (expected a checkpoint, run or Hugging Face GPT-2 folder)`);
    // A writer that died between moving an old checkpoint aside and renaming the new one in leaves it here.
    const aside = (await fs.promises.readdir(path.dirname(abs)).catch(() => [] as string[])).filter((n) =>
      n.startsWith(`.${path.basename(abs)}.old-`),
    );
    if (aside.length)
      throw new BadFileError(
        `No such folder: ${abs}; a previous checkpoint was left at ${path.join(path.dirname(abs), aside[0])} by an interrupted write: rename it to ${abs} to use it`,
      );
    throw new BadFileError(`No such folder: ${abs}`);
  }
  if (await exists(path.join(abs, CONFIG_FILE))) return abs;
  const hasLatest = await exists(path.join(abs, LATEST_FILE));
  const hasCheckpoints = await isDirectory(path.join(abs, CHECKPOINTS_DIR));
  if (!hasLatest && !hasCheckpoints) {
    const hint = (await exists(path.join(abs, 'pytorch_model.bin'))) ? ' (it has pytorch_model.bin: gpt-engine reads only model.safetensors)' : '';
    throw new BadFileError(
      `${abs} is neither a checkpoint folder (no ${CONFIG_FILE}) nor a run folder (no ${LATEST_FILE} or ${CHECKPOINTS_DIR}/)${hint}`,
    );
  }
  const latest = await readLatest(abs);
  if (latest) {
    const d = path.join(abs, CHECKPOINTS_DIR, latest);
    if (await isCompleteCheckpoint(d)) return d;
  }
  const all = await listCheckpoints(abs);
  if (all.length === 0)
    throw new BadFileError(`The run folder ${abs} has no complete checkpoint under ${CHECKPOINTS_DIR}/ (step-<N> folders with ${CONFIG_FILE} and ${MODEL_FILE})`);
  return all[all.length - 1].dir;
}

// ---------------------------------------------------------------------------
// Reading

const BUFFER_RE = /^h\.[0-9]+\.attn\.(?:bias|masked_bias)$/;

interface TensorPlan {
  /** canonical name -> name in the file */
  names: Map<string, string>;
  lmHead?: string;
}

/** Maps the file's names to canonical ones and checks set, shapes and dtypes against the config. */
function planModelTensors(r: SafetensorsReader, config: GPTConfig, expected: Map<string, number[]>): TensorPlan {
  const file = r.file;
  const names = new Map<string, string>();
  let lmHead: string | undefined;
  for (const fileName of r.names()) {
    const n = fileName.startsWith('transformer.') ? fileName.slice('transformer.'.length) : fileName;
    if (BUFFER_RE.test(n)) continue; // attention-mask buffers of HF GPT-2: not parameters
    if (fileName === 'lm_head.weight') {
      lmHead = fileName;
      continue;
    }
    if (!expected.has(n))
      throw new BadFileError(
        `${file}: unexpected tensor ${JSON.stringify(fileName)}${hint(n, [...expected.keys()])}: the config (${configText(config)}) has no such tensor`,
      );
    const prev = names.get(n);
    if (prev !== undefined) throw new BadFileError(`${file}: tensor ${JSON.stringify(n)} appears twice (as ${JSON.stringify(prev)} and ${JSON.stringify(fileName)})`);
    names.set(n, fileName);
  }
  for (const [n, shape] of expected) {
    const fileName = names.get(n);
    if (fileName === undefined)
      throw new BadFileError(`${file}: missing tensor ${JSON.stringify(n)} (shape ${shapeText(shape)}, from the config: ${configText(config)})`);
    const info = r.info(fileName)!;
    if (!sameShape(info.shape, shape))
      throw new BadFileError(
        `${file}: tensor ${JSON.stringify(fileName)} has shape ${shapeText(info.shape)} but the config (${configText(config)}) implies ${shapeText(shape)}`,
      );
    if (!FLOAT_DTYPES.includes(info.dtype))
      throw new BadFileError(`${file}: tensor ${JSON.stringify(fileName)} has dtype ${info.dtype}; gpt-engine reads ${FLOAT_DTYPES.join(', ')}`);
  }
  if (lmHead !== undefined) {
    const info = r.info(lmHead)!;
    const want = expected.get('wte.weight')!;
    if (!sameShape(info.shape, want))
      throw new BadFileError(
        `${file}: tensor "lm_head.weight" has shape ${shapeText(info.shape)}, not wte's ${shapeText(want)}: untied LM heads are not supported`,
      );
    if (!FLOAT_DTYPES.includes(info.dtype))
      throw new BadFileError(`${file}: tensor "lm_head.weight" has dtype ${info.dtype}; gpt-engine reads ${FLOAT_DTYPES.join(', ')}`);
  }
  return { names, lmHead };
}

function sameValues(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i] && !(a[i] === b[i])) return false;
  return true;
}

async function readModel(file: string, config: GPTConfig): Promise<{ tensors: Map<string, Float32Array>; shapes: Map<string, number[]> }> {
  const expected = expectedTensorShapes(config);
  const r = await SafetensorsReader.open(file);
  try {
    const plan = planModelTensors(r, config, expected);
    const tensors = new Map<string, Float32Array>();
    const shapes = new Map<string, number[]>();
    for (const [n, shape] of expected) {
      tensors.set(n, await r.readFloat32(plan.names.get(n)!));
      shapes.set(n, [...shape]);
    }
    if (plan.lmHead !== undefined) {
      const head = await r.readFloat32(plan.lmHead);
      if (!sameValues(head, tensors.get('wte.weight')!))
        throw new BadFileError(
          `${file}: tensor "lm_head.weight" differs from "wte.weight": untied LM heads are not supported (gpt-engine ties the head to the token embedding)`,
        );
    }
    return { tensors, shapes };
  } finally {
    await r.close();
  }
}

async function readOptimizer(file: string, config: GPTConfig): Promise<OptimizerTensors> {
  const expected = expectedTensorShapes(config);
  const r = await SafetensorsReader.open(file);
  try {
    const want = new Map<string, number[]>();
    for (const [n, s] of expected) {
      want.set(`exp_avg.${n}`, s);
      want.set(`exp_avg_sq.${n}`, s);
    }
    for (const name of r.names())
      if (!want.has(name))
        throw new BadFileError(`${file}: unexpected tensor ${JSON.stringify(name)}${hint(name, [...want.keys()])}: the config (${configText(config)}) has no such optimizer state`);
    for (const [n, shape] of want) {
      const info = r.info(n);
      if (!info) throw new BadFileError(`${file}: missing tensor ${JSON.stringify(n)} (shape ${shapeText(shape)})`);
      if (!sameShape(info.shape, shape))
        throw new BadFileError(`${file}: tensor ${JSON.stringify(n)} has shape ${shapeText(info.shape)} but the config (${configText(config)}) implies ${shapeText(shape)}`);
      if (!FLOAT_DTYPES.includes(info.dtype))
        throw new BadFileError(`${file}: tensor ${JSON.stringify(n)} has dtype ${info.dtype}; gpt-engine reads ${FLOAT_DTYPES.join(', ')}`);
    }
    const out: OptimizerTensors = { exp_avg: new Map(), exp_avg_sq: new Map() };
    for (const n of expected.keys()) {
      out.exp_avg.set(n, await r.readFloat32(`exp_avg.${n}`));
      out.exp_avg_sq.set(n, await r.readFloat32(`exp_avg_sq.${n}`));
    }
    return out;
  } finally {
    await r.close();
  }
}

/**
 * Reads a checkpoint folder, a run folder (its newest complete checkpoint) or
 * a Hugging Face GPT-2 folder. `optimizer: true` also reads
 * optimizer.safetensors when the folder has one (result.optimizer stays
 * undefined when it has none: a weights-only checkpoint). state.json is read
 * whenever present. Every problem is a BadFileError naming the file and the
 * tensor or field.
 */
export async function readCheckpoint(dir: string, opts: { optimizer?: boolean } = {}): Promise<LoadedCheckpoint> {
  const ckpt = await resolveCheckpointDir(dir);
  const cfgFile = path.join(ckpt, CONFIG_FILE);
  const { config, tokenizer, source } = parseConfigFile(await readSmallFile(cfgFile, MAX_CONFIG_BYTES), cfgFile);
  const modelFile = path.join(ckpt, MODEL_FILE);
  if (!(await exists(modelFile))) {
    const hint = (await exists(path.join(ckpt, 'pytorch_model.bin')))
      ? ': the folder has pytorch_model.bin, but gpt-engine reads only model.safetensors (convert it with the transformers library: save_pretrained(..., safe_serialization=True))'
      : '';
    throw new BadFileError(`${ckpt} has no ${MODEL_FILE}${hint}`);
  }
  const { tensors, shapes } = await readModel(modelFile, config);
  const out: LoadedCheckpoint = { config, tokenizer, tensors, shapes, source, dir: ckpt };
  if (opts.optimizer) {
    const optFile = path.join(ckpt, OPTIMIZER_FILE);
    if (await exists(optFile)) out.optimizer = await readOptimizer(optFile, config);
  }
  const stateFile = path.join(ckpt, STATE_FILE);
  if (await exists(stateFile)) out.state = parseStateFile(await readSmallFile(stateFile, MAX_STATE_BYTES), stateFile);
  return out;
}
