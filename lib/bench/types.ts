/**
 * The shape of a benchmark report (report.json, `bench --json`). One
 * document holds the machine, the ceilings measured in the same run, and
 * one section per capability. Every timing is a Stat over the repeats
 * (after warm-up); every throughput also says which ceiling it is a
 * fraction of. PyTorch figures sit beside ours with impl 'pytorch'.
 */
import type { DeviceName, PrecisionName } from '../device';

export const REPORT_SCHEMA = 'gpt-engine-bench/1';

/** Median and range over the timed repeats (warm-up excluded). */
export interface Stat {
  median: number;
  min: number;
  max: number;
  /** each repeat, in order */
  samples: number[];
}

export type SectionName = 'attention' | 'gemm' | 'train' | 'generate' | 'serve';
/** The sections `bench all` runs. */
export const SECTION_NAMES: readonly SectionName[] = ['attention', 'gemm', 'train', 'generate'];
/** Every section `bench` can run: `all`'s, and serve (an HTTP server under load) on its own. */
export const BENCH_SECTIONS: readonly SectionName[] = [...SECTION_NAMES, 'serve'];

export type BenchDevice = DeviceName;
export type BenchPrecision = PrecisionName;

/** A ceiling measured on the spot, or why it was not. */
export interface Ceiling {
  /** GFLOP/s or GB/s (see unit); null when not measured */
  value: number | null;
  unit: 'GFLOP/s' | 'GB/s';
  /** best of each probe call, over the calls */
  stat?: Stat;
  how: string;
  /** set when value is null */
  reason?: string;
}

export interface Ceilings {
  fp32: Ceiling;
  bf16: Ceiling;
  readBandwidth: Ceiling;
  gpuCopy: Ceiling;
  gpuGemm: Ceiling;
}

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  isa: string;
  supportedIsas: string[];
  avx512bf16: boolean;
  threads: number;
  memoryBytes: number;
  os: string;
  node: string;
  packageVersion: string;
  gitCommit: string | null;
  gitDirty: boolean | null;
  gpu: {
    used: boolean;
    name: string | null;
    memoryBytes: number | null;
    computeCapability: string | null;
    driverVersion: number | null;
    runtimeVersion: number | null;
    reason: string;
    /** which GEMM the CUDA backend ran ("cublaslt 13.0.2" or "own (<why>)"); null when the run is not on a GPU */
    gemm?: string | null;
  };
  /** load average when the run started (1, 5, 15 min): noise on a shared machine */
  loadAverage: number[];
}

export interface SectionBase {
  /** 'ok': measured; 'unavailable': the API is not in this build; 'error': it threw */
  status: 'ok' | 'unavailable' | 'error';
  reason?: string;
  /** what the section measured, in words (shapes, repeats) */
  description: string;
  notes: string[];
}

export type Impl = 'fused' | 'naive' | 'pytorch' | 'engine';

export interface AttentionRow {
  impl: 'fused' | 'naive' | 'pytorch';
  pattern: 'dense' | 'banded';
  window: number | null;
  batch: number;
  heads: number;
  seq: number;
  headDim: number;
  /** ms */
  forward: Stat | null;
  /** ms, forward and backward together */
  forwardBackward: Stat | null;
  flopsForward: number;
  flopsForwardBackward: number;
  gflopsForward: number | null;
  gflopsForwardBackward: number | null;
  /** of the fp32 FMA peak */
  peakFractionForward: number | null;
  peakFractionForwardBackward: number | null;
  /** fused kernels' scratch high-water mark, bytes */
  workspaceBytes?: number | null;
  note?: string;
}

export interface AttentionSection extends SectionBase {
  rows: AttentionRow[];
  /** the workspace figure checked once against the process's resident memory */
  rssCheck?: { seq: number; workspaceBytes: number; rssGrowthBytes: number; outputBytes: number; consistent: boolean } | null;
}

export type GemmForm = 'forward' | 'input-grad' | 'weight-grad';

export interface GemmRow {
  impl: 'engine' | 'pytorch';
  /** which layer of GPT-2 small the shape is */
  layer: string;
  form: GemmForm;
  precision: BenchPrecision;
  M: number;
  K: number;
  N: number;
  flops: number;
  time: Stat | null;
  gflops: number | null;
  /** of the FMA peak of the same precision (bf16 peak for bf16 where measured) */
  peakFraction: number | null;
  /** of the fp32 FMA peak, always */
  fp32PeakFraction: number | null;
  note?: string;
}

