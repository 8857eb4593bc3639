/**
 * The attention API around the kernel: every validation message, devices,
 * off-the-event-loop execution, determinism across thread counts, strided
 * views (the model's fused QKV layout), the workspace high-water mark, and
 * hostile input to the raw binding (errors, never a crash).
 */
import * as attention from '../../lib/attention';
import { ArgumentRangeError, ArgumentTypeError, NoGpuError } from '../../lib/errors';
import { loadAddon } from '../../lib/native';
import { getThreads, setThreads, supportedIsas, setIsa, getIsa } from '../../lib/runtime';
import { randomArray } from '../helpers/attention-ref';

const B = 1, H = 2, T = 5, D = 4;
const N = B * H * T * D;
const base = () => ({
  batch: B,
  heads: H,
  seq: T,
  headDim: D,
  pattern: 'dense' as const,
  q: randomArray(N, 1),
  k: randomArray(N, 2),
  v: randomArray(N, 3),
});
const withBwd = () => ({ ...base(), out: randomArray(N, 4), lse: randomArray(B * H * T, 5), dOut: randomArray(N, 6) });

async function rejects(p: () => Promise<unknown>, cls: unknown, message: string) {
  let err: unknown;
  try {
    await p();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(cls as new () => Error);
  expect((err as Error).message).toBe(message);
  return err as Error & { code?: string };
}

describe('attention validation messages', () => {
  const fwd = (o: unknown) => () => attention.forward(o as attention.AttentionForwardOptions);
  const bwd = (o: unknown) => () => attention.backward(o as attention.AttentionBackwardOptions);
  const FORWARD_KEYS = 'batch, heads, seq, headDim, pattern, window, scale, device, precision, q, k, v';
  /** Each case: the call, the error class it must reject with, and the whole message. */
  const rejectsAll = async (cases: Array<[() => Promise<unknown>, unknown, string]>) => {
    for (const [call, cls, message] of cases) await rejects(call, cls, message);
  };

  it('checks the options object and its keys', () =>
    rejectsAll([
      [fwd(5), ArgumentTypeError, 'Expected an object for attention.forward options but received 5 (number)'],
      [fwd({ ...base(), headdim: 5 }), ArgumentRangeError, 'Unknown key "headdim" in attention.forward options (did you mean "headDim"?); expected one of: ' + FORWARD_KEYS],
      [fwd({ ...base(), dOut: base().q }), ArgumentRangeError, 'Unknown key "dOut" in attention.forward options; expected one of: ' + FORWARD_KEYS],
    ]));

  it('checks the shape', () =>
    rejectsAll([
      [fwd({ ...base(), batch: 0 }), ArgumentRangeError, 'Expected a positive integer for batch but received 0 (number)'],
      [fwd({ ...base(), batch: 2 ** 31 }), ArgumentRangeError, 'Expected a positive integer <= 2147483647 for batch but received 2147483648 (number)'],
      [fwd({ ...base(), batch: 2 ** 30, heads: 2 ** 30, seq: 2 ** 30 }), ArgumentRangeError, 'Expected a shape whose size fits in memory for batch * heads * seq * headDim but received 4.951760157141521e+27 (number)'],
      [fwd({ ...base(), heads: 1.5 }), ArgumentRangeError, 'Expected a positive integer for heads but received 1.5 (number)'],
      [fwd({ ...base(), seq: '5' }), ArgumentTypeError, 'Expected a positive integer for seq but received "5" (string)'],
      [fwd({ ...base(), headDim: 257 }), ArgumentRangeError, 'Expected a positive integer <= 256 for headDim but received 257 (number)'],
      [fwd({ ...base(), headDim: 0 }), ArgumentRangeError, 'Expected a positive integer for headDim but received 0 (number)'],
    ]));

  it('checks pattern, window, scale and device', () =>
    rejectsAll([
      [fwd({ ...base(), pattern: 'dens' }), ArgumentRangeError, 'Expected one of "dense", "banded" for pattern but received "dens" (string) (did you mean "dense"?)'],
      [fwd({ ...base(), pattern: undefined }), ArgumentTypeError, 'Expected one of "dense", "banded" for pattern but received undefined'],
      [fwd({ ...base(), pattern: 'banded' }), ArgumentTypeError, 'Expected a positive integer (required for pattern "banded") for window but received undefined'],
      [fwd({ ...base(), pattern: 'banded', window: 0 }), ArgumentRangeError, 'Expected a positive integer for window but received 0 (number)'],
      [fwd({ ...base(), pattern: 'banded', window: -3 }), ArgumentRangeError, 'Expected a positive integer for window but received -3 (number)'],
      [fwd({ ...base(), window: 2.5 }), ArgumentRangeError, 'Expected a positive integer for window but received 2.5 (number)'],
      [fwd({ ...base(), scale: NaN }), ArgumentRangeError, 'Expected a finite number for scale but received NaN (number)'],
      [fwd({ ...base(), scale: Infinity }), ArgumentRangeError, 'Expected a finite number for scale but received Infinity (number)'],
      [fwd({ ...base(), scale: 1e39 }), ArgumentRangeError, 'Expected a finite number within float32 range for scale but received 1e+39 (number)'],
      [fwd({ ...base(), device: 'gpu' }), ArgumentRangeError, 'Expected one of "auto", "cpu", "cuda" for device but received "gpu" (string) (did you mean "cpu"?)'],
      [() => attention.naiveForward({ ...base(), device: 'cuda' }), ArgumentTypeError, 'Expected "auto" or "cpu" (the naive kernel is cpu only) for device but received "cuda" (string)'],
    ]));

  it('checks every array', () =>
    rejectsAll([
      [fwd({ ...base(), q: [1, 2, 3] }), ArgumentTypeError, 'Expected a Float32Array for q but received an array of length 3'],
      [fwd({ ...base(), k: new Float64Array(N) }), ArgumentTypeError, 'Expected a Float32Array for k but received a Float64Array of length 40'],
      [fwd({ ...base(), v: new Float32Array(N - 1) }), ArgumentRangeError, 'Expected a Float32Array of length 40 for v but received a Float32Array of length 39'],
      [bwd({ ...withBwd(), out: new Float32Array(N + 1) }), ArgumentRangeError, 'Expected a Float32Array of length 40 for out but received a Float32Array of length 41'],
      [bwd({ ...withBwd(), lse: new Float32Array(N) }), ArgumentRangeError, 'Expected a Float32Array of length 10 for lse but received a Float32Array of length 40'],
      [bwd({ ...withBwd(), dOut: undefined }), ArgumentTypeError, 'Expected a Float32Array for dOut but received undefined'],
      [() => attention.naiveBackward({ ...withBwd(), dOut: null } as unknown as attention.AttentionBackwardOptions), ArgumentTypeError, 'Expected a Float32Array for dOut but received null'],
    ]));

  it('asks for cuda without a GPU: NoGpuError with the reason', async () => {
    const info = loadAddon().cudaInfo();
    if (info.available) {
      // A GPU machine: 'auto' picks it (the CUDA suite covers the kernel itself).
      expect(attention.resolveDevice('auto')).toBe('cuda');
      return;
    }
    const e = await rejects(
      fwd({ ...base(), device: 'cuda' }),
      NoGpuError,
      `device "cuda" was requested but no GPU is usable: ${info.reason}`,
    );
    expect(e.code).toBe('NO_GPU');
    await rejects(bwd({ ...withBwd(), device: 'cuda' }), NoGpuError, `device "cuda" was requested but no GPU is usable: ${info.reason}`);
    const r = await attention.forward({ ...base(), device: 'auto' });
    expect(r.device).toBe('cpu');
  });
});

describe('attention runtime behaviour', () => {
  it('runs off the event loop', async () => {
    const s = { batch: 1, heads: 4, seq: 1024, headDim: 64, pattern: 'dense' as const };
    const n = 4 * 1024 * 64;
    let ticked = false;
    const p = attention.forward({ ...s, q: randomArray(n, 1), k: randomArray(n, 2), v: randomArray(n, 3), device: 'cpu' });
    setImmediate(() => {
      ticked = true;
    });
    const before = ticked;
    await p;
    expect(before).toBe(false);
    expect(ticked).toBe(true);
  });

  // heads 3: the tile schedule of backward; heads 4 (batch x heads = 8): the whole-head one.
  it.each([[3], [4]])('is bitwise identical for 1 and 2 threads on every path (batch 2, heads %i)', async (heads) => {
    const threads = getThreads();
    const isa = getIsa();
    const s = { batch: 2, heads, seq: 200, headDim: 80 };
    const n = 2 * heads * 200 * 80;
    const q = randomArray(n, 11), k = randomArray(n, 12), v = randomArray(n, 13), dOut = randomArray(n, 14);
    try {
      for (const path of supportedIsas()) {
        setIsa(path);
        for (const pat of [{ pattern: 'dense' as const }, { pattern: 'banded' as const, window: 70 }]) {
          const runs: Buffer[][] = [];
          for (const t of [1, 2]) {
            setThreads(t);
            const f = await attention.forward({ ...s, ...pat, q, k, v });
            const g = await attention.backward({ ...s, ...pat, q, k, v, out: f.out, lse: f.lse, dOut });
            runs.push([f.out, f.lse, g.dq, g.dk, g.dv].map((x) => Buffer.from(x.buffer)));
          }
          runs[0].forEach((buf, i) => expect(buf.equals(runs[1][i])).toBe(true));
        }
      }
    } finally {
      setThreads(threads);
      setIsa(isa);
    }
  });

  it.each([
    [3, 24],
    [4, 32],
  ])('honors strided views: the fused QKV [B, T, 3C] layout gives the contiguous result bitwise (heads %i, headDim %i)', async (h, d) => {
    const native = loadAddon<attention.AttentionNative>();
    const b = 2, t = 70, C = h * d;
    const qkv = randomArray(b * t * 3 * C, 21);
    const dOutBtc = randomArray(b * t * C, 22);
    // contiguous copies [B, H, T, D]
    const gather = (src: Float32Array, off: number, st: number) => {
      const x = new Float32Array(b * h * t * d);
      for (let bi = 0; bi < b; bi++)
        for (let hi = 0; hi < h; hi++)
          for (let ti = 0; ti < t; ti++)
            for (let di = 0; di < d; di++)
              x[((bi * h + hi) * t + ti) * d + di] = src[bi * t * st + ti * st + off + hi * d + di];
      return x;
    };
    const q = gather(qkv, 0, 3 * C), k = gather(qkv, C, 3 * C), v = gather(qkv, 2 * C, 3 * C);
    const dOut = gather(dOutBtc, 0, C);
    // device 'cpu': the raw calls below run on the cpu, and 'auto' would pick a GPU where there is one.
    const shape = { batch: b, heads: h, seq: t, headDim: d, pattern: 'banded' as const, window: 33, scale: 0.3, device: 'cpu' as const };
    const f = await attention.forward({ ...shape, q, k, v });
    const g = await attention.backward({ ...shape, q, k, v, out: f.out, lse: f.lse, dOut });

    const view = (data: Float32Array, offset: number, st: number) => ({ data, offset, sb: t * st, sh: d, st });
    const outBtc = new Float32Array(b * t * C);
    const lse = new Float32Array(b * h * t);
    // q, k, v, out and lse as the model passes them: views into [B, T, 3C] and [B, T, C].
    const fwdViews = () => ({
      ...shape,
      q: view(qkv, 0, 3 * C),
      k: view(qkv, C, 3 * C),
      v: view(qkv, 2 * C, 3 * C),
      out: view(outBtc, 0, C),
      lse,
    });
    await native.attentionForward(fwdViews());
    expect(Buffer.from(gather(outBtc, 0, C).buffer).equals(Buffer.from(f.out.buffer))).toBe(true);
    expect(Buffer.from(lse.buffer).equals(Buffer.from(f.lse.buffer))).toBe(true);

    const dqkv = new Float32Array(b * t * 3 * C);
    await native.attentionBackward({
      ...fwdViews(),
      dOut: view(dOutBtc, 0, C),
      dq: view(dqkv, 0, 3 * C),
      dk: view(dqkv, C, 3 * C),
      dv: view(dqkv, 2 * C, 3 * C),
    });
    expect(Buffer.from(gather(dqkv, 0, 3 * C).buffer).equals(Buffer.from(g.dq.buffer))).toBe(true);
    expect(Buffer.from(gather(dqkv, C, 3 * C).buffer).equals(Buffer.from(g.dk.buffer))).toBe(true);
    expect(Buffer.from(gather(dqkv, 2 * C, 3 * C).buffer).equals(Buffer.from(g.dv.buffer))).toBe(true);
  });

  it('keeps the workspace O(threads x tile): the forward high-water mark does not grow with seq', async () => {
    const run = async (seq: number) => {
      const n = seq * 64;
      attention.resetWorkspace();
      expect(attention.workspaceHighWater()).toBe(0);
      const s = { batch: 1, heads: 1, seq, headDim: 64, pattern: 'dense' as const, device: 'cpu' as const };
      await attention.forward({ ...s, q: randomArray(n, 1), k: randomArray(n, 2), v: randomArray(n, 3) });
      return attention.workspaceHighWater();
    };
    const small = await run(64);
    const large = await run(2048);
    expect(small).toBeGreaterThan(0);
    expect(large).toBe(small);
    // per thread: a few 72 x 64 tiles
    expect(small).toBeLessThan(getThreads() * 256 * 1024);
  });

  it('turns hostile input to the raw binding into errors, never a crash', async () => {
    const native = loadAddon<attention.AttentionNative>() as unknown as Record<string, (o: unknown) => Promise<unknown>>;
    const shape = { batch: 1, heads: 1, seq: 4, headDim: 8, pattern: 'dense' };
    const a = () => new Float32Array(32);
    const call = async (o: unknown) => {
      try {
        await native.attentionForward(o);
      } catch (e) {
        return e as Error & { code?: string };
      }
      return undefined;
    };
    const e1 = await call({ ...shape, q: a(), k: a(), v: a(), out: a(), lse: new Float32Array(3) });
    expect(e1?.code).toBe('INVALID_ARGUMENT');
    expect(e1?.message).toBe('Expected a Float32Array of length 4 for lse but received length 3');
    const e2 = await call({
      ...shape,
      q: { data: a(), offset: 1, sb: 0, sh: 0, st: 8 },
      k: a(),
      v: a(),
      out: a(),
      lse: new Float32Array(4),
    });
    expect(e2?.message).toBe('The strided view for q reaches element 32 of a Float32Array of length 32');
    const e3 = await call({ ...shape, headDim: 300, q: a(), k: a(), v: a(), out: a(), lse: new Float32Array(4) });
    expect(e3?.message).toBe('Expected an integer in [1, 256] for headDim but received 300.000000');
    const e4 = await call({ ...shape, pattern: 'banded', window: 0, q: a(), k: a(), v: a(), out: a(), lse: new Float32Array(4) });
    expect(e4?.code).toBe('INVALID_ARGUMENT');
    const e5 = await call({ ...shape, q: 'x', k: a(), v: a(), out: a(), lse: new Float32Array(4) });
    expect(e5?.code).toBe('INVALID_ARGUMENT');
    expect(() => native.attentionForward(undefined)).toThrow('Expected an options object');
  });
});

describe('attention precision', () => {
  it('checks precision, in lib and in the raw binding', async () => {
    await rejects(
      () => attention.forward({ ...base(), precision: 'fp16' as never }),
      ArgumentRangeError,
      'Expected one of "fp32", "bf16" for precision but received "fp16" (string) (did you mean "fp32"?)',
    );
    const native = loadAddon<attention.AttentionNative>() as unknown as Record<string, (o: unknown) => Promise<unknown>>;
    const a = () => new Float32Array(32);
    const shape = { batch: 1, heads: 1, seq: 4, headDim: 8, pattern: 'dense' };
    let err: (Error & { code?: string }) | undefined;
    try {
      await native.attentionForward({ ...shape, precision: 'fp8', q: a(), k: a(), v: a(), out: a(), lse: new Float32Array(4) });
    } catch (e) {
      err = e as Error & { code?: string };
    }
    expect(err?.code).toBe('INVALID_ARGUMENT');
    expect(err?.message).toBe('Expected "fp32" or "bf16" for precision but received "fp8"');
  });

  it('runs fp32 on the cpu whatever precision asks: bitwise the same results', async () => {
    const o = { ...base(), headDim: D, device: 'cpu' as const };
    const f32 = await attention.forward({ ...o, precision: 'fp32' });
    const b16 = await attention.forward({ ...o, precision: 'bf16' });
    const dflt = await attention.forward(o);
    expect(Buffer.from(b16.out.buffer).equals(Buffer.from(f32.out.buffer))).toBe(true);
    expect(Buffer.from(dflt.lse.buffer).equals(Buffer.from(f32.lse.buffer))).toBe(true);
    const dOut = randomArray(N, 9);
    const g32 = await attention.backward({ ...o, out: f32.out, lse: f32.lse, dOut, precision: 'fp32' });
    const g16 = await attention.backward({ ...o, out: f32.out, lse: f32.lse, dOut, precision: 'bf16' });
    for (const k of ['dq', 'dk', 'dv'] as const)
      expect(Buffer.from(g16[k].buffer).equals(Buffer.from(g32[k].buffer))).toBe(true);
  });
});
