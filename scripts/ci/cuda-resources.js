#!/usr/bin/env node
'use strict';
// Static resource check of the CUDA kernels in a built addon, without a GPU
// and without cuobjdump (this machine's CUDA has none): reads the cubins the
// fatbin in the .node's `.nv_fatbin` section carries and, per kernel and
// architecture, the registers (EIATTR_REGCOUNT), the stack frame, i.e. local
// memory (EIATTR_FRAME_SIZE: spills and local arrays), the __launch_bounds__
// (EIATTR_MAX_THREADS) and the static shared memory (the size of
// `.nv.shared.<kernel>`, less the 1 KiB reserved per block that sm_90
// cubins count in it). These were checked against `ptxas -v` on the same
// code: registers, stack frame and static shared memory agree for sm_80 and
// sm_90 (a spilling test kernel: 640 / 624 bytes, as ptxas reports).
//
// Fails (exit 1) when a kernel
//   - uses local memory (stack frame > 0) beyond its LOCAL_OK budget (none
//     for a kernel not listed there),
//   - needs more shared memory than its launch may have: static + dynamic
//     (dynamic: LAUNCH below, the sizes the launchers request) above 48 KiB
//     without the cudaFuncSetAttribute opt-in, above the architecture's
//     opt-in maximum with it (sm_80 163 KiB, sm_90 227 KiB),
//   - cannot launch its threads with its registers: registers (allocated in
//     units of 8 per thread, 256 per warp) x threads per block > 65536,
//   - is launched with more threads than its __launch_bounds__ allows,
// or when a kernel (or instantiation) LAUNCH names is missing.
// Kernels LAUNCH does not name are still checked with what the binary says
// (launch bounds, static shared memory, local memory) and listed.
//
//   node scripts/ci/cuda-resources.js [path/to/gpt_engine.node] [--json]
// Exit 2 when the addon is missing, has no fatbin, or holds compressed cubins.

const fs = require('node:fs');
const path = require('node:path');

