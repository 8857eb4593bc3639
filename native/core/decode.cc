// Incremental decoding with a key/value cache (see decode.h for the design).
//
// Why the cache is in host memory on every backend: decode attention is one
// query per sequence and head against at most P cached rows, a few MFLOP per
// token, while the matmuls read every weight once; a simple CPU kernel is
// enough, and the per-layer traffic to another backend is B * 4C floats.
//
// Legend: B sequences, M rows in flight (prompt tokens in prefill, active
// sequences in a step), H heads, D head size, C = H*D, V (Vp) vocabulary.
#include "decode.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "../cpu/decode_kernels.h"
#include "error.h"
#include "threadpool.h"

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

// s[j] = q . k_j over D, with eight partial sums so the compiler can keep
// them in vector registers without reassociating a single sum.
inline float dot(const float* q, const float* k, int D) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int d = 0;
  for (; d + 8 <= D; d += 8)
    for (int u = 0; u < 8; ++u) acc[u] += q[d + u] * k[d + u];
  for (; d < D; ++d) acc[d & 7] += q[d] * k[d];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

inline void axpy(float* out, float a, const float* x, int D) {
  for (int d = 0; d < D; ++d) out[d] += a * x[d];
}

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
  DeviceBuffer x, h, qkv, att, tmp, fc, fcg, mean, rstd, lse, tokens, logits;
  // host staging (used when the backend is not the CPU)
  HostBuffer<float> qkv_host, att_host, logits_host;
  // per-thread attention scores
  HostBuffer<float> scores;
  int scores_stride = 0;
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
  cache_.reset(static_cast<size_t>(total), "the key/value cache");
  int max_slots = 1;
  for (int b = 0; b < batch(); ++b)
    for (int l = 0; l < L_; ++l) max_slots = std::max(max_slots, slots(b, l));
  s_->scores_stride = (max_slots + 15) / 16 * 16;
}

DecodeState::~DecodeState() = default;

int DecodeState::slots(int b, int l) const {
  const int cap = caps_[static_cast<size_t>(b)];
  return patterns_[static_cast<size_t>(l)] == AttnPattern::Banded ? std::min(cap, window_) : cap;
}

size_t DecodeState::scratch_bytes() const {
  const Scratch& s = *s_;
  size_t n = s.qkv_host.bytes() + s.att_host.bytes() + s.logits_host.bytes() + s.scores.bytes();
  for (const DeviceBuffer* d : {&s.x, &s.h, &s.qkv, &s.att, &s.tmp, &s.fc, &s.fcg, &s.mean, &s.rstd, &s.lse, &s.tokens,
                                &s.logits})
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
  s.tokens.reset(be_, R * sizeof(int32_t), "decode tokens");
  // Logits are only ever needed for one row per sequence.
  const size_t lrows = std::min(R, caps_.size());
  s.logits.reset(be_, lrows * static_cast<size_t>(Vp_) * F, "decode logits");
  if (!host_backend_) {
    s.qkv_host.reset(R * 3 * C, "decode staging");
    s.att_host.reset(R * C, "decode staging");
    s.logits_host.reset(lrows * static_cast<size_t>(Vp_), "decode staging");
  }
  s.rows = rows;
}

void DecodeState::check_abort(const volatile int32_t* abort) const {
  if (abort && *abort != 0) throw GptError(ErrorCode::Aborted, "Generation was aborted");
}

