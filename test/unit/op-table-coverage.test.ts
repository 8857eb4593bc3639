/**
 * Every Backend op has cases in the op tables (test/ops/op-table.js and
 * test/ops/decode-op-table.js), which run each op on every backend against
 * the CPU backend (test/cuda, the GPU check): an op declared in
 * native/core/backend.h (a virtual method of class Backend) with no case
 * fails here, and so does a case naming an op the Backend does not have.
 * Memory management and the backend's name are not ops: every case goes
 * through them.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '..', '..');

/** Virtual methods of class Backend, in declaration order. */
function backendMethods(header: string): string[] {
  const start = header.search(/^class Backend\s*\{/m);
  if (start < 0) throw new Error('native/core/backend.h declares no class Backend');
  const end = header.indexOf('\n};', start);
  const body = header.slice(start, end < 0 ? undefined : end).replace(/\/\/[^\n]*/g, '');
  const names: string[] = [];
  // `virtual <return type> <name>(`: the name is the last word before the first
  // parenthesis; the destructor (~Backend) is not a method.
  for (const m of body.matchAll(/\bvirtual\s+([^;{(]*)\(/g)) {
    const name = /(~?\w+)\s*$/.exec(m[1]);
    if (name && !name[1].startsWith('~')) names.push(name[1]);
  }
  return names;
}

// Not ops: exercised by every case (inputs uploaded, outputs downloaded).
// decode_weight_bytes / decode_weight_pack build a backend's packed weight
// copy; every decode_linear, decode_linear_gelu and decode_head case runs
// through them first (native/addon/backend_ops_binding.cc packs, then calls).
// native_stream hands the backend's queue to NCCL (native/distributed/nccl_comm.cc);
// test/distributed/gpu-ranks.test.ts runs it. reserve_training_scratch and
// training_scratch_bytes size the backend's own memory; every training step
// runs through them (test/cuda/host-syncs.test.ts counts their allocations).
// The graph_* methods record and replay a training micro-batch's ops as a
// CUDA graph (test/cuda/graph.test.ts compares it with eager training).
// kv_cache_dtype names the type of a decode session's cache; the bf16-cache
// cases of decode-op-table.js and test/cuda/decode-kv-bf16.test.ts run with it.
const NOT_OPS = new Set([
  'name', 'alloc', 'free', 'to_device', 'to_host', 'copy', 'zero', 'synchronize', 'native_stream', 'decode_weight_bytes',
  'decode_weight_pack', 'reserve_training_scratch', 'training_scratch_bytes',
  'graph_capture_begin', 'graph_capture_end', 'graph_replay', 'graph_forget', 'graph_status',
  'kv_cache_dtype',
]);

/** The `op` of every case of both tables (built in plain node: inside jest's VM it takes ~30 s). */
function tableOps(): string[] {
  const script =
    "const t = require('./test/ops/op-table.js'), d = require('./test/ops/decode-op-table.js');" +
    'const ops = [...t.buildCases(1), ...d.buildDecodeCases(1)].map((c) => c.opts.op);' +
    'process.stdout.write(JSON.stringify([...new Set(ops)]));';
  return JSON.parse(execFileSync(process.execPath, ['-e', script], { cwd: ROOT, encoding: 'utf8', timeout: 60000 }));
}

describe('the op tables cover the Backend', () => {
  const declared = backendMethods(fs.readFileSync(path.join(ROOT, 'native', 'core', 'backend.h'), 'utf8'));
  const ops = declared.filter((m) => !NOT_OPS.has(m));
  const covered = tableOps();

  test('backend.h is parsed: its memory methods and a few ops are found', () => {
    for (const m of ['alloc', 'free', 'matmul_forward', 'attention_backward', 'adamw', 'decode_attention']) expect(declared).toContain(m);
  });

  test('every op of class Backend has at least one case', () => {
    expect(ops.filter((m) => !covered.includes(m))).toEqual([]);
  });

  test('every case names an op of class Backend', () => {
    expect(covered.filter((op) => !ops.includes(op))).toEqual([]);
  });

  test('the parser finds a virtual method of any shape and skips comments', () => {
    const h = [
      'struct X { virtual void not_this(); };',
      'class Backend {',
      ' public:',
      '  virtual ~Backend() = default;',
      '  // virtual void commented_out(int) = 0;',
      '  virtual double two_lines(const float* a,',
      '                           int n) = 0;',
      '  virtual const char* name() const = 0;',
      '};',
    ].join('\n');
    expect(backendMethods(h)).toEqual(['two_lines', 'name']);
  });
});
