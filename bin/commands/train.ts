/**
 * `gpt-engine train`: the Trainer behind flags. Settings come from the
 * preset, then --config FILE, then flags. SIGINT/SIGTERM: the first finishes
 * the running step, writes a checkpoint and exits 0 naming it; a second exits
 * at once (130). A non-finite loss exits 1 naming the step and the last good
 * checkpoint.
 */
import { Command } from 'commander';
import * as fs from 'node:fs';
import { GPTConfig, PRESET_NAMES } from '../../lib/config';
import { ArgumentRangeError, BadFileError } from '../../lib/errors';
import { EvalInfo, parseTrainConfigFile, StepInfo, Trainer, TrainerOptions, TrainResult, TrainSettings } from '../../lib/trainer';
import { TokenizerName } from '../../lib/tokenizer';
import { runUnderMpirun, withoutNproc } from '../../lib/distributed/launch';
import { abortWorld, finalizeWorld, launchedByMpi, mpiWorld, World } from '../../lib/distributed/world';
import { intFlag, log, numberFlag, printJson } from '../cli-util';

type Opts = Record<string, string | boolean | undefined>;

function readConfigFile(file: string): ReturnType<typeof parseTrainConfigFile> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new BadFileError(`Cannot read --config ${file}: ${(e as Error).message}`);
  }
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (e) {
    throw new BadFileError(`--config ${file} is not valid JSON: ${(e as Error).message}`);
  }
  return parseTrainConfigFile(obj, file);
}

/** Flags to TrainerOptions (preset, then config file, then flags). Exported for tests. */
export function trainerOptionsFromFlags(opts: Opts): TrainerOptions {
  const file = typeof opts.config === 'string' ? readConfigFile(opts.config) : undefined;
  const settings: Partial<TrainSettings> = { ...(file?.settings ?? {}) };
  const ints: [string, keyof TrainSettings, number][] = [
    ['steps', 'steps', 1],
    ['batch', 'batch', 1],
    ['seq', 'seq', 1],
    ['batch-tokens', 'batch_tokens', 1],
    ['warmup', 'warmup', 0],
    ['seed', 'seed', 0],
    ['eval-every', 'eval_every', 1],
    ['checkpoint-every', 'checkpoint_every', 1],
    ['keep', 'keep', 1],
    ['sample-tokens', 'sample_tokens', 0],
  ];
  for (const [flag, key, min] of ints) {
    const camel = flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    const v = intFlag(flag, opts[camel] as string | undefined, min);
    if (v !== undefined) (settings as Record<string, unknown>)[key] = v;
  }
  const lr = numberFlag('lr', opts.lr as string | undefined, { gt: 0 });
  if (lr !== undefined) settings.lr = lr;
  if (opts.device !== undefined) {
    if (!['auto', 'cpu', 'cuda'].includes(opts.device as string))
      throw new ArgumentRangeError(`Expected one of auto, cpu, cuda for --device but received "${opts.device}"`);
    settings.device = opts.device as string;
  }
  if (opts.precision !== undefined) {
    if (!['fp32', 'bf16'].includes(opts.precision as string))
      throw new ArgumentRangeError(`Expected one of fp32, bf16 for --precision but received "${opts.precision}"`);
    settings.precision = opts.precision as string;
  }
  if (opts.docMask === true) settings.doc_mask = true;
  let tokenizer: TokenizerName | undefined = file?.tokenizer;
  if (opts.tokenizer !== undefined) {
    if (!['gpt2', 'byte'].includes(opts.tokenizer as string))
      throw new ArgumentRangeError(`Expected one of gpt2, byte for --tokenizer but received "${opts.tokenizer}"`);
    tokenizer = opts.tokenizer as TokenizerName;
  }
  const preset = (opts.preset as string | undefined) ?? file?.preset;
  if (preset !== undefined && !PRESET_NAMES.includes(preset)) {
    // Let the Trainer produce the message with its did-you-mean hint.
  }
  const out: TrainerOptions = {
    ...(preset !== undefined ? { preset } : {}),
    ...(file && Object.keys(file.model).length ? { model: file.model as Partial<GPTConfig> } : {}),
    settings,
    ...((opts.data as string | undefined) ?? file?.data ? { data: (opts.data as string | undefined) ?? file?.data } : {}),
    ...(tokenizer ? { tokenizer } : {}),
    ...(opts.out !== undefined ? { out: opts.out as string } : {}),
    ...(opts.resume !== undefined ? { resume: opts.resume as string } : {}),
    ...(opts.initFrom !== undefined ? { initFrom: opts.initFrom as string } : {}),
  };
  const stopAfter = intFlag('stop-after', opts.stopAfter as string | undefined);
  if (stopAfter !== undefined) out.stopAfter = stopAfter;
  const threads = intFlag('threads', opts.threads as string | undefined, 1, 1024);
  if (threads !== undefined) out.threads = threads;
  if (opts.zero !== undefined) {
    if (opts.zero !== '0' && opts.zero !== '1') throw new ArgumentRangeError(`Expected 0 or 1 for --zero but received "${opts.zero}"`);
    out.zero = opts.zero === '1';
  }
  // MFU needs the device's peak; there is no cheap way to know it, so the user may say it.
  const peak = process.env.GPT_ENGINE_PEAK_TFLOPS;
  if (peak !== undefined && peak !== '') {
    const p = Number(peak);
    if (!(p > 0 && Number.isFinite(p))) throw new ArgumentRangeError(`Expected a number > 0 for GPT_ENGINE_PEAK_TFLOPS but received "${peak}"`);
    out.peakFlops = p * 1e12;
  }
  if (out.resume !== undefined && (opts.preset !== undefined || opts.config !== undefined))
    throw new ArgumentRangeError('Expected no --preset or --config with --resume: a resumed run keeps its model and recipe (flags such as --steps, --stop-after, --eval-every may change)');
  return out;
}

