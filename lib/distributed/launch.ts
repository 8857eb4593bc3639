/**
 * `gpt-engine train --nproc N`: runs the same command again as N ranks under
 * Open MPI's mpirun (docs/DISTRIBUTED.md). mpirun is started in its own
 * process group so a Ctrl-C in the terminal reaches only the CLI, which
 * aborts `stop` (and, a second time, `kill`): stop becomes SIGUSR1 for mpirun
 * to forward, so the ranks finish the step, write a checkpoint and exit 0;
 * kill ends the job at once.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ArgumentRangeError } from '../errors';
import { distCall } from './native';

/** The mpirun on the PATH, or null. */
export function findMpirun(env: NodeJS.ProcessEnv = process.env): string | null {
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const f = path.join(dir, 'mpirun');
    try {
      fs.accessSync(f, fs.constants.X_OK);
      return f;
    } catch {
      /* next */
    }
  }
  return null;
}

/** argv without `--nproc N` / `--nproc=N`. */
export function withoutNproc(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--nproc') {
      i++;
      continue;
    }
    if (argv[i].startsWith('--nproc=')) continue;
    out.push(argv[i]);
  }
  return out;
}

/** mpirun's arguments for n ranks of `command` on this machine. */
export function mpirunArgs(n: number, command: readonly string[], o: { root: boolean }): string[] {
  return [
    ...(o.root ? ['--allow-run-as-root'] : []),
    // Each rank's thread pool uses its share of the cores (not one core each).
    '--bind-to',
    'none',
    // One machine: shared memory between the ranks, and no more ranks than
    // cores is no reason to refuse.
    '--oversubscribe',
    '--mca',
    'pml',
    'ob1',
    '--mca',
    'btl',
    'self,vader',
    '-np',
    String(n),
    ...command,
  ];
}

/** The rank and cause mpirun reported for a failed job, from its stderr. */
export function failedRank(stderr: string): { rank: number; cause: string } | null {
  const ours = /gpt-engine: rank (\d+): (?:error: )?([^\n]*)/.exec(stderr);
  if (ours) return { rank: Number(ours[1]), cause: ours[2] };
  const sig = /process rank (\d+) with PID \d+ on node \S+ exited on signal (\d+) \(([^)]*)\)/.exec(stderr);
  if (sig) return { rank: Number(sig[1]), cause: `it was killed by signal ${sig[2]} (${sig[3]})` };
  const exit = /process rank (\d+) with PID \d+ on node \S+ exited with status (\d+)|rank (\d+) in communicator MPI_COMM_WORLD/.exec(stderr);
  if (exit) return { rank: Number(exit[1] ?? exit[3]), cause: exit[2] ? `it exited with status ${exit[2]}` : 'it called MPI_Abort' };
  return null;
}

/**
 * Runs `argv` (this command line without --nproc) as n ranks under mpirun and
 * resolves with the exit code to leave with. Errors before launching (no
 * mpirun, no MPI in this build) throw.
 */
export async function runUnderMpirun(
  n: number,
  argv: readonly string[],
  o: { log: (s: string) => void; stop?: AbortSignal; kill?: AbortSignal },
): Promise<number> {
  const log = o.log;
  const mpirun = findMpirun();
  if (!mpirun)
    throw new ArgumentRangeError(
      `Expected Open MPI's mpirun on the PATH for --nproc ${n} but found none: install it (Debian/Ubuntu: apt-get install openmpi-bin libopenmpi-dev), rebuild gpt-engine (npm rebuild gpt-engine) and try again, or run without --nproc`,
    );
  const info = distCall((x) => x.mpiInfo());
  if (!info.available) throw new ArgumentRangeError(`Cannot run --nproc ${n}: ${info.reason}`);
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  const command = [process.execPath, ...process.execArgv, ...argv];
  const child = spawn(mpirun, mpirunArgs(n, command, { root }), { stdio: ['ignore', 'inherit', 'pipe'], detached: true });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    process.stderr.write(d);
    stderr += d.toString();
    if (stderr.length > 1 << 20) stderr = stderr.slice(-(1 << 19));
  });
  let killed = false;
  const onStop = () => child.kill('SIGUSR1');
  const onKill = () => {
    killed = true;
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      /* already gone */
    }
  };
  o.stop?.addEventListener('abort', onStop, { once: true });
  o.kill?.addEventListener('abort', onKill, { once: true });
  try {
    const code = await new Promise<number>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (c, s) => resolve(c ?? (s ? 128 : 1)));
    });
    if (code !== 0) {
      const f = failedRank(stderr);
      log(
        f
          ? `gpt-engine: error: the ${n}-rank run failed: rank ${f.rank}: ${f.cause}`
          : `gpt-engine: error: the ${n}-rank run failed (mpirun exited with ${code})`,
      );
      return killed ? 130 : code;
    }
    return 0;
  } finally {
    o.stop?.removeEventListener('abort', onStop);
    o.kill?.removeEventListener('abort', onKill);
  }
}
