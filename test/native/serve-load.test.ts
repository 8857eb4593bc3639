/**
 * The HTTP server under load and when clients or the server stop early:
 * 200 requests at concurrency 16 all answered without a 5xx and with flat
 * memory across rounds; a client killed mid-stream (or mid-request) stops
 * its generation and frees its slot (queue depth and batch back to 0 in
 * /metrics); close() drains running requests, or aborts them after the
 * drain time.
 */
import { GPT } from '../../lib/model';
import { serve } from '../../lib/serve';
import { CliServer, events, metric, postJson, request, startServeCli, waitFor } from '../helpers/serve-util';

// The load runs against `gpt-engine serve` in its own process, whose memory
// /metrics reports undisturbed by the test runner's; the tests that need
// close() or a small batch use lib/serve in this process.
let cli: CliServer;
let model: GPT;
const url = () => cli.url;

beforeAll(async () => {
  cli = await startServeCli(['--model', 'tiny', '--seed', '4']);
  model = await GPT.create('tiny', { device: 'cpu', seed: 4 });
}, 120000);
afterAll(async () => {
  cli?.child.kill('SIGKILL');
  await model?.dispose();
});

const metricsOf = async (base: string) => (await request(`${base}/metrics`)).text;
const metrics = () => metricsOf(url());

/** `total` requests, `concurrency` at a time; every third one streamed. Returns the statuses. */
async function round(total: number, concurrency: number, offset: number): Promise<number[]> {
  const statuses: number[] = [];
  let next = 0;
  const worker = async () => {
    while (next < total) {
      const i = next++;
      const stream = i % 3 === 0;
      const r = await postJson(`${url()}/v1/completions`, {
        prompt: `request ${offset + i}: once upon a time`,
        max_tokens: 1 + (i % 3),
        seed: offset + i,
        stream,
      });
      if (r.status === 200) {
        if (stream) expect(events(r.text).pop()).toBe('[DONE]');
        else expect((r.json as { choices: unknown[] }).choices).toHaveLength(1);
      }
      statuses.push(r.status);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return statuses;
}

test('200 requests at concurrency 16: all answered 200, memory flat across rounds, gauges back to 0', async () => {
  const rssOf = async () => metric(await metrics(), 'process_resident_memory_bytes') / 2 ** 20;
  // Warm-up: V8 grows its heap over the first few hundred requests, then a full collection
  // brings the process back to its working size, where it stays.
  const warm = await round(400, 16, 0);
  expect(warm.every((s) => s === 200)).toBe(true);
  const rss0 = await rssOf();
  const rss: number[] = [];
  for (const [r, total] of [[1, 200], [2, 200]]) {
    const statuses = await round(total, 16, r * 1000);
    expect(statuses).toHaveLength(total);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    rss.push(await rssOf());
  }
  process.stderr.write(`serve-load: server RSS after warm-up ${rss0.toFixed(1)} MiB, after the rounds ${rss.map((x) => x.toFixed(1)).join(', ')} MiB\n`);
  // Flat: 400 more requests add less than 48 MiB, about what garbage not yet collected can
  // hold; a session or its logits (200 KiB on this vocabulary) leaked per request would add 80 MiB.
  expect(Math.max(...rss) - rss0).toBeLessThan(48);
  const m = await metrics();
  expect(metric(m, 'gpt_engine_queue_depth')).toBe(0);
  expect(metric(m, 'gpt_engine_batch_size')).toBe(0);
  expect(metric(m, 'gpt_engine_running_requests')).toBe(0);
  expect(metric(m, 'gpt_engine_requests_total', '{path="/v1/completions",code="200"}')).toBe(800);
  expect(metric(m, 'gpt_engine_time_to_first_token_seconds_count')).toBe(800);
  expect(metric(m, 'gpt_engine_completion_tokens_total')).toBeGreaterThanOrEqual(800);
}, 300000);

test('a client killed mid-stream stops its generation and frees its slot; the server keeps serving', async () => {
  const before = await metrics();
  const tokens0 = metric(before, 'gpt_engine_completion_tokens_total');
  const aborted0 = metric(before, 'gpt_engine_requests_aborted_total', '{reason="client"}') || 0;
  const ac = new AbortController();
  const res = await fetch(`${url()}/v1/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ prompt: 'a long story', max_tokens: 250, ignore_eos: true, stream: true }),
    signal: ac.signal,
  });
  const reader = res.body!.getReader();
  const first = await reader.read();
  expect(new TextDecoder().decode(first.value)).toMatch(/^data: /);
  expect(metric(await metrics(), 'gpt_engine_batch_size')).toBe(1);
  ac.abort();
  await reader.cancel().catch(() => undefined);
  const m = await waitFor(metrics, (t) => metric(t, 'gpt_engine_requests_aborted_total', '{reason="client"}') === aborted0 + 1);
  expect(metric(m, 'gpt_engine_requests_aborted_total', '{reason="client"}')).toBe(aborted0 + 1);
  expect(metric(m, 'gpt_engine_queue_depth')).toBe(0);
  expect(metric(m, 'gpt_engine_batch_size')).toBe(0);
  expect(metric(m, 'gpt_engine_running_requests')).toBe(0);
  // It stopped early: far fewer than the 250 tokens asked for were made.
  expect(metric(m, 'gpt_engine_completion_tokens_total') - tokens0).toBeLessThan(200);
  const after = await postJson(`${url()}/v1/completions`, { prompt: 'still there?', max_tokens: 3 });
  expect(after.status).toBe(200);
});

test('a client that gives up on a non-streamed request frees its slot too', async () => {
  const aborted0 = metric(await metrics(), 'gpt_engine_requests_aborted_total', '{reason="client"}') || 0;
  const ac = new AbortController();
  const p = fetch(`${url()}/v1/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ prompt: 'a long story', max_tokens: 250, ignore_eos: true }),
    signal: ac.signal,
  }).catch((e: unknown) => e);
  await waitFor(metrics, (t) => metric(t, 'gpt_engine_batch_size') === 1);
  ac.abort();
  expect(await p).toMatchObject({ name: 'AbortError' });
  const m = await waitFor(metrics, (t) => metric(t, 'gpt_engine_running_requests') === 0 && metric(t, 'gpt_engine_batch_size') === 0);
  expect(metric(m, 'gpt_engine_requests_aborted_total', '{reason="client"}')).toBe(aborted0 + 1);
  expect(metric(m, 'gpt_engine_queue_depth')).toBe(0);
});

