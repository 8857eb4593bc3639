'use strict';
// The Backend's decoding ops (core/backend.h "decoding": kv_store,
// decode_attention, embedding_at) through the addon's decodeOp: cases with
// awkward sizes, and the device-vs-CPU check that the GPU check
// (scripts/gpu-check/main.js) runs in its correctness phase and
// test/cuda/decode-ops.test.ts runs under jest. test/native/decode-ops.test.ts
// holds the CPU ops to the float64 reference (test/helpers/decode-ref.ts) with
// the same cases. The runner and metrics: run-checks.js.
//
// Every cache slot a row must not read holds NaN, and outputs are poisoned
// with NaN before the op (decode_ops_binding.cc), so a wrong ring index or an
// unwritten element never passes. Attention rows are spread over several
// caches at different offsets, read q from inside a wider row (ldq = 3C, as
// the model's fused qkv) and write out with a gap between rows (ldo > C).
//
// Error metric: relative L2 (NaN or Inf never passes); fp32 tolerance 1e-5.
// kv_store and embedding_at are copies and one fp32 add: they must match
// exactly.
//
// The bf16 cache (cacheType 'bf16', Backend::kv_cache_dtype on CUDA under
// bf16; the CPU keeps fp32 only) has cases of its own, held to a float64
// reference instead of the CPU (buildDecodeBf16Cases, runDecodeBf16Checks):
// kv_store must give bitwise the bf16 rounding (nearest even) of what it
// stores, and decode_attention, which computes in fp32 from the bf16 values,
// must match the float64 attention over the bf16-rounded keys and values to
// the fp32 tolerance (1e-5; the rounding itself, up to 2^-8 relative per element,
// would show as ~1e-3). Cases with 16-byte aligned rows (head size a multiple
// of 8, offsets a multiple of 8 elements) take the kernel's vector loads, the
// others its per-element loads; an extend stores a chunk, then attends over
// the cache the store returned.
const { rng, randn, randi, relL2, bitEqual, runChecks } = require('./run-checks.js');

/**
 * One attention or store case from a list of row specs
 * {P, pos, first, seq?}: each row gets its own cache [H, P, D] for K and for
 * V, laid out one after the other with a few floats of padding between;
 * rows with the same `seq` share the cache of the first of them (the rows of
 * one sequence in an extend).
 */
function layout(rowsSpec, H, D, align = false) {
  const rows = { kOffset: [], vOffset: [], slots: [], pos: [], first: [] };
  // `align`: every cache at a multiple of 8 elements (16 bytes of bf16).
  const up = (x) => (align ? Math.ceil(x / 8) * 8 : x);
  let off = align ? 8 : 3;  // nothing starts at 0: offsets are really applied
  const seqAt = new Map();
  for (const s of rowsSpec) {
    if (s.seq !== undefined && seqAt.has(s.seq)) {
      const i = seqAt.get(s.seq);
      rows.kOffset.push(rows.kOffset[i]);
      rows.vOffset.push(rows.vOffset[i]);
    } else {
      if (s.seq !== undefined) seqAt.set(s.seq, rows.kOffset.length);
      const span = H * s.P * D;
      rows.kOffset.push(off);
      rows.vOffset.push(up(off + span + 5));
      off = up(up(off + span + 5) + span + 7);
    }
    rows.slots.push(s.P);
    rows.pos.push(s.pos);
    rows.first.push(s.first);
  }
  const i32 = (a) => Int32Array.from(a);
  return {
    total: off + 3,
    rows: { kOffset: i32(rows.kOffset), vOffset: i32(rows.vOffset), slots: i32(rows.slots), pos: i32(rows.pos),
      first: i32(rows.first) },
  };
}

// Slot of position j in a ring of P slots.
const slotOf = (j, P) => j % P;

