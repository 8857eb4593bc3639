/**
 * The text a person reads: the machine, the ceilings, one table per
 * section with our figures beside PyTorch's (ratio = how many times faster
 * we are), and the comparison with a baseline.
 */
import {
  AttentionRow,
  AttentionSection,
  BenchReport,
  Ceiling,
  Comparison,
  GemmRow,
  GemmSection,
  GenerateRow,
  GenerateSection,
  SectionBase,
  ServeRow,
  ServeSection,
  Stat,
  TrainRow,
  TrainSection,
} from './types';

/** Right-aligned plain table (first column left-aligned). */
export function textTable(headers: string[], rows: string[][]): string {
  const cells = [headers, ...rows];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const fmt = (r: string[], head = false) =>
    r.map((c, i) => (i === 0 || head ? (c ?? '').padEnd(widths[i]) : (c ?? '').padStart(widths[i]))).join('  ').trimEnd();
  return [fmt(headers, true), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map((r) => fmt(r))].join('\n');
}

export function num(x: number | null | undefined, digits = 1): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '-';
  const a = Math.abs(x);
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(Math.min(digits, 1));
  return x.toFixed(Math.max(digits, 2));
}

export function pct(x: number | null | undefined): string {
  return x === null || x === undefined || !Number.isFinite(x) ? '-' : `${(100 * x).toFixed(1)}%`;
}

/** "12.3 (11.9-13.0)" */
export function statText(s: Stat | null | undefined): string {
  if (!s) return '-';
  if (s.samples.length < 2) return num(s.median);
  return `${num(s.median)} (${num(s.min)}-${num(s.max)})`;
}

export function ratioText(ours: number | null | undefined, theirs: number | null | undefined, higherIsBetter: boolean): string {
  if (!ours || !theirs || !Number.isFinite(ours) || !Number.isFinite(theirs)) return '-';
  const r = higherIsBetter ? ours / theirs : theirs / ours;
  return `${r.toFixed(2)}x`;
}

export function mib(b: number | null | undefined): string {
  if (b === null || b === undefined || !Number.isFinite(b)) return '-';
  return `${(b / 1024 / 1024).toFixed(1)} MiB`;
}

function ceilingText(name: string, c: Ceiling): string {
  if (c.value === null) return `  ${name}: ${c.reason ?? 'not measured'}`;
  const range = c.stat && c.stat.samples.length > 1 ? ` (probes ${num(c.stat.min)}-${num(c.stat.max)})` : '';
  return `  ${name}: ${num(c.value)} ${c.unit}${range} — ${c.how}`;
}

export function formatMachine(r: BenchReport): string {
  return machineLines(r).join('\n');
}

/** The machine, the ceilings, the conventions and PyTorch's status, one line each. */
export function machineLines(r: BenchReport): string[] {
  const m = r.machine;
  const lines = [
    `gpt-engine bench — ${r.date}${r.quick ? ' (quick sizes)' : ''}`,
    `machine: ${m.cpuModel}, ${m.cores} cores, ${(m.memoryBytes / 1024 ** 3).toFixed(1)} GiB, ${m.os}, Node ${m.node}`,
    `engine: gpt-engine ${m.packageVersion}${m.gitCommit ? `, commit ${m.gitCommit.slice(0, 12)}${m.gitDirty ? ' (uncommitted changes)' : ''}` : ''}; ` +
      `ISA path ${m.isa} (CPU supports ${m.supportedIsas.join(', ')}; AVX512_BF16 ${m.avx512bf16 ? 'yes' : 'no'}); threads ${m.threads}`,
    `device: ${r.device} (${r.deviceReason})` +
      (m.gpu.name
        ? `; GPU ${m.gpu.name}, ${((m.gpu.memoryBytes ?? 0) / 1024 ** 3).toFixed(1)} GiB, cc ${m.gpu.computeCapability}, driver ${m.gpu.driverVersion}, runtime ${m.gpu.runtimeVersion}` +
          (m.gpu.gemm ? `; GEMM ${m.gpu.gemm}` : '')
        : r.deviceReason.includes(m.gpu.reason)
          ? ''
          : `; GPU: ${m.gpu.reason}`),
    `load average at start: ${m.loadAverage.join(', ')}${m.loadAverage[0] > m.cores * 0.5 ? ' — the machine was busy: figures are noisy' : ''}`,
    `ceilings (measured now):`,
    ceilingText('fp32 FMA peak', r.ceilings.fp32),
    ceilingText('bf16 peak', r.ceilings.bf16),
    ceilingText('read bandwidth', r.ceilings.readBandwidth),
    ceilingText('GPU device copy', r.ceilings.gpuCopy),
    ceilingText('GPU engine GEMM', r.ceilings.gpuGemm),
    `timing: warm-up ${r.warmup}, up to ${r.repeats} repeats per case; figures are medians, (min-max) over the repeats`,
    r.conventions,
    r.pytorch.measured
      ? `PyTorch: ${r.pytorch.torchVersion} via ${r.pytorch.python}, ${r.pytorch.threads} threads, BLAS ${r.pytorch.blas}; ratio = how many times faster gpt-engine is`
      : `PyTorch: not measured (${r.pytorch.reason})`,
  ];
  const over = fractionsOverOne(r);
  if (over)
    lines.push(
      `warning: ${over} figure(s) above 100% of their ceiling: a ceiling probe read low (the machine was busy, or the probe does not reach this CPU's peak): compare the absolute figures`,
    );
  return lines;
}

