'use strict';
// The op table: every Backend op (native/core/backend.h, class Backend) with
// its cases, run on the device under test against the CPU backend on fresh
// seeded random inputs through the addon's backendOp (upload, run, download;
// outputs poisoned with NaN first, so unwritten elements fail). Used by the
// GPU check (scripts/gpu-check/main.js) and test/cuda/ops.test.ts;
// test/unit/op-table-coverage.test.ts fails when an op of backend.h has no
// case here or in decode-op-table.js. The runner and metrics: run-checks.js.
//
// Tolerances: fp32 path < 1e-5, bf16 < 1e-2 (relative L2). Attention
// with precision 'bf16' runs bf16 tensor cores (fp32 statistics) on CUDA and
// is held to the bf16 tolerance against the CPU's fp32 kernels; 'fp32' runs
// the SIMT fp32 kernels and is held to 1e-5.
//
// Cases with storage 'bf16' (bf16StorageCases) keep the op's typed arguments
// in bf16 on the device, as a model with bf16 storage does, each op held to
// its own measured tolerance (BF16_STORAGE_TOL says why each is what it is).
const { rng, randn, randi, relL2, bitEqual, bf16Round, runChecks } = require('./run-checks.js');

/**
 * The cases: each returns {name, precision, opts, outputs, tol?}. `opts` is
 * the backendOp options without `device`; `outputs` the result keys compared.
 */
