/**
 * Text generation: option validation, sampling, the decode loop, UTF-8-safe
 * streaming, stop strings, cancellation and statistics. The math of a decode
 * step lives in native code (native/core/decode.*, reached through a
 * `Decoder`); everything a user can choose lives here, so it can be tested on
 * crafted logits without the addon.
 *
 * Sampling order: temperature, then top-k, then top-p (nucleus), then one
 * uniform draw from the prompt's own PCG32 stream (seed, i). `temperature: 0`
 * is argmax with the lowest id on ties and draws nothing. Because each prompt
 * of a batch has its own stream and its own cache rows, its output equals
 * generating it alone.
 */
import { TextDecoder, TextEncoder } from 'node:util';
import type { TokenizerName } from './config';
import { AbortedError, ArgumentRangeError, callNative, callNativeSync, GptEngineError, NonFiniteError } from './errors';
import { loadAddon } from './native';
import { Rng } from './rng';
import { END_OF_TEXT, getTokenizer, GPT2_EOT } from './tokenizer';
import {
  checkKnownKeys,
  describe,
  expectBoolean,
  expectInteger,
  expectNumber,
  rangeError,
  typeError,
} from './validate';

// ---------------------------------------------------------------------------
// Public types

export interface GenerateOptions {
  /** Tokens to generate per prompt (default 100, lowered to fit the context when not given). */
  maxTokens?: number;
  /** Softmax temperature; 0 = greedy (argmax, lowest id on ties). Default 1. */
  temperature?: number;
  /** Keep only the k most likely tokens; 0 = off (default). */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p; 1 = off (default). */
  topP?: number;
  /** Seed of the sampler; prompt i of a batch uses the stream (seed, i). Default: a random seed (reported in stats). */
  seed?: number;
  /** Generation ends when the text contains one of these; the stop string is not included. */
  stop?: string | string[];
  /** Stops generation within one token; the promise rejects with the signal's reason. */
  signal?: AbortSignal;
  /** With a signal: resolve with what was generated instead of rejecting. */
  returnPartial?: boolean;
  /** Keep generating after the end-of-text token (benchmarks); default false. */
  ignoreEos?: boolean;
}

export const GENERATE_OPTION_KEYS: readonly (keyof GenerateOptions)[] = [
  'maxTokens',
  'temperature',
  'topK',
  'topP',
  'seed',
  'stop',
  'signal',
  'returnPartial',
  'ignoreEos',
];

/** A prompt: text, or token ids. */
export type Prompt = string | Int32Array | Uint32Array;

export interface GenerationChunk {
  /** New text; ends on a character boundary. Chunks concatenate to the result's text. */
  text: string;
  /** Tokens sampled since the previous chunk of this prompt. */
  tokens: number[];
  /** Which prompt of a batch (0 for a single prompt). */
  index: number;
}

export type FinishReason = 'length' | 'stop' | 'eos' | 'aborted';

export interface GenerationStats {
  /** Tokens of this prompt. */
  promptTokens: number;
  /** Tokens sampled for this prompt. */
  generatedTokens: number;
  /** From the call to the first sampled token (ms). */
  timeToFirstTokenMs: number;
  /** The prompt pass over the whole batch (ms) and its rate (all prompts' tokens / prefillMs). */
  prefillMs: number;
  prefillTokensPerSecond: number;
  /** Token-by-token decoding after the first token (ms), and its rate over the whole batch. */
  decodeMs: number;
  decodeTokensPerSecond: number;
  /** All tokens generated in the batch over the whole call. */
  tokensPerSecond: number;
  totalMs: number;
  /** Bytes of the key/value cache of the whole batch. */
  cacheBytes: number;
  batchSize: number;
  /** The seed used (the given one, or the one drawn). */
  seed: number;
}

export interface GenerationResult {
  text: string;
  tokens: number[];
  finishReason: FinishReason;
  stats: GenerationStats;
}

