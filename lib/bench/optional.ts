/**
 * Loads a library module by name at run time, so that a section whose API
 * is not in this build says "not available in this build" instead of
 * failing to compile or crashing. The path is computed, so TypeScript does
 * not resolve it; it works from lib/ (ts-jest) and dist/lib/ (compiled).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export type Loaded<T> = { ok: true; api: T } | { ok: false; reason: string };

/** Requires lib/<name> (sibling of lib/bench) if it exists; `pick` checks and extracts the API. */
export function loadOptional<T>(name: string, pick: (mod: Record<string, unknown>) => T | string): Loaded<T> {
  const base = path.join(__dirname, '..', name);
  const exists = ['.js', '.ts'].some((ext) => fs.existsSync(base + ext));
  if (!exists) return { ok: false, reason: `not available in this build (lib/${name} is missing)` };
  let mod: Record<string, unknown>;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    mod = require(base) as Record<string, unknown>;
  } catch (e) {
    return { ok: false, reason: `not available in this build (lib/${name} did not load: ${String((e as Error).message).split('\n')[0]})` };
  }
  const r = pick(mod);
  if (typeof r === 'string') return { ok: false, reason: `not available in this build (${r})` };
  return { ok: true, api: r };
}

export function isFn(x: unknown): x is (...a: unknown[]) => unknown {
  return typeof x === 'function';
}
