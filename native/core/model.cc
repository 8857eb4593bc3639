// The GPT graph on a Backend: layout, seeded initialization, forward,
// backward, AdamW (see model.h for the contracts).
#include "model.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <sstream>

#include "classifier.h"
#include "clock.h"
#include "doc_mask.h"
#include "error.h"
#include "memory.h"
#include "threadpool.h"

namespace gpt {

namespace {

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Sizes that saturate at kSizeMax instead of wrapping: plan_memory() answers
// for any request, and a saturated size is refused, never allocated.
constexpr int64_t kSizeMax = std::numeric_limits<int64_t>::max();
int64_t sat_add(int64_t a, int64_t b) { return a > kSizeMax - b ? kSizeMax : a + b; }
int64_t sat_mul(int64_t a, int64_t b) { return b != 0 && a > kSizeMax / b ? kSizeMax : a * b; }
// Every tensor and activation starts on a 16-float (64-byte) boundary.
int64_t sat_round16(int64_t n) { return n > kSizeMax - 15 ? kSizeMax : round_up(n, 16); }
int64_t sat_round64(int64_t n) { return n > kSizeMax - 63 ? kSizeMax : round_up(n, 64); }
size_t to_size(int64_t n) { return n == kSizeMax ? SIZE_MAX : static_cast<size_t>(n); }

int padded_vocab(int V) { return static_cast<int>(round_up(V, 64)); }

// The parameter layout of `cfg` (model.h): every tensor in order, and the
// floats of one parameter-sized buffer in *n_floats.
std::vector<TensorInfo> param_layout(const ModelConfig& cfg, int64_t* n_floats) {
  const int64_t C = cfg.n_embd, V = cfg.vocab_size, Vp = cfg.padded_vocab;
  std::vector<TensorInfo> tensors;
  int64_t off = 0;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, bool decay, int64_t stored = -1) {
    TensorInfo t;
    t.name = name;
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    t.shape = std::move(shape);
    t.numel = n;
    t.stored = stored < 0 ? n : stored;
    t.offset = off;
    t.decay = decay;
    off = sat_round16(sat_add(off, t.stored));
    tensors.push_back(std::move(t));
  };
  add("wte.weight", {V, C}, true, Vp * C);
  add("wpe.weight", {cfg.n_positions, C}, true);
  for (int l = 0; l < cfg.n_layer; ++l) {
    const std::string p = "h." + std::to_string(l) + ".";
    add(p + "ln_1.weight", {C}, false);
    add(p + "ln_1.bias", {C}, false);
    add(p + "attn.c_attn.weight", {C, 3 * C}, true);
    add(p + "attn.c_attn.bias", {3 * C}, false);
    add(p + "attn.c_proj.weight", {C, C}, true);
    add(p + "attn.c_proj.bias", {C}, false);
    add(p + "ln_2.weight", {C}, false);
    add(p + "ln_2.bias", {C}, false);
    add(p + "mlp.c_fc.weight", {C, 4 * C}, true);
    add(p + "mlp.c_fc.bias", {4 * C}, false);
    add(p + "mlp.c_proj.weight", {4 * C, C}, true);
    add(p + "mlp.c_proj.bias", {C}, false);
  }
  add("ln_f.weight", {C}, false);
  add("ln_f.bias", {C}, false);
  *n_floats = off;
  return tensors;
}

uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// n normal values with standard deviation `std` into dst. Value i depends only
// on (seed, key, i) (counter-based, Box-Muller on pairs), so the result is the
// same for any thread count.
void fill_normal(float* dst, int64_t n, float std, uint64_t seed, uint64_t key) {
  const uint64_t base = mix64(seed ^ mix64(key + 0x51ed2701ULL));
  const int64_t pairs = (n + 1) / 2;
  const int64_t grain = 1 << 15;
  ThreadPool::global().parallel_for((pairs + grain - 1) / grain, [&](int64_t t, int) {
    int64_t a = t * grain, b = std::min(pairs, a + grain);
    for (int64_t j = a; j < b; ++j) {
      uint64_t x = mix64(base + 2 * static_cast<uint64_t>(j));
      uint64_t y = mix64(base + 2 * static_cast<uint64_t>(j) + 1);
      double u1 = (static_cast<double>(x >> 11) + 1.0) * (1.0 / 9007199254740992.0);  // (0, 1]
      double u2 = static_cast<double>(y >> 11) * (1.0 / 9007199254740992.0);          // [0, 1)
      double r = std::sqrt(-2.0 * std::log(u1));
      double th = 6.283185307179586 * u2;
      dst[2 * j] = static_cast<float>(r * std::cos(th) * std) ;
      if (2 * j + 1 < n) dst[2 * j + 1] = static_cast<float>(r * std::sin(th) * std);
    }
  });
}

// Developer profiling: GPT_ENGINE_PROFILE=1 prints, after every
// forward_backward, the milliseconds spent in each kind of op (the backend
// is synchronized around each op, so only use it to find hot spots).
struct OpProfile {
  bool on = false;
  std::vector<std::pair<const char*, double>> acc;
  void add(const char* name, double ms) {
    for (auto& a : acc)
      if (a.first == name) {
        a.second += ms;
        return;
      }
    acc.emplace_back(name, ms);
  }
};
OpProfile& profile() {
  // Per thread: two models may run at once on different libuv threads.
  thread_local OpProfile p = [] {
    OpProfile q;
    const char* e = std::getenv("GPT_ENGINE_PROFILE");
    q.on = e && e[0] == '1';
    return q;
  }();
  return p;
}
struct OpTimer {
  Backend& be;
  const char* name;
  double t0;
  OpTimer(Backend& b, const char* n) : be(b), name(n), t0(profile().on ? now_ms() : 0) {}
  ~OpTimer() {
    if (profile().on) {
      be.synchronize();
      profile().add(name, now_ms() - t0);
    }
  }
};
#define GPT_OP(name, ...)      \
  do {                         \
    OpTimer op_timer_(be, name); \
    __VA_ARGS__;               \
  } while (0)

}  // namespace

