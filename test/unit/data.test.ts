import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  BatchSampler,
  cacheDir,
  encodeHeader,
  entropyOfCounts,
  evalBatches,
  expandInputs,
  openDataset,
  parseHeader,
  prepare,
  TOKEN_HEADER_BYTES,
  TokenFile,
  writeTokenFile,
} from '../../lib/data';
import { decode, encode, GPT2_EOT } from '../../lib/tokenizer';
import { Rng } from '../../lib/rng';

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gpte-data-'));
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of fs.readdirSync(dir)) out[f] = fs.readFileSync(path.join(dir, f)).toString('base64');
  return out;
}

describe('token file header', () => {
  test('round trip', () => {
    const h = parseHeader(encodeHeader({ tokenizer: 'gpt2', vocabSize: 50257, count: 1234 }));
    expect(h).toEqual({ version: 1, tokenizerId: 1, tokenizer: 'gpt2', vocabSize: 50257, bytesPerToken: 2, count: 1234 });
    expect(parseHeader(encodeHeader({ tokenizer: 'byte', vocabSize: 256, count: 0 })).bytesPerToken).toBe(2);
  });

  test('bad headers: clear errors', () => {
    const good = encodeHeader({ tokenizer: 'byte', vocabSize: 256, count: 3 });
    expect(() => parseHeader(good.subarray(0, 10), 'x.bin')).toThrow('x.bin is not a gpt-engine token file: it has 10 bytes, fewer than the 64-byte header');
    const bad = Buffer.from(good);
    bad.write('NOTATOKN', 0, 'latin1');
    expect(() => parseHeader(bad, 'x.bin')).toThrow(/expected the magic "GPTETOK1" but found "NOTATOKN"/);
    const v = Buffer.from(good);
    v.writeUInt32LE(9, 8);
    expect(() => parseHeader(v, 'x.bin')).toThrow('x.bin has token format version 9; this gpt-engine reads version 1');
    const t = Buffer.from(good);
    t.writeUInt32LE(7, 12);
    expect(() => parseHeader(t)).toThrow(/tokenizer id 7/);
    const vs = Buffer.from(good);
    vs.writeUInt32LE(300, 16);
    expect(() => parseHeader(vs)).toThrow(/vocabulary size 300, but the byte tokenizer has 256/);
    const b = Buffer.from(good);
    b.writeUInt32LE(4, 20);
    expect(() => parseHeader(b)).toThrow(/says 4 bytes per token/);
    const r = Buffer.from(good);
    r[40] = 1;
    expect(() => parseHeader(r)).toThrow(/reserved/);
  });

  test('fuzz: random bytes never crash the parser, only BadFileError', () => {
    const rng = new Rng(7);
    const good = encodeHeader({ tokenizer: 'gpt2', vocabSize: 50257, count: 99 });
    for (let i = 0; i < 3000; i++) {
      const buf = Buffer.from(good);
      const flips = 1 + rng.nextInt(4);
      for (let k = 0; k < flips; k++) buf[rng.nextInt(64)] = rng.nextInt(256);
      const len = rng.nextInt(10) === 0 ? rng.nextInt(64) : 64;
      try {
        const h = parseHeader(buf.subarray(0, len));
        expect(h.count).toBeGreaterThanOrEqual(0);
      } catch (e) {
        expect((e as { code?: string }).code).toBe('BAD_FILE');
      }
    }
  });
});

