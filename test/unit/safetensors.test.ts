import * as fs from 'node:fs';
import * as path from 'node:path';
import { BadFileError, ArgumentRangeError, ArgumentTypeError } from '../../lib/errors';
import {
  SafetensorsReader,
  decodeSafetensors,
  encodeSafetensors,
  readSafetensors,
  setWriteFaultHook,
  writeSafetensors,
} from '../../lib/safetensors';
import { jsonDepthExceeds } from '../../lib/json-bytes';
import { bf16Bytes, buildSafetensors, f16Bytes, f32Bytes } from '../helpers/fuzz';
import { expectBadFile, scratchDirForAll } from './shared/parser-tests';

const tmp = scratchDirForAll('gpte-st-');
afterEach(() => setWriteFaultHook(null));

function tensors(): Map<string, { shape: number[]; data: Float32Array }> {
  return new Map([
    ['a', { shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, -6.5]) }],
    ['b.bias', { shape: [3], data: Float32Array.from([0.25, NaN, -Infinity]) }],
    ['scalar', { shape: [], data: Float32Array.from([7]) }],
    ['empty', { shape: [0, 4], data: new Float32Array(0) }],
  ]);
}

describe('writer and reader round trip', () => {
  test('in memory: values, shapes, metadata, 8-byte aligned data', () => {
    const buf = encodeSafetensors(tensors(), { note: 'hello', step: '3' });
    const n = Number(buf.readBigUInt64LE(0));
    expect((8 + n) % 8).toBe(0);
    expect(buf.subarray(8, 8 + n).toString('utf8')).toMatch(/ *$/);
    const r = decodeSafetensors(buf, 'x.safetensors');
    expect(r.metadata).toEqual({ note: 'hello', step: '3' });
    expect([...r.tensors.keys()].sort()).toEqual(['a', 'b.bias', 'empty', 'scalar']);
    expect(Array.from(r.tensors.get('a')!)).toEqual([1, 2, 3, 4, 5, -6.5]);
    expect(Array.from(r.tensors.get('b.bias')!)).toEqual([0.25, NaN, -Infinity]);
    expect(r.shapes.get('scalar')).toEqual([]);
    expect(r.shapes.get('empty')).toEqual([0, 4]);
    expect(r.tensors.get('empty')!.length).toBe(0);
  });

  test('through files, reading only requested tensors', async () => {
    const f = path.join(tmp(), 'rt.safetensors');
    await writeSafetensors(f, tensors(), { metadata: { a: 'b' } });
    expect(fs.readdirSync(tmp()).filter((n) => n.includes('.tmp-'))).toEqual([]);
    const all = await readSafetensors(f);
    expect(Array.from(all.tensors.get('a')!)).toEqual([1, 2, 3, 4, 5, -6.5]);
    expect(all.metadata).toEqual({ a: 'b' });
    const some = await readSafetensors(f, { names: ['b.bias'] });
    expect([...some.tensors.keys()]).toEqual(['b.bias']);
    await expect(readSafetensors(f, { names: ['nope'] })).rejects.toThrow(/has no tensor "nope"/);
    expect(fs.readFileSync(f).equals(encodeSafetensors(tensors(), { a: 'b' }))).toBe(true);
  });

  test('the reader reads only the header until a tensor is asked for', async () => {
    // A file whose data region is huge but sparse: opening it must not read it.
    const f = path.join(tmp(), 'lazy.safetensors');
    const big = 64 << 20;
    const head = buildSafetensors([{ name: 'w', dtype: 'F32', shape: [big / 4], bytes: new Uint8Array(0), offsets: [0, big] }]);
    fs.writeFileSync(f, head);
    fs.truncateSync(f, head.length + big);
    const r = await SafetensorsReader.open(f);
    expect(r.info('w')!.elements).toBe(big / 4);
    const before = process.memoryUsage().arrayBuffers;
    expect(r.names()).toEqual(['w']);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(1 << 20);
    await r.close();
  });

  test('fp16 and bf16 convert to float32', () => {
    const vals = [0, -0, 1, -2, 0.5, 65504, 1.25, -1024, 2 ** -24, Infinity];
    const buf = buildSafetensors([
      { name: 'h', dtype: 'F16', shape: [vals.length], bytes: f16Bytes(vals) },
      { name: 'b', dtype: 'BF16', shape: [2, 3], bytes: bf16Bytes([1, -2, 0.5, 3.5, 1e30, -Infinity]) },
    ]);
    const r = decodeSafetensors(buf);
    expect(Array.from(r.tensors.get('h')!)).toEqual(vals);
    expect(r.dtypes.get('h')).toBe('F16');
    const b = r.tensors.get('b')!;
    expect(Array.from(b.subarray(0, 4))).toEqual([1, -2, 0.5, 3.5]);
    expect(b[4] / 1e30).toBeCloseTo(1, 2);
    expect(b[5]).toBe(-Infinity);
    const nan = decodeSafetensors(buildSafetensors([{ name: 'n', dtype: 'F16', shape: [1], bytes: Uint8Array.from([0x01, 0x7e]) }]));
    expect(nan.tensors.get('n')![0]).toBeNaN();
  });

  test('writer validates its input', async () => {
    expect(() => encodeSafetensors(new Map([['a', { shape: [3], data: new Float32Array(2) }]]))).toThrow(
      new ArgumentRangeError('Expected 3 elements (shape [3]) for tensor "a" but received a Float32Array of length 2'),
    );
    expect(() => encodeSafetensors(new Map([['a', { shape: [2], data: [1, 2] as unknown as Float32Array }]]))).toThrow(ArgumentTypeError);
    expect(() => encodeSafetensors(new Map([['__metadata__', { shape: [0], data: new Float32Array(0) }]]))).toThrow(/other than "__metadata__"/);
    expect(() => encodeSafetensors(new Map([['a', { shape: [-1], data: new Float32Array(0) }]]))).toThrow(/non-negative integers for the shape of "a"/);
    expect(() => encodeSafetensors(new Map(), { a: 1 as unknown as string })).toThrow(/Expected a string for metadata.a/);
  });

  test('a failing write leaves the previous file and no temporary file', async () => {
    const f = path.join(tmp(), 'keep.safetensors');
    await writeSafetensors(f, tensors());
    const before = fs.readFileSync(f);
    setWriteFaultHook((file, offset) => {
      if (offset > 0) throw Object.assign(new Error('ENOSPC: no space left on device (injected)'), { code: 'ENOSPC' });
    });
    await expect(writeSafetensors(f, new Map([['z', { shape: [4], data: new Float32Array(4) }]]))).rejects.toThrow(/ENOSPC/);
    expect(fs.readFileSync(f).equals(before)).toBe(true);
    expect(fs.readdirSync(tmp()).filter((n) => n.startsWith('.keep'))).toEqual([]);
  });
});

