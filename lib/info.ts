/**
 * What `gpt-engine info` reports, as data (also used by the benchmarks'
 * machine section).
 */
import { distNative, ncclVersionString } from './distributed/native';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { forward as attentionForward } from './attention';
import { addonCandidates, CoreNative, loadAddon, packageRoot } from './native';
import { environmentWarnings } from './runtime';

export interface BackendCheck {
  backend: 'cpu' | 'cuda';
  ok: boolean;
  skipped?: boolean;
  detail: string;
}

export interface EngineInfo {
  version: string;
  addon: { loaded: boolean; path?: string; error?: string };
  cpu: { model: string; isa: string; supportedIsas: string[]; avx512bf16: boolean; logicalCpus: number };
  threads: number;
  memoryBytes: number;
  cuda: ReturnType<CoreNative['cudaInfo']> | { compiled: false; available: false; reason: string; name: ''; totalMemory: 0; computeCapability: ''; driverVersion: 0; runtimeVersion: 0; deviceCount: 0; emulated?: false };
  /** which GEMM the CUDA backend runs (docs/GPU.md "Which GEMM runs"); absent without a usable GPU */
  gemm?: CudaGemmInfo;
  checks: BackendCheck[];
  warnings: string[];
  /** data parallel (docs/DISTRIBUTED.md): MPI for CPU ranks, NCCL for GPU ranks */
  distributed?: { mpi: { available: boolean; version: string | null; reason: string | null }; nccl: { available: boolean; version: string | null; reason: string | null } };
}

/** The addon's answer to which GEMM the CUDA backend runs (native/cuda/cublaslt.h). */
export interface CudaGemmInfo {
  /** "cublaslt 13.0.2" or "own (<why not cuBLASLt>)" */
  gemm: string;
  cublaslt: boolean;
  /** why not cuBLASLt ('' when it is used) */
  reason: string;
  /** the cuBLASLt file loaded ('' when none was) */
  path: string;
  /** cublasLtGetVersion() (0 when none was loaded) */
  version: number;
}

/**
 * Which GEMM the CUDA backend runs, or null without a usable GPU (or with an
 * addon older than the answer). The first call may run cuBLASLt's self-check.
 */
export function cudaGemmInfo(): CudaGemmInfo | null {
  try {
    const addon = loadAddon<{ cudaGemmInfo?: () => CudaGemmInfo }>();
    if (!addon.cudaInfo().available || typeof addon.cudaGemmInfo !== 'function') return null;
    return addon.cudaGemmInfo();
  } catch {
    return null;
  }
}

/** Whether this build and machine can run distributed: the MPI plugin and libmpi, and libnccl.so.2. */
export function distributedInfo(): NonNullable<EngineInfo['distributed']> {
  try {
    const n = distNative();
    const m = n.mpiInfo();
    const c = n.ncclInfo();
    return {
      mpi: { available: m.available, version: m.version, reason: m.reason },
      nccl: { available: c.available, version: c.version !== null ? ncclVersionString(c.version) : null, reason: c.reason },
    };
  } catch (e) {
    const why = (e as Error).message;
    return { mpi: { available: false, version: null, reason: why }, nccl: { available: false, version: null, reason: why } };
  }
}

export function packageVersion(): string {
  try {
    return JSON.parse(fs.readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')).version;
  } catch {
    return 'unknown';
  }
}

/** The CPU's model name (from /proc/cpuinfo where there is one, else os.cpus()). */
export function cpuModel(): string {
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) return m[1].trim();
  } catch {
    /* not Linux */
  }
  return os.cpus()[0]?.model?.trim() || 'unknown';
}

