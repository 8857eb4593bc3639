/**
 * Attention section: batch 1, 12 heads, headDim 64, seq
 * 512..8192; fused dense, fused banded (w = 256), the naive materialized
 * fp32 kernel on the same threads (up to 4096) and PyTorch (up to 4096:
 * it holds T x T per head). Forward, forward+backward, GFLOP/s by
 * lib/flops.ts, fraction of the fp32 FMA peak, and the fused kernels'
 * workspace high-water mark, checked once against resident memory.
 */
import {
  AttentionBackwardOptions,
  AttentionBackwardResult,
  AttentionForwardOptions,
  AttentionForwardResult,
  AttentionPattern,
  backward,
  forward,
  naiveBackward,
  naiveForward,
  resetWorkspace,
  workspaceHighWater,
} from '../attention';
import { attentionFlops } from '../flops';
import { errorLine, SectionContext, twinSettings } from './context';
import { fillRandom, fractionOf, perSecond, timeAsync } from './stats';
import { AttentionRow, AttentionSection, Stat } from './types';

type Fwd = (a: AttentionForwardOptions) => Promise<AttentionForwardResult>;
type Bwd = (a: AttentionBackwardOptions) => Promise<AttentionBackwardResult>;

export interface AttentionPlan {
  batch: number;
  heads: number;
  headDim: number;
  window: number;
  seqs: number[];
  naiveMaxSeq: number;
  pytorchMaxSeq: number;
}

export function attentionPlan(quick: boolean, batch?: number, seq?: number): AttentionPlan {
  const seqs = seq ? [seq] : quick ? [256, 512, 1024] : [512, 1024, 2048, 4096, 8192];
  return { batch: batch ?? 1, heads: 12, headDim: 64, window: 256, seqs, naiveMaxSeq: 4096, pytorchMaxSeq: 4096 };
}

function emptyRow(impl: AttentionRow['impl'], pattern: AttentionPattern, p: AttentionPlan, seq: number): AttentionRow {
  const window = pattern === 'banded' ? p.window : null;
  const f = attentionFlops({ batch: p.batch, heads: p.heads, seq, headDim: p.headDim, pattern, window });
  return {
    impl,
    pattern,
    window,
    batch: p.batch,
    heads: p.heads,
    seq,
    headDim: p.headDim,
    forward: null,
    forwardBackward: null,
    flopsForward: f.forward,
    flopsForwardBackward: f.total,
    gflopsForward: null,
    gflopsForwardBackward: null,
    peakFractionForward: null,
    peakFractionForwardBackward: null,
  };
}

/** Fills the derived figures of a row from its timings. */
export function finishAttentionRow(r: AttentionRow, fp32Peak: number | null): AttentionRow {
  const g = (flops: number, s: Stat | null) => {
    const ps = perSecond(flops, s);
    return ps === null ? null : ps / 1e9;
  };
  r.gflopsForward = g(r.flopsForward, r.forward);
  r.gflopsForwardBackward = g(r.flopsForwardBackward, r.forwardBackward);
  r.peakFractionForward = fractionOf(r.gflopsForward, fp32Peak);
  r.peakFractionForwardBackward = fractionOf(r.gflopsForwardBackward, fp32Peak);
  return r;
}

/** Resident memory sampled every 2 ms while `fn` runs off the event loop; resolves the peak growth. */
async function rssGrowthDuring(fn: () => Promise<unknown>): Promise<number> {
  const base = process.memoryUsage.rss();
  let peak = base;
  const t = setInterval(() => {
    const r = process.memoryUsage.rss();
    if (r > peak) peak = r;
  }, 2);
  try {
    await fn();
  } finally {
    clearInterval(t);
  }
  peak = Math.max(peak, process.memoryUsage.rss());
  return peak - base;
}

