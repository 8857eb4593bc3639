/**
 * Reading the inputs users have: plain text files (one document each) and
 * JSON Lines (one document per record, its text in one field), each either
 * as is or gzip-compressed (.gz, read through node:zlib). Everything here
 * streams: a text file of any size is read in chunks; a JSON line is held in
 * memory while it is parsed.
 *
 * Bad input is named by place, FILE:LINE (the line of the decompressed text
 * for .gz), and either stops the run or, with skipBad, is counted by kind.
 */
import { isUtf8 } from 'node:buffer';
import * as fs from 'node:fs';
import * as zlib from 'node:zlib';
import { BadFileError } from '../errors';
import { describe } from '../validate';
import { BAD_INPUT_KINDS, BadInputKind, InputFormat, SkippedMeta } from './dataset';

/** Read size for input files. */
export const READ_BYTES = 1 << 20;

/** The format of an input, from its name: .jsonl or .ndjson are JSON Lines, anything else text; .gz on top means gzip. */
export function formatOf(file: string): InputFormat {
  const gz = /\.gz$/i.test(file);
  const base = gz ? file.slice(0, -3) : file;
  const jsonl = /\.(jsonl|ndjson)$/i.test(base);
  return `${jsonl ? 'jsonl' : 'text'}${gz ? '.gz' : ''}` as InputFormat;
}

// ---------------------------------------------------------------------------
// Bad input

/** What was skipped, or the error for the first bad input when not skipping. */
export class BadInputs {
  readonly counts: Record<BadInputKind, number> = { invalid_utf8: 0, malformed_json: 0, missing_field: 0, not_string: 0, empty: 0 };
  readonly examples: string[] = [];

  constructor(readonly skip: boolean) {}

  /** Records a bad input at `where` (FILE:LINE or FILE); throws unless skipping. */
  report(kind: BadInputKind, where: string, detail: string): void {
    const text = `${where}: ${detail}`;
    if (!this.skip) throw new BadFileError(`${text} (pass --skip-bad to skip such input and count it)`);
    this.counts[kind]++;
    if (this.examples.length < 10) this.examples.push(text);
  }

  get total(): number {
    return BAD_INPUT_KINDS.reduce((a, k) => a + this.counts[k], 0);
  }

  meta(): SkippedMeta {
    return { total: this.total, ...this.counts, examples: this.examples.slice() };
  }
}

// ---------------------------------------------------------------------------
// UTF-8

/** Offset of the first byte that does not start a valid UTF-8 character, or -1 (a sequence cut by the end counts as invalid). */
export function firstInvalidUtf8(b: Uint8Array): number {
  const n = b.length;
  let i = 0;
  while (i < n) {
    const c = b[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) need = 1;
    else if (c >= 0xe0 && c <= 0xef) {
      need = 2;
      if (c === 0xe0) lo = 0xa0;
      else if (c === 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      need = 3;
      if (c === 0xf0) lo = 0x90;
      else if (c === 0xf4) hi = 0x8f;
    } else return i;
    if (i + need >= n) return i;
    if (b[i + 1] < lo || b[i + 1] > hi) return i;
    for (let k = 2; k <= need; k++) if ((b[i + k] & 0xc0) !== 0x80) return i;
    i += need + 1;
  }
  return -1;
}

/** Bytes at the end of `b` that begin a character the chunk does not finish. */
function unfinishedTail(b: Uint8Array): number {
  for (let i = b.length - 1; i >= Math.max(0, b.length - 3); i--) {
    const c = b[i];
    if ((c & 0xc0) === 0x80) continue;
    const len = c >= 0xf5 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 1;
    return i + len > b.length ? b.length - i : 0;
  }
  return 0;
}

function countLines(b: Uint8Array, end = b.length): number {
  let n = 0;
  for (let i = b.indexOf(10); i >= 0 && i < end; i = b.indexOf(10, i + 1)) n++;
  return n;
}

/** The bad sequence at i as hex: the lead byte and what follows it up to the byte that breaks it. */
function hexAt(b: Uint8Array, i: number): string {
  const c = b[i];
  const len = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xc2 && c <= 0xdf ? 2 : 1;
  let end = i + 1;
  while (end < Math.min(b.length, i + len)) if ((b[end++] & 0xc0) !== 0x80) break;
  return Array.from(b.subarray(i, end), (x) => x.toString(16).padStart(2, '0')).join(' ');
}

/**
 * Checks a text document as it streams: valid UTF-8 throughout. Counts its
 * bytes and lines so a bad byte is named by line.
 */
export class TextCheck {
  bytes = 0;
  private lines = 0;
  /** bytes after the last newline of what was checked */
  private column = 0;
  private carry: Buffer = Buffer.alloc(0);
  /** line of the first invalid byte (from 1), 0 while none */
  badLine = 0;
  badDetail = '';

  /** False once the document is known to be bad (stop reading). */
  feed(chunk: Uint8Array): boolean {
    const data = this.carry.length ? Buffer.concat([this.carry, chunk]) : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const tail = unfinishedTail(data);
    const body = data.subarray(0, data.length - tail);
    if (!isUtf8(body)) {
      const i = Math.max(0, firstInvalidUtf8(body));
      const nl = i > 0 ? body.lastIndexOf(10, i - 1) : -1;
      this.badLine = this.lines + countLines(body, i) + 1;
      this.badDetail = `invalid UTF-8 (bytes ${hexAt(body, i)} at byte ${(nl < 0 ? this.column + i : i - nl - 1) + 1} of the line)`;
      return false;
    }
    this.lines += countLines(body);
    const nl = body.lastIndexOf(10);
    this.column = nl < 0 ? this.column + body.length : body.length - nl - 1;
    this.bytes += chunk.length;
    this.carry = Buffer.from(data.subarray(data.length - tail));
    return true;
  }

  end(): void {
    if (!this.badLine && this.carry.length) {
      this.badLine = this.lines + 1;
      this.badDetail = `invalid UTF-8 (the file ends inside a character: bytes ${hexAt(this.carry, 0)})`;
    }
  }
}

// ---------------------------------------------------------------------------
// JSON Lines

/** Splits a byte stream into lines (without the newline), numbered from 1. */
export class LineSplitter {
  line = 0;
  private parts: Buffer[] = [];

  constructor(private readonly onLine: (bytes: Buffer, line: number) => void) {}

  feed(chunk: Uint8Array): void {
    const buf = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let start = 0;
    for (let i = buf.indexOf(10); i >= 0; i = buf.indexOf(10, start)) {
      const piece = buf.subarray(start, i);
      const bytes = this.parts.length ? Buffer.concat([...this.parts, piece]) : piece;
      this.parts = [];
      start = i + 1;
      this.onLine(bytes, ++this.line);
    }
    if (start < buf.length) this.parts.push(Buffer.from(buf.subarray(start)));
  }

  end(): void {
    if (this.parts.length) this.onLine(Buffer.concat(this.parts), ++this.line);
    this.parts = [];
  }
}

export type RecordResult = { text: string } | { bad: BadInputKind; detail: string } | null;

function isBlank(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c !== 32 && c !== 9 && c !== 13 && c !== 10) return false;
  }
  return true;
}

