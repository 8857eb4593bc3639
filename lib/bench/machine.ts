/**
 * The machine a benchmark ran on, and the ceilings measured in the same run:
 * fp32 FMA peak, bf16 peak where the CPU has AVX512_BF16, memory read
 * bandwidth; on a GPU a device copy and a large GEMM (on the CPU the report
 * says "not measured" and why).
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cpuModel, cudaGemmInfo, packageVersion } from '../info';
import { loadAddon, packageRoot } from '../native';
import { BenchDevice, Ceiling, Ceilings, MachineInfo } from './types';
import { statOf } from './stats';

/** The GPU ceiling probes (native/addon/probe_binding.cc); they reject with NO_GPU where no GPU is usable. */
interface CudaProbes {
  probeCudaCopy(o: { bytes?: number; repeats?: number }): Promise<{ gbps: number }>;
  probeCudaGemm(o: { size?: number; precision?: string; repeats?: number }): Promise<{ gflops: number }>;
}

function git(args: string[]): string | null {
  const root = packageRoot();
  if (!fs.existsSync(path.join(root, '.git'))) return null;
  try {
    return execFileSync('git', args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10000 }).trim();
  } catch {
    return null;
  }
}

export function machineInfo(device: BenchDevice): MachineInfo {
  const addon = loadAddon();
  const cuda = addon.cudaInfo();
  const commit = git(['rev-parse', 'HEAD']);
  const status = commit ? git(['status', '--porcelain', '--untracked-files=no']) : null;
  return {
    cpuModel: cpuModel(),
    cores: os.cpus().length,
    isa: addon.getIsa(),
    supportedIsas: addon.supportedIsas(),
    avx512bf16: addon.hasAvx512Bf16(),
    threads: addon.getThreads(),
    memoryBytes: os.totalmem(),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    packageVersion: packageVersion(),
    gitCommit: commit,
    gitDirty: status === null ? null : status.length > 0,
    gpu: {
      used: device === 'cuda',
      name: cuda.available ? cuda.name : null,
      memoryBytes: cuda.available ? cuda.totalMemory : null,
      computeCapability: cuda.available ? cuda.computeCapability : null,
      driverVersion: cuda.available ? cuda.driverVersion : null,
      runtimeVersion: cuda.available ? cuda.runtimeVersion : null,
      reason: cuda.available ? `${cuda.deviceCount} device(s)` : cuda.reason || (cuda.compiled ? 'no usable GPU' : 'built without CUDA'),
      gemm: device === 'cuda' && cuda.available ? (cudaGemmInfo()?.gemm ?? null) : null,
    },
    loadAverage: os.loadavg().map((x) => Math.round(x * 100) / 100),
  };
}

export interface CeilingOptions {
  quick: boolean;
  device: BenchDevice;
  log?: (s: string) => void;
}

function notMeasured(unit: Ceiling['unit'], how: string, reason: string): Ceiling {
  return { value: null, unit, how, reason };
}

/**
 * Measures the ceilings. Each probe is called several times (each call
 * reports the best of its own repeats); the ceiling is the best call, and
 * the stat shows how much the calls disagreed.
 */
export async function measureCeilings(o: CeilingOptions): Promise<Ceilings> {
  const addon = loadAddon<CudaProbes>();
  const calls = o.quick ? 3 : 5;
  const seconds = o.quick ? 0.1 : 0.3;
  const fma = async (bf16: boolean): Promise<Ceiling> => {
    const how = `${bf16 ? 'vdpbf16ps' : 'FMA'} chains on every pool thread (${addon.getThreads()}), ${calls} probes of ${seconds} s, best`;
    const vals: number[] = [];
    for (let i = 0; i < calls; i++) {
      const r = await addon.probeFmaPeak({ bf16, seconds, repeats: 2 });
      if (!r.supported) return notMeasured('GFLOP/s', how, bf16 ? 'this CPU (or ISA path) has no AVX512_BF16' : 'probe unsupported');
      vals.push(r.gflops);
    }
    const s = statOf(vals);
    return { value: s.max, unit: 'GFLOP/s', stat: s, how };
  };
  o.log?.('measuring ceilings: fp32 FMA peak');
  const fp32 = await fma(false);
  o.log?.('measuring ceilings: bf16 peak');
  const bf16 = await fma(true);
  o.log?.('measuring ceilings: read bandwidth');
  const bytes = (o.quick ? 128 : 512) * 1024 * 1024;
  const bwVals: number[] = [];
  for (let i = 0; i < calls; i++) bwVals.push((await addon.probeBandwidth({ bytes, repeats: 3 })).gbps);
  const bwStat = statOf(bwVals);
  const readBandwidth: Ceiling = {
    value: bwStat.max,
    unit: 'GB/s',
    stat: bwStat,
    how: `sum of a ${bytes / 1024 / 1024} MiB fp32 buffer on every pool thread, ${calls} probes, best (1 GB = 1e9 bytes)`,
  };

  let gpuCopy: Ceiling;
  let gpuGemm: Ceiling;
  if (o.device !== 'cuda') {
    gpuCopy = notMeasured('GB/s', 'device-to-device copy', 'not measured: the run is on the CPU');
    gpuGemm = notMeasured('GFLOP/s', 'large GEMM on the GPU', 'not measured: the run is on the CPU');
  } else {
    const copies: number[] = [];
    for (let i = 0; i < calls; i++) copies.push((await addon.probeCudaCopy({ bytes: 1 << 30, repeats: 5 })).gbps);
    const c = statOf(copies);
    gpuCopy = { value: c.max, unit: 'GB/s', stat: c, how: '1 GiB device-to-device copy timed with CUDA events (read + write bytes)' };
    const gemms: number[] = [];
    for (let i = 0; i < calls; i++) gemms.push((await addon.probeCudaGemm({ size: 8192, precision: 'bf16', repeats: 5 })).gflops);
    const g = statOf(gemms);
    const which = cudaGemmInfo()?.gemm ?? 'unknown';
    gpuGemm = {
      value: g.max,
      unit: 'GFLOP/s',
      stat: g,
      how: `engine GEMM: 8192^3 bf16 through the backend's GEMM, ${which} (what this build reaches, not the hardware peak)`,
    };
  }
  return { fp32, bf16, readBandwidth, gpuCopy, gpuGemm };
}

/** The FMA ceiling of a precision: bf16's where measured, else fp32's. */
export function peakFor(c: Ceilings, precision: 'fp32' | 'bf16'): number | null {
  if (precision === 'bf16' && c.bf16.value !== null) return c.bf16.value;
  return c.fp32.value;
}

/**
 * The ceilings a device's figures are fractions of: the CPU's own on the
 * CPU; on a GPU the GPU GEMM (for every precision) and the device copy
 * bandwidth, or none where this build cannot measure them (the fractions
 * then read "-", never a CPU ceiling).
 */
export function deviceCeilings(c: Ceilings, device: 'cpu' | 'cuda'): Ceilings {
  if (device === 'cpu') return c;
  return { ...c, fp32: c.gpuGemm, bf16: c.gpuGemm, readBandwidth: c.gpuCopy };
}
