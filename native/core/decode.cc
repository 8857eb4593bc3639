// Incremental decoding with a key/value cache (see decode.h for the design).
//
// The cache and every activation live in backend memory; the host builds
// the per-row records (KvRow: cache offsets, slots, position, first position
// attended) for all layers of a call and uploads them with the tokens and
// positions in one go, so a GPU step has no per-layer host round trip.
//
// Legend: B sequences, M rows in flight (prompt tokens in prefill, active
// sequences in a step), H heads, D head size, C = H*D, V (Vp) vocabulary.
#include "decode.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "../cpu/decode_kernels.h"
#include "error.h"

namespace gpt {

namespace {

// Backend memory owned by the state, freed with the backend that made it.
struct DeviceBuffer {
  Backend* be = nullptr;
  void* p = nullptr;
  size_t bytes = 0;
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { release(); }
  void release() {
    if (p) be->free(p);
    p = nullptr;
    bytes = 0;
  }
  void reset(Backend& b, size_t n, const char* what) {
    release();
    be = &b;
    p = b.alloc(n, what);
    bytes = n;
  }
  float* f() const { return static_cast<float*>(p); }
  int32_t* i() const { return static_cast<int32_t*>(p); }
};

}  // namespace

// The bf16 copy of the weights a decode step reads when the model's
// precision is bf16 on the CPU (decode_kernels.h layouts): half the bytes of
// the fp32 weights, and no rounding per call. Made once per version of the
// parameters and kept on the model (Model::decode_cache), so every decode
// session of a model shares it.
struct Bf16Weights {
  uint64_t version = 0;
  struct Layer {
    const uint32_t *c_attn, *attn_proj, *c_fc, *mlp_proj;
  };
  std::vector<Layer> layers;
  HostBuffer<uint32_t> lin;   // every linear weight, packed
  HostBuffer<uint16_t> head;  // wte [Vp, Kp]
  size_t bytes() const { return lin.bytes() + head.bytes(); }
};

struct DecodeState::Scratch {
  int rows = 0;  // capacity in rows of the buffers below
  // backend memory
  DeviceBuffer x, h, qkv, att, tmp, fc, fcg, mean, rstd, lse, logits;
  DeviceBuffer ints;  // [2 * rows] int32: tokens, then positions
  DeviceBuffer kv;    // [L * rows] KvRow
  // host staging of the logits (used when the backend is not the CPU)
  HostBuffer<float> logits_host;
};

DecodeState::DecodeState(std::shared_ptr<Model> model, const std::vector<int>& capacities)
    : model_(std::move(model)), be_(model_->backend()), caps_(capacities), s_(new Scratch) {
  const ModelConfig& c = model_->config();
  host_backend_ = std::strcmp(be_.name(), "cpu") == 0;
  L_ = c.n_layer;
  H_ = c.n_head;
  D_ = c.head_dim();
  C_ = c.n_embd;
  V_ = c.vocab_size;
  Vp_ = c.padded_vocab;
  window_ = c.attention_window;
  patterns_ = c.patterns;
  GPT_CHECK_ARG(!caps_.empty() && caps_.size() <= (1u << 16), "Expected between 1 and 65536 sequences to decode");
  for (size_t b = 0; b < caps_.size(); ++b)
    GPT_CHECK_ARG(caps_[b] >= 1 && caps_[b] <= c.n_positions,
                  "Expected a capacity between 1 and n_positions = " + std::to_string(c.n_positions) +
                      " for sequence " + std::to_string(b) + " but received " + std::to_string(caps_[b]));
  for (int l = 0; l < L_; ++l)
    GPT_CHECK_ARG(patterns_[static_cast<size_t>(l)] == AttnPattern::Dense || window_ >= 1,
                  "banded layer without an attention window");
  pos_.assign(caps_.size(), 0);
  off_.resize(caps_.size() * static_cast<size_t>(L_));
  int64_t total = 0;
  for (int b = 0; b < batch(); ++b)
    for (int l = 0; l < L_; ++l) {
      off_[static_cast<size_t>(b) * L_ + l] = total;
      total += 2 * int64_t(H_) * slots(b, l) * D_;
    }
  cache_bytes_ = static_cast<size_t>(total) * sizeof(float);
  cache_ = static_cast<float*>(be_.alloc(cache_bytes_, "the key/value cache"));
  max_keys_.assign(static_cast<size_t>(L_), 1);
}

DecodeState::~DecodeState() {
  s_.reset();
  if (cache_) be_.free(cache_);
}

int DecodeState::slots(int b, int l) const {
  const int cap = caps_[static_cast<size_t>(b)];
  return patterns_[static_cast<size_t>(l)] == AttnPattern::Banded ? std::min(cap, window_) : cap;
}

size_t DecodeState::scratch_bytes() const {
  const Scratch& s = *s_;
  size_t n = s.logits_host.bytes();
  for (const DeviceBuffer* d : {&s.x, &s.h, &s.qkv, &s.att, &s.tmp, &s.fc, &s.fcg, &s.mean, &s.rstd, &s.lse, &s.ints,
                                &s.kv, &s.logits})
    n += d->bytes;
  return n;
}

void DecodeState::ensure_rows(int rows) {
  Scratch& s = *s_;
  if (rows <= s.rows) return;
  const size_t R = static_cast<size_t>(rows), C = static_cast<size_t>(C_), F = sizeof(float);
  s.x.reset(be_, R * C * F, "decode activations");
  s.h.reset(be_, R * C * F, "decode activations");
  s.qkv.reset(be_, R * 3 * C * F, "decode activations");
  s.att.reset(be_, R * C * F, "decode activations");
  s.tmp.reset(be_, R * C * F, "decode activations");
  s.fc.reset(be_, R * 4 * C * F, "decode activations");
  s.fcg.reset(be_, R * 4 * C * F, "decode activations");
  s.mean.reset(be_, R * F, "decode activations");
  s.rstd.reset(be_, R * F, "decode activations");
  s.lse.reset(be_, R * static_cast<size_t>(H_) * F, "decode activations");
  s.ints.reset(be_, 2 * R * sizeof(int32_t), "decode tokens and positions");
  s.kv.reset(be_, static_cast<size_t>(L_) * R * sizeof(KvRow), "decode row records");
  // Logits are only ever needed for one row per sequence.
  const size_t lrows = std::min(R, caps_.size());
  s.logits.reset(be_, lrows * static_cast<size_t>(Vp_) * F, "decode logits");
  if (!host_backend_) s.logits_host.reset(lrows * static_cast<size_t>(Vp_), "decode staging");
  s.rows = rows;
}

void DecodeState::check_abort(const volatile int32_t* abort) const {
  if (abort && *abort != 0) throw GptError(ErrorCode::Aborted, "Generation was aborted");
}

KvRow DecodeState::kv_row(int b, int l, int pos) const {
  KvRow r;
  r.k = k_off(b, l);
  r.v = v_off(b, l);
  r.slots = slots(b, l);
  r.pos = pos;
  // A banded layer's ring (P = min(capacity, window)) holds the last P
  // positions, which cover the band: slot j % P is the slot j % window the
  // band needs whenever j < P or P = window.
  r.first = patterns_[static_cast<size_t>(l)] == AttnPattern::Banded ? std::max(0, pos - window_ + 1) : 0;
  return r;
}

void DecodeState::upload_rows() {
  Scratch& s = *s_;
  be_.to_device(s.ints.p, ints_host_.data(), sizeof(int32_t) * ints_host_.size());
  be_.to_device(s.kv.p, rows_host_.data(), sizeof(KvRow) * rows_host_.size());
}

void DecodeState::prefill(const int32_t* tokens, const int* lengths, float* logits_out, const volatile int32_t* abort) {
  GPT_CHECK_ARG(!prefilled_, "This decode state was already prefilled");
  const int B = batch();
  int64_t M64 = 0;
  for (int b = 0; b < B; ++b) {
    GPT_CHECK_ARG(lengths[b] >= 1 && lengths[b] <= caps_[static_cast<size_t>(b)],
                  "Expected a prompt of 1 to " + std::to_string(caps_[static_cast<size_t>(b)]) + " tokens for sequence " +
                      std::to_string(b) + " but received " + std::to_string(lengths[b]));
    M64 += lengths[b];
  }
  GPT_CHECK_ARG(M64 <= (int64_t(1) << 24), "too many prompt tokens in one prefill");
  const int M = static_cast<int>(M64);
  for (int r = 0; r < M; ++r)
    GPT_CHECK_ARG(tokens[r] >= 0 && tokens[r] < V_, "Expected token ids in [0, " + std::to_string(V_) +
                                                        ") but received " + std::to_string(tokens[r]));
  check_abort(abort);
  ensure_rows(std::max(M, B));
  Scratch& s = *s_;
  const Weights& w = model_->weights();
  const Precision p = model_->precision();
  const float eps = model_->config().layer_norm_epsilon;
  const int C = C_, H = H_, D = D_;
  std::vector<int> row0(static_cast<size_t>(B) + 1, 0);
  for (int b = 0; b < B; ++b) row0[static_cast<size_t>(b) + 1] = row0[static_cast<size_t>(b)] + lengths[b];

  // Row row0[b] + t is token t of prompt b, at position t. Each layer stores
  // the positions its cache keeps (the last P of each prompt); the others
  // are marked pos = -1, so no two rows of a call write the same ring slot.
  ints_host_.resize(2 * static_cast<size_t>(M));
  rows_host_.resize(static_cast<size_t>(L_) * M);
  std::memcpy(ints_host_.data(), tokens, sizeof(int32_t) * static_cast<size_t>(M));
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < lengths[b]; ++t) {
      const int r = row0[static_cast<size_t>(b)] + t;
      ints_host_[static_cast<size_t>(M + r)] = t;
      for (int l = 0; l < L_; ++l) {
        KvRow& kr = rows_host_[static_cast<size_t>(l) * M + r];
        kr = kv_row(b, l, t);
        if (t < lengths[b] - kr.slots) kr.pos = -1;
      }
    }
  upload_rows();
  const int32_t* d_tokens = s.ints.i();
  const int32_t* d_positions = s.ints.i() + M;
  const KvRow* d_rows = static_cast<const KvRow*>(s.kv.p);
  be_.embedding_at(s.x.f(), d_tokens, d_positions, w.wte, w.wpe, M, C);

