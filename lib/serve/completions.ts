/**
 * POST /v1/completions on the model's public API: a checked request becomes
 * one generate() call (or one stream() for `stream: true`) with the prompt
 * repeated n times, so the n choices decode as one batch with the sampling
 * streams (seed, 0..n-1). Concurrent requests are concurrent calls on the
 * model: the decoder batches them. The request's AbortSignal stops its
 * generation when the client goes away or the server shuts down.
 */
import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import {
  FinishReason,
  GENERATE_OPTION_KEYS,
  GenerateOptions,
  GenerationChunk,
  GenerationResult,
  Prompt,
  TokenCodec,
  TokenTextAssembler,
} from '../generate';
import { ApiError, badField, toApiError } from './errors';
import { sendJson, startEvents, writeEvent } from './http';
import { ServerMetrics } from './metrics';
import { CompletionRequest } from './request';

/** What the server uses of a model (GPT satisfies it). */
export interface ServableModel {
  readonly config: { readonly n_positions: number; readonly vocab_size: number };
  generate(prompts: Prompt[], options?: GenerateOptions): Promise<GenerationResult[]>;
  stream(prompts: Prompt[], options?: GenerateOptions): AsyncGenerator<GenerationChunk, void, undefined>;
  textCodec(): TokenCodec;
  /**
   * What the model's continuous batch holds now (GPT.batchStats()); when
   * present, /metrics reports the model's real batch and queue.
   */
  batchStats?(): { batchSize: number; queued: number; steps: number; stepRows: number; slots: number; cacheBytes: number };
}

/** max_tokens when a request does not say (OpenAI's default for completions). */
export const DEFAULT_COMPLETION_TOKENS = 16;

/** Whether this build's generate() takes contextOverflow ('slide' | 'stop'). */
const LIB_HAS_OVERFLOW = (GENERATE_OPTION_KEYS as readonly string[]).includes('contextOverflow');

export interface PreparedCompletion {
  req: CompletionRequest;
  ids: Int32Array;
  maxTokens: number;
  options: GenerateOptions;
}

function contextError(param: string, message: string): ApiError {
  return new ApiError(400, message, 'invalid_request_error', param, 'context_length_exceeded');
}

/**
 * Encodes the prompt and settles the generation options. A prompt that does
 * not fit the context is a 400 unless the engine slides its window
 * (context_overflow "slide", where the library supports it).
 */
export function prepareCompletion(req: CompletionRequest, model: ServableModel, codec: TokenCodec): PreparedCompletion {
  const { n_positions: ctx, vocab_size: vocab } = model.config;
  let ids: Int32Array;
  if (typeof req.prompt === 'string') {
    ids = Int32Array.from(codec.encode(req.prompt) as ArrayLike<number>);
    if (ids.length === 0) {
      if (codec.eosToken === undefined) throw badField(req.promptField, 'a non-empty prompt (this tokenizer has no start token)', req.prompt);
      ids = Int32Array.of(codec.eosToken);
    }
  } else {
    req.prompt.forEach((t, i) => {
      if (t >= vocab) throw badField(`${req.promptField}[${i}]`, `a token id in [0, ${vocab})`, t);
    });
    ids = Int32Array.from(req.prompt);
  }
  const slide = LIB_HAS_OVERFLOW && req.contextOverflow !== 'stop';
  let maxTokens = req.maxTokens ?? DEFAULT_COMPLETION_TOKENS;
  if (!slide) {
    if (ids.length >= ctx)
      throw contextError(
        req.promptField,
        `Expected a prompt shorter than the model's context of ${ctx} tokens but received one of ${ids.length} tokens`,
      );
    const room = ctx - ids.length;
    if (req.maxTokens === undefined) maxTokens = Math.min(maxTokens, room);
    else if (maxTokens > room)
      throw contextError(
        'max_tokens',
        `Expected max_tokens of at most ${room} (context ${ctx} - ${ids.length} prompt tokens) but received ${maxTokens}: prompt and completion must fit the context`,
      );
  }
  const options: GenerateOptions & Record<string, unknown> = { maxTokens };
  if (req.temperature !== undefined) options.temperature = req.temperature;
  if (req.topP !== undefined) options.topP = req.topP;
  if (req.topK !== undefined) options.topK = req.topK;
  if (req.seed !== undefined) options.seed = req.seed;
  if (req.stop) options.stop = req.stop;
  if (req.ignoreEos) options.ignoreEos = true;
  if (LIB_HAS_OVERFLOW && req.contextOverflow !== undefined) options.contextOverflow = req.contextOverflow;
  return { req, ids, maxTokens, options };
}

export type OpenAIFinish = 'stop' | 'length';

/**
 * The library's reasons as OpenAI's: end-of-text and stop strings are both
 * 'stop'; a limit (max_tokens, or the context where the library stops there)
 * is 'length'.
 */