function attentionCase(r, name, H, D, spec, { ldqExtra = 0, ldoExtra = 0, maxKeys, align = false } = {}) {
  const { total, rows } = layout(spec, H, D, align);
  const C = H * D;
  // NaN everywhere, then random keys and values in exactly the slots each
  // row attends: any other slot read shows up as NaN.
  const cache = new Float32Array(total).fill(NaN);
  spec.forEach((s, i) => {
    for (let j = s.first; j <= s.pos; ++j) {
      const slot = slotOf(j, s.P);
      for (let h = 0; h < H; ++h) {
        const kv = randn(r, 2 * D);
        cache.set(kv.subarray(0, D), rows.kOffset[i] + (h * s.P + slot) * D);
        cache.set(kv.subarray(D), rows.vOffset[i] + (h * s.P + slot) * D);
      }
    }
  });
  const M = spec.length, ldq = C + ldqExtra, ldo = C + ldoExtra;
  const opts = { op: 'decode_attention', M, H, D, ...rows, cache, q: randn(r, (M - 1) * ldq + C), ldq, ldo,
    scale: 1 / Math.sqrt(D) };
  if (maxKeys) opts.maxKeys = maxKeys;
  return { name: `decode_attention ${name} H${H} D${D}`, opts, outputs: ['out'], tol: 1e-5 };
}

function storeCase(r, name, H, D, spec, ldExtra = 0) {
  const { total, rows } = layout(spec, H, D);
  const C = H * D, M = spec.length, ld = C + ldExtra;
  return { name: `kv_store ${name} H${H} D${D}`, outputs: ['cache'], exact: true,
    opts: { op: 'kv_store', M, H, D, ...rows, cache: randn(r, total), k: randn(r, (M - 1) * ld + C),
      v: randn(r, (M - 1) * ld + C), ld } };
}

