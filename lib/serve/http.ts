/**
 * What the server needs from Node's http module beyond routing: the body
 * read under a byte limit, JSON and error answers, server-sent events that
 * respect backpressure, the API key check and the Host check of a loopback
 * server. HTTP itself is parsed by Node.
 */
import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ApiError } from './errors';

/** Reads the whole body; a body over `limit` bytes is a 413 (checked on Content-Length first, then while reading). */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const tooLarge = () =>
    new ApiError(413, `Expected a request body of at most ${limit} bytes but received more`, 'invalid_request_error', null, 'request_too_large');
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (e: unknown, body?: Buffer) => {
      if (done) return;
      done = true;
      req.removeListener('data', onData);
      if (e) {
        // Stop reading: the rest of the body is not wanted.
        req.pause();
        reject(e);
      } else resolve(body!);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) finish(tooLarge());
      else parts.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => finish(null, Buffer.concat(parts, size)));
    req.once('error', (e) => finish(e));
    req.once('aborted', () => finish(new Error('the client closed the connection while sending the body')));
  });
}

/** Parses a JSON body; bad JSON is a 400. */
export function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (e) {
    throw new ApiError(400, `Expected a JSON request body but it could not be parsed: ${(e as Error).message}`, 'invalid_request_error', null, 'invalid_json');
  }
}

/** Sends a JSON answer (a no-op when the client is gone or an answer has started). */
export function sendJson(res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const body = JSON.stringify(value);
  res.writeHead(status, { ...headers, 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

export function sendError(res: ServerResponse, e: ApiError): void {
  sendJson(res, e.status, e.body(), e.headers);
}

/** Starts a server-sent event stream. */
export function startEvents(res: ServerResponse): void {
  res.writeHead(200, {
    'Content-Type': 'text/event-stream; charset=utf-8',
    'Cache-Control': 'no-cache',
    'X-Accel-Buffering': 'no',
  });
  res.flushHeaders();
}

/**
 * Writes one event (`data: <json>` or `data: [DONE]`). When the socket's
 * buffer is full, waits until it drains or the client goes away, so a slow
 * reader holds back its own generation instead of filling memory.
 */
export function writeEvent(res: ServerResponse, data: unknown): Promise<void> {
  if (res.destroyed || res.writableEnded) return Promise.resolve();
  const line = `data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`;
  if (res.write(line)) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      res.removeListener('drain', done);
      res.removeListener('close', done);
      resolve();
    };
    res.once('drain', done);
    res.once('close', done);
  });
}

/** True when the Authorization header carries `Bearer <key>` (compared in constant time). */
export function hasKey(req: IncomingMessage, key: string): boolean {
  const h = req.headers.authorization;
  if (typeof h !== 'string') return false;
  const m = /^Bearer\s+(.+)$/i.exec(h.trim());
  if (!m) return false;
  const given = Buffer.from(m[1]);
  const want = Buffer.from(key);
  return given.length === want.length && timingSafeEqual(given, want);
}

const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '::1', '[::1]']);

export function isLoopbackHost(host: string): boolean {
  return LOOPBACK_NAMES.has(host.toLowerCase()) || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/**
 * A server bound to loopback answers only requests addressed to a loopback
 * name: a web page that rebinds its own domain name to 127.0.0.1 cannot
 * reach it through the user's browser.
 */
export function hostHeaderAllowed(req: IncomingMessage): boolean {
  const h = req.headers.host;
  if (typeof h !== 'string' || h.length === 0) return false;
  const name = h.startsWith('[') ? h.slice(0, h.indexOf(']') + 1) : h.replace(/:\d+$/, '');
  return isLoopbackHost(name);
}
