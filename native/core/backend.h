// The backend contract: the ops a GPT training step and decoding need, on
// memory the backend owns. `native/cpu` implements it always, `native/cuda`
// when a CUDA compiler was found at build time. The model graph
// (native/core/model.*) is written once against this interface.
//
// Legend for shape comments: B batch, T sequence, C channels (n_embd),
// H heads, D head size (C / H), V vocabulary (padded: Vp), M = B*T rows.
//
// Tensors live in memory the backend allocated (host memory on the CPU,
// device memory on CUDA). `float*` arguments are fp32. Arguments typed
// TensorRef / CTensorRef (and AttnTensor) may also be bf16: that is how a
// backend whose activation_dtype(BF16) is DType::BF16 (CUDA) keeps the
// activations the GEMMs and attention read, and a bf16 copy of the weights,
// in bf16 (docs/ARCHITECTURE.md "Precision"). A backend rejects a bf16
// argument it does not take with INVALID_ARGUMENT naming it (the CPU takes
// none). `Precision::BF16` asks the matmuls to round their inputs to bf16 and
// accumulate in fp32, whatever the inputs' storage. Master weights,
// gradients, AdamW moments, LayerNorm statistics, lse and losses are fp32
// always. Accumulating ops (+=) say so; everything else overwrites its outputs.
#pragma once
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "error.h"