test('SIGTERM: the CLI server drains and exits 0', async () => {
  cli.child.kill('SIGTERM');
  const r = await cli.done;
  expect({ code: r.code, signal: r.signal }).toEqual({ code: 0, signal: null });
  expect(r.stderr).toMatch(/SIGTERM: draining/);
  expect(r.stderr).toMatch(/serve: stopped/);
}, 60000);

test('a client that leaves while queued never reaches the model', async () => {
  const s = await serve(model, { port: 0, maxBatch: 1, maxQueue: 4 });
  try {
    const hold = new AbortController();
    const running = await fetch(`${s.url}/v1/completions`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ prompt: 'x', max_tokens: 250, ignore_eos: true, stream: true }),
      signal: hold.signal,
    });
    const reader = running.body!.getReader();
    await reader.read();
    const queued = new AbortController();
    const p = fetch(`${s.url}/v1/completions`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ prompt: 'y', max_tokens: 2 }),
      signal: queued.signal,
    }).catch((e: unknown) => e);
    await waitFor(() => metricsOf(s.url), (t) => metric(t, 'gpt_engine_queue_depth') === 1);
    queued.abort();
    await p;
    const m = await waitFor(() => metricsOf(s.url), (t) => metric(t, 'gpt_engine_queue_depth') === 0);
    expect(metric(m, 'gpt_engine_queue_depth')).toBe(0);
    expect(metric(m, 'gpt_engine_batch_size')).toBe(1);
    hold.abort();
    await reader.cancel().catch(() => undefined);
    const end = await waitFor(() => metricsOf(s.url), (t) => metric(t, 'gpt_engine_batch_size') === 0);
    expect(metric(end, 'gpt_engine_requests_aborted_total', '{reason="client"}')).toBe(2);
    expect(metric(end, 'gpt_engine_queue_wait_seconds_count')).toBe(1);
  } finally {
    await s.close({ drainSeconds: 0 });
  }
});

