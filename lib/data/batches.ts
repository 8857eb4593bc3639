/**
 * Batches for training and evaluation: random windows drawn with the run's
 * seeded generator (resumable exactly), and fixed evaluation windows.
 */
import { ArgumentRangeError, BadFileError } from '../errors';
import { Rng, RngState } from '../rng';
import { describe, expectInteger } from '../validate';
import { TokenFile } from './tokenfile';

export interface SamplerState {
  rng: RngState;
  /** batches drawn so far */
  draws: number;
}

/**
 * Random windows of seq + 1 tokens from a token file: inputs are the first
 * seq, targets the last seq. Starts are uniform over every position, drawn
 * with the run's seeded generator; getState()/setState() make the sequence
 * resumable exactly.
 */
export class BatchSampler {
  readonly file: TokenFile;
  readonly batch: number;
  readonly seq: number;
  private rng: Rng;
  private drawn = 0;
  private window: Int32Array;

  constructor(file: TokenFile, opts: { batch: number; seq: number; seed: number }) {
    this.file = file;
    this.batch = expectInteger('batch', opts.batch, { min: 1 });
    this.seq = expectInteger('seq', opts.seq, { min: 1 });
    expectInteger('seed', opts.seed, { min: 0 });
    if (file.count < this.seq + 1)
      throw new ArgumentRangeError(
        `Expected at least seq + 1 = ${this.seq + 1} tokens in ${file.path} but it has ${file.count}; lower --seq or add data`,
      );
    // Stream 1: the sampler's own sequence, apart from any other use of the seed.
    this.rng = new Rng(opts.seed, 1);
    this.window = new Int32Array(this.seq + 1);
  }

  /** The next batch: tokens and targets, each Int32Array(batch * seq). */
  next(): { tokens: Int32Array; targets: Int32Array } {
    const { batch: B, seq: T } = this;
    const tokens = new Int32Array(B * T);
    const targets = new Int32Array(B * T);
    const starts = this.file.count - T; // start in [0, count - T - 1]
    for (let b = 0; b < B; b++) {
      const s = this.rng.nextInt(starts);
      this.file.readInto(s, T + 1, this.window);
      tokens.set(this.window.subarray(0, T), b * T);
      targets.set(this.window.subarray(1, T + 1), b * T);
    }
    this.drawn++;
    return { tokens, targets };
  }

  getState(): SamplerState {
    return { rng: this.rng.getState(), draws: this.drawn };
  }

  setState(s: SamplerState): void {
    if (!s || typeof s !== 'object' || !s.rng || typeof s.rng.state !== 'string' || typeof s.rng.inc !== 'string' || !Number.isInteger(s.draws))
      throw new BadFileError(`Expected a sampler state {rng: {state, inc}, draws} but received ${describe(s)}`);
    this.rng = Rng.fromState(s.rng);
    this.drawn = s.draws;
  }
}

/**
 * Fixed evaluation batches over a file: up to `maxWindows` windows of seq + 1
 * tokens, evenly spread (non-overlapping when the file is long enough), the
 * same at every evaluation so losses compare across steps.
 */
export function evalBatches(file: TokenFile, opts: { batch: number; seq: number; maxWindows: number }): { tokens: Int32Array; targets: Int32Array; batch: number }[] {
  const T = opts.seq;
  if (file.count < T + 1)
    throw new ArgumentRangeError(`Expected at least seq + 1 = ${T + 1} tokens in ${file.path} but it has ${file.count}; lower --seq or raise --val-fraction`);
  const span = file.count - T - 1; // last valid start
  const n = Math.max(1, Math.min(opts.maxWindows, Math.floor((file.count - 1) / T)));
  const starts: number[] = [];
  for (let i = 0; i < n; i++) starts.push(n === 1 ? 0 : Math.round((i * span) / (n - 1)));
  const out: { tokens: Int32Array; targets: Int32Array; batch: number }[] = [];
  const win = new Int32Array(T + 1);
  for (let i = 0; i < starts.length; i += opts.batch) {
    const group = starts.slice(i, i + opts.batch);
    const tokens = new Int32Array(group.length * T);
    const targets = new Int32Array(group.length * T);
    group.forEach((s, b) => {
      file.readInto(s, T + 1, win);
      tokens.set(win.subarray(0, T), b * T);
      targets.set(win.subarray(1), b * T);
    });
    out.push({ tokens, targets, batch: group.length });
  }
  return out;
}