// ---------------------------------------------------------------------------
// What generation needs from a model and a tokenizer

/** Encodes and decodes text (lib/tokenizer.ts satisfies it). */
export interface TokenCodec {
  encode(text: string): ArrayLike<number>;
  decode(tokens: ArrayLike<number>): string;
  /**
   * The bytes of one token. When present, text is assembled from bytes with
   * a streaming UTF-8 decoder and decode() is never called during
   * generation (gpt-tokenizer's decode keeps partial characters in a shared
   * decoder between calls, so it must never see a partial character).
   */
  tokenBytes?(token: number): Uint8Array;
  /** End-of-text token, used as the start token of an empty prompt and as a stop token. */
  eosToken?: number;
}

/** A KV cache for one batch of sequences (native/core/decode.h). */
export interface DecodeSession {
  /**
   * Runs every prompt through the model in one pass, filling the cache;
   * returns the logits of each prompt's last position: [B, vocab].
   */
  prefill(prompts: Int32Array[]): Promise<Float32Array>;
  /**
   * Feeds one token to each sequence with active[i] = 1; returns [B, vocab]
   * logits (rows of inactive sequences are unspecified).
   */
  step(tokens: Int32Array, active: Uint8Array): Promise<Float32Array>;
  /** Bytes held by the cache. */
  readonly cacheBytes: number;
  /** Frees the cache (idempotent). */
  close(): void;
}

export interface Decoder {
  readonly vocabSize: number;
  readonly nPositions: number;
  /**
   * Opens a session for prompts that will hold up to capacities[i] tokens.
   * `abort` is shared with native code: writing 1 into abort[0] makes the
   * running native call stop (at the next layer or token) with ABORTED.
   */
  open(capacities: number[], abort: Int32Array): Promise<DecodeSession> | DecodeSession;
}

// ---------------------------------------------------------------------------
// Options

export interface SamplingOptions {
  temperature: number;
  topK: number;
  topP: number;
}

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

// ---------------------------------------------------------------------------
// Sampling

/** Index of the largest finite value in row[0..n), lowest index on ties. */
export function argmax(row: ArrayLike<number>, n = row.length): number {
  let best = -1;
  let bestV = -Infinity;
  for (let i = 0; i < n; i++) {
    const v = row[i];
    if (v > bestV) {
      bestV = v;
      best = i;
    }
  }
  if (best < 0) {
    // Every value is -Infinity or NaN: fall back to the lowest -Infinity id, or fail on NaN.
    for (let i = 0; i < n; i++) if (row[i] === -Infinity) return i;
    throw new NonFiniteError('Every logit is NaN: the model produced non-finite values');
  }
  return best;
}

// A candidate order: higher logit first, lower id on ties.
function before(la: number, ia: number, lb: number, ib: number): boolean {
  return la > lb || (la === lb && ia < ib);
}

/**
 * The k best ids of row[0..n) in order (logit desc, id asc), via a size-k
 * min-heap: O(n log k), and most elements are rejected with one comparison.
 */
export function topKIndices(row: ArrayLike<number>, n: number, k: number): number[] {
  const heap: number[] = []; // ids; heap[0] is the worst kept
  const worse = (a: number, b: number) => before(row[b], b, row[a], a); // a ranks after b
  const siftDown = (i: number) => {
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < heap.length && worse(heap[l], heap[m])) m = l;
      if (r < heap.length && worse(heap[r], heap[m])) m = r;
      if (m === i) return;
      [heap[i], heap[m]] = [heap[m], heap[i]];
      i = m;
    }
  };
  for (let id = 0; id < n; id++) {
    const v = row[id];
    if (v !== v) continue; // NaN never ranks
    if (heap.length < k) {
      heap.push(id);
      let i = heap.length - 1;
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (!worse(heap[i], heap[p])) break;
        [heap[i], heap[p]] = [heap[p], heap[i]];
        i = p;
      }
    } else if (before(v, id, row[heap[0]], heap[0])) {
      heap[0] = id;
      siftDown(0);
    }
  }
  return heap.sort((a, b) => (before(row[a], a, row[b], b) ? -1 : 1));
}

