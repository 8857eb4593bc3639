/**
 * `prepare`: text files, folders or globs, JSON Lines and gzip of either, to
 * train.bin, val.bin and meta.json in a folder.
 *
 * Two passes over the inputs. The first checks them (valid UTF-8, a JSON
 * object with a string field on every line, no empty file) and measures each
 * text document, so bad input is named by place before anything is written,
 * and a document of any size is split without holding it: the last
 * `valFraction` of its bytes, cut at a line or word boundary
 * (lib/data/segment.ts), goes to val.bin, the rest to train.bin. The second
 * pass tokenizes: on the calling thread with workers 1, else in worker
 * threads, chunk by chunk; the output is the same bytes for any number of
 * workers. Every text file and every JSON record is one document; with gpt2
 * the end-of-text token 50256 separates documents; the byte tokenizer has no
 * such token and its documents follow each other directly. Files are written
 * through lib/fsutil.ts under temporary names and put in place at the end, so
 * a failed prepare leaves the output folder as it was.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ArgumentRangeError, BadFileError } from '../errors';
import { writeJsonAtomicSync } from '../fsutil';
import { getTokenizer, Tokenizer, TokenizerName, TOKENIZER_NAMES } from '../tokenizer';
import { describe, expectBoolean, expectInteger, expectNumber, expectOneOf, expectString } from '../validate';
import { Assembler, Part } from './assemble';
import { BadInputKind, DataMeta, entropyOfCounts, InputFormat } from './dataset';
import { expandInputs } from './glob';
import { BadInputs, formatOf, LineSplitter, parseRecord, readChunks, readChunksSync, TextCheck } from './inputs';
import { splitOf, SplitRouter } from './segment';
import { bytesPerTokenFor, TokenFileWriter } from './tokenfile';

export interface PrepareOptions {
  out: string;
  tokenizer?: TokenizerName;
  valFraction?: number;
  /** tokenizing threads; 1 tokenizes on the calling thread; default: the number of cores */
  workers?: number;
  /** the field of each JSON Lines record that holds its text (default "text") */
  textField?: string;
  /** skip bad input (invalid UTF-8, malformed JSON lines, records without a string text, empty files) and count it, instead of failing */
  skipBad?: boolean;
  onProgress?: (p: PrepareProgress) => void;
  /** characters per chunk of work (tests use small ones to exercise chunking) */
  chunkBytes?: number;
}

export interface PrepareProgress {
  /** check: the first pass (validation, sizes); tokenize: the second */
  phase: 'check' | 'tokenize';
  file: string;
  /** input bytes read (on disk, so compressed for .gz) in this phase */
  bytesDone: number;
  bytesTotal: number;
  tokens: number;
  documents: number;
  filesDone: number;
  filesTotal: number;
  /** seconds since the phase began */
  seconds: number;
  /** the last report of the phase (its tokens are all written) */
  done: boolean;
}

export interface PrepareThroughput {
  /** the workers setting */
  workers: number;
  /** worker threads that ran (0: tokenized on the calling thread) */
  workers_started: number;
  /** the whole prepare, both passes */
  seconds: number;
  check_seconds: number;
  /** input bytes (on disk) per second of the whole prepare */
  bytes_per_second: number;
  tokens_per_second: number;
}

/** meta.json's content, with how fast it went (not written to meta.json, which is the same for any worker count). */
export type PrepareResult = DataMeta & { throughput: PrepareThroughput };

/** The default worker count: the cores this process may use. */
export function defaultWorkers(): number {
  return typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
}

/** Takes one input's content chunk by chunk; feed() returns false to stop reading early. */
interface Consumer {
  feed(chunk: Buffer): boolean;
  end(): void;
}

class Job {
  readonly tok: Tokenizer;
  readonly valFraction: number;
  readonly workers: number;
  readonly textField: string;
  readonly chunk: number;
  readonly out: string;
  readonly files: string[];
  readonly formats: InputFormat[];
  readonly diskBytes: number[];
  readonly bytesTotal: number;
  readonly bad: BadInputs;
  readonly textBytes: number[];
  readonly skipFile: boolean[];
  readonly skipped: number[];
  readonly documents: number[];
  readonly sourceTokens: number[];
  readonly unigram: Float64Array;
  private readonly onProgress?: (p: PrepareProgress) => void;
  private phase: 'check' | 'tokenize' = 'check';
  private readonly t0 = Date.now();
  private phaseStart = Date.now();
  private checkSeconds = 0;
  private current = 0;
  private doneBefore = 0;
  private currentBytes = 0;
  private lastReport = 0;
  private docTotal = 0;
  private writers: [TokenFileWriter, TokenFileWriter] | null = null;
  private asm: Assembler | null = null;
  private createdOut = false;

