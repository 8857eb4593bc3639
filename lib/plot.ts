/**
 * Charts rendered to SVG in Node by vega-lite + vega (no browser), and the
 * training-curve plot: train and validation loss against steps and tokens,
 * the learning rate on a second panel, several runs overlaid with a legend.
 * `writeLossPlot(runDir)` is what the trainer calls to keep
 * <run>/loss.svg current; `gpt-engine plot` uses `plotRuns`.
 *
 * vega and vega-lite are ES modules only: they are loaded with a dynamic
 * import(). Where that is not possible (a CommonJS-only loader, as under
 * jest), the chart is rendered by a child Node process instead.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { ArgumentRangeError, BadFileError } from './errors';
import { writeFileAtomic } from './fsutil';
import { packageRoot } from './native';
import { LOSS_PLOT_FILE, METRICS_FILE } from './run-folder';

/** A vega-lite specification (kept loose: the charts here are plain JSON). */
export type VegaLiteSpec = Record<string, unknown>;

// ---------------------------------------------------------------------------
// Rendering

type Renderer = (spec: VegaLiteSpec) => Promise<string>;
let inProcess: Promise<Renderer | null> | null = null;

function loadInProcess(): Promise<Renderer | null> {
  if (!inProcess)
    inProcess = (async () => {
      try {
        const vl = await import(pathToFileURL(require.resolve('vega-lite')).href);
        const vega = await import(pathToFileURL(require.resolve('vega')).href);
        return async (spec: VegaLiteSpec) => {
          const compiled = vl.compile(spec as never).spec;
          const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
          try {
            return await view.toSVG();
          } finally {
            view.finalize();
          }
        };
      } catch {
        return null;
      }
    })();
  return inProcess;
}

// The same rendering in a child process, for loaders that cannot import ES modules.
const CHILD_SCRIPT = `
const chunks = [];
process.stdin.on('data', (d) => chunks.push(d));
process.stdin.on('end', async () => {
  try {
    const vl = await import(process.env.GPT_ENGINE_VL_URL);
    const vega = await import(process.env.GPT_ENGINE_VEGA_URL);
    const spec = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: 'none' });
    process.stdout.write(await view.toSVG());
    view.finalize();
  } catch (e) {
    process.stderr.write(String(e && e.stack || e));
    process.exit(1);
  }
});`;

function renderInChild(spec: VegaLiteSpec): Promise<string> {
  return new Promise((resolve, reject) => {
    const env = {
      ...process.env,
      GPT_ENGINE_VL_URL: pathToFileURL(require.resolve('vega-lite')).href,
      GPT_ENGINE_VEGA_URL: pathToFileURL(require.resolve('vega')).href,
    };
    const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD_SCRIPT], { env, stdio: ['pipe', 'pipe', 'pipe'], cwd: packageRoot() });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`chart rendering failed: ${err.split('\n')[0]}`))));
    child.stdin.end(JSON.stringify(spec));
  });
}

/** Renders a vega-lite spec to an SVG document (a string). */
export async function renderSvg(spec: VegaLiteSpec): Promise<string> {
  const r = await loadInProcess();
  return r ? r(spec) : renderInChild(spec);
}