/** The cases, from a seed (fresh inputs per seed). */
function buildDecodeCases(seed) {
  const r = rng(seed);
  const cases = [];
  const dense = (P, pos) => ({ P, pos, first: 0 });
  // A banded layer of window w for a sequence of capacity cap: P = min(cap, w).
  const band = (w, cap, pos) => ({ P: Math.min(cap, w), pos, first: Math.max(0, pos - w + 1) });
  // n rows of sequence `seq` (one cache of P slots) at positions from.. (band w; dense without).
  const chunk = (seq, P, from, n, w) =>
    Array.from({ length: n }, (_, t) => ({ seq, P, pos: from + t, first: w ? Math.max(0, from + t - w + 1) : 0 }));
  cases.push(attentionCase(r, 'dense position 0', 2, 64, [dense(8, 0)]));
  cases.push(attentionCase(r, 'dense P=300 full', 3, 80, [dense(300, 299)]));
  cases.push(attentionCase(r, 'dense 256 keys (one whole chunk)', 2, 64, [dense(300, 255)]));
  cases.push(attentionCase(r, 'dense 257 keys (a one-key last chunk)', 2, 128, [dense(300, 256)]));
  cases.push(attentionCase(r, 'dense 1000 keys (4 chunks)', 2, 64, [dense(1000, 999)]));
  cases.push(attentionCase(r, 'banded window 1', 2, 64, [band(1, 50, 0), band(1, 50, 17)]));
  cases.push(attentionCase(r, 'banded window > position (cap < window)', 2, 96, [band(64, 20, 19), band(64, 20, 3)]));
  cases.push(attentionCase(r, 'banded ring wrapped (w=37, pos 100)', 3, 64, [band(37, 200, 100)]));
  cases.push(attentionCase(r, 'banded ring wrapped, window 300 over chunks', 1, 64, [band(300, 2000, 1234)]));
  cases.push(attentionCase(r, 'odd head size', 3, 17, [dense(40, 39), band(7, 40, 23)]));
  cases.push(attentionCase(r, 'head size 1', 4, 1, [dense(9, 8)]));
  cases.push(Object.assign(attentionCase(r, 'a batch at different positions, strided q/out', 4, 64,
    [dense(64, 0), dense(64, 63), band(16, 64, 40), dense(500, 420), band(5, 64, 4)],
    { ldqExtra: 2 * 4 * 64, ldoExtra: 3 }), { checkRowsAlone: true }));
  {
    // An extend: 11 rows of one dense sequence at positions 20..30 (more
    // than one group of rows on the CPU), a step row of another sequence,
    // 10 rows of a banded sequence (window 5) whose ring holds window +
    // 10 - 1 = 14 positions, at 40..49 (the ring wrapped), and 2 more rows
    // of the dense sequence's cache after them.
    const spec = [...chunk('a', 40, 20, 11), dense(64, 33), ...chunk('b', 14, 40, 10, 5), ...chunk('a', 40, 31, 2)];
    cases.push(Object.assign(attentionCase(r, 'an extend: rows of one sequence share its cache', 2, 64, spec,
      { ldqExtra: 2 * 2 * 64, ldoExtra: 1 }), { checkRowsAlone: true }));
  }
  {
    // Extends long enough for the CPU's tiled kernel (a run of at least 16
    // rows of one sequence at consecutive positions): 70 rows of a dense
    // sequence at 30..99 (a whole tile of queries, then 6 rows; key tiles
    // cut by the diagonal), a step row of another sequence, 40 rows of a
    // banded sequence (window 5: its ring of 44 wraps inside key tiles, and
    // the bands start inside them), and 16 rows of a banded sequence of
    // window 37 (ring 52) at 100..115; an odd head size, so no row of q, K
    // or V is whole vectors.
    const spec = [...chunk('a', 128, 30, 70), dense(64, 33), ...chunk('b', 44, 200, 40, 5), ...chunk('c', 52, 100, 16, 37)];
    cases.push(attentionCase(r, 'long extends: tiles of queries over the cache', 3, 17, spec, { ldqExtra: 2 * 3 * 17, ldoExtra: 2 }));
    cases.push(attentionCase(r, 'long extend, head size 64, a wrapped window-300 ring', 2, 64, chunk('d', 320, 700, 21, 300)));
    // A ring larger than the run's bands (a chunk shorter than the session's
    // extend_max): the slots of positions 192..195, in the run's first key
    // tile but before every band, were never written (NaN here).
    cases.push(attentionCase(r, 'long extend in a ring larger than its bands', 2, 24, chunk('e', 60, 200, 20, 5)));
  }
  cases.push(attentionCase(r, 'maxKeys above every row (extra empty chunks)', 2, 64, [dense(40, 10)], { maxKeys: 700 }));
  cases.push(attentionCase(r, 'head size 256', 1, 256, [dense(300, 270)]));
  cases.push(storeCase(r, 'dense and ring slots, position 0', 2, 64,
    [dense(10, 0), band(4, 30, 13), dense(33, 32), band(1, 30, 7)]));
  {
    // A prefill of one prompt of 6 tokens into a ring of 4: the first two
    // rows are skipped (pos < 0), the last four fill every slot once.
    const c = storeCase(r, 'prefill into a ring (skipped rows, ld = 3C)', 3, 32, [0, 1, 2, 3, 4, 5].map((t) => band(4, 50, t)), 2 * 96);
    const { kOffset, vOffset } = c.opts;
    // All rows share one cache (one sequence).
    c.opts.kOffset = Int32Array.from(kOffset, () => kOffset[0]);
    c.opts.vOffset = Int32Array.from(vOffset, () => vOffset[0]);
    c.opts.pos = Int32Array.of(-1, -1, 2, 3, 4, 5);
    cases.push(c);
  }
  {
    const M = 7, C = 40, V = 30, NP = 25;
    cases.push({ name: 'embedding_at rows at their own positions', outputs: ['out'], exact: true,
      opts: { op: 'embedding_at', M, C, V, NP, tokens: randi(r, M, 0, V), positions: Int32Array.of(0, 24, 3, 3, 11, 0, 7),
        wte: randn(r, V * C), wpe: randn(r, NP * C) } });
  }
  return cases;
}

/**
 * The options of row r of a decode_attention case run alone (M = 1, q and
 * out [C]); its output must equal row r of the batch bitwise.
 */
function rowAlone(o, r) {
  const C = o.H * o.D;
  const pick = (a) => Int32Array.of(a[r]);
  return { ...o, M: 1, kOffset: pick(o.kOffset), vOffset: pick(o.vOffset), slots: pick(o.slots), pos: pick(o.pos),
    first: pick(o.first), q: o.q.slice(r * o.ldq, r * o.ldq + C), ldq: C, ldo: C, maxKeys: undefined };
}

/**
 * Runs every case on `device` and on 'cpu' and compares (relative L2 below
 * the case's tolerance, or bitwise equal for the exact ops; the device runs
 * twice and must agree with itself bitwise). One record per case, the shape
 * of op-table.js's runOpChecks records; onResult(record) as each finishes.
 * `cases`: buildDecodeCases(seed) made once by the caller (jest runs one
 * case per call). Without `cases` and `only`, on a device other than the
 * CPU, the bf16-cache cases (runDecodeBf16Checks) follow.
 */
