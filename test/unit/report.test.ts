/**
 * The benchmark report without the addon: chart specs, text tables,
 * --compare's verdicts, and (through the built CLI, `bench --from`)
 * report.html and the SVG charts: well-formed, with the expected series.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { finishAttentionRow } from '../../lib/bench/attention';
import { compareReports, figures } from '../../lib/bench/compare';
import { formatReport } from '../../lib/bench/format';
import { finishGemmRow } from '../../lib/bench/gemm';
import { decodeWeightBytes, finishGenerateRow } from '../../lib/bench/generate';
import { statOf } from '../../lib/bench/stats';
import { finishTrainRow } from '../../lib/bench/train';
import {
  AttentionRow,
  BenchReport,
  Ceilings,
  GemmRow,
  GenerateRow,
  REPORT_SCHEMA,
  Stat,
  TrainRow,
} from '../../lib/bench/types';
import { presetConfig } from '../../lib/config';
import { attentionFlops, forwardFlopsPerToken } from '../../lib/flops';
import { reportCharts } from '../../lib/report';
import { assertWellFormedXml, cli, linePaths, barMarks, requireBuiltCli, svgTexts } from './plot-svg-check';

const s = (median: number, spread = 0.02): Stat => statOf([median * (1 - spread), median, median * (1 + spread)]);

function ceilings(): Ceilings {
  return {
    fp32: { value: 500, unit: 'GFLOP/s', stat: s(490), how: 'test' },
    bf16: { value: 1500, unit: 'GFLOP/s', stat: s(1450), how: 'test' },
    readBandwidth: { value: 40, unit: 'GB/s', stat: s(38), how: 'test' },
    gpuCopy: { value: null, unit: 'GB/s', how: 'copy', reason: 'not measured: the run is on the CPU' },
    gpuGemm: { value: null, unit: 'GFLOP/s', how: 'gemm', reason: 'not measured: the run is on the CPU' },
  };
}

/** A report with every section filled from made-up timings (scale > 1 = slower). */
export function syntheticReport(scale = 1, withPytorch = true): BenchReport {
  const c = ceilings();
  const attention: AttentionRow[] = [];
  for (const seq of [512, 1024, 2048]) {
    const kinds: [AttentionRow['impl'], 'dense' | 'banded'][] = [
      ['fused', 'dense'],
      ['fused', 'banded'],
      ['naive', 'dense'],
    ];
    if (withPytorch) kinds.push(['pytorch', 'dense'], ['pytorch', 'banded']);
    for (const [impl, pattern] of kinds) {
      const window = pattern === 'banded' ? 256 : null;
      const f = attentionFlops({ batch: 1, heads: 12, seq, headDim: 64, pattern, window });
      const rate = impl === 'fused' ? 250e9 : impl === 'naive' ? 20e9 : 10e9;
      const fwdMs = (f.forward / rate) * 1000 * scale;
      attention.push(
        finishAttentionRow(
          {
            impl,
            pattern,
            window,
            batch: 1,
            heads: 12,
            seq,
            headDim: 64,
            forward: s(fwdMs),
            forwardBackward: s(fwdMs * 3.2),
            flopsForward: f.forward,
            flopsForwardBackward: f.total,
            gflopsForward: null,
            gflopsForwardBackward: null,
            peakFractionForward: null,
            peakFractionForwardBackward: null,
            ...(impl === 'fused' ? { workspaceBytes: 393216 } : {}),
            ...(impl === 'pytorch' ? { note: 'PyTorch matmul + mask + softmax' } : {}),
          },
          c.fp32.value,
        ),
      );
    }
  }
  const gemm: GemmRow[] = [];
  for (const impl of withPytorch ? (['engine', 'pytorch'] as const) : (['engine'] as const))
    for (const precision of ['fp32', 'bf16'] as const)
      for (const [layer, K, N] of [
        ['attn.c_attn', 768, 2304],
        ['mlp.c_proj', 3072, 768],
      ] as const)
        for (const form of ['forward', 'input-grad', 'weight-grad'] as const) {
          const flops = 2 * 1024 * K * N;
          const rate = (impl === 'engine' ? 380e9 : 240e9) * (precision === 'bf16' ? 2.5 : 1);
          gemm.push(
            finishGemmRow(
              { impl, layer, form, precision, M: 1024, K, N, flops, time: s((flops / rate) * 1000 * scale), gflops: null, peakFraction: null, fp32PeakFraction: null },
              c,
            ),
          );
        }
  const train: TrainRow[] = [];
  for (const impl of withPytorch ? (['engine', 'pytorch'] as const) : (['engine'] as const))
    for (const precision of ['fp32', 'bf16'] as const) {
      const ms = (impl === 'engine' ? 800 : 3000) * (precision === 'bf16' ? 0.5 : 1) * scale;
      train.push(
        finishTrainRow(
          {
            impl,
            preset: 'small',
            precision,
            batch: 8,
            seq: 256,
            params: 30e6,
            flopsPerToken: 1.8e8,
            step: s(ms),
            forward: s(ms * 0.3),
            backward: s(ms * 0.6),
            optimizer: s(ms * 0.1),
            tokensPerSecond: null,
            gflops: null,
            mfu: null,
            mfuFp32: null,
          },
          c,
        ),
      );
    }
  const generate: GenerateRow[] = [];
  for (const impl of withPytorch ? (['engine', 'pytorch'] as const) : (['engine'] as const))
    for (const precision of ['fp32', 'bf16'] as const)
      for (const batch of [1, 8]) {
        const tps = ((impl === 'engine' ? 60 : 36) * batch * 0.7 * (precision === 'bf16' ? 1.8 : 1)) / scale;
        generate.push(
          finishGenerateRow(
            {
              impl,
              preset: 'gpt2',
              precision,
              batch,
              promptTokens: 64,
              newTokens: 64,
              prefillTokensPerSecond: 900,
              decodeTokensPerSecond: tps,
              decode: s(tps),
              timeToFirstToken: s(70),
              cacheBytes: 4718592 * batch,
              weightBytes: decodeWeightBytes('gpt2', precision),
              boundTokensPerSecond: null,
              boundFraction: null,
            },
            c.readBandwidth.value,
            precision === 'bf16' ? c.bf16.value : c.fp32.value,
          ),
        );
      }
  return {
    schema: REPORT_SCHEMA,
    date: '2026-11-28T12:00:00.000Z',
    command: 'gpt-engine bench all (synthetic)',
    quick: false,
    device: 'cpu',
    deviceReason: 'asked for',
    precisions: ['fp32', 'bf16'],
    warmup: 1,
    repeats: 3,
    conventions: 'FLOPs: test',
    machine: {
      cpuModel: 'Test CPU',
      cores: 2,
      isa: 'avx512',
      supportedIsas: ['avx512', 'avx2', 'portable'],
      avx512bf16: true,
      threads: 2,
      memoryBytes: 8 * 1024 ** 3,
      os: 'Linux test',
      node: 'v20',
      packageVersion: '0.1.0',
      gitCommit: 'abcdef0123456789',
      gitDirty: false,
      gpu: { used: false, name: null, memoryBytes: null, computeCapability: null, driverVersion: null, runtimeVersion: null, reason: 'no GPU' },
      loadAverage: [0.1, 0.1, 0.1],
    },
    ceilings: c,
    pytorch: withPytorch
      ? { requested: true, measured: true, python: '/usr/bin/python3', torchVersion: '1.13.0', threads: 2, blas: 'open' }
      : { requested: false, measured: false, reason: 'not requested (--with-pytorch)' },
    sections: {
      attention: { status: 'ok', description: 'attention (synthetic)', notes: [], rows: attention, rssCheck: null },
      gemm: { status: 'ok', description: 'gemm (synthetic)', notes: [], rows: gemm },
      train: { status: 'ok', description: 'train (synthetic)', notes: [], rows: train },
      generate: { status: 'ok', description: 'generate (synthetic)', notes: [], rows: generate },
    },
    elapsedSeconds: 1,
  };
}