/**
 * The distribution sampling draws from, after temperature, top-k and top-p:
 * candidate ids (most likely first for top-k/top-p; id order otherwise) and
 * their unnormalized weights. Exposed for tests.
 */
export function samplingDistribution(
  row: ArrayLike<number>,
  n: number,
  s: SamplingOptions,
): { ids: number[] | null; weights: Float64Array; total: number } {
  if (!(s.temperature > 0)) throw new RangeError('samplingDistribution needs temperature > 0 (0 is argmax)');
  const invT = 1 / s.temperature;
  const k = s.topK > 0 && s.topK < n ? s.topK : 0;
  let ids: number[] | null = k ? topKIndices(row, n, k) : null;
  let max = -Infinity;
  if (ids) max = row[ids[0]];
  else for (let i = 0; i < n; i++) if (row[i] > max) max = row[i];
  if (max === -Infinity || max !== max) {
    // Nothing finite to sample from: the model is broken, or every logit is masked.
    if (max === -Infinity) return { ids: [argmax(row, n)], weights: Float64Array.of(1), total: 1 };
    throw new NonFiniteError('Every logit is NaN: the model produced non-finite values');
  }
  if (max === Infinity) throw new NonFiniteError('A logit is +Infinity: the model produced non-finite values');
  const m = ids ? ids.length : n;
  let weights = new Float64Array(m);
  let total = 0;
  for (let j = 0; j < m; j++) {
    const id = ids ? ids[j] : j;
    const v = row[id];
    const w = v === v ? Math.exp((v - max) * invT) : 0;
    weights[j] = w;
    total += w;
  }
  if (s.topP < 1) {
    // The nucleus is a prefix of the candidates sorted by weight. Without
    // top-k, avoid sorting the whole vocabulary: the ids with weight >= t form
    // a prefix of that order, so once their mass reaches p the nucleus lies
    // inside them. Lower t until it does.
    let order: number[];
    if (ids) order = ids.map((_, j) => j);
    else {
      let t = 1e-3;
      for (;;) {
        const cand: number[] = [];
        let mass = 0;
        for (let j = 0; j < m; j++)
          if (weights[j] >= t) {
            cand.push(j);
            mass += weights[j];
          }
        if (mass >= s.topP * total || t === 0) {
          order = cand;
          break;
        }
        t = t < 1e-30 ? 0 : t * 1e-3;
      }
      order.sort((a, b) => weights[b] - weights[a] || a - b);
    }
    const keep: number[] = [];
    const kw: number[] = [];
    let mass = 0;
    const target = s.topP * total;
    for (const j of order) {
      keep.push(ids ? ids[j] : j);
      kw.push(weights[j]);
      mass += weights[j];
      if (mass >= target) break;
    }
    ids = keep;
    weights = Float64Array.from(kw);
    total = mass;
  }
  return { ids, weights, total };
}

/** Samples one token id from row[0..n) (temperature, top-k, top-p, one draw from rng). */
export function sampleToken(row: ArrayLike<number>, n: number, s: SamplingOptions, rng: Rng): number {
  if (s.temperature === 0) return argmax(row, n);
  const d = samplingDistribution(row, n, s);
  const u = rng.nextFloat() * d.total;
  let acc = 0;
  const m = d.weights.length;
  for (let j = 0; j < m; j++) {
    acc += d.weights[j];
    if (u < acc) return d.ids ? d.ids[j] : j;
  }
  // Rounding left u at the very top: take the last candidate with weight.
  for (let j = m - 1; j >= 0; j--) if (d.weights[j] > 0) return d.ids ? d.ids[j] : j;
  return d.ids ? d.ids[0] : 0;
}

// ---------------------------------------------------------------------------
// Text assembly: UTF-8-safe chunks and stop strings