function buildCases(seed) {
  const r = rng(seed);
  const cases = [];
  const tolFor = (p) => (p === 'bf16' ? 1e-2 : 1e-5);
  for (const p of ['fp32', 'bf16']) {
    for (const [M, K, N] of [[257, 96, 200], [64, 768, 2304], [5, 33, 7]]) {
      cases.push({ name: `matmul_forward ${M}x${K}x${N} +bias`, precision: p, tol: tolFor(p), outputs: ['out'],
        opts: { op: 'matmul_forward', precision: p, M, K, N, a: randn(r, M * K), b: randn(r, K * N, 0.1), bias: randn(r, N) } });
    }
    for (const [M, K, N] of [[300, 72, 130], [128, 256, 768]]) {
      cases.push({ name: `matmul_backward ${M}x${K}x${N} (accumulating dw, dbias)`, precision: p, tol: tolFor(p),
        outputs: ['dinp', 'dw', 'dbias'],
        opts: { op: 'matmul_backward', precision: p, M, K, N, dout: randn(r, M * N), inp: randn(r, M * K),
          w: randn(r, K * N, 0.1), dw: randn(r, K * N), dbias: randn(r, N) } });
    }
    for (const [M, K, N] of [[100, 64, 333], [33, 768, 1000]]) {
      cases.push({ name: `matmul_nt ${M}x${K}x${N}`, precision: p, tol: tolFor(p), outputs: ['out'],
        opts: { op: 'matmul_nt', precision: p, M, K, N, a: randn(r, M * K), b: randn(r, N * K, 0.1) } });
    }
  }
  {
    const B = 3, T = 17, C = 40, V = 50;
    const tokens = randi(r, B * T, 0, 12);  // few distinct tokens: many repeats
    cases.push({ name: 'embedding_forward', precision: 'fp32', tol: 1e-5, outputs: ['out'],
      opts: { op: 'embedding_forward', B, T, C, V, tokens, wte: randn(r, V * C), wpe: randn(r, T * C) } });
    cases.push({ name: 'embedding_backward (repeated tokens)', precision: 'fp32', tol: 1e-5, outputs: ['dwte', 'dwpe'],
      opts: { op: 'embedding_backward', B, T, C, V, tokens, dout: randn(r, B * T * C), dwte: randn(r, V * C),
        dwpe: randn(r, T * C) } });
  }
  {
    // Rows not a power of two (the CUDA grouping pads its sort), two column blocks, long runs per token.
    // Its own generator, so the cases after it keep their inputs.
    const q = rng(seed + 1000);
    const B = 5, T = 211, C = 300, V = 70;
    const tokens = randi(q, B * T, 0, V);
    cases.push({ name: 'embedding_backward 5x211x300 (long runs)', precision: 'fp32', tol: 1e-5, outputs: ['dwte', 'dwpe'],
      opts: { op: 'embedding_backward', B, T, C, V, tokens, dout: randn(q, B * T * C), dwte: randn(q, V * C),
        dwpe: randn(q, T * C) } });
  }
  for (const [M, C] of [[300, 200], [64, 768]]) {
    const inp = randn(r, M * C, 2);
    for (let i = 0; i < inp.length; ++i) inp[i] += 0.5;
    const gamma = randn(r, C), beta = randn(r, C);
    cases.push({ name: `layernorm_forward ${M}x${C}`, precision: 'fp32', tol: 1e-5, outputs: ['out', 'mean', 'rstd'],
      opts: { op: 'layernorm_forward', M, C, inp, gamma, beta, eps: 1e-5 } });
    // mean/rstd of the same input, computed here in float64, as backward's inputs.
    const mean = new Float32Array(M), rstd = new Float32Array(M);
    for (let m = 0; m < M; ++m) {
      let s = 0;
      for (let c = 0; c < C; ++c) s += inp[m * C + c];
      const mu = s / C;
      let v = 0;
      for (let c = 0; c < C; ++c) v += (inp[m * C + c] - mu) ** 2;
      mean[m] = mu;
      rstd[m] = 1 / Math.sqrt(v / C + 1e-5);
    }
    cases.push({ name: `layernorm_backward ${M}x${C} (accumulating)`, precision: 'fp32', tol: 1e-5,
      outputs: ['dinp', 'dgamma', 'dbeta'],
      opts: { op: 'layernorm_backward', M, C, inp, gamma, mean, rstd, dout: randn(r, M * C), dinp: randn(r, M * C),
        dgamma: randn(r, C), dbeta: randn(r, C) } });
  }
  {
    const n = 10001;
    cases.push({ name: 'gelu_forward', precision: 'fp32', tol: 1e-5, outputs: ['out'],
      opts: { op: 'gelu_forward', inp: randn(r, n, 3) } });
    cases.push({ name: 'gelu_backward', precision: 'fp32', tol: 1e-5, outputs: ['out'],
      opts: { op: 'gelu_backward', inp: randn(r, n, 3), dout: randn(r, n) } });
    cases.push({ name: 'add', precision: 'fp32', tol: 1e-5, outputs: ['out'],
      opts: { op: 'add', a: randn(r, n), b: randn(r, n) } });
    cases.push({ name: 'scale', precision: 'fp32', tol: 1e-5, outputs: ['x'],
      opts: { op: 'scale', x: randn(r, n), s: 0.37 } });
  }
  // Attention: every head size, dense and banded, odd lengths (edge tiles),
  // both tensor layouts the model uses.
  const attn = [];
  for (const D of [64, 80, 96, 128]) {
    attn.push({ B: 2, H: 3, T: 200, D, banded: false, window: 0, layout: 'bhtd' });
    attn.push({ B: 2, H: 2, T: 200, D, banded: true, window: 37, layout: 'bhtd' });
  }
  attn.push({ B: 1, H: 4, T: 130, D: 64, banded: false, window: 0, layout: 'btc' });
  attn.push({ B: 1, H: 4, T: 130, D: 64, banded: true, window: 64, layout: 'btc' });
  attn.push({ B: 1, H: 1, T: 1, D: 64, banded: false, window: 0, layout: 'bhtd' });
  attn.push({ B: 1, H: 2, T: 65, D: 128, banded: true, window: 1, layout: 'bhtd' });
  attn.push({ B: 1, H: 2, T: 300, D: 64, banded: true, window: 1000, layout: 'bhtd' });
  for (const a of attn) {
    const n = a.B * a.H * a.T * a.D;
    const shape = { batch: a.B, heads: a.H, seq: a.T, headDim: a.D, banded: a.banded, window: a.window,
      scale: 1 / Math.sqrt(a.D), layout: a.layout, precision: 'bf16' };
    const label = `attention ${a.banded ? `banded w=${a.window}` : 'dense'} B${a.B} H${a.H} T${a.T} D${a.D} ${a.layout}`;
    const inputs = a.layout === 'btc' ? { qkv: randn(r, 3 * n) } : { q: randn(r, n), k: randn(r, n), v: randn(r, n) };
    // lse is a logarithm: its absolute error is what matters (an error d
    // scales the softmax by e^d), and a relative one is meaningless where lse
    // is near 0 (with T = 1 it is one number, q.k * scale: 20% of fresh seeds
    // failed; found by the CUDA emulator). RMS absolute error instead.
    cases.push({ name: `${label} forward`, precision: 'bf16', tol: 1e-2, outputs: ['out'], absOutputs: ['lse'], attention: true,
      opts: { op: 'attention_forward', ...shape, ...inputs } });
    // Backward inputs: the CPU forward's out and lse (filled in by runCase).
    // When every query sees only itself (T = 1, or a band of width 1) softmax
    // has a single element, so the exact dQ and dK are zero and the CPU's
    // values are rounding noise (~1e-7): a relative error against them means
    // nothing. Those outputs are held to the gradient's scale instead:
    // ||got|| / ||dout|| below the tolerance (found by the CUDA emulator).
    const selfOnly = a.T === 1 || (a.banded && a.window === 1);
    cases.push({ name: `${label} backward`, precision: 'bf16', tol: 1e-2, attention: true,
      outputs: a.layout === 'btc' ? ['dqkv'] : selfOnly ? ['dv'] : ['dq', 'dk', 'dv'],
      zeroOutputs: selfOnly && a.layout !== 'btc' ? ['dq', 'dk'] : [], zeroScale: 'dout',
      needsForward: true, checkDeterminism: true,
      opts: { op: 'attention_backward', ...shape, ...inputs, dout: randn(r, n) } });
  }
  // fp32 attention (SIMT kernels on CUDA): head sizes on every padding class
  // (32, 64, 128, 256) and odd ones, seq 1, lengths that are no multiple of
  // the 32-row tile, window 1 and window > seq. Where every row sees only
  // itself (seq 1, window 1) dQ and dK are exactly 0 on the CPU and
  // rounding-level on the GPU, so those cases compare one dqkv ('btc'), whose
  // norm dV carries. The last case asks for bf16 at a head size without a
  // tensor-core kernel: it must fall back to fp32.
  const attn32 = [
    { B: 2, H: 3, T: 100, D: 32, banded: false, window: 0, layout: 'bhtd' },
    { B: 2, H: 2, T: 100, D: 32, banded: true, window: 20, layout: 'bhtd' },
    { B: 1, H: 2, T: 150, D: 64, banded: false, window: 0, layout: 'bhtd' },
    { B: 1, H: 2, T: 97, D: 128, banded: true, window: 33, layout: 'bhtd' },
    { B: 1, H: 2, T: 70, D: 40, banded: false, window: 0, layout: 'bhtd' },
    { B: 1, H: 2, T: 70, D: 40, banded: true, window: 1, layout: 'btc' },
    { B: 1, H: 3, T: 45, D: 7, banded: false, window: 0, layout: 'btc' },
    { B: 1, H: 1, T: 1, D: 40, banded: false, window: 0, layout: 'btc' },
    { B: 1, H: 1, T: 1, D: 64, banded: true, window: 1, layout: 'btc' },
    { B: 1, H: 2, T: 33, D: 200, banded: true, window: 1000, layout: 'bhtd' },
    { B: 1, H: 1, T: 40, D: 256, banded: false, window: 0, layout: 'bhtd' },
    { B: 1, H: 2, T: 65, D: 32, banded: true, window: 16, layout: 'btc', precision: 'bf16' },
  ];
  for (const a of attn32) {
    const p = a.precision || 'fp32';
    const n = a.B * a.H * a.T * a.D;
    const shape = { batch: a.B, heads: a.H, seq: a.T, headDim: a.D, banded: a.banded, window: a.window,
      scale: 1 / Math.sqrt(a.D), layout: a.layout };
    const label = `attention ${p}${p === 'bf16' ? ' (falls back to fp32)' : ''} ` +
      `${a.banded ? `banded w=${a.window}` : 'dense'} B${a.B} H${a.H} T${a.T} D${a.D} ${a.layout}`;
    const inputs = a.layout === 'btc' ? { qkv: randn(r, 3 * n) } : { q: randn(r, n), k: randn(r, n), v: randn(r, n) };
    cases.push({ name: `${label} forward`, precision: p, tol: 1e-5, outputs: ['out', 'lse'], attention: true,
      opts: { op: 'attention_forward', precision: p, ...shape, ...inputs } });
    cases.push({ name: `${label} backward`, precision: p, tol: 1e-5, attention: true,
      outputs: a.layout === 'btc' ? ['dqkv'] : ['dq', 'dk', 'dv'], needsForward: true, checkDeterminism: true,
      opts: { op: 'attention_backward', precision: p, ...shape, ...inputs, dout: randn(r, n) } });
  }
  {
    const M = 37, V = 1000, Vp = 1024;
    const targets = randi(r, M, 0, V);
    for (let i = 0; i < M; i += 5) targets[i] = -1;
    const logits = randn(r, M * Vp, 3);
    cases.push({ name: 'crossentropy (loss only)', precision: 'fp32', tol: 1e-5, outputs: ['dlogits'], scalars: ['loss', 'count'],
      opts: { op: 'crossentropy', M, V, Vp, logits, targets, dlogitsScale: 0 } });
    cases.push({ name: 'crossentropy (in-place gradient, ignored rows)', precision: 'fp32', tol: 1e-5, outputs: ['dlogits'],
      scalars: ['loss', 'count'], opts: { op: 'crossentropy', M, V, Vp, logits, targets, dlogitsScale: 1 / 29 } });
  }
  // The fused classifier's ops (native/core/classifier.cc runs them on chunks
  // of rows): per-row losses and the in-place gradient, their sum on the
  // device, the head's weight gradient over consecutive chunks (a ragged
  // last one, a chunk that starts inside the batch), and the chunk size of a
  // batch that fits one chunk on every backend.
  {
    const M = 45, V = 1000, Vp = 1024;
    const targets = randi(r, M, 0, V);
    for (let i = 0; i < M; i += 4) targets[i] = -1;
    const logits = randn(r, M * Vp, 3);
    for (const dlogitsScale of [0, 1 / 31])
      cases.push({ name: `crossentropy_rows (scale ${dlogitsScale ? '1/31' : '0'}, ignored rows)`, precision: 'fp32', tol: 1e-5,
        outputs: ['dlogits', 'rowLoss'], opts: { op: 'crossentropy_rows', M, V, Vp, logits, targets, dlogitsScale } });
  }
  {
    const M = 5003;
    const targets = randi(r, M, 0, 50);
    for (let i = 0; i < M; i += 7) targets[i] = -1;
    const rowLoss = new Float32Array(M).map(() => 10 * r());
    cases.push({ name: 'loss_sum 5003 rows (ignored rows)', precision: 'fp32', tol: 1e-12, outputs: [], scalars: ['loss', 'count'],
      opts: { op: 'loss_sum', M, rowLoss, targets } });
    // acc += sum / count, onto a running total (the step's earlier micro-batches).
    cases.push({ name: 'loss_accumulate 5003 rows onto 2.75', precision: 'fp32', tol: 1e-12, outputs: [], scalars: ['acc'],
      opts: { op: 'loss_accumulate', M, rowLoss, targets, acc: 2.75 } });
  }
  for (const p of ['fp32', 'bf16']) {
    const M = 601, Vp = 320, C = 40;
    const dlogits = randn(r, M * Vp, 0.01), x = randn(r, M * C), dw = randn(r, Vp * C, 0.1);
    for (const chunks of [202, 7])
      cases.push({ name: `classifier_weight_grad ${M}x${Vp}x${C} in chunks of ${chunks}`, precision: p, tol: tolFor(p), outputs: ['dw'],
        opts: { op: 'classifier_weight_grad', precision: p, M, Vp, C, dlogits, x, dw, chunks } });
    cases.push({ name: `classifier_weight_grad rows 37..136 of ${M}`, precision: p, tol: tolFor(p), outputs: ['dw'],
      opts: { op: 'classifier_weight_grad', precision: p, M, Vp, C, rows: 100, row0: 37, dlogits: dlogits.slice(0, 100 * Vp),
        x: x.slice(0, 100 * C), dw } });
  }
  // fp32 keeps fp32 activations on every backend (bf16 differs by design: test/cuda/ops.test.ts).
  cases.push({ name: 'activation_dtype', precision: 'fp32', tol: 1e-12, outputs: [], scalars: ['bf16'],
    opts: { op: 'activation_dtype', precision: 'fp32' } });
  cases.push({ name: 'classifier_chunk_rows (one chunk holds the batch)', precision: 'fp32', tol: 1e-12, outputs: [], scalars: ['rows'],
    opts: { op: 'classifier_chunk_rows', M: 100, Vp: 50304, cap: 512 } });
  cases.push({ name: 'sum_squares 1,000,003', precision: 'fp32', tol: 1e-5, outputs: [], scalars: ['sum'],
    opts: { op: 'sum_squares', g: randn(r, 1000003) } });
  {
    const n = 10001;
    cases.push({ name: 'adamw (decay, clipping scale, step 3)', precision: 'fp32', tol: 1e-5, outputs: ['param', 'm', 'v'],
      opts: { op: 'adamw', param: randn(r, n), grad: randn(r, n), m: randn(r, n, 0.1), v: new Float32Array(n).map(() => r() * 0.01),
        lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, gradScale: 0.5, step: 3 } });
  }
  {
    // The step's scale: clipping active (norm 1000 * 1/3 > 1) and not (a large clip), odd length; own generator.
    const q = rng(seed + 2000);
    const g = randn(q, 300007, 0.01);
    cases.push({ name: 'grad_scale_of (clipping)', precision: 'fp32', tol: 1e-6, outputs: [], scalars: ['scale', 'sum'],
      opts: { op: 'grad_scale_of', g, invCount: 1 / 3, gradClip: 1 } });
    cases.push({ name: 'grad_scale_of (no clipping)', precision: 'fp32', tol: 1e-6, outputs: [], scalars: ['scale', 'sum'],
      opts: { op: 'grad_scale_of', g, invCount: 1 / 3, gradClip: 1e6 } });
  }
  // Fused forward ops (last, so the inputs of the cases above stay as they
  // were). Bias + GELU in the GEMM epilogue: edge tiles in M and N, N odd,
  // one row, no bias, the GPT-2 small c_fc shape.
  for (const p of ['fp32', 'bf16']) {
    for (const [M, K, N, bias] of [[257, 96, 201, true], [64, 768, 3072, true], [5, 33, 7, false], [1, 40, 129, true]]) {
      cases.push({ name: `matmul_forward_gelu ${M}x${K}x${N}${bias ? ' +bias' : ''}`, precision: p, tol: tolFor(p),
        outputs: ['pre', 'out'],
        opts: { op: 'matmul_forward_gelu', precision: p, M, K, N, a: randn(r, M * K), b: randn(r, K * N, 0.1),
          ...(bias ? { bias: randn(r, N) } : {}) } });
    }
  }
  // Residual + LayerNorm (fp32 only: it has no precision), resid apart or
  // aliasing a or b as the model does, C not a multiple of 32.
  for (const [M, C, aliasResid] of [[300, 200, 0], [64, 768, 1], [1, 13, 2], [37, 1601, 1]]) {
    const a = randn(r, M * C, 2);
    for (let i = 0; i < a.length; ++i) a[i] += 0.5;
    cases.push({ name: `residual_layernorm_forward ${M}x${C} alias ${['none', 'a', 'b'][aliasResid]}`, precision: 'fp32',
      tol: 1e-5, outputs: ['resid', 'out', 'mean', 'rstd'],
      opts: { op: 'residual_layernorm_forward', M, C, aliasResid, a, b: randn(r, M * C), gamma: randn(r, C),
        beta: randn(r, C), eps: 1e-5 } });
  }
  // GEMMs at the model's other shapes (appended, so the inputs of the cases
  // above stay as they were). The tiles are 128x128x32 (bf16 tensor cores)
  // and 64x64x16 (fp32): K below the tile, M = 1 (decoding one token: the
  // c_attn projection and the LM head), dimensions just past a tile, and the
  // LM head's backward: matmul_forward without bias over K = Vp (dln =
  // dlogits wte) and the TN accumulation dwte += dlogits^T ln_f (as
  // matmul_backward with K = Vp, N = C).
  for (const p of ['fp32', 'bf16']) {
    for (const [M, K, N, bias] of [[1, 768, 2304, true], [130, 20, 129, true], [37, 1000, 40, false], [1, 7, 1, false]]) {
      cases.push({ name: `matmul_forward ${M}x${K}x${N}${bias ? ' +bias' : ''}`, precision: p, tol: tolFor(p), outputs: ['out'],
        opts: { op: 'matmul_forward', precision: p, M, K, N, a: randn(r, M * K), b: randn(r, K * N, 0.1),
          ...(bias ? { bias: randn(r, N) } : {}) } });
    }
    for (const [M, K, N] of [[1, 64, 1000], [45, 20, 77], [129, 130, 129]]) {
      cases.push({ name: `matmul_nt ${M}x${K}x${N}`, precision: p, tol: tolFor(p), outputs: ['out'],
        opts: { op: 'matmul_nt', precision: p, M, K, N, a: randn(r, M * K), b: randn(r, N * K, 0.1) } });
    }
    for (const [M, K, N] of [[1, 40, 129], [70, 24, 17], [37, 1000, 40], [129, 15, 130]]) {
      cases.push({ name: `matmul_backward ${M}x${K}x${N} (accumulating dw, dbias)`, precision: p, tol: tolFor(p),
        outputs: ['dinp', 'dw', 'dbias'],
        opts: { op: 'matmul_backward', precision: p, M, K, N, dout: randn(r, M * N), inp: randn(r, M * K),
          w: randn(r, K * N, 0.1), dw: randn(r, K * N), dbias: randn(r, N) } });
    }
  }
  // The linear ops of a decode step (appended, as above): a few rows, the
  // GPT-2 small c_attn shape, odd sizes past vectors and tiles, no bias;
  // the head on the tied wte [N, K].
  for (const p of ['fp32', 'bf16']) {
    for (const [M, K, N, bias] of [[1, 768, 2304, true], [5, 100, 47, true], [8, 33, 130, false], [9, 16, 3, true]]) {
      cases.push({ name: `decode_linear ${M}x${K}x${N}${bias ? ' +bias' : ''}`, precision: p, tol: tolFor(p), outputs: ['out'],
        opts: { op: 'decode_linear', precision: p, M, K, N, a: randn(r, M * K), b: randn(r, K * N, 0.1),
          ...(bias ? { bias: randn(r, N) } : {}) } });
    }
    for (const [M, K, N, bias] of [[3, 96, 385, true], [1, 40, 129, false]]) {
      cases.push({ name: `decode_linear_gelu ${M}x${K}x${N}${bias ? ' +bias' : ''}`, precision: p, tol: tolFor(p),
        outputs: ['pre', 'out'],
        opts: { op: 'decode_linear_gelu', precision: p, M, K, N, a: randn(r, M * K), b: randn(r, K * N, 0.1),
          ...(bias ? { bias: randn(r, N) } : {}) } });
    }
    for (const [M, K, N] of [[1, 64, 1000], [6, 33, 257]]) {
      cases.push({ name: `decode_head ${M}x${K}x${N}`, precision: p, tol: tolFor(p), outputs: ['out'],
        opts: { op: 'decode_head', precision: p, M, K, N, a: randn(r, M * K), b: randn(r, N * K, 0.1) } });
    }
  }
  // Attention with a document mask (docStart: each row split into documents
  // of random lengths 1 to maxLen, a start forced onto a 32- and a 64-row
  // tile edge): bf16 tensor cores and fp32 SIMT, dense and banded, both
  // layouts (appended, so the inputs of the cases above stay as they were).
  const docStarts = (B, T, maxLen) => {
    const ds = new Int32Array(B * T);
    for (let b = 0; b < B; ++b) {
      let start = 0, next = 1 + Math.floor(r() * maxLen);
      for (let i = 0; i < T; ++i) {
        if (i === next || i === 32 || i === 64) {
          start = i;
          next = i + 1 + Math.floor(r() * maxLen);
        }
        ds[b * T + i] = start;
      }
    }
    return ds;
  };
  const attnDoc = [
    { B: 2, H: 2, T: 200, D: 64, banded: false, window: 0, layout: 'bhtd', precision: 'bf16', maxLen: 70 },
    { B: 1, H: 2, T: 130, D: 128, banded: true, window: 37, layout: 'btc', precision: 'bf16', maxLen: 20 },
    { B: 2, H: 2, T: 100, D: 32, banded: false, window: 0, layout: 'bhtd', precision: 'fp32', maxLen: 40 },
    { B: 1, H: 3, T: 90, D: 40, banded: true, window: 20, layout: 'btc', precision: 'fp32', maxLen: 5 },
  ];
  for (const a of attnDoc) {
    const n = a.B * a.H * a.T * a.D;
    const shape = { batch: a.B, heads: a.H, seq: a.T, headDim: a.D, banded: a.banded, window: a.window,
      scale: 1 / Math.sqrt(a.D), layout: a.layout, precision: a.precision, docStart: docStarts(a.B, a.T, a.maxLen) };
    const label = `attention ${a.precision} documents (up to ${a.maxLen}) ${a.banded ? `banded w=${a.window}` : 'dense'} ` +
      `B${a.B} H${a.H} T${a.T} D${a.D} ${a.layout}`;
    const inputs = a.layout === 'btc' ? { qkv: randn(r, 3 * n) } : { q: randn(r, n), k: randn(r, n), v: randn(r, n) };
    const tol = tolFor(a.precision);
    cases.push({ name: `${label} forward`, precision: a.precision, tol, outputs: ['out'], absOutputs: ['lse'],
      attention: true, opts: { op: 'attention_forward', ...shape, ...inputs } });
    cases.push({ name: `${label} backward`, precision: a.precision, tol, attention: true,
      outputs: a.layout === 'btc' ? ['dqkv'] : ['dq', 'dk', 'dv'], needsForward: true, checkDeterminism: true,
      opts: { op: 'attention_backward', ...shape, ...inputs, dout: randn(r, n) } });
  }
  // GEMM edges of the bf16 tensor-core kernel's pipeline (appended, as
  // above): K < 8, M or N = 1, K odd over several 32-wide slabs with odd
  // leading dimensions (the 4-byte copy path) and edge tiles in M and N, and
  // leading dimensions that are multiples of 4 (16-byte copies) with K, M and
  // N cut inside a slab or tile.
  for (const p of ['fp32', 'bf16']) {
    for (const [M, K, N, bias] of [[3, 4, 1, true], [1, 3, 5, false], [131, 97, 67, true], [66, 68, 132, true]]) {
      cases.push({ name: `matmul_forward ${M}x${K}x${N}${bias ? ' +bias' : ''}`, precision: p, tol: tolFor(p), outputs: ['out'],
        opts: { op: 'matmul_forward', precision: p, M, K, N, a: randn(r, M * K), b: randn(r, K * N, 0.1),
          ...(bias ? { bias: randn(r, N) } : {}) } });
    }
    for (const [M, K, N] of [[7, 5, 1], [131, 97, 67], [1, 36, 130]]) {
      cases.push({ name: `matmul_nt ${M}x${K}x${N}`, precision: p, tol: tolFor(p), outputs: ['out'],
        opts: { op: 'matmul_nt', precision: p, M, K, N, a: randn(r, M * K), b: randn(r, N * K, 0.1) } });
    }
    for (const [M, K, N] of [[5, 6, 3], [131, 97, 67], [68, 36, 132]]) {
      cases.push({ name: `matmul_backward ${M}x${K}x${N} (accumulating dw, dbias)`, precision: p, tol: tolFor(p),
        outputs: ['dinp', 'dw', 'dbias'],
        opts: { op: 'matmul_backward', precision: p, M, K, N, dout: randn(r, M * N), inp: randn(r, M * K),
          w: randn(r, K * N, 0.1), dw: randn(r, K * N), dbias: randn(r, N) } });
    }
    for (const [M, K, N] of [[3, 5, 9], [131, 97, 67]]) {
      cases.push({ name: `matmul_forward_gelu ${M}x${K}x${N} +bias`, precision: p, tol: tolFor(p), outputs: ['pre', 'out'],
        opts: { op: 'matmul_forward_gelu', precision: p, M, K, N, a: randn(r, M * K), b: randn(r, K * N, 0.1),
          bias: randn(r, N) } });
    }
  }
  cases.push(...bf16StorageCases(rng(seed + 3000)));
  return cases;
}