/** Escapes text for HTML. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);
}

/** A self-contained HTML page (no scripts, no external resources). */
export function htmlPage(title: string, body: string): string {
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:24px auto;max-width:1400px;color:#222;padding:0 16px}
.table{overflow-x:auto}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}th,td{border:1px solid #ddd;padding:3px 8px;text-align:right;white-space:nowrap}
th{background:#f5f5f5}.t{text-align:left}.n{text-align:right}
.note{color:#555;font-size:13px}.chart{margin:12px 0;overflow-x:auto}.bad{color:#b00}code{background:#f3f3f3;padding:1px 4px}
</style></head>
<body>
${body}
</body></html>
`;
}

// ---------------------------------------------------------------------------
// Training metrics

export interface MetricsPoint {
  step: number;
  tokens: number | null;
  loss: number | null;
  valLoss: number | null;
  lr: number | null;
}

export interface RunMetrics {
  name: string;
  file: string;
  points: MetricsPoint[];
  /** tokens per step used for the tokens axis, when it had to be derived */
  tokensPerStep: number | null;
}

/** metrics.jsonl of a run folder, or the file itself. */
export function metricsFile(input: string): string {
  let st: fs.Stats;
  try {
    st = fs.statSync(input);
  } catch {
    throw new ArgumentRangeError(`Expected a run folder or a metrics.jsonl file but received "${input}" (it does not exist)`);
  }
  if (st.isDirectory()) {
    const f = path.join(input, METRICS_FILE);
    if (!fs.existsSync(f)) throw new ArgumentRangeError(`Expected a run folder with a metrics.jsonl but received "${input}" (no metrics.jsonl in it)`);
    return f;
  }
  return input;
}

const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

/** Reads a run's metrics; lines that are not JSON objects are a BadFileError naming the line. */
export function readMetrics(input: string, name?: string): RunMetrics {
  const file = metricsFile(input);
  const text = fs.readFileSync(file, 'utf8');
  const points: MetricsPoint[] = [];
  const perStep: number[] = [];
  const lines = text.split('\n');
  lines.forEach((line, i) => {
    if (!line.trim()) return;
    let j: Record<string, unknown>;
    try {
      j = JSON.parse(line);
    } catch {
      // a line cut short by a run still writing is not an error at the end
      if (i >= lines.length - 2) return;
      throw new BadFileError(`${file}: line ${i + 1} is not JSON`);
    }
    if (!j || typeof j !== 'object') throw new BadFileError(`${file}: line ${i + 1} is not a JSON object`);
    const step = num(j.step);
    if (step === null) return;
    const tokens = num(j.tokens) ?? num(j.tokens_seen) ?? num(j.total_tokens);
    points.push({ step, tokens, loss: num(j.loss), valLoss: num(j.val_loss), lr: num(j.lr) });
    const tps = num(j.tokens_per_s);
    const ms = num(j.ms_per_step);
    if (tps !== null && ms !== null && tps > 0 && ms > 0) perStep.push((tps * ms) / 1000);
  });
  points.sort((a, b) => a.step - b.step);
  let tokensPerStep: number | null = null;
  if (points.some((p) => p.tokens === null) && perStep.length) {
    // tokens/s x ms/step is the batch's token count; the median rounds away timer noise
    const s = [...perStep].sort((a, b) => a - b);
    tokensPerStep = Math.round(s[Math.floor(s.length / 2)]);
    for (const p of points) if (p.tokens === null) p.tokens = p.step * tokensPerStep;
  }
  return { name: name ?? runName(file), file, points, tokensPerStep };
}

function runName(file: string): string {
  const dir = path.dirname(path.resolve(file));
  return path.basename(file) === METRICS_FILE ? path.basename(dir) : path.basename(file).replace(/\.jsonl?$/, '');
}

/** Makes run names unique by adding parent folders where two runs share a name. */
function uniqueNames(runs: RunMetrics[]): void {
  const count = new Map<string, number>();
  for (const r of runs) count.set(r.name, (count.get(r.name) ?? 0) + 1);
  runs.forEach((r, i) => {
    if ((count.get(r.name) ?? 0) > 1) {
      const dir = path.dirname(path.resolve(r.file));
      r.name = `${path.basename(path.dirname(dir))}/${r.name}`;
      if (runs.some((o, k) => k !== i && o.name === r.name)) r.name = `${r.name} (${i + 1})`;
    }
  });
}

/** The loss-curve chart: loss vs step and vs tokens on top, the learning rate below. */
export function lossChartSpec(runs: RunMetrics[]): VegaLiteSpec {
  const loss: Record<string, unknown>[] = [];
  const lr: Record<string, unknown>[] = [];
  for (const r of runs)
    for (const p of r.points) {
      if (p.loss !== null) loss.push({ run: r.name, split: 'train', step: p.step, tokens: p.tokens, loss: p.loss });
      if (p.valLoss !== null) loss.push({ run: r.name, split: 'validation', step: p.step, tokens: p.tokens, loss: p.valLoss });
      if (p.lr !== null) lr.push({ run: r.name, step: p.step, lr: p.lr });
    }
  const color = { field: 'run', type: 'nominal', title: 'run', sort: runs.map((r) => r.name) };
  const dash = { field: 'split', type: 'nominal', title: 'loss', scale: { domain: ['train', 'validation'] }, legend: { symbolStrokeColor: '#333', encode: { symbols: { update: { stroke: { value: '#333' } } } } } };
  const lossPanel = (xField: 'step' | 'tokens', title: string) => ({
    title,
    width: 430,
    height: 260,
    data: { values: xField === 'tokens' ? loss.filter((d) => d.tokens !== null) : loss },
    layer: [
      {
        transform: [{ filter: "datum.split === 'train'" }],
        mark: { type: 'line', strokeWidth: 1.5 },
        encoding: {
          x: { field: xField, type: 'quantitative', title: xField === 'step' ? 'step' : 'tokens', axis: { format: '~s' } },
          y: { field: 'loss', type: 'quantitative', scale: { zero: false }, title: 'loss' },
          color,
          strokeDash: dash,
        },
      },
      {
        transform: [{ filter: "datum.split === 'validation'" }],
        mark: { type: 'line', strokeWidth: 2, point: { size: 30 } },
        encoding: {
          x: { field: xField, type: 'quantitative' },
          y: { field: 'loss', type: 'quantitative' },
          color,
          strokeDash: dash,
        },
      },
    ],
  });
  const panels: Record<string, unknown>[] = [lossPanel('step', 'loss vs step')];
  if (loss.some((d) => d.tokens !== null)) panels.push(lossPanel('tokens', 'loss vs tokens'));
  const lrPanel = {
    title: 'learning rate',
    width: panels.length === 2 ? 430 * 2 + 40 : 430,
    height: 120,
    data: { values: lr },
    mark: { type: 'line', strokeWidth: 1.5 },
    encoding: {
      x: { field: 'step', type: 'quantitative', title: 'step' },
      y: { field: 'lr', type: 'quantitative', title: 'lr', axis: { format: '.1e' } },
      color,
    },
  };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: runs.length === 1 ? `training: ${runs[0].name}` : `training: ${runs.length} runs`, anchor: 'start' },
    background: 'white',
    padding: 12,
    vconcat: [{ hconcat: panels }, ...(lr.length ? [lrPanel] : [])],
    config: { view: { stroke: '#ddd' }, legend: { orient: 'right', symbolType: 'stroke', symbolStrokeWidth: 2.5, symbolSize: 300 } },
  };
}

/** Writes <runDir>/loss.svg from <runDir>/metrics.jsonl; resolves the path written. */
export async function writeLossPlot(runDir: string): Promise<string> {
  const run = readMetrics(runDir);
  const svg = await renderSvg(lossChartSpec([run]));
  const out = path.join(fs.statSync(runDir).isDirectory() ? runDir : path.dirname(runDir), LOSS_PLOT_FILE);
  await writeFileAtomic(out, svg);
  return out;
}

export interface PlotResult {
  out: string;
  runs: { name: string; file: string; points: number; lastLoss: number | null; lastValLoss: number | null }[];
}

/** Plots one or more runs into an .svg or a self-contained .html page. */
export async function plotRuns(inputs: string[], out: string): Promise<PlotResult> {
  if (!inputs.length) throw new ArgumentRangeError('Expected at least one run folder or metrics.jsonl for plot but received none');
  const ext = path.extname(out).toLowerCase();
  if (ext !== '.svg' && ext !== '.html')
    throw new ArgumentRangeError(`Expected a file ending in .svg or .html for --out but received "${out}"`);
  const runs = inputs.map((i) => readMetrics(i));
  uniqueNames(runs);
  const svg = await renderSvg(lossChartSpec(runs));
  const summary = runs.map((r) => {
    const last = [...r.points].reverse();
    return {
      name: r.name,
      file: r.file,
      points: r.points.length,
      lastLoss: last.find((p) => p.loss !== null)?.loss ?? null,
      lastValLoss: last.find((p) => p.valLoss !== null)?.valLoss ?? null,
    };
  });
  if (ext === '.svg') await writeFileAtomic(out, svg);
  else {
    const rows = summary
      .map(
        (s) =>
          `<tr><td>${escapeHtml(s.name)}</td><td>${s.points}</td><td>${s.lastLoss?.toFixed(4) ?? '-'}</td><td>${s.lastValLoss?.toFixed(4) ?? '-'}</td><td>${escapeHtml(s.file)}</td></tr>`,
      )
      .join('\n');
    const body =
      `<h1>Training curves</h1>\n<div class="chart">${svg}</div>\n` +
      `<table><tr><th>run</th><th>points</th><th>last loss</th><th>last val loss</th><th>metrics</th></tr>\n${rows}</table>\n` +
      `<p class="note">Made by gpt-engine plot on ${escapeHtml(new Date().toISOString())}.</p>`;
    await writeFileAtomic(out, htmlPage('gpt-engine: training curves', body));
  }
  return { out, runs: summary };
}