// ---- what the launchers request (keep in step with native/cuda/*.cu) -------
// threads: block size at launch; dyn(p): dynamic shared bytes for template
// parameter p (the head dim D or its padding DM); optin: the launcher raises
// the kernel's limit with cudaFuncSetAttribute; params: the instantiations
// the launcher dispatches to (each must exist for every architecture).
const bf16Fwd = (D) => 4 * 2 * 64 * D + 2 * 2 * 64 * (D + 8);
const bf16Bwd = (D) => 2 * (2 * 64 * (D + 8) + 2 * 32 * (D + 8) + 32 * (64 + 8)) + 4 * 2 * 32 * D + 2 * 32 * 4;
const f32Fwd = (DM) => 4 * (32 * 33 + 32 * (DM + 1) + 2 * (DM <= 128 ? 2 : 1) * 32 * (DM + 4));
const f32Bwd = (DM) => 4 * (2 * (DM <= 64 ? 2 : 1) * 32 * (DM + 4) + 2 * 32 * (DM + 1) + 2 * 32 * 33 + 2 * (DM <= 64 ? 2 : 1) * 32);
// The bf16 tensor-core GEMM (gemm.cu, TC_SMEM): two fp32 cp.async stages of
// the A and B slabs (128 x 32 floats each) and two bf16 tiles of each.
const gemmTc = () => 2 * 2 * 128 * 32 * 4 + 2 * 2 * 128 * 32 * 2;
const LAUNCH = [
  { name: 'attention_fwd_kernel', threads: 128, dyn: bf16Fwd, optin: true, params: [64, 80, 96, 128] },
  { name: 'attention_bwd_kernel', threads: 128, dyn: bf16Bwd, optin: true, params: [64, 80, 96, 128] },
  // bf16 K/V (forward) and bf16 Q (backward) views: the same shared memory, laid out differently.
  { name: 'attention_fwd_kv16_kernel', threads: 128, dyn: bf16Fwd, optin: true, params: [64, 80, 96, 128] },
  { name: 'attention_fwd_doc_kv16_kernel', threads: 128, dyn: bf16Fwd, optin: true, params: [64, 80, 96, 128] },
  { name: 'attention_bwd_q16_kernel', threads: 128, dyn: bf16Bwd, optin: true, params: [64, 80, 96, 128] },
  { name: 'attention_bwd_doc_q16_kernel', threads: 128, dyn: (D) => bf16Bwd(D) + 32 * 4, optin: true, params: [64, 80, 96, 128] },
  { name: 'attention_bwd_dq_reduce_kernel', threads: 128 },
  { name: 'attention_dvec_kernel', threads: 128 },
  { name: 'attention_fp32_fwd_kernel', threads: 256, dyn: f32Fwd, optin: true, params: [32, 64, 128, 256] },
  { name: 'attention_fp32_bwd_kernel', threads: 256, dyn: f32Bwd, optin: true, params: [32, 64, 128, 256] },
  { name: 'gemm_bf16_tc_kernel', threads: 256, dyn: gemmTc, optin: true },
  { name: 'gemm_fp32_kernel', threads: 256 },
  // matmul_forward_gelu (gemm.cu): the same tiles with a bias + GELU epilogue.
  { name: 'gemm_bf16_tc_gelu_kernel', threads: 256, dyn: gemmTc, optin: true },
  { name: 'gemm_fp32_gelu_kernel', threads: 256 },
  { name: 'colsum_partial_kernel', threads: 256 },
  { name: 'colsum_finish_kernel', threads: 256 },
  { name: 'layernorm_forward_kernel', threads: 256 },
  { name: 'residual_layernorm_forward_kernel', threads: 256 },
  { name: 'layernorm_backward_dx_kernel', threads: 256 },
  { name: 'layernorm_backward_params_partial_kernel', threads: 256 },
  { name: 'layernorm_backward_params_finish_kernel', threads: 256 },
  { name: 'gelu_forward_kernel', threads: 256 },
  { name: 'gelu_backward_kernel', threads: 256 },
  { name: 'add_kernel', threads: 256 },
  { name: 'scale_kernel', threads: 256 },
  { name: 'embedding_forward_kernel', threads: 256 },
  { name: 'embedding_backward_wpe_kernel', threads: 256 },
  { name: 'embedding_keys_kernel', threads: 256 },
  { name: 'bitonic_pass_kernel', threads: 256 },
  { name: 'embedding_backward_wte_sorted_kernel', threads: 256 },
  { name: 'crossentropy_kernel', threads: 512 },
  { name: 'loss_sum_kernel', threads: 256 },
  { name: 'sum_squares_partial_kernel', threads: 256 },
  { name: 'sum_squares_finish_kernel', threads: 1 },
  { name: 'grad_scale_kernel', threads: 1 },
  { name: 'adamw_kernel', threads: 256 },
  // Decoding (decode_attention.cu): static shared memory only.
  { name: 'decode_kv_store_kernel', threads: 128 },
  { name: 'decode_attention_chunk_kernel', threads: 128 },
  { name: 'decode_attention_combine_kernel', threads: 128 },
  { name: 'decode_embedding_kernel', threads: 256 },
  { name: 'probe_fill_kernel', threads: 256 },
];
// Kernels allowed a stack frame up to a budget (bytes per thread, the larger
// of sm_80 and sm_90), with the reason. Found by this check on its first run
// (2026-11-28); each is a performance defect to fix, kept here so CI stays
// green and any growth fails.
const LOCAL_OK = new Map([
]);

const SMEM_NO_OPTIN = 48 * 1024;
const SMEM_OPTIN = { 80: 163 * 1024, 86: 99 * 1024, 89: 99 * 1024, 90: 227 * 1024 };
const RESERVED_SMEM = 1024; // per block; sm_90 cubins include it in .nv.shared.<kernel>
const REGS_PER_BLOCK = 65536;

// ---- ELF ---------------------------------------------------------------------
function sections(buf, base) {
  if (buf.readUInt32BE(base) !== 0x7f454c46) throw new Error(`no ELF header at offset ${base}`);
  const shoff = Number(buf.readBigUInt64LE(base + 0x28));
  const shentsize = buf.readUInt16LE(base + 0x3a);
  const shnum = buf.readUInt16LE(base + 0x3c);
  const shstrndx = buf.readUInt16LE(base + 0x3e);
  const out = [];
  for (let i = 0; i < shnum; i++) {
    const o = base + shoff + i * shentsize;
    out.push({
      nameOff: buf.readUInt32LE(o),
      type: buf.readUInt32LE(o + 4),
      offset: Number(buf.readBigUInt64LE(o + 0x18)),
      size: Number(buf.readBigUInt64LE(o + 0x20)),
      link: buf.readUInt32LE(o + 0x28),
      info: buf.readUInt32LE(o + 0x2c),
      entsize: Number(buf.readBigUInt64LE(o + 0x38)),
    });
  }
  const str = out[shstrndx];
  for (const s of out) s.name = cstr(buf, base + str.offset + s.nameOff);
  return out;
}