async function runDecodeOpChecks(addon, device, { seed = 1234, only, onResult, cases } = {}) {
  if (typeof addon.decodeOp !== 'function') throw new Error('this addon has no decodeOp (native/addon/decode_ops_binding.cc)');
  const fp32 = await runChecks(cases || buildDecodeCases(seed), device, (o) => addon.decodeOp(o), {
    only, onResult, determinism: true, precisionOf: () => 'fp32',
    extra: async (c, opts, got, rec) => {
      let ok = true;
      if (c.checkRowsAlone) {
        // A row's result does not depend on the other rows of the call.
        const C = opts.H * opts.D;
        for (let i = 0; i < opts.M; ++i) {
          const alone = await addon.decodeOp({ ...rowAlone(opts, i), device });
          if (!bitEqual(alone.out, got.out.subarray(i * C, (i + 1) * C))) {
            rec.errors[`row ${i} alone`] = relL2(alone.out, got.out.subarray(i * C, (i + 1) * C));
            ok = false;
          }
        }
      }
      if ('gapsUntouched' in got && got.gapsUntouched !== 1) {
        rec.errors.gaps = Infinity;
        ok = false;
      }
      return ok;
    },
  });
  // A whole run (the GPU check) takes the bf16-cache cases too on a GPU.
  if (cases || only || device === 'cpu') return fp32;
  return fp32.concat(await runDecodeBf16Checks(addon, device, { seed, onResult }));
}


// ---- the bf16 cache ---------------------------------------------------------

const f32box = new Float32Array(1), u32box = new Uint32Array(f32box.buffer);
/** x rounded to bf16 (to nearest, ties to even; NaN stays NaN), as the fp32 value it holds. */
function bf16(x) {
  f32box[0] = x;
  const u = u32box[0];
  if ((u & 0x7fffffff) > 0x7f800000) return NaN;
  u32box[0] = (u + 0x7fff + ((u >>> 16) & 1)) & 0xffff0000;
  return f32box[0];
}
const bf16Array = (a) => Float32Array.from(a, bf16);
/** Bitwise equal, except that any NaN matches any NaN (a NaN's bits after a bf16 round trip are the backend's). */
function sameBits(a, b) {
  if (!a || !b || a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length), y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; ++i) if (x[i] !== y[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) return false;
  return true;
}

/** kv_store in float64 (a copy): the cache after the store. */
function storeRef(o) {
  const cache = Float64Array.from(o.cache);
  const C = o.H * o.D, ld = o.ld || C;
  for (let r = 0; r < o.M; ++r) {
    if (o.pos[r] < 0) continue;
    const P = o.slots[r], slot = slotOf(o.pos[r], P);
    for (let h = 0; h < o.H; ++h)
      for (let d = 0; d < o.D; ++d) {
        cache[o.kOffset[r] + (h * P + slot) * o.D + d] = o.k[r * ld + h * o.D + d];
        cache[o.vOffset[r] + (h * P + slot) * o.D + d] = o.v[r * ld + h * o.D + d];
      }
  }
  return cache;
}

/** decode_attention in float64 on the cache as given: out [M, C]. */
function attentionRef(o) {
  const { M, H, D } = o, C = H * D, ldq = o.ldq || C, scale = o.scale;
  const out = new Float64Array(M * C);
  for (let r = 0; r < M; ++r) {
    const P = o.slots[r], n = o.pos[r] - o.first[r] + 1;
    for (let h = 0; h < H; ++h) {
      const s = new Float64Array(n);
      let mx = -Infinity;
      for (let i = 0; i < n; ++i) {
        const kb = o.kOffset[r] + (h * P + slotOf(o.first[r] + i, P)) * D;
        let dot = 0;
        for (let d = 0; d < D; ++d) dot += o.q[r * ldq + h * D + d] * o.cache[kb + d];
        s[i] = dot * scale;
        mx = Math.max(mx, s[i]);
      }
      let sum = 0;
      for (let i = 0; i < n; ++i) sum += (s[i] = Math.exp(s[i] - mx));
      for (let i = 0; i < n; ++i) {
        const vb = o.vOffset[r] + (h * P + slotOf(o.first[r] + i, P)) * D;
        for (let d = 0; d < D; ++d) out[r * C + h * D + d] += (s[i] / sum) * o.cache[vb + d];
      }
    }
  }
  return out;
}

