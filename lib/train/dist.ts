/**
 * Data-parallel training (docs/DISTRIBUTED.md, docs/ARCHITECTURE.md "Data
 * parallel"): what the trainer does differently on W ranks. Every rank
 * builds the same weights from the seed and draws the same W x A
 * micro-batches from one sampler stream per optimizer step; rank r trains on
 * micro-batches r*A .. r*A+A-1, and the model's step() sums the gradients
 * and target counts across ranks. Rank 0 alone logs, evaluates, samples and
 * writes files.
 */
import { ArgumentRangeError } from '../errors';
import type { Dataset } from '../data';
import { distCall } from '../distributed/native';
import type { World } from '../distributed/world';
import type { TrainSettings } from './settings';

/**
 * The tokens of one optimizer step across all ranks. Without batch_tokens
 * from the user (or the checkpoint), one micro-batch per rank: W x batch x
 * seq. Given, it must be a multiple of W x batch x seq. Returns A, the
 * micro-batches each rank accumulates.
 */
export function distBatchTokens(settings: TrainSettings, ranks: number, given: boolean): number {
  const unit = ranks * settings.batch * settings.seq;
  if (!given) settings.batch_tokens = unit;
  if (settings.batch_tokens % unit !== 0) {
    const ok = [1, 2, 4].map((k) => k * unit).join(', ');
    throw new ArgumentRangeError(
      `Expected a multiple of ranks x batch x seq = ${ranks} x ${settings.batch} x ${settings.seq} = ${unit} for batch_tokens but received ${settings.batch_tokens}: with ${ranks} ranks use --batch-tokens ${ok}, ..., or change --batch, --seq or the number of ranks`,
    );
  }
  return settings.batch_tokens / unit;
}

/** The checks of a W-rank run that need the data and the device, before any model is made. */
export function checkDistRun(settings: TrainSettings, ranks: number, ds: Dataset): void {
  const need = ranks * settings.batch * (settings.seq + 1);
  if (ds.train.count < need)
    throw new ArgumentRangeError(
      `Expected at most ${Math.max(1, Math.floor(ds.train.count / (settings.batch * (settings.seq + 1))))} ranks for the training split of ${ds.dir} (${ds.train.count} tokens; each rank takes batch x (seq + 1) = ${settings.batch * (settings.seq + 1)} per micro-batch) but received ${ranks}: use fewer ranks or a smaller --batch/--seq`,
    );
  if (settings.device === 'cuda') {
    // GPU ranks reduce their gradients with NCCL (native/distributed/nccl_comm.cc): it must load before any model is made.
    const nccl = distCall((n) => n.ncclInfo());
    if (!nccl.available)
      throw new ArgumentRangeError(`Expected NCCL for --device cuda on ${ranks} ranks but it cannot be loaded: ${nccl.reason}`);
  }
}

/** Runs fn on rank 0 first, then on the other ranks (work that writes shared files, such as preparing the built-in corpus). */
export function leadFirst<T>(world: World, fn: () => T): T {
  let out: T | undefined;
  if (world.rank === 0) out = fn();
  world.barrier();
  if (world.rank !== 0) out = fn();
  return out as T;
}

/** "W ranks; per rank: ..." for the log. */
export function describeRanks(world: World, zero: boolean, mem: { params: number; grads: number; optimizer: number }, accum: number): string {
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
  return `ranks: ${world.size} (${accum} micro-batch${accum > 1 ? 'es' : ''} each per step), ZeRO-1 ${zero ? 'on' : 'off'}; memory per rank: parameters ${mib(mem.params)}, gradients ${mib(mem.grads)}, optimizer state ${mib(mem.optimizer)} (${mem.optimizer} bytes)`;
}
