/**
 * Runs the PyTorch twins in bench/pytorch/ (same shapes, same FLOP counts:
 * the harness passes each case's FLOPs from lib/flops.ts, the twin only
 * times). A twin reads one JSON document on stdin and prints one on stdout.
 * The interpreter: $GPT_ENGINE_PYTHON, else the first of python3 on PATH and
 * /usr/bin/python3 that imports torch. Without one, every PyTorch column
 * says "not measured" and why; figures are never taken from elsewhere.
 */
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { packageRoot } from '../native';
import { PytorchInfo } from './types';

export interface PytorchRunner {
  python: string;
  torchVersion: string;
  blas: string;
  threads: number;
  /** runs bench/pytorch/<name>.py with `input`; resolves its JSON document */
  run(name: 'attention' | 'gemm' | 'train' | 'generate', input: Record<string, unknown>, timeoutMs: number): Promise<unknown>;
}

export function twinsDir(): string {
  return path.join(packageRoot(), 'bench', 'pytorch');
}

function probe(python: string): { version: string; blas: string } | string {
  try {
    const out = execFileSync(
      python,
      [
        '-c',
        'import json, os, re, torch\n' +
          'm = re.search(r"BLAS_INFO=([^,\\s]+)", torch.__config__.show())\n' +
          'blas = m.group(1) if m else "unknown"\n' +
          '# Debian builds against the generic libblas: name the library the alternatives system points at\n' +
          'lib = "/usr/lib/x86_64-linux-gnu/libblas.so.3"\n' +
          'if blas == "generic" and os.path.exists(lib): blas += " -> " + os.path.realpath(lib)\n' +
          'print(json.dumps({"version": torch.__version__, "blas": blas}))',
      ],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60000 },
    );
    const j = JSON.parse(out.trim().split('\n').pop() as string) as { version: string; blas: string };
    return j;
  } catch (e) {
    const msg = String((e as { stderr?: string }).stderr || (e as Error).message || e).trim().split('\n').pop();
    return msg || 'failed';
  }
}

/** Finds a python with torch, or says why there is none. */
export function findPytorch(threads: number): { runner: PytorchRunner } | { reason: string } {
  const tried: string[] = [];
  const candidates = process.env.GPT_ENGINE_PYTHON ? [process.env.GPT_ENGINE_PYTHON] : ['python3', '/usr/bin/python3'];
  if (!fs.existsSync(path.join(twinsDir(), 'common.py')))
    return { reason: `the PyTorch twins are not in this installation (${twinsDir()} is missing)` };
  for (const py of candidates) {
    const r = probe(py);
    if (typeof r === 'string') {
      tried.push(`${py}: ${r}`);
      continue;
    }
    return { runner: makeRunner(py, r.version, r.blas, threads) };
  }
  return {
    reason:
      `no python3 with torch found (${tried.join('; ')}); install one (Debian: apt-get install python3-torch) ` +
      `or set GPT_ENGINE_PYTHON`,
  };
}

function makeRunner(python: string, torchVersion: string, blas: string, threads: number): PytorchRunner {
  return {
    python,
    torchVersion,
    blas,
    threads,
    run(name, input, timeoutMs) {
      const script = path.join(twinsDir(), `${name}.py`);
      return new Promise((resolve, reject) => {
        const child = spawn(python, [script], {
          stdio: ['pipe', 'pipe', 'pipe'],
          env: { ...process.env, OMP_NUM_THREADS: String(threads), PYTHONUNBUFFERED: '1' },
        });
        let out = '';
        let err = '';
        const timer = setTimeout(() => {
          child.kill('SIGKILL');
          reject(new Error(`PyTorch twin ${name}.py ran past ${Math.round(timeoutMs / 1000)} s and was stopped`));
        }, timeoutMs);
        child.stdout.on('data', (d) => (out += d));
        child.stderr.on('data', (d) => (err += d));
        child.on('error', (e) => {
          clearTimeout(timer);
          reject(e);
        });
        child.on('close', (code, signal) => {
          clearTimeout(timer);
          if (code !== 0) {
            const tail = err.trim().split('\n').slice(-3).join(' | ');
            reject(new Error(`PyTorch twin ${name}.py exited with ${code ?? signal}: ${tail}`));
            return;
          }
          try {
            resolve(JSON.parse(out));
          } catch {
            reject(new Error(`PyTorch twin ${name}.py did not print one JSON document: ${out.slice(0, 200)}`));
          }
        });
        child.stdin.end(JSON.stringify({ ...input, threads }));
      });
    },
  };
}

export function pytorchInfo(requested: boolean, found: { runner: PytorchRunner } | { reason: string } | null): PytorchInfo {
  if (!requested) return { requested: false, measured: false, reason: 'not requested (--with-pytorch)' };
  if (!found || 'reason' in found) return { requested: true, measured: false, reason: found && 'reason' in found ? found.reason : 'unknown' };
  const r = found.runner;
  return { requested: true, measured: true, python: r.python, torchVersion: r.torchVersion, threads: r.threads, blas: r.blas };
}
