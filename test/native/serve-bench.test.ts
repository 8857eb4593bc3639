/**
 * `gpt-engine bench serve --quick` end to end (the built CLI): every way of
 * serving concurrent clients measured, with tokens/s, time to first token
 * and latency percentiles in report.json, and the section's table and
 * chart in report.html. Timings are not compared (a shared machine), only
 * that they exist and are consistent.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { percentile } from '../../lib/bench/serve';
import { BenchReport } from '../../lib/bench/types';
import { describeExit, distFile, runNode } from '../helpers/child-util';

test('percentile: nearest rank', () => {
  expect(percentile([], 0.5)).toBeNull();
  expect(percentile([5], 0.99)).toBe(5);
  expect(percentile([4, 1, 3, 2], 0.5)).toBe(2);
  expect(percentile([4, 1, 3, 2], 0.99)).toBe(4);
  expect(percentile(Array.from({ length: 100 }, (_, i) => 100 - i), 0.99)).toBe(99);
});

test('bench serve --quick: API and server rows, into report.json and report.html', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gpte-bench-serve-'));
  try {
    const r = await runNode(
      [distFile('bin/gpt-engine.js'), 'bench', 'serve', '--quick', '--device', 'cpu', '--batch', '4', '--warmup', '0', '--repeats', '2', '--json', '--out', dir],
      { timeoutMs: 170000 },
    );
    if (r.code !== 0) throw new Error(describeExit(r));
    const report = JSON.parse(r.stdout) as BenchReport;
    expect(Object.keys(report.sections)).toEqual(['serve']);
    const s = report.sections.serve!;
    expect(s.status).toBe('ok');
    expect(s.rows.map((x) => x.mode)).toEqual([
      'api-alone',
      'api-batch',
      'api-fifo',
      'api-concurrent',
      'api-busy',
      'server-alone',
      'server-fifo',
      'server-concurrent',
    ]);
    for (const x of s.rows) {
      expect(x.note).toBeUndefined();
      expect(x.preset).toBe('tiny');
      expect(x.clients).toBe(x.mode.endsWith('alone') ? 1 : 4);
      expect(x.tokensPerSecond).toBeGreaterThan(0);
      expect(x.wall!.samples).toHaveLength(2);
      expect(x.ttftP50!).toBeGreaterThan(0);
      expect(x.ttftP50!).toBeLessThanOrEqual(x.ttftP99!);
      expect(x.latencyP50!).toBeLessThanOrEqual(x.latencyP99!);
      expect(x.ttftP99!).toBeLessThanOrEqual(x.latencyP99!);
    }
    expect(s.notes.join('\n')).toMatch(/4 concurrent calls take .*x the time of the same prompts as one batch/);
    expect(s.notes.join('\n')).toMatch(/one at a time \(maxBatch 1\) they take .*x; the continuous batch is .*x faster/);
    expect(s.notes.join('\n')).toMatch(/time to first token of a call arriving while 3 others decode is .*x its value on an idle model/);
    const html = fs.readFileSync(path.join(dir, 'report.html'), 'utf8');
    expect(html).toContain('server, concurrent clients');
    expect((html.match(/<svg\b/g) ?? []).length).toBe(1);
    const svg = fs.readFileSync(path.join(dir, 'serve.svg'), 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}, 180000);
