/**
 * The fused classifier (native/core/classifier.*): training runs the LM head,
 * the cross-entropy and the head's backward on chunks of rows and never
 * holds the [B*T, Vp] logits. Held here, on the CPU, on every instruction-set
 * path this machine has, with 1 thread and with the pool:
 *
 * - its ops against their plain references and against the unchunked ops:
 *   crossentropy_rows gives crossentropy's gradient bit for bit and each
 *   row's loss; loss_sum adds in row order; classifier_weight_grad over the
 *   chunks classifier_chunk_rows picks gives matmul_backward's dw over all
 *   rows bit for bit (fp32 and bf16), and any other chunking (1 row, 7 rows,
 *   a ragged last chunk) agrees with the reference within 1e-6 (relative L2
 *   error) in fp32;
 * - the model: losses, every gradient and forward()'s logits are the same
 *   bits whatever GPT_ENGINE_CLASSIFIER_ROWS forces when the chunks are whole
 *   GEMM blocks; with chunks of 1, 7 or a ragged split only the embedding's
 *   gradient (the one sum over rows) moves, within 1e-6 relative (fp32), and
 *   the first loss and every other gradient stay the same bits. The model
 *   runs in child processes (test/helpers/child-classifier.js), since the
 *   variable is read from the real environment, which jest does not pass on.
 */
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';

import { loadAddon } from '../../lib/native';
import { setIsa, setThreads, supportedIsas } from '../../lib/runtime';
import { relL2, restoreRuntimeAfterAll, tinyConfig } from './shared/setup';

type Out = Record<string, Float32Array | number>;
type Opts = Record<string, unknown>;
const addon = loadAddon<{ backendOp(o: Opts): Promise<Out>; referenceOp(o: Opts): Promise<Out> }>();
const fast = (o: Opts): Promise<Out> => addon.backendOp({ device: 'cpu', ...o });
const reference = (o: Opts): Promise<Out> => addon.referenceOp(o);
const f32 = (o: Out, k: string): Float32Array => o[k] as Float32Array;

const { threads: poolThreads } = restoreRuntimeAfterAll();
const runtimes = supportedIsas().flatMap((isa) => [1, poolThreads].map((threads) => ({ isa, threads })));

const { rng } = require('../ops/run-checks.js') as { rng: (seed: number) => () => number };
function randn(r: () => number, n: number, std = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; ++i) a[i] = std * Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  return a;
}

function sameBits(got: Float32Array, want: Float32Array, what: string): void {
  expect(got.length).toBe(want.length);
  const a = new Uint32Array(got.buffer, got.byteOffset, got.length);
  const b = new Uint32Array(want.buffer, want.byteOffset, want.length);
  let first = -1;
  for (let i = 0; i < a.length && first < 0; ++i) if (a[i] !== b[i]) first = i;
  if (first >= 0) throw new Error(`${what}: element ${first} differs (${got[first]} vs ${want[first]})`);
}

