/**
 * gpt-engine's public API: everything a user imports from 'gpt-engine'.
 */
export * from './errors';
export { loadAddon } from './native';
export * from './runtime';
export * from './config';
export * from './params';
export * from './flops';
export * as validate from './validate';
export { Rng } from './rng';
export type { RngState } from './rng';
export { collectInfo } from './info';
export type { EngineInfo, BackendCheck } from './info';
export { gemm } from './gemm';
export type { GemmOptions, GemmPrecision } from './gemm';
export * as attention from './attention';
export * from './checkpoint';
export { SafetensorsReader, readSafetensors, writeSafetensors, decodeSafetensors, encodeSafetensors } from './safetensors';
export type { TensorInfo, SafetensorsHeader, SafetensorsContent, TensorToWrite } from './safetensors';
export { chooseDevice } from './device';
export type { DeviceChoice, DeviceName, PrecisionName, DeviceChoiceResult } from './device';
export { GPT } from './model';
export type {
  CreateOptions,
  LoadOptions,
  SaveOptions,
  BatchShape,
  ForwardBackwardOptions,
  StepOptions,
  StepResult,
  ModelMemory,
  ModelTimings,
  OptimizerState,
  BatchStats,
} from './model';
export {
  generate as generateWith,
  stream as streamWith,
  runGeneration,
  resolveOptions as resolveGenerateOptions,
  sampleToken,
  samplingDistribution,
  tokenCodec,
  nativeDecoder,
  GENERATE_OPTION_KEYS,
  DEFAULT_MAX_TOKENS,
} from './generate';
export type {
  GenerateOptions,
  GenerationChunk,
  GenerationResult,
  GenerationStats,
  FinishReason,
  ContextOverflow,
  Prompt,
  Decoder,
  DecodeSession,
  TokenCodec,
  SamplingOptions,
} from './generate';
export { Trainer, evaluateCheckpoint, defaultSettings, parseTrainConfigFile, TRAIN_KEYS } from './trainer';
export type {
  TrainerOptions,
  TrainSettings,
  TrainResult,
  StepInfo,
  EvalInfo,
  CheckpointInfo,
  RunHooks,
  EffectiveConfig,
  EvaluateOptions,
  EvaluateResult,
  TrainModel,
  ModelBackend,
} from './trainer';
export { encode, decode, countTokens, getTokenizer, TOKENIZER_NAMES } from './tokenizer';
export type { Tokenizer } from './tokenizer';
export {
  prepare,
  prepareSync,
  defaultWorkers,
  expandInputs,
  openDataset,
  TokenFile,
  TokenFileWriter,
  writeTokenFile,
  BatchSampler,
  evalBatches,
  parseHeader,
  encodeHeader,
  defaultCorpus,
  cacheDir,
} from './data';
export type {
  TokenHeader,
  DataMeta,
  Dataset,
  PrepareOptions,
  PrepareProgress,
  PrepareResult,
  PrepareThroughput,
  SourceMeta,
  SkippedMeta,
  InputFormat,
  BadInputKind,
  SamplerState,
} from './data';
export { makeSchedule, lrAt } from './schedule';
export { plotRuns, writeLossPlot, readMetrics } from './plot';
export type { RunMetrics, MetricsPoint, PlotResult } from './plot';
export { writeReport } from './report';
export { runBench, compareReports } from './bench';
export type { BenchOptions, BenchReport } from './bench';
export { checkFits, estimateMemory, availableMemory } from './limits';
export type { FitRequest, MemoryEstimate } from './limits';
export { serve, SERVE_DEFAULTS } from './serve';
export type { ServeOptions, ServeHandle, ServableModel } from './serve';
