/**
 * `gpt-engine bench all|attention|gemm|train|generate`: throughput with the
 * machine and its ceilings measured in the same run, PyTorch beside us with
 * --with-pytorch, a baseline beside us with --compare, and report.json +
 * report.html (SVG charts) with --out.
 */
import { formatTrainDist, runTrainDist } from '../../lib/bench/train-dist';
import { Command } from 'commander';
import * as path from 'node:path';
import { getPreset } from '../../lib/config';
import { DEVICE_CHOICES, PRECISIONS } from '../../lib/device';
import { ArgumentRangeError } from '../../lib/errors';
import { BENCH_SECTIONS, BenchReport, compareReports, formatReport, readBaseline, runBench, SECTION_NAMES, SectionName } from '../../lib/bench';
import { writeReport } from '../../lib/report';
import { choiceFlag, intFlag, log, printJson } from '../cli-util';

const WHATS = ['all', ...BENCH_SECTIONS] as const;

interface BenchFlags {
  device: string;
  nproc?: string;
  steps?: string;
  precision?: string;
  quick?: boolean;
  withPytorch?: boolean;
  json?: boolean;
  out?: string;
  compare?: string;
  preset?: string;
  batch?: string;
  seq?: string;
  repeats?: string;
  warmup?: string;
  failOnRegression?: boolean;
  from?: string;
}

export function register(program: Command): void {
  program
    .command('bench')
    .description('Benchmark attention, GEMM, training and generation against the ceilings measured on this machine (and PyTorch); serve: concurrent clients against the API and the HTTP server')
    .argument('[what]', `${WHATS.join(' | ')}`, 'all')
    .option('--device <device>', 'auto | cpu | cuda', 'auto')
    .option('--precision <p>', 'fp32 | bf16 (default: both where a section has both)')
    .option('--quick', 'small sizes: the whole suite in about a minute')
    .option('--with-pytorch', 'run the PyTorch twins in bench/pytorch/ beside ours (python3 with torch; GPT_ENGINE_PYTHON picks one)')
    .option('--json', 'one JSON document (the report) on stdout')
    .option('--out <dir>', 'write report.json, report.html and the charts (.svg) there')
    .option('--compare <baseline.json>', 'print each figure beside a saved report.json and flag regressions beyond the repeat spread')
    .option('--fail-on-regression', 'with --compare: exit 3 when a figure regressed')
    .option('--preset <name>', 'train/generate: the model preset')
    .option('--batch <n>', 'batch size (attention, train, generate) or concurrent clients (serve, default 8)')
    .option('--seq <n>', 'sequence length (attention, train) or prompt length (generate)')
    .option('--repeats <n>', 'timed repeats per case (default 3 quick, 5 full)')
    .option('--warmup <n>', 'untimed warm-up runs per case (default 1)')
    .option('--nproc <n>', 'train: compare 1 process x n threads with n ranks x 1 thread under mpirun (docs/DISTRIBUTED.md)')
    .option('--steps <n>', 'train --nproc: optimizer steps per run (default 8; the first 2 are not timed; --repeats runs of each kind, default 3)')
    .option('--from <report.json>', 'measure nothing: print (and with --out re-render, with --compare compare) a saved report')
    .action(async (what: string, f: BenchFlags) => {
      if (!(WHATS as readonly string[]).includes(what))
        throw new ArgumentRangeError(`Expected one of ${WHATS.join(', ')} for the benchmark but received "${what}"`);
      const device = choiceFlag('device', f.device, DEVICE_CHOICES);
      const precision = choiceFlag('precision', f.precision, PRECISIONS);
      if (f.preset !== undefined) getPreset(f.preset);
      if (f.failOnRegression && !f.compare) throw new ArgumentRangeError('Expected --compare with --fail-on-regression but received none');
      if (f.nproc !== undefined) {
        if (what !== 'train') throw new ArgumentRangeError(`Expected --nproc only with bench train but received it with bench ${what}`);
        const r = runTrainDist({
          nproc: intFlag('nproc', f.nproc, 1, 1024)!,
          preset: f.preset ?? 'small',
          batch: intFlag('batch', f.batch) ?? 8,
          seq: intFlag('seq', f.seq) ?? 256,
          steps: intFlag('steps', f.steps, 3, 100000) ?? 8,
          skip: 2,
          rounds: intFlag('repeats', f.repeats, 1, 100) ?? 3,
          log: (s) => log(`bench: ${s}`),
        });
        if (f.json) printJson(r);
        else process.stdout.write(formatTrainDist(r));
        return;
      }
      const sections: SectionName[] = what === 'all' ? [...SECTION_NAMES] : [what as SectionName];
      const report = f.from ? loadSaved(f.from, f.compare) : await runBench({
        sections,
        device,
        precision,
        quick: !!f.quick,
        withPytorch: !!f.withPytorch,
        compare: f.compare ? path.resolve(f.compare) : undefined,
        preset: f.preset,
        batch: intFlag('batch', f.batch),
        seq: intFlag('seq', f.seq),
        repeats: intFlag('repeats', f.repeats, 1, 1000),
        warmup: intFlag('warmup', f.warmup, 0, 100),
        command: ['gpt-engine', ...process.argv.slice(2)].join(' '),
        log: (s) => log(`bench: ${s}`),
      });
      if (f.json) printJson(report);
      else process.stdout.write(formatReport(report));
      if (f.out) {
        const w = await writeReport(path.resolve(f.out), report);
        log(`wrote ${w.json}`);
        log(`wrote ${w.html}`);
        for (const c of w.charts) log(`wrote ${c}`);
      }
      if (f.failOnRegression && report.comparison && report.comparison.regressions > 0) process.exitCode = 3;
    });
}

/** A saved report (checked like a --compare baseline), compared with a baseline when asked. */
function loadSaved(file: string, compare?: string): BenchReport {
  const report = readBaseline(path.resolve(file), '--from');
  delete report.comparison;
  if (compare) report.comparison = compareReports(report, readBaseline(path.resolve(compare)), path.resolve(compare));
  return report;
}