namespace gpt {

enum class Precision { FP32 = 0, BF16 = 1 };

// How the elements of a tensor are stored. BF16: 16-bit brain floats (the
// upper half of an fp32, rounded to nearest even), as uint16_t in memory.
enum class DType : uint8_t { F32 = 0, BF16 = 1 };

inline size_t dtype_size(DType t) { return t == DType::BF16 ? 2 : 4; }
inline const char* dtype_name(DType t) { return t == DType::BF16 ? "bf16" : "fp32"; }

// A tensor in backend memory and the type of its elements. A float* converts
// to an fp32 TensorRef, so fp32 callers pass their pointers as before.
struct TensorRef {
  void* ptr = nullptr;
  DType dtype = DType::F32;
  TensorRef() = default;
  TensorRef(std::nullptr_t) {}
  TensorRef(float* p) : ptr(p) {}  // NOLINT(google-explicit-constructor): fp32 by default
  TensorRef(void* p, DType t) : ptr(p), dtype(t) {}
  bool bf16() const { return dtype == DType::BF16; }
  // The tensor `elems` elements further on (same type).
  TensorRef at(int64_t elems) const {
    return {static_cast<char*>(ptr) + elems * static_cast<int64_t>(dtype_size(dtype)), dtype};
  }
  // The fp32 pointer; INVALID_ARGUMENT naming `what` when the tensor is bf16
  // (for ops and backends that take fp32 only).
  float* f32(const char* what) const {
    GPT_CHECK_ARG(dtype == DType::F32, std::string(what) + ": a bf16 tensor where this backend takes fp32 only");
    return static_cast<float*>(ptr);
  }
  uint16_t* b16() const { return static_cast<uint16_t*>(ptr); }
};

// The read-only form of TensorRef.
struct CTensorRef {
  const void* ptr = nullptr;
  DType dtype = DType::F32;
  CTensorRef() = default;
  CTensorRef(std::nullptr_t) {}
  CTensorRef(const float* p) : ptr(p) {}  // NOLINT(google-explicit-constructor)
  CTensorRef(const void* p, DType t) : ptr(p), dtype(t) {}
  CTensorRef(const TensorRef& t) : ptr(t.ptr), dtype(t.dtype) {}  // NOLINT(google-explicit-constructor)
  bool bf16() const { return dtype == DType::BF16; }
  CTensorRef at(int64_t elems) const {
    return {static_cast<const char*>(ptr) + elems * static_cast<int64_t>(dtype_size(dtype)), dtype};
  }
  const float* f32(const char* what) const {
    GPT_CHECK_ARG(dtype == DType::F32, std::string(what) + ": a bf16 tensor where this backend takes fp32 only");
    return static_cast<const float*>(ptr);
  }
  const uint16_t* b16() const { return static_cast<const uint16_t*>(ptr); }
};

enum class AttnPattern { Dense = 0, Banded = 1 };

// A strided view of a [B, H, T, D] tensor: element (b, h, t, d) lives at
// ptr[b*sb + h*sh + t*st + d]. Lets the model hand the fused QKV buffer
// ([B, T, 3C]) to attention without a permute: q = {qkv, T*3C, D, 3C},
// k = {qkv + C, ...}, v = {qkv + 2C, ...}, and write out as [B, T, C].
// Strides count elements. A bf16 view (CUDA's bf16 storage) sets `bf16`
// instead of `ptr`: exactly one of the two is non-null.
struct AttnTensor {
  float* ptr = nullptr;
  int64_t sb = 0, sh = 0, st = 0;
  uint16_t* bf16 = nullptr;
  // The view of [B, H, T, D] at `base` (either type) with these strides.
  static AttnTensor of(TensorRef base, int64_t sb, int64_t sh, int64_t st) {
    AttnTensor t;
    if (base.bf16())
      t.bf16 = base.b16();
    else
      t.ptr = static_cast<float*>(base.ptr);
    t.sb = sb;
    t.sh = sh;
    t.st = st;
    return t;
  }
  bool is_bf16() const { return bf16 != nullptr; }
};

struct AttnShape {
  int batch = 1, heads = 1, seq = 1, head_dim = 1;
  AttnPattern pattern = AttnPattern::Dense;
  int window = 0;  // banded only: query i sees keys j with i - window < j <= i
  float scale = 1.0f;
  // CUDA: FP32 runs the SIMT fp32 kernels (any head dim 1..256), BF16 the
  // tensor-core ones (head dims 64/80/96/128; others fall back to fp32).
  // The CPU ignores it (its attention is always fp32).
  Precision precision = Precision::FP32;
  // Document mask (optional): int32 [B * T] in backend memory (host on the
  // CPU, device on CUDA), doc_start[b*T + i] = the first position of the
  // document holding position i of row b (native/core/doc_mask.h builds it
  // from tokens). Query i then sees keys max(doc_start[b*T + i], band start)
  // <= j <= i, in every head. Each row must have 0 <= doc_start[i] <= i and
  // never decrease (check_doc_starts; the CPU checks, CUDA trusts it).
  // nullptr: no document mask.
  const int32_t* doc_start = nullptr;
};

// The shapes of a training step (Backend::reserve_training_scratch): B
// sequences of T tokens, C channels, H heads, and the floats of the
// gradient buffer (the gradient norm's reduction).
struct TrainingShape {
  int B = 0, T = 0, C = 0, H = 0;
  int64_t params = 0;
  // The step's attention, one shape per distinct layer pattern (the
  // backward's scratch depends on pattern, window and precision). Empty: a
  // plan for any model of these dimensions, dense attention of B x T at head
  // size C / H in the precision that needs more.
  std::vector<AttnShape> attention;
  // Activations stored in bf16 (activation_dtype): the GEMMs that multiply
  // an fp32 gradient by a bf16 activation or weight copy then convert the
  // fp32 operand for cuBLASLt, at most M x 4C elements, or the classifier's
  // chunk of logits (classifier_elems = its rows x Vp).
  DType storage = DType::F32;
  int64_t classifier_elems = 0;
};

// The scalars of one training step in backend memory (Model::step writes
// them with one to_device before the step's device work), so that this work
// takes no per-step value from the host as a kernel argument and can be
// replayed as a CUDA graph (AdamWParams::hyper_at, grad_scale_of). Plain data
// with the same layout on the host and the device (64 bytes).
struct StepScalars {
  double bias1 = 1, bias2 = 1;  // 1 - beta1^step, 1 - beta2^step, in double
  double inv_count = 1;         // 1 / the step's target count
  double grad_clip = 0;         // <= 0: no clipping
  float lr = 0, beta1 = 0, beta2 = 0, eps = 0;
  float weight_decay = 0;       // applied by the calls with AdamWParams::decay
  float pad[3] = {0, 0, 0};
};
static_assert(sizeof(StepScalars) == 64, "StepScalars is shared with device code");

// One AdamW update. The hyperparameters have no defaults here: callers copy
// them from StepOptions (native/core/model.h), their only home.
struct AdamWParams {
  float lr = 0, beta1 = 0, beta2 = 0, eps = 0, weight_decay = 0;
  float grad_scale = 1.0f;  // multiplies the gradient first (clipping)
  int64_t step = 1;         // 1-based, for bias correction
  // When set: the gradient's scale is read from this float in the backend's
  // memory (as grad_scale_of writes it) instead of grad_scale, and a
  // non-finite value there makes the call change nothing (the step is
  // skipped). The training step uses it so AdamW needs no value from the host.
  const float* grad_scale_at = nullptr;
  // When set: lr, beta1, beta2, eps and the bias corrections are read from
  // this struct in the backend's memory (float(bias1), float(bias2): the same
  // values as computed from `step`), and the weight decay is its weight_decay
  // when `decay` (else 0); lr, beta1, beta2, eps, weight_decay and step above
  // are not read.
  const StepScalars* hyper_at = nullptr;
  bool decay = false;
  // When set: the updated weights are also written here rounded to bf16 (n
  // elements; the model's bf16 copy for the GEMMs, Model::storage()), so the
  // copy costs no pass of its own. A skipped step leaves it as it was.
  uint16_t* param_bf16 = nullptr;
};

// A weight as the linear ops of a decode step read it (Backend "decoding:
// the linear layers"): a Conv1D weight w [K, N] (in x out), or the tied LM
// head, wte [N, K] read as its transpose.
enum class DecodeWeight { Linear = 0, Head = 1 };

// One row of a decoding batch for one layer (the decoding ops below): a
// token of one sequence at absolute position `pos`, and where that
// sequence's cache of this layer lives. The cache of one (sequence, layer)
// is K [H, P, D] at cache + k and V [H, P, D] at cache + v (offsets in
// elements of the cache's type, kv_cache_dtype, into one backend buffer),
// P = `slots`. Position j lives in slot j % P:
// for a dense layer P is the capacity (j < P, so the slot is j); for a
// banded layer P = min(capacity, window + extend_max - 1) (DecodeState)
// and the slots form a ring holding the last P positions. The row attends
// to positions first..pos, which must all still be held: 0 <= first <=
// pos and pos - first < P (dense: first = 0; banded: first = max(0, pos -
// window + 1)).
// Plain data with the same layout on the host and the device (32 bytes).
struct KvRow {
  int64_t k = 0, v = 0;  // element offsets of this layer's K and V cache
  int32_t slots = 1;     // P
  int32_t pos = 0;       // the row's position (< 0: kv_store skips the row)
  int32_t first = 0;     // first position attended
  int32_t pad = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;  // "cpu" | "cuda"

