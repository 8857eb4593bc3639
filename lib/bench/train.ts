/**
 * Train section: whole training steps (forward + backward +
 * AdamW) on random tokens; ms per step split into forward, backward and
 * optimizer where the model reports them; tokens/s; GFLOP/s by
 * lib/flops.ts trainingFlopsPerToken; MFU against the FMA peak of the
 * precision (and, for bf16, also against the fp32 peak).
 */
import { performance } from 'node:perf_hooks';
import { getPreset, presetConfig } from '../config';
import { trainingFlopsPerToken } from '../flops';
import { GPT } from '../model';
import { exactParameterCount } from '../params';
import { errorLine, SectionContext, twinSettings } from './context';
import { peakFor } from './machine';
import { fractionOf, perSecond, repeatAsync, statOf } from './stats';
import { BenchPrecision, Stat, TrainRow, TrainSection } from './types';

export interface TrainCase {
  preset: string;
  batch: number;
  seq: number;
}

export function trainPlan(quick: boolean, preset?: string, batch?: number, seq?: number): TrainCase[] {
  if (preset) {
    const c = presetConfig(preset);
    return [{ preset, batch: batch ?? 4, seq: seq ?? Math.min(256, c.n_positions) }];
  }
  if (quick) return [{ preset: 'tiny', batch: batch ?? 4, seq: seq ?? 64 }];
  const cases = [
    { preset: 'small', batch: 8, seq: 256 },
    { preset: 'gpt2', batch: 4, seq: 256 },
    { preset: 'gpt2', batch: 4, seq: 64 },
  ];
  return cases.map((c) => ({ ...c, batch: batch ?? c.batch, seq: seq ?? c.seq }));
}

export function finishTrainRow(r: TrainRow, ceilings: SectionContext['ceilings']): TrainRow {
  r.tokensPerSecond = perSecond(r.batch * r.seq, r.step);
  r.gflops = r.tokensPerSecond === null ? null : (r.tokensPerSecond * r.flopsPerToken) / 1e9;
  r.mfu = fractionOf(r.gflops, peakFor(ceilings, r.precision));
  r.mfuFp32 = fractionOf(r.gflops, ceilings.fp32.value);
  return r;
}

function blank(impl: TrainRow['impl'], c: TrainCase, precision: BenchPrecision): TrainRow {
  const cfg = presetConfig(c.preset);
  return {
    impl,
    preset: c.preset,
    precision,
    batch: c.batch,
    seq: c.seq,
    params: exactParameterCount(cfg),
    flopsPerToken: trainingFlopsPerToken(cfg, c.seq),
    step: null,
    forward: null,
    backward: null,
    optimizer: null,
    tokensPerSecond: null,
    gflops: null,
    mfu: null,
    mfuFp32: null,
  };
}

/** Deterministic random tokens in [0, vocab). */
export function randomTokens(n: number, vocab: number, seed: number): Int32Array {
  const t = new Int32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    t[i] = s % vocab;
  }
  return t;
}

export async function runTrain(ctx: SectionContext): Promise<TrainSection> {
  const { opts } = ctx;
  const cases = trainPlan(opts.quick, opts.preset, opts.batch, opts.seq);
  const description =
    `training steps (forward + backward + AdamW, weight decay 0.1, clip 1.0) on random tokens: ` +
    `${cases.map((c) => `${c.preset} B${c.batch} T${c.seq}`).join(', ')}; ${opts.precisions.join(' and ')}; ` +
    `FLOPs per token by trainingFlopsPerToken (6 x matmul parameters + attention); warm-up ${opts.warmup}, up to ${opts.repeats} repeats`;
  const section: TrainSection = { status: 'ok', description, notes: [], rows: [] };
  for (const c of cases) {
    const p = getPreset(c.preset);
    if (!p.buildable) return { ...section, status: 'error', reason: `preset ${c.preset} cannot be built (${p.note ?? 'count-only'})` };
  }
  const timing = { warmup: opts.warmup, repeats: opts.repeats, budgetMs: opts.caseBudgetMs };
  for (const c of cases)
    for (const precision of opts.precisions) {
      const row = blank('engine', c, precision);
      ctx.log(`train: ${c.preset} B${c.batch} T${c.seq} ${precision}`);
      let model: GPT | null = null;
      try {
        model = await GPT.create(c.preset, { seed: 1, device: opts.device, precision });
        row.storage = model.storage();
        const cfg = presetConfig(c.preset);
        const tokens = randomTokens(c.batch * c.seq, cfg.vocab_size, 7);
        const targets = randomTokens(c.batch * c.seq, cfg.vocab_size, 8);
        const m = model;
        const per = await repeatAsync(async () => {
          const t0 = performance.now();
          const loss = await m.forwardBackward(tokens, targets, { batch: c.batch, seq: c.seq });
          await m.step({ lr: 1e-4, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, gradClip: 1.0 });
          const ms = performance.now() - t0;
          return { ms, loss, split: m.timings() };
        }, timing);
        row.step = statOf(per.map((x) => x.ms));
        row.loss = per[per.length - 1].loss;
        row.forward = statOf(per.map((x) => x.split.forwardMs));
        row.backward = statOf(per.map((x) => x.split.backwardMs));
        row.optimizer = statOf(per.map((x) => x.split.optimizerMs));
      } catch (e) {
        row.note = `failed: ${errorLine(e)}`;
      } finally {
        await model?.dispose();
      }
      section.rows.push(finishTrainRow(row, ctx.ceilings));
    }
  if (ctx.pytorch) await runPytorchTrain(ctx, cases, section);
  return section;
}

async function runPytorchTrain(ctx: SectionContext, cases: TrainCase[], section: TrainSection): Promise<void> {
  const { opts } = ctx;
  const py: TrainRow[] = [];
  for (const c of cases) for (const precision of opts.precisions) py.push(blank('pytorch', c, precision));
  ctx.log(`train: PyTorch twin (${py.length} cases)`);
  try {
    const r = (await ctx.pytorch!.run(
      'train',
      {
        ...twinSettings(opts),
        cases: py.map((c) => {
          const cfg = presetConfig(c.preset);
          return { preset: c.preset, precision: c.precision, batch: c.batch, seq: c.seq, config: cfg };
        }),
      },
      (opts.quick ? 120 : 900) * 1000,
    )) as {
      results: {
        preset: string;
        precision: BenchPrecision;
        batch: number;
        seq: number;
        step: Stat | null;
        forward: Stat | null;
        backward: Stat | null;
        optimizer: Stat | null;
        loss?: number;
        error?: string;
        note?: string;
      }[];
    };
    for (const c of py) {
      const m = r.results.find((x) => x.preset === c.preset && x.precision === c.precision && x.batch === c.batch && x.seq === c.seq);
      if (m) {
        c.step = m.step;
        c.forward = m.forward;
        c.backward = m.backward;
        c.optimizer = m.optimizer;
        c.loss = m.loss ?? null;
        if (m.error) c.note = `PyTorch failed: ${m.error}`;
        else if (m.note) c.note = m.note;
      }
      section.rows.push(finishTrainRow(c, ctx.ceilings));
    }
  } catch (e) {
    section.notes.push(`PyTorch: not measured (${errorLine(e)})`);
  }
}
