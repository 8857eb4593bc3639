// gpt::Backend on one NVIDIA GPU. Every op enqueues kernels, copies and
// memsets on the backend's own non-blocking stream (stream_; a CUDA graph can
// be captured only from such a stream) and checks each launch; the ops that return numbers copy
// back a small result: crossentropy its per-row losses (summed on the host
// in row order), sum_squares and loss_sum (the training classifier's loss)
// one value each, summed on the device in a fixed order.
//
// Scratch memory (bias/LayerNorm partial sums, attention's D vector, the
// crossentropy op's per-row losses, the loss sum, the embedding gradient's
// sort keys) lives in a few grow-only device buffers owned by the backend.
// The model reserves them for its training shape when it sizes its
// activations (reserve_training_scratch), so no training step allocates;
// other ops (decoding, the crossentropy op) grow them on first use
// (docs/GPU.md "Host syncs in a training step").
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "../core/backend.h"
#include "../core/error.h"
#include "attention.cuh"
#include "check.cuh"
#include "cublaslt.h"
#include "cuda_backend.cuh"
#include "decode_attention.cuh"
#include "gemm.cuh"
#include "ops.cuh"

namespace gpt {
namespace cuda {
namespace {

// *acc += d[1] > 0 ? d[0] / d[1] : NaN (d: loss_sum's sum and count), as
// Backend::loss_accumulate's default body computes it on the host.
__global__ void loss_accumulate_kernel(double* acc, const double* d) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  const double n = d[1];
  acc[0] += n > 0 ? d[0] / n : nan("");
}

std::string mib(size_t bytes) {
  char buf[64];
  snprintf(buf, sizeof buf, "%.1f MiB", bytes / (1024.0 * 1024.0));
  return buf;
}

enum Slot {
  kSlotReduce = 0,
  kSlotRows = 1,
  kSlotEmbedding = 2,
  kSlotNorm = 3,
  kSlotLoss = 4,
  kSlotGemm = 5,  // GemmScratch: the fp32 operand of a mixed-type GEMM in bf16 (reserved, never grown in a step)
  kSlots = 6
};

// What each scratch slot must hold for a training step of shape s: the same
// requests the ops of the step make (0: the step does not use the slot).
struct ScratchNeeds {
  size_t bytes[kSlots] = {};
  const char* what[kSlots] = {};
};
ScratchNeeds training_needs(const TrainingShape& s) {
  ScratchNeeds n;
  const int64_t M64 = int64_t(s.B) * s.T;
  const int M = static_cast<int>(std::min<int64_t>(M64, 1 << 30));
  const int C = s.C;
  if (M > 0 && C > 0) {
    size_t reduce = 0;
    for (int N : {C, 3 * C, 4 * C}) reduce = std::max(reduce, colsum_scratch_floats(M, N));  // the bias gradients
    reduce = std::max(reduce, layernorm_backward_scratch_floats(M, C));
    reduce = std::max(reduce, (size_t)M * (size_t)s.H);  // attention backward's D
    // The attention backward's D and dQ partials (attention_backward_scratch_floats), per shape of the step.
    std::vector<AttnShape> attn = s.attention;
    if (attn.empty() && s.H > 0 && C % s.H == 0)
      for (Precision p : {Precision::FP32, Precision::BF16}) {
        AttnShape a;
        a.batch = s.B;
        a.heads = s.H;
        a.seq = s.T;
        a.head_dim = C / s.H;
        a.precision = p;
        attn.push_back(a);
      }
    for (const AttnShape& a : attn) {
      try {
        reduce = std::max(reduce, cuda::attention_backward_scratch_floats(a));
      } catch (const GptError&) {
        // A shape the kernels refuse (head size over 256): its step fails at the attention, not here.
      }
    }
    n.bytes[kSlotReduce] = reduce * sizeof(float);
    n.what[kSlotReduce] = "the training step's partial sums";
    n.bytes[kSlotEmbedding] = embedding_backward_wte_scratch_bytes(M);
    n.what[kSlotEmbedding] = "embedding-gradient grouping";    if (s.storage == DType::BF16) {
      n.bytes[kSlotGemm] = std::max<size_t>((size_t)M * 4 * (size_t)C, (size_t)s.classifier_elems) * 2;
      n.what[kSlotGemm] = "bf16 copies of the fp32 operands of mixed GEMMs";
    }
  }
  if (s.params > 0) {
    n.bytes[kSlotNorm] = (1 + cuda::sum_squares_scratch_doubles(s.params)) * sizeof(double);
    n.what[kSlotNorm] = "gradient-norm partial sums";
  }
  n.bytes[kSlotLoss] = 2 * sizeof(double);
  n.what[kSlotLoss] = "the loss sum";
  return n;
}
// What CudaBackend::scratch allocates for a request of `bytes`.
size_t grown_bytes(size_t bytes) { return std::max(bytes + bytes / 4, (size_t)4096); }
size_t training_scratch_total(const TrainingShape& s) {
  const ScratchNeeds n = training_needs(s);
  size_t total = 0;
  for (int slot = 0; slot < kSlots; ++slot)
    if (n.bytes[slot]) total += grown_bytes(n.bytes[slot]);
  return total;
}

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device) : device_(device) {
    CUDA_CHECK(cudaSetDevice(device_), "cuda backend init (cudaSetDevice)");
    CUDA_CHECK(cudaFree(nullptr), "cuda backend init (context)");  // creates the context now, not mid-step
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cuda backend init (stream)");
    const char* g = std::getenv("GPT_ENGINE_CUDA_GRAPH");
    graphs_on_ = g && std::strcmp(g, "1") == 0;
    if (!graphs_on_) graphs_why_ = "GPT_ENGINE_CUDA_GRAPH is not 1";
  }
  ~CudaBackend() override {
    graph_forget();
    for (auto& s : scratch_)
      if (s.ptr) cudaFree(s.ptr);
    if (stream_) cudaStreamDestroy(stream_);  // the cudaFree calls above waited for its work
    cudaGetLastError();
  }
  const char* name() const override { return "cuda"; }

