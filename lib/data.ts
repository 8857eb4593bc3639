/**
 * Token data, one module per job under lib/data/:
 *   tokenfile.ts  the token file format: header, reader, writer
 *   dataset.ts    a prepared folder (train.bin, val.bin, meta.json)
 *   prepare.ts    inputs to a prepared folder (two passes, worker threads),
 *                 with inputs.ts (text, JSON Lines, gzip, bad input),
 *                 segment.ts (safe cut points, the validation split),
 *                 assemble.ts (ordered writing), pool.ts and prepare-worker.ts
 *   glob.ts       files, folders and globs to a file list
 *   corpus.ts     the cache folder and the built-in corpus
 *   batches.ts    training and evaluation batches
 * This file gathers what the rest of the library uses.
 */
export {
  TOKEN_MAGIC,
  TOKEN_FORMAT_VERSION,
  TOKEN_HEADER_BYTES,
  CACHE_WHOLE_BYTES,
  bytesPerTokenFor,
  encodeHeader,
  parseHeader,
  TokenFileWriter,
  writeTokenFile,
  TokenFile,
} from './data/tokenfile';
export type { TokenHeader } from './data/tokenfile';
export { openDataset, entropyOfCounts, unigramEntropy, BAD_INPUT_KINDS } from './data/dataset';
export type { DataMeta, Dataset, SourceMeta, SkippedMeta, InputFormat, BadInputKind } from './data/dataset';
export { prepare, prepareSync, defaultWorkers } from './data/prepare';
export type { PrepareOptions, PrepareProgress, PrepareResult, PrepareThroughput } from './data/prepare';
export { expandInputs } from './data/glob';
export { cacheDir, mobyDickPath, defaultCorpus } from './data/corpus';
export { BatchSampler, evalBatches } from './data/batches';
export type { SamplerState } from './data/batches';
