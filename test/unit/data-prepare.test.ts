/**
 * prepare over the inputs users have (text, JSON Lines, gzip of both) with
 * any number of workers: the same bytes out for workers 1, 2 and 3 and for
 * the synchronous path; every kind of bad input named by FILE:LINE, or
 * skipped and counted with skipBad.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { DataMeta, openDataset, prepare, prepareSync } from '../../lib/data';
import { encodeChunk, splitOf } from '../../lib/data/segment';
import { END_OF_TEXT, getTokenizer, GPT2_EOT } from '../../lib/tokenizer';

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gpte-prep-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function lcg(seed: number): (n: number) => number {
  let s = seed >>> 0;
  return (n) => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % n;
  };
}

/** Text that stresses chunk edges: multibyte characters, CRLF, runs without whitespace, literal end-of-text markers. */
function adversarial(seed: number, n: number): string {
  const rnd = lcg(seed);
  const bits = ['word', ' ', ' the', '\n', '\r\n', 'é', '日本語', '😀', "it's", '3.14', END_OF_TEXT, '\t', '  ', 'x'.repeat(300), '—', '\u00a0'];
  let t = '';
  while (t.length < n) t += bits[rnd(bits.length)];
  return t + 'z'.repeat(2500) + ' the end\n';
}

const gpt2 = getTokenizer('gpt2');
const files = (dir: string) => Object.fromEntries(['train.bin', 'val.bin', 'meta.json'].map((f) => [f, fs.readFileSync(path.join(dir, f))]));

describe('the same bytes for any worker count', () => {
  const docs = [adversarial(1, 6000), adversarial(2, 3000)];
  const records = Array.from({ length: 25 }, (_, i) => adversarial(10 + i, 150 + 40 * i));
  const jsonl = records.map((text, i) => JSON.stringify({ id: i, text })).join('\n') + '\n';

  const all = [docs[0], ...records, docs[1]]; // the order of the inputs: a, c (records), sub/b

  /** The tokens a split should hold: each document's part, tokenized on its own, end-of-text between (gpt2) or nothing (byte). */
  function expected(dest: 0 | 1, fraction: number, tokenizer: 'gpt2' | 'byte' = 'gpt2'): number[] {
    const out: number[] = [];
    for (const d of all) {
      const b = Buffer.from(d, 'utf8');
      const s = splitOf(b, fraction);
      const part = dest === 0 ? b.subarray(0, s) : b.subarray(s);
      if (!part.length) continue;
      if (tokenizer === 'byte') out.push(...part);
      else {
        if (out.length) out.push(GPT2_EOT);
        out.push(...encodeChunk(gpt2, part.toString('utf8')));
      }
    }
    return out;
  }

  beforeAll(() => {
    const plain = path.join(tmp, 'plain');
    fs.mkdirSync(path.join(plain, 'sub'), { recursive: true });
    fs.writeFileSync(path.join(plain, 'a.txt'), docs[0]);
    fs.writeFileSync(path.join(plain, 'sub', 'b.txt'), docs[1]);
    fs.writeFileSync(path.join(plain, 'c.jsonl'), jsonl);
    const gz = path.join(tmp, 'gz');
    fs.mkdirSync(path.join(gz, 'sub'), { recursive: true });
    fs.writeFileSync(path.join(gz, 'a.txt.gz'), zlib.gzipSync(docs[0]));
    fs.writeFileSync(path.join(gz, 'sub', 'b.txt.gz'), zlib.gzipSync(docs[1]));
    fs.writeFileSync(path.join(gz, 'c.jsonl.gz'), zlib.gzipSync(jsonl));
  });

  test('text, JSON Lines, .txt.gz and .jsonl.gz with workers 1, 2, 3 and prepareSync', async () => {
    const out = (name: string) => path.join(tmp, 'out', name);
    const progress: number[] = [];
    const one = await prepare([path.join(tmp, 'gz')], { out: out('gz-1'), workers: 1, chunkBytes: 300, onProgress: (p) => progress.push(p.bytesDone) });
    const two = await prepare([path.join(tmp, 'gz')], { out: out('gz-2'), workers: 2, chunkBytes: 300 });
    const three = await prepare([path.join(tmp, 'gz')], { out: out('gz-3'), workers: 3, chunkBytes: 300 });
    expect([one.throughput.workers_started, two.throughput.workers_started, three.throughput.workers_started]).toEqual([0, 2, 3]);
    expect(files(out('gz-2'))).toEqual(files(out('gz-1')));
    expect(files(out('gz-3'))).toEqual(files(out('gz-1')));
    expect(progress[progress.length - 1]).toBe(one.bytes);
    // the plain inputs give the same tokens, on the worker path and the synchronous one, at any chunk size
    await prepare([path.join(tmp, 'plain')], { out: out('plain-2'), workers: 2, chunkBytes: 300 });
    prepareSync([path.join(tmp, 'plain')], { out: out('plain-sync') });
    for (const dir of ['plain-2', 'plain-sync']) {
      expect(fs.readFileSync(path.join(out(dir), 'train.bin'))).toEqual(files(out('gz-1'))['train.bin']);
      expect(fs.readFileSync(path.join(out(dir), 'val.bin'))).toEqual(files(out('gz-1'))['val.bin']);
    }

    const meta = JSON.parse(fs.readFileSync(path.join(out('gz-1'), 'meta.json'), 'utf8')) as DataMeta;
    expect(meta.documents).toBe(2 + records.length);
    expect(meta.tokens).toBe(meta.train_tokens + meta.val_tokens);
    expect(meta.sources.map((s) => [path.basename(s.path), s.format, s.documents])).toEqual([
      ['a.txt.gz', 'text.gz', 1],
      ['c.jsonl.gz', 'jsonl.gz', records.length],
      ['b.txt.gz', 'text.gz', 1],
    ]);
    expect(meta.sources.reduce((a, s) => a + s.tokens, 0)).toBe(meta.tokens);
    expect(meta.text_field).toBe('text');
    expect(meta.skipped.total).toBe(0);
    expect(meta.bytes).toBe(meta.sources.reduce((a, s) => a + s.bytes, 0));

    // train.bin: every document's train part, tokenized, with end-of-text between; val.bin the same
    const ds = openDataset(out('gz-1'));
    expect(Array.from(ds.train.read(0, ds.train.count))).toEqual(expected(0, 0.05));
    expect(Array.from(ds.val.read(0, ds.val.count))).toEqual(expected(1, 0.05));
    ds.close();
  });

  test('the byte tokenizer: no separator, each document is its train part then its val part', async () => {
    const out = path.join(tmp, 'out', 'byte');
    const r = await prepare([path.join(tmp, 'gz')], { out, tokenizer: 'byte', workers: 2, valFraction: 0.2 });
    expect(r.throughput.workers_started).toBe(0);
    const ds = openDataset(out);
    expect(Array.from(ds.train.read(0, ds.train.count))).toEqual(expected(0, 0.2, 'byte'));
    expect(Array.from(ds.val.read(0, ds.val.count))).toEqual(expected(1, 0.2, 'byte'));
    ds.close();
  });
});

