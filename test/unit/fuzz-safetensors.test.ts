/**
 * Fuzzing the safetensors reader: seeded mutations of the corpus
 * in test/fuzz-corpus/safetensors, in memory (decodeSafetensors) and through
 * files (SafetensorsReader, and readCheckpoint over a whole folder). Every
 * input must give a valid result or a clear BadFileError, quickly, without
 * producing more bytes than the input justifies.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readCheckpoint } from '../../lib/checkpoint';
import { BadFileError } from '../../lib/errors';
import { SafetensorsReader, decodeSafetensors } from '../../lib/safetensors';
import { byteMutators, buildSafetensors, f32Bytes, fuzzCount, fuzzSeed, loadCorpus, safetensorsMutators } from '../helpers/fuzz';
import { fuzzAndReport, replayRegressions, scratchDirForAll } from './shared/parser-tests';

const { seeds, regressions } = loadCorpus('safetensors');
const mutators = [...Object.values(byteMutators), ...Object.values(safetensorsMutators), ...Object.values(safetensorsMutators)];

function decodedBytes(input: Buffer): number {
  const r = decodeSafetensors(input, 'fuzz.safetensors');
  let n = 0;
  for (const t of r.tensors.values()) n += t.byteLength;
  return n;
}

const tmp = scratchDirForAll('gpte-fuzz-st-');

test('the corpus seeds are valid files', () => {
  expect(seeds.length).toBeGreaterThanOrEqual(5);
  for (const s of seeds) {
    try {
      decodedBytes(s);
    } catch (e) {
      // mixed-dtypes holds integer tensors: a valid file, refused only at conversion.
      expect((e as Error).message).toMatch(/cannot read as float32/);
    }
  }
});

test('regressions replay', () => {
  replayRegressions(regressions, (data) => decodedBytes(data));
});

test('in memory: 3,000 mutated files', async () => {
  const r = await fuzzAndReport('safetensors (memory)', { seed: fuzzSeed(0x5afe), count: fuzzCount(3000), corpus: seeds, mutators, parse: decodedBytes });
  expect(r.count).toBe(fuzzCount(3000));
  // The mutations must reach both sides: some inputs still parse, most are refused.
  expect(r.accepted).toBeGreaterThan(0);
  expect(r.rejected).toBeGreaterThan(r.count / 2);
});

test('through files: 300 mutated files opened and read tensor by tensor', async () => {
  const file = path.join(tmp(), 'f.safetensors');
  const r = await fuzzAndReport('safetensors (files)', {
    seed: fuzzSeed(0xf11e),
    count: fuzzCount(300),
    corpus: seeds,
    mutators,
    parse: async (input) => {
      fs.writeFileSync(file, input);
      const rd = await SafetensorsReader.open(file);
      let n = 0;
      try {
        for (const name of rd.names()) n += (await rd.readFloat32(name)).byteLength;
      } finally {
        await rd.close();
      }
      return n;
    },
  });
  expect(r.rejected).toBeGreaterThan(0);
});

test('whole checkpoint folders: 300 mutated model.safetensors files', async () => {
  const dir = path.join(tmp(), 'ckpt');
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ n_layer: 1, n_head: 1, n_embd: 4, n_positions: 3, vocab_size: 6 }));
  const seed = seeds.find((s) => s.length > 2000)!; // tiny-gpt2
  await expect(
    (async () => {
      fs.writeFileSync(path.join(dir, 'model.safetensors'), seed);
      return (await readCheckpoint(dir)).tensors.size;
    })(),
  ).resolves.toBe(16);
  const r = await fuzzAndReport('checkpoint folder', {
    seed: fuzzSeed(0xc4e7),
    count: fuzzCount(300),
    corpus: [seed],
    mutators,
    parse: async (input) => {
      fs.writeFileSync(path.join(dir, 'model.safetensors'), input);
      const c = await readCheckpoint(dir);
      let n = 0;
      for (const t of c.tensors.values()) n += t.byteLength;
      return n;
    },
  });
  expect(r.rejected).toBeGreaterThan(r.count / 2);
});

describe('hand-written hostile files', () => {
  const w = { name: 'w', dtype: 'F32', shape: [2], bytes: f32Bytes([1, 2]) };
  test.each<[string, Buffer, RegExp]>([
    ['header length 2^64 - 1', buildSafetensors([w], { headerLength: 2n ** 64n - 1n }), /exceeds the 100000000-byte limit/],
    ['header length one past the file', (() => { const b = buildSafetensors([w]); b.writeBigUInt64LE(BigInt(b.length - 7)); return b; })(), /runs past the end/],
    ['header of 100 MB of brackets claimed, 10 bytes present', buildSafetensors([w], { headerLength: 100_000_000n }), /runs past the end/],
    ['4 GiB tensor claimed in a tiny file', buildSafetensors([{ ...w, shape: [2 ** 30], offsets: [0, 2 ** 32] }]), /needs more bytes than the whole 8-byte data buffer/],
    ['shape product overflowing 2^64', buildSafetensors([{ ...w, shape: [2 ** 32, 2 ** 32, 2 ** 32] }]), /needs more bytes/],
    ['negative zero in a shape', buildSafetensors([{ ...w, shape: [-0, 2] }]), /hold 8 bytes but shape \[0, 2\]/],
    ['offsets as strings', buildSafetensors([{ ...w, offsets: ['0', '8'] }]), /data_offsets must be/],
    ['offsets beyond 2^53', buildSafetensors([{ ...w, offsets: [2 ** 53, 2 ** 53 + 8] }]), /data_offsets must be/],
    ['dtype "__proto__"', buildSafetensors([{ ...w, dtype: '__proto__' }]), /unknown dtype "__proto__"/],
    ['dtype "constructor"', buildSafetensors([{ ...w, dtype: 'constructor' }]), /unknown dtype "constructor"/],
    ['a tensor named __proto__ with a bad entry', buildSafetensors([], { headerObject: () => JSON.parse('{"__proto__": {"dtype": "F32", "shape": [1], "data_offsets": [0, 9]}}') }), /tensor "__proto__"/],
    ['10,000 nested arrays in the header', (() => { const j = Buffer.from('{"a":' + '['.repeat(10000) + ']'.repeat(10000) + '}'); const n = Buffer.alloc(8); n.writeBigUInt64LE(BigInt(j.length)); return Buffer.concat([n, j]); })(), /nests JSON deeper than 4 levels/],
    ['UTF-16 header', (() => { const j = Buffer.from('{}', 'utf16le'); const n = Buffer.alloc(8); n.writeBigUInt64LE(BigInt(j.length)); return Buffer.concat([n, j]); })(), /not valid JSON/],
    ['lone surrogate bytes', (() => { const j = Buffer.from([0x7b, 0x22, 0xed, 0xa0, 0x80, 0x22, 0x3a, 0x31, 0x7d]); const n = Buffer.alloc(8); n.writeBigUInt64LE(BigInt(j.length)); return Buffer.concat([n, j]); })(), /not valid UTF-8/],
    ['many tensors overlapping the same 4 bytes', buildSafetensors(Array.from({ length: 1000 }, (_, i) => ({ ...w, name: `t${i}`, shape: [1], bytes: i ? new Uint8Array(0) : f32Bytes([1]), offsets: [0, 4] }))), /overlap/],
  ])('%s', (_name, input, message) => {
    const t0 = performance.now();
    expect(() => decodeSafetensors(input)).toThrow(BadFileError);
    expect(() => decodeSafetensors(input)).toThrow(message);
    expect(performance.now() - t0).toBeLessThan(1000);
  });
});
