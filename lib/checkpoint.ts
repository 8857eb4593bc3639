/**
 * Checkpoint folders and Hugging Face GPT-2 folders: reading and writing
 * (docs/ARCHITECTURE.md "Files users keep").
 *
 * A checkpoint folder holds
 *   config.json            toConfigJson(config, { tokenizer })
 *   model.safetensors      F32 tensors, HF GPT-2 names, Conv1D [in, out]
 *   optimizer.safetensors  (training state) exp_avg.<name>, exp_avg_sq.<name>
 *   state.json             (training state) see lib/checkpoint-json.ts
 * and is written into a temporary folder beside its final name, fsynced, then
 * renamed into place, so a crash never leaves a half checkpoint under the
 * final name. Run folders (checkpoints/step-<N>/, `latest`) are managed by
 * lib/run-folder.ts; both files' names are re-exported here.
 *
 * readCheckpoint accepts a checkpoint folder, a run folder or a Hugging Face
 * GPT-2 folder (config.json + model.safetensors; names with or without
 * `transformer.`, attention-mask buffers ignored, `lm_head.weight` accepted
 * only when equal to wte, fp16/bf16 converted). Every tensor is checked
 * against the shapes the config implies before any tensor data is read.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { GPTConfig, TokenizerName, toConfigJson, validateConfig } from './config';
import {
  CONFIG_FILE,
  CheckpointSource,
  CheckpointState,
  MAX_CONFIG_BYTES,
  MAX_STATE_BYTES,
  MODEL_FILE,
  OPTIMIZER_FILE,
  STATE_FILE,
  exists,
  isDirectory,
  parseConfigFile,
  parseStateFile,
  readSmallFile,
  trainedSeq,
  validateState,
} from './checkpoint-json';
import { ArgumentRangeError, BadFileError } from './errors';
import { fsyncDir, tempNameBeside, writeFileChunks } from './fsutil';
import { resolveCheckpointDir } from './run-folder';
import { FLOAT_DTYPES, SafetensorsReader, TensorToWrite, writeSafetensors } from './safetensors';
import { describe, didYouMean, expectObject, typeError } from './validate';

export { CONFIG_FILE, MODEL_FILE, OPTIMIZER_FILE, STATE_FILE, STATE_KEYS, parseConfigFile, validateState, parseStateFile, trainedSeq } from './checkpoint-json';
export type { CheckpointSource, RngStateJson, CheckpointState } from './checkpoint-json';
export {
  LATEST_FILE,
  CHECKPOINTS_DIR,
  checkpointDirName,
  isCompleteCheckpoint,
  listCheckpoints,
  readLatest,
  updateLatest,
  pruneCheckpoints,
  resolveCheckpointDir,
} from './run-folder';
export type { CheckpointEntry } from './run-folder';

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

/**
 * The trained sequence length recorded in a checkpoint folder (or a run
 * folder's newest checkpoint): state.json's trainer settings, or undefined
 * when the folder has no training state (a weights-only or Hugging Face folder).
 */
export async function readTrainedSeq(dir: string): Promise<number | undefined> {
  const stateFile = path.join(await resolveCheckpointDir(dir), STATE_FILE);
  if (!(await exists(stateFile))) return undefined;
  return trainedSeq(parseStateFile(await readSmallFile(stateFile, MAX_STATE_BYTES), stateFile));
}