// Tolerances of the bf16-storage cases. The reference is the CPU in fp32
// storage on the same numbers: every input that is bf16 on the device is
// rounded to bf16 here first, so the device's conversion is exact and both
// sides compute on the same values. Outputs in fp32 are held to relative L2.
// Outputs the device stores in bf16 (bf16Outputs) carry one more rounding,
// a relative error of up to 2^-8 (bf16 keeps 8 significant bits), far
// above what the two backends' fp32 results differ by; they are held to
// relL2Bf16 (run-checks.js): the relative L2 of what is left beyond half a
// bf16 ulp, i.e. of the fp32 difference alone, which a store that truncates
// (~1e-3) or rounds twice (~2e-5) exceeds. In brackets: the largest error
// of the op's cases on the CUDA emulator over seeds 20261117 and 1 to 9.
// The emulator sums each mma exactly (in double) and uses the host's exp
// and tanh; a GPU's tensor cores and fast intrinsics differ by a few fp32
// ulps more, which the bounds of the fp32-exact ops leave room for.
const BF16_STORAGE_TOL = {
  // GEMM outputs, fp32 or stored bf16: under precision bf16 the kernels
  // round their inputs to bf16 anyway, so only the order of the fp32 sums
  // differs [2.4e-7]. The fp32 path's bound.
  matmul: 1e-5,
  // out = gelu(pre) of the fused GEMM has two valid references: gelu of the
  // fp32 pre (what a fused epilogue has at hand) [1.6e-8] and gelu of the
  // bf16 pre (Backend's default body: matmul_forward stores pre in bf16,
  // gelu_forward reads it); it is held to the nearer one (altRef). Against
  // the second, where the two backends' fp32 pre round to neighbouring bf16
  // values, gelu's inputs differ by a whole bf16 ulp at those elements
  // [2.4e-5]. (Against the other reference each
  // would be off by gelu's change over up to half an ulp: up to 1.8e-3.)
  gelu_of_gemm: 1e-4,
  // LayerNorm and GELU: the same fp32 math on the same inputs on both sides
  // (out bf16; mean, rstd, resid and gelu_backward's dinp fp32) [2.0e-6].
  // The fp32 path's bound.
  elementwise: 1e-5,
  // Attention on the tensor cores (head sizes 64/80/96/128) against the
  // CPU's fp32 kernels: the kernels round P (forward) and dO (backward) to
  // bf16, the CPU does not. out [5.7e-4]; dq, dk, dv [4.8e-3; 6.2e-3 where
  // T = 1 and dV is all of dqkv]: the fp32-storage bf16 bound.
  attention_tc_out: 3e-3,
  attention_tc_grad: 1e-2,
  // lse (RMS absolute error): the scores' sums differ in order only [2.9e-7].
  attention_tc_lse: 1e-5,
  // Head sizes without a tensor-core kernel (32, 7) run the fp32 SIMT
  // kernels on the bf16 tensors [3.3e-7; lse 2.6e-7]. The fp32 path's bound.
  attention_fp32: 1e-5,
};

