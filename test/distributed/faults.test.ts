/**
 * Faults and bad input of data-parallel runs (docs/DISTRIBUTED.md "When a
 * rank fails"): a killed rank ends the job quickly, naming it; Ctrl-C on
 * train --nproc stops cleanly after a checkpoint; bad input is refused
 * before training; the MPI plugin and NCCL loaders say what is missing.
 */
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { cli, expectOk, metrics, mpirun, QUICK, root, single, removeTmpDirs, tmpDir } from './helpers';

afterAll(removeTmpDirs);

function start(args: string[], env: NodeJS.ProcessEnv = process.env): { child: ChildProcess; err: () => string; done: Promise<number | null> } {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  child.stdout!.resume();
  const done = new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
  return { child, err: () => err, done };
}

async function until(cond: () => boolean, ms: number): Promise<void> {
  const t = Date.now();
  while (!cond()) {
    if (Date.now() - t > ms) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Every descendant pid of `pid` (from /proc). */
function descendants(pid: number): number[] {
  const kids = new Map<number, number[]>();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      kids.set(ppid, [...(kids.get(ppid) ?? []), Number(d)]);
    } catch {
      /* gone */
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const k of kids.get(p) ?? []) {
      out.push(k);
      walk(k);
    }
  };
  walk(pid);
  return out;
}

function rankOf(pid: number): number | null {
  try {
    const env = fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
    const v = env.find((e) => e.startsWith('OMPI_COMM_WORLD_RANK='));
    return v ? Number(v.split('=')[1]) : null;
  } catch {
    return null;
  }
}

const alive = (pid: number) => fs.existsSync(`/proc/${pid}`) && !/\) Z /.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));

describe('faults', () => {
  test('killing one rank ends the job within 10 s naming the rank, leaves no process, and the run resumes', async () => {
    const out = tmpDir('kill');
    const run = start(['train', '--nproc', '2', ...QUICK, '--steps', '2000', '--checkpoint-every', '3', '--out', out]);
    await until(() => fs.existsSync(path.join(out, 'checkpoints', 'step-3')) && /step 1\//.test(run.err()), 60000);
    const pids = descendants(run.child.pid!);
    const victim = pids.find((p) => rankOf(p) === 1);
    expect(victim).toBeDefined();
    const t = Date.now();
    process.kill(victim!, 'SIGKILL');
    const code = await run.done;
    const seconds = (Date.now() - t) / 1000;
    expect(code).not.toBe(0);
    expect(seconds).toBeLessThan(10);
    const lines = run.err().trim().split('\n');
    expect(lines[lines.length - 1]).toMatch(/rank 1: it was killed by signal 9/);
    await until(() => pids.every((p) => !alive(p)), 5000);
    const resumed = mpirun(2, ['train', '--resume', out, '--steps', '2000', '--stop-after', '2', '--threads', '1']);
    expectOk(resumed);
    expect(resumed.stderr).toMatch(/resuming from .*step-\d+/);
  }, 120000);

  test('SIGINT to train --nproc 2 exits 0 after a complete checkpoint', async () => {
    const out = tmpDir('sigint');
    const run = start(['train', '--nproc', '2', ...QUICK, '--steps', '2000', '--out', out]);
    await until(() => /step 1\//.test(run.err()), 60000);
    run.child.kill('SIGINT');
    expect(await run.done).toBe(0);
    const last = metrics(out).at(-1)!.step;
    expect(fs.existsSync(path.join(out, 'checkpoints', `step-${last}`, 'optimizer.safetensors'))).toBe(true);
    expect(run.err()).toMatch(/interrupted at step/);
  }, 120000);

  test('a rank that throws ends the job with its rank and cause', () => {
    // Rank 1 reads a --config that rank 0 does not have: different command lines per rank (MPMD).
    const bad = path.join(tmpDir('cfg'), 'missing.json');
    const r = spawnSync(
      'mpirun',
      [...(process.getuid?.() === 0 ? ['--allow-run-as-root'] : []), '--bind-to', 'none', '-np', '1', process.execPath, cli, 'train', ...QUICK, '--steps', '5', '--out', tmpDir('mpmd'), ':', '-np', '1', process.execPath, cli, 'train', ...QUICK, '--steps', '5', '--config', bad],
      { encoding: 'utf8', timeout: 60000 },
    );
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/gpt-engine: rank 1: error: Cannot read --config .*missing\.json/);
  });
});

describe('bad input is refused before training', () => {
  test('--nproc 0', () => {
    const r = single(['train', '--nproc', '0', ...QUICK]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/--nproc.*0/);
  });

  test('--nproc without mpirun on the PATH says what to install', () => {
    const r = spawnSync(process.execPath, [cli, 'train', '--nproc', '2', ...QUICK, '--steps', '2'], { encoding: 'utf8', env: { ...process.env, PATH: '/nonexistent' } });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/Expected Open MPI's mpirun on the PATH for --nproc 2 but found none: install it \(Debian\/Ubuntu: apt-get install openmpi-bin libopenmpi-dev\)/);
  });

  test('gpt-engine info says whether this build can run distributed', () => {
    const r = single(['info']);
    expect(r.stdout).toMatch(/^mpi: +Open MPI v\d+\.\d+/m);
    expect(r.stdout).toMatch(/^nccl: +/m);
  });

  test('--nproc larger than the data allows', () => {
    const r = single(['train', '--nproc', '3', '--preset', 'tiny', '--batch', '2000', '--seq', '256', '--steps', '2', '--out', tmpDir('big')]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/Expected at most 2 ranks for the training split/);
  });

  test('--batch-tokens that is not a multiple of ranks x batch x seq names the values that work', () => {
    const r = mpirun(2, ['train', ...QUICK, '--steps', '2', '--batch-tokens', '256', '--out', tmpDir('bt')]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/ranks x batch x seq = 2 x 4 x 64 = 512 for batch_tokens but received 256: with 2 ranks use --batch-tokens 512, 1024, 2048/);
  });

  test('different configurations across ranks', () => {
    const out = tmpDir('mix');
    const r = spawnSync(
      'mpirun',
      [...(process.getuid?.() === 0 ? ['--allow-run-as-root'] : []), '--bind-to', 'none', '-np', '1', process.execPath, cli, 'train', ...QUICK, '--steps', '5', '--out', out, ':', '-np', '1', process.execPath, cli, 'train', ...QUICK, '--steps', '5', '--lr', '0.001', '--out', out],
      { encoding: 'utf8', timeout: 60000 },
    );
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/Expected the same configuration on every rank but rank 1 differs from rank 0/);
    expect(fs.existsSync(path.join(out, 'metrics.jsonl'))).toBe(false);
  });

  test('--device cuda on 2 ranks without libnccl', () => {
    const r = mpirun(2, ['train', ...QUICK, '--steps', '2', '--device', 'cuda', '--out', tmpDir('cuda')]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/Expected NCCL for --device cuda on 2 ranks but it cannot be loaded: libnccl.so.2 was not found/);
  });
});

