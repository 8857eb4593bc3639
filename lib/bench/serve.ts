/**
 * Serve section: N clients at once, each asking for the same number of new
 * tokens (greedy, end-of-text ignored) from its own random prompt, against
 * the API (GPT.stream; concurrent calls join the model's continuous batch)
 * and against the HTTP server (lib/serve, streamed completions over
 * loopback), beside the references: one request alone, the N prompts as one
 * explicit batch, the same N calls on a model that runs one at a time
 * (maxBatch 1, the FIFO of a model without batching) and the server
 * admitting one request at a time. One more row times a call that arrives
 * while N - 1 others decode (its time to first token against the idle
 * model's). Reports tokens/s over the whole round, and time to first token
 * and latency per request (p50 and p99, pooled over the timed rounds;
 * measured by the client, queueing included).
 */
import { performance } from 'node:perf_hooks';
import { presetConfig } from '../config';
import { GPT } from '../model';
import { serve, ServeHandle } from '../serve';
import { errorLine, SectionContext } from './context';
import { repeatAsync, statOf } from './stats';
import { randomTokens } from './train';
import { BenchPrecision, ServeMode, ServeRow, ServeSection } from './types';

export interface ServePlan {
  preset: string;
  clients: number;
  promptTokens: number;
  newTokens: number;
}

export function servePlan(quick: boolean, preset?: string, clients?: number, seq?: number): ServePlan {
  const p = preset ?? (quick ? 'tiny' : 'gpt2');
  const newTokens = quick ? 16 : 32;
  const ctx = presetConfig(p).n_positions;
  return {
    preset: p,
    clients: clients ?? 8,
    promptTokens: Math.min(seq ?? (quick ? 16 : 32), ctx - newTokens),
    newTokens: Math.min(newTokens, ctx - 1),
  };
}

/** The nearest-rank percentile (q in [0, 1]) of some samples. */
export function percentile(samples: number[], q: number): number | null {
  if (samples.length === 0) return null;
  const s = [...samples].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}

interface Timed {
  ttftMs: number;
  latencyMs: number;
  tokens: number;
}

/** One stream() call on the model, timed from the call. */
async function apiRequest(model: GPT, prompts: Int32Array[], newTokens: number): Promise<Timed[]> {
  const t0 = performance.now();
  const first: number[] = prompts.map(() => 0);
  let tokens = 0;
  for await (const c of model.stream(prompts, { maxTokens: newTokens, temperature: 0, ignoreEos: true })) {
    if (c.tokens.length && !first[c.index]) first[c.index] = performance.now() - t0;
    tokens += c.tokens.length;
  }
  const latencyMs = performance.now() - t0;
  return prompts.map((_, i) => ({ ttftMs: first[i], latencyMs, tokens: tokens / prompts.length }));
}

/** One streamed completion over HTTP; the first token is when the answer's headers come (the server sends them with it). */
async function httpRequest(url: string, prompt: Int32Array, newTokens: number): Promise<Timed> {
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ prompt: Array.from(prompt), max_tokens: newTokens, temperature: 0, ignore_eos: true, stream: true, stream_options: { include_usage: true } }),
  });
  const ttftMs = performance.now() - t0;
  const text = await res.text();
  const latencyMs = performance.now() - t0;
  if (res.status !== 200) throw new Error(`the server answered ${res.status}: ${text.slice(0, 200)}`);
  const usage = text
    .split('\n\n')
    .filter((e) => e.startsWith('data: {') && e.includes('"usage"'))
    .map((e) => JSON.parse(e.slice(6)) as { usage: { completion_tokens: number } })
    .pop();
  if (!usage) throw new Error('the stream ended without its usage event');
  return { ttftMs, latencyMs, tokens: usage.usage.completion_tokens };
}

/**
 * N - 1 calls decoding, then one more: the late call's time to first token
 * and latency; its `tokens` are the whole round's (for tokens/s).
 */
async function busyRound(model: GPT, prompts: Int32Array[], newTokens: number): Promise<Timed[]> {
  const [late, ...early] = prompts;
  let started = 0;
  let go: () => void = () => undefined;
  const decoding = new Promise<void>((r) => (go = r));
  if (early.length === 0) go();
  const background = early.map(async (p) => {
    let n = 0;
    let first = true;
    for await (const c of model.stream(p, { maxTokens: newTokens, temperature: 0, ignoreEos: true })) {
      n += c.tokens.length;
      if (first && c.tokens.length) {
        first = false;
        if (++started === early.length) go();
      }
    }
    return n;
  });
  await decoding;
  const [probe] = await apiRequest(model, [late], newTokens);
  const others = await Promise.all(background);
  return [{ ...probe, tokens: probe.tokens + others.reduce((a, b) => a + b, 0) }];
}