/**
 * The bf16-storage cases (backendOp storage 'bf16', precision 'bf16') of
 * every op with a typed argument, on the model's shapes and awkward ones.
 * `r`: their own generator, so the cases before them keep their inputs.
 */
function bf16StorageCases(r) {
  const T = BF16_STORAGE_TOL;
  const cases = [];
  // `rounded`: the inputs that are bf16 on the device, rounded here first.
  const add = (c, rounded) => {
    for (const k of rounded) c.opts[k] = bf16Round(c.opts[k]);
    cases.push({ precision: 'bf16', storage: 'bf16', ...c, opts: { ...c.opts, precision: 'bf16', storage: 'bf16' } });
  };
  // GEMMs: the GPT-2 small shapes (c_attn 768 -> 2304, c_fc 768 -> 3072,
  // the LM head over K = 768 and its backward over K = Vp), one row (a
  // decoding step), edge tiles in M and N, K below a tile and odd.
  for (const [M, K, N, bias] of [[64, 768, 2304, true], [1, 768, 2304, true], [257, 96, 201, true], [5, 33, 7, false],
    [37, 1000, 40, false]]) {
    add({ name: `matmul_forward ${M}x${K}x${N}${bias ? ' +bias' : ''}`, tol: T.matmul, outputs: ['out'],
      bf16Outputs: ['out'], opts: { op: 'matmul_forward', M, K, N, a: randn(r, M * K), b: randn(r, K * N, 0.1),
        ...(bias ? { bias: randn(r, N) } : {}) } }, ['a', 'b']);
  }
  for (const [M, K, N] of [[33, 768, 1000], [1, 64, 1000], [45, 20, 77], [129, 130, 129]]) {
    add({ name: `matmul_nt ${M}x${K}x${N}`, tol: T.matmul, outputs: ['out'],
      opts: { op: 'matmul_nt', M, K, N, a: randn(r, M * K), b: randn(r, N * K, 0.1) } }, ['a', 'b']);
  }
  for (const [M, K, N] of [[128, 256, 768], [1, 40, 129], [129, 15, 130], [37, 1000, 40]]) {
    add({ name: `matmul_backward ${M}x${K}x${N} (accumulating dw, dbias)`, tol: T.matmul,
      outputs: ['dinp', 'dw', 'dbias'],
      opts: { op: 'matmul_backward', M, K, N, dout: randn(r, M * N), inp: randn(r, M * K), w: randn(r, K * N, 0.1),
        dw: randn(r, K * N), dbias: randn(r, N) } }, ['inp', 'w']);
  }
  for (const [M, K, N, bias] of [[64, 768, 3072, true], [257, 96, 201, true], [1, 40, 129, true], [5, 33, 7, false]]) {
    add({ name: `matmul_forward_gelu ${M}x${K}x${N}${bias ? ' +bias' : ''}`, tol: T.matmul,
      tols: { out: T.gelu_of_gemm }, outputs: ['pre', 'out'], bf16Outputs: ['pre', 'out'], altRef: { out: 'outOfBf16Pre' },
      opts: { op: 'matmul_forward_gelu', M, K, N, a: randn(r, M * K), b: randn(r, K * N, 0.1),
        ...(bias ? { bias: randn(r, N) } : {}) } }, ['a', 'b']);
  }
  {
    // The head's weight gradient reads x (ln_f) in bf16: consecutive chunks,
    // a ragged last one, a range that starts inside the batch.
    const M = 601, Vp = 320, C = 40;
    const dlogits = randn(r, M * Vp, 0.01), x = bf16Round(randn(r, M * C)), dw = randn(r, Vp * C, 0.1);
    for (const chunks of [202, 7])
      add({ name: `classifier_weight_grad ${M}x${Vp}x${C} in chunks of ${chunks}`, tol: T.matmul, outputs: ['dw'],
        opts: { op: 'classifier_weight_grad', M, Vp, C, dlogits, x, dw, chunks } }, []);
    add({ name: `classifier_weight_grad rows 37..136 of ${M}`, tol: T.matmul, outputs: ['dw'],
      opts: { op: 'classifier_weight_grad', M, Vp, C, rows: 100, row0: 37, dlogits: dlogits.slice(0, 100 * Vp),
        x: x.slice(0, 100 * C), dw } }, []);
  }
  // LayerNorm and residual + LayerNorm: out in bf16; mean, rstd and resid
  // fp32. One row, C below a warp and odd, C past a block's loop.
  for (const [M, C, aliasResid] of [[64, 768, 1], [300, 200, 0], [1, 13, 2], [37, 1601, 1]]) {
    const a = randn(r, M * C, 2);
    for (let i = 0; i < a.length; ++i) a[i] += 0.5;
    const gamma = randn(r, C), beta = randn(r, C), b = randn(r, M * C);
    add({ name: `layernorm_forward ${M}x${C}`, tol: T.elementwise,
      outputs: ['out', 'mean', 'rstd'], bf16Outputs: ['out'],
      opts: { op: 'layernorm_forward', M, C, inp: a, gamma, beta, eps: 1e-5 } }, []);
    add({ name: `residual_layernorm_forward ${M}x${C} alias ${['none', 'a', 'b'][aliasResid]}`, tol: T.elementwise,
      outputs: ['resid', 'out', 'mean', 'rstd'], bf16Outputs: ['out'],
      opts: { op: 'residual_layernorm_forward', M, C, aliasResid, a, b, gamma, beta, eps: 1e-5 } }, []);
  }
  // GELU: inp in bf16 (the stored pre), out in bf16 (forward), dinp fp32
  // (backward); a long length and a shorter odd one (not 7: over 7 random
  // elements one near gelu's turning point, where the device's tanhf and the
  // CPU's differ relatively most, can carry the whole relative L2: 1.4e-5
  // once in the GPU check's fresh seeds).
  for (const n of [100003, 1001]) {
    add({ name: `gelu_forward ${n}`, tol: T.elementwise, outputs: ['out'], bf16Outputs: ['out'],
      opts: { op: 'gelu_forward', inp: randn(r, n, 3) } }, ['inp']);
    add({ name: `gelu_backward ${n}`, tol: T.elementwise, outputs: ['out'],
      opts: { op: 'gelu_backward', inp: randn(r, n, 3), dout: randn(r, n) } }, ['inp']);
  }
  // Attention: q, k, v and out in bf16 (packed qkv and out [B, T, C] as the
  // model keeps them, or separate [B, H, T, D]); lse, dout and the gradients
  // fp32. Every head size of the tensor-core kernels, dense and banded, odd
  // lengths, one position, a document mask, and head sizes they do not take
  // (32 and 7: the fp32 SIMT kernels read the bf16 tensors).
  const attn = [
    { B: 2, H: 3, T: 200, D: 64, banded: false, window: 0, layout: 'btc' },
    { B: 2, H: 2, T: 200, D: 80, banded: true, window: 37, layout: 'bhtd' },
    { B: 1, H: 3, T: 130, D: 96, banded: false, window: 0, layout: 'bhtd' },
    { B: 1, H: 2, T: 97, D: 128, banded: true, window: 33, layout: 'btc' },
    { B: 1, H: 1, T: 1, D: 64, banded: false, window: 0, layout: 'btc' },
    { B: 2, H: 2, T: 150, D: 64, banded: false, window: 0, layout: 'btc', docs: 40 },
    { B: 2, H: 3, T: 100, D: 32, banded: false, window: 0, layout: 'btc' },
    { B: 1, H: 3, T: 45, D: 7, banded: true, window: 20, layout: 'bhtd' },
  ];
  for (const a of attn) {
    const n = a.B * a.H * a.T * a.D;
    const tc = [64, 80, 96, 128].includes(a.D);
    const shape = { batch: a.B, heads: a.H, seq: a.T, headDim: a.D, banded: a.banded, window: a.window,
      scale: 1 / Math.sqrt(a.D), layout: a.layout };
    if (a.docs) {
      // Documents of random lengths 1 to a.docs in each row.
      const ds = new Int32Array(a.B * a.T);
      for (let b = 0; b < a.B; ++b)
        for (let i = 0, start = 0, next = 1 + Math.floor(r() * a.docs); i < a.T; ++i) {
          if (i === next) [start, next] = [i, i + 1 + Math.floor(r() * a.docs)];
          ds[b * a.T + i] = start;
        }
      shape.docStart = ds;
    }
    const label = `attention ${tc ? 'tensor cores' : 'fp32 kernels'} ${a.docs ? `documents (up to ${a.docs}) ` : ''}` +
      `${a.banded ? `banded w=${a.window}` : 'dense'} B${a.B} H${a.H} T${a.T} D${a.D} ${a.layout}`;
    const names = a.layout === 'btc' ? ['qkv'] : ['q', 'k', 'v'];
    const inputs = Object.fromEntries(names.map((k) => [k, randn(r, a.layout === 'btc' ? 3 * n : n)]));
    add({ name: `${label} forward`, tol: tc ? T.attention_tc_out : T.attention_fp32,
      tols: { lse: tc ? T.attention_tc_lse : T.attention_fp32 }, attention: true,
      outputs: ['out'], bf16Outputs: ['out'], absOutputs: ['lse'],
      opts: { op: 'attention_forward', ...shape, ...inputs } }, names);
    // Backward's out and lse: the CPU forward's (runOpChecks), out rounded
    // to bf16 as the device stores it; q, k, v rounded as for the forward
    // (the SIMT kernels read them as given). T = 1 runs packed: dQ and dK are 0.
    add({ name: `${label} backward`, tol: tc ? T.attention_tc_grad : T.attention_fp32, attention: true, outputs: a.layout === 'btc' ? ['dqkv'] : ['dq', 'dk', 'dv'],
      needsForward: true, checkDeterminism: true,
      opts: { op: 'attention_backward', ...shape, ...inputs, dout: randn(r, n) } }, names);
  }
  // convert: fp32 -> bf16 -> fp32 on the device against the CPU, bit for bit.
  // Ties both ways (even below and odd below), just off a tie, the largest
  // bf16, values that round past it to infinity, infinities, zeros of both
  // signs, fp32 subnormals (some round up into the normal range), and random
  // values over the whole exponent range, at an odd length.
  {
    const bits = [];
    for (const sign of [0, 0x80000000]) {
      for (const e of [0x3f800000, 0x00800000, 0x7f000000, 0x40400000]) {
        for (const m of [0x0000, 0x10000, 0x20000, 0x7f0000]) {
          bits.push(sign | e | m | 0x8000);  // ties: even and odd upper halves
          bits.push(sign | e | m | 0x7fff);  // just below a tie
          bits.push(sign | e | m | 0x8001);  // just above
          bits.push(sign | e | m | 0xffff);  // rounds up into the next binade for m = 0x7f0000
        }
      }
      bits.push(sign | 0x7f7f0000, sign | 0x7f7f7fff, sign | 0x7f7f8000, sign | 0x7f7fffff);  // max bf16, past it
      bits.push(sign | 0x7f800000, sign | 0x00000000, sign | 0x00000001, sign | 0x00008000, sign | 0x00018000,
        sign | 0x007f8000, sign | 0x007fffff, sign | 0x00400000);
    }
    const special = new Float32Array(new Uint32Array(bits).buffer);
    const x = new Float32Array(200003);
    x.set(special);
    const xu = new Uint32Array(x.buffer);
    for (let i = special.length; i < x.length; ++i) {
      // A random sign, exponent and mantissa, NaN patterns (exponent 255 with a mantissa) left out.
      let u = (Math.floor(r() * 0x100000000) >>> 0);
      if ((u & 0x7f800000) === 0x7f800000) u &= 0xff800000;
      xu[i] = u;
    }
    cases.push({ name: `convert ${x.length} (ties, infinities, subnormals, the range's ends)`, precision: 'bf16',
      storage: 'bf16', tol: 0, exact: true, outputs: ['out'], opts: { op: 'convert', x } });
    // NaN: quiet and signalling, both signs, payloads. A NaN stays a NaN; its
    // bits are not compared: the CPU keeps the sign and the upper payload
    // (native/cpu/bf16.h), CUDA's conversion (like the hardware's) gives the
    // canonical 0x7fff.
    const nan = new Float32Array(new Uint32Array([0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001, 0x7fffffff,
      0x7fa00000, 0xffbfffff, 0x7f810000]).buffer);
    cases.push({ name: 'convert NaNs (any NaN bits)', precision: 'bf16', storage: 'bf16', tol: 0, exact: true, anyNaN: true,
      outputs: ['out'], opts: { op: 'convert', x: nan } });
  }
  return cases;
}

