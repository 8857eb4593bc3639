// The GPT model graph (docs/ARCHITECTURE.md "The model"), written once against the Backend
// interface (backend.h): parameters, gradients and the two AdamW moments each
// live in one contiguous backend buffer; activations are preallocated for the
// largest B*T seen and regrown when a call needs more.
//
// Legend: B batch, T sequence, C n_embd, H heads, D = C / H, L n_layer,
// V vocab_size, Vp = V padded to a multiple of 64 (internal only), M = B*T.
//
// Gradients contract (docs/ARCHITECTURE.md "Gradients"): the gradient buffer accumulates the
// gradient of the *sum* of per-target losses over every forward_backward since
// the last step, and `count_` counts the non-ignored targets. Whoever reads
// gradients (gradients(), step()) scales by 1 / count, which makes the result
// exactly the gradient of the mean loss over all of those targets, whatever
// the number of micro-batches and however many targets each ignored.
//
// Parameter layout inside params() (and identically in grads(), m(), v()),
// in this order, each tensor starting on a 16-float (64-byte) boundary:
//   wte [Vp, C] (rows V..Vp-1 are zero and never exposed), wpe [n_positions, C],
//   per layer l: ln_1.weight [C], ln_1.bias [C], attn.c_attn.weight [C, 3C],
//   attn.c_attn.bias [3C], attn.c_proj.weight [C, C], attn.c_proj.bias [C],
//   ln_2.weight [C], ln_2.bias [C], mlp.c_fc.weight [C, 4C], mlp.c_fc.bias [4C],
//   mlp.c_proj.weight [4C, C], mlp.c_proj.bias [C];
//   ln_f.weight [C], ln_f.bias [C].
// Linear weights are Conv1D [in, out] (Hugging Face GPT-2 layout), so
// y = x @ W + b is Backend::matmul_forward(y, x, W, b, M, in, out).
//
// Decoding (native/core/decode.*) reads the same weights through
// Model::weights(), runs on Model::backend() and runs the same blocks
// (Model::layer_forward); it must hold the model's mutex (Model::mutex())
// while it does.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "backend.h"
#include "classifier.h"
#include "comm.h"