/** One JSON line: its text field, a bad record, or null for a blank line (ignored). */
export function parseRecord(bytes: Buffer, field: string, firstLine: boolean): RecordResult {
  if (!isUtf8(bytes)) {
    const at = Math.max(0, firstInvalidUtf8(bytes));
    return { bad: 'invalid_utf8', detail: `invalid UTF-8 (bytes ${hexAt(bytes, at)} at byte ${at + 1} of the line)` };
  }
  let s = bytes.toString('utf8');
  if (firstLine && s.charCodeAt(0) === 0xfeff) s = s.slice(1);
  if (isBlank(s)) return null;
  let v: unknown;
  try {
    v = JSON.parse(s);
  } catch (e) {
    return { bad: 'malformed_json', detail: `malformed JSON: ${(e as Error).message}` };
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v))
    return { bad: 'malformed_json', detail: `expected a JSON object per line but found ${Array.isArray(v) ? 'an array' : describe(v)}` };
  const rec = v as Record<string, unknown>;
  if (!Object.prototype.hasOwnProperty.call(rec, field)) {
    const keys = Object.keys(rec);
    const shown = keys.slice(0, 8).map((k) => JSON.stringify(k)).join(', ') + (keys.length > 8 ? ', ...' : '');
    return { bad: 'missing_field', detail: `the record has no ${JSON.stringify(field)} field (it has ${keys.length ? shown : 'no fields'}; choose the field with --text-field)` };
  }
  const text = rec[field];
  if (typeof text !== 'string') return { bad: 'not_string', detail: `expected a string in field ${JSON.stringify(field)} but found ${describe(text)}` };
  if (text === '') return { bad: 'empty', detail: `the text in field ${JSON.stringify(field)} is empty` };
  return { text };
}

// ---------------------------------------------------------------------------
// Reading files

/** Chunks of a file's content (decompressed for .gz); `onRead(n)` gets the bytes read from disk so far. */
export async function* readChunks(file: string, format: InputFormat, onRead: (diskBytes: number) => void): AsyncGenerator<Buffer> {
  const src = fs.createReadStream(file, { highWaterMark: READ_BYTES });
  if (!format.endsWith('.gz')) {
    try {
      for await (const chunk of src) {
        onRead(src.bytesRead);
        yield chunk as Buffer;
      }
    } catch (e) {
      throw new BadFileError(`Cannot read input ${file}: ${(e as Error).message}`, { cause: e });
    } finally {
      src.destroy();
    }
    return;
  }
  const gunzip = zlib.createGunzip({ chunkSize: READ_BYTES });
  src.on('error', (e) => gunzip.destroy(e));
  src.pipe(gunzip);
  let out = 0;
  try {
    for await (const chunk of gunzip) {
      out += (chunk as Buffer).length;
      onRead(src.bytesRead);
      yield chunk as Buffer;
    }
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (typeof err.code === 'string' && err.code.startsWith('Z_'))
      throw new BadFileError(`${file}: not valid gzip data after ${out} decompressed bytes (${err.message})`, { cause: e });
    throw new BadFileError(`Cannot read input ${file}: ${err.message}`, { cause: e });
  } finally {
    src.destroy();
    gunzip.destroy();
  }
}

/** The same, synchronously, for uncompressed files (the one reused buffer is valid until the next chunk). */
export function* readChunksSync(file: string, onRead: (diskBytes: number) => void): Generator<Buffer> {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    throw new BadFileError(`Cannot read input ${file}: ${(e as Error).message}`, { cause: e });
  }
  try {
    const buf = Buffer.alloc(READ_BYTES);
    let pos = 0;
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, pos);
      if (n === 0) return;
      pos += n;
      onRead(pos);
      yield buf.subarray(0, n);
    }
  } finally {
    fs.closeSync(fd);
  }
}
