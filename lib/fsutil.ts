/**
 * Durable file writes, the one home for them (docs/ARCHITECTURE.md "Files
 * users keep"): every file the engine writes for a user is written under a
 * temporary name beside its target, fsynced, renamed into place, and the
 * folder is fsynced so the rename survives a crash. A reader therefore sees
 * either the old file or the complete new one, never a torn write.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * Called before every chunk the writers put on disk, with the file and the
 * byte offset of the chunk. Tests use it to inject a failing disk; it is
 * null in normal use. Throwing from it fails the write like an I/O error.
 */
export type WriteFaultHook = (file: string, offset: number, length: number) => void;
let writeFaultHook: WriteFaultHook | null = null;
/** For tests: install (or clear with null) a hook that may throw to simulate a failing write. */
export function setWriteFaultHook(hook: WriteFaultHook | null): void {
  writeFaultHook = hook;
}

/** A unique temporary name beside `target` (hidden, with the pid and a random tag). */
export function tempNameBeside(target: string, tag = 'tmp'): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.${tag}-${process.pid}-${randomBytes(4).toString('hex')}`);
}

/**
 * Writes `chunks` to `file` through a file handle, honoring the fault hook;
 * fsyncs before closing unless `fsync: false`. The caller handles temporary
 * names and renames (see writeFileAtomic).
 */
export async function writeFileChunks(file: string, chunks: Iterable<Uint8Array>, opts: { fsync?: boolean } = {}): Promise<void> {
  const fh = await fs.promises.open(file, 'w');
  try {
    let offset = 0;
    const CHUNK = 1 << 24; // 16 MiB pieces keep one write call bounded
    for (const c of chunks) {
      for (let p = 0; p < c.length; p += CHUNK) {
        const piece = c.subarray(p, Math.min(c.length, p + CHUNK));
        if (writeFaultHook) writeFaultHook(file, offset, piece.length);
        let done = 0;
        while (done < piece.length) {
          const { bytesWritten } = await fh.write(piece, done, piece.length - done, offset + done);
          done += bytesWritten;
        }
        offset += piece.length;
      }
    }
    if (opts.fsync !== false) await fh.sync();
  } finally {
    await fh.close();
  }
}

/** fsync of a folder, which makes a rename inside it durable. Best effort: some platforms refuse it. */
export async function fsyncDir(dir: string): Promise<void> {
  let fh: fs.promises.FileHandle | undefined;
  try {
    fh = await fs.promises.open(dir, 'r');
    await fh.sync();
  } catch {
    /* not supported on this platform (EISDIR/EPERM on Windows) */
  } finally {
    await fh?.close().catch(() => undefined);
  }
}

/** Synchronous fsyncDir, for the few writers that run synchronously. */
export function fsyncDirSync(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    /* not supported on this platform */
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

function asChunks(content: string | Uint8Array | Iterable<Uint8Array>): Iterable<Uint8Array> {
  if (typeof content === 'string') return [Buffer.from(content, 'utf8')];
  if (content instanceof Uint8Array) return [content];
  return content;
}

/**
 * Writes `content` to `file` durably: a temporary file beside it, fsynced,
 * renamed over `file`, then the folder fsynced. On any error the temporary
 * file is removed and `file` keeps its old content.
 */
export async function writeFileAtomic(file: string, content: string | Uint8Array | Iterable<Uint8Array>): Promise<void> {
  const tmp = tempNameBeside(file);
  try {
    await writeFileChunks(tmp, asChunks(content));
    await fs.promises.rename(tmp, file);
  } catch (e) {
    await fs.promises.rm(tmp, { force: true }).catch(() => undefined);
    throw e;
  }
  await fsyncDir(path.dirname(path.resolve(file)));
}

/** The synchronous twin of writeFileAtomic (same guarantees, same fault hook). */
export function writeFileAtomicSync(file: string, content: string | Uint8Array): void {
  const tmp = tempNameBeside(file);
  const data = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
  try {
    const fd = fs.openSync(tmp, 'w');
    try {
      if (writeFaultHook) writeFaultHook(tmp, 0, data.length);
      let done = 0;
      while (done < data.length) done += fs.writeSync(fd, data, done, data.length - done, done);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fsyncDirSync(path.dirname(path.resolve(file)));
}

/** JSON, pretty-printed with a final newline, written with writeFileAtomicSync. */
export function writeJsonAtomicSync(file: string, value: unknown): void {
  writeFileAtomicSync(file, JSON.stringify(value, null, 2) + '\n');
}

/**
 * A file written piece by piece (at any offsets, for writers that stream or
 * patch a header last) with the guarantees of writeFileAtomicSync: the pieces
 * go to a temporary file beside `target`; commit() fsyncs it, renames it over
 * `target` and fsyncs the folder; abort() removes it and leaves `target` as it
 * was. Every piece passes the fault hook.
 */
export class AtomicFileWriterSync {
  readonly target: string;
  readonly tmpPath: string;
  private fd: number | null;

  constructor(target: string) {
    this.target = target;
    this.tmpPath = tempNameBeside(target);
    this.fd = fs.openSync(this.tmpPath, 'w');
  }

  writeAt(data: Uint8Array, position: number): void {
    if (this.fd === null) throw new Error(`${this.target}: write after commit or abort`);
    if (writeFaultHook) writeFaultHook(this.tmpPath, position, data.length);
    let done = 0;
    while (done < data.length) done += fs.writeSync(this.fd, data, done, data.length - done, position + done);
  }

  commit(): void {
    if (this.fd === null) throw new Error(`${this.target}: commit after commit or abort`);
    const fd = this.fd;
    this.fd = null;
    try {
      fs.fsyncSync(fd);
      fs.closeSync(fd);
      fs.renameSync(this.tmpPath, this.target);
    } catch (e) {
      try {
        fs.closeSync(fd);
      } catch {
        /* already closed */
      }
      fs.rmSync(this.tmpPath, { force: true });
      throw e;
    }
    fsyncDirSync(path.dirname(path.resolve(this.target)));
  }

  abort(): void {
    if (this.fd !== null) {
      try {
        fs.closeSync(this.fd);
      } catch {
        /* already closed */
      }
      this.fd = null;
    }
    fs.rmSync(this.tmpPath, { force: true });
  }
}
