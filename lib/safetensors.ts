/**
 * The safetensors format: an 8-byte little-endian header length N, N bytes of
 * UTF-8 JSON `{ name: { dtype, shape, data_offsets: [begin, end] },
 * "__metadata__"?: { key: string } }`, then the byte buffer the offsets point
 * into (relative to its start).
 *
 * Files come from the internet, so the reader checks the whole header before
 * it allocates anything for a tensor: the header length (<= 100 MB and inside
 * the file), UTF-8, JSON shape, dtypes, shapes (non-negative integers whose
 * product cannot overflow), offsets (inside the buffer, begin <= end, size ==
 * product * item size) and the buffer layout (ranges neither overlap nor leave
 * holes, and they cover the buffer exactly, as the format requires). Every
 * failure is a BadFileError naming the file and, where there is one, the
 * tensor.
 *
 * The file reader works from a file descriptor: it reads the header, then each
 * tensor on demand at its offset, so taking a few tensors out of a large file
 * never reads the rest. `decodeSafetensors` does the same from a Buffer (tests
 * and the fuzz harness use it). The writer writes F32 tensors durably through
 * lib/fsutil.ts.
 */
import * as fs from 'node:fs';
import { endianness } from 'node:os';
import { ArgumentRangeError, ArgumentTypeError, BadFileError } from './errors';
import { parseJsonBytes } from './json-bytes';
import { describe } from './validate';
import { writeFileAtomic, writeFileChunks } from './fsutil';

export { setWriteFaultHook, tempNameBeside, writeFileChunks } from './fsutil';
export type { WriteFaultHook } from './fsutil';

/** Largest header accepted (the reference implementation's limit). */
export const MAX_HEADER_BYTES = 100_000_000;
/** JSON nesting allowed in a header: object -> tensor -> shape array. */
const MAX_HEADER_DEPTH = 4;

/** Bytes per element of each dtype the format defines (sub-byte float types are not supported). */
export const DTYPE_SIZES: Readonly<Record<string, number>> = Object.freeze({
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  F8_E8M0: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
  U64: 8,
  C64: 8,
});
/** Dtypes converted to Float32Array on reading. */
export const FLOAT_DTYPES: readonly string[] = ['F32', 'F16', 'BF16'];

export interface TensorInfo {
  name: string;
  dtype: string;
  shape: number[];
  /** element count (product of shape) */
  elements: number;
  /** byte range inside the data buffer (relative to its start) */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  /** file name used in messages */
  file: string;
  /** tensors in file order of their data */
  tensors: Map<string, TensorInfo>;
  metadata?: Record<string, string>;
  /** absolute offset of the data buffer in the file (8 + N) */
  dataStart: number;
  /** size of the data buffer in bytes */
  dataSize: number;
}

function bad(file: string, what: string, tensor?: string): BadFileError {
  const t = tensor === undefined ? '' : ` (tensor ${JSON.stringify(tensor)})`;
  return new BadFileError(`${file} is not a valid safetensors file${t}: ${what}`);
}

function isSafeNonNegInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/**
 * Validates a header. `json` is the raw header bytes (N of them),
 * `dataSize` the bytes that follow the header in the file.
 */