function isHighSurrogate(c: number): boolean {
  return c >= 0xd800 && c <= 0xdbff;
}

/**
 * Turns a stream of token ids into text chunks that end on character
 * boundaries (byte-level vocabularies split UTF-8 characters over tokens).
 *
 * With codec.tokenBytes, bytes go through a streaming UTF-8 decoder, which
 * releases only complete characters. Without it, the pending tokens are
 * decoded together and their text is released only when it does not end in
 * U+FFFD (the mark of an incomplete character); since UTF-8 decoding
 * restarts cleanly after a complete character, the chunks concatenate to the
 * decoding of all tokens either way.
 */
export class TokenTextAssembler {
  private pending: number[] = [];
  private readonly utf8?: TextDecoder;
  constructor(private readonly codec: TokenCodec) {
    if (codec.tokenBytes) this.utf8 = new TextDecoder('utf-8');
  }

  /** Adds a token; returns the text that became final ('' when none). */
  push(token: number): string {
    if (this.utf8) return this.utf8.decode(this.codec.tokenBytes!(token), { stream: true });
    this.pending.push(token);
    const text = this.codec.decode(this.pending);
    if (text.length > 0 && text.charCodeAt(text.length - 1) === 0xfffd) return '';
    this.pending = [];
    return text;
  }

  /** At the end: whatever is left, replacement characters included. */
  flush(): string {
    if (this.utf8) return this.utf8.decode();
    if (this.pending.length === 0) return '';
    const text = this.codec.decode(this.pending);
    this.pending = [];
    return text;
  }
}

/**
 * Holds back text that might be the start of a stop string and finds the
 * first stop string in the text. Emitted text never contains the start of a
 * match, so any match begins inside the held text.
 */
export class StopMatcher {
  private held = '';
  constructor(private readonly stops: string[]) {}

  /**
   * Adds text. Returns what can be emitted, and whether a stop string was
   * found (the emitted text then ends just before it).
   */
  push(text: string): { emit: string; stopped: boolean } {
    let buf = this.held + text;
    if (this.stops.length === 0) {
      this.held = '';
      return { emit: buf, stopped: false };
    }
    let first = -1;
    for (const s of this.stops) {
      const i = buf.indexOf(s);
      if (i >= 0 && (first < 0 || i < first)) first = i;
    }
    if (first >= 0) {
      this.held = '';
      return { emit: buf.slice(0, first), stopped: true };
    }
    // Keep the longest suffix that is a proper prefix of a stop string.
    let keep = 0;
    for (const s of this.stops) {
      for (let len = Math.min(s.length - 1, buf.length); len > keep; len--) {
        if (buf.endsWith(s.slice(0, len))) {
          keep = len;
          break;
        }
      }
    }
    let cut = buf.length - keep;
    // Never split a surrogate pair.
    if (cut > 0 && cut < buf.length && isHighSurrogate(buf.charCodeAt(cut - 1))) cut--;
    this.held = buf.slice(cut);
    buf = buf.slice(0, cut);
    return { emit: buf, stopped: false };
  }

  /** At the end without a stop: the held text. */
  flush(): string {
    const h = this.held;
    this.held = '';
    return h;
  }
}

// ---------------------------------------------------------------------------
// The decode loop

/** Token ids of each prompt, checked against the vocabulary. */
export function encodePrompts(prompts: Prompt[], codec: TokenCodec, vocabSize: number): Int32Array[] {
  return prompts.map((p, i) => {
    const field = prompts.length > 1 ? `prompt[${i}]` : 'prompt';
    let ids: Int32Array;
    if (typeof p === 'string') {
      const enc = codec.encode(p);
      ids = Int32Array.from(enc as ArrayLike<number>);
      if (ids.length === 0) {
        if (codec.eosToken === undefined)
          throw rangeError('a non-empty prompt (this tokenizer has no start token)', field, p);
        ids = Int32Array.of(codec.eosToken);
      }
    } else if (p instanceof Int32Array || p instanceof Uint32Array) {
      if (p.length === 0) throw rangeError('at least one token', field, p);
      ids = Int32Array.from(p);
    } else {
      throw typeError('a string, an Int32Array or a Uint32Array of token ids', field, p);
    }
    for (let j = 0; j < ids.length; j++)
      if (!(ids[j] >= 0 && ids[j] < vocabSize))
        throw rangeError(`token ids in [0, ${vocabSize})`, `${field}[${j}]`, ids[j]);
    return ids;
  });
}