// Activations for up to `cap` rows (M = B*T), one allocation.
struct Model::Acts {
  int64_t cap = 0;
  float* base = nullptr;
  size_t bytes = 0;
  int32_t* tokens = nullptr;   // [M]
  int32_t* targets = nullptr;  // [M]
  int32_t* doc_start = nullptr;  // [M], the document mask's starts (calls with doc_eot >= 0)
  // TensorRef buffers are in the storage type (Backend::activation_dtype:
  // bf16 on CUDA under BF16), the float ones fp32 always.
  struct Layer {
    TensorRef ln1;                     // [M, C]
    float *ln1_mean, *ln1_rstd;        // [M], [M]
    TensorRef qkv;                     // [M, 3C]  (B, T, 3C)
    TensorRef atty;                    // [M, C]   attention output, (B, T, C)
    float* lse;                        // [B, H, T]
    float* res1;                       // [M, C]   residual after attention
    TensorRef ln2;                     // [M, C]
    float *ln2_mean, *ln2_rstd;        // [M], [M]
    TensorRef fch;                     // [M, 4C]  before GELU
    TensorRef fchg;                    // [M, 4C]  after GELU
    float* res2;                       // [M, C]   residual after the MLP
  };
  std::vector<Layer> layers;
  float* enc = nullptr;                                       // [M, C] embeddings
  TensorRef lnf;                                              // [M, C]
  float *lnf_mean = nullptr, *lnf_rstd = nullptr;             // [M], [M]
  // The fused classifier's scratch (classifier.h): one chunk of logits
  // [chunk_rows, Vp] (their gradient in place), never all M rows, and the
  // per-row losses [M] (double).
  float* chunk = nullptr;
  int64_t chunk_rows = 0;
  float* row_loss = nullptr;
  double* row_loss_d() const { return reinterpret_cast<double*>(row_loss); }
  // backward scratch
  float *dres = nullptr, *dln = nullptr, *datty = nullptr;  // [M, C]
  float* dqkv = nullptr;                                    // [M, 3C]
  float* dfch = nullptr;                                    // [M, 4C]

  // Block l's buffers for Model::layer_forward: its own, its input the
  // previous block's res2 (the embeddings for block 0), and the next block's
  // ln1 (ln_f's output after the last block).
  BlockActs block(int l) const {
    const Layer& A = layers[static_cast<size_t>(l)];
    BlockActs b;
    b.x = l == 0 ? enc : layers[static_cast<size_t>(l) - 1].res2;
    b.ln1 = A.ln1;
    b.qkv = A.qkv;
    b.att = A.atty;
    b.proj = b.res1 = A.res1;
    b.ln2 = A.ln2;
    b.ln2_mean = A.ln2_mean;
    b.ln2_rstd = A.ln2_rstd;
    b.fch = A.fch;
    b.fchg = A.fchg;
    b.mlp = b.res2 = A.res2;
    if (static_cast<size_t>(l) + 1 < layers.size()) {
      const Layer& next = layers[static_cast<size_t>(l) + 1];
      b.ln_next = next.ln1;
      b.ln_next_mean = next.ln1_mean;
      b.ln_next_rstd = next.ln1_rstd;
    } else {
      b.ln_next = lnf;
      b.ln_next_mean = lnf_mean;
      b.ln_next_rstd = lnf_rstd;
    }
    return b;
  }

  // Visits every buffer of the block for M rows in layout order, the
  // TensorRef ones in `storage`: slot = carve(bytes). ensure_acts() carves
  // the allocation with it and block_bytes() sums it, so what is reported is
  // what is allocated.
  template <typename Carve>
  void walk(const ModelConfig& c, int64_t M, DType storage, Carve&& carve) {
    const int64_t C = c.n_embd, H = c.n_head, Vp = c.padded_vocab;
    auto f = [&](float*& slot, int64_t width) {
      slot = static_cast<float*>(carve(sat_mul(sat_mul(M, width), sizeof(float))));
    };
    auto t = [&](TensorRef& slot, int64_t width) {
      slot = TensorRef(carve(sat_mul(sat_mul(M, width), static_cast<int64_t>(dtype_size(storage)))), storage);
    };
    layers.resize(static_cast<size_t>(c.n_layer));
    for (auto& l : layers) {
      t(l.ln1, C);
      f(l.ln1_mean, 1);
      f(l.ln1_rstd, 1);
      t(l.qkv, 3 * C);
      t(l.atty, C);
      f(l.lse, H);
      f(l.res1, C);
      t(l.ln2, C);
      f(l.ln2_mean, 1);
      f(l.ln2_rstd, 1);
      t(l.fch, 4 * C);
      t(l.fchg, 4 * C);
      f(l.res2, C);
    }
    f(enc, C);
    t(lnf, C);
    f(lnf_mean, 1);
    f(lnf_rstd, 1);
    chunk = static_cast<float*>(carve(sat_mul(sat_mul(classifier_capacity_rows(M, Vp), Vp), sizeof(float))));
    f(row_loss, 2);  // doubles
    f(dres, C);
    f(dln, C);
    f(datty, C);
    f(dqkv, 3 * C);
    f(dfch, 4 * C);
  }
  // Bytes of the block for M rows, each buffer rounded up to 64 bytes
  // (kSizeMax when that overflows).
  static int64_t block_bytes(const ModelConfig& c, int64_t M, DType storage) {
    Acts probe;
    int64_t total = 0;
    probe.walk(c, M, storage, [&](int64_t bytes) -> void* {
      total = sat_add(total, sat_round64(bytes));
      return nullptr;
    });
    return total;
  }
};

namespace {

// The byte figures of memory() for a parameter buffer of `param_floats`
// floats (and its bf16 copy for the GEMMs when the activations are stored in
// bf16) and an activation block of `act_bytes` for `rows` rows (plus their
// token and target ids).
Model::Memory memory_figures(int64_t param_floats, DType storage, int64_t act_bytes, int64_t rows) {
  Model::Memory m;
  const int64_t buf = sat_mul(param_floats, sizeof(float));
  m.grads = to_size(buf);
  m.params = to_size(storage == DType::BF16 ? sat_add(buf, sat_mul(param_floats, 2)) : buf);
  m.optimizer = to_size(sat_mul(buf, 2));
  m.activations = rows > 0 ? to_size(sat_add(act_bytes, sat_mul(rows, 2 * sizeof(int32_t)))) : 0;
  return m;
}

}  // namespace