  // h = ln_1(x) of layer 0 here; every later LayerNorm is fused with the
  // residual add before it (as the training forward pass does).
  be_.layernorm_forward(s.h.f(), s.mean.f(), s.rstd.f(), s.x.f(), w.layers[0].ln_1_w, w.layers[0].ln_1_b, M, C, eps);
  for (int l = 0; l < L_; ++l) {
    check_abort(abort);
    const LayerWeights& W = w.layers[static_cast<size_t>(l)];
    be_.matmul_forward(s.qkv.f(), s.h.f(), W.c_attn_w, W.c_attn_b, M, C, 3 * C, p);
    // Each prompt attends only to itself: one attention call per sequence on
    // its rows of qkv ([T, 3C] -> strided [1, H, T, D] views).
    for (int b = 0; b < B; ++b) {
      const int T = lengths[b];
      float* qkv = s.qkv.f() + int64_t(row0[b]) * 3 * C;
      AttnShape sh;
      sh.batch = 1;
      sh.heads = H;
      sh.seq = T;
      sh.head_dim = D;
      sh.pattern = patterns_[static_cast<size_t>(l)];
      sh.window = window_;
      sh.scale = 1.0f / std::sqrt(static_cast<float>(D));
      const int64_t sq = int64_t(T) * 3 * C;
      AttnTensor q{qkv, sq, D, 3 * C}, k{qkv + C, sq, D, 3 * C}, v{qkv + 2 * C, sq, D, 3 * C};
      AttnTensor o{s.att.f() + int64_t(row0[b]) * C, int64_t(T) * C, D, C};
      be_.attention_forward(sh, o, s.lse.f(), q, k, v);
    }
    // Keys and values of the positions the cache keeps.
    be_.kv_store(cache_, d_rows + int64_t(l) * M, M, s.qkv.f() + C, s.qkv.f() + 2 * C, 3 * C, H, D);
    be_.matmul_forward(s.tmp.f(), s.att.f(), W.attn_proj_w, W.attn_proj_b, M, C, C, p);
    be_.residual_layernorm_forward(s.x.f(), s.h.f(), s.mean.f(), s.rstd.f(), s.x.f(), s.tmp.f(), W.ln_2_w, W.ln_2_b, M,
                                   C, eps);
    be_.matmul_forward_gelu(s.fc.f(), s.fcg.f(), s.h.f(), W.c_fc_w, W.c_fc_b, M, C, 4 * C, p);
    be_.matmul_forward(s.tmp.f(), s.fcg.f(), W.mlp_proj_w, W.mlp_proj_b, M, 4 * C, C, p);
    if (l + 1 < L_) {
      const LayerWeights& Wn = w.layers[static_cast<size_t>(l) + 1];
      be_.residual_layernorm_forward(s.x.f(), s.h.f(), s.mean.f(), s.rstd.f(), s.x.f(), s.tmp.f(), Wn.ln_1_w,
                                     Wn.ln_1_b, M, C, eps);
    } else {
      // ln_f runs on the last row of each prompt only (below).
      be_.add(s.x.f(), s.tmp.f(), s.x.f(), int64_t(M) * C);
    }
  }
  check_abort(abort);
  // Only the last position of each prompt needs logits: gather those rows.
  for (int b = 0; b < B; ++b)
    be_.copy(s.h.f() + int64_t(b) * C, s.x.f() + int64_t(row0[b] + lengths[b] - 1) * C, sizeof(float) * C);
  be_.layernorm_forward(s.tmp.f(), s.mean.f(), s.rstd.f(), s.h.f(), w.ln_f_w, w.ln_f_b, B, C, eps);
  sync_bf16();
  head(s.logits.f(), s.tmp.f(), w.wte, B, p);
  std::vector<int> seqs(static_cast<size_t>(B));
  for (int b = 0; b < B; ++b) {
    seqs[static_cast<size_t>(b)] = b;
    pos_[static_cast<size_t>(b)] = lengths[b];
  }
  emit_logits(B, seqs, logits_out);
  prefilled_ = true;
}

