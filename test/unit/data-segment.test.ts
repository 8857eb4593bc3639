/**
 * The cut points of lib/data/segment.ts against the tokenizer itself: cutting
 * at any safe point never changes the tokens, on adversarial text (mixed
 * scripts, emoji, CRLF, tabs, no-break spaces, contractions, "<|endoftext|>"
 * literals); chunking at points gives the same tokens for any chunk size; the
 * streamed validation split equals the in-memory one; the UTF-8 checks agree
 * with Node's.
 */
import { isUtf8 } from 'node:buffer';
import { Chunker, CutPoints, encodeChunk, FORCED_RUN, isSafePoint, splitOf, SplitRouter } from '../../lib/data/segment';
import { firstInvalidUtf8, LineSplitter, parseRecord, TextCheck } from '../../lib/data/inputs';
import { END_OF_TEXT, encode, getTokenizer } from '../../lib/tokenizer';

const gpt2 = getTokenizer('gpt2');

function lcg(seed: number): (n: number) => number {
  let s = seed >>> 0;
  return (n) => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % n;
  };
}

const ALPHABET = ['a', 'b', 's', 't', 'r', 'e', 'v', 'l', 'm', 'd', 'S', "'", "'", '1', '2', '.', ',', '-', ' ', ' ', ' ', '  ', '\n', '\n', '\r\n', '\t',
  '\u00a0', 'é', '日', '😀', '𝐀', '\u3000', '\u0085', '_', END_OF_TEXT, '<|', '|>', 'x', 'll', 're', 've', " 's", '\u2028', '٣', '\ufeff'];

function randomText(rnd: (n: number) => number, pieces: number): string {
  let t = '';
  for (let i = 0; i < pieces; i++) t += ALPHABET[rnd(ALPHABET.length)];
  return t;
}

/** Every point CutPoints yields for the whole text. */
function points(text: string): { p: number; forced: boolean }[] {
  const c = new CutPoints();
  const out: { p: number; forced: boolean }[] = [];
  for (let p = c.next(text, true); p >= 0; p = c.next(text, true)) out.push({ p, forced: c.forced });
  return out;
}