Model::Model(const ModelConfig& cfg, std::unique_ptr<Backend> backend, Precision precision, uint64_t seed)
    : cfg_(cfg),
      backend_(std::move(backend)),
      precision_(precision),
      storage_(backend_->activation_dtype(precision)),
      acts_(std::make_unique<Acts>()) {
  GPT_CHECK_ARG(cfg_.n_layer >= 1 && cfg_.n_head >= 1 && cfg_.n_embd >= 1 && cfg_.n_positions >= 1 &&
                    cfg_.vocab_size >= 1,
                "Expected positive model dimensions");
  GPT_CHECK_ARG(cfg_.n_embd % cfg_.n_head == 0, "Expected n_embd to be divisible by n_head");
  GPT_CHECK_ARG(static_cast<int>(cfg_.patterns.size()) == cfg_.n_layer,
                "Expected one attention pattern per layer");
  for (AttnPattern p : cfg_.patterns)
    GPT_CHECK_ARG(p != AttnPattern::Banded || cfg_.attention_window >= 1,
                  "Expected a positive attention_window for banded layers");
  cfg_.padded_vocab = padded_vocab(cfg_.vocab_size);
  layout();
  mv_hi_ = n_floats_;
  if (n_floats_ > kSizeMax / static_cast<int64_t>(4 * sizeof(float)))
    throw GptError(ErrorCode::OutOfMemory, "size overflow allocating the parameters");
  const size_t bytes = static_cast<size_t>(n_floats_) * sizeof(float);
  try {
    params_ = static_cast<float*>(backend_->alloc(bytes, "the parameters"));
    grads_ = static_cast<float*>(backend_->alloc(bytes, "the gradients"));
    m_ = static_cast<float*>(backend_->alloc(bytes, "the AdamW first moments"));
    v_ = static_cast<float*>(backend_->alloc(bytes, "the AdamW second moments"));
    step_scalars_ = static_cast<float*>(
        backend_->alloc(32 + sizeof(StepScalars), "the step's gradient scale, norm, loss and hyperparameters"));
    if (storage_ == DType::BF16)
      weights_bf16_ = static_cast<uint16_t*>(
          backend_->alloc(static_cast<size_t>(n_floats_) * 2, "the bf16 copy of the weights"));
    backend_->zero(params_, bytes);
    backend_->zero(grads_, bytes);
    backend_->zero(m_, bytes);
    backend_->zero(v_, bytes);
    init_weights(seed);
    reserve_scratch(0, 0);
  } catch (...) {
    for (float* p : {params_, grads_, m_, v_, step_scalars_})
      if (p) backend_->free(p);
    if (weights_bf16_) backend_->free(weights_bf16_);
    throw;
  }
}

Model::~Model() {
  if (acts_) {
    if (acts_->base) backend_->free(acts_->base);
    if (acts_->tokens) backend_->free(acts_->tokens);
    if (acts_->targets) backend_->free(acts_->targets);
    if (acts_->doc_start) backend_->free(acts_->doc_start);
  }
  for (float* p : {params_, grads_, m_, v_, acc_, step_scalars_})
    if (p) backend_->free(p);
  if (weights_bf16_) backend_->free(weights_bf16_);
}

void Model::sync_weights_bf16() {
  if (!weights_bf16_ || weights_bf16_version_ == params_version_) return;
  Backend& be = *backend_;
  GPT_OP("convert", be.convert(TensorRef(weights_bf16_, DType::BF16), params_, n_floats_));
  weights_bf16_version_ = params_version_;
}

CTensorRef Model::gemm_weight(const float* w, bool bf16) const {
  if (!bf16 || !weights_bf16_) return w;
  return CTensorRef(weights_bf16_ + (w - params_), DType::BF16);
}

void Model::layout() { tensors_ = param_layout(cfg_, &n_floats_); }

int Model::find_tensor(const std::string& name) const {
  for (size_t i = 0; i < tensors_.size(); ++i)
    if (tensors_[i].name == name) return static_cast<int>(i);
  return -1;
}

void Model::init_weights(uint64_t seed) {
  // Pointers (valid for the model's life: the buffers never move).
  auto at = [&](float* base, int i) { return base + tensors_[static_cast<size_t>(i)].offset; };
  for (auto [buf, w] : {std::pair<float*, Weights*>{params_, &w_}, {grads_, &g_}}) {
    int i = 0;
    w->wte = at(buf, i++);
    w->wpe = at(buf, i++);
    w->layers.resize(static_cast<size_t>(cfg_.n_layer));
    for (auto& L : w->layers) {
      L.ln_1_w = at(buf, i++);
      L.ln_1_b = at(buf, i++);
      L.c_attn_w = at(buf, i++);
      L.c_attn_b = at(buf, i++);
      L.attn_proj_w = at(buf, i++);
      L.attn_proj_b = at(buf, i++);
      L.ln_2_w = at(buf, i++);
      L.ln_2_b = at(buf, i++);
      L.c_fc_w = at(buf, i++);
      L.c_fc_b = at(buf, i++);
      L.mlp_proj_w = at(buf, i++);
      L.mlp_proj_b = at(buf, i++);
    }
    w->ln_f_w = at(buf, i++);
    w->ln_f_b = at(buf, i++);
  }
  // docs/ARCHITECTURE.md "The model": weights N(0, 0.02), biases 0, LayerNorm gains 1; the residual
  // output projections (attn.c_proj, mlp.c_proj) get 0.02 / sqrt(2 L).
  const float std_w = 0.02f;
  const float std_res = static_cast<float>(0.02 / std::sqrt(2.0 * cfg_.n_layer));
  int64_t biggest = 0;
  for (auto& t : tensors_) biggest = std::max(biggest, t.numel);
  HostBuffer<float> host(static_cast<size_t>(biggest), "initializing the weights");
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const TensorInfo& t = tensors_[i];
    const std::string& n = t.name;
    auto ends = [&](const char* s) {
      size_t k = std::strlen(s);
      return n.size() >= k && n.compare(n.size() - k, k, s) == 0;
    };
    if (ends("bias")) continue;  // already zero
    if (ends("ln_1.weight") || ends("ln_2.weight") || ends("ln_f.weight")) {
      for (int64_t j = 0; j < t.numel; ++j) host[static_cast<size_t>(j)] = 1.0f;
    } else {
      float s = (ends("attn.c_proj.weight") || ends("mlp.c_proj.weight")) ? std_res : std_w;
      fill_normal(host.data(), t.numel, s, seed, i);
    }
    backend_->to_device(params_ + t.offset, host.data(), static_cast<size_t>(t.numel) * sizeof(float));
  }
}

