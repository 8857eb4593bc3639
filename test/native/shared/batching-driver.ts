// Drives a continuous batch (lib/generate/scheduler.ts) the way users do:
// requests arriving at random times, of random lengths and sampling
// settings, some with stop strings, some aborted or broken out of
// mid-stream, some with several prompts, some past the context; and
// compares each request, tokens and the logits each token was drawn from,
// bitwise with the same request run alone. Used by test/native/batching and
// test/cuda/batching.
import {
  Decoder,
  DecodeSession,
  generate,
  GenerateOptions,
  GenerationResult,
  stream,
  tokenCodec,
} from '../../../lib/generate';
import { BatchScheduler } from '../../../lib/generate/scheduler';
import { Rng } from '../../../lib/rng';

const codec = tokenCodec('byte');

/** Records, per sequence, the logits each sampled token was drawn from. */
export function recording(d: Decoder, rows: Float32Array[][]): Decoder {
  const V = d.vocabSize;
  return {
    vocabSize: d.vocabSize,
    nPositions: d.nPositions,
    async open(capacities: number[], abort: Int32Array): Promise<DecodeSession> {
      const s = await d.open(capacities, abort);
      rows.length = 0;
      for (let i = 0; i < capacities.length; i++) rows.push([]);
      return {
        cacheBytes: s.cacheBytes,
        async prefill(prompts: Int32Array[]) {
          const out = await s.prefill(prompts);
          prompts.forEach((p, i) => p.length && rows[i].push(out.slice(i * V, (i + 1) * V)));
          return out;
        },
        async step(tokens: Int32Array, active: Uint8Array) {
          const out = await s.step(tokens, active);
          active.forEach((a, i) => a && rows[i].push(out.slice(i * V, (i + 1) * V)));
          return out;
        },
        close: () => s.close(),
      };
    },
  };
}

export interface Request {
  prompts: Int32Array[];
  options: GenerateOptions;
  mode: 'generate' | 'stream';
  /** stream: break out of the loop after this many chunks */
  breakAfter?: number;
  /** abort the signal after this many chunks (stream) or this many ms (generate, returnPartial) */
  abortAfter?: number;
  /** ms after the start of the run at which the request arrives */
  delay: number;
}

export interface Outcome {
  tokens: number[][];
  rows: Float32Array[][];
  finish: string[];
  /** cut short by an abort or a break: compare as a prefix */
  cut: boolean;
}

export function randomRequests(seed: number, count: number, V: number, slide = true): Request[] {
  const r = new Rng(seed, 0);
  const pick = <T>(xs: T[]): T => xs[r.nextInt(xs.length)];
  const out: Request[] = [];
  for (let i = 0; i < count; i++) {
    const nPrompts = r.nextInt(5) === 0 ? 2 + r.nextInt(2) : 1;
    const prompts = Array.from({ length: nPrompts }, () =>
      Int32Array.from({ length: 1 + r.nextInt(30) }, () => r.nextInt(V)),
    );
    const options: GenerateOptions = {
      // a few go past the context (contextOverflow 'slide' rebuilds their rows)
      maxTokens: slide && r.nextInt(6) === 0 ? 50 + r.nextInt(30) : 1 + r.nextInt(24),
      temperature: pick([0, 0.7, 1, 1.4]),
      topK: pick([0, 0, 7]),
      topP: pick([1, 1, 0.9]),
      seed: r.nextInt(1 << 30),
    };
    if (r.nextInt(4) === 0) options.stop = [pick(['a', 'e', 'o', ' ']), pick(['x', 'q', '\u00ff'])];
    if (r.nextInt(6) === 0) options.contextOverflow = 'stop';
    const mode = r.nextInt(2) === 0 ? 'generate' : 'stream';
    const req: Request = { prompts, options, mode, delay: r.nextInt(40) };
    const cut = r.nextInt(5);
    if (cut === 0 && mode === 'stream') req.breakAfter = 1 + r.nextInt(6);
    if (cut === 1) req.abortAfter = mode === 'stream' ? 1 + r.nextInt(6) : r.nextInt(15);
    out.push(req);
  }
  return out;
}

