#!/usr/bin/env node
'use strict';
// The GPU check's Node part (gpu-check.sh sets up node, dist/ and the addon,
// then runs this). Steps, in order:
//   1. correctness: every backend op on the device against the CPU backend
//      (the op tables in test/ops/), attention determinism; then a few
//      training steps on both backends and decode equivalence; NCCL where
//      libnccl.so.2 is found (one rank on one GPU, no MPI: all-reduce,
//      reduce-scatter and all-gather against the CPU result);
//   2. benchmarks (skipped with --only correctness): the engine's attention
//      and GEMM kernels timed through backendOp, decode attention through
//      decodeOp, `gpt-engine bench ... --json` when that CLI exists, and
//      PyTorch on the same shapes (bench/pytorch/gpu_check.py). FLOPs come
//      from the built library (dist/lib/flops.js), for both.
// Writes JSON files into the results folder and prints a short table last.
//
//   node main.js --device cuda|cpu --results DIR [--only correctness] [--dry-run]
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const root = path.resolve(__dirname, '..', '..');
const ops = require(path.join(root, 'test', 'ops', 'op-table.js'));
const decodeOps = require(path.join(root, 'test', 'ops', 'decode-op-table.js'));
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
};
const device = opt('--device', 'cuda');
const resultsDir = path.resolve(opt('--results', path.join(root, 'gpu-check-results')));
const only = opt('--only', '');
const dryRun = args.includes('--dry-run');
const pkgRoot = path.resolve(opt('--pkg', root));
fs.mkdirSync(resultsDir, { recursive: true });

const log = (s) => process.stderr.write(`${s}\n`);
const writeJson = (name, obj) => {
  const file = path.join(resultsDir, name);
  fs.writeFileSync(file, JSON.stringify(obj, null, 2));
  log(`wrote ${file}`);
};
const table = [];  // [step, result, detail]

function loadAddon() {
  const { loadAddon: load } = require(path.join(pkgRoot, 'dist', 'lib', 'native.js'));
  return load();
}

// Which GEMM the CUDA backend runs ("cublaslt 13.0.2" or "own (<why>)"; docs/GPU.md "Which GEMM runs"), null off the GPU.
function gemmImpl(addon) {
  return device === 'cuda' && typeof addon.cudaGemmInfo === 'function' && addon.cudaInfo().available ? addon.cudaGemmInfo().gemm : null;
}

// Attention FLOPs of one shape {B, H, T, D, banded, w}: lib/flops.ts (built), the formula every figure uses.
function attentionFlops(s) {
  const { attentionFlops: flops } = require(path.join(pkgRoot, 'dist', 'lib', 'flops.js'));
  return flops({ batch: s.B, heads: s.H, seq: s.T, headDim: s.D, pattern: s.banded ? 'banded' : 'dense', window: s.banded ? s.w : null });
}

async function correctness(addon) {
  const t0 = Date.now();
  const info = addon.cudaInfo();
  log(`device: ${device}${dryRun ? ' (dry run: the CPU backend stands in for the GPU)' : ''}; GPU: ${info.available ? `${info.name}, ${(info.totalMemory / 2 ** 30).toFixed(1)} GiB, cc ${info.computeCapability}` : `none (${info.reason})`}${gemmImpl(addon) ? `; GEMM ${gemmImpl(addon)}` : ''}`);
  let results = [];
  let error;
  const onResult = (r) => log(`  ${r.pass ? 'ok  ' : 'FAIL'} ${r.name} [${r.precision}] ${r.error ? r.error : Object.entries(r.errors).map(([k, v]) => `${k} ${v.toExponential(2)}`).join(', ')}${r.deterministic === false ? ' NOT DETERMINISTIC' : ''}`);
  try {
    results = await ops.runOpChecks(addon, device, {
      seed: Date.now() & 0x7fffffff,  // fresh inputs each run
      onResult,
    });
    // The decoding ops (KV-cache store, single-query attention, embedding at positions).
    results = results.concat(await decodeOps.runDecodeOpChecks(addon, device, { seed: Date.now() & 0x7fffffff, onResult }));
  } catch (e) {
    error = String(e.message || e);
    log(`correctness: ${error}`);
  }
  const failed = results.filter((r) => !r.pass);
  const seconds = (Date.now() - t0) / 1000;
  writeJson('correctness.json', { device, dryRun, gpu: info, seconds, error, cases: results });
  table.push(['op correctness', error ? 'ERROR' : failed.length ? 'FAIL' : 'pass',
    error ? error.slice(0, 80) : `${results.length - failed.length}/${results.length} cases, ${seconds.toFixed(1)} s${failed.length ? `; failed: ${failed.map((f) => f.name).slice(0, 3).join('; ')}` : ''}`]);
  return !error && failed.length === 0;
}