describe('derived figures', () => {
  test('attention GFLOP/s and peak fraction follow lib/flops.ts', () => {
    const r = syntheticReport();
    const row = r.sections.attention!.rows.find((x) => x.impl === 'fused' && x.pattern === 'dense' && x.seq === 1024)!;
    expect(row.gflopsForward).toBeCloseTo(row.flopsForward / (row.forward!.median / 1000) / 1e9, 6);
    expect(row.peakFractionForward).toBeCloseTo(row.gflopsForward! / 500, 9);
  });
  test('bf16 GEMM is a fraction of the bf16 peak and of the fp32 peak', () => {
    const r = syntheticReport();
    const row = r.sections.gemm!.rows.find((x) => x.precision === 'bf16')!;
    expect(row.peakFraction).toBeCloseTo(row.gflops! / 1500, 9);
    expect(row.fp32PeakFraction).toBeCloseTo(row.gflops! / 500, 9);
  });
  test('train tokens/s, GFLOP/s and MFU', () => {
    const row = syntheticReport().sections.train!.rows[0];
    expect(row.tokensPerSecond).toBeCloseTo((8 * 256) / 0.8, 6);
    expect(row.gflops).toBeCloseTo((row.tokensPerSecond! * 1.8e8) / 1e9, 6);
    expect(row.mfu).toBeCloseTo(row.gflops! / 500, 9);
  });
  test('decode bound = batch x bandwidth / weight bytes (GPT-2 small fp32 reads about 497 MB)', () => {
    const rows = syntheticReport().sections.generate!.rows;
    const one = rows.find((x) => x.impl === 'engine' && x.precision === 'fp32' && x.batch === 1)!;
    expect(one.weightBytes / 1e6).toBeGreaterThan(490);
    expect(one.weightBytes / 1e6).toBeLessThan(500);
    expect(one.boundTokensPerSecond).toBeCloseTo((40e9 / one.weightBytes) * 1, 6);
    const eight = rows.find((x) => x.impl === 'engine' && x.precision === 'fp32' && x.batch === 8)!;
    expect(eight.boundTokensPerSecond).toBeCloseTo(8 * one.boundTokensPerSecond!, 6);
    expect(decodeWeightBytes('gpt2', 'bf16') * 2).toBe(decodeWeightBytes('gpt2', 'fp32'));
    // prefill: 900 tokens/s x forward FLOPs per token (about 2 x 124M) over the 500 GFLOP/s peak
    expect(one.prefillPeakFraction).toBeCloseTo((900 * forwardFlopsPerToken(presetConfig('gpt2'), 64)) / 500e9, 9);
  });
});