/** A case's storage: 'fp32' unless it says 'bf16'. */
const storageOf = (c) => c.storage || 'fp32';

/**
 * The options a case runs with: its opts, and for attention backward the
 * CPU forward's out and lse (out rounded to bf16 where the device keeps it
 * in bf16).
 */
async function caseOptions(addon, c) {
  if (!c.needsForward) return c.opts;
  const f = await addon.backendOp({ ...c.opts, op: 'attention_forward', device: 'cpu', storage: 'fp32' });
  return { ...c.opts, out: storageOf(c) === 'bf16' ? bf16Round(f.out) : f.out, lse: f.lse };
}

/**
 * Runs every case on `device` and on 'cpu', returns one record per case
 * (`cases`: the result of buildCases(seed), to skip building them again).
 * onResult(record) is called as each finishes (for progress output).
 */
async function runOpChecks(addon, device, { seed = 1234, only, onResult, cases } = {}) {
  if (typeof addon.backendOp !== 'function') throw new Error('this addon has no backendOp (native/addon/backend_ops_binding.cc)');
  // `cases`: buildCases(seed) made once by the caller (building them costs
  // ~0.5 s in Node and ~30 s inside jest's VM context, once per call).
  // The reference: the CPU in fp32 storage (it keeps no bf16 tensors) on the
  // same numbers; convert is the one op the CPU runs through bf16 itself.
  // matmul_forward_gelu's out has a second reference there: gelu of the
  // bf16-rounded pre (altRef; BF16_STORAGE_TOL says why).
  const call = async (o) => {
    if (o.device !== 'cpu' || o.op === 'convert') return addon.backendOp(o);
    const ref = await addon.backendOp({ ...o, storage: 'fp32' });
    if (o.op === 'matmul_forward_gelu' && o.storage === 'bf16')
      ref.outOfBf16Pre = (await addon.backendOp({ device: 'cpu', op: 'gelu_forward', inp: bf16Round(ref.pre) })).out;
    return ref;
  };
  return runChecks(cases || buildCases(seed), device, call, {
    only, onResult,
    keyOf: (c) => `${c.name} ${c.precision} storage ${storageOf(c)}`,
    precisionOf: (c) => (storageOf(c) === 'bf16' ? `${c.precision}, bf16 storage` : c.precision),
    prepare: (c) => caseOptions(addon, c),
  });
}

module.exports = { buildCases, runOpChecks, caseOptions, storageOf, relL2, bitEqual, bf16Round, rng, randn, randi,
  BF16_STORAGE_TOL };