void DecodeState::step(const int32_t* tokens, const uint8_t* active, float* logits_out, const volatile int32_t* abort) {
  GPT_CHECK_ARG(prefilled_, "Expected prefill before the first decode step");
  const int B = batch();
  std::vector<int> seqs;
  for (int b = 0; b < B; ++b) {
    if (!active[b]) continue;
    GPT_CHECK_ARG(tokens[b] >= 0 && tokens[b] < V_, "Expected token ids in [0, " + std::to_string(V_) +
                                                        ") but received " + std::to_string(tokens[b]));
    GPT_CHECK_ARG(pos_[static_cast<size_t>(b)] < caps_[static_cast<size_t>(b)],
                  "Sequence " + std::to_string(b) + " is full: it holds its capacity of " +
                      std::to_string(caps_[static_cast<size_t>(b)]) + " tokens");
    seqs.push_back(b);
  }
  const int M = static_cast<int>(seqs.size());
  if (M == 0) return;
  check_abort(abort);
  ensure_rows(M);
  sync_bf16();
  Scratch& s = *s_;
  const Weights& w = model_->weights();
  const Precision p = model_->precision();
  const float eps = model_->config().layer_norm_epsilon;
  const int C = C_, H = H_, D = D_;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  // Row r is sequence seqs[r] at its next position, in every layer.
  ints_host_.resize(2 * static_cast<size_t>(M));
  rows_host_.resize(static_cast<size_t>(L_) * M);
  std::fill(max_keys_.begin(), max_keys_.end(), 1);
  for (int r = 0; r < M; ++r) {
    const int b = seqs[static_cast<size_t>(r)];
    const int pos = pos_[static_cast<size_t>(b)];
    ints_host_[static_cast<size_t>(r)] = tokens[b];
    ints_host_[static_cast<size_t>(M + r)] = pos;
    for (int l = 0; l < L_; ++l) {
      const KvRow kr = kv_row(b, l, pos);
      rows_host_[static_cast<size_t>(l) * M + r] = kr;
      max_keys_[static_cast<size_t>(l)] = std::max(max_keys_[static_cast<size_t>(l)], kr.pos - kr.first + 1);
    }
  }
  upload_rows();
  const KvRow* d_rows = static_cast<const KvRow*>(s.kv.p);
  // x[r] = wte[token] + wpe[position]: each sequence at its own position.
  be_.embedding_at(s.x.f(), s.ints.i(), s.ints.i() + M, w.wte, w.wpe, M, C);

  // h = ln_1(x) of layer 0 here; every later LayerNorm, ln_f included, is
  // fused with the residual add before it.
  be_.layernorm_forward(s.h.f(), s.mean.f(), s.rstd.f(), s.x.f(), w.layers[0].ln_1_w, w.layers[0].ln_1_b, M, C, eps);
  for (int l = 0; l < L_; ++l) {
    if (l > 0) check_abort(abort);
    const LayerWeights& W = w.layers[static_cast<size_t>(l)];
    const Bf16Weights::Layer* BW = bf16_ ? &bf16_->layers[static_cast<size_t>(l)] : nullptr;
    linear(s.qkv.f(), s.h.f(), W.c_attn_w, BW ? BW->c_attn : nullptr, W.c_attn_b, M, C, 3 * C, p);
    // The new key and value first: the query attends to its own position.
    const KvRow* rl = d_rows + int64_t(l) * M;
    be_.kv_store(cache_, rl, M, s.qkv.f() + C, s.qkv.f() + 2 * C, 3 * C, H, D);
    be_.decode_attention(s.att.f(), C, s.qkv.f(), 3 * C, cache_, rl, M, H, D, scale, max_keys_[static_cast<size_t>(l)]);
    linear(s.tmp.f(), s.att.f(), W.attn_proj_w, BW ? BW->attn_proj : nullptr, W.attn_proj_b, M, C, C, p);
    be_.residual_layernorm_forward(s.x.f(), s.h.f(), s.mean.f(), s.rstd.f(), s.x.f(), s.tmp.f(), W.ln_2_w, W.ln_2_b, M,
                                   C, eps);
    linear_gelu(s.fc.f(), s.fcg.f(), s.h.f(), W.c_fc_w, BW ? BW->c_fc : nullptr, W.c_fc_b, M, C, 4 * C, p);
    linear(s.tmp.f(), s.fcg.f(), W.mlp_proj_w, BW ? BW->mlp_proj : nullptr, W.mlp_proj_b, M, 4 * C, C, p);
    const bool last = l + 1 == L_;
    const float* g = last ? w.ln_f_w : w.layers[static_cast<size_t>(l) + 1].ln_1_w;
    const float* bt = last ? w.ln_f_b : w.layers[static_cast<size_t>(l) + 1].ln_1_b;
    be_.residual_layernorm_forward(s.x.f(), s.h.f(), s.mean.f(), s.rstd.f(), s.x.f(), s.tmp.f(), g, bt, M, C, eps);
  }
  head(s.logits.f(), s.h.f(), w.wte, M, p);
  for (int r = 0; r < M; ++r) ++pos_[static_cast<size_t>(seqs[static_cast<size_t>(r)])];
  emit_logits(M, seqs, logits_out);
}

