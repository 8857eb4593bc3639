/**
 * Generation options, validated against the prompt lengths and the model's
 * context before any native work (errors name the field, the value and what
 * was expected).
 */
import { ArgumentRangeError } from '../errors';
import { checkKnownKeys, describe, expectBoolean, expectInteger, expectNumber, rangeError, typeError } from '../validate';
import { GENERATE_OPTION_KEYS, SamplingOptions } from './types';

export interface ResolvedOptions extends SamplingOptions {
  maxTokens: number;
  seed: number;
  stop: string[];
  signal?: AbortSignal;
  returnPartial: boolean;
  ignoreEos: boolean;
}

export const DEFAULT_MAX_TOKENS = 100;

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

  if (longestPrompt > nPositions)
    throw new ArgumentRangeError(
      `Expected a prompt of at most n_positions = ${nPositions} tokens but received one of ${longestPrompt} tokens: it is longer than the model's context`,
    );
  const room = nPositions - longestPrompt;
  let maxTokens: number;
  if (opts.maxTokens === undefined) {
    maxTokens = Math.min(DEFAULT_MAX_TOKENS, room);
    if (maxTokens < 1)
      throw new ArgumentRangeError(
        `Expected a prompt shorter than n_positions = ${nPositions} tokens but received one of ${longestPrompt} tokens: no room is left to generate`,
      );
  } else {
    maxTokens = expectInteger('maxTokens', opts.maxTokens, { min: 1 });
    if (maxTokens > room)
      throw new ArgumentRangeError(
        `Expected maxTokens of at most ${room} (n_positions ${nPositions} - ${longestPrompt} prompt tokens) but received ${describe(maxTokens)}: prompt + generated tokens must fit the context`,
      );
  }
  return { maxTokens, temperature, topK, topP, seed, stop, signal, returnPartial, ignoreEos };
}