  constructor(inputs: string[], opts: PrepareOptions, sync: boolean) {
    if (opts === null || typeof opts !== 'object') throw new ArgumentRangeError(`Expected an options object with out for options but received ${describe(opts)}`);
    const tokName = expectOneOf('tokenizer', opts.tokenizer ?? 'gpt2', TOKENIZER_NAMES);
    this.tok = getTokenizer(tokName);
    this.valFraction = expectNumber('valFraction', opts.valFraction ?? 0.05, { gt: 0, max: 0.5 });
    this.workers = expectInteger('workers', opts.workers ?? (sync ? 1 : defaultWorkers()), { min: 1, max: 1024 });
    if (sync && this.workers !== 1)
      throw new ArgumentRangeError(`Expected workers 1 for prepareSync (it tokenizes on the calling thread) but received ${describe(opts.workers)}; use prepare() for worker threads`);
    this.textField = expectString('textField', opts.textField ?? 'text', { nonEmpty: true });
    this.bad = new BadInputs(expectBoolean('skipBad', opts.skipBad ?? false));
    this.chunk = expectInteger('chunkBytes', opts.chunkBytes ?? 1 << 20, { min: 16 });
    if (typeof opts.out !== 'string' || !opts.out) throw new ArgumentRangeError(`Expected a folder for out but received ${describe(opts.out)}`);
    this.out = opts.out;
    if (fs.existsSync(this.out) && !fs.statSync(this.out).isDirectory()) throw new BadFileError(`--out ${this.out} is a file, not a folder`);
    this.onProgress = opts.onProgress;
    this.files = expandInputs(inputs);
    this.formats = this.files.map(formatOf);
    if (sync) {
      const gz = this.files.find((f, i) => this.formats[i].endsWith('.gz'));
      if (gz !== undefined) throw new ArgumentRangeError(`Expected uncompressed inputs for prepareSync but received ${gz}; use prepare() for .gz inputs`);
    }
    this.diskBytes = this.files.map((f) => {
      try {
        fs.accessSync(f, fs.constants.R_OK);
        return fs.statSync(f).size;
      } catch (e) {
        throw new BadFileError(`Cannot read input ${f}: ${(e as Error).message}`);
      }
    });
    this.bytesTotal = this.diskBytes.reduce((a, b) => a + b, 0);
    const n = this.files.length;
    this.textBytes = new Array<number>(n).fill(0);
    this.skipFile = new Array<boolean>(n).fill(false);
    this.skipped = new Array<number>(n).fill(0);
    this.documents = new Array<number>(n).fill(0);
    this.sourceTokens = new Array<number>(n).fill(0);
    this.unigram = new Float64Array(this.tok.vocabSize);
  }

  // -- progress ---------------------------------------------------------------

  beginPhase(phase: 'check' | 'tokenize'): void {
    if (phase === 'tokenize') {
      this.endPhase();
      this.checkSeconds = (Date.now() - this.t0) / 1000;
    }
    this.phase = phase;
    this.phaseStart = Date.now();
    this.lastReport = 0;
    this.doneBefore = 0;
    this.currentBytes = 0;
    this.current = 0;
  }

  beginFile(i: number): void {
    this.current = i;
    this.doneBefore = this.diskBytes.slice(0, i).reduce((a, b) => a + b, 0);
    this.currentBytes = 0;
    this.report(false);
  }

  read(diskBytes: number): void {
    this.currentBytes = diskBytes;
    this.report(false);
  }

  private endPhase(): void {
    this.current = this.files.length;
    this.doneBefore = this.bytesTotal;
    this.currentBytes = 0;
    this.report(true);
  }

  private report(force: boolean): void {
    if (!this.onProgress) return;
    const now = Date.now();
    if (!force && now - this.lastReport < 200) return;
    this.lastReport = now;
    this.onProgress({
      phase: this.phase,
      file: this.files[Math.min(this.current, this.files.length - 1)],
      bytesDone: Math.min(this.bytesTotal, this.doneBefore + this.currentBytes),
      bytesTotal: this.bytesTotal,
      tokens: this.asm ? this.asm.tokens : 0,
      documents: this.docTotal,
      filesDone: this.current,
      filesTotal: this.files.length,
      seconds: (now - this.phaseStart) / 1000,
      done: force,
    });
  }