namespace gpt {

struct ModelConfig {
  int n_layer = 0;
  int n_head = 0;
  int n_embd = 0;
  int n_positions = 0;
  int vocab_size = 0;      // V, as the user sees it
  int padded_vocab = 0;    // Vp = ceil(V / 64) * 64, filled by Model
  float layer_norm_epsilon = 1e-5f;
  std::vector<AttnPattern> patterns;  // one per layer
  int attention_window = 0;           // banded layers only
  int head_dim() const { return n_embd / n_head; }
};

// Pointers into Model::params() for one block (device memory of the backend).
struct LayerWeights {
  float* ln_1_w;     // [C]
  float* ln_1_b;     // [C]
  float* c_attn_w;   // [C, 3C]  (q | k | v along the output)
  float* c_attn_b;   // [3C]
  float* attn_proj_w;  // [C, C]
  float* attn_proj_b;  // [C]
  float* ln_2_w;     // [C]
  float* ln_2_b;     // [C]
  float* c_fc_w;     // [C, 4C]
  float* c_fc_b;     // [4C]
  float* mlp_proj_w; // [4C, C]
  float* mlp_proj_b; // [C]
};

// The whole set of weight pointers. The same struct shape also describes the
// gradient buffer (Model::grad_weights()).
struct Weights {
  float* wte = nullptr;  // [Vp, C]; the tied LM head reads it as [Vp, C]^T
  float* wpe = nullptr;  // [n_positions, C]
  std::vector<LayerWeights> layers;
  float* ln_f_w = nullptr;  // [C]
  float* ln_f_b = nullptr;  // [C]
};

// The buffers one transformer block reads and writes (Model::layer_forward),
// [M, C] unless said otherwise. The training forward gives every block its
// own (the backward pass reads them); decoding reuses one set, so a buffer
// may stand for several of these where the comments allow it.
// The TensorRef ones are in the model's storage type (bf16 in the training
// forward on CUDA under BF16, Model::storage(); decoding keeps fp32), the
// float ones fp32 always.
struct BlockActs {
  const float* x = nullptr;  // the residual stream entering the block
  TensorRef ln1;             // ln_1(x): input, written before the block runs
  TensorRef qkv;             // [M, 3C] ln1 @ attn.c_attn + bias
  TensorRef att;             // the attention output
  float* proj = nullptr;     // att @ attn.c_proj + bias
  float* res1 = nullptr;     // x + proj (may be x or proj)
  TensorRef ln2;             // ln_2(res1): [M, C] (may be ln1)
  float *ln2_mean = nullptr, *ln2_rstd = nullptr;  // [M], [M]
  TensorRef fch, fchg;       // [M, 4C] ln2 @ mlp.c_fc + bias, its GELU
  float* mlp = nullptr;   // fchg @ mlp.c_proj + bias (may be proj)
  float* res2 = nullptr;  // res1 + mlp (may be res1 or mlp)
  // The LayerNorm that follows the block (the next layer's ln_1, or ln_f
  // after the last layer) of res2: [M, C], [M], [M] (ln_next may be ln2).
  TensorRef ln_next;
  float *ln_next_mean = nullptr, *ln_next_rstd = nullptr;
};

// A block's linear weights as the backend's decode ops read them
// (Backend::decode_weight_pack): each null where the backend keeps no copy.
struct PackedLayer {
  const void* c_attn = nullptr;
  const void* attn_proj = nullptr;
  const void* c_fc = nullptr;
  const void* mlp_proj = nullptr;
};

class DecodeWeights;  // decode.cc

// One named tensor of the parameter buffer.
struct TensorInfo {
  std::string name;            // Hugging Face GPT-2 name without "transformer."
  std::vector<int64_t> shape;  // as users see it (wte: [V, C], unpadded)
  int64_t offset = 0;          // floats from the start of the buffer
  int64_t numel = 0;           // elements users see (wte: V*C)
  int64_t stored = 0;          // elements in the buffer (wte: Vp*C)
  bool decay = false;          // weight decay applies (2-D tensors)
};

// The AdamW defaults of the engine, here only: the addon reads a key the
// caller left out as the value below (lib/model.ts passes what users give).
struct StepOptions {
  float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weight_decay = 0.0f;
  float grad_clip = 0.0f;  // <= 0: no clipping
};

struct StepResult {
  double grad_norm = 0;  // global L2 norm of the mean gradient, before clipping
  double clip_scale = 1;  // min(1, grad_clip / norm) when clipping, else 1
  int64_t step = 0;       // optimizer steps taken so far (after this one)
  int64_t tokens = 0;     // targets the gradient averaged over
  // The forward_backward_deferred calls since the last step and the mean of
  // their mean losses (NaN when there were none), brought back with the
  // gradient norm in the step's one copy to the host (with ranks: this
  // rank's batches only, in a copy of its own).
  int64_t deferred = 0;
  double loss = std::numeric_limits<double>::quiet_NaN();
};

// Milliseconds of the last calls, for `bench train`.
struct Timings {
  double forward_ms = 0, backward_ms = 0, optimizer_ms = 0;
  double comm_ms = 0;  // of optimizer_ms: the reductions across ranks (data parallel)
};

class Model {
 public:
  Model(const ModelConfig& cfg, std::unique_ptr<Backend> backend, Precision precision, uint64_t seed);
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  // ---- what other parts of the core use ------------------------------------
  const ModelConfig& config() const { return cfg_; }
  Backend& backend() { return *backend_; }
  Precision precision() const { return precision_; }
  // The type of the training activations the GEMMs and attention read and of
  // the weights' copy they multiply (Backend::activation_dtype).
  DType storage() const { return storage_; }
  const Weights& weights() const { return w_; }
  const Weights& grad_weights() const { return g_; }
  float* params() { return params_; }
  float* grads() { return grads_; }
  int64_t num_floats() const { return n_floats_; }  // length of each of the four buffers
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  // Index into tensors() by name; -1 if unknown.
  int find_tensor(const std::string& name) const;
  // Serializes calls on this model (the addon takes it for every call).
  std::mutex& mutex() { return mu_; }
  // Bumped whenever the parameters change (step(), write_tensor(Params)), and
  // a slot that lives as long as the model: decode.cc keeps the backend's
  // copies of the weights there and makes them again when the version moved.
  uint64_t params_version() const { return params_version_; }
  std::shared_ptr<const DecodeWeights>& decode_weights() { return decode_weights_; }

  // Transformer block l on M rows, from a.ln1 to a.ln_next (docs/ARCHITECTURE.md
  // "The model"): the one block the training forward, a decode prefill and a
  // decode step all run. attend(qkv, att) is the attention, the caller's
  // because which rows see which differs (the sequences of a batch, each
  // prompt, the cache). With `decode` null the linear layers are the GEMMs
  // (many rows); a decode step passes its packed weights and runs the
  // backend's decode ops (backend.h "decoding: the linear layers").
  // A block whose activations are bf16 multiplies the bf16 copy of the weights.
  void layer_forward(int l, const BlockActs& a, int M, const std::function<void(TensorRef qkv, TensorRef att)>& attend,
                     const PackedLayer* decode = nullptr);
  // The attention of layer l over B sequences of T tokens each, at the
  // model's precision; doc_start (backend memory, [B*T]) is the document
  // mask of AttnShape, null for none.
  AttnShape attn_shape(int l, int B, int T, const int32_t* doc_start = nullptr) const;

