/**
 * An OpenAI-compatible HTTP server for one model (docs/SERVING.md), on
 * Node's http module: POST /v1/completions, GET /v1/models, GET /health and
 * GET /metrics. Loopback by default; an API key, a body limit, a bounded
 * queue and a drain on close().
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { checkKnownKeys, expectInteger, expectNumber, expectObject, expectString, typeError } from '../validate';
import { completeJson, completeStream, CompletionContext, prepareCompletion, ServableModel } from './completions';
import { ApiError, ShutdownAbort, toApiError } from './errors';
import { hasKey, hostHeaderAllowed, isLoopbackHost, parseJson, readBody, sendError, sendJson } from './http';
import { ServerMetrics } from './metrics';
import { parseCompletion } from './request';
import { QueueFullError, Slots } from './slots';

export interface ServeOptions {
  /** Address to listen on (default 127.0.0.1: this machine only). */
  host?: string;
  /** Port (default 8000); 0 picks a free one (see the handle's port and url). */
  port?: number;
  /** The model id clients send and GET /v1/models lists (default "gpt-engine"). */
  name?: string;
  /** When set, every endpoint but /health requires `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  /** Most sequences (requests x n) handed to the model at once: the decode batch (default 16). */
  maxBatch?: number;
  /** Most requests waiting for the batch; one more is answered 429 (default 64). */
  maxQueue?: number;
  /** Most choices (n) one request may ask for (default 8, at most maxBatch). */
  maxN?: number;
  /** Largest request body in bytes; larger is answered 413 (default 1 MiB). */
  maxBodyBytes?: number;
  /** close()'s default: seconds running requests may take to finish before they are aborted (default 30). */
  drainSeconds?: number;
  /** Called with one line per answered request (method, path, status, ms). */
  log?: (line: string) => void;
}

export interface ServeHandle {
  /** http://host:port (IPv6 hosts in brackets) */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** The Node server (for tests and embedding; do not close it directly). */
  readonly server: http.Server;
  /** The text GET /metrics answers. */
  metricsText(): string;
  /**
   * Stops accepting connections, lets running requests finish for up to
   * `drainSeconds` (default: the serve option), aborts the rest, and
   * resolves once every connection is closed. Calling it again with
   * drainSeconds 0 aborts at once. The model is left open.
   */
  close(options?: { drainSeconds?: number }): Promise<void>;
}

export const SERVE_OPTION_KEYS = ['host', 'port', 'name', 'apiKey', 'maxBatch', 'maxQueue', 'maxN', 'maxBodyBytes', 'drainSeconds', 'log'] as const;

export const SERVE_DEFAULTS = {
  host: '127.0.0.1',
  port: 8000,
  name: 'gpt-engine',
  maxBatch: 16,
  maxQueue: 64,
  maxN: 8,
  maxBodyBytes: 1024 * 1024,
  drainSeconds: 30,
} as const;

type Resolved = Required<Omit<ServeOptions, 'apiKey' | 'log'>> & Pick<ServeOptions, 'apiKey' | 'log'>;

function resolveServeOptions(input: ServeOptions): Resolved {
  const o = expectObject('serve options', input);
  checkKnownKeys('serve options', o, SERVE_OPTION_KEYS);
  const int = (k: keyof typeof SERVE_DEFAULTS, min: number, max = Number.MAX_SAFE_INTEGER) =>
    o[k] === undefined ? (SERVE_DEFAULTS[k] as number) : expectInteger(k, o[k], { min, max });
  const r: Resolved = {
    host: o.host === undefined ? SERVE_DEFAULTS.host : expectString('host', o.host, { nonEmpty: true }),
    port: int('port', 0, 65535),
    name: o.name === undefined ? SERVE_DEFAULTS.name : expectString('name', o.name, { nonEmpty: true }),
    apiKey: o.apiKey === undefined ? undefined : expectString('apiKey', o.apiKey, { nonEmpty: true }),
    maxBatch: int('maxBatch', 1, 4096),
    maxQueue: int('maxQueue', 0),
    maxN: SERVE_DEFAULTS.maxN,
    maxBodyBytes: int('maxBodyBytes', 1),
    drainSeconds: o.drainSeconds === undefined ? SERVE_DEFAULTS.drainSeconds : expectNumber('drainSeconds', o.drainSeconds, { min: 0 }),
    log: input.log,
  };
  if (r.log !== undefined && typeof r.log !== 'function') throw typeError('a function', 'log', r.log);
  // n choices decode side by side, so a request may not ask for more than the batch.
  r.maxN = o.maxN === undefined ? Math.min(SERVE_DEFAULTS.maxN, r.maxBatch) : expectInteger('maxN', o.maxN, { min: 1, max: r.maxBatch });
  return r;
}

