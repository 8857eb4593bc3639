/**
 * Helpers for the HTTP server tests: raw requests (fetch, or node:http where
 * fetch cannot send what is needed), server-sent events read back, and the
 * gauges of /metrics.
 */
import * as http from 'node:http';
import { describeExit, distFile, spawnNode, Spawned } from './child-util';

export interface RawAnswer {
  status: number;
  headers: Headers;
  text: string;
  json: unknown;
}

export async function request(url: string, init: RequestInit = {}): Promise<RawAnswer> {
  const r = await fetch(url, init);
  const text = await r.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: r.status, headers: r.headers, text, json };
}

export function postJson(url: string, body: unknown, headers: Record<string, string> = {}): Promise<RawAnswer> {
  return request(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

/** The `data:` payloads of an event stream, in order. */
export function events(text: string): string[] {
  return text
    .split('\n\n')
    .map((e) => e.trim())
    .filter((e) => e.startsWith('data: '))
    .map((e) => e.slice('data: '.length));
}

/** A request through node:http, for what fetch will not send (a foreign Host header, a chunked body). */
export function rawHttp(
  url: string,
  opts: { method?: string; headers?: Record<string, string>; chunks?: Buffer[] },
): Promise<{ status: number; headers: http.IncomingHttpHeaders; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: opts.method ?? 'GET', headers: opts.headers }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(parts).toString('utf8') }));
      res.on('error', reject);
    });
    // The server may answer (413) and close before the whole body is sent.
    req.on('error', (e: NodeJS.ErrnoException) => (e.code === 'EPIPE' || e.code === 'ECONNRESET' ? undefined : reject(e)));
    for (const c of opts.chunks ?? []) req.write(c);
    req.end();
  });
}

/** One sample of /metrics (a label set such as `{reason="client"}` may be given). */
export function metric(text: string, name: string, labels = ''): number {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const sp = line.lastIndexOf(' ');
    if (line.slice(0, sp) === name + labels) return Number(line.slice(sp + 1));
  }
  return NaN;
}

/** Polls until `check` passes or `ms` pass (then returns its last value). */
export async function waitFor<T>(probe: () => Promise<T>, check: (v: T) => boolean, ms = 10000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (check(v) || Date.now() > end) return v;
    await new Promise((r) => setTimeout(r, 25));
  }
}

export interface CliServer extends Spawned {
  url: string;
}

/**
 * Starts `gpt-engine serve <args> --port 0` from dist/ and resolves with the
 * URL it prints once it listens (rejects with its stderr if it exits first).
 */
export async function startServeCli(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 60000): Promise<CliServer> {
  const s = spawnNode([distFile('bin/gpt-engine.js'), 'serve', ...args, '--port', '0'], { env, timeoutMs: 600000 });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`serve did not print its URL within ${timeoutMs} ms: ${s.stderr()}`)), timeoutMs);
    s.child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n')[0];
      if (out.includes('\n')) {
        clearTimeout(timer);
        resolve(line.trim());
      }
    });
    void s.done.then((r) => {
      clearTimeout(timer);
      reject(new Error(`serve exited before listening: ${describeExit(r)}`));
    });
  });
  return { ...s, url };
}