function loadLib() {
  try {
    return require(path.join(pkgRoot, 'dist', 'lib', 'index.js'));
  } catch (e) {
    return {};
  }
}

// A small model both checks use: one dense and one banded layer, so both
// attention kernels run inside the training step and the decoder.
const SMALL = {
  n_layer: 2,
  n_head: 2,
  n_embd: 128,
  n_positions: 128,
  vocab_size: 512,
  layer_norm_epsilon: 1e-5,
  attention_pattern: 'alternating',
  attention_window: 16,
};

async function training() {
  // A few steps of a small model on both backends from the same weights:
  // losses agree to bf16 tolerance (and to 1e-4 on the fp32 path).
  const lib = loadLib();
  if (typeof lib.GPT !== 'function') {
    // Not run is not passed: the check fails rather than pass without training.
    const note = 'dist/lib has no GPT class (run `npm run build`)';
    table.push(['training steps cpu vs ' + device, 'FAIL', note]);
    writeJson('training.json', { skipped: true, reason: note });
    return false;
  }
  const out = { device, runs: [] };
  let ok = true;
  for (const [precision, tol] of [['fp32', 1e-4], ['bf16', 1e-2]]) {
    const run = { precision, tolerance: tol, steps: [] };
    try {
      const cpu = await lib.GPT.create(SMALL, { seed: 7, device: 'cpu', precision });
      const dev = await lib.GPT.create(SMALL, { seed: 7, device, precision });
      dev.setParameters(cpu.parameters());
      const r = ops.rng(99);
      const B = 4, T = 64;
      for (let s = 0; s < 4; ++s) {
        const tokens = Int32Array.from(ops.randi(r, B * T, 0, 512));
        const targets = Int32Array.from(ops.randi(r, B * T, 0, 512));
        const la = await cpu.forwardBackward(tokens, targets, { batch: B, seq: T });
        const lb = await dev.forwardBackward(tokens, targets, { batch: B, seq: T });
        const ga = await cpu.step({ lr: 1e-3 });
        const gb = await dev.step({ lr: 1e-3 });
        const rel = Math.abs(la - lb) / Math.abs(la);
        const relNorm = Math.abs(ga.gradNorm - gb.gradNorm) / Math.abs(ga.gradNorm);
        if (!Number.isFinite(la) || !Number.isFinite(lb)) run.nonFinite = true;
        run.steps.push({ cpu: la, [device]: lb, rel, gradNormCpu: ga.gradNorm, gradNormDevice: gb.gradNorm, relNorm });
      }
      await cpu.dispose();
      await dev.dispose();
      run.worst = Math.max(...run.steps.map((x) => Math.max(x.rel, x.relNorm)));
      run.pass = !run.nonFinite && run.worst < tol;
    } catch (e) {
      run.error = String(e.message || e);
      run.pass = false;
    }
    ok = ok && run.pass;
    out.runs.push(run);
    table.push([
      `training ${precision} cpu vs ${device}`,
      run.error ? 'ERROR' : run.pass ? 'pass' : 'FAIL',
      run.error ? run.error.slice(0, 90) : `worst rel diff (loss, grad norm) ${run.worst.toExponential(2)} (limit ${tol})`,
    ]);
  }
  writeJson('training.json', out);
  return ok;
}

