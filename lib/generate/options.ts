/**
 * Generation options, validated against the prompt lengths and the model's
 * context before any native work (errors name the field, the value and what
 * was expected).
 */
import { ArgumentRangeError } from '../errors';
import { checkKnownKeys, expectBoolean, expectInteger, expectNumber, expectOneOf, rangeError, typeError } from '../validate';
import { ContextOverflow, CONTEXT_OVERFLOW_CHOICES, GENERATE_OPTION_KEYS, SamplingOptions } from './types';

export interface ResolvedOptions extends SamplingOptions {
  maxTokens: number;
  seed: number;
  stop: string[];
  signal?: AbortSignal;
  returnPartial: boolean;
  ignoreEos: boolean;
  contextOverflow: ContextOverflow;
}

export const DEFAULT_MAX_TOKENS = 100;
/**
 * The most tokens one call may ask for. With contextOverflow 'slide' the
 * context no longer bounds a generation, so this does: a million tokens is
 * hours of decoding on any device, and a larger request is a mistake.
 */
export const MAX_GENERATE_TOKENS = 1_000_000;

function isAbortSignal(v: unknown): v is AbortSignal {
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof (v as AbortSignal).aborted === 'boolean' &&
    typeof (v as AbortSignal).addEventListener === 'function'
  );
}

/**
 * Validates options against the prompt lengths and the context. Throws before
 * any native work. `longestPrompt` is the longest prompt in tokens.
 */
export function resolveOptions(input: unknown, longestPrompt: number, nPositions: number): ResolvedOptions {
  const o = input === undefined ? {} : input;
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw typeError('an options object', 'options', o);
  const opts = o as Record<string, unknown>;
  checkKnownKeys('generate options', opts, GENERATE_OPTION_KEYS);
  const def = <T>(k: string, f: (v: unknown) => T, d: T): T => (opts[k] === undefined ? d : f(opts[k]));

  const temperature = def('temperature', (v) => expectNumber('temperature', v, { min: 0 }), 1);
  const topK = def('topK', (v) => expectInteger('topK', v, { min: 0 }), 0);
  const topP = def('topP', (v) => expectNumber('topP', v, { gt: 0, max: 1 }), 1);
  const seed = def(
    'seed',
    (v) => {
      const n = expectInteger('seed', v, { min: 0 });
      if (!Number.isSafeInteger(n)) throw rangeError('a non-negative safe integer', 'seed', v);
      return n;
    },
    Math.floor(Math.random() * 2 ** 32),
  );
  let stop: string[] = [];
  if (opts.stop !== undefined) {
    const raw = opts.stop;
    const list = typeof raw === 'string' ? [raw] : raw;
    if (!Array.isArray(list)) throw typeError('a string or an array of strings', 'stop', raw);
    stop = list.map((s, i) => {
      const field = typeof raw === 'string' ? 'stop' : `stop[${i}]`;
      if (typeof s !== 'string') throw typeError('a string', field, s);
      if (s.length === 0) throw rangeError('a non-empty string', field, s);
      return s;
    });
  }
  let signal: AbortSignal | undefined;
  if (opts.signal !== undefined) {
    if (!isAbortSignal(opts.signal)) throw typeError('an AbortSignal', 'signal', opts.signal);
    signal = opts.signal;
  }
  const returnPartial = def('returnPartial', (v) => expectBoolean('returnPartial', v), false);
  const ignoreEos = def('ignoreEos', (v) => expectBoolean('ignoreEos', v), false);

  const contextOverflow = def(
    'contextOverflow',
    (v) => expectOneOf('contextOverflow', v, CONTEXT_OVERFLOW_CHOICES),
    'slide' as ContextOverflow,
  );
  // 'slide' conditions on the most recent tokens, so any prompt and any
  // maxTokens work (a prompt longer than the context is cropped to its last
  // n_positions tokens). 'stop' keeps the whole prompt in view: a longer one
  // is an error, and generation ends at the context (finishReason 'context').
  if (contextOverflow === 'stop' && longestPrompt > nPositions)
    throw new ArgumentRangeError(
      `Expected a prompt of at most n_positions = ${nPositions} tokens but received one of ${longestPrompt} tokens: it is longer than the model's context (with contextOverflow 'slide' the prompt's last ${nPositions} tokens are used)`,
    );
  const maxTokens = def('maxTokens', (v) => expectInteger('maxTokens', v, { min: 1, max: MAX_GENERATE_TOKENS }), DEFAULT_MAX_TOKENS);
  return { maxTokens, temperature, topK, topP, seed, stop, signal, returnPartial, ignoreEos, contextOverflow };
}

/**
 * How much of the recent text a sequence keeps when its cache is full and
 * it slides: half the context (at least one token).
 */
export function slideKeep(nPositions: number): number {
  return Math.max(1, Math.floor(nPositions / 2));
}
