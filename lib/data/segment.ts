/**
 * Where a document may be cut so that its pieces tokenize independently, and
 * where its validation part starts.
 *
 * GPT-2's tokenizer first splits text with a regular expression into
 * pre-tokens (runs of letters, of digits, of other symbols, each with an
 * optional leading space; runs of whitespace; contractions such as 's), then
 * applies byte-pair merges inside each pre-token, and lib/tokenizer.ts splits
 * on the "<|endoftext|>" literal before all that. A position p is a *safe
 * point* when the pre-tokens of text[0, p) and of text[p, end) are exactly the
 * pre-tokens of the whole text on either side of p, so encoding the two halves
 * gives the tokens of the whole. With a = the character before p and b = the
 * one at p, p is safe when
 *   - a is not whitespace and b is whitespace (no pre-token runs from a
 *     non-space into whitespace; a whitespace run never looks back), or
 *   - a and b are both non-whitespace of different classes (letter, number,
 *     other) and a is not an apostrophe (a contraction such as 's or 're would
 *     join them), or
 *   - p is the start or the end of an "<|endoftext|>" literal;
 * and never inside such a literal or inside a surrogate pair. Every rule looks
 * at the text only (a, b, and the next 13 characters for the literal), never at
 * where a chunk happens to start, and test/unit/data-segment.test.ts checks
 * the rules against the tokenizer on adversarial text.
 *
 * A run of FORCED_RUN characters with no safe point (a long word, a DNA
 * string, a line of dashes) is cut every FORCED_RUN characters from its start:
 * byte-pair merging costs grows with the square of a pre-token's length, and
 * these *forced points* are the one place where the tokens may differ from
 * encoding the whole text at once. Both kinds of points follow from the text
 * alone, so any chunking at them gives the same tokens; chunks are cut at the
 * first point after `target` characters, and workers only add the forced cuts
 * inside their chunk.
 */
import { END_OF_TEXT, Tokenizer } from '../tokenizer';

const MARK = END_OF_TEXT.length;
/** Longest run without a safe point that is encoded as one piece. */
export const FORCED_RUN = 2048;

const WS = 0;
const LETTER = 1;
const NUMBER = 2;
const OTHER = 3;
let bmp: Uint8Array | null = null;
const astral = new Map<number, number>();

/** Classes of the 65,536 UTF-16 code units, from the same \s, \p{L}, \p{N} the tokenizer's expression uses. */
function table(): Uint8Array {
  if (bmp) return bmp;
  const t = new Uint8Array(65536);
  const ws = /\s/u;
  const l = /\p{L}/u;
  const n = /\p{N}/u;
  for (let c = 0; c < 65536; c++) {
    const s = String.fromCharCode(c);
    t[c] = c >= 0xd800 && c <= 0xdfff ? OTHER : ws.test(s) ? WS : l.test(s) ? LETTER : n.test(s) ? NUMBER : OTHER;
  }
  return (bmp = t);
}

function classOf(cp: number): number {
  if (cp < 0x10000) return table()[cp];
  let c = astral.get(cp);
  if (c === undefined) {
    const s = String.fromCodePoint(cp);
    c = /\s/u.test(s) ? WS : /\p{L}/u.test(s) ? LETTER : /\p{N}/u.test(s) ? NUMBER : OTHER;
    astral.set(cp, c);
  }
  return c;
}

/** Whether p (0 < p < text.length, outside any "<|endoftext|>") is a safe point by the character rules above. */
export function isSafePoint(text: string, p: number): boolean {
  const t = table();
  const c1 = text.charCodeAt(p - 1);
  const c0 = text.charCodeAt(p);
  const a = (c1 & 0xfc00) === 0xdc00 && p >= 2 ? classOf(text.codePointAt(p - 2)!) : t[c1];
  if (a === WS) return false;
  if ((c0 & 0xfc00) === 0xdc00) return false; // inside a surrogate pair
  const b = (c0 & 0xfc00) === 0xd800 ? classOf(text.codePointAt(p)!) : t[c0];
  if (b === WS) return true;
  return a !== b && c1 !== 39;
}

/**
 * Walks the safe and forced points of a text from a point `start` (a chunk
 * start, or any point found otherwise), in order. With `final` false the text
 * may still grow at its end, and positions whose rules need characters beyond
 * it wait for the next call.
 */
export class CutPoints {
  private pos: number;
  private last: number;
  private markerEnd = -1;
  /** whether the point next() returned last is a forced one */
  forced = false;

  constructor(private readonly start = 0) {
    this.pos = start;
    this.last = start;
  }

  next(text: string, final: boolean): number {
    const limit = final ? text.length : text.length - MARK;
    while (this.pos < limit) {
      const p = this.pos++;
      if (text.charCodeAt(p) === 60 && text.startsWith(END_OF_TEXT, p)) {
        this.pos = p + MARK;
        this.markerEnd = p + MARK;
        if (p > this.start) return this.hit(p, false);
        continue;
      }
      if (p === this.start) continue;
      if (p === this.markerEnd || isSafePoint(text, p)) return this.hit(p, false);
      if (p - this.last >= FORCED_RUN && (text.charCodeAt(p) & 0xfc00) !== 0xdc00) return this.hit(p, true);
    }
    return -1;
  }

