// Three projects, split by what they need (docs/ARCHITECTURE.md "Layers"):
//   unit   - pure TypeScript, always runs, in parallel;
//   native - the CPU addon (each file in its own worker process; on 2 cores
//            jest runs one worker at a time, and each test uses the whole pool);
//   cuda   - only where a GPU is present, or the addon is the SIMT emulator
//            build (docs/dev/CUDA-EMU.md; `npm run test:emu`). Without either
//            the project is left out of the run and the reason is printed
//            (test/cuda/README.md).
//   dist   - data-parallel runs under Open MPI (test/distributed): only where mpirun
//            is on the PATH and the MPI plugin was built next to the addon;
//            otherwise left out with the reason printed.
const { execFileSync } = require('node:child_process');
const path = require('node:path');

function gpuStatus() {
  if (process.env.GPT_ENGINE_TEST_CUDA === '0') return { ok: false, reason: 'GPT_ENGINE_TEST_CUDA=0' };
  try {
    const out = execFileSync(process.execPath, [path.join(__dirname, 'scripts', 'gpu-check', 'gpu-status.js')], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: 60000,
    });
    return JSON.parse(out);
  } catch (e) {
    return { ok: false, reason: `could not ask the addon: ${e.message.split('\n')[0]}` };
  }
}

const tsJest = ['ts-jest', { tsconfig: 'tsconfig.test.json', diagnostics: { warnOnly: false, ignoreCodes: [151002] } }];
const common = { testEnvironment: 'node', transform: { '^.+\\.ts$': tsJest }, moduleFileExtensions: ['ts', 'js', 'json'] };

const projects = [
  { ...common, displayName: 'unit', testMatch: ['<rootDir>/test/unit/**/*.test.ts'] },
  { ...common, displayName: 'native', testMatch: ['<rootDir>/test/native/**/*.test.ts']},
];
const gpu = gpuStatus();
if (gpu.ok) {
  projects.push({ ...common, displayName: 'cuda', testMatch: ['<rootDir>/test/cuda/**/*.test.ts']});
} else if (!process.env.JEST_WORKER_ID) {
  process.stderr.write(`gpt-engine: CUDA tests left out of this run: ${gpu.reason}\n`);
}

function distStatus() {
  if (process.env.GPT_ENGINE_TEST_DIST === '0') return { ok: false, reason: 'GPT_ENGINE_TEST_DIST=0' };
  const fs = require('node:fs');
  const onPath = (process.env.PATH || '').split(path.delimiter).some((d) => d && fs.existsSync(path.join(d, 'mpirun')));
  if (!onPath) return { ok: false, reason: 'no mpirun on the PATH (apt-get install openmpi-bin libopenmpi-dev, then rebuild)' };
  const addon = process.env.GPT_ENGINE_ADDON ? path.resolve(process.env.GPT_ENGINE_ADDON) : path.join(__dirname, 'build', 'Release', 'gpt_engine.node');
  const plugin = path.join(path.dirname(addon), 'gpt_engine_mpi.so');
  if (!fs.existsSync(plugin)) return { ok: false, reason: `no MPI plugin at ${plugin} (the addon was built without MPI)` };
  return { ok: true };
}
const dist = distStatus();
if (dist.ok) {
  // The GPU-rank tests need the emulated addon and a stand-in libnccl: `npm run
  // test:emu` runs them (GPT_ENGINE_TEST_GPU_RANKS=1); elsewhere they are left
  // out of the run, not skipped inside it.
  const gpuRanks = process.env.GPT_ENGINE_TEST_GPU_RANKS === '1';
  projects.push({
    ...common,
    displayName: 'dist',
    testMatch: ['<rootDir>/test/distributed/**/*.test.ts'],
    testPathIgnorePatterns: gpuRanks ? ['/node_modules/'] : ['/node_modules/', '/test/distributed/gpu-ranks\\.test\\.ts$'],
  });
  if (!gpuRanks && !process.env.JEST_WORKER_ID)
    process.stderr.write('gpt-engine: GPU-rank tests left out of this run: they run on the emulated addon (npm run test:emu)\n');
} else if (!process.env.JEST_WORKER_ID) {
  process.stderr.write(`gpt-engine: distributed tests left out of this run: ${dist.reason}\n`);
}

module.exports = { projects, testTimeout: 120000 };