function cstr(buf, at) {
  const end = buf.indexOf(0, at);
  return buf.toString('latin1', at, end);
}

function symbols(buf, base, secs) {
  const symtab = secs.find((s) => s.type === 2);
  if (!symtab) return [];
  const strtab = secs[symtab.link];
  const syms = [];
  for (let o = 0; o < symtab.size; o += 24) {
    const at = base + symtab.offset + o;
    syms.push(cstr(buf, base + strtab.offset + buf.readUInt32LE(at)));
  }
  return syms;
}

// .nv.info records: format byte, attribute byte, then a 16-bit value (HVAL)
// or a 16-bit size and that many bytes (SVAL); NVAL carries nothing more.
function nvInfo(buf, start, size) {
  const recs = [];
  let o = start;
  while (o < start + size) {
    const fmt = buf[o], attr = buf[o + 1];
    if (fmt === 0x04) {
      const n = buf.readUInt16LE(o + 2);
      recs.push({ attr, data: buf.subarray(o + 4, o + 4 + n) });
      o += 4 + n;
    } else if (fmt === 0x03 || fmt === 0x02) {
      recs.push({ attr, value: buf.readUInt16LE(o + 2) });
      o += 4;
    } else if (fmt === 0x01) {
      recs.push({ attr });
      o += 2;
    } else if (fmt === 0x00) {
      break; // padding at the end of the section
    } else throw new Error(`unknown .nv.info record format 0x${fmt.toString(16)}`);
  }
  return recs;
}

const EIATTR_MAX_THREADS = 0x05, EIATTR_FRAME_SIZE = 0x11, EIATTR_REGCOUNT = 0x2f;

function cubinKernels(buf, base, arch) {
  const secs = sections(buf, base);
  const syms = symbols(buf, base, secs);
  const byName = new Map();
  const kernel = (mangled) => {
    if (!byName.has(mangled)) byName.set(mangled, { mangled, arch, regs: null, frame: 0, staticSmem: 0, maxThreads: null });
    return byName.get(mangled);
  };
  for (const s of secs) {
    if (s.name.startsWith('.text.')) kernel(s.name.slice(6));
  }
  // sm_90 cubins carry a `.nv.shared.reserved.0` section and count the 1 KiB
  // reserved per block in every `.nv.shared.<kernel>`; sm_80 ones do neither.
  const reserved = secs.some((s) => s.name.startsWith('.nv.shared.reserved')) ? RESERVED_SMEM : 0;
  for (const s of secs) {
    if (s.name === '.nv.info') {
      for (const r of nvInfo(buf, base + s.offset, s.size)) {
        if ((r.attr === EIATTR_REGCOUNT || r.attr === EIATTR_FRAME_SIZE) && r.data && r.data.length >= 8) {
          const sym = syms[r.data.readUInt32LE(0)];
          if (!byName.has(sym)) continue; // a device function, not a kernel
          const k = kernel(sym);
          if (r.attr === EIATTR_REGCOUNT) k.regs = r.data.readUInt32LE(4);
          else k.frame = r.data.readUInt32LE(4);
        }
      }
    } else if (s.name.startsWith('.nv.info.')) {
      const k = byName.get(s.name.slice(9));
      if (!k) continue;
      for (const r of nvInfo(buf, base + s.offset, s.size))
        if (r.attr === EIATTR_MAX_THREADS && r.data && r.data.length >= 12)
          k.maxThreads = r.data.readUInt32LE(0) * r.data.readUInt32LE(4) * r.data.readUInt32LE(8);
    } else if (s.name.startsWith('.nv.shared.') && !s.name.startsWith('.nv.shared.reserved')) {
      const k = byName.get(s.name.slice(11));
      if (k) k.staticSmem = Math.max(0, s.size - reserved);
    }
  }
  return [...byName.values()];
}

