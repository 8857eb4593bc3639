/**
 * Generate section: a randomly initialized model decodes greedily
 * (temperature 0, end-of-text ignored) from random prompts; prefill
 * tokens/s, decode tokens/s, time to first token and cache bytes come from
 * the generation's own stats. The bound: each decode step reads every
 * weight once (wpe: one row), so at batch b tokens/s <= b x read bandwidth
 * / weight bytes (4 per parameter in fp32, 2 in bf16); the section prints
 * our share of it.
 */
import { presetConfig } from '../config';
import { forwardFlopsPerToken } from '../flops';
import { GPT } from '../model';
import { exactParameterCount } from '../params';
import { peakFor } from './machine';
import { errorLine, SectionContext } from './context';
import { fractionOf, repeatAsync, statOf } from './stats';
import { randomTokens } from './train';
import { BenchPrecision, GenerateRow, GenerateSection, Stat } from './types';

export interface GeneratePlan {
  preset: string;
  batches: number[];
  promptTokens: number;
  newTokens: number;
}

export function generatePlan(quick: boolean, preset?: string, batch?: number, seq?: number): GeneratePlan {
  const p = preset ?? (quick ? 'tiny' : 'gpt2');
  const batches = batch ? [batch] : quick ? [1, 4] : [1, 8];
  const promptTokens = seq ?? (quick ? 16 : 64);
  const newTokens = quick ? 16 : 64;
  const ctx = presetConfig(p).n_positions;
  return { preset: p, batches, promptTokens: Math.min(promptTokens, ctx - newTokens), newTokens: Math.min(newTokens, ctx - 1) };
}

/** Bytes of weights one decode step reads: every parameter but wpe (one row of it). */
export function decodeWeightBytes(preset: string, precision: BenchPrecision): number {
  const c = presetConfig(preset);
  return (exactParameterCount(c) - (c.n_positions - 1) * c.n_embd) * (precision === 'bf16' ? 2 : 4);
}

export function finishGenerateRow(r: GenerateRow, bandwidthGBps: number | null, peakGflops: number | null = null): GenerateRow {
  r.boundTokensPerSecond = bandwidthGBps === null ? null : (r.batch * bandwidthGBps * 1e9) / r.weightBytes;
  r.boundFraction = fractionOf(r.decodeTokensPerSecond, r.boundTokensPerSecond);
  // prefill is compute-bound: its FLOP rate against the FMA peak
  const flops = r.prefillTokensPerSecond === null ? null : (r.prefillTokensPerSecond * forwardFlopsPerToken(presetConfig(r.preset), r.promptTokens)) / 1e9;
  r.prefillPeakFraction = fractionOf(flops, peakGflops);
  return r;
}

function blank(impl: GenerateRow['impl'], plan: GeneratePlan, batch: number, precision: BenchPrecision): GenerateRow {
  return {
    impl,
    preset: plan.preset,
    precision,
    batch,
    promptTokens: plan.promptTokens,
    newTokens: plan.newTokens,
    prefillTokensPerSecond: null,
    decodeTokensPerSecond: null,
    decode: null,
    timeToFirstToken: null,
    cacheBytes: null,
    weightBytes: decodeWeightBytes(plan.preset, precision),
    boundTokensPerSecond: null,
    boundFraction: null,
  };
}