/** How many fractions of a ceiling exceed 1 (a sign the ceilings were measured on a busy machine). */
export function fractionsOverOne(r: BenchReport): number {
  const f: (number | null | undefined)[] = [];
  for (const x of r.sections.attention?.rows ?? []) f.push(x.peakFractionForward, x.peakFractionForwardBackward);
  for (const x of r.sections.gemm?.rows ?? []) f.push(x.peakFraction);
  for (const x of r.sections.train?.rows ?? []) f.push(x.mfu);
  for (const x of r.sections.generate?.rows ?? []) f.push(x.boundFraction, x.prefillPeakFraction);
  return f.filter((x) => typeof x === 'number' && x > 1.02).length;
}

/** One section as a person reads it: a table and the lines under it. */
export interface SectionBlock {
  name: string;
  description: string;
  /** set when the section did not measure (unavailable, error) */
  status: string | null;
  headers: string[];
  rows: string[][];
  lines: string[];
}

function block(name: string, s: SectionBase): SectionBlock {
  return { name, description: s.description, status: s.status !== 'ok' ? `${name}: ${s.reason}` : null, headers: [], rows: [], lines: [] };
}

function notes(s: SectionBase): string[] {
  return s.notes.map((n) => `note: ${n}`);
}

function rowNotes(rows: { note?: string }[], label: (r: never) => string): string[] {
  const out = rows.filter((r) => r.note && !r.note.startsWith('PyTorch ') && !r.note.startsWith('PyTorch:')).map((r) => `${label(r as never)}: ${r.note}`);
  const failed = rows.filter((r) => r.note && r.note.startsWith('PyTorch failed')).map((r) => `${label(r as never)}: ${r.note}`);
  return [...out, ...failed];
}

/** A block as plain text. */
export function blockText(b: SectionBlock): string {
  const parts = [`\n== ${b.name} ==`, b.description];
  if (b.status) parts.push(b.status);
  if (b.rows.length) parts.push(textTable(b.headers, b.rows));
  parts.push(...b.lines);
  return parts.join('\n');
}

export function attentionBlock(s: AttentionSection, r: BenchReport): SectionBlock {
  const b = block('attention', s);
  if (s.status !== 'ok') return b;
  const py = (row: AttentionRow) =>
    s.rows.find((x) => x.impl === 'pytorch' && x.pattern === row.pattern && x.seq === row.seq && row.impl === 'fused');
  const withPy = r.pytorch.measured;
  b.headers = ['T', 'kernel', 'fwd ms', 'fwd GFLOP/s', 'fwd %peak', 'fwd+bwd ms', 'f+b GFLOP/s', 'f+b %peak', 'workspace'];
  if (withPy) b.headers.push('PyTorch fwd ms', 'x fwd', 'PyTorch f+b ms', 'x f+b');
  b.rows = s.rows
    .filter((x) => x.impl !== 'pytorch')
    .map((x) => {
      const cells = [
        String(x.seq),
        `${x.impl} ${x.pattern}${x.window ? ` w${x.window}` : ''}`,
        statText(x.forward),
        num(x.gflopsForward),
        pct(x.peakFractionForward),
        statText(x.forwardBackward),
        num(x.gflopsForwardBackward),
        pct(x.peakFractionForwardBackward),
        x.workspaceBytes !== undefined ? mib(x.workspaceBytes) : '-',
      ];
      if (withPy) {
        const p = py(x);
        cells.push(statText(p?.forward), ratioText(x.forward?.median, p?.forward?.median, false));
        cells.push(statText(p?.forwardBackward), ratioText(x.forwardBackward?.median, p?.forwardBackward?.median, false));
      }
      return cells;
    });
  // banded vs dense at the largest T: the time ratio against the FLOP ratio
  const fused = s.rows.filter((x) => x.impl === 'fused' && x.forwardBackward);
  const T = Math.max(...fused.map((x) => x.seq));
  const d = fused.find((x) => x.seq === T && x.pattern === 'dense');
  const bd = fused.find((x) => x.seq === T && x.pattern === 'banded');
  if (d && bd && d.forwardBackward && bd.forwardBackward) {
    const tr = bd.forwardBackward.median / d.forwardBackward.median;
    const fr = bd.flopsForwardBackward / d.flopsForwardBackward;
    b.lines.push(`banded/dense fwd+bwd at T=${T}: time ${tr.toFixed(3)}, FLOPs ${fr.toFixed(3)} (time ratio / FLOP ratio = ${(tr / fr).toFixed(2)})`);
  }
  if (s.rssCheck)
    b.lines.push(
      `workspace check at T=${s.rssCheck.seq} (dense fwd+bwd): high-water ${mib(s.rssCheck.workspaceBytes)}, ` +
        `resident memory grew ${mib(s.rssCheck.rssGrowthBytes)} (results ${mib(s.rssCheck.outputBytes)}) — ` +
        `${s.rssCheck.consistent ? 'consistent' : 'MORE than the workspace and results account for'}`,
    );
  const pyRows = s.rows.filter((x) => x.impl === 'pytorch');
  const pyNoteText = pyRows.find((x) => x.pattern === 'banded')?.note ?? pyRows[0]?.note;
  if (pyNoteText) b.lines.push(pyNoteText);
  b.lines.push(...rowNotes(s.rows, (x: AttentionRow) => `${x.impl} ${x.pattern} T=${x.seq}`), ...notes(s), ...pyNote(r));
  return b;
}

