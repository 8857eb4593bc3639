/**
 * Helpers for tests that run gpt-engine in another process or thread: the
 * compiled package (dist/, made by `npm run build`; CI builds before testing)
 * and a child-process runner that reports how the child ended.
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export const ROOT = path.resolve(__dirname, '..', '..');
export const CLI = path.join(ROOT, 'dist', 'bin', 'gpt-engine.js');

/** Absolute path of a compiled file; fails with the fix when dist/ is missing or older than its source. */
export function distFile(rel: string): string {
  const js = path.join(ROOT, 'dist', rel);
  if (!fs.existsSync(js)) throw new Error(`${js} is missing: run \`npm run build\` (or \`npx tsc -p .\`) before these tests`);
  const src = path.join(ROOT, rel.replace(/\.js$/, '.ts'));
  if (fs.existsSync(src) && fs.statSync(src).mtimeMs > fs.statSync(js).mtimeMs + 1000)
    throw new Error(`${js} is older than ${src}: run \`npm run build\` (or \`npx tsc -p .\`) before these tests`);
  return js;
}

export interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

export interface Spawned {
  child: ChildProcess;
  done: Promise<ChildResult>;
  /** stderr so far */
  stderr(): string;
}

/** Starts `node args...`; `done` resolves however it ends (never rejects). */
export function spawnNode(args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Spawned {
  const t0 = Date.now();
  const child = spawn(process.execPath, args, {
    cwd: opts.cwd ?? ROOT,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const timer = opts.timeoutMs ? setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs) : null;
  const done = new Promise<ChildResult>((resolve) => {
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({ code, signal, stdout: out, stderr: err, ms: Date.now() - t0 });
    });
  });
  return { child, done, stderr: () => err };
}

export function runNode(args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<ChildResult> {
  return spawnNode(args, opts).done;
}

/** One line for assertion messages. */
export function describeExit(r: ChildResult): string {
  return `exit ${r.code} signal ${r.signal} after ${r.ms} ms\n--- stderr ---\n${r.stderr.slice(-3000)}\n--- stdout ---\n${r.stdout.slice(-2000)}`;
}