  private hit(p: number, forced: boolean): number {
    this.last = p;
    this.forced = forced;
    return p;
  }
}

function insideMarker(text: string, p: number): boolean {
  for (let m = Math.max(0, p - MARK + 1); m < p; m++) if (text.charCodeAt(m) === 60 && text.startsWith(END_OF_TEXT, m)) return true;
  return false;
}

/**
 * The last point at or before `at` in a text whose position 0 is a point or
 * lies at least FORCED_RUN + 13 characters before `at`: a safe point or an
 * edge of an "<|endoftext|>" literal fewer than FORCED_RUN characters back,
 * or -1. Walking on from it with CutPoints gives the same points as walking
 * from the chunk start: it is a point whatever came before, and nothing
 * between it and `at` is one.
 */
export function pointBefore(text: string, at: number): number {
  for (let p = at; p > 0 && at - p < FORCED_RUN; p--) {
    const edge = text.startsWith(END_OF_TEXT, p) || (p >= MARK && text.startsWith(END_OF_TEXT, p - MARK));
    if ((edge || isSafePoint(text, p)) && !insideMarker(text, p)) return p;
  }
  return -1;
}

/**
 * Whether the text holds FORCED_RUN / 2 code units in a row that are all
 * whitespace or all not. Without such a run there is no forced point: a
 * non-space followed by whitespace is always a safe point, so the text
 * between two points is some whitespace then some non-whitespace.
 */
function hasLongRun(text: string): boolean {
  const t = table();
  const half = FORCED_RUN / 2;
  let run = 0;
  let ws = -1;
  for (let i = 0; i < text.length; i++) {
    const w = t[text.charCodeAt(i)] === WS ? 1 : 0;
    if (w !== ws) {
      ws = w;
      run = 1;
    } else if (++run >= half) return true;
  }
  return false;
}

/**
 * Tokens of a chunk (text that starts and ends at points): the tokenizer on
 * each stretch between forced points. The same for a chunk tokenized here or
 * in a worker, and for any chunking of a document at points.
 */
export function encodeChunk(tok: Tokenizer, text: string): Int32Array {
  if (tok.name === 'byte' || !hasLongRun(text)) return tok.encode(text);
  const parts: Int32Array[] = [];
  const cuts = new CutPoints();
  let start = 0;
  for (let p = cuts.next(text, true); p >= 0; p = cuts.next(text, true)) {
    if (!cuts.forced) continue;
    parts.push(tok.encode(text.slice(start, p)));
    start = p;
  }
  if (start === 0) return tok.encode(text);
  parts.push(tok.encode(text.slice(start)));
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Int32Array(n);
  n = 0;
  for (const p of parts) {
    out.set(p, n);
    n += p.length;
  }
  return out;
}

/**
 * Cuts a stream of text (one part of one document) into chunks at the first
 * point after `target` characters; end() hands over the rest. The point is
 * looked for in a few KiB around the target, so the text is not copied to
 * find it; only a run with no safe point near the target makes it walk the
 * whole pending text.
 */
export class Chunker {
  private parts: string[] = [];
  private length = 0;
  /** the walk from the chunk start, when looking near the target found nothing */
  private walk: CutPoints | null = null;

  constructor(
    private readonly target: number,
    private readonly emit: (text: string) => void,
  ) {}

  push(text: string): void {
    if (!text) return;
    this.parts.push(text);
    this.length += text.length;
    this.cut(false);
  }

  end(): void {
    this.cut(true);
    if (this.length) this.emit(this.take(this.length));
    this.walk = null;
  }

  private cut(final: boolean): void {
    while (this.length > this.target + (final ? 0 : MARK)) {
      const p = this.walk ? this.walkOn(final) : this.near(final);
      if (p < 0) return; // needs more text
      this.emit(this.take(p));
      this.walk = null;
    }
  }

  /** The first point at or after the target, from a window around it; -1 to wait for more text. */
  private near(final: boolean): number {
    const T = this.target;
    const from = Math.max(0, T - FORCED_RUN - MARK);
    const to = Math.min(this.length, T + FORCED_RUN + 3 * MARK);
    const win = this.slice(from, to);
    let s = pointBefore(win, T - from);
    if (s < 0 && from > 0) {
      this.walk = new CutPoints(0);
      return this.walkOn(final);
    }
    s = Math.max(s, 0);
    if (s === T - from) return T;
    const cuts = new CutPoints(s);
    for (let p = cuts.next(win, final && to === this.length); p >= 0; p = cuts.next(win, final && to === this.length))
      if (p >= T - from) return from + p;
    return -1;
  }