export function parseSafetensorsHeader(json: Uint8Array, dataSize: number, file: string): SafetensorsHeader {
  const parsed = parseJsonBytes(json, `${file}: the safetensors header`, MAX_HEADER_DEPTH);
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw bad(file, `the header must be a JSON object but is ${describe(parsed)}`);
  const obj = parsed as Record<string, unknown>;
  let metadata: Record<string, string> | undefined;
  const infos: TensorInfo[] = [];
  for (const name of Object.keys(obj)) {
    const entry = obj[name];
    if (name === '__metadata__') {
      if (typeof entry !== 'object' || entry === null || Array.isArray(entry))
        throw bad(file, `__metadata__ must be an object of strings but is ${describe(entry)}`);
      metadata = {};
      for (const [k, v] of Object.entries(entry as Record<string, unknown>)) {
        if (typeof v !== 'string') throw bad(file, `__metadata__ value of ${JSON.stringify(k)} must be a string but is ${describe(v)}`);
        Object.defineProperty(metadata, k, { value: v, enumerable: true, writable: true, configurable: true });
      }
      continue;
    }
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry))
      throw bad(file, `its entry must be an object with dtype, shape and data_offsets but is ${describe(entry)}`, name);
    const e = entry as Record<string, unknown>;
    const dtype = e.dtype;
    if (typeof dtype !== 'string') throw bad(file, `dtype must be a string but is ${describe(dtype)}`, name);
    const itemSize = Object.prototype.hasOwnProperty.call(DTYPE_SIZES, dtype) ? DTYPE_SIZES[dtype] : undefined;
    if (itemSize === undefined)
      throw bad(file, `unknown dtype ${JSON.stringify(dtype)} (known: ${Object.keys(DTYPE_SIZES).join(', ')})`, name);
    const shape = e.shape;
    if (!Array.isArray(shape)) throw bad(file, `shape must be an array of non-negative integers but is ${describe(shape)}`, name);
    // The product is bounded by the buffer: any shape that would need more
    // elements than the buffer has bytes is refused before multiplying on.
    const maxElements = Math.floor(dataSize / itemSize);
    let elements = 1;
    let zero = false;
    for (let i = 0; i < shape.length; i++) {
      const d = shape[i];
      if (!isSafeNonNegInt(d)) throw bad(file, `shape[${i}] must be a non-negative integer but is ${describe(d)}`, name);
      if (d === 0) zero = true;
    }
    if (zero) elements = 0;
    else {
      for (const d of shape as number[]) {
        elements *= d;
        if (elements > maxElements)
          throw bad(
            file,
            `shape [${shape.join(', ')}] of ${dtype} needs more bytes than the whole ${dataSize}-byte data buffer holds`,
            name,
          );
      }
    }
    const offsets = e.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !isSafeNonNegInt(offsets[0]) || !isSafeNonNegInt(offsets[1]))
      throw bad(file, `data_offsets must be [begin, end] with non-negative integers but is ${JSON.stringify(offsets) ?? 'undefined'}`, name);
    const [begin, end] = offsets as number[];
    if (begin > end) throw bad(file, `data_offsets [${begin}, ${end}] are reversed (begin > end)`, name);
    if (end > dataSize)
      throw bad(file, `data_offsets [${begin}, ${end}] run past the end of the ${dataSize}-byte data buffer (the file is truncated or the header lies)`, name);
    if (end - begin !== elements * itemSize)
      throw bad(
        file,
        `data_offsets [${begin}, ${end}] hold ${end - begin} bytes but shape [${shape.join(', ')}] of ${dtype} needs ${elements * itemSize}`,
        name,
      );
    infos.push({ name, dtype, shape: [...(shape as number[])], elements, begin, end });
  }
  // Layout: sorted by begin, every range must start where the last ended.
  infos.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  let prev: TensorInfo | undefined;
  for (const t of infos) {
    if (t.begin < pos)
      throw bad(file, `data_offsets [${t.begin}, ${t.end}] overlap those of ${JSON.stringify(prev?.name)} [${prev?.begin}, ${prev?.end}]`, t.name);
    if (t.begin > pos)
      throw bad(file, `the data buffer has a hole: bytes ${pos} to ${t.begin} belong to no tensor`, t.name);
    pos = t.end;
    prev = t;
  }
  if (pos !== dataSize)
    throw bad(file, `the data buffer has ${dataSize} bytes but its tensors cover only ${pos} (trailing bytes belong to no tensor)`);
  const tensors = new Map<string, TensorInfo>();
  for (const t of infos) tensors.set(t.name, t);
  return { file, tensors, metadata, dataStart: 0, dataSize };
}