void Model::ensure_acts(int B, int T) {
  const int64_t M = int64_t(B) * T;
  Acts& a = *acts_;
  if (M > a.cap) {
    backend_->graph_forget();  // the graphs hold the old buffers' addresses
    graph_seen_.clear();
    if (a.base) backend_->free(a.base);
    if (a.tokens) backend_->free(a.tokens);
    if (a.targets) backend_->free(a.targets);
    if (a.doc_start) backend_->free(a.doc_start);
    a.base = nullptr;
    a.tokens = a.targets = a.doc_start = nullptr;
    a.cap = 0;
    a.bytes = 0;
    const int64_t total = Acts::block_bytes(cfg_, M, storage_);
    if (total == kSizeMax) throw GptError(ErrorCode::OutOfMemory, "size overflow allocating the activations");
    a.bytes = static_cast<size_t>(total);
    std::ostringstream what;
    what << "the activations for batch " << B << " x seq " << T;
    const std::string w = what.str();
    a.base = static_cast<float*>(backend_->alloc(a.bytes, w.c_str()));
    a.tokens = static_cast<int32_t*>(backend_->alloc(static_cast<size_t>(M) * 4, "the token ids"));
    a.targets = static_cast<int32_t*>(backend_->alloc(static_cast<size_t>(M) * 4, "the targets"));
    a.doc_start = static_cast<int32_t*>(backend_->alloc(static_cast<size_t>(M) * 4, "the document starts"));
    char* p = reinterpret_cast<char*>(a.base);
    a.walk(cfg_, M, storage_, [&](int64_t bytes) -> void* {
      char* slot = p;
      p += round_up(bytes, 64);
      return slot;
    });
    a.chunk_rows = classifier_capacity_rows(M, cfg_.padded_vocab);
    a.cap = M;
    reserve_scratch(B, T);
  }
}

void Model::reserve_scratch(int B, int T) {
  TrainingShape s;
  s.B = B;
  s.T = T;
  s.C = cfg_.n_embd;
  s.H = cfg_.n_head;
  s.params = n_floats_;
  s.storage = storage_;
  s.classifier_elems = int64_t(classifier_capacity_rows(int64_t(B) * T, cfg_.padded_vocab)) * cfg_.padded_vocab;
  bool seen[2] = {false, false};
  for (int l = 0; l < cfg_.n_layer; ++l) {
    const int kind = cfg_.patterns[static_cast<size_t>(l)] == AttnPattern::Banded ? 1 : 0;
    if (!seen[kind]) s.attention.push_back(attn_shape(l, B, T, nullptr));
    seen[kind] = true;
  }
  backend_->reserve_training_scratch(s);
}

void Model::check_tokens(const int32_t* tokens, const int32_t* targets, int B, int T) const {
  if (B < 1) throw GptError(ErrorCode::InvalidArgument, "Expected a positive integer for batch but received " + std::to_string(B));
  if (T < 1 || T > cfg_.n_positions)
    throw GptError(ErrorCode::InvalidArgument, "Expected an integer between 1 and " + std::to_string(cfg_.n_positions) +
                                                   " (n_positions) for seq but received " + std::to_string(T));
  const int64_t M = int64_t(B) * T;
  if (M > std::numeric_limits<int32_t>::max())
    throw GptError(ErrorCode::InvalidArgument, "Expected batch * seq below 2^31 but received " +
                                                   std::to_string(B) + " * " + std::to_string(T));
  for (int64_t i = 0; i < M; ++i)
    if (tokens[i] < 0 || tokens[i] >= cfg_.vocab_size)
      throw GptError(ErrorCode::InvalidArgument, "Expected token ids in [0, " + std::to_string(cfg_.vocab_size) +
                                                     ") for tokens but received " + std::to_string(tokens[i]) +
                                                     " at index " + std::to_string(i));
  if (targets)
    for (int64_t i = 0; i < M; ++i)
      if (targets[i] < -1 || targets[i] >= cfg_.vocab_size)
        throw GptError(ErrorCode::InvalidArgument, "Expected target ids in [0, " + std::to_string(cfg_.vocab_size) +
                                                       ") or -1 (ignored) for targets but received " +
                                                       std::to_string(targets[i]) + " at index " + std::to_string(i));
}

void Model::upload_tokens(const int32_t* tokens, const int32_t* targets, int B, int T, int32_t doc_eot) {
  const size_t bytes = static_cast<size_t>(B) * T * sizeof(int32_t);
  backend_->to_device(acts_->tokens, tokens, bytes);
  if (targets) backend_->to_device(acts_->targets, targets, bytes);
  doc_start_ = nullptr;
  if (doc_eot >= 0) {
    HostBuffer<int32_t> starts(static_cast<size_t>(B) * T, "the document starts");
    doc_starts_from_tokens(tokens, B, T, doc_eot, starts.data());
    backend_->to_device(acts_->doc_start, starts.data(), bytes);
    doc_start_ = acts_->doc_start;
  }
}

AttnShape Model::attn_shape(int l, int B, int T, const int32_t* doc_start) const {
  AttnShape s;
  s.batch = B;
  s.heads = cfg_.n_head;
  s.seq = T;
  s.head_dim = cfg_.head_dim();
  s.pattern = cfg_.patterns[static_cast<size_t>(l)];
  s.window = cfg_.attention_window;
  s.scale = 1.0f / std::sqrt(static_cast<float>(s.head_dim));
  s.precision = precision_;
  s.doc_start = doc_start;
  return s;
}