describe('loaders', () => {
  test('an addon without the MPI plugin says this build has no MPI and how to get it', () => {
    const dir = tmpDir('noplugin');
    // The addon under test (the one jest.config.js found the plugin beside), alone in a folder.
    const addon = process.env.GPT_ENGINE_ADDON ? path.resolve(process.env.GPT_ENGINE_ADDON) : path.join(root, 'build', 'Release', 'gpt_engine.node');
    fs.copyFileSync(addon, path.join(dir, 'gpt_engine.node'));
    const env = { ...process.env, GPT_ENGINE_ADDON: path.join(dir, 'gpt_engine.node') };
    const n = spawnSync(process.execPath, [cli, 'train', '--nproc', '2', ...QUICK, '--steps', '2'], { encoding: 'utf8', env });
    expect(n.status).toBe(1);
    expect(n.stderr).toMatch(/this build of gpt-engine has no MPI .*install Open MPI \(Debian\/Ubuntu: apt-get install openmpi-bin libopenmpi-dev\) and rebuild/);
  });

  // A stand-in libnccl.so.2, built here from a few lines of C: the loader's checks, not NCCL itself.
  function fakeNccl(tag: string, version: number, omit = ''): string {
    const dir = tmpDir(`nccl-${tag}`);
    const fns = ['ncclGetUniqueId', 'ncclCommInitRank', 'ncclAllReduce', 'ncclReduceScatter', 'ncclAllGather', 'ncclGroupStart', 'ncclGroupEnd', 'ncclCommDestroy'].filter((f) => f !== omit);
    const src = [
      `int ncclGetVersion(int* v) { *v = ${version}; return 0; }`,
      'const char* ncclGetErrorString(int r) { return "fake"; }',
      ...fns.map((f) => `int ${f}(void) { return 0; }`),
    ].join('\n');
    fs.writeFileSync(path.join(dir, 'fake.c'), src);
    const cc = spawnSync('cc', ['-shared', '-fPIC', '-o', path.join(dir, 'libnccl.so.2'), path.join(dir, 'fake.c')], { encoding: 'utf8' });
    if (cc.status !== 0) throw new Error(cc.stderr);
    return dir;
  }

  function ncclInfo(env: NodeJS.ProcessEnv): { available: boolean; version: number | null; reason: string | null } {
    const code = `process.stdout.write(JSON.stringify(require(${JSON.stringify(path.join(root, 'dist', 'lib', 'distributed', 'native.js'))}).distNative().ncclInfo()))`;
    const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8', env: { ...process.env, ...env } });
    if (r.status !== 0) throw new Error(r.stderr);
    return JSON.parse(r.stdout);
  }

  test('NCCL: found on the library path or through GPT_ENGINE_NCCL, its version checked, a missing function named', () => {
    const good = fakeNccl('good', 21805);
    const old = fakeNccl('old', 20903);
    const partial = fakeNccl('partial', 21805, 'ncclAllGather');
    expect(ncclInfo({ LD_LIBRARY_PATH: good })).toMatchObject({ available: true, version: 21805, reason: null });
    const o = ncclInfo({ LD_LIBRARY_PATH: old });
    expect(o.available).toBe(false);
    expect(o.reason).toMatch(/is NCCL 2\.9\.3; gpt-engine needs NCCL 2\.10 or newer/);
    expect(ncclInfo({ LD_LIBRARY_PATH: partial }).reason).toMatch(/lacks ncclAllGather/);
    const viaEnv = ncclInfo({ GPT_ENGINE_NCCL: path.join(good, 'libnccl.so.2') });
    // Where a real libnccl.so.2 is installed it is found first; here there is none.
    if (!fs.existsSync('/usr/lib/x86_64-linux-gnu/libnccl.so.2')) expect(viaEnv).toMatchObject({ available: true, version: 21805 });
    const none = ncclInfo({ GPT_ENGINE_NCCL: path.join(good, 'missing.so') });
    if (!none.available) expect(none.reason).toMatch(/libnccl.so.2 was not found .*GPT_ENGINE_NCCL/);
  });
});
