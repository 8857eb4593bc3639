// The CPU implementation of the Backend interface (core/backend.h): host
// memory, the GEMMs (gemm.h), fused attention (attention.h) and the ops of
// ops.h, all on the global pool with the current instruction-set path.
//
// Work is split into fixed-size pieces that do not depend on the pool size,
// and every reduction over pieces runs in piece order afterwards, so results
// are bitwise identical for any thread count (docs/ARCHITECTURE.md "Threads").
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "../core/backend.h"
#include "../core/memory.h"
#include "../core/threadpool.h"
#include "attention.h"
#include "bf16.h"
#include "decode_attention.h"
#include "decode_kernels.h"
#include "gemm.h"
#include "ops.h"

namespace gpt {
namespace {

// Runs fn(begin, end) over [0, n) in pieces of `grain`.
template <typename Fn>
void parallel_ranges(int64_t n, int64_t grain, Fn&& fn) {
  if (n <= 0) return;
  int64_t pieces = (n + grain - 1) / grain;
  if (pieces == 1) {
    fn(int64_t(0), n);
    return;
  }
  ThreadPool::global().parallel_for(pieces, [&](int64_t t, int) {
    int64_t a = t * grain;
    fn(a, std::min(n, a + grain));
  });
}

// Rows per piece so that each piece touches about 64 KiB of a row-major
// [rows, width] tensor (at least one row).
int64_t row_grain(int64_t width) { return std::max<int64_t>(1, (16 * 1024) / std::max<int64_t>(1, width)); }

constexpr int64_t kElemGrain = 32 * 1024;   // elementwise ops
constexpr int64_t kReduceGrain = 64 * 1024;  // sum of squares partials
constexpr int kColGrain = 64;                // column pieces for column reductions

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu"; }

  void* alloc(size_t bytes, const char* what) override { return aligned_alloc_or_throw(bytes, what); }
  void free(void* p) override { std::free(p); }
  void to_device(void* dst, const void* src, size_t bytes) override { copy_parallel(dst, src, bytes); }
  void to_host(void* dst, const void* src, size_t bytes) override { copy_parallel(dst, src, bytes); }
  void copy(void* dst, const void* src, size_t bytes) override { copy_parallel(dst, src, bytes); }
  void zero(void* p, size_t bytes) override {
    char* d = static_cast<char*>(p);
    parallel_ranges(static_cast<int64_t>(bytes), 1 << 20,
                    [&](int64_t a, int64_t b) { std::memset(d + a, 0, static_cast<size_t>(b - a)); });
  }
  void synchronize() override {}

  // The CPU keeps every tensor in fp32 (activation_dtype is fp32): a bf16
  // TensorRef is an INVALID_ARGUMENT naming it.
  void matmul_forward(TensorRef out, CTensorRef inp, CTensorRef w, const float* bias, int M, int K, int N,
                      Precision p) override {
    cpu::gemm(false, false, M, N, K, inp.f32("matmul_forward inp"), K, w.f32("matmul_forward w"), N,
              out.f32("matmul_forward out"), N, false, bias, p);
  }
  void matmul_backward(float* dinp, float* dw, float* dbias, const float* dout, CTensorRef inp, CTensorRef w, int M,
                       int K, int N, Precision p) override {
    if (dinp) cpu::gemm(false, true, M, K, N, dout, N, w.f32("matmul_backward w"), N, dinp, K, false, nullptr, p);
    if (dw) cpu::gemm(true, false, K, N, M, inp.f32("matmul_backward inp"), K, dout, N, dw, N, true, nullptr, p);
    if (dbias) cpu::colsum_accumulate(dbias, dout, M, N);
  }
  void matmul_nt(float* out, CTensorRef a, CTensorRef b, int M, int K, int N, Precision p) override {
    cpu::gemm(false, true, M, N, K, a.f32("matmul_nt a"), K, b.f32("matmul_nt b"), K, out, N, false, nullptr, p);
  }