// Fatbin: a 16-byte header (magic 0xBA55ED50, version, header size, size),
// then entries, each a header (kind 1 = PTX, 2 = ELF; header size; payload
// size; arch at +28; flags at +40, 0x2000 = compressed) and its payload.
function fatbinCubins(buf, start, end) {
  const cubins = [];
  let o = start;
  while (o + 16 <= end) {
    if (buf.readUInt32LE(o) !== 0xba55ed50) break;
    const hsize = buf.readUInt16LE(o + 6);
    const fsize = Number(buf.readBigUInt64LE(o + 8));
    let e = o + hsize;
    while (e < o + hsize + fsize) {
      const kind = buf.readUInt16LE(e);
      const ehsize = buf.readUInt32LE(e + 4);
      const psize = Number(buf.readBigUInt64LE(e + 8));
      const arch = buf.readUInt32LE(e + 28);
      const flags = Number(buf.readBigUInt64LE(e + 40));
      if (kind === 2) {
        if (flags & 0x2000) throw Object.assign(new Error(`the cubin for sm_${arch} is compressed`), { exit: 2 });
        cubins.push({ base: e + ehsize, arch });
      }
      e += ehsize + psize;
    }
    o += hsize + fsize;
    o = (o + 7) & ~7; // fatbins in one section are 8-byte aligned
  }
  return cubins;
}

function demangleName(mangled) {
  // Enough of the Itanium mangling for our kernels: the last source name in
  // the nested name, plus a template argument list of integers/booleans.
  const names = [];
  const re = /(\d+)([A-Za-z_][A-Za-z0-9_]*)/g;
  let m;
  let i = mangled.startsWith('_ZN') ? 3 : mangled.startsWith('_Z') ? 2 : 0;
  while ((re.lastIndex = i), (m = re.exec(mangled)) && m.index === i) {
    const n = Number(m[1]);
    names.push(mangled.substr(i + m[1].length, n));
    i += m[1].length + n;
  }
  let base = names.length ? names[names.length - 1] : mangled;
  const args = [];
  if (mangled[i] === 'I') {
    const tre = /L(i|b)(\d+)E/g;
    tre.lastIndex = i;
    let t;
    while ((t = tre.exec(mangled)) && t.index < mangled.indexOf('EE', i) + 2) {
      args.push(t[1] === 'b' ? (t[2] === '1' ? 'true' : 'false') : t[2]);
    }
  }
  return { base, args, pretty: args.length ? `${base}<${args.join(', ')}>` : base };
}