/** A tiny computation per backend: a small dense attention forward checked against a plain float64 loop. */
async function checkBackend(backend: 'cpu' | 'cuda'): Promise<BackendCheck> {
  const T = 5;
  // Both checks ask for fp32 attention (below). On CUDA that is the SIMT
  // fp32 path, which takes any head size up to 256 (D = 64 is also a size of
  // the tensor-core kernels). Both are held to the fp32 limit the GPU check
  // uses for fp32 attention (test/ops/op-table.js).
  const D = backend === 'cuda' ? 64 : 8;
  const tol = 1e-5;
  const q = new Float32Array(T * D).map((_, i) => Math.sin(i * 0.7));
  const k = new Float32Array(T * D).map((_, i) => Math.cos(i * 0.3));
  const v = new Float32Array(T * D).map((_, i) => Math.sin(i * 0.11 + 1));
  const scale = 1 / Math.sqrt(D);
  // float64 reference
  const ref = new Float64Array(T * D);
  for (let i = 0; i < T; i++) {
    const s: number[] = [];
    for (let j = 0; j <= i; j++) {
      let dot = 0;
      for (let d = 0; d < D; d++) dot += q[i * D + d] * k[j * D + d];
      s.push(dot * scale);
    }
    const m = Math.max(...s);
    const e = s.map((x) => Math.exp(x - m));
    const z = e.reduce((a, b) => a + b, 0);
    for (let d = 0; d < D; d++) {
      let acc = 0;
      for (let j = 0; j <= i; j++) acc += (e[j] / z) * v[j * D + d];
      ref[i * D + d] = acc;
    }
  }
  try {
    const t0 = process.hrtime.bigint();
    // fp32 on every backend, against float64, within `tol`.
    const { out } = await attentionForward({ q, k, v, batch: 1, heads: 1, seq: T, headDim: D, pattern: 'dense', device: backend, precision: 'fp32' });
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    let err = 0;
    let norm = 0;
    for (let i = 0; i < ref.length; i++) {
      err += (out[i] - ref[i]) ** 2;
      norm += ref[i] ** 2;
    }
    const rel = Math.sqrt(err / norm);
    const ok = Number.isFinite(rel) && rel < tol;
    return { backend, ok, detail: `attention ${T}x${D} against float64: relative error ${rel.toExponential(2)} (${ms.toFixed(2)} ms)` };
  } catch (e) {
    const err = e as Error & { code?: string };
    if (err.code === 'NO_GPU') return { backend, ok: false, skipped: true, detail: err.message };
    return { backend, ok: false, detail: `${err.name}: ${err.message}` };
  }
}

export async function collectInfo(): Promise<EngineInfo> {
  const base = {
    version: packageVersion(),
    memoryBytes: os.totalmem(),
    warnings: [] as string[],
  };
  let native: CoreNative;
  try {
    native = loadAddon();
  } catch (e) {
    return {
      ...base,
      addon: { loaded: false, error: (e as Error).message },
      cpu: { model: cpuModel(), isa: 'unknown', supportedIsas: [], avx512bf16: false, logicalCpus: os.cpus().length },
      threads: 0,
      cuda: { compiled: false, available: false, reason: 'the addon did not load', name: '', totalMemory: 0, computeCapability: '', driverVersion: 0, runtimeVersion: 0, deviceCount: 0 },
      checks: [{ backend: 'cpu', ok: false, detail: 'the addon did not load' }],
    };
  }
  const addonPath = addonCandidates().find((f) => fs.existsSync(f));
  const cuda = native.cudaInfo();
  const checks = [await checkBackend('cpu')];
  if (cuda.available) checks.push(await checkBackend('cuda'));
  else checks.push({ backend: 'cuda', ok: false, skipped: true, detail: cuda.reason });
  return {
    ...base,
    addon: { loaded: true, path: addonPath },
    cpu: {
      model: cpuModel(),
      isa: native.getIsa(),
      supportedIsas: native.supportedIsas(),
      avx512bf16: native.hasAvx512Bf16(),
      logicalCpus: os.cpus().length,
    },
    threads: native.getThreads(),
    cuda,
    ...(cuda.available ? { gemm: cudaGemmInfo() ?? undefined } : {}),
    checks,
    warnings: environmentWarnings(),
    distributed: distributedInfo(),
  };
}