async function decode() {
  // KV-cache decoding on the device equals a full forward over the same
  // tokens (relative L2 < 1e-5 in fp32), dense and banded, past the band.
  const lib = loadLib();
  if (typeof lib.GPT !== 'function') {
    const note = 'dist/lib has no GPT class (run `npm run build`)';
    table.push(['decode equivalence', 'FAIL', note]);
    writeJson('decode.json', { skipped: true, reason: note });
    return false;
  }
  const res = { device, steps: [] };
  try {
    const m = await lib.GPT.create(SMALL, { seed: 11, device, precision: 'fp32' });
    const r = ops.rng(5);
    const prompt = Int32Array.from(ops.randi(r, 20, 0, 512));
    const extra = Int32Array.from(ops.randi(r, 30, 0, 512)); // 50 tokens: the 16-wide band wraps
    const abort = new Int32Array(1);
    const session = await m.decoder().open([prompt.length + extra.length], abort);
    let logits = await session.prefill([prompt]);
    const seqSoFar = Array.from(prompt);
    let worst = 0;
    for (let i = 0; i <= extra.length; ++i) {
      const T = seqSoFar.length;
      const full = (await m.forward(Int32Array.from(seqSoFar), { batch: 1, seq: T })).logits;
      const last = full.subarray((T - 1) * 512, T * 512);
      let num = 0, den = 0, finite = true;
      for (let j = 0; j < 512; ++j) {
        if (!Number.isFinite(logits[j])) finite = false;
        num += (logits[j] - last[j]) ** 2;
        den += last[j] ** 2;
      }
      const rel = finite ? Math.sqrt(num / den) : Infinity;
      worst = Math.max(worst, rel);
      res.steps.push({ position: T - 1, rel });
      if (i === extra.length) break;
      seqSoFar.push(extra[i]);
      logits = await session.step(Int32Array.of(extra[i]), Uint8Array.of(1));
    }
    session.close();
    await m.dispose();
    res.worst = worst;
    res.pass = worst < 1e-5;
  } catch (e) {
    res.error = String(e.message || e);
    res.pass = false;
  }
  writeJson('decode.json', res);
  table.push([
    `decode equivalence (${device}, fp32)`,
    res.error ? 'ERROR' : res.pass ? 'pass' : 'FAIL',
    res.error ? res.error.slice(0, 90) : `worst relative L2 ${res.worst.toExponential(2)} over ${res.steps.length} positions`,
  ]);
  return res.pass;
}