  // ---- the training step -----------------------------------------------------
  // tokens, targets: host arrays of B*T ids (targets may hold -1 = ignored).
  // doc_eot >= 0 turns the document mask on: the attention of every layer
  // keeps each query inside its document, documents ending at the token
  // doc_eot (native/core/doc_mask.h); -1 (the default) attends across them.
  // forward(): logits_out (host, [B, T, V], unpadded) receives the logits.
  void forward(const int32_t* tokens, int B, int T, float* logits_out, int32_t doc_eot = -1);
  // Mean loss over non-ignored targets (NaN when all are ignored); no gradients.
  double loss(const int32_t* tokens, const int32_t* targets, int B, int T, int64_t* count = nullptr,
              int32_t doc_eot = -1);
  // Forward + backward; accumulates gradients. Returns this batch's mean loss.
  double forward_backward(const int32_t* tokens, const int32_t* targets, int B, int T, int64_t* count = nullptr,
                          int32_t doc_eot = -1);
  // forward_backward that leaves this batch's mean loss on the backend
  // (Backend::loss_accumulate) and does not wait for the device: the next
  // step() brings the mean of these losses back (StepResult::loss) in the
  // copy that brings the gradient norm, so a step of any number of
  // micro-batches copies to the host once. *count gets the batch's targets.
  // zero_grad() drops the losses with the gradients.
  void forward_backward_deferred(const int32_t* tokens, const int32_t* targets, int B, int T, int64_t* count = nullptr,
                                 int32_t doc_eot = -1);
  // Clip + AdamW + zero the gradients. NONFINITE: weights and moments
  // unchanged, gradients zeroed, step counter unchanged.
  StepResult step(const StepOptions& o);
  void zero_grad();
  // Non-ignored targets accumulated since the last step / zero_grad.
  int64_t accumulated_targets() const { return count_; }
  // Global norm of the current mean gradient (what step() would report).
  double grad_norm();

  // ---- copies in and out (host memory, unpadded shapes) ----------------------
  enum class Buffer { Params, Grads, ExpAvg, ExpAvgSq };
  // Copies tensor `index` into host dst (numel floats). Grads come out as the
  // mean gradient (scaled by 1 / count).
  void read_tensor(Buffer which, int index, float* dst);
  // Copies host src (numel floats) into tensor `index`. Only Params, ExpAvg
  // and ExpAvgSq are writable.
  void write_tensor(Buffer which, int index, const float* src);
  int64_t optimizer_step() const { return step_; }
  void set_optimizer_step(int64_t s) { step_ = s; }

  // ---- data parallel (model_dist.cc, docs/ARCHITECTURE.md "Data parallel") ----
  // Joins the ranks of `comm` (every rank holds the same model): step() then
  // sums the gradients and the target count across ranks before the norm,
  // clipping and AdamW. zero1 (ZeRO-1) keeps only this rank's slice of the
  // AdamW moments: step() reduce-scatters the gradients, updates that slice
  // and all-gathers the parameters. Collective where noted.
  void set_comm(std::shared_ptr<Comm> comm, bool zero1);
  bool optimizer_sharded() const { return mv_lo_ != 0 || mv_hi_ != n_floats_; }
  // Collective: the whole m and v on this rank again (to read or save them).
  void gather_optimizer();
  // Keeps only this rank's slice of m and v (ZeRO-1; no communication).
  void shard_optimizer();

  // ---- accounting ------------------------------------------------------------
  struct Memory {
    size_t params = 0, grads = 0, optimizer = 0, activations = 0;
  };
  Memory memory() const;
  // What a model of `cfg` holds once its largest call had `rows` = B*T rows
  // (0: no call yet), without creating one: the same layout code as a live
  // model, so memory() then reports exactly these figures. Only the
  // dimensions of `cfg` matter, and the storage type (bf16: the bf16 copy of
  // the weights counts in params). A figure too large to count is SIZE_MAX.
  static Memory plan_memory(const ModelConfig& cfg, int64_t rows, DType storage = DType::F32);
  const Timings& timings() const { return timings_; }

