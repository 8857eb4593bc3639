/**
 * <run>/metrics.jsonl: one JSON line per optimizer step (loss, learning rate,
 * gradient norm, throughput, and the validation loss on evaluation steps).
 * lib/plot.ts reads it back.
 */
import * as fs from 'node:fs';
import { writeFileAtomicSync } from '../fsutil';
import type { StepInfo } from './types';

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** The metrics line of a step (val_loss and val_perplexity are added on evaluation steps). */
export function stepLine(s: StepInfo): Record<string, unknown> {
  return {
    step: s.step,
    loss: s.loss,
    lr: s.lr,
    grad_norm: s.gradNorm,
    tokens_per_s: round(s.tokensPerSecond, 1),
    ms_per_step: s.msPerStep,
    mfu: s.mfu === null ? null : round(s.mfu, 5),
    tokens: s.tokensSeen,
  };
}

/** Drops metrics lines past `step` (left by a run that went on after its last checkpoint). */
function truncateMetrics(file: string, step: number): void {
  if (!fs.existsSync(file)) return;
  const lines = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.trim());
  const keep = lines.filter((l) => {
    try {
      return (JSON.parse(l) as { step: number }).step <= step;
    } catch {
      return false;
    }
  });
  if (keep.length !== lines.length) writeFileAtomicSync(file, keep.map((l) => l + '\n').join(''));
}

/** metrics.jsonl opened for appending after `step` (later lines, from a run that went past its last checkpoint, are dropped). */
export class MetricsLog {
  private readonly fd: number;

  constructor(readonly file: string, step: number) {
    truncateMetrics(file, step);
    this.fd = fs.openSync(file, 'a');
  }

  write(line: Record<string, unknown>): void {
    fs.writeSync(this.fd, JSON.stringify(line) + '\n');
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}
