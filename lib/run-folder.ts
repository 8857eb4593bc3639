/**
 * Run folders (docs/ARCHITECTURE.md "Files users keep"): what a training run
 * writes and where. A run folder (default runs/<YYYYMMDD-HHMMSS>) holds
 *   train.json         the effective configuration of the run
 *   metrics.jsonl      one JSON line per optimizer step
 *   loss.svg           the training curves (lib/plot.ts)
 *   checkpoints/step-<N>/  checkpoint folders (lib/checkpoint.ts)
 *   latest             one line naming the newest complete checkpoint (`step-<N>`)
 * This file names those, lists and prunes checkpoints, moves `latest`, and
 * resolves a folder given by the user to the checkpoint folder it stands for.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CONFIG_FILE, MAX_CONFIG_BYTES, MAX_STATE_BYTES, MODEL_FILE, OPTIMIZER_FILE, STATE_FILE, exists, isDirectory, parseConfigFile, parseStateFile, readSmallFile } from './checkpoint-json';
import { ArgumentRangeError, BadFileError } from './errors';
import { writeFileAtomic } from './fsutil';
import { SafetensorsReader } from './safetensors';
import { describe, expectInteger, typeError } from './validate';

export const LATEST_FILE = 'latest';
export const CHECKPOINTS_DIR = 'checkpoints';
export const METRICS_FILE = 'metrics.jsonl';
export const TRAIN_FILE = 'train.json';
export const LOSS_PLOT_FILE = 'loss.svg';

/** runs/<YYYYMMDD-HHMMSS> (local time of `d`), resolved against the working folder. */
export function defaultRunDir(d = new Date()): string {
  const p = (n: number) => String(n).padStart(2, '0');
  const stamp = `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
  return path.resolve(path.join('runs', stamp));
}

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

/** Atomically points `latest` at checkpoints/<name> (lib/fsutil.ts writeFileAtomic: file and folder fsynced). */
export async function updateLatest(runDir: string, name: string): Promise<void> {
  checkLatestName(name);
  const file = path.join(path.resolve(runDir), LATEST_FILE);
  try {
    await writeFileAtomic(file, name + '\n');
  } catch (e) {
    throw new Error(`Could not update ${file}: ${(e as Error).message}`, { cause: e });
  }
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
