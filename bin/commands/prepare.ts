/**
 * `gpt-engine prepare <inputs...> --out DIR`: tokenizes files, folders or
 * globs (each file one document) into train.bin, val.bin and meta.json,
 * streaming, with progress on stderr.
 */
import { Command } from 'commander';
import * as path from 'node:path';
import { ArgumentRangeError } from '../../lib/errors';
import { prepare, PrepareProgress } from '../../lib/data';
import { TokenizerName } from '../../lib/tokenizer';
import { commas, log, numberFlag, printJson } from '../cli-util';

export function register(program: Command): void {
  program
    .command('prepare')
    .description('Tokenize text files, folders or globs into train.bin, val.bin and meta.json')
    .argument('<inputs...>', 'files, folders (read recursively) or globs; each file is one document')
    .requiredOption('--out <dir>', 'output folder')
    .option('--tokenizer <name>', 'gpt2 (default) or byte', 'gpt2')
    .option('--val-fraction <x>', 'the last fraction of every document that goes to validation', '0.05')
    .option('--json', 'one JSON document (meta.json) on stdout')
    .action((inputs: string[], opts: Record<string, string | boolean | undefined>) => {
      const tokenizer = opts.tokenizer as string;
      if (tokenizer !== 'gpt2' && tokenizer !== 'byte')
        throw new ArgumentRangeError(`Expected one of gpt2, byte for --tokenizer but received "${tokenizer}"`);
      const valFraction = numberFlag('val-fraction', opts.valFraction as string, { gt: 0, max: 0.5 })!;
      const tty = process.stderr.isTTY === true;
      let lastPct = -1;
      const onProgress = (p: PrepareProgress) => {
        const pct = p.bytesTotal ? Math.floor((100 * p.bytesDone) / p.bytesTotal) : 100;
        const text = `${pct}%  ${commas(p.bytesDone)} / ${commas(p.bytesTotal)} bytes  ${commas(p.tokens)} tokens  file ${Math.min(p.filesDone + 1, p.filesTotal)}/${p.filesTotal}`;
        if (tty) process.stderr.write(`\r\x1b[K${text}`);
        else if (Math.floor(pct / 10) !== Math.floor(lastPct / 10)) log(text);
        lastPct = pct;
      };
      const meta = prepare(inputs, { out: opts.out as string, tokenizer: tokenizer as TokenizerName, valFraction, onProgress });
      if (tty) process.stderr.write('\n');
      const out = path.resolve(opts.out as string);
      log(
        `${meta.documents} document(s), ${commas(meta.bytes)} bytes -> ${commas(meta.train_tokens)} train + ${commas(meta.val_tokens)} val tokens (${meta.tokenizer}); unigram entropy ${meta.unigram_entropy.toFixed(4)} nats/token`,
      );
      log(`wrote ${path.join(out, 'train.bin')}\nwrote ${path.join(out, 'val.bin')}\nwrote ${path.join(out, 'meta.json')}`);
      if (opts.json) printJson(meta);
    });
}
