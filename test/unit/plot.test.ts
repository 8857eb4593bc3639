/**
 * Training curves: reading metrics.jsonl, the chart spec, writeLossPlot (the
 * trainer's call, rendered in a child process under jest), and
 * `gpt-engine plot` through the built CLI.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { lossChartSpec, readMetrics, writeLossPlot } from '../../lib/plot';
import { assertWellFormedXml, cli, linePaths, requireBuiltCli, svgTexts } from './plot-svg-check';

let dir: string;

function writeRun(name: string, steps: number, opts: { tokens?: boolean; k?: number } = {}): string {
  const run = path.join(dir, name);
  fs.mkdirSync(run, { recursive: true });
  const lines: string[] = [];
  for (let i = 1; i <= steps; i++) {
    const loss = 10 * Math.exp((-i / 20) * (opts.k ?? 1)) + 2;
    const o: Record<string, unknown> = { step: i, loss, lr: 6e-4 * Math.min(1, i / 5), grad_norm: 1.1, tokens_per_s: 2048, ms_per_step: 500, mfu: 0.3 };
    if (opts.tokens) o.tokens = i * 1024;
    lines.push(JSON.stringify(o));
    if (i % 10 === 0) lines.push(JSON.stringify({ step: i, val_loss: loss + 0.25 }));
  }
  fs.writeFileSync(path.join(run, 'metrics.jsonl'), lines.join('\n') + '\n');
  return run;
}

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gpt-engine-plot-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('readMetrics', () => {
  test('train and validation points; tokens from tokens/s x ms/step when not logged', () => {
    const m = readMetrics(writeRun('derive', 30));
    expect(m.name).toBe('derive');
    expect(m.tokensPerStep).toBe(1024);
    const train = m.points.filter((p) => p.loss !== null);
    const val = m.points.filter((p) => p.valLoss !== null);
    expect(train).toHaveLength(30);
    expect(val).toHaveLength(3);
    expect(train[9].tokens).toBe(10 * 1024);
    expect(val[0].step).toBe(10);
  });
  test('logged token counts are used as they are', () => {
    const m = readMetrics(path.join(writeRun('logged', 5, { tokens: true }), 'metrics.jsonl'));
    expect(m.tokensPerStep).toBeNull();
    expect(m.points.map((p) => p.tokens)).toEqual([1024, 2048, 3072, 4096, 5120]);
  });
  test('a last line cut short by a running trainer is skipped; a bad line elsewhere is an error naming it', () => {
    const run = writeRun('partial', 3);
    fs.appendFileSync(path.join(run, 'metrics.jsonl'), '{"step": 4, "lo');
    expect(readMetrics(run).points).toHaveLength(3);
    const bad = path.join(dir, 'bad.jsonl');
    fs.writeFileSync(bad, '{"step":1,"loss":2}\nnot json\n{"step":2,"loss":1}\n{"step":3,"loss":1}\n');
    expect(() => readMetrics(bad)).toThrow(/bad\.jsonl: line 2 is not JSON/);
  });
  test('missing inputs name the path', () => {
    expect(() => readMetrics(path.join(dir, 'nope'))).toThrow(/Expected a run folder or a metrics.jsonl file but received ".*nope" \(it does not exist\)/);
    fs.mkdirSync(path.join(dir, 'empty'));
    expect(() => readMetrics(path.join(dir, 'empty'))).toThrow(/no metrics.jsonl in it/);
  });
});

describe('lossChartSpec', () => {
  test('loss vs step and vs tokens, lr below, one color per run', () => {
    const spec = lossChartSpec([readMetrics(writeRun('s-a', 20)), readMetrics(writeRun('s-b', 20, { k: 2 }))]);
    const top = (spec.vconcat as { hconcat?: { title: string }[] }[])[0].hconcat!;
    expect(top.map((p) => p.title)).toEqual(['loss vs step', 'loss vs tokens']);
    expect((spec.vconcat as { title?: string }[])[1].title).toBe('learning rate');
    const values = (top[0] as unknown as { data: { values: { run: string; split: string }[] } }).data.values;
    expect(new Set(values.map((v) => v.run))).toEqual(new Set(['s-a', 's-b']));
    expect(new Set(values.map((v) => v.split))).toEqual(new Set(['train', 'validation']));
  });
});

describe('writeLossPlot (what the trainer calls)', () => {
  test('writes <run>/loss.svg, well-formed, with train and validation', async () => {
    const run = writeRun('trainer-run', 25);
    const out = await writeLossPlot(run);
    expect(out).toBe(path.join(run, 'loss.svg'));
    const svg = fs.readFileSync(out, 'utf8');
    expect(assertWellFormedXml(svg)).toBe('svg');
    expect(svgTexts(svg)).toEqual(expect.arrayContaining(['train', 'validation', 'loss vs step', 'learning rate']));
  });
});

describe('gpt-engine plot (built CLI)', () => {
  beforeAll(() => requireBuiltCli());

  test('several runs overlaid with a legend, SVG', () => {
    const a = writeRun('run-a', 40);
    const b = writeRun('run-b', 40, { k: 1.5 });
    const out = path.join(dir, 'both.svg');
    const r = cli(['plot', a, path.join(b, 'metrics.jsonl'), '--out', out]);
    expect(r.stderr).toMatch(/wrote .*both\.svg/);
    expect(r.status).toBe(0);
    const svg = fs.readFileSync(out, 'utf8');
    expect(assertWellFormedXml(svg)).toBe('svg');
    const texts = svgTexts(svg);
    for (const t of ['run-a', 'run-b', 'train', 'validation', 'loss vs step', 'loss vs tokens', 'learning rate', 'tokens', 'step', 'lr'])
      expect(texts).toContain(t);
    // per run: train and validation in two loss panels, and the lr line
    expect(linePaths(svg)).toBe(2 * (2 * 2 + 1));
  });

  test('an .html page holds the chart and a summary, self-contained', () => {
    const a = writeRun('run-h', 12);
    const out = path.join(dir, 'page.html');
    const r = cli(['plot', a, '--out', out, '--json']);
    expect(r.status).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.runs[0]).toMatchObject({ name: 'run-h', points: 13 });
    const html = fs.readFileSync(out, 'utf8');
    expect(html).toMatch(/^<!DOCTYPE html>/);
    expect(html).toMatch(/<svg\b[\s\S]*<\/svg>/);
    expect(html).not.toMatch(/<script/);
  });

  test('two runs with the same folder name get told apart', () => {
    const x = path.join(dir, 'x');
    const y = path.join(dir, 'y');
    fs.mkdirSync(x);
    fs.mkdirSync(y);
    fs.cpSync(writeRun('same', 5), path.join(x, 'same'), { recursive: true });
    fs.cpSync(writeRun('same', 5), path.join(y, 'same'), { recursive: true });
    const out = path.join(dir, 'same.svg');
    const r = cli(['plot', path.join(x, 'same'), path.join(y, 'same'), '--out', out]);
    expect(r.status).toBe(0);
    expect(svgTexts(fs.readFileSync(out, 'utf8'))).toEqual(expect.arrayContaining(['x/same', 'y/same']));
  });

  test('bad output name or input: exit 1 with the message', () => {
    let r = cli(['plot', writeRun('run-e', 3), '--out', path.join(dir, 'x.png')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/Expected a file ending in \.svg or \.html for --out but received ".*x\.png"/);
    r = cli(['plot', path.join(dir, 'missing-run')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/it does not exist/);
  });
});