function pyNote(r: BenchReport): string[] {
  return r.pytorch.measured ? [] : [`PyTorch: not measured (${r.pytorch.reason})`];
}

export function gemmBlock(s: GemmSection, r: BenchReport): SectionBlock {
  const b = block('gemm', s);
  if (s.status !== 'ok') return b;
  const withPy = r.pytorch.measured;
  b.headers = ['layer', 'K x N', 'form', 'prec', 'ms', 'GFLOP/s', '% peak', '% fp32 peak'];
  if (withPy) b.headers.push('PyTorch GFLOP/s', 'x PyTorch');
  b.rows = s.rows
    .filter((x) => x.impl === 'engine')
    .map((x) => {
      const cells = [x.layer, `${x.K}x${x.N}`, x.form, x.precision, statText(x.time), num(x.gflops), pct(x.peakFraction), pct(x.fp32PeakFraction)];
      if (withPy) {
        const p = s.rows.find((y) => y.impl === 'pytorch' && y.layer === x.layer && y.form === x.form && y.precision === x.precision);
        cells.push(num(p?.gflops), ratioText(x.gflops, p?.gflops, true));
      }
      return cells;
    });
  b.description += ` (M = ${s.rows[0]?.M ?? '-'})`;
  b.lines.push(...rowNotes(s.rows, (x: GemmRow) => `${x.impl} ${x.layer} ${x.form} ${x.precision}`), ...notes(s), ...pyNote(r));
  return b;
}

export function trainBlock(s: TrainSection, r: BenchReport): SectionBlock {
  const b = block('train', s);
  const withPy = r.pytorch.measured;
  b.headers = ['preset', 'B', 'T', 'prec', 'impl', 'ms/step', 'fwd ms', 'bwd ms', 'opt ms', 'tokens/s', 'GFLOP/s', 'MFU', 'MFU fp32'];
  if (withPy) b.headers.push('x PyTorch fp32', 'x PyTorch same prec');
  b.rows = s.rows.map((x) => {
    const cells = [
      x.preset,
      String(x.batch),
      String(x.seq),
      x.precision,
      x.impl === 'engine' ? 'gpt-engine' : 'PyTorch',
      statText(x.step),
      num(x.forward?.median),
      num(x.backward?.median),
      num(x.optimizer?.median),
      num(x.tokensPerSecond),
      num(x.gflops),
      pct(x.mfu),
      pct(x.mfuFp32),
    ];
    if (withPy) {
      const same = (y: TrainRow, prec: string) =>
        y.impl === 'pytorch' && y.preset === x.preset && y.batch === x.batch && y.seq === x.seq && y.precision === prec;
      const p32 = s.rows.find((y) => same(y, 'fp32'));
      const pSame = s.rows.find((y) => same(y, x.precision));
      cells.push(x.impl === 'engine' ? ratioText(x.tokensPerSecond, p32?.tokensPerSecond, true) : '');
      cells.push(x.impl === 'engine' ? ratioText(x.tokensPerSecond, pSame?.tokensPerSecond, true) : '');
    }
    return cells;
  });
  b.lines.push(...rowNotes(s.rows, (x: TrainRow) => `${x.impl} ${x.preset} B${x.batch} T${x.seq} ${x.precision}`), ...notes(s), ...pyNote(r));
  return b;
}

