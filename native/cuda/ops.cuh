// Host launchers of the small kernels (one .cu file per op): pointers, shape
// integers and a stream in; each checks its launch. Device memory only.
//
// Legend: B batch, T sequence, C channels, M = B*T rows, V vocabulary,
// Vp padded vocabulary.
#pragma once
#include <cuda_runtime.h>
#include <stdint.h>

#include <cstddef>

#include "../core/backend.h"

namespace gpt {
namespace cuda {

// layernorm.cu ---------------------------------------------------------------
// out[M, C] = (inp - mean) * rstd * gamma + beta; mean[M], rstd[M] saved.
// out may be bf16 (rounded from the fp32 result); mean, rstd stay fp32.
void layernorm_forward(TensorRef out, float* mean, float* rstd, const float* inp, const float* gamma, const float* beta,
                       int M, int C, float eps, cudaStream_t s);
// resid[M, C] = a + b (resid may alias a or b), then out, mean, rstd as
// layernorm_forward of resid: one kernel, the row read once from a and b.
void residual_layernorm_forward(float* resid, TensorRef out, float* mean, float* rstd, const float* a, const float* b,
                                const float* gamma, const float* beta, int M, int C, float eps, cudaStream_t s);
// dinp += ..., dgamma += ..., dbeta += ... (deterministic). scratch: at least
// layernorm_backward_scratch_floats(M, C) floats.
size_t layernorm_backward_scratch_floats(int M, int C);
void layernorm_backward(float* dinp, float* dgamma, float* dbeta, const float* dout, const float* inp,
                        const float* gamma, const float* mean, const float* rstd, int M, int C, float* scratch,
                        cudaStream_t s);

// gelu.cu (tanh form) ----------------------------------------------------------
void gelu_forward(TensorRef out, CTensorRef inp, int64_t n, cudaStream_t s);
void gelu_backward(float* dinp, CTensorRef inp, const float* dout, int64_t n, cudaStream_t s);

// elementwise.cu ------------------------------------------------------------------
void add(float* out, const float* a, const float* b, int64_t n, cudaStream_t s);
void scale(float* x, float factor, int64_t n, cudaStream_t s);
// dst = src converted (Backend::convert): fp32 to bf16 rounds to nearest even.
void convert(TensorRef dst, CTensorRef src, int64_t n, cudaStream_t s);

// embedding.cu ------------------------------------------------------------------
// out[M, C] = wte[tok] + wpe[row % T]
void embedding_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe, int B, int T, int C,
                       cudaStream_t s);
// dwpe[t] += sum over b of dout[b, t] (in b order).
void embedding_backward_wpe(float* dwpe, const float* dout, int B, int T, int C, cudaStream_t s);
// dwte[tok] += dout rows, grouped per distinct token on the device: the
// (token, row) keys are sorted in `scratch` (embedding_backward_wte_scratch_bytes(M)
// bytes), then each token's first sorted position adds its rows in row order,
// so the result is deterministic and nothing is copied to the host.
size_t embedding_backward_wte_scratch_bytes(int M);
void embedding_backward_wte_device(float* dwte, const float* dout, const int32_t* tokens, int M, int C,
                                   void* scratch, cudaStream_t s);

// classifier.cu --------------------------------------------------------------------
// Softmax cross-entropy over logits[M, Vp] (first V columns real), chunked
// over the vocabulary by a block per row. row_loss[M] gets each row's loss
// (0 for ignored rows), row_valid[M] 1/0. When dlogits_scale != 0 the logits
// are overwritten in place by (softmax - onehot) * dlogits_scale (0 for
// ignored rows and padded columns).
// row_valid may be null (Backend::crossentropy_rows writes none).
void crossentropy(float* logits, const int32_t* targets, double* row_loss, int32_t* row_valid, int M, int V, int Vp,
                  float dlogits_scale, cudaStream_t s);
// out[0] = sum of row_loss[r] over rows r < M with targets[r] >= 0, out[1] =
// their count (a double), in a fixed order (one block; no atomics).
void loss_sum(double* out, const double* row_loss, const int32_t* targets, int M, cudaStream_t s);

// reduce.cu -----------------------------------------------------------------------
// Sum of squares in double, deterministic for a given n: partials per block
// (fixed grid) then one block adds them in order into *result (device).
size_t sum_squares_scratch_doubles(int64_t n);
void sum_squares(double* result, const float* g, int64_t n, double* scratch, cudaStream_t s);
// *scale from *sumsq as Backend::grad_scale_of defines it (one thread).
void grad_scale(float* scale, const double* sumsq, double inv_count, double grad_clip, cudaStream_t s);
// The same with inv_count and grad_clip read from *at (device memory).
void grad_scale(float* scale, const double* sumsq, const StepScalars* at, cudaStream_t s);

// adamw.cu ------------------------------------------------------------------------
void adamw(float* param, const float* grad, float* m, float* v, int64_t n, const AdamWParams& a, cudaStream_t s);

}  // namespace cuda
}  // namespace gpt