void Model::layer_forward(int l, const BlockActs& a, int M,
                          const std::function<void(TensorRef qkv, TensorRef att)>& attend, const PackedLayer* decode) {
  Backend& be = *backend_;
  const int C = cfg_.n_embd;
  const float eps = cfg_.layer_norm_epsilon;
  const Precision p = precision_;
  const LayerWeights& W = w_.layers[static_cast<size_t>(l)];
  const PackedLayer packed = decode ? *decode : PackedLayer{};
  // Blocks whose activations are bf16 (the training forward in bf16
  // storage) read the bf16 copy of the weights; decoding's are fp32.
  const bool bf16 = a.ln1.bf16();
  // out = inp @ w + bias: a GEMM, or in a decode step the decode op (fp32).
  auto linear = [&](TensorRef out, CTensorRef inp, const float* w, const void* pw, const float* bias, int K, int N) {
    if (decode)
      GPT_OP("decode_linear", be.decode_linear(out.f32("decode_linear out"), inp.f32("decode_linear inp"), w, pw, bias,
                                               M, K, N, p));
    else
      GPT_OP("matmul_forward", be.matmul_forward(out, inp, gemm_weight(w, bf16), bias, M, K, N, p));
  };
  linear(a.qkv, a.ln1, W.c_attn_w, packed.c_attn, W.c_attn_b, C, 3 * C);
  attend(a.qkv, a.att);
  linear(a.proj, a.att, W.attn_proj_w, packed.attn_proj, W.attn_proj_b, C, C);
  // res1 = proj + x, ln2 = ln_2(res1)
  GPT_OP("residual_layernorm_forward", be.residual_layernorm_forward(a.res1, a.ln2, a.ln2_mean, a.ln2_rstd, a.proj, a.x,
                                                                    W.ln_2_w, W.ln_2_b, M, C, eps));
  // fch = ln2 @ c_fc + bias (the backward pass reads it), fchg = gelu(fch)
  if (decode)
    GPT_OP("decode_linear_gelu",
           be.decode_linear_gelu(a.fch.f32("decode fch"), a.fchg.f32("decode fchg"), a.ln2.f32("decode ln2"), W.c_fc_w,
                                 packed.c_fc, W.c_fc_b, M, C, 4 * C, p));
  else
    GPT_OP("matmul_forward_gelu", be.matmul_forward_gelu(a.fch, a.fchg, a.ln2, gemm_weight(W.c_fc_w, bf16), W.c_fc_b,
                                                         M, C, 4 * C, p));
  linear(a.mlp, a.fchg, W.mlp_proj_w, packed.mlp_proj, W.mlp_proj_b, 4 * C, C);
  // res2 = mlp + res1, then the next LayerNorm: the next layer's ln_1, or
  // ln_f after the last layer.
  const bool last = l + 1 == cfg_.n_layer;
  const float* g = last ? w_.ln_f_w : w_.layers[static_cast<size_t>(l) + 1].ln_1_w;
  const float* b = last ? w_.ln_f_b : w_.layers[static_cast<size_t>(l) + 1].ln_1_b;
  GPT_OP("residual_layernorm_forward", be.residual_layernorm_forward(a.res2, a.ln_next, a.ln_next_mean, a.ln_next_rstd,
                                                                    a.mlp, a.res1, g, b, M, C, eps));
}

void Model::forward_body(int B, int T) {
  Backend& be = *backend_;
  Acts& a = *acts_;
  const int C = cfg_.n_embd, D = cfg_.head_dim();
  const int M = B * T;
  const float eps = cfg_.layer_norm_epsilon;

  GPT_OP("embedding_forward", be.embedding_forward(a.enc, a.tokens, w_.wte, w_.wpe, B, T, C));
  // Only layer 0's ln_1 is a plain LayerNorm: every later LayerNorm (ln_2,
  // the next layer's ln_1, ln_f) is fused with the residual add before it.
  {
    Acts::Layer& A0 = a.layers[0];
    const LayerWeights& W0 = w_.layers[0];
    GPT_OP("layernorm_forward", be.layernorm_forward(A0.ln1, A0.ln1_mean, A0.ln1_rstd, a.enc, W0.ln_1_w, W0.ln_1_b, M, C, eps));
  }
  for (int l = 0; l < cfg_.n_layer; ++l) {
    // q, k, v: strided [B, H, T, D] views of qkv [B, T, 3C]; out [B, T, C].
    layer_forward(l, a.block(l), M, [&](TensorRef qkv, TensorRef att) {
      const int64_t sq = int64_t(T) * 3 * C;
      const AttnTensor q = AttnTensor::of(qkv, sq, D, 3 * C), k = AttnTensor::of(qkv.at(C), sq, D, 3 * C),
                       v = AttnTensor::of(qkv.at(2 * C), sq, D, 3 * C);
      const AttnTensor o = AttnTensor::of(att, int64_t(T) * C, D, C);
      GPT_OP("attention_forward",
             be.attention_forward(attn_shape(l, B, T, doc_start_), o, a.layers[static_cast<size_t>(l)].lse, q, k, v));
    });
  }
}

ClassifierArgs Model::classifier_args(int M) const {
  ClassifierArgs c;
  c.M = M;
  c.C = cfg_.n_embd;
  c.V = cfg_.vocab_size;
  c.Vp = cfg_.padded_vocab;
  c.precision = precision_;
  c.x = acts_->lnf;
  c.wte = gemm_weight(w_.wte, acts_->lnf.bf16());
  c.chunk = acts_->chunk;
  c.cap = static_cast<int>(acts_->chunk_rows);
  return c;
}