describe('the classifier ops (CPU)', () => {
  const M = 601, V = 1000, Vp = 1024, C = 40;
  const r = rng(23);
  const logits = randn(r, M * Vp, 3);
  const targets = Int32Array.from({ length: M }, (_, i) => (i % 11 === 5 ? -1 : Math.floor(r() * V)));
  const dlogits = randn(r, M * Vp, 0.01);
  const x = randn(r, M * C);
  const dw0 = randn(r, Vp * C, 0.1);

  test.each(runtimes)('crossentropy_rows and loss_sum ($isa, $threads threads)', async ({ isa, threads }) => {
    setIsa(isa);
    setThreads(threads);
    for (const dlogitsScale of [0, 1 / 29]) {
      const whole = await fast({ op: 'crossentropy', M, V, Vp, logits, targets, dlogitsScale });
      const rows = await fast({ op: 'crossentropy_rows', M, V, Vp, logits, targets, dlogitsScale });
      sameBits(f32(rows, 'dlogits'), f32(whole, 'dlogits'), 'crossentropy_rows gradient');
      const ref = await reference({ op: 'crossentropy_rows', M, V, Vp, logits, targets, dlogitsScale });
      const rl = f32(rows, 'rowLoss'), want = f32(ref, 'rowLoss');
      for (let i = 0; i < M; ++i) {
        if (targets[i] < 0) expect(rl[i]).toBe(0);
        else expect(Math.abs(rl[i] - want[i])).toBeLessThanOrEqual(1e-5 * (1 + Math.abs(want[i])));
      }
      const sum = await fast({ op: 'loss_sum', M, rowLoss: rl, targets });
      let s = 0, n = 0;
      for (let i = 0; i < M; ++i) if (targets[i] >= 0) { s += rl[i]; ++n; }
      expect(sum.loss).toBe(s);
      expect(sum.count).toBe(n);
      const refSum = await reference({ op: 'loss_sum', M, rowLoss: rl, targets });
      expect(refSum.loss).toBe(s);
      expect(refSum.count).toBe(n);
      // The per-row losses add up to crossentropy's sum (float-rounded rows here).
      expect(Math.abs((sum.loss as number) - (whole.loss as number))).toBeLessThan(1e-4);
    }
  });

  test.each(runtimes)('classifier_weight_grad: chunked as chosen = one matmul_backward, bit for bit ($isa, $threads threads)', async ({ isa, threads }) => {
    setIsa(isa);
    setThreads(threads);
    for (const precision of ['fp32', 'bf16']) {
      const one = await fast({ op: 'matmul_backward', precision, M, K: Vp, N: C, dout: x, inp: dlogits, w: new Float32Array(Vp * C), dw: dw0 });
      // The model's buffer holds at least min(M, 512) rows (classifier.cc),
      // enough for a whole K block on every path.
      for (const cap of [M, 512]) {
        const rows = (await fast({ op: 'classifier_chunk_rows', precision, M, Vp, cap })).rows as number;
        expect(rows).toBeGreaterThanOrEqual(1);
        expect(rows).toBeLessThanOrEqual(cap);
        const got = await fast({ op: 'classifier_weight_grad', precision, M, Vp, C, dlogits, x, dw: dw0, chunks: rows });
        sameBits(f32(got, 'dw'), f32(one, 'dw'), `${precision} chunks of ${rows} (cap ${cap})`);
      }
    }
    // Other chunkings: the same sum in another order (fp32), within 1e-6
    // (relative L2) of the reference in double.
    const want = await reference({ op: 'classifier_weight_grad', M, Vp, C, dlogits, x, dw: dw0 });
    for (const chunks of [1, 7, 250, M]) {
      const got = await fast({ op: 'classifier_weight_grad', M, Vp, C, dlogits, x, dw: dw0, chunks });
      expect(relL2(f32(got, 'dw'), f32(want, 'dw'))).toBeLessThanOrEqual(1e-6);
    }
  });

  test('classifier_weight_grad refuses rows outside the batch', async () => {
    await expect(fast({ op: 'classifier_weight_grad', M: 4, Vp: 64, C: 2, rows: 3, row0: 2, dlogits: new Float32Array(3 * 64), x: new Float32Array(6) }))
      .rejects.toThrow(/row0 \+ rows <= M.*rows 3, row0 2, M 4/);
  });

  test('a wrong break fails: a chunking that splits a GEMM block is not bitwise', async () => {
    setIsa(supportedIsas()[0]);
    const one = await fast({ op: 'matmul_backward', M, K: Vp, N: C, dout: x, inp: dlogits, w: new Float32Array(Vp * C), dw: dw0 });
    const got = await fast({ op: 'classifier_weight_grad', M, Vp, C, dlogits, x, dw: dw0, chunks: 7 });
    expect(() => sameBits(f32(got, 'dw'), f32(one, 'dw'), 'chunks of 7')).toThrow(/differs/);
  });
});

