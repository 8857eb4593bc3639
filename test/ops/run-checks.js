'use strict';
// What the op tables (op-table.js: every Backend op through the addon's
// backendOp; decode-op-table.js: the decoding ops through decodeOp) share:
// seeded random inputs, the error metrics, and the loop that runs each case
// on the device under test and on the CPU backend and compares them. Plain
// CommonJS with no dependencies: the GPU check (scripts/gpu-check/main.js)
// runs it with node alone, the jest projects through require().
//
// Error metric: relative L2, ||got - ref|| / ||ref|| (NaN or Inf never
// passes), below the case's tolerance.

function rng(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randn(r, n, std = 1) {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const u = Math.max(r(), 1e-12), v = r();
    const m = Math.sqrt(-2 * Math.log(u)) * std;
    a[i] = m * Math.cos(2 * Math.PI * v);
    if (i + 1 < n) a[i + 1] = m * Math.sin(2 * Math.PI * v);
  }
  return a;
}

function randi(r, n, lo, hi) {
  const a = new Int32Array(n);
  for (let i = 0; i < n; ++i) a[i] = lo + Math.floor(r() * (hi - lo));
  return a;
}

/** Relative L2 error; Infinity when either side has a NaN/Inf or the lengths differ. */
function relL2(got, ref) {
  if (!got || !ref || got.length !== ref.length) return Infinity;
  let num = 0, den = 0;
  for (let i = 0; i < ref.length; ++i) {
    const g = got[i], f = ref[i];
    if (!Number.isFinite(g) || !Number.isFinite(f)) return Infinity;
    num += (g - f) * (g - f);
    den += f * f;
  }
  if (den === 0) return num === 0 ? 0 : Infinity;
  return Math.sqrt(num / den);
}

/**
 * Relative L2 of what got differs from ref by beyond the rounding of a bf16
 * store: each element's |got - ref| less half a bf16 ulp at ref (not below
 * 0), over ||ref||. An output the device stores in bf16 holds its own fp32
 * result rounded once to nearest, so against the CPU's fp32 result only the
 * difference of the two fp32 results remains (a rounding that went the other
 * way at a tie-near value included); a store that truncates, rounds twice or
 * garbles bits leaves up to half an ulp more. Infinity on NaN/Inf or a
 * length mismatch.
 */
function relL2Bf16(got, ref) {
  if (!got || !ref || got.length !== ref.length) return Infinity;
  const bits = new Uint32Array(ref.buffer, ref.byteOffset, ref.length);
  let num = 0, den = 0;
  for (let i = 0; i < ref.length; ++i) {
    const g = got[i], f = ref[i];
    if (!Number.isFinite(g) || !Number.isFinite(f)) return Infinity;
    // bf16 keeps 7 of fp32's 23 fraction bits: an ulp at exponent field e
    // is 2^(e - 127 - 7) (subnormals: e = 1), half of it 2^(e - 135).
    const e = Math.max((bits[i] >>> 23) & 0xff, 1);
    const d = Math.max(0, Math.abs(g - f) - 2 ** (e - 135));
    num += d * d;
    den += f * f;
  }
  if (den === 0) return num === 0 ? 0 : Infinity;
  return Math.sqrt(num / den);
}

/** Root-mean-square of got - ref; Infinity on NaN/Inf or a length mismatch. */
function rmsDiff(got, ref) {
  if (!got || !ref || got.length !== ref.length || ref.length === 0) return Infinity;
  let num = 0;
  for (let i = 0; i < ref.length; ++i) {
    if (!Number.isFinite(got[i]) || !Number.isFinite(ref[i])) return Infinity;
    num += (got[i] - ref[i]) ** 2;
  }
  return Math.sqrt(num / ref.length);
}

/** ||got|| / ||scale||; Infinity when got has a NaN/Inf or is missing. */
function relL2Scale(got, scale) {
  if (!got || !scale) return Infinity;
  let num = 0, den = 0;
  for (let i = 0; i < got.length; ++i) {
    if (!Number.isFinite(got[i])) return Infinity;
    num += got[i] * got[i];
  }
  for (let i = 0; i < scale.length; ++i) den += scale[i] * scale[i];
  return den === 0 ? (num === 0 ? 0 : Infinity) : Math.sqrt(num / den);
}

/** Bitwise equality; with anyNaN, a NaN matches any NaN (sign and payload aside). */
function bitEqual(a, b, anyNaN = false) {
  if (!a || !b || a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length), y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; ++i) if (x[i] !== y[i] && !(anyNaN && Number.isNaN(a[i]) && Number.isNaN(b[i]))) return false;
  return true;
}

/** How many elements differ in their bits (as bitEqual); the length of the longer one when the lengths differ. */
function bitDiffCount(a, b, anyNaN = false) {
  if (!a || !b || a.length !== b.length) return Math.max(a ? a.length : 0, b ? b.length : 0, 1);
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length), y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  let n = 0;
  for (let i = 0; i < x.length; ++i) if (x[i] !== y[i] && !(anyNaN && Number.isNaN(a[i]) && Number.isNaN(b[i]))) ++n;
  return n;
}

