/**
 * A prepared data folder: train.bin and val.bin (token files) and meta.json
 * (what went in: tokenizer, documents and tokens per source, what was
 * skipped, the unigram entropy the trainer compares losses with).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BadFileError } from '../errors';
import type { TokenizerName } from '../tokenizer';
import { TokenFile } from './tokenfile';

/** How an input file is read: by its name (.jsonl or .ndjson, and .gz for gzip). */
export type InputFormat = 'text' | 'text.gz' | 'jsonl' | 'jsonl.gz';

/** Kinds of bad input that --skip-bad counts. */
export type BadInputKind = 'invalid_utf8' | 'malformed_json' | 'missing_field' | 'not_string' | 'empty';
export const BAD_INPUT_KINDS: readonly BadInputKind[] = ['invalid_utf8', 'malformed_json', 'missing_field', 'not_string', 'empty'];

export interface SourceMeta {
  path: string;
  format: InputFormat;
  /** size on disk */
  bytes: number;
  documents: number;
  /** tokens in train.bin and val.bin from this source, each separator counted with the document it precedes */
  tokens: number;
  /** records (or, for a text file, the whole file) skipped with skipBad */
  skipped: number;
}

export type SkippedMeta = Record<BadInputKind, number> & {
  total: number;
  /** the first few, as FILE:LINE: reason */
  examples: string[];
};

export interface DataMeta {
  format: 'gpt-engine-data';
  /** 2: sources with counts, skipped, tokens (1: sources were paths) */
  version: number;
  tokenizer: TokenizerName;
  vocab_size: number;
  bytes_per_token: number;
  val_fraction: number;
  documents: number;
  /** train_tokens + val_tokens */
  tokens: number;
  /** input size on disk */
  bytes: number;
  train_tokens: number;
  val_tokens: number;
  /** entropy (nats per token) of the corpus's unigram distribution, train and val together */
  unigram_entropy: number;
  /** the JSON field read from JSON Lines sources, when there are any */
  text_field?: string;
  skipped: SkippedMeta;
  sources: SourceMeta[];
  /** version 1 only */
  sources_truncated?: number;
  /** version 1 only */
  created?: string;
}

export interface Dataset {
  dir: string;
  tokenizer: TokenizerName;
  vocabSize: number;
  train: TokenFile;
  val: TokenFile;
  meta: DataMeta | null;
  close(): void;
}

/** Opens a prepared folder (train.bin, val.bin, meta.json). */
export function openDataset(dir: string): Dataset {
  if (!fs.existsSync(dir)) throw new BadFileError(`Missing data folder ${dir} (prepare one with gpt-engine prepare <files> --out ${dir})`);
  if (!fs.statSync(dir).isDirectory()) throw new BadFileError(`Expected a data folder (train.bin, val.bin, meta.json) for --data but ${dir} is a file`);
  const train = TokenFile.open(path.join(dir, 'train.bin'));
  let val: TokenFile;
  try {
    val = TokenFile.open(path.join(dir, 'val.bin'));
  } catch (e) {
    train.close();
    throw e;
  }
  const close = () => {
    train.close();
    val.close();
  };
  if (train.header.tokenizer !== val.header.tokenizer) {
    close();
    throw new BadFileError(`${dir}: train.bin uses the ${train.header.tokenizer} tokenizer but val.bin uses ${val.header.tokenizer}`);
  }
  let meta: DataMeta | null = null;
  const metaPath = path.join(dir, 'meta.json');
  if (fs.existsSync(metaPath)) {
    try {
      meta = JSON.parse(fs.readFileSync(metaPath, 'utf8')) as DataMeta;
    } catch (e) {
      close();
      throw new BadFileError(`${metaPath} is not valid JSON: ${(e as Error).message}`);
    }
    if (meta.tokenizer !== train.header.tokenizer) {
      close();
      throw new BadFileError(`${metaPath} says tokenizer ${JSON.stringify(meta.tokenizer)} but train.bin was written with ${train.header.tokenizer}`);
    }
  }
  return { dir, tokenizer: train.header.tokenizer, vocabSize: train.header.vocabSize, train, val, meta, close };
}

/** Entropy in nats of the unigram distribution given by counts. */
export function entropyOfCounts(counts: ArrayLike<number>): number {
  let total = 0;
  for (let i = 0; i < counts.length; i++) total += counts[i];
  if (!total) return 0;
  let h = 0;
  for (let i = 0; i < counts.length; i++) {
    const c = counts[i];
    if (c > 0) {
      const p = c / total;
      h -= p * Math.log(p);
    }
  }
  return h;
}

/** The unigram entropy of a dataset: from meta.json, or counted (streaming) when absent. */
export function unigramEntropy(ds: Dataset): number {
  if (ds.meta && typeof ds.meta.unigram_entropy === 'number') return ds.meta.unigram_entropy;
  const counts = new Float64Array(ds.vocabSize);
  const chunk = 1 << 20;
  for (const f of [ds.train, ds.val]) {
    for (let s = 0; s < f.count; s += chunk) {
      const part = f.read(s, Math.min(chunk, f.count - s));
      for (let i = 0; i < part.length; i++) counts[part[i]]++;
    }
  }
  return entropyOfCounts(counts);
}

