/**
 * Text generation: the decode loop behind GPT.generate() and GPT.stream(),
 * with UTF-8-safe streaming, stop strings, cancellation and statistics. It
 * runs on a `Decoder` (KV-cache sessions; the math of a decode step lives in
 * native code, native/core/decode.*) and a `TokenCodec`, so everything a
 * user can choose can be tested on crafted logits without the addon.
 *
 * The parts live in lib/generate/: the types (types.ts), option validation
 * (options.ts), sampling (sampling.ts), text assembly and the tokenizers'
 * codecs (text.ts), and the native decoder (native.ts).
 *
 * Each prompt of a batch has its own sampling stream (seed, i) and its own
 * cache rows, so its output equals generating it alone.
 *
 * Past the context (contextOverflow 'slide'): a sequence whose cache is full
 * (n_positions tokens held) and which needs one more step is rebuilt
 * instead: its last keep = floor(n_positions / 2) tokens (at least 1) are
 * prefilled again at positions 0..keep-1 on its own cache rows (the other
 * sequences keep theirs), and stepping goes on from position keep. So every
 * token is predicted from a window of the most recent keep to n_positions
 * tokens, exactly as a forward pass over that window would (positions
 * restart with the window, and a banded layer's ring is rebuilt with it),
 * and the cost per token stays bounded: one prefill of keep tokens per
 * n_positions - keep + 1 generated tokens (about one token of prefill per
 * generated token past the context, on top of its step; prefill tokens go
 * through the GEMMs together, and the prefill's attention over keep tokens
 * costs per generated token about what one step's attention over the cache
 * does).
 */
import { AbortedError, GptEngineError } from './errors';
import { resolveOptions, slideKeep } from './generate/options';
import { sampleToken } from './generate/sampling';
import { StopMatcher, TokenTextAssembler } from './generate/text';
import {
  Decoder,
  DecodeSession,
  FinishReason,
  GenerateOptions,
  GenerationChunk,
  GenerationResult,
  Prompt,
  TokenCodec,
} from './generate/types';
import { Rng } from './rng';
import { rangeError, typeError } from './validate';

export * from './generate/types';
export { DEFAULT_MAX_TOKENS, MAX_GENERATE_TOKENS, resolveOptions, slideKeep } from './generate/options';
export type { ResolvedOptions } from './generate/options';
export { argmax, sampleToken, samplingDistribution, topKIndices } from './generate/sampling';
export { StopMatcher, tokenCodec, TokenTextAssembler } from './generate/text';
export { nativeDecoder } from './generate/native';
export type { DecodeNative, NativeDecodeSession } from './generate/native';

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
  /** The prompt the model sees (cropped to the context with 'slide'). */
  input: Int32Array;
  /** Tokens in the cache (the sequence's next position). */
  cached: number;
  slides: number;
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

/** The last `n` tokens of a sequence (prompt then generated). */
function lastTokens(s: SeqState, n: number): Int32Array {
  const out = new Int32Array(n);
  const fromGen = Math.min(n, s.tokens.length);
  const fromPrompt = n - fromGen;
  out.set(s.input.subarray(s.input.length - fromPrompt), 0);
  for (let j = 0; j < fromGen; j++) out[fromPrompt + j] = s.tokens[s.tokens.length - fromGen + j];
  return out;
}

function stopReasonText(finish: FinishReason, o: { maxTokens: number }, nPositions: number, eos?: number): string {
  switch (finish) {
    case 'length':
      return `reached maxTokens = ${o.maxTokens}`;
    case 'eos':
      return `sampled the end-of-text token (${eos})`;
    case 'stop':
      return 'the text reached a stop string';
    case 'aborted':
      return 'aborted by the signal';
    case 'context':
      return `reached the model's context of n_positions = ${nPositions} tokens (contextOverflow 'stop')`;
  }
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
  const N = decoder.nPositions;
  const o = resolveOptions(options, longest, N);
  const keep = slideKeep(N);
  const { signal } = o;
  if (signal?.aborted) throw abortReason(signal);

  const B = encoded.length;
  const V = decoder.vocabSize;
  const eos = o.ignoreEos ? undefined : codec.eosToken;
  // What the model sees of each prompt: all of it, or with 'slide' its last
  // n_positions tokens (options.ts refuses a longer prompt with 'stop').
  const inputs = encoded.map((p) => (p.length > N ? p.subarray(p.length - N) : p));
  // The last sampled token is never fed back, so a sequence holds at most
  // prompt + maxTokens - 1 tokens, and never more than the context.
  const capacities = inputs.map((p) => Math.min(N, p.length + o.maxTokens - 1));
  const seqs: SeqState[] = inputs.map((input, i) => ({
    input,
    cached: input.length,
    slides: 0,
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
  // One step where some sequences are rebuilt from their last `keep` tokens
  // (a prefill of those rows alone) and the others step: the logits of both
  // calls, each sequence's row from the call that advanced it.
  const slide = async (
    sess: DecodeSession,
    next: Int32Array,
    active: Uint8Array,
    rebuild: Uint8Array,
  ): Promise<Float32Array> => {
    const windows = seqs.map((s, i) => (rebuild[i] ? lastTokens(s, keep) : new Int32Array(0)));
    const merged = new Float32Array(B * V);
    // Copied out first: a session may reuse one buffer for every call.
    const pre = await sess.prefill(windows);
    for (let i = 0; i < B; i++)
      if (rebuild[i]) {
        merged.set(pre.subarray(i * V, (i + 1) * V), i * V);
        seqs[i].cached = keep;
        seqs[i].slides++;
      }
    const stepping = Uint8Array.from(active, (a, i) => (a && !rebuild[i] ? 1 : 0));
    if (stepping.some((a) => a === 1)) {
      const st = await sess.step(next, stepping);
      for (let i = 0; i < B; i++)
        if (stepping[i]) {
          merged.set(st.subarray(i * V, (i + 1) * V), i * V);
          seqs[i].cached++;
        }
    }
    return merged;
  };
  try {
    try {
      session = await decoder.open(capacities, abort);
      cacheBytes = session.cacheBytes;
      if (signal?.aborted) throw abortReason(signal);
      tPrefill0 = performance.now();
      let logits = await session.prefill(inputs);
      prefillMs = performance.now() - tPrefill0;
      const next = new Int32Array(B);
      const active = new Uint8Array(B);
      const rebuild = new Uint8Array(B);
      for (let step = 0; ; step++) {
        // Sample one token for every live sequence.
        for (let i = 0; i < B; i++) {
          const s = seqs[i];
          active[i] = 0;
          rebuild[i] = 0;
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
          // The cache is full and the token needs a step: stop, or slide.
          if (!s.done && s.cached >= N) {
            if (o.contextOverflow === 'stop') {
              s.done = true;
              s.finish = 'context';
            } else rebuild[i] = 1;
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
        if (!rebuild.some((r) => r === 1)) {
          logits = await session.step(next, active);
          for (let i = 0; i < B; i++) if (active[i]) seqs[i].cached++;
        } else logits = await slide(session, next, active, rebuild);
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
  const promptSum = inputs.reduce((a, p) => a + p.length, 0);
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
      stopReason: stopReasonText(s.finish, o, N, eos),
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
        contextSlides: s.slides,
        promptTokensDropped: encoded[i].length - s.input.length,
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