/**
 * A copy of x with every element rounded to the nearest bf16 (ties to even),
 * as an fp32 value: what a tensor stored in bf16 holds. Infinities stay,
 * values past the bf16 range round to infinity, NaN stays NaN.
 */
function bf16Round(x) {
  const out = new Float32Array(x);
  const u = new Uint32Array(out.buffer);
  for (let i = 0; i < u.length; ++i) {
    if ((u[i] & 0x7fffffff) > 0x7f800000) continue;  // NaN
    u[i] = ((u[i] + 0x7fff + ((u[i] >>> 16) & 1)) & 0xffff0000) >>> 0;
  }
  return out;
}

/**
 * Runs each case on `device` and on 'cpu' through `call(opts)` (the addon's
 * backendOp or decodeOp) and compares them. A case is
 *   { name, precision?, tol, opts, outputs, exact?, anyNaN?, bf16Outputs?, altRef?,
 *     absOutputs?, zeroOutputs?, zeroScale?, scalars?, checkDeterminism?,
 *     needsForward?, checkRowsAlone? }:
 * `outputs` are held to relative L2 < tol (`tols`: {output: tol} overrides
 * tol for the outputs it names), or with `exact` to bitwise equality (the
 * error recorded is then the number of elements that differ; with `anyNaN`
 * a NaN matches any NaN); of them, `bf16Outputs` (stored in bf16 on the
 * device) by relL2Bf16, the error beyond a bf16 rounding; `altRef`:
 * {output: key} lets an output match the reference's `key` instead (two
 * valid results; the error is the smaller);
 * `absOutputs` to an RMS difference < tol, `zeroOutputs` (exactly zero in
 * exact arithmetic) to ||got|| / ||opts[zeroScale]|| < tol, `scalars` to a
 * relative error < tol; with `checkDeterminism` the device runs again and
 * must agree with itself bitwise. Op-specific steps come from the caller:
 * prepare(case) -> the options to run (e.g. a forward's outputs as the
 * inputs of a backward), extra(case, opts, got, rec) -> false to fail the
 * case (recording why in rec.errors).
 *
 * Options: only (a string contained in the name, or a Set of keyOf(case)),
 * onResult(record) as each case finishes, keyOf, prepare, extra,
 * precisionOf(case), determinism (true: every case checks it).
 * Returns one record per case: { name, precision, tol, tols?, device, errors, pass,
 * deterministic?, error?, seconds }.
 */
async function runChecks(cases, device, call, o = {}) {
  const keyOf = o.keyOf || ((c) => c.name);
  const results = [];
  for (const c of cases) {
    if (o.only && !(typeof o.only === 'string' ? c.name.includes(o.only) : o.only.has(keyOf(c)))) continue;
    const rec = { name: c.name, precision: o.precisionOf ? o.precisionOf(c) : c.precision, tol: c.exact ? 0 : c.tol,
      ...(c.tols ? { tols: c.tols } : {}), device, errors: {}, pass: false };
    const t0 = Date.now();
    try {
      const opts = o.prepare ? await o.prepare(c) : c.opts;
      const ref = await call({ ...opts, device: 'cpu' });
      const got = await call({ ...opts, device });
      let ok = true;
      const hold = (k, e, pass) => {
        rec.errors[k] = e;
        if (!pass) ok = false;
      };
      const tolOf = (k) => (c.tols && c.tols[k] !== undefined ? c.tols[k] : c.tol);
      for (const k of c.outputs) {
        if (c.exact) {
          const d = bitDiffCount(got[k], ref[k], c.anyNaN);
          hold(k, d, d === 0);
        } else {
          const err = (want) => ((c.bf16Outputs || []).includes(k) ? relL2Bf16(got[k], want) : relL2(got[k], want));
          const alt = c.altRef && c.altRef[k];
          const e = alt ? Math.min(err(ref[k]), err(ref[alt])) : err(ref[k]);
          hold(k, e, e < tolOf(k));
        }
      }
      for (const k of c.absOutputs || []) {
        const e = rmsDiff(got[k], ref[k]);
        hold(k, e, e < tolOf(k));
      }
      for (const k of c.zeroOutputs || []) {
        const e = relL2Scale(got[k], opts[c.zeroScale]);
        hold(k, e, e < c.tol);
      }
      for (const k of c.scalars || []) {
        const e = relL2([got[k]], [ref[k]]);
        hold(k, e, e < c.tol);
      }
      if (o.determinism || c.checkDeterminism) {
        const again = await call({ ...opts, device });
        rec.deterministic = [...c.outputs, ...(c.zeroOutputs || [])].every((k) => bitEqual(got[k], again[k]));
        if (!rec.deterministic) ok = false;
      }
      if (o.extra && (await o.extra(c, opts, got, rec)) === false) ok = false;
      rec.pass = ok;
    } catch (e) {
      rec.error = String(e && e.message ? e.message : e);
    }
    rec.seconds = (Date.now() - t0) / 1000;
    results.push(rec);
    if (o.onResult) o.onResult(rec);
  }
  return results;
}

module.exports = { rng, randn, randi, relL2, relL2Bf16, rmsDiff, relL2Scale, bitEqual, bitDiffCount, bf16Round, runChecks };
