/**
 * The benchmark report: report.json (the BenchReport as it is) and
 * report.html, one self-contained page (no scripts, nothing fetched) with
 * the machine, the ceilings, one SVG chart per section rendered in Node by
 * vega-lite + vega, and the tables. Each chart is also written as its own
 * .svg next to the page.
 *
 * Charts:
 * - attention: time vs sequence length, log-log, fused dense / banded /
 *   naive / PyTorch, forward and forward+backward, with the ideal slopes
 *   (T^2 for dense, T*w for banded) drawn through the largest measured T;
 * - gemm: GFLOP/s per shape and form against the fp32 and bf16 peak lines;
 * - train: tokens/s and MFU per preset and precision;
 * - generate: decode tokens/s per batch size against the read-bandwidth bound;
 * - serve: tokens/s and time to first token per way of serving concurrent clients.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BenchReport } from './bench/types';
import { machineLines, reportBlocks, SectionBlock } from './bench/format';
import { writeFileAtomicSync } from './fsutil';
import { escapeHtml, htmlPage, renderSvg, VegaLiteSpec } from './plot';

export interface ChartDef {
  /** file stem and section: attention | gemm | train | generate | serve */
  name: string;
  title: string;
  spec: VegaLiteSpec;
  /** the series names the chart draws (legend entries) */
  series: string[];
}

const SCHEMA = 'https://vega.github.io/schema/vega-lite/v6.json';
const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#bcbd22'];
const IDEAL_COLORS = ['#555555', '#aaaaaa'];

function base(title: string): Record<string, unknown> {
  return {
    $schema: SCHEMA,
    title: { text: title, anchor: 'start', fontSize: 15 },
    background: 'white',
    padding: 12,
    config: { view: { stroke: '#ddd' }, legend: { orient: 'right', labelLimit: 260 }, axis: { labelLimit: 220 } },
  };
}

/** Fixed colors per series name; reference lines (ideal slopes) in grays. */
function colorScale(series: string[], reference: (s: string) => boolean) {
  let k = 0;
  let g = 0;
  return {
    domain: series,
    range: series.map((s) => (reference(s) ? IDEAL_COLORS[g++ % IDEAL_COLORS.length] : PALETTE[k++ % PALETTE.length])),
  };
}

/** Legends of line charts show line samples, so dashes are visible there. */
const LINE_LEGEND = { legend: { symbolType: 'stroke', symbolStrokeWidth: 2.5, symbolSize: 300 } };

function withLineLegend(b: Record<string, unknown>): Record<string, unknown> {
  const config = b.config as Record<string, Record<string, unknown>>;
  return { ...b, config: { ...config, legend: { ...config.legend, ...LINE_LEGEND.legend } } };
}

export function attentionChart(r: BenchReport): ChartDef | null {
  const s = r.sections.attention;
  if (!s || s.status !== 'ok') return null;
  const data: Record<string, unknown>[] = [];
  const label = (impl: string, pattern: string, w: number | null) =>
    impl === 'pytorch' ? `PyTorch ${pattern}${pattern === 'banded' ? ' (mask)' : ''}` : `${impl} ${pattern}${w ? ` w=${w}` : ''}`;
  for (const row of s.rows) {
    const kernel = label(row.impl, row.pattern, row.window);
    if (row.forward) data.push({ kernel, pass: 'forward', seq: row.seq, ms: row.forward.median, kind: 'measured' });
    if (row.forwardBackward) data.push({ kernel, pass: 'forward+backward', seq: row.seq, ms: row.forwardBackward.median, kind: 'measured' });
  }
  if (!data.length) return null;
  const seqs = [...new Set(data.map((d) => d.seq as number))].sort((a, b) => a - b);
  const w = s.rows.find((x) => x.window)?.window ?? null;
  // Ideal slopes through the largest measured T of the fused kernels.
  for (const pass of ['forward', 'forward+backward']) {
    for (const [pattern, name, exp] of [
      ['dense', 'ideal ∝ T² (dense)', 2],
      ['banded', `ideal ∝ T·w (banded)`, 1],
    ] as const) {
      const pts = data.filter((d) => d.pass === pass && d.kernel === label('fused', pattern, pattern === 'banded' ? w : null));
      if (!pts.length) continue;
      const last = pts.reduce((a, b) => ((a.seq as number) > (b.seq as number) ? a : b));
      const T1 = last.seq as number;
      const ms1 = last.ms as number;
      for (const T of seqs) data.push({ kernel: name, pass, seq: T, ms: ms1 * Math.pow(T / T1, exp), kind: 'ideal' });
    }
  }
  const series = [...new Set(data.map((d) => d.kernel as string))];
  const color = { field: 'kernel', type: 'nominal', title: 'kernel', scale: colorScale(series, (x) => x.startsWith('ideal')) };
  const panel = (pass: string) => ({
    title: pass === 'forward' ? 'forward' : 'forward + backward',
    width: 420,
    height: 320,
    transform: [{ filter: `datum.pass === '${pass}'` }],
    mark: { type: 'line', point: true, strokeWidth: 2 },
    encoding: {
      x: { field: 'seq', type: 'quantitative', title: 'sequence length T', scale: { type: 'log', base: 2, nice: false }, axis: { values: seqs } },
      y: { field: 'ms', type: 'quantitative', title: 'ms (median)', scale: { type: 'log' } },
      color,
      strokeDash: {
        field: 'kind',
        type: 'nominal',
        title: 'line',
        scale: { domain: ['measured', 'ideal'], range: [[1, 0], [5, 4]] },
        legend: { symbolStrokeColor: '#333', encode: { symbols: { update: { stroke: { value: '#333' } } } } },
      },
      tooltip: [{ field: 'kernel' }, { field: 'seq' }, { field: 'ms', format: '.2f' }],
    },
  });
  const first = s.rows[0];
  return {
    name: 'attention',
    title: 'Attention: time vs sequence length (log-log)',
    series,
    spec: {
      ...withLineLegend(base(`Attention time vs sequence length — batch ${first.batch}, ${first.heads} heads, headDim ${first.headDim} (log-log)`)),
      data: { values: data },
      hconcat: [panel('forward'), panel('forward+backward')],
    },
  };
}

