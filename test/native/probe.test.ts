/**
 * The GPU ceiling probes the benchmarks use (native/addon/probe_binding.cc):
 * without a usable GPU (this build without CUDA, or no card) each call
 * rejects with NO_GPU and the reason; with one, they return positive rates.
 * Invalid options throw INVALID_ARGUMENT either way.
 */
import { loadAddon } from '../../lib/native';

interface Probes {
  cudaInfo(): { available: boolean; reason: string };
  probeCudaCopy(o?: unknown): Promise<{ gbps: number; seconds: number; bytes: number }>;
  probeCudaGemm(o?: unknown): Promise<{ tflops: number; gflops: number; seconds: number; size: number; precision: string }>;
}

const addon = loadAddon<Probes>();
const gpu = addon.cudaInfo();

async function failure(p: () => Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await p();
  } catch (e) {
    return e as Error & { code?: string };
  }
  throw new Error('expected the call to fail');
}

describe('GPU ceiling probes', () => {
  it('are exported by every build', () => {
    expect(typeof addon.probeCudaCopy).toBe('function');
    expect(typeof addon.probeCudaGemm).toBe('function');
  });

  it('throw INVALID_ARGUMENT for bad options', () => {
    const bad = (f: () => unknown, message: string) => {
      let err: (Error & { code?: string }) | undefined;
      try {
        f();
      } catch (e) {
        err = e as Error & { code?: string };
      }
      expect(err?.code).toBe('INVALID_ARGUMENT');
      expect(err?.message).toBe(message);
    };
    bad(() => addon.probeCudaCopy(5), 'Expected an options object');
    bad(() => addon.probeCudaCopy({ bytes: 0 }), 'Expected an integer in [1, 68719476736] for bytes but received 0.000000');
    bad(() => addon.probeCudaCopy({ repeats: 1.5 }), 'Expected an integer in [1, 1000] for repeats but received 1.500000');
    bad(() => addon.probeCudaGemm({ size: 0 }), 'Expected an integer in [1, 32768] for size but received 0.000000');
    bad(() => addon.probeCudaGemm({ precision: 'fp16' }), 'Expected "fp32" or "bf16" for precision but received "fp16"');
  });

  // One test for both kinds of build: CI's addon has no GPU (NO_GPU path); on a
  // GPU, or the CUDA emulator's build, the probes run (small sizes).
  it(gpu.available ? 'measure positive rates on this GPU' : 'reject with NO_GPU and the reason without a GPU', async () => {
    if (!gpu.available) {
      const copy = await failure(() => addon.probeCudaCopy({ bytes: 1 << 20, repeats: 1 }));
      expect(copy.code).toBe('NO_GPU');
      expect(copy.message).toBe(`probeCudaCopy: no usable GPU: ${gpu.reason}`);
      const gemm = await failure(() => addon.probeCudaGemm());
      expect(gemm.code).toBe('NO_GPU');
      expect(gemm.message).toBe(`probeCudaGemm: no usable GPU: ${gpu.reason}`);
      return;
    }
    const c = await addon.probeCudaCopy({ bytes: 16 << 20, repeats: 2 });
    expect(c.gbps).toBeGreaterThan(0);
    expect(c.bytes).toBe(16 << 20);
    for (const precision of ['fp32', 'bf16']) {
      const g = await addon.probeCudaGemm({ size: 128, precision, repeats: 2 });
      expect(g.tflops).toBeGreaterThan(0);
      expect(g.gflops).toBeCloseTo(g.tflops * 1000, 6);
      expect(g.precision).toBe(precision);
    }
  });
});
