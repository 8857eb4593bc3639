#!/usr/bin/env node
'use strict';
// Build step of the SIMT emulator (GPT_ENGINE_CUDA_EMU=ON, docs/dev/CUDA-EMU.md):
// turns one CUDA source into C++ that g++ compiles against the emulator's
// headers (tools/cuda-emu/include). Three rewrites, nothing else changes
// (line numbers are kept, and a #line directive points errors and
// __FILE__ at the original file):
//
//   kernel<<<grid, block[, smem[, stream]]>>>(args)
//       -> (::gpt_emu::Launcher<kernel>(grid, block[, smem[, stream]]))(args)
//      (template kernels `k<D><<<...>>>` and launches over several lines too)
//   extern __shared__ [__align__(n)] T name[];
//       -> T* name = reinterpret_cast<T*>(::gpt_emu::dynamic_smem());
//   __shared__ T a[...], b[...];
//       -> static thread_local T gpt_emu_shared_a[...], gpt_emu_shared_b[...];
//          auto& a = ::gpt_emu::shared_array(gpt_emu_shared_a, "a"); ...
//      (one copy per OS thread; poisoned once at the start of each block)
//
//   node rewrite.js <input.cu|.cuh> <output>
const fs = require('node:fs');
const path = require('node:path');

/** The source with comments and the insides of string/char literals blanked (same length). */
function codeOnly(src) {
  const out = src.split('');
  let i = 0;
  const n = src.length;
  while (i < n) {
    const c = src[i], d = src[i + 1];
    if (c === '/' && d === '/') {
      while (i < n && src[i] !== '\n') out[i++] = ' ';
    } else if (c === '/' && d === '*') {
      const end = src.indexOf('*/', i + 2);
      const stop = end < 0 ? n : end + 2;
      for (; i < stop; ++i) if (src[i] !== '\n') out[i] = ' ';
    } else if (c === '"' || c === "'") {
      // Raw strings are not used in kernel sources; plain literals only.
      ++i;
      while (i < n && src[i] !== c) {
        if (src[i] === '\\') out[i++] = ' ';
        if (i < n && src[i] !== '\n') out[i] = ' ';
        ++i;
      }
      ++i;
    } else if (c === '#' && /^#\s*include\b/.test(src.slice(i, i + 20))) {
      // <...> in an #include is not a template argument list.
      while (i < n && src[i] !== '\n') out[i++] = ' ';
    } else {
      ++i;
    }
  }
  return out.join('');
}

function fail(file, code, pos, msg) {
  const line = code.slice(0, pos).split('\n').length;
  throw new Error(`${file}:${line}: cuda-emu rewrite: ${msg}`);
}

/** Index of the bracket closing the one at `open` (code-only text). */
function matchClose(code, open, file) {
  const pairs = { '(': ')', '[': ']', '{': '}' };
  const stack = [];
  for (let i = open; i < code.length; ++i) {
    const c = code[i];
    if (pairs[c]) stack.push(pairs[c]);
    else if (c === ')' || c === ']' || c === '}') {
      if (stack.pop() !== c) fail(file, code, i, `unbalanced '${c}'`);
      if (stack.length === 0) return i;
    }
  }
  fail(file, code, open, 'unclosed bracket');
  return -1;
}

/** Splits code[a, b) at top-level commas; returns [start, end) ranges. */
function splitTop(code, a, b) {
  const parts = [];
  let depth = 0, s = a;
  for (let i = a; i < b; ++i) {
    const c = code[i];
    if (c === '(' || c === '[' || c === '{') ++depth;
    else if (c === ')' || c === ']' || c === '}') --depth;
    else if (c === ',' && depth === 0) {
      parts.push([s, i]);
      s = i + 1;
    }
  }
  parts.push([s, b]);
  return parts;
}

function rewriteLaunches(src, code, file, edits) {
  let from = 0;
  for (;;) {
    const at = code.indexOf('<<<', from);
    if (at < 0) break;
    // The kernel expression: an identifier (with ::) and optional template arguments.
    let s = at;
    while (s > 0 && /\s/.test(code[s - 1])) --s;
    if (code[s - 1] === '>') {
      let depth = 0, i = s - 1;
      for (; i >= 0; --i) {
        if (code[i] === '>') ++depth;
        else if (code[i] === '<' && --depth === 0) break;
      }
      if (i < 0) fail(file, code, at, 'cannot find the start of the kernel template arguments');
      s = i;
    }
    while (s > 0 && /[\w:]/.test(code[s - 1])) --s;
    const kernel = src.slice(s, at).trim();
    if (!/^[\w:]+(<.*>)?$/s.test(kernel)) fail(file, code, at, `cannot read the kernel name before <<< ("${kernel}")`);
    // The launch configuration up to >>> (at bracket depth 0).
    let depth = 0, e = at + 3;
    for (; e < code.length; ++e) {
      const c = code[e];
      if (c === '(' || c === '[' || c === '{') ++depth;
      else if (c === ')' || c === ']' || c === '}') --depth;
      else if (depth === 0 && code.startsWith('>>>', e)) break;
    }
    if (e >= code.length) fail(file, code, at, 'no >>> closes this launch');
    const cfg = splitTop(code, at + 3, e).map(([a, b]) => src.slice(a, b));
    if (cfg.length < 2 || cfg.length > 4) fail(file, code, at, `a launch takes 2 to 4 configuration values, got ${cfg.length}`);
    let p = e + 3;
    while (p < code.length && /\s/.test(code[p])) ++p;
    if (code[p] !== '(') fail(file, code, e, 'expected ( after >>>');
    // Keep the newlines between the kernel name and the argument list so line numbers stay.
    const between = src.slice(s, p).replace(/[^\n]/g, '');
    const cfgText = cfg.map((c) => c.replace(/\n/g, ' ').trim()).join(', ');
    edits.push({ start: s, end: p, text: `(::gpt_emu::Launcher<${kernel}>(${cfgText}))${between}` });
    from = p;
  }
}