/** Reads the 8-byte length prefix and checks it against the file size. */
function headerLength(prefix: Uint8Array, fileSize: number, file: string): number {
  if (fileSize < 8) throw bad(file, `it has ${fileSize} bytes, fewer than the 8-byte header length`);
  const dv = new DataView(prefix.buffer, prefix.byteOffset, 8);
  const n = dv.getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) throw bad(file, `the header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  const len = Number(n);
  if (len < 2) throw bad(file, `the header length ${len} is too small for a JSON object`);
  if (8 + len > fileSize)
    throw bad(file, `the header length ${len} runs past the end of the ${fileSize}-byte file (truncated?)`);
  return len;
}

// ---------------------------------------------------------------------------
// Conversion to float32

const hostLE = endianness() === 'LE';

/** fp16 bits -> float32, exact (subnormals, infinities and NaN included). */
const f16Table = (() => {
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const s = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    if (e === 0) t[h] = s * m * 2 ** -24;
    else if (e === 31) t[h] = m ? NaN : s * Infinity;
    else t[h] = s * (1 + m / 1024) * 2 ** (e - 15);
  }
  return t;
})();

/** Converts `bytes` of a float dtype to a new Float32Array of `elements`. */
function toFloat32(bytes: Uint8Array, dtype: string, elements: number): Float32Array {
  const out = new Float32Array(elements);
  if (dtype === 'F32') {
    if (hostLE) new Uint8Array(out.buffer).set(bytes.subarray(0, elements * 4));
    else {
      const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      for (let i = 0; i < elements; i++) out[i] = dv.getFloat32(4 * i, true);
    }
  } else if (dtype === 'F16') {
    for (let i = 0; i < elements; i++) out[i] = f16Table[bytes[2 * i] | (bytes[2 * i + 1] << 8)];
  } else if (dtype === 'BF16') {
    // bf16 is the top half of a float32: shift it into place.
    const u = new Uint32Array(out.buffer);
    for (let i = 0; i < elements; i++) u[i] = ((bytes[2 * i] | (bytes[2 * i + 1] << 8)) << 16) >>> 0;
    if (!hostLE) {
      const dv = new DataView(out.buffer);
      for (let i = 0; i < elements; i++) dv.setUint32(4 * i, u[i], true);
    }
  } else throw new Error(`unreachable dtype ${dtype}`);
  return out;
}

function checkConvertible(h: SafetensorsHeader, t: TensorInfo): void {
  if (!FLOAT_DTYPES.includes(t.dtype))
    throw new BadFileError(
      `${h.file}: tensor ${JSON.stringify(t.name)} has dtype ${t.dtype}, which gpt-engine cannot read as float32 (supported: ${FLOAT_DTYPES.join(', ')})`,
    );
}

// ---------------------------------------------------------------------------
// Reading from a file descriptor

/** Reads exactly `length` bytes at `position` into `target`, or throws BadFileError. */
async function readExactly(fh: fs.promises.FileHandle, target: Uint8Array, position: number, file: string): Promise<void> {
  let done = 0;
  while (done < target.length) {
    const { bytesRead } = await fh.read(target, done, target.length - done, position + done);
    if (bytesRead === 0)
      throw new BadFileError(`${file}: unexpected end of file at byte ${position + done} (the file shrank while it was read?)`);
    done += bytesRead;
  }
}

export class SafetensorsReader {
  private constructor(
    private fh: fs.promises.FileHandle | null,
    readonly header: SafetensorsHeader,
  ) {}

  /** Opens a file and validates its header; reads no tensor data. */
  static async open(file: string): Promise<SafetensorsReader> {
    let fh: fs.promises.FileHandle;
    try {
      fh = await fs.promises.open(file, 'r');
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      throw new BadFileError(`Could not open ${file}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`, { cause: e });
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new BadFileError(`${file} is not a regular file`);
      const fileSize = st.size;
      const prefix = new Uint8Array(8);
      if (fileSize >= 8) await readExactly(fh, prefix, 0, file);
      const len = headerLength(prefix, fileSize, file);
      const json = new Uint8Array(len);
      await readExactly(fh, json, 8, file);
      const header = parseSafetensorsHeader(json, fileSize - 8 - len, file);
      header.dataStart = 8 + len;
      return new SafetensorsReader(fh, header);
    } catch (e) {
      await fh.close().catch(() => undefined);
      throw e;
    }
  }

  get file(): string {
    return this.header.file;
  }

  names(): string[] {
    return [...this.header.tensors.keys()];
  }

  info(name: string): TensorInfo | undefined {
    return this.header.tensors.get(name);
  }

  /** Reads one tensor (F32, F16 or BF16) as float32. */
  async readFloat32(name: string): Promise<Float32Array> {
    const t = this.header.tensors.get(name);
    if (!t) throw new BadFileError(`${this.file}: has no tensor ${JSON.stringify(name)}`);
    checkConvertible(this.header, t);
    if (!this.fh) throw new Error(`SafetensorsReader for ${this.file} is closed`);
    const bytes = new Uint8Array(t.end - t.begin);
    await readExactly(this.fh, bytes, this.header.dataStart + t.begin, this.file);
    return toFloat32(bytes, t.dtype, t.elements);
  }

  async close(): Promise<void> {
    const fh = this.fh;
    this.fh = null;
    if (fh) await fh.close();
  }
}

export interface SafetensorsContent {
  tensors: Map<string, Float32Array>;
  shapes: Map<string, number[]>;
  /** dtype each tensor had in the file */
  dtypes: Map<string, string>;
  metadata?: Record<string, string>;
}

/**
 * Reads tensors from a file (all of them, or the named ones) as float32.
 * Only the requested tensors' bytes are read.
 */
export async function readSafetensors(file: string, opts: { names?: Iterable<string> } = {}): Promise<SafetensorsContent> {
  const r = await SafetensorsReader.open(file);
  try {
    const names = opts.names ? [...opts.names] : r.names();
    const out: SafetensorsContent = { tensors: new Map(), shapes: new Map(), dtypes: new Map(), metadata: r.header.metadata };
    for (const n of names) {
      const info = r.info(n);
      if (!info) throw new BadFileError(`${file}: has no tensor ${JSON.stringify(n)}`);
      out.tensors.set(n, await r.readFloat32(n));
      out.shapes.set(n, [...info.shape]);
      out.dtypes.set(n, info.dtype);
    }
    return out;
  } finally {
    await r.close();
  }
}

/** Validates a whole safetensors image in memory and returns its header (offsets absolute in `buf`). */
export function parseSafetensorsBuffer(buf: Uint8Array, file = '<buffer>'): SafetensorsHeader {
  const len = headerLength(buf.subarray(0, 8), buf.length, file);
  const header = parseSafetensorsHeader(buf.subarray(8, 8 + len), buf.length - 8 - len, file);
  header.dataStart = 8 + len;
  return header;
}

/** In-memory twin of readSafetensors: validates and converts every tensor. */
export function decodeSafetensors(buf: Uint8Array, file = '<buffer>'): SafetensorsContent {
  const h = parseSafetensorsBuffer(buf, file);
  const out: SafetensorsContent = { tensors: new Map(), shapes: new Map(), dtypes: new Map(), metadata: h.metadata };
  for (const t of h.tensors.values()) {
    checkConvertible(h, t);
    out.tensors.set(t.name, toFloat32(buf.subarray(h.dataStart + t.begin, h.dataStart + t.end), t.dtype, t.elements));
    out.shapes.set(t.name, [...t.shape]);
    out.dtypes.set(t.name, t.dtype);
  }
  return out;
}

// ---------------------------------------------------------------------------
// Writing

export interface TensorToWrite {
  shape: readonly number[];
  data: Float32Array;
}

function validateForWrite(tensors: Map<string, TensorToWrite>, metadata?: Record<string, string>): void {
  if (!(tensors instanceof Map)) throw new ArgumentTypeError(`Expected a Map for tensors but received ${describe(tensors)}`);
  for (const [name, t] of tensors) {
    if (typeof name !== 'string' || name.length === 0 || name === '__metadata__')
      throw new ArgumentRangeError(`Expected a non-empty tensor name other than "__metadata__" but received ${describe(name)}`);
    if (!t || !(t.data instanceof Float32Array))
      throw new ArgumentTypeError(`Expected a Float32Array for tensor ${JSON.stringify(name)} but received ${describe(t?.data)}`);
    if (!Array.isArray(t.shape) || !t.shape.every((d) => isSafeNonNegInt(d)))
      throw new ArgumentRangeError(`Expected an array of non-negative integers for the shape of ${JSON.stringify(name)} but received ${describe(t.shape)}`);
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length)
      throw new ArgumentRangeError(
        `Expected ${n} elements (shape [${t.shape.join(', ')}]) for tensor ${JSON.stringify(name)} but received a Float32Array of length ${t.data.length}`,
      );
  }
  if (metadata !== undefined) {
    if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata))
      throw new ArgumentTypeError(`Expected an object of strings for metadata but received ${describe(metadata)}`);
    for (const [k, v] of Object.entries(metadata))
      if (typeof v !== 'string') throw new ArgumentTypeError(`Expected a string for metadata.${k} but received ${describe(v)}`);
  }
}

/** The header bytes (length prefix + JSON padded with spaces to a multiple of 8). */
function encodeHeader(tensors: Map<string, TensorToWrite>, metadata?: Record<string, string>): { header: Buffer; dataSize: number } {
  const h: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) h.__metadata__ = metadata;
  let pos = 0;
  for (const [name, t] of tensors) {
    const bytes = t.data.length * 4;
    Object.defineProperty(h, name, {
      value: { dtype: 'F32', shape: [...t.shape], data_offsets: [pos, pos + bytes] },
      enumerable: true,
      writable: true,
      configurable: true,
    });
    pos += bytes;
  }
  const json = Buffer.from(JSON.stringify(h), 'utf8');
  // Pad so the data starts 8-byte aligned (readers may map it directly).
  const padded = Math.ceil((8 + json.length) / 8) * 8 - 8;
  const header = Buffer.alloc(8 + padded, 0x20);
  header.writeBigUInt64LE(BigInt(padded), 0);
  json.copy(header, 8);
  return { header, dataSize: pos };
}

/** Bytes of a whole file, in memory (tests, small files). */
export function encodeSafetensors(tensors: Map<string, TensorToWrite>, metadata?: Record<string, string>): Buffer {
  validateForWrite(tensors, metadata);
  const { header, dataSize } = encodeHeader(tensors, metadata);
  const out = Buffer.alloc(header.length + dataSize);
  header.copy(out, 0);
  let pos = header.length;
  for (const t of tensors.values()) {
    const b = float32Bytes(t.data);
    out.set(b, pos);
    pos += b.length;
  }
  return out;
}

function float32Bytes(a: Float32Array): Uint8Array {
  if (hostLE) return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const b = new Uint8Array(a.length * 4);
  const dv = new DataView(b.buffer);
  for (let i = 0; i < a.length; i++) dv.setFloat32(4 * i, a[i], true);
  return b;
}

/**
 * Writes F32 tensors (in map order) and optional string metadata. The file
 * is written with lib/fsutil.ts writeFileAtomic (a temporary name beside
 * `file`, fsynced, renamed into place, the folder fsynced), so `file` is
 * either the old content or the complete new one. `opts.atomic: false`
 * writes `file` directly (used inside a temporary checkpoint folder that is
 * itself renamed into place); `opts.fsync: false` then skips its fsync.
 */
export async function writeSafetensors(
  file: string,
  tensors: Map<string, TensorToWrite>,
  opts: { metadata?: Record<string, string>; atomic?: boolean; fsync?: boolean } = {},
): Promise<void> {
  validateForWrite(tensors, opts.metadata);
  const { header } = encodeHeader(tensors, opts.metadata);
  const chunks = (function* () {
    yield header;
    for (const t of tensors.values()) yield float32Bytes(t.data);
  })();
  if (opts.atomic === false) {
    await writeFileChunks(file, chunks, { fsync: opts.fsync });
    return;
  }
  await writeFileAtomic(file, chunks);
}
