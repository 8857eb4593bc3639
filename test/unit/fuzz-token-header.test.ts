/**
 * Fuzzing the token-file header (lib/data.ts parseHeader) and TokenFile.open
 *: seeded mutations of test/fuzz-corpus/token. Every input must
 * give a valid header or a clear BadFileError; a file that opens must read
 * back whole with every id inside the vocabulary, or fail with BadFileError.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { TOKEN_HEADER_BYTES, TokenFile, parseHeader } from '../../lib/data';
import { BadFileError } from '../../lib/errors';
import { FuzzRng, Mutator, byteMutators, fuzzCount, fuzzSeed, loadCorpus } from '../helpers/fuzz';
import { fuzzAcceptsAndRefuses, fuzzAndReport, replayRegressions, scratchDirForAll } from './shared/parser-tests';

const { seeds, regressions } = loadCorpus('token');

/** Rewrites one header field with a value that sits on a boundary. */
const fieldMutator: Mutator = (b: Buffer, rng: FuzzRng) => {
  if (b.length < TOKEN_HEADER_BYTES) return b;
  const o = Buffer.from(b);
  const u32 = [0, 1, 2, 3, 4, 255, 256, 257, 65535, 65536, 50257, 50256, 0x7fffffff, 0xffffffff];
  switch (rng.int(6)) {
    case 0: o.writeUInt32LE(rng.pick(u32), 8); break; // version
    case 1: o.writeUInt32LE(rng.pick(u32), 12); break; // tokenizer id
    case 2: o.writeUInt32LE(rng.pick(u32), 16); break; // vocab size
    case 3: o.writeUInt32LE(rng.pick(u32), 20); break; // bytes per token
    case 4: o.writeBigUInt64LE(rng.pick([0n, 1n, 3n, 5n, 2n ** 31n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n, BigInt(rng.int(100))]), 24); break; // count
    default: o[32 + rng.int(32)] = 1 + rng.int(255); // reserved
  }
  return o;
};
const tokenMutator: Mutator = (b: Buffer, rng: FuzzRng) => {
  if (b.length < TOKEN_HEADER_BYTES + 2) return b;
  const o = Buffer.from(b);
  o.writeUInt16LE(rng.pick([255, 256, 50256, 50257, 65535]), TOKEN_HEADER_BYTES + 2 * rng.int((o.length - TOKEN_HEADER_BYTES) >> 1));
  return o;
};
const mutators = [...Object.values(byteMutators), fieldMutator, fieldMutator, fieldMutator, tokenMutator];

const tmp = scratchDirForAll('gpte-fuzz-tok-');

test('seeds parse; regressions replay', () => {
  expect(seeds.length).toBeGreaterThanOrEqual(3);
  for (const s of seeds) expect(parseHeader(s).version).toBe(1);
  replayRegressions(regressions, (data) => parseHeader(data));
});

test('3,000 mutated headers', async () => {
  await fuzzAcceptsAndRefuses('token header', 0x70c1, seeds, mutators, (input) => {
    const h = parseHeader(input, 'train.bin');
    expect([2, 4]).toContain(h.bytesPerToken);
    expect(Number.isSafeInteger(h.count)).toBe(true);
  });
});

test('300 mutated token files opened and read whole', async () => {
  const file = path.join(tmp(), 'train.bin');
  let i = 0;
  const r = await fuzzAndReport('token files', {
    seed: fuzzSeed(0x70c2),
    count: fuzzCount(300),
    corpus: seeds,
    mutators,
    allowed: [BadFileError],
    parse: (input) => {
      fs.writeFileSync(file, input);
      // Half the files through the cache, half by positional reads.
      const tf = TokenFile.open(file, { cacheWholeBytes: i++ % 2 ? 0 : undefined });
      try {
        const t = tf.read(0, tf.count);
        for (const id of t) expect(id >= 0 && id < tf.header.vocabSize).toBe(true);
        return t.byteLength;
      } finally {
        tf.close();
      }
    },
  });
  expect(r.rejected).toBeGreaterThan(0);
});

test.each<[string, (b: Buffer) => Buffer, RegExp]>([
  ['empty file', () => Buffer.alloc(0), /fewer than the 64-byte header/],
  ['wrong magic', (b) => Buffer.concat([Buffer.from('GPTETOK2'), b.subarray(8)]), /expected the magic "GPTETOK1"/],
  ['count 2^64 - 1', (b) => (b.writeBigUInt64LE(2n ** 64n - 1n, 24), b), /more than this reader handles/],
  ['tokenizer id 0xffffffff', (b) => (b.writeUInt32LE(0xffffffff, 12), b), /tokenizer id 4294967295/],
  ['bytes per token 4 for a small vocabulary', (b) => (b.writeUInt32LE(4, 20), b), /says 4 bytes per token/],
])('%s', (_name, edit, message) => {
  const input = edit(Buffer.from(seeds[0]));
  expect(() => parseHeader(input, 'x.bin')).toThrow(BadFileError);
  expect(() => parseHeader(input, 'x.bin')).toThrow(message);
});

test('a count that claims more tokens than the file holds', () => {
  const file = path.join(tmp(), 'lie.bin');
  const b = Buffer.from(seeds[0]);
  b.writeBigUInt64LE(2n ** 40n, 24);
  fs.writeFileSync(file, b);
  expect(() => TokenFile.open(file)).toThrow(/is truncated: the header says 1099511627776 tokens/);
});
