/**
 * Timing: warm-up runs (not recorded), then repeats; the median is the
 * figure, min and max show the spread. A time budget stops the repeats of a
 * slow case early (never below `minRepeats`), so the full suite stays
 * bounded on a slow machine.
 */
import { performance } from 'node:perf_hooks';
import { Stat } from './types';

export function statOf(samples: number[]): Stat {
  if (samples.length === 0) throw new RangeError('Expected at least one sample for statOf but received none');
  const sorted = [...samples].sort((a, b) => a - b);
  const n = sorted.length;
  const median = n % 2 ? sorted[(n - 1) / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
  return { median, min: sorted[0], max: sorted[n - 1], samples: [...samples] };
}

/** Relative spread of a stat: (max - min) / median. */
export function spread(s: Stat): number {
  return s.median > 0 ? (s.max - s.min) / s.median : 0;
}

export interface TimingOptions {
  warmup: number;
  repeats: number;
  /** stop adding repeats once this many ms were spent timing (warm-up included) */
  budgetMs?: number;
  minRepeats?: number;
}

/** Times an async call; returns ms per call. */
export async function timeAsync(fn: () => Promise<unknown>, o: TimingOptions): Promise<Stat> {
  const start = performance.now();
  for (let i = 0; i < o.warmup; i++) await fn();
  const samples: number[] = [];
  const minRepeats = Math.max(1, Math.min(o.minRepeats ?? 2, o.repeats));
  for (let i = 0; i < o.repeats; i++) {
    const t0 = performance.now();
    await fn();
    samples.push(performance.now() - t0);
    if (o.budgetMs !== undefined && samples.length >= minRepeats && performance.now() - start > o.budgetMs) break;
  }
  return statOf(samples);
}

/** Collects per-repeat measurements an async call reports itself (e.g. a step's split timings). */
export async function repeatAsync<T>(fn: () => Promise<T>, o: TimingOptions): Promise<T[]> {
  const start = performance.now();
  for (let i = 0; i < o.warmup; i++) await fn();
  const out: T[] = [];
  const minRepeats = Math.max(1, Math.min(o.minRepeats ?? 2, o.repeats));
  for (let i = 0; i < o.repeats; i++) {
    out.push(await fn());
    if (o.budgetMs !== undefined && out.length >= minRepeats && performance.now() - start > o.budgetMs) break;
  }
  return out;
}

/** Throughput from a time stat: units per second at the median. */
export function perSecond(amount: number, ms: Stat | null): number | null {
  if (!ms || !(ms.median > 0)) return null;
  return amount / (ms.median / 1000);
}

/** A fraction of a ceiling, or null when either is unknown. */
export function fractionOf(value: number | null, ceiling: number | null): number | null {
  if (value === null || ceiling === null || !(ceiling > 0)) return null;
  return value / ceiling;
}

/** Fills a Float32Array with deterministic pseudo-random values in [-1, 1). */
export function fillRandom(a: Float32Array, seed: number): Float32Array {
  let s = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < a.length; i++) {
    // xorshift32: cheap, deterministic; the values only need to be ordinary
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    a[i] = s / 2147483648 - 1;
  }
  return a;
}
