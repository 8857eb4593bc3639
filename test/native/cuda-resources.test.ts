/**
 * scripts/ci/cuda-resources.js (the CI resource check) reads registers, stack
 * frame and static shared memory out of the cubins in an ELF file. Here it is
 * held against ptxas's own report (`-Xptxas -v`) on a small CUDA file compiled
 * for sm_80 and sm_90: a kernel with static shared memory, one forced to spill
 * (-maxrregcount 32), one with dynamic shared memory only. Where no nvcc is
 * installed, that test is skipped (its title says why) and only the no-fatbin
 * path is checked.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const script = path.join(__dirname, '..', '..', 'scripts', 'ci', 'cuda-resources.js');

function nvccPath(): string | null {
  const r = spawnSync('nvcc', ['--version'], { encoding: 'utf8' });
  return r.status === 0 ? 'nvcc' : null;
}

const SOURCE = `
__global__ void k_static(float* o) { __shared__ float s[1024]; s[threadIdx.x] = o[threadIdx.x]; __syncthreads(); o[threadIdx.x] = s[1023 - threadIdx.x]; }
__global__ void k_spill(float* o, int n) { float a[64]; for (int i = 0; i < 64; ++i) a[i] = o[i * n + threadIdx.x]; float s = 0; for (int j = 0; j < n; ++j) for (int i = 0; i < 64; ++i) s += a[i] * a[(i + j) & 63]; o[threadIdx.x] = s; }
__global__ void k_dyn(float* o) { extern __shared__ float d[]; d[threadIdx.x] = o[threadIdx.x]; __syncthreads(); o[threadIdx.x] = d[threadIdx.x ^ 1]; }
`;

interface Ptxas {
  regs: number;
  frame: number;
  smem: number;
}

// "Compiling entry function 'NAME' for 'sm_XX'" opens each kernel's lines.
function parsePtxas(log: string): Map<string, Ptxas> {
  const out = new Map<string, Ptxas>();
  let key: string | null = null;
  for (const line of log.split('\n')) {
    const entry = /Compiling entry function '([^']+)' for 'sm_(\d+)'/.exec(line);
    if (entry) {
      key = `${entry[1]} ${entry[2]}`;
      out.set(key, { regs: -1, frame: -1, smem: 0 });
      continue;
    }
    if (!key) continue;
    const k = out.get(key)!;
    const frame = /(\d+) bytes stack frame/.exec(line);
    if (frame) k.frame = Number(frame[1]);
    const regs = /Used (\d+) registers/.exec(line);
    if (regs) k.regs = Number(regs[1]);
    const smem = /(\d+) bytes smem/.exec(line);
    if (smem) k.smem = Number(smem[1]);
  }
  return out;
}

describe('scripts/ci/cuda-resources.js', () => {
  it('exits 2 with the reason on an ELF file without CUDA code', () => {
    const r = spawnSync(process.execPath, [script, process.execPath], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('has no .nv_fatbin section: it was built without the CUDA backend');
  });

  // Chosen when the file is collected: without nvcc the test is reported as skipped, with the reason.
  const nvcc = nvccPath();
  const title = 'agrees with ptxas -v on sm_80 and sm_90 (registers, stack frame, static shared memory)';
  (nvcc ? it : it.skip)(nvcc ? title : `${title} (no nvcc on PATH to compile its fixture)`, () => {
    if (!nvcc) throw new Error('unreachable: skipped without nvcc');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gpt-res-'));
    try {
      fs.writeFileSync(path.join(dir, 't.cu'), SOURCE);
      const args = ['-gencode', 'arch=compute_80,code=sm_80', '-gencode', 'arch=compute_90,code=sm_90', '-maxrregcount=32'];
      const build = spawnSync(nvcc, [...args, '-Xptxas', '-v', '-c', 't.cu', '-o', 't.o'], { cwd: dir, encoding: 'utf8' });
      expect(build.status).toBe(0);
      const ptxas = parsePtxas(build.stderr + build.stdout);
      expect(ptxas.size).toBe(6);
      const r = spawnSync(process.execPath, [script, path.join(dir, 't.o'), '--json'], { encoding: 'utf8' });
      const report = JSON.parse(r.stdout) as { kernels: { mangled: string; arch: number; regs: number; frame: number; staticSmem: number }[] };
      expect(report.kernels).toHaveLength(6);
      for (const k of report.kernels) {
        const p = ptxas.get(`${k.mangled} ${k.arch}`);
        expect(p).toBeDefined();
        expect({ kernel: `${k.mangled} sm_${k.arch}`, regs: k.regs, frame: k.frame, smem: k.staticSmem }).toEqual({
          kernel: `${k.mangled} sm_${k.arch}`,
          regs: p!.regs,
          frame: p!.frame,
          smem: p!.smem,
        });
      }
      // The fixture's spilling kernel is flagged (and, not being in the launch table, nothing else hides it).
      expect(r.status).toBe(1);
      const spill = report.kernels.filter((k) => k.mangled === '_Z7k_spillPfi');
      expect(spill.every((k) => k.frame > 0)).toBe(true);
      expect(report.kernels.filter((k) => k.mangled === '_Z8k_staticPf').every((k) => k.staticSmem === 4096)).toBe(true);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
