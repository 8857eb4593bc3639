// Plain references of the CPU backend's ops (cpu_backend.cc over
// ops_impl.h): one simple loop each, every sum and product in double, no
// vectors, no threads, no tiling. Same contracts as the Backend ops of the
// same name (native/core/backend.h), including which outputs accumulate (+=)
// and which are overwritten. The fast paths are held to them on random
// inputs at awkward sizes on every instruction-set path
// (test/native/reference-ops.test.ts, through the addon's referenceOp), as
// the fused attention is held to attention_naive.cc.
#pragma once
#include <cstdint>

#include "../core/backend.h"

namespace gpt {
namespace cpu {
namespace ref {

// out[B*T, C] = wte[tok] + wpe[t]
void embedding_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe, int B, int T, int C);
// dwte[tok] += dout; dwpe[t] += dout
void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens, int B, int T, int C);
// out = (x - mean) * rstd * gamma + beta per row of C; saves mean[M], rstd[M]
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* gamma, const float* beta,
                       int M, int C, float eps);
// dinp += ...; dgamma += ...; dbeta += ... from the saved mean and rstd
void layernorm_backward(float* dinp, float* dgamma, float* dbeta, const float* dout, const float* inp,
                        const float* gamma, const float* mean, const float* rstd, int M, int C);
// tanh-form GELU and dinp = dout * gelu'(inp)
void gelu_forward(float* out, const float* inp, int64_t n);
void gelu_backward(float* dinp, const float* inp, const float* dout, int64_t n);
// Fused softmax + cross-entropy (Backend::crossentropy): returns the loss sum
// and the count of rows with a target; with dlogits_scale != 0 the logits
// become their gradient in place.
double crossentropy(float* logits, const int32_t* targets, int M, int V, int Vp, float dlogits_scale, int64_t* count);
// Backend::crossentropy_rows: each row's loss into row_loss[M] (0 for rows
// with target -1), the gradient in place as crossentropy.
void crossentropy_rows(float* logits, const int32_t* targets, double* row_loss, int M, int V, int Vp,
                       float dlogits_scale);
// Backend::loss_sum: the sum of row_loss over rows with a target, and their count.
double loss_sum(const double* row_loss, const int32_t* targets, int M, int64_t* count);
// Backend::classifier_weight_grad in fp32: dw[Vp, C] += dlogits[rows, Vp]^T @ x[rows, C].
void classifier_weight_grad(float* dw, const float* dlogits, const float* x, int rows, int Vp, int C);
double sum_squares(const float* g, int64_t n);
void adamw(float* param, const float* grad, float* m, float* v, int64_t n, const AdamWParams& a);

}  // namespace ref
}  // namespace cpu
}  // namespace gpt