/** Normalizes the prompt argument to a list; `batch` says whether an array was given. */
export function promptList(prompt: unknown): { prompts: Prompt[]; batch: boolean } {
  if (Array.isArray(prompt)) {
    if (prompt.length === 0) throw rangeError('at least one prompt', 'prompt', prompt);
    return { prompts: prompt as Prompt[], batch: true };
  }
  return { prompts: [prompt as Prompt], batch: false };
}

interface SeqState {
  rng: Rng;
  tokens: number[];
  text: string;
  assembler: TokenTextAssembler;
  stopper: StopMatcher;
  done: boolean;
  finish: FinishReason;
  newTokens: number[];
  newText: string;
}

/** An abort reason as the error to throw. */
function abortReason(signal: AbortSignal): unknown {
  return signal.reason !== undefined ? signal.reason : new AbortedError('Generation was aborted');
}

function isNativeAbort(e: unknown): boolean {
  return e instanceof GptEngineError && e.code === 'ABORTED';
}

/**
 * The engine of generate() and stream(): yields chunks as tokens are sampled
 * (one chunk per prompt that produced text or tokens in a step) and returns
 * the results. Breaking out of the loop closes the session (the generator's
 * finally), so native work stops.
 */
export async function* runGeneration(
  decoder: Decoder,
  codec: TokenCodec,
  prompt: unknown,
  options?: GenerateOptions,
): AsyncGenerator<GenerationChunk, GenerationResult[], undefined> {
  const t0 = performance.now();
  const { prompts } = promptList(prompt);
  const encoded = encodePrompts(prompts, codec, decoder.vocabSize);
  const longest = Math.max(...encoded.map((p) => p.length));
  const o = resolveOptions(options, longest, decoder.nPositions);
  const { signal } = o;
  if (signal?.aborted) throw abortReason(signal);

  const B = encoded.length;
  const V = decoder.vocabSize;
  const eos = o.ignoreEos ? undefined : codec.eosToken;
  // The last sampled token is never fed back, so a sequence holds at most
  // prompt + maxTokens - 1 tokens.
  const capacities = encoded.map((p) => p.length + o.maxTokens - 1);
  const seqs: SeqState[] = encoded.map((_, i) => ({
    rng: new Rng(o.seed, i),
    tokens: [],
    text: '',
    assembler: new TokenTextAssembler(codec),
    stopper: new StopMatcher(o.stop),
    done: false,
    finish: 'length',
    newTokens: [],
    newText: '',
  }));

  // Read by native code on its worker thread. 128 bytes keeps V8 from
  // storing it inside the JS heap, where it could move.
  const abort = new Int32Array(32);
  const onAbort = () => {
    abort[0] = 1;
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  let session: DecodeSession | undefined;
  let aborted = false;
  let tFirst = 0;
  let prefillMs = 0;
  let tPrefill0 = 0;
  let cacheBytes = 0;
  try {
    try {
      session = await decoder.open(capacities, abort);
      cacheBytes = session.cacheBytes;
      if (signal?.aborted) throw abortReason(signal);
      tPrefill0 = performance.now();
      let logits = await session.prefill(encoded);
      prefillMs = performance.now() - tPrefill0;
      const next = new Int32Array(B);
      const active = new Uint8Array(B);
      for (let step = 0; ; step++) {
        // Sample one token for every live sequence.
        for (let i = 0; i < B; i++) {
          const s = seqs[i];
          active[i] = 0;
          if (s.done) continue;
          const row = logits.subarray(i * V, (i + 1) * V);
          const tok = sampleToken(row, V, o, s.rng);
          s.tokens.push(tok);
          s.newTokens.push(tok);
          next[i] = tok;
          if (eos !== undefined && tok === eos) {
            s.done = true;
            s.finish = 'eos';
          } else {
            const { emit, stopped } = s.stopper.push(s.assembler.push(tok));
            s.newText += emit;
            if (stopped) {
              s.done = true;
              s.finish = 'stop';
            }
          }
          if (!s.done && s.tokens.length >= o.maxTokens) {
            s.done = true;
            s.finish = 'length';
          }
          if (s.done && s.finish !== 'stop') {
            // The end: release held bytes and text (a stop string can still complete here).
            const r = s.stopper.push(s.assembler.flush());
            s.newText += r.emit;
            if (r.stopped) s.finish = 'stop';
            else s.newText += s.stopper.flush();
          }
          active[i] = s.done ? 0 : 1;
        }
        if (step === 0) tFirst = performance.now();
        for (let i = 0; i < B; i++) {
          const s = seqs[i];
          if (s.newTokens.length || s.newText) {
            const chunk: GenerationChunk = { text: s.newText, tokens: s.newTokens, index: i };
            s.text += s.newText;
            s.newText = '';
            s.newTokens = [];
            yield chunk;
          }
        }
        if (!active.some((a) => a === 1)) break;
        if (signal?.aborted) throw abortReason(signal);
        logits = await session.step(next, active);
      }
    } catch (e) {
      if (signal?.aborted && (isNativeAbort(e) || e === signal.reason || e instanceof AbortedError)) {
        aborted = true;
        if (!o.returnPartial) throw abortReason(signal);
      } else throw e;
    }
  } finally {
    signal?.removeEventListener('abort', onAbort);
    session?.close();
  }

  const tEnd = performance.now();
  const totalMs = tEnd - t0;
  const promptSum = encoded.reduce((a, p) => a + p.length, 0);
  const genSum = seqs.reduce((a, s) => a + s.tokens.length, 0);
  const decodeMs = tFirst ? tEnd - tFirst : 0;
  const decoded = genSum - (tFirst ? seqs.filter((s) => s.tokens.length > 0).length : 0);
  return seqs.map((s, i) => {
    if (aborted) {
      // What was sampled but held back is part of the partial output.
      if (!s.done) {
        s.text += s.newText + s.stopper.push(s.assembler.flush()).emit + s.stopper.flush();
        s.finish = 'aborted';
      }
    }
    return {
      text: s.text,
      tokens: s.tokens,
      finishReason: s.finish,
      stats: {
        promptTokens: encoded[i].length,
        generatedTokens: s.tokens.length,
        timeToFirstTokenMs: tFirst ? tFirst - t0 : totalMs,
        prefillMs,
        prefillTokensPerSecond: prefillMs > 0 ? (promptSum / prefillMs) * 1000 : 0,
        decodeMs,
        decodeTokensPerSecond: decodeMs > 0 ? (decoded / decodeMs) * 1000 : 0,
        tokensPerSecond: totalMs > 0 ? (genSum / totalMs) * 1000 : 0,
        totalMs,
        cacheBytes,
        batchSize: B,
        seed: o.seed,
      },
    };
  });
}

/** Generates for one prompt (a result) or an array of prompts (an array of results). */
export async function generate(
  decoder: Decoder,
  codec: TokenCodec,
  prompt: Prompt | Prompt[],
  options?: GenerateOptions,
): Promise<GenerationResult | GenerationResult[]> {
  const batch = Array.isArray(prompt);
  const it = runGeneration(decoder, codec, prompt, options);
  for (;;) {
    const r = await it.next();
    if (r.done) return batch ? r.value : r.value[0];
  }
}

/**
 * Streams chunks as they are made. Breaking out of `for await` closes the
 * session; an abort makes the loop throw the signal's reason (or end, with
 * returnPartial).
 */
export async function* stream(
  decoder: Decoder,
  codec: TokenCodec,
  prompt: Prompt | Prompt[],
  options?: GenerateOptions,
): AsyncGenerator<GenerationChunk, void, undefined> {
  yield* runGeneration(decoder, codec, prompt, options);
}

// ---------------------------------------------------------------------------
// The engine's tokenizers and the native decoder

let gpt2Bytes: Uint8Array[] | undefined;

/** The bytes of every GPT-2 token (gpt-tokenizer's r50k_base table; 50256 is <|endoftext|>). */
function gpt2TokenBytes(): Uint8Array[] {
  if (!gpt2Bytes) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const ranks = (require('gpt-tokenizer/cjs/bpeRanks/r50k_base') as { default: (string | number[])[] }).default;
    const enc = new TextEncoder();
    gpt2Bytes = ranks.map((t) => (typeof t === 'string' ? enc.encode(t) : Uint8Array.from(t)));
    gpt2Bytes[GPT2_EOT] = enc.encode(END_OF_TEXT);
  }
  return gpt2Bytes;
}

