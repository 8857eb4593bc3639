/**
 * Exact resume: the trainer's part of a checkpoint's state.json (written by
 * trainingState, read back by readResumeState) and the folder --resume
 * names. A checkpoint holds the weights, both Adam moments, the Adam step
 * counter, the sampler's generator state and the schedule, so on the CPU the
 * steps after a resume see the same batches, rates and moments as an
 * uninterrupted run and their losses are bitwise identical.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { TokenizerName } from '../config';
import type { Dataset, SamplerState } from '../data';
import { BadFileError } from '../errors';
import { STATE_FILE } from '../checkpoint-json';
import { CHECKPOINTS_DIR, defaultRunDir, resolveCheckpointDir } from '../run-folder';
import type { Schedule } from '../schedule';
import { TRAIN_KEYS, TrainSettings, validateSetting } from './settings';

/** What a resumed run takes from its checkpoint's state.json. */
export interface ResumeState {
  step: number;
  tokensSeen: number;
  preset: string | null;
  data: string;
  settings: TrainSettings;
  sampler: SamplerState;
}

/** The state.json fields of a training checkpoint at `step` (lib/checkpoint-json.ts describes the file). */
export function trainingState(a: {
  step: number;
  settings: TrainSettings;
  tokensSeen: number;
  sampler: SamplerState;
  schedule: Schedule;
  ds: Dataset;
  tokenizer: TokenizerName;
  preset: string | null;
  valLoss: number | null;
  elapsedSeconds: number;
}): Record<string, unknown> {
  const { settings, schedule, ds } = a;
  return {
    version: 1,
    step: a.step,
    total_steps: settings.steps,
    tokens_seen: a.tokensSeen,
    seed: settings.seed,
    rng: { sampler: a.sampler.rng },
    sampler: { draws: a.sampler.draws, batch: settings.batch, seq: settings.seq },
    schedule: { lr: schedule.lr, warmup: schedule.warmup, total: schedule.total, min_ratio: schedule.minRatio },
    data: { dir: path.resolve(ds.dir), tokenizer: a.tokenizer, train_tokens: ds.train.count, val_tokens: ds.val.count },
    trainer: { preset: a.preset, settings, val_loss: a.valLoss, elapsed_s: a.elapsedSeconds },
  };
}

/** Reads back what trainingState wrote; BadFileError when `state` was not written by the trainer. */
export function readResumeState(state: Record<string, unknown>, dir: string): ResumeState {
  const bad = (what: string) => new BadFileError(`${path.join(dir, STATE_FILE)} is missing ${what}; it was not written by gpt-engine train, so it cannot be resumed`);
  const trainer = state.trainer as { preset?: string | null; settings?: TrainSettings } | undefined;
  const data = state.data as { dir?: string } | undefined;
  const rng = (state.rng as Record<string, { state: string; inc: string }> | undefined)?.sampler;
  const sampler = state.sampler as { draws?: number } | undefined;
  if (!trainer?.settings) throw bad('trainer.settings');
  if (!data?.dir) throw bad('data.dir');
  if (!rng || !sampler || typeof sampler.draws !== 'number') throw bad('the sampler state');
  const settings = { ...trainer.settings };
  for (const k of TRAIN_KEYS) if (settings[k] !== undefined) validateSetting(k, settings[k], 'state.json trainer.settings');
  return {
    step: state.step as number,
    tokensSeen: (state.tokens_seen as number) ?? 0,
    preset: trainer.preset ?? null,
    data: data.dir,
    settings,
    sampler: { rng, draws: sampler.draws },
  };
}

/** --resume: a run folder (its newest complete checkpoint) or a checkpoint folder. */
export async function resolveResume(target: string, out: string | undefined): Promise<{ checkpointDir: string; runDir: string }> {
  const dir = path.resolve(target);
  if (!fs.existsSync(dir)) throw new BadFileError(`Missing folder ${target} for --resume (expected a run folder or a checkpoint folder)`);
  const checkpointDir = await resolveCheckpointDir(dir);
  // A checkpoint inside <run>/checkpoints/step-N continues that run.
  let runDir: string;
  if (out !== undefined) runDir = path.resolve(out);
  else if (path.basename(path.dirname(checkpointDir)) === CHECKPOINTS_DIR) runDir = path.dirname(path.dirname(checkpointDir));
  else runDir = defaultRunDir();
  return { checkpointDir, runDir };
}
