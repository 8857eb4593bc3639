/**
 * `gpt-engine serve`: an OpenAI-compatible HTTP server for one model
 * (docs/SERVING.md) — a checkpoint folder, or a preset with random weights
 * for benchmarks. Prints the URL on stdout once it listens; logs go to
 * stderr. Ctrl-C or SIGTERM stops accepting, lets running requests finish
 * for --drain-seconds, aborts the rest and exits 0; a second Ctrl-C aborts
 * at once.
 */
import { Command } from 'commander';
import * as path from 'node:path';
import { getPreset } from '../../lib/config';
import { DEVICE_CHOICES, PRECISIONS } from '../../lib/device';
import { ArgumentRangeError } from '../../lib/errors';
import { DEFAULT_PREFILL_CHUNK, MAX_PREFILL_CHUNK } from '../../lib/generate/scheduler';
import { CreateOptions, GPT } from '../../lib/model';
import { setThreads } from '../../lib/runtime';
import { serve, SERVE_DEFAULTS } from '../../lib/serve';
import { choiceFlag, deviceOptions, intFlag, log, numberFlag } from '../cli-util';

interface ServeFlags {
  checkpoint?: string;
  model?: string;
  name?: string;
  host: string;
  port: string;
  apiKey?: string;
  maxBatch: string;
  prefillChunk: string;
  maxQueue: string;
  maxN?: string;
  maxBody: string;
  drainSeconds: string;
  seed?: string;
  device?: string;
  precision?: string;
  threads?: string;
  logRequests?: boolean;
}

export function register(program: Command): void {
  deviceOptions(
    program
      .command('serve')
      .description('Serve a model over HTTP with the OpenAI completions API (POST /v1/completions, GET /v1/models, /health, /metrics)')
      .option('--checkpoint <dir>', 'checkpoint folder, run folder (its latest checkpoint) or Hugging Face GPT-2 folder')
      .option('--model <preset>', 'a preset (e.g. gpt2, tiny) with random weights, for benchmarks')
      .option('--name <id>', 'the model id clients send (default: the folder name or the preset)')
      .option('--host <host>', 'address to listen on; anything but loopback is reachable from the network', SERVE_DEFAULTS.host)
      .option('--port <n>', '0 picks a free port (printed)', String(SERVE_DEFAULTS.port))
      .option('--api-key <key>', 'require "Authorization: Bearer <key>" (default: $GPT_ENGINE_API_KEY; none when unset)')
      .option('--max-batch <n>', "most sequences decoded together (the decoder's batch); more wait in the queue", String(SERVE_DEFAULTS.maxBatch))
      .option('--prefill-chunk <n>', 'prompts longer than this many tokens are prefilled in chunks of this many, one between two decode steps', String(DEFAULT_PREFILL_CHUNK))
      .option('--max-queue <n>', 'most requests waiting; one more is answered 429 with Retry-After', String(SERVE_DEFAULTS.maxQueue))
      .option('--max-n <n>', `most completions (n) per request (default ${SERVE_DEFAULTS.maxN}, at most --max-batch)`)
      .option('--max-body <bytes>', 'largest request body; larger is answered 413', String(SERVE_DEFAULTS.maxBodyBytes))
      .option('--drain-seconds <s>', 'on Ctrl-C/SIGTERM: how long running requests may finish before they are aborted', String(SERVE_DEFAULTS.drainSeconds))
      .option('--seed <n>', 'with --model: seed of the random weights (default 0)')
      .option('--log-requests', 'one line per request on stderr'),
  )
    .action(async (f: ServeFlags) => {
      if ((f.checkpoint === undefined) === (f.model === undefined))
        throw new ArgumentRangeError(`Expected exactly one of --checkpoint or --model but received ${f.checkpoint === undefined ? 'neither' : 'both'}`);
      if (f.model !== undefined) getPreset(f.model);
      const device = choiceFlag('device', f.device, DEVICE_CHOICES);
      const precision = choiceFlag('precision', f.precision, PRECISIONS);
      const threads = intFlag('threads', f.threads, 1, 1024);
      const seed = intFlag('seed', f.seed, 0);
      if (seed !== undefined && f.model === undefined) throw new ArgumentRangeError('Expected --seed only with --model (it seeds random weights)');
      const maxBatch = intFlag('max-batch', f.maxBatch, 1, 4096)!;
      const prefillChunk = intFlag('prefill-chunk', f.prefillChunk, 1, MAX_PREFILL_CHUNK)!;
      const opts = {
        host: f.host,
        port: intFlag('port', f.port, 0, 65535)!,
        name: f.name ?? (f.model ?? path.basename(path.resolve(f.checkpoint!))),
        apiKey: f.apiKey ?? (process.env.GPT_ENGINE_API_KEY || undefined),
        maxBatch,
        maxQueue: intFlag('max-queue', f.maxQueue, 0)!,
        maxN: intFlag('max-n', f.maxN, 1, maxBatch),
        maxBodyBytes: intFlag('max-body', f.maxBody, 1)!,
        drainSeconds: numberFlag('drain-seconds', f.drainSeconds, { min: 0 })!,
        log: f.logRequests ? (line: string) => log(`serve: ${line}`) : undefined,
      };
      if (threads !== undefined) setThreads(threads);
      const base: CreateOptions = { device, precision, maxBatch, prefillChunk };
      const model =
        f.model !== undefined
          ? await GPT.create(f.model!, { ...base, seed: seed ?? 0 })
          : await GPT.load(f.checkpoint!, { ...base, optimizer: false });
      const handle = await serve(model, opts).catch(async (e: unknown) => {
        await model.dispose();
        throw e;
      });
      const what = f.model !== undefined ? `preset ${f.model} with random weights` : f.checkpoint;
      log(`serve: model "${opts.name}" (${what}; ${model.device}, ${model.precision}; tokenizer ${model.tokenizer ?? 'gpt2'})`);
      log(`serve: max batch ${maxBatch}, prefill chunk ${prefillChunk}, queue ${opts.maxQueue}${opts.apiKey ? ', API key required' : ''}`);
      if (!opts.apiKey && !/^(127\.|localhost$|::1$)/.test(f.host))
        log(`serve: warning: listening on ${f.host} without an API key: anyone who can reach this address can use the model`);
      process.stdout.write(`${handle.url}\n`);

      await new Promise<void>((resolve) => {
        let signals = 0;
        const stop = (sig: string) => {
          signals++;
          if (signals === 1) log(`serve: ${sig}: draining (up to ${opts.drainSeconds} s; again to abort now)`);
          else log(`serve: ${sig}: aborting running requests`);
          void handle.close(signals === 1 ? {} : { drainSeconds: 0 }).then(resolve);
        };
        process.on('SIGINT', () => stop('SIGINT'));
        process.on('SIGTERM', () => stop('SIGTERM'));
      });
      await model.dispose();
      log('serve: stopped');
      process.exitCode = 0;
    });
}
