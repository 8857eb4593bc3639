/**
 * The worker threads that tokenize for `prepare`: up to `size` workers,
 * started as work arrives, each unit posted to the least busy one. Results
 * come back in any order through `onResult`; the caller puts them in order
 * and bounds how many units are out (lib/data/assemble.ts).
 */
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { TokenizerName } from '../tokenizer';

export interface UnitResult {
  tokens: Uint16Array | Uint32Array;
  /** tokens per chunk of the unit, in order */
  lengths: Uint32Array;
}

interface Slot {
  worker: Worker;
  busy: number;
}

export class TokenizerPool {
  private slots: Slot[] = [];
  private waiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private failure: Error | null = null;
  private closing = false;

  constructor(
    private readonly tokenizer: TokenizerName,
    readonly size: number,
    private readonly onResult: (id: number, r: UnitResult) => void,
  ) {}

  /** Workers started so far. */
  get started(): number {
    return this.slots.length;
  }

  post(id: number, texts: string[]): void {
    if (this.failure) throw this.failure;
    let slot = this.slots.reduce<Slot | undefined>((a, s) => (!a || s.busy < a.busy ? s : a), undefined);
    if (!slot || (slot.busy > 0 && this.slots.length < this.size)) slot = this.spawn();
    slot.busy++;
    slot.worker.postMessage({ id, texts });
  }

  /** Resolves when the next result has been handled; rejects when a worker failed. */
  next(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
    this.slots = [];
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const x of w) this.failure ? x.reject(this.failure) : x.resolve();
  }

  private fail(e: Error): void {
    if (!this.failure) this.failure = e;
    this.wake();
  }

  private spawn(): Slot {
    const slot: Slot = { worker: startWorker(this.tokenizer), busy: 0 };
    slot.worker.on('message', (m: { id: number; tokens?: Uint16Array | Uint32Array; lengths?: Uint32Array; error?: string }) => {
      slot.busy--;
      try {
        if (m.error !== undefined) throw new Error(`A tokenizer worker failed: ${m.error}`);
        this.onResult(m.id, { tokens: m.tokens!, lengths: m.lengths! });
      } catch (e) {
        this.fail(e instanceof Error ? e : new Error(String(e)));
        return;
      }
      this.wake();
    });
    slot.worker.on('error', (e) => this.fail(e instanceof Error ? e : new Error(String(e))));
    slot.worker.on('exit', (code) => {
      if (!this.closing) this.fail(new Error(`A tokenizer worker stopped (exit code ${code}) before prepare finished`));
    });
    this.slots.push(slot);
    return slot;
  }
}

// Run from the compiled library, the worker is prepare-worker.js beside this
// file. Run from the TypeScript sources (the test runner), it is compiled here
// once, with the files it imports, and loaded from memory in the worker.
const TS_BOOT = `
const { workerData } = require('node:worker_threads');
require('node:module')._extensions['.ts'] = (m, f) => m._compile(workerData.sources[f], f);
require(workerData.entry);
`;
let tsCompiled: Record<string, string> | null = null;

function startWorker(tokenizer: TokenizerName): Worker {
  const js = path.join(__dirname, 'prepare-worker.js');
  if (fs.existsSync(js)) return new Worker(js, { workerData: { tokenizer } });
  const entry = path.join(__dirname, 'prepare-worker.ts');
  return new Worker(TS_BOOT, { eval: true, workerData: { tokenizer, entry, sources: compileTs(entry) } });
}

function compileTs(entry: string): Record<string, string> {
  if (tsCompiled) return tsCompiled;
  const ts = createRequire(__filename)('typescript') as typeof import('typescript');
  const out: Record<string, string> = {};
  const todo = [entry];
  while (todo.length) {
    const file = todo.pop()!;
    if (out[file] !== undefined) continue;
    const src = fs.readFileSync(file, 'utf8');
    const js = ts.transpileModule(src, {
      fileName: file,
      compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
    }).outputText;
    out[file] = js;
    for (const m of js.matchAll(/require\("(\.{1,2}\/[^"]+)"\)/g)) {
      const base = path.resolve(path.dirname(file), m[1]);
      todo.push(fs.existsSync(`${base}.ts`) ? `${base}.ts` : path.join(base, 'index.ts'));
    }
  }
  return (tsCompiled = out);
}
