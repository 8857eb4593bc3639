/**
 * Input validation with one message shape:
 *   "Expected <what> for <field> but received <value>"
 * TypeError (ArgumentTypeError) for a wrong type, RangeError
 * (ArgumentRangeError) for a bad value. All validation of user input happens
 * in lib/, before any native call, so native code can trust its inputs.
 */
import { ArgumentRangeError, ArgumentTypeError } from './errors';

/** How a received value is shown in messages: `1.5 (number)`, `"abc" (string)`. */
export function describe(value: unknown): string {
  if (value === undefined) return 'undefined';
  if (value === null) return 'null';
  if (typeof value === 'string') {
    const s = value.length > 60 ? `${value.slice(0, 57)}...` : value;
    return `${JSON.stringify(s)} (string)`;
  }
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint')
    return `${String(value)} (${typeof value})`;
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  if (ArrayBuffer.isView(value)) {
    const name = value.constructor?.name ?? 'typed array';
    const len = (value as unknown as { length?: number }).length;
    return len === undefined ? `a ${name}` : `a ${name} of length ${len}`;
  }
  if (typeof value === 'function') return 'a function';
  return `an object (${Object.prototype.toString.call(value).slice(8, -1)})`;
}

export function typeError(what: string, field: string, value: unknown): ArgumentTypeError {
  return new ArgumentTypeError(`Expected ${what} for ${field} but received ${describe(value)}`);
}

export function rangeError(what: string, field: string, value: unknown): ArgumentRangeError {
  return new ArgumentRangeError(`Expected ${what} for ${field} but received ${describe(value)}`);
}

export interface IntOptions {
  min?: number;
  max?: number;
}

function boundsText(min?: number, max?: number): string {
  if (min !== undefined && max !== undefined) return ` between ${min} and ${max}`;
  if (min !== undefined) return min === 1 ? '' : ` >= ${min}`;
  if (max !== undefined) return ` <= ${max}`;
  return '';
}

/** An integer (a JS number with no fraction), optionally within [min, max]. */
export function expectInteger(field: string, value: unknown, opts: IntOptions = {}): number {
  const { min, max } = opts;
  const kind = min === 1 ? 'a positive integer' : min === 0 ? 'a non-negative integer' : 'an integer';
  // Name the bound that was crossed; a plain "positive integer" for the common case.
  const general = min === 1 || min === 0 ? kind : `${kind}${boundsText(min, max)}`;
  if (typeof value !== 'number') throw typeError(general, field, value);
  if (!Number.isInteger(value)) throw rangeError(general, field, value);
  if (min !== undefined && value < min) throw rangeError(min === 1 || min === 0 ? kind : `${kind}${boundsText(min, max)}`, field, value);
  if (max !== undefined && value > max) throw rangeError(`${kind}${min === 1 || min === 0 ? ` <= ${max}` : boundsText(min, max)}`, field, value);
  return value;
}

export function expectPositiveInteger(field: string, value: unknown, max?: number): number {
  return expectInteger(field, value, { min: 1, max });
}

export interface NumberOptions {
  min?: number;
  max?: number;
  /** exclusive lower bound */
  gt?: number;
}

/** A finite number within the bounds. */
export function expectNumber(field: string, value: unknown, opts: NumberOptions = {}): number {
  const parts: string[] = [];
  if (opts.gt !== undefined) parts.push(`> ${opts.gt}`);
  if (opts.min !== undefined) parts.push(`>= ${opts.min}`);
  if (opts.max !== undefined) parts.push(`<= ${opts.max}`);
  const what = `a finite number${parts.length ? ' ' + parts.join(' and ') : ''}`;
  if (typeof value !== 'number') throw typeError(what, field, value);
  if (!Number.isFinite(value)) throw rangeError(what, field, value);
  if (opts.gt !== undefined && !(value > opts.gt)) throw rangeError(what, field, value);
  if (opts.min !== undefined && value < opts.min) throw rangeError(what, field, value);
  if (opts.max !== undefined && value > opts.max) throw rangeError(what, field, value);
  return value;
}

export function expectBoolean(field: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw typeError('a boolean', field, value);
  return value;
}

export function expectString(field: string, value: unknown, opts: { nonEmpty?: boolean } = {}): string {
  if (typeof value !== 'string') throw typeError('a string', field, value);
  if (opts.nonEmpty && value.length === 0) throw rangeError('a non-empty string', field, value);
  return value;
}

export function expectOneOf<T extends string>(field: string, value: unknown, choices: readonly T[]): T {
  const what = `one of ${choices.map((c) => JSON.stringify(c)).join(', ')}`;
  if (typeof value !== 'string') throw typeError(what, field, value);
  if (!(choices as readonly string[]).includes(value)) {
    const hint = didYouMean(value, choices);
    throw new ArgumentRangeError(`Expected ${what} for ${field} but received ${describe(value)}${hint}`);
  }
  return value as T;
}

export function expectObject(field: string, value: unknown): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || ArrayBuffer.isView(value))
    throw typeError('an object', field, value);
  return value as Record<string, unknown>;
}

export function expectFloat32Array(field: string, value: unknown, length?: number): Float32Array {
  if (!(value instanceof Float32Array)) throw typeError('a Float32Array', field, value);
  if (length !== undefined && value.length !== length)
    throw rangeError(`a Float32Array of length ${length}`, field, value);
  return value;
}

export function expectInt32Array(field: string, value: unknown, length?: number): Int32Array {
  if (!(value instanceof Int32Array)) throw typeError('an Int32Array', field, value);
  if (length !== undefined && value.length !== length) throw rangeError(`an Int32Array of length ${length}`, field, value);
  return value;
}

/** Edit distance with adjacent transpositions (a typo is one edit), for did-you-mean hints. */
export function editDistance(a: string, b: string): number {
  const m = a.length;
  const n = b.length;
  const d: number[][] = Array.from({ length: m + 1 }, (_, i) => Array.from({ length: n + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= m; i++) {
    for (let j = 1; j <= n; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[m][n];
}

/** " (did you mean "x"?)" when a choice is close to `value`, else "". */
export function didYouMean(value: string, choices: readonly string[]): string {
  let best: string | undefined;
  let bestD = Infinity;
  if (value.length > 64) return '';
  for (const c of choices) {
    // A length gap bigger than the accepted distance can't win; skip the O(n*m) table.
    if (Math.abs(c.length - value.length) > Math.max(2, Math.floor(c.length / 3))) continue;
    const d = editDistance(value.toLowerCase(), c.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  if (best !== undefined && bestD <= Math.max(2, Math.floor(best.length / 3))) return ` (did you mean "${best}"?)`;
  return '';
}

/**
 * Rejects keys of `obj` not in `allowed`:
 * 'Unknown key "n_layers" in config (did you mean "n_layer"?); expected one of: ...'
 */
export function checkKnownKeys(where: string, obj: Record<string, unknown>, allowed: readonly string[]): void {
  for (const key of Object.keys(obj)) {
    if (!allowed.includes(key)) {
      const hint = didYouMean(key, allowed);
      throw new ArgumentRangeError(
        `Unknown key ${JSON.stringify(key)} in ${where}${hint}; expected one of: ${allowed.join(', ')}`,
      );
    }
  }
}