/** Runs one request on a scheduler, recording its logits. */
export async function runRequest(s: BatchScheduler, req: Request, alone: boolean): Promise<Outcome> {
  const rows: Float32Array[][] = [];
  const ac = new AbortController();
  const aborting = !alone && req.abortAfter !== undefined;
  const options: GenerateOptions = { ...req.options, ...(aborting ? { signal: ac.signal, returnPartial: true } : {}) };
  const batch = req.prompts.length > 1;
  const prompt = batch ? req.prompts : req.prompts[0];
  const t = await s.join(req.prompts.length, options.signal);
  try {
    const d = recording(t.decoder, rows);
    if (req.mode === 'generate') {
      let timer: NodeJS.Timeout | undefined;
      if (aborting) timer = setTimeout(() => ac.abort(), req.abortAfter);
      const res = await generate(d, codec, prompt, options);
      clearTimeout(timer);
      const list = (batch ? res : [res]) as GenerationResult[];
      return {
        tokens: list.map((x) => x.tokens),
        rows,
        finish: list.map((x) => x.finishReason),
        cut: list.some((x) => x.finishReason === 'aborted'),
      };
    }
    const tokens: number[][] = req.prompts.map(() => []);
    let chunks = 0;
    let cut = false;
    try {
      for await (const c of stream(d, codec, prompt, options)) {
        tokens[c.index].push(...c.tokens);
        chunks++;
        if (!alone && req.breakAfter !== undefined && chunks >= req.breakAfter) {
          cut = true;
          break;
        }
        if (aborting && chunks === req.abortAfter) {
          ac.abort();
          cut = true;
        }
      }
    } catch (e) {
      if (!ac.signal.aborted) throw e;
      cut = true;
    }
    return { tokens, rows, finish: [], cut };
  } finally {
    t.leave();
  }
}

export function sameBits(a: Float32Array, b: Float32Array): boolean {
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

/** The batched outcome equals the one alone: whole, or (cut short) as a prefix. */
/** Runs `reqs` one at a time, then all at their arrival times, on fresh schedulers; returns both outcomes and the stats. */
export async function aloneAndTogether(
  make: () => BatchScheduler,
  reqs: Request[],
): Promise<{ alone: Outcome[]; got: Outcome[]; soloSteps: number; stats: ReturnType<BatchScheduler['stats']>; peak: number; peakQueued: number }> {
  const solo = make();
  const alone: Outcome[] = [];
  for (const q of reqs) alone.push(await runRequest(solo, q, true));
  const soloSteps = solo.stats().steps;
  solo.dispose();
  const s = make();
  let peak = 0;
  let peakQueued = 0;
  const watch = setInterval(() => {
    const st = s.stats();
    peak = Math.max(peak, st.batchSize);
    peakQueued = Math.max(peakQueued, st.queued);
  }, 1);
  try {
    const got = await Promise.all(
      reqs.map(
        (q) =>
          new Promise<Outcome>((resolve, reject) =>
            setTimeout(() => runRequest(s, q, false).then(resolve, reject), q.delay),
          ),
      ),
    );
    return { alone, got, soloSteps, stats: s.stats(), peak, peakQueued };
  } finally {
    clearInterval(watch);
    s.dispose();
  }
}

export function expectSame(i: number, got: Outcome, alone: Outcome): void {
  const where = `request ${i}`;
  for (let p = 0; p < alone.tokens.length; p++) {
    const g = got.tokens[p];
    const a = alone.tokens[p];
    if (got.cut) expect({ where, tokens: g }).toEqual({ where, tokens: a.slice(0, g.length) });
    else expect({ where, tokens: g }).toEqual({ where, tokens: a });
    const gr = got.rows[p] ?? [];
    const ar = alone.rows[p];
    if (!got.cut) expect({ where, rows: gr.length }).toEqual({ where, rows: ar.length });
    expect(gr.length).toBeLessThanOrEqual(ar.length);
    for (let k = 0; k < gr.length; k++)
      if (!sameBits(gr[k], ar[k])) throw new Error(`${where}, prompt ${p}: the logits of token ${k} differ from the request alone`);
  }
  if (!got.cut && alone.finish.length) expect({ where, finish: got.finish }).toEqual({ where, finish: alone.finish });
}