  void embedding_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe, int B, int T,
                         int C) override {
    parallel_ranges(int64_t(B) * T, row_grain(C), [&](int64_t a, int64_t b) {
      GPT_CPU_DISPATCH(op_embedding_forward, out, tokens, wte, wpe, T, C, a, b);
    });
  }
  void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens, int B, int T,
                          int C) override {
    // Split over columns: each piece walks every row in order, so repeated
    // tokens accumulate in a fixed order without atomics.
    parallel_ranges(C, kColGrain, [&](int64_t a, int64_t b) {
      GPT_CPU_DISPATCH(op_embedding_backward_cols, dwte, dwpe, dout, tokens, int64_t(B) * T, T, C, int(a), int(b));
    });
  }
  void layernorm_forward(TensorRef out_ref, float* mean, float* rstd, const float* inp, const float* gamma,
                         const float* beta, int M, int C, float eps) override {
    float* out = out_ref.f32("layernorm_forward out");
    parallel_ranges(M, row_grain(C), [&](int64_t a, int64_t b) {
      GPT_CPU_DISPATCH(op_layernorm_forward, out, mean, rstd, inp, gamma, beta, C, eps, a, b);
    });
  }
  void layernorm_backward(float* dinp, float* dgamma, float* dbeta, const float* dout, const float* inp,
                          const float* gamma, const float* mean, const float* rstd, int M, int C) override {
    parallel_ranges(M, row_grain(C), [&](int64_t a, int64_t b) {
      GPT_CPU_DISPATCH(op_layernorm_backward_rows, dinp, dout, inp, gamma, mean, rstd, C, a, b);
    });
    parallel_ranges(C, kColGrain, [&](int64_t a, int64_t b) {
      GPT_CPU_DISPATCH(op_layernorm_backward_cols, dgamma, dbeta, dout, inp, mean, rstd, M, C, int(a), int(b));
    });
  }
  void gelu_forward(TensorRef out_ref, CTensorRef inp_ref, int64_t n) override {
    float* out = out_ref.f32("gelu_forward out");
    const float* inp = inp_ref.f32("gelu_forward inp");
    parallel_ranges(n, kElemGrain, [&](int64_t a, int64_t b) { GPT_CPU_DISPATCH(op_gelu_forward, out + a, inp + a, b - a); });
  }
  void gelu_backward(float* dinp, CTensorRef inp_ref, const float* dout, int64_t n) override {
    const float* inp = inp_ref.f32("gelu_backward inp");
    parallel_ranges(n, kElemGrain, [&](int64_t a, int64_t b) {
      GPT_CPU_DISPATCH(op_gelu_backward, dinp + a, inp + a, dout + a, b - a);
    });
  }
  // The CPU stores no bf16 tensors, but converts (the op table's bf16 inputs
  // and the tests use it): round to nearest even, as cpu/bf16.h.
  void convert(TensorRef dst, CTensorRef src, int64_t n) override {
    if (dst.dtype == src.dtype) {
      copy(dst.ptr, src.ptr, static_cast<size_t>(n) * dtype_size(dst.dtype));
      return;
    }
    parallel_ranges(n, kElemGrain, [&](int64_t a, int64_t b) {
      if (dst.bf16())
        for (int64_t i = a; i < b; ++i) dst.b16()[i] = cpu::bf16_bits(static_cast<const float*>(src.ptr)[i]);
      else
        for (int64_t i = a; i < b; ++i) static_cast<float*>(dst.ptr)[i] = cpu::bf16_to_float(src.b16()[i]);
    });
  }
  void add(float* out, const float* a, const float* b, int64_t n) override {
    parallel_ranges(n, kElemGrain, [&](int64_t x, int64_t y) { GPT_CPU_DISPATCH(op_add, out + x, a + x, b + x, y - x); });
  }

  // Fused residual + LayerNorm: the same arithmetic as the composition in
  // backend.h (bitwise; test/native/fused-ops.test.ts), each row normalized
  // while the sum is in L1. matmul_forward_gelu keeps the default
  // composition: GELU inside the GEMM's tile loop (from the registers, or per
  // strip from L1) measured 1-5% slower than the GEMM followed by a separate
  // GELU pass over the still-cached output (branch `fused`, 2026-11-29).
  void residual_layernorm_forward(float* resid, TensorRef out_ref, float* mean, float* rstd, const float* a,
                                  const float* b, const float* gamma, const float* beta, int M, int C,
                                  float eps) override {
    float* out = out_ref.f32("residual_layernorm_forward out");
    parallel_ranges(M, row_grain(C), [&](int64_t r0, int64_t r1) {
      GPT_CPU_DISPATCH(op_residual_layernorm_forward, resid, out, mean, rstd, a, b, gamma, beta, C, eps, r0, r1);
    });
  }

  void attention_forward(const AttnShape& s, AttnTensor out, float* lse, AttnTensor q, AttnTensor k,
                         AttnTensor v) override {
    cpu::attention_forward(s, out, lse, q, k, v);
  }
  void attention_backward(const AttnShape& s, AttnTensor dq, AttnTensor dk, AttnTensor dv, AttnTensor q, AttnTensor k,
                          AttnTensor v, AttnTensor out, const float* lse, AttnTensor dout) override {
    cpu::attention_backward(s, dq, dk, dv, q, k, v, out, lse, dout);
  }

  // ---- decoding (decode_attention.h) ---------------------------------------
  // The cache is fp32 (kv_cache_dtype is fp32).
  void kv_store(TensorRef cache, const KvRow* rows, int M, const float* k, const float* v, int64_t ld, int H,
                int D) override {
    cpu::decode_kv_store(cache.f32("kv_store cache"), rows, M, k, v, ld, H, D);
  }
  void decode_attention(float* out, int64_t ldo, const float* q, int64_t ldq, CTensorRef cache, const KvRow* rows,
                        int M, int H, int D, float scale, int /*max_keys: no split over positions here*/) override {
    cpu::decode_attention(out, ldo, q, ldq, cache.f32("decode_attention cache"), rows, M, H, D, scale);
  }
  void embedding_at(float* out, const int32_t* tokens, const int32_t* positions, const float* wte, const float* wpe,
                    int M, int C) override {
    cpu::decode_embedding(out, tokens, positions, wte, wpe, M, C);
  }

  // ---- decoding: the linear layers of a step (decode_kernels.h) --------------
  // fp32 streams the fp32 weights as they are; bf16 a packed bf16 copy.
  size_t decode_weight_bytes(DecodeWeight kind, int K, int N, Precision p) override {
    if (p != Precision::BF16) return 0;
    if (kind == DecodeWeight::Linear) return cpu::decode_linear_bf16_size(K, N) * sizeof(uint32_t);
    return static_cast<size_t>(N) * cpu::decode_head_row(K) * sizeof(uint16_t);
  }
  void decode_weight_pack(void* dst, DecodeWeight kind, const float* w, int K, int N, Precision p) override {
    if (p != Precision::BF16) return;
    if (kind == DecodeWeight::Linear)
      cpu::decode_pack_linear_bf16(static_cast<uint32_t*>(dst), w, K, N);
    else
      cpu::decode_pack_head_bf16(static_cast<uint16_t*>(dst), w, N, K);
  }
  void decode_linear(float* out, const float* inp, const float* w, const void* packed, const float* bias, int M,
                     int K, int N, Precision p) override {
    if (p == Precision::BF16)
      cpu::decode_linear_bf16(out, inp, static_cast<const uint32_t*>(packed), bias, M, K, N);
    else
      cpu::decode_linear_f32(out, inp, w, bias, M, K, N);
  }
  void decode_head(float* out, const float* x, const float* wte, const void* packed, int M, int K, int N,
                   Precision p) override {
    if (p == Precision::BF16)
      cpu::decode_head_bf16(out, x, static_cast<const uint16_t*>(packed), M, K, N);
    else
      cpu::decode_head_f32(out, x, wte, M, K, N);
  }

  double crossentropy(float* logits, const int32_t* targets, int M, int V, int Vp, float dscale,
                      int64_t* count) override {
    row_loss_.resize(static_cast<size_t>(M));
    double* rl = row_loss_.data();
    parallel_ranges(M, std::max<int64_t>(1, row_grain(Vp) / 4 + 1), [&](int64_t a, int64_t b) {
      GPT_CPU_DISPATCH(op_crossentropy_rows, logits, targets, V, Vp, dscale, rl, a, b);
    });
    double sum = 0;
    int64_t n = 0;
    for (int r = 0; r < M; ++r)
      if (targets[r] >= 0) {
        sum += rl[r];
        ++n;
      }
    if (count) *count = n;
    return sum;
  }

  // ---- the fused classifier ------------------------------------------------
  // Chunks are whole K blocks of the GEMM that one matmul_backward over all M
  // rows would run for dwte, and classifier_weight_grad imposes that block,
  // so the chunked weight gradient has the bits of the unchunked one (the
  // head GEMMs and the cross-entropy work row by row anyway). As many blocks
  // as fit in about 32 MiB of logits (at least one block; GPT-2: one block
  // of at most 256 rows in fp32), so only that much of the buffer is touched.
  int classifier_chunk_rows(int M, int Vp, Precision p, int cap) override {
    cap = std::max(1, std::min(M, cap));
    const int kb = cpu::gemm_k_block(M, p);
    if (kb >= M) return cap >= M ? M : cap;  // one block: whole, else any split (not bitwise)
    if (cap < kb) return cap;                // cannot hold a block: not bitwise
    const int64_t target = std::max<int64_t>(256, (int64_t(32) << 20) / (int64_t(std::max(Vp, 1)) * 4));
    return kb * static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(cap, target) / kb));
  }
  void crossentropy_rows(float* logits, const int32_t* targets, double* row_loss, int M, int V, int Vp,
                         float dscale) override {
    parallel_ranges(M, std::max<int64_t>(1, row_grain(Vp) / 4 + 1), [&](int64_t a, int64_t b) {
      GPT_CPU_DISPATCH(op_crossentropy_rows, logits, targets, V, Vp, dscale, row_loss, a, b);
    });
  }
  double loss_sum(const double* row_loss, const int32_t* targets, int M, int64_t* count) override {
    double sum = 0;
    int64_t n = 0;
    for (int r = 0; r < M; ++r)
      if (targets[r] >= 0) {
        sum += row_loss[r];
        ++n;
      }
    if (count) *count = n;
    return sum;
  }
  void classifier_weight_grad(float* dw, const float* dlogits, CTensorRef x, int rows, int /*row0*/, int M, int Vp,
                              int C, Precision p) override {
    cpu::gemm(true, false, Vp, C, rows, dlogits, Vp, x.f32("classifier_weight_grad x"), C, dw, C, true, nullptr, p,
              cpu::gemm_k_block(M, p));
  }

  double sum_squares(const float* g, int64_t n) override {
    int64_t pieces = (n + kReduceGrain - 1) / kReduceGrain;
    partial_.assign(static_cast<size_t>(std::max<int64_t>(pieces, 1)), 0.0);
    double* part = partial_.data();
    parallel_ranges(n, kReduceGrain, [&](int64_t a, int64_t b) {
      part[a / kReduceGrain] = GPT_CPU_DISPATCH(op_sum_squares, g + a, b - a);
    });
    double s = 0;
    for (int64_t i = 0; i < pieces; ++i) s += part[i];
    return s;
  }
  void grad_scale_of(float* scale, double* sumsq, const float* g, int64_t n, double inv_count,
                     double grad_clip) override {
    const double ss = sum_squares(g, n);
    *sumsq = ss;
    const double norm = std::sqrt(ss) * inv_count;
    if (!std::isfinite(norm)) {
      *scale = std::numeric_limits<float>::quiet_NaN();
      return;
    }
    const double clip = grad_clip > 0 && norm > grad_clip ? grad_clip / norm : 1.0;
    *scale = static_cast<float>(inv_count * clip);
  }
  void grad_scale_of(float* scale, double* sumsq, const float* g, int64_t n, const StepScalars* at) override {
    grad_scale_of(scale, sumsq, g, n, at->inv_count, at->grad_clip);  // host memory here
  }
  void adamw(float* param, const float* grad, float* m, float* v, int64_t n, const AdamWParams& a) override {
    float gs = a.grad_scale;
    if (a.grad_scale_at) {
      gs = *a.grad_scale_at;
      if (!std::isfinite(gs)) return;  // a skipped step
    }
    float lr = a.lr, beta1 = a.beta1, beta2 = a.beta2, eps = a.eps, wd = a.weight_decay, bc1, bc2;
    if (const StepScalars* h = a.hyper_at) {
      lr = h->lr;
      beta1 = h->beta1;
      beta2 = h->beta2;
      eps = h->eps;
      wd = a.decay ? h->weight_decay : 0.0f;
      bc1 = static_cast<float>(h->bias1);
      bc2 = static_cast<float>(h->bias2);
    } else {
      bc1 = static_cast<float>(1.0 - std::pow(static_cast<double>(a.beta1), static_cast<double>(a.step)));
      bc2 = static_cast<float>(1.0 - std::pow(static_cast<double>(a.beta2), static_cast<double>(a.step)));
    }
    parallel_ranges(n, kElemGrain, [&](int64_t x, int64_t y) {
      GPT_CPU_DISPATCH(op_adamw, param + x, grad + x, m + x, v + x, y - x, lr, beta1, beta2, eps, wd, gs, bc1, bc2);
      if (a.param_bf16)
        for (int64_t i = x; i < y; ++i) a.param_bf16[i] = cpu::bf16_bits(param[i]);
    });
  }
  void scale(float* x, float s, int64_t n) override {
    parallel_ranges(n, kElemGrain, [&](int64_t a, int64_t b) { GPT_CPU_DISPATCH(op_scale, x + a, s, b - a); });
  }

 private:
  void copy_parallel(void* dst, const void* src, size_t bytes) {
    if (dst == src || bytes == 0) return;
    char* d = static_cast<char*>(dst);
    const char* s = static_cast<const char*>(src);
    parallel_ranges(static_cast<int64_t>(bytes), 1 << 20,
                    [&](int64_t a, int64_t b) { std::memcpy(d + a, s + a, static_cast<size_t>(b - a)); });
  }

  std::vector<double> row_loss_;
  std::vector<double> partial_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace gpt
