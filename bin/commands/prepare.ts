/**
 * `gpt-engine prepare <inputs...> --out DIR`: tokenizes text files, folders,
 * globs, JSON Lines and gzip of either (each text file or JSON record one
 * document) into train.bin, val.bin and meta.json, on all cores, with a
 * progress bar on stderr.
 */
import { Command } from 'commander';
import * as path from 'node:path';
import { ArgumentRangeError } from '../../lib/errors';
import { BAD_INPUT_KINDS, defaultWorkers, prepare, PrepareProgress } from '../../lib/data';
import { TokenizerName } from '../../lib/tokenizer';
import { commas, intFlag, log, numberFlag, printJson } from '../cli-util';

function clock(seconds: number): string {
  if (!Number.isFinite(seconds)) return '--:--';
  const s = Math.round(seconds);
  const hms = [Math.floor(s / 3600), Math.floor(s / 60) % 60, s % 60];
  return (hms[0] ? `${hms[0]}:` : '') + hms.slice(1).map((x, i) => (i === 0 && !hms[0] ? String(x) : String(x).padStart(2, '0'))).join(':');
}

function mb(bytes: number): string {
  return (bytes / 1e6).toFixed(1);
}

/** One progress line: phase, bar (on a terminal), percent, MB, MB/s, ETA, tokens. */
export function progressText(p: PrepareProgress, bar: boolean): string {
  const frac = p.bytesTotal ? Math.min(1, p.bytesDone / p.bytesTotal) : 1;
  const rate = p.seconds > 0 ? p.bytesDone / p.seconds : 0;
  const eta = rate > 0 ? (p.bytesTotal - p.bytesDone) / rate : Infinity;
  const width = 24;
  const filled = Math.round(frac * width);
  return [
    p.phase.padEnd(8),
    bar ? `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]` : '',
    `${String(Math.floor(frac * 100)).padStart(3)}%`,
    `${mb(p.bytesDone)}/${mb(p.bytesTotal)} MB`,
    `${mb(rate)} MB/s`,
    `ETA ${frac >= 1 ? '0:00' : clock(eta)}`,
    p.phase === 'tokenize' ? `${commas(p.tokens)} tokens` : '',
    `file ${Math.min(p.filesDone + 1, p.filesTotal)}/${p.filesTotal}`,
  ]
    .filter(Boolean)
    .join('  ');
}

export function register(program: Command): void {
  program
    .command('prepare')
    .description('Tokenize text files, JSON Lines (.jsonl) and their .gz into train.bin, val.bin and meta.json')
    .argument('<inputs...>', 'files, folders (read recursively) or globs; each text file, and each JSON Lines record, is one document')
    .requiredOption('--out <dir>', 'output folder')
    .option('--tokenizer <name>', 'gpt2 (default) or byte', 'gpt2')
    .option('--val-fraction <x>', 'the last fraction of every document that goes to validation', '0.05')
    .option('--workers <n>', `tokenizing threads; 1 tokenizes on the main thread (default: the core count, ${defaultWorkers()} here)`)
    .option('--text-field <name>', 'the field of each JSON Lines record that holds its text', 'text')
    .option('--skip-bad', 'skip bad input (invalid UTF-8, malformed JSON lines, records without the text field, empty files) and count it, instead of stopping')
    .option('--json', 'one JSON document (meta.json and the throughput) on stdout')
    .action(async (inputs: string[], opts: Record<string, string | boolean | undefined>) => {
      const tokenizer = opts.tokenizer as string;
      if (tokenizer !== 'gpt2' && tokenizer !== 'byte')
        throw new ArgumentRangeError(`Expected one of gpt2, byte for --tokenizer but received "${tokenizer}"`);
      const valFraction = numberFlag('val-fraction', opts.valFraction as string, { gt: 0, max: 0.5 })!;
      const workers = intFlag('workers', opts.workers as string | undefined, 1, 1024) ?? defaultWorkers();
      const textField = opts.textField as string;
      if (!textField) throw new ArgumentRangeError('Expected a field name for --text-field but received ""');
      const tty = process.stderr.isTTY === true;
      let lastTenth = -1;
      let lastPhase = '';
      const onProgress = (p: PrepareProgress) => {
        const frac = p.bytesTotal ? p.bytesDone / p.bytesTotal : 1;
        if (tty) {
          if (lastPhase && p.phase !== lastPhase) process.stderr.write('\n');
          process.stderr.write(`\r\x1b[K${progressText(p, true)}`);
        } else if (p.done || (frac < 1 && (p.phase !== lastPhase || Math.floor(frac * 10) !== lastTenth))) log(progressText(p, false));
        lastPhase = p.phase;
        lastTenth = Math.floor(frac * 10);
      };
      const r = await prepare(inputs, {
        out: opts.out as string,
        tokenizer: tokenizer as TokenizerName,
        valFraction,
        workers,
        textField,
        skipBad: opts.skipBad === true,
        onProgress,
      });
      if (tty) process.stderr.write('\n');
      const out = path.resolve(opts.out as string);
      const t = r.throughput;
      log(
        `${commas(r.documents)} document(s), ${commas(r.bytes)} bytes -> ${commas(r.train_tokens)} train + ${commas(r.val_tokens)} val tokens (${r.tokenizer}); unigram entropy ${r.unigram_entropy.toFixed(4)} nats/token`,
      );
      log(
        `${t.seconds.toFixed(1)} s (check ${t.check_seconds.toFixed(1)} s): ${mb(t.bytes_per_second)} MB/s, ${commas(t.tokens_per_second)} tokens/s, ${t.workers} worker(s)`,
      );
      if (r.skipped.total) {
        const kinds = BAD_INPUT_KINDS.filter((k) => r.skipped[k]).map((k) => `${r.skipped[k]} ${k.replace(/_/g, ' ')}`);
        log(`skipped ${r.skipped.total} bad input(s): ${kinds.join(', ')}; the first:\n  ${r.skipped.examples.slice(0, 5).join('\n  ')}`);
      }
      log(`wrote ${path.join(out, 'train.bin')}\nwrote ${path.join(out, 'val.bin')}\nwrote ${path.join(out, 'meta.json')}`);
      if (opts.json) printJson(r);
    });
}