export function gemmChart(r: BenchReport): ChartDef | null {
  const s = r.sections.gemm;
  if (!s || s.status !== 'ok') return null;
  const data = s.rows
    .filter((x) => x.gflops !== null)
    .map((x) => ({
      shape: `${x.layer} ${x.K}x${x.N} · ${x.form}`,
      series: `${x.impl === 'engine' ? 'gpt-engine' : 'PyTorch'} ${x.precision}`,
      gflops: x.gflops,
    }));
  if (!data.length) return null;
  const peaks: Record<string, unknown>[] = [];
  if (r.ceilings.fp32.value !== null) peaks.push({ peak: `fp32 FMA peak ${Math.round(r.ceilings.fp32.value)}`, gflops: r.ceilings.fp32.value });
  if (r.ceilings.bf16.value !== null && s.rows.some((x) => x.precision === 'bf16'))
    peaks.push({ peak: `bf16 peak ${Math.round(r.ceilings.bf16.value)}`, gflops: r.ceilings.bf16.value });
  const series = [...new Set(data.map((d) => d.series))];
  const shapes = [...new Set(data.map((d) => d.shape))];
  return {
    name: 'gemm',
    title: 'GEMM: GFLOP/s per shape against the peaks',
    series: [...series, ...peaks.map((p) => p.peak as string)],
    spec: {
      ...base(`GEMM GFLOP/s per shape (M = ${s.rows[0].M}) against the FMA peaks`),
      width: Math.max(600, shapes.length * 14 * Math.max(1, series.length)),
      height: 340,
      layer: [
        {
          data: { values: data },
          mark: { type: 'bar' },
          encoding: {
            x: { field: 'shape', type: 'nominal', title: 'layer, K x N · form', sort: shapes, axis: { labelAngle: -35, labelLimit: 320 } },
            xOffset: { field: 'series', type: 'nominal', sort: series },
            y: { field: 'gflops', type: 'quantitative', title: 'GFLOP/s (median)' },
            color: { field: 'series', type: 'nominal', title: 'series', scale: colorScale(series, () => false), sort: series },
            tooltip: [{ field: 'shape' }, { field: 'series' }, { field: 'gflops', format: '.1f' }],
          },
        },
        {
          data: { values: peaks },
          mark: { type: 'rule', strokeDash: [6, 4], strokeWidth: 1.5, color: '#444' },
          encoding: { y: { field: 'gflops', type: 'quantitative' } },
        },
        {
          data: { values: peaks },
          mark: { type: 'text', align: 'left', dx: 4, dy: -7, color: '#444', x: 0 },
          encoding: { y: { field: 'gflops', type: 'quantitative' }, text: { field: 'peak' } },
        },
      ],
    },
  };
}