describe('text output', () => {
  test('tables with PyTorch beside ours, and the ratio', () => {
    const text = formatReport(syntheticReport());
    expect(text).toMatch(/== attention ==/);
    expect(text).toMatch(/PyTorch fwd ms/);
    expect(text).toMatch(/banded\/dense fwd\+bwd at T=2048/);
    expect(text).toMatch(/== gemm ==[\s\S]*PyTorch GFLOP\/s/);
    expect(text).toMatch(/== train ==[\s\S]*x PyTorch fp32/);
    expect(text).toMatch(/== generate ==[\s\S]*bound tok\/s/);
    // fused dense is 25x the PyTorch rate in the fixture
    expect(text).toMatch(/25\.00x/);
  });
  test('without PyTorch every section says "PyTorch: not measured"', () => {
    const text = formatReport(syntheticReport(1, false));
    expect(text.match(/PyTorch: not measured/g)!.length).toBeGreaterThanOrEqual(4);
    expect(text).not.toMatch(/PyTorch fwd ms/);
  });
  test('a run on a GPU names the GEMM the backend ran beside the GPU', () => {
    const r = syntheticReport();
    r.machine.gpu = { used: true, name: 'NVIDIA H100', memoryBytes: 80 * 1024 ** 3, computeCapability: '9.0', driverVersion: 13000,
      runtimeVersion: 13000, reason: '1 device(s)', gemm: 'cublaslt 13.0.2' };
    expect(formatReport(r)).toMatch(/GPU NVIDIA H100, 80\.0 GiB, cc 9\.0, driver 13000, runtime 13000; GEMM cublaslt 13\.0\.2\n/);
    r.machine.gpu.gemm = 'own (GPT_ENGINE_GEMM=own)';
    expect(formatReport(r)).toMatch(/; GEMM own \(GPT_ENGINE_GEMM=own\)\n/);
    r.machine.gpu.gemm = null;
    expect(formatReport(r)).not.toMatch(/GEMM (own|cublaslt)/);
  });

  test('a section that cannot run on the device says so', () => {
    const r = syntheticReport(1, false);
    r.sections.gemm = { status: 'unavailable', reason: 'not available on cuda: lib/gemm runs on the CPU only', description: 'g', notes: [], rows: [] };
    expect(formatReport(r)).toMatch(/gemm: not available on cuda: lib\/gemm runs on the CPU only/);
  });
});

