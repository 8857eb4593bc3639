/**
 * Which device a computation runs on: the one resolver behind GPT.create,
 * the attention kernels and the benchmarks.
 *
 * 'cpu' is the CPU. 'cuda' is the CUDA backend, and fails with NoGpuError
 * (and the reason) when no GPU can be used. 'auto' picks a real GPU when one
 * is usable and the CPU otherwise; it never picks the SIMT emulator of a
 * GPT_ENGINE_CUDA_EMU build (a testing tool), which only 'cuda' asked for by
 * name reaches.
 */
import { NoGpuError } from './errors';
import { loadAddon } from './native';
import { expectOneOf } from './validate';

export type DeviceChoice = 'auto' | 'cpu' | 'cuda';
export type DeviceName = 'cpu' | 'cuda';
export type PrecisionName = 'fp32' | 'bf16';

export const DEVICE_CHOICES: readonly DeviceChoice[] = ['auto', 'cpu', 'cuda'];
export const PRECISIONS: readonly PrecisionName[] = ['fp32', 'bf16'];

/** Where a computation runs, and why that device. */
export interface DeviceChoiceResult {
  device: DeviceName;
  reason: string;
}

/** Resolves 'auto' | 'cpu' | 'cuda' against what this machine has (`field` names the option in errors). */
export function chooseDevice(choice: DeviceChoice = 'auto', field = 'device'): DeviceChoiceResult {
  expectOneOf(field, choice, DEVICE_CHOICES);
  if (choice === 'cpu') return { device: 'cpu', reason: 'device "cpu" was asked for' };
  const info = loadAddon().cudaInfo();
  if (choice === 'cuda') {
    if (!info.available) throw new NoGpuError(`device "cuda" was requested but no GPU is usable: ${info.reason}`);
    return { device: 'cuda', reason: `device "cuda" was asked for: ${info.name}` };
  }
  if (info.available && info.emulated)
    return {
      device: 'cpu',
      reason: `auto: device "cuda" is ${info.name} in this build (for testing; ask for "cuda" to use it), using the CPU`,
    };
  if (info.available) return { device: 'cuda', reason: `auto: a usable GPU was found (${info.name})` };
  return { device: 'cpu', reason: `auto: no usable GPU (${info.reason}), using the CPU` };
}

/** The default precision of a device (docs/ARCHITECTURE.md "Precision"): bf16 on CUDA, fp32 on the CPU. */
export function defaultPrecision(device: DeviceName): PrecisionName {
  return device === 'cuda' ? 'bf16' : 'fp32';
}

let bf16Warned = false;

/**
 * A model's precision on a device: the one asked for (validated) or the
 * device's default. bf16 on a CPU without AVX512_BF16 gives the same numbers
 * without the speed-up, which is said once per process (a warning).
 */
export function choosePrecision(device: DeviceName, asked?: PrecisionName): PrecisionName {
  const precision = asked === undefined ? defaultPrecision(device) : expectOneOf('precision', asked, PRECISIONS);
  if (precision === 'bf16' && device === 'cpu' && !bf16Warned && !loadAddon().hasAvx512Bf16()) {
    bf16Warned = true;
    process.emitWarning(
      'precision "bf16" on a CPU without AVX512_BF16: GEMM inputs are rounded to bf16 and multiplied in fp32 (the same numbers, without the bf16 speed-up)',
      { code: 'GPT_ENGINE_BF16' },
    );
  }
  return precision;
}