  // -- the first pass ---------------------------------------------------------

  private fileBad(i: number, kind: BadInputKind, where: string, detail: string): void {
    this.bad.report(kind, where, detail);
    this.skipFile[i] = true;
    this.skipped[i]++;
  }

  checker(i: number): Consumer {
    const file = this.files[i];
    if (this.formats[i].startsWith('jsonl')) {
      let records = 0;
      const lines = new LineSplitter((bytes, line) => {
        const r = parseRecord(bytes, this.textField, line === 1);
        if (r === null) return;
        if ('bad' in r) {
          this.bad.report(r.bad, `${file}:${line}`, r.detail);
          this.skipped[i]++;
        } else records++;
      });
      return {
        feed: (c) => (lines.feed(c), true),
        end: () => {
          lines.end();
          if (records === 0 && this.skipped[i] === 0) this.fileBad(i, 'empty', file, 'empty file (no JSON records)');
          else if (records === 0) this.skipFile[i] = true;
        },
      };
    }
    const check = new TextCheck();
    return {
      feed: (c) => check.feed(c),
      end: () => {
        check.end();
        if (check.badLine) this.fileBad(i, 'invalid_utf8', `${file}:${check.badLine}`, check.badDetail);
        else if (check.bytes === 0) this.fileBad(i, 'empty', file, 'empty file');
        else this.textBytes[i] = check.bytes;
      },
    };
  }

  // -- the second pass --------------------------------------------------------

  openOutput(): Assembler {
    this.createdOut = !fs.existsSync(this.out);
    fs.mkdirSync(this.out, { recursive: true });
    const train = new TokenFileWriter(path.join(this.out, 'train.bin'), this.tok.name);
    let val: TokenFileWriter;
    try {
      val = new TokenFileWriter(path.join(this.out, 'val.bin'), this.tok.name);
    } catch (e) {
      train.abort();
      throw e;
    }
    this.writers = [train, val];
    this.asm = new Assembler(this.tok, this.writers, this.chunk, this.workers, { unigram: this.unigram, sourceTokens: this.sourceTokens });
    return this.asm;
  }

  tokenizer(i: number): Consumer {
    const file = this.files[i];
    const asm = this.asm!;
    if (this.formats[i].startsWith('jsonl')) {
      const lines = new LineSplitter((bytes, line) => {
        const r = parseRecord(bytes, this.textField, line === 1);
        if (r === null) return;
        if ('bad' in r) {
          if (!this.bad.skip) throw new BadFileError(`${file}:${line} changed while being prepared: ${r.detail}`);
          return;
        }
        this.documents[i]++;
        this.docTotal++;
        this.record(r.text, i);
      });
      return { feed: (c) => (lines.feed(c), true), end: () => lines.end() };
    }
    this.documents[i]++;
    this.docTotal++;
    const parts = [new Part(asm, 0, i), new Part(asm, 1, i)];
    const router = new SplitRouter(this.textBytes[i], this.valFraction, { bytes: (d, b) => parts[d].bytes(b), end: (d) => parts[d].end() });
    return {
      feed: (c) => (router.push(c), true),
      end: () => {
        if (!router.end()) throw new BadFileError(`${file} changed while being prepared: it had ${this.textBytes[i]} bytes of text when checked and ${router.position} now`);
      },
    };
  }

  /** One JSON record's text: split and handed over as two parts. */
  private record(text: string, source: number): void {
    const bytes = Buffer.from(text, 'utf8');
    const split = splitOf(bytes, this.valFraction);
    const ascii = bytes.length === text.length;
    const ranges: [0 | 1, number, number][] = [
      [0, 0, split],
      [1, split, bytes.length],
    ];
    for (const [dest, a, b] of ranges) {
      if (b <= a) continue;
      const part = new Part(this.asm!, dest, source);
      if (!this.asm!.textual) part.bytes(bytes.subarray(a, b));
      else part.text(ascii ? text.slice(a, b) : bytes.toString('utf8', a, b));
      part.end();
    }
  }