function main() {
  const argv = process.argv.slice(2);
  const json = argv.includes('--json');
  const root = path.join(__dirname, '..', '..');
  const file = argv.find((a) => !a.startsWith('--')) || process.env.GPT_ENGINE_ADDON || path.join(root, 'build/Release/gpt_engine.node');
  if (!fs.existsSync(file)) {
    console.error(`check-cuda-resources: no addon at ${file}`);
    process.exit(2);
  }
  const buf = fs.readFileSync(file);
  const secs = sections(buf, 0);
  const fat = secs.filter((s) => s.name === '.nv_fatbin');
  if (!fat.length) {
    console.error(`check-cuda-resources: ${file} has no .nv_fatbin section: it was built without the CUDA backend`);
    process.exit(2);
  }
  let cubins = [];
  try {
    for (const s of fat) cubins = cubins.concat(fatbinCubins(buf, s.offset, s.offset + s.size));
  } catch (e) {
    console.error(`check-cuda-resources: ${e.message}; this check reads uncompressed cubins only (build with nvcc --no-compress)`);
    process.exit(e.exit || 2);
  }
  const rows = [];
  for (const c of cubins) for (const k of cubinKernels(buf, c.base, c.arch)) rows.push(k);

  // sm_80 cubins leave EIATTR_MAX_THREADS out for some kernels that have
  // __launch_bounds__; the same kernel's sm_90 image carries it.
  const boundsByName = new Map();
  for (const k of rows) if (k.maxThreads) boundsByName.set(k.mangled, k.maxThreads);
  for (const k of rows) if (!k.maxThreads && boundsByName.has(k.mangled)) k.maxThreads = boundsByName.get(k.mangled);

  const problems = [];
  const seen = new Set();
  const unlisted = new Set();
  for (const k of rows) {
    const d = demangleName(k.mangled);
    k.name = d.pretty;
    const launch = LAUNCH.find((l) => l.name === d.base);
    if (launch) seen.add(launch.name);
    else unlisted.add(d.base);
    const param = d.args.length ? Number(d.args[0]) : null;
    k.threads = launch ? launch.threads : k.maxThreads;
    k.dynSmem = launch && launch.dyn ? launch.dyn(param) : 0;
    k.optin = !!(launch && launch.optin);
    const optinMax = SMEM_OPTIN[k.arch] ?? SMEM_OPTIN[90];
    k.smemLimit = k.optin ? optinMax : SMEM_NO_OPTIN;
    k.smem = k.staticSmem + k.dynSmem;
    const where = `${k.name} (sm_${k.arch})`;
    if (k.regs === null) problems.push(`${where}: no register count in the cubin`);
    const allowed = LOCAL_OK.get(d.pretty);
    if (k.frame > (allowed ? allowed.bytes : 0))
      problems.push(
        `${where}: ${k.frame} bytes of local memory per thread (stack frame: register spills or a local array)` +
          (allowed ? `, above its budget of ${allowed.bytes} (${allowed.why})` : ''),
      );
    else if (k.frame > 0) k.note = `local memory within its budget: ${allowed.why}`;
    if (k.smem > k.smemLimit)
      problems.push(
        `${where}: ${k.staticSmem} static + ${k.dynSmem} dynamic = ${k.smem} bytes of shared memory, above the ` +
          `${k.smemLimit} bytes a block may have ${k.optin ? `on sm_${k.arch} with the opt-in` : 'without cudaFuncSetAttribute'}`,
      );
    if (k.threads && k.regs !== null) {
      const warps = Math.ceil(k.threads / 32);
      k.regsPerBlock = Math.ceil((Math.ceil(k.regs / 8) * 8 * 32) / 256) * 256 * warps;
      if (k.regsPerBlock > REGS_PER_BLOCK)
        problems.push(`${where}: ${k.regs} registers x ${k.threads} threads needs ${k.regsPerBlock} registers per block, above ${REGS_PER_BLOCK}`);
    }
    if (launch && k.maxThreads && launch.threads > k.maxThreads)
      problems.push(`${where}: launched with ${launch.threads} threads but __launch_bounds__ allows ${k.maxThreads}`);
  }
  for (const l of LAUNCH)
    if (!seen.has(l.name)) problems.push(`${l.name}: in the launch table of scripts/ci/cuda-resources.js but in no cubin of ${file}`);
  // Every instantiation the launchers dispatch to, on every architecture.
  const archList = [...new Set(rows.map((r) => r.arch))];
  for (const l of LAUNCH)
    for (const p of l.params || [])
      for (const a of archList)
        if (!rows.some((r) => r.arch === a && r.name === `${l.name}<${p}>`))
          problems.push(`${l.name}<${p}>: dispatched to by its launcher but missing from the sm_${a} cubins`);

  rows.sort((a, b) => a.arch - b.arch || a.name.localeCompare(b.name));
  if (json) {
    process.stdout.write(JSON.stringify({ addon: file, kernels: rows, unlisted: [...unlisted], problems }, null, 2) + '\n');
  } else {
    const pad = (s, n) => String(s).padEnd(n);
    const lpad = (s, n) => String(s).padStart(n);
    console.log(`${pad('kernel', 42)} ${pad('arch', 6)} ${lpad('regs', 5)} ${lpad('thr', 5)} ${lpad('local', 6)} ${lpad('static', 7)} ${lpad('dynamic', 8)} ${lpad('limit', 7)}`);
    for (const k of rows)
      console.log(
        `${pad(k.name, 42)} ${pad(`sm_${k.arch}`, 6)} ${lpad(k.regs ?? '?', 5)} ${lpad(k.threads ?? '?', 5)} ${lpad(k.frame, 6)} ` +
          `${lpad(k.staticSmem, 7)} ${lpad(k.dynSmem, 8)} ${lpad(k.smemLimit, 7)}`,
      );
    for (const k of rows) if (k.note) console.log(`known: ${k.name} (sm_${k.arch}) ${k.frame} B local — ${k.note}`);
    if (unlisted.size)
      console.log(`not in the launch table (checked with their __launch_bounds__ and static shared memory only): ${[...unlisted].sort().join(', ')}`);
    for (const p of problems) console.error(`PROBLEM ${p}`);
    const archs = [...new Set(rows.map((r) => r.arch))].sort().map((a) => `sm_${a}`);
    console.log(
      `check-cuda-resources: ${rows.length} kernel images (${archs.join(', ')}), ${problems.length} problem(s)`,
    );
  }
  process.exit(problems.length ? 1 : 0);
}

main();
