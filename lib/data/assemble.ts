/**
 * From document parts to token files, in order. A Part streams one part
 * (train or validation) of one document: bytes or text in, chunks out (cut at
 * the points of lib/data/segment.ts). The Assembler groups chunks into units,
 * tokenizes each unit here or in a worker, and writes the units in the order
 * they were made, whatever order the workers finish in, with the tokenizer's
 * end-of-text token before every part but the first of each file. At most
 * 2 x workers units are out at a time, so memory stays bounded whatever the
 * input size.
 */
import { TextDecoder } from 'node:util';
import type { Tokenizer } from '../tokenizer';
import { TokenizerPool, UnitResult } from './pool';
import { Chunker, encodeChunk } from './segment';
import type { TokenFileWriter } from './tokenfile';

/** 0 = train.bin, 1 = val.bin */
export type Dest = 0 | 1;

interface PieceMeta {
  dest: Dest;
  /** first chunk of its part: preceded by the end-of-text token unless the file is still empty */
  first: boolean;
  source: number;
}

interface Unit {
  items: (string | Uint8Array)[];
  meta: PieceMeta[];
  size: number;
}

export interface AssemblyCounts {
  /** occurrences of each token id */
  unigram: Float64Array;
  /** tokens per source */
  sourceTokens: number[];
}

export class Assembler {
  /** whether chunks are text (a BPE tokenizer); the byte tokenizer takes bytes */
  readonly textual: boolean;
  private unit: Unit = { items: [], meta: [], size: 0 };
  private nextId = 0;
  private nextWrite = 0;
  private out = new Map<number, { meta: PieceMeta[]; result?: UnitResult }>();
  private pool: TokenizerPool | null = null;
  private readonly maxOut: number;

  constructor(
    private readonly tok: Tokenizer,
    private readonly writers: readonly [TokenFileWriter, TokenFileWriter],
    readonly chunk: number,
    workers: number,
    readonly counts: AssemblyCounts,
  ) {
    this.textual = tok.name !== 'byte';
    // The byte tokenizer's tokens are the bytes: no work worth a thread.
    if (this.textual && workers > 1) this.pool = new TokenizerPool(tok.name, workers, (id, r) => this.onResult(id, r));
    this.maxOut = 2 * workers;
  }

  get tokens(): number {
    return this.writers[0].tokens + this.writers[1].tokens;
  }

  /** Worker threads started (0 when tokenizing on this thread). */
  get workersStarted(): number {
    return this.pool ? this.pool.started : 0;
  }

  add(piece: string | Uint8Array, dest: Dest, first: boolean, source: number): void {
    const u = this.unit;
    u.items.push(piece);
    u.meta.push({ dest, first, source });
    u.size += piece.length;
    if (u.size >= this.chunk) this.closeUnit();
  }

  /** True while as many units are out as allowed: await drain() before adding more. */
  get full(): boolean {
    return this.pool !== null && this.nextId - this.nextWrite >= this.maxOut;
  }

  async drain(): Promise<void> {
    while (this.full) await this.pool!.next();
  }

  /** Tokenizes and writes everything added so far. */
  async finish(): Promise<void> {
    this.closeUnit();
    while (this.pool && this.nextWrite < this.nextId) await this.pool.next();
  }

  /** finish() without workers. */
  finishSync(): void {
    if (this.pool) throw new Error('finishSync needs an Assembler without workers');
    this.closeUnit();
  }

  async close(): Promise<void> {
    await this.pool?.close();
  }

  private closeUnit(): void {
    const u = this.unit;
    if (!u.items.length) return;
    this.unit = { items: [], meta: [], size: 0 };
    if (!this.pool) {
      this.write(u.meta, u.items.map((p) => (typeof p === 'string' ? encodeChunk(this.tok, p) : p)));
      return;
    }
    const id = this.nextId++;
    this.out.set(id, { meta: u.meta });
    this.pool.post(id, u.items as string[]);
  }

  private onResult(id: number, r: UnitResult): void {
    this.out.get(id)!.result = r;
    for (let next = this.out.get(this.nextWrite); next?.result; next = this.out.get(this.nextWrite)) {
      this.out.delete(this.nextWrite++);
      const { tokens, lengths } = next.result;
      const parts: ArrayLike<number>[] = [];
      let at = 0;
      for (const n of lengths) {
        parts.push(tokens.subarray(at, at + n));
        at += n;
      }
      this.write(next.meta, parts);
    }
  }

  private write(meta: PieceMeta[], toks: ArrayLike<number>[]): void {
    const { unigram, sourceTokens } = this.counts;
    const eot = this.tok.eot;
    for (let i = 0; i < meta.length; i++) {
      const m = meta[i];
      const w = this.writers[m.dest];
      const t = toks[i];
      if (m.first && eot !== null && w.tokens > 0) {
        w.write([eot]);
        unigram[eot]++;
        sourceTokens[m.source]++;
      }
      w.write(t);
      for (let j = 0; j < t.length; j++) unigram[t[j]]++;
      sourceTokens[m.source] += t.length;
    }
  }
}

/**
 * One part of one document on its way to the Assembler: bytes (decoded as
 * UTF-8 as they stream) or whole text in, chunks out.
 */
export class Part {
  private first = true;
  private readonly decoder: TextDecoder | null;
  private readonly chunker: Chunker | null;

  constructor(
    private readonly asm: Assembler,
    private readonly dest: Dest,
    private readonly source: number,
  ) {
    this.decoder = asm.textual ? new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }) : null;
    this.chunker = asm.textual ? new Chunker(asm.chunk, (t) => this.emit(t)) : null;
  }

  bytes(b: Uint8Array): void {
    if (this.chunker) this.chunker.push(this.decoder!.decode(b, { stream: true }));
    else if (b.length) this.emit(Buffer.from(b));
  }

  text(s: string): void {
    if (this.chunker) this.chunker.push(s);
    else if (s.length) this.emit(Buffer.from(s, 'utf8'));
  }

  end(): void {
    if (!this.chunker) return;
    this.chunker.push(this.decoder!.decode());
    this.chunker.end();
  }

  private emit(piece: string | Uint8Array): void {
    this.asm.add(piece, this.dest, this.first, this.source);
    this.first = false;
  }
}
