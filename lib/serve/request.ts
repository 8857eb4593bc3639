/**
 * The body of POST /v1/completions, checked field by field with OpenAI's
 * names: every error is a 400 that names the field, the value and what was
 * expected. A field OpenAI defines but this server does not implement is
 * refused when its value asks for something (logprobs, echo, suffix,
 * penalties, logit_bias, best_of), never silently ignored; a field nobody
 * defines is refused as unrecognized. `null` counts as absent, as in
 * OpenAI's API.
 */
import { ApiError, badField, unsupportedField } from './errors';

export type ContextOverflow = 'slide' | 'stop';

/** A completion request as the server runs it. */
export interface CompletionRequest {
  model?: string;
  /** one prompt: text, or token ids */
  prompt: string | number[];
  /** where the prompt was in the body ('prompt' or 'prompt[0]'), for error messages */
  promptField: string;
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  stop?: string[];
  seed?: number;
  n: number;
  stream: boolean;
  includeUsage: boolean;
  ignoreEos: boolean;
  contextOverflow?: ContextOverflow;
}

/** Fields read by parseCompletion: OpenAI's, then this server's extensions (top_k, ignore_eos, context_overflow). */
export const COMPLETION_FIELDS: readonly string[] = [
  'model',
  'prompt',
  'max_tokens',
  'temperature',
  'top_p',
  'n',
  'stream',
  'stream_options',
  'stop',
  'seed',
  'logprobs',
  'echo',
  'suffix',
  'best_of',
  'presence_penalty',
  'frequency_penalty',
  'logit_bias',
  'user',
  'top_k',
  'ignore_eos',
  'context_overflow',
];

/** At most this many stop strings, as in OpenAI's API. */
export const MAX_STOP_STRINGS = 4;

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v);