export function generateBlock(s: GenerateSection, r: BenchReport): SectionBlock {
  const b = block('generate', s);
  const withPy = r.pytorch.measured;
  b.headers = ['preset', 'prec', 'batch', 'impl', 'prefill tok/s', 'prefill %peak', 'decode tok/s', 'TTFT ms', 'cache', 'bound tok/s', '% bound'];
  if (withPy) b.headers.push('x PyTorch');
  b.rows = s.rows.map((x) => {
    const cells = [
      x.preset,
      x.precision,
      String(x.batch),
      x.impl === 'engine' ? 'gpt-engine' : 'PyTorch',
      num(x.prefillTokensPerSecond),
      pct(x.prefillPeakFraction),
      statText(x.decode),
      statText(x.timeToFirstToken),
      mib(x.cacheBytes),
      num(x.boundTokensPerSecond),
      pct(x.boundFraction),
    ];
    if (withPy) {
      const p = s.rows.find((y) => y.impl === 'pytorch' && y.batch === x.batch && y.precision === x.precision);
      cells.push(x.impl === 'engine' ? ratioText(x.decodeTokensPerSecond, p?.decodeTokensPerSecond, true) : '');
    }
    return cells;
  });
  for (const prec of ['fp32', 'bf16']) {
    const w = s.rows.find((x) => x.precision === prec);
    if (w) b.lines.push(`weights read per decode step (${prec}): ${mib(w.weightBytes)}`);
  }
  b.lines.push(...rowNotes(s.rows, (x: GenerateRow) => `${x.impl} ${x.preset} batch ${x.batch} ${x.precision}`), ...notes(s), ...pyNote(r));
  return b;
}

const SERVE_MODE_TEXT: Record<ServeRow['mode'], string> = {
  'api-alone': 'API, one request alone',
  'api-batch': 'API, the prompts as one batch',
  'api-fifo': 'API, concurrent calls, one at a time (maxBatch 1)',
  'api-concurrent': 'API, concurrent calls (continuous batch)',
  'api-busy': 'API, one call arriving while the others decode (its TTFT)',
  'server-alone': 'server, one client alone',
  'server-fifo': 'server, one admitted at a time (FIFO)',
  'server-concurrent': 'server, concurrent clients (continuous batch)',
};

export function serveBlock(s: ServeSection): SectionBlock {
  const b = block('serve', s);
  b.headers = ['how', 'clients', 'round ms', 'tokens/s', 'TTFT p50 ms', 'TTFT p99 ms', 'latency p50 ms', 'latency p99 ms'];
  b.rows = s.rows.map((x) => [
    SERVE_MODE_TEXT[x.mode],
    String(x.clients),
    statText(x.wall),
    num(x.tokensPerSecond),
    num(x.ttftP50),
    num(x.ttftP99),
    num(x.latencyP50),
    num(x.latencyP99),
  ]);
  b.lines.push(...rowNotes(s.rows, (x: ServeRow) => SERVE_MODE_TEXT[x.mode]), ...notes(s));
  return b;
}

export function comparisonBlock(c: Comparison): SectionBlock {
  return {
    name: `compared with ${c.baselineFile} (${c.baselineDate})`,
    description: 'ratio = this run / baseline; tolerance = the larger repeat spread of the two runs, at least 3%',
    status: null,
    headers: ['figure', 'baseline', 'now', 'ratio', 'tolerance', 'verdict'],
    rows: c.entries.map((e) => [
      e.label,
      `${num(e.baseline)} ${e.unit}`,
      `${num(e.current)} ${e.unit}`,
      `${e.ratio.toFixed(3)}`,
      `±${(100 * e.tolerance).toFixed(1)}%`,
      e.verdict === 'regression' ? 'REGRESSION' : e.verdict === 'improvement' ? 'better' : '',
    ]),
    lines: [
      `${c.regressions} regression(s) beyond the spread; ${c.entries.length} figures compared` +
        (c.missing.length ? `; ${c.missing.length} baseline figures not in this run` : ''),
    ],
  };
}

/** Every block of a report, in order. */
export function reportBlocks(r: BenchReport): SectionBlock[] {
  const out: SectionBlock[] = [];
  if (r.sections.attention) out.push(attentionBlock(r.sections.attention, r));
  if (r.sections.gemm) out.push(gemmBlock(r.sections.gemm, r));
  if (r.sections.train) out.push(trainBlock(r.sections.train, r));
  if (r.sections.generate) out.push(generateBlock(r.sections.generate, r));
  if (r.sections.serve) out.push(serveBlock(r.sections.serve));
  if (r.comparison) out.push(comparisonBlock(r.comparison));
  return out;
}

export function formatReport(r: BenchReport): string {
  const parts = [formatMachine(r), ...reportBlocks(r).map(blockText), `\nfinished in ${r.elapsedSeconds.toFixed(1)} s`];
  return parts.join('\n') + '\n';
}
