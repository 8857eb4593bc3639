/**
 * The ranks of a data-parallel run (docs/DISTRIBUTED.md): one process per
 * rank, started by mpirun, joined through Open MPI. Every method is
 * collective unless said otherwise: every rank calls it, in the same order.
 * A rank that fails must end the job (abortWorld), or the others wait for it
 * in their next collective call; the CLI does that for `train`.
 */
import { createHash } from 'node:crypto';
import * as os from 'node:os';
import { ArgumentRangeError } from '../errors';
import type { GPT } from '../model';
import { distCall, distNative } from './native';

export interface World {
  readonly rank: number;
  readonly size: number;
  /** this rank's index among the ranks on its machine, and their count */
  readonly localRank: number;
  readonly localSize: number;
  /** In place: values[i] = the sum over ranks of values[i]. */
  allreduceSum(values: Float64Array): void;
  /** Rank 0's text on every rank. */
  broadcastText(text: string): string;
  barrier(): void;
  /** Joins the model to the ranks: its step() sums gradients across them; zero: ZeRO-1 sharded moments. */
  attach(model: GPT, o: { zero: boolean }): void;
  /** The whole AdamW state on this rank (before saving it). */
  gatherOptimizer(model: GPT): void;
  /** Back to this rank's slice (ZeRO-1; local). */
  shardOptimizer(model: GPT): void;
  /** Local: the last step's time in communication, this rank's optimizer bytes. */
  stats(model: GPT): { commMs: number; optimizerBytes: number; sharded: boolean };
}

/** True when this process was started by Open MPI's mpirun (or another MPI launcher). */
export function launchedByMpi(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.OMPI_COMM_WORLD_SIZE !== undefined || env.PMIX_RANK !== undefined || env.PMI_SIZE !== undefined;
}

/** The world size mpirun announced in the environment (before MPI starts), or 1. */
export function launchedSize(env: NodeJS.ProcessEnv = process.env): number {
  const n = Number(env.OMPI_COMM_WORLD_SIZE ?? env.PMI_SIZE ?? 1);
  return Number.isInteger(n) && n >= 1 ? n : 1;
}

let world: World | null = null;

/** Starts MPI once and returns this process's place in the job. */
export function mpiWorld(): World {
  if (world) return world;
  const info = distCall((n) => n.mpiInfo());
  if (!info.available) throw new ArgumentRangeError(`Cannot run distributed: ${info.reason}`);
  const w = distCall((n) => n.mpiInit());
  const handle = (m: GPT) => m.nativeHandle();
  world = {
    ...w,
    allreduceSum: (values) => distCall((n) => n.mpiAllreduceSum(values)),
    broadcastText: (text) => {
      const len = new Float64Array([w.rank === 0 ? Buffer.byteLength(text) : 0]);
      distCall((n) => n.mpiAllreduceSum(len));
      const bytes = new Uint8Array(len[0]);
      if (w.rank === 0) bytes.set(Buffer.from(text));
      distCall((n) => n.mpiBcast(bytes, 0));
      return Buffer.from(bytes).toString();
    },
    barrier: () => distCall((n) => n.mpiBarrier()),
    attach: (m, o) => distCall((n) => n.distAttach(handle(m), o)),
    gatherOptimizer: (m) => distCall((n) => n.distGatherOptimizer(handle(m))),
    shardOptimizer: (m) => distCall((n) => n.distShardOptimizer(handle(m))),
    stats: (m) => distCall((n) => n.distStats(handle(m))),
  };
  return world;
}

/** Ends the job: every rank (mpirun reports which called it). Never returns while MPI is up. */
export function abortWorld(code = 1): void {
  if (!world) return;
  distNative().mpiAbort(code);
}

/** MPI_Finalize, once, before the process exits (no-op without MPI). */
export function finalizeWorld(): void {
  if (!world) return;
  distNative().mpiFinalize();
  world = null;
}

/**
 * Fails on every rank, before training, when the ranks were started with
 * different configurations: each compares the hash of its `config` with rank 0's.
 */
export function checkSameConfig(w: World, config: unknown): void {
  const mine = createHash('sha256').update(JSON.stringify(config)).digest('hex');
  const root = w.broadcastText(mine);
  const differ = new Float64Array(w.size);
  differ[w.rank] = mine === root ? 0 : 1;
  w.allreduceSum(differ);
  const bad = [...differ].map((d, r) => (d > 0 ? r : -1)).filter((r) => r >= 0);
  if (bad.length)
    throw new ArgumentRangeError(
      `Expected the same configuration on every rank but rank${bad.length > 1 ? 's' : ''} ${bad.join(', ')} ${bad.length > 1 ? 'differ' : 'differs'} from rank 0 (config hash ${bad.includes(w.rank) ? mine.slice(0, 12) : '…'} vs ${root.slice(0, 12)}): start every rank with the same command, data and files`,
    );
}

/** CPU threads for each rank when the user set none: the cores shared among the ranks on this machine. */
export function threadsPerRank(localSize: number): number {
  const cores = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
  return Math.max(1, Math.floor(cores / Math.max(1, localSize)));
}
