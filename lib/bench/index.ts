/**
 * The benchmark harness behind `gpt-engine bench`: the machine, the
 * ceilings measured on the spot, then the asked-for sections (attention,
 * gemm, train, generate, serve), each with our figures and, with PyTorch, the
 * twins' figures beside them. A section that fails is reported as failed,
 * with its error, and the others still run. Returns one BenchReport
 * (report.json's content).
 */
import { performance } from 'node:perf_hooks';
import { chooseDevice, DeviceChoice } from '../device';
import { FLOP_CONVENTIONS } from '../flops';
import { runAttention } from './attention';
import { compareReports, readBaseline } from './compare';
import { errorLine, SectionContext, SectionOptions } from './context';
import { runGemm } from './gemm';
import { runGenerate } from './generate';
import { runServe } from './serve';
import { deviceCeilings, machineInfo, measureCeilings } from './machine';
import { findPytorch, pytorchInfo, PytorchRunner } from './pytorch';
import { runTrain } from './train';
import { BenchPrecision, BenchReport, REPORT_SCHEMA, SectionBase, SectionName } from './types';

export * from './types';
export { figures, compareReports, readBaseline } from './compare';
export { formatReport } from './format';
export { statOf, spread, timeAsync } from './stats';

export interface BenchOptions {
  sections: SectionName[];
  device?: DeviceChoice;
  /** default: fp32 and bf16 where the section supports it */
  precision?: BenchPrecision;
  quick?: boolean;
  withPytorch?: boolean;
  compare?: string;
  preset?: string;
  batch?: number;
  seq?: number;
  /** overrides of the timing defaults */
  warmup?: number;
  repeats?: number;
  command?: string;
  log?: (s: string) => void;
}

export async function runBench(o: BenchOptions): Promise<BenchReport> {
  const t0 = performance.now();
  const log = o.log ?? (() => undefined);
  const { device, reason } = chooseDevice(o.device ?? 'auto');
  const quick = !!o.quick;
  // Read the baseline first: a bad path fails before minutes of measuring.
  const baseline = o.compare ? readBaseline(o.compare) : null;
  const machine = machineInfo(device);
  const ceilings = await measureCeilings({ quick, device, log });
  let runner: PytorchRunner | null = null;
  let found: ReturnType<typeof findPytorch> | null = null;
  if (o.withPytorch) {
    log('looking for python3 with torch');
    found = findPytorch(machine.threads);
    if ('runner' in found) runner = found.runner;
  }
  const precisions: BenchPrecision[] = o.precision ? [o.precision] : ['fp32', 'bf16'];
  const opts: SectionOptions = {
    quick,
    device,
    precisions,
    warmup: o.warmup ?? 1,
    repeats: o.repeats ?? (quick ? 3 : 5),
    caseBudgetMs: quick ? 1500 : 10000,
    preset: o.preset,
    batch: o.batch,
    seq: o.seq,
    threads: machine.threads,
  };
  const ctx: SectionContext = { opts, ceilings: deviceCeilings(ceilings, device), pytorch: runner, log };
  const report: BenchReport = {
    schema: REPORT_SCHEMA,
    date: new Date().toISOString(),
    command: o.command ?? `gpt-engine bench ${o.sections.join(' ')}`,
    quick,
    device,
    deviceReason: reason,
    precisions,
    warmup: opts.warmup,
    repeats: opts.repeats,
    conventions: FLOP_CONVENTIONS,
    machine,
    ceilings,
    pytorch: pytorchInfo(!!o.withPytorch, found),
    sections: {},
    elapsedSeconds: 0,
  };
  const guardSection = async <S extends SectionBase>(name: SectionName, fn: () => Promise<S>): Promise<S> => {
    try {
      return await fn();
    } catch (e) {
      return { status: 'error', reason: `failed: ${errorLine(e)}`, description: name, notes: [], rows: [] } as unknown as S;
    }
  };
  for (const name of o.sections) {
    log(`section ${name}`);
    if (name === 'attention') report.sections.attention = await guardSection(name, () => runAttention({ ...ctx, opts: { ...opts, precisions: ['fp32'] } }));
    if (name === 'gemm') report.sections.gemm = await guardSection(name, () => runGemm(ctx));
    if (name === 'train') report.sections.train = await guardSection(name, () => runTrain(ctx));
    if (name === 'generate') report.sections.generate = await guardSection(name, () => runGenerate(ctx));
    if (name === 'serve') report.sections.serve = await guardSection(name, () => runServe(ctx));
  }
  if (baseline && o.compare) report.comparison = compareReports(report, baseline, o.compare);
  report.elapsedSeconds = (performance.now() - t0) / 1000;
  return report;
}