describe('--compare', () => {
  test('a slowdown beyond the spread is a regression; one within it is not', () => {
    const base = syntheticReport(1);
    const slow = syntheticReport(1.2);
    const c = compareReports(slow, base, 'base.json');
    expect(c.entries.length).toBe(figures(base).length);
    expect(c.regressions).toBe(c.entries.length);
    const attn = c.entries.find((e) => e.key.startsWith('attention/fused/dense/') && e.key.endsWith('T1024/fwd'))!;
    expect(attn.ratio).toBeCloseTo(1.2, 6);
    expect(attn.verdict).toBe('regression');
    const tps = c.entries.find((e) => e.key.startsWith('train/engine'))!;
    expect(tps.ratio).toBeCloseTo(1 / 1.2, 6);
    expect(tps.verdict).toBe('regression');

    const near = compareReports(syntheticReport(1.02), base, 'base.json');
    expect(near.regressions).toBe(0);
    const fast = compareReports(syntheticReport(0.8), base, 'base.json');
    expect(fast.regressions).toBe(0);
    expect(fast.entries.every((e) => e.verdict === 'improvement')).toBe(true);
  });
  test('the tolerance is the larger repeat spread of the two runs', () => {
    const base = syntheticReport(1);
    const noisy = syntheticReport(1.1);
    // widen the spread of one figure past the 10% change
    const row = noisy.sections.attention!.rows[0];
    row.forward = statOf([row.forward!.median * 0.9, row.forward!.median, row.forward!.median * 1.1]);
    const c = compareReports(noisy, base, 'base.json');
    const e = c.entries.find((x) => x.key.endsWith(`T${row.seq}/fwd`) && x.key.startsWith(`attention/${row.impl}/${row.pattern}`))!;
    expect(e.tolerance).toBeCloseTo(0.2, 6);
    expect(e.verdict).toBe('same');
  });
});

describe('chart specs', () => {
  test('every section has a chart with the expected series', () => {
    const charts = reportCharts(syntheticReport());
    expect(charts.map((c) => c.name)).toEqual(['attention', 'gemm', 'train', 'generate']);
    const by = Object.fromEntries(charts.map((c) => [c.name, c.series]));
    expect(by.attention).toEqual(
      expect.arrayContaining(['fused dense', 'fused banded w=256', 'naive dense', 'PyTorch dense', 'PyTorch banded (mask)', 'ideal ∝ T² (dense)', 'ideal ∝ T·w (banded)']),
    );
    expect(by.gemm).toEqual(expect.arrayContaining(['gpt-engine fp32', 'gpt-engine bf16', 'PyTorch fp32', 'PyTorch bf16', 'fp32 FMA peak 500', 'bf16 peak 1500']));
    expect(by.train).toEqual(expect.arrayContaining(['gpt-engine fp32', 'gpt-engine bf16', 'PyTorch fp32']));
    expect(by.generate).toEqual(expect.arrayContaining(['gpt-engine fp32', 'PyTorch fp32', 'bandwidth bound fp32', 'bandwidth bound bf16']));
  });
  test('ideal slopes pass through the largest measured T: x2 in T is x4 (dense) and x2 (banded)', () => {
    const chart = reportCharts(syntheticReport())[0];
    const values = (chart.spec.data as { values: { kernel: string; pass: string; seq: number; ms: number }[] }).values;
    const dense = values.filter((v) => v.kernel.startsWith('ideal ∝ T²') && v.pass === 'forward');
    const banded = values.filter((v) => v.kernel.startsWith('ideal ∝ T·w') && v.pass === 'forward');
    const at = (a: typeof dense, T: number) => a.find((v) => v.seq === T)!.ms;
    expect(at(dense, 2048) / at(dense, 1024)).toBeCloseTo(4, 9);
    expect(at(banded, 2048) / at(banded, 1024)).toBeCloseTo(2, 9);
    const measured = values.find((v) => v.kernel === 'fused dense' && v.pass === 'forward' && v.seq === 2048)!;
    expect(at(dense, 2048)).toBeCloseTo(measured.ms, 9);
  });
  test('sections without figures have no chart', () => {
    const r = syntheticReport(1, false);
    r.sections.train = { status: 'error', reason: 'failed: OUT_OF_MEMORY: no room', description: 't', notes: [], rows: [] };
    delete r.sections.gemm;
    expect(reportCharts(r).map((c) => c.name)).toEqual(['attention', 'generate']);
  });
});