function rewriteShared(src, code, file, edits) {
  const re = /\b__shared__\b/g;
  let m;
  while ((m = re.exec(code))) {
    const at = m.index;
    // Statement bounds: back to the previous ; { } or start, forward to ;.
    let s = at;
    while (s > 0 && !';{}'.includes(code[s - 1])) --s;
    const semi = code.indexOf(';', at);
    if (semi < 0) fail(file, code, at, '__shared__ declaration without ;');
    const head = code.slice(s, at);
    const isExtern = /\bextern\s*$/.test(head);
    const declStart = isExtern ? s + head.lastIndexOf('extern') : at;
    const lead = src.slice(s, declStart);  // whitespace/newlines before the declaration
    let body = src.slice(at + '__shared__'.length, semi);
    const nl = (src.slice(declStart, semi).match(/\n/g) || []).length;
    body = body.replace(/__align__\s*\(([^)]*)\)/g, '__attribute__((aligned($1)))');
    if (isExtern) {
      const mm = /^([\s\S]*?)(\w+)\s*\[\s*\]\s*$/.exec(body);
      if (!mm) fail(file, code, at, 'cannot read the extern __shared__ declaration');
      const type = mm[1].replace(/__attribute__\(\(aligned\([^)]*\)\)\)/g, '').replace(/\s+/g, ' ').trim();
      edits.push({ start: declStart, end: semi + 1,
        text: `${type}* ${mm[2]} = reinterpret_cast<${type}*>(::gpt_emu::dynamic_smem());${'\n'.repeat(nl)}` });
    } else {
      const bcode = code.slice(at + '__shared__'.length, semi);
      const parts = splitTop(bcode, 0, bcode.length).map(([a, b]) => bcode.slice(a, b));
      const names = parts.map((p, i) => {
        const decl = p.replace(/\[[^\]]*\]/g, '').replace(/=.*$/s, '');
        const ids = decl.match(/\w+/g) || [];
        const name = i === 0 ? ids[ids.length - 1] : ids[0];
        if (!name) fail(file, code, at, 'cannot read a __shared__ variable name');
        return name;
      });
      // The declared storage is renamed; the kernel's name becomes a reference
      // to the array's guarded home for this block (runtime.cc shared_static).
      const bparts = splitTop(body, 0, body.length).map(([a, b]) => body.slice(a, b));
      if (bparts.length !== parts.length) fail(file, code, at, 'cannot split the __shared__ declaration');
      const renamed = bparts.map((p, i) => {
        const cut = p.search(/[[=]/);
        const head = cut < 0 ? p : p.slice(0, cut);
        const k = head.search(new RegExp(`\\b${names[i]}\\b(?![\\s\\S]*\\b${names[i]}\\b)`));
        if (k < 0) fail(file, code, at, `cannot find ${names[i]} in its __shared__ declaration`);
        return p.slice(0, k) + `gpt_emu_shared_${names[i]}` + p.slice(k + names[i].length);
      });
      const bind = names.map((nm) => `auto& ${nm} = ::gpt_emu::shared_array(gpt_emu_shared_${nm}, "${nm}");`).join(' ');
      edits.push({ start: at, end: semi + 1,
        text: `static thread_local ${renamed.join(',').replace(/\n/g, ' ').trim()}; ${bind}${'\n'.repeat(nl)}` });
    }
    void lead;
  }
}

function rewrite(src, file) {
  const code = codeOnly(src);
  const edits = [];
  rewriteLaunches(src, code, file, edits);
  rewriteShared(src, code, file, edits);
  edits.sort((a, b) => b.start - a.start);
  let out = src;
  let last = Infinity;
  for (const e of edits) {
    if (e.end > last) fail(file, code, e.start, 'overlapping rewrites');
    out = out.slice(0, e.start) + e.text + out.slice(e.end);
    last = e.start;
  }
  return `#line 1 "${file.replace(/\\/g, '/')}"\n${out}`;
}

module.exports = { rewrite, codeOnly };

if (require.main === module) {
  const [input, output] = process.argv.slice(2);
  if (!input || !output) {
    process.stderr.write('usage: rewrite.js <input.cu> <output>\n');
    process.exit(2);
  }
  try {
    const text = rewrite(fs.readFileSync(input, 'utf8'), path.resolve(input));
    fs.mkdirSync(path.dirname(output), { recursive: true });
    // Leave an unchanged output alone so the build does not recompile it.
    if (!fs.existsSync(output) || fs.readFileSync(output, 'utf8') !== text) fs.writeFileSync(output, text);
  } catch (e) {
    process.stderr.write(`${e.message}\n`);
    process.exit(1);
  }
}
