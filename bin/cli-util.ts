/**
 * Shared CLI helpers: output conventions (docs/ARCHITECTURE.md
 * "Conventions": --json writes exactly one JSON document to stdout; logs
 * and progress go to stderr) and the one place errors become exit codes.
 */
import { ArgumentRangeError, ArgumentTypeError, GptEngineError } from '../lib/errors';
import type { Command } from 'commander';

/** Writes one JSON document to stdout. */
export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

/** A log line on stderr. */
export function log(message: string): void {
  process.stderr.write(message + '\n');
}

/** Parses an integer flag; errors name the flag. */
export function intFlag(name: string, value: string | undefined, min = 1, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!/^-?\d+$/.test(String(value).trim()) || !Number.isSafeInteger(n) || n < min || n > max)
    throw new ArgumentRangeError(
      `Expected an integer${min === 1 && max === Number.MAX_SAFE_INTEGER ? ' >= 1' : ` between ${min} and ${max}`} for --${name} but received "${value}"`,
    );
  return n;
}

/** Parses a number flag; errors name the flag. */
export function numberFlag(name: string, value: string | undefined, opts: { min?: number; gt?: number; max?: number } = {}): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  const bounds = [opts.gt !== undefined ? `> ${opts.gt}` : '', opts.min !== undefined ? `>= ${opts.min}` : '', opts.max !== undefined ? `<= ${opts.max}` : '']
    .filter(Boolean)
    .join(' and ');
  const bad =
    String(value).trim() === '' ||
    !Number.isFinite(n) ||
    (opts.gt !== undefined && !(n > opts.gt)) ||
    (opts.min !== undefined && n < opts.min) ||
    (opts.max !== undefined && n > opts.max);
  if (bad) throw new ArgumentRangeError(`Expected a number${bounds ? ' ' + bounds : ''} for --${name} but received "${value}"`);
  return n;
}

/** Parses a flag that takes one of `choices`; errors name the flag and the choices. */
export function choiceFlag<T extends string>(name: string, value: string | undefined, choices: readonly T[]): T | undefined {
  if (value === undefined) return undefined;
  if (!(choices as readonly string[]).includes(value))
    throw new ArgumentRangeError(`Expected one of ${choices.join(', ')} for --${name} but received "${value}"`);
  return value as T;
}

/** Formats an integer with thousands separators: 125,187,840. */
export function commas(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/** Bytes as MiB/GiB text. */
export function bytesText(b: number): string {
  if (b >= 1024 ** 4) return `${(b / 1024 ** 4).toFixed(2)} TiB`;
  if (b >= 1024 ** 3) return `${(b / 1024 ** 3).toFixed(2)} GiB`;
  return `${(b / 1024 ** 2).toFixed(1)} MiB`;
}

/** A plain text table with right-aligned numeric columns. */
export function table(headers: string[], rows: (string | number)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const fmt = (r: string[], head = false) =>
    r.map((c, i) => (i === 0 || head ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ').trimEnd();
  return [fmt(cells[0], true), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map((r) => fmt(r))].join('\n');
}

/** Prints an error the user can act on and exits non-zero (never a stack for input errors). */
export function fail(e: unknown): never {
  if (e instanceof ArgumentRangeError || e instanceof ArgumentTypeError || e instanceof GptEngineError) {
    process.stderr.write(`gpt-engine: error: ${e.message}\n`);
    process.exit(e instanceof GptEngineError && e.code === 'ABORTED' ? 130 : 1);
  }
  const err = e as Error & { code?: unknown; syscall?: unknown };
  // Errors from the operating system (disk full, permission denied, a missing
  // file) are the user's to act on: their message, not a stack.
  if (typeof err?.code === 'string' && /^E[A-Z]+$/.test(err.code)) {
    process.stderr.write(`gpt-engine: error: ${err.message}\n`);
    process.exit(1);
  }
  process.stderr.write(`gpt-engine: unexpected error: ${err?.stack ?? String(e)}\n`);
  process.exit(1);
}

/** The --device, --precision and --threads options every command that runs a model takes. */
export function deviceOptions(cmd: Command): Command {
  return cmd
    .option('--device <d>', 'auto, cpu or cuda (default auto)')
    .option('--precision <p>', 'fp32 or bf16 (default: fp32 on the CPU, bf16 on CUDA)')
    .option('--threads <n>', 'CPU threads (default: all cores)');
}