async function benchEngine(addon) {
  const shapes = dryRun
    ? [{ B: 1, H: 2, T: 256, D: 64, banded: false, w: 0 }, { B: 1, H: 2, T: 256, D: 64, banded: true, w: 64 }]
    : [
        { B: 1, H: 16, T: 4096, D: 128, banded: false, w: 0 },
        { B: 1, H: 16, T: 8192, D: 128, banded: false, w: 0 },
        { B: 1, H: 16, T: 8192, D: 128, banded: true, w: 256 },
        { B: 8, H: 12, T: 1024, D: 64, banded: false, w: 0 },
        { B: 1, H: 16, T: 4096, D: 64, banded: false, w: 0 },
        // The band's worth at length: tokens/s of w=256 against dense at T 16384 (the bandRatio row).
        { B: 1, H: 16, T: 16384, D: 128, banded: false, w: 0 },
        { B: 1, H: 16, T: 16384, D: 128, banded: true, w: 256 },
      ];
  // fp32 beside bf16 on these (the SIMT kernels of attention_fp32.cu): what bf16 buys.
  const fp32Shapes = dryRun ? [shapes[0]] : [shapes[0], shapes[3]];
  const repeat = dryRun ? 1 : 10;
  const r = ops.rng(5);
  const rows = [];
  // bf16 with q, k, v and out stored in bf16 (the training step's storage), and on the fp32 shapes also bf16
  // reading fp32 tensors (GPT_ENGINE_BF16_STORAGE=0's path: the kernels convert as they stage).
  const cases = [...shapes.map((s) => ({ s, precision: 'bf16', storage: 'bf16' })),
    ...fp32Shapes.map((s) => ({ s, precision: 'bf16', storage: 'fp32' })),
    ...fp32Shapes.map((s) => ({ s, precision: 'fp32', storage: 'fp32' }))];
  for (const { s, precision, storage } of cases) {
    const n = s.B * s.H * s.T * s.D;
    // precision bf16: the tensor-core kernels; fp32: the SIMT ones (backendOp's default).
    const base = { device, precision, storage, batch: s.B, heads: s.H, seq: s.T, headDim: s.D, banded: s.banded, window: s.w,
      scale: 1 / Math.sqrt(s.D), q: ops.randn(r, n), k: ops.randn(r, n), v: ops.randn(r, n) };
    const flops = attentionFlops(s);
    const row = { ...s, precision, storage, pattern: s.banded ? `banded w=${s.w}` : 'dense' };
    try {
      const f = await addon.backendOp({ ...base, op: 'attention_forward', repeat });
      const b = await addon.backendOp({ ...base, op: 'attention_backward', out: f.out, lse: f.lse, dout: ops.randn(r, n), repeat });
      row.fwd_ms = f.ms;
      row.bwd_ms = b.ms;
      row.fwd_tflops = flops.forward / (f.ms * 1e9);
      row.fwdbwd_tflops = flops.total / ((f.ms + b.ms) * 1e9);
    } catch (e) {
      row.error = String(e.message || e);
    }
    rows.push(row);
    log(`  engine attention ${precision} (${storage} storage) ${row.pattern} B${s.B} H${s.H} T${s.T} D${s.D}: ${row.error || `fwd ${row.fwd_tflops.toFixed(1)} TFLOP/s, fwd+bwd ${row.fwdbwd_tflops.toFixed(1)} TFLOP/s`}`);
  }
  // Dense against banded at the same length: the same queries, so the ratio of times is the ratio of tokens/s.
  const bandRatio = [];
  for (const d of rows.filter((x) => !x.banded && x.precision === 'bf16' && x.storage === 'bf16' && !x.error)) {
    const b = rows.find((x) => x.banded && x.precision === 'bf16' && x.storage === 'bf16' && x.T === d.T && x.D === d.D && x.B === d.B && x.H === d.H && !x.error);
    if (b) bandRatio.push({ T: d.T, D: d.D, w: b.w, fwd: d.fwd_ms / b.fwd_ms, fwdbwd: (d.fwd_ms + d.bwd_ms) / (b.fwd_ms + b.bwd_ms) });
  }
  const { gemms, step } = await benchGemmAndStep(addon, r);
  const decodeRows = await benchDecodeAttention(addon, r);
  stepRows = step;
  // The own GEMM beside cuBLASLt: the choice is made once per process, so a child with GPT_ENGINE_GEMM=own times it.
  let own = null;
  if (gemmImpl(addon) && gemmImpl(addon).startsWith('cublaslt')) {
    const res = spawnSync(process.execPath, [__filename, '--device', device, '--results', resultsDir, '--pkg', pkgRoot, '--only', 'gemm-own'], {
      encoding: 'utf8', timeout: 180000, env: { ...process.env, GPT_ENGINE_GEMM: 'own' } });
    if (res.stderr) log(res.stderr.trim());
    try {
      own = JSON.parse(fs.readFileSync(path.join(resultsDir, 'bench-gemm-own.json'), 'utf8'));
    } catch (e) {
      own = { error: `the GPT_ENGINE_GEMM=own run ended with ${res.status}: ${String(e.message).slice(0, 60)}` };
    }
  }
  writeJson('bench-engine.json', { device, dryRun, gemmImpl: gemmImpl(addon), peakTflops: PEAK_TFLOPS, attention: rows, bandRatio, gemm: gemms, step, own, decodeAttention: decodeRows, note: 'timed through backendOp / decodeOp: device time of the op between two synchronizations, mean of `repeat` runs' });
  for (const x of rows)
    table.push([`engine attn ${x.precision}${x.precision === 'bf16' && x.storage === 'fp32' ? ' fp32-storage' : ''} ${x.pattern} T${x.T} D${x.D}`, x.error ? 'ERROR' : 'ran', x.error ? x.error.slice(0, 80) : `fwd ${x.fwd_tflops.toFixed(1)}, fwd+bwd ${x.fwdbwd_tflops.toFixed(1)} TFLOP/s`]);
  for (const x of bandRatio)
    table.push([`engine band w=${x.w} vs dense T${x.T} D${x.D}`, 'ran', `tokens/s ${x.fwd.toFixed(1)}x (fwd), ${x.fwdbwd.toFixed(1)}x (fwd+bwd)`]);
  if (own && own.error) table.push(['engine own GEMM beside cuBLASLt', 'ERROR', own.error]);
  for (const g of own && !own.error ? own.gemm : [])
    table.push([`own GEMM ${g.precision} ${g.M}x${g.K}x${g.N}`, g.error ? 'ERROR' : 'ran', g.error ? g.error.slice(0, 80) : `${g.tflops.toFixed(1)} TFLOP/s`]);
  for (const x of own && !own.error ? own.step : [])
    table.push([`own GEMM step ${x.preset} ${x.precision} B${x.batch} T${x.seq}`, x.error ? 'ERROR' : 'ran', x.error ? x.error.slice(0, 80) :
      `${x.ms.toFixed(1)} ms, MFU ${(100 * x.mfu).toPrecision(3)}% of ${PEAK_TFLOPS} TFLOP/s`]);
  for (const g of gemms)
    table.push([`engine GEMM ${g.precision} ${g.M}x${g.K}x${g.N}`, g.error ? 'ERROR' : 'ran', g.error ? g.error.slice(0, 80) : `${g.tflops.toFixed(1)} TFLOP/s`]);
  for (const x of step)
    table.push([`engine step ${x.preset} ${x.precision}${x.graph ? ' graph' : ''}${x.storage === 'fp32' && x.precision === 'bf16' ? ' fp32-storage' : ''} B${x.batch} T${x.seq}`, x.error ? 'ERROR' : 'ran', x.error ? x.error.slice(0, 80) :
      `${x.ms.toFixed(1)} ms, ${Math.round(x.tokensPerSecond)} tok/s, MFU ${(100 * x.mfu).toPrecision(3)}% of ${PEAK_TFLOPS}` +
      (x.mfuOfGemm === null ? '' : `, ${(100 * x.mfuOfGemm).toPrecision(3)}% of the GEMM's ${x.gemmTflops.toPrecision(3)}`) + ' TFLOP/s' +
      (x.graph ? `; graphs ${String(x.graphs).slice(0, 40)}` : '')]);
  for (const x of decodeRows)
    table.push([`engine decode attn ${x.pattern} M${x.M} H${x.H} D${x.D} n${x.n}`, x.error ? 'ERROR' : 'ran', x.error ? x.error.slice(0, 80) : `${x.us.toFixed(1)} us, cache read ${x.cache_gbps.toFixed(0)} GB/s`]);
  return shapes;
}