/**
 * An extend into a bf16 cache: rows of several sequences ({P, from, n, w?}:
 * n rows at positions from.., banded with window w when given) store their
 * keys and values (ld = 3C, as the model's qkv), then attend over the cache.
 * The cache holds random values in the slots of the positions before each
 * chunk that its rows attend, NaN elsewhere.
 */
function extendCase(r, name, H, D, seqs, align) {
  const spec = [];
  seqs.forEach((q, i) => {
    for (let t = 0; t < q.n; ++t)
      spec.push({ seq: i, P: q.P, pos: q.from + t, first: q.w ? Math.max(0, q.from + t - q.w + 1) : 0 });
  });
  const { total, rows } = layout(spec, H, D, align);
  const C = H * D, M = spec.length, ld = 3 * C;
  const cache = new Float32Array(total).fill(NaN);
  let row = 0;
  seqs.forEach((q) => {
    const lo = q.w ? Math.max(0, q.from - q.w + 1) : 0;
    for (let j = lo; j < q.from; ++j)
      for (let h = 0; h < H; ++h) {
        const at = (h * q.P + slotOf(j, q.P)) * D;
        cache.set(randn(r, D), rows.kOffset[row] + at);
        cache.set(randn(r, D), rows.vOffset[row] + at);
      }
    row += q.n;
  });
  const qkv = randn(r, (M - 1) * ld + 3 * C);
  const n = (M - 1) * ld + C;  // q, k and v are rows of qkv
  return { name: `bf16 cache: kv_store then decode_attention, ${name} H${H} D${D}`, chain: true, tol: 1e-5,
    opts: { M, H, D, ...rows, cache, cacheType: 'bf16', ld, ldq: ld, ldo: C, scale: 1 / Math.sqrt(D),
      q: qkv.slice(0, n), k: qkv.slice(C, C + n), v: qkv.slice(2 * C, 2 * C + n) } };
}

/** The bf16-cache cases, from a seed. */
function buildDecodeBf16Cases(seed) {
  const r = rng(seed ^ 0x5bf16);
  const cases = [];
  const dense = (P, pos) => ({ P, pos, first: 0 });
  const band = (w, cap, pos) => ({ P: Math.min(cap, w), pos, first: Math.max(0, pos - w + 1) });
  const att = (name, H, D, spec, o = {}) => {
    const c = attentionCase(r, name, H, D, spec, o);
    c.name = `bf16 cache: ${c.name}${o.align && D % 8 === 0 ? ' (16-byte rows)' : ' (per-element loads)'}`;
    c.opts.cacheType = 'bf16';
    return c;
  };
  const A = { align: true };
  cases.push(att('dense position 0', 2, 64, [dense(8, 0)], A));
  cases.push(att('dense P=300 full', 3, 80, [dense(300, 299)], A));
  cases.push(att('dense 257 keys (a one-key last chunk)', 2, 128, [dense(300, 256)], A));
  cases.push(att('dense 1000 keys (4 chunks)', 2, 64, [dense(1000, 999)], A));
  cases.push(att('dense 1000 keys (4 chunks)', 2, 64, [dense(1000, 999)]));
  cases.push(att('banded ring wrapped (w=37, pos 100)', 3, 64, [band(37, 200, 100)], A));
  cases.push(att('head size 8', 4, 8, [dense(50, 45), band(7, 40, 23)], A));
  cases.push(att('head size 24', 2, 24, [dense(50, 49)], A));
  cases.push(att('head size 256', 1, 256, [dense(300, 270)], A));
  cases.push(att('odd head size', 3, 17, [dense(40, 39), band(7, 40, 23)], A));
  cases.push(att('head size 1', 4, 1, [dense(9, 8)]));
  for (const align of [true, false])
    cases.push(Object.assign(att('a batch at different positions, strided q/out', 4, 64,
      [dense(64, 0), dense(64, 63), band(16, 64, 40), dense(500, 420), band(5, 64, 4)],
      { ldqExtra: 2 * 4 * 64, ldoExtra: 3, align }), { checkRowsAlone: true }));
  {
    // kv_store alone: the stored rows rounded, the rest of the cache as
    // it was (rounded); a prefill's skipped row (pos < 0) included.
    const c = storeCase(r, 'dense and ring slots, position 0', 2, 64,
      [dense(10, 0), band(4, 30, 13), dense(33, 32), band(1, 30, 7), band(4, 30, 2)], 2 * 128);
    c.opts.pos = Int32Array.from(c.opts.pos, (p, i) => (i === 4 ? -1 : p));
    c.name = `bf16 cache: ${c.name}`;
    c.opts.cacheType = 'bf16';
    c.storeOnly = true;
    cases.push(c);
  }
  // An extend: 11 rows of a dense sequence (positions 20..30), a step row of
  // another, 10 rows of a banded one (window 5, ring 14: wraps) at 40..49.
  const ext = [{ P: 40, from: 20, n: 11 }, { P: 64, from: 33, n: 1 }, { P: 14, from: 40, n: 10, w: 5 }];
  cases.push(extendCase(r, 'an extend, dense and a wrapped ring', 2, 64, ext, true));
  cases.push(extendCase(r, 'an extend, dense and a wrapped ring', 3, 17, ext, false));
  cases.push(extendCase(r, 'a long extend over chunks', 2, 32, [{ P: 700, from: 300, n: 20 }, { P: 320, from: 700, n: 5, w: 300 }], true));
  return cases;
}