/** A TokenCodec for one of the engine's tokenizers, with token bytes for UTF-8-safe streaming. */
export function tokenCodec(name: TokenizerName): TokenCodec {
  const tok = getTokenizer(name);
  const codec: TokenCodec = {
    encode: (t) => tok.encode(t),
    decode: (ids) => tok.decode(ids),
    eosToken: tok.eot ?? undefined,
  };
  if (name === 'byte') codec.tokenBytes = (id) => Uint8Array.of(id);
  else if (name === 'gpt2') {
    const table = gpt2TokenBytes();
    codec.tokenBytes = (id) => {
      const b = table[id];
      if (!b) throw rangeError(`a token id in [0, ${table.length})`, 'token', id);
      return b;
    };
  }
  return codec;
}

/** The decode session of native/addon/decode_binding.cc. Internal. */
export interface NativeDecodeSession {
  readonly batch: number;
  readonly vocabSize: number;
  prefill(o: { tokens: Int32Array; lengths: Int32Array }): Promise<Float32Array>;
  step(o: { tokens: Int32Array; active: Uint8Array }): Promise<Float32Array>;
  cacheBytes(): number;
  scratchBytes(): number;
  positions(): Int32Array;
  close(): void;
}

export interface DecodeNative {
  decodeOpen(model: unknown, o: { capacities: Int32Array; abort: Int32Array }): NativeDecodeSession;
}

/**
 * A Decoder over a native model handle (lib/model.ts). `handle` is called
 * when a session opens, so a disposed model fails there (after validation);
 * `alive` is checked before every call.
 */
export function nativeDecoder(
  handle: () => unknown,
  config: { vocab_size: number; n_positions: number },
  alive: () => void = () => undefined,
): Decoder {
  return {
    vocabSize: config.vocab_size,
    nPositions: config.n_positions,
    open(capacities, abort) {
      const h = handle();
      const s = callNativeSync(() =>
        loadAddon<DecodeNative>().decodeOpen(h, { capacities: Int32Array.from(capacities), abort }),
      );
      return {
        cacheBytes: s.cacheBytes(),
        prefill(prompts) {
          alive();
          const lengths = Int32Array.from(prompts.map((p) => p.length));
          const tokens = new Int32Array(lengths.reduce((a, b) => a + b, 0));
          let o = 0;
          for (const p of prompts) {
            tokens.set(p, o);
            o += p.length;
          }
          return callNative(() => s.prefill({ tokens, lengths }));
        },
        step(tokens, active) {
          alive();
          return callNative(() => s.step({ tokens, active }));
        },
        close: () => s.close(),
      };
    },
  };
}