describe('reader errors: each names the file, and the tensor where there is one', () => {
  const ok = (over: Partial<Parameters<typeof buildSafetensors>[1]> = {}, t = [{ name: 'w', dtype: 'F32', shape: [2] as unknown, bytes: f32Bytes([1, 2]) }]) =>
    buildSafetensors(t, over);

  test('too short for the length prefix', () => expectBadFile(() => decodeSafetensors(Buffer.from([1, 2, 3]), 'f.st'), 'f.st', /3 bytes, fewer than the 8-byte/));
  test('header length over the limit', () => expectBadFile(() => decodeSafetensors(ok({ headerLength: 2n ** 40n })), /exceeds the 100000000-byte limit/));
  test('header length past the end', () => expectBadFile(() => decodeSafetensors(ok({ headerLength: 5000n }), 'f.st'), /header length 5000 runs past the end of the \d+-byte file/));
  test('header length too small', () => expectBadFile(() => decodeSafetensors(ok({ headerLength: 0n })), /too small/));
  test('not UTF-8', () => {
    const b = ok();
    b[9] = 0xff;
    expectBadFile(() => decodeSafetensors(b, 'g.st'), 'g.st', /not valid UTF-8/);
  });
  test('not JSON', () => {
    const b = ok();
    b[8] = 0x78;
    expectBadFile(() => decodeSafetensors(b), /not valid JSON/);
  });
  test('not an object', () => expectBadFile(() => decodeSafetensors(ok({ headerObject: () => [1] })), /must be a JSON object but is an array/));
  test('deeply nested JSON', () => {
    expectBadFile(() => decodeSafetensors(ok({ headerObject: (h) => ({ ...h, x: [[[[[1]]]]] }) })), /nests JSON deeper than 4 levels/);
    expect(jsonDepthExceeds('{"a":"[[[[[[[[["}', 2)).toBe(false);
    expect(jsonDepthExceeds('{"a":"\\"[[[[["}', 2)).toBe(false);
    expect(jsonDepthExceeds('[[[]]]', 2)).toBe(true);
  });
  test('entry not an object', () => expectBadFile(() => decodeSafetensors(ok({ headerObject: (h) => ({ ...h, x: 3 }) })), /tensor "x"/, /must be an object/));
  test('bad metadata', () => {
    expectBadFile(() => decodeSafetensors(ok({ metadata: { a: 1 } })), /__metadata__ value of "a" must be a string but is 1 \(number\)/);
    expectBadFile(() => decodeSafetensors(ok({ metadata: [] })), /__metadata__ must be an object/);
  });
  test('unknown and unconvertible dtypes', () => {
    expectBadFile(() => decodeSafetensors(ok({}, [{ name: 'w', dtype: 'F128', shape: [1], bytes: new Uint8Array(16) }])), /tensor "w"/, /unknown dtype "F128"/);
    expectBadFile(() => decodeSafetensors(ok({}, [{ name: 'w', dtype: 7 as unknown as string, shape: [1], bytes: new Uint8Array(4) }])), /dtype must be a string but is 7/);
    expectBadFile(() => decodeSafetensors(ok({}, [{ name: 'ids', dtype: 'I64', shape: [2], bytes: new Uint8Array(16) }]), 'i.st'), 'i.st', /"ids" has dtype I64, which gpt-engine cannot read as float32 \(supported: F32, F16, BF16\)/);
  });
  test('bad shapes', () => {
    const t = (shape: unknown) => [{ name: 'w', dtype: 'F32', shape, bytes: f32Bytes([1, 2]) }];
    expectBadFile(() => decodeSafetensors(ok({}, t([-2]))), /tensor "w"/, /shape\[0\] must be a non-negative integer but is -2/);
    expectBadFile(() => decodeSafetensors(ok({}, t([1.5]))), /shape\[0\] must be a non-negative integer but is 1.5/);
    expectBadFile(() => decodeSafetensors(ok({}, t('2'))), /shape must be an array/);
    expectBadFile(() => decodeSafetensors(ok({}, t([2 ** 60]))), /shape\[0\] must be a non-negative integer/);
    // Each factor is fine; the product overflows: refused before it gets there.
    expectBadFile(() => decodeSafetensors(ok({}, t([2 ** 30, 2 ** 30, 2 ** 30, 2 ** 30]))), /needs more bytes than the whole 8-byte data buffer holds/);
  });
  test('bad offsets', () => {
    const t = (offsets: unknown) => [{ name: 'w', dtype: 'F32', shape: [2], bytes: f32Bytes([1, 2]), offsets }];
    expectBadFile(() => decodeSafetensors(ok({}, t([0, 12]))), /tensor "w"/, /\[0, 12\] run past the end of the 8-byte data buffer/);
    expectBadFile(() => decodeSafetensors(ok({}, t([8, 0]))), /reversed/);
    expectBadFile(() => decodeSafetensors(ok({}, t([0, 4]))), /hold 4 bytes but shape \[2\] of F32 needs 8/);
    expectBadFile(() => decodeSafetensors(ok({}, t([0]))), /data_offsets must be \[begin, end\]/);
    expectBadFile(() => decodeSafetensors(ok({}, t([-1, 7]))), /data_offsets must be/);
  });
  test('overlaps, holes and trailing bytes', () => {
    const two = (o1: number[], o2: number[], extra = 0) =>
      buildSafetensors(
        [
          { name: 'a', dtype: 'F32', shape: [1], bytes: f32Bytes([1]), offsets: o1 },
          { name: 'b', dtype: 'F32', shape: [1], bytes: f32Bytes([2]), offsets: o2 },
        ],
        { trailing: new Uint8Array(extra) },
      );
    expectBadFile(() => decodeSafetensors(two([0, 4], [2, 6])), /tensor "b"/, /overlap those of "a"/);
    expectBadFile(() => decodeSafetensors(two([0, 4], [0, 4])), /overlap/);
    expectBadFile(() => decodeSafetensors(two([4, 8], [4, 8])), /hole: bytes 0 to 4/);
    expectBadFile(() => decodeSafetensors(two([0, 4], [4, 8], 4)), /has 12 bytes but its tensors cover only 8/);
    expect(decodeSafetensors(two([4, 8], [0, 4])).tensors.get('a')![0]).toBe(2);
  });
  test('file errors', async () => {
    await expect(SafetensorsReader.open(path.join(tmp(), 'missing.st'))).rejects.toThrow(`Could not open ${path.join(tmp(), 'missing.st')}: no such file`);
    await expect(SafetensorsReader.open(tmp())).rejects.toThrow(BadFileError);
    const f = path.join(tmp(), 'trunc.safetensors');
    fs.writeFileSync(f, encodeSafetensors(tensors()).subarray(0, 60));
    await expect(SafetensorsReader.open(f)).rejects.toThrow(new RegExp(`${f.replace(/[.]/g, '\\.')} is not a valid safetensors file`));
  });
});