  private walkOn(final: boolean): number {
    const text = this.slice(0, this.length);
    this.parts = [text];
    for (let p = this.walk!.next(text, final); p >= 0; p = this.walk!.next(text, final)) if (p >= this.target) return p;
    return -1;
  }

  /** Characters [a, b) of the pending text. */
  private slice(a: number, b: number): string {
    let out = '';
    let at = 0;
    for (const part of this.parts) {
      const end = at + part.length;
      if (end > a && at < b) out += at >= a && end <= b ? part : part.slice(Math.max(0, a - at), Math.min(part.length, b - at));
      at = end;
      if (at >= b) break;
    }
    return out;
  }

  /** Removes and returns the first p characters. */
  private take(p: number): string {
    let out = '';
    let n = 0;
    while (n < p) {
      const part = this.parts[0];
      if (n + part.length <= p) {
        out += part;
        n += part.length;
        this.parts.shift();
      } else {
        out += part.slice(0, p - n);
        this.parts[0] = part.slice(p - n);
        n = p;
      }
    }
    this.length -= p;
    return out;
  }
}

// ---------------------------------------------------------------------------
// The validation split

/**
 * Where a document of `size` bytes splits into train and validation: the
 * last `fraction` of its bytes, the split moved back to just after a newline
 * (else a space) within 4 KiB before it, else forward to the start of a UTF-8
 * character. `window` is the byte range the rule looks at ([start, end),
 * empty when the split is fixed: nothing or everything to validation).
 */
export interface SplitWindow {
  nominal: number;
  start: number;
  end: number;
}

export function splitWindow(size: number, fraction: number): SplitWindow {
  const valBytes = Math.round(size * fraction);
  const nominal = size - valBytes;
  if (valBytes === 0 || nominal <= 0) return { nominal: Math.max(0, nominal), start: 0, end: 0 };
  const look = Math.min(4096, nominal);
  return { nominal, start: nominal - look, end: Math.min(nominal + 4, size) };
}

/** The split byte, given the window's bytes. */
export function splitAt(w: SplitWindow, win: Uint8Array): number {
  if (w.end === w.start) return w.nominal;
  const rel = w.nominal - w.start;
  const nl = win.lastIndexOf(10, rel - 1);
  if (nl >= 0) return w.start + nl + 1;
  const sp = win.lastIndexOf(32, rel - 1);
  if (sp >= 0) return w.start + sp + 1;
  let s = rel;
  while (s < win.length && (win[s] & 0xc0) === 0x80) s++;
  return w.start + s;
}

/** The split of a document held in memory. */
export function splitOf(bytes: Uint8Array, fraction: number): number {
  const w = splitWindow(bytes.length, fraction);
  return splitAt(w, bytes.subarray(w.start, w.end));
}

/**
 * Routes a streamed document of known size to its train part and its
 * validation part, holding back only the few KiB the split rule looks at.
 */
export class SplitRouter {
  private pos = 0;
  private split: number;
  private win: Buffer[] = [];
  private trainEnded = false;
  private readonly w: SplitWindow;

  constructor(
    readonly size: number,
    fraction: number,
    private readonly out: { bytes(dest: 0 | 1, b: Uint8Array): void; end(dest: 0 | 1): void },
  ) {
    this.w = splitWindow(size, fraction);
    this.split = this.w.end === this.w.start ? this.w.nominal : -1;
    this.checkTrainEnd();
  }

  /** Bytes of the document so far. */
  get position(): number {
    return this.pos;
  }

  push(buf: Uint8Array): void {
    let off = 0;
    while (off < buf.length) {
      const n = buf.length - off;
      let k: number;
      if (this.split >= 0) {
        k = this.pos < this.split ? Math.min(n, this.split - this.pos) : n;
        this.out.bytes(this.pos < this.split ? 0 : 1, buf.subarray(off, off + k));
      } else if (this.pos < this.w.start) {
        k = Math.min(n, this.w.start - this.pos);
        this.out.bytes(0, buf.subarray(off, off + k));
      } else {
        k = Math.min(n, this.w.end - this.pos);
        this.win.push(Buffer.from(buf.subarray(off, off + k)));
      }
      off += k;
      this.pos += k;
      if (this.split < 0 && this.pos === this.w.end) {
        const win = Buffer.concat(this.win);
        this.win = [];
        this.split = splitAt(this.w, win);
        const s = this.split - this.w.start;
        if (s > 0) this.out.bytes(0, win.subarray(0, s));
        this.checkTrainEnd();
        if (s < win.length) this.out.bytes(1, win.subarray(s));
      }
      this.checkTrainEnd();
    }
  }

  /** Ends both parts; false when the document was not `size` bytes long. */
  end(): boolean {
    if (this.pos !== this.size) return false;
    this.checkTrainEnd();
    this.out.end(1);
    return true;
  }

  private checkTrainEnd(): void {
    if (!this.trainEnded && this.split >= 0 && this.pos >= this.split) {
      this.trainEnded = true;
      this.out.end(0);
    }
  }
}
