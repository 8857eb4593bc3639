#!/usr/bin/env node
/**
 * Writes the seed corpus of the parser fuzz tests (test/unit/fuzz-*.test.ts).
 * Plain Node, no gpt-engine imports, so the seeds come from a second,
 * independent writer of each format. Run once: `node test/fuzz-corpus/make-corpus.js`;
 * the files are checked in. Inputs that once broke a parser go into
 * <format>/regressions/ by hand and are replayed by the same tests.
 */
const fs = require('node:fs');
const path = require('node:path');

const root = __dirname;
function put(rel, data) {
  const f = path.join(root, rel);
  fs.mkdirSync(path.dirname(f), { recursive: true });
  fs.writeFileSync(f, data);
}

// --- safetensors -----------------------------------------------------------
function f32(vals) {
  return Buffer.from(Float32Array.from(vals).buffer);
}
function half(vals) {
  // exact for the small dyadic values used here
  const b = Buffer.alloc(vals.length * 2);
  vals.forEach((v, i) => {
    if (v === 0) return;
    const s = v < 0 ? 0x8000 : 0;
    const a = Math.abs(v);
    const e = Math.floor(Math.log2(a));
    const m = Math.round((a / 2 ** e - 1) * 1024);
    b.writeUInt16LE(s | ((e + 15) << 10) | m, 2 * i);
  });
  return b;
}
function bf16(vals) {
  const u = new Uint32Array(Float32Array.from(vals).buffer);
  const b = Buffer.alloc(vals.length * 2);
  u.forEach((x, i) => b.writeUInt16LE(x >>> 16, 2 * i));
  return b;
}
function safetensors(tensors, metadata) {
  const h = {};
  if (metadata) h.__metadata__ = metadata;
  let pos = 0;
  for (const [name, dtype, shape, bytes] of tensors) {
    h[name] = { dtype, shape, data_offsets: [pos, pos + bytes.length] };
    pos += bytes.length;
  }
  let json = Buffer.from(JSON.stringify(h));
  json = Buffer.concat([json, Buffer.alloc((8 - ((8 + json.length) % 8)) % 8, 0x20)]);
  const n = Buffer.alloc(8);
  n.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([n, json, ...tensors.map((t) => t[3])]);
}
const seq = (n, f = (i) => (i % 13) / 4 - 1.5) => Array.from({ length: n }, (_, i) => f(i));
put('safetensors/f32-metadata.safetensors', safetensors([['a', 'F32', [2, 3], f32(seq(6))], ['b.bias', 'F32', [3], f32(seq(3))]], { format: 'pt', note: 'seed' }));
put('safetensors/f16.safetensors', safetensors([['w', 'F16', [4, 2], half(seq(8))], ['v', 'F16', [2], half([1, -2])]]));
put('safetensors/bf16.safetensors', safetensors([['w', 'BF16', [2, 2, 2], bf16(seq(8))]]));
put('safetensors/edge-shapes.safetensors', safetensors([['scalar', 'F32', [], f32([7])], ['empty', 'F32', [0, 5], Buffer.alloc(0)], ['e2', 'F16', [3, 0], Buffer.alloc(0)], ['one', 'F32', [1, 1, 1, 1], f32([1])]]));
put('safetensors/mixed-dtypes.safetensors', safetensors([['ids', 'I64', [2], Buffer.alloc(16)], ['mask', 'BOOL', [3], Buffer.from([1, 0, 1])], ['x', 'F32', [1], f32([0.5])]]));
put('safetensors/empty.safetensors', safetensors([], { only: 'metadata' }));
// A tiny GPT (n_layer 1, n_embd 4, vocab 6, n_positions 3) in HF layout.
{
  const C = 4;
  const t = [['transformer.wte.weight', [6, C]], ['transformer.wpe.weight', [3, C]]];
  for (const [n, s] of [['ln_1.weight', [C]], ['ln_1.bias', [C]], ['attn.c_attn.weight', [C, 3 * C]], ['attn.c_attn.bias', [3 * C]], ['attn.c_proj.weight', [C, C]], ['attn.c_proj.bias', [C]], ['ln_2.weight', [C]], ['ln_2.bias', [C]], ['mlp.c_fc.weight', [C, 4 * C]], ['mlp.c_fc.bias', [4 * C]], ['mlp.c_proj.weight', [4 * C, C]], ['mlp.c_proj.bias', [C]]])
    t.push([`transformer.h.0.${n}`, s]);
  t.push(['transformer.h.0.attn.bias', [1, 1, 3, 3]], ['transformer.ln_f.weight', [C]], ['transformer.ln_f.bias', [C]]);
  put('safetensors/tiny-gpt2.safetensors', safetensors(t.map(([n, s]) => [n, 'F32', s, f32(seq(s.reduce((a, b) => a * b, 1)))])));
}

