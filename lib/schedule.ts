/**
 * The learning-rate schedule of GPT-3's recipe: linear warmup from 0 to the
 * peak over `warmup` steps, then cosine decay to `minRatio` (10%) of the
 * peak at `total` steps, flat after that.
 *
 * Steps are counted from 1: lrAt(1) is the rate of the first optimizer step
 * (peak / warmup with warmup > 0, so the first update is never zero-sized
 * for warmup 1).
 */
import { ArgumentRangeError } from './errors';
import { expectInteger, expectNumber } from './validate';

export interface ScheduleOptions {
  /** peak learning rate */
  lr: number;
  /** warmup steps (0: none) */
  warmup: number;
  /** steps of the whole run: the end of the cosine */
  total: number;
  /** final rate as a fraction of the peak (GPT-3: 0.1) */
  minRatio?: number;
}

export interface Schedule extends Required<ScheduleOptions> {}

export function makeSchedule(o: ScheduleOptions): Schedule {
  const lr = expectNumber('lr', o.lr, { gt: 0 });
  const total = expectInteger('steps', o.total, { min: 1 });
  const warmup = expectInteger('warmup', o.warmup, { min: 0 });
  if (warmup > total) throw new ArgumentRangeError(`Expected warmup <= steps (${total}) for warmup but received ${warmup} (number)`);
  const minRatio = expectNumber('minRatio', o.minRatio ?? 0.1, { min: 0, max: 1 });
  return { lr, warmup, total, minRatio };
}

/** The learning rate of optimizer step `step` (1-based). */
export function lrAt(s: Schedule, step: number): number {
  if (s.warmup > 0 && step <= s.warmup) return (s.lr * step) / s.warmup;
  const min = s.lr * s.minRatio;
  if (step >= s.total) return min;
  const decaySteps = s.total - s.warmup;
  if (decaySteps <= 0) return min;
  const progress = (step - s.warmup) / decaySteps;
  return min + 0.5 * (s.lr - min) * (1 + Math.cos(Math.PI * progress));
}

/** A default warmup for a run of `total` steps: 5% of it, at least 1, at most 2000. */
export function defaultWarmup(total: number): number {
  return Math.max(1, Math.min(2000, Math.round(total * 0.05)));
}
