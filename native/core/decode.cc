// Incremental decoding with a key/value cache (see decode.h for the design).
//
// The cache and every activation live in backend memory; the host builds
// the per-row records (KvRow: cache offsets, slots, position, first position
// attended) for all layers of a call and uploads them with the tokens and
// positions in one go, so a GPU step has no per-layer host round trip.
//
// Legend: B sequences, M rows in flight (prompt tokens in prefill, chunk
// tokens in extend, active sequences in a step), H heads, D head size,
// C = H*D, V (Vp) vocabulary.
#include "decode.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "error.h"

namespace gpt {

namespace {

// Backend memory owned by its holder, freed with the backend that made it.
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

// The backend's copies of the weights the decode ops read
// (Backend::decode_weight_bytes; the CPU keeps bf16 copies for a bf16
// model), made for one version of the parameters and kept on the model
// (Model::decode_weights), so every decode session of a model shares them.
// The object writes its storage once, when it is made; readers get const
// views. A backend that keeps no copies gets null views and no storage.
class DecodeWeights {
 public:
  explicit DecodeWeights(Model& model);
  uint64_t version() const { return version_; }
  const PackedLayer& layer(int l) const { return layers_[static_cast<size_t>(l)]; }
  const void* head() const { return head_; }

 private:
  uint64_t version_;
  DeviceBuffer storage_;  // every copy, each at a 64-byte boundary
  std::vector<PackedLayer> layers_;
  const void* head_ = nullptr;
};

DecodeWeights::DecodeWeights(Model& model) : version_(model.params_version()) {
  Backend& be = model.backend();
  const ModelConfig& c = model.config();
  const Weights& w = model.weights();
  const Precision p = model.precision();
  const int C = c.n_embd;
  auto bytes = [&](DecodeWeight kind, int K, int N) { return (be.decode_weight_bytes(kind, K, N, p) + 63) / 64 * 64; };
  const size_t attn = bytes(DecodeWeight::Linear, C, 3 * C), proj = bytes(DecodeWeight::Linear, C, C),
               fc = bytes(DecodeWeight::Linear, C, 4 * C), mlp = bytes(DecodeWeight::Linear, 4 * C, C),
               head = bytes(DecodeWeight::Head, C, c.padded_vocab);
  const size_t total = (attn + proj + fc + mlp) * static_cast<size_t>(c.n_layer) + head;
  if (total > 0) storage_.reset(be, total, "the decode weights");
  size_t off = 0;
  // The copy of w (K, N as decode_weight_bytes) at the next offset; null if none.
  auto pack = [&](size_t size, DecodeWeight kind, const float* src, int K, int N) -> const void* {
    if (size == 0) return nullptr;
    char* dst = static_cast<char*>(storage_.p) + off;
    off += size;
    be.decode_weight_pack(dst, kind, src, K, N, p);
    return dst;
  };
  for (const LayerWeights& W : w.layers) {
    PackedLayer ly;
    ly.c_attn = pack(attn, DecodeWeight::Linear, W.c_attn_w, C, 3 * C);
    ly.attn_proj = pack(proj, DecodeWeight::Linear, W.attn_proj_w, C, C);
    ly.c_fc = pack(fc, DecodeWeight::Linear, W.c_fc_w, C, 4 * C);
    ly.mlp_proj = pack(mlp, DecodeWeight::Linear, W.mlp_proj_w, 4 * C, C);
    layers_.push_back(ly);
  }
  head_ = pack(head, DecodeWeight::Head, w.wte, C, c.padded_vocab);
}

struct DecodeState::Scratch {
  int rows = 0;  // capacity in rows of the buffers below
  DeviceBuffer x, h, qkv, att, tmp, fc, fcg, mean, rstd, lse, logits;
  DeviceBuffer ints;  // [2 * rows] int32: tokens, then positions
  DeviceBuffer kv;    // [L * rows] KvRow
};

DecodeState::DecodeState(std::shared_ptr<Model> model, const std::vector<int>& capacities, int extend_max)
    : model_(std::move(model)), be_(model_->backend()), extend_max_(extend_max), caps_(capacities), s_(new Scratch) {
  const ModelConfig& c = model_->config();
  L_ = c.n_layer;
  H_ = c.n_head;
  D_ = c.head_dim();
  C_ = c.n_embd;
  V_ = c.vocab_size;
  Vp_ = c.padded_vocab;
  window_ = c.attention_window;
  patterns_ = c.patterns;
  GPT_CHECK_ARG(extend_max_ >= 1 && extend_max_ <= c.n_positions,
                "Expected extend_max between 1 and n_positions = " + std::to_string(c.n_positions) +
                    " but received " + std::to_string(extend_max_));
  check_capacities(caps_);
  for (int l = 0; l < L_; ++l)
    GPT_CHECK_ARG(patterns_[static_cast<size_t>(l)] == AttnPattern::Dense || window_ >= 1,
                  "banded layer without an attention window");
  pos_.assign(caps_.size(), 0);
  kv_dtype_ = be_.kv_cache_dtype(model_->precision());
  const int64_t total = layout();
  cache_bytes_ = static_cast<size_t>(total) * dtype_size(kv_dtype_);
  cache_ = be_.alloc(cache_bytes_, "the key/value cache");
  max_keys_.assign(static_cast<size_t>(L_), 1);
}

void DecodeState::check_capacities(const std::vector<int>& caps) const {
  const int N = model_->config().n_positions;
  GPT_CHECK_ARG(!caps.empty() && caps.size() <= (1u << 16), "Expected between 1 and 65536 sequences to decode");
  for (size_t b = 0; b < caps.size(); ++b)
    GPT_CHECK_ARG(caps[b] >= 1 && caps[b] <= N, "Expected a capacity between 1 and n_positions = " +
                                                     std::to_string(N) + " for sequence " + std::to_string(b) +
                                                     " but received " + std::to_string(caps[b]));
}

int64_t DecodeState::layout() {
  off_.resize(caps_.size() * static_cast<size_t>(L_));
  int64_t total = 0;
  for (int b = 0; b < batch(); ++b)
    for (int l = 0; l < L_; ++l) {
      off_[static_cast<size_t>(b) * L_ + l] = total;
      total += 2 * int64_t(H_) * slots(b, l) * D_;
    }
  return total;
}

void DecodeState::resize(const std::vector<int>& capacities) {
  check_capacities(capacities);
  const std::vector<int> old_caps = caps_, old_pos = pos_;
  const std::vector<int64_t> old_off = off_;
  caps_ = capacities;
  const int64_t total = layout();
  const size_t esize = dtype_size(kv_dtype_);
  const size_t bytes = static_cast<size_t>(total) * esize;
  char* fresh = nullptr;
  try {
    fresh = static_cast<char*>(be_.alloc(bytes, "the key/value cache"));
  } catch (...) {
    // Nothing changed: the old cache and layout stay.
    caps_ = old_caps;
    layout();
    throw;
  }
  const int kept = std::min(batch(), static_cast<int>(old_caps.size()));
  pos_.assign(caps_.size(), 0);
  for (int b = 0; b < kept; ++b) {
    if (caps_[static_cast<size_t>(b)] != old_caps[static_cast<size_t>(b)] || old_pos[static_cast<size_t>(b)] == 0)
      continue;
    // Same capacity, so the same entries per layer: K and V of (b, l) are
    // one block of 2 H P D elements, copied whole.
    const char* old = static_cast<const char*>(cache_);
    for (int l = 0; l < L_; ++l)
      be_.copy(fresh + k_off(b, l) * esize, old + old_off[static_cast<size_t>(b) * L_ + l] * esize,
               esize * 2 * static_cast<size_t>(H_) * slots(b, l) * D_);
    pos_[static_cast<size_t>(b)] = old_pos[static_cast<size_t>(b)];
  }
  if (cache_) be_.free(cache_);
  cache_ = fresh;
  cache_bytes_ = bytes;
  // The logits buffer holds one row per sequence: make the scratch again at
  // the next call.
  s_.reset(new Scratch);
}

DecodeState::~DecodeState() {
  s_.reset();
  if (cache_) be_.free(cache_);
}

int DecodeState::slots(int b, int l) const {
  const int cap = caps_[static_cast<size_t>(b)];
  // A banded ring holds the band of the last row of an extend plus the
  // extend_max - 1 positions before it, so storing a whole chunk never
  // overwrites a key an earlier row of the chunk attends.
  return patterns_[static_cast<size_t>(l)] == AttnPattern::Banded ? std::min(cap, window_ + extend_max_ - 1) : cap;
}

size_t DecodeState::scratch_bytes() const {
  const Scratch& s = *s_;
  size_t n = 0;
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
  // A banded layer's ring (P = min(capacity, window + extend_max - 1)) holds
  // the last P positions, which cover the band: position j is in slot j % P
  // until position j + P is stored, and the band of a row at pos never
  // reaches back P positions.
  r.first = patterns_[static_cast<size_t>(l)] == AttnPattern::Banded ? std::max(0, pos - window_ + 1) : 0;
  return r;
}

void DecodeState::upload_rows() {
  Scratch& s = *s_;
  be_.to_device(s.ints.p, ints_host_.data(), sizeof(int32_t) * ints_host_.size());
  be_.to_device(s.kv.p, rows_host_.data(), sizeof(KvRow) * rows_host_.size());
}

BlockActs DecodeState::block_acts() const {
  const Scratch& s = *s_;
  BlockActs a;
  a.x = a.res1 = a.res2 = s.x.f();
  a.ln1 = a.ln2 = a.ln_next = s.h.f();
  a.ln2_mean = a.ln_next_mean = s.mean.f();
  a.ln2_rstd = a.ln_next_rstd = s.rstd.f();
  a.qkv = s.qkv.f();
  a.att = s.att.f();
  a.proj = a.mlp = s.tmp.f();
  a.fch = s.fc.f();
  a.fchg = s.fcg.f();
  return a;
}

void DecodeState::run_blocks(int M, bool step, const volatile int32_t* abort,
                             const std::function<void(int l, float* qkv, float* att)>& attend) {
  const Scratch& s = *s_;
  const Weights& w = model_->weights();
  // x[r] = wte[token] + wpe[position]: each row at its own position.
  be_.embedding_at(s.x.f(), s.ints.i(), s.ints.i() + M, w.wte, w.wpe, M, C_);
  // h = ln_1(x) of layer 0 here; every later LayerNorm, ln_f included, is
  // fused with the residual add before it (Model::layer_forward).
  be_.layernorm_forward(s.h.f(), s.mean.f(), s.rstd.f(), s.x.f(), w.layers[0].ln_1_w, w.layers[0].ln_1_b, M, C_,
                        model_->config().layer_norm_epsilon);
  const BlockActs acts = block_acts();
  for (int l = 0; l < L_; ++l) {
    if (l > 0) check_abort(abort);
    model_->layer_forward(
        l, acts, M,
        [&](TensorRef qkv, TensorRef att) { attend(l, qkv.f32("decode qkv"), att.f32("decode attention output")); },
        step ? &weights_->layer(l) : nullptr);
  }
}

int DecodeState::check_prompts(const int32_t* tokens, const int* lengths, bool extend) const {
  int64_t M = 0;
  bool banded = false;
  for (AttnPattern p : patterns_) banded = banded || p == AttnPattern::Banded;
  // A sequence left out (length 0) keeps what it holds; one that holds
  // nothing cannot step until a prefill gives it a prompt (check_step).
  for (int b = 0; b < batch(); ++b) {
    const size_t bi = static_cast<size_t>(b);
    // An extend continues after the tokens held; a prefill starts over.
    const int held = extend ? pos_[bi] : 0;
    GPT_CHECK_ARG(lengths[b] >= 0 && lengths[b] <= caps_[bi] - held,
                  std::string(extend ? "Expected an extension of 0 to " : "Expected a prompt of 0 to ") +
                      std::to_string(caps_[bi] - held) + " tokens for sequence " + std::to_string(b) +
                      (extend ? " (it holds " + std::to_string(held) + " of its capacity of " +
                                    std::to_string(caps_[bi]) + ")"
                              : std::string()) +
                      " but received " + std::to_string(lengths[b]));
    // The rows of an extend attend after the whole chunk is stored: the
    // ring must still hold the band of its first row (or every position).
    const int P = std::min(caps_[bi], window_ + extend_max_ - 1);
    GPT_CHECK_ARG(!extend || !banded || lengths[b] <= extend_max_ || held + lengths[b] <= P,
                  "Expected at most extend_max = " + std::to_string(extend_max_) + " tokens to extend sequence " +
                      std::to_string(b) + " (its banded layers hold " + std::to_string(P) +
                      " positions) but received " + std::to_string(lengths[b]));
    M += lengths[b];
  }
  GPT_CHECK_ARG(M >= 1, std::string(extend ? "Expected tokens for at least one sequence but every length is 0"
                                           : "Expected a prompt for at least one sequence but every length is 0"));
  GPT_CHECK_ARG(M <= (int64_t(1) << 24), "too many tokens in one prefill or extend");
  for (int64_t r = 0; r < M; ++r)
    GPT_CHECK_ARG(tokens[r] >= 0 && tokens[r] < V_, "Expected token ids in [0, " + std::to_string(V_) +
                                                        ") but received " + std::to_string(tokens[r]));
  return static_cast<int>(M);
}

void DecodeState::plan_prompts(const int32_t* tokens, const int* lengths, const std::vector<int>& row0) {
  const int M = row0.back();
  // Row row0[b] + t is token t of prompt b, at position t. Each layer stores
  // the positions its cache keeps (the last P of each prompt); the others
  // are marked pos = -1, so no two rows of a call write the same ring slot.
  ints_host_.resize(2 * static_cast<size_t>(M));
  rows_host_.resize(static_cast<size_t>(L_) * M);
  std::memcpy(ints_host_.data(), tokens, sizeof(int32_t) * static_cast<size_t>(M));
  for (int b = 0; b < batch(); ++b)
    for (int t = 0; t < lengths[b]; ++t) {
      const int r = row0[static_cast<size_t>(b)] + t;
      ints_host_[static_cast<size_t>(M + r)] = t;
      for (int l = 0; l < L_; ++l) {
        KvRow& kr = rows_host_[static_cast<size_t>(l) * M + r];
        kr = kv_row(b, l, t);
        if (t < lengths[b] - kr.slots) kr.pos = -1;
      }
    }
}

void DecodeState::prefill(const int32_t* tokens, const int* lengths, float* logits_out, const volatile int32_t* abort) {
  const int B = batch();
  const int M = check_prompts(tokens, lengths, false);
  check_abort(abort);
  ensure_rows(std::max(M, B));
  sync_weights();
  std::vector<int> row0(static_cast<size_t>(B) + 1, 0);  // first row of each prompt
  std::vector<int> seqs;                                  // the sequences given a prompt
  for (int b = 0; b < B; ++b) {
    row0[static_cast<size_t>(b) + 1] = row0[static_cast<size_t>(b)] + lengths[b];
    if (lengths[b] > 0) {
      seqs.push_back(b);
      // Starts over: a sequence whose prefill is aborted holds nothing.
      pos_[static_cast<size_t>(b)] = 0;
    }
  }
  plan_prompts(tokens, lengths, row0);
  upload_rows();
  const Scratch& s = *s_;
  const KvRow* d_rows = static_cast<const KvRow*>(s.kv.p);
  const int C = C_, D = D_;
  run_blocks(M, false, abort, [&](int l, float* qkv, float* att) {
    // Each prompt attends only to itself: one attention call per sequence
    // on its rows of qkv ([T, 3C] -> strided [1, H, T, D] views). At the
    // model's precision, as the training forward: a prompt goes through the
    // blocks as a forward pass over it would, so its logits are the
    // forward's. (A step's single-query attention computes in fp32 at
    // every precision: it is bound by reading the cache, bf16 on CUDA under
    // BF16, and bf16 products would save nothing there. The CPU's
    // attention and cache are fp32 throughout.)
    for (int b : seqs) {
      const int T = lengths[b];
      float* q0 = qkv + int64_t(row0[static_cast<size_t>(b)]) * 3 * C;
      const int64_t sq = int64_t(T) * 3 * C;
      AttnTensor q{q0, sq, D, 3 * C}, k{q0 + C, sq, D, 3 * C}, v{q0 + 2 * C, sq, D, 3 * C};
      AttnTensor o{att + int64_t(row0[static_cast<size_t>(b)]) * C, int64_t(T) * C, D, C};
      be_.attention_forward(model_->attn_shape(l, 1, T), o, s.lse.f(), q, k, v);
    }
    // Keys and values of the positions the cache keeps.
    be_.kv_store(cache(), d_rows + int64_t(l) * M, M, qkv + C, qkv + 2 * C, 3 * C, H_, D);
  });
  check_abort(abort);
  std::vector<int> last;
  for (int b : seqs) last.push_back(row0[static_cast<size_t>(b) + 1] - 1);
  for (int b : seqs) pos_[static_cast<size_t>(b)] = lengths[b];
  emit_last(seqs, last, logits_out);
  prefilled_ = true;
}

void DecodeState::emit_last(const std::vector<int>& seqs, const std::vector<int>& last, float* logits_out) {
  const Scratch& s = *s_;
  // Only the last row of each sequence needs logits: gather those rows of
  // ln_f's output (row r: sequence seqs[r]).
  for (size_t r = 0; r < seqs.size(); ++r)
    be_.copy(s.tmp.f() + int64_t(r) * C_, s.h.f() + int64_t(last[r]) * C_, sizeof(float) * C_);
  emit_logits(s.tmp.f(), seqs, logits_out);
}

void DecodeState::plan_extend(const int32_t* tokens, const int* lengths, const std::vector<int>& row0) {
  const int M = row0.back();
  // Row row0[b] + t is token t of sequence b's chunk, at position pos + t.
  // Every row stores its key and value (n <= P: no two rows of a sequence
  // share a slot) and attends over first..its own position.
  ints_host_.resize(2 * static_cast<size_t>(M));
  rows_host_.resize(static_cast<size_t>(L_) * M);
  std::memcpy(ints_host_.data(), tokens, sizeof(int32_t) * static_cast<size_t>(M));
  std::fill(max_keys_.begin(), max_keys_.end(), 1);
  for (int b = 0; b < batch(); ++b)
    for (int t = 0; t < lengths[b]; ++t) {
      const int r = row0[static_cast<size_t>(b)] + t;
      const int pos = pos_[static_cast<size_t>(b)] + t;
      ints_host_[static_cast<size_t>(M + r)] = pos;
      for (int l = 0; l < L_; ++l) {
        const KvRow kr = kv_row(b, l, pos);
        rows_host_[static_cast<size_t>(l) * M + r] = kr;
        max_keys_[static_cast<size_t>(l)] = std::max(max_keys_[static_cast<size_t>(l)], kr.pos - kr.first + 1);
      }
    }
}

void DecodeState::extend(const int32_t* tokens, const int* lengths, float* logits_out, const volatile int32_t* abort) {
  const int B = batch();
  const int M = check_prompts(tokens, lengths, true);
  check_abort(abort);
  ensure_rows(std::max(M, B));
  sync_weights();
  std::vector<int> row0(static_cast<size_t>(B) + 1, 0);  // first row of each chunk
  std::vector<int> seqs;                                  // the sequences extended
  for (int b = 0; b < B; ++b) {
    row0[static_cast<size_t>(b) + 1] = row0[static_cast<size_t>(b)] + lengths[b];
    if (lengths[b] > 0) seqs.push_back(b);
  }
  plan_extend(tokens, lengths, row0);
  upload_rows();
  const Scratch& s = *s_;
  const KvRow* d_rows = static_cast<const KvRow*>(s.kv.p);
  const int C = C_, H = H_, D = D_;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  // From here an abort leaves the chunk half stored: the extended sequences
  // then hold nothing.
  try {
    run_blocks(M, false, abort, [&](int l, float* qkv, float* att) {
      // The whole chunk's keys and values first, then every row attends to
      // the positions up to its own (the ring is large enough: slots()).
      const KvRow* rl = d_rows + int64_t(l) * M;
      be_.kv_store(cache(), rl, M, qkv + C, qkv + 2 * C, 3 * C, H, D);
      be_.decode_attention(att, C, qkv, 3 * C, cache(), rl, M, H, D, scale, max_keys_[static_cast<size_t>(l)]);
    });
    check_abort(abort);
  } catch (...) {
    for (int b : seqs) pos_[static_cast<size_t>(b)] = 0;
    throw;
  }
  std::vector<int> last;
  for (int b : seqs) {
    last.push_back(row0[static_cast<size_t>(b) + 1] - 1);
    pos_[static_cast<size_t>(b)] += lengths[b];
  }
  emit_last(seqs, last, logits_out);
  prefilled_ = true;
}

std::vector<int> DecodeState::check_step(const int32_t* tokens, const uint8_t* active) const {
  std::vector<int> seqs;
  for (int b = 0; b < batch(); ++b) {
    if (!active[b]) continue;
    GPT_CHECK_ARG(tokens[b] >= 0 && tokens[b] < V_, "Expected token ids in [0, " + std::to_string(V_) +
                                                        ") but received " + std::to_string(tokens[b]));
    GPT_CHECK_ARG(pos_[static_cast<size_t>(b)] >= 1, "Sequence " + std::to_string(b) +
                                                          " holds no tokens: prefill it before it steps");
    GPT_CHECK_ARG(pos_[static_cast<size_t>(b)] < caps_[static_cast<size_t>(b)],
                  "Sequence " + std::to_string(b) + " is full: it holds its capacity of " +
                      std::to_string(caps_[static_cast<size_t>(b)]) + " tokens");
    seqs.push_back(b);
  }
  return seqs;
}

void DecodeState::plan_step(const int32_t* tokens, const std::vector<int>& seqs) {
  const int M = static_cast<int>(seqs.size());
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
}

void DecodeState::step(const int32_t* tokens, const uint8_t* active, float* logits_out, const volatile int32_t* abort) {
  GPT_CHECK_ARG(prefilled_, "Expected prefill before the first decode step");
  const std::vector<int> seqs = check_step(tokens, active);
  const int M = static_cast<int>(seqs.size());
  if (M == 0) return;
  check_abort(abort);
  ensure_rows(M);
  sync_weights();
  plan_step(tokens, seqs);
  upload_rows();
  const Scratch& s = *s_;
  const KvRow* d_rows = static_cast<const KvRow*>(s.kv.p);
  const int C = C_, H = H_, D = D_;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  run_blocks(M, true, abort, [&](int l, float* qkv, float* att) {
    // The new key and value first: the query attends to its own position.
    const KvRow* rl = d_rows + int64_t(l) * M;
    be_.kv_store(cache(), rl, M, qkv + C, qkv + 2 * C, 3 * C, H, D);
    be_.decode_attention(att, C, qkv, 3 * C, cache(), rl, M, H, D, scale, max_keys_[static_cast<size_t>(l)]);
  });
  for (int r = 0; r < M; ++r) ++pos_[static_cast<size_t>(seqs[static_cast<size_t>(r)])];
  emit_logits(s.h.f(), seqs, logits_out);
}

void DecodeState::sync_weights() {
  std::shared_ptr<const DecodeWeights>& shared = model_->decode_weights();
  if (!shared || shared->version() != model_->params_version()) {
    // Let go of the stale copy before making the new one (one copy at a time,
    // unless another session still holds the old one).
    weights_.reset();
    shared.reset();
    shared = std::make_shared<const DecodeWeights>(*model_);
  }
  weights_ = shared;
}

void DecodeState::emit_logits(const float* x, const std::vector<int>& seqs, float* logits_out) {
  const Scratch& s = *s_;
  const int M = static_cast<int>(seqs.size());
  be_.decode_head(s.logits.f(), x, model_->weights().wte, weights_->head(), M, C_, Vp_, model_->precision());
  for (int r = 0; r < M; ++r)
    be_.to_host(logits_out + int64_t(seqs[static_cast<size_t>(r)]) * V_, s.logits.f() + int64_t(r) * Vp_,
                sizeof(float) * static_cast<size_t>(V_));
}

}  // namespace gpt