describe('report.html and the SVG charts (built CLI: bench --from)', () => {
  let dir: string;
  beforeAll(() => {
    requireBuiltCli();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gpt-engine-report-'));
    fs.writeFileSync(path.join(dir, 'in.json'), JSON.stringify(syntheticReport()));
    fs.writeFileSync(path.join(dir, 'base.json'), JSON.stringify(syntheticReport(0.5)));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('writes report.json, report.html and one well-formed SVG per section with its series', () => {
    const out = path.join(dir, 'out');
    const r = cli(['bench', '--from', path.join(dir, 'in.json'), '--out', out]);
    expect(r.stderr).toMatch(/wrote .*report\.html/);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/== attention ==/);
    const html = fs.readFileSync(path.join(out, 'report.html'), 'utf8');
    expect(html).not.toMatch(/<script|https?:\/\/(?!www\.w3\.org)/);
    expect((html.match(/<svg\b/g) ?? []).length).toBe(4);
    const saved = JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8'));
    expect(saved.schema).toBe(REPORT_SCHEMA);

    const attention = fs.readFileSync(path.join(out, 'attention.svg'), 'utf8');
    expect(assertWellFormedXml(attention)).toBe('svg');
    const at = svgTexts(attention);
    for (const name of ['fused dense', 'fused banded w=256', 'naive dense', 'PyTorch dense', 'PyTorch banded (mask)', 'ideal ∝ T² (dense)', 'ideal ∝ T·w (banded)'])
      expect(at).toContain(name);
    expect(at).toEqual(expect.arrayContaining(['forward', 'forward + backward', 'sequence length T']));
    // 7 series in each of the two panels
    expect(linePaths(attention)).toBe(14);

    const gemm = fs.readFileSync(path.join(out, 'gemm.svg'), 'utf8');
    assertWellFormedXml(gemm);
    const gt = svgTexts(gemm);
    for (const name of ['gpt-engine fp32', 'gpt-engine bf16', 'PyTorch fp32', 'PyTorch bf16', 'fp32 FMA peak 500', 'bf16 peak 1500']) expect(gt).toContain(name);
    expect(barMarks(gemm)).toBe(24);

    const train = fs.readFileSync(path.join(out, 'train.svg'), 'utf8');
    assertWellFormedXml(train);
    expect(svgTexts(train)).toEqual(expect.arrayContaining(['tokens/s', 'MFU', 'gpt-engine fp32', 'PyTorch bf16']));
    expect(barMarks(train)).toBe(8);

    const gen = fs.readFileSync(path.join(out, 'generate.svg'), 'utf8');
    assertWellFormedXml(gen);
    expect(svgTexts(gen)).toEqual(expect.arrayContaining(['gpt-engine fp32', 'gpt-engine bf16', 'PyTorch fp32', 'bandwidth bound fp32', 'bandwidth bound bf16']));
    expect(linePaths(gen)).toBe(6);
  });

  test('--compare against a faster baseline flags regressions; --fail-on-regression exits 3', () => {
    const r = cli(['bench', '--from', path.join(dir, 'in.json'), '--compare', path.join(dir, 'base.json'), '--fail-on-regression']);
    expect(r.stdout).toMatch(/REGRESSION/);
    expect(r.stdout).toMatch(/regression\(s\) beyond the spread/);
    expect(r.status).toBe(3);
  });

  test('--json prints one document', () => {
    const r = cli(['bench', '--from', path.join(dir, 'in.json'), '--json']);
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout).schema).toBe(REPORT_SCHEMA);
  });

  test('bad input: clear messages, exit 1', () => {
    const bad = path.join(dir, 'bad.json');
    fs.writeFileSync(bad, '{"schema": "something else"}');
    let r = cli(['bench', '--from', bad]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/Expected a gpt-engine bench report \(schema "gpt-engine-bench\/1"\) for --from but received/);
    r = cli(['bench', 'attn']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/Expected one of all, attention, gemm, train, generate, serve for the benchmark but received "attn"/);
    r = cli(['bench', '--precision', 'fp16', '--from', bad]);
    expect(r.stderr).toMatch(/Expected one of fp32, bf16 for --precision but received "fp16"/);
    r = cli(['bench', '--device', 'tpu', '--from', bad]);
    expect(r.stderr).toMatch(/Expected one of auto, cpu, cuda for --device but received "tpu"/);
  });
});