export async function runGenerate(ctx: SectionContext): Promise<GenerateSection> {
  const { opts } = ctx;
  const plan = generatePlan(opts.quick, opts.preset, opts.batch, opts.seq);
  const description =
    `${plan.preset} with random weights, greedy, prompt ${plan.promptTokens} tokens, ${plan.newTokens} new tokens, ` +
    `batch ${plan.batches.join('/')}; ${opts.precisions.join(' and ')}; bound = batch x read bandwidth / weight bytes per step; ` +
    `warm-up ${opts.warmup}, up to ${opts.repeats} repeats; figures are medians`;
  const section: GenerateSection = { status: 'ok', description, notes: [], rows: [] };
  const bw = ctx.ceilings.readBandwidth.value;
  const timing = { warmup: opts.warmup, repeats: opts.repeats, budgetMs: opts.caseBudgetMs };
  const cfg = presetConfig(plan.preset);
  for (const precision of opts.precisions) {
    let model: GPT;
    try {
      model = await GPT.create(plan.preset, { seed: 1, device: opts.device, precision });
    } catch (e) {
      for (const b of plan.batches) {
        const row = blank('engine', plan, b, precision);
        row.note = `failed: ${errorLine(e)}`;
        section.rows.push(finishGenerateRow(row, bw, peakFor(ctx.ceilings, precision)));
      }
      continue;
    }
    try {
      for (const b of plan.batches) {
        const row = blank('engine', plan, b, precision);
        ctx.log(`generate: ${plan.preset} batch ${b} ${precision}`);
        try {
          const prompts = Array.from({ length: b }, (_, i) => randomTokens(plan.promptTokens, cfg.vocab_size, 100 + i));
          const m = model;
          const options = { maxTokens: plan.newTokens, temperature: 0, ignoreEos: true, seed: 1 };
          const per = await repeatAsync(
            async () => (b === 1 ? await m.generate(prompts[0], options) : (await m.generate(prompts, options))[0]).stats,
            timing,
          );
          row.decode = statOf(per.map((s) => s.decodeTokensPerSecond));
          row.decodeTokensPerSecond = row.decode.median;
          row.prefillTokensPerSecond = statOf(per.map((s) => s.prefillTokensPerSecond)).median;
          row.timeToFirstToken = statOf(per.map((s) => s.timeToFirstTokenMs));
          row.cacheBytes = per[per.length - 1].cacheBytes;
        } catch (e) {
          row.note = `failed: ${errorLine(e)}`;
        }
        section.rows.push(finishGenerateRow(row, bw, peakFor(ctx.ceilings, precision)));
      }
    } finally {
      await model.dispose();
    }
  }
  if (ctx.pytorch) {
    const py: GenerateRow[] = [];
    for (const precision of opts.precisions) for (const b of plan.batches) py.push(blank('pytorch', plan, b, precision));
    ctx.log(`generate: PyTorch twin (${py.length} cases)`);
    try {
      const cfg = presetConfig(plan.preset);
      const r = (await ctx.pytorch.run(
        'generate',
        {
          device: opts.device,
          warmup: opts.warmup,
          repeats: opts.repeats,
          budget_ms: opts.caseBudgetMs,
          config: cfg,
          cases: py.map((c) => ({ precision: c.precision, batch: c.batch, promptTokens: c.promptTokens, newTokens: c.newTokens })),
        },
        (opts.quick ? 120 : 900) * 1000,
      )) as {
        results: {
          precision: BenchPrecision;
          batch: number;
          decode: Stat | null;
          prefillTokensPerSecond: number | null;
          timeToFirstToken: Stat | null;
          cacheBytes: number | null;
          error?: string;
          note?: string;
        }[];
      };
      for (const c of py) {
        const m = r.results.find((x) => x.precision === c.precision && x.batch === c.batch);
        if (m) {
          c.decode = m.decode;
          c.decodeTokensPerSecond = m.decode ? m.decode.median : null;
          c.prefillTokensPerSecond = m.prefillTokensPerSecond;
          c.timeToFirstToken = m.timeToFirstToken;
          c.cacheBytes = m.cacheBytes;
          if (m.error) c.note = `PyTorch failed: ${m.error}`;
          else if (m.note) c.note = m.note;
        }
        section.rows.push(finishGenerateRow(c, bw, peakFor(ctx.ceilings, c.precision)));
      }
    } catch (e) {
      section.notes.push(`PyTorch: not measured (${errorLine(e)})`);
    }
  }
  return section;
}