describe('token files', () => {
  test('write and read back, cached and positional', () => {
    const toks = Array.from({ length: 5000 }, (_, i) => (i * 7919) % 50257);
    const f = path.join(tmp, 't.bin');
    writeTokenFile(f, toks, 'gpt2');
    expect(fs.statSync(f).size).toBe(TOKEN_HEADER_BYTES + 5000 * 2);
    for (const cacheWholeBytes of [0, 1 << 30]) {
      const tf = TokenFile.open(f, { cacheWholeBytes });
      expect(tf.count).toBe(5000);
      expect(Array.from(tf.read(100, 50))).toEqual(toks.slice(100, 150));
      expect(() => tf.read(4990, 20)).toThrow(/within 0..5000/);
      tf.close();
    }
    expect(fs.readdirSync(tmp)).toEqual(['t.bin']);
  });

  test('truncated, corrupted and missing files: clear errors, files untouched', () => {
    const f = path.join(tmp, 't.bin');
    writeTokenFile(f, [1, 2, 3, 4], 'byte');
    const full = fs.readFileSync(f);
    fs.writeFileSync(f, full.subarray(0, full.length - 1));
    expect(() => TokenFile.open(f)).toThrow(/is truncated: the header says 4 tokens \(72 bytes\) but the file has 71 bytes/);
    const corrupt = Buffer.from(full);
    corrupt.writeUInt16LE(999, 64);
    fs.writeFileSync(f, corrupt);
    const tf = TokenFile.open(f);
    expect(() => tf.read(0, 2)).toThrow(/holds token id 999 at position 0, outside the vocabulary of 256/);
    tf.close();
    expect(fs.readFileSync(f)).toEqual(corrupt);
    expect(() => TokenFile.open(path.join(tmp, 'nope.bin'))).toThrow(/Missing token file .*nope.bin/);
    expect(() => writeTokenFile(path.join(tmp, 'bad.bin'), [256], 'byte')).toThrow(/Expected token ids between 0 and 255/);
    expect(fs.readdirSync(tmp).sort()).toEqual(['t.bin']);
  });
});