void Model::backward_body(int B, int T) {
  Backend& be = *backend_;
  Acts& a = *acts_;
  const int C = cfg_.n_embd, D = cfg_.head_dim();
  const int M = B * T;
  const Precision p = precision_;
  const int L = cfg_.n_layer;
  // The weights as the forward's GEMMs read them (the bf16 copy in bf16 storage).
  auto wt = [&](const float* w) { return gemm_weight(w, storage_ == DType::BF16); };

  // a.dln = dlnf, from the classifier (which also added the head's share of dwte).
  const float* x_last = a.layers[static_cast<size_t>(L - 1)].res2;
  GPT_OP("zero", be.zero(a.dres, static_cast<size_t>(M) * C * sizeof(float)));
  GPT_OP("layernorm_backward", be.layernorm_backward(a.dres, g_.ln_f_w, g_.ln_f_b, a.dln, x_last, w_.ln_f_w, a.lnf_mean, a.lnf_rstd, M, C));

  for (int l = L - 1; l >= 0; --l) {
    const LayerWeights& W = w_.layers[static_cast<size_t>(l)];
    const LayerWeights& G = g_.layers[static_cast<size_t>(l)];
    Acts::Layer& A = a.layers[static_cast<size_t>(l)];
    const float* x_in = l == 0 ? a.enc : a.layers[static_cast<size_t>(l - 1)].res2;
    // a.dres = d(res2). MLP branch.
    GPT_OP("matmul_backward", be.matmul_backward(a.dfch, G.mlp_proj_w, G.mlp_proj_b, a.dres, A.fchg, wt(W.mlp_proj_w), M, 4 * C, C, p));
    GPT_OP("gelu_backward", be.gelu_backward(a.dfch, A.fch, a.dfch, int64_t(M) * 4 * C));
    GPT_OP("matmul_backward", be.matmul_backward(a.dln, G.c_fc_w, G.c_fc_b, a.dfch, A.ln2, wt(W.c_fc_w), M, C, 4 * C, p));
    GPT_OP("layernorm_backward", be.layernorm_backward(a.dres, G.ln_2_w, G.ln_2_b, a.dln, A.res1, W.ln_2_w, A.ln2_mean, A.ln2_rstd, M, C));
    // a.dres = d(res1). Attention branch.
    GPT_OP("matmul_backward", be.matmul_backward(a.datty, G.attn_proj_w, G.attn_proj_b, a.dres, A.atty, wt(W.attn_proj_w), M, C, C, p));
    const int64_t sq = int64_t(T) * 3 * C, so = int64_t(T) * C;
    const AttnTensor q = AttnTensor::of(A.qkv, sq, D, 3 * C), k = AttnTensor::of(A.qkv.at(C), sq, D, 3 * C),
                     v = AttnTensor::of(A.qkv.at(2 * C), sq, D, 3 * C);
    AttnTensor dq{a.dqkv, sq, D, 3 * C}, dk{a.dqkv + C, sq, D, 3 * C}, dv{a.dqkv + 2 * C, sq, D, 3 * C};
    const AttnTensor o = AttnTensor::of(A.atty, so, D, C);
    AttnTensor dout{a.datty, so, D, C};
    GPT_OP("attention_backward", be.attention_backward(attn_shape(l, B, T, doc_start_), dq, dk, dv, q, k, v, o, A.lse, dout));
    GPT_OP("matmul_backward", be.matmul_backward(a.dln, G.c_attn_w, G.c_attn_b, a.dqkv, A.ln1, wt(W.c_attn_w), M, C, 3 * C, p));
    GPT_OP("layernorm_backward", be.layernorm_backward(a.dres, G.ln_1_w, G.ln_1_b, a.dln, x_in, W.ln_1_w, A.ln1_mean, A.ln1_rstd, M, C));
    // a.dres = d(x_in)
  }
  GPT_OP("embedding_backward", be.embedding_backward(g_.wte, g_.wpe, a.dres, a.tokens, B, T, C));
}

void Model::forward(const int32_t* tokens, int B, int T, float* logits_out, int32_t doc_eot) {
  check_tokens(tokens, nullptr, B, T);
  ensure_acts(B, T);
  sync_weights_bf16();
  upload_tokens(tokens, nullptr, B, T, doc_eot);
  double t0 = now_ms();
  forward_body(B, T);
  const int V = cfg_.vocab_size, Vp = cfg_.padded_vocab;
  // The head a chunk of rows at a time (classifier.h), each chunk copied out
  // before the next overwrites it.
  HostBuffer<float> stage;
  classifier_logits(*backend_, classifier_args(B * T), [&](int r0, int n, const float* chunk) {
    float* dst = logits_out + int64_t(r0) * V;
    if (V == Vp) {
      backend_->to_host(dst, chunk, static_cast<size_t>(n) * V * sizeof(float));
      return;
    }
    // Through a host staging buffer, dropping the padded columns.
    const int64_t slab = std::max<int64_t>(1, (int64_t(8) << 20) / (int64_t(Vp) * 4));
    stage.ensure(static_cast<size_t>(std::min<int64_t>(n, slab) * Vp), "copying the logits");
    for (int64_t s0 = 0; s0 < n; s0 += slab) {
      const int64_t k = std::min<int64_t>(slab, n - s0);
      backend_->to_host(stage.data(), chunk + s0 * Vp, static_cast<size_t>(k * Vp) * sizeof(float));
      for (int64_t r = 0; r < k; ++r)
        std::memcpy(dst + (s0 + r) * V, stage.data() + r * Vp, static_cast<size_t>(V) * sizeof(float));
    }
  });
  timings_.forward_ms = now_ms() - t0;
}

double Model::loss(const int32_t* tokens, const int32_t* targets, int B, int T, int64_t* count, int32_t doc_eot) {
  check_tokens(tokens, targets, B, T);
  ensure_acts(B, T);
  sync_weights_bf16();
  upload_tokens(tokens, targets, B, T, doc_eot);
  double t0 = now_ms();
  forward_body(B, T);
  int64_t n = 0;
  double sum = classifier_loss(*backend_, classifier_args(B * T), acts_->targets, acts_->row_loss_d(), &n);
  timings_.forward_ms = now_ms() - t0;
  if (count) *count = n;
  return n > 0 ? sum / static_cast<double>(n) : std::numeric_limits<double>::quiet_NaN();
}

double Model::forward_backward(const int32_t* tokens, const int32_t* targets, int B, int T, int64_t* count,
                               int32_t doc_eot) {
  return forward_backward_impl(tokens, targets, B, T, count, doc_eot, false);
}

void Model::forward_backward_deferred(const int32_t* tokens, const int32_t* targets, int B, int T, int64_t* count,
                                      int32_t doc_eot) {
  forward_backward_impl(tokens, targets, B, T, count, doc_eot, true);
}

