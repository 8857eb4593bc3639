/**
 * GEMM section: GPT-2 small's linear layers at B4 x T256
 * (M = 1024 rows), each in the three forms a linear layer needs, fp32 and
 * bf16, GFLOP/s against the FMA peaks. A linear layer out = inp @ w with
 * inp [M, K], w [K, N] (Conv1D layout):
 *   forward      out[M, N]  = inp @ w            (+ bias)
 *   input-grad   dinp[M, K] = dout @ w^T
 *   weight-grad  dw[K, N]  += inp^T @ dout
 * FLOPs: lib/flops.ts gemmFlops (2 * M * K * N) for each.
 */
import { gemmFlops } from '../flops';
import { gemm, GemmOptions } from '../gemm';
import { errorLine, SectionContext, twinSettings } from './context';
import { peakFor } from './machine';
import { fillRandom, fractionOf, perSecond, timeAsync } from './stats';
import { BenchPrecision, GemmForm, GemmRow, GemmSection, Stat } from './types';

export const GEMM_FORMS: readonly GemmForm[] = ['forward', 'input-grad', 'weight-grad'];

export interface GemmShape {
  layer: string;
  K: number;
  N: number;
}

export function gemmPlan(quick: boolean): { M: number; shapes: GemmShape[] } {
  const shapes: GemmShape[] = [
    { layer: 'attn.c_attn', K: 768, N: 2304 },
    { layer: 'attn.c_proj', K: 768, N: 768 },
    { layer: 'mlp.c_fc', K: 768, N: 3072 },
    { layer: 'mlp.c_proj', K: 3072, N: 768 },
    { layer: 'lm_head', K: 768, N: 50304 },
  ];
  // quick: a quarter of the rows and no head, so the whole suite stays short
  return quick ? { M: 256, shapes: shapes.slice(0, 4) } : { M: 1024, shapes };
}

/** The gemm() call of one form on buffers allocated once. */
function formCall(form: GemmForm, M: number, K: number, N: number, precision: BenchPrecision): GemmOptions {
  const inp = fillRandom(new Float32Array(M * K), 21);
  const w = fillRandom(new Float32Array(K * N), 22);
  if (form === 'forward') {
    const bias = fillRandom(new Float32Array(N), 23);
    return { a: inp, b: w, c: new Float32Array(M * N), M, N, K, bias, precision };
  }
  const dout = fillRandom(new Float32Array(M * N), 24);
  if (form === 'input-grad') return { a: dout, b: w, c: new Float32Array(M * K), M, N: K, K: N, transB: true, precision };
  return { a: inp, b: dout, c: new Float32Array(K * N), M: K, N, K: M, transA: true, accumulate: true, precision };
}

export function finishGemmRow(r: GemmRow, ceilings: SectionContext['ceilings']): GemmRow {
  const ps = perSecond(r.flops, r.time);
  r.gflops = ps === null ? null : ps / 1e9;
  r.peakFraction = fractionOf(r.gflops, peakFor(ceilings, r.precision));
  r.fp32PeakFraction = fractionOf(r.gflops, ceilings.fp32.value);
  return r;
}

function blankRow(impl: GemmRow['impl'], s: GemmShape, form: GemmForm, precision: BenchPrecision, M: number): GemmRow {
  return {
    impl,
    layer: s.layer,
    form,
    precision,
    M,
    K: s.K,
    N: s.N,
    flops: gemmFlops(M, s.K, s.N),
    time: null,
    gflops: null,
    peakFraction: null,
    fp32PeakFraction: null,
  };
}

export async function runGemm(ctx: SectionContext): Promise<GemmSection> {
  const { opts } = ctx;
  const plan = gemmPlan(opts.quick);
  const description =
    `GPT-2 small's linear layers, M = ${plan.M} rows (B x T), shapes K x N ${plan.shapes.map((s) => `${s.K}x${s.N}`).join(', ')}; ` +
    `forms forward (inp @ w + bias), input-grad (dout @ w^T), weight-grad (dw += inp^T @ dout); ${opts.precisions.join(' and ')}; ` +
    `FLOPs 2*M*K*N; warm-up ${opts.warmup}, up to ${opts.repeats} repeats`;
  const section: GemmSection = { status: 'ok', description, notes: [], rows: [] };
  if (opts.device === 'cuda') return { ...section, status: 'unavailable', reason: 'not available on cuda: lib/gemm runs on the CPU only' };
  const timing = { warmup: opts.warmup, repeats: opts.repeats, budgetMs: opts.caseBudgetMs };
  if (opts.precisions.includes('bf16') && ctx.ceilings.bf16.value === null)
    section.notes.push('bf16 fraction is of the fp32 peak: this CPU has no measured bf16 peak');
  const py: GemmRow[] = [];
  for (const precision of opts.precisions) {
    for (const s of plan.shapes) {
      for (const form of GEMM_FORMS) {
        const row = blankRow('engine', s, form, precision, plan.M);
        ctx.log(`gemm: ${s.layer} ${form} ${precision}`);
        try {
          const call = formCall(form, plan.M, s.K, s.N, precision);
          row.time = await timeAsync(() => gemm(call), timing);
        } catch (e) {
          row.note = `failed: ${errorLine(e)}`;
        }
        section.rows.push(finishGemmRow(row, ctx.ceilings));
        if (ctx.pytorch) py.push(blankRow('pytorch', s, form, precision, plan.M));
      }
    }
  }
  if (ctx.pytorch && py.length) {
    ctx.log(`gemm: PyTorch twin (${py.length} cases)`);
    try {
      const r = (await ctx.pytorch.run(
        'gemm',
        {
          ...twinSettings(opts),
          cases: py.map((c) => ({ layer: c.layer, form: c.form, precision: c.precision, M: c.M, K: c.K, N: c.N })),
        },
        (opts.quick ? 60 : 300) * 1000 + py.length * 20000,
      )) as { results: { layer: string; form: GemmForm; precision: BenchPrecision; time: Stat | null; error?: string; note?: string }[] };
      for (const c of py) {
        const m = r.results.find((x) => x.layer === c.layer && x.form === c.form && x.precision === c.precision);
        c.time = m?.time ?? null;
        if (m?.error) c.note = `PyTorch failed: ${m.error}`;
        else if (m?.note) c.note = m.note;
        section.rows.push(finishGemmRow(c, ctx.ceilings));
      }
    } catch (e) {
      section.notes.push(`PyTorch: not measured (${errorLine(e)})`);
    }
  }
  return section;
}
