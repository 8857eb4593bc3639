/**
 * What every section receives: the options of the run, the ceilings, and
 * the PyTorch runner (or why there is none).
 */
import { BenchDevice, BenchPrecision, Ceilings } from './types';
import { PytorchRunner } from './pytorch';

export interface SectionOptions {
  quick: boolean;
  device: BenchDevice;
  /** precisions asked for (sections that have only fp32 use fp32) */
  precisions: BenchPrecision[];
  warmup: number;
  repeats: number;
  /** ms a single case may spend on its repeats (at least 2 repeats are always taken) */
  caseBudgetMs: number;
  preset?: string;
  batch?: number;
  seq?: number;
  threads: number;
}

export interface SectionContext {
  opts: SectionOptions;
  /** the ceilings of the device the sections run on (see deviceCeilings) */
  ceilings: Ceilings;
  pytorch: PytorchRunner | null;
  log: (s: string) => void;
}

/** Turns anything thrown into one line for a report. */
export function errorLine(e: unknown): string {
  const err = e as { message?: string; code?: string };
  return `${err?.code ? err.code + ': ' : ''}${String(err?.message ?? e).split('\n')[0]}`;
}

/** The run settings every PyTorch twin takes (bench/pytorch/common.py), under its names. */
export function twinSettings(opts: SectionOptions): { device: BenchDevice; warmup: number; repeats: number; budget_ms: number } {
  return { device: opts.device, warmup: opts.warmup, repeats: opts.repeats, budget_ms: opts.caseBudgetMs };
}
