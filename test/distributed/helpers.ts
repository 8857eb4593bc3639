/**
 * Running the built CLI (dist/, `npm run build`) as ranks under mpirun, for
 * the data-parallel tests (jest project "dist", present only where mpirun and
 * the MPI plugin exist).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export const root = path.join(__dirname, '..', '..');
export const cli = path.join(root, 'dist', 'bin', 'gpt-engine.js');
export const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

/** A small, quick recipe: the tiny preset on the built-in corpus, no samples, 1 thread per rank. */
export const QUICK = ['--preset', 'tiny', '--batch', '4', '--seq', '64', '--sample-tokens', '0', '--eval-every', '1000', '--threads', '1'];

export interface Ran {
  status: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

function env(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return { ...process.env, OMPI_MCA_rmaps_base_oversubscribe: '1', ...extra };
}

/** mpirun -np n node cli ...args */
export function mpirun(n: number, args: string[], timeoutMs = 120000, extraEnv: NodeJS.ProcessEnv = {}): Ran {
  const t = Date.now();
  const r = spawnSync(
    'mpirun',
    [...(isRoot ? ['--allow-run-as-root'] : []), '--bind-to', 'none', '--mca', 'btl', 'self,vader', '-np', String(n), process.execPath, cli, ...args],
    { encoding: 'utf8', timeout: timeoutMs, env: env(extraEnv) },
  );
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - t };
}

/** node cli ...args (one process) */
export function single(args: string[], timeoutMs = 120000, extraEnv: NodeJS.ProcessEnv = {}): Ran {
  const t = Date.now();
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: timeoutMs, env: env(extraEnv) });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - t };
}

const made: string[] = [];

/** A fresh folder under the system's temporary folder, removed by removeTmpDirs(). */
export function tmpDir(tag: string): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), `gpt-dist-${tag}-`));
  made.push(d);
  return d;
}

/** Removes every folder tmpDir() made (each test file's afterAll). */
export function removeTmpDirs(): void {
  for (const d of made.splice(0)) fs.rmSync(d, { recursive: true, force: true });
}

export interface Line {
  step: number;
  loss: number;
  grad_norm: number;
}

export function metrics(runDir: string): Line[] {
  return fs
    .readFileSync(path.join(runDir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Line);
}

/** The bytes of a checkpoint's files (weights, optimizer state, training state). */
export function checkpointBytes(dir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const f of fs.readdirSync(dir).sort()) {
    if (f === 'state.json') {
      // elapsed seconds differ between runs; everything else must not
      const s = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
      delete s.trainer.elapsed_s;
      out.set(f, Buffer.from(JSON.stringify(s)));
    } else out.set(f, fs.readFileSync(path.join(dir, f)));
  }
  return out;
}

export function expectOk(r: Ran): void {
  if (r.status !== 0) throw new Error(`exit ${r.status}\n--- stderr ---\n${r.stderr.slice(-4000)}`);
}
