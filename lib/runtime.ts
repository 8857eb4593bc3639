/**
 * Process-wide settings: the thread pool and the CPU instruction-set path.
 */
import { callNativeSync } from './errors';
import { loadAddon } from './native';
import { expectInteger, expectOneOf } from './validate';

export type IsaName = 'avx512' | 'avx2' | 'portable';
export const ISA_NAMES: readonly IsaName[] = ['avx512', 'avx2', 'portable'];

/** Threads in the engine's pool (docs/ARCHITECTURE.md "Threads"). */
export function getThreads(): number {
  return loadAddon().getThreads();
}

/** Resizes the engine's pool; results stay bitwise identical for any size. */
export function setThreads(n: number): void {
  expectInteger('threads', n, { min: 1, max: 1024 });
  callNativeSync(() => loadAddon().setThreads(n));
}

/** The CPU instruction-set path in use. */
export function getIsa(): IsaName {
  return loadAddon().getIsa() as IsaName;
}

/** Paths this CPU can run, best first. */
export function supportedIsas(): IsaName[] {
  return loadAddon().supportedIsas() as IsaName[];
}

/** Switches the CPU path (GPT_ENGINE_ISA does the same at start-up). */
export function setIsa(isa: IsaName): void {
  expectOneOf('isa', isa, ISA_NAMES);
  if (!supportedIsas().includes(isa))
    throw new RangeError(
      `Expected an instruction set this CPU supports (${supportedIsas().join(', ')}) for isa but received "${isa}"`,
    );
  callNativeSync(() => loadAddon().setIsa(isa));
}

/**
 * Checks GPT_ENGINE_ISA and GPT_ENGINE_THREADS and returns a warning for a
 * value the addon will ignore (it never throws at load), or undefined.
 */
export function environmentWarnings(): string[] {
  const out: string[] = [];
  const isa = process.env.GPT_ENGINE_ISA;
  if (isa) {
    if (!(ISA_NAMES as readonly string[]).includes(isa))
      out.push(`GPT_ENGINE_ISA="${isa}" is not one of ${ISA_NAMES.join(', ')}; using ${getIsa()}`);
    else if (!supportedIsas().includes(isa as IsaName))
      out.push(`GPT_ENGINE_ISA="${isa}" is not supported by this CPU; using ${getIsa()}`);
  }
  const th = process.env.GPT_ENGINE_THREADS;
  if (th !== undefined && th !== '' && !/^[1-9][0-9]*$/.test(th))
    out.push(`GPT_ENGINE_THREADS="${th}" is not a positive integer; using ${getThreads()} threads`);
  return out;
}