 private:
  struct Acts;  // activation buffers, model.cc
  void layout();
  void init_weights(uint64_t seed);
  void ensure_acts(int B, int T);
  // Uploads the ids and, for doc_eot >= 0, the document starts they imply
  // (doc_start_ points at them; null without a mask).
  void upload_tokens(const int32_t* tokens, const int32_t* targets, int B, int T, int32_t doc_eot);
  void check_tokens(const int32_t* tokens, const int32_t* targets, int B, int T) const;
  // Runs the blocks and ln_f. The caller runs the classifier (classifier.h)
  // on ln_f's output.
  void forward_body(int B, int T);
  // The fused classifier's view of the activations for M rows (classifier.h).
  ClassifierArgs classifier_args(int M) const;
  void backward_body(int B, int T);
  // forward_backward and forward_backward_deferred (defer: the loss stays
  // on the backend; returns NaN).
  double forward_backward_impl(const int32_t* tokens, const int32_t* targets, int B, int T, int64_t* count,
                               int32_t doc_eot, bool defer);
  // The backend's scratch for a training step of B x T (0 x 0: the parts
  // that do not depend on the batch).
  void reserve_scratch(int B, int T);

  ModelConfig cfg_;
  std::unique_ptr<Backend> backend_;
  Precision precision_;
  DType storage_;
  // In bf16 storage: a bf16 copy of params_ (the same layout) that the
  // training GEMMs read, made again from params_ by sync_weights_bf16() when
  // params_version_ moved (before a training or evaluation call).
  uint16_t* weights_bf16_ = nullptr;
  uint64_t weights_bf16_version_ = ~uint64_t(0);
  void sync_weights_bf16();
  // w (a pointer into params_) or, when bf16 and the copy exists, the same
  // tensor in the copy.
  CTensorRef gemm_weight(const float* w, bool bf16) const;
  // The document starts of the current training call (Acts::doc_start), or
  // null when it runs without a document mask.
  const int32_t* doc_start_ = nullptr;
  std::vector<TensorInfo> tensors_;
  int64_t n_floats_ = 0;
  float* params_ = nullptr;
  float* grads_ = nullptr;
  float* m_ = nullptr;
  float* v_ = nullptr;
  // The step's gradient scale (a float) and sum of squares (a double at +8
  // bytes) in backend memory (Backend::grad_scale_of), so AdamW reads the
  // scale there, then the deferred losses' sum (a double at +16,
  // Backend::loss_accumulate): one copy back per step brings the norm and
  // the loss. At +32 bytes the step's hyperparameters (StepScalars), which
  // step() writes before its device work reads them.
  float* step_scalars_ = nullptr;
  double* loss_acc() { return reinterpret_cast<double*>(reinterpret_cast<char*>(step_scalars_) + 16); }
  StepScalars* step_hyper() { return reinterpret_cast<StepScalars*>(reinterpret_cast<char*>(step_scalars_) + 32); }
  int64_t deferred_ = 0;  // forward_backward_deferred calls since the last step
  Weights w_, g_;
  std::unique_ptr<Acts> acts_;
  int64_t count_ = 0;  // non-ignored targets since the last step
  int64_t step_ = 0;   // optimizer steps taken
  Timings timings_;
  std::mutex mu_;
  uint64_t params_version_ = 0;
  // Data parallel (model_dist.cc). m_ and v_ hold the floats [mv_lo_, mv_hi_)
  // of the parameter layout (all of it unless sharded).
  std::shared_ptr<Comm> comm_;
  bool zero1_ = false;
  int64_t mv_lo_ = 0, mv_hi_ = 0;
  // Gradient accumulation: a micro-batch after the first computes its
  // gradient from zero and adds the earlier sum (held in acc_) afterwards, so
  // one process accumulating A micro-batches sums in the order ranks do.
  bool grads_dirty_ = false;
  // What zero_grad() resets besides the gradient buffer: the target count,
  // grads_dirty_ and the deferred losses' count.
  void reset_grad_counts();
  float* acc_ = nullptr;
  void accumulate_begin();
  void accumulate_end();
  // CUDA graphs (Backend::graph_*): queues `work` (device work only, the
  // same for every call with this key) as the graph kept under `key`: the
  // first call of a key runs eagerly (it warms up plans and buffers), the
  // second captures and replays, later ones replay. True: a graph ran it.
  bool run_graphed(const std::string& key, const std::function<void()>& work);
  std::vector<std::string> graph_seen_;  // keys run eagerly once (cleared when the activations move)
  std::vector<int64_t> shard_counts() const;
  void dist_reduce_gradients();
  double dist_grad_norm();
  void dist_gather_params();
  std::shared_ptr<const DecodeWeights> decode_weights_;
};

}  // namespace gpt