describe('prepare', () => {
  const docA = 'The first document.\nIt has two lines and some words, and then more words to split.\n';
  const docB = 'Ein zweites Dokument — mit Ümlauten.\nAnd <|endoftext|> inside it.\nEnd of B.\n';

  test('round-trips text with both tokenizers, splitting each document', async () => {
    fs.writeFileSync(path.join(tmp, 'a.txt'), docA.repeat(40));
    fs.mkdirSync(path.join(tmp, 'sub'));
    fs.writeFileSync(path.join(tmp, 'sub', 'b.txt'), docB.repeat(40));
    for (const tokenizer of ['gpt2', 'byte'] as const) {
      for (const chunkBytes of [16, 4096]) {
        const out = path.join(tmp, `out-${tokenizer}-${chunkBytes}`);
        const progress: number[] = [];
        const meta = await prepare([path.join(tmp, 'a.txt'), path.join(tmp, 'sub')], {
          out,
          tokenizer,
          valFraction: 0.1,
          chunkBytes,
          workers: 1,
          onProgress: (p) => progress.push(p.bytesDone),
        });
        expect(meta.documents).toBe(2);
        expect(progress[progress.length - 1]).toBe(meta.bytes);
        const ds = openDataset(out);
        expect(ds.tokenizer).toBe(tokenizer);
        const train = decode(ds.train.read(0, ds.train.count), tokenizer);
        const val = decode(ds.val.read(0, ds.val.count), tokenizer);
        const sep = tokenizer === 'gpt2' ? '<|endoftext|>' : '';
        const A = docA.repeat(40);
        const B = docB.repeat(40);
        // train = trainA + sep + trainB, val = valA + sep + valB, and each
        // document is its train part followed by its val part.
        const iB = train.indexOf(sep + 'Ein');
        const trainA = train.slice(0, iB);
        const trainB = train.slice(iB + sep.length);
        expect(A.startsWith(trainA)).toBe(true);
        expect(B.startsWith(trainB)).toBe(true);
        expect(val).toBe(A.slice(trainA.length) + sep + B.slice(trainB.length));
        expect(trainA.endsWith('\n')).toBe(true);
        if (tokenizer === 'gpt2') {
          // the whole-text encoding is reproduced regardless of chunking
          const whole = encode(trainA, 'gpt2');
          expect(Array.from(ds.train.read(0, whole.length))).toEqual(Array.from(whole));
          expect(ds.train.read(whole.length, 1)[0]).toBe(GPT2_EOT);
        }
        // roughly 10% of every document is validation
        expect(meta.val_tokens / (meta.train_tokens + meta.val_tokens)).toBeGreaterThan(0.05);
        expect(meta.val_tokens / (meta.train_tokens + meta.val_tokens)).toBeLessThan(0.15);
        expect(meta.unigram_entropy).toBeGreaterThan(1);
        ds.close();
      }
    }
  });

  test('byte tokenizer: train + val of one document is the document', async () => {
    const text = 'héllo wörld\n'.repeat(100);
    fs.writeFileSync(path.join(tmp, 'one.txt'), text);
    const out = path.join(tmp, 'o');
    await prepare([path.join(tmp, 'one.txt')], { out, tokenizer: 'byte', valFraction: 0.2, chunkBytes: 16 });
    const ds = openDataset(out);
    const train = decode(ds.train.read(0, ds.train.count), 'byte');
    const val = decode(ds.val.read(0, ds.val.count), 'byte');
    expect(train + val).toBe(text);
    expect(train.endsWith('\n')).toBe(true);
    expect(val.length).toBeGreaterThan(0);
    ds.close();
  });

  test('globs and meta', async () => {
    fs.writeFileSync(path.join(tmp, 'x1.txt'), 'one\ntwo\nthree\n'.repeat(20));
    fs.writeFileSync(path.join(tmp, 'x2.txt'), 'four\nfive\n'.repeat(20));
    fs.writeFileSync(path.join(tmp, 'y.md'), 'no');
    expect(expandInputs([path.join(tmp, 'x*.txt')]).map((f) => path.basename(f))).toEqual(['x1.txt', 'x2.txt']);
    expect(expandInputs([path.join(tmp, '**', '*.md')]).map((f) => path.basename(f))).toEqual(['y.md']);
    const { throughput, ...meta } = await prepare([path.join(tmp, 'x?.txt')], { out: path.join(tmp, 'o'), tokenizer: 'gpt2', workers: 1 });
    expect(meta.documents).toBe(2);
    expect(throughput.workers).toBe(1);
    const onDisk = JSON.parse(fs.readFileSync(path.join(tmp, 'o', 'meta.json'), 'utf8'));
    expect(onDisk).toEqual(meta);
    expect(meta.sources.map((s) => [path.basename(s.path), s.format, s.documents])).toEqual([['x1.txt', 'text', 1], ['x2.txt', 'text', 1]]);
    expect(meta.sources[0].tokens + meta.sources[1].tokens).toBe(meta.tokens);
    expect(meta.tokens).toBe(meta.train_tokens + meta.val_tokens);
    expect(onDisk.format).toBe('gpt-engine-data');
  });

  test('empty input, missing files, no validation: clear errors and nothing written', async () => {
    fs.writeFileSync(path.join(tmp, 'empty.txt'), '');
    const out = path.join(tmp, 'o');
    await expect(prepare([path.join(tmp, 'empty.txt')], { out })).rejects.toThrow(/empty.txt: empty file \(pass --skip-bad/);
    await expect(prepare([path.join(tmp, 'missing.txt')], { out })).rejects.toThrow(/Missing input .*missing.txt: no such file or folder/);
    await expect(prepare([path.join(tmp, 'z*.txt')], { out })).rejects.toThrow(/No files match/);
    await expect(prepare([], { out })).rejects.toThrow(/at least one input/);
    fs.writeFileSync(path.join(tmp, 'tiny.txt'), 'ab');
    await expect(prepare([path.join(tmp, 'tiny.txt')], { out, valFraction: 0.05, workers: 1 })).rejects.toThrow(/no validation tokens/);
    expect(fs.existsSync(out)).toBe(false);
    await expect(prepare([path.join(tmp, 'tiny.txt')], { out, valFraction: 0.9 })).rejects.toThrow(/Expected a finite number > 0 and <= 0.5 for valFraction but received 0.9/);
    await expect(prepare([path.join(tmp, 'tiny.txt')], { out, tokenizer: 'bpe' as never })).rejects.toThrow(/for tokenizer but received "bpe"/);
  });

  test('a failed prepare leaves an existing folder as it was', async () => {
    const out = path.join(tmp, 'o');
    fs.writeFileSync(path.join(tmp, 'a.txt'), 'hello there\nfriend\n'.repeat(50));
    await prepare([path.join(tmp, 'a.txt')], { out, tokenizer: 'byte' });
    const before = snapshot(out);
    fs.writeFileSync(path.join(tmp, 'tiny.txt'), 'ab');
    await expect(prepare([path.join(tmp, 'tiny.txt')], { out, workers: 1 })).rejects.toThrow(/no validation tokens/);
    expect(snapshot(out)).toEqual(before);
  });
});

describe('sampler', () => {
  test('windows are input/target pairs; state resumes exactly', () => {
    const f = path.join(tmp, 't.bin');
    writeTokenFile(f, Array.from({ length: 1000 }, (_, i) => i % 256), 'byte');
    const tf = TokenFile.open(f);
    const s = new BatchSampler(tf, { batch: 3, seq: 8, seed: 42 });
    const a = s.next();
    for (let b = 0; b < 3; b++)
      for (let t = 0; t < 8; t++) expect(a.targets[b * 8 + t]).toBe((a.tokens[b * 8 + t] + 1) % 256);
    const state = JSON.parse(JSON.stringify(s.getState()));
    const next3 = [s.next(), s.next(), s.next()];
    const s2 = new BatchSampler(tf, { batch: 3, seq: 8, seed: 0 });
    s2.setState(state);
    expect([s2.next(), s2.next(), s2.next()]).toEqual(next3);
    expect(s2.getState().draws).toBe(4);
    const s3 = new BatchSampler(tf, { batch: 3, seq: 8, seed: 42 });
    expect(s3.next()).toEqual(a);
    expect(() => new BatchSampler(tf, { batch: 1, seq: 1000, seed: 1 })).toThrow(/at least seq \+ 1 = 1001 tokens/);
    expect(() => s2.setState({} as never)).toThrow(/Expected a sampler state/);
    const ev = evalBatches(tf, { batch: 4, seq: 100, maxWindows: 9 });
    expect(ev.map((e) => e.batch)).toEqual([4, 4, 1]);
    expect(ev[0].tokens[0]).toBe(0);
    tf.close();
  });
});

test('cache dir follows GPT_ENGINE_CACHE, then XDG_CACHE_HOME, then ~/.cache', () => {
  const saved = { a: process.env.GPT_ENGINE_CACHE, b: process.env.XDG_CACHE_HOME };
  try {
    process.env.GPT_ENGINE_CACHE = '/tmp/a';
    process.env.XDG_CACHE_HOME = '/tmp/b';
    expect(cacheDir()).toBe('/tmp/a');
    delete process.env.GPT_ENGINE_CACHE;
    expect(cacheDir()).toBe('/tmp/b/gpt-engine');
    delete process.env.XDG_CACHE_HOME;
    expect(cacheDir()).toBe(path.join(os.homedir(), '.cache', 'gpt-engine'));
  } finally {
    if (saved.a === undefined) delete process.env.GPT_ENGINE_CACHE;
    else process.env.GPT_ENGINE_CACHE = saved.a;
    if (saved.b === undefined) delete process.env.XDG_CACHE_HOME;
    else process.env.XDG_CACHE_HOME = saved.b;
  }
});

test('entropy of counts', () => {
  expect(entropyOfCounts([1, 1, 1, 1])).toBeCloseTo(Math.log(4), 12);
  expect(entropyOfCounts([5, 0])).toBe(0);
});