export function trainChart(r: BenchReport): ChartDef | null {
  const s = r.sections.train;
  if (!s || !s.rows.some((x) => x.tokensPerSecond !== null)) return null;
  const data = s.rows
    .filter((x) => x.tokensPerSecond !== null)
    .map((x) => ({
      run: `${x.preset} B${x.batch} T${x.seq}`,
      series: `${x.impl === 'engine' ? 'gpt-engine' : 'PyTorch'} ${x.precision}`,
      tokens: x.tokensPerSecond,
      mfu: x.mfu === null ? null : 100 * x.mfu,
    }));
  const series = [...new Set(data.map((d) => d.series))];
  const runs = [...new Set(data.map((d) => d.run))];
  const panel = (field: 'tokens' | 'mfu', title: string, axis: string) => ({
    title,
    width: Math.max(260, runs.length * series.length * 26),
    height: 280,
    mark: { type: 'bar' },
    encoding: {
      x: { field: 'run', type: 'nominal', title: 'preset, batch, sequence', sort: runs, axis: { labelAngle: 0 } },
      xOffset: { field: 'series', type: 'nominal', sort: series },
      y: { field, type: 'quantitative', title: axis },
      color: { field: 'series', type: 'nominal', title: 'series', scale: colorScale(series, () => false), sort: series },
      tooltip: [{ field: 'run' }, { field: 'series' }, { field, format: '.1f' }],
    },
  });
  return {
    name: 'train',
    title: 'Training: tokens/s and MFU',
    series,
    spec: {
      ...base('Training step throughput and MFU (MFU against the FMA peak of the precision)'),
      data: { values: data },
      hconcat: [panel('tokens', 'tokens/s', 'tokens/s (median step)'), panel('mfu', 'MFU', 'MFU %')],
    },
  };
}

export function generateChart(r: BenchReport): ChartDef | null {
  const s = r.sections.generate;
  if (!s || !s.rows.some((x) => x.decodeTokensPerSecond !== null)) return null;
  const data: Record<string, unknown>[] = [];
  for (const x of s.rows) {
    if (x.decodeTokensPerSecond !== null)
      data.push({ series: `${x.impl === 'engine' ? 'gpt-engine' : 'PyTorch'} ${x.precision}`, batch: x.batch, tps: x.decodeTokensPerSecond, kind: 'measured' });
  }
  const bounds = new Map<string, { batch: number; tps: number }[]>();
  for (const x of s.rows)
    if (x.impl === 'engine' && x.boundTokensPerSecond !== null) {
      const k = `bandwidth bound ${x.precision}`;
      if (!bounds.has(k)) bounds.set(k, []);
      if (!bounds.get(k)!.some((p) => p.batch === x.batch)) bounds.get(k)!.push({ batch: x.batch, tps: x.boundTokensPerSecond });
    }
  for (const [k, pts] of bounds) for (const p of pts) data.push({ series: k, batch: p.batch, tps: p.tps, kind: 'bound' });
  const series = [...new Set(data.map((d) => d.series as string))];
  const batches = [...new Set(data.map((d) => d.batch as number))].sort((a, b) => a - b);
  return {
    name: 'generate',
    title: 'Decode: tokens/s per batch size against the bandwidth bound',
    series,
    spec: {
      ...withLineLegend(base(`Decode tokens/s per batch (${s.rows[0].preset}, ${s.rows[0].newTokens} new tokens) against the read-bandwidth bound`)),
      width: 520,
      height: 320,
      data: { values: data },
      mark: { type: 'line', point: { size: 60 }, strokeWidth: 2 },
      encoding: {
        x: {
          field: 'batch',
          type: 'quantitative',
          title: 'batch size',
          scale: { type: 'log', base: 2, nice: false, ...(batches.length === 1 ? { domain: [batches[0] / 2, batches[0] * 2] } : {}) },
          axis: { values: batches, format: 'd' },
        },
        y: { field: 'tps', type: 'quantitative', title: 'decode tokens/s (whole batch)', scale: { type: 'log' } },
        color: { field: 'series', type: 'nominal', title: 'series', scale: colorScale(series, () => false), sort: series },
        strokeDash: {
          field: 'kind',
          type: 'nominal',
          title: 'line',
          scale: { domain: ['measured', 'bound'], range: [[1, 0], [5, 4]] },
          legend: { symbolStrokeColor: '#333', encode: { symbols: { update: { stroke: { value: '#333' } } } } },
        },
        tooltip: [{ field: 'series' }, { field: 'batch' }, { field: 'tps', format: '.1f' }],
      },
    },
  };
}

