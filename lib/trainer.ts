/**
 * The training loop: GPT-3's recipe (lib/train/settings.ts) over random
 * windows of a prepared data folder, with gradient accumulation, periodic
 * evaluation and samples, metrics.jsonl, atomic checkpoints (the last K
 * kept), exact resume (lib/train/resume.ts) and fine-tuning.
 *
 * The trainer never exits the process and never installs signal handlers:
 * the CLI turns SIGINT/SIGTERM into an AbortSignal; the trainer finishes the
 * running step, writes a checkpoint and returns with `interrupted: true`.
 *
 * The trainer's public names (settings, backend, evaluation, option and
 * result types) are re-exported here from lib/train/.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CONFIG_KEYS, GPTConfig, getPreset, mergeConfig, presetConfig, validateConfig, assertBuildable } from './config';
import { BatchSampler, Dataset, defaultCorpus, evalBatches, openDataset, unigramEntropy } from './data';
import { ArgumentRangeError, BadFileError, NonFiniteError } from './errors';
import { trainingFlopsPerToken } from './flops';
import { writeJsonAtomicSync } from './fsutil';
import { writeLossPlot } from './plot';
import { CHECKPOINTS_DIR, checkpointDirName, defaultRunDir, METRICS_FILE, pruneCheckpoints, TRAIN_FILE, updateLatest } from './run-folder';
import { setThreads } from './runtime';
import { lrAt, makeSchedule } from './schedule';
import { getTokenizer, TOKENIZER_NAMES } from './tokenizer';
import { checkKnownKeys, describe, expectInteger, expectObject, expectOneOf } from './validate';
import { defaultBackend, LoadedModel, ModelBackend, TrainModel } from './train/backend';
import { meanLoss } from './train/evaluate';
import { MetricsLog, stepLine } from './train/metrics';
import { readResumeState, resolveResume, ResumeState, trainingState } from './train/resume';
import { resolveSettings, validateSetting } from './train/settings';
import { checkDistRun, describeRanks, distBatchTokens, leadFirst } from './train/dist';
import { checkSameConfig, threadsPerRank, World } from './distributed/world';
import type { GPT } from './model';
import { EffectiveConfig, RunHooks, StepInfo, TRAINER_OPTION_KEYS, TrainerOptions, TrainResult } from './train/types';

export { CONFIG_FILE_EXTRA_KEYS, DEFAULT_STEPS, TRAIN_KEYS, defaultSettings, parseTrainConfigFile, validateSetting } from './train/settings';
export type { TrainSettings } from './train/settings';
export { defaultBackend } from './train/backend';
export type { LoadedModel, ModelBackend, TrainModel } from './train/backend';
export { evaluateCheckpoint } from './train/evaluate';
export type { EvaluateOptions, EvaluateResult } from './train/evaluate';
export type { CheckpointInfo, EffectiveConfig, EvalInfo, RunHooks, StepInfo, TrainerOptions, TrainResult } from './train/types';

export class Trainer {
  private readonly opts: TrainerOptions;
  private readonly log: (line: string) => void;

  constructor(opts: TrainerOptions = {}) {
    expectObject('options', opts);
    checkKnownKeys('trainer options', opts as Record<string, unknown>, TRAINER_OPTION_KEYS);
    if (opts.resume !== undefined && opts.initFrom !== undefined)
      throw new ArgumentRangeError(`Expected either resume or initFrom but received both (${JSON.stringify(opts.resume)} and ${JSON.stringify(opts.initFrom)})`);
    if (opts.stopAfter !== undefined) expectInteger('stopAfter', opts.stopAfter, { min: 1 });
    if (opts.threads !== undefined) expectInteger('threads', opts.threads, { min: 1, max: 1024 });
    if (opts.preset !== undefined) getPreset(opts.preset);
    if (opts.model !== undefined) checkKnownKeys('model', expectObject('model', opts.model), CONFIG_KEYS);
    if (opts.settings !== undefined) {
      for (const [k, v] of Object.entries(expectObject('settings', opts.settings))) if (v !== undefined) validateSetting(k, v, 'settings');
    }
    if (opts.tokenizer !== undefined) expectOneOf('tokenizer', opts.tokenizer, TOKENIZER_NAMES);
    if (opts.zero !== undefined && typeof opts.zero !== 'boolean') throw new ArgumentRangeError(`Expected a boolean for zero but received ${describe(opts.zero)}`);
    this.opts = opts;
    // Ranks other than 0 stay silent (lib/train/dist.ts).
    this.log = opts.world && opts.world.rank > 0 ? () => undefined : opts.log ?? (() => undefined);
  }

  /** The ranks of a data-parallel run, null for one process. */
  private dist(): World | null {
    return this.opts.world && this.opts.world.size > 1 ? this.opts.world : null;
  }

  async run(hooks: RunHooks = {}): Promise<TrainResult> {
    const o = this.opts;
    const backend = o.backend ?? defaultBackend();
    const t0 = Date.now();
    if (o.threads !== undefined) setThreads(o.threads);
    else if (this.dist()) setThreads(threadsPerRank(this.dist()!.localSize));

    // -- where the model and state come from --------------------------------
    let loaded: LoadedModel | null = null;
    let runDir: string;
    let resumedFrom: string | null = null;
    let prevState: ResumeState | null = null;
    if (o.resume !== undefined) {
      const { checkpointDir, runDir: rd } = await resolveResume(o.resume, o.out);
      loaded = await backend.load(checkpointDir, { optimizer: true, device: o.settings?.device ?? 'auto', precision: o.settings?.precision ?? undefined });
      if (!loaded.state) {
        await loaded.model.dispose();
        throw new BadFileError(`${checkpointDir} has no state.json: it holds weights only, so it cannot be resumed; use --init-from to fine-tune from it`);
      }
      prevState = readResumeState(loaded.state, checkpointDir);
      resumedFrom = loaded.dir;
      runDir = rd;
    } else {
      runDir = o.out !== undefined ? path.resolve(o.out) : defaultRunDir();
      // Every rank writes (rank 0) or names the same folder: rank 0's clock decides.
      const w = this.dist();
      if (w && o.out === undefined) runDir = w.broadcastText(runDir);
      if (fs.existsSync(path.join(runDir, CHECKPOINTS_DIR)) || fs.existsSync(path.join(runDir, METRICS_FILE)))
        throw new ArgumentRangeError(`The run folder ${runDir} already holds a run; resume it with --resume ${runDir} or choose another --out`);
    }

    try {
      // -- configuration ------------------------------------------------------
      const preset = prevState ? prevState.preset : o.preset ?? (o.initFrom ? null : 'tiny');
      if (o.initFrom !== undefined && o.preset !== undefined)
        throw new ArgumentRangeError(`Expected either --preset or --init-from but received both (the model's shape comes from ${o.initFrom})`);
      // Data first: its tokenizer fixes the vocabulary.
      const corpus = () => defaultCorpus(o.tokenizer ?? 'byte', { log: this.log });
      const w = this.dist();
      const dataDir = prevState?.data ?? o.data ?? (w ? leadFirst(w, corpus) : corpus());
      if (prevState && o.data !== undefined && path.resolve(o.data) !== path.resolve(prevState.data))
        this.log(`note: resuming on ${o.data} instead of ${prevState.data}`);
      if (prevState && o.data === undefined && !fs.existsSync(prevState.data))
        throw new BadFileError(`The run was trained on ${prevState.data}, which is missing; pass --data with the same prepared data`);
      const ds = openDataset(o.data !== undefined ? o.data : dataDir);
      try {
        return await this.runWith(backend, hooks, { loaded, ds, runDir, preset, prevState, resumedFrom, t0 });
      } finally {
        ds.close();
      }
    } finally {
      if (loaded) await loaded.model.dispose();
    }
  }

  private async runWith(
    backend: ModelBackend,
    hooks: RunHooks,
    a: { loaded: LoadedModel | null; ds: Dataset; runDir: string; preset: string | null; prevState: ResumeState | null; resumedFrom: string | null; t0: number },
  ): Promise<TrainResult> {
    const o = this.opts;
    const { ds, runDir, prevState } = a;
    const tokenizer = ds.tokenizer;
    const tok = getTokenizer(tokenizer);

    // -- model config -------------------------------------------------------
    let model: TrainModel;
    let modelConfig: GPTConfig;
    let initFrom: string | null = null;
    let owned = false;
    if (a.loaded) {
      model = a.loaded.model;
      modelConfig = validateConfig(model.config);
      checkModelOverrides(modelConfig, o.model, 'the checkpoint');
    } else if (o.initFrom !== undefined) {
      const l = await backend.load(o.initFrom, { optimizer: false, device: o.settings?.device ?? 'auto', precision: o.settings?.precision ?? undefined });
      model = l.model;
      owned = true;
      modelConfig = validateConfig(model.config);
      initFrom = l.dir;
      try {
        checkModelOverrides(modelConfig, o.model, o.initFrom);
        if (l.tokenizer && l.tokenizer !== tokenizer)
          throw new ArgumentRangeError(`The checkpoint ${o.initFrom} uses the ${l.tokenizer} tokenizer but the data in ${ds.dir} uses ${tokenizer}; prepare the data with --tokenizer ${l.tokenizer}`);
      } catch (e) {
        await model.dispose();
        throw e;
      }
    } else {
      let base = presetConfig(a.preset ?? 'tiny');
      // A preset's vocabulary follows the data unless the config sets one.
      if (o.model?.vocab_size === undefined) base = { ...base, vocab_size: tok.vocabSize };
      modelConfig = mergeConfig(base, (o.model ?? {}) as Record<string, unknown>, 'model config');
      assertBuildable(modelConfig, a.preset ?? undefined);
      model = null as unknown as TrainModel; // created below, after settings validate
    }
    // Checks before training; a model loaded for --init-from is freed when one fails.
    const prep = await (async () => {
      try {
        if (modelConfig.vocab_size !== tok.vocabSize)
          throw new ArgumentRangeError(
            `The model's vocab_size is ${modelConfig.vocab_size} but the data in ${ds.dir} uses the ${tokenizer} tokenizer (vocabulary ${tok.vocabSize}); prepare the data with the model's tokenizer or set vocab_size ${tok.vocabSize}`,
          );

        // -- settings -----------------------------------------------------------
        const settings = resolveSettings(o.settings, a.preset, modelConfig, prevState?.settings ?? null);
        const world = this.dist();
        if (world) {
          if (settings.device === 'auto') settings.device = 'cpu'; // CPU ranks (lib/train/dist.ts)
          checkDistRun(settings, world.size, ds);
        }
        // Micro-batches per optimizer step on each rank.
        const accum = world
          ? distBatchTokens(settings, world.size, o.settings?.batch_tokens !== undefined || prevState !== null)
          : settings.batch_tokens / (settings.batch * settings.seq);
        const schedule = makeSchedule({ lr: settings.lr, warmup: settings.warmup, total: settings.steps, minRatio: settings.min_lr_ratio });
        const startStep = prevState?.step ?? 0;
        if (startStep >= settings.steps && prevState)
          throw new ArgumentRangeError(`The checkpoint is at step ${startStep}, already at the run's total of ${settings.steps} steps; pass a larger --steps to train further`);
        const endStep = Math.min(settings.steps, o.stopAfter !== undefined ? startStep + o.stopAfter : settings.steps);
        const sampler = new BatchSampler(ds.train, { batch: settings.batch, seq: settings.seq, seed: settings.seed });
        if (prevState) sampler.setState(prevState.sampler);
        const evalSet = evalBatches(ds.val, { batch: settings.batch, seq: settings.seq, maxWindows: settings.eval_windows });
        const entropy = unigramEntropy(ds);
        if (settings.doc_mask && tok.eot === null)
          throw new ArgumentRangeError(
            `Expected data with an end-of-text token for doc_mask but the data in ${ds.dir} uses the ${tokenizer} tokenizer, which has none (documents are simply concatenated); prepare it with --tokenizer gpt2`,
          );
        // The document mask: attention stops at the tokenizer's end-of-text token.
        const docMask: { docEot?: number } = settings.doc_mask ? { docEot: tok.eot as number } : {};
        return { settings, accum, schedule, startStep, endStep, sampler, evalSet, entropy, docMask };
      } catch (e) {
        if (owned) await model.dispose();
        throw e;
      }
    })();
    const { settings, accum, schedule, startStep, endStep, sampler, evalSet, entropy, docMask } = prep;
    const world = this.dist();
    const ranks = world ? world.size : 1;
    const lead = !world || world.rank === 0; // logs, evaluates, samples and writes files
    const zero = world ? o.zero ?? true : false;
    if (world) {
      try {
        checkSameConfig(world, { model: modelConfig, settings, preset: a.preset, data: path.resolve(ds.dir), resumed: a.resumedFrom, initFrom, zero, stopAfter: o.stopAfter ?? null });
      } catch (e) {
        if (owned) await model.dispose();
        throw e;
      }
    }

    if (!model) {
      model = await backend.create(modelConfig, { seed: settings.seed, device: settings.device, precision: settings.precision ?? undefined });
      owned = true;
    }
    try {
      if (world) world.attach(model as GPT, { zero });
      const effective: EffectiveConfig = {
        preset: a.preset,
        model: modelConfig,
        train: settings,
        accumulation: accum,
        tokenizer,
        data: path.resolve(ds.dir),
        init_from: initFrom,
        resumed_from: a.resumedFrom,
      };
      if (lead) {
        fs.mkdirSync(runDir, { recursive: true });
        writeJsonAtomicSync(path.join(runDir, TRAIN_FILE), effective);
      }
      this.log(`run folder: ${runDir}`);
      this.log(`effective config: ${JSON.stringify(effective)}`);
      if (backend.describeDevice) this.log(`device: ${backend.describeDevice(model)}`);
      if (world) this.log(describeRanks(world, zero, (model as GPT).memory(), accum));
      if (prevState) this.log(`resuming from ${a.resumedFrom} at step ${startStep} of ${settings.steps}`);
      if (initFrom) this.log(`fine-tuning from ${initFrom} (fresh optimizer)`);
      if (settings.seq < modelConfig.n_positions)
        this.log(
          `note: seq ${settings.seq} is shorter than the context (${modelConfig.n_positions}): positions ${settings.seq}..${modelConfig.n_positions - 1} are not trained, so samples and generations past ${settings.seq} tokens will degrade`,
        );
      const metrics = lead ? new MetricsLog(path.join(runDir, METRICS_FILE), startStep) : null;

      const flopsPerToken = trainingFlopsPerToken(modelConfig, settings.seq);
      const tokensPerStep = settings.batch_tokens;
      let tokensSeen = prevState?.tokensSeen ?? 0;
      let step = startStep;
      const losses: number[] = [];
      let lastCheckpoint: string | null = a.resumedFrom;
      let lastCheckpointStep = prevState ? startStep : -1;
      let valLoss: number | null = null;
      let sample: string | null = null;
      let interrupted = false;
      const runStart = Date.now();
      let trainMs = 0;

      const makeSample = async (atStep: number): Promise<string | null> => {
        if (!backend.sample || settings.sample_tokens === 0) return null;
        const prompt = tok.eot !== null ? Int32Array.of(tok.eot) : ds.val.read(0, Math.min(8, ds.val.count));
        try {
          const n = Math.min(settings.sample_tokens, modelConfig.n_positions - prompt.length);
          const out = await backend.sample(model, prompt, n, { temperature: 0.8, seed: settings.seed + atStep });
          const text = tok.decode(tok.eot !== null ? out : [...prompt, ...out]);
          return text;
        } catch (e) {
          this.log(`sample failed: ${(e as Error).message}`);
          return null;
        }
      };

      const checkpoint = async (): Promise<string> => {
        const name = checkpointDirName(step);
        const dir = path.join(runDir, CHECKPOINTS_DIR, name);
        const state = trainingState({
          step,
          settings,
          tokensSeen,
          sampler: sampler.getState(),
          schedule,
          ds,
          tokenizer,
          preset: a.preset,
          valLoss,
          elapsedSeconds: (Date.now() - a.t0) / 1000,
        });
        // ZeRO-1: the whole optimizer state on every rank while rank 0 writes it.
        if (world && zero) world.gatherOptimizer(model as GPT);
        try {
          if (lead) {
            await backend.save(model, dir, { tokenizer, state });
            await updateLatest(runDir, name);
            const deleted = await pruneCheckpoints(runDir, settings.keep);
            for (const d of deleted) this.log(`removed old checkpoint ${d}`);
          }
        } finally {
          if (world) {
            world.barrier();
            if (zero) world.shardOptimizer(model as GPT);
          }
        }
        lastCheckpoint = dir;
        lastCheckpointStep = step;
        if (lead) {
          hooks.onCheckpoint?.({ step, dir });
          await this.plot(runDir);
        }
        return dir;
      };

      try {
        while (step < endStep) {
          // Ranks stop together: they agree on the signal below, once per step.
          if (!world && hooks.signal?.aborted) {
            interrupted = true;
            break;
          }
          const s = step + 1;
          const lr = lrAt(schedule, s);
          const ts = Date.now();
          let lossSum = 0;
          // One process: the losses stay on the device and step() brings back
          // their mean with the gradient norm, so the step waits for the device
          // once (docs/GPU.md "Host syncs in a training step").
          const deferred = !world && model.defersLoss === true;
          const defer = deferred ? { deferLoss: true } : {};
          // One global draw of ranks x accum micro-batches; this rank trains on its accum of them.
          for (let i = 0; i < accum * ranks; i++) {
            const b = sampler.next();
            if (world && Math.floor(i / accum) !== world.rank) continue;
            lossSum += await model.forwardBackward(b.tokens, b.targets, { batch: settings.batch, seq: settings.seq, ...docMask }, defer);
          }
          let stopping = hooks.signal?.aborted === true;
          if (world) {
            const v = Float64Array.of(lossSum, stopping ? 1 : 0);
            world.allreduceSum(v);
            lossSum = v[0];
            stopping = v[1] > 0;
          }
          let loss = lossSum / (accum * ranks);
          // A loss that came back with the micro-batches is checked before the
          // update, a deferred one right after it: a NaN loss comes with a
          // gradient that is not finite, and step() refuses to update, but an
          // infinite loss with a finite gradient is applied before it stops
          // the run (the weights in memory, not any checkpoint).
          if (!deferred && !Number.isFinite(loss)) throw nonFinite(s, `the loss is ${loss}`, lastCheckpoint);
          let gradNorm: number;
          try {
            const r = await model.step({
              lr,
              beta1: settings.beta1,
              beta2: settings.beta2,
              eps: settings.eps,
              weightDecay: settings.weight_decay,
              gradClip: settings.grad_clip,
            });
            gradNorm = r.gradNorm;
            if (r.loss !== undefined) loss = r.loss;
          } catch (e) {
            if ((e as { code?: string }).code === 'NONFINITE') throw nonFinite(s, (e as Error).message, lastCheckpoint);
            throw e;
          }
          if (deferred && !Number.isFinite(loss)) throw nonFinite(s, `the loss is ${loss}`, lastCheckpoint);
          step = s;
          tokensSeen += tokensPerStep;
          const ms = Date.now() - ts;
          trainMs += ms;
          losses.push(loss);
          const tps = ms > 0 ? (tokensPerStep * 1000) / ms : 0;
          const mfu = o.peakFlops ? (tps * flopsPerToken) / o.peakFlops : null;
          const info: StepInfo = {
            step,
            totalSteps: settings.steps,
            loss,
            lr,
            gradNorm,
            tokensPerSecond: tps,
            msPerStep: ms,
            mfu,
            tokensSeen,
            elapsedSeconds: (Date.now() - runStart) / 1000,
          };
          const line = stepLine(info);
          // Time this step spent reducing across ranks (rank 0's), for bench train --nproc.
          if (world) line.comm_ms = Math.round(world.stats(model as GPT).commMs * 10) / 10;
          if (lead) hooks.onStep?.(info);
          const last = step === endStep;
          if (lead && (step % settings.eval_every === 0 || step === settings.steps || (last && o.stopAfter === undefined))) {
            valLoss = (await meanLoss(model, evalSet, settings.seq, docMask.docEot)).loss;
            line.val_loss = valLoss;
            line.val_perplexity = Math.exp(valLoss);
            sample = await makeSample(step);
            hooks.onEval?.({ step, valLoss, valPerplexity: Math.exp(valLoss), ...(sample !== null ? { sample } : {}) });
          }
          metrics?.write(line);
          if (!world) stopping = hooks.signal?.aborted === true;
          if (step % settings.checkpoint_every === 0 || last || stopping) await checkpoint();
          if (stopping && step < endStep) {
            interrupted = true;
            break;
          }
        }
        if (interrupted && lastCheckpointStep !== step) await checkpoint();
      } finally {
        metrics?.close();
      }
      if (lead) await this.plot(runDir);
      const seconds = (Date.now() - a.t0) / 1000;
      const stepsThisRun = step - startStep;
      return {
        runDir,
        checkpoint: lastCheckpoint,
        step,
        totalSteps: settings.steps,
        stepsThisRun,
        interrupted,
        finished: step >= settings.steps,
        losses,
        finalLoss: losses.length ? losses[losses.length - 1] : null,
        valLoss,
        valPerplexity: valLoss === null ? null : Math.exp(valLoss),
        unigramEntropy: entropy,
        tokenizer,
        sample,
        seconds,
        tokensPerSecond: trainMs > 0 ? (stepsThisRun * tokensPerStep * 1000) / trainMs : 0,
        config: effective,
      };
    } finally {
      if (owned) await model.dispose();
    }
  }

  /** Redraws <run>/loss.svg (unless the options say plot: false); a failure is logged, never fatal. */
  private async plot(runDir: string): Promise<void> {
    if (this.opts.plot === false) return;
    try {
      await writeLossPlot(runDir);
    } catch (e) {
      this.log(`loss plot not written: ${(e as Error).message}`);
    }
  }
}

function nonFinite(step: number, why: string, lastCheckpoint: string | null): NonFiniteError {
  return new NonFiniteError(
    `Training stopped at step ${step}: ${why}. ${lastCheckpoint ? `The last good checkpoint is ${lastCheckpoint}` : 'No checkpoint was written yet'}; try a lower --lr or more --warmup`,
  );
}

function checkModelOverrides(c: GPTConfig, overrides: Partial<GPTConfig> | undefined, source: string): void {
  if (!overrides) return;
  for (const [k, v] of Object.entries(overrides)) {
    if (v === undefined) continue;
    const have = (c as unknown as Record<string, unknown>)[k];
    if (JSON.stringify(have) !== JSON.stringify(v))
      throw new ArgumentRangeError(`Expected ${k} ${JSON.stringify(have)} (the model in ${source}) but received ${describe(v)}: the shape of a loaded model cannot change`);
  }
}