/** The client went away: its request stops and frees its slots. */
class ClientGone extends Error {
  constructor() {
    super('The client closed the connection');
    this.name = 'ClientGone';
  }
}

const ROUTES: Record<string, string[]> = {
  '/health': ['GET', 'HEAD'],
  '/metrics': ['GET'],
  '/v1/models': ['GET'],
  '/v1/completions': ['POST'],
};

/** Starts serving `model`; resolves once the server listens. */
export async function serve(model: ServableModel, options: ServeOptions = {}): Promise<ServeHandle> {
  const o = resolveServeOptions(options);
  const codec = model.textCodec();
  const metrics = new ServerMetrics();
  metrics.info.set(1, { model: o.name });
  metrics.maxBatch.set(o.maxBatch);
  // The gauges: the model's own batch and queue when it reports them (a
  // GPT batches requests continuously), else what this server admitted.
  const updateGauges = () => {
    const b = model.batchStats?.();
    metrics.queueDepth.set(slots.waiting + (b ? b.queued : 0));
    metrics.batchSize.set(b ? b.batchSize : slots.inUse);
    if (b) {
      metrics.decodeSteps.set(b.steps);
      metrics.decodeStepSequences.set(b.stepRows);
      metrics.decodeSlots.set(b.slots);
      metrics.cacheBytes.set(b.cacheBytes);
    }
  };
  const slots: Slots = new Slots(o.maxBatch, o.maxQueue, () => updateGauges());
  const metricsText = () => {
    updateGauges();
    return metrics.text();
  };
  const loopback = isLoopbackHost(o.host);
  const active = new Set<AbortController>();
  let onIdle: (() => void) | null = null;
  let running = 0;
  let draining = false;

  const modelObject = (id: string) => ({ id, object: 'model', created: 0, owned_by: 'gpt-engine' });

  async function completion(req: http.IncomingMessage, res: http.ServerResponse, t0: number): Promise<void> {
    const type = req.headers['content-type'];
    if (typeof type !== 'string' || !/^application\/json\s*(;|$)/i.test(type))
      throw new ApiError(415, `Expected Content-Type: application/json but received ${type === undefined ? 'none' : JSON.stringify(type)}`, 'invalid_request_error', null, 'unsupported_media_type');
    const body = parseJson(await readBody(req, o.maxBodyBytes));
    const creq = parseCompletion(body, o.maxN);
    if (creq.model !== undefined && creq.model !== o.name)
      throw new ApiError(404, `The model ${JSON.stringify(creq.model)} does not exist: this server serves ${JSON.stringify(o.name)}`, 'invalid_request_error', 'model', 'model_not_found');
    const prepared = prepareCompletion(creq, model, codec);
    const ac = new AbortController();
    active.add(ac);
    res.once('close', () => {
      if (!res.writableFinished) ac.abort(new ClientGone());
    });
    // It may have gone while the body was read.
    if (res.destroyed || req.socket.destroyed) ac.abort(new ClientGone());
    let release: (() => void) | undefined;
    try {
      const tq = performance.now();
      try {
        release = await slots.acquire(creq.n, ac.signal);
      } catch (e) {
        if (!(e instanceof QueueFullError)) throw e;
        metrics.rejected.add(1);
        throw new ApiError(429, `${e.message}; retry later`, 'rate_limit_error', null, 'queue_full', { 'Retry-After': '1' });
      }
      metrics.queueWait.observe((performance.now() - tq) / 1000);
      running++;
      metrics.running.set(running);
      const ctx: CompletionContext = { model, codec, name: o.name, metrics, t0, signal: ac.signal };
      await (creq.stream ? completeStream(prepared, ctx, res) : completeJson(prepared, ctx, res));
      metrics.latency.observe((performance.now() - t0) / 1000);
    } catch (e) {
      const reason = ac.signal.aborted ? ac.signal.reason : undefined;
      if (reason instanceof ClientGone) metrics.aborted.add(1, { reason: 'client' });
      else {
        if (reason instanceof ShutdownAbort) metrics.aborted.add(1, { reason: 'shutdown' });
        throw reason instanceof ShutdownAbort ? reason : e;
      }
    } finally {
      if (release) {
        release();
        running--;
        metrics.running.set(running);
      }
      active.delete(ac);
      if (active.size === 0 && onIdle) onIdle();
    }
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const t0 = performance.now();
    const path = (req.url ?? '/').split('?')[0];
    const known = ROUTES[path] ?? (path.startsWith('/v1/models/') ? ['GET'] : undefined);
    res.once('close', () => {
      const label = ROUTES[path] ? path : known ? '/v1/models/{id}' : 'other';
      const code = res.headersSent ? String(res.statusCode) : '499';
      metrics.requests.add(1, { path: label, code });
      o.log?.(`${req.method} ${path} ${code} ${(performance.now() - t0).toFixed(0)} ms`);
    });
    try {
      if (loopback && !hostHeaderAllowed(req))
        throw new ApiError(403, `Expected a loopback Host header (localhost, 127.0.0.1, [::1]) on this loopback server but received ${JSON.stringify(req.headers.host ?? '')}`, 'invalid_request_error', null, 'forbidden_host');
      if (draining) {
        res.setHeader('Connection', 'close');
        if (path === '/health') return sendJson(res, 503, { status: 'draining' });
        throw new ApiError(503, 'The server is shutting down', 'server_error', null, 'shutting_down');
      }
      if (!known) throw new ApiError(404, `Unknown path ${path}: this server answers ${Object.keys(ROUTES).join(', ')}`, 'invalid_request_error', null, 'unknown_url');
      if (!known.includes(req.method ?? ''))
        throw new ApiError(405, `Expected ${known.join(' or ')} for ${path} but received ${req.method}`, 'invalid_request_error', null, 'method_not_allowed', { Allow: known.join(', ') });
      if (path === '/health') return sendJson(res, 200, { status: 'ok' });
      if (o.apiKey !== undefined && !hasKey(req, o.apiKey))
        throw new ApiError(
          401,
          `Expected a valid API key in the Authorization header (Bearer <key>) but received ${req.headers.authorization ? 'a wrong one' : 'none'}`,
          'invalid_request_error',
          null,
          'invalid_api_key',
          { 'WWW-Authenticate': 'Bearer' },
        );
      if (path === '/metrics') {
        const text = metricsText();
        res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
        return void res.end(text);
      }
      if (path === '/v1/models') return sendJson(res, 200, { object: 'list', data: [modelObject(o.name)] });
      if (path.startsWith('/v1/models/')) {
        const id = decodeURIComponent(path.slice('/v1/models/'.length));
        if (id !== o.name) throw new ApiError(404, `The model ${JSON.stringify(id)} does not exist: this server serves ${JSON.stringify(o.name)}`, 'invalid_request_error', 'model', 'model_not_found');
        return sendJson(res, 200, modelObject(id));
      }
      await completion(req, res, t0);
    } catch (e) {
      const err = toApiError(e);
      // A body left unread (413, 415, 401) would be parsed as the next request: close the connection.
      if (err.status === 413 || !req.complete) res.setHeader('Connection', 'close');
      sendError(res, err);
    }
  }

  const server = http.createServer({ noDelay: true }, (req, res) => void handle(req, res));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const hostText = addr.family === 'IPv6' || o.host.includes(':') ? `[${addr.address}]` : addr.address;
  const url = `http://${hostText}:${addr.port}`;

  let closing: Promise<void> | null = null;
  const abortAll = () => {
    for (const ac of active) ac.abort(new ShutdownAbort());
  };
  return {
    url,
    host: addr.address,
    port: addr.port,
    server,
    metricsText,
    close(opts = {}) {
      const drain = opts.drainSeconds === undefined ? o.drainSeconds : expectNumber('drainSeconds', opts.drainSeconds, { min: 0 });
      if (closing) {
        if (drain === 0) abortAll();
        return closing;
      }
      draining = true;
      closing = (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        if (active.size > 0) {
          const timer = setTimeout(abortAll, drain * 1000);
          await new Promise<void>((resolve) => (onIdle = resolve));
          clearTimeout(timer);
        }
        server.closeAllConnections();
        await closed;
      })();
      return closing;
    },
  };
}