function fmtTime(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '?';
  const m = Math.floor(s / 60);
  const r = Math.round(s % 60);
  return m > 0 ? `${m}m${String(r).padStart(2, '0')}s` : `${r}s`;
}

export function register(program: Command): void {
  program
    .command('train')
    .description('Train a GPT (default: the tiny preset on the built-in Moby-Dick corpus, on the CPU in a few minutes)')
    .option('--preset <name>', `model preset: ${PRESET_NAMES.join(', ')} (default tiny)`)
    .option('--config <file>', 'JSON file with model keys (n_layer, ...) and training keys (steps, lr, ...); flags override it')
    .option('--data <dir>', 'prepared data folder (gpt-engine prepare); default: the built-in corpus')
    .option('--tokenizer <name>', 'tokenizer of the built-in corpus: byte (default) or gpt2')
    .option('--out <dir>', 'run folder (default ./runs/<YYYYMMDD-HHMMSS>)')
    .option('--steps <n>', 'total optimizer steps, the horizon of the LR schedule (default 1600)')
    .option('--stop-after <n>', 'end this invocation after n more steps, with a checkpoint')
    .option('--batch <n>', 'sequences per micro-batch (default 8)')
    .option('--seq <n>', 'tokens per sequence (default: the model context; shorter leaves positions untrained)')
    .option('--batch-tokens <n>', 'tokens per optimizer step; a multiple of batch*seq (gradient accumulation)')
    .option('--lr <x>', 'peak learning rate (default: by preset, GPT-3 table)')
    .option('--warmup <n>', 'linear warmup steps (default 5% of --steps)')
    .option('--seed <n>', 'seed of the weights and the batch sampler (default 1337)')
    .option('--device <d>', 'auto, cpu or cuda (default auto)')
    .option('--precision <p>', 'fp32 or bf16 (default: fp32 on the CPU, bf16 on CUDA)')
    .option('--doc-mask', 'keep attention within documents (never across an end-of-text token; needs the gpt2 tokenizer)')
    .option('--threads <n>', 'CPU threads (default: all cores)')
    .option('--eval-every <n>', 'validation loss and a sample every n steps (default 100)')
    .option('--checkpoint-every <n>', 'checkpoint every n steps (default 200)')
    .option('--keep <n>', 'checkpoints kept (default 3)')
    .option('--sample-tokens <n>', 'tokens per text sample, 0 for none (default 200)')
    .option('--resume <dir>', 'continue a run folder (its newest complete checkpoint) or a checkpoint folder')
    .option('--init-from <dir>', 'start from the weights of a checkpoint or Hugging Face GPT-2 folder (fine-tuning; fresh optimizer)')
    .option('--nproc <n>', 'data parallel: run n ranks on this machine under Open MPI (mpirun), docs/DISTRIBUTED.md')
    .option('--zero <0|1>', 'ZeRO-1 across ranks: each keeps 1/n of the optimizer state (default 1 with several ranks)')
    .option('--json', 'one JSON summary on stdout at the end')
    .action(async (opts: Opts) => {
      const nproc = intFlag('nproc', opts.nproc as string | undefined, 1, 4096);
      if (nproc !== undefined && !launchedByMpi()) {
        trainerOptionsFromFlags(opts); // bad flags fail here, before any rank starts
        // Ctrl-C: the ranks stop after a checkpoint; a second one ends them now.
        const stop = new AbortController();
        const kill = new AbortController();
        const onSignal = (sig: NodeJS.Signals) => {
          if (!stop.signal.aborted) {
            log(`\n${sig}: asking the ${nproc} ranks to finish the step and write a checkpoint (press Ctrl-C again to end them now)`);
            stop.abort();
          } else {
            log(`${sig} again: ending the ranks without a checkpoint`);
            kill.abort();
          }
        };
        process.on('SIGINT', onSignal);
        process.on('SIGTERM', onSignal);
        try {
          process.exitCode = await runUnderMpirun(nproc, withoutNproc(process.argv.slice(1)), { log, stop: stop.signal, kill: kill.signal });
        } finally {
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
        }
        return;
      }
      // Started by mpirun: this process is one rank (rank 0 alone prints).
      const world: World | null = launchedByMpi() ? mpiWorld() : null;
      try {
        await trainAction(opts, world);
      } catch (e) {
        if (world && world.size > 1) {
          log(`gpt-engine: rank ${world.rank}: error: ${(e as Error).message ?? String(e)}`);
          abortWorld(1); // ends every rank; mpirun names this one
        }
        throw e;
      } finally {
        finalizeWorld();
      }
    });
}

