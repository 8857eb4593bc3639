import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { loadAddon } from '../../lib/native';
import { getIsa, getThreads, setIsa, setThreads, supportedIsas } from '../../lib/runtime';

describe('addon core', () => {
  test('loads and reports threads and ISA', () => {
    expect(getThreads()).toBeGreaterThanOrEqual(1);
    expect(['avx512', 'avx2', 'portable']).toContain(getIsa());
    expect(supportedIsas()).toContain('portable');
  });

  test('setThreads resizes the pool and validates', () => {
    const before = getThreads();
    setThreads(1);
    expect(getThreads()).toBe(1);
    setThreads(3);
    expect(getThreads()).toBe(3);
    setThreads(before);
    expect(() => setThreads(0)).toThrow('Expected a positive integer for threads but received 0 (number)');
    expect(() => setThreads(5000)).toThrow('Expected a positive integer <= 1024 for threads but received 5000 (number)');
    expect(() => setThreads(1.5)).toThrow(RangeError);
  });

  test('setIsa switches among supported paths and refuses others', () => {
    const before = getIsa();
    for (const isa of supportedIsas()) {
      setIsa(isa);
      expect(getIsa()).toBe(isa);
    }
    setIsa(before);
    expect(() => setIsa('sse9' as never)).toThrow(/Expected one of "avx512", "avx2", "portable" for isa/);
  });

  test('FMA probe and bandwidth probe return positive rates on every path', async () => {
    const a = loadAddon();
    const before = getIsa();
    for (const isa of supportedIsas()) {
      setIsa(isa);
      const p = await a.probeFmaPeak({ seconds: 0.02, repeats: 1 });
      expect(p.gflops).toBeGreaterThan(0);
    }
    setIsa(before);
    const bw = await a.probeBandwidth({ bytes: 8 << 20, repeats: 1 });
    expect(bw.gbps).toBeGreaterThan(0);
    expect(() => a.probeFmaPeak({ seconds: -1 })).toThrow(/seconds/);
  });

  test('GPT_ENGINE_ISA and GPT_ENGINE_THREADS set the start-up state; bad values warn', () => {
    const native = JSON.stringify(path.join(__dirname, '..', '..', 'dist', 'lib', 'runtime.js'));
    const run = (env: Record<string, string>) =>
      execFileSync(process.execPath, ['-e', `const r=require(${native}); console.log(JSON.stringify([r.getIsa(), r.getThreads(), r.environmentWarnings()]))`], {
        encoding: 'utf8',
        env: { ...process.env, ...env },
      });
    expect(JSON.parse(run({ GPT_ENGINE_ISA: 'portable', GPT_ENGINE_THREADS: '1' }))).toEqual(['portable', 1, []]);
    const [isa, threads, warnings] = JSON.parse(run({ GPT_ENGINE_ISA: 'sse9', GPT_ENGINE_THREADS: 'two' }));
    expect(isa).toBe(supportedIsas()[0]);
    expect(threads).toBeGreaterThanOrEqual(1);
    expect(warnings.join('\n')).toMatch(/GPT_ENGINE_ISA="sse9" is not one of avx512, avx2, portable/);
    expect(warnings.join('\n')).toMatch(/GPT_ENGINE_THREADS="two" is not a positive integer/);
  });

  test('cudaInfo always answers, with a reason when there is no GPU', () => {
    const info = loadAddon().cudaInfo();
    expect(typeof info.available).toBe('boolean');
    if (!info.available) expect(info.reason.length).toBeGreaterThan(10);
  });

  test('a bad GPT_ENGINE_ADDON path gives one message naming what was tried and the fix', () => {
    const script = `
      process.env.GPT_ENGINE_ADDON = '/nonexistent/x.node';
      const m = require(${JSON.stringify(path.join(__dirname, '..', '..', 'dist', 'lib', 'native.js'))});
      try { m.loadAddon(); console.log('loaded'); } catch (e) { console.log(e.message); }`;
    const out = execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' });
    // The addon asked for is missing: an error naming it and the fix, never another build.
    expect(out).toMatch(/GPT_ENGINE_ADDON names: \/nonexistent\/x\.node \(not found\)/);
    expect(out).toMatch(/unset it/);
    expect(out).not.toMatch(/^loaded/);
    const script2 = `
      delete process.env.GPT_ENGINE_ADDON;
      const fs = require('fs');
      const m = require(${JSON.stringify(path.join(__dirname, '..', '..', 'dist', 'lib', 'native.js'))});
      m.addonCandidates = () => [];
      const orig = fs.existsSync; fs.existsSync = (p) => String(p).endsWith('.node') ? false : orig(p);
      try { m.loadAddon(); console.log('loaded'); } catch (e) { console.log(e.message); }`;
    const out2 = execFileSync(process.execPath, ['-e', script2], { encoding: 'utf8' });
    expect(out2).toMatch(/could not load the native addon/);
    expect(out2).toMatch(/not found/);
    expect(out2).toMatch(/Platform: linux-/);
    expect(out2).toMatch(/npm rebuild gpt-engine/);
  });
});
