/**
 * The token file format (docs/ARCHITECTURE.md "token data"), little-endian,
 * 64-byte header:
 *   0  8  magic "GPTETOK1"
 *   8  4  version (1)
 *  12  4  tokenizer id (1 gpt2, 2 byte)
 *  16  4  vocabulary size
 *  20  4  bytes per token (2, or 4 when the vocabulary exceeds 65,535)
 *  24  8  token count
 *  32 32  reserved, zero
 * then `count` unsigned tokens. Files are read with positional reads (small
 * ones are cached whole), never loaded whole when large, and written through
 * lib/fsutil.ts (temporary file, fsync, rename), so a reader never sees a torn
 * file.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { ArgumentRangeError, BadFileError } from '../errors';
import { AtomicFileWriterSync } from '../fsutil';
import { getTokenizer, Tokenizer, TokenizerName, tokenizerById } from '../tokenizer';
import { describe } from '../validate';

export const TOKEN_MAGIC = 'GPTETOK1';
export const TOKEN_FORMAT_VERSION = 1;
export const TOKEN_HEADER_BYTES = 64;
/** Files up to this size are read into memory once; larger ones by positional reads. */
export const CACHE_WHOLE_BYTES = 64 * 1024 * 1024;

export interface TokenHeader {
  version: number;
  tokenizerId: number;
  tokenizer: TokenizerName;
  vocabSize: number;
  bytesPerToken: 2 | 4;
  count: number;
}

export function bytesPerTokenFor(vocabSize: number): 2 | 4 {
  return vocabSize > 65535 ? 4 : 2;
}

/** The 64-byte header for a token file. */
export function encodeHeader(h: { tokenizer: TokenizerName; vocabSize: number; count: number }): Buffer {
  const tok = getTokenizer(h.tokenizer);
  const buf = Buffer.alloc(TOKEN_HEADER_BYTES);
  buf.write(TOKEN_MAGIC, 0, 'latin1');
  buf.writeUInt32LE(TOKEN_FORMAT_VERSION, 8);
  buf.writeUInt32LE(tok.id, 12);
  buf.writeUInt32LE(h.vocabSize, 16);
  buf.writeUInt32LE(bytesPerTokenFor(h.vocabSize), 20);
  buf.writeBigUInt64LE(BigInt(h.count), 24);
  return buf;
}

/**
 * Parses and checks a header (any Buffer; safe on arbitrary bytes). `where`
 * names the file in messages. Throws BadFileError.
 */
export function parseHeader(buf: Uint8Array, where = 'token file'): TokenHeader {
  if (!(buf instanceof Uint8Array)) throw new ArgumentRangeError(`Expected a Buffer for header but received ${describe(buf)}`);
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length < TOKEN_HEADER_BYTES)
    throw new BadFileError(`${where} is not a gpt-engine token file: it has ${b.length} bytes, fewer than the ${TOKEN_HEADER_BYTES}-byte header`);
  const magic = b.toString('latin1', 0, 8);
  if (magic !== TOKEN_MAGIC)
    throw new BadFileError(`${where} is not a gpt-engine token file: expected the magic "${TOKEN_MAGIC}" but found ${JSON.stringify(magic)} (prepare it with gpt-engine prepare)`);
  const version = b.readUInt32LE(8);
  if (version !== TOKEN_FORMAT_VERSION)
    throw new BadFileError(`${where} has token format version ${version}; this gpt-engine reads version ${TOKEN_FORMAT_VERSION}`);
  const tokenizerId = b.readUInt32LE(12);
  const tok = tokenizerById(tokenizerId);
  if (!tok) throw new BadFileError(`${where} names tokenizer id ${tokenizerId}, which is not one of 1 (gpt2), 2 (byte)`);
  const vocabSize = b.readUInt32LE(16);
  if (vocabSize !== tok.vocabSize)
    throw new BadFileError(`${where} says vocabulary size ${vocabSize}, but the ${tok.name} tokenizer has ${tok.vocabSize}`);
  const bpt = b.readUInt32LE(20);
  if (bpt !== bytesPerTokenFor(vocabSize))
    throw new BadFileError(`${where} says ${bpt} bytes per token; a vocabulary of ${vocabSize} uses ${bytesPerTokenFor(vocabSize)}`);
  const count64 = b.readBigUInt64LE(24);
  if (count64 > BigInt(Number.MAX_SAFE_INTEGER)) throw new BadFileError(`${where} says it holds ${count64} tokens, more than this reader handles`);
  for (let i = 32; i < TOKEN_HEADER_BYTES; i++)
    if (b[i] !== 0) throw new BadFileError(`${where} has non-zero reserved header bytes (offset ${i}); the file is corrupted or from a newer gpt-engine`);
  return { version, tokenizerId, tokenizer: tok.name, vocabSize, bytesPerToken: bpt as 2 | 4, count: Number(count64) };
}

// ---------------------------------------------------------------------------
// Writing

/**
 * Appends tokens to a token file; `finish()` writes the header and puts the
 * file in place durably (lib/fsutil.ts), `abort()` drops it.
 */
export class TokenFileWriter {
  readonly path: string;
  readonly tokenizer: Tokenizer;
  private file: AtomicFileWriterSync;
  private count = 0;
  private buf: Uint16Array | Uint32Array;
  private used = 0;
  private pos = TOKEN_HEADER_BYTES;

  constructor(file: string, tokenizer: TokenizerName) {
    this.path = file;
    this.tokenizer = getTokenizer(tokenizer);
    this.file = new AtomicFileWriterSync(file);
    this.buf = bytesPerTokenFor(this.tokenizer.vocabSize) === 2 ? new Uint16Array(1 << 20) : new Uint32Array(1 << 20);
  }