double Model::forward_backward_impl(const int32_t* tokens, const int32_t* targets, int B, int T, int64_t* count,
                                    int32_t doc_eot, bool defer) {
  check_tokens(tokens, targets, B, T);
  ensure_acts(B, T);
  sync_weights_bf16();
  upload_tokens(tokens, targets, B, T, doc_eot);
  profile().acc.clear();  // only this call's ops (not those of forward(), loss() or decoding before it)
  double t0 = now_ms();
  if (defer && !profile().on) {
    // The device work of a deferred micro-batch, the same ops in the same
    // order as below, as one CUDA graph per shape when graphs are on
    // (Backend::graph_*): nothing in it waits for the host, and the tokens and
    // targets were uploaded above, into the buffers the graph reads.
    const bool again = grads_dirty_;
    const bool first = deferred_ == 0;
    std::ostringstream key;
    key << "fb " << B << " " << T << " " << static_cast<int>(precision_) << " " << first << again
        << (doc_start_ != nullptr);
    double t1 = -1;
    const bool graphed = run_graphed(key.str(), [&] {
      Backend& be = *backend_;
      forward_body(B, T);
      if (again) accumulate_begin();
      if (first) be.zero(loss_acc(), sizeof(double));
      classifier_forward_backward_rows(be, classifier_args(B * T), acts_->targets, acts_->row_loss_d(), 1.0f,
                                       acts_->dln, g_.wte);
      be.loss_accumulate(loss_acc(), acts_->row_loss_d(), acts_->targets, B * T);
      t1 = now_ms();
      backward_body(B, T);
      if (again) accumulate_end();
    });
    const double t2 = now_ms();
    if (graphed || t1 < 0) t1 = t2;  // a graph: all of it counts as the forward
    int64_t n = 0;
    for (int64_t i = 0; i < int64_t(B) * T; ++i) n += targets[i] >= 0;
    ++deferred_;
    grads_dirty_ = true;
    timings_.forward_ms = t1 - t0;  // the time to queue the work (nothing waits for the device)
    timings_.backward_ms = t2 - t1;
    count_ += n;
    if (count) *count = n;
    return std::numeric_limits<double>::quiet_NaN();
  }
  forward_body(B, T);
  // The fused classifier: loss, dlnf into a.dln and the head's dwte, a chunk
  // of rows at a time. Gradient of the loss *sum* (scale 1): step() and
  // gradients() divide by the target count accumulated since the last step
  // (model.h).
  // A later micro-batch's gradients are computed from zero, then added (model.h),
  // the head's dwte included: the order in which ranks sum theirs.
  const bool again = grads_dirty_;
  if (again) accumulate_begin();
  int64_t n = 0;
  double sum = 0;
  {
    Backend& be = *backend_;
    if (defer) {
      // The loss is summed where it lives; the count comes from the host's
      // targets (the rows loss_sum counts: target >= 0).
      if (deferred_ == 0) be.zero(loss_acc(), sizeof(double));
      GPT_OP("classifier", classifier_forward_backward_rows(be, classifier_args(B * T), acts_->targets,
                                                            acts_->row_loss_d(), 1.0f, acts_->dln, g_.wte));
      GPT_OP("loss_accumulate", be.loss_accumulate(loss_acc(), acts_->row_loss_d(), acts_->targets, B * T));
      for (int64_t i = 0; i < int64_t(B) * T; ++i) n += targets[i] >= 0;
      ++deferred_;
    } else {
      GPT_OP("classifier", sum = classifier_forward_backward(be, classifier_args(B * T), acts_->targets,
                                                            acts_->row_loss_d(), 1.0f, acts_->dln, g_.wte, &n));
    }
  }
  double t1 = now_ms();
  backward_body(B, T);
  if (again) accumulate_end();
  grads_dirty_ = true;
  // The deferred call does not wait for the device (its timings are then
  // the time to queue the work).
  if (!defer) backend_->synchronize();
  double t2 = now_ms();
  timings_.forward_ms = t1 - t0;
  timings_.backward_ms = t2 - t1;
  if (profile().on) {
    std::fprintf(stderr, "gpt-engine profile (B %d, T %d): forward %.1f ms, backward %.1f ms;", B, T, t1 - t0, t2 - t1);
    for (auto& op : profile().acc) std::fprintf(stderr, " %s %.1f", op.first, op.second);
    std::fprintf(stderr, "\n");
    profile().acc.clear();
  }
  count_ += n;
  if (count) *count = n;
  if (defer) return std::numeric_limits<double>::quiet_NaN();
  return n > 0 ? sum / static_cast<double>(n) : std::numeric_limits<double>::quiet_NaN();
}

bool Model::run_graphed(const std::string& key, const std::function<void()>& work) {
  if (backend_->graph_replay(key)) return true;
  if (std::find(graph_seen_.begin(), graph_seen_.end(), key) == graph_seen_.end()) {
    graph_seen_.push_back(key);  // the first call of a key runs eagerly
  } else if (backend_->graph_capture_begin(key)) {
    bool threw = false;
    try {
      work();  // recorded, not run
    } catch (const std::exception& e) {
      threw = true;
      backend_->graph_capture_end(key, e.what());  // graphs off; the work runs eagerly below
    }
    if (!threw && backend_->graph_capture_end(key, nullptr) && backend_->graph_replay(key)) return true;
  }
  work();
  return false;
}

void Model::zero_grad() {
  backend_->zero(grads_, static_cast<size_t>(n_floats_) * sizeof(float));
  reset_grad_counts();
}

void Model::reset_grad_counts() {
  count_ = 0;
  grads_dirty_ = false;
  deferred_ = 0;
}

double Model::grad_norm() {
  const double inv = 1.0 / static_cast<double>(std::max<int64_t>(count_, 1));
  return std::sqrt(backend_->sum_squares(grads_, n_floats_)) * inv;
}