// The model's GEMM shapes timed through backendOp (bf16, and fp32 on the first), then whole training steps.
async function benchGemmAndStep(addon, r, precisions = ['bf16', 'fp32']) {
  const gemms = [];
  const gemmShapes = dryRun ? [[128, 128, 128]] : [[8192, 768, 3072], [8192, 3072, 768], [8192, 768, 50304]];
  const gemmCases = [...gemmShapes.map((x) => [...x, 'bf16']), ...gemmShapes.slice(0, 1).map((x) => [...x, 'fp32'])]
    .filter((x) => precisions.includes(x[3]));
  for (const [M, K, N, precision] of gemmCases) {
    const g = { M, K, N, precision };
    try {
      const res = await addon.backendOp({ device, op: 'matmul_forward', precision, M, K, N, a: ops.randn(r, M * K), b: ops.randn(r, K * N, 0.05), repeat: dryRun ? 1 : 10 });
      g.ms = res.ms;
      g.tflops = (2 * M * K * N) / (res.ms * 1e9);
    } catch (e) {
      g.error = String(e.message || e);
    }
    gemms.push(g);
    log(`  engine GEMM ${precision} ${M}x${K}x${N}: ${g.error || `${g.tflops.toFixed(1)} TFLOP/s`}`);
  }
  return { gemms, step: await benchStep(gemms, precisions) };
}

let stepRows = [];  // benchStep's rows, for the ratio against PyTorch's step

// The dense bf16 tensor-core peak that MFU is stated against (H100 SXM and H200: 989 TFLOP/s without sparsity).
const PEAK_TFLOPS = Number(process.env.GPU_CHECK_PEAK_TFLOPS) || 989;