// --- config.json -----------------------------------------------------------
const ours = {
  model_type: 'gpt2', architectures: ['GPT2LMHeadModel'], n_layer: 2, n_head: 2, n_embd: 8, n_positions: 16, n_ctx: 16,
  vocab_size: 50257, layer_norm_epsilon: 1e-5, activation_function: 'gelu_new', tie_word_embeddings: true,
  attention_pattern: 'dense', attention_window: null, gpt_engine_version: '0.1.0', tokenizer: 'gpt2', bos_token_id: 50256, eos_token_id: 50256,
};
put('config/ours-dense.json', JSON.stringify(ours, null, 2));
put('config/ours-alternating.json', JSON.stringify({ ...ours, model_type: 'gpt-engine', n_layer: 3, attention_pattern: 'alternating', attention_window: 4, vocab_size: 256, tokenizer: 'byte', bos_token_id: undefined, eos_token_id: undefined }));
put('config/ours-array.json', JSON.stringify({ ...ours, model_type: 'gpt-engine', attention_pattern: ['banded', 'dense'], attention_window: 2 }));
put('config/hf-gpt2.json', JSON.stringify({
  _name_or_path: 'gpt2', activation_function: 'gelu_new', architectures: ['GPT2LMHeadModel'], attn_pdrop: 0.1, bos_token_id: 50256, embd_pdrop: 0.1,
  eos_token_id: 50256, initializer_range: 0.02, layer_norm_epsilon: 1e-5, model_type: 'gpt2', n_ctx: 1024, n_embd: 768, n_head: 12, n_inner: null,
  n_layer: 12, n_positions: 1024, reorder_and_upcast_attn: false, resid_pdrop: 0.1, scale_attn_by_inverse_layer_idx: false, scale_attn_weights: true,
  summary_activation: null, summary_first_dropout: 0.1, summary_proj_to_labels: true, summary_type: 'cls_index', summary_use_proj: true,
  task_specific_params: { 'text-generation': { do_sample: true, max_length: 50 } }, transformers_version: '4.40.0', use_cache: true, vocab_size: 50257,
}, null, 2));
put('config/hf-minimal.json', JSON.stringify({ n_layer: 1, n_head: 1, n_embd: 4, n_positions: 8, vocab_size: 10 }));

// --- state.json ------------------------------------------------------------
put('state/full.json', JSON.stringify({
  version: 1, step: 20, total_steps: 40, tokens_seen: 40960, seed: 1337,
  rng: { sampler: { state: '12345678901234567890', inc: '1442695040888963407' } },
  sampler: { draws: 160, batch: 8, seq: 64 }, schedule: { lr: 0.0006, warmup: 4, total: 40, min_ratio: 0.1 },
  data: { dir: '/tmp/data', tokenizer: 'byte', train_tokens: 1000, val_tokens: 50 },
  trainer: { preset: 'tiny', settings: { steps: 40, batch: 8, seq: 64, lr: 0.0006, keep: 3 }, val_loss: 3.2, elapsed_s: 12.5 },
}, null, 2));
put('state/minimal.json', JSON.stringify({ version: 1, step: 0 }));

// --- token file headers ----------------------------------------------------
function tokenHeader(tokId, vocab, bpt, count) {
  const b = Buffer.alloc(64);
  b.write('GPTETOK1', 0, 'latin1');
  b.writeUInt32LE(1, 8);
  b.writeUInt32LE(tokId, 12);
  b.writeUInt32LE(vocab, 16);
  b.writeUInt32LE(bpt, 20);
  b.writeBigUInt64LE(BigInt(count), 24);
  return b;
}
put('token/gpt2.bin', Buffer.concat([tokenHeader(1, 50257, 2, 4), Buffer.from(Uint16Array.from([464, 3797, 50256, 11]).buffer)]));
put('token/byte.bin', Buffer.concat([tokenHeader(2, 256, 2, 5), Buffer.from(Uint16Array.from([67, 97, 108, 108, 32]).buffer)]));
put('token/byte-empty.bin', tokenHeader(2, 256, 2, 0));
