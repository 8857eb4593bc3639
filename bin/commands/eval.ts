/**
 * `gpt-engine eval --checkpoint DIR [--data DIR]`: mean loss and perplexity
 * of a checkpoint over a prepared split (by default the validation split of
 * the data it was trained on).
 */
import { Command } from 'commander';
import { ArgumentRangeError } from '../../lib/errors';
import { evaluateCheckpoint } from '../../lib/trainer';
import { deviceOptions, intFlag, log, printJson } from '../cli-util';

export function register(program: Command): void {
  deviceOptions(
    program
      .command('eval')
      .description('Loss and perplexity of a checkpoint on prepared data')
      .requiredOption('--checkpoint <dir>', 'a checkpoint, run or Hugging Face GPT-2 folder')
      .option('--data <dir>', 'prepared data folder (default: the data the checkpoint was trained on, else the built-in corpus)')
      .option('--split <name>', 'val (default) or train')
      .option('--batch <n>', 'sequences per batch (default 8)')
      .option('--seq <n>', 'tokens per window (default: the training seq, at most the context)')
      .option('--max-windows <n>', 'windows evaluated, spread over the split (default 512)')
      .option('--json', 'one JSON document on stdout'),
  )
    .action(async (opts: Record<string, string | boolean | undefined>) => {
      const split = opts.split as string | undefined;
      if (split !== undefined && split !== 'val' && split !== 'train')
        throw new ArgumentRangeError(`Expected one of val, train for --split but received "${split}"`);
      if (opts.device !== undefined && !['auto', 'cpu', 'cuda'].includes(opts.device as string))
        throw new ArgumentRangeError(`Expected one of auto, cpu, cuda for --device but received "${opts.device}"`);
      if (opts.precision !== undefined && !['fp32', 'bf16'].includes(opts.precision as string))
        throw new ArgumentRangeError(`Expected one of fp32, bf16 for --precision but received "${opts.precision}"`);
      const r = await evaluateCheckpoint({
        checkpoint: opts.checkpoint as string,
        ...(opts.data !== undefined ? { data: opts.data as string } : {}),
        ...(split ? { split: split as 'val' | 'train' } : {}),
        batch: intFlag('batch', opts.batch as string | undefined),
        seq: intFlag('seq', opts.seq as string | undefined),
        maxWindows: intFlag('max-windows', opts.maxWindows as string | undefined),
        device: opts.device as string | undefined,
        precision: opts.precision as string | undefined,
        threads: intFlag('threads', opts.threads as string | undefined, 1, 1024),
        log,
      });
      if (opts.json) {
        printJson({
          checkpoint: r.checkpoint,
          data: r.data,
          split: r.split,
          tokenizer: r.tokenizer,
          loss: r.loss,
          perplexity: r.perplexity,
          tokens: r.tokens,
          windows: r.windows,
          seq: r.seq,
          unigram_entropy: r.unigramEntropy,
          seconds: r.seconds,
        });
        return;
      }
      process.stdout.write(
        `checkpoint: ${r.checkpoint}\ndata: ${r.data} (${r.split}, ${r.tokenizer})\n` +
          `loss: ${r.loss.toFixed(4)} nats/token\nperplexity: ${r.perplexity.toFixed(2)}\n` +
          `evaluated: ${r.tokens} tokens (${r.windows} windows of ${r.seq})\nunigram entropy: ${r.unigramEntropy.toFixed(4)} nats/token\n`,
      );
    });
}