// Whole training steps (forwardBackward + step) of GPT-2 small at the shape the design targets (B 16, T 1024), in
// bf16 and fp32: median ms of 5 after 2 warm-up steps, tokens/s, and MFU (model FLOPs of lib/flops.ts
// trainingFlopsPerToken) against PEAK_TFLOPS and against the best GEMM rate measured above at that precision.
async function benchStep(gemms, precisions) {
  const lib = loadLib();
  if (typeof lib.GPT !== 'function') return [{ error: 'dist/lib has no GPT class (run `npm run build`)' }];
  const { trainingFlopsPerToken } = require(path.join(pkgRoot, 'dist', 'lib', 'flops.js'));
  const preset = dryRun ? 'tiny' : 'gpt2';
  const [B, T] = dryRun ? [2, 32] : [16, 1024];
  const out = [];
  // bf16 again with the micro-batch captured as a CUDA graph, and bf16 with fp32 storage of the activations
  // (GPT_ENGINE_BF16_STORAGE=0; docs/ARCHITECTURE.md "Precision"): both read when the model is created.
  const cases = [...precisions.map((p) => [p, false, null]),
    ...(precisions.includes('bf16') ? [['bf16', true, null], ['bf16', false, 'fp32']] : [])];
  for (const [precision, graph, storage] of cases) {
    const row = { preset, precision, graph, storage: storage || (precision === 'bf16' ? 'bf16' : 'fp32'), batch: B, seq: T };
    let m;
    const before = process.env.GPT_ENGINE_CUDA_GRAPH;
    const beforeStorage = process.env.GPT_ENGINE_BF16_STORAGE;
    const restore = () => {
      if (before === undefined) delete process.env.GPT_ENGINE_CUDA_GRAPH;
      else process.env.GPT_ENGINE_CUDA_GRAPH = before;
      if (beforeStorage === undefined) delete process.env.GPT_ENGINE_BF16_STORAGE;
      else process.env.GPT_ENGINE_BF16_STORAGE = beforeStorage;
    };
    try {
      if (graph) process.env.GPT_ENGINE_CUDA_GRAPH = '1';
      else delete process.env.GPT_ENGINE_CUDA_GRAPH;
      if (storage === 'fp32') process.env.GPT_ENGINE_BF16_STORAGE = '0';
      else delete process.env.GPT_ENGINE_BF16_STORAGE;
      m = await lib.GPT.create(preset, { seed: 3, device, precision });
      restore();
      const cfg = m.config;
      const r = ops.rng(11);
      const tokens = Int32Array.from(ops.randi(r, B * T, 0, cfg.vocab_size));
      const targets = Int32Array.from(ops.randi(r, B * T, 0, cfg.vocab_size));
      const times = [];
      for (let i = 0; i < 7; ++i) {
        const t0 = process.hrtime.bigint();
        // As the trainer runs it: the loss stays on the device until step() (one copy back per step).
        await m.forwardBackward(tokens, targets, { batch: B, seq: T }, ...(m.defersLoss ? [{ deferLoss: true }] : []));
        await m.step({ lr: 1e-4 });
        if (i >= 2) times.push(Number(process.hrtime.bigint() - t0) / 1e6);
      }
      times.sort((a, b) => a - b);
      row.ms = times[times.length >> 1];
      row.flopsPerToken = trainingFlopsPerToken(cfg, T);
      row.tokensPerSecond = (B * T) / (row.ms / 1e3);
      const tflops = (row.flopsPerToken * row.tokensPerSecond) / 1e12;
      row.tflops = tflops;
      row.mfu = tflops / PEAK_TFLOPS;
      const best = Math.max(0, ...gemms.filter((g) => g.precision === precision && !g.error).map((g) => g.tflops));
      row.gemmTflops = best || null;
      row.mfuOfGemm = best ? tflops / best : null;
      if (typeof m.graphs === 'function') row.graphs = m.graphs();
    } catch (e) {
      row.error = String(e.message || e);
    } finally {
      if (m) await m.dispose().catch(() => {});
    }
    restore();
    log(`  engine step ${preset} ${precision}${graph ? ' graph' : ''} storage ${row.storage} B${B} T${T}: ${row.error || `${row.ms.toFixed(1)} ms, MFU ${(100 * row.mfu).toFixed(2)}%`}`);
    out.push(row);
  }
  return out;
}

// Single-query attention over a KV cache (decodeOp, `repeat` runs): one
// query per row at the last position of a full cache, dense or banded; the
// figure of merit is the cache read rate (K and V of every key attended).
async function benchDecodeAttention(addon, r) {
  if (typeof addon.decodeOp !== 'function') return [];
  const shapes = dryRun
    ? [{ M: 1, H: 2, D: 64, n: 300, w: 0 }]
    : [
        { M: 1, H: 12, D: 64, n: 1024, w: 0 },
        { M: 8, H: 12, D: 64, n: 1024, w: 0 },
        { M: 1, H: 16, D: 128, n: 4096, w: 0 },
        { M: 1, H: 12, D: 64, n: 4096, w: 256 },
      ];
  const out = [];
  for (const s of shapes) {
    const P = s.w || s.n, keys = s.w ? Math.min(s.w, s.n) : s.n, span = s.H * P * s.D;
    const row = { ...s, pattern: s.w ? `banded w=${s.w}` : 'dense' };
    try {
      const cache = new Float32Array(2 * span * s.M);
      for (let i = 0; i < cache.length; ++i) cache[i] = r() - 0.5;
      const rec = (f) => Int32Array.from({ length: s.M }, (_, i) => f(i));
      const res = await addon.decodeOp({ device, op: 'decode_attention', M: s.M, H: s.H, D: s.D, cache,
        q: ops.randn(r, s.M * s.H * s.D), kOffset: rec((i) => 2 * span * i), vOffset: rec((i) => 2 * span * i + span),
        slots: rec(() => P), pos: rec(() => s.n - 1), first: rec(() => s.n - keys), repeat: dryRun ? 1 : 20 });
      row.us = res.ms * 1000;
      row.cache_gbps = (2 * s.M * s.H * keys * s.D * 4) / (res.ms * 1e6);
    } catch (e) {
      row.error = String(e.message || e);
    }
    out.push(row);
    log(`  engine decode attention ${row.pattern} M${s.M} H${s.H} D${s.D} keys ${keys}: ${row.error || `${row.us.toFixed(1)} us, cache read ${row.cache_gbps.toFixed(0)} GB/s`}`);
  }
  return out;
}