void DecodeState::linear(float* out, const float* inp, const float* w, const uint32_t* wb, const float* bias, int M,
                         int K, int N, Precision p) {
  if (!host_backend_)
    be_.matmul_forward(out, inp, w, bias, M, K, N, p);
  else if (p == Precision::BF16)
    cpu::decode_linear_bf16(out, inp, wb, bias, M, K, N);
  else
    cpu::decode_linear_f32(out, inp, w, bias, M, K, N);
}

// Off the host, one GEMM with a bias + GELU epilogue; on the CPU the decode
// kernel, then the elementwise GELU (what the CPU's fused op would do too).
void DecodeState::linear_gelu(float* pre, float* out, const float* inp, const float* w, const uint32_t* wb,
                              const float* bias, int M, int K, int N, Precision p) {
  if (!host_backend_) {
    be_.matmul_forward_gelu(pre, out, inp, w, bias, M, K, N, p);
    return;
  }
  linear(pre, inp, w, wb, bias, M, K, N, p);
  be_.gelu_forward(out, pre, int64_t(M) * N);
}

void DecodeState::head(float* logits, const float* x, const float* wte, int M, Precision p) {
  if (!host_backend_)
    be_.matmul_nt(logits, x, wte, M, C_, Vp_, p);
  else if (p == Precision::BF16)
    cpu::decode_head_bf16(logits, x, bf16_->head.data(), M, C_, Vp_);
  else
    cpu::decode_head_f32(logits, x, wte, M, C_, Vp_);
}

