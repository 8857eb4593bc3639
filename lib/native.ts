/**
 * Finds and loads the native addon. Looks (in order) at $GPT_ENGINE_ADDON,
 * then build/Release/gpt_engine.node and build/gpt_engine.node under the
 * package root, found by walking up from this file (it runs from lib/ under
 * ts-jest and from dist/lib/ once compiled). On failure it throws one message:
 * what was tried, the platform, and the command that fixes it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Functions every build exports (native/addon/addon.cc lists them all). */
export interface CoreNative {
  getThreads(): number;
  setThreads(n: number): void;
  getIsa(): string;
  setIsa(isa: string): void;
  supportedIsas(): string[];
  hasAvx512Bf16(): boolean;
  cudaCompiled(): boolean;
  cudaInfo(): {
    compiled: boolean;
    available: boolean;
    reason: string;
    name: string;
    totalMemory: number;
    computeCapability: string;
    driverVersion: number;
    runtimeVersion: number;
    deviceCount: number;
    /** True in a GPT_ENGINE_CUDA_EMU build: "cuda" is the SIMT emulator on the CPU. */
    emulated?: boolean;
  };
  probeFmaPeak(opts: { bf16?: boolean; seconds?: number; repeats?: number }): Promise<{
    gflops: number;
    seconds: number;
    threads: number;
    supported: boolean;
  }>;
  probeBandwidth(opts: { bytes?: number; repeats?: number }): Promise<{ gbps: number; bytes: number; threads: number }>;
  /**
   * Bytes a model of `config` holds (Model::plan_memory, native/core/model.cc:
   * the layout code the model allocates with), with the activations for
   * batch x seq rows (0 without them), and the CUDA backend's training scratch
   * for that shape (0 in a build without CUDA); Infinity for a figure too
   * large to count.
   */
  memoryLayout(o: {
    config: { n_layer: number; n_head: number; n_embd: number; n_positions: number; vocab_size: number };
    batch?: number;
    seq?: number;
    /** the activations' storage type (default fp32; bf16: CUDA in bf16, params then include the bf16 weight copy) */
    storage?: 'fp32' | 'bf16';
  }): { params: number; grads: number; optimizer: number; activations: number; scratch: number };
  nativeVersion: string;
}

let cached: unknown;

/** The package root: the nearest folder above this file with our package.json. */
export function packageRoot(): string {
  let dir = __dirname;
  for (;;) {
    const pj = path.join(dir, 'package.json');
    if (fs.existsSync(pj)) {
      try {
        if (JSON.parse(fs.readFileSync(pj, 'utf8')).name === 'gpt-engine') return dir;
      } catch {
        /* keep walking */
      }
    }
    const up = path.dirname(dir);
    if (up === dir) return path.resolve(__dirname, '..');
    dir = up;
  }
}

export function addonCandidates(): string[] {
  const root = packageRoot();
  const out: string[] = [];
  if (process.env.GPT_ENGINE_ADDON) out.push(path.resolve(process.env.GPT_ENGINE_ADDON));
  out.push(path.join(root, 'build', 'Release', 'gpt_engine.node'), path.join(root, 'build', 'gpt_engine.node'));
  return out;
}

/** Loads the addon once; `T` is the caller's typed view of its exports. */
export function loadAddon<T = CoreNative>(): T & CoreNative {
  if (cached) return cached as T & CoreNative;
  // An addon named by GPT_ENGINE_ADDON is the one asked for: when it is
  // missing or does not load, say so instead of quietly loading another build.
  const wanted = process.env.GPT_ENGINE_ADDON;
  if (wanted) {
    const file = path.resolve(wanted);
    let why = 'not found';
    if (fs.existsSync(file)) {
      try {
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        cached = require(file);
        return cached as T & CoreNative;
      } catch (e) {
        why = (e as Error).message.split('\n')[0];
      }
    }
    throw new Error(
      `gpt-engine: could not load the native addon that GPT_ENGINE_ADDON names: ${file} (${why}).\n` +
        `Fix: point GPT_ENGINE_ADDON at a built gpt_engine.node, or unset it to use this package's own build.`,
    );
  }
  const tried: string[] = [];
  for (const file of addonCandidates()) {
    if (!fs.existsSync(file)) {
      tried.push(`${file} (not found)`);
      continue;
    }
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      cached = require(file);
      return cached as T & CoreNative;
    } catch (e) {
      tried.push(`${file} (${(e as Error).message.split('\n')[0]})`);
    }
  }
  throw new Error(
    `gpt-engine: could not load the native addon.\n` +
      `Tried:\n  ${tried.join('\n  ')}\n` +
      `Platform: ${process.platform}-${process.arch}, Node ${process.version} (Node-API ${process.versions.napi}).\n` +
      `Fix: rebuild it with \`npm rebuild gpt-engine\` (in this package's own folder: \`npm run build:native\`, ` +
      `or \`npm run build:gyp\` without CMake). It needs CMake >= 3.24 and a C++17 compiler.`,
  );
}