export async function runServe(ctx: SectionContext): Promise<ServeSection> {
  const { opts } = ctx;
  const plan = servePlan(opts.quick, opts.preset, opts.batch, opts.seq);
  const precision: BenchPrecision = opts.precisions[0];
  const description =
    `${plan.preset} with random weights, ${precision}, ${plan.clients} clients, prompt ${plan.promptTokens} tokens, ${plan.newTokens} new tokens each ` +
    `(greedy, end-of-text ignored); server over loopback with streamed completions; tokens/s = all tokens of a round / its time (median over rounds); ` +
    `time to first token and latency per request as the client sees them, p50 and p99 over every timed round; warm-up ${opts.warmup}, up to ${opts.repeats} rounds`;
  const section: ServeSection = { status: 'ok', description, notes: [], rows: [] };
  const cfg = presetConfig(plan.preset);
  const prompts = Array.from({ length: plan.clients }, (_, i) => randomTokens(plan.promptTokens, cfg.vocab_size, 300 + i));
  const timing = { warmup: opts.warmup, repeats: opts.repeats, budgetMs: opts.caseBudgetMs };
  const model = await GPT.create(plan.preset, { seed: 1, device: opts.device, precision, maxBatch: Math.max(16, plan.clients) });
  const servers: ServeHandle[] = [];
  let fifoModel: GPT | undefined;
  try {
    // The same weights, decoding one call at a time.
    fifoModel = await GPT.create(plan.preset, { seed: 1, device: opts.device, precision, maxBatch: 1 });
    const fifoApi = fifoModel;
    const batched = await serve(model, { port: 0, maxBatch: Math.max(16, plan.clients), maxQueue: plan.clients });
    servers.push(batched);
    const fifo = await serve(model, { port: 0, maxBatch: 1, maxQueue: plan.clients });
    servers.push(fifo);
    const rounds: Record<ServeMode, () => Promise<Timed[]>> = {
      'api-alone': () => apiRequest(model, [prompts[0]], plan.newTokens),
      'api-batch': () => apiRequest(model, prompts, plan.newTokens),
      'api-fifo': async () => (await Promise.all(prompts.map((p) => apiRequest(fifoApi, [p], plan.newTokens)))).flat(),
      'api-concurrent': async () => (await Promise.all(prompts.map((p) => apiRequest(model, [p], plan.newTokens)))).flat(),
      'api-busy': () => busyRound(model, prompts, plan.newTokens),
      'server-alone': async () => [await httpRequest(batched.url, prompts[0], plan.newTokens)],
      'server-fifo': () => Promise.all(prompts.map((p) => httpRequest(fifo.url, p, plan.newTokens))),
      'server-concurrent': () => Promise.all(prompts.map((p) => httpRequest(batched.url, p, plan.newTokens))),
    };
    for (const mode of Object.keys(rounds) as ServeMode[]) {
      const clients = mode.endsWith('alone') ? 1 : plan.clients;
      const row: ServeRow = {
        mode,
        preset: plan.preset,
        precision,
        clients,
        promptTokens: plan.promptTokens,
        newTokens: plan.newTokens,
        wall: null,
        tokensPerSecond: null,
        ttftP50: null,
        ttftP99: null,
        latencyP50: null,
        latencyP99: null,
      };
      ctx.log(`serve: ${mode} (${plan.preset}, ${clients} client${clients > 1 ? 's' : ''})`);
      try {
        const per = await repeatAsync(async () => {
          const t0 = performance.now();
          const timed = await rounds[mode]();
          return { ms: performance.now() - t0, timed };
        }, timing);
        row.wall = statOf(per.map((r) => r.ms));
        const tokens = per[0].timed.reduce((a, t) => a + t.tokens, 0);
        row.tokensPerSecond = (tokens / row.wall.median) * 1000;
        const all = per.flatMap((r) => r.timed);
        row.ttftP50 = percentile(all.map((t) => t.ttftMs), 0.5);
        row.ttftP99 = percentile(all.map((t) => t.ttftMs), 0.99);
        row.latencyP50 = percentile(all.map((t) => t.latencyMs), 0.5);
        row.latencyP99 = percentile(all.map((t) => t.latencyMs), 0.99);
      } catch (e) {
        row.note = `failed: ${errorLine(e)}`;
      }
      section.rows.push(row);
    }
  } finally {
    for (const s of servers) await s.close({ drainSeconds: 0 });
    await model.dispose();
    await fifoModel?.dispose();
  }
  const get = (m: ServeMode) => section.rows.find((r) => r.mode === m);
  const conc = get('api-concurrent')?.wall?.median;
  const batch = get('api-batch')?.wall?.median;
  if (conc && batch) section.notes.push(`${plan.clients} concurrent calls take ${(conc / batch).toFixed(2)}x the time of the same prompts as one batch`);
  const fifo = get('api-fifo')?.wall?.median;
  if (conc && fifo && batch) section.notes.push(`one at a time (maxBatch 1) they take ${(fifo / batch).toFixed(2)}x; the continuous batch is ${(fifo / conc).toFixed(2)}x faster`);
  const late = get('api-busy')?.ttftP50;
  const calm = get('api-alone')?.ttftP50;
  if (late && calm) section.notes.push(`time to first token of a call arriving while ${plan.clients - 1} others decode is ${(late / calm).toFixed(2)}x its value on an idle model (p50)`);
  const busy = get('server-concurrent')?.ttftP50;
  const idle = get('server-alone')?.ttftP50;
  if (busy && idle) section.notes.push(`time to first token with ${plan.clients} clients at once is ${(busy / idle).toFixed(2)}x its value for one client alone (p50)`);
  return section;
}
