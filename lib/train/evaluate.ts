/**
 * Evaluation: the mean loss of a model over fixed windows of a data split,
 * used by the training loop's periodic evaluation and by `gpt-engine eval`
 * (evaluateCheckpoint). Evaluation never touches gradients or the training
 * sampler.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { TokenizerName } from '../config';
import { defaultCorpus, evalBatches, openDataset, unigramEntropy } from '../data';
import { ArgumentRangeError, NonFiniteError } from '../errors';
import { setThreads } from '../runtime';
import { expectInteger, expectObject, expectOneOf, expectString } from '../validate';
import { trainedSeq } from '../checkpoint-json';
import { defaultBackend, ModelBackend, TrainModel } from './backend';

/** The mean loss over `batches` (each window weighted equally), in order. */
export async function meanLoss(
  model: TrainModel,
  batches: readonly { tokens: Int32Array; targets: Int32Array; batch: number }[],
  seq: number,
  docEot?: number,
): Promise<{ loss: number; windows: number }> {
  let sum = 0;
  let windows = 0;
  for (const b of batches) {
    const l = await model.loss(b.tokens, b.targets, { batch: b.batch, seq, ...(docEot === undefined ? {} : { docEot }) });
    sum += l * b.batch;
    windows += b.batch;
  }
  return { loss: sum / windows, windows };
}

export interface EvaluateOptions {
  /** a checkpoint, run or Hugging Face GPT-2 folder */
  checkpoint: string;
  /** a prepared data folder; default: the data the checkpoint was trained on, else the built-in corpus */
  data?: string;
  split?: 'val' | 'train';
  batch?: number;
  /** default: min(context, 256), or the training seq of the checkpoint */
  seq?: number;
  /** evaluation windows, spread evenly over the split (default 512) */
  maxWindows?: number;
  device?: string;
  precision?: string;
  threads?: number;
  backend?: ModelBackend;
  log?: (line: string) => void;
}

export interface EvaluateResult {
  checkpoint: string;
  data: string;
  split: 'val' | 'train';
  tokenizer: TokenizerName;
  loss: number;
  perplexity: number;
  tokens: number;
  windows: number;
  seq: number;
  unigramEntropy: number;
  seconds: number;
}

/** Mean loss and perplexity of a checkpoint over a data split. */
export async function evaluateCheckpoint(o: EvaluateOptions): Promise<EvaluateResult> {
  expectObject('options', o);
  expectString('checkpoint', o.checkpoint, { nonEmpty: true });
  const split = o.split === undefined ? 'val' : expectOneOf('split', o.split, ['val', 'train'] as const);
  if (o.threads !== undefined) setThreads(expectInteger('threads', o.threads, { min: 1, max: 1024 }));
  const t0 = Date.now();
  const backend = o.backend ?? defaultBackend();
  const loaded = await backend.load(o.checkpoint, { optimizer: false, device: o.device ?? 'auto', precision: o.precision });
  try {
    const model = loaded.model;
    const trainData = (loaded.state?.data as { dir?: string } | undefined)?.dir;
    const trainSeq = trainedSeq(loaded.state);
    const tokenizer: TokenizerName = loaded.tokenizer ?? (model.config.vocab_size === 256 ? 'byte' : 'gpt2');
    let dataDir = o.data;
    if (dataDir === undefined) {
      if (trainData && fs.existsSync(trainData)) dataDir = trainData;
      else dataDir = defaultCorpus(tokenizer, { log: o.log });
    }
    const ds = openDataset(dataDir);
    try {
      if (ds.tokenizer !== tokenizer)
        throw new ArgumentRangeError(`The checkpoint ${loaded.dir} uses the ${tokenizer} tokenizer but the data in ${dataDir} uses ${ds.tokenizer}`);
      if (ds.vocabSize !== model.config.vocab_size)
        throw new ArgumentRangeError(`The model's vocab_size is ${model.config.vocab_size} but the data in ${dataDir} has a vocabulary of ${ds.vocabSize}`);
      const seq = o.seq !== undefined ? expectInteger('seq', o.seq, { min: 1, max: model.config.n_positions }) : Math.min(trainSeq ?? 256, model.config.n_positions);
      const batch = o.batch !== undefined ? expectInteger('batch', o.batch, { min: 1 }) : 8;
      const maxWindows = o.maxWindows !== undefined ? expectInteger('maxWindows', o.maxWindows, { min: 1 }) : 512;
      const file = split === 'val' ? ds.val : ds.train;
      const { loss, windows } = await meanLoss(model, evalBatches(file, { batch, seq, maxWindows }), seq);
      if (!Number.isFinite(loss)) throw new NonFiniteError(`The loss of ${loaded.dir} on ${dataDir} is ${loss}: the weights are not finite`);
      return {
        checkpoint: loaded.dir,
        data: path.resolve(dataDir),
        split,
        tokenizer,
        loss,
        perplexity: Math.exp(loss),
        tokens: windows * seq,
        windows,
        seq,
        unigramEntropy: unigramEntropy(ds),
        seconds: (Date.now() - t0) / 1000,
      };
    } finally {
      ds.close();
    }
  } finally {
    await loaded.model.dispose();
  }
}