  // ---- memory -------------------------------------------------------------
  void* alloc(size_t bytes, const char* what) override {
    set_device();
    void* p = nullptr;
    cudaError_t err = cudaMalloc(&p, bytes == 0 ? 256 : bytes);
    if (err != cudaSuccess) {
      cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      cudaGetLastError();
      if (err == cudaErrorMemoryAllocation)
        throw GptError(ErrorCode::OutOfMemory,
                       std::string("GPU out of memory allocating ") + mib(bytes) + " for " + what + " (gpt-engine holds " +
                           mib(allocated_) + "; the GPU has " + mib(free_b) + " free of " + mib(total_b) +
                           "); try a smaller batch, a shorter sequence or a smaller model");
      throw_cuda(err, (std::string("alloc (") + what + ")").c_str(), __FILE__, __LINE__);
    }
    allocated_ += bytes;
    sizes_.push_back({p, bytes});
    return p;
  }
  void free(void* p) override {
    if (!p) return;
    set_device();
    for (size_t i = 0; i < sizes_.size(); ++i)
      if (sizes_[i].first == p) {
        allocated_ -= sizes_[i].second;
        sizes_[i] = sizes_.back();
        sizes_.pop_back();
        break;
      }
    CUDA_CHECK(cudaFree(p), "free");
  }
  // Queued on the stream: the engine's host buffers are pageable, which the
  // runtime copies to its staging memory before cudaMemcpyAsync returns,
  // without waiting for the device, so the caller may reuse them at once
  // (cudaMemcpy would first wait for all the work queued before it).
  void to_device(void* dst, const void* host_src, size_t bytes) override {
    if (!bytes) return;
    set_device();
    CUDA_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, stream_), "to_device");
  }
  // On the stream, so it follows the work queued there (cudaMemcpy runs on
  // the legacy stream, which does not wait for a non-blocking one); into
  // pageable memory it returns only once the bytes have arrived.
  void to_host(void* host_dst, const void* src, size_t bytes) override {
    if (!bytes) return;
    set_device();
    CUDA_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, stream_),
               "to_host (or a kernel before it)");
  }
  void copy(void* dst, const void* src, size_t bytes) override {
    if (!bytes) return;
    set_device();
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_), "copy");
  }
  void zero(void* p, size_t bytes) override {
    if (!bytes) return;
    set_device();
    CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, stream_), "zero");
  }
  void synchronize() override {
    set_device();
    CUDA_CHECK(cudaStreamSynchronize(stream_), "synchronize (a kernel before it failed)");
  }
  // Backend::native_stream's contract: the stream every op above runs on,
  // with this backend's GPU made current on the calling thread (NCCL's
  // communicator takes the current device when it is created).
  void* native_stream() override {
    set_device();
    return static_cast<void*>(stream_);
  }
  void reserve_training_scratch(const TrainingShape& s) override {
    set_device();
    const ScratchNeeds n = training_needs(s);
    for (int slot = 0; slot < kSlots; ++slot)
      if (n.bytes[slot]) scratch(slot, n.bytes[slot], n.what[slot]);
  }
  size_t training_scratch_bytes(const TrainingShape& s) override { return training_scratch_total(s); }

  // ---- CUDA graphs (GPT_ENGINE_CUDA_GRAPH=1) ----------------------------------------
  bool graph_capture_begin(const std::string& key) override {
    if (!graphs_on_) return false;
    set_device();
#ifdef GPT_CUDA_EMU
    if (gemm_choice().cublaslt) {
      graphs_off("under the SIMT emulator the cuBLASLt stand-in computes at the call and cannot be captured "
                 "(GPT_ENGINE_GEMM=own runs the own GEMM kernels, which can)");
      return false;
    }
#endif
    graph_drop(key);
    cudaGetLastError();
    const cudaError_t e = cudaStreamBeginCapture(stream_, cudaStreamCaptureModeGlobal);
    if (e != cudaSuccess) {
      cudaGetLastError();
      graphs_off(std::string("cudaStreamBeginCapture: ") + cudaGetErrorString(e));
      return false;
    }
    capturing_ = true;
    return true;
  }
  bool graph_capture_end(const std::string& key, const char* failed) override {
    if (!capturing_) return false;
    set_device();
    capturing_ = false;
    cudaGraph_t g = nullptr;
    const cudaError_t e = cudaStreamEndCapture(stream_, &g);
    std::string why = failed ? std::string(failed) : std::string();
    if (why.empty() && e != cudaSuccess) why = std::string("cudaStreamEndCapture: ") + cudaGetErrorString(e);
    cudaGraphExec_t x = nullptr;
    if (why.empty()) {
      const cudaError_t ei = cudaGraphInstantiate(&x, g, 0);
      if (ei != cudaSuccess) why = std::string("cudaGraphInstantiate: ") + cudaGetErrorString(ei);
    }
    if (g) cudaGraphDestroy(g);
    cudaGetLastError();
    if (!why.empty()) {
      if (x) cudaGraphExecDestroy(x);
      graphs_off(why);
      return false;
    }
    graphs_[key] = x;
    ++captures_;
    return true;
  }
  bool graph_replay(const std::string& key) override {
    if (!graphs_on_) return false;
    auto it = graphs_.find(key);
    if (it == graphs_.end()) return false;
    set_device();
    CUDA_CHECK(cudaGraphLaunch(it->second, stream_), "cudaGraphLaunch (or a kernel before it)");
    ++replays_;
    return true;
  }
  void graph_forget() override {
    for (auto& g : graphs_) cudaGraphExecDestroy(g.second);
    graphs_.clear();
  }
  std::string graph_status() override {
    std::string s = graphs_on_ ? "on" : ("off" + (graphs_why_.empty() ? std::string() : ": " + graphs_why_));
    return s + "; " + std::to_string(captures_) + " captured, " + std::to_string(replays_) + " replayed";
  }

  // ---- linear layers ---------------------------------------------------------
  void matmul_forward(TensorRef out, CTensorRef inp, CTensorRef w, const float* bias, int M, int K, int N,
                      Precision p) override {
    set_device();
    gemm(false, false, M, N, K, inp, K, w, N, out, N, false, bias, p, stream_, gemm_scratch());
  }
  void matmul_backward(float* dinp, float* dw, float* dbias, const float* dout, CTensorRef inp, CTensorRef w, int M,
                       int K, int N, Precision p) override {
    set_device();
    // In bf16 storage both GEMMs pair the fp32 dout with a bf16 operand: dout
    // is rounded to bf16 once here into the GEMM workspace (the same values
    // the GEMMs would round it to) instead of once per GEMM. Only when every
    // GEMM below is then all-bf16, so that none needs the workspace itself.
    CTensorRef d = dout;
    const Scratch& ws = scratch_[kSlotGemm];
    const size_t need = static_cast<size_t>(M) * static_cast<size_t>(N) * 2;
    if (p == Precision::BF16 && (dinp || dw) && (!dinp || w.bf16()) && (!dw || inp.bf16()) && ws.ptr &&
        ws.bytes >= need) {
      cuda::convert(TensorRef(ws.ptr, DType::BF16), dout, static_cast<int64_t>(M) * N, stream_);
      d = CTensorRef(ws.ptr, DType::BF16);
    }
    if (dinp) gemm(false, true, M, K, N, d, N, w, N, dinp, K, false, nullptr, p, stream_, gemm_scratch());
    if (dw) gemm(true, false, K, N, M, inp, K, d, N, dw, N, true, nullptr, p, stream_, gemm_scratch());
    if (dbias) {
      float* s = scratch_floats(kSlotReduce, colsum_scratch_floats(M, N), "bias-gradient partial sums");
      colsum_accumulate(dbias, dout, M, N, s, stream_);
    }
  }
  void matmul_nt(float* out, CTensorRef a, CTensorRef b, int M, int K, int N, Precision p) override {
    set_device();
    gemm(false, true, M, N, K, a, K, b, K, out, N, false, nullptr, p, stream_, gemm_scratch());
  }

  // ---- elementwise and normalization -----------------------------------------
  void embedding_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe, int B, int T,
                         int C) override {
    set_device();
    cuda::embedding_forward(out, tokens, wte, wpe, B, T, C, stream_);
  }
  void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens, int B, int T,
                          int C) override {
    set_device();
    const int M = B * T;
    if (M <= 0) return;
    if (dwpe) embedding_backward_wpe(dwpe, dout, B, T, C, stream_);
    if (!dwte) return;
    // Rows grouped by token on the device (a sort of (token, row) keys), so
    // each token's rows add in row order: deterministic, no atomics, no copy.
    void* keys = scratch(kSlotEmbedding, embedding_backward_wte_scratch_bytes(M), "embedding-gradient grouping");
    embedding_backward_wte_device(dwte, dout, tokens, M, C, keys, stream_);
  }
  void layernorm_forward(TensorRef out, float* mean, float* rstd, const float* inp, const float* gamma,
                         const float* beta, int M, int C, float eps) override {
    set_device();
    cuda::layernorm_forward(out, mean, rstd, inp, gamma, beta, M, C, eps, stream_);
  }
  void layernorm_backward(float* dinp, float* dgamma, float* dbeta, const float* dout, const float* inp,
                          const float* gamma, const float* mean, const float* rstd, int M, int C) override {
    set_device();
    float* s = scratch_floats(kSlotReduce, layernorm_backward_scratch_floats(M, C), "LayerNorm-gradient partial sums");
    cuda::layernorm_backward(dinp, dgamma, dbeta, dout, inp, gamma, mean, rstd, M, C, s, stream_);
  }
  void gelu_forward(TensorRef out, CTensorRef inp, int64_t n) override {
    set_device();
    cuda::gelu_forward(out, inp, n, stream_);
  }
  void gelu_backward(float* dinp, CTensorRef inp, const float* dout, int64_t n) override {
    set_device();
    cuda::gelu_backward(dinp, inp, dout, n, stream_);
  }
  void convert(TensorRef dst, CTensorRef src, int64_t n) override {
    set_device();
    cuda::convert(dst, src, n, stream_);
  }
  // bf16 storage under BF16 (docs/ARCHITECTURE.md "Precision"), unless
  // $GPT_ENGINE_BF16_STORAGE=0 keeps fp32 (to compare the two).
  DType activation_dtype(Precision p) const override {
    if (p != Precision::BF16) return DType::F32;
    const char* e = std::getenv("GPT_ENGINE_BF16_STORAGE");
    return e && std::string(e) == "0" ? DType::F32 : DType::BF16;
  }
  // The same rule (and switch) for the decoding cache.
  DType kv_cache_dtype(Precision p) const override { return activation_dtype(p); }
  void add(float* out, const float* a, const float* b, int64_t n) override {
    set_device();
    cuda::add(out, a, b, n, stream_);
  }

  // ---- fused forward ops (references: the compositions in backend.h) ------------
  void matmul_forward_gelu(TensorRef pre, TensorRef out, CTensorRef inp, CTensorRef w, const float* bias, int M,
                           int K, int N, Precision p) override {
    set_device();
    gemm_bias_gelu(M, N, K, inp, w, pre, out, bias, p, stream_, gemm_scratch());
  }
  void residual_layernorm_forward(float* resid, TensorRef out, float* mean, float* rstd, const float* a, const float* b,
                                  const float* gamma, const float* beta, int M, int C, float eps) override {
    set_device();
    cuda::residual_layernorm_forward(resid, out, mean, rstd, a, b, gamma, beta, M, C, eps, stream_);
  }

  // ---- attention ----------------------------------------------------------------
  void attention_forward(const AttnShape& s, AttnTensor out, float* lse, AttnTensor q, AttnTensor k,
                         AttnTensor v) override {
    set_device();
    cuda::attention_forward(s, out, lse, q, k, v, stream_);
  }
  void attention_backward(const AttnShape& s, AttnTensor dq, AttnTensor dk, AttnTensor dv, AttnTensor q,
                          AttnTensor k, AttnTensor v, AttnTensor out, const float* lse, AttnTensor dout) override {
    set_device();
    float* dvec = scratch_floats(kSlotReduce, cuda::attention_backward_scratch_floats(s),
                                 "attention backward's D = rowsum(dO*O) and dQ partials");
    cuda::attention_backward(s, dq, dk, dv, q, k, v, out, lse, dout, dvec, stream_);
  }

  // ---- decoding (decode_attention.cuh) -------------------------------------------
  void kv_store(TensorRef cache, const KvRow* rows, int M, const float* k, const float* v, int64_t ld, int H,
                int D) override {
    set_device();
    cuda::decode_kv_store(cache, rows, M, k, v, ld, H, D, stream_);
  }
  void decode_attention(float* out, int64_t ldo, const float* q, int64_t ldq, CTensorRef cache, const KvRow* rows,
                        int M, int H, int D, float scale, int max_keys) override {
    set_device();
    // The per-chunk partials of long caches share the transient reduce slot.
    const size_t n = decode_attention_scratch_floats(M, H, D, max_keys);
    float* part = n ? scratch_floats(kSlotReduce, n, "decode attention's split over positions") : nullptr;
    cuda::decode_attention(out, ldo, q, ldq, cache, rows, M, H, D, scale, max_keys, part, stream_);
  }
  void embedding_at(float* out, const int32_t* tokens, const int32_t* positions, const float* wte, const float* wpe,
                    int M, int C) override {
    set_device();
    cuda::decode_embedding(out, tokens, positions, wte, wpe, M, C, stream_);
  }

  // ---- decoding: the linear layers of a step ----------------------------------------
  // The GEMMs, on the fp32 weights: no copy of them is kept.
  size_t decode_weight_bytes(DecodeWeight, int, int, Precision) override { return 0; }
  void decode_weight_pack(void*, DecodeWeight, const float*, int, int, Precision) override {}
  void decode_linear(float* out, const float* inp, const float* w, const void*, const float* bias, int M, int K,
                     int N, Precision p) override {
    matmul_forward(out, inp, w, bias, M, K, N, p);
  }
  void decode_linear_gelu(float* pre, float* out, const float* inp, const float* w, const void*, const float* bias,
                          int M, int K, int N, Precision p) override {
    matmul_forward_gelu(pre, out, inp, w, bias, M, K, N, p);
  }
  void decode_head(float* out, const float* x, const float* wte, const void*, int M, int K, int N,
                   Precision p) override {
    matmul_nt(out, x, wte, M, K, N, p);
  }

  // ---- classifier ------------------------------------------------------------------
  double crossentropy(float* logits, const int32_t* targets, int M, int V, int Vp, float dlogits_scale,
                      int64_t* count) override {
    set_device();
    if (M <= 0) {
      if (count) *count = 0;
      return 0.0;
    }
    char* base = static_cast<char*>(scratch(kSlotRows, (size_t)M * (sizeof(double) + sizeof(int32_t)), "per-row losses"));
    double* row_loss = reinterpret_cast<double*>(base);
    int32_t* row_valid = reinterpret_cast<int32_t*>(base + (size_t)M * sizeof(double));
    cuda::crossentropy(logits, targets, row_loss, row_valid, M, V, Vp, dlogits_scale, stream_);
    host_loss_.resize(M);
    host_valid_.resize(M);
    to_host(host_loss_.data(), row_loss, sizeof(double) * M);
    to_host(host_valid_.data(), row_valid, sizeof(int32_t) * M);
    double sum = 0.0;
    int64_t n = 0;
    for (int i = 0; i < M; ++i)
      if (host_valid_[i]) {
        sum += host_loss_[i];
        ++n;
      }
    if (count) *count = n;
    return sum;
  }

  // ---- the fused classifier ----------------------------------------------------
  // Any chunking is fine here (the GEMMs' bits do not depend on it beyond
  // the order of the dwte sums over chunks): the largest chunk the buffer holds.
  int classifier_chunk_rows(int M, int, Precision, int cap) override { return std::max(1, std::min(M, cap)); }
  void crossentropy_rows(float* logits, const int32_t* targets, double* row_loss, int M, int V, int Vp,
                         float dlogits_scale) override {
    set_device();
    if (M <= 0) return;
    cuda::crossentropy(logits, targets, row_loss, nullptr, M, V, Vp, dlogits_scale, stream_);
  }
  double loss_sum(const double* row_loss, const int32_t* targets, int M, int64_t* count) override {
    set_device();
    double* d = static_cast<double*>(scratch(kSlotLoss, 2 * sizeof(double), "the loss sum"));
    cuda::loss_sum(d, row_loss, targets, M, stream_);
    double r[2] = {0.0, 0.0};
    to_host(r, d, sizeof r);  // the one copy back of a training step's classifier
    if (count) *count = static_cast<int64_t>(r[1]);
    return r[0];
  }
  void loss_accumulate(double* acc, const double* row_loss, const int32_t* targets, int M) override {
    set_device();
    double* d = static_cast<double*>(scratch(kSlotLoss, 2 * sizeof(double), "the loss sum"));
    cuda::loss_sum(d, row_loss, targets, M, stream_);
    loss_accumulate_kernel<<<1, 1, 0, stream_>>>(acc, d);
    CUDA_CHECK_LAUNCH("loss_accumulate");
  }
  void classifier_weight_grad(float* dw, const float* dlogits, CTensorRef x, int rows, int, int, int Vp, int C,
                              Precision p) override {
    // dw[Vp, C] += dlogits^T @ x: matmul_backward's dW with dlogits as its input.
    set_device();
    gemm(true, false, Vp, C, rows, dlogits, Vp, x, C, dw, C, true, nullptr, p, stream_, gemm_scratch());
  }

  // ---- optimizer ----------------------------------------------------------------
  double sum_squares(const float* g, int64_t n) override {
    set_device();
    if (n <= 0) return 0.0;
    double* d = static_cast<double*>(
        scratch(kSlotNorm, (1 + cuda::sum_squares_scratch_doubles(n)) * sizeof(double), "gradient-norm partial sums"));
    cuda::sum_squares(d, g, n, d + 1, stream_);
    double r = 0.0;
    to_host(&r, d, sizeof(double));
    return r;
  }
  void grad_scale_of(float* scale, double* sumsq, const float* g, int64_t n, double inv_count,
                     double grad_clip) override {
    sum_squares_at(sumsq, g, n);
    cuda::grad_scale(scale, sumsq, inv_count, grad_clip, stream_);
  }
  void grad_scale_of(float* scale, double* sumsq, const float* g, int64_t n, const StepScalars* at) override {
    sum_squares_at(sumsq, g, n);
    cuda::grad_scale(scale, sumsq, at, stream_);
  }
  // *sumsq (device) = sum_squares(g, n), queued (grad_scale_of's first half).
  void sum_squares_at(double* sumsq, const float* g, int64_t n) {
    set_device();
    if (n <= 0) {
      zero(sumsq, sizeof(double));
    } else {
      double* d = static_cast<double*>(
          scratch(kSlotNorm, (1 + cuda::sum_squares_scratch_doubles(n)) * sizeof(double), "gradient-norm partial sums"));
      cuda::sum_squares(sumsq, g, n, d + 1, stream_);
    }
  }
  void adamw(float* param, const float* grad, float* m, float* v, int64_t n, const AdamWParams& a) override {
    set_device();
    cuda::adamw(param, grad, m, v, n, a, stream_);
  }
  void scale(float* x, float s, int64_t n) override {
    set_device();
    cuda::scale(x, s, n, stream_);
  }

 private:
  struct Scratch {
    void* ptr = nullptr;
    size_t bytes = 0;
  };
  GemmScratch gemm_scratch_;

  void set_device() { CUDA_CHECK(cudaSetDevice(device_), "cudaSetDevice"); }
  // The GEMMs' bf16 workspace (kSlotGemm), as reserve_training_scratch sized
  // it; null when none was reserved (a mixed GEMM then runs on the own kernels).
  const GemmScratch* gemm_scratch() {
    const Scratch& s = scratch_[kSlotGemm];
    gemm_scratch_ = GemmScratch{s.ptr, s.bytes};
    return s.ptr ? &gemm_scratch_ : nullptr;
  }

  void graph_drop(const std::string& key) {
    auto it = graphs_.find(key);
    if (it == graphs_.end()) return;
    cudaGraphExecDestroy(it->second);
    graphs_.erase(it);
  }
  // Graphs off for good (the work runs eagerly): said once on stderr.
  void graphs_off(const std::string& why) {
    graph_forget();
    graphs_on_ = false;
    graphs_why_ = why;
    std::fprintf(stderr, "gpt-engine: CUDA graphs off, the training step runs eagerly: %s\n", why.c_str());
  }

  // A grow-only device buffer. Growing frees the old one after the stream is
  // idle (cudaFree synchronizes), so no kernel still reads it.
  void* scratch(int slot, size_t bytes, const char* what) {
    Scratch& s = scratch_[slot];
    if (bytes <= s.bytes && s.ptr) return s.ptr;
    graph_forget();  // they point into the old buffer
    if (s.ptr) {
      CUDA_CHECK(cudaStreamSynchronize(stream_), "scratch resize (a kernel before it failed)");
      CUDA_CHECK(cudaFree(s.ptr), "scratch resize");
      allocated_ -= s.bytes;
      s.ptr = nullptr;
      s.bytes = 0;
    }
    size_t want = grown_bytes(bytes);
    cudaError_t err = cudaMalloc(&s.ptr, want);
    if (err != cudaSuccess) {
      cudaGetLastError();
      s.ptr = nullptr;
      throw GptError(ErrorCode::OutOfMemory, std::string("GPU out of memory allocating ") + mib(want) +
                                                 " of scratch for " + what + " (gpt-engine holds " + mib(allocated_) +
                                                 "); try a smaller batch or a shorter sequence");
    }
    s.bytes = want;
    allocated_ += want;
    return s.ptr;
  }
  float* scratch_floats(int slot, size_t n, const char* what) {
    return static_cast<float*>(scratch(slot, n * sizeof(float), what));
  }

  int device_;
  cudaStream_t stream_ = nullptr;  // cudaStreamNonBlocking, created with the backend
  size_t allocated_ = 0;
  std::vector<std::pair<void*, size_t>> sizes_;
  Scratch scratch_[kSlots];
  std::vector<int32_t> host_valid_;
  std::vector<double> host_loss_;
  // CUDA graphs: the executable graph of each captured key.
  bool graphs_on_ = false, capturing_ = false;
  std::string graphs_why_;
  std::map<std::string, cudaGraphExec_t> graphs_;
  long long captures_ = 0, replays_ = 0;
};

}  // namespace

std::unique_ptr<Backend> new_cuda_backend(int device) { return std::make_unique<CudaBackend>(device); }

}  // namespace cuda

size_t cuda_training_scratch_bytes(const TrainingShape& s) { return cuda::training_scratch_total(s); }
}  // namespace gpt
