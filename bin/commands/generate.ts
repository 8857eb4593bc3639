/**
 * `gpt-engine generate`: continues a prompt with a trained model (our
 * checkpoint folder, a run folder, or a Hugging Face GPT-2 folder). Text
 * streams to stdout as it is made (chunks end on character boundaries);
 * with --json one document is written at the end instead. Statistics go to
 * stderr. Ctrl-C stops generation within one token and prints what was made.
 */
import { Command } from 'commander';
import * as fs from 'node:fs';
import { readTrainedSeq } from '../../lib/checkpoint';
import { ArgumentRangeError } from '../../lib/errors';
import { CONTEXT_OVERFLOW_CHOICES, DEFAULT_MAX_TOKENS, GenerateOptions, GenerationResult, GenerationStats, runGeneration } from '../../lib/generate';
import { DEVICE_CHOICES, PRECISIONS } from '../../lib/device';
import { GPT } from '../../lib/model';
import { setThreads } from '../../lib/runtime';
import { bytesText, choiceFlag, deviceOptions, intFlag, log, numberFlag, printJson } from '../cli-util';

interface GenerateFlags {
  checkpoint?: string;
  prompt?: string;
  promptFile?: string;
  maxTokens?: string;
  contextOverflow?: string;
  temperature?: string;
  topK?: string;
  topP?: string;
  seed?: string;
  stop: string[];
  ignoreEos?: boolean;
  device?: string;
  precision?: string;
  threads?: string;
  json?: boolean;
}

/** One line of statistics for stderr. */
export function statsLine(s: GenerationStats): string {
  const f = (x: number, d = 1) => x.toFixed(d);
  return (
    `prompt ${s.promptTokens} tokens, generated ${s.generatedTokens} tokens; ` +
    `time to first token ${f(s.timeToFirstTokenMs)} ms; ` +
    `prefill ${f(s.prefillTokensPerSecond)} tokens/s, decode ${f(s.decodeTokensPerSecond)} tokens/s, ` +
    `overall ${f(s.tokensPerSecond)} tokens/s; KV cache ${bytesText(s.cacheBytes)}; seed ${s.seed}`
  );
}

export function register(program: Command): void {
  deviceOptions(
    program
      .command('generate')
      .description('Continue a prompt with a trained model (checkpoint, run or Hugging Face GPT-2 folder)')
      .requiredOption('--checkpoint <dir>', 'checkpoint folder, run folder (its latest checkpoint) or Hugging Face GPT-2 folder')
      .option('--prompt <text>', 'the prompt')
      .option('--prompt-file <file>', 'read the prompt from a file (UTF-8)')
      .option('--max-tokens <n>', 'tokens to generate (default 100; may go past the context)')
      .option(
        '--context-overflow <mode>',
        'past the context: slide (go on from the most recent half of the context; default) or stop',
      )
      .option('--temperature <t>', 'softmax temperature; 0 = greedy (default 1)')
      .option('--top-k <k>', 'keep the k most likely tokens; 0 = off (default)')
      .option('--top-p <p>', 'keep the most likely tokens up to probability p; 1 = off (default)')
      .option('--seed <n>', 'sampling seed (default: random, printed with the stats)')
      .option('--stop <text>', 'stop before this text (repeatable)', (v: string, prev: string[]) => [...prev, v], [] as string[])
      .option('--ignore-eos', 'keep going after the end-of-text token')
      .option('--json', 'one JSON document on stdout at the end'),
  )
    .action(async (opts: GenerateFlags) => {
      if ((opts.prompt === undefined) === (opts.promptFile === undefined))
        throw new ArgumentRangeError(
          `Expected exactly one of --prompt or --prompt-file but received ${opts.prompt === undefined ? 'neither' : 'both'}`,
        );
      const device = choiceFlag('device', opts.device, DEVICE_CHOICES);
      const precision = choiceFlag('precision', opts.precision, PRECISIONS);
      const threads = intFlag('threads', opts.threads, 1, 1024);
      let prompt: string;
      if (opts.promptFile !== undefined) {
        try {
          prompt = fs.readFileSync(opts.promptFile, 'utf8');
        } catch (e) {
          throw new ArgumentRangeError(`Could not read --prompt-file "${opts.promptFile}": ${(e as Error).message}`);
        }
      } else prompt = opts.prompt as string;
      const gen: GenerateOptions = {};
      const maxTokens = intFlag('max-tokens', opts.maxTokens);
      if (maxTokens !== undefined) gen.maxTokens = maxTokens;
      const overflow = choiceFlag('context-overflow', opts.contextOverflow, CONTEXT_OVERFLOW_CHOICES);
      if (overflow !== undefined) gen.contextOverflow = overflow;
      const temperature = numberFlag('temperature', opts.temperature, { min: 0 });
      if (temperature !== undefined) gen.temperature = temperature;
      const topK = intFlag('top-k', opts.topK, 0);
      if (topK !== undefined) gen.topK = topK;
      const topP = numberFlag('top-p', opts.topP, { gt: 0, max: 1 });
      if (topP !== undefined) gen.topP = topP;
      const seed = intFlag('seed', opts.seed, 0);
      if (seed !== undefined) gen.seed = seed;
      if (opts.stop.length) gen.stop = opts.stop;
      if (opts.ignoreEos) gen.ignoreEos = true;

      if (threads !== undefined) setThreads(threads);
      const model = await GPT.load(opts.checkpoint as string, {
        device,
        precision,
        optimizer: false,
      });
      log(`model: ${opts.checkpoint} (${model.device}, ${model.precision}; ${model.deviceReason}); tokenizer ${model.tokenizer ?? 'gpt2'}`);
      const trained = await readTrainedSeq(opts.checkpoint as string);
      if (trained !== undefined && trained < model.config.n_positions) {
        const reach = model.textCodec().encode(prompt).length + (gen.maxTokens ?? DEFAULT_MAX_TOKENS);
        if (reach > trained)
          log(
            `warning: this checkpoint was trained on sequences of ${trained} tokens (context ${model.config.n_positions}); positions from ${trained} on were never trained, so text past ${trained} tokens will degrade`,
          );
      }

      // Ctrl-C: stop within one token and keep what was made.
      const ac = new AbortController();
      const onSigint = () => ac.abort();
      process.once('SIGINT', onSigint);
      let result: GenerationResult;
      try {
        const it = runGeneration(model.decoder(), model.textCodec(), prompt, { ...gen, signal: ac.signal, returnPartial: true });
        for (;;) {
          const n = await it.next();
          if (n.done) {
            result = n.value[0];
            break;
          }
          if (!opts.json && n.value.text) process.stdout.write(n.value.text);
        }
      } finally {
        process.removeListener('SIGINT', onSigint);
        await model.dispose();
      }
      if (opts.json) {
        printJson({
          checkpoint: opts.checkpoint,
          device: model.device,
          precision: model.precision,
          prompt,
          text: result.text,
          tokens: result.tokens,
          finish_reason: result.finishReason,
          stop_reason: result.stopReason,
          stats: result.stats,
        });
      } else {
        process.stdout.write('\n');
      }
      const slides = result.stats.contextSlides ? `; slid past the context ${result.stats.contextSlides}x` : '';
      log(statsLine(result.stats) + `; finished: ${result.finishReason} (${result.stopReason})${slides}`);
      if (result.finishReason === 'aborted') process.exitCode = 130;
    });
}