void DecodeState::store_kv(int b, int l, int pos, const float* k, const float* v) {
  const int P = slots(b, l);
  const int slot = patterns_[static_cast<size_t>(l)] == AttnPattern::Banded ? pos % window_ : pos;
  float* kc = k_cache(b, l);
  float* vc = v_cache(b, l);
  for (int h = 0; h < H_; ++h) {
    std::memcpy(kc + (int64_t(h) * P + slot) * D_, k + int64_t(h) * D_, sizeof(float) * D_);
    std::memcpy(vc + (int64_t(h) * P + slot) * D_, v + int64_t(h) * D_, sizeof(float) * D_);
  }
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

  be_.to_device(s.tokens.p, tokens, sizeof(int32_t) * static_cast<size_t>(M));
  // Every prompt starts at position 0: the backend's embedding (t = row % T)
  // applies per sequence.
  for (int b = 0; b < B; ++b)
    be_.embedding_forward(s.x.f() + int64_t(row0[b]) * C, s.tokens.i() + row0[b], w.wte, w.wpe, 1, lengths[b], C);

  for (int l = 0; l < L_; ++l) {
    check_abort(abort);
    const LayerWeights& W = w.layers[static_cast<size_t>(l)];
    be_.layernorm_forward(s.h.f(), s.mean.f(), s.rstd.f(), s.x.f(), W.ln_1_w, W.ln_1_b, M, C, eps);
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
    const float* qkv_h = s.qkv.f();
    if (!host_backend_) {
      be_.to_host(s.qkv_host.data(), s.qkv.f(), sizeof(float) * static_cast<size_t>(M) * 3 * C);
      qkv_h = s.qkv_host.data();
    }
    for (int b = 0; b < B; ++b) {
      const int T = lengths[b];
      for (int t = std::max(0, T - slots(b, l)); t < T; ++t) {
        const float* row = qkv_h + int64_t(row0[b] + t) * 3 * C;
        store_kv(b, l, t, row + C, row + 2 * C);
      }
    }
    be_.matmul_forward(s.tmp.f(), s.att.f(), W.attn_proj_w, W.attn_proj_b, M, C, C, p);
    be_.add(s.x.f(), s.tmp.f(), s.x.f(), int64_t(M) * C);
    be_.layernorm_forward(s.h.f(), s.mean.f(), s.rstd.f(), s.x.f(), W.ln_2_w, W.ln_2_b, M, C, eps);
    be_.matmul_forward(s.fc.f(), s.h.f(), W.c_fc_w, W.c_fc_b, M, C, 4 * C, p);
    be_.gelu_forward(s.fcg.f(), s.fc.f(), int64_t(M) * 4 * C);
    be_.matmul_forward(s.tmp.f(), s.fcg.f(), W.mlp_proj_w, W.mlp_proj_b, M, 4 * C, C, p);
    be_.add(s.x.f(), s.tmp.f(), s.x.f(), int64_t(M) * C);
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
  // One row of scores per pool thread (the pool may have been resized).
  s.scores.ensure(static_cast<size_t>(s.scores_stride) * ThreadPool::global().size(), "attention scores");

  // x[r] = wte[token] + wpe[position]: each sequence at its own position.
  for (int r = 0; r < M; ++r) {
    const int b = seqs[static_cast<size_t>(r)];
    be_.copy(s.h.f() + int64_t(r) * C, w.wte + int64_t(tokens[b]) * C, sizeof(float) * C);
    be_.copy(s.tmp.f() + int64_t(r) * C, w.wpe + int64_t(pos_[static_cast<size_t>(b)]) * C, sizeof(float) * C);
  }
  be_.add(s.x.f(), s.h.f(), s.tmp.f(), int64_t(M) * C);

  for (int l = 0; l < L_; ++l) {
    if (l > 0) check_abort(abort);
    const LayerWeights& W = w.layers[static_cast<size_t>(l)];
    const Bf16Weights::Layer* BW = bf16_ ? &bf16_->layers[static_cast<size_t>(l)] : nullptr;
    be_.layernorm_forward(s.h.f(), s.mean.f(), s.rstd.f(), s.x.f(), W.ln_1_w, W.ln_1_b, M, C, eps);
    linear(s.qkv.f(), s.h.f(), W.c_attn_w, BW ? BW->c_attn : nullptr, W.c_attn_b, M, C, 3 * C, p);
    const float* qkv_h = s.qkv.f();
    float* att_h = s.att.f();
    if (!host_backend_) {
      be_.to_host(s.qkv_host.data(), s.qkv.f(), sizeof(float) * static_cast<size_t>(M) * 3 * C);
      qkv_h = s.qkv_host.data();
      att_h = s.att_host.data();
    }
    for (int r = 0; r < M; ++r) {
      const int b = seqs[static_cast<size_t>(r)];
      const float* row = qkv_h + int64_t(r) * 3 * C;
      store_kv(b, l, pos_[static_cast<size_t>(b)], row + C, row + 2 * C);
    }
    const bool banded = patterns_[static_cast<size_t>(l)] == AttnPattern::Banded;
    ThreadPool::global().parallel_for(int64_t(M) * H, [&](int64_t task, int thread) {
      const int r = static_cast<int>(task / H), h = static_cast<int>(task % H);
      const int b = seqs[static_cast<size_t>(r)];
      const int pos = pos_[static_cast<size_t>(b)];
      const int P = slots(b, l);
      const int lo = banded ? std::max(0, pos - window_ + 1) : 0;
      const float* q = qkv_h + int64_t(r) * 3 * C + int64_t(h) * D;
      const float* kc = k_cache(b, l) + int64_t(h) * P * D;
      const float* vc = v_cache(b, l) + int64_t(h) * P * D;
      float* sc = s.scores.data() + int64_t(thread) * s.scores_stride;
      float* out = att_h + int64_t(r) * C + int64_t(h) * D;
      // scores in position order, then the softmax, then the weighted sum.
      float mx = -std::numeric_limits<float>::infinity();
      for (int j = lo; j <= pos; ++j) {
        const int slot = banded ? j % window_ : j;
        const float v = dot(q, kc + int64_t(slot) * D, D) * scale;
        sc[j - lo] = v;
        mx = std::max(mx, v);
      }
      float sum = 0.0f;
      for (int j = lo; j <= pos; ++j) {
        const float e = std::exp(sc[j - lo] - mx);
        sc[j - lo] = e;
        sum += e;
      }
      std::fill(out, out + D, 0.0f);
      for (int j = lo; j <= pos; ++j) {
        const int slot = banded ? j % window_ : j;
        axpy(out, sc[j - lo], vc + int64_t(slot) * D, D);
      }
      const float inv = 1.0f / sum;
      for (int d = 0; d < D; ++d) out[d] *= inv;
    });
    if (!host_backend_) be_.to_device(s.att.f(), s.att_host.data(), sizeof(float) * static_cast<size_t>(M) * C);
    linear(s.tmp.f(), s.att.f(), W.attn_proj_w, BW ? BW->attn_proj : nullptr, W.attn_proj_b, M, C, C, p);
    be_.add(s.x.f(), s.tmp.f(), s.x.f(), int64_t(M) * C);
    be_.layernorm_forward(s.h.f(), s.mean.f(), s.rstd.f(), s.x.f(), W.ln_2_w, W.ln_2_b, M, C, eps);
    linear(s.fc.f(), s.h.f(), W.c_fc_w, BW ? BW->c_fc : nullptr, W.c_fc_b, M, C, 4 * C, p);
    be_.gelu_forward(s.fcg.f(), s.fc.f(), int64_t(M) * 4 * C);
    linear(s.tmp.f(), s.fcg.f(), W.mlp_proj_w, BW ? BW->mlp_proj : nullptr, W.mlp_proj_b, M, 4 * C, C, p);
    be_.add(s.x.f(), s.tmp.f(), s.x.f(), int64_t(M) * C);
  }
  be_.layernorm_forward(s.h.f(), s.mean.f(), s.rstd.f(), s.x.f(), w.ln_f_w, w.ln_f_b, M, C, eps);
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