describe('bad input', () => {
  let n = 0;
  const write = (name: string, content: string | Buffer) => {
    const dir = path.join(tmp, 'bad', String(n++));
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, name);
    fs.writeFileSync(file, name.endsWith('.gz') ? zlib.gzipSync(content) : content);
    return file;
  };
  const good = 'A good line of text.\nAnd another one here.\n'.repeat(20);
  const rec = (o: unknown) => JSON.stringify(o);
  const cases: [string, string, string | Buffer, RegExp, keyof DataMeta['skipped']][] = [
    ['invalid UTF-8 in text', 'a.txt', Buffer.concat([Buffer.from('one\ntwo\nthr'), Buffer.from([0xc3, 0x28]), Buffer.from('ee\n')]), /a\.txt:3: invalid UTF-8 \(bytes c3 28 at byte 4 of the line\)/, 'invalid_utf8'],
    ['invalid UTF-8 in gzip text: the decompressed line', 'a.txt.gz', Buffer.concat([Buffer.from('one\ntwo\n'), Buffer.from([0xff])]), /a\.txt\.gz:3: invalid UTF-8 \(bytes ff/, 'invalid_utf8'],
    ['invalid UTF-8 in a JSON line', 'a.jsonl', Buffer.concat([Buffer.from(`${rec({ text: 'ok' })}\n{"text":"`), Buffer.from([0xe2, 0x82]), Buffer.from('"}\n')]), /a\.jsonl:2: invalid UTF-8/, 'invalid_utf8'],
    ['a malformed JSON line', 'a.jsonl', `${rec({ text: 'ok' })}\n{"text": "cut\n`, /a\.jsonl:2: malformed JSON: /, 'malformed_json'],
    ['a line that is not an object', 'a.jsonl.gz', `${rec({ text: 'ok' })}\n\n["text"]\n`, /a\.jsonl\.gz:3: expected a JSON object per line but found an array/, 'malformed_json'],
    ['a record without the field', 'a.jsonl', `${rec({ text: 'ok' })}\n${rec({ body: 'x' })}\n`, /a\.jsonl:2: the record has no "text" field \(it has "body"/, 'missing_field'],
    ['a non-string field', 'a.jsonl', `${rec({ text: ['x'] })}\n`, /a\.jsonl:1: expected a string in field "text" but found an array of length 1/, 'not_string'],
    ['an empty text field', 'a.jsonl', `${rec({ text: 'ok' })}\n${rec({ text: '' })}\n`, /a\.jsonl:2: the text in field "text" is empty/, 'empty'],
    ['an empty text file', 'a.txt', '', /a\.txt: empty file$/, 'empty'],
    ['an empty gzip file', 'a.txt.gz', '', /a\.txt\.gz: empty file$/, 'empty'],
    ['a JSON Lines file with no records', 'a.jsonl', '\n\n', /a\.jsonl: empty file \(no JSON records\)$/, 'empty'],
  ];

  test.each(cases)('%s: FILE:LINE, nothing written; with skipBad counted', async (_name, file, content, message, kind) => {
    const bad = write(file, content);
    const fine = write('fine.txt', good);
    const out = path.join(tmp, 'bad', `out-${n}`);
    const err = await prepare([bad, fine], { out, workers: 1 }).then(() => null, (e: Error) => e);
    expect(err?.message.replace(/ \(pass --skip-bad to skip such input and count it\)$/, '')).toMatch(message);
    expect(err?.message).toMatch(/\(pass --skip-bad to skip such input and count it\)$/);
    expect(fs.existsSync(out)).toBe(false);
    const r = await prepare([bad, fine], { out, workers: 1, skipBad: true });
    expect(r.skipped[kind]).toBe(1);
    expect(r.skipped.total).toBe(1);
    expect(r.skipped.examples[0]).toMatch(message);
    expect(r.sources[0].skipped).toBe(1);
    const keptRecords = /ok/.test(String(content)) && !/\[\s*"x"\s*\]/.test(String(content)) ? 1 : 0;
    expect(r.sources[0].documents).toBe(file.includes('jsonl') ? keptRecords : 0);
    expect(r.documents).toBe(1 + r.sources[0].documents);
    expect(JSON.parse(fs.readFileSync(path.join(out, 'meta.json'), 'utf8')).skipped.total).toBe(1);
  });

  test('corrupt gzip data: a clear error, never skipped', async () => {
    const gz = zlib.gzipSync(good);
    gz[gz.length - 8] ^= 0xff; // the CRC of the content
    const bad = write('c.txt.gz', Buffer.alloc(0));
    fs.writeFileSync(bad, gz);
    await expect(prepare([bad], { out: path.join(tmp, 'bad', 'gzout'), skipBad: true })).rejects.toThrow(/c\.txt\.gz: not valid gzip data after \d+ decompressed bytes/);
  });

  test('--text-field, and options checked', async () => {
    const file = write('t.jsonl', Array.from({ length: 20 }, (_, i) => rec({ content: `record number ${i} with some words\n` })).join('\n'));
    const out = path.join(tmp, 'bad', 'tf');
    await expect(prepare([file], { out })).rejects.toThrow(/t\.jsonl:1: the record has no "text" field \(it has "content"; choose the field with --text-field\)/);
    const r = await prepare([file], { out, textField: 'content', workers: 1, tokenizer: 'byte', valFraction: 0.2 });
    expect([r.documents, r.text_field]).toEqual([20, 'content']);
    await expect(prepare([file], { out, workers: 0 })).rejects.toThrow('Expected a positive integer for workers but received 0 (number)');
    await expect(prepare([file], { out, textField: '' })).rejects.toThrow(/for textField but received "" \(string\)/);
    await expect(prepare([file], { out, skipBad: 'yes' as never })).rejects.toThrow(/for skipBad but received "yes" \(string\)/);
    expect(() => prepareSync([write('z.txt.gz', good)], { out })).toThrow(/Expected uncompressed inputs for prepareSync but received .*z\.txt\.gz; use prepare\(\) for \.gz inputs/);
    expect(() => prepareSync([file], { out, workers: 2 })).toThrow(/Expected workers 1 for prepareSync/);
  });
});
