/**
 * GPU ranks without a GPU: 2 ranks on --device cuda, where "cuda" is the
 * SIMT emulator build (docs/dev/CUDA-EMU.md; its device buffers are host
 * memory) and libnccl.so.2 is a stand-in built here from
 * test/distributed/fake-nccl-mpi.c (NCCL's functions done with MPI). This runs the
 * whole NCCL path of the step (native/distributed/nccl_comm.cc: the unique id
 * broadcast, ncclCommInitRank, reduce-scatter and all-gather on the
 * backend's stream, ZeRO-1 on) against 1 process on cuda accumulating the
 * same micro-batches, on 2 ranks (equal slices) and 3 (unequal, padded). Left out, saying why, where the emulated addon is
 * not built (scripts/ci/test-emu.sh builds it and runs this file).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { expectOk, metrics, mpirun, QUICK, removeTmpDirs, root, single, tmpDir } from './helpers';

afterAll(removeTmpDirs);

/** The emulated addon (GPT_ENGINE_ADDON, else build-emu/), or why there is none. */
function emulatedAddon(): { addon: string | null; reason: string } {
  const addon = process.env.GPT_ENGINE_ADDON || path.join(root, 'build-emu', 'Release', 'gpt_engine.node');
  if (!fs.existsSync(addon)) return { addon: null, reason: `no emulated addon at ${addon} (build it: npm run test:emu)` };
  if (!fs.existsSync(path.join(path.dirname(addon), 'gpt_engine_mpi.so')))
    return { addon: null, reason: `${addon} has no MPI plugin beside it` };
  const probe = spawnSync(process.execPath, ['-e', `process.stdout.write(JSON.stringify(require(${JSON.stringify(addon)}).cudaInfo()))`], { encoding: 'utf8' });
  let emulated = false;
  try {
    emulated = JSON.parse(probe.stdout).emulated === true;
  } catch {
    emulated = false;
  }
  if (!emulated) return { addon: null, reason: `${addon} is not the SIMT emulator build` };
  if (spawnSync('mpicc', ['--version'], { encoding: 'utf8' }).status !== 0) return { addon: null, reason: 'no mpicc to build the stand-in libnccl' };
  return { addon, reason: '' };
}

const emu = emulatedAddon();
if (!emu.addon) process.stderr.write(`gpt-engine: GPU-rank tests on the emulator left out: ${emu.reason}\n`);
const describeEmu = emu.addon ? describe : describe.skip;

const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-30);

describeEmu('GPU ranks (emulated GPUs, NCCL stand-in over MPI) against 1 process on cuda', () => {
  const STEPS = 3;
  // Small enough for the emulator: one micro-batch of 2 x 32 tokens per rank.
  const RECIPE = [...QUICK.filter((a, i, all) => !['--batch', '--seq'].includes(a) && !['--batch', '--seq'].includes(all[i - 1])), '--batch', '2', '--seq', '32', '--device', 'cuda', '--steps', String(STEPS)];
  let env: NodeJS.ProcessEnv = {};
  let ranksOut = '';
  let ranks = '';
  let one = '';
  let ranks3 = '';
  let one3 = '';

  beforeAll(() => {
    const lib = tmpDir('fake-nccl');
    const cc = spawnSync('mpicc', ['-shared', '-fPIC', '-o', path.join(lib, 'libnccl.so.2'), path.join(__dirname, 'fake-nccl-mpi.c')], { encoding: 'utf8' });
    if (cc.status !== 0) throw new Error(`mpicc failed:\n${cc.stderr}`);
    env = { GPT_ENGINE_ADDON: emu.addon!, GPT_ENGINE_NCCL: path.join(lib, 'libnccl.so.2'), LD_LIBRARY_PATH: [lib, process.env.LD_LIBRARY_PATH].filter(Boolean).join(':') };
    const r = mpirun(2, ['train', ...RECIPE, '--zero', '1', '--out', (ranks = tmpDir('gpu-ranks'))], 300000, env);
    expectOk(r);
    ranksOut = r.stderr + r.stdout;
    expectOk(single(['train', ...RECIPE, '--batch-tokens', '128', '--out', (one = tmpDir('gpu-one'))], 300000, env));
    // 3 ranks cut the tiny model's 858880 floats into ZeRO-1 slices of unequal sizes (NCCL's are equal: the padded path).
    expectOk(mpirun(3, ['train', ...RECIPE, '--zero', '1', '--out', (ranks3 = tmpDir('gpu-ranks3'))], 300000, env));
    expectOk(single(['train', ...RECIPE, '--batch-tokens', '192', '--out', (one3 = tmpDir('gpu-one3'))], 300000, env));
  }, 900000);

  test('the ranks reduced through NCCL (the stand-in names each call), ZeRO-1 on', () => {
    for (const r of [0, 1]) {
      expect(ranksOut).toContain(`fake-nccl rank ${r}: ncclCommInitRank`);
      expect(ranksOut).toContain(`fake-nccl rank ${r}: ncclReduceScatter`);
      expect(ranksOut).toContain(`fake-nccl rank ${r}: ncclAllGather`);
    }
    expect(ranksOut).toContain('fake-nccl rank 0: ncclGetUniqueId');
    expect(ranksOut).toMatch(/ranks: 2 .*ZeRO-1 on/);
  });

  test('losses agree with 1 process accumulating the 2 micro-batches: step 1 bitwise, then within 1e-5 relative', () => {
    const a = metrics(ranks);
    const b = metrics(one);
    expect(a).toHaveLength(STEPS);
    expect(b).toHaveLength(STEPS);
    // Step 1's loss comes before any update: the same micro-batches through the same kernels.
    expect(a[0].loss).toBe(b[0].loss);
    // The global norm is summed slice by slice (ZeRO-1), a different order of additions than one process.
    expect(rel(a[0].grad_norm, b[0].grad_norm)).toBeLessThan(1e-5);
    for (let i = 0; i < STEPS; i++) expect(rel(a[i].loss, b[i].loss)).toBeLessThan(1e-5);
    // The updates did something: the loss moved.
    expect(a[STEPS - 1].loss).not.toBe(a[0].loss);
  });

  test("a failed NCCL call ends the job, naming the rank, the call and NCCL's message", () => {
    const t = Date.now();
    const r = mpirun(2, ['train', ...RECIPE, '--zero', '1', '--out', tmpDir('gpu-fail')], 120000, { ...env, GPT_FAKE_NCCL_FAIL: 'ncclAllGather:1' });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/rank 1: .*NCCL on rank 1: ncclAllGather failed: invalid argument \(fake NCCL\) \(NCCL error 4\)/);
    expect(Date.now() - t).toBeLessThan(60000);
  });

  test('3 ranks (unequal ZeRO-1 slices, padded for NCCL) agree with 1 process accumulating 3 micro-batches within 1e-5', () => {
    const a = metrics(ranks3);
    const b = metrics(one3);
    expect(a).toHaveLength(STEPS);
    expect(a[0].loss).toBe(b[0].loss);
    // Three gradients are summed in another order than one process adds them: not bit for bit after step 1.
    for (let i = 0; i < STEPS; i++) {
      expect(rel(a[i].loss, b[i].loss)).toBeLessThan(1e-5);
      expect(rel(a[i].grad_norm, b[i].grad_norm)).toBeLessThan(1e-5);
    }
  });
});
