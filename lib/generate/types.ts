/**
 * The types of text generation: what a user passes and gets back, and what
 * the decode loop (lib/generate.ts) needs from a model (a Decoder) and from
 * a tokenizer (a TokenCodec).
 */

export interface GenerateOptions {
  /** Tokens to generate per prompt (default 100); may go past the context (see contextOverflow). */
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
  /**
   * What happens when a sequence reaches the model's context (n_positions
   * tokens in view). 'slide' (default): keep going, conditioned on the most
   * recent tokens: the cache is rebuilt from the last floor(n_positions / 2)
   * tokens, which then sit at positions 0.., and decoding goes on from there
   * (a prompt longer than the context is cropped to its last n_positions
   * tokens). 'stop': end there with finishReason 'context' (a prompt longer
   * than the context is then an error).
   */
  contextOverflow?: ContextOverflow;
}

export type ContextOverflow = 'slide' | 'stop';
export const CONTEXT_OVERFLOW_CHOICES: readonly ContextOverflow[] = ['slide', 'stop'];

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
  'contextOverflow',
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

/**
 * Why a sequence ended: maxTokens reached, a stop string, the end-of-text
 * token, an abort, or the context (contextOverflow 'stop').
 */
export type FinishReason = 'length' | 'stop' | 'eos' | 'aborted' | 'context';

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
  /**
   * Times this sequence's cache was rebuilt from its most recent tokens
   * (contextOverflow 'slide'; 0 while it stays within the context).
   */
  contextSlides: number;
  /** Prompt tokens dropped from the front to fit the context ('slide'; else 0). */
  promptTokensDropped: number;
}

export interface GenerationResult {
  text: string;
  tokens: number[];
  finishReason: FinishReason;
  /** Why it ended, in words (names the limit, stop string or token). */
  stopReason: string;
  stats: GenerationStats;
}

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
   * Runs every non-empty prompt through the model in one pass: sequence i
   * starts over at position 0 with prompts[i] in its cache; an empty
   * prompts[i] leaves sequence i as it was (the first call gives every
   * sequence a prompt). Returns [B, vocab] logits, row i those of prompt
   * i's last position (rows of empty prompts are unspecified).
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

export interface SamplingOptions {
  temperature: number;
  topK: number;
  topP: number;
}