void DecodeState::sync_bf16() {
  if (!host_backend_ || model_->precision() != Precision::BF16) return;
  std::shared_ptr<void>& slot = model_->decode_cache();
  std::shared_ptr<Bf16Weights> bw = std::static_pointer_cast<Bf16Weights>(slot);
  const uint64_t version = model_->params_version();
  if (!bw || bw->version != version || bw->layers.empty()) {
    if (!bw) bw = std::make_shared<Bf16Weights>();
    bw->layers.clear();
    const Weights& w = model_->weights();
    const int C = C_;
    const size_t sa = cpu::decode_linear_bf16_size(C, 3 * C), sp = cpu::decode_linear_bf16_size(C, C),
                 sf = cpu::decode_linear_bf16_size(C, 4 * C), sm = cpu::decode_linear_bf16_size(4 * C, C);
    const size_t per = sa + sp + sf + sm;
    bw->lin.ensure(per * static_cast<size_t>(L_), "the bf16 decode weights");
    bw->head.ensure(static_cast<size_t>(Vp_) * cpu::decode_head_row(C), "the bf16 decode weights");
    for (int l = 0; l < L_; ++l) {
      const LayerWeights& W = w.layers[static_cast<size_t>(l)];
      uint32_t* base = bw->lin.data() + per * static_cast<size_t>(l);
      Bf16Weights::Layer ly{base, base + sa, base + sa + sp, base + sa + sp + sf};
      cpu::decode_pack_linear_bf16(const_cast<uint32_t*>(ly.c_attn), W.c_attn_w, C, 3 * C);
      cpu::decode_pack_linear_bf16(const_cast<uint32_t*>(ly.attn_proj), W.attn_proj_w, C, C);
      cpu::decode_pack_linear_bf16(const_cast<uint32_t*>(ly.c_fc), W.c_fc_w, C, 4 * C);
      cpu::decode_pack_linear_bf16(const_cast<uint32_t*>(ly.mlp_proj), W.mlp_proj_w, 4 * C, C);
      bw->layers.push_back(ly);
    }
    cpu::decode_pack_head_bf16(bw->head.data(), w.wte, Vp_, C);
    bw->version = version;
    slot = bw;
  }
  bf16_ = bw;
}

void DecodeState::emit_logits(int rows, const std::vector<int>& seqs, float* logits_out) {
  Scratch& s = *s_;
  const float* lg = s.logits.f();
  if (!host_backend_) {
    be_.to_host(s.logits_host.data(), s.logits.f(), sizeof(float) * static_cast<size_t>(rows) * Vp_);
    lg = s.logits_host.data();
  }
  for (int r = 0; r < rows; ++r)
    std::memcpy(logits_out + int64_t(seqs[static_cast<size_t>(r)]) * V_, lg + int64_t(r) * Vp_, sizeof(float) * V_);
}

}  // namespace gpt