describe('the model with the fused classifier (CPU)', () => {
  const config = tinyConfig({ vocab_size: 301, n_positions: 64, n_layer: 1 }); // Vp 320
  const B = 5, T = 61; // 305 rows: GEMM K blocks of 154 and 151 in fp32

  interface Run { losses: number[]; norms: number[]; grads: Map<string, Float32Array>; logits: Float32Array; evalLoss: number }
  const floats = (b64: string): Float32Array => {
    const b = Buffer.from(b64, 'base64');
    return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
  };
  /** Two steps, the gradients, forward() and loss() in a child with GPT_ENGINE_CLASSIFIER_ROWS = rows (null: unset). */
  function run(precision: 'fp32' | 'bf16', rows: number | string | null, isa: string, threads: number): Run & { error?: string } {
    const env = { ...process.env };
    delete env.GPT_ENGINE_CLASSIFIER_ROWS;
    if (rows !== null) env.GPT_ENGINE_CLASSIFIER_ROWS = String(rows);
    const arg = JSON.stringify({ precision, isa, threads, batch: B, seq: T, config });
    const text = execFileSync(process.execPath, [path.join(__dirname, '..', 'helpers', 'child-classifier.js'), arg], { env, encoding: 'utf8', timeout: 60000 });
    const o = JSON.parse(text);
    if (o.error) return o;
    return { ...o, logits: floats(o.logits), grads: new Map(Object.entries(o.grads as Record<string, string>).map(([k, v]) => [k, floats(v)])) };
  }

  test.each(runtimes)('same bits for chunks of whole GEMM blocks; other chunks move only dwte, within 1e-6 ($isa, $threads threads)', async ({ isa, threads }) => {
    for (const precision of ['fp32', 'bf16'] as const) {
      const base = run(precision, null, isa, threads);
      expect(base.losses[0]).toBeGreaterThan(5); // about ln(301)
      // What the CPU picks by itself (fp32: two chunks of 154 + 151 rows; bf16
      // with AVX512_BF16 GEMMs: one) against one chunk of all rows, which is
      // the unfused computation (the head over every row, then its backward).
      setIsa(isa);
      const own = (await fast({ op: 'classifier_chunk_rows', precision, M: B * T, Vp: 320, cap: B * T })).rows as number;
      if (precision === 'fp32') expect(own).toBe(154);
      const whole = run(precision, B * T, isa, threads);
      expect(whole.losses).toEqual(base.losses);
      expect(whole.norms).toEqual(base.norms);
      expect(whole.evalLoss).toBe(base.evalLoss);
      sameBits(whole.logits, base.logits, `${precision} logits, one chunk vs chunks of ${own}`);
      for (const [k, g] of base.grads) sameBits(whole.grads.get(k)!, g, `${precision} ${k}, one chunk vs chunks of ${own}`);
      if (precision === 'bf16') continue;
      for (const rows of [1, 7, 100]) {
        const got = run(precision, rows, isa, threads);
        // Rows are independent until dwte: the first loss, the logits' rows
        // and every gradient but wte's keep their bits.
        expect(got.losses[0]).toBe(base.losses[0]);
        let moved = false;
        for (const [k, g] of base.grads) {
          if (k === 'wte.weight') {
            expect(relL2(got.grads.get(k)!, g)).toBeLessThanOrEqual(1e-6);
            moved = moved || got.grads.get(k)!.some((v, i) => v !== g[i]);
          } else sameBits(got.grads.get(k)!, g, `${k}, chunks of ${rows}`);
        }
        if (rows === 7) expect(moved).toBe(true); // the chunks really were other chunks
        expect(Math.abs(got.norms[0] - base.norms[0])).toBeLessThanOrEqual(1e-6 * base.norms[0]);
        expect(Math.abs(got.losses[1] - base.losses[1])).toBeLessThanOrEqual(1e-6 * base.losses[1]);
        expect(relL2(got.logits, base.logits)).toBeLessThanOrEqual(1e-5);
      }
    }
  });

  test('a bad GPT_ENGINE_CLASSIFIER_ROWS is refused, naming the value', () => {
    expect(run('fp32', '0x', 'portable', 1).error).toMatch(/Expected GPT_ENGINE_CLASSIFIER_ROWS to be a positive integer but received '0x'/);
  });
});