  // ---- memory -------------------------------------------------------------
  virtual void* alloc(size_t bytes, const char* what) = 0;  // OUT_OF_MEMORY names `what`
  virtual void free(void* p) = 0;
  virtual void to_device(void* dst, const void* host_src, size_t bytes) = 0;
  virtual void to_host(void* host_dst, const void* src, size_t bytes) = 0;
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;
  virtual void zero(void* p, size_t bytes) = 0;
  virtual void synchronize() = 0;
  // The queue this backend runs its work on, for code outside the backend
  // that must order its own device work with it (NCCL's collectives in
  // native/distributed/nccl_comm.cc): on "cuda" the backend's own
  // non-blocking cudaStream_t, with the backend's GPU made
  // current on the calling thread; work given to it runs after every op
  // called before and before every op called after. Backends
  // without streams ("cpu") return null and are never asked.
  virtual void* native_stream() { return nullptr; }
  // Sizes the backend's own scratch memory (its partial sums, sort keys and
  // the like) for every op a training step of shape `s` runs, and of any
  // smaller one, so that a step allocates nothing: the model calls it when it
  // sizes its activations. Backends without such memory ("cpu") do nothing.
  virtual void reserve_training_scratch(const TrainingShape& s) { (void)s; }
  // CUDA graphs of training work (on "cuda" with GPT_ENGINE_CUDA_GRAPH=1;
  // docs/GPU.md "Host syncs in a training step"). graph_capture_begin(key)
  // starts recording the work queued next instead of running it (false:
  // graphs are off); graph_capture_end(key, failed) stops and keeps the
  // recording under `key` unless `failed` (a message: the caller's work threw)
  // or the capture itself failed: then it returns false, nothing of that work
  // ran, graphs are off from then on (graph_status says why, stderr once) and
  // the caller queues the work again. graph_replay(key) queues the work kept
  // under `key` (false: none). A graph holds the device pointers of its
  // capture: graph_forget() drops them all (the caller's buffers moved; the
  // backend drops them itself when its scratch grows).
  virtual bool graph_capture_begin(const std::string& key) {
    (void)key;
    return false;
  }
  virtual bool graph_capture_end(const std::string& key, const char* failed) {
    (void)key;
    (void)failed;
    return false;
  }
  virtual bool graph_replay(const std::string& key) {
    (void)key;
    return false;
  }
  virtual void graph_forget() {}
  // "on" / "off" / "off: <why>", then the counts of captures and replays.
  virtual std::string graph_status() { return "off (not a CUDA backend)"; }
  // Bytes reserve_training_scratch(s) holds (0 for "cpu").
  virtual size_t training_scratch_bytes(const TrainingShape& s) {
    (void)s;
    return 0;
  }