function benchCli() {
  const cli = path.join(pkgRoot, 'dist', 'bin', 'gpt-engine.js');
  // A dry run checks the plumbing with one quick section; the real run does all three.
  const subs = dryRun ? ['gemm'] : ['attention', 'train', 'generate'];
  if (!fs.existsSync(cli)) {
    table.push(['gpt-engine bench', 'SKIPPED', 'dist/bin/gpt-engine.js not built']);
    return;
  }
  const help = spawnSync(process.execPath, [cli, '--help'], { encoding: 'utf8', timeout: 30000 });
  if (help.status !== 0 || !/^\s+bench\b/m.test(help.stdout || '')) {
    const why = 'the bench command is not in this build yet (gpt-engine --help does not list it)';
    log(`  ${why}`);
    table.push(['gpt-engine bench', 'SKIPPED', why]);
    return;
  }
  for (const sub of subs) {
    const extra = dryRun ? (process.env.GPU_CHECK_BENCH_DRY_ARGS || '--quick').split(' ').filter(Boolean) : [];
    const res = spawnSync(process.execPath, [cli, 'bench', sub, '--device', device, '--json', ...extra], {
      encoding: 'utf8', timeout: dryRun ? 60000 : 120000, maxBuffer: 64 << 20 });
    if (res.status === 0) {
      try {
        writeJson(`bench-${sub}.json`, JSON.parse(res.stdout));
        table.push([`gpt-engine bench ${sub}`, 'ran', `bench-${sub}.json`]);
      } catch (e) {
        table.push([`gpt-engine bench ${sub}`, 'ERROR', 'output was not one JSON document']);
      }
    } else {
      const why = (res.error ? String(res.error.message) : (res.stderr || '').trim().split('\n').pop() || `exit ${res.status}`).slice(0, 90);
      log(`  gpt-engine bench ${sub}: ${why}`);
      table.push([`gpt-engine bench ${sub}`, 'SKIPPED', why]);
    }
  }
}