export function openaiFinish(r: FinishReason): OpenAIFinish {
  return r === 'stop' || r === 'eos' ? 'stop' : 'length';
}

/**
 * A streamed choice's finish reason from its tokens: end-of-text or fewer
 * tokens than asked means it stopped; all tokens used means 'length' unless
 * the last one completed a stop string.
 */
export function streamedFinish(tokens: number[], p: PreparedCompletion, codec: TokenCodec): OpenAIFinish {
  if (!p.req.ignoreEos && codec.eosToken !== undefined && tokens[tokens.length - 1] === codec.eosToken) return 'stop';
  if (tokens.length < p.maxTokens) return 'stop';
  if (!p.req.stop) return 'length';
  const a = new TokenTextAssembler(codec);
  let text = '';
  for (const t of tokens) text += a.push(t);
  text += a.flush();
  return p.req.stop.some((s) => text.includes(s)) ? 'stop' : 'length';
}

export interface CompletionContext {
  model: ServableModel;
  codec: TokenCodec;
  name: string;
  metrics: ServerMetrics;
  /** when the request arrived (performance.now()) */
  t0: number;
  signal: AbortSignal;
}

function envelope(id: string, created: number, name: string) {
  return { id, object: 'text_completion' as const, created, model: name };
}

function usage(promptTokens: number, completionTokens: number) {
  return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
}

/** Runs a non-streamed completion and answers it. */
export async function completeJson(p: PreparedCompletion, c: CompletionContext, res: ServerResponse): Promise<void> {
  const prompts = Array.from({ length: p.req.n }, () => p.ids);
  const results = await c.model.generate(prompts, { ...p.options, signal: c.signal });
  const generated = results.reduce((a, r) => a + r.tokens.length, 0);
  // The stats time the call from when its generation began: its first token came totalMs - timeToFirstTokenMs ago.
  const { totalMs, timeToFirstTokenMs } = results[0].stats;
  if (generated > 0) c.metrics.ttft.observe((performance.now() - (totalMs - timeToFirstTokenMs) - c.t0) / 1000);
  c.metrics.promptTokens.add(p.ids.length);
  c.metrics.completionTokens.add(generated);
  sendJson(res, 200, {
    ...envelope(`cmpl-${randomUUID().replace(/-/g, '')}`, Math.floor(Date.now() / 1000), c.name),
    choices: results.map((r, i) => ({ text: r.text, index: i, logprobs: null, finish_reason: openaiFinish(r.finishReason) })),
    usage: usage(p.ids.length, generated),
  });
}

/**
 * Runs a streamed completion as server-sent events: one event per piece of
 * text, then one per choice with its finish_reason, the usage when asked
 * (stream_options.include_usage), and `data: [DONE]`. Nothing is sent before
 * the first token, so an error before it is still an ordinary error answer.
 */
export async function completeStream(p: PreparedCompletion, c: CompletionContext, res: ServerResponse): Promise<void> {
  const head = envelope(`cmpl-${randomUUID().replace(/-/g, '')}`, Math.floor(Date.now() / 1000), c.name);
  const prompts = Array.from({ length: p.req.n }, () => p.ids);
  const tokens: number[][] = prompts.map(() => []);
  const finish: (OpenAIFinish | null)[] = prompts.map(() => null);
  let started = false;
  let counted = 0;
  try {
    for await (const chunk of c.model.stream(prompts, { ...p.options, signal: c.signal })) {
      if (chunk.tokens.length > 0 && !started) c.metrics.ttft.observe((performance.now() - c.t0) / 1000);
      if (!started) {
        startEvents(res);
        started = true;
      }
      tokens[chunk.index].push(...chunk.tokens);
      counted += chunk.tokens.length;
      // A decoder that reports the finish on its last chunk is taken at its word.
      const reported = (chunk as GenerationChunk & { finishReason?: FinishReason }).finishReason;
      if (reported) finish[chunk.index] = openaiFinish(reported);
      if (chunk.text) await writeEvent(res, { ...head, choices: [{ text: chunk.text, index: chunk.index, logprobs: null, finish_reason: null }] });
    }
  } catch (e) {
    c.metrics.completionTokens.add(counted);
    if (!started) throw e;
    // Headers are sent: the error travels as an event, as OpenAI's API does,
    // and the caller still learns why the request ended.
    await writeEvent(res, toApiError(e).body());
    res.end();
    throw e;
  }
  c.metrics.promptTokens.add(p.ids.length);
  c.metrics.completionTokens.add(counted);
  if (!started) startEvents(res);
  for (let i = 0; i < prompts.length; i++)
    await writeEvent(res, {
      ...head,
      choices: [{ text: '', index: i, logprobs: null, finish_reason: finish[i] ?? streamedFinish(tokens[i], p, c.codec) }],
    });
  if (p.req.includeUsage) await writeEvent(res, { ...head, choices: [], usage: usage(p.ids.length, counted) });
  await writeEvent(res, '[DONE]');
  res.end();
}