export function serveChart(r: BenchReport): ChartDef | null {
  const s = r.sections.serve;
  if (!s || !s.rows.some((x) => x.tokensPerSecond !== null)) return null;
  const data = s.rows
    .filter((x) => x.tokensPerSecond !== null)
    .map((x) => ({ series: `${x.mode} (${x.clients})`, tokens: x.tokensPerSecond, ttft: x.ttftP50 }));
  const series = data.map((d) => d.series);
  const panel = (field: 'tokens' | 'ttft', title: string) => ({
    title,
    width: 300,
    height: 26 * series.length,
    mark: { type: 'bar' },
    encoding: {
      y: { field: 'series', type: 'nominal', title: null, sort: series },
      x: { field, type: 'quantitative', title },
      color: { field: 'series', type: 'nominal', title: 'how (clients)', scale: colorScale(series, () => false), sort: series, legend: null },
      tooltip: [{ field: 'series' }, { field, format: '.1f' }],
    },
  });
  return {
    name: 'serve',
    title: 'Serving: tokens/s and time to first token',
    series,
    spec: {
      ...base(`Serving ${s.rows[0].preset}: tokens/s of a round and time to first token (p50), API and HTTP server`),
      data: { values: data },
      hconcat: [panel('tokens', 'tokens/s (all clients)'), panel('ttft', 'time to first token p50 (ms)')],
    },
  };
}

/** The chart definitions of a report (sections without figures have none). */
export function reportCharts(r: BenchReport): ChartDef[] {
  return [attentionChart(r), gemmChart(r), trainChart(r), generateChart(r), serveChart(r)].filter((c): c is ChartDef => c !== null);
}

/** Numbers right-aligned, words left-aligned, regressions in red. */
function cellClass(c: string): string {
  if (c === 'REGRESSION') return 'bad';
  return /^[-+±]?[0-9.]/.test(c) || c === '-' || c === '' ? 'n' : 't';
}

function tableHtml(b: SectionBlock): string {
  if (!b.rows.length) return '';
  const numeric = b.headers.map((_, i) => b.rows.some((r) => cellClass(r[i] ?? '') === 'n' && (r[i] ?? '') !== '-' && (r[i] ?? '') !== ''));
  const head = `<tr>${b.headers.map((h, i) => `<th class="${numeric[i] ? 'n' : 't'}">${escapeHtml(h)}</th>`).join('')}</tr>`;
  const rows = b.rows
    .map((r) => `<tr>${r.map((c) => `<td class="${cellClass(c)}">${escapeHtml(c)}</td>`).join('')}</tr>`)
    .join('\n');
  return `<div class="table"><table>\n${head}\n${rows}\n</table></div>`;
}

export function reportHtml(r: BenchReport, svgs: Map<string, string>): string {
  const m = machineLines(r);
  const parts: string[] = [];
  parts.push(`<h1>gpt-engine benchmark report${r.quick ? ' (quick sizes)' : ''}</h1>`);
  parts.push(`<p class="note">Command: <code>${escapeHtml(r.command)}</code> — ${escapeHtml(r.date)} — ${r.elapsedSeconds.toFixed(0)} s</p>`);
  parts.push(`<h2>Machine and ceilings</h2>\n<ul>\n${m.slice(1).map((l) => `<li>${escapeHtml(l.trim())}</li>`).join('\n')}\n</ul>`);
  for (const b of reportBlocks(r)) {
    const section = b.name.split(' ')[0];
    parts.push(`<h2>${escapeHtml(b.name)}</h2>`);
    parts.push(`<p class="note">${escapeHtml(b.description)}</p>`);
    if (b.status) parts.push(`<p class="bad">${escapeHtml(b.status)}</p>`);
    const svg = svgs.get(section);
    if (svg) parts.push(`<div class="chart">${svg}</div>`);
    parts.push(tableHtml(b));
    if (b.lines.length) parts.push(`<ul class="note">\n${b.lines.map((l) => `<li>${escapeHtml(l)}</li>`).join('\n')}\n</ul>`);
  }
  return htmlPage('gpt-engine benchmark report', parts.join('\n'));
}

export interface WrittenReport {
  json: string;
  html: string;
  charts: string[];
}

/** Writes report.json, report.html and one .svg per chart into `dir` (created if needed). */
export async function writeReport(dir: string, r: BenchReport): Promise<WrittenReport> {
  fs.mkdirSync(dir, { recursive: true });
  const json = path.join(dir, 'report.json');
  writeFileAtomicSync(json, JSON.stringify(r, null, 2) + '\n');
  const svgs = new Map<string, string>();
  const charts: string[] = [];
  for (const c of reportCharts(r)) {
    const svg = await renderSvg(c.spec);
    svgs.set(c.name, svg);
    const file = path.join(dir, `${c.name}.svg`);
    writeFileAtomicSync(file, svg);
    charts.push(file);
  }
  const html = path.join(dir, 'report.html');
  writeFileAtomicSync(html, reportHtml(r, svgs));
  return { json, html, charts };
}

/** Re-renders report.html and the charts from a saved report.json. */
export async function rerenderReport(jsonFile: string, dir = path.dirname(jsonFile)): Promise<WrittenReport> {
  const r = JSON.parse(fs.readFileSync(jsonFile, 'utf8')) as BenchReport;
  return writeReport(dir, r);
}
