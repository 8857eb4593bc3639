/**
 * lib/fsutil.ts, the one home for durable writes: the target holds its old
 * content until the new one is complete, a failing write (injected with
 * setWriteFaultHook) leaves the old content and no temporary file behind,
 * and the sync and async writers behave alike.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  fsyncDir,
  fsyncDirSync,
  setWriteFaultHook,
  tempNameBeside,
  writeFileAtomic,
  writeFileAtomicSync,
  writeFileChunks,
  writeJsonAtomicSync,
} from '../../lib/fsutil';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gpt-engine-fsutil-'));
});
afterEach(() => {
  setWriteFaultHook(null);
  fs.rmSync(dir, { recursive: true, force: true });
});

const enospc = () => Object.assign(new Error('ENOSPC: no space left on device (injected), write'), { code: 'ENOSPC' });

describe('tempNameBeside', () => {
  test('is a hidden, unique name in the same folder as the target', () => {
    const target = path.join(dir, 'model.safetensors');
    const a = tempNameBeside(target);
    const b = tempNameBeside(target);
    expect(path.dirname(a)).toBe(dir);
    expect(path.basename(a)).toMatch(new RegExp(`^\\.model\\.safetensors\\.tmp-${process.pid}-[0-9a-f]{8}$`));
    expect(path.basename(tempNameBeside(target, 'old'))).toMatch(/^\.model\.safetensors\.old-/);
    expect(a).not.toBe(b);
  });
});

describe('writeFileAtomic', () => {
  test('replaces the content; the target keeps the old content until the new one is complete', async () => {
    const file = path.join(dir, 'a.txt');
    await writeFileAtomic(file, 'old content\n');
    expect(fs.readFileSync(file, 'utf8')).toBe('old content\n');
    const seen: string[] = [];
    setWriteFaultHook((f, offset) => {
      // every chunk goes to a temporary file beside the target, never the target itself
      expect(path.dirname(f)).toBe(dir);
      expect(f).not.toBe(file);
      if (offset > 0) seen.push(fs.readFileSync(file, 'utf8'));
    });
    const chunks = [Buffer.from('new '), Buffer.from('content '), Buffer.from('in three chunks\n')];
    await writeFileAtomic(file, chunks);
    expect(seen).toEqual(['old content\n', 'old content\n']);
    expect(fs.readFileSync(file, 'utf8')).toBe('new content in three chunks\n');
    expect(fs.readdirSync(dir)).toEqual(['a.txt']);
  });

  test('writes strings, byte arrays and chunk lists byte for byte', async () => {
    const bytes = Uint8Array.from({ length: 1000 }, (_, i) => (i * 37) & 0xff);
    await writeFileAtomic(path.join(dir, 's'), 'héllo ✓');
    await writeFileAtomic(path.join(dir, 'b'), bytes);
    await writeFileAtomic(path.join(dir, 'c'), [bytes.subarray(0, 10), new Uint8Array(0), bytes.subarray(10)]);
    expect(fs.readFileSync(path.join(dir, 's'), 'utf8')).toBe('héllo ✓');
    expect(Buffer.compare(fs.readFileSync(path.join(dir, 'b')), Buffer.from(bytes))).toBe(0);
    expect(Buffer.compare(fs.readFileSync(path.join(dir, 'c')), Buffer.from(bytes))).toBe(0);
  });

  test('a failing write keeps the old content and removes the temporary file', async () => {
    const file = path.join(dir, 'keep.txt');
    await writeFileAtomic(file, 'version 1\n');
    let calls = 0;
    setWriteFaultHook((_f, offset) => {
      calls++;
      if (offset > 0) throw enospc(); // the first chunk is on disk in the temporary file by now
    });
    await expect(writeFileAtomic(file, [Buffer.from('version 2, part 1\n'), Buffer.from('part 2\n')])).rejects.toMatchObject({ code: 'ENOSPC' });
    expect(calls).toBe(2);
    expect(fs.readFileSync(file, 'utf8')).toBe('version 1\n');
    expect(fs.readdirSync(dir)).toEqual(['keep.txt']);
  });

  test('a failing first write of a new file leaves nothing behind', async () => {
    const file = path.join(dir, 'new.txt');
    setWriteFaultHook(() => {
      throw enospc();
    });
    await expect(writeFileAtomic(file, 'x')).rejects.toThrow(/ENOSPC/);
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  test('a missing folder is an error, not a silent success', async () => {
    await expect(writeFileAtomic(path.join(dir, 'no', 'such', 'file'), 'x')).rejects.toMatchObject({ code: 'ENOENT' });
    expect(fs.readdirSync(dir)).toEqual([]);
  });
});

describe('writeFileAtomicSync and writeJsonAtomicSync', () => {
  test('replace the content', () => {
    const file = path.join(dir, 'train.json');
    writeFileAtomicSync(file, 'old');
    writeJsonAtomicSync(file, { step: 3, nested: { a: [1, 2] } });
    expect(fs.readFileSync(file, 'utf8')).toBe('{\n  "step": 3,\n  "nested": {\n    "a": [\n      1,\n      2\n    ]\n  }\n}\n');
    writeFileAtomicSync(file, Buffer.from([1, 2, 3]));
    expect([...fs.readFileSync(file)]).toEqual([1, 2, 3]);
    expect(fs.readdirSync(dir)).toEqual(['train.json']);
  });

  test('a failing write keeps the old content and removes the temporary file', () => {
    const file = path.join(dir, 'metrics.jsonl');
    writeFileAtomicSync(file, '{"step":1}\n');
    const hooked: string[] = [];
    setWriteFaultHook((f) => {
      hooked.push(f);
      // the temporary file exists when the hook runs, so the cleanup below is what removes it
      expect(fs.existsSync(f)).toBe(true);
      throw enospc();
    });
    expect(() => writeJsonAtomicSync(file, { step: 2 })).toThrow(/ENOSPC/);
    expect(hooked).toHaveLength(1);
    expect(path.dirname(hooked[0])).toBe(dir);
    expect(fs.readFileSync(file, 'utf8')).toBe('{"step":1}\n');
    expect(fs.readdirSync(dir)).toEqual(['metrics.jsonl']);
  });
});

describe('writeFileChunks and fsyncDir', () => {
  test('writeFileChunks writes in place (callers handle renames) and honours the hook', async () => {
    const file = path.join(dir, 'direct.bin');
    const offsets: number[] = [];
    setWriteFaultHook((f, offset, length) => {
      expect(f).toBe(file);
      offsets.push(offset, length);
    });
    await writeFileChunks(file, [Buffer.from('abc'), Buffer.from('defg')], { fsync: false });
    expect(offsets).toEqual([0, 3, 3, 4]);
    expect(fs.readFileSync(file, 'utf8')).toBe('abcdefg');
  });

  test('fsyncDir is best effort: a missing folder does not throw', async () => {
    await expect(fsyncDir(path.join(dir, 'missing'))).resolves.toBeUndefined();
    expect(() => fsyncDirSync(path.join(dir, 'missing'))).not.toThrow();
    await expect(fsyncDir(dir)).resolves.toBeUndefined();
  });
});
