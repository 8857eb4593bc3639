/**
 * device 'auto' picks a real GPU and never the SIMT emulator (a testing
 * build): on the emulator every 'auto' resolver (GPT, attention, bench) stays
 * on the CPU and says why, while 'cuda' asked for by name still uses it.
 * Runs where the cuda project runs (a GPU, or the emulator build).
 */
import { resolveDevice } from '../../lib/attention';
import { resolveBenchDevice } from '../../lib/bench/index';
import { chooseDevice } from '../../lib/model';
import { loadAddon } from '../../lib/native';

const info = loadAddon().cudaInfo();

test('auto resolves to the GPU only when it is real', () => {
  expect(info.available).toBe(true);
  const model = chooseDevice('auto');
  const bench = resolveBenchDevice('auto');
  if (info.emulated) {
    expect(model.device).toBe('cpu');
    expect(model.reason).toMatch(/SIMT emulator/);
    expect(resolveDevice('auto')).toBe('cpu');
    expect(bench.device).toBe('cpu');
    expect(bench.reason).toMatch(/SIMT emulator/);
  } else {
    expect(model.device).toBe('cuda');
    expect(resolveDevice('auto')).toBe('cuda');
    expect(bench.device).toBe('cuda');
  }
  // By name, cuda is the CUDA backend on either.
  expect(chooseDevice('cuda').device).toBe('cuda');
  expect(resolveDevice('cuda')).toBe('cuda');
  expect(resolveBenchDevice('cuda').device).toBe('cuda');
});