function int(body: Record<string, unknown>, field: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const v = body[field];
  if (v === undefined || v === null) return undefined;
  if (!isInt(v) || v < min || v > max)
    throw badField(field, max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer between ${min} and ${max}`, v);
  return v;
}

function num(body: Record<string, unknown>, field: string, what: string, ok: (x: number) => boolean): number | undefined {
  const v = body[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) throw badField(field, what, v);
  return v;
}

function bool(body: Record<string, unknown>, field: string): boolean | undefined {
  const v = body[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw badField(field, 'true or false', v);
  return v;
}

function prompt(v: unknown): { prompt: string | number[]; field: string } {
  if (v === undefined || v === null) throw badField('prompt', 'a string or an array of token ids', v, 'missing_required_parameter');
  if (typeof v === 'string') return { prompt: v, field: 'prompt' };
  if (!Array.isArray(v)) throw badField('prompt', 'a string or an array of token ids', v);
  if (v.length === 0) throw badField('prompt', 'a non-empty string or array of token ids', v);
  if (v.every((x) => typeof x === 'number')) return { prompt: tokenIds(v, 'prompt'), field: 'prompt' };
  // An array of prompts: this server takes one per request (n gives several completions).
  if (v.length > 1)
    throw new ApiError(
      400,
      `Expected one prompt for prompt but received an array of ${v.length} prompts: send one request per prompt (concurrent requests are decoded together)`,
      'invalid_request_error',
      'prompt',
      'invalid_value',
    );
  const only = v[0];
  if (typeof only === 'string') return { prompt: only, field: 'prompt[0]' };
  if (Array.isArray(only) && only.length > 0 && only.every((x) => typeof x === 'number')) return { prompt: tokenIds(only, 'prompt[0]'), field: 'prompt[0]' };
  throw badField('prompt[0]', 'a string or a non-empty array of token ids', only);
}

function tokenIds(a: number[], field: string): number[] {
  for (let i = 0; i < a.length; i++)
    if (!isInt(a[i]) || a[i] < 0) throw badField(`${field}[${i}]`, 'a token id (an integer >= 0)', a[i]);
  return a;
}

function stops(v: unknown): string[] | undefined {
  if (v === undefined || v === null) return undefined;
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list)) throw badField('stop', 'a string or an array of strings', v);
  if (list.length > MAX_STOP_STRINGS) throw badField('stop', `at most ${MAX_STOP_STRINGS} stop strings`, v);
  list.forEach((s, i) => {
    const field = typeof v === 'string' ? 'stop' : `stop[${i}]`;
    if (typeof s !== 'string' || s.length === 0) throw badField(field, 'a non-empty string', s);
  });
  return list.length ? (list as string[]) : undefined;
}

/** Refuses OpenAI fields this server does not implement, unless their value asks for nothing. */
function refuseUnsupported(body: Record<string, unknown>, n: number): void {
  const given = (f: string) => body[f] !== undefined && body[f] !== null;
  if (given('logprobs')) throw unsupportedField('logprobs', body.logprobs, 'leave it out or send null');
  if (given('suffix')) throw unsupportedField('suffix', body.suffix, 'leave it out or send null');
  if (given('echo') && body.echo !== false) throw unsupportedField('echo', body.echo, 'only false is accepted');
  for (const f of ['presence_penalty', 'frequency_penalty'])
    if (given(f) && body[f] !== 0) throw unsupportedField(f, body[f], 'only 0 is accepted');
  if (given('logit_bias')) {
    const b = body.logit_bias;
    if (typeof b !== 'object' || Array.isArray(b) || Object.keys(b as object).length > 0)
      throw unsupportedField('logit_bias', b, 'only an empty object is accepted');
  }
  if (given('best_of') && body.best_of !== n) throw unsupportedField('best_of', body.best_of, `only best_of equal to n (${n}) is accepted`);
}

/** Checks a parsed JSON body; `maxN` is the most choices one request may ask for. */
export function parseCompletion(body: unknown, maxN: number): CompletionRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw new ApiError(400, `Expected a JSON object as the request body but received ${Array.isArray(body) ? 'an array' : typeof body === 'object' ? 'null' : typeof body}`);
  const b = body as Record<string, unknown>;
  for (const k of Object.keys(b))
    if (!COMPLETION_FIELDS.includes(k))
      throw new ApiError(400, `Unrecognized request argument supplied: ${k}`, 'invalid_request_error', k, 'unknown_parameter');
  if (b.model !== undefined && b.model !== null && (typeof b.model !== 'string' || b.model.length === 0))
    throw badField('model', 'a model id (a non-empty string)', b.model);
  const p = prompt(b.prompt);
  const n = int(b, 'n', 1, maxN) ?? 1;
  refuseUnsupported(b, n);
  if (b.user !== undefined && b.user !== null && typeof b.user !== 'string') throw badField('user', 'a string', b.user);
  const stream = bool(b, 'stream') ?? false;
  let includeUsage = false;
  const so = b.stream_options;
  if (so !== undefined && so !== null) {
    if (typeof so !== 'object' || Array.isArray(so)) throw badField('stream_options', 'an object', so);
    for (const k of Object.keys(so))
      if (k !== 'include_usage') throw new ApiError(400, `Unrecognized request argument supplied: stream_options.${k}`, 'invalid_request_error', `stream_options.${k}`, 'unknown_parameter');
    includeUsage = bool(so as Record<string, unknown>, 'include_usage') ?? false;
    if (!stream) throw badField('stream_options', 'nothing unless stream is true', so);
  }
  let contextOverflow: ContextOverflow | undefined;
  if (b.context_overflow !== undefined && b.context_overflow !== null) {
    if (b.context_overflow !== 'slide' && b.context_overflow !== 'stop') throw badField('context_overflow', '"slide" or "stop"', b.context_overflow);
    contextOverflow = b.context_overflow;
  }
  return {
    model: typeof b.model === 'string' ? b.model : undefined,
    prompt: p.prompt,
    promptField: p.field,
    maxTokens: int(b, 'max_tokens', 1),
    temperature: num(b, 'temperature', 'a number between 0 and 2', (x) => x >= 0 && x <= 2),
    topP: num(b, 'top_p', 'a number > 0 and <= 1', (x) => x > 0 && x <= 1),
    topK: int(b, 'top_k', 0),
    stop: stops(b.stop),
    seed: int(b, 'seed', 0),
    n,
    stream,
    includeUsage,
    ignoreEos: bool(b, 'ignore_eos') ?? false,
    contextOverflow,
  };
}