function benchPytorch(shapes) {
  // GPT_ENGINE_PYTHON (as `bench --with-pytorch`), else the first python3 that imports torch.
  const py = process.env.GPT_ENGINE_PYTHON || process.env.PYTHON ||
    ['python3', '/usr/bin/python3'].find((p) => spawnSync(p, ['-c', 'import torch'], { stdio: 'ignore', timeout: 60000 }).status === 0) || 'python3';
  const outFile = path.join(resultsDir, 'bench-pytorch.json');
  const res = spawnSync(py, [path.join(root, 'bench', 'pytorch', 'gpu_check.py'), '--out', outFile, '--shapes', JSON.stringify(shapes), ...(dryRun ? ['--dry-run'] : [])], {
    encoding: 'utf8', timeout: dryRun ? 120000 : 240000, env: { ...process.env, PYTHONUNBUFFERED: '1' } });
  if (res.stderr) log(res.stderr.trim());
  if (res.status !== 0) {
    const why = (res.error ? String(res.error.message) : (res.stderr || '').trim().split('\n').pop() || `exit ${res.status}`).slice(0, 90);
    table.push(['PyTorch twins', 'SKIPPED', why]);
    return;
  }
  try {
    const j = JSON.parse(fs.readFileSync(outFile, 'utf8'));
    // The twin reports times; FLOP/s from the same formula as the engine's rows.
    for (const a of j.attention || []) {
      if (a.error) continue;
      const flops = attentionFlops(a);
      a.fwd_tflops = flops.forward / (a.fwd_ms * 1e9);
      a.fwdbwd_tflops = flops.total / (a.fwdbwd_ms * 1e9);
    }
    fs.writeFileSync(outFile, JSON.stringify(j, null, 2));
    for (const a of j.attention || [])
      table.push([`torch ${a.backend} ${a.pattern} T${a.T} D${a.D}`, a.error ? 'ERROR' : 'ran', a.error ? String(a.error).slice(0, 80) : `fwd ${a.fwd_tflops.toFixed(1)}, fwd+bwd ${a.fwdbwd_tflops.toFixed(1)} TFLOP/s`]);
    if (j.train) table.push([`torch GPT-2 train (${j.train.mode})`, j.train.error ? 'ERROR' : 'ran', j.train.error ? String(j.train.error).slice(0, 80) : `${Math.round(j.train.tokens_per_s)} tokens/s`]);
    const mine = stepRows.find((x) => x.precision === 'bf16' && !x.graph && x.storage === 'bf16' && !x.error);
    const cfg = j.train && j.train.config;
    if (mine && cfg && !j.train.error && cfg.batch === mine.batch && cfg.seq === mine.seq)
      table.push([`engine/torch GPT-2 step bf16 B${mine.batch} T${mine.seq}`, 'ran', `${(mine.tokensPerSecond / j.train.tokens_per_s).toFixed(2)}x torch (${j.train.mode})`]);
  } catch (e) {
    table.push(['PyTorch twins', 'ERROR', String(e.message).slice(0, 80)]);
  }
}

// One rank, a locally made unique id: the NCCL collectives gpt-engine uses
// work on this GPU and give the CPU's result. Skipped where NCCL is missing.
async function nccl(addon) {
  const step = 'NCCL collectives (1 rank)';
  if (typeof addon.ncclInfo !== 'function') {
    table.push([step, 'SKIP', 'this addon has no NCCL loader']);
    return true;
  }
  const info = addon.ncclInfo();
  if (!info.available) {
    table.push([step, 'SKIP', String(info.reason).slice(0, 90)]);
    return true;
  }
  if (dryRun || device !== 'cuda') {
    table.push([step, 'SKIP', 'needs --device cuda']);
    return true;
  }
  try {
    const r = await addon.ncclCheck({ n: 1 << 22 });
    writeJson('nccl.json', r);
    table.push([step, r.ok ? 'PASS' : 'FAIL', `${r.detail} (${r.ms.toFixed(2)} ms)`]);
    return r.ok;
  } catch (e) {
    table.push([step, 'FAIL', String(e.message).slice(0, 90)]);
    return false;
  }
}

function printTable(ok) {
  const w0 = Math.max(...table.map((r) => r[0].length), 4), w1 = 7;
  const lines = [`gpu-check (${device}${dryRun ? ', dry run' : ''}) results in ${resultsDir}`];
  for (const [a, b, c] of table) lines.push(`${a.padEnd(w0)}  ${b.padEnd(w1)}  ${c}`);
  lines.push(ok ? 'GPU CHECK: PASS' : 'GPU CHECK: FAIL');
  process.stdout.write(lines.join('\n') + '\n');
}

(async () => {
  let addon;
  try {
    addon = loadAddon();
  } catch (e) {
    table.push(['load addon', 'ERROR', String(e.message).split('\n')[0].slice(0, 90)]);
    printTable(false);
    process.exit(1);
  }
  if (only === 'gemm-own') {
    // The child of benchEngine (GPT_ENGINE_GEMM=own): the bf16 GEMMs and step on the own kernels, nothing else.
    const res = await benchGemmAndStep(addon, ops.rng(5), ['bf16']);
    writeJson('bench-gemm-own.json', { gemmImpl: gemmImpl(addon), gemm: res.gemms, step: res.step });
    process.exit(0);
  }
  let ok = await correctness(addon);
  ok = (await training()) && ok;
  ok = (await decode()) && ok;
  ok = (await nccl(addon)) && ok;
  if (only !== 'correctness') {
    const shapes = await benchEngine(addon);
    benchCli();
    benchPytorch(shapes);
  }
  writeJson('summary.json', { device, dryRun, ok, table });
  printTable(ok);
  process.exit(ok ? 0 : 1);
})();