test('concurrent clients decode in one batch: /metrics shows the model batch and queue; killed clients free their slots', async () => {
  // The model batches at most 3 sequences; the server admits 8, so the rest
  // wait inside the model, and /metrics counts them there.
  const m3 = await GPT.create('tiny', { device: 'cpu', seed: 4, maxBatch: 3 });
  const s = await serve(m3, { port: 0, maxBatch: 8 });
  try {
    const body = (i: number) => ({ prompt: `client ${i}`, max_tokens: 120, ignore_eos: true, seed: i, stream: true });
    const clients = Array.from({ length: 6 }, () => new AbortController());
    const answers = clients.map((ac, i) =>
      fetch(`${s.url}/v1/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body(i)), signal: ac.signal })
        .then((r) => r.text())
        .catch((e: unknown) => e),
    );
    const busy = await waitFor(() => metricsOf(s.url), (t) => metric(t, 'gpt_engine_batch_size') === 3 && metric(t, 'gpt_engine_queue_depth') === 3);
    expect(metric(busy, 'gpt_engine_running_requests')).toBe(6);
    // one running client and one waiting one go away
    clients[0].abort();
    clients[5].abort();
    const texts = await Promise.all(answers);
    const end = await waitFor(() => metricsOf(s.url), (t) => metric(t, 'gpt_engine_running_requests') === 0);
    expect(metric(end, 'gpt_engine_queue_depth')).toBe(0);
    expect(metric(end, 'gpt_engine_batch_size')).toBe(0);
    expect(metric(end, 'gpt_engine_requests_aborted_total', '{reason="client"}')).toBe(2);
    // It batched: 1, 2 and 3 ran side by side, then 4 beside 3 and alone
    // (about 480 rows in 240 steps); one at a time it would be 1.
    const steps = metric(end, 'gpt_engine_decode_steps_total');
    expect(steps).toBeGreaterThan(0);
    expect(metric(end, 'gpt_engine_decode_step_sequences_total') / steps).toBeGreaterThan(1.5);
    expect(metric(end, 'gpt_engine_decode_slots')).toBeLessThanOrEqual(3);
    // Each finished stream is what its request gives alone.
    for (const i of [1, 2, 3, 4]) {
      const alone = await postJson(`${s.url}/v1/completions`, body(i));
      const strip = (t: string) => events(t).filter((e) => e !== '[DONE]').map((e) => JSON.stringify((JSON.parse(e) as { choices: unknown[] }).choices));
      expect(strip(texts[i] as string)).toEqual(strip(alone.text));
    }
  } finally {
    await s.close({ drainSeconds: 0 });
    await m3.dispose();
  }
});

/** A server with one streamed completion of `maxTokens` tokens running in it (its body text, once it ends). */
async function serveWithOneStream(maxTokens: number): Promise<{ s: Awaited<ReturnType<typeof serve>>; res: Promise<string> }> {
  const s = await serve(model, { port: 0 });
  const res = fetch(`${s.url}/v1/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ prompt: 'z', max_tokens: maxTokens, ignore_eos: true, stream: true }),
  }).then((r) => r.text());
  await waitFor(() => metricsOf(s.url), (t) => metric(t, 'gpt_engine_batch_size') === 1);
  return { s, res };
}

test('close() lets a running stream finish within the drain time, refuses new connections, and resolves', async () => {
  const { s, res } = await serveWithOneStream(30);
  const closed = s.close({ drainSeconds: 60 });
  await expect(fetch(`${s.url}/health`)).rejects.toThrow();
  const text = await res;
  const ev = events(text);
  expect(ev.pop()).toBe('[DONE]');
  const finish = JSON.parse(ev.pop()!) as { choices: { finish_reason: string }[] };
  expect(finish.choices[0].finish_reason).toBe('length');
  await closed;
});

test('close() aborts what still runs after the drain time: the stream ends with a shutting_down error event', async () => {
  const { s, res } = await serveWithOneStream(250);
  const t0 = Date.now();
  await s.close({ drainSeconds: 0.2 });
  expect(Date.now() - t0).toBeLessThan(5000);
  const ev = events(await res);
  const last = JSON.parse(ev[ev.length - 1]) as { error: { code: string; type: string } };
  expect(last.error).toMatchObject({ code: 'shutting_down', type: 'server_error' });
  expect(s.metricsText()).toMatch(/gpt_engine_requests_aborted_total\{reason="shutdown"\} 1/);
});
