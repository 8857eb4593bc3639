/**
 * Which GEMM the CUDA backend runs (native/cuda/cublaslt.h, docs/GPU.md
 * "Which GEMM runs"): cuBLASLt when it loads and passes its self-check, else
 * the engine's own kernels, with the reason. Runs where the cuda project runs.
 * On the emulator the library is the stand-in (tools/cuda-emu/cublaslt/),
 * which $GPT_EMU_CUBLASLT_FAULT makes deliberately wrong: each fault must make
 * the self-check fall back to the own GEMM, say why (cudaGemmInfo and one line
 * on stderr), and the ops must still match the CPU. Each case is its own
 * process, since the choice is made once per process.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { addonCandidates, loadAddon } from '../../lib/native';
import { describeExit, distFile, runNode } from '../helpers/child-util';

interface GemmInfo {
  gemm: string;
  cublaslt: boolean;
  reason: string;
  path: string;
  version: number;
}
type BackendOp = (o: Record<string, unknown>) => Promise<Record<string, Float32Array>>;
const addon = loadAddon<{
  cudaGemmInfo(): GemmInfo;
  backendOp: BackendOp;
  probeCudaGemm(o: { size?: number; precision?: string; repeats?: number }): Promise<{ gflops: number }>;
}>();
const info = addon.cudaInfo();
const addonPath = addonCandidates().find((f) => fs.existsSync(f))!;

// A child process: the first GEMMs of the process (bias + GELU forward, run
// twice, backward: NT and TN accumulating, bias gradient) on cuda and on the cpu,
// their relative L2 differences, then which GEMM it says ran.
const CHILD = `
const addon = require(process.argv[1]);
const precision = process.argv[2];
const big = process.argv[3] === 'big';
let s = 7;
const rnd = (n, scale) => Float32Array.from({ length: n }, () => { s = (s * 1103515245 + 12345) >>> 0; return ((s >>> 8) / 8388608 - 1) * scale; });
const rel = (x, y) => { let e = 0, n = 0; for (let i = 0; i < x.length; i++) { e += (x[i] - y[i]) ** 2; n += y[i] ** 2; } return Math.sqrt(e / n); };
(async () => {
  const [M, K, N] = big ? [64, 48, 40] : [23, 19, 31];
  const fwd = { op: 'matmul_forward_gelu', precision, M, K, N, a: rnd(M * K, 1), b: rnd(K * N, 0.3), bias: rnd(N, 0.5) };
  const bwd = { op: 'matmul_backward', precision, M, K, N, dout: rnd(M * N, 1), inp: rnd(M * K, 1), w: rnd(K * N, 0.3), dw: rnd(K * N, 1), dbias: rnd(N, 1) };
  const r = {};
  try {
    await addon.backendOp({ device: 'cuda', ...fwd });  // twice: a second call of a shape says nothing new
    const gf = await addon.backendOp({ device: 'cuda', ...fwd }), cf = await addon.backendOp({ device: 'cpu', ...fwd });
    const gb = await addon.backendOp({ device: 'cuda', ...bwd }), cb = await addon.backendOp({ device: 'cpu', ...bwd });
    r.errors = { pre: rel(gf.pre, cf.pre), out: rel(gf.out, cf.out), dinp: rel(gb.dinp, cb.dinp), dw: rel(gb.dw, cb.dw), dbias: rel(gb.dbias, cb.dbias) };
  } catch (e) {
    r.error = { code: e.code, message: e.message };
  }
  r.gemm = addon.cudaGemmInfo();
  process.stdout.write(JSON.stringify(r));
})();
`;

interface ChildResult {
  errors?: Record<string, number>;
  error?: { code: string; message: string };
  gemm: GemmInfo;
  stderr: string;
}

function child(env: Record<string, string | undefined>, precision = 'fp32', size = 'small'): ChildResult {
  const e: NodeJS.ProcessEnv = { ...process.env };
  for (const k of ['GPT_ENGINE_GEMM', 'GPT_ENGINE_CUBLASLT', 'GPT_EMU_CUBLASLT_FAULT']) delete e[k];
  for (const [k, v] of Object.entries(env)) if (v !== undefined) e[k] = v;
  const r = spawnSync(process.execPath, ['-e', CHILD, addonPath, precision, size], { env: e, encoding: 'utf8', timeout: 120000 });
  if (r.status !== 0) throw new Error(`child failed (${r.status}): ${r.stderr}`);
  return { ...(JSON.parse(r.stdout) as Omit<ChildResult, 'stderr'>), stderr: r.stderr };
}

function expectMatchesCpu(r: ChildResult, limit: number) {
  expect(r.error).toBeUndefined();
  for (const [name, e] of Object.entries(r.errors!)) {
    if (!(e < limit)) throw new Error(`${name}: relative error ${e} against the cpu (limit ${limit})`);
  }
}

const FALLBACK_LINE = /^gpt-engine: the GEMMs run on the engine's own kernels, not cuBLASLt: /;

test('the addon says which GEMM runs', () => {
  expect(info.available).toBe(true);
  const g = addon.cudaGemmInfo();
  if (process.env.GPT_ENGINE_GEMM === 'own') {
    expect(g).toMatchObject({ cublaslt: false, gemm: 'own (GPT_ENGINE_GEMM=own)' });
  } else if (info.emulated) {
    // The emulated build loads its stand-in, and it passes the self-check.
    expect(g.reason).toBe('');
    expect(g).toMatchObject({ cublaslt: true, gemm: "cublaslt 13.0.0 (the emulator's stand-in)", version: 130000 });
    expect(g.path).toMatch(/gpt_emu_cublaslt\.so$/);
  } else if (g.path) {
    // A cuBLASLt was found on this GPU machine: it must pass the self-check.
    expect(g.reason).toBe('');
    expect(g.gemm).toMatch(/^cublaslt \d+\.\d+\.\d+$/);
  } else {
    expect(g.gemm).toMatch(/^own \(no cuBLASLt/);
  }
});

test('through the default GEMM the first GEMMs of a process match the cpu, fp32 and bf16', () => {
  for (const p of ['fp32', 'bf16']) {
    const r = child({}, p);
    expectMatchesCpu(r, p === 'fp32' ? 1e-5 : 1e-2);
    if (info.emulated) expect(r.gemm).toMatchObject({ cublaslt: true, reason: '' });
    expect(r.stderr).not.toMatch(FALLBACK_LINE);
  }
});

test('GPT_ENGINE_GEMM=own runs the own GEMM and says so, without a warning', () => {
  const r = child({ GPT_ENGINE_GEMM: 'own' });
  expectMatchesCpu(r, 1e-5);
  expect(r.gemm).toMatchObject({ cublaslt: false, gemm: 'own (GPT_ENGINE_GEMM=own)', path: '' });
  expect(r.stderr).toBe('');
});

test('a bad GPT_ENGINE_GEMM is a clear error naming the variable and its value', () => {
  const r = child({ GPT_ENGINE_GEMM: 'fastest' });
  expect(r.error).toMatchObject({ code: 'INVALID_ARGUMENT' });
  expect(r.error!.message).toMatch(/GPT_ENGINE_GEMM is "fastest"; expected "auto", "own" or "cublaslt"/);
});

test('a GPT_ENGINE_CUBLASLT that does not load leaves the own GEMM, naming the file', () => {
  const r = child({ GPT_ENGINE_CUBLASLT: '/nonexistent/libcublasLt.so.13' });
  expectMatchesCpu(r, 1e-5);
  expect(r.gemm.cublaslt).toBe(false);
  expect(r.gemm.gemm).toMatch(/^own \(no cuBLASLt \(\/nonexistent\/libcublasLt\.so\.13: /);
  expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(FALLBACK_LINE)]);
});

test('GEMMs on another stream (the GEMM probe\'s) between GEMMs on the backend\'s stream stay right', async () => {
  let seed = 3;
  const rnd = (n: number) => Float32Array.from({ length: n }, () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 31 - 1));
  const M = 45, K = 38, N = 27;
  const op = { op: 'matmul_forward', precision: 'fp32', M, K, N, a: rnd(M * K), b: rnd(K * N), bias: rnd(N) };
  const want = (await addon.backendOp({ device: 'cpu', ...op })).out;
  const rel = (x: Float32Array) => Math.sqrt(x.reduce((e, v, i) => e + (v - want[i]) ** 2, 0) / want.reduce((n, v) => n + v * v, 0));
  expect(rel((await addon.backendOp({ device: 'cuda', ...op })).out)).toBeLessThan(1e-5);
  expect((await addon.probeCudaGemm({ size: 96, precision: 'bf16', repeats: 1 })).gflops).toBeGreaterThan(0);
  expect(rel((await addon.backendOp({ device: 'cuda', ...op })).out)).toBeLessThan(1e-5);
});

test('gpt-engine info prints which GEMM runs, and gives it in --json', async () => {
  const cli = distFile('bin/gpt-engine.js');
  const want = addon.cudaGemmInfo();
  const text = await runNode([cli, 'info'], { timeoutMs: 120000 });
  if (text.code !== 0) throw new Error(describeExit(text));
  expect(text.stdout).toContain(`\ngemm:       ${want.gemm}\n`);
  const json = await runNode([cli, 'info', '--json'], { timeoutMs: 120000 });
  if (json.code !== 0) throw new Error(describeExit(json));
  expect(JSON.parse(json.stdout).gemm).toEqual(want);
  if (info.emulated) {
    const bad = await runNode([cli, 'info'], { env: { GPT_EMU_CUBLASLT_FAULT: 'bias' }, timeoutMs: 120000 });
    if (bad.code !== 0) throw new Error(describeExit(bad));
    expect(bad.stdout).toMatch(/\ngemm: {7}own \(.*failed the self-check: NN \+ bias \(matmul forward\) fp32, M 37 N 29 K 19: relative error/);
    expect(bad.stderr).toMatch(/gpt-engine: the GEMMs run on the engine's own kernels, not cuBLASLt: /);
  }
});

if (info.emulated) {
  // What each deliberately wrong stand-in must produce in the reason.
  const faults: Array<[string, RegExp]> = [
    ['transpose', /self-check: NN \(matmul forward\) fp32, M 37 N 29 K 19: cublasLtMatmulAlgoGetHeuristic failed: CUBLAS_STATUS_INVALID_VALUE \(7\)/],
    ['bias', /self-check: NN \+ bias \(matmul forward\) fp32, M 37 N 29 K 19: relative error [0-9.e+-]+ against the own GEMM \(limit 1e-05\)/],
    ['ld', /self-check: NN \+ bias, padded rows fp32, M 21 N 43 K 27: relative error (nan|[0-9.e+-]+) against the own GEMM/],
    ['status', /self-check: NN \(matmul forward\) fp32, M 37 N 29 K 19: cublasLtMatmul failed: CUBLAS_STATUS_EXECUTION_FAILED \(13\)/],
    ['noalgo', /gpt_emu_cublaslt\.so has no algorithm for any of the self-check's GEMMs/],
    // Wrong only for a bf16 D with an fp32 bias: the bf16-storage cases catch it.
    ['bias-type', /self-check: NN \(bf16, bf16\) -> bf16 \+ bias \(bf16 storage\) bf16, M 35 N 41 K 21: relative error [0-9.e+-]+ against the own GEMM \(limit 1e-02\)/],
  ];
  for (const [fault, why] of faults) {
    test(`a stand-in that gets it wrong (${fault}) makes the self-check fall back to the own GEMM and say why`, () => {
      const r = child({ GPT_EMU_CUBLASLT_FAULT: fault });
      expectMatchesCpu(r, 1e-5);
      expect(r.gemm.cublaslt).toBe(false);
      expect(r.gemm.reason).toMatch(why);
      expect(r.gemm.gemm).toBe(`own (${r.gemm.reason})`);
      const lines = r.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(FALLBACK_LINE);
      expect(lines[0]).toMatch(why);
    });
  }

  test('a cuBLASLt refusing an fp32 bias for a bf16 D keeps cuBLASLt for the rest, silently', () => {
    const r = child({ GPT_EMU_CUBLASLT_FAULT: 'no-f32-bias' }, 'bf16');
    expectMatchesCpu(r, 1e-2);
    expect(r.gemm).toMatchObject({ cublaslt: true, reason: '' });
    expect(r.stderr).toBe('');
  });

  test('cuBLASLt failing on a GEMM after the self-check passed: the own kernels run that shape, said once per shape', () => {
    const r = child({ GPT_EMU_CUBLASLT_FAULT: 'late-status' }, 'fp32', 'big');
    expectMatchesCpu(r, 1e-5);
    expect(r.gemm).toMatchObject({ cublaslt: true, reason: '' });
    const lines = r.stderr.trim().split('\n');
    // The forward (NN + bias), dinp (NT) and dW (TN), each once.
    expect(lines).toEqual([
      "gpt-engine: cuBLASLt failed on a GEMM (NN fp32, M 64 N 40 K 48 + bias): cublasLtMatmul failed: CUBLAS_STATUS_EXECUTION_FAILED (13); the engine's own kernels run that shape",
      "gpt-engine: cuBLASLt failed on a GEMM (NT fp32, M 64 N 48 K 40): cublasLtMatmul failed: CUBLAS_STATUS_EXECUTION_FAILED (13); the engine's own kernels run that shape",
      "gpt-engine: cuBLASLt failed on a GEMM (TN fp32, M 48 N 40 K 64): cublasLtMatmul failed: CUBLAS_STATUS_EXECUTION_FAILED (13); the engine's own kernels run that shape",
    ]);
    // Demanded, the same failure is an error.
    const d = child({ GPT_ENGINE_GEMM: 'cublaslt', GPT_EMU_CUBLASLT_FAULT: 'late-status' }, 'fp32', 'big');
    expect(d.error).toMatchObject({ code: 'INTERNAL' });
    expect(d.error!.message).toMatch(/^matmul \(cuBLASLt\) NN fp32, M 64 N 40 K 48 \+ bias: cublasLtMatmul failed: CUBLAS_STATUS_EXECUTION_FAILED/);
  });

  test('GPT_ENGINE_GEMM=cublaslt turns a failed self-check into an error naming the reason', () => {
    const r = child({ GPT_ENGINE_GEMM: 'cublaslt', GPT_EMU_CUBLASLT_FAULT: 'bias' });
    expect(r.error).toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(r.error!.message).toMatch(/GPT_ENGINE_GEMM=cublaslt but cuBLASLt is not usable: .*relative error/);
  });
}
