/**
 * `gpt-engine bench all --quick` end to end, in a child process (the built
 * CLI in dist/, the addon from $GPT_ENGINE_ADDON or build/): the machine and
 * its ceilings, numbers in every section whose API is in this build, and
 * report.html with its SVG charts. Timings are not checked (a shared
 * machine), only that they exist and are sane.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BenchReport } from '../../lib/bench/types';

const ROOT = path.resolve(__dirname, '..', '..');
const CLI = path.join(ROOT, 'dist', 'bin', 'gpt-engine.js');

function run(args: string[], env: NodeJS.ProcessEnv = {}, timeout = 170000) {
  const t0 = Date.now();
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout, cwd: ROOT });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, seconds: (Date.now() - t0) / 1000 };
}

const positive = (x: number | null | undefined) => typeof x === 'number' && Number.isFinite(x) && x > 0;

describe('gpt-engine bench all --quick', () => {
  let dir: string;
  let report: BenchReport;
  let result: ReturnType<typeof run>;

  beforeAll(() => {
    if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first`);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gpt-engine-bench-'));
    // --with-pytorch with an interpreter that does not exist: the run must say "not measured", not fail
    result = run(['bench', 'all', '--quick', '--device', 'cpu', '--with-pytorch', '--json', '--out', dir], {
      GPT_ENGINE_PYTHON: path.join(dir, 'no-such-python3'),
    });
    if (result.status !== 0) throw new Error(`bench exited ${result.status}: ${result.stderr.slice(-2000)}`);
    report = JSON.parse(result.stdout);
  }, 180000);
  afterAll(() => dir && fs.rmSync(dir, { recursive: true, force: true }));

  test('finishes in under 2 minutes', () => {
    expect(result.seconds).toBeLessThan(120);
  });

  test('the machine and the ceilings measured on the spot', () => {
    const m = report.machine;
    expect(m.cpuModel.length).toBeGreaterThan(0);
    expect(['avx512', 'avx2', 'portable']).toContain(m.isa);
    expect(m.threads).toBeGreaterThanOrEqual(1);
    expect(m.memoryBytes).toBeGreaterThan(0);
    expect(m.packageVersion).toMatch(/^\d+\.\d+\.\d+/);
    expect(positive(report.ceilings.fp32.value)).toBe(true);
    expect(positive(report.ceilings.readBandwidth.value)).toBe(true);
    if (m.avx512bf16 && m.isa === 'avx512') expect(positive(report.ceilings.bf16.value)).toBe(true);
    else expect(report.ceilings.bf16.reason).toMatch(/AVX512_BF16/);
    expect(report.ceilings.gpuCopy.reason).toMatch(/not measured/);
    expect(report.conventions).toMatch(/4 x D per \(query, key\) pair/);
  });

  test('PyTorch without an interpreter: "not measured" and why', () => {
    expect(report.pytorch.measured).toBe(false);
    expect(report.pytorch.reason).toMatch(/no python3 with torch found/);
  });

  test('attention: fused dense, banded and naive, forward and forward+backward, with GFLOP/s and peak fractions', () => {
    const s = report.sections.attention!;
    expect(s.status).toBe('ok');
    const kinds = new Set(s.rows.map((r) => `${r.impl} ${r.pattern}`));
    expect(kinds).toEqual(new Set(['fused dense', 'fused banded', 'naive dense']));
    for (const r of s.rows) {
      expect(r.note).toBeUndefined();
      expect(positive(r.forward?.median)).toBe(true);
      expect(positive(r.forwardBackward?.median)).toBe(true);
      expect(r.forward!.min).toBeLessThanOrEqual(r.forward!.median);
      expect(r.forward!.max).toBeGreaterThanOrEqual(r.forward!.median);
      expect(positive(r.gflopsForward)).toBe(true);
      expect(positive(r.peakFractionForwardBackward)).toBe(true);
    }
    for (const r of s.rows.filter((x) => x.impl === 'fused')) expect(positive(r.workspaceBytes)).toBe(true);
    expect(s.rssCheck).toBeTruthy();
  });

  test('gemm: every shape and form in fp32 and bf16', () => {
    const s = report.sections.gemm!;
    expect(s.status).toBe('ok');
    expect(s.rows.length).toBe(4 * 3 * 2);
    for (const r of s.rows) {
      expect(r.note).toBeUndefined();
      expect(positive(r.gflops)).toBe(true);
      expect(positive(r.fp32PeakFraction)).toBe(true);
    }
  });

  test('train: tokens/s, GFLOP/s and MFU in fp32 and bf16', () => {
    const s = report.sections.train!;
    expect(s.status).toBe('ok');
    expect(s.rows.map((r) => r.precision).sort()).toEqual(['bf16', 'fp32']);
    for (const r of s.rows) {
      expect(r.note).toBeUndefined();
      expect(positive(r.tokensPerSecond)).toBe(true);
      expect(positive(r.mfu)).toBe(true);
      expect(Number.isFinite(r.loss)).toBe(true);
    }
  });

  test('generate: decode tokens/s against the bandwidth bound', () => {
    const s = report.sections.generate!;
    expect(s.status).toBe('ok');
    for (const r of s.rows) {
      expect(r.note).toBeUndefined();
      expect(positive(r.decodeTokensPerSecond)).toBe(true);
      expect(positive(r.prefillTokensPerSecond)).toBe(true);
      expect(positive(r.boundFraction)).toBe(true);
      expect(positive(r.cacheBytes)).toBe(true);
    }
  });

  test('report.json, report.html and a well-formed SVG chart per measured section', () => {
    const saved = JSON.parse(fs.readFileSync(path.join(dir, 'report.json'), 'utf8'));
    expect(saved.schema).toBe(report.schema);
    const html = fs.readFileSync(path.join(dir, 'report.html'), 'utf8');
    const measured = Object.entries(report.sections).filter(([, s]) => s && s.status === 'ok').map(([n]) => n);
    for (const name of measured) {
      const svg = fs.readFileSync(path.join(dir, `${name}.svg`), 'utf8');
      expect(svg.startsWith('<svg')).toBe(true);
      expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    }
    expect((html.match(/<svg\b/g) ?? []).length).toBe(measured.length);
  });
});

describe('gpt-engine bench errors', () => {
  test('--device cuda without a usable GPU is a NO_GPU message before any measuring', () => {
    const r = run(['bench', 'gemm', '--device', 'cuda'], {}, 60000);
    if (r.status === 0) return; // a machine with a GPU: nothing to check here
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/device "cuda" was requested but no GPU is usable/);
  });
});