export async function runAttention(ctx: SectionContext): Promise<AttentionSection> {
  const { opts } = ctx;
  const p = attentionPlan(opts.quick, opts.batch, opts.seq);
  const description =
    `batch ${p.batch}, ${p.heads} heads, headDim ${p.headDim}, seq ${p.seqs.join('/')}; fused dense and banded (w = ${p.window}), ` +
    `naive materialized fp32 up to ${p.naiveMaxSeq}, PyTorch up to ${p.pytorchMaxSeq}; ` +
    `${opts.device === 'cuda' ? 'bf16 tensor cores (the cuda default; fp32 softmax statistics)' : 'fp32'}; ` +
    `warm-up ${opts.warmup}, up to ${opts.repeats} repeats; ms are medians`;
  const section: AttentionSection = { status: 'ok', description, notes: [], rows: [], rssCheck: null };
  if (opts.device === 'cuda') section.notes.push('device cuda: the naive kernel runs on the CPU only and is left out');
  const peak = ctx.ceilings.fp32.value;
  const timing = { warmup: opts.warmup, repeats: opts.repeats, budgetMs: opts.caseBudgetMs };

  try {
    // The workspace figure, checked once against resident memory, on the
    // largest fused dense case before anything else has grown the heap.
    const seq = p.seqs[p.seqs.length - 1];
    const n = p.batch * p.heads * seq * p.headDim;
    const q = fillRandom(new Float32Array(n), 1);
    const k = fillRandom(new Float32Array(n), 2);
    const v = fillRandom(new Float32Array(n), 3);
    const dOut = fillRandom(new Float32Array(n), 4);
    const args: AttentionForwardOptions = { q, k, v, batch: p.batch, heads: p.heads, seq, headDim: p.headDim, pattern: 'dense', device: opts.device };
    resetWorkspace();
    const growth = await rssGrowthDuring(async () => {
      const o = await forward(args);
      await backward({ ...args, out: o.out, lse: o.lse, dOut });
    });
    const ws = workspaceHighWater();
    const outputBytes = 4 * (4 * n + p.batch * p.heads * seq);
    // Upper-bound check: growth beyond the workspace, the results and a
    // fixed allowance would mean memory the workspace figure does not count.
    const consistent = growth <= ws + 2 * outputBytes + 32 * 1024 * 1024;
    section.rssCheck = { seq, workspaceBytes: ws, rssGrowthBytes: growth, outputBytes, consistent };
  } catch (e) {
    section.notes.push(`workspace check failed: ${errorLine(e)}`);
  }

  const pyCases: AttentionRow[] = [];
  for (const seq of p.seqs) {
    const n = p.batch * p.heads * seq * p.headDim;
    const q = fillRandom(new Float32Array(n), 11);
    const k = fillRandom(new Float32Array(n), 12);
    const v = fillRandom(new Float32Array(n), 13);
    const dOut = fillRandom(new Float32Array(n), 14);
    const impls: { impl: 'fused' | 'naive'; pattern: AttentionPattern; fwd: Fwd; bwd: Bwd }[] = [
      { impl: 'fused', pattern: 'dense', fwd: forward, bwd: backward },
      { impl: 'fused', pattern: 'banded', fwd: forward, bwd: backward },
    ];
    if (seq <= p.naiveMaxSeq && opts.device === 'cpu') impls.push({ impl: 'naive', pattern: 'dense', fwd: naiveForward, bwd: naiveBackward });
    for (const c of impls) {
      const row = emptyRow(c.impl, c.pattern, p, seq);
      const args: AttentionForwardOptions = {
        q,
        k,
        v,
        batch: p.batch,
        heads: p.heads,
        seq,
        headDim: p.headDim,
        pattern: c.pattern,
        ...(c.pattern === 'banded' ? { window: p.window } : {}),
        device: opts.device,
      };
      ctx.log(`attention: ${c.impl} ${c.pattern} T=${seq}`);
      try {
        if (c.impl === 'fused') resetWorkspace();
        row.forward = await timeAsync(() => c.fwd(args), timing);
        row.forwardBackward = await timeAsync(async () => {
          const o = await c.fwd(args);
          await c.bwd({ ...args, out: o.out, lse: o.lse, dOut });
        }, timing);
        if (c.impl === 'fused') row.workspaceBytes = workspaceHighWater();
      } catch (e) {
        row.note = `failed: ${errorLine(e)}`;
      }
      section.rows.push(finishAttentionRow(row, peak));
    }
    if (ctx.pytorch && seq <= p.pytorchMaxSeq) {
      pyCases.push(emptyRow('pytorch', 'dense', p, seq), emptyRow('pytorch', 'banded', p, seq));
    }
  }
  if (ctx.pytorch && pyCases.length) {
    ctx.log(`attention: PyTorch twin (${pyCases.length} cases)`);
    await runPytorchAttention(ctx, pyCases, section);
  }
  if (ctx.pytorch && p.seqs.some((s) => s > p.pytorchMaxSeq))
    section.notes.push(`PyTorch: not measured above T = ${p.pytorchMaxSeq} (it holds a T x T matrix per head)`);
  return section;
}

interface TwinAttentionResult {
  method: string;
  results: { seq: number; pattern: AttentionPattern; forward: Stat | null; forwardBackward: Stat | null; error?: string }[];
}

async function runPytorchAttention(ctx: SectionContext, cases: AttentionRow[], section: AttentionSection): Promise<void> {
  const { opts } = ctx;
  try {
    const r = (await ctx.pytorch!.run(
      'attention',
      {
        ...twinSettings(opts),
        cases: cases.map((c) => ({ batch: c.batch, heads: c.heads, seq: c.seq, headDim: c.headDim, pattern: c.pattern, window: c.window })),
      },
      timeoutFor(opts.quick, cases.length),
    )) as TwinAttentionResult;
    for (const c of cases) {
      const m = r.results.find((x) => x.seq === c.seq && x.pattern === c.pattern);
      c.forward = m?.forward ?? null;
      c.forwardBackward = m?.forwardBackward ?? null;
      c.note = m?.error ? `PyTorch failed: ${m.error}` : `PyTorch ${r.method}${c.pattern === 'banded' ? ' with a band mask (computes every pair)' : ''}`;
      section.rows.push(finishAttentionRow(c, ctx.ceilings.fp32.value));
    }
  } catch (e) {
    section.notes.push(`PyTorch: not measured (${errorLine(e)})`);
  }
}

export function timeoutFor(quick: boolean, cases: number): number {
  return (quick ? 60 : 300) * 1000 + cases * (quick ? 10 : 60) * 1000;
}