async function trainAction(opts: Opts, world: World | null): Promise<void> {
  const lead = !world || world.rank === 0;
  const json = opts.json === true;
  const options = trainerOptionsFromFlags(opts);
  if (world && world.size > 1) options.world = world;
  const tty = process.stderr.isTTY === true;
  const ac = new AbortController();
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    signals++;
    if (signals === 1) {
      ac.abort();
      log(`\n${sig}: finishing the current step, then writing a checkpoint (press Ctrl-C again to exit now)`);
    } else {
      log(`${sig} again: exiting without a checkpoint`);
      process.exit(130);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // mpirun forwards SIGUSR1 (train --nproc turns Ctrl-C into it).
  if (world) process.on('SIGUSR1', onSignal);
  let barShown = false;
  const clearBar = () => {
    if (barShown) process.stderr.write('\r\x1b[K');
    barShown = false;
  };
  const logLine = (s: string) => {
    clearBar();
    log(s);
  };
  let lastPlain = 0;
  const onStep = (s: StepInfo) => {
    const eta = ((s.totalSteps - s.step) * s.msPerStep) / 1000;
    const text = `step ${s.step}/${s.totalSteps}  loss ${s.loss.toFixed(4)}  lr ${s.lr.toExponential(2)}  |g| ${s.gradNorm.toFixed(3)}  ${Math.round(s.tokensPerSecond)} tok/s  ${s.msPerStep} ms/step${s.mfu !== null ? `  MFU ${(100 * s.mfu).toFixed(1)}%` : ''}  eta ${fmtTime(eta)}`;
    if (tty) {
      const width = 24;
      const done = Math.round((width * s.step) / s.totalSteps);
      process.stderr.write(`\r\x1b[K[${'#'.repeat(done)}${'.'.repeat(width - done)}] ${text}`);
      barShown = true;
    } else if (s.step === 1 || Date.now() - lastPlain > 5000 || s.step === s.totalSteps) {
      lastPlain = Date.now();
      log(text);
    }
  };
  const onEval = (e: EvalInfo) => {
    logLine(`step ${e.step}: val loss ${e.valLoss.toFixed(4)}  perplexity ${e.valPerplexity.toFixed(2)}`);
    if (e.sample !== undefined) logLine(`--- sample ---\n${e.sample}\n--------------`);
  };
  let result: TrainResult;
  try {
    result = await new Trainer({ ...options, log: logLine }).run({
      signal: ac.signal,
      onStep,
      onEval,
      onCheckpoint: (c) => logLine(`checkpoint: ${c.dir}`),
    });
  } finally {
    clearBar();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('SIGUSR1', onSignal);
  }
  if (!lead) return;
  const r = result;
  const summary = {
    run_dir: r.runDir,
    checkpoint: r.checkpoint,
    step: r.step,
    total_steps: r.totalSteps,
    steps_this_run: r.stepsThisRun,
    finished: r.finished,
    interrupted: r.interrupted,
    final_loss: r.finalLoss,
    val_loss: r.valLoss,
    val_perplexity: r.valPerplexity,
    unigram_entropy: r.unigramEntropy,
    below_unigram: r.valLoss === null ? null : r.unigramEntropy - r.valLoss,
    tokenizer: r.tokenizer,
    seconds: r.seconds,
    tokens_per_s: r.tokensPerSecond,
    sample: r.sample,
    losses: r.losses,
    config: r.config,
    files: { metrics: `${r.runDir}/metrics.jsonl`, config: `${r.runDir}/train.json`, plot: `${r.runDir}/loss.svg` },
  };
  if (r.interrupted) log(`interrupted at step ${r.step}; checkpoint written to ${r.checkpoint}\nresume with: gpt-engine train --resume ${r.runDir}`);
  else if (!r.finished) log(`stopped after step ${r.step} of ${r.totalSteps}; checkpoint ${r.checkpoint}\nresume with: gpt-engine train --resume ${r.runDir}`);
  if (r.valLoss !== null)
    log(
      `validation loss ${r.valLoss.toFixed(4)} nats/token (perplexity ${r.valPerplexity!.toFixed(2)}); unigram entropy of the corpus ${r.unigramEntropy.toFixed(4)} nats/token (${Math.abs(r.unigramEntropy - r.valLoss).toFixed(3)} ${r.valLoss <= r.unigramEntropy ? 'below' : 'above'})`,
    );
  log(`${r.stepsThisRun} steps in ${fmtTime(r.seconds)} (${Math.round(r.tokensPerSecond)} tokens/s)`);
  log(`run folder: ${r.runDir}\nmetrics: ${r.runDir}/metrics.jsonl\ncheckpoint: ${r.checkpoint}`);
  if (fs.existsSync(`${r.runDir}/loss.svg`)) log(`loss plot: ${r.runDir}/loss.svg`);
  if (r.checkpoint) log(`generate with: gpt-engine generate --checkpoint ${r.checkpoint}`);
  if (json) printJson(summary);
}