/**
 * Runs the bf16-cache cases on `device` (the CPU backend takes no bf16
 * cache): stores bitwise the rounded reference, attention within the case's
 * tolerance of the float64 reference on the bf16 values, the device twice
 * bitwise, and rows alone bitwise as in the batch where the case asks.
 * Records as runDecodeOpChecks'.
 */
async function runDecodeBf16Checks(addon, device, { seed = 1234, only, onResult, cases } = {}) {
  const results = [];
  for (const c of cases || buildDecodeBf16Cases(seed)) {
    if (only && !(typeof only === 'string' ? c.name.includes(only) : only.has(c.name))) continue;
    const rec = { name: c.name, precision: 'fp32', cache: 'bf16', tol: c.tol || 0, device, errors: {}, pass: false };
    const t0 = Date.now();
    try {
      let ok = true;
      const run = (o) => addon.decodeOp({ ...o, device });
      const o = c.opts;
      let attOpts = null;
      if (c.chain || c.storeOnly) {
        const st = { ...o, op: 'kv_store' };
        const got = await run(st);
        const want = bf16Array(storeRef({ ...st, cache: o.cache }));
        const again = await run(st);
        const same = sameBits(got.cache, want);
        rec.errors.cache = same ? 0 : relL2(got.cache, want);
        rec.deterministic = sameBits(got.cache, again.cache);
        if (!same || !rec.deterministic) ok = false;
        if (c.chain) attOpts = { ...o, op: 'decode_attention', cache: got.cache };
      } else {
        attOpts = o;
      }
      if (attOpts) {
        const got = await run(attOpts);
        const want = attentionRef({ ...attOpts, cache: bf16Array(attOpts.cache) });
        rec.errors.out = relL2(got.out, want);
        if (!(rec.errors.out < c.tol)) ok = false;
        const again = await run(attOpts);
        rec.deterministic = (rec.deterministic ?? true) && bitEqual(got.out, again.out);
        if (!rec.deterministic) ok = false;
        if (got.gapsUntouched !== 1) {
          rec.errors.gaps = Infinity;
          ok = false;
        }
        if (c.checkRowsAlone) {
          const C = attOpts.H * attOpts.D;
          for (let i = 0; i < attOpts.M; ++i) {
            const alone = await run(rowAlone(attOpts, i));
            if (!bitEqual(alone.out, got.out.subarray(i * C, (i + 1) * C))) {
              rec.errors[`row ${i} alone`] = relL2(alone.out, got.out.subarray(i * C, (i + 1) * C));
              ok = false;
            }
          }
        }
      }
      rec.pass = ok;
    } catch (e) {
      rec.error = String(e && e.message ? e.message : e);
    }
    rec.seconds = (Date.now() - t0) / 1000;
    results.push(rec);
    if (onResult) onResult(rec);
  }
  return results;
}

module.exports = { buildDecodeCases, rowAlone, runDecodeOpChecks, buildDecodeBf16Cases, runDecodeBf16Checks, bf16 };