describe('cut points', () => {
  test('cutting at any safe point leaves the tokens of the whole text', () => {
    const rnd = lcg(7);
    let checked = 0;
    for (let it = 0; it < 500; it++) {
      const text = randomText(rnd, 1 + rnd(16));
      const whole = Array.from(encode(text));
      for (const { p, forced } of points(text)) {
        expect(forced).toBe(false);
        expect([...encode(text.slice(0, p)), ...encode(text.slice(p))]).toEqual(whole);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(1500);
  });

  test('the rules are tight: positions they refuse include ones where a cut changes the tokens', () => {
    // a space before a word, a contraction, inside a run of newlines, inside the literal
    for (const [text, p] of [['a b', 2], ["it's", 3], ['a\n\n\nb', 2], [`x${END_OF_TEXT}y`, 3]] as [string, number][]) {
      expect(points(text).map((x) => x.p)).not.toContain(p);
      expect([...encode(text.slice(0, p)), ...encode(text.slice(p))]).not.toEqual(Array.from(encode(text)));
    }
    expect(isSafePoint('a b', 1)).toBe(true);
    expect(isSafePoint('ab1', 2)).toBe(true);
    expect(isSafePoint("x's", 2)).toBe(false);
  });

  test('a long run with no safe point is cut every FORCED_RUN characters, never inside a surrogate pair', () => {
    const run = 'q'.repeat(FORCED_RUN * 2 + 5);
    expect(points(`${run} end`).filter((x) => x.forced).map((x) => x.p)).toEqual([FORCED_RUN, 2 * FORCED_RUN]);
    const emoji = '😀'.repeat(FORCED_RUN); // 2 code units each; the surrogate pairs stay whole
    for (const { p } of points(emoji)) expect(emoji.charCodeAt(p) >= 0xdc00 && emoji.charCodeAt(p) <= 0xdfff).toBe(false);
    const spaces = ' '.repeat(3 * FORCED_RUN);
    expect(points(spaces).length).toBe(2);
  });

  test('any chunking at points gives the same tokens as one chunk', () => {
    const rnd = lcg(11);
    let text = '';
    for (let i = 0; i < 200; i++) text += randomText(rnd, 20) + (i % 100 === 0 ? 'z'.repeat(FORCED_RUN + 100) : '');
    const one = Array.from(encodeChunk(gpt2, text));
    const all = new Set(points(text).map((x) => x.p));
    for (const target of [1, 100, 5000]) {
      for (const piece of [3, 4096]) {
        const chunks: string[] = [];
        const ch = new Chunker(target, (t) => chunks.push(t));
        for (let i = 0; i < text.length; i += piece) ch.push(text.slice(i, i + piece));
        ch.end();
        expect(chunks.join('')).toBe(text);
        // every cut is a point of the whole text, found by looking back from the target
        let at = 0;
        for (const c of chunks.slice(0, -1)) expect(all.has((at += c.length))).toBe(true);
        expect(chunks.flatMap((c) => Array.from(encodeChunk(gpt2, c)))).toEqual(one);
      }
    }
  });

  test('a target inside a long run: the chunker walks from the chunk start', () => {
    const text = 'a b ' + 'z'.repeat(10000) + ' c d ' + 'w'.repeat(3000);
    const all = points(text);
    const chunks: string[] = [];
    const ch = new Chunker(3000, (t) => chunks.push(t));
    ch.push(text.slice(0, 7000));
    ch.push(text.slice(7000));
    ch.end();
    let at = 0;
    const cuts = chunks.slice(0, -1).map((c) => (at += c.length));
    // the first point at or after each chunk's target: forced ones inside the run
    expect(cuts).toEqual([3 + 2 * FORCED_RUN, 3 + 4 * FORCED_RUN, 4 + 10000 + 4 + FORCED_RUN]);
    for (const c of cuts) expect(all.map((x) => x.p)).toContain(c);
    expect(chunks.flatMap((c) => Array.from(encodeChunk(gpt2, c)))).toEqual(Array.from(encodeChunk(gpt2, text)));
  });

  test('encodeChunk cuts at the forced points only, also for runs of astral characters', () => {
    for (const text of [' '.repeat(1000) + '😀'.repeat(1000) + ' x', 'ab '.repeat(500) + 'q'.repeat(5000) + '\n', `${'7'.repeat(3000)}${END_OF_TEXT}${'7'.repeat(3000)}`]) {
      const forced = points(text).filter((x) => x.forced).map((x) => x.p);
      expect(forced.length).toBeGreaterThan(0);
      const cuts = [0, ...forced, text.length];
      const expected = cuts.slice(1).flatMap((end, i) => Array.from(encode(text.slice(cuts[i], end))));
      expect(Array.from(encodeChunk(gpt2, text))).toEqual(expected);
    }
  });

  test('text without long runs is tokenized exactly as a whole', () => {
    const text = 'Call me Ishmael.\r\nSome years ago — never mind how long — 日本語 😀 <|endoftext|> it\'s 3.14!\n'.repeat(50);
    expect(Array.from(encodeChunk(gpt2, text))).toEqual(Array.from(encode(text)));
  });
});

describe('validation split', () => {
  test('the streamed split equals the in-memory split for any read size', () => {
    const rnd = lcg(3);
    for (let it = 0; it < 25; it++) {
      const text = randomText(rnd, rnd(400));
      const bytes = Buffer.from(text, 'utf8');
      for (const fraction of [0.05, 0.3, 0.5]) {
        const s = splitOf(bytes, fraction);
        for (const read of [1, 5, 4096]) {
          const parts: Buffer[][] = [[], []];
          const ended: number[] = [];
          const r = new SplitRouter(bytes.length, fraction, { bytes: (d, b) => parts[d].push(Buffer.from(b)), end: (d) => ended.push(d) });
          for (let i = 0; i < bytes.length; i += read) r.push(bytes.subarray(i, i + read));
          expect(r.end()).toBe(true);
          expect(Buffer.concat(parts[0]).equals(bytes.subarray(0, s))).toBe(true);
          expect(Buffer.concat(parts[1]).equals(bytes.subarray(s))).toBe(true);
          expect(ended).toEqual([0, 1]);
        }
        // the split never cuts a UTF-8 character
        expect(isUtf8(bytes.subarray(0, s)) && isUtf8(bytes.subarray(s))).toBe(true);
      }
    }
    // a newline within 4 KiB before the nominal split wins
    expect(splitOf(Buffer.from('a'.repeat(850) + '\n' + 'b'.repeat(149)), 0.1)).toBe(851);
    expect(splitOf(Buffer.from('a'.repeat(900) + '\n' + 'b'.repeat(99)), 0.1)).toBe(900);
    expect(new SplitRouter(3, 0.1, { bytes: () => undefined, end: () => undefined }).end()).toBe(false);
  });
});

describe('UTF-8 and JSON lines', () => {
  test('firstInvalidUtf8 agrees with isUtf8, and TextCheck names the line across chunk edges', () => {
    const rnd = lcg(5);
    for (let it = 0; it < 1000; it++) {
      const b = Buffer.from(Array.from({ length: rnd(8) }, () => [0x41, 0x0a, 0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0, 0x9f, 0x98, 0x80, 0xed, 0xa0, 0xc0, 0xff, 0x80][rnd(16)]));
      expect(firstInvalidUtf8(b) < 0).toBe(isUtf8(b));
    }
    const text = Buffer.concat([Buffer.from('line one\nline two é\n€ three\nfour '), Buffer.from([0xe2, 0x28]), Buffer.from(' rest\n')]);
    for (const read of [1, 2, 3, 7, 1000]) {
      const c = new TextCheck();
      for (let i = 0; i < text.length && c.feed(text.subarray(i, i + read)); i += read);
      c.end();
      expect([c.badLine, c.badDetail]).toEqual([4, 'invalid UTF-8 (bytes e2 28 at byte 6 of the line)']);
    }
    const cut = new TextCheck();
    cut.feed(Buffer.from([0x61, 0x0a, 0xe2, 0x82]));
    cut.end();
    expect(cut.badLine).toBe(2);
  });

  test('lines split at any chunking; records are checked field by field', () => {
    const data = Buffer.from('{"text":"a"}\r\n\n{"text":"b"}\n{"text":"c"}');
    for (const read of [1, 4, 100]) {
      const lines: string[] = [];
      const s = new LineSplitter((b, n) => lines.push(`${n}:${b.toString()}`));
      for (let i = 0; i < data.length; i += read) s.feed(data.subarray(i, i + read));
      s.end();
      expect(lines).toEqual(['1:{"text":"a"}\r', '2:', '3:{"text":"b"}', '4:{"text":"c"}']);
    }
    const p = (s: string | Buffer, first = false) => parseRecord(Buffer.from(s as string), 'text', first);
    expect(p('\ufeff{"text":"x"}', true)).toEqual({ text: 'x' });
    expect(p('  \r')).toBeNull();
    expect(p('{"text":')).toMatchObject({ bad: 'malformed_json' });
    expect(p('[1]')).toEqual({ bad: 'malformed_json', detail: 'expected a JSON object per line but found an array' });
    expect(p('{"body":"x"}')).toEqual({ bad: 'missing_field', detail: 'the record has no "text" field (it has "body"; choose the field with --text-field)' });
    expect(p('{"text":5}')).toEqual({ bad: 'not_string', detail: 'expected a string in field "text" but found 5 (number)' });
    expect(p('{"text":""}')).toMatchObject({ bad: 'empty' });
    expect(p(Buffer.from([0x7b, 0xff, 0x7d]))).toEqual({ bad: 'invalid_utf8', detail: 'invalid UTF-8 (bytes ff at byte 2 of the line)' });
  });
});