  finish(): PrepareResult {
    const [train, val] = this.writers!;
    const skipped = this.bad.total ? `, ${this.bad.total} bad input(s) skipped` : '';
    if (train.tokens === 0) throw new BadFileError(`The input produced no training tokens (${this.files.length} file(s), ${this.bytesTotal} bytes${skipped})`);
    if (val.tokens === 0)
      throw new BadFileError(
        `The input produced no validation tokens: ${this.bytesTotal} bytes with --val-fraction ${this.valFraction} leave nothing to validate on; raise --val-fraction or add text`,
      );
    const meta: DataMeta = {
      format: 'gpt-engine-data',
      version: 2,
      tokenizer: this.tok.name,
      vocab_size: this.tok.vocabSize,
      bytes_per_token: bytesPerTokenFor(this.tok.vocabSize),
      val_fraction: this.valFraction,
      documents: this.docTotal,
      tokens: train.tokens + val.tokens,
      bytes: this.bytesTotal,
      train_tokens: train.tokens,
      val_tokens: val.tokens,
      unigram_entropy: entropyOfCounts(this.unigram),
      ...(this.formats.some((f) => f.startsWith('jsonl')) ? { text_field: this.textField } : {}),
      skipped: this.bad.meta(),
      sources: this.files.map((f, i) => ({
        path: path.resolve(f),
        format: this.formats[i],
        bytes: this.diskBytes[i],
        documents: this.documents[i],
        tokens: this.sourceTokens[i],
        skipped: this.skipped[i],
      })),
    };
    train.finish();
    val.finish();
    writeJsonAtomicSync(path.join(this.out, 'meta.json'), meta);
    this.endPhase();
    const seconds = Math.max(1e-3, (Date.now() - this.t0) / 1000);
    const throughput: PrepareThroughput = {
      workers: this.workers,
      workers_started: this.asm!.workersStarted,
      seconds,
      check_seconds: this.checkSeconds,
      bytes_per_second: this.bytesTotal / seconds,
      tokens_per_second: meta.tokens / seconds,
    };
    return { ...meta, throughput };
  }

  abort(): void {
    for (const w of this.writers ?? []) w.abort();
    if (this.createdOut) fs.rmSync(this.out, { recursive: true, force: true });
  }
}

/**
 * Tokenizes files, folders or globs (each text file or JSON record one
 * document) into `out`/train.bin, val.bin and meta.json, with `workers`
 * worker threads. Resolves to meta.json's content and the throughput.
 */
export async function prepare(inputs: string[], opts: PrepareOptions): Promise<PrepareResult> {
  const job = new Job(inputs, opts, false);
  job.beginPhase('check');
  for (let i = 0; i < job.files.length; i++) {
    job.beginFile(i);
    const c = job.checker(i);
    for await (const chunk of readChunks(job.files[i], job.formats[i], (n) => job.read(n))) if (!c.feed(chunk)) break;
    c.end();
  }
  job.beginPhase('tokenize');
  const asm = job.openOutput();
  try {
    for (let i = 0; i < job.files.length; i++) {
      job.beginFile(i);
      if (job.skipFile[i]) continue;
      const c = job.tokenizer(i);
      for await (const chunk of readChunks(job.files[i], job.formats[i], (n) => job.read(n))) {
        c.feed(chunk);
        if (asm.full) await asm.drain();
      }
      c.end();
    }
    await asm.finish();
    return job.finish();
  } catch (e) {
    job.abort();
    throw e;
  } finally {
    await asm.close();
  }
}

/**
 * prepare() on the calling thread, synchronously: the same output, for
 * uncompressed inputs (text and JSON Lines) and workers 1.
 */
export function prepareSync(inputs: string[], opts: PrepareOptions): PrepareResult {
  const job = new Job(inputs, opts, true);
  job.beginPhase('check');
  for (let i = 0; i < job.files.length; i++) {
    job.beginFile(i);
    const c = job.checker(i);
    for (const chunk of readChunksSync(job.files[i], (n) => job.read(n))) if (!c.feed(chunk)) break;
    c.end();
  }
  job.beginPhase('tokenize');
  const asm = job.openOutput();
  try {
    for (let i = 0; i < job.files.length; i++) {
      job.beginFile(i);
      if (job.skipFile[i]) continue;
      const c = job.tokenizer(i);
      for (const chunk of readChunksSync(job.files[i], (n) => job.read(n))) c.feed(chunk);
      c.end();
    }
    asm.finishSync();
    return job.finish();
  } catch (e) {
    job.abort();
    throw e;
  }
}