export interface GemmSection extends SectionBase {
  rows: GemmRow[];
}

export interface TrainRow {
  impl: 'engine' | 'pytorch';
  preset: string;
  precision: BenchPrecision;
  batch: number;
  seq: number;
  params: number;
  flopsPerToken: number;
  /** ms per whole step */
  step: Stat | null;
  forward: Stat | null;
  backward: Stat | null;
  optimizer: Stat | null;
  tokensPerSecond: number | null;
  gflops: number | null;
  /** against the FMA peak of the precision */
  mfu: number | null;
  /** against the fp32 FMA peak */
  mfuFp32: number | null;
  loss?: number | null;
  /** the engine's storage of the training activations (GPT.storage()) */
  storage?: 'fp32' | 'bf16';
  note?: string;
}

export interface TrainSection extends SectionBase {
  rows: TrainRow[];
}

export interface GenerateRow {
  impl: 'engine' | 'pytorch';
  preset: string;
  precision: BenchPrecision;
  batch: number;
  promptTokens: number;
  newTokens: number;
  /** prompt tokens per second over the whole batch */
  prefillTokensPerSecond: number | null;
  /** prefill FLOP/s (forward FLOPs per token by lib/flops.ts) over the FMA peak of the precision */
  prefillPeakFraction?: number | null;
  /** generated tokens per second over the whole batch (median over repeats) */
  decodeTokensPerSecond: number | null;
  decode: Stat | null;
  /** ms */
  timeToFirstToken: Stat | null;
  cacheBytes: number | null;
  /** bytes of weights read per decode step */
  weightBytes: number;
  /** tokens/s the read bandwidth allows: batch x bandwidth / weight bytes */
  boundTokensPerSecond: number | null;
  boundFraction: number | null;
  note?: string;
}

export interface GenerateSection extends SectionBase {
  rows: GenerateRow[];
}

export type ServeMode =
  | 'api-alone'
  | 'api-batch'
  | 'api-fifo'
  | 'api-concurrent'
  | 'api-busy'
  | 'server-alone'
  | 'server-fifo'
  | 'server-concurrent';

export interface ServeRow {
  mode: ServeMode;
  preset: string;
  precision: BenchPrecision;
  /** requests at once */
  clients: number;
  promptTokens: number;
  newTokens: number;
  /** ms per round (every client's request answered) */
  wall: Stat | null;
  /** generated tokens of a round / the median round time */
  tokensPerSecond: number | null;
  /** ms, per request as the client sees it, pooled over the timed rounds */
  ttftP50: number | null;
  ttftP99: number | null;
  latencyP50: number | null;
  latencyP99: number | null;
  note?: string;
}

export interface ServeSection extends SectionBase {
  rows: ServeRow[];
}

export interface PytorchInfo {
  requested: boolean;
  measured: boolean;
  /** why not, when not measured */
  reason?: string;
  python?: string;
  torchVersion?: string;
  threads?: number;
  blas?: string;
}

export interface ComparisonEntry {
  key: string;
  label: string;
  unit: string;
  higherIsBetter: boolean;
  baseline: number;
  current: number;
  /** current / baseline */
  ratio: number;
  /** relative tolerance used: the larger repeat spread of the two runs, at least 3% */
  tolerance: number;
  verdict: 'regression' | 'improvement' | 'same';
}

export interface Comparison {
  baselineFile: string;
  baselineDate: string;
  entries: ComparisonEntry[];
  regressions: number;
  missing: string[];
}

export interface BenchReport {
  schema: typeof REPORT_SCHEMA;
  date: string;
  command: string;
  quick: boolean;
  device: BenchDevice;
  deviceReason: string;
  precisions: BenchPrecision[];
  warmup: number;
  repeats: number;
  conventions: string;
  machine: MachineInfo;
  ceilings: Ceilings;
  pytorch: PytorchInfo;
  sections: {
    attention?: AttentionSection;
    gemm?: GemmSection;
    train?: TrainSection;
    generate?: GenerateSection;
    serve?: ServeSection;
  };
  comparison?: Comparison;
  /** seconds the whole run took */
  elapsedSeconds: number;
}
