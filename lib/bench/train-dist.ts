/**
 * `gpt-engine bench train --nproc N` (docs/BENCHMARKS.md "Data parallel"):
 * the same optimizer steps (N micro-batches each) run by one process with N
 * threads and by N ranks of 1 thread under mpirun, on the same machine.
 * Both are real `gpt-engine train` runs, alternated over a few rounds so a
 * machine whose load changes weighs on both alike; their metrics.jsonl give
 * the tokens/s of each step and, for the ranks, the time spent reducing.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ArgumentRangeError } from '../errors';

export interface TrainDistOptions {
  nproc: number;
  preset: string;
  batch: number;
  seq: number;
  /** optimizer steps per run; the first `skip` are not timed */
  steps: number;
  skip: number;
  /** runs of each kind, alternating (single, ranks, single, ...), so both see the same machine over time */
  rounds: number;
  log: (s: string) => void;
}

export interface TrainDistResult {
  preset: string;
  nproc: number;
  batch: number;
  seq: number;
  tokens_per_step: number;
  /** timed steps of each kind, over all rounds */
  steps_timed: number;
  rounds: number;
  single: { threads: number; tokens_per_s: number; ms_per_step: number };
  ranks: { ranks: number; threads_per_rank: number; tokens_per_s: number; ms_per_step: number; comm_ms_per_step: number };
  /** ranks' tokens/s over the single process's */
  ratio: number;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function run(args: string[], log: (s: string) => void): Array<Record<string, number>> {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'gpt-bench-dist-'));
  try {
    const cli = process.argv[1];
    log(`gpt-engine ${args.join(' ')}`);
    const r = spawnSync(process.execPath, [cli, ...args, '--out', out], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    if (r.status !== 0) throw new Error(`bench train --nproc: the run failed (exit ${r.status}):\n${r.stderr.slice(-3000)}`);
    return fs
      .readFileSync(path.join(out, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
}

export function runTrainDist(o: TrainDistOptions): TrainDistResult {
  if (o.nproc < 2) throw new ArgumentRangeError(`Expected at least 2 for --nproc with bench train but received ${o.nproc}`);
  if (o.steps <= o.skip) throw new ArgumentRangeError(`Expected more steps than the ${o.skip} untimed ones but received ${o.steps}`);
  const tokens = o.nproc * o.batch * o.seq;
  const common = ['train', '--preset', o.preset, '--batch', String(o.batch), '--seq', String(o.seq), '--batch-tokens', String(tokens), '--steps', String(o.steps), '--sample-tokens', '0', '--eval-every', '1000000', '--checkpoint-every', '1000000'];
  const timed = (lines: Array<Record<string, number>>) => lines.slice(o.skip);
  const one: Array<Record<string, number>> = [];
  const many: Array<Record<string, number>> = [];
  for (let i = 0; i < o.rounds; i++) {
    one.push(...timed(run([...common, '--threads', String(o.nproc)], o.log)));
    many.push(...timed(run([...common, '--nproc', String(o.nproc), '--threads', '1'], o.log)));
  }
  const single = { threads: o.nproc, tokens_per_s: median(one.map((l) => l.tokens_per_s)), ms_per_step: median(one.map((l) => l.ms_per_step)) };
  const ranks = {
    ranks: o.nproc,
    threads_per_rank: 1,
    tokens_per_s: median(many.map((l) => l.tokens_per_s)),
    ms_per_step: median(many.map((l) => l.ms_per_step)),
    comm_ms_per_step: median(many.map((l) => l.comm_ms ?? 0)),
  };
  return { preset: o.preset, nproc: o.nproc, batch: o.batch, seq: o.seq, tokens_per_step: tokens, steps_timed: one.length, rounds: o.rounds, single, ranks, ratio: ranks.tokens_per_s / single.tokens_per_s };
}

export function formatTrainDist(r: TrainDistResult): string {
  return [
    `train, ${r.preset}: ${r.tokens_per_step} tokens per optimizer step (${r.nproc} micro-batches of ${r.batch} x ${r.seq}), median of ${r.steps_timed} steps over ${r.rounds} alternating runs of each`,
    `  1 process x ${r.single.threads} threads:   ${Math.round(r.single.tokens_per_s)} tokens/s  (${r.single.ms_per_step} ms/step)`,
    `  ${r.ranks.ranks} ranks x ${r.ranks.threads_per_rank} thread (MPI): ${Math.round(r.ranks.tokens_per_s)} tokens/s  (${r.ranks.ms_per_step} ms/step, of which ${r.ranks.comm_ms_per_step} ms reducing across ranks)`,
    `  ranks / single process: ${r.ratio.toFixed(3)}x`,
    '',
  ].join('\n');
}