StepResult Model::step(const StepOptions& o) {
  double t0 = now_ms();
  timings_.comm_ms = 0;
  if (comm_) dist_reduce_gradients();  // the sums over all ranks from here on
  StepResult r;
  r.tokens = count_;
  r.deferred = deferred_;
  double loss_total = std::numeric_limits<double>::quiet_NaN();
  const double inv = 1.0 / static_cast<double>(std::max<int64_t>(count_, 1));
  auto non_finite = [&](double value) {
    zero_grad();
    std::ostringstream msg;
    msg << "The gradient norm is " << value
        << " (not finite); the step was skipped: weights and optimizer state are unchanged and the gradients "
           "were cleared. Try a lower learning rate or gradient clipping.";
    return GptError(ErrorCode::NonFinite, msg.str());
  };
  // One rank: the norm and the clipping scale are computed where the
  // gradients live and AdamW reads the scale there (skipping itself when the
  // norm is not finite), so nothing waits for the host until the one copy
  // back below. With ranks, the norm is reduced across them first.
  const bool scale_on_backend = !comm_;
  double norm = 0;
  double clip = 1.0;
  AdamWParams a;
  a.lr = o.lr;
  a.beta1 = o.beta1;
  a.beta2 = o.beta2;
  a.eps = o.eps;
  a.step = step_ + 1;
  // The AdamW calls over runs of neighbouring tensors that share the decay
  // flag; the gaps between tensors are zero in all four buffers and stay zero.
  auto update = [&] {
    size_t i = 0;
    while (i < tensors_.size()) {
      size_t j = i;
      while (j + 1 < tensors_.size() && tensors_[j + 1].decay == tensors_[i].decay) ++j;
      const int64_t off = tensors_[i].offset;
      const int64_t n = tensors_[j].offset + tensors_[j].stored - off;
      a.weight_decay = tensors_[i].decay ? o.weight_decay : 0.0f;
      a.decay = tensors_[i].decay;
      // Only the floats whose moments this rank holds (all unless sharded).
      const int64_t lo = std::max(off, mv_lo_), hi = std::min(off + n, mv_hi_);
      // One rank: AdamW also writes the weights' bf16 copy (ranks gather
      // parameters afterwards; their copy is made again before it is read).
      a.param_bf16 = weights_bf16_ && scale_on_backend ? weights_bf16_ + lo : nullptr;
      if (hi > lo) backend_->adamw(params_ + lo, grads_ + lo, m_ + (lo - mv_lo_), v_ + (lo - mv_lo_), hi - lo, a);
      i = j + 1;
    }
  };
  if (scale_on_backend) {
    // The step's scalars go up in one queued copy, and its device work (the
    // norm, the clipping scale, AdamW, the gradients' zeroing) reads them
    // there: that work is the same every step of this model, so it runs as
    // one CUDA graph when graphs are on (run_graphed; the first step eagerly).
    StepScalars h;
    h.bias1 = 1.0 - std::pow(static_cast<double>(o.beta1), static_cast<double>(a.step));
    h.bias2 = 1.0 - std::pow(static_cast<double>(o.beta2), static_cast<double>(a.step));
    h.inv_count = inv;
    h.grad_clip = static_cast<double>(o.grad_clip);
    h.lr = o.lr;
    h.beta1 = o.beta1;
    h.beta2 = o.beta2;
    h.eps = o.eps;
    h.weight_decay = o.weight_decay;
    backend_->to_device(step_hyper(), &h, sizeof h);
    a.grad_scale_at = step_scalars_;
    a.hyper_at = step_hyper();
    // The bf16 copy must be current before the update (the forward passes
    // that produced these gradients made it; a step after setParameters
    // without one would not have): AdamW then keeps it current.
    sync_weights_bf16();
    // The weights change from here on, also when an update below fails
    // partway: copies made of them (decoding's bf16 weights) are stale from now.
    ++params_version_;
    run_graphed("step", [&] {
      double* sumsq = reinterpret_cast<double*>(reinterpret_cast<char*>(step_scalars_) + 8);
      backend_->grad_scale_of(step_scalars_, sumsq, grads_, n_floats_, step_hyper());
      update();
      backend_->zero(grads_, static_cast<size_t>(n_floats_) * sizeof(float));
    });
    if (weights_bf16_) weights_bf16_version_ = params_version_;
  } else {
    norm = dist_grad_norm();
    if (!std::isfinite(norm)) throw non_finite(norm);
    if (o.grad_clip > 0 && norm > o.grad_clip) clip = o.grad_clip / norm;
    a.grad_scale = static_cast<float>(inv * clip);
    ++params_version_;
    update();
  }
  if (scale_on_backend) {
    // The step's one copy back (it waits for the update queued above): the
    // sum of squares and, after deferred micro-batches, their losses' sum.
    double back[2] = {0, 0};
    backend_->to_host(back, reinterpret_cast<char*>(step_scalars_) + 8, deferred_ > 0 ? 2 * sizeof(double) : sizeof(double));
    const double ss = back[0];
    loss_total = back[1];
    norm = std::sqrt(ss) * inv;
    if (!std::isfinite(norm)) throw non_finite(norm);  // AdamW left everything as it was
    if (o.grad_clip > 0 && norm > o.grad_clip) clip = o.grad_clip / norm;
  }
  if (!scale_on_backend && deferred_ > 0) backend_->to_host(&loss_total, loss_acc(), sizeof loss_total);
  if (deferred_ > 0) r.loss = loss_total / static_cast<double>(deferred_);
  r.grad_norm = norm;
  r.clip_scale = clip;
  ++step_;
  if (scale_on_backend) {
    reset_grad_counts();  // the gradients were zeroed on the device with the update
  } else {
    zero_grad();
  }
  if (comm_ && optimizer_sharded()) dist_gather_params();
  backend_->synchronize();
  r.step = step_;
  timings_.optimizer_ms = now_ms() - t0;
  return r;
}

void Model::read_tensor(Buffer which, int index, float* dst) {
  GPT_CHECK_ARG(index >= 0 && index < static_cast<int>(tensors_.size()), "tensor index out of range");
  const TensorInfo& t = tensors_[static_cast<size_t>(index)];
  GPT_CHECK_ARG(which == Buffer::Params || which == Buffer::Grads || !optimizer_sharded(),
                "the AdamW moments are sharded across ranks; gather them first");
  float* base = which == Buffer::Params ? params_ : which == Buffer::Grads ? grads_ : which == Buffer::ExpAvg ? m_ : v_;
  backend_->to_host(dst, base + t.offset, static_cast<size_t>(t.numel) * sizeof(float));
  if (which == Buffer::Grads && count_ > 1) {
    const float inv = static_cast<float>(1.0 / static_cast<double>(count_));
    for (int64_t i = 0; i < t.numel; ++i) dst[i] *= inv;
  }
}

void Model::write_tensor(Buffer which, int index, const float* src) {
  GPT_CHECK_ARG(index >= 0 && index < static_cast<int>(tensors_.size()), "tensor index out of range");
  GPT_CHECK_ARG(which != Buffer::Grads, "gradients are not writable");
  GPT_CHECK_ARG(which == Buffer::Params || !optimizer_sharded(),
                "the AdamW moments are sharded across ranks; gather them first");
  const TensorInfo& t = tensors_[static_cast<size_t>(index)];
  float* base = which == Buffer::Params ? params_ : which == Buffer::ExpAvg ? m_ : v_;
  backend_->to_device(base + t.offset, src, static_cast<size_t>(t.numel) * sizeof(float));
  if (which == Buffer::Params) ++params_version_;
}

Model::Memory Model::memory() const {
  Memory m = memory_figures(n_floats_, storage_, static_cast<int64_t>(acts_->bytes), acts_->cap);
  m.optimizer = static_cast<size_t>(mv_hi_ - mv_lo_) * 2 * sizeof(float);  // this rank's slice (ZeRO-1)
  if (acc_) m.grads += static_cast<size_t>(n_floats_) * sizeof(float);  // the accumulation buffer (model.h)
  return m;
}

Model::Memory Model::plan_memory(const ModelConfig& cfg, int64_t rows, DType storage) {
  ModelConfig c = cfg;
  c.padded_vocab = padded_vocab(c.vocab_size);
  int64_t n_floats = 0;
  param_layout(c, &n_floats);
  return memory_figures(n_floats, storage, rows > 0 ? Acts::block_bytes(c, rows, storage) : 0, rows);
}

}  // namespace gpt