  /** The temporary file the tokens go to until finish(). */
  get tmpPath(): string {
    return this.file.tmpPath;
  }

  get tokens(): number {
    return this.count;
  }

  write(tokens: ArrayLike<number>): void {
    const V = this.tokenizer.vocabSize;
    for (let i = 0; i < tokens.length; i++) {
      const t = tokens[i];
      if (!(t >= 0 && t < V && Number.isInteger(t)))
        throw new ArgumentRangeError(`Expected token ids between 0 and ${V - 1} for token ${this.count + i} of ${this.path} but received ${describe(t)}`);
      if (this.used === this.buf.length) this.flush();
      this.buf[this.used++] = t;
    }
    this.count += tokens.length;
  }

  private flush(): void {
    if (!this.used) return;
    const bytes = Buffer.from(this.buf.buffer, 0, this.used * this.buf.BYTES_PER_ELEMENT);
    if (os.endianness() !== 'LE') (this.buf.BYTES_PER_ELEMENT === 2 ? bytes.swap16() : bytes.swap32());
    this.file.writeAt(bytes, this.pos);
    this.pos += bytes.length;
    this.used = 0;
  }

  /** Writes the header and puts the file in place (fsync, rename, folder fsync). */
  finish(): void {
    this.flush();
    this.file.writeAt(encodeHeader({ tokenizer: this.tokenizer.name, vocabSize: this.tokenizer.vocabSize, count: this.count }), 0);
    this.file.commit();
  }

  /** Drops the temporary file (after an error). */
  abort(): void {
    this.file.abort();
  }
}

/** Writes a whole token array as one file (tests, small data). */
export function writeTokenFile(file: string, tokens: ArrayLike<number>, tokenizer: TokenizerName): void {
  const w = new TokenFileWriter(file, tokenizer);
  try {
    w.write(tokens);
    w.finish();
  } catch (e) {
    w.abort();
    throw e;
  }
}

// ---------------------------------------------------------------------------
// Reading

/** A token file open for positional reads. */
export class TokenFile {
  readonly path: string;
  readonly header: TokenHeader;
  private fd: number | null;
  private cache: Uint16Array | Uint32Array | null = null;
  private scratch = Buffer.alloc(0);

  private constructor(file: string, fd: number, header: TokenHeader) {
    this.path = file;
    this.fd = fd;
    this.header = header;
  }

  static open(file: string, opts: { cacheWholeBytes?: number } = {}): TokenFile {
    let fd: number;
    try {
      fd = fs.openSync(file, 'r');
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (err.code === 'ENOENT') throw new BadFileError(`Missing token file ${file} (prepare data with gpt-engine prepare)`);
      throw new BadFileError(`Cannot read ${file}: ${err.message}`, { cause: e });
    }
    try {
      const size = fs.fstatSync(fd).size;
      const head = Buffer.alloc(Math.min(TOKEN_HEADER_BYTES, size));
      fs.readSync(fd, head, 0, head.length, 0);
      const header = parseHeader(head, file);
      const expected = TOKEN_HEADER_BYTES + header.count * header.bytesPerToken;
      if (size !== expected)
        throw new BadFileError(
          `${file} is ${size < expected ? 'truncated' : 'longer than its header says'}: the header says ${header.count} tokens (${expected} bytes) but the file has ${size} bytes`,
        );
      const tf = new TokenFile(file, fd, header);
      if (size <= (opts.cacheWholeBytes ?? CACHE_WHOLE_BYTES)) tf.cache = tf.readRaw(0, header.count);
      return tf;
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  get count(): number {
    return this.header.count;
  }

  private readRaw(start: number, n: number): Uint16Array | Uint32Array {
    const bpt = this.header.bytesPerToken;
    const bytes = n * bpt;
    if (this.scratch.length < bytes) this.scratch = Buffer.alloc(Math.max(bytes, 4096));
    let done = 0;
    while (done < bytes) {
      const r = fs.readSync(this.fd!, this.scratch, done, bytes - done, TOKEN_HEADER_BYTES + start * bpt + done);
      if (r === 0) throw new BadFileError(`${this.path} ended early at token ${start + done / bpt} (the file changed while in use?)`);
      done += r;
    }
    const copy = new Uint8Array(bytes);
    copy.set(this.scratch.subarray(0, bytes));
    if (os.endianness() !== 'LE') (bpt === 2 ? Buffer.from(copy.buffer).swap16() : Buffer.from(copy.buffer).swap32());
    return bpt === 2 ? new Uint16Array(copy.buffer) : new Uint32Array(copy.buffer);
  }

  /** Reads tokens [start, start + n) into out[offset...], checking ids against the vocabulary. */
  readInto(start: number, n: number, out: Int32Array, offset = 0): void {
    if (this.fd === null) throw new ArgumentRangeError(`${this.path} is closed`);
    if (!(start >= 0 && n >= 0 && start + n <= this.count))
      throw new ArgumentRangeError(`Expected a range within 0..${this.count} for tokens of ${this.path} but received ${start}..${start + n}`);
    const src = this.cache ? this.cache.subarray(start, start + n) : this.readRaw(start, n);
    const V = this.header.vocabSize;
    for (let i = 0; i < n; i++) {
      const t = src[i];
      if (t >= V) throw new BadFileError(`${this.path} holds token id ${t} at position ${start + i}, outside the vocabulary of ${V}: the file is corrupted`);
      out[offset + i] = t;
    }
  }

  read(start: number, n: number): Int32Array {
    const out = new Int32Array(n);
    this.readInto(start, n, out);
    return out;
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
    this.cache = null;
  }
}

