/**
 * `bench --compare baseline.json`: each headline figure beside the saved
 * baseline's, with the ratio. A change counts as a regression only when it
 * exceeds the spread seen in the repeats: the tolerance is the larger
 * relative spread ((max - min) / median) of the two runs, and at least 3%.
 */
import * as fs from 'node:fs';
import { ArgumentRangeError } from '../errors';
import { spread } from './stats';
import { BenchReport, Comparison, ComparisonEntry, REPORT_SCHEMA, Stat } from './types';

export interface Figure {
  key: string;
  label: string;
  unit: string;
  higherIsBetter: boolean;
  value: number;
  /** relative spread of the repeats behind the value */
  spread: number;
}

const MIN_TOLERANCE = 0.03;

function add(out: Figure[], key: string, label: string, unit: string, higher: boolean, value: number | null, s: Stat | null): void {
  if (value === null || !Number.isFinite(value) || !s) return;
  out.push({ key, label, unit, higherIsBetter: higher, value, spread: spread(s) });
}

/** The headline figures of a report, keyed so two runs line up. */
export function figures(r: BenchReport): Figure[] {
  const out: Figure[] = [];
  for (const row of r.sections.attention?.rows ?? []) {
    const base = `attention/${row.impl}/${row.pattern}${row.window ? row.window : ''}/B${row.batch}H${row.heads}D${row.headDim}/T${row.seq}`;
    const name = `attention ${row.impl} ${row.pattern} T=${row.seq}`;
    add(out, `${base}/fwd`, `${name} fwd`, 'ms', false, row.forward?.median ?? null, row.forward);
    add(out, `${base}/fwdbwd`, `${name} fwd+bwd`, 'ms', false, row.forwardBackward?.median ?? null, row.forwardBackward);
  }
  for (const row of r.sections.gemm?.rows ?? [])
    add(
      out,
      `gemm/${row.impl}/${row.precision}/${row.layer}/${row.form}/M${row.M}`,
      `gemm ${row.impl} ${row.layer} ${row.form} ${row.precision}`,
      'GFLOP/s',
      true,
      row.gflops,
      row.time,
    );
  for (const row of r.sections.train?.rows ?? [])
    add(
      out,
      `train/${row.impl}/${row.preset}/${row.precision}/B${row.batch}T${row.seq}`,
      `train ${row.impl} ${row.preset} B${row.batch} T${row.seq} ${row.precision}`,
      'tokens/s',
      true,
      row.tokensPerSecond,
      row.step,
    );
  for (const row of r.sections.generate?.rows ?? [])
    add(
      out,
      `generate/${row.impl}/${row.preset}/${row.precision}/B${row.batch}`,
      `decode ${row.impl} ${row.preset} batch ${row.batch} ${row.precision}`,
      'tokens/s',
      true,
      row.decodeTokensPerSecond,
      row.decode,
    );
  for (const row of r.sections.serve?.rows ?? [])
    add(
      out,
      `serve/${row.mode}/${row.preset}/${row.precision}/C${row.clients}/N${row.newTokens}`,
      `serve ${row.mode} ${row.preset} ${row.clients} clients ${row.precision}`,
      'tokens/s',
      true,
      row.tokensPerSecond,
      row.wall,
    );
  return out;
}

export function readBaseline(file: string, flag = '--compare'): BenchReport {
  let j: unknown;
  try {
    j = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new ArgumentRangeError(`Expected a readable report.json for ${flag} but received "${file}" (${(e as Error).message.split('\n')[0]})`);
  }
  if (!j || typeof j !== 'object' || (j as { schema?: unknown }).schema !== REPORT_SCHEMA)
    throw new ArgumentRangeError(`Expected a gpt-engine bench report (schema "${REPORT_SCHEMA}") for ${flag} but received "${file}"`);
  return j as BenchReport;
}

export function compareReports(current: BenchReport, baseline: BenchReport, baselineFile: string): Comparison {
  const base = new Map(figures(baseline).map((f) => [f.key, f]));
  const entries: ComparisonEntry[] = [];
  const seen = new Set<string>();
  for (const f of figures(current)) {
    const b = base.get(f.key);
    if (!b) continue;
    seen.add(f.key);
    const tolerance = Math.max(MIN_TOLERANCE, f.spread, b.spread);
    const ratio = b.value > 0 ? f.value / b.value : NaN;
    let verdict: ComparisonEntry['verdict'] = 'same';
    if (Number.isFinite(ratio)) {
      const better = f.higherIsBetter ? ratio > 1 + tolerance : ratio < 1 - tolerance;
      const worse = f.higherIsBetter ? ratio < 1 - tolerance : ratio > 1 + tolerance;
      verdict = worse ? 'regression' : better ? 'improvement' : 'same';
    }
    entries.push({ key: f.key, label: f.label, unit: f.unit, higherIsBetter: f.higherIsBetter, baseline: b.value, current: f.value, ratio, tolerance, verdict });
  }
  const missing = [...base.keys()].filter((k) => !seen.has(k));
  return {
    baselineFile,
    baselineDate: baseline.date,
    entries,
    regressions: entries.filter((e) => e.verdict === 'regression').length,
    missing,
  };
}
