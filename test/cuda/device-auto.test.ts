/**
 * device 'auto' picks a real GPU and never the SIMT emulator (a testing
 * build): on the emulator the one resolver (lib/device.ts, behind GPT,
 * attention and bench) stays on the CPU and says why, while 'cuda' asked
 * for by name still uses it. Runs where the cuda project runs (a GPU, or the
 * emulator build).
 */
import { resolveDevice } from '../../lib/attention';
import { chooseDevice } from '../../lib/device';
import { loadAddon } from '../../lib/native';

const info = loadAddon().cudaInfo();

test('auto resolves to the GPU only when it is real', () => {
  expect(info.available).toBe(true);
  const auto = chooseDevice('auto');
  if (info.emulated) {
    expect(auto.device).toBe('cpu');
    expect(auto.reason).toMatch(/SIMT emulator/);
    expect(resolveDevice('auto')).toBe('cpu');
  } else {
    expect(auto.device).toBe('cuda');
    expect(resolveDevice('auto')).toBe('cuda');
  }
  // By name, cuda is the CUDA backend on either.
  expect(chooseDevice('cuda').device).toBe('cuda');
  expect(resolveDevice('cuda')).toBe('cuda');
});
