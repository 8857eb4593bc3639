/**
 * The addon's data-parallel exports (native/addon/dist_binding.cc): MPI
 * through the plugin the addon loads at run time, NCCL's status, and a
 * model joining the ranks.
 */
import { callNativeSync } from '../errors';
import { loadAddon } from '../native';

export interface MpiInfo {
  /** the plugin and libmpi loaded: this build and machine can run CPU ranks */
  available: boolean;
  /** where the plugin is looked for (next to the addon) */
  plugin: string;
  /** the MPI library's version line, e.g. "Open MPI v4.1.4" */
  version: string | null;
  /** why not, and what to do, when unavailable */
  reason: string | null;
  initialized: boolean;
}

export interface NcclInfo {
  available: boolean;
  /** NCCL's version code (2.18.5: 21805) when one was read */
  version: number | null;
  path: string | null;
  reason: string | null;
}

export interface DistNative {
  mpiInfo(): MpiInfo;
  mpiInit(): { rank: number; size: number; localRank: number; localSize: number };
  mpiAllreduceSum(values: Float64Array): void;
  mpiBcast(bytes: Uint8Array, root: number): void;
  mpiBarrier(): void;
  mpiAbort(code: number): void;
  mpiFinalize(): void;
  distAttach(model: unknown, o: { zero: boolean }): void;
  distGatherOptimizer(model: unknown): void;
  distShardOptimizer(model: unknown): void;
  distStats(model: unknown): { commMs: number; optimizerBytes: number; sharded: boolean };
  ncclInfo(): NcclInfo;
}

/** The exports, or null for an addon built before they existed. */
export function distNative(): DistNative {
  const a = loadAddon<DistNative>();
  if (typeof a.mpiInfo !== 'function') throw new Error('gpt-engine: this native addon has no data-parallel exports; rebuild it (npm run build:native)');
  return a;
}

/** A synchronous native call with its error converted to the engine's classes. */
export function distCall<T>(fn: (n: DistNative) => T): T {
  const n = distNative();
  return callNativeSync(() => fn(n));
}

/** "2.18.5" from NCCL's version code. */
export function ncclVersionString(code: number): string {
  const major = code >= 10000 ? Math.floor(code / 10000) : Math.floor(code / 1000);
  const rest = code >= 10000 ? code % 10000 : code % 1000;
  return `${major}.${Math.floor(rest / 100)}.${rest % 100}`;
}