  // ---- linear layers (Conv1D layout: w [K, N], "in" x "out") --------------
  // out[M, N] = inp[M, K] @ w[K, N] (+ bias[N] when bias != nullptr)
  virtual void matmul_forward(TensorRef out, CTensorRef inp, CTensorRef w, const float* bias, int M, int K, int N,
                              Precision p) = 0;
  // dinp[M, K] = dout[M, N] @ w^T (overwrites; skipped when dinp == nullptr)
  // dw[K, N] += inp^T @ dout; dbias[N] += colsum(dout) (skipped when nullptr)
  virtual void matmul_backward(float* dinp, float* dw, float* dbias, const float* dout, CTensorRef inp,
                               CTensorRef w, int M, int K, int N, Precision p) = 0;
  // Tied LM head: logits[M, Vp] = x[M, C] @ wte[Vp, C]^T. Each row's result
  // depends on that row alone (the CPU: the same bits for any M), which lets
  // the classifier run it on chunks of rows.
  virtual void matmul_nt(float* out, CTensorRef a, CTensorRef b, int M, int K, int N, Precision p) = 0;

  // ---- elementwise and normalization --------------------------------------
  // out[M, C] = wte[tok] + wpe[t] (t = row % T)
  virtual void embedding_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe, int B, int T,
                                 int C) = 0;
  // dwte[tok] += dout; dwpe[t] += dout (deterministic order)
  virtual void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens, int B, int T,
                                  int C) = 0;
  // out = LN(inp) * gamma + beta over C; saves mean[M], rstd[M]
  virtual void layernorm_forward(TensorRef out, float* mean, float* rstd, const float* inp, const float* gamma,
                                 const float* beta, int M, int C, float eps) = 0;
  // dinp += ...; dgamma += ...; dbeta += ...
  virtual void layernorm_backward(float* dinp, float* dgamma, float* dbeta, const float* dout, const float* inp,
                                  const float* gamma, const float* mean, const float* rstd, int M, int C) = 0;
  // tanh-form GELU (GPT-2)
  virtual void gelu_forward(TensorRef out, CTensorRef inp, int64_t n) = 0;
  // dinp = dout * gelu'(inp) (overwrites)
  virtual void gelu_backward(float* dinp, CTensorRef inp, const float* dout, int64_t n) = 0;
  // dst[i] = src[i] for i < n, converting the type: fp32 to bf16 rounds to
  // nearest even, bf16 to fp32 is exact, equal types copy.
  virtual void convert(TensorRef dst, CTensorRef src, int64_t n) = 0;
  // The type a model keeps its activations in at precision p: the tensors
  // the GEMMs and attention read (the LayerNorm outputs, qkv, the attention
  // output, the MLP's pre-GELU and GELU outputs) and its copy of the weights
  // for the GEMMs (docs/ARCHITECTURE.md "Precision"). fp32 unless a backend
  // stores bf16 (CUDA under BF16; $GPT_ENGINE_BF16_STORAGE=0 keeps fp32).
  virtual DType activation_dtype(Precision p) const {
    (void)p;
    return DType::F32;
  }
  // out = a + b
  virtual void add(float* out, const float* a, const float* b, int64_t n) = 0;

  // ---- fused forward ops ------------------------------------------------------
  // Each default body composes the ops above, and that composition is the
  // reference a backend's fused override is held to (test/native/fused-ops,
  // test/ops/op-table.js). The fusion saves a pass over the activations.
  //
  // pre[M, N] = inp[M, K] @ w[K, N] (+ bias[N] when non-null), saved for the
  // backward pass; out[M, N] = gelu(pre), tanh form as gelu_forward.
  virtual void matmul_forward_gelu(TensorRef pre, TensorRef out, CTensorRef inp, CTensorRef w, const float* bias,
                                   int M, int K, int N, Precision p) {
    matmul_forward(pre, inp, w, bias, M, K, N, p);
    gelu_forward(out, pre, int64_t(M) * N);
  }
  // resid[M, C] = a + b (resid may alias a or b); out = LN(resid) * gamma +
  // beta as layernorm_forward, which saves mean[M] and rstd[M].
  virtual void residual_layernorm_forward(float* resid, TensorRef out, float* mean, float* rstd, const float* a,
                                          const float* b, const float* gamma, const float* beta, int M, int C,
                                          float eps) {
    add(resid, a, b, int64_t(M) * C);
    layernorm_forward(out, mean, rstd, resid, gamma, beta, M, C, eps);
  }

  // ---- attention (fused, flash-style; see native/cpu/attention.h) ---------
  // lse: [B, H, T] contiguous, natural log of the scaled scores' sum of exp.
  virtual void attention_forward(const AttnShape& s, AttnTensor out, float* lse, AttnTensor q, AttnTensor k,
                                 AttnTensor v) = 0;
  // dq, dk, dv are overwritten.
  virtual void attention_backward(const AttnShape& s, AttnTensor dq, AttnTensor dk, AttnTensor dv, AttnTensor q,
                                  AttnTensor k, AttnTensor v, AttnTensor out, const float* lse, AttnTensor dout) = 0;

  // ---- decoding (KV cache; native/core/decode.h) ------------------------------
  // The type of the key/value cache a decoding session of a model at
  // precision p keeps (docs/ARCHITECTURE.md "Precision"): fp32 unless a
  // backend stores bf16 (CUDA under BF16; $GPT_ENGINE_BF16_STORAGE=0 keeps
  // fp32). kv_store and decode_attention take a cache of this type.
  virtual DType kv_cache_dtype(Precision p) const {
    (void)p;
    return DType::F32;
  }
  // `rows` [M] (KvRow, in backend memory) describe M rows of one layer; row r
  // belongs to one sequence, and no two rows of one call share a sequence's
  // cache slot. Row r's k/v/q/out vectors are [H, D] = [C] at ptr + r * ld
  // (fp32 always).
  // kv_store: writes row r's key and value into its cache at slot pos % P
  // (every head), rounded to nearest even when the cache is bf16; rows with
  // pos < 0 are skipped (a prefill passes the prompt positions the ring
  // would drop that way).
  virtual void kv_store(TensorRef cache, const KvRow* rows, int M, const float* k, const float* v, int64_t ld, int H,
                        int D) = 0;
  // Single-query attention over the cache, fp32 arithmetic throughout (a
  // bf16 cache is read as the fp32 values it holds): for each row r
  // and head h, out[r, h] = softmax(scale * q[r, h] . K[j]) @ V[j] over
  // positions j = first..pos of row r. Overwrites out. `max_keys` >= every
  // row's pos - first + 1 (sizes the split over positions on a GPU). The
  // result of a row does not depend on the rows of other sequences (other
  // caches); consecutive rows of one sequence at consecutive positions (an
  // extend's chunk) may be computed together (the CPU tiles runs of 16 or
  // more), so such a row's bits may depend on the length of its run.
  virtual void decode_attention(float* out, int64_t ldo, const float* q, int64_t ldq, CTensorRef cache,
                                const KvRow* rows, int M, int H, int D, float scale, int max_keys) = 0;
  // out[r, C] = wte[tokens[r]] + wpe[positions[r]] (tokens and positions
  // [M] in backend memory): the embedding of rows at their own positions.
  virtual void embedding_at(float* out, const int32_t* tokens, const int32_t* positions, const float* wte,
                            const float* wpe, int M, int C) = 0;

  // ---- decoding: the linear layers of a step ----------------------------------
  // A step multiplies a few rows (one per sequence) by every weight of the
  // model, so it is bound by reading the weights, which GEMMs tiled for many
  // rows do poorly. These ops compute what matmul_forward and matmul_nt
  // compute, up to the order of summation (test/native/decode-linear,
  // scripts/gpu-check/ops.js); a backend without a path of its own for few
  // rows runs its GEMMs.
  //
  // A backend may read a weight in a form of its own: decode_weight_bytes()
  // is the size of its copy of w in backend memory (0: none, the ops read
  // the fp32 tensor), decode_weight_pack() writes that copy to dst, and the
  // ops take it as `packed` (null when there is none). The copy is of the
  // weights at the time of packing: the caller packs again when they change.
  virtual size_t decode_weight_bytes(DecodeWeight kind, int K, int N, Precision p) = 0;
  virtual void decode_weight_pack(void* dst, DecodeWeight kind, const float* w, int K, int N, Precision p) = 0;
  // out[M, N] = inp[M, K] @ w[K, N] (+ bias[N] when non-null), as matmul_forward.
  virtual void decode_linear(float* out, const float* inp, const float* w, const void* packed, const float* bias,
                             int M, int K, int N, Precision p) = 0;
  // pre = decode_linear(inp), out = gelu(pre), as matmul_forward_gelu. The
  // default body is that composition, and the reference of an override.
  virtual void decode_linear_gelu(float* pre, float* out, const float* inp, const float* w, const void* packed,
                                  const float* bias, int M, int K, int N, Precision p) {
    decode_linear(pre, inp, w, packed, bias, M, K, N, p);
    gelu_forward(out, pre, int64_t(M) * N);
  }
  // The tied head: logits[M, N] = x[M, K] @ wte[N, K]^T, as matmul_nt.
  virtual void decode_head(float* out, const float* x, const float* wte, const void* packed, int M, int K, int N,
                           Precision p) = 0;

  // ---- classifier ------------------------------------------------------------
  // logits: [M, Vp] (only the first V columns are real). For each row with
  // targets[r] >= 0: loss_sum += -log softmax(logits[r])[target]. When
  // dlogits_scale != 0 the logits are overwritten in place by their gradient
  // (softmax - onehot) * dlogits_scale (rows with target -1 get 0, padded
  // columns get 0), so no second [M, Vp] buffer exists. Returns the loss sum
  // (double, summed in a fixed order) and the count of non-ignored rows.
  virtual double crossentropy(float* logits, const int32_t* targets, int M, int V, int Vp, float dlogits_scale,
                              int64_t* count) = 0;

  // ---- the fused classifier (native/core/classifier.h) -------------------------
  // Training never holds the [M, Vp] logits: the core runs the head, the
  // cross-entropy and the head's backward on chunks of rows, through the ops
  // below and matmul_nt / matmul_forward, in a buffer of at most `cap` rows.
  //
  // Rows per chunk for M rows (1 <= result <= max(1, min(M, cap))). The
  // backend picks them so that the chunked dwte sum (classifier_weight_grad)
  // adds the same partial sums in the same order as one matmul_backward over
  // all M rows would: the CPU returns a multiple of its GEMM's K block for M.
  virtual int classifier_chunk_rows(int M, int Vp, Precision p, int cap) = 0;
  // crossentropy on the M rows of one chunk, without the sum: row_loss[M]
  // (double, backend memory) gets each row's loss, 0 for rows with target
  // -1; the logits become their gradient in place when dlogits_scale != 0,
  // exactly as crossentropy. Nothing is copied to the host.
  virtual void crossentropy_rows(float* logits, const int32_t* targets, double* row_loss, int M, int V, int Vp,
                                 float dlogits_scale) = 0;
  // The sum of row_loss[r] over the rows r < M with targets[r] >= 0, in
  // double, in a fixed order (the CPU: row order, as crossentropy), and the
  // count of those rows in *count. One small copy to the host.
  virtual double loss_sum(const double* row_loss, const int32_t* targets, int M, int64_t* count) = 0;
  // The same sum s and count n, left where they are: *acc (a double in
  // backend memory) += n > 0 ? s / n : NaN, in double, with no copy to the
  // host on a backend that overrides it. The training step adds each
  // micro-batch's mean loss this way and copies the total back once, in
  // step(). The default body goes through loss_sum and the host; it is the
  // reference an override is held to (the same bits).
  virtual void loss_accumulate(double* acc, const double* row_loss, const int32_t* targets, int M) {
    int64_t n = 0;
    const double s = loss_sum(row_loss, targets, M, &n);
    double cur = 0;
    to_host(&cur, acc, sizeof cur);
    cur += n > 0 ? s / static_cast<double>(n) : std::numeric_limits<double>::quiet_NaN();
    to_device(acc, &cur, sizeof cur);
  }
  // dw[Vp, C] += dlogits[rows, Vp]^T @ x[rows, C] (the tied head's weight
  // gradient) for rows row0 .. row0 + rows - 1 of an M-row batch, in the
  // model's precision (bf16 rounds both inputs as the matmuls do). Calls
  // over consecutive chunks of classifier_chunk_rows(M, ...) rows, in order,
  // give on the CPU the same bits as one matmul_backward(nullptr, dw, ...)
  // over all M rows; other chunkings agree up to the order of summation.
  virtual void classifier_weight_grad(float* dw, const float* dlogits, CTensorRef x, int rows, int row0, int M,
                                      int Vp, int C, Precision p) = 0;

  // ---- optimizer -------------------------------------------------------------
  // Sum of squares of g[0..n) in double, in a fixed order.
  virtual double sum_squares(const float* g, int64_t n) = 0;
  // The training step's gradient scale, where the gradients live, with no
  // copy to the host: ss = sum_squares(g, n) (the same order, the same bits)
  // into *sumsq (a double in backend memory), then in double
  // norm = sqrt(ss) * inv_count, clip = grad_clip / norm when grad_clip > 0
  // and norm > grad_clip (else 1), and *scale (a float in backend memory) =
  // float(inv_count * clip), or NaN when norm is not finite. Both outputs are
  // overwritten. AdamWParams::grad_scale_at reads *scale.
  virtual void grad_scale_of(float* scale, double* sumsq, const float* g, int64_t n, double inv_count,
                             double grad_clip) = 0;
  // The same, with inv_count and grad_clip read from *at (backend memory).
  virtual void grad_scale_of(float* scale, double* sumsq, const float* g, int64_t n, const StepScalars* at) = 0;
  // Decoupled AdamW on one tensor; decay applies when weight_decay != 0.
  virtual void adamw(float* param, const float* grad, float* m, float* v, int64_t n, const AdamWParams& a) = 0;
  virtual void scale(float* x, float s, int64_t n) = 0;
};

// Creates the CPU backend (never fails).
std::unique_ptr<Backend> make_cpu_backend();

// CUDA: availability and creation. Without a CUDA build, or without a usable
// GPU, cuda_available() is false and cuda_unavailable_reason() says why;
// make_cuda_backend() then throws NO_GPU.
struct GpuInfo {
  bool available = false;
  std::string reason;  // why not, when !available
  std::string name;
  size_t total_memory = 0;
  int cc_major = 0, cc_minor = 0;
  int driver_version = 0, runtime_version = 0;
  int device_count = 0;
  bool emulated = false;  // the CUDA kernels run on the CPU (GPT_ENGINE_CUDA_EMU build)
};
bool cuda_compiled();
GpuInfo cuda_info();
std::unique_ptr<Backend> make_cuda_backend();
// The bytes of scratch the CUDA backend reserves for a training step of `s`
// (Backend::reserve_training_scratch), without a GPU; 0 in a build without
// CUDA. The memory planner (lib/limits.ts) counts it.
size_t cuda_training_scratch_bytes(const TrainingShape& s);

}  // namespace gpt
